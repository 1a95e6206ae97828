//! rate-limit end to end, in real Envoy: exactness across 4 worker threads
//! (one key, two keys at once), refill and the `retry-after` / reset values,
//! per-plan limits, IETF headers on every response of a limited route
//! (upstream failures included), missing-key rules, `x-forwarded-for` hops,
//! shadow mode with `source.address`, a flood of 100,000 distinct keys (a
//! light client keeps its slot), two plugins sharing one VM, the `make run`
//! config's `client_address` against a forged `x-forwarded-for`, and refused
//! configurations.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use gatehouse_e2e::client::parse_response;
use gatehouse_e2e::*;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn rate_limit(config: Value) -> WasmFilter {
    WasmFilter::new("rate-limit", config)
}

/// Sends every request at once, each on its own connection: all
/// connections are opened first (Envoy spreads them over its workers), then
/// every request is written after one barrier.
fn burst(port: u16, reqs: Vec<Request>) -> Vec<Response> {
    runtime().block_on(async move {
        let n = reqs.len();
        let barrier = Arc::new(tokio::sync::Barrier::new(n));
        let mut tasks = Vec::with_capacity(n);
        for req in reqs {
            let barrier = barrier.clone();
            tasks.push(tokio::spawn(async move {
                let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .expect("connect to Envoy");
                barrier.wait().await;
                s.write_all(&req.to_h1_bytes()).await.expect("send");
                let mut buf = Vec::new();
                tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut buf))
                    .await
                    .expect("answer in time")
                    .expect("read");
                parse_response(&buf).expect("a valid HTTP/1.1 response")
            }));
        }
        let mut out = Vec::with_capacity(n);
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    })
}

fn client(id: &str) -> Request {
    Request::get("/api/items").header("x-client-id", id)
}

fn statuses(rs: &[Response]) -> BTreeMap<u16, usize> {
    let mut m = BTreeMap::new();
    for r in rs {
        *m.entry(r.status).or_default() += 1;
    }
    m
}

/// Per-worker connection counts of the plain listener, from Envoy's stats
/// (`listener.127.0.0.1_0.worker_<n>.downstream_cx_total`: the listener's
/// stat name carries the configured port, 0).
fn connections_per_worker(envoy: &Envoy) -> BTreeMap<String, u64> {
    envoy
        .stats()
        .into_iter()
        .filter(|(k, _)| {
            k.starts_with("listener.127.0.0.1_")
                && k.contains(".worker_")
                && k.ends_with(".downstream_cx_total")
        })
        .collect()
}

/// Workers that accepted connections between two snapshots.
fn busy_workers(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> usize {
    after
        .iter()
        .filter(|(k, v)| **v > before.get(*k).copied().unwrap_or(0))
        .count()
}

fn header_u64(r: &Response, name: &str) -> u64 {
    r.header(name)
        .unwrap_or_else(|| panic!("no `{name}` on {} {:?}", r.status, r.headers))
        .parse()
        .unwrap()
}

#[test]
fn iface_exact_across_four_workers_for_one_key_and_for_two_keys_at_once() {
    let echo = Echo::start("echo");
    let envoy = Envoy::start(
        &EnvoyConfig::new()
            .cluster("echo", echo.port)
            .concurrency(4)
            .filter(rate_limit(json!({
                "slots": 1024,
                "rules": [{"name": "api", "paths": [{"segment_prefix": "/api"}],
                           "descriptor": ["client_id"],
                           "limits": [{"rate": 20, "per": "hour"}]},
                          {"name": "bulk", "paths": [{"segment_prefix": "/bulk"}],
                           "descriptor": ["client_id"],
                           "limits": [{"rate": 300, "per": "hour"}]}]
            }))),
    );

    // One key: 100 requests at once over 100 connections, exactly 20 pass.
    let w0 = connections_per_worker(&envoy);
    let rs = burst(envoy.http_port, (0..100).map(|_| client("alice")).collect());
    let by_status = statuses(&rs);
    assert_eq!(by_status.get(&200), Some(&20), "{by_status:?}");
    assert_eq!(by_status.get(&429), Some(&80), "{by_status:?}");
    // Each admitted request saw a different "remaining": 19, 18, ... 0.
    let remaining: BTreeSet<u64> = rs
        .iter()
        .filter(|r| r.status == 200)
        .map(|r| header_u64(r, "x-ratelimit-remaining"))
        .collect();
    assert_eq!(remaining, (0..20).collect::<BTreeSet<u64>>());
    for r in &rs {
        assert_eq!(header_u64(r, "x-ratelimit-limit"), 20);
        if r.status == 429 {
            assert_eq!(header_u64(r, "x-ratelimit-remaining"), 0);
            assert!(header_u64(r, "retry-after") >= 1);
            assert_eq!(r.json()["error"], "rate_limited");
        } else {
            assert_eq!(r.echo().header("x-client-id"), Some("alice"));
        }
    }
    let w1 = connections_per_worker(&envoy);
    eprintln!("connections per worker after the first burst: {w1:?}");
    assert_eq!(w1.len(), 4, "{w1:?}");
    assert!(
        busy_workers(&w0, &w1) >= 3,
        "connections were not spread: {w1:?}"
    );

    // Two keys at once, interleaved: exactly 20 each.
    let reqs = (0..120)
        .map(|i| client(if i % 2 == 0 { "bob" } else { "carol" }))
        .collect();
    let rs = burst(envoy.http_port, reqs);
    for who in ["bob", "carol"] {
        let ok = rs
            .iter()
            .enumerate()
            .filter(|(i, r)| (i % 2 == 0) == (who == "bob") && r.status == 200)
            .count();
        assert_eq!(ok, 20, "{who}: {:?}", statuses(&rs));
    }
    assert_eq!(statuses(&rs).get(&429), Some(&80));
    let w2 = connections_per_worker(&envoy);
    assert!(
        busy_workers(&w1, &w2) >= 3,
        "connections were not spread: {w2:?}"
    );
    // Alice is still out, Bob and Carol did not touch her bucket.
    assert_eq!(envoy.send_h1(&client("alice")).status, 429);
    assert_eq!(envoy.send_h1(&client("dave")).status, 200);

    assert_eq!(envoy.metric("gatehouse.rate_limit.allowed"), 61);
    assert_eq!(envoy.metric("gatehouse.rate_limit.limited"), 161);
    assert_eq!(envoy.metric("gatehouse.rate_limit.rule.api.allowed"), 61);
    assert_eq!(envoy.metric("gatehouse.rate_limit.rule.api.limited"), 161);
    assert_eq!(envoy.metric("gatehouse.rate_limit.failures"), 0);

    // Contention: one key, 8 keep-alive connections on 4 workers sending
    // back to back, burst 300: exactly 300 of 480 pass, whatever CAS
    // conflicts the workers met on the way.
    let by = keep_alive_load(
        envoy.http_port,
        "/bulk",
        Some("erin"),
        0,
        480,
        8,
        Instant::now() + Duration::from_secs(30),
    );
    assert_eq!(by.get(&200), Some(&300), "{by:?}");
    assert_eq!(by.get(&429), Some(&180), "{by:?}");
    assert_eq!(envoy.metric("gatehouse.rate_limit.rule.bulk.allowed"), 300);
    assert_eq!(envoy.metric("gatehouse.rate_limit.failures"), 0);
    eprintln!(
        "connections per worker: {:?}; CAS conflicts retried: {}",
        connections_per_worker(&envoy),
        envoy.metric("gatehouse.rate_limit.cas_conflicts")
    );
}

#[test]
fn refill_is_consistent_with_retry_after_and_reset() {
    let echo = Echo::start("echo");
    let envoy = Envoy::start(
        &EnvoyConfig::new()
            .cluster("echo", echo.port)
            .filter(rate_limit(json!({
                "slots": 64,
                "rules": [{"descriptor": ["client_id"],
                           "limits": [{"rate": 20, "per": "minute", "burst": 2}]}]
            }))),
    );
    // 20 per minute = one every 3 s, burst 2.
    let send = || envoy.send_h1(&client("refill"));
    let start = Instant::now();
    for expected in [1, 0] {
        let r = send();
        assert_eq!(r.status, 200);
        assert_eq!(header_u64(&r, "x-ratelimit-remaining"), expected);
    }
    let r = send();
    assert_eq!(r.status, 429, "{}", r.text());
    let retry = header_u64(&r, "retry-after");
    assert!((1..=3).contains(&retry), "retry-after {retry}");
    assert!(header_u64(&r, "x-ratelimit-reset") <= 6);
    assert!(header_u64(&r, "x-ratelimit-reset") > retry);
    if start.elapsed() < Duration::from_secs(1) {
        assert_eq!(send().status, 429, "nothing refills before retry-after");
    }

    // After retry-after: one passes, the next does not.
    std::thread::sleep(Duration::from_secs(retry));
    let r = send();
    assert_eq!(r.status, 200);
    assert_eq!(header_u64(&r, "x-ratelimit-remaining"), 0);
    let reset = header_u64(&r, "x-ratelimit-reset");
    assert!((3..=6).contains(&reset), "reset {reset}");
    assert_eq!(send().status, 429);

    // After the reset time the whole burst is back, and no more.
    std::thread::sleep(Duration::from_secs(reset));
    let rs: Vec<u16> = (0..3).map(|_| send().status).collect();
    assert_eq!(rs, vec![200, 200, 429]);
    assert!(start.elapsed() < Duration::from_secs(20));
}

#[test]
fn plans_scoped_rules_ietf_headers_on_every_response_and_missing_keys() {
    let echo = Echo::start("echo");
    let envoy = Envoy::start(
        &EnvoyConfig::new()
            .cluster("echo", echo.port)
            // Nothing listens on port 1: the upstream fails with a 503.
            .cluster("down", 1)
            .routes(json!([
                {"match": {"prefix": "/api/down"}, "route": {"cluster": "down"}},
                {"match": {"prefix": "/"}, "route": {"cluster": "echo"}},
            ]))
            .filter(rate_limit(json!({
                "slots": 256,
                "headers": "ietf",
                "client_address": {"from": "x_forwarded_for", "trusted_hops": 1},
                "rules": [
                    {"name": "api", "hosts": ["api.example.com"],
                     "paths": [{"segment_prefix": "/api"}],
                     "descriptor": ["client_id"],
                     "default_plan": "free",
                     "plans": {
                        "free": [{"name": "free", "rate": 2, "per": "hour"}],
                        "gold": [{"name": "gold-burst", "rate": 5, "per": "hour"},
                                 {"name": "gold-daily", "rate": 100, "per": "day", "burst": 50}]
                     }},
                    {"name": "strict", "paths": [{"segment_prefix": "/strict"}],
                     "descriptor": ["client_id"], "on_missing": "reject",
                     "limits": [{"rate": 1, "per": "hour"}]},
                    {"name": "optional", "paths": [{"segment_prefix": "/optional"}],
                     "descriptor": ["client_id"], "on_missing": "skip",
                     "limits": [{"rate": 1, "per": "hour"}]},
                    {"name": "anon", "paths": [{"segment_prefix": "/anon"}],
                     "descriptor": ["client_id"],
                     "limits": [{"rate": 2, "per": "hour"}]},
                    {"name": "by-ip", "paths": [{"segment_prefix": "/ip"}],
                     "descriptor": ["client_address"],
                     "limits": [{"rate": 1, "per": "hour"}]},
                    {"name": "mixed", "paths": [{"segment_prefix": "/mixed"}],
                     "descriptor": [{"header": "x-tenant"}, "method", {"path_prefix": 2}, "host"],
                     "limits": [{"rate": 1, "per": "hour"}]}
                ]
            }))),
    );
    let api = |id: &str, plan: Option<&str>| {
        let mut r = Request::get("/api/x")
            .host("api.example.com")
            .header("x-client-id", id);
        if let Some(p) = plan {
            r = r.header("x-client-plan", p);
        }
        envoy.send_h1(&r)
    };
    let passed = |id: &str, plan: Option<&str>| {
        (0..8)
            .map(|_| api(id, plan))
            .take_while(|r| r.status == 200)
            .count()
    };
    assert_eq!(passed("f1", Some("free")), 2);
    assert_eq!(passed("g1", Some("gold")), 5);
    assert_eq!(passed("n1", None), 2, "no plan: the default plan");
    assert_eq!(passed("u1", Some("platinum")), 2, "unknown plan: default");

    // IETF fields, every limit of the set, on allowed and limited answers.
    let r = api("g2", Some("gold"));
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("ratelimit-policy"),
        Some(r#""gold-burst";q=5;w=3600, "gold-daily";q=50;w=43200"#)
    );
    assert_eq!(
        r.header("ratelimit"),
        Some(r#""gold-burst";r=4;t=720, "gold-daily";r=49;t=864"#)
    );
    assert_eq!(r.header("x-ratelimit-limit"), None);
    let r = api("f1", Some("free"));
    assert_eq!(r.status, 429);
    assert_eq!(r.header("ratelimit-policy"), Some(r#""free";q=2;w=3600"#));
    assert!(r
        .header("ratelimit")
        .unwrap()
        .starts_with(r#""free";r=0;t="#));
    let id = r.json()["request_id"].as_str().unwrap().to_string();
    assert!(!id.is_empty(), "the body carries Envoy's request id");

    // The same over HTTP/2.
    let r = envoy.send_h2(
        &Request::get("/api/x")
            .host("api.example.com")
            .header("x-client-id", "g2")
            .header("x-client-plan", "gold"),
    );
    assert_eq!(r.status, 200);
    let rl = r.header("ratelimit").unwrap();
    assert!(
        rl.starts_with(r#""gold-burst";r=3;t=14"#) && rl.contains(r#", "gold-daily";r=48;t=17"#),
        "{rl}"
    );

    // Even when the upstream fails, the answer carries the headers.
    let r = envoy.send_h1(
        &Request::get("/api/down")
            .host("api.example.com")
            .header("x-client-id", "g3")
            .header("x-client-plan", "gold"),
    );
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(
        r.header("ratelimit").unwrap().contains("r=4;"),
        "{:?}",
        r.headers
    );

    // Other hosts or paths: not limited, no headers.
    let r = envoy.send_h1(&Request::get("/api/x").host("www.example.com"));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("ratelimit"), None);
    let r = envoy.send_h1(&Request::get("/public").host("api.example.com"));
    assert_eq!(r.header("ratelimit"), None);

    // Missing client id: reject, skip, or one shared anonymous bucket.
    let r = envoy.send_h1(&Request::get("/strict"));
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["error"], "missing_rate_limit_key");
    assert_eq!(
        envoy
            .send_h1(&Request::get("/strict").header("x-client-id", "s"))
            .status,
        200
    );
    for _ in 0..3 {
        let r = envoy.send_h1(&Request::get("/optional"));
        assert_eq!(r.status, 200);
        assert_eq!(r.header("ratelimit"), None);
    }
    let anon: Vec<u16> = (0..3)
        .map(|_| envoy.send_h1(&Request::get("/anon")).status)
        .collect();
    assert_eq!(anon, vec![200, 200, 429]);

    // x-forwarded-for with one trusted hop: the entry left of the last one.
    let ip = |xff: &str| {
        envoy
            .send_h1(&Request::get("/ip").header("x-forwarded-for", xff))
            .status
    };
    assert_eq!(ip("198.51.100.1, 10.0.0.9"), 200);
    assert_eq!(
        ip("198.51.100.1, 10.0.0.7"),
        429,
        "same client, other proxy"
    );
    assert_eq!(ip("6.6.6.6, 198.51.100.1, 10.0.0.9"), 429, "spoofed prefix");
    assert_eq!(ip("198.51.100.2, 10.0.0.9"), 200, "another client");

    // A key mixing a header, the method, a path prefix and the host.
    let mixed = |method: &str, path: &str, tenant: &str, host: &str| {
        envoy
            .send_h1(
                &Request::new(method, path)
                    .host(host)
                    .header("x-tenant", tenant),
            )
            .status
    };
    assert_eq!(mixed("GET", "/mixed/a/x", "t1", "a.com"), 200);
    assert_eq!(mixed("GET", "/mixed/a/y?q=1", "t1", "A.com:8080"), 429);
    assert_eq!(mixed("POST", "/mixed/a/x", "t1", "a.com"), 200);
    assert_eq!(mixed("GET", "/mixed/b", "t1", "a.com"), 200);
    assert_eq!(mixed("GET", "/mixed/a/x", "t2", "a.com"), 200);
    assert_eq!(mixed("GET", "/mixed/a/x", "t1", "b.com"), 200);

    assert_eq!(envoy.metric("gatehouse.rate_limit.missing_key"), 1);
    assert_eq!(envoy.metric("gatehouse.rate_limit.rule.anon.limited"), 1);
    assert_eq!(envoy.metric("gatehouse.rate_limit.rule.by-ip.allowed"), 2);
    assert_eq!(envoy.metric("gatehouse.rate_limit.failures"), 0);
}

#[test]
fn shadow_mode_counts_and_logs_but_never_rejects() {
    let echo = Echo::start("echo");
    let envoy = Envoy::start(
        &EnvoyConfig::new()
            .cluster("echo", echo.port)
            .filter(rate_limit(json!({
                "shadow": true,
                "slots": 64,
                // Keyed by Envoy's source.address; a request without it would
                // be refused, so every 200 proves the property was read.
                "rules": [{"name": "peer", "descriptor": ["client_address"],
                           "on_missing": "reject",
                           "limits": [{"rate": 2, "per": "hour"}]}]
            }))),
    );
    let rs: Vec<Response> = (0..5).map(|_| envoy.send_h1(&Request::get("/x"))).collect();
    assert!(rs.iter().all(|r| r.status == 200), "{:?}", statuses(&rs));
    assert_eq!(rs[4].header("x-ratelimit-remaining"), Some("0"));
    assert_eq!(envoy.metric("gatehouse.rate_limit.allowed"), 2);
    assert_eq!(envoy.metric("gatehouse.rate_limit.shadow_limited"), 3);
    assert_eq!(
        envoy.metric("gatehouse.rate_limit.rule.peer.shadow_limited"),
        3
    );
    assert_eq!(envoy.metric("gatehouse.rate_limit.limited"), 0);
    assert!(envoy.wait_for_log(
        "gatehouse rate-limit: shadow: rule `peer` would limit a request",
        Duration::from_secs(5)
    ));
}

/// Two rate-limit plugins on one VM (so one shared data), both with the
/// default table, unnamed rules keyed on the client id and different limit
/// sets: each keeps its own buckets. (They used to compute the same slot,
/// and each treated the other's value as a configuration change and reset
/// it, so neither ever limited.)
#[test]
fn two_plugins_with_default_tables_and_unnamed_rules_keep_their_own_buckets() {
    let echo = Echo::start("echo");
    let envoy = Envoy::start(
        &EnvoyConfig::new()
            .cluster("echo", echo.port)
            // Outer: 5 per hour and 100 per day, IETF headers.
            .filter(rate_limit(json!({
                "slots": 64,
                "headers": "ietf",
                "rules": [{"descriptor": ["client_id"],
                           "limits": [{"rate": 5, "per": "hour"}, {"rate": 100, "per": "day"}]}]
            })))
            // Inner: 3 per hour, x-ratelimit headers.
            .filter(rate_limit(json!({
                "slots": 64,
                "rules": [{"descriptor": ["client_id"],
                           "limits": [{"rate": 3, "per": "hour"}]}]
            }))),
    );
    let rs: Vec<Response> = (0..7).map(|_| envoy.send_h1(&client("twin"))).collect();
    let st: Vec<u16> = rs.iter().map(|r| r.status).collect();
    assert_eq!(st, vec![200, 200, 200, 429, 429, 429, 429]);
    // The inner plugin: 3 then refused (its 429s carry its headers).
    let inner: Vec<Option<&str>> = rs
        .iter()
        .map(|r| r.header("x-ratelimit-remaining"))
        .collect();
    assert_eq!(
        inner,
        vec![
            Some("2"),
            Some("1"),
            Some("0"),
            Some("0"),
            Some("0"),
            None,
            None
        ]
    );
    assert_eq!(rs[3].header("x-ratelimit-limit"), Some("3"));
    // The outer plugin counted every request it let through (5), then
    // refused on its own (its 429 comes before the inner one runs).
    let outer: Vec<String> = rs
        .iter()
        .map(|r| {
            r.header("ratelimit")
                .unwrap_or_else(|| panic!("no ratelimit header: {r:?}"))
                .split(';')
                .nth(1)
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(outer, vec!["r=4", "r=3", "r=2", "r=1", "r=0", "r=0", "r=0"]);
    assert!(rs[5].header("x-ratelimit-limit").is_none());
    assert!(header_u64(&rs[5], "retry-after") > 600);
    assert_eq!(envoy.metric("gatehouse.rate_limit.failures"), 0);
}

/// The `make run` Envoy config (tests/src/run.rs, also envoy-test/envoy.yaml)
/// is an edge proxy: its connection manager takes the client address from
/// the connection (`use_remote_address`), so a forged `x-forwarded-for`
/// cannot make Envoy's `source.address`, and with it the `client_address`
/// bucket, something the client chose.
#[test]
fn make_run_config_keys_client_address_on_the_real_peer_not_a_forged_xff() {
    use gatehouse_e2e::run::{chain_config, RunPorts};
    let echo = Echo::start("echo");
    let webapp = Echo::start("webapp");
    let catalog = Echo::start("catalog");
    let pki = TestPki::new(&scratch_dir("rate-limit-xff-pki"));
    let ports = RunPorts {
        http: 0,
        https: 0,
        admin: 0,
    };
    let mut cfg = chain_config(&["rate-limit"], &ports, &echo, &webapp, &catalog, &pki);
    cfg.http_filters = vec![FilterEntry::Wasm(rate_limit(json!({
        "slots": 64,
        "rules": [{"name": "by-peer", "descriptor": ["client_address"], "on_missing": "reject",
                   "limits": [{"rate": 2, "per": "hour"}]}]
    })))];
    let envoy = Envoy::start(&cfg);
    let send = |xff: Option<&str>| {
        let mut r = Request::get("/").host("example.com");
        if let Some(x) = xff {
            r = r.header("x-forwarded-for", x);
        }
        envoy.send_h1(&r)
    };
    let first = send(Some("198.51.100.1"));
    // Every other forged address is the same client: the same bucket.
    let st: Vec<u16> = [
        Some("198.51.100.2"),
        Some("198.51.100.3"),
        Some("203.0.113.7, 198.51.100.4"),
        None,
    ]
    .iter()
    .map(|x| send(*x).status)
    .collect();
    assert_eq!((first.status, st), (200, vec![200, 429, 429, 429]));
    // Envoy appended the real peer (the address it keyed on); the upstream
    // sees both.
    let seen = first.echo().header("x-forwarded-for").unwrap().to_string();
    let entries: Vec<&str> = seen.split(',').map(str::trim).collect();
    assert_eq!(entries.len(), 2, "{seen}");
    assert_eq!(entries[0], "198.51.100.1");
    assert!(!entries[1].starts_with("198.51.100."), "{seen}");
    assert_eq!(envoy.metric("gatehouse.rate_limit.rule.by-peer.allowed"), 2);
    assert_eq!(envoy.metric("gatehouse.rate_limit.rule.by-peer.limited"), 3);
}

/// Envoy's resident memory, from /proc.
fn rss_kib(envoy: &Envoy) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", envoy.pid().unwrap())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Sends `total` requests with distinct client ids over `conns` keep-alive
/// HTTP/1.1 connections (hyper), starting at id `first`; returns statuses.
fn flood(port: u16, first: u64, total: u64, conns: u64, deadline: Instant) -> BTreeMap<u16, u64> {
    keep_alive_load(port, "/flood", None, first, total, conns, deadline)
}

/// `total` requests over `conns` keep-alive HTTP/1.1 connections (hyper);
/// the client id is `same_key`, or `flood-<n>` (distinct, from `first`).
fn keep_alive_load(
    port: u16,
    path: &'static str,
    same_key: Option<&'static str>,
    first: u64,
    total: u64,
    conns: u64,
    deadline: Instant,
) -> BTreeMap<u16, u64> {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Empty};
    use hyper_util::rt::TokioIo;
    runtime().block_on(async move {
        let mut tasks = Vec::new();
        for c in 0..conns {
            tasks.push(tokio::spawn(async move {
                let mut counts: BTreeMap<u16, u64> = BTreeMap::new();
                let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .unwrap();
                let (mut sender, conn) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream))
                        .await
                        .unwrap();
                tokio::spawn(conn);
                let mut i = first + c;
                while i < first + total {
                    assert!(Instant::now() < deadline, "flood took too long");
                    let id = match same_key {
                        Some(k) => k.to_string(),
                        None => format!("flood-{i}"),
                    };
                    let req = hyper::Request::get(path)
                        .header("host", "example.com")
                        .header("x-client-id", id)
                        .body(Empty::<Bytes>::new())
                        .unwrap();
                    sender.ready().await.unwrap();
                    let resp = sender.send_request(req).await.unwrap();
                    let status = resp.status().as_u16();
                    let _ = resp.into_body().collect().await.unwrap();
                    *counts.entry(status).or_default() += 1;
                    i += conns;
                }
                counts
            }));
        }
        let mut all = BTreeMap::new();
        for t in tasks {
            for (k, v) in t.await.unwrap() {
                *all.entry(k).or_default() += v;
            }
        }
        all
    })
}

/// A light client's requests during a flood, one a second after `idle`:
/// (seconds since its first request, status, `x-ratelimit-remaining`).
fn light_client(
    port: u16,
    first: Instant,
    idle: Duration,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<Vec<(f64, u16, Option<u64>)>> {
    use std::sync::atomic::Ordering;
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut next = first + idle;
        loop {
            while Instant::now() < next {
                if stop.load(Ordering::SeqCst) {
                    return seen;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let r = gatehouse_e2e::client::send_h1(
                port,
                &Request::get("/flood")
                    .host("example.com")
                    .header("x-client-id", "light"),
            );
            let remaining = r
                .header("x-ratelimit-remaining")
                .and_then(|v| v.parse().ok());
            seen.push((first.elapsed().as_secs_f64(), r.status, remaining));
            next += Duration::from_secs(1);
        }
    })
}

#[test]
fn flood_of_100k_distinct_keys_stays_bounded_keeps_active_state_and_light_clients() {
    const SLOTS: u64 = 4096;
    // Longer than the light client's bucket takes to be full again (3.6 s),
    // shorter than the default `slot_min_idle_secs`.
    const LIGHT_IDLE: Duration = Duration::from_secs(7);
    let echo = Echo::start("echo");
    let envoy = Envoy::start(
        &EnvoyConfig::new()
            .cluster("echo", echo.port)
            .filter(rate_limit(json!({
                "slots": SLOTS,
                "rules": [{"name": "victim", "paths": [{"segment_prefix": "/victim"}],
                           "descriptor": ["client_id"],
                           "limits": [{"rate": 5, "per": "hour"}]},
                          {"name": "flood", "descriptor": ["client_id"],
                           "limits": [{"rate": 1000, "per": "hour"}]}]
            }))),
    );
    // An active client uses 3 of its 5.
    let victim = || envoy.send_h1(&Request::get("/victim").header("x-client-id", "victim"));
    for _ in 0..3 {
        assert_eq!(victim().status, 200);
    }
    // A light client (1000 per hour, the flood's limits) sends one request,
    // stays idle for a few seconds while the flood starts, then sends one a
    // second for as long as the flood runs.
    let light_first = Instant::now();
    let r = envoy.send_h1(
        &Request::get("/flood")
            .host("example.com")
            .header("x-client-id", "light"),
    );
    assert_eq!(r.status, 200);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let light = light_client(envoy.http_port, light_first, LIGHT_IDLE, stop.clone());
    // Warm-up (connections, first allocations), then measure.
    flood(
        envoy.http_port,
        1_000_000,
        2_000,
        8,
        Instant::now() + Duration::from_secs(30),
    );
    let before = rss_kib(&envoy);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(120);
    let first = flood(envoy.http_port, 0, 50_000, 8, deadline);
    let middle = rss_kib(&envoy);
    let second = flood(envoy.http_port, 50_000, 50_000, 8, deadline);
    let after = rss_kib(&envoy);
    let took = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let light = light.join().unwrap();
    let refused: Vec<_> = light.iter().filter(|(_, st, _)| *st != 200).collect();
    eprintln!(
        "flood: 100000 keys in {took:?}; statuses {first:?} + {second:?}; \
         RSS KiB before {before}, after 50k {middle}, after 100k {after}; \
         takeovers {}, overflow {}; light client: {} requests, refused \
         (s, status, remaining): {refused:?}, last {:?}",
        envoy.metric("gatehouse.rate_limit.slot_takeovers"),
        envoy.metric("gatehouse.rate_limit.overflow"),
        light.len(),
        light.last(),
    );
    let total: u64 = first.values().chain(second.values()).sum();
    assert_eq!(total, 100_000);
    // The light client, far under its limit, was never refused: it kept its
    // slot through the flood (its own bucket: nearly all 1000 remaining).
    assert!(
        light.len() >= 4,
        "the flood ended before the light client came back: {light:?}"
    );
    assert!(refused.is_empty(), "light client refused: {refused:?}");
    for (at, _, remaining) in &light {
        let remaining = remaining.unwrap();
        assert!(remaining >= 900, "at {at:.1} s: {remaining} remaining");
    }
    // Bounded by design: no slot changes hands while its key was active
    // within `slot_min_idle_secs`, so at most SLOTS keys ever own a slot;
    // every other key met an owner and was counted in the shared overflow
    // bucket (burst 1000), so almost all of the flood is refused.
    let allowed = first.get(&200).copied().unwrap_or(0) + second.get(&200).copied().unwrap_or(0);
    assert!(allowed <= SLOTS + 1000, "allowed {allowed}");
    assert!(envoy.metric("gatehouse.rate_limit.slot_takeovers") <= SLOTS);
    assert!(envoy.metric("gatehouse.rate_limit.overflow") >= 100_000 - SLOTS);
    // Memory: the slots were created at start-up (README: at most ~330 bytes
    // each, 1.3 MiB here); the flood adds no keys. Envoy's RSS may move a
    // little with allocator and V8 heap noise, not with the key count.
    assert!(
        after.saturating_sub(before) < 16 * 1024,
        "RSS grew {} KiB over the flood",
        after - before
    );
    assert!(
        after.saturating_sub(middle) < 8 * 1024,
        "RSS kept growing with the key count: {middle} -> {after} KiB"
    );
    // The active client kept its state: exactly 2 more.
    let rest: Vec<u16> = (0..3).map(|_| victim().status).collect();
    assert_eq!(rest, vec![200, 200, 429]);
    assert_eq!(envoy.metric("gatehouse.rate_limit.failures"), 0);
}

#[test]
fn iface_bad_config_is_refused_with_the_field_named() {
    // One refusal end to end (Envoy refuses to start, the log names the
    // field); every other bad configuration is a unit test of the parser
    // (filters/rate-limit/src/config.rs).
    let config = json!({"rules": [{"limits": [{"rate": 0, "per": "second"}]}]});
    let f = Envoy::try_start(
        &EnvoyConfig::new()
            .cluster("echo", 1)
            .concurrency(1)
            .filter(rate_limit(config.clone())),
    )
    .err()
    .unwrap_or_else(|| panic!("Envoy accepted {config}"));
    let lines: Vec<&str> = f
        .log
        .lines()
        .filter(|l| l.contains("gatehouse rate-limit: invalid configuration"))
        .collect();
    assert!(
        lines
            .iter()
            .all(|l| l.contains("field `rules[0].limits[0].rate`"))
            && !lines.is_empty(),
        "{}",
        f.log
    );
}

/// README: every slot costs at most `SLOT_BYTES_BOUND` bytes of Envoy
/// memory (default table name, up to 8 limits per set), all allocated when
/// the filter is configured.
const SLOT_BYTES_BOUND: u64 = 330;

#[test]
fn slot_table_memory_is_allocated_up_front_within_the_documented_bound() {
    const BIG: u64 = 131_072;
    let echo = Echo::start("echo");
    let rss_with = |slots: u64| {
        let envoy = Envoy::start(&EnvoyConfig::new().cluster("echo", echo.port).filter(
            rate_limit(json!({
                "slots": slots,
                "rules": [{"descriptor": ["client_id"],
                           "limits": [{"rate": 5, "per": "hour"},
                                      {"rate": 50, "per": "day"}]}]
            })),
        ));
        // Every slot is written once and then holds a full-size value.
        assert_eq!(envoy.send_h1(&client("a")).status, 200);
        let kib = rss_kib(&envoy);
        assert!(envoy.wait_for_log(
            &format!("slot table `gatehouse.rate_limit` ready ({slots} slots"),
            Duration::from_secs(5)
        ));
        kib
    };
    let small = rss_with(16);
    let big = rss_with(BIG);
    let per_slot = big.saturating_sub(small) * 1024 / (BIG - 16);
    eprintln!("RSS KiB with 16 slots {small}, with {BIG} slots {big}: {per_slot} bytes per slot");
    assert!(big > small, "the slots are allocated up front");
    assert!(
        per_slot <= SLOT_BYTES_BOUND,
        "{per_slot} bytes per slot exceeds the documented {SLOT_BYTES_BOUND}"
    );
}

#[test]
fn example_config_limits_free_clients_after_three_and_gold_more() {
    let echo = Echo::start("echo");
    let example: Value = serde_json::from_slice(
        &std::fs::read(repo_root().join("filters/rate-limit/example.json")).unwrap(),
    )
    .unwrap();
    let envoy = Envoy::start(
        &EnvoyConfig::new()
            .cluster("echo", echo.port)
            .filter(rate_limit(example)),
    );
    let free: Vec<Response> = (0..4)
        .map(|_| envoy.send_h1(&Request::get("/").header("x-client-id", "demo")))
        .collect();
    let st: Vec<u16> = free.iter().map(|r| r.status).collect();
    assert_eq!(st, vec![200, 200, 200, 429]);
    let last = &free[3];
    assert_eq!(last.header("x-ratelimit-limit"), Some("3"));
    assert_eq!(last.header("x-ratelimit-remaining"), Some("0"));
    assert_eq!(last.header("retry-after"), Some("20"));
    // Gold: burst 20, refilled at 10 a second while the requests go out.
    // Tolerance: a loaded machine sends slowly, so the refill during the
    // run (elapsed × 10, rounded up) may pass on top of the burst.
    let start = Instant::now();
    let mut gold = 0usize;
    let mut refused = false;
    for _ in 0..300 {
        let status = envoy
            .send_h1(
                &Request::get("/")
                    .header("x-client-id", "demo")
                    .header("x-client-plan", "gold"),
            )
            .status;
        if status != 200 {
            assert_eq!(status, 429);
            refused = true;
            break;
        }
        gold += 1;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let most = 20 + (elapsed * 10.0).ceil() as usize;
    assert!(
        refused,
        "gold was never limited ({gold} passed in {elapsed:.2} s)"
    );
    assert!(
        (20..=most).contains(&gold),
        "gold passed {gold} in {elapsed:.2} s; burst 20 plus the refill allows 20..={most}"
    );
}
