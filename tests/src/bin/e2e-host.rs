//! The `connector-host` process, built inside this package so that its
//! integration tests can run it as a child (Cargo sets `CARGO_BIN_EXE_e2e-host`
//! only for binaries of the same package) and kill it with real signals.

fn main() -> std::process::ExitCode {
    connector_host::cli::main()
}
