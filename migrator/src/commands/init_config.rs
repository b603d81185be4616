//! `bbb-migrate init-config`: writes the commented configuration template.

use super::*;

pub(super) fn init_config(
    cli: &Cli,
    output: Option<&str>,
    config_path: &Path,
    force: bool,
) -> Res<i32> {
    if output == Some("-") {
        let _ = out().write_all(config::TEMPLATE.as_bytes());
        return Ok(exit::OK);
    }
    let path = output
        .map(PathBuf::from)
        .unwrap_or_else(|| config_path.to_path_buf());
    if cli.dry_run {
        let _ = writeln!(
            out(),
            "dry run: would write the configuration template to {}",
            path.display()
        );
        return Ok(exit::OK);
    }
    if path.exists() && !force {
        return Err(usage(format!(
            "{} already exists (use --force to replace it)",
            path.display()
        )));
    }
    bbb_common::durable::write_atomic(&path, config::TEMPLATE.as_bytes())
        .map_err(|e| usage(e.to_string()))?;
    let _ = writeln!(out(), "wrote {}", path.display());
    Ok(exit::OK)
}
