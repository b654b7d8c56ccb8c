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
