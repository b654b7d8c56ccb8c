//! `servicenow-emulator`: serve the emulated instance until interrupted.

use anyhow::Context as _;
use clap::Parser;
use servicenow_emulator::{
    generate, serve, serve_tls, tls, DataSpec, Database, OAuthClient, RateRule, State, User,
};
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
    /// Also let the integration user read `sys_audit_delete` (a custom read
    /// ACL on the audit, which ServiceNow leaves to admins by default).
    #[arg(long)]
    audit_readable: bool,
    /// Added latency per request, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Time each new connection waits before it is served, in milliseconds:
    /// the TCP and TLS handshakes' round trips to a distant instance (e.g.
    /// 160 for two round trips of 80 ms).
    #[arg(long, default_value_t = 0)]
    handshake_ms: u64,
    /// Server time per row a list answer returns, in microseconds (an
    /// instance runs ACLs and business rules on each row it reads).
    #[arg(long, default_value_t = 0)]
    row_time_us: u64,
    /// Serve HTTPS with a certificate from a generated CA.
    #[arg(long)]
    tls: bool,
    /// With --tls: write the CA certificate (PEM) to this file.
    #[arg(long, requires = "tls")]
    ca_out: Option<std::path::PathBuf>,
    /// Register an OAuth client (POST /oauth_token.do) with this client_id; its
    /// application user (client-credentials grant) is --user.
    #[arg(long, requires = "oauth_client_secret")]
    oauth_client_id: Option<String>,
    /// The OAuth client's secret.
    #[arg(long, requires = "oauth_client_id")]
    oauth_client_secret: Option<String>,
    /// Enable the OAuth client-credentials grant (off by default, as on ServiceNow).
    #[arg(long)]
    client_credentials: bool,
    /// Accept this API key (x-sn-apikey header) for --user.
    #[arg(long)]
    api_key: Option<String>,
    /// Write the generated data as JSON ({table: [{column: value}]}) to this file.
    #[arg(long)]
    dump_data: Option<std::path::PathBuf>,
    /// Rate-limit rule for --user: requests allowed per hour (429 with Retry-After beyond).
    #[arg(long)]
    rate_limit: Option<u32>,
    /// Length of the rate-limit window in seconds (ServiceNow: 3600).
    #[arg(long, default_value_t = 3600)]
    rate_window_s: u64,
    /// Requests served at once; more wait in a queue (see --queue-depth).
    #[arg(long)]
    max_concurrent: Option<usize>,
    /// Requests that may wait for a slot before a bare 429.
    #[arg(long, default_value_t = 50)]
    queue_depth: usize,
    /// Share of requests (0.0-1.0) failed with a random fault: 5xx, HTML page,
    /// bare 429, cancelled transaction or broken connection.
    #[arg(long, default_value_t = 0.0)]
    fault_rate: f64,
    /// Seed of the random faults.
    #[arg(long, default_value_t = 1)]
    fault_seed: u64,
    /// Changes per second made to the data while serving (inserts, updates,
    /// deletes; deletes are written to sys_audit_delete).
    #[arg(long, default_value_t = 0.0)]
    mutations_per_second: f64,
    /// Act as an instance whose IP Address Access Control denies every
    /// address: each request gets the "Access restricted" page.
    #[arg(long)]
    deny_all_ips: bool,
    /// Lifetime of OAuth access tokens, in seconds.
    #[arg(long, default_value_t = 1800)]
    token_lifetime_s: u64,
    /// Lock a user out after this many consecutive failed Basic logins, as
    /// a hardened instance does (`glide.user.max_unlock_attempts`, at most 5
    /// in ServiceNow's hardening guide); a successful login clears the count.
    #[arg(long)]
    lockout_after: Option<u32>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let db = generate(DataSpec {
        devices: args.devices,
        seed: args.seed,
    });
    if let Some(path) = &args.dump_data {
        let file = std::fs::File::create(path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        let mut out = std::io::BufWriter::new(file);
        db.dump(&mut out)?;
        out.flush()?;
    }
    let tls = args.tls.then(|| tls::generate(false)).transpose()?;
    if let (Some(t), Some(path)) = (&tls, &args.ca_out) {
        std::fs::write(path, &t.ca_pem)
            .with_context(|| format!("cannot write the CA certificate to {}", path.display()))?;
    }
    let scheme = if tls.is_some() { "https" } else { "http" };
    let state = build_state(&args, db, scheme);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    println!("listening on {scheme}://{}", listener.local_addr()?);
    std::io::stdout().flush()?;
    let mutator = servicenow_emulator::mutator::run(
        state.clone(),
        args.mutations_per_second,
        args.seed ^ 0x5EED,
    );
    let server = async move {
        match tls {
            Some(t) => serve_tls(listener, state, t.server_config).await,
            None => serve(listener, state).await,
        }
    };
    tokio::select! {
        r = server => r?,
        _ = mutator => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}

/// The served state: the data, its one user, and what the flags ask of
/// rate limits, faults, IP access control and OAuth.
fn build_state(args: &Args, db: Database, scheme: &'static str) -> Arc<State> {
    let roles: &[&str] = if args.audit_readable {
        &["cmdb_read", servicenow_emulator::auth::AUDIT_READER_ROLE]
    } else {
        &["cmdb_read"]
    };
    let users = vec![User::new(&args.user, &args.password, roles)];
    let latency = Duration::from_millis(args.latency_ms);
    let state = Arc::new(
        State::new(db, users, latency, scheme)
            .with_semaphore(args.max_concurrent, args.queue_depth)
            .with_wan(
                Duration::from_millis(args.handshake_ms),
                Duration::from_micros(args.row_time_us),
            ),
    );
    state.set_rate_window(Duration::from_secs(args.rate_window_s));
    if let Some(limit) = args.rate_limit {
        state.add_rate_rule(RateRule {
            sys_id: "0e3c5f1a2b4d6e8f9a0b1c2d3e4f5a6b".into(),
            user: Some(args.user.clone()),
            limit,
        });
    }
    state.set_random_faults(args.fault_rate, args.fault_seed);
    state
        .deny_all_ips
        .store(args.deny_all_ips, std::sync::atomic::Ordering::Relaxed);
    state.configure_auth(|auth| {
        if let (Some(id), Some(secret)) = (&args.oauth_client_id, &args.oauth_client_secret) {
            auth.clients.push(OAuthClient {
                id: id.clone(),
                secret: secret.clone(),
                application_user: Some(args.user.clone()),
            });
        }
        auth.client_credentials_enabled = args.client_credentials;
        if let Some(key) = &args.api_key {
            auth.api_keys.insert(key.clone(), args.user.clone());
        }
        auth.token_lifetime = Duration::from_secs(args.token_lifetime_s.max(1));
        auth.lockout_after = args.lockout_after;
    });
    state
}
