//! Ledger benchmark: claims per second and heartbeat cost with N workers (default 8) on
//! PostgreSQL, to size how many encoding hosts one database serves. Starts a throw-away server
//! on 127.0.0.1 (Debian package `postgresql`) unless a URL is given.
//!
//! `cargo run --release -p bbb-migrator --example ledger_bench -- [--workers N] [--jobs M] [--url postgres://...]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use bbb_migrator::ledger::any::AnyLedger;
use bbb_migrator::ledger::{JobStore, NewJob, RetryPolicy, SystemClock, TARGET_FILE};

const LEASE: Duration = Duration::from_secs(90);
/// What a recording worker sends with each heartbeat.
const PROGRESS: &str = r#"{"unit":"seconds","done":1234.5,"total":5400.0}"#;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let workers: usize = arg("--workers")
        .map(|v| v.parse())
        .transpose()?
        .unwrap_or(8);
    let jobs: usize = arg("--jobs")
        .map(|v| v.parse())
        .transpose()?
        .unwrap_or(4000);
    // Keeps the throw-away server alive until the end (dropping it stops the server).
    let mut _server = None;
    let url = match arg("--url") {
        Some(u) => u,
        None => {
            let pg = fake_bbb::postgres::Postgres::start()?;
            pg.create_database("bench")?;
            let u = pg.url("bench");
            _server = Some(pg);
            u
        }
    };
    let ledger =
        Arc::new(AnyLedger::open(&url, Arc::new(SystemClock), RetryPolicy::default()).await?);
    let batch: Vec<NewJob> = (0..jobs)
        .map(|i| NewJob {
            recording_id: format!("bench-{i:06}"),
            target: TARGET_FILE.into(),
            payload: "{}".into(),
        })
        .collect();
    let t = Instant::now();
    ledger.enqueue(&batch).await?;
    println!("enqueue: {jobs} jobs in {:.2} s", t.elapsed().as_secs_f64());

    // Claims: every worker claims until the queue is empty.
    let t = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..workers {
        let l = ledger.clone();
        tasks.push(tokio::spawn(async move {
            let mut leases = Vec::new();
            while let Some(lease) = l.claim(&format!("bench:{w}"), LEASE, None).await? {
                leases.push(lease);
            }
            Ok::<_, bbb_migrator::ledger::LedgerError>(leases)
        }));
    }
    let mut leases = Vec::new();
    for task in tasks {
        leases.push(task.await??);
    }
    let secs = t.elapsed().as_secs_f64();
    let claimed: usize = leases.iter().map(Vec::len).sum();
    assert_eq!(claimed, jobs, "every job claimed exactly once");
    println!(
        "claim: {workers} workers, {claimed} claims in {secs:.2} s = {:.0} claims/s",
        claimed as f64 / secs
    );

    // Heartbeats: every worker renews each of its leases in turn for a few seconds.
    let window = Duration::from_secs(5);
    let t = Instant::now();
    let mut tasks = Vec::new();
    for mine in leases {
        let l = ledger.clone();
        tasks.push(tokio::spawn(async move {
            let (mut n, mut total) = (0u64, Duration::ZERO);
            'outer: loop {
                for lease in &mine {
                    if t.elapsed() >= window {
                        break 'outer;
                    }
                    let s = Instant::now();
                    l.heartbeat(lease, LEASE, Some(PROGRESS)).await?;
                    total += s.elapsed();
                    n += 1;
                }
            }
            Ok::<_, bbb_migrator::ledger::LedgerError>((n, total))
        }));
    }
    let (mut n, mut total) = (0u64, Duration::ZERO);
    for task in tasks {
        let (a, b) = task.await??;
        n += a;
        total += b;
    }
    let secs = t.elapsed().as_secs_f64();
    let per = total.as_secs_f64() * 1000.0 / n.max(1) as f64;
    println!(
        "heartbeat: {workers} workers, {n} in {secs:.2} s = {:.0}/s, {per:.2} ms each",
        n as f64 / secs
    );
    // With a 90 s lease a job heartbeats every 30 s, so the database sustains this many
    // concurrently running jobs on heartbeats alone.
    println!(
        "=> about {:.0} concurrent jobs at one heartbeat per 30 s",
        n as f64 / secs * 30.0
    );
    ledger.close().await;
    Ok(())
}
