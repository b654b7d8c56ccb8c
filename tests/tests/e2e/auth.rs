//! The host as credential broker: OAuth 2.0 (both grants, a token expiring
//! in the middle of a sync) and API keys, end to end against the emulator
//! over HTTPS, trusting its CA.

use connector_e2e::{expected_records, ConfigSpec, Fixture, PASSWORD_VAR};
use servicenow_emulator::{Fault, FaultRule, OAuthClient};

const CLIENT_SECRET_VAR: &str = "TEST_OAUTH_CLIENT_SECRET";
const API_KEY_VAR: &str = "TEST_SERVICENOW_API_KEY";

fn fixture(client_credentials: bool) -> Fixture {
    let mut f = Fixture::start_with(200, |c| {
        c.oauth_clients = vec![OAuthClient {
            id: "exposure-client".into(),
            secret: "cl1ent-s3cret".into(),
            application_user: Some("svc_exposure".into()),
        }];
        c.client_credentials = client_credentials;
        c.api_keys = vec![("k3y-for-svc".into(), "svc_exposure".into())];
        c.tls = true;
    });
    std::fs::write(f.dir.path().join("ca.pem"), f.emulator.ca_pem().unwrap()).unwrap();
    f.env
        .insert(CLIENT_SECRET_VAR.into(), "cl1ent-s3cret".into());
    f.env.insert(API_KEY_VAR.into(), "k3y-for-svc".into());
    f
}

fn trust_ca(f: &Fixture) -> Vec<String> {
    vec![format!(
        "tls_ca_file = {:?}",
        f.dir.path().join("ca.pem").display().to_string()
    )]
}

fn oauth_config(f: &Fixture, method: &str) -> std::path::PathBuf {
    f.config(&ConfigSpec {
        network: trust_ca(f),
        auth: Some(format!(
            "method = \"{method}\"\nusername = \"svc_exposure\"\npassword_env = \"{PASSWORD_VAR}\"\nclient_id = \"exposure-client\"\nclient_secret_env = \"{CLIENT_SECRET_VAR}\""
        )),
        sync: vec!["page_size = 25".into()],
        ..Default::default()
    })
}

fn assert_complete(f: &Fixture, config: &std::path::Path) {
    for stream in ["devices", "network_adapters", "business_applications"] {
        assert_eq!(
            f.export(config, stream, false),
            expected_records(f.state(), stream),
            "{stream}"
        );
    }
}

/// `fault` happens to the tokens just before the fourth device page is
/// authenticated.
fn before_the_fourth_device_page(f: &Fixture, fault: Fault) {
    f.state().inject(
        FaultRule::next(fault, 1)
            .on_path("cmdb_ci_computer")
            .after(3),
    );
}

/// The access token dies just before the fourth device page.
fn expire_the_token_before_the_fourth_device_page(f: &Fixture) {
    before_the_fourth_device_page(f, Fault::ExpireTokens);
}

/// What `status` says of the connection `config` names.
fn status(f: &Fixture, config: &std::path::Path) -> String {
    f.cli(&["status", "--config", config.to_str().unwrap()])
        .ok()
}

/// Asserts the sync got its token by the password grant once and renewed
/// it once with the refresh token.
fn issued_one_token_by_password_and_one_by_refresh(f: &Fixture) {
    let issued = f.state().configure_auth(|a| a.tokens_issued.clone());
    assert_eq!(issued.get("password"), Some(&1), "{issued:?}");
    assert_eq!(
        issued.get("refresh_token"),
        Some(&1),
        "renewed with the refresh token: {issued:?}"
    );
}

#[test]
fn password_grant_survives_a_token_expiring_mid_sync() {
    let f = fixture(false);
    let config = oauth_config(&f, "oauth2-password");
    expire_the_token_before_the_fourth_device_page(&f);
    f.sync(&config).ok();
    assert_complete(&f, &config);
    let log = f.state().requests();
    let refused: Vec<_> = log.iter().filter(|r| r.status == 401).collect();
    // The streams run concurrently: each request in flight with the dead
    // token is refused once, then sent again with the renewed one.
    assert!(
        (1..=3).contains(&refused.len()),
        "requests that met the expired token: {refused:?}"
    );
    assert!(log
        .iter()
        .filter(|r| r.path != "/oauth_token.do")
        .all(|r| r.status == 401 || r.user.as_deref() == Some("svc_exposure")));
    issued_one_token_by_password_and_one_by_refresh(&f);
}

#[test]
fn a_renewal_the_token_endpoint_cannot_serve_now_is_retried_with_the_refresh_token() {
    let f = fixture(false);
    let config = oauth_config(&f, "oauth2-password");
    // The endpoint is in maintenance for the renewal that follows.
    expire_the_token_before_the_fourth_device_page(&f);
    f.state().inject(
        FaultRule::next(Fault::Status(503), 1)
            .on_path("oauth_token")
            .after(1),
    );
    f.sync(&config).ok();
    assert_complete(&f, &config);
    assert_eq!(f.state().pending_faults(), 0, "the faults were served");
    // The read is retried and renews with the refresh token: the password
    // is not sent again to an endpoint that could not serve the renewal.
    issued_one_token_by_password_and_one_by_refresh(&f);
}

#[test]
fn an_integration_revoked_in_the_middle_of_a_sync_fails_as_authentication_and_asks_once() {
    let f = fixture(false);
    let config = oauth_config(&f, "oauth2-password");
    // An administrator deactivates the OAuth application before the fourth
    // device page: every token is revoked, and the client gets no other.
    before_the_fourth_device_page(&f, Fault::RevokeOAuth);
    let (code, message) = f.sync(&config).err();
    // Not a temporary failure retried until the attempts run out: the
    // operator has to act.
    assert_eq!(code, 1, "{message}");
    assert!(
        message.contains("the OAuth token could not be renewed during the sync")
            && message.contains("the endpoint refused to issue an OAuth token (HTTP 401"),
        "{message}"
    );
    assert!(!message.contains("cl1ent-s3cret"), "{message}");
    let health = status(&f, &config);
    assert!(
        health.contains(": failed") && health.contains("[unauthenticated]"),
        "{health}"
    );
    // The renewal is asked once: the refresh token, then the password,
    // whatever the number of partitions that met the revoked token. A
    // password sent again and again locks a hardened instance's user out.
    let refused_grants: Vec<_> = f
        .state()
        .requests()
        .into_iter()
        .filter(|r| r.path == "/oauth_token.do" && r.status == 401)
        .collect();
    assert_eq!(refused_grants.len(), 2, "{refused_grants:?}");
}

#[test]
fn client_credentials_grant_syncs_and_a_disabled_grant_is_explained() {
    let f = fixture(false);
    let config = oauth_config(&f, "oauth2-client-credentials");
    let (code, message) = f.sync(&config).err();
    assert_eq!(code, 1);
    assert!(
        message.contains("client-credentials grant is enabled")
            && message.contains("glide.oauth.inbound.client.credential.grant_type.enabled"),
        "{message}"
    );
    assert!(!message.contains("cl1ent-s3cret"));
    f.state()
        .configure_auth(|a| a.client_credentials_enabled = true);
    f.sync(&config).ok();
    assert_complete(&f, &config);
    assert!(f
        .state()
        .requests()
        .iter()
        .filter(|r| r.path != "/oauth_token.do")
        .all(|r| r.user.as_deref() == Some("svc_exposure")));
}

#[test]
fn a_token_endpoint_unavailable_for_now_is_a_temporary_failure_and_a_refusal_is_not() {
    let f = fixture(false);
    let config = oauth_config(&f, "oauth2-password");
    // Maintenance, then a rate limit, at the token endpoint: exit 75 and
    // health `temporary failure`, with nothing read.
    for (fault, said) in [
        (Fault::Status(503), "HTTP 503"),
        (Fault::RateLimited { retry_after: 1 }, "HTTP 429"),
    ] {
        f.state()
            .inject(FaultRule::next(fault, 1).on_path("oauth_token"));
        let (code, message) = f.sync(&config).err();
        assert_eq!(code, 75, "{message}");
        assert!(
            message.contains(said) && message.contains("the next sync tries again"),
            "{message}"
        );
        let health = status(&f, &config);
        assert!(
            health.contains("temporary failure") && health.contains("[temporarily-unavailable]"),
            "{health}"
        );
    }
    assert!(f
        .state()
        .requests()
        .iter()
        .all(|r| r.path == "/oauth_token.do"));
    // The control: a refused secret needs the operator.
    let mut env = f.env.clone();
    env.insert(CLIENT_SECRET_VAR.into(), "not-the-secret".into());
    let args = ["sync", "--config", config.to_str().unwrap()];
    let (code, message) = f.cli_with_env(&args, &env).err();
    assert_eq!(code, 1, "{message}");
    assert!(message.starts_with("authentication failed"), "{message}");
    assert!(!message.contains("not-the-secret"), "{message}");
    let health = status(&f, &config);
    assert!(
        health.contains(": failed") && health.contains("[authentication]"),
        "{health}"
    );
    // Once the endpoint answers, the next sync completes.
    f.sync(&config).ok();
    assert_complete(&f, &config);
}

#[test]
fn api_key_in_the_declared_header() {
    let f = fixture(false);
    let config = f.config(&ConfigSpec {
        network: trust_ca(&f),
        auth: Some(format!(
            "method = \"api-key\"\napi_key_env = \"{API_KEY_VAR}\""
        )),
        ..Default::default()
    });
    f.sync(&config).ok();
    assert_complete(&f, &config);
    let log = f.state().requests();
    assert!(
        log.iter()
            .all(|r| r.user.as_deref() == Some("svc_exposure") && r.had_authorization),
        "{log:?}"
    );
}

#[test]
fn a_pinned_token_path_is_used_and_stays_on_the_endpoints_origin() {
    let f = fixture(false);
    let with_path = |file: &str, path: &str| {
        f.config(&ConfigSpec {
            file: file.into(),
            network: trust_ca(&f),
            auth: Some(format!(
                "method = \"oauth2-password\"\nusername = \"svc_exposure\"\npassword_env = \"{PASSWORD_VAR}\"\nclient_id = \"exposure-client\"\nclient_secret_env = \"{CLIENT_SECRET_VAR}\"\ntoken_path = {path:?}"
            )),
            ..Default::default()
        })
    };
    // The emulator serves tokens at /oauth_token.do only: a pinned path elsewhere
    // is asked (and refused), which shows the pin replaced the declared path.
    let (code, message) = f.sync(&with_path("elsewhere.toml", "/custom/token")).err();
    assert_eq!(code, 1, "{message}");
    assert!(
        message.contains("https://127.0.0.1")
            && message.contains("/custom/token answered HTTP 405"),
        "{message}"
    );
    assert!(f
        .state()
        .requests()
        .iter()
        .any(|r| r.path == "/custom/token"));
    // A path that names another host still goes to the endpoint's origin.
    let before = f.state().requests().len();
    let (_, message) = f
        .sync(&with_path("evil.toml", "//evil.example/token"))
        .err();
    let asked: Vec<String> = f.state().requests()[before..]
        .iter()
        .map(|r| r.path.clone())
        .collect();
    assert_eq!(asked, ["//evil.example/token"], "{message}");
    // And the declared path still works once the pin matches it.
    f.sync(&with_path("pinned.toml", "/oauth_token.do")).ok();
}
