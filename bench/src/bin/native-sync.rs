//! The ServiceNow connector's logic compiled natively: the same crate as the
//! component, with a `ureq` transport instead of `wasi:http`, syncing into the
//! host's SQLite store the way the host does (the same partitions, as many
//! requests at a time, each page committed with its cursor). The benchmark runs it next to
//! `connector-host sync` so that the ratio shows what the sandbox costs.
//!
//! `native-sync --instance URL --user NAME --ca-file PEM --database PATH
//! [--page-size N] [--partitions N] [--concurrency N]`; the password comes
//! from `NATIVE_SYNC_PASSWORD`.

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use clap::Parser;
use connector_engine::store::{PageCommit, Store, StoredRecord, StreamRequest};
use connector_sandbox::config::SyncConfig;
use exposure_connector_sdk::http::{Http, Request, Response, TransportError};
use exposure_connector_sdk::types::{Partition, ReadRequest, StreamInfo};
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
    /// Rows per page (the host's default, `[sync] page_size`).
    #[arg(long, default_value_t = SyncConfig::default().page_size)]
    page_size: u32,
    /// `sys_id` partitions per stream (the host's default).
    #[arg(long, default_value_t = 4)]
    partitions: u32,
    /// Partitions read at the same time (the host's default request concurrency).
    #[arg(long, default_value_t = 4)]
    concurrency: u32,
}

/// A blocking HTTP transport with Basic authentication.
struct UreqTransport {
    agent: ureq::Agent,
    authorization: String,
}

impl Http for UreqTransport {
    fn send(&mut self, request: &Request) -> Result<Response, TransportError> {
        let url = request.url();
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
        Ok(Response {
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
    let store = Arc::new(Mutex::new(Store::open(&args.database)?));
    let tasks = plan_tasks(&mut lock(&store), args.partitions)?;
    let total = tasks.len();
    let queue = Arc::new(Mutex::new(tasks));
    let mut workers = Vec::new();
    for _ in 0..args.concurrency {
        let (queue, store, settings) = (queue.clone(), store.clone(), settings.clone());
        let mut transport = UreqTransport {
            agent: agent.clone(),
            authorization: authorization.clone(),
        };
        let (page_size, partitions) = (args.page_size, args.partitions);
        workers.push(std::thread::spawn(move || -> Result<Vec<Task>> {
            let mut done = Vec::new();
            loop {
                let Some(task) = queue.lock().unwrap_or_else(|p| p.into_inner()).pop() else {
                    return Ok(done);
                };
                read_partition(
                    &task,
                    partitions,
                    page_size,
                    &settings,
                    &mut transport,
                    &store,
                )?;
                done.push(task);
            }
        }));
    }
    let mut finished = Vec::with_capacity(total);
    for worker in workers {
        finished.extend(worker.join().expect("a worker panicked")?);
    }
    let records = finish_streams(&mut lock(&store), &finished)?;
    println!("{records} records");
    Ok(())
}

/// Every (stream, partition) of a full read, as the host plans them.
fn plan_tasks(store: &mut Store, partitions: u32) -> Result<Vec<Task>> {
    let mut tasks = Vec::new();
    for stream in servicenow_connector::connector::info().streams {
        let request = StreamRequest {
            partitions,
            incremental_partitions: 1,
            force_full: true,
            supports_incremental: true,
        };
        let plan = store.begin_stream(CONNECTION, &stream.name, request)?;
        for index in 0..partitions {
            tasks.push(Task {
                stream: stream.clone(),
                plan: plan.clone(),
                index,
            });
        }
    }
    Ok(tasks)
}

/// Completes each stream once all its partitions are in (`finished`);
/// returns the live records stored.
fn finish_streams(store: &mut Store, finished: &[Task]) -> Result<u64> {
    for task in finished.iter().filter(|t| t.index == 0) {
        store.finish_stream(
            CONNECTION,
            &task.stream.name,
            &task.plan,
            task.stream.updated_field.as_deref(),
        )?;
    }
    Ok(store
        .counts(CONNECTION)?
        .iter()
        .map(|(_, live, _)| live)
        .sum())
}

const CONNECTION: &str = "native";

/// One partition of one stream to read to its end.
struct Task {
    stream: StreamInfo,
    plan: connector_engine::store::StreamPlan,
    index: u32,
}

/// Reads one partition page by page, committing each page with its cursor.
fn read_partition(
    task: &Task,
    partitions: u32,
    page_size: u32,
    settings: &[(String, String)],
    transport: &mut UreqTransport,
    store: &Mutex<Store>,
) -> Result<()> {
    let stream = &task.stream;
    let embed_field = stream
        .references
        .iter()
        .find(|r| r.embed_as.is_some())
        .map(|r| r.field.clone());
    let mut cursor = None;
    loop {
        let read = ReadRequest {
            stream_name: stream.name.clone(),
            partition: Partition {
                index: task.index,
                count: partitions,
            },
            cursor: cursor.clone(),
            watermark: None,
            deletions_since: None,
            page_size,
        };
        let page = match servicenow_connector::connector::read(settings, &read, transport) {
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
        lock(store).commit_page(
            CONNECTION,
            &stream.name,
            PageCommit {
                generation: task.plan.generation,
                partition: task.index,
                records: &rows,
                tombstones: &[],
                next_cursor: page.next_cursor.as_deref(),
                watermark: page.watermark.as_deref(),
                window_start: page.window_start.as_deref(),
            },
        )?;
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return Ok(()),
        }
    }
}

fn lock(store: &Mutex<Store>) -> std::sync::MutexGuard<'_, Store> {
    store.lock().unwrap_or_else(|p| p.into_inner())
}
