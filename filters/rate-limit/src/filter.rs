//! The proxy-wasm adapter: Envoy shared data as the [`SharedStore`], the
//! request headers and `source.address` into [`Engine::evaluate`], the
//! answer back out (local reply, or rate-limit headers on the upstream's
//! response), and the counters.

use crate::config::{Config, GlobalOnError};
use crate::engine::{Engine, Evaluation, GlobalCall, GlobalError, Outcome, Start};
use crate::table::{ensure_keys, SetResult, SharedStore, StoreError};
use gatehouse_core::random::OnceClock;
use gatehouse_core::{parse_json, Clock, ConfigError, HeaderOp, HeaderSnapshot};
use gatehouse_proxy::{Counter, HostClock};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use std::rc::Rc;

pub const FILTER: &str = "rate-limit";

/// Envoy's shared data (process-wide, across workers) through the host
/// layer.
struct HostStore;

impl SharedStore for HostStore {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        gatehouse_proxy::shared_data::get(key).map_err(|_| StoreError)
    }

    fn set(&mut self, key: &str, value: &[u8], cas: u32) -> SetResult {
        match gatehouse_proxy::shared_data::set(key, value, cas) {
            gatehouse_proxy::shared_data::Set::Ok => SetResult::Ok,
            gatehouse_proxy::shared_data::Set::CasMismatch => SetResult::CasMismatch,
            gatehouse_proxy::shared_data::Set::Error => SetResult::Error,
        }
    }
}

struct Counters {
    allowed: Counter,
    limited: Counter,
    shadow_limited: Counter,
    failures: Counter,
}

impl Counters {
    fn define(prefix: &str) -> Counters {
        let c = |n: &str| Counter::define(&format!("{prefix}.{n}"));
        Counters {
            allowed: c("allowed"),
            limited: c("limited"),
            shadow_limited: c("shadow_limited"),
            failures: c("failures"),
        }
    }
}

/// The global mode's counters (`gatehouse.rate_limit.global.*`).
struct GlobalCounters {
    calls: Counter,
    ok: Counter,
    over_limit: Counter,
    error_dispatch: Counter,
    error_timeout: Counter,
    error_unavailable: Counter,
    error_status: Counter,
    error_bad_answer: Counter,
    fallback_allow: Counter,
    fallback_deny: Counter,
    fallback_local: Counter,
    precheck_limited: Counter,
    cancelled: Counter,
    /// Answer latency: <= 1, 5, 25, 100, 500 ms, and more.
    latency: [Counter; 6],
}

impl GlobalCounters {
    fn define() -> GlobalCounters {
        GlobalCounters {
            calls: Counter::define("gatehouse.rate_limit.global.calls"),
            ok: Counter::define("gatehouse.rate_limit.global.ok"),
            over_limit: Counter::define("gatehouse.rate_limit.global.over_limit"),
            error_dispatch: Counter::define("gatehouse.rate_limit.global.error.dispatch"),
            error_timeout: Counter::define("gatehouse.rate_limit.global.error.timeout"),
            error_unavailable: Counter::define("gatehouse.rate_limit.global.error.unavailable"),
            error_status: Counter::define("gatehouse.rate_limit.global.error.status"),
            error_bad_answer: Counter::define("gatehouse.rate_limit.global.error.bad_answer"),
            fallback_allow: Counter::define("gatehouse.rate_limit.global.fallback.allow"),
            fallback_deny: Counter::define("gatehouse.rate_limit.global.fallback.deny"),
            fallback_local: Counter::define("gatehouse.rate_limit.global.fallback.local"),
            precheck_limited: Counter::define("gatehouse.rate_limit.global.precheck_limited"),
            cancelled: Counter::define("gatehouse.rate_limit.global.cancelled"),
            latency: [
                Counter::define("gatehouse.rate_limit.global.latency.le_1ms"),
                Counter::define("gatehouse.rate_limit.global.latency.le_5ms"),
                Counter::define("gatehouse.rate_limit.global.latency.le_25ms"),
                Counter::define("gatehouse.rate_limit.global.latency.le_100ms"),
                Counter::define("gatehouse.rate_limit.global.latency.le_500ms"),
                Counter::define("gatehouse.rate_limit.global.latency.gt_500ms"),
            ],
        }
    }

    fn latency(&self, elapsed_ms: u64) -> &Counter {
        let i = crate::rls::latency_bucket(elapsed_ms);
        self.latency.get(i).unwrap_or(&self.calls)
    }
}

struct Metrics {
    global: Option<GlobalCounters>,
    all: Counters,
    per_rule: Vec<Counters>,
    missing_key: Counter,
    overflow: Counter,
    takeovers: Counter,
    cas_conflicts: Counter,
}

/// State shared by the HTTP contexts of one root (one per worker).
pub struct Shared {
    engine: Engine,
    metrics: Metrics,
}

impl gatehouse_proxy::Filter for Shared {
    const NAME: &'static str = FILTER;

    fn configure(config: &[u8]) -> Result<Self, ConfigError> {
        let config: Config = parse_json(config)?;
        let engine = Engine::new(&config)?;
        // Create every slot now (existing ones, e.g. live buckets across a
        // reload, are kept): the table never grows with traffic.
        match ensure_keys(&mut HostStore, engine.all_keys()) {
            Ok(created) => log::info!(
                "gatehouse {FILTER}: slot table `{}` ready ({} slots, {created} keys created)",
                engine.table,
                engine.slots
            ),
            Err(StoreError) => {
                return Err(ConfigError::new(
                    "slots",
                    "cannot create the slot table in shared data",
                ))
            }
        }
        let base = "gatehouse.rate_limit";
        let metrics = Metrics {
            global: engine
                .rules
                .iter()
                .any(|r| r.global.is_some())
                .then(GlobalCounters::define),
            all: Counters::define(base),
            per_rule: engine
                .rules
                .iter()
                .map(|r| Counters::define(&format!("{base}.rule.{}", r.name)))
                .collect(),
            missing_key: Counter::define(&format!("{base}.missing_key")),
            overflow: Counter::define(&format!("{base}.overflow")),
            takeovers: Counter::define(&format!("{base}.slot_takeovers")),
            cas_conflicts: Counter::define(&format!("{base}.cas_conflicts")),
        };
        Ok(Shared { engine, metrics })
    }

    fn http_context(shared: Rc<Self>, _context_id: u32) -> Box<dyn HttpContext> {
        Box::new(RateLimit {
            shared,
            response_ops: Vec::new(),
            pending: None,
        })
    }
}

pub type Root = gatehouse_proxy::Root<Shared>;

/// A global callout in flight.
struct Pending {
    token: u32,
    call: GlobalCall,
    /// When it was sent (ns).
    started: u64,
    /// The request headers (for the request id of an error body).
    headers: HeaderSnapshot,
}

struct RateLimit {
    shared: Rc<Shared>,
    /// Rate-limit headers for the upstream's response.
    response_ops: Vec<HeaderOp>,
    pending: Option<Pending>,
}

impl RateLimit {
    /// Counts an evaluation, then answers locally (true) or keeps the
    /// headers for the request and the response (false).
    fn act(&mut self, ev: Evaluation) -> bool {
        let s = &self.shared;
        let m = &s.metrics;
        let rule = ev.rule.and_then(|i| m.per_rule.get(i));
        let rule_name = ev
            .rule
            .and_then(|i| s.engine.rules.get(i))
            .map_or("", |r| r.name.as_str());
        let count = |pick: fn(&Counters) -> &Counter| {
            pick(&m.all).inc();
            if let Some(r) = rule {
                pick(r).inc();
            }
        };
        match ev.outcome {
            Outcome::NotLimited => {}
            Outcome::Allowed => count(|c| &c.allowed),
            Outcome::Limited => count(|c| &c.limited),
            Outcome::ShadowLimited => {
                count(|c| &c.shadow_limited);
                log::info!("gatehouse {FILTER}: shadow: rule `{rule_name}` would limit a request");
            }
            Outcome::MissingKey => m.missing_key.inc(),
            Outcome::Failed { denied, reason } => {
                count(|c| &c.failures);
                log::warn!(
                    "gatehouse {FILTER}: rule `{rule_name}`: shared state unavailable ({reason:?}); request {}",
                    if denied { "denied" } else { "allowed" }
                );
            }
        }
        if ev.trace.overflow {
            m.overflow.inc();
        }
        if ev.trace.took_over {
            m.takeovers.inc();
        }
        for _ in 0..ev.trace.conflicts {
            m.cas_conflicts.inc();
        }
        if let Some(g) = &m.global {
            let gt = &ev.global;
            match gt.answered {
                Some(crate::rls::Code::OverLimit) => g.over_limit.inc(),
                Some(_) => g.ok.inc(),
                None => {}
            }
            if let Some(err) = gt.error {
                match err {
                    GlobalError::Dispatch => g.error_dispatch.inc(),
                    GlobalError::Timeout => g.error_timeout.inc(),
                    GlobalError::Unavailable => g.error_unavailable.inc(),
                    GlobalError::Status => g.error_status.inc(),
                    GlobalError::BadAnswer => g.error_bad_answer.inc(),
                }
            }
            match gt.fallback {
                Some(GlobalOnError::Allow) => g.fallback_allow.inc(),
                Some(GlobalOnError::Deny) => g.fallback_deny.inc(),
                Some(GlobalOnError::Local) => g.fallback_local.inc(),
                None => {}
            }
            if gt.precheck_limited {
                g.precheck_limited.inc();
            }
        }
        if let Some(reply) = ev.reply {
            let hs: Vec<(&str, &str)> = reply
                .headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            gatehouse_proxy::send_local_reply(reply.status, &hs, reply.body.as_bytes());
            return true;
        }
        if !ev.request_ops.is_empty() {
            gatehouse_proxy::apply_request_ops(&ev.request_ops);
        }
        self.response_ops = ev.response_ops;
        false
    }

    /// Sends the call of a global rule; `Pause` while it is out. `clock`
    /// is the request's (already read if a precheck bucket was checked).
    fn call(&mut self, call: GlobalCall, headers: HeaderSnapshot, clock: &OnceClock) -> Action {
        let s = Rc::clone(&self.shared);
        let Some(global) = s
            .engine
            .rules
            .get(call.rule)
            .and_then(|r| r.global.as_ref())
        else {
            return Action::Continue;
        };
        if let Some(g) = &s.metrics.global {
            g.calls.inc();
        }
        let timeout = std::time::Duration::from_millis(u64::from(global.cfg.timeout_ms));
        match gatehouse_proxy::grpc::dispatch(
            &global.cfg.cluster,
            crate::rls::SERVICE,
            crate::rls::METHOD,
            &call.message,
            timeout,
        ) {
            Ok(token) => {
                self.pending = Some(Pending {
                    token,
                    call,
                    started: clock.now_unix_nanos(),
                    headers,
                });
                Action::Pause
            }
            Err(status) => {
                log::warn!(
                    "gatehouse {FILTER}: rate-limit service cluster `{}`: call not started ({status})",
                    global.cfg.cluster
                );
                let ev = s.engine.finish(
                    &mut HostStore,
                    clock.now_unix_nanos(),
                    &call,
                    Err(GlobalError::Dispatch),
                    &headers,
                );
                if self.act(ev) {
                    Action::Pause
                } else {
                    Action::Continue
                }
            }
        }
    }
}

impl Context for RateLimit {
    fn on_grpc_call_response(&mut self, token: u32, status: u32, size: usize) {
        let Some(p) = self.pending.take_if(|p| p.token == token) else {
            return;
        };
        let s = Rc::clone(&self.shared);
        let now = HostClock.now_unix_nanos();
        let elapsed_ms = now.saturating_sub(p.started) / 1_000_000;
        let timeout_ms = s
            .engine
            .rules
            .get(p.call.rule)
            .and_then(|r| r.global.as_ref())
            .map_or(u64::MAX, |g| u64::from(g.cfg.timeout_ms));
        if let Some(g) = &s.metrics.global {
            g.latency(elapsed_ms).inc();
        }
        let message = if status == 0 {
            Vec::new()
        } else {
            gatehouse_proxy::grpc::status()
                .map(|(_, m)| m)
                .unwrap_or_default()
        };
        let timed_out = GlobalError::timed_out(elapsed_ms, timeout_ms, &message);
        let answer = match GlobalError::from_grpc_status(status, timed_out) {
            Some(err) => {
                log::warn!(
                    "gatehouse {FILTER}: rate-limit service failed: gRPC status {status} after {elapsed_ms} ms ({}): {}",
                    err.name(),
                    String::from_utf8_lossy(&message)
                );
                Err(err)
            }
            None => gatehouse_proxy::grpc::response_body(size)
                .ok_or(GlobalError::BadAnswer)
                .and_then(|b| {
                    crate::rls::decode_response(&b).map_err(|e| {
                        log::warn!("gatehouse {FILTER}: rate-limit service answer: {}", e.0);
                        GlobalError::BadAnswer
                    })
                }),
        };
        let ev = s
            .engine
            .finish(&mut HostStore, now, &p.call, answer, &p.headers);
        if let Some(err) = ev.global.error {
            if err == GlobalError::BadAnswer {
                log::warn!("gatehouse {FILTER}: rate-limit service gave an unusable answer");
            }
        }
        if !self.act(ev) {
            gatehouse_proxy::resume_request();
        }
    }

    fn on_done(&mut self) -> bool {
        if let Some(p) = self.pending.take() {
            // The client went away while the call was out: the answer must
            // not resume a request that no longer exists.
            gatehouse_proxy::grpc::cancel(p.token);
            if let Some(g) = &self.shared.metrics.global {
                g.cancelled.inc();
            }
        }
        true
    }
}

impl HttpContext for RateLimit {
    fn on_http_request_headers(&mut self, _n: usize, _eos: bool) -> Action {
        let s = Rc::clone(&self.shared);
        let headers = gatehouse_proxy::request_headers();
        // The clock and `source.address` are read only if the request
        // needs them (see `Engine::start_lazy`).
        let clock = OnceClock::new(&HostClock);
        let source = || gatehouse_proxy::property(&["source", "address"]);
        match s
            .engine
            .start_lazy(&mut HostStore, &clock, &headers, &source)
        {
            Start::Done(ev) => {
                if self.act(ev) {
                    Action::Pause
                } else {
                    Action::Continue
                }
            }
            Start::Call(call) => self.call(call, headers, &clock),
        }
    }

    fn on_http_response_headers(&mut self, _n: usize, _eos: bool) -> Action {
        if !self.response_ops.is_empty() {
            gatehouse_proxy::apply_response_ops(&self.response_ops);
        }
        Action::Continue
    }
}

gatehouse_proxy::filter_entry!(Root);
