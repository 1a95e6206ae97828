//! request-id configuration (the JSON `pluginConfig`).

use gatehouse_core::config::{ensure, validate_header_name, ConfigError, Validate};
use serde::Deserialize;

/// What to do with a valid incoming request id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncomingPolicy {
    /// Keep a valid incoming id (default); replace an invalid one.
    Keep,
    /// Always replace the incoming id (untrusted clients).
    Replace,
}

/// How new request ids are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Generator {
    /// Random UUID version 4 (default).
    Uuid4,
    /// Time-ordered UUID version 7 (sorts by creation time).
    Uuid7,
}

/// A trace-context header format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TraceFormat {
    /// W3C `traceparent` (and `tracestate`, kept when the trace continues).
    W3c,
    /// B3 single header `b3`.
    B3Single,
    /// B3 multi headers `x-b3-traceid`, `x-b3-spanid`, ...
    B3Multi,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TracingConfig {
    /// Handle trace context at all. Default `true`.
    pub enabled: bool,
    /// Incoming formats to read. The first valid one in the fixed order
    /// `w3c`, `b3_single`, `b3_multi` is continued. Default: all three.
    pub accept: Vec<TraceFormat>,
    /// Formats sent upstream, all describing the same trace and span.
    /// Default `["b3_multi", "w3c"]`.
    pub emit: Vec<TraceFormat>,
    /// Size of new trace ids: 128 (default) or 64.
    pub trace_id_bits: u32,
    /// Fraction of new traces sampled, 0.0–1.0, decided from the trace id
    /// (the same trace id always gets the same decision). Default 1.0.
    pub sampling_rate: f64,
}

impl Default for TracingConfig {
    fn default() -> Self {
        TracingConfig {
            enabled: true,
            accept: vec![
                TraceFormat::W3c,
                TraceFormat::B3Single,
                TraceFormat::B3Multi,
            ],
            emit: vec![TraceFormat::B3Multi, TraceFormat::W3c],
            trace_id_bits: 128,
            sampling_rate: 1.0,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Request header carrying the id. Default `x-request-id`.
    pub header: String,
    /// `keep` (default) or `replace` a valid incoming id.
    pub incoming: IncomingPolicy,
    /// `uuid4` (default) or `uuid7`.
    pub generator: Generator,
    /// Longest incoming id accepted, in bytes (1–1024). Default 128.
    pub max_length: usize,
    /// Send the id back on the response (also on local replies of later
    /// filters). Default `true`.
    pub echo_in_response: bool,
    /// Response header for the echo. Default: same as `header`.
    pub response_header: Option<String>,
    pub tracing: TracingConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            header: "x-request-id".to_string(),
            incoming: IncomingPolicy::Keep,
            generator: Generator::Uuid4,
            max_length: 128,
            echo_in_response: true,
            response_header: None,
            tracing: TracingConfig::default(),
        }
    }
}

impl Config {
    pub fn response_header(&self) -> &str {
        self.response_header.as_deref().unwrap_or(&self.header)
    }
}

/// Headers the trace logic owns; they may not be used as the id header.
pub const TRACE_HEADERS: [&str; 8] = [
    "traceparent",
    "tracestate",
    "b3",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
];

impl Validate for Config {
    fn validate(&self) -> Result<(), ConfigError> {
        validate_header_name("header", &self.header)?;
        ensure(
            !TRACE_HEADERS.contains(&self.header.as_str()),
            "header",
            format!("`{}` is a trace header", self.header),
        )?;
        if let Some(h) = &self.response_header {
            validate_header_name("response_header", h)?;
        }
        ensure(
            (1..=1024).contains(&self.max_length),
            "max_length",
            format!("must be between 1 and 1024, got {}", self.max_length),
        )?;
        let t = &self.tracing;
        ensure(
            t.trace_id_bits == 64 || t.trace_id_bits == 128,
            "tracing.trace_id_bits",
            format!("must be 64 or 128, got {}", t.trace_id_bits),
        )?;
        ensure(
            t.sampling_rate.is_finite() && (0.0..=1.0).contains(&t.sampling_rate),
            "tracing.sampling_rate",
            format!("must be between 0.0 and 1.0, got {}", t.sampling_rate),
        )?;
        if t.enabled {
            ensure(
                !t.emit.is_empty(),
                "tracing.emit",
                "must name at least one format (or set tracing.enabled to false)",
            )?;
        }
        for (name, list) in [("tracing.emit", &t.emit), ("tracing.accept", &t.accept)] {
            for (i, f) in list.iter().enumerate() {
                ensure(
                    !list.iter().take(i).any(|g| g == f),
                    &format!("{name}[{i}]"),
                    format!("duplicate format {f:?}"),
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_core::parse_config;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn defaults() {
        let c: Config = parse_config(b"{}").unwrap();
        assert_eq!(c.header, "x-request-id");
        assert_eq!(c.response_header(), "x-request-id");
        assert_eq!(c.incoming, IncomingPolicy::Keep);
        assert_eq!(c.tracing.emit, vec![TraceFormat::B3Multi, TraceFormat::W3c]);
    }

    #[test]
    fn full_config() {
        let c: Config = parse_config(
            br#"{"header":"x-correlation-id","incoming":"replace","generator":"uuid7","max_length":64,
                 "echo_in_response":false,"response_header":"x-rid",
                 "tracing":{"enabled":true,"accept":["b3_multi"],"emit":["b3_single","w3c"],
                            "trace_id_bits":64,"sampling_rate":0.25}}"#,
        )
        .unwrap();
        assert_eq!(c.generator, Generator::Uuid7);
        assert_eq!(c.tracing.trace_id_bits, 64);
    }

    #[test]
    fn bad_values_name_the_field() {
        let cases: &[(&[u8], &str)] = &[
            (br#"{"max_length":0}"#, "max_length"),
            (br#"{"header":"X-Id"}"#, "header"),
            (br#"{"header":"traceparent"}"#, "header"),
            (
                br#"{"tracing":{"sampling_rate":1.5}}"#,
                "tracing.sampling_rate",
            ),
            (
                br#"{"tracing":{"trace_id_bits":96}}"#,
                "tracing.trace_id_bits",
            ),
            (br#"{"tracing":{"emit":[]}}"#, "tracing.emit"),
            (br#"{"tracing":{"emit":["w3c","w3c"]}}"#, "tracing.emit[1]"),
            (br#"{"tracing":{"emit":["zipkin"]}}"#, "tracing.emit[0]"),
            (br#"{"generator":"uuid1"}"#, "generator"),
            (br#"{"unknown":1}"#, "unknown"),
        ];
        for (doc, field) in cases {
            let e = parse_config::<Config>(doc).unwrap_err();
            assert_eq!(&e.field, field, "{}: {e}", String::from_utf8_lossy(doc));
        }
    }
}
