//! Frame sources: where captured pictures come from, each stamped with the wall-clock instant it
//! was grabbed. The default grabs the Xvfb display with libavdevice's x11grab (steady rate, exact
//! timestamps, cheap for Chromium; see bbb-playback.md "Capture facts").
//!
//! A source runs on its own OS thread (libav calls block) and hands frames over a bounded channel,
//! so a slow encoder applies back-pressure instead of growing memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use ffmpeg_next as ffmpeg;

use crate::error::{Phase, RecordError};
use crate::timeline::WallMicros;

/// One captured picture, BGR0 (4 bytes per pixel).
#[derive(Debug, Clone)]
pub struct Frame {
    pub wall: WallMicros,
    pub data: Arc<Vec<u8>>,
    pub stride: usize,
}

/// A running capture: frames arrive on `frames`; `stop()` ends it.
pub struct FrameSource {
    pub frames: Receiver<Result<Frame, RecordError>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Frames buffered between capture and encoder (about 1.5 s at 30 fps).
const CHANNEL_FRAMES: usize = 45;

impl FrameSource {
    /// Grab `display` (e.g. ":99") at `fps`, region `width` x `height` from the top-left corner.
    /// The X client reads `XAUTHORITY` from this process's environment.
    pub fn x11grab(
        display: &str,
        width: u32,
        height: u32,
        fps: u32,
    ) -> Result<FrameSource, RecordError> {
        crate::encode::init()?;
        let format = ffmpeg::device::input::video()
            .find(|f| f.name() == "x11grab")
            .ok_or_else(|| {
                RecordError::permanent(
                    Phase::Capture,
                    "libavdevice has no x11grab input (install Debian's libavdevice)",
                )
            })?;
        let mut opts = ffmpeg::Dictionary::new();
        opts.set("framerate", &fps.to_string());
        opts.set("video_size", &format!("{width}x{height}"));
        // The mouse pointer is not part of the recording.
        opts.set("draw_mouse", "0");
        let context =
            ffmpeg::format::open_with(&display.to_string(), &format, opts).map_err(|e| {
                RecordError::transient(Phase::Capture, format!("opening x11grab on {display}: {e}"))
            })?;
        let mut input = match context {
            ffmpeg::format::context::Context::Input(i) => i,
            ffmpeg::format::context::Context::Output(_) => unreachable!("opened as input"),
        };
        let stream = input
            .streams()
            .best(ffmpeg::media::Type::Video)
            .ok_or_else(|| {
                RecordError::transient(Phase::Capture, "x11grab gave no video stream")
            })?;
        let index = stream.index();
        let tb = stream.time_base();
        let expected = width as usize * height as usize * 4;
        let (tx, rx) = sync_channel(CHANNEL_FRAMES);
        let stop = Arc::new(AtomicBool::new(false));
        let stop_flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("x11grab".into())
            .spawn(move || {
                grab_loop(
                    &mut input,
                    index,
                    tb,
                    expected,
                    width as usize * 4,
                    &tx,
                    &stop_flag,
                )
            })
            .map_err(|e| RecordError::transient(Phase::Capture, format!("capture thread: {e}")))?;
        Ok(FrameSource {
            frames: rx,
            stop,
            thread: Some(thread),
        })
    }

    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            // Drain so a blocked send can finish and the thread sees the flag.
            while !thread.is_finished() {
                while self.frames.try_recv().is_ok() {}
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            let _ = thread.join();
        }
    }
}

impl Drop for FrameSource {
    fn drop(&mut self) {
        self.stop();
    }
}

fn grab_loop(
    input: &mut ffmpeg::format::context::Input,
    index: usize,
    tb: ffmpeg::Rational,
    expected: usize,
    stride: usize,
    tx: &SyncSender<Result<Frame, RecordError>>,
    stop: &AtomicBool,
) {
    let to_micros = |pts: i64| -> WallMicros {
        if tb == ffmpeg::Rational(1, 1_000_000) {
            pts
        } else {
            (pts as f64 * f64::from(tb) * 1e6) as i64
        }
    };
    while !stop.load(Ordering::SeqCst) {
        let mut packet = ffmpeg::Packet::empty();
        match packet.read(input) {
            Ok(()) => {
                if packet.stream() != index {
                    continue;
                }
                let Some(data) = packet.data() else { continue };
                if data.len() < expected {
                    let _ = tx.send(Err(RecordError::transient(
                        Phase::Capture,
                        format!("x11grab gave {} bytes, expected {expected}", data.len()),
                    )));
                    return;
                }
                let frame = Frame {
                    wall: to_micros(packet.pts().unwrap_or(0)),
                    data: Arc::new(data[..expected].to_vec()),
                    stride,
                };
                if tx.send(Ok(frame)).is_err() {
                    return;
                }
            }
            Err(ffmpeg::Error::Other { errno }) if errno == libc::EAGAIN => continue,
            Err(e) => {
                let _ = tx.send(Err(RecordError::transient(
                    Phase::Capture,
                    format!("x11grab: {e} (did the X server die?)"),
                )));
                return;
            }
        }
    }
}

/// Wall clock now, in microseconds since the epoch (the clock x11grab stamps frames with).
pub fn wall_now() -> WallMicros {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}
