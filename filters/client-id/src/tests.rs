//! Unit tests of the pure logic (native and wasm32-unknown-unknown).
//! Tests that need an RSA/EC private key to sign are native-only (key
//! handling there uses randomness and is slow under the wasm test runner);
//! HMAC-signed tokens, every verification path and the config checks run in
//! both worlds.

use crate::cache::{CacheView, JwksCache};
use crate::config::{Config, RemoteJwks};
use crate::engine::{
    Engine, Input, KeysAnswer, LazyPeer, Outcome, Peer, PeerCert, RemoteKeys, Step,
};
use crate::jwt::{self, Alg, JwtError};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use gatehouse_core::random::{FixedClock, OnceClock};
use gatehouse_core::{parse_config, HeaderOp, HeaderSnapshot};
use serde_json::{json, Value};
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const NOW: u64 = 1_800_000_000;
const CLOCK: FixedClock = FixedClock(NOW * 1_000_000_000);
const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-demo";
const KEY: &str = "live_key_for_acme_123";

fn sha_hex(s: &str) -> String {
    gatehouse_core::hex::encode(&crate::apikey::sha256(s.as_bytes()))
}

fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

/// An HS256 token from raw header and payload JSON.
fn hs_token(header: Value, payload: Value, secret: &[u8]) -> String {
    let signing = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(payload.to_string().as_bytes())
    );
    let mac = hmac_sha256::HMAC::mac(signing.as_bytes(), secret);
    format!("{signing}.{}", b64(&mac))
}

fn claims() -> Value {
    json!({"iss": "https://idp.test", "sub": "acme", "aud": "api", "exp": NOW + 600, "nbf": NOW - 10, "iat": NOW - 10, "email": "ops@acme.test"})
}

fn hdr() -> Value {
    json!({"alg": "HS256", "typ": "JWT", "kid": "hs1"})
}

fn base_config() -> Value {
    json!({
        "clients": [
            {"id": "acme", "plan": "gold", "labels": {"team": "core"}, "api_keys": [{"sha256": sha_hex(KEY)}]},
            {"id": "old", "plan": "free", "enabled": false, "api_keys": [{"sha256": sha_hex("disabled_key_0001")}]},
            {"id": "spiffe-client", "plan": "internal", "certificates": [{"uri_san": "spiffe://test/client"}]}
        ],
        "api_key": {"query_param": "api_key", "cookie": "gh_key", "authorization_schemes": ["ApiKey", "Bearer"]},
        "jwt": {
            "issuers": [{"issuer": "https://idp.test", "audiences": ["api"],
                "jwks": {"keys": [{"kty": "oct", "kid": "hs1", "alg": "HS256", "k": b64(SECRET)}]}}],
            "claims_to_headers": [{"claim": "email", "header": "x-client-email"}]
        },
        "mtls": {},
        "headers": {"label_prefix": "x-client-label-"},
        "rules": [
            {"paths": [{"segment_prefix": "/public"}], "mode": "optional"},
            {"paths": [{"exact": "/healthz"}], "mode": "skip"},
            {"paths": [{"segment_prefix": "/admin"}], "mode": "required", "allowed_plans": ["internal"]}
        ],
        "anonymous": {"client_id": "anon", "plan": "anonymous"},
        "strip_credentials": true
    })
}

fn engine(v: Value) -> Engine {
    let cfg: Config = parse_config(v.to_string().as_bytes()).unwrap();
    Engine::build(&cfg).unwrap()
}

fn config_err(v: Value) -> String {
    parse_config::<Config>(v.to_string().as_bytes())
        .unwrap_err()
        .to_string()
}

struct NoRemote;
impl RemoteKeys for NoRemote {
    fn keys(&mut self, _: usize, _: Option<&str>, _: &RemoteJwks) -> KeysAnswer {
        KeysAnswer::Unavailable
    }
}

fn run(e: &Engine, pairs: &[(&str, &str)], peer: Option<PeerCert>) -> crate::engine::Decision {
    let mut all = vec![(":authority", "api.test"), (":method", "GET")];
    if !pairs.iter().any(|(k, _)| *k == ":path") {
        all.push((":path", "/v1/x"));
    }
    all.extend_from_slice(pairs);
    let h = HeaderSnapshot::from_pairs(all);
    let input = Input {
        headers: &h,
        peer: peer.as_ref().map(|p| p as &dyn Peer),
        clock: &OnceClock::new(&CLOCK),
    };
    match e.decide(&input, &mut NoRemote) {
        Step::Done(d) => d,
        Step::Fetch { .. } | Step::Wait { .. } => panic!("unexpected fetch"),
    }
}

fn reason(d: &crate::engine::Decision) -> (u16, &'static str) {
    match &d.outcome {
        Outcome::Rejected(r) => (r.status, r.reason),
        o => panic!("not rejected: {o:?}"),
    }
}

fn client(d: &crate::engine::Decision) -> String {
    match &d.outcome {
        Outcome::Identified { client_id, .. } => client_id.clone(),
        o => panic!("not identified: {o:?}"),
    }
}

/// Whether deciding `pairs` read the clock.
fn clock_read(e: &Engine, pairs: &[(&str, &str)]) -> bool {
    let mut all = vec![(":authority", "api.test"), (":method", "GET")];
    if !pairs.iter().any(|(k, _)| *k == ":path") {
        all.push((":path", "/v1/x"));
    }
    all.extend_from_slice(pairs);
    let h = HeaderSnapshot::from_pairs(all);
    let clock = OnceClock::new(&CLOCK);
    let input = Input {
        headers: &h,
        peer: None,
        clock: &clock,
    };
    let _ = e.decide(&input, &mut NoRemote);
    clock.was_read()
}

#[test]
fn the_clock_is_read_only_when_the_decision_needs_it() {
    let e = engine(base_config());
    // API keys (accepted or not), no credential, skipped paths: no time.
    assert!(!clock_read(&e, &[("x-api-key", KEY)]));
    assert!(!clock_read(
        &e,
        &[("authorization", &format!("Bearer {KEY}"))]
    ));
    assert!(!clock_read(&e, &[("x-api-key", "wrong-wrong-wrong")]));
    assert!(!clock_read(&e, &[]));
    assert!(!clock_read(&e, &[(":path", "/healthz")]));
    // A JWT's times are checked against it.
    let token = hs_token(hdr(), claims(), SECRET);
    assert!(clock_read(
        &e,
        &[("authorization", &format!("Bearer {token}"))]
    ));
}

#[test]
fn api_key_from_every_source() {
    let e = engine(base_config());
    for pairs in [
        vec![("x-api-key", KEY)],
        vec![("authorization", &*format!("ApiKey {KEY}"))],
        vec![("authorization", &*format!("Bearer {KEY}"))],
        vec![(":path", &*format!("/v1/x?a=1&api_key={KEY}"))],
        vec![("cookie", &*format!("x=1; gh_key={KEY}"))],
    ] {
        let d = run(&e, &pairs, None);
        assert_eq!(client(&d), "acme", "{pairs:?}");
        assert!(d.ops.contains(&HeaderOp::set("x-client-plan", "gold")));
        assert!(d
            .ops
            .contains(&HeaderOp::set("x-client-label-team", "core")));
    }
    // Credential stripping.
    let d = run(&e, &[(":path", &*format!("/v1/x?a=1&api_key={KEY}"))], None);
    assert!(d.ops.contains(&HeaderOp::set(":path", "/v1/x?a=1")));
    let d = run(&e, &[("x-api-key", KEY)], None);
    assert!(d.ops.contains(&HeaderOp::remove("x-api-key")));
}

#[test]
fn spoofed_identity_headers_are_always_removed() {
    let e = engine(base_config());
    let spoof = [
        ("x-client-id", "admin"),
        ("x-client-plan", "gold"),
        ("x-client-label-team", "x"),
        ("x-client-email", "a@b"),
    ];
    for extra in [
        vec![("x-api-key", KEY)],
        vec![],
        vec![(":path", "/healthz")],
        vec![(":path", "/public/a")],
    ] {
        let mut pairs = spoof.to_vec();
        pairs.extend(extra);
        let d = run(&e, &pairs, None);
        for n in [
            "x-client-id",
            "x-client-plan",
            "x-client-label-team",
            "x-client-email",
        ] {
            let pos_remove = d.ops.iter().position(|o| *o == HeaderOp::remove(n));
            assert!(pos_remove.is_some(), "{n} not removed");
        }
        let mut h = HeaderSnapshot::from_pairs(pairs.clone());
        h.apply(&d.ops);
        assert_ne!(h.first("x-client-id"), Some(&b"admin"[..]));
    }
}

#[test]
fn api_key_rejections() {
    let e = engine(base_config());
    assert_eq!(
        reason(&run(&e, &[("x-api-key", "nope-nope-nope")], None)),
        (401, "unknown_key")
    );
    assert_eq!(
        reason(&run(&e, &[("x-api-key", "disabled_key_0001")], None)),
        (403, "disabled_client")
    );
    let d = run(&e, &[], None);
    assert_eq!(reason(&d), (401, "missing_credential"));
    if let Outcome::Rejected(r) = &d.outcome {
        assert!(
            r.challenges
                .iter()
                .any(|c| c == "Bearer realm=\"gatehouse\""),
            "{:?}",
            r.challenges
        );
        assert!(r
            .challenges
            .iter()
            .any(|c| c == "ApiKey realm=\"gatehouse\""));
    }
    // An invalid key is refused even where identification is optional.
    assert_eq!(
        reason(&run(
            &e,
            &[(":path", "/public/x"), ("x-api-key", "bad-bad-bad")],
            None
        )),
        (401, "unknown_key")
    );
    // Not allowed here.
    assert_eq!(
        reason(&run(&e, &[(":path", "/admin/x"), ("x-api-key", KEY)], None)),
        (403, "not_allowed")
    );
}

#[test]
fn modes_and_anonymous() {
    let e = engine(base_config());
    let d = run(&e, &[(":path", "/public/x")], None);
    assert_eq!(d.outcome, Outcome::Anonymous);
    assert!(d.ops.contains(&HeaderOp::set("x-client-id", "anon")));
    let d = run(&e, &[(":path", "/healthz"), ("x-api-key", "garbage")], None);
    assert_eq!(d.outcome, Outcome::Skipped);
}

#[test]
fn mtls_identification() {
    let e = engine(base_config());
    let peer = PeerCert {
        present: true,
        uri_san: Some("spiffe://test/client".into()),
        subject: Some("CN=x".into()),
        sha256: Some("ab".repeat(32)),
    };
    let d = run(&e, &[(":path", "/admin/x")], Some(peer));
    assert_eq!(client(&d), "spiffe-client");
    let peer = PeerCert {
        present: true,
        uri_san: Some("spiffe://test/other".into()),
        subject: None,
        sha256: Some("cd".repeat(32)),
    };
    assert_eq!(
        reason(&run(&e, &[], Some(peer))),
        (401, "unknown_certificate")
    );
    // No certificate: falls to the other methods.
    assert_eq!(
        client(&run(&e, &[("x-api-key", KEY)], Some(PeerCert::default()))),
        "acme"
    );
}

#[test]
fn jwt_accepts_and_copies_claims() {
    let e = engine(base_config());
    let t = hs_token(hdr(), claims(), SECRET);
    let d = run(&e, &[("authorization", &format!("Bearer {t}"))], None);
    assert_eq!(client(&d), "acme");
    // acme is a configured client: its plan applies.
    assert!(d.ops.contains(&HeaderOp::set("x-client-plan", "gold")));
    assert!(d
        .ops
        .contains(&HeaderOp::set("x-client-email", "ops@acme.test")));
    assert!(d.ops.contains(&HeaderOp::remove("authorization")));
}

#[test]
fn jwt_rejections() {
    let e = engine(base_config());
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = claims();
        f(&mut c);
        hs_token(hdr(), c, SECRET)
    };
    let cases: Vec<(String, &str)> = vec![
        (with(&|c| c["exp"] = json!(NOW - 120)), "expired"),
        (with(&|c| c["nbf"] = json!(NOW + 120)), "not_yet_valid"),
        (
            with(&|c| c["iss"] = json!("https://evil.test")),
            "wrong_issuer",
        ),
        (with(&|c| c["aud"] = json!("other")), "wrong_audience"),
        (
            hs_token(hdr(), claims(), b"another-secret-another-secret-xx"),
            "bad_signature",
        ),
        (
            hs_token(json!({"alg": "HS256", "kid": "nope"}), claims(), SECRET),
            "unknown_kid",
        ),
        (
            hs_token(json!({"alg": "HS512", "kid": "hs1"}), claims(), SECRET),
            "algorithm_not_allowed",
        ),
        (
            format!(
                "{}.{}.",
                b64(br#"{"alg":"none"}"#),
                b64(claims().to_string().as_bytes())
            ),
            "alg_none",
        ),
        (
            with(&|c| {
                c.as_object_mut().unwrap().remove("sub");
            }),
            "missing_claim",
        ),
        ("a.b.c".to_string(), "malformed_token"),
    ];
    for (t, want) in cases {
        let d = run(&e, &[("authorization", &format!("Bearer {t}"))], None);
        let (status, r) = reason(&d);
        assert_eq!((status, r), (401, want), "{t}");
        if let Outcome::Rejected(rj) = &d.outcome {
            assert!(
                rj.challenges
                    .iter()
                    .any(|c| c.starts_with("Bearer realm=\"gatehouse\", error=\"invalid_token\"")),
                "{:?}",
                rj.challenges
            );
        }
    }
    // Tampered payload: same signature, different claims.
    let good = hs_token(hdr(), claims(), SECRET);
    let parts: Vec<&str> = good.split('.').collect();
    let mut c = claims();
    c["sub"] = json!("admin");
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64(c.to_string().as_bytes()),
        parts[2]
    );
    assert_eq!(
        reason(&run(
            &e,
            &[("authorization", &format!("Bearer {tampered}"))],
            None
        )),
        (401, "bad_signature")
    );
    // Skew: expired 30 s ago is still fine with the default 60 s skew.
    let t = with(&|c| c["exp"] = json!(NOW - 30));
    assert_eq!(
        client(&run(&e, &[("authorization", &format!("Bearer {t}"))], None)),
        "acme"
    );
}

#[test]
fn bad_configs_name_the_field() {
    let e = config_err(json!({"clients": [{"id": "a", "api_keys": [{"sha256": "xyz"}]}]}));
    assert!(e.contains("clients[0].api_keys[0].sha256"), "{e}");
    let h = sha_hex("k1-k1-k1-k1");
    let e = config_err(
        json!({"clients": [{"id": "a", "api_keys": [{"sha256": h}]}, {"id": "b", "api_keys": [{"sha256": h}]}]}),
    );
    assert!(
        e.contains("clients[1].api_keys[0]") && e.contains("duplicate"),
        "{e}"
    );
    let e = config_err(json!({"clients": [{"id": "a", "api_keys": [{"key": "plainplain"}]}]}));
    assert!(e.contains("allow_plain_keys"), "{e}");
    assert!(parse_config::<Config>(json!({"api_key": {"allow_plain_keys": true}, "clients": [{"id": "a", "api_keys": [{"key": "plainplain"}]}]}).to_string().as_bytes()).is_ok());
    let iss = |jwks: Value, algs: Option<Value>| {
        let mut i = json!({"issuer": "x", "jwks": jwks});
        if let Some(a) = algs {
            i["algorithms"] = a;
        }
        json!({"jwt": {"issuers": [i]}})
    };
    let e = config_err(iss(
        json!({"keys": [{"kty": "RSA", "n": "!!", "e": "AQAB"}]}),
        None,
    ));
    assert!(e.contains("jwt.issuers[0].jwks.keys[0].n"), "{e}");
    let e = config_err(iss(json!({"nokeys": []}), None));
    assert!(e.contains("jwt.issuers[0].jwks.keys"), "{e}");
    let e = config_err(iss(
        json!({"keys": [{"kty": "oct", "k": b64(SECRET)}]}),
        Some(json!(["HS256", "XS999"])),
    ));
    assert!(
        e.contains("jwt.issuers[0].algorithms[1]") && e.contains("unknown algorithm"),
        "{e}"
    );
    let e = config_err(iss(
        json!({"keys": [{"kty": "oct", "k": b64(SECRET)}]}),
        Some(json!(["none"])),
    ));
    assert!(e.contains("algorithms[0]"), "{e}");
    let e = config_err(iss(
        json!({"keys": [{"kty": "oct", "alg": "RS256", "k": b64(SECRET)}]}),
        None,
    ));
    assert!(e.contains("keys[0].alg"), "{e}");
    let e = config_err(iss(
        json!({"keys": [{"kty": "oct", "alg": "HS999", "k": b64(SECRET)}]}),
        None,
    ));
    assert!(
        e.contains("keys[0].alg") && e.contains("unknown algorithm"),
        "{e}"
    );
    let e = config_err(json!({"methods": ["jwt"]}));
    assert!(e.contains("methods[0]"), "{e}");
    let e = config_err(json!({"headers": {"client_id": "X-Bad"}, "anonymous": {}}));
    assert!(e.contains("headers.client_id"), "{e}");
    let e = config_err(json!({"unknown": 1}));
    assert!(e.contains("unknown field"), "{e}");
    let e = config_err(json!({}));
    assert!(e.contains("methods"), "{e}");
}

#[test]
fn remote_cache_policy() {
    let r = RemoteJwks {
        cluster: "c".into(),
        path: "/jwks".into(),
        authority: None,
        cache_seconds: 300,
        min_refresh_interval_seconds: 30,
        timeout_ms: 1000,
    };
    let mut cache = JwksCache::default();
    let ask = |cache: &mut JwksCache, now: u64, kid: Option<&str>, allow: bool| {
        let fixed = FixedClock(now * 1_000_000_000);
        let clock = OnceClock::new(&fixed);
        let mut v = CacheView {
            cache,
            clock: &clock,
            allow_fetch: allow,
            allow_wait: true,
        };
        match v.keys(0, kid, &r) {
            KeysAnswer::Keys(_) => "keys",
            KeysAnswer::Fetch => "fetch",
            KeysAnswer::Unavailable => "unavailable",
            KeysAnswer::Wait => "wait",
        }
    };
    assert_eq!(ask(&mut cache, 100, Some("a"), true), "fetch");
    // Fetch failed, no keys: refused until the interval passes.
    assert_eq!(cache.record(0, None, &jwt::ALL_ALGS, 100_000), None);
    assert_eq!(ask(&mut cache, 101, Some("a"), false), "unavailable");
    assert_eq!(ask(&mut cache, 110, Some("a"), true), "unavailable");
    assert_eq!(ask(&mut cache, 131, Some("a"), true), "fetch");
    let doc = json!({"keys": [{"kty": "oct", "kid": "a", "k": b64(SECRET)}, {"kty": "weird"}]})
        .to_string();
    assert_eq!(
        cache.record(0, Some(doc.as_bytes()), &jwt::ALL_ALGS, 131_000),
        Some(1)
    );
    assert_eq!(ask(&mut cache, 132, Some("a"), true), "keys");
    // Unknown kid: one refresh per interval.
    assert_eq!(ask(&mut cache, 170, Some("b"), true), "fetch");
    assert_eq!(ask(&mut cache, 170, Some("b"), true), "wait");
    assert_eq!(
        cache.record(0, Some(doc.as_bytes()), &jwt::ALL_ALGS, 170_000),
        Some(1)
    );
    assert_eq!(ask(&mut cache, 171, Some("b"), true), "keys");
    // Stale and the refresh fails: stale keys keep serving.
    assert_eq!(ask(&mut cache, 500, Some("a"), true), "fetch");
    assert_eq!(
        cache.record(0, Some(b"not json"), &jwt::ALL_ALGS, 500_000),
        None
    );
    assert_eq!(ask(&mut cache, 500, Some("a"), false), "keys");
    assert_eq!(ask(&mut cache, 501, Some("a"), true), "keys");
}

#[test]
fn peek_and_shapes() {
    assert!(jwt::looks_like_jwt("a.b.c"));
    assert!(!jwt::looks_like_jwt("abc"));
    assert_eq!(jwt::peek("a.b", 100), Err(JwtError::Malformed));
    let t = hs_token(hdr(), claims(), SECRET);
    assert_eq!(jwt::peek(&t, 10), Err(JwtError::TooLong));
    let p = jwt::peek(&t, 8192).unwrap();
    assert_eq!(p.alg, Alg::HS256);
    assert_eq!(p.kid.as_deref(), Some("hs1"));
}

#[cfg(not(target_arch = "wasm32"))]
mod asymmetric {
    use super::*;
    use jwt_simple::prelude::*;

    fn rsa() -> RS256KeyPair {
        RS256KeyPair::from_pem(include_str!("../testdata/rsa-test-key.pem")).unwrap()
    }

    fn rsa_jwk(kp: &RS256KeyPair) -> Value {
        let c = kp.public_key().to_components();
        json!({"kty": "RSA", "kid": "rsa1", "n": b64(&c.n), "e": b64(&c.e)})
    }

    fn std_claims() -> JWTClaims<NoCustomClaims> {
        JWTClaims {
            issued_at: Some(UnixTimeStamp::from_secs(NOW - 10)),
            expires_at: Some(UnixTimeStamp::from_secs(NOW + 600)),
            invalid_before: None,
            issuer: Some("https://rsa.test".into()),
            subject: Some("rsa-client".into()),
            audiences: None,
            jwt_id: None,
            nonce: None,
            custom: NoCustomClaims {},
        }
    }

    #[test]
    fn rsa_ps_es_eddsa_verify_and_hs256_with_rsa_key_is_refused() {
        let kp = rsa().with_key_id("rsa1");
        let es = ES256KeyPair::generate().with_key_id("es1");
        let ed = Ed25519KeyPair::generate().with_key_id("ed1");
        let esj: Value = serde_json::from_str(&es.public_key().to_jwk()).unwrap();
        let edj: Value = serde_json::from_str(&ed.public_key().to_jwk()).unwrap();
        let mut esj = esj;
        esj["kid"] = json!("es1");
        let mut edj = edj;
        edj["kid"] = json!("ed1");
        let e = engine(
            json!({"jwt": {"issuers": [{"issuer": "https://rsa.test", "jwks": {"keys": [rsa_jwk(&kp), esj, edj]}}]}}),
        );
        let go = |t: String| run(&e, &[("authorization", &format!("Bearer {t}"))], None);
        assert_eq!(client(&go(kp.sign(std_claims()).unwrap())), "rsa-client");
        let ps = PS256KeyPair::from_pem(include_str!("../testdata/rsa-test-key.pem"))
            .unwrap()
            .with_key_id("rsa1");
        assert_eq!(client(&go(ps.sign(std_claims()).unwrap())), "rsa-client");
        assert_eq!(client(&go(es.sign(std_claims()).unwrap())), "rsa-client");
        assert_eq!(client(&go(ed.sign(std_claims()).unwrap())), "rsa-client");
        // The classic confusion attack: HS256 keyed with the RSA public key.
        let pem = kp.public_key().to_pem().unwrap();
        let c = json!({"iss": "https://rsa.test", "sub": "admin", "exp": NOW + 600});
        let t = hs_token(
            json!({"alg": "HS256", "kid": "rsa1"}),
            c.clone(),
            pem.as_bytes(),
        );
        assert_eq!(reason(&go(t)), (401, "algorithm_not_allowed"));
        let t = hs_token(json!({"alg": "HS256"}), c, pem.as_bytes());
        assert_eq!(reason(&go(t)), (401, "algorithm_not_allowed"));
        // RS256 signature under the ES256 kid.
        let other = rsa().with_key_id("es1");
        assert_eq!(
            reason(&go(other.sign(std_claims()).unwrap())),
            (401, "algorithm_not_allowed")
        );
    }
}

#[test]
fn example_config_accepts_the_demo_credentials() {
    let e = engine(serde_json::from_str(include_str!("../example.json")).unwrap());
    let cred: Value = serde_json::from_str(include_str!("../demo-credentials.json")).unwrap();
    let key = cred["api_key"].as_str().unwrap();
    assert_eq!(client(&run(&e, &[("x-api-key", key)], None)), "demo");
    let t = cred["jwt"].as_str().unwrap();
    let d = run(&e, &[("authorization", &format!("Bearer {t}"))], None);
    assert_eq!(client(&d), "demo-jwt-client");
    assert!(d.ops.contains(&HeaderOp::set("x-client-plan", "silver")));
    let k = cred["disabled_api_key"].as_str().unwrap();
    assert_eq!(
        reason(&run(&e, &[("x-api-key", k)], None)),
        (403, "disabled_client")
    );
}

#[test]
fn method_order_decides_and_bearer_is_shared_sensibly() {
    let key_hash = sha_hex(KEY);
    let cfg = |methods: Value| {
        json!({
            "methods": methods,
            "clients": [
                {"id": "keyed", "api_keys": [{"sha256": key_hash}]},
                {"id": "certified", "certificates": [{"uri_san": "spiffe://t/c"}]}
            ],
            "api_key": {"authorization_schemes": ["Bearer"]},
            "jwt": {"issuers": [{"issuer": "https://idp.test",
                "jwks": {"keys": [{"kty": "oct", "kid": "hs1", "k": b64(SECRET)}]}}]},
            "mtls": {}
        })
    };
    let peer = PeerCert {
        present: true,
        uri_san: Some("spiffe://t/c".into()),
        ..PeerCert::default()
    };
    let e = engine(cfg(json!(["mtls", "api_key", "jwt"])));
    assert_eq!(
        client(&run(&e, &[("x-api-key", KEY)], Some(peer.clone()))),
        "certified"
    );
    let e = engine(cfg(json!(["api_key", "mtls", "jwt"])));
    assert_eq!(
        client(&run(&e, &[("x-api-key", KEY)], Some(peer.clone()))),
        "keyed"
    );
    // The first present credential decides: a bad key is not rescued by a
    // good certificate.
    assert_eq!(
        reason(&run(&e, &[("x-api-key", "wrong-wrong-wrong")], Some(peer))),
        (401, "unknown_key")
    );
    // `Bearer <jwt>` goes to JWT, `Bearer <key>` to the API key method.
    let t = hs_token(hdr(), claims(), SECRET);
    assert_eq!(
        client(&run(&e, &[("authorization", &format!("Bearer {t}"))], None)),
        "acme"
    );
    assert_eq!(
        client(&run(
            &e,
            &[("authorization", &format!("Bearer {KEY}"))],
            None
        )),
        "keyed"
    );
    // Non-UTF-8 and empty keys are plain unknown keys, never a crash.
    let h = HeaderSnapshot::new(vec![
        (":path".into(), b"/".to_vec()),
        ("x-api-key".into(), vec![0xff, 0xfe, 0x00]),
    ]);
    let input = Input {
        headers: &h,
        peer: None,
        clock: &OnceClock::new(&CLOCK),
    };
    match e.decide(&input, &mut NoRemote) {
        Step::Done(d) => assert_eq!(reason(&d), (401, "unknown_key")),
        Step::Fetch { .. } | Step::Wait { .. } => panic!(),
    }
    assert_eq!(
        reason(&run(&e, &[("x-api-key", "")], None)),
        (401, "unknown_key")
    );
}

#[test]
fn ambiguous_paths_cannot_pick_a_weaker_rule() {
    let e = engine(base_config());
    for p in [
        "/public/../admin/x",
        "/public/%2e%2e/admin",
        "//admin",
        "/public/./x",
        "/public%2Fx",
        "/a\\b",
    ] {
        assert_eq!(
            reason(&run(&e, &[(":path", p), ("x-api-key", KEY)], None)),
            (400, "bad_path"),
            "{p}"
        );
    }
    // Query strings are not paths.
    assert_eq!(
        client(&run(
            &e,
            &[(":path", "/v1/x?next=/../a"), ("x-api-key", KEY)],
            None
        )),
        "acme"
    );
    // Without path rules, paths are not inspected.
    let e = engine(json!({"clients": [{"id": "a", "api_keys": [{"sha256": sha_hex(KEY)}]}]}));
    assert_eq!(
        client(&run(&e, &[(":path", "/x/../y"), ("x-api-key", KEY)], None)),
        "a"
    );
}

#[test]
fn one_fetch_at_a_time() {
    let r = RemoteJwks {
        cluster: "c".into(),
        path: "/jwks".into(),
        authority: None,
        cache_seconds: 300,
        min_refresh_interval_seconds: 30,
        timeout_ms: 1000,
    };
    let mut cache = JwksCache::default();
    let ask = |cache: &mut JwksCache, now_ms: u64, kid: Option<&str>| {
        let fixed = FixedClock(now_ms * 1_000_000);
        let clock = OnceClock::new(&fixed);
        let mut v = CacheView {
            cache,
            clock: &clock,
            allow_fetch: true,
            allow_wait: true,
        };
        match v.keys(0, kid, &r) {
            KeysAnswer::Keys(_) => "keys",
            KeysAnswer::Fetch => "fetch",
            KeysAnswer::Unavailable => "unavailable",
            KeysAnswer::Wait => "wait",
        }
    };
    assert_eq!(ask(&mut cache, 1_000, Some("a")), "fetch");
    assert_eq!(ask(&mut cache, 1_100, Some("a")), "wait");
    assert_eq!(ask(&mut cache, 1_200, None), "wait");
    let doc = json!({"keys": [{"kty": "oct", "kid": "a", "k": b64(SECRET)}]}).to_string();
    cache.record(0, Some(doc.as_bytes()), &jwt::ALL_ALGS, 1_300);
    assert_eq!(ask(&mut cache, 1_400, Some("a")), "keys");
    // Unknown kid after the interval: one fetch; meanwhile known kids
    // proceed and other unknown kids wait.
    assert_eq!(ask(&mut cache, 40_000, Some("b")), "fetch");
    assert_eq!(ask(&mut cache, 40_001, Some("a")), "keys");
    assert_eq!(ask(&mut cache, 40_002, Some("b")), "wait");
    // A fetch that never answers is forgotten after timeout + 1 s.
    assert_eq!(ask(&mut cache, 42_001, Some("b")), "keys");
    cache.abandon(0);
}

fn decide_raw(e: &Engine, pairs: &[(&str, &str)]) -> crate::engine::Decision {
    let h = HeaderSnapshot::from_pairs(pairs.to_vec());
    let input = Input {
        headers: &h,
        peer: None,
        clock: &OnceClock::new(&CLOCK),
    };
    match e.decide(&input, &mut NoRemote) {
        Step::Done(d) => d,
        Step::Fetch { .. } | Step::Wait { .. } => panic!("unexpected fetch"),
    }
}

fn bearer(e: &Engine, f: &dyn Fn(&mut Value)) -> crate::engine::Decision {
    let mut c = claims();
    f(&mut c);
    let t = hs_token(hdr(), c, SECRET);
    run(e, &[("authorization", &format!("Bearer {t}"))], None)
}

#[test]
fn jwt_numeric_client_ids_are_accepted() {
    let e = engine(base_config());
    let d = bearer(&e, &|c| c["sub"] = json!(4_200_017));
    assert_eq!(client(&d), "4200017");
    let d = bearer(&e, &|c| c["sub"] = json!(-7));
    assert_eq!(client(&d), "-7");
    // A fractional exp is a valid NumericDate.
    let d = bearer(&e, &|c| c["exp"] = json!((NOW + 600) as f64 + 0.25));
    assert_eq!(client(&d), "acme");
    // The upper bound itself is fine.
    let d = bearer(&e, &|c| c["exp"] = json!(jwt::MAX_NUMERIC_DATE));
    assert_eq!(client(&d), "acme");
    // Another client id claim: numeric there, `sub` must then be a string.
    let mut cfg = base_config();
    cfg["jwt"]["client_id_claim"] = json!("uid");
    let e = engine(cfg);
    let d = bearer(&e, &|c| c["uid"] = json!(12));
    assert_eq!(client(&d), "12");
    let d = bearer(&e, &|c| {
        c["uid"] = json!(12);
        c["sub"] = json!(12);
    });
    assert_eq!(reason(&d), (401, "bad_claims"));
}

type ClaimCase<'a> = (&'a str, &'a dyn Fn(&mut Value), &'a str);

#[test]
fn jwt_claim_problems_are_bad_claims_never_bad_signature() {
    let e = engine(base_config());
    let cases: Vec<ClaimCase> = vec![
        ("numeric jti", &|c| c["jti"] = json!(77), "bad_claims"),
        (
            "string exp",
            &|c| c["exp"] = json!((NOW + 600).to_string()),
            "bad_claims",
        ),
        ("null exp", &|c| c["exp"] = Value::Null, "bad_claims"),
        ("negative exp", &|c| c["exp"] = json!(-1), "bad_claims"),
        ("exp 1e29", &|c| c["exp"] = json!(1e29), "bad_claims"),
        (
            "exp f64::MAX",
            &|c| c["exp"] = json!(f64::MAX),
            "bad_claims",
        ),
        (
            "exp past the max",
            &|c| c["exp"] = json!(jwt::MAX_NUMERIC_DATE + 1),
            "bad_claims",
        ),
        (
            "exp u64::MAX",
            &|c| c["exp"] = json!(u64::MAX),
            "bad_claims",
        ),
        ("nbf 1e29", &|c| c["nbf"] = json!(1e29), "bad_claims"),
        ("iat 1e29", &|c| c["iat"] = json!(1e29), "bad_claims"),
        ("bool sub", &|c| c["sub"] = json!(true), "bad_claims"),
        ("object sub", &|c| c["sub"] = json!({"id": 1}), "bad_claims"),
        ("fractional sub", &|c| c["sub"] = json!(1.5), "bad_claims"),
        ("empty sub", &|c| c["sub"] = json!(""), "bad_claims"),
        (
            "sub with a space",
            &|c| c["sub"] = json!("a b"),
            "bad_claims",
        ),
        ("numeric aud", &|c| c["aud"] = json!(5), "bad_claims"),
        (
            "aud list with a number",
            &|c| c["aud"] = json!(["api", 5]),
            "bad_claims",
        ),
        ("null sub", &|c| c["sub"] = Value::Null, "missing_claim"),
        (
            "aud list without ours",
            &|c| c["aud"] = json!(["x", "y"]),
            "wrong_audience",
        ),
        (
            "no aud",
            &|c| {
                c.as_object_mut().unwrap().remove("aud");
            },
            "wrong_audience",
        ),
        (
            "iat ahead",
            &|c| c["iat"] = json!(NOW + 120),
            "not_yet_valid",
        ),
    ];
    for (what, f, want) in cases {
        assert_eq!(reason(&bearer(&e, f)), (401, want), "{what}");
    }
    // aud as a list holding ours is fine.
    assert_eq!(
        client(&bearer(&e, &|c| c["aud"] = json!(["x", "api"]))),
        "acme"
    );
    // The signature is checked before the claims: a forged token with bad
    // claims is a bad signature.
    let mut c = claims();
    c["exp"] = json!(1e29);
    c["jti"] = json!(5);
    let t = hs_token(hdr(), c, b"another-secret-another-secret-xx");
    assert_eq!(
        reason(&run(&e, &[("authorization", &format!("Bearer {t}"))], None)),
        (401, "bad_signature")
    );
}

#[test]
fn numeric_dates() {
    let m = |v: Value| json!({ "exp": v }).as_object().unwrap().clone();
    assert_eq!(jwt::numeric_date(&m(json!(5)), "exp"), Ok(Some(5)));
    assert_eq!(jwt::numeric_date(&m(json!(5.9)), "exp"), Ok(Some(5)));
    assert_eq!(jwt::numeric_date(&m(json!({})), "nbf"), Ok(None));
    for bad in [
        json!(-1),
        json!(-0.5),
        json!(1e29),
        json!("5"),
        json!(null),
        json!([5]),
    ] {
        assert_eq!(
            jwt::numeric_date(&m(bad.clone()), "exp"),
            Err(JwtError::BadClaims),
            "{bad}"
        );
    }
}

fn parse_err(v: Value) -> String {
    crate::config::parse(v.to_string().as_bytes())
        .and_then(|c| Engine::build(&c).map(|_| c))
        .map(|_| ())
        .unwrap_err()
        .to_string()
}

#[test]
fn config_errors_never_quote_a_secret() {
    const S: &str = "ak_live_secret_value_42";
    let h = sha_hex(S);
    let plain = |entry: Value| json!({"api_key": {"allow_plain_keys": true}, "clients": [{"id": "a", "api_keys": [entry]}]});
    let cases: Vec<(Value, &str, &str)> = vec![
        // api key values
        (
            json!({"clients": [{"id": "a", "api_keys": [S]}]}),
            "clients[0].api_keys[0]",
            S,
        ),
        (
            json!({"clients": [{"id": "a", "api_keys": S}]}),
            "clients[0].api_keys",
            S,
        ),
        (
            plain(json!({"key": 4_815_162_342_u64})),
            "clients[0].api_keys[0].key",
            "4815162342",
        ),
        (
            plain(json!({"key": 48151.62342})),
            "clients[0].api_keys[0].key",
            "48151",
        ),
        (plain(json!({S: true})), "clients[0].api_keys[0]", S),
        (
            plain(json!({"key": "short"})),
            "clients[0].api_keys[0].key",
            "short",
        ),
        // hashes
        (
            json!({"clients": [{"id": "a", "api_keys": [{"sha256": S}]}]}),
            "clients[0].api_keys[0].sha256",
            S,
        ),
        (
            json!({"clients": [{"id": "a", "api_keys": [{"sha256": h.clone(), "key": S}]}]}),
            "clients[0].api_keys[0]",
            S,
        ),
        (
            json!({"clients": [{"id": "a", "api_keys": [{"sha256": 123_456_789_012_u64}]}]}),
            "clients[0].api_keys[0].sha256",
            "123456789012",
        ),
        // the key block itself
        (json!({"api_key": S}), "api_key", S),
        (
            json!({"api_key": {"header": 987_654, "query_param": 5}}),
            "api_key.header",
            "987654",
        ),
        // JWKS: HMAC secret and private material
        (
            json!({"jwt": {"issuers": [{"issuer": "x", "jwks": {"keys": [{"kty": "oct", "k": format!("{S}!")}]}}]}}),
            "jwt.issuers[0].jwks.keys[0].k",
            S,
        ),
        (
            json!({"jwt": {"issuers": [{"issuer": "x", "jwks": {"keys": [{"kty": "oct", "k": b64(SECRET), "d": S}]}}]}}),
            "jwt.issuers[0].jwks.keys[0].d",
            S,
        ),
        (
            json!({"jwt": {"issuers": [{"issuer": "x", "jwks": {"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB", "p": S}]}}]}}),
            "jwt.issuers[0].jwks.keys[0].p",
            S,
        ),
        (
            json!({"jwt": {"issuers": [{"issuer": "x", "jwks": {"keys": [{"kty": "oct", "k": 987_654}]}}]}}),
            "jwt.issuers[0].jwks.keys[0].k",
            "987654",
        ),
        // other values are not shown either
        (json!({"default_mode": S}), "default_mode", S),
        (json!({"realm": 12_345_678}), "realm", "12345678"),
    ];
    for (cfg, field, secret) in cases {
        let e = parse_err(cfg);
        assert!(e.contains(&format!("field `{field}`")), "{field}: {e}");
        assert!(!e.contains(secret), "{field}: quotes the value: {e}");
        assert!(!e.contains(&h), "{field}: quotes the hash: {e}");
    }
    // Still says what was expected.
    let e = parse_err(json!({"clients": [{"id": "a", "api_keys": [S]}]}));
    assert!(e.contains("sha256") && e.contains("not shown"), "{e}");
    let e = parse_err(json!({"api_key": S}));
    assert!(e.contains("invalid type: a string, expected"), "{e}");
    let e = parse_err(json!({"default_mode": "requierd"}));
    assert!(
        e.contains("expected one of") && !e.contains("requierd"),
        "{e}"
    );
    // Unknown field names (not values) are still named.
    let e = parse_err(json!({"strip_credential": true}));
    assert!(e.contains("strip_credential"), "{e}");
}

#[test]
fn credentials_are_stripped_unless_the_method_opts_out() {
    let mut cfg = base_config();
    cfg.as_object_mut().unwrap().remove("strip_credentials");
    let jwt_t = hs_token(hdr(), claims(), SECRET);
    let check = |cfg: Value, key_stripped: bool, jwt_stripped: bool| {
        let e = engine(cfg);
        let d = run(&e, &[("x-api-key", KEY)], None);
        assert_eq!(d.ops.contains(&HeaderOp::remove("x-api-key")), key_stripped);
        let d = run(&e, &[(":path", &*format!("/v1/x?api_key={KEY}&a=1"))], None);
        assert_eq!(
            d.ops.contains(&HeaderOp::set(":path", "/v1/x?a=1")),
            key_stripped
        );
        let d = run(&e, &[("cookie", &*format!("gh_key={KEY}; x=1"))], None);
        assert_eq!(
            d.ops.contains(&HeaderOp::set("cookie", "x=1")),
            key_stripped
        );
        let d = run(&e, &[("authorization", &*format!("Bearer {jwt_t}"))], None);
        assert_eq!(client(&d), "acme");
        assert_eq!(
            d.ops.contains(&HeaderOp::remove("authorization")),
            jwt_stripped
        );
    };
    // Default: on.
    check(cfg.clone(), true, true);
    cfg["strip_credentials"] = json!(false);
    check(cfg.clone(), false, false);
    cfg["strip_credentials"] = json!({"jwt": false});
    check(cfg.clone(), true, false);
    cfg["strip_credentials"] = json!({"api_key": false});
    check(cfg.clone(), false, true);
    cfg["strip_credentials"] = json!({"api_key": true, "jwt": true});
    check(cfg.clone(), true, true);
    cfg["strip_credentials"] = json!({"mtls": false});
    assert!(config_err(cfg.clone()).contains("strip_credentials"));
    cfg["strip_credentials"] = json!("yes");
    assert!(config_err(cfg).contains("strip_credentials"));
}

#[test]
fn underscore_spellings_of_identity_headers_are_removed() {
    let mut cfg = base_config();
    cfg["headers"]["method"] = json!("x-client-auth");
    let e = engine(cfg);
    let forged = [
        ("x_client_id", "root"),
        ("x_client-plan", "gold"),
        ("x_client_auth", "jwt"),
        ("x_client_label_team", "x"),
        ("x-client_email", "a@b"),
        ("x_other", "kept"),
    ];
    for extra in [
        vec![("x-api-key", KEY)],
        vec![(":path", "/healthz")],
        vec![],
    ] {
        let mut pairs = forged.to_vec();
        pairs.extend(extra);
        let d = run(&e, &pairs, None);
        for (n, _) in &forged[..5] {
            assert!(
                d.ops.contains(&HeaderOp::remove(n)),
                "{n} kept: {:?}",
                d.ops
            );
        }
        assert!(!d.ops.contains(&HeaderOp::remove("x_other")));
    }
}

#[test]
fn schemes_and_underscore_spellings_in_any_case() {
    let e = engine(base_config());
    for auth in [format!("APIKEY {KEY}"), format!("bearer {KEY}")] {
        let d = run(&e, &[("authorization", &auth)], None);
        assert_eq!(client(&d), "acme", "{auth}");
        assert!(d.ops.contains(&HeaderOp::remove("authorization")));
    }
    let t = hs_token(hdr(), claims(), SECRET);
    let d = run(&e, &[("authorization", &format!("BEARER {t}"))], None);
    assert_eq!(client(&d), "acme");
    // Names not lower-cased by the proxy are still matched.
    let h = HeaderSnapshot::new(vec![
        (":path".into(), b"/v1/x".to_vec()),
        ("X_Client_ID".into(), b"root".to_vec()),
        ("X_CLIENT_LABEL_team".into(), b"x".to_vec()),
        ("x-api-key".into(), KEY.as_bytes().to_vec()),
    ]);
    let clock = OnceClock::new(&CLOCK);
    let input = Input {
        headers: &h,
        peer: None,
        clock: &clock,
    };
    let Step::Done(d) = e.decide(&input, &mut NoRemote) else {
        panic!("not decided");
    };
    assert!(
        d.ops.contains(&HeaderOp::remove("X_Client_ID")),
        "{:?}",
        d.ops
    );
    assert!(d.ops.contains(&HeaderOp::remove("X_CLIENT_LABEL_team")));
}

thread_local! {
    /// Connection properties read by [`fake_property`].
    static PROPS_READ: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A connection with a client certificate (a [`crate::engine::PropertyReader`]).
fn fake_property(path: &[&str]) -> Option<Vec<u8>> {
    let p = path.join(".");
    PROPS_READ.with(|r| r.borrow_mut().push(p.clone()));
    match p.as_str() {
        "connection.mtls" => Some(vec![1]),
        "connection.uri_san_peer_certificate" => Some(b"spiffe://test/client".to_vec()),
        "connection.subject_peer_certificate" => Some(b"CN=client".to_vec()),
        "connection.sha256_peer_certificate_digest" => Some(b"AB:CD".to_vec()),
        _ => None,
    }
}

/// The decision for `pairs` on that connection, and the properties read.
fn decide_with_peer(e: &Engine, pairs: &[(&str, &str)]) -> (crate::engine::Decision, Vec<String>) {
    PROPS_READ.with(|r| r.borrow_mut().clear());
    let mut all = vec![(":authority", "api.test"), (":method", "GET")];
    if !pairs.iter().any(|(k, _)| *k == ":path") {
        all.push((":path", "/v1/x"));
    }
    all.extend_from_slice(pairs);
    let h = HeaderSnapshot::from_pairs(all);
    let peer = LazyPeer::new(fake_property);
    let clock = OnceClock::new(&CLOCK);
    let input = Input {
        headers: &h,
        peer: Some(&peer),
        clock: &clock,
    };
    let Step::Done(d) = e.decide(&input, &mut NoRemote) else {
        panic!("not decided");
    };
    (d, PROPS_READ.with(|r| r.take()))
}

#[test]
fn certificate_properties_are_read_only_when_needed() {
    let e = engine(base_config());
    // A skipped path never looks at the certificate.
    let (d, read) = decide_with_peer(&e, &[(":path", "/healthz")]);
    assert_eq!(d.outcome, Outcome::Skipped);
    assert!(read.is_empty(), "{read:?}");
    // Matched by URI SAN (the first field): the subject is never read.
    let (d, read) = decide_with_peer(&e, &[]);
    assert_eq!(client(&d), "spiffe-client");
    assert_eq!(
        read,
        [
            "connection.mtls",
            "connection.sha256_peer_certificate_digest",
            "connection.uri_san_peer_certificate"
        ]
    );
    // A method tried before mTLS decided: nothing read.
    let mut cfg = base_config();
    cfg["methods"] = json!(["api_key", "mtls"]);
    let (d, read) = decide_with_peer(&engine(cfg), &[("x-api-key", KEY)]);
    assert_eq!(client(&d), "acme");
    assert!(read.is_empty(), "{read:?}");
    // A snapshot reads the rest, each property once.
    PROPS_READ.with(|r| r.borrow_mut().clear());
    let peer = LazyPeer::new(fake_property);
    assert_eq!(peer.uri_san(), Some("spiffe://test/client"));
    assert_eq!(
        peer.snapshot(),
        PeerCert {
            present: true,
            uri_san: Some("spiffe://test/client".into()),
            subject: Some("CN=client".into()),
            sha256: Some("AB:CD".into()),
        }
    );
    assert_eq!(PROPS_READ.with(|r| r.borrow().len()), 4);
}

#[test]
fn challenges_name_every_method() {
    let e = engine(base_config());
    let challenges =
        |pairs: &[(&str, &str)], peer: Option<PeerCert>| match run(&e, pairs, peer).outcome {
            Outcome::Rejected(r) => r.challenges,
            o => panic!("not rejected: {o:?}"),
        };
    let plain = [
        "Mutual-TLS realm=\"gatehouse\"",
        "Bearer realm=\"gatehouse\"",
        "ApiKey realm=\"gatehouse\"",
    ];
    assert_eq!(challenges(&[], None), plain);
    let unknown_cert = PeerCert {
        present: true,
        uri_san: Some("spiffe://test/other".into()),
        ..PeerCert::default()
    };
    assert_eq!(challenges(&[], Some(unknown_cert)), plain);
    assert_eq!(
        challenges(&[("x-api-key", "nope-nope-nope")], None),
        [
            "Mutual-TLS realm=\"gatehouse\"",
            "Bearer realm=\"gatehouse\"",
            "ApiKey realm=\"gatehouse\", error=\"invalid_key\"",
        ]
    );
    assert_eq!(
        challenges(&[("authorization", "Bearer a.b.c")], None),
        [
            "Mutual-TLS realm=\"gatehouse\"",
            "Bearer realm=\"gatehouse\", error=\"invalid_token\", error_description=\"the token is malformed\"",
            "ApiKey realm=\"gatehouse\"",
        ]
    );
}

#[test]
fn semicolons_make_a_path_ambiguous() {
    let e = engine(base_config());
    for p in [
        "/public/..;/admin",
        "/public/..;jsessionid=1/admin",
        "/public/.;/x",
        "/admin;x/users",
        "/public/%2e%2e%3b/admin",
        "/public%3b/x",
    ] {
        assert_eq!(
            reason(&run(&e, &[(":path", p), ("x-api-key", KEY)], None)),
            (400, "bad_path"),
            "{p}"
        );
    }
    assert_eq!(
        client(&run(
            &e,
            &[(":path", "/v1/x?a=1;b=2"), ("x-api-key", KEY)],
            None
        )),
        "acme"
    );
}

#[test]
fn cors_preflight_bypass() {
    let pre = |method: &'static str, origin: bool, acrm: bool| {
        let mut v = vec![
            (":authority", "api.test"),
            (":method", method),
            (":path", "/v1/x"),
            ("x-client-id", "forged"),
        ];
        if origin {
            v.push(("origin", "https://app.test"));
        }
        if acrm {
            v.push(("access-control-request-method", "POST"));
        }
        v
    };
    // Default: off (as jwt_authn).
    let e = engine(base_config());
    assert_eq!(
        reason(&decide_raw(&e, &pre("OPTIONS", true, true))),
        (401, "missing_credential")
    );
    let mut cfg = base_config();
    cfg["bypass_cors_preflight"] = json!(true);
    let e = engine(cfg);
    let d = decide_raw(&e, &pre("OPTIONS", true, true));
    assert_eq!(d.outcome, Outcome::CorsPreflight);
    assert!(d.ops.contains(&HeaderOp::remove("x-client-id")));
    assert!(
        !d.ops.iter().any(|o| matches!(o, HeaderOp::Set(..))),
        "{:?}",
        d.ops
    );
    for (m, o, a) in [
        ("OPTIONS", true, false),
        ("OPTIONS", false, true),
        ("GET", true, true),
    ] {
        assert_eq!(
            reason(&decide_raw(&e, &pre(m, o, a))),
            (401, "missing_credential"),
            "{m} {o} {a}"
        );
    }
}

#[test]
fn certificates_need_the_mtls_method() {
    let certs = json!([{"id": "svc", "certificates": [{"uri_san": "spiffe://x/y"}]}]);
    let e = config_err(json!({"clients": certs, "anonymous": {}}));
    assert!(
        e.contains("field `clients[0].certificates`") && e.contains("`mtls`"),
        "{e}"
    );
    let e = config_err(
        json!({"clients": [{"id": "k", "api_keys": [{"sha256": sha_hex(KEY)}]},
        {"id": "svc", "certificates": [{"sha256": sha_hex("c")}]}]}),
    );
    assert!(e.contains("field `clients[1].certificates`"), "{e}");
    let e = config_err(
        json!({"clients": [{"id": "k", "api_keys": [{"sha256": sha_hex(KEY)}]},
        {"id": "svc", "certificates": [{"subject": "CN=a"}]}], "mtls": {}, "methods": ["api_key"]}),
    );
    assert!(
        e.contains("field `clients[1].certificates`") && e.contains("methods"),
        "{e}"
    );
    engine(json!({"clients": certs, "mtls": {}}));
}

#[test]
fn verified_cache_events_are_counted() {
    let e = engine(base_config());
    let t = hs_token(hdr(), claims(), SECRET);
    for _ in 0..3 {
        assert_eq!(
            client(&run(&e, &[("authorization", &format!("Bearer {t}"))], None)),
            "acme"
        );
    }
    assert_eq!(e.take_cache_events(), (2, 1));
    assert_eq!(e.take_cache_events(), (0, 0));
    let mut cfg = base_config();
    cfg["jwt"]["verified_cache_entries"] = json!(0);
    let e = engine(cfg);
    run(&e, &[("authorization", &format!("Bearer {t}"))], None);
    assert_eq!(e.take_cache_events(), (0, 0));
}
