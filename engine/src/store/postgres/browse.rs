//! Reading stored records one page at a time, for the operator console, as
//! `sqlite/browse.rs` does: a search over a stream's live records (and over
//! the records embedded into them), one record by key, and the records
//! embedded into one.

use super::Postgres;
use crate::store::{escape_like, found_of, live_of, Found, KeyedRecord, StoreError};

/// `FROM … WHERE …` of the live records of `$2` (of the connection `$1`)
/// with a value containing the pattern `$3`, or whose records in the
/// streams `$4` have one (those naming it as their `parent`). As on SQLite,
/// a record's text is tested before its values are: without a `\` it holds
/// each value as written.
fn matching_sql() -> String {
    let value_matches = |r: &str| {
        format!(
            "(({r}.data ILIKE $3 ESCAPE '\\' OR strpos({r}.data, '\\') > 0)
              AND EXISTS (SELECT 1 FROM jsonb_each_text({r}.data::jsonb) AS f(k, v)
                          WHERE f.v ILIKE $3 ESCAPE '\\'))"
        )
    };
    format!(
        "FROM records r
         WHERE r.stream_id = (SELECT id FROM stream_ids WHERE connection = $1 AND stream = $2)
           AND r.deleted_at IS NULL
           AND ({}
                OR r.key IN (SELECT c.parent FROM records c
                             WHERE c.stream_id IN (SELECT id FROM stream_ids
                                                   WHERE connection = $1 AND stream = ANY($4))
                               AND c.deleted_at IS NULL
                               AND {}))",
        value_matches("r"),
        value_matches("c")
    )
}

impl Postgres {
    /// The live records of `stream` with a value containing `term` (all of
    /// them for an empty term), or whose records in `embedded` have one;
    /// `limit` records from `offset`, in key order. One pass over the
    /// records finds the page's keys and, beside each, how many match.
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
        let matching = matching_sql();
        let pattern = format!("%{}%", escape_like(term.trim()));
        let page: Vec<(String, i64)> = self
            .client
            .query(
                &format!(
                    "SELECT r.key, COUNT(*) OVER () {matching} ORDER BY r.key LIMIT $5 OFFSET $6"
                ),
                &[
                    &connection,
                    &stream,
                    &pattern,
                    &embedded,
                    &i64::from(limit),
                    &(offset as i64),
                ],
            )?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        found_of(
            self,
            page,
            offset,
            |store| {
                let all: i64 = store
                    .client
                    .query_one(
                        &format!("SELECT COUNT(*) {matching}"),
                        &[&connection, &stream, &pattern, &embedded],
                    )?
                    .get(0);
                Ok(all as u64)
            },
            |store, key| store.record_by_key(connection, stream, key),
        )
    }

    /// The live records of `stream`, `limit` from `offset` in key order,
    /// and how many there are.
    fn live_records(
        &mut self,
        connection: &str,
        stream: &str,
        limit: u32,
        offset: u64,
    ) -> Result<Found, StoreError> {
        let total = live_of(self.counts_of(connection, Some(stream))?);
        let rows = self.client.query(
            "SELECT key, data FROM records
             WHERE stream_id = (SELECT id FROM stream_ids WHERE connection = $1 AND stream = $2)
               AND deleted_at IS NULL ORDER BY key LIMIT $3 OFFSET $4",
            &[&connection, &stream, &i64::from(limit), &(offset as i64)],
        )?;
        let records = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        Ok(Found { total, records })
    }

    /// The live record `key` of `stream`.
    pub(super) fn record_by_key(
        &mut self,
        connection: &str,
        stream: &str,
        key: &str,
    ) -> Result<Option<String>, StoreError> {
        let row = self.client.query_opt(
            "SELECT data FROM records
             WHERE stream_id = (SELECT id FROM stream_ids WHERE connection = $1 AND stream = $2)
               AND key = $3 AND deleted_at IS NULL",
            &[&connection, &stream, &key],
        )?;
        Ok(row.map(|r| r.get(0)))
    }

    /// The live records of `stream` embedded into the record `parent`, in
    /// key order (at most `limit`).
    pub(super) fn embedded_records(
        &mut self,
        connection: &str,
        stream: &str,
        parent: &str,
        limit: u32,
    ) -> Result<Vec<KeyedRecord>, StoreError> {
        let rows = self.client.query(
            "SELECT key, data FROM records
             WHERE stream_id = (SELECT id FROM stream_ids WHERE connection = $1 AND stream = $2)
               AND parent = $3 AND deleted_at IS NULL ORDER BY key LIMIT $4",
            &[&connection, &stream, &parent, &i64::from(limit)],
        )?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }
}
