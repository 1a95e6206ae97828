//! Decimal numbers appended to a string being built (a slot key, a header
//! value made of several parts), without going through `format!`. (A
//! number alone: `n.to_string()`, which std specializes, is faster.)

/// Appends the decimal form of `n` to `out` (what `n.to_string()` gives).
pub fn push_u64(out: &mut String, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut used = 0;
    for d in buf.iter_mut().rev() {
        *d = b'0' + (n % 10) as u8;
        n /= 10;
        used += 1;
        if n == 0 {
            break;
        }
    }
    let digits = buf.get(buf.len() - used..).unwrap_or_default();
    out.extend(digits.iter().map(|&b| char::from(b)));
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn same_as_to_string() {
        for n in [
            0,
            1,
            9,
            10,
            99,
            100,
            4095,
            1_000_000_007,
            u64::from(u32::MAX),
            u64::MAX - 1,
            u64::MAX,
        ] {
            let mut s = String::from("x=");
            push_u64(&mut s, n);
            assert_eq!(s, format!("x={n}"));
        }
    }
}
