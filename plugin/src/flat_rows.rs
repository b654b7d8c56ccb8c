//! The rows of a Table API body of the plain shape, read in one scan.
//!
//! What the Table API sends for a list is `{"result":[...]}` without
//! whitespace, each row an object of strings, `null`s and reference objects
//! (`{"link":...,"value":...}`) whose members are strings or `null`. Reading
//! that through `serde_json` goes through serde's visitors for every name,
//! colon and value: about 16 % of the host's CPU time in a 100k-device sync
//! (BENCHMARKS.md, "The guest's body parsing"). [`read`] reads that shape in
//! one pass with `json-scan`'s `PlainScan` (a string's end found eight bytes
//! at a time), a value with escape sequences unescaped by `serde_json` alone
//! (one such name in a page sent every page of devices to `serde_json`,
//! "The guest's escaped values"), and returns `None` for anything else
//! (whitespace, a number, an escaped column name, an error object, invalid
//! JSON), which [`crate::rows::parse_envelope`] then gives to `serde_json`,
//! as before.
//! Whatever it accepts is valid JSON, and it finds what `serde_json` finds:
//! the same cells in the same order, a reference's last `value`.

use crate::json_object::Unescaped;
use crate::rows::{Cell, Row};
use json_scan::{JsonString, PlainScan};
use std::borrow::Cow;

/// The rows of `text` when it is a list body of the plain shape.
pub fn read(text: &str) -> Option<Vec<Row<'_>>> {
    let mut scan = PlainScan::new(text);
    scan.literal(r#"{"result":["#)?;
    let mut rows: Vec<Row<'_>> = Vec::new();
    if !scan.take(b']') {
        loop {
            // A page's rows have the same columns: size each by the last.
            let columns = rows.last().map_or(16, |row| row.cells.len());
            rows.push(row(&mut scan, columns)?);
            match scan.next_byte()? {
                b',' => continue,
                b']' => break,
                _ => return None,
            }
        }
    }
    scan.literal("}")?;
    scan.at_end().then_some(rows)
}

/// One row, `{"column":value,...}`, its cells in the body's order.
fn row<'a>(scan: &mut PlainScan<'a>, columns: usize) -> Option<Row<'a>> {
    let mut cells = Vec::with_capacity(columns);
    scan.object(|scan, name| {
        let cell = if scan.peek() == Some(b'{') {
            reference(scan)?
        } else {
            scalar(scan)?
        };
        cells.push((Cow::Borrowed(name), cell));
        Some(())
    })?;
    Some(Row { cells })
}

/// A reference object: its last `value` member, or `null` without one.
fn reference<'a>(scan: &mut PlainScan<'a>) -> Option<Cell<'a>> {
    let mut value = Cell::Null;
    scan.object(|scan, name| {
        let member = scalar(scan)?;
        if name == "value" {
            value = member;
        }
        Some(())
    })?;
    Some(value)
}

/// A string or `null`, as a cell. A string with escape sequences is
/// unescaped by `serde_json` alone (which refuses a bad escape, and the
/// whole body then goes to it).
fn scalar<'a>(scan: &mut PlainScan<'a>) -> Option<Cell<'a>> {
    if scan.take(b'n') {
        scan.literal("ull")?;
        return Some(Cell::Null);
    }
    Some(match scan.string_token()? {
        JsonString::Plain(text) => Cell::Lent(Unescaped::lent_by_parser(text)),
        JsonString::Escaped(quoted) => Cell::Escaped(serde_json::from_str(quoted).ok()?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rows::Envelope;

    /// Bodies of the shapes a page can take, plain and not.
    const BODIES: &[&str] = &[
        r#"{"result":[{"sys_id":"a1","name":"pc-1","ref":{"value":"b2","link":"https://x/api/now/table/t/b2"},"n":null,"e":""},{"sys_id":"a2","name":"café","ref":{"link":"l","value":null},"n":"x","e":"y"}]}"#,
        r#"{"result":[{"a":"1","a":"2","r":{"value":"v1","display_value":"d","value":"v2"},"s":{}},{}]}"#,
        r#"{"result":[]}"#,
        r#"{"result":[{"a":"x\"y","b":1,"c":[true]}],"status":"failure"}"#,
        r#"{"result":[{"a":"x\"y\\z\u00e9\n","r":{"value":"v\/1"},"e":"\""},{"a":"q"}]}"#,
    ];

    /// Whenever the flat reading reads rows, `serde_json` reads the same
    /// rows and nothing else from the same text.
    fn agrees_with_serde_json(text: &str) -> bool {
        let Some(rows) = read(text) else {
            return false;
        };
        let env: Envelope = serde_json::from_str(text)
            .unwrap_or_else(|e| panic!("flat read rows from invalid JSON {text:?}: {e}"));
        assert_eq!(env.result.as_ref(), Some(&rows), "{text:?}");
        assert!(env.error.is_none() && env.status.is_none(), "{text:?}");
        true
    }

    #[test]
    fn the_flat_reading_finds_what_serde_json_finds_or_leaves_the_text_to_it() {
        let specials = [
            "\"", "\\", "{", "}", "[", "]", ",", ":", " ", "\n", "\u{1}", "1", "n", "l", "é",
        ];
        let (mut texts, mut read_flat) = (0, 0);
        for body in BODIES {
            read_flat += usize::from(agrees_with_serde_json(body));
            for at in (0..body.len()).filter(|&at| body.is_char_boundary(at)) {
                let next = body[at..].chars().next().map_or(0, char::len_utf8);
                for special in specials {
                    let replaced = format!("{}{special}{}", &body[..at], &body[at + next..]);
                    let inserted = format!("{}{special}{}", &body[..at], &body[at..]);
                    for text in [replaced, inserted] {
                        texts += 1;
                        read_flat += usize::from(agrees_with_serde_json(&text));
                    }
                }
            }
        }
        assert!(read_flat > 200, "only {read_flat} of {texts} read flat");
    }

    #[test]
    fn a_body_of_the_plain_shape_is_read_flat_and_others_are_not() {
        assert!(agrees_with_serde_json(BODIES[0]));
        assert!(agrees_with_serde_json(BODIES[1]));
        assert!(agrees_with_serde_json(BODIES[2]));
        assert!(read(BODIES[3]).is_none(), "a number, an array");
        assert!(agrees_with_serde_json(BODIES[4]), "escaped values");
        assert!(
            read(r#"{"result":[{"a\"":"x"}]}"#).is_none(),
            "an escaped name"
        );
        assert!(read(r#"{"result":[{"a":"\x"}]}"#).is_none(), "a bad escape");
        assert!(read(r#"{"result": []}"#).is_none(), "whitespace");
        assert!(read(r#"{"error":{"message":"m"},"status":"failure"}"#).is_none());
        assert!(read(r#"{"result":[]}x"#).is_none(), "trailing bytes");
    }
}
