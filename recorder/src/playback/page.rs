//! The players' DOM contract, as the recorder relies on it (bbb-playback.md "DOM contract" and
//! "Clock"): which element is the media, how a page tells it is ready, failed or still loading
//! ([`PROBE_JS`], read back as a typed [`Probe`]), the CSS that hides the player chrome, and the
//! script that forwards the media clock to us, whose messages arrive as typed [`PageMessage`]s.
//! Everything the recorder knows about the page's JavaScript side is here, and nowhere else.

use serde::Deserialize;

/// The media element of either player (bbb-playback.md: `#webcams video` in 2.3, `#video` in 2.0;
/// the generated id of the 2.3 element is not stable, so select by structure).
pub const MEDIA: &str = "(document.querySelector('#webcams video') || document.querySelector('#webcams audio') || document.querySelector('#video'))";

/// Where the 2.3 player shows its two videos now, as a JSON text read back as
/// `overlay::PageVideos`: the webcam video (`#webcams video`) and the screen share
/// (`#screenshare video`), each null when the player has none. Fast mode fills the areas they
/// show from the recording's own videos, and reads this at every step, so a layout that switches
/// (the screen share starting) is followed.
pub const VIDEOS_JS: &str = r#"(() => {
  const read = v => {
    if (!v) return null;
    const r = v.getBoundingClientRect();
    const s = getComputedStyle(v);
    let opaque = true;
    for (let e = v; e; e = e.parentElement) if (parseFloat(getComputedStyle(e).opacity) < 1) opaque = false;
    const shown = v.getClientRects().length > 0 && s.visibility === 'visible' && opaque;
    return { shown, x: r.x, y: r.y, w: r.width, h: r.height, fit: s.objectFit,
      position: s.objectPosition, transform: s.transform, vw: v.videoWidth, vh: v.videoHeight,
      dpr: window.devicePixelRatio };
  };
  return JSON.stringify({ webcam: read(document.querySelector('#webcams video')),
    screenshare: read(document.querySelector('#screenshare video')) });
})()"#;

/// What the page is: a ready player, a player error, still loading, or another page.
pub const PROBE_JS: &str = r#"(() => {
  const href = location.href;
  const err = document.querySelector('#error');
  if (err && err.offsetParent !== null) return { state: 'error', text: err.textContent.trim(), href };
  const v23 = document.querySelector('#webcams video') || document.querySelector('#webcams audio');
  if (v23 && document.querySelector('#player')) {
    if (v23.readyState >= 1) return { state: 'ready', player: '2.3', duration: v23.duration, href };
    return { state: 'loading', href };
  }
  const v20 = document.querySelector('#video');
  const content = document.querySelector('#playback-content');
  if (v20 && content) {
    const visible = getComputedStyle(content).display !== 'none' && getComputedStyle(content).visibility !== 'hidden';
    if (visible && v20.readyState >= 1) return { state: 'ready', player: '2.0', duration: v20.duration, href };
    return { state: 'loading', href };
  }
  if (document.readyState === 'complete') {
    const m = document.querySelector('video, audio');
    // A media element whose metadata is still loading: its duration is not known yet.
    if (m && m.readyState < 1 && !m.error) return { state: 'page-media-loading', href };
    return { state: 'page', duration: m ? m.duration : null, href };
  }
  return { state: 'loading', href };
})()"#;

/// CSS that hides the player chrome (control bar, big-play overlay, spinner, pointer); the 2.3
/// top-bar buttons are already gone with `l=disabled`.
pub fn hide_chrome_js(is23: bool) -> String {
    let css = if is23 {
        ".vjs-control-bar, .vjs-big-play-button, .vjs-loading-spinner, .vjs-text-track-display, .vjs-modal-dialog { display: none !important; } * { cursor: none !important; }"
    } else {
        ".acorn-controls, .acorn-play-button, #video-controls, .loading, #loading { display: none !important; } * { cursor: none !important; }"
    };
    format!(
        "(() => {{ const s = document.createElement('style'); s.textContent = {}; document.head.appendChild(s); return true; }})()",
        serde_json::to_string(css).expect("string")
    )
}

/// Forward the player's media clock to us: every animation frame while playing (2.0, which has no
/// time event), stamped with the page's wall clock; for 2.3, the time of the last
/// `bbbplaybacktimeupdate` (the player redraws on it) committed in an animation frame, stamped at
/// the next animation frame, when that state has been painted: on a loaded machine the paint lags
/// the time event by hundreds of milliseconds, so a stamp at the event put the picture late (a
/// 20 s stalled playback under six busy loops on 2 cores: slide changes 140-840 ms late stamped at
/// the event, 74-107 ms stamped at the next frame). Also the `ended` and `error` events of the
/// media element.
pub fn clock_js(is23: bool) -> String {
    let source = if is23 {
        "let latest = null, committed = null; \
         document.addEventListener('bbbplaybacktimeupdate', e => { if (e.detail && typeof e.detail.time === 'number') latest = e.detail.time; }); \
         const tick = () => { if (committed !== null) { send({ k: 't', w: now(), m: committed }); committed = null; } \
           if (latest !== null) { committed = latest; latest = null; } requestAnimationFrame(tick); }; requestAnimationFrame(tick);"
    } else {
        "const tick = () => { if (!v.paused && !v.ended) send({ k: 't', w: now(), m: v.currentTime }); requestAnimationFrame(tick); }; requestAnimationFrame(tick);"
    };
    format!(
        "(() => {{ const v = {MEDIA}; const send = o => window.__bbbRecord(JSON.stringify(o)); \
         const now = () => performance.timeOrigin + performance.now(); {source} \
         v.addEventListener('ended', () => send({{ k: 'ended', w: now(), m: v.currentTime, d: v.duration }})); \
         v.addEventListener('error', () => send({{ k: 'error', w: now() }})); \
         v.addEventListener('waiting', () => {{ if (window.__bbbRecordPlayRequested) send({{ k: 'waiting', w: now(), m: v.currentTime }}); }}); \
         /* Keep playing: a player that paused itself to resynchronise its videos and missed its \
            own resume would otherwise stay paused until the stall watchdog gives up. */ \
         setInterval(() => {{ if (window.__bbbRecordKeepPlaying && v.paused && !v.ended && v.readyState >= 3) v.play().catch(() => {{}}); }}, 1000); \
         return true; }})()"
    )
}

/// What [`PROBE_JS`] found, told apart by its `state`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum Probe {
    /// The player shows its error box (`#error`) with `text`.
    Error { text: String, href: String },
    /// A BBB player (`player`: "2.3" or "2.0") whose media has its metadata; `duration` is the
    /// media element's (null for NaN or an endless stream).
    Ready {
        player: String,
        duration: Option<f64>,
        href: String,
    },
    /// Not decided yet.
    Loading {
        #[serde(default)]
        href: String,
    },
    /// Another page, fully loaded; the duration of its first media element, if any.
    Page { duration: Option<f64>, href: String },
    /// Another page whose media element is still loading its metadata.
    PageMediaLoading { href: String },
}

impl Probe {
    /// The probe's answer; anything unreadable (the page was navigating) counts as loading.
    pub fn read(value: serde_json::Value) -> Probe {
        serde_json::from_value(value).unwrap_or(Probe::Loading {
            href: String::new(),
        })
    }

    /// The page's address when it was probed.
    pub fn href(&self) -> &str {
        match self {
            Probe::Error { href, .. }
            | Probe::Ready { href, .. }
            | Probe::Loading { href }
            | Probe::Page { href, .. }
            | Probe::PageMediaLoading { href } => href,
        }
    }
}

/// A media duration worth believing: finite and positive.
pub fn usable(duration: Option<f64>) -> Option<f64> {
    duration.filter(|d| d.is_finite() && *d > 0.0)
}

/// A message the page sends through the `__bbbRecord` binding ([`clock_js`], and the render
/// watcher's defects), told apart by its `k`. `w` is the page's wall clock in milliseconds
/// (`performance.timeOrigin + performance.now()`), `m` a media time in seconds.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "k")]
pub enum PageMessage {
    /// The player's clock: at wall `w` the media showed `m`.
    #[serde(rename = "t")]
    Time { w: f64, m: f64 },
    /// The media ended at `m`; `d` is its duration (null when unknown).
    #[serde(rename = "ended")]
    Ended {
        w: f64,
        m: f64,
        #[serde(default)]
        d: Option<f64>,
    },
    /// The media waits for data at `m` (after playback was asked for).
    #[serde(rename = "waiting")]
    Waiting { m: f64 },
    /// A defect the render watcher saw in the page (`kind`, `text`) at media time `m`.
    #[serde(rename = "defect")]
    Defect {
        kind: String,
        text: String,
        #[serde(default)]
        m: f64,
    },
    /// The media element reported an error (network or decoding).
    #[serde(rename = "error")]
    Error,
}

impl PageMessage {
    /// A binding payload; `None` for anything that is not one of our messages.
    pub fn parse(payload: &str) -> Option<PageMessage> {
        serde_json::from_str(payload).ok()
    }
}

/// The page's wall clock (milliseconds, fractional) in our wall micros.
pub fn wall_micros(page_ms: f64) -> crate::timeline::WallMicros {
    (page_ms * 1000.0) as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn probes_are_read_by_state() {
        let ready =
            Probe::read(json!({"state": "ready", "player": "2.3", "duration": 15.0, "href": "h"}));
        assert_eq!(
            ready,
            Probe::Ready {
                player: "2.3".into(),
                duration: Some(15.0),
                href: "h".into()
            }
        );
        // NaN and Infinity arrive as null.
        let page = Probe::read(json!({"state": "page", "duration": null, "href": "p"}));
        assert_eq!(
            page,
            Probe::Page {
                duration: None,
                href: "p".into()
            }
        );
        let error = Probe::read(json!({"state": "error", "text": "404", "href": "e"}));
        assert!(matches!(&error, Probe::Error { text, .. } if text == "404"));
        assert_eq!(error.href(), "e");
        assert_eq!(
            Probe::read(json!({"state": "page-media-loading", "href": "m"})).href(),
            "m"
        );
        for unreadable in [
            json!(null),
            json!({"state": "other"}),
            json!({"state": "ready"}),
        ] {
            assert_eq!(
                Probe::read(unreadable),
                Probe::Loading {
                    href: String::new()
                }
            );
        }
    }

    #[test]
    fn durations_worth_believing() {
        assert_eq!(usable(Some(12.5)), Some(12.5));
        for bad in [
            None,
            Some(0.0),
            Some(-1.0),
            Some(f64::INFINITY),
            Some(f64::NAN),
        ] {
            assert_eq!(usable(bad), None);
        }
    }

    #[test]
    fn page_messages_as_the_scripts_send_them() {
        assert_eq!(
            PageMessage::parse(r#"{"k":"t","w":1700000000123.5,"m":3.25}"#),
            Some(PageMessage::Time {
                w: 1700000000123.5,
                m: 3.25
            })
        );
        assert_eq!(
            PageMessage::parse(r#"{"k":"ended","w":1,"m":14.9,"d":null}"#),
            Some(PageMessage::Ended {
                w: 1.0,
                m: 14.9,
                d: None
            })
        );
        assert_eq!(
            PageMessage::parse(r#"{"k":"waiting","w":1,"m":2}"#),
            Some(PageMessage::Waiting { m: 2.0 })
        );
        assert_eq!(
            PageMessage::parse(r#"{"k":"defect","kind":"image","text":"slide-2.png","m":4}"#),
            Some(PageMessage::Defect {
                kind: "image".into(),
                text: "slide-2.png".into(),
                m: 4.0
            })
        );
        assert_eq!(
            PageMessage::parse(r#"{"k":"error","w":5}"#),
            Some(PageMessage::Error)
        );
        assert_eq!(PageMessage::parse(r#"{"k":"other"}"#), None);
        assert_eq!(PageMessage::parse("not json"), None);
        assert_eq!(wall_micros(1.5), 1500);
    }
}
