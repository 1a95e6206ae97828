//! Host-call budgets of the adapter, driven natively through the recording
//! fake host with `example.json`; each phase must make exactly the calls of
//! its row in docs/benchmarks.md (host-call budgets).

use gatehouse_proxy::fake::{self, assert_budget, assert_rows_covered, Vm};
use proxy_wasm::types::Action;

const FILTER: &str = "https-redirect";
const EXAMPLE: &[u8] = include_bytes!("../example.json");

fn vm() -> Vm {
    Vm::start(crate::filter::new_root, EXAMPLE).expect("example.json is accepted")
}

const REQUEST: &[(&str, &str)] = &[
    (":method", "GET"),
    (":path", "/orders?id=7"),
    (":authority", "example.com"),
    (":scheme", "http"),
];

#[test]
fn plain_http_redirected() {
    let vm = vm();
    vm.tick(); // flushes the earlier requests' counters
    let http = vm.http();
    let req = http.request_headers(REQUEST);
    assert_eq!(req.action, Action::Pause);
    let reply = fake::local_reply().expect("a redirect");
    assert_eq!(reply.status, 301);
    assert_eq!(
        fake::header(&reply.headers, "location").as_deref(),
        Some("https://example.com/orders?id=7")
    );
    assert_budget(
        FILTER,
        "plain HTTP redirected",
        "request headers",
        &req.calls,
    );
    assert_budget(FILTER, "plain HTTP redirected", "next tick", &vm.tick());
}

#[test]
fn https_passes() {
    let vm = vm();
    fake::set_property(&["connection", "tls_version"], b"TLSv1.3");
    let http = vm.http();
    let req = http.request_headers(REQUEST);
    assert_eq!(req.action, Action::Continue);
    assert_eq!(fake::local_reply(), None);
    assert_budget(FILTER, "HTTPS passes", "request headers", &req.calls);
    let resp = http.response_headers(&[(":status", "200")]);
    assert_eq!(
        fake::header(&fake::response_headers(), "strict-transport-security").as_deref(),
        Some("max-age=31536000")
    );
    assert_budget(FILTER, "HTTPS passes", "response headers", &resp.calls);
    assert_budget(FILTER, "HTTPS passes", "next tick", &vm.tick());
}

#[test]
fn every_row_tested() {
    assert_rows_covered(
        FILTER,
        &[
            ("plain HTTP redirected", "request headers"),
            ("HTTPS passes", "request headers"),
            ("HTTPS passes", "response headers"),
            ("plain HTTP redirected", "next tick"),
            ("HTTPS passes", "next tick"),
        ],
    );
}
