//! The operator console in a real browser: `tests/browser/console-flows.mjs`
//! drives headless Chromium (the system's, through playwright-core) through
//! every flow against `serve` and the emulator, and saves a screenshot of
//! each page under `target/console-screenshots/`.
//!
//! This test needs Chromium (`/usr/bin/chromium`, or `CHROMIUM`) and
//! `npm ci --prefix tests/browser`; `tests/run-all.sh` installs both and
//! runs it with `--ignored`.

use connector_e2e::{Fixture, KillOnDrop, PASSWORD_VAR};
use servicenow_emulator::{Fault, FaultRule};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the repository")
        .to_path_buf()
}

/// What the script looks for in the record browser: an adapter's IP, its
/// device, the adapter's MAC, the application the device serves and how
/// critical that is.
fn device_to_find(f: &Fixture) -> Vec<(&'static str, String)> {
    let devices = connector_e2e::expected_records(f.state(), "devices");
    let apps = connector_e2e::expected_records(f.state(), "business_applications");
    let adapters = connector_e2e::expected_records(f.state(), "network_adapters");
    let text = |v: &serde_json::Value| v.as_str().map(str::to_string);
    adapters
        .iter()
        .find_map(|a| {
            let device = devices.iter().find(|d| d["sysId"] == a["deviceSysId"])?;
            let app = apps
                .iter()
                .find(|x| x["sysId"] == device["uPrimaryBusinessApplication"])?;
            Some(vec![
                ("FIND_IP", text(&a["ipAddress"])?),
                ("FIND_MAC", text(&a["macAddress"])?),
                ("FIND_DEVICE", text(&device["sysId"])?),
                ("FIND_APP", text(&app["name"])?),
                ("FIND_APP_CRITICALITY", text(&app["uCriticality"])?),
            ])
        })
        .expect("an adapter with an IP and a MAC on a device serving a critical application")
}

/// Requests to the devices table so far.
fn device_requests(f: &Fixture) -> u32 {
    f.state()
        .requests()
        .iter()
        .filter(|r| r.path.contains("cmdb_ci_computer"))
        .count() as u32
}

/// Reads the script's lines until it ends, answering its questions: `ask
/// hold` holds the devices pages after those `Connect` tests with (the
/// browser then sees the sync in the middle), `ask release` lets them go.
/// Returns what it said.
fn answer_the_script(f: &Fixture, script: &mut std::process::Child) -> Vec<String> {
    let mut answers = script.stdin.take().unwrap();
    let mut said = Vec::new();
    let mut before_connect = 0;
    for line in BufReader::new(script.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        eprintln!("browser: {line}");
        match line.as_str() {
            // Before "Test connection": the devices requests so far.
            "step test the connection" => before_connect = device_requests(f),
            // "Connect" tests once more (as many devices requests as the
            // test made), then the sync's first devices page passes and
            // every later one waits: the browser sees the sync in the middle.
            "ask hold" => {
                let check = device_requests(f) - before_connect;
                f.state().inject(
                    FaultRule::next(Fault::Held, 1000)
                        .on_path("cmdb_ci_computer")
                        .after(check + 1),
                );
                writeln!(answers, "ok").unwrap();
            }
            "ask release" => {
                f.state().release_held();
                writeln!(answers, "ok").unwrap();
            }
            _ => {}
        }
        said.push(line);
    }
    said
}

#[test]
#[ignore = "needs Chromium and `npm ci --prefix tests/browser`; tests/run-all.sh runs it"]
fn the_console_flows_pass_in_headless_chromium() {
    let f = Fixture::start(700);
    let dir = f.dir.path().join("connections");
    std::fs::create_dir(&dir).unwrap();
    let mut serve = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_e2e-host"))
            .args(["serve", "--listen", "127.0.0.1:0", "--config-dir"])
            .arg(&dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let mut lines = BufReader::new(serve.stdout.take().unwrap()).lines();
    let _listening = lines.next().unwrap().unwrap();
    let sign_in = lines.next().unwrap().unwrap();
    let link = sign_in.strip_prefix("sign in: ").unwrap().to_string();
    let screenshots = repository().join("target/console-screenshots");
    let _ = std::fs::remove_dir_all(&screenshots);
    let mut script = Command::new("node")
        .arg(repository().join("tests/browser/console-flows.mjs"))
        .env("CONSOLE_SIGN_IN", &link)
        .env("INSTANCE", f.emulator.base_url())
        .env("SN_USER", "svc_exposure")
        .env("SN_PASSWORD", &f.password)
        .env("WRONG_PASSWORD", "Not-The-Password-4711")
        .env("SCREENSHOTS", &screenshots)
        .envs(device_to_find(&f))
        .env_remove(PASSWORD_VAR)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node runs (is Node >= 20 on PATH?)");
    let said = answer_the_script(&f, &mut script);
    let output = script.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && said.last().map(String::as_str) == Some("done"),
        "the browser flows failed: {stderr}\n{}",
        said.join("\n")
    );
    for shot in [
        "01-data-connectors-empty",
        "05-sync-progress",
        "07-data-connectors",
        "11-disconnected",
    ] {
        assert!(screenshots.join(format!("{shot}.png")).exists(), "{shot}");
    }
    // What the browser did is on disk: the connection set aside, its secret
    // in its own file, its records deleted.
    assert!(dir.join("cmdb.toml.disconnected").exists());
    let secret = std::fs::read_to_string(dir.join("cmdb.password.secret")).unwrap();
    assert_eq!(secret, f.password);
    connector_e2e::sigterm(&serve);
    assert_eq!(serve.wait().unwrap().code(), Some(0));
}
