//! The media times at which the 2.3 player's picture can change, read from the recording's own
//! files: slide intervals and annotation in/undo times (`shapes.svg`), tldraw shape times and
//! undos (`tldraw.json`), zoom (`panzooms.xml`), cursor (`cursor.xml`), screen-share start and stop
//! (`deskshare.xml`) and the chat, whose list merges the chat messages (`slides_new.xml`), the
//! published polls (`polls.json`) and the shared external videos' links (`external_videos.json`),
//! each shown from its own time.
//!
//! A recorder that steps the paused player from change to change (fast mode) needs every such
//! time and must know what it does not know: a file a player may draw on time that is not read
//! here (`questions.json`) is reported in [`ChangeTimes::unread`], so the caller records that
//! recording in real time instead of giving it a different picture. Captions (`captions.json`)
//! are not drawn on time: the player gives them to its video element as caption tracks, which stay
//! off until a viewer turns them on, so they are in no recorded picture.
//!
//! Everything here comes from the server: a time that is not a finite, non-negative number, or a
//! file that does not parse, is an error naming the file, never a guess.

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

/// An event file of a recording: (its text, its name, the element, the element's time
/// attributes, what changes at those times).
type EventFile<'a> = (
    Option<&'a str>,
    &'static str,
    &'a [u8],
    &'a [&'a [u8]],
    ChangeKind,
);

/// What changes the picture at a [`Change`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ChangeKind {
    /// A slide (or the logo placeholder) is shown or hidden.
    Slide,
    /// An annotation is drawn, grows or is undone (`shapes.svg` or `tldraw.json`).
    Annotation,
    /// The presentation's view box changes.
    Zoom,
    /// The presenter's cursor moves, appears or disappears.
    Cursor,
    /// The screen share starts or stops (the layout switches).
    ScreenShare,
    /// A chat message, a poll's result or an external video's link appears in the chat (or the
    /// chat is cleared).
    Chat,
}

/// One media time at which the picture can change, and why.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Change {
    pub time: f64,
    pub kind: ChangeKind,
}

/// The files of a recording this module reads, as fetched (absent files are `None`).
#[derive(Debug, Default, Clone, Copy)]
pub struct RecordingFiles<'a> {
    pub shapes_svg: Option<&'a str>,
    pub tldraw_json: Option<&'a str>,
    pub panzooms_xml: Option<&'a str>,
    pub cursor_xml: Option<&'a str>,
    pub deskshare_xml: Option<&'a str>,
    pub slides_new_xml: Option<&'a str>,
    pub polls_json: Option<&'a str>,
    pub external_videos_json: Option<&'a str>,
}

impl<'a> RecordingFiles<'a> {
    /// The files read here, in the order [`RecordingFiles::from_fetched`] takes them.
    pub const NAMES: [&'static str; 8] = [
        "shapes.svg",
        "tldraw.json",
        "panzooms.xml",
        "cursor.xml",
        "deskshare.xml",
        "slides_new.xml",
        "polls.json",
        "external_videos.json",
    ];

    /// The files as fetched, in the order of [`RecordingFiles::NAMES`] (`None`: absent).
    pub fn from_fetched(texts: &'a [Option<String>; 8]) -> Self {
        RecordingFiles {
            shapes_svg: texts[0].as_deref(),
            tldraw_json: texts[1].as_deref(),
            panzooms_xml: texts[2].as_deref(),
            cursor_xml: texts[3].as_deref(),
            deskshare_xml: texts[4].as_deref(),
            slides_new_xml: texts[5].as_deref(),
            polls_json: texts[6].as_deref(),
            external_videos_json: texts[7].as_deref(),
        }
    }
}

/// Files a 2.3 player may draw on time that this module does not read: a recording that has one
/// cannot be stepped from its change times alone. `questions.json` (a chat list of questions) was
/// read by a development branch of bbb-playback and by no release; how a player that reads it
/// draws it is not known.
pub const UNREAD_TIMED_FILES: &[&str] = &["questions.json"];

/// Every change time of a recording, in media time order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChangeTimes {
    /// Sorted by time; one entry per (time, kind).
    pub changes: Vec<Change>,
    /// The files present on the server that change the picture in ways not read here (from
    /// [`UNREAD_TIMED_FILES`]).
    pub unread: Vec<String>,
}

impl ChangeTimes {
    /// The distinct change times inside the recorded span `start..end` (media times), as times from
    /// the output's start; times closer than a millisecond are one change.
    pub fn times_in(&self, start: f64, end: f64) -> Vec<f64> {
        let mut out: Vec<f64> = Vec::new();
        for change in &self.changes {
            let t = change.time - start;
            if t <= 0.0 || t >= end - start {
                continue;
            }
            if out.last().is_none_or(|last| t - last >= 1e-3) {
                out.push(t);
            }
        }
        out
    }
}

/// A file that does not say when its picture changes in a way we can trust.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{file}: {why}")]
pub struct ChangeError {
    pub file: &'static str,
    pub why: String,
}

/// Reads every change time from `files`; `present` names the other files the server has (to
/// report the ones in [`UNREAD_TIMED_FILES`]).
pub fn change_times(files: &RecordingFiles, present: &[&str]) -> Result<ChangeTimes, ChangeError> {
    let mut changes = Vec::new();
    if let Some(svg) = files.shapes_svg {
        shapes_svg(svg, &mut changes)?;
    }
    if let Some(json) = files.tldraw_json {
        tldraw_json(json, &mut changes)?;
    }
    let events: [EventFile; 4] = [
        (
            files.panzooms_xml,
            "panzooms.xml",
            b"event",
            &[b"timestamp"],
            ChangeKind::Zoom,
        ),
        (
            files.cursor_xml,
            "cursor.xml",
            b"event",
            &[b"timestamp"],
            ChangeKind::Cursor,
        ),
        (
            files.deskshare_xml,
            "deskshare.xml",
            b"event",
            &[b"start_timestamp", b"stop_timestamp"],
            ChangeKind::ScreenShare,
        ),
        (
            files.slides_new_xml,
            "slides_new.xml",
            b"chattimeline",
            &[b"in", b"out"],
            ChangeKind::Chat,
        ),
    ];
    for (text, file, element, attributes, kind) in events {
        if let Some(xml) = text {
            xml_times(xml, file, element, attributes, kind, &mut changes)?;
        }
    }
    for (text, file) in [
        (files.polls_json, "polls.json"),
        (files.external_videos_json, "external_videos.json"),
    ] {
        if let Some(json) = text {
            chat_list_times(json, file, &mut changes)?;
        }
    }
    changes.sort_by(|a, b| a.time.total_cmp(&b.time).then(a.kind.cmp(&b.kind)));
    changes.dedup_by(|a, b| a.kind == b.kind && (a.time - b.time).abs() < 1e-6);
    let unread = UNREAD_TIMED_FILES
        .iter()
        .filter(|f| present.contains(f))
        .map(|f| (*f).to_owned())
        .collect();
    Ok(ChangeTimes { changes, unread })
}

/// A media time as the server writes it: a finite, non-negative number of seconds.
fn media_time(text: &str, file: &'static str) -> Result<f64, ChangeError> {
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|t| t.is_finite() && *t >= 0.0)
        .ok_or_else(|| ChangeError {
            file,
            why: format!("{:?} is not a media time", truncate(text)),
        })
}

/// A JSON media time (`what` names it in the error): a finite, non-negative number of seconds.
fn json_media_time(
    v: &serde_json::Value,
    file: &'static str,
    what: &str,
) -> Result<f64, ChangeError> {
    v.as_f64()
        .filter(|t| t.is_finite() && *t >= 0.0)
        .ok_or_else(|| ChangeError {
            file,
            why: format!("{what} {:?} is not a media time", truncate(&v.to_string())),
        })
}

/// At most 40 characters of a hostile value, for an error message.
fn truncate(text: &str) -> String {
    text.chars().take(40).collect()
}

/// The value of attribute `name` of `element`, unescaped.
fn attribute(
    element: &BytesStart,
    name: &[u8],
    file: &'static str,
) -> Result<Option<String>, ChangeError> {
    for attr in element.attributes() {
        let attr = attr.map_err(|e| ChangeError {
            file,
            why: format!("bad attribute: {e}"),
        })?;
        if attr.key.as_ref() == name {
            let value = attr.unescape_value().map_err(|e| ChangeError {
                file,
                why: format!("bad attribute value: {e}"),
            })?;
            return Ok(Some(value.into_owned()));
        }
    }
    Ok(None)
}

/// The start and empty elements of `xml`, each given to `each`; a parse error names `file`.
fn elements(
    xml: &str,
    file: &'static str,
    mut each: impl FnMut(&BytesStart) -> Result<(), ChangeError>,
) -> Result<(), ChangeError> {
    let mut reader = Reader::from_str(xml);
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) | Ok(Event::Empty(e)) => each(&e)?,
            Ok(Event::Eof) => return Ok(()),
            Ok(_) => {}
            Err(e) => {
                return Err(ChangeError {
                    file,
                    why: format!("not XML at byte {}: {e}", reader.buffer_position()),
                });
            }
        }
    }
}

/// Every time in `attributes` of the `element` elements of `xml` (an attribute may list several
/// times separated by spaces, as `in`/`out` do for a slide shown twice).
fn xml_times(
    xml: &str,
    file: &'static str,
    element: &[u8],
    attributes: &[&[u8]],
    kind: ChangeKind,
    out: &mut Vec<Change>,
) -> Result<(), ChangeError> {
    elements(xml, file, |e| {
        if e.local_name().as_ref() != element {
            return Ok(());
        }
        for name in attributes {
            if let Some(value) = attribute(e, name, file)? {
                for t in value.split_whitespace() {
                    out.push(Change {
                        time: media_time(t, file)?,
                        kind,
                    });
                }
            }
        }
        Ok(())
    })
}

/// `shapes.svg`: slides (`<image class="slide" in out>`) and annotations (`<g class="shape"
/// timestamp undo>`, where an `undo` of -1 means never undone).
fn shapes_svg(svg: &str, out: &mut Vec<Change>) -> Result<(), ChangeError> {
    const FILE: &str = "shapes.svg";
    elements(svg, FILE, |e| {
        let class = attribute(e, b"class", FILE)?.unwrap_or_default();
        let classes: Vec<&str> = class.split_whitespace().collect();
        match e.local_name().as_ref() {
            b"image" if classes.contains(&"slide") => {
                for name in [&b"in"[..], b"out"] {
                    for t in attribute(e, name, FILE)?
                        .unwrap_or_default()
                        .split_whitespace()
                    {
                        out.push(Change {
                            time: media_time(t, FILE)?,
                            kind: ChangeKind::Slide,
                        });
                    }
                }
            }
            b"g" if classes.contains(&"shape") => {
                let Some(drawn) = attribute(e, b"timestamp", FILE)? else {
                    return Err(ChangeError {
                        file: FILE,
                        why: "an annotation without a timestamp".into(),
                    });
                };
                out.push(Change {
                    time: media_time(&drawn, FILE)?,
                    kind: ChangeKind::Annotation,
                });
                if let Some(undo) = attribute(e, b"undo", FILE)?
                    && undo.trim() != "-1"
                {
                    out.push(Change {
                        time: media_time(&undo, FILE)?,
                        kind: ChangeKind::Annotation,
                    });
                }
            }
            _ => {}
        }
        Ok(())
    })
}

/// `tldraw.json` (BBB 2.6+): per slide, its `timestamp` and its shapes' `timestamp` and `undo`.
fn tldraw_json(json: &str, out: &mut Vec<Change>) -> Result<(), ChangeError> {
    const FILE: &str = "tldraw.json";
    let fail = |why: String| ChangeError { file: FILE, why };
    let root: serde_json::Value =
        serde_json::from_str(json).map_err(|e| fail(format!("not JSON: {e}")))?;
    let slides = root
        .as_object()
        .ok_or_else(|| fail("not a JSON object".into()))?;
    let time = |v: &serde_json::Value, what: &str| json_media_time(v, FILE, what);
    for (key, slide) in slides {
        // Besides the slides (keyed by their image number) the file holds `bbb_version`.
        if key == "bbb_version" {
            continue;
        }
        if !key.bytes().all(|b| b.is_ascii_digit()) {
            return Err(fail(format!(
                "an entry {:?} that is not a slide",
                truncate(key)
            )));
        }
        if let Some(t) = slide.get("timestamp") {
            out.push(Change {
                time: time(t, "a slide timestamp")?,
                kind: ChangeKind::Slide,
            });
        }
        let shapes = match slide.get("shapes") {
            None => continue,
            Some(serde_json::Value::Array(shapes)) => shapes,
            Some(_) => return Err(fail(format!("slide {key}'s shapes are not a list"))),
        };
        for shape in shapes {
            let drawn = shape
                .get("timestamp")
                .ok_or_else(|| fail(format!("a shape of slide {key} without a timestamp")))?;
            out.push(Change {
                time: time(drawn, "a shape timestamp")?,
                kind: ChangeKind::Annotation,
            });
            match shape.get("undo") {
                None => {}
                Some(undo) if undo.as_f64() == Some(-1.0) => {}
                Some(undo) => out.push(Change {
                    time: time(undo, "a shape undo time")?,
                    kind: ChangeKind::Annotation,
                }),
            }
        }
    }
    Ok(())
}

/// `polls.json` and `external_videos.json`: lists of items, each shown in the chat from its
/// `timestamp` (whole seconds as BBB writes them; any media time is taken).
fn chat_list_times(
    json: &str,
    file: &'static str,
    out: &mut Vec<Change>,
) -> Result<(), ChangeError> {
    let fail = |why: String| ChangeError { file, why };
    let root: serde_json::Value =
        serde_json::from_str(json).map_err(|e| fail(format!("not JSON: {e}")))?;
    let items = root
        .as_array()
        .ok_or_else(|| fail("not a JSON list".into()))?;
    for item in items {
        let stamp = item
            .get("timestamp")
            .ok_or_else(|| fail("an item without a timestamp".into()))?;
        let time = json_media_time(stamp, file, "timestamp")?;
        out.push(Change {
            time,
            kind: ChangeKind::Chat,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(id: &str, file: &str) -> Option<String> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../samples/recordings/presentation")
            .join(id)
            .join(file);
        std::fs::read_to_string(path).ok()
    }

    fn files_of(id: &str) -> ([Option<String>; 8], ChangeTimes) {
        let texts = RecordingFiles::NAMES.map(|n| sample(id, n));
        let changes = change_times(&RecordingFiles::from_fetched(&texts), &[]).unwrap();
        (texts, changes)
    }

    fn times_of(changes: &ChangeTimes, kind: ChangeKind) -> Vec<f64> {
        let mut t: Vec<f64> = changes
            .changes
            .iter()
            .filter(|c| c.kind == kind)
            .map(|c| c.time)
            .collect();
        t.dedup();
        t
    }

    #[test]
    fn sample_a_changes_are_its_slides_annotations_zooms_cursor_screen_share_and_chat() {
        // Sample A (15 s): slides at 0, 5, 10; rectangles at 2.0 and 2.3; zooms at 3.0 and 4.5;
        // screen share from 6 to 8; chat at 1, 4, 9, 12 and an external video's link at 7
        // (samples/generate.sh writes these files).
        let (texts, changes) = files_of("2e7380bcd2a9cc83f2a744b8707a7f75c0a94e9d-1767261600000");
        assert!(texts[0].is_some(), "sample A's shapes.svg");
        assert_eq!(
            times_of(&changes, ChangeKind::Slide),
            [0.0, 5.0, 10.0, 15.0]
        );
        let annotations = times_of(&changes, ChangeKind::Annotation);
        assert!(annotations.starts_with(&[2.0, 2.3]), "{annotations:?}");
        assert_eq!(
            times_of(&changes, ChangeKind::Zoom),
            [0.0, 3.0, 4.5, 5.0, 10.0]
        );
        assert_eq!(
            times_of(&changes, ChangeKind::Cursor),
            [0.0, 1.0, 2.0, 4.0, 9.0, 12.0, 14.0]
        );
        assert_eq!(times_of(&changes, ChangeKind::ScreenShare), [6.0, 8.0]);
        assert!(times_of(&changes, ChangeKind::Chat).starts_with(&[1.0, 4.0, 7.0, 9.0, 12.0]));
        assert!(changes.unread.is_empty());
        // Sorted, and the span's own start and end are no changes.
        assert!(changes.changes.windows(2).all(|w| w[0].time <= w[1].time));
        let inside = changes.times_in(0.0, 15.0);
        assert_eq!(inside.first(), Some(&1.0));
        assert!(inside.iter().all(|t| *t > 0.0 && *t < 15.0));
        assert_eq!(changes.times_in(4.0, 6.0), [0.5, 1.0]);
    }

    #[test]
    fn tldraw_shapes_count_their_drawing_and_their_undo() {
        // The BBB 3.0 sample: a stroke drawn at 1.0 and grown at 1.5, a rectangle at 2.0 undone
        // at 3.0, slides shown from 0 and 4.
        let (texts, changes) = files_of("9ab2ee57ac366300603eddd020ff006cf7d6e661-1767283200000");
        assert!(texts[1].is_some(), "the 3.0 sample's tldraw.json");
        let annotations = times_of(&changes, ChangeKind::Annotation);
        assert!(
            annotations.starts_with(&[1.0, 1.5, 2.0, 3.0]),
            "{annotations:?}"
        );
        assert!(times_of(&changes, ChangeKind::Slide).starts_with(&[0.0, 4.0]));
        // Its chat message at 6, and its poll's result at 7.
        assert_eq!(times_of(&changes, ChangeKind::Chat), [6.0, 7.0]);
    }

    #[test]
    fn polls_and_external_videos_are_chat_changes_at_their_timestamps() {
        // As BBB's presentation publisher writes them (whole seconds).
        let polls = r#"[{"timestamp":125,"type":"YN","question":"","answers":[{"id":0,"key":"Yes","numVotes":2}],"respondents":2,"responders":2},
            {"timestamp":300,"type":"A-2","question":"Which?","answers":[],"respondents":0,"responders":0}]"#;
        let videos =
            r#"[{"timestamp":42,"external_video_url":"https://www.youtube.com/watch?v=x"}]"#;
        let files = RecordingFiles {
            polls_json: Some(polls),
            external_videos_json: Some(videos),
            ..Default::default()
        };
        let changes = change_times(&files, &["polls.json", "external_videos.json"]).unwrap();
        assert_eq!(times_of(&changes, ChangeKind::Chat), [42.0, 125.0, 300.0]);
        assert!(changes.unread.is_empty());
        // An empty list is no change.
        let files = RecordingFiles {
            polls_json: Some("[]"),
            ..Default::default()
        };
        assert!(change_times(&files, &[]).unwrap().changes.is_empty());
    }

    #[test]
    fn a_slide_shown_twice_lists_both_intervals() {
        let svg = r#"<svg><image class="slide" in="0.0 20.5" out="10.0 30.0" xlink:href="a.png"/>
            <image id="image0" class="slide" in="10.0" out="20.5" src="logo.png"/></svg>"#;
        let files = RecordingFiles {
            shapes_svg: Some(svg),
            ..Default::default()
        };
        let changes = change_times(&files, &[]).unwrap();
        assert_eq!(
            times_of(&changes, ChangeKind::Slide),
            [0.0, 10.0, 20.5, 30.0]
        );
    }

    #[test]
    fn hostile_times_are_errors_naming_the_file() {
        let cases = [
            (
                RecordingFiles {
                    cursor_xml: Some(r#"<recording><event timestamp="NaN"/></recording>"#),
                    ..Default::default()
                },
                "cursor.xml",
            ),
            (
                RecordingFiles {
                    deskshare_xml: Some(r#"<recording><event start_timestamp="-3"/></recording>"#),
                    ..Default::default()
                },
                "deskshare.xml",
            ),
            (
                RecordingFiles {
                    shapes_svg: Some(r#"<svg><g class="shape" undo="-1"/></svg>"#),
                    ..Default::default()
                },
                "shapes.svg",
            ),
            (
                RecordingFiles {
                    panzooms_xml: Some("<recording><event timestamp=\"1\"></recording>"),
                    ..Default::default()
                },
                "panzooms.xml",
            ),
            (
                RecordingFiles {
                    tldraw_json: Some(r#"{"1":{"shapes":[{"id":1,"timestamp":"soon"}]}}"#),
                    ..Default::default()
                },
                "tldraw.json",
            ),
            (
                RecordingFiles {
                    tldraw_json: Some(r#"{"../x":{"shapes":[]}}"#),
                    ..Default::default()
                },
                "tldraw.json",
            ),
            (
                RecordingFiles {
                    polls_json: Some(r#"[{"timestamp":-5}]"#),
                    ..Default::default()
                },
                "polls.json",
            ),
            (
                RecordingFiles {
                    polls_json: Some(r#"{"timestamp":5}"#),
                    ..Default::default()
                },
                "polls.json",
            ),
            (
                RecordingFiles {
                    external_videos_json: Some(r#"[{"external_video_url":"https://x"}]"#),
                    ..Default::default()
                },
                "external_videos.json",
            ),
            (
                RecordingFiles {
                    external_videos_json: Some(r#"[{"timestamp":"1e400"}]"#),
                    ..Default::default()
                },
                "external_videos.json",
            ),
        ];
        for (files, file) in cases {
            let error = change_times(&files, &[]).unwrap_err();
            assert_eq!(error.file, file, "{error}");
        }
    }

    #[test]
    fn timed_files_not_read_here_are_reported() {
        let changes = change_times(
            &RecordingFiles::default(),
            &["questions.json", "captions.json", "notes.html"],
        )
        .unwrap();
        assert_eq!(changes.unread, ["questions.json"]);
    }
}
