//! What happens to records that stop coming: deleted at the source (seen in
//! `sys_audit_delete`), no longer returned (hidden by an ACL, or deleted
//! without an audit the user may read) and aged out of `active_within_days`.

use connector_e2e::{expected_records, ConfigSpec, Fixture};
use serde_json::Value;
use servicenow_emulator::auth::AUDIT_READER_ROLE;
use servicenow_emulator::data::Rng;
use servicenow_emulator::MutationKind;
use std::collections::HashMap;

/// sysId → deletionReason (`None` for live records) of an export.
fn reasons(records: &[Value]) -> HashMap<String, Option<String>> {
    records
        .iter()
        .map(|r| {
            (
                r["sysId"].as_str().unwrap().to_string(),
                r.get("deletionReason")
                    .map(|v| v.as_str().unwrap().to_string()),
            )
        })
        .collect()
}

fn delete_devices(f: &Fixture, n: usize, seed: u64) -> Vec<String> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|_| {
            f.state()
                .mutate(MutationKind::Delete, &mut rng)
                .unwrap()
                .sys_id
        })
        .collect()
}

fn sync_json(f: &Fixture, config: &std::path::Path, full: bool) -> Value {
    let mut args = vec!["sync", "--json", "--config", config.to_str().unwrap()];
    if full {
        args.insert(1, "--full");
    }
    serde_json::from_str(&f.cli(&args).ok()).expect("sync --json prints JSON")
}

fn devices_report(report: &Value) -> &Value {
    let streams = report["streams"].as_array().unwrap();
    streams.iter().find(|s| s["stream"] == "devices").unwrap()
}

#[test]
fn deletions_say_whether_the_source_deleted_the_record_or_it_stopped_being_returned() {
    let f = Fixture::start_with(240, |c| c.users[0].roles.push(AUDIT_READER_ROLE.into()));
    let config = f.config(&ConfigSpec {
        sync: vec!["page_size = 40".into(), "partitions = 2".into()],
        ..Default::default()
    });
    f.sync(&config).ok();
    let deleted = delete_devices(&f, 3, 11);
    let hidden: Vec<String> = f.state().with_db(|db| {
        db.tables["cmdb_ci_computer"].rows()[10..12]
            .iter()
            .map(|r| r.key().to_string())
            .collect()
    });
    f.state().hide("cmdb_ci_computer", hidden.clone());

    // An incremental sync sees the audited deletions (but not the ACL change).
    let report = sync_json(&f, &config, false);
    let devices = devices_report(&report);
    assert_eq!(devices["mode"], "incremental");
    assert_eq!(devices["deleted_at_source"], 3, "{devices}");
    let r = reasons(&f.export_including_deleted(&config, "devices"));
    for id in &deleted {
        assert_eq!(r[id].as_deref(), Some("deleted-at-source"), "{id}");
    }
    for id in &hidden {
        assert_eq!(r[id], None, "{id} is still live after an incremental sync");
    }

    // A full sync then marks the hidden ones as no longer returned, and leaves
    // the audited ones as they were.
    let report = sync_json(&f, &config, true);
    let devices = devices_report(&report);
    assert_eq!(
        (&devices["not_returned"], &devices["deleted_at_source"]),
        (&Value::from(2), &Value::from(0)),
        "{devices}"
    );
    let all = f.export_including_deleted(&config, "devices");
    let r = reasons(&all);
    for id in &hidden {
        assert_eq!(r[id].as_deref(), Some("not-returned"), "{id}");
    }
    for id in &deleted {
        assert_eq!(r[id].as_deref(), Some("deleted-at-source"), "{id}");
    }
    assert_eq!(r.values().filter(|v| v.is_some()).count(), 5);
    // The source's deletion time is what `deletedAt` says.
    let log = f.state().mutations();
    for m in &log {
        let record = all
            .iter()
            .find(|d| d["sysId"] == m.sys_id.as_str())
            .unwrap();
        assert_eq!(record["deletedAt"], m.at.replace(' ', "T") + "Z");
    }
    // Live records are exactly what the user may see.
    let visible: Vec<Value> = expected_records(f.state(), "devices")
        .into_iter()
        .filter(|d| !hidden.iter().any(|h| d["sysId"] == h.as_str()))
        .collect();
    assert_eq!(f.export(&config, "devices", false), visible);
}

#[test]
fn without_access_to_the_audit_deletions_are_no_longer_returned_and_the_operator_is_told() {
    let f = Fixture::start(150);
    let config = f.default_config();
    f.sync(&config).ok();
    let deleted = delete_devices(&f, 2, 5);
    let out = f.sync_full(&config).ok();
    assert!(
        out.contains("warning: `sys_audit_delete` is not readable by this user"),
        "{out}"
    );
    assert!(out.contains("devices: 0 deleted at the source, 0 aged out of the retention window, 2 no longer returned"), "{out}");
    let r = reasons(&f.export_including_deleted(&config, "devices"));
    for id in &deleted {
        assert_eq!(r[id].as_deref(), Some("not-returned"));
    }
    // With the audit switched off, nothing asks for it and nothing warns.
    let quiet = f.config(&ConfigSpec {
        settings: vec!["deletion_audit = \"off\"".into()],
        ..Default::default()
    });
    let before = f.state().requests().len();
    let out = f.sync_full(&quiet).ok();
    assert!(!out.contains("warning"), "{out}");
    assert!(f.state().requests()[before..]
        .iter()
        .all(|r| !r.path.contains("sys_audit_delete")));
    assert_eq!(
        f.export(&quiet, "devices", false),
        expected_records(f.state(), "devices")
    );
}

#[test]
fn active_within_days_keeps_recent_devices_and_ages_out_the_rest() {
    let f = Fixture::start(300);
    let all_devices = f.default_config();
    f.sync(&all_devices).ok();
    // A window starting on 2025-06-01 (the emulator's devices were updated
    // between 2025-01-01 and 2025-10-28).
    let today = time::OffsetDateTime::now_utc().date();
    let start = time::macros::date!(2025 - 06 - 01);
    let days = (today - start).whole_days();
    let recent = f.config(&ConfigSpec {
        settings: vec![format!("active_within_days = \"{days}\"")],
        ..Default::default()
    });

    let report = sync_json(&f, &recent, false);
    let devices = devices_report(&report);
    assert_eq!(devices["mode"], "incremental");
    // The window the read used, as stored (so a date change mid-test cannot
    // make the oracle disagree).
    let db = rusqlite::Connection::open(f.dir.path().join("inventory.db")).unwrap();
    let window: String = db
        .query_row(
            "SELECT MIN(window_start) FROM partitions WHERE stream = 'devices'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(window.ends_with("T00:00:00Z"), "{window}");
    let expected: Vec<Value> = expected_records(f.state(), "devices")
        .into_iter()
        .filter(|d| d["sysUpdatedOn"].as_str().unwrap() >= window.as_str())
        .collect();
    assert!(
        expected.len() > 50 && expected.len() < 250,
        "{}",
        expected.len()
    );
    assert_eq!(devices["aged_out"], 300 - expected.len(), "{devices}");
    assert_eq!(f.export(&recent, "devices", false), expected);
    let r = reasons(&f.export_including_deleted(&recent, "devices"));
    assert_eq!(r.len(), 300);
    assert!(r
        .values()
        .all(|v| v.is_none() || v.as_deref() == Some("aged-out")));

    // A full read with the window asks the server for recent devices only and
    // has nothing left to mark.
    let before = f.state().requests().len();
    let report = sync_json(&f, &recent, true);
    let devices = devices_report(&report);
    assert_eq!(
        (&devices["aged_out"], &devices["not_returned"]),
        (&Value::from(0), &Value::from(0))
    );
    assert_eq!(devices["partitions"][0]["rows_returned"], expected.len());
    assert!(f.state().requests()[before..]
        .iter()
        .filter(|r| r.path.ends_with("cmdb_ci_computer"))
        .all(|r| r.query.contains("sys_updated_on%3E%3D")));
    assert_eq!(f.export(&recent, "devices", false), expected);
}
