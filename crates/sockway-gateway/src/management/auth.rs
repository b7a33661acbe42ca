//! Who may call the management API and the console: with `[[management.credentials]]`
//! configured, whoever signs the request with SigV4 using one of them (service `execute-api`,
//! the gateway's region; verified over the raw request target and the exact body by
//! `aws::sigv4`); without credentials, only processes on this machine.
//!
//! Without credentials "this machine" is narrower than the peer's address: a browser on the
//! operator's machine is a local peer too, and any page it opens can send it requests (a
//! cross-site form POST needs no preflight; a rebinding DNS name points a page's own origin at
//! 127.0.0.1). So a request is also refused when its `Host` is not `localhost` or a loopback
//! address (rebinding), when it carries an `Origin` (SDKs and the admin CLI send none; the
//! console's own page is let through when its origin is the request's), when
//! `Sec-Fetch-Site` says a page of another site sent it, or when it carries forwarding headers
//! (a proxy on this machine relaying someone else's request): [`check_local`].
//!
//! The console signs in with the same key pairs and keeps a session instead of signing each
//! call, so it uses [`check_peer`] alone.

use std::net::{IpAddr, SocketAddr};
use std::time::SystemTime;

use http::HeaderName;
use http::request::Parts;

use super::ApiError;
use crate::aws::sigv4;
use crate::config::{Authority, Config, any_contains};

/// Whether `ip` is this machine (IPv4-mapped loopback included).
pub(crate) fn is_loopback(ip: IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

/// Why a request in loopback-only mode (no credentials) is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum NotLocal {
    /// The peer is not on this machine.
    #[error("the caller is not on this machine")]
    Peer,
    /// `Host` is not `localhost` or a loopback address (DNS rebinding).
    #[error("the Host header does not name this machine")]
    Host,
    /// A page of another origin (or another site) sent the request.
    #[error("a browser page of another origin sent the request")]
    CrossOrigin,
    /// A proxy relayed the request.
    #[error("the request was forwarded by a proxy")]
    Forwarded,
}

/// Headers a proxy adds to a request it relays.
const FORWARDING_HEADERS: [HeaderName; 5] = [
    http::header::FORWARDED,
    HeaderName::from_static("x-forwarded-for"),
    HeaderName::from_static("x-forwarded-host"),
    HeaderName::from_static("x-real-ip"),
    http::header::VIA,
];

/// `Sec-Fetch-Site`, which browsers send with every request.
const SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");

/// Whether a request is one this machine's own tools sent: see the module docs. With
/// `same_origin_page`, a browser page whose origin is the request's own (the console's page)
/// is let through.
pub(crate) fn check_local(
    peer: SocketAddr,
    headers: &http::HeaderMap,
    same_origin_page: bool,
) -> Result<(), NotLocal> {
    if !is_loopback(peer.ip()) {
        return Err(NotLocal::Peer);
    }
    // One pass over the few headers a tool sends, not a hashed lookup for each name checked;
    // the first of a repeated header counts, as `HeaderMap::get` has it.
    let (mut host, mut origin, mut fetch_site, mut forwarded) = (None, None, None, false);
    for (name, value) in headers {
        if name == http::header::HOST {
            host.get_or_insert(value);
        } else if name == http::header::ORIGIN {
            origin.get_or_insert(value);
        } else if name == SEC_FETCH_SITE {
            fetch_site.get_or_insert(value);
        } else if FORWARDING_HEADERS.contains(name) {
            forwarded = true;
        }
    }
    let host = header_text(host).unwrap_or_default();
    if !Authority::text_names_loopback(host) {
        return Err(NotLocal::Host);
    }
    if forwarded {
        return Err(NotLocal::Forwarded);
    }
    if matches!(header_text(fetch_site), Some("cross-site" | "same-site")) {
        return Err(NotLocal::CrossOrigin);
    }
    match origin {
        None => Ok(()),
        Some(origin) if same_origin_page => {
            let origin = origin.to_str().unwrap_or_default();
            let own = ["http://", "https://"]
                .iter()
                .any(|scheme| origin.strip_prefix(scheme) == Some(host));
            if own {
                Ok(())
            } else {
                Err(NotLocal::CrossOrigin)
            }
        }
        Some(_) => Err(NotLocal::CrossOrigin),
    }
}

/// A header's value as text, if it is present and visible ASCII.
fn header_text(value: Option<&http::HeaderValue>) -> Option<&str> {
    value.and_then(|value| value.to_str().ok())
}

/// Who a management request comes from, as far as [`check_peer`] could tell before the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Caller {
    /// A tool on this machine, in the mode without credentials: nothing to verify.
    Local,
    /// Signed with one of `[[management.credentials]]`; [`verify`] checks the signature once
    /// the body is read.
    Credential {
        /// The access key id of the signature.
        access_key_id: String,
    },
    /// In one of `management.trusted_networks`, signed with a key sockway does not hold (an
    /// AWS role's temporary credentials): the signature's form, scope and time were checked,
    /// the signature itself cannot be.
    TrustedNetwork {
        /// The access key id the signature claims.
        access_key_id: String,
    },
}

impl Caller {
    /// The access key id the request was signed with, when it was signed.
    pub(crate) fn access_key_id(&self) -> Option<&str> {
        match self {
            Caller::Local => None,
            Caller::Credential { access_key_id } | Caller::TrustedNetwork { access_key_id } => {
                Some(access_key_id)
            }
        }
    }
}

/// The check before a request's body is read. Without credentials to verify, this machine's
/// own tools are served ([`check_local`]). A signed request must then hold everything about
/// its signature that does not need the body (its form, scope and time), so a stranger
/// cannot hold the server with a slow body, and either be signed with a configured key (whose
/// signature [`verify`] checks over the body) or come from a trusted network
/// (`management.trusted_networks`), whose callers may sign with keys only AWS can verify.
///
/// A signed request must also name, in its `Host` (which the signature covers), a name the
/// gateway answers to (`gateway.domain_name` or an alias) or the address the caller reached
/// (`local`), so that a request signed for another server that shares the credentials cannot
/// be replayed here.
pub(crate) fn check_peer(
    config: &Config,
    peer: SocketAddr,
    local: Option<SocketAddr>,
    headers: &http::HeaderMap,
) -> Result<Caller, ApiError> {
    let management = &config.management;
    if management.credentials.is_empty() {
        match check_local(peer, headers, false) {
            Ok(()) => return Ok(Caller::Local),
            Err(not_local) if management.trusted_networks.is_empty() => {
                return Err(ApiError::NotLocal(not_local));
            }
            // A caller from a trusted network signs; that is checked below.
            Err(_) => {}
        }
    }
    let host = headers
        .get(http::header::HOST)
        .and_then(|value| value.to_str().ok())
        .and_then(Authority::parse);
    let names_this_gateway = host.is_some_and(|host| {
        config
            .gateway
            .domain_names
            .iter()
            .any(|name| name.matches(&host))
            || local.is_some_and(|local| host.is_this_machine(local))
    });
    if !names_this_gateway && headers.contains_key(http::header::AUTHORIZATION) {
        return Err(ApiError::ForeignHost);
    }
    let region = &config.gateway.region;
    let now = SystemTime::now();
    let access_key_id = sigv4::check_form(headers, region, SERVICE, now)?;
    let known = management
        .credentials
        .iter()
        .any(|credential| credential.access_key_id == access_key_id);
    if known {
        sigv4::check_request_head(headers, &management.credentials, region, SERVICE, now)?;
        Ok(Caller::Credential { access_key_id })
    } else if any_contains(
        &management.trusted_networks,
        caller_address(config, peer.ip(), headers),
    ) {
        Ok(Caller::TrustedNetwork { access_key_id })
    } else {
        Err(sigv4::SignatureError::UnknownAccessKey { access_key_id }.into())
    }
}

/// The caller's address, as `management.trusted_networks` is matched against it: the peer, or,
/// when the peer is one of `gateway.trusted_proxies`, the client its `X-Forwarded-For` names,
/// as the upgrade finds a WebSocket client. A load balancer in front thus never lends its own
/// address to the whole internet behind it.
fn caller_address(config: &Config, peer: IpAddr, headers: &http::HeaderMap) -> IpAddr {
    let proxies = &config.gateway.trusted_proxies;
    if !proxies.contains(peer) {
        return peer.to_canonical();
    }
    let forwarded: Vec<(String, String)> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .map(|value| ("X-Forwarded-For".to_owned(), value.to_owned()))
        .collect();
    crate::proxy::forwarded::resolve(&forwarded, peer, proxies).client
}

/// The signing name of API Gateway's APIs, `@connections` included.
const SERVICE: &str = "execute-api";

/// Verifies the SigV4 signature over the request's target and `body` of a caller signed with
/// a configured key; other callers were decided by [`check_peer`].
pub(crate) fn verify(
    config: &Config,
    caller: &Caller,
    parts: &Parts,
    body: &[u8],
) -> Result<(), ApiError> {
    let Caller::Credential { .. } = caller else {
        return Ok(());
    };
    // hyper keeps the request target as received, percent-encoding included, which is what
    // the caller signed.
    let target = parts
        .uri
        .path_and_query()
        .map_or("/", |path_and_query| path_and_query.as_str());
    sigv4::verify_request(
        parts.method.as_str(),
        target,
        &parts.headers,
        body,
        &config.management.credentials,
        &config.gateway.region,
        SERVICE,
        SystemTime::now(),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::{NotLocal, check_local};

    fn headers(pairs: &[(&'static str, &'static str)]) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, http::HeaderValue::from_static(value));
        }
        headers
    }

    #[test]
    fn only_this_machines_tools_pass_the_local_check() {
        let local: SocketAddr = "127.0.0.1:50000".parse().unwrap();
        let check = |pairs: &[(&'static str, &'static str)], page| {
            check_local(local, &headers(pairs), page)
        };
        for host in [
            "localhost:8080",
            "LocalHost",
            "127.0.0.1:8080",
            "[::1]:8080",
            "127.9.9.9",
        ] {
            assert_eq!(check(&[("host", host)], false), Ok(()), "{host}");
        }
        for host in [
            "attacker.example:8080",
            "192.0.2.1",
            "localhost:",
            "",
            "a b",
        ] {
            assert_eq!(
                check(&[("host", host)], false),
                Err(NotLocal::Host),
                "{host}"
            );
        }
        assert_eq!(check(&[], false), Err(NotLocal::Host));
        // The first `Host` counts, as it does for every other reader of the request.
        assert_eq!(
            check(
                &[("host", "attacker.example"), ("host", "localhost")],
                false
            ),
            Err(NotLocal::Host)
        );
        // A rebinding name is refused before a proxy's header is looked at.
        assert_eq!(
            check(&[("host", "attacker.example"), ("via", "1.1 proxy")], false),
            Err(NotLocal::Host)
        );
        for forwarding in [
            "forwarded",
            "x-forwarded-for",
            "x-forwarded-host",
            "x-real-ip",
            "via",
        ] {
            assert_eq!(
                check(&[("host", "localhost"), (forwarding, "x")], false),
                Err(NotLocal::Forwarded),
                "{forwarding}"
            );
        }
        assert_eq!(
            check(
                &[("host", "localhost"), ("sec-fetch-site", "cross-site")],
                false
            ),
            Err(NotLocal::CrossOrigin)
        );
        assert_eq!(
            check(
                &[("host", "localhost"), ("sec-fetch-site", "same-origin")],
                false
            ),
            Ok(())
        );
        let page = [
            ("host", "localhost:8080"),
            ("origin", "http://localhost:8080"),
        ];
        assert_eq!(check(&page, true), Ok(()));
        assert_eq!(check(&page, false), Err(NotLocal::CrossOrigin));
        assert_eq!(
            check(
                &[
                    ("host", "localhost:8080"),
                    ("origin", "http://evil.example")
                ],
                true
            ),
            Err(NotLocal::CrossOrigin)
        );
        let remote: SocketAddr = "192.0.2.1:50000".parse().unwrap();
        assert_eq!(
            check_local(remote, &headers(&[("host", "localhost")]), false),
            Err(NotLocal::Peer)
        );
    }
}
