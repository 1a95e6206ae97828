//! `make bench`: gatehouse in real Envoy against plain Envoy.
//!
//! Envoy (the project's pinned binary) runs with one worker pinned to core 0;
//! this process (the fast upstream) and `wrk` run on core 1. Every
//! configuration is measured in interleaved rounds (A B C ... A B C ...),
//! Envoy restarted for each sample, and the medians are written to
//! `docs/benchmarks.md`.
//!
//! Per sample: Envoy CPU time per request (utime+stime of the Envoy process
//! over the load, divided by the requests wrk completed), requests per
//! second, p50/p99 latency (wrk), resident memory after the load, and the
//! time from spawning Envoy to the first answered request.
//!
//! rate-limit's global mode calls the real `gatehouse-ratelimit` service
//! (`$GATEHOUSE_RATELIMIT_BIN`; `make bench` builds it in release) with a
//! real Redis, both started by the bench on loopback, on core 1 with wrk:
//! their CPU is reported apart from Envoy's.
//!
//! After the measured rounds, the profile phase (`profile.rs`) samples one
//! more run of the rows the targets compare with `perf` and splits their
//! CPU into Wasm, the envoy binary, the kernel and libraries.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use base64::Engine;
use gatehouse_e2e::client::{send_h1, send_h1_tls, TlsClient};
use gatehouse_e2e::run_cluster::rls_cluster;
use gatehouse_e2e::{
    dist_dir, envoy_bin, repo_root, scratch_dir, Echo, Envoy, EnvoyConfig, RateLimitService, Redis,
    Request, TestPki, WasmFilter,
};
use jwt_simple::prelude::*;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

mod profile;

/// Bench parameters (override with environment variables).
struct Params {
    rounds: usize,
    seconds: u32,
    connections: u32,
}

impl Params {
    fn from_env() -> Params {
        let get = |k: &str, d: u64| {
            std::env::var(k)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(d)
        };
        Params {
            rounds: get("BENCH_ROUNDS", 5) as usize,
            seconds: get("BENCH_SECONDS", 5) as u32,
            connections: get("BENCH_CONNECTIONS", 8) as u32,
        }
    }
}

/// Everything the scenarios share: upstream, PKI, credentials.
struct Ctx {
    upstream: Echo,
    pki: TestPki,
    api_key: String,
    jwt: String,
    jwks: Value,
    /// The rate-limit service and its Redis, when a scenario needs them.
    rls: Option<(RateLimitService, Redis)>,
}

impl Ctx {
    fn rls_port(&self) -> u16 {
        self.rls
            .as_ref()
            .expect("rate-limit service started")
            .0
            .port
    }

    /// The service's and Redis's pids.
    fn helper_pids(&self) -> Vec<u32> {
        self.rls
            .iter()
            .flat_map(|(s, r)| [s.pid(), r.pid()])
            .flatten()
            .collect()
    }
}

/// The Envoy cluster of the rate-limit service.
const RLS: &str = "rls";

#[derive(Clone)]
struct Scenario {
    name: &'static str,
    what: &'static str,
    tls: bool,
    host: String,
    headers: Vec<(String, String)>,
    expect: u16,
    /// Builds the HTTP filters (and route tweaks) of this scenario.
    build: fn(&Ctx, EnvoyConfig) -> EnvoyConfig,
    /// `.wasm` files loaded (for the size column).
    modules: Vec<&'static str>,
    /// The baseline and no-op rows this one is compared with.
    baseline: &'static str,
    noop: &'static str,
    /// Needs the rate-limit service (and Redis).
    rls: bool,
    /// Envoy's `--concurrency` (workers); memory per worker is what a
    /// gateway with one worker per core pays.
    concurrency: u32,
}

#[derive(Clone, Copy, Debug, Default)]
struct Sample {
    cpu_us_per_req: f64,
    rps: f64,
    p50_us: f64,
    p99_us: f64,
    rss_mib: f64,
    start_ms: f64,
    /// CPU of the rate-limit service + Redis per request (0 without them).
    helpers_cpu_us_per_req: f64,
}

fn wasm(name: &str) -> PathBuf {
    let p = match name {
        "noop" => dist_dir().join("bench/noop.wasm"),
        other => dist_dir().join(format!("{other}.wasm")),
    };
    assert!(
        p.is_file(),
        "{} is missing: run `make build` (make bench does)",
        p.display()
    );
    p
}

fn filter(name: &str, config: Value) -> WasmFilter {
    WasmFilter::new_at(name, wasm(name), config)
}

fn shared(name: &str, config: Value) -> WasmFilter {
    WasmFilter::new_at(name, wasm("gatehouse"), config).root_id(name)
}

fn host_router_config(n: usize) -> Value {
    let hosts: Vec<Value> = (0..n)
        .map(|i| json!({"host": format!("svc{i}.example.com"), "rules": [{"route": {"cluster": "echo"}}]}))
        .collect();
    json!({"hosts": hosts})
}

fn client_id_apikey_config(ctx: &Ctx) -> Value {
    json!({"clients": [{"id": "bench", "plan": "gold",
        "api_keys": [{"sha256": gatehouse_e2e::pki::sha256_hex(ctx.api_key.as_bytes())}]}]})
}

fn client_id_jwt_config(ctx: &Ctx) -> Value {
    json!({"jwt": {"issuers": [{"issuer": "https://bench.gatehouse.local", "audiences": ["bench"],
        "algorithms": ["RS256"], "jwks": ctx.jwks.clone()}]}})
}

fn rate_limit_config() -> Value {
    json!({"rules": [{"name": "bench", "descriptor": ["client_id"],
        "limits": [{"name": "never-reached", "rate": 1_000_000, "per": "second"}]}]})
}

/// The same limit, decided by the rate-limit service (the service reads the
/// same JSON). `deny` on errors: a failed callout shows as a 429, never as
/// a cheap pass.
fn rate_limit_global_config() -> Value {
    let mut c = rate_limit_config();
    c["rules"][0]["global"] = json!({"cluster": RLS, "timeout_ms": 1000, "on_error": "deny"});
    c
}

fn five(ctx: &Ctx) -> Vec<(&'static str, Value)> {
    vec![
        ("request-id", json!({})),
        ("https-redirect", json!({})),
        ("client-id", client_id_apikey_config(ctx)),
        ("rate-limit", rate_limit_config()),
        ("host-router", host_router_config(50)),
    ]
}

fn route_by_header(cfg: EnvoyConfig) -> EnvoyConfig {
    cfg.routes(
        json!([{"match": {"prefix": "/"}, "route": {"cluster_header": "x-gatehouse-cluster"}}]),
    )
}

fn scenarios() -> Vec<Scenario> {
    let h = |k: &str, v: &str| (k.to_string(), v.to_string());
    let plain = |name, what, build, modules: Vec<&'static str>| Scenario {
        name,
        what,
        tls: false,
        host: "svc25.example.com".into(),
        headers: vec![],
        expect: 200,
        build,
        modules,
        baseline: "baseline",
        noop: "noop",
        rls: false,
        concurrency: 1,
    };
    let mut v = vec![
        plain("baseline", "router only (plain HTTP)", |_, c| c, vec![]),
        plain(
            "noop",
            "no-op proxy-wasm filter (fixture)",
            |_, c| c.filter(filter("noop", json!({}))),
            vec!["noop"],
        ),
        plain(
            "request-id",
            "request-id, default config (ids + B3 and W3C)",
            |_, c| c.filter(filter("request-id", json!({}))),
            vec!["request-id"],
        ),
        plain(
            "request-id-ids-only",
            "request-id with tracing off (attribution: ids only)",
            |_, c| c.filter(filter("request-id", json!({"tracing": {"enabled": false}}))),
            vec!["request-id"],
        ),
        plain(
            "request-id-w3c-only",
            "request-id emitting only traceparent (attribution)",
            |_, c| c.filter(filter("request-id", json!({"tracing": {"emit": ["w3c"]}}))),
            vec!["request-id"],
        ),
        Scenario {
            expect: 301,
            ..plain(
                "https-redirect-http",
                "https-redirect on plain HTTP (every request redirected)",
                |_, c| c.filter(filter("https-redirect", json!({}))),
                vec!["https-redirect"],
            )
        },
        Scenario {
            expect: 301,
            ..plain(
                "native-redirect-http",
                "Envoy route-level https_redirect (require_tls) on plain HTTP",
                |_, c| {
                    c.route_config(json!({"name": "local", "virtual_hosts": [{"name": "all", "domains": ["*"], "require_tls": "ALL",
                    "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "echo"}}]}]}))
                },
                vec![],
            )
        },
        plain(
            "host-router-50",
            "host-router with 50 hosts",
            |_, c| route_by_header(c.filter(filter("host-router", host_router_config(50)))),
            vec!["host-router"],
        ),
        Scenario {
            headers: vec![h("x-api-key", "")],
            ..plain(
                "client-id-apikey",
                "client-id, API key",
                |ctx, c| c.filter(filter("client-id", client_id_apikey_config(ctx))),
                vec!["client-id"],
            )
        },
        Scenario {
            headers: vec![h("authorization", "")],
            ..plain(
                "client-id-jwt",
                "client-id, RS256 JWT",
                |ctx, c| c.filter(filter("client-id", client_id_jwt_config(ctx))),
                vec!["client-id"],
            )
        },
        Scenario {
            headers: vec![h("authorization", "")],
            ..plain(
                "native-jwt-authn",
                "Envoy jwt_authn, same RS256 JWT",
                |ctx, c| {
                    c.raw_filter(json!({"name": "envoy.filters.http.jwt_authn", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
                    "providers": {"bench": {"issuer": "https://bench.gatehouse.local", "audiences": ["bench"],
                        "local_jwks": {"inline_string": ctx.jwks.to_string()}, "forward": true}},
                    "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "bench"}}]}}))
                },
                vec![],
            )
        },
        Scenario {
            headers: vec![h("x-client-id", "bench")],
            ..plain(
                "rate-limit",
                "rate-limit, one limit never reached",
                |_, c| c.filter(filter("rate-limit", rate_limit_config())),
                vec!["rate-limit"],
            )
        },
        Scenario {
            headers: vec![h("x-client-id", "bench")],
            rls: true,
            ..plain(
                "rate-limit-global",
                "rate-limit in global mode: a gRPC callout per request to gatehouse-ratelimit + Redis on loopback, never reached",
                |ctx, c| {
                    c.raw_cluster(rls_cluster(RLS, &[ctx.rls_port()]))
                        .filter(filter("rate-limit", rate_limit_global_config()))
                },
                vec!["rate-limit"],
            )
        },
        plain(
            "native-local-ratelimit",
            "Envoy local_ratelimit, never reached",
            |_, c| {
                c.raw_filter(json!({"name": "envoy.filters.http.local_ratelimit", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
                "stat_prefix": "bench",
                "token_bucket": {"max_tokens": 1000000, "tokens_per_fill": 1000000, "fill_interval": "1s"},
                "filter_enabled": {"default_value": {"numerator": 100}, "runtime_key": "rl_enabled"},
                "filter_enforced": {"default_value": {"numerator": 100}, "runtime_key": "rl_enforced"}}}))
            },
            vec![],
        ),
    ];
    let tls = |s: Scenario| Scenario {
        tls: true,
        baseline: "baseline-tls",
        noop: "noop-tls",
        ..s
    };
    v.push(tls(plain(
        "baseline-tls",
        "router only (HTTPS)",
        |_, c| c,
        vec![],
    )));
    v.push(tls(plain(
        "noop-tls",
        "no-op proxy-wasm filter (HTTPS)",
        |_, c| c.filter(filter("noop", json!({}))),
        vec!["noop"],
    )));
    v.push(tls(plain(
        "https-redirect-https",
        "https-redirect on HTTPS traffic (passes)",
        |_, c| c.filter(filter("https-redirect", json!({}))),
        vec!["https-redirect"],
    )));
    let chain_headers = vec![h("x-api-key", ""), h("x-client-id", "bench")];
    v.push(tls(Scenario {
        headers: chain_headers.clone(),
        ..plain(
            "five-separate",
            "all five filters chained, separate modules",
            |ctx, c| {
                let mut c = c;
                for (name, conf) in five(ctx) {
                    c = c.filter(filter(name, conf));
                }
                route_by_header(c)
            },
            vec![
                "request-id",
                "https-redirect",
                "client-id",
                "rate-limit",
                "host-router",
            ],
        )
    }));
    v.push(tls(Scenario {
        headers: chain_headers.clone(),
        ..plain(
            "five-shared",
            "all five filters on the shared gatehouse.wasm (one VM)",
            |ctx, c| {
                let mut c = c;
                for (name, conf) in five(ctx) {
                    c = c.filter(shared(name, conf));
                }
                route_by_header(c)
            },
            vec!["gatehouse"],
        )
    }));
    v.push(tls(Scenario {
        headers: chain_headers,
        ..plain(
            "fused",
            "fused chain of all five in gatehouse.wasm",
            |ctx, c| {
                let stages: serde_json::Map<String, Value> = five(ctx)
                    .into_iter()
                    .map(|(n, v)| (n.to_string(), v))
                    .collect();
                route_by_header(
                    c.filter(
                        WasmFilter::new_at("chain", wasm("gatehouse"), Value::Object(stages))
                            .root_id("chain"),
                    ),
                )
            },
            vec!["gatehouse"],
        )
    }));
    // Memory per worker: the HTTPS baseline, the no-op module and the five
    // plugins on the shared module again with four workers (as Istio runs a
    // gateway with one worker per core).
    for (from, name, what) in [
        (
            "baseline-tls",
            "baseline-tls-c4",
            "router only (HTTPS), --concurrency 4",
        ),
        (
            "noop-tls",
            "noop-tls-c4",
            "no-op proxy-wasm filter (HTTPS), --concurrency 4",
        ),
        (
            "five-shared",
            "five-shared-c4",
            "all five on the shared gatehouse.wasm, --concurrency 4",
        ),
    ] {
        if let Some(s) = v.iter().find(|s| s.name == from).cloned() {
            v.push(Scenario {
                name,
                what,
                baseline: "baseline-tls-c4",
                noop: "noop-tls-c4",
                concurrency: 4,
                ..s
            });
        }
    }
    v
}

fn credential(s: &Scenario, ctx: &Ctx, name: &str) -> String {
    match name {
        "x-api-key" => ctx.api_key.clone(),
        "authorization" => format!("Bearer {}", ctx.jwt),
        _ => s
            .headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default(),
    }
}

fn headers_of(s: &Scenario, ctx: &Ctx) -> Vec<(String, String)> {
    s.headers
        .iter()
        .map(|(k, _)| (k.clone(), credential(s, ctx, k)))
        .collect()
}

fn proc_cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 (1-based); `after` starts at field 3.
    f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn ticks_per_second() -> f64 {
    let out = Command::new("getconf").arg("CLK_TCK").output();
    out.ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

fn parse_duration_us(s: &str) -> Option<f64> {
    let s = s.trim();
    let (num, mult) = if let Some(n) = s.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix("ms") {
        (n, 1000.0)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1_000_000.0)
    } else {
        return None;
    };
    num.parse::<f64>().ok().map(|v| v * mult)
}

struct WrkResult {
    requests: u64,
    /// Answers with a status >= 400 (wrk's "Non-2xx or 3xx responses").
    failed: u64,
    rps: f64,
    p50_us: f64,
    p99_us: f64,
}

fn run_wrk(
    url: &str,
    headers: &[(String, String)],
    host: &str,
    seconds: u32,
    conns: u32,
) -> WrkResult {
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", "1", "wrk", "-t1"])
        .arg(format!("-c{conns}"))
        .arg(format!("-d{seconds}s"))
        .arg("--latency")
        .arg("-H")
        .arg(format!("Host: {host}"));
    for (k, v) in headers {
        cmd.arg("-H").arg(format!("{k}: {v}"));
    }
    cmd.arg(url);
    let out = cmd
        .output()
        .expect("run wrk (apt-get install wrk; make bench installs it)");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut r = WrkResult {
        requests: 0,
        failed: 0,
        rps: 0.0,
        p50_us: 0.0,
        p99_us: 0.0,
    };
    for line in text.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("Requests/sec:") {
            r.rps = rest.trim().parse().unwrap_or(0.0);
        } else if t.contains(" requests in ") {
            r.requests = t
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
        } else if let Some(rest) = t.strip_prefix("Non-2xx or 3xx responses:") {
            r.failed = rest.trim().parse().unwrap_or(0);
        } else if let Some(rest) = t.strip_prefix("50%") {
            r.p50_us = parse_duration_us(rest).unwrap_or(0.0);
        } else if let Some(rest) = t.strip_prefix("99%") {
            r.p99_us = parse_duration_us(rest).unwrap_or(0.0);
        }
    }
    assert!(
        r.requests > 0,
        "wrk served nothing:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    r
}

/// One sample of `s`; with `perf`, Envoy is also sampled by perf during
/// the load (the profile phase, never the measured rounds).
fn measure(
    s: &Scenario,
    ctx: &Ctx,
    p: &Params,
    perf: Option<&profile::Perf>,
) -> (Sample, Option<Result<profile::Split, String>>) {
    let mut cfg = EnvoyConfig::new()
        .cluster("echo", ctx.upstream.port)
        .cluster("webapp", ctx.upstream.port)
        .cluster("catalog", ctx.upstream.port)
        .concurrency(s.concurrency)
        .tls(ctx.pki.listener(false, false));
    cfg = (s.build)(ctx, cfg);
    let t0 = Instant::now();
    let envoy = Envoy::start(&cfg);
    let pid = envoy.pid().expect("Envoy pid");
    let _ = Command::new("taskset")
        .args(["-a", "-p", "-c", "0", &pid.to_string()])
        .output();
    let headers = headers_of(s, ctx);
    let mut req = Request::get("/bench").host(&s.host);
    for (k, v) in &headers {
        req = req.header(k, v);
    }
    let tls_client: TlsClient = ctx.pki.client("localhost", None);
    let first = if s.tls {
        send_h1_tls(envoy.tls_port.unwrap(), &req, &tls_client)
    } else {
        send_h1(envoy.http_port, &req)
    };
    let start_ms = t0.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(first.status, s.expect, "{}: {}", s.name, first.text());
    let url = if s.tls {
        format!("https://127.0.0.1:{}/bench", envoy.tls_port.unwrap())
    } else {
        format!("http://127.0.0.1:{}/bench", envoy.http_port)
    };
    // Warm-up, then the measured run.
    run_wrk(&url, &headers, &s.host, 1, p.connections);
    let helpers = if s.rls { ctx.helper_pids() } else { vec![] };
    let helpers_ticks = || helpers.iter().map(|p| proc_cpu_ticks(*p)).sum::<u64>();
    let recording = perf.map(|perf| perf.start(pid));
    let c0 = proc_cpu_ticks(pid);
    let h0 = helpers_ticks();
    let w = run_wrk(&url, &headers, &s.host, p.seconds, p.connections);
    let c1 = proc_cpu_ticks(pid);
    let h1 = helpers_ticks();
    let split = recording.map(|r| r.and_then(profile::Recording::finish));
    let cpu_s = (c1.saturating_sub(c0)) as f64 / ticks_per_second();
    let helpers_s = (h1.saturating_sub(h0)) as f64 / ticks_per_second();
    if w.failed > 0 {
        eprintln!(
            "{}: {} of {} answers were >= 400",
            s.name, w.failed, w.requests
        );
        // A refused callout costs less than an answered one: the row would lie.
        assert!(!s.rls, "{}: callouts failed under load", s.name);
    }
    let sample = Sample {
        helpers_cpu_us_per_req: helpers_s * 1e6 / w.requests as f64,
        cpu_us_per_req: cpu_s * 1e6 / w.requests as f64,
        rps: w.rps,
        p50_us: w.p50_us,
        p99_us: w.p99_us,
        rss_mib: rss_mib(pid),
        start_ms,
    };
    (sample, split)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn make_ctx(rls: bool) -> Ctx {
    let upstream = gatehouse_e2e::echo::start_fixed("upstream");
    let pki = TestPki::new(&scratch_dir("bench-pki"));
    let key = RS256KeyPair::generate(2048)
        .unwrap()
        .with_key_id("bench-rs256");
    let comps = key.public_key().to_components();
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let jwks = json!({"keys": [{"kty": "RSA", "kid": "bench-rs256", "alg": "RS256", "use": "sig",
        "n": b64(&comps.n), "e": b64(&comps.e)}]});
    let claims = Claims::create(jwt_simple::prelude::Duration::from_hours(2))
        .with_issuer("https://bench.gatehouse.local")
        .with_audience("bench")
        .with_subject("bench-client");
    let jwt = key.sign(claims).unwrap();
    Ctx {
        upstream,
        pki,
        api_key: "bench-api-key-0123456789".to_string(),
        jwt,
        jwks,
        rls: rls.then(|| {
            let redis = Redis::start();
            let service =
                RateLimitService::start(&rate_limit_global_config().to_string(), &redis.url());
            (service, redis)
        }),
    }
}

fn main() {
    std::env::remove_var("GATEHOUSE_DELIVERY");
    // This process (upstream) and wrk share core 1; Envoy gets core 0.
    let me = std::process::id().to_string();
    let _ = Command::new("taskset")
        .args(["-a", "-p", "-c", "1", &me])
        .output();
    let p = Params::from_env();
    let all = scenarios();
    let only: Option<Vec<String>> = std::env::var("BENCH_ONLY")
        .ok()
        .map(|s| s.split(',').map(str::to_string).collect());
    let list: Vec<Scenario> = all
        .into_iter()
        .filter(|s| only.as_ref().is_none_or(|o| o.iter().any(|n| n == s.name)))
        .collect();
    let ctx = make_ctx(list.iter().any(|s| s.rls));
    let started = Instant::now();
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); list.len()];
    for round in 0..p.rounds {
        for (i, s) in list.iter().enumerate() {
            let (sample, _) = measure(s, &ctx, &p, None);
            eprintln!(
                "round {} {:<22} {:>7.1} µs/req {:>9.0} req/s p50 {:>7.0} µs p99 {:>7.0} µs rss {:>6.1} MiB start {:>6.0} ms",
                round + 1,
                s.name,
                sample.cpu_us_per_req,
                sample.rps,
                sample.p50_us,
                sample.p99_us,
                sample.rss_mib,
                sample.start_ms
            );
            samples[i].push(sample);
        }
    }
    let med: Vec<Sample> = samples
        .iter()
        .map(|v| Sample {
            cpu_us_per_req: median(v.iter().map(|s| s.cpu_us_per_req).collect()),
            rps: median(v.iter().map(|s| s.rps).collect()),
            p50_us: median(v.iter().map(|s| s.p50_us).collect()),
            p99_us: median(v.iter().map(|s| s.p99_us).collect()),
            rss_mib: median(v.iter().map(|s| s.rss_mib).collect()),
            start_ms: median(v.iter().map(|s| s.start_ms).collect()),
            helpers_cpu_us_per_req: median(v.iter().map(|s| s.helpers_cpu_us_per_req).collect()),
        })
        .collect();
    let run = Run {
        list: &list,
        samples: &samples,
    };
    let took = started.elapsed();
    let profiled = profile_phase(&list, &med, &ctx, &p);
    let report = render(&run, &med, &p, took, &profiled);
    // BENCH_OUT: write elsewhere (a partial run must not replace the doc).
    let out = std::env::var_os("BENCH_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("docs/benchmarks.md"));
    let micro =
        std::fs::read_to_string(repo_root().join("target/bench-micro.md")).unwrap_or_default();
    // The host-call budgets (enforced by the filters' unit tests) live in
    // this file too: their marked region is kept verbatim.
    let budgets = std::fs::read_to_string(repo_root().join("docs/benchmarks.md"))
        .ok()
        .and_then(|doc| marked_region(&doc, BUDGETS_BEGIN, BUDGETS_END))
        .map(|r| format!("## Host-call budgets\n\n{BUDGETS_INTRO}\n\n{r}\n\n"))
        .unwrap_or_default();
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    std::fs::write(&out, format!("{report}{budgets}{micro}")).unwrap();
    println!("{report}");
    println!("written to {}", out.display());
}

const BUDGETS_BEGIN: &str = "<!-- host-call-budgets:begin -->";
const BUDGETS_END: &str = "<!-- host-call-budgets:end -->";
const BUDGETS_INTRO: &str = "The host calls (proxy-wasm ABI functions, without `proxy_`) each filter's adapter makes per phase of a typical request, counted natively by the recording fake host (`filters/proxy/src/fake.rs`); each filter's `src/budget_tests.rs` (run by `make test`) fails when a phase makes more, fewer or other calls than its row, so lowering a budget means editing this table (kept verbatim by `make bench`). Counters are not written per request: each VM adds them up and every root's tick (every 100 ms, `filters/proxy/src/counters.rs`) hands each counter that moved to Envoy with one `increment_metric`; the *next tick* rows are that flush after the one request, and it costs the same after a thousand (under load, a small fraction of a call per request). Envoy's stats lag by at most one tick.";

/// The text from `begin` to `end`, markers included.
fn marked_region(doc: &str, begin: &str, end: &str) -> Option<String> {
    let i = doc.find(begin)?;
    let j = doc[i..].find(end)? + i + end.len();
    Some(doc[i..j].to_string())
}

/// The profile phase (after the measured rounds): one more sample of each
/// row of [`profile::ROWS`] this run measured, with perf sampling Envoy.
fn profile_phase(list: &[Scenario], med: &[Sample], ctx: &Ctx, p: &Params) -> String {
    let perf = match profile::Perf::from_env(&envoy_bin()) {
        Ok(perf) => perf,
        Err(why) => {
            eprintln!("profile: {why}");
            return profile::unavailable(&why);
        }
    };
    let t0 = Instant::now();
    let profiled: Vec<usize> = profile::ROWS
        .iter()
        .filter_map(|name| list.iter().position(|s| s.name == *name))
        .collect();
    // Interleaved like the measured rounds: takes[row][round].
    let mut takes: Vec<Vec<profile::Take>> = vec![Vec::new(); profiled.len()];
    for round in 0..perf.rounds() {
        for (k, &i) in profiled.iter().enumerate() {
            let s = &list[i];
            let (sample, split) = measure(s, ctx, p, Some(&perf));
            let split = split.unwrap_or_else(|| Err("not recorded".into()));
            match &split {
                Ok(sp) => eprintln!(
                    "profile {} {:<22} {:>7.1} µs/req {:>6} perf samples",
                    round + 1,
                    s.name,
                    sample.cpu_us_per_req,
                    sp.total()
                ),
                Err(e) => eprintln!("profile {} {}: {e}", round + 1, s.name),
            }
            takes[k].push(profile::Take {
                cpu_us_per_req: sample.cpu_us_per_req,
                split,
            });
        }
    }
    let mut rows = Vec::new();
    for (&i, t) in profiled.iter().zip(takes) {
        let s = &list[i];
        // The no-op filter and Envoy's native filters over the baseline,
        // every Wasm row over the no-op filter.
        let over = if s.name == s.baseline {
            None
        } else if s.name == s.noop || s.modules.is_empty() {
            Some(s.baseline)
        } else {
            Some(s.noop)
        };
        rows.push(profile::Row {
            name: s.name,
            over,
            take: profile::Take::median(t),
            median_cpu_us_per_req: med[i].cpu_us_per_req,
        });
    }
    if rows.is_empty() {
        return profile::unavailable("none of its rows was measured in this run (`BENCH_ONLY`)");
    }
    profile::section(&rows, &perf, p.seconds, t0.elapsed())
}

fn render(run: &Run, med: &[Sample], p: &Params, took: Duration, profiled: &str) -> String {
    let list = run.list;
    let by_name = |n: &str| list.iter().position(|s| s.name == n).map(|i| med[i]);
    let mut out = String::new();
    let machine = machine_line();
    out.push_str("# Benchmarks\n\n");
    out.push_str(
        "Written by `make bench` (do not edit by hand: numbers are the medians of the run).\n\n",
    );
    out.push_str(&format!(
        "- machine: {machine}\n- Envoy: {} (`--concurrency 1` unless the row says otherwise, pinned to core 0 with taskset); load: `wrk -t1 -c{} -d{}s --latency` pinned to core 1 with the fast upstream\n- {} rounds, configurations interleaved in each round, Envoy restarted for every sample; medians shown (Δ/Δnoop and the targets: the ratio computed in each round, median and min–max over the rounds); run took {:.0} s\n- command: `make bench` (`BENCH_ROUNDS`, `BENCH_SECONDS`, `BENCH_CONNECTIONS`, `BENCH_ONLY=name,name` adjust it; `BENCH_OUT=file` writes elsewhere; `BENCH_PROFILE=0` skips the perf profile, `BENCH_PROFILE_FREQ` and `BENCH_PROFILE_ROUNDS` set its Hz and samples per row)\n\n",
        envoy_version(),
        p.connections,
        p.seconds,
        p.rounds,
        took.as_secs_f64()
    ));
    out.push_str("CPU/req is Envoy's process CPU time during the load divided by the requests served. *× base* is the ratio to the baseline of the same transport (plain or TLS); *Δ/Δnoop* is the CPU added over that baseline divided by what the no-op filter adds (1.0 = exactly the floor of any Wasm filter). RSS is measured after the load; start is spawn-to-first-answer.\n\n");
    out.push_str("| configuration | CPU µs/req | × base | Δ/Δnoop | req/s | × base | p50 µs | × base | p99 µs | × base | RSS MiB | start ms | .wasm bytes |\n");
    out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (s, m) in list.iter().zip(med) {
        let b = by_name(s.baseline).unwrap_or(*m);
        let rel = match run.delta_over_noop(s.name, s.baseline, s.noop) {
            Some(r) if s.name != s.baseline => r.show(),
            _ => "–".to_string(),
        };
        let size: u64 = s
            .modules
            .iter()
            .map(|f| std::fs::metadata(wasm(f)).map(|m| m.len()).unwrap_or(0))
            .sum();
        out.push_str(&format!(
            "| {} — {} | {:.1} | {:.2} | {} | {:.0} | {:.2} | {:.0} | {:.2} | {:.0} | {:.2} | {:.1} | {:.0} | {} |\n",
            s.name,
            s.what,
            m.cpu_us_per_req,
            m.cpu_us_per_req / b.cpu_us_per_req,
            rel,
            m.rps,
            m.rps / b.rps,
            m.p50_us,
            m.p50_us / b.p50_us,
            m.p99_us,
            m.p99_us / b.p99_us,
            m.rss_mib,
            m.start_ms,
            if size == 0 { "–".to_string() } else { size.to_string() }
        ));
    }
    out.push('\n');
    out.push_str(&noop_spread(run));
    out.push_str(&targets(run));
    out.push_str(&attribution(list, med));
    out.push_str(profiled);
    out.push_str(&global_mode(list, med));
    out
}

/// rate-limit's global mode against its local mode: what the callout adds.
fn global_mode(list: &[Scenario], med: &[Sample]) -> String {
    let get = |n: &str| list.iter().position(|s| s.name == n).map(|i| med[i]);
    let (Some(g), Some(l)) = (get("rate-limit-global"), get("rate-limit")) else {
        return String::new();
    };
    let mut out = String::from(
        "## rate-limit: global mode over local mode

",
    );
    out.push_str(
        "One gRPC callout per request (Envoy's RLS v3 API) to `gatehouse-ratelimit`, which counts in Redis; both on loopback, on the load's core (core 1), with the same limit (never reached). wrk's connections wait for each answer, so req/s falls with the added latency.

",
    );
    out.push_str(
        "| | local | global | added by the callout |
|---|---:|---:|---:|
",
    );
    out.push_str(&format!(
        "| Envoy CPU µs/req | {:.1} | {:.1} | {:+.1} |
",
        l.cpu_us_per_req,
        g.cpu_us_per_req,
        g.cpu_us_per_req - l.cpu_us_per_req
    ));
    out.push_str(&format!(
        "| p50 µs | {:.0} | {:.0} | {:+.0} |
",
        l.p50_us,
        g.p50_us,
        g.p50_us - l.p50_us
    ));
    out.push_str(&format!(
        "| p99 µs | {:.0} | {:.0} | {:+.0} |
",
        l.p99_us,
        g.p99_us,
        g.p99_us - l.p99_us
    ));
    out.push_str(&format!(
        "| req/s | {:.0} | {:.0} | {:.2}× |
",
        l.rps,
        g.rps,
        g.rps / l.rps
    ));
    out.push_str(&format!(
        "| service + Redis CPU µs/req | – | {:.1} | {:+.1} |

",
        g.helpers_cpu_us_per_req, g.helpers_cpu_us_per_req
    ));
    out
}

/// Where the CPU goes, from differences between rows of this run.
fn attribution(list: &[Scenario], med: &[Sample]) -> String {
    let cpu = |n: &str| {
        list.iter()
            .position(|s| s.name == n)
            .map(|i| med[i].cpu_us_per_req)
    };
    let d = |a: &str, b: &str| Some(cpu(a)? - cpu(b)?);
    let rows = [
        ("the no-op filter over the router (a Wasm context, two callbacks)", d("noop", "baseline")),
        (
            "request-id's ids only (one read of all headers, a UUID, one metric, one response header) over the no-op filter",
            d("request-id-ids-only", "noop"),
        ),
        (
            "trace context as B3 multi + W3C (a span id, 4 header writes, one metric) over ids only",
            d("request-id", "request-id-ids-only"),
        ),
        ("trace context as W3C only (1 header write) over ids only", d("request-id-w3c-only", "request-id-ids-only")),
        ("client-id, RS256 JWT (verified-token cache hit) over an API key", d("client-id-jwt", "client-id-apikey")),
        (
            "rate-limit's global mode (the gRPC callout) over its local mode, Envoy only",
            d("rate-limit-global", "rate-limit"),
        ),
        ("five filters: shared module over separate modules", d("five-shared", "five-separate")),
        ("five filters: fused chain over separate modules", d("fused", "five-separate")),
        ("five filters: fused chain over the no-op filter (HTTPS)", d("fused", "noop-tls")),
    ];
    let mut out = String::from("## Where the CPU goes (differences between rows above)\n\n");
    for (what, v) in rows {
        if let Some(v) = v {
            out.push_str(&format!("- {what}: {v:+.1} µs/req\n"));
        }
    }
    out.push('\n');
    out
}

/// One quantity computed from each round's samples: median and range.
#[derive(Clone, Copy)]
struct Range {
    med: f64,
    min: f64,
    max: f64,
    /// Rounds where the quantity is undefined (NaN: its divisor, e.g. what
    /// the no-op filter added, was not positive in that round's noise).
    undefined: usize,
    rounds: usize,
}

impl Range {
    /// Over the rounds' values; NaN marks a round where the value is
    /// undefined. `None` when there are no rounds.
    fn of(all: Vec<f64>) -> Option<Range> {
        let rounds = all.len();
        let v: Vec<f64> = all.into_iter().filter(|x| !x.is_nan()).collect();
        let min = v.iter().copied().fold(f64::INFINITY, f64::min);
        let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (rounds > 0).then(|| Range {
            undefined: rounds - v.len(),
            med: if v.is_empty() { f64::NAN } else { median(v) },
            min,
            max,
            rounds,
        })
    }

    /// Whether every round gave a value.
    fn whole(&self) -> bool {
        self.undefined == 0
    }

    fn show(&self) -> String {
        if self.undefined == self.rounds {
            return "not measurable (the divisor was ≤ 0 in every round)".to_string();
        }
        let mut out = format!("{:.2} ({:.2}–{:.2})", self.med, self.min, self.max);
        if self.undefined > 0 {
            out.push_str(&format!(
                " in {} of {} rounds (in the others the divisor was ≤ 0)",
                self.rounds - self.undefined,
                self.rounds
            ));
        }
        out
    }
}

/// `num / den`, NaN (undefined for this round) when `den` is not positive.
fn ratio(num: f64, den: f64) -> f64 {
    if den > 0.0 {
        num / den
    } else {
        f64::NAN
    }
}

/// The samples of a run, `samples[scenario][round]`.
struct Run<'a> {
    list: &'a [Scenario],
    samples: &'a [Vec<Sample>],
}

impl Run<'_> {
    fn rounds(&self) -> usize {
        self.samples.iter().map(Vec::len).min().unwrap_or(0)
    }

    /// `f` evaluated in each round on that round's samples; `None` when a
    /// row it needs was not measured.
    fn per_round(
        &self,
        f: impl Fn(&dyn Fn(&str) -> Option<Sample>) -> Option<f64>,
    ) -> Option<Range> {
        let mut v = Vec::new();
        for r in 0..self.rounds() {
            let get = |n: &str| -> Option<Sample> {
                let i = self.list.iter().position(|s| s.name == n)?;
                self.samples[i].get(r).copied()
            };
            v.push(f(&get)?);
        }
        Range::of(v)
    }

    /// Per round: (row − base) / (noop − base), the CPU a row adds over its
    /// baseline in units of what the no-op filter adds.
    fn delta_over_noop(&self, row: &str, base: &str, noop: &str) -> Option<Range> {
        self.per_round(|get| {
            let (m, b, z) = (get(row)?, get(base)?, get(noop)?);
            Some(ratio(
                m.cpu_us_per_req - b.cpu_us_per_req,
                z.cpu_us_per_req - b.cpu_us_per_req,
            ))
        })
    }

    /// Per round: a row's value minus its baseline's, over the no-op
    /// module's the same way (RSS growth ratios).
    fn growth_over_noop(
        &self,
        row: &str,
        base: &str,
        noop: &str,
        f: fn(&Sample) -> f64,
    ) -> Option<Range> {
        self.per_round(|get| {
            let (m, b, z) = (get(row)?, get(base)?, get(noop)?);
            Some(ratio(f(&m) - f(&b), f(&z) - f(&b)))
        })
    }
}

/// The no-op filter's own CPU delta over the baseline, per round: every
/// Δ/Δnoop ratio divides by it, so its spread bounds their trust.
fn noop_spread(run: &Run) -> String {
    let mut out = String::from("## The yardstick: the no-op filter's delta\n\n");
    for (base, noop) in [("baseline", "noop"), ("baseline-tls", "noop-tls")] {
        let Some(r) =
            run.per_round(|get| Some(get(noop)?.cpu_us_per_req - get(base)?.cpu_us_per_req))
        else {
            continue;
        };
        let spread = if r.med > 0.0 {
            100.0 * (r.max - r.med).max(r.med - r.min) / r.med
        } else {
            f64::INFINITY
        };
        out.push_str(&format!(
            "- `{noop}` over `{base}`: {:.2} µs/req ({:.2}–{:.2}), spread ±{spread:.0}% — {}\n",
            r.med,
            r.min,
            r.max,
            if spread <= 10.0 {
                "within ±10%: the ratios are trustworthy"
            } else {
                "**over ±10%: the machine was too noisy, ratios against it are not trustworthy (run again on a quiet machine or raise BENCH_ROUNDS / BENCH_SECONDS)**"
            }
        ));
    }
    out.push('\n');
    out
}

/// The cost-floor issue's targets. A target is met only when its whole
/// range (every round) meets it.
fn targets(run: &Run) -> String {
    let mut out = String::from(
        "## Targets\n\nEach ratio is computed in every round; median (min–max) over the rounds. A target is met only when the whole range meets it.\n\n| target | measured | met |\n|---|---|---|\n",
    );
    let mut row = |what: &str, r: Option<Range>, limit: Option<f64>| {
        if let Some(r) = r {
            // Met only when every round gave a value and all meet it.
            let met = match limit {
                Some(l) if r.whole() && r.max <= l => "yes",
                Some(_) => "no",
                None => "–",
            };
            out.push_str(&format!("| {what} | {} | {met} |\n", r.show()));
        }
    };
    for (n, base, noop) in [
        ("request-id", "baseline", "noop"),
        ("https-redirect-https", "baseline-tls", "noop-tls"),
        ("host-router-50", "baseline", "noop"),
        ("client-id-apikey", "baseline", "noop"),
        ("client-id-jwt", "baseline", "noop"),
        ("rate-limit", "baseline", "noop"),
    ] {
        row(
            &format!("{n}: CPU delta ≤ 2× the no-op filter's"),
            run.delta_over_noop(n, base, noop),
            Some(2.0),
        );
    }
    row(
        "fused chain of all five: CPU delta ≤ 3× the no-op filter's",
        run.delta_over_noop("fused", "baseline-tls", "noop-tls"),
        Some(3.0),
    );
    row(
        "five plugins on the shared module: CPU delta ≤ 0.8× five separate modules'",
        run.per_round(|get| {
            let (s, b, sep) = (
                get("five-shared")?,
                get("baseline-tls")?,
                get("five-separate")?,
            );
            Some(ratio(
                s.cpu_us_per_req - b.cpu_us_per_req,
                sep.cpu_us_per_req - b.cpu_us_per_req,
            ))
        }),
        Some(0.8),
    );
    row(
        "five plugins on gatehouse.wasm: RSS growth ≤ 1.5× the no-op module's (--concurrency 1)",
        run.growth_over_noop("five-shared", "baseline-tls", "noop-tls", |s| s.rss_mib),
        Some(1.5),
    );
    row(
        "five plugins on gatehouse.wasm: RSS growth ≤ 1.5× the no-op module's (--concurrency 4)",
        run.growth_over_noop("five-shared-c4", "baseline-tls-c4", "noop-tls-c4", |s| {
            s.rss_mib
        }),
        Some(1.5),
    );
    row(
        "five plugins on gatehouse.wasm: MiB per additional worker ((RSS at 4 workers − at 1) / 3)",
        run.per_round(|get| {
            Some((get("five-shared-c4")?.rss_mib - get("five-shared")?.rss_mib) / 3.0)
        }),
        None,
    );
    row(
        "Envoy alone: MiB per additional worker",
        run.per_round(|get| {
            Some((get("baseline-tls-c4")?.rss_mib - get("baseline-tls")?.rss_mib) / 3.0)
        }),
        None,
    );
    row(
        "five plugins on gatehouse.wasm: spawn-to-first-answer ≤ 1 s (seconds)",
        run.per_round(|get| Some(get("five-shared")?.start_ms / 1000.0)),
        Some(1.0),
    );
    row(
        "https-redirect answering plain HTTP: CPU ≤ 1.5× Envoy's route-level redirect",
        run.per_round(|get| {
            Some(
                get("https-redirect-http")?.cpu_us_per_req
                    / get("native-redirect-http")?.cpu_us_per_req,
            )
        }),
        Some(1.5),
    );
    row(
        "client-id with a cached RS256 JWT: CPU below Envoy's jwt_authn (ratio < 1)",
        run.per_round(|get| {
            Some(get("client-id-jwt")?.cpu_us_per_req / get("native-jwt-authn")?.cpu_us_per_req)
        }),
        Some(0.999),
    );
    out.push('\n');
    out
}

fn envoy_version() -> String {
    let out = Command::new(envoy_bin()).arg("--version").output();
    out.ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
        .and_then(|s| {
            let after = s.split("version: ").nth(1)?.to_string();
            after.split('/').nth(1).map(str::to_string)
        })
        .unwrap_or_else(|| "unknown".to_string())
}

fn machine_line() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    // Count the machine's CPUs (this process is pinned to one of them).
    let cores = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .map(|kb| kb / 1024.0 / 1024.0)
        .unwrap_or(0.0);
    format!("{cpu}, {cores} cores, {mem:.0} GiB")
}
