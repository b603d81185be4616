//! A supervisor for the Xvfb virtual X display.
//!
//! [`Xvfb::start`] launches `Xvfb -displayfd`: the server picks a free display number itself and
//! writes it to a pipe once it accepts connections, so there is no lock-file guessing and no race
//! between two recorders starting at once. The server runs in its own process group, listens on no
//! TCP port, requires an MIT-MAGIC-COOKIE (other local users cannot watch the recordings), and its
//! stderr is kept for error messages. [`Display::stop`] (and `Drop`, also while unwinding from a
//! panic) sends SIGTERM, waits, then SIGKILL; see `bbb_common::process` (re-exported as
//! [`process`]) for how orphans are prevented even when our own process is killed.
//!
//! Nothing here knows about browsers or media.

pub use bbb_common::process;

use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use crate::process::{GroupChild, Spawn, SpawnError, describe_status};

/// The Debian package that provides the `Xvfb` binary.
pub const XVFB_PACKAGE: &str = "xvfb";

/// How to start an X server.
#[derive(Debug, Clone)]
pub struct Xvfb {
    width: u32,
    height: u32,
    depth: u8,
    program: PathBuf,
    startup_timeout: Duration,
    stop_grace: Duration,
    auth_file: Option<PathBuf>,
}

impl Xvfb {
    /// A screen of `width` x `height` at 24 bits per pixel.
    pub fn new(width: u32, height: u32) -> Self {
        Xvfb {
            width,
            height,
            depth: 24,
            program: PathBuf::from("Xvfb"),
            startup_timeout: Duration::from_secs(15),
            stop_grace: Duration::from_secs(3),
            auth_file: None,
        }
    }

    /// Colour depth in bits (8, 16, 24 or 32).
    pub fn depth(mut self, depth: u8) -> Self {
        self.depth = depth;
        self
    }

    /// The Xvfb binary to run (default: `Xvfb` from `PATH`).
    pub fn program(mut self, program: impl Into<PathBuf>) -> Self {
        self.program = program.into();
        self
    }

    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self
    }

    pub fn stop_grace(mut self, grace: Duration) -> Self {
        self.stop_grace = grace;
        self
    }

    /// Where to write the Xauthority file clients need (default: a private temporary directory
    /// owned by the [`Display`]). A program that connects to the display itself (libxcb reads
    /// `XAUTHORITY` from its own environment) chooses the path before it starts its threads.
    pub fn auth_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.auth_file = Some(path.into());
        self
    }

    /// Start the server and wait until it accepts connections.
    pub fn start(&self) -> Result<Display, Error> {
        if !(1..=16384).contains(&self.width) || !(1..=16384).contains(&self.height) {
            return Err(Error::InvalidSize {
                width: self.width,
                height: self.height,
            });
        }
        if ![8, 16, 24, 32].contains(&self.depth) {
            return Err(Error::InvalidDepth(self.depth));
        }
        let (auth_dir, auth_file) = match &self.auth_file {
            Some(path) => (None, path.clone()),
            None => {
                let dir = tempfile::Builder::new()
                    .prefix("xvfb-auth-")
                    .tempdir()
                    .map_err(Error::Io)?;
                let path = dir.path().join("Xauthority");
                (Some(dir), path)
            }
        };
        let cookie = random_cookie().map_err(Error::Io)?;
        // The server loads every cookie in the file whatever display it names; the client entry
        // for the real display number is added once the server has told us which one it took.
        write_cookie(&auth_file, ":0", &cookie)?;

        let (ready_read, ready_write) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| Error::Io(e.into()))?;
        let screen = format!("{}x{}x{}", self.width, self.height, self.depth);
        let child = Spawn::new("Xvfb", &self.program)
            .args(["-displayfd", &ready_write.as_raw_fd().to_string()])
            .args(["-screen", "0", &screen])
            .args(["-nolisten", "tcp", "-noreset"])
            .arg("-auth")
            .arg(auth_file.as_os_str())
            .inherit_fd(ready_write.as_raw_fd())
            .start()
            .map_err(|e| match e {
                SpawnError::NotFound { program, .. } => Error::NotInstalled { program },
                other => Error::Spawn(other),
            })?;
        // Our copy of the write end must go, or a dying server would never give us EOF.
        drop(ready_write);
        let mut display = Display {
            child,
            number: 0,
            name: String::new(),
            width: self.width,
            height: self.height,
            depth: self.depth,
            auth_file,
            _auth_dir: auth_dir,
            stop_grace: self.stop_grace,
        };
        let number = display.wait_ready(ready_read, self.startup_timeout)?;
        display.number = number;
        display.name = format!(":{number}");
        write_cookie(&display.auth_file, &display.name, &cookie)?;
        let (name, pid) = (display.name.as_str(), display.child.pid());
        tracing::debug!(name, pid, "Xvfb ready");
        Ok(display)
    }
}

/// A running Xvfb server. Dropping it stops the server.
#[derive(Debug)]
pub struct Display {
    child: GroupChild,
    number: u32,
    name: String,
    width: u32,
    height: u32,
    depth: u8,
    auth_file: PathBuf,
    _auth_dir: Option<tempfile::TempDir>,
    stop_grace: Duration,
}

impl Display {
    /// The display name for `DISPLAY` and X clients, e.g. `:99`.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn number(&self) -> u32 {
        self.number
    }

    pub fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    pub fn depth(&self) -> u8 {
        self.depth
    }

    /// The Xauthority file a client must use (`XAUTHORITY`).
    pub fn xauthority(&self) -> &Path {
        &self.auth_file
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// `Ok` while the server runs; [`Error::Died`] once it has ended for any reason.
    pub fn check(&mut self) -> Result<(), Error> {
        match self.child.try_status().map_err(Error::Io)? {
            None => Ok(()),
            Some(status) => Err(Error::Died {
                display: self.name.clone(),
                how: describe_status(status),
                stderr: self.child.stderr_tail(),
            }),
        }
    }

    /// Stop the server: SIGTERM, grace period, SIGKILL. An error if it had already died.
    pub fn stop(mut self) -> Result<(), Error> {
        let died = self.check().err();
        self.child.terminate(self.stop_grace).map_err(Error::Io)?;
        match died {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    fn wait_ready(&mut self, ready: OwnedFd, timeout: Duration) -> Result<u32, Error> {
        let deadline = Instant::now() + timeout;
        let mut file = std::fs::File::from(ready);
        let mut text = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let _ = self.child.terminate(self.stop_grace);
                return Err(Error::StartTimeout {
                    timeout,
                    stderr: self.child.stderr_tail(),
                });
            }
            let wait = PollTimeout::try_from(left.min(Duration::from_millis(200)))
                .unwrap_or(PollTimeout::MAX);
            let mut fds = [PollFd::new(file.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, wait) {
                Ok(0) => continue,
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(Error::Io(e.into())),
            }
            let mut buf = [0u8; 32];
            let n = file.read(&mut buf).map_err(Error::Io)?;
            if n == 0 {
                // EOF before a number: the server exited (display in use, bad option, ...).
                let status = self
                    .child
                    .wait_timeout(self.stop_grace)
                    .map_err(Error::Io)?;
                return Err(Error::StartFailed {
                    how: status.map_or_else(|| "closed its ready pipe".into(), describe_status),
                    stderr: self.child.stderr_tail(),
                });
            }
            text.extend_from_slice(&buf[..n]);
            if let Some(end) = text.iter().position(|&b| b == b'\n') {
                let line = String::from_utf8_lossy(&text[..end]).trim().to_owned();
                return line.parse().map_err(|_| Error::StartFailed {
                    how: format!("reported an unreadable display number {line:?}"),
                    stderr: self.child.stderr_tail(),
                });
            }
        }
    }
}

impl Drop for Display {
    fn drop(&mut self) {
        let _ = self.child.terminate(self.stop_grace);
    }
}

fn random_cookie() -> std::io::Result<String> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Add an MIT-MAGIC-COOKIE-1 entry with the `xauth` tool (package `xauth`), which owns the
/// binary file format and its locking.
fn write_cookie(file: &Path, display: &str, cookie: &str) -> Result<(), Error> {
    let output = std::process::Command::new("xauth")
        .arg("-q")
        .arg("-f")
        .arg(file)
        .args(["add", display, "MIT-MAGIC-COOKIE-1", cookie])
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::XauthNotInstalled
            } else {
                Error::Io(e)
            }
        })?;
    if !output.status.success() {
        return Err(Error::Xauth(
            String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        ));
    }
    Ok(())
}

/// Why a display could not be started or kept running.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "Xvfb not found ({program:?}): install the Debian package `{XVFB_PACKAGE}` (apt-get install xvfb)"
    )]
    NotInstalled { program: PathBuf },
    #[error("xauth not found: install the Debian package `xauth` (apt-get install xauth)")]
    XauthNotInstalled,
    #[error("xauth failed: {0}")]
    Xauth(String),
    #[error("invalid screen size {width}x{height}")]
    InvalidSize { width: u32, height: u32 },
    #[error("invalid colour depth {0} (8, 16, 24 or 32)")]
    InvalidDepth(u8),
    #[error("could not start Xvfb: {0}")]
    Spawn(#[source] SpawnError),
    #[error("Xvfb failed to start: it {how}; its stderr: {stderr}")]
    StartFailed { how: String, stderr: String },
    #[error("Xvfb was not ready within {timeout:?}; its stderr: {stderr}")]
    StartTimeout { timeout: Duration, stderr: String },
    #[error("Xvfb on display {display} died: it {how}; its stderr: {stderr}")]
    Died {
        display: String,
        how: String,
        stderr: String,
    },
    #[error("I/O error supervising Xvfb: {0}")]
    Io(#[source] std::io::Error),
}
