//! Chromium on the virtual display: launch (flags, kiosk window, fresh profile, `oom_score_adj`),
//! the DevTools connection through chromiumoxide, and the signals that a browser died.
//!
//! Chromium is started by us, not by chromiumoxide, so that it runs under the same supervision as
//! every other child (own process group, death signal, stderr kept; see `bbb_common::process`), and so
//! that nothing can try to download a browser. chromiumoxide then connects to its DevTools socket.

use std::path::PathBuf;
use std::time::Duration;

use bbb_common::process::{GroupChild, Spawn};
use chromiumoxide::Browser;
use futures::StreamExt;
use tokio::sync::watch;

use crate::error::{Phase, RecordError};

/// How much more likely than anything else the kernel should pick the browser under memory
/// pressure: losing a browser is a transient failure, losing the recorder or a batch worker is not.
const BROWSER_OOM_SCORE_ADJ: i32 = 500;

/// Find a Chromium binary: the real binary behind Debian's wrapper script first (the wrapper adds
/// flags from /etc/chromium.d that we do not want), then the usual names on `PATH`.
pub fn find_browser() -> Option<PathBuf> {
    bbb_common::chromium::find()
}

/// What the browser needs to know about its surroundings.
#[derive(Debug, Clone)]
pub struct LaunchOptions {
    pub binary: PathBuf,
    pub display: String,
    pub xauthority: PathBuf,
    pub width: u32,
    pub height: u32,
    pub profile_dir: PathBuf,
    /// Silence the browser (the sound comes from the recording's own media).
    pub mute: bool,
    /// Extra environment (PulseAudio server for generic pages).
    pub env: Vec<(String, String)>,
}

/// A running Chromium with a DevTools connection.
pub struct Chromium {
    pub browser: Browser,
    process: GroupChild,
    handler: tokio::task::JoinHandle<()>,
    /// Becomes `true` when the DevTools connection ends (WebSocket lost or browser gone).
    pub connection_lost: watch::Receiver<bool>,
}

impl Chromium {
    pub async fn launch(opts: &LaunchOptions) -> Result<Chromium, RecordError> {
        let ph = Phase::Browser;
        std::fs::create_dir_all(&opts.profile_dir)
            .map_err(|e| RecordError::transient(ph, format!("creating the profile: {e}")))?;
        let mut spawn = Spawn::new("Chromium", &opts.binary)
            .args([
                "--remote-debugging-port=0",
                "--remote-debugging-address=127.0.0.1",
                "--no-first-run",
                "--no-default-browser-check",
                // The machine's network reaches nothing else; these stop Chromium from trying.
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-default-apps",
                "--disable-extensions",
                "--disable-breakpad",
                "--disable-domain-reliability",
                // Long recordings: never slow down timers or rendering of the only window.
                "--disable-background-timer-throttling",
                "--disable-backgrounding-occluded-windows",
                "--disable-renderer-backgrounding",
                "--disable-hang-monitor",
                "--disable-features=Translate,MediaRouter,OptimizationHints,DialMediaRouteProvider,CalculateNativeWinOcclusion,GlobalMediaControls",
                "--disable-session-crashed-bubble",
                "--noerrdialogs",
                "--password-store=basic",
                "--use-mock-keychain",
                // The player never autoplays; this is the documented way to start it by script.
                "--autoplay-policy=no-user-gesture-required",
                "--kiosk",
                "--window-position=0,0",
                "--force-device-scale-factor=1",
                "--hide-scrollbars",
                "--ozone-platform=x11",
                // No GPU under Xvfb: software compositing is the stable path.
                "--disable-gpu",
                // Keeps the "unsupported command-line flag" infobar (for --no-sandbox) away.
                "--test-type",
            ])
            .arg(format!("--window-size={},{}", opts.width, opts.height))
            .arg(format!("--user-data-dir={}", opts.profile_dir.display()))
            .env("DISPLAY", &opts.display)
            .env("XAUTHORITY", &opts.xauthority)
            .oom_score_adj(BROWSER_OOM_SCORE_ADJ);
        if nix::unistd::geteuid().is_root() {
            // Chromium refuses to run as root with its sandbox.
            spawn = spawn.arg("--no-sandbox");
        }
        if opts.mute {
            spawn = spawn.arg("--mute-audio");
        }
        for (k, v) in &opts.env {
            spawn = spawn.env(k, v);
        }
        let mut process = spawn.arg("about:blank").start().map_err(|e| {
            RecordError::permanent(
                ph,
                format!("{e} (install Debian's `chromium` package or pass --browser)"),
            )
        })?;

        // Chromium writes the port it chose to DevToolsActivePort in the profile.
        let port_file = opts.profile_dir.join("DevToolsActivePort");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let ws_url = loop {
            if let Ok(text) = std::fs::read_to_string(&port_file) {
                let mut lines = text.lines();
                if let (Some(port), Some(path)) = (lines.next(), lines.next()) {
                    break format!("ws://127.0.0.1:{}{}", port.trim(), path.trim());
                }
            }
            if let Ok(Some(status)) = process.try_status() {
                return Err(RecordError::transient(
                    ph,
                    format!(
                        "Chromium {} at start; its stderr: {}",
                        bbb_common::process::describe_status(status),
                        process.stderr_tail()
                    ),
                ));
            }
            if tokio::time::Instant::now() > deadline {
                return Err(RecordError::transient(
                    ph,
                    format!(
                        "Chromium did not open its DevTools port within 30 s; its stderr: {}",
                        process.stderr_tail()
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let (browser, mut handler) = Browser::connect(ws_url)
            .await
            .map_err(|e| RecordError::transient(ph, format!("DevTools connection: {e}")))?;
        let (lost_tx, lost_rx) = watch::channel(false);
        let handler = tokio::spawn(async move {
            while let Some(event) = handler.next().await {
                if let Err(e) = event {
                    tracing::debug!("DevTools handler stopped: {e}");
                    break;
                }
            }
            let _ = lost_tx.send(true);
        });
        Ok(Chromium {
            browser,
            process,
            handler,
            connection_lost: lost_rx,
        })
    }

    /// `Some(description)` once the browser process has ended.
    pub fn exited(&mut self) -> Option<String> {
        match self.process.try_status() {
            Ok(Some(status)) => Some(format!(
                "Chromium {}; its stderr: {}",
                bbb_common::process::describe_status(status),
                self.process.stderr_tail()
            )),
            _ => None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Close the browser politely, then make sure its whole process group is gone.
    pub async fn shutdown(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(3), self.browser.close()).await;
        self.handler.abort();
        let mut process = self.process;
        let _ =
            tokio::task::spawn_blocking(move || process.terminate(Duration::from_secs(3))).await;
    }
}
