//! The state of a migration as the ledger holds it: jobs per state, bytes placed, machine time,
//! the failures, the placed outputs (with the mode each recording was made in) and the running
//! jobs with their progress. One reading,
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

    /// Placed outputs per recording mode (`real_time`, `fast`); downloads, imports and outputs
    /// whose mode is not known are left out, as are modes with no output.
    pub fn output_modes(&self) -> BTreeMap<&'static str, u64> {
        let mut modes = BTreeMap::new();
        for r in &self.rows {
            if let (JobState::Succeeded, Some(mode)) = (r.state, r.recording_mode) {
                *modes.entry(mode.as_str()).or_default() += 1;
            }
        }
        modes
    }

    pub fn bytes_placed(&self) -> i64 {
        self.rows.iter().filter_map(|r| r.output_bytes).sum()
    }

    /// The summed length of the placed outputs, in seconds.
    pub fn recorded_secs(&self) -> f64 {
        self.rows
            .iter()
            .filter(|r| r.state == JobState::Succeeded)
            .filter_map(JobRow::duration_secs)
            .sum()
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

    /// Jobs that succeeded in the hour before `now_ms`.
    pub fn succeeded_last_hour(&self, now_ms: i64) -> u64 {
        let since = now_ms - 3_600_000;
        self.rows
            .iter()
            .filter(|r| r.state == JobState::Succeeded)
            .filter(|r| r.finished_at_ms.is_some_and(|t| t > since && t <= now_ms))
            .count() as u64
    }

    /// How long the jobs still to do (pending and running) take at the last hour's pace; `None`
    /// when nothing succeeded in that hour.
    pub fn eta_secs(&self, now_ms: i64) -> Option<f64> {
        let pace = self.succeeded_last_hour(now_ms);
        let counts = self.counts();
        let left = counts.get("pending").unwrap_or(&0) + counts.get("running").unwrap_or(&0);
        (pace > 0).then(|| left as f64 * 3600.0 / pace as f64)
    }

    /// What `status --json` prints and `/api/status` answers, with the pace of the hour before
    /// `now_ms`.
    pub fn to_json(&self, now_ms: i64) -> serde_json::Value {
        serde_json::json!({
            "counts": self.counts(),
            "last_hour": {
                "succeeded": self.succeeded_last_hour(now_ms),
                "eta_secs": self.eta_secs(now_ms),
            },
            "output_modes": self.output_modes(),
            "bytes_placed": self.bytes_placed(),
            "recorded_secs": (self.recorded_secs() * 1000.0).round() / 1000.0,
            "machine_time_secs": self.busy_ms() as f64 / 1000.0,
            "failures": self.failures().map(|r| serde_json::json!({
                "record_id": r.recording_id, "state": r.state.as_str(), "attempts": r.attempts,
                "error_class": r.error_class, "phase": r.error_phase, "last_error": r.last_error,
            })).collect::<Vec<_>>(),
            "outputs": self.rows.iter().filter(|r| r.state == JobState::Succeeded).map(|r| serde_json::json!({
                "record_id": r.recording_id, "path": r.output_path, "bytes": r.output_bytes,
                "duration_secs": r.duration_secs(), "degraded": r.degraded(),
                "mode": r.recording_mode.map(|m| m.as_str()), "fast_fallback": r.fast_fallback(),
                "flagged": r.flagged_at_ms.is_some(), "flag_note": r.flag_note,
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

/// A job row with nothing happened yet, for the tests of what reads reports.
#[cfg(test)]
pub(crate) fn test_job(recording_id: &str, state: JobState) -> JobRow {
    JobRow {
        id: 1,
        recording_id: recording_id.into(),
        target: "file".into(),
        state,
        attempts: 1,
        max_attempts: 3,
        run_after_ms: 0,
        lease_epoch: 1,
        last_error: None,
        error_class: None,
        output_path: None,
        output: None,
        output_bytes: None,
        recording_mode: None,
        finished_at_ms: None,
        busy_ms: 0,
        error_phase: None,
        flagged_at_ms: None,
        flag_note: None,
    }
}

#[cfg(test)]
mod tests {
    use bbb_common::recorder_protocol::RecordingMode;

    use super::*;

    fn job(state: JobState, finished_at_ms: Option<i64>) -> JobRow {
        JobRow {
            finished_at_ms,
            ..test_job("r", state)
        }
    }
    #[test]
    fn the_pace_is_the_last_hours_and_the_eta_follows_it() {
        let now = 10 * 3_600_000;
        let report = Report {
            rows: vec![
                job(JobState::Succeeded, Some(now - 60_000)),
                job(JobState::Succeeded, Some(now - 3_000_000)),
                // Older than the hour, or not succeeded: not counted.
                job(JobState::Succeeded, Some(now - 4_000_000)),
                job(JobState::Dead, Some(now - 1_000)),
                job(JobState::Pending, None),
                job(JobState::Pending, None),
                job(JobState::Running, None),
                job(JobState::Pending, None),
            ],
            running: vec![],
        };
        assert_eq!(report.succeeded_last_hour(now), 2);
        // Four left at two an hour.
        assert_eq!(report.eta_secs(now), Some(2.0 * 3600.0));
        let v = report.to_json(now);
        assert_eq!(v["last_hour"]["succeeded"], 2);
        assert_eq!(v["last_hour"]["eta_secs"], 7200.0);
        assert_eq!(
            Report {
                rows: vec![],
                running: vec![]
            }
            .eta_secs(now),
            None
        );
    }

    #[test]
    fn outputs_are_counted_by_mode_and_each_shows_its_own_and_why_not_fast() {
        let placed = |id, mode, output: &str| JobRow {
            recording_mode: mode,
            output: Some(output.into()),
            ..test_job(id, JobState::Succeeded)
        };
        let report = Report {
            rows: vec![
                placed("fast", Some(RecordingMode::Fast), "{}"),
                placed(
                    "share",
                    Some(RecordingMode::RealTime),
                    r#"{"fast_fallback":"a screen share"}"#,
                ),
                placed("also-fast", Some(RecordingMode::Fast), "{}"),
                // A download: no mode, not counted.
                placed("video", None, r#"{"kind":"video"}"#),
                // Redone, so its mode is gone; a job that failed has none either.
                test_job("pending", JobState::Pending),
            ],
            running: vec![],
        };
        let modes: Vec<_> = report.output_modes().into_iter().collect();
        assert_eq!(modes, [("fast", 2), ("real_time", 1)]);
        let v = report.to_json(0);
        assert_eq!(
            v["output_modes"],
            serde_json::json!({"fast": 2, "real_time": 1})
        );
        let shown: Vec<_> = v["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| {
                (
                    o["record_id"].as_str().unwrap(),
                    o["mode"].as_str(),
                    o["fast_fallback"].as_str(),
                )
            })
            .collect();
        assert_eq!(
            shown,
            [
                ("fast", Some("fast"), None),
                ("share", Some("real_time"), Some("a screen share")),
                ("also-fast", Some("fast"), None),
                ("video", None, None),
            ]
        );
    }
}
