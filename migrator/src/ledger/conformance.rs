//! Behaviour every `JobStore` backend must have (ledger.md B8). Each case is written once against
//! a `Fixture` and run twice by the macro at the bottom: on SQLite with an injected clock (leases
//! expire instantly), and on a real PostgreSQL server started for the test on 127.0.0.1, where
//! leases are short and time really passes, because PostgreSQL only trusts its own `now()`.

use std::sync::Arc;
use std::time::Duration;

use bbb_common::recorder_protocol::RecordingMode;
use fake_bbb::postgres::Postgres;

use super::any::AnyLedger;
use super::sqlite::SqliteLedger;
use super::*;

#[derive(Debug, Clone, Copy)]
enum Backend {
    Sqlite,
    Postgres,
}

/// A fresh, empty ledger of one backend, and the means to let time pass on its clock.
struct Fixture {
    store: Arc<AnyLedger>,
    clock: Arc<SimulatedClock>,
    lease: Duration,
    /// The retry policy's base delay.
    retry_base: Duration,
    /// Where `store` was opened, to open the same ledger again.
    url: String,
    _dir: tempfile::TempDir,
    pg: Option<Postgres>,
}

impl Fixture {
    async fn new(backend: Backend, max_attempts: i64) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(SimulatedClock::new(1_000_000));
        match backend {
            Backend::Sqlite => {
                let url = format!("sqlite://{}", dir.path().join("ledger.db").display());
                let policy = RetryPolicy {
                    max_attempts,
                    base: Duration::from_secs(10),
                    cap: Duration::from_secs(600),
                };
                let policy_base = policy.base;
                let store = AnyLedger::open(&url, clock.clone(), policy).await.unwrap();
                Fixture {
                    store: Arc::new(store),
                    clock,
                    lease: Duration::from_secs(90),
                    retry_base: policy_base,
                    url,
                    _dir: dir,
                    pg: None,
                }
            }
            Backend::Postgres => {
                let pg = tokio::task::spawn_blocking(|| {
                    Postgres::start().unwrap_or_else(|e| panic!("test PostgreSQL server: {e}"))
                })
                .await
                .unwrap();
                pg.create_database("ledger").unwrap();
                // Real time passes on PostgreSQL, so the schedule is scaled down.
                let policy = RetryPolicy {
                    max_attempts,
                    base: Duration::from_millis(300),
                    cap: Duration::from_secs(5),
                };
                let policy_base = policy.base;
                let url = pg.url("ledger");
                let store = AnyLedger::open(&url, clock.clone(), policy).await.unwrap();
                assert!(matches!(store, AnyLedger::Postgres(_)));
                Fixture {
                    store: Arc::new(store),
                    clock,
                    lease: Duration::from_secs(3),
                    retry_base: policy_base,
                    url,
                    _dir: dir,
                    pg: Some(pg),
                }
            }
        }
    }

    /// Lets `d` pass on the ledger's clock.
    async fn pass(&self, d: Duration) {
        match &*self.store {
            AnyLedger::Sqlite(_) => self.clock.advance(d),
            AnyLedger::Postgres(_) => tokio::time::sleep(d).await,
        }
    }

    /// The backoff the ledger gave `recording_id` at its last failure: `run_after` less the time
    /// of that failure on the ledger's clock (SQLite: the injected clock, which has not moved
    /// since; PostgreSQL: the `updated_at` the failure wrote in the same statement).
    async fn backoff_ms(&self, recording_id: &str, run_after_ms: i64) -> i64 {
        match &self.pg {
            None => run_after_ms - self.clock.now_ms(),
            Some(pg) => pg
                .psql(
                    "ledger",
                    &format!(
                        "SELECT round(extract(epoch FROM run_after - updated_at) * 1000)::bigint FROM job WHERE recording_id = '{recording_id}'"
                    ),
                )
                .unwrap()
                .parse()
                .unwrap(),
        }
    }

    /// Runs `sql` on the ledger's database behind the store's back (to make it what an older
    /// bbb-migrate left).
    async fn execute(&self, sql: &'static str) {
        match &self.pg {
            None => {
                let db = sqlx::SqlitePool::connect(&self.url).await.unwrap();
                sqlx::query(sql).execute(&db).await.unwrap();
                db.close().await;
            }
            Some(pg) => {
                pg.psql("ledger", sql).unwrap();
            }
        }
    }

    /// Now, on the ledger's clock.
    async fn now_ms(&self) -> i64 {
        match &*self.store {
            AnyLedger::Sqlite(_) => self.clock.now_ms(),
            AnyLedger::Postgres(p) => p.db_now_ms().await.unwrap(),
        }
    }
}

fn jobs(n: usize) -> Vec<NewJob> {
    (0..n)
        .map(|i| NewJob {
            recording_id: format!("rec{i:03}"),
            target: TARGET_FILE.into(),
            payload: format!("{{\"n\":{i}}}"),
        })
        .collect()
}

fn lost(r: LedgerResult<impl std::fmt::Debug>) -> bool {
    matches!(r, Err(LedgerError::LeaseLost { .. }))
}

async fn enqueue_is_idempotent_and_keeps_state(b: Backend) {
    let f = Fixture::new(b, 5).await;
    let s = &f.store;
    assert_eq!(s.enqueue(&jobs(3)).await.unwrap(), 3);
    let l = s.claim("w1", f.lease, None).await.unwrap().unwrap();
    s.complete(&l, "{}", 10, None).await.unwrap();
    assert_eq!(s.enqueue(&jobs(4)).await.unwrap(), 1);
    let rows = s.jobs().await.unwrap();
    assert_eq!(rows.len(), 4);
    assert_eq!(
        rows.iter()
            .filter(|r| r.state == JobState::Succeeded)
            .count(),
        1
    );
}

async fn concurrent_claimers_take_each_job_once(b: Backend) {
    const WORKERS: usize = 8;
    const JOBS: usize = 60;
    let f = Fixture::new(b, 5).await;
    f.store.enqueue(&jobs(JOBS)).await.unwrap();
    let mut tasks = Vec::new();
    for w in 0..WORKERS {
        let s = f.store.clone();
        let lease = f.lease;
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(l) = s.claim(&format!("w{w}"), lease, None).await.unwrap() {
                assert_eq!(
                    l.epoch, 1,
                    "{} claimed while its lease was valid",
                    l.recording_id
                );
                got.push(l.recording_id);
            }
            got
        }));
    }
    let mut all = Vec::new();
    let mut busy_workers = 0;
    for t in tasks {
        let got = t.await.unwrap();
        busy_workers += usize::from(!got.is_empty());
        all.extend(got);
    }
    all.sort();
    let before = all.len();
    all.dedup();
    assert_eq!(before, JOBS, "every job claimed");
    assert_eq!(all.len(), JOBS, "no job claimed twice");
    assert!(busy_workers > 1, "the claims really ran concurrently");
    let rows = f.store.jobs().await.unwrap();
    assert!(
        rows.iter()
            .all(|r| r.state == JobState::Running && r.lease_epoch == 1)
    );
}

async fn claim_respects_the_selection(b: Backend) {
    let f = Fixture::new(b, 5).await;
    let s = &f.store;
    s.enqueue(&jobs(5)).await.unwrap();
    let only = vec!["rec003".to_owned()];
    let l = s.claim("w", f.lease, Some(&only)).await.unwrap().unwrap();
    assert_eq!(l.recording_id, "rec003");
    assert!(s.claim("w", f.lease, Some(&only)).await.unwrap().is_none());
}

async fn claim_target_takes_only_jobs_of_that_target(b: Backend) {
    let f = Fixture::new(b, 5).await;
    let s = &f.store;
    // The `file` job of rec000 comes first in the queue; the import's job of the same recording
    // is enqueued after it.
    s.enqueue(&jobs(2)).await.unwrap();
    s.enqueue(&[NewJob {
        target: "pod".into(),
        ..jobs(1).remove(0)
    }])
    .await
    .unwrap();
    let only = vec!["rec000".to_owned()];
    let l = s
        .claim_target("w", f.lease, Some(&only), Some("pod"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (l.recording_id.as_str(), l.target.as_str()),
        ("rec000", "pod")
    );
    assert!(
        s.claim_target("w", f.lease, Some(&only), Some("pod"))
            .await
            .unwrap()
            .is_none()
    );
    // What each command waits for is its own target's jobs: the finished import leaves the
    // recording's file job, which an `import` run must not wait for (nor `claim` for the pod one).
    let unfinished = |t| s.unfinished(Some(&only), t);
    assert_eq!(unfinished(None).await.unwrap(), 2);
    assert_eq!(unfinished(Some("pod")).await.unwrap(), 1);
    s.complete(&l, "{}", 1, None).await.unwrap();
    assert_eq!(unfinished(Some("pod")).await.unwrap(), 0);
    assert_eq!(unfinished(Some(TARGET_FILE)).await.unwrap(), 1);
    let l = s
        .claim_target("w", f.lease, None, Some(TARGET_FILE))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (l.recording_id.as_str(), l.target.as_str()),
        ("rec000", TARGET_FILE)
    );
    let l = s
        .claim_target("w", f.lease, None, Some(TARGET_FILE))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(l.recording_id, "rec001");
    assert!(
        s.claim_target("w", f.lease, None, Some(TARGET_FILE))
            .await
            .unwrap()
            .is_none()
    );
}

/// On PostgreSQL real time passes, so no check may depend on how fast the machine answers: a
/// "still leased" check is made where the lease has seconds left (at once after the claim, or
/// against a lease renewed for three times its length), and a "taken over" check only after
/// the lease has run out, which a slow machine only makes more certain.
async fn expired_lease_is_taken_over_and_the_stale_worker_is_fenced(b: Backend) {
    let f = Fixture::new(b, 5).await;
    let (s, lease) = (&f.store, f.lease);
    s.enqueue(&jobs(2)).await.unwrap();
    let kept = s.claim("w1", lease, None).await.unwrap().unwrap();
    let old = s.claim("w1", lease, None).await.unwrap().unwrap();
    assert_eq!((kept.epoch, old.epoch), (1, 1));
    // Still leased: nobody else gets either.
    assert!(s.claim("w2", lease, None).await.unwrap().is_none());
    // A heartbeat extends `kept` past its first expiry.
    f.pass(lease / 3).await;
    assert!(!s.heartbeat(&kept, lease * 3, None).await.unwrap());
    // Silence past the lease: `old` is taken over with a new epoch; `kept` is not.
    f.pass(lease * 2 / 3 + lease / 10).await;
    let new = s.claim("w2", lease, None).await.unwrap().unwrap();
    assert_eq!(new.recording_id, old.recording_id);
    assert_eq!(new.epoch, 2);
    assert_eq!(new.attempts, 2);
    assert!(
        s.claim("w2", lease, None).await.unwrap().is_none(),
        "the renewed lease still holds"
    );
    // Every write of the stale holder affects nothing.
    assert!(lost(s.heartbeat(&old, lease, None).await));
    assert!(lost(s.checkpoint(&old, "{}").await));
    assert!(lost(s.reserve_output(&old, "/x").await));
    assert!(lost(
        s.complete(&old, "{}", 1, Some(RecordingMode::Fast)).await
    ));
    assert!(lost(
        s.fail(&old, ErrorClass::Transient, "fetch", "x").await
    ));
    assert!(lost(s.release(&old).await));
    let row = |rows: &[JobRow]| {
        rows.iter()
            .find(|r| r.recording_id == old.recording_id)
            .unwrap()
            .clone()
    };
    let r = row(&s.jobs().await.unwrap());
    assert_eq!(r.state, JobState::Running);
    assert_eq!(r.lease_epoch, 2);
    assert_eq!(r.output_path, None, "the stale reservation was refused");
    assert_eq!(r.recording_mode, None, "the stale completion was refused");
    // The new holder is unaffected.
    s.checkpoint(&new, "{\"k\":1}").await.unwrap();
    s.complete(&new, "{}", 7, Some(RecordingMode::RealTime))
        .await
        .unwrap();
    let r = row(&s.jobs().await.unwrap());
    assert_eq!(r.state, JobState::Succeeded);
    assert_eq!(r.output_bytes, Some(7));
    assert_eq!(r.recording_mode, Some(RecordingMode::RealTime));
    assert_eq!(r.last_error, None);
    // Neither is the holder of the renewed lease.
    s.complete(&kept, "{}", 3, None).await.unwrap();
}

async fn transient_failures_back_off_then_die_and_permanent_dies_at_once(b: Backend) {
    let f = Fixture::new(b, 3).await;
    let (s, lease) = (&f.store, f.lease);
    s.enqueue(&jobs(2)).await.unwrap();
    let only = vec!["rec000".to_owned()];
    let row = || async {
        s.jobs()
            .await
            .unwrap()
            .into_iter()
            .find(|r| r.recording_id == "rec000")
            .unwrap()
    };
    let mut last_delay = 0;
    let mut next = None;
    for attempt in 1..=3 {
        let l = match next.take() {
            Some(l) => l,
            None => s.claim("w", lease, Some(&only)).await.unwrap().unwrap(),
        };
        assert_eq!(l.attempts, attempt);
        let before = f.now_ms().await;
        let st = s
            .fail(&l, ErrorClass::Transient, "download", "HTTP 503")
            .await
            .unwrap();
        // At once: a claim before run_after gets nothing.
        let early = s.claim("w", lease, Some(&only)).await.unwrap();
        let after = f.now_ms().await;
        let row = row().await;
        if attempt == 3 {
            assert_eq!(st, JobState::Dead);
            assert!(early.is_none(), "a dead job is never claimed");
            assert_eq!(row.last_error.as_deref(), Some("HTTP 503"));
            assert!(row.finished_at_ms.is_some());
            break;
        }
        assert_eq!(st, JobState::Pending);
        // base * 2^(n-1) with ±25 % jitter; the failure happened between `before` and `after`.
        let nominal = f.retry_base.as_millis() as i64 * (1 << (attempt - 1));
        let (min, max) = (nominal * 3 / 4 - 1, nominal * 5 / 4 + 1);
        assert!(
            row.run_after_ms - before >= min && row.run_after_ms - after <= max,
            "attempt {attempt}: run_after {} ms after the failure, not {nominal} ms ±25 %",
            row.run_after_ms - after
        );
        if let Some(l) = early {
            // Only a machine too slow to claim within the backoff may get it, after run_after.
            assert!(
                after >= row.run_after_ms,
                "claimed {} ms before run_after",
                row.run_after_ms - after
            );
            next = Some(l);
            continue;
        }
        // The backoff given, exactly (the failure's time on the ledger's clock): in its window,
        // so it grows from one attempt to the next.
        let delay = f.backoff_ms("rec000", row.run_after_ms).await;
        assert!(
            delay >= min && delay <= max,
            "attempt {attempt}: backoff {delay} ms, not {nominal} ms ±25 %"
        );
        assert!(delay > last_delay, "backoff grows: {delay} > {last_delay}");
        last_delay = delay;
        f.pass(Duration::from_millis(
            (row.run_after_ms - after).max(0) as u64 + 1,
        ))
        .await;
    }
    let l = s.claim("w", lease, None).await.unwrap().unwrap();
    assert_eq!(l.recording_id, "rec001");
    assert_eq!(
        s.fail(&l, ErrorClass::Permanent, "download", "HTTP 404")
            .await
            .unwrap(),
        JobState::Dead
    );
    assert!(s.claim("w", lease, None).await.unwrap().is_none());
    // retry --failed brings both back.
    assert_eq!(s.requeue(&Requeue::Failed(None)).await.unwrap(), 2);
    assert!(s.claim("w", lease, None).await.unwrap().is_some());
}

async fn expired_job_without_attempts_left_is_swept_to_dead(b: Backend) {
    let f = Fixture::new(b, 1).await;
    let s = &f.store;
    s.enqueue(&jobs(1)).await.unwrap();
    let _l = s.claim("w", f.lease, None).await.unwrap().unwrap();
    assert_eq!(s.sweep().await.unwrap(), 0, "a live lease is never swept");
    f.pass(f.lease + f.lease / 3).await;
    assert!(s.claim("w2", f.lease, None).await.unwrap().is_none());
    assert_eq!(s.sweep().await.unwrap(), 1);
    assert_eq!(s.jobs().await.unwrap()[0].state, JobState::Dead);
}

async fn cancel_pending_and_running(b: Backend) {
    let f = Fixture::new(b, 5).await;
    let (s, lease) = (&f.store, f.lease);
    s.enqueue(&jobs(3)).await.unwrap();
    let l = s
        .claim("w", lease, Some(&["rec000".to_owned()]))
        .await
        .unwrap()
        .unwrap();
    assert!(
        !s.heartbeat(&l, lease, None).await.unwrap(),
        "no cancel asked yet"
    );
    assert!(s.cancel("rec001", TARGET_FILE).await.unwrap());
    assert!(s.cancel("rec000", TARGET_FILE).await.unwrap());
    assert!(!s.cancel("nope", TARGET_FILE).await.unwrap());
    assert!(
        s.heartbeat(&l, lease, None).await.unwrap(),
        "the worker learns of the cancel"
    );
    let rows = s.jobs().await.unwrap();
    assert_eq!(rows[0].state, JobState::Running, "until its worker stops");
    assert_eq!(rows[1].state, JobState::Cancelled);
    // The worker stops and records it; the cancelled job is never claimed again.
    s.fail(&l, ErrorClass::Permanent, "ledger", "cancelled on request")
        .await
        .unwrap();
    let l2 = s.claim("w", lease, None).await.unwrap().unwrap();
    assert_eq!(l2.recording_id, "rec002");
    assert!(s.claim("w", lease, None).await.unwrap().is_none());
}

async fn output_names_have_one_owner_and_release_keeps_the_attempt(b: Backend) {
    let f = Fixture::new(b, 5).await;
    let (s, lease) = (&f.store, f.lease);
    s.enqueue(&jobs(2)).await.unwrap();
    let a = s.claim("w", lease, None).await.unwrap().unwrap();
    let b = s.claim("w", lease, None).await.unwrap().unwrap();
    s.reserve_output(&a, "/claim/x.m4v").await.unwrap();
    assert!(matches!(
        s.reserve_output(&b, "/claim/x.m4v").await,
        Err(LedgerError::OutputTaken(_))
    ));
    s.reserve_output(&b, "/claim/x-2.m4v").await.unwrap();
    // Released (Ctrl-C): back to pending, attempt not consumed, reservation kept for the rerun.
    s.release(&a).await.unwrap();
    let again = s.claim("w", lease, None).await.unwrap().unwrap();
    assert_eq!(again.recording_id, a.recording_id);
    assert_eq!(again.attempts, 1);
    assert_eq!(again.output_path.as_deref(), Some("/claim/x.m4v"));
}

/// Progress goes in with the heartbeat, under the same fence; `running` shows it with the
/// holder, and a new claim starts from none. `unfinished` counts what a `claim` run waits for.
async fn progress_is_stored_with_the_fenced_heartbeat_and_shown_as_running(b: Backend) {
    let f = Fixture::new(b, 5).await;
    let (s, lease) = (&f.store, f.lease);
    s.enqueue(&jobs(2)).await.unwrap();
    assert_eq!(s.unfinished(None, None).await.unwrap(), 2);
    let only = vec!["rec001".to_owned()];
    assert_eq!(s.unfinished(Some(&only), None).await.unwrap(), 1);
    let old = s.claim("host-a:1:x:0", lease, None).await.unwrap().unwrap();
    let p = Progress {
        unit: ProgressUnit::Seconds,
        done: 7.5,
        total: Some(15.0),
    };
    assert!(!s.heartbeat(&old, lease, Some(&p.to_json())).await.unwrap());
    // A heartbeat without news keeps the last progress.
    assert!(!s.heartbeat(&old, lease, None).await.unwrap());
    let running = s.running().await.unwrap();
    assert_eq!(running.len(), 1);
    let r = &running[0];
    assert_eq!(r.recording_id, old.recording_id);
    assert_eq!(r.owner.as_deref(), Some("host-a:1:x:0"));
    assert_eq!(r.epoch, old.epoch);
    assert!(r.since_ms.is_some() && r.heartbeat_ms.is_some() && !r.expired);
    // The expiry a `--no-wait` run prints for a job held elsewhere: after the last renewal.
    assert!(r.lease_expires_ms > r.heartbeat_ms, "{r:?}");
    let shown = Progress::parse(r.progress.as_deref().expect("progress stored")).unwrap();
    assert_eq!(shown, p);
    assert_eq!(shown.percent(), Some(50.0));
    // Taken over: the new holder starts without progress, the stale one cannot write any.
    f.pass(lease + lease / 10).await;
    assert!(s.running().await.unwrap()[0].expired);
    let new = s.claim("host-b:2:y:0", lease, None).await.unwrap().unwrap();
    let stale = Progress { done: 14.0, ..p };
    assert!(lost(s.heartbeat(&old, lease, Some(&stale.to_json())).await));
    let running = s.running().await.unwrap();
    assert_eq!(running[0].owner.as_deref(), Some("host-b:2:y:0"));
    assert_eq!(running[0].progress, None);
    s.complete(&new, "{}", 1, None).await.unwrap();
    assert!(s.running().await.unwrap().is_empty());
    assert_eq!(s.unfinished(None, None).await.unwrap(), 1);
    assert_eq!(
        s.unfinished(Some(std::slice::from_ref(&new.recording_id)), None)
            .await
            .unwrap(),
        0
    );
}

/// Generates one `#[tokio::test]` per backend for each case above.
async fn a_dead_holders_lease_is_expired_at_once_and_only_at_its_epoch(b: Backend) {
    let f = Fixture::new(b, 5).await;
    let (s, lease) = (&f.store, f.lease);
    s.enqueue(&jobs(1)).await.unwrap();
    let old = s.claim("h:1:x:0", lease, None).await.unwrap().unwrap();
    let id = old.recording_id.clone();
    // Wrong owner or wrong epoch: nothing happens.
    assert!(
        !s.expire_lease(&id, TARGET_FILE, "h:2:x:0", 1)
            .await
            .unwrap()
    );
    assert!(
        !s.expire_lease(&id, TARGET_FILE, "h:1:x:0", 2)
            .await
            .unwrap()
    );
    assert!(s.claim("w2", lease, None).await.unwrap().is_none());
    // The holder at its epoch: taken over at once, the holder fenced.
    assert!(
        s.expire_lease(&id, TARGET_FILE, "h:1:x:0", 1)
            .await
            .unwrap()
    );
    let running = s.running().await.unwrap();
    assert!(running[0].expired, "shown as expired");
    let new = s.claim("w2", lease, None).await.unwrap().unwrap();
    assert_eq!(new.epoch, 2);
    assert!(lost(s.heartbeat(&old, lease, None).await));
    // The new holder's lease is not touched by a late expiry of the old one.
    assert!(
        !s.expire_lease(&id, TARGET_FILE, "h:1:x:0", 1)
            .await
            .unwrap()
    );
    assert!(!s.heartbeat(&new, lease, None).await.unwrap());
    s.complete(&new, "{}", 1, None).await.unwrap();
    assert_eq!(s.jobs().await.unwrap()[0].state, JobState::Succeeded);
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    super::$case(super::Backend::Sqlite).await
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    super::$case(super::Backend::Postgres).await
                }
            )*
        }
    };
}

conformance!(
    enqueue_is_idempotent_and_keeps_state,
    concurrent_claimers_take_each_job_once,
    claim_respects_the_selection,
    claim_target_takes_only_jobs_of_that_target,
    expired_lease_is_taken_over_and_the_stale_worker_is_fenced,
    a_dead_holders_lease_is_expired_at_once_and_only_at_its_epoch,
    transient_failures_back_off_then_die_and_permanent_dies_at_once,
    expired_job_without_attempts_left_is_swept_to_dead,
    cancel_pending_and_running,
    output_names_have_one_owner_and_release_keeps_the_attempt,
    progress_is_stored_with_the_fenced_heartbeat_and_shown_as_running,
    sheets_flags_phases_and_attempts_follow_the_job,
    the_recording_mode_is_kept_with_the_output_and_goes_with_a_redo,
    an_older_ledger_gets_the_mode_column_in_place_and_its_outputs_have_no_mode,
    the_checkpoint_comes_back_with_the_next_lease_and_survives_a_redo,
);

/// What a holder checkpoints comes back with the next lease of the job: after its lease ran out
/// (a takeover), after a retry of the job it left dead, and after a redo (`claim --force`,
/// `retry --flagged`): an import's owners already placed must not be imported twice, and a file
/// job's record names its placed file, which a redo does not reuse.
async fn the_checkpoint_comes_back_with_the_next_lease_and_survives_a_redo(b: Backend) {
    let f = Fixture::new(b, 2).await;
    let (s, lease) = (&f.store, f.lease);
    s.enqueue(&jobs(1)).await.unwrap();
    let first = s.claim("w1", lease, None).await.unwrap().unwrap();
    assert_eq!(first.checkpoint, None);
    s.checkpoint(&first, r#"{"k":1}"#).await.unwrap();
    f.pass(lease + lease / 10).await;
    let second = s.claim("w2", lease, None).await.unwrap().unwrap();
    assert_eq!(second.checkpoint.as_deref(), Some(r#"{"k":1}"#));
    s.checkpoint(&second, r#"{"k":2}"#).await.unwrap();
    let state = s.fail(&second, ErrorClass::Transient, "place", "x").await;
    assert_eq!(state.unwrap(), JobState::Dead, "no attempt left");
    assert_eq!(s.requeue(&Requeue::Failed(None)).await.unwrap(), 1);
    let retried = s.claim("w1", lease, None).await.unwrap().unwrap();
    assert_eq!(retried.checkpoint.as_deref(), Some(r#"{"k":2}"#));
    s.complete(&retried, "{}", 1, Some(RecordingMode::Fast))
        .await
        .unwrap();

    let again = vec!["rec000".to_owned()];
    assert_eq!(s.requeue(&Requeue::Force(again)).await.unwrap(), 1);
    let forced = s.claim("w1", lease, None).await.unwrap().unwrap();
    assert_eq!(forced.checkpoint.as_deref(), Some(r#"{"k":2}"#));
    assert_eq!(forced.output_path, None, "a redo reserves a new name");
    s.checkpoint(&forced, r#"{"k":3}"#).await.unwrap();
    s.complete(&forced, "{}", 1, None).await.unwrap();
    assert!(s.flag("rec000", TARGET_FILE, Some("black")).await.unwrap());
    assert_eq!(s.requeue(&Requeue::Flagged(None)).await.unwrap(), 1);
    let flagged = s.claim("w1", lease, None).await.unwrap().unwrap();
    assert_eq!(flagged.checkpoint.as_deref(), Some(r#"{"k":3}"#));
}

/// `complete` keeps how a recording's picture was captured beside its output (none for a
/// download); `jobs` and `placed` read it back; a redo drops it with the output, and the next
/// completion writes its own.
async fn the_recording_mode_is_kept_with_the_output_and_goes_with_a_redo(b: Backend) {
    let f = Fixture::new(b, 5).await;
    let (s, lease) = (&f.store, f.lease);
    s.enqueue(&jobs(3)).await.unwrap();
    for mode in [
        Some(RecordingMode::Fast),
        Some(RecordingMode::RealTime),
        None,
    ] {
        let l = s.claim("w", lease, None).await.unwrap().unwrap();
        s.complete(&l, "{}", 1, mode).await.unwrap();
    }
    let modes = |rows: Vec<JobRow>| -> Vec<_> {
        rows.into_iter()
            .map(|r| (r.recording_id, r.recording_mode))
            .collect()
    };
    assert_eq!(
        modes(s.jobs().await.unwrap()),
        [
            ("rec000".to_owned(), Some(RecordingMode::Fast)),
            ("rec001".to_owned(), Some(RecordingMode::RealTime)),
            ("rec002".to_owned(), None),
        ]
    );
    let mut placed: Vec<_> = s
        .placed()
        .await
        .unwrap()
        .into_iter()
        .map(|p| (p.recording_id, p.recording_mode))
        .collect();
    placed.sort();
    assert_eq!(
        placed,
        [
            ("rec000".to_owned(), Some("fast".to_owned())),
            ("rec001".to_owned(), Some("real_time".to_owned())),
            ("rec002".to_owned(), None),
        ]
    );
    // Redone (`--force`): the mode goes with the output it described.
    let again = vec!["rec000".to_owned()];
    assert_eq!(s.requeue(&Requeue::Force(again.clone())).await.unwrap(), 1);
    assert_eq!(s.jobs().await.unwrap()[0].recording_mode, None);
    let l = s.claim("w", lease, Some(&again)).await.unwrap().unwrap();
    s.complete(&l, "{}", 1, Some(RecordingMode::RealTime))
        .await
        .unwrap();
    assert_eq!(
        s.jobs().await.unwrap()[0].recording_mode,
        Some(RecordingMode::RealTime)
    );
}

/// A ledger left by a bbb-migrate from before `recording_mode` (migration 4 not applied, an
/// output placed): readers refuse it until a writer upgrades it in place, which keeps every row;
/// the output placed before has no mode, and the next completion records one.
async fn an_older_ledger_gets_the_mode_column_in_place_and_its_outputs_have_no_mode(b: Backend) {
    let f = Fixture::new(b, 5).await;
    let (s, lease) = (&f.store, f.lease);
    s.enqueue(&jobs(2)).await.unwrap();
    let l = s.claim("w", lease, None).await.unwrap().unwrap();
    s.complete(&l, r#"{"kind":"presentation"}"#, 10, None)
        .await
        .unwrap();
    s.close().await;
    f.execute("DELETE FROM _sqlx_migrations WHERE version = 4")
        .await;
    f.execute("ALTER TABLE job DROP COLUMN recording_mode")
        .await;
    let clock: Arc<dyn Clock> = f.clock.clone();
    match AnyLedger::open_read_only(&f.url, clock.clone()).await {
        Err(LedgerError::SchemaBehind(pending)) => assert_eq!(pending, vec![4]),
        other => panic!("{other:?}"),
    }
    let w = AnyLedger::open(&f.url, clock.clone(), RetryPolicy::default())
        .await
        .unwrap();
    let rows = w.jobs().await.unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].state, JobState::Succeeded);
    assert_eq!(rows[0].output_bytes, Some(10));
    assert_eq!(rows[0].recording_mode, None);
    let l = w.claim("w", lease, None).await.unwrap().unwrap();
    w.complete(&l, "{}", 1, Some(RecordingMode::Fast))
        .await
        .unwrap();
    w.close().await;
    let r = AnyLedger::open_read_only(&f.url, clock).await.unwrap();
    let modes: Vec<_> = r
        .jobs()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.recording_mode)
        .collect();
    assert_eq!(modes, [None, Some(RecordingMode::Fast)]);
    r.close().await;
}

async fn sheets_flags_phases_and_attempts_follow_the_job(b: Backend) {
    let f = Fixture::new(b, 5).await;
    let (s, lease) = (&f.store, f.lease);
    s.enqueue(&jobs(2)).await.unwrap();
    // A failure keeps its phase apart from its text, and the attempt shows in the history.
    let first = s.claim("w1", lease, None).await.unwrap().unwrap();
    s.fail(&first, ErrorClass::Transient, "download", "HTTP 503")
        .await
        .unwrap();
    let row = |rows: Vec<JobRow>| {
        rows.into_iter()
            .find(|r| r.recording_id == "rec000")
            .unwrap()
    };
    let failed = row(s.jobs().await.unwrap());
    assert_eq!(failed.error_phase.as_deref(), Some("download"));
    f.pass(f.retry_base * 2).await;
    let l = s
        .claim("w2", lease, Some(&["rec000".to_string()]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(l.epoch, first.epoch + 1);
    // The sheet is written under the lease: a stale holder writes nothing.
    assert!(lost(s.put_sheet(&first, "{}", b"old").await));
    s.put_sheet(&l, r#"{"v":1}"#, b"\xff\xd8one").await.unwrap();
    s.put_sheet(&l, r#"{"v":2}"#, b"\xff\xd8two").await.unwrap();
    s.complete(&l, "{}", 10, None).await.unwrap();
    let done = row(s.jobs().await.unwrap());
    assert_eq!(
        done.error_phase, None,
        "a success clears the failure's phase"
    );
    assert_eq!(
        s.sheet(l.job_id).await.unwrap(),
        Some((r#"{"v":2}"#.to_string(), b"\xff\xd8two".to_vec())),
        "the last sheet of the job replaces the earlier one"
    );
    let attempts = s.attempts(l.job_id).await.unwrap();
    let outcomes: Vec<_> = attempts
        .iter()
        .map(|a| (a.worker.as_str(), a.outcome.as_deref(), a.error.as_deref()))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("w1", Some("transient"), Some("HTTP 503")),
            ("w2", Some("succeeded"), None)
        ]
    );
    assert!(attempts.iter().all(|a| a.ended_ms >= Some(a.started_ms)));
    let placed = s.placed().await.unwrap();
    assert_eq!(placed.len(), 1);
    assert_eq!(placed[0].sheet_layout.as_deref(), Some(r#"{"v":2}"#));
    assert_eq!(placed[0].payload, r#"{"n":0}"#);

    // Only a placed recording can be flagged; `Flagged` redoes the flagged ones only, and the
    // redo takes the flag and the sheet with the output.
    assert!(!s.flag("rec001", TARGET_FILE, Some("black")).await.unwrap());
    assert!(
        s.flag("rec000", TARGET_FILE, Some("black screen"))
            .await
            .unwrap()
    );
    let flagged = row(s.jobs().await.unwrap());
    assert!(flagged.flagged_at_ms.is_some());
    assert_eq!(flagged.flag_note.as_deref(), Some("black screen"));
    assert!(s.flag("rec000", TARGET_FILE, None).await.unwrap());
    assert_eq!(row(s.jobs().await.unwrap()).flagged_at_ms, None);
    assert_eq!(s.requeue(&Requeue::Flagged(None)).await.unwrap(), 0);
    s.flag("rec000", TARGET_FILE, Some("black screen"))
        .await
        .unwrap();
    let other = vec!["rec001".to_string()];
    assert_eq!(s.requeue(&Requeue::Flagged(Some(other))).await.unwrap(), 0);
    assert_eq!(s.requeue(&Requeue::Flagged(None)).await.unwrap(), 1);
    let redo = row(s.jobs().await.unwrap());
    assert_eq!(redo.state, JobState::Pending);
    assert_eq!((redo.flagged_at_ms, redo.output), (None, None));
    assert_eq!(s.sheet(l.job_id).await.unwrap(), None);
    assert!(s.placed().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_ledger_behind_this_builds_schema_is_refused_by_readers_until_a_writer_migrates_it() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(SimulatedClock::new(1_000_000));
    let url = format!("sqlite://{}", dir.path().join("ledger.db").display());
    let w = SqliteLedger::open(&url, clock.clone(), RetryPolicy::default())
        .await
        .unwrap();
    w.enqueue(&jobs(1)).await.unwrap();
    w.close().await;
    // As bbb-migrate 0.1 with migrations 1 and 2 left it: migrations 3 and 4 undone.
    let db = sqlx::SqlitePool::connect(&url).await.unwrap();
    for undo in [
        "DELETE FROM _sqlx_migrations WHERE version IN (3, 4)",
        "ALTER TABLE job DROP COLUMN recording_mode",
        "DROP TABLE contact_sheet",
        "ALTER TABLE job DROP COLUMN error_phase",
        "ALTER TABLE job DROP COLUMN flagged_at",
        "ALTER TABLE job DROP COLUMN flag_note",
    ] {
        sqlx::query(undo).execute(&db).await.unwrap();
    }
    db.close().await;
    match AnyLedger::open_read_only(&url, clock.clone()).await {
        Err(LedgerError::SchemaBehind(pending)) => assert_eq!(pending, vec![3, 4]),
        other => panic!("{other:?}"),
    }
    // The next writer applies what is missing, and readers read again, the job kept.
    let w = SqliteLedger::open(&url, clock.clone(), RetryPolicy::default())
        .await
        .unwrap();
    w.close().await;
    let r = AnyLedger::open_read_only(&url, clock).await.unwrap();
    assert_eq!(r.jobs().await.unwrap().len(), 1);
    r.close().await;
}

#[tokio::test]
async fn sqlite_read_only_open_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(SimulatedClock::new(1_000_000));
    let url = format!("sqlite://{}", dir.path().join("absent.db").display());
    let s = SqliteLedger::open_read_only(&url, clock.clone())
        .await
        .unwrap();
    assert!(s.jobs().await.unwrap().is_empty());
    s.close().await;
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    let url = format!("sqlite://{}", dir.path().join("ledger.db").display());
    let w = SqliteLedger::open(&url, clock.clone(), RetryPolicy::default())
        .await
        .unwrap();
    w.enqueue(&jobs(2)).await.unwrap();
    w.close().await;
    let listing = |d: &std::path::Path| {
        let mut v: Vec<_> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        v.sort();
        v
    };
    let before = listing(dir.path());
    let bytes = std::fs::read(dir.path().join("ledger.db")).unwrap();
    let r = SqliteLedger::open_read_only(&url, clock).await.unwrap();
    assert_eq!(r.jobs().await.unwrap().len(), 2);
    r.close().await;
    assert_eq!(listing(dir.path()), before);
    assert_eq!(std::fs::read(dir.path().join("ledger.db")).unwrap(), bytes);
}

/// `status` and `list` during a claim run: the writer's changes may still be only in its WAL
/// (on a first run even the tables are), and a read-only reader must see them.
#[tokio::test]
async fn sqlite_read_only_open_sees_a_running_writers_changes() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(SimulatedClock::new(1_000_000));
    let url = format!("sqlite://{}", dir.path().join("ledger.db").display());
    let w = SqliteLedger::open(&url, clock.clone(), RetryPolicy::default())
        .await
        .unwrap();
    assert!(
        dir.path().join("ledger.db-wal").exists(),
        "the writer runs in WAL mode"
    );
    let r = SqliteLedger::open_read_only(&url, clock.clone())
        .await
        .unwrap();
    assert!(r.jobs().await.unwrap().is_empty());
    r.close().await;
    w.enqueue(&jobs(3)).await.unwrap();
    let lease = w
        .claim("host-a", Duration::from_secs(60), None)
        .await
        .unwrap()
        .expect("a job");
    let r = SqliteLedger::open_read_only(&url, clock.clone())
        .await
        .unwrap();
    let seen = r.jobs().await.unwrap();
    assert_eq!(seen.len(), 3);
    assert_eq!(
        seen.iter().filter(|j| j.state == JobState::Running).count(),
        1,
        "the running job is seen as running"
    );
    r.close().await;
    w.complete(&lease, "{}", 10, None).await.unwrap();
    w.close().await;
}

#[tokio::test]
async fn postgres_schema_is_created_once_by_versioned_migrations() {
    let pg = tokio::task::spawn_blocking(|| Postgres::start().unwrap())
        .await
        .unwrap();
    pg.create_database("ledger").unwrap();
    let url = pg.url("ledger");
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    // Reading a database the tool never wrote to: empty, and nothing created.
    let r = AnyLedger::open_read_only(&url, clock.clone())
        .await
        .unwrap();
    assert!(r.jobs().await.unwrap().is_empty());
    assert!(r.running().await.unwrap().is_empty());
    r.close().await;
    assert_eq!(
        pg.psql("ledger", "SELECT to_regclass('job') IS NULL")
            .unwrap(),
        "t"
    );
    // Several hosts starting at once apply each migration exactly once.
    let opens = (0..4).map(|_| AnyLedger::open(&url, clock.clone(), RetryPolicy::default()));
    for l in futures::future::join_all(opens).await {
        l.unwrap().close().await;
    }
    assert_eq!(
        pg.psql("ledger", "SELECT string_agg(version::text, ',' ORDER BY version) FROM _sqlx_migrations WHERE success")
            .unwrap(),
        "1,2,3,4"
    );
    let l = AnyLedger::open(&url, clock, RetryPolicy::default())
        .await
        .unwrap();
    l.enqueue(&jobs(1)).await.unwrap();
    let lease = l
        .claim("host-a:1", Duration::from_secs(60), None)
        .await
        .unwrap()
        .unwrap();
    let running = l.running().await.unwrap();
    assert_eq!(running.len(), 1);
    assert_eq!(running[0].owner.as_deref(), Some("host-a:1"));
    assert_eq!(running[0].epoch, lease.epoch);
    assert!(running[0].since_ms.is_some() && !running[0].expired);
    l.close().await;
}

#[tokio::test]
async fn postgres_ledger_survives_a_server_restart() {
    let pg = tokio::task::spawn_blocking(|| Postgres::start().unwrap())
        .await
        .unwrap();
    pg.create_database("ledger").unwrap();
    let l = AnyLedger::open(
        &pg.url("ledger"),
        Arc::new(SystemClock),
        RetryPolicy::default(),
    )
    .await
    .unwrap();
    l.enqueue(&jobs(2)).await.unwrap();
    let lease = l
        .claim("w", Duration::from_secs(60), None)
        .await
        .unwrap()
        .unwrap();
    let before = pg
        .psql("postgres", "SELECT pg_postmaster_start_time()")
        .unwrap();
    pg.restart().unwrap();
    let after = pg
        .psql("postgres", "SELECT pg_postmaster_start_time()")
        .unwrap();
    assert_ne!(before, after, "the server really restarted");
    // The pool drops the broken connections and opens new ones; the lease is still held.
    let mut ok = false;
    for _ in 0..20 {
        if l.heartbeat(&lease, Duration::from_secs(60), None)
            .await
            .is_ok()
        {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(ok, "heartbeat never succeeded after the restart");
    l.complete(&lease, "{}", 1, None).await.unwrap();
    let next = l
        .claim("w", Duration::from_secs(60), None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(next.recording_id, "rec001");
    l.close().await;
}
