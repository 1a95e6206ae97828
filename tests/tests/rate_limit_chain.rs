//! rate-limit behind client-id in one chain, in real Envoy: the identity and
//! plan client-id derives from an API key pick the bucket and the limit set;
//! a client cannot forge a better plan or another client's id.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use gatehouse_e2e::*;
use serde_json::json;

#[test]
fn iface_plans_from_client_id_pick_the_limits() {
    let echo = Echo::start("echo");
    let envoy = Envoy::start(
        &EnvoyConfig::new()
            .cluster("echo", echo.port)
            .concurrency(2)
            .filter(WasmFilter::new(
                "client-id",
                json!({
                    "api_key": {"allow_plain_keys": true},
                    "clients": [
                        {"id": "alice", "plan": "free", "api_keys": [{"key": "key-alice-0001"}]},
                        {"id": "bob", "plan": "gold", "api_keys": [{"key": "key-bob-0002"}]},
                        {"id": "carol", "api_keys": [{"key": "key-carol-0003"}]}
                    ]
                }),
            ))
            .filter(WasmFilter::new(
                "rate-limit",
                json!({
                    "slots": 256,
                    "rules": [{"name": "api", "descriptor": ["client_id"],
                               "default_plan": "free",
                               "plans": {"free": [{"rate": 2, "per": "hour"}],
                                         "gold": [{"rate": 5, "per": "hour"}]}}]
                }),
            )),
    );
    let passed = |key: &str, extra: &[(&str, &str)]| {
        let mut statuses = Vec::new();
        for _ in 0..8 {
            let mut req = Request::get("/api").header("x-api-key", key);
            for (k, v) in extra {
                req = req.header(k, v);
            }
            let r = envoy.send_h1(&req);
            if r.status == 200 {
                let seen = r.echo();
                assert!(seen.header("x-client-id").is_some());
            }
            statuses.push(r.status);
        }
        assert!(
            statuses.iter().all(|s| *s == 200 || *s == 429),
            "{statuses:?}"
        );
        statuses.iter().take_while(|s| **s == 200).count()
    };
    assert_eq!(passed("key-bob-0002", &[]), 5, "gold");
    // A forged plan header does not make Alice gold.
    assert_eq!(
        passed("key-alice-0001", &[("x-client-plan", "gold")]),
        2,
        "free"
    );
    // No plan: the default plan.
    assert_eq!(passed("key-carol-0003", &[]), 2, "default");
    // A forged client id does not move Bob to another bucket: still limited.
    let r = envoy.send_h1(
        &Request::get("/api")
            .header("x-api-key", "key-bob-0002")
            .header("x-client-id", "someone-else"),
    );
    assert_eq!(r.status, 429, "{}", r.text());
    // Without a credential client-id answers first; nothing is counted.
    assert_eq!(envoy.send_h1(&Request::get("/api")).status, 401);
    assert_eq!(envoy.metric("gatehouse.rate_limit.allowed"), 9);
    assert_eq!(envoy.metric("gatehouse.rate_limit.limited"), 16);
}
