//! Esup-Pod's import_video path with Pod unchanged: `migrator/pod-plugin/export.js` stands in
//! for bbb-recorder. Each test runs EXACTLY the shell line Pod runs (`cd <plugin>; node export.js
//! <url> <filename> > <log> 2>&1 < /dev/null`) against the fake BBB server, with the REAL
//! `bbb-record` built from this workspace named in the plugin's `.env`, and checks what Pod then
//! relies on: a 2.3 and a 2.0 playback end up complete (WebM, picture and sound of the right
//! length) at `copyToPath/<filename>` with exit 0 and no temporary file; bad input fails with a
//! non-zero exit, a clear last log line and no file (not even an older one); SIGTERM stops the
//! recording and SIGKILL of `node` takes bbb-record down too, leaving no process and no file.
//! `node` missing is a failure, never a skip.

mod migrate_support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use fake_bbb::FakeBbb;
use fake_bbb::media::{
    ProcessWatch, SAMPLE_A, SAMPLE_B, SAMPLE_B_SECONDS, SAMPLE_C, descendants, dir_entries, heavy,
    server,
};
use migrate_support::{Container, assert_recorded_as, workspace, workspace_bin};

/// Sample C's media length (samples/README.md: 8008 ms).
const SAMPLE_C_SECONDS: f64 = 8.008;

/// A plugin directory as an admin sets it up: `export.js` (a symlink to the one in the source
/// tree, which is never written to) and `.env`, plus Pod's IMPORT_VIDEO_BBB_RECORDER_PATH with
/// the `logs/` sub-directory Pod's documentation asks for.
struct Plugin {
    _dir: tempfile::TempDir,
    plugin: PathBuf,
    media: PathBuf,
}

impl Plugin {
    fn new(bbb_record: &Path) -> Plugin {
        let version = Command::new("node").arg("--version").output();
        assert!(
            version.as_ref().is_ok_and(|o| o.status.success()),
            "node (Node.js 18 or later) is needed to test the Pod plugin: {version:?}"
        );
        let dir = tempfile::tempdir().unwrap();
        let plugin = dir.path().join("bbb-recorder");
        let media = dir.path().join("media");
        std::fs::create_dir_all(&plugin).unwrap();
        std::fs::create_dir_all(media.join("logs")).unwrap();
        let script = workspace().join("migrator/pod-plugin/export.js");
        assert!(script.is_file(), "{} is missing", script.display());
        std::os::unix::fs::symlink(&script, plugin.join("export.js")).unwrap();
        let p = Plugin {
            _dir: dir,
            plugin,
            media,
        };
        p.write_env(bbb_record);
        p
    }

    fn write_env(&self, bbb_record: &Path) {
        let env = format!(
            "# as in .env.example\nrtmpUrl=rtmp://a.rtmp.youtube.com/live2/MyKey\n\
             copyToPath={}\nplaybackFile=playback.html\n\nBBB_RECORD={}\n",
            self.media.display(),
            bbb_record.display()
        );
        std::fs::write(self.plugin.join(".env"), env).unwrap();
    }

    fn log(&self, filename: &str) -> PathBuf {
        self.media.join("logs").join(format!("{filename}.log"))
    }

    /// Pod's command line (IVV `bbb_encode_presentation`), URL unquoted as Pod leaves it.
    fn pod_command(&self, url: &str, filename: &str) -> Command {
        let line = format!(
            "cd {}; node export.js {} {} > {} 2>&1 < /dev/null",
            self.plugin.display(),
            url,
            filename,
            self.log(filename).display()
        );
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(line).env_remove("BBB_RECORD");
        cmd
    }

    /// Runs Pod's command to the end: its status and the log.
    fn run(&self, url: &str, filename: &str) -> (ExitStatus, String) {
        let status = self.pod_command(url, filename).status().unwrap();
        let log = std::fs::read_to_string(self.log(filename)).unwrap_or_default();
        (status, log)
    }

    /// Pod's output directory holds exactly `logs` and `files`: no temporary file.
    fn assert_media_holds(&self, files: &[&str]) {
        let mut want: Vec<String> = files.iter().map(|f| f.to_string()).collect();
        want.push("logs".into());
        want.sort();
        assert_eq!(
            dir_entries(&self.media),
            want,
            "in {}",
            self.media.display()
        );
    }
}

fn bbb_record() -> PathBuf {
    workspace_bin("bbb-record", "bbb-recorder")
}

fn last_line(log: &str) -> &str {
    log.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
}

fn record_and_check(url: &str, filename: &str, seconds: f64) {
    let plugin = Plugin::new(&bbb_record());
    let started = Instant::now();
    let (status, log) = plugin.run(url, filename);
    assert!(status.success(), "{status}; log:\n{log}");
    assert!(
        last_line(&log).contains("done"),
        "last line: {}",
        last_line(&log)
    );
    assert_recorded_as(&plugin.media.join(filename), seconds, Container::Webm);
    plugin.assert_media_holds(&[filename]);
    eprintln!("{filename}: recorded in {:?}", started.elapsed());
}

/// Mode 1 of the migration (spec 7.4) with a 2.3 link: the slug name `<name>-<date>.webm`.
#[test]
fn pod_command_records_a_23_playback_where_pod_picks_it_up() {
    let _heavy = heavy();
    let bbb = server();
    record_and_check(
        &bbb.presentation_url(SAMPLE_C),
        "sample-two-formats-2026-01-01.webm",
        SAMPLE_C_SECONDS,
    );
}

/// import_video (spec 8.1) with a 2.0 `playback.html?meetingId=` link, unquoted in Pod's shell
/// line: the name `<record_id>.webm`.
#[test]
fn pod_command_records_a_20_playback_where_pod_picks_it_up() {
    let _heavy = heavy();
    let bbb = server();
    record_and_check(
        &bbb.legacy_presentation_url(SAMPLE_B),
        "17.webm",
        SAMPLE_B_SECONDS,
    );
}

/// Bad input: non-zero exit, a last log line that says why, and nothing under the name Pod
/// looks for, not even a file an earlier run left there.
#[test]
fn bad_input_fails_with_a_clear_last_line_and_no_file() {
    let bbb = server();
    let plugin = Plugin::new(&bbb_record());
    let missing = "0000000000000000000000000000000000000000-1767261600000";
    // (URL, file name, the last line's telltale, whether an older file is there to be removed)
    let cases = [
        (
            bbb.presentation_url(missing),
            "42.webm",
            "bbb-record failed (exit 3)",
            true,
        ),
        (
            "ftp://127.0.0.1/playback/presentation/2.3/x".into(),
            "43.webm",
            "not an http(s) URL",
            true,
        ),
        // Pod with an empty URL: the file name shifts into the URL position.
        (String::new(), "44.webm", "usage: node export.js", false),
        (
            bbb.presentation_url(SAMPLE_C),
            "45.avi",
            "bad file name \"45.avi\"",
            false,
        ),
    ];
    for (url, filename, expected, older) in &cases {
        let path = plugin.media.join(filename);
        if *older {
            std::fs::write(&path, b"an older file").unwrap();
        }
        let (status, log) = plugin.run(url, filename);
        assert!(!status.success(), "{url} {filename}: exit 0; log:\n{log}");
        assert!(
            last_line(&log).contains(expected),
            "{url} {filename}: last line {:?}, expected {expected:?}; log:\n{log}",
            last_line(&log)
        );
        assert!(!path.exists(), "{url}: {filename} is there");
    }
    plugin.assert_media_holds(&[]);

    // A bbb-record that cannot be run.
    plugin.write_env(Path::new("/nonexistent/bbb-record"));
    let (status, log) = plugin.run(&bbb.presentation_url(SAMPLE_C), "46.webm");
    assert!(!status.success(), "{log}");
    assert!(
        last_line(&log).contains("bbb-record failed") && last_line(&log).contains("/nonexistent"),
        "{log}"
    );
    plugin.assert_media_holds(&[]);
}

/// Pod's command started in the background, with the processes under it watched; returns once
/// bbb-record has started Xvfb.
fn start_recording(plugin: &Plugin, bbb: &FakeBbb, filename: &str) -> (Child, ProcessWatch) {
    let child = plugin
        .pod_command(&bbb.presentation_url(SAMPLE_A), filename)
        .spawn()
        .unwrap();
    let watch = ProcessWatch::start(child.id());
    let deadline = Instant::now() + Duration::from_secs(60);
    while !watch.names().iter().any(|n| n == "Xvfb") {
        assert!(
            Instant::now() < deadline,
            "Xvfb never ran: {:?}",
            watch.names()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));
    (child, watch)
}

fn pid_named(root: u32, name: &str) -> i32 {
    std::iter::once(root)
        .chain(descendants(root))
        .find(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == name)
        })
        .unwrap_or_else(|| panic!("no {name} under {root}")) as i32
}

fn wait_with_limit(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "still running after {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// SIGTERM to `node` (a Celery worker stopping, an admin's kill): it stops bbb-record, waits for
/// it, says so last and exits non-zero; no process and no file remain.
#[test]
fn sigterm_stops_the_recording_and_leaves_no_process_and_no_file() {
    let _heavy = heavy();
    let bbb = server();
    let plugin = Plugin::new(&bbb_record());
    let filename = "sample-presentation-2026-01-01.webm";
    let (mut child, mut watch) = start_recording(&plugin, &bbb, filename);
    let node = pid_named(child.id(), "node");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(node),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = wait_with_limit(&mut child, Duration::from_secs(30));
    let log = std::fs::read_to_string(plugin.log(filename)).unwrap();
    assert!(!status.success(), "exit 0 after SIGTERM; log:\n{log}");
    assert!(
        last_line(&log).contains("bbb-record failed (exit 4)"),
        "last line {:?}; log:\n{log}",
        last_line(&log)
    );
    watch.assert_none_survive("Xvfb", Duration::from_secs(10));
    plugin.assert_media_holds(&[]);
}

/// SIGKILL of `node` (which cannot forward it): bbb-record still stops (parent-death signal) and
/// cleans up; no process and no file remain.
#[test]
fn sigkill_of_node_takes_bbb_record_down_and_leaves_no_file() {
    let _heavy = heavy();
    let bbb = server();
    let plugin = Plugin::new(&bbb_record());
    let filename = "18.webm";
    let (mut child, mut watch) = start_recording(&plugin, &bbb, filename);
    let node = pid_named(child.id(), "node");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(node),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let status = wait_with_limit(&mut child, Duration::from_secs(30));
    assert!(!status.success(), "sh: {status}");
    watch.assert_none_survive("Xvfb", Duration::from_secs(30));
    plugin.assert_media_holds(&[]);
}
