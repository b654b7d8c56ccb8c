//! `connector-host` binary: parses arguments, logs to stderr, runs the CLI.

use clap::Parser;
use connector_host::cli::{run, Cli, Failure};
use connector_host::secrets::ProcessEnvironment;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CONNECTOR_HOST_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match run(cli, &ProcessEnvironment, &mut out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let code = e.downcast_ref::<Failure>().map_or(1, |f| f.exit_code);
            // One paragraph: the cause chain joined on one line.
            eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::from(code)
        }
    }
}
