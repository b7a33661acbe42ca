//! `gateway.domain_name` and `gateway.domain_name_aliases`: the names the API answers to, and
//! how a request's `Host` header is matched against them.
//!
//! `requestContext.domainName` is what backends build `@connections` callback URLs from, so it
//! must never be a value the client chose. With names configured, an upgrade whose `Host`
//! names one of them gets that configured name as its `domainName`, and any other `Host` is
//! refused. Without, the API answers only to this machine: `localhost`, a loopback address or
//! the address the client connected to, with the listener's port. The check itself (403 before
//! the authorizer and `$connect`) is made by the upgrade in `gateway::connection`.

use std::net::{IpAddr, SocketAddr};

use serde_spanned::Spanned;

use super::validate::Problems;

/// One name the API answers to: a host name or IP address, with an optional port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainName {
    /// The name as configured; what events carry as `domainName`.
    text: String,
    /// The host part, lower-cased (an IPv6 address without its brackets).
    host: String,
    /// The port, when the name has one; without, any port matches.
    port: Option<u16>,
}

/// A `Host` header split into its host (lower-cased, IPv6 without brackets) and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Authority {
    /// The host, lower-cased.
    pub(crate) host: String,
    /// The port, when one was given.
    pub(crate) port: Option<u16>,
}

impl DomainName {
    /// Reads a name: `host` or `host:port`, where the host is a DNS name or an IP address
    /// (IPv6 in brackets); the error is a message for the user.
    pub fn parse(text: &str) -> Result<DomainName, String> {
        let authority = Authority::parse(text).ok_or_else(|| {
            format!(
                "{text:?} is not a host name (expected host or host:port, e.g. \
                 \"ws.example.com\" or \"ws.example.com:8443\")"
            )
        })?;
        Ok(DomainName {
            text: text.to_owned(),
            host: authority.host,
            port: authority.port,
        })
    }

    /// The name as configured.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether a request's `Host` names this name: the same host (case-insensitively) and,
    /// when the name has a port, the same port.
    pub(crate) fn matches(&self, authority: &Authority) -> bool {
        self.host == authority.host && self.port.is_none_or(|port| authority.port == Some(port))
    }
}

impl Authority {
    /// Splits a `Host` value; `None` when it is not `host[:port]` with a DNS name or an IP
    /// address as host (a path, a user part, spaces or an empty host are refused).
    pub(crate) fn parse(text: &str) -> Option<Authority> {
        let (host, port) = split(text)?;
        Some(Authority {
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    /// Whether a `Host` value is valid ([`Authority::parse`]) and names `localhost` or a
    /// loopback address, without allocating: every management request in the mode without
    /// credentials asks.
    pub(crate) fn text_names_loopback(text: &str) -> bool {
        split(text).is_some_and(|(host, _)| host_is_loopback(host))
    }

    /// Whether the host is `localhost` or a loopback address (IPv4-mapped included), whatever
    /// the port.
    pub(crate) fn names_loopback(&self) -> bool {
        host_is_loopback(&self.host)
    }

    /// Whether this names the machine itself at `local` (the address the client connected
    /// to): `localhost`, a loopback address or `local`'s own address, with `local`'s port
    /// (no port only when that port is the scheme's default, 80 or 443).
    pub(crate) fn is_this_machine(&self, local: SocketAddr) -> bool {
        let host_is_local = self.names_loopback()
            || self
                .host
                .parse::<IpAddr>()
                .is_ok_and(|ip| ip.to_canonical() == local.ip().to_canonical());
        let port_is_local = match self.port {
            Some(port) => port == local.port(),
            None => matches!(local.port(), 80 | 443),
        };
        host_is_local && port_is_local
    }
}

/// A `Host` value split into its host (without brackets) and port, checked as
/// [`Authority::parse`] describes.
fn split(text: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (address, after) = rest.split_once(']')?;
        address.parse::<std::net::Ipv6Addr>().ok()?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':')?),
        };
        (address, port)
    } else {
        let (host, port) = match text.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        };
        let valid = !host.is_empty()
            && host.len() <= 253
            && host
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_'));
        if !valid {
            return None;
        }
        (host, port)
    };
    let port = match port {
        None => None,
        Some(digits) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
            Some(digits.parse::<u16>().ok()?)
        }
        Some(_) => return None,
    };
    Some((host, port))
}

/// `localhost` (in any case) or a loopback address (IPv4-mapped included).
fn host_is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.to_canonical().is_loopback())
}

/// Validates `gateway.domain_name` and `gateway.domain_name_aliases` into one list, the
/// domain name first; invalid entries are recorded and left out.
pub(super) fn validate_domain_names(
    domain_name: Option<&Spanned<String>>,
    aliases: Option<&Vec<Spanned<String>>>,
    problems: &mut Problems<'_>,
) -> Vec<DomainName> {
    let mut names = Vec::new();
    let entries = domain_name
        .map(|name| ("gateway.domain_name".to_owned(), name))
        .into_iter()
        .chain(
            aliases
                .into_iter()
                .flatten()
                .enumerate()
                .map(|(index, alias)| (format!("gateway.domain_name_aliases[{index}]"), alias)),
        );
    for (path, entry) in entries {
        match DomainName::parse(entry.get_ref()) {
            Ok(name) => names.push(name),
            Err(message) => problems.add(path, entry.span(), message),
        }
    }
    if domain_name.is_none() && !names.is_empty() {
        problems.add(
            "gateway.domain_name_aliases".to_owned(),
            aliases
                .and_then(|aliases| aliases.first())
                .map_or(0..0, Spanned::span),
            "aliases need gateway.domain_name, the API's own name".to_owned(),
        );
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(host: &str, expected: Option<(&str, Option<u16>)>) {
        let parsed = Authority::parse(host);
        let expected = expected.map(|(host, port)| Authority {
            host: host.to_owned(),
            port,
        });
        assert_eq!(parsed, expected, "{host:?}");
    }

    #[test]
    fn host_headers_split_into_host_and_port() {
        check("ws.example.com", Some(("ws.example.com", None)));
        check("WS.Example.COM:8443", Some(("ws.example.com", Some(8443))));
        check("127.0.0.1:8080", Some(("127.0.0.1", Some(8080))));
        check("[::1]:8080", Some(("::1", Some(8080))));
        check("[::1]", Some(("::1", None)));
        for bad in [
            "",
            ":80",
            "attacker:9999/any/path?x=",
            "user@host",
            "host:",
            "host:80:80",
            "host:99999",
            "a b",
            "[not-v6]:80",
            "[::1]80",
        ] {
            check(bad, None);
        }
    }

    #[test]
    fn a_host_value_names_loopback_as_its_parsed_authority_does() {
        for text in [
            "localhost",
            "LOCALHOST:1",
            "127.0.0.1",
            "127.0.0.1:80",
            "[::1]",
            "[::1]:8080",
            "[::ffff:127.0.0.1]:80",
            "example.com",
            "10.0.0.1:80",
            "",
            "localhost:",
            "[::1",
            "127.0.0.1:99999",
            "a b",
        ] {
            let parsed = Authority::parse(text).is_some_and(|authority| authority.names_loopback());
            assert_eq!(Authority::text_names_loopback(text), parsed, "{text:?}");
        }
        assert!(Authority::text_names_loopback("[::ffff:127.0.0.1]:80"));
        assert!(!Authority::text_names_loopback(
            "localhost.attacker.example"
        ));
    }

    #[test]
    fn configured_names_match_by_host_and_their_port() {
        let name = DomainName::parse("ws.example.com").unwrap();
        let with_port = DomainName::parse("ws.example.com:8443").unwrap();
        let host = |text| Authority::parse(text).unwrap();
        assert!(name.matches(&host("WS.example.com")));
        assert!(name.matches(&host("ws.example.com:443")));
        assert!(!name.matches(&host("example.com")));
        assert!(!name.matches(&host("ws.example.com.attacker.net")));
        assert!(with_port.matches(&host("ws.example.com:8443")));
        assert!(!with_port.matches(&host("ws.example.com")));
        assert!(!with_port.matches(&host("ws.example.com:9999")));
        assert!(DomainName::parse("https://ws.example.com").is_err());
    }

    #[test]
    fn without_names_only_this_machine_at_the_listener_port_is_accepted() {
        let local: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let host = |text| Authority::parse(text).unwrap();
        assert!(host("localhost:8080").is_this_machine(local));
        assert!(host("127.0.0.1:8080").is_this_machine(local));
        assert!(host("[::1]:8080").is_this_machine(local));
        assert!(!host("localhost:6379").is_this_machine(local));
        assert!(!host("localhost").is_this_machine(local));
        assert!(!host("attacker.example:8080").is_this_machine(local));
        let public: SocketAddr = "192.0.2.7:80".parse().unwrap();
        assert!(host("192.0.2.7").is_this_machine(public));
        assert!(!host("192.0.2.8").is_this_machine(public));
    }
}
