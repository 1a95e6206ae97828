//! End-to-end tests of the https-redirect filter in a real Envoy 1.40.
//!
//! Every test asserts the exact status and the exact `Location` (or its
//! absence); plain HTTP is tested over HTTP/1.1 and h2c, HTTPS over
//! HTTP/1.1 + TLS on the harness's TLS listener.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use gatehouse_e2e::client::TlsClient;
use gatehouse_e2e::*;
use serde_json::{json, Value};

const FILTER: &str = "https-redirect";
const REDIRECTED: &str = "gatehouse.https_redirect.redirected";
const EXEMPTED: &str = "gatehouse.https_redirect.exempted";
const REJECTED: &str = "gatehouse.https_redirect.rejected";
const HSTS: &str = "strict-transport-security";

fn envoy_with(config: Value, echo: &Echo) -> Envoy {
    Envoy::start(
        &EnvoyConfig::new()
            .cluster("echo", echo.port)
            .filter(WasmFilter::new(FILTER, config)),
    )
}

fn envoy_with_tls(config: Value, echo: &Echo, pki: &TestPki) -> Envoy {
    Envoy::start(
        &EnvoyConfig::new()
            .cluster("echo", echo.port)
            .filter(WasmFilter::new(FILTER, config))
            .tls(pki.listener(false, false)),
    )
}

/// Asserts a redirect with exactly this status and Location, and no body.
#[track_caller]
fn assert_redirect(r: &Response, status: u16, location: &str) {
    assert_eq!(
        r.status,
        status,
        "headers {:?} body {}",
        r.headers,
        r.text()
    );
    assert_eq!(r.header_all("location"), vec![location], "{:?}", r.headers);
    assert!(r.body.is_empty(), "redirect body: {}", r.text());
    assert_eq!(r.header(HSTS), None, "no HSTS on plain HTTP");
}

/// Asserts the request reached the echo upstream unchanged (path) and the
/// answer carries no Location.
#[track_caller]
fn assert_passed(r: &Response, path: &str) {
    assert_eq!(r.status, 200, "headers {:?} body {}", r.headers, r.text());
    assert_eq!(r.header("location"), None);
    assert_eq!(r.echo().path, path);
}

/// Asserts the filter's own 400: JSON body with this error code, no Location.
#[track_caller]
fn assert_rejected(r: &Response, code: &str) {
    assert_eq!(r.status, 400, "headers {:?} body {}", r.headers, r.text());
    assert_eq!(r.header("location"), None);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v = r.json();
    assert_eq!(v["error"], code, "{}", r.text());
    assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()));
}

/// `METHOD PATH HTTP/1.1` with these raw header lines (Host included by the
/// caller, so tests can send no Host, two Hosts or any bytes).
fn raw_request(method: &str, path: &str, header_lines: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\n").into_bytes();
    for l in header_lines {
        out.extend_from_slice(l);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"connection: close\r\n\r\n");
    out
}

/// HEAD over HTTP/1.1: the response head as text (read by its framing:
/// an answer to HEAD ends with its head, whatever `transfer-encoding` says).
fn send_h1_head(port: u16, path: &str, host: &str) -> String {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    write!(
        s,
        "HEAD {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let buf = gatehouse_e2e::client::read_response(&mut s, true);
    String::from_utf8_lossy(&buf).to_string()
}

fn tls_client(pki: &TestPki) -> TlsClient {
    pki.client("localhost", None)
}

#[test]
fn iface_plain_http_is_redirected_keeping_host_path_and_query_over_h1_and_h2() {
    let echo = Echo::start("echo");
    let pki = TestPki::new(&scratch_dir("pki"));
    let envoy = envoy_with_tls(json!({}), &echo, &pki);

    // HTTP/1.1: host lower-cased, incoming port dropped, path and query verbatim.
    let r = envoy.send_h1(&Request::get("/a/b?x=1&y=%2F%20&z").host("Example.COM:8080"));
    assert_redirect(&r, 301, "https://example.com/a/b?x=1&y=%2F%20&z");
    // HTTP/2 (h2c).
    let r = envoy.send_h2(&Request::get("/h2/path?q=v").host("www.example.com"));
    assert_redirect(&r, 301, "https://www.example.com/h2/path?q=v");
    // IPv6 literal keeps its brackets, loses its port.
    let r = envoy.send_h1(&Request::get("/v6").host("[::1]:8080"));
    assert_redirect(&r, 301, "https://[::1]/v6");
    // A fully qualified name's trailing dot is dropped.
    let r = envoy.send_h1(&Request::get("/").host("example.com."));
    assert_redirect(&r, 301, "https://example.com/");
    // `//evil.com` stays a path on the request's own host.
    let r = envoy.send_h1(&Request::get("//evil.com/x").host("example.com"));
    assert_redirect(&r, 301, "https://example.com//evil.com/x");
    // Default config: every method gets 301.
    let r = envoy.send_h1(&Request::post("/form").host("example.com").body(b"a=1"));
    assert_redirect(&r, 301, "https://example.com/form");
    // Absolute-form request target: Envoy takes host and path from the URL.
    let r = envoy.send_raw(&raw_request(
        "GET",
        "http://other.example.com/abs?x=1",
        &[b"host: example.com"],
    ));
    assert_redirect(&r, 301, "https://other.example.com/abs?x=1");

    // The same request over TLS is not redirected and gets no HSTS (off by default).
    let r = envoy.send_h1_tls(
        &Request::get("/a/b?x=1").host("example.com"),
        &tls_client(&pki),
    );
    assert_passed(&r, "/a/b?x=1");
    assert_eq!(r.header(HSTS), None);

    assert_eq!(envoy.metric(REDIRECTED), 7);
    assert_eq!(envoy.metric(EXEMPTED), 0);
    assert_eq!(envoy.metric(REJECTED), 0);
}

/// Envoy 1.40 derives `request.scheme` / `:scheme` from a client-sent
/// `x-forwarded-proto` on plain HTTP/1.1, and an h2c client sends its own
/// `:scheme`; the filter reads the connection (`connection.tls_version`)
/// instead, so neither can talk it out of the redirect.
#[test]
fn client_claims_of_https_are_ignored_unless_configured() {
    let echo = Echo::start("echo");
    let envoy = envoy_with(json!({}), &echo);

    let r = envoy.send_h2(&Request::get("/s?x=1").host("example.com").scheme("https"));
    assert_redirect(&r, 301, "https://example.com/s?x=1");
    let r = envoy.send_h2(&Request::get("/s").host("example.com").scheme("http"));
    assert_redirect(&r, 301, "https://example.com/s");
    let r = envoy.send_h1(
        &Request::get("/xfp")
            .host("example.com")
            .header("x-forwarded-proto", "https"),
    );
    assert_redirect(&r, 301, "https://example.com/xfp");
    let r = envoy.send_h2(
        &Request::get("/xfp2")
            .host("example.com")
            .header("x-forwarded-proto", "https"),
    );
    assert_redirect(&r, 301, "https://example.com/xfp2");
    assert_eq!(envoy.metric(REDIRECTED), 4);
}

#[test]
fn status_is_configurable_and_non_get_can_keep_the_method() {
    let echo = Echo::start("echo");
    // 302 for GET/HEAD, 308 for everything else.
    let envoy = envoy_with(json!({"status": 302, "non_get_status": 308}), &echo);
    let r = envoy.send_h1(&Request::get("/g?x=1").host("a.example.com"));
    assert_redirect(&r, 302, "https://a.example.com/g?x=1");
    let head = send_h1_head(envoy.http_port, "/h", "a.example.com");
    assert!(head.starts_with("HTTP/1.1 302 Found\r\n"), "{head}");
    assert!(
        head.contains("\r\nlocation: https://a.example.com/h\r\n"),
        "{head}"
    );
    let r = envoy.send_h2(&Request::new("HEAD", "/h2").host("a.example.com"));
    assert_redirect(&r, 302, "https://a.example.com/h2");
    let r = envoy.send_h1(&Request::post("/p").host("a.example.com").body(b"x=1"));
    assert_redirect(&r, 308, "https://a.example.com/p");
    let r = envoy.send_h2(
        &Request::new("PUT", "/put")
            .host("a.example.com")
            .body(b"{}"),
    );
    assert_redirect(&r, 308, "https://a.example.com/put");
    let r = envoy.send_h2(&Request::new("DELETE", "/d").host("a.example.com"));
    assert_redirect(&r, 308, "https://a.example.com/d");
    let r = envoy.send_h2(&Request::get("/g2").host("a.example.com"));
    assert_redirect(&r, 302, "https://a.example.com/g2");
    drop(envoy);

    // 303 for GET, 307 for POST.
    let envoy = envoy_with(json!({"status": 303, "non_get_status": 307}), &echo);
    let r = envoy.send_h1(&Request::get("/g").host("a.example.com"));
    assert_redirect(&r, 303, "https://a.example.com/g");
    let r = envoy.send_h1(&Request::post("/p").host("a.example.com").body(b"x"));
    assert_redirect(&r, 307, "https://a.example.com/p");
    drop(envoy);

    // 307 and 308 as the only status (no non_get_status: every method alike).
    for status in [307, 308] {
        let envoy = envoy_with(json!({ "status": status }), &echo);
        let r = envoy.send_h1(&Request::get("/g").host("a.example.com"));
        assert_redirect(&r, status, "https://a.example.com/g");
        let r = envoy.send_h2(&Request::post("/p").host("a.example.com").body(b"x"));
        assert_redirect(&r, status, "https://a.example.com/p");
        assert_eq!(envoy.metric(REDIRECTED), 2);
    }
}

#[test]
fn https_port_is_mapped() {
    let echo = Echo::start("echo");
    let envoy = envoy_with(json!({"https_port": 8443}), &echo);
    let r = envoy.send_h1(&Request::get("/p?q=1").host("a.example.com:8080"));
    assert_redirect(&r, 301, "https://a.example.com:8443/p?q=1");
    let r = envoy.send_h2(&Request::get("/p").host("a.example.com"));
    assert_redirect(&r, 301, "https://a.example.com:8443/p");
    let r = envoy.send_h1(&Request::get("/v6").host("[2001:DB8::1]:80"));
    assert_redirect(&r, 301, "https://[2001:db8::1]:8443/v6");
    drop(envoy);

    // 443 is the default port and is omitted.
    let envoy = envoy_with(json!({"https_port": 443}), &echo);
    let r = envoy.send_h1(&Request::get("/p").host("a.example.com:80"));
    assert_redirect(&r, 301, "https://a.example.com/p");
}

/// Behind a TLS-terminating load balancer the gateway sees plain HTTP plus
/// `x-forwarded-proto`. Trusted, `https` there means no redirect (no loop),
/// and HSTS is added because the client is on HTTPS.
#[test]
fn trusted_x_forwarded_proto_prevents_the_redirect_loop() {
    let echo = Echo::start("echo");
    let pki = TestPki::new(&scratch_dir("pki"));
    let envoy = envoy_with_tls(
        json!({"trust_x_forwarded_proto": true, "hsts": {"max_age": 600}}),
        &echo,
        &pki,
    );
    let get = |xfp: &[&str]| {
        let mut req = Request::get("/app?x=1").host("example.com");
        for v in xfp {
            req = req.header("x-forwarded-proto", v);
        }
        req
    };

    // The load balancer's first hop: the client used plain HTTP.
    let r = envoy.send_h1(&get(&["http"]));
    assert_redirect(&r, 301, "https://example.com/app?x=1");
    // The client follows the redirect; the LB forwards it over plain HTTP with `https`.
    let r = envoy.send_h1(&get(&["https"]));
    assert_passed(&r, "/app?x=1");
    assert_eq!(r.header(HSTS), Some("max-age=600"));
    let r = envoy.send_h2(&get(&["HTTPS"]));
    assert_passed(&r, "/app?x=1");
    assert_eq!(r.header(HSTS), Some("max-age=600"));

    // The first (leftmost) value wins, in a list and across repeated headers.
    let r = envoy.send_h1(&get(&["https, http"]));
    assert_passed(&r, "/app?x=1");
    let r = envoy.send_h1(&get(&["https", "http"]));
    assert_passed(&r, "/app?x=1");
    let r = envoy.send_h1(&get(&["http, https"]));
    assert_redirect(&r, 301, "https://example.com/app?x=1");
    let r = envoy.send_h1(&get(&["http", "https"]));
    assert_redirect(&r, 301, "https://example.com/app?x=1");

    // Absent or unusable values: the connection decides (plain => redirect).
    let r = envoy.send_h1(&get(&[]));
    assert_redirect(&r, 301, "https://example.com/app?x=1");
    let r = envoy.send_h1(&get(&["wss"]));
    assert_redirect(&r, 301, "https://example.com/app?x=1");
    let r = envoy.send_h1(&get(&[""]));
    assert_redirect(&r, 301, "https://example.com/app?x=1");
    let r = envoy.send_h1(
        &Request::get("/app")
            .host("example.com")
            .header_bytes("x-forwarded-proto", b"https\xff"),
    );
    assert_redirect(&r, 301, "https://example.com/app");

    // Over TLS with no header: HTTPS. A trusted `http` on a TLS hop means
    // the client itself used plain HTTP: redirect.
    let tls = tls_client(&pki);
    let r = envoy.send_h1_tls(&get(&[]), &tls);
    assert_passed(&r, "/app?x=1");
    assert_eq!(r.header(HSTS), Some("max-age=600"));
    let r = envoy.send_h1_tls(&get(&["http"]), &tls);
    assert_redirect(&r, 301, "https://example.com/app?x=1");

    assert_eq!(envoy.metric(REDIRECTED), 8);
    assert_eq!(envoy.metric(EXEMPTED), 0);
}

/// With `use_remote_address: true` (an edge Envoy, as Istio gateways run)
/// Envoy itself overwrites a client's `x-forwarded-proto` before any filter
/// runs, so even a trusting config cannot be fooled from outside.
#[test]
fn edge_envoy_overwrites_a_spoofed_x_forwarded_proto() {
    let echo = Echo::start("echo");
    let envoy = Envoy::start(
        &EnvoyConfig::new()
            .cluster("echo", echo.port)
            .hcm(json!({"use_remote_address": true}))
            .filter(WasmFilter::new(
                FILTER,
                json!({"trust_x_forwarded_proto": true}),
            )),
    );
    let r = envoy.send_h1(
        &Request::get("/spoof")
            .host("example.com")
            .header("x-forwarded-proto", "https"),
    );
    assert_redirect(&r, 301, "https://example.com/spoof");
}

#[test]
fn exemptions_by_path_prefix_exact_path_and_host() {
    let echo = Echo::start("echo");
    let envoy = envoy_with(
        json!({
            "exempt_paths": ["/healthz"],
            "exempt_path_prefixes": ["/.well-known/acme-challenge/", "/public/"],
            "hosts": ["example.com", "*.example.org"],
        }),
        &echo,
    );
    let acme = "/.well-known/acme-challenge/Zk3fq_token-1";
    let r = envoy.send_h1(&Request::get(acme).host("example.com"));
    assert_passed(&r, acme);
    let r = envoy.send_h2(&Request::get(acme).host("a.example.org"));
    assert_passed(&r, acme);
    let r = envoy.send_h1(&Request::get("/public/css/site.css?v=2").host("example.com"));
    assert_passed(&r, "/public/css/site.css?v=2");
    // Exact path, query ignored.
    let r = envoy.send_h1(&Request::get("/healthz").host("example.com"));
    assert_passed(&r, "/healthz");
    let r = envoy.send_h1(&Request::get("/healthz?probe=kubelet").host("example.com"));
    assert_passed(&r, "/healthz?probe=kubelet");
    // Exempt paths are matched exactly / by prefix, case-sensitively.
    let r = envoy.send_h1(&Request::get("/healthz/deep").host("example.com"));
    assert_redirect(&r, 301, "https://example.com/healthz/deep");
    let r = envoy.send_h1(&Request::get("/HEALTHZ").host("example.com"));
    assert_redirect(&r, 301, "https://example.com/HEALTHZ");
    let r = envoy.send_h1(&Request::get("/.well-known/acme-challenge").host("example.com"));
    assert_redirect(&r, 301, "https://example.com/.well-known/acme-challenge");
    // Paths that a normaliser upstream would turn into something else never
    // ride an exemption.
    for trick in [
        "/.well-known/acme-challenge/../../admin",
        "/.well-known/acme-challenge/%2e%2e/admin",
        "/public/..;/admin",
        "/public/%2F..%2Fadmin",
    ] {
        let r = envoy.send_h1(&Request::get(trick).host("example.com"));
        assert_redirect(&r, 301, &format!("https://example.com{trick}"));
    }

    // Host enablement: exact and `*.` wildcard; other hosts pass untouched.
    let r = envoy.send_h1(&Request::get("/x").host("EXAMPLE.com:80"));
    assert_redirect(&r, 301, "https://example.com/x");
    let r = envoy.send_h2(&Request::get("/x").host("deep.sub.example.org"));
    assert_redirect(&r, 301, "https://deep.sub.example.org/x");
    let r = envoy.send_h1(&Request::get("/x").host("example.org"));
    assert_passed(&r, "/x");
    let r = envoy.send_h1(&Request::get("/x").host("www.example.com"));
    assert_passed(&r, "/x");
    let r = envoy.send_h2(&Request::get("/x").host("other.net"));
    assert_passed(&r, "/x");

    assert_eq!(envoy.metric(EXEMPTED), 8);
    assert_eq!(envoy.metric(REDIRECTED), 9);
    assert_eq!(envoy.metric(REJECTED), 0);
    drop(envoy);

    // An empty prefix list turns the ACME default off.
    let envoy = envoy_with(json!({"exempt_path_prefixes": []}), &echo);
    let r = envoy.send_h1(&Request::get(acme).host("example.com"));
    assert_redirect(&r, 301, &format!("https://example.com{acme}"));
}

/// Hosts that cannot be put in a Location get the filter's 400, never a
/// redirect. (Hosts Envoy's own codec already refuses, like `a b.com`, get
/// Envoy's 400 before the filter runs: also never a redirect.)
#[test]
fn invalid_hosts_get_400_never_an_open_redirect() {
    let echo = Echo::start("echo");
    let pki = TestPki::new(&scratch_dir("pki"));
    let envoy = envoy_with_tls(json!({}), &echo, &pki);
    let long = "a".repeat(300);
    let filter_rejects: Vec<&[u8]> = vec![
        b"host: user@evil.com",
        b"host: evil.com@example.com",
        b"host: example.com:99999",
        b"host: example.com:0",
        b"host: example.com:",
        b"host: example.com:8x",
        b"host: [::1",
        b"host: a..com",
        b"host: ",
        // Two Host headers reach the filter joined as `a.com,b.com`.
        b"host: a.com\r\nhost: b.com",
    ];
    for h in &filter_rejects {
        let r = envoy.send_raw(&raw_request("GET", "/p", &[h]));
        assert_rejected(&r, "invalid_host");
    }
    let long_host = format!("host: {long}");
    let r = envoy.send_raw(&raw_request("GET", "/p", &[long_host.as_bytes()]));
    assert_rejected(&r, "invalid_host");
    // The request id is included; hostile input is not echoed.
    let r = envoy.send_raw(&raw_request(
        "GET",
        "/p",
        &[b"host: user@evil.com", b"x-request-id: abc-123"],
    ));
    assert_rejected(&r, "invalid_host");
    assert_eq!(
        r.text(),
        r#"{"error":"invalid_host","message":"plain-HTTP request with a missing or invalid Host; cannot redirect to HTTPS","request_id":"abc-123"}"#
    );
    // A request target that is not origin-form cannot be redirected either
    // (CONNECT has no `:path`). `OPTIONS *` never reaches the filter: Envoy
    // answers it (404) itself.
    let r = envoy.send_raw(&raw_request(
        "CONNECT",
        "example.com:443",
        &[b"host: example.com"],
    ));
    assert_rejected(&r, "invalid_path");
    let r = envoy.send_raw(&raw_request("OPTIONS", "*", &[b"host: example.com"]));
    assert_eq!(r.status, 404);
    assert_eq!(r.header("location"), None);
    let rejected = u64::try_from(filter_rejects.len()).unwrap() + 3;
    assert_eq!(envoy.metric(REJECTED), rejected);

    // Envoy's codec refuses these itself (400, no body from us, no redirect).
    for h in [
        &b"host: a b.com"[..],
        b"host: example.com/evil",
        b"host: example.com\\evil",
        b"host: evil.com#example.com",
        b"host: evil.com?x",
        "host: \u{e9}vil.com".as_bytes(),
        b"host: \xffexample.com",
    ] {
        let r = envoy.send_raw(&raw_request("GET", "/p", &[h]));
        assert_eq!(
            r.status,
            400,
            "{:?}: {}",
            String::from_utf8_lossy(h),
            r.text()
        );
        assert_eq!(r.header("location"), None);
    }
    assert_eq!(envoy.metric(REJECTED), rejected);
    assert_eq!(envoy.metric(REDIRECTED), 0);

    // A weird host over HTTPS is not the filter's business: it passes.
    let r = envoy.send_h1_tls(
        &Request::get("/p").host("example.com:99999"),
        &tls_client(&pki),
    );
    assert_eq!(r.status, 200);
}

/// A label that starts or ends with `-` is not a host name (RFC 1123): no
/// redirect to it, 400 like the other invalid hosts, over HTTP/1.1 and h2c.
#[test]
fn host_labels_with_a_leading_or_trailing_dash_get_400() {
    let echo = Echo::start("echo");
    let envoy = envoy_with(json!({}), &echo);
    let bad = ["-x.com", "x-.com", "a.-b.com", "a.b-.com:8080", "-"];
    for host in bad {
        let r = envoy.send_raw(&raw_request(
            "GET",
            "/p",
            &[format!("host: {host}").as_bytes()],
        ));
        assert_rejected(&r, "invalid_host");
        let r = envoy.send_h2(&Request::get("/p").host(host));
        assert_rejected(&r, "invalid_host");
    }
    // Dashes inside a label are fine.
    let r = envoy.send_h1(&Request::get("/p").host("a-b.x--y.com"));
    assert_redirect(&r, 301, "https://a-b.x--y.com/p");
    assert_eq!(envoy.metric(REJECTED), 2 * bad.len() as u64);
    assert_eq!(envoy.metric(REDIRECTED), 1);
}

#[test]
fn host_allowlist_refuses_redirects_to_other_hosts() {
    let echo = Echo::start("echo");
    let envoy = envoy_with(
        json!({"allowed_hosts": ["example.com", "*.example.com"]}),
        &echo,
    );
    let r = envoy.send_h1(&Request::get("/ok").host("example.com"));
    assert_redirect(&r, 301, "https://example.com/ok");
    let r = envoy.send_h2(&Request::get("/ok").host("api.example.com:8080"));
    assert_redirect(&r, 301, "https://api.example.com/ok");
    let r = envoy.send_h1(&Request::get("/x").host("evil.com"));
    assert_rejected(&r, "host_not_allowed");
    let r = envoy.send_h2(&Request::get("/x").host("example.com.evil.com"));
    assert_rejected(&r, "host_not_allowed");
    // An absolute-form target cannot smuggle another host past the list.
    let r = envoy.send_raw(&raw_request(
        "GET",
        "http://evil.com/x",
        &[b"host: example.com"],
    ));
    assert_rejected(&r, "host_not_allowed");
    assert_eq!(envoy.metric(REDIRECTED), 2);
    assert_eq!(envoy.metric(REJECTED), 3);
}

#[test]
fn iface_hsts_on_https_responses_only() {
    let echo = Echo::start("echo");
    let pki = TestPki::new(&scratch_dir("pki"));
    let value = "max-age=63072000; includeSubDomains; preload";
    let envoy = Envoy::start(
        &EnvoyConfig::new()
            .cluster("echo", echo.port)
            .tls(pki.listener(false, false))
            .routes(json!([
                {"match": {"prefix": "/teapot"}, "direct_response": {"status": 418}},
                {"match": {"prefix": "/upstream-hsts"}, "route": {"cluster": "echo"},
                 "response_headers_to_add": [{"header": {"key": HSTS, "value": "max-age=5"}}]},
                {"match": {"prefix": "/"}, "route": {"cluster": "echo"}},
            ]))
            .filter(WasmFilter::new(
                FILTER,
                json!({
                    "hosts": ["localhost", "*.example.com"],
                    "hsts": {"max_age": 63072000, "include_subdomains": true, "preload": true},
                }),
            )),
    );
    let tls = tls_client(&pki);
    let r = envoy.send_h1_tls(&Request::get("/page").host("localhost"), &tls);
    assert_passed(&r, "/page");
    assert_eq!(r.header_all(HSTS), vec![value]);
    let r = envoy.send_h1_tls(&Request::get("/page").host("www.example.com"), &tls);
    assert_passed(&r, "/page");
    assert_eq!(r.header_all(HSTS), vec![value]);
    // The configured value replaces one set upstream.
    let r = envoy.send_h1_tls(&Request::get("/upstream-hsts").host("localhost"), &tls);
    assert_passed(&r, "/upstream-hsts");
    assert_eq!(r.header_all(HSTS), vec![value]);
    // Local replies of later filters / the router carry it too.
    let r = envoy.send_h1_tls(&Request::get("/teapot").host("localhost"), &tls);
    assert_eq!(r.status, 418);
    assert_eq!(r.header_all(HSTS), vec![value]);
    // Hosts the filter is not enabled for get none.
    let r = envoy.send_h1_tls(&Request::get("/page").host("other.test"), &tls);
    assert_passed(&r, "/page");
    assert_eq!(r.header(HSTS), None);
    // Plain HTTP: the redirect carries none, nor does an exempt answer.
    let r = envoy.send_h1(&Request::get("/page").host("localhost"));
    assert_redirect(&r, 301, "https://localhost/page");
    let r = envoy.send_h1(&Request::get("/.well-known/acme-challenge/t").host("localhost"));
    assert_passed(&r, "/.well-known/acme-challenge/t");
    assert_eq!(r.header(HSTS), None);
}

/// Bad configuration: Envoy refuses to start, and the log names the field.
#[test]
fn iface_bad_config_refuses_to_start_and_the_log_says_why() {
    // One refusal end to end; every other bad configuration is a unit test
    // of the parser (filters/https-redirect/src/config.rs).
    let cases: Vec<(WasmFilter, &str)> = vec![(
        WasmFilter::new(
            FILTER,
            json!({"hsts": {"max_age": 86400, "include_subdomains": true, "preload": true}}),
        ),
        "invalid configuration: field `hsts.preload`: preload requires max_age >= 31536000",
    )];
    for (filter, expected) in cases {
        let cfg = EnvoyConfig::new()
            .cluster("echo", 9)
            .filter(filter)
            .concurrency(1);
        let failure = Envoy::try_start(&cfg)
            .err()
            .unwrap_or_else(|| panic!("Envoy must refuse the config ({expected})"));
        assert!(failure.exited.is_some(), "Envoy must exit: {}", failure.log);
        let lines: Vec<&str> = failure
            .log
            .lines()
            .filter(|l| l.contains("gatehouse https-redirect: invalid configuration"))
            .collect();
        assert_eq!(lines.len(), 1, "one log line expected:\n{}", failure.log);
        assert!(
            lines[0].contains(expected),
            "expected `{expected}` in: {}",
            lines[0]
        );
    }
}

/// Hostile requests: huge and repeated headers, non-ASCII bytes, odd
/// request targets. Never a 5xx; the VM keeps serving afterwards.
#[test]
fn hostile_requests_never_get_a_5xx() {
    let echo = Echo::start("echo");
    let pki = TestPki::new(&scratch_dir("pki"));
    let envoy = envoy_with_tls(
        json!({"trust_x_forwarded_proto": true, "hsts": {"max_age": 60}, "allowed_hosts": ["*.example.com", "example.com"]}),
        &echo,
        &pki,
    );
    // A 40 KB header value (under Envoy's 60 KB limit) still redirects.
    let big = "b".repeat(40 * 1024);
    let r = envoy.send_h1(
        &Request::get("/big")
            .host("example.com")
            .header("x-big", &big),
    );
    assert_redirect(&r, 301, "https://example.com/big");
    let r = envoy.send_h2(
        &Request::get("/big")
            .host("example.com")
            .header("x-big", &big),
    );
    assert_redirect(&r, 301, "https://example.com/big");
    // Over the limit: Envoy answers 431 itself.
    let huge = "h".repeat(70 * 1024);
    let r = envoy.send_h1(
        &Request::get("/huge")
            .host("example.com")
            .header("x-huge", &huge),
    );
    assert_eq!(r.status, 431);
    // A long path and query are copied verbatim.
    let long_path = format!("/long/{}?q={}", "p".repeat(4000), "v".repeat(4000));
    let r = envoy.send_h1(&Request::get(&long_path).host("example.com"));
    assert_redirect(&r, 301, &format!("https://example.com{long_path}"));
    // 200 repeated x-forwarded-proto headers (Envoy joins them with `,`
    // into one value on HTTP/1.1): the first wins.
    let mut req = Request::get("/rep").host("example.com");
    req = req.header("x-forwarded-proto", "http");
    for _ in 0..199 {
        req = req.header("x-forwarded-proto", "https");
    }
    let r = envoy.send_h1(&req);
    assert_redirect(&r, 301, "https://example.com/rep");
    // (Envoy's default limit is 100 request headers; stay under it on h2.)
    let mut req = Request::get("/rep").host("example.com");
    for _ in 0..45 {
        req = req
            .header("x-forwarded-proto", "https")
            .header("x-other", "1");
    }
    let r = envoy.send_h2(&req);
    assert_passed(&r, "/rep");
    assert_eq!(r.header(HSTS), Some("max-age=60"));
    // Non-ASCII bytes in headers (the filter reads them as bytes).
    let r = envoy.send_h1(
        &Request::get("/bytes")
            .host("example.com")
            .header_bytes("x-forwarded-proto", b"\xc3\xa9https")
            .header_bytes("x-request-id", b"\xff\xfe\"id")
            .header_bytes("x-junk", b"\x80\x81\x82"),
    );
    assert_redirect(&r, 301, "https://example.com/bytes");
    let r = envoy.send_raw(&raw_request(
        "GET",
        "/bytes",
        &[b"host: user@example.com", b"x-request-id: \xff\xfe"],
    ));
    assert_rejected(&r, "invalid_host");
    assert_eq!(
        r.json().get("request_id"),
        None,
        "unsafe request id is not echoed"
    );
    let r = envoy.send_h1_tls(
        &Request::get("/tls-bytes")
            .host("example.com")
            .header_bytes("x-forwarded-proto", b"\xff")
            .header_bytes("x-junk", b"\xe2\x82\xac"),
        &tls_client(&pki),
    );
    assert_passed(&r, "/tls-bytes");
    // Odd request targets.
    for (method, target) in [
        ("OPTIONS", "*"),
        ("GET", "/a#frag"),
        ("GET", "/caf\u{e9}"),
        ("CONNECT", "example.com:443"),
        ("GET", "http://user@evil.com/x"),
    ] {
        let r = envoy.send_raw(&raw_request(method, target, &[b"host: example.com"]));
        assert!(
            r.status < 500,
            "{method} {target}: {} {}",
            r.status,
            r.text()
        );
        assert_eq!(r.header("location"), None, "{method} {target}");
    }
    // Envoy refuses a request without Host itself (HTTP/1.0 without Host: 426).
    let r = envoy.send_raw(b"GET /p HTTP/1.0\r\n\r\n");
    assert!(r.status < 500, "{}", r.status);
    // Still healthy.
    let r = envoy.send_h1(&Request::get("/after").host("example.com"));
    assert_redirect(&r, 301, "https://example.com/after");
    let stats = envoy.stats();
    let five_xx = stats
        .iter()
        .filter(|(k, _)| {
            k.starts_with("http.plain.downstream_rq_5xx")
                || k.starts_with("http.tls.downstream_rq_5xx")
        })
        .map(|(_, v)| *v)
        .sum::<u64>();
    assert_eq!(five_xx, 0, "{stats:?}");
}
