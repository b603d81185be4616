//! Free space in the work (temp) and claim directories. Before a job writes anything big (a
//! download once its size is known, a recording before bbb-record starts) it waits here until
//! both directories have the job's expected size plus a margin free; a full disk then stops the
//! worker from taking on work instead of failing job after job with ENOSPC and burning their
//! retries. Owns the recognition of "disk full" errors (ENOSPC, EDQUOT) too.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::watch;

use crate::error::{JobError, Phase};

/// What a recording needs on disk per second of its length. bbb-record encodes H.264 at CRF 23
/// plus AAC at 128 kbit/s: slides stay well under 1 Mbit/s, a screen share or webcams with much
/// motion reach 2 to 3; 4 Mbit/s (500 kB/s, 1.8 GB an hour) is a deliberately high ceiling, so
/// that a recording of hours does not start on a disk it cannot finish on.
pub const RECORDING_BYTES_PER_SEC: u64 = 4_000_000 / 8;

#[derive(Debug, Clone)]
pub struct SpaceSettings {
    /// The directories a job writes to (temp dir, claim dir).
    pub dirs: Vec<PathBuf>,
    /// Kept free on top of a job's expected size ([worker] free_space_margin_mb).
    pub margin: u64,
    /// How often a waiting worker looks again ([worker] free_space_poll_ms).
    pub poll: Duration,
}

/// Whether an I/O error means the filesystem (or the user's quota) is full.
pub use bbb_common::download::is_no_space;

/// Bytes available to this (unprivileged or not) process in the filesystem of `dir`.
pub fn free_bytes(dir: &Path) -> nix::Result<u64> {
    let s = nix::sys::statvfs::statvfs(dir)?;
    Ok(s.blocks_available() as u64 * s.fragment_size() as u64)
}

fn mb(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / f64::from(1u32 << 20))
}

impl SpaceSettings {
    /// The first directory with less than `needed` + margin free, as (dir, free bytes).
    fn short(&self, needed: u64) -> Option<(&Path, u64)> {
        self.below(needed.saturating_add(self.margin))
    }

    /// The first directory with less than `limit` bytes free.
    fn below(&self, limit: u64) -> Option<(&Path, u64)> {
        self.dirs.iter().find_map(|d| match free_bytes(d) {
            Ok(free) if free < limit => Some((d.as_path(), free)),
            Ok(_) => None,
            // A directory that cannot be measured is not waited for: writing to it will say
            // what is wrong.
            Err(e) => {
                tracing::debug!("statvfs {}: {e}", d.display());
                None
            }
        })
    }

    /// Whether every directory has `needed` + margin free now.
    pub fn has_room(&self, needed: u64) -> bool {
        self.short(needed).is_none()
    }

    /// Waits until every directory has `needed` bytes plus the margin free, looking again every
    /// `poll`; says so once when it has to wait, and once when it goes on. Ends with a
    /// "cancelled" error when `cancel` turns true (Ctrl-C, lease lost, cancel request).
    pub async fn wait(
        &self,
        record_id: &str,
        phase: Phase,
        needed: u64,
        cancel: &mut watch::Receiver<bool>,
    ) -> Result<(), JobError> {
        let mut waited = false;
        loop {
            let Some((dir, free)) = self.short(needed) else {
                if waited {
                    tracing::warn!(
                        record_id,
                        "enough free space again: starting the {phase} phase"
                    );
                }
                return Ok(());
            };
            if !waited {
                tracing::warn!(
                    record_id,
                    "not starting the {phase} phase: {} has {} free, the job needs {} (expected \
                     size) + {} (margin, [worker] free_space_margin_mb); waiting for space, \
                     looking again every {:?}",
                    dir.display(),
                    mb(free),
                    mb(needed),
                    mb(self.margin),
                    self.poll
                );
                waited = true;
            }
            if *cancel.borrow() {
                return Err(JobError::transient(record_id, phase, "cancelled"));
            }
            tokio::select! {
                _ = tokio::time::sleep(self.poll) => {}
                _ = cancel.changed() => {
                    return Err(JobError::transient(record_id, phase, "cancelled"));
                }
            }
        }
    }

    /// The message suffix of an error that happened while a directory was (nearly) full:
    /// `Some(" (<dir> is full: N free)")` when one has less than the margin (at least 1 MiB)
    /// free. For children whose own error does not say ENOSPC in a form we could classify.
    pub fn full_note(&self) -> Option<String> {
        let (dir, free) = self.below(self.margin.max(1 << 20))?;
        Some(format!(" ({} is full: {} free)", dir.display(), mb(free)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_is_measured_against_the_margin() {
        let dir = tempfile::tempdir().unwrap();
        let free = free_bytes(dir.path()).unwrap();
        assert!(free > 0);
        let s = SpaceSettings {
            dirs: vec![dir.path().to_path_buf()],
            margin: 0,
            poll: Duration::from_millis(10),
        };
        assert!(s.has_room(0));
        assert!(!s.has_room(u64::MAX / 2));
        let s = SpaceSettings {
            margin: u64::MAX,
            ..s
        };
        assert!(!s.has_room(0));
        assert!(s.full_note().unwrap().contains("is full"));
        assert!(is_no_space(&std::io::Error::from_raw_os_error(
            libc::ENOSPC
        )));
        assert!(is_no_space(&std::io::Error::from_raw_os_error(
            libc::EDQUOT
        )));
        assert!(!is_no_space(&std::io::Error::from_raw_os_error(libc::EIO)));
    }

    #[tokio::test]
    async fn a_wait_ends_on_cancel() {
        let dir = tempfile::tempdir().unwrap();
        let s = SpaceSettings {
            dirs: vec![dir.path().to_path_buf()],
            margin: u64::MAX,
            poll: Duration::from_secs(60),
        };
        let (tx, mut rx) = watch::channel(false);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let _ = tx.send(true);
        });
        let r = tokio::time::timeout(
            Duration::from_secs(5),
            s.wait("rec-1", Phase::Download, 1, &mut rx),
        )
        .await
        .expect("the wait ends on cancel");
        assert_eq!(r.unwrap_err().message, "cancelled");
    }
}
