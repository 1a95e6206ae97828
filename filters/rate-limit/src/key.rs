//! Bucket keys (descriptors) from request data, and the hashes that place a
//! key in the slot table.

use crate::config::{AddressSource, ClientAddress, DescriptorPart};
use gatehouse_core::host::normalize_host;
use gatehouse_core::path::split_path_query;
use gatehouse_core::HeaderSnapshot;
use std::hash::Hasher;

/// What the request offers for building keys.
#[derive(Debug, Clone, Copy)]
pub struct RequestInfo<'a> {
    /// All request headers, pseudo-headers (`:authority`, `:path`,
    /// `:method`) included.
    pub headers: &'a HeaderSnapshot,
    /// Envoy's `source.address` (`ip:port`), when read.
    pub source_address: Option<&'a [u8]>,
}

/// Where the per-request parts of a key come from (global settings).
#[derive(Debug, Clone)]
pub struct KeySources {
    pub client_id_header: String,
    pub client_address: ClientAddress,
}

/// The value of one descriptor part, or `None` when the request lacks it.
pub fn part_value(part: &DescriptorPart, src: &KeySources, req: &RequestInfo) -> Option<Vec<u8>> {
    let non_empty = |v: &[u8]| if v.is_empty() { None } else { Some(v.to_vec()) };
    match part {
        DescriptorPart::ClientId => req.headers.first(&src.client_id_header).and_then(non_empty),
        DescriptorPart::Header(name) => req.headers.first(name).and_then(non_empty),
        DescriptorPart::Method => req.headers.first(":method").and_then(non_empty),
        DescriptorPart::Host => {
            let raw = req.headers.first_str(":authority")?.ok()?;
            normalize_host(raw).map(String::into_bytes)
        }
        DescriptorPart::PathPrefix(n) => {
            let raw = req.headers.first_str(":path")?.ok()?;
            let (path, _) = split_path_query(raw);
            Some(path_prefix(path, *n).into_bytes())
        }
        DescriptorPart::ClientAddress => client_address(&src.client_address, req),
    }
}

/// The first `n` segments of `path`: `/a/b/c` with 2 is `/a/b`.
pub fn path_prefix(path: &str, n: u32) -> String {
    let mut out = String::new();
    for seg in path.split('/').filter(|s| !s.is_empty()).take(n as usize) {
        out.push('/');
        out.push_str(seg);
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// The client address per config: the connection peer (port removed) or the
/// `x-forwarded-for` entry just left of the `trusted_hops` right-most ones.
pub fn client_address(cfg: &ClientAddress, req: &RequestInfo) -> Option<Vec<u8>> {
    match cfg.from {
        AddressSource::SourceAddress => {
            let raw = std::str::from_utf8(req.source_address?).ok()?;
            let ip = strip_port(raw.trim());
            if ip.is_empty() {
                None
            } else {
                Some(ip.to_ascii_lowercase().into_bytes())
            }
        }
        AddressSource::XForwardedFor => {
            let mut entries: Vec<String> = Vec::new();
            for value in req.headers.all("x-forwarded-for") {
                let value = std::str::from_utf8(value).ok()?;
                entries.extend(
                    value
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_ascii_lowercase),
                );
            }
            let hops = cfg.trusted_hops as usize;
            if entries.len() <= hops {
                return None;
            }
            let i = entries.len() - 1 - hops;
            entries.get(i).map(|e| strip_port(e).as_bytes().to_vec())
        }
    }
}

/// `1.2.3.4:80` -> `1.2.3.4`, `[::1]:80` -> `::1`, `::1` -> `::1`.
pub fn strip_port(addr: &str) -> &str {
    if let Some(rest) = addr.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match addr.matches(':').count() {
        1 => addr.split(':').next().unwrap_or(addr),
        _ => addr,
    }
}

/// Appends one length-prefixed field to a key (so parts cannot run into
/// each other: `("ab","c")` and `("a","bc")` differ).
pub fn push_field(key: &mut Vec<u8>, tag: u8, value: Option<&[u8]>) {
    key.push(tag);
    match value {
        Some(v) => {
            key.push(1);
            key.extend_from_slice(&u32::try_from(v.len()).unwrap_or(u32::MAX).to_le_bytes());
            key.extend_from_slice(v);
        }
        // The shared "anonymous" value of a missing part.
        None => key.push(0),
    }
}

/// A 64-bit hash (std's `DefaultHasher`, SipHash-1-3 with fixed keys, the
/// same in every worker of one build), with the configured seed mixed in
/// first; `domain` separates the slot hash from the fingerprint.
pub fn hash64(seed: &[u8], domain: u8, data: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    h.write(seed);
    h.write_u8(0xff);
    h.write_u8(domain);
    h.write(data);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn src(from: AddressSource, hops: u32) -> KeySources {
        KeySources {
            client_id_header: "x-client-id".into(),
            client_address: ClientAddress {
                from,
                trusted_hops: hops,
            },
        }
    }

    #[test]
    fn parts() {
        let h = HeaderSnapshot::from_pairs([
            (":authority", "API.Example.com:8443"),
            (":path", "/v1/users/42?x=1"),
            (":method", "GET"),
            ("x-client-id", "alice"),
            ("x-empty", ""),
        ]);
        let req = RequestInfo {
            headers: &h,
            source_address: Some(b"10.1.2.3:5555"),
        };
        let s = src(AddressSource::SourceAddress, 0);
        let v = |p: DescriptorPart| part_value(&p, &s, &req);
        assert_eq!(v(DescriptorPart::ClientId), Some(b"alice".to_vec()));
        assert_eq!(v(DescriptorPart::Host), Some(b"api.example.com".to_vec()));
        assert_eq!(v(DescriptorPart::Method), Some(b"GET".to_vec()));
        assert_eq!(
            v(DescriptorPart::PathPrefix(2)),
            Some(b"/v1/users".to_vec())
        );
        assert_eq!(
            v(DescriptorPart::PathPrefix(9)),
            Some(b"/v1/users/42".to_vec())
        );
        assert_eq!(v(DescriptorPart::ClientAddress), Some(b"10.1.2.3".to_vec()));
        assert_eq!(v(DescriptorPart::Header("x-empty".into())), None);
        assert_eq!(v(DescriptorPart::Header("x-none".into())), None);
        assert_eq!(path_prefix("/", 2), "/");
    }

    #[test]
    fn addresses() {
        assert_eq!(strip_port("1.2.3.4:80"), "1.2.3.4");
        assert_eq!(strip_port("[::1]:80"), "::1");
        assert_eq!(strip_port("2001:db8::1"), "2001:db8::1");
        assert_eq!(strip_port("1.2.3.4"), "1.2.3.4");
        let h = HeaderSnapshot::from_pairs([
            ("x-forwarded-for", "6.6.6.6, 1.1.1.1"),
            ("x-forwarded-for", "10.0.0.1"),
        ]);
        let req = RequestInfo {
            headers: &h,
            source_address: None,
        };
        let xff = |hops| {
            client_address(
                &src(AddressSource::XForwardedFor, hops).client_address,
                &req,
            )
        };
        assert_eq!(xff(0), Some(b"10.0.0.1".to_vec()));
        assert_eq!(xff(1), Some(b"1.1.1.1".to_vec()));
        assert_eq!(xff(2), Some(b"6.6.6.6".to_vec()));
        assert_eq!(xff(3), None);
        let none = client_address(&src(AddressSource::SourceAddress, 0).client_address, &req);
        assert_eq!(none, None);
    }

    #[test]
    fn fields_are_unambiguous_and_hashes_differ() {
        let mut a = Vec::new();
        push_field(&mut a, 1, Some(b"ab"));
        push_field(&mut a, 1, Some(b"c"));
        let mut b = Vec::new();
        push_field(&mut b, 1, Some(b"a"));
        push_field(&mut b, 1, Some(b"bc"));
        assert_ne!(a, b);
        let mut anon = Vec::new();
        push_field(&mut anon, 1, None);
        let mut empty = Vec::new();
        push_field(&mut empty, 1, Some(b""));
        assert_ne!(anon, empty);
        assert_eq!(hash64(b"s", 1, b"k"), hash64(b"s", 1, b"k"));
        assert_ne!(hash64(b"s", 1, b"k"), hash64(b"s", 2, b"k"));
        assert_ne!(hash64(b"s", 1, b"k"), hash64(b"t", 1, b"k"));
    }
}
