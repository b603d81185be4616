//! Loading the page and confirming what it is: the tab with its binding, event listeners,
//! request policy and render watcher; navigation; the wait for the player to be ready or to show
//! its error; the 2.3 player's URL parameters; the viewport size; the recording's cookies.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chromiumoxide::Page;
use chromiumoxide::cdp::browser_protocol::inspector::EventTargetCrashed;
use chromiumoxide::cdp::browser_protocol::network::GetCookiesParams;
use chromiumoxide::cdp::js_protocol::runtime::{AddBindingParams, EventBindingCalled};
use chromiumoxide::listeners::EventStream;
use url::Url;

use bbb_common::redact;

use super::{Layout, Player, Session};
use crate::error::{Context as _, Phase, RecordError};
use crate::playback::page::{PROBE_JS, Probe, usable};
use crate::playback::{self, PageKind};
use crate::render_watch::RenderWatch;
use crate::requests::{self, RequestPolicy};

/// How long the player may take to show itself or its error (BBB loads in about 3 s).
const PLAYER_READY_LIMIT: Duration = Duration::from_secs(30);

/// The opened tab and what it reports: the page's messages (time events, defects) through its
/// binding, and renderer crashes.
pub(super) struct Tab {
    pub(super) page: Page,
    pub(super) messages: EventStream<EventBindingCalled>,
    pub(super) crashes: EventStream<EventTargetCrashed>,
}

impl Session<'_> {
    /// Opens the tab the recording plays in, with every request the page will make answered,
    /// passed or refused by the policy for `kind`, and every failed image or media response seen.
    pub(super) async fn open_tab(
        &mut self,
        url: &Url,
        kind: &PageKind,
    ) -> Result<Tab, RecordError> {
        let page = self
            .chromium
            .browser
            .new_page("about:blank")
            .await
            .transient(Phase::Browser, "opening a tab")?;
        page.execute(AddBindingParams::new("__bbbRecord"))
            .await
            .transient(Phase::Browser, "installing the page binding")?;
        let messages = page
            .event_listener::<EventBindingCalled>()
            .await
            .transient(Phase::Browser, "listening to the page")?;
        let crashes = page
            .event_listener::<EventTargetCrashed>()
            .await
            .transient(Phase::Browser, "listening for crashes")?;
        // Before the first request.
        let policy = if kind.is_bbb() {
            RequestPolicy::playback(url, &self.req.allow_hosts)
        } else {
            RequestPolicy::open()
        };
        self.requests = requests::intercept(&page, policy, Arc::clone(self.report)).await?;
        self.render = Some(
            RenderWatch::start(
                &page,
                Arc::clone(self.report),
                self.req.accept_broken,
                Arc::clone(&self.requests),
            )
            .await?,
        );
        Ok(Tab {
            page,
            messages,
            crashes,
        })
    }

    /// Navigate, and wait for the player to be ready or to show its error.
    pub(super) async fn load(
        &mut self,
        page: &Page,
        url: Url,
        kind: PageKind,
    ) -> Result<Player, RecordError> {
        let target = self.player_url(&url, &kind);
        self.navigate(page, &target).await?;
        let deadline = Instant::now() + PLAYER_READY_LIMIT;
        let mut renavigated = false;
        loop {
            self.watchdog()?;
            let probe = Probe::read(
                page.evaluate_expression(PROBE_JS)
                    .await
                    .transient(Phase::Load, "reading the page")?
                    .into_value()
                    .unwrap_or(serde_json::Value::Null),
            );
            let href = probe.href().to_owned();
            match probe {
                Probe::Error { text, .. } => {
                    let message = format!("the player shows an error: {text:?} ({href})");
                    return Err(
                        if crate::playback::PlayerError::parse(&text).is_not_found() {
                            RecordError::permanent(
                                Phase::Load,
                                format!("playback not found: {message}"),
                            )
                        } else {
                            RecordError::transient(Phase::Load, message)
                        },
                    );
                }
                Probe::Ready {
                    player, duration, ..
                } => {
                    let final_url = Url::parse(&href).unwrap_or_else(|_| url.clone());
                    let final_kind = playback::classify(&final_url);
                    // A 2.0 or protected link that landed on the 2.3 player: reload it with our
                    // layout and redraw-rate parameters.
                    if matches!(final_kind, PageKind::Bbb23 { .. })
                        && !renavigated
                        && final_url.query_pairs().all(|(k, _)| k != "f")
                    {
                        renavigated = true;
                        let again = self.player_url(&final_url, &final_kind);
                        self.navigate(page, &again).await?;
                        continue;
                    }
                    let kind = match (player.as_str(), final_kind) {
                        ("2.3" | "2.0", k @ (PageKind::Bbb23 { .. } | PageKind::Bbb20 { .. })) => k,
                        ("2.3" | "2.0", _) => {
                            return Err(RecordError::permanent(
                                Phase::Load,
                                format!("a BBB player at an unexpected address {href}"),
                            ));
                        }
                        _ => PageKind::Generic,
                    };
                    let base = match kind.record_id() {
                        Some(id) => Some(playback::recording_base(&final_url, id)?),
                        None => None,
                    };
                    return Ok(Player {
                        kind,
                        base,
                        duration: usable(duration),
                    });
                }
                Probe::Page { duration, .. }
                    if !kind.is_bbb()
                        && matches!(
                            playback::classify(&Url::parse(&href).unwrap_or(url.clone())),
                            PageKind::Generic
                        ) =>
                {
                    return Ok(Player {
                        kind: PageKind::Generic,
                        base: None,
                        duration: usable(duration),
                    });
                }
                Probe::PageMediaLoading { .. }
                    if !kind.is_bbb() && Instant::now() + Duration::from_secs(20) > deadline =>
                {
                    // Ten seconds without the media's metadata: record the page for --duration.
                    return Ok(Player {
                        kind: PageKind::Generic,
                        base: None,
                        duration: None,
                    });
                }
                _ => {}
            }
            if Instant::now() > deadline {
                return Err(if kind.is_bbb() {
                    RecordError::transient(
                        Phase::Load,
                        format!("the player was not ready within {PLAYER_READY_LIMIT:?} ({href})"),
                    )
                } else {
                    RecordError::transient(Phase::Load, format!("the page did not load ({href})"))
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The URL to load: for the 2.3 player, with the layout and a redraw rate equal to the output
    /// frame rate (bbb-playback.md "Clock": at the default f=10 slide changes land up to 100 ms late).
    fn player_url(&self, url: &Url, kind: &PageKind) -> Url {
        let mut out = url.clone();
        if let PageKind::Bbb23 { .. } = kind {
            let keep: Vec<(String, String)> = url
                .query_pairs()
                .filter(|(k, _)| k != "l" && k != "f" && k != "t")
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            let layout = match self.req.layout {
                Layout::Full => "disabled",
                Layout::Content => "content",
                Layout::Media => "media",
                Layout::Swapped => "swapped",
            };
            let mut q = out.query_pairs_mut();
            q.clear();
            for (k, v) in &keep {
                q.append_pair(k, v);
            }
            q.append_pair("l", layout);
            q.append_pair("f", &self.req.fps.max(10).to_string());
        }
        out
    }

    async fn navigate(&mut self, page: &Page, url: &Url) -> Result<(), RecordError> {
        match tokio::time::timeout(Duration::from_secs(60), page.goto(url.as_str())).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(RecordError::transient(
                Phase::Load,
                format!("loading {}: {e}", redact::url(url)),
            )),
            Err(_) => Err(RecordError::transient(
                Phase::Load,
                format!("loading {} took more than 60 s", redact::url(url)),
            )),
        }
    }

    /// The page must be exactly the output size (kiosk windows can come out a pixel short).
    pub(super) async fn check_viewport(&mut self, page: &Page) -> Result<(), RecordError> {
        let size: Vec<u32> = page
            .evaluate_expression("[window.innerWidth, window.innerHeight]")
            .await
            .transient(Phase::Browser, "reading the viewport")?
            .into_value()
            .unwrap_or_default();
        if size != [self.req.width, self.req.height] {
            use chromiumoxide::cdp::browser_protocol::emulation::SetDeviceMetricsOverrideParams;
            tracing::debug!(?size, "fixing the viewport size");
            page.execute(SetDeviceMetricsOverrideParams::new(
                i64::from(self.req.width),
                i64::from(self.req.height),
                1.0,
                false,
            ))
            .await
            .transient(Phase::Browser, "setting the viewport")?;
        }
        Ok(())
    }

    pub(super) async fn cookie_header(&self, page: &Page, base: &Url) -> String {
        let params = GetCookiesParams::builder()
            .urls(vec![base.to_string()])
            .build();
        match page.execute(params).await {
            Ok(resp) => resp
                .result
                .cookies
                .iter()
                .map(|c| format!("{}={}", c.name, c.value))
                .collect::<Vec<_>>()
                .join("; "),
            Err(_) => String::new(),
        }
    }
}
