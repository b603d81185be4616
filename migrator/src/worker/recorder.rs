//! Supervision of one `bbb-record` child: `bbb-record URL -o TMP --progress json`, no shell, in
//! its own process group, stderr kept (last lines) for the error message, stdout read as JSON
//! progress lines. On timeout, lease loss or Ctrl-C the whole group gets SIGTERM, a grace period,
//! then SIGKILL; after a normal exit any straggler of the group is killed too, so nothing is ever
//! orphaned. The exit code decides the class: 3 permanent, 4 transient (anything else: transient).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;
use tokio::sync::watch;

use crate::error::{ErrorClass, JobError, Phase};

// Documented exit codes of `bbb-record`.
pub const EXIT_USAGE: i32 = 2;
pub const EXIT_PERMANENT: i32 = 3;
pub const EXIT_TRANSIENT: i32 = 4;

const STDERR_KEEP: usize = 40;

#[derive(Debug, Clone)]
pub struct RecorderCommand {
    pub program: PathBuf,
    pub timeout: Duration,
    pub grace: Duration,
    /// Record a broken picture anyway (`--accept-broken`); its defects come back from `run`.
    pub accept_broken: bool,
    /// Host names the playback may load from besides its own (`--allow-host`: `[bbb]
    /// playback_hosts` and the server's).
    pub allow_hosts: Vec<String>,
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
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        })
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

fn read_progress(line: &str) -> Option<RecordProgress> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let num = |keys: &[&str]| {
        keys.iter()
            .find_map(|k| v.get(*k).and_then(serde_json::Value::as_f64))
    };
    let position = num(&[
        "media_time",
        "position",
        "time",
        "position_secs",
        "media_time_secs",
        "seconds",
    ])?;
    Some(RecordProgress {
        position_secs: position,
        duration_secs: num(&["duration", "duration_secs", "total", "length"]),
    })
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
}

/// The `duration` of the recorder's started event, if `line` is that event.
fn read_started(line: &str) -> Option<f64> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    if v.get("event")?.as_str()? != "started" {
        return None;
    }
    v.get("duration")?.as_f64()
}

/// The `degraded` list and `duration` of the recorder's done event, if `line` is that event.
fn read_done(line: &str) -> Option<(Vec<String>, Option<f64>)> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    if v.get("event")?.as_str()? != "done" {
        return None;
    }
    let degraded = v
        .get("degraded")
        .and_then(serde_json::Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|d| d.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    Some((
        degraded,
        v.get("duration").and_then(serde_json::Value::as_f64),
    ))
}

fn kill_group(pgid: Pid, sig: Signal) {
    // ESRCH (group already gone) is the normal case after a clean exit.
    let _ = killpg(pgid, sig);
}

/// Resolves when the child `pid` has ended, *without* reaping it: until it is reaped, its PID
/// (which is also its process group's ID) cannot be given to another process, so the last
/// SIGKILL to the group can only reach this group. A plain thread, not a blocking task, so
/// that it never holds up the runtime's shutdown.
fn ended(pid: Pid) -> tokio::sync::oneshot::Receiver<()> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        use nix::sys::wait::{Id, WaitPidFlag, waitid};
        while let Err(nix::errno::Errno::EINTR) =
            waitid(Id::Pid(pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT)
        {}
        let _ = tx.send(());
    });
    rx
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
        let mut cmd = Command::new(&self.program);
        // The URL goes through a pipe, never the command line: a protected recording's token
        // would be in every process list (`ps`, /proc/PID/cmdline) for hours.
        cmd.arg("-")
            .arg("-o")
            .arg(output)
            .arg("--progress")
            .arg("json")
            .args(self.accept_broken.then_some("--accept-broken"))
            .args(self.allow_hosts.iter().flat_map(|h| ["--allow-host", h]))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(false);
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent. If bbb-migrate
        // dies (kill -9), the recorder gets SIGTERM instead of recording on, unsupervised; TERM
        // rather than KILL so that it stops its own process group (Xvfb, Chromium) on the way out.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|e| {
            err(
                ErrorClass::Transient,
                format!("cannot start {}: {e}", self.program.display()),
            )
        })?;
        let pgid = Pid::from_raw(child.id().map(|p| p as i32).unwrap_or(0));
        if let Some(mut stdin) = child.stdin.take() {
            // One line, then end of file. A recorder that exits without reading it is seen below.
            let _ = stdin.write_all(format!("{url}\n").as_bytes()).await;
            drop(stdin);
        }

        let tail: Arc<Mutex<VecDeque<String>>> = Arc::default();
        let stderr = child.stderr.take().expect("piped");
        let tail_w = tail.clone();
        // Drained on its own task so a chatty child can never block on a full pipe.
        let stderr_task = tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                let mut t = tail_w.lock().expect("stderr tail");
                if t.len() == STDERR_KEEP {
                    t.pop_front();
                }
                t.push_back(l);
            }
        });
        let mut stdout = BufReader::new(child.stdout.take().expect("piped")).lines();

        let deadline = tokio::time::sleep(self.timeout);
        tokio::pin!(deadline);
        let mut exited = ended(pgid);
        let mut stdout_open = true;
        let mut said = RecordOutput::default();
        let mut read_line = |l: &str| {
            if let Some(p) = read_progress(l) {
                progress(p);
            } else if let Some(d) = read_started(l) {
                said.planned_secs = Some(d);
            } else if let Some((degraded, d)) = read_done(l) {
                said.degraded = degraded;
                said.done_secs = d;
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
        let status = match stop {
            Ok(()) => {
                // The child is gone, not yet reaped; take down anything it left in its group
                // (Xvfb, Chromium), then reap it.
                kill_group(pgid, Signal::SIGKILL);
                child.wait().await
            }
            Err(why) => {
                kill_group(pgid, Signal::SIGTERM);
                if tokio::time::timeout(self.grace, &mut exited).await.is_err() {
                    kill_group(pgid, Signal::SIGKILL);
                    let _ = exited.await;
                }
                kill_group(pgid, Signal::SIGKILL);
                let status = child.wait().await;
                let _ = stderr_task.await;
                tracing::debug!(record_id, ?status, "recorder stopped");
                return Err(match why {
                    Stop::Timeout => err(
                        ErrorClass::Transient,
                        format!(
                            "bbb-record still running after {:?} (timeout from the recording length); stopped{}",
                            self.timeout,
                            self.stderr_suffix(&tail)
                        ),
                    ),
                    Stop::Cancelled => err(ErrorClass::Transient, "cancelled".into()),
                });
            }
        };
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
        let _ = stderr_task.await;
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
                            self.stderr_suffix(&tail)
                        ),
                    ))
                } else {
                    Ok(said)
                }
            }
            (Some(EXIT_PERMANENT), _) => Err(err(
                ErrorClass::Permanent,
                format!(
                    "bbb-record: the playback cannot be recorded (exit 3){}",
                    self.stderr_suffix(&tail)
                ),
            )),
            // Our own command line was refused (a bbb-record of another version, or a setting it
            // does not know): every retry would be refused the same way.
            (Some(EXIT_USAGE), _) => Err(err(
                ErrorClass::Permanent,
                format!(
                    "bbb-record refused its command line (exit 2): check [recorder] command and format{}",
                    self.stderr_suffix(&tail)
                ),
            )),
            (Some(code), _) => Err(err(
                ErrorClass::Transient,
                format!(
                    "bbb-record exited with code {code}{}",
                    self.stderr_suffix(&tail)
                ),
            )),
            (None, sig) => Err(err(
                ErrorClass::Transient,
                format!(
                    "bbb-record killed by signal {}{}",
                    sig.unwrap_or(0),
                    self.stderr_suffix(&tail)
                ),
            )),
        }
    }

    fn stderr_suffix(&self, tail: &Mutex<VecDeque<String>>) -> String {
        let t = tail.lock().expect("stderr tail");
        let last: Vec<&str> = t
            .iter()
            .rev()
            .take(5)
            .map(String::as_str)
            .collect::<Vec<_>>();
        if last.is_empty() {
            String::new()
        } else {
            let mut v = last;
            v.reverse();
            format!(": {}", v.join(" | "))
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

    #[test]
    fn progress_lines() {
        let p = read_progress(r#"{"event":"progress","media_time":12.5,"duration":60}"#).unwrap();
        assert_eq!(p.position_secs, 12.5);
        assert_eq!(p.duration_secs, Some(60.0));
        assert!(read_progress("not json").is_none());
    }

    /// A purpose-written stand-in for `bbb-record`, used ONLY to test the supervision (exit-code
    /// classes, timeout, process-group kill). It records nothing; recording itself is tested
    /// end to end with the real `bbb-record` in tests/tests/migrate_claim.rs.
    const STAND_IN: &str = r#"#!/bin/sh
read -r url
case "${url##*/}" in
  ok) echo '{"event":"started","kind":"bbb-2.3","duration":3}'
    echo '{"event":"progress","media_time":1.5,"duration":3}'; printf data > "$3"; exit 0 ;;
  broken-*) [ "$6" = --accept-broken ] || { echo "render: slide-2.png is missing" >&2; exit 3; }
    echo '{"event":"warning","message":"recorded anyway"}'; printf data > "$3"
    echo '{"event":"done","output":"x","duration":3,"frames":90,"degraded":["slide-2.png is missing"]}'; exit 0 ;;
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
            allow_hosts: Vec::new(),
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
