//! `gatehouse-ratelimit` (services/ratelimit), the rate-limit service of the
//! filter's global rules: Envoy's RLS v3 API over gRPC, counters in a real
//! `redis-server`. Checked directly (a gRPC client) and through real Envoy's
//! NATIVE `envoy.filters.http.ratelimit` filter, the reference client of
//! the API: exact limits, two service instances sharing one Redis, Redis
//! failures and restarts, a service instance killed, a refused config.
//! Every load loop is bounded in time; every process is killed on drop.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::Entry;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::rate_limit::Unit;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use gatehouse_e2e::run_cluster::rls_cluster;
use gatehouse_e2e::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

/// The filter's configuration: the same JSON configures the filter and the
/// service. `api` is global (per client id, 10 per hour: a burst of 10 and
/// no refill during a test); `pair` and `pair2` have two limits decided
/// together; `refill` refills within a test;
/// `fast` is for latency (never limits); `local` is not served.
fn filter_config() -> Value {
    json!({
        "rules": [
            {"name": "local", "paths": [{"prefix": "/local"}], "descriptor": ["client_id"],
             "limits": [{"rate": 5, "per": "second"}]},
            {"name": "api", "descriptor": ["client_id"],
             "global": {"cluster": "rls", "domain": "gatehouse"},
             "limits": [{"rate": 10, "per": "hour"}]},
            {"name": "pair", "descriptor": ["client_id"],
             "global": {"cluster": "rls", "domain": "gatehouse"},
             "limits": [{"name": "per-minute", "rate": 2, "per": "minute"},
                        {"name": "per-hour", "rate": 3, "per": "hour"}]},
            {"name": "pair2", "descriptor": ["client_id"],
             "global": {"cluster": "rls", "domain": "gatehouse"},
             "limits": [{"name": "per-minute", "rate": 5, "per": "minute"},
                        {"name": "per-hour", "rate": 1, "per": "hour"}]},
            {"name": "refill", "descriptor": ["client_id"],
             "global": {"cluster": "rls", "domain": "gatehouse"},
             "limits": [{"rate": 1, "per": "second"}]},
            {"name": "fast", "descriptor": ["client_id"],
             "global": {"cluster": "rls", "domain": "bench"},
             "limits": [{"rate": 1000000, "per": "second"}]}
        ]
    })
}

fn descriptor(entries: &[(&str, &str)]) -> RateLimitDescriptor {
    RateLimitDescriptor {
        entries: entries
            .iter()
            .map(|(k, v)| Entry {
                key: k.to_string(),
                value: v.to_string(),
            })
            .collect(),
        ..Default::default()
    }
}

fn api(client: &str) -> RateLimitDescriptor {
    descriptor(&[
        ("gatehouse_rule", "api"),
        ("limit", "10-per-hour"),
        ("client_id", client),
    ])
}

fn request(domain: &str, descriptors: Vec<RateLimitDescriptor>, hits: u32) -> RateLimitRequest {
    RateLimitRequest {
        domain: domain.to_string(),
        descriptors,
        hits_addend: hits,
    }
}

async fn client(uri: &str) -> RateLimitServiceClient<Channel> {
    RateLimitServiceClient::connect(uri.to_string())
        .await
        .unwrap()
}

async fn call(
    c: &mut RateLimitServiceClient<Channel>,
    req: RateLimitRequest,
) -> Result<RateLimitResponse, tonic::Status> {
    c.should_rate_limit(req).await.map(|r| r.into_inner())
}

fn ok(r: &RateLimitResponse) -> bool {
    r.overall_code == Code::Ok as i32
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn report(what: &str, mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    let (p50, p99) = (percentile(&v, 0.5), percentile(&v, 0.99));
    eprintln!(
        "MEASURED {what}: n={} p50={:?} p99={:?} max={:?}",
        v.len(),
        p50,
        p99,
        v[v.len() - 1]
    );
    (p50, p99)
}

#[test]
fn service_answers_gcra_exactly() {
    let redis = Redis::start();
    let svc = RateLimitService::start(&filter_config().to_string(), &redis.url());
    let rt = runtime();
    rt.block_on(async {
        let mut c = client(&svc.uri()).await;
        // A burst of 10, then over the limit; the answer follows the contract.
        for i in 0..10u32 {
            let r = call(&mut c, request("gatehouse", vec![api("alice")], 1))
                .await
                .unwrap();
            assert!(ok(&r), "request {i}: {r:?}");
            let s = &r.statuses[0];
            assert_eq!(s.code, Code::Ok as i32);
            let lim = s.current_limit.as_ref().unwrap();
            assert_eq!(
                (lim.requests_per_unit, lim.unit, lim.name.as_str()),
                (10, Unit::Hour as i32, "10-per-hour")
            );
            assert_eq!(s.limit_remaining, 9 - i);
            // OK: time until the bucket is full again, (i + 1) * 6 minutes.
            let d = s.duration_until_reset.unwrap();
            let want = i64::from(i + 1) * 360;
            assert!(
                (want - 1..=want).contains(&d.seconds),
                "{d:?} want ~{want}s"
            );
        }
        let r = call(&mut c, request("gatehouse", vec![api("alice")], 0))
            .await
            .unwrap();
        assert_eq!(r.overall_code, Code::OverLimit as i32, "{r:?}");
        let s = &r.statuses[0];
        assert_eq!((s.code, s.limit_remaining), (Code::OverLimit as i32, 0));
        // OVER_LIMIT: time until one request passes (one interval, 360 s).
        let d = s.duration_until_reset.unwrap();
        assert!((359..=360).contains(&d.seconds), "{d:?}");

        // Keys are independent: another client, another domain's rule.
        let r = call(&mut c, request("gatehouse", vec![api("bob")], 1))
            .await
            .unwrap();
        assert!(ok(&r));
        assert_eq!(r.statuses[0].limit_remaining, 9);

        // hits_addend counts: 4 then 7 of bob's remaining 9 -> the second is refused.
        let r = call(&mut c, request("gatehouse", vec![api("bob")], 4))
            .await
            .unwrap();
        assert_eq!(r.statuses[0].limit_remaining, 5);
        let r = call(&mut c, request("gatehouse", vec![api("bob")], 7))
            .await
            .unwrap();
        assert!(!ok(&r));
        let r = call(&mut c, request("gatehouse", vec![api("bob")], 5))
            .await
            .unwrap();
        assert!(ok(&r));
        assert_eq!(r.statuses[0].limit_remaining, 0);

        // Several limits all-or-nothing; a refused request consumes nothing.
        let set = |rule: &str, limits: [&str; 2], who: &str| {
            limits
                .iter()
                .map(|l| descriptor(&[("gatehouse_rule", rule), ("limit", l), ("client_id", who)]))
                .collect::<Vec<_>>()
        };
        // `pair`: 2 per minute and 3 per hour; the minute refuses first.
        let pair = |who: &str| set("pair", ["per-minute", "per-hour"], who);
        for _ in 0..2 {
            assert!(ok(&call(&mut c, request("gatehouse", pair("carol"), 1))
                .await
                .unwrap()));
        }
        let r = call(&mut c, request("gatehouse", pair("carol"), 1))
            .await
            .unwrap();
        assert!(!ok(&r), "{r:?}");
        assert_eq!(r.statuses[0].code, Code::OverLimit as i32);
        assert_eq!(r.statuses[1].code, Code::Ok as i32);
        // The hourly limit was not charged for the refused request: 1 left.
        assert_eq!(r.statuses[1].limit_remaining, 1);
        let r = call(&mut c, request("gatehouse", pair("carol"), 1))
            .await
            .unwrap();
        assert_eq!(r.statuses[1].limit_remaining, 1);
        // `pair2`: 5 per minute and 1 per hour; the hour refuses, the minute keeps 4.
        let pair2 = |who: &str| set("pair2", ["per-minute", "per-hour"], who);
        assert!(ok(&call(&mut c, request("gatehouse", pair2("dan"), 1))
            .await
            .unwrap()));
        for _ in 0..2 {
            let r = call(&mut c, request("gatehouse", pair2("dan"), 1))
                .await
                .unwrap();
            assert!(!ok(&r));
            assert_eq!(r.statuses[0].code, Code::Ok as i32);
            assert_eq!(r.statuses[0].limit_remaining, 4);
            assert_eq!(r.statuses[1].code, Code::OverLimit as i32);
            assert!(r.statuses[1].duration_until_reset.unwrap().seconds > 3500);
        }

        // Refill at the rate: 1 per second, burst 1. Refused until the
        // announced duration has passed, then one passes.
        let refill = || {
            descriptor(&[
                ("gatehouse_rule", "refill"),
                ("limit", "1-per-second"),
                ("client_id", "x"),
            ])
        };
        assert!(ok(&call(&mut c, request("gatehouse", vec![refill()], 1))
            .await
            .unwrap()));
        let r = call(&mut c, request("gatehouse", vec![refill()], 1))
            .await
            .unwrap();
        assert!(!ok(&r), "{r:?}");
        let wait = r.statuses[0].duration_until_reset.unwrap();
        let wait = Duration::new(wait.seconds as u64, wait.nanos as u32);
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        tokio::time::sleep(wait + Duration::from_millis(20)).await;
        assert!(ok(&call(&mut c, request("gatehouse", vec![refill()], 1))
            .await
            .unwrap()));

        // Unknown domain, rule, limit or part keys, and a local rule: OK, no limit.
        for (domain, d) in [
            ("other", api("alice")),
            (
                "gatehouse",
                descriptor(&[
                    ("gatehouse_rule", "nope"),
                    ("limit", "10-per-hour"),
                    ("client_id", "a"),
                ]),
            ),
            (
                "gatehouse",
                descriptor(&[
                    ("gatehouse_rule", "api"),
                    ("limit", "9-per-hour"),
                    ("client_id", "a"),
                ]),
            ),
            (
                "gatehouse",
                descriptor(&[
                    ("gatehouse_rule", "api"),
                    ("limit", "10-per-hour"),
                    ("host", "a"),
                ]),
            ),
            (
                "gatehouse",
                descriptor(&[
                    ("gatehouse_rule", "local"),
                    ("limit", "5-per-second"),
                    ("client_id", "a"),
                ]),
            ),
        ] {
            let r = call(&mut c, request(domain, vec![d], 1)).await.unwrap();
            assert!(ok(&r), "{r:?}");
            assert_eq!(r.statuses.len(), 1);
            assert!(r.statuses[0].current_limit.is_none(), "{r:?}");
        }
        // An unknown descriptor next to a limited one does not change the answer.
        let r = call(
            &mut c,
            request(
                "gatehouse",
                vec![descriptor(&[("x", "y")]), api("alice")],
                1,
            ),
        )
        .await
        .unwrap();
        assert!(!ok(&r));
        assert_eq!(r.statuses[0].code, Code::Ok as i32);
        assert_eq!(r.statuses[1].code, Code::OverLimit as i32);

        // Keys: `gatehouse:rl:` + SHA-1, expiring when the bucket is full again.
        let n = redis.command("DBSIZE").unwrap();
        assert!(n.starts_with(':'), "{n}");
        // ShouldRateLimit latency, directly (one client, sequential calls).
        let mut lat = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        for i in 0..2000 {
            if Instant::now() > deadline {
                break;
            }
            let d = descriptor(&[
                ("gatehouse_rule", "fast"),
                ("limit", "1000000-per-second"),
                ("client_id", &format!("c{}", i % 50)),
            ]);
            let t = Instant::now();
            let r = call(&mut c, request("bench", vec![d], 1)).await.unwrap();
            lat.push(t.elapsed());
            assert!(ok(&r));
        }
        assert!(lat.len() >= 200, "only {} calls in 20 s", lat.len());
        let (_, p99) = report("ShouldRateLimit direct (1 descriptor, sequential)", lat);
        assert!(p99 < Duration::from_millis(100), "p99 {p99:?}");
    });
    // TTLs: every key expires (PEXPIRE to its refill time).
    let keys = redis.command("KEYS gatehouse:rl:*").unwrap();
    assert!(keys.starts_with('*'), "{keys}");
    let ttl = redis.command("EVAL \"local k = redis.call('KEYS', 'gatehouse:rl:*'); local m = 0; for _, x in ipairs(k) do local t = redis.call('PTTL', x); if t < 0 then return -1 end; if t > m then m = t end end; return m\" 0").unwrap();
    let ttl: i64 = ttl.trim_start_matches(':').parse().unwrap();
    assert!(ttl > 0 && ttl <= 3_600_000, "largest PTTL {ttl}");
}

/// Two service instances on one Redis, called concurrently: exact.
#[test]
fn two_instances_share_one_redis_exactly() {
    let redis = Redis::start();
    let cfg = filter_config().to_string();
    let a = RateLimitService::start(&cfg, &redis.url());
    let b = RateLimitService::start(&cfg, &redis.url());
    let rt = runtime();
    let passed = rt.block_on(async {
        let mut tasks = Vec::new();
        for i in 0..8 {
            let uri = if i % 2 == 0 { a.uri() } else { b.uri() };
            tasks.push(tokio::spawn(async move {
                let mut c = client(&uri).await;
                let mut n = 0;
                for _ in 0..25 {
                    let r = call(&mut c, request("gatehouse", vec![api("dave")], 1))
                        .await
                        .unwrap();
                    n += u32::from(ok(&r));
                }
                n
            }));
        }
        let mut total = 0;
        for t in tasks {
            total += tokio::time::timeout(Duration::from_secs(30), t)
                .await
                .unwrap()
                .unwrap();
        }
        total
    });
    eprintln!("MEASURED two instances, 8 concurrent clients x 25 calls: {passed} of 200 passed (limit 10)");
    assert_eq!(passed, 10);

    // Throughput: 8 concurrent clients on both instances for 2 s (bounded).
    let (calls, secs) = rt.block_on(async {
        let started = Instant::now();
        let until = started + Duration::from_secs(2);
        let mut tasks = Vec::new();
        for i in 0..8 {
            let uri = if i % 2 == 0 { a.uri() } else { b.uri() };
            tasks.push(tokio::spawn(async move {
                let mut c = client(&uri).await;
                let mut n = 0u64;
                while Instant::now() < until {
                    let d = descriptor(&[
                        ("gatehouse_rule", "fast"),
                        ("limit", "1000000-per-second"),
                        ("client_id", &format!("t{i}-{}", n % 20)),
                    ]);
                    assert!(ok(&call(&mut c, request("bench", vec![d], 1))
                        .await
                        .unwrap()));
                    n += 1;
                }
                n
            }));
        }
        let mut total = 0;
        for t in tasks {
            total += tokio::time::timeout(Duration::from_secs(30), t)
                .await
                .unwrap()
                .unwrap();
        }
        (total, started.elapsed().as_secs_f64())
    });
    eprintln!(
        "MEASURED throughput, two instances (debug build), 8 concurrent clients: {calls} calls in {secs:.2} s = {:.0}/s",
        calls as f64 / secs
    );
    assert!(calls > 100, "{calls}");
}

#[test]
fn redis_down_is_unavailable_quickly_and_limiting_resumes() {
    let mut redis = Redis::start();
    let svc = RateLimitService::start(&filter_config().to_string(), &redis.url());
    let rt = runtime();
    rt.block_on(async {
        let mut c = client(&svc.uri()).await;
        assert!(ok(&call(
            &mut c,
            request("gatehouse", vec![api("erin")], 1)
        )
        .await
        .unwrap()));
        redis.stop();
        let mut slowest = Duration::ZERO;
        for _ in 0..5 {
            let t = Instant::now();
            let e = call(&mut c, request("gatehouse", vec![api("erin")], 1))
                .await
                .unwrap_err();
            slowest = slowest.max(t.elapsed());
            assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
        }
        eprintln!("MEASURED Redis down: slowest UNAVAILABLE answer {slowest:?}");
        assert!(slowest < Duration::from_millis(1500), "{slowest:?}");
        // A request needing no Redis (unknown descriptor) is still answered.
        assert!(ok(&call(&mut c, request("other", vec![api("erin")], 1))
            .await
            .unwrap()));

        redis.restart();
        let t = Instant::now();
        let deadline = t + Duration::from_secs(15);
        loop {
            match call(&mut c, request("gatehouse", vec![api("erin")], 1)).await {
                Ok(r) => {
                    assert!(ok(&r));
                    break;
                }
                Err(e) => assert_eq!(e.code(), tonic::Code::Unavailable),
            }
            assert!(
                Instant::now() < deadline,
                "no recovery after Redis restarted"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        eprintln!(
            "MEASURED Redis restarted: first OK answer after {:?}",
            t.elapsed()
        );
        // The restarted Redis is empty (no persistence): a fresh burst, then limited.
        let mut passed = 1;
        for _ in 0..15 {
            passed += u32::from(ok(&call(
                &mut c,
                request("gatehouse", vec![api("erin")], 1),
            )
            .await
            .unwrap()));
        }
        assert_eq!(passed, 10);
    });
}

/// A Redis that accepts but never answers: each call is cut at 1 s.
#[test]
fn hung_redis_is_cut_at_one_second() {
    let redis = Redis::start();
    let svc = RateLimitService::start(&filter_config().to_string(), &redis.url());
    let rt = runtime();
    rt.block_on(async {
        let mut c = client(&svc.uri()).await;
        assert!(ok(&call(
            &mut c,
            request("gatehouse", vec![api("judy")], 1)
        )
        .await
        .unwrap()));
        redis.pause();
        let mut times = Vec::new();
        for _ in 0..3 {
            let t = Instant::now();
            let r = call(&mut c, request("gatehouse", vec![api("judy")], 1)).await;
            times.push(t.elapsed());
            assert_eq!(r.unwrap_err().code(), tonic::Code::Unavailable);
        }
        redis.resume();
        let slowest = times.iter().max().copied().unwrap();
        eprintln!("MEASURED Redis frozen (SIGSTOP): UNAVAILABLE after {times:?}");
        assert!(slowest < Duration::from_millis(1600), "{times:?}");
        assert!(slowest >= Duration::from_millis(900), "{times:?}");
        let deadline = Instant::now() + Duration::from_secs(15);
        let t = Instant::now();
        loop {
            if let Ok(r) = call(&mut c, request("gatehouse", vec![api("judy")], 1)).await {
                assert!(ok(&r));
                break;
            }
            assert!(Instant::now() < deadline, "no recovery after Redis resumed");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        eprintln!("MEASURED Redis resumed: first OK after {:?}", t.elapsed());
    });
}

#[test]
fn bad_config_is_refused_naming_the_field() {
    let bad = json!({"rules": [{"name": "api", "global": {"cluster": "rls"},
                                "limits": [{"rate": 0, "per": "minute"}]}]});
    let f = RateLimitService::try_start(&bad.to_string(), "redis://127.0.0.1:1", "127.0.0.1:0")
        .map(|_| ())
        .unwrap_err();
    assert_ne!(f.exited, Some(0));
    assert_eq!(f.log.trim().lines().count(), 1, "{}", f.log);
    assert!(f.log.contains("rules[0].limits[0].rate"), "{}", f.log);
    let none = json!({"rules": [{"limits": [{"rate": 1, "per": "minute"}]}]});
    let f = RateLimitService::try_start(&none.to_string(), "redis://127.0.0.1:1", "127.0.0.1:0")
        .map(|_| ())
        .unwrap_err();
    assert!(
        f.log.contains("`rules`") && f.log.contains("global"),
        "{}",
        f.log
    );
    let f = RateLimitService::try_start("{\"rules\": [}", "redis://127.0.0.1:1", "127.0.0.1:0")
        .map(|_| ())
        .unwrap_err();
    assert_ne!(f.exited, Some(0));
    assert_eq!(f.log.trim().lines().count(), 1, "{}", f.log);
}

// --- through real Envoy's native rate-limit filter ---------------------------

/// Envoy with `envoy.filters.http.ratelimit` asking the service cluster
/// `rls` (HTTP/2, one endpoint per service port, gRPC retries on connect
/// failures) for every request: descriptors as the gatehouse filter sends
/// them for rule `api` (client id from `x-client-id`).
fn envoy_with_native_filter(echo_port: u16, rls_ports: &[u16]) -> Envoy {
    Envoy::start(
        &EnvoyConfig::new()
            .cluster("echo", echo_port)
            .concurrency(2)
            .raw_cluster(rls_cluster("rls", rls_ports))
            .raw_filter(json!({
                "name": "envoy.filters.http.ratelimit",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit",
                    "domain": "gatehouse",
                    "timeout": "2s",
                    "failure_mode_deny": true,
                    "rate_limit_service": {
                        "transport_api_version": "V3",
                        "grpc_service": {
                            "envoy_grpc": {"cluster_name": "rls"},
                            "timeout": "2s",
                            "retry_policy": {
                                "retry_on": "connect-failure,refused-stream",
                                "num_retries": 3,
                                "retry_back_off": {"base_interval": "0.01s", "max_interval": "0.1s"}
                            }
                        }
                    }
                }
            }))
            .routes(json!([{
                "match": {"prefix": "/"},
                "route": {"cluster": "echo", "rate_limits": [{"actions": [
                    {"generic_key": {"descriptor_key": "gatehouse_rule", "descriptor_value": "api"}},
                    {"generic_key": {"descriptor_key": "limit", "descriptor_value": "10-per-hour"}},
                    {"request_headers": {"header_name": "x-client-id", "descriptor_key": "client_id"}}
                ]}]}
            }])),
    )
}

fn statuses(envoy: &Envoy, client: &str, n: usize) -> Vec<u16> {
    (0..n)
        .map(|_| {
            envoy
                .send_h1(&Request::get("/api").header("x-client-id", client))
                .status
        })
        .collect()
}

#[test]
fn envoy_native_filter_two_instances_exact_and_one_killed() {
    let redis = Redis::start();
    let echo = Echo::start("echo");
    let cfg = filter_config().to_string();
    let a = RateLimitService::start(&cfg, &redis.url());
    let mut b = RateLimitService::start(&cfg, &redis.url());
    let envoy = envoy_with_native_filter(echo.port, &[a.port, b.port]);

    // Exact across both instances: 4 concurrent clients x 10 requests for one key.
    let started = Instant::now();
    let results: Vec<Vec<u16>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|_| s.spawn(|| statuses(&envoy, "frank", 10)))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let all: Vec<u16> = results.into_iter().flatten().collect();
    assert!(all.iter().all(|s| *s == 200 || *s == 429), "{all:?}");
    let passed = all.iter().filter(|s| **s == 200).count();
    eprintln!("MEASURED via Envoy, two service instances, 4 threads x 10 requests: {passed} of 40 passed (limit 10) in {:?}", started.elapsed());
    assert_eq!(passed, 10);
    // Both instances answered (round robin).
    assert!(envoy.counter("cluster.rls.upstream_rq_total") >= 40);
    assert_eq!(envoy.counter("cluster.echo.ratelimit.over_limit"), 30);
    // Another key is independent.
    let g = statuses(&envoy, "grace", 12);
    assert_eq!(g.iter().filter(|s| **s == 200).count(), 10, "{g:?}");
    assert_eq!(&g[10..], &[429, 429]);

    // Latency through Envoy (one key that never runs out: a fresh client id each).
    let mut lat = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    for i in 0..1000 {
        if Instant::now() > deadline {
            break;
        }
        let t = Instant::now();
        let r = envoy.send_h1(&Request::get("/api").header("x-client-id", &format!("lat-{i}")));
        lat.push(t.elapsed());
        assert_eq!(r.status, 200);
    }
    assert!(lat.len() >= 100);
    report(
        "request via Envoy native ratelimit filter + service (sequential, new connection each)",
        lat,
    );

    // One instance killed: traffic continues through the other (gRPC retry
    // on connect failure), and the limit stays exact.
    b.stop();
    let t = Instant::now();
    let h = statuses(&envoy, "heidi", 20);
    eprintln!(
        "MEASURED one instance killed: 20 requests in {:?}: {h:?}",
        t.elapsed()
    );
    assert_eq!(h.iter().filter(|s| **s == 200).count(), 10, "{h:?}");
    assert!(h.iter().all(|s| *s == 200 || *s == 429), "{h:?}");
    // (A service error would be a 500: failure_mode_deny.) The dead
    // instance's share went through the gRPC retry to the other one.
    assert!(envoy.counter("cluster.rls.upstream_rq_retry_success") > 0);
}

#[test]
fn envoy_native_filter_redis_down_fails_closed_then_resumes() {
    let mut redis = Redis::start();
    let echo = Echo::start("echo");
    let svc = RateLimitService::start(&filter_config().to_string(), &redis.url());
    let envoy = envoy_with_native_filter(echo.port, &[svc.port]);
    assert_eq!(statuses(&envoy, "ivan", 1), vec![200]);
    redis.stop();
    let mut slowest = Duration::ZERO;
    for _ in 0..3 {
        let t = Instant::now();
        let s = envoy
            .send_h1(&Request::get("/api").header("x-client-id", "ivan"))
            .status;
        slowest = slowest.max(t.elapsed());
        // failure_mode_deny: an RLS error is a 500 from the native filter.
        assert_eq!(s, 500);
    }
    eprintln!("MEASURED via Envoy, Redis down: slowest answer {slowest:?}");
    assert!(slowest < Duration::from_millis(1800), "{slowest:?}");
    assert!(envoy.counter("cluster.echo.ratelimit.error") >= 3);
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(15);
    while envoy
        .send_h1(&Request::get("/api").header("x-client-id", "ivan"))
        .status
        != 200
    {
        assert!(
            Instant::now() < deadline,
            "no recovery after Redis restarted"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Fresh Redis: the first pass above was 1 of 10; 9 more, then 429.
    let s = statuses(&envoy, "ivan", 11);
    assert_eq!(s.iter().filter(|x| **x == 200).count(), 9, "{s:?}");
}
