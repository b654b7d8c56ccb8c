//! Reading a record's key and embedding parent out of its JSON text in one
//! pass, without building a map: the fields asked for are borrowed as raw
//! JSON, every other value is skipped (`IgnoredAny`), and no field name is
//! copied. The host reads every record the component returns this way, so
//! this is on the path of every record (BENCHMARKS.md, "Where the host's CPU
//! goes": the map it replaced cost 7 % of the host's CPU).

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
    let mut de = serde_json::Deserializer::from_str(json);
    let found = Fields {
        key_field,
        embed_field,
    }
    .deserialize(&mut de)?;
    de.end()?;
    Ok(found)
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
