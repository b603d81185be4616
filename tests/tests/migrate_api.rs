//! End-to-end tests of `bbb-migrate`'s API client against the fake BBB server: each fetch
//! strategy, FAILED responses, retries on HTML 404 and HTTP 500, pagination stopping at
//! totalElements, malformed recordings reported and skipped, and the CSV export.

mod migrate_support;

use fake_bbb::ApiRecording;
use migrate_support::*;

const API: &str = "/bigbluebutton/api/getRecordings";

fn listed(o: &std::process::Output) -> Vec<serde_json::Value> {
    serde_json::from_slice::<Vec<serde_json::Value>>(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "list --json output is not JSON ({e}): {}\n{}",
            text(&o.stdout),
            text(&o.stderr)
        )
    })
}

fn add_synthetic(env: &Env, n: u64) {
    env.bbb
        .add_recordings((1..=n).map(|i| ApiRecording::new(ApiRecording::synthetic_id(i))));
}

#[test]
fn each_fetch_strategy_lists_every_recording() {
    // The sample recordings (one with two formats, merged) + 230 synthetic ones.
    for (fetch, requests) in [("single", 1), ("prefix", 16), ("paged", 3)] {
        let env = setup(fetch, "");
        add_synthetic(&env, 230);
        let o = env.run(&["list", "--json"]);
        expect_code(&o, 0);
        let recs = listed(&o);
        assert_eq!(recs.len(), SAMPLE_RECORDINGS + 230, "{fetch}");
        let two = recs
            .iter()
            .find(|r| r["record_id"] == VIDEO_ID)
            .expect("sample with two formats");
        assert_eq!(
            two["playback"], "video",
            "{fetch}: the video format wins (merged formats)"
        );
        // Deterministic order: newest first.
        let starts: Vec<i64> = recs
            .iter()
            .map(|r| r["start_time"].as_i64().unwrap())
            .collect();
        assert!(
            starts.windows(2).all(|w| w[0] >= w[1]),
            "{fetch}: sorted by start time desc"
        );
        // paged: 235 recordings at 100 a page is 3 calls, and no 4th past totalElements.
        assert_eq!(env.bbb.request_count(API), requests, "{fetch}: API calls");
    }
}

#[test]
fn failed_checksum_exits_3_with_the_servers_message() {
    let env = setup("prefix", "");
    let cfg = std::fs::read_to_string(&env.config).unwrap();
    std::fs::write(&env.config, cfg.replace(env.bbb.secret(), "not-the-secret")).unwrap();
    let o = env.run(&["list"]);
    expect_code(&o, 3);
    let err = text(&o.stderr);
    assert!(
        err.contains("checksumError") && err.contains("Checksums do not match"),
        "{err}"
    );
    assert!(
        !err.contains("not-the-secret"),
        "the secret must never be printed"
    );
    assert!(
        !text(&o.stdout).contains("0 recording"),
        "a FAILED answer is not an empty list"
    );
}

#[test]
fn html_404_and_500_are_retried() {
    let env = setup("single", "");
    env.bbb.faults().api_html_404_next(2);
    let o = env.run(&["list", "--json"]);
    expect_code(&o, 0);
    assert_eq!(listed(&o).len(), SAMPLE_RECORDINGS);
    assert_eq!(
        env.bbb.request_count(API),
        3,
        "two HTML 404s, then the answer"
    );

    env.bbb.reset_request_counts();
    env.bbb.faults().fail_next(3, Some("/bigbluebutton/api/"));
    let o = env.run(&["list", "--json"]);
    expect_code(&o, 0);
    assert_eq!(env.bbb.request_count(API), 4, "three 500s, then the answer");

    // More failures than retries (3): the list cannot be fetched.
    env.bbb.reset_request_counts();
    env.bbb.faults().fail_next(10, Some("/bigbluebutton/api/"));
    let o = env.run(&["list"]);
    expect_code(&o, 3);
    assert!(text(&o.stderr).contains("HTTP 500"), "{}", text(&o.stderr));
    assert_eq!(env.bbb.request_count(API), 4, "1 try + 3 retries");
}

#[test]
fn malformed_recordings_are_reported_and_skipped() {
    let env = setup("single", "");
    let mut bad_time = ApiRecording::new(ApiRecording::synthetic_id(1));
    bad_time.start_time = "yesterday".into();
    let mut bad_id = ApiRecording::new(ApiRecording::synthetic_id(2));
    bad_id.record_id = "../../etc/passwd".into();
    let mut no_internal = ApiRecording::new(ApiRecording::synthetic_id(3));
    no_internal.internal_meeting_id = None;
    let mut empty_name = ApiRecording::new(ApiRecording::synthetic_id(4));
    empty_name.name = String::new();
    env.bbb
        .add_recordings([bad_time, bad_id, no_internal, empty_name]);
    let o = env.run(&["list", "--json"]);
    expect_code(&o, 0);
    let recs = listed(&o);
    assert_eq!(
        recs.len(),
        SAMPLE_RECORDINGS + 2,
        "the samples + the two recordings that are fine"
    );
    let err = text(&o.stderr);
    assert!(
        err.contains(&ApiRecording::synthetic_id(1)) && err.contains("startTime"),
        "{err}"
    );
    assert!(err.contains("unsafe recordID"), "{err}");
    // The CSV export carries on past them too, but they are missing rows: exit 1, named.
    let o = env.run(&["export-csv", "-o", "-"]);
    expect_code(&o, 1);
    assert_eq!(
        text(&o.stdout).matches("\r\n").count(),
        1 + SAMPLE_RECORDINGS + 2,
        "header + a row for each recording that is fine"
    );
    assert!(
        text(&o.stderr).contains(&ApiRecording::synthetic_id(1))
            && text(&o.stderr).contains("not in the CSV"),
        "{}",
        text(&o.stderr)
    );
    // Exporting only recordings that are fine is a success.
    let fine = ApiRecording::synthetic_id(3);
    expect_code(
        &env.run(&["export-csv", "-o", "-", "--record-id", &fine]),
        0,
    );
}

#[test]
fn pagination_stops_at_total_elements() {
    let env = setup("paged", "");
    add_synthetic(&env, 100 - SAMPLE_RECORDINGS as u64); // 100 in all: exactly one full page
    let o = env.run(&["list", "--json"]);
    expect_code(&o, 0);
    assert_eq!(listed(&o).len(), 100);
    assert_eq!(
        env.bbb.request_count(API),
        1,
        "offset 100 >= totalElements 100: no second call"
    );
}

#[test]
fn export_csv_writes_python_compatible_rows_and_the_cache_serves_a_rerun() {
    let env = setup("prefix", "");
    let o = env.run(&["export-csv"]);
    expect_code(&o, 0);
    let csv =
        std::fs::read(env.dir.path().join("out.csv")).expect("out.csv in the working directory");
    let csv = String::from_utf8(csv).unwrap();
    let mut lines = csv.split("\r\n");
    assert_eq!(
        lines.next().unwrap(),
        "meeting_name;recording_name;start_date;origin;origin_server_name;origin_version;origin_context;origin_id;origin_label;description;published;state;source_url"
    );
    // Newest first: sample G (16:00, a Greenlight 3 origin), ..., sample C (12:00).
    let first = lines.next().unwrap();
    assert!(
        first.starts_with("Sample whiteboard 3.0;Sample whiteboard 3.0;2026-01-01;greenlight;"),
        "{first}"
    );
    let two_formats = lines
        .clone()
        .find(|l| l.starts_with("Sample two formats;"))
        .expect("sample C's row");
    assert!(
        two_formats.starts_with("Sample two formats;Sample two formats;2026-01-01;Moodle;"),
        "{two_formats}"
    );
    assert!(
        two_formats.ends_with(&format!("/playback/video/{VIDEO_ID}/")),
        "{two_formats}"
    );
    assert!(csv.ends_with("\r\n"));
    // --use-cache answers without the server.
    let before = env.bbb.request_count(API);
    let o = env.run(&["export-csv", "--use-cache", "-o", "again.csv"]);
    expect_code(&o, 0);
    assert_eq!(env.bbb.request_count(API), before);
    assert_eq!(
        std::fs::read_to_string(env.dir.path().join("again.csv")).unwrap(),
        csv
    );
}

#[test]
fn usage_and_config_errors_exit_2() {
    let env = setup("prefix", "");
    let cfg = std::fs::read_to_string(&env.config).unwrap();
    std::fs::write(&env.config, cfg.replace("fetch = ", "fetch_strategy = ")).unwrap();
    let o = env.run(&["list"]);
    expect_code(&o, 2);
    assert!(
        text(&o.stderr).contains("fetch_strategy"),
        "{}",
        text(&o.stderr)
    );
    std::fs::write(&env.config, &cfg).unwrap();
    expect_code(&env.run(&["list", "--record-id", "../x"]), 2);
    expect_code(&env.run(&["--use-import-video"]), 2);
    // Several of Pod's modes at once: refused, naming them (Python ran one and ignored the rest).
    let o = env.run(&["--use-manual-claim", "--use_export_csv", "--dry"]);
    expect_code(&o, 2);
    assert!(
        text(&o.stderr).contains("--use-manual-claim and --use-export-csv"),
        "{}",
        text(&o.stderr)
    );
    expect_code(&env.run(&["retry"]), 2);
    // Pod's spellings are accepted.
    let o = env.run(&[
        "--use_export_csv",
        "--min-value-record-process=1",
        "--max-value-record-process=2",
        "--dry",
    ]);
    expect_code(&o, 0);
    assert!(
        text(&o.stdout).contains("would write 2 row(s)"),
        "{}",
        text(&o.stdout)
    );
}

#[test]
fn sha256_checksums_and_slow_servers() {
    let env = setup("single", "");
    // A server that accepts SHA-256 only, like bbb-web with supportedChecksumAlgorithms=sha256.
    let strict = fake_bbb::FakeBbb::builder()
        .samples_dir(samples())
        .accepted_checksums(&[fake_bbb::ChecksumAlgorithm::Sha256])
        .start_blocking()
        .expect("fake BBB server");
    let cfg = std::fs::read_to_string(&env.config)
        .unwrap()
        .replace(env.bbb.base_url(), strict.base_url())
        .replace("timeout_secs = 10", "timeout_secs = 1");
    std::fs::write(&env.config, &cfg).unwrap();
    let o = env.run(&["list"]);
    expect_code(&o, 3);
    assert!(
        text(&o.stderr).contains("checksumError"),
        "{}",
        text(&o.stderr)
    );
    std::fs::write(
        &env.config,
        cfg.replace("fetch = ", "checksum = \"sha256\"\nfetch = "),
    )
    .unwrap();
    let o = env.run(&["list", "--json"]);
    expect_code(&o, 0);
    assert_eq!(listed(&o).len(), SAMPLE_RECORDINGS);
    // Slower than the per-request timeout every time: retried, then exit 3.
    strict.reset_request_counts();
    strict
        .faults()
        .set_api_delay(std::time::Duration::from_millis(1500));
    let o = env.run(&["list"]);
    expect_code(&o, 3);
    assert_eq!(strict.request_count(API), 4, "1 try + 3 retries");
    assert!(text(&o.stderr).contains("timed out"), "{}", text(&o.stderr));
}

#[test]
fn an_unreachable_ledger_is_exit_5_in_every_command() {
    let env = setup("single", "");
    // A port nothing listens on: bound by us, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://bbb:ledger-pw@127.0.0.1:{port}/ledger");
    for args in [&["status"][..], &["claim", "--no-wait"]] {
        let o = env
            .command(args)
            .env("BBB_MIGRATE_LEDGER", &url)
            .output()
            .unwrap();
        expect_code(&o, 5);
        let err = text(&o.stderr);
        assert!(
            err.contains(&format!("127.0.0.1:{port}")),
            "{args:?}: {err}"
        );
        assert!(
            !err.contains("ledger-pw"),
            "{args:?}: the password in {err}"
        );
    }
    // A malformed URL stays a usage error.
    let o = env
        .command(&["status"])
        .env("BBB_MIGRATE_LEDGER", "mysql://x/y")
        .output()
        .unwrap();
    expect_code(&o, 2);
}
