//! Where a partition's read is, and how partitions split the id space.
//!
//! NetBox ids are integers that only grow. A read pages by keyset on the id
//! (`ordering=id&id__gte=N`), never by offset over a table that changes.
//! Partitions must be disjoint and together cover every id without knowing
//! the largest one (which may grow while they run), so with `count`
//! partitions the id space is cut into fixed blocks of [`BLOCK_IDS`] ids and
//! partition `i` reads blocks `i`, `i + count`, `i + 2·count`, ...; after a
//! block it asks NetBox for the first id beyond it and jumps to its own
//! next block at or after that id. With one partition there are no blocks.

use exposure_connector_sdk::cursor;
use exposure_connector_sdk::types::{ConnectorError, Partition};
use serde::{Deserialize, Serialize};

/// Ids per block when a stream is split into several partitions.
pub const BLOCK_IDS: u64 = 10_000;

/// What a partition is reading.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// The stream's own objects.
    #[default]
    Rows,
    /// The change log's deletions of them (`after` is then a change id).
    Deletions,
}

/// Position within a partition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// Cursor format version.
    pub v: u32,
    /// What is being read.
    #[serde(default)]
    pub phase: Phase,
    /// The block being read (several partitions only).
    #[serde(default)]
    pub block: u64,
    /// Last id returned; the next page starts after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<u64>,
    /// The watermark this read will record (server clock at its start,
    /// minus the lag), RFC 3339 UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark: Option<String>,
}

const VERSION: u32 = 1;

impl Cursor {
    /// The cursor of a fresh read of `partition`.
    pub fn start(partition: Partition) -> Cursor {
        Cursor {
            v: VERSION,
            block: u64::from(partition.index),
            ..Default::default()
        }
    }

    /// Reads a cursor the connector wrote.
    pub fn parse(text: &str) -> Result<Cursor, ConnectorError> {
        let c: Cursor = cursor::decode(text)?;
        if c.v != VERSION {
            return Err(ConnectorError::InvalidSettings(format!(
                "The stored cursor is of version {} and this connector reads version {VERSION}; run a full sync.",
                c.v
            )));
        }
        Ok(c)
    }

    /// The cursor as the host stores it.
    pub fn to_json(&self) -> String {
        cursor::encode(self)
    }
}

/// Checks a partition the host asks for.
pub fn check_partition(p: Partition) -> Result<(), ConnectorError> {
    if p.count == 0 || p.index >= p.count {
        return Err(ConnectorError::InvalidSettings(format!(
            "Partition {} of {} does not exist.",
            p.index, p.count
        )));
    }
    Ok(())
}

/// The ids a page at `cursor` may return: from (inclusive), below (exclusive).
pub fn id_range(p: Partition, cursor: &Cursor) -> (u64, Option<u64>) {
    let from = cursor.after.map_or(0, |a| a.saturating_add(1));
    if p.count == 1 {
        return (from, None);
    }
    let start = cursor.block.saturating_mul(BLOCK_IDS);
    (from.max(start), Some(start.saturating_add(BLOCK_IDS)))
}

/// The first block of partition `p` at or after the block holding `id`.
pub fn own_block_from(p: Partition, id: u64) -> u64 {
    let block = id / BLOCK_IDS;
    let count = u64::from(p.count);
    let offset = (u64::from(p.index) + count - block % count) % count;
    block.saturating_add(offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(index: u32, count: u32) -> Partition {
        Partition { index, count }
    }

    #[test]
    fn partitions_own_every_id_exactly_once() {
        for count in 1..=5u32 {
            for id in (0..40 * BLOCK_IDS).step_by(997) {
                let owners: Vec<u32> = (0..count)
                    .filter(|&i| {
                        let p = part(i, count);
                        let block = own_block_from(p, id);
                        let cursor = Cursor {
                            block,
                            ..Cursor::start(p)
                        };
                        let (from, below) = id_range(p, &cursor);
                        from <= id && below.is_none_or(|b| id < b)
                    })
                    .collect();
                assert_eq!(
                    owners.len(),
                    1,
                    "id {id} with {count} partitions: {owners:?}"
                );
            }
        }
    }

    #[test]
    fn the_next_own_block_is_never_before_the_id() {
        let p = part(2, 4);
        assert_eq!(own_block_from(p, 0), 2);
        assert_eq!(own_block_from(p, 2 * BLOCK_IDS + 5), 2);
        assert_eq!(own_block_from(p, 3 * BLOCK_IDS), 6);
    }

    #[test]
    fn cursors_round_trip_and_refuse_other_versions() {
        let c = Cursor {
            after: Some(41),
            watermark: Some("2026-01-01T00:00:00Z".into()),
            ..Cursor::start(part(1, 2))
        };
        assert_eq!(Cursor::parse(&c.to_json()).unwrap(), c);
        assert!(Cursor::parse(r#"{"v":9}"#).is_err());
        assert!(check_partition(part(2, 2)).is_err());
    }
}
