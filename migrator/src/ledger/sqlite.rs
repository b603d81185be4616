//! SQLite backend of the ledger: one file on one machine, WAL, busy_timeout, versioned migrations
//! embedded in the binary. Every write is a single autocommit statement (`UPDATE ... RETURNING`),
//! so SQLite's single writer serialises claims without `BEGIN IMMEDIATE` games (ledger.md B7);
//! only `enqueue` batches rows, in a `BEGIN IMMEDIATE` transaction.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use bbb_common::recorder_protocol::RecordingMode;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

use super::{
    Attempt, Clock, JobRow, JobState, JobStore, Lease, LedgerError, LedgerResult, NewJob,
    PlacedJob, Requeue, RetryPolicy, RunningJob,
};
use crate::error::ErrorClass;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

#[derive(Debug, Clone)]
pub struct SqliteLedger {
    pool: SqlitePool,
    clock: Arc<dyn Clock>,
    policy: RetryPolicy,
}

/// The database file named by a `sqlite:` URL (relative paths are relative to the working dir).
pub fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or("");
    if path.is_empty() || path == ":memory:" {
        None
    } else {
        Some(PathBuf::from(path))
    }
}

fn open_err(url: &str, e: impl std::error::Error + Send + Sync + 'static) -> LedgerError {
    LedgerError::Open {
        url: url.to_owned(),
        source: Box::new(e),
    }
}

impl SqliteLedger {
    /// Opens (creating if needed) the ledger for writing and applies the migrations.
    pub async fn open(url: &str, clock: Arc<dyn Clock>, policy: RetryPolicy) -> LedgerResult<Self> {
        let opts = SqliteConnectOptions::from_str(url)
            .map_err(|e| open_err(url, e))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await
            .map_err(|e| open_err(url, e))?;
        MIGRATOR.run(&pool).await.map_err(|e| open_err(url, e))?;
        Ok(SqliteLedger {
            pool,
            clock,
            policy,
        })
    }

    /// Opens the ledger without writing anything anywhere (`--dry-run`, `list`, `status`): the file
    /// is opened read-only (immutable when no writer is around), so not even a `-wal`/`-shm` file
    /// appears; a missing ledger reads as an empty one. A running writer's uncheckpointed
    /// changes are seen.
    pub async fn open_read_only(url: &str, clock: Arc<dyn Clock>) -> LedgerResult<Self> {
        let exists = sqlite_path(url).is_some_and(|p| Path::new(&p).exists());
        if !exists {
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .connect("sqlite::memory:")
                .await
                .map_err(|e| open_err(url, e))?;
            MIGRATOR.run(&pool).await.map_err(|e| open_err(url, e))?;
            return Ok(SqliteLedger {
                pool,
                clock,
                policy: RetryPolicy::default(),
            });
        }
        // Immutable means "nobody writes this file": SQLite then never looks at the `-wal` file.
        // A `-wal` file means a writer is running (or was killed): what it wrote may be only
        // there (even the tables, during a first run), so open it as a plain read-only reader,
        // which reads the WAL through the existing `-shm` index and creates no file.
        let writer_present = sqlite_path(url).is_some_and(|p| {
            let mut wal = p.into_os_string();
            wal.push("-wal");
            Path::new(&wal).exists()
        });
        let opts = SqliteConnectOptions::from_str(url)
            .map_err(|e| open_err(url, e))?
            .read_only(true)
            .immutable(!writer_present);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts)
            .await
            .map_err(|e| open_err(url, e))?;
        Ok(SqliteLedger {
            pool,
            clock,
            policy: RetryPolicy::default(),
        })
    }

    fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    /// The migration versions of this database and of this build.
    pub async fn schema_versions(&self) -> LedgerResult<super::schema::SchemaVersions> {
        let applied = super::schema::applied_versions(
            &self.pool,
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
        )
        .await?;
        Ok(super::schema::SchemaVersions::of(&MIGRATOR, applied))
    }

    fn lost(lease: &Lease) -> LedgerError {
        LedgerError::LeaseLost {
            job_id: lease.job_id,
            epoch: lease.epoch,
        }
    }

    async fn end_attempt(
        &self,
        lease: &Lease,
        outcome: &str,
        error: Option<&str>,
    ) -> LedgerResult<()> {
        sqlx::query(
            "UPDATE job_attempt SET ended_at=?3, outcome=?4, error=?5 WHERE job_id=?1 AND epoch=?2",
        )
        .bind(lease.job_id)
        .bind(lease.epoch)
        .bind(self.now())
        .bind(outcome)
        .bind(error)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

fn ids_json(ids: Option<&[String]>) -> Option<String> {
    ids.map(|v| serde_json::to_string(v).expect("strings serialise"))
}

impl JobStore for SqliteLedger {
    async fn enqueue(&self, jobs: &[NewJob]) -> LedgerResult<u64> {
        let now = self.now();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let mut new = 0;
        for j in jobs {
            let inserted = sqlx::query(
                "INSERT INTO job (recording_id, target, payload, max_attempts, run_after, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?5)
                 ON CONFLICT (recording_id, target) DO NOTHING",
            )
            .bind(&j.recording_id)
            .bind(&j.target)
            .bind(&j.payload)
            .bind(self.policy.max_attempts)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if inserted == 0 {
                // Keep state; refresh what a pending job will work from (token URLs expire).
                sqlx::query(
                    "UPDATE job SET payload=?3, updated_at=?4
                     WHERE recording_id=?1 AND target=?2 AND state='pending' AND payload<>?3",
                )
                .bind(&j.recording_id)
                .bind(&j.target)
                .bind(&j.payload)
                .bind(now)
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
        let now = self.now();
        let row = sqlx::query(
            "UPDATE job SET state='running', lease_owner=?1, lease_epoch=lease_epoch+1,
                    lease_expires_at=?2, heartbeat_at=?3, attempts=attempts+1, updated_at=?3,
                    cancel_requested=0, progress=NULL
             WHERE id = (SELECT id FROM job
                         WHERE attempts < max_attempts
                           AND ((state='pending' AND run_after<=?3)
                                OR (state='running' AND lease_expires_at<?3))
                           AND (?4 IS NULL OR recording_id IN (SELECT value FROM json_each(?4)))
                           AND (?5 IS NULL OR target = ?5)
                         ORDER BY priority DESC, run_after, id LIMIT 1)
             RETURNING id, recording_id, target, lease_epoch, attempts, max_attempts, payload,
                       checkpoint, output_path",
        )
        .bind(worker)
        .bind(now + lease.as_millis() as i64)
        .bind(now)
        .bind(ids_json(only))
        .bind(target)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let lease = Lease {
            job_id: row.try_get("id")?,
            recording_id: row.try_get("recording_id")?,
            target: row.try_get("target")?,
            epoch: row.try_get("lease_epoch")?,
            attempts: row.try_get("attempts")?,
            max_attempts: row.try_get("max_attempts")?,
            payload: row.try_get("payload")?,
            checkpoint: row.try_get("checkpoint")?,
            output_path: row.try_get("output_path")?,
        };
        // History only: close an attempt abandoned by a dead worker, open ours.
        sqlx::query(
            "UPDATE job_attempt SET ended_at=?3, outcome='lease-expired'
             WHERE job_id=?1 AND epoch<?2 AND ended_at IS NULL",
        )
        .bind(lease.job_id)
        .bind(lease.epoch)
        .bind(now)
        .execute(&self.pool)
        .await?;
        sqlx::query("INSERT OR REPLACE INTO job_attempt (job_id, epoch, worker, started_at) VALUES (?1, ?2, ?3, ?4)")
            .bind(lease.job_id)
            .bind(lease.epoch)
            .bind(worker)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(Some(lease))
    }

    async fn heartbeat(
        &self,
        lease: &Lease,
        dur: Duration,
        progress: Option<&str>,
    ) -> LedgerResult<bool> {
        let now = self.now();
        let row = sqlx::query(
            "UPDATE job SET lease_expires_at=?3, heartbeat_at=?4, updated_at=?4,
                    progress=COALESCE(?5, progress)
             WHERE id=?1 AND lease_epoch=?2 AND state='running'
             RETURNING cancel_requested",
        )
        .bind(lease.job_id)
        .bind(lease.epoch)
        .bind(now + dur.as_millis() as i64)
        .bind(now)
        .bind(progress)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(r) => Ok(r.try_get::<i64, _>("cancel_requested")? != 0),
            None => Err(Self::lost(lease)),
        }
    }

    async fn checkpoint(&self, lease: &Lease, data: &str) -> LedgerResult<()> {
        let n = sqlx::query(
            "UPDATE job SET checkpoint=?3, updated_at=?4 WHERE id=?1 AND lease_epoch=?2 AND state='running'",
        )
        .bind(lease.job_id)
        .bind(lease.epoch)
        .bind(data)
        .bind(self.now())
        .execute(&self.pool)
        .await?
        .rows_affected();
        if n == 0 {
            Err(Self::lost(lease))
        } else {
            Ok(())
        }
    }

    async fn reserve_output(&self, lease: &Lease, path: &str) -> LedgerResult<()> {
        let r = sqlx::query(
            "UPDATE job SET output_path=?3, updated_at=?4 WHERE id=?1 AND lease_epoch=?2 AND state='running'",
        )
        .bind(lease.job_id)
        .bind(lease.epoch)
        .bind(path)
        .bind(self.now())
        .execute(&self.pool)
        .await;
        match r {
            Ok(done) if done.rows_affected() == 0 => Err(Self::lost(lease)),
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
        let now = self.now();
        let n = sqlx::query(
            "UPDATE job SET state='succeeded', output=?3, output_bytes=?4, finished_at=?5, updated_at=?5,
                    lease_owner=NULL, lease_expires_at=NULL, last_error=NULL, error_class=NULL,
                    error_phase=NULL, recording_mode=?6
             WHERE id=?1 AND lease_epoch=?2 AND state='running'",
        )
        .bind(lease.job_id)
        .bind(lease.epoch)
        .bind(output)
        .bind(bytes as i64)
        .bind(now)
        .bind(mode.map(RecordingMode::as_str))
        .execute(&self.pool)
        .await?
        .rows_affected();
        if n == 0 {
            return Err(Self::lost(lease));
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
        let now = self.now();
        let run_after = now + self.policy.backoff(lease.attempts).as_millis() as i64;
        let row = sqlx::query(
            "UPDATE job SET
               state = CASE WHEN ?5='permanent' OR attempts>=max_attempts THEN 'dead' ELSE 'pending' END,
               finished_at = CASE WHEN ?5='permanent' OR attempts>=max_attempts THEN ?6 ELSE NULL END,
               run_after=?4, last_error=?3, error_class=?5, error_phase=?7, lease_owner=NULL,
               lease_expires_at=NULL, updated_at=?6
             WHERE id=?1 AND lease_epoch=?2 AND state='running'
             RETURNING state",
        )
        .bind(lease.job_id)
        .bind(lease.epoch)
        .bind(error)
        .bind(run_after)
        .bind(class.as_str())
        .bind(now)
        .bind(phase)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Err(Self::lost(lease));
        };
        let state: String = row.try_get("state")?;
        self.end_attempt(lease, class.as_str(), Some(error)).await?;
        Ok(JobState::parse(&state).unwrap_or(JobState::Pending))
    }

    async fn release(&self, lease: &Lease) -> LedgerResult<()> {
        let now = self.now();
        let n = sqlx::query(
            "UPDATE job SET state='pending', attempts=MAX(attempts-1, 0), run_after=?3, lease_owner=NULL,
                    lease_expires_at=NULL, updated_at=?3
             WHERE id=?1 AND lease_epoch=?2 AND state='running'",
        )
        .bind(lease.job_id)
        .bind(lease.epoch)
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if n == 0 {
            return Err(Self::lost(lease));
        }
        self.end_attempt(lease, "released", None).await
    }

    async fn cancel(&self, recording_id: &str, target: &str) -> LedgerResult<bool> {
        let now = self.now();
        let pending = sqlx::query(
            "UPDATE job SET state='cancelled', finished_at=?3, updated_at=?3
             WHERE recording_id=?1 AND target=?2 AND state='pending'",
        )
        .bind(recording_id)
        .bind(target)
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected();
        let running = sqlx::query(
            "UPDATE job SET cancel_requested=1, updated_at=?3
             WHERE recording_id=?1 AND target=?2 AND state='running'",
        )
        .bind(recording_id)
        .bind(target)
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(pending + running > 0)
    }

    async fn expire_lease(
        &self,
        recording_id: &str,
        target: &str,
        owner: &str,
        epoch: i64,
    ) -> LedgerResult<bool> {
        let now = self.now();
        let n = sqlx::query(
            "UPDATE job SET lease_expires_at=?5 - 1, updated_at=?5
             WHERE recording_id=?1 AND target=?2 AND state='running' AND lease_owner=?3
               AND lease_epoch=?4",
        )
        .bind(recording_id)
        .bind(target)
        .bind(owner)
        .bind(epoch)
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n > 0)
    }

    async fn sweep(&self) -> LedgerResult<u64> {
        let now = self.now();
        let n = sqlx::query(
            "UPDATE job SET state='dead', finished_at=?1, updated_at=?1, lease_owner=NULL,
                    last_error=COALESCE(last_error, 'the worker stopped without reporting') ||
                               ' (no attempt left after the lease expired)',
                    error_class=COALESCE(error_class, 'transient')
             WHERE state='running' AND lease_expires_at<?1 AND attempts>=max_attempts",
        )
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n)
    }

    async fn running(&self) -> LedgerResult<Vec<RunningJob>> {
        let now = self.now();
        let rows = sqlx::query(
            "SELECT j.recording_id, j.target, j.lease_owner, j.lease_epoch, j.checkpoint,
                    j.progress, a.started_at AS since_ms, j.heartbeat_at AS heartbeat_ms,
                    j.lease_expires_at AS lease_expires_ms, (j.lease_expires_at < ?1) AS expired
             FROM job j LEFT JOIN job_attempt a ON a.job_id=j.id AND a.epoch=j.lease_epoch
             WHERE j.state='running' ORDER BY j.lease_owner, j.recording_id",
        )
        .bind(now)
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
                    expired: r.try_get::<Option<bool>, _>("expired")?.unwrap_or(false),
                })
            })
            .collect()
    }

    async fn unfinished(&self, only: Option<&[String]>, target: Option<&str>) -> LedgerResult<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM job WHERE state IN ('pending','running')
               AND (?1 IS NULL OR recording_id IN (SELECT value FROM json_each(?1)))
               AND (?2 IS NULL OR target = ?2)",
        )
        .bind(ids_json(only))
        .bind(target)
        .fetch_one(&self.pool)
        .await?;
        Ok(n.max(0) as u64)
    }

    async fn requeue(&self, what: &Requeue) -> LedgerResult<u64> {
        let now = self.now();
        // A redone job loses its output, its flag and its contact sheet, in one transaction:
        // `(update, delete of the sheets)` for the jobs that `$which` selects. Its checkpoint
        // stays: an import's owners already placed must not get a second Pod row, and a file
        // job's record of a placed output names that file, which the redo does not reuse.
        macro_rules! redo {
            ($which:literal) => {
                (
                    concat!(
                        "UPDATE job SET state='pending', attempts=0, run_after=?1, finished_at=NULL,
                                output_path=NULL, output=NULL, output_bytes=NULL, recording_mode=NULL,
                                flagged_at=NULL, flag_note=NULL, updated_at=?1 WHERE ",
                        $which
                    ),
                    Some(concat!(
                        "DELETE FROM contact_sheet WHERE ?1 IS NOT NULL AND job_id IN
                           (SELECT id FROM job WHERE ",
                        $which,
                        ")"
                    )),
                )
            };
        }
        let ((update, sheets), ids) = match what {
            Requeue::Failed(ids) => (
                (
                    "UPDATE job SET state='pending', attempts=0, run_after=?1, finished_at=NULL,
                            cancel_requested=0, updated_at=?1
                     WHERE state IN ('dead','cancelled')
                       AND (?2 IS NULL OR recording_id IN (SELECT value FROM json_each(?2)))",
                    None,
                ),
                ids_json(ids.as_deref()),
            ),
            Requeue::Recordings(ids) => (
                (
                    "UPDATE job SET state='pending', attempts=0, run_after=?1, finished_at=NULL,
                            cancel_requested=0, updated_at=?1
                     WHERE state<>'running' AND state<>'succeeded'
                       AND recording_id IN (SELECT value FROM json_each(?2))",
                    None,
                ),
                ids_json(Some(ids)),
            ),
            Requeue::Force(ids) => (
                redo!("state<>'running' AND recording_id IN (SELECT value FROM json_each(?2))"),
                ids_json(Some(ids)),
            ),
            Requeue::Flagged(ids) => (
                redo!(
                    "state='succeeded' AND flagged_at IS NOT NULL
                     AND (?2 IS NULL OR recording_id IN (SELECT value FROM json_each(?2)))"
                ),
                ids_json(ids.as_deref()),
            ),
        };
        let mut tx = self.pool.begin().await?;
        if let Some(sheets) = sheets {
            sqlx::query(sheets)
                .bind(now)
                .bind(&ids)
                .execute(&mut *tx)
                .await?;
        }
        let n = sqlx::query(update)
            .bind(now)
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
             SELECT id, ?3, ?4, ?5 FROM job WHERE id=?1 AND lease_epoch=?2 AND state='running'
             ON CONFLICT (job_id) DO UPDATE SET made_at=excluded.made_at, layout=excluded.layout,
                                               jpeg=excluded.jpeg",
        )
        .bind(lease.job_id)
        .bind(lease.epoch)
        .bind(self.now())
        .bind(layout)
        .bind(jpeg)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if n == 0 {
            return Err(Self::lost(lease));
        }
        Ok(())
    }

    async fn sheet(&self, job_id: i64) -> LedgerResult<Option<(String, Vec<u8>)>> {
        Ok(
            sqlx::query_as("SELECT layout, jpeg FROM contact_sheet WHERE job_id=?1")
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
            "UPDATE job SET flagged_at = CASE WHEN ?3 IS NULL THEN NULL ELSE ?4 END, flag_note=?3,
                    updated_at=?4
             WHERE recording_id=?1 AND target=?2 AND state='succeeded'",
        )
        .bind(recording_id)
        .bind(target)
        .bind(note)
        .bind(self.now())
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n > 0)
    }

    async fn attempts(&self, job_id: i64) -> LedgerResult<Vec<Attempt>> {
        Ok(sqlx::query_as(
            "SELECT epoch, worker, started_at AS started_ms, ended_at AS ended_ms, outcome, error
             FROM job_attempt WHERE job_id=?1 ORDER BY epoch",
        )
        .bind(job_id)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn placed(&self) -> LedgerResult<Vec<PlacedJob>> {
        Ok(sqlx::query_as(
            "SELECT j.id, j.recording_id, j.target, j.payload, j.output, j.output_path,
                    j.output_bytes, j.recording_mode, j.finished_at AS finished_at_ms,
                    j.flagged_at AS flagged_at_ms,
                    j.flag_note, s.layout AS sheet_layout
             FROM job j LEFT JOIN contact_sheet s ON s.job_id=j.id
             WHERE j.state='succeeded' ORDER BY j.finished_at DESC, j.id DESC",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    async fn jobs(&self) -> LedgerResult<Vec<JobRow>> {
        let rows = sqlx::query(
            "SELECT j.id, j.recording_id, j.target, j.state, j.attempts, j.max_attempts, j.run_after, j.lease_epoch,
                    j.last_error, j.error_class, j.output_path, j.output, j.output_bytes,
                    j.recording_mode, j.finished_at, j.error_phase, j.flagged_at, j.flag_note,
                    COALESCE((SELECT SUM(COALESCE(a.ended_at, a.started_at) - a.started_at)
                              FROM job_attempt a WHERE a.job_id=j.id), 0) AS busy_ms
             FROM job j ORDER BY j.id",
        )
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
                    run_after_ms: r.try_get("run_after")?,
                    lease_epoch: r.try_get("lease_epoch")?,
                    last_error: r.try_get("last_error")?,
                    error_class: r.try_get("error_class")?,
                    output_path: r.try_get("output_path")?,
                    output: r.try_get("output")?,
                    output_bytes: r.try_get("output_bytes")?,
                    recording_mode: super::parse_recording_mode(r.try_get("recording_mode")?)?,
                    finished_at_ms: r.try_get("finished_at")?,
                    busy_ms: r.try_get("busy_ms")?,
                    error_phase: r.try_get("error_phase")?,
                    flagged_at_ms: r.try_get("flagged_at")?,
                    flag_note: r.try_get("flag_note")?,
                })
            })
            .collect::<Result<Vec<_>, LedgerError>>()
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}
