//! Tables, rows and the deterministic CMDB data set the emulator serves.
//!
//! Rows are kept as column-indexed string vectors sorted by `sys_id`, the
//! order keyset readers ask for. A table may hold rows of several classes
//! (the CMDB class hierarchy): `cmdb_ci_computer` holds servers, PCs, ...,
//! each row naming its class in `sys_class_name`.

use std::collections::HashMap;

/// Separates the values of a row in its one allocation.
const SEP: char = '\u{1f}';

/// One row: all its values in one allocation, separated by U+001F.
///
/// A million devices then cost one string each, not twenty; and because
/// `sys_id` is the first value and has a fixed width, ordering rows by their
/// text orders them by `sys_id`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Row(Box<str>);

impl Row {
    /// A row from its values, in column order.
    pub fn new<S: AsRef<str>>(values: &[S]) -> Row {
        let mut text = String::with_capacity(values.iter().map(|v| v.as_ref().len() + 1).sum());
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                text.push(SEP);
            }
            // The separator cannot be stored inside a value.
            text.extend(v.as_ref().chars().map(|c| if c == SEP { ' ' } else { c }));
        }
        Row(text.into_boxed_str())
    }

    /// The value of column `index` (empty past the last column).
    ///
    /// One pass over the bytes: queries filter every row of a table on a
    /// column, and a search per separator cost 3 times more.
    pub fn get(&self, index: usize) -> &str {
        let bytes = self.0.as_bytes();
        let mut field = 0;
        let mut start = 0;
        for (i, &b) in bytes.iter().enumerate() {
            if b == SEP as u8 {
                if field == index {
                    return &self.0[start..i];
                }
                field += 1;
                start = i + 1;
            }
        }
        if field == index {
            &self.0[start..]
        } else {
            ""
        }
    }

    /// The value `back` columns before the last (0: the last column), for
    /// rows holding every column of their table; late columns such as
    /// `sys_updated_on` are found faster from the end.
    pub fn get_from_end(&self, back: usize) -> &str {
        let bytes = self.0.as_bytes();
        let mut field = 0;
        let mut end = bytes.len();
        for i in (0..bytes.len()).rev() {
            if bytes[i] == SEP as u8 {
                if field == back {
                    return &self.0[i + 1..end];
                }
                field += 1;
                end = i;
            }
        }
        if field == back {
            &self.0[..end]
        } else {
            ""
        }
    }

    /// The `sys_id` (always the first column).
    pub fn key(&self) -> &str {
        self.0.split(SEP).next().unwrap_or("")
    }

    /// All values in column order.
    pub fn values(&self) -> impl Iterator<Item = &str> {
        self.0.split(SEP)
    }

    /// A copy with column `index` set to `value`.
    pub fn with(&self, index: usize, value: &str) -> Row {
        let mut values: Vec<&str> = self.values().collect();
        if index < values.len() {
            values[index] = value;
        }
        Row::new(&values)
    }
}

/// One table (with its subclasses' rows).
#[derive(Debug, Clone, Default)]
pub struct Table {
    /// Table name, e.g. `cmdb_ci_computer`.
    pub name: String,
    /// Column names; `sys_id` is the first.
    pub columns: Vec<String>,
    /// Columns holding references, with the table they point to.
    pub references: HashMap<String, String>,
    /// Rows sorted by `sys_id`.
    rows: Vec<Row>,
    /// Position of `sys_updated_on` in `columns`, if the table has it.
    updated_column: Option<usize>,
    /// Each row's `sys_updated_on` as a [`datetime_key`] (or
    /// [`UNKNOWN_DATETIME`]), in row order: a column of its own, so that
    /// `sys_updated_on>=…` (every incremental read) tests 8 bytes per row
    /// instead of walking each row's text, as a database's index would
    /// spare it the table scan. Empty when the table lacks the column.
    updated: Vec<u64>,
}

/// The [`datetime_key`] of a value that is not a `YYYY-MM-DD hh:mm:ss` date-time.
pub const UNKNOWN_DATETIME: u64 = u64::MAX;

/// A `YYYY-MM-DD hh:mm:ss` date-time as the number `YYYYMMDDhhmmss`, which
/// orders as the text does; `None` for anything else.
pub fn datetime_key(value: &str) -> Option<u64> {
    let bytes = value.as_bytes();
    if bytes.len() != 19 {
        return None;
    }
    let mut key = 0u64;
    for (i, &b) in bytes.iter().enumerate() {
        match (i, b) {
            (4 | 7, b'-') | (10, b' ') | (13 | 16, b':') => {}
            (_, b'0'..=b'9') => key = key * 10 + u64::from(b - b'0'),
            _ => return None,
        }
    }
    Some(key)
}

impl Table {
    /// Creates an empty table; `columns[0]` must be `sys_id`.
    pub fn new(name: &str, columns: &[&str]) -> Self {
        assert_eq!(
            columns.first(),
            Some(&"sys_id"),
            "sys_id is the first column"
        );
        Table {
            name: name.into(),
            columns: columns.iter().map(|c| c.to_string()).collect(),
            updated_column: columns.iter().position(|c| *c == "sys_updated_on"),
            ..Default::default()
        }
    }

    /// The rows, sorted by `sys_id`.
    pub fn rows(&self) -> &[Row] {
        &self.rows
    }

    /// Replaces every row; `rows` must be sorted by `sys_id`.
    pub fn set_rows(&mut self, rows: Vec<Row>) {
        debug_assert!(rows.windows(2).all(|w| w[0].key() < w[1].key()));
        self.updated = match self.updated_column {
            Some(_) => rows.iter().map(|r| self.updated_key(r)).collect(),
            None => Vec::new(),
        };
        self.rows = rows;
    }

    /// The `sys_updated_on` of the row at `index`, as a [`datetime_key`]
    /// ([`UNKNOWN_DATETIME`] when the table lacks the column).
    pub fn updated_key_at(&self, index: usize) -> u64 {
        self.updated.get(index).copied().unwrap_or(UNKNOWN_DATETIME)
    }

    fn updated_key(&self, row: &Row) -> u64 {
        // `sys_updated_on` is a late column: found faster from the row's end.
        self.updated_column
            .and_then(|c| datetime_key(row.get_from_end(self.columns.len() - 1 - c)))
            .unwrap_or(UNKNOWN_DATETIME)
    }

    /// Puts `row` at its place by `sys_id`, replacing a row with the same one.
    pub fn put(&mut self, row: Row) {
        let key = self.updated_key(&row);
        match self.find(row.key()) {
            Ok(i) => {
                self.rows[i] = row;
                if self.updated_column.is_some() {
                    self.updated[i] = key;
                }
            }
            Err(i) => {
                self.rows.insert(i, row);
                if self.updated_column.is_some() {
                    self.updated.insert(i, key);
                }
            }
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

    /// Position of the row with that `sys_id`, or where it would go.
    pub fn find(&self, sys_id: &str) -> Result<usize, usize> {
        self.rows.binary_search_by(|r| r.key().cmp(sys_id))
    }

    /// The row with that `sys_id`.
    pub fn get(&self, sys_id: &str) -> Option<&Row> {
        self.find(sys_id).ok().map(|i| &self.rows[i])
    }

    /// Inserts (or replaces) a row given as column/value pairs; missing columns are empty.
    pub fn upsert(&mut self, values: &[(&str, String)]) {
        let mut row = vec![""; self.columns.len()];
        for (col, value) in values {
            if let Some(i) = self.column(col) {
                row[i] = value;
            }
        }
        self.put(Row::new(&row));
    }

    /// Sets one column of the row with that `sys_id`; false if there is no such row or column.
    pub fn set(&mut self, sys_id: &str, column: &str, value: &str) -> bool {
        match (self.get(sys_id), self.column(column)) {
            (Some(row), Some(c)) if c > 0 => {
                let changed = row.with(c, value);
                self.put(changed);
                true
            }
            _ => false,
        }
    }

    /// Removes the row with that `sys_id`; returns it.
    pub fn remove(&mut self, sys_id: &str) -> Option<Row> {
        let i = self.find(sys_id).ok()?;
        if self.updated_column.is_some() {
            self.updated.remove(i);
        }
        Some(self.rows.remove(i))
    }

    /// Value of `column` in `row` (empty when the table lacks the column).
    pub fn value<'a>(&self, row: &'a Row, column: &str) -> &'a str {
        self.column(column).map_or("", |c| row.get(c))
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
            ("cmdb_ci_ip_address", "cmdb_ci"),
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

    /// Writes every table as JSON, `{table: [{column: value}, ...]}`, straight
    /// from the stored rows (tests compare what clients read with this).
    pub fn dump(&self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        let mut names: Vec<&String> = self.tables.keys().collect();
        names.sort();
        out.write_all(b"{")?;
        for (ti, name) in names.iter().enumerate() {
            let t = &self.tables[*name];
            if ti > 0 {
                out.write_all(b",")?;
            }
            serde_json::to_writer(&mut *out, name)?;
            out.write_all(b":[")?;
            for (ri, row) in t.rows().iter().enumerate() {
                if ri > 0 {
                    out.write_all(b",")?;
                }
                let object: serde_json::Map<String, serde_json::Value> = t
                    .columns
                    .iter()
                    .zip(row.values())
                    .map(|(c, v)| (c.clone(), serde_json::Value::String(v.to_string())))
                    .collect();
                serde_json::to_writer(&mut *out, &object)?;
            }
            out.write_all(b"]")?;
        }
        out.write_all(b"}")
    }

    /// The row with `sys_id` in any table holding `class` or its descendants
    /// (a reference to `cmdb_ci` may point at any CI).
    pub fn find_ci(&self, class: &str, sys_id: &str) -> Option<(&Table, &Row)> {
        if let Some(t) = self.table_for(class) {
            if let Some(row) = t.get(sys_id) {
                return Some((t, row));
            }
        }
        self.tables
            .values()
            .filter(|t| self.classes.is_a(&t.name, class))
            .find_map(|t| t.get(sys_id).map(|row| (t, row)))
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
/// Columns of `cmdb_ci_ip_address`.
pub const IP_ADDRESS_COLUMNS: &[&str] = &[
    "sys_id",
    "name",
    "ip_address",
    "ip_version",
    "netmask",
    "nic",
    "sys_class_name",
    "sys_updated_on",
    "sys_created_on",
    "install_status",
];
/// Columns of `cmdb_rel_ci`.
pub const RELATION_COLUMNS: &[&str] = &[
    "sys_id",
    "parent",
    "child",
    "type",
    "sys_class_name",
    "sys_updated_on",
    "sys_created_on",
];
/// Columns of `sys_audit_delete`.
pub const AUDIT_DELETE_COLUMNS: &[&str] = &[
    "sys_id",
    "tablename",
    "documentkey",
    "display_value",
    "sys_created_on",
    "sys_created_by",
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

/// A generator for item `index` of a kind of data: each item has its own
/// stream, so items can be generated in any order (and in parallel) with the
/// same result.
fn item_rng(seed: u64, kind: u64, index: u64) -> Rng {
    let mut r = Rng::new(seed ^ kind.wrapping_mul(0xA076_1D64_78BD_642F));
    let mixed = r.next_u64() ^ index.wrapping_mul(0xE703_7ED1_A0B4_28DB);
    Rng::new(mixed)
}

const APPS: u64 = 1;
const DEVICES: u64 = 2;
const USERS: u64 = 3;

const USER_NAMES: [&str; 6] = ["", "alice", "bob", "chandra", "dmitri", "eve.o'neil"];

/// Business application number `i`, as the generator makes it.
pub fn app_row(seed: u64, i: usize) -> Row {
    let mut rng = item_rng(seed, APPS, i as u64);
    let id = rng.sys_id();
    let updated = format_datetime(EPOCH_2025 + rng.below(300 * 86_400) as i64);
    let name = format!(
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
    );
    let u_crit = *rng.pick(&["", "Critical", "High", "Medium", "Low"]);
    let crit = *rng.pick(&[
        "1 - most critical",
        "2 - somewhat critical",
        "3 - less critical",
        "4 - not critical",
    ]);
    Row::new(&[
        id.as_str(),
        &format!("APM{:07}", 1001 + i),
        &name,
        u_crit,
        crit,
        "cmdb_ci_business_app",
        &updated,
        &updated,
    ])
}

/// Rows generated alongside a device.
#[derive(Debug, Default)]
pub struct Related {
    /// Its network adapters.
    pub adapters: Vec<Row>,
    /// The IP addresses of those adapters.
    pub ip_addresses: Vec<Row>,
    /// Its relationship to its business application.
    pub relations: Vec<Row>,
}

impl Related {
    fn sort(&mut self) {
        self.adapters.sort_unstable();
        self.ip_addresses.sort_unstable();
        self.relations.sort_unstable();
    }
}

/// The `cmdb_rel_type` sys_id of "Depends on::Used by" (as observed on instances).
pub const DEPENDS_ON_USED_BY: &str = "1a9cb166f1571100a92eb60da2bce5c5";

/// The classes a device may have: its table, its OS and that OS's versions.
const DEVICE_CLASSES: [(&str, &str, &[&str]); 5] = [
    (
        "cmdb_ci_linux_server",
        "Linux Red Hat",
        &["7.9", "8.6", "9.2"],
    ),
    (
        "cmdb_ci_win_server",
        "Windows 2019 Datacenter",
        &["10.0.17763"],
    ),
    (
        "cmdb_ci_pc_hardware",
        "Windows 11 Enterprise",
        &["10.0.22631", "10.0.22621"],
    ),
    ("cmdb_ci_server", "AIX", &["7.2"]),
    ("cmdb_ci_computer", "macOS", &["14.5", "15.1"]),
];

/// One device (number `i`) and the rows that belong to it.
pub fn device_rows(seed: u64, i: usize, app_ids: &[String], related: &mut Related) -> Row {
    let mut rng = item_rng(seed, DEVICES, i as u64);
    let id = rng.sys_id();
    let (class, os, versions) = DEVICE_CLASSES[rng.below(DEVICE_CLASSES.len() as u64) as usize];
    let updated = format_datetime(EPOCH_2025 + rng.below(300 * 86_400) as i64);
    let name = device_name(i, class);
    let app = if app_ids.is_empty() || rng.below(5) == 0 {
        ""
    } else {
        rng.pick(app_ids).as_str()
    };
    let version = *rng.pick(versions);
    let service_pack = if os.starts_with("Windows") && rng.below(2) == 0 {
        "SP1"
    } else {
        ""
    };
    let cpu = *rng.pick(&[
        "Intel(R) Xeon(R) Gold 6248",
        "AMD EPYC 7763",
        "Apple M2",
        "IBM POWER9",
    ]);
    let category = *rng.pick(&["Hardware", "Resource", ""]);
    let virtual_ = if rng.below(3) == 0 { "true" } else { "false" };
    let criticality = *rng.pick(&[
        "",
        "1 - most critical",
        "2 - somewhat critical",
        "3 - less critical",
    ]);
    let used_for = *rng.pick(&["Production", "Development", "Test", "Staging", ""]);
    let last_user = *rng.pick(&USER_NAMES);
    let frequent_user = *rng.pick(&USER_NAMES);
    let serial = format!("SN{:010x}", rng.next_u64() & 0xff_ffff_ffff);
    let device = Row::new(&[
        id.as_str(),
        &name,
        os,
        version,
        service_pack,
        cpu,
        category,
        &format!("P{:07}", 1_000_000 + i),
        virtual_,
        criticality,
        used_for,
        last_user,
        frequent_user,
        class,
        app,
        &updated,
        &updated,
        &serial,
        "1",
        "1",
    ]);
    push_adapters(&mut rng, &id, &updated, related);
    if !app.is_empty() {
        push_relation(&mut rng, app, &id, &updated, related);
    }
    device
}

/// The relationship "`app` depends on the device `id`" (`cmdb_rel_ci`).
fn push_relation(rng: &mut Rng, app: &str, id: &str, updated: &str, related: &mut Related) {
    related.relations.push(Row::new(&[
        rng.sys_id().as_str(),
        app,
        id,
        DEPENDS_ON_USED_BY,
        "cmdb_rel_ci",
        updated,
        updated,
    ]));
}

/// The name of device `i`: `srv-000042` (`pc-…` for PCs); every 97th has
/// quotes, a backslash, a caret and non-Latin letters, to test escaping.
fn device_name(i: usize, class: &str) -> String {
    if i % 97 == 13 {
        format!("Café \"ops\" \\ ^srv-{i:06} 東京")
    } else {
        let prefix = if class == "cmdb_ci_pc_hardware" {
            "pc"
        } else {
            "srv"
        };
        format!("{prefix}-{i:06}")
    }
}

/// One to three network adapters of the device `id` (the third without an
/// address), and an IP address row for each adapter that has one.
fn push_adapters(rng: &mut Rng, id: &str, updated: &str, related: &mut Related) {
    for n in 0..1 + rng.below(3) {
        let subnet = rng.below(250) + 1;
        let adapter_id = rng.sys_id();
        let mac = format!(
            "00:50:56:{:02x}:{:02x}:{:02x}",
            rng.below(256),
            rng.below(256),
            rng.below(256)
        );
        let (ip, gateway) = if n == 2 {
            (String::new(), String::new())
        } else {
            (
                format!("10.{}.{}.{}", subnet, rng.below(256), rng.below(254) + 1),
                format!("10.{subnet}.0.1"),
            )
        };
        related.adapters.push(Row::new(&[
            adapter_id.as_str(),
            &format!("eth{n}"),
            &mac,
            &ip,
            &gateway,
            "255.255.0.0",
            id,
            "cmdb_ci_network_adapter",
            updated,
            updated,
            "1",
        ]));
        if !ip.is_empty() {
            related.ip_addresses.push(Row::new(&[
                rng.sys_id().as_str(),
                &ip,
                &ip,
                "4",
                "255.255.0.0",
                &adapter_id,
                "cmdb_ci_ip_address",
                updated,
                updated,
                "1",
            ]));
        }
    }
}

/// How many business applications the generator makes for `devices` devices.
pub fn app_count(devices: usize) -> usize {
    devices.div_ceil(40).max(1)
}

/// Generates the deterministic data set, using every core for large sets.
pub fn generate(spec: DataSpec) -> Database {
    let app_count = app_count(spec.devices);
    let mut apps = Table::new("cmdb_ci_business_app", BUSINESS_APP_COLUMNS);
    let mut app_rows: Vec<Row> = (0..app_count).map(|i| app_row(spec.seed, i)).collect();
    let app_ids: Vec<String> = app_rows.iter().map(|r| r.key().to_string()).collect();
    app_rows.sort_unstable();
    apps.set_rows(app_rows);

    let parts = generate_devices(spec, &app_ids);
    let (device_parts, related_parts): (Vec<_>, Vec<Related>) = parts.into_iter().unzip();
    let mut adapter_parts = Vec::new();
    let mut ip_parts = Vec::new();
    let mut relation_parts = Vec::new();
    for r in related_parts {
        adapter_parts.push(r.adapters);
        ip_parts.push(r.ip_addresses);
        relation_parts.push(r.relations);
    }

    let computers = Table::new("cmdb_ci_computer", COMPUTER_COLUMNS)
        .with_reference("u_primary_business_application", "cmdb_ci_business_app")
        .with_reference("u_last_logged_on_user", "sys_user")
        .with_reference("u_most_frequent_user", "sys_user");
    let adapters =
        Table::new("cmdb_ci_network_adapter", ADAPTER_COLUMNS).with_reference("cmdb_ci", "cmdb_ci");
    let ip_addresses = Table::new("cmdb_ci_ip_address", IP_ADDRESS_COLUMNS)
        .with_reference("nic", "cmdb_ci_network_adapter");
    let relations = Table::new("cmdb_rel_ci", RELATION_COLUMNS)
        .with_reference("parent", "cmdb_ci")
        .with_reference("child", "cmdb_ci")
        .with_reference("type", "cmdb_rel_type");
    // The four big tables are merged (and their date-time columns built)
    // side by side.
    let [computers, adapters, ip_addresses, relations] = std::thread::scope(|scope| {
        [
            (computers, device_parts),
            (adapters, adapter_parts),
            (ip_addresses, ip_parts),
            (relations, relation_parts),
        ]
        .map(|(mut table, parts)| {
            scope.spawn(move || {
                table.set_rows(merge_sorted(parts));
                table
            })
        })
        .map(|handle| handle.join().expect("merging thread"))
    });
    let relation_types = relation_types();
    let audit = Table::new("sys_audit_delete", AUDIT_DELETE_COLUMNS);

    let users_table = users(spec.seed);

    let mut db = Database {
        tables: HashMap::new(),
        classes: Classes::cmdb(),
    };
    for t in [
        computers,
        adapters,
        apps,
        users_table,
        ip_addresses,
        relations,
        relation_types,
        audit,
    ] {
        db.tables.insert(t.name.clone(), t);
    }
    db
}

/// The devices and their related rows, generated by up to 8 threads, each
/// part sorted: one `(devices, related)` per thread.
fn generate_devices(spec: DataSpec, app_ids: &[String]) -> Vec<(Vec<Row>, Related)> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    let chunk = spec.devices.div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..spec.devices)
            .step_by(chunk)
            .map(|start| {
                scope.spawn(move || {
                    let end = (start + chunk).min(spec.devices);
                    let mut devices = Vec::with_capacity(end - start);
                    let mut related = Related::default();
                    for i in start..end {
                        devices.push(device_rows(spec.seed, i, app_ids, &mut related));
                    }
                    devices.sort_unstable();
                    related.sort();
                    related.adapters = packed(std::mem::take(&mut related.adapters));
                    (packed(devices), related)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("generator thread"))
            .collect()
    })
}

/// The relationship types `cmdb_rel_ci` rows refer to.
fn relation_types() -> Table {
    let mut relation_types = Table::new(
        "cmdb_rel_type",
        &["sys_id", "name", "parent_descriptor", "child_descriptor"],
    );
    for (id, parent, child) in [
        (DEPENDS_ON_USED_BY, "Depends on", "Used by"),
        (
            "607ad1b2c0a8010e01941856b365af90",
            "Exchanges data with",
            "Exchanges data with",
        ),
        ("cb5592603751200032ff8c00dfbe5d17", "Uses", "Used by"),
        ("25242fb2c0a8000b0063f4bf3cd8bbb9", "Owns", "Owned by"),
        ("60bc4e22c0a8010e01f074cbe6bd73c3", "Runs on", "Runs"),
    ] {
        relation_types.upsert(&[
            ("sys_id", id.to_string()),
            ("name", format!("{parent}::{child}")),
            ("parent_descriptor", parent.to_string()),
            ("child_descriptor", child.to_string()),
        ]);
    }
    relation_types
}

/// The users devices name as last logged-on and most frequent users.
fn users(seed: u64) -> Table {
    let mut users_table = Table::new(
        "sys_user",
        &["sys_id", "user_name", "name", "sys_updated_on"],
    );
    for (i, u) in USER_NAMES.iter().enumerate().filter(|(_, u)| !u.is_empty()) {
        let mut rng = item_rng(seed, USERS, i as u64);
        users_table.upsert(&[
            ("sys_id", rng.sys_id()),
            ("user_name", u.to_string()),
            ("name", u.to_string()),
        ]);
    }
    users_table
}

/// Merges sorted runs into one sorted vector.
fn merge_sorted(parts: Vec<Vec<Row>>) -> Vec<Row> {
    let mut all: Vec<Row> = parts.into_iter().flatten().collect();
    // Runs are already sorted; the stable sort merges them in linear-ish time.
    all.sort();
    all
}

/// The rows of a sorted run, copied in that order: rows adjacent by sys_id
/// become adjacent in memory, so a filtered query's scan (`sys_updated_on>=…`
/// reads every row) streams through memory instead of stalling on each row.
/// Done in the generator thread that made the run, for the tables such scans
/// read (devices, adapters).
fn packed(rows: Vec<Row>) -> Vec<Row> {
    rows.to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_updated_column_follows_every_change() {
        let keys =
            |t: &Table| -> Vec<u64> { (0..t.rows().len()).map(|i| t.updated_key_at(i)).collect() };
        let mut t = Table::new("t", &["sys_id", "name", "sys_updated_on"]);
        t.upsert(&[
            ("sys_id", "b".into()),
            ("sys_updated_on", "2024-01-02 00:00:00".into()),
        ]);
        t.upsert(&[
            ("sys_id", "a".into()),
            ("sys_updated_on", "2024-01-01 10:20:30".into()),
        ]);
        t.upsert(&[
            ("sys_id", "c".into()),
            ("sys_updated_on", "yesterday".into()),
        ]);
        assert_eq!(keys(&t), [20240101102030, 20240102000000, UNKNOWN_DATETIME]);
        assert!(t.set("a", "sys_updated_on", "2024-03-01 00:00:00"));
        assert!(t.set("c", "name", "renamed"));
        assert!(t.remove("b").is_some());
        assert_eq!(keys(&t), [20240301000000, UNKNOWN_DATETIME]);
        t.set_rows(vec![Row::new(&["x", "", "2025-12-31 23:59:59"])]);
        assert_eq!(keys(&t), [20251231235959]);
        let no_column = Table::new("u", &["sys_id"]);
        assert_eq!(no_column.updated_key_at(0), UNKNOWN_DATETIME);
        assert_eq!(datetime_key("2024-01-01T00:00:00"), None);
        assert_eq!(datetime_key("2024-01-01 00:00:0x"), None);
    }

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
        assert!(ta.rows.windows(2).all(|w| w[0].key() < w[1].key()));
        // Every row of every table holds every column (values are then
        // found from either end).
        for table in a.tables.values() {
            assert!(
                table
                    .rows
                    .iter()
                    .all(|r| r.values().count() == table.columns.len()),
                "{}",
                table.name
            );
        }
        let adapters = &a.tables["cmdb_ci_network_adapter"];
        assert!(adapters.rows.len() >= 200 && adapters.rows.len() <= 600);
        assert_eq!(a.tables["cmdb_ci_business_app"].rows.len(), 5);
    }

    #[test]
    fn rows_keep_their_values() {
        let r = Row::new(&["a", "", "x\u{1f}y", "z"]);
        assert_eq!(
            (r.key(), r.get(1), r.get(2), r.get(3), r.get(9)),
            ("a", "", "x y", "z", "")
        );
        assert_eq!(
            (
                r.get_from_end(0),
                r.get_from_end(1),
                r.get_from_end(2),
                r.get_from_end(3),
                r.get_from_end(4)
            ),
            ("z", "x y", "", "a", "")
        );
        let mut t = Table::new("t", &["sys_id", "name"]);
        t.upsert(&[("sys_id", "b".into())]);
        t.upsert(&[("sys_id", "a".into()), ("name", "n".into())]);
        assert!(t.set("b", "name", "m"));
        assert!(!t.set("b", "sys_id", "c"));
        assert_eq!(t.get("b").map(|r| r.get(1)), Some("m"));
        assert_eq!(
            t.remove("a").map(|r| r.get(1).to_string()),
            Some("n".into())
        );
        assert_eq!(t.rows.len(), 1);
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
