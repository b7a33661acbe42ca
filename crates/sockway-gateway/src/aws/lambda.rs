//! The Lambda Invoke API client shared by Lambda integrations and Lambda authorizers.
//!
//! [`LambdaClient::invoke`] sends one synchronous invocation
//! (`POST /2015-03-31/functions/{name}/invocations`, `X-Amz-Invocation-Type:
//! RequestResponse`), signed with SigV4 for service `lambda`, over one pooled HTTP/1.1 client
//! that speaks both `https://` (rustls with the webpki roots) and `http://` (local endpoints
//! such as a fake Lambda in tests). A target without a configured region is invoked in the
//! region of the AWS SDK's chain ([`CredentialsProvider::region`]). Throttling (429) and
//! Lambda service errors (5xx) are retried a bounded number of times with jittered
//! exponential backoff; connection failures are retried only when the request cannot have
//! been sent. The caller bounds the whole call with its own timeout.
//!
//! What the function's answer means (a proxy result, an authorizer policy) is the caller's
//! business: this module returns the payload and the `X-Amz-Function-Error` header as they
//! came.
//!
//! Trace context goes as `X-Amzn-Trace-Id`, a header of the Invoke request (Lambda hands it to
//! the function as its trace header): the call's span's, when tracing, or the one the caller
//! passes (the CONNECT event's, for the calls of an upgrade). Like the AWS SDKs, the signature
//! leaves it out.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::pool::BackendClient;
use bytes::Bytes;
use http::{Method, Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use percent_encoding::utf8_percent_encode;

use super::UNRESERVED;
use super::credentials::{CredentialsError, CredentialsProvider};
use super::sigv4;
use crate::config::LambdaTarget;
use crate::traces::{self, Span, key};

/// Largest Invoke response read: Lambda's synchronous response payload limit is 6 MB.
const MAX_RESPONSE_BYTES: usize = 6 * 1024 * 1024;

/// Attempts per invocation, the first included, when Lambda throttles or fails.
const MAX_ATTEMPTS: u32 = 3;

/// Wait before the second attempt; each later wait doubles. The wait actually taken is a
/// random point in the upper half of it, so callers throttled together spread out.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);

/// A pooled, signing Lambda Invoke client. Cheap to clone; clones share the pool.
#[derive(Debug, Clone)]
pub(crate) struct LambdaClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    client: BackendClient,
    credentials: CredentialsProvider,
    /// Keeps the day's signing keys, so a call signs with one HMAC instead of five.
    signer: sigv4::Signer,
    user_agent: String,
}

/// One finished invocation: Lambda accepted the call and ran the function.
#[derive(Debug, Clone)]
pub(crate) struct LambdaInvocation {
    /// `X-Amz-Function-Error` (`Unhandled` or `Handled`) when the function failed.
    pub(crate) function_error: Option<String>,
    /// What the function returned, or its error document.
    pub(crate) payload: Bytes,
    /// Lambda's `x-amzn-RequestId` for the invocation.
    pub(crate) request_id: Option<String>,
}

/// Why an invocation did not produce a function result.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LambdaError {
    /// No credentials to sign with.
    #[error("no credentials for lambda invoke")]
    Credentials(#[source] CredentialsError),
    /// The request could not be signed (an unusable header or URI).
    #[error("cannot sign lambda invoke request")]
    Signing(#[source] sigv4::SignError),
    /// The endpoint could not be reached or the exchange failed midway.
    #[error("lambda endpoint `{endpoint}` unreachable")]
    Transport {
        /// The endpoint's scheme and authority.
        endpoint: String,
        /// The transport error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The Invoke API answered with an error status (after retries for 429 and 5xx).
    #[error(
        "lambda invoke of `{function_name}` answered HTTP {status} {} after {attempts} attempt(s)",
        error_type.as_deref().unwrap_or("(no error type)")
    )]
    Status {
        /// The function name as configured.
        function_name: String,
        /// The HTTP status.
        status: u16,
        /// `x-amzn-ErrorType`, e.g. `TooManyRequestsException`.
        error_type: Option<String>,
        /// The error body's `message`/`Message`.
        message: Option<String>,
        /// How many requests were sent.
        attempts: u32,
    },
    /// The response payload is larger than Lambda's own limit.
    #[error("lambda response larger than {limit} bytes")]
    ResponseTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
}

/// What one attempt produced.
enum Attempt {
    /// A final answer, success or not.
    Done(Result<LambdaInvocation, LambdaError>),
    /// A failure worth another attempt.
    Retry(LambdaError),
}

impl LambdaClient {
    /// A client over the gateway's shared pool, signing with `credentials`.
    pub(crate) fn new(client: BackendClient, credentials: CredentialsProvider) -> LambdaClient {
        LambdaClient {
            inner: Arc::new(Inner {
                client,
                credentials,
                signer: sigv4::Signer::default(),
                user_agent: format!("sockway/{}", env!("CARGO_PKG_VERSION")),
            }),
        }
    }

    /// Invokes `target` synchronously with `payload` and returns the function's answer. The
    /// request carries `X-Amzn-Trace-Id`: `span`'s context when there is a span (which then
    /// records the invocation), else `trace_header` when given.
    pub(crate) async fn invoke(
        &self,
        target: &LambdaTarget,
        payload: Vec<u8>,
        span: Option<&mut Span>,
        trace_header: Option<&str>,
    ) -> Result<LambdaInvocation, LambdaError> {
        let region = match &target.region {
            Some(region) => region.clone(),
            None => self.inner.credentials.region().await,
        };
        let uri = invoke_uri(target, &region);
        let payload = Bytes::from(payload);
        let trace_header = match &span {
            Some(span) => Some(span.context().to_xray_header()),
            None => trace_header.map(str::to_owned),
        };
        let mut span = span;
        if let Some(span) = span.as_deref_mut() {
            describe(span, target, &region);
        }
        let mut attempt = 1;
        loop {
            let outcome = self
                .attempt(
                    target,
                    &region,
                    &uri,
                    &payload,
                    trace_header.as_deref(),
                    attempt,
                )
                .await;
            match outcome {
                Attempt::Done(result) => {
                    if let (Some(span), Ok(invocation)) = (span.as_deref_mut(), &result) {
                        if let Some(request_id) = &invocation.request_id {
                            span.set(key::AWS_REQUEST_ID, request_id.clone());
                        }
                    }
                    return result;
                }
                Attempt::Retry(error) if attempt >= MAX_ATTEMPTS => return Err(error),
                Attempt::Retry(error) => {
                    tracing::debug!(error = %error, attempt, "lambda invoke failed; retrying");
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
            }
        }
    }

    async fn attempt(
        &self,
        target: &LambdaTarget,
        region: &str,
        uri: &Uri,
        payload: &Bytes,
        trace_header: Option<&str>,
        attempt: u32,
    ) -> Attempt {
        let credentials = match self.inner.credentials.credentials().await {
            Ok(credentials) => credentials,
            Err(error) => return Attempt::Done(Err(LambdaError::Credentials(error))),
        };
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(uri.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header("X-Amz-Invocation-Type", "RequestResponse")
            .header(http::header::USER_AGENT, &self.inner.user_agent)
            .body(Full::new(payload.clone()))
            .expect("method, encoded uri and static headers form a valid request");
        // A client's header may not be a valid header value once more: then it is left out.
        if let Some(value) = trace_header.and_then(|value| http::HeaderValue::from_str(value).ok())
        {
            request.headers_mut().insert(traces::X_AMZN_TRACE_ID, value);
        }
        if let Err(error) = self.inner.signer.sign(
            &mut request,
            payload,
            &credentials,
            region,
            "lambda",
            SystemTime::now(),
        ) {
            return Attempt::Done(Err(LambdaError::Signing(error)));
        }
        let (response, permit) = match self.inner.client.request(request).await {
            Ok(answer) => answer,
            Err(error) => {
                let connect = error.is_connect();
                let error = LambdaError::Transport {
                    endpoint: endpoint_name(uri),
                    source: Box::new(error),
                };
                // A failed connect never reached Lambda, so trying again cannot run the
                // function twice; any later failure might have.
                return if connect {
                    Attempt::Retry(error)
                } else {
                    Attempt::Done(Err(error))
                };
            }
        };
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned)
        };
        let function_error = header("x-amz-function-error");
        let request_id = header("x-amzn-requestid");
        let error_type = header("x-amzn-errortype").map(|value| error_type_name(&value));
        let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await;
        // The body is read: the connection can carry the next call.
        drop(permit);
        let body = match body {
            Ok(body) => body.to_bytes(),
            Err(error) if error.is::<http_body_util::LengthLimitError>() => {
                return Attempt::Done(Err(LambdaError::ResponseTooLarge {
                    limit: MAX_RESPONSE_BYTES,
                }));
            }
            Err(source) => {
                return Attempt::Done(Err(LambdaError::Transport {
                    endpoint: endpoint_name(uri),
                    source,
                }));
            }
        };
        if (200..300).contains(&status) {
            return Attempt::Done(Ok(LambdaInvocation {
                function_error,
                payload: body,
                request_id,
            }));
        }
        let error = LambdaError::Status {
            function_name: target.function_name.clone(),
            status,
            error_type,
            message: error_message(&body),
            attempts: attempt,
        };
        if status == 429 || status >= 500 {
            Attempt::Retry(error)
        } else {
            Attempt::Done(Err(error))
        }
    }
}

/// Records on `span` which function an Invoke calls, in OpenTelemetry's terms for AWS Lambda.
fn describe(span: &mut Span, target: &LambdaTarget, region: &str) {
    if !span.is_recording() {
        return;
    }
    span.set(key::RPC_SYSTEM, "aws-api");
    span.set(key::RPC_SERVICE, "Lambda");
    span.set(key::RPC_METHOD, "Invoke");
    span.set(key::FAAS_INVOKED_PROVIDER, "aws");
    span.set(key::FAAS_INVOKED_REGION, region.to_owned());
    let name = &target.function_name;
    // `arn:aws:lambda:{region}:{account}:function:{name}[:{qualifier}]`.
    match name.strip_prefix("arn:") {
        Some(rest) => {
            let function = rest.split(':').nth(5).unwrap_or(name);
            span.set(key::FAAS_INVOKED_NAME, function.to_owned());
            span.set(key::AWS_LAMBDA_INVOKED_ARN, name.clone());
        }
        None => span.set(key::FAAS_INVOKED_NAME, name.clone()),
    }
}

/// `{endpoint}/2015-03-31/functions/{name}/invocations[?Qualifier=q]`; the endpoint is
/// `endpoint_url` (its path kept as a prefix) or Lambda's HTTPS endpoint in `region`.
fn invoke_uri(target: &LambdaTarget, region: &str) -> Uri {
    let (scheme, authority, prefix) = match &target.endpoint_url {
        Some(endpoint) => (
            endpoint.scheme_str().unwrap_or("https").to_owned(),
            endpoint
                .authority()
                .map(|authority| authority.as_str().to_owned())
                .unwrap_or_default(),
            endpoint.path().trim_end_matches('/').to_owned(),
        ),
        None => (
            "https".to_owned(),
            format!("lambda.{region}.amazonaws.com"),
            String::new(),
        ),
    };
    let mut uri = format!(
        "{scheme}://{authority}{prefix}/2015-03-31/functions/{}/invocations",
        utf8_percent_encode(&target.function_name, UNRESERVED)
    );
    if let Some(qualifier) = &target.qualifier {
        uri.push_str("?Qualifier=");
        uri.extend(utf8_percent_encode(qualifier, UNRESERVED));
    }
    uri.parse()
        .expect("a validated endpoint with a percent-encoded path is a valid URI")
}

fn endpoint_name(uri: &Uri) -> String {
    format!(
        "{}://{}",
        uri.scheme_str().unwrap_or("https"),
        uri.authority()
            .map(|authority| authority.as_str())
            .unwrap_or("")
    )
}

/// The error type as SDKs read `x-amzn-ErrorType`: cut at the first `:`.
fn error_type_name(value: &str) -> String {
    value.split(':').next().unwrap_or(value).to_owned()
}

/// The `message` or `Message` of an AWS JSON error body.
fn error_message(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    ["message", "Message"]
        .into_iter()
        .find_map(|key| value.get(key)?.as_str().map(str::to_owned))
}

/// The wait after failed attempt `attempt` (1-based): full backoff `FIRST_BACKOFF *
/// 2^(attempt-1)`, of which a random 50–100 % is taken.
fn backoff(attempt: u32) -> Duration {
    let full = FIRST_BACKOFF * 2u32.saturating_pow(attempt.saturating_sub(1));
    let [random] = crate::random_bytes::<1>();
    full / 2 + full / 2 * u32::from(random) / 255
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(
        function_name: &str,
        qualifier: Option<&str>,
        endpoint: Option<&str>,
    ) -> LambdaTarget {
        LambdaTarget {
            function_name: function_name.to_owned(),
            qualifier: qualifier.map(str::to_owned),
            region: None,
            endpoint_url: endpoint.map(|endpoint| endpoint.parse().unwrap()),
        }
    }

    #[test]
    fn invoke_uris() {
        let check = |target: LambdaTarget, expected: &str| {
            assert_eq!(invoke_uri(&target, "eu-west-1").to_string(), expected);
        };
        check(
            target("chat", None, None),
            "https://lambda.eu-west-1.amazonaws.com/2015-03-31/functions/chat/invocations",
        );
        check(
            target("chat", Some("live"), Some("http://127.0.0.1:9001")),
            "http://127.0.0.1:9001/2015-03-31/functions/chat/invocations?Qualifier=live",
        );
        check(
            target(
                "arn:aws:lambda:eu-west-1:123456789012:function:chat",
                Some("$LATEST"),
                Some("http://localhost:3002/prefix/"),
            ),
            "http://localhost:3002/prefix/2015-03-31/functions/\
             arn%3Aaws%3Alambda%3Aeu-west-1%3A123456789012%3Afunction%3Achat/invocations\
             ?Qualifier=%24LATEST",
        );
    }

    #[test]
    fn backoff_grows_and_stays_in_its_band() {
        for attempt in 1..=3 {
            let full = FIRST_BACKOFF * 2u32.pow(attempt - 1);
            let wait = backoff(attempt);
            assert!(
                wait >= full / 2 && wait <= full,
                "attempt {attempt}: {wait:?}"
            );
        }
    }

    #[test]
    fn error_bodies() {
        assert_eq!(
            error_message(br#"{"Type":"User","message":"Rate exceeded"}"#).as_deref(),
            Some("Rate exceeded")
        );
        assert_eq!(
            error_message(br#"{"Message":"Function not found"}"#).as_deref(),
            Some("Function not found")
        );
        assert_eq!(error_message(b"<html>"), None);
        assert_eq!(
            error_type_name("TooManyRequestsException:http://internal.amazon.com/"),
            "TooManyRequestsException"
        );
    }
}
