//! The commands of `bbb-migrate`: validates the command line and the configuration into ready
//! settings, runs the library, prints results and the summary, and decides the exit code. The
//! only part of the crate that writes to stdout.

use secrecy::ExposeSecret;
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bbb_migrator::api::{self, ApiClient, ApiSettings, CacheMode, FetchResult};
use bbb_migrator::config::{self, Config};
use bbb_migrator::ledger::any::AnyLedger;
use bbb_migrator::ledger::{
    JobRow, JobState, JobStore, NewJob, Progress, Requeue, RetryPolicy, RunningJob, SystemClock,
    TARGET_FILE,
};
use bbb_migrator::place::{ClaimDir, csv, import, moodle, pod, slug};
use bbb_migrator::progress::{BarsReporter, Event, JsonReporter, PlainReporter, Reporter};
use bbb_migrator::recording::{Playback, RecordId, Recording};
use bbb_migrator::select::{self, Filter};
use bbb_migrator::worker::download::{DownloadSettings, redact};
use bbb_migrator::worker::owner::{OwnerName, expire_dead_local_leases};
use bbb_migrator::worker::recorder::resolve_program;
use bbb_migrator::worker::{self, JobOutcome, RecorderSettings, WorkerContext};
use chrono_tz::Tz;
use tokio::sync::watch;

use crate::cli::{Cli, Command, ProgressMode, exit};

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

type Res<T> = Result<T, Fatal>;

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
        return init_config(&cli, output.as_deref(), &config_path, *force);
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
    }
}

fn out() -> std::io::StdoutLock<'static> {
    std::io::stdout().lock()
}

fn init_config(cli: &Cli, output: Option<&str>, config_path: &Path, force: bool) -> Res<i32> {
    if output == Some("-") {
        let _ = out().write_all(config::TEMPLATE.as_bytes());
        return Ok(exit::OK);
    }
    let path = output
        .map(PathBuf::from)
        .unwrap_or_else(|| config_path.to_path_buf());
    if cli.dry_run {
        let _ = writeln!(
            out(),
            "dry run: would write the configuration template to {}",
            path.display()
        );
        return Ok(exit::OK);
    }
    if path.exists() && !force {
        return Err(usage(format!(
            "{} already exists (use --force to replace it)",
            path.display()
        )));
    }
    api::write_atomic(&path, config::TEMPLATE.as_bytes())
        .map_err(|e| usage(format!("{}: {e}", path.display())))?;
    let _ = writeln!(out(), "wrote {}", path.display());
    Ok(exit::OK)
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
        let settings = ApiSettings {
            base_url: self.cfg.base_url().map_err(usage)?.to_owned(),
            secret: self.cfg.secret().map_err(usage)?.to_owned(),
            checksum: self.cfg.bbb.checksum,
            timeout: self.cfg.api_timeout(),
            retries: self.cfg.bbb.retries,
            retry_delay: Duration::from_millis(self.cfg.bbb.retry_delay_ms),
        };
        ApiClient::new(settings).map_err(|e| usage(format!("HTTP client: {e}")))
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
            .map_err(usage)
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
            .map_err(usage)
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

    async fn list(&self, json: bool) -> Res<i32> {
        let (recs, _fetched, _) = self.fetch_selected().await?;
        let ledger = self.ledger_read_only().await?;
        let rows = by_recording(ledger.jobs().await.map_err(usage)?);
        ledger.close().await;
        let rewrite = self.cfg.bbb.playback_url_23;
        let mut o = out();
        if json {
            let v: Vec<serde_json::Value> = recs
                .iter()
                .map(|r| {
                    let row = rows.get(r.record_id.as_str());
                    serde_json::json!({
                        "record_id": r.record_id,
                        "name": r.name,
                        "start_time": r.start_time_ms,
                        "start_date": slug::local_date(r.start_time_ms, self.tz),
                        "state": r.state,
                        "playback": playback_kind(r.playback(rewrite).as_ref()),
                        "source_url": r.source_url(rewrite),
                        "length_secs": r.length_secs(),
                        "ledger_state": row.map(|j| j.state.as_str()).unwrap_or("new"),
                        "output": row.and_then(|j| j.output_path.clone()),
                        "last_error": row.and_then(|j| j.last_error.clone()),
                    })
                })
                .collect();
            let _ = serde_json::to_writer_pretty(&mut o, &v);
            let _ = writeln!(o);
        } else {
            for (i, r) in recs.iter().enumerate() {
                let state = rows
                    .get(r.record_id.as_str())
                    .map(|j| j.state.as_str())
                    .unwrap_or("new");
                let _ = writeln!(
                    o,
                    "{:>5} {} {} {:<9} {:<12} {}",
                    i + 1,
                    r.record_id,
                    slug::local_date(r.start_time_ms, self.tz),
                    state,
                    playback_kind(r.playback(rewrite).as_ref()),
                    r.name
                );
            }
            let _ = writeln!(o, "{} recording(s)", recs.len());
        }
        Ok(exit::OK)
    }

    async fn export_csv(&self, output: Option<&str>, moodle: bool) -> Res<i32> {
        let msettings = moodle.then(|| self.moodle_settings());
        if let Some(m) = &msettings
            && m.databases.is_empty()
        {
            return Err(usage(
                "--moodle: no [moodle.databases.\"<server>\"] or [moodle.databases.default] configured",
            ));
        }
        let (recs, fetched, _) = self.fetch_selected().await?;
        // As for claim: malformed recordings (named on stderr) are rows missing from the CSV, so
        // the run is not a full success; with an explicit --record-id list they are not this
        // run's concern.
        let malformed = if self.cli.select.record_id.is_empty() {
            fetched.malformed.len()
        } else {
            0
        };
        let mut failed = 0;
        let owners = match msettings {
            None => None,
            Some(m) => {
                // Only reads Moodle: every session is read-only, dry run or not.
                let mut dbs: BTreeMap<String, moodle::MoodleDb> = BTreeMap::new();
                let mut all = Vec::with_capacity(recs.len());
                for rec in &recs {
                    match moodle_owners(&m, &mut dbs, rec).await {
                        Ok(names) => all.push(names),
                        Err(e) => {
                            // Python wrote `[]` and went on; the row is still written, but the
                            // run says which recordings lack their owners and exits 1.
                            failed += 1;
                            tracing::warn!(
                                record_id = %rec.record_id,
                                "Problem to find moderators for BBB recording in Moodle: {e}"
                            );
                            all.push(Vec::new());
                        }
                    }
                }
                for d in dbs.values() {
                    d.close().await;
                }
                Some(all)
            }
        };
        let bytes = csv::export_with_owners(
            &recs,
            self.tz,
            self.cfg.bbb.playback_url_23,
            owners.as_deref(),
        );
        match output.unwrap_or("out.csv") {
            "-" => {
                let _ = out().write_all(&bytes);
            }
            path if self.cli.dry_run => {
                let _ = writeln!(
                    out(),
                    "dry run: would write {} row(s) to {path}",
                    recs.len()
                );
            }
            path => {
                api::write_atomic(Path::new(path), &bytes).map_err(|e| Fatal {
                    code: exit::FAILED,
                    message: format!("{path}: {e}"),
                })?;
                tracing::info!("wrote {} row(s) to {path}", recs.len());
            }
        }
        if failed > 0 {
            tracing::warn!("{failed} recording(s): Moodle lookup failed, Moodle_owners is []");
        }
        if malformed > 0 {
            tracing::warn!("{malformed} malformed recording(s) are not in the CSV (named above)");
        }
        Ok(if failed + malformed > 0 {
            exit::FAILED
        } else {
            exit::OK
        })
    }

    /// Mode 2 (spec 6): one external recording per (recording, owner), each recording a ledger
    /// job whose lease fences every Pod and Moodle write. A dry run connects read-only, takes no
    /// lease and prints what it would create. A failing recording is reported and counted; the
    /// others go on. Like `claim`, waits for the jobs held by other hosts (taking over those whose
    /// lease expires) and for retry backoffs, unless `wait` is false (`--no-wait`).
    async fn import(&self, moodle: bool, wait: bool) -> Res<i32> {
        let url = self
            .cfg
            .pod
            .database_url
            .as_ref()
            .map(|u| u.expose_secret())
            .ok_or_else(|| usage("[pod] database_url is not set (or set POD_DATABASE_URL)"))?;
        let msettings = moodle.then(|| self.moodle_settings());
        if let Some(m) = &msettings
            && m.databases.is_empty()
        {
            return Err(usage(
                "--moodle: no [moodle.databases.\"<server>\"] or [moodle.databases.default] configured",
            ));
        }
        let p = &self.cfg.pod;
        let rest = match p.rest_url.as_deref() {
            Some(u) => Some(
                bbb_migrator::place::rest::PodRest::new(
                    u,
                    p.rest_token.as_ref().map_or("", |t| t.expose_secret()),
                    Duration::from_secs(60),
                )
                .map_err(usage)?,
            ),
            None => None,
        };
        let dry = self.cli.dry_run;
        let db = pod::PodDb::connect(url, dry)
            .await
            .map_err(|e| usage(format!("Pod database: {e}")))?;
        let (recs, fetched, missing) = self.fetch_selected().await?;
        let settings = pod::ImportSettings {
            admin_id: p.admin_id,
            site_id: p.site_id,
            rewrite_23: self.cfg.bbb.playback_url_23,
            playback_hosts: self.cfg.playback_hosts().map_err(usage)?,
            dry_run: dry,
            user_defaults: pod::UserDefaults {
                secret_key: p
                    .secret_key
                    .as_ref()
                    .map(|k| k.expose_secret().to_owned())
                    .unwrap_or_default(),
                site_id: p.site_id,
                auth_type: p.auth_type.clone(),
                affiliation: p.affiliation.clone(),
                establishment: p.establishment.clone(),
                favorites_description: p.favorites_description.clone(),
            },
            rest,
        };
        let importer =
            import::Importer::new(db, msettings, self.cfg.moodle.inform_html.clone(), settings);
        let print = |n: usize, lines: &[String]| {
            let mut o = out();
            let _ = writeln!(o, "------------------------------\n#{n}");
            for l in lines {
                let _ = writeln!(o, "{l}");
            }
        };
        let (mut rows, mut users, mut notices, mut skipped) = (0, 0, 0, 0);
        let mut failures: Vec<String> = Vec::new();
        let mut unfinished = Unfinished::default();
        if dry {
            let ledger = self.ledger_read_only().await?;
            let done = import_jobs(ledger.jobs().await.map_err(usage)?);
            ledger.close().await;
            for (i, rec) in recs.iter().enumerate() {
                if done
                    .get(rec.record_id.as_str())
                    .is_some_and(|j| j.state == JobState::Succeeded)
                {
                    skipped += 1;
                    print(
                        i + 1,
                        &[format!(
                            "{}: already imported (ledger): skip",
                            rec.record_id
                        )],
                    );
                    continue;
                }
                match importer.import_one(rec, &pod::Unfenced, &[]).await {
                    Ok(o) => {
                        rows += o.rows_created;
                        users += o.users_created;
                        print(i + 1, &o.lines);
                    }
                    Err((e, mut lines)) => {
                        lines.push(format!(" - Recording {}: would fail: {e}", rec.record_id));
                        failures.push(format!("{}: {e}", rec.record_id));
                        print(i + 1, &lines);
                    }
                }
            }
        } else {
            let ledger = self.ledger_write().await?;
            let lerr = |e: bbb_migrator::ledger::LedgerError| Fatal {
                code: exit::FAILED,
                message: e.to_string(),
            };
            let ids: Vec<String> = recs.iter().map(|r| r.record_id.to_string()).collect();
            let new_jobs: Vec<NewJob> = recs
                .iter()
                .map(|r| NewJob {
                    recording_id: r.record_id.to_string(),
                    target: import::TARGET_IMPORT.into(),
                    payload: serde_json::to_string(r).expect("recording serialises"),
                })
                .collect();
            ledger.enqueue(&new_jobs).await.map_err(lerr)?;
            let owner = OwnerName::new(&host_name(None)?);
            expire_dead_local_leases(&ledger, &owner)
                .await
                .map_err(lerr)?;
            ledger.sweep().await.map_err(lerr)?;
            let before = import_jobs(ledger.jobs().await.map_err(lerr)?);
            let worker = owner.worker("import");
            let lease_dur = Duration::from_secs(self.cfg.ledger.lease_secs.max(3));
            let index: BTreeMap<&str, usize> = ids
                .iter()
                .enumerate()
                .map(|(i, id)| (id.as_str(), i + 1))
                .collect();
            let mut ran = std::collections::BTreeSet::new();
            let poll = worker::poll_interval(lease_dur);
            loop {
                let lease = match ledger
                    .claim_target(&worker, lease_dur, Some(&ids), Some(import::TARGET_IMPORT))
                    .await
                {
                    Ok(Some(l)) => l,
                    Ok(None) if !wait => break,
                    Ok(None) => {
                        // Held by another host or waiting for a retry: look again after a
                        // while, and take over what a dead host's expired lease leaves. A job
                        // whose holder died with no attempt left goes to dead (sweep), or it
                        // would be waited for forever.
                        ledger.sweep().await.map_err(lerr)?;
                        let left = ledger
                            .unfinished(Some(&ids), Some(import::TARGET_IMPORT))
                            .await
                            .map_err(lerr)?;
                        if left == 0 {
                            break;
                        }
                        tokio::time::sleep(poll).await;
                        continue;
                    }
                    Err(e) => return Err(lerr(e)),
                };
                let n = index.get(lease.recording_id.as_str()).copied().unwrap_or(0);
                ran.insert(lease.recording_id.clone());
                match importer.run_job(&ledger, &lease, lease_dur).await {
                    import::JobResult::Done(o) => {
                        rows += o.rows_created;
                        users += o.users_created;
                        notices += o.notices;
                        print(n, &o.lines);
                    }
                    import::JobResult::Failed {
                        state,
                        error,
                        mut lines,
                    } => {
                        lines.push(format!(
                            " - Recording {}: failed ({}): {error}",
                            lease.recording_id,
                            state.as_str()
                        ));
                        print(n, &lines);
                    }
                    import::JobResult::LeaseLost { mut lines } => {
                        lines.push(format!(
                            " - Recording {}: lease lost, another worker owns it now; nothing more written.",
                            lease.recording_id
                        ));
                        print(n, &lines);
                    }
                }
            }
            let after = import_jobs(ledger.jobs().await.map_err(lerr)?);
            let running =
                held_by_target(ledger.running().await.map_err(lerr)?, import::TARGET_IMPORT);
            ledger.close().await;
            for id in &ids {
                let was_done = before
                    .get(id.as_str())
                    .is_some_and(|j| j.state == JobState::Succeeded);
                match after.get(id.as_str()) {
                    Some(j) if j.state == JobState::Succeeded => {
                        if was_done && !ran.contains(id) {
                            skipped += 1;
                        }
                    }
                    Some(j) if unfinished.add(j, &running, self.tz) => {}
                    Some(j) => failures.push(format!(
                        "{id} [{}]: {}",
                        j.state.as_str(),
                        j.last_error.as_deref().unwrap_or("not run")
                    )),
                    None => failures.push(format!("{id}: not in the ledger")),
                }
            }
        }
        importer.close().await;
        for id in &missing {
            failures.push(format!("{id}: not listed by the server"));
        }
        if self.cli.select.record_id.is_empty() {
            for m in &fetched.malformed {
                failures.push(format!(
                    "{}: malformed: {}",
                    m.record_id
                        .clone()
                        .unwrap_or_else(|| format!("#{}", m.index)),
                    m.reason
                ));
            }
        }
        let verb = if dry { "would create" } else { "created" };
        let mut o = out();
        let _ = writeln!(
            o,
            "------------------------------\n{} recording(s): {verb} {rows} external recording(s) and {users} user(s), {skipped} skipped (already imported), {} failed{}",
            recs.len(),
            failures.len(),
            unfinished.counts()
        );
        for f in &failures {
            let _ = writeln!(o, "  FAILED {f}");
        }
        unfinished.print(&mut o);
        if notices > 0 {
            let _ = writeln!(
                o,
                "{notices} Moodle activity description(s) updated: run `{}` on the Moodle server so the course pages show it.",
                moodle::PURGE_HINT
            );
        }
        Ok(unfinished.exit_code(!failures.is_empty(), wait))
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

    async fn claim(
        &self,
        jobs: Option<usize>,
        force: bool,
        wait: bool,
        host: Option<String>,
    ) -> Res<i32> {
        // Pre-checks first: a failed pre-check is never exit 0 (the Python command's was).
        let registration = self.claim_registration().await?;
        let claim_dir =
            self.claim_dir(registration.as_ref().map(|r| r.recorder.directory.as_str()))?;
        claim_dir.check(!self.cli.dry_run).map_err(usage)?;
        let program = resolve_program(self.cfg.recorder.command.as_deref());
        let (recs, fetched, missing) = self.fetch_selected().await?;
        let rewrite = self.cfg.bbb.playback_url_23;
        let needs_recorder = recs
            .iter()
            .any(|r| matches!(r.playback(rewrite), Some(Playback::Presentation(_))));
        if needs_recorder && program.is_none() {
            return Err(usage(match &self.cfg.recorder.command {
                Some(c) => format!("[recorder] command {c:?} not found"),
                None => {
                    "bbb-record not found next to bbb-migrate nor in PATH (set [recorder] command)"
                        .into()
                }
            }));
        }
        if self.cli.dry_run {
            if let Some(r) = &registration {
                r.db.close().await;
            }
            return self
                .claim_plan(&claim_dir, &recs, &missing, &fetched, force)
                .await;
        }
        let ledger = Arc::new(self.ledger_write().await?);
        let ids: Vec<String> = recs.iter().map(|r| r.record_id.to_string()).collect();
        let new_jobs: Vec<NewJob> = recs
            .iter()
            .map(|r| NewJob {
                recording_id: r.record_id.to_string(),
                target: TARGET_FILE.into(),
                payload: serde_json::to_string(r).expect("recording serialises"),
            })
            .collect();
        let lerr = |e: bbb_migrator::ledger::LedgerError| Fatal {
            code: exit::FAILED,
            message: e.to_string(),
        };
        ledger.enqueue(&new_jobs).await.map_err(lerr)?;
        if force {
            ledger
                .requeue(&Requeue::Force(ids.clone()))
                .await
                .map_err(lerr)?;
        }
        let host = host_name(host)?;
        let owner = OwnerName::new(&host);
        // A run of this machine killed a moment ago (kill -9, OOM killer): its jobs are taken
        // over now rather than when their leases run out.
        let adoptable: std::collections::HashMap<String, i64> =
            expire_dead_local_leases(ledger.as_ref(), &owner)
                .await
                .map_err(lerr)?
                .into_iter()
                .collect();
        ledger.sweep().await.map_err(lerr)?;
        let before = by_recording(ledger.jobs().await.map_err(lerr)?);
        // Their partial downloads stay for the next holder to resume: an expired lease is still
        // a running job, whose directory is live.
        clean_partials(&ledger, &claim_dir).await;

        let jobs = jobs
            .or((self.cfg.worker.jobs > 0).then_some(self.cfg.worker.jobs))
            .unwrap_or_else(default_jobs);
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                tracing::warn!("interrupted: stopping the running jobs and giving them back");
                let _ = shutdown_tx.send(true);
            }
        });
        let ctx_claim_dir = claim_dir.clone();
        let ctx = Arc::new(WorkerContext {
            store: ledger.clone(),
            claim_dir,
            tz: self.tz,
            rewrite_23: rewrite,
            recorder: RecorderSettings {
                program,
                format: self.cfg.recorder.format,
                timeout_factor: self.cfg.recorder.timeout_factor,
                timeout_margin_secs: self.cfg.recorder.timeout_margin_secs,
                default_length_secs: self.cfg.recorder.default_length_secs,
                grace: Duration::from_secs(self.cfg.recorder.grace_secs),
                accept_broken: self.cfg.recorder.accept_broken,
            },
            download: DownloadSettings {
                stall: Duration::from_secs(self.cfg.worker.download_stall_secs.max(1)),
                retries: self.cfg.worker.download_retries,
                retry_delay: Duration::from_millis(self.cfg.bbb.retry_delay_ms),
                hosts: self.cfg.playback_hosts().map_err(usage)?,
            },
            space: worker::space::SpaceSettings {
                dirs: vec![ctx_claim_dir.temp_dir.clone(), ctx_claim_dir.dir.clone()],
                margin: self.cfg.worker.free_space_margin_mb.saturating_mul(1 << 20),
                poll: Duration::from_millis(self.cfg.worker.free_space_poll_ms.max(100)),
            },
            lease: Duration::from_secs(self.cfg.ledger.lease_secs.max(3)),
            // Unique per process even when two runs share a host name; `:<n>` per worker task.
            worker_name: owner.base(),
            reporter: self.reporter.clone(),
            api: if self.cli.use_cache && self.cfg.bbb.base_url.is_none() {
                None
            } else {
                Some(self.api()?)
            },
            shutdown: shutdown_rx.clone(),
            wait,
            registration: registration.clone(),
            playback_hosts: self.cfg.playback_hosts().map_err(usage)?,
            adoptable: std::sync::Mutex::new(adoptable),
        });
        let runnable = ids
            .iter()
            .filter(|id| {
                before
                    .get(id.as_str())
                    .is_some_and(|j| matches!(j.state, JobState::Pending | JobState::Running))
            })
            .count();
        self.reporter.event(Event::Batch {
            total: runnable as u64,
        });
        tracing::info!("{} selected, {runnable} to run, {jobs} at once", ids.len());
        let reports = worker::run_pool(ctx, jobs, ids.clone()).await;
        self.reporter.finish();
        // Partials of leases taken over during this run are dead now.
        clean_partials(&ledger, &ctx_claim_dir).await;
        let rows_after = ledger.jobs().await.map_err(lerr)?;
        let after = by_recording(rows_after);
        let running = held_by_target(ledger.running().await.map_err(lerr)?, TARGET_FILE);
        ledger.close().await;
        if let Some(r) = &registration {
            r.db.close().await;
        }

        let interrupted = *shutdown_rx.borrow();
        let summary = Summary::build(
            &ids,
            &before,
            (&after, &running),
            &reports,
            &missing,
            &fetched,
            &self.cli.select.record_id,
            self.tz,
        );
        summary.print(self.json_progress);
        Ok(summary
            .unfinished
            .exit_code(!summary.failed.is_empty() || interrupted, wait))
    }

    /// With `[pod] database_url`: the recorder `[pod] recorder_id` must exist in Pod and its
    /// directory (which the files go to; `[pod] recorder_directory` is then only compared, with a
    /// warning) must exist under default_recorder_path. Checked before any work; a failure is a
    /// pre-check failure (exit 2) naming the recorder.
    async fn claim_registration(&self) -> Res<Option<worker::ClaimRegistration>> {
        let Some(url) = self
            .cfg
            .pod
            .database_url
            .as_ref()
            .map(|u| u.expose_secret())
        else {
            return Ok(None);
        };
        let id = self.cfg.pod.recorder_id;
        let db = pod::PodDb::connect(url, self.cli.dry_run)
            .await
            .map_err(|e| usage(format!("Pod database: {e}")))?;
        let recorder = match db.recorder(id).await {
            Ok(Some(r)) => r,
            Ok(None) => {
                db.close().await;
                return Err(usage(format!(
                    "Pod recorder {id} ([pod] recorder_id) does not exist in Pod's recorder_recorder table: create it in Pod's admin (a recorder with no manager, for manual claim) or fix recorder_id"
                )));
            }
            Err(e) => {
                db.close().await;
                return Err(usage(format!("Pod recorder {id}: {e}")));
            }
        };
        // Pod's database is not ours: its directory name must stay a single component.
        let problem = if !config::is_directory_name(&recorder.directory) {
            Some(format!(
                "its directory {:?} is not a single directory name of at most 50 characters",
                recorder.directory
            ))
        } else {
            let dir = self.cfg.pod.default_recorder_path.join(&recorder.directory);
            (!dir.is_dir()).then(|| {
                format!(
                    "its directory {:?} does not exist ({})",
                    recorder.directory,
                    dir.display()
                )
            })
        };
        if let Some(p) = problem {
            db.close().await;
            return Err(usage(format!(
                "Pod recorder {id} ({:?}): {p}",
                recorder.name
            )));
        }
        if let Some(configured) = self.cfg.pod.recorder_directory.as_deref()
            && configured != recorder.directory
        {
            tracing::warn!(
                "Pod recorder {id} ({:?}) has the directory {:?}: the files go there, not to [pod] recorder_directory {configured:?}",
                recorder.name,
                recorder.directory
            );
        }
        if recorder.manager_id.is_some() {
            tracing::warn!(
                "Pod recorder {id} ({:?}) has a manager: Pod notifies the manager instead of offering the files for manual claim",
                recorder.name
            );
        }
        Ok(Some(worker::ClaimRegistration { db, recorder }))
    }

    async fn claim_plan(
        &self,
        claim_dir: &ClaimDir,
        recs: &[Recording],
        missing: &[RecordId],
        fetched: &FetchResult,
        force: bool,
    ) -> Res<i32> {
        let ledger = self.ledger_read_only().await?;
        let rows = by_recording(ledger.jobs().await.map_err(usage)?);
        ledger.close().await;
        let mut o = out();
        let _ = writeln!(o, "dry run: nothing will be written");
        let hosts = self.cfg.playback_hosts().map_err(usage)?;
        let ext_p = self.cfg.recorder.format.ext();
        for r in recs {
            let row = rows.get(r.record_id.as_str());
            if let Some(j) = row.filter(|j| j.state == JobState::Succeeded && !force) {
                let _ = writeln!(
                    o,
                    "{}: skip, already done ({})",
                    r.record_id,
                    j.output_path.as_deref().unwrap_or("?")
                );
                continue;
            }
            if let Some(j) = row.filter(|j| j.state == JobState::Dead) {
                let _ = writeln!(
                    o,
                    "{}: skip, dead ({}); `retry --failed` re-queues it",
                    r.record_id,
                    j.last_error.as_deref().unwrap_or("")
                );
                continue;
            }
            let stem = slug::file_stem(&r.name, r.start_time_ms, self.tz);
            let (verb, url, ext) = match r.playback(self.cfg.bbb.playback_url_23) {
                Some(Playback::Video(u)) => ("download video playback", u, "m4v"),
                Some(Playback::Presentation(u)) => ("record presentation", u, ext_p),
                None => {
                    let _ = writeln!(
                        o,
                        "{}: would fail: no video or presentation playback",
                        r.record_id
                    );
                    continue;
                }
            };
            if let Err(why) = hosts.check(&url) {
                let _ = writeln!(o, "{}: would fail (select): {why}", r.record_id);
                continue;
            }
            let dest = claim_dir
                .candidates(&stem, &r.record_id, ext)
                .into_iter()
                .find(|p| {
                    !p.exists()
                        && !rows
                            .values()
                            .any(|j| j.output_path.as_deref() == Some(&*p.to_string_lossy()))
                })
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "(no free name)".into());
            let _ = writeln!(
                o,
                "{}: would {verb} {} into {dest}",
                r.record_id,
                redact(&url)
            );
        }
        for id in missing {
            let _ = writeln!(o, "{id}: not listed by the server");
        }
        for m in &fetched.malformed {
            let _ = writeln!(
                o,
                "recording #{} ({}): malformed, skipped: {}",
                m.index,
                m.record_id.as_deref().unwrap_or("no recordID"),
                m.reason
            );
        }
        Ok(exit::OK)
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

    async fn status(&self, json: bool) -> Res<i32> {
        let only = self.ledger_selection("status")?;
        let wanted = |id: &str| only.is_empty() || only.iter().any(|o| o == id);
        let ledger = self.ledger_read_only().await?;
        let mut rows = ledger.jobs().await.map_err(usage)?;
        let mut running = ledger.running().await.map_err(usage)?;
        ledger.close().await;
        rows.retain(|r| wanted(&r.recording_id));
        running.retain(|r| wanted(&r.recording_id));
        let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
        for r in &rows {
            *counts.entry(r.state.as_str()).or_default() += 1;
        }
        let bytes: i64 = rows.iter().filter_map(|r| r.output_bytes).sum();
        let busy: i64 = rows.iter().map(|r| r.busy_ms).sum();
        let mut o = out();
        if json {
            let v = serde_json::json!({
                "counts": counts,
                "bytes_placed": bytes,
                "machine_time_secs": busy as f64 / 1000.0,
                "failures": rows.iter().filter(|r| r.last_error.is_some() && r.state != JobState::Succeeded).map(|r| serde_json::json!({
                    "record_id": r.recording_id, "state": r.state.as_str(), "attempts": r.attempts,
                    "error_class": r.error_class, "last_error": r.last_error,
                })).collect::<Vec<_>>(),
                "outputs": rows.iter().filter(|r| r.state == JobState::Succeeded).map(|r| serde_json::json!({
                    "record_id": r.recording_id, "path": r.output_path, "bytes": r.output_bytes,
                    "degraded": r.degraded(),
                })).collect::<Vec<_>>(),
                "running": running.iter().map(|r| {
                    let progress = r.progress.as_deref().and_then(Progress::parse);
                    serde_json::json!({
                        "record_id": r.recording_id, "owner": r.owner,
                        "host": r.owner.as_deref().and_then(|o| o.split(':').next()),
                        "epoch": r.epoch, "since_ms": r.since_ms, "heartbeat_ms": r.heartbeat_ms,
                        "lease_expired": r.expired, "checkpoint": r.checkpoint,
                        "progress": progress.map(|p| serde_json::json!({
                            "unit": p.unit, "done": p.done, "total": p.total,
                            "percent": p.percent(),
                        })),
                    })
                }).collect::<Vec<_>>(),
            });
            let _ = serde_json::to_writer_pretty(&mut o, &v);
            let _ = writeln!(o);
            return Ok(exit::OK);
        }
        let _ = writeln!(o, "jobs: {}", rows.len());
        for (state, n) in &counts {
            let _ = writeln!(o, "  {state}: {n}");
        }
        let _ = writeln!(o, "bytes placed: {bytes}");
        let _ = writeln!(o, "machine time: {}", human_secs(busy / 1000));
        if !running.is_empty() {
            let now_ms = chrono::Utc::now().timestamp_millis();
            let _ = writeln!(o, "running (per host):");
            for r in &running {
                let since = r
                    .since_ms
                    .and_then(|t| {
                        let at = chrono::DateTime::from_timestamp_millis(t)?;
                        Some(format!(
                            "{} ({} ago)",
                            at.with_timezone(&self.tz).format("%Y-%m-%d %H:%M:%S"),
                            human_secs((now_ms - t).max(0) / 1000)
                        ))
                    })
                    .unwrap_or_else(|| "?".into());
                let progress = match r.progress.as_deref().and_then(Progress::parse) {
                    Some(p) => format!(", {p}"),
                    None => ", no progress yet".to_owned(),
                };
                let _ = writeln!(
                    o,
                    "  {} {} epoch {} since {since}{progress}{}",
                    r.owner.as_deref().unwrap_or("?"),
                    r.recording_id,
                    r.epoch,
                    if r.expired { " (lease expired)" } else { "" },
                );
            }
        }
        let failures: Vec<&JobRow> = rows
            .iter()
            .filter(|r| r.last_error.is_some() && r.state != JobState::Succeeded)
            .collect();
        if !failures.is_empty() {
            let _ = writeln!(o, "failures:");
            for r in failures {
                let _ = writeln!(
                    o,
                    "  {} [{} after {}/{} attempts]: {}",
                    r.recording_id,
                    r.state.as_str(),
                    r.attempts,
                    r.max_attempts,
                    r.last_error.as_deref().unwrap_or("")
                );
            }
        }
        let placed: Vec<&JobRow> = rows
            .iter()
            .filter(|r| r.state == JobState::Succeeded)
            .collect();
        if !placed.is_empty() {
            let _ = writeln!(o, "outputs:");
            for r in placed {
                let _ = writeln!(
                    o,
                    "  {} -> {} ({} bytes)",
                    r.recording_id,
                    r.output_path.as_deref().unwrap_or("?"),
                    r.output_bytes.unwrap_or(0)
                );
                for defect in r.degraded() {
                    let _ = writeln!(o, "    degraded: {defect}");
                }
            }
        }
        Ok(exit::OK)
    }

    /// Cancels the selected recordings: a pending job at once, a running one by its worker (on
    /// whatever host) at its next heartbeat.
    async fn cancel(&self) -> Res<i32> {
        let ids = self.ledger_selection("cancel")?;
        if ids.is_empty() {
            return Err(usage("cancel needs --record-id ID (repeatable)"));
        }
        if self.cli.dry_run {
            let _ = writeln!(out(), "dry run: would cancel {} recording(s)", ids.len());
            return Ok(exit::OK);
        }
        let ledger = self.ledger_write().await?;
        let mut missing = 0;
        for id in &ids {
            let hit = ledger.cancel(id, TARGET_FILE).await.map_err(usage)?;
            let what = if hit {
                "cancel requested"
            } else {
                "no pending or running job"
            };
            if !hit {
                missing += 1;
            }
            let _ = writeln!(out(), "{id}: {what}");
        }
        ledger.close().await;
        Ok(if missing == 0 { exit::OK } else { exit::FAILED })
    }

    async fn retry(&self, failed: bool) -> Res<i32> {
        let ids = self.ledger_selection("retry")?;
        let what = match (failed, ids.is_empty()) {
            (true, true) => Requeue::Failed(None),
            (true, false) => Requeue::Failed(Some(ids)),
            (false, false) => Requeue::Recordings(ids),
            (false, true) => return Err(usage("retry needs --failed or --record-id ID")),
        };
        if self.cli.dry_run {
            let ledger = self.ledger_read_only().await?;
            let rows = ledger.jobs().await.map_err(usage)?;
            ledger.close().await;
            let n = rows
                .iter()
                .filter(|r| match &what {
                    Requeue::Failed(None) => {
                        matches!(r.state, JobState::Dead | JobState::Cancelled)
                    }
                    Requeue::Failed(Some(ids)) => {
                        matches!(r.state, JobState::Dead | JobState::Cancelled)
                            && ids.contains(&r.recording_id)
                    }
                    Requeue::Recordings(ids) | Requeue::Force(ids) => {
                        ids.contains(&r.recording_id)
                            && !matches!(r.state, JobState::Running | JobState::Succeeded)
                    }
                })
                .count();
            let _ = writeln!(out(), "dry run: would re-queue {n} job(s)");
            return Ok(exit::OK);
        }
        let ledger = self.ledger_write().await?;
        let n = ledger.requeue(&what).await.map_err(usage)?;
        ledger.close().await;
        let _ = writeln!(out(), "re-queued {n} job(s)");
        Ok(exit::OK)
    }
}

/// Removes the job directories of killed runs and lost leases, on whatever host they ran (the
/// temp dir is shared). Lists first, then reads the ledger: see `remove_stale_partials`.
/// Removes the partial files of jobs that are not running any more.
async fn clean_partials(ledger: &AnyLedger, claim_dir: &ClaimDir) {
    let found = match claim_dir.partials() {
        Ok(f) if f.is_empty() => return,
        Ok(f) => f,
        Err(e) => {
            tracing::warn!("cleaning {}: {e}", claim_dir.temp_dir.display());
            return;
        }
    };
    let rows = match ledger.jobs().await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!("cleaning {}: {e}", claim_dir.temp_dir.display());
            return;
        }
    };
    match claim_dir.remove_stale_partials(found, &worker::live_partials(&rows)) {
        Ok(removed) => {
            for p in removed {
                tracing::info!(
                    "removed the partial file of an interrupted job: {}",
                    p.display()
                );
            }
        }
        Err(e) => tracing::warn!("cleaning {}: {e}", claim_dir.temp_dir.display()),
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

/// The `Moodle_owners` of one recording: `str(Generic_user)` of each moderator, `[]` for an
/// ignored server.
async fn moodle_owners(
    m: &moodle::MoodleSettings,
    dbs: &mut BTreeMap<String, moodle::MoodleDb>,
    rec: &Recording,
) -> Result<Vec<String>, moodle::MoodleError> {
    let Some(url) = moodle::database_for(m, rec.meta("bbb-origin-server-name"))? else {
        return Ok(Vec::new());
    };
    if !dbs.contains_key(url) {
        let db = moodle::MoodleDb::connect(url, m, true).await?;
        dbs.insert(url.to_owned(), db);
    }
    let l = moodle::moderators(&dbs[url], rec.record_id.as_str()).await?;
    Ok(l.owners
        .iter()
        .map(|u| csv::generic_user(&u.first_name, &u.last_name, &u.username))
        .collect())
}

fn check_ledger_url(url: &str) -> Res<()> {
    bbb_migrator::ledger::any::is_postgres(url)
        .map(|_| ())
        .map_err(usage)
}

fn import_jobs(rows: Vec<JobRow>) -> BTreeMap<String, JobRow> {
    rows.into_iter()
        .filter(|r| r.target == import::TARGET_IMPORT)
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

/// Recordings processed at once by default: a presentation recording costs about one core and
/// 1.2 GB of RAM (Chromium + encoder), so the smaller of the CPU count and free memory / 1.5 GB.
fn default_jobs() -> usize {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mem_kb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemAvailable:"))
                .and_then(|l| {
                    l.split_whitespace()
                        .nth(1)
                        .and_then(|v| v.parse::<u64>().ok())
                })
        })
        .unwrap_or(2 * 1024 * 1024);
    let by_mem = (mem_kb / (1536 * 1024)) as usize;
    cpus.min(by_mem).max(1)
}

struct Failure {
    record_id: String,
    state: String,
    error: String,
}

/// The selected jobs a run ends with that are neither succeeded nor failed for good: held under
/// another worker's lease, or waiting for their retry backoff. What `--no-wait` leaves behind and
/// reports with exit 4; a waiting run only ends with some when it was interrupted or lost the
/// ledger, and then they are failures of the run (exit 1).
#[derive(Default)]
struct Unfinished {
    /// (record id, holder, lease expiry as text)
    held: Vec<(String, String, String)>,
    /// (record id, "retry scheduled (...)", last error)
    retrying: Vec<(String, String, String)>,
}

impl Unfinished {
    /// Takes `j` if it is unfinished (running, or pending after a failed attempt); false for
    /// every other state. `running`: the ledger's running jobs of this target, by recording.
    fn add(&mut self, j: &JobRow, running: &BTreeMap<String, RunningJob>, tz: Tz) -> bool {
        match j.state {
            JobState::Running => {
                let r = running.get(&j.recording_id);
                let holder = r
                    .and_then(|r| r.owner.clone())
                    .unwrap_or_else(|| "?".into());
                let until = match r.and_then(|r| r.lease_expires_ms) {
                    Some(ms) if r.is_some_and(|r| r.expired) => format!(
                        "lease expired at {} (the next run takes it over)",
                        local_time(ms, tz)
                    ),
                    Some(ms) => format!("lease until {}", local_time(ms, tz)),
                    None => "lease expiry unknown".into(),
                };
                self.held.push((j.recording_id.clone(), holder, until));
                true
            }
            JobState::Pending if j.last_error.is_some() => {
                self.retrying.push((
                    j.recording_id.clone(),
                    format!(
                        "retry scheduled ({}/{} attempts), not before {}",
                        j.attempts,
                        j.max_attempts,
                        local_time(j.run_after_ms, tz)
                    ),
                    j.last_error.clone().unwrap_or_default(),
                ));
                true
            }
            _ => false,
        }
    }

    fn is_empty(&self) -> bool {
        self.held.is_empty() && self.retrying.is_empty()
    }

    /// The end of the summary line: nothing when there is nothing unfinished.
    fn counts(&self) -> String {
        let mut t = String::new();
        if !self.held.is_empty() {
            t += &format!(", {} held by other hosts", self.held.len());
        }
        if !self.retrying.is_empty() {
            t += &format!(", {} waiting for a retry", self.retrying.len());
        }
        t
    }

    fn print(&self, o: &mut impl Write) {
        for (id, holder, until) in &self.held {
            let _ = writeln!(o, "  HELD {id} by {holder}, {until}");
        }
        for (id, state, error) in &self.retrying {
            let _ = writeln!(o, "  RETRY {id} [{state}]: {error}");
        }
    }

    fn json(&self) -> (serde_json::Value, serde_json::Value) {
        let held = self
            .held
            .iter()
            .map(|(id, h, u)| serde_json::json!({"record_id": id, "holder": h, "lease": u}))
            .collect();
        let retrying = self
            .retrying
            .iter()
            .map(|(id, st, e)| serde_json::json!({"record_id": id, "state": st, "error": e}))
            .collect();
        (held, retrying)
    }

    /// FAILED when something failed (it wins over the rest); then, with jobs left unfinished,
    /// HELD for a `--no-wait` run and FAILED for a waiting one (it should have finished them).
    fn exit_code(&self, failed: bool, wait: bool) -> i32 {
        if failed {
            exit::FAILED
        } else if self.is_empty() {
            exit::OK
        } else if wait {
            exit::FAILED
        } else {
            exit::HELD
        }
    }
}

/// The running jobs of `target`, by recording.
fn held_by_target(running: Vec<RunningJob>, target: &str) -> BTreeMap<String, RunningJob> {
    running
        .into_iter()
        .filter(|r| r.target == target)
        .map(|r| (r.recording_id.clone(), r))
        .collect()
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

struct Summary {
    selected: usize,
    done: Vec<(String, String, u64)>,
    skipped: usize,
    failed: Vec<Failure>,
    unfinished: Unfinished,
    bytes: u64,
    machine: Duration,
    malformed: usize,
    count_malformed: bool,
}

impl Summary {
    /// `after`: the ledger's rows once the workers are done, with its running jobs.
    #[allow(clippy::too_many_arguments)]
    fn build(
        ids: &[String],
        before: &BTreeMap<String, JobRow>,
        after: (&BTreeMap<String, JobRow>, &BTreeMap<String, RunningJob>),
        reports: &[worker::JobReport],
        missing: &[RecordId],
        fetched: &FetchResult,
        explicit_ids: &[String],
        tz: Tz,
    ) -> Summary {
        let (after, running) = after;
        let mut s = Summary {
            selected: ids.len(),
            done: Vec::new(),
            skipped: 0,
            failed: Vec::new(),
            unfinished: Unfinished::default(),
            bytes: 0,
            machine: reports.iter().map(|r| r.elapsed).sum(),
            malformed: fetched.malformed.len(),
            // With an explicit --record-id list, unrelated malformed entries are not this run's failures.
            count_malformed: explicit_ids.is_empty(),
        };
        for r in reports {
            if let JobOutcome::Placed { path, bytes } | JobOutcome::AlreadyPlaced { path, bytes } =
                &r.outcome
            {
                s.done
                    .push((r.record_id.clone(), path.display().to_string(), *bytes));
                s.bytes += bytes;
            }
        }
        for id in ids {
            let was_done = before
                .get(id)
                .is_some_and(|j| j.state == JobState::Succeeded);
            match after.get(id) {
                Some(j) if j.state == JobState::Succeeded => {
                    if was_done && !s.done.iter().any(|d| &d.0 == id) {
                        s.skipped += 1;
                    }
                }
                Some(j) if s.unfinished.add(j, running, tz) => {}
                Some(j) => s.failed.push(Failure {
                    record_id: id.clone(),
                    state: j.state.as_str().to_owned(),
                    error: j.last_error.clone().unwrap_or_else(|| "not run".into()),
                }),
                None => s.failed.push(Failure {
                    record_id: id.clone(),
                    state: "unknown".into(),
                    error: "not in the ledger".into(),
                }),
            }
        }
        for id in missing {
            s.failed.push(Failure {
                record_id: id.to_string(),
                state: "missing".into(),
                error: "not listed by the server".into(),
            });
        }
        for m in &fetched.malformed {
            if s.count_malformed {
                s.failed.push(Failure {
                    record_id: m
                        .record_id
                        .clone()
                        .unwrap_or_else(|| format!("#{}", m.index)),
                    state: "malformed".into(),
                    error: m.reason.clone(),
                });
            }
        }
        s
    }

    fn print(&self, json: bool) {
        let mut o = out();
        if json {
            let (held, retrying) = self.unfinished.json();
            let v = serde_json::json!({
                "event": "summary",
                "selected": self.selected,
                "done": self.done.iter().map(|(id, p, b)| serde_json::json!({"record_id": id, "path": p, "bytes": b})).collect::<Vec<_>>(),
                "skipped": self.skipped,
                "failed": self.failed.iter().map(|f| serde_json::json!({"record_id": f.record_id, "state": f.state, "error": f.error})).collect::<Vec<_>>(),
                "held": held,
                "retrying": retrying,
                "malformed": self.malformed,
                "bytes_placed": self.bytes,
                "machine_time_secs": self.machine.as_secs_f64(),
            });
            let _ = writeln!(o, "{v}");
            return;
        }
        let _ = writeln!(
            o,
            "summary: {} selected, {} done, {} skipped (already done), {} failed{}, {} bytes placed, machine time {}",
            self.selected,
            self.done.len(),
            self.skipped,
            self.failed.len(),
            self.unfinished.counts(),
            self.bytes,
            human_secs(self.machine.as_secs() as i64)
        );
        for (id, p, b) in &self.done {
            let _ = writeln!(o, "  done {id} -> {p} ({b} bytes)");
        }
        for f in &self.failed {
            let _ = writeln!(o, "  FAILED {} [{}]: {}", f.record_id, f.state, f.error);
        }
        self.unfinished.print(&mut o);
        if self.malformed > 0 && !self.count_malformed {
            let _ = writeln!(
                o,
                "  ({} malformed recording(s) in the server's list were skipped)",
                self.malformed
            );
        }
    }
}
