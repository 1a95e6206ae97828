//! client-id: identifies the caller by API key, JWT or mTLS certificate and
//! tells the upstream who it is (`x-client-id`, `x-client-plan`).
//!
//! Pure modules (no proxy-wasm): [`config`], [`apikey`], [`jwt`], [`engine`],
//! [`cache`]. The proxy-wasm adapter is [`filter`] (wasm32-wasip1 only).

pub mod apikey;
pub mod cache;
pub mod config;
pub mod engine;
pub mod jwt;
pub mod verified;

#[cfg(test)]
mod tests;

#[cfg(target_os = "wasi")]
pub mod filter;
