//! Test certificates and TLS clients: [`TestCa`] (a CA made with rcgen) signs
//! [`ServerCertificate`]s, [`TlsFiles`] holds the PEM files a gateway's `[tls]` names, and
//! [`connect_wss`] and [`https_request`] are clients that trust only the CA they are given.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::ClientConfig;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self};

use crate::{DEADLINE, WsClient};

/// A WebSocket client over TLS.
pub type WssClient = WsClient<TlsStream<TcpStream>>;

/// A certificate authority for one test.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A server certificate and its key, as PEM and as the certificate's DER.
#[derive(Debug, Clone)]
pub struct ServerCertificate {
    /// The certificate chain in PEM: the server's certificate, then the CA's.
    pub cert_pem: String,
    /// The private key, PKCS#8 PEM.
    pub key_pem: String,
    /// The server's certificate, DER: what a client sees in the handshake.
    pub der: CertificateDer<'static>,
}

/// `cert.pem` and `key.pem` in a fresh temporary directory, removed when dropped.
#[derive(Debug)]
pub struct TlsFiles {
    directory: PathBuf,
    /// The certificate chain file.
    pub cert_file: PathBuf,
    /// The private key file.
    pub key_file: PathBuf,
}

impl TestCa {
    /// A new CA with a fresh P-256 key.
    pub fn new() -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("empty SAN list");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "sockway test CA");
        let key = KeyPair::generate().expect("generate the CA key");
        TestCa {
            issuer: CertifiedIssuer::self_signed(params, key).expect("self-sign the CA"),
        }
    }

    /// A certificate for `localhost` and `127.0.0.1`, signed by this CA, with a fresh key.
    pub fn issue(&self) -> ServerCertificate {
        let params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("valid subject alternative names");
        let key = KeyPair::generate().expect("generate the server key");
        let certificate = params
            .signed_by(&key, &self.issuer)
            .expect("sign the server certificate");
        ServerCertificate {
            cert_pem: format!("{}{}", certificate.pem(), self.issuer.pem()),
            key_pem: key.serialize_pem(),
            der: certificate.der().clone(),
        }
    }

    /// A root store holding this CA alone.
    pub fn roots(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(self.issuer.der().clone())
            .expect("the CA certificate is valid");
        roots
    }

    /// A client config that trusts this CA and nothing else, offering ALPN `http/1.1`.
    pub fn client_config(&self) -> Arc<ClientConfig> {
        let mut config =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("ring supports TLS 1.2 and 1.3")
                .with_root_certificates(self.roots())
                .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

impl Default for TestCa {
    fn default() -> Self {
        TestCa::new()
    }
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("TestCa").finish_non_exhaustive()
    }
}

impl TlsFiles {
    /// Writes `certificate` to `cert.pem` and `key.pem` in a directory named after `name`, this
    /// process and a counter.
    pub fn new(name: &str, certificate: &ServerCertificate) -> TlsFiles {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let sequence = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let directory = std::env::temp_dir().join(format!(
            "sockway-tls-{name}-{}-{sequence}",
            std::process::id()
        ));
        std::fs::create_dir_all(&directory).expect("create the certificate directory");
        let files = TlsFiles {
            cert_file: directory.join("cert.pem"),
            key_file: directory.join("key.pem"),
            directory,
        };
        files.write(certificate);
        files
    }

    /// Replaces both files with `certificate`.
    pub fn write(&self, certificate: &ServerCertificate) {
        std::fs::write(&self.cert_file, &certificate.cert_pem).expect("write cert.pem");
        std::fs::write(&self.key_file, &certificate.key_pem).expect("write key.pem");
    }

    /// The `[tls]` table naming these files, with `extra` keys (e.g. `reload_interval`).
    pub fn toml(&self, extra: &str) -> String {
        format!(
            "\n[tls]\ncert_file = {:?}\nkey_file = {:?}\n{extra}\n",
            self.cert_file.display().to_string(),
            self.key_file.display().to_string()
        )
    }
}

impl Drop for TlsFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.directory);
    }
}

/// Opens TCP to `url`'s host and port and runs a TLS handshake verified by `config`.
pub async fn tls_connect(
    url: &str,
    config: Arc<ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let uri: http::Uri = url.parse().expect("valid test URL");
    let host = uri.host().expect("test URL has a host").to_owned();
    let port = uri.port_u16().expect("test URL has a port");
    let server_name = ServerName::try_from(host.clone()).expect("valid server name");
    let handshake = async {
        let tcp = TcpStream::connect((host.as_str(), port)).await?;
        TlsConnector::from(config).connect(server_name, tcp).await
    };
    tokio::time::timeout(DEADLINE, handshake)
        .await
        .unwrap_or_else(|_| panic!("TLS handshake with {url} did not finish within {DEADLINE:?}"))
}

/// The server certificate a TLS connection was shown.
pub fn peer_certificate(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .expect("the server presented a certificate")
        .clone()
        .into_owned()
}

/// Connects a WebSocket client to a `wss://` URL, trusting what `config` trusts, with extra
/// request headers. Returns the client and the certificate the server presented.
pub async fn connect_wss(
    url: &str,
    config: Arc<ClientConfig>,
    headers: &[(&str, &str)],
) -> Result<(WssClient, CertificateDer<'static>), tungstenite::Error> {
    let stream = tls_connect(url, config).await?;
    let certificate = peer_certificate(&stream);
    let mut request = url.into_client_request()?;
    for (name, value) in headers {
        request.headers_mut().append(
            http::HeaderName::try_from(*name).expect("valid header name"),
            http::HeaderValue::try_from(*value).expect("valid header value"),
        );
    }
    let (socket, response) =
        tokio::time::timeout(DEADLINE, tokio_tungstenite::client_async(request, stream))
            .await
            .unwrap_or_else(|_| {
                panic!("WebSocket handshake with {url} did not finish within {DEADLINE:?}")
            })?;
    Ok((
        WsClient::from_socket(socket, response.headers().clone()),
        certificate,
    ))
}

/// One HTTPS request on a fresh connection verified by `config`: `(status, headers, body)`.
pub async fn https_request(
    config: Arc<ClientConfig>,
    method: &str,
    url: &str,
    body: impl Into<Bytes>,
) -> (u16, http::HeaderMap, Bytes) {
    let stream = tls_connect(url, config)
        .await
        .unwrap_or_else(|error| panic!("{method} {url}: TLS: {error}"));
    let uri: http::Uri = url.parse().expect("valid test URL");
    let exchange = async {
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        let request = http::Request::builder()
            .method(method)
            .uri(uri.path_and_query().map_or("/", |path| path.as_str()))
            .header(
                "Host",
                uri.authority().expect("test URL has a host").as_str(),
            )
            .body(Full::new(body.into()))
            .expect("valid test request");
        let response = sender.send_request(request).await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await?.to_bytes();
        Ok::<_, hyper::Error>((status, headers, body))
    };
    tokio::time::timeout(DEADLINE, exchange)
        .await
        .unwrap_or_else(|_| panic!("{method} {url}: no response within {DEADLINE:?}"))
        .unwrap_or_else(|error| panic!("{method} {url}: {error}"))
}

/// Opens `wss://` connections to `url` every 25 ms until one is served `expected`; each
/// connection's `$connect` is taken from `backend`. Any other certificate than `previous` or
/// `expected`, or no change within [`DEADLINE`], fails the test.
pub async fn wait_for_certificate(
    url: &str,
    ca: &TestCa,
    backend: &mut crate::MockBackend,
    previous: &[u8],
    expected: &[u8],
) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mut pace = tokio::time::interval(std::time::Duration::from_millis(25));
    loop {
        pace.tick().await;
        let (client, served) = connect_wss(url, ca.client_config(), &[])
            .await
            .expect("wss handshake");
        backend.next_event_for("$connect").await;
        drop(client);
        if served.as_ref() == expected {
            return;
        }
        assert_eq!(
            served.as_ref(),
            previous,
            "neither the old nor the new certificate"
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new certificate was not served within {DEADLINE:?}"
        );
    }
}
