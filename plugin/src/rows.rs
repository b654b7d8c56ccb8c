//! Parsing Table API response bodies without building `serde_json::Value`s.
//!
//! A list response is `{"result": [ {column: value, ...}, ... ]}`. Values are
//! strings, occasionally `null`, and reference fields are either a plain sys_id
//! or an object `{"link": ..., "value": ...}` (also `{"display_value", "value"}`).
//! Rows are kept as borrowed `(column, cell)` pairs: parsing stays close to the
//! speed of reading the bytes. A string the body wrote without escape
//! sequences stays borrowed and is known to need no escaping when a record
//! writes it again ([`Cell::Lent`]).

use crate::json_object::Unescaped;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::borrow::Cow;
use std::fmt;

/// One column value of a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell<'a> {
    /// A string (or a reference object's `value`) the body wrote without
    /// escape sequences, borrowed as it stood there.
    Lent(Unescaped<'a>),
    /// A string the body wrote with escape sequences, unescaped.
    Escaped(String),
    /// `null`, or a reference object without a value.
    Null,
    /// Something the Table API does not send for columns (number, bool, array).
    Other,
}

impl<'a> Cell<'a> {
    /// The text, when the cell holds a non-empty string.
    pub fn text(&self) -> Option<&str> {
        let text = match self {
            Cell::Lent(t) => t.as_str(),
            Cell::Escaped(t) => t,
            Cell::Null | Cell::Other => return None,
        };
        (!text.is_empty()).then_some(text)
    }

    /// The text, when the cell holds a string that needs no escaping in
    /// JSON because the body held it without any.
    pub fn unescaped(&self) -> Option<Unescaped<'a>> {
        match self {
            Cell::Lent(t) => Some(*t),
            _ => None,
        }
    }
}

/// One row: its columns in the order the server sent them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Row<'a> {
    /// `(column, value)` pairs.
    pub cells: Vec<(Cow<'a, str>, Cell<'a>)>,
}

impl<'a> Row<'a> {
    /// The value of a column (its first cell), if the server sent that
    /// column. A page's records find their columns with
    /// [`ColumnPositions`](crate::columns::ColumnPositions) instead.
    pub fn get(&self, column: &str) -> Option<&Cell<'a>> {
        self.cells
            .iter()
            .find(|(name, _)| name == column)
            .map(|(_, cell)| cell)
    }
}

/// The ServiceNow error object `{"message": ..., "detail": ...}`.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
pub struct ErrorBody<'a> {
    /// Short message, e.g. `User Not Authenticated`.
    #[serde(borrow, default)]
    pub message: Option<Cow<'a, str>>,
    /// Longer detail.
    #[serde(borrow, default, deserialize_with = "lenient_string")]
    pub detail: Option<Cow<'a, str>>,
}

impl ErrorBody<'_> {
    /// `message: detail`, or whichever is present.
    pub fn describe(&self) -> String {
        let m = self.message.as_deref().unwrap_or("").trim();
        let d = self.detail.as_deref().unwrap_or("").trim();
        match (m.is_empty(), d.is_empty()) {
            (false, false) => format!("{m}: {d}"),
            (false, true) => m.to_string(),
            (true, false) => d.to_string(),
            (true, true) => "no details given".to_string(),
        }
    }
}

/// A whole response body: rows, an error, or (after a cancelled transaction) both.
#[derive(Debug, Default, Deserialize)]
pub struct Envelope<'a> {
    /// Rows of a list query.
    #[serde(borrow, default)]
    pub result: Option<Vec<Row<'a>>>,
    /// The error object, when the server reports one.
    #[serde(borrow, default)]
    pub error: Option<ErrorBody<'a>>,
    /// `"failure"` alongside an error.
    #[serde(borrow, default)]
    pub status: Option<Cow<'a, str>>,
}

/// Parses a whole body: a list of the plain shape in one scan
/// ([`crate::flat_rows`]), anything else through `serde_json`, which also
/// words the error.
pub fn parse_envelope(text: &str) -> Result<Envelope<'_>, serde_json::Error> {
    match crate::flat_rows::read(text) {
        Some(rows) => Ok(Envelope {
            result: Some(rows),
            error: None,
            status: None,
        }),
        None => serde_json::from_str(text),
    }
}

fn lenient_string<'de: 'a, 'a, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Cow<'a, str>>, D::Error> {
    Ok(match Cell::deserialize(d)? {
        Cell::Lent(t) => Some(Cow::Borrowed(t.as_str())),
        Cell::Escaped(t) => Some(Cow::Owned(t)),
        Cell::Null | Cell::Other => None,
    })
}

impl<'de: 'a, 'a> Deserialize<'de> for Cell<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct CellVisitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for CellVisitor<'a> {
            type Value = Cell<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a Table API column value")
            }
            /// `serde_json` lends a string only when it held no escape.
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Cell::Lent(Unescaped::lent_by_parser(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Cell::Escaped(v.to_string()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Cell::Escaped(v))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Cell::Null)
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Cell::Null)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Cell::Other)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Cell::Other)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Cell::Other)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Cell::Other)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Cell::Other)
            }
            /// Reference objects: keep `value`, ignore `link` and `display_value`.
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut value = Cell::Null;
                while let Some(ColumnName(key)) = map.next_key::<ColumnName<'de>>()? {
                    if key == "value" {
                        value = map.next_value::<Cell<'a>>()?;
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(value)
            }
        }
        d.deserialize_any(CellVisitor(std::marker::PhantomData))
    }
}

/// A column name borrowed from the body (`Cow<str>`'s own `Deserialize`
/// always copies): only a name written with escapes is copied. A page of
/// 2,000 rows of 16 columns saved 32,000 allocations this way.
struct ColumnName<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for ColumnName<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct NameVisitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for NameVisitor<'a> {
            type Value = ColumnName<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a column name")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(ColumnName(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(ColumnName(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(NameVisitor(std::marker::PhantomData))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Row<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct RowVisitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for RowVisitor<'a> {
            type Value = Row<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a Table API row (a JSON object)")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut cells = Vec::with_capacity(map.size_hint().unwrap_or(16));
                while let Some(ColumnName(key)) = map.next_key::<ColumnName<'a>>()? {
                    cells.push((key, map.next_value::<Cell<'a>>()?));
                }
                Ok(Row { cells })
            }
        }
        d.deserialize_map(RowVisitor(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_strings_references_and_nulls() {
        let body = br#"{"result":[{"sys_id":"a1","cmdb_ci":{"link":"https://x/api/now/table/cmdb_ci/b2","value":"b2"},
            "name":"caf\u00e9 \"q\" \\ ^","x":null,"y":{"display_value":"D","value":""},"z":[1,2],"n":4}]}"#;
        let env: Envelope = serde_json::from_slice(body).unwrap();
        let rows = env.result.unwrap();
        let row = &rows[0];
        assert_eq!(row.get("sys_id").unwrap().text(), Some("a1"));
        assert_eq!(row.get("cmdb_ci").unwrap().text(), Some("b2"));
        assert_eq!(row.get("name").unwrap().text(), Some("café \"q\" \\ ^"));
        assert_eq!(row.get("x"), Some(&Cell::Null));
        assert_eq!(row.get("y").unwrap().text(), None);
        assert_eq!(row.get("z"), Some(&Cell::Other));
        assert_eq!(row.get("n"), Some(&Cell::Other));
        assert!(row.get("missing").is_none());
    }

    #[test]
    fn columns_are_found_in_any_order_and_names_are_borrowed() {
        let body = br#"{"result":[{"a":"1","b":"2","c":"3","d\u0065":"4"}]}"#;
        let env: Envelope = serde_json::from_slice(body).unwrap();
        let row = &env.result.unwrap()[0];
        assert!(matches!(row.cells[0].0, Cow::Borrowed("a")));
        assert_eq!(row.cells[3].0, "de", "an escaped name is unescaped");
        for (i, column) in ["a", "b", "c", "de"].into_iter().enumerate() {
            assert_eq!(
                row.get(column).unwrap().text(),
                Some(["1", "2", "3", "4"][i])
            );
        }
        assert!(row.get("missing").is_none());
    }

    #[test]
    fn only_a_string_written_without_escapes_is_lent_as_needing_none() {
        let body = r#"{"result":[{"a":"plain é","b":"q\"uote","c":"tab\t","d":"\u0061","e":{"value":"v"}}]}"#;
        let env: Envelope = serde_json::from_str(body).unwrap();
        let row = &env.result.unwrap()[0];
        let lent = |column| row.get(column).unwrap().unescaped().map(|t| t.as_str());
        assert_eq!(lent("a"), Some("plain é"));
        assert_eq!(lent("e"), Some("v"));
        for (column, text) in [("b", "q\"uote"), ("c", "tab\t"), ("d", "a")] {
            assert_eq!(lent(column), None, "{column}");
            assert_eq!(row.get(column).unwrap(), &Cell::Escaped(text.into()));
        }
    }

    /// What [`Unescaped::lent_by_parser`] relies on: `serde_json` refuses a
    /// raw control character inside a string rather than lending it.
    #[test]
    fn a_control_character_in_a_string_is_refused() {
        for control in (0u8..0x20).map(char::from) {
            let body = format!(r#"{{"result":[{{"a":"x{control}y"}}]}}"#);
            assert!(
                serde_json::from_str::<Envelope>(&body).is_err(),
                "{control:?} was accepted"
            );
        }
    }

    #[test]
    fn parses_error_envelope() {
        let body = br#"{"error":{"message":"Invalid table foo","detail":null},"status":"failure"}"#;
        let env: Envelope = serde_json::from_slice(body).unwrap();
        assert!(env.result.is_none());
        assert_eq!(env.error.unwrap().describe(), "Invalid table foo");
    }
}
