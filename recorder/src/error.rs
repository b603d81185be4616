//! The recorder's error: which phase failed, why, and whether a retry may succeed.
//!
//! Every foreign error is mapped to a [`Class`] where it is caught (the reason in a comment there),
//! never by matching message strings later. The class decides the exit code (see `exit`).

use std::fmt;

/// Whether retrying the same recording may succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    /// Bad input: bad URL, playback not found, not a playback and no duration, unsupported.
    Permanent,
    /// Network, server error, browser crash, stall, timeout, interruption.
    Transient,
}

/// The step of a recording that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Setup,
    Probe,
    Display,
    Browser,
    Load,
    Play,
    Capture,
    Encode,
    Audio,
    Mux,
    Place,
    /// The playback is drawn wrong: an error screen, a missing file, the logo (`render_watch`).
    Render,
}

impl Phase {
    /// The phase's short name, as in the JSON `error` event.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Setup => "setup",
            Phase::Probe => "probe",
            Phase::Display => "display",
            Phase::Browser => "browser",
            Phase::Load => "load",
            Phase::Play => "play",
            Phase::Capture => "capture",
            Phase::Encode => "encode",
            Phase::Audio => "audio",
            Phase::Mux => "mux",
            Phase::Place => "place",
            Phase::Render => "render",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Setup => "setup",
            Phase::Probe => "probing the recording",
            Phase::Display => "starting the virtual display",
            Phase::Browser => "browser",
            Phase::Load => "loading the player",
            Phase::Play => "playing",
            Phase::Capture => "capturing",
            Phase::Encode => "encoding",
            Phase::Audio => "audio",
            Phase::Mux => "writing the output",
            Phase::Place => "placing the output",
            Phase::Render => "render",
        })
    }
}

/// A failed recording.
#[derive(Debug, thiserror::Error)]
#[error("{phase}: {message}")]
pub struct RecordError {
    pub class: Class,
    pub phase: Phase,
    pub message: String,
}

impl RecordError {
    pub fn permanent(phase: Phase, message: impl Into<String>) -> Self {
        RecordError {
            class: Class::Permanent,
            phase,
            message: message.into(),
        }
    }

    pub fn transient(phase: Phase, message: impl Into<String>) -> Self {
        RecordError {
            class: Class::Transient,
            phase,
            message: message.into(),
        }
    }

    /// The process exit code for this error (documented in `--help` and the README).
    pub fn exit_code(&self) -> i32 {
        match self.class {
            Class::Permanent => exit::PERMANENT,
            Class::Transient => exit::TRANSIENT,
        }
    }
}

/// Documented exit codes of `bbb-record`: the protocol its callers read.
pub use bbb_common::recorder_protocol::exit;

/// Attach a phase and a class to a foreign error.
pub trait Context<T> {
    fn transient(self, phase: Phase, what: &str) -> Result<T, RecordError>;
    fn permanent(self, phase: Phase, what: &str) -> Result<T, RecordError>;
}

impl<T, E: fmt::Display> Context<T> for Result<T, E> {
    fn transient(self, phase: Phase, what: &str) -> Result<T, RecordError> {
        self.map_err(|e| RecordError::transient(phase, format!("{what}: {e}")))
    }

    fn permanent(self, phase: Phase, what: &str) -> Result<T, RecordError> {
        self.map_err(|e| RecordError::permanent(phase, format!("{what}: {e}")))
    }
}
