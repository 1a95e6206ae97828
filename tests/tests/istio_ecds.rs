//! The filters delivered the way Istio delivers them: real Envoy runs the
//! config istiod would generate from manifests/ as `kubectl kustomize`
//! renders it (gatehouse-delivery): one HTTP filter per plugin discovered
//! through ECDS, in phase/priority order, each a TypedExtensionConfig with
//! the Wasm filter, pluginConfig as a JSON StringValue, root_id from
//! pluginName and failure_policy from failStrategy; the routes are the
//! VirtualService's (or the HTTPRoute's), with Istio's cluster names. Both
//! kinds of manifest run: TrafficExtension (Istio >= 1.30) and the
//! WasmPlugins derived from it (Istio < 1.30), which must give the same
//! Envoy config; and both attachments (selector, Gateway API targetRefs with
//! an HTTPRoute). ECDS comes from files here (istiod uses ADS): replacing a
//! file by an atomic rename reloads the filter without restarting Envoy, and
//! a bad config is rejected while the old one keeps serving.
use gatehouse_delivery::istio::{self, Manifests, Plugin, Variant};
use gatehouse_e2e::run::demos;
use gatehouse_e2e::*;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::{Duration, Instant};

struct Gateway {
    envoy: Envoy,
    plugins: Vec<Plugin>,
    ecds_dir: PathBuf,
    tls: gatehouse_e2e::client::TlsClient,
    _upstreams: Vec<Echo>,
}

impl Gateway {
    fn has(&self, filter: &str) -> bool {
        self.plugins.iter().any(|p| p.filter == filter)
    }

    fn plugin(&self, filter: &str) -> &Plugin {
        self.plugins.iter().find(|p| p.filter == filter).unwrap()
    }

    /// An ECDS counter of the plugin, e.g. `config_reload`.
    fn ecds_counter(&self, p: &Plugin, counter: &str) -> u64 {
        let name = p.resource_name();
        let stats = self.envoy.stats();
        let hits: Vec<(&String, &u64)> = stats
            .iter()
            .filter(|(k, _)| {
                k.starts_with("extension_config_discovery.")
                    && k.contains(&name)
                    && k.ends_with(&format!(".{counter}"))
            })
            .collect();
        assert_eq!(
            hits.len(),
            1,
            "one ECDS `{counter}` counter for {name}; stats: {:?}",
            stats
                .keys()
                .filter(|k| k.starts_with("extension_config_discovery."))
                .collect::<Vec<_>>()
        );
        *hits[0].1
    }

    fn send(&self, tls: bool, req: &Request) -> Response {
        if tls {
            self.envoy.send_h1_tls(req, &self.tls)
        } else {
            self.envoy.send_h1(req)
        }
    }

    /// Requests over TLS when https-redirect would redirect plain HTTP.
    fn send_through(&self, req: &Request) -> Response {
        self.send(self.has("https-redirect"), req)
    }
}

fn render(variant: Variant) -> Manifests {
    let kubectl = istio::kubectl(&repo_root()).unwrap();
    Manifests::render_variant(&kubectl, &repo_root(), variant).unwrap()
}

fn start_gateway(variant: Variant) -> Gateway {
    let manifests = render(variant);
    let plugins = manifests.plugins().unwrap();
    for p in &plugins {
        assert_eq!(p.kind, variant.kind(), "{variant}: {}", p.name);
    }
    let in_repo: Vec<String> = gatehouse_e2e::run::filters_in_repo()
        .into_iter()
        .map(String::from)
        .collect();
    for f in &in_repo {
        assert!(
            plugins.iter().any(|p| &p.filter == f),
            "{variant}: no plugin for {f}"
        );
    }
    for p in &plugins {
        assert!(in_repo.contains(&p.filter), "{}: no such filter", p.name);
        wasm_path(&p.image); // fails when not built
    }
    let ecds_dir = scratch_dir("ecds");
    let http_filters = istio::render_ecds(&plugins, &dist_dir(), &ecds_dir).unwrap();
    let (route_config, clusters) = manifests.route_config().unwrap();
    let pki = TestPki::new(&scratch_dir("ecds-pki"));
    let mut cfg = EnvoyConfig::new()
        .route_config(route_config)
        .tls(pki.listener(false, false));
    for f in http_filters {
        cfg = cfg.raw_filter(f);
    }
    let mut upstreams = Vec::new();
    for c in clusters {
        // outbound|80||webapp.istioinaction.svc.cluster.local -> "webapp"
        let svc = c.rsplit("||").next().unwrap().split('.').next().unwrap();
        let echo = Echo::start(svc);
        cfg = cfg.raw_cluster(json!({
            "name": c,
            "type": "STATIC",
            "connect_timeout": "2s",
            "load_assignment": {"cluster_name": c, "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": echo.port}}}}
            ]}]},
        }));
        upstreams.push(echo);
    }
    let envoy = Envoy::start(&cfg);
    Gateway {
        envoy,
        plugins,
        ecds_dir,
        tls: pki.client("localhost", None),
        _upstreams: upstreams,
    }
}

/// Every object's `http_filters` names in Envoy's config dump.
fn loaded_filter_chain(envoy: &Envoy) -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<Vec<String>>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::Array(fs)) = m.get("http_filters") {
                    out.push(
                        fs.iter()
                            .filter_map(|f| f.get("name")?.as_str().map(str::to_string))
                            .collect(),
                    );
                }
                m.values().for_each(|x| walk(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let dump: Value = serde_json::from_str(&envoy.admin_get("/config_dump").unwrap()).unwrap();
    let mut chains = Vec::new();
    walk(&dump, &mut chains);
    assert!(!chains.is_empty());
    // Both listeners have the same chain.
    assert!(chains.windows(2).all(|w| w[0] == w[1]), "{chains:?}");
    chains.swap_remove(0)
}

/// The request that gets through every filter to an upstream: with
/// client-id in the chain, it carries the documented demo API key
/// (filters/client-id/demo-credentials.json, which matches the example
/// config the manifest carries).
fn pass_through(g: &Gateway, host: &str) -> (bool, Request) {
    let req = Request::get("/ecds").host(host);
    if !g.has("client-id") {
        return (g.has("https-redirect"), req);
    }
    let path = repo_root().join("filters/client-id/demo-credentials.json");
    let creds: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let key = creds["api_key"].as_str().unwrap();
    let header = creds["api_key_header"].as_str().unwrap();
    (g.has("https-redirect"), req.header(header, key))
}

/// The TypedExtensionConfigs (the ECDS files) of a running gateway.
fn ecds_files(g: &Gateway) -> Vec<Value> {
    g.plugins
        .iter()
        .map(|p| {
            serde_json::from_slice(
                &std::fs::read(g.ecds_dir.join(format!("{}.json", p.filter))).unwrap(),
            )
            .unwrap()
        })
        .collect()
}

/// The plugins are loaded through ECDS in gateway order, before the router,
/// and a request passes every filter to the upstream its host maps to.
fn check_loaded_and_routing(g: &Gateway) {
    for p in &g.plugins {
        assert!(
            g.ecds_counter(p, "config_reload") >= 1,
            "{} not loaded",
            p.name
        );
        assert_eq!(g.ecds_counter(p, "update_rejected"), 0, "{}", p.name);
    }
    let mut names: Vec<String> = g.plugins.iter().map(|p| p.resource_name()).collect();
    names.push("envoy.filters.http.router".to_string());
    assert_eq!(loaded_filter_chain(&g.envoy), names);
    for (host, service) in [
        ("webapp.istioinaction.io", "webapp"),
        ("catalog.istioinaction.io", "catalog"),
    ] {
        let (tls, req) = pass_through(g, host);
        let r = g.send(tls, &req);
        assert_eq!(r.status, 200, "{host}: {}", r.text());
        assert_eq!(r.echo().upstream, service, "{host}");
    }
}

#[test]
fn envoy_the_wasm_plugins_for_older_istio_give_the_same_gateway() {
    // One source: the WasmPlugin variant renders exactly the Envoy config
    // of the TrafficExtensions, and it runs.
    let te: Vec<Value> = render(Variant::DEFAULT)
        .plugins()
        .unwrap()
        .iter()
        .map(|p| p.ecds_file(&wasm_path(&p.image), None))
        .collect();
    let g = start_gateway(Variant {
        wasm_plugin: true,
        ..Variant::DEFAULT
    });
    assert_eq!(
        ecds_files(&g),
        te,
        "WasmPlugin and TrafficExtension variants differ"
    );
    check_loaded_and_routing(&g);
}

#[test]
fn gateway_api_attachment_routes_with_the_http_route() {
    // targetRefs to the Gateway API Gateway; the routes are the HTTPRoute's.
    let variant = Variant {
        gateway_api: true,
        ..Variant::DEFAULT
    };
    let m = render(variant);
    assert!(m.of_kind("VirtualService").is_empty());
    assert_eq!(m.of_kind("HTTPRoute").len(), 1);
    let g = start_gateway(variant);
    for p in &g.plugins {
        assert_eq!(p.target_refs[0]["kind"], "Gateway", "{}", p.name);
    }
    check_loaded_and_routing(&g);
    // A client cannot choose the upstream with the routing header.
    let (tls, req) = pass_through(&g, "webapp.istioinaction.io");
    let r = g.send(tls, &req.header("x-gatehouse-cluster", "catalog"));
    assert_eq!(r.echo().upstream, "webapp");
}

#[test]
fn the_shared_module_variant_runs_every_filter_from_gatehouse_wasm() {
    // manifests-shared-module/ as WasmPlugins on a Gateway API gateway: one
    // module (dist/gatehouse.wasm), each plugin selecting its filter by
    // pluginName (root_id).
    let g = start_gateway(Variant {
        shared_module: true,
        wasm_plugin: true,
        gateway_api: true,
    });
    for (p, f) in g.plugins.iter().zip(ecds_files(&g)) {
        assert_eq!(p.image, "gatehouse");
        let cfg = &f["resources"][0]["typed_config"]["config"];
        assert_eq!(cfg["root_id"], p.filter.as_str());
        assert!(cfg["vm_config"]["code"]["local"]["filename"]
            .as_str()
            .unwrap()
            .ends_with("gatehouse.wasm"));
    }
    check_loaded_and_routing(&g);
}

#[test]
fn envoy_the_gateway_runs_what_istiod_would_send_for_the_manifests() {
    let g = start_gateway(Variant::DEFAULT);
    let order: Vec<String> = g.plugins.iter().map(|p| p.filter.clone()).collect();
    let expected: Vec<String> = run::CHAIN_ORDER
        .iter()
        .map(|s| s.to_string())
        .filter(|f| order.contains(f))
        .collect();
    assert_eq!(order, expected, "phase/priority order");

    // Envoy loaded each plugin through ECDS, in that order, before the router.
    for p in &g.plugins {
        assert!(
            g.ecds_counter(p, "config_reload") >= 1,
            "{} not loaded",
            p.name
        );
        assert_eq!(g.ecds_counter(p, "update_rejected"), 0, "{}", p.name);
    }
    let mut names: Vec<String> = g.plugins.iter().map(|p| p.resource_name()).collect();
    names.push("envoy.filters.http.router".to_string());
    assert_eq!(loaded_filter_chain(&g.envoy), names);

    // What istiod puts in the TypedExtensionConfig.
    for p in &g.plugins {
        let file: Value = serde_json::from_slice(
            &std::fs::read(g.ecds_dir.join(format!("{}.json", p.filter))).unwrap(),
        )
        .unwrap();
        let cfg = &file["resources"][0]["typed_config"]["config"];
        let expected_policy = match p.fail_strategy.as_deref() {
            Some("FAIL_OPEN") => "FAIL_OPEN",
            Some("FAIL_RELOAD") => "FAIL_RELOAD",
            _ => "FAIL_CLOSED",
        };
        assert_eq!(cfg["failure_policy"], expected_policy, "{}", p.name);
        assert_eq!(
            cfg["configuration"]["@type"],
            "type.googleapis.com/google.protobuf.StringValue"
        );
        let delivered: Value =
            serde_json::from_str(cfg["configuration"]["value"].as_str().unwrap()).unwrap();
        assert_eq!(delivered, p.plugin_config);
        assert_eq!(cfg["vm_config"]["runtime"], "envoy.wasm.runtime.v8");
        assert_eq!(cfg["vm_config"]["vm_id"], "");
        assert_eq!(cfg["root_id"], p.filter.as_str());
    }
    // FAIL_RELOAD is what the manifests use for the filters that must not
    // fail open; this Envoy accepted it (update_rejected is 0 above).
    assert!(g
        .plugins
        .iter()
        .any(|p| p.fail_strategy.as_deref() == Some("FAIL_RELOAD")));

    let id_header = if g.has("request-id") {
        g.plugin("request-id").plugin_config["header"]
            .as_str()
            .unwrap_or("x-request-id")
            .to_string()
    } else {
        String::new()
    };
    let check_id = |r: &Response, what: &str| {
        if g.has("request-id") {
            assert!(r.header(&id_header).is_some(), "{what}: no {id_header}");
        }
    };

    // https-redirect (after request-id: the redirect carries the id).
    if g.has("https-redirect") {
        let r = g
            .envoy
            .send_h1(&Request::post("/api/orders?id=7").host("webapp.istioinaction.io"));
        let status = g.plugin("https-redirect").plugin_config["non_get_status"]
            .as_u64()
            .unwrap_or(301);
        assert_eq!(u64::from(r.status), status, "{}", r.text());
        assert_eq!(
            r.header("location"),
            Some("https://webapp.istioinaction.io/api/orders?id=7")
        );
        check_id(&r, "redirect");
    }

    // Through every filter to the service the VirtualService picks.
    for (host, service) in [
        ("webapp.istioinaction.io", "webapp"),
        ("catalog.istioinaction.io", "catalog"),
    ] {
        let (tls, req) = pass_through(&g, host);
        let r = g.send(tls, &req);
        assert_eq!(r.status, 200, "{host}: {}", r.text());
        let seen = r.echo();
        if g.has("host-router") {
            assert_eq!(seen.upstream, service, "{host}");
            // The routing header is host-router's own, not the client's.
            let routing = g.plugin("host-router").plugin_config["routing_header"]
                .as_str()
                .unwrap_or("x-gatehouse-cluster")
                .to_string();
            assert_eq!(seen.header(&routing), Some(service));
        }
        if g.has("request-id") {
            assert!(seen.header(&id_header).is_some());
        }
        if g.has("client-id") && g.plugin("client-id").plugin_config.get("headers").is_none() {
            // client-id told the upstream who called (default header).
            let creds: Value = serde_json::from_slice(
                &std::fs::read(repo_root().join("filters/client-id/demo-credentials.json"))
                    .unwrap(),
            )
            .unwrap();
            assert_eq!(
                seen.header("x-client-id"),
                creds["api_key_client"].as_str(),
                "{host}"
            );
        }
        if g.has("rate-limit")
            && g.plugin("rate-limit").plugin_config["headers"] == json!("x_ratelimit")
        {
            // rate-limit counted the request (after client-id: per client).
            assert!(r.header("x-ratelimit-limit").is_some(), "{:?}", r.headers);
        }
        check_id(&r, host);
    }
    if g.has("host-router") {
        // A client cannot choose the upstream with the routing header.
        let (tls, req) = pass_through(&g, "webapp.istioinaction.io");
        let r = g.send(tls, &req.header("x-gatehouse-cluster", "catalog"));
        assert_eq!(r.status, 200);
        assert_eq!(r.echo().upstream, "webapp");
    }

    // The documented demo requests (`make run`) answer as documented (last:
    // a demo may spend rate-limit budget).
    let built: Vec<&str> = g.plugins.iter().map(|p| p.filter.as_str()).collect();
    for demo in demos(&built) {
        let mut last = None;
        for _ in 0..demo.repeat.max(1) {
            last = Some(g.send(demo.tls, &demo.request));
        }
        let r = last.unwrap();
        assert_eq!(
            r.status,
            demo.expect_status,
            "demo `{}`: {}",
            demo.what,
            r.text()
        );
        check_id(&r, &demo.what);
    }
}

/// Waits (bounded) until `f` holds.
fn eventually(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for: {what}");
}

#[test]
fn envoy_ecds_hot_reload_applies_a_new_plugin_config_and_rejects_a_bad_one() {
    let g = start_gateway(Variant::DEFAULT);
    assert!(
        g.has("request-id"),
        "the reload test changes request-id's header"
    );
    let p = g.plugin("request-id").clone();
    let file = g.ecds_dir.join("request-id.json");
    let wasm = wasm_path("request-id");
    let old_header = p.plugin_config["header"]
        .as_str()
        .unwrap_or("x-request-id")
        .to_string();
    let probe = || g.send_through(&Request::get("/reload").host("webapp.istioinaction.io"));
    let r = probe();
    assert!(r.header(&old_header).is_some(), "{:?}", r.headers);
    assert!(r.header("x-gatehouse-reloaded-id").is_none());
    let pid = g.envoy.pid();
    let reloads = g.ecds_counter(&p, "config_reload");

    // A changed pluginConfig, delivered by an atomic rename.
    let mut changed = p.plugin_config.clone();
    changed["header"] = json!("x-gatehouse-reloaded-id");
    istio::write_atomically(&file, &p.ecds_file(&wasm, Some(&changed.to_string()))).unwrap();
    eventually("ECDS reload", Duration::from_secs(30), || {
        g.ecds_counter(&p, "config_reload") > reloads
    });
    // Every worker picks it up; bounded number of probes.
    let mut seen_new = 0;
    for _ in 0..40 {
        let r = probe();
        if r.header("x-gatehouse-reloaded-id").is_some() {
            seen_new += 1;
            assert!(r.header(&old_header).is_none(), "{:?}", r.headers);
            if seen_new >= 5 {
                break;
            }
        } else {
            seen_new = 0;
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    assert!(seen_new >= 5, "the new pluginConfig is not applied");
    assert_eq!(g.envoy.pid(), pid, "Envoy was not restarted");

    // A config the filter refuses: the update is rejected, the previous
    // config keeps serving.
    let rejected = g.ecds_counter(&p, "update_rejected");
    let reloads = g.ecds_counter(&p, "config_reload");
    let mut bad = changed.clone();
    bad["header"] = json!(42);
    istio::write_atomically(&file, &p.ecds_file(&wasm, Some(&bad.to_string()))).unwrap();
    eventually("ECDS update_rejected", Duration::from_secs(30), || {
        g.ecds_counter(&p, "update_rejected") > rejected
    });
    assert!(
        g.envoy
            .wait_for_log("gatehouse request-id", Duration::from_secs(5)),
        "the filter logs why"
    );
    for _ in 0..10 {
        let r = probe();
        assert!(
            r.status < 500 && r.header("x-gatehouse-reloaded-id").is_some(),
            "the previous config must keep serving: {} {:?}",
            r.status,
            r.headers
        );
    }
    eprintln!(
        "ECDS counters after the rejected update: config_reload {} (was {reloads}), update_rejected {}",
        g.ecds_counter(&p, "config_reload"),
        g.ecds_counter(&p, "update_rejected")
    );

    // Not JSON at all: rejected too.
    let rejected = g.ecds_counter(&p, "update_rejected");
    istio::write_atomically(&file, &p.ecds_file(&wasm, Some("{not json"))).unwrap();
    eventually("second update_rejected", Duration::from_secs(30), || {
        g.ecds_counter(&p, "update_rejected") > rejected
    });
    let r = probe();
    assert!(r.status < 500 && r.header("x-gatehouse-reloaded-id").is_some());
    assert_eq!(g.envoy.pid(), pid);
}
