//! The ledger's state in the Prometheus text format (version 0.0.4): jobs by state and target,
//! running jobs per host, placed outputs by recording mode, bytes placed, seconds of recordings
//! placed, machine time, failed jobs by error class, and the age of each running job's last
//! heartbeat. Every value is a gauge: requeued jobs make totals go down as well as up.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::report::Report;

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A label value as the text format wants it: backslash, double quote and newline escaped.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} gauge");
}

/// A family of counts by one label.
fn counts_by<'a>(
    out: &mut String,
    name: &str,
    help: &str,
    label_name: &str,
    keys: impl Iterator<Item = &'a str>,
) {
    family(out, name, help);
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    for k in keys {
        *counts.entry(k).or_default() += 1;
    }
    for (k, n) in counts {
        let _ = writeln!(out, "{name}{{{label_name}=\"{}\"}} {n}", label(k));
    }
}

/// The whole exposition; `now_ms` is the instant heartbeat ages are measured from.
pub fn render(report: &Report, now_ms: i64) -> String {
    let mut out = String::new();

    family(
        &mut out,
        "bbb_migrate_jobs",
        "Jobs in the ledger, by state and target.",
    );
    let mut jobs: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    for r in &report.rows {
        *jobs.entry((r.state.as_str(), &r.target)).or_default() += 1;
    }
    for ((state, target), n) in jobs {
        let _ = writeln!(
            out,
            "bbb_migrate_jobs{{state=\"{}\",target=\"{}\"}} {n}",
            label(state),
            label(target)
        );
    }

    counts_by(
        &mut out,
        "bbb_migrate_running_jobs",
        "Jobs running now, by host.",
        "host",
        report.running.iter().map(|r| Report::host(r).unwrap_or("")),
    );

    // Counted as `status` counts them (`Report::output_modes`), so the two never disagree.
    family(
        &mut out,
        "bbb_migrate_outputs",
        "Placed recordings, by the mode their picture was captured in (downloads, imports and outputs of unknown mode are not counted).",
    );
    for (mode, n) in report.output_modes() {
        let _ = writeln!(out, "bbb_migrate_outputs{{mode=\"{}\"}} {n}", label(mode));
    }

    family(
        &mut out,
        "bbb_migrate_bytes_placed",
        "Bytes of the outputs placed.",
    );
    let _ = writeln!(out, "bbb_migrate_bytes_placed {}", report.bytes_placed());

    family(
        &mut out,
        "bbb_migrate_recorded_seconds",
        "Length of the outputs placed, summed.",
    );
    let _ = writeln!(
        out,
        "bbb_migrate_recorded_seconds {}",
        (report.recorded_secs() * 1000.0).round() / 1000.0
    );

    family(
        &mut out,
        "bbb_migrate_machine_seconds",
        "Wall time of every attempt of every job, summed.",
    );
    let _ = writeln!(
        out,
        "bbb_migrate_machine_seconds {}",
        report.busy_ms() as f64 / 1000.0
    );

    counts_by(
        &mut out,
        "bbb_migrate_failed_jobs",
        "Jobs whose last attempt failed and that have not succeeded since, by error class.",
        "class",
        report
            .failures()
            .map(|r| r.error_class.as_deref().unwrap_or("unknown")),
    );

    family(
        &mut out,
        "bbb_migrate_heartbeat_age_seconds",
        "Time since the last heartbeat of each running job.",
    );
    for r in &report.running {
        let Some(beat) = r.heartbeat_ms else { continue };
        let _ = writeln!(
            out,
            "bbb_migrate_heartbeat_age_seconds{{host=\"{}\",record_id=\"{}\",target=\"{}\"}} {}",
            label(Report::host(r).unwrap_or("")),
            label(&r.recording_id),
            label(&r.target),
            (now_ms - beat).max(0) as f64 / 1000.0
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use bbb_common::recorder_protocol::RecordingMode;

    use super::*;
    use crate::ledger::sqlite::SqliteLedger;
    use crate::ledger::{
        JobRow, JobState, JobStore, NewJob, RetryPolicy, RunningJob, SimulatedClock, TARGET_FILE,
    };

    fn job(id: &str, state: JobState, class: Option<&str>, bytes: Option<i64>) -> JobRow {
        JobRow {
            last_error: class.map(|_| "boom".into()),
            error_class: class.map(str::to_owned),
            output_bytes: bytes,
            busy_ms: 1500,
            ..crate::report::test_job(id, state)
        }
    }

    #[test]
    fn the_exposition_counts_every_job_and_escapes_labels() {
        let report = Report {
            rows: vec![
                JobRow {
                    output: Some(r#"{"duration_secs":60.25}"#.into()),
                    ..job("a", JobState::Succeeded, None, Some(100))
                },
                JobRow {
                    output: Some(r#"{"duration_secs":15.25}"#.into()),
                    ..job("b", JobState::Succeeded, None, Some(23))
                },
                job("c", JobState::Dead, Some("permanent"), None),
                job("d", JobState::Pending, Some("transient"), None),
                job("e", JobState::Running, None, None),
            ],
            running: vec![RunningJob {
                recording_id: "e\"vil\\\n".into(),
                target: "file".into(),
                owner: Some("enc-1:42:0".into()),
                epoch: 1,
                checkpoint: None,
                progress: None,
                since_ms: Some(1_000),
                heartbeat_ms: Some(8_000),
                lease_expires_ms: None,
                expired: false,
            }],
        };
        let text = render(&report, 10_500);
        for line in [
            "bbb_migrate_jobs{state=\"succeeded\",target=\"file\"} 2",
            "bbb_migrate_jobs{state=\"dead\",target=\"file\"} 1",
            "bbb_migrate_running_jobs{host=\"enc-1\"} 1",
            "bbb_migrate_bytes_placed 123",
            "bbb_migrate_recorded_seconds 75.5",
            "bbb_migrate_machine_seconds 7.5",
            "bbb_migrate_failed_jobs{class=\"permanent\"} 1",
            "bbb_migrate_failed_jobs{class=\"transient\"} 1",
            "bbb_migrate_heartbeat_age_seconds{host=\"enc-1\",record_id=\"e\\\"vil\\\\\\n\",target=\"file\"} 2.5",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} not in\n{text}");
        }
        // Every sample line belongs to a family declared before it.
        let mut declared = Vec::new();
        for l in text.lines() {
            if let Some(rest) = l.strip_prefix("# TYPE ") {
                declared.push(rest.split(' ').next().unwrap().to_owned());
            } else if !l.starts_with('#') {
                let name = l.split(['{', ' ']).next().unwrap();
                assert!(declared.iter().any(|d| d == name), "{l}");
            }
        }
    }

    /// A ledger with recordings of both modes, a download and a job still to do: one line per
    /// mode, counted as `status` counts them; the download and the pending job are in none.
    #[tokio::test]
    async fn placed_outputs_are_counted_by_mode_as_status_counts_them() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("l.db").display());
        let clock = Arc::new(SimulatedClock::new(1_000_000));
        let store = SqliteLedger::open(&url, clock, RetryPolicy::default())
            .await
            .unwrap();
        let modes = [
            Some(RecordingMode::Fast),
            Some(RecordingMode::RealTime),
            Some(RecordingMode::Fast),
            // A download.
            None,
        ];
        let new: Vec<NewJob> = (0..=modes.len())
            .map(|i| NewJob {
                recording_id: format!("rec{i}"),
                target: TARGET_FILE.into(),
                payload: "{}".into(),
            })
            .collect();
        store.enqueue(&new).await.unwrap();
        for mode in modes {
            let lease = store
                .claim("w", Duration::from_secs(60), None)
                .await
                .unwrap()
                .expect("a job to claim");
            store.complete(&lease, "{}", 1, mode).await.unwrap();
        }
        let report = Report::read(&store, &[]).await.unwrap();
        store.close().await;
        let text = render(&report, 0);
        let family: Vec<&str> = text
            .lines()
            .filter(|l| l.split(['{', ' ']).any(|w| w == "bbb_migrate_outputs"))
            .collect();
        assert!(
            family[0].starts_with("# HELP bbb_migrate_outputs "),
            "{text}"
        );
        assert_eq!(
            family[1..],
            [
                "# TYPE bbb_migrate_outputs gauge",
                "bbb_migrate_outputs{mode=\"fast\"} 2",
                "bbb_migrate_outputs{mode=\"real_time\"} 1",
            ],
            "{text}"
        );
        let status: Vec<_> = report.output_modes().into_iter().collect();
        assert_eq!(status, [("fast", 2), ("real_time", 1)]);
    }
}
