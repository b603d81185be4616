//! What getRecordings lists: recordings read from the samples' `metadata.xml` files (presentation
//! and video formats of one record id merged, as bbb-web does) plus synthetic recordings that a
//! test adds. Owns the recording model and the metadata.xml reader; never writes to the samples.

use std::collections::BTreeMap;
use std::path::Path;

use quick_xml::Reader;
use quick_xml::events::Event;
use sha1::{Digest, Sha1};

use crate::files::is_record_id;

/// One recording as getRecordings lists it. Fields are strings on purpose: a test can put a
/// malformed value (an empty name, a non-numeric start time) where real servers have been seen to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiRecording {
    pub record_id: String,
    pub meeting_id: String,
    /// bbb-web omits `<internalMeetingID>` when metadata.xml has no `<meeting>` element.
    pub internal_meeting_id: Option<String>,
    pub name: String,
    pub is_breakout: String,
    pub published: String,
    pub state: String,
    /// Epoch milliseconds.
    pub start_time: String,
    pub end_time: String,
    pub participants: String,
    pub raw_size: String,
    /// `<metadata>` children in order; keys that are not XML names are left out of the response.
    pub metadata: Vec<(String, String)>,
    pub playbacks: Vec<ApiPlayback>,
}

/// One `<playback><format>` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiPlayback {
    /// `presentation`, `video`, `podcast`, ...
    pub format: String,
    pub url: PlaybackUrl,
    pub processing_time: String,
    /// Minutes, as getRecordings reports it (metadata.xml has milliseconds).
    pub length_minutes: String,
    pub size: String,
    pub preview_images: Vec<PreviewImage>,
}

/// Where a playback's `<url>` points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlaybackUrl {
    /// This server's own playback URL for the format: the 2.3 player for `presentation`,
    /// `/playback/video/<id>/` for `video` (or the 2.0 / protected forms when those knobs are on).
    Served,
    /// Exactly this text.
    Absolute(String),
}

/// A `<preview><images><image>` thumbnail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviewImage {
    pub url: String,
    pub alt: String,
    pub width: String,
    pub height: String,
}

impl ApiRecording {
    /// A published recording with one `presentation` playback served by this server, and
    /// plausible values everywhere else. Its files need not exist: the playback then 404s.
    pub fn new(record_id: impl Into<String>) -> Self {
        let record_id = record_id.into();
        let start: u64 = record_id
            .rsplit('-')
            .next()
            .and_then(|t| t.parse().ok())
            .unwrap_or(1_700_000_000_000);
        let name = format!("Synthetic {}", &record_id[..record_id.len().min(8)]);
        ApiRecording {
            meeting_id: format!("meeting-{}", &record_id[..record_id.len().min(12)]),
            internal_meeting_id: Some(record_id.clone()),
            is_breakout: "false".into(),
            published: "true".into(),
            state: "published".into(),
            start_time: start.to_string(),
            end_time: (start + 60_000).to_string(),
            participants: "1".into(),
            raw_size: "0".into(),
            metadata: vec![
                ("isBreakout".into(), "false".into()),
                ("meetingName".into(), name.clone()),
            ],
            playbacks: vec![ApiPlayback::served("presentation", 1)],
            name,
            record_id,
        }
    }

    /// A valid, deterministic BBB record id for synthetic recording number `n`:
    /// `<sha1 of "synthetic-n">-<13-digit ms>`, one minute apart.
    pub fn synthetic_id(n: u64) -> String {
        let hash = hex::encode(Sha1::digest(format!("synthetic-{n}").as_bytes()));
        format!("{hash}-{}", 1_700_000_000_000 + n * 60_000)
    }
}

impl ApiPlayback {
    /// A playback of `format` at this server's own URL, `length_minutes` long.
    pub fn served(format: &str, length_minutes: u64) -> Self {
        ApiPlayback {
            format: format.into(),
            url: PlaybackUrl::Served,
            processing_time: "1000".into(),
            length_minutes: length_minutes.to_string(),
            size: "0".into(),
            preview_images: Vec::new(),
        }
    }
}

/// A parsed XML element: just enough DOM for metadata.xml.
#[derive(Debug, Default)]
struct Element {
    name: String,
    attrs: Vec<(String, String)>,
    children: Vec<Element>,
    /// Text and CDATA content directly inside, concatenated.
    text: String,
}

impl Element {
    fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }
    fn child_text(&self, name: &str) -> Option<String> {
        self.child(name).map(|c| c.text.trim().to_owned())
    }
    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn open_element(start: &quick_xml::events::BytesStart<'_>) -> Result<Element, String> {
    let mut el = Element {
        name: String::from_utf8_lossy(start.name().as_ref()).into_owned(),
        ..Element::default()
    };
    for attr in start.attributes() {
        let attr = attr.map_err(|e| e.to_string())?;
        let value = attr.unescape_value().map_err(|e| e.to_string())?;
        el.attrs.push((
            String::from_utf8_lossy(attr.key.as_ref()).into_owned(),
            value.into_owned(),
        ));
    }
    Ok(el)
}

fn parse_xml(xml: &str) -> Result<Element, String> {
    let mut reader = Reader::from_str(xml);
    let mut stack: Vec<Element> = vec![Element::default()];
    loop {
        let event = reader.read_event().map_err(|e| e.to_string())?;
        match event {
            Event::Start(start) => stack.push(open_element(&start)?),
            Event::Empty(start) => {
                let el = open_element(&start)?;
                stack.last_mut().expect("root").children.push(el);
            }
            Event::End(_) => {
                let el = stack.pop().expect("balanced by the reader");
                stack
                    .last_mut()
                    .ok_or("unbalanced end tag")?
                    .children
                    .push(el);
            }
            Event::Text(t) => {
                let text = t.decode().map_err(|e| e.to_string())?;
                stack.last_mut().expect("root").text.push_str(&text);
            }
            Event::CData(c) => {
                let text = c.decode().map_err(|e| e.to_string())?;
                stack.last_mut().expect("root").text.push_str(&text);
            }
            Event::GeneralRef(r) => {
                let name = r.decode().map_err(|e| e.to_string())?;
                let entity = format!("&{name};");
                let resolved = quick_xml::escape::unescape(&entity).map_err(|e| e.to_string())?;
                stack.last_mut().expect("root").text.push_str(&resolved);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if stack.len() != 1 {
        return Err("unclosed element".into());
    }
    let root = stack.pop().expect("one left");
    root.children
        .into_iter()
        .next()
        .ok_or_else(|| "no root element".into())
}

/// Reads one `metadata.xml` into the getRecordings view of it, as bbb-web's `RecMeta` does:
/// meetingID from `<meeting externalId>`, name from `<meeting name>` or meta `meetingName`,
/// length = duration / 60000 (whole minutes).
pub(crate) fn read_metadata(record_id: &str, xml: &str) -> Result<ApiRecording, String> {
    let root = parse_xml(xml)?;
    if root.name != "recording" {
        return Err(format!("root element is <{}>, not <recording>", root.name));
    }
    let meeting = root.child("meeting");
    let meta: Vec<(String, String)> = root
        .child("meta")
        .map(|m| {
            m.children
                .iter()
                .map(|c| (c.name.clone(), c.text.trim().to_owned()))
                .collect()
        })
        .unwrap_or_default();
    let meta_get = |k: &str| {
        meta.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    let text = |k: &str, default: &str| {
        root.child_text(k)
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| default.to_owned())
    };
    let playbacks = root
        .child("playback")
        .map(|p| {
            let duration_ms: u64 = p
                .child_text("duration")
                .and_then(|d| d.parse().ok())
                .unwrap_or(0);
            let preview_images = p
                .child("extensions")
                .and_then(|e| e.child("preview"))
                .and_then(|p| p.child("images"))
                .map(|images| {
                    images
                        .children
                        .iter()
                        .filter(|i| i.name == "image")
                        .map(|i| PreviewImage {
                            url: i.text.trim().to_owned(),
                            alt: i.attr("alt").unwrap_or_default().to_owned(),
                            width: i.attr("width").unwrap_or_default().to_owned(),
                            height: i.attr("height").unwrap_or_default().to_owned(),
                        })
                        .collect()
                })
                .unwrap_or_default();
            let format = p.child_text("format").unwrap_or_else(|| "unknown".into());
            let url = match format.as_str() {
                "presentation" | "video" => PlaybackUrl::Served,
                _ => PlaybackUrl::Absolute(p.child_text("link").unwrap_or_default()),
            };
            vec![ApiPlayback {
                format,
                url,
                processing_time: p
                    .child_text("processing_time")
                    .unwrap_or_else(|| "0".into()),
                length_minutes: (duration_ms / 60_000).to_string(),
                size: p.child_text("size").unwrap_or_else(|| "0".into()),
                preview_images,
            }]
        })
        .unwrap_or_default();
    Ok(ApiRecording {
        record_id: record_id.to_owned(),
        meeting_id: meeting
            .and_then(|m| m.attr("externalId"))
            .map(str::to_owned)
            .or_else(|| meta_get("meetingId"))
            .unwrap_or_else(|| record_id.to_owned()),
        internal_meeting_id: meeting.and_then(|m| m.attr("id")).map(str::to_owned),
        name: meeting
            .and_then(|m| m.attr("name"))
            .map(str::to_owned)
            .or_else(|| meta_get("meetingName"))
            .unwrap_or_else(|| "unknown".into()),
        is_breakout: meeting
            .and_then(|m| m.attr("breakout"))
            .map(str::to_owned)
            .or_else(|| meta_get("isBreakout"))
            .unwrap_or_else(|| "false".into()),
        published: text("published", "true"),
        state: text("state", "unknown"),
        start_time: text("start_time", "0"),
        end_time: text("end_time", "0"),
        participants: text("participants", "0"),
        raw_size: text("raw_size", "0"),
        metadata: meta,
        playbacks,
    })
}

/// Scans `<samples>/recordings/{presentation,video}/<recordId>/metadata.xml` and merges the
/// formats of each record id into one recording (presentation first). A tree may lack one of the
/// two format folders, and entries that are not record ids are not recordings (never listed nor
/// served). Anything else is a broken test set-up, never skipped: no `recordings/` folder (a
/// wrong samples path), neither format folder, an unreadable folder, or a `metadata.xml` that is
/// missing or does not parse. The error names the path.
pub(crate) fn scan_samples(samples: &Path) -> Result<BTreeMap<String, ApiRecording>, String> {
    let recordings = samples.join("recordings");
    if !recordings.is_dir() {
        return Err(format!(
            "samples directory {}: no recordings/ folder in it (wrong path, or samples/generate.sh not run)",
            samples.display()
        ));
    }
    let mut out: BTreeMap<String, ApiRecording> = BTreeMap::new();
    let mut formats = 0;
    for format_dir in ["presentation", "video"] {
        let dir = recordings.join(format_dir);
        if !dir.exists() {
            continue;
        }
        formats += 1;
        let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut names = Vec::new();
        for e in entries {
            let e = e.map_err(|e| format!("{}: {e}", dir.display()))?;
            match e.file_name().into_string() {
                Ok(name) => names.push(name),
                Err(name) => {
                    tracing::debug!(dir = %dir.display(), ?name, "skipping non-recording entry")
                }
            }
        }
        names.sort();
        for id in names {
            // Directory names become URL parts and path parts: only well-formed ids count.
            if !is_record_id(&id) {
                tracing::debug!(dir = %dir.display(), name = %id, "skipping non-recording entry");
                continue;
            }
            let path = dir.join(&id).join("metadata.xml");
            let rec = std::fs::read_to_string(&path)
                .map_err(|e| e.to_string())
                .and_then(|xml| read_metadata(&id, &xml))
                .map_err(|e| format!("{}: {e}", path.display()))?;
            match out.get_mut(&id) {
                Some(existing) => existing.playbacks.extend(rec.playbacks),
                None => {
                    out.insert(id, rec);
                }
            }
        }
    }
    if formats == 0 {
        return Err(format!(
            "samples directory {}: neither recordings/presentation/ nor recordings/video/",
            samples.display()
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_bbb_metadata() {
        let xml = r#"<?xml version="1.0"?>
<recording>
  <id>0123456789abcdef0123456789abcdef01234567-1600000000000</id>
  <state>published</state>
  <published>true</published>
  <start_time>1600000000000</start_time>
  <end_time>1600000600000</end_time>
  <participants>3</participants>
  <meeting id="0123456789abcdef0123456789abcdef01234567-1600000000000" externalId="ext &amp; co" name="Cours &lt;1&gt;" breakout="false"/>
  <meta>
    <meetingName>Cours &lt;1&gt;</meetingName>
    <bbb-origin><![CDATA[Moodle]]></bbb-origin>
  </meta>
  <playback>
    <format>presentation</format>
    <link>https://bbb.example/playback/presentation/2.3/x</link>
    <processing_time>1234</processing_time>
    <duration>185000</duration>
    <extensions><preview><images>
      <image width="176" height="136" alt="Welcome">https://bbb.example/presentation/x/thumb-1.png</image>
    </images></preview></extensions>
  </playback>
  <raw_size>42</raw_size>
</recording>"#;
        let r = read_metadata(
            "0123456789abcdef0123456789abcdef01234567-1600000000000",
            xml,
        )
        .expect("parses");
        assert_eq!(r.meeting_id, "ext & co");
        assert_eq!(r.name, "Cours <1>");
        assert_eq!(r.participants, "3");
        assert_eq!(r.raw_size, "42");
        assert_eq!(r.metadata[1], ("bbb-origin".into(), "Moodle".into()));
        assert_eq!(r.playbacks[0].length_minutes, "3");
        assert_eq!(r.playbacks[0].preview_images[0].alt, "Welcome");
    }

    #[test]
    fn synthetic_ids_are_valid() {
        assert!(is_record_id(&ApiRecording::synthetic_id(0)));
        assert!(is_record_id(&ApiRecording::synthetic_id(249)));
    }
}
