//! Export: the stored records of a stream as JSON lines, optionally with the
//! records of other streams embedded where the component declared it, and
//! optionally with the records marked deleted (carrying `deletedAt` and
//! `deletionReason`: `deleted-at-source`, `aged-out` or `not-returned`).
//!
//! Nesting streams through the database in key order (a merge join of the
//! parent stream by key and each embedded stream by parent key), so memory
//! stays flat however large the tables are.

use crate::store::Store;
use anyhow::{bail, Result};
use connector_sandbox::runtime::ConnectorInfo;
use rusqlite::params;
use std::io::Write;

/// What to export besides the live records themselves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExportOptions {
    /// Embed referencing records under the name their stream declares.
    pub nested: bool,
    /// Include records marked deleted, with `deletedAt` and `deletionReason` fields.
    pub include_deleted: bool,
}

/// Writes the records of `stream` to `out`, one JSON object per line, in
/// key order. Returns the number of records written.
pub fn export(
    store: &Store,
    info: &ConnectorInfo,
    connection: &str,
    stream: &str,
    options: ExportOptions,
    out: &mut dyn Write,
) -> Result<u64> {
    if !info.streams.iter().any(|s| s.name == stream) {
        let names: Vec<&str> = info.streams.iter().map(|s| s.name.as_str()).collect();
        bail!(
            "the connector has no stream `{stream}`; its streams are: {}",
            names.join(", ")
        );
    }
    // (child stream, name to embed it under)
    let embeds: Vec<(String, String)> = if options.nested {
        info.streams
            .iter()
            .flat_map(|s| {
                s.references
                    .iter()
                    .filter(|r| r.target_stream == stream)
                    .filter_map(move |r| r.embed_as.clone().map(|name| (s.name.clone(), name)))
            })
            .collect()
    } else {
        Vec::new()
    };

    let conn = store.connection();
    let mut statements = Vec::with_capacity(embeds.len());
    for _ in &embeds {
        statements.push(conn.prepare(
            "SELECT parent, data FROM records
             WHERE connection = ?1 AND stream = ?2 AND parent IS NOT NULL AND deleted_at IS NULL
             ORDER BY parent, key",
        )?);
    }
    let mut children = Vec::with_capacity(embeds.len());
    for (stmt, (child_stream, name)) in statements.iter_mut().zip(&embeds) {
        let rows = stmt.query_map(params![connection, child_stream], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?;
        children.push((name.clone(), rows.peekable()));
    }

    let mut line = String::new();
    store.for_each_record(
        connection,
        stream,
        options.include_deleted,
        |key, data, deletion| {
            line.clear();
            let body = data.trim_end();
            let body = body.strip_suffix('}').unwrap_or(body);
            line.push_str(body);
            let mut has_fields = body.trim_end() != "{";
            let mut field = |line: &mut String, name: &str| {
                if has_fields {
                    line.push(',');
                }
                has_fields = true;
                line.push_str(&serde_json::to_string(name).expect("strings serialise"));
                line.push(':');
            };
            for (name, rows) in children.iter_mut() {
                // Skip children of parents that are not (or no longer) stored.
                while let Some(Ok((parent, _))) = rows.peek() {
                    if parent.as_str() < key {
                        rows.next();
                    } else {
                        break;
                    }
                }
                field(&mut line, name);
                line.push('[');
                let mut first = true;
                while let Some(Ok((parent, _))) = rows.peek() {
                    if parent != key {
                        break;
                    }
                    let Some(Ok((_, child))) = rows.next() else {
                        break;
                    };
                    if !first {
                        line.push(',');
                    }
                    first = false;
                    line.push_str(&child);
                }
                if let Some(Err(e)) = rows.peek() {
                    return Err(std::io::Error::other(e.to_string()));
                }
                line.push(']');
            }
            if let Some(deletion) = deletion {
                field(&mut line, "deletedAt");
                line.push_str(&serde_json::to_string(deletion.at).expect("strings serialise"));
                field(&mut line, "deletionReason");
                line.push_str(&serde_json::to_string(deletion.reason).expect("strings serialise"));
            }
            line.push_str("}\n");
            out.write_all(line.as_bytes())
        },
    )
}
