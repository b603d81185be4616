//! End-to-end tests of `bbb-record` on the bundled samples, served by the fake BBB server: real
//! Chromium, real Xvfb, real libav. Each test asserts on the decoded output file.

mod common;

use common::*;

const SLIDES_A: [(&str, [u8; 3]); 4] = [
    ("red", RED),
    ("green", GREEN),
    ("blue", BLUE),
    ("magenta", MAGENTA),
];

/// Sample A's slide changes (5 s green, 10 s blue) and screen share (6 s) land within
/// `tolerance` seconds of their media times.
fn assert_changes_land_within(frames: &[(f64, u32, u32, Vec<u8>)], tolerance: f64) {
    for (change, colour) in [(5.0, "green"), (10.0, "blue"), (6.0, "magenta")] {
        let first = frames
            .iter()
            .find(|f| f.0 > change - 1.0 && dominant(f, &SLIDES_A) == Some(colour))
            .unwrap_or_else(|| panic!("{colour} never shows"));
        assert!(
            (first.0 - change).abs() <= tolerance,
            "{colour} first shows at {:.3} s, expected {change} s",
            first.0
        );
    }
}

/// Sample A through the 2.3 sample player, default settings: duration, codecs, size, rate, the
/// slide and screen-share colours at known media times, the tone over the whole length, and when
/// the slide changes land.
#[test]
fn sample_a_mp4_has_exact_duration_slides_screen_share_and_tone() {
    let _heavy = heavy();
    let bbb = server();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("a.mp4");
    let url = bbb.presentation_url(SAMPLE_A);
    let result = run(&[&url, "-o", out.to_str().unwrap(), "--progress", "json"]);
    assert!(result.status.success(), "bbb-record failed");
    let stdout = String::from_utf8_lossy(&result.stdout);
    let done: serde_json::Value = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["event"] == "done")
        .expect("a done event");
    assert_eq!(done["output"], out.to_str().unwrap());
    assert!(stdout.lines().any(|l| l.contains("\"event\":\"progress\"")));

    let p = probe(&out);
    assert_eq!(p.video_codec, "h264");
    assert_eq!(p.audio_codec.as_deref(), Some("aac"));
    assert_eq!((p.width, p.height), (1280, 720));
    assert!((p.fps - 30.0).abs() < 0.01, "fps {}", p.fps);
    let frame = 1.0 / 30.0;
    assert!(
        (p.video_duration - SAMPLE_A_SECONDS).abs() <= frame + 0.05,
        "video lasts {} s, playback {} s",
        p.video_duration,
        SAMPLE_A_SECONDS
    );
    assert!(
        (p.audio_duration - SAMPLE_A_SECONDS).abs() <= 0.05,
        "audio lasts {} s",
        p.audio_duration
    );
    assert_eq!(p.video_frames, (SAMPLE_A_SECONDS * 30.0).round() as u64);
    // moov before mdat: the file plays while it downloads.
    let head = std::fs::read(&out).unwrap();
    let moov = head.windows(4).position(|w| w == b"moov").unwrap();
    let mdat = head.windows(4).position(|w| w == b"mdat").unwrap();
    assert!(moov < mdat, "moov atom after mdat");

    let frames = frames_rgb(&out);
    for (t, expected) in [
        (1.0, "red"),
        (4.0, "red"),
        (5.5, "green"),
        (7.0, "magenta"),
        (9.0, "green"),
        (10.5, "blue"),
        (14.5, "blue"),
    ] {
        let f = frame_at(&frames, t);
        assert_eq!(
            dominant(f, &SLIDES_A),
            Some(expected),
            "frame at {t} s (pts {:.3})",
            f.0
        );
    }
    assert_changes_land_within(&frames, 0.1);
    // The tone is 440 Hz throughout, second by second. The source track's first packet sits at
    // -7 ms (the Opus pre-skip), so its sound ends at 14.993 s on the timeline: the last window
    // stops at 14.99 s, or the end of the tone would read as a lower pitch.
    let (rate, samples) = audio_samples(&out);
    assert_eq!(rate, 48_000);
    for second in 0..15 {
        let end = (second as f64 + 1.0).min(14.99);
        let s = &samples[second * 48_000..(end * 48_000.0) as usize];
        let (hz, rms) = tone(s, rate);
        assert!((hz - 440.0).abs() < 3.0, "second {second}: {hz} Hz");
        assert!(rms > 0.02, "second {second}: silent (rms {rms})");
    }
    assert_eq!(dir_entries(dir.path()), vec!["a.mp4".to_string()]);
}

/// A part of the playback, the presentation-only layout, 1080p, WebM, with a contact sheet whose
/// change tiles show the slides after the changes at media 5 and 10 s (output 1 and 6 s).
#[test]
fn start_end_content_layout_1080p_webm() {
    let _heavy = heavy();
    let bbb = server();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("part.webm");
    let sheet_path = dir.path().join("part.jpg");
    let url = bbb.presentation_url(SAMPLE_A);
    let result = run(&[
        &url,
        "-o",
        out.to_str().unwrap(),
        "--start",
        "4",
        "--end",
        "11",
        "--layout",
        "content",
        "--size",
        "1920x1080",
        "--progress",
        "json",
        "--contact-sheet",
        sheet_path.to_str().unwrap(),
    ]);
    assert!(result.status.success());
    let done = String::from_utf8_lossy(&result.stdout)
        .lines()
        .filter_map(bbb_common::recorder_protocol::Line::parse)
        .find_map(|l| match l {
            bbb_common::recorder_protocol::Line::Done { sheet, .. } => Some(sheet),
            _ => None,
        })
        .expect("a done event");
    let sheet = done.expect("the done event has the sheet");
    let sheet_picture = &frames_rgb(&sheet_path)[0];
    let changes: Vec<(usize, f64)> = sheet
        .tiles
        .iter()
        .enumerate()
        .filter(|(_, t)| t.kind == bbb_common::recorder_protocol::TileKind::Change)
        .map(|(i, t)| (i, t.at))
        .collect();
    assert_eq!(changes.len(), 2, "{sheet:?}");
    for ((index, at), (change, colour)) in changes.into_iter().zip([(1.0, "green"), (6.0, "blue")])
    {
        assert!(at > change && at < change + 0.5, "{sheet:?}");
        let (tw, th) = (sheet.tile_width as usize, sheet.tile_height as usize);
        let (x0, y0) = (index % 4 * tw, index / 4 * th);
        let mut tile = Vec::with_capacity(tw * th * 3);
        for y in y0..y0 + th {
            let row = (y * sheet_picture.1 as usize + x0) * 3;
            tile.extend_from_slice(&sheet_picture.3[row..row + tw * 3]);
        }
        let tile = (at, tw as u32, th as u32, tile);
        assert_eq!(
            dominant(&tile, &SLIDES_A),
            Some(colour),
            "the tile at {at} s"
        );
    }
    assert_eq!(dir_entries(dir.path()), ["part.jpg", "part.webm"]);
    let p = probe(&out);
    assert_eq!(p.video_codec, "vp8");
    assert_eq!(p.audio_codec.as_deref(), Some("opus"));
    assert_eq!((p.width, p.height), (1920, 1080));
    assert!(
        (p.video_duration - 7.0).abs() <= 1.0 / 30.0 + 0.05,
        "{}",
        p.video_duration
    );
    let frames = frames_rgb(&out);
    // Output time t shows media time 4 + t.
    assert_eq!(dominant(frame_at(&frames, 0.5), &SLIDES_A), Some("red"));
    assert_eq!(dominant(frame_at(&frames, 1.5), &SLIDES_A), Some("green"));
    assert_eq!(dominant(frame_at(&frames, 6.5), &SLIDES_A), Some("blue"));
    // Presentation only: the slide fills most of the picture, and the top-left corner, where
    // every other layout shows the webcam (ffmpeg's testsrc: bars and a counter, 84 % of the
    // pixels off the corner's main colour at 1080p in the default layout), is plain background.
    let frame = frame_at(&frames, 6.5);
    assert!(share_of(frame, BLUE) > 0.4);
    let corner = spread_in(frame, (0.0, 1.0 / 6.0), (0.0, 0.17));
    assert!(
        corner < 0.02,
        "the webcam's corner is not empty: {corner:.3}"
    );
    let (rate, samples) = audio_samples(&out);
    let (hz, _) = tone(&samples[rate as usize..rate as usize * 6], rate);
    assert!((hz - 440.0).abs() < 3.0, "{hz} Hz");
}

/// An audio-only recording (no webcams file): the sound comes from audio/audio.webm.
#[test]
fn audio_only_recording() {
    let _heavy = heavy();
    let bbb = server();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("b.mp4");
    let result = run(&[&bbb.presentation_url(SAMPLE_B), "-o", out.to_str().unwrap()]);
    assert!(result.status.success());
    let p = probe(&out);
    assert!((p.video_duration - SAMPLE_B_SECONDS).abs() <= 1.0 / 30.0 + 0.05);
    let frames = frames_rgb(&out);
    let colours = [("yellow", YELLOW), ("cyan", CYAN)];
    assert_eq!(dominant(frame_at(&frames, 2.0), &colours), Some("yellow"));
    assert_eq!(dominant(frame_at(&frames, 6.0), &colours), Some("cyan"));
    let (rate, samples) = audio_samples(&out);
    let (hz, _) = tone(&samples[..rate as usize * 7], rate);
    assert!((hz - 660.0).abs() < 3.0, "{hz} Hz");
}

/// `--audio pulse` on a BBB playback: the sound is what the browser played, heard through the
/// recording's private PulseAudio server and placed on the media clock.
#[test]
fn audio_only_recording_heard_through_pulseaudio() {
    let _heavy = heavy();
    let bbb = server();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("b.mkv");
    // The page plays a 1 kHz tone of its own and mutes the media (a sample player knob): what
    // the browser plays differs from the recording's 660 Hz, so the option cannot go unnoticed.
    bbb.faults()
        .set_player_knobs(Some(serde_json::json!({"pageTone": 1000})));
    let url = bbb.presentation_url(SAMPLE_B);
    let result = run(&[&url, "-o", out.to_str().unwrap(), "--audio", "pulse"]);
    assert!(result.status.success());
    let p = probe(&out);
    assert!((p.video_duration - SAMPLE_B_SECONDS).abs() <= 1.0 / 30.0 + 0.05);
    let (rate, samples) = audio_samples(&out);
    let length = samples.len() as f64 / f64::from(rate);
    assert!(
        (length - SAMPLE_B_SECONDS).abs() < 0.05,
        "sound lasts {length} s"
    );
    let share = share_with_tone(&samples, rate, 1.0, 1000.0);
    assert!(
        share >= 0.75,
        "the page's 1 kHz in {share:.2} of the windows"
    );
    let source = share_with_tone(&samples, rate, 1.0, 660.0);
    assert!(
        source < 0.1,
        "the recording's own 660 Hz in {source:.2} of the windows"
    );
    assert!(
        processes_with("bbb-pulse-").is_empty(),
        "PulseAudio is gone"
    );
}

/// `--capture screencast`: the pictures come from the DevTools screencast (sent only when the page
/// redraws) instead of x11grab; the output still has every frame, the right duration and the
/// changes at their media times (within 250 ms: a screencast picture is stamped at its swap, but
/// Chromium skips pictures while an acknowledgement is on its way, which a loaded machine slows).
#[test]
fn screencast_capture() {
    let _heavy = heavy();
    let bbb = server();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("a.mp4");
    let url = bbb.presentation_url(SAMPLE_A);
    let result = run(&[&url, "-o", out.to_str().unwrap(), "--capture", "screencast"]);
    assert!(result.status.success());
    let p = probe(&out);
    assert!((p.video_duration - SAMPLE_A_SECONDS).abs() <= 1.0 / 30.0 + 0.05);
    assert_eq!(p.video_frames, (SAMPLE_A_SECONDS * 30.0).round() as u64);
    assert_eq!((p.width, p.height), (1280, 720));
    let frames = frames_rgb(&out);
    assert_changes_land_within(&frames, 0.25);
    assert_eq!(dir_entries(dir.path()), vec!["a.mp4".to_string()]);
}

/// The legacy 2.0 player URL.
#[test]
fn legacy_20_player() {
    let _heavy = heavy();
    let bbb = server();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("legacy.mp4");
    let result = run(&[
        &bbb.legacy_presentation_url(SAMPLE_A),
        "-o",
        out.to_str().unwrap(),
        "--end",
        "7",
    ]);
    assert!(result.status.success());
    let p = probe(&out);
    assert!((p.video_duration - 7.0).abs() <= 1.0 / 30.0 + 0.05);
    let frames = frames_rgb(&out);
    assert_eq!(dominant(frame_at(&frames, 2.0), &SLIDES_A), Some("red"));
    assert_eq!(dominant(frame_at(&frames, 5.7), &SLIDES_A), Some("green"));
}

/// A 2.0 link that the server redirects to the 2.3 player (as upgraded servers do).
#[test]
fn legacy_link_redirected_to_23() {
    let _heavy = heavy();
    let bbb = server();
    bbb.faults().set_redirect_20(true);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("redirected.mp4");
    let result = run(&[
        &bbb.legacy_presentation_url(SAMPLE_A),
        "-o",
        out.to_str().unwrap(),
        "--start",
        "9",
        "--end",
        "11",
        "--layout",
        "content",
    ]);
    assert!(result.status.success());
    let frames = frames_rgb(&out);
    assert_eq!(dominant(frame_at(&frames, 0.5), &SLIDES_A), Some("green"));
    assert_eq!(dominant(frame_at(&frames, 1.5), &SLIDES_A), Some("blue"));
}

/// Sound and picture of a sample D recording (a 1 kHz beep at 0 s and at every slide change,
/// every 4 s): the beeps at the output times `beeps` (within 20 ms: the sound is cut and placed
/// on the media timeline), the picture changes at `changes` (within `tolerance`), and each
/// change within `tolerance` plus the beep's 20 ms of its beep.
fn assert_beeps_and_changes(out: &std::path::Path, beeps: &[f64], changes: &[f64], tolerance: f64) {
    let (rate, samples) = audio_samples(out);
    let found = beep_onsets(&samples, rate);
    assert_eq!(
        found.len(),
        beeps.len(),
        "beeps at {found:?}, expected {beeps:?}"
    );
    for (b, e) in found.iter().zip(beeps) {
        assert!(
            (b - e).abs() <= 0.02,
            "a beep at {b:.3} s, expected {e} s: {found:?}"
        );
    }
    let offsets = av_offsets(out, &SAMPLE_D_SLIDES);
    eprintln!("picture - sound at each change (s): {offsets:?}");
    assert_eq!(offsets.len(), changes.len(), "changes: {offsets:?}");
    for ((change, offset), e) in offsets.iter().zip(changes) {
        // 1e-9: a change exactly `tolerance` late (three frames at 30 fps: 4.1 s is
        // 4.1000000000000005 once decoded) is within it.
        assert!(
            (change - e).abs() <= tolerance + 1e-9,
            "a change at {change:.3} s, expected {e} s"
        );
        // Each side is allowed its own error: the picture `tolerance`, the beep 20 ms (above; the
        // webcams file of sample D starts 7 ms early, and that start is kept).
        assert!(
            offset.abs() <= tolerance + 0.02,
            "the picture changes at {change:.3} s, {:.0} ms from its beep",
            offset * 1000.0
        );
    }
}

/// A 20 s sample D (a slide change and a 1 kHz beep every 4 s), generated and served: its
/// directory (keep it alive), the server and its record id.
fn beeping_sample() -> (tempfile::TempDir, fake_bbb::FakeBbb, String) {
    let site = tempfile::tempdir().unwrap();
    let id = generate_sample_d(site.path(), "20s");
    let bbb = fake_bbb::FakeBbb::builder()
        .samples_dir(site.path())
        .start_blocking()
        .unwrap();
    (site, bbb, id)
}

/// A/V sync under stress: the server trickles the media slower than it plays, so the player
/// stalls; the output still has the right length, and at each slide change of a beeping sample
/// (a 20 s sample D: a change and a beep every 4 s) picture and sound stay together and both are
/// at their media times. Stated tolerance: 150 ms, four frames, as in the long run: on a loaded
/// 2-core machine the first slide change after the stalled start lands 3 to 4 frames late (the
/// player repaints late while it catches up); a stall that shifted the picture would move every
/// later change by the stall's length, seconds.
#[test]
fn stalls_do_not_shift_or_truncate_the_picture() {
    let _heavy = heavy();
    let (_site, bbb, id) = beeping_sample();
    bbb.faults().set_throttle(Some(fake_bbb::Throttle {
        // Range requests each start a new response: throttle from the first byte. Sample D's
        // media needs about 8 kB/s.
        bytes_per_sec: 5_000,
        after_bytes: 0,
    }));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("stalled.mp4");
    let started = std::time::Instant::now();
    let result = run(&[
        &bbb.presentation_url(&id),
        "-o",
        out.to_str().unwrap(),
        "--progress",
        "json",
    ]);
    assert!(result.status.success());
    let stdout = String::from_utf8_lossy(&result.stdout);
    assert!(
        stdout.contains("\"event\":\"stalled\""),
        "the playback never stalled: the test proves nothing"
    );
    eprintln!("took {:?} for a 20 s playback", started.elapsed());
    let p = probe(&out);
    assert!((p.video_duration - 20.008).abs() <= 1.0 / 30.0 + 0.05);
    assert!((p.audio_duration - 20.008).abs() <= 0.05);
    assert_beeps_and_changes(
        &out,
        &[0.0, 4.0, 8.0, 12.0, 16.0],
        &[4.0, 8.0, 12.0, 16.0],
        0.15,
    );
}

/// `--start 6 --end 14` on a beeping sample: the output starts at media time 6 and ends at 14,
/// and the sound is cut on the same timeline: the beeps of the changes at 8 and 12 s are at 2.0
/// and 6.0 s of the output (within 20 ms), each with its picture change (within 100 ms).
#[test]
fn start_and_end_cut_picture_and_sound_on_the_same_timeline() {
    let _heavy = heavy();
    let (_site, bbb, id) = beeping_sample();
    let dir = tempfile::tempdir().unwrap();
    // MP4: its edit list hides the AAC encoder's 1024 priming samples, so output time 0 is the
    // first sample of both tracks (Matroska shifts both tracks 21 ms instead, in sync).
    let out = dir.path().join("cut.mp4");
    let result = run(&[
        &bbb.presentation_url(&id),
        "-o",
        out.to_str().unwrap(),
        "--start",
        "6",
        "--end",
        "14",
    ]);
    assert!(result.status.success());
    let p = probe(&out);
    assert!(
        (p.video_duration - 8.0).abs() <= 1.0 / 30.0 + 0.05,
        "{}",
        p.video_duration
    );
    assert!(
        (p.audio_duration - 8.0).abs() <= 0.05,
        "{}",
        p.audio_duration
    );
    assert_beeps_and_changes(&out, &[2.0, 6.0], &[2.0, 6.0], 0.1);
}
