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
    let embeds = if options.nested {
        embedded_streams(info, stream)
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
    // Each child stream's live records in parent order, merged with the
    // parents as they stream past.
    let mut children = Vec::with_capacity(embeds.len());
    for (stmt, (child_stream, name)) in statements.iter_mut().zip(&embeds) {
        let rows = stmt.query_map(params![connection, child_stream], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?;
        children.push((name.clone(), rows.peekable()));
    }
    let mut line = ObjectLine::default();
    store.for_each_record(
        connection,
        stream,
        options.include_deleted,
        |key, data, deletion| {
            line.start(data);
            for (name, rows) in children.iter_mut() {
                line.field(name);
                embed_children(&mut line, rows, key)?;
            }
            if let Some(deletion) = deletion {
                line.field("deletedAt");
                line.string(deletion.at);
                line.field("deletionReason");
                line.string(deletion.reason);
            }
            out.write_all(line.finish().as_bytes())
        },
    )
}

/// The streams embedded into `stream` in a nested export: (child stream,
/// the field name it is embedded under).
fn embedded_streams(info: &ConnectorInfo, stream: &str) -> Vec<(String, String)> {
    info.streams
        .iter()
        .flat_map(|s| {
            s.references
                .iter()
                .filter(|r| r.target_stream == stream)
                .filter_map(move |r| r.embed_as.clone().map(|name| (s.name.clone(), name)))
        })
        .collect()
}

/// Appends the JSON array of the children of `key`, taken from `rows`
/// (ordered by parent), skipping children of parents not exported.
fn embed_children<I>(
    line: &mut ObjectLine,
    rows: &mut std::iter::Peekable<I>,
    key: &str,
) -> std::io::Result<()>
where
    I: Iterator<Item = rusqlite::Result<(String, String)>>,
{
    while let Some(Ok((parent, _))) = rows.peek() {
        if parent.as_str() >= key {
            break;
        }
        rows.next();
    }
    line.text.push('[');
    let mut first = true;
    while let Some(Ok((parent, _))) = rows.peek() {
        if parent != key {
            break;
        }
        let Some(Ok((_, child))) = rows.next() else {
            break;
        };
        if !first {
            line.text.push(',');
        }
        first = false;
        line.text.push_str(&child);
    }
    if let Some(Err(e)) = rows.peek() {
        return Err(std::io::Error::other(e.to_string()));
    }
    line.text.push(']');
    Ok(())
}

/// One exported line: a stored record's JSON object with fields appended,
/// built in a buffer reused from line to line.
#[derive(Default)]
struct ObjectLine {
    text: String,
    has_fields: bool,
}

impl ObjectLine {
    /// Starts a line with the stored object `data`, left open for more fields.
    fn start(&mut self, data: &str) {
        self.text.clear();
        let body = data.trim_end();
        let body = body.strip_suffix('}').unwrap_or(body);
        self.text.push_str(body);
        self.has_fields = body.trim_end() != "{";
    }

    /// Appends the name of a new field; its value comes next.
    fn field(&mut self, name: &str) {
        if self.has_fields {
            self.text.push(',');
        }
        self.has_fields = true;
        self.string(name);
        self.text.push(':');
    }

    /// Appends a JSON string.
    fn string(&mut self, value: &str) {
        self.text
            .push_str(&serde_json::to_string(value).expect("strings serialise"));
    }

    /// Closes the object and the line.
    fn finish(&mut self) -> &str {
        self.text.push_str("}\n");
        &self.text
    }
}
