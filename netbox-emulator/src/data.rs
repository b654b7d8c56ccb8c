//! The objects the emulator serves and the deterministic data set it
//! generates: sites, manufacturers, device types, roles, platforms and
//! tenants (referenced by devices), devices, their interfaces, IP addresses
//! (most assigned to an interface), and the change log.
//!
//! Objects are kept in `BTreeMap`s by id, the order keyset readers ask for.
//! Ids are sparse, as in a NetBox that has seen deletions: some ids are
//! skipped.

use std::collections::BTreeMap;

/// A NetBox timestamp: microseconds since the Unix epoch, UTC.
pub type Micros = i64;

/// One of the small objects devices refer to (site, role, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    /// NetBox id.
    pub id: u64,
    /// Display name.
    pub name: String,
    /// URL-safe name, what filters such as `site=` take.
    pub slug: String,
}

impl Named {
    fn new(id: u64, name: &str) -> Named {
        Named {
            id,
            name: name.to_string(),
            slug: name.to_lowercase().replace([' ', '.'], "-"),
        }
    }
}

/// A device type: a model of a manufacturer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceType {
    /// The model and its slug.
    pub model: Named,
    /// Index into [`Database::manufacturers`].
    pub manufacturer: usize,
}

/// A DCIM device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// NetBox id.
    pub id: u64,
    /// Name; NetBox allows devices without one.
    pub name: Option<String>,
    /// Status value (`active`, `planned`, ...).
    pub status: &'static str,
    /// Index into [`Database::roles`].
    pub role: usize,
    /// Index into [`Database::device_types`].
    pub device_type: usize,
    /// Index into [`Database::platforms`].
    pub platform: Option<usize>,
    /// Index into [`Database::sites`].
    pub site: usize,
    /// Index into [`Database::tenants`].
    pub tenant: Option<usize>,
    /// Serial number ("" when unknown, as NetBox stores it).
    pub serial: String,
    /// Asset tag (unique when set).
    pub asset_tag: Option<String>,
    /// Id of the primary IP address.
    pub primary_ip: Option<u64>,
    /// Creation time.
    pub created: Micros,
    /// Last change.
    pub last_updated: Micros,
}

/// A device's interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// NetBox id.
    pub id: u64,
    /// Id of the device it belongs to.
    pub device: u64,
    /// Interface name, e.g. `eth0`.
    pub name: String,
    /// Type value, e.g. `1000base-t`.
    pub kind: &'static str,
    /// Whether it is enabled.
    pub enabled: bool,
    /// Primary MAC address, upper-case as NetBox renders it.
    pub mac_address: Option<String>,
    /// Creation time.
    pub created: Micros,
    /// Last change.
    pub last_updated: Micros,
}

/// What an IP address is assigned to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assignment {
    /// A device interface (`dcim.interface`), by id.
    Interface(u64),
    /// A virtual machine's interface (`virtualization.vminterface`), by id.
    VmInterface(u64),
}

/// An IPAM IP address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpAddress {
    /// NetBox id.
    pub id: u64,
    /// Address with prefix length, e.g. `10.1.2.3/24`.
    pub address: String,
    /// Status value (`active`, `reserved`, ...).
    pub status: &'static str,
    /// DNS name ("" when none).
    pub dns_name: String,
    /// What it is assigned to, if anything.
    pub assigned: Option<Assignment>,
    /// Creation time.
    pub created: Micros,
    /// Last change.
    pub last_updated: Micros,
}

/// One entry of the change log (`core.ObjectChange`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectChange {
    /// NetBox id.
    pub id: u64,
    /// When the change was made.
    pub time: Micros,
    /// `create`, `update` or `delete`.
    pub action: &'static str,
    /// Content type of the changed object, e.g. `dcim.device`.
    pub object_type: &'static str,
    /// Id of the changed object.
    pub object_id: u64,
    /// How the object was displayed.
    pub object_repr: String,
}

/// Content types of the three kinds of object the emulator serves.
pub const DEVICE_TYPE: &str = "dcim.device";
/// Content type of interfaces.
pub const INTERFACE_TYPE: &str = "dcim.interface";
/// Content type of IP addresses.
pub const IP_ADDRESS_TYPE: &str = "ipam.ipaddress";

/// Everything the emulator serves.
#[derive(Debug, Clone, Default)]
pub struct Database {
    /// Sites.
    pub sites: Vec<Named>,
    /// Manufacturers.
    pub manufacturers: Vec<Named>,
    /// Device types.
    pub device_types: Vec<DeviceType>,
    /// Device roles.
    pub roles: Vec<Named>,
    /// Platforms.
    pub platforms: Vec<Named>,
    /// Tenants.
    pub tenants: Vec<Named>,
    /// Devices by id.
    pub devices: BTreeMap<u64, Device>,
    /// Interfaces by id.
    pub interfaces: BTreeMap<u64, Interface>,
    /// IP addresses by id.
    pub ip_addresses: BTreeMap<u64, IpAddress>,
    /// The change log by id.
    pub changes: BTreeMap<u64, ObjectChange>,
    /// The next id of each kind of object.
    next_ids: NextIds,
}

#[derive(Debug, Clone, Default)]
struct NextIds {
    device: u64,
    interface: u64,
    ip_address: u64,
    change: u64,
}

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataSpec {
    /// Number of devices.
    pub devices: usize,
    /// Seed; the same seed gives the same data.
    pub seed: u64,
}

/// The data's random source: SplitMix64 (`rand_xoshiro`), whose output is
/// fixed by its algorithm, so the same seed gives the same data with any
/// version of the crate.
#[derive(Debug, Clone)]
pub struct Rng(rand_xoshiro::SplitMix64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Rng {
        use rand_core::SeedableRng as _;
        Rng(rand_xoshiro::SplitMix64::seed_from_u64(seed))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        use rand_core::RngCore as _;
        self.0.next_u64()
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// One element of a non-empty slice.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

/// 2026-01-01T00:00:00Z: generated objects were last changed in the year before.
const EPOCH_2026: Micros = 1_767_225_600_000_000;
const YEAR_MICROS: i64 = 365 * 24 * 3600 * 1_000_000;

const DEVICE_STATUSES: &[&str] = &[
    "active", "active", "active", "active", "planned", "staged", "offline", "failed",
];
const INTERFACE_TYPES: &[&str] = &["1000base-t", "10gbase-x-sfpp", "25gbase-x-sfp28", "virtual"];
const IP_STATUSES: &[&str] = &[
    "active",
    "active",
    "active",
    "reserved",
    "deprecated",
    "dhcp",
];

fn named(names: &[&str]) -> Vec<Named> {
    names
        .iter()
        .enumerate()
        .map(|(i, n)| Named::new(i as u64 + 1, n))
        .collect()
}

/// The fixed reference objects: a realistic spread of vendors and roles.
fn reference_objects(db: &mut Database, devices: usize) {
    let sites = (devices / 200).clamp(1, 500);
    db.sites = (0..sites)
        .map(|i| Named::new(i as u64 + 1, &format!("site-{:03}", i + 1)))
        .collect();
    db.manufacturers = named(&[
        "Cisco",
        "Juniper",
        "Arista",
        "Dell",
        "HPE",
        "Palo Alto Networks",
    ]);
    let models: &[(&str, usize)] = &[
        ("ISR4331", 0),
        ("Catalyst 9300", 0),
        ("MX204", 1),
        ("EX4300", 1),
        ("DCS-7050SX3", 2),
        ("PowerEdge R750", 3),
        ("ProLiant DL380 Gen10", 4),
        ("PA-3220", 5),
    ];
    db.device_types = models
        .iter()
        .enumerate()
        .map(|(i, (model, manufacturer))| DeviceType {
            model: Named::new(i as u64 + 1, model),
            manufacturer: *manufacturer,
        })
        .collect();
    db.roles = named(&["Router", "Switch", "Firewall", "Server", "Load Balancer"]);
    db.platforms = named(&["IOS XE", "Junos", "EOS", "Ubuntu 24.04", "PAN-OS"]);
    db.tenants = named(&["Finance", "Engineering", "Retail"]);
}

/// Generates `spec.devices` devices with their interfaces and addresses.
pub fn generate(spec: DataSpec) -> Database {
    let mut db = Database::default();
    reference_objects(&mut db, spec.devices);
    db.next_ids = NextIds {
        device: 1,
        interface: 1,
        ip_address: 1,
        change: 1,
    };
    let mut rng = Rng::new(spec.seed);
    for _ in 0..spec.devices {
        // About one id in ten was used by an object since deleted.
        if rng.chance(10) {
            db.next_ids.device += 1;
        }
        db.add_device(&mut rng, None);
    }
    // Addresses on virtual machines' interfaces, and unassigned ones.
    for i in 0..spec.devices / 10 {
        let assigned = (i % 2 == 0).then_some(Assignment::VmInterface(i as u64 + 1));
        let at = EPOCH_2026 - rng.below(YEAR_MICROS as u64) as i64;
        db.add_ip_address(&mut rng, assigned, at);
    }
    db
}

impl Database {
    /// Adds a device with one to three interfaces, most with an address;
    /// `at` is its creation time (a random time in 2025 when `None`).
    /// Returns the device's id.
    pub fn add_device(&mut self, rng: &mut Rng, at: Option<Micros>) -> u64 {
        let created = at.unwrap_or_else(|| EPOCH_2026 - rng.below(YEAR_MICROS as u64) as i64);
        let id = self.next_ids.device;
        self.next_ids.device += 1;
        let device_type = rng.below(self.device_types.len() as u64) as usize;
        let device = Device {
            id,
            name: (!rng.chance(3)).then(|| format!("dev-{id:06}")),
            status: rng.pick(DEVICE_STATUSES),
            role: rng.below(self.roles.len() as u64) as usize,
            device_type,
            platform: (!rng.chance(20)).then(|| rng.below(self.platforms.len() as u64) as usize),
            site: rng.below(self.sites.len() as u64) as usize,
            tenant: (!rng.chance(40)).then(|| rng.below(self.tenants.len() as u64) as usize),
            serial: if rng.chance(15) {
                String::new()
            } else {
                format!("SN{:010X}", rng.below(1 << 40))
            },
            asset_tag: rng.chance(50).then(|| format!("AT-{id:07}")),
            primary_ip: None,
            created,
            last_updated: created,
        };
        self.devices.insert(id, device);
        let interfaces = 1 + rng.below(3);
        for n in 0..interfaces {
            let interface = self.add_interface(rng, id, n, created);
            if rng.chance(80) {
                let ip = self.add_ip_address(rng, Some(Assignment::Interface(interface)), created);
                if n == 0 && rng.chance(90) {
                    if let Some(d) = self.devices.get_mut(&id) {
                        d.primary_ip = Some(ip);
                    }
                }
            }
        }
        id
    }

    fn add_interface(&mut self, rng: &mut Rng, device: u64, n: u64, at: Micros) -> u64 {
        let id = self.next_ids.interface;
        self.next_ids.interface += 1;
        let mac = rng.next_u64();
        self.interfaces.insert(
            id,
            Interface {
                id,
                device,
                name: format!("eth{n}"),
                kind: rng.pick(INTERFACE_TYPES),
                enabled: !rng.chance(10),
                mac_address: (!rng.chance(10)).then(|| {
                    let b = mac.to_be_bytes();
                    format!(
                        "{:02X}:{:02X}:{:02X}:{:02X}:{:02X}:{:02X}",
                        b[0] & 0xFE,
                        b[1],
                        b[2],
                        b[3],
                        b[4],
                        b[5]
                    )
                }),
                created: at,
                last_updated: at,
            },
        );
        id
    }

    fn add_ip_address(&mut self, rng: &mut Rng, assigned: Option<Assignment>, at: Micros) -> u64 {
        let id = self.next_ids.ip_address;
        self.next_ids.ip_address += 1;
        let address = if rng.chance(15) {
            format!("2001:db8:{:x}::{:x}/64", id >> 16, id & 0xFFFF)
        } else {
            format!(
                "10.{}.{}.{}/16",
                (id >> 16) & 0xFF,
                (id >> 8) & 0xFF,
                id & 0xFF
            )
        };
        self.ip_addresses.insert(
            id,
            IpAddress {
                id,
                address,
                status: rng.pick(IP_STATUSES),
                dns_name: if rng.chance(60) {
                    format!("host-{id}.example.net")
                } else {
                    String::new()
                },
                assigned,
                created: at,
                last_updated: at,
            },
        );
        id
    }

    /// Records a change in the log.
    pub fn log_change(
        &mut self,
        at: Micros,
        action: &'static str,
        object_type: &'static str,
        object_id: u64,
        object_repr: String,
    ) {
        let id = self.next_ids.change;
        self.next_ids.change += 1;
        self.changes.insert(
            id,
            ObjectChange {
                id,
                time: at,
                action,
                object_type,
                object_id,
                object_repr,
            },
        );
    }

    /// Changes a device's serial and moves its `last_updated` to `at`.
    /// False when there is no such device.
    pub fn update_device(&mut self, id: u64, at: Micros) -> bool {
        let Some(device) = self.devices.get_mut(&id) else {
            return false;
        };
        device.serial = format!("SN-CHANGED-{at}");
        device.last_updated = at;
        let repr = device
            .name
            .clone()
            .unwrap_or_else(|| format!("Device {id}"));
        self.log_change(at, "update", DEVICE_TYPE, id, repr);
        true
    }

    /// Deletes a device as NetBox does: its interfaces, and the addresses
    /// assigned to them, go with it; each deletion is logged. False when
    /// there is no such device.
    pub fn delete_device(&mut self, id: u64, at: Micros) -> bool {
        let Some(device) = self.devices.remove(&id) else {
            return false;
        };
        let interfaces: Vec<u64> = self
            .interfaces
            .values()
            .filter(|i| i.device == id)
            .map(|i| i.id)
            .collect();
        for interface in interfaces {
            let addresses: Vec<u64> = self
                .ip_addresses
                .values()
                .filter(|a| a.assigned == Some(Assignment::Interface(interface)))
                .map(|a| a.id)
                .collect();
            for address in addresses {
                if let Some(a) = self.ip_addresses.remove(&address) {
                    self.log_change(at, "delete", IP_ADDRESS_TYPE, address, a.address);
                }
            }
            if let Some(i) = self.interfaces.remove(&interface) {
                self.log_change(at, "delete", INTERFACE_TYPE, interface, i.name);
            }
        }
        let repr = device.name.unwrap_or_else(|| format!("Device {id}"));
        self.log_change(at, "delete", DEVICE_TYPE, id, repr);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_data_and_ids_are_sparse() {
        let a = generate(DataSpec {
            devices: 500,
            seed: 3,
        });
        let b = generate(DataSpec {
            devices: 500,
            seed: 3,
        });
        assert_eq!(a.devices, b.devices);
        assert_eq!(a.ip_addresses, b.ip_addresses);
        assert_eq!(a.devices.len(), 500);
        let last = *a.devices.keys().last().unwrap();
        assert!(last > 500, "no id was skipped: {last}");
        assert!(a.interfaces.len() >= 500 && a.interfaces.len() <= 1500);
        assert!(a.devices.values().any(|d| d.name.is_none()));
        assert!(a
            .ip_addresses
            .values()
            .any(|ip| matches!(ip.assigned, Some(Assignment::VmInterface(_)))));
    }

    #[test]
    fn deleting_a_device_deletes_its_interfaces_and_their_addresses_and_logs_each() {
        let mut db = generate(DataSpec {
            devices: 20,
            seed: 1,
        });
        let id = *db.devices.keys().next().unwrap();
        let interfaces: Vec<u64> = db
            .interfaces
            .values()
            .filter(|i| i.device == id)
            .map(|i| i.id)
            .collect();
        assert!(db.delete_device(id, EPOCH_2026));
        assert!(!db.delete_device(id, EPOCH_2026));
        assert!(db.interfaces.values().all(|i| i.device != id));
        assert!(db.ip_addresses.values().all(|a| !interfaces
            .iter()
            .any(|i| a.assigned == Some(Assignment::Interface(*i)))));
        let logged: Vec<&str> = db.changes.values().map(|c| c.object_type).collect();
        assert_eq!(logged.last(), Some(&DEVICE_TYPE));
        assert_eq!(
            logged.iter().filter(|t| **t == INTERFACE_TYPE).count(),
            interfaces.len()
        );
    }
}
