//! The claim loop that every kind of ledger job runs through (`claim`'s files, `import`'s Pod
//! entries): a number of workers each take a job of one target from the selection, run it, and
//! take the next. With `wait` they also wait for the jobs other hosts hold (taking over those
//! whose lease runs out) and for retry backoffs, until every selected job is finished. A ledger
//! that cannot be reached is retried for a while before a worker gives up, and a shutdown
//! request stops the workers between jobs; how the job in hand stops is the job's own business.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::ledger::{JobStore, Lease};

/// One kind of job: what a worker does with a lease it took.
pub trait JobRunner: Send + Sync + 'static {
    /// What one job ends with, collected for the run's summary.
    type Report: Send + 'static;
    /// Runs the job of `lease`, taken just after `claimed` (its lease lasts at least until
    /// `claimed` + the lease duration).
    fn run(&self, lease: Lease, claimed: Instant) -> impl Future<Output = Self::Report> + Send;
}

/// How a pool claims.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    /// The ledger target of the jobs (`file`, `import`).
    pub target: &'static str,
    /// The lease each claim asks for.
    pub lease: Duration,
    /// Wait for jobs held elsewhere or backing off, until the selection is finished.
    pub wait: bool,
    /// One lease owner name per worker (as many workers as names).
    pub worker_names: Vec<String>,
}

/// Runs the workers until every job of the selection `only` is finished (without `wait`: until
/// nothing claimable is left) or `shutdown` becomes true. The reports in the order the jobs
/// ended within each worker, workers one after the other.
pub async fn run<S, R>(
    store: Arc<S>,
    runner: Arc<R>,
    settings: PoolSettings,
    only: Vec<String>,
    shutdown: watch::Receiver<bool>,
) -> Vec<R::Report>
where
    S: JobStore + Send + Sync + 'static,
    R: JobRunner,
{
    let only = Arc::new(only);
    let settings = Arc::new(settings);
    let mut tasks = Vec::new();
    for name in settings.worker_names.clone() {
        let (store, runner, settings, only) = (
            store.clone(),
            runner.clone(),
            settings.clone(),
            only.clone(),
        );
        let shutdown = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            worker_loop(&*store, &*runner, &settings, &name, &only, shutdown).await
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        match t.await {
            Ok(r) => all.extend(r),
            Err(e) => tracing::error!("worker task failed: {e}"),
        }
    }
    all
}

/// How long a worker keeps retrying when the ledger cannot be reached before it gives up: a
/// restarting database server or a network blip must not end the run.
fn ledger_patience(lease: Duration) -> Duration {
    (lease * 2).max(Duration::from_secs(30))
}

/// The pause between two looks at the ledger when there is nothing to claim yet: a third of the
/// lease, so that a dead host's job is taken over soon after its lease runs out.
pub fn poll_interval(lease: Duration) -> Duration {
    (lease / 3).clamp(Duration::from_millis(500), Duration::from_secs(10))
}

async fn worker_loop<S: JobStore, R: JobRunner>(
    store: &S,
    runner: &R,
    settings: &PoolSettings,
    name: &str,
    only: &[String],
    mut shutdown: watch::Receiver<bool>,
) -> Vec<R::Report> {
    let mut reports = Vec::new();
    let poll = poll_interval(settings.lease);
    let target = Some(settings.target);
    let mut failing_since: Option<Instant> = None;
    loop {
        if *shutdown.borrow() {
            break;
        }
        // Taken before the claim is sent: the lease runs at least until then + lease.
        let sent = Instant::now();
        let claimed = store
            .claim_target(name, settings.lease, Some(only), target)
            .await;
        let idle = match claimed {
            Ok(Some(lease)) => {
                failing_since = None;
                reports.push(runner.run(lease, sent).await);
                continue;
            }
            Ok(None) if !settings.wait => break,
            Ok(None) => {
                failing_since = None;
                // A job whose holder died with no attempt left would otherwise be waited for
                // forever.
                let left = match store.sweep().await {
                    Ok(_) => store.unfinished(Some(only), target).await,
                    Err(e) => Err(e),
                };
                match left {
                    Ok(0) => break,
                    Ok(_) => poll,
                    Err(e) => {
                        tracing::warn!("ledger: {e}");
                        poll
                    }
                }
            }
            Err(e) => {
                let since = *failing_since.get_or_insert(sent);
                if since.elapsed() >= ledger_patience(settings.lease) {
                    tracing::error!("claiming a job: {e}; giving up");
                    break;
                }
                tracing::warn!("claiming a job: {e}; retrying");
                poll.min(Duration::from_secs(2))
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(idle) => {}
            _ = shutdown.changed() => {}
        }
    }
    reports
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::ledger::sqlite::SqliteLedger;
    use crate::ledger::{JobState, NewJob, RetryPolicy, SimulatedClock};

    /// Completes every job it is given and notes which worker ran which recording.
    struct Completer {
        store: Arc<SqliteLedger>,
        ran: Mutex<Vec<(String, String)>>,
        /// Set after the first job: a shutdown request arriving while a job runs.
        stop_after_first: Option<watch::Sender<bool>>,
    }

    impl JobRunner for Completer {
        type Report = String;

        async fn run(&self, lease: Lease, _claimed: Instant) -> String {
            // Yields, so that the other workers get to claim while this job "runs".
            tokio::time::sleep(Duration::from_millis(20)).await;
            let owner = self
                .store
                .running()
                .await
                .unwrap()
                .into_iter()
                .find(|r| r.recording_id == lease.recording_id && r.target == lease.target)
                .and_then(|r| r.owner)
                .expect("a running job has its owner");
            self.store.complete(&lease, "out", 1, None).await.unwrap();
            self.ran
                .lock()
                .unwrap()
                .push((owner, lease.recording_id.clone()));
            if let Some(stop) = &self.stop_after_first {
                let _ = stop.send(true);
            }
            lease.recording_id
        }
    }

    async fn ledger(dir: &tempfile::TempDir, jobs: &[(&str, &str)]) -> Arc<SqliteLedger> {
        let url = format!("sqlite://{}", dir.path().join("l.db").display());
        let clock = Arc::new(SimulatedClock::new(1_000_000));
        let store = SqliteLedger::open(&url, clock, RetryPolicy::default())
            .await
            .unwrap();
        let new: Vec<NewJob> = jobs
            .iter()
            .map(|(id, target)| NewJob {
                recording_id: (*id).into(),
                target: (*target).into(),
                payload: "{}".into(),
            })
            .collect();
        store.enqueue(&new).await.unwrap();
        Arc::new(store)
    }

    fn settings(workers: usize, wait: bool) -> PoolSettings {
        PoolSettings {
            target: "file",
            // The pool looks again every lease/3 (at least 0.5 s); the ledger's clock is
            // simulated, so no lease runs out during a test.
            lease: Duration::from_millis(1500),
            wait,
            worker_names: (0..workers).map(|n| format!("host:1:w:{n}")).collect(),
        }
    }

    fn completer(store: &Arc<SqliteLedger>, stop: Option<watch::Sender<bool>>) -> Arc<Completer> {
        Arc::new(Completer {
            store: store.clone(),
            ran: Mutex::new(Vec::new()),
            stop_after_first: stop,
        })
    }

    async fn state(store: &SqliteLedger, id: &str, target: &str) -> JobState {
        store
            .jobs()
            .await
            .unwrap()
            .into_iter()
            .find(|j| j.recording_id == id && j.target == target)
            .map(|j| j.state)
            .unwrap()
    }

    #[tokio::test]
    async fn the_workers_run_each_selected_job_of_their_target_once() {
        let dir = tempfile::tempdir().unwrap();
        let jobs = [
            ("a", "file"),
            ("b", "file"),
            ("c", "file"),
            ("a", "import"),
            ("d", "file"),
        ];
        let store = ledger(&dir, &jobs).await;
        let runner = completer(&store, None);
        let (_tx, shutdown) = watch::channel(false);
        let only: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let mut reports = run(
            store.clone(),
            runner.clone(),
            settings(2, true),
            only,
            shutdown,
        )
        .await;
        reports.sort();
        assert_eq!(reports, ["a", "b", "c"]);
        let ran = runner.ran.lock().unwrap().clone();
        let workers: std::collections::BTreeSet<&str> = ran.iter().map(|r| r.0.as_str()).collect();
        assert_eq!(workers.len(), 2, "both workers took jobs: {ran:?}");
        assert_eq!(
            state(&store, "a", "import").await,
            JobState::Pending,
            "another target"
        );
        assert_eq!(
            state(&store, "d", "file").await,
            JobState::Pending,
            "not selected"
        );
    }

    #[tokio::test]
    async fn with_wait_a_job_held_elsewhere_is_waited_for_and_without_it_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let store = ledger(&dir, &[("held", "file"), ("free", "file")]).await;
        // Another host holds "held" (its claim comes first: the free job is left for the pool).
        let only: Vec<String> = vec!["held".into()];
        let other = store
            .claim_target(
                "other:9:x:0",
                Duration::from_secs(30),
                Some(&only),
                Some("file"),
            )
            .await
            .unwrap()
            .unwrap();
        let all: Vec<String> = vec!["held".into(), "free".into()];
        let (_tx, shutdown) = watch::channel(false);
        let runner = completer(&store, None);
        let reports = run(
            store.clone(),
            runner,
            settings(1, false),
            all.clone(),
            shutdown.clone(),
        )
        .await;
        assert_eq!(
            reports,
            ["free"],
            "without wait: ends when nothing is claimable"
        );
        assert_eq!(state(&store, "held", "file").await, JobState::Running);

        // With wait: the run ends once the other host finishes its job, not before.
        let finisher = {
            let store = store.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(700)).await;
                store.complete(&other, "theirs", 1, None).await.unwrap();
            })
        };
        let started = Instant::now();
        let reports = run(
            store.clone(),
            completer(&store, None),
            settings(1, true),
            all,
            shutdown,
        )
        .await;
        assert!(reports.is_empty(), "{reports:?}");
        assert!(
            started.elapsed() >= Duration::from_millis(600),
            "it waited for the other host"
        );
        finisher.await.unwrap();
        assert_eq!(state(&store, "held", "file").await, JobState::Succeeded);
    }

    #[tokio::test]
    async fn a_shutdown_stops_the_workers_between_jobs() {
        let dir = tempfile::tempdir().unwrap();
        let store = ledger(&dir, &[("a", "file"), ("b", "file"), ("c", "file")]).await;
        let (tx, shutdown) = watch::channel(false);
        let runner = completer(&store, Some(tx));
        let only: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let reports = run(store.clone(), runner, settings(1, true), only, shutdown).await;
        assert_eq!(
            reports.len(),
            1,
            "the job in hand ends, no other starts: {reports:?}"
        );
        let pending = store.unfinished(None, Some("file")).await.unwrap();
        assert_eq!(pending, 2);
    }
}
