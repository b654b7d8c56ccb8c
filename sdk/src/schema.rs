//! The JSON Schema (draft 2020-12) of a stream's record.
//!
//! ```
//! use exposure_connector_sdk::schema::{FieldType, RecordSchema};
//!
//! let schema = RecordSchema::new("devices", "Devices of the source.")
//!     .field("id", FieldType::Integer, "The device's id (the key).")
//!     .field("name", FieldType::String, "Its name.")
//!     .field("lastUpdated", FieldType::DateTime, "Last change, RFC 3339 UTC.")
//!     .required("id")
//!     .to_json();
//! assert!(schema.contains("\"format\":\"date-time\""));
//! ```

use serde_json::{json, Map, Value};

/// The JSON type of a record field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    /// A string.
    String,
    /// An RFC 3339 date-time string (`format: date-time`).
    DateTime,
    /// A whole number.
    Integer,
    /// Any number.
    Number,
    /// `true` or `false`.
    Boolean,
    /// An array of records (embedded references).
    Array,
    /// A JSON object.
    Object,
}

impl FieldType {
    fn schema(self, description: &str) -> Value {
        let (ty, format) = match self {
            FieldType::String => ("string", None),
            FieldType::DateTime => ("string", Some("date-time")),
            FieldType::Integer => ("integer", None),
            FieldType::Number => ("number", None),
            FieldType::Boolean => ("boolean", None),
            FieldType::Array => ("array", None),
            FieldType::Object => ("object", None),
        };
        let mut schema = json!({"type": ty, "description": description});
        if let Some(format) = format {
            schema["format"] = json!(format);
        }
        schema
    }
}

/// A record's schema: an object with declared fields and nothing else.
#[derive(Debug, Clone)]
pub struct RecordSchema {
    title: String,
    description: String,
    properties: Map<String, Value>,
    required: Vec<String>,
}

impl RecordSchema {
    /// An empty record schema.
    pub fn new(title: &str, description: &str) -> Self {
        RecordSchema {
            title: title.into(),
            description: description.into(),
            properties: Map::new(),
            required: Vec::new(),
        }
    }

    /// Declares a field (optional unless also [`RecordSchema::required`]).
    pub fn field(mut self, name: &str, ty: FieldType, description: &str) -> Self {
        self.properties.insert(name.into(), ty.schema(description));
        self
    }

    /// Makes a declared field required (the key field always should be).
    pub fn required(mut self, name: &str) -> Self {
        self.required.push(name.into());
        self
    }

    /// The schema as a JSON document, for `stream-info.json-schema`.
    pub fn to_json(&self) -> String {
        json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": self.title,
            "description": self.description,
            "type": "object",
            "properties": self.properties,
            "required": self.required,
            "additionalProperties": false,
        })
        .to_string()
    }
}
