//! `bbb-migrate status`: the ledger's state, every host's running jobs and the failures.

use super::*;

impl App {
    pub(super) async fn status(&self, json: bool) -> Res<i32> {
        let only = self.s.ledger_selection("status")?;
        let wanted = |id: &str| only.is_empty() || only.iter().any(|o| o == id);
        let ledger = self.ledger_read_only().await?;
        let mut rows = ledger.jobs().await.map_err(ledger_err)?;
        let mut running = ledger.running().await.map_err(ledger_err)?;
        ledger.close().await;
        rows.retain(|r| wanted(&r.recording_id));
        running.retain(|r| wanted(&r.recording_id));
        let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
        for r in &rows {
            *counts.entry(r.state.as_str()).or_default() += 1;
        }
        let bytes: i64 = rows.iter().filter_map(|r| r.output_bytes).sum();
        let busy: i64 = rows.iter().map(|r| r.busy_ms).sum();
        let mut o = out();
        if json {
            let v = serde_json::json!({
                "counts": counts,
                "bytes_placed": bytes,
                "machine_time_secs": busy as f64 / 1000.0,
                "failures": rows.iter().filter(|r| r.last_error.is_some() && r.state != JobState::Succeeded).map(|r| serde_json::json!({
                    "record_id": r.recording_id, "state": r.state.as_str(), "attempts": r.attempts,
                    "error_class": r.error_class, "last_error": r.last_error,
                })).collect::<Vec<_>>(),
                "outputs": rows.iter().filter(|r| r.state == JobState::Succeeded).map(|r| serde_json::json!({
                    "record_id": r.recording_id, "path": r.output_path, "bytes": r.output_bytes,
                    "degraded": r.degraded(),
                })).collect::<Vec<_>>(),
                "running": running.iter().map(|r| {
                    let progress = r.progress.as_deref().and_then(Progress::parse);
                    serde_json::json!({
                        "record_id": r.recording_id, "owner": r.owner,
                        "host": r.owner.as_deref().and_then(|o| o.split(':').next()),
                        "epoch": r.epoch, "since_ms": r.since_ms, "heartbeat_ms": r.heartbeat_ms,
                        "lease_expired": r.expired, "checkpoint": r.checkpoint,
                        "progress": progress.map(|p| serde_json::json!({
                            "unit": p.unit, "done": p.done, "total": p.total,
                            "percent": p.percent(),
                        })),
                    })
                }).collect::<Vec<_>>(),
            });
            let _ = serde_json::to_writer_pretty(&mut o, &v);
            let _ = writeln!(o);
            return Ok(exit::OK);
        }
        let _ = writeln!(o, "jobs: {}", rows.len());
        for (state, n) in &counts {
            let _ = writeln!(o, "  {state}: {n}");
        }
        let _ = writeln!(o, "bytes placed: {bytes}");
        let _ = writeln!(o, "machine time: {}", human_secs(busy / 1000));
        if !running.is_empty() {
            let now_ms = chrono::Utc::now().timestamp_millis();
            let _ = writeln!(o, "running (per host):");
            for r in &running {
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
        let failures: Vec<&JobRow> = rows
            .iter()
            .filter(|r| r.last_error.is_some() && r.state != JobState::Succeeded)
            .collect();
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
                let _ = writeln!(
                    o,
                    "  {} -> {} ({} bytes)",
                    r.recording_id,
                    r.output_path.as_deref().unwrap_or("?"),
                    r.output_bytes.unwrap_or(0)
                );
                for defect in r.degraded() {
                    let _ = writeln!(o, "    degraded: {defect}");
                }
            }
        }
        Ok(exit::OK)
    }
}
