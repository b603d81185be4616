//! End-to-end tests of `bbb-record` on BBB 2.6+ whiteboard recordings (tldraw), offline: sample F
//! (BBB 2.7, tldraw v1) and sample G (BBB 3.0, tldraw v2, whose player loads its fonts from a CDN
//! the recorder answers itself), and the render checks: a whiteboard that cannot load its
//! assets, a player failure mid-recording and a missing slide end in phase `render` with exit 3
//! and nothing at the destination, unless `--accept-broken` is given. Real Chromium, Xvfb, libav.

mod common;

use std::time::{Duration, Instant};

use common::*;

type Frame = (f64, u32, u32, Vec<u8>);

/// The JSON events of a run.
fn events(out: &std::process::Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn event<'a>(events: &'a [serde_json::Value], name: &str) -> &'a serde_json::Value {
    events
        .iter()
        .find(|e| e["event"] == name)
        .unwrap_or_else(|| panic!("no {name} event in {events:?}"))
}

/// The share of stroke-red pixels at media time `t`.
fn red_at(frames: &[Frame], t: f64) -> f64 {
    share_of(frame_at(frames, t), STROKE_RED)
}

/// The whiteboard timeline both samples share (samples/README.md "Samples F and G"): slide 1 with a
/// red stroke from 1.0 s (for G drawn in two records, half of it at 1.0 s, all at 1.5 s) and a red
/// rectangle from 2.0 s undone at 3.0 s; slide 2 from 4.0 s with a red stroke from 5.0 s.
/// `slides` are the two slide colours.
fn assert_whiteboard_timeline(frames: &[Frame], slides: [(&'static str, [u8; 3]); 2], grows: bool) {
    for (t, expected) in [(0.5, 0), (3.5, 0), (4.5, 1), (7.5, 1)] {
        assert_eq!(
            dominant(frame_at(frames, t), &slides),
            Some(slides[expected].0),
            "slide at {t} s"
        );
    }
    let before = red_at(frames, 0.5);
    let stroke = red_at(frames, 1.8);
    let with_rect = red_at(frames, 2.5);
    let undone = red_at(frames, 3.5);
    let slide2_before = red_at(frames, 4.5);
    let slide2_stroke = red_at(frames, 5.5);
    eprintln!(
        "red share: 0.5 s {before:.5}, 1.8 s {stroke:.5}, 2.5 s {with_rect:.5}, 3.5 s {undone:.5}, 4.5 s {slide2_before:.5}, 5.5 s {slide2_stroke:.5}"
    );
    // Nothing red before the first shape and on slide 2 before its stroke.
    assert!(before < 0.0002, "red before any shape: {before}");
    assert!(
        slide2_before < 0.0002,
        "red on slide 2 before its stroke: {slide2_before}"
    );
    // The stroke is there (thousands of pixels), the rectangle adds about as much again, and
    // its undo takes exactly that away.
    assert!(stroke > 0.001, "no stroke at 1.8 s: {stroke}");
    assert!(
        with_rect > stroke * 1.5,
        "no rectangle at 2.5 s: {with_rect} vs {stroke}"
    );
    assert!(
        (undone - stroke).abs() < stroke * 0.2,
        "the rectangle is not undone at 3.5 s: {undone} vs {stroke}"
    );
    // The same stroke on another colour: its anti-aliased edge differs, its body does not.
    assert!(
        slide2_stroke > stroke * 0.5 && slide2_stroke < stroke * 2.0,
        "slide 2's stroke at 5.5 s: {slide2_stroke} vs {stroke}"
    );
    if grows {
        // Half of the stroke between its first and second record.
        let half = red_at(frames, 1.25);
        assert!(
            half > stroke * 0.3 && half < stroke * 0.7,
            "the growing stroke at 1.25 s: {half} vs {stroke}"
        );
    }
}

fn assert_tone(out: &std::path::Path, hz: f64, seconds: f64) {
    let (rate, samples) = audio_samples(out);
    let length = samples.len() as f64 / f64::from(rate);
    assert!((length - seconds).abs() <= 0.05, "sound lasts {length} s");
    // Every whole second but the last (Opus fades the source's last frame out).
    for second in 0..(seconds as usize - 1) {
        let s = &samples[second * rate as usize..(second + 1) * rate as usize];
        let (found, rms) = tone(s, rate);
        assert!((found - hz).abs() < 3.0, "second {second}: {found} Hz");
        assert!(rms > 0.02, "second {second}: silent");
    }
}

/// Sample F, a BBB 2.7 recording: the real player draws it with tldraw v1, which needs nothing
/// from outside. Slides, strokes, the undone rectangle and the sound at their times.
#[test]
fn bbb_2_7_whiteboard_renders_its_strokes_and_undo_at_their_times() {
    let _heavy = heavy();
    let bbb = server();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("f.mp4");
    let url = bbb.presentation_url(SAMPLE_F);
    let result = run(&[&url, "-o", out.to_str().unwrap(), "--progress", "json"]);
    assert!(result.status.success(), "bbb-record failed");
    let ev = events(&result);
    let done = event(&ev, "done");
    assert_eq!(done["degraded"], serde_json::json!([]));
    // tldraw v1 loads nothing from a CDN.
    assert_eq!(done["assets_answered"], serde_json::json!([]));
    let p = probe(&out);
    assert!((p.video_duration - SAMPLE_F_SECONDS).abs() <= 1.0 / 30.0 + 0.05);
    let frames = frames_rgb(&out);
    assert_whiteboard_timeline(&frames, [("blue", BLUE), ("yellow", YELLOW)], false);
    assert_tone(&out, 550.0, SAMPLE_F_SECONDS);
    assert_eq!(dir_entries(dir.path()), vec!["f.mp4".to_string()]);
}

/// Sample G, a BBB 3.0 recording: tldraw v2 loads four fonts and a translation from unpkg; the
/// recorder answers each itself (the done event lists them, and this machine has no internet, so
/// without that the whiteboard would show "Could not load assets"), and the picture is right.
#[test]
fn bbb_3_0_whiteboard_renders_offline_with_the_bundled_assets() {
    let _heavy = heavy();
    let bbb = server();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("g.webm");
    let url = bbb.presentation_url(SAMPLE_G);
    let result = run(&[&url, "-o", out.to_str().unwrap(), "--progress", "json"]);
    assert!(result.status.success(), "bbb-record failed");
    let ev = events(&result);
    let done = event(&ev, "done");
    assert_eq!(done["degraded"], serde_json::json!([]));
    let answered: Vec<&str> = done["assets_answered"]
        .as_array()
        .expect("assets_answered")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    let cdn = "https://unpkg.com/@bigbluebutton/assets@2.0.0-alpha.20/";
    for file in [
        "fonts/Shantell_Sans-Normal-SemiBold.woff2",
        "fonts/IBMPlexSerif-Medium.woff2",
        "fonts/IBMPlexSans-Medium.woff2",
        "fonts/IBMPlexMono-Medium.woff2",
        "translations/en.json",
    ] {
        assert!(
            answered.contains(&format!("{cdn}{file}").as_str()),
            "{file} not answered: {answered:?}"
        );
    }
    // Nothing was refused or blocked.
    assert!(
        !ev.iter().any(|e| e["event"] == "warning"),
        "warnings: {ev:?}"
    );
    let p = probe(&out);
    assert_eq!(p.video_codec, "vp8");
    assert!((p.video_duration - SAMPLE_G_SECONDS).abs() <= 1.0 / 30.0 + 0.05);
    let frames = frames_rgb(&out);
    assert_whiteboard_timeline(&frames, [("green", GREEN), ("cyan", CYAN)], true);
    assert_tone(&out, 770.0, SAMPLE_G_SECONDS);
}

/// The error event of a failed run, checked: phase render, the class, and no output.
fn assert_render_failure(
    result: &std::process::Output,
    dir: &std::path::Path,
    class: &str,
) -> String {
    assert_eq!(
        result.status.code(),
        Some(if class == "permanent" { 3 } else { 4 })
    );
    let ev = events(result);
    let error = event(&ev, "error");
    assert_eq!(error["phase"], "render", "{error}");
    assert_eq!(error["class"], class, "{error}");
    assert!(
        dir_entries(dir).is_empty(),
        "left behind: {:?}",
        dir_entries(dir)
    );
    error["message"].as_str().unwrap_or_default().to_owned()
}

/// A whiteboard font the recorder does not bundle (a test knob of the sample player asks for one):
/// the player shows "Could not load assets" and the recording ends at once with exit 3 in phase
/// render, naming the refused URL; nothing is written.
#[test]
fn a_whiteboard_asset_that_cannot_be_answered_fails_in_render() {
    let _heavy = heavy();
    let bbb = server();
    bbb.faults()
        .set_player_knobs(Some(serde_json::json!({"extraFont": "NotBundled-Regular"})));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("g.mp4");
    let started = Instant::now();
    let result = run(&[
        &bbb.presentation_url(SAMPLE_G),
        "-o",
        out.to_str().unwrap(),
        "--progress",
        "json",
    ]);
    let took = started.elapsed();
    let message = assert_render_failure(&result, dir.path(), "permanent");
    assert!(message.contains("Could not load assets"), "{message}");
    assert!(
        message.contains("fonts/NotBundled-Regular.woff2"),
        "{message}"
    );
    // The message shows before the first media second; the recorder needs well under 30 s to end.
    assert!(took < Duration::from_secs(45), "took {took:?}");
}

/// The sample player fails mid-recording (a test knob shows tldraw's crash screen from 5.0 s):
/// exit 3 in phase render, the media time in the message, nothing written.
#[test]
fn a_player_failure_mid_recording_fails_in_render_with_its_media_time() {
    let _heavy = heavy();
    let bbb = server();
    bbb.faults().set_player_knobs(Some(
        serde_json::json!({"failAt": 5.0, "failText": "Something's gone wrong."}),
    ));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("g.mp4");
    let result = run(&[
        &bbb.presentation_url(SAMPLE_G),
        "-o",
        out.to_str().unwrap(),
        "--progress",
        "json",
    ]);
    let message = assert_render_failure(&result, dir.path(), "permanent");
    assert!(message.contains("Something's gone wrong"), "{message}");
    let at: f64 = message
        .split(" at ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no media time in {message:?}"));
    assert!((5.0..6.0).contains(&at), "failed at {at} s: {message}");
    // It played up to the failure first.
    assert!(events(&result).iter().any(|e| e["event"] == "progress"));
}

/// One slide of sample F is missing on the server: exit 3 in phase render naming the file and when
/// it is needed, before anything is written; with --accept-broken the recording is made, with a
/// warning and the defect in the done event's "degraded" list.
#[test]
fn a_missing_slide_fails_in_render_unless_broken_playbacks_are_accepted() {
    let _heavy = heavy();
    let bbb = server();
    bbb.faults().hide_files(&["svgs/slide2.svg"]);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("f.mp4");
    let url = bbb.presentation_url(SAMPLE_F);
    let result = run(&[&url, "-o", out.to_str().unwrap(), "--progress", "json"]);
    let message = assert_render_failure(&result, dir.path(), "permanent");
    assert!(message.contains("svgs/slide2.svg"), "{message}");
    assert!(message.contains("HTTP 404"), "{message}");
    assert!(message.contains("from 4.000 s"), "{message}");

    let result = run(&[
        &url,
        "-o",
        out.to_str().unwrap(),
        "--progress",
        "json",
        "--accept-broken",
    ]);
    assert!(result.status.success(), "bbb-record --accept-broken failed");
    let ev = events(&result);
    let degraded = event(&ev, "done")["degraded"]
        .as_array()
        .expect("degraded")
        .clone();
    assert!(!degraded.is_empty());
    assert!(
        degraded
            .iter()
            .all(|d| d.as_str().is_some_and(|d| d.contains("svgs/slide2.svg"))),
        "{degraded:?}"
    );
    assert!(
        ev.iter().any(|e| e["event"] == "warning"
            && e["message"]
                .as_str()
                .is_some_and(|m| m.contains("svgs/slide2.svg"))),
        "no warning: {ev:?}"
    );
    let p = probe(&out);
    assert!((p.video_duration - SAMPLE_F_SECONDS).abs() <= 1.0 / 30.0 + 0.05);
    assert_eq!(dir_entries(dir.path()), vec!["f.mp4".to_string()]);
}
