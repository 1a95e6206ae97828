//! Pure logic shared by every gatehouse filter.
//!
//! Nothing in this crate talks to a proxy: no proxy-wasm, no host calls.
//! Filters describe what they need from the host through the small traits
//! here ([`RandomSource`], [`Clock`]) and through plain data
//! ([`HeaderSnapshot`], [`HeaderOp`]), so every decision can be unit-tested
//! natively and under `wasm32-unknown-unknown`.

pub mod config;
pub mod decimal;
pub mod doc_check;
pub mod headers;
pub mod hex;
pub mod host;
pub mod inventory;
pub mod path;
pub mod random;
pub mod reply;

pub use config::{compile_config, parse_config, parse_json, Compile, ConfigError, Validate};
pub use headers::{HeaderOp, HeaderSnapshot};
pub use inventory::FILTERS;
pub use random::{Clock, RandomSource};
