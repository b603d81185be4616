//! `bbb-migrate claim`: downloads or records the selected recordings into Pod's claim directory
//! through the worker pool; `--dry-run` prints the plan.

use super::*;

impl App {
    pub(super) async fn claim(
        &self,
        jobs: Option<usize>,
        force: bool,
        wait: bool,
        host: Option<String>,
    ) -> Res<i32> {
        // Pre-checks first: a failed pre-check is never exit 0 (the Python command's was).
        let registration = self.claim_registration(self.s.dry_run).await?;
        let claim_dir =
            self.claim_dir(registration.as_ref().map(|r| r.recorder.directory.as_str()))?;
        claim_dir.check(!self.s.dry_run).map_err(usage)?;
        let program = self.s.recorder.program.clone();
        let (recs, fetched, missing) = self.fetch_selected().await?;
        let rewrite = self.s.bbb.rewrite_23;
        let needs_recorder = recs
            .iter()
            .any(|r| matches!(r.playback(rewrite), Some(Playback::Presentation(_))));
        if needs_recorder && program.is_none() {
            return Err(usage(match &self.s.recorder_command {
                Some(c) => format!("[recorder] command {c:?} not found"),
                None => {
                    "bbb-record not found next to bbb-migrate nor in PATH (set [recorder] command)"
                        .into()
                }
            }));
        }
        if self.s.dry_run {
            if let Some(r) = &registration {
                r.db.close().await;
            }
            return self
                .claim_plan(&claim_dir, &recs, &missing, &fetched, force)
                .await;
        }
        let ledger = Arc::new(self.ledger_write().await?);
        let ids: Vec<String> = recs.iter().map(|r| r.record_id.to_string()).collect();
        let new_jobs: Vec<NewJob> = recs
            .iter()
            .map(|r| NewJob {
                recording_id: r.record_id.to_string(),
                target: TARGET_FILE.into(),
                payload: serde_json::to_string(r).expect("recording serialises"),
            })
            .collect();
        ledger.enqueue(&new_jobs).await.map_err(ledger_err)?;
        if force {
            ledger
                .requeue(&Requeue::Force(ids.clone()))
                .await
                .map_err(ledger_err)?;
        }
        let host = host_name(host)?;
        let owner = OwnerName::new(&host);
        // A run of this machine killed a moment ago (kill -9, OOM killer): its jobs are taken
        // over now rather than when their leases run out.
        let adoptable: std::collections::HashMap<String, i64> =
            expire_dead_local_leases(ledger.as_ref(), &owner)
                .await
                .map_err(ledger_err)?
                .into_iter()
                .collect();
        ledger.sweep().await.map_err(ledger_err)?;
        let before = by_recording(ledger.jobs().await.map_err(ledger_err)?);
        // Their partial downloads stay for the next holder to resume: an expired lease is still
        // a running job, whose directory is live.
        clean_partials(&ledger, &claim_dir).await;

        let jobs = jobs
            .or(self.s.jobs)
            .unwrap_or_else(|| default_jobs(self.s.recorder.fast));
        let shutdown_rx = interruption("stopping the running jobs and giving them back");
        let ctx_claim_dir = claim_dir.clone();
        let ctx = Arc::new(WorkerContext {
            store: ledger.clone(),
            claim_dir,
            tz: self.s.tz,
            rewrite_23: rewrite,
            recorder: self.s.recorder.clone(),
            download: need(&self.s.download)?.clone(),
            space: worker::space::SpaceSettings {
                dirs: vec![ctx_claim_dir.temp_dir.clone(), ctx_claim_dir.dir.clone()],
                margin: self.s.free_space_margin,
                poll: self.s.free_space_poll,
            },
            lease: self.s.ledger.lease,
            // Unique per process even when two runs share a host name; `:<n>` per worker task.
            worker_name: owner.base(),
            reporter: self.reporter.clone(),
            api: if self.s.cache_only() {
                None
            } else {
                Some(self.api()?)
            },
            shutdown: shutdown_rx.clone(),
            wait,
            registration: registration.clone(),
            playback_hosts: need(&self.s.bbb.playback_hosts)?.clone(),
            adoptable: std::sync::Mutex::new(adoptable),
        });
        let runnable = ids
            .iter()
            .filter(|id| {
                before
                    .get(id.as_str())
                    .is_some_and(|j| matches!(j.state, JobState::Pending | JobState::Running))
            })
            .count();
        self.reporter.event(Event::Batch {
            total: runnable as u64,
        });
        tracing::info!("{} selected, {runnable} to run, {jobs} at once", ids.len());
        let reports = worker::run_pool(ctx, jobs, ids.clone()).await;
        self.reporter.finish();
        // Partials of leases taken over during this run are dead now.
        clean_partials(&ledger, &ctx_claim_dir).await;
        let rows_after = ledger.jobs().await.map_err(ledger_err)?;
        let after = by_recording(rows_after);
        let running = held_by_target(ledger.running().await.map_err(ledger_err)?, TARGET_FILE);
        ledger.close().await;
        if let Some(r) = &registration {
            r.db.close().await;
        }

        let interrupted = *shutdown_rx.borrow();
        let summary = Summary::build(
            &ids,
            &before,
            (&after, &running),
            &reports,
            &missing,
            &fetched,
            &self.s.record_ids(),
            self.s.tz,
        );
        summary.print(self.json_progress);
        Ok(summary
            .unfinished
            .exit_code(!summary.failed.is_empty() || interrupted, wait))
    }

    /// With `[pod] database_url`: the recorder `[pod] recorder_id` must exist in Pod and its
    /// directory (which the files go to; `[pod] recorder_directory` is then only compared, with a
    /// warning) must exist under default_recorder_path. Checked before any work; a failure is a
    /// pre-check failure (exit 2) naming the recorder. `read_only` (`--dry-run`, `doctor`):
    /// Pod's database is opened in sessions that refuse writes.
    pub(super) async fn claim_registration(
        &self,
        read_only: bool,
    ) -> Res<Option<worker::ClaimRegistration>> {
        let Some(url) = self.s.pod.database_url.as_ref().map(|u| u.expose_secret()) else {
            return Ok(None);
        };
        let id = self.s.pod.recorder_id;
        let db = pod::PodDb::connect(url, read_only)
            .await
            .map_err(|e| usage(format!("Pod database: {e}")))?;
        let recorder = match db.recorder(id).await {
            Ok(Some(r)) => r,
            Ok(None) => {
                db.close().await;
                return Err(usage(format!(
                    "Pod recorder {id} ([pod] recorder_id) does not exist in Pod's recorder_recorder table: create it in Pod's admin (a recorder with no manager, for manual claim) or fix recorder_id"
                )));
            }
            Err(e) => {
                db.close().await;
                return Err(usage(format!("Pod recorder {id}: {e}")));
            }
        };
        // Pod's database is not ours: its directory name must stay a single component.
        let problem = if !config::is_directory_name(&recorder.directory) {
            Some(format!(
                "its directory {:?} is not a single directory name of at most 50 characters",
                recorder.directory
            ))
        } else {
            let dir = self.s.pod.default_recorder_path.join(&recorder.directory);
            (!dir.is_dir()).then(|| {
                format!(
                    "its directory {:?} does not exist ({})",
                    recorder.directory,
                    dir.display()
                )
            })
        };
        if let Some(p) = problem {
            db.close().await;
            return Err(usage(format!(
                "Pod recorder {id} ({:?}): {p}",
                recorder.name
            )));
        }
        if let Some(configured) = self.s.pod.recorder_directory.as_deref()
            && configured != recorder.directory
        {
            tracing::warn!(
                "Pod recorder {id} ({:?}) has the directory {:?}: the files go there, not to [pod] recorder_directory {configured:?}",
                recorder.name,
                recorder.directory
            );
        }
        if recorder.manager_id.is_some() {
            tracing::warn!(
                "Pod recorder {id} ({:?}) has a manager: Pod notifies the manager instead of offering the files for manual claim",
                recorder.name
            );
        }
        Ok(Some(worker::ClaimRegistration { db, recorder }))
    }

    pub(super) async fn claim_plan(
        &self,
        claim_dir: &ClaimDir,
        recs: &[Recording],
        missing: &[RecordId],
        fetched: &FetchResult,
        force: bool,
    ) -> Res<i32> {
        let ledger = self.ledger_read_only().await?;
        let rows = by_recording(ledger.jobs().await.map_err(ledger_err)?);
        ledger.close().await;
        let mut o = out();
        let _ = writeln!(o, "dry run: nothing will be written");
        let hosts = need(&self.s.bbb.playback_hosts)?.clone();
        let ext_p = self.s.recorder.format.ext();
        for r in recs {
            let row = rows.get(r.record_id.as_str());
            if let Some(j) = row.filter(|j| j.state == JobState::Succeeded && !force) {
                let _ = writeln!(
                    o,
                    "{}: skip, already done ({})",
                    r.record_id,
                    j.output_path.as_deref().unwrap_or("?")
                );
                continue;
            }
            if let Some(j) = row.filter(|j| j.state == JobState::Dead) {
                let _ = writeln!(
                    o,
                    "{}: skip, dead ({}); `retry --failed` re-queues it",
                    r.record_id,
                    j.last_error.as_deref().unwrap_or("")
                );
                continue;
            }
            let stem = slug::file_stem(&r.name, r.start_time_ms, self.s.tz);
            let (verb, url, ext) = match r.playback(self.s.bbb.rewrite_23) {
                Some(Playback::Video(u)) => ("download video playback", u, "m4v"),
                Some(Playback::Presentation(u)) => ("record presentation", u, ext_p),
                None => {
                    let _ = writeln!(
                        o,
                        "{}: would fail: no video or presentation playback",
                        r.record_id
                    );
                    continue;
                }
            };
            if let Err(why) = hosts.check(&url) {
                let _ = writeln!(o, "{}: would fail (select): {why}", r.record_id);
                continue;
            }
            let dest = claim_dir
                .candidates(&stem, &r.record_id, ext)
                .into_iter()
                .find(|p| {
                    !p.exists()
                        && !rows
                            .values()
                            .any(|j| j.output_path.as_deref() == Some(&*p.to_string_lossy()))
                })
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "(no free name)".into());
            let _ = writeln!(
                o,
                "{}: would {verb} {} into {dest}",
                r.record_id,
                bbb_common::redact::url_text(&url)
            );
        }
        for id in missing {
            let _ = writeln!(o, "{id}: not listed by the server");
        }
        for m in &fetched.malformed {
            let _ = writeln!(
                o,
                "recording #{} ({}): malformed, skipped: {}",
                m.index,
                m.record_id.as_deref().unwrap_or("no recordID"),
                m.reason
            );
        }
        Ok(exit::OK)
    }
}

/// Removes the job directories of killed runs and lost leases, on whatever host they ran (the
/// temp dir is shared). Lists first, then reads the ledger: see `remove_stale_partials`.
/// Removes the partial files of jobs that are not running any more.
pub(super) async fn clean_partials(ledger: &AnyLedger, claim_dir: &ClaimDir) {
    let found = match claim_dir.partials() {
        Ok(f) if f.is_empty() => return,
        Ok(f) => f,
        Err(e) => {
            tracing::warn!("cleaning {}: {e}", claim_dir.temp_dir.display());
            return;
        }
    };
    let rows = match ledger.jobs().await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!("cleaning {}: {e}", claim_dir.temp_dir.display());
            return;
        }
    };
    match claim_dir.remove_stale_partials(found, &worker::live_partials(&rows)) {
        Ok(removed) => {
            for p in removed {
                tracing::info!(
                    "removed the partial file of an interrupted job: {}",
                    p.display()
                );
            }
        }
        Err(e) => tracing::warn!("cleaning {}: {e}", claim_dir.temp_dir.display()),
    }
}

/// Recordings processed at once by default, from this host's CPU count and free memory and the
/// measured cost of the recorder's mode (`bbb-bench --parallel N` on 2 cores, 1-minute
/// recordings with a webcam playing throughout; the table is in migrator/README.md "Cost per job"):
/// - real time: 3 recordings at once kept every slide change within 2 frames (74 ms), as 1 and
///   2 did, and made 2.7 playback-hours per hour; 4 put changes up to 6 frames (207 ms) late. On
///   a slower 2-core machine 3 at once put them up to 5 frames (174 ms) late for 42% more
///   playback-hours per hour than 2, and 4 up to 19 frames. So 1.5 per core.
/// - fast: each recording is CPU-bound (about 1.2 cores while it runs), 2 at once made 7.7
///   playback-hours per hour and 4 made 7.2 (the slower machine: 4.0-4.4 alone, 5.0 with 2, 5.1
///   with 3). So 1 per core.
///
/// Both are capped at one per 1.5 GB of available memory (Chromium and the encoder).
pub(super) fn default_jobs(fast: bool) -> usize {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mem_kb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemAvailable:"))
                .and_then(|l| {
                    l.split_whitespace()
                        .nth(1)
                        .and_then(|v| v.parse::<u64>().ok())
                })
        })
        .unwrap_or(2 * 1024 * 1024);
    jobs_for(cpus, mem_kb, fast)
}

/// [`default_jobs`] for a host of `cpus` cores with `mem_available_kb` of memory available.
fn jobs_for(cpus: usize, mem_available_kb: u64, fast: bool) -> usize {
    let by_cpu = if fast { cpus } else { cpus * 3 / 2 };
    let by_mem = (mem_available_kb / (1536 * 1024)) as usize;
    by_cpu.min(by_mem).max(1)
}

#[cfg(test)]
mod tests {
    use super::jobs_for;

    const GB: u64 = 1024 * 1024;

    #[test]
    fn real_time_takes_one_and_a_half_recordings_per_core_and_fast_one() {
        assert_eq!(jobs_for(2, 64 * GB, false), 3);
        assert_eq!(jobs_for(2, 64 * GB, true), 2);
        assert_eq!(jobs_for(8, 64 * GB, false), 12);
        assert_eq!(jobs_for(1, 64 * GB, false), 1);
    }

    #[test]
    fn memory_caps_the_jobs_and_there_is_always_one() {
        assert_eq!(jobs_for(8, 4 * GB, true), 2);
        assert_eq!(jobs_for(8, 4 * GB, false), 2);
        assert_eq!(jobs_for(4, GB / 2, false), 1);
    }
}
