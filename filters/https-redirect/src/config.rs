//! The https-redirect configuration (Istio `pluginConfig` JSON) and its
//! validation.

use gatehouse_core::config::{ensure, ConfigError, Validate};
use gatehouse_core::host::HostTable;
use serde::Deserialize;

/// Redirect statuses the filter may answer with.
pub const REDIRECT_STATUSES: [u16; 5] = [301, 302, 303, 307, 308];
/// Statuses that keep the method and body (usable for non-GET/HEAD).
pub const METHOD_PRESERVING_STATUSES: [u16; 2] = [307, 308];
/// The `max-age` the HSTS preload list requires (one year).
pub const PRELOAD_MIN_MAX_AGE: u64 = 31_536_000;
/// Longest configured exempt path or prefix.
pub const MAX_CONFIG_PATH_LEN: usize = 1024;

/// The filter configuration. Every field is optional; `{}` is a working
/// config (301 to `https://<host><path>` for every plain-HTTP request except
/// ACME HTTP-01 challenges).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Redirect status: 301 (default), 302, 303, 307 or 308.
    #[serde(default = "default_status")]
    pub status: u16,
    /// Status for methods other than GET and HEAD (307 or 308), so a POST is
    /// not turned into a GET. `null` (default): use `status` for every method.
    #[serde(default)]
    pub non_get_status: Option<u16>,
    /// Port for the `https://` URL; `null` (default) or 443 omit the port.
    /// The port of the incoming `Host` is never copied.
    #[serde(default)]
    pub https_port: Option<u16>,
    /// Trust `x-forwarded-proto` (set by a TLS-terminating load balancer in
    /// front): when it says `https` the request counts as HTTPS. The first
    /// value wins (see README). Default false: only the connection counts.
    #[serde(default)]
    pub trust_x_forwarded_proto: bool,
    /// Path prefixes served over plain HTTP (query excluded, case-sensitive).
    #[serde(default = "default_exempt_prefixes")]
    pub exempt_path_prefixes: Vec<String>,
    /// Exact paths served over plain HTTP (health checks), query excluded.
    #[serde(default)]
    pub exempt_paths: Vec<String>,
    /// Hosts the filter acts on: exact names, `*.suffix` wildcards or `*`.
    /// Empty (default): every host.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// When non-empty, a redirect target host must match one of these
    /// patterns; other hosts get 400 instead of a redirect.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// `strict-transport-security` on responses to HTTPS requests. `null`
    /// (default): no header.
    #[serde(default)]
    pub hsts: Option<Hsts>,
}

/// HSTS settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hsts {
    /// `max-age` in seconds (required).
    pub max_age: u64,
    #[serde(default)]
    pub include_subdomains: bool,
    /// Requires `include_subdomains` and `max_age >= 31536000`.
    #[serde(default)]
    pub preload: bool,
}

impl Hsts {
    /// The header value, e.g. `max-age=31536000; includeSubDomains; preload`.
    pub fn header_value(&self) -> String {
        let mut v = format!("max-age={}", self.max_age);
        if self.include_subdomains {
            v.push_str("; includeSubDomains");
        }
        if self.preload {
            v.push_str("; preload");
        }
        v
    }
}

fn default_status() -> u16 {
    301
}

fn default_exempt_prefixes() -> Vec<String> {
    vec!["/.well-known/acme-challenge/".to_string()]
}

impl Default for Config {
    fn default() -> Self {
        Config {
            status: default_status(),
            non_get_status: None,
            https_port: None,
            trust_x_forwarded_proto: false,
            exempt_path_prefixes: default_exempt_prefixes(),
            exempt_paths: Vec::new(),
            hosts: Vec::new(),
            allowed_hosts: Vec::new(),
            hsts: None,
        }
    }
}

fn validate_paths(field: &str, paths: &[String]) -> Result<(), ConfigError> {
    for (i, p) in paths.iter().enumerate() {
        let at = format!("{field}[{i}]");
        ensure(
            p.starts_with('/'),
            &at,
            format!("path `{p}` must start with `/`"),
        )?;
        ensure(
            p.len() <= MAX_CONFIG_PATH_LEN,
            &at,
            format!("path is longer than {MAX_CONFIG_PATH_LEN} bytes"),
        )?;
        ensure(
            p.bytes().all(|b| (0x21..=0x7e).contains(&b)),
            &at,
            "path must be visible ASCII (no spaces, controls or non-ASCII; percent-encode them)",
        )?;
        ensure(
            !p.contains('?'),
            &at,
            "path must not contain `?` (the query is never matched)",
        )?;
    }
    Ok(())
}

impl Validate for Config {
    fn validate(&self) -> Result<(), ConfigError> {
        ensure(
            REDIRECT_STATUSES.contains(&self.status),
            "status",
            format!(
                "{} is not a redirect status (use 301, 302, 303, 307 or 308)",
                self.status
            ),
        )?;
        if let Some(s) = self.non_get_status {
            ensure(
                METHOD_PRESERVING_STATUSES.contains(&s),
                "non_get_status",
                format!("{s} does not preserve the method (use 307 or 308, or null)"),
            )?;
        }
        if let Some(p) = self.https_port {
            ensure(p != 0, "https_port", "port must be 1-65535")?;
        }
        validate_paths("exempt_path_prefixes", &self.exempt_path_prefixes)?;
        validate_paths("exempt_paths", &self.exempt_paths)?;
        HostTable::build("hosts", self.hosts.iter().map(|h| (h.clone(), ())))?;
        HostTable::build(
            "allowed_hosts",
            self.allowed_hosts.iter().map(|h| (h.clone(), ())),
        )?;
        if let Some(h) = &self.hsts {
            if h.preload {
                ensure(
                    h.include_subdomains,
                    "hsts.preload",
                    "preload requires include_subdomains: true",
                )?;
                ensure(
                    h.max_age >= PRELOAD_MIN_MAX_AGE,
                    "hsts.preload",
                    format!("preload requires max_age >= {PRELOAD_MIN_MAX_AGE}"),
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

    fn err(json: &str) -> ConfigError {
        parse_config::<Config>(json.as_bytes()).unwrap_err()
    }

    #[test]
    fn empty_config_is_the_default() {
        let c: Config = parse_config(b"").unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.status, 301);
        assert_eq!(c.exempt_path_prefixes, vec!["/.well-known/acme-challenge/"]);
        let c: Config = parse_config(b"{}").unwrap();
        assert_eq!(c, Config::default());
    }

    #[test]
    fn full_config_parses() {
        let c: Config = parse_config(
            br#"{"status": 308, "non_get_status": 307, "https_port": 8443,
                 "trust_x_forwarded_proto": true, "exempt_path_prefixes": [],
                 "exempt_paths": ["/healthz"], "hosts": ["a.com", "*.b.com"],
                 "allowed_hosts": ["*"],
                 "hsts": {"max_age": 31536000, "include_subdomains": true, "preload": true}}"#,
        )
        .unwrap();
        assert_eq!(c.status, 308);
        assert_eq!(c.non_get_status, Some(307));
        assert_eq!(c.https_port, Some(8443));
        assert!(c.exempt_path_prefixes.is_empty());
        assert_eq!(
            c.hsts.unwrap().header_value(),
            "max-age=31536000; includeSubDomains; preload"
        );
    }

    #[test]
    fn bad_values_name_the_field() {
        assert_eq!(err(r#"{"status": 200}"#).field, "status");
        assert_eq!(err(r#"{"status": "301"}"#).field, "status");
        assert_eq!(err(r#"{"non_get_status": 301}"#).field, "non_get_status");
        assert_eq!(err(r#"{"https_port": 0}"#).field, "https_port");
        assert_eq!(err(r#"{"https_port": 70000}"#).field, "https_port");
        assert_eq!(
            err(r#"{"exempt_paths": ["/ok", "nope"]}"#).field,
            "exempt_paths[1]"
        );
        assert_eq!(
            err(r#"{"exempt_path_prefixes": ["/a b"]}"#).field,
            "exempt_path_prefixes[0]"
        );
        assert_eq!(
            err(r#"{"exempt_paths": ["/a?x=1"]}"#).field,
            "exempt_paths[0]"
        );
        assert_eq!(err(r#"{"hosts": ["a.*.com"]}"#).field, "hosts[0]");
        assert_eq!(err(r#"{"hosts": ["a.com", "A.com"]}"#).field, "hosts[1]");
        assert_eq!(
            err(r#"{"allowed_hosts": ["x.com:80"]}"#).field,
            "allowed_hosts[0]"
        );
        assert_eq!(err(r#"{"hsts": {}}"#).field, "hsts");
        assert_eq!(err(r#"{"hsts": {"max_age": -1}}"#).field, "hsts.max_age");
    }

    #[test]
    fn unknown_fields_are_refused() {
        let e = err(r#"{"stauts": 301}"#);
        assert_eq!(e.field, "stauts");
        assert!(e.reason.contains("unknown field"), "{e}");
        let e = err(r#"{"hsts": {"max_age": 1, "preloaded": true}}"#);
        assert_eq!(e.field, "hsts.preloaded");
    }

    #[test]
    fn preload_rules() {
        let e = err(r#"{"hsts": {"max_age": 31536000, "preload": true}}"#);
        assert_eq!(e.field, "hsts.preload");
        assert!(e.reason.contains("include_subdomains"), "{e}");
        let e = err(r#"{"hsts": {"max_age": 86400, "include_subdomains": true, "preload": true}}"#);
        assert_eq!(e.field, "hsts.preload");
        assert!(e.reason.contains("31536000"), "{e}");
        let c: Config = parse_config(br#"{"hsts": {"max_age": 0}}"#).unwrap();
        assert_eq!(c.hsts.unwrap().header_value(), "max-age=0");
    }

    #[test]
    fn example_config_is_valid() {
        let c: Config = parse_config(include_bytes!("../example.json")).unwrap();
        assert_eq!(c.non_get_status, Some(308));
        assert_eq!(c.exempt_paths, vec!["/healthz"]);
        assert!(c.hsts.is_some());
    }

    #[test]
    fn bad_json_is_refused() {
        assert!(parse_config::<Config>(b"{\"status\": ").is_err());
        assert!(parse_config::<Config>(b"[]").is_err());
    }
}
