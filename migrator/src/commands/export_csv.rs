//! `bbb-migrate export-csv`: Pod's CSV export (and `--moodle`, with the Moodle owners).

use super::*;

impl App {
    pub(super) async fn export_csv(&self, output: Option<&str>, moodle: bool) -> Res<i32> {
        let msettings = moodle.then(|| self.s.moodle.clone());
        if let Some(m) = &msettings
            && m.databases.is_empty()
        {
            return Err(usage(
                "--moodle: no [moodle.databases.\"<server>\"] or [moodle.databases.default] configured",
            ));
        }
        let (recs, fetched, _) = self.fetch_selected().await?;
        // As for claim: malformed recordings (named on stderr) are rows missing from the CSV, so
        // the run is not a full success; with an explicit --record-id list they are not this
        // run's concern.
        let malformed = if self.s.filter.record_ids.is_empty() {
            fetched.malformed.len()
        } else {
            0
        };
        let mut failed = 0;
        let owners = match msettings {
            None => None,
            Some(m) => {
                // Only reads Moodle: every session is read-only, dry run or not.
                let mut dbs: BTreeMap<String, moodle::MoodleDb> = BTreeMap::new();
                let mut all = Vec::with_capacity(recs.len());
                for rec in &recs {
                    match moodle_owners(&m, &mut dbs, rec).await {
                        Ok(names) => all.push(names),
                        Err(e) => {
                            // Python wrote `[]` and went on; the row is still written, but the
                            // run says which recordings lack their owners and exits 1.
                            failed += 1;
                            tracing::warn!(
                                record_id = %rec.record_id,
                                "Problem to find moderators for BBB recording in Moodle: {e}"
                            );
                            all.push(Vec::new());
                        }
                    }
                }
                for d in dbs.values() {
                    d.close().await;
                }
                Some(all)
            }
        };
        let bytes =
            csv::export_with_owners(&recs, self.s.tz, self.s.bbb.rewrite_23, owners.as_deref());
        match output.unwrap_or("out.csv") {
            "-" => {
                let _ = out().write_all(&bytes);
            }
            path if self.s.dry_run => {
                let _ = writeln!(
                    out(),
                    "dry run: would write {} row(s) to {path}",
                    recs.len()
                );
            }
            path => {
                bbb_common::durable::write_atomic(Path::new(path), &bytes).map_err(|e| Fatal {
                    code: exit::FAILED,
                    message: e.to_string(),
                })?;
                tracing::info!("wrote {} row(s) to {path}", recs.len());
            }
        }
        if failed > 0 {
            tracing::warn!("{failed} recording(s): Moodle lookup failed, Moodle_owners is []");
        }
        if malformed > 0 {
            tracing::warn!("{malformed} malformed recording(s) are not in the CSV (named above)");
        }
        Ok(if failed + malformed > 0 {
            exit::FAILED
        } else {
            exit::OK
        })
    }
}

/// The `Moodle_owners` of one recording: `str(Generic_user)` of each moderator, `[]` for an
/// ignored server.
pub(super) async fn moodle_owners(
    m: &moodle::MoodleSettings,
    dbs: &mut BTreeMap<String, moodle::MoodleDb>,
    rec: &Recording,
) -> Result<Vec<String>, moodle::MoodleError> {
    let Some(url) = moodle::database_for(m, rec.meta("bbb-origin-server-name"))? else {
        return Ok(Vec::new());
    };
    if !dbs.contains_key(url) {
        let db = moodle::MoodleDb::connect(url, m, true).await?;
        dbs.insert(url.to_owned(), db);
    }
    let l = moodle::moderators(&dbs[url], rec.record_id.as_str()).await?;
    Ok(l.owners
        .iter()
        .map(|u| csv::generic_user(&u.first_name, &u.last_name, &u.username))
        .collect())
}
