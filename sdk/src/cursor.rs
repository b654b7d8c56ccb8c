//! Opaque cursors: a connector's own serde type, written as compact JSON.
//!
//! The host stores the text and hands it back unchanged; only the connector
//! reads it. A cursor the connector cannot read (another version, a
//! corrupted store) is an `invalid-settings` error telling the operator to
//! start the stream over.

use crate::types::ConnectorError;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Writes a cursor.
pub fn encode<T: Serialize>(cursor: &T) -> String {
    // A derived `Serialize` of plain data cannot fail; fall back to an empty
    // object rather than panic inside a component.
    serde_json::to_string(cursor).unwrap_or_else(|_| "{}".into())
}

/// Reads a cursor this connector wrote.
pub fn decode<T: DeserializeOwned>(text: &str) -> Result<T, ConnectorError> {
    serde_json::from_str(text).map_err(|e| {
        ConnectorError::InvalidSettings(format!(
            "The stored cursor is not one this connector wrote ({e}); reset the stream's state and run a full sync."
        ))
    })
}

/// Checks the watermarks the host hands back (`watermark` and
/// `deletions-since`) with `valid`, the connector's own format test;
/// `format` describes that format in the error, which tells the operator to
/// run a full sync.
pub fn check_watermarks(
    request: &crate::types::ReadRequest,
    valid: impl Fn(&str) -> bool,
    format: &str,
) -> Result<(), ConnectorError> {
    for (what, value) in [
        ("watermark", &request.watermark),
        ("deletions-since watermark", &request.deletions_since),
    ] {
        if let Some(value) = value.as_deref().filter(|v| !valid(v)) {
            return Err(ConnectorError::InvalidSettings(format!(
                "The stored {what} `{value}` is not {format}; run a full sync to replace it."
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Position {
        after: u64,
    }

    #[test]
    fn watermarks_of_another_format_ask_for_a_full_sync() {
        let mut request = crate::types::ReadRequest {
            stream_name: "s".into(),
            partition: crate::types::Partition { index: 0, count: 1 },
            cursor: None,
            watermark: Some("2026".into()),
            deletions_since: None,
            page_size: 1,
        };
        let digits = |v: &str| v.bytes().all(|b| b.is_ascii_digit());
        assert!(check_watermarks(&request, digits, "digits").is_ok());
        request.deletions_since = Some("x".into());
        let e = check_watermarks(&request, digits, "digits").unwrap_err();
        assert!(
            e.message()
                .contains("deletions-since watermark `x` is not digits; run a full sync"),
            "{e:?}"
        );
    }

    #[test]
    fn round_trips_and_refuses_foreign_text() {
        let text = encode(&Position { after: 7 });
        assert_eq!(text, r#"{"after":7}"#);
        assert_eq!(decode::<Position>(&text).unwrap(), Position { after: 7 });
        assert!(matches!(
            decode::<Position>("nope"),
            Err(ConnectorError::InvalidSettings(m)) if m.contains("full sync")
        ));
    }
}
