//! The proxy-wasm adapter: reads the request headers and the connection's
//! TLS state, asks [`Policy`] what to do, and applies the answer.

use crate::policy::{safe_request_id, Outcome, Policy, HSTS_HEADER};
use gatehouse_core::reply::error_body;
use gatehouse_core::{compile_config, ConfigError, HeaderOp};
use gatehouse_proxy::Counter;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use std::rc::Rc;

const FILTER: &str = "https-redirect";

struct Metrics {
    redirected: Counter,
    exempted: Counter,
    rejected: Counter,
}

impl Metrics {
    fn define() -> Metrics {
        Metrics {
            redirected: Counter::define("gatehouse.https_redirect.redirected"),
            exempted: Counter::define("gatehouse.https_redirect.exempted"),
            rejected: Counter::define("gatehouse.https_redirect.rejected"),
        }
    }
}

/// The worker's state: the policy compiled once, and the counters.
pub struct Shared {
    policy: Policy,
    metrics: Metrics,
}

impl gatehouse_proxy::Filter for Shared {
    const NAME: &'static str = FILTER;

    fn configure(config: &[u8]) -> Result<Self, ConfigError> {
        Ok(Shared {
            policy: compile_config(config)?,
            metrics: Metrics::define(),
        })
    }

    fn http_context(shared: Rc<Self>, _context_id: u32) -> Box<dyn HttpContext> {
        Box::new(Http { shared, hsts: None })
    }
}

pub type Root = gatehouse_proxy::Root<Shared>;

struct Http {
    shared: Rc<Shared>,
    /// `strict-transport-security` value to put on the response.
    hsts: Option<String>,
}

impl Context for Http {}

/// Whether the downstream connection is TLS. Checked on Envoy 1.40:
/// `connection.tls_version` is `TLSv1.2`/`TLSv1.3` on a TLS listener and
/// absent on a plain one (HTTP/1.1 and h2c alike). `:scheme` and
/// `request.scheme` are not used: an h2c client chooses `:scheme` itself.
fn tls_connection() -> bool {
    gatehouse_proxy::property(&["connection", "tls_version"])
        .map(|v| !v.is_empty())
        .unwrap_or(false)
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let headers = gatehouse_proxy::request_headers();
        // The TLS property is read only if a trusted x-forwarded-proto
        // does not decide.
        match self.shared.policy.decide_lazy(&headers, &tls_connection) {
            Outcome::Secure { hsts } => {
                self.hsts = hsts;
                Action::Continue
            }
            Outcome::Exempt(_) => {
                self.shared.metrics.exempted.inc();
                Action::Continue
            }
            Outcome::Redirect { status, location } => {
                self.shared.metrics.redirected.inc();
                gatehouse_proxy::send_local_reply(status, &[("location", &location)], b"");
                Action::Pause
            }
            Outcome::Reject(reason) => {
                self.shared.metrics.rejected.inc();
                let id = safe_request_id(&headers);
                let body = error_body(reason.code(), reason.message(), id);
                gatehouse_proxy::send_local_reply(
                    400,
                    &[("content-type", "application/json")],
                    body.as_bytes(),
                );
                Action::Pause
            }
        }
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if let Some(v) = self.hsts.take() {
            gatehouse_proxy::apply_response_ops(&[HeaderOp::Set(HSTS_HEADER.to_string(), v)]);
        }
        Action::Continue
    }
}

gatehouse_proxy::filter_entry!(Root);
