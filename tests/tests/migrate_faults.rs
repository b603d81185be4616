//! Fault tests of `bbb-migrate claim` on several "hosts" of one machine: each host is a separate
//! `bbb-migrate claim --host NAME` process, all sharing one REAL PostgreSQL ledger started by the
//! test, with short leases (3 s) so that takeovers happen within seconds. Downloads are slowed by
//! the fake BBB server's throttle; presentations are recorded by the real `bbb-record` (Xvfb +
//! Chromium). Covered: kill -9 of a worker mid-job, SIGSTOP of a worker past its lease, a
//! PostgreSQL restart mid-batch, Chromium killed under a running recorder (as by the OOM killer),
//! `status` showing every host's running jobs with their media progress, a batch on two hosts
//! that the survivor of a kill -9 finishes (exit 0, no `--wait` needed), and `--no-wait` listing
//! the jobs held by another host (exit 4). Each test ends by
//! checking that no process it started (found by an environment marker every child inherits:
//! bbb-migrate, bbb-record, Xvfb, Chromium) is left running.

mod migrate_support;

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use fake_bbb::media::SAMPLE_A_SECONDS;
use fake_bbb::postgres::Postgres;
use fake_bbb::{ApiPlayback, ApiRecording, Throttle};
use migrate_support::*;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

const PRESENTATION_ID: &str = "2e7380bcd2a9cc83f2a744b8707a7f75c0a94e9d-1767261600000";
const PRESENTATION_FILE: &str = "sample-presentation-2026-01-01.mp4";
const VIDEO_FILE: &str = "sample-two-formats-2026-01-01.m4v";
const MARKER: &str = "BBB_MIGRATE_FAULT_TEST";

/// These tests run Chromium and several workers each on a small machine: one at a time keeps
/// their timings meaningful.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A test's world: the fake BBB server, its directories and config, and the shared ledger.
struct Cluster {
    env: Env,
    pg: Postgres,
    /// Value of the environment marker given to every process of this test.
    tag: String,
}

fn cluster(name: &str, recorder: bool) -> Cluster {
    let extra = if recorder {
        let bin = workspace_bin("bbb-record", "bbb-recorder");
        format!(
            "[recorder]\ncommand = \"{}\"\ngrace_secs = 3\n",
            bin.display()
        )
    } else {
        String::new()
    };
    let env = setup("prefix", &extra);
    let pg = Postgres::start().unwrap_or_else(|e| panic!("test PostgreSQL server: {e}"));
    pg.create_database("ledger").unwrap();
    let cfg = std::fs::read_to_string(&env.config).unwrap();
    let sqlite = format!("url = \"sqlite://{}\"", env.ledger.display());
    assert!(cfg.contains(&sqlite), "{cfg}");
    let cfg = cfg.replace(
        &sqlite,
        &format!("url = \"{}\"\nlease_secs = 3", pg.url("ledger")),
    );
    std::fs::write(&env.config, cfg).unwrap();
    let tag = format!("{name}-{}", std::process::id());
    Cluster { env, pg, tag }
}

/// One `bbb-migrate claim` process, in its own process group, killed with its group on drop.
struct Worker {
    child: Child,
    host: String,
    out: PathBuf,
    err: PathBuf,
    status: Option<ExitStatus>,
}

impl Cluster {
    fn worker(&self, host: &str, args: &[&str]) -> Worker {
        use std::os::unix::process::CommandExt;
        let out = self.env.dir.path().join(format!("{host}.stdout"));
        let err = self.env.dir.path().join(format!("{host}.stderr"));
        let mut all = vec!["--progress", "plain", "claim", "--host", host];
        all.extend_from_slice(args);
        let child = self
            .env
            .command(&all)
            .env(MARKER, &self.tag)
            .env("BBB_MIGRATE_LOG", "info")
            .stdin(Stdio::null())
            .stdout(File::create(&out).unwrap())
            .stderr(File::create(&err).unwrap())
            .process_group(0)
            .spawn()
            .expect("start bbb-migrate");
        Worker {
            child,
            host: host.to_owned(),
            out,
            err,
            status: None,
        }
    }

    fn psql(&self, sql: &str) -> String {
        self.pg.psql("ledger", sql).expect("psql")
    }

    /// `epoch worker-host outcome` of every attempt of a recording, oldest first.
    fn attempts(&self, record_id: &str) -> Vec<String> {
        let rows = self.psql(&format!(
            "SELECT a.epoch || ' ' || split_part(a.worker, ':', 1) || ' ' || COALESCE(a.outcome, '-')
             FROM job_attempt a JOIN job j ON j.id = a.job_id
             WHERE j.recording_id = '{record_id}' ORDER BY a.epoch"
        ));
        rows.lines().map(str::to_owned).collect()
    }

    fn tmp(&self) -> PathBuf {
        self.env.dir.path().join(".bbb-migrate-tmp")
    }

    /// Fails when a process of this test is still running once every worker has exited.
    fn assert_no_process_left(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let left = tagged(&self.tag);
            if left.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "processes left running: {left:#?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn status_json(&self) -> serde_json::Value {
        let o = self.env.run(&["status", "--json"]);
        expect_code(&o, 0);
        serde_json::from_slice(&o.stdout).expect("status --json")
    }
}

impl Worker {
    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    fn signal(&self, sig: Signal) {
        kill(self.pid(), sig).unwrap_or_else(|e| panic!("{sig} to worker {}: {e}", self.host));
    }

    fn logs(&self) -> String {
        format!(
            "--- {host} stdout\n{}\n--- {host} stderr\n{}",
            std::fs::read_to_string(&self.out).unwrap_or_default(),
            std::fs::read_to_string(&self.err).unwrap_or_default(),
            host = self.host
        )
    }

    fn running(&mut self) -> bool {
        self.status.is_none() && self.child.try_wait().unwrap().is_none()
    }

    /// Waits for the exit and returns the code (None: killed by a signal).
    fn wait(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = self.status {
                return s.code();
            }
            if let Some(s) = self.child.try_wait().unwrap() {
                self.status = Some(s);
                continue;
            }
            assert!(
                Instant::now() < deadline,
                "worker {} still running after {limit:?}\n{}",
                self.host,
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn expect_exit(&mut self, code: i32, limit: Duration) {
        let got = self.wait(limit);
        assert_eq!(
            got,
            Some(code),
            "exit of worker {}\n{}",
            self.host,
            self.logs()
        );
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if self.status.is_none() && self.child.try_wait().ok().flatten().is_none() {
            // A stopped worker must be continued to die of anything but SIGKILL; SIGKILL works
            // on stopped processes anyway.
            let _ = killpg(self.pid(), Signal::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

fn pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

fn is_live(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().next())
            != Some("Z")
    })
}

fn cmdline(pid: i32) -> String {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    String::from_utf8_lossy(&raw).replace('\0', " ")
}

/// Live processes carrying this test's environment marker, with their command lines.
fn tagged(tag: &str) -> Vec<String> {
    let needle = format!("{MARKER}={tag}\0");
    pids()
        .into_iter()
        .filter(|&p| is_live(p))
        .filter(|&p| {
            std::fs::read(format!("/proc/{p}/environ"))
                .is_ok_and(|env| env.windows(needle.len()).any(|w| w == needle.as_bytes()))
        })
        .map(|p| format!("{p}: {}", cmdline(p)))
        .collect()
}

/// Live processes whose command line contains `needle`.
fn pids_mentioning(needle: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    pids()
        .into_iter()
        .filter(|&p| p != me && is_live(p) && cmdline(p).contains(needle))
        .collect()
}

fn parent(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')')
        .next()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Every live descendant of `root`.
fn descendants(root: i32) -> Vec<i32> {
    let all: Vec<(i32, Option<i32>)> = pids().into_iter().map(|p| (p, parent(p))).collect();
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let p = found[i];
        found.extend(all.iter().filter(|(_, pp)| *pp == Some(p)).map(|(c, _)| *c));
        i += 1;
    }
    found.remove(0);
    found.into_iter().filter(|&p| is_live(p)).collect()
}

fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?}: {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The `bbb-record` process writing the partial file of lease `epoch` of `record_id`.
fn recorder_of(c: &Cluster, record_id: &str, epoch: i64) -> Option<i32> {
    let needle = c
        .tmp()
        .join(format!("{record_id}.{epoch}.partial"))
        .display()
        .to_string();
    pids_mentioning(&needle)
        .into_iter()
        .find(|&p| cmdline(p).contains("bbb-record"))
}

fn partials(c: &Cluster) -> Vec<String> {
    list(&c.tmp())
}

/// Video recordings served from the sample video file, under distinct names.
fn add_videos(c: &Cluster, numbers: &[u64]) -> Vec<String> {
    let mut ids = Vec::new();
    for &n in numbers {
        let id = ApiRecording::synthetic_id(n);
        let mut r = ApiRecording::new(&id);
        r.name = format!("Batch {n}");
        r.playbacks = vec![ApiPlayback {
            url: fake_bbb::PlaybackUrl::Absolute(format!(
                "{}/playback/video/{VIDEO_ID}/",
                c.env.bbb.base_url()
            )),
            ..ApiPlayback::served("video", 1)
        }];
        c.env.bbb.add_recording(r);
        ids.push(id);
    }
    ids
}

fn download_started(c: &Cluster, record_id: &str, epoch: i64) -> bool {
    std::fs::metadata(
        c.tmp()
            .join(format!("{record_id}.{epoch}.partial"))
            .join(format!("{record_id}.m4v")),
    )
    .is_ok_and(|m| m.len() > 0)
}

/// (lease epoch, lease expiry) of the job of `record_id`, on the database clock (seconds).
fn lease_of(c: &Cluster, record_id: &str) -> (i64, f64) {
    let row = c.psql(&format!(
        "SELECT lease_epoch || ' ' || extract(epoch FROM lease_expires_at) FROM job
         WHERE recording_id = '{record_id}'"
    ));
    let (epoch, expires) = row.split_once(' ').unwrap_or_else(|| panic!("{row}"));
    (epoch.parse().unwrap(), expires.parse().unwrap())
}

/// Watches the lease of `record_id`, held at epoch 1, until its holder has renewed it, checking
/// that `other` (a running worker of another host) does not take it from its live holder
/// meanwhile. Returns the latest expiry seen: the earliest moment another host may take it over.
/// (A holder renews its 3 s lease every second: it is only taken for dead after 2 s in which it
/// could not renew, thousands of round trips to the ledger.)
fn renewed_lease(c: &Cluster, record_id: &str, other: &Worker) -> f64 {
    let (epoch, first) = lease_of(c, record_id);
    assert_eq!(epoch, 1, "{}", other.logs());
    let mut expiry = first;
    wait_for(
        "the holder to renew its lease",
        Duration::from_secs(30),
        || {
            let (epoch, expires) = lease_of(c, record_id);
            assert_eq!(
                epoch,
                1,
                "the job was taken from a live holder\n{}",
                other.logs()
            );
            expiry = expiry.max(expires);
            (expires > first).then_some(())
        },
    );
    expiry
}

/// When attempt `epoch` of `record_id` started, on the database clock (seconds).
fn attempt_started(c: &Cluster, record_id: &str, epoch: i64) -> f64 {
    c.psql(&format!(
        "SELECT extract(epoch FROM a.started_at) FROM job_attempt a JOIN job j ON j.id = a.job_id
         WHERE j.recording_id = '{record_id}' AND a.epoch = {epoch}"
    ))
    .parse()
    .unwrap()
}

#[test]
fn kill_9_of_a_worker_mid_job_lets_another_host_take_it_after_the_lease() {
    let _serial = serial();
    let c = cluster("kill9", false);
    let size = sample_video().len() as u64;
    // About 10 s per download: long enough to be killed in the middle.
    c.env.bbb.faults().set_throttle(Some(Throttle {
        bytes_per_sec: size / 10,
        after_bytes: 0,
    }));
    let mut a = c.worker("a", &["--record-id", VIDEO_ID]);
    wait_for("host a's download", Duration::from_secs(30), || {
        download_started(&c, VIDEO_ID, 1).then_some(())
    });
    // `--wait` is the default now; the former opt-in is still accepted (and changes nothing).
    let mut b = c.worker("b", &["--wait", "--record-id", VIDEO_ID]);
    // While a renews its lease, b only waits: a's lease is seen renewed (its expiry moves on)
    // and still a's. The latest expiry seen of a's lease is the earliest b may take it over.
    let mut a_expiry = renewed_lease(&c, VIDEO_ID, &b);
    assert!(b.running(), "b gave up early\n{}", b.logs());
    a.signal(Signal::SIGKILL);
    assert_eq!(a.wait(Duration::from_secs(10)), None, "a died of SIGKILL");
    let (epoch, expires) = lease_of(&c, VIDEO_ID);
    assert_eq!(epoch, 1, "the job was a's when it was killed\n{}", b.logs());
    a_expiry = a_expiry.max(expires);
    c.env.bbb.faults().set_throttle(None);
    b.expect_exit(0, Duration::from_secs(60));
    // b took the job over only once a's lease had run out, on the database clock: a fact of the
    // ledger, whatever the machine's speed (a renewal that came late only moves it later).
    let taken = attempt_started(&c, VIDEO_ID, 2);
    assert!(
        taken >= a_expiry,
        "taken over {:.3} s before a's lease ran out",
        a_expiry - taken
    );
    assert_eq!(c.env.claimed(), vec![VIDEO_FILE.to_owned()]);
    assert_eq!(
        std::fs::read(c.env.claim.join(VIDEO_FILE)).unwrap(),
        sample_video()
    );
    assert_eq!(
        c.psql("SELECT state || ' ' || lease_epoch FROM job"),
        "succeeded 2"
    );
    assert_eq!(
        c.attempts(VIDEO_ID),
        vec!["1 a lease-expired", "2 b succeeded"]
    );
    assert!(partials(&c).is_empty(), "temp left: {:?}", partials(&c));
    c.assert_no_process_left();
}

/// The batch of the issue: two hosts run the same selection without `--wait`, one job each. Host
/// b finishes its own job while a is still downloading, and keeps waiting (it used to exit 1,
/// listing a's job as "running elsewhere"); a is killed -9 mid-download; b takes a's job over once
/// a's lease has run out and exits 0, the batch done. Exactly one file per recording.
#[test]
fn a_host_killed_mid_batch_leaves_its_job_to_the_survivor_which_exits_0() {
    let _serial = serial();
    let c = cluster("survivor", false);
    let mut ids = vec![VIDEO_ID.to_owned()];
    ids.extend(add_videos(&c, &[61]));
    let size = sample_video().len() as u64;
    // The throttle in force when a download starts holds for all of it: a's download would take
    // 20 s (it is killed long before), b's own 2 s.
    c.env.bbb.faults().set_throttle(Some(Throttle {
        bytes_per_sec: size / 20,
        after_bytes: 0,
    }));
    let mut args = vec!["--jobs", "1"];
    for id in &ids {
        args.extend(["--record-id", id.as_str()]);
    }
    let mut a = c.worker("a", &args);
    let a_job = wait_for("host a's download", Duration::from_secs(30), || {
        ids.iter().find(|id| download_started(&c, id, 1)).cloned()
    });
    let b_job = ids.iter().find(|id| **id != a_job).unwrap().clone();
    c.env.bbb.faults().set_throttle(Some(Throttle {
        bytes_per_sec: size / 2,
        after_bytes: 0,
    }));
    let mut b = c.worker("b", &args);
    wait_for(
        "host b's own job to succeed",
        Duration::from_secs(30),
        || {
            let row = c.psql(&format!(
                "SELECT state FROM job WHERE recording_id = '{b_job}'"
            ));
            (row == "succeeded").then_some(())
        },
    );
    assert_eq!(c.attempts(&b_job), vec!["1 b succeeded"]);
    // b, done with its own job, waits for a's while a lives and renews its lease.
    let mut a_expiry = renewed_lease(&c, &a_job, &b);
    assert!(b.running(), "b ended with a's job unfinished\n{}", b.logs());
    a.signal(Signal::SIGKILL);
    assert_eq!(a.wait(Duration::from_secs(10)), None, "a died of SIGKILL");
    let (epoch, expires) = lease_of(&c, &a_job);
    assert_eq!(epoch, 1, "the job was a's when it was killed\n{}", b.logs());
    a_expiry = a_expiry.max(expires);
    c.env.bbb.faults().set_throttle(None);
    b.expect_exit(0, Duration::from_secs(60));
    let taken = attempt_started(&c, &a_job, 2);
    assert!(
        taken >= a_expiry,
        "taken over {:.3} s before a's lease ran out",
        a_expiry - taken
    );
    assert_eq!(
        c.attempts(&a_job),
        vec!["1 a lease-expired", "2 b succeeded"]
    );
    let summary = std::fs::read_to_string(&b.out).unwrap();
    assert!(
        summary.contains("2 selected, 2 done, 0 skipped (already done), 0 failed,")
            && !summary.contains("FAILED")
            && !summary.contains("HELD"),
        "{}",
        b.logs()
    );
    let claimed = c.env.claimed();
    assert_eq!(claimed.len(), 2, "one file per recording: {claimed:?}");
    for name in &claimed {
        assert_eq!(
            std::fs::read(c.env.claim.join(name)).unwrap(),
            sample_video(),
            "{name}"
        );
    }
    assert_eq!(
        c.psql("SELECT state || ' ' || count(*) FROM job GROUP BY state"),
        "succeeded 2"
    );
    assert!(partials(&c).is_empty(), "temp left: {:?}", partials(&c));
    c.assert_no_process_left();
}

/// `--no-wait` on a host that finds the only job held by a live host ends at once with exit 4
/// and lists the job with its holder and lease expiry; the holder keeps it. With a job of its
/// own that failed for good as well, the failure wins: exit 1, both listed.
#[test]
fn no_wait_ends_at_once_with_exit_4_listing_the_jobs_other_hosts_hold() {
    let _serial = serial();
    let c = cluster("nowait", false);
    let size = sample_video().len() as u64;
    // a's download would take 20 s: it holds the job through the whole test.
    c.env.bbb.faults().set_throttle(Some(Throttle {
        bytes_per_sec: size / 20,
        after_bytes: 0,
    }));
    let mut a = c.worker("a", &["--record-id", VIDEO_ID]);
    wait_for("host a's download", Duration::from_secs(30), || {
        download_started(&c, VIDEO_ID, 1).then_some(())
    });
    let holder = c.psql("SELECT lease_owner FROM job");
    assert!(holder.starts_with("a:"), "{holder}");
    let held = format!("  HELD {VIDEO_ID} by {holder}, lease until ");

    let mut b = c.worker("b", &["--no-wait", "--record-id", VIDEO_ID]);
    b.expect_exit(4, Duration::from_secs(30));
    let out = std::fs::read_to_string(&b.out).unwrap();
    assert!(out.contains(&held), "{}", b.logs());
    assert!(
        out.contains("0 failed, 1 held by other hosts"),
        "{}",
        b.logs()
    );

    // A recording whose files the server does not have (404): dead at once.
    let mut gone = ApiRecording::new(ApiRecording::synthetic_id(71));
    gone.playbacks = vec![ApiPlayback::served("video", 1)];
    let gone_id = gone.record_id.clone();
    c.env.bbb.add_recording(gone);
    let mut b2 = c.worker(
        "b2",
        &[
            "--no-wait",
            "--record-id",
            VIDEO_ID,
            "--record-id",
            &gone_id,
        ],
    );
    b2.expect_exit(1, Duration::from_secs(30));
    let out = std::fs::read_to_string(&b2.out).unwrap();
    assert!(
        out.contains(&format!("FAILED {gone_id} [dead]")) && out.contains(&held),
        "{}",
        b2.logs()
    );
    // Neither took a's job.
    assert_eq!(lease_of(&c, VIDEO_ID).0, 1);
    assert_eq!(c.attempts(VIDEO_ID), vec!["1 a -"]);
    assert!(a.running(), "{}", a.logs());
    a.signal(Signal::SIGKILL);
    assert_eq!(a.wait(Duration::from_secs(10)), None, "a died of SIGKILL");
    assert!(c.env.claimed().is_empty(), "{:?}", c.env.claimed());
    c.assert_no_process_left();
}

#[test]
fn a_worker_stopped_past_its_lease_stops_its_recorder_and_places_nothing() {
    let _serial = serial();
    let c = cluster("sigstop", true);
    let mut a = c.worker("a", &["--wait", "--record-id", PRESENTATION_ID]);
    let a_rec = wait_for("host a's bbb-record", Duration::from_secs(60), || {
        recorder_of(&c, PRESENTATION_ID, 1)
    });
    std::thread::sleep(Duration::from_secs(1));
    a.signal(Signal::SIGSTOP);
    let mut b = c.worker("b", &["--wait", "--record-id", PRESENTATION_ID]);
    // b takes the job over once a's lease has expired and starts its own recorder.
    let b_rec = wait_for("host b's bbb-record", Duration::from_secs(60), || {
        recorder_of(&c, PRESENTATION_ID, 2)
    });
    assert!(
        is_live(a_rec),
        "a's recorder ended by itself while a was stopped: the test cannot tell who stopped it"
    );
    let a_children = descendants(a_rec);
    assert!(
        !a_children.is_empty(),
        "a's recorder has no Xvfb/Chromium children"
    );

    // `status` on any host: b's running job with its owner, start time and media progress.
    let s = wait_for(
        "b's progress in status --json",
        Duration::from_secs(60),
        || {
            let s = c.status_json();
            let r = &s["running"][0];
            (r["host"] == "b" && r["progress"]["done"].as_f64().is_some_and(|d| d > 0.0))
                .then_some(s)
        },
    );
    let r = &s["running"][0];
    assert_eq!(s["running"].as_array().unwrap().len(), 1, "{s}");
    assert_eq!(r["record_id"], PRESENTATION_ID);
    assert_eq!(r["epoch"], 2);
    assert!(r["owner"].as_str().unwrap().starts_with("b:"), "{s}");
    assert!(r["since_ms"].as_i64().is_some(), "{s}");
    assert_eq!(r["progress"]["unit"], "seconds", "{s}");
    // The total is the duration bbb-record announced (the media element's, else metadata.xml's).
    let total = r["progress"]["total"].as_f64().expect("duration known");
    let done = r["progress"]["done"].as_f64().unwrap();
    assert!(total >= 14.0 && done <= total, "{s}");
    let o = c.env.run(&["status"]);
    expect_code(&o, 0);
    let text_status = text(&o.stdout);
    let line = text_status
        .lines()
        .find(|l| l.starts_with("  b:") && l.contains(PRESENTATION_ID))
        .unwrap_or_else(|| panic!("no running line for b: {text_status}"));
    assert!(
        text_status.contains("running (per host):")
            && line.contains("epoch 2 since ")
            && line.contains("media ")
            && line.contains(" s of ")
            && line.contains(" %)"),
        "{text_status}"
    );

    a.signal(Signal::SIGCONT);
    // a notices at once that its lease ran out and stops its recorder's whole process group.
    wait_for("a's recorder to stop", Duration::from_secs(10), || {
        (!is_live(a_rec)).then_some(())
    });
    wait_for(
        "a's Xvfb and Chromium to stop",
        Duration::from_secs(10),
        || a_children.iter().all(|&p| !is_live(p)).then_some(()),
    );
    assert!(is_live(b_rec), "b's recorder was stopped too");
    wait_for("a's partial files to go", Duration::from_secs(10), || {
        (!c.tmp()
            .join(format!("{PRESENTATION_ID}.1.partial"))
            .exists())
        .then_some(())
    });
    assert!(c.env.claimed().is_empty(), "a placed something");

    b.expect_exit(0, Duration::from_secs(120));
    a.expect_exit(0, Duration::from_secs(30));
    assert!(
        a.logs().contains("lease-lost"),
        "a reports the lost lease\n{}",
        a.logs()
    );
    assert_eq!(c.env.claimed(), vec![PRESENTATION_FILE.to_owned()]);
    assert_recorded(&c.env.claim.join(PRESENTATION_FILE), SAMPLE_A_SECONDS);
    // a wrote nothing after the takeover: its attempt was closed by b's claim, not by a.
    assert_eq!(
        c.attempts(PRESENTATION_ID),
        vec!["1 a lease-expired", "2 b succeeded"]
    );
    assert_eq!(
        c.psql("SELECT state || ' ' || lease_epoch || ' ' || COALESCE(last_error, '-') FROM job"),
        "succeeded 2 -"
    );
    assert!(partials(&c).is_empty(), "temp left: {:?}", partials(&c));
    c.assert_no_process_left();
}

#[test]
fn a_postgresql_restart_mid_batch_loses_and_duplicates_nothing() {
    let _serial = serial();
    let c = cluster("pgrestart", false);
    let mut ids = vec![VIDEO_ID.to_owned()];
    ids.extend(add_videos(&c, &[51, 52, 53, 54, 55]));
    let size = sample_video().len() as u64;
    // About 4 s per download, 4 at a time on 2 hosts: the batch lasts well past the restart.
    c.env.bbb.faults().set_throttle(Some(Throttle {
        bytes_per_sec: size / 4,
        after_bytes: 0,
    }));
    let mut args = vec!["--wait", "--jobs", "2"];
    for id in &ids {
        args.extend(["--record-id", id.as_str()]);
    }
    let mut a = c.worker("a", &args);
    let mut b = c.worker("b", &args);
    wait_for("four downloads under way", Duration::from_secs(30), || {
        (ids.iter().filter(|id| download_started(&c, id, 1)).count() >= 4).then_some(())
    });
    let done_before: u32 = c
        .psql("SELECT count(*) FROM job WHERE state = 'succeeded'")
        .parse()
        .unwrap();
    assert!(done_before < 6, "the batch ended before the restart");
    let started = c.psql("SELECT pg_postmaster_start_time()");
    c.pg.restart().expect("restart PostgreSQL");
    assert_ne!(c.psql("SELECT pg_postmaster_start_time()"), started);
    a.expect_exit(0, Duration::from_secs(120));
    b.expect_exit(0, Duration::from_secs(120));

    let mut claimed = c.env.claimed();
    claimed.sort();
    assert_eq!(claimed.len(), 6, "one file per recording: {claimed:?}");
    for name in &claimed {
        assert_eq!(
            std::fs::read(c.env.claim.join(name)).unwrap(),
            sample_video(),
            "{name}"
        );
    }
    assert_eq!(
        c.psql("SELECT state || ' ' || count(*) FROM job GROUP BY state"),
        "succeeded 6"
    );
    for id in &ids {
        let attempts = c.attempts(id);
        assert_eq!(
            attempts
                .iter()
                .filter(|a| a.ends_with(" succeeded"))
                .count(),
            1,
            "{id}: {attempts:?}"
        );
    }
    // Every placed file is the one its job recorded as output.
    let outputs = c.psql("SELECT output_path FROM job ORDER BY output_path");
    let mut placed: Vec<String> = claimed
        .iter()
        .map(|n| c.env.claim.join(n).display().to_string())
        .collect();
    placed.sort();
    assert_eq!(outputs.lines().collect::<Vec<_>>(), placed);
    assert!(partials(&c).is_empty(), "temp left: {:?}", partials(&c));
    c.assert_no_process_left();
}

#[test]
fn chromium_killed_under_a_recording_is_a_transient_failure_retried_to_success() {
    let _serial = serial();
    let c = cluster("oomkill", true);
    let mut a = c.worker("a", &["--wait", "--record-id", PRESENTATION_ID]);
    let rec = wait_for("bbb-record", Duration::from_secs(60), || {
        recorder_of(&c, PRESENTATION_ID, 1)
    });
    // Kill the browser once the recording is really under way (media time reported).
    wait_for("recording progress", Duration::from_secs(60), || {
        let s = c.status_json();
        (s["running"][0]["progress"]["done"].as_f64()? > 1.0).then_some(())
    });
    let browser = wait_for("Chromium under bbb-record", Duration::from_secs(10), || {
        descendants(rec).into_iter().find(|&p| {
            let cmd = cmdline(p);
            cmd.contains("chrom") && !cmd.contains("--type=")
        })
    });
    kill(Pid::from_raw(browser), Signal::SIGKILL).unwrap();
    let killed = Instant::now();
    wait_for(
        "the first bbb-record to exit",
        Duration::from_secs(30),
        || (!is_live(rec)).then_some(()),
    );
    assert!(
        killed.elapsed() < Duration::from_secs(25),
        "bbb-record noticed the crash only after {:?}",
        killed.elapsed()
    );
    a.expect_exit(0, Duration::from_secs(180));
    assert_eq!(c.env.claimed(), vec![PRESENTATION_FILE.to_owned()]);
    assert_recorded(&c.env.claim.join(PRESENTATION_FILE), SAMPLE_A_SECONDS);
    assert_eq!(
        c.attempts(PRESENTATION_ID),
        vec!["1 a transient", "2 a succeeded"]
    );
    assert_eq!(
        c.psql("SELECT state || ' ' || attempts FROM job"),
        "succeeded 2"
    );
    // The retry waited for its backoff (retry_base_secs = 1, ±25 %).
    let gap: f64 = c
        .psql(
            "SELECT extract(epoch FROM b.started_at - a.ended_at)
             FROM job_attempt a JOIN job_attempt b ON a.job_id = b.job_id
             WHERE a.epoch = 1 AND b.epoch = 2",
        )
        .parse()
        .unwrap();
    assert!(gap >= 0.7, "retried after {gap} s, before the backoff");
    let error = c.psql("SELECT error FROM job_attempt WHERE epoch = 1");
    assert!(error.contains("bbb-record"), "{error}");
    assert!(partials(&c).is_empty(), "temp left: {:?}", partials(&c));
    c.assert_no_process_left();
}
