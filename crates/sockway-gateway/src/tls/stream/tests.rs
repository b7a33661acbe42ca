//! The unbuffered TLS stream against a tokio-rustls client over loopback: the handshake,
//! records larger than one read both ways, a key update from the client, buffers released
//! while idle, `close_notify` as the end of the stream, and the alert a failed handshake sends.

use std::net::Ipv4Addr;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use sockway_testkit::DEADLINE;
use sockway_testkit::tls::TestCa;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;

use rustls::CipherSuite;

use super::{Layer, TlsStream, accept};

/// A server config for a certificate `ca` issued, the way `Tls::load` builds its own.
fn server_config(ca: &TestCa) -> Arc<ServerConfig> {
    let issued = ca.issue();
    let chain = CertificateDer::pem_slice_iter(issued.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).unwrap();
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.enable_secret_extraction = true;
    Arc::new(config)
}

/// A connected pair: the client's tokio-rustls stream and the server's [`TlsStream`].
async fn pair() -> (tokio_rustls::client::TlsStream<TcpStream>, TlsStream) {
    let ca = TestCa::new();
    let client_config = ca.client_config();
    pair_with(&ca, client_config).await
}

/// A client config that offers only `suite` (so only its protocol version).
fn client_offering(ca: &TestCa, suite: CipherSuite) -> Arc<rustls::ClientConfig> {
    let mut provider = rustls::crypto::ring::default_provider();
    provider
        .cipher_suites
        .retain(|supported| supported.suite() == suite);
    let version = provider.cipher_suites[0].version();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(ca.roots())
        .with_no_client_auth();
    Arc::new(config)
}

/// [`pair`] with the client's config.
async fn pair_with(
    ca: &TestCa,
    client_config: Arc<rustls::ClientConfig>,
) -> (tokio_rustls::client::TlsStream<TcpStream>, TlsStream) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = server_config(ca);
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        accept(config, tcp).await
    });
    let tcp = TcpStream::connect(addr).await.unwrap();
    let client =
        TlsConnector::from(client_config).connect(ServerName::IpAddress(addr.ip().into()), tcp);
    let client = tokio::time::timeout(DEADLINE, client)
        .await
        .expect("the handshake finishes")
        .expect("the client accepts the handshake");
    let server = tokio::time::timeout(DEADLINE, server)
        .await
        .expect("the server finishes the handshake")
        .unwrap()
        .expect("the server accepts the handshake");
    (client, server)
}

/// Reads exactly `length` bytes.
async fn read_exactly(stream: &mut (impl AsyncReadExt + Unpin), length: usize) -> Vec<u8> {
    let mut bytes = vec![0; length];
    tokio::time::timeout(DEADLINE, stream.read_exact(&mut bytes))
        .await
        .expect("the bytes arrive")
        .unwrap();
    bytes
}

/// Whether the stream holds no buffer at all.
fn holds_nothing(stream: &TlsStream) -> bool {
    stream.incoming.capacity() == 0
        && stream.outgoing.capacity() == 0
        && stream.plaintext.capacity() == 0
}

#[tokio::test]
async fn tls_stream_carries_records_larger_than_a_read_both_ways_and_then_holds_nothing() {
    let (mut client, mut server) = pair().await;
    assert!(holds_nothing(&server), "after the handshake: {server:?}");
    // Several full 16 KiB records, and one split over many socket reads.
    let message: Vec<u8> = (0..100_000u32).map(|index| (index % 251) as u8).collect();
    client.write_all(&message).await.unwrap();
    client.flush().await.unwrap();
    assert_eq!(read_exactly(&mut server, message.len()).await, message);
    server.write_all(&message).await.unwrap();
    server.flush().await.unwrap();
    assert_eq!(read_exactly(&mut client, message.len()).await, message);
    assert!(holds_nothing(&server), "after the exchange: {server:?}");
}

#[tokio::test]
async fn tls_stream_follows_a_key_update_from_the_client() {
    let (mut client, mut server) = pair().await;
    client.write_all(b"before").await.unwrap();
    client.flush().await.unwrap();
    assert_eq!(read_exactly(&mut server, 6).await, b"before");
    // The client's next record carries a KeyUpdate asking the server to update too; the
    // server's answer must come before its next data, under its new keys.
    client.get_mut().1.refresh_traffic_keys().unwrap();
    client.write_all(b"after").await.unwrap();
    client.flush().await.unwrap();
    assert_eq!(read_exactly(&mut server, 5).await, b"after");
    server.write_all(b"answer").await.unwrap();
    server.flush().await.unwrap();
    assert_eq!(read_exactly(&mut client, 6).await, b"answer");
    client.write_all(b"again").await.unwrap();
    client.flush().await.unwrap();
    assert_eq!(read_exactly(&mut server, 5).await, b"again");
}

#[tokio::test]
async fn tls_stream_reads_close_notify_as_the_end_and_sends_its_own_on_shutdown() {
    let (mut client, mut server) = pair().await;
    client.write_all(b"last words").await.unwrap();
    client.shutdown().await.unwrap();
    let mut received = Vec::new();
    tokio::time::timeout(DEADLINE, server.read_to_end(&mut received))
        .await
        .expect("the end arrives")
        .expect("close_notify is a clean end");
    assert_eq!(received, b"last words");
    server.shutdown().await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(DEADLINE, client.read_to_end(&mut rest))
        .await
        .expect("the server's end arrives")
        .expect("the server sent close_notify");
    assert!(rest.is_empty());
}

#[tokio::test]
async fn tls_stream_reports_an_end_without_close_notify_as_unexpected() {
    let (client, mut server) = pair().await;
    // TCP's end (FIN) without close_notify. The socket stays open until the server has read
    // it: closing it with the server's tickets unread would reset the connection instead.
    let (mut tcp, _) = client.into_inner();
    tcp.shutdown().await.unwrap();
    let mut received = Vec::new();
    let error = tokio::time::timeout(DEADLINE, server.read_to_end(&mut received))
        .await
        .expect("the end arrives")
        .expect_err("a truncated stream is an error");
    assert_eq!(error.kind(), std::io::ErrorKind::UnexpectedEof);
    drop(tcp);
}

#[tokio::test]
async fn tls_stream_answers_a_handshake_it_cannot_complete_with_an_alert() {
    let ca = TestCa::new();
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = server_config(&ca);
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        accept(config, tcp).await
    });
    // TLS 1.2 with RSA key exchange signatures only: nothing the server's ECDSA certificate
    // can serve.
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites.retain(|suite| {
        suite.suite() == rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
    });
    let client_config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let handshake = TlsConnector::from(Arc::new(client_config))
        .connect(ServerName::IpAddress(addr.ip().into()), tcp);
    let error = tokio::time::timeout(DEADLINE, handshake)
        .await
        .expect("the handshake ends")
        .expect_err("no cipher suite is shared");
    let cause = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    assert_eq!(
        cause,
        Some(&rustls::Error::AlertReceived(
            rustls::AlertDescription::HandshakeFailure
        )),
        "{error}"
    );
    let server_error = tokio::time::timeout(DEADLINE, server)
        .await
        .expect("the server gives up")
        .unwrap()
        .expect_err("the server refuses the handshake");
    assert_eq!(server_error.kind(), std::io::ErrorKind::InvalidData);
}

/// Whether the gateway's own TLS 1.3 record layer carries the stream.
fn carried_here(stream: &TlsStream) -> bool {
    matches!(stream.layer, Layer::Tls13(_))
}

/// One exchange each way, `message` echoed back.
async fn exchange(
    client: &mut tokio_rustls::client::TlsStream<TcpStream>,
    server: &mut TlsStream,
    message: &[u8],
) {
    client.write_all(message).await.unwrap();
    client.flush().await.unwrap();
    let received = read_exactly(server, message.len()).await;
    assert_eq!(received, message);
    server.write_all(&received).await.unwrap();
    server.flush().await.unwrap();
    assert_eq!(read_exactly(client, message.len()).await, message);
}

#[tokio::test]
async fn tls_stream_carries_every_tls13_suite_itself_and_leaves_tls12_to_rustls() {
    let ca = TestCa::new();
    let message: Vec<u8> = (0..40_000u32).map(|index| (index % 241) as u8).collect();
    for suite in [
        CipherSuite::TLS13_AES_128_GCM_SHA256,
        CipherSuite::TLS13_AES_256_GCM_SHA384,
        CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
    ] {
        let (mut client, mut server) = pair_with(&ca, client_offering(&ca, suite)).await;
        assert!(carried_here(&server), "{suite:?}: {server:?}");
        exchange(&mut client, &mut server, &message).await;
        // Keys updated both ways (the client asks the server to update too), then more data.
        client.get_mut().1.refresh_traffic_keys().unwrap();
        exchange(&mut client, &mut server, b"after the key update").await;
        assert!(holds_nothing(&server), "{suite:?}: {server:?}");
    }
    for suite in [
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ] {
        let (mut client, mut server) = pair_with(&ca, client_offering(&ca, suite)).await;
        assert!(!carried_here(&server), "{suite:?}: {server:?}");
        exchange(&mut client, &mut server, &message).await;
    }
}

#[tokio::test]
async fn tls_stream_updates_its_sending_key_at_the_confidentiality_limit() {
    let (mut client, mut server) = pair().await;
    let Layer::Tls13(records) = &mut server.layer else {
        panic!("a TLS 1.3 stream is carried here: {server:?}");
    };
    records.set_confidentiality_limit(4);
    // Ten records of data: the key is updated before the fourth record under each key, so
    // the client reads on across three key updates.
    let message: Vec<u8> = (0..10 * 16_384u32)
        .map(|index| (index % 239) as u8)
        .collect();
    server.write_all(&message).await.unwrap();
    server.flush().await.unwrap();
    assert_eq!(read_exactly(&mut client, message.len()).await, message);
    let Layer::Tls13(records) = &server.layer else {
        unreachable!();
    };
    assert!(
        records.sent_under_this_key() < 4,
        "sent {} records under one key",
        records.sent_under_this_key()
    );
    exchange(&mut client, &mut server, b"still talking").await;
}

/// The alert the client reads after the server refused what it sent.
async fn alert_the_client_reads(client: &mut tokio_rustls::client::TlsStream<TcpStream>) -> String {
    let mut rest = Vec::new();
    let error = tokio::time::timeout(DEADLINE, client.read_to_end(&mut rest))
        .await
        .expect("the alert arrives")
        .expect_err("a fatal alert is an error");
    error.to_string()
}

#[tokio::test]
async fn tls_stream_refuses_a_forged_record_with_bad_record_mac() {
    let (mut client, mut server) = pair().await;
    exchange(&mut client, &mut server, b"hello").await;
    // An application data record whose tag cannot be right, straight onto the socket.
    let mut forged = vec![23, 3, 3, 0, 40];
    forged.extend((0..40u8).map(|byte| byte.wrapping_mul(7)));
    client.get_mut().0.write_all(&forged).await.unwrap();
    let mut buffer = [0u8; 16];
    let error = tokio::time::timeout(DEADLINE, server.read(&mut buffer))
        .await
        .expect("the record arrives")
        .expect_err("a forged record is refused");
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidData);
    assert!(error.to_string().contains("decrypt"), "{error}");
    let alert = alert_the_client_reads(&mut client).await;
    assert!(alert.contains("BadRecordMac"), "{alert}");
    // Nothing more goes either way.
    assert!(server.write_all(b"more").await.is_err());
}

#[tokio::test]
async fn tls_stream_refuses_an_oversized_record_with_record_overflow() {
    let (mut client, mut server) = pair().await;
    exchange(&mut client, &mut server, b"hello").await;
    // A header announcing 2^14 + 257 bytes of ciphertext: refused before it is read.
    client
        .get_mut()
        .0
        .write_all(&[23, 3, 3, 0x41, 0x01])
        .await
        .unwrap();
    let mut buffer = [0u8; 16];
    let error = tokio::time::timeout(DEADLINE, server.read(&mut buffer))
        .await
        .expect("the header arrives")
        .expect_err("an oversized record is refused");
    assert!(error.to_string().contains("2^14"), "{error}");
    let alert = alert_the_client_reads(&mut client).await;
    assert!(alert.contains("RecordOverflow"), "{alert}");
}

#[tokio::test]
async fn tls_stream_keeps_only_its_keys_while_idle() {
    let (mut client, mut server) = pair().await;
    exchange(&mut client, &mut server, b"hello").await;
    assert!(holds_nothing(&server), "{server:?}");
    // What an idle connection's task holds inline, and what it keeps boxed beside it.
    let inline = std::mem::size_of::<TlsStream>();
    assert!(inline <= 160, "TlsStream grew to {inline} bytes");
    let boxed = std::mem::size_of::<super::Records>();
    assert!(boxed <= 1024, "the record layer grew to {boxed} bytes");
}
