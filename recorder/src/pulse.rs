//! Sound of pages that are not BBB playbacks: a private PulseAudio server per recording with one
//! null sink, Chromium playing into it, and libavdevice's `pulse` input reading its monitor.
//!
//! Each recording starts its own server on its own socket (in a private temporary directory), so
//! parallel recordings never hear each other and nothing depends on a desktop session. The
//! captured sound is placed on the same media timeline as the picture: every packet carries the
//! wall-clock instant it was captured, mapped through the [`MediaClock`] to a sample position in a
//! WAV file whose first sample is the recording's start.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bbb_common::process::{GroupChild, Spawn};
use ffmpeg_next as ffmpeg;

use crate::capture::wall_now;
use crate::error::{Phase, RecordError};
use crate::timeline::{ClockReader, MediaClock, MediaTime, WallMicros};

/// The sink Chromium plays into; its monitor source is what we record.
const SINK: &str = "bbb_record";
/// Sample rate and channels of the sink and of the capture (the output encoders take 48 kHz).
pub const RATE: u32 = 48_000;
const CHANNELS: u32 = 2;
const BYTES_PER_SAMPLE: u64 = 2 * CHANNELS as u64;
/// 20 ms per packet: fine-grained timestamps without waking up too often.
const FRAGMENT_BYTES: u64 = RATE as u64 / 50 * BYTES_PER_SAMPLE;
/// Capture jitter below this is absorbed (the sound stays continuous); beyond it the sound is
/// placed where the media clock says (a stall or a jump of the page's clock).
const RESYNC_SAMPLES: i64 = RATE as i64 / 20;
const WAV_HEADER: u64 = 68;

/// Why no PulseAudio server could be had.
#[derive(Debug)]
pub enum PulseError {
    NotInstalled,
    Failed(String),
}

impl PulseError {
    pub fn into_record_error(self) -> RecordError {
        match self {
            PulseError::NotInstalled => RecordError::permanent(
                Phase::Audio,
                "pulseaudio is not installed (Debian package `pulseaudio`); use --audio none",
            ),
            PulseError::Failed(why) => RecordError::transient(Phase::Audio, why),
        }
    }
}

/// A private PulseAudio server with one null sink, stopped (with its process group) on drop.
pub struct PulseServer {
    process: GroupChild,
    socket: PathBuf,
    // Removed after the server is stopped (field order: `process` drops first).
    _dir: tempfile::TempDir,
}

impl PulseServer {
    /// Start a server and wait until it accepts clients.
    pub fn start() -> Result<PulseServer, PulseError> {
        let Some(program) = find_in_path("pulseaudio") else {
            return Err(PulseError::NotInstalled);
        };
        // Under /tmp, not beside the output: a Unix socket path must stay under 108 bytes.
        let dir = tempfile::Builder::new()
            .prefix("bbb-pulse-")
            .tempdir()
            .map_err(|e| PulseError::Failed(format!("creating the PulseAudio directory: {e}")))?;
        let socket = dir.path().join("native");
        let mut process = Spawn::new("PulseAudio", program)
            .args([
                // No default.pa: only the modules below, no hardware, no session bus needed.
                "-n",
                "--daemonize=no",
                "--use-pid-file=no",
                "--exit-idle-time=-1",
                "--disable-shm=yes",
                "--log-target=stderr",
                "--log-level=error",
            ])
            .arg(format!(
                "--load=module-native-protocol-unix socket={} auth-anonymous=1",
                socket.display()
            ))
            .arg(format!(
                "--load=module-null-sink sink_name={SINK} rate={RATE} channels={CHANNELS}"
            ))
            // Its state, cookie and runtime files stay in the private directory.
            .env("HOME", dir.path())
            .env("XDG_RUNTIME_DIR", dir.path())
            .env("PULSE_RUNTIME_PATH", dir.path().join("run"))
            .env("PULSE_STATE_PATH", dir.path().join("state"))
            .env_remove("DBUS_SESSION_BUS_ADDRESS")
            .env_remove("DISPLAY")
            .start()
            .map_err(|e| PulseError::Failed(format!("starting PulseAudio: {e}")))?;
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if UnixStream::connect(&socket).is_ok() {
                break;
            }
            if let Ok(Some(status)) = process.try_status() {
                return Err(PulseError::Failed(format!(
                    "PulseAudio {} at start; its stderr: {}",
                    bbb_common::process::describe_status(status),
                    process.stderr_tail()
                )));
            }
            if Instant::now() > deadline {
                return Err(PulseError::Failed(format!(
                    "PulseAudio did not open its socket within 15 s; its stderr: {}",
                    process.stderr_tail()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(PulseServer {
            process,
            socket,
            _dir: dir,
        })
    }

    /// The server address for clients (`PULSE_SERVER`, libavdevice's `server` option).
    pub fn address(&self) -> String {
        format!("unix:{}", self.socket.display())
    }

    /// Environment for a client that should play into this server's sink.
    pub fn client_env(&self) -> Vec<(String, String)> {
        vec![
            ("PULSE_SERVER".into(), self.address()),
            ("PULSE_SINK".into(), SINK.into()),
        ]
    }

    /// `None` while running, else how it ended.
    pub fn exited(&mut self) -> Option<String> {
        match self.process.try_status() {
            Ok(Some(status)) => Some(format!(
                "PulseAudio {}; its stderr: {}",
                bbb_common::process::describe_status(status),
                self.process.stderr_tail()
            )),
            _ => None,
        }
    }
}

impl Drop for PulseServer {
    fn drop(&mut self) {
        let _ = self.process.terminate(Duration::from_secs(2));
    }
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    which::which(name).ok()
}

/// The sink's sound being written to a WAV file on the media timeline.
pub struct SoundCapture {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<u64, RecordError>>>,
    path: PathBuf,
}

impl SoundCapture {
    /// Record the monitor of `server`'s sink into `path`; sample 0 is media time `start`.
    pub fn start(
        server: &PulseServer,
        clock: Arc<Mutex<MediaClock>>,
        start: f64,
        path: &Path,
    ) -> Result<SoundCapture, RecordError> {
        crate::encode::init()?;
        let format = ffmpeg::device::input::audio()
            .find(|f| f.name() == "pulse")
            .ok_or_else(|| {
                RecordError::permanent(
                    Phase::Audio,
                    "libavdevice has no pulse input (install Debian's libavdevice)",
                )
            })?;
        let mut opts = ffmpeg::Dictionary::new();
        opts.set("server", &server.address());
        opts.set("sample_rate", &RATE.to_string());
        opts.set("channels", &CHANNELS.to_string());
        opts.set("fragment_size", &FRAGMENT_BYTES.to_string());
        opts.set("stream_name", "bbb-record");
        let context = ffmpeg::format::open_with(&format!("{SINK}.monitor"), &format, opts)
            .map_err(|e| {
                RecordError::transient(Phase::Audio, format!("opening the PulseAudio monitor: {e}"))
            })?;
        let input = match context {
            ffmpeg::format::context::Context::Input(i) => i,
            ffmpeg::format::context::Context::Output(_) => unreachable!("opened as input"),
        };
        let stream = input
            .streams()
            .best(ffmpeg::media::Type::Audio)
            .ok_or_else(|| {
                RecordError::transient(Phase::Audio, "PulseAudio gave no audio stream")
            })?;
        if stream.parameters().id() != ffmpeg::codec::Id::PCM_S16LE {
            return Err(RecordError::transient(
                Phase::Audio,
                format!(
                    "PulseAudio gave {:?}, not 16-bit PCM",
                    stream.parameters().id()
                ),
            ));
        }
        let index = stream.index();
        let tb = stream.time_base();
        let file = File::create(path).map_err(|e| {
            RecordError::transient(Phase::Audio, format!("creating {}: {e}", path.display()))
        })?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let reader = clock.lock().unwrap_or_else(|e| e.into_inner()).reader();
        let thread = std::thread::Builder::new()
            .name("pulse".into())
            .spawn(move || {
                let mut input = input;
                let mut placer = Placer::new(file, start);
                capture_loop(&mut input, index, tb, (&clock, reader), &mut placer, &flag)?;
                Ok(placer.written)
            })
            .map_err(|e| RecordError::transient(Phase::Audio, format!("sound thread: {e}")))?;
        Ok(SoundCapture {
            stop,
            thread: Some(thread),
            path: path.to_owned(),
        })
    }

    /// Whether the capture thread ended by itself (an error: it runs until stopped).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Stop and close the WAV file at exactly `duration` seconds (silence where nothing played).
    pub fn finish(mut self, duration: f64) -> Result<PathBuf, RecordError> {
        self.stop.store(true, Ordering::SeqCst);
        let thread = self.thread.take().expect("joined once");
        let written = thread
            .join()
            .map_err(|_| RecordError::transient(Phase::Audio, "the sound thread panicked"))??;
        tracing::debug!(written, "sound samples captured");
        let samples = (duration * f64::from(RATE)).round().max(0.0) as u64;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .open(&self.path)
            .and_then(|mut f| {
                f.set_len(WAV_HEADER + samples * BYTES_PER_SAMPLE)?;
                f.write_all(&wav_header(samples))?;
                Ok(f)
            })
            .map_err(|e| RecordError::transient(Phase::Audio, format!("writing the sound: {e}")))?;
        file.flush()
            .map_err(|e| RecordError::transient(Phase::Audio, format!("writing the sound: {e}")))?;
        Ok(self.path.clone())
    }
}

impl Drop for SoundCapture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn capture_loop(
    input: &mut ffmpeg::format::context::Input,
    index: usize,
    tb: ffmpeg::Rational,
    (clock, reader): (&Mutex<MediaClock>, ClockReader),
    placer: &mut Placer,
    stop: &AtomicBool,
) -> Result<(), RecordError> {
    let to_micros = |pts: i64| -> WallMicros { (pts as f64 * f64::from(tb) * 1e6) as i64 };
    let mut queue: std::collections::VecDeque<(WallMicros, Vec<u8>)> = Default::default();
    loop {
        let stopping = stop.load(Ordering::SeqCst);
        if !stopping {
            let mut packet = ffmpeg::Packet::empty();
            match packet.read(input) {
                Ok(()) if packet.stream() == index => {
                    if let Some(data) = packet.data() {
                        let wall = packet.pts().map(to_micros).unwrap_or_else(wall_now);
                        queue.push_back((wall, data.to_vec()));
                    }
                }
                Ok(()) => {}
                Err(ffmpeg::Error::Other { errno }) if errno == libc::EAGAIN => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => {
                    return Err(RecordError::transient(
                        Phase::Audio,
                        format!("reading PulseAudio: {e} (did the sound server die?)"),
                    ));
                }
            }
        }
        // Once stopping, the clock holds every report there will be: decide the rest.
        let now = if stopping {
            WallMicros::MAX / 2
        } else {
            wall_now()
        };
        let mut clock = clock.lock().unwrap_or_else(|e| e.into_inner());
        while let Some((wall, _)) = queue.front() {
            match clock.media_at_instant(*wall, now) {
                MediaTime::Before => {
                    queue.pop_front();
                }
                MediaTime::Pending => break,
                MediaTime::At(media) => {
                    let (_, data) = queue.pop_front().expect("front exists");
                    placer.place(media, &data)?;
                }
            }
        }
        if stopping {
            return Ok(());
        }
        // Packets are stamped when they reached the sink, a fragment (tens of ms) before they
        // are read: a second's margin covers a delayed read.
        let oldest = queue.front().map_or(now, |(wall, _)| *wall);
        clock.done_before(reader, oldest - 1_000_000);
    }
}

/// Writes PCM packets at their media-time positions in the WAV file.
struct Placer {
    file: File,
    start: f64,
    /// Next sample position when the sound is continuous.
    cursor: Option<i64>,
    written: u64,
}

impl Placer {
    fn new(file: File, start: f64) -> Placer {
        Placer {
            file,
            start,
            cursor: None,
            written: 0,
        }
    }

    fn place(&mut self, media: f64, data: &[u8]) -> Result<(), RecordError> {
        let expected = ((media - self.start) * f64::from(RATE)).round() as i64;
        let at = match self.cursor {
            Some(c) if (expected - c).abs() <= RESYNC_SAMPLES => c,
            Some(c) => {
                tracing::debug!(
                    media,
                    moved = expected - c,
                    "sound placed by the media clock"
                );
                expected
            }
            None => expected,
        };
        let samples = (data.len() as u64 / BYTES_PER_SAMPLE) as i64;
        self.cursor = Some(at + samples);
        // Sound from before the start is cut.
        let skip = (-at).clamp(0, samples);
        if skip == samples {
            return Ok(());
        }
        let bytes = &data[(skip as u64 * BYTES_PER_SAMPLE) as usize
            ..(samples as u64 * BYTES_PER_SAMPLE) as usize];
        let offset = WAV_HEADER + (at + skip) as u64 * BYTES_PER_SAMPLE;
        self.file
            .write_all_at(bytes, offset)
            .map_err(|e| RecordError::transient(Phase::Audio, format!("writing the sound: {e}")))?;
        self.written += (samples - skip) as u64;
        Ok(())
    }
}

/// A WAVE_FORMAT_EXTENSIBLE header: 16-bit PCM, [`RATE`] Hz, `samples` sample frames, with the
/// stereo channel mask (a plain PCM header leaves libav's decoder without a channel layout).
fn wav_header(samples: u64) -> [u8; WAV_HEADER as usize] {
    // A WAV's sizes are 32-bit: past ~6 h 12 min at 48 kHz stereo they saturate, which libav's
    // demuxer reads as "to the end of the file".
    let data = u32::try_from(samples * BYTES_PER_SAMPLE).unwrap_or(u32::MAX - 60);
    let mut h = Vec::with_capacity(WAV_HEADER as usize);
    h.extend_from_slice(b"RIFF");
    h.extend_from_slice(&(data + 60).to_le_bytes());
    h.extend_from_slice(b"WAVEfmt ");
    h.extend_from_slice(&40u32.to_le_bytes());
    h.extend_from_slice(&0xFFFEu16.to_le_bytes());
    h.extend_from_slice(&(CHANNELS as u16).to_le_bytes());
    h.extend_from_slice(&RATE.to_le_bytes());
    h.extend_from_slice(&(RATE * BYTES_PER_SAMPLE as u32).to_le_bytes());
    h.extend_from_slice(&(BYTES_PER_SAMPLE as u16).to_le_bytes());
    h.extend_from_slice(&16u16.to_le_bytes());
    h.extend_from_slice(&22u16.to_le_bytes());
    h.extend_from_slice(&16u16.to_le_bytes());
    // Front left | front right.
    h.extend_from_slice(&3u32.to_le_bytes());
    // KSDATAFORMAT_SUBTYPE_PCM.
    h.extend_from_slice(&[
        0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B,
        0x71,
    ]);
    h.extend_from_slice(b"data");
    h.extend_from_slice(&data.to_le_bytes());
    h.try_into().expect("68 bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placer() -> (tempfile::TempDir, Placer, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.wav");
        let file = File::create(&path).unwrap();
        (dir, Placer::new(file, 10.0), path)
    }

    fn packet(samples: usize, value: i16) -> Vec<u8> {
        std::iter::repeat_n(value.to_le_bytes(), samples * 2)
            .flatten()
            .collect()
    }

    fn sample_at(path: &Path, index: u64) -> i16 {
        let bytes = std::fs::read(path).unwrap();
        let o = (WAV_HEADER + index * BYTES_PER_SAMPLE) as usize;
        i16::from_le_bytes([bytes[o], bytes[o + 1]])
    }

    #[test]
    fn jitter_is_absorbed_and_a_jump_is_followed() {
        let (_d, mut p, path) = placer();
        // 960 samples at media 10.0, then the next packet reported 5 ms late: stays contiguous.
        p.place(10.0, &packet(960, 1)).unwrap();
        p.place(10.025, &packet(960, 2)).unwrap();
        assert_eq!(sample_at(&path, 959), 1);
        assert_eq!(sample_at(&path, 960), 2);
        // A jump of one second: placed where the clock says, silence between.
        p.place(11.5, &packet(960, 3)).unwrap();
        assert_eq!(sample_at(&path, 72_000), 3);
        assert_eq!(sample_at(&path, 40_000), 0);
        assert_eq!(p.written, 2880);
    }

    #[test]
    fn sound_before_the_start_is_cut() {
        let (_d, mut p, path) = placer();
        // Starts 10 ms (480 samples) before media 10.0.
        p.place(9.99, &packet(960, 7)).unwrap();
        assert_eq!(sample_at(&path, 0), 7);
        assert_eq!(sample_at(&path, 479), 7);
        assert_eq!(p.written, 480);
        p.place(5.0, &packet(960, 9)).unwrap();
        assert_eq!(p.written, 480, "entirely before the start");
    }

    #[test]
    fn header_describes_the_samples() {
        let h = wav_header(48_000);
        assert_eq!(&h[0..4], b"RIFF");
        assert_eq!(&h[60..64], b"data");
        assert_eq!(u32::from_le_bytes(h[64..68].try_into().unwrap()), 192_000);
        assert_eq!(u32::from_le_bytes(h[24..28].try_into().unwrap()), 48_000);
    }
}
