//! [`JwksServer`]: an identity provider's JWKS endpoint on port 0, for JWT authorizer tests.
//!
//! It serves one JSON document at `/.well-known/jwks.json`, which a test can replace (key
//! rotation) or switch to HTTP 500 (an outage), and counts the fetches so a test can assert
//! that the gateway caches keys and rate-limits refetches. Signing test tokens is left to the
//! tests themselves.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use serde_json::Value;

use crate::http_server;
use tokio::task::JoinHandle;

/// Where the document is served, as Cognito serves it below the issuer.
pub const JWKS_PATH: &str = "/.well-known/jwks.json";

/// A real HTTP server on `127.0.0.1:0` serving a JWKS; stopped when dropped.
#[derive(Debug)]
pub struct JwksServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

/// What the server task and the test share.
#[derive(Debug)]
struct Shared {
    /// The document served, or `None` during an outage (HTTP 500).
    document: Mutex<Option<Bytes>>,
    /// Requests for [`JWKS_PATH`], answered or not.
    fetches: AtomicUsize,
}

impl JwksServer {
    /// Starts a server answering [`JWKS_PATH`] with `jwks` (a `{"keys": [...]}` document).
    pub async fn start(jwks: Value) -> JwksServer {
        let shared = Arc::new(Shared {
            document: Mutex::new(Some(Bytes::from(jwks.to_string()))),
            fetches: AtomicUsize::new(0),
        });
        let server_shared = shared.clone();
        let (addr, server) = http_server::spawn("JWKS server", move |parts, _body| {
            let answer = server_shared.answer(parts.uri.path());
            async move { answer }
        })
        .await;
        JwksServer {
            addr,
            shared,
            server,
        }
    }

    /// `http://127.0.0.1:PORT`: the `iss` of test tokens and the authorizer's `issuer`.
    pub fn issuer(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://127.0.0.1:PORT/.well-known/jwks.json`.
    pub fn jwks_url(&self) -> String {
        format!("{}{JWKS_PATH}", self.issuer())
    }

    /// Serves `jwks` from now on (a key rotation); ends an outage.
    pub fn serve(&self, jwks: Value) {
        *self.shared.document.lock().expect("JWKS document lock") =
            Some(Bytes::from(jwks.to_string()));
    }

    /// Answers HTTP 500 from now on, until the next [`JwksServer::serve`].
    pub fn fail(&self) {
        *self.shared.document.lock().expect("JWKS document lock") = None;
    }

    /// How many times the JWKS has been requested so far.
    pub fn fetches(&self) -> usize {
        self.shared.fetches.load(Ordering::SeqCst)
    }
}

impl Shared {
    fn answer(&self, path: &str) -> hyper::Response<Full<Bytes>> {
        if path != JWKS_PATH {
            return response(404, Bytes::from_static(b"not found"));
        }
        self.fetches.fetch_add(1, Ordering::SeqCst);
        match self.document.lock().expect("JWKS document lock").clone() {
            Some(document) => {
                let mut answer = response(200, document);
                answer.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                );
                answer
            }
            None => response(500, Bytes::from_static(b"identity provider unavailable")),
        }
    }
}

fn response(status: u16, body: Bytes) -> hyper::Response<Full<Bytes>> {
    let mut response = hyper::Response::new(Full::new(body));
    *response.status_mut() = http::StatusCode::from_u16(status).expect("valid status");
    response
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.server.abort();
    }
}
