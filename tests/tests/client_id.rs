//! client-id in real Envoy: API keys, JWT (inline JWKS, every rejection
//! reason), mTLS and bad configs. Remote JWKS is in `client_id_jwks.rs`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use gatehouse_e2e::*;
use jwt_simple::prelude::*;
use serde_json::{json, Value};
use sha2::Digest;

const KEY: &str = "ak_live_acme_5f2e9c1d";
const DISABLED_KEY: &str = "ak_live_old_77aa01";
const HS_SECRET: &[u8] = b"e2e-hs256-secret-e2e-hs256-secret!!";

fn sha_hex(s: &str) -> String {
    sha2::Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// HS256 token from raw JSON (lets tests forge any header).
fn hs_token(header: Value, payload: Value, secret: &[u8]) -> String {
    let signing = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(payload.to_string().as_bytes())
    );
    let mac = hmac_sha256::HMAC::mac(signing.as_bytes(), secret);
    format!("{signing}.{}", b64(&mac))
}

fn assert_error_body(r: &Response, status: u16, reason: &str, request_id: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v = r.json();
    assert_eq!(v["error"], reason, "{v}");
    assert_eq!(v["request_id"], request_id, "{v}");
    assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()));
}

fn key_config() -> Value {
    json!({
        "clients": [
            {"id": "acme", "plan": "gold", "labels": {"team": "core"}, "api_keys": [{"sha256": sha_hex(KEY)}]},
            {"id": "old", "plan": "free", "enabled": false, "api_keys": [{"sha256": sha_hex(DISABLED_KEY)}]},
            {"id": "internal", "plan": "internal", "api_keys": [{"sha256": sha_hex("ak_internal_0099")}]}
        ],
        "api_key": {"query_param": "api_key", "cookie": "gh_key", "authorization_schemes": ["ApiKey", "Bearer"]},
        "headers": {"label_prefix": "x-client-label-", "method": "x-client-auth"},
        "rules": [
            {"paths": [{"exact": "/healthz"}], "mode": "skip"},
            {"paths": [{"segment_prefix": "/public"}], "mode": "optional"},
            {"hosts": ["admin.test"], "mode": "required", "allowed_plans": ["internal"]}
        ],
        "anonymous": {"client_id": "anon", "plan": "anonymous"},
        "strip_credentials": true
    })
}

#[test]
fn iface_api_keys_identify_the_client_and_forged_identity_never_passes() {
    let echo = Echo::start("echo");
    let envoy = Envoy::start(
        &EnvoyConfig::new()
            .cluster("echo", echo.port)
            .filter(WasmFilter::new("client-id", key_config())),
    );
    let forged = |r: Request| {
        r.header("x-client-id", "root")
            .header("x-client-plan", "unlimited")
            .header("x-client-label-team", "forged")
            .header("x-client-auth", "forged")
    };
    // Every place a key can travel.
    for req in [
        Request::get("/v1/a").header("x-api-key", KEY),
        Request::get("/v1/a").header("authorization", &format!("ApiKey {KEY}")),
        Request::get("/v1/a").header("authorization", &format!("Bearer {KEY}")),
        Request::get(&format!("/v1/a?x=1&api_key={KEY}")),
        Request::get("/v1/a").header("cookie", &format!("theme=dark; gh_key={KEY}")),
    ] {
        let r = envoy.send_h1(&forged(req.host("api.test")));
        assert_eq!(r.status, 200, "{}", r.text());
        let seen = r.echo();
        assert_eq!(seen.header_all("x-client-id"), vec!["acme"]);
        assert_eq!(seen.header_all("x-client-plan"), vec!["gold"]);
        assert_eq!(seen.header_all("x-client-label-team"), vec!["core"]);
        assert_eq!(seen.header_all("x-client-auth"), vec!["api_key"]);
        // strip_credentials: the key never reaches the upstream.
        assert_eq!(seen.header("x-api-key"), None);
        assert_eq!(seen.header("authorization"), None);
        assert!(!seen.path.contains(KEY), "{}", seen.path);
        assert!(!seen.header("cookie").unwrap_or("").contains(KEY));
    }
    let r =
        envoy.send_h1(&Request::get("/v1/a?x=1&api_key=".to_string().as_str()).host("api.test"));
    assert_eq!(r.status, 401);
    let r = envoy.send_h1(&Request::get(&format!("/v1/a?x=1&api_key={KEY}&y=2")).host("api.test"));
    assert_eq!(r.echo().path, "/v1/a?x=1&y=2");
    let r = envoy.send_h1(
        &Request::get("/v1/a")
            .host("api.test")
            .header("cookie", &format!("theme=dark; gh_key={KEY}")),
    );
    assert_eq!(r.echo().header("cookie"), Some("theme=dark"));

    // Unknown key: 401, challenge, JSON body with the request id.
    let r = envoy.send_h1(
        &forged(Request::get("/v1/a"))
            .host("api.test")
            .header("x-api-key", "ak_live_guess_000")
            .header("x-request-id", "rid-unknown"),
    );
    assert_error_body(&r, 401, "unknown_key", "rid-unknown");
    assert_eq!(
        r.header("www-authenticate"),
        Some("ApiKey realm=\"gatehouse\", error=\"invalid_key\"")
    );
    // No credential.
    let r = envoy.send_h1(
        &forged(Request::get("/v1/a"))
            .host("api.test")
            .header("x-request-id", "rid-none"),
    );
    assert_error_body(&r, 401, "missing_credential", "rid-none");
    assert_eq!(
        r.header("www-authenticate"),
        Some("ApiKey realm=\"gatehouse\"")
    );
    // Disabled client: 403.
    let r = envoy.send_h1(
        &Request::get("/v1/a")
            .host("api.test")
            .header("x-api-key", DISABLED_KEY)
            .header("x-request-id", "rid-disabled"),
    );
    assert_error_body(&r, 403, "disabled_client", "rid-disabled");
    assert_eq!(r.header("www-authenticate"), None);
    // Known client, not allowed on this host: 403; the internal plan is.
    let r = envoy.send_h1(
        &Request::get("/")
            .host("admin.test")
            .header("x-api-key", KEY)
            .header("x-request-id", "rid-admin"),
    );
    assert_error_body(&r, 403, "not_allowed", "rid-admin");
    let r = envoy.send_h1(
        &Request::get("/")
            .host("admin.test")
            .header("x-api-key", "ak_internal_0099"),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.echo().header("x-client-id"), Some("internal"));

    // Optional path: anonymous identity, forged headers replaced.
    let r = envoy.send_h1(&forged(Request::get("/public/doc")).host("api.test"));
    assert_eq!(r.status, 200);
    let seen = r.echo();
    assert_eq!(seen.header_all("x-client-id"), vec!["anon"]);
    assert_eq!(seen.header_all("x-client-plan"), vec!["anonymous"]);
    assert_eq!(seen.header("x-client-label-team"), None);
    // ... but a bad key there is still refused.
    let r = envoy.send_h1(
        &Request::get("/public/doc")
            .host("api.test")
            .header("x-api-key", "nope-nope-nope"),
    );
    assert_eq!(r.status, 401);
    // Skipped path: no identification, forged headers still removed.
    let r = envoy.send_h1(&forged(Request::get("/healthz")).host("api.test"));
    assert_eq!(r.status, 200);
    let seen = r.echo();
    for h in [
        "x-client-id",
        "x-client-plan",
        "x-client-label-team",
        "x-client-auth",
    ] {
        assert_eq!(seen.header(h), None, "{h}");
    }
    // A path the upstream may read differently cannot pick a weaker rule.
    for p in ["/public/../v1/a", "/public/%2e%2e/v1/a", "//healthz"] {
        let r = envoy.send_h1(
            &Request::get(p)
                .host("api.test")
                .header("x-request-id", "rid-path"),
        );
        assert_error_body(&r, 400, "bad_path", "rid-path");
    }
    // HTTP/2 too.
    let r = envoy.send_h2(
        &forged(Request::get("/v1/h2"))
            .host("api.test")
            .header("x-api-key", KEY),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.echo().header_all("x-client-id"), vec!["acme"]);

    assert_eq!(envoy.metric("gatehouse.client_id.identified.api_key"), 9);
    assert_eq!(envoy.metric("gatehouse.client_id.rejected.unknown_key"), 3);
    assert_eq!(
        envoy.metric("gatehouse.client_id.rejected.missing_credential"),
        1
    );
    assert_eq!(
        envoy.metric("gatehouse.client_id.rejected.disabled_client"),
        1
    );
    assert_eq!(envoy.metric("gatehouse.client_id.rejected.not_allowed"), 1);
    assert_eq!(envoy.metric("gatehouse.client_id.anonymous"), 1);
    assert_eq!(envoy.metric("gatehouse.client_id.skipped"), 1);
    assert_eq!(envoy.metric("gatehouse.client_id.rejected.bad_path"), 3);
    // Keys never reach the log, only a short hash prefix does.
    let log = envoy.log();
    assert!(log.contains("reason=unknown_key"), "{log}");
    for secret in [KEY, DISABLED_KEY, "ak_live_guess_000", "ak_internal_0099"] {
        assert!(!log.contains(secret), "a key leaked into the log");
    }
    assert!(log.contains(&sha_hex("ak_live_guess_000")[..8]));
    assert!(!log.contains(&sha_hex("ak_live_guess_000")));
}

fn rsa_pair() -> RS256KeyPair {
    RS256KeyPair::from_pem(include_str!(
        "../../filters/client-id/testdata/rsa-test-key.pem"
    ))
    .unwrap()
    .with_key_id("rsa-1")
}

fn rsa_jwk() -> Value {
    let c = rsa_pair().public_key().to_components();
    json!({"kty": "RSA", "kid": "rsa-1", "use": "sig", "n": b64(&c.n), "e": b64(&c.e)})
}

fn claims(sub: &str) -> JWTClaims<Value> {
    let mut c = Claims::with_custom_claims(
        json!({"email": format!("{sub}@corp.test"), "tier": "silver"}),
        Duration::from_mins(10),
    )
    .with_issuer("https://idp.corp.test")
    .with_subject(sub)
    .with_audience("orders-api");
    c.issued_at = Some(UnixTimeStamp::from_secs(now() - 5));
    c
}

#[test]
fn jwt_identifies_with_every_key_type_and_refuses_every_bad_token() {
    let echo = Echo::start("echo");
    let es = ES256KeyPair::generate().with_key_id("es-1");
    let ed = Ed25519KeyPair::generate().with_key_id("ed-1");
    let mut es_jwk: Value = serde_json::from_str(&es.public_key().to_jwk()).unwrap();
    es_jwk["kid"] = json!("es-1");
    let mut ed_jwk: Value = serde_json::from_str(&ed.public_key().to_jwk()).unwrap();
    ed_jwk["kid"] = json!("ed-1");
    let config = json!({
        "jwt": {
            "issuers": [
                {"issuer": "https://idp.corp.test", "audiences": ["orders-api"], "required_claims": ["email"],
                 "jwks": {"keys": [rsa_jwk(), es_jwk, ed_jwk]}},
                {"issuer": "https://hs.corp.test",
                 "jwks": {"keys": [{"kty": "oct", "kid": "hs-1", "alg": "HS256", "k": b64(HS_SECRET)}]}}
            ],
            "clock_skew_seconds": 30,
            "plan_claim": "tier",
            "claims_to_headers": [{"claim": "email", "header": "x-client-email"}]
        },
        "clients": [{"id": "disabled-svc", "enabled": false}]
    });
    let envoy = Envoy::start(
        &EnvoyConfig::new()
            .cluster("echo", echo.port)
            .filter(WasmFilter::new("client-id", config)),
    );
    let send = |token: &str, rid: &str| {
        envoy.send_h1(
            &Request::get("/orders")
                .header("authorization", &format!("Bearer {token}"))
                .header("x-request-id", rid)
                .header("x-client-id", "forged")
                .header("x-client-email", "forged@evil"),
        )
    };
    // Accepted: RS256, PS256 (same RSA key), ES256, EdDSA, HS256.
    let ps = PS256KeyPair::from_pem(include_str!(
        "../../filters/client-id/testdata/rsa-test-key.pem"
    ))
    .unwrap()
    .with_key_id("rsa-1");
    let good = [
        (
            "rs256",
            rsa_pair().sign(claims("svc-rs")).unwrap(),
            "svc-rs",
        ),
        ("ps256", ps.sign(claims("svc-ps")).unwrap(), "svc-ps"),
        ("es256", es.sign(claims("svc-es")).unwrap(), "svc-es"),
        ("eddsa", ed.sign(claims("svc-ed")).unwrap(), "svc-ed"),
        (
            "hs256",
            hs_token(
                json!({"alg": "HS256", "kid": "hs-1"}),
                json!({"iss": "https://hs.corp.test", "sub": "svc-hs", "exp": now() + 600, "email": "svc-hs@corp.test"}),
                HS_SECRET,
            ),
            "svc-hs",
        ),
    ];
    for (what, token, sub) in &good {
        let r = send(token, what);
        assert_eq!(r.status, 200, "{what}: {}", r.text());
        let seen = r.echo();
        assert_eq!(seen.header_all("x-client-id"), vec![*sub], "{what}");
        assert_eq!(
            seen.header_all("x-client-email"),
            vec![format!("{sub}@corp.test").as_str()],
            "{what}"
        );
        if *what != "hs256" {
            assert_eq!(seen.header("x-client-plan"), Some("silver"), "{what}");
        }
    }

    // Every rejection reason.
    let rsa = rsa_pair();
    let mut expired = claims("svc");
    expired.expires_at = Some(UnixTimeStamp::from_secs(now() - 120));
    expired.issued_at = Some(UnixTimeStamp::from_secs(now() - 1000));
    let mut future = claims("svc");
    future.invalid_before = Some(UnixTimeStamp::from_secs(now() + 300));
    let wrong_iss = claims("svc").with_issuer("https://evil.test");
    let wrong_aud = claims("svc").with_audience("billing-api");
    // A signature made by the right key over other content.
    let other_sig = rsa.sign(claims("other")).unwrap();
    let unknown_kid = es_signing_with_kid("es-unknown");
    let rsa_pem = rsa.public_key().to_pem().unwrap();
    let good_rs = rsa.sign(claims("svc")).unwrap();
    let parts: Vec<&str> = good_rs.split('.').collect();
    let mut evil_claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    evil_claims["sub"] = json!("admin");
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64(evil_claims.to_string().as_bytes()),
        parts[2]
    );
    let none_payload = json!({"iss": "https://idp.corp.test", "sub": "admin", "aud": "orders-api", "exp": now() + 600, "email": "a@b"});
    let cases: Vec<(&str, String, &str)> = vec![
        ("expired", rsa.sign(expired).unwrap(), "expired"),
        ("not yet valid", rsa.sign(future).unwrap(), "not_yet_valid"),
        ("wrong issuer", rsa.sign(wrong_iss).unwrap(), "wrong_issuer"),
        (
            "wrong audience",
            rsa.sign(wrong_aud).unwrap(),
            "wrong_audience",
        ),
        (
            "bad signature",
            format!(
                "{}.{}",
                good_rs.rsplit_once('.').unwrap().0,
                other_sig.rsplit('.').next().unwrap()
            ),
            "bad_signature",
        ),
        ("unknown kid", unknown_kid, "unknown_kid"),
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(br#"{"alg":"none","typ":"JWT"}"#),
                b64(none_payload.to_string().as_bytes())
            ),
            "alg_none",
        ),
        (
            "HS256 keyed with the RSA public key",
            hs_token(
                json!({"alg": "HS256", "kid": "rsa-1"}),
                none_payload.clone(),
                rsa_pem.as_bytes(),
            ),
            "algorithm_not_allowed",
        ),
        (
            "HS256 keyed with the RSA public key, no kid",
            hs_token(
                json!({"alg": "HS256"}),
                none_payload.clone(),
                rsa_pem.as_bytes(),
            ),
            "algorithm_not_allowed",
        ),
        ("tampered payload", tampered, "bad_signature"),
        (
            "missing required claim",
            rsa.sign(
                Claims::create(Duration::from_mins(5))
                    .with_issuer("https://idp.corp.test")
                    .with_subject("svc")
                    .with_audience("orders-api"),
            )
            .unwrap(),
            "missing_claim",
        ),
        ("garbage", "abc.def.ghi".to_string(), "malformed_token"),
    ];
    for (what, token, reason) in &cases {
        let rid = format!("rid-{}", reason);
        let r = send(token, &rid);
        assert_error_body(&r, 401, reason, &rid);
        let challenge = r.header("www-authenticate").unwrap_or_default();
        assert!(
            challenge.starts_with(
                "Bearer realm=\"gatehouse\", error=\"invalid_token\", error_description=\""
            ),
            "{what}: {challenge}"
        );
        assert!(!r.text().contains(token.as_str()), "{what}: token echoed");
    }
    // A disabled client named by a valid token: 403.
    let r = send(&rsa.sign(claims("disabled-svc")).unwrap(), "rid-dis");
    assert_error_body(&r, 403, "disabled_client", "rid-dis");
    // No token at all: the bare challenge.
    let r = envoy.send_h1(&Request::get("/orders"));
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"gatehouse\"")
    );

    assert_eq!(envoy.metric("gatehouse.client_id.identified.jwt"), 5);
    for reason in [
        "expired",
        "not_yet_valid",
        "wrong_issuer",
        "wrong_audience",
        "unknown_kid",
        "alg_none",
        "missing_claim",
        "malformed_token",
    ] {
        assert_eq!(
            envoy.metric(&format!("gatehouse.client_id.rejected.{reason}")),
            1,
            "{reason}"
        );
    }
    assert_eq!(
        envoy.metric("gatehouse.client_id.rejected.bad_signature"),
        2
    );
    assert_eq!(
        envoy.metric("gatehouse.client_id.rejected.algorithm_not_allowed"),
        2
    );
    // Tokens and secrets never reach the log.
    let log = envoy.log();
    assert!(log.contains("reason=bad_signature"));
    for (_, token, _) in good.iter().map(|(a, t, c)| (a, t, c)) {
        assert!(!log.contains(token.as_str()), "a token leaked into the log");
        let sig = token.rsplit('.').next().unwrap();
        assert!(!log.contains(sig), "a signature leaked into the log");
    }
    for (_, token, _) in &cases {
        if let Some(sig) = token.rsplit('.').next().filter(|s| s.len() > 10) {
            assert!(!log.contains(sig), "a signature leaked into the log");
        }
    }
    assert!(!log.contains(&b64(HS_SECRET)));
}

fn es_signing_with_kid(kid: &str) -> String {
    ES256KeyPair::generate()
        .with_key_id(kid)
        .sign(claims("svc"))
        .unwrap()
}

#[test]
fn iface_mtls_identifies_by_uri_san_and_digest_and_follows_the_rule_without_a_certificate() {
    let echo = Echo::start("echo");
    let pki = TestPki::new(&scratch_dir("pki"));
    let by_san = pki.client_cert("svc-a", Some("spiffe://corp.test/ns/shop/sa/orders"));
    let by_digest = pki.client_cert("svc-b", None);
    let unknown = pki.client_cert("svc-c", Some("spiffe://corp.test/ns/shop/sa/intruder"));
    let config = json!({
        "mtls": {},
        "clients": [
            {"id": "orders", "plan": "internal", "certificates": [{"uri_san": "spiffe://corp.test/ns/shop/sa/orders"}]},
            {"id": "batch", "plan": "bulk", "certificates": [{"sha256": by_digest.sha256_hex}]},
            {"id": "by-subject", "certificates": [{"subject": "CN=svc-subject"}]},
            {"id": "keyed", "plan": "free", "api_keys": [{"sha256": sha_hex(KEY)}]}
        ],
        "rules": [{"paths": [{"segment_prefix": "/public"}], "mode": "optional"}],
        "anonymous": {"client_id": "anonymous-tls"}
    });
    let envoy = Envoy::start(
        &EnvoyConfig::new()
            .cluster("echo", echo.port)
            .tls(pki.listener(true, false))
            .filter(WasmFilter::new("client-id", config)),
    );
    let get = |path: &str, cert: Option<&gatehouse_e2e::pki::ClientCert>| {
        envoy.send_h1_tls(
            &Request::get(path)
                .host("localhost")
                .header("x-client-id", "forged"),
            &pki.client("localhost", cert),
        )
    };
    let r = get("/api", Some(&by_san));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.echo().header_all("x-client-id"), vec!["orders"]);
    assert_eq!(r.echo().header("x-client-plan"), Some("internal"));
    let r = get("/api", Some(&by_digest));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.echo().header_all("x-client-id"), vec!["batch"]);
    let subj = pki.client_cert("svc-subject", None);
    let r = get("/api", Some(&subj));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.echo().header_all("x-client-id"), vec!["by-subject"]);
    // A verified certificate that maps to no client.
    let r = get("/api", Some(&unknown));
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"], "unknown_certificate");
    // No certificate: the rule decides (required => 401, optional => anonymous),
    // and other methods still work.
    assert_eq!(get("/api", None).status, 401);
    let r = get("/public/x", None);
    assert_eq!(r.status, 200);
    assert_eq!(r.echo().header_all("x-client-id"), vec!["anonymous-tls"]);
    let r = envoy.send_h1_tls(
        &Request::get("/api")
            .host("localhost")
            .header("x-api-key", KEY),
        &pki.client("localhost", None),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.echo().header("x-client-id"), Some("keyed"));
    // Plain HTTP listener: no certificate either.
    assert_eq!(envoy.send_h1(&Request::get("/api")).status, 401);
    assert_eq!(envoy.metric("gatehouse.client_id.identified.mtls"), 3);
    assert_eq!(
        envoy.metric("gatehouse.client_id.rejected.unknown_certificate"),
        1
    );
}

fn refused(config: Value) -> String {
    let f = Envoy::try_start(
        &EnvoyConfig::new()
            .cluster("echo", 9)
            .filter(WasmFilter::new("client-id", config)),
    )
    .err()
    .expect("Envoy must refuse this client-id config");
    f.log
}

fn the_error_line(log: &str) -> &str {
    log.lines()
        .find(|l| l.contains("gatehouse client-id: invalid configuration"))
        .unwrap_or_else(|| panic!("no config error line in:\n{log}"))
}

#[test]
fn iface_bad_configs_are_refused_with_a_line_naming_the_field() {
    let issuer = |jwks: Value, algs: Value| json!({"jwt": {"issuers": [{"issuer": "x", "jwks": jwks, "algorithms": algs}]}});
    let h = sha_hex("dup-dup-dup-dup");
    let cases = [
        (
            issuer(
                json!({"keys": [{"kty": "RSA", "n": "not*base64", "e": "AQAB"}]}),
                json!(["RS256"]),
            ),
            "jwt.issuers[0].jwks.keys[0].n",
        ),
        (
            issuer(json!({"keys": "nope"}), json!(["RS256"])),
            "jwt.issuers[0].jwks.keys",
        ),
        (
            issuer(
                json!({"keys": [{"kty": "oct", "k": b64(HS_SECRET)}]}),
                json!(["HS256", "HS257"]),
            ),
            "jwt.issuers[0].algorithms[1]",
        ),
        (
            json!({"clients": [{"id": "a", "api_keys": [{"sha256": h}]}, {"id": "b", "api_keys": [{"sha256": h}]}]}),
            "clients[1].api_keys[0]",
        ),
        (
            json!({"clients": [{"id": "a", "api_keys": [{"sha256": "12345"}]}]}),
            "clients[0].api_keys[0].sha256",
        ),
    ];
    for (config, field) in cases {
        let log = refused(config);
        let line = the_error_line(&log);
        assert!(
            line.contains(&format!("field `{field}`")),
            "{field}: {line}"
        );
        assert_eq!(
            log.matches("gatehouse client-id: invalid configuration")
                .count(),
            1,
            "one line per VM expected:\n{log}"
        );
    }
}

fn hs_config(extra: Value) -> Value {
    let mut c = json!({
        "jwt": {
            "issuers": [{"issuer": "https://hs.corp.test", "audiences": ["orders-api"],
                         "jwks": {"keys": [{"kty": "oct", "kid": "hs-1", "alg": "HS256", "k": b64(HS_SECRET)}]}}]
        }
    });
    if let (Some(c), Some(e)) = (c.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            c.insert(k.clone(), v.clone());
        }
    }
    c
}

fn hs_claims(extra: Value) -> String {
    let mut p = json!({"iss": "https://hs.corp.test", "aud": "orders-api", "sub": "svc-hs",
                       "iat": now() - 5, "exp": now() + 600});
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            p.as_object_mut().unwrap().remove(k);
        } else {
            p[k] = v.clone();
        }
    }
    hs_token(json!({"alg": "HS256", "kid": "hs-1"}), p, HS_SECRET)
}

/// A numeric client id is accepted (the docs allow it); a validly signed
/// token whose claims have the wrong type or an impossible time is
/// `bad_claims`, never `bad_signature`; out-of-range times are refused
/// instead of meaning "never expires".
#[test]
fn jwt_claim_types_and_out_of_range_times_have_their_own_reason() {
    let echo = Echo::start("echo");
    let envoy = Envoy::start(
        &EnvoyConfig::new()
            .cluster("echo", echo.port)
            // One worker: one verified-token cache, so the counts are exact.
            .concurrency(1)
            .filter(WasmFilter::new("client-id", hs_config(json!({})))),
    );
    let send = |token: &str| {
        envoy.send_h1(&Request::get("/orders").header("authorization", &format!("Bearer {token}")))
    };
    let numeric = hs_claims(json!({"sub": 4200017}));
    for _ in 0..2 {
        let r = send(&numeric);
        assert_eq!(r.status, 200, "numeric sub: {}", r.text());
        assert_eq!(r.echo().header_all("x-client-id"), vec!["4200017"]);
    }
    // The second one came from the verified-token cache.
    assert_eq!(envoy.metric("gatehouse.client_id.verified_cache.hits"), 1);
    assert_eq!(envoy.metric("gatehouse.client_id.verified_cache.misses"), 1);
    let r = send(&hs_claims(json!({"exp": (now() + 600) as f64 + 0.5})));
    assert_eq!(r.status, 200, "fractional exp: {}", r.text());

    let cases: Vec<(&str, Value, &str)> = vec![
        ("numeric jti", json!({"jti": 77}), "bad_claims"),
        (
            "string exp",
            json!({"exp": (now() + 600).to_string()}),
            "bad_claims",
        ),
        ("negative exp", json!({"exp": -1}), "bad_claims"),
        ("exp 1e29", json!({"exp": 1e29}), "bad_claims"),
        (
            "exp f64::MAX (1.79e308)",
            json!({"exp": f64::MAX}),
            "bad_claims",
        ),
        ("nbf 1e29", json!({"nbf": 1e29}), "bad_claims"),
        ("iat 1e29", json!({"iat": 1e29}), "bad_claims"),
        ("object sub", json!({"sub": {"id": 1}}), "bad_claims"),
        ("numeric aud", json!({"aud": 5}), "bad_claims"),
        ("no sub", json!({"sub": null}), "missing_claim"),
        ("expired", json!({"exp": now() - 600}), "expired"),
    ];
    for (what, claims, reason) in &cases {
        let r = send(&hs_claims(claims.clone()));
        assert_eq!(r.status, 401, "{what}: {}", r.text());
        assert_eq!(r.json()["error"], *reason, "{what}");
    }
    // 1.8e308 is beyond f64: not JSON a parser can read, so malformed.
    let raw = format!(
        "{}.{}",
        b64(br#"{"alg":"HS256","kid":"hs-1"}"#),
        b64(br#"{"iss":"https://hs.corp.test","aud":"orders-api","sub":"svc-hs","exp":1.8e308}"#)
    );
    let mac = hmac_sha256::HMAC::mac(raw.as_bytes(), HS_SECRET);
    let r = send(&format!("{raw}.{}", b64(&mac)));
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.json()["error"], "malformed_token");
    // A bad signature is still a bad signature.
    let forged = hs_token(
        json!({"alg": "HS256", "kid": "hs-1"}),
        json!({"iss": "https://hs.corp.test", "aud": "orders-api", "sub": 1, "exp": 1e29}),
        b"not-the-secret-not-the-secret-not-the-secret",
    );
    assert_eq!(send(&forged).json()["error"], "bad_signature");
    assert_eq!(envoy.metric("gatehouse.client_id.rejected.bad_claims"), 9);
    assert_eq!(
        envoy.metric("gatehouse.client_id.rejected.bad_signature"),
        1
    );
}

/// A configuration error names the field and the expected shape, never the
/// value: an API key (or its hash) or a JWKS secret never reaches the log.
#[test]
fn config_errors_never_quote_secret_values() {
    const SECRET: &str = "ak_live_leaky_9f8e7d6c5b";
    let hex = sha_hex(SECRET);
    let cases = [
        (
            json!({"clients": [{"id": "a", "api_keys": [SECRET]}]}),
            "clients[0].api_keys[0]",
            SECRET.to_string(),
        ),
        (
            json!({"clients": [{"id": "a", "api_keys": SECRET}]}),
            "clients[0].api_keys",
            SECRET.to_string(),
        ),
        (
            json!({"api_key": {"allow_plain_keys": true},
                   "clients": [{"id": "a", "api_keys": [{"key": 4_815_162_342_u64}]}]}),
            "clients[0].api_keys[0].key",
            "4815162342".to_string(),
        ),
        (
            json!({"api_key": {"allow_plain_keys": true},
                   "clients": [{"id": "a", "api_keys": [{SECRET: true}]}]}),
            "clients[0].api_keys[0]",
            SECRET.to_string(),
        ),
        (
            // The key where its settings belong.
            json!({"api_key": SECRET, "clients": [{"id": "a", "api_keys": [{"sha256": hex}]}]}),
            "api_key",
            SECRET.to_string(),
        ),
        (
            // A private JWK pasted into the config: refused, `d` not quoted.
            json!({"jwt": {"issuers": [{"issuer": "x", "jwks": {"keys": [
                {"kty": "oct", "k": b64(HS_SECRET), "d": SECRET}]}}]}}),
            "jwt.issuers[0].jwks.keys[0].d",
            SECRET.to_string(),
        ),
    ];
    for (config, field, secret) in cases {
        let log = refused(config);
        let line = the_error_line(&log);
        assert!(
            line.contains(&format!("field `{field}`")),
            "{field}: {line}"
        );
        assert!(
            !log.contains(&secret),
            "{field}: the secret is in the log:\n{line}"
        );
        assert!(
            !log.contains(&secret[..8]),
            "{field}: part of the secret is in the log"
        );
    }
}

/// Credentials are removed before forwarding unless a method opts out.
#[test]
fn credentials_are_stripped_by_default_and_kept_only_on_opt_out() {
    let echo = Echo::start("echo");
    let token = hs_claims(json!({}));
    let config = |extra: Value| {
        hs_config(json!({
            "clients": [{"id": "acme", "api_keys": [{"sha256": sha_hex(KEY)}]}],
            "api_key": {"query_param": "api_key"}
        }))
        .as_object()
        .unwrap()
        .clone()
        .into_iter()
        .chain(extra.as_object().unwrap().clone())
        .collect::<serde_json::Map<_, _>>()
    };
    let requests = || {
        [
            Request::get("/a").header("x-api-key", KEY),
            Request::get(&format!("/a?api_key={KEY}&x=1")),
            Request::get("/a").header("authorization", &format!("Bearer {token}")),
        ]
    };
    let envoy = Envoy::start(&EnvoyConfig::new().cluster("echo", echo.port).filter(
        WasmFilter::new("client-id", Value::Object(config(json!({})))),
    ));
    for req in requests() {
        let r = envoy.send_h1(&req);
        assert_eq!(r.status, 200, "{}", r.text());
        let seen = r.echo();
        assert!(seen.header("x-client-id").is_some());
        assert_eq!(seen.header("x-api-key"), None);
        assert_eq!(seen.header("authorization"), None);
        assert!(!seen.path.contains(KEY), "{}", seen.path);
    }
    assert_eq!(envoy.send_h1(&requests()[1].clone()).echo().path, "/a?x=1");
    drop(envoy);
    // Opt out for JWT only: the token is forwarded, keys still are not.
    let envoy = Envoy::start(&EnvoyConfig::new().cluster("echo", echo.port).filter(
        WasmFilter::new(
            "client-id",
            Value::Object(config(json!({"strip_credentials": {"jwt": false}}))),
        ),
    ));
    let [by_header, by_query, by_jwt] = requests();
    let seen = envoy.send_h1(&by_header).echo();
    assert_eq!(seen.header("x-api-key"), None);
    assert!(!envoy.send_h1(&by_query).echo().path.contains(KEY));
    let seen = envoy.send_h1(&by_jwt).echo();
    assert_eq!(
        seen.header("authorization"),
        Some(format!("Bearer {token}").as_str())
    );
}

/// `x_client_id` and friends are read as `x-client-id` by CGI/WSGI/PHP
/// upstreams: removed, with Envoy's default `headers_with_underscores_action`.
#[test]
fn underscore_variants_of_identity_headers_never_reach_the_upstream() {
    let echo = Echo::start("echo");
    let envoy = Envoy::start(
        &EnvoyConfig::new()
            .cluster("echo", echo.port)
            .filter(WasmFilter::new("client-id", key_config())),
    );
    let forged = |r: Request| {
        r.header("x_client_id", "root")
            .header("x_client-plan", "unlimited")
            .header("x_client_label_team", "forged")
            .header("x-client_auth", "forged")
            .header("x_unrelated", "kept")
    };
    for req in [
        Request::get("/v1/a").header("x-api-key", KEY),
        Request::get("/public/doc"),
        Request::get("/healthz"),
    ] {
        let r = envoy.send_h1(&forged(req.host("api.test")));
        assert_eq!(r.status, 200, "{}", r.text());
        let seen = r.echo();
        // Envoy's default lets underscore headers through ...
        assert_eq!(seen.header("x_unrelated"), Some("kept"));
        // ... but none that an upstream could read as an identity header.
        for (name, _) in &seen.headers {
            let n = name.replace('_', "-").to_ascii_lowercase();
            if name.contains('_') {
                assert!(!n.starts_with("x-client-"), "{name} reached the upstream");
            }
        }
    }
}

/// `..;` is `..` to Tomcat, Jetty and Spring; `;` parameters hide segments.
#[test]
fn semicolon_dot_segments_are_ambiguous_paths() {
    let echo = Echo::start("echo");
    let envoy = Envoy::start(
        &EnvoyConfig::new()
            .cluster("echo", echo.port)
            .filter(WasmFilter::new("client-id", key_config())),
    );
    for p in [
        "/public/..;/v1/a",
        "/public/..;jsessionid=1/v1/a",
        "/public/.;/x",
        "/healthz;x=1",
    ] {
        let r = envoy.send_h1(
            &Request::get(p)
                .host("api.test")
                .header("x-request-id", "rid-semi"),
        );
        assert_error_body(&r, 400, "bad_path", "rid-semi");
    }
    // A `;` in the query is not the path.
    let r = envoy.send_h1(&Request::get("/public/doc?a=1;b=2").host("api.test"));
    assert_eq!(r.status, 200, "{}", r.text());
}

fn is_preflight(r: Request) -> Request {
    r.header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
}

/// CORS preflights carry no credential: 401 by default (as jwt_authn), let
/// through with `bypass_cors_preflight`, without identity; other OPTIONS
/// requests still need a credential.
#[test]
fn cors_preflights_pass_only_with_bypass_cors_preflight() {
    let echo = Echo::start("echo");
    let mut config = key_config();
    let envoy = Envoy::start(
        &EnvoyConfig::new()
            .cluster("echo", echo.port)
            .filter(WasmFilter::new("client-id", config.clone())),
    );
    let r = envoy.send_h1(&is_preflight(Request::new("OPTIONS", "/v1/a")).host("api.test"));
    assert_eq!(r.status, 401, "{}", r.text());
    drop(envoy);
    config["bypass_cors_preflight"] = json!(true);
    let envoy = Envoy::start(
        &EnvoyConfig::new()
            .cluster("echo", echo.port)
            .filter(WasmFilter::new("client-id", config)),
    );
    let r = envoy.send_h1(
        &is_preflight(Request::new("OPTIONS", "/v1/a"))
            .host("api.test")
            .header("x-client-id", "forged"),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = r.echo();
    assert_eq!(seen.method, "OPTIONS");
    assert_eq!(seen.header("x-client-id"), None);
    // Not a preflight: OPTIONS without the CORS headers, or GET with them.
    for req in [
        Request::new("OPTIONS", "/v1/a").header("origin", "https://app.example"),
        is_preflight(Request::get("/v1/a")),
    ] {
        assert_eq!(envoy.send_h1(&req.host("api.test")).status, 401);
    }
    assert_eq!(envoy.metric("gatehouse.client_id.cors_preflight"), 1);
}
