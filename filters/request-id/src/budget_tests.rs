//! Host-call budgets of the adapter, driven natively through the recording
//! fake host with `example.json`; each phase must make exactly the calls of
//! its row in docs/benchmarks.md (host-call budgets).

use gatehouse_proxy::fake::{self, assert_budget, assert_rows_covered, Vm};
use proxy_wasm::types::Action;

const FILTER: &str = "request-id";
const EXAMPLE: &[u8] = include_bytes!("../example.json");
const ID: &str = "0f0e0d0c-0b0a-4908-8706-050403020100";

fn vm() -> Vm {
    Vm::start(crate::filter::new_root, EXAMPLE).expect("example.json is accepted")
}

fn request(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut h = vec![
        (":method", "GET"),
        (":path", "/"),
        (":authority", "example.com"),
        (":scheme", "http"),
    ];
    h.extend_from_slice(extra);
    h
}

#[test]
fn new_id() {
    let vm = vm();
    let http = vm.http();
    let req = http.request_headers(&request(&[]));
    assert_eq!(req.action, Action::Continue);
    let id = fake::header(&fake::request_headers(), "x-request-id").expect("an id is set");
    assert_budget(FILTER, "new id", "request headers", &req.calls);
    let resp = http.response_headers(&[(":status", "200")]);
    assert_eq!(
        fake::header(&fake::response_headers(), "x-request-id"),
        Some(id)
    );
    assert_budget(FILTER, "new id", "response headers", &resp.calls);
    // Counted in the VM, handed to Envoy by the tick.
    assert_eq!(fake::metric("gatehouse.request_id.ids_generated"), 0);
    assert_budget(FILTER, "new id", "next tick", &vm.tick());
    assert_eq!(fake::metric("gatehouse.request_id.ids_generated"), 1);
    assert_budget(FILTER, "new id", "nothing counted since", &vm.tick());
}

#[test]
fn preserved_id() {
    let vm = vm();
    let http = vm.http();
    let req = http.request_headers(&request(&[("x-request-id", ID)]));
    assert_eq!(req.action, Action::Continue);
    assert_eq!(
        fake::header(&fake::request_headers(), "x-request-id").as_deref(),
        Some(ID)
    );
    assert_budget(FILTER, "preserved id", "request headers", &req.calls);
    let resp = http.response_headers(&[(":status", "200")]);
    assert_eq!(
        fake::header(&fake::response_headers(), "x-request-id").as_deref(),
        Some(ID)
    );
    assert_budget(FILTER, "preserved id", "response headers", &resp.calls);
    assert_budget(FILTER, "preserved id", "next tick", &vm.tick());
}

#[test]
fn continued_trace() {
    let vm = vm();
    let http = vm.http();
    let req = http.request_headers(&request(&[
        ("x-request-id", ID),
        (
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
        ("x-b3-traceid", "4bf92f3577b34da6a3ce929d0e0e4736"),
        ("x-b3-spanid", "00f067aa0ba902b7"),
        ("x-b3-sampled", "1"),
    ]));
    assert_eq!(req.action, Action::Continue);
    let headers = fake::request_headers();
    assert_eq!(
        fake::header(&headers, "x-b3-traceid").as_deref(),
        Some("4bf92f3577b34da6a3ce929d0e0e4736")
    );
    assert_eq!(
        fake::header(&headers, "x-b3-parentspanid").as_deref(),
        Some("00f067aa0ba902b7")
    );
    let traceparent = fake::header(&headers, "traceparent").expect("traceparent");
    assert!(traceparent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
    assert!(!traceparent.contains("00f067aa0ba902b7"));
    assert_budget(FILTER, "continued trace", "request headers", &req.calls);
    assert_budget(FILTER, "continued trace", "next tick", &vm.tick());
}

#[test]
fn every_row_tested() {
    assert_rows_covered(
        FILTER,
        &[
            ("new id", "request headers"),
            ("new id", "response headers"),
            ("preserved id", "request headers"),
            ("preserved id", "response headers"),
            ("continued trace", "request headers"),
            ("new id", "next tick"),
            ("new id", "nothing counted since"),
            ("preserved id", "next tick"),
            ("continued trace", "next tick"),
        ],
    );
}
