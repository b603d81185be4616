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
    JobRow, JobState, JobStore, NewJob, Progress, Requeue, RunningJob, SystemClock, TARGET_FILE,
};
use bbb_migrator::place::{ClaimDir, csv, import as import_job, moodle, pod, slug};
use bbb_migrator::progress::{BarsReporter, Event, JsonReporter, PlainReporter, Reporter};
use bbb_migrator::recording::{Playback, RecordId, Recording};
use bbb_migrator::select;
use bbb_migrator::worker::owner::{OwnerName, expire_dead_local_leases};
use bbb_migrator::worker::{self, JobOutcome, WorkerContext};
use chrono_tz::Tz;
use tokio::sync::watch;

use crate::cli::{Cli, Command, ProgressMode, WaitArgs, exit};

use self::settings::{Settings, need};
use self::summary::{Summary, Unfinished, held_by_target};

mod claim;
mod doctor;
mod export_csv;
mod import;
mod init_config;
mod list;
mod requeue;
mod serve;
mod settings;
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

/// The command to run: the subcommand, or the one a Pod mode flag (`--use-...`) stands for.
/// Without either, like the Python command without a mode: fetch and count (`list`).
fn command(cli: &Cli) -> Res<Command> {
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
        Some(Command::Import {
            moodle: cli.use_database_moodle,
            wait: WaitArgs::default(),
        })
    } else if cli.use_manual_claim {
        Some(Command::Claim {
            jobs: None,
            force: false,
            wait: WaitArgs::default(),
            host: None,
        })
    } else if cli.use_export_csv {
        Some(Command::ExportCsv {
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
        (None, Some(c)) => Ok(c),
        (None, None) => Ok(Command::List { json: false }),
        (Some(c), None) => Ok(c.clone()),
    }
}

struct App {
    s: Settings,
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
    let command = command(&cli)?;
    let config_path = cli
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from("bbb-migrate.toml"));
    if let Command::InitConfig { output, force } = &command {
        return init_config::init_config(&cli, output.as_deref(), &config_path, *force);
    }
    let cfg = Config::load(&config_path, cli.config.is_some()).map_err(usage)?;
    let s = Settings::resolve(&cli, cfg)?;
    let json_progress = cli.progress == ProgressMode::Json;
    let reporter: Arc<dyn Reporter> = match cli.progress {
        ProgressMode::Json => Arc::new(JsonReporter::default()),
        ProgressMode::Bars => Arc::new(BarsReporter::default()),
        ProgressMode::Auto if std::io::stderr().is_terminal() => Arc::new(BarsReporter::default()),
        _ => Arc::new(PlainReporter),
    };
    let app = App {
        s,
        reporter,
        json_progress,
    };
    match command {
        Command::InitConfig { .. } => unreachable!("handled above"),
        Command::List { json } => app.list(json).await,
        Command::ExportCsv { output, moodle } => app.export_csv(output.as_deref(), moodle).await,
        Command::Claim {
            jobs,
            force,
            wait,
            host,
        } => app.claim(jobs, force, !wait.no_wait, host).await,
        Command::Status { json } => app.status(json).await,
        Command::Retry { failed, flagged } => app.retry(failed, flagged).await,
        Command::Flag { note, clear } => app.flag(if clear { None } else { note }).await,
        Command::Import { moodle, wait } => app.import(moodle, !wait.no_wait).await,
        Command::Cancel => app.cancel().await,
        Command::Serve {
            listen,
            allow_actions,
        } => app.serve(listen, allow_actions).await,
        Command::Doctor {
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
    fn api(&self) -> Res<ApiClient> {
        ApiClient::new(need(&self.s.bbb.api)?.clone())
            .map_err(|e| usage(format!("HTTP client: {e}")))
    }

    /// Fetches, reports malformed recordings, selects. Exit 3 when the list cannot be had.
    async fn fetch_selected(&self) -> Res<(Vec<Recording>, FetchResult, Vec<RecordId>)> {
        let bbb = &self.s.bbb;
        let cache = if self.s.use_cache {
            CacheMode::Read(bbb.cache_dir.clone())
        } else if self.s.dry_run {
            CacheMode::Off
        } else {
            CacheMode::Write(bbb.cache_dir.clone())
        };
        let client = if self.s.cache_only() {
            // Reading the cache needs no server; a placeholder keeps one code path.
            ApiClient::new(ApiSettings {
                base_url: "http://127.0.0.1/".into(),
                secret: "".into(),
                checksum: bbb.checksum,
                timeout: Duration::from_secs(1),
                retries: 0,
                retry_delay: Duration::from_millis(1),
            })
            .map_err(|e| usage(e.to_string()))?
        } else {
            self.api()?
        };
        let mut fetched = client.fetch(bbb.fetch, &cache).await.map_err(|e| Fatal {
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
        let (selected, missing) = select::select(all, &self.s.filter);
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
        self.s.ledger.url.expose_secret()
    }

    async fn ledger_read_only(&self) -> Res<AnyLedger> {
        check_ledger_url(self.ledger_url())?;
        AnyLedger::open_read_only(self.ledger_url(), Arc::new(SystemClock))
            .await
            .map_err(ledger_err)
    }

    async fn ledger_write(&self) -> Res<AnyLedger> {
        check_ledger_url(self.ledger_url())?;
        AnyLedger::open(
            self.ledger_url(),
            Arc::new(SystemClock),
            self.s.ledger.policy.clone(),
        )
        .await
        .map_err(ledger_err)
    }

    /// The claim directory: Pod's recorder's own directory when Pod's database is used
    /// (`registered`), else `[pod] recorder_directory`.
    fn claim_dir(&self, registered: Option<&str>) -> Res<ClaimDir> {
        self.s.claim_dir.resolve(registered)
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
