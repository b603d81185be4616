//! Mode 2 as ledger jobs: the import of one recording (Pod meeting owner, else the Moodle
//! moderators, else the admin; their external recordings; the Moodle notice) is the job
//! `(recordID, "pod")`. Every write to Pod or Moodle is fenced by the job's lease (a fenced
//! heartbeat right before it), so a worker whose lease was taken over writes nothing more. What
//! was placed (recordID + owners, with the rows created) is recorded in the ledger: a rerun skips
//! the recording, even when its playback URL has changed form since.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::error::ErrorClass;
use crate::ledger::fence::{LeaseFence, WriteFence};
use crate::ledger::{JobState, JobStore, Lease, LedgerError};
use crate::place::moodle::{self, MoodleDb, MoodleSettings};
use crate::place::pod::{ImportSettings, Placed, PodDb, PodError, import_recording_fenced};
use crate::recording::Recording;

/// The ledger target of an import job.
pub const TARGET_IMPORT: &str = "pod";

/// What one recording's import did (or would do).
#[derive(Debug, Default)]
pub struct Outcome {
    pub lines: Vec<String>,
    pub users_created: usize,
    pub rows_created: usize,
    /// Moodle activity descriptions updated.
    pub notices: usize,
    pub placed: Vec<Placed>,
}

/// How a ledger job ended.
#[derive(Debug)]
pub enum JobResult {
    Done(Outcome),
    /// Recorded in the ledger as a failure (`pending` with backoff, or `dead`).
    Failed {
        state: JobState,
        error: String,
        lines: Vec<String>,
    },
    /// Another worker owns the job now: nothing more was written.
    LeaseLost {
        lines: Vec<String>,
    },
}

/// The shared state of an import run: Pod's database, the Moodle databases (one connection
/// each, opened on first use), the settings.
pub struct Importer {
    pub pod: PodDb,
    pub moodle: Option<MoodleSettings>,
    pub inform_html: Option<String>,
    pub settings: ImportSettings,
    moodles: tokio::sync::Mutex<BTreeMap<String, MoodleDb>>,
}

impl Importer {
    pub fn new(
        pod: PodDb,
        moodle: Option<MoodleSettings>,
        inform_html: Option<String>,
        settings: ImportSettings,
    ) -> Importer {
        Importer {
            pod,
            moodle,
            inform_html,
            settings,
            moodles: Default::default(),
        }
    }

    async fn moodle_db(
        &self,
        url: &str,
        m: &MoodleSettings,
    ) -> Result<MoodleDb, moodle::MoodleError> {
        let mut map = self.moodles.lock().await;
        if let Some(db) = map.get(url) {
            return Ok(db.clone());
        }
        let db = MoodleDb::connect(url, m, self.settings.dry_run).await?;
        map.insert(url.to_owned(), db.clone());
        Ok(db)
    }

    /// The Moodle moderators of one recording (spec 6.3 to 6.5, defects fixed).
    pub async fn moodle_lookup(
        &self,
        rec: &Recording,
    ) -> Result<(moodle::Lookup, Option<MoodleDb>), moodle::MoodleError> {
        let Some(m) = &self.moodle else {
            return Ok((moodle::Lookup::default(), None));
        };
        let server = rec.meta("bbb-origin-server-name");
        let Some(url) = moodle::database_for(m, server)? else {
            return Ok((
                moodle::Lookup {
                    lines: vec![format!(" - origin_server_name ignored ({server}).")],
                    ..Default::default()
                },
                None,
            ));
        };
        let db = self.moodle_db(url, m).await?;
        let l = moodle::moderators(&db, rec.record_id.as_str()).await?;
        Ok((l, Some(db)))
    }

    /// Spec 6.1 for one recording, every write behind `fence`; `done` are the owners an earlier
    /// attempt of the job placed.
    pub async fn import_one(
        &self,
        rec: &Recording,
        fence: &impl WriteFence,
        done: &[Placed],
    ) -> Result<Outcome, (PodError, Vec<String>)> {
        let mut out = Outcome::default();
        let mut lookup = moodle::Lookup::default();
        let mut mdb = None;
        if self.moodle.is_some() {
            match self.pod.meeting_owner(&rec.meeting_id).await {
                Ok(Some(_)) => {}
                Ok(None) => match self.moodle_lookup(rec).await {
                    Ok((l, db)) => {
                        lookup = l;
                        mdb = db;
                    }
                    Err(e) => out.lines.push(format!(
                        " - Problem to find moderators for BBB recording in Moodle: {e}. The recording goes to the admin."
                    )),
                },
                Err(e) => return Err((e, out.lines)),
            }
            out.lines.append(&mut lookup.lines);
        }
        let rep = match import_recording_fenced(
            &self.pod,
            rec,
            &lookup.owners,
            "BBB session made with Moodle.",
            &self.settings,
            fence,
            done,
        )
        .await
        {
            Ok(r) => r,
            Err(e) => return Err((e, out.lines)),
        };
        out.lines.extend(rep.lines);
        out.rows_created = rep.rows_created;
        out.users_created = rep.users_created;
        out.placed = rep.placed;
        let (Some(html), Some(mdb)) = (self.inform_html.as_deref(), mdb) else {
            return Ok(out);
        };
        if lookup.owners.is_empty() {
            return Ok(out);
        }
        for a in &lookup.activities {
            if self.settings.dry_run {
                out.lines.push(format!(
                    " - Would set information in Moodle (activity {a}), once."
                ));
                continue;
            }
            if let Err(e) = fence.check().await {
                return Err((e.into(), out.lines));
            }
            match mdb.append_notice(*a, html).await {
                Ok(true) => {
                    out.notices += 1;
                    out.lines
                        .push(format!(" - Set information in Moodle (activity {a})."));
                }
                Ok(false) => out.lines.push(format!(
                    " - Moodle activity {a} already has the information."
                )),
                Err(e) => out.lines.push(format!(
                    " - Not allowed to set information in Moodle (activity {a}): {e}"
                )),
            }
        }
        Ok(out)
    }

    /// Runs one claimed import job: the recording comes from the ledger payload, the owners
    /// already placed from its checkpoint; the job is completed with what was placed, or
    /// failed with the error (both fenced).
    pub async fn run_job<S: JobStore>(&self, store: &S, lease: &Lease, dur: Duration) -> JobResult {
        let rec: Recording = match serde_json::from_str(&lease.payload) {
            Ok(r) => r,
            Err(e) => {
                return fail(
                    store,
                    lease,
                    ErrorClass::Permanent,
                    format!("ledger payload unreadable: {e}"),
                    Vec::new(),
                )
                .await;
            }
        };
        let done: Vec<Placed> = lease
            .checkpoint
            .as_deref()
            .and_then(|c| serde_json::from_str(c).ok())
            .unwrap_or_default();
        let fence = LeaseFence {
            store,
            lease,
            duration: dur,
        };
        match self.import_one(&rec, &fence, &done).await {
            Ok(mut out) => {
                let mut placed = done;
                placed.append(&mut out.placed);
                let output = serde_json::json!({
                    "record_id": rec.record_id,
                    "owners": placed,
                    "source_url": rec.source_url(self.settings.rewrite_23),
                })
                .to_string();
                out.placed = placed;
                match store.complete(lease, &output, 0, None).await {
                    Ok(()) => JobResult::Done(out),
                    Err(LedgerError::LeaseLost { .. }) => JobResult::LeaseLost { lines: out.lines },
                    Err(e) => {
                        fail(
                            store,
                            lease,
                            ErrorClass::Transient,
                            e.to_string(),
                            out.lines,
                        )
                        .await
                    }
                }
            }
            Err((PodError::LeaseLost, lines)) => JobResult::LeaseLost { lines },
            Err((e, lines)) => {
                let class = if e.is_permanent() {
                    ErrorClass::Permanent
                } else {
                    ErrorClass::Transient
                };
                fail(store, lease, class, e.to_string(), lines).await
            }
        }
    }

    pub async fn close(&self) {
        self.pod.close().await;
        for m in self.moodles.lock().await.values() {
            m.close().await;
        }
    }
}

async fn fail<S: JobStore>(
    store: &S,
    lease: &Lease,
    class: ErrorClass,
    error: String,
    lines: Vec<String>,
) -> JobResult {
    match store.fail(lease, class, "import", &error).await {
        Ok(state) => JobResult::Failed {
            state,
            error,
            lines,
        },
        Err(LedgerError::LeaseLost { .. }) => JobResult::LeaseLost { lines },
        Err(e) => JobResult::Failed {
            state: JobState::Running,
            error: format!("{error} (and the ledger could not record it: {e})"),
            lines,
        },
    }
}
