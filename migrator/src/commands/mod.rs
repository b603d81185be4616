//! The commands of `bbb-migrate`: validates the command line and the configuration into ready
//! settings, runs the library, prints results and the summary, and decides the exit code. The
//! only part of the crate that writes to stdout. This module holds the dispatcher and what
//! several commands use (the selection, the API client, the ledger, the claim directory); each
//! command has its own module.

use secrecy::ExposeSecret;
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bbb_migrator::api::{ApiClient, ApiSettings, CacheMode, FetchResult};
use bbb_migrator::config::{self, Config};
use bbb_migrator::ledger::any::AnyLedger;
use bbb_migrator::ledger::{
    JobRow, JobState, JobStore, NewJob, Progress, Requeue, RetryPolicy, RunningJob, SystemClock,
    TARGET_FILE,
};
use bbb_migrator::place::{ClaimDir, csv, import as import_job, moodle, pod, slug};
use bbb_migrator::progress::{BarsReporter, Event, JsonReporter, PlainReporter, Reporter};
use bbb_migrator::recording::{Playback, RecordId, Recording};
use bbb_migrator::select::{self, Filter};
use bbb_migrator::worker::download::DownloadSettings;
use bbb_migrator::worker::owner::{OwnerName, expire_dead_local_leases};
use bbb_migrator::worker::recorder::resolve_program;
use bbb_migrator::worker::{self, JobOutcome, RecorderSettings, WorkerContext};
use chrono_tz::Tz;
use tokio::sync::watch;

use crate::cli::{Cli, Command, ProgressMode, exit};

use self::summary::{Summary, Unfinished, held_by_target};

mod claim;
mod doctor;
mod export_csv;
mod import;
mod init_config;
mod list;
mod requeue;
mod status;
mod summary;

/// An error that ends the command with a given exit code.
#[derive(Debug)]
pub struct Fatal {
    pub code: i32,
    pub message: String,
}

fn usage(msg: impl std::fmt::Display) -> Fatal {
    Fatal {
        code: exit::USAGE,
        message: msg.to_string(),
    }
}

/// The ledger could not be opened, read or written (the database is unreachable, its file cannot
/// be opened, a statement failed): the same exit code in every command. A malformed `[ledger]
/// url` is a usage error instead.
fn ledger_err(e: bbb_migrator::ledger::LedgerError) -> Fatal {
    Fatal {
        code: exit::LEDGER,
        message: e.to_string(),
    }
}

type Res<T> = Result<T, Fatal>;

/// Becomes `true` on the first SIGINT (Ctrl-C) or SIGTERM (`systemctl stop`, `kill`): the
/// commands that run jobs then take no new one, stop what runs and give it back to the ledger.
/// `doing` says what stops, in the log line.
fn interruption(doing: &'static str) -> watch::Receiver<bool> {
    use tokio::signal::unix::{SignalKind, signal};
    let (tx, rx) = watch::channel(false);
    // Installed before this returns, so that no signal between here and the first await is
    // lost to the default action.
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    tokio::spawn(async move {
        let (Ok(mut term), Ok(mut int)) = (term, int) else {
            tracing::warn!("cannot watch SIGINT/SIGTERM: an interruption will not be graceful");
            return;
        };
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::warn!("{name}: {doing}");
        let _ = tx.send(true);
    });
    rx
}

enum Mode {
    InitConfig {
        output: Option<String>,
        force: bool,
    },
    List {
        json: bool,
    },
    ExportCsv {
        output: Option<String>,
        moodle: bool,
    },
    Claim {
        jobs: Option<usize>,
        force: bool,
        wait: bool,
        host: Option<String>,
    },
    Status {
        json: bool,
    },
    Retry {
        failed: bool,
    },
    Import {
        moodle: bool,
        wait: bool,
    },
    Cancel,
    Doctor {
        json: bool,
        browser: Option<PathBuf>,
        skip_recording: bool,
    },
}

fn mode(cli: &Cli) -> Res<Mode> {
    if cli.use_database_moodle && !cli.use_import_video && !cli.use_export_csv {
        return Err(usage(
            "--use-database-moodle goes with --use-import-video or --use-export-csv (or use `import --moodle` / `export-csv --moodle`)",
        ));
    }
    // The Python command took the first of claim > import > CSV and silently ignored the
    // others (writing a header-only out.csv). Several modes at once are refused instead.
    let modes = [
        (cli.use_manual_claim, "--use-manual-claim"),
        (cli.use_import_video, "--use-import-video"),
        (cli.use_export_csv, "--use-export-csv"),
    ];
    let given: Vec<&str> = modes.iter().filter(|m| m.0).map(|m| m.1).collect();
    if given.len() > 1 {
        return Err(usage(format!(
            "{} are separate runs: give one mode at a time (e.g. `bbb-migrate claim`, then `bbb-migrate import`)",
            given.join(" and ")
        )));
    }
    let alias = if cli.use_import_video {
        Some(Mode::Import {
            moodle: cli.use_database_moodle,
            wait: true,
        })
    } else if cli.use_manual_claim {
        Some(Mode::Claim {
            jobs: None,
            force: false,
            wait: true,
            host: None,
        })
    } else if cli.use_export_csv {
        Some(Mode::ExportCsv {
            output: None,
            moodle: cli.use_database_moodle,
        })
    } else {
        None
    };
    match (&cli.command, alias) {
        (Some(_), Some(_)) => Err(usage(
            "give either a command or a Pod mode flag (--use-...), not both",
        )),
        (None, Some(m)) => Ok(m),
        // Like the Python command without a mode: fetch and count.
        (None, None) => Ok(Mode::List { json: false }),
        (Some(c), None) => Ok(match c {
            Command::InitConfig { output, force } => Mode::InitConfig {
                output: output.clone(),
                force: *force,
            },
            Command::List { json } => Mode::List { json: *json },
            Command::ExportCsv { output, moodle } => Mode::ExportCsv {
                output: output.clone(),
                moodle: *moodle,
            },
            Command::Claim {
                jobs,
                force,
                wait,
                host,
            } => Mode::Claim {
                jobs: *jobs,
                force: *force,
                wait: !wait.no_wait,
                host: host.clone(),
            },
            Command::Status { json } => Mode::Status { json: *json },
            Command::Retry { failed } => Mode::Retry { failed: *failed },
            Command::Import { moodle, wait } => Mode::Import {
                moodle: *moodle,
                wait: !wait.no_wait,
            },
            Command::Cancel => Mode::Cancel,
            Command::Doctor {
                json,
                browser,
                skip_recording,
            } => Mode::Doctor {
                json: *json,
                browser: browser.clone(),
                skip_recording: *skip_recording,
            },
        }),
    }
}

struct App {
    cli: Cli,
    cfg: Config,
    tz: Tz,
    reporter: Arc<dyn Reporter>,
    json_progress: bool,
}

pub async fn run(cli: Cli) -> i32 {
    match run_inner(cli).await {
        Ok(code) => code,
        Err(f) => {
            let _ = writeln!(std::io::stderr(), "error: {}", f.message);
            f.code
        }
    }
}

async fn run_inner(cli: Cli) -> Res<i32> {
    let mode = mode(&cli)?;
    let config_path = cli
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from("bbb-migrate.toml"));
    if let Mode::InitConfig { output, force } = &mode {
        return init_config::init_config(&cli, output.as_deref(), &config_path, *force);
    }
    let cfg = Config::load(&config_path, cli.config.is_some()).map_err(usage)?;
    let tz = cfg.time_zone().map_err(usage)?;
    let json_progress = cli.progress == ProgressMode::Json;
    let reporter: Arc<dyn Reporter> = match cli.progress {
        ProgressMode::Json => Arc::new(JsonReporter::default()),
        ProgressMode::Bars => Arc::new(BarsReporter::default()),
        ProgressMode::Auto if std::io::stderr().is_terminal() => Arc::new(BarsReporter::default()),
        _ => Arc::new(PlainReporter),
    };
    let app = App {
        cli,
        cfg,
        tz,
        reporter,
        json_progress,
    };
    match mode {
        Mode::InitConfig { .. } => unreachable!("handled above"),
        Mode::List { json } => app.list(json).await,
        Mode::ExportCsv { output, moodle } => app.export_csv(output.as_deref(), moodle).await,
        Mode::Claim {
            jobs,
            force,
            wait,
            host,
        } => app.claim(jobs, force, wait, host).await,
        Mode::Status { json } => app.status(json).await,
        Mode::Retry { failed } => app.retry(failed).await,
        Mode::Import { moodle, wait } => app.import(moodle, wait).await,
        Mode::Cancel => app.cancel().await,
        Mode::Doctor {
            json,
            browser,
            skip_recording,
        } => app.doctor(json, browser.as_deref(), skip_recording).await,
    }
}

fn out() -> std::io::StdoutLock<'static> {
    std::io::stdout().lock()
}

impl App {
    fn filter(&self) -> Res<Filter> {
        let s = &self.cli.select;
        let record_ids = s
            .record_id
            .iter()
            .map(|r| RecordId::parse(r).map_err(usage))
            .collect::<Res<Vec<_>>>()?;
        let since_ms = s
            .since
            .as_deref()
            .map(|d| select::parse_date(d, self.tz, false))
            .transpose()
            .map_err(|e| usage(format!("--since: {e}")))?;
        let until_ms = s
            .until
            .as_deref()
            .map(|d| select::parse_date(d, self.tz, true))
            .transpose()
            .map_err(|e| usage(format!("--until: {e}")))?;
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

    fn api(&self) -> Res<ApiClient> {
        ApiClient::new(self.api_settings()?).map_err(|e| usage(format!("HTTP client: {e}")))
    }

    fn api_settings(&self) -> Res<ApiSettings> {
        Ok(ApiSettings {
            base_url: self.cfg.base_url().map_err(usage)?.to_owned(),
            secret: self.cfg.secret().map_err(usage)?.to_owned(),
            checksum: self.cfg.bbb.checksum,
            timeout: self.cfg.api_timeout(),
            retries: self.cfg.bbb.retries,
            retry_delay: Duration::from_millis(self.cfg.bbb.retry_delay_ms),
        })
    }

    /// Fetches, reports malformed recordings, selects. Exit 3 when the list cannot be had.
    async fn fetch_selected(&self) -> Res<(Vec<Recording>, FetchResult, Vec<RecordId>)> {
        let filter = self.filter()?;
        let cache = if self.cli.use_cache {
            CacheMode::Read(self.cfg.bbb.cache_dir.clone())
        } else if self.cli.dry_run {
            CacheMode::Off
        } else {
            CacheMode::Write(self.cfg.bbb.cache_dir.clone())
        };
        let client = if self.cli.use_cache && self.cfg.bbb.base_url.is_none() {
            // Reading the cache needs no server; a placeholder keeps one code path.
            ApiClient::new(ApiSettings {
                base_url: "http://127.0.0.1/".into(),
                secret: String::new(),
                checksum: self.cfg.bbb.checksum,
                timeout: Duration::from_secs(1),
                retries: 0,
                retry_delay: Duration::from_millis(1),
            })
            .map_err(|e| usage(e.to_string()))?
        } else {
            self.api()?
        };
        let mut fetched = client
            .fetch(self.cfg.bbb.fetch, &cache)
            .await
            .map_err(|e| Fatal {
                code: exit::FETCH,
                message: format!("the recording list could not be fetched: {e}"),
            })?;
        for m in &fetched.malformed {
            tracing::warn!(
                record_id = m.record_id.as_deref(),
                "recording #{} ({}) skipped: {}",
                m.index,
                m.record_id.as_deref().unwrap_or("no recordID"),
                m.reason
            );
        }
        let all = std::mem::take(&mut fetched.recordings);
        let total = all.len();
        let (selected, missing) = select::select(all, &filter);
        for id in &missing {
            tracing::warn!(record_id = %id, "not listed by the server");
        }
        tracing::info!(
            "{total} recording(s) listed in {} request(s), {} malformed, {} selected",
            fetched.requests,
            fetched.malformed.len(),
            selected.len()
        );
        Ok((selected, fetched, missing))
    }

    fn ledger_url(&self) -> &str {
        self.cfg.ledger.url.expose_secret()
    }

    async fn ledger_read_only(&self) -> Res<AnyLedger> {
        check_ledger_url(self.ledger_url())?;
        AnyLedger::open_read_only(self.ledger_url(), Arc::new(SystemClock))
            .await
            .map_err(ledger_err)
    }

    async fn ledger_write(&self) -> Res<AnyLedger> {
        check_ledger_url(self.ledger_url())?;
        let policy = RetryPolicy {
            max_attempts: self.cfg.ledger.max_attempts.max(1),
            base: Duration::from_secs(self.cfg.ledger.retry_base_secs),
            cap: Duration::from_secs(3600),
        };
        AnyLedger::open(self.ledger_url(), Arc::new(SystemClock), policy)
            .await
            .map_err(ledger_err)
    }

    /// The claim directory: Pod's recorder's own directory when Pod's database is used
    /// (`registered`), else `[pod] recorder_directory`.
    fn claim_dir(&self, registered: Option<&str>) -> Res<ClaimDir> {
        let directory = match registered {
            Some(d) => d,
            None => self.cfg.recorder_directory().map_err(usage)?,
        };
        let root = &self.cfg.pod.default_recorder_path;
        Ok(ClaimDir {
            dir: root.join(directory),
            temp_dir: self
                .cfg
                .pod
                .temp_dir
                .clone()
                .unwrap_or_else(|| ClaimDir::default_temp_dir(root)),
        })
    }

    fn moodle_settings(&self) -> moodle::MoodleSettings {
        let m = &self.cfg.moodle;
        moodle::MoodleSettings {
            table_prefix: m.table_prefix.clone(),
            schema: m.schema.clone(),
            ignored_servers: m.ignored_servers.clone(),
            databases: m
                .databases
                .iter()
                .map(|(k, v)| (k.clone(), v.url.expose_secret().to_owned()))
                .collect(),
        }
    }

    /// The `--record-id`s of a command that works on the ledger alone (`status`, `retry`,
    /// `cancel`): the other selection flags select from the server's listing, which these
    /// commands do not fetch, so they are refused rather than ignored.
    fn ledger_selection(&self, command: &str) -> Res<Vec<String>> {
        let s = &self.cli.select;
        let other = [
            (s.since.is_some(), "--since"),
            (s.until.is_some(), "--until"),
            (s.min.is_some(), "--min"),
            (s.max.is_some(), "--max"),
            (s.limit.is_some(), "--limit"),
        ];
        if let Some((_, flag)) = other.iter().find(|f| f.0) {
            return Err(usage(format!(
                "{command} takes only --record-id: {flag} selects from the server's listing (use it with list, claim, import or export-csv)"
            )));
        }
        s.record_id
            .iter()
            .map(|r| RecordId::parse(r).map(|r| r.to_string()).map_err(usage))
            .collect()
    }
}

/// The host part of the lease owners: `--host`, else BBB_MIGRATE_HOST, else the hostname.
fn host_name(flag: Option<String>) -> Res<String> {
    let name = flag
        .or_else(|| std::env::var("BBB_MIGRATE_HOST").ok())
        .unwrap_or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .unwrap_or_default()
        });
    let name = name.trim().to_owned();
    if name.contains(':') || name.chars().any(char::is_control) {
        return Err(usage(format!(
            "host name {name:?}: no ':' or control characters (it is part of the lease owner host:pid:id)"
        )));
    }
    Ok(if name.is_empty() {
        "localhost".to_owned()
    } else {
        name
    })
}

fn check_ledger_url(url: &str) -> Res<()> {
    bbb_migrator::ledger::any::is_postgres(url)
        .map(|_| ())
        .map_err(usage)
}

fn import_jobs(rows: Vec<JobRow>) -> BTreeMap<String, JobRow> {
    rows.into_iter()
        .filter(|r| r.target == import_job::TARGET_IMPORT)
        .map(|r| (r.recording_id.clone(), r))
        .collect()
}

fn by_recording(rows: Vec<JobRow>) -> BTreeMap<String, JobRow> {
    rows.into_iter()
        .filter(|r| r.target == TARGET_FILE)
        .map(|r| (r.recording_id.clone(), r))
        .collect()
}

fn playback_kind(p: Option<&Playback>) -> &'static str {
    match p {
        Some(Playback::Video(_)) => "video",
        Some(Playback::Presentation(_)) => "presentation",
        None => "none",
    }
}

fn human_secs(s: i64) -> String {
    format!("{}h{:02}m{:02}s", s / 3600, (s / 60) % 60, s % 60)
}

/// A ledger time (unix ms) in the configured time zone.
fn local_time(ms: i64, tz: Tz) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| {
            t.with_timezone(&tz)
                .format("%Y-%m-%d %H:%M:%S %Z")
                .to_string()
        })
        .unwrap_or_else(|| ms.to_string())
}
