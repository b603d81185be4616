//! The video pipeline thread: takes captured frames, gives each its media time from the
//! [`MediaClock`], fills the constant-rate output slots and feeds the live encoder.
//!
//! It runs on its own OS thread (encoding is CPU-bound and libav blocks) and finishes when told the
//! end media time and every slot up to it is written. The loop is given its wall clock and its
//! output ([`FrameSink`]) so that the end rule is unit-tested without a display or an encoder.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::capture::{Frame, wall_now};
use crate::encode::{VideoSettings, VideoWriter};
use crate::error::{Phase, RecordError};
use crate::overlay::{FillPlan, Filled};
use crate::timeline::{ClockReader, MediaClock, MediaTime, SlotFiller, WallMicros};

/// Where the pipeline's output frames go: the live encoder ([`VideoWriter`]), or a test's list.
pub trait FrameSink {
    /// One output frame, BGR0 with `stride` bytes per row; `unchanged`: the same picture as the
    /// previous frame.
    fn write(&mut self, bgr0: &[u8], stride: usize, unchanged: bool) -> Result<(), RecordError>;
    /// Flushes the output; its path and frame count.
    fn finish(self) -> Result<(PathBuf, u64), RecordError>;
}

impl FrameSink for VideoWriter {
    fn write(&mut self, bgr0: &[u8], stride: usize, unchanged: bool) -> Result<(), RecordError> {
        VideoWriter::write(self, bgr0, stride, unchanged)
    }

    fn finish(self) -> Result<(PathBuf, u64), RecordError> {
        VideoWriter::finish(self)
    }
}

/// Shared between the controller and the pipeline thread.
#[derive(Debug, Default)]
pub struct PipelineControl {
    /// The end media time, once known (player ended or `--end` reached).
    pub end: Mutex<Option<f64>>,
    /// Stop without finishing (failure or interruption).
    pub abort: AtomicBool,
    /// Output frames written so far.
    pub frames: AtomicU64,
    /// Captured frames whose picture differed from the previous output frame.
    pub changed_frames: AtomicU64,
}

pub struct Pipeline {
    thread: Option<JoinHandle<Result<(PathBuf, u64), RecordError>>>,
    pub control: Arc<PipelineControl>,
    /// Resolves (its sender dropped) when the encoder thread ends, by a return or a panic.
    ended: Option<tokio::sync::oneshot::Receiver<()>>,
}

impl Pipeline {
    /// Start the encoder thread writing `path`; returns once the encoder is open. `fill`: the
    /// video areas each picture gets from the recording's videos (fast mode).
    /// `repeats_when_idle`: the source sends pictures only when they change (screencast), so
    /// once the media clock has moved on without a new picture, the last one still holds.
    pub fn start(
        frames: Receiver<Result<Frame, RecordError>>,
        repeats_when_idle: bool,
        clock: Arc<Mutex<MediaClock>>,
        start: f64,
        settings: VideoSettings,
        path: PathBuf,
        fill: Option<FillPlan>,
    ) -> Result<Pipeline, RecordError> {
        let control = Arc::new(PipelineControl::default());
        let ctl = Arc::clone(&control);
        let reader = clock.lock().unwrap_or_else(|e| e.into_inner()).reader();
        let (opened_tx, opened_rx) = std::sync::mpsc::channel();
        let (ended_tx, ended_rx) = tokio::sync::oneshot::channel::<()>();
        // libav's scaler is not Send: the encoder is created on the thread that uses it.
        let thread = std::thread::Builder::new()
            .name("encoder".into())
            .spawn(move || {
                // Dropped when this thread ends, however it ends: that is the signal.
                let _ended = ended_tx;
                let writer = match VideoWriter::create(&path, &settings)
                    .and_then(|w| Filled::new(w, fill.as_ref(), start, settings.fps))
                {
                    Ok(w) => {
                        let _ = opened_tx.send(Ok(()));
                        w
                    }
                    Err(e) => {
                        let _ = opened_tx.send(Err(e));
                        return Err(RecordError::transient(Phase::Encode, "encoder not opened"));
                    }
                };
                run(
                    frames,
                    repeats_when_idle,
                    (clock, reader),
                    start,
                    settings.fps,
                    writer,
                    &ctl,
                    &wall_now,
                )
            })
            .map_err(|e| RecordError::transient(Phase::Encode, format!("encoder thread: {e}")))?;
        let pipeline = Pipeline {
            thread: Some(thread),
            control,
            ended: Some(ended_rx),
        };
        match opened_rx.recv() {
            Ok(Ok(())) => Ok(pipeline),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(RecordError::transient(
                Phase::Encode,
                "the encoder thread died",
            )),
        }
    }

    pub fn set_end(&self, end: f64) {
        *self.control.end.lock().unwrap_or_else(|e| e.into_inner()) = Some(end);
    }

    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Waits, at most `within`, for the encoder thread to end; whether it did.
    pub async fn ended(&mut self, within: Duration) -> bool {
        let Some(ended) = self.ended.as_mut() else {
            return true;
        };
        // Resolves with an error, the sender dropped, once the thread is over.
        if tokio::time::timeout(within, ended).await.is_ok() {
            // Not to be polled again once it has resolved.
            self.ended = None;
            return true;
        }
        false
    }

    /// Wait for the pipeline to finish; returns the intermediate file and its frame count.
    pub fn join(mut self) -> Result<(PathBuf, u64), RecordError> {
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(RecordError::transient(
                Phase::Encode,
                "the encoder thread panicked",
            )),
            None => Err(RecordError::transient(
                Phase::Encode,
                "pipeline already joined",
            )),
        }
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.control.abort.store(true, Ordering::SeqCst);
            let _ = thread.join();
        }
    }
}

/// How long a damage-driven source may take to deliver a picture (swap to our queue): only
/// media time older than this is taken as "no change".
const IDLE_MARGIN_US: i64 = 500_000;

/// How long after its grab a frame may reach the encoder thread at worst, generously (a loaded
/// machine delays the capture thread by a few hundred milliseconds).
const IN_FLIGHT_US: i64 = 10_000_000;

/// The pipeline loop; `now` is the wall clock (the one x11grab and the page share).
#[allow(clippy::too_many_arguments)] // one call site, each argument a different concern
fn run<S: FrameSink>(
    frames: Receiver<Result<Frame, RecordError>>,
    repeats_when_idle: bool,
    (clock, reader): (Arc<Mutex<MediaClock>>, ClockReader),
    start: f64,
    fps: u32,
    mut writer: S,
    control: &PipelineControl,
    now: &dyn Fn() -> WallMicros,
) -> Result<(PathBuf, u64), RecordError> {
    let mut queue: VecDeque<Frame> = VecDeque::new();
    let mut filler: SlotFiller<Frame> = SlotFiller::new(fps, start);
    let mut last_written: Option<Arc<Vec<u8>>> = None;
    let failure: std::cell::RefCell<Option<RecordError>> = std::cell::RefCell::new(None);
    let mut emit = |_slot: u64, frame: &Frame, writer: &mut S| {
        if failure.borrow().is_some() {
            return;
        }
        let unchanged = last_written
            .as_ref()
            .is_some_and(|last| Arc::ptr_eq(last, &frame.data) || **last == *frame.data);
        if !unchanged {
            control.changed_frames.fetch_add(1, Ordering::Relaxed);
        }
        if let Err(e) = writer.write(&frame.data, frame.stride, unchanged) {
            *failure.borrow_mut() = Some(e);
        }
        last_written = Some(Arc::clone(&frame.data));
        control.frames.fetch_add(1, Ordering::Relaxed);
    };
    let mut source_closed = false;
    // The last picture given to the filler, with its media time.
    let mut held: Option<(f64, Frame)> = None;
    loop {
        if control.abort.load(Ordering::SeqCst) {
            return Err(RecordError::transient(
                Phase::Encode,
                "stopped before the end",
            ));
        }
        if !source_closed {
            match frames.recv_timeout(Duration::from_millis(50)) {
                Ok(Ok(frame)) => queue.push_back(frame),
                Ok(Err(e)) => return Err(e),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => source_closed = true,
            }
            // Take everything already waiting: the capture runs at the output rate.
            loop {
                match frames.try_recv() {
                    Ok(Ok(frame)) => queue.push_back(frame),
                    Ok(Err(e)) => return Err(e),
                    Err(std::sync::mpsc::TryRecvError::Empty) => break,
                    Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                        source_closed = true;
                        break;
                    }
                }
            }
        } else {
            std::thread::sleep(Duration::from_millis(20));
        }
        let end = *control.end.lock().unwrap_or_else(|e| e.into_inner());
        let total = end.map(|e| filler.slots_for(e));
        if let Some(total) = total {
            filler.set_total_slots(total);
        }
        let now = now();
        {
            let mut clock = clock.lock().unwrap_or_else(|e| e.into_inner());
            while let Some(front) = queue.front() {
                match clock.media_at(front.wall, now) {
                    MediaTime::Before => {
                        queue.pop_front();
                    }
                    MediaTime::Pending => break,
                    MediaTime::At(media) => {
                        let frame = queue.pop_front().expect("front exists");
                        if repeats_when_idle {
                            held = Some((media, frame.clone()));
                        }
                        filler.push(media, frame, |slot, f| emit(slot, f, &mut writer));
                    }
                }
            }
            if repeats_when_idle
                && queue.is_empty()
                && let Some((held_media, frame)) = &mut held
                && let MediaTime::At(media) = clock.media_at(now - IDLE_MARGIN_US, now)
                && media > *held_media
            {
                *held_media = media;
                filler.push(media, frame.clone(), |slot, f| emit(slot, f, &mut writer));
            }
            // Frames still in flight were grabbed a moment ago at most: what the clock knew
            // `IN_FLIGHT_US` before the oldest frame we hold is never asked again.
            let oldest = queue.front().map_or(now, |f| f.wall);
            clock.done_before(reader, oldest - IN_FLIGHT_US);
        }
        if let Some(e) = failure.borrow_mut().take() {
            return Err(e);
        }
        if let Some(total) = total {
            // Done once every slot is decided; if the capture stopped first, the remaining slots
            // hold the last picture.
            // A damage-driven source sends nothing more once the picture stops changing: it is
            // over when the media clock has reached the end and frames in flight had time to come.
            let clock_done = repeats_when_idle
                && end.is_some_and(|end| {
                    clock
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .latest()
                        .is_some_and(|l| l.media >= end - 1e-6 && now - l.wall > IDLE_MARGIN_US)
                });
            let capture_over = (source_closed || clock_done) && queue.is_empty();
            if filler.emitted() >= total || capture_over && filler.has_frame() {
                filler.finish(total, |slot, f| emit(slot, f, &mut writer));
                if let Some(e) = failure.borrow_mut().take() {
                    return Err(e);
                }
                return writer.finish();
            }
            if source_closed && !filler.has_frame() {
                return Err(RecordError::transient(
                    Phase::Capture,
                    "the capture ended before any frame of the playback was grabbed",
                ));
            }
        } else if source_closed {
            return Err(RecordError::transient(
                Phase::Capture,
                "the capture ended before the playback did",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::ClockSample;
    use std::sync::mpsc::{SyncSender, sync_channel};

    /// Records the first byte of every frame written (the tests paint each picture one value).
    #[derive(Default, Clone)]
    struct Written(Arc<Mutex<Vec<u8>>>);

    impl FrameSink for Written {
        fn write(&mut self, bgr0: &[u8], _: usize, _: bool) -> Result<(), RecordError> {
            self.0.lock().unwrap().push(bgr0[0]);
            Ok(())
        }
        fn finish(self) -> Result<(PathBuf, u64), RecordError> {
            let n = self.0.lock().unwrap().len() as u64;
            Ok((PathBuf::from("written"), n))
        }
    }

    const W0: WallMicros = 1_700_000_000_000_000;

    fn frame(wall: WallMicros, paint: u8) -> Frame {
        Frame {
            wall,
            data: Arc::new(vec![paint; 4]),
            stride: 4,
        }
    }

    /// A clock that played media 0..=`seconds` at normal speed from `W0`, reported every 100 ms.
    fn played(seconds: u32) -> Arc<Mutex<MediaClock>> {
        let mut clock = MediaClock::new(0, 100_000);
        for k in 0..=seconds * 10 {
            clock.push(ClockSample {
                wall: W0 + i64::from(k) * 100_000,
                media: f64::from(k) / 10.0,
            });
        }
        Arc::new(Mutex::new(clock))
    }

    /// Runs the pipeline at 10 fps from media 0 with `end`, after `feed` sent its frames.
    fn run_with(
        repeats_when_idle: bool,
        clock: Arc<Mutex<MediaClock>>,
        end: Option<f64>,
        feed: impl FnOnce(&SyncSender<Result<Frame, RecordError>>),
        close_source: bool,
    ) -> (Result<(PathBuf, u64), RecordError>, Vec<u8>) {
        let (tx, rx) = sync_channel(1000);
        feed(&tx);
        let keep = (!close_source).then_some(tx);
        let control = PipelineControl::default();
        *control.end.lock().unwrap() = end;
        let written = Written::default();
        let reader = clock.lock().unwrap().reader();
        // The wall clock of the test: 100 ms later at every pass of the loop, from the start of
        // the playback on. A run still going 30 s of that clock after the start is aborted, so a
        // broken end rule fails the test instead of hanging it.
        let wall = std::sync::atomic::AtomicI64::new(W0);
        let now = || {
            let t = wall.fetch_add(100_000, Ordering::Relaxed);
            if t > W0 + 30_000_000 {
                control.abort.store(true, Ordering::SeqCst);
            }
            t
        };
        let result = run(
            rx,
            repeats_when_idle,
            (clock, reader),
            0.0,
            10,
            written.clone(),
            &control,
            &now,
        );
        drop(keep);
        let frames = written.0.lock().unwrap().clone();
        (result, frames)
    }

    #[test]
    fn with_the_end_known_every_slot_up_to_it_is_written_from_the_frame_shown_then() {
        // A frame every 50 ms for 2 s, painted with the half second it shows.
        let (result, frames) = run_with(
            false,
            played(2),
            Some(2.0),
            |tx| {
                for k in 0..40 {
                    tx.send(Ok(frame(W0 + k * 50_000, (k / 10) as u8))).unwrap();
                }
            },
            false,
        );
        assert_eq!(result.unwrap().1, 20);
        let expected: Vec<u8> = (0..20).map(|slot| (slot / 5) as u8).collect();
        assert_eq!(frames, expected);
    }

    #[test]
    fn a_picture_source_that_falls_silent_ends_when_the_clock_reaches_the_end() {
        // A screencast sends a picture only when it changes: one at the start, then nothing,
        // while the clock plays on to the end. The source stays open.
        let (result, frames) = run_with(
            true,
            played(2),
            Some(2.0),
            |tx| tx.send(Ok(frame(W0, 7))).unwrap(),
            false,
        );
        assert_eq!(result.unwrap().1, 20);
        assert_eq!(frames, vec![7; 20], "the last picture holds to the end");
    }

    #[test]
    fn a_capture_that_stops_early_holds_its_last_picture_to_the_end() {
        let (result, frames) = run_with(
            false,
            played(2),
            Some(2.0),
            |tx| {
                for k in 0..10 {
                    tx.send(Ok(frame(W0 + k * 50_000, 1))).unwrap();
                }
            },
            true,
        );
        assert_eq!(result.unwrap().1, 20);
        assert_eq!(frames, vec![1; 20]);
    }

    #[test]
    fn a_single_picture_then_the_end_of_the_source_fills_every_slot() {
        // A stepped capture of a recording with one slide sends one picture and closes.
        let (result, frames) = run_with(
            false,
            played(2),
            Some(2.0),
            |tx| tx.send(Ok(frame(W0, 5))).unwrap(),
            true,
        );
        assert_eq!(result.unwrap().1, 20);
        assert_eq!(frames, vec![5; 20]);
    }

    #[test]
    fn a_capture_that_ends_before_the_playback_or_before_any_frame_is_an_error() {
        let (result, frames) = run_with(false, played(2), None, |_| {}, true);
        let e = result.unwrap_err();
        assert_eq!(e.phase, Phase::Capture);
        assert!(e.to_string().contains("before the playback did"), "{e}");
        assert!(frames.is_empty());

        let (result, _) = run_with(false, played(2), Some(2.0), |_| {}, true);
        let e = result.unwrap_err();
        assert!(e.to_string().contains("before any frame"), "{e}");
    }

    #[test]
    fn frames_from_before_the_playback_started_are_dropped() {
        let (result, frames) = run_with(
            false,
            played(1),
            Some(1.0),
            |tx| {
                tx.send(Ok(frame(W0 - 500_000, 9))).unwrap();
                for k in 0..20 {
                    tx.send(Ok(frame(W0 + k * 50_000, 2))).unwrap();
                }
            },
            false,
        );
        assert_eq!(result.unwrap().1, 10);
        assert!(!frames.contains(&9), "{frames:?}");
    }

    /// The real encoder thread: its end is awaited, not polled, and a thread still at work is
    /// not taken as ended.
    #[tokio::test]
    async fn the_end_of_the_encoder_thread_is_awaited() {
        let dir = tempfile::tempdir().unwrap();
        let settings = |fps| VideoSettings {
            width: 64,
            height: 64,
            fps,
            container: crate::encode::Container::Mp4,
            crf: None,
            preset: None,
        };
        let picture = |wall, paint| Frame {
            wall,
            data: Arc::new(vec![paint; 64 * 64 * 4]),
            stride: 64 * 4,
        };
        // The real wall clock this time: the pipeline forgets clock reports older than its
        // frames in flight, measured on it.
        let w0 = wall_now();
        let mut clock = MediaClock::new(0, 100_000);
        for k in 0..=20 {
            clock.push(ClockSample {
                wall: w0 + k * 100_000,
                media: k as f64 / 10.0,
            });
        }
        let clock = Arc::new(Mutex::new(clock));
        let (tx, rx) = sync_channel(100);
        let mut pipeline = Pipeline::start(
            rx,
            false,
            Arc::clone(&clock),
            0.0,
            settings(10),
            dir.path().join("video.mkv"),
            None,
        )
        .unwrap();
        // The end is known before the first frame, as in a recording.
        pipeline.set_end(0.5);
        for k in 0..10 {
            tx.send(Ok(picture(w0 + k * 100_000, k as u8 * 20)))
                .unwrap();
        }
        assert!(pipeline.ended(Duration::from_secs(30)).await);
        let (path, frames) = pipeline.join().unwrap();
        assert_eq!(frames, 5);
        assert!(std::fs::metadata(path).unwrap().len() > 0);
        drop(tx);

        // No end known and the source open: the thread works on.
        let (tx, rx) = sync_channel(100);
        let mut pipeline = Pipeline::start(
            rx,
            false,
            clock,
            0.0,
            settings(10),
            dir.path().join("open.mkv"),
            None,
        )
        .unwrap();
        assert!(!pipeline.ended(Duration::from_millis(300)).await);
        // Once its source closes before any end is known, it ends (with an error) and is seen.
        drop(tx);
        assert!(pipeline.ended(Duration::from_secs(30)).await);
        assert!(pipeline.join().is_err());
    }
}
