//! The proxy-wasm adapter: Envoy shared data as the [`SharedStore`], the
//! request headers and `source.address` into [`Engine::evaluate`], the
//! answer back out (local reply, or rate-limit headers on the upstream's
//! response), and the counters.

use crate::config::Config;
use crate::engine::{Engine, Outcome};
use crate::key::RequestInfo;
use crate::table::{ensure_keys, SetResult, SharedStore, StoreError};
use gatehouse_core::{parse_json, Clock, ConfigError, HeaderOp};
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

struct Metrics {
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
        })
    }
}

pub type Root = gatehouse_proxy::Root<Shared>;

struct RateLimit {
    shared: Rc<Shared>,
    /// Rate-limit headers for the upstream's response.
    response_ops: Vec<HeaderOp>,
}

impl Context for RateLimit {}

impl HttpContext for RateLimit {
    fn on_http_request_headers(&mut self, _n: usize, _eos: bool) -> Action {
        let s = &self.shared;
        let headers = gatehouse_proxy::request_headers();
        let source = if s.engine.needs_source_address() {
            gatehouse_proxy::property(&["source", "address"])
        } else {
            None
        };
        let req = RequestInfo {
            headers: &headers,
            source_address: source.as_deref(),
        };
        let ev = s
            .engine
            .evaluate(&mut HostStore, HostClock.now_unix_nanos(), &req);
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
        if let Some(reply) = ev.reply {
            let hs: Vec<(&str, &str)> = reply
                .headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            gatehouse_proxy::send_local_reply(reply.status, &hs, reply.body.as_bytes());
            return Action::Pause;
        }
        self.response_ops = ev.response_ops;
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _n: usize, _eos: bool) -> Action {
        if !self.response_ops.is_empty() {
            gatehouse_proxy::apply_response_ops(&self.response_ops);
        }
        Action::Continue
    }
}

gatehouse_proxy::filter_entry!(Root);
