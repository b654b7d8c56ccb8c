//! Objects as NetBox 4.5's REST API renders them: full representations with
//! nested (brief) related objects, `url`/`display` on every object, `null`
//! for unset references and `""` for empty strings.

use crate::data::{
    Assignment, Database, Device, Interface, IpAddress, Micros, Named, ObjectChange,
};
use serde_json::{json, Value};

/// Renders a timestamp as NetBox does: `2025-06-01T12:34:56.789012Z`.
pub fn timestamp(at: Micros) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(at) * 1000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    ))
    .unwrap_or_default()
}

/// `assigned_object_type` of an address's assignment.
pub fn assigned_type(assigned: Option<Assignment>) -> Option<&'static str> {
    match assigned? {
        Assignment::Interface(_) => Some("dcim.interface"),
        Assignment::VmInterface(_) => Some("virtualization.vminterface"),
    }
}

/// The device interface an address is assigned to, if it is.
pub fn assigned_interface(assigned: Option<Assignment>) -> Option<u64> {
    match assigned? {
        Assignment::Interface(id) => Some(id),
        Assignment::VmInterface(_) => None,
    }
}

/// Where objects live: `http://host:port`, for `url` fields and `next` links.
#[derive(Debug, Clone)]
pub struct Renderer<'a> {
    /// Scheme and authority the client used.
    pub origin: &'a str,
    /// The data.
    pub db: &'a Database,
}

fn brief(origin: &str, path: &str, n: &Named) -> Value {
    json!({
        "id": n.id,
        "url": format!("{origin}/api/{path}/{}/", n.id),
        "display": n.name,
        "name": n.name,
        "slug": n.slug,
        "description": "",
    })
}

fn choice(value: &str) -> Value {
    let mut label: Vec<char> = value.replace(['-', '_'], " ").chars().collect();
    if let Some(first) = label.first_mut() {
        *first = first.to_ascii_uppercase();
    }
    json!({ "value": value, "label": label.into_iter().collect::<String>() })
}

fn family(address: &str) -> Value {
    if address.contains(':') {
        json!({"value": 6, "label": "IPv6"})
    } else {
        json!({"value": 4, "label": "IPv4"})
    }
}

impl Renderer<'_> {
    fn device_display(d: &Device) -> String {
        d.name
            .clone()
            .unwrap_or_else(|| format!("Unnamed device ({})", d.id))
    }

    fn brief_device(&self, id: u64) -> Value {
        let name = self.db.devices.get(&id).and_then(|d| d.name.clone());
        json!({
            "id": id,
            "url": format!("{}/api/dcim/devices/{id}/", self.origin),
            "display": name.clone().unwrap_or_else(|| format!("Unnamed device ({id})")),
            "name": name,
            "description": "",
        })
    }

    fn brief_ip(&self, id: u64) -> Value {
        match self.db.ip_addresses.get(&id) {
            Some(ip) => json!({
                "id": id,
                "url": format!("{}/api/ipam/ip-addresses/{id}/", self.origin),
                "display": ip.address,
                "family": family(&ip.address),
                "address": ip.address,
                "description": "",
            }),
            None => Value::Null,
        }
    }

    /// A device, in full.
    pub fn device(&self, d: &Device) -> Value {
        let o = self.origin;
        let db = self.db;
        let device_type = &db.device_types[d.device_type];
        let mut dt = brief(o, "dcim/device-types", &device_type.model);
        dt["manufacturer"] = brief(
            o,
            "dcim/manufacturers",
            &db.manufacturers[device_type.manufacturer],
        );
        dt["model"] = json!(device_type.model.name);
        let primary = d.primary_ip.map_or(Value::Null, |ip| self.brief_ip(ip));
        let ipv4 = d.primary_ip.filter(|ip| {
            db.ip_addresses
                .get(ip)
                .is_some_and(|a| !a.address.contains(':'))
        });
        json!({
            "id": d.id,
            "url": format!("{o}/api/dcim/devices/{}/", d.id),
            "display_url": format!("{o}/dcim/devices/{}/", d.id),
            "display": Self::device_display(d),
            "name": d.name,
            "device_type": dt,
            "role": brief(o, "dcim/device-roles", &db.roles[d.role]),
            "tenant": d.tenant.map_or(Value::Null, |t| brief(o, "tenancy/tenants", &db.tenants[t])),
            "platform": d.platform.map_or(Value::Null, |p| brief(o, "dcim/platforms", &db.platforms[p])),
            "serial": d.serial,
            "asset_tag": d.asset_tag,
            "site": brief(o, "dcim/sites", &db.sites[d.site]),
            "location": null,
            "rack": null,
            "position": null,
            "face": null,
            "parent_device": null,
            "status": choice(d.status),
            "airflow": null,
            "primary_ip": primary,
            "primary_ip4": if ipv4.is_some() { primary.clone() } else { Value::Null },
            "primary_ip6": if ipv4.is_none() { primary.clone() } else { Value::Null },
            "oob_ip": null,
            "cluster": null,
            "virtual_chassis": null,
            "description": "",
            "comments": "",
            "config_template": null,
            "local_context_data": null,
            "tags": [],
            "custom_fields": {},
            "created": timestamp(d.created),
            "last_updated": timestamp(d.last_updated),
        })
    }

    /// An interface, in full.
    pub fn interface(&self, i: &Interface) -> Value {
        let o = self.origin;
        json!({
            "id": i.id,
            "url": format!("{o}/api/dcim/interfaces/{}/", i.id),
            "display_url": format!("{o}/dcim/interfaces/{}/", i.id),
            "display": i.name,
            "device": self.brief_device(i.device),
            "module": null,
            "name": i.name,
            "label": "",
            "type": choice(i.kind),
            "enabled": i.enabled,
            "parent": null,
            "bridge": null,
            "lag": null,
            "mtu": null,
            "mac_address": i.mac_address,
            "primary_mac_address": i.mac_address.as_ref().map(|m| json!({"mac_address": m})),
            "description": "",
            "mode": null,
            "mgmt_only": false,
            "tags": [],
            "custom_fields": {},
            "created": timestamp(i.created),
            "last_updated": timestamp(i.last_updated),
        })
    }

    /// An IP address, in full.
    pub fn ip_address(&self, a: &IpAddress) -> Value {
        let o = self.origin;
        let kind = json!(assigned_type(a.assigned));
        let (id, object) = match a.assigned {
            Some(Assignment::Interface(id)) => {
                let object = self.db.interfaces.get(&id).map_or(Value::Null, |i| {
                    json!({
                        "id": id,
                        "url": format!("{o}/api/dcim/interfaces/{id}/"),
                        "display": i.name,
                        "device": self.brief_device(i.device),
                        "name": i.name,
                        "description": "",
                    })
                });
                (json!(id), object)
            }
            Some(Assignment::VmInterface(id)) => (
                json!(id),
                json!({
                    "id": id,
                    "url": format!("{o}/api/virtualization/interfaces/{id}/"),
                    "display": "eth0",
                    "name": "eth0",
                    "description": "",
                }),
            ),
            None => (Value::Null, Value::Null),
        };
        json!({
            "id": a.id,
            "url": format!("{o}/api/ipam/ip-addresses/{}/", a.id),
            "display_url": format!("{o}/ipam/ip-addresses/{}/", a.id),
            "display": a.address,
            "family": family(&a.address),
            "address": a.address,
            "vrf": null,
            "tenant": null,
            "status": choice(a.status),
            "role": null,
            "assigned_object_type": kind,
            "assigned_object_id": id,
            "assigned_object": object,
            "nat_inside": null,
            "nat_outside": [],
            "dns_name": a.dns_name,
            "description": "",
            "comments": "",
            "tags": [],
            "custom_fields": {},
            "created": timestamp(a.created),
            "last_updated": timestamp(a.last_updated),
        })
    }

    /// A change-log entry, in full.
    pub fn change(&self, c: &ObjectChange) -> Value {
        let o = self.origin;
        json!({
            "id": c.id,
            "url": format!("{o}/api/core/object-changes/{}/", c.id),
            "display": format!("{} {}", c.object_repr, c.action),
            "time": timestamp(c.time),
            "user": {"id": 1, "display": "admin", "username": "admin"},
            "user_name": "admin",
            "request_id": format!("00000000-0000-4000-8000-{:012x}", c.id),
            "action": choice(c.action),
            "changed_object_type": c.object_type,
            "changed_object_id": c.object_id,
            "changed_object": null,
            "object_repr": c.object_repr,
            "prechange_data": {},
            "postchange_data": null,
        })
    }
}

/// Every device, interface and IP address as the API renders them, by
/// endpoint, for clients' tests to compare with (`--dump-data`).
pub fn dump(db: &Database, origin: &str) -> Value {
    let r = Renderer { origin, db };
    json!({
        "devices": db.devices.values().map(|d| r.device(d)).collect::<Vec<_>>(),
        "interfaces": db.interfaces.values().map(|i| r.interface(i)).collect::<Vec<_>>(),
        "ip_addresses": db.ip_addresses.values().map(|a| r.ip_address(a)).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_have_microseconds_and_a_z() {
        assert_eq!(
            timestamp(1_767_225_600_000_001),
            "2026-01-01T00:00:00.000001Z"
        );
    }

    #[test]
    fn choices_carry_a_value_and_a_label() {
        assert_eq!(choice("1000base-t")["label"], "1000base t");
        assert_eq!(
            choice("active"),
            json!({"value": "active", "label": "Active"})
        );
    }
}
