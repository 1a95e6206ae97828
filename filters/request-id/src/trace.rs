//! Trace context: parsing B3 (multi and single) and W3C `traceparent`, and
//! writing them back, all describing the same trace.

use crate::config::TraceFormat;
use gatehouse_core::hex;
use gatehouse_core::HeaderSnapshot;

/// A trace id: 128 bits, or 64 bits (`hi == 0`, `wide == false`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceId {
    pub hi: u64,
    pub lo: u64,
    /// Written as 32 hex digits (true) or 16 (false, B3 64-bit ids).
    pub wide: bool,
    /// Known to be random (W3C Trace Context Level 2 `random-trace-id`
    /// flag, `02`): set on ids this filter makes and on W3C ids that arrive
    /// with the flag; written on every `traceparent` carrying this id.
    pub random: bool,
}

impl TraceId {
    /// 32 hex digits (64-bit ids are left-padded with zeros, as W3C asks).
    pub fn hex32(&self) -> String {
        let mut s = String::with_capacity(32);
        push_hex16(&mut s, self.hi);
        push_hex16(&mut s, self.lo);
        s
    }

    /// The id as B3 writes it: 32 digits, or 16 for a 64-bit id.
    pub fn b3_hex(&self) -> String {
        let mut s = String::with_capacity(32);
        self.push_b3_hex(&mut s);
        s
    }

    fn push_b3_hex(&self, out: &mut String) {
        if self.wide {
            push_hex16(out, self.hi);
        }
        push_hex16(out, self.lo);
    }

    fn same_trace(&self, other: &TraceId) -> bool {
        self.hi == other.hi && self.lo == other.lo
    }
}

/// The sampling decision carried with a trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sampling {
    Accept,
    Deny,
    /// Debug: sampled, and forced through every sampler.
    Debug,
    /// No decision yet: the next tracer decides.
    Defer,
}

impl Sampling {
    pub fn is_sampled(self) -> bool {
        matches!(self, Sampling::Accept | Sampling::Debug)
    }
}

/// A valid incoming trace context from one header format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incoming {
    /// A trace to continue.
    Context {
        trace: TraceId,
        span: u64,
        sampling: Sampling,
    },
    /// Only a sampling decision (`b3: 0`, or `x-b3-sampled` alone).
    SamplingOnly(Sampling),
}

/// What reading one format found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    Absent,
    Malformed,
    Valid(Incoming),
}

fn parse_span(s: &str) -> Option<u64> {
    if s.len() == 16 && hex::is_lower_hex(s) && !hex::is_all_zero(s) {
        hex::parse_u64(s)
    } else {
        None
    }
}

fn parse_trace_id(s: &str) -> Option<TraceId> {
    if !hex::is_lower_hex(s) || hex::is_all_zero(s) {
        return None;
    }
    match s.len() {
        32 => Some(TraceId {
            hi: hex::parse_u64(s.get(..16)?)?,
            lo: hex::parse_u64(s.get(16..)?)?,
            wide: true,
            random: false,
        }),
        16 => Some(TraceId {
            hi: 0,
            lo: hex::parse_u64(s)?,
            wide: false,
            random: false,
        }),
        _ => None,
    }
}

/// The `sampled` trace flag.
pub const FLAG_SAMPLED: u8 = 0x01;
/// Trace Context Level 2 `random-trace-id` flag.
pub const FLAG_RANDOM: u8 = 0x02;

/// `traceparent: {version}-{trace-id}-{parent-id}-{flags}`, with optional
/// whitespace (space, tab) around it. Of the flags, `sampled` and
/// `random-trace-id` are read; others are not defined and are not carried.
pub fn parse_traceparent(v: &str) -> Option<Incoming> {
    let v = v.trim_matches([' ', '\t']);
    let version = v.get(..2)?;
    if !hex::is_lower_hex(version) || version == "ff" {
        return None;
    }
    // Version 00 is exactly 55 characters; a later version may append
    // fields after a `-`, and its first 55 characters are read as 00.
    if version == "00" {
        if v.len() != 55 {
            return None;
        }
    } else if v.len() < 55 || (v.len() > 55 && v.as_bytes().get(55) != Some(&b'-')) {
        return None;
    }
    let head = v.get(..55)?;
    let mut parts = head.split('-');
    let (_, trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if trace.len() != 32 || flags.len() != 2 || !hex::is_lower_hex(flags) {
        return None;
    }
    let mut trace = parse_trace_id(trace)?;
    let span = parse_span(span)?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    trace.random = flags & FLAG_RANDOM != 0;
    Some(Incoming::Context {
        trace,
        span,
        sampling: if flags & FLAG_SAMPLED != 0 {
            Sampling::Accept
        } else {
            Sampling::Deny
        },
    })
}

fn parse_b3_sampling(s: &str) -> Option<Sampling> {
    match s {
        "1" | "true" => Some(Sampling::Accept),
        "0" | "false" => Some(Sampling::Deny),
        "d" => Some(Sampling::Debug),
        _ => None,
    }
}

/// `b3: {traceid}-{spanid}[-{sampling}[-{parentspanid}]]`, or `b3: {sampling}`.
pub fn parse_b3_single(v: &str) -> Option<Incoming> {
    let parts: Vec<&str> = v.split('-').collect();
    match parts.as_slice() {
        [s] => parse_b3_sampling(s).map(Incoming::SamplingOnly),
        [t, s, rest @ ..] if rest.len() <= 2 => {
            let trace = parse_trace_id(t)?;
            let span = parse_span(s)?;
            let sampling = match rest.first() {
                Some(x) => parse_b3_sampling(x)?,
                None => Sampling::Defer,
            };
            if let Some(p) = rest.get(1) {
                parse_span(p)?;
            }
            Some(Incoming::Context {
                trace,
                span,
                sampling,
            })
        }
        _ => None,
    }
}

/// Reads a header's first value as UTF-8 (non-UTF-8 is malformed).
fn first<'a>(h: &'a HeaderSnapshot, name: &str) -> Option<Result<&'a str, ()>> {
    h.first_str(name)
}

/// The B3 multi-header set.
pub fn parse_b3_multi(h: &HeaderSnapshot) -> Parsed {
    let get = |n: &str| first(h, n);
    let (trace, span, parent, sampled, flags) = (
        get("x-b3-traceid"),
        get("x-b3-spanid"),
        get("x-b3-parentspanid"),
        get("x-b3-sampled"),
        get("x-b3-flags"),
    );
    if trace.is_none() && span.is_none() && parent.is_none() && sampled.is_none() && flags.is_none()
    {
        return Parsed::Absent;
    }
    let sampling = match (flags, sampled) {
        (Some(Ok("1")), _) => Sampling::Debug,
        (Some(Ok("0")) | None, None) => Sampling::Defer,
        (Some(Ok("0")) | None, Some(Ok(s))) => match parse_b3_sampling(s) {
            Some(Sampling::Debug) | None => return Parsed::Malformed,
            Some(x) => x,
        },
        _ => return Parsed::Malformed,
    };
    match (trace, span) {
        (None, None) => {
            if parent.is_some() {
                Parsed::Malformed
            } else {
                Parsed::Valid(Incoming::SamplingOnly(sampling))
            }
        }
        (Some(Ok(t)), Some(Ok(s))) => {
            let (Some(trace), Some(span)) = (parse_trace_id(t), parse_span(s)) else {
                return Parsed::Malformed;
            };
            match parent {
                Some(Ok(p)) if parse_span(p).is_none() => return Parsed::Malformed,
                Some(Err(())) => return Parsed::Malformed,
                _ => {}
            }
            Parsed::Valid(Incoming::Context {
                trace,
                span,
                sampling,
            })
        }
        _ => Parsed::Malformed,
    }
}

/// Reads one format from the request headers.
pub fn parse_format(h: &HeaderSnapshot, f: TraceFormat) -> Parsed {
    let single = |name: &str, parse: fn(&str) -> Option<Incoming>| match first(h, name) {
        None => Parsed::Absent,
        Some(Err(())) => Parsed::Malformed,
        Some(Ok(v)) => parse(v).map_or(Parsed::Malformed, Parsed::Valid),
    };
    match f {
        // Two `traceparent` lines are not one valid header (W3C: a vendor
        // receiving several MUST treat them as invalid): a new trace starts.
        TraceFormat::W3c if h.all("traceparent").nth(1).is_some() => Parsed::Malformed,
        TraceFormat::W3c => single("traceparent", parse_traceparent),
        TraceFormat::B3Single => single("b3", parse_b3_single),
        TraceFormat::B3Multi => parse_b3_multi(h),
    }
}

/// The trace context sent upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outgoing {
    pub trace: TraceId,
    pub span: u64,
    pub parent: Option<u64>,
    pub sampling: Sampling,
}

/// Appends `v` as 16 lower-case hex digits (`{:016x}`, without format!).
fn push_hex16(out: &mut String, v: u64) {
    hex::encode_into(&v.to_be_bytes(), out);
}

fn hex16(v: u64) -> String {
    let mut s = String::with_capacity(16);
    push_hex16(&mut s, v);
    s
}

/// Header values for `format`, as (name, value) pairs.
pub fn render(out: &Outgoing, format: TraceFormat) -> Vec<(&'static str, String)> {
    match format {
        TraceFormat::W3c => {
            let mut flags = 0u8;
            if out.sampling.is_sampled() {
                flags |= FLAG_SAMPLED;
            }
            if out.trace.random {
                flags |= FLAG_RANDOM;
            }
            let mut v = String::with_capacity(55);
            v.push_str("00-");
            push_hex16(&mut v, out.trace.hi);
            push_hex16(&mut v, out.trace.lo);
            v.push('-');
            push_hex16(&mut v, out.span);
            v.push('-');
            hex::encode_into(&[flags], &mut v);
            vec![("traceparent", v)]
        }
        TraceFormat::B3Single => {
            let mut v = String::with_capacity(70);
            out.trace.push_b3_hex(&mut v);
            v.push('-');
            push_hex16(&mut v, out.span);
            let sampling = match out.sampling {
                Sampling::Accept => Some("1"),
                Sampling::Deny => Some("0"),
                Sampling::Debug => Some("d"),
                Sampling::Defer => None,
            };
            // The parent may only follow a sampling field.
            if let Some(s) = sampling {
                v.push('-');
                v.push_str(s);
                if let Some(p) = out.parent {
                    v.push('-');
                    push_hex16(&mut v, p);
                }
            }
            vec![("b3", v)]
        }
        TraceFormat::B3Multi => {
            let mut h = vec![
                ("x-b3-traceid", out.trace.b3_hex()),
                ("x-b3-spanid", hex16(out.span)),
            ];
            if let Some(p) = out.parent {
                h.push(("x-b3-parentspanid", hex16(p)));
            }
            match out.sampling {
                Sampling::Accept => h.push(("x-b3-sampled", "1".to_string())),
                Sampling::Deny => h.push(("x-b3-sampled", "0".to_string())),
                Sampling::Debug => h.push(("x-b3-flags", "1".to_string())),
                Sampling::Defer => {}
            }
            h
        }
    }
}

/// Whether two valid contexts describe the same trace and span.
pub fn agrees(a: &Incoming, b: &Incoming) -> bool {
    match (a, b) {
        (
            Incoming::Context {
                trace: t1,
                span: s1,
                ..
            },
            Incoming::Context {
                trace: t2,
                span: s2,
                ..
            },
        ) => t1.same_trace(t2) && s1 == s2,
        _ => true,
    }
}

/// The deterministic sampling decision for a new trace: the low 64 bits of
/// the trace id, read as a fraction of 2^64, are compared with `rate`.
pub fn sample_new_trace(trace: &TraceId, rate: f64) -> Sampling {
    if rate >= 1.0 {
        return Sampling::Accept;
    }
    if rate <= 0.0 {
        return Sampling::Deny;
    }
    // 2^64 as f64 is exact; the product is below 2^64 since rate < 1.
    let threshold = (rate * 18_446_744_073_709_551_616.0) as u64;
    if trace.lo < threshold {
        Sampling::Accept
    } else {
        Sampling::Deny
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const T32: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const S16: &str = "00f067aa0ba902b7";

    /// The values as the format strings wrote them before.
    #[test]
    fn rendering_matches_the_format_strings() {
        for (hi, lo, span, wide, random) in [
            (0, 1, 2, false, false),
            (0, u64::MAX, 0x00f0_67aa_0ba9_02b7, false, true),
            (u64::MAX, 0xabc, u64::MAX, true, true),
            (0x4bf9_2f35_77b3_4da6, 0xa3ce_929d_0e0e_4736, 1, true, false),
        ] {
            let trace = TraceId {
                hi,
                lo,
                wide,
                random,
            };
            assert_eq!(trace.hex32(), format!("{hi:016x}{lo:016x}"));
            let b3 = if wide {
                format!("{hi:016x}{lo:016x}")
            } else {
                format!("{lo:016x}")
            };
            assert_eq!(trace.b3_hex(), b3);
            for sampling in [
                Sampling::Accept,
                Sampling::Deny,
                Sampling::Debug,
                Sampling::Defer,
            ] {
                for parent in [None, Some(0x1111_2222_3333_4444u64)] {
                    let out = Outgoing {
                        trace,
                        span,
                        parent,
                        sampling,
                    };
                    let mut flags = 0u8;
                    if sampling.is_sampled() {
                        flags |= FLAG_SAMPLED;
                    }
                    if random {
                        flags |= FLAG_RANDOM;
                    }
                    assert_eq!(
                        render(&out, TraceFormat::W3c),
                        vec![(
                            "traceparent",
                            format!("00-{hi:016x}{lo:016x}-{span:016x}-{flags:02x}")
                        )]
                    );
                    let mut single = format!("{b3}-{span:016x}");
                    let s = match sampling {
                        Sampling::Accept => Some("1"),
                        Sampling::Deny => Some("0"),
                        Sampling::Debug => Some("d"),
                        Sampling::Defer => None,
                    };
                    if let Some(s) = s {
                        single.push_str(&format!("-{s}"));
                        if let Some(p) = parent {
                            single.push_str(&format!("-{p:016x}"));
                        }
                    }
                    assert_eq!(render(&out, TraceFormat::B3Single), vec![("b3", single)]);
                    let multi = render(&out, TraceFormat::B3Multi);
                    assert_eq!(multi[0], ("x-b3-traceid", b3.clone()));
                    assert_eq!(multi[1], ("x-b3-spanid", format!("{span:016x}")));
                    if let Some(p) = parent {
                        assert_eq!(multi[2], ("x-b3-parentspanid", format!("{p:016x}")));
                    }
                }
            }
        }
    }
    #[test]
    fn traceparent_valid_and_invalid() {
        let v = format!("00-{T32}-{S16}-01");
        let Some(Incoming::Context {
            trace,
            span,
            sampling,
        }) = parse_traceparent(&v)
        else {
            panic!()
        };
        assert_eq!(trace.hex32(), T32);
        assert_eq!(span, 0x00f067aa0ba902b7);
        assert_eq!(sampling, Sampling::Accept);
        assert_eq!(
            parse_traceparent(&format!("00-{T32}-{S16}-00")).map(|i| matches!(
                i,
                Incoming::Context {
                    sampling: Sampling::Deny,
                    ..
                }
            )),
            Some(true)
        );
        for bad in [
            format!("ff-{T32}-{S16}-01"),
            format!("00-{}-{S16}-01", "0".repeat(32)),
            format!("00-{T32}-{}-01", "0".repeat(16)),
            format!("00-{}-{S16}-01", T32.to_uppercase()),
            format!("00-{T32}-{S16}-01-extra"),
            format!("00-{T32}-{S16}-1"),
            format!("00-{T32}-{S16}-0g"),
            format!("0-{T32}-{S16}-01"),
            format!("00_{T32}_{S16}_01"),
            String::new(),
            "00".to_string(),
        ] {
            assert_eq!(parse_traceparent(&bad), None, "{bad}");
        }
        // A future version may carry more fields.
        assert!(parse_traceparent(&format!("01-{T32}-{S16}-01-what-ever")).is_some());
        assert!(parse_traceparent(&format!("01-{T32}-{S16}-01x")).is_none());
    }

    #[test]
    fn b3_single_forms() {
        assert_eq!(
            parse_b3_single("0"),
            Some(Incoming::SamplingOnly(Sampling::Deny))
        );
        assert_eq!(
            parse_b3_single("d"),
            Some(Incoming::SamplingOnly(Sampling::Debug))
        );
        let c = parse_b3_single(&format!("{T32}-{S16}")).unwrap();
        assert!(matches!(
            c,
            Incoming::Context {
                sampling: Sampling::Defer,
                ..
            }
        ));
        let c = parse_b3_single(&format!("{S16}-{S16}-d-{S16}")).unwrap();
        assert!(matches!(
            c,
            Incoming::Context {
                sampling: Sampling::Debug,
                trace: TraceId { wide: false, .. },
                ..
            }
        ));
        for bad in [
            "x".to_string(),
            T32.to_string(),
            format!("{T32}-{S16}-2"),
            format!("{T32}-{S16}-1-zz"),
            format!("{T32}-{S16}-1-{S16}-x"),
            format!("{T32}-"),
            format!("abc-{S16}"),
        ] {
            assert_eq!(parse_b3_single(&bad), None, "{bad}");
        }
    }

    #[test]
    fn b3_multi_forms() {
        let h = HeaderSnapshot::from_pairs([
            ("x-b3-traceid", T32),
            ("x-b3-spanid", S16),
            ("x-b3-sampled", "1"),
        ]);
        assert!(matches!(
            parse_b3_multi(&h),
            Parsed::Valid(Incoming::Context {
                sampling: Sampling::Accept,
                ..
            })
        ));
        let h = HeaderSnapshot::from_pairs([
            ("x-b3-traceid", T32),
            ("x-b3-spanid", S16),
            ("x-b3-flags", "1"),
        ]);
        assert!(matches!(
            parse_b3_multi(&h),
            Parsed::Valid(Incoming::Context {
                sampling: Sampling::Debug,
                ..
            })
        ));
        let h = HeaderSnapshot::from_pairs([("x-b3-sampled", "0")]);
        assert_eq!(
            parse_b3_multi(&h),
            Parsed::Valid(Incoming::SamplingOnly(Sampling::Deny))
        );
        assert_eq!(parse_b3_multi(&HeaderSnapshot::default()), Parsed::Absent);
        for bad in [
            vec![("x-b3-traceid", T32)],
            vec![("x-b3-spanid", S16)],
            vec![("x-b3-traceid", ""), ("x-b3-spanid", S16)],
            vec![
                ("x-b3-traceid", T32),
                ("x-b3-spanid", S16),
                ("x-b3-sampled", "yes"),
            ],
            vec![
                ("x-b3-traceid", T32),
                ("x-b3-spanid", S16),
                ("x-b3-parentspanid", "1"),
            ],
            vec![("x-b3-traceid", "123"), ("x-b3-spanid", S16)],
            vec![("x-b3-parentspanid", S16)],
        ] {
            assert_eq!(
                parse_b3_multi(&HeaderSnapshot::from_pairs(bad.clone())),
                Parsed::Malformed,
                "{bad:?}"
            );
        }
        // First value of a repeated header wins.
        let h = HeaderSnapshot::from_pairs([
            ("x-b3-traceid", T32),
            ("x-b3-traceid", "bad"),
            ("x-b3-spanid", S16),
        ]);
        assert!(matches!(parse_b3_multi(&h), Parsed::Valid(_)));
        // Non-UTF-8 is malformed, never a crash.
        let h = HeaderSnapshot::new(vec![
            ("x-b3-traceid".into(), vec![0xff; 32]),
            ("x-b3-spanid".into(), S16.into()),
        ]);
        assert_eq!(parse_b3_multi(&h), Parsed::Malformed);
    }

    #[test]
    fn render_all_formats_consistently() {
        let out = Outgoing {
            trace: parse_trace_id(T32).unwrap(),
            span: 0x1111111111111111,
            parent: Some(0x00f067aa0ba902b7),
            sampling: Sampling::Accept,
        };
        assert_eq!(
            render(&out, TraceFormat::W3c),
            vec![("traceparent", format!("00-{T32}-1111111111111111-01"))]
        );
        assert_eq!(
            render(&out, TraceFormat::B3Single),
            vec![("b3", format!("{T32}-1111111111111111-1-{S16}"))]
        );
        let multi = render(&out, TraceFormat::B3Multi);
        assert_eq!(multi[0], ("x-b3-traceid", T32.to_string()));
        assert_eq!(multi[2], ("x-b3-parentspanid", S16.to_string()));
        assert_eq!(multi[3], ("x-b3-sampled", "1".to_string()));
        let deferred = Outgoing {
            sampling: Sampling::Defer,
            ..out
        };
        assert_eq!(
            render(&deferred, TraceFormat::B3Single),
            vec![("b3", format!("{T32}-1111111111111111"))]
        );
        assert!(render(&deferred, TraceFormat::B3Multi)
            .iter()
            .all(|(k, _)| *k != "x-b3-sampled"));
        let narrow = Outgoing {
            trace: parse_trace_id(S16).unwrap(),
            ..out
        };
        assert_eq!(
            render(&narrow, TraceFormat::W3c)[0].1,
            format!("00-0000000000000000{S16}-1111111111111111-01")
        );
        assert_eq!(render(&narrow, TraceFormat::B3Multi)[0].1, S16);
        let debug = Outgoing {
            sampling: Sampling::Debug,
            ..out
        };
        assert!(render(&debug, TraceFormat::B3Multi).contains(&("x-b3-flags", "1".to_string())));
        assert!(render(&debug, TraceFormat::W3c)[0].1.ends_with("-01"));
    }

    #[test]
    fn rendered_headers_parse_back() {
        let out = Outgoing {
            trace: parse_trace_id(T32).unwrap(),
            span: 42,
            parent: None,
            sampling: Sampling::Deny,
        };
        let v = &render(&out, TraceFormat::W3c)[0].1;
        assert!(parse_traceparent(v).is_some());
        let v = &render(&out, TraceFormat::B3Single)[0].1;
        assert!(parse_b3_single(v).is_some());
    }

    #[test]
    fn sampling_is_deterministic_and_proportional() {
        let mut sampled = 0;
        for i in 0..10_000u64 {
            let t = TraceId {
                hi: 1,
                lo: i.wrapping_mul(0x9E37_79B9_7F4A_7C15),
                wide: true,
                random: true,
            };
            let a = sample_new_trace(&t, 0.25);
            assert_eq!(a, sample_new_trace(&t, 0.25));
            if a == Sampling::Accept {
                sampled += 1;
            }
        }
        assert!((2300..2700).contains(&sampled), "{sampled}");
        let t = TraceId {
            hi: 0,
            lo: u64::MAX,
            wide: false,
            random: true,
        };
        assert_eq!(sample_new_trace(&t, 1.0), Sampling::Accept);
        assert_eq!(sample_new_trace(&t, 0.0), Sampling::Deny);
    }
}
