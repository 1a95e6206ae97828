//! The manifests and the filters cannot drift apart: every filter with an
//! adapter has a plugin, its pluginConfig is the filter's example.json,
//! and the filter's OWN config parser (the code `on_configure` runs) accepts
//! it natively. Also: the gateway order, and the VirtualService (and the
//! HTTPRoute) route every cluster host-router can choose.
//!
//! The manifests are what `kubectl kustomize` renders (`kubectl apply -k`),
//! in all eight variants a user picks with one line each (TrafficExtension
//! or WasmPlugin; selector or Gateway API targetRefs; per-filter images or
//! the shared module): each variant passes the schema checks, and the
//! variants differ only where the choice says (kind, attachment, image).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use gatehouse_delivery::istio::{self, Manifests, Plugin, Variant};
use gatehouse_delivery::schema;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

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

fn kubectl() -> PathBuf {
    istio::kubectl(&root()).unwrap()
}

fn render(v: Variant) -> Manifests {
    Manifests::render_variant(&kubectl(), &root(), v).unwrap()
}

/// `kubectl kustomize manifests/`, as shipped.
fn manifests() -> Manifests {
    Manifests::render(&kubectl(), &root().join("manifests")).unwrap()
}

fn plugin_for<'a>(plugins: &'a [Plugin], filter: &str) -> &'a Plugin {
    let found: Vec<&Plugin> = plugins.iter().filter(|p| p.filter == filter).collect();
    assert_eq!(
        found.len(),
        1,
        "filter {filter} (filters/{filter}/src/filter.rs) needs exactly one plugin in manifests/"
    );
    found[0]
}

#[test]
fn every_plugin_config_is_accepted_by_the_filters_own_parser() {
    let plugins = manifests().plugins().unwrap();
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
    let plugins = manifests().plugins().unwrap();
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
    // The source files (kustomize's output writes 1.0 as 1: same value for
    // the filters' parsers, which the test above runs on that output).
    let mut plugins = Vec::new();
    for f in filters_in_repo() {
        let file = root().join("manifests").join(format!("{f}.yaml"));
        let m = Manifests::from_yaml(&std::fs::read_to_string(&file).unwrap()).unwrap();
        plugins.extend(m.plugins().unwrap());
    }
    for f in filters_in_repo() {
        let p = plugin_for(&plugins, &f);
        let path = root().join("filters").join(&f).join("example.json");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (every filter ships one)", path.display()));
        let example: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            p.plugin_config, example,
            "manifests/{f}.yaml spec.wasm.pluginConfig differs from filters/{f}/example.json: run `make manifests-sync`"
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
        .plugins()
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
fn the_virtual_service_and_the_http_route_route_every_cluster_host_router_can_choose() {
    assert!(filters_in_repo().contains(&"host-router".to_string()));
    for gateway_api in [false, true] {
        let m = render(Variant {
            gateway_api,
            ..Variant::DEFAULT
        });
        routes_every_cluster(
            &m,
            if gateway_api {
                "HTTPRoute"
            } else {
                "VirtualService"
            },
        );
    }
}

fn routes_every_cluster(m: &Manifests, what: &str) {
    assert!(!m.of_kind(what).is_empty(), "no {what}");
    let plugins = m.plugins().unwrap();
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
            "host-router may choose cluster {c}, but no {what} route matches {header}: {c}"
        );
    }
}

/// A plugin without what a variant is allowed to change: kind, image url,
/// digest and attachment.
fn essence(p: &Plugin) -> Value {
    json!({
        "name": p.name,
        "namespace": p.namespace,
        "filter": p.filter,
        "pluginName": p.plugin_name,
        "phase": p.phase,
        "priority": p.priority,
        "failStrategy": p.fail_strategy,
        "imagePullPolicy": p.image_pull_policy,
        "type": p.plugin_type,
        "pluginConfig": p.plugin_config,
    })
}

#[test]
fn every_variant_is_valid_and_differs_only_by_the_choice() {
    let filters = filters_in_repo();
    let default = render(Variant::DEFAULT).plugins().unwrap();
    let expected: Vec<Value> = default.iter().map(essence).collect();
    assert_eq!(default.len(), filters.len());
    let mut configs = std::collections::BTreeMap::new();
    for v in Variant::all() {
        let m = render(v);
        // Schema: the project's checker for TrafficExtension and Gateway API.
        for d in &m.docs {
            if let Some(errors) = schema::check(&d.value) {
                assert!(
                    errors.is_empty(),
                    "{v}: {} {}: {errors:?}",
                    d.kind(),
                    d.name()
                );
            }
        }
        let kinds: Vec<&str> = m.docs.iter().map(|d| d.kind()).collect();
        let plugins = m.plugins().unwrap();
        assert_eq!(
            plugins.iter().map(essence).collect::<Vec<_>>(),
            expected,
            "{v}"
        );
        for p in &plugins {
            assert_eq!(p.kind, v.kind(), "{v}: {}", p.name);
            assert_eq!(
                p.sha256.as_deref(),
                Some(""),
                "{v}: {}: unpinned by default",
                p.name
            );
            let image = if v.shared_module {
                "gatehouse"
            } else {
                p.filter.as_str()
            };
            assert_eq!(
                p.url,
                format!("oci://ghcr.io/example/gatehouse/{image}:0.1.0"),
                "{v}"
            );
            assert_eq!(p.plugin_name.as_deref(), Some(p.filter.as_str()), "{v}");
            assert!(
                p.failure_policy() != "FAIL_CLOSED"
                    || p.fail_strategy.as_deref() == Some("FAIL_CLOSE")
            );
            if v.gateway_api {
                assert_eq!(p.selector, Value::Null, "{v}");
                assert_eq!(
                    p.target_refs,
                    json!([{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "webapp-gateway"}]),
                    "{v}"
                );
            } else {
                assert_eq!(p.target_refs, Value::Null, "{v}");
                assert_eq!(
                    p.selector,
                    json!({"matchLabels": {"istio": "ingressgateway"}}),
                    "{v}"
                );
            }
        }
        if v.gateway_api {
            check_gateway_api(&m, &plugins);
            assert!(!kinds.contains(&"VirtualService"), "{v}: {kinds:?}");
        } else {
            assert!(
                kinds.contains(&"VirtualService") && !kinds.contains(&"HTTPRoute"),
                "{v}: {kinds:?}"
            );
        }
        assert!(
            !kinds.contains(&"ConfigMap"),
            "{v}: the image settings must not be applied"
        );
        // What istiod sends the gateway does not depend on the kind.
        let rendered: Vec<Value> = plugins
            .iter()
            .map(|p| p.typed_extension_config(Path::new("/m.wasm"), None))
            .collect();
        configs
            .entry((v.shared_module, v.gateway_api))
            .or_insert_with(Vec::new)
            .push((v, rendered));
    }
    for ((shared, _), pair) in configs {
        let [(a, x), (b, y)] = pair.as_slice() else {
            panic!("two kinds per variant")
        };
        assert_eq!(x, y, "{a} and {b} give different Envoy configs");
        let roots: Vec<&str> = x
            .iter()
            .map(|c| c["typed_config"]["config"]["root_id"].as_str().unwrap())
            .collect();
        assert_eq!(roots.len(), filters.len(), "shared {shared}");
    }
}

/// The Gateway API attachment holds together: the plugins' targetRefs name
/// a Gateway of class istio in their namespace, the HTTPRoute's parentRefs
/// name it too, and its listeners admit the route's namespace.
fn check_gateway_api(m: &Manifests, plugins: &[Plugin]) {
    let gateways: Vec<_> = m
        .of_kind("Gateway")
        .into_iter()
        .filter(|g| g.value["apiVersion"] == "gateway.networking.k8s.io/v1")
        .collect();
    assert_eq!(gateways.len(), 1, "one Gateway API Gateway");
    let g = gateways[0];
    assert_eq!(g.value["spec"]["gatewayClassName"], "istio");
    for p in plugins {
        assert_eq!(
            p.namespace,
            g.namespace(),
            "{}: targetRefs cannot cross namespaces",
            p.name
        );
        assert_eq!(p.target_refs[0]["name"], g.name());
    }
    let routes = m.of_kind("HTTPRoute");
    assert!(!routes.is_empty());
    for r in routes {
        let parent = &r.value["spec"]["parentRefs"][0];
        assert_eq!(parent["name"], g.name());
        assert_eq!(
            parent["namespace"].as_str().unwrap_or(r.namespace()),
            g.namespace()
        );
        for l in g.value["spec"]["listeners"].as_array().unwrap() {
            let ns = &l["allowedRoutes"]["namespaces"];
            let admitted = match ns["from"].as_str().unwrap_or("Same") {
                "All" => true,
                "Same" => r.namespace() == g.namespace(),
                "Selector" => {
                    ns["selector"]["matchLabels"]
                        == json!({"kubernetes.io/metadata.name": r.namespace()})
                }
                _ => false,
            };
            assert!(
                admitted,
                "listener {} does not admit the HTTPRoute's namespace {}",
                l["name"],
                r.namespace()
            );
        }
    }
}

/// The digest-pinning entries of docs/istio.md, between the markers
/// `<!-- pin:manifests -->` / `<!-- pin:manifests-shared-module -->` and the
/// end of their yaml block.
fn documented_pin(which: &str) -> String {
    let doc = std::fs::read_to_string(root().join("docs/istio.md")).unwrap();
    let marker = format!("<!-- pin:{which} -->");
    let at = doc
        .find(&marker)
        .unwrap_or_else(|| panic!("docs/istio.md has no {marker}"));
    let block = &doc[at..];
    let start = block.find("```yaml\n").unwrap() + "```yaml\n".len();
    let end = block[start..].find("```").unwrap();
    block[start..start + end].to_string()
}

#[test]
fn the_documented_digest_pinning_works_for_every_variant() {
    let per_filter = "1111111111111111111111111111111111111111111111111111111111111111";
    let module = "2222222222222222222222222222222222222222222222222222222222222222";
    let base_pin = documented_pin("manifests").replace("<hex from make push>", per_filter);
    let shared_pin =
        documented_pin("manifests-shared-module").replace("<hex from make push>", module);
    for v in Variant::all() {
        let m = Manifests::render_variant_with(&kubectl(), &root(), v, |tmp| {
            // Appended to the files as the docs say: both end with their
            // `patches:` list, so the result has no duplicate key (the YAML
            // parser below refuses one).
            for (file, pin) in [
                ("manifests/kustomization.yaml", &base_pin),
                ("manifests-shared-module/kustomization.yaml", &shared_pin),
            ] {
                let f = tmp.join(file);
                let text = std::fs::read_to_string(&f).unwrap();
                let last_key = text
                    .lines()
                    .rfind(|l| l.chars().next().is_some_and(|c| c.is_ascii_alphabetic()));
                assert_eq!(
                    last_key,
                    Some("patches:"),
                    "{file} must end with its `patches:` list"
                );
                let patched = format!("{text}{pin}");
                istio::parse_yaml_docs(&patched).map_err(|e| format!("{file}: {e}"))?;
                std::fs::write(&f, patched).unwrap();
            }
            Ok(())
        })
        .unwrap();
        for p in m.plugins().unwrap() {
            let want = match (v.shared_module, p.filter.as_str()) {
                (true, _) => module,
                (false, "request-id") => per_filter,
                _ => "",
            };
            assert_eq!(p.sha256.as_deref(), Some(want), "{v}: {}", p.name);
        }
    }
}

/// manifests/ratelimit/ratelimit.json is the one configuration of global
/// mode on Istio: the rate-limit service reads it (its ConfigMap) and it is
/// the rate-limit plugin's pluginConfig in global mode
/// (services/ratelimit/README.md). The filter's own parser accepts it, it
/// has global rules, a broken copy is refused, and it is the filter's
/// example.json with `global` added to the rules (nothing else differs).
#[test]
fn the_global_mode_config_is_accepted_by_the_filter_and_is_the_example_plus_global() {
    let path = root().join("manifests/ratelimit/ratelimit.json");
    let text = std::fs::read_to_string(&path).unwrap();
    parse_with_filter("rate-limit", text.as_bytes())
        .unwrap()
        .unwrap_or_else(|e| panic!("{}: refused by the rate-limit filter: {e}", path.display()));
    let cfg: rate_limit::config::Config = gatehouse_core::parse_config(text.as_bytes()).unwrap();
    assert!(
        cfg.rules.iter().any(|r| r.global.is_some()),
        "{}: no global rule",
        path.display()
    );
    let mut broken: Value = serde_json::from_str(&text).unwrap();
    broken["rules"][0]["global"]["gatehouse_no_such_field"] = json!(1);
    let e = parse_with_filter("rate-limit", broken.to_string().as_bytes())
        .unwrap()
        .expect_err("an unknown field must be refused");
    assert!(e.contains("gatehouse_no_such_field"), "{e}");

    let mut local: Value = serde_json::from_str(&text).unwrap();
    for r in local["rules"].as_array_mut().unwrap() {
        r.as_object_mut().unwrap().remove("global");
    }
    let example: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("filters/rate-limit/example.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        local, example,
        "manifests/ratelimit/ratelimit.json without `global` must be filters/rate-limit/example.json"
    );
}

/// `- components/rate-limit-global` (manifests/kustomization.yaml) in every
/// variant: rate-limit's pluginConfig becomes manifests/ratelimit/ratelimit.json,
/// which the filter's own parser accepts; no other plugin changes.
#[test]
fn the_rate_limit_global_component_sets_ratelimit_json_in_every_variant() {
    let want: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("manifests/ratelimit/ratelimit.json")).unwrap(),
    )
    .unwrap();
    let line = "- components/rate-limit-global";
    for v in Variant::all() {
        let local = render(v).plugins().unwrap();
        let global = Manifests::render_variant_with(&kubectl(), &root(), v, |dir| {
            let k = dir.join("manifests/kustomization.yaml");
            let text = std::fs::read_to_string(&k).map_err(|e| e.to_string())?;
            let commented = format!("\n# {line}\n");
            if text.matches(&commented).count() != 1 {
                return Err(format!("expected exactly one `# {line}` line"));
            }
            std::fs::write(&k, text.replace(&commented, &format!("\n{line}\n")))
                .map_err(|e| e.to_string())
        })
        .unwrap()
        .plugins()
        .unwrap();
        assert_eq!(global.len(), local.len(), "{v}");
        for (g, l) in global.iter().zip(&local) {
            if g.filter == "rate-limit" {
                assert_eq!(g.plugin_config, want, "{v}");
                match parse_with_filter("rate-limit", g.plugin_config.to_string().as_bytes()) {
                    Some(Ok(())) => {}
                    other => panic!("{v}: rate-limit refuses the global pluginConfig: {other:?}"),
                }
                let (mut ge, mut le) = (essence(g), essence(l));
                ge["pluginConfig"] = Value::Null;
                le["pluginConfig"] = Value::Null;
                assert_eq!(ge, le, "{v}: only pluginConfig changes");
            } else {
                assert_eq!(essence(g), essence(l), "{v}: {} changed", g.filter);
            }
        }
    }
}
