//! rate-limit's global mode in real Envoy: the filter asks the real
//! `gatehouse-ratelimit` service (gRPC, counters in a real Redis) through an
//! Envoy cluster. Two Envoys share one limit exactly; the local mode lets
//! about twice as many through; failures follow `on_error`; the wait is
//! bounded by `timeout_ms`. Every load loop is bounded in time; every
//! process is killed on drop.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use gatehouse_e2e::client::parse_response;
use gatehouse_e2e::run_cluster::rls_cluster;
use gatehouse_e2e::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const G: &str = "gatehouse.rate_limit.global";

fn envoy(echo: u16, rls_ports: &[u16], filters: Vec<WasmFilter>) -> Envoy {
    let mut cfg = EnvoyConfig::new()
        .cluster("echo", echo)
        .concurrency(2)
        .raw_cluster(rls_cluster("rls", rls_ports));
    for f in filters {
        cfg = cfg.filter(f);
    }
    Envoy::start(&cfg)
}

fn rate_limit(config: &Value) -> WasmFilter {
    WasmFilter::new("rate-limit", config.clone())
}

/// Sends every request at once, each on its own connection, to the port
/// paired with it; returns (status, milliseconds) per request. Bounded:
/// 30 s per answer.
fn burst(reqs: Vec<(u16, Request)>) -> Vec<(Response, u128)> {
    runtime().block_on(async move {
        let barrier = Arc::new(tokio::sync::Barrier::new(reqs.len()));
        let mut tasks = Vec::new();
        for (port, req) in reqs {
            let barrier = barrier.clone();
            tasks.push(tokio::spawn(async move {
                let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .expect("connect to Envoy");
                barrier.wait().await;
                let t = Instant::now();
                s.write_all(&req.to_h1_bytes()).await.expect("send");
                let mut buf = Vec::new();
                tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut buf))
                    .await
                    .expect("answer in time")
                    .expect("read");
                (
                    parse_response(&buf).expect("a valid HTTP/1.1 response"),
                    t.elapsed().as_millis(),
                )
            }));
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    })
}

fn statuses(rs: &[(Response, u128)]) -> BTreeMap<u16, usize> {
    let mut m = BTreeMap::new();
    for (r, _) in rs {
        *m.entry(r.status).or_default() += 1;
    }
    m
}

fn client(id: &str) -> Request {
    Request::get("/api/items").header("x-client-id", id)
}

/// Latency bucket counters of one Envoy.
fn latency(e: &Envoy) -> Vec<(String, u64)> {
    [
        "le_1ms", "le_5ms", "le_25ms", "le_100ms", "le_500ms", "gt_500ms",
    ]
    .iter()
    .map(|b| (b.to_string(), e.metric(&format!("{G}.latency.{b}"))))
    .collect()
}

fn api_config(global: Option<Value>) -> Value {
    let mut rule = json!({"name": "api", "descriptor": ["client_id"],
                          "limits": [{"rate": 20, "per": "hour"}]});
    if let Some(g) = global {
        rule["global"] = g;
    }
    json!({"slots": 256, "rules": [rule]})
}

#[test]
fn two_envoys_share_one_limit_exactly_and_local_mode_lets_twice_through() {
    let echo = Echo::start("echo");
    let redis = Redis::start();
    let cfg = api_config(Some(json!({"cluster": "rls"})));
    let a = RateLimitService::start(&cfg.to_string(), &redis.url());
    let b = RateLimitService::start(&cfg.to_string(), &redis.url());
    let e1 = envoy(echo.port, &[a.port, b.port], vec![rate_limit(&cfg)]);
    let e2 = envoy(echo.port, &[a.port, b.port], vec![rate_limit(&cfg)]);

    // One key: 160 requests at once, half on each Envoy: exactly 20 pass.
    let reqs = (0..160)
        .map(|i| {
            (
                if i % 2 == 0 {
                    e1.http_port
                } else {
                    e2.http_port
                },
                client("alice"),
            )
        })
        .collect();
    let rs = burst(reqs);
    let by = statuses(&rs);
    eprintln!("MEASURED global, two Envoys, 160 requests, limit 20: {by:?}");
    assert_eq!(by.get(&200), Some(&20), "{by:?}");
    assert_eq!(by.get(&429), Some(&140), "{by:?}");
    for (r, _) in &rs {
        assert!(r.header("x-ratelimit-limit").is_some(), "{:?}", r.headers);
        if r.status == 429 {
            assert_eq!(r.json()["error"], "rate_limited");
            assert!(r.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
        }
    }
    let calls = e1.metric(&format!("{G}.calls")) + e2.metric(&format!("{G}.calls"));
    assert_eq!(calls, 160);
    for e in [&e1, &e2] {
        assert_eq!(e.metric(&format!("{G}.error.timeout")), 0);
        eprintln!("MEASURED callout latency (160 at once) {:?}", latency(e));
    }
    let slowest = rs.iter().map(|(_, ms)| *ms).max().unwrap();
    eprintln!("MEASURED slowest request of the burst: {slowest} ms");

    // Two keys at once: independent, each exactly its limit.
    let reqs = (0..80)
        .map(|i| {
            let port = if i % 2 == 0 {
                e1.http_port
            } else {
                e2.http_port
            };
            (port, client(if i % 4 < 2 { "bob" } else { "carol" }))
        })
        .collect();
    let rs = burst(reqs);
    for who in ["bob", "carol"] {
        let passed = rs
            .iter()
            .filter(|(r, _)| r.status == 200 && r.echo().header("x-client-id") == Some(who))
            .count();
        assert_eq!(passed, 20, "{who}");
    }

    // The same rule in local mode: exact per Envoy process, so about twice.
    let local = api_config(None);
    let l1 = envoy(echo.port, &[a.port], vec![rate_limit(&local)]);
    let l2 = envoy(echo.port, &[a.port], vec![rate_limit(&local)]);
    let reqs = (0..160)
        .map(|i| {
            (
                if i % 2 == 0 {
                    l1.http_port
                } else {
                    l2.http_port
                },
                client("alice"),
            )
        })
        .collect();
    let by = statuses(&burst(reqs));
    eprintln!("MEASURED local, two Envoys, 160 requests, limit 20: {by:?}");
    assert_eq!(by.get(&200), Some(&40), "{by:?}");
}

#[test]
fn plans_come_from_client_id_in_front() {
    let echo = Echo::start("echo");
    let redis = Redis::start();
    let cfg = json!({
        "slots": 256,
        "rules": [{"name": "api", "descriptor": ["client_id"], "default_plan": "free",
                   "plans": {"free": [{"rate": 2, "per": "hour"}],
                             "gold": [{"rate": 5, "per": "hour"}]},
                   "global": {"cluster": "rls"}}]
    });
    let svc = RateLimitService::start(&cfg.to_string(), &redis.url());
    let e = envoy(
        echo.port,
        &[svc.port],
        vec![
            WasmFilter::new(
                "client-id",
                json!({
                    "api_key": {"allow_plain_keys": true},
                    "clients": [
                        {"id": "alice", "plan": "free", "api_keys": [{"key": "key-alice-0001"}]},
                        {"id": "bob", "plan": "gold", "api_keys": [{"key": "key-bob-0002"}]}
                    ]
                }),
            ),
            rate_limit(&cfg),
        ],
    );
    let passed = |key: &str, extra: (&str, &str)| {
        let mut n = 0;
        for _ in 0..8 {
            let r = e.send_h1(
                &Request::get("/api")
                    .header("x-api-key", key)
                    .header(extra.0, extra.1),
            );
            assert!(r.status == 200 || r.status == 429, "{}", r.text());
            n += usize::from(r.status == 200);
        }
        n
    };
    assert_eq!(passed("key-bob-0002", ("x-other", "1")), 5, "gold");
    assert_eq!(
        passed("key-alice-0001", ("x-client-plan", "gold")),
        2,
        "free"
    );
    // A forged client id does not give Bob a fresh bucket.
    assert_eq!(passed("key-bob-0002", ("x-client-id", "mallory")), 0);
}

/// A TCP listener that accepts connections and never answers.
fn silent_listener() -> (
    u16,
    std::thread::JoinHandle<()>,
    Arc<std::sync::atomic::AtomicBool>,
) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let port = l.local_addr().unwrap().port();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s = stop.clone();
    let h = std::thread::spawn(move || {
        let mut held = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        while !s.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline {
            if let Ok((c, _)) = l.accept() {
                held.push(c);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    (port, h, stop)
}

#[test]
fn faults_follow_on_error_and_global_resumes_when_redis_is_back() {
    let echo = Echo::start("echo");
    let mut redis = Redis::start();
    let rule = |name: &str, prefix: &str, global: Value| {
        json!({"name": name, "paths": [{"prefix": prefix}], "descriptor": ["client_id"],
               "limits": [{"rate": 10, "per": "hour"}], "global": global})
    };
    let timeout_ms: u64 = 1000;
    let cfg = json!({"slots": 256, "rules": [
        rule("allow", "/allow", json!({"cluster": "rls", "timeout_ms": timeout_ms})),
        rule("deny", "/deny", json!({"cluster": "rls", "timeout_ms": timeout_ms, "on_error": "deny"})),
        rule("local", "/local", json!({"cluster": "rls", "timeout_ms": timeout_ms,
                                        "on_error": "local", "replicas": 2})),
    ]});
    let svc = RateLimitService::start(&cfg.to_string(), &redis.url());
    let e = envoy(echo.port, &[svc.port], vec![rate_limit(&cfg)]);
    let get = |path: &str, who: &str| Request::get(path).header("x-client-id", who);
    // Healthy: the service decides.
    assert_eq!(e.send_h1(&get("/allow", "warm")).status, 200);
    assert_eq!(e.metric(&format!("{G}.ok")), 1);

    redis.stop();
    let t = Instant::now();
    let rs = burst(
        (0..20)
            .flat_map(|_| {
                [
                    (e.http_port, get("/allow", "alice")),
                    (e.http_port, get("/deny", "alice")),
                    (e.http_port, get("/local", "alice")),
                ]
            })
            .collect(),
    );
    eprintln!("MEASURED Redis down, 60 requests: {:?}", t.elapsed());
    let by_path = |p: &str| -> BTreeMap<u16, usize> {
        let mut m = BTreeMap::new();
        for (i, (r, _)) in rs.iter().enumerate() {
            let path = ["/allow", "/deny", "/local"][i % 3];
            if path == p {
                *m.entry(r.status).or_default() += 1;
            }
        }
        m
    };
    eprintln!(
        "MEASURED Redis down: allow {:?} deny {:?} local {:?}",
        by_path("/allow"),
        by_path("/deny"),
        by_path("/local")
    );
    assert_eq!(by_path("/allow").get(&200), Some(&20));
    assert_eq!(by_path("/deny").get(&429), Some(&20));
    // Local fallback: 10 / 2 replicas = 5 per process, exactly.
    assert_eq!(
        by_path("/local").get(&200),
        Some(&5),
        "{:?}",
        by_path("/local")
    );
    for (i, (r, _)) in rs.iter().enumerate() {
        if i % 3 == 1 {
            assert_eq!(r.json()["error"], "rate_limit_unavailable");
            assert_eq!(r.header("retry-after"), Some("1"));
        }
    }
    let slowest = rs.iter().map(|(_, ms)| *ms).max().unwrap();
    eprintln!("MEASURED Redis down: slowest answer {slowest} ms (timeout {timeout_ms} ms)");
    assert!(slowest <= u128::from(timeout_ms) + 500, "{slowest} ms");
    let errors: u64 = ["dispatch", "timeout", "unavailable", "status", "bad_answer"]
        .iter()
        .map(|k| e.metric(&format!("{G}.error.{k}")))
        .sum();
    assert_eq!(errors, 60);
    assert_eq!(e.metric(&format!("{G}.fallback.allow")), 20);
    assert_eq!(e.metric(&format!("{G}.fallback.deny")), 20);
    assert_eq!(e.metric(&format!("{G}.fallback.local")), 20);

    // Redis back (empty): the service decides again, no restart of Envoy.
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut seen_ok = false;
    while Instant::now() < deadline {
        let before = e.metric(&format!("{G}.ok"));
        e.send_h1(&get("/deny", "probe"));
        if e.metric(&format!("{G}.ok")) > before {
            seen_ok = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(seen_ok, "global mode did not resume");
    let passed = (0..12)
        .filter(|_| e.send_h1(&get("/deny", "dave")).status == 200)
        .count();
    assert_eq!(passed, 10, "the service's limit again");
}

#[test]
fn a_silent_service_is_bounded_by_the_timeout_and_a_gone_client_cancels() {
    let echo = Echo::start("echo");
    let (port, handle, stop) = silent_listener();
    let cfg = json!({"slots": 64, "rules": [
        {"name": "quick", "paths": [{"prefix": "/quick"}], "limits": [{"rate": 10, "per": "hour"}],
         "global": {"cluster": "rls", "timeout_ms": 300, "on_error": "deny"}},
        {"name": "slow", "paths": [{"prefix": "/slow"}], "limits": [{"rate": 10, "per": "hour"}],
         "global": {"cluster": "rls", "timeout_ms": 5000}},
        {"name": "nocluster", "paths": [{"prefix": "/nocluster"}], "limits": [{"rate": 10, "per": "hour"}],
         "global": {"cluster": "no-such-cluster", "on_error": "allow"}}
    ]});
    let e = envoy(echo.port, &[port], vec![rate_limit(&cfg)]);
    let rs = burst(
        (0..10)
            .map(|_| (e.http_port, Request::get("/quick")))
            .collect(),
    );
    let slowest = rs.iter().map(|(_, ms)| *ms).max().unwrap();
    let fastest = rs.iter().map(|(_, ms)| *ms).min().unwrap();
    eprintln!("MEASURED silent service, timeout 300 ms: {fastest}..{slowest} ms");
    assert_eq!(statuses(&rs).get(&429), Some(&10));
    assert!(
        fastest >= 290 && slowest <= 300 + 500,
        "{fastest}..{slowest} ms"
    );
    assert_eq!(e.metric(&format!("{G}.error.timeout")), 10);

    // Unknown cluster: the call is not started; on_error allow.
    assert_eq!(e.send_h1(&Request::get("/nocluster")).status, 200);
    assert_eq!(e.metric(&format!("{G}.error.dispatch")), 1);
    assert_eq!(e.metric(&format!("{G}.fallback.allow")), 1);

    // The client goes away while the call is out: cancelled, nothing resumes.
    runtime().block_on(async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", e.http_port))
            .await
            .unwrap();
        s.write_all(&Request::get("/slow").to_h1_bytes())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    while e.metric(&format!("{G}.cancelled")) < 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(e.metric(&format!("{G}.cancelled")), 1);
    // Envoy is fine afterwards.
    assert_eq!(e.send_h1(&Request::get("/nocluster")).status, 200);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    handle.join().unwrap();
}

#[test]
fn iface_rate_limit_global_pass_then_429_through_the_service() {
    let echo = Echo::start("echo");
    let redis = Redis::start();
    let cfg = json!({"slots": 64, "rules": [{"name": "api", "descriptor": ["client_id"],
        "limits": [{"rate": 2, "per": "hour"}], "global": {"cluster": "rls"}}]});
    let svc = RateLimitService::start(&cfg.to_string(), &redis.url());
    let e = envoy(echo.port, &[svc.port], vec![rate_limit(&cfg)]);
    let send = || e.send_h1(&client("erin"));
    let r = send();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.echo().header("x-client-id"), Some("erin"));
    assert_eq!(r.header("x-ratelimit-limit"), Some("2"));
    assert_eq!(r.header("x-ratelimit-remaining"), Some("1"));
    assert_eq!(send().header("x-ratelimit-remaining"), Some("0"));
    let r = send();
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.json()["error"], "rate_limited");
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=1800).contains(&retry), "{retry}");
    assert_eq!(e.metric(&format!("{G}.calls")), 3);
    assert_eq!(e.metric(&format!("{G}.over_limit")), 1);
    // A bad global block is refused with the field named.
    let bad = json!({"rules": [{"limits": [{"rate": 1, "per": "second"}],
                                "global": {"cluster": "rls", "timeout_ms": 0}}]});
    let f = Envoy::try_start(
        &EnvoyConfig::new()
            .cluster("echo", echo.port)
            .concurrency(1)
            .filter(rate_limit(&bad)),
    )
    .err()
    .expect("Envoy accepted a bad config");
    assert!(
        f.log.lines().any(|l| l.contains("invalid configuration")
            && l.contains("field `rules[0].global.timeout_ms`")),
        "{}",
        f.log
    );
}

#[test]
fn local_precheck_refuses_without_a_call_once_this_process_counts_over() {
    let echo = Echo::start("echo");
    let redis = Redis::start();
    let cfg = json!({"slots": 64, "rules": [{"name": "api", "descriptor": ["client_id"],
        "limits": [{"rate": 3, "per": "hour"}],
        "global": {"cluster": "rls", "local_precheck": true}}]});
    let svc = RateLimitService::start(&cfg.to_string(), &redis.url());
    let e = envoy(echo.port, &[svc.port], vec![rate_limit(&cfg)]);
    let codes: Vec<u16> = (0..8).map(|_| e.send_h1(&client("frank")).status).collect();
    assert_eq!(codes, [200, 200, 200, 429, 429, 429, 429, 429]);
    // Three calls let three through; the rest never left this Envoy.
    assert_eq!(e.metric(&format!("{G}.calls")), 3);
    assert_eq!(e.metric(&format!("{G}.precheck_limited")), 5);
    // Another client still asks the service.
    assert_eq!(e.send_h1(&client("grace")).status, 200);
    assert_eq!(e.metric(&format!("{G}.calls")), 4);
}

#[test]
fn a_frozen_redis_is_cut_by_the_filters_timeout_and_recovers() {
    let echo = Echo::start("echo");
    let redis = Redis::start();
    let cfg = json!({"slots": 64, "rules": [{"name": "api", "descriptor": ["client_id"],
        "limits": [{"rate": 100, "per": "hour"}],
        "global": {"cluster": "rls", "timeout_ms": 300, "on_error": "deny"}}]});
    let svc = RateLimitService::start(&cfg.to_string(), &redis.url());
    let e = envoy(echo.port, &[svc.port], vec![rate_limit(&cfg)]);
    assert_eq!(e.send_h1(&client("henry")).status, 200);
    redis.pause();
    let rs = burst((0..10).map(|_| (e.http_port, client("henry"))).collect());
    redis.resume();
    let slowest = rs.iter().map(|(_, ms)| *ms).max().unwrap();
    eprintln!(
        "MEASURED frozen Redis, timeout 300 ms: {:?}, slowest {slowest} ms",
        statuses(&rs)
    );
    assert_eq!(statuses(&rs).get(&429), Some(&10));
    assert!(slowest <= 300 + 500, "{slowest} ms");
    assert_eq!(e.metric(&format!("{G}.error.timeout")), 10);
    // Thawed: the service answers again.
    let deadline = Instant::now() + Duration::from_secs(10);
    while e.send_h1(&client("henry")).status != 200 {
        assert!(Instant::now() < deadline, "no recovery");
        std::thread::sleep(Duration::from_millis(100));
    }
}
