//! The ServiceNow connector's logic compiled natively: the same crate as the
//! component, with a `ureq` transport instead of `wasi:http`, syncing into the
//! host's SQLite store the way the host does (one worker per stream, each
//! page committed with its cursor). The benchmark runs it next to
//! `connector-host sync` so that the ratio shows what the sandbox costs.
//!
//! `native-sync --instance URL --user NAME --ca-file PEM --database PATH
//! [--page-size N]`; the password comes from `NATIVE_SYNC_PASSWORD`.

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use clap::Parser;
use connector_host::store::{PageCommit, Store, StoredRecord, StreamRequest};
use servicenow_connector::contract::{Partition, ReadRequest};
use servicenow_connector::transport::{HttpRequest, HttpResponse, Transport, TransportError};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

#[derive(Parser)]
struct Args {
    /// The instance URL, e.g. `https://127.0.0.1:8443`.
    #[arg(long)]
    instance: String,
    /// User name for Basic authentication.
    #[arg(long)]
    user: String,
    /// CA certificate (PEM) to trust.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// SQLite database to write.
    #[arg(long)]
    database: PathBuf,
    /// Rows per page.
    #[arg(long, default_value_t = 2000)]
    page_size: u32,
}

/// A blocking HTTP transport with Basic authentication.
struct UreqTransport {
    agent: ureq::Agent,
    authorization: String,
}

impl Transport for UreqTransport {
    fn get(&mut self, request: &HttpRequest) -> Result<HttpResponse, TransportError> {
        let url = format!(
            "{}://{}{}",
            request.scheme.as_str(),
            request.authority,
            request.path_and_query
        );
        let mut response = self
            .agent
            .get(&url)
            .header("authorization", &self.authorization)
            .header("accept", "application/json")
            .call()
            .map_err(|e| TransportError::Other(e.to_string()))?;
        let headers = response
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = response
            .body_mut()
            .with_config()
            .limit(u64::MAX)
            .read_to_vec()
            .map_err(|e| TransportError::Other(e.to_string()))?;
        Ok(HttpResponse {
            status: response.status().as_u16(),
            headers,
            body,
        })
    }
}

fn agent(ca_file: Option<&PathBuf>) -> Result<ureq::Agent> {
    use ureq::tls::{Certificate, RootCerts, TlsConfig};
    let mut tls = TlsConfig::builder();
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let cert = Certificate::from_pem(&pem)?.to_owned();
        tls = tls.root_certs(RootCerts::Specific(Arc::new(vec![cert])));
    }
    Ok(ureq::Agent::config_builder()
        .http_status_as_error(false)
        .tls_config(tls.build())
        .build()
        .into())
}

fn main() -> Result<()> {
    let args = Args::parse();
    let password = std::env::var("NATIVE_SYNC_PASSWORD")
        .context("set NATIVE_SYNC_PASSWORD to the user's password")?;
    let authorization = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{password}", args.user))
    );
    let agent = agent(args.ca_file.as_ref())?;
    let settings = vec![("instance".to_string(), args.instance.clone())];
    let info = servicenow_connector::connector::info();
    let store = Arc::new(Mutex::new(Store::open(&args.database)?));
    let connection = "native";
    let mut workers = Vec::new();
    for stream in info.streams {
        let (store, settings) = (store.clone(), settings.clone());
        let mut transport = UreqTransport {
            agent: agent.clone(),
            authorization: authorization.clone(),
        };
        let page_size = args.page_size;
        workers.push(std::thread::spawn(move || -> Result<u64> {
            let embed_field = stream
                .references
                .iter()
                .find(|r| r.embed_as.is_some())
                .map(|r| r.field.clone());
            let request = StreamRequest {
                partitions: 1,
                force_full: true,
                supports_incremental: true,
            };
            let plan = lock(&store).begin_stream(connection, &stream.name, request)?;
            let mut cursor = None;
            let mut records = 0;
            loop {
                let read = ReadRequest {
                    stream_name: stream.name.clone(),
                    partition: Partition { index: 0, count: 1 },
                    cursor: cursor.clone(),
                    watermark: None,
                    deletions_since: None,
                    page_size,
                };
                let page =
                    match servicenow_connector::connector::read(&settings, &read, &mut transport) {
                        Ok(page) => page,
                        Err(e) => bail!("{}: {e}", stream.name),
                    };
                let rows: Vec<StoredRecord> = page
                    .records
                    .into_iter()
                    .map(|json| {
                        StoredRecord::index(
                            &stream.name,
                            &stream.key_field,
                            embed_field.as_deref(),
                            json,
                        )
                    })
                    .collect::<Result<_, String>>()
                    .map_err(anyhow::Error::msg)?;
                records += rows.len() as u64;
                lock(&store).commit_page(
                    connection,
                    &stream.name,
                    PageCommit {
                        generation: plan.generation,
                        partition: 0,
                        records: &rows,
                        tombstones: &[],
                        next_cursor: page.next_cursor.as_deref(),
                        watermark: page.watermark.as_deref(),
                        window_start: page.window_start.as_deref(),
                    },
                )?;
                match page.next_cursor {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
            lock(&store).finish_stream(
                connection,
                &stream.name,
                &plan,
                stream.updated_field.as_deref(),
            )?;
            Ok(records)
        }));
    }
    let mut total = 0;
    for worker in workers {
        total += worker.join().expect("a worker panicked")?;
    }
    println!("{total} records");
    Ok(())
}

fn lock(store: &Mutex<Store>) -> std::sync::MutexGuard<'_, Store> {
    store.lock().unwrap_or_else(|p| p.into_inner())
}
