//! `bbb-record contact-sheet` as a user runs it: the real binary on a short video made by the
//! recorder's own encoder, its JSON line, its exit codes and what it leaves on disk.

mod common;

use std::path::Path;

use bbb_common::recorder_protocol::{ContactSheet, TileKind};
use bbb_recorder::encode::{self, Container, VideoSettings, VideoWriter};
use common::*;

/// A 6 s 320x180 10 fps H.264 video: red, green, blue, 2 s each.
fn rgb_video(path: &Path) {
    encode::init().unwrap();
    let settings = VideoSettings {
        width: 320,
        height: 180,
        fps: 10,
        container: Container::Mkv,
        crf: None,
        preset: None,
    };
    let mut writer = VideoWriter::create(path, &settings).unwrap();
    for [r, g, b] in [RED, GREEN, BLUE] {
        let bgr0 = [b, g, r, 0].repeat(320 * 180);
        for i in 0..20 {
            writer.write(&bgr0, 320 * 4, i > 0).unwrap();
        }
    }
    writer.finish().unwrap();
}

#[test]
fn contact_sheet_prints_one_json_line_and_fails_on_a_non_video_with_exit_3() {
    let dir = tempfile::tempdir().unwrap();
    let video = dir.path().join("rgb.mkv");
    rgb_video(&video);
    let sheet = dir.path().join("rgb.jpg");
    let (v, s) = (video.to_str().unwrap(), sheet.to_str().unwrap());

    let result = run(&["contact-sheet", v, "-o", s, "--at", "2", "--at", "4"]);
    assert_eq!(result.status.code(), Some(0));
    let stdout = String::from_utf8(result.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let parsed: ContactSheet = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(
        (parsed.columns, parsed.tile_width, parsed.tile_height),
        (4, 320, 180)
    );
    let changes = parsed.tiles.iter().filter(|t| t.kind == TileKind::Change);
    assert_eq!(changes.count(), 2, "{parsed:?}");
    let picture = &frames_rgb(&sheet)[0];
    assert_eq!((picture.1, picture.2), (1280, 3 * 180));
    assert_eq!(dir_entries(dir.path()), ["rgb.jpg", "rgb.mkv"]);

    // Not a video: exit 3, the file named, no sheet.
    let page = dir.path().join("page.mp4");
    std::fs::write(&page, "<html>not found</html>").unwrap();
    let other = dir.path().join("page.jpg");
    let result = run(&[
        "contact-sheet",
        page.to_str().unwrap(),
        "-o",
        other.to_str().unwrap(),
    ]);
    assert_eq!(result.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(stderr.contains(page.to_str().unwrap()), "{stderr}");
    assert!(result.stdout.is_empty());
    assert!(!other.exists());

    // Usage errors: no -o, a negative time, a recording option given to the subcommand.
    for args in [
        vec!["contact-sheet", v],
        vec!["contact-sheet", v, "-o", s, "--at", "-1"],
        vec!["contact-sheet", v, "-o", s, "--fps", "10"],
    ] {
        assert_eq!(run(&args).status.code(), Some(2), "{args:?}");
    }
    assert_eq!(dir_entries(dir.path()), ["page.mp4", "rgb.jpg", "rgb.mkv"]);
}
