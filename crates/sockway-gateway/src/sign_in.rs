//! Console sign-in: checking an access key pair against `[[management.credentials]]`, the
//! in-memory sessions that follow, and the gate that bounds how many sign-ins are checked at
//! once ([`SignIn`], part of the gateway's state).
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
use sha2::{Digest, Sha256};

use tokio::sync::Semaphore;

use crate::config::ManagementCredential;

/// How long a session lasts after sign-in.
pub(crate) const SESSION_TTL: Duration = Duration::from_secs(12 * 60 * 60);

/// The cookie that carries the session token.
pub(crate) const COOKIE_NAME: &str = "sockway_console";

/// Sessions kept at most; signing in beyond it ends the session closest to expiry.
const MAX_SESSIONS: usize = 1024;

/// Sign-ins checked at once; more are refused with 429 without being checked, so failures
/// cannot be tried faster than this many per `console::LOGIN_FAILURE_DELAY`.
pub(crate) const LOGIN_ATTEMPTS_AT_ONCE: usize = 4;

/// The console's sign-in state of one gateway.
#[derive(Debug)]
pub(crate) struct SignIn {
    /// The live sessions.
    pub(crate) sessions: Sessions,
    /// Sign-ins being checked (or waiting out `console::LOGIN_FAILURE_DELAY`).
    pub(crate) login_gate: Semaphore,
}

impl Default for SignIn {
    fn default() -> Self {
        SignIn {
            sessions: Sessions::default(),
            login_gate: Semaphore::new(LOGIN_ATTEMPTS_AT_ONCE),
        }
    }
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

/// The credential whose access key id is `access_key_id` and whose secret is `secret`.
///
/// The secrets are compared in constant time, over their SHA-256 digests so that the lengths
/// do not show either; an unknown access key id costs the same comparison.
pub(crate) fn authenticate<'a>(
    credentials: &'a [ManagementCredential],
    access_key_id: &str,
    secret: &str,
) -> Option<&'a ManagementCredential> {
    let candidate = credentials
        .iter()
        .find(|credential| credential.access_key_id == access_key_id);
    let expected = candidate.map_or("", |credential| credential.secret_access_key.as_str());
    let matches = constant_time_eq(&digest(expected), &digest(secret));
    candidate.filter(|_| matches)
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

    fn check_login(access_key_id: &str, secret: &str, expected: Option<&str>) {
        let credentials = credentials();
        let found = authenticate(&credentials, access_key_id, secret)
            .map(|credential| credential.access_key_id.as_str());
        assert_eq!(found, expected, "{access_key_id} / {secret}");
    }

    #[test]
    fn only_a_matching_pair_signs_in() {
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
