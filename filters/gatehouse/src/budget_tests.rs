//! Host-call budgets of the fused chain: all five filters as stages of one
//! HTTP context (each with its own `example.json`), driven natively through
//! the recording fake host. The stages share one read of the request
//! headers; each phase must make exactly the calls of its row in
//! docs/benchmarks.md (host-call budgets).

use crate::module::new_root;
use gatehouse_proxy::fake::{self, assert_budget, assert_rows_covered, Vm};
use proxy_wasm::types::Action;

const FILTER: &str = "fused chain";
const DEMO: &str = include_str!("../../client-id/demo-credentials.json");

fn demo(field: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(DEMO).expect("demo credentials");
    v[field].as_str().expect("a string").to_string()
}

/// The chain of all five, each stage configured with its example.
fn vm() -> Vm {
    let stage = |bytes: &[u8]| -> serde_json::Value {
        serde_json::from_slice(bytes).expect("an example.json")
    };
    let config = serde_json::json!({
        "request-id": stage(include_bytes!("../../request-id/example.json")),
        "https-redirect": stage(include_bytes!("../../https-redirect/example.json")),
        "client-id": stage(include_bytes!("../../client-id/example.json")),
        "rate-limit": stage(include_bytes!("../../rate-limit/example.json")),
        "host-router": stage(include_bytes!("../../host-router/example.json")),
    });
    fake::set_property(&["plugin_root_id"], crate::CHAIN_ROOT_ID.as_bytes());
    fake::set_property(&["connection", "tls_version"], b"TLSv1.3");
    Vm::start(new_root, config.to_string().as_bytes()).expect("the chain is accepted")
}

fn request(api_key: &str) -> Vec<(&'static str, String)> {
    vec![
        (":method", "GET".into()),
        (":path", "/api".into()),
        (":authority", "webapp.istioinaction.io".into()),
        (":scheme", "https".into()),
        ("x-api-key", api_key.into()),
    ]
}

fn run(http: &fake::Http, headers: &[(&'static str, String)]) -> fake::Phase {
    let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    http.request_headers(&h)
}

#[test]
fn all_five_pass() {
    let vm = vm();
    let http = vm.http();
    let req = run(&http, &request(&demo("api_key")));
    assert_eq!(req.action, Action::Continue);
    assert_eq!(fake::local_reply(), None);
    let headers = fake::request_headers();
    assert!(fake::header(&headers, "x-request-id").is_some());
    assert_eq!(
        fake::header(&headers, "x-client-id").as_deref(),
        Some("demo")
    );
    assert_eq!(
        fake::header(&headers, "x-gatehouse-cluster").as_deref(),
        Some("webapp")
    );
    assert_budget(
        FILTER,
        "API key, all five pass",
        "request headers",
        &req.calls,
    );
    let resp = http.response_headers(&[(":status", "200")]);
    let response = fake::response_headers();
    assert!(fake::header(&response, "x-request-id").is_some());
    assert!(fake::header(&response, "strict-transport-security").is_some());
    assert_budget(
        FILTER,
        "API key, all five pass",
        "response headers",
        &resp.calls,
    );
    assert_budget(FILTER, "API key, all five pass", "next tick", &vm.tick());
}

#[test]
fn bad_key_stops_the_chain() {
    let vm = vm();
    let http = vm.http();
    let req = run(&http, &request("not-a-key"));
    assert_eq!(req.action, Action::Pause);
    assert_eq!(fake::local_reply().map(|r| r.status), Some(401));
    assert_budget(FILTER, "bad key (401)", "request headers", &req.calls);
    let resp = http.response_headers(&[(":status", "401")]);
    assert_budget(FILTER, "bad key (401)", "response headers", &resp.calls);
    assert_budget(FILTER, "bad key (401)", "next tick", &vm.tick());
}

#[test]
fn every_row_tested() {
    assert_rows_covered(
        FILTER,
        &[
            ("API key, all five pass", "request headers"),
            ("API key, all five pass", "response headers"),
            ("API key, all five pass", "next tick"),
            ("bad key (401)", "request headers"),
            ("bad key (401)", "response headers"),
            ("bad key (401)", "next tick"),
        ],
    );
}
