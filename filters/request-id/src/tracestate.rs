//! W3C `tracestate`: checking the incoming list against the Trace Context
//! grammar before it is forwarded with a continued trace.
//!
//! ```text
//! list        = list-member 0*31( OWS "," OWS list-member )   (empty members allowed)
//! list-member = key "=" value
//! key         = simple-key / multi-tenant-key
//! simple-key  = lcalpha 0*255( lcalpha / DIGIT / "_" / "-" / "*" / "/" )
//! multi-tenant-key = tenant-id "@" system-id
//! tenant-id   = ( lcalpha / DIGIT ) 0*240( lcalpha / DIGIT / "_" / "-" / "*" / "/" )
//! system-id   = lcalpha 0*13( lcalpha / DIGIT / "_" / "-" / "*" / "/" )
//! value       = 0*255( %x20 / nblk-chr ) nblk-chr
//! nblk-chr    = %x21-2B / %x2D-3C / %x3E-7E
//! ```
//!
//! Several `tracestate` header lines are one list, in order. A list that
//! breaks the grammar anywhere (a bad key or value, more than 32 members,
//! a key twice) is dropped whole, as the W3C test suite's strict level
//! expects; a valid one is forwarded untouched.

/// Most list members a `tracestate` may hold.
pub const MAX_MEMBERS: usize = 32;

/// What to do with the incoming `tracestate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TraceState {
    /// No `tracestate` header.
    Absent,
    /// One valid header line: forward it as it is.
    Keep,
    /// Several valid header lines: forward them combined as one list.
    Combine(String),
    /// Empty (only empty members): nothing to forward.
    Empty,
    /// Breaks the grammar: remove it.
    Invalid,
}

fn is_key_char(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'*' | b'/')
}

/// `first` then up to `more` key characters.
fn key_part(s: &[u8], first: fn(u8) -> bool, more: usize) -> bool {
    match s.split_first() {
        Some((f, rest)) => first(*f) && rest.len() <= more && rest.iter().all(|b| is_key_char(*b)),
        None => false,
    }
}

/// A `tracestate` key (simple or multi-tenant).
pub fn valid_key(key: &str) -> bool {
    let k = key.as_bytes();
    let lcalpha = |b: u8| b.is_ascii_lowercase();
    let tenant_first = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    match key.split_once('@') {
        None => key_part(k, lcalpha, 255),
        Some((tenant, system)) => {
            key_part(tenant.as_bytes(), tenant_first, 240)
                && key_part(system.as_bytes(), lcalpha, 13)
        }
    }
}

fn is_nblk(b: u8) -> bool {
    matches!(b, 0x21..=0x2b | 0x2d..=0x3c | 0x3e..=0x7e)
}

/// A `tracestate` value: 1–256 printable ASCII characters without `,` or
/// `=`, not ending with a space.
pub fn valid_value(value: &str) -> bool {
    let v = value.as_bytes();
    !v.is_empty()
        && v.len() <= 256
        && v.iter().all(|b| *b == b' ' || is_nblk(*b))
        && v.last().is_some_and(|b| is_nblk(*b))
}

/// Checks every `tracestate` header line (in order) as one list.
pub fn check<'a>(lines: impl IntoIterator<Item = &'a [u8]>) -> TraceState {
    let mut texts: Vec<&str> = Vec::new();
    let mut keys: Vec<&str> = Vec::new();
    for line in lines {
        let Ok(text) = std::str::from_utf8(line) else {
            return TraceState::Invalid;
        };
        texts.push(text);
        for member in text.split(',') {
            let member = member.trim_matches([' ', '\t']);
            if member.is_empty() {
                continue;
            }
            let Some((key, value)) = member.split_once('=') else {
                return TraceState::Invalid;
            };
            if !valid_key(key) || !valid_value(value) || keys.contains(&key) {
                return TraceState::Invalid;
            }
            keys.push(key);
            if keys.len() > MAX_MEMBERS {
                return TraceState::Invalid;
            }
        }
    }
    match (texts.len(), keys.len()) {
        (0, _) => TraceState::Absent,
        (_, 0) => TraceState::Empty,
        (1, _) => TraceState::Keep,
        _ => {
            let parts: Vec<&str> = texts
                .iter()
                .map(|t| t.trim_matches([' ', '\t', ',']))
                .filter(|t| !t.is_empty())
                .collect();
            TraceState::Combine(parts.join(","))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn one(v: &str) -> TraceState {
        check([v.as_bytes()])
    }

    fn many(v: &[&str]) -> TraceState {
        check(v.iter().map(|s| s.as_bytes()))
    }

    #[test]
    fn valid_lists_are_kept() {
        for v in [
            "foo=1",
            "foo=1,bar=2",
            "foo=1 \t , \t bar=2, \t baz=3",
            " foo=1",
            "\tfoo=1 \t",
            "foo=1,,bar=2",
            "foo= 1",
            "abcdefghijklmnopqrstuvwxyz0123456789_-*/=x",
            "abcdefghijklmnopqrstuvwxyz0123456789_-*/@a-z0-9_-*/=x",
            "0tenant@sys=x",
        ] {
            assert_eq!(one(v), TraceState::Keep, "{v:?}");
        }
        let all_value_chars: String = (0x20u8..=0x7e)
            .filter(|b| *b != b',' && *b != b'=')
            .map(char::from)
            .collect();
        assert_eq!(one(&format!("k={all_value_chars}")), TraceState::Keep);
        // Key limits: 256, tenant 241 and system 14 characters.
        assert_eq!(one(&format!("{}=1", "z".repeat(256))), TraceState::Keep);
        assert_eq!(
            one(&format!("{}@{}=1", "t".repeat(241), "v".repeat(14))),
            TraceState::Keep
        );
        // 32 members, 256-character values: far more than 512 characters.
        let big: Vec<String> = (0..32)
            .map(|i| format!("k{i:02}={}", "v".repeat(256)))
            .collect();
        assert_eq!(one(&big.join(",")), TraceState::Keep);
    }

    #[test]
    fn invalid_lists_are_dropped_whole() {
        for v in [
            "foo =1",
            "FOO=1",
            "foo.bar=1",
            "foo@=1,bar=2",
            "@foo=1,bar=2",
            "foo@@bar=1,bar=2",
            "foo@bar@baz=1,bar=2",
            "1foo=1",
            "foo=bar=baz",
            "foo=,bar=3",
            "foo",
            "=1",
            "foo=1 x\u{7f}",
            "foo=é",
            "foo=1,foo=1",
            "foo=1,foo=2",
        ] {
            assert_eq!(one(v), TraceState::Invalid, "{v:?}");
        }
        assert_eq!(one(&format!("{}=1", "z".repeat(257))), TraceState::Invalid);
        assert_eq!(
            one(&format!("{}@v=1", "t".repeat(242))),
            TraceState::Invalid
        );
        assert_eq!(one(&format!("t@{}=1", "v".repeat(15))), TraceState::Invalid);
        assert_eq!(one(&format!("k={}", "v".repeat(257))), TraceState::Invalid);
        assert_eq!(check([&b"foo=\xff"[..]]), TraceState::Invalid);
        let members: Vec<String> = (1..=33).map(|i| format!("bar{i:02}={i:02}")).collect();
        assert_eq!(one(&members.join(",")), TraceState::Invalid);
        assert_eq!(one(&members[..32].join(",")), TraceState::Keep);
    }

    #[test]
    fn several_lines_are_one_list() {
        assert_eq!(
            many(&["foo=1,bar=2", "rojo=1,congo=2", "baz=3"]),
            TraceState::Combine("foo=1,bar=2,rojo=1,congo=2,baz=3".into())
        );
        assert_eq!(many(&["", "foo=1"]), TraceState::Combine("foo=1".into()));
        assert_eq!(many(&["foo=1", "foo=1"]), TraceState::Invalid);
        assert_eq!(
            many(&["foo=1", &format!("{}=1", "z".repeat(257))]),
            TraceState::Invalid
        );
        let lines: Vec<String> = (0..4)
            .map(|l| {
                (1..=10)
                    .map(|i| format!("bar{:02}={i}", l * 10 + i))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect();
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        assert_eq!(many(&refs), TraceState::Invalid);
        assert!(matches!(many(&refs[..3]), TraceState::Combine(_)));
    }

    #[test]
    fn empty_and_absent() {
        assert_eq!(many(&[]), TraceState::Absent);
        assert_eq!(one(""), TraceState::Empty);
        assert_eq!(many(&["", " , "]), TraceState::Empty);
    }
}
