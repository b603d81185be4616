//! Reads the duration of a finished output file (MP4/M4V/MOV, WebM/Matroska) and checks that the
//! file is whole, so that no job succeeds with an empty, truncated or wrong-length file. Owns the
//! length tolerance. Knows nothing of jobs, the ledger or HTTP.
//!
//! Pure Rust and bounds-checked on purpose: the migrator does not link libav (see Cargo.toml),
//! and the files come from other servers; a libav bug on a hostile file would take the whole
//! batch worker down, while a malformed box here is only an error. Only the container's own
//! length fields are read (MP4 `moov/mvhd`, Matroska `Segment/Info/Duration`), never a stream.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// The most of one `moov` (MP4) or `Info` (Matroska) element read into memory. Real ones are a
/// few hundred KiB for hours of media (sample tables); more is a hostile or broken file.
const MAX_HEADER: u64 = 64 << 20;

/// How far an output's duration may differ from the expected one: max(2 s, 1 %). Two seconds
/// cover what a container adds or drops at the ends (AAC priming, the last frame's length, a
/// recorder stopping on its next frame); 1 % covers the drift a multi-hour capture may keep.
pub fn tolerance(expected_secs: f64) -> f64 {
    (expected_secs * 0.01).max(2.0)
}

/// Whether `actual` matches `expected` within [`tolerance`].
pub fn matches(expected_secs: f64, actual_secs: f64) -> bool {
    (actual_secs - expected_secs).abs() <= tolerance(expected_secs)
}

/// The window that a getRecordings `<length>` of `minutes` allows. It gives whole minutes, and
/// servers differ in how they get there (BBB divides the milliseconds, rounding down; importers
/// and older versions round or round up), so the true length is anywhere within one minute of
/// 60 L; the window is that, widened by the tolerance at each end.
pub fn minutes_window(minutes: u64) -> (f64, f64) {
    let lo = (minutes as f64 - 1.0).max(0.0) * 60.0;
    let hi = (minutes as f64 + 1.0) * 60.0;
    ((lo - tolerance(lo)).max(0.0), hi + tolerance(hi))
}

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("empty file")]
    Empty,
    #[error("not an MP4 or WebM/Matroska file (starts with {0})")]
    Unknown(String),
    #[error("truncated: {0}")]
    Truncated(String),
    #[error("malformed: {0}")]
    Malformed(String),
}

/// The duration in seconds of the file at `path`, after checking that its container is whole
/// (every top-level MP4 box, or the Matroska segment, ends within the file).
pub fn duration(path: &Path) -> Result<f64, MediaError> {
    let mut f = File::open(path)?;
    let len = f.metadata()?.len();
    if len == 0 {
        return Err(MediaError::Empty);
    }
    let mut head = [0u8; 12];
    let n = read_up_to(&mut f, &mut head)?;
    let head = &head[..n];
    if head.starts_with(&[0x1A, 0x45, 0xDF, 0xA3]) {
        return matroska(&mut f, len);
    }
    if n >= 8 && is_box_type(&head[4..8]) {
        return iso_bmff(&mut f, len);
    }
    Err(MediaError::Unknown(
        head.iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(" "),
    ))
}

fn read_up_to(f: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Top-level box types an MP4/MOV file may start with.
fn is_box_type(t: &[u8]) -> bool {
    matches!(
        t,
        b"ftyp" | b"moov" | b"mdat" | b"free" | b"skip" | b"wide" | b"pnot"
    )
}

fn read_exact_at(f: &mut File, at: u64, n: u64) -> Result<Vec<u8>, MediaError> {
    f.seek(SeekFrom::Start(at))?;
    let mut buf = vec![0u8; n as usize];
    f.read_exact(&mut buf)?;
    Ok(buf)
}

fn be(b: &[u8]) -> u64 {
    b.iter().fold(0, |v, x| (v << 8) | u64::from(*x))
}

fn iso_bmff(f: &mut File, len: u64) -> Result<f64, MediaError> {
    let mut at = 0u64;
    let mut movie: Option<f64> = None;
    let mut has_data = false;
    while at < len {
        if len - at < 8 {
            return Err(MediaError::Truncated(format!(
                "{} stray bytes at the end (offset {at})",
                len - at
            )));
        }
        let h = read_exact_at(f, at, 8)?;
        let kind = String::from_utf8_lossy(&h[4..8]).into_owned();
        let (size, header) = match be(&h[..4]) {
            // Extends to the end of the file.
            0 => (len - at, 8),
            1 => {
                if len - at < 16 {
                    return Err(MediaError::Truncated(format!("box '{kind}' at {at}")));
                }
                (be(&read_exact_at(f, at + 8, 8)?), 16)
            }
            s => (s, 8),
        };
        if size < header {
            return Err(MediaError::Malformed(format!(
                "box '{kind}' at {at} has size {size}"
            )));
        }
        if size > len - at {
            return Err(MediaError::Truncated(format!(
                "box '{kind}' at offset {at} declares {size} bytes, the file ends {} bytes in",
                len - at
            )));
        }
        match &h[4..8] {
            b"moov" => {
                if size - header > MAX_HEADER {
                    return Err(MediaError::Malformed(format!("moov of {size} bytes")));
                }
                let body = read_exact_at(f, at + header, size - header)?;
                movie = Some(mvhd_duration(&body)?);
            }
            b"mdat" | b"moof" => has_data = true,
            _ => {}
        }
        at += size;
    }
    if !has_data {
        return Err(MediaError::Truncated("no media data (mdat)".into()));
    }
    movie.ok_or_else(|| MediaError::Truncated("no movie header (moov)".into()))
}

/// The duration of the `mvhd` box among the children of a `moov` body.
fn mvhd_duration(moov: &[u8]) -> Result<f64, MediaError> {
    let bad = |m: &str| MediaError::Malformed(format!("moov: {m}"));
    let mut at = 0usize;
    while at + 8 <= moov.len() {
        let size = be(&moov[at..at + 4]) as usize;
        if size < 8 || size > moov.len() - at {
            return Err(bad("a child box overruns moov"));
        }
        if &moov[at + 4..at + 8] == b"mvhd" {
            let b = &moov[at + 8..at + size];
            // version(1) flags(3), then v0: ctime(4) mtime(4) timescale(4) duration(4);
            // v1: ctime(8) mtime(8) timescale(4) duration(8).
            let (scale, dur) = match b.first() {
                Some(0) if b.len() >= 20 => (be(&b[12..16]), be(&b[16..20])),
                Some(1) if b.len() >= 32 => (be(&b[20..24]), be(&b[24..32])),
                _ => return Err(bad("mvhd too short or of an unknown version")),
            };
            if scale == 0 {
                return Err(bad("mvhd timescale 0"));
            }
            return Ok(dur as f64 / scale as f64);
        }
        at += size;
    }
    Err(bad("no mvhd"))
}

/// An EBML variable-length integer at `b[at..]`: (value, length). `keep_marker` for element IDs.
fn vint(b: &[u8], at: usize, keep_marker: bool) -> Option<(u64, usize)> {
    let first = *b.get(at)?;
    let n = first.leading_zeros() as usize + 1;
    if n > 8 || at + n > b.len() {
        return None;
    }
    let mut v = if keep_marker {
        u64::from(first)
    } else {
        u64::from(first) & (0xFF >> n)
    };
    for x in &b[at + 1..at + n] {
        v = (v << 8) | u64::from(*x);
    }
    Some((v, n))
}

/// An element header read from the file at `at`: (id, data size or None if unknown, header len).
fn ebml_header(f: &mut File, at: u64, len: u64) -> Result<(u64, Option<u64>, u64), MediaError> {
    let n = (len - at).min(16);
    let b = read_exact_at(f, at, n)?;
    let trunc = || MediaError::Truncated(format!("element header at offset {at}"));
    let (id, il) = vint(&b, 0, true).ok_or_else(trunc)?;
    let (size, sl) = vint(&b, il, false).ok_or_else(trunc)?;
    // All value bits set: size unknown (live streaming).
    let unknown = size == (1u64 << (7 * sl)) - 1;
    Ok((id, (!unknown).then_some(size), (il + sl) as u64))
}

const EBML_SEGMENT: u64 = 0x1853_8067;
const EBML_INFO: u64 = 0x1549_A966;
const EBML_TIMECODE_SCALE: u64 = 0x2A_D7B1;
const EBML_DURATION: u64 = 0x4489;

fn matroska(f: &mut File, len: u64) -> Result<f64, MediaError> {
    // The EBML header element, then the Segment.
    let (_, size, hl) = ebml_header(f, 0, len)?;
    let mut at = hl + size.ok_or_else(|| MediaError::Malformed("EBML header size".into()))?;
    if at >= len {
        return Err(MediaError::Truncated("no segment".into()));
    }
    let (id, size, hl) = ebml_header(f, at, len)?;
    if id != EBML_SEGMENT {
        return Err(MediaError::Malformed(format!(
            "element {id:#x} instead of a segment"
        )));
    }
    let end = match size {
        Some(s) if s > len - at - hl => {
            return Err(MediaError::Truncated(format!(
                "the segment declares {s} bytes, the file has {}",
                len - at - hl
            )));
        }
        Some(s) => at + hl + s,
        None => len,
    };
    at += hl;
    while at < end {
        let (id, size, hl) = ebml_header(f, at, len)?;
        let Some(size) = size else { break };
        if size > end - at - hl {
            return Err(MediaError::Truncated(format!("element {id:#x} at {at}")));
        }
        if id == EBML_INFO {
            if size > MAX_HEADER {
                return Err(MediaError::Malformed("segment info too large".into()));
            }
            let info = read_exact_at(f, at + hl, size)?;
            return info_duration(&info);
        }
        at += hl + size;
    }
    Err(MediaError::Malformed(
        "no segment info before the first cluster".into(),
    ))
}

fn info_duration(info: &[u8]) -> Result<f64, MediaError> {
    let bad = |m: &str| MediaError::Malformed(format!("segment info: {m}"));
    let mut scale = 1_000_000u64;
    let mut duration = None;
    let mut at = 0;
    while at < info.len() {
        let (id, il) = vint(info, at, true).ok_or_else(|| bad("element id"))?;
        let (size, sl) = vint(info, at + il, false).ok_or_else(|| bad("element size"))?;
        let start = at + il + sl;
        let size = size as usize;
        if size > info.len() - start {
            return Err(bad("an element overruns it"));
        }
        let data = &info[start..start + size];
        match id {
            EBML_TIMECODE_SCALE if (1..=8).contains(&size) => scale = be(data),
            EBML_DURATION => {
                duration = Some(match size {
                    4 => f64::from(f32::from_be_bytes(data.try_into().expect("4 bytes"))),
                    8 => f64::from_be_bytes(data.try_into().expect("8 bytes")),
                    _ => return Err(bad("duration is not a 4- or 8-byte float")),
                })
            }
            _ => {}
        }
        at = start + size;
    }
    let d = duration.ok_or_else(|| bad("no duration"))?;
    if !d.is_finite() || d < 0.0 {
        return Err(bad("duration is not a finite positive number"));
    }
    Ok(d * scale as f64 / 1e9)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(rel: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../samples/recordings")
            .join(rel)
    }

    const VIDEO: &str = "video/b52a07e307e4ae680c470b70ae91cdfe83b3eda3-1767268800000/video-0.m4v";
    const WEBM: &str =
        "presentation/2e7380bcd2a9cc83f2a744b8707a7f75c0a94e9d-1767261600000/video/webcams.webm";

    /// The samples' metadata.xml says 8000 ms (video) and 15008 ms (presentation A).
    #[test]
    fn durations_of_the_samples() {
        let d = duration(&sample(VIDEO)).unwrap();
        assert!(matches(8.0, d), "{d}");
        let d = duration(&sample(WEBM)).unwrap();
        assert!(matches(15.008, d), "{d}");
    }

    /// A cut file, an empty one and one that is not a video are errors, never a duration.
    #[test]
    fn truncated_empty_and_foreign_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for (name, src) in [("v.m4v", VIDEO), ("w.webm", WEBM)] {
            let data = std::fs::read(sample(src)).unwrap();
            let p = dir.path().join(name);
            for cut in [data.len() / 2, data.len() - 1] {
                std::fs::write(&p, &data[..cut]).unwrap();
                let e = duration(&p).unwrap_err();
                assert!(
                    matches!(e, MediaError::Truncated(_)),
                    "{name} cut at {cut}: {e}"
                );
            }
        }
        let p = dir.path().join("empty");
        std::fs::write(&p, b"").unwrap();
        assert!(matches!(duration(&p), Err(MediaError::Empty)));
        std::fs::write(&p, b"<html><body>502 Bad Gateway</body></html>").unwrap();
        assert!(matches!(duration(&p), Err(MediaError::Unknown(_))));
    }

    #[test]
    fn tolerance_and_minutes() {
        assert_eq!(tolerance(10.0), 2.0);
        assert_eq!(tolerance(3600.0), 36.0);
        assert!(matches(15.0, 16.9) && !matches(15.0, 17.1));
        let (lo, hi) = minutes_window(0);
        assert_eq!(lo, 0.0);
        assert!(hi >= 60.0 && 8.0 >= lo);
        // An 8-second recording listed as 1 minute (rounded up) is accepted.
        let (lo, hi) = minutes_window(1);
        assert!(lo == 0.0 && hi >= 120.0);
        let (lo, hi) = minutes_window(10);
        assert!(lo < 540.0 && hi > 660.0 && lo > 500.0 && hi < 700.0);
    }
}
