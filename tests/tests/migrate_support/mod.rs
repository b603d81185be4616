//! Shared set-up of the `bbb-migrate` end-to-end tests: a fake BBB server on 127.0.0.1 serving
//! the project's samples, a fresh temp directory per test (claim directory, ledger, cache), a
//! config file, and a runner for the real `bbb-migrate` binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::SystemTime;

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

/// The newest file under `path` (or `path` itself) with its modification time.
fn newest_file(path: &Path) -> (SystemTime, PathBuf) {
    if !path.is_dir() {
        let t = std::fs::metadata(path)
            .and_then(|m| m.modified())
            .unwrap_or(SystemTime::UNIX_EPOCH);
        return (t, path.to_path_buf());
    }
    let mut newest = (SystemTime::UNIX_EPOCH, path.to_path_buf());
    for e in std::fs::read_dir(path).expect("read source dir").flatten() {
        newest = newest.max(newest_file(&e.path()));
    }
    newest
}

/// What a binary of the workspace crate in `crate_dir` is compiled from: its `build.rs`, `src/`
/// and the folders it embeds (every folder beside `src/` but tests, examples, benches and
/// design docs: `migrations/`, `assets/`), and the same of every workspace crate it depends on
/// (path dependencies of `[workspace.dependencies]`, e.g. xvfb for bbb-record), recursively.
/// Manifests are left out: cargo does not relink a binary for a comment in Cargo.toml.
pub fn build_inputs(crate_dir: &str) -> Vec<PathBuf> {
    let root = workspace();
    let manifest = |dir: &Path| -> toml::Table {
        let path = dir.join("Cargo.toml");
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        text.parse()
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    };
    let members: Vec<(String, PathBuf)> = manifest(&root)["workspace"]["dependencies"]
        .as_table()
        .expect("[workspace.dependencies]")
        .iter()
        .filter_map(|(name, dep)| Some((name.clone(), root.join(dep.get("path")?.as_str()?))))
        .collect();
    let mut crates = vec![root.join(crate_dir)];
    let mut inputs = Vec::new();
    let mut i = 0;
    while i < crates.len() {
        let dir = crates[i].clone();
        i += 1;
        let m = manifest(&dir);
        for section in ["dependencies", "build-dependencies"] {
            for name in m
                .get(section)
                .and_then(|d| d.as_table())
                .into_iter()
                .flatten()
            {
                if let Some((_, path)) = members.iter().find(|(n, _)| n == name.0)
                    && !crates.contains(path)
                {
                    crates.push(path.clone());
                }
            }
        }
        for e in std::fs::read_dir(&dir).expect("read crate dir").flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            let embedded =
                p.is_dir() && !["tests", "examples", "benches", "design"].contains(&name.as_str());
            if embedded || name == "build.rs" {
                inputs.push(p);
            }
        }
    }
    inputs.sort();
    inputs
}

/// A binary of this workspace built by `cargo build -p <package>` with the same profile: looked
/// for next to this test (same CARGO_TARGET_DIR), then in the workspace's `target/<profile>/`;
/// the newest wins. Fails clearly when it is missing or older than its sources: a test against a
/// stale binary would test the wrong thing.
pub fn workspace_bin(name: &str, package: &str, crate_dir: &str) -> PathBuf {
    let own = profile_dir();
    let profile = own.file_name().expect("profile name").to_owned();
    let candidates = [
        own.join(name),
        workspace().join("target").join(&profile).join(name),
    ];
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let bin = candidates
        .iter()
        .filter(|p| p.is_file())
        .max_by_key(|p| mtime(p))
        .unwrap_or_else(|| {
            panic!(
                "{name} not found in {} nor {}: build it first with `cargo build -p {package}`",
                candidates[0].display(),
                candidates[1].display()
            )
        })
        .clone();
    let built = mtime(&bin).expect("mtime");
    let inputs = build_inputs(crate_dir);
    assert!(
        inputs.iter().any(|p| p.ends_with("src")),
        "no sources found for {crate_dir}: {inputs:?}"
    );
    let (newest, file) = inputs.iter().map(|p| newest_file(p)).max().expect("inputs");
    assert!(
        built >= newest,
        "{} is older than {}: rebuild it with `cargo build -p {package}`",
        bin.display(),
        file.display()
    );
    bin
}

pub fn migrate_bin() -> PathBuf {
    workspace_bin("bbb-migrate", "bbb-migrator", "migrator")
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
    let bbb = FakeBbb::builder()
        .samples_dir(samples())
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
