//! `[tls]`: `wss://` and `https://` from PEM files, certificate reloads (by the files, by a
//! configuration reload, which may name other files or turn polling on) that leave open
//! connections alone, startup checks of the files, and the handshake timeout on TLS.

use sockway_gateway::config::Config;
use sockway_gateway::server::TlsError;
use sockway_gateway::{Gateway, GatewayError, ReloadError};
use sockway_testkit::tls::{
    TestCa, TlsFiles, WssClient, connect_wss, https_request, wait_for_certificate,
};
use sockway_testkit::{DEADLINE, MockBackend, TestGateway};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config;

/// A TLS gateway on [`config`] whose certificate, signed by the returned CA, is in the
/// returned files; `extra` is appended to the config.
async fn tls_gateway(extra: &str) -> (TestCa, TlsFiles, MockBackend, TestGateway) {
    let ca = TestCa::new();
    let files = TlsFiles::new("gateway", &ca.issue());
    let backend = MockBackend::start().await;
    let toml = config(&backend, &format!("{extra}\n{}", files.toml("")));
    let gateway = TestGateway::start(&toml).await;
    (ca, files, backend, gateway)
}

/// Connects a `wss://` client trusting `ca`; returns it, its connection id and the DER of the
/// certificate the gateway presented.
async fn connect(
    gateway: &TestGateway,
    backend: &mut MockBackend,
    ca: &TestCa,
) -> (WssClient, String, Vec<u8>) {
    let (client, certificate) = connect_wss(&gateway.ws_url, ca.client_config(), &[])
        .await
        .expect("wss handshake");
    let event = backend.next_event_for("$connect").await;
    let connection_id = event["requestContext"]["connectionId"]
        .as_str()
        .unwrap()
        .to_owned();
    (client, connection_id, certificate.to_vec())
}

/// Sends a `$default` message and checks the echo comes back.
async fn round_trip(client: &mut WssClient, text: &str) {
    let message = format!(r#"{{"action":"other","text":"{text}"}}"#);
    client.send_text(&message).await;
    assert_eq!(client.next_text().await, message);
}

#[tokio::test]
async fn tls_wss_routes_messages_and_https_management_delivers() {
    let (ca, _files, mut backend, gateway) = tls_gateway("").await;
    assert!(gateway.ws_url.starts_with("wss://127.0.0.1:"));
    assert!(gateway.management_url.starts_with("https://127.0.0.1:"));

    let (mut client, certificate) = connect_wss(&gateway.ws_url, ca.client_config(), &[])
        .await
        .expect("wss handshake");
    let event = backend.next_event_for("$connect").await;
    assert_eq!(event["headers"]["X-Forwarded-Proto"], "https");
    let connection_id = event["requestContext"]["connectionId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(!certificate.is_empty());

    round_trip(&mut client, "over tls").await;
    assert_eq!(
        backend.next_event_for("$default").await["body"]
            .as_str()
            .unwrap(),
        r#"{"action":"other","text":"over tls"}"#
    );

    let (status, _, _) = https_request(
        ca.client_config(),
        "POST",
        &gateway.connection_url(&connection_id),
        "pushed over https",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(client.next_text().await, "pushed over https");

    let (status, _, body) = https_request(
        ca.client_config(),
        "GET",
        &gateway.connection_url(&connection_id),
        "",
    )
    .await;
    assert_eq!(status, 200, "{body:?}");
    gateway.shutdown().await;
}

#[tokio::test]
async fn tls_client_that_does_not_trust_the_ca_is_refused() {
    let (ca, _files, mut backend, gateway) = tls_gateway("").await;
    let stranger = TestCa::new();
    let error = connect_wss(&gateway.ws_url, stranger.client_config(), &[])
        .await
        .expect_err("a client that does not trust the CA cannot connect");
    assert!(
        error.to_string().contains("certificate"),
        "unexpected error: {error}"
    );

    // Plain text on the TLS port fails the TLS handshake: no HTTP answer, the socket closes,
    // and the gateway carries on.
    let plain_url = gateway.ws_url.replacen("wss://", "ws://", 1);
    assert!(sockway_testkit::connect(&plain_url).await.is_err());
    let mut plain = tokio::net::TcpStream::connect(gateway.gateway().local_addr())
        .await
        .unwrap();
    plain
        .write_all(b"GET /dev/@connections/x HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(DEADLINE, plain.read_to_end(&mut answer))
        .await
        .expect("the gateway closes a plain-text client")
        .ok();
    assert!(!answer.starts_with(b"HTTP/"), "{answer:?}");

    let (mut client, _, _) = connect(&gateway, &mut backend, &ca).await;
    round_trip(&mut client, "after the strangers").await;
    gateway.shutdown().await;
}

#[tokio::test]
async fn tls_reload_serves_the_new_certificate_and_keeps_open_connections() {
    let (ca, files, mut backend, gateway) = tls_gateway("").await;
    let (mut before, _, first_certificate) = connect(&gateway, &mut backend, &ca).await;

    let renewed = ca.issue();
    files.write(&renewed);
    gateway.gateway().reload_tls().expect("reload succeeds");

    let (mut after, _, second_certificate) = connect(&gateway, &mut backend, &ca).await;
    assert_eq!(second_certificate, renewed.der.to_vec());
    assert_ne!(second_certificate, first_certificate);
    round_trip(&mut before, "opened before the reload").await;
    round_trip(&mut after, "opened after the reload").await;
    gateway.shutdown().await;
}

#[tokio::test]
async fn tls_failed_reload_keeps_the_certificate_in_use() {
    let (ca, files, mut backend, gateway) = tls_gateway("").await;
    let (mut client, _, original) = connect(&gateway, &mut backend, &ca).await;

    // A half-written certificate file.
    let renewed = ca.issue();
    std::fs::write(
        &files.cert_file,
        &renewed.cert_pem[..renewed.cert_pem.len() / 4],
    )
    .unwrap();
    let error = gateway.gateway().reload_tls().unwrap_err();
    assert!(matches!(error, TlsError::Pem { .. }), "{error:?}");
    let (_, _, served) = connect(&gateway, &mut backend, &ca).await;
    assert_eq!(served, original);

    // A certificate whose key is not in the key file.
    std::fs::write(&files.cert_file, &renewed.cert_pem).unwrap();
    let error = gateway.gateway().reload_tls().unwrap_err();
    assert!(matches!(error, TlsError::KeyMismatch { .. }), "{error:?}");
    assert!(error.to_string().contains("key.pem"), "{error}");
    let (_, _, served) = connect(&gateway, &mut backend, &ca).await;
    assert_eq!(served, original);

    round_trip(&mut client, "still here").await;
    gateway.shutdown().await;
}

#[tokio::test]
async fn tls_changed_files_are_picked_up_by_polling() {
    let ca = TestCa::new();
    let files = TlsFiles::new("polling", &ca.issue());
    let mut backend = MockBackend::start().await;
    let toml = config(&backend, &files.toml(r#"reload_interval = "50ms""#));
    let gateway = TestGateway::start(&toml).await;
    let (_, _, original) = connect(&gateway, &mut backend, &ca).await;

    let renewed = ca.issue();
    files.write(&renewed);
    wait_for_certificate(&gateway.ws_url, &ca, &mut backend, &original, &renewed.der).await;
    gateway.shutdown().await;
}

#[tokio::test]
async fn tls_handshake_must_finish_within_the_handshake_timeout() {
    let (_ca, _files, _backend, gateway) =
        tls_gateway("[limits]\nhandshake_timeout = \"300ms\"").await;
    let addr = gateway.gateway().local_addr();
    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut buffer = [0u8; 64];
    let read = tokio::time::timeout(DEADLINE, silent.read(&mut buffer))
        .await
        .expect("the gateway closes a client that sends no ClientHello");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    gateway.shutdown().await;
}

#[tokio::test]
async fn tls_startup_fails_naming_the_bad_file() {
    let ca = TestCa::new();
    let certificate = ca.issue();
    let files = TlsFiles::new("startup", &certificate);
    let bind = |toml: String| async move {
        let mut config = Config::from_toml(&toml, "<test>").unwrap();
        config.gateway.listen = "127.0.0.1:0".parse().unwrap();
        Gateway::bind(config).await
    };
    let with_files = |cert: &std::path::Path, key: &std::path::Path| {
        format!(
            "[tls]\ncert_file = {:?}\nkey_file = {:?}\n",
            cert.display().to_string(),
            key.display().to_string()
        )
    };
    let chain = |error: &GatewayError| sockway_testkit::error_chain(error);

    let missing = files.cert_file.with_file_name("missing.pem");
    let error = bind(with_files(&missing, &files.key_file))
        .await
        .unwrap_err();
    assert!(
        matches!(error, GatewayError::Tls(TlsError::Read { .. })),
        "{error:?}"
    );
    assert!(chain(&error).contains("missing.pem"), "{}", chain(&error));

    // The key file given as the certificate: valid PEM, but no certificate in it.
    let error = bind(with_files(&files.key_file, &files.key_file))
        .await
        .unwrap_err();
    assert!(
        matches!(error, GatewayError::Tls(TlsError::NoCertificate { .. })),
        "{error:?}"
    );
    assert!(chain(&error).contains("key.pem"), "{}", chain(&error));

    let other_key = ca.issue();
    std::fs::write(&files.key_file, &other_key.key_pem).unwrap();
    let error = bind(with_files(&files.cert_file, &files.key_file))
        .await
        .unwrap_err();
    assert!(
        matches!(error, GatewayError::Tls(TlsError::KeyMismatch { .. })),
        "{error:?}"
    );
    assert!(chain(&error).contains("cert.pem"), "{}", chain(&error));

    std::fs::write(
        &files.key_file,
        "-----BEGIN PRIVATE KEY-----\nnot base64!\n",
    )
    .unwrap();
    let error = bind(with_files(&files.cert_file, &files.key_file))
        .await
        .unwrap_err();
    assert!(
        matches!(error, GatewayError::Tls(TlsError::Pem { .. })),
        "{error:?}"
    );
    assert!(chain(&error).contains("key.pem"), "{}", chain(&error));
}

#[tokio::test]
async fn tls_separate_management_listener_can_stay_plain() {
    let ca = TestCa::new();
    let files = TlsFiles::new("management", &ca.issue());
    let mut backend = MockBackend::start().await;

    let tls_management = config(
        &backend,
        &format!("[management]\nlisten = \"127.0.0.1:0\"\n{}", files.toml("")),
    );
    let gateway = TestGateway::start(&tls_management).await;
    assert!(gateway.management_url.starts_with("https://"));
    gateway.shutdown().await;

    let plain_management = config(
        &backend,
        &format!(
            "[management]\nlisten = \"127.0.0.1:0\"\ntls = false\n{}",
            files.toml("")
        ),
    );
    let gateway = TestGateway::start(&plain_management).await;
    assert!(gateway.ws_url.starts_with("wss://"));
    assert!(gateway.management_url.starts_with("http://"));
    let (mut client, connection_id, _) = connect(&gateway, &mut backend, &ca).await;
    let (status, _, _) = sockway_testkit::http_request(
        "POST",
        &gateway.connection_url(&connection_id),
        "plain management",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(client.next_text().await, "plain management");
    gateway.shutdown().await;
}

/// A configuration reload reads the certificate again, also from other files; one whose files
/// do not load is refused whole: its other changes are not made either.
#[tokio::test]
async fn tls_a_configuration_reload_may_name_other_files_and_is_refused_whole_when_they_fail() {
    let (ca, _files, mut backend, gateway) = tls_gateway("").await;
    let (mut client, _, original) = connect(&gateway, &mut backend, &ca).await;

    let other = TlsFiles::new("other", &ca.issue());
    let with_other = config(&backend, &other.toml(""));
    let outcome = gateway.reload(&with_other).await.unwrap();
    assert_eq!(outcome.changes, ["tls"]);
    let (_, _, served) = connect(&gateway, &mut backend, &ca).await;
    assert_ne!(served, original);

    // A key file that is not the certificate's, beside a route change.
    let mismatched = TlsFiles::new("mismatched", &ca.issue());
    std::fs::copy(&other.key_file, &mismatched.key_file).unwrap();
    let refused_config = config(
        &backend,
        &format!(
            "[routes.extra]\nintegration = \"pong\"\nroute_response = true\n{}",
            mismatched.toml("")
        ),
    );
    let refused = gateway.reload(&refused_config).await.unwrap_err();
    assert!(
        matches!(&refused, ReloadError::Tls(TlsError::KeyMismatch { .. })),
        "{refused:?}"
    );
    let (_, _, still) = connect(&gateway, &mut backend, &ca).await;
    assert_eq!(still, served);
    client.send_text(r#"{"action":"extra"}"#).await;
    // `extra` is not a route: the message went to `$default`, whose backend echoes it.
    assert_eq!(client.next_text().await, r#"{"action":"extra"}"#);
    round_trip(&mut client, "still here").await;
    gateway.shutdown().await;
}

/// Polling that a reload turns on watches the files from then on.
#[tokio::test]
async fn tls_a_reload_may_turn_polling_on() {
    let ca = TestCa::new();
    let files = TlsFiles::new("polling-reload", &ca.issue());
    let mut backend = MockBackend::start().await;
    let gateway =
        TestGateway::start(&config(&backend, &files.toml(r#"reload_interval = "0s""#))).await;
    let (_, _, original) = connect(&gateway, &mut backend, &ca).await;
    gateway
        .reload(&config(
            &backend,
            &files.toml(r#"reload_interval = "50ms""#),
        ))
        .await
        .unwrap();
    let renewed = ca.issue();
    files.write(&renewed);
    wait_for_certificate(&gateway.ws_url, &ca, &mut backend, &original, &renewed.der).await;
    gateway.shutdown().await;
}

#[tokio::test]
async fn tls_the_gateway_chooses_aes_128_gcm_and_serves_any_suite_a_client_insists_on() {
    use rustls::CipherSuite::{
        TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        TLS13_AES_128_GCM_SHA256, TLS13_AES_256_GCM_SHA384,
    };
    let (ca, _files, _backend, gateway) = tls_gateway("").await;
    let url = gateway.ws_url.replacen("wss://", "https://", 1);
    // What a client offering only `suites` (all of ring's, in rustls's order, when empty),
    // with TLS 1.2 only or both versions, ends up with.
    let negotiated = async |suites: Vec<rustls::CipherSuite>, tls12_only: bool| {
        let mut provider = rustls::crypto::ring::default_provider();
        if !suites.is_empty() {
            provider
                .cipher_suites
                .retain(|suite| suites.contains(&suite.suite()));
        }
        let versions: &[&rustls::SupportedProtocolVersion] = if tls12_only {
            &[&rustls::version::TLS12]
        } else {
            rustls::DEFAULT_VERSIONS
        };
        let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(provider))
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(ca.roots())
            .with_no_client_auth();
        let stream = sockway_testkit::tls::tls_connect(&url, std::sync::Arc::new(config))
            .await
            .expect("handshake");
        stream
            .get_ref()
            .1
            .negotiated_cipher_suite()
            .unwrap()
            .suite()
    };
    // rustls, like OpenSSL, lists AES-256-GCM first: the gateway's preference wins.
    assert_eq!(negotiated(vec![], false).await, TLS13_AES_128_GCM_SHA256);
    assert_eq!(
        negotiated(vec![TLS13_AES_256_GCM_SHA384], false).await,
        TLS13_AES_256_GCM_SHA384
    );
    assert_eq!(
        negotiated(vec![], true).await,
        TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
    );
    assert_eq!(
        negotiated(vec![TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256], true).await,
        TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
    );
    gateway.shutdown().await;
}
