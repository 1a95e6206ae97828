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

#[cfg(any(
    target_os = "wasi",
    all(any(test, feature = "fake-host"), not(target_arch = "wasm32"))
))]
pub mod filter;

#[cfg(test)]
#[cfg(not(target_arch = "wasm32"))]
mod budget_tests;
