//! What the user sees while a recording runs: an indicatif bar on a terminal, plain lines
//! otherwise, or one JSON object per line on stdout for programs (`bbb-migrate` reads these: the
//! lines are `bbb_common::recorder_protocol::Line`). The recorder emits [`Event`]s; this module
//! only renders them.

use std::io::Write;
use std::sync::{Arc, Mutex};

use bbb_common::recorder_protocol::{FailureClass, Line};
use indicatif::{ProgressBar, ProgressStyle};

use crate::error::{Class, RecordError};
use crate::record::{Event, Outcome};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressMode {
    /// A bar on a terminal, plain lines otherwise.
    Auto,
    Bar,
    Json,
    None,
}

/// Renders events in the chosen mode.
pub struct Progress {
    mode: ProgressMode,
    bar: Mutex<Option<ProgressBar>>,
}

impl Progress {
    pub fn new(mode: ProgressMode) -> Arc<Progress> {
        let mode = match mode {
            ProgressMode::Auto if std::io::IsTerminal::is_terminal(&std::io::stderr()) => {
                ProgressMode::Bar
            }
            other => other,
        };
        Arc::new(Progress {
            mode,
            bar: Mutex::new(None),
        })
    }

    fn json(line: Line) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", line.to_json());
        let _ = out.flush();
    }

    fn line(text: &str) {
        let _ = writeln!(std::io::stderr().lock(), "{text}");
    }

    pub fn event(&self, event: Event) {
        match (self.mode, event) {
            (ProgressMode::None, Event::Warning(w)) => tracing::warn!("{w}"),
            (ProgressMode::None, _) => {}
            (ProgressMode::Json, Event::Started { kind, duration }) => {
                Self::json(Line::Started { kind, duration })
            }
            (
                ProgressMode::Json,
                Event::Progress {
                    media_time,
                    duration,
                },
            ) => Self::json(Line::Progress {
                media_time,
                duration,
            }),
            (ProgressMode::Json, Event::Stalled { media_time }) => {
                Self::json(Line::Stalled { media_time })
            }
            (ProgressMode::Bar, Event::Stalled { .. }) => {}
            (_, Event::Stalled { media_time }) => {
                Self::line(&format!("waiting for data at {}", clock(media_time)))
            }
            (ProgressMode::Json, Event::Warning(w)) => Self::json(Line::Warning { message: w }),
            (ProgressMode::Bar, Event::Started { duration, kind }) => {
                let bar = ProgressBar::new((duration * 1000.0) as u64);
                bar.set_style(
                    ProgressStyle::with_template(
                        "{prefix} [{elapsed_precise}] {wide_bar} {msg} ETA {eta}",
                    )
                    .expect("valid template"),
                );
                bar.set_prefix(kind);
                *self.bar.lock().unwrap_or_else(|e| e.into_inner()) = Some(bar);
            }
            (
                ProgressMode::Bar,
                Event::Progress {
                    media_time,
                    duration,
                },
            ) => {
                if let Some(bar) = &*self.bar.lock().unwrap_or_else(|e| e.into_inner()) {
                    bar.set_position((media_time.max(0.0) * 1000.0) as u64);
                    let rate = media_time / bar.elapsed().as_secs_f64().max(0.001);
                    bar.set_message(format!(
                        "{} / {} ({rate:.2}x)",
                        clock(media_time),
                        clock(duration)
                    ));
                }
            }
            (ProgressMode::Bar, Event::Warning(w)) => {
                match &*self.bar.lock().unwrap_or_else(|e| e.into_inner()) {
                    Some(bar) => bar.println(format!("warning: {w}")),
                    None => Self::line(&format!("warning: {w}")),
                }
            }
            (_, Event::Started { kind, duration }) => {
                Self::line(&format!("recording {kind} playback of {}", clock(duration)))
            }
            (
                _,
                Event::Progress {
                    media_time,
                    duration,
                },
            ) => Self::line(&format!("{} / {}", clock(media_time), clock(duration))),
            (_, Event::Warning(w)) => Self::line(&format!("warning: {w}")),
        }
    }

    pub fn done(&self, outcome: &Outcome) {
        if let Some(bar) = self.bar.lock().unwrap_or_else(|e| e.into_inner()).take() {
            bar.finish_and_clear();
        }
        match self.mode {
            ProgressMode::Json => Self::json(Line::Done {
                output: outcome.output.clone(),
                duration: outcome.duration,
                frames: outcome.frames,
                degraded: outcome.degraded.clone(),
                assets_answered: outcome.assets_answered.clone(),
                sheet: outcome.sheet.clone(),
                mode: outcome.mode,
                fast_fallback: outcome.fast_fallback.clone(),
            }),
            ProgressMode::None => {}
            _ => {
                Self::line(&format!(
                    "wrote {} ({}, {} frames)",
                    outcome.output.display(),
                    clock(outcome.duration),
                    outcome.frames
                ));
                if let Some(sheet) = &outcome.sheet {
                    let flat = sheet.tiles.iter().filter(|t| t.flat).count();
                    Self::line(&format!(
                        "contact sheet: {} tiles, {flat} of one flat colour",
                        sheet.tiles.len()
                    ));
                }
            }
        }
    }

    pub fn error(&self, error: &RecordError) {
        if let Some(bar) = self.bar.lock().unwrap_or_else(|e| e.into_inner()).take() {
            bar.abandon();
        }
        let class = match error.class {
            Class::Permanent => FailureClass::Permanent,
            Class::Transient => FailureClass::Transient,
        };
        if self.mode == ProgressMode::Json {
            Self::json(Line::Error {
                class,
                phase: error.phase.name().to_owned(),
                message: error.to_string(),
            });
        }
    }
}

fn clock(seconds: f64) -> String {
    let s = seconds.max(0.0);
    let total = s as u64;
    format!(
        "{}:{:02}:{:02}.{:01}",
        total / 3600,
        total / 60 % 60,
        total % 60,
        ((s - total as f64) * 10.0) as u64
    )
}
