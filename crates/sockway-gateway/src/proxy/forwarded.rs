//! `X-Forwarded-For`, `X-Forwarded-Proto` and `X-Forwarded-Port` on an upgrade request: who
//! the client is, and what the CONNECT event's forwarding headers say.
//!
//! Each proxy appends the address it received the request from to `X-Forwarded-For`, so the
//! list read right to left, with the connection's peer after its end, walks back from the
//! gateway towards the client. The walk goes on while the hop is a trusted proxy: the first
//! address that is not one is the client (everything to its left was written by parties
//! nobody vouches for). When every hop is trusted, the leftmost is the client. An entry that
//! is not an address ends the walk at the last good hop, so garbage never becomes the client.
//! From a peer that is not a trusted proxy the list names nobody: the peer is the client.
//!
//! The CONNECT event's `X-Forwarded-For` is the list up to the client, with the client last,
//! which is what AWS's edge hands a backend: the client's address, after whatever the client
//! itself sent. `X-Forwarded-Proto` and `X-Forwarded-Port` are taken from a trusted peer only,
//! and only as `http`/`https` and a port number.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use crate::config::{PublicScheme, TrustedProxies};

/// What the forwarding headers of an upgrade, read against the trusted proxies, amount to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Forwarded {
    /// The client's address (IPv4-mapped IPv6 written as IPv4): `identity.sourceIp`.
    pub(crate) client: IpAddr,
    /// The CONNECT event's `X-Forwarded-For`: the received entries before the client, then
    /// the client.
    pub(crate) forwarded_for: String,
    /// The scheme a trusted peer's `X-Forwarded-Proto` names, when it names one.
    pub(crate) proto: Option<PublicScheme>,
    /// The port a trusted peer's `X-Forwarded-Port` names, when it names one.
    pub(crate) port: Option<u16>,
}

/// Reads the forwarding headers of a request that came from `peer` (the TCP peer, or the
/// source a PROXY header named).
pub(crate) fn resolve(
    headers: &[(String, String)],
    peer: IpAddr,
    trusted: &TrustedProxies,
) -> Forwarded {
    let peer = peer.to_canonical();
    let entries: Vec<&str> = list(headers, "X-Forwarded-For").collect();
    let peer_trusted = trusted.contains(peer);
    let mut client = peer;
    // `entries[..before_client]` precede the client in the event's list.
    let mut before_client = entries.len();
    if peer_trusted {
        for (index, entry) in entries.iter().enumerate().rev() {
            let Some(hop) = hop_address(entry) else {
                break;
            };
            client = hop;
            before_client = index;
            if !trusted.contains(hop) {
                break;
            }
        }
    }
    let client_text = crate::ip_text(client);
    let forwarded_for = if before_client == 0 {
        client_text
    } else {
        entries[..before_client]
            .iter()
            .copied()
            .chain([client_text.as_str()])
            .collect::<Vec<&str>>()
            .join(", ")
    };
    let last = |name| peer_trusted.then(|| list(headers, name).last()).flatten();
    Forwarded {
        client,
        forwarded_for,
        proto: last("X-Forwarded-Proto").and_then(PublicScheme::parse),
        port: last("X-Forwarded-Port").and_then(port),
    }
}

/// The comma-separated elements of every `name` header, in order, trimmed, empty ones left
/// out (RFC 9110 §5.6.1).
fn list<'h>(headers: &'h [(String, String)], name: &'h str) -> impl Iterator<Item = &'h str> {
    headers
        .iter()
        .filter(move |(candidate, _)| candidate.eq_ignore_ascii_case(name))
        .flat_map(|(_, value)| value.split(','))
        .map(str::trim)
        .filter(|element| !element.is_empty())
}

/// One `X-Forwarded-For` entry as an address: `192.0.2.1`, `2001:db8::1`, or either with a
/// port (`192.0.2.1:4711`, `[2001:db8::1]:4711`, as some proxies write it), or a bracketed
/// IPv6 address; IPv4-mapped IPv6 is written as IPv4. Anything else (`unknown`, an obfuscated
/// identifier, garbage) is `None`.
fn hop_address(entry: &str) -> Option<IpAddr> {
    let ip = entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|socket| socket.ip()))
        .or_else(|| {
            entry
                .strip_prefix('[')?
                .strip_suffix(']')?
                .parse::<Ipv6Addr>()
                .ok()
                .map(IpAddr::V6)
        })?;
    Some(ip.to_canonical())
}

/// An `X-Forwarded-Port` value: 1 to 65535 in decimal digits.
fn port(text: &str) -> Option<u16> {
    text.bytes()
        .all(|byte| byte.is_ascii_digit())
        .then(|| text.parse::<u16>().ok())
        .flatten()
        .filter(|port| *port > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Cidr;

    fn trusted(blocks: &[&str]) -> TrustedProxies {
        TrustedProxies::new(
            blocks
                .iter()
                .map(|block| Cidr::parse(block).unwrap())
                .collect(),
        )
    }

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect()
    }

    /// Resolves `x_forwarded_for` (one header per element) from `peer` against the proxies
    /// `10.0.0.0/8` and `2001:db8::/32`; expects the client and the event's list.
    #[track_caller]
    fn check(x_forwarded_for: &[&str], peer: &str, client: &str, forwarded_for: &str) {
        let pairs: Vec<(&str, &str)> = x_forwarded_for
            .iter()
            .map(|value| ("X-Forwarded-For", *value))
            .collect();
        let resolved = resolve(
            &headers(&pairs),
            peer.parse().unwrap(),
            &trusted(&["10.0.0.0/8", "2001:db8::/32"]),
        );
        assert_eq!(
            resolved.client.to_string(),
            client,
            "{x_forwarded_for:?} from {peer}"
        );
        assert_eq!(
            resolved.forwarded_for, forwarded_for,
            "{x_forwarded_for:?} from {peer}"
        );
    }

    #[test]
    fn a_client_that_is_not_behind_a_trusted_proxy_is_the_peer() {
        check(&[], "203.0.113.7", "203.0.113.7", "203.0.113.7");
        // A spoofed header from a client is passed on with the client appended, as AWS does.
        check(
            &["198.51.100.1"],
            "203.0.113.7",
            "203.0.113.7",
            "198.51.100.1, 203.0.113.7",
        );
        check(
            &["10.0.0.1"],
            "203.0.113.7",
            "203.0.113.7",
            "10.0.0.1, 203.0.113.7",
        );
        check(
            &["::ffff:203.0.113.7"],
            "::ffff:203.0.113.9",
            "203.0.113.9",
            "::ffff:203.0.113.7, 203.0.113.9",
        );
    }

    #[test]
    fn behind_trusted_proxies_the_client_is_the_rightmost_untrusted_hop() {
        check(
            &["198.51.100.1"],
            "10.0.0.5",
            "198.51.100.1",
            "198.51.100.1",
        );
        // A client that sent its own header through the proxy: the proxy appended the real one.
        check(
            &["6.6.6.6, 198.51.100.1"],
            "10.0.0.5",
            "198.51.100.1",
            "6.6.6.6, 198.51.100.1",
        );
        // Two proxies, one header line each.
        check(
            &["198.51.100.1", "10.1.1.1"],
            "10.0.0.5",
            "198.51.100.1",
            "198.51.100.1",
        );
        check(
            &["198.51.100.1,10.1.1.1 , 10.2.2.2"],
            "::ffff:10.0.0.5",
            "198.51.100.1",
            "198.51.100.1",
        );
        check(
            &["2001:db9::1, 2001:db8::1"],
            "2001:db8::2",
            "2001:db9::1",
            "2001:db9::1",
        );
        // A trusted proxy without the header: it is the client.
        check(&[], "10.0.0.5", "10.0.0.5", "10.0.0.5");
        // Every hop trusted: the leftmost.
        check(&["10.9.9.9, 10.1.1.1"], "10.0.0.5", "10.9.9.9", "10.9.9.9");
    }

    #[test]
    fn entries_may_carry_ports_and_brackets() {
        check(
            &["198.51.100.1:4711"],
            "10.0.0.5",
            "198.51.100.1",
            "198.51.100.1",
        );
        check(
            &["[2001:db9::1]:4711"],
            "10.0.0.5",
            "2001:db9::1",
            "2001:db9::1",
        );
        check(&["[2001:db9::1]"], "10.0.0.5", "2001:db9::1", "2001:db9::1");
        check(
            &["::ffff:198.51.100.1"],
            "10.0.0.5",
            "198.51.100.1",
            "198.51.100.1",
        );
        check(
            &[" , 198.51.100.1,, "],
            "10.0.0.5",
            "198.51.100.1",
            "198.51.100.1",
        );
    }

    #[test]
    fn garbage_stops_the_walk_at_the_last_good_hop() {
        check(&["unknown"], "10.0.0.5", "10.0.0.5", "unknown, 10.0.0.5");
        check(
            &["198.51.100.1, garbage, 10.1.1.1"],
            "10.0.0.5",
            "10.1.1.1",
            "198.51.100.1, garbage, 10.1.1.1",
        );
        check(
            &["198.51.100.1, 1.2.3"],
            "10.0.0.5",
            "10.0.0.5",
            "198.51.100.1, 1.2.3, 10.0.0.5",
        );
        check(
            &["_hidden, 198.51.100.1"],
            "10.0.0.5",
            "198.51.100.1",
            "_hidden, 198.51.100.1",
        );
        check(
            &["198.51.100.1:99999"],
            "10.0.0.5",
            "10.0.0.5",
            "198.51.100.1:99999, 10.0.0.5",
        );
    }

    #[test]
    fn scheme_and_port_are_taken_from_trusted_peers_only() {
        let proxies = trusted(&["10.0.0.0/8"]);
        let sent = headers(&[("x-forwarded-proto", "HTTPS"), ("X-Forwarded-Port", "443")]);
        let from_proxy = resolve(&sent, "10.0.0.5".parse().unwrap(), &proxies);
        assert_eq!(from_proxy.proto, Some(PublicScheme::Https));
        assert_eq!(from_proxy.port, Some(443));
        let from_client = resolve(&sent, "203.0.113.7".parse().unwrap(), &proxies);
        assert_eq!((from_client.proto, from_client.port), (None, None));
        // The rightmost element, the trusted peer's own; nonsense names nothing.
        let listed = headers(&[
            ("X-Forwarded-Proto", "http, https"),
            ("X-Forwarded-Port", "80, 8443"),
        ]);
        let resolved = resolve(&listed, "10.0.0.5".parse().unwrap(), &proxies);
        assert_eq!(
            (resolved.proto, resolved.port),
            (Some(PublicScheme::Https), Some(8443))
        );
        for (proto, port) in [
            ("wss", "0"),
            ("ftp", "65536"),
            ("", "+443"),
            ("https x", "44 3"),
        ] {
            let odd = headers(&[("X-Forwarded-Proto", proto), ("X-Forwarded-Port", port)]);
            let resolved = resolve(&odd, "10.0.0.5".parse().unwrap(), &proxies);
            assert_eq!(
                (resolved.proto, resolved.port),
                (None, None),
                "{proto:?} {port:?}"
            );
        }
    }
}
