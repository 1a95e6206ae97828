//! The thin shared layer over proxy-wasm.
//!
//! Everything here is a host call or a direct wrapper around one; there is
//! no decision logic. Filters read headers into a [`HeaderSnapshot`] with one
//! call, decide in pure code, and apply [`HeaderOp`]s back. Header values are
//! always read as bytes: proxy-wasm 0.2's string getters `unwrap()` UTF-8 and
//! would trap the VM on a non-ASCII header.

use abi::Map;
use gatehouse_core::{
    parse_config, Clock, ConfigError, HeaderOp, HeaderSnapshot, RandomSource, Validate,
};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;
use serde::de::DeserializeOwned;
use std::rc::Rc;

pub use counters::Counter;
pub use proxy_wasm;

pub mod abi;
pub mod counters;
#[cfg(all(feature = "fake-host", not(target_arch = "wasm32")))]
pub mod fake;
pub mod grpc;
pub mod shared_data;

/// What a filter's adapter gives the one generic root context, [`Root`]:
/// the worker's state built once per `on_configure` (configuration parsed
/// and compiled once, counters defined), and the HTTP context of a request.
pub trait Filter: Sized + 'static {
    /// The filter's name in logs (`gatehouse <NAME>: ...`).
    const NAME: &'static str;

    /// Builds the state from the plugin configuration bytes. An error
    /// refuses the configuration: [`Root`] logs it as the one line naming
    /// the field (it must never quote a secret value).
    fn configure(config: &[u8]) -> Result<Self, ConfigError>;

    /// The HTTP context for one request.
    fn http_context(state: Rc<Self>, context_id: u32) -> Box<dyn HttpContext>;
}

/// The root context of every filter whose root has nothing of its own:
/// configures `F` and creates its HTTP contexts.
pub struct Root<F: Filter> {
    state: Option<Rc<F>>,
}

impl<F: Filter> Default for Root<F> {
    fn default() -> Self {
        Root { state: None }
    }
}

impl<F: Filter> Root<F> {
    /// The state of the configuration in force, if one was accepted (for a
    /// filter whose root does more, e.g. callouts and ticks of its own).
    pub fn state(&self) -> Option<Rc<F>> {
        self.state.clone()
    }
}

impl<F: Filter> Context for Root<F> {
    fn on_done(&mut self) -> bool {
        counters::flush();
        true
    }
}

impl<F: Filter> RootContext for Root<F> {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let bytes = plugin_configuration().unwrap_or_default();
        match F::configure(&bytes) {
            Ok(state) => {
                log::info!("gatehouse {}: configuration accepted", F::NAME);
                self.state = Some(Rc::new(state));
                counters::start_flushing();
                true
            }
            Err(err) => {
                log::error!("gatehouse {}: invalid configuration: {err}", F::NAME);
                false
            }
        }
    }

    fn on_tick(&mut self) {
        counters::flush();
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(F::http_context(self.state.clone()?, context_id))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// Parses the plugin configuration. On failure logs exactly one line naming
/// the field and returns the error, so `on_configure` can return `false` and
/// Envoy refuses the config.
pub fn load_config<T: DeserializeOwned + Validate>(
    filter: &str,
    bytes: Option<Vec<u8>>,
) -> Result<T, ConfigError> {
    let raw = bytes.unwrap_or_default();
    match parse_config::<T>(&raw) {
        Ok(cfg) => {
            log::info!("gatehouse {filter}: configuration accepted");
            Ok(cfg)
        }
        Err(err) => {
            log::error!("gatehouse {filter}: invalid configuration: {err}");
            Err(err)
        }
    }
}

/// The plugin configuration bytes, as the root context receives them.
pub fn plugin_configuration() -> Option<Vec<u8>> {
    if let Some(bytes) = fused::config_override() {
        return Some(bytes);
    }
    abi::buffer(abi::Buffer::PluginConfiguration, usize::MAX)
        .ok()
        .flatten()
}

fn snapshot(map: Map) -> HeaderSnapshot {
    match abi::header_pairs(map) {
        Ok(entries) => HeaderSnapshot::new(entries),
        Err(status) => {
            log::warn!("gatehouse: reading headers failed: {status:?}");
            HeaderSnapshot::default()
        }
    }
}

/// All request headers (pseudo-headers included), one host call. Inside a
/// fused chain the snapshot is read once per callback and shared by every
/// stage (kept coherent with the edits the stages make).
pub fn request_headers() -> HeaderSnapshot {
    if let Some(cached) = fused::cached_request_headers() {
        return cached;
    }
    let h = snapshot(Map::RequestHeaders);
    fused::store_request_headers(&h);
    h
}

/// All response headers, one host call.
pub fn response_headers() -> HeaderSnapshot {
    snapshot(Map::ResponseHeaders)
}

/// One request header as bytes.
pub fn request_header(name: &str) -> Option<Vec<u8>> {
    if let Some(cached) = fused::cached_request_headers() {
        return cached.first(name).map(<[u8]>::to_vec);
    }
    abi::header(Map::RequestHeaders, name).ok().flatten()
}

fn apply(map: Map, ops: &[HeaderOp]) {
    for op in ops {
        let result = match op {
            HeaderOp::Set(name, value) => abi::replace_header(map, name, value.as_bytes()),
            HeaderOp::Add(name, value) => abi::add_header(map, name, value.as_bytes()),
            HeaderOp::Remove(name) => abi::remove_header(map, name),
        };
        if let Err(status) = result {
            log::warn!(
                "gatehouse: editing header `{}` failed: {status:?}",
                op.name()
            );
        }
    }
}

/// Edits the request headers. Inside a fused callback the edits go to the
/// shared snapshot and reach Envoy in one write when the callback ends (or
/// before a local reply or a route-cache clear).
pub fn apply_request_ops(ops: &[HeaderOp]) {
    if ops.is_empty() {
        return;
    }
    if !fused::defer_request_ops(ops) {
        apply(Map::RequestHeaders, ops);
    }
}

/// From this many edits on, the request headers are written back whole
/// (one `set_header_map_pairs`) instead of one call per edit.
pub const WRITE_WHOLE_FROM: usize = 3;

/// Edits the request headers that were read as `read`: one call per edit,
/// or, from [`WRITE_WHOLE_FROM`] edits, `read` with the edits written back
/// in one call. Inside a fused callback as [`apply_request_ops`].
pub fn edit_request_headers(read: &HeaderSnapshot, ops: &[HeaderOp]) {
    if ops.len() < WRITE_WHOLE_FROM || fused::in_callback() {
        apply_request_ops(ops);
        return;
    }
    if let Err(st) = abi::set_header_pairs(Map::RequestHeaders, &read.pairs_after(ops)) {
        log::warn!("gatehouse: writing the request headers failed: {st:?}");
    }
}

pub fn apply_response_ops(ops: &[HeaderOp]) {
    apply(Map::ResponseHeaders, ops)
}

/// Answers the request from the filter (Envoy local reply).
pub fn send_local_reply(status: u16, headers: &[(&str, &str)], body: &[u8]) {
    fused::write_request_headers();
    if let Err(st) = abi::send_local_response(status, headers, body) {
        log::warn!("gatehouse: local reply failed: {st:?}");
    }
    fused::note_local_reply();
}

/// Lets a paused request go on (after an HTTP callout answered). Inside a
/// fused chain the chain resumes the remaining stages first, then Envoy.
pub fn resume_request() {
    if fused::note_resume() {
        return;
    }
    if let Err(st) = abi::continue_request() {
        log::warn!("gatehouse: resuming the request failed: {st:?}");
    }
}

/// Resumes the request of the effective context directly (after
/// [`set_effective_context`]), not through a fused chain: for requests woken
/// from another context, and for the fused chain itself.
pub fn resume_paused_request() {
    if let Err(st) = abi::continue_request() {
        log::warn!("gatehouse: resuming the request failed: {st:?}");
    }
}

/// Makes `context_id` the context later host calls act on; false when the
/// context is gone.
pub fn set_effective_context(context_id: u32) -> bool {
    abi::set_effective_context(context_id).is_ok()
}

/// Ticks the root context every `period` (per worker).
pub fn set_tick_period(period: std::time::Duration) {
    let ms = u32::try_from(period.as_millis()).unwrap_or(u32::MAX);
    if let Err(st) = abi::set_tick_period_ms(ms) {
        log::warn!("gatehouse: setting the tick period failed: {st:?}");
    }
}

/// Sends an HTTP request to an Envoy cluster; the answer arrives in
/// `on_http_call_response` with the returned token.
pub fn dispatch_http_call(
    cluster: &str,
    headers: Vec<(&str, &str)>,
    timeout: std::time::Duration,
) -> Result<u32, String> {
    // The SDK's wrapper: only it registers the token with its dispatcher
    // (see abi.rs). It returns BadArgument for an unknown cluster.
    proxy_wasm::hostcalls::dispatch_http_call(cluster, headers, None, vec![], timeout)
        .map_err(|st| format!("{st:?}"))
}

/// The `:status` of the HTTP call response being delivered.
pub fn http_call_response_status() -> Option<Vec<u8>> {
    abi::header(Map::HttpCallResponseHeaders, ":status")
        .ok()
        .flatten()
}

/// The body of the HTTP call response being delivered (`size` bytes).
pub fn http_call_response_body(size: usize) -> Option<Vec<u8>> {
    abi::buffer(abi::Buffer::HttpCallResponseBody, size)
        .ok()
        .flatten()
}

/// A connection/request property (Envoy attributes), e.g.
/// `["connection", "tls_version"]`.
pub fn property(path: &[&str]) -> Option<Vec<u8>> {
    abi::property(path).ok().flatten()
}

/// Asks Envoy to resolve the route again after a routing-relevant header
/// changed (needed since Envoy 1.33: header edits from Wasm no longer clear
/// the route cache).
pub fn clear_route_cache() {
    fused::write_request_headers();
    if let Err(st) = abi::call_foreign_function("clear_route_cache") {
        log::warn!("gatehouse: clear_route_cache failed: {st:?}");
    }
}

/// The host clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct HostClock;

impl Clock for HostClock {
    /// One host call; inside a fused callback the stages share one reading.
    fn now_unix_nanos(&self) -> u64 {
        if let Some(now) = fused::cached_now() {
            return now;
        }
        let now = host_now();
        fused::store_now(now);
        now
    }
}

fn host_now() -> u64 {
    abi::current_time_nanos().unwrap_or(0)
}

/// Random bytes from WASI `random_get`, fetched 256 at a time so a request
/// costs at most one host call.
pub struct HostRandom {
    buf: [u8; 256],
    pos: usize,
}

impl Default for HostRandom {
    fn default() -> Self {
        HostRandom {
            buf: [0; 256],
            pos: 256,
        }
    }
}

impl HostRandom {
    fn refill(&mut self) {
        if getrandom::fill(&mut self.buf).is_err() {
            // WASI random_get does not fail in Envoy; if it ever did, fall
            // back to a clock-seeded generator rather than trapping.
            let mut fallback = gatehouse_core::random::SplitMix64(HostClock.now_unix_nanos());
            fallback.fill(&mut self.buf);
        }
        self.pos = 0;
    }
}

impl RandomSource for HostRandom {
    fn fill(&mut self, out: &mut [u8]) {
        for b in out.iter_mut() {
            if self.pos >= self.buf.len() {
                self.refill();
            }
            *b = self.buf.get(self.pos).copied().unwrap_or(0);
            self.pos += 1;
        }
    }
}

/// The `log` crate's lines go to Envoy's log through the raw `proxy_log`
/// (the SDK's logger panics on a status it does not expect).
struct HostLogger;

impl log::Log for HostLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::Level::Info
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        // proxy-wasm LogLevel: trace 0, debug 1, info 2, warn 3, error 4.
        let level = match record.level() {
            log::Level::Trace => 0,
            log::Level::Debug => 1,
            log::Level::Info => 2,
            log::Level::Warn => 3,
            log::Level::Error => 4,
        };
        abi::log(level, &record.args().to_string());
    }

    fn flush(&self) {}
}

static LOGGER: HostLogger = HostLogger;

/// Sets up logging once per VM: `log` lines at info and above, and a panic
/// (which traps the VM) logged at critical before it does.
pub fn init_logging() {
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(log::LevelFilter::Info);
        std::panic::set_hook(Box::new(|info| abi::log(5, &info.to_string())));
    }
}

/// Support for running several filters as stages of one HTTP context (the
/// fused chain of `gatehouse.wasm`). Outside a fused callback every function
/// here is inert, so separate filters behave exactly as before.
pub mod fused {
    use gatehouse_core::{HeaderOp, HeaderSnapshot};
    use std::cell::RefCell;

    #[derive(Default)]
    struct Callback {
        request_headers: Option<HeaderSnapshot>,
        /// The host clock, read once per callback (nanoseconds).
        now: Option<u64>,
        /// Stages edited the request headers: the snapshot is written back
        /// in one call.
        request_headers_edited: bool,
        local_reply_sent: bool,
        resume_requested: bool,
    }

    thread_local! {
        static CONFIG: RefCell<Option<Vec<u8>>> = const { RefCell::new(None) };
        static CALLBACK: RefCell<Option<Callback>> = const { RefCell::new(None) };
    }

    /// Runs `f` (a stage's `on_configure`) with `bytes` as its plugin
    /// configuration.
    pub fn with_configuration<R>(bytes: Vec<u8>, f: impl FnOnce() -> R) -> R {
        CONFIG.with(|c| *c.borrow_mut() = Some(bytes));
        let r = f();
        CONFIG.with(|c| *c.borrow_mut() = None);
        r
    }

    pub(crate) fn config_override() -> Option<Vec<u8>> {
        CONFIG.with(|c| c.borrow().clone())
    }

    /// Starts one fused callback: headers read by the first stage are cached
    /// for the others until [`end_callback`].
    pub fn begin_callback() {
        CALLBACK.with(|c| *c.borrow_mut() = Some(Callback::default()));
    }

    /// Ends the callback, writing the stages' request-header edits (one
    /// call); returns (local reply sent, resume requested).
    pub fn end_callback() -> (bool, bool) {
        write_request_headers();
        CALLBACK.with(|c| {
            c.borrow_mut().take().map_or((false, false), |cb| {
                (cb.local_reply_sent, cb.resume_requested)
            })
        })
    }

    /// Whether a fused callback is running (this code runs as a stage).
    pub fn in_callback() -> bool {
        CALLBACK.with(|c| c.borrow().is_some())
    }

    /// Whether a stage answered the request itself in this callback.
    pub fn local_reply_sent() -> bool {
        CALLBACK.with(|c| c.borrow().as_ref().is_some_and(|cb| cb.local_reply_sent))
    }

    pub(crate) fn cached_request_headers() -> Option<HeaderSnapshot> {
        CALLBACK.with(|c| {
            c.borrow()
                .as_ref()
                .and_then(|cb| cb.request_headers.clone())
        })
    }

    pub(crate) fn cached_now() -> Option<u64> {
        CALLBACK.with(|c| c.borrow().as_ref().and_then(|cb| cb.now))
    }

    pub(crate) fn store_now(now: u64) {
        CALLBACK.with(|c| {
            if let Some(cb) = c.borrow_mut().as_mut() {
                cb.now = Some(now);
            }
        })
    }

    pub(crate) fn store_request_headers(h: &HeaderSnapshot) {
        CALLBACK.with(|c| {
            if let Some(cb) = c.borrow_mut().as_mut() {
                cb.request_headers = Some(h.clone());
            }
        })
    }

    /// Inside a fused callback whose stages read the request headers:
    /// applies `ops` to the shared snapshot and marks it for writing back
    /// (true). Otherwise false: the caller writes them itself.
    pub(crate) fn defer_request_ops(ops: &[HeaderOp]) -> bool {
        CALLBACK.with(|c| match c.borrow_mut().as_mut() {
            Some(cb) => match cb.request_headers.as_mut() {
                Some(h) => {
                    h.apply(ops);
                    cb.request_headers_edited = true;
                    true
                }
                None => false,
            },
            None => false,
        })
    }

    /// Writes the edited snapshot back as the request headers: one
    /// `set_header_map_pairs` for every edit the stages made so far.
    pub(crate) fn write_request_headers() {
        CALLBACK.with(|c| {
            let mut c = c.borrow_mut();
            let Some(cb) = c.as_mut() else {
                return;
            };
            if !std::mem::take(&mut cb.request_headers_edited) {
                return;
            }
            // Written from the snapshot in place (the host call does not
            // re-enter this state): no copy of the headers.
            if let Some(h) = cb.request_headers.as_ref() {
                let pairs: Vec<(&str, &[u8])> = h.iter().collect();
                if let Err(st) = crate::abi::set_header_pairs(crate::Map::RequestHeaders, &pairs) {
                    log::warn!("gatehouse: writing the request headers failed: {st:?}");
                }
            }
        })
    }

    pub(crate) fn note_local_reply() {
        CALLBACK.with(|c| {
            if let Some(cb) = c.borrow_mut().as_mut() {
                cb.local_reply_sent = true;
            }
        })
    }

    /// True (and recorded) inside a fused callback: the chain resumes.
    pub(crate) fn note_resume() -> bool {
        CALLBACK.with(|c| match c.borrow_mut().as_mut() {
            Some(cb) => {
                cb.resume_requested = true;
                true
            }
            None => false,
        })
    }
}

/// The entry point every filter module shares. `filter_entry!(Root)`
/// defines `pub fn new_root` (building `Root::default()`, also used by the
/// combined gatehouse.wasm) and the proxy-wasm entry point; `filter_entry!()`
/// adds only the entry point, for a filter with its own `new_root`. The
/// entry point is left out when the filter crate is built with its
/// `no-entry` feature (as a library of gatehouse.wasm), and in native test
/// builds (which drive `new_root` through [`fake`]).
#[macro_export]
macro_rules! filter_entry {
    () => {
        #[cfg(all(not(feature = "no-entry"), target_os = "wasi"))]
        $crate::proxy_wasm::main! {{
            $crate::init_logging();
            $crate::proxy_wasm::set_root_context(new_root);
        }}
    };
    ($root:ty) => {
        /// Root context factory (also used by the combined gatehouse.wasm module).
        pub fn new_root(_context_id: u32) -> Box<dyn $crate::proxy_wasm::traits::RootContext> {
            Box::new(<$root>::default())
        }
        $crate::filter_entry!();
    };
}
