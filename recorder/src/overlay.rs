//! The video areas of a fast-mode recording, filled from the recording's own videos. The paused
//! player shows one still picture of the webcams and of the screen share; every output frame
//! gets instead the pictures of its own media time, decoded from `video/webcams.*` and
//! `deskshare/deskshare.*` and scaled into the rectangles the player shows the videos in (their
//! elements' boxes, letterboxed as `object-fit` says), as laid out at the last step.
//!
//! It is a [`FrameSink`] in front of the encoder, so the pipeline (and its end rule) stays the one
//! real-time capture uses. Slots arrive in order, so the video is decoded forward once.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ffmpeg_next as ffmpeg;
use serde::Deserialize;

use crate::error::{Phase, RecordError};
use crate::picture::BgrScaler;
use crate::pipeline::FrameSink;

/// A video element as the page lays it out (read by `playback::page::VIDEOS_JS`).
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
    // The page's numbers come from a player drawing what the server sent: anything not finite
    // would otherwise turn into an area over the whole picture.
    if [e.x, e.y, e.w, e.h, e.vw, e.vh, e.dpr]
        .iter()
        .any(|v| !v.is_finite())
    {
        return Err("the page gives the video no finite geometry".into());
    }
    if !e.shown || e.w < 1.0 || e.h < 1.0 {
        return Ok(None);
    }
    if (e.dpr - 1.0).abs() > 1e-9 {
        return Err(format!("the page is drawn at a pixel ratio of {}", e.dpr));
    }
    if e.transform != "none" {
        return Err(format!("the video is transformed ({})", e.transform));
    }
    if e.vw < 1.0 || e.vh < 1.0 {
        return Err("the player does not know the video's size".into());
    }
    let (w, h) = match e.fit.as_str() {
        "fill" => (e.w, e.h),
        "contain" => {
            if e.position != "50% 50%" {
                return Err(format!("the video is placed at {} in its box", e.position));
            }
            let scale = (e.w / e.vw).min(e.h / e.vh);
            (e.vw * scale, e.vh * scale)
        }
        other => {
            return Err(format!("the video is fitted with object-fit {other}"));
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
        .map_err(|e| format!("the video decoder: {e}"))?;
    Ok(Some((decoder.width(), decoder.height())))
}

/// Both videos of the page, as `playback::page::VIDEOS_JS` reads them (null: the player has none).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PageVideos {
    pub webcam: Option<VideoElement>,
    pub screenshare: Option<VideoElement>,
}

/// Where each of the recording's videos shows, from one step on (`None`: not shown).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Layout {
    pub webcam: Option<Area>,
    pub screenshare: Option<Area>,
}

impl Layout {
    /// The layout the page shows, for the videos the recording has; an error for a way of
    /// showing one that this module does not reproduce.
    pub fn of(
        page: &PageVideos,
        sources: &Sources,
        width: u32,
        height: u32,
    ) -> Result<Layout, String> {
        let area = |element: &Option<VideoElement>, has: bool, what: &str| match (element, has) {
            (Some(e), true) => video_area(e, width, height).map_err(|why| format!("{what}: {why}")),
            _ => Ok(None),
        };
        Ok(Layout {
            webcam: area(&page.webcam, sources.webcam.is_some(), "the webcam")?,
            screenshare: area(
                &page.screenshare,
                sources.screenshare.is_some(),
                "the screen share",
            )?,
        })
    }
}

/// The recording's own videos (downloaded files).
#[derive(Debug, Clone, Default)]
pub struct Sources {
    pub webcam: Option<PathBuf>,
    pub screenshare: Option<PathBuf>,
}

/// The layout from each step's slot on, in slot order, written by the stepped source before it
/// sends that step's picture: by the time the pipeline writes a slot, its layout is known.
pub type Layouts = Arc<Mutex<Vec<(u64, Layout)>>>;

/// What to fill: the videos, and where they show slot by slot.
#[derive(Debug, Clone)]
pub struct FillPlan {
    pub sources: Sources,
    pub layouts: Layouts,
}

/// A [`FrameSink`] that fills the video areas of each slot's picture before passing it on.
pub struct Filled<S> {
    inner: S,
    fill: Option<Fill>,
    start: f64,
    fps: u32,
    slot: u64,
    /// The last picture passed on, when it was composed here, and its layout.
    composed: Vec<u8>,
    last_layout: Option<Layout>,
}

struct Fill {
    layouts: Layouts,
    webcam: Option<SourceVideo>,
    screenshare: Option<SourceVideo>,
}

impl Fill {
    fn layout_at(&self, slot: u64) -> Layout {
        layout_at(
            &self.layouts.lock().unwrap_or_else(|e| e.into_inner()),
            slot,
        )
    }
}

/// The layout of `slot`: that of the last step at or before it (none before the first).
fn layout_at(layouts: &[(u64, Layout)], slot: u64) -> Layout {
    let after = layouts.partition_point(|(from, _)| *from <= slot);
    after
        .checked_sub(1)
        .map(|i| layouts[i].1)
        .unwrap_or_default()
}

impl<S: FrameSink> Filled<S> {
    /// `plan`: none passes every picture through unchanged.
    pub fn new(
        inner: S,
        plan: Option<&FillPlan>,
        start: f64,
        fps: u32,
    ) -> Result<Self, RecordError> {
        let fill = match plan {
            Some(plan) => Some(Fill {
                layouts: Arc::clone(&plan.layouts),
                webcam: plan
                    .sources
                    .webcam
                    .as_deref()
                    .map(SourceVideo::open)
                    .transpose()?,
                screenshare: plan
                    .sources
                    .screenshare
                    .as_deref()
                    .map(SourceVideo::open)
                    .transpose()?,
            }),
            None => None,
        };
        Ok(Filled {
            inner,
            fill,
            start,
            fps,
            slot: 0,
            composed: Vec::new(),
            last_layout: None,
        })
    }
}

impl<S: FrameSink> FrameSink for Filled<S> {
    fn write(&mut self, bgr0: &[u8], stride: usize, unchanged: bool) -> Result<(), RecordError> {
        let Some(fill) = self.fill.as_mut() else {
            return self.inner.write(bgr0, stride, unchanged);
        };
        let slot = self.slot;
        self.slot += 1;
        let media = self.start + slot as f64 / f64::from(self.fps);
        let layout = fill.layout_at(slot);
        let mut changed =
            !unchanged || self.composed.is_empty() || self.last_layout != Some(layout);
        for (video, area) in [
            (fill.webcam.as_mut(), layout.webcam),
            (fill.screenshare.as_mut(), layout.screenshare),
        ] {
            if let (Some(video), Some(area)) = (video, area) {
                changed |= video.prepare(media, area)?;
            }
        }
        self.last_layout = Some(layout);
        if !changed {
            return self.inner.write(&self.composed, stride, true);
        }
        self.composed.clear();
        self.composed.extend_from_slice(bgr0);
        for (video, area) in [
            (fill.webcam.as_ref(), layout.webcam),
            (fill.screenshare.as_ref(), layout.screenshare),
        ] {
            if let (Some(video), Some(area)) = (video, area) {
                video.paint(&mut self.composed, stride, area);
            }
        }
        self.inner.write(&self.composed, stride, false)
    }

    fn finish(self) -> Result<(PathBuf, u64), RecordError> {
        self.inner.finish()
    }
}

/// One source video, decoded forward; its current picture scaled to the area it shows in.
struct SourceVideo {
    path: PathBuf,
    input: ffmpeg::format::context::Input,
    stream: usize,
    time_base: f64,
    decoder: ffmpeg::decoder::Video,
    /// The picture due now, counted (a new one each time another is due).
    due: Option<(u64, ffmpeg::frame::Video)>,
    /// The next decoded picture and its media time, not due yet.
    next: Option<(f64, ffmpeg::frame::Video)>,
    drained: bool,
    flushed: bool,
    /// The due picture scaled: (its count, the area, BGR0 with `area.w * 4` bytes a row).
    scaled: Option<(u64, Area, Vec<u8>)>,
    scaler: Option<(Area, BgrScaler)>,
}

impl SourceVideo {
    fn open(path: &Path) -> Result<Self, RecordError> {
        let fail = |why: String| {
            RecordError::permanent(
                Phase::Capture,
                format!("the video {}: {why}", file_name(path)),
            )
        };
        crate::encode::init()?;
        let input = ffmpeg::format::input(path).map_err(|e| fail(e.to_string()))?;
        let stream = input
            .streams()
            .best(ffmpeg::media::Type::Video)
            .ok_or_else(|| fail("it has no video stream".into()))?;
        let index = stream.index();
        let time_base = f64::from(stream.time_base());
        let decoder = ffmpeg::codec::context::Context::from_parameters(stream.parameters())
            .and_then(|c| c.decoder().video())
            .map_err(|e| fail(e.to_string()))?;
        Ok(SourceVideo {
            path: path.to_owned(),
            input,
            stream: index,
            time_base,
            decoder,
            due: None,
            next: None,
            drained: false,
            flushed: false,
            scaled: None,
            scaler: None,
        })
    }

    fn error(&self, media: f64, why: impl std::fmt::Display) -> RecordError {
        RecordError::permanent(
            Phase::Capture,
            format!("the video {} at {media:.3} s: {why}", file_name(&self.path)),
        )
    }

    /// Makes the picture of media time `media` the due one, scaled to `area`: the last picture
    /// whose time is at or before it (the first one before the video's first). Whether what it
    /// paints changed.
    fn prepare(&mut self, media: f64, area: Area) -> Result<bool, RecordError> {
        loop {
            if self.next.is_none() && !self.drained {
                self.next = self.decode_next(media)?;
                if self.next.is_none() {
                    self.drained = true;
                }
            }
            let is_due = match &self.next {
                Some((t, _)) => *t <= media + 1e-6 || self.due.is_none(),
                None => false,
            };
            if !is_due {
                break;
            }
            let (_, frame) = self.next.take().expect("due");
            let count = self.due.as_ref().map_or(0, |(n, _)| n + 1);
            self.due = Some((count, frame));
        }
        let Some((count, frame)) = &self.due else {
            return Ok(false);
        };
        if self
            .scaled
            .as_ref()
            .is_some_and(|(n, a, _)| n == count && *a == area)
        {
            return Ok(false);
        }
        if self
            .scaler
            .as_ref()
            .is_none_or(|(a, _)| (a.w, a.h) != (area.w, area.h))
        {
            self.scaler = Some((area, BgrScaler::new(area.w, area.h)));
        }
        let picture = self
            .scaler
            .as_mut()
            .expect("set above")
            .1
            .convert(frame)
            .map_err(|why| self.error(media, why))?;
        // A camera showing the same picture (a still or dark one) leaves the frame unchanged,
        // and the encoder skips its colour conversion.
        let changed = self
            .scaled
            .as_ref()
            .is_none_or(|(_, a, old)| *a != area || *old != picture);
        self.scaled = Some((*count, area, picture));
        Ok(changed)
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

    /// Paints the scaled picture into `frame` (BGR0, `stride` bytes a row) at `area`.
    fn paint(&self, frame: &mut [u8], stride: usize, area: Area) {
        let Some((_, scaled_area, picture)) = &self.scaled else {
            return;
        };
        if *scaled_area != area {
            return;
        }
        let row = area.w as usize * 4;
        for y in 0..area.h as usize {
            let at = (area.y as usize + y) * stride + area.x as usize * 4;
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
    fn a_slot_has_the_layout_of_the_last_step_at_or_before_it() {
        let a = Area {
            x: 0,
            y: 0,
            w: 320,
            h: 240,
        };
        let b = Area {
            x: 320,
            y: 48,
            w: 960,
            h: 540,
        };
        let layouts = [
            (
                0,
                Layout {
                    webcam: Some(a),
                    screenshare: None,
                },
            ),
            (
                180,
                Layout {
                    webcam: Some(a),
                    screenshare: Some(b),
                },
            ),
            (
                240,
                Layout {
                    webcam: Some(a),
                    screenshare: None,
                },
            ),
        ];
        assert_eq!(layout_at(&layouts, 0).screenshare, None);
        assert_eq!(layout_at(&layouts, 179).screenshare, None);
        assert_eq!(layout_at(&layouts, 180).screenshare, Some(b));
        assert_eq!(layout_at(&layouts, 239).screenshare, Some(b));
        assert_eq!(layout_at(&layouts, 240).screenshare, None);
        assert_eq!(layout_at(&[], 5), Layout::default());
    }

    #[test]
    fn only_the_videos_the_recording_has_get_an_area() {
        let shown = element(0.0, 0.0, 320.0, 240.0, 320.0, 240.0);
        let page = PageVideos {
            webcam: Some(shown.clone()),
            screenshare: Some(shown),
        };
        let webcam_only = Sources {
            webcam: Some("w.webm".into()),
            screenshare: None,
        };
        let layout = Layout::of(&page, &webcam_only, 1280, 720).unwrap();
        assert_eq!(
            layout.webcam,
            Some(Area {
                x: 0,
                y: 0,
                w: 320,
                h: 240
            })
        );
        assert_eq!(layout.screenshare, None);
        let mut mirrored = page.clone();
        mirrored.webcam.as_mut().unwrap().transform = "matrix(-1, 0, 0, 1, 0, 0)".into();
        let why = Layout::of(&mirrored, &webcam_only, 1280, 720).unwrap_err();
        assert!(
            why.starts_with("the webcam: the video is transformed"),
            "{why}"
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
            |e: &mut VideoElement| e.vw = f64::NAN,
            |e: &mut VideoElement| e.w = f64::INFINITY,
        ] {
            let mut e = element(0.0, 0.0, 300.0, 300.0, 640.0, 360.0);
            change(&mut e);
            assert!(video_area(&e, 1280, 720).is_err(), "{e:?}");
        }
    }
}
