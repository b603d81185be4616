//! The sample 2.3 player page, loaded by real headless Chromium from the fake BBB server: it
//! keeps the real player's DOM contract (bbb-playback.md) so that the recorder tests are not
//! easier than the real thing. Each case dumps the DOM after the page settled.

mod browser_support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use fake_bbb::FakeBbb;
use fake_bbb::media::{self, SAMPLE_A};

/// The DOM of `url` once loading settled (10 s of virtual time: the page's timers run, no wall
/// time is spent waiting).
fn dom(url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let chromium = Path::new("/usr/lib/chromium/chromium");
    assert!(
        chromium.is_file(),
        "Chromium is missing: run .ci/install-deps"
    );
    // `timeout` bounds a hung browser; a private profile keeps runs apart.
    let out = Command::new("timeout")
        .args(["-k", "5", "90"])
        .arg(chromium)
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--dump-dom",
            "--virtual-time-budget=10000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(url)
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium {url}: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 DOM")
}

fn error_code(dom: &str) -> Option<&str> {
    let at = dom.find("class=\"error-code\">")? + "class=\"error-code\">".len();
    dom[at..].split('<').next()
}

fn webcams_classes(dom: &str) -> &str {
    let at = dom.find("class=\"video-js").expect("a video.js element") + "class=\"".len();
    dom[at..].split('"').next().unwrap()
}

#[test]
fn the_player_mounts_paused_with_its_chrome_and_without_autoplay() {
    let bbb = media::server();
    let d = dom(&bbb.presentation_url(SAMPLE_A));
    assert_eq!(error_code(&d), None, "{d}");
    assert!(d.contains("id=\"webcams\""), "#webcams: {d}");
    let video = &d[d.find("<video").expect("a video element")..];
    let video = &video[..video.find('>').unwrap()];
    assert!(!video.contains("autoplay"), "{video}");
    let classes = webcams_classes(&d);
    assert!(
        classes.contains("vjs-paused") && !classes.contains("vjs-has-started"),
        "never starts by itself: {classes}"
    );
    for chrome in [
        "vjs-big-play-button",
        "vjs-control-bar",
        "class=\"top-bar\"",
        "Sample presentation - ",
        "id=\"presentation\"",
        "id=\"chat\"",
        "id=\"screenshare\"",
        // external_videos.json's link, a system message of the chat list (shown from 7 s).
        "https://video.example.org/watch/lecture-intro",
    ] {
        assert!(d.contains(chrome), "{chrome} missing");
    }
}

#[test]
fn bad_and_unknown_record_ids_show_400_and_404() {
    let bbb = media::server();
    let bad = format!(
        "{}/playback/presentation/2.3/not-a-record-id",
        bbb.base_url()
    );
    assert_eq!(error_code(&dom(&bad)), Some("400"));
    let unknown = bbb.presentation_url(&format!("{}-1767261600000", "0".repeat(40)));
    assert_eq!(error_code(&dom(&unknown)), Some("404"));
}

/// `?t=3s` seeks the paused player to 3 s; `?t=12` (no unit) is ignored, as in the real player.
/// The seek waits for the media's metadata, which loads in real time, not in the virtual time
/// of `--dump-dom`: so this case watches the page over DevTools until the media settled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t_with_a_unit_seeks_without_playing_and_without_one_is_ignored() {
    let bbb = media::server();
    let seeked = settled_media(&format!("{}?t=3s", bbb.presentation_url(SAMPLE_A))).await;
    assert_eq!(seeked.display, "0:03", "{seeked:?}");
    assert_eq!(seeked.current_time, 3.0, "{seeked:?}");
    assert!(seeked.paused, "a seek does not start playing: {seeked:?}");
    let ignored = settled_media(&format!("{}?t=12", bbb.presentation_url(SAMPLE_A))).await;
    assert_eq!(
        ignored.display, "0:00",
        "t=12 (no unit) is ignored: {ignored:?}"
    );
    assert_eq!(ignored.current_time, 0.0, "{ignored:?}");
}

/// The webcams video's state once its metadata is loaded, no seek is pending, and the player's
/// time display shows the media time.
#[derive(Debug, serde::Deserialize)]
struct MediaState {
    current_time: f64,
    paused: bool,
    display: String,
}

/// Loads `url` in headless Chromium (supervised like the recorder's) and polls the page until
/// its media settled, for at most 30 s.
async fn settled_media(url: &str) -> MediaState {
    const SETTLED: &str = r#"(() => {
        const v = document.querySelector('#webcams video');
        const d = document.querySelector('.vjs-current-time-display');
        if (!v || !d || v.readyState < 1 || v.seeking) return null;
        const t = Math.floor(v.currentTime);
        const shown = Math.floor(t / 60) + ':' + String(t % 60).padStart(2, '0');
        if (d.textContent !== shown) return null;
        return { current_time: v.currentTime, paused: v.paused, display: d.textContent };
    })()"#;
    let (headless, page) = browser_support::open(url, 1280, 720).await;
    let value = browser_support::wait_for(
        &page,
        SETTLED,
        Duration::from_millis(100),
        Duration::from_secs(30),
    )
    .await;
    let state = serde_json::from_value(value).expect("the media state");
    headless.close().await;
    state
}

/// The real player's shapes builder fails on a canvas group without shapes (error 400); a
/// recording that works here must work there.
#[test]
fn an_empty_canvas_group_is_error_400_as_in_the_real_player() {
    let site = tempfile::tempdir().unwrap();
    let samples = media::samples_dir();
    std::os::unix::fs::symlink(samples.join("player"), site.path().join("player")).unwrap();
    let from = samples.join("recordings/presentation").join(SAMPLE_A);
    let to = site.path().join("recordings/presentation").join(SAMPLE_A);
    copy_tree(&from, &to);
    let shapes = std::fs::read_to_string(to.join("shapes.svg")).unwrap();
    let broken = shapes.replacen(
        "</svg>",
        "  <g class=\"canvas\" id=\"canvas2\" image=\"image2\" display=\"none\"/>\n</svg>",
        1,
    );
    assert_ne!(broken, shapes);
    std::fs::write(to.join("shapes.svg"), broken).unwrap();
    let bbb = FakeBbb::builder()
        .samples_dir(site.path())
        .start_blocking()
        .unwrap();
    assert_eq!(
        error_code(&dom(&bbb.presentation_url(SAMPLE_A))),
        Some("400")
    );
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}
