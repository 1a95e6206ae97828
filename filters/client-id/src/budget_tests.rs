//! Host-call budgets of the adapter, driven natively through the recording
//! fake host with `example.json` (API keys and a local-JWKS HS256 issuer)
//! and the demo credentials; each phase must make exactly the calls of its
//! row in docs/benchmarks.md (host-call budgets).

use gatehouse_proxy::fake::{self, assert_budget, assert_rows_covered, Vm};
use proxy_wasm::types::Action;

const FILTER: &str = "client-id";
const EXAMPLE: &[u8] = include_bytes!("../example.json");
const DEMO: &str = include_str!("../demo-credentials.json");

fn vm() -> Vm {
    Vm::start(crate::filter::new_root, EXAMPLE).expect("example.json is accepted")
}

fn demo(field: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(DEMO).expect("demo credentials");
    v[field].as_str().expect("a string").to_string()
}

fn request(credential: (&'static str, &str)) -> Vec<(&'static str, String)> {
    vec![
        (":method", "GET".into()),
        (":path", "/api".into()),
        (":authority", "example.com".into()),
        (":scheme", "https".into()),
        (credential.0, credential.1.to_string()),
    ]
}

fn run(http: &fake::Http, headers: &[(&'static str, String)]) -> fake::Phase {
    let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    http.request_headers(&h)
}

#[test]
fn api_key() {
    let vm = vm();
    let http = vm.http();
    let req = run(&http, &request(("x-api-key", &demo("api_key"))));
    assert_eq!(req.action, Action::Continue);
    let headers = fake::request_headers();
    assert_eq!(
        fake::header(&headers, "x-client-id").as_deref(),
        Some("demo")
    );
    assert_eq!(fake::header(&headers, "x-api-key"), None);
    assert_budget(FILTER, "API key", "request headers", &req.calls);
    let resp = http.response_headers(&[(":status", "200")]);
    assert_budget(FILTER, "API key", "response headers", &resp.calls);
    assert_budget(FILTER, "API key", "next tick", &vm.tick());
}

#[test]
fn bad_key_refused() {
    let vm = vm();
    let http = vm.http();
    let req = run(&http, &request(("x-api-key", "not-a-key")));
    assert_eq!(req.action, Action::Pause);
    assert_eq!(fake::local_reply().map(|r| r.status), Some(401));
    assert_budget(FILTER, "bad key (401)", "request headers", &req.calls);
    assert_budget(FILTER, "bad key (401)", "next tick", &vm.tick());
}

#[test]
fn jwt_verified_cache_hit() {
    let vm = vm();
    let bearer = format!("Bearer {}", demo("jwt"));
    let first = run(&vm.http(), &request(("authorization", &bearer)));
    assert_eq!(first.action, Action::Continue);
    vm.tick(); // flushes the first request's counters
    let http = vm.http();
    let req = run(&http, &request(("authorization", &bearer)));
    assert_eq!(req.action, Action::Continue);
    assert_eq!(
        fake::header(&fake::request_headers(), "x-client-id").as_deref(),
        Some(demo("jwt_client").as_str())
    );
    assert_budget(
        FILTER,
        "JWT (verified-cache hit)",
        "request headers",
        &req.calls,
    );
    assert_budget(FILTER, "JWT (verified-cache hit)", "next tick", &vm.tick());
}

// ---- JWKS fetched through a cluster ----

/// example.json with the issuer's keys fetched from cluster `idp`, and
/// those keys as the cluster serves them.
fn remote_jwks() -> (Vec<u8>, Vec<u8>) {
    let mut config: serde_json::Value = serde_json::from_slice(EXAMPLE).expect("example.json");
    let issuer = &mut config["jwt"]["issuers"][0];
    let jwks = issuer["jwks"].take();
    if let Some(i) = issuer.as_object_mut() {
        i.remove("jwks");
        i.insert(
            "remote_jwks".into(),
            serde_json::json!({"cluster": "idp", "path": "/jwks"}),
        );
    }
    (
        config.to_string().into_bytes(),
        jwks.to_string().into_bytes(),
    )
}

#[test]
fn jwt_first_request_fetches_jwks() {
    let (config, jwks) = remote_jwks();
    let vm = Vm::start(crate::filter::new_root, &config).expect("the remote-JWKS config");
    let bearer = format!("Bearer {}", demo("jwt"));
    let http = vm.http();
    let req = run(&http, &request(("authorization", &bearer)));
    assert_eq!(req.action, Action::Pause);
    let calls = fake::http_calls();
    let fetch = calls.last().expect("a JWKS fetch");
    assert_eq!(fetch.cluster, "idp");
    assert_budget(
        FILTER,
        "JWT, JWKS not yet fetched",
        "request headers",
        &req.calls,
    );
    let answered = http.http_call_response(fetch.token, &[(":status", "200")], &jwks);
    assert_eq!(fake::local_reply(), None);
    assert_eq!(
        fake::header(&fake::request_headers(), "x-client-id").as_deref(),
        Some(demo("jwt_client").as_str())
    );
    assert_budget(
        FILTER,
        "JWT, JWKS not yet fetched",
        "JWKS answer",
        &answered,
    );
    assert_budget(FILTER, "JWT, JWKS not yet fetched", "next tick", &vm.tick());
    // The keys are cached: the next request does not fetch.
    let again = run(&vm.http(), &request(("authorization", &bearer)));
    assert_eq!(again.action, Action::Continue);
    assert_eq!(fake::http_calls().len(), 1);
}

#[test]
fn every_row_tested() {
    assert_rows_covered(
        FILTER,
        &[
            ("API key", "request headers"),
            ("API key", "response headers"),
            ("bad key (401)", "request headers"),
            ("JWT (verified-cache hit)", "request headers"),
            ("JWT, JWKS not yet fetched", "request headers"),
            ("JWT, JWKS not yet fetched", "JWKS answer"),
            ("JWT, JWKS not yet fetched", "next tick"),
            ("API key", "next tick"),
            ("bad key (401)", "next tick"),
            ("JWT (verified-cache hit)", "next tick"),
        ],
    );
}
