//! The remote-JWKS cache policy (pure; the adapter performs the fetches).
//!
//! - Fresh keys (younger than `cache_seconds`) are used as they are.
//! - A token naming an unknown `kid` triggers a refresh, at most once per
//!   `min_refresh_interval_seconds`; otherwise it is refused as unknown.
//! - Stale keys trigger a refresh (same interval limit); if the refresh
//!   fails, the stale keys keep serving.
//! - With no keys at all, a fetch is attempted unless one failed less than
//!   `min_refresh_interval_seconds` ago; then the request is refused.
//! - One fetch per issuer at a time: while one is in flight, a request that
//!   has no usable key (no keys yet, or an unknown `kid`) waits for it
//!   instead of fetching again; others use the keys there are. A fetch that
//!   has not answered within `timeout_ms` + 1 s is considered lost.

use crate::config::RemoteJwks;
use crate::engine::{KeysAnswer, RemoteKeys};
use crate::jwt::{self, Alg, KeySet};
use gatehouse_core::random::OnceClock;
use gatehouse_core::Clock;
use std::collections::HashMap;
use std::rc::Rc;

#[derive(Debug, Clone, Default)]
pub struct IssuerState {
    pub keys: Option<Rc<KeySet>>,
    /// Times in milliseconds since the epoch.
    pub fetched_at: u64,
    pub last_attempt: Option<u64>,
    pub last_failure: Option<u64>,
    /// When the fetch in flight (if any) started.
    pub in_flight: Option<u64>,
}

/// Per-worker cache of remote key sets, by issuer index.
#[derive(Debug, Default)]
pub struct JwksCache {
    pub issuers: HashMap<usize, IssuerState>,
}

/// A view of the cache at one instant, with fetching allowed or not.
pub struct CacheView<'a> {
    pub cache: &'a mut JwksCache,
    /// The request's time, read in milliseconds since the epoch (second
    /// granularity would let two refreshes happen less than one interval
    /// apart), and only when a remote key set is asked for.
    pub clock: &'a OnceClock<'a>,
    /// False on the second pass after a fetch: use what is there.
    pub allow_fetch: bool,
    /// Whether the caller can wait for another request's fetch.
    pub allow_wait: bool,
}

impl RemoteKeys for CacheView<'_> {
    fn keys(&mut self, issuer: usize, kid: Option<&str>, cfg: &RemoteJwks) -> KeysAnswer {
        let now = self.clock.now_unix_millis();
        let st = self.cache.issuers.entry(issuer).or_default();
        if st
            .in_flight
            .is_some_and(|t| now >= t.saturating_add(cfg.timeout_ms.saturating_add(1000)))
        {
            st.in_flight = None;
        }
        if st.in_flight.is_some() && self.allow_fetch && self.allow_wait {
            return match &st.keys {
                Some(keys) if kid.is_none_or(|k| keys.has_kid(k)) => KeysAnswer::Keys(keys.clone()),
                _ => KeysAnswer::Wait,
            };
        }
        let interval_passed = st.last_attempt.is_none_or(|t| {
            now >= t.saturating_add(cfg.min_refresh_interval_seconds.saturating_mul(1000))
        });
        match &st.keys {
            None => {
                let recently_failed = st.last_failure.is_some_and(|t| {
                    now < t.saturating_add(cfg.min_refresh_interval_seconds.saturating_mul(1000))
                });
                if self.allow_fetch && !recently_failed {
                    st.last_attempt = Some(now);
                    st.in_flight = Some(now);
                    KeysAnswer::Fetch
                } else {
                    KeysAnswer::Unavailable
                }
            }
            Some(keys) => {
                let stale = now
                    >= st
                        .fetched_at
                        .saturating_add(cfg.cache_seconds.saturating_mul(1000));
                let unknown_kid = kid.is_some_and(|k| !keys.has_kid(k));
                if self.allow_fetch && (stale || unknown_kid) && interval_passed {
                    st.last_attempt = Some(now);
                    st.in_flight = Some(now);
                    KeysAnswer::Fetch
                } else {
                    KeysAnswer::Keys(keys.clone())
                }
            }
        }
    }
}

impl JwksCache {
    /// Whether a fetch for `issuer` started less than `timeout_ms` + 1 s ago
    /// and has not answered.
    pub fn in_flight_alive(&self, issuer: usize, now_ms: u64, timeout_ms: u64) -> bool {
        self.issuers
            .get(&issuer)
            .and_then(|st| st.in_flight)
            .is_some_and(|t| now_ms < t.saturating_add(timeout_ms.saturating_add(1000)))
    }

    /// Notes a fetch sent for `issuer` outside [`CacheView`].
    pub fn start_fetch(&mut self, issuer: usize, now_ms: u64) {
        let st = self.issuers.entry(issuer).or_default();
        st.in_flight = Some(now_ms);
        st.last_attempt = Some(now_ms);
    }

    /// Forgets the fetch in flight for `issuer` (its requester went away).
    pub fn abandon(&mut self, issuer: usize) {
        if let Some(st) = self.issuers.get_mut(&issuer) {
            st.in_flight = None;
        }
    }

    /// Records a fetch result: `Some(body)` for a 200 answer.
    /// Returns the number of keys stored, or `None` when the fetch failed
    /// (the previous keys, if any, are kept).
    pub fn record(
        &mut self,
        issuer: usize,
        body: Option<&[u8]>,
        algs: &[Alg],
        now_ms: u64,
    ) -> Option<usize> {
        let st = self.issuers.entry(issuer).or_default();
        st.in_flight = None;
        let parsed = body
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
            .and_then(|doc| jwt::parse_jwks(&doc, algs, false).ok());
        match parsed {
            Some(ks) => {
                let n = ks.keys.len();
                st.keys = Some(Rc::new(ks));
                st.fetched_at = now_ms;
                st.last_failure = None;
                Some(n)
            }
            None => {
                st.last_failure = Some(now_ms);
                None
            }
        }
    }
}
