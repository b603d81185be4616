//! Progress reporting. The engine emits `Event`s; a `Reporter` renders them: indicatif bars (one
//! per running job plus an overall bar) on a terminal, JSON lines with `--progress json`, plain log
//! lines otherwise. Reporters never touch engine state.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The batch: how many selected recordings will be looked at.
    Batch { total: u64 },
    Started {
        record_id: String,
        action: &'static str,
        url: String,
    },
    /// Bytes for a download, seconds of media for a recording.
    Progress {
        record_id: String,
        done: f64,
        total: Option<f64>,
        unit: &'static str,
    },
    Finished {
        record_id: String,
        outcome: &'static str,
        detail: String,
    },
}

pub trait Reporter: Send + Sync {
    fn event(&self, e: Event);
    fn finish(&self) {}
}

/// JSON lines on stdout, one object per event.
#[derive(Debug, Default)]
pub struct JsonReporter {
    lock: Mutex<()>,
}

impl Reporter for JsonReporter {
    fn event(&self, e: Event) {
        let _g = self.lock.lock().expect("reporter");
        let mut out = std::io::stdout().lock();
        let _ = serde_json::to_writer(&mut out, &e);
        let _ = out.write_all(b"\n");
        let _ = out.flush();
    }
}

/// Plain: start and end of each job through tracing (logs go to stderr).
#[derive(Debug, Default)]
pub struct PlainReporter;

impl Reporter for PlainReporter {
    fn event(&self, e: Event) {
        match e {
            Event::Started {
                record_id, action, ..
            } => tracing::info!(record_id, "{action} started"),
            Event::Finished {
                record_id,
                outcome,
                detail,
            } => tracing::info!(record_id, "{outcome}: {detail}"),
            _ => {}
        }
    }
}

/// indicatif: an overall bar and one bar per running job.
pub struct BarsReporter {
    multi: MultiProgress,
    overall: ProgressBar,
    jobs: Mutex<HashMap<String, ProgressBar>>,
}

impl std::fmt::Debug for BarsReporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BarsReporter")
    }
}

impl Default for BarsReporter {
    fn default() -> Self {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let overall = multi.add(ProgressBar::new(0));
        overall.set_style(
            ProgressStyle::with_template(
                "{prefix:>10} [{bar:30}] {pos}/{len} recordings {elapsed}",
            )
            .expect("template")
            .progress_chars("=> "),
        );
        overall.set_prefix("total");
        BarsReporter {
            multi,
            overall,
            jobs: Mutex::default(),
        }
    }
}

impl Reporter for BarsReporter {
    fn event(&self, e: Event) {
        match e {
            Event::Batch { total } => self.overall.set_length(total),
            Event::Started {
                record_id, action, ..
            } => {
                let bar = self.multi.add(ProgressBar::new(0));
                let unit = if action == "download" {
                    "{bytes}/{total_bytes}"
                } else {
                    "{pos}/{len} s"
                };
                bar.set_style(
                    ProgressStyle::with_template(&format!(
                        "{{prefix:>10}} {action:8} [{{bar:30}}] {unit} {{msg}}"
                    ))
                    .expect("template")
                    .progress_chars("=> "),
                );
                bar.set_prefix(record_id.chars().take(10).collect::<String>());
                self.jobs.lock().expect("bars").insert(record_id, bar);
            }
            Event::Progress {
                record_id,
                done,
                total,
                ..
            } => {
                if let Some(bar) = self.jobs.lock().expect("bars").get(&record_id) {
                    if let Some(t) = total {
                        bar.set_length(t as u64);
                    }
                    bar.set_position(done as u64);
                }
            }
            Event::Finished {
                record_id,
                outcome,
                detail,
            } => {
                if let Some(bar) = self.jobs.lock().expect("bars").remove(&record_id) {
                    bar.finish_and_clear();
                    self.multi.remove(&bar);
                }
                let _ = self
                    .multi
                    .println(format!("{record_id}: {outcome} {detail}"));
                self.overall.inc(1);
            }
        }
    }

    fn finish(&self) {
        self.overall.finish_and_clear();
    }
}
