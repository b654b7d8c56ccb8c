//! `servicenow-emulator`: serve the emulated instance until interrupted.

use clap::Parser;
use servicenow_emulator::{generate, serve, DataSpec, State, User};
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
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let db = generate(DataSpec {
        devices: args.devices,
        seed: args.seed,
    });
    let users = vec![User::new(&args.user, &args.password, &["cmdb_read"])];
    let state = Arc::new(State::new(
        db,
        users,
        Duration::from_millis(args.latency_ms),
        "http",
    ));
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!("listening on http://{}", listener.local_addr()?);
    tokio::select! {
        r = serve(listener, state) => r?,
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}
