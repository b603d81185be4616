//! Shared set-up of the `bbb-migrate` end-to-end tests: a fake BBB server on 127.0.0.1 serving
//! the project's samples, a fresh temp directory per test (claim directory, ledger, cache), a
//! config file, and a runner for the real `bbb-migrate` binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::SystemTime;

use fake_bbb::FakeBbb;

pub const VIDEO_ID: &str = "b52a07e307e4ae680c470b70ae91cdfe83b3eda3-1767268800000";

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

fn newest_mtime(dir: &Path) -> SystemTime {
    let mut newest = SystemTime::UNIX_EPOCH;
    for e in std::fs::read_dir(dir).expect("read source dir").flatten() {
        let p = e.path();
        let t = if p.is_dir() {
            newest_mtime(&p)
        } else {
            e.metadata()
                .and_then(|m| m.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH)
        };
        newest = newest.max(t);
    }
    newest
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
    let src = newest_mtime(&workspace().join(crate_dir).join("src"));
    assert!(
        built >= src,
        "{} is older than {crate_dir}/src: rebuild it with `cargo build -p {package}`",
        bin.display()
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
