//! The NetBox fixture: a NetBox emulator, configurations naming the bundled
//! NetBox connector, and an oracle of the records the emulator's data
//! should produce, computed from its objects (not from its HTTP answers).

use crate::{json_lines, run_cli, CliRun};
use netbox_emulator::data::{Assignment, Database};
use netbox_emulator::{DataSpec, NetBox, NetBoxConfig, State, Token, V1_TOKEN, V2_TOKEN};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::path::PathBuf;

/// Name of the environment variable the configurations read the token from.
pub const TOKEN_VAR: &str = "TEST_NETBOX_TOKEN";

/// A NetBox emulator and a temporary directory.
pub struct NetBoxFixture {
    /// The running emulator.
    pub netbox: NetBox,
    /// Working directory (configs, databases).
    pub dir: tempfile::TempDir,
    /// The environment the CLI sees (the v2 token).
    pub env: HashMap<String, String>,
}

impl NetBoxFixture {
    /// Starts an emulator with `devices` devices (seed 9) and the default tokens.
    pub fn start(devices: usize) -> NetBoxFixture {
        NetBoxFixture::start_with_tokens(
            devices,
            vec![Token::full(V1_TOKEN), Token::full(V2_TOKEN)],
        )
    }

    /// Starts an emulator accepting `tokens`; the CLI presents the v2 token.
    pub fn start_with_tokens(devices: usize, tokens: Vec<Token>) -> NetBoxFixture {
        let netbox = NetBox::start(NetBoxConfig {
            data: DataSpec { devices, seed: 9 },
            tokens,
            ..Default::default()
        })
        .expect("the NetBox emulator starts");
        NetBoxFixture {
            netbox,
            dir: tempfile::tempdir().expect("a temporary directory"),
            env: HashMap::from([(TOKEN_VAR.to_string(), V2_TOKEN.to_string())]),
        }
    }

    /// The emulator's state.
    pub fn state(&self) -> &State {
        self.netbox.state()
    }

    /// Writes `file` selecting the bundled NetBox connector, with `extra`
    /// lines at the end (e.g. a `[sync]` section), and returns its path.
    /// Its database is `file` with `.db` for `.toml`: configurations do
    /// not share state.
    pub fn config(&self, file: &str, extra: &str) -> PathBuf {
        let database = file.replace(".toml", ".db");
        let text = format!(
            "connector = \"netbox\"\ndatabase = {database:?}\n[settings]\nurl = {:?}\n[auth]\nmethod = \"api-key\"\napi_key_env = \"{TOKEN_VAR}\"\n{extra}\n",
            self.netbox.base_url()
        );
        let path = self.dir.path().join(file);
        std::fs::write(&path, text).expect("writing the config");
        path
    }

    /// Runs the CLI with the fixture's environment.
    pub fn cli(&self, args: &[&str]) -> CliRun {
        run_cli(args, &self.env)
    }

    /// `sync --config PATH`.
    pub fn sync(&self, config: &std::path::Path) -> CliRun {
        self.cli(&["sync", "--config", config.to_str().unwrap()])
    }

    /// `export` of `stream` (with `extra` flags) parsed into JSON values.
    pub fn export(&self, config: &std::path::Path, stream: &str, extra: &[&str]) -> Vec<Value> {
        json_lines(&self.cli(&crate::export_args(config, stream, extra)).ok())
    }

    /// The records the emulator's data should produce, by stream, sorted by id.
    pub fn expected(&self, stream: &str) -> Vec<Value> {
        self.state().with_db(|db| expected_records(db, stream))
    }
}

/// Inserts `value` under `field` unless it is absent or empty, as the
/// connector's records leave out NetBox's nulls and "".
fn put(record: &mut Map<String, Value>, field: &str, value: Option<Value>) {
    match value {
        Some(Value::String(s)) if s.is_empty() => {}
        Some(v) => {
            record.insert(field.into(), v);
        }
        None => {}
    }
}

/// NetBox's microseconds as RFC 3339 UTC seconds.
fn seconds(at: i64) -> Value {
    let t = time::OffsetDateTime::from_unix_timestamp(at.div_euclid(1_000_000)).unwrap();
    json!(t
        .format(time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
        ))
        .unwrap())
}

/// The oracle: each stream's records from the emulator's objects.
pub fn expected_records(db: &Database, stream: &str) -> Vec<Value> {
    match stream {
        "devices" => db.devices.values().map(|d| device_record(db, d)).collect(),
        "interfaces" => db.interfaces.values().map(interface_record).collect(),
        _ => db.ip_addresses.values().map(ip_address_record).collect(),
    }
}

fn text(s: &str) -> Option<Value> {
    Some(json!(s))
}

fn device_record(db: &Database, d: &netbox_emulator::data::Device) -> Value {
    let mut r = Map::new();
    let device_type = &db.device_types[d.device_type];
    put(&mut r, "id", Some(json!(d.id)));
    put(&mut r, "name", d.name.as_deref().and_then(text));
    put(&mut r, "status", text(d.status));
    put(&mut r, "role", text(&db.roles[d.role].name));
    put(&mut r, "deviceType", text(&device_type.model.name));
    put(
        &mut r,
        "manufacturer",
        text(&db.manufacturers[device_type.manufacturer].name),
    );
    put(
        &mut r,
        "platform",
        d.platform.and_then(|p| text(&db.platforms[p].name)),
    );
    put(&mut r, "site", text(&db.sites[d.site].name));
    put(
        &mut r,
        "tenant",
        d.tenant.and_then(|t| text(&db.tenants[t].name)),
    );
    put(&mut r, "serial", text(&d.serial));
    put(&mut r, "assetTag", d.asset_tag.as_deref().and_then(text));
    let primary = d.primary_ip.and_then(|ip| db.ip_addresses.get(&ip));
    put(&mut r, "primaryIp", primary.and_then(|a| text(&a.address)));
    put(&mut r, "lastUpdated", Some(seconds(d.last_updated)));
    Value::Object(r)
}

fn interface_record(i: &netbox_emulator::data::Interface) -> Value {
    let mut r = Map::new();
    put(&mut r, "id", Some(json!(i.id)));
    put(&mut r, "name", text(&i.name));
    put(&mut r, "deviceId", Some(json!(i.device)));
    put(
        &mut r,
        "macAddress",
        i.mac_address.as_deref().and_then(text),
    );
    put(&mut r, "type", text(i.kind));
    put(&mut r, "enabled", Some(json!(i.enabled)));
    put(&mut r, "lastUpdated", Some(seconds(i.last_updated)));
    Value::Object(r)
}

fn ip_address_record(a: &netbox_emulator::data::IpAddress) -> Value {
    let mut r = Map::new();
    put(&mut r, "id", Some(json!(a.id)));
    put(&mut r, "address", text(&a.address));
    put(&mut r, "status", text(a.status));
    put(&mut r, "dnsName", text(&a.dns_name));
    if let Some(Assignment::Interface(i)) = a.assigned {
        put(&mut r, "interfaceId", Some(json!(i)));
    }
    put(&mut r, "lastUpdated", Some(seconds(a.last_updated)));
    Value::Object(r)
}

/// Sorts records by their integer `id` (exports come in the store's key order).
pub fn by_id(mut records: Vec<Value>) -> Vec<Value> {
    records.sort_by_key(|r| r["id"].as_u64());
    records
}
