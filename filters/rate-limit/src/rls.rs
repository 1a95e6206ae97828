//! The wire contract between a global rule and the rate-limit service
//! (Envoy's RLS v3 API, `envoy.service.ratelimit.v3.RateLimitService/
//! ShouldRateLimit`). The filter and `gatehouse-ratelimit` both follow it;
//! an envoyproxy/ratelimit or Limitador configuration can be written
//! against it (see the README).
//!
//! For a request that a global rule `R` applies to, with the limit set of
//! plan `P` (after `default_plan`), the filter sends one `RateLimitRequest`:
//! - `domain`: the rule's `global.domain`; `hits_addend`: 1;
//! - one descriptor per limit of the set, in configuration order, whose
//!   entries are, in this order: [`ENTRY_RULE`] = `R`, [`ENTRY_PLAN`] = `P`
//!   (only when the rule has plans), [`ENTRY_LIMIT`] = the limit's name
//!   (`name`, default `<rate>-per-<per>`), then one entry per descriptor
//!   part in the rule's order, keyed by [`part_key`], valued as in the
//!   local mode (a missing part with `on_missing: shared` has the shared
//!   anonymous value).
//!
//! The service decides all descriptors of one request together (all pass
//! or none is consumed, as the local mode does) and answers `overall_code`
//! and one status per descriptor, in order: `current_limit` (rate, unit,
//! name), `limit_remaining`, and `duration_until_reset`: for an `OK`
//! status the time until the bucket is full again, for an `OVER_LIMIT`
//! status the time until a request would pass again (the `retry-after`).

use crate::config::DescriptorPart;

/// Domain when a rule's `global.domain` is not set.
pub const DEFAULT_DOMAIN: &str = "gatehouse";
/// Default callout timeout (ms). Measured here (2 cores, shared): 160
/// requests at once over two Envoys took 5–100 ms per callout (an earlier,
/// more loaded run 25–500 ms); Envoy's own client's 20 ms default fails
/// open most of them. 1000 ms leaves headroom and still bounds the wait for
/// a hung service (README, Global mode).
pub const DEFAULT_TIMEOUT_MS: u32 = 1000;
/// Descriptor entry naming the rule.
pub const ENTRY_RULE: &str = "gatehouse_rule";
/// Descriptor entry naming the plan.
pub const ENTRY_PLAN: &str = "plan";
/// Descriptor entry naming the limit within the set.
pub const ENTRY_LIMIT: &str = "limit";

/// The entry key of one descriptor part: `client_id`, `client_address`,
/// `host`, `method`, `path_prefix`, or `header:<name>`.
pub fn part_key(part: &DescriptorPart) -> String {
    match part {
        DescriptorPart::ClientId => "client_id".to_string(),
        DescriptorPart::ClientAddress => "client_address".to_string(),
        DescriptorPart::Host => "host".to_string(),
        DescriptorPart::Method => "method".to_string(),
        DescriptorPart::PathPrefix(_) => "path_prefix".to_string(),
        DescriptorPart::Header(name) => format!("header:{name}"),
    }
}

/// The value that stands for a missing part with `on_missing: shared`:
/// `b64:` followed by a character base64 never produces, so no real value
/// (which is never empty) encodes to it.
pub const ANONYMOUS_VALUE: &str = "b64:-";
/// Prefix of a descriptor entry value sent as base64.
pub const B64_PREFIX: &str = "b64:";
/// The gRPC service and method of the callout.
pub const SERVICE: &str = "envoy.service.ratelimit.v3.RateLimitService";
pub const METHOD: &str = "ShouldRateLimit";

/// The latency bucket of a callout that took `ms`: 0 for <= 1 ms, then
/// <= 5, <= 25, <= 100, <= 500, and 5 for more.
pub fn latency_bucket(ms: u64) -> usize {
    [1, 5, 25, 100, 500]
        .iter()
        .position(|&le| ms <= le)
        .unwrap_or(5)
}

/// A descriptor entry value from a part's bytes: the bytes themselves when
/// they are UTF-8 and do not start with `b64:`, else `b64:` + standard
/// base64 (padded) of the bytes.
pub fn entry_value(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) if !s.starts_with(B64_PREFIX) => s.to_string(),
        _ => {
            let mut out = String::with_capacity(B64_PREFIX.len() + bytes.len().div_ceil(3) * 4);
            out.push_str(B64_PREFIX);
            base64_encode(bytes, &mut out);
            out
        }
    }
}

fn base64_encode(data: &[u8], out: &mut String) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let sym = |i: u32| char::from(ALPHABET.get((i & 63) as usize).copied().unwrap_or(b'A'));
    for chunk in data.chunks(3) {
        let b = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let n = (b(0) << 16) | (b(1) << 8) | b(2);
        out.push(sym(n >> 18));
        out.push(sym(n >> 12));
        out.push(if chunk.len() > 1 { sym(n >> 6) } else { '=' });
        out.push(if chunk.len() > 2 { sym(n) } else { '=' });
    }
}

/// One `RateLimitRequest`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RlsRequest {
    pub domain: String,
    /// Each descriptor's entries, `(key, value)` in order.
    pub descriptors: Vec<Vec<(String, String)>>,
    pub hits_addend: u32,
}

/// `RateLimitResponse.Code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Unknown,
    Ok,
    OverLimit,
}

impl Code {
    fn from_wire(v: u64) -> Code {
        match v {
            1 => Code::Ok,
            2 => Code::OverLimit,
            _ => Code::Unknown,
        }
    }
    fn to_wire(self) -> u64 {
        match self {
            Code::Unknown => 0,
            Code::Ok => 1,
            Code::OverLimit => 2,
        }
    }
}

/// `RateLimitResponse.RateLimit`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CurrentLimit {
    pub name: String,
    pub requests_per_unit: u32,
    /// `RateLimit.Unit` as on the wire (1 second .. 4 day, 5 month, 6 year, 7 week).
    pub unit: u32,
}

/// `RateLimitResponse.DescriptorStatus`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescriptorStatus {
    pub code: Code,
    pub current_limit: Option<CurrentLimit>,
    pub limit_remaining: u32,
    /// `duration_until_reset` in nanoseconds (negative durations are 0).
    pub duration_until_reset: Option<u64>,
}

/// `config.core.v3.HeaderValue`: `raw_value` wins over `value` when set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderValue {
    pub key: String,
    pub value: Vec<u8>,
}

/// The parts of a `RateLimitResponse` the filter uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RlsResponse {
    pub overall_code: Code,
    pub statuses: Vec<DescriptorStatus>,
    pub response_headers_to_add: Vec<HeaderValue>,
    pub request_headers_to_add: Vec<HeaderValue>,
}

/// A malformed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeError(pub &'static str);

// ---- protobuf wire format ----

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_tag(out: &mut Vec<u8>, field: u32, wire: u8) {
    put_varint(out, (u64::from(field) << 3) | u64::from(wire));
}

fn put_bytes(out: &mut Vec<u8>, field: u32, data: &[u8]) {
    put_tag(out, field, 2);
    put_varint(out, data.len() as u64);
    out.extend_from_slice(data);
}

fn put_uint(out: &mut Vec<u8>, field: u32, v: u64) {
    if v != 0 {
        put_tag(out, field, 0);
        put_varint(out, v);
    }
}

fn put_str(out: &mut Vec<u8>, field: u32, s: &str) {
    if !s.is_empty() {
        put_bytes(out, field, s.as_bytes());
    }
}

/// A field read from a message.
enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let (&b, rest) = self
                .data
                .split_first()
                .ok_or(DecodeError("truncated varint"))?;
            self.data = rest;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError("varint too long"))
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], DecodeError> {
        let n = usize::try_from(n).map_err(|_| DecodeError("length too large"))?;
        if n > self.data.len() {
            return Err(DecodeError("truncated field"));
        }
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        Ok(head)
    }

    /// The next `(field number, value)`, `None` at the end.
    fn next(&mut self) -> Result<Option<(u64, Value<'a>)>, DecodeError> {
        if self.data.is_empty() {
            return Ok(None);
        }
        let tag = self.varint()?;
        let field = tag >> 3;
        if field == 0 {
            return Err(DecodeError("field number 0"));
        }
        let value = match tag & 7 {
            0 => Value::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Value::Fixed
            }
            2 => {
                let n = self.varint()?;
                Value::Bytes(self.take(n)?)
            }
            5 => {
                self.take(4)?;
                Value::Fixed
            }
            _ => return Err(DecodeError("unsupported wire type")),
        };
        Ok(Some((field, value)))
    }
}

/// Whether `data` reads as a complete protobuf message (groups included).
/// Envoy takes the "cluster" argument of a gRPC callout as a serialized
/// `GrpcService` when it parses as one, so a cluster name that does is
/// refused in the configuration.
pub fn parses_as_protobuf(data: &[u8]) -> bool {
    fn skip_group(r: &mut Reader<'_>, field: u64, depth: u32) -> bool {
        loop {
            let Ok(tag) = r.varint() else { return false };
            match tag & 7 {
                4 => return tag >> 3 == field,
                3 => {
                    if depth > 8 || !skip_group(r, tag >> 3, depth + 1) {
                        return false;
                    }
                }
                _ => {
                    r.data = match rest_after(r.data, tag) {
                        Some(rest) => rest,
                        None => return false,
                    };
                }
            }
        }
    }
    fn rest_after(data: &[u8], tag: u64) -> Option<&[u8]> {
        let mut r = Reader { data };
        match tag & 7 {
            0 => r.varint().ok().map(|_| r.data),
            1 => r.take(8).ok().map(|_| r.data),
            2 => {
                let n = r.varint().ok()?;
                r.take(n).ok().map(|_| r.data)
            }
            5 => r.take(4).ok().map(|_| r.data),
            _ => None,
        }
    }
    let mut r = Reader { data };
    while !r.data.is_empty() {
        let Ok(tag) = r.varint() else { return false };
        if tag >> 3 == 0 {
            return false;
        }
        if tag & 7 == 3 {
            if !skip_group(&mut r, tag >> 3, 0) {
                return false;
            }
            continue;
        }
        match rest_after(r.data, tag) {
            Some(rest) => r.data = rest,
            None => return false,
        }
    }
    true
}

fn fields(data: &[u8]) -> Reader<'_> {
    Reader { data }
}

fn string(v: &[u8]) -> Result<String, DecodeError> {
    String::from_utf8(v.to_vec()).map_err(|_| DecodeError("string is not UTF-8"))
}

fn as_u32(v: u64) -> u32 {
    // proto3 uint32 parsers keep the low 32 bits.
    (v & 0xffff_ffff) as u32
}

/// Encodes a `RateLimitRequest`.
pub fn encode_request(req: &RlsRequest) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    put_str(&mut out, 1, &req.domain);
    for d in &req.descriptors {
        let mut desc = Vec::new();
        for (k, v) in d {
            let mut entry = Vec::new();
            put_str(&mut entry, 1, k);
            put_str(&mut entry, 2, v);
            put_bytes(&mut desc, 1, &entry);
        }
        put_bytes(&mut out, 2, &desc);
    }
    put_uint(&mut out, 3, u64::from(req.hits_addend));
    out
}

/// Decodes a `RateLimitRequest` (descriptor `limit` overrides and
/// `hits_addend` wrappers are ignored).
pub fn decode_request(data: &[u8]) -> Result<RlsRequest, DecodeError> {
    let mut req = RlsRequest::default();
    let mut r = fields(data);
    while let Some((f, v)) = r.next()? {
        match (f, v) {
            (1, Value::Bytes(b)) => req.domain = string(b)?,
            (2, Value::Bytes(b)) => {
                let mut entries = Vec::new();
                let mut d = fields(b);
                while let Some((f, v)) = d.next()? {
                    if let (1, Value::Bytes(e)) = (f, v) {
                        let (mut k, mut val) = (String::new(), String::new());
                        let mut er = fields(e);
                        while let Some((f, v)) = er.next()? {
                            match (f, v) {
                                (1, Value::Bytes(b)) => k = string(b)?,
                                (2, Value::Bytes(b)) => val = string(b)?,
                                _ => {}
                            }
                        }
                        entries.push((k, val));
                    }
                }
                req.descriptors.push(entries);
            }
            (3, Value::Varint(n)) => req.hits_addend = as_u32(n),
            (1..=3, _) => return Err(DecodeError("wrong wire type")),
            _ => {}
        }
    }
    Ok(req)
}

fn decode_header(data: &[u8]) -> Result<HeaderValue, DecodeError> {
    let (mut key, mut value, mut raw) = (String::new(), Vec::new(), None);
    let mut r = fields(data);
    while let Some((f, v)) = r.next()? {
        match (f, v) {
            (1, Value::Bytes(b)) => key = string(b)?,
            (2, Value::Bytes(b)) => value = b.to_vec(),
            (3, Value::Bytes(b)) => raw = Some(b.to_vec()),
            (1..=3, _) => return Err(DecodeError("wrong wire type in HeaderValue")),
            _ => {}
        }
    }
    if key.is_empty() {
        return Err(DecodeError("header without a key"));
    }
    Ok(HeaderValue {
        key,
        value: raw.unwrap_or(value),
    })
}

fn decode_status(data: &[u8]) -> Result<DescriptorStatus, DecodeError> {
    let mut st = DescriptorStatus {
        code: Code::Unknown,
        current_limit: None,
        limit_remaining: 0,
        duration_until_reset: None,
    };
    let mut r = fields(data);
    while let Some((f, v)) = r.next()? {
        match (f, v) {
            (1, Value::Varint(n)) => st.code = Code::from_wire(n),
            (2, Value::Bytes(b)) => {
                let mut l = CurrentLimit::default();
                let mut lr = fields(b);
                while let Some((f, v)) = lr.next()? {
                    match (f, v) {
                        (1, Value::Varint(n)) => l.requests_per_unit = as_u32(n),
                        (2, Value::Varint(n)) => l.unit = as_u32(n),
                        (3, Value::Bytes(b)) => l.name = string(b)?,
                        (1..=3, _) => return Err(DecodeError("wrong wire type in RateLimit")),
                        _ => {}
                    }
                }
                st.current_limit = Some(l);
            }
            (3, Value::Varint(n)) => st.limit_remaining = as_u32(n),
            (4, Value::Bytes(b)) => {
                let (mut secs, mut nanos) = (0i64, 0i64);
                let mut dr = fields(b);
                while let Some((f, v)) = dr.next()? {
                    match (f, v) {
                        (1, Value::Varint(n)) => secs = n as i64,
                        (2, Value::Varint(n)) => nanos = i64::from(n as i32),
                        (1 | 2, _) => return Err(DecodeError("wrong wire type in Duration")),
                        _ => {}
                    }
                }
                let total = i128::from(secs) * 1_000_000_000 + i128::from(nanos);
                st.duration_until_reset = Some(u64::try_from(total.max(0)).unwrap_or(u64::MAX));
            }
            (1..=4, _) => return Err(DecodeError("wrong wire type in DescriptorStatus")),
            _ => {}
        }
    }
    Ok(st)
}

/// Decodes a `RateLimitResponse`. `raw_body`, `dynamic_metadata` and
/// `quota` are skipped.
pub fn decode_response(data: &[u8]) -> Result<RlsResponse, DecodeError> {
    let mut resp = RlsResponse {
        overall_code: Code::Unknown,
        statuses: Vec::new(),
        response_headers_to_add: Vec::new(),
        request_headers_to_add: Vec::new(),
    };
    let mut r = fields(data);
    while let Some((f, v)) = r.next()? {
        match (f, v) {
            (1, Value::Varint(n)) => resp.overall_code = Code::from_wire(n),
            (2, Value::Bytes(b)) => resp.statuses.push(decode_status(b)?),
            (3, Value::Bytes(b)) => resp.response_headers_to_add.push(decode_header(b)?),
            (4, Value::Bytes(b)) => resp.request_headers_to_add.push(decode_header(b)?),
            (1..=4, _) => return Err(DecodeError("wrong wire type in RateLimitResponse")),
            _ => {}
        }
    }
    Ok(resp)
}

/// Encodes a `RateLimitResponse` (tests and tools; the service has its own).
pub fn encode_response(resp: &RlsResponse) -> Vec<u8> {
    let mut out = Vec::new();
    put_uint(&mut out, 1, resp.overall_code.to_wire());
    for st in &resp.statuses {
        let mut s = Vec::new();
        put_uint(&mut s, 1, st.code.to_wire());
        if let Some(l) = &st.current_limit {
            let mut lb = Vec::new();
            put_uint(&mut lb, 1, u64::from(l.requests_per_unit));
            put_uint(&mut lb, 2, u64::from(l.unit));
            put_str(&mut lb, 3, &l.name);
            put_bytes(&mut s, 2, &lb);
        }
        put_uint(&mut s, 3, u64::from(st.limit_remaining));
        if let Some(ns) = st.duration_until_reset {
            let mut d = Vec::new();
            put_uint(&mut d, 1, ns / 1_000_000_000);
            put_uint(&mut d, 2, ns % 1_000_000_000);
            put_bytes(&mut s, 4, &d);
        }
        put_bytes(&mut out, 2, &s);
    }
    for (field, hs) in [
        (3, &resp.response_headers_to_add),
        (4, &resp.request_headers_to_add),
    ] {
        for h in hs {
            let mut hb = Vec::new();
            put_str(&mut hb, 1, &h.key);
            match std::str::from_utf8(&h.value) {
                Ok(v) => put_str(&mut hb, 2, v),
                Err(_) => put_bytes(&mut hb, 3, &h.value),
            }
            put_bytes(&mut out, field, &hb);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn entry_values_are_utf8_or_b64() {
        assert_eq!(entry_value(b"alice"), "alice");
        assert_eq!(entry_value("é".as_bytes()), "é");
        assert_eq!(entry_value(&[0xff]), "b64:/w==");
        assert_eq!(entry_value(b"b64:x"), "b64:YjY0Ong=");
        for (raw, b64) in [
            (&b"f"[..], "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg=="),
            (b"\xfb\xff", "+/8="),
        ] {
            let mut s = String::new();
            base64_encode(raw, &mut s);
            assert_eq!(s, b64);
        }
        // The anonymous value is never the encoding of a real value.
        assert!(!ANONYMOUS_VALUE[B64_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b)));
    }

    #[test]
    fn request_bytes_are_exact_and_round_trip() {
        let req = RlsRequest {
            domain: "d".to_string(),
            descriptors: vec![vec![("k".to_string(), "v".to_string())]],
            hits_addend: 1,
        };
        let bytes = encode_request(&req);
        assert_eq!(
            bytes,
            [0x0a, 1, b'd', 0x12, 8, 0x0a, 6, 0x0a, 1, b'k', 0x12, 1, b'v', 0x18, 1]
        );
        assert_eq!(decode_request(&bytes).unwrap(), req);
    }

    fn sample() -> RlsResponse {
        RlsResponse {
            overall_code: Code::OverLimit,
            statuses: vec![
                DescriptorStatus {
                    code: Code::Ok,
                    current_limit: Some(CurrentLimit {
                        name: "10-per-minute".to_string(),
                        requests_per_unit: 10,
                        unit: 2,
                    }),
                    limit_remaining: 3,
                    duration_until_reset: Some(1_500_000_000),
                },
                DescriptorStatus {
                    code: Code::OverLimit,
                    current_limit: None,
                    limit_remaining: 0,
                    duration_until_reset: Some(7_000_000_000),
                },
            ],
            response_headers_to_add: vec![HeaderValue {
                key: "x-a".to_string(),
                value: b"1".to_vec(),
            }],
            request_headers_to_add: vec![HeaderValue {
                key: "x-b".to_string(),
                value: vec![0xff],
            }],
        }
    }

    #[test]
    fn response_round_trips_and_skips_unknown_fields() {
        let r = sample();
        let mut bytes = encode_response(&r);
        assert_eq!(decode_response(&bytes).unwrap(), r);
        // raw_body (5), a fixed64 and a fixed32 unknown field are skipped.
        bytes.extend_from_slice(&[0x2a, 2, b'h', b'i', 0x49, 0, 0, 0, 0, 0, 0, 0, 0]);
        bytes.extend_from_slice(&[0x4d, 1, 2, 3, 4]);
        assert_eq!(decode_response(&bytes).unwrap(), r);
    }

    #[test]
    fn malformed_responses_are_errors() {
        let bytes = encode_response(&sample());
        for cut in 1..bytes.len() {
            // Every strict prefix that ends inside a field is an error (some
            // cut exactly between fields and decode to fewer statuses,
            // which the engine refuses by count).
            if let Ok(r) = decode_response(&bytes[..cut]) {
                assert_ne!(r, sample());
            }
        }
        assert!(decode_response(&[0x08]).is_err()); // varint missing
        assert!(decode_response(&[0x0a, 0]).is_err()); // overall_code as bytes
        assert!(decode_response(&[0x12, 5, 1]).is_err()); // truncated status
        assert!(decode_response(&[0x0b]).is_err()); // group
        assert!(decode_response(&[0x00, 0]).is_err()); // field 0
        assert!(decode_response(&[0x1a, 2, 0x12, 0]).is_err()); // header without key
        let empty = decode_response(&[]).unwrap();
        assert_eq!(empty.overall_code, Code::Unknown);
        assert!(empty.statuses.is_empty());
    }

    #[test]
    fn negative_durations_are_zero() {
        // duration_until_reset {seconds: -5}
        let mut d = vec![0x08];
        put_varint(&mut d, (-5i64) as u64);
        let mut st = vec![0x08, 1];
        put_bytes(&mut st, 4, &d);
        let mut bytes = vec![0x08, 1];
        put_bytes(&mut bytes, 2, &st);
        let r = decode_response(&bytes).unwrap();
        assert_eq!(r.statuses[0].duration_until_reset, Some(0));
    }

    #[test]
    fn cluster_names_that_envoy_would_parse_as_protobuf() {
        assert!(!parses_as_protobuf(b"rls"));
        assert!(!parses_as_protobuf(b"ratelimit"));
        assert!(!parses_as_protobuf(
            b"outbound|8081||rls.default.svc.cluster.local"
        ));
        assert!(parses_as_protobuf(b"hi"));
        assert!(parses_as_protobuf(b"kl"));
    }

    #[test]
    fn latency_buckets() {
        assert_eq!(latency_bucket(0), 0);
        assert_eq!(latency_bucket(1), 0);
        assert_eq!(latency_bucket(2), 1);
        assert_eq!(latency_bucket(25), 2);
        assert_eq!(latency_bucket(100), 3);
        assert_eq!(latency_bucket(500), 4);
        assert_eq!(latency_bucket(501), 5);
    }
}
