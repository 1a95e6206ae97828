//! host-router: virtual hosting by `Host` / `:authority` inside one filter.
//!
//! The pure logic ([`config`], [`router`], [`split`], [`metrics`]) decides;
//! the proxy-wasm adapter ([`filter`], Wasm build only) reads the request
//! headers once, applies the decision and clears Envoy's route cache.

pub mod config;
pub mod metrics;
pub mod router;
pub mod split;

pub use config::Config;
pub use router::{Action, Decision, LocalReply, Outcome, Router};

#[cfg(target_os = "wasi")]
pub mod filter;
