//! Connect, the host's side: the forms made from the bundled connectors'
//! `info`, the connection test (`check` on a configuration that is never
//! written), and the files "Connect" writes into the configuration
//! directory: `ID.toml`, and each secret in an owner-only `ID.FIELD.secret`
//! beside it, which the TOML names (`password_file = …`).

use crate::commands::check::check_report;
use crate::commands::schedule::parse_every;
use anyhow::{Context as _, Result};
use connector_console::{
    AuthChoice, AuthField, ConnectRequest, ConnectorForm, SettingField, StreamCheckView,
    TestOutcome,
};
use connector_sandbox::config::Config;
use connector_sandbox::credentials::DeclaredAuth;
use connector_sandbox::runtime::ConnectorInfo;
use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// The Connect form of bundled connector `connector`, from its `info`.
pub(super) fn form_of(connector: &str, info: &ConnectorInfo) -> ConnectorForm {
    ConnectorForm {
        connector: connector.to_string(),
        title: format!("{} {}", info.name, info.version),
        description: info.description.clone(),
        settings: info
            .settings
            .iter()
            .map(|s| SettingField {
                name: s.name.clone(),
                description: s.description.clone(),
                required: s.required,
                default_value: s.default_value.clone(),
                endpoint: s.endpoint,
            })
            .collect(),
        auth_methods: auth_choices(&DeclaredAuth::of(info)),
    }
}

/// The `[auth] method`s a connector's declarations allow, with their fields.
fn auth_choices(declared: &DeclaredAuth) -> Vec<AuthChoice> {
    let field = |name: &str, label: &str, secret| AuthField {
        name: name.to_string(),
        label: label.to_string(),
        secret,
    };
    let choice = |method: &str, label: String, fields| AuthChoice {
        method: method.to_string(),
        label,
        fields,
    };
    let mut choices = Vec::new();
    if declared.basic {
        choices.push(choice(
            "basic",
            "User name and password".into(),
            vec![
                field("username", "User name", false),
                field("password", "Password", true),
            ],
        ));
    }
    let grants = declared.oauth.iter().flat_map(|o| &o.grants);
    for grant in grants {
        match grant.as_str() {
            "client-credentials" => choices.push(choice(
                "oauth2-client-credentials",
                "OAuth 2.0 client credentials".into(),
                vec![
                    field("client_id", "Client id", false),
                    field("client_secret", "Client secret", true),
                ],
            )),
            "password" => choices.push(choice(
                "oauth2-password",
                "OAuth 2.0 with a user's password".into(),
                vec![
                    field("username", "User name", false),
                    field("password", "Password", true),
                    field("client_id", "Client id", false),
                    field("client_secret", "Client secret", true),
                ],
            )),
            _ => {}
        }
    }
    if let Some(key) = declared.api_keys.first() {
        choices.push(choice(
            "api-key",
            format!("API key (sent in {})", key.header),
            vec![field("api_key", "API key", true)],
        ));
    }
    choices
}

/// Where the configuration a request makes reads its secrets from.
enum SecretsIn<'a> {
    /// Variables of an environment made for the test only.
    TestEnvironment,
    /// The owner-only files beside connection `id`'s file.
    Files(&'a str),
}

/// The variable holding secret `field` during a connection test.
fn test_variable(field: &str) -> String {
    format!("CONNECTOR_CONSOLE_TEST_{}", field.to_ascii_uppercase())
}

/// The file holding secret `field` of connection `id`, beside its TOML.
fn secret_file(id: &str, field: &str) -> String {
    format!("{id}.{field}.secret")
}

/// The connection's TOML: connector, database, settings, `[auth]` naming
/// (never holding) its secrets, and its schedule.
fn connection_toml(request: &ConnectRequest, secrets: SecretsIn<'_>) -> Result<String> {
    let mut top = toml::Table::new();
    top.insert("connector".into(), request.connector.clone().into());
    top.insert("database".into(), format!("{}.db", request.id).into());
    // The operator's name for it, in the database and on its pages.
    top.insert("name".into(), request.id.clone().into());
    let settings: toml::Table = request
        .settings
        .iter()
        .map(|(k, v)| (k.clone(), v.clone().into()))
        .collect();
    top.insert("settings".into(), settings.into());
    if let Some(method) = &request.auth_method {
        let mut auth = toml::Table::new();
        auth.insert("method".into(), method.clone().into());
        for (k, v) in &request.auth_fields {
            auth.insert(k.clone(), v.clone().into());
        }
        for (field, _) in &request.secrets {
            let (key, value) = match &secrets {
                SecretsIn::TestEnvironment => (format!("{field}_env"), test_variable(field)),
                SecretsIn::Files(id) => (format!("{field}_file"), secret_file(id, field)),
            };
            auth.insert(key, value.into());
        }
        top.insert("auth".into(), auth.into());
    }
    if let Some(every) = &request.every {
        let mut schedule = toml::Table::new();
        schedule.insert("every".into(), every.clone().into());
        top.insert("schedule".into(), schedule.into());
    }
    let body = toml::to_string(&top).context("cannot write the connection's TOML")?;
    Ok(format!(
        "# Written by the console of connector-host serve; secrets are in the files [auth] names.\n{body}"
    ))
}

/// Why `request` cannot become a connection file as it is, if it cannot.
pub(super) fn unusable(request: &ConnectRequest) -> Option<String> {
    let id = &request.id;
    let id_ok = (1..=64).contains(&id.len())
        && id.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !id_ok {
        return Some(format!(
            "The connection name `{id}` cannot be used: give 1 to 64 lower-case letters, digits, `-` or `_`, starting with a letter or a digit."
        ));
    }
    if let Some(every) = &request.every {
        if let Err(e) = parse_every(every) {
            return Some(format!("Sync every: {e}."));
        }
    }
    None
}

/// Runs the connector's `check` on the connection `request` describes,
/// without writing anything: its secrets come from an environment made
/// for the test alone.
pub(super) async fn test(request: &ConnectRequest, dir: &Path) -> TestOutcome {
    if let Some(problem) = unusable(request) {
        return TestOutcome::failed(problem);
    }
    let config = match connection_toml(request, SecretsIn::TestEnvironment)
        .and_then(|text| Config::parse(&text, dir).map_err(anyhow::Error::from))
    {
        Ok(config) => config,
        Err(e) => return TestOutcome::failed(format!("{e:#}")),
    };
    let env: HashMap<String, String> = request
        .secrets
        .iter()
        .map(|(field, value)| (test_variable(field), value.expose().to_string()))
        .collect();
    match check_report(&config, &env).await {
        Ok((_, _, report)) => TestOutcome {
            problem: None,
            streams: report
                .streams
                .into_iter()
                .map(|s| StreamCheckView {
                    stream: s.stream_name,
                    readable: s.readable,
                    missing_columns: s.missing_columns,
                    message: s.message,
                })
                .collect(),
        },
        Err(e) => TestOutcome::failed(troubleshooting(&e)),
    }
}

/// A failed test's error as the page shows it, under its "Connection test
/// failed" heading: without the CLI's own lead-in, starting with a capital.
fn troubleshooting(e: &anyhow::Error) -> String {
    let text = format!("{e:#}");
    let text = text
        .strip_prefix("the connection test failed: ")
        .unwrap_or(&text);
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Writes connection `request.id` into `dir`: each secret into its
/// owner-only file, then the TOML (owner-only too), which must not exist
/// yet. On failure nothing is left behind. The TOML's path.
pub(super) fn write_connection(dir: &Path, request: &ConnectRequest) -> Result<PathBuf> {
    let file = dir.join(format!("{}.toml", request.id));
    let text = connection_toml(request, SecretsIn::Files(&request.id))?;
    let mut written = Vec::new();
    let outcome = (|| {
        for (field, value) in &request.secrets {
            let path = dir.join(secret_file(&request.id, field));
            owner_only_file(dir, value.expose().as_bytes())?
                .persist(&path)
                // The error holds the temporary file: drop it, and the file goes.
                .map_err(|e| e.error)
                .with_context(|| format!("cannot write {}", path.display()))?;
            written.push(path);
        }
        owner_only_file(dir, text.as_bytes())?
            .persist_noclobber(&file)
            .map_err(|e| e.error)
            .with_context(|| format!("cannot write {} (does it exist already?)", file.display()))?;
        Ok(file.clone())
    })();
    if outcome.is_err() {
        for path in written {
            let _ = std::fs::remove_file(path);
        }
    }
    outcome
}

/// A new file in `dir` holding `bytes`, mode 600, flushed to disk, to be
/// put in place under its name.
fn owner_only_file(dir: &Path, bytes: &[u8]) -> Result<tempfile::NamedTempFile> {
    // tempfile creates its files with mode 600 on Unix.
    let mut f = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot create a file in {}", dir.display()))?;
    f.write_all(bytes)?;
    f.as_file().sync_all()?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use connector_console::SecretValue;

    fn request() -> ConnectRequest {
        ConnectRequest {
            connector: "servicenow".into(),
            id: "cmdb-prod".into(),
            every: Some("6h".into()),
            settings: vec![("instance".into(), "http://127.0.0.1:9".into())],
            auth_method: Some("basic".into()),
            auth_fields: vec![("username".into(), "reader \"q\"".into())],
            secrets: vec![("password".into(), SecretValue::new("s3cret pass".into()))],
        }
    }

    #[test]
    fn the_written_toml_names_the_secret_file_and_loads_as_a_configuration() {
        let dir = tempfile::tempdir().unwrap();
        let file = write_connection(dir.path(), &request()).unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(!text.contains("s3cret"), "{text}");
        let config = Config::load(&file).unwrap();
        let auth = config.auth.unwrap();
        assert_eq!(auth.username.as_deref(), Some("reader \"q\""));
        let secret = dir.path().join("cmdb-prod.password.secret");
        assert_eq!(auth.password_file.as_deref(), Some(secret.as_path()));
        assert_eq!(std::fs::read_to_string(&secret).unwrap(), "s3cret pass");
        assert_eq!(
            config.database.sqlite_file(),
            Some(dir.path().join("cmdb-prod.db").as_path())
        );
        assert_eq!(config.name.as_deref(), Some("cmdb-prod"));
        assert_eq!(config.schedule.every.as_deref(), Some("6h"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for f in [&file, &secret] {
                let mode = std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{}", f.display());
            }
        }
    }

    #[test]
    fn an_existing_connection_is_not_overwritten_and_nothing_is_left_behind() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cmdb-prod.toml"), "# mine\n").unwrap();
        let e = write_connection(dir.path(), &request()).unwrap_err();
        assert!(format!("{e:#}").contains("exist already"), "{e:#}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("cmdb-prod.toml")).unwrap(),
            "# mine\n"
        );
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec!["cmdb-prod.toml"]);
    }

    #[test]
    fn names_that_are_not_plain_file_stems_are_refused() {
        for id in ["", "../x", "a/b", "Cmdb", "-x", ".x", &"a".repeat(65)] {
            let mut r = request();
            r.id = id.into();
            assert!(unusable(&r).is_some(), "{id}");
        }
        let mut r = request();
        r.every = Some("often".into());
        assert!(unusable(&r).unwrap().contains("Sync every"));
        assert_eq!(unusable(&request()), None);
    }
}
