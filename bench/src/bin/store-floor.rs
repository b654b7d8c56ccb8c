//! The storage floor: the records a full sync stored, written again straight
//! into a fresh store from memory, with no HTTP and no wasm. The host's
//! `Store` does the writing exactly as a sync does: each stream begun as a
//! full read in `--partitions` partitions (contiguous key ranges, as the
//! connector's `sys_id` partitions are), pages of `--page-size` records
//! committed with their cursors, the partitions' pages taken in turn (as
//! partitions read side by side arrive), then each stream finished.
//!
//! `store-floor --from SYNCED.db --database FRESH.db [--page-size N]
//! [--partitions N]` loads every live record of `SYNCED.db` first (not
//! timed), then writes and prints one JSON line: `records`, and the wall and
//! CPU (user + system, whole process) seconds of the writing alone, and the
//! system part of them.

use anyhow::{bail, Context, Result};
use clap::Parser;
use connector_engine::store::{PageCommit, Store, StoredRecord, StreamRequest};
use connector_sandbox::config::SyncConfig;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Parser)]
struct Args {
    /// A database a full sync wrote: the records to write again.
    #[arg(long)]
    from: PathBuf,
    /// The database to write (it must not exist yet).
    #[arg(long)]
    database: PathBuf,
    /// Records per page (the host's default, `[sync] page_size`).
    #[arg(long, default_value_t = SyncConfig::default().page_size as usize)]
    page_size: usize,
    /// Partitions per stream (the host's default, `[sync] partitions`).
    #[arg(long, default_value_t = SyncConfig::default().partitions as usize)]
    partitions: usize,
}

/// One stream's records, in key order, as the sync stored them.
struct StoredStream {
    connection: String,
    name: String,
    records: Vec<StoredRecord>,
}

/// One partition's pages still to commit.
struct PendingPartition<'a> {
    stream: usize,
    index: u32,
    pages: std::iter::Peekable<std::slice::Chunks<'a, StoredRecord>>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.database.exists() {
        bail!(
            "{} exists: the floor is measured into a fresh database",
            args.database.display()
        );
    }
    if args.page_size == 0 || args.partitions == 0 {
        bail!("--page-size and --partitions must be at least 1");
    }
    let streams = load(&args.from)?;
    let records: usize = streams.iter().map(|s| s.records.len()).sum();
    let (before, started) = (cpu_seconds()?, Instant::now());
    write(&args, &streams)?;
    let wall = started.elapsed().as_secs_f64();
    let after = cpu_seconds()?;
    let (user, system) = (after.user - before.user, after.system - before.system);
    println!(
        "{}",
        serde_json::json!({
            "records": records,
            "write_wall_s": wall,
            "write_cpu_s": user + system,
            "write_system_s": system,
        })
    );
    Ok(())
}

/// Every live record of `path`, by stream, in key order.
fn load(path: &PathBuf) -> Result<Vec<StoredStream>> {
    let db =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .with_context(|| format!("opening {}", path.display()))?;
    let mut query = db.prepare(
        "SELECT s.connection, s.stream, r.key, r.data, r.parent
         FROM records r JOIN stream_ids s ON s.id = r.stream_id
         WHERE r.deleted_at IS NULL ORDER BY s.connection, s.stream, r.key",
    )?;
    let mut rows = query.query([])?;
    let mut streams: Vec<StoredStream> = Vec::new();
    while let Some(row) = rows.next()? {
        let (connection, name): (String, String) = (row.get(0)?, row.get(1)?);
        let record = StoredRecord {
            key: row.get(2)?,
            data: row.get(3)?,
            parent: row.get(4)?,
        };
        match streams.last_mut() {
            Some(s) if s.connection == connection && s.name == name => s.records.push(record),
            _ => streams.push(StoredStream {
                connection,
                name,
                records: vec![record],
            }),
        }
    }
    if streams.is_empty() {
        bail!(
            "{} holds no records: run a full sync into it first",
            path.display()
        );
    }
    Ok(streams)
}

/// Writes `streams` into a fresh store as a full sync would.
fn write(args: &Args, streams: &[StoredStream]) -> Result<()> {
    let mut store = Store::open(&args.database)?;
    let request = StreamRequest {
        partitions: args.partitions as u32,
        incremental_partitions: 1,
        force_full: true,
        supports_incremental: true,
    };
    let mut plans = Vec::new();
    let mut pending = Vec::new();
    for (i, stream) in streams.iter().enumerate() {
        plans.push(store.begin_stream(&stream.connection, &stream.name, request)?);
        let per_partition = stream.records.len().div_ceil(args.partitions).max(1);
        for (index, range) in stream.records.chunks(per_partition).enumerate() {
            pending.push(PendingPartition {
                stream: i,
                index: index as u32,
                pages: range.chunks(args.page_size).peekable(),
            });
        }
    }
    // A stream with fewer records than partitions has partitions with no
    // pages: they end with an empty page, as a read of an empty range does.
    for (i, stream) in streams.iter().enumerate() {
        let used = pending.iter().filter(|p| p.stream == i).count() as u32;
        for index in used..args.partitions as u32 {
            let page = PageCommit::of_records(plans[i].generation, index, &[], None);
            store.commit_page(&stream.connection, &stream.name, page)?;
        }
    }
    while !pending.is_empty() {
        pending.retain_mut(|p| p.pages.peek().is_some());
        for p in &mut pending {
            let Some(records) = p.pages.next() else {
                continue;
            };
            let next = p
                .pages
                .peek()
                .map(|_| records[records.len() - 1].key.as_str());
            let stream = &streams[p.stream];
            let page = PageCommit::of_records(plans[p.stream].generation, p.index, records, next);
            store.commit_page(&stream.connection, &stream.name, page)?;
        }
    }
    for (stream, plan) in streams.iter().zip(&plans) {
        store.finish_stream(&stream.connection, &stream.name, plan, None)?;
    }
    Ok(())
}

/// CPU seconds this process has used so far.
struct CpuSeconds {
    user: f64,
    system: f64,
}

/// User and system CPU seconds of this process so far.
fn cpu_seconds() -> Result<CpuSeconds> {
    // SAFETY: `getrusage` writes one `rusage` into the zeroed value it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut usage) != 0 {
            bail!("getrusage failed: {}", std::io::Error::last_os_error());
        }
        usage
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok(CpuSeconds {
        user: seconds(usage.ru_utime),
        system: seconds(usage.ru_stime),
    })
}
