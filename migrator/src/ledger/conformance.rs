//! Behaviour every `JobStore` backend must have (ledger.md B8), run here against SQLite with an
//! injected clock. The PostgreSQL backend will run the same functions.

use std::sync::Arc;
use std::time::Duration;

use super::sqlite::SqliteLedger;
use super::*;

const LEASE: Duration = Duration::from_secs(90);

fn jobs(n: usize) -> Vec<NewJob> {
    (0..n)
        .map(|i| NewJob {
            recording_id: format!("rec{i:03}"),
            target: TARGET_FILE.into(),
            payload: format!("{{\"n\":{i}}}"),
        })
        .collect()
}

async fn store(
    dir: &tempfile::TempDir,
    clock: Arc<SimulatedClock>,
    max_attempts: i64,
) -> SqliteLedger {
    let url = format!("sqlite://{}", dir.path().join("ledger.db").display());
    let policy = RetryPolicy {
        max_attempts,
        base: Duration::from_secs(10),
        cap: Duration::from_secs(600),
    };
    SqliteLedger::open(&url, clock, policy).await.unwrap()
}

fn lost(r: LedgerResult<impl std::fmt::Debug>) -> bool {
    matches!(r, Err(LedgerError::LeaseLost { .. }))
}

#[tokio::test]
async fn enqueue_is_idempotent_and_keeps_state() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(SimulatedClock::new(1_000_000));
    let s = store(&dir, clock.clone(), 5).await;
    assert_eq!(s.enqueue(&jobs(3)).await.unwrap(), 3);
    let l = s.claim("w1", LEASE, None).await.unwrap().unwrap();
    s.complete(&l, "{}", 10).await.unwrap();
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

#[tokio::test]
async fn concurrent_claimers_take_each_job_once() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(SimulatedClock::new(1_000_000));
    let s = Arc::new(store(&dir, clock, 5).await);
    s.enqueue(&jobs(40)).await.unwrap();
    let mut tasks = Vec::new();
    for w in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(l) = s.claim(&format!("w{w}"), LEASE, None).await.unwrap() {
                got.push(l.recording_id);
            }
            got
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    let before = all.len();
    all.dedup();
    assert_eq!(before, 40, "every job claimed");
    assert_eq!(all.len(), 40, "no job claimed twice");
}

#[tokio::test]
async fn claim_respects_the_selection() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(SimulatedClock::new(1_000_000));
    let s = store(&dir, clock, 5).await;
    s.enqueue(&jobs(5)).await.unwrap();
    let only = vec!["rec003".to_owned()];
    let l = s.claim("w", LEASE, Some(&only)).await.unwrap().unwrap();
    assert_eq!(l.recording_id, "rec003");
    assert!(s.claim("w", LEASE, Some(&only)).await.unwrap().is_none());
}

#[tokio::test]
async fn expired_lease_is_taken_over_and_the_stale_worker_is_fenced() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(SimulatedClock::new(1_000_000));
    let s = store(&dir, clock.clone(), 5).await;
    s.enqueue(&jobs(1)).await.unwrap();
    let old = s.claim("w1", LEASE, None).await.unwrap().unwrap();
    assert_eq!(old.epoch, 1);
    // Still leased: nobody else gets it.
    clock.advance(Duration::from_secs(60));
    assert!(s.claim("w2", LEASE, None).await.unwrap().is_none());
    // A heartbeat extends it.
    assert!(!s.heartbeat(&old, LEASE).await.unwrap());
    clock.advance(Duration::from_secs(60));
    assert!(s.claim("w2", LEASE, None).await.unwrap().is_none());
    // Silence past the lease: takeover with a new epoch.
    clock.advance(Duration::from_secs(31));
    let new = s.claim("w2", LEASE, None).await.unwrap().unwrap();
    assert_eq!(new.epoch, 2);
    assert_eq!(new.attempts, 2);
    // Every write of the stale holder affects nothing.
    assert!(lost(s.heartbeat(&old, LEASE).await));
    assert!(lost(s.checkpoint(&old, "{}").await));
    assert!(lost(s.reserve_output(&old, "/x").await));
    assert!(lost(s.complete(&old, "{}", 1).await));
    assert!(lost(s.fail(&old, ErrorClass::Transient, "x").await));
    assert!(lost(s.release(&old).await));
    // The new holder is unaffected.
    s.checkpoint(&new, "{\"k\":1}").await.unwrap();
    s.complete(&new, "{}", 7).await.unwrap();
    let rows = s.jobs().await.unwrap();
    assert_eq!(rows[0].state, JobState::Succeeded);
    assert_eq!(rows[0].output_bytes, Some(7));
}

#[tokio::test]
async fn transient_failures_back_off_then_die_and_permanent_dies_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(SimulatedClock::new(1_000_000));
    let s = store(&dir, clock.clone(), 3).await;
    s.enqueue(&jobs(2)).await.unwrap();
    let only = vec!["rec000".to_owned()];
    let mut last_run_after = 0;
    for attempt in 1..=3 {
        let l = s.claim("w", LEASE, Some(&only)).await.unwrap().unwrap();
        assert_eq!(l.attempts, attempt);
        let st = s.fail(&l, ErrorClass::Transient, "HTTP 503").await.unwrap();
        let row = s
            .jobs()
            .await
            .unwrap()
            .into_iter()
            .find(|r| r.recording_id == "rec000")
            .unwrap();
        if attempt < 3 {
            assert_eq!(st, JobState::Pending);
            assert!(row.run_after_ms > clock.now_ms(), "backoff in the future");
            let delay = row.run_after_ms - clock.now_ms();
            assert!(
                delay > last_run_after,
                "backoff grows: {delay} > {last_run_after}"
            );
            last_run_after = delay;
            assert!(
                s.claim("w", LEASE, Some(&only)).await.unwrap().is_none(),
                "not before run_after"
            );
            clock.advance(Duration::from_millis(delay as u64 + 1));
        } else {
            assert_eq!(st, JobState::Dead);
            assert_eq!(row.last_error.as_deref(), Some("HTTP 503"));
        }
    }
    let l = s.claim("w", LEASE, None).await.unwrap().unwrap();
    assert_eq!(l.recording_id, "rec001");
    assert_eq!(
        s.fail(&l, ErrorClass::Permanent, "HTTP 404").await.unwrap(),
        JobState::Dead
    );
    assert!(s.claim("w", LEASE, None).await.unwrap().is_none());
    // retry --failed brings both back.
    assert_eq!(s.requeue(&Requeue::Failed(None)).await.unwrap(), 2);
    assert!(s.claim("w", LEASE, None).await.unwrap().is_some());
}

#[tokio::test]
async fn expired_job_without_attempts_left_is_swept_to_dead() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(SimulatedClock::new(1_000_000));
    let s = store(&dir, clock.clone(), 1).await;
    s.enqueue(&jobs(1)).await.unwrap();
    let _l = s.claim("w", LEASE, None).await.unwrap().unwrap();
    clock.advance(LEASE * 2);
    assert!(s.claim("w2", LEASE, None).await.unwrap().is_none());
    assert_eq!(s.sweep().await.unwrap(), 1);
    assert_eq!(s.jobs().await.unwrap()[0].state, JobState::Dead);
}

#[tokio::test]
async fn cancel_pending_and_running() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(SimulatedClock::new(1_000_000));
    let s = store(&dir, clock, 5).await;
    s.enqueue(&jobs(2)).await.unwrap();
    let l = s
        .claim("w", LEASE, Some(&["rec000".to_owned()]))
        .await
        .unwrap()
        .unwrap();
    assert!(s.cancel("rec001", TARGET_FILE).await.unwrap());
    assert!(s.cancel("rec000", TARGET_FILE).await.unwrap());
    assert!(
        s.heartbeat(&l, LEASE).await.unwrap(),
        "the worker learns of the cancel"
    );
    let rows = s.jobs().await.unwrap();
    assert_eq!(rows[1].state, JobState::Cancelled);
    assert!(s.claim("w", LEASE, None).await.unwrap().is_none());
}

#[tokio::test]
async fn output_names_have_one_owner_and_release_keeps_the_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(SimulatedClock::new(1_000_000));
    let s = store(&dir, clock, 5).await;
    s.enqueue(&jobs(2)).await.unwrap();
    let a = s.claim("w", LEASE, None).await.unwrap().unwrap();
    let b = s.claim("w", LEASE, None).await.unwrap().unwrap();
    s.reserve_output(&a, "/claim/x.m4v").await.unwrap();
    assert!(matches!(
        s.reserve_output(&b, "/claim/x.m4v").await,
        Err(LedgerError::OutputTaken(_))
    ));
    s.reserve_output(&b, "/claim/x-2.m4v").await.unwrap();
    // Released (Ctrl-C): back to pending, attempt not consumed, reservation kept for the rerun.
    s.release(&a).await.unwrap();
    let again = s.claim("w", LEASE, None).await.unwrap().unwrap();
    assert_eq!(again.recording_id, a.recording_id);
    assert_eq!(again.attempts, 1);
    assert_eq!(again.output_path.as_deref(), Some("/claim/x.m4v"));
}

#[tokio::test]
async fn read_only_open_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(SimulatedClock::new(1_000_000));
    let url = format!("sqlite://{}", dir.path().join("absent.db").display());
    let s = SqliteLedger::open_read_only(&url, clock.clone())
        .await
        .unwrap();
    assert!(s.jobs().await.unwrap().is_empty());
    s.close().await;
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    let w = store(&dir, clock.clone(), 5).await;
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
    let url = format!("sqlite://{}", dir.path().join("ledger.db").display());
    let r = SqliteLedger::open_read_only(&url, clock).await.unwrap();
    assert_eq!(r.jobs().await.unwrap().len(), 2);
    r.close().await;
    assert_eq!(listing(dir.path()), before);
    assert_eq!(std::fs::read(dir.path().join("ledger.db")).unwrap(), bytes);
}
