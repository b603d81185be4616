//! `bbb-migrate status`: the ledger's state, every host's running jobs, the failures and the
//! placed outputs with the mode each recording was made in.

use bbb_migrator::report::Report;

use super::*;

impl App {
    pub(super) async fn status(&self, json: bool) -> Res<i32> {
        let only = self.s.ledger_selection("status")?;
        let ledger = self.ledger_read_only().await?;
        let report = Report::read(&ledger, &only).await.map_err(ledger_err)?;
        ledger.close().await;
        let mut o = out();
        if json {
            let _ = serde_json::to_writer_pretty(
                &mut o,
                &report.to_json(chrono::Utc::now().timestamp_millis()),
            );
            let _ = writeln!(o);
            return Ok(exit::OK);
        }
        let (rows, running) = (&report.rows, &report.running);
        let busy = report.busy_ms();
        let _ = writeln!(o, "jobs: {}", rows.len());
        for (state, n) in &report.counts() {
            let _ = writeln!(o, "  {state}: {n}");
        }
        let modes = report.output_modes();
        if !modes.is_empty() {
            let _ = writeln!(o, "outputs by mode:");
            for (mode, n) in &modes {
                let _ = writeln!(o, "  {mode}: {n}");
            }
        }
        let _ = writeln!(o, "bytes placed: {}", report.bytes_placed());
        let _ = writeln!(o, "machine time: {}", human_secs(busy / 1000));
        if !running.is_empty() {
            let now_ms = chrono::Utc::now().timestamp_millis();
            let _ = writeln!(o, "running (per host):");
            for r in running {
                let since = r
                    .since_ms
                    .and_then(|t| {
                        let at = chrono::DateTime::from_timestamp_millis(t)?;
                        Some(format!(
                            "{} ({} ago)",
                            at.with_timezone(&self.s.tz).format("%Y-%m-%d %H:%M:%S"),
                            human_secs((now_ms - t).max(0) / 1000)
                        ))
                    })
                    .unwrap_or_else(|| "?".into());
                let progress = match r.progress.as_deref().and_then(Progress::parse) {
                    Some(p) => format!(", {p}"),
                    None => ", no progress yet".to_owned(),
                };
                let _ = writeln!(
                    o,
                    "  {} {} epoch {} since {since}{progress}{}",
                    r.owner.as_deref().unwrap_or("?"),
                    r.recording_id,
                    r.epoch,
                    if r.expired { " (lease expired)" } else { "" },
                );
            }
        }
        let failures: Vec<&JobRow> = report.failures().collect();
        if !failures.is_empty() {
            let _ = writeln!(o, "failures:");
            for r in failures {
                let _ = writeln!(
                    o,
                    "  {} [{} after {}/{} attempts]: {}",
                    r.recording_id,
                    r.state.as_str(),
                    r.attempts,
                    r.max_attempts,
                    r.last_error.as_deref().unwrap_or("")
                );
            }
        }
        let placed: Vec<&JobRow> = rows
            .iter()
            .filter(|r| r.state == JobState::Succeeded)
            .collect();
        if !placed.is_empty() {
            let _ = writeln!(o, "outputs:");
            for r in placed {
                let mode = r
                    .recording_mode
                    .map(|m| format!(", {}", m.as_str()))
                    .unwrap_or_default();
                let _ = writeln!(
                    o,
                    "  {} -> {} ({} bytes{mode})",
                    r.recording_id,
                    r.output_path.as_deref().unwrap_or("?"),
                    r.output_bytes.unwrap_or(0)
                );
                for defect in r.degraded() {
                    let _ = writeln!(o, "    degraded: {defect}");
                }
                if let Some(why) = r.fast_fallback() {
                    let _ = writeln!(o, "    fast mode not used: {why}");
                }
            }
        }
        Ok(exit::OK)
    }
}
