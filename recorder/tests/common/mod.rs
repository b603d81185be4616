//! Shared helpers of the recorder's end-to-end tests: running the real `bbb-record` binary; the
//! fake BBB server and the output analysis come from `fake_bbb::media`.

#![allow(dead_code)]

use std::process::{Command, Output};

pub use fake_bbb::media::*;

pub fn bbb_record() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_bbb-record"));
    c.env_remove("XAUTHORITY").env_remove("DISPLAY");
    c
}

pub fn run(args: &[&str]) -> Output {
    let out = bbb_record().args(args).output().expect("run bbb-record");
    eprintln!(
        "bbb-record {:?} -> {:?}\nstdout:\n{}\nstderr:\n{}",
        args,
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
