//! The state of a migration as the ledger holds it: jobs per state, bytes placed, machine time,
//! the failures, the placed outputs and the running jobs with their progress. One reading,
//! shown three ways: `status --json`, `serve`'s `/api/status` (the same JSON) and its
//! `/metrics` (Prometheus text, [`crate::serve::metrics`]).

use std::collections::BTreeMap;

use crate::ledger::{JobRow, JobState, JobStore, LedgerResult, Progress, RunningJob};

/// One reading of the ledger, narrowed to a selection of recordings.
#[derive(Debug, Clone)]
pub struct Report {
    pub rows: Vec<JobRow>,
    pub running: Vec<RunningJob>,
}

impl Report {
    /// Reads every job and every running job; `only` (record ids) narrows both, empty keeps all.
    pub async fn read(ledger: &impl JobStore, only: &[String]) -> LedgerResult<Report> {
        let wanted = |id: &str| only.is_empty() || only.iter().any(|o| o == id);
        let mut rows = ledger.jobs().await?;
        let mut running = ledger.running().await?;
        rows.retain(|r| wanted(&r.recording_id));
        running.retain(|r| wanted(&r.recording_id));
        Ok(Report { rows, running })
    }

    /// Jobs per state (states with no job are left out).
    pub fn counts(&self) -> BTreeMap<&'static str, u64> {
        let mut counts = BTreeMap::new();
        for r in &self.rows {
            *counts.entry(r.state.as_str()).or_default() += 1;
        }
        counts
    }

    pub fn bytes_placed(&self) -> i64 {
        self.rows.iter().filter_map(|r| r.output_bytes).sum()
    }

    /// The summed duration of every attempt, in milliseconds.
    pub fn busy_ms(&self) -> i64 {
        self.rows.iter().map(|r| r.busy_ms).sum()
    }

    /// Jobs that failed at least once and have not succeeded since.
    pub fn failures(&self) -> impl Iterator<Item = &JobRow> {
        self.rows
            .iter()
            .filter(|r| r.last_error.is_some() && r.state != JobState::Succeeded)
    }

    /// The host part of a running job's owner (`host:pid:worker`).
    pub fn host(job: &RunningJob) -> Option<&str> {
        job.owner.as_deref().and_then(|o| o.split(':').next())
    }

    /// What `status --json` prints and `/api/status` answers.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "counts": self.counts(),
            "bytes_placed": self.bytes_placed(),
            "machine_time_secs": self.busy_ms() as f64 / 1000.0,
            "failures": self.failures().map(|r| serde_json::json!({
                "record_id": r.recording_id, "state": r.state.as_str(), "attempts": r.attempts,
                "error_class": r.error_class, "last_error": r.last_error,
            })).collect::<Vec<_>>(),
            "outputs": self.rows.iter().filter(|r| r.state == JobState::Succeeded).map(|r| serde_json::json!({
                "record_id": r.recording_id, "path": r.output_path, "bytes": r.output_bytes,
                "degraded": r.degraded(),
            })).collect::<Vec<_>>(),
            "running": self.running.iter().map(|r| {
                let progress = r.progress.as_deref().and_then(Progress::parse);
                serde_json::json!({
                    "record_id": r.recording_id, "owner": r.owner,
                    "host": Self::host(r),
                    "epoch": r.epoch, "since_ms": r.since_ms, "heartbeat_ms": r.heartbeat_ms,
                    "lease_expired": r.expired, "checkpoint": r.checkpoint,
                    "progress": progress.map(|p| serde_json::json!({
                        "unit": p.unit, "done": p.done, "total": p.total,
                        "percent": p.percent(),
                    })),
                })
            }).collect::<Vec<_>>(),
        })
    }
}
