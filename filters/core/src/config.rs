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

/// Parses and validates a filter configuration.
///
/// Empty or absent configuration means "all defaults" and is parsed as `{}`.
pub fn parse_config<T: DeserializeOwned + Validate>(bytes: &[u8]) -> Result<T, ConfigError> {
    let trimmed = trim_ascii(bytes);
    let doc: &[u8] = if trimmed.is_empty() { b"{}" } else { trimmed };
    if doc.first() != Some(&b'{') {
        return Err(ConfigError::new(".", "configuration must be a JSON object"));
    }
    let mut de = serde_json::Deserializer::from_slice(doc);
    let value: T = match serde_path_to_error::deserialize(&mut de) {
        Ok(v) => v,
        Err(err) => {
            let path = err.path().to_string();
            let inner = err.into_inner();
            if inner.is_syntax() || inner.is_eof() {
                return Err(ConfigError::new(
                    ".",
                    format!("not valid JSON: {}", strip_position(&inner)),
                ));
            }
            let path = if path == "?" || path.is_empty() {
                ".".to_string()
            } else {
                path
            };
            return Err(ConfigError::new(path, strip_position(&inner)));
        }
    };
    if let Err(err) = de.end() {
        return Err(ConfigError::new(".", strip_position(&err)));
    }
    value.validate()?;
    Ok(value)
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

/// serde_json appends " at line L column C"; keep it (it helps locate JSON
/// syntax errors) but make the message one line.
fn strip_position(err: &serde_json::Error) -> String {
    err.to_string().replace('\n', " ")
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
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Doc {
        #[serde(default)]
        name: String,
        #[serde(default)]
        inner: Option<Inner>,
        #[serde(default)]
        list: Vec<Inner>,
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
        assert!(parse_config::<Doc>(br#"{} x"#).is_err());
        assert!(parse_config::<Doc>(br#"[]"#).is_err());
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
