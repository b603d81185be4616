//! Supervised child processes: the primitive every external program of this project runs under.
//!
//! A [`GroupChild`] is started in its own process group, with its stderr drained on a thread into a
//! bounded tail (kept for error messages, so a chatty child can never block on a full pipe), and
//! with `PR_SET_PDEATHSIG` so that the kernel kills it if our process dies without running any
//! destructor (SIGKILL, OOM killer). [`GroupChild::terminate`] signals the whole group with SIGTERM,
//! waits a grace period, then sends SIGKILL; `Drop` does the same, so a panic never orphans it.
//! Dropped inside a tokio runtime, it sends SIGTERM at once and waits out the grace period on a
//! blocking thread (which the runtime's shutdown waits for), so a cancelled future never stalls
//! the runtime's threads.
//!
//! `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits, not the process. A child
//! forked from a short-lived thread (tokio's blocking pool retires idle threads after 10 s) would be
//! killed at random. So every child is forked from a dedicated "keeper" thread that lives exactly as
//! long as the [`GroupChild`]; that thread does nothing but wait for the handle to be dropped.
//!
//! The death signal is SIGKILL unless [`Spawn::death_signal`] says otherwise: `bbb-migrate` asks
//! SIGTERM for `bbb-record`, so that a recorder whose migrator was killed still stops its own
//! process group (Xvfb, Chromium) on the way out. [`GroupChild::ended`] lets async code wait for the
//! end without reaping, and [`GroupChild::terminate`] can run on a blocking thread.
//!
//! This module knows nothing of X, browsers or media; `xvfb` uses it for the X server, the
//! recorder for Chromium and PulseAudio, and the migrator for `bbb-record`.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::Read;
use std::os::fd::RawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// How many bytes of a child's stderr are kept for error messages.
const STDERR_TAIL_BYTES: usize = 16 * 1024;

/// What to start and how.
#[derive(Debug, Clone)]
pub struct Spawn {
    program: PathBuf,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    env_removes: Vec<OsString>,
    current_dir: Option<PathBuf>,
    inherit_fd: Option<RawFd>,
    oom_score_adj: Option<i32>,
    stdout_piped: bool,
    stdin_piped: bool,
    death_signal: Signal,
    label: String,
}

impl Spawn {
    /// A child running `program`; `label` names it in logs and errors (e.g. "Xvfb", "Chromium").
    pub fn new(label: impl Into<String>, program: impl Into<PathBuf>) -> Self {
        Spawn {
            program: program.into(),
            args: Vec::new(),
            envs: Vec::new(),
            env_removes: Vec::new(),
            current_dir: None,
            inherit_fd: None,
            oom_score_adj: None,
            stdout_piped: false,
            stdin_piped: false,
            death_signal: Signal::SIGKILL,
            label: label.into(),
        }
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.envs.push((key.into(), value.into()));
        self
    }

    pub fn env_remove(mut self, key: impl Into<OsString>) -> Self {
        self.env_removes.push(key.into());
        self
    }

    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.current_dir = Some(dir.into());
        self
    }

    /// Keep this descriptor open (without close-on-exec) in the child, at the same number.
    pub fn inherit_fd(mut self, fd: RawFd) -> Self {
        self.inherit_fd = Some(fd);
        self
    }

    /// Set the child's `oom_score_adj` before it runs, so that its own children inherit it.
    /// Raising it is allowed without privileges.
    pub fn oom_score_adj(mut self, value: i32) -> Self {
        self.oom_score_adj = Some(value);
        self
    }

    /// Give the caller the child's stdout as a pipe (default: /dev/null).
    pub fn stdout_piped(mut self) -> Self {
        self.stdout_piped = true;
        self
    }

    /// Give the caller the child's stdin as a pipe (default: /dev/null).
    pub fn stdin_piped(mut self) -> Self {
        self.stdin_piped = true;
        self
    }

    /// The signal the kernel sends the child when its supervisor dies (default SIGKILL).
    pub fn death_signal(mut self, signal: Signal) -> Self {
        self.death_signal = signal;
        self
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// Start the child (see the module doc for the guarantees).
    pub fn start(self) -> Result<GroupChild, SpawnError> {
        let (tx, rx) = mpsc::channel::<Result<Child, std::io::Error>>();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let label = self.label.clone();
        let program = self.program.clone();
        let keeper = std::thread::Builder::new()
            .name(format!("keeper-{label}"))
            .spawn(move || {
                let result = self.command().spawn();
                let started = result.is_ok();
                let _ = tx.send(result);
                if started {
                    // Park until the GroupChild is dropped: our exit is the child's death signal.
                    let _ = release_rx.recv();
                }
            })
            .map_err(|source| SpawnError::Io {
                label: label.clone(),
                program: program.clone(),
                source,
            })?;
        let mut child = match rx.recv() {
            Ok(Ok(child)) => child,
            Ok(Err(source)) => {
                let _ = keeper.join();
                return Err(if source.kind() == std::io::ErrorKind::NotFound {
                    SpawnError::NotFound { label, program }
                } else {
                    SpawnError::Io {
                        label,
                        program,
                        source,
                    }
                });
            }
            Err(_) => {
                let _ = keeper.join();
                return Err(SpawnError::Io {
                    label,
                    program,
                    source: std::io::Error::other("keeper thread died"),
                });
            }
        };
        let tail = Arc::new(Mutex::new(VecDeque::with_capacity(1024)));
        let stderr_thread = child.stderr.take().map(|mut stderr| {
            let tail = Arc::clone(&tail);
            std::thread::Builder::new()
                .name(format!("stderr-{label}"))
                .spawn(move || {
                    let mut buf = [0u8; 4096];
                    loop {
                        match stderr.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                let mut tail = tail.lock().unwrap_or_else(|e| e.into_inner());
                                tail.extend(&buf[..n]);
                                let excess = tail.len().saturating_sub(STDERR_TAIL_BYTES);
                                tail.drain(..excess);
                            }
                        }
                    }
                })
                .expect("spawning a thread")
        });
        let pid = child.id();
        tracing::debug!(label = %label, pid, "started child process");
        Ok(GroupChild {
            child: Some(child),
            label,
            pid,
            stderr: tail,
            stderr_thread,
            keeper: Some((keeper, release_tx)),
            status: None,
            reaped: false,
            defer_drop: true,
        })
    }

    fn command(&self) -> Command {
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .stdin(if self.stdin_piped {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(if self.stdout_piped {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stderr(Stdio::piped())
            .process_group(0);
        for key in &self.env_removes {
            command.env_remove(key);
        }
        for (key, value) in &self.envs {
            command.env(key, value);
        }
        if let Some(dir) = &self.current_dir {
            command.current_dir(dir);
        }
        let inherit_fd = self.inherit_fd;
        let oom = self
            .oom_score_adj
            .map(|v| format!("{v}\n").into_bytes())
            .unwrap_or_default();
        let parent = std::process::id() as libc::pid_t;
        let death_signal = self.death_signal as libc::c_ulong;
        // SAFETY: the closure runs between fork and exec; it only calls async-signal-safe libc
        // functions (prctl, getppid, fcntl, open, write, close, _exit) on memory prepared before
        // the fork, and allocates nothing.
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, death_signal, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent may have died between fork and prctl: then nobody would kill us.
                if libc::getppid() != parent {
                    libc::_exit(1);
                }
                if let Some(fd) = inherit_fd
                    && libc::fcntl(fd, libc::F_SETFD, 0) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                if !oom.is_empty() {
                    let fd = libc::open(c"/proc/self/oom_score_adj".as_ptr(), libc::O_WRONLY);
                    if fd >= 0 {
                        libc::write(fd, oom.as_ptr().cast(), oom.len());
                        libc::close(fd);
                    }
                }
                Ok(())
            });
        }
        command
    }
}

/// A running child in its own process group. Dropping it terminates the group.
#[derive(Debug)]
pub struct GroupChild {
    /// `None` only once a drop handed the child to a blocking thread to terminate.
    child: Option<Child>,
    label: String,
    pid: u32,
    stderr: Arc<Mutex<VecDeque<u8>>>,
    stderr_thread: Option<JoinHandle<()>>,
    keeper: Option<(JoinHandle<()>, mpsc::Sender<()>)>,
    /// The leader's exit status, seen without reaping it (see [`GroupChild::try_status`]).
    status: Option<ExitStatus>,
    reaped: bool,
    /// Whether a drop inside an async runtime may hand the termination to a blocking thread
    /// (false for the handed-off child itself, whose drop must finish the job in place).
    defer_drop: bool,
}

impl GroupChild {
    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// The child's stdout, when started with [`Spawn::stdout_piped`].
    pub fn take_stdout(&mut self) -> Option<std::process::ChildStdout> {
        self.child.as_mut()?.stdout.take()
    }

    /// The child's stdin, when started with [`Spawn::stdin_piped`].
    pub fn take_stdin(&mut self) -> Option<std::process::ChildStdin> {
        self.child.as_mut()?.stdin.take()
    }

    /// Resolves once the leader has ended, without reaping it (so its group's number stays ours
    /// until [`GroupChild::terminate`]); for async code that waits on other things too. The
    /// wait runs on a thread of its own, which ends with the child.
    pub fn ended(&self) -> tokio::sync::oneshot::Receiver<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let pid = Pid::from_raw(self.pid as i32);
        std::thread::spawn(move || {
            use nix::sys::wait::{Id, WaitPidFlag, waitid};
            while let Err(nix::errno::Errno::EINTR) =
                waitid(Id::Pid(pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT)
            {}
            let _ = tx.send(());
        });
        rx
    }

    /// The last bytes the child wrote to stderr, as text.
    pub fn stderr_tail(&self) -> String {
        let tail = self.stderr.lock().unwrap_or_else(|e| e.into_inner());
        let (a, b) = tail.as_slices();
        let mut bytes = Vec::with_capacity(tail.len());
        bytes.extend_from_slice(a);
        bytes.extend_from_slice(b);
        String::from_utf8_lossy(&bytes).trim().to_owned()
    }

    /// `None` while the child runs; its exit status once it has ended.
    ///
    /// The leader is *not* reaped here: until it is, its PID (which is also the process group's
    /// ID) cannot be given to another process, so the final SIGKILL to the group in
    /// [`GroupChild::terminate`] can never hit an unrelated group that reused the number.
    pub fn try_status(&mut self) -> std::io::Result<Option<ExitStatus>> {
        if self.status.is_some() || self.reaped {
            return Ok(self.status);
        }
        use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
        let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
        let raw = match waitid(Id::Pid(Pid::from_raw(self.pid as i32)), flags)
            .map_err(std::io::Error::from)?
        {
            WaitStatus::Exited(_, code) => (code & 0xff) << 8,
            WaitStatus::Signaled(_, signal, core) => signal as i32 | if core { 0x80 } else { 0 },
            _ => return Ok(None),
        };
        self.status = Some(ExitStatus::from_raw(raw));
        Ok(self.status)
    }

    /// Collects the ended leader (after the last signal to its group).
    fn reap(&mut self) -> std::io::Result<ExitStatus> {
        let child = self
            .child
            .as_mut()
            .expect("reaped before it was handed off");
        let status = child.wait()?;
        self.reaped = true;
        Ok(*self.status.get_or_insert(status))
    }

    /// Wait until the child exits or `timeout` passes; `None` on timeout.
    pub fn wait_timeout(&mut self, timeout: Duration) -> std::io::Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_status()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Send `signal` to the whole process group.
    pub fn signal_group(&self, signal: Signal) {
        // The group may already be empty (ESRCH): nothing to do then.
        let _ = killpg(Pid::from_raw(self.pid as i32), signal);
    }

    /// SIGTERM to the group, wait up to `grace`, then SIGKILL to the group, and reap the leader.
    /// Returns the leader's exit status.
    pub fn terminate(&mut self, grace: Duration) -> std::io::Result<ExitStatus> {
        if self.reaped {
            return Ok(self.status.expect("a reaped child has a status"));
        }
        if self.try_status()?.is_none() {
            self.signal_group(Signal::SIGTERM);
            if self.wait_timeout(grace)?.is_none() {
                tracing::warn!(label = %self.label, pid = self.pid, "did not stop within {grace:?}; sending SIGKILL");
                self.signal_group(Signal::SIGKILL);
            }
        }
        // The leader has ended (or was just sent SIGKILL) and is not reaped yet, so its PID
        // still names this group alone: members that outlived it (e.g. Chromium's renderers)
        // get SIGKILL, then the leader is reaped.
        self.signal_group(Signal::SIGKILL);
        let status = self.reap()?;
        self.finish();
        Ok(status)
    }

    fn finish(&mut self) {
        if let Some(thread) = self.stderr_thread.take() {
            // The pipe closes when the last holder of it exits; every holder should be in the
            // group we just killed. A descendant that left the group would keep it open for
            // ever, so wait briefly and otherwise let the thread finish on its own.
            let deadline = Instant::now() + Duration::from_millis(500);
            while !thread.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if thread.is_finished() {
                let _ = thread.join();
            }
        }
        if let Some((keeper, release)) = self.keeper.take() {
            drop(release);
            let _ = keeper.join();
        }
    }
}

/// How long a dropped child gets between SIGTERM and SIGKILL.
const DROP_GRACE: Duration = Duration::from_secs(2);

impl Drop for GroupChild {
    fn drop(&mut self) {
        if self.keeper.is_none() && self.reaped {
            return;
        }
        // Dropped in async code (a cancelled future, a task that ended early): the grace period
        // must not block one of the runtime's few threads (the heartbeats of every other job
        // run there), so the group gets SIGTERM now and the wait moves to a blocking thread,
        // which the runtime waits for when it shuts down. Outside a runtime, here and now.
        if self.defer_drop
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
            && let Some(child) = self.child.take()
        {
            self.signal_group(Signal::SIGTERM);
            let mut handed = GroupChild {
                child: Some(child),
                label: std::mem::take(&mut self.label),
                pid: self.pid,
                stderr: self.stderr.clone(),
                stderr_thread: self.stderr_thread.take(),
                keeper: self.keeper.take(),
                status: self.status,
                reaped: self.reaped,
                // Dropped unrun (the runtime is shutting down): terminated where it is dropped.
                defer_drop: false,
            };
            self.reaped = true;
            runtime.spawn_blocking(move || {
                let _ = handed.terminate(DROP_GRACE);
            });
            return;
        }
        let _ = self.terminate(DROP_GRACE);
    }
}

/// Describe how a process ended, for error messages ("exited with code 1", "killed by SIGKILL").
pub fn describe_status(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        format!("exited with code {code}")
    } else if let Some(signal) = status.signal() {
        match Signal::try_from(signal) {
            Ok(signal) => format!("killed by {signal}"),
            Err(_) => format!("killed by signal {signal}"),
        }
    } else {
        format!("ended ({status})")
    }
}

/// Errors starting a child.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("{label}: program {program:?} not found")]
    NotFound { label: String, program: PathBuf },
    #[error("{label}: could not start {program:?}: {source}")]
    Io {
        label: String,
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A shell whose group ignores SIGTERM: only the SIGKILL after the grace period ends it.
    fn stubborn() -> GroupChild {
        Spawn::new("stubborn", "sh")
            .args(["-c", "trap '' TERM; sleep 30 & wait"])
            .start()
            .expect("sh starts")
    }

    /// `(state, process group)` from `/proc/<pid>/stat`.
    fn stat(pid: &str) -> Option<(char, u32)> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let mut fields = text.rsplit(')').next()?.split_whitespace();
        let state = fields.next()?.chars().next()?;
        let pgrp = fields.nth(1)?.parse().ok()?;
        Some((state, pgrp))
    }

    /// Whether `pid` runs (a zombie, killed and waiting to be reaped, does not).
    fn alive(pid: u32) -> bool {
        stat(&pid.to_string()).is_some_and(|(state, _)| state != 'Z')
    }

    /// Whether a process of group `pgid` still runs (the orphaned `sleep` is reaped by init,
    /// whenever it gets to it: only its state counts).
    fn group_alive(pgid: u32) -> bool {
        std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
            stat(&e.file_name().to_string_lossy()).is_some_and(|(s, g)| g == pgid && s != 'Z')
        })
    }

    #[test]
    fn a_drop_outside_a_runtime_ends_the_group_before_it_returns() {
        let child = stubborn();
        let pid = child.pid();
        std::thread::sleep(Duration::from_millis(100));
        drop(child);
        assert!(!alive(pid), "the leader is gone when drop returns");
        assert!(!group_alive(pid), "no group member left");
    }

    #[test]
    fn a_drop_in_async_code_does_not_block_and_the_runtime_waits_for_the_group() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (pid, drop_took) = runtime.block_on(async {
            let child = stubborn();
            let pid = child.pid();
            tokio::time::sleep(Duration::from_millis(100)).await;
            let t = Instant::now();
            drop(child);
            (pid, t.elapsed())
        });
        // The old drop waited the whole grace period on the runtime's thread.
        assert!(drop_took < DROP_GRACE / 4, "drop blocked for {drop_took:?}");
        drop(runtime);
        assert!(
            !alive(pid),
            "the runtime's shutdown waited for the termination"
        );
        assert!(!group_alive(pid), "no group member left");
    }
}
