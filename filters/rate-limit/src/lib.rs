//! gatehouse rate-limit: per-client limits that hold exactly across every
//! Envoy worker thread.
//!
//! Pure modules (no proxy-wasm): [`config`] (JSON config and checks),
//! [`gcra`] (the algorithm), [`key`] (bucket keys from request data),
//! [`table`] (the bounded slot table over a CAS store), [`engine`] (the
//! per-request decision). The adapter, `filter`, exists only in the Envoy
//! build (wasm32-wasip1).

pub mod config;
pub mod engine;
pub mod gcra;
pub mod key;
pub mod reasons;
pub mod rls;
pub mod table;

#[cfg(any(
    target_os = "wasi",
    all(any(test, feature = "fake-host"), not(target_arch = "wasm32"))
))]
pub mod filter;

#[cfg(test)]
#[cfg(not(target_arch = "wasm32"))]
mod budget_tests;
