//! host-router end to end, in real Envoy: virtual hosting by Host /
//! `:authority` over HTTP/1.1 and HTTP/2, path rules, rewrites, header
//! edits, direct responses, unknown hosts, the forged routing header,
//! re-routing after an earlier filter resolved the route, weighted and
//! sticky splits, counters, and refused configurations.
//!
//! Every Envoy here routes with the same route table: a request carrying
//! the routing header goes to the cluster it names (`cluster_header`), any
//! other request goes to the `fallback` echo.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use gatehouse_e2e::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const ROUTING_HEADER: &str = "x-gatehouse-cluster";

/// The three upstreams every test uses.
struct Upstreams {
    webapp: Echo,
    catalog: Echo,
    fallback: Echo,
}

impl Upstreams {
    fn start() -> Upstreams {
        Upstreams {
            webapp: Echo::start("webapp"),
            catalog: Echo::start("catalog"),
            fallback: Echo::start("fallback"),
        }
    }
}

/// Routes: the routing header picks the cluster; without it, `fallback`.
/// `per_route` optionally adds `typed_per_filter_config` to both routes
/// (used by the "already resolved" tests).
fn routes(per_route: Option<(&str, Value, Value)>) -> Value {
    let mut by_header = json!({
        "name": "by-routing-header",
        "match": {"prefix": "/", "headers": [{"name": ROUTING_HEADER, "present_match": true}]},
        "route": {"cluster_header": ROUTING_HEADER},
    });
    let mut fallback = json!({
        "name": "fallback",
        "match": {"prefix": "/"},
        "route": {"cluster": "fallback"},
    });
    if let Some((filter, on_header_route, on_fallback)) = per_route {
        by_header["typed_per_filter_config"] = json!({ filter: on_header_route });
        fallback["typed_per_filter_config"] = json!({ filter: on_fallback });
    }
    json!([by_header, fallback])
}

fn base(up: &Upstreams) -> EnvoyConfig {
    EnvoyConfig::new()
        .cluster("webapp", up.webapp.port)
        .cluster("catalog", up.catalog.port)
        .cluster("fallback", up.fallback.port)
        .routes(routes(None))
}

fn host_router(config: Value) -> WasmFilter {
    WasmFilter::new("host-router", config)
}

fn example_config() -> Value {
    let path = repo_root().join("filters/host-router/example.json");
    serde_json::from_slice(&std::fs::read(&path).expect("example.json")).expect("example is JSON")
}

/// Sends over HTTP/1.1 or HTTP/2.
fn send(envoy: &Envoy, h2: bool, req: &Request) -> Response {
    if h2 {
        envoy.send_h2(req)
    } else {
        envoy.send_h1(req)
    }
}

fn upstream_of(envoy: &Envoy, h2: bool, req: &Request) -> String {
    let r = send(envoy, h2, req);
    assert_eq!(
        r.status,
        200,
        "{} {}: {}",
        req.authority,
        req.path,
        r.text()
    );
    r.echo().upstream
}

// --- the classic Istio example -------------------------------------------

#[test]
fn iface_example_config_routes_webapp_and_catalog_over_h1_and_h2() {
    let up = Upstreams::start();
    let envoy = Envoy::start(&base(&up).filter(host_router(example_config())));
    for h2 in [false, true] {
        for (authority, want) in [
            ("webapp.istioinaction.io", "webapp"),
            ("catalog.istioinaction.io", "catalog"),
            // Case and port do not matter.
            ("WebApp.IstioInAction.io:8080", "webapp"),
            ("catalog.istioinaction.io:443", "catalog"),
        ] {
            let r = send(&envoy, h2, &Request::get("/items?id=1").host(authority));
            assert_eq!(r.status, 200, "{authority} h2={h2}: {}", r.text());
            let seen = r.echo();
            assert_eq!(seen.upstream, want, "{authority} h2={h2}");
            assert_eq!(seen.path, "/items?id=1");
            // The upstream sees the original host, untouched.
            assert_eq!(seen.header("host"), Some(authority));
            assert_eq!(seen.header(ROUTING_HEADER), Some(want));
        }
        // Unknown host: 404 with the JSON error body, by default.
        let r = send(&envoy, h2, &Request::get("/").host("shop.istioinaction.io"));
        assert_eq!(r.status, 404, "h2={h2}: {}", r.text());
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.json()["error"], "unknown_host");
        assert!(r.json()["request_id"].is_string(), "{}", r.text());
    }
    assert_eq!(envoy.metric("gatehouse.host_router.routed"), 8);
    assert_eq!(envoy.metric("gatehouse.host_router.unknown_host"), 2);
    assert_eq!(
        envoy.metric("gatehouse.host_router.host.webapp_istioinaction_io.requests"),
        4
    );
    assert_eq!(
        envoy.metric("gatehouse.host_router.host.catalog_istioinaction_io.routed"),
        4
    );
}

// --- hosts, rules, rewrites, edits, direct responses ----------------------

fn rich_config() -> Value {
    json!({
        "hosts": [
            {"host": "webapp.istioinaction.io", "rules": [
                {"match": {"exact": "/maintenance"},
                 "direct_response": {"status": 503, "body": "down for maintenance"}},
                {"match": {"segment_prefix": "/api"}, "methods": ["POST", "PUT"],
                 "route": {"cluster": "catalog",
                           "request_headers_to_add": [{"name": "x-rule", "value": "api-write"}]}},
                {"match": {"segment_prefix": "/api"},
                 "headers": [{"name": "x-canary", "exact": "yes"}],
                 "route": {"cluster": "catalog",
                           "request_headers_to_add": [{"name": "x-rule", "value": "api-canary"}]}},
                {"match": {"segment_prefix": "/legacy"},
                 "route": {"cluster": "catalog",
                           "rewrite": {"host": "catalog.internal:8080", "path_prefix": "/v2"},
                           "request_headers_to_remove": ["x-debug"],
                           "request_headers_to_add": [
                               {"name": "x-routed-by", "value": "host-router"},
                               {"name": "x-tag", "value": "b", "append": true}]}},
                {"match": {"segment_prefix": "/"}, "route": {"cluster": "webapp"}}
            ]},
            {"host": "*.example.com", "rules": [{"route": {"cluster": "catalog"}}]},
            {"host": "*.shop.example.com", "rules": [{"route": {"cluster": "webapp"}}]},
            {"host": "ghost.test", "rules": [{"route": {"cluster": "no-such-cluster"}}]},
            {"host": "api.example.com", "rules": [
                {"match": {"segment_prefix": "/only"}, "route": {"cluster": "webapp"}}
            ]}
        ],
        "unknown_host": {"action": "reject", "status": 421}
    })
}

#[test]
fn host_precedence_and_path_rules_over_h1_and_h2() {
    let up = Upstreams::start();
    let envoy = Envoy::start(&base(&up).filter(host_router(rich_config())));
    for h2 in [false, true] {
        let u = |req: Request| upstream_of(&envoy, h2, &req);
        // Exact beats wildcard, a longer wildcard beats a shorter one.
        assert_eq!(u(Request::get("/only/x").host("api.example.com")), "webapp");
        assert_eq!(u(Request::get("/").host("www.example.com")), "catalog");
        assert_eq!(u(Request::get("/").host("a.b.example.com")), "catalog");
        assert_eq!(u(Request::get("/").host("cart.shop.example.com")), "webapp");
        assert_eq!(u(Request::get("/").host("shop.example.com")), "catalog");
        // The exact host matched but none of its rules: 404 no_route (the
        // wildcard is not consulted).
        let r = send(&envoy, h2, &Request::get("/other").host("api.example.com"));
        assert_eq!(r.status, 404, "{}", r.text());
        assert_eq!(r.json()["error"], "no_route");
        // The bare domain is not covered by `*.example.com`: unknown, 421.
        let r = send(&envoy, h2, &Request::get("/").host("example.com"));
        assert_eq!(r.status, 421, "{}", r.text());
        assert_eq!(r.json()["error"], "unknown_host");

        // A cluster Envoy does not know: Envoy's own 503 (documented).
        let r = send(&envoy, h2, &Request::get("/").host("ghost.test"));
        assert_eq!(r.status, 503, "{}", r.text());

        let web = "webapp.istioinaction.io";
        // Segment-aware prefix: /api and /api/x, not /apix.
        let r = send(
            &envoy,
            h2,
            &Request::post("/api/orders").host(web).body(b"{}"),
        );
        assert_eq!(r.echo().upstream, "catalog");
        assert_eq!(r.echo().header("x-rule"), Some("api-write"));
        let r = send(
            &envoy,
            h2,
            &Request::get("/api").host(web).header("x-canary", "yes"),
        );
        assert_eq!(r.echo().upstream, "catalog");
        assert_eq!(r.echo().header("x-rule"), Some("api-canary"));
        // GET without the header falls through to the catch-all rule.
        let r = send(
            &envoy,
            h2,
            &Request::get("/api/orders")
                .host(web)
                .header("x-canary", "no"),
        );
        assert_eq!(r.echo().upstream, "webapp");
        assert_eq!(r.echo().header("x-rule"), None);
        assert_eq!(
            u(Request::get("/apix").host(web).header("x-canary", "yes")),
            "webapp"
        );
        assert_eq!(u(Request::new("DELETE", "/api/1").host(web)), "webapp");
        assert_eq!(u(Request::new("PUT", "/api/1").host(web)), "catalog");
    }
    assert_eq!(envoy.metric("gatehouse.host_router.no_route"), 2);
    assert_eq!(envoy.metric("gatehouse.host_router.unknown_host"), 2);
    assert_eq!(envoy.metric("gatehouse.host_router.routed"), 2 * 12);
    assert_eq!(
        envoy.metric("gatehouse.host_router.host.wildcard_example_com.requests"),
        2 * 3
    );
    assert_eq!(
        envoy.metric("gatehouse.host_router.host.api_example_com.no_route"),
        2
    );
}

#[test]
fn iface_rewrites_header_edits_and_direct_responses_over_h1_and_h2() {
    let up = Upstreams::start();
    let envoy = Envoy::start(&base(&up).filter(host_router(rich_config())));
    let web = "webapp.istioinaction.io";
    for h2 in [false, true] {
        let r = send(
            &envoy,
            h2,
            &Request::get("/legacy/items/7?full=1")
                .host(web)
                .header("x-debug", "secret")
                .header("x-tag", "a")
                .header("x-routed-by", "client"),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        let seen = r.echo();
        assert_eq!(seen.upstream, "catalog");
        assert_eq!(seen.header("host"), Some("catalog.internal:8080"));
        assert_eq!(seen.path, "/v2/items/7?full=1");
        assert_eq!(seen.header("x-debug"), None);
        assert_eq!(seen.header_all("x-routed-by"), vec!["host-router"]);
        assert_eq!(seen.header_all("x-tag"), vec!["a", "b"]);
        // The exact segment is rewritten too.
        let seen = send(&envoy, h2, &Request::get("/legacy").host(web)).echo();
        assert_eq!(seen.path, "/v2");

        let r = send(&envoy, h2, &Request::get("/maintenance").host(web));
        assert_eq!(r.status, 503);
        assert_eq!(r.text(), "down for maintenance");
        assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
        assert_eq!(r.header("x-echo-upstream"), None);
    }
    // Malformed Host: 400, not a 5xx (HTTP/1.1 lets us send anything).
    let r = envoy.send_raw(b"GET / HTTP/1.1\r\nhost: a..b\r\nconnection: close\r\n\r\n");
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["error"], "bad_host");
    // Non-UTF-8 bytes in Host: a 4xx (from Envoy's codec or the filter),
    // never a trap.
    let r = envoy
        .send_raw(b"GET / HTTP/1.1\r\nhost: caf\xc3\xa9\xff.test\r\nconnection: close\r\n\r\n");
    assert!((400..500).contains(&r.status), "{} {}", r.status, r.text());

    assert_eq!(envoy.metric("gatehouse.host_router.rewritten"), 4);
    assert_eq!(envoy.metric("gatehouse.host_router.direct_response"), 2);
    assert_eq!(envoy.metric("gatehouse.host_router.bad_host"), 1);
    assert_eq!(
        envoy.metric("gatehouse.host_router.host.webapp_istioinaction_io.direct_response"),
        2
    );
    assert_eq!(
        envoy.metric("gatehouse.host_router.host.webapp_istioinaction_io.requests"),
        6
    );
}

#[test]
fn a_forged_routing_header_is_removed_before_the_decision() {
    let up = Upstreams::start();
    let envoy = Envoy::start(&base(&up).filter(host_router(rich_config())));
    for h2 in [false, true] {
        // The client asks for catalog; the rule says webapp.
        let r = send(
            &envoy,
            h2,
            &Request::get("/")
                .host("webapp.istioinaction.io")
                .header(ROUTING_HEADER, "catalog"),
        );
        let seen = r.echo();
        assert_eq!(seen.upstream, "webapp");
        assert_eq!(seen.header_all(ROUTING_HEADER), vec!["webapp"]);
        // A forged header on a rejected host does not reach anything.
        let r = send(
            &envoy,
            h2,
            &Request::get("/")
                .host("nope.test")
                .header(ROUTING_HEADER, "catalog"),
        );
        assert_eq!(r.status, 421);
    }
    assert_eq!(
        envoy.metric("gatehouse.host_router.forged_routing_header"),
        4
    );
}

// --- re-routing after the route was resolved ------------------------------

/// A native `header_mutation` filter with per-route config, placed before
/// host-router. Reading its per-route config makes Envoy resolve the route
/// from the headers as they arrived, and it stamps the name of the route it
/// saw into `x-resolved-route`, so the upstream can tell which route was
/// resolved before host-router ran.
fn resolver_filter() -> Value {
    json!({
        "name": "resolver",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation",
            "mutations": {}
        }
    })
}

fn stamp(route: &str) -> Value {
    json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutationPerRoute",
        "mutations": {"request_mutations": [{"append": {
            "header": {"key": "x-resolved-route", "value": route},
            "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"
        }}]}
    })
}

fn resolving_base(up: &Upstreams) -> EnvoyConfig {
    base(up)
        .routes(routes(Some((
            "resolver",
            stamp("by-routing-header"),
            stamp("fallback"),
        ))))
        .raw_filter(resolver_filter())
}

#[test]
fn iface_reroutes_even_when_an_earlier_filter_already_resolved_the_route() {
    let up = Upstreams::start();
    let mut cfg = example_config();
    cfg["unknown_host"] = json!({"action": "pass"});
    let envoy = Envoy::start(&resolving_base(&up).filter(host_router(cfg)));
    for h2 in [false, true] {
        for (authority, want) in [
            ("webapp.istioinaction.io", "webapp"),
            ("catalog.istioinaction.io", "catalog"),
        ] {
            let seen = send(&envoy, h2, &Request::get("/x").host(authority)).echo();
            // The earlier filter resolved the `fallback` route...
            assert_eq!(
                seen.header("x-resolved-route"),
                Some("fallback"),
                "{authority}"
            );
            // ...yet the request went where host-router said.
            assert_eq!(seen.upstream, want, "{authority} h2={h2}");
        }
        // A forged header made the earlier filter resolve the
        // routing-header route to `catalog`; host-router removes the header
        // (unknown host, pass-through) and the request re-routes to the
        // fallback instead of the cluster the client asked for.
        let seen = send(
            &envoy,
            h2,
            &Request::get("/x")
                .host("other.test")
                .header(ROUTING_HEADER, "catalog"),
        )
        .echo();
        assert_eq!(seen.header("x-resolved-route"), Some("by-routing-header"));
        assert_eq!(seen.upstream, "fallback", "h2={h2}");
        assert_eq!(seen.header(ROUTING_HEADER), None);
        // Pass-through leaves an unknown host untouched.
        let seen = send(&envoy, h2, &Request::get("/y").host("other.test")).echo();
        assert_eq!(seen.upstream, "fallback");
        assert_eq!(seen.header("host"), Some("other.test"));
    }
    assert_eq!(envoy.metric("gatehouse.host_router.unknown_host_passed"), 4);
    assert_eq!(envoy.metric("gatehouse.host_router.unknown_host"), 4);
}

/// Control for the test above (no host-router involved): in the same
/// Envoy setup, setting the routing header after the route was resolved,
/// without clearing the route cache, does NOT re-route. This shows the
/// setup really pins the route, so the test above is not vacuous.
#[test]
fn control_setting_the_header_without_clearing_the_route_cache_does_not_reroute() {
    let up = Upstreams::start();
    let setter = json!({
        "name": "setter",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation",
            "mutations": {"request_mutations": [{"append": {
                "header": {"key": ROUTING_HEADER, "value": "webapp"},
                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"
            }}]}
        }
    });
    // Resolver first, then the setter: the header reaches the upstream, but
    // the cached route wins. (`header_mutation` cannot serve as a setter
    // that leaves the route unresolved: it resolves the route itself to
    // look up its per-route config.)
    let envoy = Envoy::start(&resolving_base(&up).raw_filter(setter));
    let seen = envoy
        .send_h1(&Request::get("/").host("webapp.istioinaction.io"))
        .echo();
    assert_eq!(seen.header("x-resolved-route"), Some("fallback"));
    assert_eq!(seen.header(ROUTING_HEADER), Some("webapp"));
    assert_eq!(seen.upstream, "fallback");
}

// --- weighted and sticky splits -------------------------------------------

fn split_config() -> Value {
    let clusters = |canary: u32| {
        json!([
            {"cluster": "webapp", "weight": 100 - canary},
            {"cluster": "catalog", "weight": canary}
        ])
    };
    json!({"hosts": [
        {"host": "random.test", "rules": [{"route": {"split": {"clusters": clusters(20)}}}]},
        {"host": "header.test", "rules": [{"route": {"split": {
            "clusters": clusters(50), "sticky": {"header": "x-user"}}}}]},
        {"host": "cookie.test", "rules": [{"route": {"split": {
            "clusters": clusters(50), "sticky": {"cookie": "session"}}}}]}
    ]})
}

/// 80/20 random split. Over N = 400 requests the canary count is
/// Binomial(400, 0.2): mean 80, σ = 8. We accept 80 ± 32 (±4σ, i.e. 20% ± 8
/// percentage points): a correct filter fails this about once in 15,000
/// runs; an even split (200) or no split (0) always fails it.
#[test]
fn weighted_split_follows_the_weights() {
    const N: usize = 400;
    let up = Upstreams::start();
    let envoy = Envoy::start(&base(&up).filter(host_router(split_config())));
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut canary = 0;
    let mut sent = 0;
    for i in 0..N {
        assert!(
            Instant::now() < deadline,
            "split test too slow ({i} requests)"
        );
        let r = envoy.send_h1(&Request::get("/").host("random.test"));
        assert_eq!(r.status, 200, "{}", r.text());
        match r.echo().upstream.as_str() {
            "catalog" => canary += 1,
            "webapp" => {}
            other => panic!("unexpected upstream {other}"),
        }
        sent += 1;
    }
    assert_eq!(sent, N);
    assert!(
        (48..=112).contains(&canary),
        "canary got {canary}/{N}, expected 80 ± 32"
    );
    // A few over HTTP/2 land on one of the two clusters.
    for _ in 0..5 {
        let up = envoy
            .send_h2(&Request::get("/").host("random.test"))
            .echo()
            .upstream;
        assert!(up == "webapp" || up == "catalog", "{up}");
    }
}

#[test]
fn sticky_split_keeps_each_key_on_one_cluster() {
    let up = Upstreams::start();
    let envoy = Envoy::start(&base(&up).filter(host_router(split_config())));
    for sticky in ["header", "cookie"] {
        let mut seen_clusters = std::collections::BTreeSet::new();
        for user in 0..16 {
            let key = format!("user-{user}");
            let mut first = None;
            for attempt in 0..4 {
                let req = match sticky {
                    "header" => Request::get("/").host("header.test").header("x-user", &key),
                    _ => Request::get("/")
                        .host("cookie.test")
                        .header("cookie", &format!("theme=dark; session={key}")),
                };
                let h2 = attempt % 2 == 1;
                let got = upstream_of(&envoy, h2, &req);
                match &first {
                    None => first = Some(got),
                    Some(f) => assert_eq!(&got, f, "{sticky} key {key} moved"),
                }
            }
            seen_clusters.insert(first.unwrap());
        }
        // 16 keys on a 50/50 split: both clusters are used (the hash is
        // deterministic, so this is a fixed fact, not a probability).
        assert_eq!(seen_clusters.len(), 2, "{sticky}: {seen_clusters:?}");
    }
}

// --- refused configurations -----------------------------------------------

fn refused(up: &Upstreams, config: Value, field: &str, reason: &str) {
    let f = Envoy::try_start(&base(up).filter(host_router(config)))
        .err()
        .unwrap_or_else(|| panic!("Envoy must refuse a config with a bad `{field}`"));
    assert!(f.exited.is_some(), "Envoy must exit, not hang:\n{}", f.log);
    let line = f
        .log
        .lines()
        .find(|l| l.contains("gatehouse host-router: invalid configuration"))
        .unwrap_or_else(|| panic!("no configuration error line in the log:\n{}", f.log));
    assert!(
        line.contains(&format!("field `{field}`")) && line.contains(reason),
        "expected field `{field}` / `{reason}` in: {line}"
    );
    assert!(
        !line.contains(" at line ") && !line.contains("not valid JSON"),
        "no JSON position or syntax claim for a field error: {line}"
    );
    assert_eq!(
        f.log
            .matches("gatehouse host-router: invalid configuration")
            .count(),
        1,
        "one line per refusal:\n{}",
        f.log
    );
}

#[test]
fn iface_bad_config_is_refused_naming_the_field() {
    // One refusal end to end; the other bad configurations are unit tests of
    // the parser (filters/host-router/src/config.rs).
    let up = Upstreams::start();
    refused(
        &up,
        json!({"hosts": [{"host": "a.test", "rules": [{"route": {"split": {"clusters": [
            {"cluster": "webapp", "weight": 90}, {"cluster": "catalog", "weight": 20}]}}}]}]}),
        "hosts[0].rules[0].route.split.clusters",
        "weights must add up to 100",
    );
}

/// A `match` with zero or two path kinds is valid JSON: the error names the
/// field and the rule, not ``field `.`: not valid JSON ... at line 1``.
#[test]
fn a_match_without_exactly_one_kind_is_refused_naming_the_field_and_the_rule() {
    let up = Upstreams::start();
    let rule = |m: Value| {
        json!({"hosts": [{"host": "a.test", "rules": [
        {"route": {"cluster": "webapp"}},
        {"match": m, "route": {"cluster": "webapp"}}]}]})
    };
    refused(
        &up,
        rule(json!({})),
        "hosts[0].rules[1].match",
        "exactly one of `exact`, `prefix`, `segment_prefix` (got none)",
    );
    refused(
        &up,
        rule(json!({"exact": "/a", "segment_prefix": "/b"})),
        "hosts[0].rules[1].match",
        "exactly one of `exact`, `prefix`, `segment_prefix` (got `exact` and `segment_prefix`)",
    );
    // Any enum written as an object with two keys names its field too.
    refused(
        &up,
        json!({"unknown_host": {"action": {"reject": null, "pass": null}}}),
        "unknown_host.action",
        "an object with exactly one key",
    );
}

// --- path rewrites never leave the prefix ---------------------------------

fn rewrite_config() -> Value {
    json!({"hosts": [{"host": "a.test", "rules": [
        {"match": {"segment_prefix": "/legacy"},
         "route": {"cluster": "catalog", "rewrite": {"path_prefix": "/v2"}}},
        {"match": {"segment_prefix": "/strip"},
         "route": {"cluster": "catalog", "rewrite": {"path_prefix": "/"}}},
        {"route": {"cluster": "webapp"}}
    ]}]})
}

/// Without Envoy's `normalize_path` / `merge_slashes` (the defaults), a
/// rewrite could send `/v2/../admin` or `//evil.example/x` upstream: such
/// requests get 400 `bad_path` instead, over HTTP/1.1 and HTTP/2.
#[test]
fn path_rewrites_never_emit_dot_segments_or_a_leading_double_slash() {
    let up = Upstreams::start();
    let envoy = Envoy::start(&base(&up).filter(host_router(rewrite_config())));
    let bad = [
        "/legacy/../admin",
        "/legacy/./admin",
        "/legacy/%2e%2e/admin",
        "/legacy/x/..",
        "/strip//evil.example/x",
        "/strip/%2Fevil.example/x",
    ];
    for h2 in [false, true] {
        for path in bad {
            let r = send(&envoy, h2, &Request::get(path).host("a.test"));
            assert_eq!(r.status, 400, "{path} h2={h2}: {}", r.text());
            assert_eq!(r.json()["error"], "bad_path", "{path}");
            assert_eq!(r.header("x-echo-upstream"), None);
        }
        // Safe rewrites still go through.
        let seen = send(
            &envoy,
            h2,
            &Request::get("/legacy/items?next=/../x").host("a.test"),
        )
        .echo();
        assert_eq!(seen.upstream, "catalog");
        assert_eq!(seen.path, "/v2/items?next=/../x");
        let seen = send(&envoy, h2, &Request::get("/strip/x/y").host("a.test")).echo();
        assert_eq!(seen.path, "/x/y");
    }
    assert_eq!(
        envoy.metric("gatehouse.host_router.bad_path"),
        2 * bad.len() as u64
    );
    assert_eq!(envoy.metric("gatehouse.host_router.rewritten"), 4);
}

/// With Envoy normalising (`normalize_path`, `merge_slashes`) the same
/// requests are resolved before the filter and route normally.
#[test]
fn with_envoy_normalisation_the_same_paths_route_normally() {
    let up = Upstreams::start();
    let envoy = Envoy::start(
        &base(&up)
            .hcm(json!({"normalize_path": true, "merge_slashes": true}))
            .filter(host_router(rewrite_config())),
    );
    let seen = envoy
        .send_h1(&Request::get("/legacy/../admin").host("a.test"))
        .echo();
    assert_eq!(
        (seen.upstream.as_str(), seen.path.as_str()),
        ("webapp", "/admin")
    );
    let seen = envoy
        .send_h1(&Request::get("/strip//evil.example/x").host("a.test"))
        .echo();
    assert_eq!(
        (seen.upstream.as_str(), seen.path.as_str()),
        ("catalog", "/evil.example/x")
    );
    assert_eq!(envoy.metric("gatehouse.host_router.bad_path"), 0);
}

// --- IPv6 literals ---------------------------------------------------------

/// `[0:0:0:0:0:0:0:1]` and `[::1]` are one host: configured and requested
/// IPv6 literals are compared in their canonical form.
#[test]
fn ipv6_literals_match_in_any_spelling() {
    let up = Upstreams::start();
    let envoy = Envoy::start(&base(&up).filter(host_router(json!({"hosts": [
        {"host": "[::1]", "rules": [{"route": {"cluster": "webapp"}}]},
        {"host": "[2001:DB8:0:0:0:0:0:1]", "rules": [{"route": {"cluster": "catalog"}}]}
    ]}))));
    for h2 in [false, true] {
        for (authority, want) in [
            ("[::1]", "webapp"),
            ("[0:0:0:0:0:0:0:1]", "webapp"),
            ("[0000::0001]:8080", "webapp"),
            ("[2001:db8::1]", "catalog"),
            ("[2001:0db8:0000::1]:443", "catalog"),
        ] {
            assert_eq!(
                upstream_of(&envoy, h2, &Request::get("/").host(authority)),
                want,
                "{authority} h2={h2}"
            );
        }
        let r = send(&envoy, h2, &Request::get("/").host("[::2]"));
        assert_eq!(r.status, 404, "{}", r.text());
    }
}
