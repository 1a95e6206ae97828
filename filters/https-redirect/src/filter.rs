//! The proxy-wasm adapter: reads the request headers and the connection's
//! TLS state, asks [`Policy`] what to do, and applies the answer.

use crate::config::Config;
use crate::policy::{safe_request_id, Outcome, Policy, HSTS_HEADER};
use gatehouse_core::reply::error_body;
use gatehouse_core::HeaderOp;
use gatehouse_proxy::Counter;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};
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

/// The root context: holds the compiled policy and the counters.
#[derive(Default)]
pub struct Root {
    policy: Option<Rc<Policy>>,
    metrics: Option<Rc<Metrics>>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let cfg = match gatehouse_proxy::load_config::<Config>(
            FILTER,
            gatehouse_proxy::plugin_configuration(),
        ) {
            Ok(c) => c,
            Err(_) => return false,
        };
        match Policy::new(&cfg) {
            Ok(p) => {
                self.policy = Some(Rc::new(p));
                if self.metrics.is_none() {
                    self.metrics = Some(Rc::new(Metrics::define()));
                }
                true
            }
            Err(err) => {
                log::error!("gatehouse {FILTER}: invalid configuration: {err}");
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let policy = self.policy.clone()?;
        let metrics = self.metrics.clone()?;
        Some(Box::new(Http {
            policy,
            metrics,
            hsts: None,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Http {
    policy: Rc<Policy>,
    metrics: Rc<Metrics>,
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
        let tls = tls_connection();
        match self.policy.decide(&headers, tls) {
            Outcome::Secure { hsts } => {
                self.hsts = hsts;
                Action::Continue
            }
            Outcome::Exempt(_) => {
                self.metrics.exempted.inc();
                Action::Continue
            }
            Outcome::Redirect { status, location } => {
                self.metrics.redirected.inc();
                gatehouse_proxy::send_local_reply(status, &[("location", &location)], b"");
                Action::Pause
            }
            Outcome::Reject(reason) => {
                self.metrics.rejected.inc();
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
