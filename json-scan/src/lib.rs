//! The first byte a JSON string cannot hold as it is: `"`, `\` or a control
//! character below U+0020 (RFC 8259, section 7), looked for eight bytes at a
//! time in a `u64`.
//!
//! Both sides of the component boundary scan short strings for these bytes
//! on the path of every record: the ServiceNow component before it writes a
//! string into a record without escaping it, and the host when it reads a
//! record's key. A byte loop cost 9 instructions a byte there, and `memchr`
//! for the closing quote followed by a second check of the string's bytes
//! made the host's key pass 14 % dearer than this (BENCHMARKS.md, "The
//! host's key pass"). The component is built for wasm32, which has 64-bit
//! integers but, by default, no SIMD; this crate has no dependencies and no
//! `unsafe`, so it builds the same for the host and for the component.
//!
//! [`PlainScan`] reads JSON of the plain shape on top of it: objects whose
//! strings hold no escape, without whitespace. Both sides read their most
//! common texts with it (the host a record, the component a Table API
//! body) and leave any other text to `serde_json`. It also finds where a
//! string with escapes ends ([`PlainScan::string_token`]), so that a reader
//! can give just that string to a JSON parser.
//!
//! ```
//! assert_eq!(json_scan::first_escape_byte(br#"abc"def"#), Some(3));
//! assert_eq!(json_scan::first_escape_byte(b"no quote, no backslash"), None);
//! ```

#![forbid(unsafe_code)]

/// The index of the first `"`, `\` or byte below 0x20 in `bytes`, if any.
/// Bytes of multi-byte UTF-8 characters (0x80 and above) are never such.
pub fn first_escape_byte(bytes: &[u8]) -> Option<usize> {
    let mut words = bytes.chunks_exact(8);
    for (n, word) in words.by_ref().enumerate() {
        let flags = escape_flags(u64::from_le_bytes(word.try_into().expect("chunks of 8")));
        if flags != 0 {
            return Some(8 * n + flags.trailing_zeros() as usize / 8);
        }
    }
    let done = bytes.len() - words.remainder().len();
    words
        .remainder()
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
        .map(|i| done + i)
}

/// A JSON string as [`PlainScan::string_token`] found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonString<'a> {
    /// No escape sequence: the text between the quotes, as it is.
    Plain(&'a str),
    /// With escape sequences: the string as written, quotes included.
    Escaped(&'a str),
}

/// A position in a JSON text, reading the plain shape: strings without
/// escapes or control characters, literals, objects, no whitespace. Each
/// reading returns `None` (or `false`) where the text is not what it reads;
/// whatever the readings accept is valid JSON.
///
/// ```
/// use json_scan::PlainScan;
/// let mut scan = PlainScan::new(r#"{"a":"1","b":null}"#);
/// let mut names = Vec::new();
/// scan.object(|scan, name| {
///     names.push(name);
///     if scan.take(b'n') { scan.literal("ull") } else { scan.string().map(|_| ()) }
/// }).unwrap();
/// assert!(scan.at_end());
/// assert_eq!(names, ["a", "b"]);
/// ```
#[derive(Debug)]
pub struct PlainScan<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> PlainScan<'a> {
    /// A scan from the start of `text`.
    pub fn new(text: &'a str) -> PlainScan<'a> {
        PlainScan { text, at: 0 }
    }

    /// Whether the whole text has been read.
    pub fn at_end(&self) -> bool {
        self.at == self.text.len()
    }

    /// The byte at the position, if any.
    pub fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    /// The byte at the position, moving past it.
    pub fn next_byte(&mut self) -> Option<u8> {
        let byte = self.peek()?;
        self.at += 1;
        Some(byte)
    }

    /// Whether the byte at the position is `byte`; moves past it if so.
    pub fn take(&mut self, byte: u8) -> bool {
        let found = self.peek() == Some(byte);
        self.at += usize::from(found);
        found
    }

    /// Moves past `word` when the text there spells it.
    pub fn literal(&mut self, word: &str) -> Option<()> {
        let end = self.at + word.len();
        (self.text.as_bytes().get(self.at..end)? == word.as_bytes()).then(|| self.at = end)
    }

    /// A string without escapes or control characters, borrowed without
    /// its quotes.
    pub fn string(&mut self) -> Option<&'a str> {
        if !self.take(b'"') {
            return None;
        }
        let bytes = self.text.as_bytes();
        let end = self.at + first_escape_byte(&bytes[self.at..])?;
        if bytes[end] != b'"' {
            return None;
        }
        // Both ends are ASCII quotes, so on character boundaries.
        let string = self.text.get(self.at..end)?;
        self.at = end + 1;
        Some(string)
    }

    /// A string without a control character (but for one after a `\`,
    /// which the parser refuses): [`JsonString::Plain`] without its quotes
    /// when it holds no escape sequence, else [`JsonString::Escaped`] as
    /// written, quotes and all, for a JSON parser to unescape (which also
    /// judges its escapes: this only skips the byte after each `\`).
    pub fn string_token(&mut self) -> Option<JsonString<'a>> {
        let open = self.at;
        if let Some(plain) = self.string() {
            return Some(JsonString::Plain(plain));
        }
        // Not plain: read it again, past its escapes.
        self.at = open;
        if !self.take(b'"') {
            return None;
        }
        let (bytes, mut from) = (self.text.as_bytes(), self.at);
        loop {
            let end = from + first_escape_byte(bytes.get(from..)?)?;
            match bytes[end] {
                b'"' => {
                    self.at = end + 1;
                    return Some(JsonString::Escaped(self.text.get(open..end + 1)?));
                }
                b'\\' => from = end + 2,
                _ => return None,
            }
        }
    }

    /// An object whose members `member` reads, given each member's name
    /// (the position then at its value).
    pub fn object(
        &mut self,
        mut member: impl FnMut(&mut Self, &'a str) -> Option<()>,
    ) -> Option<()> {
        if !self.take(b'{') {
            return None;
        }
        if self.take(b'}') {
            return Some(());
        }
        loop {
            let name = self.string()?;
            if !self.take(b':') {
                return None;
            }
            member(self, name)?;
            match self.next_byte()? {
                b',' => continue,
                b'}' => return Some(()),
                _ => return None,
            }
        }
    }
}

/// The high bit of each byte of `word` (little-endian) that is `"`, `\` or
/// below 0x20: exact for the lowest such byte, while a borrow may also flag
/// bytes above it.
fn escape_flags(word: u64) -> u64 {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);
    let below = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x;
    let equal = |x: u64, b: u8| below(x ^ (ONES * u64::from(b)), 1);
    (below(word, 0x20) | equal(word, b'"') | equal(word, b'\\')) & HIGHS
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a byte-by-byte look finds.
    fn naive(bytes: &[u8]) -> Option<usize> {
        bytes
            .iter()
            .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
    }

    #[test]
    fn the_first_such_byte_is_found_at_every_place() {
        let plain = "abcdefghijklmnopqrstuvwxé";
        for special in ["\"", "\\", "\u{0}", "\u{1f}", "\n"] {
            for at in (0..=plain.len()).filter(|&at| plain.is_char_boundary(at)) {
                let text = format!("{}{special}{}x\"", &plain[..at], &plain[at..]);
                assert_eq!(first_escape_byte(text.as_bytes()), Some(at), "{text:?}");
            }
        }
        assert_eq!(first_escape_byte(plain.as_bytes()), None);
        assert_eq!(first_escape_byte(b""), None);
        // Just above the control characters, DEL and UTF-8's bytes are not such.
        assert_eq!(first_escape_byte("\u{7f}\u{80} !#[]\"".as_bytes()), Some(8));
    }

    #[test]
    fn a_plain_string_ends_at_its_quote_and_nothing_else_is_one() {
        let mut scan = PlainScan::new(r#""abc"x"#);
        assert_eq!(scan.string(), Some("abc"));
        assert_eq!(scan.next_byte(), Some(b'x'));
        assert!(scan.at_end());
        for text in [r#""a\"b""#, "\"a\nb\"", r#""abc"#, "abc", ""] {
            assert_eq!(PlainScan::new(text).string(), None, "{text:?}");
        }
    }

    #[test]
    fn a_string_with_escapes_ends_at_its_first_unescaped_quote() {
        let text = r#""a\"b\\" : "c\\\"" "\u00e9x"x"#;
        let mut scan = PlainScan::new(text);
        assert_eq!(
            scan.string_token(),
            Some(JsonString::Escaped(r#""a\"b\\""#))
        );
        assert_eq!(scan.next_byte(), Some(b' '));
        scan.literal(": ").unwrap();
        assert_eq!(scan.string_token(), Some(JsonString::Escaped(r#""c\\\"""#)));
        scan.literal(" ").unwrap();
        assert_eq!(
            scan.string_token(),
            Some(JsonString::Escaped(r#""\u00e9x""#))
        );
        assert_eq!(scan.next_byte(), Some(b'x'));
        assert!(scan.at_end());
        let mut plain = PlainScan::new(r#""abc""#);
        assert_eq!(plain.string_token(), Some(JsonString::Plain("abc")));
        // Unterminated (the last quote escaped, or a lone backslash at the
        // end), a control character, or no string.
        for text in [r#""a\""#, r#""a\"#, "\"a\\", "\"a\nb\"", "x"] {
            assert_eq!(PlainScan::new(text).string_token(), None, "{text:?}");
        }
        // What follows a backslash is the parser's to judge.
        let odd = "\"a\\\u{1}\"";
        assert_eq!(
            PlainScan::new(odd).string_token(),
            Some(JsonString::Escaped(odd))
        );
    }

    /// The members of an object of strings that is the whole text.
    fn read(text: &str) -> Option<Vec<(&str, &str)>> {
        let mut scan = PlainScan::new(text);
        let mut members = Vec::new();
        scan.object(|scan, name| {
            members.push((name, scan.string()?));
            Some(())
        })?;
        scan.at_end().then_some(members)
    }

    #[test]
    fn an_object_gives_each_member_its_name_and_refuses_what_is_not_one() {
        assert_eq!(
            read(r#"{"a":"1","a":"2"}"#),
            Some(vec![("a", "1"), ("a", "2")])
        );
        assert_eq!(read("{}"), Some(vec![]));
        for text in [
            r#"{"a":"1",}"#,
            r#"{"a" :"1"}"#,
            r#"{"a":"1""#,
            r#"["a"]"#,
            r#"{"a":1}"#,
        ] {
            assert_eq!(read(text), None, "{text:?}");
        }
    }

    #[test]
    fn every_byte_at_every_offset_is_judged_as_a_byte_loop_judges_it() {
        for b in 0..=u8::MAX {
            for len in 1..=20 {
                for at in 0..len {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = b;
                    assert_eq!(
                        first_escape_byte(&bytes),
                        naive(&bytes),
                        "{b:#x} at {at} of {len}"
                    );
                    // A later special byte never hides an earlier one.
                    bytes.push(b'"');
                    assert_eq!(
                        first_escape_byte(&bytes),
                        naive(&bytes),
                        "{b:#x} at {at}, quote after"
                    );
                }
            }
        }
    }
}
