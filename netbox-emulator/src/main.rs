//! `netbox-emulator`: serve the emulated NetBox until interrupted.

use anyhow::Context as _;
use clap::Parser;
use netbox_emulator::{generate, router, DataSpec, State, Token, V1_TOKEN, V2_TOKEN};
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;

/// A local NetBox REST API emulator.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Address to listen on (port 0: any free port; the bound one is printed).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Number of devices to generate.
    #[arg(long, default_value_t = 1000)]
    devices: usize,
    /// Seed of the generated data.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Accept this token (v1: 40 characters; v2: nbt_<key>.<token>); may be
    /// repeated. Default: the two documented test tokens.
    #[arg(long = "token")]
    tokens: Vec<String>,
    /// Tokens may not view the change log (core.view_objectchange).
    #[arg(long)]
    no_change_log_permission: bool,
    /// Share of list requests (0.0-1.0) failed with a random fault: a 502 or
    /// 503 page, or a 429 with Retry-After.
    #[arg(long, default_value_t = 0.0)]
    fault_rate: f64,
    /// Seed of the random faults.
    #[arg(long, default_value_t = 1)]
    fault_seed: u64,
    /// Write every device, interface and IP address as the API renders them
    /// (`{"devices": [...], "interfaces": [...], "ip_addresses": [...]}`)
    /// to this file, before serving.
    #[arg(long)]
    dump_data: Option<std::path::PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let texts = if args.tokens.is_empty() {
        vec![V1_TOKEN.to_string(), V2_TOKEN.to_string()]
    } else {
        args.tokens.clone()
    };
    let tokens = texts
        .iter()
        .map(|t| Token {
            view_changes: !args.no_change_log_permission,
            ..Token::full(t)
        })
        .collect();
    let db = generate(DataSpec {
        devices: args.devices,
        seed: args.seed,
    });
    let state = Arc::new(State::new(db, tokens));
    state.set_random_faults(args.fault_rate, args.fault_seed);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let origin = format!("http://{}", listener.local_addr()?);
    if let Some(path) = &args.dump_data {
        let dump = state.with_db(|db| netbox_emulator::render::dump(db, &origin));
        std::fs::write(path, dump.to_string())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    println!("listening on {origin}");
    std::io::stdout().flush()?;
    tokio::select! {
        r = axum::serve(listener, router(state)) => r?,
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}
