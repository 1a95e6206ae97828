//! The client-id configuration (JSON, Istio `pluginConfig`), with defaults
//! and validation. Validation compiles the whole config (key hashes, JWKS,
//! host patterns) so every error is found at load time and names its field.

use gatehouse_core::config::{ensure, validate_header_name, ConfigError, Validate};
use gatehouse_core::path::PathMatch;
use serde::Deserialize;
use std::collections::BTreeMap;

/// The identification methods, tried in the configured order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    ApiKey,
    Jwt,
    Mtls,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::ApiKey => "api_key",
            Method::Jwt => "jwt",
            Method::Mtls => "mtls",
        }
    }
}

/// Where identification is needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// A valid credential is needed; none => 401.
    #[default]
    Required,
    /// A credential is checked when present (an invalid one is still a 401);
    /// without one the request passes, as the anonymous client if configured.
    Optional,
    /// No identification at all (identity headers are still removed).
    Skip,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Methods in the order they are tried. Default: `["mtls", "jwt",
    /// "api_key"]`, restricted to the methods that are configured.
    #[serde(default)]
    pub methods: Option<Vec<Method>>,
    /// Known clients (API keys and certificates map to these; a JWT subject
    /// that matches a client id takes its plan and enabled flag).
    #[serde(default)]
    pub clients: Vec<Client>,
    #[serde(default)]
    pub api_key: ApiKeyConfig,
    #[serde(default)]
    pub jwt: Option<JwtConfig>,
    #[serde(default)]
    pub mtls: Option<MtlsConfig>,
    #[serde(default)]
    pub headers: IdentityHeaders,
    /// Identity given to requests without a credential where identification
    /// is optional. Absent: such requests pass without identity headers.
    #[serde(default)]
    pub anonymous: Option<Anonymous>,
    /// Mode when no rule matches. Default `required`.
    #[serde(default)]
    pub default_mode: Mode,
    /// First matching rule wins.
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Remove the credential that identified the request (API key header /
    /// query parameter / cookie, `authorization` header) before forwarding.
    /// Default: on for every method; `false` or `{"jwt": false}` opts out.
    #[serde(default)]
    pub strip_credentials: StripCredentials,
    /// Let CORS preflights (`OPTIONS` with `origin` and
    /// `access-control-request-method`) through without a credential (and
    /// without identity). Default false, as Envoy jwt_authn's
    /// `bypass_cors_preflight`.
    #[serde(default)]
    pub bypass_cors_preflight: bool,
    /// `realm` of the `WWW-Authenticate` challenge. Default `gatehouse`.
    #[serde(default = "default_realm")]
    pub realm: String,
}

/// `strip_credentials`: a bool for every method, or per method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum StripCredentials {
    All(bool),
    PerMethod(StripPerMethod),
}

impl Default for StripCredentials {
    fn default() -> Self {
        StripCredentials::All(true)
    }
}

impl StripCredentials {
    pub fn strips(self, m: Method) -> bool {
        match (self, m) {
            (StripCredentials::All(b), _) => b,
            (StripCredentials::PerMethod(p), Method::ApiKey) => p.api_key,
            (StripCredentials::PerMethod(p), Method::Jwt) => p.jwt,
            // A certificate is not a request header: nothing to strip.
            (StripCredentials::PerMethod(_), Method::Mtls) => false,
        }
    }
}

/// Per-method stripping; an absent method strips (the default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StripPerMethod {
    #[serde(default = "yes")]
    pub api_key: bool,
    #[serde(default = "yes")]
    pub jwt: bool,
}

fn default_realm() -> String {
    "gatehouse".to_string()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Client {
    pub id: String,
    #[serde(default)]
    pub plan: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub api_keys: Vec<ApiKeyEntry>,
    #[serde(default)]
    pub certificates: Vec<CertificateEntry>,
}

fn yes() -> bool {
    true
}

/// One API key: its SHA-256 (64 lower-case hex of the key's UTF-8 bytes), or
/// the key itself when `api_key.allow_plain_keys` is true.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyEntry {
    #[serde(default)]
    pub sha256: Option<String>,
    #[serde(default)]
    pub key: Option<String>,
}

/// A client certificate, by one of: URI SAN, subject, SHA-256 digest.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateEntry {
    #[serde(default)]
    pub uri_san: Option<String>,
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub sha256: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// Header carrying the key. Default `x-api-key`; `null` disables.
    #[serde(default = "default_key_header")]
    pub header: Option<String>,
    /// `Authorization` schemes carrying a key (case-insensitive). Default
    /// `["ApiKey"]`; add `"Bearer"` to accept `Bearer <key>` (a Bearer value
    /// shaped like a JWT is left to the JWT method when it is enabled).
    #[serde(default = "default_schemes")]
    pub authorization_schemes: Vec<String>,
    /// Query parameter carrying the key. Default none.
    #[serde(default)]
    pub query_param: Option<String>,
    /// Cookie carrying the key. Default none.
    #[serde(default)]
    pub cookie: Option<String>,
    /// Accept `{"key": "..."}` entries (plain keys in config). Default false.
    #[serde(default)]
    pub allow_plain_keys: bool,
}

impl Default for ApiKeyConfig {
    fn default() -> Self {
        ApiKeyConfig {
            header: default_key_header(),
            authorization_schemes: default_schemes(),
            query_param: None,
            cookie: None,
            allow_plain_keys: false,
        }
    }
}

fn default_key_header() -> Option<String> {
    Some("x-api-key".to_string())
}

fn default_schemes() -> Vec<String> {
    vec!["ApiKey".to_string()]
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    pub issuers: Vec<IssuerConfig>,
    /// Tolerance for `exp`/`nbf`/`iat`, seconds. Default 60.
    #[serde(default = "default_skew")]
    pub clock_skew_seconds: u64,
    /// Claim holding the client id. Default `sub`.
    #[serde(default = "default_id_claim")]
    pub client_id_claim: String,
    /// Claim holding the plan (used when the client is not in `clients`).
    #[serde(default)]
    pub plan_claim: Option<String>,
    /// Claims copied to request headers (string, number or boolean claims).
    #[serde(default)]
    pub claims_to_headers: Vec<ClaimHeader>,
    /// Longest token accepted, bytes. Default 8192.
    #[serde(default = "default_max_token")]
    pub max_token_bytes: usize,
    /// Verified tokens remembered per worker (0 = verify every request).
    /// Default 1024.
    #[serde(default = "default_cache_entries")]
    pub verified_cache_entries: usize,
    /// Longest a verified token is remembered, seconds (never past its
    /// `exp`). Default 60.
    #[serde(default = "default_cache_ttl")]
    pub verified_cache_ttl_seconds: u64,
}

fn default_cache_entries() -> usize {
    1024
}
fn default_cache_ttl() -> u64 {
    60
}

fn default_skew() -> u64 {
    60
}
fn default_id_claim() -> String {
    "sub".to_string()
}
fn default_max_token() -> usize {
    8192
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimHeader {
    pub claim: String,
    pub header: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// Exact `iss` value.
    pub issuer: String,
    /// Accepted audiences; a token must name one of them. Empty: `aud` is not checked.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Claims that must be present.
    #[serde(default)]
    pub required_claims: Vec<String>,
    /// Algorithms accepted for this issuer (each key is further limited by
    /// its type and its own `alg`). Default: all supported.
    #[serde(default)]
    pub algorithms: Option<Vec<String>>,
    /// Inline JWKS (`{"keys": [...]}`).
    #[serde(default)]
    pub jwks: Option<serde_json::Value>,
    /// JWKS fetched through an Envoy cluster.
    #[serde(default)]
    pub remote_jwks: Option<RemoteJwks>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteJwks {
    /// Envoy cluster serving the JWKS.
    pub cluster: String,
    /// Request path, e.g. `/.well-known/jwks.json`.
    pub path: String,
    /// `:authority` of the request. Default: the cluster name.
    #[serde(default)]
    pub authority: Option<String>,
    /// How long fetched keys are fresh, seconds. Default 300.
    #[serde(default = "default_ttl")]
    pub cache_seconds: u64,
    /// Minimum time between two fetches (refresh on unknown `kid`, retry
    /// after failure), seconds. Default 30.
    #[serde(default = "default_min_refresh")]
    pub min_refresh_interval_seconds: u64,
    /// Callout timeout, ms. Default 2000.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
}

fn default_ttl() -> u64 {
    300
}
fn default_min_refresh() -> u64 {
    30
}
fn default_timeout() -> u64 {
    2000
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MtlsConfig {
    /// Certificate fields tried, in order. Default `["uri_san", "sha256", "subject"]`.
    #[serde(default = "default_cert_fields")]
    pub match_by: Vec<CertField>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CertField {
    UriSan,
    Subject,
    Sha256,
}

fn default_cert_fields() -> Vec<CertField> {
    vec![CertField::UriSan, CertField::Sha256, CertField::Subject]
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityHeaders {
    /// Default `x-client-id`.
    #[serde(default = "default_id_header")]
    pub client_id: String,
    /// Default `x-client-plan`.
    #[serde(default = "default_plan_header")]
    pub plan: String,
    /// Header naming the method that identified the client. Default none.
    #[serde(default)]
    pub method: Option<String>,
    /// Prefix for label headers (`<prefix><label>`). Default none.
    #[serde(default)]
    pub label_prefix: Option<String>,
}

impl Default for IdentityHeaders {
    fn default() -> Self {
        IdentityHeaders {
            client_id: default_id_header(),
            plan: default_plan_header(),
            method: None,
            label_prefix: None,
        }
    }
}

fn default_id_header() -> String {
    "x-client-id".to_string()
}
fn default_plan_header() -> String {
    "x-client-plan".to_string()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Anonymous {
    /// Default `anonymous`.
    #[serde(default = "default_anon")]
    pub client_id: String,
    /// Default none (no plan header).
    #[serde(default)]
    pub plan: Option<String>,
}

fn default_anon() -> String {
    "anonymous".to_string()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Host patterns (`a.com`, `*.a.com`, `*`). Empty: any host.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Paths (`{"prefix": ..}`, `{"segment_prefix": ..}`, `{"exact": ..}`). Empty: any path.
    #[serde(default)]
    pub paths: Vec<PathMatch>,
    pub mode: Mode,
    /// Only these client ids may pass (else 403). Empty: any.
    #[serde(default)]
    pub allowed_clients: Vec<String>,
    /// Only clients with these plans may pass (else 403). Empty: any.
    #[serde(default)]
    pub allowed_plans: Vec<String>,
}

impl Validate for Config {
    fn validate(&self) -> Result<(), ConfigError> {
        crate::engine::Engine::build(self).map(|_| ())
    }
}

/// [`Config`] read without [`Validate`] (the filter builds the engine
/// itself, once).
struct Unchecked(Config);

impl<'de> Deserialize<'de> for Unchecked {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Config::deserialize(d).map(Unchecked)
    }
}

impl Validate for Unchecked {
    fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }
}

/// Reads the configuration JSON. A type error names the field and the
/// expected shape but never quotes the value found there (it may be an API
/// key, a hash or a secret): see [`redact`]. Validation (hashes, JWKS, ...)
/// is [`crate::engine::Engine::build`], whose messages never quote secrets.
pub fn parse(bytes: &[u8]) -> Result<Config, ConfigError> {
    gatehouse_core::config::parse_config::<Unchecked>(bytes)
        .map(|u| u.0)
        .map_err(redact)
}

const API_KEYS_SHAPE: &str = r#"must be a list of objects, each {"sha256": "<64 hex digits>"} or {"key": "<plain key>"} (the value found is not shown)"#;
const API_KEY_SHAPE: &str = r#"must be an object {"sha256": "<64 hex digits>"} or {"key": "<plain key>"} (the value found is not shown)"#;

/// Removes values from a deserialization error. Inside `clients[i].api_keys`
/// the field path stops at the key entry (an unknown member's name may be
/// the key itself) and the reason is the expected shape; elsewhere the
/// serde message keeps its kind (`invalid type: string, expected ...`) and
/// loses the value.
pub fn redact(e: ConfigError) -> ConfigError {
    if let Some(pos) = e.field.find(".api_keys") {
        let head = e.field.get(..pos + ".api_keys".len()).unwrap_or_default();
        let rest = e.field.get(pos + ".api_keys".len()..).unwrap_or_default();
        if e.field.starts_with("clients[") && (rest.is_empty() || rest.starts_with('[')) {
            let (index, member) = match rest.find(']') {
                Some(end) => (
                    rest.get(..=end).unwrap_or_default(),
                    rest.get(end + 1..).unwrap_or_default(),
                ),
                None => ("", ""),
            };
            return match (index.is_empty(), member) {
                (true, _) => ConfigError::new(head, API_KEYS_SHAPE),
                (false, ".sha256") => ConfigError::new(
                    format!("{head}{index}.sha256"),
                    "must be a string of 64 hex digits, the SHA-256 of the key (the value found is not shown)",
                ),
                (false, ".key") => ConfigError::new(
                    format!("{head}{index}.key"),
                    "must be a string of at least 8 characters (the value found is not shown)",
                ),
                (false, _) => ConfigError::new(format!("{head}{index}"), API_KEY_SHAPE),
            };
        }
    }
    ConfigError::new(e.field, redact_reason(&e.reason))
}

/// `invalid type: string "k3y", expected ...` => `invalid type: a string,
/// expected ...`; the same for numbers and `unknown variant `x``.
fn redact_reason(reason: &str) -> String {
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = reason.strip_prefix(prefix) {
            let Some(at) = rest.rfind(", expected ") else {
                return format!("{prefix}(the value found is not shown)");
            };
            let found = rest.get(..at).unwrap_or_default();
            let expected = rest.get(at..).unwrap_or_default();
            let kind = [
                ("string", "a string"),
                ("integer", "an integer"),
                ("floating point", "a number"),
                ("boolean", "a boolean"),
                ("character", "a character"),
                ("byte array", "bytes"),
            ]
            .iter()
            .find(|(k, _)| found.starts_with(k))
            .map_or(found, |(_, name)| *name);
            return format!("{prefix}{kind}{expected}");
        }
    }
    if let Some(rest) = reason.strip_prefix("unknown variant `") {
        if let Some(at) = rest.find("`, expected ") {
            return format!("unknown value{}", rest.get(at + 1..).unwrap_or_default());
        }
        return "unknown value".to_string();
    }
    reason.to_string()
}

pub(crate) fn check_header(field: &str, name: &str) -> Result<(), ConfigError> {
    validate_header_name(field, name)?;
    ensure(
        !matches!(
            name,
            "host" | "authorization" | "cookie" | "content-length" | "transfer-encoding"
        ),
        field,
        format!("`{name}` cannot be used as an identity header"),
    )
}
