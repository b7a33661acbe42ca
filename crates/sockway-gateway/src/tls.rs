//! TLS on the listeners: the `[tls]` certificate and key, loaded and checked at startup and
//! swapped in by [`Tls::reload`] (`Gateway::reload_tls`, or [`watch`] when the files change)
//! or by a configuration reload ([`Tls::prepare`], then [`Tls::switch`]), which reads the
//! files again even when `[tls]` did not change and may name other files or another polling
//! interval.
//!
//! Every handshake asks [`CertificateResolver`] for the current certificate, so a reload
//! changes what new handshakes see and nothing else: open connections keep the session they
//! negotiated. A reload that fails (a half-written file, a key that does not match) keeps the
//! certificate in use and is logged once; [`watch`] only tries again when the files change
//! again. Protocol versions are rustls's safe defaults (TLS 1.2 and 1.3), ALPN offers
//! `http/1.1`, and the provider is ring with ring's cipher suites in the server's order of
//! preference ([`CIPHER_SUITES`]: AES-128-GCM first). Splitting upgrades from HTTP after the handshake is
//! `server`'s. Each connection runs over [`stream::TlsStream`], rustls's unbuffered API with
//! buffers that are released while the connection is idle.

mod records;
mod stream;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use rustls::crypto::CryptoProvider;
use rustls::crypto::ring::cipher_suite;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, SupportedCipherSuite};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

pub(crate) use stream::TlsStream;

use crate::ErrorChain;
use crate::config::TlsConfig;

/// Why the TLS certificate could not be loaded or reloaded. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The gateway has no `[tls]` table, so there is nothing to reload.
    #[error("TLS is not configured (no [tls] table)")]
    NotConfigured,
    /// A file could not be read.
    #[error("cannot read `{}`", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// A file is not valid PEM.
    #[error("`{}` is not valid PEM", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What the PEM parser said.
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// The certificate file holds no `CERTIFICATE` section.
    #[error("`{}` holds no PEM certificate", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The key file holds no private key section.
    #[error("`{}` holds no PEM private key (PKCS#8, RSA or SEC1)", path.display())]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// The private key is of a kind or algorithm rustls cannot sign with.
    #[error("`{}`: unsupported private key", path.display())]
    Key {
        /// The file.
        path: PathBuf,
        /// What rustls said.
        #[source]
        source: rustls::Error,
    },
    /// The server's certificate (the first of the chain) cannot be parsed.
    #[error("`{}`: invalid certificate", path.display())]
    Certificate {
        /// The file.
        path: PathBuf,
        /// What rustls said.
        #[source]
        source: rustls::Error,
    },
    /// The private key is not the key of the server's certificate.
    #[error(
        "the private key in `{}` does not match the certificate in `{}`",
        key_file.display(),
        cert_file.display()
    )]
    KeyMismatch {
        /// The certificate file.
        cert_file: PathBuf,
        /// The key file.
        key_file: PathBuf,
    },
}

/// The TLS side of a gateway: the server config every handshake uses and the certificate
/// inside it that reloads replace.
#[derive(Debug)]
pub(crate) struct Tls {
    /// The files and polling interval in use; a configuration reload may replace them. A std
    /// mutex held to copy or replace them, never across an `.await`.
    files: Mutex<TlsConfig>,
    /// Woken when a configuration reload replaced `files`, so [`watch`] takes up the new
    /// interval at once.
    files_replaced: Notify,
    server_config: Arc<ServerConfig>,
    resolver: Arc<CertificateResolver>,
    /// The files' modification times and sizes at the last load attempt, successful or not,
    /// so that [`watch`] tries a broken file once rather than at every tick.
    ///
    /// A std mutex: it is held for a comparison and never across an `.await`.
    seen: Mutex<Option<FileStamps>>,
}

/// A certificate read for a configuration reload, not yet in use.
#[derive(Debug)]
pub(crate) struct NextCertificate {
    files: TlsConfig,
    stamps: FileStamps,
    certified: CertifiedKey,
}

/// Hands every new handshake the current certificate.
#[derive(Debug)]
struct CertificateResolver {
    /// A std lock: handshakes only clone the `Arc` out, reloads swap it; neither awaits.
    current: RwLock<Arc<CertifiedKey>>,
}

/// What [`watch`] compares: each file's modification time and length, `None` when the file
/// cannot be inspected (for example while it is being replaced).
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamps([Option<(SystemTime, u64)>; 2]);

/// ring's cipher suites, in the order the gateway chooses among those a client offers: AES-128-GCM
/// before AES-256-GCM and ChaCha20-Poly1305, as Go's TLS stack and most CDNs choose. Clients
/// built on OpenSSL (Python, Node.js) and on rustls list AES-256-GCM first, and in TLS 1.3 that
/// suite brings SHA-384 into every handshake's key schedule, which ring computes without
/// hardware help where SHA-256 has it (`sha_ni`): the handshake profile spent about a tenth of
/// the gateway's time there. Every suite stays available to a client that offers only it.
pub(crate) const CIPHER_SUITES: [SupportedCipherSuite; 9] = [
    cipher_suite::TLS13_AES_128_GCM_SHA256,
    cipher_suite::TLS13_AES_256_GCM_SHA384,
    cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
    cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    cipher_suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    cipher_suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    cipher_suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
];

impl Tls {
    /// Loads and checks the certificate and key named in `files`.
    pub(crate) fn load(files: &TlsConfig) -> Result<Tls, TlsError> {
        let provider = Arc::new(CryptoProvider {
            cipher_suites: CIPHER_SUITES.to_vec(),
            ..rustls::crypto::ring::default_provider()
        });
        let stamps = FileStamps::of(files);
        let certified = load_certified_key(files, &provider)?;
        let resolver = Arc::new(CertificateResolver {
            current: RwLock::new(Arc::new(certified)),
        });
        let mut server_config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring's default provider supports TLS 1.2 and 1.3")
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        server_config.alpn_protocols = vec![b"http/1.1".to_vec()];
        server_config.ignore_client_order = true;
        // TLS 1.3 connections hand their traffic keys to `records` after the handshake.
        server_config.enable_secret_extraction = true;
        Ok(Tls {
            files: Mutex::new(files.clone()),
            files_replaced: Notify::new(),
            server_config: Arc::new(server_config),
            resolver,
            seen: Mutex::new(Some(stamps)),
        })
    }

    /// Runs the server side of a TLS handshake on `tcp`. The caller bounds it in time.
    pub(crate) async fn accept(&self, tcp: TcpStream) -> std::io::Result<TlsStream> {
        stream::accept(self.server_config.clone(), tcp).await
    }

    /// Loads the files again and, if they are valid, makes new handshakes use them; on
    /// failure the certificate in use stays. Either outcome is logged here.
    pub(crate) fn reload(&self) -> Result<(), TlsError> {
        let files = self.files();
        let stamps = FileStamps::of(&files);
        *self
            .seen
            .lock()
            .expect("the TLS file stamps lock is never poisoned") = Some(stamps);
        let provider = self.server_config.crypto_provider().clone();
        match load_certified_key(&files, &provider) {
            Ok(certified) => {
                *self
                    .resolver
                    .current
                    .write()
                    .expect("the certificate lock is never poisoned") = Arc::new(certified);
                info!(cert_file = %files.cert_file.display(), "TLS certificate reloaded");
                Ok(())
            }
            Err(error) => {
                error!(error = %ErrorChain(&error), "TLS certificate not reloaded; keeping the certificate in use");
                Err(error)
            }
        }
    }

    /// Reads and checks the files a reloaded configuration names, without using them yet.
    pub(crate) fn prepare(&self, files: &TlsConfig) -> Result<NextCertificate, TlsError> {
        let stamps = FileStamps::of(files);
        let provider = self.server_config.crypto_provider().clone();
        Ok(NextCertificate {
            files: files.clone(),
            stamps,
            certified: load_certified_key(files, &provider)?,
        })
    }

    /// Makes new handshakes use `next`, and [`watch`] poll its files at its interval.
    pub(crate) fn switch(&self, next: NextCertificate) {
        *self
            .resolver
            .current
            .write()
            .expect("the certificate lock is never poisoned") = Arc::new(next.certified);
        *self
            .seen
            .lock()
            .expect("the TLS file stamps lock is never poisoned") = Some(next.stamps);
        *self
            .files
            .lock()
            .expect("the TLS files lock is never poisoned") = next.files;
        self.files_replaced.notify_one();
    }

    /// The files and interval in use.
    fn files(&self) -> TlsConfig {
        self.files
            .lock()
            .expect("the TLS files lock is never poisoned")
            .clone()
    }

    /// Whether a file changed since the last load attempt.
    fn files_changed(&self) -> bool {
        let stamps = FileStamps::of(&self.files());
        self.seen
            .lock()
            .expect("the TLS file stamps lock is never poisoned")
            .as_ref()
            != Some(&stamps)
    }
}

/// Polls the files every `tls.reload_interval` (none: it only waits for a reload to set one)
/// and reloads when one changed, until `shutdown`.
pub(crate) async fn watch(tls: Arc<Tls>, shutdown: CancellationToken) {
    loop {
        let interval = tls.files().reload_interval;
        let tick = async {
            match interval {
                Some(interval) => tokio::time::sleep(interval).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            // The interval or the files changed: wait again with the new ones.
            _ = tls.files_replaced.notified() => continue,
            _ = tick => {}
        }
        if tls.files_changed() {
            // The outcome is logged by `reload`; a failure waits for the next change.
            let _ = tls.reload();
        }
    }
}

impl ResolvesServerCert for CertificateResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .expect("the certificate lock is never poisoned")
                .clone(),
        )
    }
}

impl FileStamps {
    fn of(files: &TlsConfig) -> FileStamps {
        let stamp = |path: &Path| {
            let metadata = std::fs::metadata(path).ok()?;
            Some((metadata.modified().ok()?, metadata.len()))
        };
        FileStamps([stamp(&files.cert_file), stamp(&files.key_file)])
    }
}

/// Reads both files and checks that the key is the certificate's.
fn load_certified_key(
    files: &TlsConfig,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let cert_path = &files.cert_file;
    let key_path = &files.key_file;
    let read = |path: &PathBuf| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.clone(),
            source,
        })
    };
    let pem_error = |path: &PathBuf| {
        let path = path.clone();
        move |source| TlsError::Pem { path, source }
    };
    let cert_pem = read(cert_path)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_error(cert_path))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert_path.clone(),
        });
    }
    let key_pem = read(key_path)?;
    let key = match PrivateKeyDer::from_pem_slice(&key_pem) {
        Ok(key) => key,
        Err(rustls::pki_types::pem::Error::NoItemsFound) => {
            return Err(TlsError::NoKey {
                path: key_path.clone(),
            });
        }
        Err(source) => return Err(pem_error(key_path)(source)),
    };
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|source| TlsError::Key {
            path: key_path.clone(),
            source,
        })?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        // ring reports every key's public half, so `Unknown` does not occur in practice; a
        // key whose public half is unknown cannot be compared and is taken as it is.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(certified)
        }
        Err(rustls::Error::InconsistentKeys(_)) => Err(TlsError::KeyMismatch {
            cert_file: cert_path.clone(),
            key_file: key_path.clone(),
        }),
        Err(source) => Err(TlsError::Certificate {
            path: cert_path.clone(),
            source,
        }),
    }
}
