//! End-to-end tests of `bbb-migrate doctor` against the fake BBB server: a good setup is all ok
//! (PulseAudio may only warn) with a real 5-second test recording through the `bbb-record` built
//! from this workspace (`cargo build -p bbb-recorder`), and each broken setup fails on its own
//! line with exit 1: a wrong BBB secret, a claim directory no file can be made in (even as root),
//! a temp dir on another filesystem, a missing Chromium, a ledger database that is down (its
//! password never shown), a recorder without `--fast` under `[recorder] fast = true`. The broken
//! setups skip the test recording to stay fast.

mod migrate_support;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use fake_bbb::postgres::Postgres;
use migrate_support::*;

/// A setup whose `bbb-record` is the workspace's.
fn doctor_env() -> Env {
    let recorder = workspace_bin("bbb-record", "bbb-recorder");
    setup(
        "prefix",
        &format!("[recorder]\ncommand = \"{}\"\n", recorder.display()),
    )
}

/// Replaces `from` (which must be there) in the test's config.
fn edit_config(env: &Env, from: &str, to: &str) {
    let cfg = std::fs::read_to_string(&env.config).unwrap();
    assert!(cfg.contains(from), "{from:?} not in\n{cfg}");
    std::fs::write(&env.config, cfg.replacen(from, to, 1)).unwrap();
}

/// The report's lines as (status, name, whole line).
fn checks(stdout: &[u8]) -> Vec<(String, String, String)> {
    text(stdout)
        .lines()
        .map(|l| {
            let mut w = l.split_whitespace();
            let status = w.next().unwrap_or("").to_owned();
            let name = w.next().unwrap_or("").to_owned();
            (status, name, l.to_owned())
        })
        .collect()
}

/// The status and line of check `name`; panics with the whole report when it is missing.
fn check<'a>(all: &'a [(String, String, String)], name: &str) -> (&'a str, &'a str) {
    all.iter()
        .find(|c| c.1 == name)
        .map(|c| (c.0.as_str(), c.2.as_str()))
        .unwrap_or_else(|| panic!("no {name} line in {all:#?}"))
}

/// Runs `doctor ARGS`, expects `code`, returns the checks.
fn doctor(env: &Env, args: &[&str], code: i32) -> Vec<(String, String, String)> {
    let mut all = vec!["doctor"];
    all.extend_from_slice(args);
    let o = env.run(&all);
    expect_code(&o, code);
    checks(&o.stdout)
}

fn assert_status(all: &[(String, String, String)], name: &str, status: &str) {
    let (s, line) = check(all, name);
    assert_eq!(s, status, "{name}: {line}\n{all:#?}");
}

#[test]
fn a_good_setup_is_all_ok_and_records_five_seconds_through_bbb_record() {
    let env = doctor_env();
    let all = doctor(&env, &[], 0);
    for name in [
        "recorder",
        "chromium",
        "xvfb",
        "pulseaudio",
        "bbb-api",
        "ledger",
        "ledger-clock",
        "pod",
        "claim-dir",
        "temp-dir",
        "free-space",
        "test-recording",
    ] {
        let (status, line) = check(&all, name);
        let allowed: &[&str] = if name == "pulseaudio" {
            &["ok", "warning"]
        } else {
            &["ok"]
        };
        assert!(allowed.contains(&status), "{line}\n{all:#?}");
    }
    assert_eq!(all.len(), 12, "{all:#?}");
    // The libav libraries the recorder loaded, by version.
    let (_, line) = check(&all, "recorder");
    assert!(
        line.contains("libavcodec 5") || line.contains("libavcodec 6"),
        "{line}"
    );
    let (_, line) = check(&all, "test-recording");
    assert!(line.contains("5.0"), "{line}");
    // Nothing left behind: no probe file, no test recording.
    assert!(env.claimed().is_empty(), "{:?}", env.claimed());
    let temp = env.dir.path().join(".bbb-migrate-tmp");
    assert!(list(&temp).is_empty(), "{:?}", list(&temp));
    assert!(!env.ledger.exists(), "doctor created the ledger");
}

#[test]
fn json_has_one_object_per_check_for_scripts() {
    let env = doctor_env();
    let o = env.run(&["doctor", "--json", "--skip-recording"]);
    expect_code(&o, 0);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(v["ok"], true, "{v:#}");
    let list = v["checks"].as_array().expect("checks");
    assert_eq!(list.len(), 12, "{v:#}");
    for c in list {
        let keys: Vec<&str> = c.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        assert_eq!(keys, ["detail", "hint", "name", "status"], "{c}");
        assert!(
            ["ok", "warning", "failure", "skipped"].contains(&c["status"].as_str().unwrap()),
            "{c}"
        );
    }
    let rec = list.iter().find(|c| c["name"] == "test-recording").unwrap();
    assert_eq!(rec["status"], "skipped");
}

#[test]
fn a_wrong_bbb_secret_is_a_checksum_failure_and_the_secret_is_not_shown() {
    let env = doctor_env();
    const WRONG: &str = "wrong-secret-7f3a9c";
    edit_config(
        &env,
        &format!("secret = \"{}\"", env.bbb.secret()),
        &format!("secret = \"{WRONG}\""),
    );
    let o = env.run(&["doctor", "--skip-recording"]);
    expect_code(&o, 1);
    let all = checks(&o.stdout);
    assert_status(&all, "bbb-api", "failure");
    let (_, line) = check(&all, "bbb-api");
    assert!(
        line.contains("wrong secret or checksum algorithm"),
        "{line}"
    );
    assert_status(&all, "free-space", "skipped");
    assert_status(&all, "ledger", "ok");
    let shown = text(&o.stdout) + &text(&o.stderr);
    assert!(!shown.contains(WRONG), "{shown}");
}

/// Permission bits do not stop root (the tests run as root), so the claim directory is one
/// where nobody can create a file: procfs (`/proc/self`, a directory that exists).
#[test]
fn a_claim_directory_where_no_file_can_be_made_fails_even_for_root() {
    let env = doctor_env();
    let temp = env.dir.path().join("work");
    edit_config(
        &env,
        &format!(
            "default_recorder_path = \"{}/\"",
            env.dir.path().join("ftp").display()
        ),
        "default_recorder_path = \"/proc/\"",
    );
    edit_config(
        &env,
        "recorder_directory = \"bbb-claim\"",
        &format!(
            "recorder_directory = \"self\"\ntemp_dir = \"{}\"",
            temp.display()
        ),
    );
    let all = doctor(&env, &["--skip-recording"], 1);
    assert_status(&all, "claim-dir", "failure");
    let (_, line) = check(&all, "claim-dir");
    assert!(line.contains("cannot create a file"), "{line}");
    assert_status(&all, "bbb-api", "ok");
}

#[test]
fn a_temp_dir_on_another_filesystem_fails() {
    let env = doctor_env();
    let shm = Path::new("/dev/shm");
    let dev = |p: &Path| std::fs::metadata(p).unwrap().dev();
    assert_ne!(
        dev(shm),
        dev(&env.claim),
        "/dev/shm is on the claim directory's filesystem here: this test needs another one"
    );
    let temp = shm.join(format!("bbb-doctor-test-{}", std::process::id()));
    edit_config(
        &env,
        "recorder_directory = \"bbb-claim\"",
        &format!(
            "recorder_directory = \"bbb-claim\"\ntemp_dir = \"{}\"",
            temp.display()
        ),
    );
    let all = doctor(&env, &["--skip-recording"], 1);
    let _ = std::fs::remove_dir_all(&temp);
    assert_status(&all, "temp-dir", "failure");
    let (_, line) = check(&all, "temp-dir");
    assert!(line.contains("different filesystems"), "{line}");
    assert_status(&all, "claim-dir", "ok");
}

#[test]
fn a_missing_chromium_fails() {
    let env = doctor_env();
    let all = doctor(
        &env,
        &["--browser", "/nonexistent/chromium", "--skip-recording"],
        1,
    );
    assert_status(&all, "chromium", "failure");
    let (_, line) = check(&all, "chromium");
    assert!(line.contains("/nonexistent/chromium"), "{line}");
    assert_status(&all, "recorder", "ok");
    assert_status(&all, "test-recording", "skipped");
}

#[test]
fn a_ledger_database_that_is_down_fails_without_showing_its_password() {
    let env = doctor_env();
    // A loopback port nobody listens on any more.
    let port = std::net::TcpListener::bind(("127.0.0.1", 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    const PASSWORD: &str = "ledger-pw-9d41b2";
    edit_config(
        &env,
        &format!("url = \"sqlite://{}\"", env.ledger.display()),
        &format!("url = \"postgres://bbb:{PASSWORD}@127.0.0.1:{port}/ledger\""),
    );
    let o = env.run(&["doctor", "--skip-recording"]);
    expect_code(&o, 1);
    let all = checks(&o.stdout);
    assert_status(&all, "ledger", "failure");
    assert_status(&all, "ledger-clock", "skipped");
    let (_, line) = check(&all, "ledger");
    assert!(line.contains(&format!("127.0.0.1:{port}")), "{line}");
    // Told apart from a refusal (a wrong password, a missing database) by the error's cause.
    assert!(
        text(&o.stdout).contains("the database server did not answer"),
        "{}",
        text(&o.stdout)
    );
    let shown = text(&o.stdout) + &text(&o.stderr);
    assert!(!shown.contains(PASSWORD), "{shown}");
}

/// On a PostgreSQL ledger the migrations and this host's clock against the database's are
/// checked: a fresh database is fine (the first run creates the schema), the clocks agree.
#[test]
fn a_postgresql_ledger_is_checked_for_its_schema_and_clock() {
    let env = doctor_env();
    let pg = Postgres::start().unwrap_or_else(|e| panic!("test PostgreSQL server: {e}"));
    pg.create_database("ledger").unwrap();
    edit_config(
        &env,
        &format!("url = \"sqlite://{}\"", env.ledger.display()),
        &format!("url = \"{}\"", pg.url("ledger")),
    );
    let all = doctor(&env, &["--skip-recording"], 0);
    assert_status(&all, "ledger", "ok");
    assert!(
        check(&all, "ledger").1.contains("no schema yet"),
        "{all:#?}"
    );
    assert_status(&all, "ledger-clock", "ok");
    // Once a writing command has made the schema, it is current.
    expect_code(&env.run(&["retry", "--failed"]), 0);
    let all = doctor(&env, &["--skip-recording"], 0);
    let (status, line) = check(&all, "ledger");
    assert!(
        status == "ok" && line.contains("migrations current"),
        "{all:#?}"
    );
}

/// A recorder that answers `--version` but fails every recording (as one whose browser crashes
/// would): the test recording fails with the recorder's own message. A stand-in, so that the
/// failure is certain and fast; the real recorder is exercised by the good-setup test.
#[test]
fn a_recorder_that_cannot_record_fails_the_test_recording_with_its_message() {
    use std::os::unix::fs::PermissionsExt;
    let env = doctor_env();
    let script = env.dir.path().join("bbb-record");
    std::fs::write(
        &script,
        "#!/bin/sh\n[ \"$1\" = --version ] && { echo 'bbb-record 0.0.0'; exit 0; }\necho 'browser crashed' >&2\nexit 4\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let recorder = workspace_bin("bbb-record", "bbb-recorder");
    edit_config(
        &env,
        &format!("command = \"{}\"", recorder.display()),
        &format!("command = \"{}\"", script.display()),
    );
    let all = doctor(&env, &[], 1);
    assert_status(&all, "recorder", "ok");
    assert_status(&all, "test-recording", "failure");
    let (_, line) = check(&all, "test-recording");
    assert!(
        line.contains("code 4") && line.contains("browser crashed"),
        "{line}"
    );
}

/// With `[recorder] fast = true` the recorder must accept `--fast`: the workspace's does. A
/// stand-in from before fast mode (it answers `--version`, and a `--help` without `--fast`) is a
/// failure that names it and says what to do. Without fast mode there is nothing to check.
#[test]
fn fast_mode_needs_a_recorder_that_accepts_fast() {
    use std::os::unix::fs::PermissionsExt;
    let env = doctor_env();
    let all = doctor(&env, &["--skip-recording"], 0);
    assert!(all.iter().all(|c| c.1 != "recorder-fast"), "{all:#?}");

    edit_config(&env, "[recorder]\n", "[recorder]\nfast = true\n");
    let all = doctor(&env, &["--skip-recording"], 0);
    assert_eq!(all.len(), 13, "{all:#?}");
    assert_status(&all, "recorder-fast", "ok");
    let recorder = workspace_bin("bbb-record", "bbb-recorder");
    let (_, line) = check(&all, "recorder-fast");
    assert!(
        line.contains(&format!("{} accepts --fast", recorder.display())),
        "{line}"
    );

    let script = env.dir.path().join("bbb-record-before-fast");
    std::fs::write(
        &script,
        "#!/bin/sh\ncase \"$1\" in\n  --version) echo 'bbb-record 0.0.9'; exit 0 ;;\n  --help) printf 'Usage: bbb-record [OPTIONS] --output <OUTPUT> <URL>\\n\\nOptions:\\n  -o, --output <OUTPUT>\\n      --accept-broken\\n'; exit 0 ;;\nesac\necho \"error: unexpected argument '$1' found\" >&2\nexit 2\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    edit_config(
        &env,
        &format!("command = \"{}\"", recorder.display()),
        &format!("command = \"{}\"", script.display()),
    );
    let all = doctor(&env, &["--skip-recording"], 1);
    assert_status(&all, "recorder", "ok");
    assert_status(&all, "recorder-fast", "failure");
    let (_, line) = check(&all, "recorder-fast");
    for said in [
        format!("{} does not accept --fast", script.display()),
        "upgrade bbb-record".to_owned(),
        "set [recorder] fast = false".to_owned(),
    ] {
        assert!(line.contains(&said), "{said:?} not in {line}");
    }
}
