//! Finding an API key in a request and matching it against configured
//! SHA-256 hashes in constant time.

use gatehouse_core::headers::HeaderSnapshot;
use gatehouse_core::HeaderOp;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Where a presented credential was found (for stripping it); the names are
/// the configured ones, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source<'a> {
    Header(&'a str),
    Authorization,
    Query(&'a str),
    Cookie(&'a str),
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    let d = Sha256::digest(data);
    let mut out = [0u8; 32];
    out.copy_from_slice(&d);
    out
}

/// Parses 64 lower- or upper-case hex digits.
pub fn parse_hash(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        let pair = s.get(i * 2..i * 2 + 2)?;
        *o = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

/// Finds `presented`'s hash among `table` without an early exit: every entry
/// is compared with a constant-time equality, so the time taken does not
/// depend on which entry (if any) matched.
pub fn lookup(table: &[([u8; 32], usize)], presented: &[u8]) -> Option<usize> {
    lookup_digest(table, &sha256(presented))
}

/// [`lookup`] of a key already hashed ([`sha256`]), so a request hashes its
/// credential once for both the lookup and the [`fingerprint_of`] its logs
/// carry.
pub fn lookup_digest(table: &[([u8; 32], usize)], h: &[u8; 32]) -> Option<usize> {
    let mut found: Option<usize> = None;
    for (hash, idx) in table {
        let eq: bool = hash.ct_eq(h).into();
        if eq && found.is_none() {
            found = Some(*idx);
        }
    }
    found
}

/// `Scheme value` of an Authorization header, borrowed from the request:
/// the scheme as sent (compare it case-insensitively) and the trimmed value.
pub fn authorization(headers: &HeaderSnapshot) -> Option<(&str, &str)> {
    let raw = headers.first_str("authorization")?.ok()?;
    let raw = raw.trim();
    let (scheme, rest) = raw.split_once(' ')?;
    Some((scheme, rest.trim()))
}

/// Percent-decodes a query component (`+` is a space).
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The first value of query parameter `name`.
pub fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if percent_decode(k).as_deref() == Some(name) {
            Some(percent_decode(v).unwrap_or_default())
        } else {
            None
        }
    })
}

/// `:path` without every occurrence of query parameter `name`.
pub fn path_without_param(path: &str, name: &str) -> String {
    let Some((p, q)) = path.split_once('?') else {
        return path.to_string();
    };
    let kept: Vec<&str> = q
        .split('&')
        .filter(|pair| {
            let k = pair.split_once('=').map_or(*pair, |(k, _)| k);
            percent_decode(k).as_deref() != Some(name)
        })
        .collect();
    if kept.is_empty() {
        p.to_string()
    } else {
        format!("{p}?{}", kept.join("&"))
    }
}

/// The first cookie called `name` across every `cookie` header.
pub fn cookie(headers: &HeaderSnapshot, name: &str) -> Option<String> {
    for raw in headers.all("cookie") {
        let Ok(raw) = std::str::from_utf8(raw) else {
            continue;
        };
        for part in raw.split(';') {
            if let Some((k, v)) = part.trim().split_once('=') {
                if k.trim() == name {
                    let v = v.trim();
                    let v = v
                        .strip_prefix('"')
                        .and_then(|x| x.strip_suffix('"'))
                        .unwrap_or(v);
                    return Some(v.to_string());
                }
            }
        }
    }
    None
}

/// The header edit removing cookie `name` from the request.
pub fn strip_cookie(headers: &HeaderSnapshot, name: &str) -> HeaderOp {
    let mut kept: Vec<String> = Vec::new();
    for raw in headers.all("cookie") {
        let Ok(raw) = std::str::from_utf8(raw) else {
            continue;
        };
        for part in raw.split(';') {
            let t = part.trim();
            if t.is_empty() {
                continue;
            }
            let k = t.split_once('=').map_or(t, |(k, _)| k).trim();
            if k != name {
                kept.push(t.to_string());
            }
        }
    }
    if kept.is_empty() {
        HeaderOp::remove("cookie")
    } else {
        HeaderOp::set("cookie", kept.join("; "))
    }
}

/// The first 8 hex digits of the key's SHA-256: enough to tell keys apart
/// in logs, useless to an attacker.
pub fn fingerprint(presented: &[u8]) -> String {
    fingerprint_of(&sha256(presented))
}

/// [`fingerprint`] of a credential already hashed ([`sha256`]).
pub fn fingerprint_of(digest: &[u8; 32]) -> String {
    gatehouse_core::hex::encode(digest.get(..4).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn hashes_and_lookup() {
        let h = sha256(b"secret-key");
        let hex = gatehouse_core::hex::encode(&h);
        assert_eq!(parse_hash(&hex), Some(h));
        assert_eq!(parse_hash(&hex.to_uppercase()), Some(h));
        assert_eq!(parse_hash("abc"), None);
        assert_eq!(parse_hash(&"zz".repeat(32)), None);
        let table = vec![(sha256(b"other"), 0), (h, 1)];
        assert_eq!(lookup(&table, b"secret-key"), Some(1));
        assert_eq!(lookup(&table, b"secret-kez"), None);
        assert_eq!(fingerprint(b"secret-key").len(), 8);
        assert_eq!(lookup_digest(&table, &h), Some(1));
        assert_eq!(fingerprint_of(&h), fingerprint(b"secret-key"));
        // Known vector.
        assert_eq!(
            gatehouse_core::hex::encode(&sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn query_and_cookies() {
        assert_eq!(
            query_param("a=1&api_key=k%2By&b", "api_key").as_deref(),
            Some("k+y")
        );
        assert_eq!(query_param("a=1", "api_key"), None);
        assert_eq!(
            path_without_param("/x?a=1&api_key=k&b=2", "api_key"),
            "/x?a=1&b=2"
        );
        assert_eq!(path_without_param("/x?api_key=k", "api_key"), "/x");
        assert_eq!(path_without_param("/x", "api_key"), "/x");
        let h = HeaderSnapshot::from_pairs([("cookie", "a=1; key=\"v\"; b=2")]);
        assert_eq!(cookie(&h, "key").as_deref(), Some("v"));
        assert_eq!(cookie(&h, "c"), None);
        assert_eq!(strip_cookie(&h, "key"), HeaderOp::set("cookie", "a=1; b=2"));
        let h = HeaderSnapshot::from_pairs([("cookie", "key=v")]);
        assert_eq!(strip_cookie(&h, "key"), HeaderOp::remove("cookie"));
        assert_eq!(percent_decode("%zz"), None);
    }

    #[test]
    fn authorization_header() {
        let h = HeaderSnapshot::from_pairs([("authorization", "ApiKey  abc ")]);
        assert_eq!(authorization(&h), Some(("ApiKey", "abc")));
        let h = HeaderSnapshot::from_pairs([("authorization", "abc")]);
        assert_eq!(authorization(&h), None);
    }
}
