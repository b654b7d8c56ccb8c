//! Reading stored records one page at a time, for the operator console:
//! a search over a stream's live records (and over the records embedded
//! into them, so a device is found by its adapters' IP or MAC), one record
//! by key, and the records embedded into one.

use super::Sqlite;
use crate::store::{escape_like, live_of, Found, KeyedRecord, StoreError};
use rusqlite::{params, OptionalExtension};

/// The condition "a value of this record's JSON object contains `?`",
/// case-insensitively (field names do not match).
const VALUE_MATCHES: &str =
    "EXISTS (SELECT 1 FROM json_each(r.data) WHERE CAST(json_each.value AS TEXT) LIKE ?3 ESCAPE '\\')";

impl Sqlite {
    /// The live records of `stream` with a value containing `term` (all of
    /// them for an empty term), or whose records in `embedded` (streams
    /// embedded into it, their `parent` naming it) have one; `limit`
    /// records from `offset`, in key order.
    pub(super) fn search_records(
        &self,
        connection: &str,
        stream: &str,
        embedded: &[String],
        term: &str,
        limit: u32,
        offset: u64,
    ) -> Result<Found, StoreError> {
        let pattern = format!("%{}%", escape_like(term.trim()));
        let children = embedded
            .iter()
            .map(|s| format!("'{}'", s.replace('\'', "''")))
            .collect::<Vec<_>>()
            .join(",");
        let via_children = if children.is_empty() {
            String::new()
        } else {
            format!(
                " OR r.key IN (SELECT r.parent FROM records r WHERE r.stream_id IN (SELECT id FROM stream_ids WHERE connection = ?1 AND stream IN ({children})) AND r.deleted_at IS NULL AND {VALUE_MATCHES})"
            )
        };
        let matching = format!(
            "FROM records r WHERE r.stream_id = (SELECT id FROM stream_ids WHERE connection = ?1 AND stream = ?2) AND r.deleted_at IS NULL AND (?3 = '%%' OR {VALUE_MATCHES}{via_children})"
        );
        let total: u64 = if term.trim().is_empty() {
            live_of(self.counts_of(connection, Some(stream))?)
        } else {
            self.conn.query_row(
                &format!("SELECT COUNT(*) {matching}"),
                params![connection, stream, pattern],
                |row| row.get(0),
            )?
        };
        let mut statement = self.conn.prepare(&format!(
            "SELECT r.key, r.data {matching} ORDER BY r.key LIMIT ?4 OFFSET ?5"
        ))?;
        let records = statement
            .query_map(
                params![connection, stream, pattern, limit, offset as i64],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(Found { total, records })
    }

    /// The live record `key` of `stream`.
    pub(super) fn record_by_key(
        &self,
        connection: &str,
        stream: &str,
        key: &str,
    ) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT data FROM records
                 WHERE stream_id = (SELECT id FROM stream_ids WHERE connection = ?1 AND stream = ?2)
                   AND key = ?3 AND deleted_at IS NULL",
                params![connection, stream, key],
                |row| row.get(0),
            )
            .optional()?)
    }

    /// The live records of `stream` embedded into the record `parent`, in
    /// key order (at most `limit`).
    pub(super) fn embedded_records(
        &self,
        connection: &str,
        stream: &str,
        parent: &str,
        limit: u32,
    ) -> Result<Vec<KeyedRecord>, StoreError> {
        let mut statement = self.conn.prepare(
            "SELECT key, data FROM records
             WHERE stream_id = (SELECT id FROM stream_ids WHERE connection = ?1 AND stream = ?2)
               AND parent = ?3 AND deleted_at IS NULL ORDER BY key LIMIT ?4",
        )?;
        let rows = statement.query_map(params![connection, stream, parent, limit], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}
