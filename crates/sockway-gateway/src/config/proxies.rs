//! What the gateway believes about the proxies in front of it: `gateway.trusted_proxies`,
//! `gateway.proxy_protocol`, `gateway.public_scheme` and `gateway.public_port`.
//!
//! A proxy or load balancer in front hides the client: every connection comes from the
//! proxy's address. The addresses in `trusted_proxies` (CIDR blocks) are the only ones whose
//! word about the client is taken, in `X-Forwarded-For` or in a PROXY protocol header; any
//! other peer is the client itself. How the client is found from those is decided per
//! connection by `gateway::proxy`; this module only reads and checks the keys, and lists the
//! set-ups that are valid but risky ([`super::Config::warnings`]).

use std::net::IpAddr;

use serde_spanned::Spanned;

use super::validate::Problems;
use super::{Cidr, ConfigWarning, GatewayConfig};

/// `gateway.trusted_proxies`: the peers whose `X-Forwarded-*` headers and PROXY protocol
/// headers are believed. Empty (the default): none, every peer is the client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    blocks: Vec<Cidr>,
}

/// The scheme clients use to reach the API (`gateway.public_scheme`), which the CONNECT
/// event's `X-Forwarded-Proto` header names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublicScheme {
    /// `http`: clients connect with `ws://`.
    Http,
    /// `https`: clients connect with `wss://` (AWS always).
    Https,
}

impl TrustedProxies {
    /// Trusts the addresses of `blocks` (kept in this order).
    pub fn new(blocks: Vec<Cidr>) -> TrustedProxies {
        TrustedProxies { blocks }
    }

    /// Whether `ip` is a trusted proxy.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.blocks.iter().any(|block| block.contains(ip))
    }

    /// Whether no proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// The blocks, in file order.
    pub fn blocks(&self) -> &[Cidr] {
        &self.blocks
    }
}

impl PublicScheme {
    /// `"http"` or `"https"`, as `X-Forwarded-Proto` carries it.
    pub fn as_str(self) -> &'static str {
        match self {
            PublicScheme::Http => "http",
            PublicScheme::Https => "https",
        }
    }

    /// The scheme's default port: 80 or 443.
    pub fn default_port(self) -> u16 {
        match self {
            PublicScheme::Http => 80,
            PublicScheme::Https => 443,
        }
    }

    /// Reads `http` or `https`, in any case; anything else is `None`.
    pub fn parse(text: &str) -> Option<PublicScheme> {
        if text.eq_ignore_ascii_case("https") {
            Some(PublicScheme::Https)
        } else if text.eq_ignore_ascii_case("http") {
            Some(PublicScheme::Http)
        } else {
            None
        }
    }
}

/// The proxy keys of `[gateway]`, validated; each becomes the `GatewayConfig` field of the
/// same name.
pub(super) struct ProxySettings {
    pub(super) trusted_proxies: TrustedProxies,
    pub(super) proxy_protocol: bool,
    pub(super) public_scheme: Option<PublicScheme>,
    pub(super) public_port: Option<u16>,
}

/// Validates `gateway.trusted_proxies`, `gateway.proxy_protocol`, `gateway.public_scheme` and
/// `gateway.public_port`. PROXY protocol headers are believed only from trusted proxies, so
/// turning it on without any is refused: every connection would be closed.
pub(super) fn validate_proxies(
    trusted_proxies: Option<&Vec<Spanned<String>>>,
    proxy_protocol: Option<&Spanned<bool>>,
    public_scheme: Option<&Spanned<String>>,
    public_port: Option<&Spanned<i64>>,
    problems: &mut Problems<'_>,
) -> ProxySettings {
    let mut blocks = Vec::new();
    for (index, entry) in trusted_proxies.into_iter().flatten().enumerate() {
        match Cidr::parse(entry.get_ref().trim()) {
            Ok(block) => blocks.push(block),
            Err(message) => problems.add(
                format!("gateway.trusted_proxies[{index}]"),
                entry.span(),
                message,
            ),
        }
    }
    let proxy_protocol_on = proxy_protocol.is_some_and(|flag| *flag.get_ref());
    let no_proxies = trusted_proxies.is_none_or(Vec::is_empty);
    if let Some(flag) = proxy_protocol.filter(|_| proxy_protocol_on && no_proxies) {
        problems.add(
            "gateway.proxy_protocol".to_owned(),
            flag.span(),
            "needs gateway.trusted_proxies, the addresses of the load balancers that send \
             PROXY headers: a connection from any other address is closed"
                .to_owned(),
        );
    }
    let public_scheme = public_scheme.and_then(|raw| {
        let scheme = PublicScheme::parse(raw.get_ref());
        if scheme.is_none() {
            problems.add(
                "gateway.public_scheme".to_owned(),
                raw.span(),
                format!(
                    "{:?} is not \"https\" or \"http\" (clients using wss:// reach the API \
                     over https)",
                    raw.get_ref()
                ),
            );
        }
        scheme
    });
    let public_port = problems
        .integer("gateway.public_port", public_port, 1..=65535, "")
        .map(|port| u16::try_from(port).expect("the port was checked to fit"));
    ProxySettings {
        trusted_proxies: TrustedProxies::new(blocks),
        proxy_protocol: proxy_protocol_on,
        public_scheme,
        public_port,
    }
}

/// The risky but valid proxy settings of `gateway`: a trusted block that holds every address
/// lets any client choose the address the gateway sees for it.
pub(super) fn proxy_warnings(gateway: &GatewayConfig) -> Vec<ConfigWarning> {
    gateway
        .trusted_proxies
        .blocks()
        .iter()
        .enumerate()
        .filter(|(_, block)| block.is_everything())
        .map(|(index, block)| ConfigWarning {
            key_path: format!("gateway.trusted_proxies[{index}]"),
            message: format!(
                "{block} trusts every address: any client can choose its own \
                 identity.sourceIp with X-Forwarded-For{}; list only the proxies' addresses",
                if gateway.proxy_protocol {
                    " or a PROXY header"
                } else {
                    ""
                }
            ),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trusted_proxies_hold_any_of_their_blocks() {
        let proxies = TrustedProxies::new(vec![
            Cidr::parse("10.0.0.0/8").unwrap(),
            Cidr::parse("2001:db8::/32").unwrap(),
        ]);
        assert!(proxies.contains("10.1.1.1".parse().unwrap()));
        assert!(proxies.contains("::ffff:10.1.1.1".parse().unwrap()));
        assert!(proxies.contains("2001:db8::5".parse().unwrap()));
        assert!(!proxies.contains("192.0.2.1".parse().unwrap()));
        assert!(!TrustedProxies::default().contains("10.1.1.1".parse().unwrap()));
    }

    #[test]
    fn public_schemes_read_in_any_case() {
        assert_eq!(PublicScheme::parse("HTTPS"), Some(PublicScheme::Https));
        assert_eq!(PublicScheme::parse("http"), Some(PublicScheme::Http));
        assert_eq!(PublicScheme::parse("wss"), None);
        assert_eq!(PublicScheme::Https.default_port(), 443);
        assert_eq!(PublicScheme::Http.as_str(), "http");
    }
}
