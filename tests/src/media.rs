//! Reading recorded files back for tests and benchmarks: streams and durations, decoded frames
//! and the colours they show, the audio and its tone, plus the sample recordings' known facts
//! (ids, lengths, colours; samples/README.md) and process/directory checks.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::FakeBbb;
use ffmpeg_next as ffmpeg;

pub const SAMPLE_A: &str = "2e7380bcd2a9cc83f2a744b8707a7f75c0a94e9d-1767261600000";
pub const SAMPLE_B: &str = "b38698825dc7f8bf25f50930cbd8207d770a1609-1767265200000";
pub const SAMPLE_C: &str = "b52a07e307e4ae680c470b70ae91cdfe83b3eda3-1767268800000";
/// BBB 2.7 whiteboard (tldraw v1), 8 s.
pub const SAMPLE_F: &str = "d3b87f0c63068b03147f1cfc427458543bd3829d-1767279600000";
/// BBB 3.0 whiteboard (tldraw v2), 8 s.
pub const SAMPLE_G: &str = "9ab2ee57ac366300603eddd020ff006cf7d6e661-1767283200000";
/// Sample A's media length (metadata.xml `<duration>`, the webcams file's length).
pub const SAMPLE_A_SECONDS: f64 = 15.008;
pub const SAMPLE_B_SECONDS: f64 = 8.008;
pub const SAMPLE_F_SECONDS: f64 = 8.008;
pub const SAMPLE_G_SECONDS: f64 = 8.008;

/// Recordings are CPU-heavy (Chromium + encoder on 2 cores): tests that record take this lock so
/// that only the test that means to run two at once does so.
pub static HEAVY: Mutex<()> = Mutex::new(());

pub fn heavy() -> std::sync::MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(|e| e.into_inner())
}

/// The bundled samples directory of this workspace.
pub fn samples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples")
}

pub fn server() -> FakeBbb {
    FakeBbb::builder()
        .samples_dir(samples_dir())
        .start_blocking()
        .expect("fake BBB server starts")
}

/// What the output file holds.
#[derive(Debug)]
pub struct Probe {
    pub container: String,
    pub duration: f64,
    pub video_codec: String,
    pub width: u32,
    pub height: u32,
    pub fps: f64,
    pub video_frames: u64,
    pub video_duration: f64,
    pub audio_codec: Option<String>,
    pub audio_duration: f64,
}

pub fn probe(path: &Path) -> Probe {
    ffmpeg::init().unwrap();
    let mut input = ffmpeg::format::input(path).expect("open output");
    let container = input.format().name().to_owned();
    let duration = input.duration() as f64 / f64::from(ffmpeg::ffi::AV_TIME_BASE);
    let v = input
        .streams()
        .best(ffmpeg::media::Type::Video)
        .expect("video stream");
    let vi = v.index();
    let vtb = v.time_base();
    let vctx = ffmpeg::codec::context::Context::from_parameters(v.parameters()).unwrap();
    let vdec = vctx.decoder().video().unwrap();
    let (width, height) = (vdec.width(), vdec.height());
    let video_codec = vdec
        .codec()
        .map(|c| c.name().to_owned())
        .unwrap_or_default();
    let rate = v.avg_frame_rate();
    let fps = f64::from(rate);
    let audio = input.streams().best(ffmpeg::media::Type::Audio).map(|a| {
        let ctx = ffmpeg::codec::context::Context::from_parameters(a.parameters()).unwrap();
        let dec = ctx.decoder().audio().unwrap();
        (
            a.index(),
            a.time_base(),
            dec.codec().map(|c| c.name().to_owned()).unwrap_or_default(),
        )
    });
    let mut video_frames = 0;
    let mut video_end: f64 = 0.0;
    let mut audio_end: f64 = 0.0;
    for (stream, packet) in input.packets() {
        let end = |tb: ffmpeg::Rational| {
            (packet.pts().unwrap_or(0) + packet.duration()) as f64 * f64::from(tb)
        };
        if stream.index() == vi {
            video_frames += 1;
            video_end = video_end.max(end(vtb));
        } else if let Some((ai, atb, _)) = &audio
            && stream.index() == *ai
        {
            audio_end = audio_end.max(end(*atb));
        }
    }
    Probe {
        container,
        duration,
        video_codec,
        width,
        height,
        fps,
        video_frames,
        video_duration: video_end,
        audio_codec: audio.map(|a| a.2),
        audio_duration: audio_end,
    }
}

/// Decodes every frame of `path` to RGB24 (scaled to `size`, else at its own size) and hands
/// each to `each` with its presentation time (seconds), one at a time.
fn for_each_frame(
    path: &Path,
    size: Option<(u32, u32)>,
    mut each: impl FnMut(f64, u32, u32, Vec<u8>),
) {
    ffmpeg::init().unwrap();
    let mut input = ffmpeg::format::input(path).unwrap();
    let v = input.streams().best(ffmpeg::media::Type::Video).unwrap();
    let vi = v.index();
    let tb = v.time_base();
    let mut dec = ffmpeg::codec::context::Context::from_parameters(v.parameters())
        .unwrap()
        .decoder()
        .video()
        .unwrap();
    let mut scaler = None;
    let mut take = |dec: &mut ffmpeg::decoder::Video| {
        let mut frame = ffmpeg::frame::Video::empty();
        while dec.receive_frame(&mut frame).is_ok() {
            let (w, h) = size.unwrap_or((frame.width(), frame.height()));
            let sc = scaler.get_or_insert_with(|| {
                ffmpeg::software::scaling::Context::get(
                    frame.format(),
                    frame.width(),
                    frame.height(),
                    ffmpeg::format::Pixel::RGB24,
                    w,
                    h,
                    ffmpeg::software::scaling::Flags::BILINEAR,
                )
                .unwrap()
            });
            let mut rgb = ffmpeg::frame::Video::empty();
            sc.run(&frame, &mut rgb).unwrap();
            let stride = rgb.stride(0);
            let mut data = Vec::with_capacity((w * h * 3) as usize);
            for y in 0..h as usize {
                data.extend_from_slice(&rgb.data(0)[y * stride..y * stride + w as usize * 3]);
            }
            let t = frame.timestamp().unwrap_or(0) as f64 * f64::from(tb);
            each(t, w, h, data);
        }
    };
    for (stream, packet) in input.packets() {
        if stream.index() == vi {
            dec.send_packet(&packet).unwrap();
            take(&mut dec);
        }
    }
    dec.send_eof().unwrap();
    take(&mut dec);
}

/// Decoded RGB24 frames with their presentation times (seconds).
pub fn frames_rgb(path: &Path) -> Vec<(f64, u32, u32, Vec<u8>)> {
    let mut out = Vec::new();
    for_each_frame(path, None, |t, w, h, data| out.push((t, w, h, data)));
    out
}

/// Decoded RGB24 frames `indices` (in decoding order, 0-based) of `path`, in that order; only
/// those are kept, so a few frames of a long file cost little memory.
pub fn frames_rgb_at(path: &Path, indices: &[usize]) -> Vec<(f64, u32, u32, Vec<u8>)> {
    let mut kept = Vec::new();
    let mut k = 0;
    for_each_frame(path, None, |t, w, h, data| {
        if indices.contains(&k) {
            kept.push((k, (t, w, h, data)));
        }
        k += 1;
    });
    indices
        .iter()
        .map(|i| {
            let at = kept
                .iter()
                .position(|(j, _)| j == i)
                .unwrap_or_else(|| panic!("{} has no frame {i}", path.display()));
            kept[at].1.clone()
        })
        .collect()
}

/// How many frames apart a picture change may land in a real-time recording: 100 ms at 30 fps,
/// the tolerance the real-time tests hold it to (on a loaded machine a change lands up to that
/// far from its media time).
pub const REAL_TIME_WINDOW: usize = 3;

/// How two recordings of the same playback differ, picture by picture: for each frame `k` of `a`,
/// the mean absolute difference (0-255, over every channel of the pictures scaled to 320x180)
/// to the closest of frames `k - window ..= k + window` of `b` (a change lands up to
/// [`REAL_TIME_WINDOW`] frames from its time in a real-time recording), and to frame `k` itself.
/// Frames `b` lacks count as 255.
pub fn picture_differences(a: &Path, b: &Path, window: usize) -> Vec<FrameDifference> {
    let small = |path: &Path| {
        let mut out = Vec::new();
        for_each_frame(path, Some((320, 180)), |_, _, _, data| out.push(data));
        out
    };
    let (a, b) = (small(a), small(b));
    let mean = |x: &[u8], y: &[u8]| {
        x.iter()
            .zip(y)
            .map(|(p, q)| f64::from(p.abs_diff(*q)))
            .sum::<f64>()
            / x.len() as f64
    };
    (0..a.len())
        .map(|k| {
            let at = |j: usize| b.get(j).map_or(255.0, |other| mean(&a[k], other));
            let same = at(k);
            let near = (k.saturating_sub(window)..=k + window)
                .map(at)
                .fold(f64::INFINITY, f64::min);
            FrameDifference {
                frame: k,
                near,
                same,
            }
        })
        .collect()
}

/// One frame's entry of [`picture_differences`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrameDifference {
    pub frame: usize,
    /// To the closest of the other recording's frames `k - window ..= k + window`.
    pub near: f64,
    /// To the other recording's frame `k`.
    pub same: f64,
}

/// Named colours of the samples (samples/README.md).
pub const RED: [u8; 3] = [220, 20, 20];
pub const GREEN: [u8; 3] = [20, 180, 20];
pub const BLUE: [u8; 3] = [20, 20, 220];
pub const MAGENTA: [u8; 3] = [255, 0, 255];
pub const YELLOW: [u8; 3] = [230, 200, 20];
pub const CYAN: [u8; 3] = [20, 200, 200];
/// The whiteboard strokes of samples F and G: tldraw v1 red (#ff2133) and v2 red (#e03131) are
/// both within [`share_of`]'s distance of it.
pub const STROKE_RED: [u8; 3] = [240, 40, 50];

/// Fraction of the picture's pixels within a small distance of `colour`.
pub fn share_of(frame: &(f64, u32, u32, Vec<u8>), colour: [u8; 3]) -> f64 {
    let px = frame.3.chunks_exact(3);
    let n = px.len() as f64;
    let close = px
        .filter(|p| (0..3).all(|i| (i32::from(p[i]) - i32::from(colour[i])).abs() <= 40))
        .count() as f64;
    close / n
}

/// The share of the pixels in the region (fractions of the width and height, `x0..x1`,
/// `y0..y1`) that differ from the region's most common colour by more than 40 in a channel: near 0
/// for a plain background, high for a video (ffmpeg's testsrc) or text.
pub fn spread_in(frame: &(f64, u32, u32, Vec<u8>), x: (f64, f64), y: (f64, f64)) -> f64 {
    let (w, h) = (frame.1 as usize, frame.2 as usize);
    let xs = (x.0 * w as f64) as usize..((x.1 * w as f64) as usize).min(w);
    let ys = (y.0 * h as f64) as usize..((y.1 * h as f64) as usize).min(h);
    let mut counts: std::collections::HashMap<[u8; 3], usize> = std::collections::HashMap::new();
    let mut px = Vec::new();
    for yy in ys {
        for xx in xs.clone() {
            let i = (yy * w + xx) * 3;
            let p = [frame.3[i], frame.3[i + 1], frame.3[i + 2]];
            *counts.entry(p).or_default() += 1;
            px.push(p);
        }
    }
    let Some((common, _)) = counts.into_iter().max_by_key(|(_, n)| *n) else {
        return 0.0;
    };
    let far = px
        .iter()
        .filter(|p| (0..3).any(|i| (i32::from(p[i]) - i32::from(common[i])).abs() > 40))
        .count();
    far as f64 / px.len() as f64
}

/// Which of `colours` covers most of the picture (and at least 5 % of it).
pub fn dominant(
    frame: &(f64, u32, u32, Vec<u8>),
    colours: &[(&'static str, [u8; 3])],
) -> Option<&'static str> {
    colours
        .iter()
        .map(|(name, c)| (*name, share_of(frame, *c)))
        .filter(|(_, s)| *s >= 0.05)
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(n, _)| n)
}

pub fn frame_at(frames: &[(f64, u32, u32, Vec<u8>)], t: f64) -> &(f64, u32, u32, Vec<u8>) {
    frames
        .iter()
        .min_by(|a, b| (a.0 - t).abs().total_cmp(&(b.0 - t).abs()))
        .expect("frames")
}

/// Decoded mono audio (first channel) as f32, with its sample rate.
pub fn audio_samples(path: &Path) -> (u32, Vec<f32>) {
    ffmpeg::init().unwrap();
    let mut input = ffmpeg::format::input(path).unwrap();
    let a = input
        .streams()
        .best(ffmpeg::media::Type::Audio)
        .expect("audio stream");
    let ai = a.index();
    let mut dec = ffmpeg::codec::context::Context::from_parameters(a.parameters())
        .unwrap()
        .decoder()
        .audio()
        .unwrap();
    let mut out = Vec::new();
    let mut rate = 0;
    let take = |dec: &mut ffmpeg::decoder::Audio, out: &mut Vec<f32>, rate: &mut u32| {
        let mut frame = ffmpeg::frame::Audio::empty();
        while dec.receive_frame(&mut frame).is_ok() {
            *rate = frame.rate();
            let n = frame.samples();
            match frame.format() {
                ffmpeg::format::Sample::F32(ffmpeg::format::sample::Type::Planar) => {
                    out.extend_from_slice(&frame.plane::<f32>(0)[..n])
                }
                ffmpeg::format::Sample::F32(ffmpeg::format::sample::Type::Packed) => {
                    let ch = usize::from(frame.channels());
                    let data = frame.data(0);
                    for i in 0..n {
                        let o = i * ch * 4;
                        out.push(f32::from_ne_bytes(data[o..o + 4].try_into().unwrap()));
                    }
                }
                other => panic!("unexpected sample format {other:?}"),
            }
        }
    };
    for (stream, packet) in input.packets() {
        if stream.index() == ai {
            dec.send_packet(&packet).unwrap();
            take(&mut dec, &mut out, &mut rate);
        }
    }
    dec.send_eof().unwrap();
    take(&mut dec, &mut out, &mut rate);
    (rate, out)
}

/// Below this level (-54 dBFS) a sample counts as neither side of zero: the codec's near-silent
/// noise after a track's abrupt end flips sign many times per millisecond, and must not read as a
/// higher pitch. Every tone the tests measure is far louder (rms above 0.02).
const CROSSING_HYSTERESIS: f32 = 0.002;

/// Frequency (Hz) of a steady tone in `samples`, from rising zero crossings (with hysteresis:
/// from below `-CROSSING_HYSTERESIS` to above `+CROSSING_HYSTERESIS`); and the RMS level.
pub fn tone(samples: &[f32], rate: u32) -> (f64, f64) {
    let mut crossings = 0usize;
    let mut below = false;
    for &s in samples {
        if s < -CROSSING_HYSTERESIS {
            below = true;
        } else if s > CROSSING_HYSTERESIS && below {
            crossings += 1;
            below = false;
        }
    }
    let rms = (samples
        .iter()
        .map(|s| f64::from(*s) * f64::from(*s))
        .sum::<f64>()
        / samples.len().max(1) as f64)
        .sqrt();
    (
        crossings as f64 * f64::from(rate) / samples.len().max(1) as f64,
        rms,
    )
}

/// Share of the 100 ms windows of `samples` (from `from` seconds on) that hold a tone of `hz`
/// (within 2 %) at a level above 0.02 (-34 dBFS). A browser starved of CPU glitches now and then, which moves
/// a window or two; mixed or missing sound moves them all.
pub fn share_with_tone(samples: &[f32], rate: u32, from: f64, hz: f64) -> f64 {
    let window = rate as usize / 10;
    let windows: Vec<bool> = samples[(from * f64::from(rate)) as usize..]
        .chunks_exact(window)
        .map(|w| {
            let (f, rms) = tone(w, rate);
            (f - hz).abs() < hz * 0.02 && rms > 0.02
        })
        .collect();
    windows.iter().filter(|ok| **ok).count() as f64 / windows.len().max(1) as f64
}

/// Resident memory of `pid` in bytes (0 once it is gone).
pub fn rss_of(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Every descendant of `root`, from /proc's parent links.
pub fn descendants(root: u32) -> Vec<u32> {
    let mut links: Vec<(u32, u32)> = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            && let Some((_, rest)) = stat.rsplit_once(')')
            && let Some(ppid) = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok())
        {
            links.push((pid, ppid));
        }
    }
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        out.extend(links.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    out.remove(0);
    out
}

/// Processes whose command line mentions `needle` (to prove nothing survived a recording).
pub fn processes_with(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let zombie = stat
            .rsplit_once(')')
            .is_some_and(|(_, r)| r.trim_start().starts_with('Z'));
        if !zombie && cmd.contains(needle) {
            found.push(format!("{pid}: {cmd}"));
        }
    }
    found
}

/// Entries of a directory (names), to prove no temporary file was left behind.
pub fn dir_entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// The start time of process `pid` (clock ticks since boot, /proc/PID/stat field 22) and whether
/// it is a zombie; `None` once it is gone.
fn process_identity(pid: u32) -> Option<(u64, bool)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let zombie = fields.first() == Some(&"Z");
    let start = fields.get(19)?.parse().ok()?;
    Some((start, zombie))
}

/// Every process that ran under a recorder, by ancestry, sampled every 50 ms while it runs: the
/// Xvfb, Chromium and PulseAudio children run in process groups of their own and name nothing of
/// the test in their command lines, so only their ancestry tells they were the recorder's.
pub struct ProcessWatch {
    seen: std::sync::Arc<Mutex<std::collections::BTreeMap<(u32, u64), String>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ProcessWatch {
    pub fn start(root: u32) -> Self {
        let seen = std::sync::Arc::new(Mutex::new(std::collections::BTreeMap::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = {
            let (seen, stop) = (seen.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    for pid in descendants(root) {
                        if let Some((start, false)) = process_identity(pid) {
                            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"))
                                .unwrap_or_default()
                                .trim()
                                .to_owned();
                            // The latest name wins: a child first seen between fork and exec
                            // still has the name of the thread that forked it ("keeper-Xvfb").
                            seen.lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .insert((pid, start), comm);
                        }
                    }
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
            })
        };
        ProcessWatch {
            seen,
            stop,
            thread: Some(thread),
        }
    }

    /// The names (`comm`) of the processes seen so far.
    pub fn names(&self) -> Vec<String> {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<String> = seen.values().cloned().collect();
        v.sort();
        v.dedup();
        v
    }

    /// Stops watching; the processes seen that still run (same pid and start time, not a
    /// zombie), as `pid name`.
    pub fn survivors(&mut self) -> Vec<String> {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.iter()
            .filter(|((pid, start), _)| process_identity(*pid) == Some((*start, false)))
            .map(|((pid, _), name)| format!("{pid} {name}"))
            .collect()
    }
}

impl ProcessWatch {
    /// Waits up to `grace` for every process seen to be gone, and panics with the survivors;
    /// and checks that `expected` (a process name, e.g. `Xvfb`) was among those seen, so that the
    /// check is not vacuous.
    pub fn assert_none_survive(&mut self, expected: &str, grace: std::time::Duration) {
        assert!(
            self.names().iter().any(|n| n == expected),
            "{expected} never ran: {:?}",
            self.names()
        );
        let deadline = std::time::Instant::now() + grace;
        loop {
            let left = self.survivors();
            if left.is_empty() {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "processes left: {left:#?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

impl Drop for ProcessWatch {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The Xauthority file `bbb-record` with process id `pid` writes for its Xvfb display.
pub fn xauthority_of(pid: u32) -> PathBuf {
    std::env::temp_dir().join(format!("bbb-record-{pid}.xauth"))
}

/// The dominant colour (of `colours`, see [`dominant`]) of every frame of `path`, with its time,
/// decoded one frame at a time and scaled down (fit for a 10-minute file).
pub fn frame_colours(
    path: &Path,
    colours: &[(&'static str, [u8; 3])],
) -> Vec<(f64, Option<&'static str>)> {
    let mut out = Vec::new();
    for_each_frame(path, Some((160, 90)), |t, w, h, data| {
        out.push((t, dominant(&(t, w, h, data), colours)));
    });
    out
}

/// The times at which the dominant colour changes (from one of `colours` to another).
pub fn picture_changes(path: &Path, colours: &[(&'static str, [u8; 3])]) -> Vec<f64> {
    let mut changes = Vec::new();
    let mut last = None;
    for (t, now) in frame_colours(path, colours) {
        if now.is_some() && last.is_some() && now != last {
            changes.push(t);
        }
        if now.is_some() {
            last = now;
        }
    }
    changes
}

/// The onsets (seconds) of the beeps in otherwise silent `samples`: the first sample above 0.03
/// of full scale, at most one per second (sample D: a 1 kHz beep at every slide change).
pub fn beep_onsets(samples: &[f32], rate: u32) -> Vec<f64> {
    let mut beeps = Vec::new();
    let mut quiet_until = 0usize;
    for (i, s) in samples.iter().enumerate() {
        if i >= quiet_until && s.abs() > 0.03 {
            beeps.push(i as f64 / f64::from(rate));
            quiet_until = i + rate as usize;
        }
    }
    beeps
}

/// Sample D's slide colours, in their order (samples/README.md "Sample D").
pub const SAMPLE_D_SLIDES: [(&str, [u8; 3]); 6] = [
    ("red", RED),
    ("green", GREEN),
    ("blue", BLUE),
    ("yellow", YELLOW),
    ("cyan", CYAN),
    ("magenta", [200, 20, 200]),
];

/// For each picture change of `path` (slide colours `colours`), the beep nearest to it (within
/// 1 s): `(picture change, picture - sound)` in seconds; positive when the picture is late.
pub fn av_offsets(path: &Path, colours: &[(&'static str, [u8; 3])]) -> Vec<(f64, f64)> {
    let changes = picture_changes(path, colours);
    let (rate, samples) = audio_samples(path);
    let beeps = beep_onsets(&samples, rate);
    changes
        .iter()
        .filter_map(|p| {
            beeps
                .iter()
                .map(|b| p - b)
                .min_by(|a, b| a.abs().total_cmp(&b.abs()))
                .filter(|d| d.abs() < 1.0)
                .map(|d| (*p, d))
        })
        .collect()
}

/// Generates sample D (`samples/generate.sh long`) of `length` (`"10"` minutes, or `"20s"`)
/// under `site/recordings`, with the players linked beside it, and returns its record id.
pub fn generate_sample_d(site: &Path, length: &str) -> String {
    std::fs::create_dir_all(site).unwrap();
    let player = site.join("player");
    if !player.exists() {
        std::os::unix::fs::symlink(samples_dir().join("player"), &player).unwrap();
    }
    let status = std::process::Command::new("bash")
        .arg(samples_dir().join("generate.sh"))
        .args(["long", site.join("recordings").to_str().unwrap(), length])
        .stdout(std::process::Stdio::null())
        .status()
        .expect("bash");
    assert!(status.success(), "generate.sh long {length}");
    use sha1::Digest as _;
    let digest = sha1::Sha1::digest(format!("bbb-sample-long-{length}").as_bytes());
    format!("{}-1767272400000", hex::encode(digest))
}
