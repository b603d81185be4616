//! The webcam area of a fast-mode recording, filled from the recording's own video. The paused
//! player shows one still webcam picture; every output frame gets instead the webcam picture of
//! its own media time, decoded from `video/webcams.*` and scaled into the rectangle the player
//! shows the video in (its element's box, letterboxed as `object-fit` says).
//!
//! It is a [`FrameSink`] in front of the encoder, so the pipeline (and its end rule) stays the one
//! real-time capture uses. Slots arrive in order, so the video is decoded forward once.

use std::path::{Path, PathBuf};

use ffmpeg_next as ffmpeg;
use serde::Deserialize;

use crate::error::{Phase, RecordError};
use crate::pipeline::FrameSink;

/// The webcam video element as the page lays it out (read by `playback::page::WEBCAM_JS`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct VideoElement {
    /// Rendered, visible and opaque.
    pub shown: bool,
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
    /// `object-fit`, `object-position` and `transform` as computed.
    pub fit: String,
    pub position: String,
    pub transform: String,
    /// The video's own size as the element reads it (0 before its metadata).
    pub vw: f64,
    pub vh: f64,
    /// `window.devicePixelRatio`.
    pub dpr: f64,
}

/// A rectangle of the output picture, in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Area {
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
}

/// Where the element shows its video inside a `width` x `height` picture: `Ok(None)` when it
/// shows none (hidden, or no room), an error for a layout this module does not reproduce.
pub fn video_area(e: &VideoElement, width: u32, height: u32) -> Result<Option<Area>, String> {
    if !e.shown || e.w < 1.0 || e.h < 1.0 {
        return Ok(None);
    }
    if (e.dpr - 1.0).abs() > 1e-9 {
        return Err(format!("the page is drawn at a pixel ratio of {}", e.dpr));
    }
    if e.transform != "none" {
        return Err(format!("the webcam video is transformed ({})", e.transform));
    }
    if e.vw < 1.0 || e.vh < 1.0 {
        return Err("the player does not know the webcam video's size".into());
    }
    let (w, h) = match e.fit.as_str() {
        "fill" => (e.w, e.h),
        "contain" => {
            if e.position != "50% 50%" {
                return Err(format!(
                    "the webcam video is placed at {} in its box",
                    e.position
                ));
            }
            let scale = (e.w / e.vw).min(e.h / e.vh);
            (e.vw * scale, e.vh * scale)
        }
        other => {
            return Err(format!(
                "the webcam video is fitted with object-fit {other}"
            ));
        }
    };
    let x = e.x + (e.w - w) / 2.0;
    let y = e.y + (e.h - h) / 2.0;
    // Pixel edges as the compositor snaps them; the part outside the picture is not drawn.
    let (x0, y0) = (x.round().max(0.0), y.round().max(0.0));
    let x1 = (x + w).round().min(f64::from(width));
    let y1 = (y + h).round().min(f64::from(height));
    if x1 - x0 < 1.0 || y1 - y0 < 1.0 {
        return Ok(None);
    }
    Ok(Some(Area {
        x: x0 as u32,
        y: y0 as u32,
        w: (x1 - x0) as u32,
        h: (y1 - y0) as u32,
    }))
}

/// Whether `media` has a video stream, and its size: a webcams file of a meeting in which nobody
/// shared a camera has only sound.
pub fn video_size(media: &Path) -> Result<Option<(u32, u32)>, String> {
    crate::encode::init().map_err(|e| e.to_string())?;
    let input = ffmpeg::format::input(media).map_err(|e| format!("opening the media: {e}"))?;
    let Some(stream) = input.streams().best(ffmpeg::media::Type::Video) else {
        return Ok(None);
    };
    let decoder = ffmpeg::codec::context::Context::from_parameters(stream.parameters())
        .and_then(|c| c.decoder().video())
        .map_err(|e| format!("the webcam video's decoder: {e}"))?;
    Ok(Some((decoder.width(), decoder.height())))
}

/// What to fill: the source video and where it goes.
#[derive(Debug, Clone)]
pub struct WebcamFill {
    pub video: PathBuf,
    pub area: Area,
}

/// A [`FrameSink`] that fills the webcam area of each slot's picture before passing it on.
pub struct Filled<S> {
    inner: S,
    webcam: Option<WebcamVideo>,
    start: f64,
    fps: u32,
    slot: u64,
    /// The last picture passed on, when it was composed here.
    composed: Vec<u8>,
}

impl<S: FrameSink> Filled<S> {
    /// `fill`: none passes every picture through unchanged.
    pub fn new(
        inner: S,
        fill: Option<&WebcamFill>,
        start: f64,
        fps: u32,
    ) -> Result<Self, RecordError> {
        let webcam = fill.map(WebcamVideo::open).transpose()?;
        Ok(Filled {
            inner,
            webcam,
            start,
            fps,
            slot: 0,
            composed: Vec::new(),
        })
    }
}

impl<S: FrameSink> FrameSink for Filled<S> {
    fn write(&mut self, bgr0: &[u8], stride: usize, unchanged: bool) -> Result<(), RecordError> {
        let Some(webcam) = self.webcam.as_mut() else {
            return self.inner.write(bgr0, stride, unchanged);
        };
        let media = self.start + self.slot as f64 / f64::from(self.fps);
        self.slot += 1;
        let moved = webcam.advance_to(media)?;
        if unchanged && !moved && !self.composed.is_empty() {
            return self.inner.write(&self.composed, stride, true);
        }
        self.composed.clear();
        self.composed.extend_from_slice(bgr0);
        webcam.paint(&mut self.composed, stride);
        self.inner.write(&self.composed, stride, false)
    }

    fn finish(self) -> Result<(PathBuf, u64), RecordError> {
        self.inner.finish()
    }
}

/// The source video, decoded forward, its current picture scaled to the area.
struct WebcamVideo {
    path: PathBuf,
    input: ffmpeg::format::context::Input,
    stream: usize,
    time_base: f64,
    decoder: ffmpeg::decoder::Video,
    scaler: Option<(
        ffmpeg::format::Pixel,
        u32,
        u32,
        ffmpeg::software::scaling::Context,
    )>,
    area: Area,
    /// The picture shown now (BGR0, `area.w * 4` bytes a row).
    current: Option<Vec<u8>>,
    /// The next decoded picture and its media time, not due yet.
    next: Option<(f64, ffmpeg::frame::Video)>,
    drained: bool,
    flushed: bool,
}

impl WebcamVideo {
    fn open(fill: &WebcamFill) -> Result<Self, RecordError> {
        let fail = |why: String| {
            RecordError::permanent(
                Phase::Capture,
                format!("the webcam video {}: {why}", file_name(&fill.video)),
            )
        };
        crate::encode::init()?;
        let input = ffmpeg::format::input(&fill.video).map_err(|e| fail(e.to_string()))?;
        let stream = input
            .streams()
            .best(ffmpeg::media::Type::Video)
            .ok_or_else(|| fail("it has no video stream".into()))?;
        let index = stream.index();
        let time_base = f64::from(stream.time_base());
        let decoder = ffmpeg::codec::context::Context::from_parameters(stream.parameters())
            .and_then(|c| c.decoder().video())
            .map_err(|e| fail(e.to_string()))?;
        Ok(WebcamVideo {
            path: fill.video.clone(),
            input,
            stream: index,
            time_base,
            decoder,
            scaler: None,
            area: fill.area,
            current: None,
            next: None,
            drained: false,
            flushed: false,
        })
    }

    fn error(&self, media: f64, why: impl std::fmt::Display) -> RecordError {
        RecordError::permanent(
            Phase::Capture,
            format!(
                "the webcam video {} at {media:.3} s: {why}",
                file_name(&self.path)
            ),
        )
    }

    /// Makes the picture of media time `media` current: the last one whose time is at or before
    /// it (the first one before the video's first picture). Whether the picture changed.
    fn advance_to(&mut self, media: f64) -> Result<bool, RecordError> {
        let mut moved = false;
        loop {
            if self.next.is_none() && !self.drained {
                self.next = self.decode_next(media)?;
                if self.next.is_none() {
                    self.drained = true;
                }
            }
            let due = match &self.next {
                Some((t, _)) => *t <= media + 1e-6 || self.current.is_none(),
                None => false,
            };
            if !due {
                return Ok(moved);
            }
            let (_, frame) = self.next.take().expect("due");
            let picture = self.scale(&frame, media)?;
            // A camera showing the same picture (a still or dark one) leaves the frame unchanged,
            // and the encoder skips its colour conversion.
            if self.current.as_ref() != Some(&picture) {
                self.current = Some(picture);
                moved = true;
            }
        }
    }

    /// The next picture of the stream and its media time; `None` at its end.
    fn decode_next(
        &mut self,
        media: f64,
    ) -> Result<Option<(f64, ffmpeg::frame::Video)>, RecordError> {
        loop {
            let mut frame = ffmpeg::frame::Video::empty();
            if self.decoder.receive_frame(&mut frame).is_ok() {
                let pts = frame.timestamp().or(frame.pts()).unwrap_or(0);
                return Ok(Some((pts as f64 * self.time_base, frame)));
            }
            if self.flushed {
                return Ok(None);
            }
            let mut packet = ffmpeg::Packet::empty();
            match packet.read(&mut self.input) {
                Ok(()) => {
                    if packet.stream() == self.stream {
                        self.decoder
                            .send_packet(&packet)
                            .map_err(|e| self.error(media, e))?;
                    }
                }
                Err(ffmpeg::Error::Eof) => {
                    self.decoder.send_eof().map_err(|e| self.error(media, e))?;
                    self.flushed = true;
                }
                Err(e) => return Err(self.error(media, e)),
            }
        }
    }

    fn scale(&mut self, frame: &ffmpeg::frame::Video, media: f64) -> Result<Vec<u8>, RecordError> {
        let (format, w, h) = (frame.format(), frame.width(), frame.height());
        if self
            .scaler
            .as_ref()
            .is_none_or(|s| (s.0, s.1, s.2) != (format, w, h))
        {
            let ctx = ffmpeg::software::scaling::Context::get(
                format,
                w,
                h,
                ffmpeg::format::Pixel::BGRZ,
                self.area.w,
                self.area.h,
                ffmpeg::software::scaling::Flags::BILINEAR,
            )
            .map_err(|e| self.error(media, e))?;
            self.scaler = Some((format, w, h, ctx));
        }
        let mut bgr = ffmpeg::frame::Video::empty();
        self.scaler
            .as_mut()
            .expect("set above")
            .3
            .run(frame, &mut bgr)
            .map_err(|e| {
                RecordError::permanent(Phase::Capture, format!("scaling the webcam video: {e}"))
            })?;
        let row = self.area.w as usize * 4;
        let line = bgr.stride(0);
        let plane = bgr.data(0);
        let mut picture = Vec::with_capacity(row * self.area.h as usize);
        for y in 0..self.area.h as usize {
            picture.extend_from_slice(&plane[y * line..y * line + row]);
        }
        Ok(picture)
    }

    /// Paints the current picture into `frame` (BGR0, `stride` bytes a row).
    fn paint(&self, frame: &mut [u8], stride: usize) {
        let Some(picture) = &self.current else { return };
        let row = self.area.w as usize * 4;
        for y in 0..self.area.h as usize {
            let at = (self.area.y as usize + y) * stride + self.area.x as usize * 4;
            frame[at..at + row].copy_from_slice(&picture[y * row..(y + 1) * row]);
        }
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn element(x: f64, y: f64, w: f64, h: f64, vw: f64, vh: f64) -> VideoElement {
        VideoElement {
            shown: true,
            x,
            y,
            w,
            h,
            fit: "contain".into(),
            position: "50% 50%".into(),
            transform: "none".into(),
            vw,
            vh,
            dpr: 1.0,
        }
    }

    #[test]
    fn a_contained_video_is_letterboxed_in_the_middle_of_its_box() {
        // 4:3 in a wide box: bars left and right.
        let e = element(10.0, 20.0, 400.0, 200.0, 320.0, 240.0);
        assert_eq!(
            video_area(&e, 1280, 720).unwrap(),
            Some(Area {
                x: 77,
                y: 20,
                w: 266,
                h: 200
            })
        );
        // 16:9 in a square box: bars above and below.
        let e = element(0.0, 0.0, 300.0, 300.0, 640.0, 360.0);
        assert_eq!(
            video_area(&e, 1280, 720).unwrap(),
            Some(Area {
                x: 0,
                y: 66,
                w: 300,
                h: 168
            })
        );
        // Filled: the whole box, cut at the picture's edge.
        let mut e = element(1200.0, 700.0, 200.0, 100.0, 320.0, 240.0);
        e.fit = "fill".into();
        assert_eq!(
            video_area(&e, 1280, 720).unwrap(),
            Some(Area {
                x: 1200,
                y: 700,
                w: 80,
                h: 20
            })
        );
    }

    #[test]
    fn a_hidden_video_has_no_area_and_an_unknown_layout_is_refused() {
        let mut e = element(0.0, 0.0, 300.0, 300.0, 640.0, 360.0);
        e.shown = false;
        assert_eq!(video_area(&e, 1280, 720).unwrap(), None);
        for change in [
            |e: &mut VideoElement| e.fit = "cover".into(),
            |e: &mut VideoElement| e.transform = "matrix(-1, 0, 0, 1, 0, 0)".into(),
            |e: &mut VideoElement| e.dpr = 2.0,
            |e: &mut VideoElement| e.vw = 0.0,
            |e: &mut VideoElement| e.position = "0% 0%".into(),
        ] {
            let mut e = element(0.0, 0.0, 300.0, 300.0, 640.0, 360.0);
            change(&mut e);
            assert!(video_area(&e, 1280, 720).is_err(), "{e:?}");
        }
    }
}
