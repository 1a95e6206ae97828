//! Request ids: what an acceptable incoming id is, and UUID generation.

use gatehouse_core::hex;
use gatehouse_core::RandomSource;

/// True when `v` may be forwarded as a request id: 1..=`max_len` bytes of
/// `A-Z a-z 0-9 - _ . : + / =`. Everything else (spaces, quotes, commas of a
/// joined repeated header, control characters, non-ASCII) could forge or
/// break log lines and is replaced.
pub use gatehouse_core::reply::is_safe_request_id as is_safe_id;

fn format_uuid(b: &[u8; 16]) -> String {
    let mut s = String::with_capacity(36);
    for (i, range) in [0..4, 4..6, 6..8, 8..10, 10..16].into_iter().enumerate() {
        if i > 0 {
            s.push('-');
        }
        hex::encode_into(b.get(range).unwrap_or_default(), &mut s);
    }
    s
}

/// A random (version 4) UUID, lower-case.
pub fn uuid_v4(rng: &mut impl RandomSource) -> String {
    let mut b = [0u8; 16];
    rng.fill(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    format_uuid(&b)
}

/// A time-ordered (version 7) UUID: 48-bit Unix milliseconds, then random.
pub fn uuid_v7(unix_millis: u64, rng: &mut impl RandomSource) -> String {
    let mut b = [0u8; 16];
    rng.fill(&mut b);
    let ts = unix_millis.to_be_bytes();
    b[..6].copy_from_slice(&ts[2..8]);
    b[6] = (b[6] & 0x0f) | 0x70;
    b[8] = (b[8] & 0x3f) | 0x80;
    format_uuid(&b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_core::random::SplitMix64;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn is_uuid(s: &str, version: char) -> bool {
        let parts: Vec<&str> = s.split('-').collect();
        parts.len() == 5
            && [8, 4, 4, 4, 12]
                .iter()
                .zip(&parts)
                .all(|(n, p)| p.len() == *n && hex::is_lower_hex(p))
            && s.as_bytes()[14] as char == version
            && "89ab".contains(s.as_bytes()[19] as char)
    }

    #[test]
    fn v4_shape_and_uniqueness() {
        let mut r = SplitMix64(1);
        let a = uuid_v4(&mut r);
        let b = uuid_v4(&mut r);
        assert!(is_uuid(&a, '4'), "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn v7_is_time_ordered() {
        let mut r = SplitMix64(7);
        let a = uuid_v7(1_700_000_000_000, &mut r);
        let b = uuid_v7(1_700_000_000_001, &mut r);
        assert!(is_uuid(&a, '7'), "{a}");
        assert!(a < b);
        assert!(a.starts_with("018bcfe5-6800-7"), "{a}");
    }

    #[test]
    fn safe_ids() {
        assert!(is_safe_id(b"abc-123_X.y:z+/=", 128));
        assert!(!is_safe_id(b"", 128));
        assert!(!is_safe_id(b"a b", 128));
        assert!(!is_safe_id(b"a,b", 128));
        assert!(!is_safe_id(b"a\"b", 128));
        assert!(!is_safe_id(b"a\r\nb", 128));
        assert!(!is_safe_id("é".as_bytes(), 128));
        assert!(!is_safe_id(&[b'a'; 129], 128));
        assert!(is_safe_id(&[b'a'; 128], 128));
    }
}
