//! Weighted splits: mapping a sticky key or a random draw onto buckets
//! `0..100` and buckets onto clusters by cumulative weight.
//!
//! Buckets are laid out in config order: with weights `[90, 10]` buckets
//! 0–89 go to the first cluster and 90–99 to the second. A sticky key always
//! hashes to the same bucket, so moving weight from the first cluster to the
//! last one only moves keys onto the last one (a user who reached the canary
//! stays on it while its weight grows).

use crate::config::TOTAL_WEIGHT;
use gatehouse_core::random::RandomSource;

/// 64-bit FNV-1a.
pub fn fnv1a64(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The SplitMix64 finalizer: spreads FNV's weak low bits before `% 100`.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The bucket (`0..100`) of a sticky key: `mix(fnv1a64(key)) % 100`.
pub fn sticky_bucket(key: &[u8]) -> u32 {
    bucket_of(mix(fnv1a64(key)))
}

/// A uniformly random bucket.
pub fn random_bucket(rng: &mut dyn RandomSource) -> u32 {
    bucket_of(rng.next_u64())
}

fn bucket_of(v: u64) -> u32 {
    u32::try_from(v % u64::from(TOTAL_WEIGHT)).unwrap_or(0)
}

/// The index of the cluster owning `bucket` given the weights (which add up
/// to 100 after validation). Falls back to the last cluster with a non-zero
/// weight if the weights fall short, never out of range.
pub fn pick(weights: &[u32], bucket: u32) -> usize {
    pick_iter(weights.iter().copied(), bucket)
}

/// [`pick`] over weights as they come (no slice collected per request).
pub fn pick_iter(weights: impl IntoIterator<Item = u32>, bucket: u32) -> usize {
    let mut upper: u32 = 0;
    let mut last_nonzero = 0;
    for (i, w) in weights.into_iter().enumerate() {
        if w == 0 {
            continue;
        }
        last_nonzero = i;
        upper = upper.saturating_add(w);
        if bucket < upper {
            return i;
        }
    }
    last_nonzero
}

/// The value of cookie `name` in one `Cookie` header value
/// (`a=1; b=2`), as bytes. The first occurrence wins.
pub fn cookie_value<'a>(header: &'a [u8], name: &str) -> Option<&'a [u8]> {
    header.split(|&b| b == b';').find_map(|pair| {
        let pair = trim(pair);
        let eq = pair.iter().position(|&b| b == b'=')?;
        let (k, v) = pair.split_at(eq);
        if trim(k) != name.as_bytes() {
            return None;
        }
        let v = trim(v.get(1..).unwrap_or_default());
        // RFC 6265 allows a value in double quotes.
        Some(
            v.strip_prefix(b"\"")
                .and_then(|s| s.strip_suffix(b"\""))
                .unwrap_or(v),
        )
    })
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    s.get(start..end).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_core::random::SplitMix64;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn fnv_reference_values() {
        // Published FNV-1a 64 test vectors.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn sticky_is_stable_and_spread() {
        assert_eq!(sticky_bucket(b"user-1"), sticky_bucket(b"user-1"));
        let mut counts = [0u32; 10];
        for i in 0..10_000 {
            let b = sticky_bucket(format!("user-{i}").as_bytes());
            assert!(b < 100);
            counts[(b / 10) as usize] += 1;
        }
        for c in counts {
            assert!((850..=1150).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn pick_by_cumulative_weight() {
        let w = [90, 10];
        assert_eq!(pick(&w, 0), 0);
        assert_eq!(pick(&w, 89), 0);
        assert_eq!(pick(&w, 90), 1);
        assert_eq!(pick(&w, 99), 1);
        let w = [0, 100, 0];
        assert!((0..100).all(|b| pick(&w, b) == 1));
        assert_eq!(pick(&[50, 40], 95), 1);
        assert_eq!(pick(&[], 5), 0);
    }

    #[test]
    fn random_buckets_cover_the_range() {
        let mut rng = SplitMix64(1);
        let mut seen = [false; 100];
        for _ in 0..5000 {
            seen[random_bucket(&mut rng) as usize] = true;
        }
        assert!(seen.iter().all(|s| *s));
    }

    #[test]
    fn cookies() {
        let h = b"a=1; user=bob ; x=\"q\"; user=eve";
        assert_eq!(cookie_value(h, "user"), Some(&b"bob"[..]));
        assert_eq!(cookie_value(h, "x"), Some(&b"q"[..]));
        assert_eq!(cookie_value(h, "a"), Some(&b"1"[..]));
        assert_eq!(cookie_value(h, "us"), None);
        assert_eq!(cookie_value(b"user", "user"), None);
        assert_eq!(cookie_value(b"", "user"), None);
        assert_eq!(cookie_value(&[0xff, b'=', 0xfe], "user"), None);
        assert_eq!(cookie_value(b"user=", "user"), Some(&b""[..]));
    }
}
