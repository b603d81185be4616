//! Supervision of one `bbb-record` child: `bbb-record - -o TMP --progress json` (the URL on its
//! stdin), no shell, under the shared supervisor (`bbb_common::process`: own process group, a
//! keeper thread for the death signal, stderr tail kept for the error message), stdout read as
//! the protocol's JSON lines (`bbb_common::recorder_protocol`). On timeout, lease loss or
//! Ctrl-C the whole group gets SIGTERM, a grace period, then SIGKILL; after a normal exit any
//! straggler of the group is killed too, so nothing is ever orphaned. The exit code decides the
//! class: 3 permanent, 4 transient (anything else: transient).

use std::path::{Path, PathBuf};
use std::time::Duration;

use bbb_common::process::{GroupChild, Spawn};
use bbb_common::recorder_protocol::{ContactSheet, Line, RecordingMode, exit};
use nix::sys::signal::Signal;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::watch;

use crate::error::{ErrorClass, JobError, Phase};

#[derive(Debug, Clone)]
pub struct RecorderCommand {
    pub program: PathBuf,
    pub timeout: Duration,
    pub grace: Duration,
    /// Record a broken picture anyway (`--accept-broken`); its defects come back from `run`.
    pub accept_broken: bool,
    /// Ask for fast mode (`--fast`); the mode bbb-record used, and why not fast if it did not,
    /// come back from `run`.
    pub fast: bool,
    /// Host names the playback may load from besides its own (`--allow-host`: `[bbb]
    /// playback_hosts` and the server's).
    pub allow_hosts: Vec<String>,
    /// More arguments after the protocol's own, for a page that is not a BBB playback (the
    /// doctor's test recording: `--duration`, `--audio`).
    pub extra_args: Vec<String>,
}

/// Why the child was stopped by us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Timeout,
    Cancelled,
}

/// Finds the recorder: the configured command (a path, or a name looked up in PATH), else
/// `bbb-record` next to the running executable, else `bbb-record` in PATH.
pub fn resolve_program(configured: Option<&str>) -> Option<PathBuf> {
    let lookup = |name: &str| -> Option<PathBuf> {
        if name.contains('/') {
            let p = PathBuf::from(name);
            return p.is_file().then_some(p);
        }
        which::which(name).ok()
    };
    if let Some(c) = configured {
        return lookup(c);
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("bbb-record")))
        .filter(|p| p.is_file());
    beside.or_else(|| lookup("bbb-record"))
}

/// Progress reported by the child, as far as it could be read from a JSON line.
#[derive(Debug, Clone, Copy, Default)]
pub struct RecordProgress {
    pub position_secs: f64,
    pub duration_secs: Option<f64>,
}

/// The progress a protocol line reports, if it reports any (a stall reports the position only).
fn progress_of(line: &Line) -> Option<RecordProgress> {
    match *line {
        Line::Progress {
            media_time,
            duration,
        } => Some(RecordProgress {
            position_secs: media_time,
            duration_secs: Some(duration),
        }),
        Line::Stalled { media_time } => Some(RecordProgress {
            position_secs: media_time,
            duration_secs: None,
        }),
        _ => None,
    }
}

/// What bbb-record said about its output, from its JSON events.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecordOutput {
    /// The defects of a broken picture recorded anyway (the done event's `degraded`; empty
    /// without `accept_broken`).
    pub degraded: Vec<String>,
    /// The length it set out to record (the started event's `duration`): for a BBB playback
    /// the recording's own `<playback><duration>` from its metadata.xml, to the millisecond.
    pub planned_secs: Option<f64>,
    /// The length it says it wrote (the done event's `duration`).
    pub done_secs: Option<f64>,
    /// The contact sheet it made (`--contact-sheet`, the done event's `sheet`).
    pub sheet: Option<ContactSheet>,
    /// How it captured the picture (the done event's `mode`); `None` without a done event.
    pub mode: Option<RecordingMode>,
    /// Why it recorded in real time although fast mode was asked for (the done event's
    /// `fast_fallback`).
    pub fast_fallback: Option<String>,
}

/// `: line | line | ...` with the last five lines of the child's stderr, or nothing.
fn stderr_suffix(child: &GroupChild) -> String {
    let tail = child.stderr_tail();
    let lines: Vec<&str> = tail.lines().collect();
    let last = &lines[lines.len().saturating_sub(5)..];
    if last.is_empty() {
        String::new()
    } else {
        format!(": {}", last.join(" | "))
    }
}

impl RecorderCommand {
    /// Runs the recorder for `url` into `output`. Returns when the child and its whole process
    /// group are gone, with what its events said about the output (the defects of a broken
    /// picture recorded anyway, the planned and the written length). `full_disk` is asked after a
    /// failure: its note (a directory is full) makes the failure transient whatever the exit code
    /// said, since the recorder cannot tell us ENOSPC in a form we could classify.
    pub async fn run(
        &self,
        record_id: &str,
        url: &str,
        output: &Path,
        mut cancel: watch::Receiver<bool>,
        progress: &(dyn Fn(RecordProgress) + Send + Sync),
        full_disk: &(dyn Fn() -> Option<String> + Send + Sync),
    ) -> Result<RecordOutput, JobError> {
        self.run_child(record_id, url, output, &mut cancel, progress)
            .await
            .map_err(|mut e| {
                if e.message != "cancelled"
                    && let Some(note) = full_disk()
                {
                    e.class = ErrorClass::Transient;
                    e.message.push_str(&note);
                }
                e
            })
    }

    async fn run_child(
        &self,
        record_id: &str,
        url: &str,
        output: &Path,
        cancel: &mut watch::Receiver<bool>,
        progress: &(dyn Fn(RecordProgress) + Send + Sync),
    ) -> Result<RecordOutput, JobError> {
        let err = |class, msg: String| JobError::new(record_id, Phase::Record, class, msg);
        // The URL goes through a pipe, never the command line: a protected recording's token
        // would be in every process list (`ps`, /proc/PID/cmdline) for hours. If bbb-migrate
        // dies (kill -9), the recorder gets SIGTERM instead of recording on, unsupervised; TERM
        // rather than KILL so that it stops its own process group (Xvfb, Chromium) on the way out.
        let mut child = Spawn::new("bbb-record", &self.program)
            .arg("-")
            .arg("-o")
            .arg(output)
            .args(["--progress", "json"])
            .args(self.accept_broken.then_some("--accept-broken"))
            .args(self.fast.then_some("--fast"))
            .args(
                self.allow_hosts
                    .iter()
                    .flat_map(|h| ["--allow-host", h.as_str()]),
            )
            .args(&self.extra_args)
            .stdin_piped()
            .stdout_piped()
            .death_signal(Signal::SIGTERM)
            .start()
            .map_err(|e| {
                err(
                    ErrorClass::Transient,
                    format!("cannot start bbb-record: {e}"),
                )
            })?;
        if let Some(mut stdin) = child.take_stdin() {
            // One line (far below a pipe's buffer, so this cannot block), then end of file. A
            // recorder that exits without reading it is seen below.
            use std::io::Write;
            let _ = stdin.write_all(format!("{url}\n").as_bytes());
        }
        let stdout = child
            .take_stdout()
            .map(tokio::process::ChildStdout::from_std)
            .expect("piped")
            .map_err(|e| err(ErrorClass::Transient, format!("bbb-record's stdout: {e}")))?;
        let mut stdout = BufReader::new(stdout).lines();

        let deadline = tokio::time::sleep(self.timeout);
        tokio::pin!(deadline);
        let mut exited = child.ended();
        let mut stdout_open = true;
        let mut said = RecordOutput::default();
        let mut read_line = |l: &str| {
            let Some(line) = Line::parse(l) else { return };
            if let Some(p) = progress_of(&line) {
                progress(p);
            }
            match line {
                Line::Started { duration, .. } => said.planned_secs = Some(duration),
                Line::Done {
                    degraded,
                    duration,
                    sheet,
                    mode,
                    fast_fallback,
                    ..
                } => {
                    said.degraded = degraded;
                    said.done_secs = Some(duration);
                    said.sheet = sheet;
                    said.mode = Some(mode);
                    said.fast_fallback = fast_fallback;
                }
                _ => {}
            }
        };
        let stop = loop {
            tokio::select! {
                _ = &mut exited => break Ok(()),
                line = stdout.next_line(), if stdout_open => match line {
                    Ok(Some(l)) => read_line(&l),
                    _ => stdout_open = false,
                },
                _ = &mut deadline => break Err(Stop::Timeout),
                r = cancel.changed() => {
                    if r.is_err() || *cancel.borrow() { break Err(Stop::Cancelled) }
                }
            }
        };
        // The leader has ended (or is told to, with the grace period): whatever is left in its
        // group (Xvfb, Chromium) is killed before the leader is reaped.
        let grace = if stop.is_ok() {
            Duration::ZERO
        } else {
            self.grace
        };
        let (status, child) = tokio::task::spawn_blocking(move || {
            let status = child.terminate(grace);
            (status, child)
        })
        .await
        .map_err(|e| err(ErrorClass::Transient, format!("stopping bbb-record: {e}")))?;
        let stderr = stderr_suffix(&child);
        if let Err(why) = stop {
            tracing::debug!(record_id, ?status, "recorder stopped");
            return Err(match why {
                Stop::Timeout => err(
                    ErrorClass::Transient,
                    format!(
                        "bbb-record still running after {:?} (timeout from the recording length); stopped{}",
                        self.timeout, stderr
                    ),
                ),
                Stop::Cancelled => err(ErrorClass::Transient, "cancelled".into()),
            });
        }
        // Progress lines written just before the exit are still in the pipe.
        let drain = async {
            while stdout_open {
                match stdout.next_line().await {
                    Ok(Some(l)) => read_line(&l),
                    _ => stdout_open = false,
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
        let status = status.map_err(|e| {
            err(
                ErrorClass::Transient,
                format!("waiting for bbb-record: {e}"),
            )
        })?;
        use std::os::unix::process::ExitStatusExt;
        match (status.code(), status.signal()) {
            (Some(0), _) => {
                let size = std::fs::metadata(output).map(|m| m.len()).unwrap_or(0);
                if size == 0 {
                    // bbb-recorder famously exited 0 without output (spec 8): never trust the code alone.
                    Err(err(
                        ErrorClass::Transient,
                        format!(
                            "bbb-record exited 0 but {} is missing or empty{}",
                            output.display(),
                            stderr
                        ),
                    ))
                } else {
                    Ok(said)
                }
            }
            (Some(exit::PERMANENT), _) => Err(err(
                ErrorClass::Permanent,
                format!(
                    "bbb-record: the playback cannot be recorded (exit 3){}",
                    stderr
                ),
            )),
            // Our own command line was refused (a bbb-record of another version, or a setting it
            // does not know): every retry would be refused the same way.
            (Some(exit::USAGE), _) => Err(err(
                ErrorClass::Permanent,
                format!(
                    "bbb-record refused its command line (exit 2): check [recorder] command, format and fast{}",
                    stderr
                ),
            )),
            (Some(code), _) => Err(err(
                ErrorClass::Transient,
                format!("bbb-record exited with code {code}{}", stderr),
            )),
            (None, sig) => Err(err(
                ErrorClass::Transient,
                format!("bbb-record killed by signal {}{}", sig.unwrap_or(0), stderr),
            )),
        }
    }
}

/// Wall-clock limit of a recording: length x factor + margin (spec 8).
pub fn record_timeout(
    length_secs: Option<u64>,
    factor: f64,
    margin_secs: u64,
    default_secs: u64,
) -> Duration {
    let len = length_secs.unwrap_or(default_secs) as f64;
    Duration::from_secs_f64(len * factor.max(1.0) + margin_secs as f64)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::Mutex;

    #[tokio::test]
    async fn a_broken_playback_is_recorded_only_when_accepted_and_its_defects_come_back() {
        let (r, _, _) = run("broken-refused", Duration::from_secs(10), None).await;
        assert_eq!(r.unwrap_err().class, ErrorClass::Permanent);
        let (r, out, _) = run("broken-accepted", Duration::from_secs(10), None).await;
        let said = r.unwrap();
        assert_eq!(said.degraded, vec!["slide-2.png is missing".to_string()]);
        assert_eq!(said.done_secs, Some(3.0));
        assert!(out.is_file());
        let (r, _, _) = run("ok", Duration::from_secs(10), None).await;
        let said = r.unwrap();
        assert!(said.degraded.is_empty());
        assert_eq!((said.planned_secs, said.done_secs), (Some(3.0), None));
    }

    #[tokio::test]
    async fn fast_mode_is_asked_for_and_the_mode_used_comes_back_with_the_reason_for_real_time() {
        let (r, _, _) = run("fast", Duration::from_secs(10), None).await;
        let said = r.unwrap();
        assert_eq!(
            (said.mode, said.fast_fallback),
            (Some(RecordingMode::Fast), None)
        );
        let (r, _, _) = run("fast-fallback", Duration::from_secs(10), None).await;
        let said = r.unwrap();
        assert_eq!(said.mode, Some(RecordingMode::RealTime));
        assert_eq!(said.fast_fallback.as_deref(), Some("a screen share"));
        // No done event (a recorder that never says): the mode is not known.
        let (r, _, _) = run("ok", Duration::from_secs(10), None).await;
        assert_eq!(r.unwrap().mode, None);
    }

    #[test]
    fn progress_lines() {
        let line = Line::parse(r#"{"event":"progress","media_time":12.5,"duration":60}"#).unwrap();
        let p = progress_of(&line).unwrap();
        assert_eq!(p.position_secs, 12.5);
        assert_eq!(p.duration_secs, Some(60.0));
        let stalled = progress_of(&Line::Stalled { media_time: 3.0 }).unwrap();
        assert_eq!((stalled.position_secs, stalled.duration_secs), (3.0, None));
        let warning = Line::Warning {
            message: "x".into(),
        };
        assert!(progress_of(&warning).is_none());
    }

    /// A purpose-written stand-in for `bbb-record`, used ONLY to test the supervision (exit-code
    /// classes, timeout, process-group kill) and the worker around it. It records nothing
    /// (`sample-*` copy the video `sample.mp4` from beside the script, so that a worker's checks
    /// of the output pass); recording itself is tested end to end with the real `bbb-record` in
    /// tests/tests/migrate_claim.rs.
    const STAND_IN: &str = r#"#!/bin/sh
read -r url
case "${url##*/}" in
  ok) echo '{"event":"started","kind":"bbb-2.3","duration":3}'
    echo '{"event":"progress","media_time":1.5,"duration":3}'; printf data > "$3"; exit 0 ;;
  broken-*) [ "$6" = --accept-broken ] || { echo "render: slide-2.png is missing" >&2; exit 3; }
    echo '{"event":"warning","message":"recorded anyway"}'; printf data > "$3"
    echo '{"event":"done","output":"x","duration":3,"frames":90,"degraded":["slide-2.png is missing"]}'; exit 0 ;;
  fast) [ "$6" = --fast ] || exit 2; printf data > "$3"
    echo '{"event":"done","output":"x","duration":3,"frames":9,"mode":"fast"}'; exit 0 ;;
  fast-fallback) [ "$6" = --fast ] || exit 2; printf data > "$3"
    echo '{"event":"warning","message":"fast mode cannot record a screen share: real time"}'
    echo '{"event":"done","output":"x","duration":3,"frames":90,"mode":"real_time","fast_fallback":"a screen share"}'; exit 0 ;;
  sample-fast) cp "${0%/*}/sample.mp4" "$3"
    echo '{"event":"done","output":"x","duration":8,"frames":9,"mode":"fast","degraded":["slide-2.png is missing"]}'; exit 0 ;;
  sample-fast-fallback) cp "${0%/*}/sample.mp4" "$3"
    echo '{"event":"done","output":"x","duration":8,"frames":90,"mode":"real_time","fast_fallback":"a screen share"}'; exit 0 ;;
  no-output) echo "all fine" >&2; exit 0 ;;
  permanent) echo "recording not found (404)" >&2; exit 3 ;;
  transient) echo "browser crashed" >&2; exit 4 ;;
  usage) echo "error: unexpected argument '--new-flag'" >&2; exit 2 ;;
  hang) sleep 1000 & echo $! > "$3.grandchild"; sleep 1000 ;;
  leave-behind) sleep 1000 & echo $! > "$3.grandchild"; printf data > "$3"; exit 0 ;;
  ignore-term) trap '' TERM; sleep 1000 & echo $! > "$3.grandchild"; while true; do sleep 1; done ;;
esac
"#;

    pub(crate) fn stand_in(dir: &Path) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.join("fake-recorder.sh");
        std::fs::write(&p, STAND_IN).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    async fn run(
        mode: &str,
        timeout: Duration,
        cancel_after: Option<Duration>,
    ) -> (Result<RecordOutput, JobError>, PathBuf, Vec<RecordProgress>) {
        let dir = tempfile::tempdir().unwrap().keep();
        let cmd = RecorderCommand {
            program: stand_in(&dir),
            timeout,
            grace: Duration::from_millis(300),
            accept_broken: mode == "broken-accepted",
            fast: mode.starts_with("fast"),
            allow_hosts: Vec::new(),
            extra_args: Vec::new(),
        };
        let out = dir.join("out.mp4");
        let (tx, rx) = watch::channel(false);
        if let Some(d) = cancel_after {
            tokio::spawn(async move {
                tokio::time::sleep(d).await;
                let _ = tx.send(true);
            });
        } else {
            std::mem::forget(tx);
        }
        let seen = Mutex::new(Vec::new());
        let r = cmd
            .run(
                "rec-1",
                mode,
                &out,
                rx,
                &|p| seen.lock().unwrap().push(p),
                &|| None,
            )
            .await;
        (r, out, seen.into_inner().unwrap())
    }

    /// Whether the process whose pid is in `pid_file` has stopped running (dead, or a zombie
    /// waiting for a reaper). Signals are delivered asynchronously: allow a moment.
    pub(crate) fn gone(pid_file: &Path) -> bool {
        gone_pid(&std::fs::read_to_string(pid_file).unwrap())
    }

    pub(crate) fn gone_pid(pid: &str) -> bool {
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        loop {
            let running = match std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())) {
                Err(_) => false,
                Ok(stat) => stat.split_whitespace().nth(2) != Some("Z"),
            };
            if !running {
                return true;
            }
            if std::time::Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[tokio::test]
    async fn exit_codes_decide_the_class() {
        let (r, out, seen) = run("ok", Duration::from_secs(20), None).await;
        r.unwrap();
        assert_eq!(std::fs::read(out).unwrap(), b"data");
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].position_secs, 1.5);

        let (r, ..) = run("permanent", Duration::from_secs(20), None).await;
        let e = r.unwrap_err();
        assert_eq!(e.class, ErrorClass::Permanent);
        assert_eq!(e.phase, Phase::Record);
        assert!(
            e.to_string().contains("rec-1") && e.message.contains("recording not found (404)"),
            "{e}"
        );

        let (r, ..) = run("transient", Duration::from_secs(20), None).await;
        let e = r.unwrap_err();
        assert_eq!(e.class, ErrorClass::Transient);
        assert!(
            e.message.contains("code 4") && e.message.contains("browser crashed"),
            "{e}"
        );

        let (r, ..) = run("usage", Duration::from_secs(20), None).await;
        let e = r.unwrap_err();
        assert_eq!(e.class, ErrorClass::Permanent);
        assert!(
            e.message.contains("exit 2") && e.message.contains("--new-flag"),
            "{e}"
        );

        let (r, ..) = run("no-output", Duration::from_secs(20), None).await;
        let e = r.unwrap_err();
        assert_eq!(e.class, ErrorClass::Transient);
        assert!(e.message.contains("missing or empty"), "{e}");
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_process_group() {
        let started = std::time::Instant::now();
        let (r, out, _) = run("hang", Duration::from_millis(700), None).await;
        let e = r.unwrap_err();
        assert!(e.message.contains("timeout"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(
            gone(&out.with_extension("mp4.grandchild")),
            "grandchild still running"
        );
    }

    /// A recorder that succeeds but leaves a process behind in its group: the group is killed
    /// once the leader has ended (and before it is reaped).
    #[tokio::test]
    async fn what_a_successful_recorder_leaves_in_its_group_is_killed() {
        let (r, out, _) = run("leave-behind", Duration::from_secs(20), None).await;
        r.unwrap();
        assert!(
            gone(&out.with_extension("mp4.grandchild")),
            "grandchild still running"
        );
    }

    #[tokio::test]
    async fn cancel_escalates_to_sigkill_when_term_is_ignored() {
        let started = std::time::Instant::now();
        let (r, out, _) = run(
            "ignore-term",
            Duration::from_secs(60),
            Some(Duration::from_millis(500)),
        )
        .await;
        assert_eq!(r.unwrap_err().message, "cancelled");
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(
            gone(&out.with_extension("mp4.grandchild")),
            "grandchild still running"
        );
    }

    #[test]
    fn timeout_from_length() {
        assert_eq!(
            record_timeout(Some(600), 1.5, 600, 3600),
            Duration::from_secs(1500)
        );
        assert_eq!(record_timeout(None, 1.5, 0, 100), Duration::from_secs(150));
    }
}
