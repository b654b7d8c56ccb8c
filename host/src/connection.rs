//! From a configuration to what one connection needs: the loaded component
//! and its `info`, the origin it may contact, the sender, the credential
//! (with its OAuth token obtained) and the sandbox limits.

use crate::bundled::{bundled, DEFAULT_CONNECTOR};
use crate::failure::{config_failure, Failure, EXIT_TEMPORARY_FAILURE};
use anyhow::Result;
use connector_engine::store::{Health, HealthState};
use connector_sandbox::config::Config;
use connector_sandbox::credentials::{Credential, DeclaredAuth};
use connector_sandbox::oauth::TokenError;
use connector_sandbox::origin::Origin;
use connector_sandbox::runtime::{
    read_info, ConnectorInfo, InstanceLimits, LoadedComponent, Runtime,
};
use connector_sandbox::secrets::{read_secret, Environment};
use connector_sandbox::sender::{ClientIdentity, Proxy, Sender, SenderOptions};
use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// A component loaded with its `info`.
pub struct Prepared {
    /// The runtime.
    pub runtime: &'static Runtime,
    /// The component.
    pub component: LoadedComponent,
    /// Its description.
    pub info: ConnectorInfo,
}

impl Prepared {
    /// The origin the component may contact: the configured value of the
    /// one setting it declares as its endpoint (or that setting's default),
    /// validated.
    pub fn origin(&self, config: &Config) -> Result<Origin> {
        let endpoints: Vec<_> = self.info.settings.iter().filter(|s| s.endpoint).collect();
        let [endpoint] = endpoints.as_slice() else {
            return Err(config_failure(format!(
                "the component `{}` declares {} endpoint settings; a connector must mark exactly one setting as its endpoint (the origin it may contact), so this host cannot tell where it may connect",
                self.info.name,
                endpoints.len()
            )));
        };
        let value = config
            .settings
            .iter()
            .rev()
            .find(|(name, _)| *name == endpoint.name)
            .map(|(_, value)| value.trim())
            .filter(|value| !value.is_empty())
            .or(endpoint.default_value.as_deref())
            .ok_or_else(|| {
                config_failure(format!(
                    "[settings] has no `{}`, the connector's endpoint: {} Set it, e.g. {} = \"source.example.com\"",
                    endpoint.name, endpoint.description, endpoint.name
                ))
            })?;
        Origin::parse(&endpoint.name, value).map_err(config_failure)
    }
}

/// Which component a command runs: a bundled connector by name, or a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComponentRef<'a> {
    /// A connector the host ships with (`connector = "netbox"`).
    Bundled(&'a str),
    /// A component file (`plugin = "PATH"`).
    File(&'a Path),
}

impl<'a> ComponentRef<'a> {
    /// The component a configuration names (the default bundled one when
    /// it names none).
    pub fn of(config: &'a Config) -> ComponentRef<'a> {
        ComponentRef::choose(config.connector.as_deref(), config.plugin.as_deref())
    }

    /// The component named by a bundled name or a file (the default bundled
    /// one when neither is given; the file when both are).
    pub fn choose(connector: Option<&'a str>, plugin: Option<&'a Path>) -> ComponentRef<'a> {
        match (plugin, connector) {
            (Some(path), _) => ComponentRef::File(path),
            (None, name) => ComponentRef::Bundled(name.unwrap_or(DEFAULT_CONNECTOR)),
        }
    }
}

/// Loads the configured (or bundled) component and reads its `info`.
pub async fn prepare(which: ComponentRef<'_>) -> Result<Prepared> {
    let runtime = Runtime::shared()?;
    let (bytes, what) = component_bytes(which)?;
    let component = runtime
        .load(&bytes)
        .map_err(|e| config_failure(format!("cannot load {what}: {e:#}")))?;
    let info = read_info(runtime, &component).await?;
    Ok(Prepared {
        runtime,
        component,
        info,
    })
}

/// The component's bytes (a bundled one's borrowed from the binary, not
/// copied), and how to name it in messages.
pub fn component_bytes(which: ComponentRef<'_>) -> Result<(Cow<'static, [u8]>, String)> {
    Ok(match which {
        ComponentRef::File(path) => (
            Cow::Owned(std::fs::read(path).map_err(|e| {
                config_failure(format!("cannot read the plugin {}: {e}", path.display()))
            })?),
            format!("the plugin {}", path.display()),
        ),
        ComponentRef::Bundled(name) => (
            Cow::Borrowed(bundled(name).map_err(config_failure)?),
            format!("the bundled connector `{name}`"),
        ),
    })
}

/// Why a credential could not be made ready.
#[derive(Debug)]
pub enum CredentialError {
    /// `[auth]` is wrong or its secret is missing (exit 2).
    Config(String),
    /// The token endpoint issued no token: refused (exit 1), unreachable
    /// (exit 1) or unavailable for now (exit 75).
    Token(TokenError),
}

impl std::fmt::Display for CredentialError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CredentialError::Token(TokenError::Refused(m)) => {
                write!(f, "authentication failed: {m}")
            }
            CredentialError::Config(m)
            | CredentialError::Token(TokenError::Unreachable(m) | TokenError::Unavailable(m)) => {
                f.write_str(m)
            }
        }
    }
}

impl CredentialError {
    /// The connection's health after it: a token endpoint unavailable for
    /// now is a temporary failure; the rest needs the operator.
    pub fn health(&self) -> Health {
        let (state, kind) = match self {
            CredentialError::Token(TokenError::Unavailable(_)) => {
                (HealthState::TemporaryFailure, "temporarily-unavailable")
            }
            CredentialError::Token(TokenError::Unreachable(_)) => {
                (HealthState::Failed, "unreachable")
            }
            CredentialError::Config(_) | CredentialError::Token(TokenError::Refused(_)) => {
                (HealthState::Failed, "authentication")
            }
        };
        Health {
            state,
            error_kind: Some(kind.into()),
            message: Some(self.to_string()),
        }
    }
}

impl From<CredentialError> for anyhow::Error {
    fn from(e: CredentialError) -> anyhow::Error {
        let exit_code = match &e {
            CredentialError::Config(_) => 2,
            CredentialError::Token(TokenError::Unavailable(_)) => EXIT_TEMPORARY_FAILURE,
            CredentialError::Token(_) => 1,
        };
        Failure {
            exit_code,
            message: e.to_string(),
        }
        .into()
    }
}

/// Builds the credential and obtains what it needs before the first
/// request (an OAuth token), so misconfigurations stop the run at once.
pub async fn credential(
    config: &Config,
    info: &ConnectorInfo,
    origin: &Origin,
    sender: &Arc<Sender>,
    env: &dyn Environment,
) -> Result<Credential, CredentialError> {
    let credential = Credential::from_config(
        config.auth.as_ref(),
        &DeclaredAuth::of(info),
        origin,
        sender.clone(),
        config.limits.request_timeout(),
        env,
    )
    .map_err(CredentialError::Config)?;
    credential.prepare().await.map_err(CredentialError::Token)?;
    Ok(credential)
}

/// How the host reaches the endpoint: CA bundle, client certificate,
/// proxy (its password read from the environment).
pub fn sender(config: &Config, origin: &Origin, env: &dyn Environment) -> Result<Arc<Sender>> {
    let network = &config.network;
    let proxy = match network
        .proxy_authority()
        .map_err(|e| config_failure(e.to_string()))?
    {
        None => None,
        Some(authority) => Some(
            match (&network.https_proxy_user, &network.https_proxy_password_env) {
                (Some(user), Some(var)) => {
                    let password = read_secret("proxy password", Some(var), None, env)
                        .map_err(config_failure)?;
                    Proxy::with_basic_auth(authority, user, &password)
                }
                _ => Proxy {
                    authority,
                    authorization: None,
                },
            },
        ),
    };
    let client_identity = network
        .client_identity()
        .map_err(|e| config_failure(e.to_string()))?
        .map(|(cert_file, key_file)| ClientIdentity {
            cert_file,
            key_file,
        });
    let options = SenderOptions {
        ca_file: network.tls_ca_file.clone(),
        client_identity,
        proxy,
    };
    let sender = Sender::new(origin, &options).map_err(config_failure)?;
    Ok(Arc::new(sender))
}

/// Name of a connection in the database: `[name]`, else `CONNECTOR@HOST:PORT`.
pub fn connection_name(config: &Config, info: &ConnectorInfo, origin: &Origin) -> String {
    config
        .name
        .clone()
        .unwrap_or_else(|| format!("{}@{}", info.name, origin.authority()))
}

/// The sandbox limits the configuration sets.
pub fn limits(config: &Config) -> InstanceLimits {
    InstanceLimits {
        memory_bytes: (config.limits.memory_mib.max(16) << 20) as usize,
        call_timeout: config.limits.call_timeout(),
        cpu_per_call: Duration::from_secs(config.limits.cpu_seconds_per_call.max(1)),
    }
}

#[cfg(test)]
mod tests {
    use super::{component_bytes, ComponentRef};
    use std::borrow::Cow;

    /// A bundled component is read where the binary holds it: copying its
    /// bytes first cost every command about 180 page faults (BENCHMARKS.md,
    /// "2 KiB pages in the host, start-up savings").
    #[test]
    fn a_bundled_component_is_borrowed_and_a_plugin_file_read() {
        let (bytes, what) = component_bytes(ComponentRef::Bundled("netbox")).unwrap();
        assert!(matches!(bytes, Cow::Borrowed(_)), "{what} was copied");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plugin.wasm");
        std::fs::write(&file, b"\0asm").unwrap();
        let (bytes, what) = component_bytes(ComponentRef::File(&file)).unwrap();
        assert_eq!(&*bytes, b"\0asm");
        assert!(what.contains("plugin.wasm"), "{what}");
    }
}
