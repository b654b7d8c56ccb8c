//! Tables, rows and the deterministic CMDB data set the emulator serves.
//!
//! Rows are kept as column-indexed string vectors sorted by `sys_id`, the
//! order keyset readers ask for. A table may hold rows of several classes
//! (the CMDB class hierarchy): `cmdb_ci_computer` holds servers, PCs, ...,
//! each row naming its class in `sys_class_name`.

use std::collections::HashMap;

/// One table (with its subclasses' rows).
#[derive(Debug, Clone, Default)]
pub struct Table {
    /// Table name, e.g. `cmdb_ci_computer`.
    pub name: String,
    /// Column names; every row has one value per column.
    pub columns: Vec<String>,
    /// Columns holding references, with the table they point to.
    pub references: HashMap<String, String>,
    /// Rows sorted by `sys_id`.
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// Creates an empty table.
    pub fn new(name: &str, columns: &[&str]) -> Self {
        Table {
            name: name.into(),
            columns: columns.iter().map(|c| c.to_string()).collect(),
            ..Default::default()
        }
    }

    /// Declares `column` as a reference to `target` table.
    pub fn with_reference(mut self, column: &str, target: &str) -> Self {
        self.references.insert(column.into(), target.into());
        self
    }

    /// Index of a column.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }

    /// Index of the `sys_id` row with that value.
    pub fn find(&self, sys_id: &str) -> Result<usize, usize> {
        let c = self.column("sys_id").expect("every table has sys_id");
        self.rows.binary_search_by(|r| r[c].as_str().cmp(sys_id))
    }

    /// Inserts (or replaces) a row given as column/value pairs; missing columns are empty.
    pub fn upsert(&mut self, values: &[(&str, String)]) {
        let mut row = vec![String::new(); self.columns.len()];
        for (col, value) in values {
            if let Some(i) = self.column(col) {
                row[i] = value.clone();
            }
        }
        let key = row[self.column("sys_id").expect("sys_id")].clone();
        match self.find(&key) {
            Ok(i) => self.rows[i] = row,
            Err(i) => self.rows.insert(i, row),
        }
    }

    /// Value of `column` in row `i` (empty when the table lacks the column).
    pub fn value<'a>(&'a self, row: &'a [String], column: &str) -> &'a str {
        self.column(column).map_or("", |c| row[c].as_str())
    }
}

/// The class hierarchy: class → parent class.
#[derive(Debug, Clone, Default)]
pub struct Classes {
    parent: HashMap<String, String>,
}

impl Classes {
    /// The CMDB classes the emulator knows.
    pub fn cmdb() -> Self {
        let mut parent = HashMap::new();
        for (c, p) in [
            ("cmdb_ci_hardware", "cmdb_ci"),
            ("cmdb_ci_computer", "cmdb_ci_hardware"),
            ("cmdb_ci_server", "cmdb_ci_computer"),
            ("cmdb_ci_win_server", "cmdb_ci_server"),
            ("cmdb_ci_linux_server", "cmdb_ci_server"),
            ("cmdb_ci_pc_hardware", "cmdb_ci_computer"),
            ("cmdb_ci_network_adapter", "cmdb_ci"),
            ("cmdb_ci_business_app", "cmdb_ci"),
        ] {
            parent.insert(c.to_string(), p.to_string());
        }
        Classes { parent }
    }

    /// Whether `class` is `ancestor` or one of its descendants.
    pub fn is_a(&self, class: &str, ancestor: &str) -> bool {
        let mut c = class;
        loop {
            if c == ancestor {
                return true;
            }
            match self.parent.get(c) {
                Some(p) => c = p,
                None => return false,
            }
        }
    }
}

/// All tables of the emulated instance.
#[derive(Debug, Clone, Default)]
pub struct Database {
    /// Physical tables by name. Subclass tables live in their root table.
    pub tables: HashMap<String, Table>,
    /// The class hierarchy.
    pub classes: Classes,
}

impl Database {
    /// The physical table that holds rows of `class`, if any.
    pub fn table_for(&self, class: &str) -> Option<&Table> {
        if let Some(t) = self.tables.get(class) {
            return Some(t);
        }
        self.tables
            .values()
            .find(|t| self.classes.is_a(class, &t.name))
    }

    /// Mutable variant of [`Database::table_for`].
    pub fn table_for_mut(&mut self, class: &str) -> Option<&mut Table> {
        let name = self.table_for(class)?.name.clone();
        self.tables.get_mut(&name)
    }

    /// Whether `class` names a table or class the instance knows.
    pub fn knows(&self, class: &str) -> bool {
        self.table_for(class).is_some()
    }
}

/// Parameters of the generated data set.
#[derive(Debug, Clone, Copy)]
pub struct DataSpec {
    /// Number of devices.
    pub devices: usize,
    /// Seed; the same seed gives the same data.
    pub seed: u64,
}

/// SplitMix64: a tiny, fast, well-known deterministic generator.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// A number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    /// One item of a slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
    /// A ServiceNow-style sys_id (32 lower-case hex characters).
    pub fn sys_id(&mut self) -> String {
        format!("{:016x}{:016x}", self.next_u64(), self.next_u64())
    }
}

/// Formats seconds since the Unix epoch as a ServiceNow UTC date-time.
pub fn format_datetime(unix_seconds: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(unix_seconds)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(time::macros::format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second]"
    ))
    .expect("formatting a date-time")
}

/// Columns of `cmdb_ci_computer` (and subclasses) in the emulator.
pub const COMPUTER_COLUMNS: &[&str] = &[
    "sys_id",
    "name",
    "os",
    "os_version",
    "os_service_pack",
    "cpu_type",
    "category",
    "asset_tag",
    "virtual",
    "u_criticality",
    "used_for",
    "u_last_logged_on_user",
    "u_most_frequent_user",
    "sys_class_name",
    "u_primary_business_application",
    "sys_updated_on",
    "sys_created_on",
    "serial_number",
    "install_status",
    "operational_status",
];
/// Columns of `cmdb_ci_network_adapter`.
pub const ADAPTER_COLUMNS: &[&str] = &[
    "sys_id",
    "name",
    "mac_address",
    "ip_address",
    "ip_default_gateway",
    "netmask",
    "cmdb_ci",
    "sys_class_name",
    "sys_updated_on",
    "sys_created_on",
    "install_status",
];
/// Columns of `cmdb_ci_business_app`.
pub const BUSINESS_APP_COLUMNS: &[&str] = &[
    "sys_id",
    "number",
    "name",
    "u_criticality",
    "business_criticality",
    "sys_class_name",
    "sys_updated_on",
    "sys_created_on",
];

/// Start of the generated `sys_updated_on` range (2025-01-01T00:00:00Z).
const EPOCH_2025: i64 = 1_735_689_600;

/// Generates the deterministic data set.
pub fn generate(spec: DataSpec) -> Database {
    let mut rng = Rng::new(spec.seed);
    let mut apps = Table::new("cmdb_ci_business_app", BUSINESS_APP_COLUMNS);
    let mut computers = Table::new("cmdb_ci_computer", COMPUTER_COLUMNS)
        .with_reference("u_primary_business_application", "cmdb_ci_business_app")
        .with_reference("u_last_logged_on_user", "sys_user")
        .with_reference("u_most_frequent_user", "sys_user");
    let mut adapters =
        Table::new("cmdb_ci_network_adapter", ADAPTER_COLUMNS).with_reference("cmdb_ci", "cmdb_ci");

    let app_count = spec.devices.div_ceil(40).max(1);
    let mut app_ids = Vec::with_capacity(app_count);
    let mut app_rows = Vec::with_capacity(app_count);
    for i in 0..app_count {
        let id = rng.sys_id();
        let updated = format_datetime(EPOCH_2025 + rng.below(300 * 86_400) as i64);
        let crit = rng.pick(&[
            "1 - most critical",
            "2 - somewhat critical",
            "3 - less critical",
            "4 - not critical",
        ]);
        let row = vec![
            id.clone(),
            format!("APM{:07}", 1001 + i),
            format!(
                "{} {}",
                rng.pick(&[
                    "Payroll",
                    "Billing",
                    "CRM",
                    "Logistics",
                    "Portal",
                    "Data Lake",
                    "Auth"
                ]),
                i
            ),
            rng.pick(&["", "Critical", "High", "Medium", "Low"])
                .to_string(),
            crit.to_string(),
            "cmdb_ci_business_app".into(),
            updated.clone(),
            updated,
        ];
        app_ids.push(id);
        app_rows.push(row);
    }
    apps.rows = app_rows;

    let classes = [
        (
            "cmdb_ci_linux_server",
            "Linux Red Hat",
            &["7.9", "8.6", "9.2"][..],
        ),
        (
            "cmdb_ci_win_server",
            "Windows 2019 Datacenter",
            &["10.0.17763"][..],
        ),
        (
            "cmdb_ci_pc_hardware",
            "Windows 11 Enterprise",
            &["10.0.22631", "10.0.22621"][..],
        ),
        ("cmdb_ci_server", "AIX", &["7.2"][..]),
        ("cmdb_ci_computer", "macOS", &["14.5", "15.1"][..]),
    ];
    let users = ["", "alice", "bob", "chandra", "dmitri", "eve.o'neil"];
    let mut device_rows = Vec::with_capacity(spec.devices);
    let mut adapter_rows = Vec::with_capacity(spec.devices * 2);
    for i in 0..spec.devices {
        let id = rng.sys_id();
        let (class, os, versions) = classes[rng.below(classes.len() as u64) as usize];
        let updated = format_datetime(EPOCH_2025 + rng.below(300 * 86_400) as i64);
        let name = if i % 97 == 13 {
            format!("Café \"ops\" \\ ^srv-{i:06} 東京")
        } else {
            format!(
                "{}-{i:06}",
                if class == "cmdb_ci_pc_hardware" {
                    "pc"
                } else {
                    "srv"
                }
            )
        };
        let app = if rng.below(5) == 0 {
            String::new()
        } else {
            rng.pick(&app_ids).clone()
        };
        device_rows.push(vec![
            id.clone(),
            name.clone(),
            os.to_string(),
            rng.pick(versions).to_string(),
            if os.starts_with("Windows") && rng.below(2) == 0 {
                "SP1".into()
            } else {
                String::new()
            },
            rng.pick(&[
                "Intel(R) Xeon(R) Gold 6248",
                "AMD EPYC 7763",
                "Apple M2",
                "IBM POWER9",
            ])
            .to_string(),
            rng.pick(&["Hardware", "Resource", ""]).to_string(),
            format!("P{:07}", 1_000_000 + i),
            if rng.below(3) == 0 { "true" } else { "false" }.into(),
            rng.pick(&[
                "",
                "1 - most critical",
                "2 - somewhat critical",
                "3 - less critical",
            ])
            .to_string(),
            rng.pick(&["Production", "Development", "Test", "Staging", ""])
                .to_string(),
            rng.pick(&users).to_string(),
            rng.pick(&users).to_string(),
            class.to_string(),
            app,
            updated.clone(),
            updated.clone(),
            format!("SN{:010x}", rng.next_u64() & 0xff_ffff_ffff),
            "1".into(),
            "1".into(),
        ]);
        let nics = 1 + rng.below(3);
        for n in 0..nics {
            let subnet = rng.below(250) + 1;
            adapter_rows.push(vec![
                rng.sys_id(),
                format!("eth{n}"),
                format!(
                    "00:50:56:{:02x}:{:02x}:{:02x}",
                    rng.below(256),
                    rng.below(256),
                    rng.below(256)
                ),
                if n == 2 {
                    String::new()
                } else {
                    format!("10.{}.{}.{}", subnet, rng.below(256), rng.below(254) + 1)
                },
                if n == 2 {
                    String::new()
                } else {
                    format!("10.{subnet}.0.1")
                },
                "255.255.0.0".into(),
                id.clone(),
                "cmdb_ci_network_adapter".into(),
                updated.clone(),
                updated.clone(),
                "1".into(),
            ]);
        }
    }
    device_rows.sort_unstable_by(|a, b| a[0].cmp(&b[0]));
    adapter_rows.sort_unstable_by(|a, b| a[0].cmp(&b[0]));
    apps.rows.sort_unstable_by(|a, b| a[0].cmp(&b[0]));
    computers.rows = device_rows;
    adapters.rows = adapter_rows;

    let mut users_table = Table::new(
        "sys_user",
        &["sys_id", "user_name", "name", "sys_updated_on"],
    );
    for u in users.iter().filter(|u| !u.is_empty()) {
        users_table.upsert(&[
            ("sys_id", rng.sys_id()),
            ("user_name", u.to_string()),
            ("name", u.to_string()),
        ]);
    }

    let mut db = Database {
        tables: HashMap::new(),
        classes: Classes::cmdb(),
    };
    for t in [computers, adapters, apps, users_table] {
        db.tables.insert(t.name.clone(), t);
    }
    db
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_deterministic_and_sorted() {
        let a = generate(DataSpec {
            devices: 200,
            seed: 7,
        });
        let b = generate(DataSpec {
            devices: 200,
            seed: 7,
        });
        let ta = &a.tables["cmdb_ci_computer"];
        assert_eq!(ta.rows, b.tables["cmdb_ci_computer"].rows);
        assert_eq!(ta.rows.len(), 200);
        assert!(ta.rows.windows(2).all(|w| w[0][0] < w[1][0]));
        let adapters = &a.tables["cmdb_ci_network_adapter"];
        assert!(adapters.rows.len() >= 200 && adapters.rows.len() <= 600);
        assert_eq!(a.tables["cmdb_ci_business_app"].rows.len(), 5);
    }

    #[test]
    fn class_hierarchy() {
        let c = Classes::cmdb();
        assert!(c.is_a("cmdb_ci_linux_server", "cmdb_ci_computer"));
        assert!(!c.is_a("cmdb_ci_network_adapter", "cmdb_ci_computer"));
        let db = generate(DataSpec {
            devices: 1,
            seed: 1,
        });
        assert_eq!(
            db.table_for("cmdb_ci_server").unwrap().name,
            "cmdb_ci_computer"
        );
        assert!(db.table_for("cmdb_ci_nope").is_none());
    }
}
