//! Lower-case hexadecimal helpers.

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Appends the lower-case hex form of `bytes` to `out`.
pub fn encode_into(bytes: &[u8], out: &mut String) {
    let digit = |n: u8| char::from(DIGITS.get(usize::from(n)).copied().unwrap_or(b'0'));
    for b in bytes {
        out.push(digit(b >> 4));
        out.push(digit(b & 0x0f));
    }
}

pub fn encode(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    encode_into(bytes, &mut s);
    s
}

/// True when `s` is non-empty and only lower-case hex digits.
pub fn is_lower_hex(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// True when every character is `0`.
pub fn is_all_zero(s: &str) -> bool {
    s.bytes().all(|b| b == b'0')
}

/// Parses up to 16 hex digits (either case) into a u64.
pub fn parse_u64(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 16 {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn round_trip() {
        assert_eq!(encode(&[0x00, 0xab, 0x7f]), "00ab7f");
        assert!(is_lower_hex("00ab7f"));
        assert!(!is_lower_hex("00AB7F"));
        assert!(!is_lower_hex(""));
        assert!(is_all_zero("0000"));
        assert_eq!(parse_u64("ff"), Some(255));
        assert_eq!(parse_u64("10000000000000000"), None);
    }
}
