//! The configuration file (TOML) and its environment overrides. Owns the key names (fixed by the
//! issue and by spec 17.1), the defaults, the rejection of unknown keys, the `init-config`
//! template, and validation into ready-built settings. Secrets (the BBB secret, database URLs,
//! Pod's key and token) are `SecretString`s: never in `Debug` output or logs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::api::{ChecksumAlgo, FetchStrategy};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub bbb: BbbConfig,
    #[serde(default)]
    pub pod: PodConfig,
    #[serde(default)]
    pub recorder: RecorderConfig,
    #[serde(default)]
    pub ledger: LedgerConfig,
    #[serde(default)]
    pub worker: WorkerConfig,
    #[serde(default)]
    pub moodle: MoodleConfig,
    #[serde(default)]
    pub serve: ServeConfig,
}

/// `[serve]`: the status API and metrics of `bbb-migrate serve`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServeConfig {
    /// Asked of every request (`Authorization: Bearer …`); needed to listen beyond loopback.
    pub token: Option<SecretString>,
}

/// `[moodle]`: where `import --moodle` finds the moderators of a recording.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MoodleConfig {
    /// Moodle's `$CFG->prefix`.
    pub table_prefix: String,
    /// PostgreSQL schema of Moodle's tables.
    pub schema: String,
    /// `bbb-origin-server-name` values whose recordings are not looked up (exact match).
    pub ignored_servers: Vec<String>,
    /// HTML appended once to each activity's description; unset: no notice.
    pub inform_html: Option<String>,
    /// `[moodle.databases."<bbb-origin-server-name>"]` and `[moodle.databases.default]`.
    pub databases: std::collections::BTreeMap<String, MoodleDatabase>,
}

impl Default for MoodleConfig {
    fn default() -> Self {
        MoodleConfig {
            table_prefix: "mdl_".into(),
            schema: "public".into(),
            ignored_servers: Vec::new(),
            inform_html: None,
            databases: Default::default(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoodleDatabase {
    /// postgres:// or mysql://; may hold a password, so never printed.
    pub url: SecretString,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BbbConfig {
    pub base_url: Option<String>,
    pub secret: Option<SecretString>,
    pub checksum: ChecksumAlgo,
    pub playback_url_23: bool,
    pub fetch: FetchStrategy,
    pub timeout_secs: u64,
    pub retries: u32,
    pub retry_delay_ms: u64,
    pub cache_dir: PathBuf,
    /// Host names, besides `base_url`'s, that playback URLs may point at (`playback_hosts`).
    pub playback_hosts: Vec<String>,
}

impl Default for BbbConfig {
    fn default() -> Self {
        BbbConfig {
            base_url: None,
            secret: None,
            checksum: ChecksumAlgo::Sha1,
            playback_url_23: true,
            fetch: FetchStrategy::Prefix,
            timeout_secs: 300,
            retries: 4,
            retry_delay_ms: 2000,
            cache_dir: PathBuf::from("bbb-migrate-cache"),
            playback_hosts: Vec::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PodConfig {
    pub time_zone: String,
    pub default_recorder_path: PathBuf,
    pub recorder_directory: Option<String>,
    pub recorder_id: i64,
    pub temp_dir: Option<PathBuf>,
    /// Pod's database (postgres:// or mysql://), for `import`. Env: POD_DATABASE_URL. May hold a
    /// password: never printed.
    pub database_url: Option<SecretString>,
    /// Pod's SITE_ID: the site of rows made for the admin and for Moodle owners.
    pub site_id: i32,
    /// The `auth_user.id` that receives recordings nobody else owns (Python SCRIPT_ADMIN_ID).
    pub admin_id: i32,
    /// Pod's SECRET_KEY, only to create users by SQL (owner hashkey). Env: POD_SECRET_KEY.
    pub secret_key: Option<SecretString>,
    /// Pod's REST root (`https://pod.example.org/rest/`): when set, missing users are created
    /// with `POST users/` (Pod's signals write their rows) instead of by SQL.
    #[serde(alias = "rest_base_url")]
    pub rest_url: Option<String>,
    /// A staff user's REST token. Env: POD_REST_TOKEN. Never printed or logged.
    pub rest_token: Option<SecretString>,
    /// Values of Pod's settings copied into a new user's owner row and Favorites playlist.
    pub auth_type: String,
    pub affiliation: String,
    pub establishment: String,
    pub favorites_description: String,
}

impl Default for PodConfig {
    fn default() -> Self {
        PodConfig {
            // Pod's own default TIME_ZONE (pod/main/settings.py); most sites set Europe/Paris.
            time_zone: "UTC".into(),
            default_recorder_path: PathBuf::from("/data/ftp-pod/ftp/"),
            recorder_directory: None,
            recorder_id: 1,
            temp_dir: None,
            database_url: None,
            site_id: 1,
            admin_id: 1,
            secret_key: None,
            rest_url: None,
            rest_token: None,
            // AUTH_TYPE[0][0], AFFILIATION[0][0], ESTABLISHMENTS[0][0] and the English
            // gettext of Pod's defaults (REPORT.md of the Pod schema fixtures).
            auth_type: "local".into(),
            affiliation: "student".into(),
            establishment: "Etab_1".into(),
            favorites_description: "Your favorites videos.".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    Mp4,
    Webm,
}

impl OutputFormat {
    pub fn ext(self) -> &'static str {
        match self {
            OutputFormat::Mp4 => "mp4",
            OutputFormat::Webm => "webm",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecorderConfig {
    pub command: Option<String>,
    pub format: OutputFormat,
    pub timeout_factor: f64,
    pub timeout_margin_secs: u64,
    pub default_length_secs: u64,
    pub grace_secs: u64,
    /// Record presentations whose picture is broken (`bbb-record --accept-broken`), keeping the
    /// list of defects with the output, instead of failing them.
    pub accept_broken: bool,
    /// Record presentations in fast mode (`bbb-record --fast`): the paused player is stepped from
    /// one picture change to the next instead of playing in real time. Downloads are unaffected.
    pub fast: bool,
}

impl Default for RecorderConfig {
    fn default() -> Self {
        RecorderConfig {
            command: None,
            format: OutputFormat::Mp4,
            // Spec 8: length x 1.5 + 10 min.
            timeout_factor: 1.5,
            timeout_margin_secs: 600,
            default_length_secs: 4 * 3600,
            grace_secs: 10,
            accept_broken: false,
            fast: false,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LedgerConfig {
    /// sqlite:// or postgres://; a PostgreSQL URL may hold a password, so never printed.
    pub url: SecretString,
    pub lease_secs: u64,
    pub max_attempts: i64,
    pub retry_base_secs: u64,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        LedgerConfig {
            url: SecretString::from("sqlite://bbb-migrate.db"),
            lease_secs: 90,
            max_attempts: 5,
            retry_base_secs: 30,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerConfig {
    /// 0 = from CPU count, free memory and the recorder's mode (`claim::default_jobs`).
    pub jobs: usize,
    pub download_stall_secs: u64,
    pub download_retries: u32,
    /// Free space kept in the temp and claim directories on top of a job's expected size.
    pub free_space_margin_mb: u64,
    /// How often a worker waiting for free space looks again.
    pub free_space_poll_ms: u64,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            jobs: 0,
            download_stall_secs: 120,
            download_retries: 5,
            free_space_margin_mb: 1024,
            free_space_poll_ms: 30_000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {}: {}", .0.display(), .1)]
    Read(PathBuf, std::io::Error),
    #[error("config file {}: {}", .0.display(), .1)]
    Parse(PathBuf, String),
    #[error("configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Reads the file (a missing *default* file means all defaults), then applies BBB_URL,
    /// BBB_SECRET and BBB_MIGRATE_LEDGER.
    pub fn load(path: &Path, explicit: bool) -> Result<Config, ConfigError> {
        let mut cfg = match std::fs::read_to_string(path) {
            Ok(text) => {
                Self::parse(&text).map_err(|e| ConfigError::Parse(path.to_path_buf(), e))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => Config::default(),
            Err(e) => return Err(ConfigError::Read(path.to_path_buf(), e)),
        };
        cfg.apply_env(|k| std::env::var(k).ok().filter(|v| !v.is_empty()));
        Ok(cfg)
    }

    pub fn parse(text: &str) -> Result<Config, String> {
        // toml's message names the unknown key and the keys that are accepted. Its Display
        // would also quote the offending line, which may hold the secret or a database
        // password: only the line and column are given.
        toml::from_str(text).map_err(|e: toml::de::Error| {
            let message = e.message().trim_end();
            match e.span() {
                Some(span) => {
                    let before = &text[..span.start.min(text.len())];
                    let line = before.matches('\n').count() + 1;
                    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
                    format!("line {line}, column {column}: {message}")
                }
                None => message.to_owned(),
            }
        })
    }

    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) {
        if let Some(v) = get("BBB_URL") {
            self.bbb.base_url = Some(v);
        }
        if let Some(v) = get("BBB_SECRET") {
            self.bbb.secret = Some(v.into());
        }
        if let Some(v) = get("BBB_MIGRATE_LEDGER") {
            self.ledger.url = v.into();
        }
        if let Some(v) = get("POD_DATABASE_URL") {
            self.pod.database_url = Some(v.into());
        }
        if let Some(v) = get("POD_SECRET_KEY") {
            self.pod.secret_key = Some(v.into());
        }
        if let Some(v) = get("POD_REST_TOKEN") {
            self.pod.rest_token = Some(v.into());
        }
        if let Some(v) = get("BBB_MIGRATE_SERVE_TOKEN") {
            self.serve.token = Some(v.into());
        }
    }

    pub fn base_url(&self) -> Result<&str, ConfigError> {
        let url = self.bbb.base_url.as_deref().ok_or_else(|| {
            ConfigError::Invalid("[bbb] base_url is not set (or set BBB_URL)".into())
        })?;
        let parsed = url::Url::parse(url)
            .map_err(|e| ConfigError::Invalid(format!("[bbb] base_url {url:?}: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(ConfigError::Invalid(format!(
                "[bbb] base_url {url:?}: must be http or https"
            )));
        }
        Ok(url)
    }

    /// Where playback URLs may point: `base_url`'s host and `[bbb] playback_hosts`.
    pub fn playback_hosts(&self) -> Result<crate::playback_hosts::PlaybackHosts, ConfigError> {
        crate::playback_hosts::PlaybackHosts::new(
            self.bbb.base_url.as_deref(),
            &self.bbb.playback_hosts,
        )
        .map_err(ConfigError::Invalid)
    }

    pub fn secret(&self) -> Result<&str, ConfigError> {
        self.bbb
            .secret
            .as_ref()
            .map(|s| s.expose_secret())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                ConfigError::Invalid("[bbb] secret is not set (or set BBB_SECRET)".into())
            })
    }

    pub fn time_zone(&self) -> Result<chrono_tz::Tz, ConfigError> {
        self.pod.time_zone.parse().map_err(|_| {
            ConfigError::Invalid(format!(
                "[pod] time_zone {:?} is not an IANA time zone",
                self.pod.time_zone
            ))
        })
    }

    /// The claim directory name: one plain path component (Pod's `recorder.directory`, ≤ 50).
    pub fn recorder_directory(&self) -> Result<&str, ConfigError> {
        let d = self.pod.recorder_directory.as_deref().ok_or_else(|| {
            ConfigError::Invalid(
                "[pod] recorder_directory is not set (the Pod recorder's directory)".into(),
            )
        })?;
        if !is_directory_name(d) {
            return Err(ConfigError::Invalid(format!(
                "[pod] recorder_directory {d:?} must be a single directory name of at most 50 characters"
            )));
        }
        Ok(d)
    }

    pub fn api_timeout(&self) -> Duration {
        Duration::from_secs(self.bbb.timeout_secs.max(1))
    }
}

/// Whether `d` is one plain path component of at most 50 characters (Pod's
/// `recorder.directory`): never `.`/`..`, a separator or NUL, so it cannot leave the recorder root.
pub fn is_directory_name(d: &str) -> bool {
    !d.is_empty()
        && d.chars().count() <= 50
        && d != "."
        && d != ".."
        && !d.contains(['/', '\\', '\0'])
}

/// The commented template written by `init-config` (every setting of spec 17.1 that this
/// version implements).
pub const TEMPLATE: &str = r#"# bbb-migrate configuration. Unknown keys are an error.

[bbb]
# BigBlueButton or Scalelite base URL, with or without trailing slash. Env: BBB_URL.
base_url = "https://bbb.example.org/"
# bbb-web securitySalt or Scalelite LOADBALANCER_SECRET. Env: BBB_SECRET (preferred: keeps it out
# of files). Never printed or logged.
secret = ""
# sha1 | sha256 | sha384 | sha512 (what the server accepts).
checksum = "sha1"
# Rewrite 2.0 presentation URLs to the 2.3 player (spec 4.4). Turn off for a real BBB <= 2.2.
playback_url_23 = true
# single (one call, like the Python command) | prefix (recordID=0..f, merged: BBB and Scalelite,
# large servers) | paged (BBB >= 2.6 offset/limit, stops at totalElements).
fetch = "prefix"
# Per-request timeout, retries on 5xx / timeouts / HTML 404, first retry delay (doubles).
timeout_secs = 300
retries = 4
retry_delay_ms = 2000
# Playback URLs are fetched, recorded or handed to Pod only when they are http(s) on base_url's
# host name or on one listed here (host names, any port): a Scalelite whose playbacks live on its
# BBB servers lists them. Any other URL (file:, javascript:, a foreign host, a redirect to one)
# fails its recording as permanent in phase "select".
playback_hosts = []
# Raw getRecordings responses are kept here; --use-cache reads them instead of the server.
cache_dir = "bbb-migrate-cache"

[pod]
# Pod's TIME_ZONE: file names carry the local start date.
time_zone = "Europe/Paris"
# Pod's DEFAULT_RECORDER_PATH and the directory of the recorder used for manual claim (with
# database_url set, the recorder recorder_id's own directory is used instead).
default_recorder_path = "/data/ftp-pod/ftp/"
recorder_directory = "bbb-claim"
recorder_id = 1
# Partial files live here: outside default_recorder_path (Pod's cron walks it) and on the same
# filesystem. Default: <parent of default_recorder_path>/.bbb-migrate-tmp
# temp_dir = "/data/ftp-pod/.bbb-migrate-tmp"
# Pod's database (postgres:// or mysql://). Env: POD_DATABASE_URL. Used by `import` (external
# recordings) and by `claim`: with it, `claim` checks the recorder (recorder_id) first and
# registers each placed file for manual claim (recorder_recordingfiletreatment).
# database_url = "postgres://pod@127.0.0.1/pod"
# Pod's SITE_ID, and the auth_user.id that gets recordings nobody else owns.
site_id = 1
admin_id = 1
# Pod's SECRET_KEY: needed to create missing users by SQL (their owner hashkey). Env: POD_SECRET_KEY.
# secret_key = ""
# Or create missing users through Pod's REST API (POST <rest_url>users/, a staff user's token):
# Pod's own signals then write the user's rows, and secret_key is not needed.
# Env: POD_REST_TOKEN for the token (preferred). Never printed or logged.
# rest_url = "https://pod.example.org/rest/"
# rest_token = ""
# Copied into the rows of a new user, as Pod's settings would: AUTH_TYPE[0][0],
# AFFILIATION[0][0], ESTABLISHMENTS[0][0], and "Your favorites videos." in LANGUAGE_CODE.
auth_type = "local"
affiliation = "student"
establishment = "Etab_1"
favorites_description = "Your favorites videos."

[moodle]
# Used by `import --moodle` / `export-csv --moodle` to find the moderators of a recording.
table_prefix = "mdl_"
# PostgreSQL only.
schema = "public"
# Recordings whose bbb-origin-server-name is listed here are not looked up (exact match).
ignored_servers = []
# HTML appended once to the description of each activity whose recordings were imported.
# inform_html = "<p>The recordings of this activity are now in Pod: My external videos.</p>"
# One database per bbb-origin-server-name (exact match), else `default`.
# [moodle.databases."moodle.example.org"]
# url = "mysql://pod:secret@db.example.org/moodle"
# [moodle.databases.default]
# url = "postgres://moodle@db.example.org/moodle"

[recorder]
# bbb-record executable. Default: next to bbb-migrate, then PATH.
# command = "/usr/local/bin/bbb-record"
# mp4 | webm
format = "mp4"
# Wall-clock limit of one recording: length x timeout_factor + timeout_margin_secs;
# default_length_secs when the server gives no length. grace_secs between SIGTERM and SIGKILL.
timeout_factor = 1.5
timeout_margin_secs = 600
default_length_secs = 14400
grace_secs = 10
# A presentation whose picture is broken (a slide or whiteboard asset the server does not serve,
# the player's error screen) fails permanently, phase render. true: record it anyway; `status`
# lists its defects ("degraded"). For damaged recordings whose best copy this will be.
accept_broken = false
# true: record presentations in fast mode (bbb-record --fast), stepping the paused player from one
# picture change to the next instead of playing it in real time. One fast mode cannot reproduce
# (a screen share, the 2.0 player...) is recorded in real time, with the reason in the log and in
# `status`, which shows each output's mode. Video playbacks are downloaded either way.
fast = false

[ledger]
# Job ledger: sqlite://FILE on one machine, or postgres://USER@HOST/DB shared by several hosts
# (schema created by the tool). Env: BBB_MIGRATE_LEDGER.
url = "sqlite://bbb-migrate.db"
# A worker renews its lease every lease_secs/3; a silent worker's job is taken over after it.
lease_secs = 90
# Transient failures are retried with exponential backoff from retry_base_secs, then the job is dead.
max_attempts = 5
retry_base_secs = 30

[worker]
# Recordings processed at once (0 = from CPU count, free memory and the recorder's mode: 1.5 per
# core in real time, 1 per core in fast mode, at most one per 1.5 GB; a download costs almost
# nothing).
jobs = 0
# A download that receives nothing for this long is retried (resuming with Range).
download_stall_secs = 120
download_retries = 5
# A job starts writing only when the temp and claim directories have its expected size (a
# download's announced size; a recording's length x 4 Mbit/s) plus this margin free; until then
# the worker waits, looking again every free_space_poll_ms.
free_space_margin_mb = 1024
free_space_poll_ms = 30000

[serve]
# `bbb-migrate serve` (status API and Prometheus metrics) asks every request for this token
# (Authorization: Bearer TOKEN); without one it listens on loopback only. Env:
# BBB_MIGRATE_SERVE_TOKEN.
# token = ""
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax_errors_never_quote_the_line() {
        let e = Config::parse("[bbb]\nsecret = \"s3cr3t-value\" oops\n").unwrap_err();
        assert!(e.starts_with("line 2, column "), "{e}");
        assert!(!e.contains("s3cr3t"), "{e}");
        let e = Config::parse("[pod]\ndatabase_url = postgres://u:pw@h/db\n").unwrap_err();
        assert!(e.starts_with("line 2, column "), "{e}");
        assert!(!e.contains("pw@h"), "{e}");
        let e = Config::parse("[bbb]\nsecrett = \"x\"\n").unwrap_err();
        assert!(e.contains("secrett") && e.starts_with("line 2"), "{e}");
    }

    #[test]
    fn template_parses_and_unknown_keys_are_named() {
        let c = Config::parse(TEMPLATE).unwrap();
        assert_eq!(c.pod.time_zone, "Europe/Paris");
        assert!(
            !c.recorder.fast,
            "fast mode is asked for, never the default"
        );
        assert!(
            Config::parse("[recorder]\nfast = true\n")
                .unwrap()
                .recorder
                .fast
        );
        let e = Config::parse("[recorder]\nfast = \"yes\"\n").unwrap_err();
        assert!(e.starts_with("line 2"), "{e}");
        assert_eq!(c.recorder_directory().unwrap(), "bbb-claim");
        let e = Config::parse("[bbb]\nbase_urll = \"x\"\n").unwrap_err();
        assert!(e.contains("base_urll"), "{e}");
        let e = Config::parse("[moodle]\nengine = \"mysql\"\n").unwrap_err();
        assert!(e.contains("engine"), "{e}");
        let c = Config::parse(
            "[moodle]\nignored_servers = [\"old\"]\n[moodle.databases.default]\nurl = \"mysql://u:moodlepw@h/m\"\n",
        )
        .unwrap();
        assert_eq!(c.moodle.table_prefix, "mdl_");
        assert_eq!(
            c.moodle.databases["default"].url.expose_secret(),
            "mysql://u:moodlepw@h/m"
        );
        assert!(!format!("{c:?}").contains("moodlepw"));
        let e = Config::parse("[bbb]\nchecksum = \"md5\"\n").unwrap_err();
        assert!(e.contains("md5"), "{e}");
    }

    #[test]
    fn env_overrides_and_secret_is_redacted() {
        let mut c = Config::parse("[bbb]\nsecret = \"s3cr3t-value\"\n").unwrap();
        c.apply_env(|k| match k {
            "BBB_URL" => Some("https://env.example/".into()),
            "BBB_MIGRATE_LEDGER" => Some("sqlite://x.db".into()),
            _ => None,
        });
        assert_eq!(c.base_url().unwrap(), "https://env.example/");
        assert_eq!(c.ledger.url.expose_secret(), "sqlite://x.db");
        assert!(!format!("{c:?}").contains("s3cr3t-value"));
        // A PostgreSQL ledger's password never prints either.
        c.apply_env(|k| (k == "BBB_MIGRATE_LEDGER").then(|| "postgres://u:ledgerpw@h/l".into()));
        assert!(!format!("{c:?}").contains("ledgerpw"));
        let mut c = Config::parse("[pod]\nsecret_key = \"pod-key-value\"\n").unwrap();
        c.apply_env(|k| (k == "POD_DATABASE_URL").then(|| "mysql://u:dbpass@h/pod".into()));
        assert_eq!(
            c.pod.database_url.as_ref().map(|u| u.expose_secret()),
            Some("mysql://u:dbpass@h/pod")
        );
        let dbg = format!("{c:?}");
        assert!(
            !dbg.contains("pod-key-value") && !dbg.contains("dbpass"),
            "{dbg}"
        );
        let mut c = Config::parse("[pod]\nrest_url = \"https://pod.example/rest/\"\n").unwrap();
        c.apply_env(|k| (k == "POD_REST_TOKEN").then(|| "rest-token-value".into()));
        assert_eq!(
            c.pod.rest_token.as_ref().map(|t| t.expose_secret()),
            Some("rest-token-value")
        );
        assert!(!format!("{c:?}").contains("rest-token-value"));
        let c = Config::parse("[pod]\nrest_base_url = \"https://pod.example/rest/\"\n").unwrap();
        assert_eq!(c.pod.rest_url.as_deref(), Some("https://pod.example/rest/"));
    }

    #[test]
    fn recorder_directory_must_be_one_component() {
        for bad in ["../x", "a/b", "..", ""] {
            let c = Config::parse(&format!("[pod]\nrecorder_directory = {bad:?}\n")).unwrap();
            assert!(c.recorder_directory().is_err(), "{bad:?}");
        }
    }
}
