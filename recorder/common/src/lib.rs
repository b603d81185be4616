//! The basics that `bbb-record` and `bbb-migrate` share, written once so that they cannot drift
//! apart: how an external program is supervised (own process group, death signal, bounded stderr
//! tail, SIGTERM then SIGKILL to the group), where Chromium is found, the shape of a record id, how a URL is shown in a
//! message, how a finished file is made durable in its place, how an interrupted download is
//! resumed without splicing two versions of a file, the command-line protocol between the
//! migrator and the recorder (exit codes and JSON lines), how both write their log, and their man
//! pages and shell completions.
//!
//! This crate must stay light: it links neither libav nor chromiumoxide, so the migrator (which
//! depends on it) still does not.

pub mod chromium;
pub mod cli_docs;
pub mod download;
pub mod durable;
pub mod logging;
pub mod process;
pub mod record_id;
pub mod recorder_protocol;
pub mod redact;
pub mod resume;

/// An error and its sources, `: `-separated: the whole cause of a failure on one line (reqwest
/// and sqlx put the useful part, "connection refused", in a source).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
