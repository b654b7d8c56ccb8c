//! `check`'s look at one stream's table: enough rows to see past ACLs.
//!
//! ServiceNow applies `sysparm_limit` before ACLs, so a one-row probe of a
//! table whose first rows the user may not read comes back empty although
//! other rows are readable. The probe reads windows of [`WINDOW`] rows in
//! `sys_id` order (at most [`MAX_WINDOWS`]) until a window holds a row the
//! user may read, and reports what an operator needs to tell "ACLs hide
//! them" from "they are in another class or table" from "they do not exist":
//! the server's count, the rows probed and how many of them were visible,
//! the classes (`sys_class_name`) of the visible rows, and the mapped
//! columns the first visible row lacks.

use crate::connector::{send, total_count};
use crate::query::TableQuery;
use crate::response::parse_rows;
use crate::rows::Row;
use crate::settings::Settings;
use crate::streams::StreamSpec;
use exposure_connector_sdk::http::Http;
use exposure_connector_sdk::types::ConnectorError;
use std::collections::BTreeMap;

/// Rows one probe window asks for.
pub const WINDOW: u32 = 100;
/// Windows a probe reads at most while every row it sees is hidden.
pub const MAX_WINDOWS: u64 = 5;

/// What the probe of one stream saw.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Probe {
    /// Rows the server counts in the table (`X-Total-Count`).
    pub server_count: Option<u64>,
    /// Rows the probe's windows covered.
    pub probed: u64,
    /// Of those, rows the user may read.
    pub visible: u64,
    /// Mapped columns the first visible row lacks; none without a visible row.
    pub missing_columns: Option<Vec<String>>,
    /// `sys_class_name` of the visible rows, with their number (when the
    /// stream maps the class).
    pub classes: BTreeMap<String, u64>,
}

impl Probe {
    /// Rows the server counted in the probed windows that the user may not read.
    pub fn hidden(&self) -> u64 {
        self.probed.saturating_sub(self.visible)
    }
}

/// Probes `spec`'s table.
pub fn probe(
    http: &mut dyn Http,
    settings: &Settings,
    spec: &StreamSpec,
) -> Result<Probe, ConnectorError> {
    let maps_class = spec.fields.iter().any(|f| f.column == "sys_class_name");
    let mut probe = Probe::default();
    for window in 0..MAX_WINDOWS {
        let offset = window * u64::from(WINDOW);
        let query = TableQuery {
            table: &spec.table,
            fields: spec.sysparm_fields(),
            order_by: Some("sys_id"),
            limit: WINDOW,
            offset,
            count: window == 0,
            ..Default::default()
        };
        let resp = send(http, settings, &query)?;
        if window == 0 {
            probe.server_count = total_count(&resp);
        }
        let envelope = parse_rows(&resp, &spec.table)?;
        let rows = envelope.result.unwrap_or_default();
        let remaining = probe.server_count.map(|n| n.saturating_sub(offset));
        probe.probed += remaining.map_or(rows.len() as u64, |r| r.min(u64::from(WINDOW)));
        probe.visible += rows.len() as u64;
        if maps_class {
            for class in rows
                .iter()
                .filter_map(|r| r.get("sys_class_name")?.text().map(str::to_string))
            {
                *probe.classes.entry(class).or_default() += 1;
            }
        }
        if let Some(first) = rows.first() {
            probe.missing_columns = Some(missing_columns(spec, first));
            break;
        }
        if remaining.is_none_or(|r| r <= u64::from(WINDOW)) {
            break;
        }
    }
    Ok(probe)
}

/// Columns of the stream's mapping absent from `row`.
fn missing_columns(spec: &StreamSpec, row: &Row<'_>) -> Vec<String> {
    let mut missing: Vec<String> = Vec::new();
    for f in &spec.fields {
        if row.get(&f.column).is_none() && !missing.contains(&f.column) {
            missing.push(f.column.clone());
        }
    }
    missing
}

/// What the operator reads under the stream in `check`'s report.
pub fn describe(spec: &StreamSpec, probe: &Probe) -> String {
    let table = &spec.table;
    let mut parts = Vec::new();
    match probe.server_count {
        Some(0) => parts.push(if spec.name == crate::streams::DEVICES {
            format!("`{table}` has no rows. If devices are missing, they may be in another class: set `device_table` to the class that holds them (its subclasses are read too).")
        } else {
            format!("`{table}` has no rows.")
        }),
        count => {
            let seen = format!(
                "{} probed in sys_id order, {} are visible to this user and {} hidden by ACLs.",
                probe.probed,
                probe.visible,
                probe.hidden()
            );
            parts.push(match count {
                Some(n) => format!("The server counts {n} rows in `{table}`; of the first {seen}"),
                None => format!("Of the first {seen}"),
            });
        }
    }
    if probe.hidden() > 0 {
        parts.push("Rows hidden by ACLs are never synced: if they should be, grant this user read access to them (the table's ACLs or the cmdb_read role).".to_string());
    }
    if !probe.classes.is_empty() {
        let classes: Vec<String> = probe
            .classes
            .iter()
            .map(|(class, n)| format!("{class} ({n})"))
            .collect();
        parts.push(format!(
            "Classes of the visible rows: {}.",
            classes.join(", ")
        ));
    }
    match &probe.missing_columns {
        Some(missing) if !missing.is_empty() => parts.push(format!(
            "These mapped columns are missing from `{table}` or not readable by the user, so their fields will be absent: {}. Check the column mapping settings.",
            missing.join(", ")
        )),
        Some(_) => {}
        None if probe.server_count != Some(0) => parts.push(format!(
            "No probed row was visible, so the column mapping could not be verified ({} rows probed).",
            probe.probed
        )),
        None => {}
    }
    parts.join(" ")
}
