//! One recording from start to finish, as a sequence of steps: validate the request, start the
//! display, the sound server and the browser; open the tab and load and confirm the player
//! (`page`); plan the duration and the sound (`sound`); capture on the media clock (`play`);
//! cut the sound, write and place the file; and tear everything down whatever happens.
//!
//! The player contract (selectors, events, autoplay rule, end of playback) is documented in
//! bbb-playback.md; each rule used here cites it.

mod fast;
mod page;
mod play;
mod sound;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bbb_common::recorder_protocol::{ContactSheet, RecordingMode};
use tokio::sync::watch;
use url::Url;

use crate::browser::{Chromium, LaunchOptions, find_browser};
use crate::contact_sheet;
use crate::encode::{self, AudioCut, Container, MuxReport};
use crate::error::{Context as _, Phase, RecordError};
use crate::fetch::fetch_metadata;
use crate::playback::{self, PageKind, SlideImage};
use crate::pulse;
use crate::render_watch::RenderWatch;
use crate::requests;
use sound::SoundPlan;

/// Delay between the player's redraw and the pixels a grab sees (bbb-playback.md, "Real-time
/// capture on the media clock": 25-45 ms measured); frames are stamped with media time at
/// `grab - LATENCY`.
pub const CAPTURE_LATENCY_US: i64 = 35_000;

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
    /// Step the paused player from change to change instead of playing it (see `fast`); a
    /// recording it cannot reproduce exactly is captured in real time.
    pub fast: bool,
    pub timeout: Option<Duration>,
    pub browser: Option<PathBuf>,
    /// Record a playback whose picture is broken (missing files, error screens) anyway, listing
    /// each defect in [`Outcome::degraded`].
    pub accept_broken: bool,
    /// Hosts a BBB playback may load from besides its own (host names, any port).
    pub allow_hosts: Vec<String>,
    /// Also record `file:` URLs (a local page the user trusts).
    pub allow_file: bool,
    /// Make a contact sheet of the output here once it is placed (a JPEG; see
    /// [`crate::contact_sheet`]). Its failure is a warning, never the recording's.
    pub contact_sheet: Option<PathBuf>,
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
    /// The contact sheet made for [`RecordRequest::contact_sheet`], if it was asked for and made.
    pub sheet: Option<ContactSheet>,
    /// How the picture was captured.
    pub mode: RecordingMode,
    /// Fast mode was asked for, and this is why the recording was captured in real time.
    pub fast_fallback: Option<String>,
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
    let prepared = Prepared {
        url,
        kind,
        browser_binary,
        container,
        http,
        work: work.path().to_owned(),
    };
    // Fast mode may find, only once the player is readied, that it cannot reproduce this
    // recording: it then starts over in real time in a new browser, keeping only what the first
    // attempt downloaded whole (the media) and its start announcement.
    let mut fast = req.fast;
    let mut fast_fallback = None;
    let mut carried = Carried::default();
    for number in 1.. {
        match attempt(
            &req,
            fast,
            number,
            &prepared,
            carried,
            &report,
            cancel.clone(),
        )
        .await?
        {
            Attempt::Done(mut outcome) => {
                if outcome.fast_fallback.is_none() {
                    outcome.fast_fallback = fast_fallback;
                }
                return Ok(outcome);
            }
            Attempt::Unreproducible { why, carry } => {
                report(Event::Warning(format!(
                    "fast mode cannot reproduce this recording ({why}): recording it in real time"
                )));
                fast_fallback = Some(why);
                fast = false;
                carried = carry;
            }
        }
    }
    unreachable!("the attempts end with the recording")
}

/// What every attempt at one recording shares, checked once.
struct Prepared {
    url: Url,
    kind: PageKind,
    browser_binary: PathBuf,
    container: Container,
    http: reqwest::Client,
    /// The recording's work directory (removed by `record` on every path out); each attempt
    /// keeps its own files in a directory of its own inside it.
    work: PathBuf,
}

/// What a given-up attempt hands to the next one.
#[derive(Debug, Default)]
struct Carried {
    /// The recording's media, downloaded whole into the work directory.
    media: Option<PathBuf>,
    /// `Event::Started` was reported: the recording's span does not change between attempts.
    started: bool,
}

/// How one attempt ended.
enum Attempt {
    Done(Outcome),
    /// Fast mode found what it does not reproduce (why): try again in real time, with what this
    /// attempt leaves that the next can use.
    Unreproducible {
        why: String,
        carry: Carried,
    },
}

/// Attempt `number` at `req`, from the display to the placed output; `fast`: in fast mode.
#[allow(clippy::too_many_arguments)] // one call site, each argument a different concern
async fn attempt(
    req: &RecordRequest,
    fast: bool,
    number: u32,
    prepared: &Prepared,
    carried: Carried,
    report: &Reporter,
    cancel: watch::Receiver<bool>,
) -> Result<Attempt, RecordError> {
    let Prepared {
        url,
        kind,
        browser_binary,
        container,
        http,
        work: shared_work,
    } = prepared;
    // This attempt's own files (browser profile, intermediate video, sound), gone with it; the
    // downloads of the recording's files stay in the shared directory for a next attempt.
    let work = tempfile::Builder::new()
        .prefix(&format!("attempt-{number}-"))
        .tempdir_in(shared_work)
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
        binary: browser_binary.clone(),
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
        req,
        fast,
        report,
        cancel,
        chromium: &mut chromium,
        display: Arc::new(Mutex::new(display)),
        http,
        work: work.path(),
        downloads: shared_work,
        container: *container,
        started: Instant::now(),
        announced: carried.started,
        default_timeout: None,
        media_download: None,
        media_path: carried.media,
        pulse: pulse.as_mut(),
        sound_capture: None,
        requests: Default::default(),
        render: None,
        slides: Vec::new(),
    }
    .run(url.clone(), kind.clone())
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
    /// This attempt steps the player (fast mode) when it can.
    fast: bool,
    report: &'a Reporter,
    cancel: watch::Receiver<bool>,
    chromium: &'a mut Chromium,
    display: Arc<Mutex<xvfb::Display>>,
    http: &'a reqwest::Client,
    /// This attempt's own files.
    work: &'a Path,
    /// Where the recording's files are downloaded whole (kept for a next attempt).
    downloads: &'a Path,
    container: Container,
    started: Instant,
    /// `Event::Started` was reported (by this or an earlier attempt).
    announced: bool,
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
    /// The slides of a BBB recording (`shapes.svg`), once the player is readied: their first
    /// showings are the slide changes a contact sheet shows.
    slides: Vec<SlideImage>,
}

/// What the loaded page turned out to be.
struct Player {
    kind: PageKind,
    /// Recording files base URL (BBB only).
    base: Option<Url>,
    duration: Option<f64>,
}

impl Session<'_> {
    async fn run(mut self, url: Url, kind: PageKind) -> Result<Attempt, RecordError> {
        let mut tab = self.open_tab(&url, &kind).await?;
        let clock = play::media_clock(self.req.capture, self.req.fps);
        let start = self.req.start.unwrap_or(0.0).max(0.0);
        self.start_sound_capture(&clock, start)?;
        let player = self.load(&tab.page, url, kind).await?;
        self.check_viewport(&tab.page).await?;

        let (duration, sound) = self.plan_media(&tab.page, &player).await?;
        // `--duration` of a BBB playback bounds the span; of another page it is its length.
        let bbb_duration = self.req.duration.filter(|_| player.kind.is_bbb());
        let end = recording_end(start, duration, self.req.end, bbb_duration)?;
        self.default_timeout = Some(Duration::from_secs_f64((end - start) * 1.5 + 300.0));
        if !self.announced {
            (self.report)(Event::Started {
                kind: kind_name(&player.kind).into(),
                duration: end - start,
            });
            self.announced = true;
        }
        if sound != SoundPlan::Pulse {
            self.sound_capture = None;
        }

        let mut mode = RecordingMode::RealTime;
        let mut fast_fallback = None;
        let plan = if self.fast {
            match self
                .fast_plan(&tab.page, &player, sound, (start, end))
                .await?
            {
                Ok(plan) => Some(plan),
                Err(why) => {
                    (self.report)(Event::Warning(format!(
                        "fast mode cannot reproduce this recording ({why}): recording it in real time"
                    )));
                    fast_fallback = Some(why);
                    None
                }
            }
        } else {
            None
        };
        let captured = match plan {
            Some(plan) => {
                match self
                    .capture_stepped(&mut tab, &player, plan, (start, end))
                    .await?
                {
                    fast::Stepped::Captured(captured) => {
                        mode = RecordingMode::Fast;
                        captured
                    }
                    fast::Stepped::Unreproducible(why) => {
                        return Ok(Attempt::Unreproducible {
                            why,
                            carry: Carried {
                                media: self.media_path.take(),
                                started: self.announced,
                            },
                        });
                    }
                }
            }
            None => self.capture(&mut tab, &player, &clock, start, end).await?,
        };
        let end = captured.end;
        // A defect seen in the last moments still counts (the capture is stopped by now).
        if let Some(render) = self.render.as_mut() {
            render.check(end)?;
        }
        let _ = tab
            .page
            .evaluate_expression("(() => { const v = document.querySelector('#webcams video, #video, video, audio'); if (v) v.pause(); })()")
            .await;

        let audio = self.finish_sound(sound, start, end).await?;
        let report = self.write_output(captured.video, audio).await?;
        let sheet = self.contact_sheet(start, end).await;
        Ok(Attempt::Done(Outcome {
            output: self.req.output.clone(),
            duration: end - start,
            frames: captured.frames,
            changed_frames: captured.changed_frames,
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
            sheet,
            mode,
            fast_fallback,
        }))
    }

    /// The contact sheet of the placed output, when one was asked for, with a tile after each of
    /// the first slide changes in the recorded span `start..end`. The recording is done by now:
    /// a sheet that cannot be made is a warning, and the output stays.
    async fn contact_sheet(&self, start: f64, end: f64) -> Option<ContactSheet> {
        let sheet = self.req.contact_sheet.clone()?;
        let changes = playback::slide_changes(&self.slides, start, end);
        let output = self.req.output.clone();
        let made = tokio::task::spawn_blocking(move || {
            contact_sheet::make(&output, &changes, &sheet)
                .map_err(|e| format!("no contact sheet: {e}"))
        })
        .await
        .unwrap_or_else(|e| Err(format!("no contact sheet: {e}")));
        match made {
            Ok(sheet) => Some(sheet),
            Err(warning) => {
                (self.report)(Event::Warning(warning));
                None
            }
        }
    }

    /// Muxes the picture and the sound into a temporary file beside the output and moves it into
    /// place: the output is either whole or absent.
    async fn write_output(
        &self,
        video: PathBuf,
        audio: Option<AudioCut>,
    ) -> Result<MuxReport, RecordError> {
        let tmp = encode::temporary_output_path(&self.req.output);
        let container = self.container;
        let out = tmp.clone();
        let mux = tokio::task::spawn_blocking(move || {
            encode::mux(&video, audio.as_ref(), container, &out)
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
        Ok(report)
    }
}

/// The media time the recording ends at: the playback's `duration`, cut by `--end` and by
/// `start + bbb_duration` (`--duration` of a BBB playback); it must lie after `start`.
fn recording_end(
    start: f64,
    duration: f64,
    end: Option<f64>,
    bbb_duration: Option<f64>,
) -> Result<f64, RecordError> {
    let mut until = duration;
    if let Some(e) = end {
        until = until.min(e);
    }
    if let Some(d) = bbb_duration {
        until = until.min(start + d);
    }
    if until <= start {
        return Err(RecordError::permanent(
            Phase::Setup,
            format!("nothing to record: start {start:.3} s is not before end {until:.3} s"),
        ));
    }
    Ok(until)
}

fn kind_name(kind: &PageKind) -> &'static str {
    match kind {
        PageKind::Bbb23 { .. } => "bbb-2.3",
        PageKind::Bbb20 { .. } => "bbb-2.0",
        PageKind::ScaleliteProtected { .. } => "scalelite",
        PageKind::Generic => "page",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_end_is_the_earliest_of_the_duration_the_end_time_and_start_plus_duration() {
        assert_eq!(recording_end(0.0, 60.0, None, None).unwrap(), 60.0);
        assert_eq!(recording_end(5.0, 60.0, Some(20.0), None).unwrap(), 20.0);
        assert_eq!(
            recording_end(5.0, 60.0, Some(50.0), Some(10.0)).unwrap(),
            15.0
        );
        assert_eq!(
            recording_end(5.0, 12.0, Some(50.0), Some(10.0)).unwrap(),
            12.0
        );
    }

    #[test]
    fn nothing_to_record_is_a_permanent_setup_error_naming_both_times() {
        for (start, duration, end) in [(10.0, 60.0, Some(10.0)), (70.0, 60.0, None)] {
            let e = recording_end(start, duration, end, None).unwrap_err();
            assert_eq!(e.class, crate::error::Class::Permanent, "{e}");
            assert_eq!(e.phase, Phase::Setup);
            let text = e.to_string();
            assert!(
                text.contains("nothing to record") && text.contains(&format!("{start:.3}")),
                "{text}"
            );
        }
    }
}
