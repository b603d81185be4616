//! The contract between `bbb-record` and a program that runs it (`bbb-migrate`): the exit codes,
//! and the JSON lines `bbb-record --progress json` writes on stdout, one object per line, told
//! apart by their `event` key. The recorder writes these types and the migrator reads the same
//! types, so a renamed field breaks the build instead of a migration.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Documented exit codes of `bbb-record` (its `--help` and the README list them).
pub mod exit {
    pub const SUCCESS: i32 = 0;
    /// The command line was refused (unknown option, bad value, refused URL).
    pub const USAGE: i32 = 2;
    /// This playback cannot be recorded: trying again will not help.
    pub const PERMANENT: i32 = 3;
    /// Something that may pass (a crashed browser, a network error): try again later.
    pub const TRANSIENT: i32 = 4;
}

/// Whether a failure may pass on a later try.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureClass {
    Permanent,
    Transient,
}

/// How a recording's picture was captured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordingMode {
    /// The player played in real time and its screen was grabbed on the media clock.
    #[default]
    RealTime,
    /// `--fast`: the paused player was stepped from one picture change to the next.
    Fast,
}

impl RecordingMode {
    /// The name used on the wire, in the ledger and in `status` (`real_time`, `fast`).
    pub fn as_str(self) -> &'static str {
        match self {
            RecordingMode::RealTime => "real_time",
            RecordingMode::Fast => "fast",
        }
    }
}

/// One line of `--progress json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Line {
    /// Recording began: `kind` names the player (`bbb-2.3`, `bbb-2.0`, `generic`), `duration`
    /// is the media length it sets out to record, in seconds (for a BBB playback the recording's
    /// own `<playback><duration>`).
    Started {
        kind: String,
        duration: f64,
    },
    /// The media time reached, in seconds.
    Progress {
        media_time: f64,
        duration: f64,
    },
    /// The player is waiting for data at `media_time`.
    Stalled {
        media_time: f64,
    },
    Warning {
        message: String,
    },
    /// The output is in place and was checked.
    Done {
        output: PathBuf,
        duration: f64,
        frames: u64,
        /// What was wrong with the picture and recorded anyway (`--accept-broken`).
        #[serde(default)]
        degraded: Vec<String>,
        /// The third-party assets answered from the bundle (URLs without query strings).
        #[serde(default)]
        assets_answered: Vec<String>,
        /// The contact sheet written for `--contact-sheet`, if one was asked for.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sheet: Option<ContactSheet>,
        /// How the picture was captured (a recorder that predates fast mode: real time).
        #[serde(default)]
        mode: RecordingMode,
        /// Fast mode was asked for and this recording was captured in real time instead: why.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fast_fallback: Option<String>,
    },
    /// The recording failed; the exit code follows the class.
    Error {
        class: FailureClass,
        phase: String,
        message: String,
    },
}

/// A contact sheet: frames of one output, scaled to tiles of one size and laid out in a grid
/// (left to right, then top to bottom) in one JPEG. `bbb-record --contact-sheet` reports it in
/// its `done` line, `bbb-record contact-sheet` prints it as one JSON line; the migrator keeps it
/// in the ledger with the picture, and `serve` cuts the tiles out of the picture by this layout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContactSheet {
    pub columns: u32,
    pub tile_width: u32,
    pub tile_height: u32,
    /// The output's length, in seconds, as the sheet maker read it.
    pub duration: f64,
    pub tiles: Vec<SheetTile>,
}

/// One frame of a contact sheet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SheetTile {
    /// The time of the frame shown, in seconds from the output's start.
    pub at: f64,
    pub kind: TileKind,
    /// Mean luma of the tile, 0-255.
    pub luma: f64,
    /// The tile is one flat colour (a black screen, an empty page): worth a look.
    pub flat: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TileKind {
    /// Spread evenly over the output.
    Spread,
    /// The first frame after a change of the picture (a slide change).
    Change,
}

impl Line {
    /// The line as written on stdout (no newline). Seconds are rounded to the millisecond.
    pub fn to_json(&self) -> String {
        let mut line = self.clone();
        match &mut line {
            Line::Started { duration, .. } | Line::Done { duration, .. } => {
                *duration = ms(*duration)
            }
            Line::Progress {
                media_time,
                duration,
            } => {
                *media_time = ms(*media_time);
                *duration = ms(*duration);
            }
            Line::Stalled { media_time } => *media_time = ms(*media_time),
            Line::Warning { .. } | Line::Error { .. } => {}
        }
        serde_json::to_string(&line).expect("a protocol line always serialises")
    }

    /// Reads one line of the recorder's stdout; `None` for anything that is not a protocol line.
    pub fn parse(text: &str) -> Option<Line> {
        serde_json::from_str(text.trim()).ok()
    }
}

fn ms(seconds: f64) -> f64 {
    (seconds * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_and_keep_their_wire_names() {
        let done = Line::Done {
            output: "/srv/x.mp4".into(),
            duration: 12.345_67,
            frames: 370,
            degraded: vec!["slide-2.png is missing".into()],
            assets_answered: vec![],
            sheet: None,
            mode: RecordingMode::Fast,
            fast_fallback: None,
        };
        let text = done.to_json();
        assert!(
            text.starts_with(r#"{"event":"done","output":"/srv/x.mp4","duration":12.346,"#),
            "{text}"
        );
        assert!(matches!(
            Line::parse(&text),
            Some(Line::Done { frames: 370, .. })
        ));
        let progress = Line::Progress {
            media_time: 1.5,
            duration: 3.0,
        };
        assert_eq!(
            progress.to_json(),
            r#"{"event":"progress","media_time":1.5,"duration":3.0}"#
        );
        let error = Line::Error {
            class: FailureClass::Transient,
            phase: "browser".into(),
            message: "Chromium exited".into(),
        };
        assert_eq!(Line::parse(&error.to_json()), Some(error));
    }

    #[test]
    fn what_older_recorders_left_out_has_a_default() {
        let line = r#"{"event":"done","output":"x","duration":3,"frames":90}"#;
        assert_eq!(
            Line::parse(line),
            Some(Line::Done {
                output: "x".into(),
                duration: 3.0,
                frames: 90,
                degraded: vec![],
                assets_answered: vec![],
                sheet: None,
                mode: RecordingMode::RealTime,
                fast_fallback: None,
            })
        );
    }

    #[test]
    fn anything_else_is_not_a_line() {
        for text in [
            "not json",
            "{}",
            r#"{"event":"unknown"}"#,
            r#"{"event":"progress"}"#,
            "[]",
        ] {
            assert_eq!(Line::parse(text), None, "{text}");
        }
    }
}
