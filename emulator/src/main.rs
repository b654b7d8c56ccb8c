//! `servicenow-emulator`: serve the emulated instance until interrupted.

use anyhow::Context as _;
use clap::Parser;
use servicenow_emulator::{generate, serve, serve_tls, tls, DataSpec, State, User};
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// A local ServiceNow Table API emulator.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Number of devices to generate (with ~2 adapters each and one business application per 40 devices).
    #[arg(long, default_value_t = 1000)]
    devices: usize,
    /// Seed of the generated data.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// User name of the integration user (role cmdb_read).
    #[arg(long, default_value = "svc_exposure")]
    user: String,
    /// Password of the integration user.
    #[arg(long, default_value = "exposure")]
    password: String,
    /// Added latency per request, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Serve HTTPS with a certificate from a generated CA.
    #[arg(long)]
    tls: bool,
    /// With --tls: write the CA certificate (PEM) to this file.
    #[arg(long, requires = "tls")]
    ca_out: Option<std::path::PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let db = generate(DataSpec {
        devices: args.devices,
        seed: args.seed,
    });
    let users = vec![User::new(&args.user, &args.password, &["cmdb_read"])];
    let tls = args.tls.then(tls::generate).transpose()?;
    if let (Some(t), Some(path)) = (&tls, &args.ca_out) {
        std::fs::write(path, &t.ca_pem)
            .with_context(|| format!("cannot write the CA certificate to {}", path.display()))?;
    }
    let scheme = if tls.is_some() { "https" } else { "http" };
    let latency = Duration::from_millis(args.latency_ms);
    let state = Arc::new(State::new(db, users, latency, scheme));
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    println!("listening on {scheme}://{}", listener.local_addr()?);
    std::io::stdout().flush()?;
    let server = async move {
        match tls {
            Some(t) => serve_tls(listener, state, t.server_config).await,
            None => serve(listener, state).await,
        }
    };
    tokio::select! {
        r = server => r?,
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}
