//! Hosts: parsing `:authority` / `Host` values strictly, and matching them
//! against configured exact names, `*.suffix` wildcards and a catch-all.

use crate::config::ConfigError;
use std::collections::HashMap;

/// A syntactically valid authority (`host[:port]`), no userinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authority {
    /// Lower-case host; IPv6 literals keep their brackets and are written in
    /// their canonical form (`[0:0:0:0:0:0:0:1]` becomes `[::1]`); a single
    /// trailing dot of a fully qualified name is removed.
    pub host: String,
    pub port: Option<u16>,
}

/// Why an authority was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthorityError {
    Empty,
    TooLong,
    /// Userinfo (`user@host`) is never accepted.
    UserInfo,
    BadCharacter,
    BadIpv6,
    BadPort,
    BadLabel,
}

/// Longest host name we accept (DNS limit; IPv6 literals are shorter).
pub const MAX_HOST_LEN: usize = 253;

/// Parses an authority strictly: `reg-name`, IPv4 or bracketed IPv6, then an
/// optional `:port` (1–65535). Anything else (userinfo, spaces, control
/// characters, non-ASCII, empty labels, labels that start or end with `-`,
/// an IPv6 literal that is not an address, bad ports) is an error.
pub fn parse_authority(raw: &str) -> Result<Authority, AuthorityError> {
    if raw.is_empty() {
        return Err(AuthorityError::Empty);
    }
    if raw.len() > MAX_HOST_LEN + 8 {
        return Err(AuthorityError::TooLong);
    }
    if raw.contains('@') {
        return Err(AuthorityError::UserInfo);
    }
    let (host_part, port_part) = if let Some(rest) = raw.strip_prefix('[') {
        let end = rest.find(']').ok_or(AuthorityError::BadIpv6)?;
        let (inside, after) = rest.split_at(end);
        let after = after.get(1..).unwrap_or_default();
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or(AuthorityError::BadPort)?),
        };
        (canonical_ipv6(inside)?, port)
    } else {
        let (h, p) = match raw.rfind(':') {
            Some(i) => (
                raw.get(..i).unwrap_or_default(),
                Some(raw.get(i + 1..).unwrap_or_default()),
            ),
            None => (raw, None),
        };
        let h = h.strip_suffix('.').unwrap_or(h);
        if h.is_empty() {
            return Err(AuthorityError::Empty);
        }
        if h.len() > MAX_HOST_LEN {
            return Err(AuthorityError::TooLong);
        }
        if !h
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
        {
            return Err(AuthorityError::BadCharacter);
        }
        if h.split('.').any(|label| {
            label.is_empty() || label.len() > 63 || label.starts_with('-') || label.ends_with('-')
        }) {
            return Err(AuthorityError::BadLabel);
        }
        (h.to_ascii_lowercase(), p)
    };
    let port = match port_part {
        None => None,
        Some(p) => {
            if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(AuthorityError::BadPort);
            }
            match p.parse::<u16>() {
                Ok(0) | Err(_) => return Err(AuthorityError::BadPort),
                Ok(n) => Some(n),
            }
        }
    };
    Ok(Authority {
        host: host_part,
        port,
    })
}

/// `[inside]` in the canonical text form of RFC 5952 (lower case, leading
/// zeros dropped, the longest run of zero groups written `::`), so that
/// `[0:0:0:0:0:0:0:1]`, `[::0001]` and `[::1]` are one host. Zone ids and
/// IPvFuture are refused.
fn canonical_ipv6(inside: &str) -> Result<String, AuthorityError> {
    if !inside.contains(':')
        || !inside
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
    {
        return Err(AuthorityError::BadIpv6);
    }
    let addr: std::net::Ipv6Addr = inside.parse().map_err(|_| AuthorityError::BadIpv6)?;
    Ok(format!("[{addr}]"))
}

/// The host of an authority, normalized for matching, or `None` when the
/// authority is not valid.
pub fn normalize_host(raw: &str) -> Option<String> {
    parse_authority(raw).ok().map(|a| a.host)
}

/// One configured host pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// An exact host name (lower-case).
    Exact(String),
    /// `*.suffix`: any host that ends with `.suffix` (one or more labels in
    /// front); the suffix itself is stored with its leading dot.
    Wildcard(String),
    /// `*`: every host.
    Any,
}

impl HostPattern {
    /// Parses `example.com`, `*.example.com` or `*`. Case is folded. A `*`
    /// anywhere else (`a.*.com`, `foo*.com`), a port, or an invalid name is
    /// an error naming the problem.
    pub fn parse(pattern: &str) -> Result<HostPattern, String> {
        let p = pattern.trim().to_ascii_lowercase();
        if p == "*" {
            return Ok(HostPattern::Any);
        }
        let (is_wild, name) = match p.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, p.as_str()),
        };
        if name.contains('*') {
            return Err(format!(
                "invalid host pattern `{pattern}`: `*` is only allowed as a whole first label (`*.example.com`) or alone (`*`)"
            ));
        }
        if name.contains(':') && !name.starts_with('[') {
            return Err(format!(
                "invalid host pattern `{pattern}`: must not carry a port"
            ));
        }
        match parse_authority(name) {
            // An IPv6 literal is stored in its canonical form.
            Ok(a)
                if a.port.is_none()
                    && (name.starts_with('[')
                        || a.host == name.strip_suffix('.').unwrap_or(name)) =>
            {
                if is_wild {
                    Ok(HostPattern::Wildcard(format!(".{}", a.host)))
                } else {
                    Ok(HostPattern::Exact(a.host))
                }
            }
            _ => Err(format!(
                "invalid host pattern `{pattern}`: not a valid host name"
            )),
        }
    }

    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(h) => h == host,
            HostPattern::Wildcard(suffix) => {
                host.len() > suffix.len() && host.ends_with(suffix.as_str())
            }
            HostPattern::Any => true,
        }
    }
}

/// Maps host patterns to values with a fixed precedence that does not depend
/// on configuration order: an exact name beats any wildcard, a longer
/// wildcard suffix beats a shorter one, and the catch-all `*` comes last.
#[derive(Debug, Clone)]
pub struct HostTable<T> {
    exact: HashMap<String, T>,
    /// Sorted by suffix length, longest first.
    wildcards: Vec<(String, T)>,
    any: Option<T>,
}

impl<T> Default for HostTable<T> {
    fn default() -> Self {
        HostTable {
            exact: HashMap::new(),
            wildcards: Vec::new(),
            any: None,
        }
    }
}

impl<T> HostTable<T> {
    /// Builds a table from `(pattern, value)` pairs. `field` names the config
    /// list for error messages (e.g. `hosts`); errors name `field[i]`.
    pub fn build(
        field: &str,
        entries: impl IntoIterator<Item = (String, T)>,
    ) -> Result<HostTable<T>, ConfigError> {
        let mut table = HostTable::default();
        for (i, (pattern, value)) in entries.into_iter().enumerate() {
            let at = format!("{field}[{i}]");
            let parsed = HostPattern::parse(&pattern).map_err(|r| ConfigError::new(&at, r))?;
            let dup = || ConfigError::new(&at, format!("duplicate host `{pattern}`"));
            match parsed {
                HostPattern::Exact(h) => {
                    if table.exact.contains_key(&h) {
                        return Err(dup());
                    }
                    table.exact.insert(h, value);
                }
                HostPattern::Wildcard(s) => {
                    if table.wildcards.iter().any(|(w, _)| *w == s) {
                        return Err(dup());
                    }
                    table.wildcards.push((s, value));
                }
                HostPattern::Any => {
                    if table.any.is_some() {
                        return Err(dup());
                    }
                    table.any = Some(value);
                }
            }
        }
        table
            .wildcards
            .sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        Ok(table)
    }

    /// Looks up a normalized host (see [`normalize_host`]).
    pub fn lookup(&self, host: &str) -> Option<&T> {
        if let Some(v) = self.exact.get(host) {
            return Some(v);
        }
        for (suffix, v) in &self.wildcards {
            if host.len() > suffix.len() && host.ends_with(suffix.as_str()) {
                return Some(v);
            }
        }
        self.any.as_ref()
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.wildcards.is_empty() && self.any.is_none()
    }

    pub fn len(&self) -> usize {
        self.exact.len() + self.wildcards.len() + usize::from(self.any.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn authorities() {
        let a = parse_authority("Example.COM:8080").unwrap();
        assert_eq!(a.host, "example.com");
        assert_eq!(a.port, Some(8080));
        assert_eq!(parse_authority("example.com.").unwrap().host, "example.com");
        let v6 = parse_authority("[::1]:8443").unwrap();
        assert_eq!(v6.host, "[::1]");
        assert_eq!(v6.port, Some(8443));
        assert_eq!(
            parse_authority("[2001:DB8::1]").unwrap().host,
            "[2001:db8::1]"
        );
        assert_eq!(parse_authority("10.0.0.1:80").unwrap().host, "10.0.0.1");
        assert_eq!(
            parse_authority("a-b.x--y.com").unwrap().host,
            "a-b.x--y.com"
        );
    }

    #[test]
    fn ipv6_literals_are_canonical() {
        for (raw, want) in [
            ("[0:0:0:0:0:0:0:1]", "[::1]"),
            ("[::0001]:8080", "[::1]"),
            ("[0000::1]", "[::1]"),
            ("[2001:DB8:0:0:0:0:0:1]", "[2001:db8::1]"),
            ("[2001:db8:0:0:1:0:0:1]", "[2001:db8::1:0:0:1]"),
            ("[2001:0db8::0001:0:0:1]", "[2001:db8::1:0:0:1]"),
            ("[::ffff:10.0.0.1]", "[::ffff:10.0.0.1]"),
            ("[::]", "[::]"),
        ] {
            assert_eq!(parse_authority(raw).unwrap().host, want, "{raw}");
        }
        let t = HostTable::build("hosts", vec![("[0:0:0:0:0:0:0:1]".to_string(), 1)]).unwrap();
        assert_eq!(t.lookup("[::1]"), Some(&1));
        let e = HostTable::build(
            "hosts",
            vec![("[::1]".to_string(), 1), ("[0::1]".to_string(), 2)],
        )
        .unwrap_err();
        assert_eq!(e.field, "hosts[1]");
        assert_eq!(
            HostPattern::parse("[0:0:0:0:0:0:0:1]"),
            Ok(HostPattern::Exact("[::1]".into()))
        );
        assert!(HostPattern::parse("[::1]:80").is_err());
    }

    #[test]
    fn hostile_authorities() {
        use AuthorityError::*;
        assert_eq!(parse_authority(""), Err(Empty));
        assert_eq!(parse_authority("user@evil.com"), Err(UserInfo));
        assert_eq!(parse_authority("a b.com"), Err(BadCharacter));
        assert_eq!(parse_authority("a.com\r\nx: y"), Err(BadCharacter));
        assert_eq!(parse_authority("évil.com"), Err(BadCharacter));
        assert_eq!(parse_authority("a.com:0"), Err(BadPort));
        assert_eq!(parse_authority("a.com:65536"), Err(BadPort));
        assert_eq!(parse_authority("a.com:"), Err(BadPort));
        assert_eq!(parse_authority("a.com:8x"), Err(BadPort));
        assert_eq!(parse_authority("a..com"), Err(BadLabel));
        assert_eq!(parse_authority("-x.com"), Err(BadLabel));
        assert_eq!(parse_authority("x-.com"), Err(BadLabel));
        assert_eq!(parse_authority("a.-b.com:80"), Err(BadLabel));
        assert_eq!(parse_authority("a.b-.com."), Err(BadLabel));
        assert_eq!(parse_authority("-"), Err(BadLabel));
        assert_eq!(parse_authority("[1::2::3]"), Err(BadIpv6));
        assert_eq!(parse_authority("[::1%25eth0]"), Err(BadIpv6));
        assert_eq!(parse_authority("[1:2:3:4:5:6:7:8:9]"), Err(BadIpv6));
        assert_eq!(parse_authority("[12345::1]"), Err(BadIpv6));
        assert_eq!(parse_authority("[::1"), Err(BadIpv6));
        assert_eq!(parse_authority("[::1]x"), Err(BadPort));
        assert_eq!(parse_authority("[zz]"), Err(BadIpv6));
        assert_eq!(parse_authority("a.com/evil"), Err(BadCharacter));
        assert_eq!(parse_authority(&"a".repeat(300)), Err(TooLong));
        assert_eq!(parse_authority(":80"), Err(Empty));
    }

    #[test]
    fn patterns() {
        assert_eq!(HostPattern::parse("*"), Ok(HostPattern::Any));
        assert_eq!(
            HostPattern::parse("*.Example.com"),
            Ok(HostPattern::Wildcard(".example.com".into()))
        );
        assert!(HostPattern::parse("a.*.com").is_err());
        assert!(HostPattern::parse("foo*.com").is_err());
        assert!(HostPattern::parse("*.").is_err());
        assert!(HostPattern::parse("a.com:80").is_err());
        assert!(HostPattern::parse("").is_err());
        let w = HostPattern::parse("*.example.com").unwrap();
        assert!(w.matches("a.example.com"));
        assert!(w.matches("a.b.example.com"));
        assert!(!w.matches("example.com"));
        assert!(!w.matches("aexample.com"));
    }

    #[test]
    fn precedence_ignores_order() {
        let entries = vec![
            ("*".to_string(), "any"),
            ("*.com".to_string(), "com"),
            ("*.example.com".to_string(), "example"),
            ("api.example.com".to_string(), "api"),
        ];
        let mut rev = entries.clone();
        rev.reverse();
        for e in [entries, rev] {
            let t = HostTable::build("hosts", e).unwrap();
            assert_eq!(t.lookup("api.example.com"), Some(&"api"));
            assert_eq!(t.lookup("www.example.com"), Some(&"example"));
            assert_eq!(t.lookup("other.com"), Some(&"com"));
            assert_eq!(t.lookup("example.org"), Some(&"any"));
        }
    }

    #[test]
    fn duplicates_are_refused() {
        let e = HostTable::build(
            "hosts",
            vec![("a.com".to_string(), 1), ("A.com".to_string(), 2)],
        )
        .unwrap_err();
        assert_eq!(e.field, "hosts[1]");
        assert!(HostTable::build("h", vec![("*".to_string(), 1), ("*".to_string(), 2)]).is_err());
        let e = HostTable::build("hosts", vec![("a.*.com".to_string(), 1)]).unwrap_err();
        assert_eq!(e.field, "hosts[0]");
    }
}
