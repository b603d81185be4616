//! Failure behaviour of `bbb-record`: documented exit codes, nothing at the destination, no
//! temporary file and no process left behind.

mod common;

use std::time::{Duration, Instant};

use common::*;

const MISSING: &str = "0000000000000000000000000000000000000000-1700000000000";

/// A `bbb-record` run in the background with `--progress json`: its stdout lines as they come,
/// and every process that ran under it.
struct Running {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
    reader: std::thread::JoinHandle<()>,
    watch: ProcessWatch,
}

impl Running {
    fn start(args: &[&str]) -> Running {
        let mut child = bbb_record()
            .args(args)
            .args(["--progress", "json"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let watch = ProcessWatch::start(child.id());
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let _ = tx.send(line);
            }
        });
        Running {
            child,
            lines,
            seen: Vec::new(),
            reader,
            watch,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Blocks until the recorder reports media time past `at` seconds: it is recording then.
    fn wait_until_recording(&mut self, at: f64) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) else {
                continue;
            };
            self.seen.push(line.clone());
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                && v["event"] == "progress"
                && v["media_time"].as_f64().is_some_and(|m| m >= at)
            {
                return;
            }
        }
        panic!("no progress past {at} s within 60 s: {:#?}", self.seen);
    }

    /// Blocks until the recorder reports `event` (`started`: the page is loaded).
    fn wait_for_event(&mut self, event: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) else {
                continue;
            };
            self.seen.push(line.clone());
            if serde_json::from_str::<serde_json::Value>(&line).is_ok_and(|v| v["event"] == event) {
                return;
            }
        }
        panic!("no {event} event within 60 s: {:#?}", self.seen);
    }

    fn finish(mut self) -> (std::process::ExitStatus, Vec<String>, ProcessWatch) {
        let status = self.child.wait().unwrap();
        self.reader.join().unwrap();
        self.seen.extend(self.lines.try_iter());
        (status, self.seen, self.watch)
    }
}

/// Nothing that ran under the recorder is left (by ancestry: Xvfb's and Chromium's command lines
/// name no path of the test), and the watch did see the display server run.
fn assert_no_process_survives(watch: &mut ProcessWatch) {
    watch.assert_none_survive("Xvfb", Duration::from_secs(10));
}

fn assert_clean(dir: &std::path::Path, marker: &str) {
    assert_eq!(
        dir_entries(dir),
        Vec::<String>::new(),
        "files left in {}",
        dir.display()
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = processes_with(marker);
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "processes left: {left:#?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn missing_recording_is_permanent_and_fast() {
    let _heavy = heavy();
    let bbb = server();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("missing.mp4");
    let started = Instant::now();
    let result = run(&[&bbb.presentation_url(MISSING), "-o", out.to_str().unwrap()]);
    assert_eq!(result.status.code(), Some(3));
    assert!(started.elapsed() < Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(stderr.contains("not found"), "{stderr}");
    assert_clean(dir.path(), dir.path().to_str().unwrap());
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        vec!["http://127.0.0.1:9/x"],
        vec!["http://127.0.0.1:9/x", "-o", "x.mp4", "--size", "12x7"],
        vec!["http://127.0.0.1:9/x", "-o", "x.mp4", "--fps", "0"],
    ] {
        let out = bbb_record().args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.avi");
    let result = run(&["http://127.0.0.1:9/x", "-o", out.to_str().unwrap()]);
    assert_eq!(
        result.status.code(),
        Some(3),
        "unknown container is permanent"
    );
    let result = run(&[
        "not a url",
        "-o",
        dir.path().join("x.mp4").to_str().unwrap(),
    ]);
    assert_eq!(result.status.code(), Some(3));
}

/// The server dies mid-recording: transient failure, nothing left behind.
#[test]
fn server_dying_mid_recording_is_transient_and_clean() {
    let _heavy = heavy();
    let bbb = server();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("died.mp4");
    // Media trickles slower than the playback's own rate (sample A's webcams file is 187 kB for
    // 15 s), so it is still needed when the server goes, however long the start took.
    bbb.faults().set_throttle(Some(fake_bbb::Throttle {
        bytes_per_sec: 5_000,
        after_bytes: 20_000,
    }));
    let mut rec = Running::start(&[&bbb.presentation_url(SAMPLE_A), "-o", out.to_str().unwrap()]);
    let xauth = xauthority_of(rec.pid());
    // Once the recording is under way (the media clock moves), take the server down.
    rec.wait_until_recording(0.1);
    assert!(
        xauth.exists(),
        "the display's auth file {}",
        xauth.display()
    );
    let died = Instant::now();
    bbb.die();
    let (status, lines, mut watch) = rec.finish();
    eprintln!(
        "the recorder ended {:?} after the server died",
        died.elapsed()
    );
    assert_eq!(status.code(), Some(4), "{lines:#?}");
    assert!(
        lines.iter().any(|l| l.contains("\"class\":\"transient\"")),
        "{lines:#?}"
    );
    assert_clean(dir.path(), dir.path().to_str().unwrap());
    assert_no_process_survives(&mut watch);
    assert!(!xauth.exists(), "{} left behind", xauth.display());
}

/// SIGTERM mid-recording: stops cleanly, non-zero, nothing left behind.
#[test]
fn sigterm_mid_recording_is_clean() {
    let _heavy = heavy();
    let bbb = server();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("term.mp4");
    let mut rec = Running::start(&[&bbb.presentation_url(SAMPLE_A), "-o", out.to_str().unwrap()]);
    let xauth = xauthority_of(rec.pid());
    rec.wait_until_recording(1.0);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(rec.pid() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let (status, lines, mut watch) = rec.finish();
    assert_eq!(status.code(), Some(4), "{lines:#?}");
    assert_clean(dir.path(), dir.path().to_str().unwrap());
    assert_no_process_survives(&mut watch);
    assert!(!xauth.exists(), "{} left behind", xauth.display());
}

/// SIGTERM while fast mode waits for the recording's media (its download throttled to about
/// 25 s): it ends at once, non-zero, nothing left behind.
#[test]
fn sigterm_while_fast_mode_downloads_the_media_is_clean() {
    let _heavy = heavy();
    let bbb = server();
    bbb.faults().set_throttle(Some(fake_bbb::Throttle {
        bytes_per_sec: 8_000,
        after_bytes: 0,
    }));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("fast.mp4");
    let mut rec = Running::start(&[
        &bbb.presentation_url(SAMPLE_A),
        "-o",
        out.to_str().unwrap(),
        "--fast",
    ]);
    rec.wait_for_event("started");
    std::thread::sleep(Duration::from_secs(1));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(rec.pid() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let signalled = Instant::now();
    let (status, lines, mut watch) = rec.finish();
    let took = signalled.elapsed();
    assert_eq!(status.code(), Some(4), "{lines:#?}");
    assert!(
        took < Duration::from_secs(10),
        "ended {took:?} after the signal"
    );
    assert_clean(dir.path(), dir.path().to_str().unwrap());
    assert_no_process_survives(&mut watch);
}

/// SIGKILL of the recorder itself: the kernel takes Xvfb and Chromium down with it.
#[test]
fn sigkill_of_the_recorder_leaves_no_process() {
    let _heavy = heavy();
    let bbb = server();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("killed.mp4");
    let mut rec = Running::start(&[&bbb.presentation_url(SAMPLE_A), "-o", out.to_str().unwrap()]);
    rec.wait_until_recording(1.0);
    assert!(
        !processes_with(dir.path().to_str().unwrap()).is_empty(),
        "Chromium runs with its profile in the work dir"
    );
    rec.child.kill().unwrap();
    let (_, _, mut watch) = rec.finish();
    // The kernel's parent-death signal takes Xvfb and Chromium down (their groups included).
    assert_no_process_survives(&mut watch);
    assert!(!out.exists());
    // A SIGKILL leaves the recorder no chance to remove its work directory or its display's auth
    // file (bbb-migrate removes its partial directories; the auth file is 50 bytes in /tmp).
}

/// Two recordings at once on one machine: own displays, profiles; both correct.
#[test]
fn two_recordings_in_parallel() {
    let _heavy = heavy();
    let bbb = server();
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("one.mp4");
    let b = dir.path().join("two.mp4");
    let url = bbb.presentation_url(SAMPLE_A);
    let spawn = |out: &std::path::Path, start: &str| {
        bbb_record()
            .args([
                &url,
                "-o",
                out.to_str().unwrap(),
                "--start",
                start,
                "--duration",
                "4",
                "--progress",
                "none",
            ])
            .spawn()
            .unwrap()
    };
    let mut one = spawn(&a, "0");
    let mut two = spawn(&b, "8");
    assert!(one.wait().unwrap().success());
    assert!(two.wait().unwrap().success());
    let slides = [
        ("red", RED),
        ("green", GREEN),
        ("blue", BLUE),
        ("magenta", MAGENTA),
    ];
    let fa = frames_rgb(&a);
    let fb = frames_rgb(&b);
    assert_eq!(dominant(frame_at(&fa, 2.0), &slides), Some("red"));
    assert_eq!(dominant(frame_at(&fb, 1.0), &slides), Some("green"));
    assert_eq!(dominant(frame_at(&fb, 3.0), &slides), Some("blue"));
    for f in [&a, &b] {
        let p = probe(f);
        assert!(
            (p.video_duration - 4.0).abs() <= 1.0 / 30.0 + 0.05,
            "{}",
            p.video_duration
        );
    }
}

/// A URL handed on from a server's answer must not make us record a local file or a script:
/// only http(s) is recorded without `--allow-file`, refused before any browser starts.
#[test]
fn local_file_and_script_urls_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("p.mp4");
    for url in [
        "file:///etc/passwd",
        "javascript:document.write(1)",
        "data:text/html,<p>hi</p>",
        "chrome://version",
    ] {
        let started = Instant::now();
        let result = run(&[url, "-o", out.to_str().unwrap(), "--duration", "2"]);
        assert_eq!(result.status.code(), Some(3), "{url}");
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert!(
            stderr.contains("refused") && stderr.contains("http"),
            "{url}: {stderr}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{url}: a browser was started"
        );
        assert!(dir_entries(dir.path()).is_empty(), "{url}");
    }
    // `-` reads the URL from standard input: an empty one is a usage error.
    let empty = bbb_record()
        .args(["-", "-o", out.to_str().unwrap()])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(empty.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&empty.stderr).contains("standard input holds no URL"));
    // And a refused URL read from it is refused as on the command line.
    let mut child = bbb_record()
        .args(["-", "-o", out.to_str().unwrap(), "--duration", "2"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"file:///etc/passwd\n")
        .unwrap();
    let piped = child.wait_with_output().unwrap();
    assert_eq!(piped.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&piped.stderr).contains("\"file\" refused"));
}
