//! The domain model of one BBB recording as the API describes it, and the validation of the
//! untrusted strings in it (`RecordId`, the only form of a recordID that may reach a path, a file
//! name or a ledger key, lives in `bbb_common::record_id`) and the choice of playback URL (spec
//! 4.3, 4.4). Knows nothing of HTTP, the ledger or the claim directory.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use bbb_common::record_id::{RecordId, UnsafeRecordId};

/// One `<playback><format>` of a recording.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlaybackFormat {
    /// `presentation`, `video`, `podcast`, `screenshare`, `notes`, ...
    pub kind: String,
    pub url: String,
    /// `<length>`, in minutes (BBB rounds it).
    pub length_minutes: Option<u64>,
    /// `<size>`, in bytes: of a `video` format, about its file's; of a `presentation`, of the
    /// files the player loads (nothing like a recording of it). Absent on old servers.
    #[serde(default)]
    pub size_bytes: Option<u64>,
}

/// One `<recording>` of a getRecordings response, every field read as full text content (text and
/// CDATA), trimmed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recording {
    pub record_id: RecordId,
    pub meeting_id: String,
    /// `internalMeetingID`, or the recordID when the element is absent (old servers).
    pub internal_meeting_id: String,
    pub name: String,
    pub published: String,
    pub state: String,
    pub start_time_ms: i64,
    pub end_time_ms: Option<i64>,
    pub metadata: BTreeMap<String, String>,
    pub formats: Vec<PlaybackFormat>,
}

/// What the claim mode has to do for a recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Playback {
    /// A `video` format: an HTML page naming an `.m4v` file (spec 7.3).
    Video(String),
    /// A `presentation` format: recorded with `bbb-record` (spec 7.4, 8).
    Presentation(String),
}

impl Playback {
    pub fn url(&self) -> &str {
        match self {
            Playback::Video(u) | Playback::Presentation(u) => u,
        }
    }
}

impl Recording {
    pub fn meta(&self, key: &str) -> &str {
        self.metadata.get(key).map(String::as_str).unwrap_or("")
    }

    /// The video playback URL; when several exist the last wins (spec 4.3).
    pub fn video_url(&self) -> Option<&str> {
        self.formats
            .iter()
            .rev()
            .find(|f| f.kind == "video" && !f.url.is_empty())
            .map(|f| f.url.as_str())
    }

    /// The presentation URL after the optional 2.0 -> 2.3 rewrite (spec 4.4); last one wins.
    pub fn presentation_url(&self, rewrite_23: bool) -> Option<String> {
        self.formats
            .iter()
            .rev()
            .find(|f| f.kind == "presentation" && !f.url.is_empty())
            .map(|f| convert_format(&f.url, &self.internal_meeting_id, rewrite_23))
    }

    /// `source_url` of the Python command: the video playback wins over the presentation.
    pub fn source_url(&self, rewrite_23: bool) -> String {
        match self.video_url() {
            Some(v) => v.to_owned(),
            None => self.presentation_url(rewrite_23).unwrap_or_default(),
        }
    }

    pub fn playback(&self, rewrite_23: bool) -> Option<Playback> {
        if let Some(v) = self.video_url() {
            return Some(Playback::Video(v.to_owned()));
        }
        self.presentation_url(rewrite_23)
            .map(Playback::Presentation)
    }

    /// Playback length in seconds: the format's `<length>` (minutes), else end - start.
    pub fn length_secs(&self) -> Option<u64> {
        let from_formats = self
            .formats
            .iter()
            .filter(|f| f.kind == "presentation" || f.kind == "video")
            .filter_map(|f| f.length_minutes)
            .max()
            .filter(|m| *m > 0)
            .map(|m| m * 60);
        from_formats.or_else(|| {
            self.end_time_ms
                .filter(|e| *e > self.start_time_ms)
                .map(|e| ((e - self.start_time_ms) / 1000) as u64)
        })
    }
}

/// Spec 4.4 `convert_format`: the query string is kept.
pub fn convert_format(url: &str, internal_meeting_id: &str, rewrite_23: bool) -> String {
    if rewrite_23 && url.contains("/2.0/") {
        url.replace("/2.0/playback.html", &format!("/2.3/{internal_meeting_id}"))
            .trim()
            .to_owned()
    } else {
        url.trim().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrite_keeps_query() {
        let id = "ffbfc4cc24428694e8b53a4e144f414052431693-1530718721124";
        let url = format!("https://h/playback/presentation/2.0/playback.html?meetingId={id}");
        assert_eq!(
            convert_format(&url, id, true),
            format!("https://h/playback/presentation/2.3/{id}?meetingId={id}")
        );
        assert_eq!(convert_format(&url, id, false), url);
        let old = format!("https://h/playback/presentation/0.9.0/playback.html?meetingId={id}");
        assert_eq!(convert_format(&old, id, true), old);
    }
}
