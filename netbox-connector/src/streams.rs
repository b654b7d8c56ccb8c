//! The three streams: what they read, their schemas and references.

use crate::record;
use exposure_connector_sdk::schema::{FieldType, RecordSchema};
use exposure_connector_sdk::types::{ConnectorError, StreamInfo, StreamReference};
use serde_json::Value;

/// One stream.
#[derive(Debug, Clone, Copy)]
pub struct StreamSpec {
    /// Stream name.
    pub name: &'static str,
    /// API endpoint below `/api/`, e.g. `dcim/devices/`.
    pub endpoint: &'static str,
    /// Content type the change log names its objects by, e.g. `dcim.device`.
    pub content_type: &'static str,
    /// What NetBox calls one object, for messages.
    pub noun: &'static str,
    /// NetBox's permission to view them, for messages.
    pub permission: &'static str,
    /// Maps one NetBox object to a record.
    pub map: fn(&Value) -> Result<String, ConnectorError>,
}

/// Every stream, in `info` order.
pub const STREAMS: [StreamSpec; 3] = [
    StreamSpec {
        name: "devices",
        endpoint: "dcim/devices/",
        content_type: "dcim.device",
        noun: "devices",
        permission: "dcim.view_device",
        map: record::device,
    },
    StreamSpec {
        name: "interfaces",
        endpoint: "dcim/interfaces/",
        content_type: "dcim.interface",
        noun: "interfaces",
        permission: "dcim.view_interface",
        map: record::interface,
    },
    StreamSpec {
        name: "ip_addresses",
        endpoint: "ipam/ip-addresses/",
        content_type: "ipam.ipaddress",
        noun: "IP addresses",
        permission: "ipam.view_ipaddress",
        map: record::ip_address,
    },
];

impl StreamSpec {
    /// The stream named `name`.
    pub fn find(name: &str) -> Result<&'static StreamSpec, ConnectorError> {
        STREAMS.iter().find(|s| s.name == name).ok_or_else(|| {
            ConnectorError::InvalidSettings(format!(
                "This connector has no stream `{name}`; its streams are devices, interfaces and ip_addresses."
            ))
        })
    }

    /// The stream's description for `info`.
    pub fn info(&self) -> StreamInfo {
        let (schema, description, references) = match self.name {
            "devices" => (devices_schema(), "Every DCIM device, in id order.", vec![]),
            "interfaces" => (
                interfaces_schema(),
                "Every device interface, with its device's id.",
                vec![reference("deviceId", "devices", "interfaces")],
            ),
            _ => (
                ip_addresses_schema(),
                "Every IPAM IP address, with the device interface it is assigned to.",
                vec![reference("interfaceId", "interfaces", "ipAddresses")],
            ),
        };
        StreamInfo {
            name: self.name.into(),
            description: description.into(),
            key_field: "id".into(),
            json_schema: schema.to_json(),
            supports_incremental: true,
            references,
            updated_field: Some("lastUpdated".into()),
        }
    }
}

fn reference(field: &str, target: &str, embed_as: &str) -> StreamReference {
    StreamReference {
        field: field.into(),
        target_stream: target.into(),
        embed_as: Some(embed_as.into()),
    }
}

fn base(title: &str, description: &str, what: &str) -> RecordSchema {
    RecordSchema::new(title, description)
        .field(
            "id",
            FieldType::Integer,
            &format!("NetBox's id of the {what} (the key)."),
        )
        .field(
            "lastUpdated",
            FieldType::DateTime,
            "When NetBox last changed it (RFC 3339 UTC, seconds).",
        )
        .required("id")
}

fn devices_schema() -> RecordSchema {
    use FieldType::String as Text;
    base("devices", "A NetBox DCIM device.", "device")
        .field(
            "name",
            Text,
            "Its name (NetBox allows devices without one).",
        )
        .field(
            "status",
            Text,
            "Status value: active, planned, staged, failed, offline, ...",
        )
        .field("role", Text, "The device role's name.")
        .field("deviceType", Text, "The device type's model.")
        .field("manufacturer", Text, "The device type's manufacturer.")
        .field(
            "platform",
            Text,
            "The platform's name (the OS, e.g. Junos).",
        )
        .field("site", Text, "The site's name.")
        .field("tenant", Text, "The tenant's name.")
        .field("serial", Text, "Serial number.")
        .field("assetTag", Text, "Asset tag.")
        .field(
            "primaryIp",
            Text,
            "The primary IP address, with its prefix length (e.g. 10.0.0.1/24).",
        )
}

fn interfaces_schema() -> RecordSchema {
    use FieldType::String as Text;
    base("interfaces", "A NetBox device interface.", "interface")
        .field("name", Text, "Its name, e.g. eth0.")
        .field(
            "deviceId",
            FieldType::Integer,
            "Id of its device (a `devices` key).",
        )
        .field("macAddress", Text, "Its primary MAC address.")
        .field("type", Text, "Type value, e.g. 1000base-t.")
        .field("enabled", FieldType::Boolean, "Whether it is enabled.")
        .required("deviceId")
}

fn ip_addresses_schema() -> RecordSchema {
    use FieldType::String as Text;
    base("ip_addresses", "A NetBox IPAM IP address.", "address")
        .field("address", Text, "The address with its prefix length, e.g. 10.0.0.1/24.")
        .field("status", Text, "Status value: active, reserved, deprecated, dhcp, ...")
        .field("dnsName", Text, "Its DNS name.")
        .field(
            "interfaceId",
            FieldType::Integer,
            "Id of the device interface it is assigned to (an `interfaces` key); absent when unassigned or on a virtual machine.",
        )
}
