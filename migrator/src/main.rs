//! `bbb-migrate`: parses the command line, sets up logging, runs the command, exits with its code.

mod cli;
mod commands;

use clap::{CommandFactory, Parser};

fn main() {
    let cli = cli::Cli::parse();
    if let Some(kind) = cli.generate.clone() {
        if let Err(e) = bbb_common::cli_docs::print(kind, cli::Cli::command()) {
            eprintln!("bbb-migrate: --generate: {e}");
            std::process::exit(cli::exit::FAILED);
        }
        return;
    }
    let default = match cli.verbose {
        0 => "bbb_migrator=info,bbb_migrate=info,warn",
        1 => "bbb_migrator=debug,bbb_migrate=debug,info",
        _ => "debug",
    };
    bbb_common::logging::init(cli.log_format, "BBB_MIGRATE_LOG", default);
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let code = rt.block_on(commands::run(cli));
    std::process::exit(code);
}
