//! Full syncs against the emulator: exact records, upserts, deletions,
//! nesting, partitions and ACL-emptied pages.

use connector_e2e::{expected_records, ConfigSpec, Fixture};
use serde_json::Value;

const STREAMS: [&str; 3] = ["devices", "network_adapters", "business_applications"];

fn assert_exports_match(f: &Fixture, config: &std::path::Path) {
    for stream in STREAMS {
        let got = f.export(config, stream, false);
        let want = expected_records(f.state(), stream);
        assert_eq!(got.len(), want.len(), "{stream}: record count");
        assert_eq!(got, want, "{stream}: records");
    }
}

#[test]
fn sync_then_export_yields_exactly_the_emulators_records() {
    let f = Fixture::start(300);
    // The host's default partitioning (4 sys_id ranges per stream).
    let config = f.config(&ConfigSpec {
        sync: vec!["partitions = 4".into()],
        ..Default::default()
    });
    let out = f.sync(&config).ok();
    assert!(out.contains("devices") && out.contains("complete"), "{out}");
    assert_exports_match(&f, &config);
    // And against the generator's own rows, before the emulator stored them.
    let spec = servicenow_emulator::DataSpec {
        devices: 300,
        seed: 7,
    };
    for stream in STREAMS {
        let generated = connector_e2e::generated_records(&spec, stream);
        assert!(!generated.is_empty(), "{stream}");
        assert_eq!(f.export(&config, stream, false), generated, "{stream}");
    }
    // Names with unicode, quotes, backslashes and carets survived the trip.
    let devices = f.export(&config, "devices", false);
    assert!(devices.iter().any(|d| d["name"]
        .as_str()
        .is_some_and(|n| n.contains("Café \"ops\" \\ ^srv") && n.contains("東京"))));
    // Every request carried the host's credential.
    let requests = f.state().requests();
    assert!(!requests.is_empty());
    assert!(
        requests
            .iter()
            .all(|r| r.user.as_deref() == Some("svc_exposure")),
        "{requests:?}"
    );
}

#[test]
fn a_full_resync_updates_in_place_and_marks_deletions() {
    let f = Fixture::start(120);
    let config = f.default_config();
    f.sync(&config).ok();
    // Change one device, delete another at the source.
    let (changed, removed) = f.state().with_db_mut(|db| {
        let t = db.tables.get_mut("cmdb_ci_computer").unwrap();
        let changed = t.rows()[0].key().to_string();
        let removed = t.rows()[5].key().to_string();
        assert!(t.set(&changed, "name", "renamed"));
        assert!(t.remove(&removed).is_some());
        (changed, removed)
    });
    let out = f.sync_full(&config).ok();
    let devices = f.export(&config, "devices", false);
    assert_eq!(devices.len(), 119, "{out}");
    assert_eq!(
        devices
            .iter()
            .filter(|d| d["sysId"] == changed.as_str())
            .count(),
        1
    );
    assert!(devices
        .iter()
        .any(|d| d["sysId"] == changed.as_str() && d["name"] == "renamed"));
    assert!(!devices.iter().any(|d| d["sysId"] == removed.as_str()));
    assert_exports_match(&f, &config);
    // With --include-deleted the removed device is there, marked.
    let all: Vec<Value> = f
        .cli(&[
            "export",
            "--config",
            config.to_str().unwrap(),
            "--stream",
            "devices",
            "--include-deleted",
        ])
        .ok()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(all.len(), 120);
    let gone = all.iter().find(|d| d["sysId"] == removed.as_str()).unwrap();
    assert!(gone["deletedAt"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        all.iter().filter(|d| d.get("deletedAt").is_some()).count(),
        1
    );
    // Nothing is stored twice: the database has one row per key.
    let db = rusqlite::Connection::open(f.dir.path().join("inventory.db")).unwrap();
    let (rows, keys): (i64, i64) = db
        .query_row(
            "SELECT COUNT(*), COUNT(DISTINCT stream_id || ' ' || key) FROM records",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(rows, keys);
}

#[test]
fn nested_export_embeds_each_devices_adapters() {
    let f = Fixture::start(150);
    let config = f.default_config();
    f.sync(&config).ok();
    let adapters = expected_records(f.state(), "network_adapters");
    let devices = f.export(&config, "devices", true);
    assert_eq!(devices.len(), 150);
    let mut embedded = 0;
    for d in &devices {
        let mut want: Vec<&Value> = adapters
            .iter()
            .filter(|a| a["deviceSysId"] == d["sysId"])
            .collect();
        want.sort_by_key(|a| a["sysId"].as_str().unwrap().to_string());
        let got: Vec<&Value> = d["networkAdapters"]
            .as_array()
            .expect("networkAdapters array")
            .iter()
            .collect();
        assert_eq!(got, want);
        embedded += got.len();
        // Without the embedded array the device is exactly the flat record.
        let mut flat = d.clone();
        flat.as_object_mut().unwrap().remove("networkAdapters");
        assert!(expected_records(f.state(), "devices").contains(&flat));
    }
    assert_eq!(embedded, adapters.len());
}

#[test]
fn partitioned_sync_reads_the_same_records_within_the_concurrency_budget() {
    // Twelve partitions (four per stream) ask for pages, their read calls
    // sharing three permits: the emulator never sees a fourth request
    // before one of the three in flight is answered.
    let f = Fixture::start_with(400, |c| c.latency = std::time::Duration::from_millis(10));
    let config = f.config(&ConfigSpec {
        sync: vec![
            "partitions = 4".into(),
            "concurrency = 3".into(),
            "page_size = 50".into(),
        ],
        ..Default::default()
    });
    f.sync(&config).ok();
    assert_exports_match(&f, &config);
    let keyset = f
        .state()
        .requests()
        .iter()
        .filter(|r| r.query.contains("sys_id%3E"))
        .count();
    assert!(keyset > 12, "partitions page by keyset");
    let most = f.state().most_in_flight();
    assert!(
        (1..=3).contains(&most),
        "{most} requests were in flight at once, past `concurrency = 3`"
    );
}

#[test]
fn pages_emptied_by_acls_over_more_than_10000_rows_are_walked_past() {
    let f = Fixture::start(13_000);
    let hidden: Vec<String> = f.state().with_db(|db| {
        db.tables["cmdb_ci_computer"].rows()[1_000..12_200]
            .iter()
            .map(|r| r.key().to_string())
            .collect()
    });
    f.state().hide("cmdb_ci_computer", hidden);
    // References arrive as {"link", "value"} even though the connector asks not to.
    f.state()
        .force_reference_links
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let config = f.config(&ConfigSpec {
        sync: vec!["page_size = 1000".into(), "partitions = 1".into()],
        ..Default::default()
    });
    let report: Value = serde_json::from_str(
        &f.cli(&["sync", "--json", "--config", config.to_str().unwrap()])
            .ok(),
    )
    .unwrap();
    let devices_report = &report["streams"][0];
    assert_eq!(devices_report["stream"], "devices");
    assert_eq!(devices_report["partitions"][0]["hidden_by_acl"], 11_200);

    let devices = f.export(&config, "devices", false);
    assert_eq!(devices.len(), 1_800);
    assert_eq!(devices, expected_records(f.state(), "devices"));
    assert_eq!(
        f.export(&config, "network_adapters", false),
        expected_records(f.state(), "network_adapters")
    );
    let empty_windows = f
        .state()
        .requests()
        .iter()
        .filter(|r| r.query.contains("sysparm_offset="))
        .count();
    assert!(
        empty_windows >= 10,
        "walked the gap with {empty_windows} offset requests"
    );
}

#[test]
fn a_sync_while_data_changes_then_incremental_and_full_syncs_end_at_the_final_state() {
    let f = Fixture::start_with(600, |c| {
        c.latency = std::time::Duration::from_millis(15);
        c.mutations_per_second = 200.0;
    });
    let config = f.config(&ConfigSpec {
        sync: vec!["page_size = 50".into()],
        ..Default::default()
    });
    f.sync(&config).ok();
    f.state().set_mutating(false);
    assert!(
        f.state().mutations().len() >= 10,
        "the mutator ran during the sync"
    );
    // One change of each kind for certain, after the first sync.
    let mut rng = servicenow_emulator::data::Rng::new(3);
    for kind in [
        servicenow_emulator::MutationKind::Insert,
        servicenow_emulator::MutationKind::Update,
        servicenow_emulator::MutationKind::Delete,
    ] {
        f.state().mutate(kind, &mut rng).unwrap();
    }
    let log = f.state().mutations();
    // An incremental sync brings every insert and update ...
    let out = f.sync(&config).ok();
    assert!(out.contains("incremental"), "{out}");
    let now: std::collections::HashSet<String> = f.state().with_db(|db| {
        db.tables["cmdb_ci_computer"]
            .rows()
            .iter()
            .map(|r| r.key().to_string())
            .collect()
    });
    let live: Vec<serde_json::Value> = f
        .export(&config, "devices", false)
        .into_iter()
        .filter(|d| now.contains(d["sysId"].as_str().unwrap()))
        .collect();
    assert_eq!(live, expected_records(f.state(), "devices"));
    // ... and a full sync the deletions too.
    f.sync_full(&config).ok();
    // The emulator's data now is the truth; the log says what changed.
    assert_eq!(
        f.export(&config, "devices", false),
        expected_records(f.state(), "devices")
    );
    let devices = f.export(&config, "devices", false);
    let ids: std::collections::HashSet<&str> = devices
        .iter()
        .map(|d| d["sysId"].as_str().unwrap())
        .collect();
    for m in &log {
        let exists_now = f
            .state()
            .with_db(|db| db.tables["cmdb_ci_computer"].get(&m.sys_id).is_some());
        assert_eq!(ids.contains(m.sys_id.as_str()), exists_now, "{m:?}");
    }
    let deleted = log
        .iter()
        .filter(|m| m.kind == servicenow_emulator::MutationKind::Delete)
        .count();
    assert!(deleted > 0);
}

#[test]
fn the_second_sync_reads_only_what_changed_since_the_first() {
    let f = Fixture::start(10_000);
    // One partition: an incremental read costs two requests per stream and
    // partition (rows, deletion audit) however few rows changed.
    let config = f.config(&ConfigSpec {
        sync: vec!["page_size = 100".into(), "partitions = 1".into()],
        ..Default::default()
    });
    f.sync(&config).ok();
    let full_requests = f.state().requests().len();
    // 1% of the devices change: 99 updates and an insert.
    let mut rng = servicenow_emulator::data::Rng::new(9);
    let mut changed: Vec<String> = (0..99)
        .map(|_| {
            let m = f
                .state()
                .mutate(servicenow_emulator::MutationKind::Update, &mut rng);
            m.unwrap().sys_id
        })
        .collect();
    let inserted = f
        .state()
        .mutate(servicenow_emulator::MutationKind::Insert, &mut rng);
    changed.push(inserted.unwrap().sys_id);
    let out = f.sync(&config).ok();
    assert_eq!(out.matches("incremental").count(), 3, "{out}");
    let incremental = f.state().requests()[full_requests..].to_vec();
    // Each stream's rows changed since the watermark, then its deletions
    // audited since then (refused here: the user has only cmdb_read).
    let (audit, rows): (Vec<_>, Vec<_>) = incremental
        .iter()
        .partition(|r| r.path.ends_with("/sys_audit_delete"));
    assert!(
        rows.iter()
            .all(|r| r.query.contains("sys_updated_on%3E%3D")),
        "{rows:?}"
    );
    assert!(
        audit.len() == 3
            && audit
                .iter()
                .all(|r| r.query.contains("sys_created_on%3E%3D")),
        "{audit:?}"
    );
    assert!(
        incremental.len() * 20 < full_requests,
        "{} requests against {full_requests}",
        incremental.len()
    );
    let devices = f.export(&config, "devices", false);
    assert_eq!(devices, expected_records(f.state(), "devices"));
    assert!(changed
        .iter()
        .all(|id| devices.iter().any(|d| d["sysId"] == id.as_str())));
}

#[test]
fn a_stream_whose_finishing_step_fails_is_not_reported_complete() {
    let f = Fixture::start(20);
    let config = f.default_config();
    f.sync(&config).ok();
    // The database refuses to mark any stream complete from now on.
    let db = rusqlite::Connection::open(f.dir.path().join("inventory.db")).unwrap();
    db.execute_batch(
        "CREATE TRIGGER refuse_finish BEFORE UPDATE OF complete ON streams WHEN NEW.complete = 1
         BEGIN SELECT RAISE(ABORT, 'the disk refused the write'); END;",
    )
    .unwrap();
    drop(db);
    let (code, message) = f.sync_full(&config).err();
    assert_eq!(code, 1, "{message}");
    assert!(
        message.contains("finishing the stream failed")
            && message.contains("the disk refused the write"),
        "{message}"
    );
    let status = f
        .cli(&["status", "--config", config.to_str().unwrap(), "--json"])
        .ok();
    let health = &serde_json::from_str::<serde_json::Value>(&status).unwrap()["health"];
    assert_eq!(
        (health["state"].as_str(), health["errorKind"].as_str()),
        (Some("failed"), Some("store")),
        "{health}"
    );
}

#[test]
fn a_subclass_as_device_table_and_a_remapped_column() {
    let f = Fixture::start(200);
    let config = f.config(&ConfigSpec {
        settings: vec![
            "device_table = \"cmdb_ci_server\"".into(),
            "device_criticality_column = \"asset_tag\"".into(),
        ],
        ..Default::default()
    });
    f.sync(&config).ok();
    // Servers and their own subclasses; the criticality field carries the asset tag.
    let servers = [
        "cmdb_ci_server",
        "cmdb_ci_win_server",
        "cmdb_ci_linux_server",
    ];
    let expected: Vec<Value> = expected_records(f.state(), "devices")
        .into_iter()
        .filter(|r| servers.contains(&r["sysClassName"].as_str().unwrap_or_default()))
        .map(|mut r| {
            let record = r.as_object_mut().unwrap();
            record.remove("serviceNowCriticality");
            if let Some(tag) = record.get("assetTag").cloned() {
                record.insert("serviceNowCriticality".into(), tag);
            }
            r
        })
        .collect();
    let classes: std::collections::BTreeSet<&str> = expected
        .iter()
        .filter_map(|r| r["sysClassName"].as_str())
        .collect();
    assert!(
        classes.len() > 1 && expected.len() < 200,
        "{classes:?}, {}",
        expected.len()
    );
    assert_eq!(f.export(&config, "devices", false), expected);
}

/// Remembers, per stream, the tokio task that committed each page.
#[derive(Default)]
struct TaskRecorder {
    tasks: std::sync::Mutex<Vec<(String, Option<tokio::task::Id>)>>,
}

impl connector_engine::progress::Progress for TaskRecorder {
    fn expect(&self, _: &str, _: u64) {}
    fn committed(&self, stream: &str, _: u64) {
        let task = tokio::task::try_id();
        self.tasks.lock().unwrap().push((stream.to_string(), task));
    }
    fn finished(&self, _: &str, _: &str) {}
}

#[test]
fn each_partition_is_read_by_a_task_of_its_own() {
    // Partitions that are futures of one task never run on two cores at
    // once; tasks of their own on the multi-threaded runtime can.
    let f = Fixture::start(400);
    let config = f.config(&ConfigSpec {
        sync: vec!["page_size = 50".into(), "partitions = 4".into()],
        ..Default::default()
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let recorder = std::sync::Arc::new(TaskRecorder::default());
    let report = runtime.block_on(async {
        let flags = connector_host::cli::SyncFlags::default();
        let mut prepared = connector_host::commands::sync::prepare_sync(&config, &f.env, &flags)
            .await
            .unwrap();
        prepared.job.progress = recorder.clone();
        let store = std::sync::Arc::new(std::sync::Mutex::new(prepared.store));
        connector_engine::sync::run(&prepared.job, store)
            .await
            .unwrap()
    });
    assert!(report.complete(), "{report:?}");
    let tasks = recorder.tasks.lock().unwrap();
    for stream in ["devices", "network_adapters"] {
        let ids: std::collections::HashSet<_> = tasks
            .iter()
            .filter(|(s, _)| s == stream)
            .map(|(_, id)| {
                id.unwrap_or_else(|| panic!("{stream}: a page committed outside any task"))
            })
            .collect();
        assert_eq!(ids.len(), 4, "{stream}: tasks of its 4 partitions: {ids:?}");
    }
    drop(tasks);
    assert_exports_match(&f, &config);
}
