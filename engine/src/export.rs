//! Export: the stored records of a stream as JSON lines, optionally with the
//! records of other streams embedded where the component declared it, and
//! optionally with the records marked deleted (carrying `deletedAt` and
//! `deletionReason`: `deleted-at-source`, `aged-out` or `not-returned`).
//!
//! Nesting streams through the database in key order (a merge join of the
//! parent stream by key and each embedded stream by parent key), so memory
//! stays flat however large the tables are.

use crate::store::{Deletion, EmbeddedRow, RowCursor, RowQuery, Store};
use anyhow::{bail, Result};
use connector_sandbox::runtime::ConnectorInfo;
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
    let plan = if options.nested {
        nesting_plan(info, stream)
    } else {
        Vec::new()
    };
    if plan.is_empty() {
        let mut line = JsonText::default();
        return store.for_each_record(
            connection,
            stream,
            options.include_deleted,
            |_key, data, deletion| write_line(&mut line, data, deletion, out, |_| Ok(())),
        );
    }
    nested(store, &plan, connection, stream, options, out)
}

/// One record as a line of `out`: its JSON with what `embed` adds, and
/// when and why it was deleted.
fn write_line(
    line: &mut JsonText,
    data: &str,
    deletion: Option<Deletion<'_>>,
    out: &mut dyn Write,
    embed: impl FnOnce(&mut JsonText) -> std::io::Result<()>,
) -> std::io::Result<()> {
    line.clear();
    line.open(data);
    embed(line)?;
    if let Some(deletion) = deletion {
        line.field("deletedAt");
        line.string(deletion.at);
        line.field("deletionReason");
        line.string(deletion.reason);
    }
    line.close();
    line.text.push('\n');
    out.write_all(line.text.as_bytes())
}

/// The nested export: each embedded stream's live records in the order of
/// their ancestor chain, read side by side with the exported records and
/// merged as those stream past.
fn nested(
    store: &Store,
    plan: &[Embed],
    connection: &str,
    stream: &str,
    options: ExportOptions,
    out: &mut dyn Write,
) -> Result<u64> {
    let queries: Vec<RowQuery> = (0..plan.len())
        .map(|i| {
            let mut params = plan[i].chain.clone();
            params.insert(0, connection.to_string());
            RowQuery {
                sql: embedded_rows_sql(plan, i),
                params,
            }
        })
        .collect();
    let mut heads = vec![None; plan.len()];
    let mut line = JsonText::default();
    let mut path = Vec::new();
    store.merged_read(
        connection,
        stream,
        options.include_deleted,
        &queries,
        |key, data, deletion, cursors| {
            write_line(&mut line, data, deletion, out, |line| {
                path.clear();
                path.push(key.to_string());
                let mut rows = Rows {
                    cursors,
                    heads: &mut heads,
                };
                embed_into(line, plan, &mut rows, None, &mut path)
            })
        },
    )
}

/// The embedded queries' cursors, each with the row it was last asked for.
struct Rows<'r, 'c> {
    cursors: &'r mut [Box<dyn RowCursor + 'c>],
    /// Per cursor: `None` before it is asked; then its next row (`None` at its end).
    heads: &'r mut [Option<Option<EmbeddedRow>>],
}

impl Rows<'_, '_> {
    /// The next row of cursor `i`, left in place.
    fn peek(&mut self, i: usize) -> std::io::Result<Option<&EmbeddedRow>> {
        if self.heads[i].is_none() {
            let next = self.cursors[i]
                .next_row()
                .map_err(|e| std::io::Error::other(format!("{e:#}")))?;
            self.heads[i] = Some(next);
        }
        Ok(self.heads[i].as_ref().and_then(Option::as_ref))
    }

    /// The next row of cursor `i`, taken.
    fn take(&mut self, i: usize) -> Option<EmbeddedRow> {
        self.heads[i].take().flatten()
    }
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

/// How deep a nested export embeds (devices, their interfaces, their
/// addresses, ... four levels below the exported stream at most).
const MAX_NESTING: usize = 4;

/// One stream embedded somewhere below the exported one.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Embed {
    /// The streams from the first embedded level down to this one.
    chain: Vec<String>,
    /// The field its records are embedded under.
    field: String,
    /// The plan entry it is embedded into; `None` for the exported stream.
    parent: Option<usize>,
}

/// Every stream embedded below `stream`, depth first: each stream's
/// children come right after it. A stream already on the chain above is
/// not embedded again (no cycles).
fn nesting_plan(info: &ConnectorInfo, stream: &str) -> Vec<Embed> {
    fn visit(info: &ConnectorInfo, root: &str, parent: Option<usize>, plan: &mut Vec<Embed>) {
        let chain = parent.map_or(Vec::new(), |p| plan[p].chain.clone());
        if chain.len() >= MAX_NESTING {
            return;
        }
        let stream = chain.last().map_or(root, String::as_str);
        for (child, field) in embedded_streams(info, stream) {
            if child == root || chain.contains(&child) {
                continue;
            }
            let mut child_chain = chain.clone();
            child_chain.push(child);
            plan.push(Embed {
                chain: child_chain,
                field,
                parent,
            });
            visit(info, root, Some(plan.len() - 1), plan);
        }
    }
    let mut plan = Vec::new();
    visit(info, stream, None, &mut plan);
    plan
}

/// The query of one embedded stream's live records whose ancestors are all
/// live: the keys of its ancestor chain (the exported record's first), its
/// key and its data, in the order of that chain. Parameters: the
/// connection, then the streams of the chain.
fn embedded_rows_sql(plan: &[Embed], index: usize) -> String {
    let depth = plan[index].chain.len();
    let columns: Vec<String> = (1..=depth).map(|d| format!("t{d}.parent")).collect();
    let mut sql = format!(
        "SELECT {}, t{depth}.key, t{depth}.data FROM records t1",
        columns.join(", ")
    );
    for d in 2..=depth {
        sql.push_str(&format!(
            " JOIN records t{d} \
             ON t{d}.stream_id = (SELECT id FROM stream_ids WHERE connection = ?1 AND stream = ?{}) \
             AND t{d}.parent = t{}.key AND t{d}.deleted_at IS NULL",
            d + 1,
            d - 1
        ));
    }
    sql.push_str(
        " WHERE t1.stream_id = (SELECT id FROM stream_ids WHERE connection = ?1 AND stream = ?2) \
         AND t1.parent IS NOT NULL AND t1.deleted_at IS NULL",
    );
    sql.push_str(&format!(" ORDER BY {}, t{depth}.key", columns.join(", ")));
    sql
}

/// Appends, for each stream embedded into the record at `path` (of plan
/// entry `parent`), the JSON array of its records there, each with its own
/// embedded records. Rows of ancestors not exported are skipped.
fn embed_into(
    line: &mut JsonText,
    plan: &[Embed],
    rows: &mut Rows<'_, '_>,
    parent: Option<usize>,
    path: &mut Vec<String>,
) -> std::io::Result<()> {
    for index in (0..plan.len()).filter(|i| plan[*i].parent == parent) {
        line.field(&plan[index].field);
        line.text.push('[');
        let mut first = true;
        loop {
            match rows.peek(index)? {
                Some(row) if row.path < *path => {
                    rows.take(index);
                }
                Some(row) if row.path == *path => {
                    let Some(row) = rows.take(index) else {
                        break;
                    };
                    if !first {
                        line.text.push(',');
                    }
                    first = false;
                    line.open(&row.data);
                    path.push(row.key);
                    embed_into(line, plan, rows, Some(index), path)?;
                    path.pop();
                    line.close();
                }
                _ => break,
            }
        }
        line.text.push(']');
    }
    Ok(())
}

/// One exported line: stored JSON objects opened for more fields (nested
/// as records are embedded), built in a buffer reused from line to line.
#[derive(Default)]
struct JsonText {
    text: String,
    /// For each open object, whether it has a field yet.
    open: Vec<bool>,
}

impl JsonText {
    fn clear(&mut self) {
        self.text.clear();
        self.open.clear();
    }

    /// Appends the stored object `data`, left open for more fields.
    fn open(&mut self, data: &str) {
        let body = data.trim_end();
        let body = body.strip_suffix('}').unwrap_or(body);
        self.text.push_str(body);
        self.open.push(body.trim_end() != "{");
    }

    /// Appends the name of a new field of the innermost open object; its
    /// value comes next.
    fn field(&mut self, name: &str) {
        if let Some(has_fields) = self.open.last_mut() {
            if *has_fields {
                self.text.push(',');
            }
            *has_fields = true;
        }
        self.string(name);
        self.text.push(':');
    }

    /// Appends a JSON string.
    fn string(&mut self, value: &str) {
        self.text
            .push_str(&serde_json::to_string(value).expect("strings serialise"));
    }

    /// Closes the innermost open object.
    fn close(&mut self) {
        self.open.pop();
        self.text.push('}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use connector_sandbox::runtime::exposure::connector::types::StreamReference;
    use connector_sandbox::runtime::StreamInfo;

    fn stream(name: &str, parent: Option<(&str, &str)>) -> StreamInfo {
        StreamInfo {
            name: name.into(),
            description: String::new(),
            key_field: "id".into(),
            json_schema: "{}".into(),
            supports_incremental: false,
            references: parent
                .map(|(target, embed)| StreamReference {
                    field: "parentId".into(),
                    target_stream: target.into(),
                    embed_as: Some(embed.into()),
                })
                .into_iter()
                .collect(),
            updated_field: None,
        }
    }

    /// devices ← interfaces ← addresses, and a stream embedding itself.
    fn info() -> ConnectorInfo {
        ConnectorInfo {
            name: "t".into(),
            version: "1.0.0".into(),
            description: String::new(),
            settings: vec![],
            auth_methods: vec![],
            streams: vec![
                stream("devices", None),
                stream("interfaces", Some(("devices", "interfaces"))),
                stream("addresses", Some(("interfaces", "ipAddresses"))),
                stream("loops", Some(("loops", "loops"))),
            ],
        }
    }

    fn insert(store: &Store, stream: &str, key: &str, parent: Option<&str>, deleted: bool) {
        let data = match parent {
            Some(p) => format!(r#"{{"id":{key},"parentId":{p}}}"#),
            None => format!(r#"{{"id":{key}}}"#),
        };
        store
            .with_sqlite(|conn| {
                conn.execute(
                    "INSERT INTO stream_ids (connection, stream) VALUES ('c', ?1) ON CONFLICT DO NOTHING",
                    [stream],
                )?;
                conn.execute(
                    "INSERT INTO records (stream_id, key, data, parent, generation, first_seen, changed_at, deleted_at)
                     VALUES ((SELECT id FROM stream_ids WHERE connection = 'c' AND stream = ?1),
                             ?2, ?3, ?4, 1, 't', 't', ?5)",
                    rusqlite::params![stream, key, data, parent, deleted.then_some("t")],
                )
            })
            .unwrap()
            .unwrap();
    }

    fn exported(store: &Store, stream: &str) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        let options = ExportOptions {
            nested: true,
            include_deleted: false,
        };
        export(store, &info(), "c", stream, options, &mut out).unwrap();
        String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn a_nested_export_embeds_every_level_and_skips_what_hangs_off_deleted_records() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        // Keys whose text order differs from their numeric order.
        insert(&store, "devices", "9", None, false);
        insert(&store, "devices", "10", None, false);
        insert(&store, "devices", "11", None, true);
        insert(&store, "interfaces", "100", Some("9"), false);
        insert(&store, "interfaces", "20", Some("9"), false);
        insert(&store, "interfaces", "30", Some("10"), true);
        insert(&store, "interfaces", "40", Some("11"), false);
        insert(&store, "interfaces", "50", Some("77"), false);
        insert(&store, "addresses", "1", Some("20"), false);
        insert(&store, "addresses", "2", Some("100"), false);
        insert(&store, "addresses", "3", Some("100"), false);
        insert(&store, "addresses", "4", Some("30"), false);
        insert(&store, "addresses", "5", Some("40"), false);
        insert(&store, "addresses", "6", Some("50"), false);
        let devices = exported(&store, "devices");
        assert_eq!(
            devices,
            vec![
                serde_json::json!({"id": 10, "interfaces": []}),
                serde_json::json!({"id": 9, "interfaces": [
                    {"id": 100, "parentId": 9, "ipAddresses": [
                        {"id": 2, "parentId": 100}, {"id": 3, "parentId": 100}]},
                    {"id": 20, "parentId": 9, "ipAddresses": [{"id": 1, "parentId": 20}]},
                ]}),
            ]
        );
        // Exporting a middle stream embeds what is below it only.
        let interfaces = exported(&store, "interfaces");
        assert_eq!(interfaces.len(), 4);
        assert_eq!(
            interfaces[3]["ipAddresses"],
            serde_json::json!([{"id": 6, "parentId": 50}])
        );
        assert!(interfaces.iter().all(|i| i.get("interfaces").is_none()));
    }

    #[test]
    fn the_plan_follows_references_depth_first_and_never_cycles() {
        let plan = nesting_plan(&info(), "devices");
        let chains: Vec<Vec<String>> = plan.iter().map(|e| e.chain.clone()).collect();
        assert_eq!(
            chains,
            vec![
                vec!["interfaces".to_string()],
                vec!["interfaces".to_string(), "addresses".to_string()]
            ]
        );
        assert_eq!(plan[1].parent, Some(0));
        assert!(nesting_plan(&info(), "loops").is_empty());
    }
}
