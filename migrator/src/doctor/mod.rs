//! The findings of `bbb-migrate doctor`: one [`Check`] per thing a run needs, its verdict (which
//! decides the exit code), and the two ways a report is shown (one line per check, or JSON for
//! scripts). Owns the rule that no secret reaches a report: every text passes through
//! [`Report::scrub`]. Runs no check itself: the probes are in [`host`] and [`test_page`], the
//! command that runs them in the binary.

pub mod host;
pub mod test_page;

use serde::Serialize;

/// How a check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    /// A run can go on, but something is not as it should be (optional part missing, a clock
    /// drifting, maybe not enough space for the whole batch).
    Warning,
    /// A run would fail, or a job would.
    Failure,
    /// Not run (asked to skip, or what it needs failed first): never fails the verdict.
    Skipped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warning => "warning",
            Status::Failure => "failure",
            Status::Skipped => "skipped",
        }
    }
}

/// One finding: `name` is a stable identifier for scripts, `detail` what was found, `hint` what
/// to do about it (none when nothing is to be done).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    pub detail: String,
    pub hint: Option<String>,
}

impl Check {
    pub fn ok(name: &'static str, detail: impl Into<String>) -> Self {
        Check {
            name,
            status: Status::Ok,
            detail: detail.into(),
            hint: None,
        }
    }

    pub fn warning(name: &'static str, detail: impl Into<String>, hint: impl Into<String>) -> Self {
        Self::with_hint(name, Status::Warning, detail, hint)
    }

    pub fn failure(name: &'static str, detail: impl Into<String>, hint: impl Into<String>) -> Self {
        Self::with_hint(name, Status::Failure, detail, hint)
    }

    pub fn skipped(name: &'static str, detail: impl Into<String>) -> Self {
        Check {
            name,
            status: Status::Skipped,
            detail: detail.into(),
            hint: None,
        }
    }

    fn with_hint(
        name: &'static str,
        status: Status,
        detail: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        Check {
            name,
            status,
            detail: detail.into(),
            hint: Some(hint.into()),
        }
    }
}

/// Every check of one `doctor` run, with the secrets that must not appear in it.
#[derive(Debug, Default)]
pub struct Report {
    pub checks: Vec<Check>,
    secrets: Vec<String>,
}

/// What a secret is replaced with in a report.
pub const MASK: &str = "***";

impl Report {
    /// A report that masks each of `secrets` (the BBB secret, Pod's key and token, database
    /// URLs) wherever a check's text would show it. Of a URL only its password is secret (the
    /// rest says which database is meant): it is masked both as the URL holds it
    /// (percent-encoded) and decoded, since a driver's error may quote either. Empty ones are
    /// ignored.
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        let mut all: Vec<String> = Vec::new();
        for s in secrets {
            match url::Url::parse(&s) {
                Ok(u) if s.contains("://") => {
                    if let Some(pw) = u.password() {
                        all.push(pw.to_owned());
                        if let Some((decoded, _)) =
                            url::form_urlencoded::parse(pw.as_bytes()).next()
                        {
                            all.push(decoded.into_owned());
                        }
                    }
                }
                _ => all.push(s),
            }
        }
        // Longest first, so that a secret containing another is masked as a whole.
        all.retain(|s| s.len() >= 3);
        all.sort_by_key(|s| std::cmp::Reverse(s.len()));
        all.dedup();
        Report {
            checks: Vec::new(),
            secrets: all,
        }
    }

    pub fn push(&mut self, mut check: Check) {
        check.detail = self.scrub(&check.detail);
        check.hint = check.hint.map(|h| self.scrub(&h));
        self.checks.push(check);
    }

    /// `text` with every secret masked.
    pub fn scrub(&self, text: &str) -> String {
        let mut t = text.to_owned();
        for s in &self.secrets {
            if t.contains(s.as_str()) {
                t = t.replace(s.as_str(), MASK);
            }
        }
        t
    }

    /// Whether a run has what it needs: no check failed (warnings and skipped checks allowed).
    pub fn passed(&self) -> bool {
        passed(&self.checks)
    }

    /// One line per check: status, name, what was found and, after `->`, what to do.
    pub fn lines(&self) -> Vec<String> {
        self.checks.iter().map(line).collect()
    }

    /// `{"ok": bool, "checks": [{"name", "status", "detail", "hint"}]}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "ok": self.passed(), "checks": self.checks })
    }
}

/// The verdict of a list of checks: no failure.
pub fn passed(checks: &[Check]) -> bool {
    checks.iter().all(|c| c.status != Status::Failure)
}

fn line(c: &Check) -> String {
    let mut l = format!("{:<8} {:<15} {}", c.status.as_str(), c.name, c.detail);
    if let Some(h) = &c.hint {
        l.push_str(" -> ");
        l.push_str(h);
    }
    l
}

/// How far this host's clock may be from the database's before `doctor` warns. Leases last
/// `[ledger] lease_secs` (30 s by default) on the database's clock, and a worker stops its work
/// on its own clock before the lease runs out: a few seconds of drift eat into that margin.
pub const CLOCK_TOLERANCE_MS: i64 = 3000;

/// How far the database clock `db` (read between `before` and `after` on this host's clock,
/// all epoch ms) is ahead of this host's: compared with the middle of the round trip, so that
/// a slow answer does not look like drift.
pub fn clock_offset_ms(before: i64, db: i64, after: i64) -> i64 {
    db - (before + (after - before) / 2)
}

/// Bytes for a person: KiB below a MiB, MiB below a GiB, GiB above.
pub fn human_bytes(b: u64) -> String {
    let kib = b as f64 / 1024.0;
    if kib < 1024.0 {
        format!("{kib:.1} KiB")
    } else if kib < 1024.0 * 1024.0 {
        format!("{:.1} MiB", kib / 1024.0)
    } else {
        format!("{:.1} GiB", kib / (1024.0 * 1024.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_and_skipped_checks_pass_a_failure_does_not() {
        let mut checks = vec![
            Check::ok("a", "fine"),
            Check::warning("b", "meh", "install it"),
            Check::skipped("c", "--skip-recording"),
        ];
        assert!(passed(&checks));
        checks.push(Check::failure("d", "broken", "fix it"));
        assert!(!passed(&checks));
        assert!(passed(&[]));
    }

    #[test]
    fn the_clock_offset_is_taken_from_the_middle_of_the_round_trip() {
        assert_eq!(clock_offset_ms(1_000, 1_500, 2_000), 0);
        assert_eq!(clock_offset_ms(1_000, 6_500, 2_000), 5_000);
        assert_eq!(clock_offset_ms(1_000, -2_500, 2_000), -4_000);
    }

    #[test]
    fn the_json_has_one_object_per_check_with_a_lowercase_status() {
        let mut r = Report::new([]);
        r.push(Check::ok("xvfb", "/usr/bin/Xvfb"));
        r.push(Check::failure(
            "bbb-api",
            "checksumError",
            "check [bbb] secret",
        ));
        let v = r.to_json();
        assert_eq!(v["ok"], false);
        assert_eq!(
            v["checks"][0],
            serde_json::json!({"name": "xvfb", "status": "ok", "detail": "/usr/bin/Xvfb", "hint": null})
        );
        assert_eq!(v["checks"][1]["status"], "failure");
        assert_eq!(v["checks"][1]["hint"], "check [bbb] secret");
    }

    #[test]
    fn one_line_per_check_with_the_hint_after_an_arrow() {
        let mut r = Report::new([]);
        r.push(Check::warning(
            "pulseaudio",
            "not found",
            "apt install pulseaudio",
        ));
        assert_eq!(
            r.lines(),
            vec!["warning  pulseaudio      not found -> apt install pulseaudio".to_string()]
        );
    }

    #[test]
    fn secrets_and_database_passwords_never_reach_a_report() {
        let mut r = Report::new([
            "bbb-secret-123".to_string(),
            "postgres://bbb:p%40ss-word@127.0.0.1:9/ledger".to_string(),
            String::new(),
        ]);
        r.push(Check::failure(
            "ledger",
            "postgres://bbb:p%40ss-word@127.0.0.1:9/ledger: password p@ss-word refused",
            "secret bbb-secret-123 is wrong",
        ));
        let shown = format!("{:?}", r.checks);
        for s in ["p%40ss-word", "p@ss-word", "bbb-secret-123"] {
            assert!(!shown.contains(s), "{s} shown: {shown}");
        }
        assert_eq!(
            r.checks[0].detail,
            "postgres://bbb:***@127.0.0.1:9/ledger: password *** refused"
        );
        // A URL without a password hides nothing.
        let mut r = Report::new(["sqlite:///var/lib/bbb-migrate/ledger.db".to_string()]);
        r.push(Check::ok(
            "ledger",
            "sqlite:///var/lib/bbb-migrate/ledger.db",
        ));
        assert_eq!(
            r.checks[0].detail,
            "sqlite:///var/lib/bbb-migrate/ledger.db"
        );
    }
}
