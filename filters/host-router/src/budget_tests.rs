//! Host-call budgets of the adapter, driven natively through the recording
//! fake host with `example.json`; each phase must make exactly the calls of
//! its row in docs/benchmarks.md (host-call budgets).

use gatehouse_proxy::fake::{self, assert_budget, assert_rows_covered, Vm};
use proxy_wasm::types::Action;

const FILTER: &str = "host-router";
const EXAMPLE: &[u8] = include_bytes!("../example.json");

fn vm() -> Vm {
    Vm::start(crate::filter::new_root, EXAMPLE).expect("example.json is accepted")
}

fn request(host: &'static str) -> [(&'static str, &'static str); 4] {
    [
        (":method", "GET"),
        (":path", "/items"),
        (":authority", host),
        (":scheme", "http"),
    ]
}

#[test]
fn routed() {
    let vm = vm();
    let http = vm.http();
    let req = http.request_headers(&request("catalog.istioinaction.io"));
    assert_eq!(req.action, Action::Continue);
    assert_eq!(
        fake::header(&fake::request_headers(), "x-gatehouse-cluster").as_deref(),
        Some("catalog")
    );
    assert_budget(FILTER, "routed", "request headers", &req.calls);
    let resp = http.response_headers(&[(":status", "200")]);
    assert_budget(FILTER, "routed", "response headers", &resp.calls);
    assert_budget(FILTER, "routed", "next tick", &vm.tick());
}

#[test]
fn unknown_host_answered() {
    let vm = vm();
    let http = vm.http();
    let req = http.request_headers(&request("elsewhere.example"));
    assert_eq!(req.action, Action::Pause);
    assert_eq!(fake::local_reply().map(|r| r.status), Some(404));
    assert_budget(
        FILTER,
        "unknown host answered",
        "request headers",
        &req.calls,
    );
    assert_budget(FILTER, "unknown host answered", "next tick", &vm.tick());
}

#[test]
fn every_row_tested() {
    assert_rows_covered(
        FILTER,
        &[
            ("routed", "request headers"),
            ("routed", "response headers"),
            ("unknown host answered", "request headers"),
            ("routed", "next tick"),
            ("unknown host answered", "next tick"),
        ],
    );
}
