//! The harness itself: Envoy with no gatehouse filter proxies to the echo
//! upstream over HTTP/1.1, HTTP/2 and TLS, and refuses a broken config.
use gatehouse_e2e::*;

#[test]
fn envoy_plain_envoy_proxies_to_echo_over_h1_h2_and_tls() {
    let echo = Echo::start("echo");
    let pki = TestPki::new(&scratch_dir("pki"));
    let envoy = Envoy::start(
        &EnvoyConfig::new()
            .cluster("echo", echo.port)
            .tls(pki.listener(false, false)),
    );
    let r = envoy.send_h1(
        &Request::get("/hello?x=1")
            .host("a.example.com")
            .header("x-test", "1"),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = r.echo();
    assert_eq!(seen.upstream, "echo");
    assert_eq!(seen.path, "/hello?x=1");
    assert_eq!(seen.header("host"), Some("a.example.com"));
    assert_eq!(seen.header("x-test"), Some("1"));

    let r = envoy.send_h2(&Request::post("/h2").host("b.example.com").body(b"hi"));
    assert_eq!(r.status, 200);
    let seen = r.echo();
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.body, "hi");
    assert_eq!(seen.header("host"), Some("b.example.com"));

    let tls = pki.client("localhost", None);
    let r = envoy.send_h1_tls(&Request::get("/secure").host("localhost"), &tls);
    assert_eq!(r.status, 200);
    assert_eq!(r.echo().header("x-forwarded-proto"), Some("https"));

    // Stats: a name Envoy has reads its value; a name it does not have
    // fails the test instead of reading as 0 (a typo must not pass `== 0`).
    assert!(envoy.counter("http.plain.downstream_rq_total") >= 2);
    for missing in ["http.plain.no_such_counter", "gatehouse.no_such.metric"] {
        let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            if missing.starts_with("gatehouse") {
                envoy.metric(missing)
            } else {
                envoy.counter(missing)
            }
        }));
        assert!(read.is_err(), "reading `{missing}` must fail the test");
    }
}

#[test]
fn a_broken_bootstrap_is_reported_with_the_log() {
    let cfg = EnvoyConfig::new().route_config(serde_json::json!({"virtual_hosts": "nope"}));
    let f = Envoy::try_start(&cfg)
        .err()
        .expect("Envoy must refuse this config");
    assert!(f.exited.is_some());
    assert!(!f.log.is_empty());
}
