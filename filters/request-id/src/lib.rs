//! request-id: every request carries a safe id, and one consistent trace
//! context in the formats the configuration asks for.
//!
//! The decision is pure ([`decide::decide`]); [`filter`] is the thin
//! proxy-wasm adapter, compiled only for the Envoy build (`wasm32-wasip1`).

pub mod config;
pub mod decide;
pub mod id;
pub mod trace;
pub mod tracestate;

#[cfg(any(
    target_os = "wasi",
    all(any(test, feature = "fake-host"), not(target_arch = "wasm32"))
))]
pub mod filter;

#[cfg(test)]
#[cfg(not(target_arch = "wasm32"))]
mod budget_tests;
