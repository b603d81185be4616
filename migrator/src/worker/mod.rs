//! The worker: claim a job -> download the video playback or record the presentation -> place the
//! file in the claim directory -> complete the job, with a heartbeat every lease/3 that stops the
//! work at once when the lease is lost. Owns the order of those steps and the fencing around
//! placement; the protocol itself is the ledger's, the file handling `place`'s.

pub mod download;
pub mod owner;
pub mod placed;
pub mod pool;
pub mod recorder;
pub mod sheet;
pub mod space;

use std::collections::HashSet;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bbb_common::recorder_protocol::RecordingMode;
use chrono_tz::Tz;
use tokio::sync::watch;

use crate::config::OutputFormat;
use crate::error::{ErrorClass, JobError, Phase};
use crate::ledger::{JobState, JobStore, Lease, LedgerError, Progress, ProgressUnit, TARGET_FILE};
use crate::place::{ClaimDir, PlaceError, slug};
use crate::playback_hosts::PlaybackHosts;
use crate::progress::{Event, Reporter};
use crate::recording::{Playback, PlaybackFormat, Recording};
use download::DownloadSettings;
use placed::PlacedOutput;
use pool::{JobRunner, PoolSettings};
use recorder::{RecordOutput, RecorderCommand};
use space::SpaceSettings;

#[derive(Debug, Clone)]
pub struct RecorderSettings {
    pub program: Option<PathBuf>,
    pub format: OutputFormat,
    pub timeout_factor: f64,
    pub timeout_margin_secs: u64,
    pub default_length_secs: u64,
    pub grace: Duration,
    /// Pass `--accept-broken` to bbb-record ([recorder] accept_broken).
    pub accept_broken: bool,
    /// Pass `--fast` to bbb-record ([recorder] fast): presentations only, never downloads.
    pub fast: bool,
}

pub struct WorkerContext<S> {
    pub store: Arc<S>,
    pub claim_dir: ClaimDir,
    pub tz: Tz,
    pub rewrite_23: bool,
    pub recorder: RecorderSettings,
    pub download: DownloadSettings,
    /// Free space needed in the temp and claim directories before a job writes.
    pub space: SpaceSettings,
    pub lease: Duration,
    pub worker_name: String,
    pub reporter: Arc<dyn Reporter>,
    /// Used to get a fresh one-time token for protected Scalelite playbacks right before use:
    /// the tokens of the initial listing expire after 60 min, long before a batch ends.
    pub api: Option<crate::api::ApiClient>,
    /// Turns true on Ctrl-C: running jobs stop and give their lease back.
    pub shutdown: watch::Receiver<bool>,
    /// When nothing is claimable, poll until every selected job is finished (held by another
    /// host, whose lease this run takes over if it expires, or waiting for its retry backoff).
    /// False with `--no-wait`: return at once, leaving those jobs to their holders or a later
    /// run.
    pub wait: bool,
    /// With Pod's database: each placed file is registered for manual claim.
    pub registration: Option<ClaimRegistration>,
    /// Where playback URLs may point (`crate::playback_hosts`).
    pub playback_hosts: PlaybackHosts,
    /// Jobs whose previous holder was a process of this machine found dead at the start of the
    /// run (record id -> its lease epoch): their partial downloads are taken over and resumed.
    pub adoptable: Mutex<std::collections::HashMap<String, i64>>,
}

/// Pod's database and the recorder whose directory the files go to.
#[derive(Debug, Clone)]
pub struct ClaimRegistration {
    pub db: crate::place::pod::PodDb,
    pub recorder: crate::place::pod::Recorder,
}

/// Registers a placed file (spec 9.2 RECOMMENDED), fenced: a worker that lost its lease
/// registers nothing. Idempotent: an already registered file gets no second row.
async fn register<S: JobStore>(
    ctx: &WorkerContext<S>,
    lease: &Lease,
    path: &Path,
    bytes: u64,
) -> Result<(), Option<JobError>> {
    let Some(reg) = &ctx.registration else {
        return Ok(());
    };
    let rid = lease.recording_id.as_str();
    match ctx.store.heartbeat(lease, ctx.lease, None).await {
        Ok(_) => {}
        Err(LedgerError::LeaseLost { .. }) => return Err(None),
        Err(e) => return Err(Some(JobError::transient(rid, Phase::Ledger, e.to_string()))),
    }
    match reg
        .db
        .register_claim(&path.to_string_lossy(), bytes, &reg.recorder)
        .await
    {
        Ok(true) => {
            tracing::info!(record_id = %rid, "registered {} for manual claim", path.display());
            Ok(())
        }
        Ok(false) => Ok(()),
        Err(e) => {
            let class = if e.is_permanent() {
                ErrorClass::Permanent
            } else {
                ErrorClass::Transient
            };
            Err(Some(JobError::new(
                rid,
                Phase::Place,
                class,
                format!("registering {} in Pod: {e}", path.display()),
            )))
        }
    }
}

#[derive(Debug)]
pub enum JobOutcome {
    Placed {
        path: PathBuf,
        bytes: u64,
    },
    /// An earlier run placed the file but died before closing the job.
    AlreadyPlaced {
        path: PathBuf,
        bytes: u64,
    },
    Failed {
        state: JobState,
        error: JobError,
    },
    /// The lease went to another worker: this one wrote nothing more.
    LeaseLost,
    /// Ctrl-C: the job was given back.
    Interrupted,
}

#[derive(Debug)]
pub struct JobReport {
    pub record_id: String,
    pub outcome: JobOutcome,
    pub elapsed: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopReason {
    LeaseLost,
    CancelRequested,
    Shutdown,
}

/// Runs `jobs` workers until every job of the selection `only` is finished (without `ctx.wait`:
/// until nothing claimable is left).
pub async fn run_pool<S: JobStore>(
    ctx: Arc<WorkerContext<S>>,
    jobs: usize,
    only: Vec<String>,
) -> Vec<JobReport> {
    let settings = PoolSettings {
        target: TARGET_FILE,
        lease: ctx.lease,
        wait: ctx.wait,
        worker_names: (0..jobs.max(1))
            .map(|n| format!("{}:{n}", ctx.worker_name))
            .collect(),
    };
    let (store, shutdown) = (ctx.store.clone(), ctx.shutdown.clone());
    pool::run(store, ctx, settings, only, shutdown).await
}

/// A claimed file job: download or record, place, complete.
impl<S: JobStore> JobRunner for WorkerContext<S> {
    type Report = JobReport;

    fn run(&self, lease: Lease, claimed: Instant) -> impl Future<Output = JobReport> + Send {
        run_job(self, lease, claimed)
    }
}

/// The `<recordID>.<epoch>` prefixes of partial files that a live lease may still be writing.
pub fn live_partials(rows: &[crate::ledger::JobRow]) -> HashSet<String> {
    rows.iter()
        .filter(|r| r.state == JobState::Running)
        .map(|r| format!("{}.{}", r.recording_id, r.lease_epoch))
        .collect()
}

struct Heartbeat {
    cancel_rx: watch::Receiver<bool>,
    reason: Arc<Mutex<Option<StopReason>>>,
    /// The latest progress of the work, sent with the next heartbeat.
    progress: Arc<Mutex<Option<Progress>>>,
    task: tokio::task::JoinHandle<()>,
}

/// Renews the lease every lease/3 with the latest progress. Stops the work (through `cancel_rx`)
/// when the lease is lost or a cancel is requested, and also when the lease could not be renewed
/// in time for any reason (ledger unreachable, a renewal that hangs, this process stopped with
/// SIGSTOP or starved): the lease expires earlier on the holder's side than on the ledger's, so
/// the work stops before another worker may take the job over.
fn start_heartbeat<S: JobStore>(
    ctx: &WorkerContext<S>,
    lease: &Lease,
    claimed: Instant,
) -> Heartbeat {
    let (tx, rx) = watch::channel(false);
    let reason: Arc<Mutex<Option<StopReason>>> = Arc::default();
    let progress: Arc<Mutex<Option<Progress>>> = Arc::default();
    let store = ctx.store.clone();
    let lease = lease.clone();
    let dur = ctx.lease;
    let mut shutdown = ctx.shutdown.clone();
    let r = reason.clone();
    let latest = progress.clone();
    let stop = move |why| {
        r.lock().expect("reason").get_or_insert(why);
        let _ = tx.send(true);
    };
    let task = tokio::spawn(async move {
        let every = dur / 3;
        // The ledger set the expiry to (its now + dur) at or after `renewed` (the moment the
        // renewal was sent): stop a margin before renewed + dur.
        let margin = every / 2;
        let mut renewed = claimed;
        let mut next = claimed + every;
        loop {
            let deadline = renewed + dur - margin;
            tokio::select! {
                _ = tokio::time::sleep_until(next.min(deadline).into()) => {}
                _ = shutdown.changed() => { stop(StopReason::Shutdown); return; }
            }
            if Instant::now() >= deadline {
                tracing::warn!(
                    record_id = %lease.recording_id,
                    "lease not renewed within {dur:?}: stopping, another worker may take the job over"
                );
                stop(StopReason::LeaseLost);
                return;
            }
            let sent = Instant::now();
            let p = latest.lock().expect("progress").map(|p| p.to_json());
            let beat = tokio::time::timeout(
                deadline.saturating_duration_since(sent),
                store.heartbeat(&lease, dur, p.as_deref()),
            )
            .await;
            match beat {
                Ok(Ok(false)) => {
                    renewed = sent;
                    next = sent + every;
                }
                Ok(Ok(true)) => {
                    stop(StopReason::CancelRequested);
                    return;
                }
                Ok(Err(LedgerError::LeaseLost { .. })) => {
                    stop(StopReason::LeaseLost);
                    return;
                }
                Ok(Err(e)) => {
                    tracing::warn!(record_id = %lease.recording_id, "heartbeat: {e}");
                    next = sent + every / 2;
                }
                // The renewal hung until the deadline: checked at the top of the loop.
                Err(_) => next = Instant::now(),
            }
        }
    });
    Heartbeat {
        cancel_rx: rx,
        reason,
        progress,
        task,
    }
}

async fn run_job<S: JobStore>(ctx: &WorkerContext<S>, lease: Lease, claimed: Instant) -> JobReport {
    let started = Instant::now();
    let record_id = lease.recording_id.clone();
    let outcome = job(ctx, &lease, claimed).await;
    let (label, detail) = match &outcome {
        JobOutcome::Placed { path, bytes } => {
            ("placed", format!("{} ({bytes} bytes)", path.display()))
        }
        JobOutcome::AlreadyPlaced { path, .. } => {
            ("placed", format!("{} (by an earlier run)", path.display()))
        }
        JobOutcome::Failed { state, error } => (
            if *state == JobState::Dead {
                "dead"
            } else {
                "retry"
            },
            error.to_string(),
        ),
        JobOutcome::LeaseLost => ("lease-lost", "another worker owns this job now".to_owned()),
        JobOutcome::Interrupted => ("interrupted", "given back to the ledger".to_owned()),
    };
    ctx.reporter.event(Event::Finished {
        record_id: record_id.clone(),
        outcome: label,
        detail,
    });
    JobReport {
        record_id,
        outcome,
        elapsed: started.elapsed(),
    }
}

async fn fail<S: JobStore>(ctx: &WorkerContext<S>, lease: &Lease, error: JobError) -> JobOutcome {
    tracing::warn!(record_id = %lease.recording_id, "{error}");
    match ctx
        .store
        .fail(
            lease,
            error.class,
            &error.phase.to_string(),
            &error.to_string(),
        )
        .await
    {
        Ok(state) => JobOutcome::Failed { state, error },
        Err(LedgerError::LeaseLost { .. }) => JobOutcome::LeaseLost,
        Err(e) => JobOutcome::Failed {
            state: JobState::Running,
            error: JobError::transient(
                &lease.recording_id,
                Phase::Ledger,
                format!("{e} (after: {error})"),
            ),
        },
    }
}

async fn job<S: JobStore>(ctx: &WorkerContext<S>, lease: &Lease, claimed: Instant) -> JobOutcome {
    let rid = lease.recording_id.as_str();
    let mut rec: Recording = match serde_json::from_str(&lease.payload) {
        Ok(r) => r,
        Err(e) => {
            let e =
                JobError::permanent(rid, Phase::Parse, format!("ledger payload unreadable: {e}"));
            return fail(ctx, lease, e).await;
        }
    };
    if has_token(&rec.source_url(ctx.rewrite_23))
        && let Some(api) = &ctx.api
    {
        match api.get_recording(&rec.record_id).await {
            Ok(Some(fresh)) => rec = fresh,
            Ok(None) => {
                let e = JobError::permanent(rid, Phase::Fetch, "no longer listed by the server");
                return fail(ctx, lease, e).await;
            }
            Err(e) => {
                let e = JobError::transient(rid, Phase::Fetch, format!("fresh token: {e}"));
                return fail(ctx, lease, e).await;
            }
        }
    }
    let Some(playback) = rec.playback(ctx.rewrite_23) else {
        let kinds: Vec<&str> = rec.formats.iter().map(|f| f.kind.as_str()).collect();
        let e = JobError::permanent(
            rid,
            Phase::Parse,
            format!(
                "no video or presentation playback (formats: {})",
                if kinds.is_empty() {
                    "none".into()
                } else {
                    kinds.join(", ")
                }
            ),
        );
        return fail(ctx, lease, e).await;
    };
    if let Err(why) = ctx.playback_hosts.check(playback.url()) {
        return fail(ctx, lease, JobError::permanent(rid, Phase::Select, why)).await;
    }

    // A crash between placement and completion leaves the reserved file in place: just close.
    if let Some(p) = &lease.output_path {
        let path = PathBuf::from(p);
        if let Ok(m) = std::fs::metadata(&path) {
            let bytes = m.len();
            match register(ctx, lease, &path, bytes).await {
                Ok(()) => {}
                Err(None) => return JobOutcome::LeaseLost,
                Err(Some(e)) => return fail(ctx, lease, e).await,
            }
            // The file is kept and its length read from it; the rest is the record its worker
            // checkpointed right before placing it (none from an older bbb-migrate: no mode, no
            // defects).
            let duration = crate::media::duration(&path).ok();
            let earlier = PlacedOutput::of_placed(rid, lease.checkpoint.as_deref(), &path, bytes);
            let (degraded, sheet_error, fast_fallback, mode) = match &earlier {
                Some(e) => (
                    e.degraded.as_slice(),
                    e.sheet_error.as_deref(),
                    e.fast_fallback.as_deref(),
                    e.mode,
                ),
                None => (&[][..], None, None, None),
            };
            let output = output_json(
                &path,
                bytes,
                duration,
                &playback,
                degraded,
                sheet_error,
                fast_fallback,
            );
            return match ctx.store.complete(lease, &output, bytes, mode).await {
                Ok(()) => JobOutcome::AlreadyPlaced { path, bytes },
                Err(LedgerError::LeaseLost { .. }) => JobOutcome::LeaseLost,
                Err(e) => {
                    fail(
                        ctx,
                        lease,
                        JobError::transient(rid, Phase::Ledger, e.to_string()),
                    )
                    .await
                }
            };
        }
    }

    let ext = match &playback {
        Playback::Video(_) => "m4v",
        Playback::Presentation(_) => ctx.recorder.format.ext(),
    };
    if let Err(e) = ctx.claim_dir.prepare(&rec.record_id, lease.epoch) {
        let e = JobError::transient(rid, Phase::Place, e.to_string());
        return fail(ctx, lease, e).await;
    }
    let temp = ctx.claim_dir.temp_path(&rec.record_id, lease.epoch, ext);
    let dead_epoch = ctx
        .adoptable
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(rec.record_id.as_str());
    if let (Some(old), Playback::Video(_)) = (dead_epoch, &playback) {
        // A recording cannot resume (the recorder starts over), a download can.
        match ctx.claim_dir.adopt(&rec.record_id, old, lease.epoch, ext) {
            Ok(0) => {}
            Ok(bytes) => tracing::info!(
                record_id = %rec.record_id,
                "resuming the download of the killed run at byte {bytes}"
            ),
            Err(e) => tracing::warn!(
                record_id = %rec.record_id,
                "could not take over the partial download of the killed run: {e}"
            ),
        }
    }
    let hb = start_heartbeat(ctx, lease, claimed);
    let work = produce(
        ctx,
        &rec,
        &playback,
        &temp,
        hb.cancel_rx.clone(),
        &hb.progress,
    )
    .await;
    let stop = *hb.reason.lock().expect("reason");
    hb.task.abort();

    if let Some(why) = stop {
        ctx.claim_dir.discard(&rec.record_id, lease.epoch);
        return match why {
            StopReason::LeaseLost => JobOutcome::LeaseLost,
            StopReason::Shutdown => match ctx.store.release(lease).await {
                Ok(()) => JobOutcome::Interrupted,
                Err(_) => JobOutcome::LeaseLost,
            },
            StopReason::CancelRequested => {
                fail(
                    ctx,
                    lease,
                    JobError::permanent(rid, Phase::Ledger, "cancelled on request"),
                )
                .await
            }
        };
    }
    let produced = match work {
        Ok(produced) => produced,
        Err(e) => {
            ctx.claim_dir.discard(&rec.record_id, lease.epoch);
            return fail(ctx, lease, e).await;
        }
    };
    let placed = place(ctx, lease, &rec, &playback, &temp, ext, &produced).await;
    // Placed or not, this lease's directory has nothing left worth keeping.
    ctx.claim_dir.discard(&rec.record_id, lease.epoch);
    match placed {
        Ok(outcome) => outcome,
        Err(e) => fail(ctx, lease, e).await,
    }
}

fn has_token(u: &str) -> bool {
    url::Url::parse(u).is_ok_and(|u| u.query_pairs().any(|(k, _)| k == "token"))
}

/// The ledger's record of a placed output. `duration`: its length in seconds, read from the
/// file; `degraded`: the picture's defects when the recorder recorded a broken playback anyway
/// (`accept_broken`); empty otherwise; `sheet_error`: why it has no contact sheet;
/// `fast_fallback`: why a recording made with `[recorder] fast` was captured in real time. How
/// the picture was captured goes to its own column (`complete`'s `mode`), not in here.
fn output_json(
    path: &Path,
    bytes: u64,
    duration: Option<f64>,
    playback: &Playback,
    degraded: &[String],
    sheet_error: Option<&str>,
    fast_fallback: Option<&str>,
) -> String {
    let (kind, source) = match playback {
        Playback::Video(u) => ("video", bbb_common::redact::url_text(u)),
        Playback::Presentation(u) => ("presentation", bbb_common::redact::url_text(u)),
    };
    let mut v = serde_json::json!({ "path": path, "bytes": bytes, "kind": kind, "source": source });
    if let Some(d) = duration {
        v["duration_secs"] = serde_json::json!((d * 1000.0).round() / 1000.0);
    }
    if !degraded.is_empty() {
        v["degraded"] = serde_json::json!(degraded);
    }
    if let Some(why) = sheet_error {
        v["sheet_error"] = serde_json::json!(why);
    }
    if let Some(why) = fast_fallback {
        v["fast_fallback"] = serde_json::json!(why);
    }
    v.to_string()
}

/// Rate limit for progress events (a download delivers thousands of chunks).
struct Throttle(Mutex<Option<Instant>>);

impl Throttle {
    fn ready(&self) -> bool {
        let mut last = self.0.lock().expect("throttle");
        if last.is_some_and(|t| t.elapsed() < Duration::from_millis(250)) {
            return false;
        }
        *last = Some(Instant::now());
        true
    }
}

/// What a job made in its temp file: how long it lasts (read from the file) and, for a
/// recording made anyway, the picture's defects.
struct Produced {
    duration_secs: f64,
    degraded: Vec<String>,
    /// The output's contact sheet, or why there is none.
    sheet: Result<sheet::MadeSheet, String>,
    /// How a recording's picture was captured (`None` for a download).
    mode: Option<RecordingMode>,
    /// Why a recording asked for in fast mode was captured in real time.
    fast_fallback: Option<String>,
}

async fn produce<S: JobStore>(
    ctx: &WorkerContext<S>,
    rec: &Recording,
    playback: &Playback,
    temp: &Path,
    cancel: watch::Receiver<bool>,
    latest: &Mutex<Option<Progress>>,
) -> Result<Produced, JobError> {
    let rid = rec.record_id.as_str();
    // The job directory is fresh (`prepare`); a download in it can only be one taken over from
    // a killed run, which resumes.
    let throttle = Throttle(Mutex::new(None));
    match playback {
        Playback::Video(url) => {
            ctx.reporter.event(Event::Started {
                record_id: rid.into(),
                action: "download",
                url: bbb_common::redact::url_text(url),
            });
            let progress = |done: u64, total: Option<u64>| {
                *latest.lock().expect("progress") = Some(Progress {
                    unit: ProgressUnit::Bytes,
                    done: done as f64,
                    total: total.map(|t| t as f64),
                });
                if throttle.ready() || total == Some(done) {
                    ctx.reporter.event(Event::Progress {
                        record_id: rid.into(),
                        done: done as f64,
                        total: total.map(|t| t as f64),
                        unit: "bytes",
                    });
                }
            };
            download::download_video(rid, url, temp, &ctx.download, &ctx.space, cancel, &progress)
                .await?;
            let duration_secs = verify_length(rid, Phase::Download, temp, rec, playback, None)?;
            let sheet = match &ctx.recorder.program {
                Some(program) => sheet::of_video(program, temp, ctx.recorder.grace).await,
                None => Err("bbb-record not found: no contact sheet".into()),
            };
            Ok(Produced {
                duration_secs,
                degraded: Vec::new(),
                sheet,
                mode: None,
                fast_fallback: None,
            })
        }
        Playback::Presentation(url) => {
            let program = ctx.recorder.program.clone().ok_or_else(|| {
                JobError::transient(rid, Phase::Record, "bbb-record not found: set [recorder] command or install it next to bbb-migrate")
            })?;
            let mut waiting = cancel.clone();
            ctx.space
                .wait(
                    rid,
                    Phase::Record,
                    estimated_bytes(rec, playback, ctx.recorder.default_length_secs),
                    &mut waiting,
                )
                .await?;
            ctx.reporter.event(Event::Started {
                record_id: rid.into(),
                action: "record",
                url: bbb_common::redact::url_text(url),
            });
            // The recorder writes the sheet outside the claim directory, into a directory of this
            // job that goes when the sheet has been read.
            let sheet_dir = sheet::SheetDir::new();
            let extra_args = match &sheet_dir {
                Ok(d) => vec!["--contact-sheet".into(), d.jpeg().display().to_string()],
                Err(_) => Vec::new(),
            };
            let cmd = RecorderCommand {
                program,
                timeout: recorder::record_timeout(
                    rec.length_secs(),
                    ctx.recorder.timeout_factor,
                    ctx.recorder.timeout_margin_secs,
                    ctx.recorder.default_length_secs,
                ),
                grace: ctx.recorder.grace,
                accept_broken: ctx.recorder.accept_broken,
                fast: ctx.recorder.fast,
                allow_hosts: ctx.playback_hosts.hosts().to_vec(),
                extra_args,
            };
            let progress = |p: recorder::RecordProgress| {
                let total = p.duration_secs.or(rec.length_secs().map(|s| s as f64));
                *latest.lock().expect("progress") = Some(Progress {
                    unit: ProgressUnit::Seconds,
                    done: p.position_secs,
                    total,
                });
                if throttle.ready() {
                    ctx.reporter.event(Event::Progress {
                        record_id: rid.into(),
                        done: p.position_secs,
                        total,
                        unit: "seconds",
                    });
                }
            };
            let said = cmd
                .run(rid, url, temp, cancel, &progress, &|| ctx.space.full_note())
                .await?;
            let duration_secs =
                verify_length(rid, Phase::Record, temp, rec, playback, Some(&said))?;
            let sheet = match (sheet_dir, said.sheet.clone()) {
                (Ok(dir), Some(layout)) => sheet::read(layout, &dir.jpeg()),
                (Err(e), _) => Err(e),
                (Ok(_), None) => Err("bbb-record made no contact sheet (see its log)".into()),
            };
            // A presentation fast mode cannot reproduce is recorded in real time: a success, but
            // one the operator who asked for fast mode should hear of (it takes the whole length).
            if ctx.recorder.fast && said.mode != Some(RecordingMode::Fast) {
                tracing::warn!(
                    record_id = %rid,
                    "recorded in real time, not in fast mode: {}",
                    said.fast_fallback
                        .as_deref()
                        .unwrap_or("bbb-record gave no reason")
                );
            }
            Ok(Produced {
                duration_secs,
                degraded: said.degraded,
                sheet,
                mode: said.mode,
                fast_fallback: said.fast_fallback,
            })
        }
    }
}

/// What the output of `playback` is expected to take on disk at most, before anything is known
/// of its real size (a recording's is known only at the end): a video's `<size>` when the server
/// gives it, else its length (getRecordings' `<length>` rounded up to the next whole minute,
/// else `default_length_secs`) at [`space::RECORDING_BYTES_PER_SEC`], a generous bitrate. Also
/// `doctor`'s estimate of a batch.
pub fn estimated_bytes(rec: &Recording, playback: &Playback, default_length_secs: u64) -> u64 {
    if let Some(size) = playback_format(rec, playback).and_then(|f| f.size_bytes)
        && matches!(playback, Playback::Video(_))
    {
        return size;
    }
    let secs = playback_minutes(rec, playback)
        .map(|m| (m + 1) * 60)
        .or(rec.length_secs())
        .unwrap_or(default_length_secs);
    secs.saturating_mul(space::RECORDING_BYTES_PER_SEC)
}

/// getRecordings' `<length>` (whole minutes) of the playback being converted.
fn playback_minutes(rec: &Recording, playback: &Playback) -> Option<u64> {
    playback_format(rec, playback).and_then(|f| f.length_minutes)
}

/// The `<format>` that `playback` was chosen from (the last of its kind, as `Recording::playback`
/// chooses).
fn playback_format<'r>(rec: &'r Recording, playback: &Playback) -> Option<&'r PlaybackFormat> {
    let kind = match playback {
        Playback::Video(_) => "video",
        Playback::Presentation(_) => "presentation",
    };
    rec.formats
        .iter()
        .rev()
        .find(|f| f.kind == kind && !f.url.is_empty())
}

/// The output is whole and as long as the recording, else the job fails (transient: retried,
/// then dead once its attempts are used up, as the ledger's policy says). Its duration, read
/// from the file's container ([`crate::media::duration`]), must match within
/// [`crate::media::tolerance`] (max(2 s, 1 %)):
/// - for a recording, the length bbb-record set out to record (its started event: the
///   playback's `<playback><duration>` from metadata.xml, in ms) and the length it says it wrote
///   (its done event);
/// - for every output, getRecordings' `<length>`, which only gives whole minutes: the window
///   of [`crate::media::minutes_window`].
fn verify_length(
    rid: &str,
    phase: Phase,
    path: &Path,
    rec: &Recording,
    playback: &Playback,
    said: Option<&RecordOutput>,
) -> Result<f64, JobError> {
    let fail = |m: String| JobError::transient(rid, phase, m);
    let file = crate::media::duration(path).map_err(|e| {
        fail(format!(
            "the output {} is not a whole video file: {e}",
            path.display()
        ))
    })?;
    let exact = said.into_iter().flat_map(|s| {
        [
            s.planned_secs.map(|d| {
                (
                    d,
                    "the recording's length (its metadata, as bbb-record read it)",
                )
            }),
            s.done_secs
                .map(|d| (d, "the length bbb-record reported writing")),
        ]
        .into_iter()
        .flatten()
    });
    for (expected, what) in exact {
        if !crate::media::matches(expected, file) {
            return Err(fail(format!(
                "the output lasts {file:.3} s (read from the file), but {what} is {expected:.3} s: \
                 more than the tolerance of {:.3} s (max(2 s, 1 %)) apart",
                crate::media::tolerance(expected)
            )));
        }
    }
    if let Some(m) = playback_minutes(rec, playback) {
        let (lo, hi) = crate::media::minutes_window(m);
        if file < lo || file > hi {
            return Err(fail(format!(
                "the output lasts {file:.3} s (read from the file), but getRecordings gives the \
                 recording's length as {m} min (whole minutes: {lo:.0} to {hi:.0} s accepted)"
            )));
        }
    }
    Ok(file)
}

async fn place<S: JobStore>(
    ctx: &WorkerContext<S>,
    lease: &Lease,
    rec: &Recording,
    playback: &Playback,
    temp: &Path,
    ext: &str,
    produced: &Produced,
) -> Result<JobOutcome, JobError> {
    let (duration, degraded) = (Some(produced.duration_secs), produced.degraded.as_slice());
    let rid = rec.record_id.as_str();
    // The sheet goes in first, under the lease: a job that fails after this keeps it only until
    // its next success replaces it, and the gallery shows succeeded jobs only.
    let sheet_error = match &produced.sheet {
        Ok(made) => {
            let layout = serde_json::to_string(&made.layout).expect("a sheet serialises");
            match ctx.store.put_sheet(lease, &layout, &made.jpeg).await {
                Ok(()) => None,
                Err(LedgerError::LeaseLost { .. }) => return Ok(JobOutcome::LeaseLost),
                Err(e) => return Err(JobError::transient(rid, Phase::Ledger, e.to_string())),
            }
        }
        Err(why) => {
            tracing::warn!(record_id = %rid, "no contact sheet: {why}");
            Some(why.as_str())
        }
    };
    let output_json = |path: &Path, bytes, degraded: &[String], fast_fallback: Option<&str>| {
        output_json(
            path,
            bytes,
            duration,
            playback,
            degraded,
            sheet_error,
            fast_fallback,
        )
    };
    let perr = |e: PlaceError| JobError::transient(rid, Phase::Place, e.to_string());
    // Placing links or copies the temp file: the placed file has its size.
    let size = std::fs::metadata(temp)
        .map(|m| m.len())
        .map_err(|e| JobError::transient(rid, Phase::Place, format!("{}: {e}", temp.display())))?;
    let stem = slug::file_stem(&rec.name, rec.start_time_ms, ctx.tz);
    let candidates = match &lease.output_path {
        Some(p) => vec![PathBuf::from(p)],
        None => ctx.claim_dir.candidates(&stem, &rec.record_id, ext),
    };
    for dest in candidates {
        // A file we did not reserve (Pod's, another tool's) is never replaced.
        if lease.output_path.is_none() && std::fs::symlink_metadata(&dest).is_ok() {
            continue;
        }
        match ctx
            .store
            .reserve_output(lease, &dest.to_string_lossy())
            .await
        {
            Ok(()) => {}
            Err(LedgerError::OutputTaken(_)) => continue,
            Err(LedgerError::LeaseLost { .. }) => return Ok(JobOutcome::LeaseLost),
            Err(e) => return Err(JobError::transient(rid, Phase::Ledger, e.to_string())),
        }
        // What the file is goes to the checkpoint before it is placed: a worker that dies after
        // placing it and before completing the job leaves that record to the next lease.
        let record = PlacedOutput {
            path: dest.to_string_lossy().into_owned(),
            bytes: size,
            mode: produced.mode,
            fast_fallback: produced.fast_fallback.clone(),
            degraded: produced.degraded.clone(),
            sheet_error: sheet_error.map(str::to_owned),
        };
        match ctx.store.checkpoint(lease, &record.to_checkpoint()).await {
            Ok(()) => {}
            Err(LedgerError::LeaseLost { .. }) => return Ok(JobOutcome::LeaseLost),
            Err(e) => return Err(JobError::transient(rid, Phase::Ledger, e.to_string())),
        }
        // Fence right before the irreversible step: a worker that lost its lease must not place.
        match ctx.store.heartbeat(lease, ctx.lease, None).await {
            Ok(_) => {}
            Err(LedgerError::LeaseLost { .. }) => return Ok(JobOutcome::LeaseLost),
            Err(e) => return Err(JobError::transient(rid, Phase::Ledger, e.to_string())),
        }
        let bytes = match ctx.claim_dir.place(temp, &dest) {
            Ok(b) => b,
            // The name was reserved by an earlier attempt of this very job, whose worker lost
            // its lease between its fence and its rename and placed the same recording after
            // all: keep that file, close the job, and drop ours.
            Err(PlaceError::Exists(p))
                if lease.output_path.as_deref() == Some(&*p.to_string_lossy()) =>
            {
                let bytes = std::fs::metadata(&p).map(|m| m.len()).map_err(|e| {
                    JobError::transient(rid, Phase::Place, format!("{}: {e}", p.display()))
                })?;
                // That file is the earlier attempt's: its mode, defects and reason for real time
                // are the record that attempt checkpointed, read when this lease was claimed
                // (ours replaced it since). Its contact sheet is ours, put in above. Without
                // that record the mode is not known.
                let earlier = PlacedOutput::of_placed(rid, lease.checkpoint.as_deref(), &p, bytes);
                let (output, mode) = match &earlier {
                    Some(e) => (
                        output_json(&p, bytes, &e.degraded, e.fast_fallback.as_deref()),
                        e.mode,
                    ),
                    None => (output_json(&p, bytes, degraded, None), None),
                };
                return match ctx.store.complete(lease, &output, bytes, mode).await {
                    Ok(()) => Ok(JobOutcome::AlreadyPlaced { path: p, bytes }),
                    Err(LedgerError::LeaseLost { .. }) => Ok(JobOutcome::LeaseLost),
                    Err(e) => Err(JobError::transient(rid, Phase::Ledger, e.to_string())),
                };
            }
            Err(PlaceError::Exists(p)) => {
                return Err(JobError::permanent(
                    rid,
                    Phase::Place,
                    format!(
                        "{} appeared after it was reserved; not overwriting it",
                        p.display()
                    ),
                ));
            }
            Err(e) => return Err(perr(e)),
        };
        match register(ctx, lease, &dest, bytes).await {
            Ok(()) => {}
            Err(None) => return Ok(JobOutcome::LeaseLost),
            Err(Some(e)) => return Err(e),
        }
        let output = output_json(&dest, bytes, degraded, produced.fast_fallback.as_deref());
        return match ctx
            .store
            .complete(lease, &output, bytes, produced.mode)
            .await
        {
            Ok(()) => Ok(JobOutcome::Placed { path: dest, bytes }),
            Err(LedgerError::LeaseLost { .. }) => Ok(JobOutcome::LeaseLost),
            Err(e) => Err(JobError::transient(rid, Phase::Ledger, e.to_string())),
        };
    }
    Err(JobError::new(
        rid,
        Phase::Place,
        ErrorClass::Permanent,
        format!(
            "every candidate name for {stem}.{ext} is taken in {}",
            ctx.claim_dir.dir.display()
        ),
    ))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::ledger::sqlite::SqliteLedger;
    use crate::ledger::{NewJob, RetryPolicy, SimulatedClock, TARGET_FILE};
    use crate::progress::PlainReporter;
    use crate::recording::RecordId;

    const RECORD_ID: &str = "ffbfc4cc24428694e8b53a4e144f414052431693-1530718721124";

    /// A published recording of 2018 named `name` with these playback formats.
    fn recording(name: &str, formats: Vec<PlaybackFormat>) -> Recording {
        Recording {
            record_id: RecordId::parse(RECORD_ID).unwrap(),
            meeting_id: String::new(),
            internal_meeting_id: RECORD_ID.into(),
            name: name.into(),
            published: "true".into(),
            state: "published".into(),
            start_time_ms: 1530718721124,
            end_time_ms: None,
            metadata: BTreeMap::new(),
            formats,
        }
    }

    /// The presentation playback at `url`, listed as `minutes` long.
    fn presentation(url: &str, minutes: u64) -> PlaybackFormat {
        PlaybackFormat {
            kind: "presentation".into(),
            url: url.into(),
            length_minutes: Some(minutes),
            size_bytes: None,
        }
    }

    /// A ledger in `dir` on a clock that moves only when told to, and its URL.
    async fn ledger(dir: &Path) -> (Arc<SqliteLedger>, Arc<SimulatedClock>, String) {
        let clock = Arc::new(SimulatedClock::new(1_000_000));
        let url = format!("sqlite://{}", dir.join("l.db").display());
        let store = SqliteLedger::open(&url, clock.clone(), RetryPolicy::default())
            .await
            .unwrap();
        (Arc::new(store), clock, url)
    }

    async fn enqueue(store: &SqliteLedger, recs: &[&Recording]) {
        let jobs: Vec<NewJob> = recs
            .iter()
            .map(|rec| NewJob {
                recording_id: rec.record_id.to_string(),
                target: TARGET_FILE.into(),
                payload: serde_json::to_string(rec).unwrap(),
            })
            .collect();
        store.enqueue(&jobs).await.unwrap();
    }

    /// A worker of `store` with its claim and temp directories in `dir`, recording with the
    /// stand-in of recorder.rs (written into `dir`) under leases of `lease`; and the sender of
    /// its shutdown, which must outlive its run (a dropped sender reads as a shutdown).
    fn context(
        store: &Arc<SqliteLedger>,
        dir: &Path,
        lease: Duration,
    ) -> (WorkerContext<SqliteLedger>, watch::Sender<bool>) {
        let claim_dir = ClaimDir {
            dir: dir.join("claim"),
            temp_dir: dir.join("tmp"),
        };
        std::fs::create_dir_all(&claim_dir.dir).unwrap();
        std::fs::create_dir_all(&claim_dir.temp_dir).unwrap();
        let (shutdown_tx, shutdown) = watch::channel(false);
        let ctx = WorkerContext {
            store: store.clone(),
            claim_dir,
            tz: Tz::UTC,
            rewrite_23: true,
            recorder: RecorderSettings {
                program: Some(recorder::tests::stand_in(dir)),
                format: OutputFormat::Mp4,
                timeout_factor: 1.5,
                timeout_margin_secs: 600,
                default_length_secs: 60,
                grace: Duration::from_millis(300),
                accept_broken: false,
                fast: false,
            },
            download: DownloadSettings {
                stall: Duration::from_secs(5),
                retries: 0,
                retry_delay: Duration::from_millis(10),
                hosts: PlaybackHosts::default(),
            },
            // Not about disk space: no directory is measured, whatever this machine has free.
            space: SpaceSettings {
                dirs: Vec::new(),
                margin: 0,
                poll: Duration::from_millis(100),
            },
            lease,
            worker_name: "w1".into(),
            reporter: Arc::new(PlainReporter),
            api: None,
            shutdown,
            wait: false,
            registration: None,
            playback_hosts: PlaybackHosts::new(Some("http://bbb.test/"), &[]).unwrap(),
            adoptable: Mutex::new(Default::default()),
        };
        (ctx, shutdown_tx)
    }

    #[test]
    fn a_videos_size_is_its_estimate_and_a_presentation_is_estimated_from_its_length() {
        let format = |kind: &str, minutes, size| PlaybackFormat {
            kind: kind.into(),
            url: format!("https://bbb.test/{kind}"),
            length_minutes: Some(minutes),
            size_bytes: size,
        };
        let rec = recording(
            "Sizes",
            vec![
                format("video", 10, Some(123_456_789)),
                // The presentation's <size> is that of its slides and media, not of a video.
                format("presentation", 10, Some(1_000)),
            ],
        );
        let video = Playback::Video("https://bbb.test/video".into());
        let presentation = Playback::Presentation("https://bbb.test/presentation".into());
        assert_eq!(estimated_bytes(&rec, &video, 60), 123_456_789);
        let eleven_minutes = 11 * 60 * space::RECORDING_BYTES_PER_SEC;
        assert_eq!(estimated_bytes(&rec, &presentation, 60), eleven_minutes);
        let mut old_server = rec.clone();
        old_server.formats[0].size_bytes = None;
        assert_eq!(estimated_bytes(&old_server, &video, 60), eleven_minutes);
    }

    /// A worker whose lease is taken over stops its recorder's whole process group, writes
    /// nothing more to the ledger and leaves no temp files. The recorder here is the
    /// purpose-written stand-in of recorder.rs (mode "hang": it never finishes).
    #[tokio::test]
    async fn lease_loss_kills_the_recorder_and_fences_the_worker() {
        let dir = tempfile::tempdir().unwrap();
        let (store, clock, _) = ledger(dir.path()).await;
        let id = RECORD_ID;
        let rec = recording(
            "Hang",
            // The stand-in takes its mode from the URL's last segment.
            vec![presentation("http://bbb.test/hang", 60)],
        );
        enqueue(&store, &[&rec]).await;
        let (ctx, _shutdown_tx) = context(&store, dir.path(), Duration::from_millis(600));
        let claim_dir = ctx.claim_dir.clone();
        let ctx = Arc::new(ctx);
        let pool = tokio::spawn(run_pool(ctx, 1, vec![id.to_owned()]));
        // Wait for the stand-in to run (it writes its grandchild's pid next to its output).
        let pid_file = claim_dir
            .temp_path(&rec.record_id, 1, "mp4")
            .with_extension("mp4.grandchild");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::read_to_string(&pid_file).map_or(true, |p| !p.ends_with('\n')) {
            assert!(Instant::now() < deadline, "the recorder never started");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let grandchild = std::fs::read_to_string(&pid_file).unwrap();
        // Another worker takes the job over once the lease has expired on the ledger's clock.
        clock.advance(Duration::from_secs(60));
        let other = store
            .claim("w2", Duration::from_secs(600), None)
            .await
            .unwrap()
            .expect("takeover");
        assert_eq!(other.epoch, 2);
        let reports = tokio::time::timeout(Duration::from_secs(10), pool)
            .await
            .expect("worker stopped")
            .unwrap();
        assert!(
            matches!(reports[0].outcome, JobOutcome::LeaseLost),
            "{:?}",
            reports[0].outcome
        );
        // The stale worker wrote nothing: the job is still the new holder's.
        let rows = store.jobs().await.unwrap();
        assert_eq!(rows[0].state, JobState::Running);
        assert_eq!(rows[0].lease_epoch, 2);
        assert_eq!(rows[0].last_error, None);
        assert!(
            !claim_dir.job_dir(&rec.record_id, 1).exists(),
            "temp files left"
        );
        assert!(
            recorder::tests::gone_pid(&grandchild),
            "recorder group still running"
        );
    }

    /// A worker that dies after placing its file and before completing the job leaves the job
    /// to the next lease, which finds the file in place and completes the job with the record
    /// the dead worker checkpointed before placing: the mode bbb-record used, the defects and the
    /// reason for real time, as bbb-record said them. A file whose worker left no such record (an
    /// older bbb-migrate) is completed with no mode and no defects.
    #[tokio::test]
    async fn a_file_placed_by_a_worker_that_died_is_completed_with_its_mode_and_defects() {
        let dir = tempfile::tempdir().unwrap();
        let (store, clock, url) = ledger(dir.path()).await;
        // The stand-in copies this 8 s video and reports the mode its URL's last segment names.
        let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join(
            "../samples/recordings/video/b52a07e307e4ae680c470b70ae91cdfe83b3eda3-1767268800000/video-0.m4v",
        );
        std::fs::copy(&sample, dir.path().join("sample.mp4")).unwrap();
        let rec = |id: &str, name: &str, how: &str| Recording {
            record_id: RecordId::parse(id).unwrap(),
            ..recording(
                name,
                vec![presentation(&format!("http://bbb.test/{id}/{how}"), 1)],
            )
        };
        let fast = rec("rec-fast", "Fast", "sample-fast");
        let fallback = rec("rec-fallback", "Fallback", "sample-fast-fallback");
        let older = rec("rec-older", "Older", "sample-fast");
        enqueue(&store, &[&fast, &fallback, &older]).await;
        let (mut ctx, _shutdown_tx) = context(&store, dir.path(), Duration::from_secs(60));
        ctx.recorder.fast = true;
        ctx.recorder.accept_broken = true;
        let ctx = Arc::new(ctx);
        let ids: Vec<String> = [&fast, &fallback, &older]
            .iter()
            .map(|r| r.record_id.to_string())
            .collect();

        // The ledger refuses every completion: each worker places its file and writes nothing
        // more of it, as if it had died right then.
        let db = sqlx::SqlitePool::connect(&url).await.unwrap();
        sqlx::query(
            "CREATE TRIGGER died BEFORE UPDATE OF state ON job WHEN NEW.state = 'succeeded'
             BEGIN SELECT RAISE(ABORT, 'the worker died before completing'); END",
        )
        .execute(&db)
        .await
        .unwrap();
        let died = run_pool(ctx.clone(), 1, ids.clone()).await;
        assert_eq!(died.len(), 3);
        for r in &died {
            assert!(
                matches!(
                    r.outcome,
                    JobOutcome::Failed {
                        state: JobState::Pending,
                        ..
                    }
                ),
                "{r:?}"
            );
        }
        for row in store.jobs().await.unwrap() {
            let path = row.output_path.expect("reserved");
            assert!(Path::new(&path).is_file(), "{path} not placed");
        }
        // A worker of a bbb-migrate that kept no record placed this one.
        sqlx::query("UPDATE job SET checkpoint = NULL WHERE recording_id = 'rec-older'")
            .execute(&db)
            .await
            .unwrap();
        sqlx::query("DROP TRIGGER died").execute(&db).await.unwrap();
        db.close().await;

        clock.advance(Duration::from_secs(3600));
        let next = run_pool(ctx, 1, ids).await;
        assert_eq!(next.len(), 3);
        for r in &next {
            assert!(
                matches!(r.outcome, JobOutcome::AlreadyPlaced { .. }),
                "{r:?}"
            );
        }
        let rows = store.jobs().await.unwrap();
        let row = |id: &str| rows.iter().find(|r| r.recording_id == id).unwrap();
        let (f, b, o) = (row("rec-fast"), row("rec-fallback"), row("rec-older"));
        assert!([f, b, o].iter().all(|r| r.state == JobState::Succeeded));
        assert_eq!(f.recording_mode, Some(RecordingMode::Fast));
        assert_eq!(f.degraded(), ["slide-2.png is missing"]);
        assert_eq!(f.fast_fallback(), None);
        assert_eq!(b.recording_mode, Some(RecordingMode::RealTime));
        assert!(b.degraded().is_empty());
        assert_eq!(b.fast_fallback().as_deref(), Some("a screen share"));
        let sheet_error = |r: &crate::ledger::JobRow| {
            let v: serde_json::Value = serde_json::from_str(r.output.as_deref().unwrap()).unwrap();
            v["sheet_error"].as_str().map(str::to_owned)
        };
        let no_sheet = "bbb-record made no contact sheet (see its log)";
        assert_eq!(sheet_error(f).as_deref(), Some(no_sheet));
        assert_eq!(o.recording_mode, None);
        assert!(o.degraded().is_empty());
        assert_eq!((o.fast_fallback(), sheet_error(o)), (None, None));
        for r in [f, b, o] {
            let d = r.duration_secs().expect("length read from the placed file");
            assert!(crate::media::matches(8.0, d), "{d}");
        }
    }
}
