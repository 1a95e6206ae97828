//! The proxy-wasm adapter: reads headers (and, with mTLS, the connection's
//! certificate properties), lets [`Engine::decide`] decide, fetches a remote
//! JWKS through an Envoy cluster when the engine asks, applies the header
//! edits or answers with the rejection, and counts.

use crate::cache::{CacheView, JwksCache};
use crate::engine::{Decision, Engine, Input, LazyPeer, Outcome, Peer, PeerCert, Step, REASONS};
use crate::waiters::{Waiter, Waiters};
use gatehouse_core::random::OnceClock;
use gatehouse_core::reply::error_body;
use gatehouse_core::{Clock, HeaderSnapshot};
use gatehouse_proxy::{Counter, HostClock};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

pub const FILTER: &str = "client-id";

/// Largest JWKS document read from a callout.
const MAX_JWKS_BYTES: usize = 256 * 1024;

struct Metrics {
    identified_api_key: Counter,
    identified_jwt: Counter,
    identified_mtls: Counter,
    anonymous: Counter,
    unidentified: Counter,
    skipped: Counter,
    cors_preflight: Counter,
    rejected: HashMap<&'static str, Counter>,
    jwks_fetches: Counter,
    jwks_fetch_failures: Counter,
    verified_cache_hits: Counter,
    verified_cache_misses: Counter,
}

impl Metrics {
    fn define() -> Metrics {
        let c = |n: &str| Counter::define(&format!("gatehouse.client_id.{n}"));
        Metrics {
            identified_api_key: c("identified.api_key"),
            identified_jwt: c("identified.jwt"),
            identified_mtls: c("identified.mtls"),
            anonymous: c("anonymous"),
            unidentified: c("unidentified"),
            skipped: c("skipped"),
            cors_preflight: c("cors_preflight"),
            rejected: REASONS
                .iter()
                .map(|r| (*r, c(&format!("rejected.{r}"))))
                .collect(),
            jwks_fetches: c("jwks_fetches"),
            jwks_fetch_failures: c("jwks_fetch_failures"),
            verified_cache_hits: c("verified_cache.hits"),
            verified_cache_misses: c("verified_cache.misses"),
        }
    }
}

pub struct Shared {
    engine: Engine,
    metrics: Metrics,
    cache: RefCell<JwksCache>,
    /// Requests paused until the JWKS fetch of their issuer completes.
    waiters: RefCell<Waiters<Paused>>,
}

/// What a paused request needs to be decided again.
struct Paused {
    headers: HeaderSnapshot,
    peer: Option<PeerCert>,
}

/// Decides again for every request waiting on `issuer` (or, with `None`,
/// for those waiting longer than `older_than_ms`), now that its fetch is
/// over, and answers or resumes each one in its own context. `home` is the
/// caller's context id, restored at the end.
fn wake(shared: &Shared, issuer: Option<usize>, older_than_ms: u64, home: u32) {
    // One instant for every request woken here, read only if one is.
    let clock = OnceClock::new(&HostClock);
    let ready = {
        let mut w = shared.waiters.borrow_mut();
        match issuer {
            Some(i) => w.take_issuer(i),
            None => w.take_expired(clock.now_unix_millis(), older_than_ms),
        }
    };
    if ready.is_empty() {
        return;
    }
    for w in ready {
        let step = {
            let mut cache = shared.cache.borrow_mut();
            let mut view = CacheView {
                cache: &mut cache,
                clock: &clock,
                allow_fetch: false,
                allow_wait: false,
            };
            let input = Input {
                headers: &w.request.headers,
                peer: w.request.peer.as_ref().map(|p| p as &dyn Peer),
                clock: &clock,
            };
            shared.engine.decide(&input, &mut view)
        };
        let Step::Done(d) = step else {
            continue;
        };
        if !gatehouse_proxy::set_effective_context(w.context_id) {
            continue;
        }
        if let Action::Continue = finish(shared, d, &w.request.headers) {
            gatehouse_proxy::resume_paused_request();
        }
    }
    gatehouse_proxy::set_effective_context(home);
}

impl gatehouse_proxy::Filter for Shared {
    const NAME: &'static str = FILTER;

    /// Not `parse_config`: its errors may quote the value found, and here
    /// values can be API keys (`config::parse` redacts them).
    fn configure(config: &[u8]) -> Result<Self, gatehouse_core::ConfigError> {
        let engine = crate::config::parse(config).and_then(|c| Engine::build(&c))?;
        Ok(Shared {
            engine,
            metrics: Metrics::define(),
            cache: RefCell::new(JwksCache::default()),
            waiters: RefCell::new(Waiters::default()),
        })
    }

    fn http_context(shared: Rc<Self>, context_id: u32) -> Box<dyn HttpContext> {
        Box::new(ClientId {
            context_id,
            shared,
            headers: None,
            peer: None,
            pending: None,
            waiting: false,
        })
    }
}

/// The generic root, plus what client-id's root does itself: JWKS fetches
/// for requests whose own fetch went away, and the sweep of waiters.
pub struct Root {
    context_id: u32,
    inner: gatehouse_proxy::Root<Shared>,
    /// JWKS fetches the root sent for orphaned waiters: token -> issuer.
    pending: HashMap<u32, usize>,
}

impl Context for Root {
    fn on_done(&mut self) -> bool {
        self.inner.on_done()
    }

    fn on_http_call_response(
        &mut self,
        token: u32,
        num_headers: usize,
        body_size: usize,
        _t: usize,
    ) {
        let Some(issuer) = self.pending.remove(&token) else {
            return;
        };
        if let Some(shared) = self.inner.state() {
            record_response(&shared, issuer, num_headers, body_size);
            wake(&shared, Some(issuer), 0, self.context_id);
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, size: usize) -> bool {
        // The generic root also makes this root tick (counter flushes); the
        // same tick sweeps requests whose JWKS fetch was lost (see on_tick).
        self.inner.on_configure(size)
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        self.inner.create_http_context(context_id)
    }

    fn on_tick(&mut self) {
        self.inner.on_tick();
        let Some(shared) = self.inner.state() else {
            return;
        };
        if shared.waiters.borrow().is_empty() {
            return;
        }
        let now = now_ms();
        // Requests waiting for a fetch that is no longer in flight (its
        // requester went away, which cancels the callout): fetch for them
        // from the root, which lives as long as the VM.
        let orphaned = shared.waiters.borrow().issuers();
        for issuer in orphaned {
            let timeout = remote_timeout(&shared, issuer);
            if shared.cache.borrow().in_flight_alive(issuer, now, timeout) {
                continue;
            }
            if let Some(token) = dispatch_fetch(&shared, issuer) {
                shared.cache.borrow_mut().start_fetch(issuer, now);
                self.pending.insert(token, issuer);
            }
        }
        // Last resort: nobody waits longer than the bound; they are
        // decided with the keys there are (503 when none).
        let max_wait =
            Waiters::<Paused>::max_wait_ms(shared.engine.issuers().iter().filter_map(|i| {
                match &i.keys {
                    crate::engine::KeySource::Remote(r) => Some(r.timeout_ms),
                    crate::engine::KeySource::Inline(_) => None,
                }
            }));
        wake(&shared, None, max_wait, self.context_id);
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct ClientId {
    context_id: u32,
    shared: Rc<Shared>,
    headers: Option<HeaderSnapshot>,
    /// The connection's certificate, its properties read when first needed.
    peer: Option<LazyPeer>,
    /// (callout token, issuer index) while a JWKS fetch is in flight.
    pending: Option<(u32, usize)>,
    /// Registered in `Shared::waiters`.
    waiting: bool,
}

impl Drop for ClientId {
    fn drop(&mut self) {
        if self.waiting {
            self.shared
                .waiters
                .borrow_mut()
                .remove_context(self.context_id);
        }
        if let Some((_, issuer)) = self.pending {
            // The callout dies with this context: let another request fetch.
            self.shared.cache.borrow_mut().abandon(issuer);
        }
    }
}

fn now_ms() -> u64 {
    HostClock.now_unix_millis()
}

impl ClientId {
    /// Runs the engine; returns the action for the request.
    fn run(&mut self, allow_fetch: bool) -> Action {
        let shared = self.shared.clone();
        let Some(headers) = self.headers.as_ref() else {
            return Action::Continue;
        };
        // Read only if the decision needs the time (JWTs, remote keys).
        let clock = OnceClock::new(&HostClock);
        let step = {
            let mut cache = shared.cache.borrow_mut();
            let mut view = CacheView {
                cache: &mut cache,
                clock: &clock,
                allow_fetch,
                // Waking a waiter resumes it from another context, which a
                // fused chain (gatehouse.wasm `chain`) cannot follow: there
                // every request fetches for itself.
                allow_wait: !gatehouse_proxy::fused::in_callback(),
            };
            let input = Input {
                headers,
                peer: self.peer.as_ref().map(|p| p as &dyn Peer),
                clock: &clock,
            };
            shared.engine.decide(&input, &mut view)
        };
        match step {
            Step::Done(d) => finish(&shared, d, headers),
            Step::Wait { issuer } => {
                shared.waiters.borrow_mut().add(Waiter {
                    context_id: self.context_id,
                    issuer,
                    since_ms: clock.now_unix_millis(),
                    request: Paused {
                        headers: headers.clone(),
                        // Woken from another context: read it all now.
                        peer: self.peer.as_ref().map(LazyPeer::snapshot),
                    },
                });
                self.waiting = true;
                Action::Pause
            }
            Step::Fetch { issuer } => match self.fetch(issuer) {
                Some(token) => {
                    self.pending = Some((token, issuer));
                    Action::Pause
                }
                None => {
                    // Dispatch failed: record the failure and decide with
                    // whatever keys exist (stale ones, or none => refused).
                    shared.metrics.jwks_fetch_failures.inc();
                    let now_ms = clock.now_unix_millis();
                    shared.cache.borrow_mut().record(issuer, None, &[], now_ms);
                    self.run(false)
                }
            },
        }
    }

    fn fetch(&self, issuer: usize) -> Option<u32> {
        dispatch_fetch(&self.shared, issuer)
    }
}

impl Context for ClientId {
    fn on_http_call_response(
        &mut self,
        token: u32,
        num_headers: usize,
        body_size: usize,
        _t: usize,
    ) {
        let Some((expected, issuer)) = self.pending else {
            return;
        };
        if token != expected {
            return;
        }
        self.pending = None;
        record_response(&self.shared, issuer, num_headers, body_size);
        wake(&self.shared, Some(issuer), 0, self.context_id);
        if let Action::Continue = self.run(false) {
            // Through gatehouse-proxy so a fused chain runs its later stages.
            gatehouse_proxy::resume_request();
        }
    }
}

impl HttpContext for ClientId {
    fn on_http_request_headers(&mut self, _n: usize, _eos: bool) -> Action {
        self.headers = Some(gatehouse_proxy::request_headers());
        if self.shared.engine.needs_peer() {
            // Nothing is read yet: see `LazyPeer`.
            self.peer = Some(LazyPeer::new(gatehouse_proxy::property));
        }
        self.run(true)
    }
}

/// Counts and applies a decision; `headers` give the request id of an error
/// body (looked up only for a rejection).
fn finish(shared: &Shared, d: Decision, headers: &HeaderSnapshot) -> Action {
    let m = &shared.metrics;
    // Usually one lookup per request (a few when a JWKS fetch intervened).
    let (hits, misses) = shared.engine.take_cache_events();
    for _ in 0..hits {
        m.verified_cache_hits.inc();
    }
    for _ in 0..misses {
        m.verified_cache_misses.inc();
    }
    match &d.outcome {
        Outcome::Rejected(r) => {
            // The request id for error bodies (the one rule of every
            // gatehouse filter).
            let request_id = gatehouse_core::reply::request_id_for_body(headers);
            if let Some(c) = m.rejected.get(r.reason) {
                c.inc();
            }
            log::info!(
                "gatehouse {FILTER}: rejected status={} reason={} credential={} request_id={}",
                r.status,
                r.reason,
                r.fingerprint.as_deref().unwrap_or("-"),
                request_id.unwrap_or("-")
            );
            let body = error_body(r.reason, r.message, request_id);
            let mut hdrs: Vec<(&str, &str)> = vec![
                ("content-type", "application/json"),
                ("cache-control", "no-store"),
            ];
            for c in &r.challenges {
                hdrs.push(("www-authenticate", c.as_str()));
            }
            let retry = r.retry_after.map(|s| s.to_string());
            if let Some(v) = &retry {
                hdrs.push(("retry-after", v.as_str()));
            }
            gatehouse_proxy::send_local_reply(r.status, &hdrs, body.as_bytes());
            return Action::Pause;
        }
        Outcome::Identified { method, .. } => match method {
            crate::config::Method::ApiKey => m.identified_api_key.inc(),
            crate::config::Method::Jwt => m.identified_jwt.inc(),
            crate::config::Method::Mtls => m.identified_mtls.inc(),
        },
        Outcome::Anonymous => m.anonymous.inc(),
        Outcome::Unidentified => m.unidentified.inc(),
        Outcome::Skipped => m.skipped.inc(),
        Outcome::CorsPreflight => m.cors_preflight.inc(),
    }
    gatehouse_proxy::edit_request_headers(headers, &d.ops);
    Action::Continue
}

/// Stores the answer of a JWKS callout (the current callout response).
fn record_response(shared: &Shared, issuer: usize, num_headers: usize, body_size: usize) {
    let now = now_ms();
    let status = gatehouse_proxy::http_call_response_status();
    let ok = num_headers > 0 && status.as_deref() == Some(b"200") && body_size <= MAX_JWKS_BYTES;
    let body = if ok {
        gatehouse_proxy::http_call_response_body(body_size)
    } else {
        None
    };
    let algs = shared
        .engine
        .issuers()
        .get(issuer)
        .map(|i| i.algs.clone())
        .unwrap_or_default();
    let stored = shared
        .cache
        .borrow_mut()
        .record(issuer, body.as_deref(), &algs, now);
    match stored {
        Some(n) => log::info!("gatehouse {FILTER}: JWKS fetched: {n} keys"),
        None => {
            shared.metrics.jwks_fetch_failures.inc();
            log::warn!(
                "gatehouse {FILTER}: JWKS fetch failed (status {}, {} bytes); keeping previous keys if any",
                status
                    .as_deref()
                    .map(String::from_utf8_lossy)
                    .unwrap_or_default(),
                body_size
            );
        }
    }
}

/// Sends the JWKS request of `issuer` from the current context.
fn dispatch_fetch(shared: &Shared, issuer: usize) -> Option<u32> {
    let iss = shared.engine.issuers().get(issuer)?;
    let crate::engine::KeySource::Remote(r) = &iss.keys else {
        return None;
    };
    shared.metrics.jwks_fetches.inc();
    let authority = r.authority.clone().unwrap_or_else(|| r.cluster.clone());
    match gatehouse_proxy::dispatch_http_call(
        &r.cluster,
        vec![
            (":method", "GET"),
            (":path", r.path.as_str()),
            (":authority", authority.as_str()),
            ("accept", "application/json"),
        ],
        Duration::from_millis(r.timeout_ms),
    ) {
        Ok(t) => Some(t),
        Err(st) => {
            log::warn!(
                "gatehouse {FILTER}: JWKS fetch for issuer {} could not be sent: {st}",
                iss.policy.issuer
            );
            None
        }
    }
}

fn remote_timeout(shared: &Shared, issuer: usize) -> u64 {
    match shared.engine.issuers().get(issuer).map(|i| &i.keys) {
        Some(crate::engine::KeySource::Remote(r)) => r.timeout_ms,
        _ => 0,
    }
}

/// Root context factory (also used by the combined gatehouse.wasm module).
pub fn new_root(context_id: u32) -> Box<dyn RootContext> {
    Box::new(Root {
        context_id,
        inner: gatehouse_proxy::Root::default(),
        pending: HashMap::new(),
    })
}

gatehouse_proxy::filter_entry!();
