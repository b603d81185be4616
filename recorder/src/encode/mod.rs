//! libav encoding and muxing: the live video encoder, the audio cut and transcode, the final
//! container, and the output's atomic placement. Knows nothing of Chromium or the player.
//!
//! Output lifecycle (`recorder/design/output.md`): while capturing, video is encoded once, live, into
//! an intermediate Matroska file in the work directory (Matroska stays readable if we are killed).
//! At the end the encoded video packets are copied, not re-encoded, into the final container
//! together with the audio cut from the recording's own media, written to a temporary file beside
//! the destination, fsynced, renamed over the destination name, and the directory fsynced.

mod repeat;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use ffmpeg::{ChannelLayout, Dictionary, Packet, Rational, codec, encoder, format, frame, media};
use ffmpeg_next as ffmpeg;

use crate::error::{Context as _, Phase, RecordError};

/// Output containers, chosen from the destination's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    /// H.264 + AAC, moov atom at the front.
    Mp4,
    /// VP8 + Opus.
    Webm,
    /// H.264 + AAC in Matroska.
    Mkv,
}

impl Container {
    pub fn from_path(path: &Path) -> Option<Container> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "mp4" | "m4v" => Some(Container::Mp4),
            "webm" => Some(Container::Webm),
            "mkv" => Some(Container::Mkv),
            _ => None,
        }
    }

    fn muxer(self) -> &'static str {
        match self {
            Container::Mp4 => "mp4",
            Container::Webm => "webm",
            Container::Mkv => "matroska",
        }
    }

    fn video_codec(self) -> &'static str {
        match self {
            Container::Mp4 | Container::Mkv => "libx264",
            Container::Webm => "libvpx",
        }
    }

    fn audio_codec(self) -> &'static str {
        match self {
            // Opus in MP4 is unplayable in many players (bbb-playback.md, "Capture facts").
            Container::Mp4 | Container::Mkv => "aac",
            Container::Webm => "libopus",
        }
    }
}

/// Video encoding settings.
#[derive(Debug, Clone)]
pub struct VideoSettings {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub container: Container,
    pub crf: Option<u32>,
    pub preset: Option<String>,
}

/// Initialise libav once (codecs, formats and input devices such as x11grab and pulse).
pub fn init() -> Result<(), RecordError> {
    static INIT: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    INIT.get_or_init(|| {
        ffmpeg::init().map_err(|e| e.to_string())?;
        ffmpeg::device::register_all();
        ffmpeg::log::set_level(ffmpeg::log::Level::Error);
        Ok(())
    })
    .clone()
    .map_err(|e| RecordError::transient(Phase::Setup, format!("libav: {e}")))
}

/// The live encoder: BGR0 screen frames in, an intermediate video-only Matroska file out.
pub struct VideoWriter {
    octx: format::context::Output,
    encoder: encoder::Video,
    yuv: frame::Video,
    time_base: Rational,
    stream_time_base: Rational,
    frames: u64,
    path: PathBuf,
    /// H.264: unchanged frames are written as repeats instead of being encoded (`repeat`).
    repeater: Option<repeat::Repeater>,
    /// Output frames not written yet, in order: each waits for the encoder's packets before it.
    pending: VecDeque<Pending>,
    /// H.264: the keyframe interval is kept here, in output frames (the encoder does not see
    /// the repeats, so its own count would stretch it over a still slide).
    keyframes: Option<Keyframes>,
}

/// An output frame on its way to the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    /// Sent to the encoder, whose packet for it has not come out yet.
    Encoded(i64),
    /// A repeat of the previous picture.
    Repeat(i64),
}

/// When the next frame must be a keyframe.
#[derive(Debug, Clone, Copy)]
struct Keyframes {
    every: u64,
    last: u64,
}

/// Converts a BGR0 picture (`stride` bytes per row) into the YUV 4:2:0 frame `yuv`, BT.601
/// limited range: the conversion libswscale made by default, so pictures keep their colours.
/// libswscale has no special case for 4-byte BGR input and took about 5 ms a 720p picture here
/// (18% of a fast recording's CPU with a webcam moving); yuvutils-rs's SIMD converter reads
/// the picture where it lies, without the copy into a libav frame the scaler needed.
fn to_yuv420(bgr0: &[u8], stride: usize, yuv: &mut frame::Video) -> Result<(), RecordError> {
    use yuvutils_rs::{BufferStoreMut, YuvConversionMode, YuvPlanarImageMut, YuvRange};
    let (width, height) = (yuv.width(), yuv.height());
    let strides = [yuv.stride(0), yuv.stride(1), yuv.stride(2)];
    let planes: [(*mut u8, usize); 3] = [0, 1, 2].map(|i| {
        let plane = yuv.data_mut(i);
        (plane.as_mut_ptr(), plane.len())
    });
    // SAFETY: the frame's three planes are disjoint regions of its buffers, each as long as
    // `data_mut` gave it, and `yuv` is not touched again while the slices live.
    let [y, u, v] = planes.map(|(at, len)| unsafe { std::slice::from_raw_parts_mut(at, len) });
    let mut image = YuvPlanarImageMut {
        y_plane: BufferStoreMut::Borrowed(y),
        y_stride: strides[0] as u32,
        u_plane: BufferStoreMut::Borrowed(u),
        u_stride: strides[1] as u32,
        v_plane: BufferStoreMut::Borrowed(v),
        v_stride: strides[2] as u32,
        width,
        height,
    };
    yuvutils_rs::bgra_to_yuv420(
        &mut image,
        bgr0,
        stride as u32,
        YuvRange::Limited,
        yuvutils_rs::YuvStandardMatrix::Bt601,
        YuvConversionMode::Balanced,
    )
    .map_err(|e| RecordError::transient(Phase::Encode, format!("colour conversion: {e}")))
}

/// x264 settings under which a repeat can be written without encoding (`repeat`'s module doc):
/// no B-frames, one reference, CAVLC, no weighted prediction, and keyframes forced by us.
/// Measured with libx264 `veryfast` on a 1-minute 1280x720 picture with a moving 320x240 webcam
/// tile: 4.6% more bytes (312 KB against 298 KB) and 14% less CPU for the encoded frames; a
/// still minute drops from 4.6 CPU-s to next to nothing.
const X264_REPEATABLE: &str = "bframes=0:ref=1:cabac=0:weightp=0:keyint=infinite";

impl VideoWriter {
    pub fn create(path: &Path, settings: &VideoSettings) -> Result<VideoWriter, RecordError> {
        let ph = Phase::Encode;
        let mut octx =
            format::output_as(path, "matroska").transient(ph, "creating the video file")?;
        let codec = encoder::find_by_name(settings.container.video_codec()).ok_or_else(|| {
            RecordError::permanent(
                ph,
                format!(
                    "libav has no {} encoder (install Debian's libavcodec with it)",
                    settings.container.video_codec()
                ),
            )
        })?;
        let time_base = Rational(1, settings.fps as i32);
        let mut enc = codec::context::Context::new_with_codec(codec)
            .encoder()
            .video()
            .transient(ph, "video encoder")?;
        enc.set_width(settings.width);
        enc.set_height(settings.height);
        enc.set_format(format::Pixel::YUV420P);
        enc.set_time_base(time_base);
        enc.set_frame_rate(Some(Rational(settings.fps as i32, 1)));
        // A keyframe every 10 s: cheap on static slides, still seekable.
        enc.set_gop(settings.fps * 10);
        enc.set_flags(codec::Flags::GLOBAL_HEADER);
        let mut opts = Dictionary::new();
        match settings.container.video_codec() {
            "libx264" => {
                opts.set("preset", settings.preset.as_deref().unwrap_or("veryfast"));
                opts.set("crf", &settings.crf.unwrap_or(23).to_string());
                // Screen content: no B-frame reordering latency, and the frame-type decision stays
                // cheap on the long runs of identical frames a static slide produces.
                opts.set("tune", "stillimage");
                opts.set("x264-params", X264_REPEATABLE);
                opts.set("forced-idr", "1");
            }
            _ => {
                opts.set("deadline", "realtime");
                opts.set("cpu-used", settings.preset.as_deref().unwrap_or("8"));
                opts.set("crf", &settings.crf.unwrap_or(10).to_string());
                opts.set("b", "2M");
            }
        }
        let encoder = enc
            .open_with(opts)
            .transient(ph, "opening the video encoder")?;
        let h264 = settings.container.video_codec() == "libx264";
        let repeater = if h264 {
            match repeat::Repeater::new(extradata(&encoder)) {
                Ok(r) => Some(r),
                Err(why) => {
                    tracing::debug!("unchanged frames are encoded: {why}");
                    None
                }
            }
        } else {
            None
        };
        {
            let mut stream = octx.add_stream(codec).transient(ph, "video stream")?;
            stream.set_parameters(&encoder);
            stream.set_time_base(time_base);
        }
        octx.write_header()
            .transient(ph, "writing the video header")?;
        let stream_time_base = octx.stream(0).map(|s| s.time_base()).unwrap_or(time_base);
        Ok(VideoWriter {
            octx,
            encoder,
            yuv: frame::Video::new(format::Pixel::YUV420P, settings.width, settings.height),
            time_base,
            stream_time_base,
            frames: 0,
            path: path.to_owned(),
            repeater,
            pending: VecDeque::new(),
            keyframes: h264.then_some(Keyframes {
                every: u64::from(settings.fps) * 10,
                last: 0,
            }),
        })
    }

    /// Encode one output frame from a BGR0 picture (`stride` bytes per row). `unchanged` says the
    /// picture is the same as the previous frame's: the colour conversion is skipped then.
    pub fn write(
        &mut self,
        bgr0: &[u8],
        stride: usize,
        unchanged: bool,
    ) -> Result<(), RecordError> {
        let slot = self.frames as i64;
        let key = self
            .keyframes
            .is_some_and(|k| self.frames == 0 || self.frames - k.last >= k.every);
        if unchanged && self.frames > 0 && !key && self.repeater.is_some() {
            self.pending.push_back(Pending::Repeat(slot));
            self.frames += 1;
            return self.drain();
        }
        if !unchanged || self.frames == 0 {
            to_yuv420(bgr0, stride, &mut self.yuv)?;
        }
        self.yuv.set_pts(Some(slot));
        if let Some(k) = self.keyframes.as_mut() {
            if key {
                k.last = self.frames;
            }
            self.yuv.set_kind(if key {
                ffmpeg::picture::Type::I
            } else {
                ffmpeg::picture::Type::None
            });
        }
        self.encoder
            .send_frame(&self.yuv)
            .transient(Phase::Encode, "encoding a frame")?;
        if self.repeater.is_some() {
            self.pending.push_back(Pending::Encoded(slot));
        }
        self.frames += 1;
        self.drain()
    }

    /// Writes what is ready, in output order: the encoder's packets as they come out, and the
    /// repeats queued behind them.
    fn drain(&mut self) -> Result<(), RecordError> {
        let mut packet = Packet::empty();
        loop {
            while let Some(&Pending::Repeat(slot)) = self.pending.front() {
                self.pending.pop_front();
                let data = self.repeater.as_mut().expect("repeats need it").repeat();
                let mut repeat = Packet::copy(&data);
                repeat.set_pts(Some(slot));
                repeat.set_dts(Some(slot));
                repeat.set_duration(1);
                self.write_packet(repeat)?;
            }
            if self.encoder.receive_packet(&mut packet).is_err() {
                return Ok(());
            }
            let Some(repeater) = self.repeater.as_mut() else {
                // No repeats: the packets go out in the encoder's order (B-frames reorder).
                let taken = std::mem::replace(&mut packet, Packet::empty());
                self.write_packet(taken)?;
                continue;
            };
            match self.pending.pop_front() {
                Some(Pending::Encoded(slot)) if packet.pts() == Some(slot) => {}
                other => {
                    return Err(RecordError::transient(
                        Phase::Encode,
                        format!(
                            "the encoder gave frame {:?} where frame {other:?} was due",
                            packet.pts()
                        ),
                    ));
                }
            }
            let data = repeater
                .renumber(packet.data().unwrap_or_default())
                .map_err(|e| {
                    RecordError::transient(Phase::Encode, format!("renumbering a frame: {e}"))
                })?;
            let mut renumbered = Packet::copy(&data);
            renumbered.set_pts(packet.pts());
            renumbered.set_dts(packet.dts());
            renumbered.set_duration(packet.duration());
            renumbered.set_flags(packet.flags());
            self.write_packet(renumbered)?;
        }
    }

    fn write_packet(&mut self, mut packet: Packet) -> Result<(), RecordError> {
        packet.set_stream(0);
        packet.rescale_ts(self.time_base, self.stream_time_base);
        packet
            .write_interleaved(&mut self.octx)
            .transient(Phase::Encode, "writing video")
    }

    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Flush the encoder and close the file; returns its path and the number of frames.
    pub fn finish(mut self) -> Result<(PathBuf, u64), RecordError> {
        self.encoder
            .send_eof()
            .transient(Phase::Encode, "flushing the encoder")?;
        self.drain()?;
        if let Some(left) = self.pending.front() {
            return Err(RecordError::transient(
                Phase::Encode,
                format!("the encoder ended before frame {left:?}"),
            ));
        }
        self.octx
            .write_trailer()
            .transient(Phase::Encode, "closing the video file")?;
        Ok((self.path, self.frames))
    }
}

/// The opened encoder's global header (H.264: its SPS and PPS).
fn extradata(encoder: &encoder::Video) -> &[u8] {
    // SAFETY: the codec context is open and owned by `encoder`, which outlives the slice;
    // libav sets `extradata`/`extradata_size` when it opens an encoder with GLOBAL_HEADER and
    // does not change them afterwards.
    unsafe {
        let ctx = encoder.as_ptr();
        if (*ctx).extradata.is_null() || (*ctx).extradata_size <= 0 {
            return &[];
        }
        std::slice::from_raw_parts((*ctx).extradata, (*ctx).extradata_size as usize)
    }
}

/// The recording's own sound, to be cut to the recorded media interval.
#[derive(Debug, Clone)]
pub struct AudioCut {
    /// A file with an audio stream (the webcams or audio media of the recording).
    pub source: PathBuf,
    /// Media time (seconds) of the first output sample.
    pub start: f64,
    /// Length (seconds) of the output.
    pub duration: f64,
}

/// Facts about the written output.
#[derive(Debug, Clone)]
pub struct MuxReport {
    pub video_frames: u64,
    pub audio_samples: u64,
}

const AUDIO_RATE: i32 = 48_000;

/// Write the final file: the encoded video copied from `video`, plus `audio` cut and encoded.
pub fn mux(
    video: &Path,
    audio: Option<&AudioCut>,
    container: Container,
    out: &Path,
) -> Result<MuxReport, RecordError> {
    let ph = Phase::Mux;
    let mut ictx = format::input(video).transient(ph, "reading the encoded video")?;
    let mut octx =
        format::output_as(out, container.muxer()).transient(ph, "creating the output")?;
    let (video_index, video_tb) = {
        let ist = ictx
            .streams()
            .best(media::Type::Video)
            .ok_or_else(|| RecordError::transient(ph, "no video in the intermediate file"))?;
        let mut ost = octx
            .add_stream(encoder::find(codec::Id::None))
            .transient(ph, "output video stream")?;
        ost.set_parameters(ist.parameters());
        // SAFETY: resetting the codec tag of parameters we own; the muxer picks its own tag.
        unsafe {
            (*ost.parameters().as_mut_ptr()).codec_tag = 0;
        }
        (ist.index(), ist.time_base())
    };
    let mut audio_track = match audio {
        Some(cut) => Some(AudioTrack::open(cut, container, &mut octx)?),
        None => None,
    };
    let mut opts = Dictionary::new();
    if container == Container::Mp4 {
        // The moov atom at the front: the file starts playing before it is fully downloaded.
        opts.set("movflags", "+faststart");
    }
    octx.write_header_with(opts)
        .transient(ph, "writing the output header")?;
    let video_out_tb = octx.stream(0).map(|s| s.time_base()).unwrap_or(video_tb);
    let audio_out_tb = octx.stream(1).map(|s| s.time_base());
    let mut video_frames = 0;
    for (stream, mut packet) in ictx.packets() {
        if stream.index() != video_index {
            continue;
        }
        let seconds = packet.pts().unwrap_or(0) as f64 * f64::from(video_tb);
        packet.set_stream(0);
        packet.set_position(-1);
        packet.rescale_ts(video_tb, video_out_tb);
        packet
            .write_interleaved(&mut octx)
            .transient(ph, "writing video")?;
        video_frames += 1;
        if let (Some(track), Some(tb)) = (audio_track.as_mut(), audio_out_tb) {
            // Keep the audio about a second ahead of the video so the interleaving stays tight.
            track.pump_until(seconds + 1.0, &mut octx, tb)?;
        }
    }
    let mut audio_samples = 0;
    if let (Some(mut track), Some(tb)) = (audio_track.take(), audio_out_tb) {
        track.pump_until(f64::INFINITY, &mut octx, tb)?;
        audio_samples = track.finish(&mut octx, tb)?;
    }
    octx.write_trailer().transient(ph, "closing the output")?;
    Ok(MuxReport {
        video_frames,
        audio_samples,
    })
}

/// Decodes the source audio, places its samples on the output timeline by their timestamps
/// (silence where the source has none), and encodes exactly `duration` seconds.
struct AudioTrack {
    input: format::context::Input,
    stream_index: usize,
    stream_tb: Rational,
    decoder: ffmpeg::decoder::Audio,
    resampler: Option<ffmpeg::software::resampling::Context>,
    encoder: encoder::Audio,
    planar: bool,
    frame_size: usize,
    /// Interleaved stereo f32 samples not yet encoded; `pending[0]` is output sample `cursor`.
    pending: Vec<f32>,
    cursor: u64,
    total: u64,
    encoded: u64,
    start: f64,
    source_done: bool,
    label: String,
}

impl AudioTrack {
    fn open(
        cut: &AudioCut,
        container: Container,
        octx: &mut format::context::Output,
    ) -> Result<AudioTrack, RecordError> {
        let ph = Phase::Audio;
        let label = cut.source.display().to_string();
        let input = format::input(&cut.source).transient(ph, "opening the recording's media")?;
        let ist = input.streams().best(media::Type::Audio).ok_or_else(|| {
            RecordError::permanent(
                ph,
                format!("the recording's media {label} has no audio track"),
            )
        })?;
        let stream_index = ist.index();
        let stream_tb = ist.time_base();
        let decoder = codec::context::Context::from_parameters(ist.parameters())
            .transient(ph, "audio decoder")?
            .decoder()
            .audio()
            .transient(ph, "audio decoder")?;
        let codec = encoder::find_by_name(container.audio_codec()).ok_or_else(|| {
            RecordError::permanent(
                ph,
                format!("libav has no {} encoder", container.audio_codec()),
            )
        })?;
        let planar = container.audio_codec() == "aac";
        let sample_format = if planar {
            format::Sample::F32(format::sample::Type::Planar)
        } else {
            format::Sample::F32(format::sample::Type::Packed)
        };
        let mut enc = codec::context::Context::new_with_codec(codec)
            .encoder()
            .audio()
            .transient(ph, "audio encoder")?;
        enc.set_rate(AUDIO_RATE);
        enc.set_channel_layout(ChannelLayout::STEREO);
        enc.set_format(sample_format);
        enc.set_bit_rate(128_000);
        enc.set_time_base(Rational(1, AUDIO_RATE));
        if octx.format().flags().contains(format::Flags::GLOBAL_HEADER) {
            enc.set_flags(codec::Flags::GLOBAL_HEADER);
        }
        let encoder = enc
            .open_as(codec)
            .transient(ph, "opening the audio encoder")?;
        {
            let mut ost = octx
                .add_stream(codec)
                .transient(ph, "output audio stream")?;
            ost.set_parameters(&encoder);
            ost.set_time_base(Rational(1, AUDIO_RATE));
        }
        let frame_size = match encoder.frame_size() {
            0 => 1024,
            n => n as usize,
        };
        Ok(AudioTrack {
            input,
            stream_index,
            stream_tb,
            decoder,
            resampler: None,
            encoder,
            planar,
            frame_size,
            pending: Vec::new(),
            cursor: 0,
            total: (cut.duration * f64::from(AUDIO_RATE)).round().max(0.0) as u64,
            encoded: 0,
            start: cut.start,
            source_done: false,
            label,
        })
    }

    /// Decode and encode until the output reaches `seconds` (or the source ends).
    fn pump_until(
        &mut self,
        seconds: f64,
        octx: &mut format::context::Output,
        out_tb: Rational,
    ) -> Result<(), RecordError> {
        while !self.source_done
            && (self.cursor as f64 + (self.pending.len() / 2) as f64) / f64::from(AUDIO_RATE)
                < seconds
            && self.cursor + (self.pending.len() / 2) as u64 <= self.total
        {
            let mut packet = Packet::empty();
            match packet.read(&mut self.input) {
                Ok(()) => {
                    if packet.stream() != self.stream_index {
                        continue;
                    }
                    // A corrupt packet in hours of audio must not end the recording: skip it.
                    if let Err(e) = self.decoder.send_packet(&packet) {
                        tracing::warn!(source = %self.label, "skipping an undecodable audio packet: {e}");
                        continue;
                    }
                }
                Err(ffmpeg::Error::Eof) => {
                    let _ = self.decoder.send_eof();
                    self.source_done = true;
                }
                Err(e) => {
                    return Err(RecordError::transient(
                        Phase::Audio,
                        format!("reading {}: {e}", self.label),
                    ));
                }
            }
            let mut decoded = frame::Audio::empty();
            while self.decoder.receive_frame(&mut decoded).is_ok() {
                self.take_decoded(&decoded)?;
            }
            self.encode_ready(octx, out_tb, false)?;
        }
        self.encode_ready(octx, out_tb, false)
    }

    fn take_decoded(&mut self, decoded: &frame::Audio) -> Result<(), RecordError> {
        let ph = Phase::Audio;
        if self.resampler.is_none() {
            let layout = if decoded.channel_layout().bits() == 0 {
                ChannelLayout::default(i32::from(decoded.channels()))
            } else {
                decoded.channel_layout()
            };
            self.resampler = Some(
                ffmpeg::software::resampling::Context::get(
                    decoded.format(),
                    layout,
                    decoded.rate(),
                    format::Sample::F32(format::sample::Type::Packed),
                    ChannelLayout::STEREO,
                    AUDIO_RATE as u32,
                )
                .transient(ph, "audio resampler")?,
            );
        }
        // A new reference to the decoded samples, not `clone()`: ffmpeg-next's clone allocates by
        // the channel layout, which is empty for some sources, and then copies into nothing.
        let mut input = frame::Audio::empty();
        // SAFETY: both pointers are valid frames; `input` owns the new reference and unrefs it
        // when dropped.
        if unsafe { ffmpeg::ffi::av_frame_ref(input.as_mut_ptr(), decoded.as_ptr()) } < 0 {
            return Err(RecordError::transient(ph, "referencing decoded audio"));
        }
        if input.channel_layout().bits() == 0 {
            input.set_channel_layout(ChannelLayout::default(i32::from(decoded.channels())));
        }
        let mut converted = frame::Audio::empty();
        self.resampler
            .as_mut()
            .expect("set above")
            .run(&input, &mut converted)
            .transient(ph, "resampling audio")?;
        let n = converted.samples();
        if n == 0 {
            return Ok(());
        }
        let samples: &[(f32, f32)] = &converted.plane::<(f32, f32)>(0)[..n];
        // Where these samples belong on the output timeline, from the source timestamps (the
        // webcams file starts at -7 ms: a naive transcode would shift the sound late).
        let end = self.cursor + (self.pending.len() / 2) as u64;
        let position = decoded.pts().map(|pts| {
            let t = pts as f64 * f64::from(self.stream_tb) - self.start;
            (t * f64::from(AUDIO_RATE)).round() as i64
        });
        let mut skip = 0usize;
        if let Some(pos) = position {
            let drift = pos - end as i64;
            // Follow the timestamps only when they disagree by more than 20 ms (a gap or an
            // overlap in the source); tiny rounding differences are not worth a discontinuity.
            if drift > 960 {
                self.pending
                    .extend(std::iter::repeat_n(0.0, drift as usize * 2));
            } else if drift < -960 || (end == 0 && drift < 0) {
                skip = (-drift) as usize;
            }
        }
        for &(l, r) in samples.iter().skip(skip) {
            self.pending.push(l);
            self.pending.push(r);
        }
        Ok(())
    }

    fn encode_ready(
        &mut self,
        octx: &mut format::context::Output,
        out_tb: Rational,
        flush: bool,
    ) -> Result<(), RecordError> {
        loop {
            let left = self.total.saturating_sub(self.cursor) as usize;
            if left == 0 {
                self.pending.clear();
                return Ok(());
            }
            let available = self.pending.len() / 2;
            let n = self.frame_size.min(left);
            if available < n {
                if !flush {
                    return Ok(());
                }
                // End of source: pad with silence up to the full length.
                self.pending.resize(n * 2, 0.0);
            }
            let mut out = frame::Audio::new(
                if self.planar {
                    format::Sample::F32(format::sample::Type::Planar)
                } else {
                    format::Sample::F32(format::sample::Type::Packed)
                },
                n,
                ChannelLayout::STEREO,
            );
            out.set_rate(AUDIO_RATE as u32);
            if self.planar {
                for ch in 0..2 {
                    let plane = out.plane_mut::<f32>(ch);
                    for (dst, pair) in plane[..n].iter_mut().zip(self.pending.chunks_exact(2)) {
                        *dst = pair[ch];
                    }
                }
            } else {
                let plane = out.plane_mut::<(f32, f32)>(0);
                for (dst, pair) in plane[..n].iter_mut().zip(self.pending.chunks_exact(2)) {
                    *dst = (pair[0], pair[1]);
                }
            }
            out.set_pts(Some(self.cursor as i64));
            self.pending.drain(..n * 2);
            self.cursor += n as u64;
            self.encoder
                .send_frame(&out)
                .transient(Phase::Audio, "encoding audio")?;
            self.drain(octx, out_tb)?;
        }
    }

    fn drain(
        &mut self,
        octx: &mut format::context::Output,
        out_tb: Rational,
    ) -> Result<(), RecordError> {
        let mut packet = Packet::empty();
        while self.encoder.receive_packet(&mut packet).is_ok() {
            packet.set_stream(1);
            packet.rescale_ts(Rational(1, AUDIO_RATE), out_tb);
            packet
                .write_interleaved(octx)
                .transient(Phase::Mux, "writing audio")?;
            self.encoded += 1;
        }
        Ok(())
    }

    fn finish(
        mut self,
        octx: &mut format::context::Output,
        out_tb: Rational,
    ) -> Result<u64, RecordError> {
        self.encode_ready(octx, out_tb, true)?;
        self.encoder
            .send_eof()
            .transient(Phase::Audio, "flushing audio")?;
        self.drain(octx, out_tb)?;
        Ok(self.cursor)
    }
}

/// Where the output is written before it is renamed into place: beside the destination, so the
/// rename is atomic, and hidden, so watchers ignoring dot-files never see it.
pub fn temporary_output_path(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "output".into());
    let ext = dest
        .extension()
        .map(|e| e.to_string_lossy().into_owned())
        .unwrap_or_default();
    dest.with_file_name(format!(".{name}.{}.partial.{ext}", std::process::id()))
}

/// Puts the finished output in place durably (fsync, rename, directory fsync).
pub fn place(tmp: &Path, dest: &Path) -> Result<(), RecordError> {
    bbb_common::durable::rename_into(tmp, dest)
        .map_err(|e| RecordError::transient(Phase::Place, format!("placing the output: {e}")))
}

#[cfg(test)]
mod tests;
