//! Reading a record's key and embedding parent out of its JSON text in one
//! pass, without building a map: the fields asked for are borrowed as raw
//! JSON, every other value is skipped (`IgnoredAny`), and no field name is
//! copied. The host reads every record the component returns this way, so
//! this is on the path of every record (BENCHMARKS.md, "Where the host's CPU
//! goes": the map it replaced cost 7 % of the host's CPU).
//!
//! Most records have one flat shape: string keys, and values that are
//! strings without escapes, `true`, `false` or `null`, with no whitespace.
//! [`read_flat`] reads that shape in one scan of the bytes (`json-scan`'s
//! `PlainScan`, which the component's body reading shares) and leaves
//! anything else (numbers, escapes, nesting, whitespace, errors) to
//! `serde_json`, which also says what is wrong. Through `serde_json` alone
//! the pass cost 13 % of the host's instructions in a 100k-device sync
//! (BENCHMARKS.md, "The host's key pass").

use json_scan::PlainScan;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;

/// The key and the parent found in one record (each `None` when absent or
/// not a string or an integer).
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct KeyAndParent {
    /// The key field's text.
    pub key: Option<String>,
    /// The embedding field's text.
    pub parent: Option<String>,
}

/// Reads `key_field` and `embed_field` of the JSON object `json`; an error
/// when `json` is not one JSON object.
pub(super) fn read(
    json: &str,
    key_field: &str,
    embed_field: Option<&str>,
) -> Result<KeyAndParent, serde_json::Error> {
    if let Some(found) = read_flat(json, key_field, embed_field) {
        return Ok(found);
    }
    let mut de = serde_json::Deserializer::from_str(json);
    let found = Fields {
        key_field,
        embed_field,
    }
    .deserialize(&mut de)?;
    de.end()?;
    Ok(found)
}

/// [`read`] for a record of the flat shape; `None` for any other text,
/// valid or not. Whatever it reads is valid JSON: an object whose strings
/// hold no escape and no control character (the text is UTF-8, being a
/// `str`), and literals spelled out. Later duplicates win, as in [`read`].
fn read_flat(json: &str, key_field: &str, embed_field: Option<&str>) -> Option<KeyAndParent> {
    let mut scan = PlainScan::new(json);
    let mut found = KeyAndParent::default();
    scan.object(|scan, name| {
        // A string is a key's text; a literal is no key (as `key_text`).
        let value = match scan.peek()? {
            b'"' => Some(scan.string()?),
            b't' => scan.literal("true").map(|()| None)?,
            b'f' => scan.literal("false").map(|()| None)?,
            b'n' => scan.literal("null").map(|()| None)?,
            _ => return None,
        };
        if name == key_field {
            found.key = value.map(str::to_string);
        }
        if Some(name) == embed_field {
            found.parent = value.map(str::to_string);
        }
        Some(())
    })?;
    scan.at_end().then_some(found)
}

/// A key as stored: a JSON string's text, or an integer's decimal digits
/// (which is also how a tombstone names it). Anything else is no key.
fn key_text(raw: &str) -> Option<String> {
    let raw = raw.trim();
    let digits = raw.strip_prefix('-').unwrap_or(raw);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return Some(raw.to_string());
    }
    serde_json::from_str::<Cow<'_, str>>(raw)
        .ok()
        .map(Cow::into_owned)
}

/// The fields to find; deserialises a JSON object into [`KeyAndParent`].
#[derive(Clone, Copy)]
struct Fields<'f> {
    key_field: &'f str,
    embed_field: Option<&'f str>,
}

/// What one field name of the object is to the reader.
struct Wanted {
    key: bool,
    parent: bool,
}

impl<'de> DeserializeSeed<'de> for Fields<'_> {
    type Value = KeyAndParent;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<KeyAndParent, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Fields<'_> {
    type Value = KeyAndParent;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    /// Later duplicates win, as they would in a map.
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<KeyAndParent, A::Error> {
        let mut found = KeyAndParent::default();
        while let Some(wanted) = map.next_key_seed(&self)? {
            if !(wanted.key || wanted.parent) {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            let raw: &RawValue = map.next_value()?;
            let text = key_text(raw.get());
            if wanted.parent {
                found.parent = text.clone();
            }
            if wanted.key {
                found.key = text;
            }
        }
        Ok(found)
    }
}

/// Field names are compared where they lie (escaped names arrive unescaped
/// in a scratch buffer); none is copied.
impl<'de> DeserializeSeed<'de> for &Fields<'_> {
    type Value = Wanted;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Wanted, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for &Fields<'_> {
    type Value = Wanted;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<Wanted, E> {
        Ok(Wanted {
            key: name == self.key_field,
            parent: Some(name) == self.embed_field,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records of the flat shape and others, each then mutated at every
    /// place by every byte that matters to the shape.
    fn texts() -> Vec<String> {
        let seeds = [
            r#"{"sysId":"0a","name":"srv é","virtual":true,"v":false,"n":null,"dev":"d1"}"#,
            r#"{"sysId":"0a","sysId":"0b","dev":"d1","dev":null}"#,
            r#"{"sysId":7,"dev":{"x":["y"]},"z":"q\"x"}"#,
            r#"{}"#,
            r#"{"a":""}"#,
        ];
        let specials = [
            "", "\"", "\\", "{", "}", ",", ":", " ", "\u{1}", "\n", "\u{1f}", "t", "1", "]", "x",
        ];
        let mut texts: Vec<String> = seeds.iter().map(|s| s.to_string()).collect();
        for seed in seeds {
            for at in (0..=seed.len()).filter(|&at| seed.is_char_boundary(at)) {
                let next = seed[at..].chars().next().map_or(at, |c| at + c.len_utf8());
                for special in specials {
                    // The byte at `at` replaced, and the special inserted there.
                    texts.push(format!("{}{special}{}", &seed[..at], &seed[next..]));
                    texts.push(format!("{}{special}{}", &seed[..at], &seed[at..]));
                }
            }
        }
        texts
    }

    fn through_serde(json: &str) -> Option<KeyAndParent> {
        let mut de = serde_json::Deserializer::from_str(json);
        let fields = Fields {
            key_field: "sysId",
            embed_field: Some("dev"),
        };
        let found = fields.deserialize(&mut de).ok()?;
        de.end().ok().map(|()| found)
    }

    #[test]
    fn the_flat_reading_finds_what_serde_json_finds_or_leaves_the_text_to_it() {
        let mut read_flat_count = 0;
        for text in texts() {
            if let Some(flat) = read_flat(&text, "sysId", Some("dev")) {
                read_flat_count += 1;
                assert_eq!(Some(flat), through_serde(&text), "{text:?}");
            }
            assert_eq!(
                read(&text, "sysId", Some("dev")).ok(),
                through_serde(&text),
                "{text:?}"
            );
        }
        assert!(read_flat_count > 100, "only {read_flat_count} read flat");
    }

    #[test]
    fn a_record_of_the_common_shape_is_read_flat() {
        let record = r#"{"sysId":"0a","name":"srv","virtual":true,"dev":"d1"}"#;
        assert_eq!(
            read_flat(record, "sysId", Some("dev")),
            Some(KeyAndParent {
                key: Some("0a".into()),
                parent: Some("d1".into()),
            })
        );
    }
}
