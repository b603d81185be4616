//! Fast mode (`--fast`): the readied 2.3 player stays paused and is stepped from one picture
//! change to the next (`capture::stepped`), the webcam and screen-share areas are filled from the
//! recording's own videos (`overlay`), and the same pipeline encodes every slot; the sound is the
//! recording's own, as in real time.
//!
//! Fast mode gives the real player's picture or nothing: a recording it cannot reproduce exactly
//! (the 2.0 player, a file drawn on time that `playback::changes` does not read, a way of showing
//! a video it does not know) is recorded in real time, with a warning saying why. What is known
//! before the player is readied is decided here ([`Session::fast_plan`]); what only the readied
//! page shows (where and how it shows its videos, read at every step) ends the stepped capture
//! with [`Stepped::Unreproducible`], and the recording starts over in real time.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::page::Tab;
use super::play::{Captured, interruption};
use super::sound::SoundPlan;
use super::{Event, Player, Session};
use crate::capture::FrameSource;
use crate::capture::stepped::{Step, StepEnd, StepPlan, StepReader};
use crate::clock_feed::{ClockFeed, FeedEvent};
use crate::encode::VideoSettings;
use crate::error::{Phase, RecordError};
use crate::fetch::{download, fetch_optional_text};
use crate::overlay::{self, FillPlan, Layout, Layouts, PageVideos, Sources};
use crate::pipeline::Pipeline;
use crate::playback::changes::{ChangeKind, ChangeTimes, RecordingFiles, UNREAD_TIMED_FILES};
use crate::playback::page::VIDEOS_JS;
use crate::playback::{self, PageKind};
use crate::render_watch;
use crate::timeline::MediaClock;

/// A recording fast mode can step.
pub(super) struct FastPlan {
    steps: Vec<Step>,
    /// The recording has a tldraw whiteboard (BBB 2.6+).
    tldraw: bool,
    /// The recording's videos (its webcams file when it has a picture, its screen share when
    /// it shares in the span).
    sources: Sources,
}

/// How a stepped capture ended.
pub(super) enum Stepped {
    Captured(Captured),
    /// The readied page showed something fast mode does not reproduce: why.
    Unreproducible(String),
}

impl Session<'_> {
    /// Whether this recording can be stepped, from what is known before its player is readied:
    /// the player, the sound, the recording's files and its media. `Ok(Err(why))`: record it in
    /// real time. A file the server fails to send is an error, as it is for real time.
    pub(super) async fn fast_plan(
        &mut self,
        page: &chromiumoxide::Page,
        player: &Player,
        sound: SoundPlan,
        (start, end): (f64, f64),
    ) -> Result<Result<FastPlan, String>, RecordError> {
        if !matches!(player.kind, PageKind::Bbb23 { .. }) {
            return Ok(Err(match player.kind {
                PageKind::Bbb20 { .. } => "the 2.0 player has no time event to step it with".into(),
                _ => "fast mode steps BBB's 2.3 player only".into(),
            }));
        }
        if sound == SoundPlan::Pulse {
            return Ok(Err(
                "--audio pulse records what the browser plays, which it does only in real time"
                    .into(),
            ));
        }
        let Some(base) = &player.base else {
            return Ok(Err("the recording's files are not known".into()));
        };
        let cookies = self.cookie_header(page, base).await;
        let mut texts: [Option<String>; 8] = Default::default();
        for (name, text) in RecordingFiles::NAMES.iter().zip(texts.iter_mut()) {
            let url = base
                .join(name)
                .map_err(|e| RecordError::permanent(Phase::Probe, format!("{name}: {e}")))?;
            *text = fetch_optional_text(self.http, &url, &cookies).await?;
        }
        let mut present = Vec::new();
        for name in UNREAD_TIMED_FILES {
            let url = base
                .join(name)
                .map_err(|e| RecordError::permanent(Phase::Probe, format!("{name}: {e}")))?;
            if fetch_optional_text(self.http, &url, &cookies)
                .await?
                .is_some()
            {
                present.push(*name);
            }
        }
        let files = RecordingFiles::from_fetched(&texts);
        let changes = match playback::changes::change_times(&files, &present) {
            Ok(c) => c,
            Err(e) => return Ok(Err(format!("its change times cannot be read ({e})"))),
        };
        if !changes.unread.is_empty() {
            return Ok(Err(format!(
                "the recording has {}, which fast mode does not draw",
                changes.unread.join(", ")
            )));
        }
        let media = match self.media_file(page, base, sound).await {
            Ok(path) => path,
            Err(e) if sound != SoundPlan::Source => {
                return Ok(Err(format!("its media cannot be read ({e})")));
            }
            Err(e) => return Err(e),
        };
        let probed = media.clone();
        let video = tokio::task::spawn_blocking(move || overlay::video_size(&probed))
            .await
            .map_err(|e| RecordError::transient(Phase::Capture, e.to_string()))?
            .map_err(|why| {
                RecordError::permanent(
                    Phase::Probe,
                    format!("the recording's media {}: {why}", file_label(&media)),
                )
            })?;
        // The screen share is needed only when it shows in the span.
        let shares = changes
            .changes
            .iter()
            .any(|c| c.kind == ChangeKind::ScreenShare && c.time < end);
        let screenshare = if shares {
            match self.screenshare_file(base, &cookies).await? {
                Some(path) => Some(path),
                None => {
                    return Ok(Err(
                        "deskshare.xml shares the screen and the server has no deskshare video"
                            .into(),
                    ));
                }
            }
        } else {
            None
        };
        Ok(Ok(FastPlan {
            steps: steps(&changes, start, end, self.req.fps),
            tldraw: files.tldraw_json.is_some(),
            sources: Sources {
                webcam: video.map(|_| media),
                screenshare,
            },
        }))
    }

    /// The recording's screen-share video (`deskshare/deskshare.webm`, else `.mp4`), downloaded
    /// whole; `None` when the server has neither.
    async fn screenshare_file(
        &mut self,
        base: &url::Url,
        cookies: &str,
    ) -> Result<Option<PathBuf>, RecordError> {
        for candidate in ["deskshare/deskshare.webm", "deskshare/deskshare.mp4"] {
            let url = base
                .join(candidate)
                .map_err(|e| RecordError::permanent(Phase::Probe, format!("{candidate}: {e}")))?;
            let mut request = self.http.head(url.clone());
            if !cookies.is_empty() {
                request = request.header(reqwest::header::COOKIE, cookies);
            }
            let response = request.send().await.map_err(|e| {
                RecordError::transient(Phase::Probe, format!("probing the screen share: {e}"))
            })?;
            if response.status().is_success() {
                let ext = candidate.rsplit('.').next().unwrap_or("bin");
                let dest = self.work.join(format!("screenshare.{ext}"));
                let (http, cookies) = (self.http.clone(), cookies.to_owned());
                let task = tokio::spawn(async move { download(&http, url, &cookies, dest).await });
                return self.watched(task, Phase::Probe).await.map(Some);
            }
            if response.status().is_server_error() {
                return Err(RecordError::transient(
                    Phase::Probe,
                    format!("the screen share answered {}", response.status()),
                ));
            }
        }
        Ok(None)
    }

    /// The recording's media file, downloaded whole (fast mode needs its video from the first
    /// step on; real time needs it only at the end).
    async fn media_file(
        &mut self,
        page: &chromiumoxide::Page,
        base: &url::Url,
        sound: SoundPlan,
    ) -> Result<PathBuf, RecordError> {
        if let Some(path) = &self.media_path {
            return Ok(path.clone());
        }
        let download = match self.media_download.take() {
            Some(d) => d,
            None => {
                let cookies = self.cookie_header(page, base).await;
                self.start_media_download(base, &cookies).await?
            }
        };
        let path = self.watched(download, Phase::Audio).await?;
        // The sound is cut from the same file (`finish_sound` takes it from here).
        if sound == SoundPlan::Source {
            self.media_path = Some(path.clone());
        }
        Ok(path)
    }

    /// Readies the player and steps it, paused, through `plan`, its video areas filled from the
    /// recording's videos, encoding every slot of `start..end`.
    pub(super) async fn capture_stepped(
        &mut self,
        tab: &mut Tab,
        player: &Player,
        plan: FastPlan,
        (start, end): (f64, f64),
    ) -> Result<Stepped, RecordError> {
        self.ready_player(&tab.page, player, start).await?;
        // The whiteboard's fonts load in wall time, which the steps' media time outruns: the
        // first picture waits for them, as long as real time's render check would.
        let loaded = tab
            .page
            .evaluate_expression(render_watch::assets_loaded_js())
            .await
            .map_err(|e| {
                RecordError::transient(Phase::Render, format!("waiting for the whiteboard: {e}"))
            })?
            .into_value::<bool>()
            .unwrap_or(false);
        if !loaded && let Some(render) = self.render.as_mut() {
            render.page_defect("assets", "Loading assets... for 10 s", start);
            render.check(start)?;
        }
        let (width, height, fps) = (self.req.width, self.req.height, self.req.fps);
        // Where the page shows its videos is read at every step (the screen share switches the
        // layout), before the step's picture reaches the pipeline.
        let layouts: Layouts = Default::default();
        let has_videos = plan.sources.webcam.is_some() || plan.sources.screenshare.is_some();
        let reading = has_videos.then(|| {
            let (layouts, sources) = (Arc::clone(&layouts), plan.sources.clone());
            let read: StepReader = Arc::new(move |slot, answer| {
                let text = answer.as_str().unwrap_or("null");
                let page: PageVideos = serde_json::from_str(text)
                    .map_err(|e| format!("the page's videos could not be read ({e})"))?;
                let layout = Layout::of(&page, &sources, width, height)?;
                let mut layouts = layouts.lock().unwrap_or_else(|e| e.into_inner());
                if layouts.last().is_none_or(|(_, last)| *last != layout) {
                    layouts.push((slot, layout));
                }
                Ok(())
            });
            (VIDEOS_JS.to_owned(), read)
        });
        let fill = has_videos.then(|| FillPlan {
            sources: plan.sources.clone(),
            layouts: Arc::clone(&layouts),
        });
        let (mut source, mut stepping) = FrameSource::stepped(
            &tab.page,
            StepPlan {
                start,
                fps,
                steps: plan.steps,
                dispatch_twice: plan.tldraw,
                reading,
                width,
                height,
            },
        )?;
        let frames = std::mem::replace(&mut source.frames, std::sync::mpsc::sync_channel(1).1);
        let pipeline = Pipeline::start(
            frames,
            false,
            Arc::new(Mutex::new(MediaClock::stepped(start, end))),
            start,
            VideoSettings {
                width,
                height,
                fps,
                container: self.container,
                crf: self.req.crf,
                preset: self.req.preset.clone(),
            },
            self.work.join("video.mkv"),
            fill,
        )?;
        pipeline.set_end(end);
        let watched = self
            .watch_stepping(tab, &mut stepping, &pipeline, start, end)
            .await;
        let unreproducible = match watched {
            Ok(None) => None,
            Ok(Some(why)) => Some(why),
            Err(e) => {
                pipeline.control.abort.store(true, Ordering::SeqCst);
                source.stop();
                return Err(e);
            }
        };
        if let Some(why) = unreproducible {
            pipeline.control.abort.store(true, Ordering::SeqCst);
            source.stop();
            return Ok(Stepped::Unreproducible(why));
        }
        let changed_frames = pipeline.control.changed_frames.load(Ordering::Relaxed);
        let (video, frames) = tokio::task::spawn_blocking(move || pipeline.join())
            .await
            .map_err(|e| RecordError::transient(Phase::Encode, e.to_string()))??;
        source.stop();
        Ok(Stepped::Captured(Captured {
            video,
            frames,
            changed_frames,
            end,
        }))
    }

    /// Watches the stepped capture until the encoder has written its last slot: the page's
    /// messages (a render defect, a media error), the recording's health four times a second,
    /// progress once a second (the encoder's, which is the slower). `Some(why)`: the page
    /// changed in a way fast mode does not reproduce.
    async fn watch_stepping(
        &mut self,
        tab: &mut Tab,
        stepping: &mut crate::capture::stepped::Stepping,
        pipeline: &Pipeline,
        start: f64,
        end: f64,
    ) -> Result<Option<String>, RecordError> {
        let fps = f64::from(self.req.fps);
        let mut feed = ClockFeed::Player(&mut tab.messages);
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let mut last_report = Instant::now() - Duration::from_secs(2);
        let mut lost = self.chromium.connection_lost.clone();
        let mut cancel = self.cancel.clone();
        let mut stepping_over = false;
        loop {
            let stepped_to = *stepping.reached.borrow();
            tokio::select! {
                ended = &mut stepping.end, if !stepping_over => {
                    stepping_over = true;
                    match ended {
                        Ok(StepEnd::Done) => {}
                        Ok(StepEnd::Unreproducible(why)) => return Ok(Some(why)),
                        Ok(StepEnd::Failed(e)) => return Err(e),
                        Err(_) => return Err(RecordError::transient(Phase::Capture, "the stepped capture stopped")),
                    }
                }
                event = feed.next() => match event {
                    FeedEvent::Defect { kind, text, at } => {
                        if let Some(render) = self.render.as_mut() {
                            render.page_defect(&kind, &text, at);
                            render.check(stepped_to)?;
                        }
                    }
                    FeedEvent::MediaError => {
                        return Err(RecordError::transient(Phase::Capture, "the media element reported an error (network or decoding)"));
                    }
                    FeedEvent::Closed => {
                        return Err(RecordError::transient(Phase::Browser, "the page's event stream ended"));
                    }
                    // The player's clock echoes the steps; the encoder's count is the progress.
                    FeedEvent::Time(_) | FeedEvent::Ended(_) | FeedEvent::Waiting(_) => {}
                },
                e = interruption(&mut tab.crashes, &mut lost, &mut cancel) => return Err(e),
                _ = tick.tick() => {
                    if let Some(render) = self.render.as_mut() {
                        render.check(stepped_to)?;
                    }
                    self.watchdog()?;
                    if pipeline.is_finished() {
                        return Ok(None);
                    }
                    if last_report.elapsed() >= Duration::from_secs(1) {
                        last_report = Instant::now();
                        let written = pipeline.control.frames.load(Ordering::Relaxed) as f64 / fps;
                        (self.report)(Event::Progress { media_time: written.min(end - start), duration: end - start });
                    }
                }
            }
        }
    }
}

/// The slots at which the picture of `start..end` can change: slot 0, and for each change the
/// first slot whose media time is at or after it (a slot shows the state at its own time). A
/// slide or layout change settles (its picture is taken until it stands still).
fn steps(changes: &ChangeTimes, start: f64, end: f64, fps: u32) -> Vec<Step> {
    let fps = f64::from(fps);
    let total = ((end - start) * fps).round().max(0.0) as u64;
    let mut out = vec![Step {
        slot: 0,
        settle: true,
    }];
    // `changes` is sorted by time, so the slots come in order.
    for change in &changes.changes {
        if change.time <= start {
            continue;
        }
        // A change at a slot's own time (up to float error) is that slot's.
        let slot = ((change.time - start) * fps - 1e-6).ceil() as u64;
        if slot >= total {
            break;
        }
        let settle = matches!(change.kind, ChangeKind::Slide | ChangeKind::ScreenShare);
        match out.last_mut() {
            Some(last) if last.slot == slot => last.settle |= settle,
            _ => out.push(Step { slot, settle }),
        }
    }
    out
}

fn file_label(path: &std::path::Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::playback::changes::Change;

    fn changes(list: &[(f64, ChangeKind)]) -> ChangeTimes {
        ChangeTimes {
            changes: list
                .iter()
                .map(|&(time, kind)| Change { time, kind })
                .collect(),
            unread: vec![],
        }
    }

    #[test]
    fn a_change_is_stepped_at_the_first_slot_that_shows_it() {
        let c = changes(&[
            (0.0, ChangeKind::Slide),
            (1.0, ChangeKind::Cursor),
            (1.01, ChangeKind::Cursor),
            (1.02, ChangeKind::Slide),
            (5.0, ChangeKind::Zoom),
            (9.99, ChangeKind::Chat),
        ]);
        let got: Vec<(u64, bool)> = steps(&c, 0.0, 10.0, 30)
            .iter()
            .map(|s| (s.slot, s.settle))
            .collect();
        // 1.0 s is slot 30 exactly; 1.01 and 1.02 both first show at slot 31 (1.033 s), which
        // settles for the slide; 9.99 s would be slot 300, past the last (299).
        assert_eq!(got, vec![(0, true), (30, false), (31, true), (150, false)]);
    }

    #[test]
    fn steps_count_from_the_start_time_and_skip_what_the_start_already_shows() {
        let c = changes(&[
            (1.0, ChangeKind::Slide),
            (2.5, ChangeKind::Annotation),
            (4.0, ChangeKind::Slide),
        ]);
        let got: Vec<u64> = steps(&c, 2.5, 5.0, 10).iter().map(|s| s.slot).collect();
        assert_eq!(got, vec![0, 15]);
    }
}
