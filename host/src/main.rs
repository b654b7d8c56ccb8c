//! `connector-host` binary: see [`connector_host::cli::main`].

fn main() -> std::process::ExitCode {
    connector_host::cli::main()
}
