//! `gateway.allowed_origins`: the browser origins that may open connections, and how an
//! `Origin` header is matched against them. The check itself (403 before the authorizer and
//! `$connect`) is made by the upgrade in `gateway::connection`.
//!
//! An origin is `scheme://host[:port]` (RFC 6454). Scheme and host compare case-insensitively,
//! and a scheme's default port (80 for `http`/`ws`, 443 for `https`/`wss`) is the same as no
//! port, since browsers leave it out. `*.example.com` as the host allows every subdomain of
//! `example.com`, at any depth, but not `example.com` itself.

use serde_spanned::Spanned;

use super::validate::Problems;

/// One entry of `gateway.allowed_origins`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedOrigin {
    /// The entry as written in the config.
    text: String,
    /// The scheme, lower-cased.
    scheme: String,
    /// What the host must be.
    host: HostPattern,
    /// The port, `None` for the scheme's default port.
    port: Option<u16>,
}

/// The host part of an [`AllowedOrigin`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    /// This host, lower-cased.
    Exact(String),
    /// Any host ending in `.{suffix}` (the suffix lower-cased, without the leading dot).
    Subdomains(String),
}

/// An origin split into its parts, lower-cased, the default port removed.
struct Parts<'a> {
    scheme: String,
    host: &'a str,
    port: Option<u16>,
}

impl AllowedOrigin {
    /// Reads an allowed origin: `scheme://host[:port]`, where the host may start with `*.`;
    /// the error is a message for the user.
    pub fn parse(text: &str) -> Result<AllowedOrigin, String> {
        let parts = split(text)?;
        let host = match parts.host.strip_prefix("*.") {
            Some(suffix) if !suffix.is_empty() && !suffix.contains('*') => {
                HostPattern::Subdomains(suffix.to_ascii_lowercase())
            }
            _ if parts.host.contains('*') => {
                return Err(format!(
                    "origin {text:?}: a wildcard is only allowed as the first label of the \
                     host, as in \"https://*.example.com\""
                ));
            }
            _ => HostPattern::Exact(parts.host.to_ascii_lowercase()),
        };
        Ok(AllowedOrigin {
            text: text.to_owned(),
            scheme: parts.scheme,
            host,
            port: parts.port,
        })
    }

    /// Whether the value of an `Origin` header is this origin. Values that are not an origin
    /// (`null`, a URL with a path) never match.
    pub fn matches(&self, origin: &str) -> bool {
        let Ok(parts) = split(origin.trim()) else {
            return false;
        };
        if parts.host.contains('*') || parts.scheme != self.scheme || parts.port != self.port {
            return false;
        }
        let host = parts.host.to_ascii_lowercase();
        match &self.host {
            HostPattern::Exact(exact) => host == *exact,
            HostPattern::Subdomains(suffix) => host
                .strip_suffix(suffix.as_str())
                .and_then(|prefix| prefix.strip_suffix('.'))
                .is_some_and(|label| !label.is_empty()),
        }
    }

    /// The origin as written in the config.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// Validates `gateway.allowed_origins`, recording problems; invalid entries are left out.
pub(super) fn validate_allowed_origins(
    raw: &[Spanned<String>],
    problems: &mut Problems<'_>,
) -> Vec<AllowedOrigin> {
    let mut origins = Vec::new();
    for (index, entry) in raw.iter().enumerate() {
        match AllowedOrigin::parse(entry.get_ref()) {
            Ok(origin) => origins.push(origin),
            Err(message) => problems.add(
                format!("gateway.allowed_origins[{index}]"),
                entry.span(),
                message,
            ),
        }
    }
    origins
}

/// Splits `scheme://host[:port]`, checking each part.
fn split(text: &str) -> Result<Parts<'_>, String> {
    let expected = "(expected scheme://host[:port], e.g. \"https://app.example.com\")";
    let Some((scheme, authority)) = text.split_once("://") else {
        return Err(format!("{text:?} is not an origin {expected}"));
    };
    let scheme_valid = scheme.starts_with(|first: char| first.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !scheme_valid {
        return Err(format!("origin {text:?} has no valid scheme {expected}"));
    }
    if authority.contains(['/', '?', '#', '@']) {
        return Err(format!(
            "origin {text:?} has a path, query or user name; an origin is only \
             scheme://host[:port] (no trailing '/')"
        ));
    }
    let (host, port) = match authority.strip_prefix('[') {
        // An IPv6 literal: `[::1]` or `[::1]:8080`.
        Some(rest) => {
            let (address, after) = rest
                .split_once(']')
                .ok_or_else(|| format!("origin {text:?} has an unclosed '['"))?;
            let host = &authority[..address.len() + 2];
            match after {
                "" => (host, None),
                _ => match after.strip_prefix(':') {
                    Some(port) => (host, Some(port)),
                    None => return Err(format!("origin {text:?} is not an origin {expected}")),
                },
            }
        }
        None => match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    let host_valid = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '*' | '[' | ']' | ':'));
    if !host_valid {
        return Err(format!("origin {text:?} has no valid host {expected}"));
    }
    let port = match port {
        None => None,
        Some(port) => Some(
            port.parse::<u16>()
                .ok()
                .filter(|port| *port != 0)
                .ok_or_else(|| format!("origin {text:?} has an invalid port {port:?}"))?,
        ),
    };
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
    };
    Ok(Parts {
        port: port.filter(|port| Some(*port) != default_port),
        scheme,
        host,
    })
}

#[cfg(test)]
mod tests {
    use super::AllowedOrigin;

    /// Checks `origin` against the allowed entry `allowed`.
    fn check(allowed: &str, origin: &str, expected: bool) {
        let allowed_origin = AllowedOrigin::parse(allowed).unwrap();
        assert_eq!(
            allowed_origin.matches(origin),
            expected,
            "{allowed} vs {origin}"
        );
    }

    #[test]
    fn exact_origins_match_scheme_host_and_port() {
        check("https://app.example.com", "https://app.example.com", true);
        check("https://app.example.com", "HTTPS://App.Example.COM", true);
        check(
            "https://app.example.com",
            "https://app.example.com:443",
            true,
        );
        check(
            "https://app.example.com:443",
            "https://app.example.com",
            true,
        );
        check("https://app.example.com", "http://app.example.com", false);
        check(
            "https://app.example.com",
            "https://app.example.com:8443",
            false,
        );
        check("https://app.example.com", "https://evil.com", false);
        check(
            "https://app.example.com",
            "https://app.example.com.evil.com",
            false,
        );
        check("https://app.example.com", "https://app.example.com/", false);
        check("https://app.example.com", "null", false);
        check("https://app.example.com", "", false);
        check("http://localhost:3000", "http://localhost:3000", true);
        check("http://localhost:3000", "http://localhost:3001", false);
        check("http://[::1]:3000", "http://[::1]:3000", true);
        check("http://[::1]:3000", "http://[::1]", false);
    }

    #[test]
    fn a_wildcard_allows_subdomains_only() {
        check("https://*.example.com", "https://app.example.com", true);
        check("https://*.example.com", "https://a.b.example.com", true);
        check("https://*.example.com", "https://example.com", false);
        check("https://*.example.com", "https://evilexample.com", false);
        check(
            "https://*.example.com",
            "https://app.example.com:8443",
            false,
        );
        check("https://*.example.com", "http://app.example.com", false);
        check(
            "https://*.example.com:8443",
            "https://app.example.com:8443",
            true,
        );
        check("https://*.example.com", "https://*.example.com", false);
    }

    #[test]
    fn entries_that_are_not_origins_are_rejected() {
        for bad in [
            "app.example.com",
            "https://",
            "https://app.example.com/",
            "https://app.example.com/path",
            "https://user@app.example.com",
            "https://app.example.com:0",
            "https://app.example.com:99999",
            "https://app.*.com",
            "https://*",
            "*",
            "1http://x",
        ] {
            assert!(AllowedOrigin::parse(bad).is_err(), "{bad} was accepted");
        }
    }
}
