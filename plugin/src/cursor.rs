//! Resumable position within one stream partition, and partition bounds.
//!
//! The cursor is opaque to the host: a small JSON document the connector
//! writes and reads back. Keyset paging on `sys_id` means the position is "the
//! last sys_id returned"; because ServiceNow applies `sysparm_limit` before
//! ACLs, a window of rows can come back empty while rows remain beyond it, so
//! the cursor also counts rows to skip past such hidden windows.

use exposure_connector_sdk::types::{ConnectorError, Partition};
use serde::{Deserialize, Serialize};

/// Position within a partition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// Cursor format version.
    pub v: u32,
    /// Last sys_id returned; the next page starts after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// Rows after `after` already looked at but hidden by ACLs.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub skip: u64,
    /// The watermark this read will record (server clock at its start, minus the lag).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark: Option<String>,
    /// Start of the retention window (`sys_updated_on` at or after it), fixed
    /// at the read's first page so that every page uses the same one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_start: Option<String>,
    /// What the partition is reading now.
    #[serde(default, skip_serializing_if = "Phase::is_rows")]
    pub phase: Phase,
    /// Rows expected beyond the position (before ACLs), from the last
    /// count. `X-Total-Count` costs the server a count of every remaining
    /// row, so a request asks for it only when this is unknown or says the
    /// end is within the next window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remaining: Option<u64>,
}

impl Cursor {
    /// Whether the request at this position asks for `X-Total-Count`.
    pub fn wants_count(&self, limit: u32) -> bool {
        self.remaining.is_none_or(|r| r <= u64::from(limit))
    }
}

/// The two parts of a partition's read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// The stream's own table.
    #[default]
    Rows,
    /// `sys_audit_delete`, for the deletions since the last complete read;
    /// `after` and `skip` then refer to audit rows.
    Deletions,
}

impl Phase {
    fn is_rows(&self) -> bool {
        *self == Phase::Rows
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

const VERSION: u32 = 1;

impl Cursor {
    /// The cursor of a fresh read.
    pub fn start() -> Self {
        Cursor {
            v: VERSION,
            ..Default::default()
        }
    }

    /// Parses a cursor the connector wrote earlier.
    pub fn parse(text: &str) -> Result<Self, ConnectorError> {
        let cursor: Cursor = serde_json::from_str(text).map_err(|e| {
            ConnectorError::InvalidSettings(format!(
                "The stored cursor is not one this connector wrote ({e}); reset the stream's state and run a full sync."
            ))
        })?;
        if cursor.v != VERSION {
            return Err(ConnectorError::InvalidSettings(format!(
                "The stored cursor has format version {}, this connector writes version {VERSION}; reset the stream's state and run a full sync.",
                cursor.v
            )));
        }
        if let Some(after) = &cursor.after {
            check_key_for_query(after)?;
        }
        Ok(cursor)
    }

    /// Serialises the cursor.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("cursor serialises")
    }
}

/// Lower (inclusive) and upper (exclusive) sys_id bounds of a partition.
///
/// The 128-bit sys_id space is split into `count` equal ranges; the first
/// range has no lower bound and the last no upper bound, so every sys_id
/// (even a non-hex one) falls into exactly one partition.
pub fn partition_bounds(p: Partition) -> Result<(Option<String>, Option<String>), ConnectorError> {
    if p.count == 0 || p.index >= p.count {
        return Err(ConnectorError::InvalidSettings(format!(
            "Partition {} of {} does not exist; partition indexes run from 0 to count-1.",
            p.index, p.count
        )));
    }
    let step = u128::MAX / u128::from(p.count);
    let bound = |i: u32| format!("{:032x}", step * u128::from(i));
    let lower = (p.index > 0).then(|| bound(p.index));
    let upper = (p.index + 1 < p.count).then(|| bound(p.index + 1));
    Ok((lower, upper))
}

/// A key that goes back into an encoded query must not be able to change it.
pub fn check_key_for_query(key: &str) -> Result<(), ConnectorError> {
    let ok = !key.is_empty()
        && key.len() <= 64
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(ConnectorError::BadResponse(format!(
            "The server returned the sys_id `{}`, which cannot be used for paging (sys_ids are 32 hexadecimal characters).",
            key.chars().take(80).collect::<String>()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let c = Cursor {
            v: 1,
            after: Some("abc".into()),
            skip: 200,
            watermark: Some("2024-01-01 00:00:00".into()),
            window_start: Some("2023-10-03 00:00:00".into()),
            phase: Phase::Deletions,
            remaining: Some(4_000),
        };
        assert_eq!(Cursor::parse(&c.to_json()).unwrap(), c);
        // Cursors written before the deletion phase existed still parse.
        assert_eq!(
            Cursor::parse(r#"{"v":1,"after":"abc"}"#).unwrap().phase,
            Phase::Rows
        );
        assert_eq!(Cursor::start().to_json(), r#"{"v":1}"#);
    }

    #[test]
    fn rejects_foreign_cursors() {
        assert!(Cursor::parse("nope").is_err());
        assert!(Cursor::parse(r#"{"v":9}"#).is_err());
        assert!(Cursor::parse(r#"{"v":1,"after":"a^ORDERBYname"}"#).is_err());
    }

    #[test]
    fn partitions_cover_the_space() {
        assert_eq!(
            partition_bounds(Partition { index: 0, count: 1 }).unwrap(),
            (None, None)
        );
        let (lo, hi) = partition_bounds(Partition { index: 1, count: 4 }).unwrap();
        assert_eq!(lo.as_deref(), Some("3fffffffffffffffffffffffffffffff"));
        assert_eq!(hi.as_deref(), Some("7ffffffffffffffffffffffffffffffe"));
        let (_, hi0) = partition_bounds(Partition { index: 0, count: 4 }).unwrap();
        assert_eq!(hi0, lo);
        assert_eq!(
            partition_bounds(Partition { index: 3, count: 4 })
                .unwrap()
                .1,
            None
        );
        assert!(partition_bounds(Partition { index: 4, count: 4 }).is_err());
        assert!(partition_bounds(Partition { index: 0, count: 0 }).is_err());
    }
}
