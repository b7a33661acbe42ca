//! The signing keys of a JWT authorizer: the issuer's JWKS, fetched on first use and cached by
//! `kid`. Verifying tokens is left to the parent module; this one only answers "which key is
//! `kid`, and which algorithms may it verify".
//!
//! Refetch rules, so that a JWKS outage or a flood of forged tokens costs little:
//! - A token naming an unknown `kid` triggers a refetch (the issuer may have rotated its keys),
//!   but at most one fetch is started per [`REFETCH_INTERVAL`]; within it, an unknown `kid` is
//!   refused without contacting the issuer, so garbage tokens cannot make sockway hammer it.
//! - A failed fetch keeps the keys already cached: an outage at the issuer does not lock out
//!   holders of tokens signed with known keys. A successful fetch replaces the whole set, so a
//!   key the issuer withdrew stops verifying.
//! - Fetches are single-flight: connects that arrive while one is running wait for it and then
//!   look again, instead of starting their own or being refused by the rate limit.
//! - A fetch reads at most [`MAX_JWKS_BYTES`] and takes at most [`FETCH_TIMEOUT`].

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

use super::JwtError;
use crate::pool::{PooledClient, pooled_client};

/// The shortest time between two JWKS fetches.
pub(super) const REFETCH_INTERVAL: Duration = Duration::from_secs(10);
/// How long one JWKS fetch may take, body included.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest JWKS document read. Cognito's is under 2 KiB.
const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// The algorithms of an RSA key: PKCS#1 v1.5 and PSS with every SHA-2 size.
const RSA_ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

/// The issuer's signing keys, fetched lazily and cached by `kid`.
#[derive(Debug)]
pub(super) struct KeyCache {
    jwks_url: Uri,
    client: PooledClient,
    /// [`REFETCH_INTERVAL`], shortened by tests of rotation.
    refetch_interval: Duration,
    /// The keys and the fetch history. A `std` mutex, because every critical section is a
    /// map lookup or a swap of a few fields and none spans an `.await`; an async lock or an
    /// actor would only add a task hop to every `$connect`.
    state: Mutex<CacheState>,
    /// Held across a fetch and nothing else, so at most one fetch runs at a time and the
    /// connects that wait for it re-check the cache afterwards. It is tokio's mutex because
    /// it is held across the fetch's `.await`; `state` is never locked while waiting for it.
    fetch_gate: tokio::sync::Mutex<()>,
}

/// One usable key of the JWKS.
#[derive(Debug)]
pub(super) struct SigningKey {
    /// The key, ready for `jsonwebtoken::decode`.
    pub(super) decoding_key: DecodingKey,
    /// What the key may verify: its `kty`'s algorithms (for EC keys, the one of its curve),
    /// narrowed to its `alg` when the JWK names one.
    pub(super) algorithms: Vec<Algorithm>,
}

/// Why the JWKS could not be fetched.
#[derive(Debug, thiserror::Error)]
pub(crate) enum JwksError {
    /// No HTTP exchange: connection refused, TLS failure, reset midway.
    #[error("jwks `{url}`: request failed")]
    Unreachable {
        /// The JWKS URL.
        url: Uri,
        /// The transport error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// No complete answer within [`FETCH_TIMEOUT`].
    #[error("jwks `{url}`: no answer within {after:?}")]
    Timeout {
        /// The JWKS URL.
        url: Uri,
        /// The timeout that passed.
        after: Duration,
    },
    /// An answer other than 200.
    #[error("jwks `{url}`: answered HTTP {status}")]
    Status {
        /// The JWKS URL.
        url: Uri,
        /// The status.
        status: u16,
    },
    /// A body over [`MAX_JWKS_BYTES`].
    #[error("jwks `{url}`: response larger than {limit} bytes")]
    TooLarge {
        /// The JWKS URL.
        url: Uri,
        /// The limit in bytes.
        limit: usize,
    },
    /// A body that is not a JWK set.
    #[error("jwks `{url}`: response is not a JWK set")]
    Malformed {
        /// The JWKS URL.
        url: Uri,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
}

#[derive(Debug, Default)]
struct CacheState {
    keys: HashMap<String, Arc<SigningKey>>,
    /// When the last fetch started. Stamped before the fetch, so a fetch abandoned midway
    /// (the authorizer timeout drops the connect's future) still counts for the rate limit.
    last_fetch: Option<Instant>,
    /// Why the last fetch failed; `None` after a success.
    last_failure: Option<Arc<JwksError>>,
}

impl KeyCache {
    /// An empty cache for `jwks_url`; nothing is fetched until a token needs a key.
    pub(super) fn new(jwks_url: Uri) -> KeyCache {
        KeyCache {
            jwks_url,
            client: pooled_client(),
            refetch_interval: REFETCH_INTERVAL,
            state: Mutex::new(CacheState::default()),
            fetch_gate: tokio::sync::Mutex::new(()),
        }
    }

    /// Shortens the refetch interval, so tests can rotate keys without waiting 10 s.
    #[cfg(test)]
    pub(super) fn set_refetch_interval(&mut self, interval: Duration) {
        self.refetch_interval = interval;
    }

    /// The key named `kid`, fetching the JWKS if it is not cached and the rate limit allows.
    pub(super) async fn key(&self, kid: &str) -> Result<Arc<SigningKey>, JwtError> {
        if let Some(key) = self.lock_state().keys.get(kid) {
            return Ok(key.clone());
        }
        let _fetching = self.fetch_gate.lock().await;
        {
            // The fetch this connect waited for may have brought the key.
            let mut state = self.lock_state();
            if let Some(key) = state.keys.get(kid) {
                return Ok(key.clone());
            }
            let now = Instant::now();
            if !may_fetch(state.last_fetch, now, self.refetch_interval) {
                return Err(unknown(kid, &state));
            }
            state.last_fetch = Some(now);
        }
        let fetched = self.fetch().await;
        let mut state = self.lock_state();
        match fetched {
            Ok(keys) => {
                state.keys = keys;
                state.last_failure = None;
            }
            Err(error) => {
                tracing::warn!(
                    error = %error,
                    "jwt authorizer: jwks fetch failed; keeping the {} cached keys",
                    state.keys.len()
                );
                state.last_failure = Some(Arc::new(error));
            }
        }
        match state.keys.get(kid) {
            Some(key) => Ok(key.clone()),
            None => Err(unknown(kid, &state)),
        }
    }

    fn lock_state(&self) -> MutexGuard<'_, CacheState> {
        // A panic while holding the lock cannot leave the map half-updated (each critical
        // section assigns whole fields), so a poisoned lock is still consistent.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// GETs the JWKS and keeps its usable keys.
    async fn fetch(&self) -> Result<HashMap<String, Arc<SigningKey>>, JwksError> {
        let body = tokio::time::timeout(FETCH_TIMEOUT, self.get())
            .await
            .map_err(|_elapsed| JwksError::Timeout {
                url: self.jwks_url.clone(),
                after: FETCH_TIMEOUT,
            })??;
        let set: JwkSet = serde_json::from_slice(&body).map_err(|source| JwksError::Malformed {
            url: self.jwks_url.clone(),
            source,
        })?;
        Ok(signing_keys(&set))
    }

    async fn get(&self) -> Result<Bytes, JwksError> {
        let request = Request::builder()
            .method(Method::GET)
            .uri(self.jwks_url.clone())
            .header(http::header::ACCEPT, "application/json")
            .body(Full::new(Bytes::new()))
            .expect("a GET of a validated URI is a valid request");
        let unreachable = |source| JwksError::Unreachable {
            url: self.jwks_url.clone(),
            source,
        };
        let response = self
            .client
            .request(request)
            .await
            .map_err(|error| unreachable(Box::new(error)))?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(JwksError::Status {
                url: self.jwks_url.clone(),
                status,
            });
        }
        let body = Limited::new(response.into_body(), MAX_JWKS_BYTES)
            .collect()
            .await
            .map_err(|error| {
                if error.is::<http_body_util::LengthLimitError>() {
                    JwksError::TooLarge {
                        url: self.jwks_url.clone(),
                        limit: MAX_JWKS_BYTES,
                    }
                } else {
                    unreachable(error)
                }
            })?;
        Ok(body.to_bytes())
    }
}

/// Whether a fetch may start at `now`, the last one having started at `last_fetch`.
fn may_fetch(last_fetch: Option<Instant>, now: Instant, interval: Duration) -> bool {
    last_fetch.is_none_or(|last| now.saturating_duration_since(last) >= interval)
}

/// The error for a `kid` the cache does not hold: the issuer is unreachable if the last fetch
/// failed, the key unknown otherwise.
fn unknown(kid: &str, state: &CacheState) -> JwtError {
    match &state.last_failure {
        Some(failure) => JwtError::JwksUnavailable(failure.clone()),
        None => JwtError::UnknownKey(kid.to_owned()),
    }
}

/// The keys of `set` that can verify a token, by `kid`. Keys without a `kid`, encryption
/// keys, symmetric (`oct`) keys and unsupported types or curves are skipped: a public JWKS
/// holding an HMAC secret would let anyone sign.
fn signing_keys(set: &JwkSet) -> HashMap<String, Arc<SigningKey>> {
    set.keys
        .iter()
        .filter_map(|jwk| {
            let kid = jwk.common.key_id.clone()?;
            let key = signing_key(jwk)?;
            Some((kid, Arc::new(key)))
        })
        .collect()
}

fn signing_key(jwk: &Jwk) -> Option<SigningKey> {
    if matches!(
        jwk.common.public_key_use,
        Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
    ) {
        return None;
    }
    let mut algorithms = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => RSA_ALGORITHMS.to_vec(),
        AlgorithmParameters::EllipticCurve(parameters) => match parameters.curve {
            EllipticCurve::P256 => vec![Algorithm::ES256],
            EllipticCurve::P384 => vec![Algorithm::ES384],
            _ => return None,
        },
        _ => return None,
    };
    if let Some(named) = jwk.common.key_algorithm {
        // A JWK `alg` outside what its `kty` allows makes the key unusable.
        let named = Algorithm::from_str(&named.to_string()).ok()?;
        algorithms.retain(|algorithm| *algorithm == named);
        if algorithms.is_empty() {
            return None;
        }
    }
    let decoding_key = DecodingKey::from_jwk(jwk).ok()?;
    Some(SigningKey {
        decoding_key,
        algorithms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fetches_are_rate_limited() {
        let start = Instant::now();
        assert!(may_fetch(None, start, REFETCH_INTERVAL));
        assert!(!may_fetch(
            Some(start),
            start + Duration::from_secs(9),
            REFETCH_INTERVAL
        ));
        assert!(may_fetch(
            Some(start),
            start + REFETCH_INTERVAL,
            REFETCH_INTERVAL
        ));
    }

    fn algorithms_of(jwk: serde_json::Value) -> Option<Vec<Algorithm>> {
        let set: JwkSet = serde_json::from_value(json!({ "keys": [jwk] })).unwrap();
        signing_keys(&set)
            .into_values()
            .next()
            .map(|key| key.algorithms.clone())
    }

    #[test]
    fn keys_verify_only_what_their_type_and_alg_allow() {
        let n = "sXchSUtmPpnc7oa0cORqbG1IEYjbIzvDdyoUgNB-ALqxbMNnt0Rgu8nZ9w";
        let rsa = json!({"kty": "RSA", "kid": "r", "n": n, "e": "AQAB"});
        assert_eq!(algorithms_of(rsa.clone()), Some(RSA_ALGORITHMS.to_vec()));
        let mut rs256 = rsa.clone();
        rs256["alg"] = json!("RS256");
        assert_eq!(algorithms_of(rs256), Some(vec![Algorithm::RS256]));
        let mut rsa_claiming_ec = rsa.clone();
        rsa_claiming_ec["alg"] = json!("ES256");
        assert_eq!(algorithms_of(rsa_claiming_ec), None);
        let mut encryption = rsa.clone();
        encryption["use"] = json!("enc");
        assert_eq!(algorithms_of(encryption), None);
        let mut no_kid = rsa;
        no_kid.as_object_mut().unwrap().remove("kid");
        assert_eq!(algorithms_of(no_kid), None);

        let ec = json!({"kty": "EC", "kid": "e", "crv": "P-384", "x": "AA", "y": "AA"});
        assert_eq!(algorithms_of(ec), Some(vec![Algorithm::ES384]));
        let hmac = json!({"kty": "oct", "kid": "h", "k": "c2VjcmV0"});
        assert_eq!(algorithms_of(hmac), None);
    }
}
