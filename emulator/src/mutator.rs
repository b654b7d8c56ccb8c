//! Data that changes while a sync runs: inserts, updates (moving
//! `sys_updated_on` to the emulator's clock) and deletes (recorded in
//! `sys_audit_delete`), each logged so a test can state the exact end state.

use crate::data::{device_rows, format_datetime, Database, Related, Rng, Row, Table};
use crate::server::State;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What a mutation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MutationKind {
    /// A new device (with its adapters).
    Insert,
    /// An existing device changed (`os_version`, `sys_updated_on`).
    Update,
    /// A device was deleted (and written to `sys_audit_delete`).
    Delete,
}

/// One change to the data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mutation {
    /// What happened.
    pub kind: MutationKind,
    /// The table changed.
    pub table: String,
    /// The row's sys_id.
    pub sys_id: String,
    /// The emulator's clock at the change (`YYYY-MM-DD HH:MM:SS`, UTC).
    pub at: String,
    /// The device's row as it was before an update or a delete (none for
    /// an insert): putting these back, latest first, restores the devices
    /// (a delete's `sys_audit_delete` row stays).
    pub replaced: Option<Row>,
}

const DEVICES: &str = "cmdb_ci_computer";

fn now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format_datetime(secs as i64)
}

fn set_updated(table: &Table, row: &crate::data::Row, at: &str) -> crate::data::Row {
    let mut row = row.clone();
    for column in ["sys_updated_on", "sys_created_on"] {
        if let Some(c) = table.column(column) {
            row = row.with(c, at);
        }
    }
    row
}

/// The sys_id of a random row, if the table has any.
fn random_key(table: &Table, rng: &mut Rng) -> Option<String> {
    let rows = table.rows();
    if rows.is_empty() {
        return None;
    }
    let i = rng.below(rows.len() as u64) as usize;
    Some(rows[i].key().to_string())
}

impl State {
    /// Applies one mutation of `kind`, chosen with `rng`; returns what it did
    /// (`None` when there was nothing to update or delete).
    pub fn mutate(&self, kind: MutationKind, rng: &mut Rng) -> Option<Mutation> {
        let at = now();
        let (sys_id, replaced) = self.with_db_mut(|db| {
            let seed = rng.next_u64();
            match kind {
                MutationKind::Insert => insert(db, seed, &at).map(|id| (id, None)),
                MutationKind::Update => update(db, rng, &at),
                MutationKind::Delete => delete(db, rng, &at),
            }
        })?;
        let mutation = Mutation {
            kind,
            table: DEVICES.into(),
            sys_id,
            at,
            replaced,
        };
        self.record_mutation(mutation.clone());
        Some(mutation)
    }
}

/// Inserts a new device made from `seed`, with its adapters, addresses
/// and relations, changed `at`; returns its sys_id.
fn insert(db: &mut Database, seed: u64, at: &str) -> Option<String> {
    let apps: Vec<String> = db.tables["cmdb_ci_business_app"]
        .rows()
        .iter()
        .map(|r| r.key().to_string())
        .collect();
    let mut related = Related::default();
    let device = device_rows(seed, (seed % 1_000_000_000) as usize, &apps, &mut related);
    let devices = db.tables.get_mut(DEVICES)?;
    let device = set_updated(devices, &device, at);
    let id = device.key().to_string();
    if devices.find(&id).is_err() {
        devices.put(device);
    }
    for (table, rows) in [
        ("cmdb_ci_network_adapter", related.adapters),
        ("cmdb_ci_ip_address", related.ip_addresses),
        ("cmdb_rel_ci", related.relations),
    ] {
        let t = db.tables.get_mut(table)?;
        for row in rows {
            let row = set_updated(t, &row, at);
            if t.find(row.key()).is_err() {
                t.put(row);
            }
        }
    }
    Some(id)
}

/// Changes a random device's `os_version`, `at`; returns its sys_id and
/// its row before.
fn update(db: &mut Database, rng: &mut Rng, at: &str) -> Option<(String, Option<Row>)> {
    let devices = db.tables.get_mut(DEVICES)?;
    let id = random_key(devices, rng)?;
    let before = devices.get(&id)?.clone();
    let version = format!("{}.{}", 1 + rng.below(20), rng.below(100));
    devices.set(&id, "os_version", &version);
    devices.set(&id, "sys_updated_on", at);
    Some((id, Some(before)))
}

/// Deletes a random device, `at`, and records it in `sys_audit_delete`;
/// returns its sys_id and its row.
fn delete(db: &mut Database, rng: &mut Rng, at: &str) -> Option<(String, Option<Row>)> {
    let devices = db.tables.get_mut(DEVICES)?;
    let id = random_key(devices, rng)?;
    let row = devices.remove(&id)?;
    let name = devices.value(&row, "name").to_string();
    db.tables.get_mut("sys_audit_delete")?.upsert(&[
        ("sys_id", rng.sys_id()),
        ("tablename", DEVICES.to_string()),
        ("documentkey", id.clone()),
        ("display_value", name),
        ("sys_created_on", at.to_string()),
        ("sys_created_by", "admin".to_string()),
    ]);
    Some((id, Some(row)))
}

/// Mutates the data at `per_second` changes per second (inserts, updates and
/// deletes in the ratio 1:3:1) until the future is dropped; with a rate of 0
/// it waits forever without changing anything.
pub async fn run(state: Arc<State>, per_second: f64, seed: u64) {
    if per_second <= 0.0 {
        return std::future::pending().await;
    }
    let mut rng = Rng::new(seed);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / per_second));
    loop {
        tick.tick().await;
        if !state.mutating() {
            continue;
        }
        let kind = match rng.below(5) {
            0 => MutationKind::Insert,
            4 => MutationKind::Delete,
            _ => MutationKind::Update,
        };
        state.mutate(kind, &mut rng);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{generate, DataSpec};

    #[test]
    fn mutations_change_the_data_and_are_logged() {
        let state = State::new(
            generate(DataSpec {
                devices: 20,
                seed: 1,
            }),
            vec![],
            Duration::ZERO,
            "http",
        );
        let mut rng = Rng::new(5);
        let inserted = state.mutate(MutationKind::Insert, &mut rng).unwrap();
        let before = state.with_db(|db| db.tables[DEVICES].clone());
        let updated = state.mutate(MutationKind::Update, &mut rng).unwrap();
        let deleted = state.mutate(MutationKind::Delete, &mut rng).unwrap();
        assert_eq!(inserted.replaced, None);
        for m in [&updated, &deleted] {
            assert_eq!(
                m.replaced.as_ref(),
                before.get(&m.sys_id),
                "{:?} replaced the device's row as it was",
                m.kind
            );
        }
        state.with_db(|db| {
            let devices = &db.tables[DEVICES];
            assert_eq!(devices.rows().len(), 20);
            assert!(devices.get(&inserted.sys_id).is_some());
            assert_eq!(
                devices.value(devices.get(&updated.sys_id).unwrap(), "sys_updated_on"),
                updated.at
            );
            assert!(devices.get(&deleted.sys_id).is_none());
            let audit = &db.tables["sys_audit_delete"];
            assert_eq!(audit.value(&audit.rows()[0], "documentkey"), deleted.sys_id);
            assert!(devices.rows().windows(2).all(|w| w[0].key() < w[1].key()));
        });
        assert_eq!(state.mutations(), vec![inserted, updated, deleted]);
    }
}
