//! `bbb-record` on pages that are not BBB playbacks: recorded for `--duration`, or for the length
//! of the page's media element; an error (exit 3) when neither exists.

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
         <script>setTimeout(() => document.body.style.background = 'rgb(20,20,220)', 1500)</script>\
         </body></html>",
    );
    let out = dir.path().join("page.mp4");
    let result = run(&[
        &url,
        "-o",
        out.to_str().unwrap(),
        "--duration",
        "3",
        "--progress",
        "json",
    ]);
    assert!(result.status.success());
    let p = probe(&out);
    assert!(
        (p.video_duration - 3.0).abs() <= 1.0 / 30.0 + 0.05,
        "{}",
        p.video_duration
    );
    assert_eq!(
        p.audio_codec, None,
        "no sound is recorded from a generic page"
    );
    let frames = frames_rgb(&out);
    let colours = [("red", RED), ("blue", BLUE)];
    assert_eq!(dominant(frame_at(&frames, 0.3), &colours), Some("red"));
    assert_eq!(dominant(frame_at(&frames, 2.7), &colours), Some("blue"));
    assert!(
        share_of(frame_at(&frames, 2.7), BLUE) > 0.95,
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
    let result = run(&[&url, "-o", out.to_str().unwrap()]);
    assert_eq!(result.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&result.stderr).contains("--duration"));
    assert!(dir_entries(dir.path()).is_empty());
}
