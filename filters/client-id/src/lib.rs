//! client-id: identifies the caller by API key, JWT or mTLS certificate and
//! tells the upstream who it is (`x-client-id`, `x-client-plan`).
//!
//! Pure modules (no proxy-wasm): [`config`], [`compile`] (config -> [`engine::Engine`]),
//! [`engine`] (the decision), [`identify`] (API key, mTLS, JWT), [`apikey`], [`jwt`],
//! [`cache`], [`verified`]. The proxy-wasm adapter is [`filter`] (wasm32-wasip1 only).

pub mod apikey;
pub mod cache;
pub mod compile;
pub mod config;
pub mod engine;
pub mod identify;
pub mod jwt;
pub mod verified;
pub mod waiters;

#[cfg(test)]
mod tests;

#[cfg(any(
    target_os = "wasi",
    all(any(test, feature = "fake-host"), not(target_arch = "wasm32"))
))]
pub mod filter;

#[cfg(test)]
#[cfg(not(target_arch = "wasm32"))]
mod budget_tests;
