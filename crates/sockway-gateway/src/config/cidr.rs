//! Address ranges in CIDR notation (`10.0.0.0/16`, `fd00::/8`), as the config lists the networks
//! it trusts.

use std::fmt;
use std::net::IpAddr;

/// One address range: a network address and a prefix length. A bare address is the range of
/// that address alone (`/32` or `/128`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    /// The network address, with every bit past the prefix zero.
    network: IpAddr,
    /// How many leading bits a member shares with `network`.
    prefix: u8,
}

impl Cidr {
    /// Reads `address/prefix` or a bare address. The address must be the network's own (no
    /// bits set past the prefix): `10.0.0.1/16` is refused with the range it probably means,
    /// since a range written that way is usually a typo. The error is a message for the user.
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = address.parse().map_err(|_| {
            format!(
                "{text:?} is not an address range (expected CIDR notation, e.g. \
                 \"10.0.0.0/16\" or \"fd00::/8\", or a single address)"
            )
        })?;
        let max = max_prefix(network);
        let prefix = match prefix {
            None => max,
            Some(digits) => digits
                .parse::<u8>()
                .ok()
                .filter(|prefix| *prefix <= max && digits.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| {
                    format!("{text:?} has an invalid prefix length (expected 0 to {max})")
                })?,
        };
        let range = Cidr {
            network: masked(network, prefix),
            prefix,
        };
        if range.network != network {
            return Err(format!(
                "{text:?} has bits set past its prefix length; the range is {range}"
            ));
        }
        Ok(range)
    }

    /// Whether `ip` is in the range. An IPv4 address written as IPv4-mapped IPv6
    /// (`::ffff:10.0.0.1`, how a dual-stack socket reports IPv4 peers) is compared as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.network.is_ipv4() && masked(ip, self.prefix) == self.network
    }

    /// Whether the range holds every address of its family (`0.0.0.0/0`, `::/0`).
    pub fn is_everything(&self) -> bool {
        self.prefix == 0
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}/{}", self.network, self.prefix)
    }
}

/// Whether any range of `ranges` holds `ip`.
pub(crate) fn any_contains(ranges: &[Cidr], ip: IpAddr) -> bool {
    ranges.iter().any(|range| range.contains(ip))
}

fn max_prefix(ip: IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// `ip` with every bit past the first `prefix` cleared.
fn masked(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4((u32::from(v4) & mask).into())
        }
        IpAddr::V6(v6) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6((u128::from(v6) & mask).into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn ipv4_ranges_hold_their_addresses_only() {
        let range = Cidr::parse("10.0.0.0/16").unwrap();
        assert!(range.contains(ip("10.0.0.1")));
        assert!(range.contains(ip("10.0.255.255")));
        assert!(!range.contains(ip("10.1.0.0")));
        assert!(!range.contains(ip("::1")));
        assert_eq!(range.to_string(), "10.0.0.0/16");
    }

    #[test]
    fn ipv4_mapped_peers_are_compared_as_ipv4() {
        let range = Cidr::parse("192.0.2.0/24").unwrap();
        assert!(range.contains(ip("::ffff:192.0.2.7")));
        assert!(
            !Cidr::parse("::/0")
                .unwrap()
                .contains(ip("::ffff:192.0.2.7"))
        );
    }

    #[test]
    fn ipv6_ranges_and_bare_addresses() {
        let range = Cidr::parse("fd00::/8").unwrap();
        assert!(range.contains(ip("fd12:3456::1")));
        assert!(!range.contains(ip("fe80::1")));
        let single = Cidr::parse("2001:db8::5").unwrap();
        assert_eq!(single.to_string(), "2001:db8::5/128");
        assert!(single.contains(ip("2001:db8::5")));
        assert!(!single.contains(ip("2001:db8::6")));
        let single = Cidr::parse("127.0.0.1").unwrap();
        assert_eq!(single.to_string(), "127.0.0.1/32");
    }

    #[test]
    fn zero_prefix_holds_the_whole_family() {
        let everything = Cidr::parse("0.0.0.0/0").unwrap();
        assert!(everything.is_everything());
        assert!(everything.contains(ip("203.0.113.9")));
        assert!(!everything.contains(ip("2001:db8::1")));
        assert!(!Cidr::parse("10.0.0.0/8").unwrap().is_everything());
    }

    #[test]
    fn bad_ranges_say_what_is_wrong() {
        let error = Cidr::parse("10.0.0.1/16").unwrap_err();
        assert!(error.contains("10.0.0.0/16"), "{error}");
        for text in [
            "10.0.0.0/33",
            "10.0.0.0/-1",
            "10.0.0.0/+8",
            "10.0.0.0/",
            "::/129",
        ] {
            let error = Cidr::parse(text).unwrap_err();
            assert!(error.contains("prefix length"), "{text}: {error}");
        }
        for text in ["", "example.com/8", "10.0.0/8", "10.0.0.0.0"] {
            let error = Cidr::parse(text).unwrap_err();
            assert!(error.contains("CIDR notation"), "{text}: {error}");
        }
    }
}
