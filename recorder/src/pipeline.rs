//! The video pipeline thread: takes captured frames, gives each its media time from the
//! [`MediaClock`], fills the constant-rate output slots and feeds the live encoder.
//!
//! It runs on its own OS thread (encoding is CPU-bound and libav blocks) and finishes when told the
//! end media time and every slot up to it is written.

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
use crate::timeline::{ClockReader, MediaClock, MediaTime, SlotFiller};

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
}

impl Pipeline {
    /// Start the encoder thread writing `path`; returns once the encoder is open.
    /// `repeats_when_idle`: the source sends pictures only when they change (screencast), so
    /// once the media clock has moved on without a new picture, the last one still holds.
    pub fn start(
        frames: Receiver<Result<Frame, RecordError>>,
        repeats_when_idle: bool,
        clock: Arc<Mutex<MediaClock>>,
        start: f64,
        settings: VideoSettings,
        path: PathBuf,
    ) -> Result<Pipeline, RecordError> {
        let control = Arc::new(PipelineControl::default());
        let ctl = Arc::clone(&control);
        let reader = clock.lock().unwrap_or_else(|e| e.into_inner()).reader();
        let (opened_tx, opened_rx) = std::sync::mpsc::channel();
        // libav's scaler is not Send: the encoder is created on the thread that uses it.
        let thread = std::thread::Builder::new()
            .name("encoder".into())
            .spawn(move || {
                let writer = match VideoWriter::create(&path, &settings) {
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
                )
            })
            .map_err(|e| RecordError::transient(Phase::Encode, format!("encoder thread: {e}")))?;
        let pipeline = Pipeline {
            thread: Some(thread),
            control,
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

fn run(
    frames: Receiver<Result<Frame, RecordError>>,
    repeats_when_idle: bool,
    (clock, reader): (Arc<Mutex<MediaClock>>, ClockReader),
    start: f64,
    fps: u32,
    mut writer: VideoWriter,
    control: &PipelineControl,
) -> Result<(PathBuf, u64), RecordError> {
    let mut queue: VecDeque<Frame> = VecDeque::new();
    let mut filler: SlotFiller<Frame> = SlotFiller::new(fps, start);
    let mut last_written: Option<Arc<Vec<u8>>> = None;
    let failure: std::cell::RefCell<Option<RecordError>> = std::cell::RefCell::new(None);
    let mut emit = |_slot: u64, frame: &Frame, writer: &mut VideoWriter| {
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
        let now = wall_now();
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
            if filler.emitted() >= total || capture_over && filler.emitted() > 0 {
                filler.finish(total, |slot, f| emit(slot, f, &mut writer));
                if let Some(e) = failure.borrow_mut().take() {
                    return Err(e);
                }
                return writer.finish();
            }
            if source_closed && filler.emitted() == 0 {
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
