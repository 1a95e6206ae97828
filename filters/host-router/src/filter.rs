//! The proxy-wasm adapter: read the request headers once, let the pure
//! [`Router`] decide, apply its edits, clear the route cache, count.

use crate::metrics;
use crate::router::{Action as RouteAction, Decision, Outcome, Router};
use crate::Config;
use gatehouse_core::{parse_json, ConfigError};
use gatehouse_proxy::{Counter, HostRandom};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use std::cell::RefCell;
use std::rc::Rc;

const NAME: &str = "host-router";

/// Counters, defined once per VM (each worker) at configure time.
struct Metrics {
    routed: Counter,
    rewritten: Counter,
    direct_response: Counter,
    no_route: Counter,
    unknown_host: Counter,
    unknown_host_passed: Counter,
    bad_host: Counter,
    bad_path: Counter,
    forged_routing_header: Counter,
    /// Per configured host (config order): requests, routed, direct, no_route.
    hosts: Vec<[Counter; 4]>,
}

impl Metrics {
    fn define(cfg: &Config) -> Metrics {
        let c = |n: &str| Counter::define(&metrics::outcome_metric(n));
        let patterns: Vec<&str> = cfg.hosts.iter().map(|h| h.host.as_str()).collect();
        let hosts = metrics::host_tokens(&patterns)
            .iter()
            .map(|t| metrics::PER_HOST.map(|n| Counter::define(&metrics::host_metric(t, n))))
            .collect();
        Metrics {
            routed: c("routed"),
            rewritten: c("rewritten"),
            direct_response: c("direct_response"),
            no_route: c("no_route"),
            unknown_host: c("unknown_host"),
            unknown_host_passed: c("unknown_host_passed"),
            bad_host: c("bad_host"),
            bad_path: c("bad_path"),
            forged_routing_header: c("forged_routing_header"),
            hosts,
        }
    }

    fn count(&self, d: &Decision) {
        match d.outcome {
            Outcome::Routed => self.routed.inc(),
            Outcome::DirectResponse => self.direct_response.inc(),
            Outcome::NoRoute => self.no_route.inc(),
            Outcome::UnknownHostRejected => self.unknown_host.inc(),
            Outcome::UnknownHostPassed => {
                self.unknown_host.inc();
                self.unknown_host_passed.inc();
            }
            Outcome::BadHost => self.bad_host.inc(),
            Outcome::BadPath => self.bad_path.inc(),
        }
        if d.rewritten {
            self.rewritten.inc();
        }
        if d.forged_routing_header {
            self.forged_routing_header.inc();
        }
        if let Some(per_host) = d.host.and_then(|i| self.hosts.get(i)) {
            let [requests, routed, direct, no_route] = per_host;
            requests.inc();
            match d.outcome {
                Outcome::Routed => routed.inc(),
                Outcome::DirectResponse => direct.inc(),
                Outcome::NoRoute => no_route.inc(),
                _ => {}
            }
        }
    }
}

/// The worker's state: the router compiled once, the counters, randomness
/// for weighted splits.
pub struct Shared {
    router: Router,
    metrics: Metrics,
    rng: RefCell<HostRandom>,
}

impl gatehouse_proxy::Filter for Shared {
    const NAME: &'static str = NAME;

    fn configure(config: &[u8]) -> Result<Self, ConfigError> {
        let cfg: Config = parse_json(config)?;
        Ok(Shared {
            router: Router::build(&cfg)?,
            metrics: Metrics::define(&cfg),
            rng: RefCell::new(HostRandom::default()),
        })
    }

    fn http_context(state: Rc<Self>, _context_id: u32) -> Box<dyn HttpContext> {
        Box::new(Request { state: Some(state) })
    }
}

pub type Root = gatehouse_proxy::Root<Shared>;

struct Request {
    state: Option<Rc<Shared>>,
}

impl Context for Request {}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(state) = self.state.as_ref() else {
            return Action::Continue;
        };
        let headers = gatehouse_proxy::request_headers();
        let decision = match state.rng.try_borrow_mut() {
            Ok(mut rng) => state.router.decide(&headers, &mut *rng),
            Err(_) => state.router.decide(&headers, &mut HostRandom::default()),
        };
        state.metrics.count(&decision);
        match &decision.action {
            RouteAction::Continue(ops) => {
                if !ops.is_empty() {
                    gatehouse_proxy::apply_request_ops(ops);
                    // The route may already be resolved (by an earlier
                    // filter, or from the client's own headers): make
                    // Envoy pick it again from the edited headers.
                    gatehouse_proxy::clear_route_cache();
                }
                Action::Continue
            }
            RouteAction::Reply(reply) => {
                gatehouse_proxy::send_local_reply(
                    reply.status,
                    &[("content-type", reply.content_type.as_str())],
                    reply.body.as_bytes(),
                );
                Action::Pause
            }
        }
    }
}

gatehouse_proxy::filter_entry!(Root);
