//! Real headless Chromium driven over DevTools for the tests that look at a page: started
//! under the shared supervisor with a private profile, a page opened, and everything stopped
//! again.
#![allow(dead_code)]

use std::path::Path;
use std::time::{Duration, Instant};

use bbb_common::process::{GroupChild, Spawn};
use chromiumoxide::{Browser, Page};
use futures::StreamExt;

pub struct Headless {
    process: GroupChild,
    events: tokio::task::JoinHandle<()>,
    _browser: Browser,
    _profile: tempfile::TempDir,
}

/// Starts Chromium (window `width` x `height`) and opens `url` in it.
pub async fn open(url: &str, width: u32, height: u32) -> (Headless, Page) {
    let profile = tempfile::tempdir().unwrap();
    let chromium = Path::new("/usr/lib/chromium/chromium");
    assert!(
        chromium.is_file(),
        "Chromium is missing: run .ci/install-deps"
    );
    let process = Spawn::new("Chromium", chromium)
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--remote-debugging-port=0",
            "--remote-debugging-address=127.0.0.1",
        ])
        .arg(format!("--window-size={width},{height}"))
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("about:blank")
        .start()
        .expect("start Chromium");
    let port_file = profile.path().join("DevToolsActivePort");
    let deadline = Instant::now() + Duration::from_secs(30);
    let ws_url = loop {
        if let Ok(text) = std::fs::read_to_string(&port_file) {
            let mut lines = text.lines();
            if let (Some(port), Some(path)) = (lines.next(), lines.next()) {
                break format!("ws://127.0.0.1:{}{}", port.trim(), path.trim());
            }
        }
        assert!(
            Instant::now() < deadline,
            "no DevTools port within 30 s: {}",
            process.stderr_tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (browser, mut handler) = Browser::connect(ws_url).await.expect("DevTools");
    let events = tokio::spawn(async move { while handler.next().await.is_some() {} });
    let page = browser.new_page(url).await.expect("open the page");
    let headless = Headless {
        process,
        events,
        _browser: browser,
        _profile: profile,
    };
    (headless, page)
}

/// Evaluates `probe` (a JS expression) every `every` until it gives a value that is neither
/// `null` nor `false`, for at most `within`.
pub async fn wait_for(
    page: &Page,
    probe: &str,
    every: Duration,
    within: Duration,
) -> serde_json::Value {
    let until = Instant::now() + within;
    loop {
        // `null` comes back as no value at all.
        let result = page.evaluate(probe).await.expect("evaluate");
        if let Some(value) = result.value().filter(|v| !v.is_null() && **v != false) {
            return value.clone();
        }
        assert!(
            Instant::now() < until,
            "the page did not reach the state within {within:?}"
        );
        tokio::time::sleep(every).await;
    }
}

impl Headless {
    /// Stops Chromium and its process group.
    pub async fn close(self) {
        self.events.abort();
        let mut process = self.process;
        tokio::task::spawn_blocking(move || process.terminate(Duration::from_secs(3)))
            .await
            .unwrap()
            .unwrap();
    }
}
