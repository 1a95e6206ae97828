//! gatehouse https-redirect: answers plain-HTTP requests with a redirect to
//! the same host and path over `https://`, with exemptions, a host
//! allowlist and optional HSTS on HTTPS responses.
//!
//! [`config`] and [`policy`] are pure (no proxy-wasm) and unit-tested
//! natively and under `wasm32-unknown-unknown`; [`filter`] is the thin
//! proxy-wasm adapter, built only for `wasm32-wasip1`.

pub mod config;
pub mod policy;

#[cfg(target_os = "wasi")]
pub mod filter;

pub use config::{Config, Hsts};
pub use policy::{Outcome, Policy};
