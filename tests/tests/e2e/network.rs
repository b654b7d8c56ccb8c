//! Reaching the instance: HTTPS with a custom CA, an HTTPS proxy, and the
//! refusal of names that resolve to non-public addresses.

use connector_e2e::{expected_records, ConfigSpec, ConnectProxy, Fixture};

fn tls_fixture() -> (Fixture, std::path::PathBuf) {
    let f = Fixture::start_tls(120);
    let ca = f.ca_file();
    (f, ca)
}

fn assert_devices_match(f: &Fixture, config: &std::path::Path) {
    assert_eq!(
        f.export(config, "devices", false),
        expected_records(f.state(), "devices")
    );
}

#[test]
fn https_with_the_emulators_ca_file() {
    let (f, ca) = tls_fixture();
    assert!(f.emulator.base_url().starts_with("https://127.0.0.1:"));
    let config = f.config(&ConfigSpec {
        network: vec![format!("tls_ca_file = {:?}", ca.display().to_string())],
        ..Default::default()
    });
    f.sync(&config).ok();
    assert_devices_match(&f, &config);
}

#[test]
fn an_untrusted_certificate_is_explained() {
    let (f, _) = tls_fixture();
    let config = f.config(&ConfigSpec::default());
    let (code, message) = f.sync(&config).err();
    assert_eq!(code, 1);
    assert!(
        message.contains("TLS") && message.contains("not trusted"),
        "{message}"
    );
    assert!(f.state().requests().is_empty());
}

#[test]
fn through_an_https_proxy() {
    let (f, ca) = tls_fixture();
    let proxy = ConnectProxy::start();
    let config = f.config(&ConfigSpec {
        instance: Some(format!("https://localhost:{}", f.emulator.addr().port())),
        network: vec![
            format!("tls_ca_file = {:?}", ca.display().to_string()),
            format!("https_proxy = {:?}", proxy.url()),
        ],
        ..Default::default()
    });
    f.sync(&config).ok();
    assert_devices_match(&f, &config);
    assert!(proxy.tunnels() > 0);
    assert_eq!(
        proxy.tunnels(),
        f.state().connections_accepted(),
        "every connection went through the proxy"
    );
}

#[test]
fn connections_are_kept_alive_between_requests() {
    let (f, ca) = tls_fixture();
    let config = f.config(&ConfigSpec {
        network: vec![format!("tls_ca_file = {:?}", ca.display().to_string())],
        sync: vec!["page_size = 10".into()],
        ..Default::default()
    });
    f.sync(&config).ok();
    assert_devices_match(&f, &config);
    let requests = f.state().requests().len();
    let connections = f.state().connections_accepted();
    // Three streams read side by side, a request at a time each: a handful
    // of connections serve every page.
    assert!(requests >= 30, "{requests} requests");
    assert!(
        connections * 4 <= requests,
        "{connections} connections for {requests} requests"
    );
}

#[test]
fn a_name_resolving_to_a_local_address_is_refused() {
    let (f, ca) = tls_fixture();
    // `localhost` resolves to 127.0.0.1: a DNS answer must not lead to the local network.
    let config = f.config(&ConfigSpec {
        instance: Some(format!("https://localhost:{}", f.emulator.addr().port())),
        network: vec![format!("tls_ca_file = {:?}", ca.display().to_string())],
        ..Default::default()
    });
    let (code, message) = f.sync(&config).err();
    assert_eq!(code, 1);
    assert!(message.contains("not public"), "{message}");
    assert!(f.state().requests().is_empty());
}

/// A TLS emulator that accepts only clients with a certificate of its CA;
/// the client certificate and key written to files (the key owner-only).
fn mutual_tls_fixture() -> (Fixture, Vec<String>) {
    use std::os::unix::fs::PermissionsExt;
    let f = Fixture::start_with(120, |c| {
        c.tls = true;
        c.require_client_cert = true;
    });
    let ca = f.dir.path().join("emulator-ca.pem");
    std::fs::write(&ca, f.emulator.ca_pem().expect("TLS emulator")).unwrap();
    let (cert_pem, key_pem) = f.emulator.client_identity_pem().unwrap();
    let cert = f.dir.path().join("client.pem");
    let key = f.dir.path().join("client-key.pem");
    std::fs::write(&cert, cert_pem).unwrap();
    std::fs::write(&key, key_pem).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let network = vec![
        format!("tls_ca_file = {:?}", ca.display().to_string()),
        format!("client_cert_file = {:?}", cert.display().to_string()),
        format!("client_key_file = {:?}", key.display().to_string()),
    ];
    (f, network)
}

#[test]
fn mutual_tls_with_a_client_certificate() {
    let (f, network) = mutual_tls_fixture();
    let config = f.config(&ConfigSpec {
        network: network.clone(),
        ..Default::default()
    });
    f.sync(&config).ok();
    assert_devices_match(&f, &config);

    // Negative control: the same server without the client certificate.
    let without = f.config(&ConfigSpec {
        file: "without-cert.toml".into(),
        network: network[..1].to_vec(),
        ..Default::default()
    });
    let (code, message) = f.sync(&without).err();
    // Needs action (exit 1, not retried as temporary), and says which.
    assert_eq!(code, 1, "{message}");
    assert!(
        message.contains("TLS") && message.contains("requires a client certificate"),
        "{message}"
    );
    assert!(!message.contains("gave up after"), "{message}");
}

#[test]
fn a_client_key_others_can_read_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let (f, network) = mutual_tls_fixture();
    let key = f.dir.path().join("client-key.pem");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let config = f.config(&ConfigSpec {
        network: network.clone(),
        ..Default::default()
    });
    let (code, message) = f.sync(&config).err();
    assert_eq!(code, 2, "{message}");
    assert!(message.contains("chmod 600"), "{message}");
    // A certificate without its key is a configuration error too.
    let half = f.config(&ConfigSpec {
        file: "half.toml".into(),
        network: network[..2].to_vec(),
        ..Default::default()
    });
    let (code, message) = f.sync(&half).err();
    assert_eq!(code, 2, "{message}");
    assert!(message.contains("client_key_file"), "{message}");
    assert!(f.state().requests().is_empty());
}

#[test]
fn through_a_proxy_that_asks_for_credentials() {
    use base64::Engine as _;
    let (mut f, ca) = tls_fixture();
    let password = "proxy-pa55word-7f3c";
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("corp-user:{password}"))
    );
    let proxy = ConnectProxy::start_requiring(Some(expected));
    f.env
        .insert("TEST_PROXY_PASSWORD".into(), password.to_string());
    let network = vec![
        format!("tls_ca_file = {:?}", ca.display().to_string()),
        format!("https_proxy = {:?}", proxy.url()),
    ];
    let instance = Some(format!("https://localhost:{}", f.emulator.addr().port()));
    let with_credentials = f.config(&ConfigSpec {
        instance: instance.clone(),
        network: [
            network.clone(),
            vec![
                "https_proxy_user = \"corp-user\"".into(),
                "https_proxy_password_env = \"TEST_PROXY_PASSWORD\"".into(),
            ],
        ]
        .concat(),
        ..Default::default()
    });
    let out = f.sync(&with_credentials).ok();
    assert!(!out.contains(password));
    assert_devices_match(&f, &with_credentials);
    assert!(proxy.tunnels() > 0);

    // Negative control: the same proxy without credentials refuses the tunnel.
    let without = f.config(&ConfigSpec {
        file: "no-proxy-credentials.toml".into(),
        instance,
        network,
        ..Default::default()
    });
    let tunnels = proxy.tunnels();
    let (code, message) = f.sync(&without).err();
    assert_eq!(code, 1, "{message}");
    assert!(message.contains("proxy"), "{message}");
    assert_eq!(proxy.tunnels(), tunnels, "{message}");
    assert!(!message.contains(password), "{message}");
}
