//! A long recording: sample D (generated, 10 minutes, a slide change every 4 s) recorded end to
//! end with memory that stays flat. Prints the peak resident memory of the recorder and of its
//! children (Chromium, Xvfb) so the figures can be compared between versions.

mod common;

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

const MINUTES: u32 = 10;

/// The picture at `t` seconds of `path`, scaled down, as RGB (decoded by the ffmpeg CLI so that a
/// 10-minute file is not decoded whole).
fn picture_at(path: &std::path::Path, t: f64) -> (f64, u32, u32, Vec<u8>) {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-ss", &format!("{t:.3}"), "-i"])
        .arg(path)
        .args(["-frames:v", "1", "-vf", "scale=128:72", "-f", "rawvideo"])
        .args(["-pix_fmt", "rgb24", "-"])
        .output()
        .expect("the ffmpeg command (Debian package ffmpeg)");
    assert!(out.status.success() && out.stdout.len() == 128 * 72 * 3);
    (t, 128, 72, out.stdout)
}

#[test]
fn ten_minutes_with_flat_memory() {
    let _heavy = heavy();
    let work = tempfile::tempdir().unwrap();
    let site = work.path().join("site");
    std::fs::create_dir_all(&site).unwrap();
    std::os::unix::fs::symlink(samples_dir().join("player"), site.join("player")).unwrap();
    let status = Command::new("bash")
        .arg(samples_dir().join("generate.sh"))
        .args(["long", site.join("recordings").to_str().unwrap()])
        .arg(MINUTES.to_string())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "generate.sh long");
    let bbb = fake_bbb::FakeBbb::builder()
        .samples_dir(&site)
        .start_blocking()
        .unwrap();
    let id = "dc3662103fac38b972fe68ed8a898b453143d5be-1767272400000";
    let out = work.path().join("long.mp4");
    let mut child = bbb_record()
        .args([&bbb.presentation_url(id), "-o", out.to_str().unwrap()])
        .args(["--progress", "json"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let stdout = child.stdout.take().unwrap();
    let progress = std::sync::Arc::new(std::sync::Mutex::new(0.0f64));
    let reader = {
        let progress = std::sync::Arc::clone(&progress);
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                    && v["event"] == "progress"
                {
                    *progress.lock().unwrap() = v["media_time"].as_f64().unwrap_or(0.0);
                }
            }
        })
    };
    // (media time, recorder RSS, children RSS) every second.
    let mut samples: Vec<(f64, u64, u64)> = Vec::new();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        let media = *progress.lock().unwrap();
        let kids = descendants(pid).into_iter().map(rss_of).sum();
        samples.push((media, rss_of(pid), kids));
        std::thread::sleep(Duration::from_secs(1));
    };
    reader.join().unwrap();
    assert!(status.success(), "bbb-record failed: {status}");

    let peak = |f: fn(&(f64, u64, u64)) -> u64, from: f64| {
        samples
            .iter()
            .filter(|s| s.0 >= from)
            .map(f)
            .max()
            .unwrap_or(0)
    };
    let mb = |b: u64| b as f64 / 1e6;
    let (rec_peak, kids_peak) = (peak(|s| s.1, 0.0), peak(|s| s.2, 0.0));
    // Memory after the first two minutes (everything warmed up) against the whole run.
    let rec_early = peak(|s| s.1, 0.0).min(
        samples
            .iter()
            .filter(|s| s.0 >= 110.0 && s.0 <= 130.0)
            .map(|s| s.1)
            .max()
            .unwrap_or(u64::MAX),
    );
    let rec_late = peak(|s| s.1, 480.0);
    eprintln!(
        "long run: {MINUTES} min; peak RSS recorder {:.1} MB (at 2 min {:.1} MB, after 8 min {:.1} MB), \
         Chromium + Xvfb {:.1} MB",
        mb(rec_peak),
        mb(rec_early),
        mb(rec_late),
        mb(kids_peak)
    );
    assert!(
        rec_late <= rec_early + 48_000_000,
        "the recorder's memory grows: {:.1} MB at 2 min, {:.1} MB after 8 min",
        mb(rec_early),
        mb(rec_late)
    );

    let p = probe(&out);
    let seconds = f64::from(MINUTES * 60);
    assert!(
        (p.video_duration - seconds).abs() <= 1.0 / 30.0 + 0.05,
        "video lasts {} s",
        p.video_duration
    );
    assert!(
        (p.audio_duration - seconds).abs() <= 0.1,
        "audio lasts {} s",
        p.audio_duration
    );
    // Slide k of 6 is shown from 4 (k - 1) + 24 j seconds: check the middle of late slides.
    let slides = [RED, GREEN, BLUE, YELLOW, CYAN, MAGENTA_SLIDE];
    for t in [2.0, 302.0, 590.0, 598.0] {
        let k = ((t / 4.0) as usize) % 6;
        let colours = [("expected", slides[k]), ("other", slides[(k + 1) % 6])];
        assert_eq!(
            dominant(&picture_at(&out, t), &colours),
            Some("expected"),
            "slide at {t} s"
        );
    }
}

/// Sample D's sixth slide colour (#c814c8).
const MAGENTA_SLIDE: [u8; 3] = [200, 20, 200];
