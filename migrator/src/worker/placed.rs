//! What a file about to be placed is, kept in its job's checkpoint (a fenced write, right before
//! the placement). A worker that dies between placing the file and completing the job leaves
//! this record to the next lease, which finds the file in place and completes the job with it:
//! how the picture was captured, its defects, why fast mode was not used.

use std::path::Path;

use bbb_common::recorder_protocol::RecordingMode;
use serde::{Deserialize, Serialize};

/// The ledger's record of a placed file beyond what the file itself tells (its length is read
/// from it again).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlacedOutput {
    /// The file this record is of: its reserved name and its size. A record of another file (a
    /// stalled earlier holder placing after all) is not taken for this one.
    pub path: String,
    pub bytes: u64,
    /// How its picture was captured (`None` for a download, or when bbb-record did not say).
    pub mode: Option<RecordingMode>,
    /// Why a recording asked for in fast mode was captured in real time.
    pub fast_fallback: Option<String>,
    /// The picture's defects when a broken playback was recorded anyway (`accept_broken`).
    #[serde(default)]
    pub degraded: Vec<String>,
    /// Why it has no contact sheet.
    pub sheet_error: Option<String>,
}

/// The checkpoint's JSON: the record under a key of its own, so that it is never mistaken for
/// another kind of checkpoint (an import's list of owners) nor one for it.
#[derive(Serialize, Deserialize)]
struct Checkpoint<T> {
    placed_output: T,
}

impl PlacedOutput {
    /// The checkpoint that keeps this record.
    pub fn to_checkpoint(&self) -> String {
        serde_json::to_string(&Checkpoint {
            placed_output: self,
        })
        .expect("a placed output serialises")
    }

    /// The record that a job's `checkpoint` keeps of the file at `path`, `bytes` long, found in
    /// place by a later lease. `None` when there is none (placed by a bbb-migrate that kept no
    /// record), it cannot be read, or it is of another file: the job is then completed without
    /// a mode and without defects.
    pub fn of_placed(
        record_id: &str,
        checkpoint: Option<&str>,
        path: &Path,
        bytes: u64,
    ) -> Option<PlacedOutput> {
        let Some(text) = checkpoint else {
            tracing::debug!(
                record_id,
                "no record of {} in the checkpoint: its mode and defects are not known",
                path.display()
            );
            return None;
        };
        let placed = match serde_json::from_str::<Checkpoint<PlacedOutput>>(text) {
            Ok(c) => c.placed_output,
            Err(e) => {
                tracing::warn!(
                    record_id,
                    "the checkpoint holds no record of {} ({e}): its mode and defects are not known",
                    path.display()
                );
                return None;
            }
        };
        if placed.path != path.to_string_lossy() || placed.bytes != bytes {
            tracing::warn!(
                record_id,
                "the checkpoint is of {} ({} bytes), not of {} ({bytes} bytes): its mode and \
                 defects are not known",
                placed.path,
                placed.bytes,
                path.display()
            );
            return None;
        }
        Some(placed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast() -> PlacedOutput {
        PlacedOutput {
            path: "/claim/a.mp4".into(),
            bytes: 77,
            mode: Some(RecordingMode::Fast),
            fast_fallback: None,
            degraded: vec!["slide-2.png is missing".into()],
            sheet_error: None,
        }
    }

    #[test]
    fn the_record_comes_back_for_the_file_it_is_of() {
        let text = fast().to_checkpoint();
        assert!(text.starts_with(r#"{"placed_output":{"#), "{text}");
        let back = PlacedOutput::of_placed("r", Some(&text), Path::new("/claim/a.mp4"), 77);
        assert_eq!(back, Some(fast()));
    }

    #[test]
    fn no_record_another_files_or_another_kind_of_checkpoint_gives_nothing() {
        let path = Path::new("/claim/a.mp4");
        let text = fast().to_checkpoint();
        assert_eq!(PlacedOutput::of_placed("r", None, path, 77), None);
        assert_eq!(PlacedOutput::of_placed("r", Some(&text), path, 78), None);
        let other = Path::new("/claim/b.mp4");
        assert_eq!(PlacedOutput::of_placed("r", Some(&text), other, 77), None);
        // An import's checkpoint: the owners it placed.
        let owners = r#"[{"user_id":1,"username":"a","external_id":null}]"#;
        assert_eq!(PlacedOutput::of_placed("r", Some(owners), path, 77), None);
        assert_eq!(PlacedOutput::of_placed("r", Some("{"), path, 77), None);
    }
}
