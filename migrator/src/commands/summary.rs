//! What a `claim` or `import` run ends with: the summary of its jobs (text or JSON), the jobs
//! left unfinished, and the exit code they make.

use super::*;

pub(super) struct Failure {
    pub(super) record_id: String,
    pub(super) state: String,
    pub(super) error: String,
}

/// The selected jobs a run ends with that are neither succeeded nor failed for good: held under
/// another worker's lease, or waiting for their retry backoff. What `--no-wait` leaves behind and
/// reports with exit 4; a waiting run only ends with some when it was interrupted or lost the
/// ledger, and then they are failures of the run (exit 1).
#[derive(Default)]
pub(super) struct Unfinished {
    /// (record id, holder, lease expiry as text)
    pub(super) held: Vec<(String, String, String)>,
    /// (record id, "retry scheduled (...)", last error)
    pub(super) retrying: Vec<(String, String, String)>,
}

impl Unfinished {
    /// Takes `j` if it is unfinished (running, or pending after a failed attempt); false for
    /// every other state. `running`: the ledger's running jobs of this target, by recording.
    pub(super) fn add(
        &mut self,
        j: &JobRow,
        running: &BTreeMap<String, RunningJob>,
        tz: Tz,
    ) -> bool {
        match j.state {
            JobState::Running => {
                let r = running.get(&j.recording_id);
                let holder = r
                    .and_then(|r| r.owner.clone())
                    .unwrap_or_else(|| "?".into());
                let until = match r.and_then(|r| r.lease_expires_ms) {
                    Some(ms) if r.is_some_and(|r| r.expired) => format!(
                        "lease expired at {} (the next run takes it over)",
                        local_time(ms, tz)
                    ),
                    Some(ms) => format!("lease until {}", local_time(ms, tz)),
                    None => "lease expiry unknown".into(),
                };
                self.held.push((j.recording_id.clone(), holder, until));
                true
            }
            JobState::Pending if j.last_error.is_some() => {
                self.retrying.push((
                    j.recording_id.clone(),
                    format!(
                        "retry scheduled ({}/{} attempts), not before {}",
                        j.attempts,
                        j.max_attempts,
                        local_time(j.run_after_ms, tz)
                    ),
                    j.last_error.clone().unwrap_or_default(),
                ));
                true
            }
            _ => false,
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.held.is_empty() && self.retrying.is_empty()
    }

    /// The end of the summary line: nothing when there is nothing unfinished.
    pub(super) fn counts(&self) -> String {
        let mut t = String::new();
        if !self.held.is_empty() {
            t += &format!(", {} held by other hosts", self.held.len());
        }
        if !self.retrying.is_empty() {
            t += &format!(", {} waiting for a retry", self.retrying.len());
        }
        t
    }

    pub(super) fn print(&self, o: &mut impl Write) {
        for (id, holder, until) in &self.held {
            let _ = writeln!(o, "  HELD {id} by {holder}, {until}");
        }
        for (id, state, error) in &self.retrying {
            let _ = writeln!(o, "  RETRY {id} [{state}]: {error}");
        }
    }

    pub(super) fn json(&self) -> (serde_json::Value, serde_json::Value) {
        let held = self
            .held
            .iter()
            .map(|(id, h, u)| serde_json::json!({"record_id": id, "holder": h, "lease": u}))
            .collect();
        let retrying = self
            .retrying
            .iter()
            .map(|(id, st, e)| serde_json::json!({"record_id": id, "state": st, "error": e}))
            .collect();
        (held, retrying)
    }

    /// FAILED when something failed (it wins over the rest); then, with jobs left unfinished,
    /// HELD for a `--no-wait` run and FAILED for a waiting one (it should have finished them).
    pub(super) fn exit_code(&self, failed: bool, wait: bool) -> i32 {
        if failed {
            exit::FAILED
        } else if self.is_empty() {
            exit::OK
        } else if wait {
            exit::FAILED
        } else {
            exit::HELD
        }
    }
}

/// The running jobs of `target`, by recording.
pub(super) fn held_by_target(
    running: Vec<RunningJob>,
    target: &str,
) -> BTreeMap<String, RunningJob> {
    running
        .into_iter()
        .filter(|r| r.target == target)
        .map(|r| (r.recording_id.clone(), r))
        .collect()
}

pub(super) struct Summary {
    pub(super) selected: usize,
    pub(super) done: Vec<(String, String, u64)>,
    pub(super) skipped: usize,
    pub(super) failed: Vec<Failure>,
    pub(super) unfinished: Unfinished,
    pub(super) bytes: u64,
    pub(super) machine: Duration,
    pub(super) malformed: usize,
    pub(super) count_malformed: bool,
}

impl Summary {
    /// `after`: the ledger's rows once the workers are done, with its running jobs.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn build(
        ids: &[String],
        before: &BTreeMap<String, JobRow>,
        after: (&BTreeMap<String, JobRow>, &BTreeMap<String, RunningJob>),
        reports: &[worker::JobReport],
        missing: &[RecordId],
        fetched: &FetchResult,
        explicit_ids: &[String],
        tz: Tz,
    ) -> Summary {
        let (after, running) = after;
        let mut s = Summary {
            selected: ids.len(),
            done: Vec::new(),
            skipped: 0,
            failed: Vec::new(),
            unfinished: Unfinished::default(),
            bytes: 0,
            machine: reports.iter().map(|r| r.elapsed).sum(),
            malformed: fetched.malformed.len(),
            // With an explicit --record-id list, unrelated malformed entries are not this run's failures.
            count_malformed: explicit_ids.is_empty(),
        };
        for r in reports {
            if let JobOutcome::Placed { path, bytes } | JobOutcome::AlreadyPlaced { path, bytes } =
                &r.outcome
            {
                s.done
                    .push((r.record_id.clone(), path.display().to_string(), *bytes));
                s.bytes += bytes;
            }
        }
        for id in ids {
            let was_done = before
                .get(id)
                .is_some_and(|j| j.state == JobState::Succeeded);
            match after.get(id) {
                Some(j) if j.state == JobState::Succeeded => {
                    if was_done && !s.done.iter().any(|d| &d.0 == id) {
                        s.skipped += 1;
                    }
                }
                Some(j) if s.unfinished.add(j, running, tz) => {}
                Some(j) => s.failed.push(Failure {
                    record_id: id.clone(),
                    state: j.state.as_str().to_owned(),
                    error: j.last_error.clone().unwrap_or_else(|| "not run".into()),
                }),
                None => s.failed.push(Failure {
                    record_id: id.clone(),
                    state: "unknown".into(),
                    error: "not in the ledger".into(),
                }),
            }
        }
        for id in missing {
            s.failed.push(Failure {
                record_id: id.to_string(),
                state: "missing".into(),
                error: "not listed by the server".into(),
            });
        }
        for m in &fetched.malformed {
            if s.count_malformed {
                s.failed.push(Failure {
                    record_id: m
                        .record_id
                        .clone()
                        .unwrap_or_else(|| format!("#{}", m.index)),
                    state: "malformed".into(),
                    error: m.reason.clone(),
                });
            }
        }
        s
    }

    pub(super) fn print(&self, json: bool) {
        let mut o = out();
        if json {
            let (held, retrying) = self.unfinished.json();
            let v = serde_json::json!({
                "event": "summary",
                "selected": self.selected,
                "done": self.done.iter().map(|(id, p, b)| serde_json::json!({"record_id": id, "path": p, "bytes": b})).collect::<Vec<_>>(),
                "skipped": self.skipped,
                "failed": self.failed.iter().map(|f| serde_json::json!({"record_id": f.record_id, "state": f.state, "error": f.error})).collect::<Vec<_>>(),
                "held": held,
                "retrying": retrying,
                "malformed": self.malformed,
                "bytes_placed": self.bytes,
                "machine_time_secs": self.machine.as_secs_f64(),
            });
            let _ = writeln!(o, "{v}");
            return;
        }
        let _ = writeln!(
            o,
            "summary: {} selected, {} done, {} skipped (already done), {} failed{}, {} bytes placed, machine time {}",
            self.selected,
            self.done.len(),
            self.skipped,
            self.failed.len(),
            self.unfinished.counts(),
            self.bytes,
            human_secs(self.machine.as_secs() as i64)
        );
        for (id, p, b) in &self.done {
            let _ = writeln!(o, "  done {id} -> {p} ({b} bytes)");
        }
        for f in &self.failed {
            let _ = writeln!(o, "  FAILED {} [{}]: {}", f.record_id, f.state, f.error);
        }
        self.unfinished.print(&mut o);
        if self.malformed > 0 && !self.count_malformed {
            let _ = writeln!(
                o,
                "  ({} malformed recording(s) in the server's list were skipped)",
                self.malformed
            );
        }
    }
}
