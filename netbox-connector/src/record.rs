//! NetBox objects to records: the fields each stream keeps, from where in
//! NetBox's JSON. A field is absent when NetBox has `null` or `""` there.

use exposure_connector_sdk::types::ConnectorError;
use serde_json::{Map, Value};

/// The value at `path` (object keys) in `object`, if it is there.
pub fn at<'v>(object: &'v Value, path: &[&str]) -> Option<&'v Value> {
    path.iter().try_fold(object, |v, key| v.get(key))
}

/// The non-empty text at `path`.
fn text<'v>(object: &'v Value, path: &[&str]) -> Option<&'v str> {
    at(object, path)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// A NetBox timestamp (`2025-06-01T12:34:56.789012Z`, or with an offset
/// where NetBox's TIME_ZONE is not UTC) as RFC 3339 UTC, in seconds.
pub fn to_utc_seconds(value: &str) -> Option<String> {
    use time::format_description::well_known::Rfc3339;
    let t = time::OffsetDateTime::parse(value, &Rfc3339).ok()?;
    t.to_offset(time::UtcOffset::UTC)
        .format(time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
        ))
        .ok()
}

/// Builds one record.
struct Record(Map<String, Value>);

impl Record {
    fn new(id: u64) -> Record {
        let mut fields = Map::new();
        fields.insert("id".into(), Value::from(id));
        Record(fields)
    }

    fn text(&mut self, field: &str, value: Option<&str>) -> &mut Record {
        if let Some(value) = value {
            self.0.insert(field.into(), Value::from(value));
        }
        self
    }

    fn number(&mut self, field: &str, value: Option<u64>) -> &mut Record {
        if let Some(value) = value {
            self.0.insert(field.into(), Value::from(value));
        }
        self
    }

    fn boolean(&mut self, field: &str, value: Option<bool>) -> &mut Record {
        if let Some(value) = value {
            self.0.insert(field.into(), Value::from(value));
        }
        self
    }

    fn updated(&mut self, object: &Value) -> &mut Record {
        let updated = text(object, &["last_updated"]).and_then(to_utc_seconds);
        self.text("lastUpdated", updated.as_deref())
    }

    fn json(&mut self) -> String {
        Value::Object(std::mem::take(&mut self.0)).to_string()
    }
}

/// The id of a NetBox object, which every object has.
pub fn id_of(object: &Value, what: &str) -> Result<u64, ConnectorError> {
    object.get("id").and_then(Value::as_u64).ok_or_else(|| {
        ConnectorError::BadResponse(format!(
            "NetBox returned {what} without an integer `id`; the response cannot be used."
        ))
    })
}

/// A device record.
pub fn device(object: &Value) -> Result<String, ConnectorError> {
    let mut r = Record::new(id_of(object, "a device")?);
    // `role` since NetBox 4.0; `device_role` before.
    let role = text(object, &["role", "name"]).or(text(object, &["device_role", "name"]));
    r.text("name", text(object, &["name"]))
        .text("status", text(object, &["status", "value"]))
        .text("role", role)
        .text("deviceType", text(object, &["device_type", "model"]))
        .text(
            "manufacturer",
            text(object, &["device_type", "manufacturer", "name"]),
        )
        .text("platform", text(object, &["platform", "name"]))
        .text("site", text(object, &["site", "name"]))
        .text("tenant", text(object, &["tenant", "name"]))
        .text("serial", text(object, &["serial"]))
        .text("assetTag", text(object, &["asset_tag"]))
        .text("primaryIp", text(object, &["primary_ip", "address"]))
        .updated(object);
    Ok(r.json())
}

/// An interface record.
pub fn interface(object: &Value) -> Result<String, ConnectorError> {
    let mut r = Record::new(id_of(object, "an interface")?);
    r.text("name", text(object, &["name"]))
        .number(
            "deviceId",
            at(object, &["device", "id"]).and_then(Value::as_u64),
        )
        .text("macAddress", text(object, &["mac_address"]))
        .text("type", text(object, &["type", "value"]))
        .boolean("enabled", object.get("enabled").and_then(Value::as_bool))
        .updated(object);
    Ok(r.json())
}

/// An IP address record; `interfaceId` only for an address assigned to a
/// device interface (not to a virtual machine's).
pub fn ip_address(object: &Value) -> Result<String, ConnectorError> {
    let mut r = Record::new(id_of(object, "an IP address")?);
    let interface = (text(object, &["assigned_object_type"]) == Some("dcim.interface"))
        .then(|| object.get("assigned_object_id").and_then(Value::as_u64))
        .flatten();
    r.text("address", text(object, &["address"]))
        .text("status", text(object, &["status", "value"]))
        .text("dnsName", text(object, &["dns_name"]))
        .number("interfaceId", interface)
        .updated(object);
    Ok(r.json())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_device_keeps_nested_names_and_drops_nulls_and_empty_strings() {
        let object = json!({
            "id": 7, "name": "edge-1", "status": {"value": "active", "label": "Active"},
            "role": {"name": "Router"}, "device_type": {"model": "MX204", "manufacturer": {"name": "Juniper"}},
            "platform": null, "site": {"name": "site-001"}, "tenant": null, "serial": "",
            "asset_tag": "AT-7", "primary_ip": {"address": "10.0.0.1/24"},
            "last_updated": "2025-06-01T14:34:56.789012+02:00",
        });
        let record: Value = serde_json::from_str(&device(&object).unwrap()).unwrap();
        assert_eq!(
            record,
            json!({"id": 7, "name": "edge-1", "status": "active", "role": "Router",
                   "deviceType": "MX204", "manufacturer": "Juniper", "site": "site-001",
                   "assetTag": "AT-7", "primaryIp": "10.0.0.1/24",
                   "lastUpdated": "2025-06-01T12:34:56Z"})
        );
        let old = json!({"id": 8, "device_role": {"name": "Switch"}});
        assert!(device(&old).unwrap().contains(r#""role":"Switch""#));
        assert!(device(&json!({"name": "x"})).is_err());
    }

    #[test]
    fn only_device_interfaces_become_interface_ids() {
        let on_device = json!({"id": 1, "assigned_object_type": "dcim.interface", "assigned_object_id": 5, "dns_name": ""});
        let on_vm = json!({"id": 2, "assigned_object_type": "virtualization.vminterface", "assigned_object_id": 5});
        let parsed = |s: String| serde_json::from_str::<Value>(&s).unwrap();
        assert_eq!(
            parsed(ip_address(&on_device).unwrap()),
            json!({"id": 1, "interfaceId": 5})
        );
        assert_eq!(parsed(ip_address(&on_vm).unwrap()), json!({"id": 2}));
        let i = json!({"id": 3, "device": {"id": 9}, "enabled": false, "mac_address": null, "type": {"value": "virtual"}});
        assert_eq!(
            parsed(interface(&i).unwrap()),
            json!({"id": 3, "deviceId": 9, "type": "virtual", "enabled": false})
        );
    }
}
