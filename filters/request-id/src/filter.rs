//! The proxy-wasm adapter: reads the request headers once, lets
//! [`crate::decide::decide`] decide, applies the edits, counts, and echoes
//! the id on the response.

use crate::config::Config;
use crate::decide::{decide, IdOutcome, TraceOutcome};
use gatehouse_core::{parse_config, ConfigError, HeaderOp};
use gatehouse_proxy::{Counter, HostClock, HostRandom};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use std::cell::RefCell;
use std::rc::Rc;

pub const FILTER: &str = "request-id";

struct Metrics {
    ids_generated: Counter,
    ids_preserved: Counter,
    ids_replaced: Counter,
    traces_started: Counter,
    traces_continued: Counter,
    trace_headers_malformed: Counter,
    trace_headers_conflicting: Counter,
    tracestate_dropped: Counter,
}

impl Metrics {
    fn define() -> Metrics {
        let c = |n: &str| Counter::define(&format!("gatehouse.request_id.{n}"));
        Metrics {
            ids_generated: c("ids_generated"),
            ids_preserved: c("ids_preserved"),
            ids_replaced: c("ids_replaced"),
            traces_started: c("traces_started"),
            traces_continued: c("traces_continued"),
            trace_headers_malformed: c("trace_headers_malformed"),
            trace_headers_conflicting: c("trace_headers_conflicting"),
            tracestate_dropped: c("tracestate_dropped"),
        }
    }
}

/// State shared by the HTTP contexts of one root (one per worker).
pub struct Shared {
    config: Config,
    metrics: Metrics,
    rng: RefCell<HostRandom>,
}

impl gatehouse_proxy::Filter for Shared {
    const NAME: &'static str = FILTER;

    fn configure(config: &[u8]) -> Result<Self, ConfigError> {
        Ok(Shared {
            config: parse_config(config)?,
            metrics: Metrics::define(),
            rng: RefCell::new(HostRandom::default()),
        })
    }

    fn http_context(shared: Rc<Self>, _context_id: u32) -> Box<dyn HttpContext> {
        Box::new(RequestId { shared, id: None })
    }
}

pub type Root = gatehouse_proxy::Root<Shared>;

struct RequestId {
    shared: Rc<Shared>,
    id: Option<String>,
}

impl Context for RequestId {}

impl HttpContext for RequestId {
    fn on_http_request_headers(&mut self, _n: usize, _eos: bool) -> Action {
        let s = &self.shared;
        let headers = gatehouse_proxy::request_headers();
        let d = {
            let mut rng = s.rng.borrow_mut();
            decide(&s.config, &headers, &mut *rng, &HostClock)
        };
        gatehouse_proxy::edit_request_headers(&headers, &d.request_ops);
        let m = &s.metrics;
        match d.id_outcome {
            IdOutcome::Generated => m.ids_generated.inc(),
            IdOutcome::Preserved => m.ids_preserved.inc(),
            IdOutcome::Replaced => m.ids_replaced.inc(),
        }
        match d.trace {
            Some(TraceOutcome::Started) => m.traces_started.inc(),
            Some(TraceOutcome::Continued) => m.traces_continued.inc(),
            None => {}
        }
        for _ in 0..d.malformed {
            m.trace_headers_malformed.inc();
        }
        for _ in 0..d.conflicts {
            m.trace_headers_conflicting.inc();
        }
        if d.tracestate_dropped {
            m.tracestate_dropped.inc();
        }
        self.id = Some(d.id);
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _n: usize, _eos: bool) -> Action {
        if self.shared.config.echo_in_response {
            if let Some(id) = &self.id {
                gatehouse_proxy::apply_response_ops(&[HeaderOp::set(
                    self.shared.config.response_header(),
                    id.clone(),
                )]);
            }
        }
        Action::Continue
    }
}

gatehouse_proxy::filter_entry!(Root);
