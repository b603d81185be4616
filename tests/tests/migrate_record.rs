//! End-to-end tests of `bbb-migrate claim` on presentation playbacks, with the REAL `bbb-record`
//! built from this workspace (`cargo build -p bbb-recorder`, same profile and target dir) and the
//! fake BBB server's sample presentation: the recording lands in the claim directory as an MP4, a
//! rerun does nothing, and kill -9 in the middle of a recording followed by a rerun leaves exactly
//! one file, no temp file and no recorder process. A protected recording on a PostgreSQL ledger
//! leaves its token, the ledger's password and the BBB secret in no process list and no log.
//! With `[recorder] fast`, the ledger and `status` tell which outputs fast mode made.

mod migrate_support;

use std::time::{Duration, Instant};

use fake_bbb::media::{SAMPLE_A_SECONDS, SAMPLE_B, SAMPLE_B_SECONDS, SAMPLE_F_SECONDS};
use fake_bbb::postgres::Postgres;
use migrate_support::*;

const PRESENTATION_ID: &str = "2e7380bcd2a9cc83f2a744b8707a7f75c0a94e9d-1767261600000";
const PRESENTATION_FILE: &str = "sample-presentation-2026-01-01.mp4";

fn record_env() -> Env {
    let recorder = workspace_bin("bbb-record", "bbb-recorder");
    setup(
        "prefix",
        &format!("[recorder]\ncommand = \"{}\"\n", recorder.display()),
    )
}

/// Processes whose command line mentions `needle` (a test's private temp path).
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        if stat.split_whitespace().nth(2) == Some("Z") {
            continue;
        }
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains(needle) {
            found.push(format!("{name}: {cmd}"));
        }
    }
    found
}

#[test]
fn a_presentation_is_recorded_into_the_claim_directory_and_a_rerun_does_nothing() {
    let env = record_env();
    let o = env.run(&["claim", "--record-id", PRESENTATION_ID]);
    expect_code(&o, 0);
    assert_eq!(env.claimed(), vec![PRESENTATION_FILE.to_owned()]);
    assert_recorded(&env.claim.join(PRESENTATION_FILE), SAMPLE_A_SECONDS);
    let before = env.snapshot();
    let o = env.run(&["claim", "--record-id", PRESENTATION_ID]);
    expect_code(&o, 0);
    assert!(text(&o.stdout).contains("1 skipped"), "{}", text(&o.stdout));
    let after = env.snapshot();
    let files = |v: &[(String, u64, Vec<u8>)]| {
        v.iter()
            .filter(|e| e.0.starts_with("ftp/"))
            .cloned()
            .collect::<Vec<_>>()
    };
    assert!(
        files(&after) == files(&before),
        "the claim directory changed on rerun"
    );
}

#[test]
fn kill_9_during_a_recording_then_rerun_leaves_one_file_no_temp_no_process() {
    let env = record_env();
    let cfg = std::fs::read_to_string(&env.config).unwrap();
    std::fs::write(
        &env.config,
        cfg.replace("retry_base_secs = 1", "retry_base_secs = 1\nlease_secs = 3"),
    )
    .unwrap();
    let tmp = env.dir.path().join(".bbb-migrate-tmp");
    let mut child = env
        .command(&["claim", "--record-id", PRESENTATION_ID])
        .spawn()
        .unwrap();
    // Everything that runs under bbb-migrate, by ancestry: Xvfb's command line names nothing of
    // this test, so only its ancestry tells it was ours.
    let mut watch = fake_bbb::media::ProcessWatch::start(child.id());
    let deadline = Instant::now() + Duration::from_secs(60);
    // Wait until bbb-record runs (its command line names our temp dir), then kill -9 bbb-migrate.
    while processes_mentioning(&tmp.display().to_string()).is_empty() {
        assert!(Instant::now() < deadline, "bbb-record never started");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    child.wait().unwrap();
    // The recorder dies with its parent (PDEATHSIG) and takes its own children down.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !processes_mentioning(&tmp.display().to_string()).is_empty() {
        assert!(
            Instant::now() < deadline,
            "left running: {:?}",
            processes_mentioning(&tmp.display().to_string())
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    watch.assert_none_survive("Xvfb", Duration::from_secs(30));
    assert!(env.claimed().is_empty());
    std::thread::sleep(Duration::from_millis(3500));
    let o = env.run(&["claim", "--record-id", PRESENTATION_ID]);
    expect_code(&o, 0);
    assert_eq!(env.claimed(), vec![PRESENTATION_FILE.to_owned()]);
    assert_recorded(&env.claim.join(PRESENTATION_FILE), SAMPLE_A_SECONDS);
    assert!(list(&tmp).is_empty(), "temp files left: {:?}", list(&tmp));
}

/// With `[recorder] fast = true` one claim run records sample B (audio only) in fast mode and
/// sample A, whose webcam the sample player here shows mirrored (a layout fast mode does not
/// reproduce), in real time: both are placed whole, the ledger keeps each output's mode and A's
/// reason for real time, the log names A with that reason, and `status` shows the counts by mode
/// and each output's own.
#[test]
fn fast_mode_records_what_it_can_and_status_shows_the_mode_of_each_output() {
    let env = record_env();
    let cfg = std::fs::read_to_string(&env.config).unwrap();
    std::fs::write(
        &env.config,
        cfg.replace("[recorder]\n", "[recorder]\nfast = true\n"),
    )
    .unwrap();
    // B has no webcam video: the mirror changes nothing there.
    env.bbb
        .faults()
        .set_player_knobs(Some(serde_json::json!({"mirrorWebcam": true})));
    // One recording at a time: two browsers at once on a small machine would only slow both.
    let o = env.run(&[
        "claim",
        "--jobs",
        "1",
        "--record-id",
        SAMPLE_B,
        "--record-id",
        PRESENTATION_ID,
    ]);
    expect_code(&o, 0);
    let placed = env.claimed();
    assert_eq!(placed.len(), 2, "{placed:?}");
    assert!(placed.contains(&PRESENTATION_FILE.to_owned()), "{placed:?}");
    assert_recorded(&env.claim.join(PRESENTATION_FILE), SAMPLE_A_SECONDS);
    let audio_only = placed.iter().find(|p| *p != PRESENTATION_FILE).unwrap();
    assert_recorded(&env.claim.join(audio_only), SAMPLE_B_SECONDS);

    let status = env.run(&["status", "--json"]);
    expect_code(&status, 0);
    let s: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let output = |id: &str| {
        s["outputs"]
            .as_array()
            .and_then(|a| a.iter().find(|o| o["record_id"] == id))
            .cloned()
            .unwrap_or_else(|| panic!("no output of {id}: {s}"))
    };
    let (a, b) = (output(PRESENTATION_ID), output(SAMPLE_B));
    assert_eq!(a["mode"], "real_time", "{s}");
    let plain = text(&env.run(&["status"]).stdout);
    assert!(plain.contains("outputs by mode:"), "{plain}");
    assert!(
        plain
            .lines()
            .any(|l| l.contains(PRESENTATION_ID) && l.ends_with(" bytes, real_time)")),
        "{plain}"
    );

    // What fast mode itself decides (B stepped, A in real time with its reason, kept and logged),
    // in one assertion so that a failure shows all of it.
    let log = text(&o.stderr);
    let warned = |id: &str| -> Vec<&str> {
        log.lines()
            .filter(|l| l.contains(id) && l.contains("not in fast mode"))
            .collect()
    };
    let reason = a["fast_fallback"].as_str().unwrap_or_default();
    let reason_logged =
        !reason.is_empty() && warned(PRESENTATION_ID).iter().any(|l| l.contains(reason));
    let b_line = plain
        .lines()
        .any(|l| l.contains(SAMPLE_B) && l.ends_with(" bytes, fast)"));
    let reason_shown =
        !reason.is_empty() && plain.contains(&format!("fast mode not used: {reason}"));
    assert_eq!(
        (
            b["mode"].as_str(),
            b["fast_fallback"].as_str(),
            s["output_modes"].clone(),
            !reason.is_empty(),
            reason_logged,
            warned(SAMPLE_B),
            b_line,
            reason_shown,
        ),
        (
            Some("fast"),
            None,
            serde_json::json!({"fast": 1, "real_time": 1}),
            true,
            true,
            Vec::<&str>::new(),
            true,
            true,
        ),
        "(B's mode, B's fallback, counts by mode, A has a reason, A's reason logged, warnings \
         about B, B shown as fast, A's reason shown)\n--- status --json\n{s}\n--- status\n\
         {plain}\n--- claim's log\n{log}"
    );
}

/// Sample F, a BBB 2.7 whiteboard recording.
const WHITEBOARD_ID: &str = "d3b87f0c63068b03147f1cfc427458543bd3829d-1767279600000";

/// A whiteboard recording whose second slide the server lost: by default the job is dead at once
/// (permanent, phase render, the file named) and nothing is placed; with `[recorder]
/// accept_broken = true` it is recorded and placed, and `status` lists the defect with the output.
#[test]
fn a_broken_playback_is_dead_unless_accepted_then_status_lists_its_defect() {
    let env = record_env();
    env.bbb.faults().hide_files(&["svgs/slide2.svg"]);
    let o = env.run(&["claim", "--record-id", WHITEBOARD_ID]);
    expect_code(&o, 1);
    assert!(env.claimed().is_empty(), "{:?}", env.claimed());
    let status = env.run(&["status", "--json"]);
    let s: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let failure = &s["failures"][0];
    assert_eq!(failure["state"], "dead", "{s}");
    assert_eq!(failure["error_class"], "permanent", "{s}");
    let error = failure["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains("render") && error.contains("svgs/slide2.svg"),
        "{error}"
    );
    // One attempt: a broken picture is not retried.
    assert_eq!(failure["attempts"], 1, "{s}");

    let cfg = std::fs::read_to_string(&env.config).unwrap();
    std::fs::write(
        &env.config,
        cfg.replace("[recorder]\n", "[recorder]\naccept_broken = true\n"),
    )
    .unwrap();
    expect_code(&env.run(&["retry", "--record-id", WHITEBOARD_ID]), 0);
    let o = env.run(&["claim", "--record-id", WHITEBOARD_ID]);
    expect_code(&o, 0);
    let placed = env.claimed();
    assert_eq!(placed.len(), 1, "{placed:?}");
    assert_recorded(&env.claim.join(&placed[0]), SAMPLE_F_SECONDS);
    let status = env.run(&["status", "--json"]);
    let s: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let degraded = s["outputs"][0]["degraded"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        !degraded.is_empty()
            && degraded
                .iter()
                .all(|d| d.as_str().is_some_and(|d| d.contains("svgs/slide2.svg"))),
        "{s}"
    );
    let plain = text(&env.run(&["status"]).stdout);
    assert!(
        plain.contains("degraded: ") && plain.contains("svgs/slide2.svg"),
        "{plain}"
    );
}

/// A protected (Scalelite token) presentation recorded with `-vv` logs onto a PostgreSQL ledger
/// whose URL holds a password: the process list, sampled all through the recording, and every
/// line the migrator and the recorder print hold none of the token, the password and the BBB
/// secret.
#[test]
fn no_token_password_or_secret_in_process_lists_or_logs() {
    let env = record_env();
    let pg = Postgres::start().unwrap_or_else(|e| panic!("test PostgreSQL server: {e}"));
    pg.create_database("ledger").unwrap();
    const PASSWORD: &str = "ledger-pw-e1f0c3";
    let url = pg.url("ledger").replacen('@', &format!(":{PASSWORD}@"), 1);
    assert!(url.contains(PASSWORD));
    let cfg = std::fs::read_to_string(&env.config).unwrap();
    let sqlite = format!("url = \"sqlite://{}\"", env.ledger.display());
    assert!(cfg.contains(&sqlite), "{cfg}");
    std::fs::write(
        &env.config,
        cfg.replace(&sqlite, &format!("url = \"{url}\"")),
    )
    .unwrap();
    env.bbb.faults().set_protected(true);
    let secret = env.bbb.secret().to_owned();
    // The token the listing hands out (a fresh one is fetched before the recording).
    let listing = env.run(&["list", "--json", "--record-id", WHITEBOARD_ID]);
    expect_code(&listing, 0);
    let listed = text(&listing.stdout);
    assert!(
        listed.contains("/recording/"),
        "the recording is protected: {listed}"
    );

    let mut child = env
        .command(&[
            "-vv",
            "--progress",
            "plain",
            "claim",
            "--record-id",
            WHITEBOARD_ID,
        ])
        .env("BBB_RECORD_LOG", "debug,chromiumoxide=off")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let read = |r: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            use std::io::BufRead as _;
            std::io::BufReader::new(r)
                .lines()
                .map_while(Result::ok)
                .collect::<Vec<_>>()
        })
    };
    let out = read(Box::new(child.stdout.take().unwrap()));
    let err = read(Box::new(child.stderr.take().unwrap()));
    let mut cmdlines = Vec::new();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        cmdlines.extend(processes_mentioning(""));
        std::thread::sleep(Duration::from_millis(100));
    };
    let lines: Vec<String> = [out.join().unwrap(), err.join().unwrap()].concat();
    assert!(status.success(), "{status}\n{}", lines.join("\n"));
    assert_recorded(&env.claim.join(&env.claimed()[0]), SAMPLE_F_SECONDS);
    // The recorder was seen running, and its URL came another way than its command line.
    let recorder = workspace_bin("bbb-record", "bbb-recorder");
    let recorders: Vec<&String> = cmdlines
        .iter()
        .filter(|c| c.contains(&*recorder.to_string_lossy()))
        .collect();
    assert!(
        !recorders.is_empty(),
        "bbb-record never seen in the process list"
    );
    assert!(
        recorders.iter().all(|c| c.contains(" - -o ")),
        "{recorders:?}"
    );
    // The recording went through a one-time token URL (redeemed at the server).
    assert!(
        env.bbb
            .request_count(&format!("/recording/{WHITEBOARD_ID}"))
            >= 1,
        "{:?}",
        env.bbb.request_counts()
    );
    for (what, needle) in [
        ("the ledger password", PASSWORD),
        ("the BBB secret", secret.as_str()),
    ] {
        for text in cmdlines.iter().chain(&lines) {
            assert!(!text.contains(needle), "{what} in: {text}");
        }
    }
    for text in cmdlines.iter().chain(&lines) {
        let mut rest = text.as_str();
        while let Some(i) = rest.find("token=") {
            rest = &rest[i + 6..];
            assert!(
                rest.starts_with("<token>") || rest.starts_with("%3Ctoken%3E"),
                "a token in: {text}"
            );
        }
    }
}
