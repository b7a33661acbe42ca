//! What the gateway believes about the proxies in front of it: `gateway.trusted_proxies`,
//! `gateway.proxy_protocol`, `gateway.public_scheme` and `gateway.public_port`.
//!
//! A proxy or load balancer in front hides the client: every connection comes from the
//! proxy's address. The addresses in `trusted_proxies` (CIDR blocks) are the only ones whose
//! word about the client is taken, in `X-Forwarded-For` or in a PROXY protocol header; any
//! other peer is the client itself. How the client is found from those is decided per
//! connection by `gateway::proxy`; this module only reads and checks the keys, and lists the
//! set-ups that are valid but risky ([`super::Config::warnings`]).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde_spanned::Spanned;

use super::validate::Problems;
use super::{ConfigWarning, GatewayConfig};

/// One CIDR block, `address/prefix-length`, e.g. `10.0.0.0/8` or `2001:db8::/32`.
///
/// An IPv4 block matches IPv4 addresses, IPv4-mapped IPv6 addresses (`::ffff:10.1.2.3`, as a
/// dual-stack socket reports IPv4 peers) included; an IPv6 block matches IPv6 addresses. A block
/// written as IPv4-mapped IPv6 (`::ffff:10.0.0.0/104`) is read as the IPv4 block it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// The network address, its host bits zero.
    network: IpAddr,
    /// Leading bits that must match: 0 to 32 for IPv4, 0 to 128 for IPv6.
    prefix_length: u8,
}

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

impl Cidr {
    /// Reads `address/prefix-length`, or a bare address (a block of one address); the error
    /// is a message for the user. Host bits must be zero (`10.0.0.1/8` is refused, naming
    /// `10.0.0.0/8`), so a typo cannot trust more or less than was meant unnoticed.
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let expected = "expected an IP address or a CIDR block such as \"10.0.0.0/8\" or \
                        \"2001:db8::/32\"";
        let (address, prefix_length) = match text.split_once('/') {
            Some((address, length)) => {
                let length = length
                    .parse::<u32>()
                    .ok()
                    .filter(|_| length.bytes().all(|byte| byte.is_ascii_digit()))
                    .ok_or_else(|| format!("{text:?}: prefix length {length:?} is not a number"))?;
                (address, Some(length))
            }
            None => (text, None),
        };
        let address: IpAddr = address
            .parse()
            .map_err(|_| format!("{text:?} is not an address ({expected})"))?;
        let max = match address {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        let prefix_length = prefix_length.unwrap_or(max);
        if prefix_length > max {
            return Err(format!(
                "{text:?}: the prefix length of an {} block is at most {max}",
                if max == 32 { "IPv4" } else { "IPv6" }
            ));
        }
        let block = Cidr {
            network: address,
            prefix_length: u8::try_from(prefix_length).expect("at most 128"),
        }
        .mapped_to_v4();
        let network = block.network_of(block.network);
        if network != block.network {
            return Err(format!(
                "{text:?} has bits set after the prefix; the block is {}",
                Cidr { network, ..block }
            ));
        }
        Ok(block)
    }

    /// Whether `ip` is inside this block (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        let same_family = matches!(
            (ip, self.network),
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_))
        );
        same_family && self.network_of(ip) == self.network
    }

    /// Whether the block holds every address of its family (`0.0.0.0/0`, `::/0`).
    pub fn is_everything(&self) -> bool {
        self.prefix_length == 0
    }

    /// `ip` with the bits after this block's prefix zeroed (`ip` of the block's family).
    fn network_of(&self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(v4) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix_length))
                    .unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask))
            }
            IpAddr::V6(v6) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix_length))
                    .unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
            }
        }
    }

    /// An IPv4-mapped IPv6 block (`::ffff:a.b.c.d/96+n`) as the IPv4 block `a.b.c.d/n`.
    fn mapped_to_v4(self) -> Cidr {
        match self.network {
            IpAddr::V6(v6) if self.prefix_length >= 96 => match v6.to_ipv4_mapped() {
                Some(v4) => Cidr {
                    network: IpAddr::V4(v4),
                    prefix_length: self.prefix_length - 96,
                },
                None => self,
            },
            _ => self,
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}/{}", self.network, self.prefix_length)
    }
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

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    /// Parses `block` and checks which of `inside` and `outside` it contains.
    #[track_caller]
    fn check(block: &str, shown: &str, inside: &[&str], outside: &[&str]) {
        let parsed = Cidr::parse(block).unwrap_or_else(|error| panic!("{block}: {error}"));
        assert_eq!(parsed.to_string(), shown, "{block}");
        for address in inside {
            assert!(
                parsed.contains(ip(address)),
                "{block} should hold {address}"
            );
        }
        for address in outside {
            assert!(
                !parsed.contains(ip(address)),
                "{block} should not hold {address}"
            );
        }
    }

    #[test]
    fn ipv4_blocks_hold_their_addresses_mapped_ones_included() {
        check(
            "10.0.0.0/8",
            "10.0.0.0/8",
            &["10.0.0.0", "10.255.255.255", "::ffff:10.1.2.3"],
            &["11.0.0.0", "9.255.255.255", "::a00:1", "2001:db8::1"],
        );
        check(
            "192.168.1.7",
            "192.168.1.7/32",
            &["192.168.1.7", "::ffff:192.168.1.7"],
            &["192.168.1.8"],
        );
        check(
            "172.16.0.0/12",
            "172.16.0.0/12",
            &["172.31.255.1"],
            &["172.32.0.1"],
        );
        check(
            "0.0.0.0/0",
            "0.0.0.0/0",
            &["1.2.3.4", "::ffff:8.8.8.8"],
            &["::1"],
        );
    }

    #[test]
    fn ipv6_blocks_hold_their_addresses() {
        check(
            "2001:db8::/32",
            "2001:db8::/32",
            &["2001:db8::1", "2001:db8:ffff::"],
            &["2001:db9::", "10.0.0.1"],
        );
        check("::1", "::1/128", &["::1"], &["::2", "127.0.0.1"]);
        check("::/0", "::/0", &["2001:db8::1", "::1"], &["10.0.0.1"]);
        check(
            "fd00::/8",
            "fd00::/8",
            &["fdff:1:2::3"],
            &["fe80::1", "::ffff:10.0.0.1"],
        );
    }

    #[test]
    fn ipv4_mapped_blocks_are_read_as_ipv4() {
        check(
            "::ffff:10.0.0.0/104",
            "10.0.0.0/8",
            &["10.9.8.7", "::ffff:10.9.8.7"],
            &["11.0.0.1"],
        );
        check(
            "::ffff:127.0.0.2",
            "127.0.0.2/32",
            &["127.0.0.2"],
            &["127.0.0.1"],
        );
    }

    #[test]
    fn malformed_blocks_say_what_is_wrong() {
        for (text, fragment) in [
            ("10.0.0.1/8", "the block is 10.0.0.0/8"),
            ("2001:db8::1/32", "the block is 2001:db8::/32"),
            ("10.0.0.0/33", "at most 32"),
            ("::/129", "at most 128"),
            ("10.0.0.0/300", "at most 32"),
            ("10.0.0.0/", "is not a number"),
            ("10.0.0.0/+8", "is not a number"),
            ("10.0.0.0/8/8", "is not a number"),
            ("example.com", "is not an address"),
            ("10.0.0", "is not an address"),
            ("", "is not an address"),
            ("01.2.3.4", "is not an address"),
        ] {
            let error = Cidr::parse(text).unwrap_err();
            assert!(error.contains(fragment), "{text:?}: {error}");
        }
    }

    #[test]
    fn trusted_proxies_hold_any_of_their_blocks() {
        let proxies = TrustedProxies::new(vec![
            Cidr::parse("10.0.0.0/8").unwrap(),
            Cidr::parse("2001:db8::/32").unwrap(),
        ]);
        assert!(proxies.contains(ip("10.1.1.1")));
        assert!(proxies.contains(ip("::ffff:10.1.1.1")));
        assert!(proxies.contains(ip("2001:db8::5")));
        assert!(!proxies.contains(ip("192.0.2.1")));
        assert!(!TrustedProxies::default().contains(ip("10.1.1.1")));
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
