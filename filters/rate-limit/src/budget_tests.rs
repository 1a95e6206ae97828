//! Host-call budgets of the adapter, driven natively through the recording
//! fake host with `example.json` (local mode, shared data); each phase must
//! make exactly the calls of its row in docs/benchmarks.md (host-call
//! budgets).

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

#[test]
fn every_row_tested() {
    assert_rows_covered(
        FILTER,
        &[
            ("allowed", "request headers"),
            ("allowed", "response headers"),
            ("limited (429)", "request headers"),
            ("allowed", "next tick"),
            ("limited (429)", "next tick"),
        ],
    );
}
