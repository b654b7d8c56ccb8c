//! Writing a record's JSON object straight into a `String`.
//!
//! `serde_json`'s serializer checks every byte of every key and value
//! against its escape table, one byte at a time: in the 1M-device sync that
//! loop (`format_escaped_str`) was 7.6 % of the host's CPU (BENCHMARKS.md,
//! "The guest's record writing"). Almost no CMDB value needs escaping, so
//! [`push_json_string`] looks for the bytes that do eight at a time and
//! copies a clean string as it is; a string that needs escaping is written
//! by `serde_json` itself. Two kinds of text skip even that look: a
//! field's name, written once per stream as a [`JsonKey`], and text known
//! to need no escaping ([`Unescaped`]), such as a string the parser lent
//! from the response body as it stood there. The output is byte for byte
//! what `serde_json` writes, so records stored by earlier releases compare
//! equal.

/// Text that needs no escaping in JSON: no `"`, no `\` and no control
/// character below U+0020.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unescaped<'a>(&'a str);

impl<'a> Unescaped<'a> {
    /// `text`, when it needs no escaping.
    pub fn check(text: &'a str) -> Option<Unescaped<'a>> {
        (!needs_escaping(text.as_bytes())).then_some(Unescaped(text))
    }

    /// A string `serde_json` lent from a JSON document without change
    /// (`visit_borrowed_str`): it held no escape sequence, so no `"` or `\`,
    /// and `serde_json` refuses a control character inside a string
    /// (`rows::tests::a_control_character_in_a_string_is_refused` holds it to
    /// that). Checked again in debug builds.
    pub fn lent_by_parser(text: &'a str) -> Unescaped<'a> {
        debug_assert!(!needs_escaping(text.as_bytes()), "{text:?}");
        Unescaped(text)
    }

    /// The text.
    pub fn as_str(&self) -> &'a str {
        self.0
    }
}

/// A field's name as it opens a member of an object: `"name":`, written
/// once so that every record copies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonKey(String);

impl JsonKey {
    /// The member opening for the field `name`.
    pub fn new(name: &str) -> JsonKey {
        let mut key = String::with_capacity(name.len() + 3);
        push_json_string(&mut key, name);
        key.push(':');
        JsonKey(key)
    }
}

/// A JSON object being written: `{"key":value,...}`.
pub struct JsonObject {
    out: String,
    empty: bool,
}

impl JsonObject {
    /// An empty object with room for about `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> JsonObject {
        let mut out = String::with_capacity(capacity);
        out.push('{');
        JsonObject { out, empty: true }
    }

    /// Appends `"key":"value"`, escaping `value` where it must.
    pub fn string(&mut self, key: &JsonKey, value: &str) {
        self.key(key);
        push_json_string(&mut self.out, value);
    }

    /// Appends `"key":"value"` for a value known to need no escaping.
    pub fn unescaped_string(&mut self, key: &JsonKey, value: Unescaped<'_>) {
        self.key(key);
        self.out.push('"');
        self.out.push_str(value.0);
        self.out.push('"');
    }

    /// Appends `"key":true` or `"key":false`.
    pub fn boolean(&mut self, key: &JsonKey, value: bool) {
        self.key(key);
        self.out.push_str(if value { "true" } else { "false" });
    }

    /// The object's text.
    pub fn finish(mut self) -> String {
        self.out.push('}');
        self.out
    }

    fn key(&mut self, key: &JsonKey) {
        if !self.empty {
            self.out.push(',');
        }
        self.empty = false;
        self.out.push_str(&key.0);
    }
}

/// Appends `text` as a JSON string, escaped exactly as `serde_json` escapes
/// it (`"`, `\` and the control characters below U+0020; nothing else).
pub fn push_json_string(out: &mut String, text: &str) {
    if needs_escaping(text.as_bytes()) {
        // Serialising a `&str` cannot fail.
        out.push_str(&serde_json::to_string(text).expect("a string serialises"));
    } else {
        out.push('"');
        out.push_str(text);
        out.push('"');
    }
}

/// Whether any byte is `"`, `\` or below 0x20 (found eight bytes at a time:
/// a wasm32 guest has 64-bit integers but, by default, no SIMD).
fn needs_escaping(bytes: &[u8]) -> bool {
    json_scan::first_escape_byte(bytes).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(text: &str) -> String {
        let mut out = String::new();
        push_json_string(&mut out, text);
        out
    }

    #[test]
    fn every_byte_at_every_place_is_escaped_as_serde_json_escapes_it() {
        // Each ASCII byte, and some multi-byte characters, at every offset
        // of strings long enough to cross two words, in clean surroundings.
        let mut specials: Vec<String> = (0u8..0x80).map(|b| char::from(b).to_string()).collect();
        specials.extend(["é", "€", "😀", "\u{7f}", "\u{80}", "\u{2028}"].map(String::from));
        for special in &specials {
            for at in 0..20 {
                for len in [at, at + 1, 20] {
                    let mut text: String = "abcdefghijklmnopqrstuvwxyz".chars().take(at).collect();
                    text.push_str(special);
                    text.extend("ABCDEFGHIJKLMNOPQRSTUVWXYZ".chars().take(len - at));
                    assert_eq!(
                        written(&text),
                        serde_json::to_string(&text).unwrap(),
                        "{text:?}"
                    );
                    // And only those strings leave the fast path.
                    let naive = text.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\');
                    assert_eq!(needs_escaping(text.as_bytes()), naive, "{text:?}");
                    assert_eq!(Unescaped::check(&text).is_none(), naive, "{text:?}");
                }
            }
        }
    }

    #[test]
    fn an_object_is_what_serde_json_writes_for_the_same_entries() {
        use serde::ser::{SerializeMap, Serializer};
        let entries = [
            ("sysId", Ok("0a")),
            ("name", Ok("srv \"01\" \\ ^\u{1}")),
            ("virtual", Err(true)),
            ("v2", Err(false)),
            ("clean", Ok("no escapes")),
            ("q\"uoted", Ok("")),
        ];
        let mut object = JsonObject::with_capacity(8);
        let mut expected = Vec::new();
        let mut serializer = serde_json::Serializer::new(&mut expected);
        let mut map = serializer.serialize_map(None).unwrap();
        for (key, value) in entries {
            let json_key = JsonKey::new(key);
            match value {
                Ok(text) => {
                    match Unescaped::check(text) {
                        Some(clean) => object.unescaped_string(&json_key, clean),
                        None => object.string(&json_key, text),
                    }
                    map.serialize_entry(key, text).unwrap();
                }
                Err(flag) => {
                    object.boolean(&json_key, flag);
                    map.serialize_entry(key, &flag).unwrap();
                }
            }
        }
        map.end().unwrap();
        assert_eq!(object.finish(), String::from_utf8(expected).unwrap());
        assert_eq!(JsonObject::with_capacity(0).finish(), "{}");
    }
}
