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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Position {
        after: u64,
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
