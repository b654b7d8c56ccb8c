//! How a stream's read is planned, whatever the database: resume an
//! interrupted read partitioned as a read would be now; otherwise read
//! incrementally from the last complete read's watermark when the stream
//! and the run allow it, else fully (a new generation).
//!
//! The decisions are here once; each backend gives a [`PlanTx`]: the
//! three things planning reads and writes, inside one transaction.

use super::{PartitionState, ReadMode, StoreError, StreamPlan, StreamRequest};

/// A stream's row in `streams`: where its reads stand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredStream {
    pub(crate) generation: i64,
    pub(crate) partitions: u32,
    pub(crate) complete: bool,
    /// The last complete read's watermark.
    pub(crate) watermark: Option<String>,
    /// `full` or `incremental`: the current (or interrupted) read.
    pub(crate) read_mode: String,
    /// The watermark an incremental read started from.
    pub(crate) read_watermark: Option<String>,
}

/// What planning needs of a transaction.
pub(crate) trait PlanTx {
    /// The stream's row, if it was ever read.
    fn stream(
        &mut self,
        connection: &str,
        stream: &str,
    ) -> Result<Option<StoredStream>, StoreError>;

    /// Its partitions' states, in index order.
    fn partition_states(
        &mut self,
        connection: &str,
        stream: &str,
    ) -> Result<Vec<PartitionState>, StoreError>;

    /// Starts a read: the stream's row says generation, partitions, mode
    /// (not complete), and its partitions start afresh, without cursors.
    fn start(&mut self, connection: &str, stream: &str, read: &NewRead) -> Result<(), StoreError>;
}

/// A read about to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NewRead {
    pub(crate) generation: i64,
    pub(crate) partitions: u32,
    pub(crate) mode: ReadMode,
}

impl NewRead {
    /// The watermark an incremental read starts from.
    pub(crate) fn read_watermark(&self) -> Option<&str> {
        match &self.mode {
            ReadMode::Incremental { watermark } => Some(watermark),
            ReadMode::Full => None,
        }
    }
}

/// The plan for reading `stream` now.
pub(crate) fn plan(
    tx: &mut impl PlanTx,
    connection: &str,
    stream: &str,
    request: &StreamRequest,
) -> Result<StreamPlan, StoreError> {
    let existing = tx.stream(connection, stream)?;
    if let Some(e) = &existing {
        if let Some(plan) = resume(tx, e, connection, stream, request)? {
            return Ok(plan);
        }
    }
    start_read(tx, connection, stream, existing.as_ref(), request)
}

/// The plan to resume `existing`'s interrupted read, when it was
/// partitioned as a read would be now and every partition is stored.
fn resume(
    tx: &mut impl PlanTx,
    existing: &StoredStream,
    connection: &str,
    stream: &str,
    request: &StreamRequest,
) -> Result<Option<StreamPlan>, StoreError> {
    let incremental = existing.read_mode == "incremental";
    if existing.complete || existing.partitions != request.partitions_for(incremental) {
        return Ok(None);
    }
    let mode = match (existing.read_mode.as_str(), &existing.read_watermark) {
        ("incremental", Some(w)) => ReadMode::Incremental {
            watermark: w.clone(),
        },
        ("full", _) => ReadMode::Full,
        _ => return Ok(None),
    };
    let states = tx.partition_states(connection, stream)?;
    if states.len() != existing.partitions as usize {
        return Ok(None);
    }
    Ok(Some(StreamPlan {
        generation: existing.generation,
        resumed: true,
        mode,
        partitions: states,
        deletions_since: existing.watermark.clone(),
    }))
}

/// Starts a new read of `stream`: incremental from the last complete read's
/// watermark when the stream supports it and the run allows it, else full
/// (a new generation); its partitions start without a cursor.
fn start_read(
    tx: &mut impl PlanTx,
    connection: &str,
    stream: &str,
    existing: Option<&StoredStream>,
    request: &StreamRequest,
) -> Result<StreamPlan, StoreError> {
    let incremental_from = existing
        .filter(|e| e.complete && request.supports_incremental && !request.force_full)
        .and_then(|e| e.watermark.clone());
    let (generation, mode) = match (incremental_from, existing) {
        (Some(watermark), Some(e)) => (e.generation, ReadMode::Incremental { watermark }),
        _ => (existing.map_or(1, |e| e.generation + 1), ReadMode::Full),
    };
    let incremental = matches!(mode, ReadMode::Incremental { .. });
    let read = NewRead {
        generation,
        partitions: request.partitions_for(incremental),
        mode,
    };
    tx.start(connection, stream, &read)?;
    Ok(StreamPlan {
        generation,
        resumed: false,
        deletions_since: existing.and_then(|e| e.watermark.clone()),
        partitions: (0..read.partitions)
            .map(|index| PartitionState {
                index,
                cursor: None,
                done: false,
            })
            .collect(),
        mode: read.mode,
    })
}
