//! `bbb-bench`: measures `bbb-record` on generated recordings (samples D "long" and E "static",
//! see samples/README.md) served by the fake BBB server, and prints per minute of playback: wall
//! time ratio, CPU-seconds of the recorder and everything it started (Chromium, Xvfb), peak RSS of
//! the recorder and of its children, frames written vs expected, and for the long sample the
//! picture/sound offset at every slide change (each change carries a 1 kHz beep). With
//! `--modes both` (the default) each recording is made in real time and in fast mode, side by
//! side in the same run, and the two are compared frame by frame: fast/real-time ratios of wall
//! time and CPU, and the mean and worst picture difference.
//!
//! Run it on an otherwise idle machine, with a release build:
//! `cargo build --release -p bbb-recorder -p bbb-tests && target/release/bbb-bench --minutes 2`.
//! Comparisons are meaningful only between figures of one run.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use fake_bbb::FakeBbb;
use fake_bbb::media;

#[derive(Debug, Parser)]
#[command(about = "Benchmark bbb-record on generated long and static recordings")]
struct Args {
    /// Length of each generated recording, in minutes.
    #[arg(long, default_value_t = 2)]
    minutes: u32,
    /// The bbb-record binary (default: next to this one).
    #[arg(long)]
    record: Option<PathBuf>,
    /// Which samples: long, static or both.
    #[arg(long, default_value = "both")]
    only: String,
    /// Also print the peak memory of the recorder and of its children (Chromium, Xvfb) in each
    /// window of this many minutes of the run, to show whether it stays flat.
    #[arg(long, value_name = "MINUTES")]
    memory_every: Option<u32>,
    /// Capture modes to run on each recording: both, real-time or fast.
    #[arg(long, default_value = "both")]
    modes: String,
    /// Recordings made at once in each mode (copies of the same playback, each its own
    /// recorder): the figures are then per recording, and the wall ratio is the batch's.
    #[arg(long, default_value_t = 1)]
    parallel: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let here = std::env::current_exe()?;
    let record = args
        .record
        .clone()
        .unwrap_or_else(|| here.with_file_name("bbb-record"));
    anyhow::ensure!(
        record.is_file(),
        "{} not found: build bbb-record first",
        record.display()
    );
    let samples = media::samples_dir();
    let work = tempfile::tempdir()?;
    let site = work.path().join("site");
    std::fs::create_dir_all(&site)?;
    std::os::unix::fs::symlink(samples.join("player"), site.join("player"))?;
    let recordings = site.join("recordings");
    let kinds: Vec<&str> = match args.only.as_str() {
        "both" => vec!["static", "long"],
        one => vec![one],
    };
    for kind in &kinds {
        let status = Command::new("bash")
            .arg(samples.join("generate.sh"))
            .args([
                kind,
                recordings.to_str().unwrap(),
                &args.minutes.to_string(),
            ])
            .stdout(Stdio::null())
            .status()?;
        anyhow::ensure!(status.success(), "generate.sh {kind} failed");
    }
    let bbb = FakeBbb::builder().samples_dir(&site).start_blocking()?;
    println!(
        "bbb-record benchmark: {} min recordings, 1280x720 at 30 fps, {} cores",
        args.minutes,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "{:<8} {:<10} {:>9} {:>10} {:>13} {:>12} {:>12} {:>16} {:>14}  change frames",
        "sample",
        "mode",
        "playback",
        "wall/play",
        "cpu-s/play-s",
        "rss rec MB",
        "rss kids MB",
        "frames (expect)",
        "A/V offset ms",
    );
    let mut timelines = Vec::new();
    for entry in std::fs::read_dir(recordings.join("presentation"))? {
        let id = entry?.file_name().to_string_lossy().into_owned();
        let meta = std::fs::read_to_string(
            recordings
                .join("presentation")
                .join(&id)
                .join("metadata.xml"),
        )?;
        let kind = if meta.contains("Sample long") {
            "long"
        } else {
            "static"
        };
        let modes: Vec<bool> = match args.modes.as_str() {
            "both" => vec![false, true],
            "fast" => vec![true],
            _ => vec![false],
        };
        let mut made = Vec::new();
        for fast in modes {
            let outs: Vec<PathBuf> = (0..args.parallel.max(1))
                .map(|i| {
                    work.path().join(format!(
                        "{kind}-{}-{i}.mp4",
                        if fast { "fast" } else { "real" }
                    ))
                })
                .collect();
            let m = measure(&record, &bbb.presentation_url(&id), &outs, fast)?;
            timelines.push((kind, m.memory.clone()));
            let playback = m.duration;
            let expected = (playback * 30.0).round() as u64;
            let (offset, frames) = if kind == "long" {
                let (offset, frames) = change_timing(&outs);
                (offset.unwrap_or_else(|| "n/a".into()), frames)
            } else {
                ("-".into(), "-".into())
            };
            println!(
                "{:<8} {:<10} {:>8.1}s {:>10.3} {:>13.3} {:>12.0} {:>12.0} {:>7} ({:>6}) {:>14}  {}",
                kind,
                m.mode,
                playback,
                m.wall / playback,
                m.cpu / playback,
                m.peak_rss_recorder / 1e6,
                m.peak_rss_children / 1e6,
                m.frames,
                expected,
                offset,
                frames
            );
            made.push((outs[0].clone(), m));
        }
        if let [(real_out, real), (fast_out, fast)] = &made[..] {
            let differences =
                media::picture_differences(fast_out, real_out, media::REAL_TIME_WINDOW);
            let n = differences.len().max(1) as f64;
            let mean = differences.iter().map(|d| d.near).sum::<f64>() / n;
            let worst = differences.iter().map(|d| d.near).fold(0.0, f64::max);
            let over = differences.iter().filter(|d| d.near > 1.0).count();
            println!(
                "{:<8} fast/real: wall {:.3}, cpu {:.3} (speed-up {:.1}x); picture difference mean {mean:.3}, worst {worst:.3} (0-255), {over} frames over 1.0",
                kind,
                fast.wall / real.wall,
                fast.cpu / real.cpu,
                real.wall / fast.wall
            );
        }
    }
    println!("A/V offset: mean / worst |picture - sound| at each slide change (picture late > 0).");
    println!(
        "Change frames: how many slide changes land how many frames from their own (sample D: every 4 s), e.g. -1:3 0:57 means 3 one frame early, 57 on their frame."
    );
    if args.parallel > 1 {
        println!(
            "{} recordings at once per mode: cpu, rss and frames are per recording (rss the worst), wall the batch's; offsets and change frames cover every recording.",
            args.parallel
        );
    }
    println!(
        "Picture difference: per frame, the mean absolute difference to the closest of the real-time frames k-{0}..k+{0} (320x180).",
        media::REAL_TIME_WINDOW
    );
    if let Some(every) = args.memory_every {
        for (kind, timeline) in &timelines {
            println!("{kind}: peak RSS per {every} min of wall time (recorder MB / children MB)");
            for (k, window) in timeline
                .chunk_by(|a, b| {
                    (a.0 / 60.0) as u32 / every.max(1) == (b.0 / 60.0) as u32 / every.max(1)
                })
                .enumerate()
            {
                let rec = window.iter().map(|s| s.1).fold(0.0, f64::max);
                let kids = window.iter().map(|s| s.2).fold(0.0, f64::max);
                let from = k as u32 * every;
                println!(
                    "  {:>4}-{:<4} min {:>8.1} {:>8.1}",
                    from,
                    from + every,
                    rec / 1e6,
                    kids / 1e6
                );
            }
        }
    }
    Ok(())
}

struct Measure {
    /// The mode the recorder reports it used (`real_time`, `fast`).
    mode: String,
    wall: f64,
    cpu: f64,
    peak_rss_recorder: f64,
    peak_rss_children: f64,
    frames: u64,
    duration: f64,
    /// (seconds since the start, recorder RSS, children RSS) every 250 ms.
    memory: Vec<(f64, f64, f64)>,
}

fn children_cpu() -> f64 {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct we own.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(usage.ru_utime) + t(usage.ru_stime)
}

fn measure(record: &Path, url: &str, outs: &[PathBuf], fast: bool) -> anyhow::Result<Measure> {
    let cpu_before = children_cpu();
    let started = Instant::now();
    let mut children = Vec::new();
    for out in outs {
        let mut child = Command::new(record)
            .args([url, "-o", out.to_str().unwrap(), "--progress", "json"])
            .args(fast.then_some("--fast"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdout = child.stdout.take().expect("piped");
        let reader = std::thread::spawn(move || {
            std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .collect::<Vec<_>>()
        });
        children.push((child, reader));
    }
    let n = children.len() as f64;
    let (mut peak_rec, mut peak_kids) = (0.0f64, 0.0f64);
    let mut memory = Vec::new();
    let mut running: Vec<bool> = vec![true; children.len()];
    while running.iter().any(|r| *r) {
        for (i, (child, _)) in children.iter_mut().enumerate() {
            if !running[i] {
                continue;
            }
            if let Some(status) = child.try_wait()? {
                anyhow::ensure!(status.success(), "bbb-record failed on {url}: {status}");
                running[i] = false;
                continue;
            }
            let pid = child.id();
            let rec = media::rss_of(pid) as f64;
            let kids = media::descendants(pid)
                .into_iter()
                .map(media::rss_of)
                .sum::<u64>() as f64;
            peak_rec = peak_rec.max(rec);
            peak_kids = peak_kids.max(kids);
            if i == 0 {
                memory.push((started.elapsed().as_secs_f64(), rec, kids));
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu = (children_cpu() - cpu_before) / n;
    let mut done = Vec::new();
    for (_, reader) in children {
        let lines = reader.join().expect("reader");
        done.push(
            lines
                .iter()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .find(|v| v["event"] == "done")
                .ok_or_else(|| anyhow::anyhow!("no done event"))?,
        );
    }
    let modes: Vec<&str> = done
        .iter()
        .map(|d| d["mode"].as_str().unwrap_or("?"))
        .collect();
    let mode = if modes.iter().all(|m| *m == modes[0]) {
        modes[0].to_owned()
    } else {
        modes.join("+")
    };
    Ok(Measure {
        mode,
        wall,
        cpu,
        peak_rss_recorder: peak_rec,
        peak_rss_children: peak_kids,
        frames: done
            .iter()
            .map(|d| d["frames"].as_u64().unwrap_or(0))
            .min()
            .unwrap_or(0),
        duration: done[0]["duration"].as_f64().unwrap_or(0.0),
        memory,
    })
}

/// Sample D's picture/sound offsets over every output in `outs`: "mean / worst" |picture -
/// sound| in ms, and how many slide changes land how many frames from their own frame (the
/// slides change every 4 s, so a change seen at `p` belongs to the multiple of 4 s nearest it).
fn change_timing(outs: &[PathBuf]) -> (Option<String>, String) {
    let mut offsets = Vec::new();
    let mut frames = std::collections::BTreeMap::<i64, usize>::new();
    for out in outs {
        for (p, d) in media::av_offsets(out, &media::SAMPLE_D_SLIDES) {
            offsets.push(d);
            let own = (p / 4.0).round() * 4.0;
            *frames.entry(((p - own) * 30.0).round() as i64).or_default() += 1;
        }
    }
    let frames = frames
        .iter()
        .map(|(k, n)| format!("{k:+}:{n}").replace("+0:", "0:"))
        .collect::<Vec<_>>()
        .join(" ");
    if offsets.is_empty() {
        return (None, frames);
    }
    let mean = offsets.iter().sum::<f64>() / offsets.len() as f64 * 1000.0;
    let worst = offsets.iter().map(|d| d.abs()).fold(0.0, f64::max) * 1000.0;
    (Some(format!("{mean:+.0} / {worst:.0}")), frames)
}
