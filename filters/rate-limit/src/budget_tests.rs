//! Host-call budgets of the adapter, driven natively through the recording
//! fake host with `example.json` (local mode, shared data); each phase must
//! make exactly the calls of its row in docs/benchmarks.md (host-call
//! budgets).

use crate::rls::{encode_response, Code, CurrentLimit, DescriptorStatus, RlsResponse};
use gatehouse_proxy::fake::{self, assert_budget, assert_rows_covered, Vm};
use proxy_wasm::types::Action;

const FILTER: &str = "rate-limit";
const EXAMPLE: &[u8] = include_bytes!("../example.json");

fn vm() -> Vm {
    Vm::start(crate::filter::new_root, EXAMPLE).expect("example.json is accepted")
}

const REQUEST: &[(&str, &str)] = &[
    (":method", "GET"),
    (":path", "/api"),
    (":authority", "example.com"),
    (":scheme", "http"),
    ("x-client-id", "acme"),
];

#[test]
fn allowed() {
    let vm = vm();
    let http = vm.http();
    let req = http.request_headers(REQUEST);
    assert_eq!(req.action, Action::Continue);
    assert_eq!(fake::local_reply(), None);
    assert_budget(FILTER, "allowed", "request headers", &req.calls);
    let resp = http.response_headers(&[(":status", "200")]);
    assert!(fake::header(&fake::response_headers(), "x-ratelimit-remaining").is_some());
    assert_budget(FILTER, "allowed", "response headers", &resp.calls);
    assert_budget(FILTER, "allowed", "next tick", &vm.tick());
}

#[test]
fn limited() {
    let vm = vm();
    // The free plan allows 3 a minute.
    for _ in 0..3 {
        let http = vm.http();
        assert_eq!(http.request_headers(REQUEST).action, Action::Continue);
    }
    vm.tick(); // flushes the earlier requests' counters
    let http = vm.http();
    let req = http.request_headers(REQUEST);
    assert_eq!(req.action, Action::Pause);
    assert_eq!(fake::local_reply().map(|r| r.status), Some(429));
    assert_budget(FILTER, "limited (429)", "request headers", &req.calls);
    assert_budget(FILTER, "limited (429)", "next tick", &vm.tick());
}

// ---- global mode: one gRPC callout per request ----

const GLOBAL: &str = r#"{"client_id_header": "x-client-id", "rules": [{"name": "api",
    "descriptor": ["client_id"], "limits": [{"rate": 10, "per": "minute"}],
    "global": {"cluster": "rls", "domain": "edge", "on_error": "allow"}}]}"#;

fn global_vm() -> Vm {
    Vm::start(crate::filter::new_root, GLOBAL.as_bytes()).expect("the global config is accepted")
}

/// The service's answer: `code` overall and for the one descriptor.
fn answer(code: Code) -> Vec<u8> {
    encode_response(&RlsResponse {
        overall_code: code,
        statuses: vec![DescriptorStatus {
            code,
            current_limit: Some(CurrentLimit {
                name: "10-per-minute".to_string(),
                requests_per_unit: 10,
                unit: 2,
            }),
            limit_remaining: if code == Code::Ok { 9 } else { 0 },
            duration_until_reset: Some(6_000_000_000),
        }],
        response_headers_to_add: Vec::new(),
        request_headers_to_add: Vec::new(),
    })
}

/// A request of the global rule up to its callout: the callout's token.
fn global_request(http: &fake::Http, row: &str) -> u32 {
    let req = http.request_headers(REQUEST);
    assert_eq!(req.action, Action::Pause);
    assert_budget(FILTER, row, "request headers", &req.calls);
    let calls = fake::grpc_calls();
    let call = calls.last().expect("one callout");
    assert_eq!(
        (call.cluster.as_str(), call.method.as_str()),
        ("rls", "ShouldRateLimit")
    );
    call.token
}

#[test]
fn global_allowed() {
    let vm = global_vm();
    let http = vm.http();
    let token = global_request(&http, "global: allowed");
    let answered = http.grpc_response(token, Ok(&answer(Code::Ok)));
    assert_eq!(fake::local_reply(), None);
    assert_budget(FILTER, "global: allowed", "gRPC answer", &answered);
    let resp = http.response_headers(&[(":status", "200")]);
    assert_eq!(
        fake::header(&fake::response_headers(), "x-ratelimit-remaining").as_deref(),
        Some("9")
    );
    assert_budget(FILTER, "global: allowed", "response headers", &resp.calls);
    assert_budget(FILTER, "global: allowed", "next tick", &vm.tick());
}

#[test]
fn global_over_limit() {
    let vm = global_vm();
    let http = vm.http();
    let token = global_request(&http, "global: over limit (429)");
    let answered = http.grpc_response(token, Ok(&answer(Code::OverLimit)));
    assert_eq!(fake::local_reply().map(|r| r.status), Some(429));
    assert_budget(FILTER, "global: over limit (429)", "gRPC answer", &answered);
    assert_budget(FILTER, "global: over limit (429)", "next tick", &vm.tick());
}

#[test]
fn global_service_unavailable() {
    let vm = global_vm();
    let http = vm.http();
    let token = global_request(&http, "global: service unavailable (allow)");
    // gRPC UNAVAILABLE (14): `on_error: allow` lets the request through.
    let answered = http.grpc_response(token, Err(14));
    assert_eq!(fake::local_reply(), None);
    assert_budget(
        FILTER,
        "global: service unavailable (allow)",
        "gRPC answer",
        &answered,
    );
    assert_budget(
        FILTER,
        "global: service unavailable (allow)",
        "next tick",
        &vm.tick(),
    );
}

#[test]
fn every_row_tested() {
    assert_rows_covered(
        FILTER,
        &[
            ("allowed", "request headers"),
            ("allowed", "response headers"),
            ("limited (429)", "request headers"),
            ("global: allowed", "request headers"),
            ("global: allowed", "gRPC answer"),
            ("global: allowed", "response headers"),
            ("global: allowed", "next tick"),
            ("global: over limit (429)", "request headers"),
            ("global: over limit (429)", "gRPC answer"),
            ("global: over limit (429)", "next tick"),
            ("global: service unavailable (allow)", "request headers"),
            ("global: service unavailable (allow)", "gRPC answer"),
            ("global: service unavailable (allow)", "next tick"),
            ("allowed", "next tick"),
            ("limited (429)", "next tick"),
        ],
    );
}
