//! The proxy-wasm side of `gatehouse.wasm`: a root context that becomes the
//! filter named by its root id, and the fused chain.

use crate::{ChainConfig, CHAIN_ROOT_ID};
use gatehouse_core::inventory::{self, FILTERS};
use gatehouse_proxy::fused;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};

type NewRoot = fn(u32) -> Box<dyn RootContext>;

/// Each filter's root context factory, in inventory order: the root ids
/// `gatehouse.wasm` answers to.
const ROOTS: [(&str, NewRoot); FILTERS.len()] = [
    ("request-id", request_id::filter::new_root),
    ("https-redirect", https_redirect::filter::new_root),
    ("client-id", client_id::filter::new_root),
    ("rate-limit", rate_limit::filter::new_root),
    ("host-router", host_router::filter::new_root),
];

// The table follows the inventory, name for name: a mismatch does not
// compile (indexing here is evaluated by the compiler, never at run time).
#[allow(clippy::indexing_slicing)]
const _: () = {
    let mut i = 0;
    while i < FILTERS.len() {
        assert!(inventory::same_name(ROOTS[i].0, FILTERS[i]));
        i += 1;
    }
};

/// The root context factory of each filter, by root id.
fn factory(root_id: &str) -> Option<NewRoot> {
    ROOTS
        .iter()
        .find(|(name, _)| *name == root_id)
        .map(|(_, new_root)| *new_root)
}

/// A root context that turns into the filter its root id names when Envoy
/// configures it.
pub struct DispatchRoot {
    context_id: u32,
    inner: Option<Box<dyn RootContext>>,
}

impl DispatchRoot {
    pub fn new(context_id: u32) -> DispatchRoot {
        DispatchRoot {
            context_id,
            inner: None,
        }
    }
}

impl Context for DispatchRoot {
    fn on_http_call_response(&mut self, token: u32, headers: usize, body: usize, trailers: usize) {
        if let Some(inner) = self.inner.as_mut() {
            inner.on_http_call_response(token, headers, body, trailers);
        }
    }

    fn on_done(&mut self) -> bool {
        self.inner.as_mut().is_none_or(|i| i.on_done())
    }
}

impl RootContext for DispatchRoot {
    fn on_configure(&mut self, size: usize) -> bool {
        let root_id = gatehouse_proxy::property(&["plugin_root_id"])
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let mut inner: Box<dyn RootContext> = if root_id == CHAIN_ROOT_ID {
            Box::new(ChainRoot::new(self.context_id))
        } else if let Some(new_root) = factory(&root_id) {
            new_root(self.context_id)
        } else {
            log::error!(
                "gatehouse: invalid configuration: field `root_id`: `{root_id}` is not one of {}, {CHAIN_ROOT_ID}",
                inventory::names()
            );
            return false;
        };
        let ok = inner.on_configure(size);
        self.inner = Some(inner);
        ok
    }

    fn on_tick(&mut self) {
        if let Some(inner) = self.inner.as_mut() {
            inner.on_tick();
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        self.inner.as_ref()?.create_http_context(context_id)
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// The fused chain's root: one configured root per stage.
struct ChainRoot {
    context_id: u32,
    stages: Vec<Box<dyn RootContext>>,
}

impl ChainRoot {
    fn new(context_id: u32) -> ChainRoot {
        ChainRoot {
            context_id,
            stages: Vec::new(),
        }
    }
}

impl Context for ChainRoot {
    fn on_http_call_response(&mut self, token: u32, headers: usize, body: usize, trailers: usize) {
        for s in self.stages.iter_mut() {
            s.on_http_call_response(token, headers, body, trailers);
        }
    }

    fn on_done(&mut self) -> bool {
        // Every stage is told (each flushes the VM's counters).
        let mut done = true;
        for s in self.stages.iter_mut() {
            done &= s.on_done();
        }
        done
    }
}

impl RootContext for ChainRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let chain = match gatehouse_proxy::load_config::<ChainConfig>(
            CHAIN_ROOT_ID,
            gatehouse_proxy::plugin_configuration(),
        ) {
            Ok(c) => c,
            Err(_) => return false,
        };
        let mut stages = Vec::new();
        for (name, bytes) in chain.stages() {
            let Some(new_root) = factory(name) else {
                return false;
            };
            let mut root = new_root(self.context_id);
            let len = bytes.len();
            // Each stage parses its own configuration with its own parser
            // and, when it is bad, logs its own one-line error.
            if !fused::with_configuration(bytes, || root.on_configure(len)) {
                return false;
            }
            stages.push(root);
        }
        self.stages = stages;
        true
    }

    fn on_tick(&mut self) {
        for s in self.stages.iter_mut() {
            s.on_tick();
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let stages: Vec<Box<dyn HttpContext>> = self
            .stages
            .iter()
            .filter_map(|s| s.create_http_context(context_id))
            .collect();
        Some(Box::new(FusedHttp {
            stages,
            next: 0,
            entered: 0,
            headers: (0, false),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// One HTTP context running every stage in order.
struct FusedHttp {
    stages: Vec<Box<dyn HttpContext>>,
    /// The next stage to run on the request headers (after a pause).
    next: usize,
    /// How many stages saw the request (their response hooks run).
    entered: usize,
    /// `on_http_request_headers` arguments, kept for a resumed run.
    headers: (usize, bool),
}

impl FusedHttp {
    /// Runs the request stages from `self.next`; `Pause` when a stage
    /// answered (local reply) or waits for a callout.
    fn run_request(&mut self) -> Action {
        let (n, eos) = self.headers;
        fused::begin_callback();
        while let Some(stage) = self.stages.get_mut(self.next) {
            self.next += 1;
            self.entered = self.next;
            let action = stage.on_http_request_headers(n, eos);
            if fused::local_reply_sent() {
                self.next = self.stages.len();
                fused::end_callback();
                return Action::Pause;
            }
            if action != Action::Continue {
                fused::end_callback();
                return action;
            }
        }
        fused::end_callback();
        Action::Continue
    }
}

impl FusedHttp {
    /// After a stage's callout answered: when the stage asked to resume
    /// (and answered nothing itself), run the remaining stages, then let
    /// Envoy go on.
    fn after_callout(&mut self) {
        let (local_reply, resume) = fused::end_callback();
        if local_reply || !resume {
            return;
        }
        if self.run_request() == Action::Continue {
            gatehouse_proxy::resume_paused_request();
        }
    }
}

impl Context for FusedHttp {
    fn on_http_call_response(&mut self, token: u32, headers: usize, body: usize, trailers: usize) {
        fused::begin_callback();
        for s in self.stages.iter_mut().take(self.entered) {
            s.on_http_call_response(token, headers, body, trailers);
        }
        self.after_callout();
    }

    fn on_grpc_call_response(&mut self, token: u32, status: u32, size: usize) {
        // Tokens are per VM: only the stage that made the call knows it.
        fused::begin_callback();
        for s in self.stages.iter_mut().take(self.entered) {
            s.on_grpc_call_response(token, status, size);
        }
        self.after_callout();
    }

    fn on_done(&mut self) -> bool {
        // Every stage that saw the request cleans up (e.g. cancels a
        // callout in flight when the client went away).
        for s in self.stages.iter_mut().take(self.entered) {
            s.on_done();
        }
        true
    }
}

impl HttpContext for FusedHttp {
    fn on_http_request_headers(&mut self, n: usize, eos: bool) -> Action {
        self.headers = (n, eos);
        self.next = 0;
        self.run_request()
    }

    fn on_http_response_headers(&mut self, n: usize, eos: bool) -> Action {
        // Encoders run in reverse order, as separate filters would.
        for s in self.stages.iter_mut().take(self.entered).rev() {
            s.on_http_response_headers(n, eos);
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        for s in self.stages.iter_mut().take(self.entered) {
            s.on_log();
        }
    }
}

pub fn new_root(context_id: u32) -> Box<dyn RootContext> {
    Box::new(DispatchRoot::new(context_id))
}

#[cfg(target_os = "wasi")]
proxy_wasm::main! {{
    gatehouse_proxy::init_logging();
    proxy_wasm::set_root_context(new_root);
}}
