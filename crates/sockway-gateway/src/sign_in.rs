//! Console sign-in: proving knowledge of a `[[management.credentials]]` key pair without
//! sending its secret, the in-memory sessions that follow, and the per-client limit on
//! attempts ([`SignIn`], part of the gateway's state).
//!
//! The secret never leaves the browser: the page asks for a one-time challenge (a random nonce,
//! valid for [`CHALLENGE_TTL`]) and answers with the HMAC-SHA256 of
//! `"sockway-console-sign-in\n{nonce}\n{accessKeyId}"` keyed with the secret, in hex, computed
//! with WebCrypto ([`proof`]). A nonce is redeemed once, so a proof seen on the wire cannot be
//! replayed. Each client (an address, as connection limits count them) has
//! [`ATTEMPTS_BURST`] attempts, refilled one every [`ATTEMPT_REFILL`], so one client guessing
//! cannot lock others out.
//!
//! A session token is 256 bits from the operating system's random source, handed to the browser
//! once in an `HttpOnly` cookie; the server keeps only its SHA-256 digest, so the map can be
//! searched without comparing secrets byte by byte. Sessions expire [`SESSION_TTL`] after
//! sign-in, whatever happens in between, and vanish when the process stops. What a session
//! allows is decided by `console`, not here.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::config::ManagementCredential;
use crate::throttle::{Client, ClientBuckets};

/// How long a session lasts after sign-in.
pub(crate) const SESSION_TTL: Duration = Duration::from_secs(12 * 60 * 60);

/// The cookie that carries the session token.
pub(crate) const COOKIE_NAME: &str = "sockway_console";

/// Sessions kept at most; signing in beyond it ends the session closest to expiry.
const MAX_SESSIONS: usize = 1024;

/// How long a challenge can be answered.
pub(crate) const CHALLENGE_TTL: Duration = Duration::from_secs(60);

/// Sign-in attempts a client may make at once.
pub(crate) const ATTEMPTS_BURST: u32 = 10;

/// How long a client waits for one more attempt once its burst is used.
pub(crate) const ATTEMPT_REFILL: Duration = Duration::from_secs(5);

/// Challenges outstanding at once; past this the oldest expired ones go, and if none has
/// expired a new challenge is refused until one does.
const MAX_CHALLENGES: usize = 4096;

/// What the proof signs before the nonce and the access key id.
const PROOF_CONTEXT: &str = "sockway-console-sign-in";

/// The console's sign-in state of one gateway.
#[derive(Debug)]
pub(crate) struct SignIn {
    /// The live sessions.
    pub(crate) sessions: Sessions,
    /// Nonces handed out and not yet redeemed, with their expiry.
    challenges: Mutex<HashMap<String, Instant>>,
    /// Sign-in attempts per client.
    attempts: ClientBuckets,
}

impl Default for SignIn {
    fn default() -> Self {
        SignIn {
            sessions: Sessions::default(),
            challenges: Mutex::new(HashMap::new()),
            attempts: ClientBuckets::new(1.0 / ATTEMPT_REFILL.as_secs_f64(), ATTEMPTS_BURST),
        }
    }
}

impl SignIn {
    /// A new one-time nonce, or `None` when too many are outstanding.
    pub(crate) fn challenge(&self, now: Instant) -> Option<String> {
        let mut challenges = self.challenges();
        if challenges.len() >= MAX_CHALLENGES {
            challenges.retain(|_, expires_at| *expires_at > now);
            if challenges.len() >= MAX_CHALLENGES {
                return None;
            }
        }
        let nonce = URL_SAFE_NO_PAD.encode(crate::random_bytes::<32>());
        challenges.insert(nonce.clone(), now + CHALLENGE_TTL);
        Some(nonce)
    }

    /// Takes one of `client`'s attempts; `Err` with the wait when it has none left.
    pub(crate) fn attempt(&self, client: Client) -> Result<(), Duration> {
        self.attempts.try_acquire(client)
    }

    /// The credential `proof` was made with for `nonce`, if the nonce is outstanding (it is
    /// used up either way) and the proof is right.
    pub(crate) fn verify<'c>(
        &self,
        credentials: &'c [ManagementCredential],
        access_key_id: &str,
        nonce: &str,
        proof: &str,
        now: Instant,
    ) -> Option<&'c ManagementCredential> {
        let fresh = self
            .challenges()
            .remove(nonce)
            .is_some_and(|expires_at| expires_at > now);
        let candidate = credentials
            .iter()
            .find(|credential| credential.access_key_id == access_key_id);
        // An unknown key or a stale nonce costs the same work as a wrong proof.
        let secret = candidate.map_or("", |credential| credential.secret_access_key.as_str());
        let expected = self::proof(secret, nonce, access_key_id);
        let matches = constant_time_eq(&digest(&expected), &digest(proof));
        candidate.filter(|_| matches && fresh)
    }

    fn challenges(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.challenges
            .lock()
            .expect("no code panics holding the console challenge lock")
    }
}

/// The proof of knowing `secret` for `nonce`: hex of HMAC-SHA256 over
/// `"sockway-console-sign-in\n{nonce}\n{access_key_id}"`, keyed with the secret.
pub(crate) fn proof(secret: &str, nonce: &str, access_key_id: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(format!("{PROOF_CONTEXT}\n{nonce}\n{access_key_id}").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The live console sessions of one gateway.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    /// Sessions by the SHA-256 digest of their token. A plain mutex: each use is a map lookup,
    /// insert or sweep and never awaits.
    by_digest: Mutex<HashMap<[u8; 32], Session>>,
}

/// One signed-in browser.
#[derive(Debug, Clone)]
struct Session {
    /// The access key id it signed in with, shown on the page.
    access_key_id: String,
    expires_at: Instant,
}

impl Sessions {
    /// Starts a session for `access_key_id` and returns its token (URL-safe base64 of 32 random
    /// bytes from the operating system).
    pub(crate) fn create(&self, access_key_id: &str, now: Instant) -> String {
        let mut token = [0u8; 32];
        getrandom::fill(&mut token).expect("the operating system's random source is available");
        let token = URL_SAFE_NO_PAD.encode(token);
        let mut sessions = self.lock();
        sessions.retain(|_, session| session.expires_at > now);
        if sessions.len() >= MAX_SESSIONS {
            let oldest = sessions
                .iter()
                .min_by_key(|(_, session)| session.expires_at)
                .map(|(digest, _)| *digest);
            if let Some(oldest) = oldest {
                sessions.remove(&oldest);
            }
        }
        sessions.insert(
            digest(&token),
            Session {
                access_key_id: access_key_id.to_owned(),
                expires_at: now + SESSION_TTL,
            },
        );
        token
    }

    /// The access key id of the live session `token` names; an expired one is removed.
    pub(crate) fn lookup(&self, token: &str, now: Instant) -> Option<String> {
        let key = digest(token);
        let mut sessions = self.lock();
        let session = sessions.get(&key)?;
        if session.expires_at <= now {
            sessions.remove(&key);
            return None;
        }
        Some(session.access_key_id.clone())
    }

    /// Ends the session `token` names, if there is one.
    pub(crate) fn remove(&self, token: &str) {
        self.lock().remove(&digest(token));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        self.by_digest
            .lock()
            .expect("no code panics holding the console session lock")
    }
}

/// The session token in a request's `Cookie` headers, if any.
pub(crate) fn token_from_cookies<'a>(
    cookies: impl IntoIterator<Item = &'a http::HeaderValue>,
) -> Option<&'a str> {
    cookies
        .into_iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, value)| value)
        .filter(|value| !value.is_empty())
}

/// The `Set-Cookie` value that gives the browser `token`; `secure` adds `Secure` (the page was
/// served over TLS).
pub(crate) fn session_cookie(token: &str, secure: bool) -> String {
    let mut cookie = format!(
        "{COOKIE_NAME}={token}; Path=/console; Max-Age={}; HttpOnly; SameSite=Strict",
        SESSION_TTL.as_secs()
    );
    if secure {
        cookie.push_str("; Secure");
    }
    cookie
}

/// The `Set-Cookie` value that makes the browser forget its session cookie.
pub(crate) fn cleared_cookie(secure: bool) -> String {
    let mut cookie = format!("{COOKIE_NAME}=; Path=/console; Max-Age=0; HttpOnly; SameSite=Strict");
    if secure {
        cookie.push_str("; Secure");
    }
    cookie
}

fn digest(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

/// Whether `a == b`, in time that does not depend on where they differ.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let difference = a
        .iter()
        .zip(b.iter())
        .fold(0u8, |difference, (x, y)| difference | (x ^ y));
    std::hint::black_box(difference) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credentials() -> Vec<ManagementCredential> {
        vec![
            ManagementCredential {
                access_key_id: "AKIAFIRSTEXAMPLE0000".to_owned(),
                secret_access_key: "first-secret".to_owned(),
            },
            ManagementCredential {
                access_key_id: "AKIASECONDEXAMPLE000".to_owned(),
                secret_access_key: "second-secret".to_owned(),
            },
        ]
    }

    /// Signs in to a fresh `SignIn` with a proof made from `secret` for `access_key_id`.
    fn check_login(access_key_id: &str, secret: &str, expected: Option<&str>) {
        let credentials = credentials();
        let sign_in = SignIn::default();
        let now = Instant::now();
        let nonce = sign_in.challenge(now).unwrap();
        let proof = proof(secret, &nonce, access_key_id);
        let found = sign_in
            .verify(&credentials, access_key_id, &nonce, &proof, now)
            .map(|credential| credential.access_key_id.as_str());
        assert_eq!(found, expected, "{access_key_id} / {secret}");
    }

    #[test]
    fn only_a_proof_made_with_the_right_secret_signs_in() {
        check_login(
            "AKIASECONDEXAMPLE000",
            "second-secret",
            Some("AKIASECONDEXAMPLE000"),
        );
        check_login("AKIAFIRSTEXAMPLE0000", "second-secret", None);
        check_login("AKIAFIRSTEXAMPLE0000", "first-secre", None);
        check_login("AKIAFIRSTEXAMPLE0000", "", None);
        check_login("AKIAUNKNOWNEXAMPLE00", "first-secret", None);
        check_login("", "", None);
    }

    #[test]
    fn a_nonce_signs_in_once_and_only_while_fresh() {
        let credentials = credentials();
        let sign_in = SignIn::default();
        let now = Instant::now();
        let id = "AKIAFIRSTEXAMPLE0000";
        let nonce = sign_in.challenge(now).unwrap();
        let proof = proof("first-secret", &nonce, id);
        assert!(
            sign_in
                .verify(&credentials, id, &nonce, &proof, now)
                .is_some()
        );
        assert!(
            sign_in
                .verify(&credentials, id, &nonce, &proof, now)
                .is_none(),
            "a replayed proof"
        );
        let stale = sign_in.challenge(now).unwrap();
        let proof = self::proof("first-secret", &stale, id);
        assert!(
            sign_in
                .verify(&credentials, id, &stale, &proof, now + CHALLENGE_TTL)
                .is_none(),
            "an expired nonce"
        );
        assert!(
            sign_in
                .verify(
                    &credentials,
                    id,
                    "made-up",
                    &self::proof("first-secret", "made-up", id),
                    now
                )
                .is_none(),
            "a nonce never handed out"
        );
    }

    /// The proof is HMAC-SHA256 as WebCrypto computes it; this vector was computed
    /// independently (Python: `hmac.new(b"secret", b"sockway-console-sign-in\nn0nce\nAKID",
    /// "sha256").hexdigest()`).
    #[test]
    fn the_proof_is_hmac_sha256_of_the_documented_message() {
        assert_eq!(
            proof("secret", "n0nce", "AKID"),
            "0028af94b3ae3b97b3712257dfd801d2a7b379173d313f7eb99f18528eb1c51d",
        );
    }

    #[test]
    fn sessions_expire_after_the_ttl() {
        let sessions = Sessions::default();
        let start = Instant::now();
        let token = sessions.create("AKIAFIRSTEXAMPLE0000", start);
        assert_eq!(
            sessions.lookup(&token, start + SESSION_TTL - Duration::from_secs(1)),
            Some("AKIAFIRSTEXAMPLE0000".to_owned())
        );
        assert_eq!(sessions.lookup(&token, start + SESSION_TTL), None);
        // Once expired it is gone, even for an earlier clock reading.
        assert_eq!(sessions.lookup(&token, start), None);
    }

    #[test]
    fn tokens_are_long_random_and_removable() {
        let sessions = Sessions::default();
        let now = Instant::now();
        let first = sessions.create("AKIAFIRSTEXAMPLE0000", now);
        let second = sessions.create("AKIAFIRSTEXAMPLE0000", now);
        assert_ne!(first, second);
        assert_eq!(URL_SAFE_NO_PAD.decode(&first).unwrap().len(), 32);
        sessions.remove(&first);
        assert_eq!(sessions.lookup(&first, now), None);
        assert!(sessions.lookup(&second, now).is_some());
        assert_eq!(sessions.lookup("not-a-token", now), None);
    }

    #[test]
    fn the_session_table_is_bounded() {
        let sessions = Sessions::default();
        let now = Instant::now();
        let first = sessions.create("AKIAFIRSTEXAMPLE0000", now);
        for offset in 1..=MAX_SESSIONS as u64 {
            sessions.create("AKIAFIRSTEXAMPLE0000", now + Duration::from_millis(offset));
        }
        assert_eq!(sessions.lock().len(), MAX_SESSIONS);
        assert_eq!(
            sessions.lookup(&first, now),
            None,
            "the oldest session made room"
        );
    }

    #[test]
    fn the_token_is_read_from_any_cookie_header() {
        let headers = [
            http::HeaderValue::from_static("theme=dark"),
            http::HeaderValue::from_static("a=1; sockway_console=abc_-123; b=2"),
        ];
        assert_eq!(token_from_cookies(&headers), Some("abc_-123"));
        let none = [http::HeaderValue::from_static("sockway_console=; other=x")];
        assert_eq!(token_from_cookies(&none), None);
        let similar = [http::HeaderValue::from_static("xsockway_console=abc")];
        assert_eq!(token_from_cookies(&similar), None);
    }

    #[test]
    fn cookies_are_http_only_strict_and_scoped_to_the_console() {
        assert_eq!(
            session_cookie("T", false),
            "sockway_console=T; Path=/console; Max-Age=43200; HttpOnly; SameSite=Strict"
        );
        assert!(session_cookie("T", true).ends_with("; Secure"));
        assert_eq!(
            cleared_cookie(false),
            "sockway_console=; Path=/console; Max-Age=0; HttpOnly; SameSite=Strict"
        );
    }
}
