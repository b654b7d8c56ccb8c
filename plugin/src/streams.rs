//! The streams the connector offers and how each source column maps to a record field.

use crate::json_object::JsonKey;
use crate::settings::Settings;
use exposure_connector_sdk::types::{StreamInfo, StreamReference};

/// How a source value (always a string in the Table API) becomes a JSON value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// A string, kept as is (reference fields contribute their sys_id).
    Text,
    /// `"true"`/`"false"` (also `"1"`/`"0"`) become a JSON boolean.
    Boolean,
    /// `YYYY-MM-DD HH:MM:SS` (UTC) becomes RFC 3339 `YYYY-MM-DDTHH:MM:SSZ`.
    Timestamp,
}

/// One record field and the source column it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldMap {
    /// Record field name (camelCase).
    pub field: &'static str,
    /// The field's name as it opens its member of a record: `"field":`.
    pub key: JsonKey,
    /// ServiceNow column name.
    pub column: String,
    /// Conversion.
    pub kind: FieldKind,
    /// JSON Schema description.
    pub description: &'static str,
}

/// A stream: its table, its columns and its place among the other streams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSpec {
    /// Stream name.
    pub name: &'static str,
    /// Source table.
    pub table: String,
    /// Description.
    pub description: &'static str,
    /// Fields in record order; the first is the key (`sysId` ← `sys_id`).
    pub fields: Vec<FieldMap>,
    /// References to other streams.
    pub references: Vec<StreamReference>,
    /// Record field holding `sys_updated_on`, when the stream maps it.
    pub updated_field: Option<&'static str>,
    /// Encoded-query condition selecting this stream's deletions in
    /// `sys_audit_delete` (by the deleted record's table).
    pub audit_tables: String,
    /// Whether `active_within_days` applies to this stream.
    pub retention: bool,
}

/// Name of the devices stream.
pub const DEVICES: &str = "devices";
/// Name of the network adapters stream.
pub const NETWORK_ADAPTERS: &str = "network_adapters";
/// Name of the business applications stream.
pub const BUSINESS_APPLICATIONS: &str = "business_applications";

/// Every stream's key: `sysId` ← `sys_id`.
fn sys_id_key() -> FieldMap {
    field(
        "sysId",
        "sys_id",
        FieldKind::Text,
        "ServiceNow sys_id (32 hex characters).",
    )
}

fn field(
    field: &'static str,
    column: &str,
    kind: FieldKind,
    description: &'static str,
) -> FieldMap {
    FieldMap::new(field, column, kind, description)
}

impl FieldMap {
    /// The record field `field`, read from the source column `column`.
    pub fn new(
        field: &'static str,
        column: &str,
        kind: FieldKind,
        description: &'static str,
    ) -> FieldMap {
        FieldMap {
            field,
            key: JsonKey::new(field),
            column: column.to_string(),
            kind,
            description,
        }
    }
}

impl StreamSpec {
    /// All streams, with the column mapping the settings choose.
    pub fn all(s: &Settings) -> Vec<StreamSpec> {
        vec![
            Self::devices(s),
            Self::network_adapters(),
            Self::business_applications(s),
        ]
    }

    /// `devices` ← `device_table` and its subclasses.
    fn devices(s: &Settings) -> StreamSpec {
        use FieldKind::*;
        StreamSpec {
            name: DEVICES,
            table: s.device_table.clone(),
            description: "Computers from the CMDB (servers, PCs and the other subclasses of the device table).",
            fields: vec![
                sys_id_key(),
                field("name", "name", Text, "Device name."),
                field("os", "os", Text, "Operating system."),
                field("osVersion", "os_version", Text, "Operating system version."),
                field("osServicePack", "os_service_pack", Text, "Operating system service pack."),
                field("cpuType", "cpu_type", Text, "CPU type."),
                field("category", "category", Text, "CMDB category."),
                field("assetTag", "asset_tag", Text, "Asset tag."),
                field("virtual", "virtual", Boolean, "Whether the device is virtual."),
                field("serviceNowCriticality", &s.device_criticality_column, Text, "Criticality of the device."),
                field("usedFor", "used_for", Text, "What the device is used for (Production, Development, ...)."),
                field("lastLoggedOnUser", &s.device_last_logged_on_user_column, Text, "Last logged-on user."),
                field("mostFrequentUser", &s.device_most_frequent_user_column, Text, "Most frequent user."),
                field("sysClassName", "sys_class_name", Text, "The device's CMDB class, e.g. cmdb_ci_linux_server."),
                field("uPrimaryBusinessApplication", &s.device_primary_business_application_column, Text, "sys_id of the business application the device serves."),
                field("sysUpdatedOn", "sys_updated_on", Timestamp, "Last update in ServiceNow (RFC 3339, UTC)."),
            ],
            references: vec![StreamReference {
                field: "uPrimaryBusinessApplication".into(),
                target_stream: BUSINESS_APPLICATIONS.into(),
                embed_as: None,
            }],
            updated_field: Some("sysUpdatedOn"),
            // A deleted device is audited under its own class
            // (cmdb_ci_linux_server, ...): take every CMDB class; keys
            // of other classes match no stored device.
            audit_tables: format!("tablenameSTARTSWITHcmdb_ci^ORtablename={}", s.device_table),
            retention: true,
        }
    }

    /// `network_adapters` ← `cmdb_ci_network_adapter`, embedded into devices.
    fn network_adapters() -> StreamSpec {
        use FieldKind::*;
        StreamSpec {
            name: NETWORK_ADAPTERS,
            table: "cmdb_ci_network_adapter".into(),
            description: "Network adapters of CMDB devices, with their addresses.",
            fields: vec![
                sys_id_key(),
                field("name", "name", Text, "Adapter name."),
                field("macAddress", "mac_address", Text, "MAC address."),
                field("ipAddress", "ip_address", Text, "IP address."),
                field(
                    "ipDefaultGateway",
                    "ip_default_gateway",
                    Text,
                    "IP address of the default gateway.",
                ),
                field(
                    "deviceSysId",
                    "cmdb_ci",
                    Text,
                    "sys_id of the device the adapter belongs to.",
                ),
            ],
            references: vec![StreamReference {
                field: "deviceSysId".into(),
                target_stream: DEVICES.into(),
                embed_as: Some("networkAdapters".into()),
            }],
            updated_field: None,
            audit_tables: "tablename=cmdb_ci_network_adapter".into(),
            retention: false,
        }
    }

    /// `business_applications` ← `cmdb_ci_business_app`.
    fn business_applications(s: &Settings) -> StreamSpec {
        use FieldKind::*;
        StreamSpec {
            name: BUSINESS_APPLICATIONS,
            table: "cmdb_ci_business_app".into(),
            description: "Business applications and how critical they are to the business.",
            fields: vec![
                sys_id_key(),
                field(
                    "number",
                    "number",
                    Text,
                    "Business application number, e.g. APM0001001.",
                ),
                field("name", "name", Text, "Business application name."),
                field(
                    "uCriticality",
                    &s.business_application_criticality_column,
                    Text,
                    "Criticality (customer-specific column).",
                ),
                field(
                    "businessCriticality",
                    "business_criticality",
                    Text,
                    "Business criticality.",
                ),
            ],
            references: vec![],
            updated_field: None,
            audit_tables: "tablename=cmdb_ci_business_app".into(),
            retention: false,
        }
    }

    /// Finds a stream by name.
    pub fn find(s: &Settings, name: &str) -> Option<StreamSpec> {
        Self::all(s).into_iter().find(|spec| spec.name == name)
    }

    /// Comma-separated source columns for `sysparm_fields`.
    pub fn sysparm_fields(&self) -> String {
        let mut columns: Vec<&str> = Vec::with_capacity(self.fields.len());
        for f in &self.fields {
            if !columns.contains(&f.column.as_str()) {
                columns.push(&f.column);
            }
        }
        columns.join(",")
    }

    /// JSON Schema of one record.
    pub fn json_schema(&self) -> String {
        let mut properties = serde_json::Map::new();
        for f in &self.fields {
            let schema = match f.kind {
                FieldKind::Text => {
                    serde_json::json!({"type": "string", "description": f.description})
                }
                FieldKind::Boolean => {
                    serde_json::json!({"type": "boolean", "description": f.description})
                }
                FieldKind::Timestamp => {
                    serde_json::json!({"type": "string", "format": "date-time", "description": f.description})
                }
            };
            properties.insert(f.field.to_string(), schema);
        }
        serde_json::json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": self.name,
            "description": self.description,
            "type": "object",
            "properties": properties,
            "required": ["sysId"],
            "additionalProperties": false,
        })
        .to_string()
    }

    /// The stream as declared in `info`.
    pub fn info(&self) -> StreamInfo {
        StreamInfo {
            name: self.name.to_string(),
            description: self.description.to_string(),
            key_field: "sysId".to_string(),
            json_schema: self.json_schema(),
            supports_incremental: true,
            references: self.references.clone(),
            updated_field: self.updated_field.map(str::to_string),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings::parse(&[("instance".into(), "x.service-now.com".into())]).unwrap()
    }

    #[test]
    fn device_fields_follow_settings() {
        let mut s = settings();
        s.device_criticality_column = "u_crit".into();
        let d = StreamSpec::find(&s, DEVICES).unwrap();
        assert!(d.sysparm_fields().contains("u_crit"));
        assert!(d.sysparm_fields().starts_with("sys_id,name,os,os_version"));
        let schema: serde_json::Value = serde_json::from_str(&d.json_schema()).unwrap();
        assert_eq!(schema["properties"]["virtual"]["type"], "boolean");
    }

    #[test]
    fn duplicate_columns_requested_once() {
        let mut s = settings();
        s.device_last_logged_on_user_column = "assigned_to".into();
        s.device_most_frequent_user_column = "assigned_to".into();
        let d = StreamSpec::find(&s, DEVICES).unwrap();
        assert_eq!(d.sysparm_fields().matches("assigned_to").count(), 1);
    }
}
