//! The stepped frame source of fast mode. The 2.3 player redraws on the time event its own
//! timer dispatches (`bbbplaybacktimeupdate`, bbb-playback.md "Faster than real time"); with the
//! player paused, the recorder dispatches that event itself for each output slot at which the
//! picture can change (the slots come from the recording's files, see `playback::changes`),
//! waits until that state is painted, and takes one picture of the page with
//! `Page.captureScreenshot`, which composites a fresh frame of the page as it stands, so no
//! capture latency enters the picture.
//!
//! Frames are stamped with their media time (in microseconds) instead of a wall instant, and the
//! pipeline reads them through [`MediaClock::stepped`](crate::timeline::MediaClock::stepped), the
//! identity. The pipeline fills each slot with the nearest frame; between two steps the picture
//! holds, so before a new picture the previous one is sent again for the slot just before it
//! (shared, not copied), and every slot before a change keeps the old picture.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use chromiumoxide::Page;
use chromiumoxide::cdp::browser_protocol::page::{
    CaptureScreenshotFormat, CaptureScreenshotParams,
};
use ffmpeg_next as ffmpeg;
use tokio::sync::{oneshot, watch};

use super::{CHANNEL_FRAMES, Frame, FrameSource};
use crate::error::{Phase, RecordError};
use crate::picture::PictureDecoder;
use crate::timeline::WallMicros;

/// One output slot at which the picture may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// Slot index from the recording's start (media time `start + slot / fps`).
    pub slot: u64,
    /// Take pictures until two in a row are the same before keeping one: a new slide (an image
    /// decoded on its first showing) or a layout switch may take more than one frame to draw.
    pub settle: bool,
}

/// What the stepped source does.
#[derive(Clone)]
pub struct StepPlan {
    /// The media time of slot 0.
    pub start: f64,
    pub fps: u32,
    /// Sorted by slot, distinct, the first at slot 0.
    pub steps: Vec<Step>,
    /// Dispatch each time twice: the tldraw v2 whiteboard (BBB 3.0) draws a slide's shapes only
    /// on the time update after the one that mounted it (bbb-playback.md, "Quirks").
    pub dispatch_twice: bool,
    /// A script evaluated after each step (where the page shows its videos), and what to do
    /// with its answer, given the step's slot, before the step's picture is sent; an error (why)
    /// means this recording cannot be stepped.
    pub reading: Option<(String, StepReader)>,
    pub width: u32,
    pub height: u32,
}

/// Takes the answer of [`StepPlan::reading`] at a step's slot.
pub type StepReader = Arc<dyn Fn(u64, serde_json::Value) -> Result<(), String> + Send + Sync>;

/// How a stepped capture ended, short of its frames.
#[derive(Debug)]
pub enum StepEnd {
    /// Every step was captured.
    Done,
    /// The page did something fast mode does not reproduce: record in real time, saying why.
    Unreproducible(String),
    Failed(RecordError),
}

/// What the recorder watches while the source steps.
pub struct Stepping {
    /// The media time of the last step captured.
    pub reached: watch::Receiver<f64>,
    /// Resolves once the source stops stepping.
    pub end: oneshot::Receiver<StepEnd>,
}

/// At most this many pictures for a step that settles before it is taken as it stands.
const SETTLE_TRIES: usize = 10;

impl FrameSource {
    /// Step `page` (a readied, paused 2.3 player) through `plan`.
    pub fn stepped(page: &Page, plan: StepPlan) -> Result<(FrameSource, Stepping), RecordError> {
        crate::encode::init()?;
        let (png_tx, png_rx) = sync_channel::<Shot>(CHANNEL_FRAMES);
        let (tx, rx) = sync_channel(CHANNEL_FRAMES);
        let (reached_tx, reached) = watch::channel(plan.start);
        let (end_tx, end) = oneshot::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let page = page.clone();
        let (width, height, start, fps) = (plan.width, plan.height, plan.start, plan.fps);
        let task = tokio::spawn(async move {
            let outcome = step_through(&page, &plan, &png_tx, &reached_tx).await;
            // The decoder ends once the last picture is through; the frames channel then closes.
            drop(png_tx);
            let _ = end_tx.send(outcome);
        });
        let stop_flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("stepped".into())
            .spawn(move || decode_steps(png_rx, (start, fps), width, height, &tx, &stop_flag))
            .map_err(|e| RecordError::transient(Phase::Capture, format!("capture thread: {e}")))?;
        Ok((
            FrameSource {
                frames: rx,
                stop,
                thread: Some(thread),
                task: Some(task),
                repeats_when_idle: false,
            },
            Stepping { reached, end },
        ))
    }
}

/// One picture of one step.
struct Shot {
    slot: u64,
    png: Vec<u8>,
}

/// Drives the page through every step and hands over one picture per step.
async fn step_through(
    page: &Page,
    plan: &StepPlan,
    shots: &SyncSender<Shot>,
    reached: &watch::Sender<f64>,
) -> StepEnd {
    for step in &plan.steps {
        let media = plan.start + step.slot as f64 / f64::from(plan.fps);
        let reading = plan.reading.as_ref();
        let answer = match page
            .evaluate_expression(step_js(
                media,
                plan.dispatch_twice,
                reading.map(|r| r.0.as_str()),
            ))
            .await
        {
            Ok(v) => v.into_value::<serde_json::Value>().unwrap_or_default(),
            Err(e) => {
                return StepEnd::Failed(RecordError::transient(
                    Phase::Capture,
                    format!("stepping the player to {media:.3} s: {e}"),
                ));
            }
        };
        if let Some((_, read)) = reading
            && let Err(why) = read(step.slot, answer)
        {
            return StepEnd::Unreproducible(format!("at {media:.3} s, {why}"));
        }
        let mut png = match screenshot(page).await {
            Ok(png) => png,
            Err(e) => return StepEnd::Failed(e.at(media)),
        };
        if step.settle {
            for _ in 1..SETTLE_TRIES {
                if let Err(e) = page.evaluate_expression(FRAMES_JS).await {
                    return StepEnd::Failed(RecordError::transient(
                        Phase::Capture,
                        format!("waiting for the picture at {media:.3} s: {e}"),
                    ));
                }
                let again = match screenshot(page).await {
                    Ok(png) => png,
                    Err(e) => return StepEnd::Failed(e.at(media)),
                };
                if again == png {
                    break;
                }
                png = again;
            }
        }
        // A send fails only once the decoder is gone (it failed, or the capture was stopped).
        let sent = {
            let shots = shots.clone();
            let shot = Shot {
                slot: step.slot,
                png,
            };
            tokio::task::spawn_blocking(move || shots.send(shot).is_ok())
                .await
                .unwrap_or(false)
        };
        if !sent {
            return StepEnd::Done;
        }
        let _ = reached.send(media);
    }
    StepEnd::Done
}

/// Two animation frames: the second begins once the first, with everything the time event
/// changed, has been painted (a player that renders in a task of its own after the event, as
/// React does, has drawn by then too).
const FRAMES_JS: &str =
    "new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(true))))";

/// The script of one step: the player's time event at `media` (twice when asked), two animation
/// frames, then the answer of `reading`.
fn step_js(media: f64, twice: bool, reading: Option<&str>) -> String {
    let fire = format!(
        "document.dispatchEvent(new CustomEvent('bbbplaybacktimeupdate', {{ detail: {{ time: {media} }} }}));"
    );
    let frame = "await new Promise(r => requestAnimationFrame(() => r()));";
    let second = if twice {
        format!("{frame} {fire}")
    } else {
        String::new()
    };
    format!(
        "(async () => {{ {fire} {second} {frame} {frame} return {}; }})()",
        reading.unwrap_or("null")
    )
}

/// A screenshot failure, placed on the media timeline by the caller.
struct ShotError(String);

impl ShotError {
    fn at(self, media: f64) -> RecordError {
        RecordError::transient(
            Phase::Capture,
            format!("taking the picture at {media:.3} s: {}", self.0),
        )
    }
}

/// A picture of the page as it stands, PNG (lossless: the same pixels the page has).
async fn screenshot(page: &Page) -> Result<Vec<u8>, ShotError> {
    use base64::Engine as _;
    let shot = page
        .execute(
            CaptureScreenshotParams::builder()
                .format(CaptureScreenshotFormat::Png)
                .optimize_for_speed(true)
                .build(),
        )
        .await
        .map_err(|e| ShotError(e.to_string()))?;
    let data: &str = shot.result.data.as_ref();
    base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|_| ShotError("the screenshot is not valid base64".into()))
}

/// The media time of `slot` as a frame stamp (microseconds; see the module doc).
pub fn slot_stamp(start: f64, fps: u32, slot: u64) -> WallMicros {
    (start * 1e6).round() as WallMicros + (slot as f64 * 1e6 / f64::from(fps)).round() as WallMicros
}

/// Decodes the steps' pictures and sends them as frames on the media clock, the held picture
/// again for the slot before each new one.
fn decode_steps(
    shots: Receiver<Shot>,
    (start, fps): (f64, u32),
    width: u32,
    height: u32,
    tx: &SyncSender<Result<Frame, RecordError>>,
    stop: &AtomicBool,
) {
    let fail = |why: String| {
        let _ = tx.send(Err(RecordError::transient(Phase::Capture, why)));
    };
    let mut decoder = match PictureDecoder::new(ffmpeg::codec::Id::PNG, width, height) {
        Ok(d) => d,
        Err(why) => return fail(why),
    };
    let stride = decoder.stride();
    let mut held: Option<(u64, Arc<Vec<u8>>)> = None;
    while !stop.load(Ordering::SeqCst) {
        let shot = match shots.recv_timeout(std::time::Duration::from_millis(50)) {
            Ok(shot) => shot,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
        };
        let media = start + shot.slot as f64 / f64::from(fps);
        let data = match decoder.decode(&shot.png) {
            Ok(Some(data)) => data,
            Ok(None) => return fail(format!("the picture at {media:.3} s did not decode")),
            Err(why) => return fail(format!("the picture at {media:.3} s: {why}")),
        };
        if data.len() != stride * height as usize {
            return fail(format!(
                "the picture at {media:.3} s is not {width}x{height}"
            ));
        }
        let send = |slot: u64, data: &Arc<Vec<u8>>| {
            tx.send(Ok(Frame {
                wall: slot_stamp(start, fps, slot),
                data: Arc::clone(data),
                stride,
            }))
            .is_ok()
        };
        let data = match &held {
            // A step whose picture did not change shares the held one.
            Some((_, same)) if same[..] == data[..] => Arc::clone(same),
            Some((slot, previous)) => {
                if *slot + 1 < shot.slot && !send(shot.slot - 1, previous) {
                    return;
                }
                Arc::new(data)
            }
            None => Arc::new(data),
        };
        if !send(shot.slot, &data) {
            return;
        }
        held = Some((shot.slot, data));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_stamps_are_the_slot_media_times_in_microseconds() {
        assert_eq!(slot_stamp(0.0, 30, 0), 0);
        assert_eq!(slot_stamp(0.0, 30, 1), 33_333);
        assert_eq!(slot_stamp(5.0, 30, 30), 6_000_000);
        assert_eq!(slot_stamp(2.5, 25, 3), 2_620_000);
    }

    #[test]
    fn a_step_dispatches_the_players_time_event_and_answers_the_reading() {
        let js = step_js(4.2, false, Some("document.title"));
        assert_eq!(js.matches("bbbplaybacktimeupdate").count(), 1, "{js}");
        assert!(js.contains("time: 4.2 "), "{js}");
        assert!(js.ends_with("return document.title; })()"), "{js}");
        let twice = step_js(0.0, true, None);
        assert_eq!(twice.matches("bbbplaybacktimeupdate").count(), 2, "{twice}");
        assert!(twice.contains("return null;"), "{twice}");
    }
}
