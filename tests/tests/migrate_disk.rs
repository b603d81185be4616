//! End-to-end tests of `bbb-migrate claim` against full disks and outputs that are not what
//! they should be. The claim and temp directories live on a small tmpfs of the test's own
//! (mounted here; the tests run as root), so "disk full" is a real ENOSPC from the kernel and
//! the free space a real statvfs: a download that fills the disk halfway leaves nothing and is
//! retried once space is back; a job too big for the free space waits without starting, ends
//! cleanly on Ctrl-C, and goes on by itself once space is freed; a recorder that fills the disk
//! leaves nothing and is retried, whatever its exit code said. Besides: a download that the
//! server cuts without announcing a length never succeeds, and a recording whose file is shorter
//! than the recording fails naming both lengths (bbb-record is replaced by a script that copies
//! a real 8-second video: the check is the migrator's, Chromium has nothing to add here; the
//! real recorder's output passing the same check is covered by migrate_record.rs).

mod migrate_support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fake_bbb::Throttle;
use migrate_support::*;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const VIDEO_FILE: &str = "sample-two-formats-2026-01-01.m4v";
/// Sample A: its metadata.xml says 15008 ms.
const PRESENTATION_ID: &str = "2e7380bcd2a9cc83f2a744b8707a7f75c0a94e9d-1767261600000";
const PRESENTATION_FILE: &str = "sample-presentation-2026-01-01.mp4";

/// A tmpfs mounted for one test, unmounted on drop (also when the test panics).
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `size` (mount's syntax, e.g. "512k") at `path`; a failure fails the
    /// test loudly: these tests are about real ENOSPC and must never pass without one.
    fn mount(path: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path).unwrap();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(path)
            .output()
            .unwrap_or_else(|e| panic!("cannot run mount(8) for the test's tmpfs: {e}"));
        assert!(
            out.status.success(),
            "mounting a {size} tmpfs at {} failed (these tests need root, or CAP_SYS_ADMIN, to \
             get a small filesystem of their own): {}",
            path.display(),
            text(&out.stderr)
        );
        Tmpfs(path.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            // Still busy (a process of a failed test): detach it now, the kernel frees it later.
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

/// The fake server and a config whose claim and temp directories are on a tmpfs of `size`, with
/// no free-space margin (the tmpfs is tiny) and a quick re-check.
struct Disk {
    // Dropped first: unmounted before the test's temp directory is removed.
    fs: Tmpfs,
    env: Env,
    claim: PathBuf,
    tmp: PathBuf,
}

fn disk(size: &str, extra: &str) -> Disk {
    let env = setup(
        "prefix",
        &format!("[worker]\nfree_space_margin_mb = 0\nfree_space_poll_ms = 200\n\n{extra}"),
    );
    let mount = env.dir.path().join("disk");
    let fs = Tmpfs::mount(&mount, size);
    let claim = mount.join("ftp/bbb-claim");
    let tmp = mount.join("tmp");
    std::fs::create_dir_all(&claim).unwrap();
    let cfg = std::fs::read_to_string(&env.config).unwrap();
    let old = format!(
        "default_recorder_path = \"{}/\"",
        env.dir.path().join("ftp").display()
    );
    assert!(cfg.contains(&old), "{cfg}");
    let cfg = cfg.replace(
        &old,
        &format!(
            "default_recorder_path = \"{}/\"\ntemp_dir = \"{}\"",
            mount.join("ftp").display(),
            tmp.display()
        ),
    );
    std::fs::write(&env.config, cfg).unwrap();
    Disk {
        fs,
        env,
        claim,
        tmp,
    }
}

impl Disk {
    /// Fills the tmpfs with `ballast` until the kernel says ENOSPC.
    fn fill(&self) -> PathBuf {
        let path = self.fs.0.join("ballast");
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        let block = [0u8; 4096];
        loop {
            if let Err(e) = f.write_all(&block) {
                assert_eq!(
                    e.raw_os_error(),
                    Some(libc::ENOSPC),
                    "filling the tmpfs: {e}"
                );
                return path;
            }
        }
    }

    /// `claim --record-id ID ARGS` in the background, its output in files.
    fn spawn_claim(&self, id: &str, args: &[&str], name: &str) -> Bg {
        let err = self.env.dir.path().join(format!("{name}.stderr"));
        let out = self.env.dir.path().join(format!("{name}.stdout"));
        let mut all = vec!["--progress", "plain", "claim", "--record-id", id];
        all.extend_from_slice(args);
        let child = self
            .env
            .command(&all)
            .env("BBB_MIGRATE_LOG", "info")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .expect("start bbb-migrate");
        Bg { child, out, err }
    }
}

/// A background `bbb-migrate`, killed on drop.
struct Bg {
    child: Child,
    out: PathBuf,
    err: PathBuf,
}

impl Bg {
    fn logs(&self) -> String {
        format!(
            "--- stdout\n{}\n--- stderr\n{}",
            std::fs::read_to_string(&self.out).unwrap_or_default(),
            std::fs::read_to_string(&self.err).unwrap_or_default()
        )
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    fn wait_for(&mut self, what: &str, cond: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !cond(self) {
            assert!(
                self.child.try_wait().unwrap().is_none(),
                "bbb-migrate ended before {what}\n{}",
                self.logs()
            );
            assert!(Instant::now() < deadline, "no {what}\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn exit_code(&mut self) -> Option<i32> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s.code();
            }
            assert!(
                Instant::now() < deadline,
                "bbb-migrate still running\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn status_json(env: &Env) -> serde_json::Value {
    let o = env.run(&["status", "--json"]);
    expect_code(&o, 0);
    serde_json::from_slice(&o.stdout).expect("status --json")
}

/// The only job's failure as `status --json` lists it.
fn failure(env: &Env) -> serde_json::Value {
    let s = status_json(env);
    assert_eq!(s["failures"].as_array().map(Vec::len), Some(1), "{s}");
    s["failures"][0].clone()
}

/// Sizes of every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            v.extend(files_under(&p));
        } else {
            v.push((p.clone(), e.metadata().map(|m| m.len()).unwrap_or(0)));
        }
    }
    v
}

#[test]
fn a_download_that_fills_the_disk_leaves_nothing_and_succeeds_once_space_is_back() {
    let d = disk("512k", "");
    let video = sample_video();
    // Slow after 16 KiB, so that the disk can be filled while the download runs.
    d.env.bbb.faults().set_throttle(Some(Throttle {
        bytes_per_sec: 20_000,
        after_bytes: 16_384,
    }));
    // `--no-wait`: this run ends (exit 4) with the job waiting for its retry, instead of
    // retrying on the full disk.
    let mut run = d.spawn_claim(VIDEO_ID, &["--no-wait"], "first");
    run.wait_for("partial download", |_| {
        files_under(&d.tmp).iter().any(|(_, n)| *n >= 16_384)
    });
    let ballast = d.fill();
    assert_eq!(run.exit_code(), Some(4), "{}", run.logs());
    assert!(
        d.claim.read_dir().unwrap().next().is_none(),
        "claim dir: {:?}",
        list(&d.claim)
    );
    assert!(
        files_under(&d.tmp).is_empty(),
        "temp files left: {:?}",
        files_under(&d.tmp)
    );
    let f = failure(&d.env);
    assert_eq!(f["state"], "pending", "{f}");
    assert_eq!(f["error_class"], "transient", "{f}");
    let error = f["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains(VIDEO_ID)
            && error.contains("download")
            && error.contains("No space left on device"),
        "{error}"
    );

    std::fs::remove_file(ballast).unwrap();
    d.env.bbb.faults().reset();
    // `--wait` rides out the retry backoff (about a second here).
    let o = d.env.run(&["claim", "--wait", "--record-id", VIDEO_ID]);
    expect_code(&o, 0);
    assert_eq!(list(&d.claim), vec![VIDEO_FILE.to_owned()]);
    assert!(
        std::fs::read(d.claim.join(VIDEO_FILE)).unwrap() == video,
        "wrong bytes placed"
    );
    assert!(files_under(&d.tmp).is_empty(), "{:?}", files_under(&d.tmp));
}

#[test]
fn a_job_too_big_for_the_free_space_waits_stops_on_ctrl_c_and_goes_on_once_space_is_back() {
    let d = disk("512k", "");
    let video = sample_video();
    // Leave 32 KiB free: less than the 76 KiB the server announces for the video.
    let ballast = d.fill();
    let len = std::fs::metadata(&ballast).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&ballast)
        .unwrap()
        .set_len(len - 32 * 1024)
        .unwrap();
    let waiting = |b: &Bg| b.stderr().contains("not starting the download");

    let mut run = d.spawn_claim(VIDEO_ID, &[], "interrupted");
    run.wait_for("message about the free space", waiting);
    let log = run.stderr();
    assert!(
        log.contains(VIDEO_ID)
            && log.contains("MiB free")
            && log.contains(&d.fs.0.display().to_string()),
        "{log}"
    );
    // Nothing of the body was written (the partial video is there, empty).
    let partial: Vec<_> = files_under(&d.tmp)
        .into_iter()
        .filter(|(p, _)| p.extension().is_some_and(|e| e == "m4v"))
        .collect();
    assert!(partial.len() == 1 && partial[0].1 == 0, "{partial:?}");
    kill(Pid::from_raw(run.child.id() as i32), Signal::SIGINT).unwrap();
    assert_eq!(run.exit_code(), Some(1), "{}", run.logs());
    let log = run.stderr();
    assert_eq!(
        log.matches("not starting the download").count(),
        1,
        "said once: {log}"
    );
    let s = status_json(&d.env);
    assert_eq!(s["counts"]["pending"], 1, "{s}");
    assert!(list(&d.claim).is_empty());
    assert!(files_under(&d.tmp).is_empty(), "{:?}", files_under(&d.tmp));

    let mut run = d.spawn_claim(VIDEO_ID, &[], "resumed");
    run.wait_for("message about the free space", waiting);
    std::fs::remove_file(&ballast).unwrap();
    assert_eq!(run.exit_code(), Some(0), "{}", run.logs());
    assert!(
        run.stderr().contains("enough free space again"),
        "{}",
        run.logs()
    );
    assert_eq!(list(&d.claim), vec![VIDEO_FILE.to_owned()]);
    assert!(
        std::fs::read(d.claim.join(VIDEO_FILE)).unwrap() == video,
        "wrong bytes placed"
    );
}

/// The server ends the body cleanly at half the file with no Content-Length: the size check has
/// nothing to compare with, the look at the file does.
#[test]
fn a_download_cut_without_a_length_never_succeeds() {
    let env = setup("prefix", "");
    env.bbb.faults().truncate_media_next(1);
    let o = env.run(&["claim", "--no-wait", "--record-id", VIDEO_ID]);
    expect_code(&o, 4);
    assert!(env.claimed().is_empty(), "{:?}", env.claimed());
    let f = failure(&env);
    assert_eq!(f["state"], "pending", "{f}");
    assert_eq!(f["error_class"], "transient", "{f}");
    let error = f["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains(VIDEO_ID) && error.contains("download") && error.contains("truncated"),
        "{error}"
    );
    let o = env.run(&["claim", "--wait", "--record-id", VIDEO_ID]);
    expect_code(&o, 0);
    assert!(std::fs::read(env.claim.join(VIDEO_FILE)).unwrap() == sample_video());
}

/// Stands in for bbb-record: says it records `planned` seconds (from the file `planned` next to
/// it), copies the 8-second sample video as its output and says it wrote what it planned.
const FAKE_RECORDER: &str = r#"#!/bin/sh
planned=$(cat "$(dirname "$0")/planned")
echo "{\"event\":\"started\",\"kind\":\"bbb-2.3\",\"duration\":$planned}"
cp "$(dirname "$0")/video.mp4" "$3" || exit 4
echo "{\"event\":\"done\",\"output\":\"$3\",\"duration\":$planned,\"frames\":1,\"degraded\":[]}"
"#;

#[test]
fn a_recording_shorter_than_the_recording_fails_naming_both_lengths() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("fake-bbb-record");
    std::fs::write(&script, FAKE_RECORDER).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(dir.path().join("video.mp4"), sample_video()).unwrap();
    std::fs::write(dir.path().join("planned"), "15.008").unwrap();
    let env = setup(
        "prefix",
        &format!("[recorder]\ncommand = \"{}\"\n", script.display()),
    );
    // One attempt: the job is dead after it, as it is after max_attempts.
    let cfg = std::fs::read_to_string(&env.config).unwrap();
    std::fs::write(
        &env.config,
        cfg.replace(
            "retry_base_secs = 1",
            "retry_base_secs = 1\nmax_attempts = 1",
        ),
    )
    .unwrap();
    let o = env.run(&["claim", "--record-id", PRESENTATION_ID]);
    expect_code(&o, 1);
    assert!(env.claimed().is_empty(), "{:?}", env.claimed());
    let f = failure(&env);
    assert_eq!(f["state"], "dead", "{f}");
    let error = f["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains(PRESENTATION_ID)
            && error.contains("record failed")
            && error.contains("lasts 8.0")
            && error.contains("15.008 s")
            && error.contains("tolerance"),
        "{error}"
    );

    // The same file for a recording of its own length is placed: the check is not a refusal.
    std::fs::write(dir.path().join("planned"), "8.0").unwrap();
    let o = env.run(&["retry", "--record-id", PRESENTATION_ID]);
    expect_code(&o, 0);
    let o = env.run(&["claim", "--record-id", PRESENTATION_ID]);
    expect_code(&o, 0);
    assert_eq!(env.claimed(), vec![PRESENTATION_FILE.to_owned()]);
}

/// Stands in for bbb-record filling the disk: it writes zeros to its output until the kernel
/// refuses, then exits 3 ("permanent") as an encoder that cannot tell a full disk from a bad
/// playback might.
const FILLING_RECORDER: &str = r#"#!/bin/sh
echo '{"event":"started","kind":"bbb-2.3","duration":15.008}'
head -c 100000000 /dev/zero > "$3" || { echo "encode: write error" >&2; exit 3; }
exit 0
"#;

/// A recorder that fills the work directory: its file is removed, nothing is placed, and the
/// job is transient (retried later), not dead, whatever the recorder's exit code said.
#[test]
fn a_recorder_that_fills_the_disk_leaves_nothing_and_is_retried_later() {
    use std::os::unix::fs::PermissionsExt;
    let script_dir = tempfile::tempdir().unwrap();
    let script = script_dir.path().join("filling-bbb-record");
    std::fs::write(&script, FILLING_RECORDER).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    // Room for the job's estimate (one minute at 4 Mbit/s: 30 MB), not for what it writes.
    let d = disk(
        "40m",
        &format!("[recorder]\ncommand = \"{}\"\n", script.display()),
    );
    let o = d
        .env
        .run(&["claim", "--no-wait", "--record-id", PRESENTATION_ID]);
    expect_code(&o, 4);
    assert!(list(&d.claim).is_empty(), "{:?}", list(&d.claim));
    assert!(files_under(&d.tmp).is_empty(), "{:?}", files_under(&d.tmp));
    let f = failure(&d.env);
    assert_eq!(f["state"], "pending", "{f}");
    assert_eq!(f["error_class"], "transient", "{f}");
    let error = f["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains(PRESENTATION_ID)
            && error.contains("record failed")
            && error.contains("exit 3")
            && error.contains(&format!("{} is full", d.tmp.display())),
        "{error}"
    );
}
