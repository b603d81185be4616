//! Watches a BBB playback for failure states while it is recorded, so that a broken picture is
//! never called a success: the player's error screens, the tldraw whiteboard's "Could not load
//! assets" and error boundaries, the BBB logo still shown after playback started, and recording
//! files (slides, slide SVGs, thumbnails, media) that the page asked for and the server does not
//! serve. Every state detected, and how, is listed in `recorder/design/render.md`.
//!
//! A defect ends the recording with a classed error in phase `render`; with `--accept-broken` it
//! becomes a warning and an entry of the output's `degraded` list instead.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use chromiumoxide::Page;
use chromiumoxide::cdp::browser_protocol::network::{EventResponseReceived, ResourceType};
use futures::StreamExt;
use url::Url;

use crate::error::{Class, Context as _, Phase, RecordError};
use crate::playback::SlideImage;
use bbb_common::redact;

use crate::record::{Event, Reporter};
use crate::requests::{self, SharedRequestLog};

/// Texts the players draw in the presentation area instead of the whiteboard. Searched only in
/// `#presentation` (chat messages come from users and may say anything).
/// (Texts of `@bigbluebutton/tldraw` 2.0.0-alpha.21 to .35 and `@tldraw/tldraw` 1.29.)
const ERROR_TEXTS: &[(&str, DefectKind)] = &[
    // tldraw v2 (BBB 3.0) when one of its fonts does not load: no slide, no shapes.
    ("Could not load assets", DefectKind::Assets),
    // tldraw v2's error boundary (div.tl-error-boundary, with "Reset data" / "Refresh Page").
    ("Something's gone wrong", DefectKind::Whiteboard),
    // tldraw v1's error boundary.
    ("We've encountered an error", DefectKind::Whiteboard),
];

/// tldraw v2 shows this while its fonts load; still there after this many seconds of playback,
/// the fonts are not coming (a request that hangs instead of failing).
const ASSETS_LOADING_TEXT: &str = "Loading assets";
const ASSETS_LOADING_LIMIT_SECS: f64 = 10.0;

/// What went wrong with the picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DefectKind {
    /// A file the recording refers to is not served (404, 410, ...).
    MissingFile,
    /// The whiteboard could not load its assets (fonts).
    Assets,
    /// The whiteboard shows an error screen or could not draw a shape.
    Whiteboard,
    /// The player replaced itself with its error page mid-playback.
    PlayerError,
    /// The player's page went blank (its script crashed).
    PlayerGone,
    /// The BBB logo is still shown in place of the presentation after playback started.
    Logo,
}

impl DefectKind {
    fn from_page(kind: &str) -> Option<Self> {
        Some(match kind {
            "assets" => DefectKind::Assets,
            "whiteboard" => DefectKind::Whiteboard,
            "player-error" => DefectKind::PlayerError,
            "player-gone" => DefectKind::PlayerGone,
            "logo" => DefectKind::Logo,
            _ => return None,
        })
    }

    fn page_name(self) -> &'static str {
        match self {
            DefectKind::MissingFile => "missing-file",
            DefectKind::Assets => "assets",
            DefectKind::Whiteboard => "whiteboard",
            DefectKind::PlayerError => "player-error",
            DefectKind::PlayerGone => "player-gone",
            DefectKind::Logo => "logo",
        }
    }
}

/// One defect of the picture, as reported to the user.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Defect {
    pub kind: DefectKind,
    /// What was seen or what is missing, without times.
    pub what: String,
    pub class: Class,
}

/// An image or media response of the page that failed (status >= 400), from the network events.
#[derive(Debug, Clone)]
struct FailedResponse {
    url: Url,
    status: i64,
}

pub struct RenderWatch {
    report: Reporter,
    accept_broken: bool,
    requests: SharedRequestLog,
    failed: Arc<Mutex<Vec<FailedResponse>>>,
    /// Defects from the page, not yet judged.
    pending: Vec<(Defect, Option<f64>)>,
    seen: BTreeSet<Defect>,
    degraded: Vec<String>,
    /// Known once the player is loaded.
    base: Option<Url>,
    slides: Vec<SlideImage>,
}

impl RenderWatch {
    /// Starts listening to `page`'s responses; call before it navigates, so that nothing the
    /// player loads first is missed.
    pub async fn start(
        page: &Page,
        report: Reporter,
        accept_broken: bool,
        requests: SharedRequestLog,
    ) -> Result<Self, RecordError> {
        let mut responses = page
            .event_listener::<EventResponseReceived>()
            .await
            .transient(Phase::Browser, "listening to the page's responses")?;
        let failed = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&failed);
        tokio::spawn(async move {
            while let Some(event) = responses.next().await {
                // Images (slides, SVG slides, thumbnails) and media the page plays; a data file
                // probed with fetch() may be missing legitimately (deskshare.xml, captions...).
                if !matches!(event.r#type, ResourceType::Image | ResourceType::Media) {
                    continue;
                }
                if event.response.status < 400 {
                    continue;
                }
                if let Ok(url) = Url::parse(&event.response.url) {
                    lock(&sink).push(FailedResponse {
                        url,
                        status: event.response.status,
                    });
                }
            }
        });
        Ok(RenderWatch {
            report,
            accept_broken,
            requests,
            failed,
            pending: Vec::new(),
            seen: BTreeSet::new(),
            degraded: Vec::new(),
            base: None,
            slides: Vec::new(),
        })
    }

    /// The recording's files and slides, once the player is loaded: only failures under `base`
    /// are the recording's, and a slide's first showing names the time of a missing slide.
    pub fn set_recording(&mut self, base: Url, slides: Vec<SlideImage>) {
        self.base = Some(base);
        self.slides = slides;
    }

    /// A defect the page's watcher reported (`kind`, `text`) at media time `media`.
    pub fn page_defect(&mut self, kind: &str, text: &str, media: f64) {
        let Some(kind) = DefectKind::from_page(kind) else {
            return;
        };
        let text: String = text.chars().take(200).collect();
        let (what, class) = match kind {
            DefectKind::Assets => {
                let refused = {
                    let log = requests::lock(&self.requests);
                    log.not_bundled
                        .iter()
                        .chain(log.blocked.iter())
                        .cloned()
                        .collect::<Vec<_>>()
                };
                let why = if refused.is_empty() {
                    String::new()
                } else {
                    format!(" (refused: {})", refused.join(", "))
                };
                (
                    format!("the whiteboard shows {text:?} instead of the slide{why}"),
                    Class::Permanent,
                )
            }
            DefectKind::Whiteboard => (
                format!("the whiteboard shows an error: {text:?}"),
                Class::Permanent,
            ),
            DefectKind::PlayerError => {
                let code = text.trim();
                let class = if crate::playback::PlayerError::parse(code).is_not_found() {
                    Class::Permanent
                } else {
                    Class::Transient
                };
                (
                    format!("the player replaced the playback with its error {code:?}"),
                    class,
                )
            }
            DefectKind::PlayerGone => (
                "the player's page went blank (its script stopped)".to_owned(),
                Class::Transient,
            ),
            DefectKind::Logo => (
                "the BBB logo is shown instead of the presentation".to_owned(),
                Class::Transient,
            ),
            DefectKind::MissingFile => return,
        };
        self.pending
            .push((Defect { kind, what, class }, Some(media)));
    }

    /// Judges what was seen since the last call: the first new defect ends the recording,
    /// unless broken playbacks are accepted (then each becomes a warning, once).
    pub fn check(&mut self, media_now: f64) -> Result<(), RecordError> {
        let failed: Vec<FailedResponse> = std::mem::take(&mut *lock(&self.failed));
        for f in failed {
            let Some(rel) = self.relative(&f.url) else {
                // Not the recording's: someone else's image, logged only.
                tracing::debug!(url = %redact::url(&f.url), status = f.status, "an image outside the recording failed");
                continue;
            };
            let shown = self.shown_at(&rel);
            let what = format!(
                "the recording refers to {rel}, which the server does not serve (HTTP {})",
                f.status
            );
            self.pending.push((
                Defect {
                    kind: DefectKind::MissingFile,
                    what,
                    class: Class::Permanent,
                },
                shown.or(Some(media_now)),
            ));
        }
        for (defect, at) in std::mem::take(&mut self.pending) {
            if !self.seen.insert(defect.clone()) {
                continue;
            }
            let when = match (defect.kind, at) {
                (DefectKind::MissingFile, Some(t)) => format!(" (needed from {t:.3} s)"),
                (_, Some(t)) => format!(" at {t:.3} s"),
                (_, None) => String::new(),
            };
            let message = format!("{}{when}", defect.what);
            if self.accept_broken {
                (self.report)(Event::Warning(format!(
                    "recorded anyway (--accept-broken): {message}"
                )));
                self.degraded.push(message);
            } else {
                return Err(RecordError {
                    class: defect.class,
                    phase: Phase::Render,
                    message,
                });
            }
        }
        Ok(())
    }

    /// Every defect recorded anyway, in the order seen.
    pub fn degraded(&self) -> Vec<String> {
        self.degraded.clone()
    }

    fn relative(&self, url: &Url) -> Option<String> {
        let base = self.base.as_ref()?;
        let mut plain = url.clone();
        plain.set_query(None);
        plain.set_fragment(None);
        plain
            .as_str()
            .strip_prefix(base.as_str())
            .map(str::to_owned)
    }

    /// When the slide behind `rel` (a slide, its SVG or its thumbnail) is first shown.
    fn shown_at(&self, rel: &str) -> Option<f64> {
        let as_slide = rel.replace("thumbnails/thumb-", "slide-");
        self.slides
            .iter()
            .find(|s| s.href == rel || s.href == as_slide)
            .and_then(|s| s.shown_at)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Resolves once the whiteboard no longer shows that it is loading its assets (true), or false
/// if it still does after the same limit, in wall seconds, that playback gets in media time: fast
/// mode waits on it before its first picture, since its media time runs far faster than the fonts
/// load.
pub fn assets_loaded_js() -> String {
    let text = serde_json::to_string(ASSETS_LOADING_TEXT).expect("static string");
    let limit_ms = ASSETS_LOADING_LIMIT_SECS * 1000.0;
    format!(
        "new Promise(resolve => {{ const t0 = performance.now(); const poll = () => {{ \
           const pres = document.querySelector('#presentation'); \
           if (!pres || !(pres.innerText || '').includes({text})) return resolve(true); \
           if (performance.now() - t0 > {limit_ms}) return resolve(false); \
           setTimeout(poll, 100); }}; poll(); }})"
    )
}

/// The in-page watcher of the 2.3 player: every 250 ms it looks for the failure states and
/// sends each new one once through the `__bbbRecord` binding as `{k:'defect', kind, text, m}`.
/// `m` and the limits are on the media time the player last drew. `logo_after` is the media
/// time from which the logo counts as a failure (the first zoom event, which is when the player
/// starts drawing, plus 1.5 s of slack for its first redraws).
pub fn watcher_js(media_selector: &str, logo_after: f64) -> String {
    let texts: Vec<(&str, &str)> = ERROR_TEXTS
        .iter()
        .map(|(t, k)| (*t, k.page_name()))
        .collect();
    let texts = serde_json::to_string(&texts).expect("static strings");
    let loading_text = serde_json::to_string(ASSETS_LOADING_TEXT).expect("static string");
    let loading_limit = ASSETS_LOADING_LIMIT_SECS;
    format!(
        r#"(() => {{
  if (window.__bbbRecordWatch) return true;
  window.__bbbRecordWatch = true;
  const send = o => window.__bbbRecord(JSON.stringify(o));
  const media = () => {media_selector};
  // The media time the player last drew: its own time event (fast mode steps the paused player
  // with it, and the media element's clock stays where it was paused), else the element's.
  let drawn = null;
  document.addEventListener('bbbplaybacktimeupdate', e => {{ if (e.detail && typeof e.detail.time === 'number') drawn = e.detail.time; }});
  const now = () => {{ if (drawn !== null) return drawn; const v = media(); return v ? v.currentTime : 0; }};
  const texts = {texts};
  const seen = new Set();
  let loadingSince = null;
  const report = (kind, text) => {{
    const key = kind + '|' + text;
    if (seen.has(key)) return;
    seen.add(key);
    send({{ k: 'defect', kind, text, m: now() }});
  }};
  const check = () => {{
    const err = document.querySelector('#error');
    if (err && err.offsetParent !== null) report('player-error', err.textContent.trim().slice(0, 200));
    else if (!document.querySelector('#player')) report('player-gone', '');
    const pres = document.querySelector('#presentation');
    if (!pres) return;
    const text = pres.innerText || '';
    for (const [needle, kind] of texts) if (text.includes(needle)) report(kind, needle);
    if (text.includes({loading_text})) {{
      if (loadingSince === null) loadingSince = now();
      else if (now() - loadingSince > {loading_limit}) report('assets', {loading_text} + '... for {loading_limit} s');
    }} else loadingSince = null;
    if (pres.querySelector('.tl-error-boundary, .tl-shape-error-boundary')) report('whiteboard', 'a shape could not be drawn');
    const logo = pres.querySelector('.presentation.logo');
    if (logo && media() && now() >= {logo_after} && logo.offsetParent !== null && !pres.classList.contains('inactive')) report('logo', '');
  }};
  setInterval(check, 250);
  check();
  return true;
}})()"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch(accept_broken: bool) -> (RenderWatch, Arc<Mutex<Vec<String>>>) {
        let warnings = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&warnings);
        let report: Reporter = Arc::new(move |e| {
            if let Event::Warning(w) = e {
                lock(&sink).push(w);
            }
        });
        let mut w = RenderWatch {
            report,
            accept_broken,
            requests: SharedRequestLog::default(),
            failed: Arc::new(Mutex::new(Vec::new())),
            pending: Vec::new(),
            seen: BTreeSet::new(),
            degraded: Vec::new(),
            base: None,
            slides: Vec::new(),
        };
        w.set_recording(
            Url::parse("http://127.0.0.1:1/presentation/abc/").unwrap(),
            vec![
                SlideImage {
                    href: "presentation/p/slide-1.png".into(),
                    shown_at: Some(0.0),
                },
                SlideImage {
                    href: "presentation/p/svgs/slide2.svg".into(),
                    shown_at: Some(5.0),
                },
            ],
        );
        (w, warnings)
    }

    fn fail(w: &RenderWatch, url: &str, status: i64) {
        lock(&w.failed).push(FailedResponse {
            url: Url::parse(url).unwrap(),
            status,
        });
    }

    #[test]
    fn a_missing_slide_is_a_permanent_render_error_naming_the_file_and_its_time() {
        let (mut w, _) = watch(false);
        w.check(1.0).unwrap();
        fail(
            &w,
            "http://127.0.0.1:1/presentation/abc/presentation/p/svgs/slide2.svg",
            404,
        );
        let e = w.check(1.2).unwrap_err();
        assert_eq!((e.class, e.phase), (Class::Permanent, Phase::Render));
        assert!(e.message.contains("presentation/p/svgs/slide2.svg"), "{e}");
        assert!(e.message.contains("HTTP 404"), "{e}");
        assert!(e.message.contains("from 5.000 s"), "{e}");
    }

    #[test]
    fn a_missing_thumbnail_names_the_time_of_its_slide() {
        let (mut w, _) = watch(false);
        fail(
            &w,
            "http://127.0.0.1:1/presentation/abc/presentation/p/thumbnails/thumb-1.png",
            404,
        );
        let e = w.check(3.0).unwrap_err();
        assert!(
            e.message.contains("thumb-1.png") && e.message.contains("from 0.000 s"),
            "{e}"
        );
    }

    #[test]
    fn images_outside_the_recording_are_not_its_defects() {
        let (mut w, _) = watch(false);
        fail(
            &w,
            "http://127.0.0.1:1/presentation/other/presentation/p/slide-1.png",
            404,
        );
        fail(&w, "https://avatars.example.org/a.png", 404);
        w.check(1.0).unwrap();
    }

    #[test]
    fn page_defects_are_classed_and_timed() {
        let (mut w, _) = watch(false);
        w.page_defect("assets", "Could not load assets", 2.5);
        let e = w.check(2.6).unwrap_err();
        assert_eq!(e.class, Class::Permanent);
        assert!(
            e.message.contains("Could not load assets") && e.message.contains("at 2.500 s"),
            "{e}"
        );

        let (mut w, _) = watch(false);
        w.page_defect("player-gone", "", 7.0);
        let e = w.check(7.0).unwrap_err();
        assert_eq!((e.class, e.phase), (Class::Transient, Phase::Render));

        let (mut w, _) = watch(false);
        w.page_defect("player-error", "404", 3.0);
        assert_eq!(w.check(3.0).unwrap_err().class, Class::Permanent);

        let (mut w, _) = watch(false);
        w.page_defect("something-new", "x", 3.0);
        w.check(3.0).unwrap();
    }

    #[test]
    fn accepted_defects_become_warnings_once_each() {
        let (mut w, warnings) = watch(true);
        fail(
            &w,
            "http://127.0.0.1:1/presentation/abc/presentation/p/slide-1.png",
            404,
        );
        fail(
            &w,
            "http://127.0.0.1:1/presentation/abc/presentation/p/slide-1.png",
            404,
        );
        w.page_defect("logo", "", 4.0);
        w.check(4.0).unwrap();
        w.page_defect("logo", "", 4.5);
        w.check(4.5).unwrap();
        let degraded = w.degraded();
        assert_eq!(degraded.len(), 2, "{degraded:?}");
        assert!(
            degraded.iter().any(|d| d.contains("slide-1.png")),
            "{degraded:?}"
        );
        assert!(degraded.iter().any(|d| d.contains("logo")), "{degraded:?}");
        assert_eq!(lock(&warnings).len(), 2);
    }
}
