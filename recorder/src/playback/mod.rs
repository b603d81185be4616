//! What kind of page a URL is (BBB 2.3 player, legacy 2.0 player, Scalelite protected link, any
//! other page), the recording's `metadata.xml`, and where its media lives; [`page`] holds the
//! players' DOM contract (probe, chrome hiding, clock messages), [`changes`] the media times at
//! which the picture can change.
//!
//! Facts from `bbb-playback.md` ("URLs and ids", "On-disk / served layout"). The kind guessed from
//! the URL is only a first guess: servers redirect 2.0 links to the 2.3 player and protected links
//! to either, so `record` confirms the player from the loaded page and classifies the final URL.

pub mod changes;
pub mod page;

use quick_xml::Reader;
use quick_xml::events::Event;
use url::Url;

use crate::error::{Phase, RecordError};

use bbb_common::record_id::is_canonical as is_record_id;

/// The player family a page belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageKind {
    /// `/playback/presentation/2.3/<id>` (the React player of BBB 2.3+).
    Bbb23 { record_id: String },
    /// `/playback/presentation/2.0/playback.html?meetingId=<id>` (and the 0.9.0 path).
    Bbb20 { record_id: String },
    /// `/recording/<id>/<format>?token=...`: Scalelite's one-time link; resolves by redirect.
    ScaleliteProtected { record_id: String },
    /// Anything else: recorded for a duration.
    Generic,
}

impl PageKind {
    pub fn record_id(&self) -> Option<&str> {
        match self {
            PageKind::Bbb23 { record_id }
            | PageKind::Bbb20 { record_id }
            | PageKind::ScaleliteProtected { record_id } => Some(record_id),
            PageKind::Generic => None,
        }
    }

    pub fn is_bbb(&self) -> bool {
        !matches!(self, PageKind::Generic)
    }
}

/// Parse and classify a URL given on the command line. Only http and https are recorded, and
/// `file:` with `allow_file` (`--allow-file`): a URL handed on from a server's answer must not
/// make us record a local file, and `javascript:`, `data:` or `chrome:` pages never are.
pub fn parse_url(input: &str, allow_file: bool) -> Result<(Url, PageKind), RecordError> {
    let url = Url::parse(input).map_err(|e| {
        let shown: String = input
            .split('?')
            .next()
            .unwrap_or("")
            .chars()
            .take(80)
            .collect();
        RecordError::permanent(Phase::Setup, format!("invalid URL {shown:?}: {e}"))
    })?;
    let allowed = matches!(url.scheme(), "http" | "https") || allow_file && url.scheme() == "file";
    if !allowed {
        return Err(RecordError::permanent(
            Phase::Setup,
            format!(
                "URL scheme {:?} refused: only http and https are recorded ({}file: with --allow-file)",
                url.scheme(),
                if allow_file { "and " } else { "" }
            ),
        ));
    }
    let kind = classify(&url);
    Ok((url, kind))
}

/// Classify a URL by its path (see the module doc: a guess until the page confirms it).
pub fn classify(url: &Url) -> PageKind {
    let segments: Vec<&str> = url
        .path_segments()
        .map(|s| s.filter(|s| !s.is_empty()).collect())
        .unwrap_or_default();
    let meeting_id = || {
        url.query_pairs()
            .find(|(k, _)| k == "meetingId")
            .map(|(_, v)| v.into_owned())
    };
    match segments.as_slice() {
        [.., "playback", "presentation", "2.3", id] => PageKind::Bbb23 {
            record_id: (*id).to_owned(),
        },
        [
            ..,
            "playback",
            "presentation",
            "2.0" | "0.9.0",
            "playback.html",
        ] => match meeting_id() {
            Some(id) => PageKind::Bbb20 { record_id: id },
            None => PageKind::Generic,
        },
        [.., "recording", id, _format] if url.query_pairs().any(|(k, _)| k == "token") => {
            PageKind::ScaleliteProtected {
                record_id: (*id).to_owned(),
            }
        }
        _ => PageKind::Generic,
    }
}

/// The base URL of a recording's files: `<origin>[/<p>]/presentation/<id>/`.
pub fn recording_base(page: &Url, record_id: &str) -> Result<Url, RecordError> {
    if !is_record_id(record_id) {
        return Err(RecordError::permanent(
            Phase::Probe,
            format!("{record_id:?} is not a BBB record id"),
        ));
    }
    let mut base = page.clone();
    base.set_query(None);
    base.set_fragment(None);
    // The 2.3 player's `p=` parameter inserts a path before `presentation/`.
    let prefix = page
        .query_pairs()
        .find(|(k, _)| k == "p")
        .map(|(_, v)| v.trim_matches('/').to_owned())
        .filter(|p| !p.is_empty() && p.split('/').all(|s| !s.is_empty() && s != ".." && s != "."));
    let path = match prefix {
        Some(p) => format!("/{p}/presentation/{record_id}/"),
        None => format!("/presentation/{record_id}/"),
    };
    base.set_path(&path);
    Ok(base)
}

/// What `metadata.xml` tells a recorder.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metadata {
    pub id: Option<String>,
    pub meeting_name: Option<String>,
    /// Recorded length in milliseconds (`<playback><duration>`): the sum of recorded segments.
    pub duration_ms: Option<u64>,
    pub start_time_ms: Option<u64>,
}

/// Parse `metadata.xml` (robust to CDATA and unknown elements).
pub fn parse_metadata(xml: &str) -> Result<Metadata, String> {
    let mut reader = Reader::from_str(xml);
    let mut path: Vec<String> = Vec::new();
    let mut meta = Metadata::default();
    let mut text = String::new();
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) => {
                path.push(String::from_utf8_lossy(e.local_name().as_ref()).into_owned());
                text.clear();
            }
            Ok(Event::Text(t)) => {
                text.push_str(&t.decode().map_err(|e| e.to_string())?);
            }
            Ok(Event::GeneralRef(r)) => {
                let name = r.decode().map_err(|e| e.to_string())?;
                if let Some(c) = r.resolve_char_ref().ok().flatten() {
                    text.push(c);
                } else if let Some(s) = quick_xml::escape::resolve_predefined_entity(&name) {
                    text.push_str(s);
                }
            }
            Ok(Event::CData(t)) => text.push_str(&String::from_utf8_lossy(&t.into_inner())),
            // Only paths of up to three names mean anything: deeper ends cost nothing (a hostile
            // file nested 100 000 deep must not take quadratic time).
            Ok(Event::End(_)) if path.len() > 3 => {
                path.pop();
                text.clear();
            }
            Ok(Event::End(_)) => {
                let p: Vec<&str> = path.iter().map(String::as_str).collect();
                let value = text.trim().to_owned();
                match p.as_slice() {
                    ["recording", "id"] => meta.id = Some(value),
                    ["recording", "start_time"] => meta.start_time_ms = value.parse().ok(),
                    ["recording", "meta", "meetingName"] => meta.meeting_name = Some(value),
                    ["recording", "meeting"] if meta.meeting_name.is_none() => {}
                    ["recording", "playback", "duration"] => {
                        meta.duration_ms = Some(value.parse().map_err(|_| {
                            format!("<playback><duration> is not a number: {value:?}")
                        })?)
                    }
                    _ => {}
                }
                path.pop();
                text.clear();
            }
            Ok(Event::Eof) => break,
            Ok(_) => {}
            Err(e) => {
                return Err(format!(
                    "malformed XML at byte {}: {e}",
                    reader.error_position()
                ));
            }
        }
    }
    if path.is_empty() && meta == Metadata::default() {
        return Err("no <recording> element".into());
    }
    Ok(meta)
}

/// Where the primary media (the master clock and the sound) may be, in order of preference.
pub const MEDIA_CANDIDATES: [&str; 4] = [
    "video/webcams.webm",
    "video/webcams.mp4",
    "audio/audio.webm",
    "audio/audio.ogg",
];

/// A slide image named in `shapes.svg` (a PNG, or an SVG for BBB 2.6+ recordings).
#[derive(Debug, Clone, PartialEq)]
pub struct SlideImage {
    /// Relative to the recording's files (`presentation/<presId>/slide-1.png`).
    pub href: String,
    /// The first media time it is shown (its first `in=` time).
    pub shown_at: Option<f64>,
}

/// The slides named in `shapes.svg`, each once, in document order (to preload them before
/// playing, and to name the time of a missing one). The logo placeholder (`src=`) is not a slide.
pub fn slide_images(shapes_svg: &str) -> Vec<SlideImage> {
    let mut reader = Reader::from_str(shapes_svg);
    let mut out: Vec<SlideImage> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) | Ok(Event::Empty(e)) if e.local_name().as_ref() == b"image" => {
                let mut href = None;
                let mut shown_at = None;
                for attr in e.attributes().flatten() {
                    match attr.key.as_ref() {
                        b"xlink:href" | b"href" => {
                            href = attr.unescape_value().ok().map(|v| v.into_owned());
                        }
                        b"in" => {
                            shown_at = attr.unescape_value().ok().and_then(|v| {
                                v.split_whitespace()
                                    .filter_map(|t| t.parse::<f64>().ok())
                                    .filter(|t| t.is_finite())
                                    .reduce(f64::min)
                            });
                        }
                        _ => {}
                    }
                }
                // A slide is a file of the recording: a path below it, never `..`, an absolute
                // path or another site's URL (shapes.svg comes from the server).
                if let Some(href) = href
                    && is_relative_below(&href)
                    && seen.insert(href.clone())
                {
                    out.push(SlideImage { href, shown_at });
                }
            }
            Ok(Event::Eof) | Err(_) => break,
            Ok(_) => {}
        }
    }
    out
}

/// The slide changes of `slides` inside the recorded span `start..end` (media times), as times
/// from the output's start: every slide's first showing but the opening slide's, which is the
/// first picture and no change. A slide shown again later counts once ([`slide_images`] keeps
/// its first showing).
pub fn slide_changes(slides: &[SlideImage], start: f64, end: f64) -> Vec<f64> {
    let mut shown: Vec<f64> = slides.iter().filter_map(|s| s.shown_at).collect();
    shown.sort_by(f64::total_cmp);
    shown
        .into_iter()
        .skip(1)
        .map(|t| t - start)
        .filter(|t| *t > 0.0 && *t < end - start)
        .collect()
}

/// Whether `href` is a relative path that stays below the directory it is relative to.
fn is_relative_below(href: &str) -> bool {
    !href.is_empty()
        && !href.starts_with('/')
        && !href.contains(':')
        && !href.contains('\\')
        && href.split('/').all(|s| s != ".." && s != ".")
}

/// The time of the first zoom event in `panzooms.xml`: the 2.3 player shows the BBB logo until
/// then (bbb-playback.md).
pub fn first_panzoom(panzooms_xml: &str) -> Option<f64> {
    let mut reader = Reader::from_str(panzooms_xml);
    let mut first: Option<f64> = None;
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) | Ok(Event::Empty(e)) if e.local_name().as_ref() == b"event" => {
                let t = e
                    .attributes()
                    .flatten()
                    .find(|a| a.key.as_ref() == b"timestamp")
                    .and_then(|a| a.unescape_value().ok()?.trim().parse::<f64>().ok())
                    .filter(|t| t.is_finite());
                if let Some(t) = t {
                    first = Some(first.map_or(t, |f| f.min(t)));
                }
            }
            Ok(Event::Eof) | Err(_) => break,
            Ok(_) => {}
        }
    }
    first
}

/// The error the BBB player shows in place of the playback, parsed from its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlayerError {
    /// The HTTP status the text names: the first token of exactly three digits in 100..=599.
    pub code: Option<u16>,
    pub text: String,
}

impl PlayerError {
    pub fn parse(text: &str) -> PlayerError {
        let code = text
            .split(|c: char| !c.is_ascii_digit())
            .filter(|t| t.len() == 3)
            .filter_map(|t| t.parse::<u16>().ok())
            .find(|c| (100..=599).contains(c));
        PlayerError {
            code,
            text: text.to_owned(),
        }
    }

    /// 404 (no such recording) and 400 (refused request) will not change on a retry.
    pub fn is_not_found(&self) -> bool {
        matches!(self.code, Some(400 | 404))
    }
}

#[cfg(test)]
mod player_error_tests {
    use super::PlayerError;

    #[test]
    fn parses_a_whole_status_token() {
        for (text, code, nf) in [
            ("404", Some(404), true),
            ("Error 404", Some(404), true),
            ("400: bad request", Some(400), true),
            ("500", Some(500), false),
            ("", None, false),
            ("1404 items", None, false),
            ("error4040", None, false),
            ("something went wrong", None, false),
        ] {
            let e = PlayerError::parse(text);
            assert_eq!((e.code, e.is_not_found()), (code, nf), "{text:?}");
            assert_eq!(e.text, text);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "6e35e3b2778883f5db637d7a5dba0a427f692e91-1605108888888";

    #[test]
    fn classifies_player_urls() {
        let u = Url::parse(&format!("https://h/playback/presentation/2.3/{ID}?t=3")).unwrap();
        assert_eq!(
            classify(&u),
            PageKind::Bbb23 {
                record_id: ID.into()
            }
        );
        let u = Url::parse(&format!(
            "https://h/playback/presentation/2.0/playback.html?meetingId={ID}"
        ))
        .unwrap();
        assert_eq!(
            classify(&u),
            PageKind::Bbb20 {
                record_id: ID.into()
            }
        );
        let u = Url::parse(&format!("https://h/recording/{ID}/presentation?token=abc")).unwrap();
        assert!(matches!(classify(&u), PageKind::ScaleliteProtected { .. }));
        let u = Url::parse("https://example.org/some/page").unwrap();
        assert_eq!(classify(&u), PageKind::Generic);
        assert!(parse_url("not a url", false).is_err());
        for refused in [
            "ftp://h/x",
            "file:///etc/passwd",
            "javascript:alert(1)",
            "data:text/html,x",
        ] {
            let e = parse_url(refused, false).unwrap_err();
            assert!(e.to_string().contains("refused"), "{refused}: {e}");
        }
        assert!(parse_url("file:///tmp/page.html", true).is_ok());
        assert!(parse_url("javascript:alert(1)", true).is_err());
    }

    #[test]
    fn recording_base_honours_p_and_rejects_bad_ids() {
        let u = Url::parse(&format!(
            "https://h/playback/presentation/2.3/{ID}?p=old/rec"
        ))
        .unwrap();
        assert_eq!(
            recording_base(&u, ID).unwrap().as_str(),
            format!("https://h/old/rec/presentation/{ID}/")
        );
        assert!(recording_base(&u, "../x").is_err());
    }

    #[test]
    fn parses_metadata() {
        let xml = r#"<?xml version="1.0"?><recording><id>x</id><start_time>1605108888888</start_time>
            <meta><meetingName><![CDATA[Cours & TD]]></meetingName></meta>
            <playback><format>presentation</format><duration>15023</duration></playback></recording>"#;
        let m = parse_metadata(xml).unwrap();
        assert_eq!(m.duration_ms, Some(15023));
        assert_eq!(m.meeting_name.as_deref(), Some("Cours & TD"));
        assert_eq!(m.start_time_ms, Some(1605108888888));
        assert!(
            parse_metadata("<html><body>404</body>").is_err()
                || parse_metadata("<html><body>404</body>")
                    .unwrap()
                    .duration_ms
                    .is_none()
        );
    }

    #[test]
    fn finds_slide_images() {
        let svg = r#"<svg xmlns:xlink="http://www.w3.org/1999/xlink"><image id="image0" src="logo.png"/><image id="image1" in="7.5 0.0" out="9 5" xlink:href="presentation/p/slide-1.png"/><image xlink:href="presentation/p/svgs/slide2.svg"></image><image xlink:href="presentation/p/slide-1.png"/></svg>"#;
        let slides = slide_images(svg);
        let hrefs: Vec<&str> = slides.iter().map(|s| s.href.as_str()).collect();
        assert_eq!(
            hrefs,
            vec![
                "presentation/p/slide-1.png",
                "presentation/p/svgs/slide2.svg"
            ]
        );
        assert_eq!(slide_images(svg)[0].shown_at, Some(0.0));
        assert_eq!(slide_images(svg)[1].shown_at, None);
    }

    #[test]
    fn slide_changes_skip_the_opening_slide_and_count_from_the_start_inside_the_span() {
        let slide = |t: Option<f64>| SlideImage {
            href: "presentation/p/slide.png".into(),
            shown_at: t,
        };
        // Sample A's slides: red at 0, green at 5, blue at 10 s of a 15 s playback.
        let slides = [
            slide(Some(10.0)),
            slide(Some(0.0)),
            slide(None),
            slide(Some(5.0)),
        ];
        assert_eq!(slide_changes(&slides, 0.0, 15.0), [5.0, 10.0]);
        assert_eq!(slide_changes(&slides, 4.0, 11.0), [1.0, 6.0]);
        // A change at the start is the output's first picture; one at the end is never seen.
        assert_eq!(slide_changes(&slides, 5.0, 10.0), Vec::<f64>::new());
        assert_eq!(slide_changes(&[], 0.0, 15.0), Vec::<f64>::new());
    }

    #[test]
    fn finds_the_first_zoom_event() {
        let xml = r#"<recording id="panzoom_events" tldraw="true"><event timestamp="3.5"><viewBox>0 0 1 1</viewBox></event><event timestamp="0.8"/></recording>"#;
        assert_eq!(first_panzoom(xml), Some(0.8));
        assert_eq!(first_panzoom("<recording/>"), None);
    }
}
