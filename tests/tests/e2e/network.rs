//! Reaching the instance: HTTPS with a custom CA, an HTTPS proxy, and the
//! refusal of names that resolve to non-public addresses.

use connector_e2e::{expected_records, ConfigSpec, ConnectProxy, Fixture};

fn tls_fixture() -> (Fixture, std::path::PathBuf) {
    let f = Fixture::start_with(120, |c| c.tls = true);
    let ca = f.dir.path().join("emulator-ca.pem");
    std::fs::write(&ca, f.emulator.ca_pem().expect("TLS emulator")).unwrap();
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
