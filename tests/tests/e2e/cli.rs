//! The command-line contract: what operators see when things go right and wrong.

use connector_e2e::{ConfigSpec, Fixture, PASSWORD_VAR};
use std::collections::HashMap;
use std::sync::atomic::Ordering;

#[test]
fn info_describes_the_bundled_connector() {
    let f = Fixture::start(1);
    let out = f.cli(&["info"]).ok();
    for needle in [
        "servicenow-cmdb",
        "devices",
        "network_adapters",
        "business_applications",
        "networkAdapters",
        "x-sn-apikey",
        "/oauth_token.do",
        "grants: client-credentials, password, refresh-token",
        "device_table",
    ] {
        assert!(out.contains(needle), "missing {needle}: {out}");
    }
    let json: serde_json::Value = serde_json::from_str(&f.cli(&["info", "--json"]).ok()).unwrap();
    assert_eq!(json["streams"][0]["keyField"], "sysId");
}

#[test]
fn check_reports_every_stream() {
    let f = Fixture::start(5);
    let out = f
        .cli(&["check", "--config", f.default_config().to_str().unwrap()])
        .ok();
    assert_eq!(out.matches("readable").count(), 3, "{out}");
    assert!(!out.contains("NOT READABLE"));
}

#[test]
fn a_user_without_cmdb_read_is_told_to_get_the_role() {
    let f = Fixture::start(5);
    let config = f.config(&ConfigSpec {
        auth: Some(format!(
            "method = \"basic\"\nusername = \"no_roles\"\npassword_env = \"{PASSWORD_VAR}\""
        )),
        ..Default::default()
    });
    let (code, message) = f
        .cli(&["check", "--config", config.to_str().unwrap()])
        .err();
    assert_eq!(code, 1);
    assert!(message.contains("cmdb_read"), "{message}");
    let (_, message) = f.sync(&config).err();
    assert!(
        message.contains("cmdb_read") && message.contains("403"),
        "{message}"
    );
}

#[test]
fn an_instance_whose_ip_access_control_denies_this_host_names_the_allow_rule_to_add() {
    let f = Fixture::start(5);
    f.state().deny_all_ips.store(true, Ordering::Relaxed);
    let config = f.default_config();
    let names_the_allow_list = |message: &str| {
        assert!(
            message.contains("\"Access restricted\" page (HTTP 401)")
                && message.contains("System Security > IP Address Access Control")
                && message.contains("add an Allow rule")
                && !message.contains("rejected the credentials"),
            "{message}"
        );
    };
    let (code, message) = f
        .cli(&["check", "--config", config.to_str().unwrap()])
        .err();
    assert_eq!(code, 1);
    names_the_allow_list(&message);
    let (code, message) = f.sync(&config).err();
    assert_eq!(code, 1);
    names_the_allow_list(&message);
    let statuses: Vec<u16> = f.state().requests().iter().map(|r| r.status).collect();
    assert!(statuses.iter().all(|&s| s == 401), "{statuses:?}");
    let status = f
        .cli(&["status", "--config", config.to_str().unwrap()])
        .ok();
    assert!(!status.contains("devices: 5"), "{status}");

    // Control: once the address is admitted, the same configuration syncs.
    f.state().deny_all_ips.store(false, Ordering::Relaxed);
    f.sync(&config).ok();
}

#[test]
fn wrong_password_fails_clearly_and_no_secret_leaks_anywhere() {
    let f = Fixture::start(5);
    let config = f.default_config();
    let wrong = "Wr0ng-S3cret-Value".to_string();
    let env = HashMap::from([(PASSWORD_VAR.to_string(), wrong.clone())]);
    let run = f.cli_with_env(&["sync", "--config", config.to_str().unwrap()], &env);
    let stdout = run.stdout.clone();
    let (code, message) = run.err();
    assert_eq!(code, 1);
    assert!(
        message.contains("401") && message.contains("credentials"),
        "{message}"
    );
    // Now a good sync, then look for either secret everywhere the host writes.
    f.sync(&config).ok();
    let mut everything = stdout + &message;
    for entry in std::fs::read_dir(f.dir.path()).unwrap() {
        everything.push_str(&String::from_utf8_lossy(
            &std::fs::read(entry.unwrap().path()).unwrap(),
        ));
    }
    for secret in [&wrong, &f.password] {
        assert!(!everything.contains(secret.as_str()), "a secret leaked");
        use base64::Engine as _;
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("svc_exposure:{secret}"));
        assert!(!everything.contains(&encoded), "an encoded secret leaked");
    }
}

#[test]
fn a_wrong_password_is_sent_once_a_sync_and_does_not_lock_the_user_out() {
    // A hardened instance locks a user out after five failed logins, and a
    // sync starts twelve reads at once (three streams of four partitions).
    let f = Fixture::start(50);
    f.state()
        .configure_auth(|auth| auth.lockout_after = Some(5));
    let config = f.config(&ConfigSpec {
        sync: vec!["partitions = 4".into()],
        ..Default::default()
    });
    let wrong = HashMap::from([(PASSWORD_VAR.to_string(), "Wrong-4711".to_string())]);
    for sync in 1..=4 {
        let (code, message) = f
            .cli_with_env(&["sync", "--config", config.to_str().unwrap()], &wrong)
            .err();
        assert_eq!(code, 1, "{message}");
        assert_eq!(
            f.state().request_count(),
            sync,
            "sync {sync} sent the rejected password more than once"
        );
        assert!(
            message.contains("devices, network_adapters, business_applications: ServiceNow rejected the credentials")
                && message.matches("rejected the credentials").count() == 1,
            "the streams named together, the reason once: {message}"
        );
    }
    let locked = f
        .state()
        .configure_auth(|auth| auth.is_locked_out("svc_exposure"));
    assert!(
        !locked,
        "four syncs with a wrong password locked the user out"
    );
    f.sync(&config).ok();
}

#[test]
fn a_missing_secret_variable_is_named() {
    let f = Fixture::start(1);
    let config = f.default_config();
    let (code, message) = f
        .cli_with_env(
            &["sync", "--config", config.to_str().unwrap()],
            &HashMap::new(),
        )
        .err();
    assert_eq!(code, 2);
    assert!(
        message.contains(PASSWORD_VAR) && message.contains("not set"),
        "{message}"
    );
}

#[test]
fn configuration_mistakes_are_explained() {
    let f = Fixture::start(1);
    let bad_instance = f.config(&ConfigSpec {
        instance: Some("https://svc:Hunter2@contoso.service-now.com/now/nav/ui".into()),
        ..Default::default()
    });
    let (code, message) = f.sync(&bad_instance).err();
    assert_eq!(code, 2);
    assert!(
        message.contains("user information")
            && message.contains("instance = \"https://contoso.service-now.com\"")
            && !message.contains("Hunter2"),
        "{message}"
    );

    let bad_table = f.config(&ConfigSpec {
        settings: vec!["device_table = \"cmdb_ci_nothing\"".into()],
        ..Default::default()
    });
    let (_, message) = f.sync(&bad_table).err();
    assert!(
        message.contains("cmdb_ci_nothing") && message.contains("does not exist"),
        "{message}"
    );

    let fresh = f.config(&ConfigSpec {
        file: "fresh.toml".into(),
        ..Default::default()
    });
    std::fs::remove_file(f.dir.path().join("inventory.db")).ok();
    let (code, message) = f
        .cli(&[
            "export",
            "--config",
            fresh.to_str().unwrap(),
            "--stream",
            "devices",
        ])
        .err();
    assert_eq!(code, 2);
    assert!(message.contains("run `connector-host sync"), "{message}");

    f.sync(&f.default_config()).ok();
    let (_, message) = f
        .cli(&[
            "export",
            "--config",
            fresh.to_str().unwrap(),
            "--stream",
            "incidents",
        ])
        .err();
    assert!(message.contains("no stream `incidents`"), "{message}");
}

fn health(f: &Fixture, config: &std::path::Path) -> serde_json::Value {
    let out = f
        .cli(&["status", "--config", config.to_str().unwrap(), "--json"])
        .ok();
    serde_json::from_str::<serde_json::Value>(&out).unwrap()["health"].clone()
}

fn assert_health(f: &Fixture, config: &std::path::Path, state: &str, kind: &str, hint: &str) {
    let h = health(f, config);
    assert_eq!(
        (h["state"].as_str(), h["errorKind"].as_str()),
        (Some(state), Some(kind)),
        "{h}"
    );
    assert!(h["message"].as_str().unwrap().contains(hint), "{h}");
}

/// A missing role, an unknown table and an unreachable instance each fail
/// the run (exit 1) with the health's error kind and a hint naming what to
/// fix.
fn errors_that_need_the_operator_are_named(f: &Fixture) {
    let cases = [
        (
            ConfigSpec {
                auth: Some(format!(
                    "method = \"basic\"\nusername = \"no_roles\"\npassword_env = \"{PASSWORD_VAR}\""
                )),
                ..Default::default()
            },
            "forbidden",
            "cmdb_read",
        ),
        (
            ConfigSpec {
                settings: vec!["device_table = \"u_no_such_table\"".into()],
                ..Default::default()
            },
            "not-found",
            "u_no_such_table",
        ),
        (
            ConfigSpec {
                instance: Some("http://127.0.0.1:9".into()),
                ..Default::default()
            },
            "unreachable",
            "127.0.0.1:9",
        ),
    ];
    for (spec, kind, hint) in cases {
        // The same connection name, so that the health is the same record.
        let broken = f.config(&ConfigSpec {
            file: "broken.toml".into(),
            sync: vec!["max_attempts = 2".into(), "retry_base_ms = 1".into()],
            ..spec
        });
        let (code, _) = f.sync(&broken).err();
        assert_eq!(code, 1, "{kind}");
        assert_health(f, &broken, "failed", kind, hint);
    }
}

#[test]
fn status_follows_the_health_of_each_run() {
    let f = Fixture::start(20);
    let config = f.config(&ConfigSpec {
        sync: vec!["max_attempts = 2".into(), "retry_base_ms = 1".into()],
        ..Default::default()
    });
    f.sync(&config).ok();
    assert_eq!(health(&f, &config)["state"], "connected");

    // A temporary failure: retried at the next run, no action needed.
    f.state().inject(
        servicenow_emulator::FaultRule::next(servicenow_emulator::Fault::Status(503), 2)
            .on_path("cmdb_ci_business_app"),
    );
    f.sync_full(&config).err();
    let h = health(&f, &config);
    assert_eq!(
        (h["state"].as_str(), h["errorKind"].as_str()),
        (Some("temporary failure"), Some("temporarily-unavailable")),
        "{h}"
    );

    // Rejected credentials need the operator.
    let wrong = HashMap::from([(PASSWORD_VAR.to_string(), "wrong".to_string())]);
    f.cli_with_env(&["sync", "--config", config.to_str().unwrap()], &wrong)
        .err();
    assert_health(&f, &config, "failed", "unauthenticated", "credentials");

    f.sync(&config).ok();
    assert_eq!(health(&f, &config)["state"], "connected");

    // Every other error kind, each followed by a good run. Rate limits pass
    // by themselves; a missing role, an unknown table or an unreachable
    // instance need the operator.
    f.state().inject(
        servicenow_emulator::FaultRule::next(servicenow_emulator::Fault::RateLimitedBare, 2)
            .on_path("cmdb_ci_business_app"),
    );
    let (code, _) = f.sync(&config).err();
    assert_eq!(code, 75);
    assert_health(&f, &config, "temporary failure", "rate-limited", "429");
    f.sync(&config).ok();
    errors_that_need_the_operator_are_named(&f);
    f.sync(&config).ok();
    assert_eq!(health(&f, &config)["state"], "connected");
    let text = f
        .cli(&["status", "--config", config.to_str().unwrap()])
        .ok();
    assert!(
        text.contains("connected (since")
            && text.contains("Last runs:")
            && text.contains("incomplete"),
        "{text}"
    );
}

#[test]
fn run_every_syncs_periodically() {
    let f = Fixture::start(10);
    let config = f.default_config();
    let out = f
        .cli(&[
            "run",
            "--config",
            config.to_str().unwrap(),
            "--every",
            "1s",
            "--max-runs",
            "2",
        ])
        .ok();
    assert!(
        out.contains("next sync in 1s") && out.contains("stopped after 2 sync(s)"),
        "{out}"
    );
    let status: serde_json::Value = serde_json::from_str(
        &f.cli(&["status", "--config", config.to_str().unwrap(), "--json"])
            .ok(),
    )
    .unwrap();
    let runs = status["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0]["report"]["streams"][0]["mode"], "incremental");
    assert_eq!(runs[1]["report"]["streams"][0]["mode"], "full");
    let refused = <connector_host::cli::Cli as clap::Parser>::try_parse_from([
        "connector-host",
        "run",
        "--config",
        "x.toml",
        "--every",
        "0s",
    ])
    .unwrap_err();
    assert!(refused.to_string().contains("at least 1s"), "{refused}");
}

/// Signals this process catches (`SigCgt` in /proc/self/status), by number.
#[cfg(target_os = "linux")]
fn caught_signals() -> Vec<u32> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let mask = status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .map(|m| u64::from_str_radix(m.trim(), 16).unwrap())
        .unwrap();
    (1..=64).filter(|n| mask & (1u64 << (n - 1)) != 0).collect()
}

#[cfg(target_os = "linux")]
#[test]
fn the_cli_as_a_library_leaves_no_signal_handler_behind() {
    let f = Fixture::start(5);
    f.sync(&f.default_config()).ok();
    // SIGINT (2) and SIGTERM (15) keep their default action in this process:
    // only the binary's main installs handlers.
    let caught = caught_signals();
    assert!(
        !caught.contains(&2) && !caught.contains(&15),
        "caught: {caught:?}"
    );
}

/// The `check` text of one stream: its status line and message.
fn check_section(out: &str, stream: &str) -> String {
    let mut lines = out
        .lines()
        .skip_while(|l| !l.starts_with(&format!("  {stream} ")));
    let status = lines
        .next()
        .unwrap_or_else(|| panic!("no {stream} in {out}"));
    let message = lines.take_while(|l| l.starts_with("      "));
    std::iter::once(status)
        .chain(message)
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn check_sees_past_acl_hidden_first_rows_and_names_a_missing_column() {
    let f = Fixture::start(300);
    // The first 150 devices in sys_id order are hidden from the user:
    // a one-row probe would see none of them.
    let hidden: Vec<String> = f.state().with_db(|db| {
        db.tables["cmdb_ci_computer"].rows()[..150]
            .iter()
            .map(|r| r.key().to_string())
            .collect()
    });
    f.state().hide("cmdb_ci_computer", hidden);
    let config = f.config(&ConfigSpec {
        settings: vec!["device_criticality_column = \"u_missing_col\"".into()],
        ..Default::default()
    });
    let out = f.cli(&["check", "--config", config.to_str().unwrap()]).ok();
    let devices = check_section(&out, "devices");
    assert!(devices.contains("u_missing_col"), "{devices}");
    assert!(
        devices.contains("The server counts 300 rows in `cmdb_ci_computer`")
            && devices.contains("of the first 200 probed in sys_id order, 50 are visible to this user and 150 hidden by ACLs"),
        "{devices}"
    );
    // The other streams still verify their mapping and hide nothing.
    let adapters = check_section(&out, "network_adapters");
    assert!(adapters.contains(" 0 hidden by ACLs"), "{adapters}");
    assert!(!adapters.contains("could not be verified"), "{adapters}");
}

#[test]
fn check_tells_devices_hidden_by_acls_from_devices_of_another_class() {
    let f = Fixture::start(200);
    // Every third device is hidden; the rest are of several classes.
    let (hidden, visible_classes) = f.state().with_db(|db| {
        let table = &db.tables["cmdb_ci_computer"];
        let mut hidden = Vec::new();
        let mut classes: std::collections::BTreeMap<String, u64> = Default::default();
        for (i, row) in table.rows().iter().enumerate() {
            if i % 3 == 0 {
                hidden.push(row.key().to_string());
            } else if i < 100 {
                *classes
                    .entry(table.value(row, "sys_class_name").to_string())
                    .or_default() += 1;
            }
        }
        (hidden, classes)
    });
    let hidden_in_window = (0..100).filter(|i| i % 3 == 0).count();
    f.state().hide("cmdb_ci_computer", hidden);
    let out = f
        .cli(&["check", "--config", f.default_config().to_str().unwrap()])
        .ok();
    let devices = check_section(&out, "devices");
    assert!(
        devices.contains(&format!(
            "of the first 100 probed in sys_id order, {} are visible to this user and {hidden_in_window} hidden by ACLs",
            100 - hidden_in_window
        )),
        "{devices}"
    );
    assert!(visible_classes.len() > 1, "{visible_classes:?}");
    let listed: Vec<String> = visible_classes
        .iter()
        .map(|(class, n)| format!("{class} ({n})"))
        .collect();
    assert!(
        devices.contains(&format!(
            "Classes of the visible rows: {}.",
            listed.join(", ")
        )),
        "{devices}"
    );

    // A device table of one class only shows that class, and its own count.
    let config = f.config(&ConfigSpec {
        file: "win.toml".into(),
        settings: vec!["device_table = \"cmdb_ci_win_server\"".into()],
        ..Default::default()
    });
    let out = f.cli(&["check", "--config", config.to_str().unwrap()]).ok();
    let devices = check_section(&out, "devices");
    assert!(
        devices.contains("rows in `cmdb_ci_win_server`")
            && devices.contains("Classes of the visible rows: cmdb_ci_win_server ("),
        "{devices}"
    );
}

#[test]
fn a_bundled_component_is_written_out_whole_and_loads_as_a_plugin() {
    let f = Fixture::start(1);
    let out = f.dir.path().join("netbox.wasm");
    let out_text = out.to_str().unwrap();
    f.cli(&["component", "--connector", "netbox", "--out", out_text])
        .ok();
    let written = std::fs::read(&out).unwrap();
    assert!(written == connector_host::bundled::NETBOX_COMPONENT);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&out).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644, "an artifact others may read");
    }
    let info = f.cli(&["info", "--plugin", out_text]).ok();
    assert!(info.starts_with("netbox "), "{info}");
    // Written again over the first: replaced, not appended to.
    f.cli(&["component", "--out", out_text]).ok();
    assert!(std::fs::read(&out).unwrap() == connector_host::bundled::BUNDLED_COMPONENT);
    let (code, message) = f
        .cli(&["component", "--connector", "jira", "--out", out_text])
        .err();
    assert_eq!(code, 2);
    assert!(message.contains("`servicenow` and `netbox`"), "{message}");
}

#[test]
fn info_wit_prints_the_world_a_component_targets() {
    let f = Fixture::start(1);
    let wit = f.cli(&["info", "--wit"]).ok();
    for line in [
        "world root {",
        "  import wasi:http/outgoing-handler@0.2.12;",
        "  import exposure:connector/log@0.3.1;",
        "  export exposure:connector/source@0.3.1;",
        "package exposure:connector@0.3.1 {",
    ] {
        assert!(wit.lines().any(|l| l == line), "no `{line}` in:\n{wit}");
    }
    // Only what it uses: the ServiceNow component opens no files.
    assert!(!wit.contains("wasi:filesystem"), "{wit}");
    // The probe links a language runtime's filesystem and sockets.
    let probe = f.dir.path().join("probe.wasm");
    std::fs::write(&probe, connector_e2e::PROBE_COMPONENT).unwrap();
    let wit = f
        .cli(&["info", "--wit", "--plugin", probe.to_str().unwrap()])
        .ok();
    assert!(
        wit.contains("import wasi:filesystem/preopens@0.2.12;"),
        "{wit}"
    );
    // Not a component: a configuration error that says so.
    let bogus = f.dir.path().join("bogus.wasm");
    std::fs::write(&bogus, b"not wasm").unwrap();
    let (code, message) = f
        .cli(&["info", "--wit", "--plugin", bogus.to_str().unwrap()])
        .err();
    assert_eq!(code, 2);
    assert!(
        message.contains("is it a WebAssembly component?"),
        "{message}"
    );
}
