//! The programs a recording needs on this host, found the way their users find them, with the
//! version each reports when that is cheap to ask and the options a program's `--help` lists
//! (whether the configured `bbb-record` has `--fast`). Chromium is looked up in `bbb-record`'s
//! own order (`bbb_common::chromium`, which both use). The probes run under the shared
//! supervisor (`bbb_common::process`) with a time limit, so a hanging program cannot hang
//! `doctor`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bbb_common::chromium;
use bbb_common::process::Spawn;

/// How long a `--version` or a `--help` may take: Chromium's `--version` takes well under a
/// second.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(15);

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
    Ok(stdout_of(label, program, "--version")?
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("(no version printed)")
        .to_owned())
}

/// Whether `program --help` lists the option `flag` (`--fast`), or why it could not be asked.
/// Blocking: call it from `spawn_blocking`.
pub fn help_lists(label: &str, program: &Path, flag: &str) -> Result<bool, String> {
    Ok(lists_option(&stdout_of(label, program, "--help")?, flag))
}

/// Whether a help text has `flag` as an option of its own: as a word (`--fast`, `-f, --fast`,
/// `--fast=<X>`), not as the start of a longer option (`--faster`).
fn lists_option(help: &str, flag: &str) -> bool {
    help.split_whitespace().any(|w| {
        w.trim_end_matches(',')
            .split(['=', '['])
            .next()
            .is_some_and(|name| name == flag)
    })
}

/// What `program arg` prints on stdout when it exits with success, or why it did not.
fn stdout_of(label: &str, program: &Path, arg: &str) -> Result<String, String> {
    let mut child = Spawn::new(label, program)
        .arg(arg)
        .stdout_piped()
        .start()
        .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
    let mut stdout = child.take_stdout().expect("piped");
    let ended = child
        .wait_timeout(PROBE_TIMEOUT)
        .map_err(|e| e.to_string())?;
    // Whatever it left in its group (a browser's helpers) goes before stdout is read to its end.
    let status = child.terminate(Duration::ZERO).map_err(|e| e.to_string())?;
    if ended.is_none() {
        return Err(format!(
            "`{} {arg}` did not answer within {PROBE_TIMEOUT:?}",
            program.display()
        ));
    }
    let mut text = String::new();
    let _ = stdout.read_to_string(&mut text);
    if !status.success() {
        let tail = child.stderr_tail();
        return Err(format!(
            "`{} {arg}`: {}{}",
            program.display(),
            bbb_common::process::describe_status(status),
            tail.lines()
                .last()
                .map(|l| format!(": {l}"))
                .unwrap_or_default()
        ));
    }
    Ok(text)
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

    #[test]
    fn an_option_is_listed_only_as_a_word_of_its_own() {
        let help = "Options:\n  -o, --output <OUTPUT>\n      --fast\n          Fast mode\n";
        assert!(lists_option(help, "--fast"));
        assert!(lists_option("  -f, --fast\n", "--fast"));
        assert!(lists_option("      --fast=<WHEN>\n", "--fast"));
        assert!(!lists_option(
            "      --faster\n      --fast-start\n",
            "--fast"
        ));
        assert!(!lists_option("  Fast mode is not here\n", "--fast"));
    }

    #[test]
    fn the_help_of_a_program_says_whether_it_has_an_option() {
        let dir = tempfile::tempdir().unwrap();
        let script = |name: &str, body: &str| {
            use std::os::unix::fs::PermissionsExt;
            let p = dir.path().join(name);
            std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
            p
        };
        let with = script(
            "with",
            "[ \"$1\" = --help ] || exit 2; printf 'Options:\\n      --fast\\n          Fast mode\\n'",
        );
        assert_eq!(help_lists("tool", &with, "--fast"), Ok(true));
        let without = script(
            "without",
            "[ \"$1\" = --help ] || exit 2; printf 'Options:\\n      --progress <P>\\n'",
        );
        assert_eq!(help_lists("tool", &without, "--fast"), Ok(false));
        let broken = script("broken", "echo 'libavcodec.so.61: not found' >&2; exit 127");
        let e = help_lists("tool", &broken, "--fast").unwrap_err();
        assert!(e.contains("--help") && e.contains("libavcodec"), "{e}");
    }
}
