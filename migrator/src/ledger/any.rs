//! The backend chosen by `[ledger] url`: `sqlite:` for one machine, `postgres://` (or
//! `postgresql://`) for several hosts sharing one database. A plain enum rather than `dyn`,
//! because `JobStore` has async methods; each call is forwarded unchanged.

use std::sync::Arc;
use std::time::Duration;

use bbb_common::recorder_protocol::RecordingMode;

use super::postgres::PgLedger;
use super::sqlite::SqliteLedger;
use super::{
    Attempt, Clock, JobRow, JobState, JobStore, Lease, LedgerError, LedgerResult, NewJob,
    PlacedJob, Requeue, RetryPolicy, RunningJob,
};
use crate::error::ErrorClass;

#[derive(Debug, Clone)]
pub enum AnyLedger {
    Sqlite(SqliteLedger),
    Postgres(PgLedger),
}

/// Which backend a URL names; the error never repeats the URL (it may hold a password).
pub fn is_postgres(url: &str) -> LedgerResult<bool> {
    if url.starts_with("sqlite:") {
        Ok(false)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(true)
    } else {
        let scheme = url.split(':').next().unwrap_or("");
        Err(LedgerError::Corrupt(format!(
            "[ledger] url: unsupported scheme {scheme:?} (use sqlite://FILE or postgres://USER@HOST/DB)"
        )))
    }
}

impl AnyLedger {
    /// Opens for writing and applies the migrations of the chosen backend. `clock` is used by
    /// SQLite only: PostgreSQL leases follow the database clock.
    pub async fn open(url: &str, clock: Arc<dyn Clock>, policy: RetryPolicy) -> LedgerResult<Self> {
        if is_postgres(url)? {
            Ok(AnyLedger::Postgres(PgLedger::open(url, policy).await?))
        } else {
            Ok(AnyLedger::Sqlite(
                SqliteLedger::open(url, clock, policy).await?,
            ))
        }
    }

    /// Opens without writing anything (`list`, `status`, `--dry-run`). A ledger whose schema is
    /// behind this build's is refused ([`LedgerError::SchemaBehind`]): its statements would
    /// name columns it does not have yet.
    pub async fn open_read_only(url: &str, clock: Arc<dyn Clock>) -> LedgerResult<Self> {
        let ledger = if is_postgres(url)? {
            AnyLedger::Postgres(PgLedger::open_read_only(url).await?)
        } else {
            AnyLedger::Sqlite(SqliteLedger::open_read_only(url, clock).await?)
        };
        let versions = ledger.schema_versions().await?;
        // No migration at all: an empty database, which reads as an empty ledger.
        if !versions.applied.is_empty() && !versions.pending().is_empty() {
            ledger.close().await;
            return Err(LedgerError::SchemaBehind(versions.pending()));
        }
        Ok(ledger)
    }
}

impl AnyLedger {
    /// The migration versions of the database and of this build (`doctor`).
    pub async fn schema_versions(&self) -> LedgerResult<super::schema::SchemaVersions> {
        match self {
            AnyLedger::Sqlite(l) => l.schema_versions().await,
            AnyLedger::Postgres(l) => l.schema_versions().await,
        }
    }

    /// The database clock in epoch milliseconds where leases follow it (PostgreSQL); `None` for
    /// SQLite, whose leases follow this host's clock.
    pub async fn database_now_ms(&self) -> LedgerResult<Option<i64>> {
        match self {
            AnyLedger::Sqlite(_) => Ok(None),
            AnyLedger::Postgres(l) => l.db_now_ms().await.map(Some),
        }
    }
}

macro_rules! forward {
    ($self:ident, $l:ident => $e:expr) => {
        match $self {
            AnyLedger::Sqlite($l) => $e.await,
            AnyLedger::Postgres($l) => $e.await,
        }
    };
}

impl JobStore for AnyLedger {
    async fn enqueue(&self, jobs: &[NewJob]) -> LedgerResult<u64> {
        forward!(self, l => l.enqueue(jobs))
    }
    async fn claim(
        &self,
        worker: &str,
        lease: Duration,
        only: Option<&[String]>,
    ) -> LedgerResult<Option<Lease>> {
        forward!(self, l => l.claim(worker, lease, only))
    }
    async fn claim_target(
        &self,
        worker: &str,
        lease: Duration,
        only: Option<&[String]>,
        target: Option<&str>,
    ) -> LedgerResult<Option<Lease>> {
        forward!(self, l => l.claim_target(worker, lease, only, target))
    }
    async fn heartbeat(
        &self,
        lease: &Lease,
        dur: Duration,
        progress: Option<&str>,
    ) -> LedgerResult<bool> {
        forward!(self, l => l.heartbeat(lease, dur, progress))
    }
    async fn checkpoint(&self, lease: &Lease, data: &str) -> LedgerResult<()> {
        forward!(self, l => l.checkpoint(lease, data))
    }
    async fn reserve_output(&self, lease: &Lease, path: &str) -> LedgerResult<()> {
        forward!(self, l => l.reserve_output(lease, path))
    }
    async fn complete(
        &self,
        lease: &Lease,
        output: &str,
        bytes: u64,
        mode: Option<RecordingMode>,
    ) -> LedgerResult<()> {
        forward!(self, l => l.complete(lease, output, bytes, mode))
    }
    async fn fail(
        &self,
        lease: &Lease,
        class: ErrorClass,
        phase: &str,
        error: &str,
    ) -> LedgerResult<JobState> {
        forward!(self, l => l.fail(lease, class, phase, error))
    }
    async fn put_sheet(&self, lease: &Lease, layout: &str, jpeg: &[u8]) -> LedgerResult<()> {
        forward!(self, l => l.put_sheet(lease, layout, jpeg))
    }
    async fn sheet(&self, job_id: i64) -> LedgerResult<Option<(String, Vec<u8>)>> {
        forward!(self, l => l.sheet(job_id))
    }
    async fn flag(
        &self,
        recording_id: &str,
        target: &str,
        note: Option<&str>,
    ) -> LedgerResult<bool> {
        forward!(self, l => l.flag(recording_id, target, note))
    }
    async fn attempts(&self, job_id: i64) -> LedgerResult<Vec<Attempt>> {
        forward!(self, l => l.attempts(job_id))
    }
    async fn placed(&self) -> LedgerResult<Vec<PlacedJob>> {
        forward!(self, l => l.placed())
    }
    async fn release(&self, lease: &Lease) -> LedgerResult<()> {
        forward!(self, l => l.release(lease))
    }
    async fn cancel(&self, recording_id: &str, target: &str) -> LedgerResult<bool> {
        forward!(self, l => l.cancel(recording_id, target))
    }
    async fn expire_lease(
        &self,
        recording_id: &str,
        target: &str,
        owner: &str,
        epoch: i64,
    ) -> LedgerResult<bool> {
        forward!(self, l => l.expire_lease(recording_id, target, owner, epoch))
    }
    async fn sweep(&self) -> LedgerResult<u64> {
        forward!(self, l => l.sweep())
    }
    async fn unfinished(&self, only: Option<&[String]>, target: Option<&str>) -> LedgerResult<u64> {
        forward!(self, l => l.unfinished(only, target))
    }
    async fn running(&self) -> LedgerResult<Vec<RunningJob>> {
        forward!(self, l => l.running())
    }
    async fn requeue(&self, what: &Requeue) -> LedgerResult<u64> {
        forward!(self, l => l.requeue(what))
    }
    async fn jobs(&self) -> LedgerResult<Vec<JobRow>> {
        forward!(self, l => l.jobs())
    }
    async fn close(&self) {
        forward!(self, l => l.close())
    }
}
