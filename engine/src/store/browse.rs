//! Reading stored records one page at a time, for the operator console:
//! a search over a stream's live records (and over the records embedded
//! into them, so a device is found by its adapters' IP or MAC), one record
//! by key, and the records embedded into one.

use super::Store;
use rusqlite::{params, OptionalExtension};

/// A stored record: its key and its JSON text.
pub type KeyedRecord = (String, String);

/// One page of a search, and how many records match in all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Records matching, in all.
    pub total: u64,
    /// This page's records, in key order.
    pub records: Vec<KeyedRecord>,
}

/// The condition "a value of this record's JSON object contains `?`",
/// case-insensitively (field names do not match).
const VALUE_MATCHES: &str =
    "EXISTS (SELECT 1 FROM json_each(r.data) WHERE CAST(json_each.value AS TEXT) LIKE ?3 ESCAPE '\\')";

impl Store {
    /// The live records of `stream` with a value containing `term` (all of
    /// them for an empty term), or whose records in `embedded` (streams
    /// embedded into it, their `parent` naming it) have one; `limit`
    /// records from `offset`, in key order.
    pub fn search(
        &self,
        connection: &str,
        stream: &str,
        embedded: &[String],
        term: &str,
        limit: u32,
        offset: u64,
    ) -> rusqlite::Result<Found> {
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
                " OR r.key IN (SELECT r.parent FROM records r WHERE r.connection = ?1 AND r.stream IN ({children}) AND r.deleted_at IS NULL AND {VALUE_MATCHES})"
            )
        };
        let matching = format!(
            "FROM records r WHERE r.connection = ?1 AND r.stream = ?2 AND r.deleted_at IS NULL AND (?3 = '%%' OR {VALUE_MATCHES}{via_children})"
        );
        let total: u64 = self.conn.query_row(
            &format!("SELECT COUNT(*) {matching}"),
            params![connection, stream, pattern],
            |row| row.get(0),
        )?;
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
    pub fn record(
        &self,
        connection: &str,
        stream: &str,
        key: &str,
    ) -> rusqlite::Result<Option<String>> {
        self.conn
            .query_row(
                "SELECT data FROM records WHERE connection = ?1 AND stream = ?2 AND key = ?3 AND deleted_at IS NULL",
                params![connection, stream, key],
                |row| row.get(0),
            )
            .optional()
    }

    /// The live records of `stream` embedded into the record `parent`, in
    /// key order (at most `limit`).
    pub fn embedded_in(
        &self,
        connection: &str,
        stream: &str,
        parent: &str,
        limit: u32,
    ) -> rusqlite::Result<Vec<KeyedRecord>> {
        let mut statement = self.conn.prepare(
            "SELECT key, data FROM records WHERE connection = ?1 AND stream = ?2 AND parent = ?3 AND deleted_at IS NULL ORDER BY key LIMIT ?4",
        )?;
        let rows = statement.query_map(params![connection, stream, parent, limit], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })?;
        rows.collect()
    }
}

/// `term` with LIKE's wildcards (and the escape) escaped.
fn escape_like(term: &str) -> String {
    term.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{PageCommit, StoredRecord, StreamRequest};

    fn stored(key: &str, data: &str, parent: Option<&str>) -> StoredRecord {
        StoredRecord {
            key: key.into(),
            data: data.into(),
            parent: parent.map(str::to_string),
        }
    }

    fn commit(s: &mut Store, stream: &str, records: &[StoredRecord]) {
        let request = StreamRequest {
            partitions: 1,
            incremental_partitions: 1,
            force_full: false,
            supports_incremental: false,
        };
        let plan = s.begin_stream("c", stream, request).unwrap();
        let page = PageCommit {
            generation: plan.generation,
            partition: 0,
            records,
            tombstones: &[],
            next_cursor: None,
            watermark: None,
            window_start: None,
        };
        s.commit_page("c", stream, page).unwrap();
    }

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("db")).unwrap();
        commit(
            &mut s,
            "devices",
            &[
                stored("d1", r#"{"id":"d1","name":"web-01"}"#, None),
                stored("d2", r#"{"id":"d2","name":"db-01"}"#, None),
                stored("d3", r#"{"id":"d3","name":"100%_sure"}"#, None),
            ],
        );
        commit(
            &mut s,
            "adapters",
            &[
                stored(
                    "a1",
                    r#"{"id":"a1","ip":"10.0.0.7","device":"d2"}"#,
                    Some("d2"),
                ),
                stored(
                    "a2",
                    r#"{"id":"a2","ip":"10.0.0.8","device":"d1"}"#,
                    Some("d1"),
                ),
            ],
        );
        (dir, s)
    }

    fn keys(found: &Found) -> Vec<&str> {
        found.records.iter().map(|(k, _)| k.as_str()).collect()
    }

    #[test]
    fn a_search_matches_values_and_embedded_records_and_pages() {
        let (_dir, s) = store();
        let adapters = vec!["adapters".to_string()];
        let by_name = s.search("c", "devices", &adapters, "WEB", 10, 0).unwrap();
        assert_eq!((by_name.total, keys(&by_name)), (1, vec!["d1"]));
        // The device whose adapter has the IP.
        let by_ip = s
            .search("c", "devices", &adapters, "10.0.0.7", 10, 0)
            .unwrap();
        assert_eq!(keys(&by_ip), vec!["d2"]);
        // Without the embedded stream, the IP finds no device.
        assert_eq!(
            s.search("c", "devices", &[], "10.0.0.7", 10, 0)
                .unwrap()
                .total,
            0
        );
        // Field names do not match; wildcards are literal.
        assert_eq!(
            s.search("c", "devices", &adapters, "name", 10, 0)
                .unwrap()
                .total,
            0
        );
        assert_eq!(
            keys(&s.search("c", "devices", &adapters, "%_", 10, 0).unwrap()),
            vec!["d3"]
        );
        // Everything, a page at a time.
        let all = s.search("c", "devices", &adapters, "", 2, 0).unwrap();
        assert_eq!((all.total, keys(&all)), (3, vec!["d1", "d2"]));
        assert_eq!(
            keys(&s.search("c", "devices", &adapters, "", 2, 2).unwrap()),
            vec!["d3"]
        );
    }

    #[test]
    fn one_record_and_what_is_embedded_into_it() {
        let (_dir, s) = store();
        assert!(s
            .record("c", "devices", "d2")
            .unwrap()
            .unwrap()
            .contains("db-01"));
        assert_eq!(s.record("c", "devices", "nope").unwrap(), None);
        let embedded = s.embedded_in("c", "adapters", "d2", 10).unwrap();
        assert_eq!(embedded.len(), 1);
        assert!(embedded[0].1.contains("10.0.0.7"));
    }
}
