//! The programs a recording needs on this host, found the way their users find them, with the
//! version each reports when that is cheap to ask. Chromium is looked up in `bbb-record`'s own
//! order (`bbb_common::chromium`, which both use). Version probes run under the shared
//! supervisor (`bbb_common::process`) with a time limit, so a hanging program cannot hang
//! `doctor`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bbb_common::chromium;
use bbb_common::process::Spawn;

/// How long a `--version` may take: Chromium's takes well under a second.
pub const VERSION_TIMEOUT: Duration = Duration::from_secs(15);

/// The browser `bbb-record` would start: `browser` (its `--browser`) when given, else the first
/// of [`chromium::FIXED_PATHS`] that exists, else the first of [`chromium::PATH_NAMES`] on
/// `PATH` (the shared lookup of `bbb_common::chromium`).
pub fn find_browser(browser: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(b) = browser {
        return if b.is_file() {
            Ok(b.to_path_buf())
        } else {
            Err(format!("{} does not exist", b.display()))
        };
    }
    chromium::find().ok_or_else(|| {
        format!(
            "none of {} exists, and none of {} is on PATH",
            chromium::FIXED_PATHS.join(", "),
            chromium::PATH_NAMES.join(", ")
        )
    })
}

/// `name` on `PATH`.
pub fn find_in_path(name: &str) -> Option<PathBuf> {
    which::which(name).ok()
}

/// The first line `program --version` prints on stdout, or why there is none. Blocking: call it
/// from `spawn_blocking`.
pub fn version(label: &str, program: &Path) -> Result<String, String> {
    let mut child = Spawn::new(label, program)
        .arg("--version")
        .stdout_piped()
        .start()
        .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
    let mut stdout = child.take_stdout().expect("piped");
    let ended = child
        .wait_timeout(VERSION_TIMEOUT)
        .map_err(|e| e.to_string())?;
    // Whatever it left in its group (a browser's helpers) goes before stdout is read to its end.
    let status = child.terminate(Duration::ZERO).map_err(|e| e.to_string())?;
    if ended.is_none() {
        return Err(format!(
            "`{} --version` did not answer within {VERSION_TIMEOUT:?}",
            program.display()
        ));
    }
    let mut text = String::new();
    let _ = stdout.read_to_string(&mut text);
    if !status.success() {
        let tail = child.stderr_tail();
        return Err(format!(
            "`{} --version`: {}{}",
            program.display(),
            bbb_common::process::describe_status(status),
            tail.lines()
                .last()
                .map(|l| format!(": {l}"))
                .unwrap_or_default()
        ));
    }
    Ok(text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("(no version printed)")
        .to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_explicit_browser_must_exist() {
        let e = find_browser(Some(Path::new("/nonexistent/chromium"))).unwrap_err();
        assert!(e.contains("/nonexistent/chromium"), "{e}");
        assert_eq!(
            find_browser(Some(Path::new("/bin/sh"))).unwrap(),
            Path::new("/bin/sh")
        );
    }

    #[test]
    fn a_version_is_the_first_line_on_stdout_and_a_failure_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let script = |name: &str, body: &str| {
            use std::os::unix::fs::PermissionsExt;
            let p = dir.path().join(name);
            std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
            p
        };
        let good = script("good", "echo; echo 'Tool 1.2.3'; echo more");
        assert_eq!(version("tool", &good).unwrap(), "Tool 1.2.3");
        let bad = script("bad", "echo 'no such flag' >&2; exit 2");
        let e = version("tool", &bad).unwrap_err();
        assert!(e.contains("no such flag"), "{e}");
    }
}
