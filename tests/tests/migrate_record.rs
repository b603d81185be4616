//! End-to-end tests of `bbb-migrate claim` on presentation playbacks, with the REAL `bbb-record`
//! built from this workspace (`cargo build -p bbb-recorder`, same profile and target dir) and the
//! fake BBB server's sample presentation: the recording lands in the claim directory as an MP4, a
//! rerun does nothing, and kill -9 in the middle of a recording followed by a rerun leaves exactly
//! one file, no temp file and no recorder process.

mod migrate_support;

use std::time::{Duration, Instant};

use migrate_support::*;

const PRESENTATION_ID: &str = "2e7380bcd2a9cc83f2a744b8707a7f75c0a94e9d-1767261600000";
const PRESENTATION_FILE: &str = "sample-presentation-2026-01-01.mp4";

fn record_env() -> Env {
    let recorder = workspace_bin("bbb-record", "bbb-recorder", "recorder");
    setup(
        "prefix",
        &format!("[recorder]\ncommand = \"{}\"\n", recorder.display()),
    )
}

fn is_mp4(path: &std::path::Path) -> bool {
    let data = std::fs::read(path).unwrap_or_default();
    data.len() > 1000 && &data[4..8] == b"ftyp"
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
    assert!(is_mp4(&env.claim.join(PRESENTATION_FILE)), "not an MP4");
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
    assert!(env.claimed().is_empty());
    std::thread::sleep(Duration::from_millis(3500));
    let o = env.run(&["claim", "--record-id", PRESENTATION_ID]);
    expect_code(&o, 0);
    assert_eq!(env.claimed(), vec![PRESENTATION_FILE.to_owned()]);
    assert!(is_mp4(&env.claim.join(PRESENTATION_FILE)));
    assert!(list(&tmp).is_empty(), "temp files left: {:?}", list(&tmp));
}
