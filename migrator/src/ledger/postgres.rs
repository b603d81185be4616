//! PostgreSQL backend of the ledger: one database shared by every encoding server. Each write is a
//! single autocommit statement, so no transaction or row lock outlives a statement while a job
//! runs for hours; the lease (`lease_expires_at`) is the long-lived lock. Claims use
//! `FOR UPDATE SKIP LOCKED`, and every lease time is computed and compared with the database clock
//! (`now()`) only: worker clocks never enter the protocol. The schema is created and upgraded by
//! the versioned migrations in `migrations/postgres` (sqlx takes an advisory lock, so several
//! hosts starting at once apply them once).

use std::time::Duration;

use bbb_common::recorder_protocol::RecordingMode;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Row};

use super::{
    Attempt, JobRow, JobState, JobStore, Lease, LedgerError, LedgerResult, NewJob, PlacedJob,
    Requeue, RetryPolicy, RunningJob,
};
use crate::error::ErrorClass;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// Epoch milliseconds of a TIMESTAMPTZ expression, so `JobRow` is the same on both backends.
macro_rules! ms {
    ($col:literal) => {
        concat!("(extract(epoch FROM ", $col, ") * 1000)::bigint")
    };
}

#[derive(Debug, Clone)]
pub struct PgLedger {
    pool: PgPool,
    policy: RetryPolicy,
}

fn open_err(url: &str, e: impl std::error::Error + Send + Sync + 'static) -> LedgerError {
    LedgerError::Open {
        url: bbb_common::redact::url_text(url),
        source: Box::new(e),
    }
}

fn lost(lease: &Lease) -> LedgerError {
    LedgerError::LeaseLost {
        job_id: lease.job_id,
        epoch: lease.epoch,
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl PgLedger {
    /// Connects and applies the migrations (creating the schema on first use).
    pub async fn open(url: &str, policy: RetryPolicy) -> LedgerResult<Self> {
        let pool = Self::connect(url, 16).await?;
        MIGRATOR.run(&pool).await.map_err(|e| open_err(url, e))?;
        Ok(PgLedger { pool, policy })
    }

    /// Connects for reading (`list`, `status`): nothing is created; a database without the
    /// schema yet reads as an empty ledger.
    pub async fn open_read_only(url: &str) -> LedgerResult<Self> {
        let pool = Self::connect(url, 2).await?;
        Ok(PgLedger {
            pool,
            policy: RetryPolicy::default(),
        })
    }

    async fn connect(url: &str, max: u32) -> LedgerResult<PgPool> {
        let opts: PgConnectOptions = url.parse().map_err(|e| open_err(url, e))?;
        // A worker must notice an unreachable database well within one heartbeat interval.
        PgPoolOptions::new()
            .max_connections(max)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts.application_name("bbb-migrate"))
            .await
            .map_err(|e| open_err(url, e))
    }

    /// The database clock in epoch milliseconds: the reference for every lease.
    pub async fn db_now_ms(&self) -> LedgerResult<i64> {
        Ok(sqlx::query_scalar(concat!("SELECT ", ms!("now()")))
            .fetch_one(&self.pool)
            .await?)
    }

    /// The migration versions of this database and of this build.
    pub async fn schema_versions(&self) -> LedgerResult<super::schema::SchemaVersions> {
        let applied = super::schema::applied_versions(
            &self.pool,
            "SELECT count(*) FROM pg_catalog.pg_tables WHERE tablename = '_sqlx_migrations' AND schemaname = ANY (current_schemas(false))",
        )
        .await?;
        Ok(super::schema::SchemaVersions::of(&MIGRATOR, applied))
    }

    async fn schema_exists(&self) -> LedgerResult<bool> {
        Ok(
            sqlx::query_scalar("SELECT to_regclass('job') IS NOT NULL AS present")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    async fn end_attempt(
        &self,
        lease: &Lease,
        outcome: &str,
        error: Option<&str>,
    ) -> LedgerResult<()> {
        sqlx::query(
            "UPDATE job_attempt SET ended_at=now(), outcome=$3, error=$4 WHERE job_id=$1 AND epoch=$2",
        )
        .bind(lease.job_id)
        .bind(lease.epoch)
        .bind(outcome)
        .bind(error)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

impl JobStore for PgLedger {
    async fn enqueue(&self, jobs: &[NewJob]) -> LedgerResult<u64> {
        let mut tx = self.pool.begin().await?;
        let mut new = 0;
        for j in jobs {
            let inserted = sqlx::query(
                "INSERT INTO job (recording_id, target, payload, max_attempts)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (recording_id, target) DO NOTHING",
            )
            .bind(&j.recording_id)
            .bind(&j.target)
            .bind(&j.payload)
            .bind(self.policy.max_attempts)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if inserted == 0 {
                // Keep state; refresh what a pending job will work from (token URLs expire).
                sqlx::query(
                    "UPDATE job SET payload=$3, updated_at=now()
                     WHERE recording_id=$1 AND target=$2 AND state='pending' AND payload<>$3",
                )
                .bind(&j.recording_id)
                .bind(&j.target)
                .bind(&j.payload)
                .execute(&mut *tx)
                .await?;
            }
            new += inserted;
        }
        tx.commit().await?;
        Ok(new)
    }

    async fn claim(
        &self,
        worker: &str,
        lease: Duration,
        only: Option<&[String]>,
    ) -> LedgerResult<Option<Lease>> {
        self.claim_target(worker, lease, only, None).await
    }

    async fn claim_target(
        &self,
        worker: &str,
        lease: Duration,
        only: Option<&[String]>,
        target: Option<&str>,
    ) -> LedgerResult<Option<Lease>> {
        // One statement: pick (skipping rows another host is claiming right now), lease, and
        // write the attempt history, all atomically and without a transaction left open.
        let row = sqlx::query(
            "WITH next AS (
               SELECT id FROM job
               WHERE attempts < max_attempts
                 AND ((state='pending' AND run_after <= now())
                      OR (state='running' AND lease_expires_at < now()))
                 AND ($3::text[] IS NULL OR recording_id = ANY($3::text[]))
                 AND ($4::text IS NULL OR target = $4::text)
               ORDER BY priority DESC, run_after, id
               LIMIT 1
               FOR UPDATE SKIP LOCKED
             ), claimed AS (
               UPDATE job j SET state='running', lease_owner=$1, lease_epoch=j.lease_epoch+1,
                      lease_expires_at = now() + $2 * interval '1 millisecond',
                      heartbeat_at=now(), attempts=j.attempts+1, updated_at=now(),
                      cancel_requested=false, progress=NULL
               FROM next WHERE j.id = next.id
               RETURNING j.id, j.recording_id, j.target, j.lease_epoch, j.attempts,
                         j.max_attempts, j.payload, j.checkpoint, j.output_path
             ), abandoned AS (
               UPDATE job_attempt a SET ended_at=now(), outcome='lease-expired'
               FROM claimed c
               WHERE a.job_id=c.id AND a.epoch<c.lease_epoch AND a.ended_at IS NULL
             ), opened AS (
               INSERT INTO job_attempt (job_id, epoch, worker, started_at)
               SELECT id, lease_epoch, $1, now() FROM claimed
               ON CONFLICT (job_id, epoch) DO NOTHING
             )
             SELECT * FROM claimed",
        )
        .bind(worker)
        .bind(millis(lease))
        .bind(only)
        .bind(target)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(Lease {
            job_id: row.try_get("id")?,
            recording_id: row.try_get("recording_id")?,
            target: row.try_get("target")?,
            epoch: row.try_get("lease_epoch")?,
            attempts: row.try_get("attempts")?,
            max_attempts: row.try_get("max_attempts")?,
            payload: row.try_get("payload")?,
            checkpoint: row.try_get("checkpoint")?,
            output_path: row.try_get("output_path")?,
        }))
    }

    async fn heartbeat(
        &self,
        lease: &Lease,
        dur: Duration,
        progress: Option<&str>,
    ) -> LedgerResult<bool> {
        let row = sqlx::query(
            "UPDATE job SET lease_expires_at = now() + $3 * interval '1 millisecond',
                    heartbeat_at=now(), updated_at=now(), progress=COALESCE($4, progress)
             WHERE id=$1 AND lease_epoch=$2 AND state='running'
             RETURNING cancel_requested",
        )
        .bind(lease.job_id)
        .bind(lease.epoch)
        .bind(millis(dur))
        .bind(progress)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(r) => Ok(r.try_get::<bool, _>("cancel_requested")?),
            None => Err(lost(lease)),
        }
    }

    async fn checkpoint(&self, lease: &Lease, data: &str) -> LedgerResult<()> {
        let n = sqlx::query(
            "UPDATE job SET checkpoint=$3, updated_at=now()
             WHERE id=$1 AND lease_epoch=$2 AND state='running'",
        )
        .bind(lease.job_id)
        .bind(lease.epoch)
        .bind(data)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if n == 0 { Err(lost(lease)) } else { Ok(()) }
    }

    async fn reserve_output(&self, lease: &Lease, path: &str) -> LedgerResult<()> {
        let r = sqlx::query(
            "UPDATE job SET output_path=$3, updated_at=now()
             WHERE id=$1 AND lease_epoch=$2 AND state='running'",
        )
        .bind(lease.job_id)
        .bind(lease.epoch)
        .bind(path)
        .execute(&self.pool)
        .await;
        match r {
            Ok(done) if done.rows_affected() == 0 => Err(lost(lease)),
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(LedgerError::OutputTaken(path.to_owned()))
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn complete(
        &self,
        lease: &Lease,
        output: &str,
        bytes: u64,
        mode: Option<RecordingMode>,
    ) -> LedgerResult<()> {
        let n = sqlx::query(
            "UPDATE job SET state='succeeded', output=$3, output_bytes=$4, finished_at=now(),
                    updated_at=now(), lease_owner=NULL, lease_expires_at=NULL, last_error=NULL,
                    error_class=NULL, error_phase=NULL, recording_mode=$5
             WHERE id=$1 AND lease_epoch=$2 AND state='running'",
        )
        .bind(lease.job_id)
        .bind(lease.epoch)
        .bind(output)
        .bind(i64::try_from(bytes).unwrap_or(i64::MAX))
        .bind(mode.map(RecordingMode::as_str))
        .execute(&self.pool)
        .await?
        .rows_affected();
        if n == 0 {
            return Err(lost(lease));
        }
        self.end_attempt(lease, "succeeded", None).await
    }

    async fn fail(
        &self,
        lease: &Lease,
        class: ErrorClass,
        phase: &str,
        error: &str,
    ) -> LedgerResult<JobState> {
        let backoff = millis(self.policy.backoff(lease.attempts));
        let row = sqlx::query(
            "UPDATE job SET
               state = CASE WHEN $5='permanent' OR attempts>=max_attempts THEN 'dead' ELSE 'pending' END,
               finished_at = CASE WHEN $5='permanent' OR attempts>=max_attempts THEN now() ELSE NULL END,
               run_after = now() + $4 * interval '1 millisecond', last_error=$3, error_class=$5,
               error_phase=$6, lease_owner=NULL, lease_expires_at=NULL, updated_at=now()
             WHERE id=$1 AND lease_epoch=$2 AND state='running'
             RETURNING state",
        )
        .bind(lease.job_id)
        .bind(lease.epoch)
        .bind(error)
        .bind(backoff)
        .bind(class.as_str())
        .bind(phase)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Err(lost(lease));
        };
        let state: String = row.try_get("state")?;
        self.end_attempt(lease, class.as_str(), Some(error)).await?;
        Ok(JobState::parse(&state).unwrap_or(JobState::Pending))
    }

    async fn release(&self, lease: &Lease) -> LedgerResult<()> {
        let n = sqlx::query(
            "UPDATE job SET state='pending', attempts=GREATEST(attempts-1, 0), run_after=now(),
                    lease_owner=NULL, lease_expires_at=NULL, updated_at=now()
             WHERE id=$1 AND lease_epoch=$2 AND state='running'",
        )
        .bind(lease.job_id)
        .bind(lease.epoch)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if n == 0 {
            return Err(lost(lease));
        }
        self.end_attempt(lease, "released", None).await
    }

    async fn cancel(&self, recording_id: &str, target: &str) -> LedgerResult<bool> {
        // One statement for both cases, so a job claimed between two statements is not missed.
        let n = sqlx::query(
            "UPDATE job SET
               state = CASE WHEN state='pending' THEN 'cancelled' ELSE state END,
               finished_at = CASE WHEN state='pending' THEN now() ELSE finished_at END,
               cancel_requested = (state='running'),
               updated_at = now()
             WHERE recording_id=$1 AND target=$2 AND state IN ('pending','running')",
        )
        .bind(recording_id)
        .bind(target)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n > 0)
    }

    async fn expire_lease(
        &self,
        recording_id: &str,
        target: &str,
        owner: &str,
        epoch: i64,
    ) -> LedgerResult<bool> {
        let n = sqlx::query(
            "UPDATE job SET lease_expires_at = now() - interval '1 millisecond', updated_at=now()
             WHERE recording_id=$1 AND target=$2 AND state='running' AND lease_owner=$3
               AND lease_epoch=$4",
        )
        .bind(recording_id)
        .bind(target)
        .bind(owner)
        .bind(epoch)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n > 0)
    }

    async fn sweep(&self) -> LedgerResult<u64> {
        let n = sqlx::query(
            "UPDATE job SET state='dead', finished_at=now(), updated_at=now(), lease_owner=NULL,
                    last_error=COALESCE(last_error, 'the worker stopped without reporting') ||
                               ' (no attempt left after the lease expired)',
                    error_class=COALESCE(error_class, 'transient')
             WHERE state='running' AND lease_expires_at<now() AND attempts>=max_attempts",
        )
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n)
    }

    async fn running(&self) -> LedgerResult<Vec<RunningJob>> {
        if !self.schema_exists().await? {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(concat!(
            "SELECT recording_id, target, lease_owner, lease_epoch, checkpoint, progress, ",
            ms!("a.started_at"),
            " AS since_ms, ",
            ms!("j.heartbeat_at"),
            " AS heartbeat_ms, ",
            ms!("j.lease_expires_at"),
            " AS lease_expires_ms, (j.lease_expires_at < now()) AS expired
             FROM job j LEFT JOIN job_attempt a ON a.job_id=j.id AND a.epoch=j.lease_epoch
             WHERE j.state='running' ORDER BY lease_owner, recording_id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(RunningJob {
                    recording_id: r.try_get("recording_id")?,
                    target: r.try_get("target")?,
                    owner: r.try_get("lease_owner")?,
                    epoch: r.try_get("lease_epoch")?,
                    checkpoint: r.try_get("checkpoint")?,
                    progress: r.try_get("progress")?,
                    since_ms: r.try_get("since_ms")?,
                    heartbeat_ms: r.try_get("heartbeat_ms")?,
                    lease_expires_ms: r.try_get("lease_expires_ms")?,
                    expired: r.try_get("expired")?,
                })
            })
            .collect()
    }

    async fn unfinished(&self, only: Option<&[String]>, target: Option<&str>) -> LedgerResult<u64> {
        if !self.schema_exists().await? {
            return Ok(0);
        }
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM job WHERE state IN ('pending','running')
               AND ($1::text[] IS NULL OR recording_id = ANY($1::text[]))
               AND ($2::text IS NULL OR target = $2)",
        )
        .bind(only)
        .bind(target)
        .fetch_one(&self.pool)
        .await?;
        Ok(n.max(0) as u64)
    }

    async fn requeue(&self, what: &Requeue) -> LedgerResult<u64> {
        // A redone job loses its output, its flag and its contact sheet, in one transaction:
        // `(update, delete of the sheets)` for the jobs that `$which` selects. Its checkpoint
        // stays: an import's owners already placed must not get a second Pod row, and a file
        // job's record of a placed output names that file, which the redo does not reuse.
        macro_rules! redo {
            ($which:literal) => {
                (
                    concat!(
                        "UPDATE job SET state='pending', attempts=0, run_after=now(), finished_at=NULL,
                                output_path=NULL, output=NULL, output_bytes=NULL, recording_mode=NULL,
                                flagged_at=NULL, flag_note=NULL, updated_at=now() WHERE ",
                        $which
                    ),
                    Some(concat!(
                        "DELETE FROM contact_sheet WHERE job_id IN (SELECT id FROM job WHERE ",
                        $which,
                        ")"
                    )),
                )
            };
        }
        let ((update, sheets), ids) = match what {
            Requeue::Failed(ids) => (
                (
                    "UPDATE job SET state='pending', attempts=0, run_after=now(), finished_at=NULL,
                            cancel_requested=false, updated_at=now()
                     WHERE state IN ('dead','cancelled')
                       AND ($1::text[] IS NULL OR recording_id = ANY($1::text[]))",
                    None,
                ),
                ids.clone(),
            ),
            Requeue::Recordings(ids) => (
                (
                    "UPDATE job SET state='pending', attempts=0, run_after=now(), finished_at=NULL,
                            cancel_requested=false, updated_at=now()
                     WHERE state<>'running' AND state<>'succeeded' AND recording_id = ANY($1::text[])",
                    None,
                ),
                Some(ids.clone()),
            ),
            Requeue::Force(ids) => (
                redo!("state<>'running' AND recording_id = ANY($1::text[])"),
                Some(ids.clone()),
            ),
            Requeue::Flagged(ids) => (
                redo!(
                    "state='succeeded' AND flagged_at IS NOT NULL
                     AND ($1::text[] IS NULL OR recording_id = ANY($1::text[]))"
                ),
                ids.clone(),
            ),
        };
        let mut tx = self.pool.begin().await?;
        if let Some(sheets) = sheets {
            sqlx::query(sheets).bind(&ids).execute(&mut *tx).await?;
        }
        let n = sqlx::query(update)
            .bind(&ids)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(n)
    }

    async fn put_sheet(&self, lease: &Lease, layout: &str, jpeg: &[u8]) -> LedgerResult<()> {
        let n = sqlx::query(
            "INSERT INTO contact_sheet (job_id, made_at, layout, jpeg)
             SELECT id, now(), $3, $4 FROM job WHERE id=$1 AND lease_epoch=$2 AND state='running'
             ON CONFLICT (job_id) DO UPDATE SET made_at=excluded.made_at, layout=excluded.layout,
                                               jpeg=excluded.jpeg",
        )
        .bind(lease.job_id)
        .bind(lease.epoch)
        .bind(layout)
        .bind(jpeg)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if n == 0 {
            return Err(lost(lease));
        }
        Ok(())
    }

    async fn sheet(&self, job_id: i64) -> LedgerResult<Option<(String, Vec<u8>)>> {
        if !self.schema_exists().await? {
            return Ok(None);
        }
        Ok(
            sqlx::query_as("SELECT layout, jpeg FROM contact_sheet WHERE job_id=$1")
                .bind(job_id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn flag(
        &self,
        recording_id: &str,
        target: &str,
        note: Option<&str>,
    ) -> LedgerResult<bool> {
        let n = sqlx::query(
            "UPDATE job SET flagged_at = CASE WHEN $3::text IS NULL THEN NULL ELSE now() END,
                    flag_note=$3, updated_at=now()
             WHERE recording_id=$1 AND target=$2 AND state='succeeded'",
        )
        .bind(recording_id)
        .bind(target)
        .bind(note)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n > 0)
    }

    async fn attempts(&self, job_id: i64) -> LedgerResult<Vec<Attempt>> {
        if !self.schema_exists().await? {
            return Ok(Vec::new());
        }
        Ok(sqlx::query_as(concat!(
            "SELECT epoch, worker, ",
            ms!("started_at"),
            " AS started_ms, ",
            ms!("ended_at"),
            " AS ended_ms, outcome, error FROM job_attempt WHERE job_id=$1 ORDER BY epoch"
        ))
        .bind(job_id)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn placed(&self) -> LedgerResult<Vec<PlacedJob>> {
        if !self.schema_exists().await? {
            return Ok(Vec::new());
        }
        Ok(sqlx::query_as(concat!(
            "SELECT j.id, j.recording_id, j.target, j.payload, j.output, j.output_path,
                    j.output_bytes, j.recording_mode, ",
            ms!("j.finished_at"),
            " AS finished_at_ms, ",
            ms!("j.flagged_at"),
            " AS flagged_at_ms, j.flag_note, s.layout AS sheet_layout
             FROM job j LEFT JOIN contact_sheet s ON s.job_id=j.id
             WHERE j.state='succeeded' ORDER BY j.finished_at DESC, j.id DESC"
        ))
        .fetch_all(&self.pool)
        .await?)
    }

    async fn jobs(&self) -> LedgerResult<Vec<JobRow>> {
        if !self.schema_exists().await? {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(concat!(
            "SELECT j.id, j.recording_id, j.target, j.state, j.attempts, j.max_attempts, ",
            ms!("j.run_after"),
            " AS run_after_ms, j.lease_epoch, j.last_error, j.error_class, j.output_path,
                    j.output, j.output_bytes, j.recording_mode, ",
            ms!("j.finished_at"),
            " AS finished_at_ms, j.error_phase, ",
            ms!("j.flagged_at"),
            " AS flagged_at_ms, j.flag_note,
                    COALESCE((SELECT SUM(",
            ms!("COALESCE(a.ended_at, a.started_at)"),
            " - ",
            ms!("a.started_at"),
            ") FROM job_attempt a WHERE a.job_id=j.id), 0)::bigint AS busy_ms
             FROM job j ORDER BY j.id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                let state: String = r.try_get("state")?;
                Ok(JobRow {
                    id: r.try_get("id")?,
                    recording_id: r.try_get("recording_id")?,
                    target: r.try_get("target")?,
                    state: JobState::parse(&state).ok_or_else(|| {
                        LedgerError::Corrupt(format!("unknown job state {state:?}"))
                    })?,
                    attempts: r.try_get("attempts")?,
                    max_attempts: r.try_get("max_attempts")?,
                    run_after_ms: r.try_get("run_after_ms")?,
                    lease_epoch: r.try_get("lease_epoch")?,
                    last_error: r.try_get("last_error")?,
                    error_class: r.try_get("error_class")?,
                    output_path: r.try_get("output_path")?,
                    output: r.try_get("output")?,
                    output_bytes: r.try_get("output_bytes")?,
                    recording_mode: super::parse_recording_mode(r.try_get("recording_mode")?)?,
                    finished_at_ms: r.try_get("finished_at_ms")?,
                    busy_ms: r.try_get("busy_ms")?,
                    error_phase: r.try_get("error_phase")?,
                    flagged_at_ms: r.try_get("flagged_at_ms")?,
                    flag_note: r.try_get("flag_note")?,
                })
            })
            .collect::<Result<Vec<_>, LedgerError>>()
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}
