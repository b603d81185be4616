//! The job ledger: one row per (recordID, target) with state, lease, fencing epoch, retries and the
//! placed output. Owns the claim/lease/fence protocol (design/ledger.md) behind the `JobStore`
//! trait so that a PostgreSQL backend can join the SQLite one without changing callers. Never
//! touches files or the network.

pub mod any;
pub mod fence;
pub mod postgres;
pub mod schema;
pub mod sqlite;

use std::future::Future;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use bbb_common::recorder_protocol::RecordingMode;

use crate::error::ErrorClass;

/// Time source of the store, injectable so tests can expire leases without sleeping.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now_ms(&self) -> i64;
}

#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        chrono::Utc::now().timestamp_millis()
    }
}

/// A clock that only moves when told to.
#[derive(Debug)]
pub struct SimulatedClock(AtomicI64);

impl SimulatedClock {
    pub fn new(start_ms: i64) -> Self {
        SimulatedClock(AtomicI64::new(start_ms))
    }
    pub fn advance(&self, d: Duration) {
        self.0.fetch_add(d.as_millis() as i64, Ordering::SeqCst);
    }
}

impl Clock for SimulatedClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum JobState {
    Pending,
    Running,
    Succeeded,
    Dead,
    Cancelled,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Dead => "dead",
            JobState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => JobState::Pending,
            "running" => JobState::Running,
            "succeeded" => JobState::Succeeded,
            "dead" => JobState::Dead,
            "cancelled" => JobState::Cancelled,
            _ => return None,
        })
    }
}

/// The claim-directory target; `pod` and `moodle` come with the import mode.
pub const TARGET_FILE: &str = "file";

#[derive(Debug, Clone)]
pub struct NewJob {
    pub recording_id: String,
    pub target: String,
    /// The recording as JSON, so any worker can run the job from the ledger alone.
    pub payload: String,
}

/// A held lease. Every write made under it is fenced by `epoch`.
#[derive(Debug, Clone)]
pub struct Lease {
    pub job_id: i64,
    pub recording_id: String,
    pub target: String,
    pub epoch: i64,
    pub attempts: i64,
    pub max_attempts: i64,
    pub payload: String,
    pub checkpoint: Option<String>,
    /// The output file name reserved by an earlier attempt, if any.
    pub output_path: Option<String>,
}

/// One ledger row, for `list`, `status` and the summary.
#[derive(Debug, Clone)]
pub struct JobRow {
    pub id: i64,
    pub recording_id: String,
    pub target: String,
    pub state: JobState,
    pub attempts: i64,
    pub max_attempts: i64,
    pub run_after_ms: i64,
    pub lease_epoch: i64,
    pub last_error: Option<String>,
    pub error_class: Option<String>,
    pub output_path: Option<String>,
    /// What the worker recorded of the placed output (JSON: path, bytes, kind, source,
    /// `degraded`, the picture's defects when it was recorded with `accept_broken`, and
    /// `fast_fallback`, why it was recorded in real time although `[recorder] fast` was set).
    pub output: Option<String>,
    pub output_bytes: Option<i64>,
    /// How the placed output's picture was captured (`recording_mode`); `None` for a download,
    /// an import, or when it is not known (outputs placed before the ledger kept it).
    pub recording_mode: Option<RecordingMode>,
    pub finished_at_ms: Option<i64>,
    /// Sum of the durations of all attempts (machine time).
    pub busy_ms: i64,
    /// The phase of the last failure (`fetch`, `download`, `record`, `place`, `import`...).
    pub error_phase: Option<String>,
    /// When a person flagged the placed output as wrong (it waits for `retry --flagged`).
    pub flagged_at_ms: Option<i64>,
    pub flag_note: Option<String>,
}

/// One attempt at a job (`job_attempt`), for a recording's history. Both backends select its
/// columns under these names.
#[derive(Debug, Clone, PartialEq, serde::Serialize, sqlx::FromRow)]
pub struct Attempt {
    pub epoch: i64,
    pub worker: String,
    pub started_ms: i64,
    pub ended_ms: Option<i64>,
    /// `succeeded`, `permanent`, `transient`, `released`; `None` while it runs (or when its
    /// worker died and the lease was taken over).
    pub outcome: Option<String>,
    pub error: Option<String>,
}

/// A succeeded job as the gallery shows it: the recording (payload), its output and its
/// contact sheet's layout (the picture itself is read on demand, [`JobStore::sheet`]). Both
/// backends select its columns under these names.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PlacedJob {
    pub id: i64,
    pub recording_id: String,
    pub target: String,
    /// The recording as JSON (name, start time, metadata: see `crate::recording::Recording`).
    pub payload: String,
    pub output: Option<String>,
    pub output_path: Option<String>,
    pub output_bytes: Option<i64>,
    /// `real_time`, `fast`, or `None` (see [`JobRow::recording_mode`]).
    pub recording_mode: Option<String>,
    pub finished_at_ms: Option<i64>,
    pub flagged_at_ms: Option<i64>,
    pub flag_note: Option<String>,
    /// The contact sheet's layout (JSON, `bbb_common::recorder_protocol::ContactSheet`).
    pub sheet_layout: Option<String>,
}

impl JobRow {
    fn output_value(&self) -> Option<serde_json::Value> {
        serde_json::from_str(self.output.as_deref()?).ok()
    }

    /// The placed output's length in seconds, read from the file when it was placed (`None`
    /// for outputs recorded before the ledger kept it).
    pub fn duration_secs(&self) -> Option<f64> {
        self.output_value()?.get("duration_secs")?.as_f64()
    }

    /// The defects of a placed recording made with `accept_broken` (empty otherwise).
    pub fn degraded(&self) -> Vec<String> {
        self.output_value()
            .and_then(|v| {
                v.get("degraded")?.as_array().map(|a| {
                    a.iter()
                        .filter_map(|d| d.as_str().map(str::to_owned))
                        .collect()
                })
            })
            .unwrap_or_default()
    }

    /// Why a recording made with `[recorder] fast` was captured in real time instead, as
    /// bbb-record said it (`None` when fast mode was used or not asked for).
    pub fn fast_fallback(&self) -> Option<String> {
        Some(
            self.output_value()?
                .get("fast_fallback")?
                .as_str()?
                .to_owned(),
        )
    }
}

/// The mode a `recording_mode` column holds; any other text is a ledger this build cannot read.
pub(crate) fn parse_recording_mode(text: Option<String>) -> LedgerResult<Option<RecordingMode>> {
    let Some(text) = text else { return Ok(None) };
    [RecordingMode::RealTime, RecordingMode::Fast]
        .into_iter()
        .find(|m| m.as_str() == text)
        .map(Some)
        .ok_or_else(|| LedgerError::Corrupt(format!("unknown recording mode {text:?}")))
}

/// A job held by some worker on some host, as `status` shows it.
#[derive(Debug, Clone)]
pub struct RunningJob {
    pub recording_id: String,
    pub target: String,
    pub owner: Option<String>,
    pub epoch: i64,
    pub checkpoint: Option<String>,
    /// The last progress its worker reported with a heartbeat (JSON, see [`Progress`]).
    pub progress: Option<String>,
    pub since_ms: Option<i64>,
    pub heartbeat_ms: Option<i64>,
    /// When the lease runs out unless renewed (unix ms, the ledger's clock): when another host
    /// may take the job over if its holder is dead.
    pub lease_expires_ms: Option<i64>,
    /// The lease has run out: the holder is presumed dead and the job will be taken over.
    pub expired: bool,
}

/// How far a running job is, as stored in the ledger with the heartbeats: media seconds
/// recorded (from `bbb-record --progress json`) or bytes downloaded.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Progress {
    /// `seconds` or `bytes`.
    pub unit: ProgressUnit,
    pub done: f64,
    pub total: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProgressUnit {
    Seconds,
    Bytes,
}

impl Progress {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("progress serialises")
    }

    pub fn parse(json: &str) -> Option<Progress> {
        serde_json::from_str(json).ok()
    }

    /// Done as a percentage of the total, when the total is known.
    pub fn percent(&self) -> Option<f64> {
        self.total
            .filter(|t| *t > 0.0)
            .map(|t| (self.done / t * 100.0).clamp(0.0, 100.0))
    }
}

impl std::fmt::Display for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.unit {
            ProgressUnit::Seconds => {
                write!(f, "media {:.1} s", self.done)?;
                if let Some(t) = self.total {
                    write!(f, " of {t:.1} s")?;
                }
            }
            ProgressUnit::Bytes => {
                write!(f, "{} bytes", self.done as u64)?;
                if let Some(t) = self.total {
                    write!(f, " of {}", t as u64)?;
                }
            }
        }
        if let Some(p) = self.percent() {
            write!(f, " ({p:.0} %)")?;
        }
        Ok(())
    }
}

/// What `retry` and `--force` put back into `pending`.
#[derive(Debug, Clone)]
pub enum Requeue {
    /// `dead` and `cancelled` jobs (optionally only these recordings).
    Failed(Option<Vec<String>>),
    /// These recordings, whatever their state except `running`.
    Recordings(Vec<String>),
    /// `succeeded` jobs of these recordings: redo the work (`--force`); the name reservation is
    /// dropped so the placement never overwrites the earlier file.
    Force(Vec<String>),
    /// The flagged `succeeded` jobs (optionally only these recordings), redone like `Force`; the
    /// flag goes with the redo.
    Flagged(Option<Vec<String>>),
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The lease was taken over (or the job finished elsewhere): write nothing more.
    #[error("lease lost on job {job_id} (epoch {epoch}): another worker owns it now")]
    LeaseLost { job_id: i64, epoch: i64 },
    #[error("output name {0} is already owned by another recording")]
    OutputTaken(String),
    /// The database could not be opened or migrated.
    #[error("ledger {url}: {source}")]
    Open {
        url: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A statement failed; the text is the whole chain of causes, as before.
    #[error("ledger: {}", crate::api::error_chain(.0))]
    Db(#[source] sqlx::Error),
    /// The ledger holds or was given something this build cannot use (not a database error).
    #[error("ledger: {0}")]
    Corrupt(String),
    /// The ledger was made by an older bbb-migrate and lacks these migrations of this one: a
    /// reader cannot read it before a writing command (`claim`, `import`, `retry`, `serve`)
    /// applies them.
    #[error(
        "ledger: made by an older bbb-migrate, schema migration(s) {0:?} of this version not \
         applied yet: the next `claim`, `import`, `retry` or `serve` applies them"
    )]
    SchemaBehind(Vec<i64>),
}

impl From<sqlx::Error> for LedgerError {
    fn from(e: sqlx::Error) -> Self {
        LedgerError::Db(e)
    }
}

impl LedgerError {
    /// Whether the database itself could not be reached (network, TLS, pool timeout), judged
    /// from the typed source rather than from the message.
    pub fn is_unreachable(&self) -> bool {
        let sqlx_err = match self {
            LedgerError::Db(e) => Some(e),
            LedgerError::Open { source, .. } => source.downcast_ref::<sqlx::Error>(),
            _ => None,
        };
        matches!(
            sqlx_err,
            Some(sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_))
        )
    }
}

#[cfg(test)]
mod ledger_error_tests {
    use super::*;

    #[test]
    fn connection_refused_is_unreachable_from_the_typed_source() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let e = LedgerError::from(sqlx::Error::Io(io));
        assert!(e.is_unreachable());
        assert_eq!(
            e.to_string(),
            format!(
                "ledger: {}",
                crate::api::error_chain(match &e {
                    LedgerError::Db(s) => s,
                    _ => unreachable!(),
                })
            )
        );
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let open = LedgerError::Open {
            url: "postgres://db/x".into(),
            source: Box::new(sqlx::Error::Io(io)),
        };
        assert!(open.is_unreachable());
        assert!(!LedgerError::Corrupt("unknown job state \"x\"".into()).is_unreachable());
        assert!(!LedgerError::from(sqlx::Error::RowNotFound).is_unreachable());
    }
}

/// Retry schedule: exponential with jitter, capped.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub max_attempts: i64,
    pub base: Duration,
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base: Duration::from_secs(30),
            cap: Duration::from_secs(3600),
        }
    }
}

impl RetryPolicy {
    /// Delay before attempt `attempts + 1`: base * 2^(attempts-1), ±25 % jitter so that a batch
    /// that failed together (server down) does not come back all at once.
    pub fn backoff(&self, attempts: i64) -> Duration {
        let exp = (attempts.max(1) - 1).min(20) as u32;
        let raw = self
            .base
            .saturating_mul(2u32.saturating_pow(exp))
            .min(self.cap);
        let jitter: f64 = rand::random_range(0.75..1.25);
        raw.mul_f64(jitter)
    }
}

pub type LedgerResult<T> = Result<T, LedgerError>;

/// The claim/lease/fence protocol. Every method that takes a `Lease` is fenced: it affects nothing
/// and returns `LeaseLost` when the epoch is no longer current.
pub trait JobStore: Send + Sync + 'static {
    /// Idempotent: an existing (recording, target) keeps its state; a pending one gets the fresh
    /// payload (new token URLs). Returns how many jobs were new.
    fn enqueue(&self, jobs: &[NewJob]) -> impl Future<Output = LedgerResult<u64>> + Send;
    /// Takes the next runnable job, or takes over one whose lease expired. `only` restricts the
    /// claim to these recordings (the current selection).
    fn claim(
        &self,
        worker: &str,
        lease: Duration,
        only: Option<&[String]>,
    ) -> impl Future<Output = LedgerResult<Option<Lease>>> + Send;
    /// [`claim`](JobStore::claim) restricted to one target too (`file` for `claim`, `pod` for
    /// `import`): a command never takes another command's job of the same recording.
    fn claim_target(
        &self,
        worker: &str,
        lease: Duration,
        only: Option<&[String]>,
        target: Option<&str>,
    ) -> impl Future<Output = LedgerResult<Option<Lease>>> + Send;
    /// Renews the lease and, when given, stores the job's progress (JSON, see [`Progress`]) in the
    /// same fenced statement; returns `cancel_requested`.
    fn heartbeat(
        &self,
        lease: &Lease,
        dur: Duration,
        progress: Option<&str>,
    ) -> impl Future<Output = LedgerResult<bool>> + Send;
    fn checkpoint(
        &self,
        lease: &Lease,
        data: &str,
    ) -> impl Future<Output = LedgerResult<()>> + Send;
    /// Reserves the output file name for this job (unique across the ledger).
    fn reserve_output(
        &self,
        lease: &Lease,
        path: &str,
    ) -> impl Future<Output = LedgerResult<()>> + Send;
    /// Closes the job as succeeded with its placed output (`output`: JSON, see
    /// [`JobRow::output`]) and `mode`, how a recording's picture was captured (`None` for a
    /// download or an import, and when it is not known).
    fn complete(
        &self,
        lease: &Lease,
        output: &str,
        bytes: u64,
        mode: Option<RecordingMode>,
    ) -> impl Future<Output = LedgerResult<()>> + Send;
    /// Records a failure in `phase` (`fetch`, `record`, `import`...); returns the new state
    /// (`pending` with backoff, or `dead`).
    fn fail(
        &self,
        lease: &Lease,
        class: ErrorClass,
        phase: &str,
        error: &str,
    ) -> impl Future<Output = LedgerResult<JobState>> + Send;
    /// Stores the contact sheet of the output this lease is about to complete (replacing an
    /// earlier one of the job): `layout` is its JSON, `jpeg` the picture.
    fn put_sheet(
        &self,
        lease: &Lease,
        layout: &str,
        jpeg: &[u8],
    ) -> impl Future<Output = LedgerResult<()>> + Send;
    /// The contact sheet of a job: its layout and its JPEG.
    fn sheet(
        &self,
        job_id: i64,
    ) -> impl Future<Output = LedgerResult<Option<(String, Vec<u8>)>>> + Send;
    /// Flags the succeeded job of a recording as wrong, with a note (`Some`), or clears the
    /// flag (`None`); returns whether a succeeded job was there.
    fn flag(
        &self,
        recording_id: &str,
        target: &str,
        note: Option<&str>,
    ) -> impl Future<Output = LedgerResult<bool>> + Send;
    /// The attempts at a job, oldest first.
    fn attempts(&self, job_id: i64) -> impl Future<Output = LedgerResult<Vec<Attempt>>> + Send;
    /// The succeeded jobs, with their recording and contact-sheet layout, for the gallery.
    fn placed(&self) -> impl Future<Output = LedgerResult<Vec<PlacedJob>>> + Send;
    /// Gives the job back without consuming an attempt (Ctrl-C).
    fn release(&self, lease: &Lease) -> impl Future<Output = LedgerResult<()>> + Send;
    /// Cancels a pending job, or asks the worker of a running one to stop.
    fn cancel(
        &self,
        recording_id: &str,
        target: &str,
    ) -> impl Future<Output = LedgerResult<bool>> + Send;
    /// Ends the lease of a running job now, if `owner` still holds it at `epoch`: its worker is
    /// known to be dead (a killed process of this host), so the job need not wait for the lease
    /// to run out before it is taken over. Fenced like every write: a job taken over meanwhile
    /// is left alone.
    fn expire_lease(
        &self,
        recording_id: &str,
        target: &str,
        owner: &str,
        epoch: i64,
    ) -> impl Future<Output = LedgerResult<bool>> + Send;
    /// Moves to `dead` the expired running jobs that have no attempt left.
    fn sweep(&self) -> impl Future<Output = LedgerResult<u64>> + Send;
    /// How many jobs of the selection `only` (all when `None`) and of `target` (every target
    /// when `None`) are not finished yet (`pending` or `running`): what a `claim` or `import` run
    /// waits for. The target matters: a recording's `pod` job must not keep a `claim` run waiting.
    fn unfinished(
        &self,
        only: Option<&[String]>,
        target: Option<&str>,
    ) -> impl Future<Output = LedgerResult<u64>> + Send;
    /// The running jobs of every worker on every host, for `status`.
    fn running(&self) -> impl Future<Output = LedgerResult<Vec<RunningJob>>> + Send;
    fn requeue(&self, what: &Requeue) -> impl Future<Output = LedgerResult<u64>> + Send;
    fn jobs(&self) -> impl Future<Output = LedgerResult<Vec<JobRow>>> + Send;
    fn close(&self) -> impl Future<Output = ()> + Send;
}

#[cfg(test)]
mod conformance;
