//! A recording fake host at the proxy-wasm ABI, for native unit tests of
//! the adapters (feature `fake-host`, never in a Wasm build).
//!
//! It defines the `proxy_*` functions Envoy exports to a module, with the
//! signatures the proxy-wasm SDK and this crate's own extern blocks declare,
//! so the real SDK dispatcher and the real adapters run natively against
//! it. Every call is recorded by its ABI name: the call log of a phase is
//! what the host-call budgets (`docs/benchmarks.md`) are checked against.
//! State is per thread (a test thread is one VM). Returned buffers are
//! leaked boxed slices (capacity == length), which is how the SDK frees
//! them (`Vec::from_raw_parts(ptr, len, len)`).
//!
//! This is test support: it panics on misuse.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::missing_safety_doc
)]

use proxy_wasm::types::{Action, NewRootContext};
use std::cell::RefCell;
use std::collections::HashMap;

const OK: u32 = 0;
const NOT_FOUND: u32 = 1;
const CAS_MISMATCH: u32 = 8;

type Map = Vec<(String, Vec<u8>)>;

/// A local reply the filter sent (`proxy_send_local_response`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    pub status: u32,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

/// An HTTP callout the filter dispatched (`proxy_http_call`).
#[derive(Debug, Clone)]
pub struct HttpCall {
    pub token: u32,
    pub cluster: String,
    pub headers: Map,
}

/// A gRPC callout the filter dispatched (`proxy_grpc_call`).
#[derive(Debug, Clone)]
pub struct GrpcCall {
    pub token: u32,
    pub cluster: String,
    pub service: String,
    pub method: String,
    pub message: Vec<u8>,
}

#[derive(Default)]
struct Host {
    calls: Vec<&'static str>,
    maps: HashMap<u32, Map>,
    buffers: HashMap<u32, Vec<u8>>,
    properties: HashMap<Vec<u8>, Vec<u8>>,
    shared: HashMap<String, (Vec<u8>, u32)>,
    metrics: Vec<(String, u64)>,
    now_nanos: u64,
    next_token: u32,
    local_reply: Option<LocalReply>,
    http_calls: Vec<HttpCall>,
    grpc_calls: Vec<GrpcCall>,
    grpc_status: (u32, Vec<u8>),
    logs: Vec<(u32, String)>,
}

thread_local! {
    static HOST: RefCell<Host> = RefCell::new(Host {
        now_nanos: 1_800_000_000_000_000_000,
        ..Host::default()
    });
    static NEXT_CONTEXT: std::cell::Cell<u32> = const { std::cell::Cell::new(1) };
}

fn host<R>(name: &'static str, f: impl FnOnce(&mut Host) -> R) -> R {
    HOST.with(|h| {
        let mut h = h.borrow_mut();
        h.calls.push(name);
        f(&mut h)
    })
}

fn state<R>(f: impl FnOnce(&mut Host) -> R) -> R {
    HOST.with(|h| f(&mut h.borrow_mut()))
}

unsafe fn bytes<'a>(ptr: *const u8, len: usize) -> &'a [u8] {
    if ptr.is_null() || len == 0 {
        &[]
    } else {
        std::slice::from_raw_parts(ptr, len)
    }
}

unsafe fn string(ptr: *const u8, len: usize) -> String {
    String::from_utf8_lossy(bytes(ptr, len)).into_owned()
}

unsafe fn give(data: Vec<u8>, out: *mut *mut u8, out_len: *mut usize) {
    let boxed = data.into_boxed_slice();
    *out_len = boxed.len();
    *out = Box::into_raw(boxed).cast::<u8>();
}

fn serialize_map(map: &Map) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(map.len() as u32).to_le_bytes());
    for (k, v) in map {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in map {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}

fn deserialize_map(data: &[u8]) -> Map {
    if data.is_empty() {
        return Vec::new();
    }
    let word = |at: usize| u32::from_le_bytes(data[at..at + 4].try_into().unwrap()) as usize;
    let n = word(0);
    let mut p = 4 + n * 8;
    let mut map = Vec::with_capacity(n);
    for i in 0..n {
        let (kl, vl) = (word(4 + i * 8), word(8 + i * 8));
        let k = String::from_utf8_lossy(&data[p..p + kl]).into_owned();
        p += kl + 1;
        let v = data[p..p + vl].to_vec();
        p += vl + 1;
        map.push((k, v));
    }
    map
}

// --- the ABI -------------------------------------------------------------

#[no_mangle]
pub unsafe extern "C" fn proxy_log(level: u32, data: *const u8, size: usize) -> u32 {
    let message = string(data, size);
    // Not through `host`: the SDK's panic hook logs here, possibly while the
    // state is borrowed.
    HOST.with(|h| {
        if let Ok(mut h) = h.try_borrow_mut() {
            h.calls.push("proxy_log");
            h.logs.push((level, message.clone()));
        }
    });
    eprintln!("[proxy_log {level}] {message}");
    OK
}

#[no_mangle]
pub unsafe extern "C" fn proxy_get_log_level(out: *mut u32) -> u32 {
    host("proxy_get_log_level", |_| *out = 2);
    OK
}

#[no_mangle]
pub unsafe extern "C" fn proxy_get_current_time_nanoseconds(out: *mut u64) -> u32 {
    host("proxy_get_current_time_nanoseconds", |h| *out = h.now_nanos);
    OK
}

#[no_mangle]
pub extern "C" fn proxy_set_tick_period_milliseconds(_period: u32) -> u32 {
    host("proxy_set_tick_period_milliseconds", |_| OK)
}

#[no_mangle]
pub unsafe extern "C" fn proxy_get_buffer_bytes(
    buffer_type: u32,
    start: usize,
    max_size: usize,
    out: *mut *mut u8,
    out_len: *mut usize,
) -> u32 {
    host("proxy_get_buffer_bytes", |h| {
        match h.buffers.get(&buffer_type) {
            Some(b) => {
                let from = start.min(b.len());
                let to = from.saturating_add(max_size).min(b.len());
                give(b[from..to].to_vec(), out, out_len);
                OK
            }
            None => NOT_FOUND,
        }
    })
}

#[no_mangle]
pub unsafe extern "C" fn proxy_set_buffer_bytes(
    buffer_type: u32,
    _start: usize,
    _size: usize,
    data: *const u8,
    size: usize,
) -> u32 {
    let data = bytes(data, size).to_vec();
    host("proxy_set_buffer_bytes", |h| {
        h.buffers.insert(buffer_type, data);
        OK
    })
}

#[no_mangle]
pub unsafe extern "C" fn proxy_get_header_map_pairs(
    map_type: u32,
    out: *mut *mut u8,
    out_len: *mut usize,
) -> u32 {
    host("proxy_get_header_map_pairs", |h| {
        let map = h.maps.get(&map_type).cloned().unwrap_or_default();
        give(serialize_map(&map), out, out_len);
        OK
    })
}

#[no_mangle]
pub unsafe extern "C" fn proxy_set_header_map_pairs(
    map_type: u32,
    data: *const u8,
    size: usize,
) -> u32 {
    let map = deserialize_map(bytes(data, size));
    host("proxy_set_header_map_pairs", |h| {
        h.maps.insert(map_type, map);
        OK
    })
}

#[no_mangle]
pub unsafe extern "C" fn proxy_get_header_map_value(
    map_type: u32,
    key: *const u8,
    key_size: usize,
    out: *mut *mut u8,
    out_len: *mut usize,
) -> u32 {
    let key = string(key, key_size);
    host("proxy_get_header_map_value", |h| {
        let found = h
            .maps
            .get(&map_type)
            .and_then(|m| m.iter().find(|(k, _)| k.eq_ignore_ascii_case(&key)))
            .map(|(_, v)| v.clone());
        match found {
            Some(v) => {
                give(v, out, out_len);
                OK
            }
            None => NOT_FOUND,
        }
    })
}

#[no_mangle]
pub unsafe extern "C" fn proxy_remove_header_map_value(
    map_type: u32,
    key: *const u8,
    key_size: usize,
) -> u32 {
    let key = string(key, key_size);
    host("proxy_remove_header_map_value", |h| {
        h.maps
            .entry(map_type)
            .or_default()
            .retain(|(k, _)| !k.eq_ignore_ascii_case(&key));
        OK
    })
}

#[no_mangle]
pub unsafe extern "C" fn proxy_replace_header_map_value(
    map_type: u32,
    key: *const u8,
    key_size: usize,
    value: *const u8,
    value_size: usize,
) -> u32 {
    let key = string(key, key_size).to_ascii_lowercase();
    let value = bytes(value, value_size).to_vec();
    host("proxy_replace_header_map_value", |h| {
        let map = h.maps.entry(map_type).or_default();
        match map.iter().position(|(k, _)| k.eq_ignore_ascii_case(&key)) {
            Some(i) => {
                map[i].1 = value;
                let mut seen = 0;
                map.retain(|(k, _)| {
                    if k.eq_ignore_ascii_case(&key) {
                        seen += 1;
                        seen == 1
                    } else {
                        true
                    }
                });
            }
            None => map.push((key, value)),
        }
        OK
    })
}

#[no_mangle]
pub unsafe extern "C" fn proxy_add_header_map_value(
    map_type: u32,
    key: *const u8,
    key_size: usize,
    value: *const u8,
    value_size: usize,
) -> u32 {
    let key = string(key, key_size).to_ascii_lowercase();
    let value = bytes(value, value_size).to_vec();
    host("proxy_add_header_map_value", |h| {
        h.maps.entry(map_type).or_default().push((key, value));
        OK
    })
}

#[no_mangle]
pub unsafe extern "C" fn proxy_get_property(
    path: *const u8,
    path_size: usize,
    out: *mut *mut u8,
    out_len: *mut usize,
) -> u32 {
    let path = bytes(path, path_size).to_vec();
    host("proxy_get_property", |h| match h.properties.get(&path) {
        Some(v) => {
            give(v.clone(), out, out_len);
            OK
        }
        None => NOT_FOUND,
    })
}

#[no_mangle]
pub unsafe extern "C" fn proxy_set_property(
    path: *const u8,
    path_size: usize,
    value: *const u8,
    value_size: usize,
) -> u32 {
    let path = bytes(path, path_size).to_vec();
    let value = bytes(value, value_size).to_vec();
    host("proxy_set_property", |h| {
        h.properties.insert(path, value);
        OK
    })
}

#[no_mangle]
pub unsafe extern "C" fn proxy_get_shared_data(
    key: *const u8,
    key_size: usize,
    out: *mut *mut u8,
    out_len: *mut usize,
    out_cas: *mut u32,
) -> u32 {
    let key = string(key, key_size);
    host("proxy_get_shared_data", |h| match h.shared.get(&key) {
        Some((v, cas)) => {
            give(v.clone(), out, out_len);
            *out_cas = *cas;
            OK
        }
        None => NOT_FOUND,
    })
}

#[no_mangle]
pub unsafe extern "C" fn proxy_set_shared_data(
    key: *const u8,
    key_size: usize,
    value: *const u8,
    value_size: usize,
    cas: u32,
) -> u32 {
    let key = string(key, key_size);
    let value = bytes(value, value_size).to_vec();
    host("proxy_set_shared_data", |h| {
        let current = h.shared.get(&key).map_or(0, |(_, c)| *c);
        if cas != 0 && cas != current {
            return CAS_MISMATCH;
        }
        h.shared.insert(key, (value, current + 1));
        OK
    })
}

#[no_mangle]
pub unsafe extern "C" fn proxy_register_shared_queue(
    _name: *const u8,
    _name_size: usize,
    out: *mut u32,
) -> u32 {
    host("proxy_register_shared_queue", |_| *out = 1);
    OK
}

#[no_mangle]
pub unsafe extern "C" fn proxy_resolve_shared_queue(
    _vm_id: *const u8,
    _vm_id_size: usize,
    _name: *const u8,
    _name_size: usize,
    _out: *mut u32,
) -> u32 {
    host("proxy_resolve_shared_queue", |_| NOT_FOUND)
}

#[no_mangle]
pub unsafe extern "C" fn proxy_dequeue_shared_queue(
    _queue: u32,
    _out: *mut *mut u8,
    _out_len: *mut usize,
) -> u32 {
    host("proxy_dequeue_shared_queue", |_| 7)
}

#[no_mangle]
pub unsafe extern "C" fn proxy_enqueue_shared_queue(
    _queue: u32,
    _data: *const u8,
    _size: usize,
) -> u32 {
    host("proxy_enqueue_shared_queue", |_| OK)
}

#[no_mangle]
pub extern "C" fn proxy_continue_stream(_stream: u32) -> u32 {
    host("proxy_continue_stream", |_| OK)
}

#[no_mangle]
pub extern "C" fn proxy_close_stream(_stream: u32) -> u32 {
    host("proxy_close_stream", |_| OK)
}

#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn proxy_send_local_response(
    status: u32,
    _details: *const u8,
    _details_size: usize,
    body: *const u8,
    body_size: usize,
    headers: *const u8,
    headers_size: usize,
    _grpc_status: i32,
) -> u32 {
    let reply = LocalReply {
        status,
        headers: deserialize_map(bytes(headers, headers_size)),
        body: bytes(body, body_size).to_vec(),
    };
    host("proxy_send_local_response", |h| {
        assert!(h.local_reply.is_none(), "a second local reply");
        h.local_reply = Some(reply);
        OK
    })
}

#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn proxy_http_call(
    upstream: *const u8,
    upstream_size: usize,
    headers: *const u8,
    headers_size: usize,
    _body: *const u8,
    _body_size: usize,
    _trailers: *const u8,
    _trailers_size: usize,
    _timeout: u32,
    out_token: *mut u32,
) -> u32 {
    let cluster = string(upstream, upstream_size);
    let headers = deserialize_map(bytes(headers, headers_size));
    host("proxy_http_call", |h| {
        h.next_token += 1;
        let token = h.next_token;
        h.http_calls.push(HttpCall {
            token,
            cluster,
            headers,
        });
        *out_token = token;
        OK
    })
}

#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn proxy_grpc_call(
    upstream: *const u8,
    upstream_size: usize,
    service: *const u8,
    service_size: usize,
    method: *const u8,
    method_size: usize,
    _metadata: *const u8,
    _metadata_size: usize,
    message: *const u8,
    message_size: usize,
    _timeout: u32,
    out_token: *mut u32,
) -> u32 {
    let call = GrpcCall {
        token: 0,
        cluster: string(upstream, upstream_size),
        service: string(service, service_size),
        method: string(method, method_size),
        message: bytes(message, message_size).to_vec(),
    };
    host("proxy_grpc_call", |h| {
        h.next_token += 1;
        *out_token = h.next_token;
        h.grpc_calls.push(GrpcCall {
            token: h.next_token,
            ..call
        });
        OK
    })
}

#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn proxy_grpc_stream(
    _upstream: *const u8,
    _upstream_size: usize,
    _service: *const u8,
    _service_size: usize,
    _method: *const u8,
    _method_size: usize,
    _metadata: *const u8,
    _metadata_size: usize,
    _out: *mut u32,
) -> u32 {
    panic!("fake host: proxy_grpc_stream is not supported")
}

#[no_mangle]
pub unsafe extern "C" fn proxy_grpc_send(
    _token: u32,
    _data: *const u8,
    _size: usize,
    _end_stream: bool,
) -> u32 {
    panic!("fake host: proxy_grpc_send is not supported")
}

#[no_mangle]
pub extern "C" fn proxy_grpc_cancel(_token: u32) -> u32 {
    host("proxy_grpc_cancel", |_| OK)
}

#[no_mangle]
pub extern "C" fn proxy_grpc_close(_token: u32) -> u32 {
    host("proxy_grpc_close", |_| OK)
}

#[no_mangle]
pub unsafe extern "C" fn proxy_get_status(
    out_code: *mut u32,
    out: *mut *mut u8,
    out_len: *mut usize,
) -> u32 {
    host("proxy_get_status", |h| {
        *out_code = h.grpc_status.0;
        give(h.grpc_status.1.clone(), out, out_len);
        OK
    })
}

#[no_mangle]
pub extern "C" fn proxy_set_effective_context(_context_id: u32) -> u32 {
    host("proxy_set_effective_context", |_| OK)
}

#[no_mangle]
pub unsafe extern "C" fn proxy_call_foreign_function(
    _name: *const u8,
    _name_size: usize,
    _args: *const u8,
    _args_size: usize,
    out: *mut *mut u8,
    _out_len: *mut usize,
) -> u32 {
    host("proxy_call_foreign_function", |_| {
        *out = std::ptr::null_mut()
    });
    OK
}

#[no_mangle]
pub extern "C" fn proxy_done() -> u32 {
    host("proxy_done", |_| OK)
}

#[no_mangle]
pub unsafe extern "C" fn proxy_define_metric(
    _metric_type: u32,
    name: *const u8,
    name_size: usize,
    out: *mut u32,
) -> u32 {
    let name = string(name, name_size);
    host("proxy_define_metric", |h| {
        let id = match h.metrics.iter().position(|(n, _)| *n == name) {
            Some(i) => i,
            None => {
                h.metrics.push((name, 0));
                h.metrics.len() - 1
            }
        };
        *out = id as u32;
        OK
    })
}

#[no_mangle]
pub unsafe extern "C" fn proxy_get_metric(id: u32, out: *mut u64) -> u32 {
    host("proxy_get_metric", |h| match h.metrics.get(id as usize) {
        Some((_, v)) => {
            *out = *v;
            OK
        }
        None => NOT_FOUND,
    })
}

#[no_mangle]
pub extern "C" fn proxy_record_metric(id: u32, value: u64) -> u32 {
    host("proxy_record_metric", |h| {
        match h.metrics.get_mut(id as usize) {
            Some((_, v)) => {
                *v = value;
                OK
            }
            None => NOT_FOUND,
        }
    })
}

#[no_mangle]
pub extern "C" fn proxy_increment_metric(id: u32, offset: i64) -> u32 {
    host("proxy_increment_metric", |h| {
        match h.metrics.get_mut(id as usize) {
            Some((_, v)) => {
                *v = v.wrapping_add_signed(offset);
                OK
            }
            None => NOT_FOUND,
        }
    })
}

// --- the driver ----------------------------------------------------------

extern "C" {
    // The SDK's exports (proxy_wasm::dispatcher), called as Envoy would.
    fn proxy_on_context_create(context_id: u32, root_context_id: u32);
    fn proxy_on_vm_start(context_id: u32, vm_configuration_size: usize) -> bool;
    fn proxy_on_configure(context_id: u32, plugin_configuration_size: usize) -> bool;
    fn proxy_on_tick(context_id: u32);
    fn proxy_on_request_headers(context_id: u32, num_headers: usize, end_of_stream: bool)
        -> Action;
    fn proxy_on_response_headers(
        context_id: u32,
        num_headers: usize,
        end_of_stream: bool,
    ) -> Action;
    fn proxy_on_http_call_response(
        context_id: u32,
        token_id: u32,
        num_headers: usize,
        body_size: usize,
        num_trailers: usize,
    );
    fn proxy_on_grpc_receive(context_id: u32, token_id: u32, response_size: usize);
    fn proxy_on_grpc_close(context_id: u32, token_id: u32, status_code: u32);
    fn proxy_on_done(context_id: u32) -> bool;
}

fn next_context() -> u32 {
    NEXT_CONTEXT.with(|c| {
        let id = c.get();
        c.set(id + 1);
        id
    })
}

fn to_map(headers: &[(&str, &str)]) -> Map {
    headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect()
}

/// What one callback did: the action returned and the host calls made.
#[derive(Debug, Clone)]
pub struct Phase {
    pub action: Action,
    pub calls: Vec<&'static str>,
}

/// One root context (one plugin configuration on one worker) of a filter,
/// started and configured as Envoy does it.
pub struct Vm {
    root: u32,
}

/// A connection property (e.g. `["connection", "tls_version"]`) for
/// `proxy_get_property`.
pub fn set_property(path: &[&str], value: &[u8]) {
    state(|h| {
        h.properties
            .insert(path.join("\0").into_bytes(), value.to_vec());
    })
}

/// The host clock (`proxy_get_current_time_nanoseconds`).
pub fn set_time_nanos(nanos: u64) {
    state(|h| h.now_nanos = nanos)
}

impl Vm {
    /// Creates the root context with `new_root` and configures it with
    /// `config`; `None` when the configuration is refused. Logging is on
    /// at info, as in the filters' entry point.
    pub fn start(new_root: NewRootContext, config: &[u8]) -> Option<Vm> {
        static LOGGING: std::sync::Once = std::sync::Once::new();
        LOGGING.call_once(crate::init_logging);
        proxy_wasm::set_root_context(new_root);
        let root = next_context();
        state(|h| {
            h.buffers.insert(7, config.to_vec());
        });
        // SAFETY: the SDK's own exports, called with a fresh context id.
        let ok = unsafe {
            proxy_on_context_create(root, 0);
            proxy_on_vm_start(root, 0) && proxy_on_configure(root, config.len())
        };
        ok.then_some(Vm { root })
    }

    /// The root's id.
    pub fn root(&self) -> u32 {
        self.root
    }

    /// Creates an HTTP context (a request) of this root.
    pub fn http(&self) -> Http {
        let id = next_context();
        // SAFETY: the SDK's own export, with a fresh id and a live root.
        unsafe { proxy_on_context_create(id, self.root) };
        Http { id }
    }

    /// Runs the root's `on_tick`, recording its calls.
    pub fn tick(&self) -> Vec<&'static str> {
        take_calls();
        // SAFETY: the SDK's own export, with a live root.
        unsafe { proxy_on_tick(self.root) };
        take_calls()
    }
}

/// One HTTP context.
pub struct Http {
    id: u32,
}

impl Http {
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The request-headers callback with these request headers.
    pub fn request_headers(&self, headers: &[(&str, &str)]) -> Phase {
        state(|h| {
            h.maps.insert(0, to_map(headers));
            h.local_reply = None;
        });
        take_calls();
        // SAFETY: the SDK's own export, with a live context.
        let action = unsafe { proxy_on_request_headers(self.id, headers.len(), false) };
        Phase {
            action,
            calls: take_calls(),
        }
    }

    /// The response-headers callback with these response headers.
    pub fn response_headers(&self, headers: &[(&str, &str)]) -> Phase {
        state(|h| {
            h.maps.insert(2, to_map(headers));
        });
        take_calls();
        // SAFETY: the SDK's own export, with a live context.
        let action = unsafe { proxy_on_response_headers(self.id, headers.len(), false) };
        Phase {
            action,
            calls: take_calls(),
        }
    }

    /// Delivers the answer to HTTP callout `token`; returns the calls made.
    pub fn http_call_response(
        &self,
        token: u32,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Vec<&'static str> {
        state(|h| {
            h.maps.insert(6, to_map(headers));
            h.buffers.insert(4, body.to_vec());
        });
        take_calls();
        // SAFETY: the SDK's own export; the token came from the filter.
        unsafe { proxy_on_http_call_response(self.id, token, headers.len(), body.len(), 0) };
        take_calls()
    }

    /// Delivers the answer to gRPC callout `token` as Envoy does: a message
    /// (`proxy_on_grpc_receive`, status 0) or a failure status without one
    /// (`proxy_on_grpc_close`); returns the calls made.
    pub fn grpc_response(&self, token: u32, answer: Result<&[u8], u32>) -> Vec<&'static str> {
        state(|h| match answer {
            Ok(message) => {
                h.grpc_status = (0, Vec::new());
                h.buffers.insert(5, message.to_vec());
            }
            Err(code) => {
                h.grpc_status = (code, Vec::new());
                h.buffers.remove(&5);
            }
        });
        take_calls();
        // SAFETY: the SDK's own exports; the token came from the filter.
        unsafe {
            match answer {
                Ok(message) => proxy_on_grpc_receive(self.id, token, message.len()),
                Err(code) => proxy_on_grpc_close(self.id, token, code),
            }
        }
        take_calls()
    }

    /// Ends the context (`proxy_on_done`).
    pub fn done(&self) -> bool {
        // SAFETY: the SDK's own export, with a live context.
        unsafe { proxy_on_done(self.id) }
    }
}

/// The calls recorded since the last take.
pub fn take_calls() -> Vec<&'static str> {
    state(|h| std::mem::take(&mut h.calls))
}

/// The request headers as the filter left them.
pub fn request_headers() -> Vec<(String, Vec<u8>)> {
    state(|h| h.maps.get(&0).cloned().unwrap_or_default())
}

/// The response headers as the filter left them.
pub fn response_headers() -> Vec<(String, Vec<u8>)> {
    state(|h| h.maps.get(&2).cloned().unwrap_or_default())
}

/// One header's value (first match, case-insensitive) in `map`.
pub fn header(map: &[(String, Vec<u8>)], name: &str) -> Option<String> {
    map.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
}

/// The local reply sent in the last request-headers callback, if any.
pub fn local_reply() -> Option<LocalReply> {
    state(|h| h.local_reply.clone())
}

/// The HTTP callouts dispatched so far.
pub fn http_calls() -> Vec<HttpCall> {
    state(|h| h.http_calls.clone())
}

/// The gRPC callouts dispatched so far.
pub fn grpc_calls() -> Vec<GrpcCall> {
    state(|h| h.grpc_calls.clone())
}

/// A counter's value by name (0 when undefined).
pub fn metric(name: &str) -> u64 {
    state(|h| {
        h.metrics
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, v)| *v)
    })
}

/// The log lines so far (level, message).
pub fn logs() -> Vec<(u32, String)> {
    state(|h| h.logs.clone())
}

// --- the budgets ---------------------------------------------------------

/// The host calls of `calls` as the budget table writes them: ABI names
/// without `proxy_`, in first-call order, `×n` when repeated.
pub fn summarize(calls: &[&str]) -> String {
    let mut kinds: Vec<(&str, usize)> = Vec::new();
    for c in calls {
        let c = c.strip_prefix("proxy_").unwrap_or(c);
        match kinds.iter_mut().find(|(k, _)| *k == c) {
            Some((_, n)) => *n += 1,
            None => kinds.push((c, 1)),
        }
    }
    if kinds.is_empty() {
        return "–".to_string();
    }
    kinds
        .iter()
        .map(|(k, n)| {
            if *n == 1 {
                (*k).to_string()
            } else {
                format!("{k} ×{n}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The budget table's rows (filter, request, phase, host calls, which
/// calls), read from `docs/benchmarks.md` between its markers.
pub fn budget_rows() -> Vec<[String; 5]> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/benchmarks.md");
    let doc = std::fs::read_to_string(path).expect("docs/benchmarks.md");
    let begin = doc
        .find("<!-- host-call-budgets:begin -->")
        .expect("budget begin marker");
    let end = doc
        .find("<!-- host-call-budgets:end -->")
        .expect("budget end marker");
    doc[begin..end]
        .lines()
        .filter(|l| l.starts_with('|') && !l.starts_with("|---") && !l.contains("| filter |"))
        .map(|l| {
            let cells: Vec<String> = l
                .trim()
                .trim_matches('|')
                .split('|')
                .map(|c| c.trim().trim_matches('`').to_string())
                .collect();
            assert_eq!(cells.len(), 5, "budget row `{l}`");
            [
                cells[0].clone(),
                cells[1].clone(),
                cells[2].clone(),
                cells[3].clone(),
                cells[4].clone(),
            ]
        })
        .collect()
}

/// Asserts that `calls` are exactly the budget row (filter, request, phase)
/// of `docs/benchmarks.md`: the number and the kinds. More calls than the
/// budget fail, and so do fewer (lower the row with the cut).
pub fn assert_budget(filter: &str, request: &str, phase: &str, calls: &[&str]) {
    let rows = budget_rows();
    let row = rows
        .iter()
        .find(|r| r[0] == filter && r[1] == request && r[2] == phase)
        .unwrap_or_else(|| {
            panic!(
                "no budget row `| {filter} | {request} | {phase} | {} | {} |` in docs/benchmarks.md",
                calls.len(),
                summarize(calls)
            )
        });
    let budget: usize = row[3].parse().expect("host calls is a number");
    assert_eq!(
        (calls.len(), summarize(calls)),
        (budget, row[4].clone()),
        "host calls of {filter} / {request} / {phase} differ from the budget in docs/benchmarks.md \
         (measured: `| {filter} | {request} | {phase} | {} | {} |`)",
        calls.len(),
        summarize(calls)
    );
}

/// Asserts that the budget table's rows for `filter` are exactly `checked`
/// (request, phase), so no row is left without a test.
pub fn assert_rows_covered(filter: &str, checked: &[(&str, &str)]) {
    let mut rows: Vec<(String, String)> = budget_rows()
        .into_iter()
        .filter(|r| r[0] == filter)
        .map(|r| (r[1].clone(), r[2].clone()))
        .collect();
    let mut checked: Vec<(String, String)> = checked
        .iter()
        .map(|(r, p)| (r.to_string(), p.to_string()))
        .collect();
    rows.sort();
    checked.sort();
    assert_eq!(rows, checked, "budget rows of {filter} vs the tests");
}
