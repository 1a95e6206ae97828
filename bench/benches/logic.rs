//! Micro-benchmarks of the pure logic (native code; `make bench` reports them
//! in docs/benchmarks.md).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use base64::Engine;
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use gatehouse_core::host::HostTable;
use gatehouse_core::random::{FixedClock, SplitMix64};
use gatehouse_core::{parse_config, HeaderSnapshot};
use jwt_simple::prelude::*;
use serde_json::{json, Value};
use std::time::Duration as StdDuration;

fn host_matching(c: &mut Criterion) {
    let mut entries: Vec<(String, usize)> = (0..1000)
        .map(|i| (format!("svc{i}.example.com"), i))
        .collect();
    entries.extend((0..100).map(|i| (format!("*.zone{i}.example.org"), 1000 + i)));
    entries.push(("*".to_string(), 9999));
    let table = HostTable::build("hosts", entries).unwrap();
    c.bench_function("host_table_1100/exact_hit", |b| {
        b.iter(|| table.lookup(black_box("svc500.example.com")))
    });
    c.bench_function("host_table_1100/wildcard_hit", |b| {
        b.iter(|| table.lookup(black_box("a.b.zone50.example.org")))
    });
    c.bench_function("host_table_1100/catch_all", |b| {
        b.iter(|| table.lookup(black_box("nowhere.test")))
    });
    c.bench_function("authority/parse_with_port", |b| {
        b.iter(|| gatehouse_core::host::parse_authority(black_box("Webapp.IstioInAction.io:8443")))
    });

    let hosts: Vec<Value> = (0..50)
        .map(|i| json!({"host": format!("svc{i}.example.com"), "rules": [{"route": {"cluster": "echo"}}]}))
        .collect();
    let cfg: host_router::Config =
        parse_config(json!({"hosts": hosts}).to_string().as_bytes()).unwrap();
    let router = host_router::Router::build(&cfg).unwrap();
    let h = HeaderSnapshot::from_pairs([
        (":authority", "svc25.example.com"),
        (":path", "/api/x"),
        (":method", "GET"),
    ]);
    let mut rng = SplitMix64(1);
    c.bench_function("host_router_50/decide", |b| {
        b.iter(|| router.decide(black_box(&h), &mut rng))
    });
}

fn trace_parsing(c: &mut Criterion) {
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    c.bench_function("trace/parse_traceparent", |b| {
        b.iter(|| request_id::trace::parse_traceparent(black_box(tp)))
    });
    let b3 = "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1-00f067aa0ba902b7";
    c.bench_function("trace/parse_b3_single", |b| {
        b.iter(|| request_id::trace::parse_b3_single(black_box(b3)))
    });
    let cfg: request_id::config::Config = parse_config(b"{}").unwrap();
    let h = HeaderSnapshot::from_pairs([
        (":authority", "a.example.com"),
        ("traceparent", tp),
        ("x-request-id", "abc-123"),
    ]);
    let mut rng = SplitMix64(2);
    c.bench_function("request_id/decide_continue_w3c", |b| {
        b.iter(|| request_id::decide::decide(&cfg, black_box(&h), &mut rng, &FixedClock(0)))
    });
}

fn bucket_update(c: &mut Criterion) {
    use rate_limit::gcra::{decide, LimitSpec};
    let one = vec![LimitSpec::new("per-second", 100, 1, 20)];
    let two = vec![
        LimitSpec::new("per-second", 100, 1, 20),
        LimitSpec::new("per-hour", 100_000, 3600, 1000),
    ];
    let mut now = 1_700_000_000_000_000_000u64;
    c.bench_function("gcra/decide_one_limit", |b| {
        b.iter(|| {
            now += 1_000_000;
            decide(black_box(&one), black_box(&[now]), now)
        })
    });
    c.bench_function("gcra/decide_two_limits", |b| {
        b.iter(|| {
            now += 1_000_000;
            decide(black_box(&two), black_box(&[now, now]), now)
        })
    });
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

fn jwt_verification(c: &mut Criterion) {
    use client_id::jwt::{parse_jwks, peek, verify, Alg, Policy};
    let claims = || {
        Claims::create(jwt_simple::prelude::Duration::from_hours(2))
            .with_issuer("https://bench")
            .with_audience("bench")
            .with_subject("client")
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let policy = Policy {
        issuer: "https://bench".into(),
        audiences: vec!["bench".into()],
        required_claims: vec![],
        skew_seconds: 30,
        max_len: 8192,
        client_id_claim: "sub".into(),
    };
    let mut cases: Vec<(&str, String, Value)> = Vec::new();
    let hs = HS256Key::from_bytes(b"bench-secret-bench-secret-bench-secret!!").with_key_id("k");
    cases.push(("HS256", hs.authenticate(claims()).unwrap(),
        json!({"kty": "oct", "kid": "k", "alg": "HS256", "k": b64(b"bench-secret-bench-secret-bench-secret!!")})));
    let rs = RS256KeyPair::generate(2048).unwrap().with_key_id("k");
    let comps = rs.public_key().to_components();
    cases.push((
        "RS256",
        rs.sign(claims()).unwrap(),
        json!({"kty": "RSA", "kid": "k", "alg": "RS256", "n": b64(&comps.n), "e": b64(&comps.e)}),
    ));
    let es = ES256KeyPair::generate().with_key_id("k");
    let pt = es.public_key().public_key().to_bytes_uncompressed();
    cases.push(("ES256", es.sign(claims()).unwrap(),
        json!({"kty": "EC", "kid": "k", "alg": "ES256", "crv": "P-256", "x": b64(&pt[1..33]), "y": b64(&pt[33..65])})));
    let ed = Ed25519KeyPair::generate().with_key_id("k");
    cases.push(("EdDSA", ed.sign(claims()).unwrap(),
        json!({"kty": "OKP", "kid": "k", "alg": "EdDSA", "crv": "Ed25519", "x": b64(&ed.public_key().to_bytes())})));
    for (name, token, jwk) in cases {
        let alg = Alg::parse(name).unwrap();
        let keys = parse_jwks(&json!({"keys": [jwk]}), &[alg], true).unwrap();
        let p = peek(&token, 8192).unwrap();
        verify(&token, &p, &keys, &policy, now).unwrap();
        c.bench_function(&format!("jwt_verify/{name}"), |b| {
            b.iter(|| {
                let p = peek(black_box(&token), 8192).unwrap();
                verify(&token, &p, &keys, &policy, now).unwrap()
            })
        });
    }
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(StdDuration::from_millis(500))
        .measurement_time(StdDuration::from_secs(2))
        .sample_size(20)
}

criterion_group! {
    name = benches;
    config = config();
    targets = host_matching, trace_parsing, bucket_update, jwt_verification
}
criterion_main!(benches);
