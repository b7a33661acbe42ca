//! The HTTP client the AWS SDK's credential and region providers call through: EC2 instance
//! metadata (IMDSv2), the ECS/EKS container credentials endpoint, STS and the SSO portal.
//!
//! It is the gateway's own connector (`pool::https_connector`: hyper, rustls with the ring
//! provider and the webpki roots), so a host whose Lambda calls work can also reach STS, and
//! no second TLS stack (the SDK's default client brings aws-lc) is built. The SDK asks for a
//! connector per set of timeouts (IMDS: 1 s to connect and to read; the container endpoint:
//! 2 s and 5 s; STS and SSO: 3.1 s to connect); one is built per set and kept. Credential
//! calls are rare (once per credentials' lifetime), so connections are not pooled.
//!
//! Which provider runs, and what its answers mean, is the SDK's business; `credentials` wires
//! this client into it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector as TcpConnector;
use hyper_util::rt::TokioExecutor;

use crate::pool::https_connector;

/// Largest response body read: credential documents are a few hundred bytes.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// The bound on an exchange when the SDK sets no read timeout (its STS and SSO clients set
/// none by default), so that a stalled endpoint cannot hold the credentials lock forever.
const DEFAULT_EXCHANGE_TIMEOUT: Duration = Duration::from_secs(30);

/// The SDK's [`HttpClient`] over the gateway's connector. Cheap to clone; clones share the
/// connectors built so far.
#[derive(Debug, Clone, Default)]
pub(crate) struct SdkHttpClient {
    /// One connector per set of timeouts asked for. A std mutex: held to look up or push
    /// one entry, never across an `.await`, and the list holds a handful of entries.
    connectors: Arc<Mutex<Vec<(Timeouts, SharedHttpConnector)>>>,
}

/// The timeouts the SDK asks a connector for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Timeouts {
    connect: Option<Duration>,
    read: Option<Duration>,
}

/// One set of timeouts' connector.
#[derive(Debug)]
struct Connector {
    client: Client<HttpsConnector<TcpConnector>, Full<Bytes>>,
    /// The bound on the whole exchange: the SDK's connect and read timeouts added, or
    /// [`DEFAULT_EXCHANGE_TIMEOUT`].
    exchange_timeout: Duration,
}

impl HttpClient for SdkHttpClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        self.connector_for(Timeouts {
            connect: settings.connect_timeout(),
            read: settings.read_timeout(),
        })
    }
}

impl SdkHttpClient {
    /// The connector for `timeouts`, built on first use.
    fn connector_for(&self, timeouts: Timeouts) -> SharedHttpConnector {
        let mut connectors = self
            .connectors
            .lock()
            .expect("no code panics while holding the connectors lock");
        if let Some((_, connector)) = connectors.iter().find(|(known, _)| *known == timeouts) {
            return connector.clone();
        }
        let connector = SharedHttpConnector::new(Connector::new(timeouts));
        connectors.push((timeouts, connector.clone()));
        connector
    }
}

impl Connector {
    fn new(timeouts: Timeouts) -> Connector {
        Connector {
            client: Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(0)
                .build(https_connector(timeouts.connect)),
            exchange_timeout: match timeouts.read {
                None => DEFAULT_EXCHANGE_TIMEOUT,
                Some(read) => timeouts.connect.unwrap_or_default() + read,
            },
        }
    }
}

impl HttpConnector for Connector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let client = self.client.clone();
        let exchange_timeout = self.exchange_timeout;
        HttpConnectorFuture::new(async move {
            tokio::time::timeout(exchange_timeout, exchange(&client, request))
                .await
                .unwrap_or_else(|_| {
                    Err(ConnectorError::timeout(
                        format!("no response within {exchange_timeout:?}").into(),
                    ))
                })
        })
    }
}

/// Sends `request` and reads the whole response.
async fn exchange(
    client: &Client<HttpsConnector<TcpConnector>, Full<Bytes>>,
    request: HttpRequest,
) -> Result<HttpResponse, ConnectorError> {
    // The providers' requests (IMDS, the container endpoint, STS and SSO queries) all carry
    // their body in memory.
    let body = request
        .body()
        .bytes()
        .map(Bytes::copy_from_slice)
        .ok_or_else(|| ConnectorError::user("streaming request bodies are not supported".into()))?;
    let (parts, _) = request
        .try_into_http1x()
        .map_err(|error| ConnectorError::user(error.into()))?
        .into_parts();
    let response = client
        .request(http::Request::from_parts(parts, Full::new(body)))
        .await
        .map_err(|error| {
            if error.is_connect() {
                ConnectorError::io(error.into()).never_connected()
            } else {
                ConnectorError::io(error.into())
            }
        })?;
    let (parts, body) = response.into_parts();
    let body = Limited::new(body, MAX_RESPONSE_BYTES)
        .collect()
        .await
        .map_err(ConnectorError::io)?
        .to_bytes();
    HttpResponse::try_from(http::Response::from_parts(parts, SdkBody::from(body)))
        .map_err(|error| ConnectorError::other(error.into(), None))
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    fn connector(client: &SdkHttpClient, read: Option<Duration>) -> SharedHttpConnector {
        client.connector_for(Timeouts {
            connect: Some(Duration::from_secs(1)),
            read,
        })
    }

    fn request(uri: &str, body: &'static [u8]) -> HttpRequest {
        let request = http::Request::builder()
            .method("PUT")
            .uri(uri)
            .header("x-aws-ec2-metadata-token-ttl-seconds", "21600")
            .body(SdkBody::from(body))
            .unwrap();
        HttpRequest::try_from(request).unwrap()
    }

    #[tokio::test]
    async fn requests_and_responses_cross_unchanged() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut received = Vec::new();
            let mut buffer = [0u8; 1024];
            while !received.ends_with(b"body") {
                let read = stream.read(&mut buffer).await.unwrap();
                assert!(read > 0, "client closed early");
                received.extend_from_slice(&buffer[..read]);
            }
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nx-aws-ec2-metadata-token-ttl-seconds: 21600\r\ncontent-length: 5\r\n\r\ntoken")
                .await
                .unwrap();
            String::from_utf8(received).unwrap()
        });
        let client = SdkHttpClient::default();
        let response = connector(&client, Some(Duration::from_secs(5)))
            .call(request(
                &format!("http://{address}/latest/api/token"),
                b"body",
            ))
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        assert_eq!(
            response
                .headers()
                .get("x-aws-ec2-metadata-token-ttl-seconds"),
            Some("21600")
        );
        assert_eq!(response.body().bytes(), Some(&b"token"[..]));
        let received = server.await.unwrap();
        assert!(
            received.starts_with("PUT /latest/api/token HTTP/1.1\r\n"),
            "{received}"
        );
        assert!(
            received.contains("x-aws-ec2-metadata-token-ttl-seconds: 21600\r\n"),
            "{received}"
        );
    }

    #[tokio::test]
    async fn a_silent_endpoint_is_a_timeout() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        // Accepts and holds the connection without answering.
        let server = tokio::spawn(async move { listener.accept().await.unwrap() });
        let client = SdkHttpClient::default();
        let error = connector(&client, Some(Duration::from_millis(200)))
            .call(request(&format!("http://{address}/"), b""))
            .await
            .unwrap_err();
        assert!(error.is_timeout(), "{error:?}");
        drop(server);
    }

    #[tokio::test]
    async fn a_refused_connection_is_an_io_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        drop(listener);
        let client = SdkHttpClient::default();
        let error = connector(&client, None)
            .call(request(&format!("http://{address}/"), b""))
            .await
            .unwrap_err();
        assert!(error.is_io(), "{error:?}");
    }

    #[test]
    fn one_connector_per_set_of_timeouts() {
        let client = SdkHttpClient::default();
        let _a = connector(&client, Some(Duration::from_secs(1)));
        let _b = connector(&client, Some(Duration::from_secs(1)));
        let _c = connector(&client, None);
        assert_eq!(client.connectors.lock().unwrap().len(), 2);
    }
}
