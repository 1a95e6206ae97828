//! The proxy-wasm ABI calls gatehouse makes, declared raw, each with every
//! host status an answer.
//!
//! proxy-wasm 0.2's `hostcalls` wrappers `panic!` on any status they do not
//! expect (a header map that is gone, a property Envoy refuses), and a
//! panic traps the VM: every request of the worker fails until Envoy makes
//! a new one. Here a status other than Ok is an `Err(status)` (or `None`
//! for "not found"), and the caller decides. Two calls stay with the SDK
//! because only its wrappers register the callout token with its
//! dispatcher: `dispatch_http_call` and `dispatch_grpc_call` (see grpc.rs;
//! their panic paths are statuses Envoy does not return for a plain
//! cluster name). Shared data and the gRPC answer are in shared_data.rs and
//! grpc.rs.
//!
//! Buffers the host returns were allocated through the SDK's exported
//! `proxy_on_memory_allocate` (a `Vec<u8>` with that capacity), so they are
//! taken back with `Vec::from_raw_parts`, as the SDK does.

use std::ptr::{null, null_mut};

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_log(level: u32, message: *const u8, message_size: usize) -> u32;
    fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    fn proxy_get_buffer_bytes(
        buffer_type: u32,
        start: usize,
        max_size: usize,
        return_data: *mut *mut u8,
        return_size: *mut usize,
    ) -> u32;
    fn proxy_get_header_map_pairs(
        map_type: u32,
        return_data: *mut *mut u8,
        return_size: *mut usize,
    ) -> u32;
    fn proxy_set_header_map_pairs(map_type: u32, data: *const u8, size: usize) -> u32;
    fn proxy_get_header_map_value(
        map_type: u32,
        key: *const u8,
        key_size: usize,
        return_data: *mut *mut u8,
        return_size: *mut usize,
    ) -> u32;
    fn proxy_replace_header_map_value(
        map_type: u32,
        key: *const u8,
        key_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_remove_header_map_value(map_type: u32, key: *const u8, key_size: usize) -> u32;
    fn proxy_add_header_map_value(
        map_type: u32,
        key: *const u8,
        key_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_get_property(
        path: *const u8,
        path_size: usize,
        return_data: *mut *mut u8,
        return_size: *mut usize,
    ) -> u32;
    fn proxy_send_local_response(
        status_code: u32,
        details: *const u8,
        details_size: usize,
        body: *const u8,
        body_size: usize,
        headers: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
    fn proxy_continue_stream(stream_type: u32) -> u32;
    fn proxy_set_effective_context(context_id: u32) -> u32;
    fn proxy_call_foreign_function(
        name: *const u8,
        name_size: usize,
        arguments: *const u8,
        arguments_size: usize,
        return_data: *mut *mut u8,
        return_size: *mut usize,
    ) -> u32;
    fn proxy_define_metric(
        metric_type: u32,
        name: *const u8,
        name_size: usize,
        return_id: *mut u32,
    ) -> u32;
    fn proxy_increment_metric(metric_id: u32, offset: i64) -> u32;
}

/// A host status other than Ok (proxy-wasm `WasmResult`: 1 NotFound,
/// 2 BadArgument, 10 InternalFailure, ...).
pub type Status = u32;

const OK: u32 = 0;
const NOT_FOUND: u32 = 1;
/// `StreamType::HttpRequest`.
const STREAM_HTTP_REQUEST: u32 = 0;
/// `MetricType::Counter`.
const METRIC_COUNTER: u32 = 0;

/// Proxy-wasm header maps (`MapType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Map {
    RequestHeaders = 0,
    ResponseHeaders = 2,
    HttpCallResponseHeaders = 6,
}

/// Proxy-wasm buffers (`BufferType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Buffer {
    HttpCallResponseBody = 4,
    PluginConfiguration = 7,
}

fn status(st: u32) -> Result<(), Status> {
    if st == OK {
        Ok(())
    } else {
        Err(st)
    }
}

/// Takes a host-allocated buffer back (`None` for a null pointer).
///
/// # Safety
/// `data`/`size` come from a host call that returned Ok: a buffer allocated
/// through `proxy_on_memory_allocate`, or null.
unsafe fn take(data: *mut u8, size: usize) -> Option<Vec<u8>> {
    if data.is_null() {
        None
    } else {
        Some(Vec::from_raw_parts(data, size, size))
    }
}

/// A call that returns a buffer: `Ok(None)` for NotFound or no data.
fn returned(call: impl FnOnce(*mut *mut u8, *mut usize) -> u32) -> Result<Option<Vec<u8>>, Status> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    match call(&mut data, &mut size) {
        // SAFETY: Ok means the host wrote a buffer it allocated (or null).
        OK => Ok(unsafe { take(data, size) }),
        NOT_FOUND => Ok(None),
        st => Err(st),
    }
}

/// Logs one line at `level` (proxy-wasm `LogLevel`: 0 trace .. 4 error).
pub fn log(level: u32, message: &str) {
    // SAFETY: a borrowed string for the duration of the call. A failed log
    // has nowhere to be reported.
    let _ = unsafe { proxy_log(level, message.as_ptr(), message.len()) };
}

/// The host clock, nanoseconds since the Unix epoch.
pub fn current_time_nanos() -> Result<u64, Status> {
    let mut t: u64 = 0;
    // SAFETY: writes one u64.
    status(unsafe { proxy_get_current_time_nanoseconds(&mut t) })?;
    Ok(t)
}

pub fn set_tick_period_ms(ms: u32) -> Result<(), Status> {
    // SAFETY: a plain value.
    status(unsafe { proxy_set_tick_period_milliseconds(ms) })
}

pub fn buffer(buffer: Buffer, max_size: usize) -> Result<Option<Vec<u8>>, Status> {
    // SAFETY: out-pointers to locals.
    returned(|d, s| unsafe { proxy_get_buffer_bytes(buffer as u32, 0, max_size, d, s) })
}

/// Every entry of a header map, in order (values as bytes).
pub fn header_pairs(map: Map) -> Result<Vec<(String, Vec<u8>)>, Status> {
    // SAFETY: out-pointers to locals.
    let bytes = returned(|d, s| unsafe { proxy_get_header_map_pairs(map as u32, d, s) })?;
    Ok(bytes.map(|b| deserialize_map(&b)).unwrap_or_default())
}

/// Replaces a whole header map with `pairs` (one call for any number of
/// edits).
pub fn set_header_pairs(map: Map, pairs: &[(&str, &[u8])]) -> Result<(), Status> {
    let bytes = serialize_map(pairs);
    // SAFETY: a borrowed buffer for the duration of the call.
    status(unsafe { proxy_set_header_map_pairs(map as u32, bytes.as_ptr(), bytes.len()) })
}

pub fn header(map: Map, name: &str) -> Result<Option<Vec<u8>>, Status> {
    // SAFETY: borrowed key, out-pointers to locals.
    returned(|d, s| unsafe {
        proxy_get_header_map_value(map as u32, name.as_ptr(), name.len(), d, s)
    })
}

pub fn replace_header(map: Map, name: &str, value: &[u8]) -> Result<(), Status> {
    // SAFETY: borrowed buffers for the duration of the call.
    status(unsafe {
        proxy_replace_header_map_value(
            map as u32,
            name.as_ptr(),
            name.len(),
            value.as_ptr(),
            value.len(),
        )
    })
}

pub fn add_header(map: Map, name: &str, value: &[u8]) -> Result<(), Status> {
    // SAFETY: borrowed buffers for the duration of the call.
    status(unsafe {
        proxy_add_header_map_value(
            map as u32,
            name.as_ptr(),
            name.len(),
            value.as_ptr(),
            value.len(),
        )
    })
}

pub fn remove_header(map: Map, name: &str) -> Result<(), Status> {
    // SAFETY: a borrowed key for the duration of the call.
    status(unsafe { proxy_remove_header_map_value(map as u32, name.as_ptr(), name.len()) })
}

/// A property (Envoy attribute) by path, e.g. `["connection", "tls_version"]`.
pub fn property(path: &[&str]) -> Result<Option<Vec<u8>>, Status> {
    let key = path.join("\0");
    // SAFETY: a borrowed path, out-pointers to locals.
    returned(|d, s| unsafe { proxy_get_property(key.as_ptr(), key.len(), d, s) })
}

/// Answers the request from the filter (Envoy local reply).
pub fn send_local_response(
    status_code: u16,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(), Status> {
    let headers: Vec<(&str, &[u8])> = headers.iter().map(|(k, v)| (*k, v.as_bytes())).collect();
    let headers = serialize_map(&headers);
    let (body_ptr, body_len) = if body.is_empty() {
        (null(), 0)
    } else {
        (body.as_ptr(), body.len())
    };
    // SAFETY: borrowed buffers for the duration of the call.
    status(unsafe {
        proxy_send_local_response(
            u32::from(status_code),
            null(),
            0,
            body_ptr,
            body_len,
            headers.as_ptr(),
            headers.len(),
            -1,
        )
    })
}

/// Lets the paused request of the effective context go on.
pub fn continue_request() -> Result<(), Status> {
    // SAFETY: a plain value.
    status(unsafe { proxy_continue_stream(STREAM_HTTP_REQUEST) })
}

pub fn set_effective_context(context_id: u32) -> Result<(), Status> {
    // SAFETY: a plain value.
    status(unsafe { proxy_set_effective_context(context_id) })
}

/// Calls an Envoy foreign function without arguments.
pub fn call_foreign_function(name: &str) -> Result<Option<Vec<u8>>, Status> {
    // SAFETY: a borrowed name, out-pointers to locals.
    returned(|d, s| unsafe {
        proxy_call_foreign_function(name.as_ptr(), name.len(), null(), 0, d, s)
    })
}

/// Defines (or finds) a counter; its id.
pub fn define_counter(name: &str) -> Result<u32, Status> {
    let mut id: u32 = 0;
    // SAFETY: a borrowed name, one u32 written.
    status(unsafe { proxy_define_metric(METRIC_COUNTER, name.as_ptr(), name.len(), &mut id) })?;
    Ok(id)
}

pub fn increment_counter(id: u32, by: i64) -> Result<(), Status> {
    // SAFETY: plain values.
    status(unsafe { proxy_increment_metric(id, by) })
}

/// The proxy-wasm map encoding: the number of pairs, each pair's key and
/// value sizes (u32 little-endian), then each key and value NUL-terminated.
fn serialize_map(pairs: &[(&str, &[u8])]) -> Vec<u8> {
    let data: usize = pairs.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
    let mut out = Vec::with_capacity(4 + pairs.len() * 8 + data);
    out.extend_from_slice(&u32::try_from(pairs.len()).unwrap_or(u32::MAX).to_le_bytes());
    for (k, v) in pairs {
        out.extend_from_slice(&u32::try_from(k.len()).unwrap_or(u32::MAX).to_le_bytes());
        out.extend_from_slice(&u32::try_from(v.len()).unwrap_or(u32::MAX).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}

/// Reads the map encoding; stops at the first malformed entry.
fn deserialize_map(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let u32_at = |at: usize| -> Option<usize> {
        let b = bytes.get(at..at + 4)?;
        let a: [u8; 4] = b.try_into().ok()?;
        usize::try_from(u32::from_le_bytes(a)).ok()
    };
    let Some(n) = u32_at(0) else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(n.min(256));
    let mut p = 4 + n.saturating_mul(8);
    for i in 0..n {
        let (Some(ks), Some(vs)) = (u32_at(4 + i * 8), u32_at(8 + i * 8)) else {
            break;
        };
        let (Some(k), Some(v)) = (bytes.get(p..p + ks), bytes.get(p + ks + 1..p + ks + 1 + vs))
        else {
            break;
        };
        out.push((String::from_utf8_lossy(k).into_owned(), v.to_vec()));
        p += ks + vs + 2;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_encoding_round_trips() {
        let pairs: Vec<(&str, &[u8])> = vec![(":path", b"/a"), ("x-b", b""), ("x-c", b"\xff")];
        let bytes = serialize_map(&pairs);
        assert_eq!(
            deserialize_map(&bytes),
            vec![
                (":path".to_string(), b"/a".to_vec()),
                ("x-b".to_string(), Vec::new()),
                ("x-c".to_string(), vec![0xff]),
            ]
        );
        assert_eq!(deserialize_map(&[]), Vec::new());
        // Truncated: what is whole is kept.
        assert_eq!(deserialize_map(&bytes[..bytes.len() - 3]).len(), 2);
    }
}
