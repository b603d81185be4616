//! Capturing the playback: the frame source and the encoding pipeline on the media clock, the
//! BBB player readied and started at the start time, the one play loop fed by a clock source
//! (`clock_feed`), and the recording's health watched while it plays (`watchdog` for what is
//! polled, `interruption` for what arrives as an event).

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chromiumoxide::Page;
use chromiumoxide::cdp::browser_protocol::inspector::EventTargetCrashed;
use futures::StreamExt;
use tokio::sync::watch;

use super::page::Tab;
use super::{CAPTURE_LATENCY_US, CaptureMode, Event, Player, Session};
use crate::capture::{FrameSource, wall_now};
use crate::clock_feed::{ClockFeed, FeedEvent};
use crate::encode::VideoSettings;
use crate::error::{Context as _, Phase, RecordError};
use crate::fetch::fetch_text;
use crate::pipeline::Pipeline;
use crate::playback::page::{MEDIA, clock_js, hide_chrome_js};
use crate::playback::{self, PageKind};
use crate::render_watch;
use crate::timeline::{ClockSample, MediaClock};

/// The playback must advance at least once in this long, or the recording is abandoned.
const STALL_LIMIT: Duration = Duration::from_secs(60);

/// What the capture produced: the encoded picture, its frame counts, and the media time the
/// playback actually ended at (at most the planned end).
pub(super) struct Captured {
    pub(super) video: PathBuf,
    pub(super) frames: u64,
    pub(super) changed_frames: u64,
    pub(super) end: f64,
}

/// The media clock of one recording, stamped with the capture's latency.
pub(super) fn media_clock(capture: CaptureMode, fps: u32) -> Arc<Mutex<MediaClock>> {
    let latency = match capture {
        CaptureMode::X11 => CAPTURE_LATENCY_US,
        // Screencast pictures carry their own swap time.
        CaptureMode::Screencast => 0,
    };
    Arc::new(Mutex::new(MediaClock::new(
        latency,
        1_000_000 / i64::from(fps),
    )))
}

impl Session<'_> {
    /// Captures `start..end` of the loaded page: frames from the first clock report on (what
    /// comes before is dropped) are encoded until the end, the playback's end or an error.
    pub(super) async fn capture(
        &mut self,
        tab: &mut Tab,
        player: &Player,
        clock: &Arc<Mutex<MediaClock>>,
        start: f64,
        end: f64,
    ) -> Result<Captured, RecordError> {
        let display_name = self
            .display
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .name()
            .to_owned();
        let fps = self.req.fps;
        let mut source = match self.req.capture {
            CaptureMode::X11 => {
                FrameSource::x11grab(&display_name, self.req.width, self.req.height, fps)?
            }
            CaptureMode::Screencast => {
                FrameSource::screencast(&tab.page, self.req.width, self.req.height).await?
            }
        };
        let frames = std::mem::replace(&mut source.frames, std::sync::mpsc::sync_channel(1).1);
        let mut pipeline = Pipeline::start(
            frames,
            source.repeats_when_idle,
            Arc::clone(clock),
            start,
            VideoSettings {
                width: self.req.width,
                height: self.req.height,
                fps,
                container: self.container,
                crf: self.req.crf,
                preset: self.req.preset.clone(),
            },
            self.work.join("video.mkv"),
            None,
        )?;
        // Known now: no slot past the end is ever written.
        pipeline.set_end(end);

        let play_result = if player.kind.is_bbb() {
            match self.start_player(&tab.page, player, start, clock).await {
                Ok(()) => {
                    let feed = ClockFeed::Player(&mut tab.messages);
                    self.play(feed, start, end, clock, &pipeline, &mut tab.crashes)
                        .await
                }
                Err(e) => Err(e),
            }
        } else {
            // Media time of a generic page is the wall time since it finished loading.
            let feed = ClockFeed::wall(start);
            self.play(feed, start, end, clock, &pipeline, &mut tab.crashes)
                .await
        };
        let end = match play_result {
            Ok(actual) => actual.min(end),
            Err(e) => {
                pipeline.control.abort.store(true, Ordering::SeqCst);
                source.stop();
                return Err(e);
            }
        };
        pipeline.set_end(end);
        // The pipeline needs about a second after the end to decide the last slots.
        if !pipeline.ended(Duration::from_secs(30)).await {
            pipeline.control.abort.store(true, Ordering::SeqCst);
            source.stop();
            return Err(RecordError::transient(
                Phase::Encode,
                "the encoder did not finish",
            ));
        }
        let changed_frames = pipeline.control.changed_frames.load(Ordering::Relaxed);
        let (video, frames) = tokio::task::spawn_blocking(move || pipeline.join())
            .await
            .map_err(|e| RecordError::transient(Phase::Encode, e.to_string()))??;
        source.stop();
        Ok(Captured {
            video,
            frames,
            changed_frames,
            end,
        })
    }

    /// The recording's polled health, checked while the page loads and while it plays: the
    /// media download, the signal, the DevTools connection, the display, the timeout, the
    /// browser process, and the sound capture with its server. (What arrives as an event, a
    /// renderer crash or a lost connection, is awaited by [`interruption`] too.)
    pub(super) fn watchdog(&mut self) -> Result<(), RecordError> {
        if self
            .media_download
            .as_ref()
            .is_some_and(|d| d.is_finished())
        {
            let download = self.media_download.take().expect("checked");
            match futures::FutureExt::now_or_never(download) {
                Some(Ok(Ok(path))) => self.media_path = Some(path),
                Some(Ok(Err(e))) => return Err(e),
                Some(Err(e)) => return Err(RecordError::transient(Phase::Audio, e.to_string())),
                None => {}
            }
        }
        if *self.cancel.borrow() {
            return Err(RecordError::transient(
                Phase::Play,
                "interrupted by a signal",
            ));
        }
        if *self.chromium.connection_lost.borrow() {
            return Err(RecordError::transient(
                Phase::Browser,
                "the DevTools connection was lost",
            ));
        }
        if let Err(e) = self
            .display
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .check()
        {
            return Err(RecordError::transient(Phase::Display, e.to_string()));
        }
        if let Some(timeout) = self.req.timeout.or(self.default_timeout)
            && self.started.elapsed() > timeout
        {
            return Err(RecordError::transient(
                Phase::Play,
                format!("gave up after the {timeout:?} timeout"),
            ));
        }
        if let Some(why) = self.chromium.exited() {
            return Err(RecordError::transient(Phase::Browser, why));
        }
        if self.sound_capture.as_ref().is_some_and(|c| c.is_finished()) {
            return Err(RecordError::transient(
                Phase::Audio,
                "the sound capture stopped (PulseAudio failed)",
            ));
        }
        if let Some(why) = self.pulse.as_mut().and_then(|p| p.exited()) {
            return Err(RecordError::transient(Phase::Audio, why));
        }
        Ok(())
    }

    /// Awaits `task` (a download) while the recording's health is watched four times a second:
    /// a signal, a dead browser or the timeout ends the wait for hours of video at once.
    pub(super) async fn watched<T>(
        &mut self,
        mut task: tokio::task::JoinHandle<Result<T, RecordError>>,
        phase: Phase,
    ) -> Result<T, RecordError> {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tokio::select! {
                done = &mut task => {
                    return done.map_err(|e| RecordError::transient(phase, e.to_string()))?;
                }
                _ = tick.tick() => {
                    if let Err(e) = self.watchdog() {
                        task.abort();
                        return Err(e);
                    }
                }
            }
        }
    }

    /// Readies a BBB player and starts it at `start`: readied ([`Session::ready_player`]), the
    /// paused start picture captured and the clock anchored on it; then playback. Its time
    /// events then feed the clock.
    async fn start_player(
        &mut self,
        page: &Page,
        player: &Player,
        start: f64,
        clock: &Arc<Mutex<MediaClock>>,
    ) -> Result<(), RecordError> {
        self.ready_player(page, player, start).await?;
        // Wait for frames of the paused start picture to be grabbed, then anchor the clock.
        tokio::time::sleep(Duration::from_millis(300)).await;
        clock
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(ClockSample {
                wall: wall_now(),
                media: start,
            });
        // Autoplay is allowed by the browser flag; a plain script play() (no user gesture).
        let played: serde_json::Value = page
            .evaluate_expression(format!(
                "(async () => {{ const v = {MEDIA}; let why = ''; window.__bbbRecordPlayRequested = true; \
                 try {{ await v.play(); }} catch (e) {{ why = String(e && e.name || e); }} \
                 if (why === 'NotAllowedError' || why === 'NotSupportedError') return why; \
                 /* Other rejections (AbortError: the screen share, slaved to the media, paused it \
                    while buffering) are not final: the keeper below resumes playback. */ \
                 window.__bbbRecordKeepPlaying = true; return 'ok'; }})()"
            ))
            .await
            .transient(Phase::Play, "starting playback")?
            .into_value()
            .unwrap_or(serde_json::Value::Null);
        if played != "ok" {
            return Err(RecordError::transient(
                Phase::Play,
                format!("the player refused to play: {played}"),
            ));
        }
        Ok(())
    }

    /// Readies a BBB player, paused at `start`: its controls hidden, every slide decoded once,
    /// the render watcher and the media clock installed, seeked to `start` and drawn there.
    pub(super) async fn ready_player(
        &mut self,
        page: &Page,
        player: &Player,
        start: f64,
    ) -> Result<(), RecordError> {
        let is23 = matches!(player.kind, PageKind::Bbb23 { .. });
        page.evaluate_expression(hide_chrome_js(is23))
            .await
            .transient(Phase::Load, "hiding the player controls")?;
        // Decode every slide once before playing (a first display takes 1-3 frames longer); the
        // render watcher learns the slides (a missing one is named with its time) and, on the 2.3
        // player, starts watching the page; the session keeps them for the contact sheet's slide
        // changes.
        if let Some(base) = &player.base {
            let cookies = self.cookie_header(page, base).await;
            let slides = match fetch_text(
                self.http,
                &base.join("shapes.svg").expect("valid"),
                &cookies,
            )
            .await
            {
                Ok(svg) => playback::slide_images(&svg),
                Err(_) => Vec::new(),
            };
            if let Some(render) = self.render.as_mut() {
                render.set_recording(base.clone(), slides.clone());
            }
            self.slides = slides.clone();
            if is23 {
                let first_zoom = match fetch_text(
                    self.http,
                    &base.join("panzooms.xml").expect("valid"),
                    &cookies,
                )
                .await
                {
                    Ok(xml) => playback::first_panzoom(&xml).unwrap_or(0.0),
                    Err(_) => 0.0,
                };
                page.evaluate_expression(render_watch::watcher_js(
                    MEDIA,
                    first_zoom.max(start) + 1.5,
                ))
                .await
                .transient(Phase::Play, "installing the render watcher")?;
            }
            // Only the recording's own files: an href from shapes.svg is untrusted and could name
            // another host (which the request policy would refuse anyway).
            let urls: Vec<String> = slides
                .iter()
                .filter_map(|s| base.join(&s.href).ok().map(|u| u.to_string()))
                .filter(|u| u.starts_with(base.as_str()))
                .collect();
            let js = format!(
                "Promise.all({}.map(u => {{ const i = new Image(); i.src = u; return i.decode().catch(() => null); }})).then(() => true)",
                serde_json::to_string(&urls).unwrap_or_else(|_| "[]".into())
            );
            let _ =
                tokio::time::timeout(Duration::from_secs(30), page.evaluate_expression(js)).await;
            // A slide the server does not serve ends the recording before it plays.
            if let Some(render) = self.render.as_mut() {
                render.check(start)?;
            }
        }
        page.evaluate_expression(clock_js(is23))
            .await
            .transient(Phase::Play, "installing the media clock")?;
        // Seek even to 0: until the first seek or play the player shows its logo, not the slide.
        let seeked: bool = page
            .evaluate_expression(format!(
                "new Promise(resolve => {{ const v = {MEDIA}; const t = {start}; \
                 const done = () => setTimeout(() => resolve(Math.abs(v.currentTime - t) < 0.5), 300); \
                 v.addEventListener('seeked', done, {{ once: true }}); v.currentTime = t; \
                 setTimeout(() => resolve(Math.abs(v.currentTime - t) < 0.5), 15000); }})"
            ))
            .await
            .transient(Phase::Play, "seeking")?
            .into_value()
            .unwrap_or(false);
        if !seeked {
            return Err(RecordError::transient(
                Phase::Play,
                format!("the player did not seek to {start:.3} s"),
            ));
        }
        // The tldraw v2 whiteboard (BBB 3.0) draws the slide only on the time update after the
        // one that mounted it (bbb-playback.md, "Quirks"): a second update at the start time
        // makes the paused start picture right, as the player's own timer would once playing.
        if is23 {
            let _ = page
                .evaluate_expression(format!(
                    "document.dispatchEvent(new CustomEvent('bbbplaybacktimeupdate', {{ detail: {{ time: {start} }} }}))"
                ))
                .await;
        }
        Ok(())
    }

    /// Plays until the end time, the playback's end or an error, with the media clock fed by
    /// `feed`: the clock samples go to the capture, the recording's health is watched four
    /// times a second, progress is reported once a second. Returns the media time it ended at.
    async fn play(
        &mut self,
        mut feed: ClockFeed<'_>,
        start: f64,
        end: f64,
        clock: &Arc<Mutex<MediaClock>>,
        pipeline: &Pipeline,
        crashes: &mut chromiumoxide::listeners::EventStream<EventTargetCrashed>,
    ) -> Result<f64, RecordError> {
        let push =
            |sample: ClockSample| clock.lock().unwrap_or_else(|e| e.into_inner()).push(sample);
        let end_margin = feed.end_margin();
        let mut last_advance = Instant::now();
        let mut last_media = start;
        let mut last_report = Instant::now() - Duration::from_secs(2);
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let mut lost = self.chromium.connection_lost.clone();
        let mut cancel = self.cancel.clone();
        loop {
            tokio::select! {
                event = feed.next() => match event {
                    FeedEvent::Time(sample) => {
                        push(sample);
                        if sample.media > last_media + 1e-6 {
                            last_media = sample.media;
                            last_advance = Instant::now();
                        }
                        if sample.media >= end + end_margin {
                            return Ok(end);
                        }
                    }
                    FeedEvent::Ended(sample) => {
                        push(sample);
                        let at = sample.media;
                        if at + 0.5 < end {
                            (self.report)(Event::Warning(format!(
                                "the playback ended at {at:.3} s, before the expected {end:.3} s"
                            )));
                        }
                        return Ok(at);
                    }
                    FeedEvent::Waiting(m) => {
                        (self.report)(Event::Stalled { media_time: m - start });
                    }
                    FeedEvent::Defect { kind, text, at } => {
                        if let Some(render) = self.render.as_mut() {
                            render.page_defect(&kind, &text, at);
                            render.check(last_media)?;
                        }
                    }
                    FeedEvent::MediaError => {
                        return Err(RecordError::transient(Phase::Play, "the media element reported an error (network or decoding)"));
                    }
                    FeedEvent::Closed => {
                        return Err(RecordError::transient(Phase::Browser, "the page's event stream ended"));
                    }
                },
                e = interruption(crashes, &mut lost, &mut cancel) => return Err(e),
                _ = tick.tick() => {
                    if let Some(render) = self.render.as_mut() {
                        render.check(last_media)?;
                    }
                    self.watchdog()?;
                    // The end is known before capture starts, so the encoder may legitimately
                    // finish before the page reports the end; if it failed instead, joining it
                    // reports why.
                    if pipeline.is_finished() {
                        return Ok(end);
                    }
                    if last_advance.elapsed() > STALL_LIMIT {
                        return Err(RecordError::transient(
                            Phase::Play,
                            format!("the playback stalled at {last_media:.3} s for {STALL_LIMIT:?}"),
                        ));
                    }
                    if last_report.elapsed() >= Duration::from_secs(1) {
                        last_report = Instant::now();
                        (self.report)(Event::Progress { media_time: last_media - start, duration: end - start });
                    }
                }
            }
        }
    }
}

/// Resolves when the recording must stop: the renderer crashed, the DevTools connection was lost
/// or a signal arrived. A closed channel disables its branch (it must not spin or be mistaken for
/// an event).
pub(super) async fn interruption(
    crashes: &mut chromiumoxide::listeners::EventStream<EventTargetCrashed>,
    lost: &mut watch::Receiver<bool>,
    cancel: &mut watch::Receiver<bool>,
) -> RecordError {
    let (mut crashes_open, mut lost_open, mut cancel_open) = (true, true, true);
    loop {
        tokio::select! {
            crash = crashes.next(), if crashes_open => match crash {
                Some(_) => return RecordError::transient(Phase::Browser, "the page's renderer crashed"),
                None => crashes_open = false,
            },
            changed = lost.changed(), if lost_open => match changed {
                Ok(()) if *lost.borrow() => {
                    return RecordError::transient(Phase::Browser, "the DevTools connection was lost");
                }
                Ok(()) => {}
                Err(_) => lost_open = false,
            },
            changed = cancel.changed(), if cancel_open => match changed {
                Ok(()) if *cancel.borrow() => {
                    return RecordError::transient(Phase::Play, "interrupted by a signal");
                }
                Ok(()) => {}
                Err(_) => cancel_open = false,
            },
            else => std::future::pending::<()>().await,
        }
    }
}
