//! The manifests and the filters cannot drift apart: every filter with an
//! adapter has a WasmPlugin, its pluginConfig is the filter's example.json,
//! and the filter's OWN config parser (the code `on_configure` runs) accepts
//! it natively. Also: the gateway order, and the VirtualService routes every
//! cluster host-router can choose.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use gatehouse_delivery::istio::{Manifests, WasmPlugin};
use serde_json::Value;
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Filters that have an adapter, i.e. that the Makefile builds.
fn filters_in_repo() -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(root().join("filters"))
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            e.path()
                .join("src/filter.rs")
                .is_file()
                .then(|| e.file_name().to_string_lossy().to_string())
        })
        .collect();
    out.sort();
    out
}

/// The filter's own parser (`gatehouse_core::parse_config::<Config>`, what
/// the filter's `on_configure` runs), or None for an unknown filter.
fn parse_with_filter(filter: &str, json: &[u8]) -> Option<Result<(), String>> {
    macro_rules! parse {
        ($t:ty) => {
            Some(
                gatehouse_core::parse_config::<$t>(json)
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
            )
        };
    }
    match filter {
        "request-id" => parse!(request_id::config::Config),
        "https-redirect" => parse!(https_redirect::config::Config),
        "client-id" => parse!(client_id::config::Config),
        "rate-limit" => parse!(rate_limit::config::Config),
        "host-router" => parse!(host_router::config::Config),
        _ => None,
    }
}

fn manifests() -> Manifests {
    Manifests::load(&root().join("manifests")).unwrap()
}

fn plugin_for<'a>(plugins: &'a [WasmPlugin], filter: &str) -> &'a WasmPlugin {
    let found: Vec<&WasmPlugin> = plugins.iter().filter(|p| p.filter == filter).collect();
    assert_eq!(
        found.len(),
        1,
        "filter {filter} (filters/{filter}/src/filter.rs) needs exactly one WasmPlugin in manifests/"
    );
    found[0]
}

#[test]
fn every_plugin_config_is_accepted_by_the_filters_own_parser() {
    let plugins = manifests().wasm_plugins().unwrap();
    let filters = filters_in_repo();
    assert!(filters.len() >= 5, "{filters:?}");
    for f in &filters {
        let p = plugin_for(&plugins, f);
        // istiod hands the filter pluginConfig serialised as JSON.
        let json = p.plugin_config.to_string();
        match parse_with_filter(f, json.as_bytes()) {
            None => panic!("no parser for filter {f}: add it to parse_with_filter"),
            Some(Err(e)) => panic!("manifests: {} pluginConfig is refused by {f}: {e}", p.name),
            Some(Ok(())) => {}
        }
    }
    for p in &plugins {
        assert!(
            filters.contains(&p.filter),
            "{} pulls {}, which is not a filter in filters/",
            p.name,
            p.filter
        );
    }
}

#[test]
fn the_parsers_refuse_a_broken_plugin_config() {
    // The check above can fail: an unknown field is refused by every filter.
    let plugins = manifests().wasm_plugins().unwrap();
    for f in filters_in_repo() {
        let p = plugin_for(&plugins, &f);
        let mut broken = p.plugin_config.clone();
        broken
            .as_object_mut()
            .unwrap()
            .insert("gatehouse_no_such_field".into(), Value::Bool(true));
        let r = parse_with_filter(&f, broken.to_string().as_bytes()).unwrap();
        let e = r.expect_err("an unknown field must be refused");
        assert!(e.contains("gatehouse_no_such_field"), "{f}: {e}");
    }
}

#[test]
fn plugin_config_is_the_filters_example_json() {
    let plugins = manifests().wasm_plugins().unwrap();
    for f in filters_in_repo() {
        let p = plugin_for(&plugins, &f);
        let path = root().join("filters").join(&f).join("example.json");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (every filter ships one)", path.display()));
        let example: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            p.plugin_config, example,
            "manifests/{f}.yaml pluginConfig differs from filters/{f}/example.json: run `make manifests-sync`"
        );
    }
}

#[test]
fn phase_and_priority_give_the_documented_order() {
    let expected: Vec<String> = [
        "request-id",
        "https-redirect",
        "client-id",
        "rate-limit",
        "host-router",
    ]
    .iter()
    .map(|s| s.to_string())
    .filter(|f| filters_in_repo().contains(f))
    .collect();
    let order: Vec<String> = manifests()
        .wasm_plugins()
        .unwrap()
        .into_iter()
        .map(|p| p.filter)
        .collect();
    assert_eq!(order, expected);
}

fn collect_clusters(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("cluster", Value::String(s)) => out.push(s.clone()),
                    _ => collect_clusters(x, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect_clusters(x, out)),
        _ => {}
    }
}

#[test]
fn the_virtual_service_routes_every_cluster_host_router_can_choose() {
    if !filters_in_repo().contains(&"host-router".to_string()) {
        return; // the routes are keyed on host-router's header
    }
    let m = manifests();
    let plugins = m.wasm_plugins().unwrap();
    let p = plugin_for(&plugins, "host-router");
    let header = p
        .plugin_config
        .get("routing_header")
        .and_then(Value::as_str)
        .unwrap_or(host_router::config::DEFAULT_ROUTING_HEADER)
        .to_string();
    let mut clusters = Vec::new();
    collect_clusters(&p.plugin_config, &mut clusters);
    assert!(!clusters.is_empty());
    let (rc, _) = m.route_config().unwrap();
    let mut routed = Vec::new();
    for vh in rc["virtual_hosts"].as_array().unwrap() {
        for r in vh["routes"].as_array().unwrap() {
            for h in r["match"]["headers"].as_array().into_iter().flatten() {
                if h["name"] == header.as_str() {
                    routed.push(h["string_match"]["exact"].as_str().unwrap().to_string());
                }
            }
        }
    }
    for c in clusters {
        assert!(
            routed.contains(&c),
            "host-router may choose cluster {c}, but no VirtualService route matches {header}: {c}"
        );
    }
}
