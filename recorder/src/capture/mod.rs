//! Frame sources: where captured pictures come from, each stamped with the wall-clock instant it
//! was grabbed. The default grabs the Xvfb display with libavdevice's x11grab (steady rate, exact
//! timestamps, cheap for Chromium; see bbb-playback.md "Capture facts"). The alternative is the
//! DevTools screencast: JPEG pictures of the page sent by Chromium when it redraws, stamped with
//! their swap time; nothing arrives while the page is still (see `repeats_when_idle`).
//!
//! The third is fast mode's stepped source (`stepped`): the paused player is stepped from one
//! picture change to the next and one picture is taken at each; its frames carry media time.
//!
//! A source runs on its own OS thread (libav calls block) and hands frames over a bounded channel,
//! so a slow encoder applies back-pressure instead of growing memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use ffmpeg_next as ffmpeg;

use crate::error::{Phase, RecordError};
use crate::picture::PictureDecoder;
use crate::timeline::WallMicros;

pub mod stepped;

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
    /// The task receiving screencast frames from the page.
    task: Option<tokio::task::JoinHandle<()>>,
    /// Frames come only when the picture changes: silence means "still the same picture".
    pub repeats_when_idle: bool,
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
            task: None,
            repeats_when_idle: false,
        })
    }

    /// Capture `page` through the DevTools screencast, scaled to `width` x `height`.
    pub async fn screencast(
        page: &chromiumoxide::Page,
        width: u32,
        height: u32,
    ) -> Result<FrameSource, RecordError> {
        use chromiumoxide::cdp::browser_protocol::page::{
            EventScreencastFrame, ScreencastFrameAckParams, StartScreencastFormat,
            StartScreencastParams,
        };
        use futures::StreamExt;

        crate::encode::init()?;
        let mut events = page
            .event_listener::<EventScreencastFrame>()
            .await
            .map_err(|e| RecordError::transient(Phase::Capture, format!("screencast: {e}")))?;
        page.execute(
            StartScreencastParams::builder()
                .format(StartScreencastFormat::Jpeg)
                .quality(90)
                .max_width(i64::from(width))
                .max_height(i64::from(height))
                .every_nth_frame(1)
                .build(),
        )
        .await
        .map_err(|e| {
            RecordError::transient(Phase::Capture, format!("starting the screencast: {e}"))
        })?;
        // Compressed pictures go to a decoding thread (JPEG decoding is CPU work).
        let (jpeg_tx, jpeg_rx) = sync_channel::<(WallMicros, Vec<u8>)>(CHANNEL_FRAMES);
        let (tx, rx) = sync_channel(CHANNEL_FRAMES);
        let stop = Arc::new(AtomicBool::new(false));
        let page_for_task = page.clone();
        let decode_tx = tx.clone();
        let task = tokio::spawn(async move {
            use base64::Engine as _;
            while let Some(event) = events.next().await {
                // Acknowledge at once: Chromium sends the next frame only after the ack.
                let _ = page_for_task
                    .execute(ScreencastFrameAckParams::new(event.session_id))
                    .await;
                let wall = event
                    .metadata
                    .timestamp
                    .as_ref()
                    .map(|t| (*t.inner() * 1e6) as WallMicros)
                    .unwrap_or_else(wall_now);
                let data: &str = event.data.as_ref();
                let Ok(jpeg) = base64::engine::general_purpose::STANDARD.decode(data) else {
                    let _ = decode_tx.send(Err(RecordError::transient(
                        Phase::Capture,
                        "a screencast frame is not valid base64",
                    )));
                    return;
                };
                // The decoder is behind: drop this picture rather than block the DevTools events.
                if let Err(std::sync::mpsc::TrySendError::Disconnected(_)) =
                    jpeg_tx.try_send((wall, jpeg))
                {
                    return;
                }
            }
        });
        let stop_flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("screencast".into())
            .spawn(move || decode_loop(jpeg_rx, width, height, &tx, &stop_flag))
            .map_err(|e| RecordError::transient(Phase::Capture, format!("capture thread: {e}")))?;
        Ok(FrameSource {
            frames: rx,
            stop,
            thread: Some(thread),
            task: Some(task),
            repeats_when_idle: true,
        })
    }

    pub fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
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
    // The last picture sent. A grab that shows the same picture shares it instead of holding a
    // copy: a slide recording's frames are nearly all repeats, so the frames that wait for the
    // media clock (up to its settle time, 1 s, on a loaded machine) cost one picture, not 30 of
    // 3.7 MB each at 720p, and the encoder's "unchanged" test is a pointer comparison.
    let mut previous: Option<Arc<Vec<u8>>> = None;
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
                let data = match &previous {
                    Some(same) if same[..] == data[..expected] => Arc::clone(same),
                    _ => Arc::new(data[..expected].to_vec()),
                };
                previous = Some(Arc::clone(&data));
                let frame = Frame {
                    wall: to_micros(packet.pts().unwrap_or(0)),
                    data,
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

/// Decodes screencast JPEGs into BGR0 pictures of the output size.
fn decode_loop(
    jpegs: Receiver<(WallMicros, Vec<u8>)>,
    width: u32,
    height: u32,
    tx: &SyncSender<Result<Frame, RecordError>>,
    stop: &AtomicBool,
) {
    let fail = |why: String| {
        let _ = tx.send(Err(RecordError::transient(Phase::Capture, why)));
    };
    let mut decoder = match PictureDecoder::new(ffmpeg::codec::Id::MJPEG, width, height) {
        Ok(d) => d,
        Err(why) => return fail(why),
    };
    while !stop.load(Ordering::SeqCst) {
        let (wall, jpeg) = match jpegs.recv_timeout(std::time::Duration::from_millis(50)) {
            Ok(item) => item,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
        };
        let data = match decoder.decode(&jpeg) {
            Ok(Some(data)) => data,
            Ok(None) => continue,
            Err(why) => return fail(format!("a screencast frame: {why}")),
        };
        let frame = Frame {
            wall,
            data: Arc::new(data),
            stride: decoder.stride(),
        };
        if tx.send(Ok(frame)).is_err() {
            return;
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
