//! Envoy's shared data: one key-value store per VM id, shared by every
//! worker of the process, with compare-and-swap (`cas`) versions.
//!
//! The host calls are declared here with a plain `u32` status: the SDK's
//! wrappers `panic!` on any status they do not expect, which would trap the
//! VM. Here every status is an answer.

use std::ptr::{null, null_mut};

#[link(wasm_import_module = "env")]
extern "C" {
    #[link_name = "proxy_get_shared_data"]
    fn proxy_get_shared_data(
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
        return_cas: *mut u32,
    ) -> u32;
    #[link_name = "proxy_set_shared_data"]
    fn proxy_set_shared_data(
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
        cas: u32,
    ) -> u32;
}

const STATUS_OK: u32 = 0;
const STATUS_NOT_FOUND: u32 = 1;
const STATUS_CAS_MISMATCH: u32 = 8;

/// A host status other than found / not found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostError(pub u32);

/// The outcome of [`set`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Set {
    Ok,
    /// The value changed since the `cas` the caller read: read again.
    CasMismatch,
    Error,
}

/// The value of `key` and its `cas` version; `None` when the key was never
/// set.
pub fn get(key: &str) -> Result<Option<(Vec<u8>, u32)>, HostError> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    let mut cas: u32 = 0;
    // SAFETY: the host writes a buffer it allocated through this module's
    // `proxy_on_memory_allocate` (a Rust allocation of `size` bytes), exactly
    // as the SDK's own wrapper assumes.
    let status =
        unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas) };
    match status {
        STATUS_OK if data.is_null() => Ok(Some((Vec::new(), cas))),
        STATUS_OK => {
            // SAFETY: see above; ownership passes to us.
            let v = unsafe { Vec::from_raw_parts(data, size, size) };
            Ok(Some((v, cas)))
        }
        STATUS_NOT_FOUND => Ok(None),
        other => Err(HostError(other)),
    }
}

/// Sets `key` to `value` if its version is still `cas` (0: unconditionally).
pub fn set(key: &str, value: &[u8], cas: u32) -> Set {
    let ptr = if value.is_empty() {
        null()
    } else {
        value.as_ptr()
    };
    // SAFETY: plain reads of the two buffers for their lengths.
    let status = unsafe { proxy_set_shared_data(key.as_ptr(), key.len(), ptr, value.len(), cas) };
    match status {
        STATUS_OK => Set::Ok,
        STATUS_CAS_MISMATCH => Set::CasMismatch,
        _ => Set::Error,
    }
}
