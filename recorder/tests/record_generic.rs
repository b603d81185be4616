//! `bbb-record` on pages that are not BBB playbacks: recorded for `--duration`, or for the length
//! of the page's media element; an error (exit 3) when neither exists. Their sound comes through
//! a private PulseAudio server per recording. The pages are local files (`--allow-file`).

mod common;

use common::*;

fn page(dir: &std::path::Path, body: &str) -> String {
    let path = dir.join("page.html");
    std::fs::write(&path, body).unwrap();
    format!("file://{}", path.display())
}

#[test]
fn generic_page_for_a_duration() {
    let _heavy = heavy();
    let dir = tempfile::tempdir().unwrap();
    let site = tempfile::tempdir().unwrap();
    let url = page(
        site.path(),
        "<html><body style='margin:0;background:rgb(220,20,20)'>\
         <script>setTimeout(() => document.body.style.background = 'rgb(20,20,220)', 2500)</script>\
         </body></html>",
    );
    let out = dir.path().join("page.mp4");
    let result = run(&[
        &url,
        "--allow-file",
        "-o",
        out.to_str().unwrap(),
        "--duration",
        "4",
        "--progress",
        "json",
    ]);
    assert!(result.status.success());
    let p = probe(&out);
    assert!(
        (p.video_duration - 4.0).abs() <= 1.0 / 30.0 + 0.05,
        "{}",
        p.video_duration
    );
    // The page plays nothing: its sound track is silence of the same length.
    assert_eq!(p.audio_codec.as_deref(), Some("aac"));
    let (rate, samples) = audio_samples(&out);
    assert!((samples.len() as f64 / f64::from(rate) - 4.0).abs() < 0.05);
    assert!(tone(&samples, rate).1 < 0.001, "silence");
    let frames = frames_rgb(&out);
    let colours = [("red", RED), ("blue", BLUE)];
    assert_eq!(dominant(frame_at(&frames, 0.3), &colours), Some("red"));
    assert_eq!(dominant(frame_at(&frames, 3.7), &colours), Some("blue"));
    assert!(
        share_of(frame_at(&frames, 3.7), BLUE) > 0.95,
        "the page fills the picture"
    );
}

#[test]
fn generic_page_with_a_media_element_takes_its_duration() {
    let _heavy = heavy();
    let bbb = server();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("video-page.mp4");
    let result = run(&[&bbb.video_url(SAMPLE_C), "-o", out.to_str().unwrap()]);
    assert!(result.status.success());
    let p = probe(&out);
    assert!(
        (p.video_duration - 8.0).abs() <= 1.0 / 30.0 + 0.05,
        "{}",
        p.video_duration
    );
}

#[test]
fn generic_page_without_duration_is_a_permanent_error() {
    let _heavy = heavy();
    let dir = tempfile::tempdir().unwrap();
    let site = tempfile::tempdir().unwrap();
    let url = page(site.path(), "<html><body>nothing to play</body></html>");
    let out = dir.path().join("none.mp4");
    let result = run(&[&url, "--allow-file", "-o", out.to_str().unwrap()]);
    assert_eq!(result.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&result.stderr).contains("--duration"));
    assert!(dir_entries(dir.path()).is_empty());
}

/// A page that plays a steady tone of `hz` through Web Audio on a coloured background.
fn tone_page(dir: &std::path::Path, hz: u32) -> String {
    page(
        dir,
        &format!(
            "<html><body style='margin:0;background:rgb(20,20,220)'><script>\
             const ctx = new AudioContext(); const o = ctx.createOscillator(); \
             o.frequency.value = {hz}; const g = ctx.createGain(); g.gain.value = 0.5; \
             o.connect(g).connect(ctx.destination); o.start();</script></body></html>"
        ),
    )
}

fn assert_tone(out: &std::path::Path, hz: f64, seconds: f64) {
    let p = probe(out);
    assert!(p.audio_codec.is_some(), "{out:?} has sound");
    let (rate, samples) = audio_samples(out);
    let length = samples.len() as f64 / f64::from(rate);
    assert!((length - seconds).abs() < 0.05, "sound lasts {length} s");
    // From 1 s on: Chromium opens its sound stream a few hundred ms after the page starts playing.
    // Mixed or missing sound misses every window; a glitch under load, one or two.
    let share = share_with_tone(&samples, rate, 1.0, hz);
    assert!(
        share >= 0.75,
        "{out:?}: {hz} Hz in {share:.2} of the windows"
    );
}

#[test]
fn generic_page_sound_is_recorded_through_pulseaudio() {
    let _heavy = heavy();
    let dir = tempfile::tempdir().unwrap();
    let site = tempfile::tempdir().unwrap();
    let url = tone_page(site.path(), 1000);
    let out = dir.path().join("tone.mp4");
    let result = run(&[
        &url,
        "--allow-file",
        "-o",
        out.to_str().unwrap(),
        "--duration",
        "4",
    ]);
    assert!(result.status.success());
    assert_eq!(probe(&out).audio_codec.as_deref(), Some("aac"));
    assert_tone(&out, 1000.0, 4.0);
    assert!(
        processes_with(site.path().to_str().unwrap()).is_empty(),
        "Chromium is gone"
    );
    assert!(
        processes_with("bbb-pulse-").is_empty(),
        "PulseAudio is gone"
    );
}

#[test]
fn parallel_pages_do_not_hear_each_other() {
    let _heavy = heavy();
    let dir = tempfile::tempdir().unwrap();
    let site = tempfile::tempdir().unwrap();
    let low_dir = site.path().join("low");
    let high_dir = site.path().join("high");
    std::fs::create_dir_all(&low_dir).unwrap();
    std::fs::create_dir_all(&high_dir).unwrap();
    let low = tone_page(&low_dir, 500);
    let high = tone_page(&high_dir, 1300);
    let low_out = dir.path().join("low.webm");
    let high_out = dir.path().join("high.mp4");
    let spawn = |url: &str, out: &std::path::Path| {
        bbb_record()
            .args([
                url,
                "--allow-file",
                "-o",
                out.to_str().unwrap(),
                "--duration",
                "4",
            ])
            .args(["--audio", "pulse", "--progress", "none"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut a = spawn(&low, &low_out);
    let mut b = spawn(&high, &high_out);
    assert!(a.wait().unwrap().success());
    assert!(b.wait().unwrap().success());
    assert_eq!(probe(&low_out).audio_codec.as_deref(), Some("opus"));
    assert_eq!(probe(&high_out).audio_codec.as_deref(), Some("aac"));
    // Mixed sound would move the zero-crossing frequency of every window away from either tone.
    assert_tone(&low_out, 500.0, 4.0);
    assert_tone(&high_out, 1300.0, 4.0);
}

#[test]
fn generic_page_without_sound_when_asked() {
    let _heavy = heavy();
    let dir = tempfile::tempdir().unwrap();
    let site = tempfile::tempdir().unwrap();
    let url = tone_page(site.path(), 1000);
    let out = dir.path().join("mute.mp4");
    let result = run(&[
        &url,
        "--allow-file",
        "-o",
        out.to_str().unwrap(),
        "--duration",
        "2",
        "--audio",
        "none",
    ]);
    assert!(result.status.success());
    assert_eq!(probe(&out).audio_codec, None);
    // The recording's own sound exists only for BBB playbacks.
    let result = run(&[
        &url,
        "--allow-file",
        "-o",
        out.to_str().unwrap(),
        "--duration",
        "2",
        "--audio",
        "source",
    ]);
    assert_eq!(result.status.code(), Some(3));
}
