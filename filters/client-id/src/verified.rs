//! A bounded cache of tokens whose signature and claims were already
//! verified, so a client presenting the same JWT again costs a hash and a
//! lookup instead of an RSA/ECDSA verification (which in Envoy's V8 costs
//! about a millisecond for RS256).
//!
//! - The key is the SHA-256 of the whole token: only the exact same bytes
//!   hit.
//! - An entry is valid until `min(exp, verified_at + max_ttl)`; after that
//!   the token is verified again (so a key removed from a remote JWKS stops
//!   being honoured within `max_ttl`).
//! - At most `max_entries` entries; the oldest is evicted first. The memory
//!   bound is `max_entries × (max_token_bytes + overhead)` per worker.
//! - A configuration change builds a new engine, hence an empty cache.
//! - The claims are kept behind an `Rc`: a hit shares them, it never copies
//!   the claims map.

use serde_json::{Map, Value};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

/// A verified token's claims, shared between the cache and its hits.
pub type Claims = Rc<Map<String, Value>>;

#[derive(Debug, Clone)]
struct Entry {
    issuer: usize,
    claims: Claims,
    valid_until: u64,
}

#[derive(Debug, Clone)]
pub struct VerifiedCache {
    max_entries: usize,
    max_ttl: u64,
    entries: HashMap<[u8; 32], Entry>,
    order: VecDeque<[u8; 32]>,
}

impl VerifiedCache {
    pub fn new(max_entries: usize, max_ttl_seconds: u64) -> VerifiedCache {
        VerifiedCache {
            max_entries,
            max_ttl: max_ttl_seconds,
            entries: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// The issuer index and claims of a token verified before, if still valid.
    pub fn get(&mut self, key: &[u8; 32], now: u64) -> Option<(usize, Claims)> {
        let e = self.entries.get(key)?;
        if now >= e.valid_until {
            self.entries.remove(key);
            return None;
        }
        Some((e.issuer, Rc::clone(&e.claims)))
    }

    /// Remembers a verified token. Tokens without a numeric `exp` are cached
    /// for `max_ttl` at most, like any other.
    pub fn insert(&mut self, key: [u8; 32], issuer: usize, claims: &Claims, now: u64) {
        if self.max_entries == 0 || self.max_ttl == 0 {
            return;
        }
        // A fractional `exp` counts by its whole seconds.
        let exp = claims
            .get("exp")
            .and_then(|v| v.as_u64().or_else(|| v.as_f64().map(|f| f as u64)))
            .unwrap_or(u64::MAX);
        let valid_until = exp.min(now.saturating_add(self.max_ttl));
        if valid_until <= now {
            return;
        }
        if !self.entries.contains_key(&key) {
            while self.entries.len() >= self.max_entries {
                match self.order.pop_front() {
                    Some(old) => {
                        self.entries.remove(&old);
                    }
                    None => break,
                }
            }
            self.order.push_back(key);
        }
        self.entries.insert(
            key,
            Entry {
                issuer,
                claims: Rc::clone(claims),
                valid_until,
            },
        );
        // Keys of entries that expired and were dropped by `get` may linger
        // in `order`; keep it bounded too.
        while self.order.len() > self.max_entries.saturating_mul(2) {
            if let Some(old) = self.order.pop_front() {
                if self.entries.len() > self.max_entries {
                    self.entries.remove(&old);
                }
            }
        }
    }

    /// Whether tokens are remembered at all.
    pub fn enabled(&self) -> bool {
        self.max_entries > 0 && self.max_ttl > 0
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn claims(exp: u64) -> Claims {
        Rc::new(json!({"sub": "a", "exp": exp}).as_object().unwrap().clone())
    }

    #[test]
    fn hit_until_exp_or_ttl() {
        let mut c = VerifiedCache::new(4, 300);
        c.insert([1; 32], 0, &claims(1_000), 900);
        assert_eq!(c.get(&[1; 32], 999).map(|(i, _)| i), Some(0));
        assert!(c.get(&[1; 32], 1_000).is_none());
        c.insert([2; 32], 1, &claims(100_000), 1_000);
        assert!(c.get(&[2; 32], 1_299).is_some());
        assert!(c.get(&[2; 32], 1_300).is_none());
        assert!(c.get(&[3; 32], 0).is_none());
    }

    #[test]
    fn hits_share_the_claims() {
        let mut c = VerifiedCache::new(4, 300);
        let stored = claims(10_000);
        c.insert([1; 32], 0, &stored, 0);
        let (_, hit) = c.get(&[1; 32], 1).unwrap();
        assert!(Rc::ptr_eq(&hit, &stored));
    }

    #[test]
    fn bounded_oldest_evicted() {
        let mut c = VerifiedCache::new(3, 300);
        for i in 0..10u8 {
            c.insert([i; 32], 0, &claims(10_000), 0);
            assert!(c.len() <= 3);
        }
        assert!(c.get(&[9; 32], 1).is_some());
        assert!(c.get(&[0; 32], 1).is_none());
    }

    #[test]
    fn disabled_and_expired_are_not_kept() {
        let mut c = VerifiedCache::new(0, 300);
        c.insert([1; 32], 0, &claims(10_000), 0);
        assert!(c.is_empty());
        let mut c = VerifiedCache::new(4, 300);
        c.insert([1; 32], 0, &claims(5), 10);
        assert!(c.is_empty());
    }
}
