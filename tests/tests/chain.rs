//! The `make run` chain: every filter in the repository, in the documented
//! order, each with its example config, answers the demo requests that
//! `make run` prints with the documented statuses.
use gatehouse_e2e::run::{chain_config, demos, filters_in_repo, RunPorts};
use gatehouse_e2e::*;

#[test]
fn iface_make_run_chain_answers_its_demo_requests() {
    let built = filters_in_repo();
    assert!(built.contains(&"request-id"), "{built:?}");
    for f in &built {
        wasm_path(f);
    }
    let echo = Echo::start("echo");
    let webapp = Echo::start("webapp");
    let catalog = Echo::start("catalog");
    let pki = TestPki::new(&scratch_dir("chain-pki"));
    let ports = RunPorts {
        http: 0,
        https: 0,
        admin: 0,
    };
    let envoy = Envoy::start(&chain_config(
        &built, &ports, &echo, &webapp, &catalog, &pki,
    ));
    let real_ports = RunPorts {
        http: envoy.http_port,
        https: envoy.tls_port.unwrap(),
        admin: envoy.admin_port,
    };
    let tls = pki.client("localhost", None);
    let list = demos(&built);
    assert!(!list.is_empty());
    for demo in list {
        let mut last = None;
        for _ in 0..demo.repeat.max(1) {
            let r = if demo.tls {
                envoy.send_h1_tls(&demo.request, &tls)
            } else {
                envoy.send_h1(&demo.request)
            };
            last = Some(r);
        }
        let r = last.unwrap();
        assert_eq!(
            r.status,
            demo.expect_status,
            "demo `{}` ({}) answered {}: {}",
            demo.what,
            demo.curl(&real_ports, &pki),
            r.status,
            r.text()
        );
        if built.contains(&"request-id") {
            assert!(
                r.header("x-request-id").is_some(),
                "{}: no x-request-id",
                demo.what
            );
        }
    }
}
