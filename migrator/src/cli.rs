//! The command line (clap). Also accepts the flag names of Pod's `migrate_bbb_recordings` so its
//! documented examples work with `bbb-migrate` in its place. Only parses: `app` validates and runs.

use std::path::PathBuf;

use bbb_common::cli_docs::Generated;
use bbb_common::logging::LogFormat;
use clap::{Args, Parser, Subcommand, ValueEnum};

/// Documented exit codes.
pub mod exit {
    /// Every selected recording succeeded or was already done.
    pub const OK: i32 = 0;
    /// Some recordings failed (the summary says which).
    pub const FAILED: i32 = 1;
    /// Usage or configuration error, or a failed pre-check (for `claim` with a Pod database: the
    /// recorder `[pod] recorder_id` is missing, or its directory does not exist).
    pub const USAGE: i32 = 2;
    /// The recording list could not be fetched.
    pub const FETCH: i32 = 3;
    /// `--no-wait`: nothing failed, but some selected jobs are not finished: held by other hosts
    /// (or other runs) under a live lease, or waiting for their retry backoff. The summary lists
    /// them; a later run (or the holder) finishes them. Not "failed": a batch on several hosts
    /// is not in trouble because one host ended first. FAILED wins when both apply.
    pub const HELD: i32 = 4;
    /// The ledger could not be opened, read or written (its database unreachable, its file not
    /// openable, a statement failed), in any command.
    pub const LEDGER: i32 = 5;
}

#[derive(Debug, Parser)]
#[command(
    name = "bbb-migrate",
    version,
    about = "Lists BigBlueButton/Scalelite recordings, keeps a job ledger, and places them for Pod (claim directory) or exports a CSV.",
    after_help = "Selection (--record-id, --since, --until, --min, --max, --limit) applies after a deterministic sort: start time descending, then recordID. The Python command used the server's order, which is arbitrary on BBB.\n\nExit codes: 0 all selected recordings done, 1 some failed, 2 usage/config error or failed pre-check (e.g. claim: the Pod recorder or its directory is missing), 3 the recording list could not be fetched, 4 (claim/import --no-wait) nothing failed but some jobs are held by other hosts or wait for a retry (listed), 5 the ledger could not be opened, read or written (e.g. its database is unreachable). `doctor`: 0 nothing failed, 1 a check failed, 2 usage or configuration error. `serve`: 0 stopped by SIGINT or SIGTERM, 2 it may not or cannot listen there (a non-loopback address without a token, a port in use), 5 the ledger could not be opened."
)]
pub struct Cli {
    /// Configuration file (TOML).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Print what would be done; write nothing anywhere (no placement, ledger, cache or CSV file).
    #[arg(long, global = true, visible_alias = "dry")]
    pub dry_run: bool,

    /// Progress display.
    #[arg(long, global = true, value_enum, default_value = "auto")]
    pub progress: ProgressMode,

    /// Read the cached getRecordings responses instead of asking the server.
    #[arg(long, global = true)]
    pub use_cache: bool,

    /// More log output (-v, -vv).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Log lines on stderr: text (coloured only on a terminal) or json (one object per line with
    /// the recording id as a field, for journald or log collectors). Env: BBB_MIGRATE_LOG sets
    /// the filter.
    #[arg(long, global = true, default_value = "text", value_parser = parse_log_format)]
    pub log_format: LogFormat,

    /// Print a man page or a shell completion script and exit (used to build the package).
    #[arg(long, hide = true, value_name = "KIND", value_parser = parse_generated, exclusive = true)]
    pub generate: Option<Generated>,

    #[command(flatten)]
    pub select: Selection,

    /// Pod alias of `claim`.
    #[arg(long = "use-manual-claim", hide_short_help = true)]
    pub use_manual_claim: bool,
    /// Pod alias of `import`.
    #[arg(long = "use-import-video", hide_short_help = true)]
    pub use_import_video: bool,
    /// Pod alias of `export-csv` (both spellings are accepted).
    #[arg(
        long = "use-export-csv",
        alias = "use_export_csv",
        hide_short_help = true
    )]
    pub use_export_csv: bool,
    /// Pod alias of `import --moodle` (with `--use-import-video`) or `export-csv --moodle`
    /// (with `--use-export-csv`).
    #[arg(long = "use-database-moodle", hide_short_help = true)]
    pub use_database_moodle: bool,

    #[command(subcommand)]
    pub command: Option<Command>,
}

fn parse_log_format(s: &str) -> Result<LogFormat, String> {
    s.parse()
}

fn parse_generated(s: &str) -> Result<Generated, String> {
    s.parse()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProgressMode {
    /// Bars on a terminal, log lines otherwise.
    Auto,
    Bars,
    Json,
    Plain,
}

#[derive(Debug, Clone, Default, Args)]
pub struct Selection {
    /// Only this recording (repeatable).
    #[arg(long = "record-id", global = true, value_name = "ID")]
    pub record_id: Vec<String>,
    /// Only recordings started on or after DATE (YYYY-MM-DD in [pod] time_zone, or RFC 3339).
    #[arg(long, global = true, value_name = "DATE")]
    pub since: Option<String>,
    /// Only recordings started on or before DATE (a date includes its whole day).
    #[arg(long, global = true, value_name = "DATE")]
    pub until: Option<String>,
    /// First position to process, 1-based, after the sort.
    #[arg(
        long,
        global = true,
        value_name = "N",
        alias = "min-value-record-process"
    )]
    pub min: Option<usize>,
    /// Last position to process, inclusive, after the sort.
    #[arg(
        long,
        global = true,
        value_name = "N",
        alias = "max-value-record-process"
    )]
    pub max: Option<usize>,
    /// At most N recordings.
    #[arg(long, global = true, value_name = "N")]
    pub limit: Option<usize>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Write a commented configuration template.
    InitConfig {
        /// Where to write it (default: the --config path, or bbb-migrate.toml); `-` for stdout.
        #[arg(short, long, value_name = "FILE")]
        output: Option<String>,
        /// Replace an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Show the recordings with their ledger state.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Mode 3: CSV export, byte-compatible with the Python command.
    ExportCsv {
        /// Output file (default out.csv); `-` for stdout.
        #[arg(short, long, value_name = "FILE")]
        output: Option<String>,
        /// Add the 14th column `Moodle_owners`: the moderators found in Moodle ([moodle]
        /// section), as the Python command wrote them (a Python list).
        #[arg(long, visible_alias = "use-database-moodle")]
        moodle: bool,
    },
    /// Mode 1: download or record each recording into the Pod claim directory.
    Claim {
        /// Recordings processed at once (default: 1.5 per core in real time, 1 per core in fast mode,
        /// at most one per 1.5 GB of free memory).
        #[arg(long, value_name = "N")]
        jobs: Option<usize>,
        /// Redo recordings already done (the earlier file is never overwritten).
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        wait: WaitArgs,
        /// Name of this host in the ledger's lease owners (`status`); default: the hostname.
        /// Env: BBB_MIGRATE_HOST.
        #[arg(long, value_name = "NAME")]
        host: Option<String>,
    },
    /// Mode 2: an entry in Pod's "My external videos" for the owner(s) of each recording (Pod
    /// meeting owner, else with --moodle every moderator of the Moodle activity, else the
    /// configured admin). Needs [pod] database_url.
    Import {
        /// Look owners up in Moodle's database when no Pod meeting matches ([moodle] section).
        #[arg(long)]
        moodle: bool,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Counts per state, failures with their last error, outputs placed.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Serve the migration's state over HTTP from the ledger the workers write: a live page at / with
    /// a gallery of contact sheets,
    /// /api/status (the JSON of `status --json`) and /metrics (Prometheus text); read-only unless
    /// --allow-actions. Beyond loopback every data request needs the token of [serve] token (or
    /// BBB_MIGRATE_SERVE_TOKEN) as `Authorization: Bearer TOKEN`; without a token only a loopback
    /// address is accepted.
    Serve {
        /// Address and port to listen on (port 0: any free port, printed on stdout).
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8090")]
        listen: std::net::SocketAddr,
        /// Offer retry, cancel and flag on the page (as `retry --record-id`, `cancel
        /// --record-id` and `flag --record-id`); without it the server only reads.
        #[arg(long)]
        allow_actions: bool,
    },
    /// Cancel the jobs of --record-id: a pending one at once, a running one on whatever host holds
    /// it within one heartbeat (its worker stops the recorder and places nothing).
    Cancel,
    /// Put jobs back in the queue.
    Retry {
        /// Every dead or cancelled job (or only those of --record-id).
        #[arg(long)]
        failed: bool,
        /// Redo every placed recording flagged as wrong (`flag`, or the serve page), or only
        /// those of --record-id, once the cause is fixed. The earlier file is kept, never
        /// overwritten; the flag and the contact sheet go with the redo.
        #[arg(long, conflicts_with = "failed")]
        flagged: bool,
    },
    /// Flag the placed recordings of --record-id as wrong (their picture, their sound), for a
    /// later `retry --flagged`; the serve page shows the flag and the note.
    Flag {
        /// What is wrong, for whoever fixes it.
        #[arg(long, value_name = "TEXT", required_unless_present = "clear")]
        note: Option<String>,
        /// Remove the flag instead.
        #[arg(long, conflicts_with = "note")]
        clear: bool,
    },
    /// Check everything a run needs and say what to fix: bbb-record, Chromium, Xvfb and
    /// PulseAudio (optional) with their versions, the BBB API and its secret, the ledger (its
    /// migrations, and on PostgreSQL this host's clock against the database's), Pod's recorder,
    /// the claim and temp directories and free space for the selection, and a 5-second test
    /// recording of a page served locally. One line per check: ok, warning, failure or skipped,
    /// and what to do. Writes nothing but a probe file and the test recording, both removed.
    #[command(
        after_help = "Exit codes: 0 nothing failed (warnings and skipped checks allowed), 1 at least one check failed, 2 usage or configuration error (the configuration cannot be read, a bad selection flag)."
    )]
    Doctor {
        /// One JSON object for scripts: {"ok": bool, "checks": [{"name", "status"
        /// (ok|warning|failure|skipped), "detail", "hint"}]}.
        #[arg(long)]
        json: bool,
        /// The Chromium to check and record with, instead of bbb-record's own lookup
        /// (Debian's /usr/lib/chromium/chromium, then chromium/google-chrome on PATH).
        #[arg(long, value_name = "PATH")]
        browser: Option<PathBuf>,
        /// Do not make the 5-second test recording (reported as skipped).
        #[arg(long)]
        skip_recording: bool,
    },
}

/// Whether `claim` and `import` wait for the jobs they cannot take yet. By default a run keeps
/// working until every selected job is succeeded or dead, so that on several hosts each run ends
/// with the batch's real outcome and a dead host's jobs are taken over without an administrator.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct WaitArgs {
    /// Do not wait for jobs held by other hosts (or waiting for their retry backoff): end as soon
    /// as nothing can be taken, listing what other hosts still hold (exit 4 if nothing failed).
    /// Waiting is the default; the former `--wait` is still accepted and changes nothing.
    #[arg(long, conflicts_with = "wait")]
    pub no_wait: bool,
    /// Accepted for compatibility and ignored: waiting is the default now (see --no-wait).
    #[arg(long, hide = true)]
    pub wait: bool,
}
