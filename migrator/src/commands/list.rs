//! `bbb-migrate list`: the selected recordings, with their ledger state (text or `--json`).

use super::*;

impl App {
    pub(super) async fn list(&self, json: bool) -> Res<i32> {
        let (recs, _fetched, _) = self.fetch_selected().await?;
        let ledger = self.ledger_read_only().await?;
        let rows = by_recording(ledger.jobs().await.map_err(ledger_err)?);
        ledger.close().await;
        let rewrite = self.s.bbb.rewrite_23;
        let mut o = out();
        if json {
            let v: Vec<serde_json::Value> = recs
                .iter()
                .map(|r| {
                    let row = rows.get(r.record_id.as_str());
                    serde_json::json!({
                        "record_id": r.record_id,
                        "name": r.name,
                        "start_time": r.start_time_ms,
                        "start_date": slug::local_date(r.start_time_ms, self.s.tz),
                        "state": r.state,
                        "playback": playback_kind(r.playback(rewrite).as_ref()),
                        "source_url": r.source_url(rewrite),
                        "length_secs": r.length_secs(),
                        "ledger_state": row.map(|j| j.state.as_str()).unwrap_or("new"),
                        "output": row.and_then(|j| j.output_path.clone()),
                        "last_error": row.and_then(|j| j.last_error.clone()),
                    })
                })
                .collect();
            let _ = serde_json::to_writer_pretty(&mut o, &v);
            let _ = writeln!(o);
        } else {
            for (i, r) in recs.iter().enumerate() {
                let state = rows
                    .get(r.record_id.as_str())
                    .map(|j| j.state.as_str())
                    .unwrap_or("new");
                let _ = writeln!(
                    o,
                    "{:>5} {} {} {:<9} {:<12} {}",
                    i + 1,
                    r.record_id,
                    slug::local_date(r.start_time_ms, self.s.tz),
                    state,
                    playback_kind(r.playback(rewrite).as_ref()),
                    r.name
                );
            }
            let _ = writeln!(o, "{} recording(s)", recs.len());
        }
        Ok(exit::OK)
    }
}
