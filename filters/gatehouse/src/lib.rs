//! `gatehouse.wasm`: the five filters in one module.
//!
//! - **Shared module.** Each filter is selected by its root id (Istio's
//!   `pluginName`): `request-id`, `https-redirect`, `client-id`,
//!   `rate-limit`, `host-router`. Plugins that use this one module with the
//!   same (empty) `vm_id` share one VM per worker.
//! - **Fused chain.** Root id `chain` runs any subset of the five as stages
//!   of one HTTP context, in the fixed order of [`STAGE_ORDER`]; headers are
//!   read once per callback and shared in memory between the stages.
//!
//! This file is the pure part (the chain configuration); [`module`] is the
//! proxy-wasm adapter.
#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

use gatehouse_core::config::{ConfigError, Validate};
use serde::Deserialize;
use serde_json::Value;

#[cfg(target_os = "wasi")]
pub mod module;

/// Root id of the fused chain.
pub const CHAIN_ROOT_ID: &str = "chain";

/// The fixed order of the stages in the fused chain (also the order of the
/// separate filters in a gateway).
pub const STAGE_ORDER: [&str; 5] = [
    "request-id",
    "https-redirect",
    "client-id",
    "rate-limit",
    "host-router",
];

/// The fused chain's configuration: one optional entry per stage, holding
/// that filter's own configuration (a JSON object, or a string of JSON).
/// Stages run in [`STAGE_ORDER`] whatever the order of the keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainConfig {
    #[serde(rename = "request-id")]
    pub request_id: Option<Value>,
    #[serde(rename = "https-redirect")]
    pub https_redirect: Option<Value>,
    #[serde(rename = "client-id")]
    pub client_id: Option<Value>,
    #[serde(rename = "rate-limit")]
    pub rate_limit: Option<Value>,
    #[serde(rename = "host-router")]
    pub host_router: Option<Value>,
}

impl ChainConfig {
    fn entries(&self) -> [(&'static str, Option<&Value>); 5] {
        [
            ("request-id", self.request_id.as_ref()),
            ("https-redirect", self.https_redirect.as_ref()),
            ("client-id", self.client_id.as_ref()),
            ("rate-limit", self.rate_limit.as_ref()),
            ("host-router", self.host_router.as_ref()),
        ]
    }

    /// The stages to run, in order, each with its configuration bytes.
    pub fn stages(&self) -> Vec<(&'static str, Vec<u8>)> {
        self.entries()
            .into_iter()
            .filter_map(|(name, v)| {
                let v = v?;
                let bytes = match v {
                    Value::String(s) => s.clone().into_bytes(),
                    other => other.to_string().into_bytes(),
                };
                Some((name, bytes))
            })
            .collect()
    }
}

impl Validate for ChainConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let entries = self.entries();
        if entries.iter().all(|(_, v)| v.is_none()) {
            return Err(ConfigError::new(
                ".",
                "the chain needs at least one stage (request-id, https-redirect, client-id, rate-limit, host-router)",
            ));
        }
        for (name, v) in entries {
            if let Some(v) = v {
                if !(v.is_object() || v.is_string()) {
                    return Err(ConfigError::new(
                        name,
                        "a stage's configuration is a JSON object (or a string holding one)",
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_core::parse_config;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn stages_run_in_fixed_order() {
        let c: ChainConfig = parse_config(
            br#"{"host-router": {"a": 1}, "request-id": {}, "rate-limit": "{\"x\":2}"}"#,
        )
        .unwrap();
        let s = c.stages();
        let names: Vec<&str> = s.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, vec!["request-id", "rate-limit", "host-router"]);
        assert_eq!(s[1].1, br#"{"x":2}"#.to_vec());
        assert_eq!(s[2].1, br#"{"a":1}"#.to_vec());
    }

    #[test]
    fn bad_chains_are_refused() {
        assert_eq!(parse_config::<ChainConfig>(b"{}").unwrap_err().field, ".");
        assert_eq!(
            parse_config::<ChainConfig>(br#"{"request-id": 3}"#)
                .unwrap_err()
                .field,
            "request-id"
        );
        assert!(parse_config::<ChainConfig>(br#"{"auth": {}}"#).is_err());
    }
}
