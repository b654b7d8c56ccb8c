//! Reading stored records one page at a time, for the operator console:
//! a search over a stream's live records (and over the records embedded
//! into them, so a device is found by its adapters' IP or MAC), one record
//! by key, and the records embedded into one.

use super::Sqlite;
use crate::store::{escape_like, found_of, live_of, Found, KeyedRecord, StoreError};
use rusqlite::{params, OptionalExtension};

/// The condition "a value of this record's JSON object contains `?3`",
/// case-insensitively: field names do not match, and `true` and `false` are
/// matched as those words (as PostgreSQL's `jsonb_each_text` gives them).
///
/// The record's text is tested first: a record written without escapes
/// (no `\`) holds each value as written, so one whose text does not contain
/// the term has no value that does, and only the records that may match
/// are parsed by `json_each` (BENCHMARKS.md, "A search with a term").
const VALUE_MATCHES: &str = "((instr(r.data, '\\') > 0 OR r.data LIKE ?3 ESCAPE '\\')
    AND EXISTS (SELECT 1 FROM json_each(r.data)
                WHERE (CASE json_each.type WHEN 'true' THEN 'true' WHEN 'false' THEN 'false'
                       ELSE CAST(json_each.value AS TEXT) END) LIKE ?3 ESCAPE '\\'))";

/// `FROM … WHERE …` of the live records of `?2` (of the connection `?1`)
/// with a value containing the pattern `?3`, or whose records in the
/// streams `embedded` have one (those naming it as their `parent`).
fn matching_sql(embedded: &[String]) -> String {
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
    format!(
        "FROM records r WHERE r.stream_id = (SELECT id FROM stream_ids WHERE connection = ?1 AND stream = ?2) AND r.deleted_at IS NULL AND ({VALUE_MATCHES}{via_children})"
    )
}

impl Sqlite {
    /// The live records of `stream` with a value containing `term` (all of
    /// them for an empty term), or whose records in `embedded` (streams
    /// embedded into it, their `parent` naming it) have one; `limit`
    /// records from `offset`, in key order. One pass over the records finds
    /// the page's keys and, beside each, how many match.
    pub(super) fn search_records(
        &mut self,
        connection: &str,
        stream: &str,
        embedded: &[String],
        term: &str,
        limit: u32,
        offset: u64,
    ) -> Result<Found, StoreError> {
        if term.trim().is_empty() {
            return self.live_records(connection, stream, limit, offset);
        }
        let matching = matching_sql(embedded);
        let pattern = format!("%{}%", escape_like(term.trim()));
        let page = self
            .conn
            .prepare(&format!(
                "SELECT r.key, COUNT(*) OVER () {matching} ORDER BY r.key LIMIT ?4 OFFSET ?5"
            ))?
            .query_map(
                params![connection, stream, pattern, limit, offset as i64],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )?
            .collect::<rusqlite::Result<Vec<(String, i64)>>>()?;
        found_of(
            self,
            page,
            offset,
            |store: &mut Sqlite| {
                Ok(store.conn.query_row(
                    &format!("SELECT COUNT(*) {matching}"),
                    params![connection, stream, pattern],
                    |row| row.get(0),
                )?)
            },
            |store, key| store.record_by_key(connection, stream, key),
        )
    }

    /// The live records of `stream`, `limit` from `offset` in key order,
    /// and how many there are.
    fn live_records(
        &self,
        connection: &str,
        stream: &str,
        limit: u32,
        offset: u64,
    ) -> Result<Found, StoreError> {
        let total = live_of(self.counts_of(connection, Some(stream))?);
        let records = self
            .conn
            .prepare(
                "SELECT key, data FROM records
                 WHERE stream_id = (SELECT id FROM stream_ids WHERE connection = ?1 AND stream = ?2)
                   AND deleted_at IS NULL ORDER BY key LIMIT ?3 OFFSET ?4",
            )?
            .query_map(params![connection, stream, limit, offset as i64], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })?
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
