//! bbb-migrate as a library: list BigBlueButton recordings, keep a durable job ledger, download or
//! record each one and place the result where Pod picks it up. The binary (`main.rs` and its
//! `app` module) parses the command line, prints, and maps outcomes to exit codes.
#![forbid(clippy::print_stdout, clippy::print_stderr)]

pub mod api;
pub mod config;
pub mod doctor;
pub mod error;
pub mod ledger;
pub mod media;
pub mod place;
pub mod playback_hosts;
pub mod progress;
pub mod recording;
pub mod report;
pub mod select;
pub mod serve;
pub mod worker;
