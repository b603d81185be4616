//! `bbb-migrate import`: Pod's "import" mode as fenced ledger jobs (Pod and Moodle rows).

use super::*;

impl App {
    /// Mode 2 (spec 6): one external recording per (recording, owner), each recording a ledger
    /// job whose lease fences every Pod and Moodle write. A dry run connects read-only, takes no
    /// lease and prints what it would create. A failing recording is reported and counted; the
    /// others go on. Like `claim`, waits for the jobs held by other hosts (taking over those whose
    /// lease expires) and for retry backoffs, unless `wait` is false (`--no-wait`).
    pub(super) async fn import(&self, moodle: bool, wait: bool) -> Res<i32> {
        let url = self
            .cfg
            .pod
            .database_url
            .as_ref()
            .map(|u| u.expose_secret())
            .ok_or_else(|| usage("[pod] database_url is not set (or set POD_DATABASE_URL)"))?;
        let msettings = moodle.then(|| self.moodle_settings());
        if let Some(m) = &msettings
            && m.databases.is_empty()
        {
            return Err(usage(
                "--moodle: no [moodle.databases.\"<server>\"] or [moodle.databases.default] configured",
            ));
        }
        let p = &self.cfg.pod;
        let rest = match p.rest_url.as_deref() {
            Some(u) => Some(
                bbb_migrator::place::rest::PodRest::new(
                    u,
                    p.rest_token.as_ref().map_or("", |t| t.expose_secret()),
                    Duration::from_secs(60),
                )
                .map_err(usage)?,
            ),
            None => None,
        };
        let dry = self.cli.dry_run;
        let db = pod::PodDb::connect(url, dry)
            .await
            .map_err(|e| usage(format!("Pod database: {e}")))?;
        let (recs, fetched, missing) = self.fetch_selected().await?;
        let settings = pod::ImportSettings {
            admin_id: p.admin_id,
            site_id: p.site_id,
            rewrite_23: self.cfg.bbb.playback_url_23,
            playback_hosts: self.cfg.playback_hosts().map_err(usage)?,
            dry_run: dry,
            user_defaults: pod::UserDefaults {
                secret_key: p
                    .secret_key
                    .as_ref()
                    .map(|k| k.expose_secret().to_owned())
                    .unwrap_or_default(),
                site_id: p.site_id,
                auth_type: p.auth_type.clone(),
                affiliation: p.affiliation.clone(),
                establishment: p.establishment.clone(),
                favorites_description: p.favorites_description.clone(),
            },
            rest,
        };
        let importer =
            import_job::Importer::new(db, msettings, self.cfg.moodle.inform_html.clone(), settings);
        let print = |n: usize, lines: &[String]| {
            let mut o = out();
            let _ = writeln!(o, "------------------------------\n#{n}");
            for l in lines {
                let _ = writeln!(o, "{l}");
            }
        };
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
                    print(
                        i + 1,
                        &[format!(
                            "{}: already imported (ledger): skip",
                            rec.record_id
                        )],
                    );
                    continue;
                }
                match importer.import_one(rec, &pod::Unfenced, &[]).await {
                    Ok(o) => {
                        rows += o.rows_created;
                        users += o.users_created;
                        print(i + 1, &o.lines);
                    }
                    Err((e, mut lines)) => {
                        lines.push(format!(" - Recording {}: would fail: {e}", rec.record_id));
                        failures.push(format!("{}: {e}", rec.record_id));
                        print(i + 1, &lines);
                    }
                }
            }
        } else {
            let ledger = self.ledger_write().await?;
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
            expire_dead_local_leases(&ledger, &owner)
                .await
                .map_err(ledger_err)?;
            ledger.sweep().await.map_err(ledger_err)?;
            let before = import_jobs(ledger.jobs().await.map_err(ledger_err)?);
            let worker = owner.worker("import");
            let lease_dur = Duration::from_secs(self.cfg.ledger.lease_secs.max(3));
            let index: BTreeMap<&str, usize> = ids
                .iter()
                .enumerate()
                .map(|(i, id)| (id.as_str(), i + 1))
                .collect();
            let mut ran = std::collections::BTreeSet::new();
            let poll = worker::poll_interval(lease_dur);
            let mut stop = interruption("finishing the entry in hand, taking no other");
            loop {
                // An entry is a few statements: the one in hand is finished, never cut.
                if *stop.borrow() {
                    interrupted = true;
                    break;
                }
                let lease = match ledger
                    .claim_target(
                        &worker,
                        lease_dur,
                        Some(&ids),
                        Some(import_job::TARGET_IMPORT),
                    )
                    .await
                {
                    Ok(Some(l)) => l,
                    Ok(None) if !wait => break,
                    Ok(None) => {
                        // Held by another host or waiting for a retry: look again after a
                        // while, and take over what a dead host's expired lease leaves. A job
                        // whose holder died with no attempt left goes to dead (sweep), or it
                        // would be waited for forever.
                        ledger.sweep().await.map_err(ledger_err)?;
                        let left = ledger
                            .unfinished(Some(&ids), Some(import_job::TARGET_IMPORT))
                            .await
                            .map_err(ledger_err)?;
                        if left == 0 {
                            break;
                        }
                        tokio::select! {
                            _ = tokio::time::sleep(poll) => {}
                            _ = stop.changed() => {}
                        }
                        continue;
                    }
                    Err(e) => return Err(ledger_err(e)),
                };
                let n = index.get(lease.recording_id.as_str()).copied().unwrap_or(0);
                ran.insert(lease.recording_id.clone());
                match importer.run_job(&ledger, &lease, lease_dur).await {
                    import_job::JobResult::Done(o) => {
                        rows += o.rows_created;
                        users += o.users_created;
                        notices += o.notices;
                        print(n, &o.lines);
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
                        print(n, &lines);
                    }
                    import_job::JobResult::LeaseLost { mut lines } => {
                        lines.push(format!(
                            " - Recording {}: lease lost, another worker owns it now; nothing more written.",
                            lease.recording_id
                        ));
                        print(n, &lines);
                    }
                }
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
                    Some(j) if unfinished.add(j, &running, self.tz) => {}
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
        if self.cli.select.record_id.is_empty() {
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
