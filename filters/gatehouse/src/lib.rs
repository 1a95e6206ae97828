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

use gatehouse_core::config::{ConfigError, Validate};
use gatehouse_core::inventory::{self, FILTERS};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

#[cfg(any(target_os = "wasi", all(test, not(target_arch = "wasm32"))))]
pub mod module;

#[cfg(test)]
#[cfg(not(target_arch = "wasm32"))]
mod budget_tests;

/// Root id of the fused chain.
pub const CHAIN_ROOT_ID: &str = "chain";

/// The fused chain's configuration: one optional entry per stage, named by
/// the filter, holding that filter's own configuration (a JSON object, or a
/// string of JSON). Stages run in the inventory's order
/// ([`gatehouse_core::FILTERS`]) whatever the order of the keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(transparent)]
pub struct ChainConfig {
    pub stages: BTreeMap<String, Value>,
}

impl ChainConfig {
    /// The stages to run, in chain order, each with its configuration bytes.
    pub fn stages(&self) -> Vec<(&'static str, Vec<u8>)> {
        FILTERS
            .iter()
            .filter_map(|name| {
                let bytes = match self.stages.get(*name)? {
                    Value::String(s) => s.clone().into_bytes(),
                    other => other.to_string().into_bytes(),
                };
                Some((*name, bytes))
            })
            .collect()
    }
}

impl Validate for ChainConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.stages.is_empty() {
            return Err(ConfigError::new(
                ".",
                format!(
                    "the chain needs at least one stage ({})",
                    inventory::names()
                ),
            ));
        }
        for (name, v) in &self.stages {
            if inventory::position(name).is_none() {
                return Err(ConfigError::new(
                    name,
                    format!("not a gatehouse filter (one of {})", inventory::names()),
                ));
            }
            if !(v.is_object() || v.is_string()) {
                return Err(ConfigError::new(
                    name,
                    "a stage's configuration is a JSON object (or a string holding one)",
                ));
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
        assert_eq!(
            parse_config::<ChainConfig>(br#"{"auth": {}}"#)
                .unwrap_err()
                .field,
            "auth"
        );
        assert!(parse_config::<ChainConfig>(b"[]").is_err());
    }
}
