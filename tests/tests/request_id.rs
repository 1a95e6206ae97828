//! request-id in real Envoy 1.40: ids, echo (also on later filters' local
//! replies), trace context in every format, counters, bad config, hostile
//! input.
use gatehouse_e2e::*;
use serde_json::{json, Value};

const T32: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const S16: &str = "00f067aa0ba902b7";

/// Envoy with request-id; the connection manager's own id generation is off
/// so the filter's behaviour is visible (see the README on the interplay).
fn envoy_with(config: Value) -> (Envoy, Echo) {
    let echo = Echo::start("echo");
    let envoy = Envoy::start(
        &EnvoyConfig::new()
            .cluster("echo", echo.port)
            .hcm(json!({"generate_request_id": false}))
            .filter(WasmFilter::new("request-id", config)),
    );
    (envoy, echo)
}

fn is_uuid(s: &str, version: char) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && [8, 4, 4, 4, 12].iter().zip(&parts).all(|(n, p)| {
            p.len() == *n
                && p.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
        && s.as_bytes()[14] as char == version
}

#[test]
fn iface_generates_a_uuid4_when_missing_and_echoes_it_over_h1_and_h2() {
    let (envoy, _echo) = envoy_with(json!({}));
    for r in [
        envoy.send_h1(&Request::get("/a")),
        envoy.send_h2(&Request::get("/a")),
    ] {
        assert_eq!(r.status, 200);
        let seen = r.echo();
        let id = seen
            .header("x-request-id")
            .expect("upstream got an id")
            .to_string();
        assert!(is_uuid(&id, '4'), "{id}");
        assert_eq!(r.header("x-request-id"), Some(id.as_str()));
        assert_eq!(seen.header_all("x-request-id").len(), 1);
    }
    assert_eq!(envoy.metric("gatehouse.request_id.ids_generated"), 2);
}

#[test]
fn keeps_valid_ids_and_replaces_unsafe_ones() {
    let (envoy, _echo) = envoy_with(json!({"max_length": 40}));
    let r = envoy.send_h1(&Request::get("/").header("x-request-id", "client-id.42:abc"));
    assert_eq!(r.echo().header("x-request-id"), Some("client-id.42:abc"));
    assert_eq!(r.header("x-request-id"), Some("client-id.42:abc"));

    for bad in ["has space", "quote\"inject", "semi;colon", &"a".repeat(41)] {
        let r = envoy.send_h1(&Request::get("/").header("x-request-id", bad));
        assert_eq!(r.status, 200);
        let got = r.echo().header("x-request-id").unwrap().to_string();
        assert!(is_uuid(&got, '4'), "{bad:?} -> {got}");
        assert_eq!(r.header("x-request-id"), Some(got.as_str()));
    }
    // Non-ASCII bytes (obs-text) in the header value.
    let r = envoy.send_h1(&Request::get("/").header_bytes("x-request-id", b"id-\xc3\xa9\xff"));
    assert_eq!(r.status, 200);
    assert!(is_uuid(r.echo().header("x-request-id").unwrap(), '4'));
    // A repeated header: Envoy joins the values with a comma, which is not
    // in the safe set, so the id is replaced.
    let r = envoy.send_h1(
        &Request::get("/")
            .header("x-request-id", "first")
            .header("x-request-id", "second"),
    );
    let got = r.echo().header("x-request-id").unwrap().to_string();
    assert!(is_uuid(&got, '4'), "{got}");
    assert_eq!(envoy.metric("gatehouse.request_id.ids_preserved"), 1);
    assert_eq!(envoy.metric("gatehouse.request_id.ids_replaced"), 6);
}

#[test]
fn replace_policy_custom_header_and_uuid7() {
    let (envoy, _echo) = envoy_with(json!({
        "header": "x-correlation-id",
        "incoming": "replace",
        "generator": "uuid7",
        "response_header": "x-trace-ref",
    }));
    let r = envoy.send_h2(&Request::get("/").header("x-correlation-id", "trusted-looking"));
    let id = r.echo().header("x-correlation-id").unwrap().to_string();
    assert!(is_uuid(&id, '7'), "{id}");
    assert_eq!(r.header("x-trace-ref"), Some(id.as_str()));
    assert_eq!(r.header("x-correlation-id"), None);
    // UUIDv7 starts with the current Unix time in milliseconds.
    let ms = u64::from_str_radix(&id.replace('-', "")[..12], 16).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(now.abs_diff(ms) < 60_000, "{ms} vs {now}");
}

#[test]
fn echo_can_be_turned_off() {
    let (envoy, _echo) = envoy_with(json!({"echo_in_response": false}));
    let r = envoy.send_h1(&Request::get("/"));
    assert!(r.echo().header("x-request-id").is_some());
    assert_eq!(r.header("x-request-id"), None);
}

#[test]
fn iface_id_is_echoed_on_local_replies_of_later_filters() {
    let echo = Echo::start("echo");
    let envoy = Envoy::start(
        &EnvoyConfig::new()
            .cluster("echo", echo.port)
            .hcm(json!({"generate_request_id": false}))
            .filter(WasmFilter::new("request-id", json!({})))
            .raw_filter(json!({
                "name": "envoy.filters.http.fault",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault",
                    "abort": {"http_status": 429, "percentage": {"numerator": 100}},
                    "headers": [{"name": "x-abort", "string_match": {"exact": "yes"}}],
                }
            }))
            .routes(json!([
                {"match": {"prefix": "/maintenance"}, "direct_response": {"status": 503, "body": {"inline_string": "down"}}},
                {"match": {"prefix": "/"}, "route": {"cluster": "echo"}},
            ])),
    );
    // Local reply from a later HTTP filter (fault abort).
    let r = envoy.send_h1(
        &Request::get("/x")
            .header("x-abort", "yes")
            .header("x-request-id", "abc-1"),
    );
    assert_eq!(r.status, 429);
    assert_eq!(r.header("x-request-id"), Some("abc-1"));
    // Local reply from the router (route-level direct response).
    let r = envoy.send_h2(&Request::get("/maintenance"));
    assert_eq!(r.status, 503);
    assert!(is_uuid(r.header("x-request-id").unwrap(), '4'));
}

#[test]
fn works_beside_envoys_own_request_id_generation() {
    // Default connection manager: Envoy itself sets x-request-id before any
    // filter; the filter sees a valid id and keeps it.
    let echo = Echo::start("echo");
    let envoy = Envoy::start(
        &EnvoyConfig::new()
            .cluster("echo", echo.port)
            .filter(WasmFilter::new("request-id", json!({}))),
    );
    let r = envoy.send_h1(&Request::get("/"));
    let id = r.echo().header("x-request-id").unwrap().to_string();
    assert!(is_uuid(&id, '4'));
    assert_eq!(r.header("x-request-id"), Some(id.as_str()));
    assert_eq!(envoy.metric("gatehouse.request_id.ids_preserved"), 1);
}

fn emit_all() -> Value {
    json!({"tracing": {"emit": ["b3_multi", "b3_single", "w3c"]}})
}

/// Checks that every emitted format names the same trace, span and parent.
/// A new trace (no parent) has an id this filter drew at random, so its
/// `traceparent` carries the Level 2 random-trace-id flag (`02`); the
/// continued traces of these tests arrive without it.
fn assert_consistent(
    seen: &EchoSeen,
    trace: &str,
    parent: Option<&str>,
    sampled: Option<&str>,
) -> String {
    let span = seen.header("x-b3-spanid").expect("x-b3-spanid").to_string();
    assert_eq!(span.len(), 16);
    assert_eq!(seen.header("x-b3-traceid"), Some(trace));
    assert_eq!(seen.header("x-b3-parentspanid"), parent);
    assert_eq!(seen.header("x-b3-sampled"), sampled);
    let padded = format!("{trace:0>32}");
    let random = if parent.is_none() { 2 } else { 0 };
    let flags = format!("{:02x}", u8::from(sampled == Some("1")) | random);
    assert_eq!(
        seen.header("traceparent"),
        Some(format!("00-{padded}-{span}-{flags}").as_str())
    );
    let b3 = match (sampled, parent) {
        (Some(s), Some(p)) => format!("{trace}-{span}-{s}-{p}"),
        (Some(s), None) => format!("{trace}-{span}-{s}"),
        (None, _) => format!("{trace}-{span}"),
    };
    assert_eq!(seen.header("b3"), Some(b3.as_str()));
    span
}

#[test]
fn starts_a_new_128_bit_trace_when_none_is_valid() {
    let (envoy, _echo) = envoy_with(emit_all());
    let seen = envoy.send_h1(&Request::get("/")).echo();
    let trace = seen.header("x-b3-traceid").unwrap().to_string();
    assert_eq!(trace.len(), 32);
    assert_consistent(&seen, &trace, None, Some("1"));
    assert_eq!(envoy.metric("gatehouse.request_id.traces_started"), 1);
}

#[test]
fn iface_continues_w3c_traceparent_with_a_new_span() {
    let (envoy, _echo) = envoy_with(emit_all());
    let r = envoy.send_h2(
        &Request::get("/")
            .header("traceparent", &format!("00-{T32}-{S16}-01"))
            .header("tracestate", "vendor=opaque"),
    );
    let seen = r.echo();
    let span = assert_consistent(&seen, T32, Some(S16), Some("1"));
    assert_ne!(span, S16);
    assert_eq!(seen.header("tracestate"), Some("vendor=opaque"));
    assert_eq!(envoy.metric("gatehouse.request_id.traces_continued"), 1);
}

#[test]
fn continues_b3_multi_including_64_bit_ids_and_deny() {
    let (envoy, _echo) = envoy_with(emit_all());
    let r = envoy.send_h1(
        &Request::get("/")
            .header("x-b3-traceid", S16)
            .header("x-b3-spanid", "1234567890abcdef")
            .header("x-b3-sampled", "0"),
    );
    let seen = r.echo();
    assert_consistent(&seen, S16, Some("1234567890abcdef"), Some("0"));
}

#[test]
fn continues_b3_single_and_carries_debug_and_deferred() {
    let (envoy, _echo) = envoy_with(emit_all());
    let seen = envoy
        .send_h1(&Request::get("/").header("b3", &format!("{T32}-{S16}-d")))
        .echo();
    let span = seen.header("x-b3-spanid").unwrap().to_string();
    assert_eq!(seen.header("x-b3-flags"), Some("1"));
    assert_eq!(seen.header("x-b3-sampled"), None);
    assert_eq!(
        seen.header("b3"),
        Some(format!("{T32}-{span}-d-{S16}").as_str())
    );
    assert!(seen.header("traceparent").unwrap().ends_with("-01"));

    let seen = envoy
        .send_h1(&Request::get("/").header("b3", &format!("{T32}-{S16}")))
        .echo();
    assert_consistent(&seen, T32, Some(S16), None);
}

#[test]
fn sampling_rate_applies_to_new_traces_only() {
    let (envoy, _echo) = envoy_with(
        json!({"tracing": {"sampling_rate": 0.0, "emit": ["b3_multi", "b3_single", "w3c"]}}),
    );
    let seen = envoy.send_h1(&Request::get("/")).echo();
    let trace = seen.header("x-b3-traceid").unwrap().to_string();
    assert_consistent(&seen, &trace, None, Some("0"));
    // A continued trace keeps the caller's decision.
    let seen = envoy
        .send_h1(&Request::get("/").header("traceparent", &format!("00-{T32}-{S16}-01")))
        .echo();
    assert_consistent(&seen, T32, Some(S16), Some("1"));
    // `b3: 0` alone: a new trace that is not sampled.
    let seen = envoy.send_h1(&Request::get("/").header("b3", "0")).echo();
    let trace = seen.header("x-b3-traceid").unwrap().to_string();
    assert_consistent(&seen, &trace, None, Some("0"));
}

#[test]
fn emits_only_the_configured_formats_and_64_bit_ids() {
    let (envoy, _echo) = envoy_with(json!({"tracing": {"emit": ["w3c"], "trace_id_bits": 64}}));
    let seen = envoy
        .send_h1(
            &Request::get("/")
                .header("x-b3-traceid", "zz")
                .header("b3", "garbage"),
        )
        .echo();
    assert_eq!(seen.header("x-b3-traceid"), None);
    assert_eq!(seen.header("b3"), None);
    let tp = seen.header("traceparent").unwrap();
    assert!(tp.starts_with("00-0000000000000000"), "{tp}");
    assert_eq!(tp.len(), 55);
    assert_eq!(
        envoy.metric("gatehouse.request_id.trace_headers_malformed"),
        2
    );
}

#[test]
fn malformed_and_conflicting_trace_headers_are_dropped_and_replaced() {
    let (envoy, _echo) = envoy_with(emit_all());
    let cases: Vec<Vec<(&str, String)>> = vec![
        vec![("traceparent", format!("ff-{T32}-{S16}-01"))],
        vec![("traceparent", format!("00-{}-{S16}-01", "0".repeat(32)))],
        vec![("traceparent", format!("00-{T32}-{}-01", "0".repeat(16)))],
        vec![("traceparent", format!("00-{}-{S16}-01", T32.to_uppercase()))],
        vec![("x-b3-traceid", T32.to_string())],
        vec![
            ("x-b3-traceid", "".to_string()),
            ("x-b3-spanid", S16.to_string()),
        ],
        vec![("b3", format!("{T32}-{S16}-x"))],
    ];
    for case in &cases {
        let mut req = Request::get("/");
        for (k, v) in case {
            req = req.header(k, v);
        }
        let r = envoy.send_h1(&req);
        assert_eq!(r.status, 200, "{case:?}");
        let seen = r.echo();
        let trace = seen.header("x-b3-traceid").unwrap().to_string();
        assert_ne!(trace, T32, "{case:?}");
        assert_consistent(&seen, &trace, None, Some("1"));
    }
    assert_eq!(
        envoy.metric("gatehouse.request_id.trace_headers_malformed"),
        cases.len() as u64
    );
    // Conflict: traceparent wins over b3, and b3 is rewritten to match.
    let seen = envoy
        .send_h1(
            &Request::get("/")
                .header("traceparent", &format!("00-{T32}-{S16}-01"))
                .header("b3", &format!("{}-{S16}-1", "1".repeat(32))),
        )
        .echo();
    assert_consistent(&seen, T32, Some(S16), Some("1"));
    assert_eq!(
        envoy.metric("gatehouse.request_id.trace_headers_conflicting"),
        1
    );
}

#[test]
fn hostile_requests_never_get_a_5xx() {
    let (envoy, _echo) = envoy_with(emit_all());
    let big = "x".repeat(50_000);
    let reqs = [
        Request::get("/").header("x-request-id", &big),
        Request::get("/").header("traceparent", &big),
        Request::get("/").header("b3", &"-".repeat(20_000)),
        Request::get("/").header_bytes("traceparent", b"00-\xff\xfe\xfd"),
        Request::get("/").header_bytes("x-b3-traceid", "é".repeat(16).as_bytes()),
        Request::get("/")
            .header("x-b3-traceid", T32)
            .header("x-b3-traceid", S16)
            .header("x-b3-spanid", S16)
            .header("x-b3-spanid", "bad"),
    ];
    let mut many = Request::get("/");
    for i in 0..90 {
        many = many.header("x-b3-sampled", &i.to_string());
    }
    for req in reqs.iter().chain(std::iter::once(&many)) {
        let r = envoy.send_h1(req);
        assert!(
            r.status < 500,
            "{} for {:?}",
            r.status,
            &req.headers.first().map(|h| &h.0)
        );
        let r = envoy.send_h2(req);
        assert!(r.status < 500, "h2 {}", r.status);
    }
    // The VM is still healthy afterwards.
    assert_eq!(envoy.send_h1(&Request::get("/")).status, 200);
}

#[test]
fn iface_bad_config_is_refused_with_the_field_named() {
    let echo = Echo::start("echo");
    // One refusal end to end (Envoy refuses to start, one log line names
    // the field); every other bad configuration is a unit test of the parser
    // (filters/request-id/src/config.rs, filters/core/src/config.rs).
    let cases: Vec<(WasmFilter, &str)> = vec![(
        WasmFilter::new("request-id", json!({"tracing": {"sampling_rate": 2}})),
        "invalid configuration: field `tracing.sampling_rate`: must be between 0.0 and 1.0",
    )];
    for (filter, needle) in cases {
        let cfg = EnvoyConfig::new().cluster("echo", echo.port).filter(filter);
        let failure = Envoy::try_start(&cfg)
            .err()
            .expect("Envoy must refuse the config");
        assert!(
            failure.log.contains(needle),
            "expected {needle:?} in:\n{}",
            failure.log
        );
        assert!(failure.log.contains("gatehouse request-id"));
        assert_eq!(
            failure.log.matches("invalid configuration").count(),
            // One line per worker VM and the main thread at most; never a
            // multi-line dump.
            failure
                .log
                .lines()
                .filter(|l| l.contains("invalid configuration"))
                .count()
        );
    }
}

// --- W3C Trace Context test suite cases (w3c/trace-context `test/test.py`) ---

/// `test_traceparent_duplicated`: two `traceparent` lines are not one valid
/// header; a new trace starts (neither id is continued).
#[test]
fn two_traceparent_lines_start_a_new_trace() {
    let (envoy, _echo) = envoy_with(json!({"tracing": {"emit": ["w3c"]}}));
    let first = "12345678901234567890123456789011";
    let second = "12345678901234567890123456789012";
    let r = envoy.send_raw(
        format!(
            "GET / HTTP/1.1\r\nhost: x\r\ntraceparent: 00-{first}-1234567890123456-01\r\n\
             traceparent: 00-{second}-1234567890123456-01\r\ntracestate: foo=1\r\n\
             connection: close\r\n\r\n"
        )
        .as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = r.echo();
    let tp = seen.header_all("traceparent");
    assert_eq!(tp.len(), 1, "{tp:?}");
    assert!(!tp[0].contains(first) && !tp[0].contains(second), "{tp:?}");
    assert_eq!(seen.header("tracestate"), None);
    assert_eq!(envoy.metric("gatehouse.request_id.traces_started"), 1);
    assert_eq!(envoy.metric("gatehouse.request_id.traces_continued"), 0);
    assert_eq!(
        envoy.metric("gatehouse.request_id.trace_headers_malformed"),
        1
    );
}

/// Trace Context Level 2: the random-trace-id flag (`02`) stays with the
/// trace id on every `traceparent`; new (random) ids set it; undefined
/// flags are not carried.
#[test]
fn random_trace_id_flag_is_kept_and_set_on_new_traces() {
    let (envoy, _echo) = envoy_with(emit_all());
    for h2 in [false, true] {
        for (incoming, want) in [("02", "02"), ("03", "03"), ("01", "01"), ("ff", "03")] {
            let req =
                Request::get("/").header("traceparent", &format!("00-{T32}-{S16}-{incoming}"));
            let seen = if h2 {
                envoy.send_h2(&req)
            } else {
                envoy.send_h1(&req)
            }
            .echo();
            let tp = seen.header("traceparent").unwrap();
            assert!(tp.starts_with(&format!("00-{T32}-")), "{tp}");
            assert!(tp.ends_with(&format!("-{want}")), "{incoming} -> {tp}");
            assert_eq!(seen.header("x-b3-traceid"), Some(T32));
        }
    }
    // A new trace: a random id, so the flag is set (sampled or not).
    let seen = envoy.send_h1(&Request::get("/")).echo();
    assert!(seen.header("traceparent").unwrap().ends_with("-03"));
    let seen = envoy.send_h1(&Request::get("/").header("b3", "0")).echo();
    assert!(seen.header("traceparent").unwrap().ends_with("-02"));
    // Continued from B3: nothing says the id is random.
    let seen = envoy
        .send_h1(&Request::get("/").header("b3", &format!("{T32}-{S16}-1")))
        .echo();
    assert!(seen.header("traceparent").unwrap().ends_with("-01"));
}

/// One request with raw header lines, over HTTP/1.1; returns what the
/// upstream saw of `tracestate` (all lines).
fn tracestate_seen(envoy: &Envoy, lines: &[&str]) -> Vec<String> {
    let mut raw = "GET / HTTP/1.1\r\nhost: x\r\n\
                   traceparent: 00-12345678901234567890123456789012-1234567890123456-00\r\n"
        .to_string();
    for l in lines {
        raw.push_str(&format!("tracestate: {l}\r\n"));
    }
    raw.push_str("connection: close\r\n\r\n");
    let r = envoy.send_raw(raw.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = r.echo();
    assert!(seen
        .header("traceparent")
        .unwrap()
        .starts_with("00-12345678901234567890123456789012-"));
    seen.header_all("tracestate")
        .into_iter()
        .map(str::to_string)
        .collect()
}

/// The suite's tracestate cases at strict level 2: a list that breaks the
/// grammar is dropped whole; valid lists stay untouched; several lines are
/// one list, in order.
#[test]
fn tracestate_is_checked_like_the_w3c_suite_strict_level() {
    let (envoy, _echo) = envoy_with(json!({"tracing": {"emit": ["w3c"]}}));
    let ts = |lines: &[&str]| tracestate_seen(&envoy, lines);
    // Valid: untouched, including every legal character and OWS.
    let value: String = (0x20u8..=0x7e)
        .filter(|b| *b != b',' && *b != b'=')
        .map(char::from)
        .collect();
    let key = "abcdefghijklmnopqrstuvwxyz0123456789_-*/";
    for v in [
        "foo=1,bar=2".to_string(),
        "foo=1 \t , \t bar=2, \t baz=3".to_string(),
        format!("{key}={value}"),
        format!("{key}@a-z0-9_-*/={value}"),
    ] {
        assert_eq!(ts(&[&v]), vec![v.clone()]);
    }
    // Large but valid: 32 members, far over 512 characters.
    let big: Vec<String> = (0..32)
        .map(|i| format!("k{i:02}={}", "v".repeat(200)))
        .collect();
    let big = big.join(",");
    assert_eq!(ts(&[&big]), vec![big.clone()]);
    // Several lines: one combined list, in order.
    assert_eq!(
        ts(&["foo=1,bar=2", "rojo=1,congo=2", "baz=3"]),
        vec!["foo=1,bar=2,rojo=1,congo=2,baz=3"]
    );
    let z256 = format!("{}=1", "z".repeat(256));
    assert_eq!(ts(&["foo=1", &z256]), vec![format!("foo=1,{z256}")]);
    // Invalid anywhere: dropped whole.
    let members: Vec<String> = (1..=33).map(|i| format!("bar{i:02}={i:02}")).collect();
    let z257 = format!("{}=1", "z".repeat(257));
    let tenant242 = format!("{}@v=1", "t".repeat(242));
    let system15 = format!("t@{}=1", "v".repeat(15));
    let (first10, last23) = (members[..10].join(","), members[10..].join(","));
    let invalid: Vec<Vec<&str>> = vec![
        vec!["foo=1,foo=1"],
        vec!["foo=1", "foo=2"],
        vec!["foo =1"],
        vec!["FOO=1"],
        vec!["foo.bar=1"],
        vec!["foo@=1,bar=2"],
        vec!["@foo=1,bar=2"],
        vec!["foo@@bar=1,bar=2"],
        vec!["foo@bar@baz=1,bar=2"],
        vec!["foo=bar=baz"],
        vec!["foo=,bar=3"],
        vec!["foo=1", &z257],
        vec!["foo=1", &tenant242],
        vec!["foo=1", &system15],
        vec![&first10, &last23],
    ];
    for lines in &invalid {
        assert_eq!(ts(lines), Vec::<String>::new(), "{lines:?}");
    }
    assert_eq!(
        envoy.metric("gatehouse.request_id.tracestate_dropped"),
        invalid.len() as u64
    );
    assert_eq!(
        envoy.metric("gatehouse.request_id.traces_continued"),
        (7 + invalid.len()) as u64
    );
}
