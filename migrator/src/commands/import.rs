//! `bbb-migrate import`: Pod's "import" mode as fenced ledger jobs (Pod and Moodle rows).

use bbb_migrator::ledger::Lease;
use bbb_migrator::worker::pool::{self, JobRunner, PoolSettings};

use super::*;

impl App {
    /// Mode 2 (spec 6): one external recording per (recording, owner), each recording a ledger
    /// job whose lease fences every Pod and Moodle write. A dry run connects read-only, takes no
    /// lease and prints what it would create. A failing recording is reported and counted; the
    /// others go on. Like `claim`, waits for the jobs held by other hosts (taking over those whose
    /// lease expires) and for retry backoffs, unless `wait` is false (`--no-wait`).
    pub(super) async fn import(&self, moodle: bool, wait: bool) -> Res<i32> {
        let url = self
            .s
            .pod
            .database_url
            .as_ref()
            .map(|u| u.expose_secret())
            .ok_or_else(|| usage("[pod] database_url is not set (or set POD_DATABASE_URL)"))?;
        let msettings = moodle.then(|| self.s.moodle.clone());
        if let Some(m) = &msettings
            && m.databases.is_empty()
        {
            return Err(usage(
                "--moodle: no [moodle.databases.\"<server>\"] or [moodle.databases.default] configured",
            ));
        }
        let p = &self.s.pod;
        let rest = match p.rest_url.as_deref() {
            Some(u) => Some(
                bbb_migrator::place::pod::PodRest::new(
                    u,
                    p.rest_token.as_ref().map_or("", |t| t.expose_secret()),
                    Duration::from_secs(60),
                )
                .map_err(usage)?,
            ),
            None => None,
        };
        let dry = self.s.dry_run;
        let db = pod::PodDb::connect(url, dry)
            .await
            .map_err(|e| usage(format!("Pod database: {e}")))?;
        let (recs, fetched, missing) = self.fetch_selected().await?;
        let settings = pod::ImportSettings {
            admin_id: p.admin_id,
            site_id: p.site_id,
            rewrite_23: self.s.bbb.rewrite_23,
            playback_hosts: need(&self.s.bbb.playback_hosts)?.clone(),
            dry_run: dry,
            user_defaults: pod::UserDefaults {
                secret_key: p.secret_key.clone().unwrap_or_default(),
                site_id: p.site_id,
                auth_type: p.auth_type.clone(),
                affiliation: p.affiliation.clone(),
                establishment: p.establishment.clone(),
                favorites_description: p.favorites_description.clone(),
            },
            rest,
        };
        let importer = Arc::new(import_job::Importer::new(
            db,
            msettings,
            self.s.inform_html.clone(),
            settings,
        ));
        let (mut rows, mut users, mut notices, mut skipped) = (0, 0, 0, 0);
        let mut failures: Vec<String> = Vec::new();
        let mut unfinished = Unfinished::default();
        let mut interrupted = false;
        if dry {
            let ledger = self.ledger_read_only().await?;
            let done = import_jobs(ledger.jobs().await.map_err(ledger_err)?);
            ledger.close().await;
            for (i, rec) in recs.iter().enumerate() {
                if done
                    .get(rec.record_id.as_str())
                    .is_some_and(|j| j.state == JobState::Succeeded)
                {
                    skipped += 1;
                    print_entry(
                        i + 1,
                        &[format!(
                            "{}: already imported (ledger): skip",
                            rec.record_id
                        )],
                    );
                    continue;
                }
                match importer
                    .import_one(rec, &bbb_migrator::ledger::fence::Unfenced, &[])
                    .await
                {
                    Ok(o) => {
                        rows += o.rows_created;
                        users += o.users_created;
                        print_entry(i + 1, &o.lines);
                    }
                    Err((e, mut lines)) => {
                        lines.push(format!(" - Recording {}: would fail: {e}", rec.record_id));
                        failures.push(format!("{}: {e}", rec.record_id));
                        print_entry(i + 1, &lines);
                    }
                }
            }
        } else {
            let ledger = Arc::new(self.ledger_write().await?);
            let ids: Vec<String> = recs.iter().map(|r| r.record_id.to_string()).collect();
            let new_jobs: Vec<NewJob> = recs
                .iter()
                .map(|r| NewJob {
                    recording_id: r.record_id.to_string(),
                    target: import_job::TARGET_IMPORT.into(),
                    payload: serde_json::to_string(r).expect("recording serialises"),
                })
                .collect();
            ledger.enqueue(&new_jobs).await.map_err(ledger_err)?;
            let owner = OwnerName::new(&host_name(None)?);
            expire_dead_local_leases(ledger.as_ref(), &owner)
                .await
                .map_err(ledger_err)?;
            ledger.sweep().await.map_err(ledger_err)?;
            let before = import_jobs(ledger.jobs().await.map_err(ledger_err)?);
            let entries = Arc::new(ImportEntries {
                importer: importer.clone(),
                ledger: ledger.clone(),
                lease: self.s.ledger.lease,
                index: ids
                    .iter()
                    .enumerate()
                    .map(|(i, id)| (id.clone(), i + 1))
                    .collect(),
            });
            let settings = PoolSettings {
                target: import_job::TARGET_IMPORT,
                lease: self.s.ledger.lease,
                wait,
                // One worker: two entries of one new owner at once would both create the user.
                worker_names: vec![owner.worker("import")],
            };
            // An entry is a few statements: the one in hand is finished, never cut.
            let stop = interruption("finishing the entry in hand, taking no other");
            let reports =
                pool::run(ledger.clone(), entries, settings, ids.clone(), stop.clone()).await;
            interrupted = *stop.borrow();
            let mut ran = std::collections::BTreeSet::new();
            for r in reports {
                rows += r.rows;
                users += r.users;
                notices += r.notices;
                ran.insert(r.record_id);
            }
            let after = import_jobs(ledger.jobs().await.map_err(ledger_err)?);
            let running = held_by_target(
                ledger.running().await.map_err(ledger_err)?,
                import_job::TARGET_IMPORT,
            );
            ledger.close().await;
            for id in &ids {
                let was_done = before
                    .get(id.as_str())
                    .is_some_and(|j| j.state == JobState::Succeeded);
                match after.get(id.as_str()) {
                    Some(j) if j.state == JobState::Succeeded => {
                        if was_done && !ran.contains(id) {
                            skipped += 1;
                        }
                    }
                    Some(j) if unfinished.add(j, &running, self.s.tz) => {}
                    Some(j) => failures.push(format!(
                        "{id} [{}]: {}",
                        j.state.as_str(),
                        j.last_error.as_deref().unwrap_or("not run")
                    )),
                    None => failures.push(format!("{id}: not in the ledger")),
                }
            }
        }
        importer.close().await;
        for id in &missing {
            failures.push(format!("{id}: not listed by the server"));
        }
        if self.s.filter.record_ids.is_empty() {
            for m in &fetched.malformed {
                failures.push(format!(
                    "{}: malformed: {}",
                    m.record_id
                        .clone()
                        .unwrap_or_else(|| format!("#{}", m.index)),
                    m.reason
                ));
            }
        }
        let verb = if dry { "would create" } else { "created" };
        let mut o = out();
        let _ = writeln!(
            o,
            "------------------------------\n{} recording(s): {verb} {rows} external recording(s) and {users} user(s), {skipped} skipped (already imported), {} failed{}",
            recs.len(),
            failures.len(),
            unfinished.counts()
        );
        for f in &failures {
            let _ = writeln!(o, "  FAILED {f}");
        }
        unfinished.print(&mut o);
        if notices > 0 {
            let _ = writeln!(
                o,
                "{notices} Moodle activity description(s) updated: run `{}` on the Moodle server so the course pages show it.",
                moodle::PURGE_HINT
            );
        }
        if interrupted {
            let _ = writeln!(
                o,
                "interrupted: the entries not made yet are made by the next run (the ledger keeps them)"
            );
        }
        Ok(unfinished.exit_code(!failures.is_empty() || interrupted, wait))
    }
}

/// One import entry's lines, numbered by the recording's place in the selection, as the Python
/// command printed them.
fn print_entry(n: usize, lines: &[String]) {
    let mut o = out();
    let _ = writeln!(o, "------------------------------\n#{n}");
    for l in lines {
        let _ = writeln!(o, "{l}");
    }
}

/// The import jobs of a run, as the worker pool runs them: Pod's (and Moodle's) rows of one
/// recording, fenced by its lease, printed when done.
struct ImportEntries {
    importer: Arc<import_job::Importer>,
    ledger: Arc<AnyLedger>,
    lease: Duration,
    /// Each selected recording's number in the printed output.
    index: BTreeMap<String, usize>,
}

/// What one import job created.
struct EntryReport {
    record_id: String,
    rows: usize,
    users: usize,
    notices: usize,
}

impl JobRunner for ImportEntries {
    type Report = EntryReport;

    async fn run(&self, lease: Lease, _claimed: std::time::Instant) -> EntryReport {
        let n = self.index.get(&lease.recording_id).copied().unwrap_or(0);
        let mut report = EntryReport {
            record_id: lease.recording_id.clone(),
            rows: 0,
            users: 0,
            notices: 0,
        };
        match self
            .importer
            .run_job(self.ledger.as_ref(), &lease, self.lease)
            .await
        {
            import_job::JobResult::Done(o) => {
                report.rows = o.rows_created;
                report.users = o.users_created;
                report.notices = o.notices;
                print_entry(n, &o.lines);
            }
            import_job::JobResult::Failed {
                state,
                error,
                mut lines,
            } => {
                lines.push(format!(
                    " - Recording {}: failed ({}): {error}",
                    lease.recording_id,
                    state.as_str()
                ));
                print_entry(n, &lines);
            }
            import_job::JobResult::LeaseLost { mut lines } => {
                lines.push(format!(
                    " - Recording {}: lease lost, another worker owns it now; nothing more written.",
                    lease.recording_id
                ));
                print_entry(n, &lines);
            }
        }
        report
    }
}
