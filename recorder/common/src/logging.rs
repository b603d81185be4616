//! How both tools write their log: to stderr, one line per event, as text for people or as JSON
//! for log collectors. Colours only when stderr is a terminal (and `NO_COLOR` is unset), so that
//! journald, log files and the migrator's copy of the recorder's stderr hold no escape codes.

use std::io::IsTerminal;
use std::str::FromStr;

use tracing_subscriber::EnvFilter;

/// The shape of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// `2026-12-02T14:00:00Z  INFO target: message key=value`, coloured on a terminal.
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `fields` (the message and the
    /// event's fields, such as `record_id`), and the enclosing spans.
    Json,
}

impl LogFormat {
    /// The names accepted by `--log-format`.
    pub const NAMES: [&'static str; 2] = ["text", "json"];
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("unknown log format {other:?} (text or json)")),
        }
    }
}

/// Whether text lines get colours: only on a terminal, and never with `NO_COLOR` set
/// (<https://no-color.org>).
pub fn colours(stderr_is_terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Installs the global subscriber. `env_var` (e.g. `BBB_MIGRATE_LOG`) overrides the filter
/// `default` with the usual `tracing` directives.
pub fn init(format: LogFormat, env_var: &str, default: &str) {
    let filter = EnvFilter::try_from_env(env_var).unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder
            .with_ansi(colours(
                std::io::stderr().is_terminal(),
                std::env::var_os("NO_COLOR"),
            ))
            .init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(false)
            .with_current_span(true)
            .init(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_only_on_a_terminal_without_no_color() {
        assert!(colours(true, None));
        assert!(!colours(false, None));
        assert!(!colours(true, Some("1".into())));
        // An empty NO_COLOR does not count, as the convention says.
        assert!(colours(true, Some("".into())));
    }

    #[test]
    fn formats_parse_by_name() {
        for name in LogFormat::NAMES {
            assert!(name.parse::<LogFormat>().is_ok());
        }
        assert_eq!("json".parse(), Ok(LogFormat::Json));
        assert!("xml".parse::<LogFormat>().is_err());
    }
}
