//! Shared set-up of the `bbb-migrate` end-to-end tests: a fake BBB server on 127.0.0.1 serving
//! the project's samples, a fresh temp directory per test (claim directory, ledger, cache), a
//! config file, and a runner for the real `bbb-migrate` binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

use fake_bbb::FakeBbb;

pub const VIDEO_ID: &str = "b52a07e307e4ae680c470b70ae91cdfe83b3eda3-1767268800000";
/// How many recordings the bundled samples list (A, B, C, F and G; samples/README.md).
pub const SAMPLE_RECORDINGS: usize = 5;

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf()
}

pub fn samples() -> PathBuf {
    let s = workspace().join("samples");
    assert!(
        s.join("recordings").is_dir(),
        "the samples are missing: {} (run samples/generate.sh)",
        s.display()
    );
    s
}

/// The target directory of this test binary's profile (`target/<profile>/`).
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .to_path_buf()
}

/// A binary of this workspace, built now by cargo itself (`cargo build -p <package> --bin
/// <name>`, the profile and target directory of this test), so a test never runs a stale one.
/// Cargo hands a test the path of its own package's binaries only; for the other packages'
/// binaries, escargot runs the build and reads the path from cargo's messages. When nothing
/// changed the build takes a fraction of a second; it is asked once per binary and test process.
pub fn workspace_bin(name: &str, package: &str) -> PathBuf {
    static BUILT: Mutex<Vec<(String, PathBuf)>> = Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, path)) = built.iter().find(|(n, _)| n == name) {
        return path.clone();
    }
    let target_dir = profile_dir()
        .parent()
        .expect("the target directory")
        .to_path_buf();
    let run = escargot::CargoBuild::new()
        .manifest_path(workspace().join("Cargo.toml"))
        .package(package)
        .bin(name)
        .current_release()
        .target_dir(target_dir)
        .run()
        .unwrap_or_else(|e| panic!("cargo build -p {package} --bin {name}: {e}"));
    let path = run.path().to_path_buf();
    built.push((name.to_owned(), path.clone()));
    path
}

pub fn migrate_bin() -> PathBuf {
    workspace_bin("bbb-migrate", "bbb-migrator")
}

pub struct Env {
    pub dir: tempfile::TempDir,
    pub bbb: FakeBbb,
    pub claim: PathBuf,
    pub config: PathBuf,
    pub ledger: PathBuf,
}

/// Starts the fake server and writes a config. `extra` is appended to the `[bbb]` section text;
/// `sections` after it (e.g. `[recorder]` ...).
pub fn setup(fetch: &str, extra_sections: &str) -> Env {
    setup_from(&samples(), fetch, extra_sections)
}

/// [`setup`] with the fake server serving the recordings of `samples` (a changed copy of the
/// samples) instead of the samples themselves.
pub fn setup_from(samples: &Path, fetch: &str, extra_sections: &str) -> Env {
    let bbb = FakeBbb::builder()
        .samples_dir(samples.to_path_buf())
        .start_blocking()
        .expect("fake BBB server");
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("ftp");
    let claim = root.join("bbb-claim");
    std::fs::create_dir_all(&claim).unwrap();
    let ledger = dir.path().join("ledger.db");
    let config = dir.path().join("bbb-migrate.toml");
    let text = format!(
        r#"[bbb]
base_url = "{base}"
secret = "{secret}"
fetch = "{fetch}"
timeout_secs = 10
retries = 3
retry_delay_ms = 50
cache_dir = "{cache}"

[pod]
time_zone = "Europe/Paris"
default_recorder_path = "{root}/"
recorder_directory = "bbb-claim"

[ledger]
url = "sqlite://{ledger}"
retry_base_secs = 1

{extra_sections}
"#,
        base = bbb.base_url(),
        secret = bbb.secret(),
        cache = dir.path().join("cache").display(),
        root = root.display(),
        ledger = ledger.display(),
    );
    std::fs::write(&config, text).unwrap();
    Env {
        dir,
        bbb,
        claim,
        config,
        ledger,
    }
}

impl Env {
    /// Runs `bbb-migrate --config <config> ARGS` in the test's directory, without BBB_* from the
    /// caller's environment.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run bbb-migrate")
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(migrate_bin());
        c.current_dir(self.dir.path())
            .env_remove("BBB_URL")
            .env_remove("BBB_SECRET")
            .env_remove("BBB_MIGRATE_LEDGER")
            .env_remove("BBB_MIGRATE_SERVE_TOKEN")
            .arg("--config")
            .arg(&self.config)
            .args(args);
        c
    }

    /// Sorted file names in the claim directory.
    pub fn claimed(&self) -> Vec<String> {
        list(&self.claim)
    }

    /// Every file under the test directory with its size, for before/after comparisons.
    pub fn snapshot(&self) -> Vec<(String, u64, Vec<u8>)> {
        let mut v = Vec::new();
        walk(self.dir.path(), self.dir.path(), &mut v);
        v.sort();
        v
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, u64, Vec<u8>)>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.push((
                p.strip_prefix(root).unwrap().display().to_string() + "/",
                0,
                Vec::new(),
            ));
            walk(root, &p, out);
        } else {
            let data = std::fs::read(&p).unwrap_or_default();
            out.push((
                p.strip_prefix(root).unwrap().display().to_string(),
                data.len() as u64,
                data,
            ));
        }
    }
}

pub fn list(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

pub fn text(o: &[u8]) -> String {
    String::from_utf8_lossy(o).into_owned()
}

/// Panics with both streams when the exit code is not `code`.
pub fn expect_code(o: &Output, code: i32) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "exit code\n--- stdout\n{}\n--- stderr\n{}",
        text(&o.stdout),
        text(&o.stderr)
    );
}

/// The sample video playback file.
pub fn sample_video() -> Vec<u8> {
    std::fs::read(
        samples()
            .join("recordings/video")
            .join(VIDEO_ID)
            .join("video-0.m4v"),
    )
    .expect("sample video")
}

/// The containers bbb-record writes, with the codecs it puts in them.
#[derive(Debug, Clone, Copy)]
pub enum Container {
    /// H.264 + AAC.
    Mp4,
    /// VP8 + Opus (what bbb-recorder made, and Pod's `.webm` names promise).
    Webm,
}

/// Asserts that `path` is a whole MP4 recording of a `seconds`-long playback, as bbb-record
/// makes it: see [`assert_recorded_as`].
pub fn assert_recorded(path: &Path, seconds: f64) {
    assert_recorded_as(path, seconds, Container::Mp4)
}

/// Asserts that `path` is a whole recording of a `seconds`-long playback in `container`, at
/// bbb-record's default 1280x720: both streams decode to the playback's length (one frame and
/// 50 ms of tolerance, the recorder's own tests' margins) and the picture has a frame for every
/// 1/fps of it. A truncated file, one without sound or a cut recording fails.
pub fn assert_recorded_as(path: &Path, seconds: f64, container: Container) {
    assert!(path.is_file(), "{} is missing", path.display());
    let p = fake_bbb::media::probe(path);
    let what = format!("{}: {p:?}", path.display());
    let (format, video, audio) = match container {
        Container::Mp4 => ("mp4", "h264", "aac"),
        Container::Webm => ("webm", "vp8", "opus"),
    };
    assert!(p.container.contains(format), "not {format}: {what}");
    assert_eq!(p.video_codec, video, "{what}");
    assert_eq!(p.audio_codec.as_deref(), Some(audio), "no sound: {what}");
    assert_eq!((p.width, p.height), (1280, 720), "{what}");
    assert!(p.fps > 0.0, "{what}");
    let frame = 1.0 / p.fps;
    assert!(
        (p.video_duration - seconds).abs() <= frame + 0.05,
        "the picture lasts {} s, not {seconds} s: {what}",
        p.video_duration
    );
    assert!(
        (p.audio_duration - seconds).abs() <= 0.05,
        "the sound lasts {} s, not {seconds} s: {what}",
        p.audio_duration
    );
    assert_eq!(
        p.video_frames,
        (seconds * p.fps).round() as u64,
        "frames: {what}"
    );
}
