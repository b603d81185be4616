//! Every request the recorded page makes goes through here (the DevTools `Fetch` domain): the
//! player's CDN assets are answered from the bundle ([`crate::assets`]), a BBB playback may load
//! only from its own host (and the hosts allowed with `--allow-host`), and everything refused is
//! logged with its URL. The policy is in `recorder/design/assets.md`.
//!
//! [`RequestPolicy::decide`] is the rule (unit-tested); [`intercept`] applies it to a page.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use chromiumoxide::Page;
use chromiumoxide::cdp::browser_protocol::fetch::{
    ContinueRequestParams, EnableParams, EventRequestPaused, FailRequestParams,
    FulfillRequestParams, HeaderEntry, RequestPattern, RequestStage,
};
use chromiumoxide::cdp::browser_protocol::network::ErrorReason;
use futures::StreamExt;
use url::Url;

use crate::assets::{self, Asset, Lookup};
use crate::error::{Context as _, Phase, RecordError};
use bbb_common::redact;

use crate::record::{Event, Reporter};

/// What to do with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Let it go to the network.
    Continue,
    /// Answer it from the bundle.
    Answer(Asset),
    /// A CDN file the recorder does not have: refused (the network is not asked, on purpose: a
    /// firewalled host must behave like any other).
    NotBundled,
    /// Not a host this playback may load from.
    Foreign,
}

/// Which hosts a page may load from.
#[derive(Debug, Clone)]
pub struct RequestPolicy {
    /// Host names (lower case) whose requests go to the network; any port, http or https.
    allowed_hosts: Vec<String>,
    /// Refuse requests to every other host (BBB playbacks); generic pages load what they like.
    only_allowed: bool,
}

impl RequestPolicy {
    /// For a BBB playback at `url`: its own host and `extra` hosts only.
    pub fn playback(url: &Url, extra: &[String]) -> Self {
        let mut allowed_hosts: Vec<String> =
            url.host_str().map(str::to_owned).into_iter().collect();
        allowed_hosts.extend(extra.iter().cloned());
        for h in &mut allowed_hosts {
            h.make_ascii_lowercase();
        }
        RequestPolicy {
            allowed_hosts,
            only_allowed: true,
        }
    }

    /// For any other page: everything goes to the network except the CDN files we bundle.
    pub fn open() -> Self {
        RequestPolicy {
            allowed_hosts: Vec::new(),
            only_allowed: false,
        }
    }

    pub fn decide(&self, url: &Url) -> Decision {
        match assets::lookup(url) {
            Lookup::Bundled(asset) => return Decision::Answer(asset),
            // A playback never reaches a CDN; another page may fetch what we do not bundle.
            Lookup::NotBundled if self.only_allowed => return Decision::NotBundled,
            Lookup::NotBundled => return Decision::Continue,
            Lookup::Unknown => {}
        }
        if !self.only_allowed {
            return Decision::Continue;
        }
        // data: and blob: never reach the network (and the Fetch domain does not pause them).
        if matches!(url.scheme(), "data" | "blob") {
            return Decision::Continue;
        }
        let allowed = matches!(url.scheme(), "http" | "https" | "ws" | "wss")
            && url
                .host_str()
                .is_some_and(|h| self.allowed_hosts.iter().any(|a| a.eq_ignore_ascii_case(h)));
        if allowed {
            Decision::Continue
        } else {
            Decision::Foreign
        }
    }
}

/// What the page asked for that did not go to the network as asked, for the done event, the
/// render checks and the log (URLs without their query strings).
#[derive(Debug, Default, Clone)]
pub struct RequestLog {
    /// Answered from the bundle.
    pub answered: BTreeSet<String>,
    /// CDN files we do not have.
    pub not_bundled: BTreeSet<String>,
    /// Requests to hosts the playback may not load from.
    pub blocked: BTreeSet<String>,
}

pub type SharedRequestLog = Arc<Mutex<RequestLog>>;

/// Starts applying `policy` to every request of `page` (before it navigates). Runs until the page
/// goes away; refusals are reported once per URL as warnings.
pub async fn intercept(
    page: &Page,
    policy: RequestPolicy,
    report: Reporter,
) -> Result<SharedRequestLog, RecordError> {
    let mut paused = page
        .event_listener::<EventRequestPaused>()
        .await
        .transient(Phase::Browser, "listening to the page's requests")?;
    page.execute(
        EnableParams::builder()
            .pattern(
                RequestPattern::builder()
                    .url_pattern("*")
                    .request_stage(RequestStage::Request)
                    .build(),
            )
            .build(),
    )
    .await
    .transient(Phase::Browser, "intercepting the page's requests")?;
    let log = SharedRequestLog::default();
    let shared = Arc::clone(&log);
    let page = page.clone();
    tokio::spawn(async move {
        while let Some(event) = paused.next().await {
            let id = event.request_id.clone();
            let Ok(url) = Url::parse(&event.request.url) else {
                let _ = page
                    .execute(FailRequestParams::new(id, ErrorReason::BlockedByClient))
                    .await;
                continue;
            };
            let shown = redact::url(&url);
            let decision = policy.decide(&url);
            let result = match decision {
                Decision::Continue => page.execute(ContinueRequestParams::new(id)).await.map(drop),
                Decision::Answer(asset) => {
                    tracing::debug!(url = %shown, "answered from the bundled assets");
                    lock(&shared).answered.insert(shown);
                    page.execute(fulfil(id, asset)).await.map(drop)
                }
                Decision::NotBundled | Decision::Foreign => {
                    let first = {
                        let mut l = lock(&shared);
                        let set = if decision == Decision::NotBundled {
                            &mut l.not_bundled
                        } else {
                            &mut l.blocked
                        };
                        set.insert(shown.clone())
                    };
                    if first {
                        report(Event::Warning(if decision == Decision::NotBundled {
                            format!(
                                "the player asked for {shown}, which is not among the bundled assets: refused"
                            )
                        } else {
                            format!(
                                "the player asked for {shown}, outside the playback's host: blocked"
                            )
                        }));
                    }
                    page.execute(FailRequestParams::new(id, ErrorReason::BlockedByClient))
                        .await
                        .map(drop)
                }
            };
            if let Err(e) = result {
                // The page navigated or closed meanwhile: nothing to answer any more.
                tracing::debug!(url = %event.request.url.split('?').next().unwrap_or(""), "request not answered: {e}");
            }
        }
    });
    Ok(log)
}

fn fulfil(
    id: chromiumoxide::cdp::browser_protocol::fetch::RequestId,
    asset: Asset,
) -> FulfillRequestParams {
    use base64::Engine as _;
    let mut params = FulfillRequestParams::new(id, 200);
    params.response_headers = Some(vec![
        HeaderEntry::new("Content-Type", asset.mime),
        HeaderEntry::new("Content-Length", asset.body.len().to_string()),
        // The player loads fonts and translations with CORS (FontFace, fetch) from its own origin.
        HeaderEntry::new("Access-Control-Allow-Origin", "*"),
        HeaderEntry::new("Cache-Control", "public, max-age=31536000, immutable"),
    ]);
    params.body = Some(
        base64::engine::general_purpose::STANDARD
            .encode(asset.body)
            .into(),
    );
    params
}

pub fn lock(log: &SharedRequestLog) -> std::sync::MutexGuard<'_, RequestLog> {
    log.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn a_playback_loads_from_its_own_host_and_the_bundle_only() {
        let page = url("https://bbb.example.org/playback/presentation/2.3/x");
        let p = RequestPolicy::playback(&page, &["Media.Example.org".into()]);
        assert_eq!(
            p.decide(&url("https://bbb.example.org/presentation/x/shapes.svg")),
            Decision::Continue
        );
        // Any port and either scheme of an allowed host.
        assert_eq!(
            p.decide(&url(
                "http://bbb.example.org:8080/presentation/x/video/webcams.webm"
            )),
            Decision::Continue
        );
        assert_eq!(
            p.decide(&url("https://media.example.org/x.mp4")),
            Decision::Continue
        );
        assert!(matches!(
            p.decide(&url(
                "https://unpkg.com/@bigbluebutton/assets@2.0.0-alpha.20/fonts/IBMPlexSans-Medium.woff2"
            )),
            Decision::Answer(_)
        ));
        assert_eq!(
            p.decide(&url(
                "https://unpkg.com/@bigbluebutton/assets@2.0.0-alpha.20/fonts/Other.woff2"
            )),
            Decision::NotBundled
        );
        for foreign in [
            "https://unpkg.com/react@18/umd/react.js",
            "https://www.youtube.com/iframe_api",
            "http://169.254.169.254/latest/meta-data/",
            "https://bbb.example.org.evil.test/x",
            "file:///etc/passwd",
        ] {
            assert_eq!(p.decide(&url(foreign)), Decision::Foreign, "{foreign}");
        }
        assert_eq!(p.decide(&url("data:text/plain,hi")), Decision::Continue);
    }

    #[test]
    fn other_pages_load_anything_but_still_get_the_bundled_assets() {
        let p = RequestPolicy::open();
        assert_eq!(
            p.decide(&url("https://www.youtube.com/iframe_api")),
            Decision::Continue
        );
        assert!(matches!(
            p.decide(&url(
                "https://unpkg.com/@bigbluebutton/assets@2.0.0-alpha.20/translations/en.json"
            )),
            Decision::Answer(_)
        ));
    }
}
