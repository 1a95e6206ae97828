//! gatehouse https-redirect: answers plain-HTTP requests with a redirect to
//! the same host and path over `https://`, with exemptions, a host
//! allowlist and optional HSTS on HTTPS responses.
//!
//! [`config`] and [`policy`] are pure (no proxy-wasm) and unit-tested
//! natively and under `wasm32-unknown-unknown`; [`filter`] is the thin
//! proxy-wasm adapter, built only for `wasm32-wasip1`.

pub mod config;
pub mod policy;

#[cfg(any(
    target_os = "wasi",
    all(any(test, feature = "fake-host"), not(target_arch = "wasm32"))
))]
pub mod filter;

#[cfg(test)]
#[cfg(not(target_arch = "wasm32"))]
mod budget_tests;

pub use config::{Config, Hsts};
pub use policy::{Outcome, Policy};
