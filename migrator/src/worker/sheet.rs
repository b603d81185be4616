//! The contact sheet of a job's output: where its picture is written (a private directory
//! outside the claim directory Pod watches), how it is made for a downloaded video (a supervised
//! `bbb-record contact-sheet` child: the migrator does not link libav, and a decoder crash on a
//! hostile file then ends a child, not the batch) and how it is read back for the ledger. A
//! recording's sheet is made by the recorder itself (`--contact-sheet`, see `recorder.rs`).
//!
//! A sheet is a help for people, not a check of the output: failing to make one never fails the
//! job; the reason is kept in the output's record and shown in the gallery.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bbb_common::process::Spawn;
use bbb_common::recorder_protocol::ContactSheet;
use nix::sys::signal::Signal;

/// The most of a sheet's JPEG kept in the ledger. Real ones are 40-120 KiB (12 tiles of
/// 320 px); anything larger is not what bbb-record writes.
pub const MAX_JPEG: u64 = 4 << 20;

/// How long a sheet may take: 12 seeks and decodes, seconds even for hours of video.
const TIMEOUT: Duration = Duration::from_secs(120);

/// A made sheet: its layout and its JPEG.
#[derive(Debug, Clone)]
pub struct MadeSheet {
    pub layout: ContactSheet,
    pub jpeg: Vec<u8>,
}

/// A private directory for one job's sheet, removed when dropped.
pub struct SheetDir(tempfile::TempDir);

impl SheetDir {
    pub fn new() -> Result<SheetDir, String> {
        tempfile::Builder::new()
            .prefix("bbb-migrate-sheet-")
            .tempdir()
            .map(SheetDir)
            .map_err(|e| format!("no temporary directory for the contact sheet: {e}"))
    }

    pub fn jpeg(&self) -> PathBuf {
        self.0.path().join("sheet.jpg")
    }
}

/// Reads back the JPEG bbb-record wrote for `layout`.
pub fn read(layout: ContactSheet, jpeg: &Path) -> Result<MadeSheet, String> {
    let len = std::fs::metadata(jpeg)
        .map_err(|e| format!("{}: {e}", jpeg.display()))?
        .len();
    if len == 0 || len > MAX_JPEG {
        return Err(format!("{}: {len} bytes", jpeg.display()));
    }
    let jpeg = std::fs::read(jpeg).map_err(|e| format!("{}: {e}", jpeg.display()))?;
    if !jpeg.starts_with(&[0xff, 0xd8]) {
        return Err("the contact sheet is not a JPEG".into());
    }
    Ok(MadeSheet { layout, jpeg })
}

/// Makes the sheet of the video at `video` with `bbb-record contact-sheet`.
pub async fn of_video(program: &Path, video: &Path, grace: Duration) -> Result<MadeSheet, String> {
    let dir = SheetDir::new()?;
    let out = dir.jpeg();
    let mut child = Spawn::new("bbb-record contact-sheet", program)
        .arg("contact-sheet")
        .arg(video)
        .arg("-o")
        .arg(&out)
        .stdout_piped()
        .death_signal(Signal::SIGTERM)
        .start()
        .map_err(|e| format!("cannot start bbb-record: {e}"))?;
    let stdout = child.take_stdout().expect("piped");
    // One short JSON line: read it on a blocking thread while the child runs, bounded by the
    // timeout below.
    let reader = tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut text = String::new();
        let _ = stdout.take(1 << 20).read_to_string(&mut text);
        text
    });
    let ended = child.ended();
    let in_time = tokio::time::timeout(TIMEOUT, ended).await.is_ok();
    let (status, child) = tokio::task::spawn_blocking(move || {
        let status = child.terminate(if in_time { Duration::ZERO } else { grace });
        (status, child)
    })
    .await
    .map_err(|e| format!("stopping bbb-record: {e}"))?;
    let text = reader.await.unwrap_or_default();
    if !in_time {
        return Err(format!(
            "bbb-record contact-sheet still running after {TIMEOUT:?}"
        ));
    }
    let status = status.map_err(|e| format!("waiting for bbb-record: {e}"))?;
    if !status.success() {
        let tail = child.stderr_tail();
        let last = tail.lines().last().unwrap_or("").to_owned();
        return Err(format!(
            "bbb-record contact-sheet: {}{}",
            bbb_common::process::describe_status(status),
            if last.is_empty() {
                String::new()
            } else {
                format!(": {last}")
            }
        ));
    }
    let layout: ContactSheet = text
        .lines()
        .find_map(|l| serde_json::from_str(l.trim()).ok())
        .ok_or("bbb-record contact-sheet printed no sheet")?;
    read(layout, &out)
}
