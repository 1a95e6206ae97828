//! JSON configuration loading shared by every filter.
//!
//! Istio's `pluginConfig` (and our Envoy configs) reach a filter as raw JSON
//! bytes. [`parse_config`] turns them into the filter's typed config and runs
//! its [`Validate`] step; any failure becomes one [`ConfigError`] that names
//! the offending field, ready to be logged on a single line.

use serde::de::DeserializeOwned;
use std::fmt;

/// Why a configuration was refused: the dotted path of the field and a reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted path to the field, e.g. `tracing.sampling_rate` or `hosts[2].name`.
    /// `.` for the document itself.
    pub field: String,
    pub reason: String,
}

impl ConfigError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// Prefixes the field path with `parent` (for nested validation).
    pub fn within(mut self, parent: &str) -> Self {
        if self.field == "." || self.field.is_empty() {
            self.field = parent.to_string();
        } else if self.field.starts_with('[') {
            self.field = format!("{parent}{}", self.field);
        } else {
            self.field = format!("{parent}.{}", self.field);
        }
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "field `{}`: {}", self.field, self.reason)
    }
}

impl std::error::Error for ConfigError {}

/// A config that can check itself beyond what its types express.
pub trait Validate {
    fn validate(&self) -> Result<(), ConfigError>;
}

/// Parses a filter configuration's JSON into its typed form.
///
/// Empty or absent configuration means "all defaults" and is parsed as `{}`.
///
/// Errors never point at `.` when a deeper field is at fault, and never carry
/// serde's ` at line L column C` (the configuration is usually one line of
/// JSON inside a YAML string, where a column means little). Only a document
/// that is not JSON at all (or not an object) is reported at `.`.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ConfigError> {
    let trimmed = trim_ascii(bytes);
    let doc: &[u8] = if trimmed.is_empty() { b"{}" } else { trimmed };
    if doc.first() != Some(&b'{') {
        return Err(ConfigError::new(".", "configuration must be a JSON object"));
    }
    let mut de = serde_json::Deserializer::from_slice(doc);
    let value: T = match serde_path_to_error::deserialize(&mut de) {
        Ok(v) => v,
        Err(err) => return Err(shape_error(doc, err)),
    };
    if let Err(err) = de.end() {
        return Err(ConfigError::new(
            ".",
            format!("not valid JSON: {}", message(&err)),
        ));
    }
    Ok(value)
}

/// Parses and validates a filter configuration ([`parse_json`], then
/// [`Validate`]).
pub fn parse_config<T: DeserializeOwned + Validate>(bytes: &[u8]) -> Result<T, ConfigError> {
    let value: T = parse_json(bytes)?;
    value.validate()?;
    Ok(value)
}

/// What a filter runs: its configuration compiled once, from the JSON form
/// (serde) in one fallible step.
pub trait Compile: Sized {
    /// The JSON form (serde, `deny_unknown_fields`).
    type Config: DeserializeOwned;
    fn compile(config: &Self::Config) -> Result<Self, ConfigError>;
}

/// Parses the JSON and compiles it, once: what `on_configure` runs.
pub fn compile_config<C: Compile>(bytes: &[u8]) -> Result<C, ConfigError> {
    C::compile(&parse_json::<C::Config>(bytes)?)
}

/// Turns a failed typed parse into a [`ConfigError`] at the deepest field.
///
/// serde_json reports one kind of shape error as a syntax error: an enum
/// written as an object with zero or two keys (`{"match": {}}`) fails while
/// it is being read ("expected value"). When the document is valid JSON, such
/// an error is about the field being read, so it is reported there, saying
/// what was expected. (Checking the JSON with `IgnoredAny` costs no typed
/// code; replaying the typed parse on a `serde_json::Value` would double
/// every filter's deserializer in the .wasm.)
fn shape_error(doc: &[u8], err: serde_path_to_error::Error<serde_json::Error>) -> ConfigError {
    let path = field_path(err.path());
    let inner = err.into_inner();
    if !(inner.is_syntax() || inner.is_eof()) {
        return ConfigError::new(path, message(&inner));
    }
    if serde_json::from_slice::<serde::de::IgnoredAny>(doc).is_err() {
        return ConfigError::new(".", format!("not valid JSON: {}", message(&inner)));
    }
    ConfigError::new(
        path,
        "expected one of the kinds: its name as a string, or an object with exactly one key",
    )
}

/// serde_path_to_error's path, `.` for the document itself.
fn field_path(path: &serde_path_to_error::Path) -> String {
    let p = path.to_string();
    if p == "?" || p.is_empty() || p == "." {
        ".".to_string()
    } else {
        p
    }
}

fn trim_ascii(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    bytes.get(start..end).unwrap_or_default()
}

/// serde_json's message on one line, without its ` at line L column C`
/// suffix.
fn message(err: &serde_json::Error) -> String {
    let text = err.to_string();
    let text = if err.line() > 0 {
        let suffix = format!(" at line {} column {}", err.line(), err.column());
        text.strip_suffix(&suffix)
            .map(str::to_string)
            .unwrap_or(text)
    } else {
        text
    };
    text.replace('\n', " ")
}

/// Helpers for validation code.
pub fn ensure(cond: bool, field: &str, reason: impl Into<String>) -> Result<(), ConfigError> {
    if cond {
        Ok(())
    } else {
        Err(ConfigError::new(field, reason))
    }
}

/// Checks that `name` is a valid lower-case HTTP header name (RFC 9110 token,
/// stored lower-case as Envoy does; pseudo-headers are not allowed).
pub fn validate_header_name(field: &str, name: &str) -> Result<(), ConfigError> {
    ensure(!name.is_empty(), field, "header name must not be empty")?;
    ensure(
        name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b)
        }),
        field,
        format!("`{name}` is not a lower-case HTTP header name"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        #[serde(default)]
        rate: f64,
    }

    #[derive(Deserialize, Debug)]
    #[serde(rename_all = "snake_case", deny_unknown_fields)]
    #[allow(dead_code)]
    enum Kind {
        Plain,
        Exact(String),
        Prefix(String),
    }

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Doc {
        #[serde(default)]
        name: String,
        #[serde(default)]
        inner: Option<Inner>,
        #[serde(default)]
        list: Vec<Inner>,
        #[serde(default)]
        kinds: Vec<Kind>,
    }

    impl Validate for Doc {
        fn validate(&self) -> Result<(), ConfigError> {
            if let Some(i) = &self.inner {
                ensure(i.rate <= 1.0, "inner.rate", "must be at most 1")?;
            }
            Ok(())
        }
    }

    #[test]
    fn empty_config_means_defaults() {
        let d: Doc = parse_config(b"").unwrap();
        assert_eq!(d.name, "");
        let d: Doc = parse_config(b"  \n").unwrap();
        assert!(d.inner.is_none());
    }

    #[test]
    fn unknown_field_names_the_path() {
        let e = parse_config::<Doc>(br#"{"inner": {"rat": 1}}"#).unwrap_err();
        assert_eq!(e.field, "inner.rat");
        assert!(e.reason.contains("unknown field `rat`"), "{e}");
    }

    #[test]
    fn wrong_type_names_the_path() {
        let e = parse_config::<Doc>(br#"{"list": [{"rate": 1}, {"rate": "x"}]}"#).unwrap_err();
        assert_eq!(e.field, "list[1].rate");
        assert!(e.reason.contains("invalid type"), "{e}");
    }

    #[test]
    fn validation_error_is_reported() {
        let e = parse_config::<Doc>(br#"{"inner": {"rate": 2}}"#).unwrap_err();
        assert_eq!(e.to_string(), "field `inner.rate`: must be at most 1");
    }

    #[test]
    fn syntax_error_and_trailing_garbage() {
        let e = parse_config::<Doc>(b"{").unwrap_err();
        assert_eq!(e.field, ".");
        assert!(e.reason.starts_with("not valid JSON"), "{e}");
        assert_eq!(e.reason, "not valid JSON: EOF while parsing an object");
        assert!(parse_config::<Doc>(br#"{} x"#).is_err());
        assert!(parse_config::<Doc>(br#"[]"#).is_err());
    }

    /// An enum written as an object with zero or two keys is valid JSON:
    /// the error names the field, not `.`.
    #[test]
    fn enum_shape_errors_name_the_field() {
        for doc in [
            &br#"{"kinds": [{"exact": "/a"}, {}]}"#[..],
            br#"{"kinds": [{"exact": "/a"}, {"exact": "/b", "prefix": "/c"}]}"#,
            br#"{"kinds": [{"exact": "/a"}, {"plain": null, "prefix": "/c"}]}"#,
        ] {
            let e = parse_config::<Doc>(doc).unwrap_err();
            assert_eq!(e.field, "kinds[1]", "{}: {e}", String::from_utf8_lossy(doc));
            assert!(!e.reason.contains("not valid JSON"), "{e}");
            assert!(e.reason.contains("exactly one key"), "{e}");
        }
        let e = parse_config::<Doc>(br#"{"kinds": ["nope"]}"#).unwrap_err();
        assert_eq!(e.field, "kinds[0]");
        assert!(e.reason.contains("unknown variant `nope`"), "{e}");
    }

    /// The general rule: no error carries serde's position, and only a
    /// document that is not a JSON object at all is reported at `.`.
    #[test]
    fn no_position_and_no_dot_for_field_errors() {
        let field_errors: &[(&[u8], &str)] = &[
            (br#"{"inner": {"rate": "x"}}"#, "inner.rate"),
            (br#"{"inner": {"rate": 1, "rate": 2}}"#, "inner"),
            (br#"{"inner": "x"}"#, "inner"),
            (br#"{"inner": {"rat": 1}}"#, "inner.rat"),
            (br#"{"list": [{}, {"rate": true}]}"#, "list[1].rate"),
            (br#"{"list": {}}"#, "list"),
            (br#"{"kinds": [{}]}"#, "kinds[0]"),
            (br#"{"kinds": [{"exact": 1}]}"#, "kinds[0].exact"),
            (
                br#"{"kinds": [{"exact": "/a", "exact": "/b"}]}"#,
                "kinds[0]",
            ),
            (br#"{"name": 7}"#, "name"),
            (br#"{"inner": {"rate": 2}}"#, "inner.rate"),
        ];
        for (doc, field) in field_errors {
            let e = parse_config::<Doc>(doc).unwrap_err();
            let text = String::from_utf8_lossy(doc);
            assert_eq!(&e.field, field, "{text}: {e}");
            assert!(!e.to_string().contains(" at line "), "{text}: {e}");
            assert!(!e.to_string().contains("column"), "{text}: {e}");
        }
        for doc in [
            &b"{"[..],
            b"{\"name\": }",
            b"{\"name\": \"x\",}",
            b"{} x",
            b"[]",
            b"\"x\"",
            b"{\"inner\": {\"rate\": 1}",
        ] {
            let e = parse_config::<Doc>(doc).unwrap_err();
            let text = String::from_utf8_lossy(doc);
            assert_eq!(e.field, ".", "{text}: {e}");
            assert!(!e.to_string().contains(" at line "), "{text}: {e}");
        }
    }

    #[test]
    fn within_prefixes() {
        let e = ConfigError::new("rate", "bad").within("limits[0]");
        assert_eq!(e.field, "limits[0].rate");
        let e = ConfigError::new("[1]", "bad").within("hosts");
        assert_eq!(e.field, "hosts[1]");
    }

    #[test]
    fn header_names() {
        assert!(validate_header_name("h", "x-request-id").is_ok());
        assert!(validate_header_name("h", "X-Request-Id").is_err());
        assert!(validate_header_name("h", ":path").is_err());
        assert!(validate_header_name("h", "a b").is_err());
        assert!(validate_header_name("h", "").is_err());
    }
}
