//! Parsing of getRecordings responses (spec 4). Owns the XML -> `Recording` mapping: full text
//! content (text, entity references and CDATA, trimmed), `internalMeetingID` falling back to
//! `recordID`, and per-recording validation so one malformed `<recording>` is reported and skipped
//! instead of aborting the batch (the Python command crashes there).

use std::collections::BTreeMap;

use quick_xml::Reader;
use quick_xml::events::Event;

use crate::recording::{PlaybackFormat, RecordId, Recording};

/// A minimal element tree: getRecordings responses are small enough (a few MB for thousands of
/// recordings) and a tree makes the "element may be missing or empty" rules easy to state.
#[derive(Debug, Default)]
struct Element {
    name: String,
    children: Vec<Element>,
    text: String,
}

impl Element {
    fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// Full text content of the element and its descendants, trimmed.
    fn content(&self) -> String {
        let mut out = String::new();
        self.collect_text(&mut out);
        out.trim().to_owned()
    }

    fn collect_text(&self, out: &mut String) {
        out.push_str(&self.text);
        for c in &self.children {
            c.collect_text(out);
        }
    }

    fn child_text(&self, name: &str) -> Option<String> {
        self.child(name).map(Element::content)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ResponseError {
    #[error("the response is not XML ({0}); first bytes: {1:?}")]
    NotXml(String, String),
    #[error("the response has no <response><returncode>; first bytes: {0:?}")]
    NoReturnCode(String),
    #[error("the server answered FAILED: {key}: {message}")]
    Failed { key: String, message: String },
}

/// A recording the parser had to skip, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    /// 1-based position in the response.
    pub index: usize,
    /// The recordID text if there was one (may be unsafe: for display only).
    pub record_id: Option<String>,
    pub reason: String,
}

#[derive(Debug, Default)]
pub struct Response {
    pub message_key: String,
    pub total_elements: Option<u64>,
    pub recordings: Vec<Recording>,
    pub malformed: Vec<Malformed>,
}

fn head(body: &str) -> String {
    body.chars().take(120).collect()
}

/// getRecordings nests 6 levels (response, recordings, recording, playback, format, preview...);
/// a deeper answer is hostile, and its tree would overflow the stack when dropped.
const MAX_DEPTH: usize = 64;

fn parse_tree(body: &str) -> Result<Element, String> {
    let mut reader = Reader::from_str(body);
    reader.config_mut().check_end_names = true;
    let mut stack: Vec<Element> = vec![Element::default()];
    loop {
        let ev = reader
            .read_event()
            .map_err(|e| format!("{e} at byte {}", reader.buffer_position()))?;
        match ev {
            Event::Start(_) if stack.len() > MAX_DEPTH => {
                return Err(format!(
                    "elements nested deeper than {MAX_DEPTH} at byte {}: refused",
                    reader.buffer_position()
                ));
            }
            Event::Start(s) => stack.push(Element {
                name: String::from_utf8_lossy(s.local_name().as_ref()).into_owned(),
                ..Default::default()
            }),
            Event::Empty(s) => {
                let el = Element {
                    name: String::from_utf8_lossy(s.local_name().as_ref()).into_owned(),
                    ..Default::default()
                };
                stack.last_mut().expect("root").children.push(el);
            }
            Event::End(_) => {
                let el = stack.pop().expect("balanced");
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => return Err("unbalanced end tag".into()),
                }
            }
            Event::Text(t) => {
                let s = t.xml_content().map_err(|e| e.to_string())?;
                stack.last_mut().expect("root").text.push_str(&s);
            }
            Event::CData(t) => {
                let s = t.xml_content().map_err(|e| e.to_string())?;
                stack.last_mut().expect("root").text.push_str(&s);
            }
            Event::GeneralRef(r) => {
                let resolved = match r.resolve_char_ref().map_err(|e| e.to_string())? {
                    Some(c) => c.to_string(),
                    None => {
                        let name = r.decode().map_err(|e| e.to_string())?;
                        quick_xml::escape::resolve_predefined_entity(&name)
                            .ok_or_else(|| format!("unknown entity &{name};"))?
                            .to_owned()
                    }
                };
                stack.last_mut().expect("root").text.push_str(&resolved);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if stack.len() != 1 {
        return Err("unexpected end of document".into());
    }
    Ok(stack.pop().expect("root"))
}

/// Parses one getRecordings response. `FAILED` is an error carrying the server's message, never an
/// empty list; HTML or other non-XML bodies are errors too.
pub fn parse_response(body: &str) -> Result<Response, ResponseError> {
    let root = parse_tree(body).map_err(|e| ResponseError::NotXml(e, head(body)))?;
    let response = root
        .child("response")
        .ok_or_else(|| ResponseError::NoReturnCode(head(body)))?;
    let returncode = response
        .child_text("returncode")
        .ok_or_else(|| ResponseError::NoReturnCode(head(body)))?;
    let message_key = response.child_text("messageKey").unwrap_or_default();
    if returncode != "SUCCESS" {
        return Err(ResponseError::Failed {
            key: message_key,
            message: response.child_text("message").unwrap_or_default(),
        });
    }
    let total_elements = response
        .child_text("totalElements")
        .and_then(|t| t.parse::<u64>().ok());
    let mut out = Response {
        message_key,
        total_elements,
        ..Default::default()
    };
    let Some(list) = response.child("recordings") else {
        return Ok(out);
    };
    for (i, rec) in list.children_named("recording").enumerate() {
        match parse_recording(rec) {
            Ok(r) => out.recordings.push(r),
            Err((record_id, reason)) => out.malformed.push(Malformed {
                index: i + 1,
                record_id,
                reason,
            }),
        }
    }
    Ok(out)
}

fn parse_recording(rec: &Element) -> Result<Recording, (Option<String>, String)> {
    let raw_id = rec.child_text("recordID");
    let fail = |reason: String| (raw_id.clone(), reason);
    let raw = raw_id
        .clone()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| fail("no <recordID>".into()))?;
    let record_id = RecordId::parse(&raw).map_err(|e| fail(e.to_string()))?;
    let start_text = rec
        .child_text("startTime")
        .ok_or_else(|| fail("no <startTime>".into()))?;
    let start_time_ms = start_text.parse::<i64>().map_err(|_| {
        fail(format!(
            "<startTime> is not epoch milliseconds: {start_text:?}"
        ))
    })?;
    let end_time_ms = rec.child_text("endTime").and_then(|t| t.parse().ok());
    let internal_meeting_id = rec
        .child_text("internalMeetingID")
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| record_id.as_str().to_owned());
    let mut metadata = BTreeMap::new();
    if let Some(meta) = rec.child("metadata") {
        for m in &meta.children {
            metadata.insert(m.name.clone(), m.content());
        }
    }
    let mut formats = Vec::new();
    for playback in rec.children_named("playback") {
        for f in playback.children_named("format") {
            let kind = f.child_text("type").unwrap_or_default();
            let url = f.child_text("url").unwrap_or_default();
            if kind.is_empty() {
                continue;
            }
            formats.push(PlaybackFormat {
                kind,
                url,
                length_minutes: f.child_text("length").and_then(|l| l.parse().ok()),
                size_bytes: f.child_text("size").and_then(|l| l.parse().ok()),
            });
        }
    }
    Ok(Recording {
        record_id,
        meeting_id: rec.child_text("meetingID").unwrap_or_default(),
        internal_meeting_id,
        name: rec.child_text("name").unwrap_or_default(),
        published: rec.child_text("published").unwrap_or_default(),
        state: rec.child_text("state").unwrap_or_default(),
        start_time_ms,
        end_time_ms,
        metadata,
        formats,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_is_an_error_with_the_message() {
        let body = "<response><returncode>FAILED</returncode><messageKey>checksumError</messageKey>\
                    <message>You did not pass the checksum security check</message></response>";
        match parse_response(body) {
            Err(ResponseError::Failed { key, message }) => {
                assert_eq!(key, "checksumError");
                assert_eq!(message, "You did not pass the checksum security check");
            }
            other => panic!("expected Failed, got {other:?}"),
        }
    }

    #[test]
    fn html_is_not_xml_or_has_no_returncode() {
        let html =
            "<html><head><title>404 Not Found</title></head><body><h1>404</h1><hr></body></html>";
        assert!(parse_response(html).is_err());
        assert!(parse_response("").is_err());
    }

    #[test]
    fn malformed_recordings_are_skipped_and_reported() {
        let body = r#"<response><returncode>SUCCESS</returncode><recordings>
          <recording><recordID>../../etc-1</recordID><startTime>1</startTime></recording>
          <recording><recordID>abc-1</recordID><startTime>soon</startTime></recording>
          <recording><name>no id</name></recording>
          <recording><recordID>abc-2</recordID><name>
             <![CDATA[ Spaced ]]></name><startTime>1710325200000</startTime>
             <metadata><bbb-origin/><x>a &amp; b &#233;</x></metadata>
             <playback><format><type>video</type><url>https://h/playback/video/abc-2/</url><length>3</length></format></playback>
          </recording></recordings></response>"#;
        let r = parse_response(body).unwrap();
        assert_eq!(r.recordings.len(), 1);
        let ok = &r.recordings[0];
        assert_eq!(ok.name, "Spaced");
        assert_eq!(ok.internal_meeting_id, "abc-2");
        assert_eq!(ok.meta("bbb-origin"), "");
        assert_eq!(ok.meta("x"), "a & b é");
        assert_eq!(ok.length_secs(), Some(180));
        assert_eq!(r.malformed.len(), 3);
        assert_eq!(r.malformed[0].index, 1);
        assert!(r.malformed[0].reason.contains("unsafe recordID"));
        assert!(r.malformed[1].reason.contains("startTime"));
        assert!(r.malformed[2].reason.contains("no <recordID>"));
    }
}
