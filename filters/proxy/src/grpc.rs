//! Unary gRPC callouts (`proxy_grpc_call`): dispatch, the answer's status
//! and message, cancel.
//!
//! **Dispatch goes through the SDK's `hostcalls::dispatch_grpc_call`**, not
//! a raw import: only that wrapper registers the token with the SDK's
//! dispatcher, which is what later delivers `proxy_on_grpc_receive` /
//! `proxy_on_grpc_close` to the calling HTTP context's
//! `on_grpc_call_response` (an unregistered token's answer is dropped).
//! The wrapper panics on a status other than Ok, ParseFailure and
//! InternalFailure; Envoy (1.36–1.40, `Context::grpcCall`) answers those
//! three except `BadArgument` when it cannot build a gRPC client for a
//! *serialized `GrpcService`*. We pass a plain cluster name, for which an
//! unknown cluster is `ParseFailure` and the client is built with
//! `skip_cluster_check`; the filter refuses cluster names that would
//! parse as a protobuf message (see rate-limit's config checks).
//!
//! Status, response body and cancel are raw calls with every status an
//! answer (the SDK's `get_grpc_status` unwraps the message as UTF-8, its
//! buffer and cancel wrappers panic on unexpected statuses).

use std::ptr::null_mut;
use std::time::Duration;

#[link(wasm_import_module = "env")]
extern "C" {
    #[link_name = "proxy_get_status"]
    fn proxy_get_status(
        return_code: *mut u32,
        return_message_data: *mut *mut u8,
        return_message_size: *mut usize,
    ) -> u32;
    #[link_name = "proxy_get_buffer_bytes"]
    fn proxy_get_buffer_bytes(
        buffer_type: u32,
        start: usize,
        max_size: usize,
        return_buffer_data: *mut *mut u8,
        return_buffer_size: *mut usize,
    ) -> u32;
    #[link_name = "proxy_grpc_cancel"]
    fn proxy_grpc_cancel(token: u32) -> u32;
}

const STATUS_OK: u32 = 0;
const STATUS_NOT_FOUND: u32 = 1;
/// `BufferType::GrpcReceiveBuffer`.
const GRPC_RECEIVE_BUFFER: u32 = 5;

/// Starts a unary gRPC call of `service`/`method` on `cluster` with the
/// serialized request `message`; the answer arrives in the HTTP context's
/// `on_grpc_call_response` with the returned token. `Err` carries the
/// host status when Envoy refused to start it (unknown cluster: status 4
/// `ParseFailure`).
pub fn dispatch(
    cluster: &str,
    service: &str,
    method: &str,
    message: &[u8],
    timeout: Duration,
) -> Result<u32, String> {
    proxy_wasm::hostcalls::dispatch_grpc_call(
        cluster,
        service,
        method,
        Vec::new(),
        Some(message),
        timeout,
    )
    .map_err(|st| format!("{st:?}"))
}

/// The gRPC status code and message of the call being delivered.
pub fn status() -> Option<(u32, Vec<u8>)> {
    let mut code: u32 = 0;
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    // SAFETY: the host writes a buffer it allocated through this module's
    // `proxy_on_memory_allocate`, as in shared_data.rs.
    let st = unsafe { proxy_get_status(&mut code, &mut data, &mut size) };
    if st != STATUS_OK {
        return None;
    }
    let msg = if data.is_null() {
        Vec::new()
    } else {
        // SAFETY: see above; ownership passes to us.
        unsafe { Vec::from_raw_parts(data, size, size) }
    };
    Some((code, msg))
}

/// The response message of the call being delivered (`size` bytes, as
/// `on_grpc_call_response` reported). `None` when the host has none.
pub fn response_body(size: usize) -> Option<Vec<u8>> {
    let mut data: *mut u8 = null_mut();
    let mut len: usize = 0;
    // SAFETY: as in `status`.
    let st = unsafe { proxy_get_buffer_bytes(GRPC_RECEIVE_BUFFER, 0, size, &mut data, &mut len) };
    match st {
        STATUS_OK if data.is_null() => Some(Vec::new()),
        // SAFETY: as in `status`.
        STATUS_OK => Some(unsafe { Vec::from_raw_parts(data, len, len) }),
        STATUS_NOT_FOUND => Some(Vec::new()),
        _ => None,
    }
}

/// Cancels a call in flight; false when Envoy no longer knows the token
/// (already answered or cancelled).
pub fn cancel(token: u32) -> bool {
    // SAFETY: a plain value argument.
    unsafe { proxy_grpc_cancel(token) == STATUS_OK }
}
