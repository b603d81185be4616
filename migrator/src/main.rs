//! `bbb-migrate`: parses the command line, sets up logging, runs the command, exits with its code.

mod cli;
mod commands;

use clap::Parser;

fn main() {
    let cli = cli::Cli::parse();
    let default = match cli.verbose {
        0 => "bbb_migrator=info,bbb_migrate=info,warn",
        1 => "bbb_migrator=debug,bbb_migrate=debug,info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("BBB_MIGRATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let code = rt.block_on(commands::run(cli));
    std::process::exit(code);
}
