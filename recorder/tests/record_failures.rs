//! Failure behaviour of `bbb-record`: documented exit codes, nothing at the destination, no
//! temporary file and no process left behind.

mod common;

use std::time::{Duration, Instant};

use common::*;

const MISSING: &str = "0000000000000000000000000000000000000000-1700000000000";

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
    // Media trickles at about the playback's own rate, so it is still needed when the server goes.
    bbb.faults().set_throttle(Some(fake_bbb::Throttle {
        bytes_per_sec: 14_000,
        after_bytes: 20_000,
    }));
    let mut child = bbb_record()
        .args([
            &bbb.presentation_url(SAMPLE_A),
            "-o",
            out.to_str().unwrap(),
            "--progress",
            "json",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut lines = Vec::new();
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            lines.push(line);
        }
        lines
    });
    // Wait until the recording is under way, then take the server down.
    std::thread::sleep(Duration::from_secs(9));
    bbb.die();
    let status = child.wait().unwrap();
    let lines = reader.join().unwrap();
    assert_eq!(status.code(), Some(4), "{lines:#?}");
    assert!(
        lines.iter().any(|l| l.contains("\"class\":\"transient\"")),
        "{lines:#?}"
    );
    assert_clean(dir.path(), dir.path().to_str().unwrap());
}

/// SIGTERM mid-recording: stops cleanly, non-zero, nothing left behind.
#[test]
fn sigterm_mid_recording_is_clean() {
    let _heavy = heavy();
    let bbb = server();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("term.mp4");
    let mut child = bbb_record()
        .args([
            &bbb.presentation_url(SAMPLE_A),
            "-o",
            out.to_str().unwrap(),
            "--progress",
            "none",
        ])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(7));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(4));
    assert_clean(dir.path(), dir.path().to_str().unwrap());
}

/// SIGKILL of the recorder itself: the kernel takes Xvfb and Chromium down with it.
#[test]
fn sigkill_of_the_recorder_leaves_no_process() {
    let _heavy = heavy();
    let bbb = server();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("killed.mp4");
    let mut child = bbb_record()
        .args([
            &bbb.presentation_url(SAMPLE_A),
            "-o",
            out.to_str().unwrap(),
            "--progress",
            "none",
        ])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(7));
    assert!(
        !processes_with(dir.path().to_str().unwrap()).is_empty(),
        "Chromium runs with its profile in the work dir"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = processes_with(dir.path().to_str().unwrap());
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "processes left: {left:#?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!out.exists());
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
