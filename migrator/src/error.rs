//! Error kinds shared by every phase of a job. Owns the permanent/transient classification; the
//! ledger state and the exit code are decided from `ErrorClass`, never from message text.

use std::fmt;

/// Whether retrying can help. Decides `dead` vs `pending` in the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Bad input or a resource that is gone (HTTP 404, malformed recording, recorder exit 3).
    Permanent,
    /// Network trouble, a 5xx, a timeout, a lost lease, recorder exit 4 or a crash.
    Transient,
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Permanent => "permanent",
            ErrorClass::Transient => "transient",
        }
    }
}

/// The step of a job an error happened in, so every message says where it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Fetch,
    /// The playback URL refused by the host policy (`crate::playback_hosts`).
    Select,
    Parse,
    Download,
    Record,
    Place,
    Ledger,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Fetch => "fetch",
            Phase::Select => "select",
            Phase::Parse => "parse",
            Phase::Download => "download",
            Phase::Record => "record",
            Phase::Place => "place",
            Phase::Ledger => "ledger",
        })
    }
}

/// A failure of one recording's job. Always names the recording and the phase.
#[derive(Debug, thiserror::Error)]
#[error("recording {record_id}: {phase} failed ({}): {message}", class.as_str())]
pub struct JobError {
    pub record_id: String,
    pub phase: Phase,
    pub class: ErrorClass,
    pub message: String,
}

impl JobError {
    pub fn new(
        record_id: impl Into<String>,
        phase: Phase,
        class: ErrorClass,
        message: impl Into<String>,
    ) -> Self {
        JobError {
            record_id: record_id.into(),
            phase,
            class,
            message: message.into(),
        }
    }

    pub fn permanent(record_id: &str, phase: Phase, message: impl Into<String>) -> Self {
        Self::new(record_id, phase, ErrorClass::Permanent, message)
    }

    pub fn transient(record_id: &str, phase: Phase, message: impl Into<String>) -> Self {
        Self::new(record_id, phase, ErrorClass::Transient, message)
    }
}
