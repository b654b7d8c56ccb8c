//! `connector-host demo`: the bundled emulator, the bundled component, a real
//! sync over HTTP on 127.0.0.1, and a readable summary.

use anyhow::{Context as _, Result};
use connector_sandbox::secrets::Environment;
use servicenow_emulator::{DataSpec, Emulator, EmulatorConfig, User};
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

/// The password of the demo's integration user: generated per run and held
/// only in memory (it reaches the host through an in-memory environment).
fn demo_password() -> String {
    use rand::Rng as _;
    let mut rng = rand::rng();
    (0..24)
        .map(|_| rng.sample(rand::distr::Alphanumeric) as char)
        .collect()
}

/// Runs the demo with `devices` generated devices.
pub async fn run(devices: usize, dir: Option<&Path>, out: &mut dyn Write) -> Result<()> {
    let password = demo_password();
    let emulator = Emulator::start(EmulatorConfig {
        data: DataSpec { devices, seed: 42 },
        users: vec![User::new("svc_exposure", &password, &["cmdb_read"])],
        ..Default::default()
    })?;
    // Kept until the end: dropping it removes the temporary directory.
    let (dir, _temp) = demo_dir(dir)?;
    let config_path = write_config(&dir, &emulator.base_url())?;
    let env: HashMap<String, String> = HashMap::from([(PASSWORD_VARIABLE.into(), password)]);
    writeln!(
        out,
        "Emulated ServiceNow instance with {devices} devices at {}",
        emulator.base_url()
    )?;
    writeln!(out, "Configuration: {}\n", config_path.display())?;
    let report = crate::commands::sync::sync(
        &config_path,
        &env as &dyn Environment,
        Default::default(),
        out,
    )
    .await?;
    print_one_device(&config_path, out).await?;
    let requests = emulator.state().requests();
    let authenticated = requests.iter().filter(|r| r.user.is_some()).count();
    writeln!(
        out,
        "\nThe emulator saw {} requests, {authenticated} authenticated by the host (the component never saw the password). {} records in {}.",
        requests.len(),
        report.streams.iter().map(|s| s.records()).sum::<u64>(),
        crate::commands::sync::elapsed_text(report.seconds)
    )?;
    Ok(())
}

/// The variable the demo's configuration names for the password.
const PASSWORD_VARIABLE: &str = "DEMO_SERVICENOW_PASSWORD";

/// The demo's directory: `dir` (created if needed), else a private
/// temporary one, returned too so that it lives as long as the demo.
fn demo_dir(dir: Option<&Path>) -> Result<(std::path::PathBuf, Option<tempfile::TempDir>)> {
    match dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
            Ok((d.to_path_buf(), None))
        }
        None => {
            let temp = tempfile_dir()?;
            Ok((temp.path().to_path_buf(), Some(temp)))
        }
    }
}

/// Writes the demo's configuration (no secret in it: the password is named
/// by its variable) and returns its path.
fn write_config(dir: &Path, base_url: &str) -> Result<std::path::PathBuf> {
    let path = dir.join("demo.toml");
    std::fs::write(
        &path,
        format!(
            "# Written by `connector-host demo`.\ndatabase = \"demo.db\"\n\n[settings]\ninstance = \"{base_url}\"\n\n[auth]\nmethod = \"basic\"\nusername = \"svc_exposure\"\npassword_env = \"{PASSWORD_VARIABLE}\"\n"
        ),
    )?;
    Ok(path)
}

/// Prints the first device as an exposure platform receives it (the nested
/// export).
async fn print_one_device(config_path: &Path, out: &mut dyn Write) -> Result<()> {
    let config = connector_sandbox::config::Config::load(config_path)?;
    let p = crate::connection::prepare(crate::connection::ComponentRef::Bundled(
        crate::bundled::DEFAULT_CONNECTOR,
    ))
    .await?;
    // The demo's database is a SQLite file: no password to read.
    let no_env = std::collections::HashMap::<String, String>::new();
    let store = crate::database::StoreLocation::of(&config.database, &no_env)?.open()?;
    let connection = crate::connection::connection_name(&config, &p.info, &p.origin(&config)?);
    let mut sample = Vec::new();
    let nested = connector_engine::export::ExportOptions {
        nested: true,
        include_deleted: false,
    };
    connector_engine::export::export(&store, &p.info, &connection, "devices", nested, &mut sample)?;
    let first = String::from_utf8_lossy(&sample)
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&first) {
        writeln!(
            out,
            "\nOne device, as `export --stream devices --nested` writes it:"
        )?;
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
    }
    Ok(())
}

/// A private directory for the demo (a random name, mode 0700, removed when
/// dropped): another user cannot predict it, plant files in it, or read the
/// demo's database.
fn tempfile_dir() -> Result<tempfile::TempDir> {
    let mut builder = tempfile::Builder::new();
    builder.prefix("connector-host-demo-");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o700));
    }
    builder
        .tempdir()
        .context("cannot create a temporary directory for the demo")
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_demo_directory_is_private_and_unpredictable() {
        let (a, b) = (
            super::tempfile_dir().unwrap(),
            super::tempfile_dir().unwrap(),
        );
        assert_ne!(a.path(), b.path());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(a.path()).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "{mode:o}");
        }
    }
}
