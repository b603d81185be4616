//! The write fence of a ledger lease: checked right before every write to Pod or Moodle, so a
//! worker whose lease was taken over writes nothing more.

use std::future::Future;
use std::time::Duration;

use crate::ledger::{JobStore, Lease, LedgerError};

/// Why a fence refused a write.
#[derive(Debug, thiserror::Error)]
pub enum FenceError {
    /// Another worker took the job over.
    #[error("lease lost: another worker owns this recording's import now")]
    LeaseLost,
    /// The job was cancelled on request.
    #[error("cancelled on request")]
    Cancelled,
    #[error("ledger: {0}")]
    Ledger(LedgerError),
}

/// Checked right before every write to Pod or Moodle. The import of a recording belongs to a
/// ledger job; its fence renews the job's lease and fails once another worker took the job
/// over, so a worker that lost its lease writes nothing more.
pub trait WriteFence: Sync {
    fn check(&self) -> impl Future<Output = Result<(), FenceError>> + Send;
}

/// No ledger (dry run, which writes nothing anyway, and library tests).
#[derive(Debug, Clone, Copy)]
pub struct Unfenced;

impl WriteFence for Unfenced {
    async fn check(&self) -> Result<(), FenceError> {
        Ok(())
    }
}

/// The fence of a ledger lease: a fenced heartbeat (0 rows once the epoch moved on).
pub struct LeaseFence<'a, S> {
    pub store: &'a S,
    pub lease: &'a Lease,
    pub duration: Duration,
}

impl<S: JobStore> WriteFence for LeaseFence<'_, S> {
    async fn check(&self) -> Result<(), FenceError> {
        match self.store.heartbeat(self.lease, self.duration, None).await {
            Ok(false) => Ok(()),
            Ok(true) => Err(FenceError::Cancelled),
            Err(LedgerError::LeaseLost { .. }) => Err(FenceError::LeaseLost),
            Err(e) => Err(FenceError::Ledger(e)),
        }
    }
}
