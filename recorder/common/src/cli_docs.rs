//! Man pages and shell completions, generated from a tool's own clap definition so they cannot
//! drift from its `--help`. Both tools expose this as the hidden `--generate KIND` flag, which
//! the Debian package build calls (the way ripgrep ships its man page and completions).

use std::io::Write;
use std::path::PathBuf;
use std::str::FromStr;

use clap_complete::Shell;

/// What `--generate` writes to standard output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Generated {
    /// A roff man page (section 1).
    Man,
    /// `man-pages:DIR`: the man page and one per subcommand (`bbb-migrate-claim.1`, ...),
    /// written into DIR instead of standard output.
    ManPages(PathBuf),
    /// A completion script for this shell.
    Completion(Shell),
}

impl Generated {
    /// The names accepted by `--generate`.
    pub const NAMES: [&'static str; 5] = [
        "man",
        "man-pages:DIR",
        "complete-bash",
        "complete-zsh",
        "complete-fish",
    ];
}

impl FromStr for Generated {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "man" => Ok(Generated::Man),
            "complete-bash" => Ok(Generated::Completion(Shell::Bash)),
            "complete-zsh" => Ok(Generated::Completion(Shell::Zsh)),
            "complete-fish" => Ok(Generated::Completion(Shell::Fish)),
            _ if s.starts_with("man-pages:") && s.len() > "man-pages:".len() => {
                Ok(Generated::ManPages(PathBuf::from(&s["man-pages:".len()..])))
            }
            other => Err(format!(
                "unknown --generate kind {other:?} (one of {})",
                Generated::NAMES.join(", ")
            )),
        }
    }
}

/// Writes `kind` for the command `cmd` (its name is the binary's name) to `out`, or for
/// `ManPages` into its directory.
pub fn generate(
    kind: Generated,
    mut cmd: clap::Command,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    match kind {
        Generated::Man => clap_mangen::Man::new(cmd).render(out),
        Generated::ManPages(dir) => clap_mangen::generate_to(cmd, dir),
        Generated::Completion(shell) => {
            let name = cmd.get_name().to_owned();
            clap_complete::generate(shell, &mut cmd, name, out);
            Ok(())
        }
    }
}

/// Writes `kind` to standard output. A reader that stops early (`| head`) is no error.
pub fn print(kind: Generated, cmd: clap::Command) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match generate(kind, cmd, &mut out).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> clap::Command {
        clap::Command::new("bbb-sample")
            .about("A sample tool")
            .arg(clap::Arg::new("output").long("output").help("Output file"))
            .subcommand(clap::Command::new("claim").about("Claims"))
    }

    #[test]
    fn man_page_names_the_tool_and_its_options() {
        let mut out = Vec::new();
        generate(Generated::Man, sample(), &mut out).unwrap();
        let page = String::from_utf8(out).unwrap();
        assert!(page.starts_with(".ie"), "{page}");
        assert!(page.contains(".TH bbb-sample 1"), "{page}");
        assert!(page.contains("output"), "{page}");
    }

    #[test]
    fn every_kind_parses_and_generates() {
        for name in Generated::NAMES.iter().filter(|n| !n.contains("DIR")) {
            let kind: Generated = name.parse().unwrap();
            let mut out = Vec::new();
            generate(kind, sample(), &mut out).unwrap();
            let text = String::from_utf8(out).unwrap();
            assert!(text.contains("bbb-sample"), "{name}: {text}");
        }
        assert!("complete-powershell".parse::<Generated>().is_err());
        assert!("man-pages:".parse::<Generated>().is_err());
    }

    #[test]
    fn man_pages_has_one_page_per_subcommand() {
        let dir = tempfile::tempdir().unwrap();
        let kind: Generated = format!("man-pages:{}", dir.path().display())
            .parse()
            .unwrap();
        generate(kind, sample(), &mut std::io::sink()).unwrap();
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["bbb-sample-claim.1", "bbb-sample.1"]);
        let claim = std::fs::read_to_string(dir.path().join("bbb-sample-claim.1")).unwrap();
        assert!(claim.contains("Claims"), "{claim}");
    }
}
