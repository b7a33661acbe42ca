//! Address ranges in CIDR notation, as the config lists the peers and networks it trusts
//! (`gateway.trusted_proxies`, `management.trusted_networks`).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

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

/// Whether any range of `ranges` holds `ip`.
pub(crate) fn any_contains(ranges: &[Cidr], ip: IpAddr) -> bool {
    ranges.iter().any(|range| range.contains(ip))
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
}
