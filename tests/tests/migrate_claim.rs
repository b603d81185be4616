//! End-to-end tests of `bbb-migrate claim` (mode 1) against the fake BBB server: video playbacks
//! downloaded into the Pod claim directory, reruns, a playback that 404s, --dry-run, --jobs 2,
//! a dropped connection resumed, protected token URLs, kill -9 in the middle of a job, and
//! playback URLs that point where they must not (local files, scripts, other hosts), and the
//! log lines a service writes.

mod migrate_support;

use std::time::{Duration, Instant};

use fake_bbb::{ApiPlayback, ApiRecording, PlaybackUrl, Throttle};
use migrate_support::*;

const VIDEO_FILE: &str = "sample-two-formats-2026-01-01.m4v";

fn status_json(env: &Env) -> serde_json::Value {
    let o = env.run(&["status", "--json"]);
    expect_code(&o, 0);
    serde_json::from_slice(&o.stdout).expect("status --json")
}

#[test]
fn a_video_playback_is_downloaded_into_the_claim_directory_and_a_rerun_does_nothing() {
    let env = setup("prefix", "");
    let o = env.run(&["claim", "--record-id", VIDEO_ID]);
    expect_code(&o, 0);
    assert_eq!(env.claimed(), vec![VIDEO_FILE.to_owned()]);
    assert_eq!(
        std::fs::read(env.claim.join(VIDEO_FILE)).unwrap(),
        sample_video()
    );
    let s = status_json(&env);
    assert_eq!(s["counts"]["succeeded"], 1);
    assert_eq!(
        s["outputs"][0]["path"],
        env.claim.join(VIDEO_FILE).display().to_string()
    );
    // No partial file anywhere.
    let tmp = env.dir.path().join(".bbb-migrate-tmp");
    assert!(list(&tmp).is_empty(), "temp dir: {:?}", list(&tmp));

    let media_before = env.bbb.request_count("/playback/video/");
    let snapshot = env.claimed();
    let o = env.run(&["claim", "--record-id", VIDEO_ID]);
    expect_code(&o, 0);
    assert!(text(&o.stdout).contains("1 skipped"), "{}", text(&o.stdout));
    assert_eq!(
        env.bbb.request_count("/playback/video/"),
        media_before,
        "no second download"
    );
    assert_eq!(env.claimed(), snapshot);
}

/// What journald and log files receive: no colour codes on a pipe, and with `--log-format json`
/// one JSON object per line, the recording id a field of the events about a recording.
#[test]
fn logs_on_a_pipe_have_no_colours_and_json_lines_carry_the_record_id() {
    let env = setup("prefix", "");
    let o = env.run(&["--progress", "plain", "claim", "--record-id", VIDEO_ID]);
    expect_code(&o, 0);
    let log = text(&o.stderr);
    assert!(log.contains(VIDEO_ID), "{log}");
    assert!(
        !log.contains('\x1b'),
        "escape codes in a piped log:\n{log:?}"
    );

    let env = setup("prefix", "");
    let o = env.run(&[
        "--progress",
        "plain",
        "--log-format",
        "json",
        "claim",
        "--record-id",
        VIDEO_ID,
    ]);
    expect_code(&o, 0);
    let log = text(&o.stderr);
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: not JSON: {l}")))
        .collect();
    assert!(
        lines
            .iter()
            .all(|l| l["level"].is_string() && l["fields"]["message"].is_string())
    );
    let about: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["fields"]["record_id"] == VIDEO_ID)
        .collect();
    for what in ["download started", "placed: "] {
        assert!(
            about.iter().any(|l| l["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with(what))),
            "no event with record_id {VIDEO_ID} says {what:?}:\n{log}"
        );
    }
}

#[test]
fn a_playback_that_404s_ends_dead_with_exit_1_and_the_others_succeed() {
    let env = setup("prefix", "");
    // A video playback whose files do not exist on the server: its page is a 404.
    let mut gone = ApiRecording::new(ApiRecording::synthetic_id(7));
    gone.playbacks = vec![ApiPlayback::served("video", 1)];
    let gone_id = gone.record_id.clone();
    env.bbb.add_recording(gone);
    let o = env.run(&[
        "claim",
        "--record-id",
        VIDEO_ID,
        "--record-id",
        &gone_id,
        "--jobs",
        "2",
    ]);
    expect_code(&o, 1);
    let out = text(&o.stdout);
    assert!(out.contains(&format!("FAILED {gone_id} [dead]")), "{out}");
    assert!(out.contains("404"), "the reason is in the summary: {out}");
    assert!(out.contains("download"), "the phase is named: {out}");
    assert_eq!(env.claimed(), vec![VIDEO_FILE.to_owned()]);
    let s = status_json(&env);
    assert_eq!(s["counts"]["dead"], 1);
    assert_eq!(s["counts"]["succeeded"], 1);
    assert_eq!(s["failures"][0]["record_id"], gone_id.as_str());
    assert_eq!(s["failures"][0]["error_class"], "permanent");
    // `status --record-id` shows that recording alone; the listing's selection flags are refused.
    let o = env.run(&["status", "--json", "--record-id", VIDEO_ID]);
    expect_code(&o, 0);
    let one: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(one["counts"]["succeeded"], 1);
    assert!(one["counts"].get("dead").is_none(), "{one}");
    assert!(one["failures"].as_array().unwrap().is_empty(), "{one}");
    let o = env.run(&["status", "--since", "2026-01-01"]);
    expect_code(&o, 2);
    assert!(text(&o.stderr).contains("--since"), "{}", text(&o.stderr));
    expect_code(&env.run(&["retry", "--failed", "--limit", "1"]), 2);
    // Dead stays dead (exit 1 again) until `retry --failed`.
    expect_code(&env.run(&["claim", "--record-id", &gone_id]), 1);
    let o = env.run(&["retry", "--failed"]);
    expect_code(&o, 0);
    assert!(
        text(&o.stdout).contains("re-queued 1"),
        "{}",
        text(&o.stdout)
    );
}

/// Every URL of a getRecordings answer is untrusted: `file:`, `javascript:`, another host name
/// (`localhost` is this very server under a name that is not the configured one, so a fetch
/// would show in its log) and a redirect from the server to another host. Each such recording is
/// dead in phase select (or download, for the redirect) with a permanent reason that names it;
/// the good one succeeds; nothing of the refused ones is fetched and bbb-record never runs.
#[test]
fn playback_urls_off_the_servers_hosts_are_refused_and_never_fetched() {
    let recorder = workspace_bin("bbb-record", "bbb-recorder");
    let env = setup(
        "prefix",
        &format!("[recorder]\ncommand = \"{}\"\n", recorder.display()),
    );
    let base = url::Url::parse(env.bbb.base_url()).unwrap();
    let port = base.port().unwrap();
    let foreign = |n: u64| ApiRecording::synthetic_id(100 + n);
    let cases = [
        (
            "presentation",
            "file:///etc/passwd".to_owned(),
            "scheme \"file\"",
        ),
        (
            "presentation",
            "javascript:fetch('/x')".to_owned(),
            "scheme \"javascript\"",
        ),
        (
            "video",
            format!("http://localhost:{port}/playback/video/{}/", foreign(2)),
            "host \"localhost\"",
        ),
        (
            "video",
            format!(
                "http://127.0.0.1:{port}/moved/x?to=http%3A%2F%2Flocalhost%3A{port}%2Fplayback%2Fvideo%2F{}%2F",
                foreign(3)
            ),
            "not an allowed playback host",
        ),
    ];
    let mut ids = Vec::new();
    for (n, (format, url, _)) in cases.iter().enumerate() {
        let mut r = ApiRecording::new(foreign(n as u64));
        r.playbacks = vec![ApiPlayback {
            url: PlaybackUrl::Absolute(url.clone()),
            ..ApiPlayback::served(format, 1)
        }];
        ids.push(r.record_id.clone());
        env.bbb.add_recording(r);
    }
    // The dry run already says which would fail, and why.
    let mut args = vec!["claim", "--record-id", VIDEO_ID];
    for id in &ids {
        args.extend(["--record-id", id.as_str()]);
    }
    let o = env.run(&[&["--dry-run"], &args[..]].concat());
    expect_code(&o, 0);
    let plan = text(&o.stdout);
    for (id, (_, _, why)) in ids.iter().zip(&cases).take(3) {
        assert!(
            plan.lines().any(|l| l.starts_with(id.as_str())
                && l.contains("would fail (select)")
                && l.contains(why)),
            "{id}: {plan}"
        );
    }

    let o = env.run(&args);
    expect_code(&o, 1);
    let out = text(&o.stdout);
    assert_eq!(env.claimed(), vec![VIDEO_FILE.to_owned()], "{out}");
    let s = status_json(&env);
    assert_eq!(s["counts"]["dead"], 4, "{s}");
    assert_eq!(s["counts"]["succeeded"], 1, "{s}");
    for (id, (_, _, why)) in ids.iter().zip(&cases) {
        let f = s["failures"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["record_id"] == id.as_str())
            .unwrap_or_else(|| panic!("{id} not failed: {s}"));
        assert_eq!(f["error_class"], "permanent", "{f}");
        let error = f["last_error"].as_str().unwrap();
        assert!(error.contains(why), "{id}: {error}");
        assert!(out.contains(&format!("FAILED {id} [dead]")), "{out}");
    }
    // Nothing of theirs was asked for, but the redirect itself; a dead recording is not retried.
    for n in 0..4 {
        assert_eq!(
            env.bbb
                .request_count(&format!("/playback/video/{}", foreign(n))),
            0
        );
    }
    assert_eq!(env.bbb.request_count("/moved/"), 1);
    let asked: Vec<String> = env
        .bbb
        .request_counts()
        .into_keys()
        .filter(|p| !p.starts_with("/bigbluebutton/api") && !p.starts_with("/moved/"))
        .filter(|p| !p.contains(VIDEO_ID))
        .collect();
    assert!(
        asked.is_empty(),
        "fetched besides the good recording: {asked:?}"
    );
}

#[test]
fn dry_run_touches_nothing() {
    let env = setup("prefix", "");
    // A first real run so that a ledger, a cache and a placed file exist.
    expect_code(&env.run(&["claim", "--record-id", VIDEO_ID]), 0);
    let extra_id = ApiRecording::synthetic_id(9);
    let mut extra = ApiRecording::new(&extra_id);
    extra.playbacks = vec![ApiPlayback::served("video", 1)];
    env.bbb.add_recording(extra);
    let before = env.snapshot();
    let media = env.bbb.request_count("/playback/");
    for args in [
        vec![
            "claim",
            "--dry-run",
            "--record-id",
            VIDEO_ID,
            "--record-id",
            &extra_id,
        ],
        vec!["claim", "--dry-run", "--force", "--record-id", VIDEO_ID],
        vec!["--use-manual-claim", "--dry", "--record-id", &extra_id],
        vec!["export-csv", "--dry-run"],
        vec!["retry", "--failed", "--dry-run"],
        vec!["list", "--dry-run"],
    ] {
        let o = env.run(&args);
        expect_code(&o, 0);
        if args[0] != "list" && args[0] != "export-csv" && args[0] != "retry" {
            let out = text(&o.stdout);
            assert!(out.contains("dry run"), "{out}");
            assert!(
                out.contains("would download") || out.contains("already done"),
                "{out}"
            );
        }
    }
    assert_eq!(
        env.bbb.request_count("/playback/"),
        media,
        "no playback fetched"
    );
    let after = env.snapshot();
    let names = |v: &[(String, u64, Vec<u8>)]| v.iter().map(|e| e.0.clone()).collect::<Vec<_>>();
    assert_eq!(names(&after), names(&before), "directory listing changed");
    assert!(
        after == before,
        "a file's content changed (ledger, cache or claim dir)"
    );
}

#[test]
fn two_jobs_run_at_once() {
    let env = setup("prefix", "");
    // Three video recordings served from the same sample files, each slowed to ~1.5 s.
    let mut ids = vec![VIDEO_ID.to_owned()];
    for n in [21, 22] {
        let id = ApiRecording::synthetic_id(n);
        let mut r = ApiRecording::new(&id);
        r.name = format!("Parallel {n}");
        r.playbacks = vec![ApiPlayback {
            url: fake_bbb::PlaybackUrl::Absolute(format!(
                "{}/playback/video/{VIDEO_ID}/",
                env.bbb.base_url()
            )),
            ..ApiPlayback::served("video", 1)
        }];
        env.bbb.add_recording(r);
        ids.push(id);
    }
    let size = sample_video().len() as u64;
    env.bbb.faults().set_throttle(Some(Throttle {
        bytes_per_sec: size * 2 / 3,
        after_bytes: 0,
    }));
    let mut args = vec!["claim", "--jobs", "2", "--progress", "json"];
    for id in &ids {
        args.push("--record-id");
        args.push(id);
    }
    let started = Instant::now();
    let o = env.run(&args);
    expect_code(&o, 0);
    let events: Vec<serde_json::Value> = text(&o.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let first_finish = events
        .iter()
        .position(|e| e["event"] == "finished")
        .expect("finished events");
    let started_before = events[..first_finish]
        .iter()
        .filter(|e| e["event"] == "started")
        .count();
    assert_eq!(
        started_before, 2,
        "two jobs were running before the first finished: {events:?}"
    );
    assert!(events.iter().any(|e| e["event"] == "summary"));
    assert_eq!(env.claimed().len(), 3);
    // Three 1.5 s downloads, two at a time: about 3 s, never the 4.5 s of one at a time.
    assert!(started.elapsed() < Duration::from_secs(30));
}

/// The bytes at which the migrator said it resumed a download ("resuming at byte N").
fn resumed_at(o: &std::process::Output) -> Vec<u64> {
    text(&o.stderr)
        .lines()
        .filter_map(|l| l.split("resuming at byte ").nth(1))
        .map(|rest| {
            rest.split(|c: char| !c.is_ascii_digit())
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect()
}

#[test]
fn a_dropped_connection_is_resumed_and_the_size_checked() {
    let env = setup("prefix", "");
    let len = sample_video().len() as u64;
    env.bbb.faults().drop_media_next(2);
    let o = env.run(&["claim", "--record-id", VIDEO_ID]);
    expect_code(&o, 0);
    assert_eq!(
        std::fs::read(env.claim.join(VIDEO_FILE)).unwrap(),
        sample_video()
    );
    // The server's side: the whole file asked, cut at half; then twice a Range request from the
    // byte the migrator had reached, answered 206 (If-Range: only from the same file), the
    // first cut again at half of what it asked.
    let at = resumed_at(&o);
    assert_eq!(at.len(), 2, "{}", text(&o.stderr));
    let served = env.bbb.served("video-0.m4v");
    assert_eq!(
        served,
        vec![(200, 0, false), (206, at[0], true), (206, at[1], true)],
        "{}",
        text(&o.stderr)
    );
    assert!(0 < at[0] && at[0] <= len / 2, "{at:?} of {len}");
    assert!(
        at[0] < at[1] && at[1] <= at[0] + (len - at[0]) / 2,
        "{at:?} of {len}"
    );
}

/// A server that ends a body cleanly before the size it announced (Content-Range): the short
/// file is not taken for the whole; the size check makes the download resume from there.
#[test]
fn a_body_shorter_than_announced_is_not_accepted() {
    let env = setup("prefix", "");
    let len = sample_video().len() as u64;
    // The first answer is cut (so that the next one is a Range answer), the second is short.
    env.bbb.faults().drop_media_next(1);
    env.bbb.faults().short_ranges_next(1);
    let o = env.run(&["claim", "--record-id", VIDEO_ID]);
    expect_code(&o, 0);
    let placed = std::fs::read(env.claim.join(VIDEO_FILE)).unwrap();
    assert_eq!(placed.len() as u64, len, "the placed file is not whole");
    assert!(
        placed == sample_video(),
        "the placed file is not the server's"
    );
    let at = resumed_at(&o);
    assert_eq!(at.len(), 2, "{}", text(&o.stderr));
    // The short answer sent exactly half of the rest, then ended without an error.
    assert_eq!(at[1], at[0] + (len - at[0]) / 2, "{at:?} of {len}");
    assert!(
        text(&o.stderr).contains(&format!(
            "the server announced {len} bytes, {} arrived",
            at[1]
        )),
        "{}",
        text(&o.stderr)
    );
    assert_eq!(
        env.bbb.served("video-0.m4v"),
        vec![(200, 0, false), (206, at[0], true), (206, at[1], true)]
    );
}

#[test]
fn protected_token_urls_are_downloaded_with_the_jobs_cookie() {
    let env = setup("prefix", "");
    env.bbb.faults().set_protected(true);
    let o = env.run(&["claim", "--record-id", VIDEO_ID]);
    expect_code(&o, 0);
    assert_eq!(
        std::fs::read(env.claim.join(VIDEO_FILE)).unwrap(),
        sample_video()
    );
}

#[test]
fn same_name_same_day_gets_a_distinct_name_never_an_overwrite() {
    let env = setup("prefix", "");
    let id = ApiRecording::synthetic_id(31);
    let mut twin = ApiRecording::new(&id);
    twin.name = "Sample two formats".into();
    twin.start_time = "1767268800001".into();
    twin.playbacks = vec![ApiPlayback {
        url: fake_bbb::PlaybackUrl::Absolute(format!(
            "{}/playback/video/{VIDEO_ID}/",
            env.bbb.base_url()
        )),
        ..ApiPlayback::served("video", 1)
    }];
    env.bbb.add_recording(twin);
    // A file Pod already has under the first name must not be replaced either.
    std::fs::write(env.claim.join(VIDEO_FILE), b"someone else's").unwrap();
    let o = env.run(&["claim", "--record-id", VIDEO_ID, "--record-id", &id]);
    expect_code(&o, 0);
    let names = env.claimed();
    assert_eq!(names.len(), 3, "{names:?}");
    assert_eq!(
        std::fs::read(env.claim.join(VIDEO_FILE)).unwrap(),
        b"someone else's"
    );
    assert!(
        names.contains(&format!(
            "sample-two-formats-2026-01-01-{}.m4v",
            &VIDEO_ID[..8]
        )),
        "{names:?}"
    );
    assert!(
        names.contains(&format!("sample-two-formats-2026-01-01-{}.m4v", &id[..8])),
        "{names:?}"
    );
}

#[test]
fn kill_9_during_a_download_then_rerun_places_exactly_one_file() {
    let env = setup("prefix", "");
    let tmp = start_and_kill_a_download(&env);
    // Another host cannot know the worker is dead: it would wait for the lease (600 s). With
    // --no-wait it ends at once, exit 4 (held elsewhere, nothing failed), naming the holder.
    let killed = status_json(&env)["running"][0]["owner"]
        .as_str()
        .expect("the killed run's lease")
        .to_owned();
    let o = env.run(&[
        "claim",
        "--record-id",
        VIDEO_ID,
        "--host",
        "elsewhere",
        "--no-wait",
    ]);
    expect_code(&o, 4);
    let out = text(&o.stdout);
    assert!(
        out.contains(&format!("  HELD {VIDEO_ID} by {killed}, lease until ")),
        "the held job with its holder and lease expiry: {out}"
    );
    assert!(out.contains("0 failed, 1 held by other hosts"), "{out}");
    assert!(env.claimed().is_empty());
    // This host sees that the process holding the lease is gone: the rerun takes the job over
    // at once and resumes the download where it stopped (If-Range: same file).
    let killed_at = env.bbb.served("video-0.m4v").len();
    let o = env.run(&["claim", "--record-id", VIDEO_ID]);
    expect_code(&o, 0);
    let rerun = env.bbb.served("video-0.m4v")[killed_at..].to_vec();
    assert!(
        matches!(rerun.as_slice(), [(206, start, true)] if *start > 0),
        "the rerun resumes with one If-Range request: {rerun:?}\n{}",
        text(&o.stderr)
    );
    assert_eq!(env.claimed(), vec![VIDEO_FILE.to_owned()]);
    assert_eq!(
        std::fs::read(env.claim.join(VIDEO_FILE)).unwrap(),
        sample_video()
    );
    assert!(list(&tmp).is_empty(), "temp files left: {:?}", list(&tmp));
}

/// The server's file changed between the killed run and the rerun: the old bytes are not
/// spliced onto the new file, the download starts over.
#[test]
fn a_resumed_download_of_a_changed_file_starts_over() {
    let env = setup("prefix", "");
    let tmp = start_and_kill_a_download(&env);
    env.bbb.faults().change_files();
    let killed_at = env.bbb.served("video-0.m4v").len();
    let o = env.run(&["claim", "--record-id", VIDEO_ID]);
    expect_code(&o, 0);
    let rerun = env.bbb.served("video-0.m4v")[killed_at..].to_vec();
    assert_eq!(rerun, vec![(200, 0, true)], "{}", text(&o.stderr));
    assert_eq!(
        std::fs::read(env.claim.join(VIDEO_FILE)).unwrap(),
        sample_video()
    );
    assert!(list(&tmp).is_empty(), "temp files left: {:?}", list(&tmp));
}

/// Starts a throttled download of the sample video with a long lease, waits until part of it
/// is on disk, kills bbb-migrate with SIGKILL. Returns the temp directory.
fn start_and_kill_a_download(env: &Env) -> std::path::PathBuf {
    // A long lease: the rerun must not wait for it to run out.
    let cfg = std::fs::read_to_string(&env.config).unwrap();
    std::fs::write(
        &env.config,
        cfg.replace(
            "retry_base_secs = 1",
            "retry_base_secs = 1\nlease_secs = 600",
        ),
    )
    .unwrap();
    let size = sample_video().len() as u64;
    env.bbb.faults().set_throttle(Some(Throttle {
        bytes_per_sec: size / 10,
        after_bytes: 0,
    }));
    let mut child = env
        .command(&["claim", "--record-id", VIDEO_ID])
        .spawn()
        .unwrap();
    let tmp = env.dir.path().join(".bbb-migrate-tmp");
    let deadline = Instant::now() + Duration::from_secs(20);
    // Wait until the partial file has data, then kill -9.
    loop {
        let partial = list(&tmp).into_iter().find(|n| n.ends_with(".partial"));
        if let Some(p) = partial
            && std::fs::metadata(tmp.join(&p).join(format!("{VIDEO_ID}.m4v")))
                .map(|m| m.len())
                .unwrap_or(0)
                > 0
        {
            break;
        }
        assert!(Instant::now() < deadline, "the download never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    child.wait().unwrap();
    assert!(env.claimed().is_empty(), "nothing placed by the killed run");
    env.bbb.faults().set_throttle(None);
    tmp
}

#[test]
fn ctrl_c_gives_the_job_back_and_a_rerun_finishes_it() {
    interrupted_by(nix::sys::signal::Signal::SIGINT);
}

/// What `systemctl stop` sends (the service's KillMode=mixed sends it to bbb-migrate only).
#[test]
fn sigterm_gives_the_job_back_and_a_rerun_finishes_it() {
    interrupted_by(nix::sys::signal::Signal::SIGTERM);
}

fn interrupted_by(signal: nix::sys::signal::Signal) {
    let env = setup("prefix", "");
    let size = sample_video().len() as u64;
    env.bbb.faults().set_throttle(Some(Throttle {
        bytes_per_sec: size / 10,
        after_bytes: 0,
    }));
    let child = env
        .command(&["claim", "--record-id", VIDEO_ID])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let tmp = env.dir.path().join(".bbb-migrate-tmp");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !list(&tmp).iter().any(|n| n.ends_with(".partial")) {
        assert!(Instant::now() < deadline, "the job never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal).unwrap();
    let out = child.wait_with_output().unwrap();
    expect_code(&out, 1);
    assert!(
        text(&out.stderr).contains(&format!("{signal}: stopping the running jobs")),
        "{}",
        text(&out.stderr)
    );
    assert!(env.claimed().is_empty());
    assert!(list(&tmp).is_empty(), "temp left: {:?}", list(&tmp));
    let s = status_json(&env);
    assert_eq!(s["counts"]["pending"], 1, "given back: {s}");
    env.bbb.faults().set_throttle(None);
    // No lease to wait for: the job was released, and the attempt was not counted.
    let o = env.run(&["claim", "--record-id", VIDEO_ID]);
    expect_code(&o, 0);
    assert_eq!(env.claimed(), vec![VIDEO_FILE.to_owned()]);
}

/// Whether `key` is set in `[section]` of a TOML text, or shown there commented out: a line
/// `key = ...` or `# key = ...` between that section's header and the next header. Headers of
/// sub-tables (`[moodle.databases.x]`, commented or not) end the section.
fn template_has_key(text: &str, section: &str, key: &str) -> bool {
    let mut current: Option<&str> = None;
    for line in text.lines() {
        let line = line.trim();
        let bare = line.strip_prefix('#').map_or(line, str::trim_start);
        if let Some(header) = bare.strip_prefix('[') {
            current = header.split(']').next().map(str::trim);
            continue;
        }
        if current == Some(section) && bare.split_once('=').is_some_and(|(k, _)| k.trim() == key) {
            return true;
        }
    }
    false
}

#[test]
fn init_config_template_works_with_env_overrides() {
    let env = setup("prefix", "");
    let o = env.run(&["init-config", "-o", "fresh.toml"]);
    expect_code(&o, 0);
    let fresh = env.dir.path().join("fresh.toml");
    let text_cfg = std::fs::read_to_string(&fresh).unwrap();
    for (section, key) in [
        ("bbb", "base_url"),
        ("bbb", "secret"),
        ("bbb", "checksum"),
        ("bbb", "playback_url_23"),
        ("bbb", "fetch"),
        ("bbb", "timeout_secs"),
        ("pod", "time_zone"),
        ("pod", "default_recorder_path"),
        ("pod", "recorder_directory"),
        ("pod", "recorder_id"),
        ("recorder", "command"),
        ("recorder", "format"),
        ("recorder", "fast"),
        ("ledger", "url"),
        ("worker", "jobs"),
    ] {
        assert!(
            template_has_key(&text_cfg, section, key),
            "template lacks {key} in [{section}]:\n{text_cfg}"
        );
    }
    // The check itself: a key is a key, not a part of another, and only in its own section.
    assert!(!template_has_key("[bbb]\nbase_url = 1\n", "bbb", "url"));
    assert!(!template_has_key("[pod]\nurl = 1\n", "ledger", "url"));
    assert!(!template_has_key(
        "[ledger]\n# the url = is here\n",
        "ledger",
        "url"
    ));
    assert!(template_has_key(
        "[ledger]\n#  url = \"x\"\n",
        "ledger",
        "url"
    ));
    // Refuses to overwrite.
    expect_code(&env.run(&["init-config", "-o", "fresh.toml"]), 2);
    // The template plus BBB_URL / BBB_SECRET / BBB_MIGRATE_LEDGER reaches the server.
    let o = std::process::Command::new(migrate_bin())
        .current_dir(env.dir.path())
        .env("BBB_URL", env.bbb.base_url())
        .env("BBB_SECRET", env.bbb.secret())
        .env(
            "BBB_MIGRATE_LEDGER",
            format!("sqlite://{}", env.dir.path().join("env.db").display()),
        )
        .args(["--config", "fresh.toml", "list", "--json"])
        .output()
        .unwrap();
    expect_code(&o, 0);
    let v: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v.len(), SAMPLE_RECORDINGS);
    assert!(!text(&o.stderr).contains(env.bbb.secret()));
}

#[test]
fn malformed_recordings_make_a_claim_run_exit_1_and_are_named() {
    let env = setup("prefix", "");
    let id = ApiRecording::synthetic_id(41);
    let mut bad = ApiRecording::new(&id);
    bad.start_time = "not-a-time".into();
    env.bbb.add_recording(bad);
    // Newest first: before the whiteboard samples (15:00, 16:00), --limit 1 selects the sample
    // with a video playback (12:00).
    let o = env.run(&["claim", "--until", "2026-01-01T12:30:00Z", "--limit", "1"]);
    expect_code(&o, 1);
    let out = text(&o.stdout);
    assert!(out.contains(&format!("FAILED {id} [malformed]")), "{out}");
    assert_eq!(
        env.claimed(),
        vec![VIDEO_FILE.to_owned()],
        "the good one still went through"
    );
    // Asked for by id, the others are not this run's failures.
    let o = env.run(&["claim", "--record-id", VIDEO_ID]);
    expect_code(&o, 0);
    assert!(
        text(&o.stdout).contains("1 malformed"),
        "{}",
        text(&o.stdout)
    );
}

#[test]
fn force_redoes_a_done_recording_without_overwriting_the_first_file() {
    let env = setup("prefix", "");
    expect_code(&env.run(&["claim", "--record-id", VIDEO_ID]), 0);
    let before = env.bbb.request_count("/playback/video/");
    let o = env.run(&["claim", "--force", "--record-id", VIDEO_ID]);
    expect_code(&o, 0);
    assert!(
        env.bbb.request_count("/playback/video/") > before,
        "downloaded again"
    );
    let second = format!("sample-two-formats-2026-01-01-{}.m4v", &VIDEO_ID[..8]);
    assert_eq!(env.claimed(), vec![second.clone(), VIDEO_FILE.to_owned()]);
    assert_eq!(
        std::fs::read(env.claim.join(&second)).unwrap(),
        sample_video()
    );
    // Again and again: each copy gets its own name, none is overwritten.
    expect_code(&env.run(&["claim", "--force", "--record-id", VIDEO_ID]), 0);
    expect_code(&env.run(&["claim", "--force", "--record-id", VIDEO_ID]), 0);
    let third = format!("sample-two-formats-2026-01-01-{VIDEO_ID}.m4v");
    let fourth = format!("sample-two-formats-2026-01-01-{VIDEO_ID}-2.m4v");
    let mut expected = vec![second, third, fourth, VIDEO_FILE.to_owned()];
    expected.sort();
    assert_eq!(env.claimed(), expected);
}
