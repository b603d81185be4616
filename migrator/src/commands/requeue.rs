//! `bbb-migrate cancel`, `retry` and `flag`: requeue, cancel or flag jobs of the ledger.

use super::*;

impl App {
    /// Cancels the selected recordings: a pending job at once, a running one by its worker (on
    /// whatever host) at its next heartbeat.
    pub(super) async fn cancel(&self) -> Res<i32> {
        let ids = self.s.ledger_selection("cancel")?;
        if ids.is_empty() {
            return Err(usage("cancel needs --record-id ID (repeatable)"));
        }
        if self.s.dry_run {
            let _ = writeln!(out(), "dry run: would cancel {} recording(s)", ids.len());
            return Ok(exit::OK);
        }
        let ledger = self.ledger_write().await?;
        let mut missing = 0;
        for id in &ids {
            let hit = ledger.cancel(id, TARGET_FILE).await.map_err(ledger_err)?;
            let what = if hit {
                "cancel requested"
            } else {
                "no pending or running job"
            };
            if !hit {
                missing += 1;
            }
            let _ = writeln!(out(), "{id}: {what}");
        }
        ledger.close().await;
        Ok(if missing == 0 { exit::OK } else { exit::FAILED })
    }

    /// Flags (`Some(note)`) or unflags the succeeded jobs of the selected recordings.
    pub(super) async fn flag(&self, note: Option<String>) -> Res<i32> {
        let ids = self.s.ledger_selection("flag")?;
        if ids.is_empty() {
            return Err(usage("flag needs --record-id ID (repeatable)"));
        }
        if self.s.dry_run {
            let _ = writeln!(out(), "dry run: would flag {} recording(s)", ids.len());
            return Ok(exit::OK);
        }
        let ledger = self.ledger_write().await?;
        let mut missing = 0;
        for id in &ids {
            let hit = ledger
                .flag(id, TARGET_FILE, note.as_deref())
                .await
                .map_err(ledger_err)?;
            let what = match (hit, note.is_some()) {
                (true, true) => "flagged: `retry --flagged` redoes it",
                (true, false) => "flag cleared",
                (false, _) => "no placed recording",
            };
            if !hit {
                missing += 1;
            }
            let _ = writeln!(out(), "{id}: {what}");
        }
        ledger.close().await;
        Ok(if missing == 0 { exit::OK } else { exit::FAILED })
    }

    pub(super) async fn retry(&self, failed: bool, flagged: bool) -> Res<i32> {
        let ids = self.s.ledger_selection("retry")?;
        let what = match (failed, flagged, ids.is_empty()) {
            (true, _, true) => Requeue::Failed(None),
            (true, _, false) => Requeue::Failed(Some(ids)),
            (_, true, true) => Requeue::Flagged(None),
            (_, true, false) => Requeue::Flagged(Some(ids)),
            (false, false, false) => Requeue::Recordings(ids),
            (false, false, true) => {
                return Err(usage("retry needs --failed, --flagged or --record-id ID"));
            }
        };
        if self.s.dry_run {
            let ledger = self.ledger_read_only().await?;
            let rows = ledger.jobs().await.map_err(ledger_err)?;
            ledger.close().await;
            let n = rows
                .iter()
                .filter(|r| match &what {
                    Requeue::Failed(None) => {
                        matches!(r.state, JobState::Dead | JobState::Cancelled)
                    }
                    Requeue::Failed(Some(ids)) => {
                        matches!(r.state, JobState::Dead | JobState::Cancelled)
                            && ids.contains(&r.recording_id)
                    }
                    Requeue::Flagged(ids) => {
                        r.state == JobState::Succeeded
                            && r.flagged_at_ms.is_some()
                            && ids.as_ref().is_none_or(|ids| ids.contains(&r.recording_id))
                    }
                    Requeue::Recordings(ids) | Requeue::Force(ids) => {
                        ids.contains(&r.recording_id)
                            && !matches!(r.state, JobState::Running | JobState::Succeeded)
                    }
                })
                .count();
            let _ = writeln!(out(), "dry run: would re-queue {n} job(s)");
            return Ok(exit::OK);
        }
        let ledger = self.ledger_write().await?;
        let n = ledger.requeue(&what).await.map_err(ledger_err)?;
        ledger.close().await;
        let _ = writeln!(out(), "re-queued {n} job(s)");
        Ok(exit::OK)
    }
}
