//! The store's behaviour, checked on SQLite and (run by `tests/run-all.sh`,
//! which starts a throw-away cluster) on PostgreSQL.

use super::testing::on_every_backend;
use super::*;

fn rec(key: &str, data: &str) -> StoredRecord {
    StoredRecord {
        key: key.into(),
        data: data.into(),
        parent: None,
    }
}

fn keys(s: &Store) -> Vec<String> {
    let mut out = Vec::new();
    s.for_each_record("c", "s", false, |k, _, _| {
        out.push(k.to_string());
        Ok(())
    })
    .unwrap();
    out
}

fn page<'a>(
    generation: i64,
    partition: u32,
    records: &'a [StoredRecord],
    next_cursor: Option<&'a str>,
    watermark: Option<&'a str>,
) -> PageCommit<'a> {
    PageCommit {
        watermark,
        ..PageCommit::of_records(generation, partition, records, next_cursor)
    }
}

fn forced_full(partitions: u32) -> StreamRequest {
    StreamRequest {
        force_full: true,
        ..full(partitions)
    }
}

fn full(partitions: u32) -> StreamRequest {
    StreamRequest {
        partitions,
        incremental_partitions: partitions,
        force_full: false,
        supports_incremental: true,
    }
}

fn health_changes_are_kept_newest_first_and_repeats_are_not(s: &mut Store) {
    let health = |state, message: Option<&str>| Health {
        state,
        error_kind: message.map(|_| "unauthenticated".to_string()),
        message: message.map(str::to_string),
    };
    s.set_health("c", &health(HealthState::Connected, None))
        .unwrap();
    s.set_health("c", &health(HealthState::Connected, None))
        .unwrap();
    s.set_health("c", &health(HealthState::Failed, Some("wrong password")))
        .unwrap();
    s.set_health("c", &health(HealthState::Failed, Some("wrong password")))
        .unwrap();
    s.set_health("c", &health(HealthState::Connected, None))
        .unwrap();
    let history = s.health_history("c", 10).unwrap();
    let states: Vec<(HealthState, Option<&str>)> = history
        .iter()
        .map(|(h, _)| (h.state, h.message.as_deref()))
        .collect();
    assert_eq!(
        states,
        vec![
            (HealthState::Connected, None),
            (HealthState::Failed, Some("wrong password")),
            (HealthState::Connected, None),
        ]
    );
    assert_eq!(s.health_history("c", 1).unwrap().len(), 1);
    assert!(s.health_history("other", 10).unwrap().is_empty());
}

fn deleting_a_connection_leaves_the_others(s: &mut Store) {
    for connection in ["c", "other"] {
        let p = s.begin_stream(connection, "s", full(1)).unwrap();
        s.commit_page(
            connection,
            "s",
            page(1, 0, &[rec("a", "{}"), rec("b", "{}")], None, None),
        )
        .unwrap();
        s.finish_stream(connection, "s", &p, None).unwrap();
        let run = s.start_run(connection).unwrap();
        s.finish_run(run, "complete", "{}").unwrap();
        s.set_health(
            connection,
            &Health {
                state: HealthState::Connected,
                error_kind: None,
                message: None,
            },
        )
        .unwrap();
    }
    assert_eq!(s.delete_connection("c").unwrap(), 2);
    assert!(s.counts("c").unwrap().is_empty());
    assert!(s.health("c").unwrap().is_none());
    assert!(s.health_history("c", 5).unwrap().is_empty());
    assert!(s.recent_runs("c", 5).unwrap().is_empty());
    // The other connection keeps everything.
    assert_eq!(s.counts("other").unwrap(), vec![("s".to_string(), 2, 0)]);
    assert!(s.health("other").unwrap().is_some());
    assert_eq!(s.recent_runs("other", 5).unwrap().len(), 1);
    // A later sync of the deleted connection starts afresh.
    let p = s.begin_stream("c", "s", full(1)).unwrap();
    assert!(!p.resumed);
}

fn a_run_that_never_ended_is_interrupted_when_the_next_starts(s: &mut Store) {
    let killed = s.start_run("c").unwrap();
    let other = s.start_run("other").unwrap();
    let next = s.start_run("c").unwrap();
    let status = |s: &mut Store, connection, run| {
        s.recent_runs(connection, 5)
            .unwrap()
            .into_iter()
            .find(|r| r.id == run)
            .map(|r| (r.status, r.finished_at))
            .unwrap()
    };
    assert_eq!(status(s, "c", killed), ("interrupted".into(), None));
    assert_eq!(status(s, "c", next), ("running".into(), None));
    assert_eq!(status(s, "other", other), ("running".into(), None));
    // A run that ended keeps its status.
    s.finish_run(next, "complete", "{}").unwrap();
    s.start_run("c").unwrap();
    assert_eq!(status(s, "c", next).0, "complete");
}

fn resume_and_deletions(s: &mut Store) {
    let p = s.begin_stream("c", "s", full(2)).unwrap();
    assert_eq!(
        (p.generation, p.resumed, &p.mode),
        (1, false, &ReadMode::Full)
    );
    s.commit_page(
        "c",
        "s",
        page(
            1,
            0,
            &[rec("a", "{}"), rec("b", "{}")],
            Some("cur"),
            Some("w1"),
        ),
    )
    .unwrap();
    // Interrupted: the next run resumes partition 0 at its cursor.
    let p = s.begin_stream("c", "s", full(2)).unwrap();
    assert!(p.resumed);
    assert_eq!(p.partitions[0].cursor.as_deref(), Some("cur"));
    s.commit_page("c", "s", page(1, 0, &[rec("b", "{\"x\":1}")], None, None))
        .unwrap();
    assert_eq!(s.finish_stream("c", "s", &p, None).unwrap().not_returned, 0);
    s.commit_page("c", "s", page(1, 1, &[rec("c", "{}")], None, Some("w0")))
        .unwrap();
    assert_eq!(s.finish_stream("c", "s", &p, None).unwrap().not_returned, 0);
    assert_eq!(keys(s), ["a", "b", "c"]);
    // The next read is incremental from the stream's watermark, the
    // earliest of its partitions', and deletes nothing.
    let p = s.begin_stream("c", "s", full(2)).unwrap();
    assert_eq!(
        (p.generation, &p.mode),
        (
            1,
            &ReadMode::Incremental {
                watermark: "w0".into()
            }
        )
    );
    s.commit_page("c", "s", page(1, 0, &[rec("d", "{}")], None, Some("w5")))
        .unwrap();
    s.commit_page("c", "s", page(1, 1, &[], None, Some("w4")))
        .unwrap();
    assert_eq!(s.finish_stream("c", "s", &p, None).unwrap().not_returned, 0);
    assert_eq!(keys(s), ["a", "b", "c", "d"]);

    // A forced full read is a new generation: `a` and `d`, not seen, are deleted.
    let p = s.begin_stream("c", "s", forced_full(2)).unwrap();
    assert_eq!((p.generation, &p.mode), (2, &ReadMode::Full));
    s.commit_page("c", "s", page(2, 0, &[rec("b", "{}")], None, None))
        .unwrap();
    s.commit_page("c", "s", page(2, 1, &[rec("c", "{}")], None, None))
        .unwrap();
    assert_eq!(s.finish_stream("c", "s", &p, None).unwrap().not_returned, 2);
    assert_eq!(keys(s), ["b", "c"]);
    // No watermark from that read: the next one is full again.
    assert_eq!(
        s.begin_stream("c", "s", full(2)).unwrap().mode,
        ReadMode::Full
    );
}

fn an_interrupted_incremental_read_resumes_as_incremental(s: &mut Store) {
    let p = s.begin_stream("c", "s", full(1)).unwrap();
    s.commit_page("c", "s", page(1, 0, &[rec("a", "{}")], None, Some("w1")))
        .unwrap();
    s.finish_stream("c", "s", &p, None).unwrap();
    let p = s.begin_stream("c", "s", full(1)).unwrap();
    s.commit_page(
        "c",
        "s",
        page(1, 0, &[rec("b", "{}")], Some("cur"), Some("w2")),
    )
    .unwrap();
    let resumed = s.begin_stream("c", "s", full(1)).unwrap();
    assert!(resumed.resumed);
    assert_eq!(resumed.mode, p.mode);
    // Streams that cannot read incrementally always read fully.
    let never_incremental = StreamRequest {
        supports_incremental: false,
        ..full(1)
    };
    let p = s.begin_stream("c", "t", never_incremental).unwrap();
    s.commit_page("c", "t", page(p.generation, 0, &[], None, Some("w1")))
        .unwrap();
    s.finish_stream("c", "t", &p, None).unwrap();
    let again = s.begin_stream("c", "t", never_incremental).unwrap();
    assert_eq!(again.mode, ReadMode::Full);
}

/// A read whose every page is written but whose end failed (a stop's
/// cancel, a database that went away) is taken up by the next sync with
/// nothing left to read: only its end runs again.
fn a_read_whose_end_failed_resumes_with_nothing_left_to_read(s: &mut Store) {
    full_read_of(s, "c", "s", &["a", "b"]);
    let p = s.begin_stream("c", "s", forced_full(2)).unwrap();
    s.commit_page(
        "c",
        "s",
        page(p.generation, 0, &[rec("b", "{}")], None, None),
    )
    .unwrap();
    s.commit_page("c", "s", page(p.generation, 1, &[], None, None))
        .unwrap();
    // Its end never committed. The next sync resumes the same read.
    let next = s.begin_stream("c", "s", full(2)).unwrap();
    assert!(next.resumed, "the read started over: {next:?}");
    assert_eq!(
        (next.generation, &next.mode),
        (p.generation, &ReadMode::Full)
    );
    assert!(
        next.partitions.iter().all(|p| p.done),
        "a partition of the read is to be read again: {:?}",
        next.partitions
    );
    assert_eq!(
        s.finish_stream("c", "s", &next, None).unwrap().not_returned,
        1
    );
    assert_eq!(keys(s), ["b"]);
}

fn reasons(s: &Store) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    s.for_each_record("c", "s", true, |k, _, d| {
        out.push((k.to_string(), d.map(|d| d.reason.to_string())));
        Ok(())
    })
    .unwrap();
    out
}

#[test]
fn records_are_indexed_without_trees() {
    let r = StoredRecord::index(
        "a",
        "sysId",
        Some("deviceSysId"),
        r#"{"sysId":"k\"1","deviceSysId":"d","n":[1]}"#.into(),
    )
    .unwrap();
    assert_eq!((r.key.as_str(), r.parent.as_deref()), ("k\"1", Some("d")));
    let r = StoredRecord::index(
        "s",
        "id",
        Some("deviceId"),
        r#"{"id":17,"deviceId":-3}"#.into(),
    )
    .unwrap();
    assert_eq!((r.key.as_str(), r.parent.as_deref()), ("17", Some("-3")));
    for not_a_key in [
        r#"{"id":1.5}"#,
        r#"{"id":true}"#,
        r#"{"id":null}"#,
        r#"{"id":[1]}"#,
    ] {
        assert!(
            StoredRecord::index("s", "id", None, not_a_key.into()).is_err(),
            "{not_a_key}"
        );
    }
    assert!(
        StoredRecord::index("a", "sysId", None, r#"{"name":"x"}"#.into())
            .unwrap_err()
            .contains("sysId")
    );
    assert!(StoredRecord::index("a", "sysId", None, "[1]".into()).is_err());
}

#[test]
fn a_record_key_is_read_as_a_map_would_read_it() {
    let index = |json: &str| StoredRecord::index("a", "sysId", Some("dev"), json.into());
    // An escaped field name is the same name; a later duplicate wins.
    let r = index(r#"{"sys\u0049d":"k","dev":"d1","x":{"sysId":"inner"},"dev":"d2"}"#).unwrap();
    assert_eq!((r.key.as_str(), r.parent.as_deref()), ("k", Some("d2")));
    // The key field may also be the embedding field.
    let r = StoredRecord::index("a", "id", Some("id"), r#"{"id":"k"}"#.into()).unwrap();
    assert_eq!((r.key.as_str(), r.parent.as_deref()), ("k", Some("k")));
    // Broken JSON is refused even where the reader skips a value.
    for broken in [
        r#"{"sysId":"k","x":[1,}"#,
        r#"{"sysId":"k"} trailing"#,
        r#"{"sysId":"k""#,
        r#"{"sysId":"k","x":tru}"#,
    ] {
        let e = index(broken).unwrap_err();
        assert!(e.contains("not a JSON object"), "{broken}: {e}");
    }
}

fn deletions_say_why(s: &mut Store) {
    let updated = |k: &str, at: &str| rec(k, &format!(r#"{{"sysId":"{k}","updated":"{at}"}}"#));
    let p = s.begin_stream("c", "s", full(1)).unwrap();
    assert_eq!(p.deletions_since, None);
    let first = [
        updated("a", "2026-01-01T00:00:00Z"),
        updated("b", "2026-11-01T00:00:00Z"),
        updated("c", "2026-11-02T00:00:00Z"),
        updated("d", "2026-11-03T00:00:00Z"),
    ];
    s.commit_page(
        "c",
        "s",
        page(1, 0, &first, None, Some("2026-11-27 00:00:00")),
    )
    .unwrap();
    s.finish_stream("c", "s", &p, Some("updated")).unwrap();

    // The next full read: `b` is reported deleted at the source, `c` is
    // simply not returned, `a` is older than the window.
    let p = s.begin_stream("c", "s", forced_full(1)).unwrap();
    assert_eq!(p.deletions_since.as_deref(), Some("2026-11-27 00:00:00"));
    let tombstones = [
        StoredTombstone {
            key: "b".into(),
            deleted_at: Some("2026-11-27T10:00:00Z".into()),
        },
        StoredTombstone {
            key: "never-stored".into(),
            deleted_at: None,
        },
    ];
    let marked = s
        .commit_page(
            "c",
            "s",
            PageCommit {
                tombstones: &tombstones,
                window_start: Some("2026-10-28T00:00:00Z"),
                ..page(
                    p.generation,
                    0,
                    &first[3..],
                    None,
                    Some("2026-11-28 00:00:00"),
                )
            },
        )
        .unwrap();
    assert_eq!(marked, 1);
    let finished = s.finish_stream("c", "s", &p, Some("updated")).unwrap();
    assert_eq!(
        finished,
        FinishedStream {
            aged_out: 1,
            not_returned: 1
        }
    );
    assert_eq!(
        reasons(s),
        [
            ("a".to_string(), Some("aged-out".to_string())),
            ("b".to_string(), Some("deleted-at-source".to_string())),
            ("c".to_string(), Some("not-returned".to_string())),
            ("d".to_string(), None),
        ]
    );
    the_sources_time_is_kept_and_a_record_back_is_live(s, &first[2..]);
}

/// After [`deletions_say_why`]'s second read: `b` keeps the deletion time
/// the source gave, and `c`, read again in `back`, is live without a reason.
fn the_sources_time_is_kept_and_a_record_back_is_live(s: &mut Store, back: &[StoredRecord]) {
    s.for_each_record("c", "s", true, |k, _, d| {
        if k == "b" {
            assert_eq!(d.unwrap().at, "2026-11-27T10:00:00Z");
        }
        Ok(())
    })
    .unwrap();
    let p = s.begin_stream("c", "s", forced_full(1)).unwrap();
    s.commit_page("c", "s", page(p.generation, 0, back, None, None))
        .unwrap();
    assert_eq!(reasons(s)[2], ("c".to_string(), None));
}

#[test]
fn databases_of_the_first_release_gain_the_new_columns() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let old = rusqlite::Connection::open(&path).unwrap();
    old.execute_batch(
        "CREATE TABLE records (connection TEXT NOT NULL, stream TEXT NOT NULL, key TEXT NOT NULL,
            data TEXT NOT NULL, parent TEXT, generation INTEGER NOT NULL, first_seen TEXT NOT NULL,
            changed_at TEXT NOT NULL, deleted_at TEXT, PRIMARY KEY (connection, stream, key)) WITHOUT ROWID;
         CREATE TABLE partitions (connection TEXT NOT NULL, stream TEXT NOT NULL, partition INTEGER NOT NULL,
            cursor TEXT, done INTEGER NOT NULL, watermark TEXT, PRIMARY KEY (connection, stream, partition));
         INSERT INTO records VALUES ('c', 's', 'gone', '{}', NULL, 1, 'x', 'x', '2026-01-01T00:00:00Z');",
    )
    .unwrap();
    drop(old);
    let s = Store::open(&path).unwrap();
    assert_eq!(
        reasons(&s),
        [("gone".to_string(), Some("not-returned".to_string()))]
    );
}

fn incremental_reads_use_their_own_partitioning(s: &mut Store) {
    let request = StreamRequest {
        incremental_partitions: 1,
        ..full(4)
    };
    let p = s.begin_stream("c", "s", request).unwrap();
    assert_eq!(p.partitions.len(), 4);
    for i in 0..4 {
        s.commit_page("c", "s", page(1, i, &[], None, Some("w1")))
            .unwrap();
    }
    s.finish_stream("c", "s", &p, None).unwrap();
    let p = s.begin_stream("c", "s", request).unwrap();
    assert_eq!((p.partitions.len(), p.mode.name()), (1, "incremental"));
    s.commit_page("c", "s", page(1, 0, &[], Some("cur"), Some("w2")))
        .unwrap();
    // Interrupted, it resumes with its one partition.
    let resumed = s.begin_stream("c", "s", request).unwrap();
    assert!(resumed.resumed);
    assert_eq!(resumed.partitions.len(), 1);
    assert_eq!(resumed.partitions[0].cursor.as_deref(), Some("cur"));
}

fn stored_record(key: &str, data: &str, parent: Option<&str>) -> StoredRecord {
    StoredRecord {
        key: key.into(),
        data: data.into(),
        parent: parent.map(str::to_string),
    }
}

fn commit(s: &mut Store, stream: &str, records: &[StoredRecord]) {
    let request = StreamRequest {
        partitions: 1,
        incremental_partitions: 1,
        force_full: false,
        supports_incremental: false,
    };
    let plan = s.begin_stream("c", stream, request).unwrap();
    let page = PageCommit {
        generation: plan.generation,
        partition: 0,
        records,
        tombstones: &[],
        next_cursor: None,
        watermark: None,
        window_start: None,
    };
    s.commit_page("c", stream, page).unwrap();
}

/// Three devices, two adapters embedded into them.
fn browsable(s: &mut Store) {
    commit(
        s,
        "devices",
        &[
            stored_record("d1", r#"{"id":"d1","name":"web-01"}"#, None),
            stored_record("d2", r#"{"id":"d2","name":"db-01"}"#, None),
            stored_record("d3", r#"{"id":"d3","name":"100%_sure"}"#, None),
        ],
    );
    commit(
        s,
        "adapters",
        &[
            stored_record(
                "a1",
                r#"{"id":"a1","ip":"10.0.0.7","device":"d2"}"#,
                Some("d2"),
            ),
            stored_record(
                "a2",
                r#"{"id":"a2","ip":"10.0.0.8","device":"d1"}"#,
                Some("d1"),
            ),
        ],
    );
}

fn found_keys(found: &Found) -> Vec<&str> {
    found.records.iter().map(|(k, _)| k.as_str()).collect()
}

fn a_search_matches_values_and_embedded_records_and_pages(s: &mut Store) {
    browsable(s);
    // A record written with escapes, and a boolean.
    commit(
        s,
        "devices",
        &[stored_record(
            "d4",
            r#"{"id":"d4","name":"caf\u00e9 \"quoted\"","virtual":true}"#,
            None,
        )],
    );
    let adapters = vec!["adapters".to_string()];
    // A value written with escapes is matched as the text it holds, a
    // boolean as `true` or `false` and never as a digit.
    for term in ["café", "\"quoted\"", "TRUE"] {
        let found = s.search("c", "devices", &adapters, term, 10, 0).unwrap();
        assert_eq!((found.total, found_keys(&found)), (1, vec!["d4"]), "{term}");
    }
    assert_eq!(
        found_keys(&s.search("c", "devices", &adapters, "1", 10, 0).unwrap()),
        vec!["d1", "d2", "d3"]
    );
    let by_name = s.search("c", "devices", &adapters, "WEB", 10, 0).unwrap();
    assert_eq!((by_name.total, found_keys(&by_name)), (1, vec!["d1"]));
    // The device whose adapter has the IP.
    let by_ip = s
        .search("c", "devices", &adapters, "10.0.0.7", 10, 0)
        .unwrap();
    assert_eq!(found_keys(&by_ip), vec!["d2"]);
    // Without the embedded stream, the IP finds no device.
    assert_eq!(
        s.search("c", "devices", &[], "10.0.0.7", 10, 0)
            .unwrap()
            .total,
        0
    );
    // Field names do not match; wildcards are literal.
    assert_eq!(
        s.search("c", "devices", &adapters, "name", 10, 0)
            .unwrap()
            .total,
        0
    );
    assert_eq!(
        found_keys(&s.search("c", "devices", &adapters, "%_", 10, 0).unwrap()),
        vec!["d3"]
    );
    // The matches a page at a time, each page with their number; past the
    // last page, still their number.
    let zeros = s.search("c", "devices", &adapters, "0", 2, 1).unwrap();
    assert_eq!((zeros.total, found_keys(&zeros)), (3, vec!["d2", "d3"]));
    let past = s.search("c", "devices", &adapters, "0", 2, 5).unwrap();
    assert_eq!((past.total, past.records.len()), (3, 0));
    // Everything, a page at a time.
    let all = s.search("c", "devices", &adapters, "", 2, 0).unwrap();
    assert_eq!((all.total, found_keys(&all)), (4, vec!["d1", "d2"]));
    assert_eq!(
        found_keys(&s.search("c", "devices", &adapters, "", 2, 2).unwrap()),
        vec!["d3", "d4"]
    );
    // A deleted record is neither found nor counted, nor are another
    // connection's records of the same stream. (The first read ends the
    // one `browsable` began; the second deletes `d2`.)
    full_read_of(s, "c", "devices", &["d1", "d2", "d3"]);
    full_read_of(s, "c", "devices", &["d1", "d3"]);
    full_read_of(s, "other", "devices", &["d1", "d2", "d3", "d4"]);
    let live = s.search("c", "devices", &adapters, "", 10, 0).unwrap();
    assert_eq!((live.total, found_keys(&live)), (2, vec!["d1", "d3"]));
    let unknown = s.search("c", "printers", &[], "", 10, 0).unwrap();
    assert_eq!((unknown.total, unknown.records.len()), (0, 0));
}

fn one_record_and_what_is_embedded_into_it(s: &mut Store) {
    browsable(s);
    assert!(s
        .record("c", "devices", "d2")
        .unwrap()
        .unwrap()
        .contains("db-01"));
    assert_eq!(s.record("c", "devices", "nope").unwrap(), None);
    let embedded = s.embedded_in("c", "adapters", "d2", 10).unwrap();
    assert_eq!(embedded.len(), 1);
    assert!(embedded[0].1.contains("10.0.0.7"));
}

/// A full read of `connection`'s `stream` that returns `keys`: the stream's
/// records it does not return are marked deleted.
fn full_read_of(s: &mut Store, connection: &str, stream: &str, keys: &[&str]) {
    let plan = s.begin_stream(connection, stream, forced_full(1)).unwrap();
    let records: Vec<StoredRecord> = keys.iter().map(|k| rec(k, "{}")).collect();
    s.commit_page(
        connection,
        stream,
        page(plan.generation, 0, &records, None, None),
    )
    .unwrap();
    s.finish_stream(connection, stream, &plan, None).unwrap();
}

fn counts_tell_each_streams_live_and_deleted_records(s: &mut Store) {
    let counted = |stream: &str, live: u64, deleted: u64| (stream.to_string(), live, deleted);
    full_read_of(s, "c", "devices", &["d1", "d2", "d3", "d4"]);
    full_read_of(s, "c", "devices", &["d1", "d3", "d4"]);
    full_read_of(s, "c", "adapters", &["x1", "x2"]);
    full_read_of(s, "c", "adapters", &[]);
    // A stream that never had a record is not listed.
    full_read_of(s, "c", "apps", &[]);
    // Another connection's records, under the same stream names, are its own.
    full_read_of(s, "other", "devices", &["d1", "d2"]);
    full_read_of(s, "other", "devices", &["d1"]);
    full_read_of(s, "other", "adapters", &["x9"]);
    assert_eq!(
        s.counts("c").unwrap(),
        [counted("adapters", 0, 2), counted("devices", 3, 1)]
    );
    assert_eq!(
        s.counts("other").unwrap(),
        [counted("adapters", 1, 0), counted("devices", 1, 1)]
    );
    // A record back at the source is live again.
    full_read_of(s, "c", "devices", &["d1", "d2", "d3"]);
    assert_eq!(s.counts("c").unwrap()[1], counted("devices", 3, 1));
    assert!(s.counts("nobody").unwrap().is_empty());
}

on_every_backend!(
    a_search_matches_values_and_embedded_records_and_pages,
    one_record_and_what_is_embedded_into_it,
    health_changes_are_kept_newest_first_and_repeats_are_not,
    deleting_a_connection_leaves_the_others,
    a_run_that_never_ended_is_interrupted_when_the_next_starts,
    resume_and_deletions,
    an_interrupted_incremental_read_resumes_as_incremental,
    a_read_whose_end_failed_resumes_with_nothing_left_to_read,
    deletions_say_why,
    incremental_reads_use_their_own_partitioning,
    counts_tell_each_streams_live_and_deleted_records
);

/// A PostgreSQL server out of reach is told apart from one that refuses:
/// nothing needs the test cluster.
mod postgres_out_of_reach {
    use super::*;

    /// A target at `addr`, whose server is not there.
    fn target_at(addr: std::net::SocketAddr) -> PostgresTarget {
        PostgresTarget {
            url: format!("postgresql://connector@{addr}/db?sslmode=disable"),
            password: Some("unused".into()),
            ca_file: None,
            application_name: None,
        }
    }

    #[test]
    fn a_refused_connection_is_temporary() {
        // A port nobody listens on: bound, then let go.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let e = Store::open_postgres(&target_at(addr))
            .err()
            .expect("refused");
        assert!(matches!(e, OpenError::Unreachable(_)), "{e}");
        assert!(e.is_temporary(), "{e}");
    }

    #[test]
    fn a_server_that_hangs_up_before_answering_is_temporary() {
        // As a server that is starting up or restarting does.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || drop(listener.accept()));
        let e = Store::open_postgres(&target_at(addr))
            .err()
            .expect("refused");
        server.join().unwrap();
        assert!(e.is_temporary(), "{e}");
    }

    #[test]
    fn a_server_that_accepts_and_never_answers_is_temporary_not_a_hang() {
        // A connection pooler whose server is down, or a port that is not
        // PostgreSQL's: the connection is accepted, and nothing comes.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let target = PostgresTarget {
            url: format!(
                "postgresql://connector@{}/db?sslmode=disable&connect_timeout=1",
                listener.local_addr().unwrap()
            ),
            ..target_at("127.0.0.1:1".parse().unwrap())
        };
        let (opened, outcome) = std::sync::mpsc::channel();
        std::thread::spawn(move || opened.send(Store::open_postgres(&target).err()));
        let (silent, _) = listener.accept().unwrap();
        // A deadline for the test, not a measurement: without the bound on
        // the whole connection it waits for ever.
        let e = outcome
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("opening a store hung on a server that never answers")
            .expect("refused");
        drop(silent);
        assert!(matches!(e, OpenError::Unreachable(_)), "{e}");
        assert!(e.is_temporary(), "{e}");
        assert!(
            e.to_string()
                .contains("did not complete PostgreSQL's start-up and login within 2 s"),
            "{e}"
        );
    }

    /// A server that accepts every connection and answers none, until
    /// [`SilentServer::hang_up`] closes those it holds.
    struct SilentServer {
        addr: std::net::SocketAddr,
        held: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
    }

    impl SilentServer {
        fn start() -> SilentServer {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
            let holding = held.clone();
            // Ends with the test process.
            std::thread::spawn(move || {
                for stream in listener.incoming().flatten() {
                    holding.lock().unwrap().push(stream);
                }
            });
            SilentServer { addr, held }
        }

        fn hang_up(&self) {
            self.held.lock().unwrap().clear();
        }
    }

    #[test]
    fn attempts_given_up_on_a_silent_server_are_bounded_and_freed_when_it_hangs_up() {
        use super::super::postgres::abandoned::{waiting_at, MAX_ABANDONED};
        let server = SilentServer::start();
        let target = PostgresTarget {
            url: format!(
                "postgresql://connector@{}/db?sslmode=disable&connect_timeout=1",
                server.addr
            ),
            ..target_at(server.addr)
        };
        let open = || Store::open_postgres(&target).err().expect("refused");
        let gave_up = |e: &OpenError| {
            e.to_string()
                .contains("did not complete PostgreSQL's start-up and login within 2 s")
        };
        let attempts: Vec<OpenError> = std::thread::scope(|scope| {
            let waiting: Vec<_> = (0..MAX_ABANDONED).map(|_| scope.spawn(open)).collect();
            waiting.into_iter().map(|t| t.join().unwrap()).collect()
        });
        for e in &attempts {
            assert!(gave_up(e), "{e}");
        }
        let refused = open();
        assert!(
            refused.to_string().contains(&format!(
                "{MAX_ABANDONED} earlier attempts to connect to this database still wait for the server"
            )),
            "the attempts given up on piled up past the bound: {refused}"
        );
        assert!(matches!(refused, OpenError::Unreachable(_)), "{refused}");
        server.hang_up();
        // A deadline for the test, not a measurement: the threads end as
        // soon as they read the server's end of the connection.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while waiting_at(&target.url) >= MAX_ABANDONED {
            assert!(
                std::time::Instant::now() < deadline,
                "the threads of the attempts given up on did not end when the server hung up"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let again = open();
        assert!(
            gave_up(&again),
            "not tried again once the server hung up: {again}"
        );
    }

    #[test]
    fn an_unusable_address_is_not_temporary() {
        // The control: the configuration's mistake is not waited out.
        let target = PostgresTarget {
            url: "postgresql://connector@127.0.0.1:5432/db?sslmode=nonsense".into(),
            ..target_at("127.0.0.1:1".parse().unwrap())
        };
        let e = Store::open_postgres(&target).err().expect("refused");
        assert!(!e.is_temporary(), "{e}");
    }
}

mod postgres_only {
    use super::super::testing::{cluster, postgres};
    use super::super::{Health, HealthState, OpenError, PostgresTarget, Store};
    use super::{forced_full, page, rec, StoredRecord};

    /// What `streams.live_at_start` of stream `s` says, read by another client.
    fn live_at_start(client: &mut ::postgres::Client) -> Option<bool> {
        client
            .query_one("SELECT live_at_start FROM streams WHERE stream = 's'", &[])
            .unwrap()
            .get(0)
    }

    /// A full read of stream `s` returning `keys`, finished: the records it
    /// marked as no longer returned.
    fn full_read_returning(s: &mut Store, keys: &[&str], before_finish: impl FnOnce()) -> u64 {
        let plan = s.begin_stream("c", "s", forced_full(1)).unwrap();
        let records: Vec<StoredRecord> = keys.iter().map(|k| rec(k, "{}")).collect();
        s.commit_page("c", "s", page(plan.generation, 0, &records, None, None))
            .unwrap();
        before_finish();
        s.finish_stream("c", "s", &plan, None).unwrap().not_returned
    }

    /// SQLite's test of the same name, on PostgreSQL: a full read that
    /// started without live records skips the sweep for records not
    /// returned; one that started with some, or whose flag is unknown
    /// (a stream row from before version 5), is swept.
    #[test]
    #[ignore = "needs the PostgreSQL cluster tests/run-all.sh starts"]
    fn a_full_read_that_started_without_live_records_skips_the_sweep_and_no_other_does() {
        let mut db = postgres();
        let mut client = db.target().connect().unwrap();
        let s = &mut db.store;
        let first = full_read_returning(s, &["a", "b", "c"], || {
            assert_eq!(live_at_start(&mut client), Some(false), "an empty stream");
        });
        assert_eq!(first, 0);
        // The next full read starts with live records: `c`, unseen, goes.
        let second = full_read_returning(s, &["a", "b"], || {
            assert_eq!(live_at_start(&mut client), Some(true));
        });
        assert_eq!(second, 1);
        // An unknown flag is swept, and the flag is what spares the sweep:
        // told (falsely) that the read started empty, it leaves `a` live.
        for (flag, seen, marked) in [(None, &["a"][..], 1), (Some(false), &[][..], 0)] {
            let set_flag = || {
                client
                    .execute("UPDATE streams SET live_at_start = $1", &[&flag])
                    .unwrap();
            };
            assert_eq!(
                full_read_returning(s, seen, set_flag),
                marked,
                "flag {flag:?}"
            );
        }
        // With every record deleted, a read starts without live records.
        client
            .execute("UPDATE records SET deleted_at = 'gone'", &[])
            .unwrap();
        s.begin_stream("c", "s", forced_full(1)).unwrap();
        assert_eq!(live_at_start(&mut client), Some(false));
    }

    #[test]
    #[ignore = "needs the PostgreSQL cluster tests/run-all.sh starts"]
    fn the_schema_is_versioned_and_a_newer_one_is_refused() {
        let db = postgres();
        let target = PostgresTarget {
            url: format!("{}?sslmode=disable", db.url()),
            ..cluster()
        };
        // Opening again migrates nothing.
        Store::open_postgres(&target).unwrap();
        let mut client = target.connect().unwrap();
        let version: i32 = client
            .query_one("SELECT version FROM connector_schema", &[])
            .unwrap()
            .get(0);
        assert_eq!(version, super::super::postgres::LATEST_VERSION);
        client
            .execute("UPDATE connector_schema SET version = version + 1", &[])
            .unwrap();
        let e = Store::open_postgres(&target).err().expect("refused");
        assert!(matches!(e, OpenError::Newer { .. }), "{e}");
        assert!(e.to_string().contains("newer release"), "{e}");
    }

    #[test]
    #[ignore = "needs the PostgreSQL cluster tests/run-all.sh starts"]
    fn a_password_in_the_url_is_refused_and_a_wrong_one_is_named() {
        let admin = cluster();
        let with_password = PostgresTarget {
            url: admin.url.replacen("connector@", "connector:hunter2@", 1),
            ..admin.clone()
        };
        let e = Store::open_postgres(&with_password).err().expect("refused");
        assert!(e.to_string().contains("holds a password"), "{e}");
        assert!(!e.to_string().contains("hunter2"), "{e}");
        let wrong = PostgresTarget {
            password: Some("not-the-password".into()),
            ..admin.clone()
        };
        let e = Store::open_postgres(&wrong).err().expect("refused");
        assert!(
            e.to_string().contains("password authentication failed"),
            "{e}"
        );
        assert!(!e.is_temporary(), "a refused login needs the operator: {e}");
        assert!(!e.to_string().contains("not-the-password"), "{e}");
    }

    #[test]
    #[ignore = "needs the PostgreSQL cluster tests/run-all.sh starts"]
    fn a_session_the_server_ended_costs_one_call_and_the_next_connects_again() {
        // What a restart or a fail-over does to a long-lived store (a
        // worker's, the console's): the server ends its session.
        let mut db = postgres();
        let health = Health {
            state: HealthState::Connected,
            error_kind: None,
            message: None,
        };
        db.store.set_health("c", &health).unwrap();
        let mut admin = db.target().connect().unwrap();
        let ended: i64 = admin
            .query_one(
                "SELECT COUNT(*) FILTER (WHERE pg_terminate_backend(pid, 10000))
                 FROM pg_stat_activity
                 WHERE datname = current_database() AND pid <> pg_backend_pid()",
                &[],
            )
            .unwrap()
            .get(0);
        assert_eq!(ended, 1, "the store's session");
        let e = db.store.health("c").expect_err("the session was ended");
        assert!(e.is_connection_lost(), "{e}");
        let (read, _) = db.store.health("c").unwrap().expect("connected again");
        assert_eq!(read, health);
        // A statement the server refuses is no lost connection.
        admin.batch_execute("DROP TABLE health").unwrap();
        let e = db.store.health("c").expect_err("no health table");
        assert!(!e.is_connection_lost(), "{e}");
    }
}

mod leases {
    use super::super::deployment::{PartitionEnd, RunEnd, RunParts, RunStream};
    use super::super::lease::{FencedPage, Lease};
    use super::super::testing::{postgres, sqlite};
    use super::super::{Health, HealthState, Store, StoreError, StreamRequest};
    use super::{forced_full, full, keys, page, rec};
    use std::time::Duration;

    const LEASE: Duration = Duration::from_secs(30);

    /// The part of the run's report a page under a lease records in these
    /// tests: the records its tombstones marked, named.
    fn part_marking(marked: u64) -> String {
        format!("part with {marked} marked")
    }

    /// A page under `lease`, recording [`part_marking`].
    fn under(lease: &Lease) -> FencedPage<'_> {
        FencedPage {
            lease,
            report: &part_marking,
        }
    }

    fn conns() -> Vec<String> {
        vec!["c".to_string()]
    }

    /// A claim of a partition of connection `c` by `worker`.
    fn claimed(s: &mut Store, worker: &str) -> Option<Lease> {
        s.claim_partition(worker, LEASE, &conns()).unwrap()
    }

    fn stream(request: StreamRequest) -> [RunStream; 1] {
        [RunStream {
            name: "s".into(),
            request,
        }]
    }

    /// A run's end as the engine makes it, the next run due `next` later.
    fn ended(next: Duration) -> impl FnMut(&RunParts) -> RunEnd {
        move |parts| RunEnd {
            status: "complete".into(),
            report: format!("{parts:?}"),
            health: Health {
                state: HealthState::Connected,
                error_kind: None,
                message: None,
            },
            temporary_failure: false,
            next_run_in: next,
        }
    }

    #[test]
    #[ignore = "needs the PostgreSQL cluster tests/run-all.sh starts"]
    fn workers_claim_different_partitions_and_a_lost_lease_cannot_commit() {
        let mut db = postgres();
        let s = &mut db.store;
        assert!(claimed(s, "worker-a").is_none(), "no run, nothing to claim");
        s.start_due_run("c", &stream(full(2))).unwrap().unwrap();
        assert_eq!(s.start_due_run("c", &stream(full(2))).unwrap(), None);
        let others = ["other".to_string()];
        assert!(s.claim_partition("w", LEASE, &others).unwrap().is_none());
        let a = claimed(s, "worker-a").expect("a partition to claim");
        let b = claimed(s, "worker-b").expect("a partition to claim");
        assert_ne!(a.partition, b.partition);
        assert!(claimed(s, "worker-c").is_none());
        let held = s.leases("c").unwrap();
        let holders: Vec<(u32, &str)> = held
            .iter()
            .map(|l| (l.partition, l.holder.as_str()))
            .collect();
        let mut expected = vec![(a.partition, "worker-a"), (b.partition, "worker-b")];
        expected.sort_unstable();
        assert_eq!(holders, expected);
        assert!(
            held.iter()
                .all(|l| l.since.ends_with('Z') && l.until > l.since),
            "{held:?}"
        );
        let generation = a.generation;
        let first = [rec("a1", "{}")];
        s.commit_page_fenced(
            page(generation, a.partition, &first, Some("cur-a"), None),
            under(&a),
        )
        .unwrap();
        // A's lease runs out (renewed for no time: expired at once, nobody
        // waits); C takes the partition over from A's last committed cursor.
        assert!(s.renew_lease(&a, Duration::ZERO).unwrap());
        let c = claimed(s, "worker-c").expect("a partition to claim");
        assert_eq!(
            (c.partition, c.cursor.as_deref()),
            (a.partition, Some("cur-a"))
        );
        assert!(c.token > a.token);
        // A, back from its pause, cannot commit, renew or record its end:
        // nothing is written.
        let late = [rec("late", "{}")];
        let e = s
            .commit_page_fenced(page(generation, a.partition, &late, None, None), under(&a))
            .unwrap_err();
        assert!(matches!(e, StoreError::Fenced { .. }), "{e}");
        assert!(!keys(s).contains(&"late".to_string()));
        assert!(!s.renew_lease(&a, LEASE).unwrap());
        let e = s
            .end_partition(&a, "{}", PartitionEnd::Complete)
            .unwrap_err();
        assert!(matches!(e, StoreError::Fenced { .. }), "{e}");
        // C and B finish their partitions; done ones are not claimed again.
        let rest = [rec("a2", "{}")];
        s.commit_page_fenced(page(generation, c.partition, &rest, None, None), under(&c))
            .unwrap();
        let theirs = [rec("b1", "{}")];
        s.commit_page_fenced(
            page(generation, b.partition, &theirs, None, None),
            under(&b),
        )
        .unwrap();
        s.release_lease(&c).unwrap();
        s.release_lease(&b).unwrap();
        assert!(claimed(s, "worker-d").is_none());
        assert!(s.leases("c").unwrap().is_empty());
        assert_eq!(keys(s), ["a1", "a2", "b1"]);
    }

    #[test]
    #[ignore = "needs the PostgreSQL cluster tests/run-all.sh starts"]
    fn a_run_ends_once_each_partition_is_done_or_failed_with_its_workers_reports() {
        let mut db = postgres();
        let s = &mut db.store;
        s.start_due_run("c", &stream(forced_full(2)))
            .unwrap()
            .unwrap();
        let a = claimed(s, "worker-a").expect("a partition to claim");
        let b = claimed(s, "worker-b").expect("a partition to claim");
        let last = [rec("a1", "{}")];
        s.commit_page_fenced(
            page(a.generation, a.partition, &last, None, None),
            under(&a),
        )
        .unwrap();
        s.end_partition(&a, "report-a", PartitionEnd::Complete)
            .unwrap();
        s.finish_run_stream(&a, None).unwrap();
        let in_progress = s.runs_in_progress(&conns()).unwrap();
        assert_eq!(in_progress, conns());
        assert_eq!(
            s.finish_run_if_over("c", &[], ended(Duration::ZERO))
                .unwrap(),
            None,
            "b is still being read"
        );
        // B's read fails: no worker takes it again in this run, which ends.
        s.end_partition(&b, "report-b", PartitionEnd::Failed)
            .unwrap();
        assert!(claimed(s, "worker-c").is_none());
        let end = s
            .finish_run_if_over("c", &[], ended(Duration::from_secs(3600)))
            .unwrap()
            .expect("the run is over");
        let (p0, p1) = (a.partition.min(b.partition), a.partition.max(b.partition));
        let reports = |p: u32| {
            if p == a.partition {
                "report-a"
            } else {
                "report-b"
            }
        };
        assert!(
            end.report.contains(&format!(
                "PartitionParts {{ index: {p0}, done: {}, reports: [\"{}\"] }}",
                p0 == a.partition,
                reports(p0)
            )) && end.report.contains(&format!(
                "PartitionParts {{ index: {p1}, done: {}, reports: [\"{}\"] }}",
                p1 == a.partition,
                reports(p1)
            )) && end.report.contains("complete: false"),
            "{}",
            end.report
        );
        assert!(s.runs_in_progress(&conns()).unwrap().is_empty());
        assert_eq!(
            s.finish_run_if_over("c", &[], ended(Duration::ZERO))
                .unwrap(),
            None
        );
        // Not due for an hour; once due, the next run resumes B only.
        assert_eq!(s.start_due_run("c", &stream(forced_full(2))).unwrap(), None);
        db.target()
            .connect()
            .unwrap()
            .execute("UPDATE deployment_runs SET next_due_at = now()", &[])
            .unwrap();
        let s = &mut db.store;
        s.start_due_run("c", &stream(forced_full(2)))
            .unwrap()
            .unwrap();
        let again = claimed(s, "worker-c").expect("a partition to claim");
        assert_eq!(again.partition, b.partition);
        assert!(claimed(s, "worker-d").is_none());
    }

    #[test]
    #[ignore = "needs the PostgreSQL cluster tests/run-all.sh starts"]
    fn workers_claiming_at_once_take_each_partition_once() {
        let mut db = postgres();
        let target = db.target();
        // Ten runs, each claimed by four workers at once; a worker reads
        // each partition it takes to its end (an empty last page).
        for round in 0..10 {
            let run = db
                .store
                .start_due_run("c", &stream(forced_full(16)))
                .unwrap();
            assert!(run.is_some(), "round {round}");
            let workers: Vec<_> = (0..4)
                .map(|w| {
                    let target = target.clone();
                    std::thread::spawn(move || {
                        let mut s = Store::open_postgres(&target).unwrap();
                        let mut mine = Vec::new();
                        while let Some(lease) = s
                            .claim_partition(&format!("worker-{w}"), LEASE, &conns())
                            .unwrap()
                        {
                            let last = page(lease.generation, lease.partition, &[], None, None);
                            s.commit_page_fenced(last, under(&lease)).unwrap();
                            mine.push(lease.partition);
                            assert!(mine.len() <= 16, "partitions taken again: {mine:?}");
                        }
                        mine
                    })
                })
                .collect();
            let mut claimed: Vec<u32> = workers
                .into_iter()
                .flat_map(|w| w.join().unwrap())
                .collect();
            claimed.sort_unstable();
            assert_eq!(claimed, (0..16).collect::<Vec<_>>(), "round {round}");
            let end = db.store.finish_run_if_over("c", &[], ended(Duration::ZERO));
            assert!(end.unwrap().is_some(), "round {round}");
        }
    }

    #[test]
    #[ignore = "needs the PostgreSQL cluster tests/run-all.sh starts"]
    fn a_worker_that_dies_after_a_page_leaves_its_part_of_the_report() {
        let mut db = postgres();
        let s = &mut db.store;
        s.start_due_run("c", &stream(forced_full(1)))
            .unwrap()
            .unwrap();
        let a = claimed(s, "worker-a").expect("a partition to claim");
        let first = [rec("a1", "{}")];
        s.commit_page_fenced(
            page(a.generation, a.partition, &first, Some("cur-a"), None),
            under(&a),
        )
        .unwrap();
        // A dies: it never records its end, and its lease runs out.
        assert!(s.renew_lease(&a, Duration::ZERO).unwrap());
        let b = claimed(s, "worker-b").expect("the partition again");
        let rest = [rec("a2", "{}")];
        s.commit_page_fenced(
            page(b.generation, b.partition, &rest, None, None),
            under(&b),
        )
        .unwrap();
        s.end_partition(&b, "report-b", PartitionEnd::Complete)
            .unwrap();
        s.finish_run_stream(&b, None).unwrap();
        let end = s
            .finish_run_if_over("c", &[], ended(Duration::ZERO))
            .unwrap()
            .expect("the run is over");
        // A's part as its page left it, then B's as its end recorded it.
        assert!(
            end.report.contains(
                "PartitionParts { index: 0, done: true, reports: [\"part with 0 marked\", \"report-b\"] }"
            ),
            "{}",
            end.report
        );
    }

    #[test]
    fn a_sqlite_store_has_no_leases() {
        let mut db = sqlite();
        let e = db
            .store
            .claim_partition("worker", LEASE, &conns())
            .unwrap_err();
        assert!(matches!(e, StoreError::NeedsPostgres(_)), "{e}");
        assert!(e.to_string().contains("postgresql://"), "{e}");
        let e = db.store.start_due_run("c", &stream(full(1))).unwrap_err();
        assert!(matches!(e, StoreError::NeedsPostgres(_)), "{e}");
    }
}

/// Records as the releases before stream ids wrote them (SQLite's schema
/// version 2, PostgreSQL's 3): keyed by connection and stream names.
const RECORDS_BEFORE_STREAM_IDS: &str = r#"
INSERT INTO records (connection, stream, key, data, parent, generation, first_seen, changed_at,
                     deleted_at, deletion_reason) VALUES
    ('c', 'devices', 'd1', '{"n":"c-d1"}', NULL, 1, 't0', 't0', NULL, NULL),
    ('c', 'devices', 'd2', '{"n":"c-d2"}', NULL, 1, 't0', 't0', 't1', 'deleted-at-source'),
    ('c', 'adapters', 'x1', '{"n":"c-x1"}', 'd1', 1, 't0', 't0', NULL, NULL),
    ('other', 'devices', 'd1', '{"n":"other-d1"}', NULL, 1, 't0', 't0', NULL, NULL);
"#;

/// After the migration to stream ids, each record is found under its own
/// connection and stream, as it was stored, and a page upserts onto it.
fn records_stored_before_stream_ids_are_found_under_their_streams(s: &mut Store) {
    let count = |s: &mut Store, connection| s.counts(connection).unwrap();
    assert_eq!(
        count(s, "c"),
        [
            ("adapters".to_string(), 1, 0),
            ("devices".to_string(), 1, 1)
        ]
    );
    assert_eq!(count(s, "other"), [("devices".to_string(), 1, 0)]);
    assert_eq!(
        s.record("c", "devices", "d1").unwrap().as_deref(),
        Some(r#"{"n":"c-d1"}"#)
    );
    assert_eq!(
        s.record("other", "devices", "d1").unwrap().as_deref(),
        Some(r#"{"n":"other-d1"}"#)
    );
    assert_eq!(
        s.embedded_in("c", "adapters", "d1", 10).unwrap(),
        [("x1".to_string(), r#"{"n":"c-x1"}"#.to_string())]
    );
    let mut devices = Vec::new();
    s.for_each_record("c", "devices", true, |k, _, d| {
        devices.push((
            k.to_string(),
            d.map(|d| (d.at.to_string(), d.reason.to_string())),
        ));
        Ok(())
    })
    .unwrap();
    assert_eq!(
        devices,
        [
            ("d1".to_string(), None),
            (
                "d2".to_string(),
                Some(("t1".to_string(), "deleted-at-source".to_string()))
            )
        ]
    );
    // A page of the same stream lands on the migrated rows, not beside them.
    commit(
        s,
        "devices",
        &[
            stored_record("d1", r#"{"n":"c-d1"}"#, None),
            stored_record("d3", r#"{"n":"c-d3"}"#, None),
        ],
    );
    assert_eq!(count(s, "c")[1], ("devices".to_string(), 2, 1));
}

#[test]
fn on_sqlite_records_stored_before_stream_ids_are_found_under_their_streams() {
    let mut t = super::testing::sqlite_as_of(2, RECORDS_BEFORE_STREAM_IDS);
    records_stored_before_stream_ids_are_found_under_their_streams(&mut t.store);
}

#[test]
#[ignore = "needs the PostgreSQL cluster tests/run-all.sh starts"]
fn on_postgres_records_stored_before_stream_ids_are_found_under_their_streams() {
    let mut t = super::testing::postgres_as_of(3, RECORDS_BEFORE_STREAM_IDS);
    records_stored_before_stream_ids_are_found_under_their_streams(&mut t.store);
}

/// SQLite's "database or disk is full" comes with what to do, and the
/// records committed before it stay.
#[test]
fn a_full_disk_says_what_to_do_and_keeps_what_was_committed() {
    let mut t = super::testing::sqlite();
    let store = &mut t.store;
    let plan = store.begin_stream("c", "devices", forced_full(1)).unwrap();
    let small = [rec("d1", "{}")];
    store
        .commit_page("c", "devices", page(plan.generation, 0, &small, None, None))
        .unwrap();
    // The file may not grow past its size now: as a full disk would.
    store
        .with_sqlite(|c| {
            let pages: i64 = c.query_row("PRAGMA page_count", [], |r| r.get(0))?;
            c.pragma_update(None, "max_page_count", pages)
        })
        .unwrap()
        .unwrap();
    let big: Vec<StoredRecord> = (0..2000)
        .map(|i| rec(&format!("k{i:05}"), &"x".repeat(400)))
        .collect();
    let err = store
        .commit_page("c", "devices", page(plan.generation, 0, &big, None, None))
        .unwrap_err();
    // As the host prints it: the error and its causes, each once.
    let chain = format!("{:#}", anyhow::Error::from(err));
    assert!(chain.contains("free space there"), "{chain}");
    assert_eq!(
        chain.matches("database or disk is full").count(),
        1,
        "{chain}"
    );
    assert_eq!(store.counts("c").unwrap(), vec![("devices".into(), 1, 0)]);
}
