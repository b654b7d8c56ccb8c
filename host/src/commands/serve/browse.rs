//! The record browser's side in the host: which streams are embedded into
//! which (from the component's `info`), searches and single records read
//! from the store, and records shown as fields in their own order.

use super::Configured;
use anyhow::Result;
use connector_console::view::Fields;
use connector_console::{ConnectionView, RecordView, RecordsView};
use connector_engine::store::Store;
use serde::de::{Deserializer, MapAccess, Visitor};
use std::fmt;

/// Records per page of the browser.
pub const PAGE: u32 = 50;

/// Fields a row of the browser shows.
const ROW_FIELDS: usize = 6;

/// Records embedded into one shown with it, at most, per stream.
const EMBEDDED_SHOWN: u32 = 200;

/// The streams whose records are embedded into `stream` (their reference
/// with `embed-as` names it): (embedding stream, the name they go under).
fn embedded_into(c: &Configured, stream: &str) -> Vec<(String, String)> {
    c.streams
        .iter()
        .flat_map(|s| {
            s.references
                .iter()
                .filter(|r| r.target_stream == stream)
                .filter_map(|r| r.embed_as.clone().map(|label| (s.name.clone(), label)))
        })
        .collect()
}

/// A page of `stream`'s records with a value containing `term`.
pub fn records(
    c: &Configured,
    view: ConnectionView,
    store: &Store,
    stream: &str,
    term: &str,
    offset: u64,
) -> Result<Option<RecordsView>> {
    if !c.streams.iter().any(|s| s.name == stream) {
        return Ok(None);
    }
    let embedded: Vec<String> = embedded_into(c, stream)
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    let found = store.search(&c.name, stream, &embedded, term, PAGE, offset)?;
    Ok(Some(RecordsView {
        connection: view,
        stream: stream.to_string(),
        term: term.to_string(),
        total: found.total,
        offset,
        limit: u64::from(PAGE),
        rows: found
            .records
            .into_iter()
            .map(|(key, data)| {
                let mut fields = fields(&data);
                fields.truncate(ROW_FIELDS);
                (key, fields)
            })
            .collect(),
    }))
}

/// Record `key` of `stream`, what is embedded into it and what it names.
pub fn record(
    c: &Configured,
    view: ConnectionView,
    store: &Store,
    stream: &str,
    key: &str,
) -> Result<Option<RecordView>> {
    let Some(info) = c.streams.iter().find(|s| s.name == stream) else {
        return Ok(None);
    };
    let Some(data) = store.record(&c.name, stream, key)? else {
        return Ok(None);
    };
    let own = fields(&data);
    let mut references = Vec::new();
    // Every record it names, the one it is embedded into included (an
    // adapter's page shows its device).
    for r in &info.references {
        if let Some((_, target_key)) = own.iter().find(|(name, _)| *name == r.field) {
            let target = store.record(&c.name, &r.target_stream, target_key)?;
            references.push((
                r.field.clone(),
                r.target_stream.clone(),
                target_key.clone(),
                target.as_deref().map(fields),
            ));
        }
    }
    let mut embedded = Vec::new();
    for (child, label) in embedded_into(c, stream) {
        let rows = store.embedded_in(&c.name, &child, key, EMBEDDED_SHOWN)?;
        embedded.push((label, child, rows.iter().map(|(_, d)| fields(d)).collect()));
    }
    Ok(Some(RecordView {
        connection: view,
        stream: stream.to_string(),
        key: key.to_string(),
        fields: own,
        embedded,
        references,
    }))
}

/// A record's fields in the order the component wrote them: strings as
/// they are, other values as JSON. Text that is not a JSON object shows as
/// one field, `(record)`.
pub fn fields(data: &str) -> Fields {
    let mut deserializer = serde_json::Deserializer::from_str(data);
    match deserializer.deserialize_map(InOrder) {
        Ok(fields) => fields,
        Err(_) => vec![("(record)".to_string(), data.to_string())],
    }
}

/// Reads a JSON object's entries in their order.
struct InOrder;

impl<'de> Visitor<'de> for InOrder {
    type Value = Fields;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
        let mut fields = Vec::new();
        while let Some((name, value)) = map.next_entry::<String, serde_json::Value>()? {
            let text = match value {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            fields.push((name, text));
        }
        Ok(fields)
    }
}

#[cfg(test)]
mod tests {
    use super::fields;

    #[test]
    fn fields_keep_the_records_order_and_show_strings_plainly() {
        assert_eq!(
            fields(r#"{"z":"last?","a":1,"m":true,"n":null}"#),
            vec![
                ("z".to_string(), "last?".to_string()),
                ("a".to_string(), "1".to_string()),
                ("m".to_string(), "true".to_string()),
                ("n".to_string(), "null".to_string()),
            ]
        );
        assert_eq!(fields("[1]")[0].0, "(record)");
    }
}
