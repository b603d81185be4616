//! The resolve step: the command line and the configuration turned once, before any command
//! runs, into the settings the commands use. Whatever every command may read (the selection, the
//! time zone, the ledger, the recorder and worker settings) is validated here, so a bad value
//! fails the same way whichever command reads it. What only some commands need (the BBB server,
//! Pod's recorder directory, the playback hosts, which need `base_url`) is kept as a [`Needed`]:
//! the ready value or why it is missing, reported as a usage error by the command that needs it,
//! so that `status` runs without a BBB server configured and `doctor` reports it as a check.

use std::path::PathBuf;
use std::time::Duration;

use bbb_migrator::api::{ApiSettings, ChecksumAlgo, FetchStrategy};
use bbb_migrator::config::{Config, PodConfig};
use bbb_migrator::ledger::RetryPolicy;
use bbb_migrator::place::{ClaimDir, moodle};
use bbb_migrator::playback_hosts::PlaybackHosts;
use bbb_migrator::recording::RecordId;
use bbb_migrator::select::{self, Filter};
use bbb_migrator::worker::RecorderSettings;
use bbb_migrator::worker::download::DownloadSettings;
use bbb_migrator::worker::recorder::resolve_program;
use chrono_tz::Tz;
use secrecy::{ExposeSecret, SecretString};

use super::{Res, usage};
use crate::cli::Cli;

/// A value only some commands need: ready, or the reason it is not (a usage error for the
/// command that needs it).
pub(super) type Needed<T> = Result<T, String>;

/// The ready value of a [`Needed`], or the usage error saying why there is none.
pub(super) fn need<T>(value: &Needed<T>) -> Res<&T> {
    value.as_ref().map_err(usage)
}

/// Everything the commands run with.
pub(super) struct Settings {
    /// `--dry-run`: print the plan, write nothing.
    pub dry_run: bool,
    /// `--use-cache`: the listing from an earlier run's cache instead of the server.
    pub use_cache: bool,
    /// `[pod] time_zone`: dates of the selection and of the printed ledger times.
    pub tz: Tz,
    /// The selection flags, validated (record ids, dates in `tz`, `--min <= --max`).
    pub filter: Filter,
    pub bbb: BbbSettings,
    pub ledger: LedgerSettings,
    pub recorder: RecorderSettings,
    /// `[recorder] command` as configured, for the message when it is not found.
    pub recorder_command: Option<String>,
    /// `[worker] jobs` when set (0 means: from the CPU count and free memory).
    pub jobs: Option<usize>,
    pub download: Needed<DownloadSettings>,
    /// `[worker] free_space_margin_mb`, in bytes.
    pub free_space_margin: u64,
    pub free_space_poll: Duration,
    pub claim_dir: ClaimDirSettings,
    /// Pod's database, REST API and import defaults, as configured.
    pub pod: PodConfig,
    pub moodle: moodle::MoodleSettings,
    /// `[moodle] inform_html`: the notice added to a Moodle activity that was migrated.
    pub inform_html: Option<String>,
    /// `[serve] token` (or `BBB_MIGRATE_SERVE_TOKEN`): asked of every request of `serve`.
    pub serve_token: Option<SecretString>,
    /// Every secret of the configuration, for the outputs that must mask them (`doctor`).
    pub secrets: Vec<SecretString>,
}

pub(super) struct BbbSettings {
    pub api: Needed<ApiSettings>,
    /// `[bbb] base_url` as written (doctor shows it redacted; `--use-cache` works without it).
    pub base_url: Option<String>,
    pub checksum: ChecksumAlgo,
    pub fetch: FetchStrategy,
    pub cache_dir: PathBuf,
    /// `[bbb] playback_url_23`: 2.0 player URLs rewritten to the 2.3 player.
    pub rewrite_23: bool,
    pub playback_hosts: Needed<PlaybackHosts>,
}

pub(super) struct LedgerSettings {
    /// May hold a PostgreSQL password.
    pub url: SecretString,
    pub policy: RetryPolicy,
    pub lease: Duration,
}

/// Where claimed files go: `<root>/<directory>`, with the directory Pod's recorder row names
/// when Pod's database is used, else `[pod] recorder_directory`.
pub(super) struct ClaimDirSettings {
    pub root: PathBuf,
    pub configured_directory: Needed<String>,
    pub temp_dir: PathBuf,
}

impl ClaimDirSettings {
    /// The claim directory: `registered` (Pod's recorder row) when given, else the configured.
    pub fn resolve(&self, registered: Option<&str>) -> Res<ClaimDir> {
        let directory = match registered {
            Some(d) => d,
            None => need(&self.configured_directory)?.as_str(),
        };
        Ok(ClaimDir {
            dir: self.root.join(directory),
            temp_dir: self.temp_dir.clone(),
        })
    }
}

impl Settings {
    pub fn resolve(cli: &Cli, cfg: Config) -> Res<Settings> {
        let tz = cfg.time_zone().map_err(usage)?;
        let filter = filter(cli, tz)?;
        let secrets = secrets(&cfg);
        let api = cfg
            .base_url()
            .and_then(|base_url| Ok((base_url, cfg.secret()?)))
            .map(|(base_url, secret)| ApiSettings {
                base_url: base_url.to_owned(),
                secret: secret.into(),
                checksum: cfg.bbb.checksum,
                timeout: cfg.api_timeout(),
                retries: cfg.bbb.retries,
                retry_delay: Duration::from_millis(cfg.bbb.retry_delay_ms),
            })
            .map_err(|e| e.to_string());
        let playback_hosts = cfg.playback_hosts().map_err(|e| e.to_string());
        let download = playback_hosts.clone().map(|hosts| DownloadSettings {
            stall: Duration::from_secs(cfg.worker.download_stall_secs.max(1)),
            retries: cfg.worker.download_retries,
            retry_delay: Duration::from_millis(cfg.bbb.retry_delay_ms),
            hosts,
        });
        let root = cfg.pod.default_recorder_path.clone();
        let claim_dir = ClaimDirSettings {
            configured_directory: cfg
                .recorder_directory()
                .map(str::to_owned)
                .map_err(|e| e.to_string()),
            temp_dir: cfg
                .pod
                .temp_dir
                .clone()
                .unwrap_or_else(|| ClaimDir::default_temp_dir(&root)),
            root,
        };
        let recorder = RecorderSettings {
            program: resolve_program(cfg.recorder.command.as_deref()),
            format: cfg.recorder.format,
            timeout_factor: cfg.recorder.timeout_factor,
            timeout_margin_secs: cfg.recorder.timeout_margin_secs,
            default_length_secs: cfg.recorder.default_length_secs,
            grace: Duration::from_secs(cfg.recorder.grace_secs),
            accept_broken: cfg.recorder.accept_broken,
            fast: cfg.recorder.fast,
        };
        let m = &cfg.moodle;
        let moodle = moodle::MoodleSettings {
            table_prefix: m.table_prefix.clone(),
            schema: m.schema.clone(),
            ignored_servers: m.ignored_servers.clone(),
            databases: m
                .databases
                .iter()
                .map(|(k, v)| (k.clone(), v.url.expose_secret().to_owned()))
                .collect(),
        };
        Ok(Settings {
            dry_run: cli.dry_run,
            use_cache: cli.use_cache,
            tz,
            filter,
            bbb: BbbSettings {
                api,
                base_url: cfg.bbb.base_url.clone(),
                checksum: cfg.bbb.checksum,
                fetch: cfg.bbb.fetch,
                cache_dir: cfg.bbb.cache_dir.clone(),
                rewrite_23: cfg.bbb.playback_url_23,
                playback_hosts,
            },
            ledger: LedgerSettings {
                policy: RetryPolicy {
                    max_attempts: cfg.ledger.max_attempts.max(1),
                    base: Duration::from_secs(cfg.ledger.retry_base_secs),
                    cap: Duration::from_secs(3600),
                },
                lease: Duration::from_secs(cfg.ledger.lease_secs.max(3)),
                url: cfg.ledger.url,
            },
            recorder,
            recorder_command: cfg.recorder.command,
            jobs: (cfg.worker.jobs > 0).then_some(cfg.worker.jobs),
            download,
            free_space_margin: cfg.worker.free_space_margin_mb.saturating_mul(1 << 20),
            free_space_poll: Duration::from_millis(cfg.worker.free_space_poll_ms.max(100)),
            claim_dir,
            serve_token: cfg.serve.token,
            pod: cfg.pod,
            moodle,
            inform_html: cfg.moodle.inform_html,
            secrets,
        })
    }

    /// Whether the listing is read from the cache with no server configured at all.
    pub fn cache_only(&self) -> bool {
        self.use_cache && self.bbb.base_url.is_none()
    }

    /// The `--record-id`s of a command that works on the ledger alone (`status`, `retry`,
    /// `cancel`): the other selection flags select from the server's listing, which these
    /// commands do not fetch, so they are refused rather than ignored.
    pub fn ledger_selection(&self, command: &str) -> Res<Vec<String>> {
        let f = &self.filter;
        let other = [
            (f.since_ms.is_some(), "--since"),
            (f.until_ms.is_some(), "--until"),
            (f.min.is_some(), "--min"),
            (f.max.is_some(), "--max"),
            (f.limit.is_some(), "--limit"),
        ];
        if let Some((_, flag)) = other.iter().find(|f| f.0) {
            return Err(usage(format!(
                "{command} takes only --record-id: {flag} selects from the server's listing (use it with list, claim, import or export-csv)"
            )));
        }
        Ok(self.record_ids())
    }

    /// The `--record-id`s, as given.
    pub fn record_ids(&self) -> Vec<String> {
        self.filter
            .record_ids
            .iter()
            .map(ToString::to_string)
            .collect()
    }
}

fn filter(cli: &Cli, tz: Tz) -> Res<Filter> {
    let s = &cli.select;
    let record_ids = s
        .record_id
        .iter()
        .map(|r| RecordId::parse(r).map_err(usage))
        .collect::<Res<Vec<_>>>()?;
    let date = |flag: &str, d: Option<&str>, end: bool| -> Res<Option<i64>> {
        d.map(|d| select::parse_date(d, tz, end))
            .transpose()
            .map_err(|e| usage(format!("{flag}: {e}")))
    };
    let since_ms = date("--since", s.since.as_deref(), false)?;
    let until_ms = date("--until", s.until.as_deref(), true)?;
    if let (Some(min), Some(max)) = (s.min, s.max)
        && min > max
    {
        return Err(usage(format!("--min {min} is greater than --max {max}")));
    }
    Ok(Filter {
        record_ids,
        since_ms,
        until_ms,
        min: s.min,
        max: s.max,
        limit: s.limit,
    })
}

fn secrets(c: &Config) -> Vec<SecretString> {
    [
        c.bbb.secret.as_ref(),
        Some(&c.ledger.url),
        c.pod.database_url.as_ref(),
        c.pod.secret_key.as_ref(),
        c.pod.rest_token.as_ref(),
        c.serve.token.as_ref(),
    ]
    .into_iter()
    .flatten()
    .chain(c.moodle.databases.values().map(|d| &d.url))
    .map(|v| SecretString::from(v.expose_secret().to_owned()))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn resolve(args: &[&str], toml: &str) -> Res<Settings> {
        let cli = Cli::try_parse_from(std::iter::once("bbb-migrate").chain(args.iter().copied()))
            .expect("arguments parse");
        Settings::resolve(&cli, Config::parse(toml).expect("configuration parses"))
    }

    #[test]
    fn what_only_some_commands_need_is_kept_with_its_reason() {
        let s = resolve(&["status"], "").ok().unwrap();
        let api = s.bbb.api.as_ref().expect_err("no BBB server configured");
        assert!(api.contains("base_url"), "{api}");
        assert!(need(&s.bbb.api).is_err_and(|f| f.code == crate::cli::exit::USAGE));
        assert!(
            s.claim_dir
                .resolve(Some("mine"))
                .is_ok_and(|d| d.dir.ends_with("mine"))
        );
    }

    #[test]
    fn a_bad_selection_fails_every_command_as_a_usage_error() {
        for command in ["status", "list", "claim"] {
            let Err(f) = resolve(&[command, "--min", "5", "--max", "2"], "") else {
                panic!("{command}: --min > --max accepted");
            };
            assert_eq!(f.code, crate::cli::exit::USAGE);
            assert!(f.message.contains("--min 5"), "{}", f.message);
        }
        let Err(f) = resolve(&["list", "--since", "yesterday-ish"], "") else {
            panic!("a bad date accepted");
        };
        assert!(f.message.starts_with("--since:"), "{}", f.message);
    }

    #[test]
    fn ledger_commands_refuse_listing_flags_and_keep_record_ids() {
        let id = "2e7380bcd2a9cc83f2a744b8707a7f75c0a94e9d-1767261600000";
        let s = resolve(&["status", "--record-id", id], "").ok().unwrap();
        assert_eq!(s.ledger_selection("status").ok(), Some(vec![id.to_owned()]));
        let s = resolve(&["status", "--limit", "3"], "").ok().unwrap();
        let f = s.ledger_selection("status").err().unwrap();
        assert!(f.message.contains("--limit"), "{}", f.message);
    }

    #[test]
    fn secrets_are_collected_for_masking_and_the_worker_values_are_ready() {
        let s = resolve(
            &["claim"],
            "[bbb]\nbase_url = \"https://bbb.example.org/bigbluebutton/\"\nsecret = \"s3cr3t\"\n\
             [worker]\njobs = 3\nfree_space_margin_mb = 2\n[ledger]\nlease_secs = 1\n",
        )
        .ok()
        .unwrap();
        assert!(s.secrets.iter().any(|v| v.expose_secret() == "s3cr3t"));
        assert_eq!(s.jobs, Some(3));
        assert_eq!(s.free_space_margin, 2 << 20);
        assert_eq!(
            s.ledger.lease,
            Duration::from_secs(3),
            "a lease is at least 3 s"
        );
        assert!(need(&s.bbb.api).is_ok_and(|a| a.secret.expose_secret() == "s3cr3t"));
        assert!(s.download.is_ok());
    }
}
