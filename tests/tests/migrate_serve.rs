//! `bbb-migrate serve` against the ledger of real `claim` runs on the fake BBB server: its
//! `/api/status` is what `status --json` prints, its `/metrics` parses as Prometheus text with
//! the same numbers, while the ledger changes under it; its page, loaded by real headless
//! Chromium, shows the counts and the failure, with hostile text shown as text; a non-loopback
//! listener needs a token, and with a token every data request must carry it. During a real
//! `claim` run with the real `bbb-record`, the page shows the running job's progress, then the
//! gallery: each placed recording with its contact sheet (made by bbb-record, kept in the
//! ledger), the failure with its phase and attempts, and a flag set from the page that `retry
//! --flagged` redoes.

mod browser_support;
mod migrate_support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use chromiumoxide::page::ScreenshotParams;

use migrate_support::*;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const VIDEO_FILE: &str = "sample-two-formats-2026-01-01.m4v";

/// A running `serve`, stopped with SIGTERM when dropped.
struct Served {
    child: Child,
    url: String,
}

impl Served {
    fn start(env: &Env, listen: &str, token: Option<&str>) -> Served {
        Self::start_with(env, &["--listen", listen], token)
    }

    fn start_with(env: &Env, args: &[&str], token: Option<&str>) -> Served {
        let mut all = vec!["serve"];
        all.extend_from_slice(args);
        let mut c = env.command(&all);
        if let Some(t) = token {
            c.env("BBB_MIGRATE_SERVE_TOKEN", t);
        }
        let mut child = c
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start bbb-migrate serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let at = line
            .strip_prefix("listening on http://")
            .and_then(|r| r.split('/').next())
            .unwrap_or_else(|| panic!("serve printed {line:?}"));
        // A wildcard listener is reached through loopback.
        let port = at.rsplit(':').next().unwrap();
        Served {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// SIGTERM, then the exit code.
    fn stop(mut self) -> Option<i32> {
        kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM).unwrap();
        self.child.wait().unwrap().code()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        let _ = self.child.wait();
    }
}

/// GET `path`, with `Authorization: Bearer TOKEN` when given: the status and the body.
fn get(served: &Served, path: &str, token: Option<&str>) -> (u16, String) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut request = reqwest::Client::new().get(format!("{}{path}", served.url));
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        let response = request.send().await.expect("GET");
        let status = response.status().as_u16();
        (status, response.text().await.unwrap())
    })
}

/// POST `body` to `path` with `headers`: the status and the answer's message.
fn post(served: &Served, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut request = reqwest::Client::new()
            .post(format!("{}{path}", served.url))
            .body(body.to_owned());
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let response = request.send().await.expect("POST");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_owned))
            .unwrap_or(text);
        (status, message)
    })
}

/// What the page sends with an action.
const FROM_PAGE: &[(&str, &str)] = &[
    ("content-type", "application/json"),
    ("x-bbb-migrate", "1"),
    ("sec-fetch-site", "same-origin"),
];

fn status_json(env: &Env) -> serde_json::Value {
    let o = env.run(&["status", "--json"]);
    expect_code(&o, 0);
    serde_json::from_slice(&o.stdout).expect("status --json")
}

/// A sample's name and its labels, sorted.
type SampleKey = (String, Vec<(String, String)>);

/// The samples of `/metrics` by name and sorted labels.
fn metrics(text: &str) -> HashMap<SampleKey, f64> {
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .expect("Prometheus text");
    assert!(!scrape.samples.is_empty(), "{text}");
    scrape
        .samples
        .into_iter()
        .map(|s| {
            let value = match s.value {
                prometheus_parse::Value::Gauge(v) => v,
                other => panic!("{} is not a gauge: {other:?}", s.metric),
            };
            let mut labels: Vec<(String, String)> = s
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            labels.sort();
            ((s.metric, labels), value)
        })
        .collect()
}

fn jobs(m: &HashMap<SampleKey, f64>, state: &str) -> Option<f64> {
    let labels = vec![
        ("state".to_owned(), state.to_owned()),
        ("target".to_owned(), "file".to_owned()),
    ];
    m.get(&("bbb_migrate_jobs".to_owned(), labels)).copied()
}

/// `/api/status` and `/metrics` against `status --json`, now.
fn assert_served_matches_status(env: &Env, served: &Served) -> serde_json::Value {
    let want = status_json(env);
    let (code, body) = get(served, "/api/status", None);
    assert_eq!(code, 200, "{body}");
    let got: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(got, want);
    let (code, text) = get(served, "/metrics", None);
    assert_eq!(code, 200, "{text}");
    let m = metrics(&text);
    for (state, n) in want["counts"].as_object().unwrap() {
        assert_eq!(jobs(&m, state), n.as_f64(), "{state} in\n{text}");
    }
    let bytes = m[&("bbb_migrate_bytes_placed".to_owned(), vec![])];
    assert_eq!(Some(bytes), want["bytes_placed"].as_f64(), "{text}");
    let recorded = m[&("bbb_migrate_recorded_seconds".to_owned(), vec![])];
    assert_eq!(Some(recorded), want["recorded_secs"].as_f64(), "{text}");
    let by_mode: HashMap<String, f64> = m
        .iter()
        .filter(|((name, _), _)| name == "bbb_migrate_outputs")
        .map(|((_, labels), v)| (labels[0].1.clone(), *v))
        .collect();
    let status_modes: HashMap<String, f64> = want["output_modes"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(mode, n)| (mode.clone(), n.as_f64().unwrap()))
        .collect();
    assert_eq!(by_mode, status_modes, "{text}");
    let failed: f64 = m
        .iter()
        .filter(|((name, _), _)| name == "bbb_migrate_failed_jobs")
        .map(|(_, v)| v)
        .sum();
    assert_eq!(
        failed as usize,
        want["failures"].as_array().unwrap().len(),
        "{text}"
    );
    want
}

#[test]
fn status_and_metrics_follow_the_ledger_of_claim_runs() {
    let env = setup("single", "");
    // A video that is gone: a permanent failure, dead at once.
    env.bbb.faults().hide_files(&[".m4v"]);
    expect_code(&env.run(&["claim", "--record-id", VIDEO_ID]), 1);
    let served = Served::start(&env, "127.0.0.1:0", None);
    let s = assert_served_matches_status(&env, &served);
    assert_eq!(s["counts"]["dead"], 1, "{s}");

    // Back, retried and placed: the same server reads the new state.
    env.bbb.faults().reset();
    expect_code(&env.run(&["retry", "--failed", "--record-id", VIDEO_ID]), 0);
    expect_code(&env.run(&["claim", "--record-id", VIDEO_ID]), 0);
    assert_eq!(env.claimed(), vec![VIDEO_FILE.to_owned()]);
    let s = assert_served_matches_status(&env, &served);
    assert_eq!(s["counts"]["succeeded"], 1, "{s}");
    assert_eq!(s["last_hour"]["succeeded"], 1, "{s}");
    assert!(s["bytes_placed"].as_i64().unwrap() > 0, "{s}");
    // The placed video's length, as its container gives it.
    let length = fake_bbb::media::probe(&env.claim.join(VIDEO_FILE)).duration;
    let recorded = s["recorded_secs"].as_f64().unwrap();
    assert!(
        length > 1.0 && (recorded - length).abs() < 0.01,
        "{length} s: {s}"
    );
    assert_eq!(
        s["outputs"][0]["duration_secs"].as_f64(),
        Some(recorded),
        "{s}"
    );

    let (code, _) = get(&served, "/nothing-here", None);
    assert_eq!(code, 404);
    assert_eq!(served.stop(), Some(0), "serve ends cleanly on SIGTERM");
}

#[test]
fn beyond_loopback_a_token_is_needed_and_every_request_must_carry_it() {
    let env = setup("single", "");
    expect_code(&env.run(&["claim", "--record-id", VIDEO_ID]), 0);

    let o = env.run(&["serve", "--listen", "0.0.0.0:0"]);
    expect_code(&o, 2);
    let err = text(&o.stderr);
    assert!(err.contains("0.0.0.0:0") && err.contains("token"), "{err}");

    const TOKEN: &str = "serve-token-4f1c9";
    let served = Served::start(&env, "0.0.0.0:0", Some(TOKEN));
    for path in ["/api/status", "/metrics"] {
        assert_eq!(get(&served, path, None).0, 401, "{path} without a token");
        assert_eq!(get(&served, path, Some("wrong")).0, 401, "{path}");
        let (code, body) = get(&served, path, Some(TOKEN));
        assert_eq!(code, 200, "{path}: {body}");
    }
    let ps = std::fs::read_to_string(format!("/proc/{}/cmdline", served.child.id())).unwrap();
    assert!(
        !ps.contains(TOKEN),
        "the token is on the command line: {ps:?}"
    );
    assert_eq!(served.stop(), Some(0));
}

/// What a server may send as an error text: markup and a script that must stay text.
const HOSTILE: &str = "<img src=x onerror=\"window.pwned=1\"><b>bold</b> & \"quoted\"";

/// Waits until `probe` (a JS expression) is truthy on the page at `url` in headless Chromium;
/// returns its value and saves a screenshot at `shot`.
async fn page_state(url: &str, probe: &str, shot: &Path) -> serde_json::Value {
    let (headless, page) = browser_support::open(url, 1200, 900).await;
    let state = browser_support::wait_for(
        &page,
        probe,
        Duration::from_millis(200),
        Duration::from_secs(30),
    )
    .await;
    let png = page
        .screenshot(ScreenshotParams::builder().full_page(true).build())
        .await
        .expect("screenshot");
    std::fs::write(shot, png).unwrap();
    headless.close().await;
    state
}

#[test]
fn the_page_shows_the_counts_and_the_failure_with_hostile_text_as_text() {
    let env = setup("single", "");
    env.bbb.faults().hide_files(&[".m4v"]);
    expect_code(&env.run(&["claim", "--record-id", VIDEO_ID]), 1);
    // The error text as a hostile server could make it: the page must show it, not run it.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let db = sqlx::SqlitePool::connect(&format!("sqlite://{}", env.ledger.display()))
            .await
            .unwrap();
        let changed = sqlx::query("UPDATE job SET last_error = ? WHERE recording_id = ?")
            .bind(HOSTILE)
            .bind(VIDEO_ID)
            .execute(&db)
            .await
            .unwrap()
            .rows_affected();
        assert_eq!(changed, 1);
        db.close().await;
    });
    let served = Served::start(&env, "127.0.0.1:0", None);
    let (code, _) = get(&served, "/", None);
    assert_eq!(code, 200);
    let shot = env.dir.path().join("serve-page.png");
    const PROBE: &str = r#"(() => {
        const dead = document.querySelector('.count[data-state=dead] b');
        const error = document.querySelector('#failures .failure .error');
        if (!dead || dead.textContent !== '1' || !error) return null;
        return {
            dead: dead.textContent,
            group: document.querySelector('#failures h3').textContent,
            id: document.querySelector('#failures .failure .id').textContent,
            error: error.textContent,
            markup: document.querySelectorAll('#failures img, #failures b').length,
            pwned: typeof window.pwned,
            placed: document.querySelector('#outputs').textContent,
            totals: document.querySelector('#totals').textContent,
            buttons: document.querySelectorAll('button.action').length,
        };
    })()"#;
    let state = runtime.block_on(page_state(&format!("{}/", served.url), PROBE, &shot));
    assert_eq!(state["dead"], "1", "{state}");
    assert_eq!(state["group"], "download · permanent · dead (1)", "{state}");
    assert_eq!(state["id"], VIDEO_ID, "{state}");
    assert_eq!(state["error"], HOSTILE, "{state}");
    assert_eq!(state["markup"], 0, "{state}");
    assert_eq!(state["pwned"], "undefined", "{state}");
    assert_eq!(state["placed"], "nothing placed yet", "{state}");
    assert_eq!(
        state["buttons"], 0,
        "actions offered by a read-only server: {state}"
    );
    assert_eq!(
        state["totals"], "0 of 1 placed (0 s, 0 B) · machine time 0 s · 0 placed in the last hour",
        "{state}"
    );
    if let Ok(dir) = std::env::var("BBB_TEST_SCREENSHOTS") {
        std::fs::copy(&shot, Path::new(&dir).join("serve-page.png")).unwrap();
    }
    assert!(std::fs::metadata(&shot).unwrap().len() > 1000);
}

/// A ledger with one dead job: the video is gone on the server.
fn dead_video() -> Env {
    let env = setup("single", "");
    env.bbb.faults().hide_files(&[".m4v"]);
    expect_code(&env.run(&["claim", "--record-id", VIDEO_ID]), 1);
    env
}

/// The job as `status --json` shows it, without what names the test's own server.
fn job_state(env: &Env) -> serde_json::Value {
    let s = status_json(env);
    let failures: Vec<serde_json::Value> = s["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| serde_json::json!([f["record_id"], f["state"], f["attempts"], f["error_class"]]))
        .collect();
    serde_json::json!({ "counts": s["counts"], "failures": failures })
}

#[test]
fn actions_change_the_ledger_as_the_cli_does_and_only_from_the_page() {
    let body = format!("{{\"record_id\":\"{VIDEO_ID}\"}}");
    let env = dead_video();
    // The same recording, handled with the CLI, for comparison.
    let twin = dead_video();

    // Read-only unless asked.
    let served = Served::start(&env, "127.0.0.1:0", None);
    let (code, message) = post(&served, "/api/retry", FROM_PAGE, &body);
    assert_eq!(code, 403, "{message}");
    assert!(message.contains("--allow-actions"), "{message}");
    drop(served);

    let served = Served::start_with(&env, &["--listen", "127.0.0.1:0", "--allow-actions"], None);
    let dead = job_state(&env);
    // Requests that another site's page could make, or that do not come from the page at all.
    let forged: Vec<Vec<(&str, &str)>> = vec![
        vec![("content-type", "text/plain"), ("x-bbb-migrate", "1")],
        vec![("content-type", "application/json")],
        vec![
            ("content-type", "application/json"),
            ("x-bbb-migrate", "1"),
            ("sec-fetch-site", "cross-site"),
        ],
        vec![
            ("content-type", "application/json"),
            ("x-bbb-migrate", "1"),
            ("host", "evil.example:8090"),
        ],
    ];
    for headers in &forged {
        let (code, message) = post(&served, "/api/retry", headers, &body);
        assert_eq!(code, 403, "{headers:?}: {message}");
    }
    let (code, message) = post(
        &served,
        "/api/retry",
        FROM_PAGE,
        r#"{"record_id":"../../etc"}"#,
    );
    assert_eq!(code, 400, "{message}");
    assert_eq!(
        job_state(&env),
        dead,
        "a refused request changed the ledger"
    );

    let (code, message) = post(&served, "/api/retry", FROM_PAGE, &body);
    assert_eq!(
        (code, message.as_str()),
        (200, format!("{VIDEO_ID}: re-queued 1 job(s)").as_str())
    );
    expect_code(&twin.run(&["retry", "--record-id", VIDEO_ID]), 0);
    let retried = job_state(&env);
    assert_eq!(
        retried["counts"],
        serde_json::json!({ "pending": 1 }),
        "{retried}"
    );
    assert_eq!(retried, job_state(&twin));

    let (code, message) = post(&served, "/api/cancel", FROM_PAGE, &body);
    assert_eq!(code, 200, "{message}");
    expect_code(&twin.run(&["cancel", "--record-id", VIDEO_ID]), 0);
    let cancelled = job_state(&env);
    assert_eq!(
        cancelled["counts"],
        serde_json::json!({ "cancelled": 1 }),
        "{cancelled}"
    );
    assert_eq!(cancelled, job_state(&twin));
    // Nothing left to cancel: said, as the CLI says it (exit 1 there).
    let (code, message) = post(&served, "/api/cancel", FROM_PAGE, &body);
    assert_eq!(code, 409, "{message}");
    expect_code(&twin.run(&["cancel", "--record-id", VIDEO_ID]), 1);
    assert_eq!(served.stop(), Some(0));

    // A server started for other recordings acts on none of this one's.
    let other = "0000000000000000000000000000000000000000-1767268800000";
    let narrowed = Served::start_with(
        &env,
        &[
            "--listen",
            "127.0.0.1:0",
            "--allow-actions",
            "--record-id",
            other,
        ],
        None,
    );
    let before = job_state(&env);
    let (code, message) = post(&narrowed, "/api/retry", FROM_PAGE, &body);
    assert_eq!(code, 403, "{message}");
    assert_eq!(job_state(&env), before);
    assert_eq!(narrowed.stop(), Some(0));
}

#[test]
fn with_allow_actions_the_page_retries_a_failed_recording() {
    let env = dead_video();
    let served = Served::start_with(&env, &["--listen", "127.0.0.1:0", "--allow-actions"], None);
    // Clicks the failure's retry button once it is there, then waits for the server's answer.
    const CLICK: &str = r#"(() => {
        const notice = document.getElementById('notice');
        if (notice && !notice.hidden) return notice.textContent;
        const b = document.querySelector('#failures button[data-action=retry]');
        if (b && !b.disabled) b.click();
        return null;
    })()"#;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let shot = env.dir.path().join("serve-actions.png");
    let notice = runtime.block_on(page_state(&format!("{}/", served.url), CLICK, &shot));
    assert_eq!(notice, format!("{VIDEO_ID}: re-queued 1 job(s)"));
    let s = status_json(&env);
    assert_eq!(s["counts"], serde_json::json!({ "pending": 1 }), "{s}");
    if let Ok(dir) = std::env::var("BBB_TEST_SCREENSHOTS") {
        std::fs::copy(&shot, Path::new(&dir).join("serve-actions.png")).unwrap();
    }
}

/// A recording name as a hostile server could send it.
const HOSTILE_NAME: &str = "<img src=x onerror=\"window.pwned=1\">Cours <b>1</b>";
/// The whiteboard 2.7 sample: 8 s, its second slide at 4 s.
const SLIDES_ID: &str = "d3b87f0c63068b03147f1cfc427458543bd3829d-1767279600000";

/// The samples, with the slides sample renamed to [`HOSTILE_NAME`].
fn samples_with_a_hostile_name(dir: &Path) -> std::path::PathBuf {
    let copy = dir.join("samples");
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(samples())
        .arg(&copy)
        .status()
        .unwrap();
    assert!(status.success());
    let meta = copy
        .join("recordings/presentation")
        .join(SLIDES_ID)
        .join("metadata.xml");
    let xml = std::fs::read_to_string(&meta).unwrap();
    let escaped = HOSTILE_NAME
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;");
    let renamed = xml.replace("Sample whiteboard 2.7", &escaped);
    assert_ne!(renamed, xml);
    std::fs::write(&meta, renamed).unwrap();
    copy
}

#[test]
fn during_a_claim_run_the_page_shows_progress_then_the_gallery_with_contact_sheets() {
    let scratch = tempfile::tempdir().unwrap();
    let samples = samples_with_a_hostile_name(scratch.path());
    let recorder = workspace_bin("bbb-record", "bbb-recorder");
    let env = setup_from(
        &samples,
        "prefix",
        &format!("[recorder]\ncommand = \"{}\"\n", recorder.display()),
    );
    // Heartbeats (which carry the progress) every second, so the page sees the recording move.
    let cfg = std::fs::read_to_string(&env.config).unwrap();
    std::fs::write(
        &env.config,
        cfg.replace("retry_base_secs = 1", "retry_base_secs = 1\nlease_secs = 3"),
    )
    .unwrap();
    // A video playback whose files are gone: dead at once, in the download phase.
    let mut gone = fake_bbb::ApiRecording::new(fake_bbb::ApiRecording::synthetic_id(7));
    gone.playbacks = vec![fake_bbb::ApiPlayback::served("video", 1)];
    let gone_id = gone.record_id.clone();
    env.bbb.add_recording(gone);

    let served = Served::start_with(&env, &["--listen", "127.0.0.1:0", "--allow-actions"], None);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let claim = env
        .command(&[
            "claim",
            "--record-id",
            VIDEO_ID,
            "--record-id",
            SLIDES_ID,
            "--record-id",
            &gone_id,
            "--jobs",
            "3",
        ])
        .stdout(std::fs::File::create(env.dir.path().join("claim.out")).unwrap())
        .stderr(std::fs::File::create(env.dir.path().join("claim.err")).unwrap())
        .spawn()
        .unwrap();
    // What the claim run said, shown if the test fails before it is checked.
    struct ShowClaim<'a>(&'a Path);
    impl Drop for ShowClaim<'_> {
        fn drop(&mut self) {
            if std::thread::panicking() {
                for f in ["claim.out", "claim.err"] {
                    let t = std::fs::read_to_string(self.0.join(f)).unwrap_or_default();
                    eprintln!("--- {f}\n{t}");
                }
            }
        }
    }
    let _show = ShowClaim(env.dir.path());
    let shot = env.dir.path().join("serve-gallery.png");
    let (running, gallery) = runtime.block_on(async {
        let (headless, page) = browser_support::open(&format!("{}/", served.url), 1280, 1000).await;
        // The recording as it runs: its row, with a bar and media seconds.
        let running = browser_support::wait_for(
            &page,
            r#"(() => {
                const row = [...document.querySelectorAll('#running tr')]
                    .find(r => r.textContent.includes('seconds'));
                if (!row) return null;
                return { text: row.textContent, bar: row.querySelector('.bar div').style.width };
            })()"#,
            Duration::from_millis(200),
            Duration::from_secs(60),
        )
        .await;
        // Then the gallery: both placed recordings with their sheets drawn.
        let gallery = browser_support::wait_for(
            &page,
            r#"(() => {
                const cards = [...document.querySelectorAll('#gallery .card')];
                const dead = document.querySelector('.count[data-state=dead] b');
                if (cards.length !== 2 || !dead || dead.textContent !== '1') return null;
                const imgs = cards.map(c => c.querySelector('.sheet img'));
                if (imgs.some(i => !i || !i.complete || !i.naturalWidth)) return null;
                return {
                    cards: cards.map(c => ({
                        id: c.dataset.recordId,
                        name: c.querySelector('h3').textContent,
                        tiles: [...c.querySelectorAll('.tile')].map(t => t.className),
                        img: [c.querySelector('.sheet img').naturalWidth, c.querySelector('.sheet img').naturalHeight],
                        concerns: [...c.querySelectorAll('.concern')].map(e => e.textContent),
                    })),
                    markup: document.querySelectorAll('#gallery h3 img, #gallery h3 b').length,
                    pwned: typeof window.pwned,
                    group: document.querySelector('#failures h3').textContent,
                    failed: document.querySelector('#failures .failure .id').textContent,
                    error: document.querySelector('#failures .failure .error').textContent,
                };
            })()"#,
            Duration::from_millis(300),
            Duration::from_secs(120),
        )
        .await;
        let png = page
            .screenshot(ScreenshotParams::builder().full_page(true).build())
            .await
            .expect("screenshot");
        std::fs::write(&shot, png).unwrap();
        // The failure's attempts, opened.
        let attempts = browser_support::wait_for(
            &page,
            r#"(() => {
                const d = document.querySelector('#failures details.attempts');
                if (!d.open) { d.open = true; return null; }
                const li = d.querySelector('li');
                return li ? li.textContent : null;
            })()"#,
            Duration::from_millis(200),
            Duration::from_secs(20),
        )
        .await;
        assert!(
            attempts.as_str().unwrap().contains("permanent") && attempts.as_str().unwrap().contains("404"),
            "{attempts}"
        );
        // A person flags the recorded one as wrong, from its card.
        let flag = format!(
            r#"(() => {{
                const notice = document.getElementById('notice');
                if (!notice.hidden) return notice.textContent;
                const card = document.querySelector('#gallery .card[data-record-id="{SLIDES_ID}"]');
                const b = card.querySelector('button[data-action=flag]');
                if (b.disabled) return null;
                card.querySelector('input.flag-note').value = 'the whiteboard is missing';
                b.click();
                return null;
            }})()"#
        );
        let notice =
            browser_support::wait_for(&page, &flag, Duration::from_millis(200), Duration::from_secs(20))
                .await;
        assert_eq!(notice, format!("{SLIDES_ID}: flagged: `retry --flagged` redoes it"));
        headless.close().await;
        (running, gallery)
    });
    let mut claim = claim;
    let status = claim.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(1),
        "the claim run ends with its one failure"
    );
    if let Ok(dir) = std::env::var("BBB_TEST_SCREENSHOTS") {
        std::fs::copy(&shot, Path::new(&dir).join("serve-gallery.png")).unwrap();
    }

    assert!(
        running["text"].as_str().unwrap().contains(SLIDES_ID),
        "{running}"
    );
    assert!(running["bar"].as_str().unwrap().ends_with('%'), "{running}");
    assert_eq!(gallery["markup"], 0, "{gallery}");
    assert_eq!(gallery["pwned"], "undefined", "{gallery}");
    assert_eq!(
        gallery["group"], "download · permanent · dead (1)",
        "{gallery}"
    );
    assert_eq!(gallery["failed"], gone_id.as_str(), "{gallery}");
    assert!(
        gallery["error"].as_str().unwrap().contains("404"),
        "{gallery}"
    );
    let cards = gallery["cards"].as_array().unwrap();
    let card = |id: &str| {
        cards
            .iter()
            .find(|c| c["id"] == id)
            .unwrap_or_else(|| panic!("{id}: {gallery}"))
    };
    let slides = card(SLIDES_ID);
    assert_eq!(slides["name"], HOSTILE_NAME, "{gallery}");
    let kinds = |c: &serde_json::Value, kind: &str| {
        c["tiles"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t.as_str().unwrap().contains(kind))
            .count()
    };
    // Eight frames spread over each output; the recording adds the frame after its slide change.
    assert_eq!(kinds(slides, "spread"), 8, "{gallery}");
    assert_eq!(kinds(slides, "change"), 1, "{gallery}");
    assert_eq!(slides["concerns"], serde_json::json!([]), "{gallery}");
    let video = card(VIDEO_ID);
    assert_eq!(kinds(video, "spread"), 8, "{gallery}");
    assert_eq!(kinds(video, "change"), 0, "{gallery}");

    // The sheets as served: JPEGs of the size their layout says, with a picture in each tile.
    let (code, body) = get(&served, "/api/gallery", None);
    assert_eq!(code, 200, "{body}");
    let placed: serde_json::Value = serde_json::from_str(&body).unwrap();
    for p in placed["placed"].as_array().unwrap() {
        let sheet = &p["sheet"];
        let columns = sheet["columns"].as_u64().unwrap();
        let rows = (sheet["tiles"].as_array().unwrap().len() as u64).div_ceil(columns);
        let jpeg = runtime.block_on(async {
            reqwest::get(format!("{}/sheet/{}", served.url, p["job_id"]))
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap()
        });
        let file = env.dir.path().join(format!("sheet-{}.jpg", p["job_id"]));
        std::fs::write(&file, &jpeg).unwrap();
        let frames = fake_bbb::media::frames_rgb(&file);
        assert_eq!(frames.len(), 1, "{}", file.display());
        let (_, w, h, _) = &frames[0];
        assert_eq!(
            (*w as u64, *h as u64),
            (
                columns * sheet["tile_width"].as_u64().unwrap(),
                rows * sheet["tile_height"].as_u64().unwrap()
            ),
            "{p}"
        );
        let flat: Vec<_> = sheet["tiles"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["flat"] == true)
            .collect();
        assert!(
            flat.is_empty(),
            "flat tiles in {}: {flat:?}",
            p["record_id"]
        );
        // Never in the claim directory Pod watches.
        assert!(
            env.claimed().iter().all(|f| !f.ends_with(".jpg")),
            "{:?}",
            env.claimed()
        );
    }

    // The flag is in the ledger; `retry --flagged` redoes that recording and no other.
    let s = status_json(&env);
    let flagged: Vec<_> = s["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["flagged"] == true)
        .collect();
    assert_eq!(flagged.len(), 1, "{s}");
    assert_eq!(flagged[0]["record_id"], SLIDES_ID);
    assert_eq!(flagged[0]["flag_note"], "the whiteboard is missing");
    let o = env.run(&["retry", "--flagged"]);
    expect_code(&o, 0);
    assert_eq!(text(&o.stdout).trim(), "re-queued 1 job(s)");
    let s = status_json(&env);
    assert_eq!(
        s["counts"],
        serde_json::json!({ "succeeded": 1, "pending": 1, "dead": 1 }),
        "{s}"
    );
    assert_eq!(served.stop(), Some(0));
}

#[test]
fn the_gallery_draws_a_page_of_cards_and_more_on_request() {
    let env = setup("single", "");
    expect_code(&env.run(&["claim", "--record-id", VIDEO_ID]), 0);
    // 60 more placed recordings, as thousands would be: rows of the ledger, without sheets.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let db = sqlx::SqlitePool::connect(&format!("sqlite://{}", env.ledger.display()))
            .await
            .unwrap();
        for n in 0..60u64 {
            sqlx::query(
                "INSERT INTO job (recording_id, target, state, run_after, payload, output_bytes,
                                  created_at, updated_at, finished_at)
                 VALUES (?1, 'file', 'succeeded', 0, '{}', 1000, 0, 0, ?2)",
            )
            .bind(fake_bbb::ApiRecording::synthetic_id(n))
            .bind(1_000 + n as i64)
            .execute(&db)
            .await
            .unwrap();
        }
        db.close().await;
    });
    let served = Served::start(&env, "127.0.0.1:0", None);
    let shot = env.dir.path().join("serve-more.png");
    const MORE: &str = r#"(() => {
        const cards = document.querySelectorAll('#gallery .card').length;
        const more = document.querySelector('#gallery button.more');
        const count = document.getElementById('gallery-count').textContent;
        if (!window.firstPage) {
            if (!cards) return null;
            window.firstPage = { cards, count, more: more && more.textContent };
            more.click();
            return null;
        }
        return { first: window.firstPage, cards, count, more: !!more };
    })()"#;
    let state = runtime.block_on(page_state(&format!("{}/", served.url), MORE, &shot));
    assert_eq!(state["first"]["cards"], 48, "{state}");
    assert_eq!(
        state["first"]["count"], "61 of 61 placed recordings (the first 48 shown)",
        "{state}"
    );
    assert_eq!(state["first"]["more"], "show 13 more", "{state}");
    assert_eq!(state["cards"], 61, "{state}");
    assert_eq!(state["count"], "61 of 61 placed recordings", "{state}");
    assert_eq!(state["more"], false, "{state}");
}
