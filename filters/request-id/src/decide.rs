//! The whole request-side decision of the filter, as a pure function of the
//! configuration, the request headers, randomness and time.

use crate::config::{Config, Generator, IncomingPolicy, TraceFormat, TRACE_HEADERS};
use crate::id;
use crate::trace::{self, Incoming, Outgoing, Parsed, TraceId};
use crate::tracestate::{self, TraceState};
use gatehouse_core::{Clock, HeaderOp, HeaderSnapshot, RandomSource};

/// What happened to the request id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdOutcome {
    /// The request had none; a new one was made.
    Generated,
    /// A valid incoming id was kept.
    Preserved,
    /// The incoming id was invalid (or policy is `replace`); a new one was made.
    Replaced,
}

/// What happened to the trace context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceOutcome {
    Started,
    Continued,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The id the request carries upstream (and the response echoes).
    pub id: String,
    pub id_outcome: IdOutcome,
    /// `None` when tracing is disabled.
    pub trace: Option<TraceOutcome>,
    pub outgoing: Option<Outgoing>,
    /// Incoming trace formats that were present but invalid.
    pub malformed: u32,
    /// Valid incoming formats that disagreed with the one continued.
    pub conflicts: u32,
    /// A `tracestate` that came with the continued W3C trace broke the
    /// grammar and was removed.
    pub tracestate_dropped: bool,
    /// Edits to the request headers.
    pub request_ops: Vec<HeaderOp>,
}

/// The fixed order in which incoming formats are considered.
pub const READ_ORDER: [TraceFormat; 3] = [
    TraceFormat::W3c,
    TraceFormat::B3Single,
    TraceFormat::B3Multi,
];

pub fn decide(
    cfg: &Config,
    headers: &HeaderSnapshot,
    rng: &mut impl RandomSource,
    clock: &impl Clock,
) -> Decision {
    let mut ops = Vec::new();
    let (id, id_outcome) = decide_id(cfg, headers, rng, clock, &mut ops);
    let mut d = Decision {
        id,
        id_outcome,
        trace: None,
        outgoing: None,
        malformed: 0,
        conflicts: 0,
        tracestate_dropped: false,
        request_ops: ops,
    };
    if cfg.tracing.enabled {
        decide_trace(cfg, headers, rng, &mut d);
    }
    d
}

fn decide_id(
    cfg: &Config,
    headers: &HeaderSnapshot,
    rng: &mut impl RandomSource,
    clock: &impl Clock,
    ops: &mut Vec<HeaderOp>,
) -> (String, IdOutcome) {
    let mut values = headers.all(&cfg.header);
    let first = values.next();
    let repeated = values.next().is_some();
    if let Some(v) = first {
        if cfg.incoming == IncomingPolicy::Keep && id::is_safe_id(v, cfg.max_length) {
            // Safe ids are ASCII, hence valid UTF-8.
            let kept = String::from_utf8_lossy(v).into_owned();
            if repeated {
                ops.push(HeaderOp::set(&cfg.header, kept.clone()));
            }
            return (kept, IdOutcome::Preserved);
        }
    }
    let new_id = match cfg.generator {
        Generator::Uuid4 => id::uuid_v4(rng),
        Generator::Uuid7 => id::uuid_v7(clock.now_unix_millis(), rng),
    };
    ops.push(HeaderOp::set(&cfg.header, new_id.clone()));
    let outcome = if first.is_some() {
        IdOutcome::Replaced
    } else {
        IdOutcome::Generated
    };
    (new_id, outcome)
}

fn new_trace_id(bits: u32, rng: &mut impl RandomSource) -> TraceId {
    if bits == 64 {
        TraceId {
            hi: 0,
            lo: rng.next_nonzero_u64(),
            wide: false,
            random: true,
        }
    } else {
        TraceId {
            hi: rng.next_nonzero_u64(),
            lo: rng.next_u64(),
            wide: true,
            random: true,
        }
    }
}

fn decide_trace(cfg: &Config, h: &HeaderSnapshot, rng: &mut impl RandomSource, d: &mut Decision) {
    let t = &cfg.tracing;
    let mut context: Option<(TraceFormat, Incoming)> = None;
    let mut sampling_only: Option<Incoming> = None;
    let mut valid: Vec<Incoming> = Vec::new();
    for f in READ_ORDER.iter().copied().filter(|f| t.accept.contains(f)) {
        match trace::parse_format(h, f) {
            Parsed::Absent => {}
            Parsed::Malformed => d.malformed += 1,
            Parsed::Valid(inc) => {
                valid.push(inc);
                match inc {
                    Incoming::Context { .. } if context.is_none() => context = Some((f, inc)),
                    Incoming::SamplingOnly(_) if sampling_only.is_none() => {
                        sampling_only = Some(inc)
                    }
                    _ => {}
                }
            }
        }
    }
    if let Some((_, chosen)) = &context {
        d.conflicts = u32::try_from(valid.iter().filter(|v| !trace::agrees(chosen, v)).count())
            .unwrap_or(u32::MAX);
    }
    let span = rng.next_nonzero_u64();
    let (out, outcome) = match (context, sampling_only) {
        (
            Some((
                _,
                Incoming::Context {
                    trace,
                    span: parent,
                    sampling,
                },
            )),
            _,
        ) => (
            Outgoing {
                trace,
                span,
                parent: Some(parent),
                sampling,
            },
            TraceOutcome::Continued,
        ),
        (_, Some(Incoming::SamplingOnly(sampling))) => (
            Outgoing {
                trace: new_trace_id(t.trace_id_bits, rng),
                span,
                parent: None,
                sampling,
            },
            TraceOutcome::Started,
        ),
        _ => {
            let trace = new_trace_id(t.trace_id_bits, rng);
            (
                Outgoing {
                    trace,
                    span,
                    parent: None,
                    sampling: trace::sample_new_trace(&trace, t.sampling_rate),
                },
                TraceOutcome::Started,
            )
        }
    };
    let continued_w3c = outcome == TraceOutcome::Continued
        && context.map(|(f, _)| f) == Some(TraceFormat::W3c)
        && t.emit.contains(&TraceFormat::W3c);

    // Every trace header sent upstream describes this one context: emitted
    // formats are set, other incoming trace headers removed. `tracestate`
    // goes with a continued W3C trace only, and only when it is valid.
    let mut emitted: Vec<(&'static str, String)> = Vec::new();
    for f in &t.emit {
        emitted.extend(trace::render(&out, *f));
    }
    let mut keep_tracestate = false;
    if continued_w3c {
        match tracestate::check(h.all("tracestate")) {
            TraceState::Absent | TraceState::Empty => {}
            TraceState::Keep => keep_tracestate = true,
            TraceState::Combine(list) => emitted.push(("tracestate", list)),
            TraceState::Invalid => d.tracestate_dropped = true,
        }
    }
    for name in TRACE_HEADERS {
        let keep = name == "tracestate" && keep_tracestate;
        if h.contains(name) && !keep && !emitted.iter().any(|(n, _)| *n == name) {
            d.request_ops.push(HeaderOp::remove(name));
        }
    }
    for (name, value) in emitted {
        // A header that already carries exactly this value (once) is left
        // alone: setting it again costs a host call and changes nothing
        // (a continued trace keeps its trace id and sampling flag).
        let mut present = h.all(name);
        let unchanged = present.next() == Some(value.as_bytes()) && present.next().is_none();
        if !unchanged {
            d.request_ops.push(HeaderOp::set(name, value));
        }
    }
    d.trace = Some(outcome);
    d.outgoing = Some(out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::Sampling;
    use gatehouse_core::parse_config;
    use gatehouse_core::random::{FixedClock, SplitMix64};
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const T32: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const S16: &str = "00f067aa0ba902b7";

    fn run(cfg: &str, pairs: &[(&str, &str)]) -> (Decision, HeaderSnapshot) {
        let cfg: Config = parse_config(cfg.as_bytes()).unwrap();
        let h = HeaderSnapshot::from_pairs(pairs.iter().copied());
        let d = decide(
            &cfg,
            &h,
            &mut SplitMix64(3),
            &FixedClock(1_700_000_000_000_000_000),
        );
        let mut after = h.clone();
        after.apply(&d.request_ops);
        (d, after)
    }

    fn s(h: &HeaderSnapshot, n: &str) -> Option<String> {
        h.first_str(n).map(|v| v.unwrap().to_string())
    }

    #[test]
    fn unchanged_trace_headers_are_not_written() {
        let cfg = r#"{"tracing": {"enabled": true, "emit": ["b3_multi", "w3c"]}}"#;
        let (d, h) = run(
            cfg,
            &[
                ("traceparent", &format!("00-{T32}-{S16}-01")),
                ("x-b3-traceid", T32),
                ("x-b3-spanid", S16),
                ("x-b3-sampled", "1"),
            ],
        );
        assert_eq!(d.trace, Some(TraceOutcome::Continued));
        let written: Vec<&str> = d.request_ops.iter().map(|o| o.name()).collect();
        assert!(!written.contains(&"x-b3-traceid"), "{written:?}");
        assert!(!written.contains(&"x-b3-sampled"), "{written:?}");
        assert_eq!(s(&h, "x-b3-traceid").as_deref(), Some(T32));
        assert_eq!(s(&h, "x-b3-sampled").as_deref(), Some("1"));
        assert_eq!(s(&h, "x-b3-parentspanid").as_deref(), Some(S16));
        // A duplicated header is still rewritten to the one value.
        let (d, _) = run(
            cfg,
            &[
                ("x-b3-traceid", T32),
                ("x-b3-traceid", T32),
                ("x-b3-spanid", S16),
                ("x-b3-sampled", "1"),
            ],
        );
        assert!(d.request_ops.iter().any(|o| o.name() == "x-b3-traceid"));
    }

    #[test]
    fn ids_generated_preserved_replaced() {
        let (d, h) = run("{}", &[]);
        assert_eq!(d.id_outcome, IdOutcome::Generated);
        assert_eq!(s(&h, "x-request-id"), Some(d.id.clone()));
        let (d, h) = run("{}", &[("x-request-id", "abc-123")]);
        assert_eq!(d.id_outcome, IdOutcome::Preserved);
        assert_eq!(d.id, "abc-123");
        assert!(d.request_ops.iter().all(|o| o.name() != "x-request-id"));
        assert_eq!(s(&h, "x-request-id").as_deref(), Some("abc-123"));
        let (d, _) = run("{}", &[("x-request-id", "evil\"id")]);
        assert_eq!(d.id_outcome, IdOutcome::Replaced);
        let (d, _) = run(r#"{"incoming":"replace"}"#, &[("x-request-id", "abc")]);
        assert_eq!(d.id_outcome, IdOutcome::Replaced);
        assert_ne!(d.id, "abc");
        let (d, _) = run(r#"{"max_length":3}"#, &[("x-request-id", "abcd")]);
        assert_eq!(d.id_outcome, IdOutcome::Replaced);
        let (d, h) = run("{}", &[("x-request-id", "one"), ("x-request-id", "two")]);
        assert_eq!(d.id, "one");
        assert_eq!(h.all("x-request-id").count(), 1);
        let (d, _) = run(r#"{"generator":"uuid7"}"#, &[]);
        assert!(d.id.starts_with("018bcfe5-6800-7"), "{}", d.id);
    }

    #[test]
    fn new_trace_emits_consistent_formats() {
        let (d, h) = run(
            r#"{"tracing":{"emit":["b3_multi","b3_single","w3c"]}}"#,
            &[],
        );
        assert_eq!(d.trace, Some(TraceOutcome::Started));
        let out = d.outgoing.unwrap();
        let tid = out.trace.hex32();
        let sid = format!("{:016x}", out.span);
        assert_eq!(s(&h, "x-b3-traceid"), Some(tid.clone()));
        assert_eq!(s(&h, "x-b3-spanid"), Some(sid.clone()));
        assert_eq!(s(&h, "x-b3-sampled").as_deref(), Some("1"));
        assert!(!h.contains("x-b3-parentspanid"));
        assert_eq!(s(&h, "b3"), Some(format!("{tid}-{sid}-1")));
        // New ids are random: Level 2's random-trace-id flag is set.
        assert_eq!(s(&h, "traceparent"), Some(format!("00-{tid}-{sid}-03")));
    }

    #[test]
    fn random_flag_is_carried_with_the_trace_id_only() {
        // Incoming W3C with random (+ unknown flags): random kept, the
        // undefined flags dropped, sampled carried.
        for (flags, want) in [
            ("03", "03"),
            ("02", "02"),
            ("ff", "03"),
            ("fd", "01"),
            ("01", "01"),
        ] {
            let (_, h) = run("{}", &[("traceparent", &format!("00-{T32}-{S16}-{flags}"))]);
            let tp = s(&h, "traceparent").unwrap();
            assert!(tp.starts_with(&format!("00-{T32}-")), "{tp}");
            assert!(tp.ends_with(&format!("-{want}")), "{flags}: {tp}");
        }
        // Continued from B3: the id's randomness is unknown.
        let (_, h) = run("{}", &[("b3", &format!("{T32}-{S16}-1"))]);
        assert!(s(&h, "traceparent").unwrap().ends_with("-01"));
        // Sampling-only and 64-bit new traces are random ids too.
        let (_, h) = run("{}", &[("b3", "0")]);
        assert!(s(&h, "traceparent").unwrap().ends_with("-02"));
        let (_, h) = run(r#"{"tracing":{"trace_id_bits":64}}"#, &[]);
        assert!(s(&h, "traceparent").unwrap().ends_with("-03"));
    }

    #[test]
    fn duplicated_traceparent_starts_a_new_trace() {
        let (d, h) = run(
            "{}",
            &[
                ("traceparent", &format!("00-{T32}-{S16}-01")),
                ("traceparent", &format!("00-{T32}-{S16}-01")),
                ("tracestate", "a=b"),
            ],
        );
        assert_eq!(d.trace, Some(TraceOutcome::Started));
        assert_eq!(d.malformed, 1);
        assert_ne!(d.outgoing.unwrap().trace.hex32(), T32);
        assert_eq!(h.all("traceparent").count(), 1);
        assert!(!h.contains("tracestate"));
        assert!(!d.tracestate_dropped);
    }

    #[test]
    fn tracestate_is_checked_combined_or_dropped() {
        let tp = format!("00-{T32}-{S16}-00");
        let (d, h) = run(
            "{}",
            &[("traceparent", &tp), ("tracestate", "foo=1 , bar=2")],
        );
        assert!(!d.tracestate_dropped);
        assert_eq!(s(&h, "tracestate").as_deref(), Some("foo=1 , bar=2"));
        let (_, h) = run(
            "{}",
            &[
                ("traceparent", &tp),
                ("tracestate", "foo=1,bar=2"),
                ("tracestate", "baz=3"),
            ],
        );
        assert_eq!(h.all("tracestate").count(), 1);
        assert_eq!(s(&h, "tracestate").as_deref(), Some("foo=1,bar=2,baz=3"));
        for bad in ["foo=bar=baz", "FOO=1", "foo=1,foo=2", "foo@=1,bar=2"] {
            let (d, h) = run("{}", &[("traceparent", &tp), ("tracestate", bad)]);
            assert!(d.tracestate_dropped, "{bad}");
            assert!(!h.contains("tracestate"), "{bad}");
            assert_eq!(d.trace, Some(TraceOutcome::Continued));
        }
        let (d, h) = run("{}", &[("traceparent", &tp), ("tracestate", "")]);
        assert!(!d.tracestate_dropped);
        assert!(!h.contains("tracestate"));
    }

    #[test]
    fn continues_w3c_and_keeps_tracestate() {
        let tp = format!("00-{T32}-{S16}-01");
        let (d, h) = run("{}", &[("traceparent", &tp), ("tracestate", "a=b")]);
        assert_eq!(d.trace, Some(TraceOutcome::Continued));
        let out = d.outgoing.unwrap();
        assert_eq!(out.trace.hex32(), T32);
        assert_eq!(out.parent, Some(0x00f067aa0ba902b7));
        assert_ne!(out.span, 0x00f067aa0ba902b7);
        assert_eq!(s(&h, "x-b3-traceid").as_deref(), Some(T32));
        assert_eq!(s(&h, "x-b3-parentspanid").as_deref(), Some(S16));
        assert_eq!(s(&h, "tracestate").as_deref(), Some("a=b"));
        assert!(s(&h, "traceparent")
            .unwrap()
            .starts_with(&format!("00-{T32}-")));
    }

    #[test]
    fn continues_b3_and_drops_foreign_tracestate() {
        let (d, h) = run(
            "{}",
            &[
                ("x-b3-traceid", S16),
                ("x-b3-spanid", S16),
                ("x-b3-sampled", "0"),
                ("tracestate", "a=b"),
            ],
        );
        assert_eq!(d.trace, Some(TraceOutcome::Continued));
        assert_eq!(d.outgoing.unwrap().sampling, Sampling::Deny);
        assert_eq!(s(&h, "x-b3-traceid").as_deref(), Some(S16));
        assert_eq!(s(&h, "x-b3-sampled").as_deref(), Some("0"));
        assert!(s(&h, "traceparent").unwrap().ends_with("-00"));
        assert!(!h.contains("tracestate"));
    }

    #[test]
    fn sampling_only_starts_a_trace_with_that_decision() {
        let (d, h) = run("{}", &[("b3", "0")]);
        assert_eq!(d.trace, Some(TraceOutcome::Started));
        assert_eq!(d.outgoing.unwrap().sampling, Sampling::Deny);
        assert!(!h.contains("b3"));
        let (d, _) = run("{}", &[("x-b3-flags", "1")]);
        assert_eq!(d.outgoing.unwrap().sampling, Sampling::Debug);
    }

    #[test]
    fn deferred_decision_is_carried() {
        let (d, h) = run(
            r#"{"tracing":{"emit":["b3_multi","b3_single"]}}"#,
            &[("b3", &format!("{T32}-{S16}"))],
        );
        assert_eq!(d.outgoing.unwrap().sampling, Sampling::Defer);
        assert!(!h.contains("x-b3-sampled"));
        assert_eq!(s(&h, "b3").unwrap().split('-').count(), 2);
    }

    #[test]
    fn malformed_is_counted_and_replaced() {
        let (d, h) = run(
            "{}",
            &[
                ("traceparent", "00-garbage"),
                ("x-b3-traceid", "zzz"),
                ("x-b3-spanid", S16),
            ],
        );
        assert_eq!(d.malformed, 2);
        assert_eq!(d.trace, Some(TraceOutcome::Started));
        assert!(s(&h, "traceparent").unwrap().starts_with("00-"));
        assert_ne!(s(&h, "x-b3-traceid").as_deref(), Some("zzz"));
    }

    #[test]
    fn conflicting_formats_use_precedence() {
        let other = "11111111111111111111111111111111";
        let (d, h) = run(
            "{}",
            &[
                ("traceparent", &format!("00-{T32}-{S16}-01")),
                ("x-b3-traceid", other),
                ("x-b3-spanid", S16),
            ],
        );
        assert_eq!(d.conflicts, 1);
        assert_eq!(s(&h, "x-b3-traceid").as_deref(), Some(T32));
    }

    #[test]
    fn accept_list_limits_what_is_read_and_unemitted_headers_go() {
        let (d, h) = run(
            r#"{"tracing":{"accept":["b3_multi"],"emit":["b3_multi"]}}"#,
            &[("traceparent", &format!("00-{T32}-{S16}-01"))],
        );
        assert_eq!(d.trace, Some(TraceOutcome::Started));
        assert!(!h.contains("traceparent"));
        assert!(h.contains("x-b3-traceid"));
    }

    #[test]
    fn sixty_four_bit_new_traces() {
        let (d, h) = run(r#"{"tracing":{"trace_id_bits":64}}"#, &[]);
        assert!(!d.outgoing.unwrap().trace.wide);
        assert_eq!(s(&h, "x-b3-traceid").unwrap().len(), 16);
        assert!(s(&h, "traceparent")
            .unwrap()
            .starts_with("00-0000000000000000"));
    }

    #[test]
    fn tracing_disabled_touches_nothing_but_the_id() {
        let (d, _) = run(
            r#"{"tracing":{"enabled":false}}"#,
            &[("b3", "0"), ("x-request-id", "ok")],
        );
        assert!(d.trace.is_none());
        assert!(d.request_ops.is_empty());
    }

    #[test]
    fn hostile_values_never_panic() {
        let junk: Vec<Vec<u8>> = vec![
            vec![],
            vec![0xff; 10_000],
            b"-".repeat(5000),
            "é-é-é-é".as_bytes().to_vec(),
            b"00-".to_vec(),
            b"\x00\x01".to_vec(),
        ];
        let cfg: Config = parse_config(b"{}").unwrap();
        for j in &junk {
            for name in TRACE_HEADERS.iter().chain(["x-request-id"].iter()) {
                let h = HeaderSnapshot::new(vec![(name.to_string(), j.clone())]);
                let d = decide(&cfg, &h, &mut SplitMix64(9), &FixedClock(0));
                assert!(id::is_safe_id(d.id.as_bytes(), 128));
            }
        }
    }
}
