//! The `bbb-record` command line: parses and validates arguments, sets up logging, signals and the
//! runtime, runs one recording (or makes one contact sheet, `bbb-record contact-sheet`) and turns
//! its result into a documented exit code.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use bbb_common::cli_docs::{self, Generated};
use bbb_common::logging::{self, LogFormat};
use bbb_recorder::contact_sheet;
use bbb_recorder::error::{Class, RecordError, exit};
use bbb_recorder::progress::{Progress, ProgressMode};
use bbb_recorder::record::{self, AudioMode, CaptureMode, Layout, RecordRequest};
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

const EXIT_CODES: &str = "Exit codes:
  0  success: the file is complete at its destination
  2  usage error
  3  permanent failure: bad URL, playback not found, not a playback and no duration, unsupported,
     a broken picture caused by the recording (a missing slide or asset; phase render);
     contact-sheet: a file that is not a video libav can decode (retrying will not help)
  4  transient failure: network, server error, browser crash, stall, timeout, interrupted by
     SIGINT/SIGTERM; contact-sheet: the JPEG could not be written (a retry may succeed)
On failure nothing is left at the destination and no temporary file or process survives. A
contact sheet that cannot be made for --contact-sheet is a warning: the recording succeeds.";

/// Both forms, in `--help`, the man page and usage errors (clap would show the URL as optional).
const USAGE: &str = "bbb-record [OPTIONS] --output <OUTPUT> <URL>
       bbb-record contact-sheet [OPTIONS] --output <SHEET> <VIDEO>";

/// Record a BigBlueButton playback (2.3+ or 2.0 player), or any web page, to a video file.
// Either a recording (the URL and its options) or a subcommand, never both: the subcommand's
// name is tried first, so `bbb-record URL -o OUT` parses as it always did.
#[derive(Debug, Parser)]
#[command(
    name = "bbb-record",
    version,
    after_help = EXIT_CODES,
    override_usage = USAGE,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    disable_help_subcommand = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Playback URL (https://HOST/playback/presentation/2.3/<recordId>, the 2.0 playback.html
    /// link, a Scalelite /recording/... link) or any other http(s) URL (then --duration is
    /// needed unless the page has a media element with a finite duration). `-` reads the URL
    /// from the first line of standard input instead: a URL with a secret (a Scalelite
    /// `token=`) given on the command line is visible to every user in `ps`; bbb-migrate hands
    /// it over this way.
    #[arg(required_unless_present = "generate")]
    url: Option<String>,
    /// Output file; the container follows the extension: .mp4 (H.264 + AAC), .webm (VP8 + Opus),
    /// .mkv (H.264 + AAC).
    #[arg(short, long, required_unless_present = "generate")]
    output: Option<PathBuf>,
    /// Picture size.
    #[arg(long, default_value = "1280x720", value_parser = parse_size)]
    size: (u32, u32),
    /// Frames per second.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=60))]
    fps: u32,
    /// Quality (x264 CRF 0-51, default 23; VP8 CRF 4-63, default 10).
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=63))]
    crf: Option<u32>,
    /// Encoder preset (x264: ultrafast..veryslow, default veryfast; VP8: cpu-used 0-16, default 8).
    #[arg(long)]
    preset: Option<String>,
    /// Start at this media time (seconds).
    #[arg(long, value_parser = parse_seconds)]
    start: Option<f64>,
    /// Stop at this media time (seconds).
    #[arg(long, value_parser = parse_seconds)]
    end: Option<f64>,
    /// Length to record (seconds): required for pages that are not BBB playbacks (unless they
    /// have a media element with a finite duration); caps the length of BBB playbacks.
    #[arg(long, value_parser = parse_seconds)]
    duration: Option<f64>,
    /// BBB layout: full = the player as users see it without its controls.
    #[arg(long, value_enum, default_value = "full")]
    layout: Layout,
    /// Sound: auto = the recording's own sound for BBB playbacks, the page's sound through a
    /// private PulseAudio server for other pages.
    #[arg(long, value_enum, default_value = "auto")]
    audio: AudioMode,
    /// Frame capture: x11 = grab the virtual display (steady rate, cheapest); screencast = the
    /// DevTools screencast (pictures sent by Chromium when the page redraws).
    #[arg(long, value_enum, default_value = "x11")]
    capture: CaptureMode,
    /// Fast mode: step the paused 2.3 player from one picture change to the next (times read
    /// from the recording's files) instead of playing it in real time, and fill the webcam and
    /// screen-share areas from the recording's own videos. A recording fast mode cannot
    /// reproduce exactly (the 2.0 player, a mirrored webcam...) is recorded in
    /// real time, with a warning saying why; the JSON done event tells which ("mode",
    /// "fast_fallback").
    #[arg(long)]
    fast: bool,
    /// Progress display: json = one JSON object per line on stdout.
    #[arg(long, value_enum, default_value = "auto")]
    progress: ProgressMode,
    /// Give up after this many seconds (default: duration x 1.5 + 300).
    #[arg(long, value_parser = parse_seconds)]
    timeout: Option<f64>,
    /// Chromium binary (default: Debian's chromium, then chromium/google-chrome on PATH).
    #[arg(long)]
    browser: Option<PathBuf>,
    /// After the output is placed, write a contact sheet of it to this JPEG: tiles spread over
    /// the output and, for a BBB playback, one after each of its first slide changes. Reported
    /// in the JSON done event's "sheet"; if it cannot be made that is a warning, not a failure.
    #[arg(long, value_name = "PATH")]
    contact_sheet: Option<PathBuf>,
    /// Record the playback even when its picture is broken (a slide or asset the server does not
    /// serve, a whiteboard or player error screen): each defect is a warning and is listed in
    /// the JSON done event's "degraded". Without it such a playback fails in phase render.
    #[arg(long)]
    accept_broken: bool,
    /// A host a BBB playback may load from besides its own (repeatable; host name, any port).
    /// Every other host is blocked and logged; the player's CDN assets are answered offline.
    #[arg(long = "allow-host", value_name = "HOST", value_parser = parse_host)]
    allow_hosts: Vec<String>,
    /// Also accept a file: URL (a local page you trust). Without it only http and https URLs are
    /// recorded.
    #[arg(long)]
    allow_file: bool,
    /// Log lines: text (coloured only on a terminal) or json (one object per line, for log
    /// collectors). Env: BBB_RECORD_LOG sets the filter (e.g. `info`).
    #[arg(long, default_value = "text", value_parser = parse_log_format)]
    log_format: LogFormat,
    /// Print a man page or a shell completion script and exit (used to build the package).
    #[arg(long, hide = true, value_name = "KIND", value_parser = parse_generated, exclusive = true)]
    generate: Option<Generated>,
}

#[derive(Debug, Subcommand)]
enum Command {
    ContactSheet(ContactSheetArgs),
}

/// Make the contact sheet of a video (one JPEG of its frames) and print it as one JSON line.
///
/// The sheet has 8 frames spread over the video and one just after each of the first 4 `--at`
/// times, scaled to 320-pixel-wide tiles, 4 to a row. The JSON line on stdout gives the layout
/// and each tile's time, kind (spread or change), mean luma and whether it is one flat colour.
#[derive(Debug, Args)]
struct ContactSheetArgs {
    /// The video (any file libav decodes: MP4, WebM, MKV, ...).
    video: PathBuf,
    /// The JPEG to write (replaced atomically; its directory must exist).
    #[arg(short, long, value_name = "SHEET")]
    output: PathBuf,
    /// A time (seconds from the video's start) where the picture changes, such as a slide
    /// change: the frame just after it gets a tile too (repeatable; the earliest 4 inside the
    /// video).
    #[arg(long = "at", value_name = "SECONDS", value_parser = parse_seconds)]
    at: Vec<f64>,
    /// Log lines: text or json (see the recording's --log-format).
    #[arg(long, default_value = "text", value_parser = parse_log_format)]
    log_format: LogFormat,
}

fn parse_log_format(s: &str) -> Result<LogFormat, String> {
    s.parse()
}

fn parse_generated(s: &str) -> Result<Generated, String> {
    s.parse()
}

fn parse_host(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    if ok {
        Ok(s.to_ascii_lowercase())
    } else {
        Err(format!("{s:?} is not a host name"))
    }
}

fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s
        .split_once('x')
        .ok_or("expected WIDTHxHEIGHT, e.g. 1280x720")?;
    let w: u32 = w.parse().map_err(|_| "bad width")?;
    let h: u32 = h.parse().map_err(|_| "bad height")?;
    if !(16..=7680).contains(&w)
        || !(16..=4320).contains(&h)
        || !w.is_multiple_of(2)
        || !h.is_multiple_of(2)
    {
        return Err("width and height must be even, 16..7680 x 16..4320".into());
    }
    Ok((w, h))
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !v.is_finite() || v < 0.0 {
        return Err("must be a non-negative number of seconds".into());
    }
    Ok(v)
}

/// `bbb-record --version`: ours and the libav libraries this binary loaded, which are the ones
/// that encode (`bbb-migrate doctor` shows this line).
fn version_line() -> String {
    let v = |n: u32| format!("{}.{}.{}", n >> 16, (n >> 8) & 0xff, n & 0xff);
    format!(
        "{} (libavcodec {}, libavformat {}, libavfilter {}, libswscale {}, libswresample {})",
        env!("CARGO_PKG_VERSION"),
        v(ffmpeg_next::codec::version()),
        v(ffmpeg_next::format::version()),
        v(ffmpeg_next::filter::version()),
        v(ffmpeg_next::software::scaling::version()),
        v(ffmpeg_next::software::resampling::version()),
    )
}

fn main() -> ExitCode {
    // clap keeps the version for the life of the program; made once, at start.
    let version: &'static str = Box::leak(version_line().into_boxed_str());
    let parsed = Cli::command()
        .version(version)
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m));
    let cli = match parsed {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { exit::USAGE as u8 } else { 0 });
        }
    };
    if let Some(kind) = cli.generate.clone() {
        return match cli_docs::print(kind, Cli::command()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("bbb-record: --generate: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Some(Command::ContactSheet(args)) = cli.command {
        logging::init(args.log_format, "BBB_RECORD_LOG", "warn");
        return ExitCode::from(make_contact_sheet(&args) as u8);
    }
    // chromiumoxide logs every unknown DevTools message and the socket closing at shutdown as
    // warnings/errors; the recorder reports the failures that matter.
    logging::init(cli.log_format, "BBB_RECORD_LOG", "warn,chromiumoxide=off");
    // libxcb (x11grab) reads XAUTHORITY from our environment: fix it before any thread starts.
    let xauth = std::env::temp_dir().join(format!("bbb-record-{}.xauth", std::process::id()));
    // SAFETY: no other thread exists yet (the runtime is built below).
    unsafe { std::env::set_var("XAUTHORITY", &xauth) };
    let code = run(cli);
    let _ = std::fs::remove_file(&xauth);
    ExitCode::from(code as u8)
}

fn run(cli: Cli) -> i32 {
    let progress = Progress::new(cli.progress);
    let timeout = cli.timeout.map(Duration::from_secs_f64);
    // clap requires both unless --generate or a subcommand, which returned above.
    let (Some(url), Some(output)) = (cli.url, cli.output) else {
        eprintln!("bbb-record: a URL and -o OUTPUT are required");
        return exit::USAGE;
    };
    if cli
        .contact_sheet
        .as_deref()
        .is_some_and(|sheet| same_path(sheet, &output))
    {
        eprintln!("bbb-record: --contact-sheet must not be the output file");
        return exit::USAGE;
    }
    let url = if url == "-" {
        let mut line = String::new();
        match std::io::stdin().read_line(&mut line) {
            Ok(_) if !line.trim().is_empty() => line.trim().to_owned(),
            Ok(_) => {
                eprintln!("bbb-record: URL `-`: standard input holds no URL");
                return exit::USAGE;
            }
            Err(e) => {
                eprintln!("bbb-record: URL `-`: reading standard input: {e}");
                return exit::USAGE;
            }
        }
    } else {
        url
    };
    let req = RecordRequest {
        url,
        output,
        width: cli.size.0,
        height: cli.size.1,
        fps: cli.fps,
        crf: cli.crf,
        preset: cli.preset,
        start: cli.start,
        end: cli.end,
        duration: cli.duration,
        layout: cli.layout,
        audio: cli.audio,
        capture: cli.capture,
        fast: cli.fast,
        timeout,
        browser: cli.browser,
        accept_broken: cli.accept_broken,
        allow_hosts: cli.allow_hosts,
        allow_file: cli.allow_file,
        contact_sheet: cli.contact_sheet,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("bbb-record: cannot start: {e}");
            return exit::TRANSIENT;
        }
    };
    let result: Result<record::Outcome, RecordError> = runtime.block_on(async {
        let (cancel_tx, cancel_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut int), Ok(mut term)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) else {
                return;
            };
            tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
            let _ = cancel_tx.send(true);
        });
        let reporter_progress = progress.clone();
        let reporter: record::Reporter = std::sync::Arc::new(move |e| reporter_progress.event(e));
        // The overall timeout needs the duration, known only once the playback is probed; the
        // recorder applies `duration x 1.5 + 300` itself when none is given.
        record::record(req, reporter, cancel_rx).await
    });
    runtime.shutdown_timeout(Duration::from_secs(5));
    match result {
        Ok(outcome) => {
            progress.done(&outcome);
            exit::SUCCESS
        }
        Err(e) => {
            progress.error(&e);
            eprintln!("bbb-record: {e}");
            e.exit_code()
        }
    }
}

/// Whether two paths name the same file, by their absolute form (neither needs to exist).
fn same_path(a: &Path, b: &Path) -> bool {
    match (std::path::absolute(a), std::path::absolute(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// `bbb-record contact-sheet`: the sheet's JSON line on stdout, or the reason on stderr with the
/// exit code of its class.
fn make_contact_sheet(args: &ContactSheetArgs) -> i32 {
    match contact_sheet::make(&args.video, &args.at, &args.output) {
        Ok(sheet) => match serde_json::to_string(&sheet) {
            Ok(line) => {
                println!("{line}");
                exit::SUCCESS
            }
            Err(e) => {
                eprintln!("bbb-record contact-sheet: {e}");
                exit::TRANSIENT
            }
        },
        Err(e) => {
            eprintln!("bbb-record contact-sheet: {e}");
            match e.class() {
                Class::Permanent => exit::PERMANENT,
                Class::Transient => exit::TRANSIENT,
            }
        }
    }
}
