//! One recording from start to finish: probe the playback, start the display and the browser, load
//! and confirm the player, capture on the media clock, cut the sound, write and place the file, and
//! tear everything down whatever happens.
//!
//! The player contract (selectors, events, autoplay rule, end of playback) is documented in
//! bbb-playback.md; each rule used here cites it.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chromiumoxide::Page;
use chromiumoxide::cdp::browser_protocol::inspector::EventTargetCrashed;
use chromiumoxide::cdp::browser_protocol::network::GetCookiesParams;
use chromiumoxide::cdp::js_protocol::runtime::{AddBindingParams, EventBindingCalled};
use futures::StreamExt;
use tokio::sync::watch;
use url::Url;

use bbb_common::redact;

use crate::browser::{Chromium, LaunchOptions, find_browser};
use crate::capture::{FrameSource, wall_now};
use crate::clock_feed::{ClockFeed, FeedEvent};
use crate::encode::{self, AudioCut, Container, VideoSettings};
use crate::error::{Context as _, Phase, RecordError};
use crate::fetch::{download, fetch_metadata, fetch_text};
use crate::pipeline::Pipeline;
use crate::playback::page::{MEDIA, PROBE_JS, Probe, clock_js, hide_chrome_js, usable};
use crate::playback::{self, PageKind};
use crate::pulse;
use crate::render_watch::{self, RenderWatch};
use crate::requests::{self, RequestPolicy};
use crate::timeline::{ClockSample, MediaClock};

/// Delay between the player's redraw and the pixels a grab sees (bbb-playback.md, "Real-time
/// capture on the media clock": 25-45 ms measured); frames are stamped with media time at
/// `grab - LATENCY`.
pub const CAPTURE_LATENCY_US: i64 = 35_000;

/// The playback must advance at least once in this long, or the recording is abandoned.
const STALL_LIMIT: Duration = Duration::from_secs(60);

/// How long the player may take to show itself or its error (BBB loads in about 3 s).
const PLAYER_READY_LIMIT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Layout {
    /// The player as users see it, without control bar, top-bar buttons or play overlay.
    Full,
    /// The presentation only.
    Content,
    /// The webcams only.
    Media,
    /// Webcams big, presentation small.
    Swapped,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AudioMode {
    /// The recording's own sound for BBB playbacks; the page's sound through a private
    /// PulseAudio server for other pages (none, with a warning, when pulseaudio is missing).
    Auto,
    /// The recording's own sound (BBB playbacks only).
    Source,
    /// What the browser plays, through a private PulseAudio server (any page).
    Pulse,
    /// No sound.
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CaptureMode {
    /// Grab the virtual display with x11grab (a steady rate; the default).
    X11,
    /// The DevTools screencast: pictures of the page sent by Chromium when it redraws.
    Screencast,
}

/// Where the sound of this recording comes from, once the page is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SoundPlan {
    None,
    /// The recording's own media file, cut on the media timeline.
    Source,
    /// The browser's output captured from the private PulseAudio sink.
    Pulse,
}

/// Everything one recording needs, validated.
#[derive(Debug, Clone)]
pub struct RecordRequest {
    pub url: String,
    pub output: PathBuf,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub crf: Option<u32>,
    pub preset: Option<String>,
    pub start: Option<f64>,
    pub end: Option<f64>,
    pub duration: Option<f64>,
    pub layout: Layout,
    pub audio: AudioMode,
    pub capture: CaptureMode,
    pub timeout: Option<Duration>,
    pub browser: Option<PathBuf>,
    /// Record a playback whose picture is broken (missing files, error screens) anyway, listing
    /// each defect in [`Outcome::degraded`].
    pub accept_broken: bool,
    /// Hosts a BBB playback may load from besides its own (host names, any port).
    pub allow_hosts: Vec<String>,
    /// Also record `file:` URLs (a local page the user trusts).
    pub allow_file: bool,
}

/// What the recorder reports while it works.
#[derive(Debug, Clone)]
pub enum Event {
    Started {
        kind: String,
        duration: f64,
    },
    Progress {
        media_time: f64,
        duration: f64,
    },
    /// The player is waiting for data (media time `media_time`).
    Stalled {
        media_time: f64,
    },
    Warning(String),
}

/// The result of a successful recording.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub output: PathBuf,
    pub duration: f64,
    pub frames: u64,
    pub changed_frames: u64,
    pub audio_samples: u64,
    /// What was wrong with the picture and recorded anyway (`--accept-broken`).
    pub degraded: Vec<String>,
    /// The third-party assets answered from the bundle (URLs without query strings).
    pub assets_answered: Vec<String>,
}

pub type Reporter = Arc<dyn Fn(Event) + Send + Sync>;

/// Record `req`. `cancel` becomes true on SIGINT/SIGTERM.
pub async fn record(
    req: RecordRequest,
    report: Reporter,
    cancel: watch::Receiver<bool>,
) -> Result<Outcome, RecordError> {
    let container = Container::from_path(&req.output).ok_or_else(|| {
        RecordError::permanent(
            Phase::Setup,
            format!(
                "cannot tell the container from {:?}: use .mp4, .webm or .mkv",
                req.output
            ),
        )
    })?;
    let dest_dir = req
        .output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_owned();
    if !dest_dir.is_dir() {
        return Err(RecordError::permanent(
            Phase::Setup,
            format!("output directory {} does not exist", dest_dir.display()),
        ));
    }
    let (url, kind) = playback::parse_url(&req.url, req.allow_file)?;
    let browser_binary = match &req.browser {
        Some(p) => p.clone(),
        None => find_browser().ok_or_else(|| {
            RecordError::permanent(
                Phase::Browser,
                "no Chromium found: install Debian's `chromium` package or pass --browser",
            )
        })?,
    };
    encode::init()?;
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(20))
        .timeout(Duration::from_secs(60))
        .build()
        .transient(Phase::Setup, "HTTP client")?;

    // Fail fast on a recording that does not exist, before starting any browser.
    if let Some(id) = kind.record_id()
        && !matches!(kind, PageKind::ScaleliteProtected { .. })
    {
        let base = playback::recording_base(&url, id)?;
        fetch_metadata(&http, &base, "").await?;
    }

    // Everything temporary lives in one hidden directory beside the output (same filesystem, and
    // hours of intermediate video do not fit a small /tmp); removed on every path out.
    let work = tempfile::Builder::new()
        .prefix(".bbb-record-")
        .tempdir_in(&dest_dir)
        .transient(Phase::Setup, "creating the work directory")?;

    // The page's own sound needs a private PulseAudio server before the browser starts.
    let pulse = match (req.audio, kind.is_bbb()) {
        (AudioMode::Pulse, _) => Some(
            tokio::task::spawn_blocking(pulse::PulseServer::start)
                .await
                .map_err(|e| RecordError::transient(Phase::Audio, e.to_string()))?
                .map_err(pulse::PulseError::into_record_error)?,
        ),
        (AudioMode::Auto, false) => match tokio::task::spawn_blocking(pulse::PulseServer::start)
            .await
            .map_err(|e| RecordError::transient(Phase::Audio, e.to_string()))?
        {
            Ok(server) => Some(server),
            Err(pulse::PulseError::NotInstalled) => {
                report(Event::Warning(
                    "pulseaudio is not installed (Debian package `pulseaudio`): the page's sound is not recorded".into(),
                ));
                None
            }
            Err(e) => return Err(e.into_record_error()),
        },
        _ => None,
    };

    let display = {
        let auth = xauthority_path();
        let (w, h) = (req.width, req.height);
        tokio::task::spawn_blocking(move || xvfb::Xvfb::new(w, h).auth_file(auth).start())
            .await
            .map_err(|e| RecordError::transient(Phase::Display, e.to_string()))?
            .map_err(|e| match e {
                xvfb::Error::NotInstalled { .. } | xvfb::Error::XauthNotInstalled => {
                    RecordError::permanent(Phase::Display, e.to_string())
                }
                other => RecordError::transient(Phase::Display, other.to_string()),
            })?
    };
    let mut pulse = pulse;
    let mut chromium = Chromium::launch(&LaunchOptions {
        binary: browser_binary,
        display: display.name().to_owned(),
        xauthority: display.xauthority().to_owned(),
        width: req.width,
        height: req.height,
        profile_dir: work.path().join("profile"),
        // Without our own sound server the browser stays silent (the sound, if any, comes from
        // the recording's media), so it never plays into the machine's audio.
        mute: pulse.is_none(),
        env: pulse
            .as_ref()
            .map(pulse::PulseServer::client_env)
            .unwrap_or_default(),
    })
    .await?;
    let result = Session {
        req: &req,
        report: &report,
        cancel,
        chromium: &mut chromium,
        display: Arc::new(Mutex::new(display)),
        http: &http,
        work: work.path(),
        container,
        started: Instant::now(),
        default_timeout: None,
        media_download: None,
        media_path: None,
        pulse: pulse.as_mut(),
        sound_capture: None,
        requests: Default::default(),
        render: None,
    }
    .run(url, kind)
    .await;
    chromium.shutdown().await;
    drop(pulse);
    drop(work);
    result
}

/// The Xauthority path for our display, fixed before any thread connects to X (libxcb reads
/// `XAUTHORITY` from the environment; see `main`).
pub fn xauthority_path() -> PathBuf {
    std::env::var_os("XAUTHORITY")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::temp_dir().join(format!("bbb-record-{}.xauth", std::process::id()))
        })
}

struct Session<'a> {
    req: &'a RecordRequest,
    report: &'a Reporter,
    cancel: watch::Receiver<bool>,
    chromium: &'a mut Chromium,
    display: Arc<Mutex<xvfb::Display>>,
    http: &'a reqwest::Client,
    work: &'a Path,
    container: Container,
    started: Instant,
    /// `duration x 1.5 + 300 s` once the duration is known, unless `--timeout` was given.
    default_timeout: Option<Duration>,
    /// The recording's media, downloading in the background (its failure ends the recording at
    /// once instead of after the playback).
    media_download: Option<tokio::task::JoinHandle<Result<PathBuf, RecordError>>>,
    media_path: Option<PathBuf>,
    /// The private sound server, when the page's own sound may be recorded.
    pulse: Option<&'a mut pulse::PulseServer>,
    /// The page's sound being captured (stopped when the session ends).
    sound_capture: Option<pulse::SoundCapture>,
    /// What the page asked for and was answered from the bundle or refused.
    requests: requests::SharedRequestLog,
    /// Failure states of a BBB player's picture (set up in `run`).
    render: Option<RenderWatch>,
}

/// What the loaded page turned out to be.
struct Player {
    kind: PageKind,
    /// Recording files base URL (BBB only).
    base: Option<Url>,
    duration: Option<f64>,
}

impl Session<'_> {
    async fn run(mut self, url: Url, kind: PageKind) -> Result<Outcome, RecordError> {
        let page = self
            .chromium
            .browser
            .new_page("about:blank")
            .await
            .transient(Phase::Browser, "opening a tab")?;
        page.execute(AddBindingParams::new("__bbbRecord"))
            .await
            .transient(Phase::Browser, "installing the page binding")?;
        let mut messages = page
            .event_listener::<EventBindingCalled>()
            .await
            .transient(Phase::Browser, "listening to the page")?;
        let mut crashes = page
            .event_listener::<EventTargetCrashed>()
            .await
            .transient(Phase::Browser, "listening for crashes")?;
        // Before the first request: every request the page makes is answered, passed or refused
        // by the policy, and every failed image or media response is seen.
        let policy = if kind.is_bbb() {
            RequestPolicy::playback(&url, &self.req.allow_hosts)
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

        // Capture and encode from the first clock report on; what comes before is dropped.
        let fps = self.req.fps;
        let latency = match self.req.capture {
            CaptureMode::X11 => CAPTURE_LATENCY_US,
            // Screencast pictures carry their own swap time.
            CaptureMode::Screencast => 0,
        };
        let clock = Arc::new(Mutex::new(MediaClock::new(
            latency,
            1_000_000 / i64::from(fps),
        )));
        let start = self.req.start.unwrap_or(0.0).max(0.0);
        // Opening the sound server's monitor takes about a second: done before the page loads,
        // so a page's first second is heard (a generic page's media time starts at its load).
        if let Some(server) = self.pulse.as_deref() {
            let capture = pulse::SoundCapture::start(
                server,
                Arc::clone(&clock),
                start,
                &self.work.join("sound.wav"),
            )?;
            self.sound_capture = Some(capture);
        }
        let player = self.load(&page, url, kind).await?;
        self.check_viewport(&page).await?;

        // The media: duration and sound for BBB; the page's own clock otherwise.
        let (duration, sound) = match &player.base {
            Some(base) => {
                let cookies = self.cookie_header(&page, base).await;
                let meta = fetch_metadata(self.http, base, &cookies).await?;
                let meta_duration = meta.duration_ms.map(|ms| ms as f64 / 1000.0);
                let duration = match (player.duration, meta_duration) {
                    (Some(d), Some(m)) => {
                        if (d - m).abs() > 1.0 {
                            (self.report)(Event::Warning(format!(
                                "the media lasts {d:.3} s but metadata.xml says {m:.3} s; following the media"
                            )));
                        }
                        d
                    }
                    (Some(d), None) => d,
                    (None, Some(m)) => m,
                    (None, None) => {
                        return Err(RecordError::permanent(
                            Phase::Probe,
                            "neither the media element nor metadata.xml gives the playback's duration",
                        ));
                    }
                };
                let sound = match self.req.audio {
                    AudioMode::None => SoundPlan::None,
                    AudioMode::Pulse => SoundPlan::Pulse,
                    AudioMode::Auto | AudioMode::Source => {
                        self.media_download =
                            Some(self.start_media_download(base, &cookies).await?);
                        SoundPlan::Source
                    }
                };
                (duration, sound)
            }
            None => {
                if self.req.audio == AudioMode::Source {
                    return Err(RecordError::permanent(
                        Phase::Audio,
                        "--audio source needs a BBB playback; this page is not one",
                    ));
                }
                let duration = self.req.duration.or(player.duration).ok_or_else(|| {
                    RecordError::permanent(
                        Phase::Probe,
                        "this page is not a BBB playback and has no media with a finite duration: pass --duration",
                    )
                })?;
                let sound = match (self.req.audio, &self.pulse) {
                    (AudioMode::None, _) | (_, None) => SoundPlan::None,
                    (_, Some(_)) => SoundPlan::Pulse,
                };
                (duration, sound)
            }
        };
        let mut end = duration;
        if let Some(e) = self.req.end {
            end = end.min(e);
        }
        if player.kind.is_bbb()
            && let Some(d) = self.req.duration
        {
            end = end.min(start + d);
        }
        if end <= start {
            return Err(RecordError::permanent(
                Phase::Setup,
                format!("nothing to record: start {start:.3} s is not before end {end:.3} s"),
            ));
        }
        self.default_timeout = Some(Duration::from_secs_f64((end - start) * 1.5 + 300.0));
        (self.report)(Event::Started {
            kind: kind_name(&player.kind).into(),
            duration: end - start,
        });

        let display_name = self
            .display
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .name()
            .to_owned();
        let mut source = match self.req.capture {
            CaptureMode::X11 => {
                FrameSource::x11grab(&display_name, self.req.width, self.req.height, fps)?
            }
            CaptureMode::Screencast => {
                FrameSource::screencast(&page, self.req.width, self.req.height).await?
            }
        };
        let frames = std::mem::replace(&mut source.frames, std::sync::mpsc::sync_channel(1).1);
        let pipeline = Pipeline::start(
            frames,
            source.repeats_when_idle,
            Arc::clone(&clock),
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
        )?;
        // Known now: no slot past the end is ever written.
        pipeline.set_end(end);
        if sound != SoundPlan::Pulse {
            self.sound_capture = None;
        }

        let play_result = if player.kind.is_bbb() {
            match self.start_player(&page, &player, start, &clock).await {
                Ok(()) => {
                    let feed = ClockFeed::Player(&mut messages);
                    self.play(feed, start, end, &clock, &pipeline, &mut crashes)
                        .await
                }
                Err(e) => Err(e),
            }
        } else {
            // Media time of a generic page is the wall time since it finished loading.
            let feed = ClockFeed::wall(start);
            self.play(feed, start, end, &clock, &pipeline, &mut crashes)
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
        let wait_start = Instant::now();
        while !pipeline.is_finished() {
            if wait_start.elapsed() > Duration::from_secs(30) {
                pipeline.control.abort.store(true, Ordering::SeqCst);
                source.stop();
                return Err(RecordError::transient(
                    Phase::Encode,
                    "the encoder did not finish",
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let changed_frames = pipeline.control.changed_frames.load(Ordering::Relaxed);
        let (video_path, frames) = tokio::task::spawn_blocking(move || pipeline.join())
            .await
            .map_err(|e| RecordError::transient(Phase::Encode, e.to_string()))??;
        source.stop();
        // A defect seen in the last moments still counts (the capture is stopped by now).
        if let Some(render) = self.render.as_mut() {
            render.check(end)?;
        }
        let _ = page
            .evaluate_expression("(() => { const v = document.querySelector('#webcams video, #video, video, audio'); if (v) v.pause(); })()")
            .await;

        let audio = if sound == SoundPlan::Pulse {
            let capture = self
                .sound_capture
                .take()
                .ok_or_else(|| RecordError::transient(Phase::Audio, "the sound capture is gone"))?;
            let duration = end - start;
            let wav = tokio::task::spawn_blocking(move || capture.finish(duration))
                .await
                .map_err(|e| RecordError::transient(Phase::Audio, e.to_string()))??;
            Some(AudioCut {
                source: wav,
                start: 0.0,
                duration,
            })
        } else if sound == SoundPlan::Source {
            let source = match (self.media_path.take(), self.media_download.take()) {
                (Some(path), _) => path,
                (None, Some(download)) => download
                    .await
                    .map_err(|e| RecordError::transient(Phase::Audio, e.to_string()))??,
                (None, None) => {
                    return Err(RecordError::transient(
                        Phase::Audio,
                        "the media was not downloaded",
                    ));
                }
            };
            Some(AudioCut {
                source,
                start,
                duration: end - start,
            })
        } else {
            None
        };
        let tmp = encode::temporary_output_path(&self.req.output);
        let container = self.container;
        let out = tmp.clone();
        let mux = tokio::task::spawn_blocking(move || {
            encode::mux(&video_path, audio.as_ref(), container, &out)
        })
        .await
        .map_err(|e| RecordError::transient(Phase::Mux, e.to_string()));
        let report = match mux {
            Ok(Ok(r)) => r,
            Ok(Err(e)) | Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        };
        if let Err(e) = encode::place(&tmp, &self.req.output) {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        Ok(Outcome {
            output: self.req.output.clone(),
            duration: end - start,
            frames,
            changed_frames,
            audio_samples: report.audio_samples,
            degraded: self
                .render
                .as_ref()
                .map(RenderWatch::degraded)
                .unwrap_or_default(),
            assets_answered: requests::lock(&self.requests)
                .answered
                .iter()
                .cloned()
                .collect(),
        })
    }

    /// Navigate, and wait for the player to be ready or to show its error.
    async fn load(&mut self, page: &Page, url: Url, kind: PageKind) -> Result<Player, RecordError> {
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
                    return Err(if text.contains("404") || text.contains("400") {
                        RecordError::permanent(
                            Phase::Load,
                            format!("playback not found: {message}"),
                        )
                    } else {
                        RecordError::transient(Phase::Load, message)
                    });
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
    async fn check_viewport(&mut self, page: &Page) -> Result<(), RecordError> {
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

    async fn cookie_header(&self, page: &Page, base: &Url) -> String {
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

    /// Find the recording's primary media and download it into the work directory in the
    /// background (it is needed whole only when the recording ends).
    async fn start_media_download(
        &self,
        base: &Url,
        cookies: &str,
    ) -> Result<tokio::task::JoinHandle<Result<PathBuf, RecordError>>, RecordError> {
        for candidate in playback::MEDIA_CANDIDATES {
            let url = base.join(candidate).transient(Phase::Audio, "media URL")?;
            let mut request = self.http.head(url.clone());
            if !cookies.is_empty() {
                request = request.header(reqwest::header::COOKIE, cookies);
            }
            let response = request
                .send()
                .await
                .transient(Phase::Audio, "probing the media")?;
            if response.status().is_success() {
                let dest = self.work.join(format!(
                    "media.{}",
                    candidate.rsplit('.').next().unwrap_or("bin")
                ));
                let http = self.http.clone();
                let cookies = cookies.to_owned();
                return Ok(tokio::spawn(async move {
                    download(&http, url, &cookies, dest).await
                }));
            }
            if response.status().is_server_error() {
                return Err(RecordError::transient(
                    Phase::Audio,
                    format!("{} answered {}", redact::url(&url), response.status()),
                ));
            }
        }
        Err(RecordError::permanent(
            Phase::Audio,
            format!(
                "the recording at {} has no webcams or audio media",
                redact::url(base)
            ),
        ))
    }

    /// The recording's polled health, checked while the page loads and while it plays: the
    /// media download, the signal, the DevTools connection, the display, the timeout, the
    /// browser process, and the sound capture with its server. (What arrives as an event, a
    /// renderer crash or a lost connection, is awaited by [`interruption`] too.)
    fn watchdog(&mut self) -> Result<(), RecordError> {
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

    /// Readies a BBB player and starts it at `start`: its controls hidden, every slide decoded
    /// once, the render watcher and the media clock installed, the paused start picture
    /// captured and the clock anchored on it; then playback. Its time events then feed the clock.
    async fn start_player(
        &mut self,
        page: &Page,
        player: &Player,
        start: f64,
        clock: &Arc<Mutex<MediaClock>>,
    ) -> Result<(), RecordError> {
        let is23 = matches!(player.kind, PageKind::Bbb23 { .. });
        page.evaluate_expression(hide_chrome_js(is23))
            .await
            .transient(Phase::Load, "hiding the player controls")?;
        // Decode every slide once before playing (a first display takes 1-3 frames longer); the
        // render watcher learns the slides (a missing one is named with its time) and, on the 2.3
        // player, starts watching the page.
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
async fn interruption(
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

fn kind_name(kind: &PageKind) -> &'static str {
    match kind {
        PageKind::Bbb23 { .. } => "bbb-2.3",
        PageKind::Bbb20 { .. } => "bbb-2.0",
        PageKind::ScaleliteProtected { .. } => "scalelite",
        PageKind::Generic => "page",
    }
}
