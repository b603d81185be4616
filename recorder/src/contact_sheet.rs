//! Contact sheets: a few frames of a finished video, each scaled to one tile size and laid out in
//! a grid (left to right, then top to bottom) in one JPEG, for a person who looks through
//! hundreds of outputs for black screens, player errors and wrong layouts.
//!
//! Owns reading frames out of a video file at chosen times, the grid, the tiles' luma figures and
//! the JPEG's atomic placement. Knows nothing of the recording that made the video: the times of
//! its slide changes come in as plain numbers. The video is untrusted (any file a user names):
//! whatever its bytes, [`make`] returns a sheet or an error, never panics, and reads a bounded
//! number of packets per tile while holding one decoded frame at a time.

use std::path::{Path, PathBuf};

use bbb_common::recorder_protocol::{ContactSheet, SheetTile, TileKind};
use ffmpeg::{Dictionary, Packet, Rational, codec, decoder, encoder, format, frame, media};
use ffmpeg_next as ffmpeg;

use crate::error::Class;

/// Tiles per row.
pub const COLUMNS: u32 = 4;
/// Width of every tile; the height follows the video's picture aspect.
pub const TILE_WIDTH: u32 = 320;
/// Tiles spread evenly over the video, at (i + 0.5) / n of its length.
const SPREAD_TILES: u32 = 8;
/// At most this many tiles for changes of the picture: with the spread ones, three rows at most.
const MAX_CHANGE_TILES: usize = 4;
/// A change's tile shows the picture this long after the change: the player needs a few frames
/// to paint a new slide, and the frame at the change itself may still show the old one.
const CHANGE_DELAY: f64 = 0.25;
/// Bounds of the tile height: a portrait video gets at most a 1:2 tile, a very wide one at least
/// a strip that still shows something.
const MIN_TILE_HEIGHT: u32 = 16;
const MAX_TILE_HEIGHT: u32 = 2 * TILE_WIDTH;
/// A tile whose luma varies less than this (standard deviation, 0-255 scale) is one flat colour.
/// Encoding noise on a solid picture stays below 2 once scaled down to a tile; one line of dark
/// text on a white page is above 10, and a mouse pointer alone on a black screen about 4.
const FLAT_LUMA_STDDEV: f64 = 4.0;
/// A tile is given up this long (media time, any stream's packets) past its time without a
/// frame at or after it, and shows the last frame decoded: a video stream with a hole, or one
/// whose frames stopped decoding while the sound goes on, must not be read to its end.
const OVERSHOOT: f64 = 5.0;
/// At most this many packets are read for one tile, whatever their timestamps say. A seek lands
/// on the keyframe before the time: our outputs have one every 10 s, about 800 packets of 30 fps
/// video and AAC sound; a video with rare keyframes (or none after the first) is cut short here.
const MAX_PACKETS_PER_TILE: u32 = 5_000;
/// The largest picture decoded (8K UHD, the largest `bbb-record --size`): a forged header must
/// not make the decoder allocate gigabytes.
const MAX_PIXELS: u64 = 7680 * 4320;
/// Background of the empty cells of the last row.
const BACKGROUND: u8 = 0x80;
/// JPEG quality as mjpeg's quantiser scale (2 best .. 31 worst; 5 is ffmpeg's `-q:v 5`): sharp
/// enough to read a slide's title; 66 kB for a 1280x540 sheet of ffmpeg's busy `testsrc2`.
const QSCALE: i32 = 5;
/// libavutil's `FF_QP2LAMBDA` (a macro, absent from the bindings): lambda units per qscale step.
const QP2LAMBDA: i32 = 118;

/// Why no sheet was made. Every message names the file it is about.
#[derive(Debug, thiserror::Error)]
pub enum SheetError {
    /// The video cannot be read: not a video at all, no video stream, no length, no frame that
    /// decodes.
    #[error("{}: {reason}", video.display())]
    Video { video: PathBuf, reason: String },
    /// The sheet would be written over the video itself.
    #[error("{}: the contact sheet would replace the video itself", sheet.display())]
    SameFile { sheet: PathBuf },
    /// The sheet's directory does not exist.
    #[error("{}: the directory of the contact sheet does not exist", sheet.display())]
    NoDirectory { sheet: PathBuf },
    /// libav could not make the picture (colour conversion, the mjpeg encoder).
    #[error("{}: making the JPEG: {reason}", sheet.display())]
    Encode { sheet: PathBuf, reason: String },
    /// The JPEG could not be placed (a full disk, no permission).
    #[error("{}: writing the contact sheet: {reason}", sheet.display())]
    Write { sheet: PathBuf, reason: String },
}

impl SheetError {
    /// Whether making the same sheet again may succeed: a bad video or path stays bad.
    pub fn class(&self) -> Class {
        match self {
            SheetError::Video { .. }
            | SheetError::SameFile { .. }
            | SheetError::NoDirectory { .. } => Class::Permanent,
            SheetError::Encode { .. } | SheetError::Write { .. } => Class::Transient,
        }
    }
}

/// Makes the contact sheet of `video` into the JPEG `out` and describes it. `changes` are times
/// (seconds from the video's start) where the picture changes, slide changes usually: the
/// earliest [`MAX_CHANGE_TILES`] inside the video each get a tile just after the change, besides
/// the tiles spread over the whole video. `out` is replaced atomically; on error nothing is
/// written.
pub fn make(video: &Path, changes: &[f64], out: &Path) -> Result<ContactSheet, SheetError> {
    check_destination(video, out)?;
    crate::encode::init().map_err(|e| SheetError::Encode {
        sheet: out.to_owned(),
        reason: e.to_string(),
    })?;
    let mut reader = FrameReader::open(video)?;
    let duration = reader.duration;
    let (tile_width, tile_height) = tile_size(reader.width, reader.height, reader.aspect);
    let plan = plan_tiles(duration, changes);
    let rows = (plan.len() as u32).div_ceil(COLUMNS);
    let mut canvas = Canvas::new(COLUMNS * tile_width, rows * tile_height);
    let mut scaler = TileScaler::new(tile_width, tile_height);
    let mut tiles = Vec::with_capacity(plan.len());
    for (index, (at, kind)) in plan.into_iter().enumerate() {
        let (frame, shown) = reader.frame_at(at)?;
        let rgb = scaler.scale(frame).map_err(|reason| SheetError::Video {
            video: video.to_owned(),
            reason: format!("the frame at {shown:.3} s: {reason}"),
        })?;
        let (luma, spread) = luma_stats(&rgb, tile_width, tile_height);
        let index = index as u32;
        canvas.blit(
            &rgb,
            tile_width,
            tile_height,
            (index % COLUMNS) * tile_width,
            (index / COLUMNS) * tile_height,
        );
        tiles.push(SheetTile {
            at: round_to(shown.max(0.0), 1000.0),
            kind,
            luma: round_to(luma, 10.0),
            flat: spread < FLAT_LUMA_STDDEV,
        });
    }
    drop(reader);
    let jpeg = encode_jpeg(&canvas).map_err(|reason| SheetError::Encode {
        sheet: out.to_owned(),
        reason,
    })?;
    place(&jpeg, out)?;
    Ok(ContactSheet {
        columns: COLUMNS,
        tile_width,
        tile_height,
        duration: round_to(duration, 1000.0),
        tiles,
    })
}

/// Refuses a sheet over the video itself and a directory that does not exist (a typo must not
/// make the sheet land somewhere unexpected).
fn check_destination(video: &Path, out: &Path) -> Result<(), SheetError> {
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !dir.is_dir() {
        return Err(SheetError::NoDirectory {
            sheet: out.to_owned(),
        });
    }
    let same = match (std::fs::canonicalize(video), std::fs::canonicalize(out)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same {
        return Err(SheetError::SameFile {
            sheet: out.to_owned(),
        });
    }
    Ok(())
}

/// Writes `jpeg` beside `out` and renames it into place durably (`bbb_common::durable`). The
/// file gets the mode the output video gets (0666 less the umask), which
/// `durable::write_atomic`'s private temporary file would not give it; a failed write removes
/// the temporary file.
fn place(jpeg: &[u8], out: &Path) -> Result<(), SheetError> {
    use std::io::Write as _;
    let tmp = crate::encode::temporary_output_path(out);
    let written = std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(jpeg))
        .map_err(|e| format!("{}: {e}", tmp.display()))
        .and_then(|()| bbb_common::durable::rename_into(&tmp, out).map_err(|e| e.to_string()));
    written.map_err(|reason| {
        let _ = std::fs::remove_file(&tmp);
        SheetError::Write {
            sheet: out.to_owned(),
            reason,
        }
    })
}

/// The times of the tiles, sorted: [`SPREAD_TILES`] spread over `duration`, and one just after
/// each of the earliest [`MAX_CHANGE_TILES`] `changes` inside the video (kept inside it).
fn plan_tiles(duration: f64, changes: &[f64]) -> Vec<(f64, TileKind)> {
    let mut plan: Vec<(f64, TileKind)> = (0..SPREAD_TILES)
        .map(|i| {
            (
                (f64::from(i) + 0.5) / f64::from(SPREAD_TILES) * duration,
                TileKind::Spread,
            )
        })
        .collect();
    let mut inside: Vec<f64> = changes
        .iter()
        .copied()
        .filter(|c| c.is_finite() && *c >= 0.0 && *c < duration)
        .collect();
    inside.sort_by(f64::total_cmp);
    inside.dedup_by(|a, b| (*a - *b).abs() < 1e-3);
    // A hair before the end: a time at the very end would seek past the last frame.
    let last = (duration - 1e-3).max(0.0);
    plan.extend(
        inside
            .into_iter()
            .take(MAX_CHANGE_TILES)
            .map(|c| ((c + CHANGE_DELAY).min(last), TileKind::Change)),
    );
    // Stable: a change's tile at the same time as a spread one comes after it.
    plan.sort_by(|a, b| a.0.total_cmp(&b.0));
    plan
}

/// The tile size for a `width` x `height` picture with sample aspect `aspect` (pixel shape):
/// [`TILE_WIDTH`] wide, as high as the displayed picture's aspect wants, even (JPEG's 4:2:0
/// chroma) and within [`MIN_TILE_HEIGHT`]..=[`MAX_TILE_HEIGHT`].
fn tile_size(width: u32, height: u32, aspect: Rational) -> (u32, u32) {
    let pixel = if aspect.numerator() > 0 && aspect.denominator() > 0 {
        f64::from(aspect)
    } else {
        1.0
    };
    let display = f64::from(width) * pixel / f64::from(height);
    let height = (f64::from(TILE_WIDTH) / display / 2.0).round() * 2.0;
    let height = if height.is_finite() {
        height.clamp(f64::from(MIN_TILE_HEIGHT), f64::from(MAX_TILE_HEIGHT)) as u32
    } else {
        MIN_TILE_HEIGHT
    };
    (TILE_WIDTH, height)
}

fn round_to(value: f64, per_unit: f64) -> f64 {
    (value * per_unit).round() / per_unit
}

/// Mean and standard deviation of the luma (BT.601 weights, 0-255) of a packed RGB24 picture.
fn luma_stats(rgb: &[u8], width: u32, height: u32) -> (f64, f64) {
    let n = (width as usize * height as usize).min(rgb.len() / 3);
    if n == 0 {
        return (0.0, 0.0);
    }
    let (mut sum, mut squares) = (0.0f64, 0.0f64);
    for px in rgb[..n * 3].chunks_exact(3) {
        let y = 0.299 * f64::from(px[0]) + 0.587 * f64::from(px[1]) + 0.114 * f64::from(px[2]);
        sum += y;
        squares += y * y;
    }
    let mean = sum / n as f64;
    let variance = (squares / n as f64 - mean * mean).max(0.0);
    (mean, variance.sqrt())
}

/// The video's best video stream, read one frame at a time.
struct FrameReader {
    path: PathBuf,
    input: format::context::Input,
    stream: usize,
    time_base: Rational,
    /// The stream's first timestamp, in seconds: tile times count from there.
    origin: f64,
    duration: f64,
    width: u32,
    height: u32,
    aspect: Rational,
    decoder: decoder::Video,
    /// Decoded into, then swapped with `last` (two frame buffers, whatever the video's length).
    scratch: frame::Video,
    last: frame::Video,
}

impl FrameReader {
    fn open(path: &Path) -> Result<FrameReader, SheetError> {
        let bad = |reason: String| SheetError::Video {
            video: path.to_owned(),
            reason,
        };
        let input =
            format::input(path).map_err(|e| bad(format!("not a video libav can read: {e}")))?;
        let stream = input
            .streams()
            .best(media::Type::Video)
            .ok_or_else(|| bad("no video stream".into()))?;
        let index = stream.index();
        let time_base = stream.time_base();
        if time_base.numerator() <= 0 || time_base.denominator() <= 0 {
            return Err(bad(format!(
                "the video stream's time base {time_base} is invalid"
            )));
        }
        let tb = f64::from(time_base);
        let origin = match stream.start_time() {
            ffmpeg::ffi::AV_NOPTS_VALUE => 0.0,
            t => t as f64 * tb,
        };
        let duration = [
            Some(input.duration())
                .filter(|d| *d > 0)
                .map(|d| d as f64 / f64::from(ffmpeg::ffi::AV_TIME_BASE)),
            Some(stream.duration())
                .filter(|d| *d > 0)
                .map(|d| d as f64 * tb),
        ]
        .into_iter()
        .flatten()
        .find(|d| d.is_finite())
        .ok_or_else(|| bad("the video's length is unknown".into()))?;
        let parameters = stream.parameters();
        let codec = decoder::find(parameters.id())
            .ok_or_else(|| bad(format!("no decoder for {:?}", parameters.id())))?;
        let mut options = Dictionary::new();
        options.set("max_pixels", &MAX_PIXELS.to_string());
        let decoder = codec::context::Context::from_parameters(parameters)
            .and_then(|c| c.decoder().open_as_with(codec, options))
            .and_then(|d| d.video())
            .map_err(|e| bad(format!("cannot decode the video stream: {e}")))?;
        let (width, height) = (decoder.width(), decoder.height());
        if width == 0 || height == 0 {
            return Err(bad("the video stream has no picture size".into()));
        }
        let aspect = decoder.aspect_ratio();
        Ok(FrameReader {
            path: path.to_owned(),
            input,
            stream: index,
            time_base,
            origin,
            duration,
            width,
            height,
            aspect,
            decoder,
            scratch: frame::Video::empty(),
            last: frame::Video::empty(),
        })
    }

    /// The first frame at or after `at` (seconds from the stream's start), or the last one
    /// decoded when the stream ends or gives up first (see [`OVERSHOOT`],
    /// [`MAX_PACKETS_PER_TILE`]), with the time it shows.
    fn frame_at(&mut self, at: f64) -> Result<(&frame::Video, f64), SheetError> {
        let target = self.origin + at;
        let ts = (target * f64::from(ffmpeg::ffi::AV_TIME_BASE)) as i64;
        // To the keyframe at or before the time; a file that cannot seek is read from its start.
        if self.input.seek(ts, ..ts).is_err() {
            self.input = format::input(&self.path).map_err(|e| SheetError::Video {
                video: self.path.clone(),
                reason: format!("reopening after a failed seek to {at:.3} s: {e}"),
            })?;
        }
        self.decoder.flush();
        let mut shown: Option<f64> = None;
        let mut packets = 0;
        let mut ended = false;
        while !ended && packets < MAX_PACKETS_PER_TILE {
            packets += 1;
            let mut packet = Packet::empty();
            match packet.read(&mut self.input) {
                Ok(()) => {}
                // The demuxer resyncs past a corrupt packet.
                Err(ffmpeg::Error::InvalidData) => continue,
                // The end, or an error that every later read repeats: what is decoded is all.
                Err(_) => {
                    ended = true;
                    let _ = self.decoder.send_eof();
                }
            }
            if !ended {
                let stamp = packet.pts().or(packet.dts());
                let past = self.input.stream(packet.stream()).and_then(|s| {
                    let tb = s.time_base();
                    stamp
                        .filter(|_| tb.numerator() > 0 && tb.denominator() > 0)
                        .map(|t| t as f64 * f64::from(tb))
                });
                if shown.is_some() && past.is_some_and(|p| p > target + OVERSHOOT) {
                    break;
                }
                if packet.stream() != self.stream {
                    continue;
                }
                // One corrupt packet is skipped; the next keyframe repairs the picture.
                if self.decoder.send_packet(&packet).is_err() {
                    continue;
                }
            }
            while self.decoder.receive_frame(&mut self.scratch).is_ok() {
                std::mem::swap(&mut self.scratch, &mut self.last);
                let t = self
                    .last
                    .timestamp()
                    .or(self.last.pts())
                    .map(|t| t as f64 * f64::from(self.time_base));
                // A frame without a time is taken to show the previous one's time.
                let t = t.or(shown).unwrap_or(self.origin);
                shown = Some(t);
                if t >= target {
                    return Ok((&self.last, t - self.origin));
                }
            }
        }
        match shown {
            Some(t) => Ok((&self.last, t - self.origin)),
            None => Err(SheetError::Video {
                video: self.path.clone(),
                reason: format!("no frame decodes near {at:.3} s"),
            }),
        }
    }
}

/// Scales decoded frames to packed RGB24 of the tile size; the converter is made again when the
/// frames' format or size changes (an untrusted stream may change both mid-way).
struct TileScaler {
    width: u32,
    height: u32,
    context: Option<(format::Pixel, u32, u32, ffmpeg::software::scaling::Context)>,
    rgb: frame::Video,
}

impl TileScaler {
    fn new(width: u32, height: u32) -> TileScaler {
        TileScaler {
            width,
            height,
            context: None,
            rgb: frame::Video::empty(),
        }
    }

    /// The frame as `width * height * 3` bytes, row after row.
    fn scale(&mut self, frame: &frame::Video) -> Result<Vec<u8>, String> {
        let key = (frame.format(), frame.width(), frame.height());
        if self
            .context
            .as_ref()
            .is_none_or(|(f, w, h, _)| (*f, *w, *h) != key)
        {
            let context = ffmpeg::software::scaling::Context::get(
                key.0,
                key.1,
                key.2,
                format::Pixel::RGB24,
                self.width,
                self.height,
                ffmpeg::software::scaling::Flags::AREA,
            )
            .map_err(|e| format!("no conversion from {:?} {}x{}: {e}", key.0, key.1, key.2))?;
            self.context = Some((key.0, key.1, key.2, context));
        }
        let Some((_, _, _, context)) = self.context.as_mut() else {
            return Err("no converter".into());
        };
        context
            .run(frame, &mut self.rgb)
            .map_err(|e| format!("scaling: {e}"))?;
        let row = self.width as usize * 3;
        let stride = self.rgb.stride(0);
        let data = self.rgb.data(0);
        let mut out = Vec::with_capacity(row * self.height as usize);
        for y in 0..self.height as usize {
            let line = data
                .get(y * stride..y * stride + row)
                .ok_or("a short scaled picture")?;
            out.extend_from_slice(line);
        }
        Ok(out)
    }
}

/// The sheet's picture, packed RGB24.
struct Canvas {
    width: u32,
    height: u32,
    rgb: Vec<u8>,
}

impl Canvas {
    fn new(width: u32, height: u32) -> Canvas {
        Canvas {
            width,
            height,
            rgb: vec![BACKGROUND; width as usize * height as usize * 3],
        }
    }

    /// Copies the packed `w` x `h` picture `tile` with its top left corner at (`x`, `y`).
    fn blit(&mut self, tile: &[u8], w: u32, h: u32, x: u32, y: u32) {
        let row = w as usize * 3;
        let canvas_row = self.width as usize * 3;
        for line in 0..h as usize {
            let from = line * row;
            let to = (y as usize + line) * canvas_row + x as usize * 3;
            if let (Some(src), Some(dst)) =
                (tile.get(from..from + row), self.rgb.get_mut(to..to + row))
            {
                dst.copy_from_slice(src);
            }
        }
    }
}

/// The canvas as one baseline JPEG, from libav's mjpeg encoder at [`QSCALE`].
fn encode_jpeg(canvas: &Canvas) -> Result<Vec<u8>, String> {
    let (w, h) = (canvas.width, canvas.height);
    let mut rgb = frame::Video::new(format::Pixel::RGB24, w, h);
    let row = w as usize * 3;
    let stride = rgb.stride(0);
    let data = rgb.data_mut(0);
    for (y, line) in canvas.rgb.chunks_exact(row).enumerate() {
        data[y * stride..y * stride + row].copy_from_slice(line);
    }
    // Full-range 4:2:0, as JPEG files are (mjpeg takes the J formats in libav 5.1).
    let mut yuv = frame::Video::new(format::Pixel::YUVJ420P, w, h);
    ffmpeg::software::scaling::Context::get(
        format::Pixel::RGB24,
        w,
        h,
        format::Pixel::YUVJ420P,
        w,
        h,
        ffmpeg::software::scaling::Flags::BILINEAR,
    )
    .and_then(|mut s| s.run(&rgb, &mut yuv))
    .map_err(|e| format!("colour conversion: {e}"))?;
    let codec = encoder::find(codec::Id::MJPEG).ok_or("libav has no mjpeg encoder")?;
    let mut enc = codec::context::Context::new_with_codec(codec)
        .encoder()
        .video()
        .map_err(|e| format!("mjpeg encoder: {e}"))?;
    enc.set_width(w);
    enc.set_height(h);
    enc.set_format(format::Pixel::YUVJ420P);
    enc.set_color_range(ffmpeg::color::Range::JPEG);
    // One picture; the encoder still wants a time base.
    enc.set_time_base(Rational(1, 1));
    // A fixed quantiser (ffmpeg's `-q:v`): the encoder takes each frame's own quality then.
    enc.set_flags(codec::Flags::QSCALE);
    enc.set_global_quality(QSCALE * QP2LAMBDA);
    let mut enc = enc
        .open_as(codec)
        .map_err(|e| format!("opening the mjpeg encoder: {e}"))?;
    yuv.set_pts(Some(0));
    // SAFETY: `yuv` is a valid frame we own; `quality` is a plain field read by the encoder.
    unsafe {
        (*yuv.as_mut_ptr()).quality = QSCALE * QP2LAMBDA;
    }
    enc.send_frame(&yuv)
        .and_then(|()| enc.send_eof())
        .map_err(|e| format!("encoding: {e}"))?;
    let mut jpeg = Vec::new();
    let mut packet = Packet::empty();
    while enc.receive_packet(&mut packet).is_ok() {
        jpeg.extend_from_slice(packet.data().unwrap_or_default());
    }
    if jpeg.is_empty() {
        return Err("the encoder gave no picture".into());
    }
    Ok(jpeg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::{Container, VideoSettings, VideoWriter};
    use fake_bbb::media::{BLUE, GREEN, RED, frames_rgb};

    const W: u32 = 320;
    const H: u32 = 180;

    /// A 10 fps H.264 video (the recorder's own encoder) showing each picture of `spans` for
    /// `seconds` seconds; a picture is the colour of each pixel from its position.
    fn video(path: &Path, spans: &[fn(u32, u32) -> [u8; 3]], seconds: u32) {
        crate::encode::init().unwrap();
        let settings = VideoSettings {
            width: W,
            height: H,
            fps: 10,
            container: Container::Mkv,
            crf: None,
            preset: None,
        };
        let mut writer = VideoWriter::create(path, &settings).unwrap();
        for paint in spans {
            let mut bgr0 = Vec::with_capacity((W * H * 4) as usize);
            for y in 0..H {
                for x in 0..W {
                    let [r, g, b] = paint(x, y);
                    bgr0.extend_from_slice(&[b, g, r, 0]);
                }
            }
            for i in 0..seconds * 10 {
                writer.write(&bgr0, (W * 4) as usize, i > 0).unwrap();
            }
        }
        writer.finish().unwrap();
    }

    /// The mean colour of the middle of tile `index` of the decoded sheet `picture`.
    fn middle_of_tile(
        picture: &(f64, u32, u32, Vec<u8>),
        sheet: &ContactSheet,
        index: u32,
    ) -> [f64; 3] {
        let (tw, th) = (sheet.tile_width, sheet.tile_height);
        let (x0, y0) = ((index % sheet.columns) * tw, (index / sheet.columns) * th);
        let mut sum = [0.0; 3];
        let mut n = 0.0;
        for y in y0 + th / 4..y0 + th * 3 / 4 {
            for x in x0 + tw / 4..x0 + tw * 3 / 4 {
                let i = ((y * picture.1 + x) * 3) as usize;
                for (c, total) in sum.iter_mut().enumerate() {
                    *total += f64::from(picture.3[i + c]);
                }
                n += 1.0;
            }
        }
        sum.map(|v| v / n)
    }

    fn near(colour: [f64; 3], expected: [u8; 3]) -> bool {
        (0..3).all(|c| (colour[c] - f64::from(expected[c])).abs() <= 30.0)
    }

    #[test]
    fn each_tile_shows_the_picture_at_its_time_and_changes_get_their_own_tiles() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("rgb.mkv");
        video(&input, &[|_, _| RED, |_, _| GREEN, |_, _| BLUE], 2);
        let out = dir.path().join("sheet.jpg");
        let sheet = make(&input, &[4.0, 2.0, 9.0], &out).unwrap();

        assert_eq!(
            (sheet.columns, sheet.tile_width, sheet.tile_height),
            (4, 320, 180)
        );
        assert!((sheet.duration - 6.0).abs() < 0.15, "{}", sheet.duration);
        assert_eq!(
            sheet.tiles.len(),
            10,
            "8 spread, 2 changes inside: {sheet:?}"
        );
        assert!(
            sheet.tiles.windows(2).all(|w| w[0].at <= w[1].at),
            "{sheet:?}"
        );
        let changes: Vec<f64> = sheet
            .tiles
            .iter()
            .filter(|t| t.kind == TileKind::Change)
            .map(|t| t.at)
            .collect();
        assert_eq!(changes.len(), 2, "{sheet:?}");
        for (at, change) in changes.iter().zip([2.0, 4.0]) {
            assert!(*at >= change + 0.2 && *at < change + 0.5, "{changes:?}");
        }

        let frames = frames_rgb(&out);
        assert_eq!(frames.len(), 1);
        let picture = &frames[0];
        assert_eq!((picture.1, picture.2), (4 * 320, 3 * 180));
        for (i, tile) in sheet.tiles.iter().enumerate() {
            let expected = [RED, GREEN, BLUE][((tile.at / 2.0) as usize).min(2)];
            let seen = middle_of_tile(picture, &sheet, i as u32);
            assert!(near(seen, expected), "tile {i} at {} s: {seen:?}", tile.at);
            assert!(tile.flat, "a solid colour is flat: {tile:?}");
        }
        // The two cells after the last tile are the grey background.
        for empty in 10..12 {
            let seen = middle_of_tile(picture, &sheet, empty);
            assert!(near(seen, [BACKGROUND; 3]), "cell {empty}: {seen:?}");
        }
        let red = sheet.tiles[0].luma;
        assert!((red - 79.8).abs() < 8.0, "the luma of red: {red}");
    }

    #[test]
    fn a_black_screen_is_flat_and_a_picture_with_content_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("black-then-split.mkv");
        video(
            &input,
            &[
                |_, _| [0; 3],
                |x, _| if x < W / 2 { [0; 3] } else { [255; 3] },
            ],
            3,
        );
        let out = dir.path().join("sheet.jpg");
        let sheet = make(&input, &[], &out).unwrap();
        assert_eq!(sheet.tiles.len(), 8);
        for tile in &sheet.tiles {
            if tile.at < 3.0 {
                assert!(tile.flat && tile.luma < 20.0, "black: {tile:?}");
            } else {
                assert!(
                    !tile.flat && (tile.luma - 127.5).abs() < 15.0,
                    "split: {tile:?}"
                );
            }
        }
        assert!(out.is_file());
    }

    #[test]
    fn what_is_not_a_video_fails_naming_it_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("lecture.mp4");
        std::fs::write(&text, b"<html>404 Not Found</html>").unwrap();
        let out = dir.path().join("sheet.jpg");
        let e = make(&text, &[1.0], &out).unwrap_err();
        assert!(matches!(e, SheetError::Video { .. }), "{e}");
        assert_eq!(e.class(), Class::Permanent);
        assert!(e.to_string().contains(text.to_str().unwrap()), "{e}");

        let e = make(&text, &[], &text).unwrap_err();
        assert!(matches!(e, SheetError::SameFile { .. }), "{e}");
        let e = make(&text, &[], &dir.path().join("no/such/dir/sheet.jpg")).unwrap_err();
        assert!(matches!(e, SheetError::NoDirectory { .. }), "{e}");

        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["lecture.mp4"], "nothing is left but the input");
        assert_eq!(std::fs::read(&text).unwrap(), b"<html>404 Not Found</html>");
    }

    #[test]
    fn eight_spread_tiles_and_the_first_four_changes_inside_come_sorted() {
        let plan = plan_tiles(
            80.0,
            &[70.0, -1.0, f64::NAN, 12.0, 80.0, 3.0, 12.0, 30.0, 50.0],
        );
        let spread: Vec<f64> = plan
            .iter()
            .filter(|(_, k)| *k == TileKind::Spread)
            .map(|(t, _)| *t)
            .collect();
        assert_eq!(spread, [5.0, 15.0, 25.0, 35.0, 45.0, 55.0, 65.0, 75.0]);
        let changes: Vec<f64> = plan
            .iter()
            .filter(|(_, k)| *k == TileKind::Change)
            .map(|(t, _)| *t)
            .collect();
        assert_eq!(changes, [3.25, 12.25, 30.25, 50.25]);
        assert!(plan.windows(2).all(|w| w[0].0 <= w[1].0), "{plan:?}");
    }

    #[test]
    fn a_change_at_the_very_end_stays_inside_the_video() {
        let plan = plan_tiles(6.0, &[5.9]);
        let change = plan.iter().find(|(_, k)| *k == TileKind::Change).unwrap();
        assert!(change.0 < 6.0 && change.0 >= 5.9, "{change:?}");
    }

    #[test]
    fn the_tile_height_follows_the_displayed_aspect_even_and_capped() {
        let square = Rational(1, 1);
        assert_eq!(tile_size(1280, 720, square), (320, 180));
        assert_eq!(tile_size(1920, 1080, Rational(0, 1)), (320, 180));
        assert_eq!(tile_size(640, 480, square), (320, 240));
        // Anamorphic 720x576 shown at 16:9.
        assert_eq!(tile_size(720, 576, Rational(64, 45)), (320, 180));
        assert_eq!(tile_size(100, 10_000, square), (320, MAX_TILE_HEIGHT));
        assert_eq!(tile_size(10_000, 10, square), (320, MIN_TILE_HEIGHT));
        let (_, h) = tile_size(1366, 768, square);
        assert_eq!(h % 2, 0);
    }

    #[test]
    fn luma_is_bt601_and_a_single_colour_has_no_spread() {
        let red = [255u8, 0, 0].repeat(4);
        let (mean, spread) = luma_stats(&red, 2, 2);
        assert!((mean - 76.245).abs() < 1e-9, "{mean}");
        assert!(spread < 1e-6);
        let half: Vec<u8> = [[0u8; 3], [255; 3]].concat().repeat(2);
        let (mean, spread) = luma_stats(&half, 2, 2);
        assert!((mean - 127.5).abs() < 1e-9);
        assert!(spread > FLAT_LUMA_STDDEV);
    }
}
