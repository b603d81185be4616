//! The BBB API endpoint (`/bigbluebutton/api/...`): checksum check, getRecordings filters and
//! pagination, and the XML responses in bbb-web's shape. Owns response text only; the recordings
//! come from `catalog`, URLs from the caller.

use std::collections::BTreeMap;

use quick_xml::Writer;
use quick_xml::events::{BytesCData, BytesEnd, BytesStart, BytesText, Event};
use sha1::{Digest, Sha1};

use crate::catalog::{ApiRecording, PlaybackUrl};

/// BBB 2.6+ caps `limit` at 100 (pod-migration-spec.md §3.4).
pub const MAX_LIMIT: u64 = 100;

/// The filters and page of one getRecordings call, decoded from its query string.
#[derive(Debug, Default)]
pub(crate) struct Query {
    record_ids: Vec<String>,
    meeting_ids: Vec<String>,
    states: Vec<String>,
    meta: Vec<(String, String)>,
    page: Option<(u64, u64)>,
}

fn split_list(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

impl Query {
    /// Decodes parameters as bbb-web does: comma lists for ids and states, `meta_*` filters, and
    /// 2.6 pagination (offset: invalid or negative -> 0; limit: clamped to 1..=100, invalid -> no
    /// pagination at all).
    pub(crate) fn parse(raw_query: &str) -> Query {
        let mut q = Query::default();
        let mut offset = None;
        let mut limit = None;
        for (k, v) in url::form_urlencoded::parse(raw_query.as_bytes()) {
            match k.as_ref() {
                "recordID" => q.record_ids = split_list(&v),
                "meetingID" => q.meeting_ids = split_list(&v),
                "state" => q.states = split_list(&v),
                "offset" => offset = Some(v.trim().parse::<i64>().map_or(0, |o| o.max(0) as u64)),
                "limit" => limit = v.trim().parse::<i64>().ok(),
                key => {
                    if let Some(meta) = key.strip_prefix("meta_") {
                        q.meta.push((meta.to_owned(), v.into_owned()));
                    }
                }
            }
        }
        if let Some(l) = limit {
            q.page = Some((offset.unwrap_or(0), l.clamp(1, MAX_LIMIT as i64) as u64));
        }
        q
    }

    fn matches(&self, r: &ApiRecording) -> bool {
        // bbb-web: record ids are prefixes (startsWith); meeting ids, used only when no record id
        // is given, become the sha1 of the external id, which prefixes the record ids of that
        // meeting. Recordings added by tests rarely follow that rule, so an exact meetingID
        // match is accepted too.
        let id_ok = if !self.record_ids.is_empty() {
            self.record_ids.iter().any(|p| r.record_id.starts_with(p))
        } else if !self.meeting_ids.is_empty() {
            self.meeting_ids.iter().any(|m| {
                let internal = hex::encode(Sha1::digest(m.as_bytes()));
                r.record_id.starts_with(&internal) || &r.meeting_id == m
            })
        } else {
            true
        };
        // With no `state`, BBB and Scalelite list published and unpublished recordings only.
        let state_ok = if self.states.is_empty() {
            r.state == "published" || r.state == "unpublished"
        } else {
            self.states.iter().any(|s| s == "any" || *s == r.state)
        };
        let meta_ok = self
            .meta
            .iter()
            .all(|(k, v)| r.metadata.iter().any(|(mk, mv)| mk == k && mv == v));
        id_ok && state_ok && meta_ok
    }
}

/// Builds the `<url>` of a playback served by this server.
pub(crate) trait UrlMaker {
    fn playback_url(&self, record_id: &str, format: &str) -> String;
    /// Rewrites an absolute URL of the original server (a preview image) onto this server.
    fn rebase(&self, url: &str) -> String;
    fn protected(&self) -> bool;
}

/// The getRecordings response for `query` over `all` (sorted by record id: a stable order, where
/// real BBB has none).
pub(crate) fn get_recordings(
    all: &BTreeMap<String, ApiRecording>,
    query: &Query,
    urls: &dyn UrlMaker,
) -> String {
    let matching: Vec<&ApiRecording> = all.values().filter(|r| query.matches(r)).collect();
    let total = matching.len() as u64;
    let page: Vec<&ApiRecording> = match query.page {
        Some((offset, limit)) => matching
            .into_iter()
            .skip(offset as usize)
            .take(limit as usize)
            .collect(),
        None => matching,
    };
    let mut w = Writer::new(Vec::new());
    start(&mut w, "response");
    text_el(&mut w, "returncode", "SUCCESS");
    if page.is_empty() {
        start(&mut w, "recordings");
        end(&mut w, "recordings");
        text_el(&mut w, "messageKey", "noRecordings");
        text_el(
            &mut w,
            "message",
            "There are no recordings for the meeting(s).",
        );
    } else {
        start(&mut w, "recordings");
        for r in page {
            write_recording(&mut w, r, urls);
        }
        end(&mut w, "recordings");
    }
    if query.page.is_some() {
        // BBB 2.6 appends it under <response> for paginated calls (XmlServiceImpl).
        text_el(&mut w, "totalElements", &total.to_string());
    }
    end(&mut w, "response");
    String::from_utf8(w.into_inner()).expect("writer only gets str")
}

fn write_recording(w: &mut Writer<Vec<u8>>, r: &ApiRecording, urls: &dyn UrlMaker) {
    start(w, "recording");
    text_el(w, "recordID", &r.record_id);
    text_el(w, "meetingID", &r.meeting_id);
    if let Some(internal) = &r.internal_meeting_id {
        text_el(w, "internalMeetingID", internal);
    }
    cdata_el(w, "name", &r.name);
    text_el(w, "isBreakout", &r.is_breakout);
    text_el(w, "published", &r.published);
    if urls.protected() {
        // Scalelite adds this element only when protected recordings are enabled.
        text_el(w, "protected", "true");
    }
    text_el(w, "state", &r.state);
    text_el(w, "startTime", &r.start_time);
    text_el(w, "endTime", &r.end_time);
    text_el(w, "participants", &r.participants);
    text_el(w, "rawSize", &r.raw_size);
    start(w, "metadata");
    for (k, v) in &r.metadata {
        if is_xml_name(k) {
            cdata_el(w, k, v);
        } else {
            tracing::warn!(key = %k, record_id = %r.record_id, "metadata key is not an XML name; left out");
        }
    }
    end(w, "metadata");
    let sizes: Option<u64> = r.playbacks.iter().map(|p| p.size.parse::<u64>().ok()).sum();
    text_el(w, "size", &sizes.unwrap_or(0).to_string());
    start(w, "playback");
    for p in &r.playbacks {
        start(w, "format");
        text_el(w, "type", &p.format);
        let url = match &p.url {
            PlaybackUrl::Served => urls.playback_url(&r.record_id, &p.format),
            PlaybackUrl::Absolute(u) => u.clone(),
        };
        text_el(w, "url", &url);
        text_el(w, "processingTime", &p.processing_time);
        text_el(w, "length", &p.length_minutes);
        text_el(w, "size", &p.size);
        if !p.preview_images.is_empty() {
            start(w, "preview");
            start(w, "images");
            for img in &p.preview_images {
                let el = BytesStart::new("image").with_attributes([
                    ("alt", img.alt.as_str()),
                    ("height", img.height.as_str()),
                    ("width", img.width.as_str()),
                ]);
                write(w, Event::Start(el));
                write(w, Event::Text(BytesText::new(&urls.rebase(&img.url))));
                end(w, "image");
            }
            end(w, "images");
            end(w, "preview");
        }
        end(w, "format");
    }
    end(w, "playback");
    write(w, Event::Empty(BytesStart::new("data")));
    end(w, "recording");
}

/// `<response><returncode>FAILED</returncode><messageKey>..</messageKey><message>..</message>`.
pub(crate) fn failed(key: &str, message: &str) -> String {
    let mut w = Writer::new(Vec::new());
    start(&mut w, "response");
    text_el(&mut w, "returncode", "FAILED");
    text_el(&mut w, "messageKey", key);
    text_el(&mut w, "message", message);
    end(&mut w, "response");
    String::from_utf8(w.into_inner()).expect("writer only gets str")
}

/// What `GET /bigbluebutton/api` answers: the API version probe.
pub(crate) fn version() -> String {
    let mut w = Writer::new(Vec::new());
    start(&mut w, "response");
    text_el(&mut w, "returncode", "SUCCESS");
    text_el(&mut w, "version", "2.0");
    end(&mut w, "response");
    String::from_utf8(w.into_inner()).expect("writer only gets str")
}

/// bbb-web 2.5+ answers a bad or missing checksum with this (ChecksumConstraint / API docs);
/// older servers said "You did not pass the checksum security check".
pub(crate) fn checksum_error() -> String {
    failed("checksumError", "Checksums do not match")
}

/// An element name we can emit unchanged: `[A-Za-z_][A-Za-z0-9._-]*`, no `xml` prefix games.
fn is_xml_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

// Writing to a Vec cannot fail; these helpers keep the call sites readable.
fn write(w: &mut Writer<Vec<u8>>, e: Event<'_>) {
    w.write_event(e).expect("writing to a Vec");
}
fn start(w: &mut Writer<Vec<u8>>, name: &str) {
    write(w, Event::Start(BytesStart::new(name)));
}
fn end(w: &mut Writer<Vec<u8>>, name: &str) {
    write(w, Event::End(BytesEnd::new(name)));
}
fn text_el(w: &mut Writer<Vec<u8>>, name: &str, text: &str) {
    start(w, name);
    write(w, Event::Text(BytesText::new(text)));
    end(w, name);
}
/// Text in CDATA, as bbb-web's templates write names and metadata values. A `]]>` inside is
/// split across two sections by quick-xml.
fn cdata_el(w: &mut Writer<Vec<u8>>, name: &str, text: &str) {
    start(w, name);
    for part in BytesCData::escaped(text) {
        write(w, Event::CData(part));
    }
    end(w, name);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pagination_params() {
        assert_eq!(Query::parse("offset=5&limit=1000").page, Some((5, 100)));
        assert_eq!(Query::parse("offset=-3&limit=0").page, Some((0, 1)));
        assert_eq!(Query::parse("offset=x&limit=10").page, Some((0, 10)));
        assert_eq!(Query::parse("offset=10&limit=x").page, None);
        assert_eq!(Query::parse("recordID=a,b%2Cc").record_ids, ["a", "b", "c"]);
    }

    #[test]
    fn names() {
        assert!(is_xml_name("bbb-origin-server-name"));
        assert!(!is_xml_name("a b"));
        assert!(!is_xml_name("1abc"));
        assert!(!is_xml_name("a<b"));
    }
}
