//! The compiled configuration and the per-request decision.

use crate::apikey::{self, Source};
use crate::config::{
    check_header, CertField, Config, IssuerConfig, Method, Mode, RemoteJwks, StripCredentials,
};
use crate::jwt::{self, Alg, JwtError, KeySet, Peek, Policy, ALL_ALGS};
use crate::verified::VerifiedCache;
use gatehouse_core::config::{ensure, ConfigError};
use gatehouse_core::host::{normalize_host, HostPattern};
use gatehouse_core::path::{is_ambiguous_path, split_path_query, PathMatch};
use gatehouse_core::{HeaderOp, HeaderSnapshot};
use serde_json::{Map, Value};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

/// Every rejection reason (counter `gatehouse.client_id.rejected.<reason>`).
pub const REASONS: [&str; 19] = [
    "bad_path",
    "missing_credential",
    "unknown_key",
    "unknown_certificate",
    "disabled_client",
    "not_allowed",
    "jwks_unavailable",
    "malformed_token",
    "token_too_long",
    "alg_none",
    "algorithm_not_allowed",
    "wrong_issuer",
    "unknown_kid",
    "bad_signature",
    "expired",
    "not_yet_valid",
    "wrong_audience",
    "missing_claim",
    "bad_claims",
];

/// Most API keys accepted in one config (the constant-time scan is linear).
pub const MAX_API_KEYS: usize = 10_000;

#[derive(Debug, Clone)]
pub struct ClientInfo {
    pub id: String,
    pub plan: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub enabled: bool,
}

/// Where an issuer's keys come from.
#[derive(Debug, Clone)]
pub enum KeySource {
    Inline(Rc<KeySet>),
    Remote(RemoteJwks),
}

#[derive(Debug, Clone)]
pub struct Issuer {
    pub policy: Policy,
    pub algs: Vec<Alg>,
    pub keys: KeySource,
}

#[derive(Debug, Clone)]
struct JwtEngine {
    issuers: Vec<Issuer>,
    client_id_claim: String,
    plan_claim: Option<String>,
    claims_to_headers: Vec<(String, String)>,
    max_len: usize,
    verified: RefCell<VerifiedCache>,
    /// Verified-cache lookups since the last [`Engine::take_cache_events`]:
    /// (hits, misses).
    cache_events: Cell<(u64, u64)>,
}

#[derive(Debug, Clone)]
struct CompiledRule {
    hosts: Vec<HostPattern>,
    paths: Vec<PathMatch>,
    mode: Mode,
    allowed_clients: Vec<String>,
    allowed_plans: Vec<String>,
}

/// The certificate the connection presented (Envoy connection properties).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerCert {
    /// `connection.mtls`: a client certificate was presented and verified.
    pub present: bool,
    pub uri_san: Option<String>,
    pub subject: Option<String>,
    pub sha256: Option<String>,
}

/// What the adapter knows about a request.
pub struct Input<'a> {
    pub headers: &'a HeaderSnapshot,
    /// Read only when [`Engine::needs_peer`].
    pub peer: Option<&'a PeerCert>,
    pub now_secs: u64,
}

/// What a remote-JWKS cache answers.
pub enum KeysAnswer {
    Keys(Rc<KeySet>),
    /// Fetch the JWKS, then decide again.
    Fetch,
    /// No keys and no fetch possible now.
    Unavailable,
    /// A fetch is in flight: wait for it, then decide again.
    Wait,
}

/// Access to remotely fetched key sets (pure: see [`crate::cache`]).
pub trait RemoteKeys {
    fn keys(&mut self, issuer: usize, kid: Option<&str>, cfg: &RemoteJwks) -> KeysAnswer;
}

/// Result of [`Engine::decide`].
#[derive(Debug)]
pub enum Step {
    Done(Decision),
    /// The JWKS of issuer `issuer` must be fetched first.
    Fetch {
        issuer: usize,
    },
    /// Another request is fetching the JWKS of `issuer`: wait for it.
    Wait {
        issuer: usize,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Identified {
        client_id: String,
        method: Method,
        /// Short hash of the credential, for logs.
        fingerprint: String,
    },
    Anonymous,
    /// Optional and no credential, no anonymous identity configured.
    Unidentified,
    Skipped,
    /// A CORS preflight let through by `bypass_cors_preflight`.
    CorsPreflight,
    Rejected(Rejection),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub status: u16,
    /// Machine-readable reason (counter name and JSON `error`).
    pub reason: &'static str,
    pub message: &'static str,
    pub challenges: Vec<String>,
    /// Short credential hash for the log line (never the credential).
    pub fingerprint: Option<String>,
    /// `retry-after` seconds (503 while signing keys are unavailable).
    pub retry_after: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct Decision {
    pub outcome: Outcome,
    /// Header edits to apply when the request passes.
    pub ops: Vec<HeaderOp>,
}

/// The compiled configuration.
#[derive(Debug, Clone)]
pub struct Engine {
    methods: Vec<Method>,
    clients: Vec<ClientInfo>,
    by_id: HashMap<String, usize>,
    key_table: Vec<([u8; 32], usize)>,
    key_header: Option<String>,
    key_schemes: Vec<String>,
    key_query: Option<String>,
    key_cookie: Option<String>,
    jwt: Option<JwtEngine>,
    cert_fields: Vec<CertField>,
    by_uri_san: HashMap<String, usize>,
    by_subject: HashMap<String, usize>,
    by_digest: HashMap<String, usize>,
    id_header: String,
    plan_header: String,
    method_header: Option<String>,
    label_prefix: Option<String>,
    anonymous: Option<(String, Option<String>)>,
    default_mode: Mode,
    rules: Vec<CompiledRule>,
    strip_credentials: StripCredentials,
    bypass_cors_preflight: bool,
    realm: String,
    /// Some rule matches on paths.
    path_rules: bool,
}

fn err(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::new(field, reason)
}

fn parse_algs(field: &str, names: &Option<Vec<String>>) -> Result<Vec<Alg>, ConfigError> {
    match names {
        None => Ok(ALL_ALGS.to_vec()),
        Some(list) => {
            ensure(!list.is_empty(), field, "must not be empty")?;
            let mut out = Vec::new();
            for (i, n) in list.iter().enumerate() {
                let f = format!("{field}[{i}]");
                ensure(
                    !n.eq_ignore_ascii_case("none"),
                    &f,
                    "`none` is never accepted",
                )?;
                let a = Alg::parse(n).ok_or_else(|| err(&f, format!("unknown algorithm `{n}`")))?;
                out.push(a);
            }
            Ok(out)
        }
    }
}

fn compile_issuer(
    i: usize,
    c: &IssuerConfig,
    skew: u64,
    max_len: usize,
    client_id_claim: &str,
) -> Result<Issuer, ConfigError> {
    let at = format!("jwt.issuers[{i}]");
    ensure(
        !c.issuer.is_empty(),
        &format!("{at}.issuer"),
        "must not be empty",
    )?;
    let algs = parse_algs(&format!("{at}.algorithms"), &c.algorithms)?;
    let keys = match (&c.jwks, &c.remote_jwks) {
        (Some(doc), None) => {
            let ks = jwt::parse_jwks(doc, &algs, true)
                .map_err(|e| err(format!("{at}.jwks.{}", e.field), e.reason))?;
            KeySource::Inline(Rc::new(ks))
        }
        (None, Some(r)) => {
            ensure(
                !r.cluster.is_empty(),
                &format!("{at}.remote_jwks.cluster"),
                "must not be empty",
            )?;
            ensure(
                r.path.starts_with('/'),
                &format!("{at}.remote_jwks.path"),
                "must start with `/`",
            )?;
            ensure(
                r.cache_seconds > 0,
                &format!("{at}.remote_jwks.cache_seconds"),
                "must be positive",
            )?;
            ensure(
                r.timeout_ms > 0 && r.timeout_ms <= 60_000,
                &format!("{at}.remote_jwks.timeout_ms"),
                "must be 1..=60000",
            )?;
            KeySource::Remote(r.clone())
        }
        _ => {
            return Err(err(
                &at,
                "exactly one of `jwks` and `remote_jwks` is required",
            ))
        }
    };
    Ok(Issuer {
        policy: Policy {
            issuer: c.issuer.clone(),
            audiences: c.audiences.clone(),
            required_claims: c.required_claims.clone(),
            skew_seconds: skew,
            max_len,
            client_id_claim: client_id_claim.to_string(),
        },
        algs,
        keys,
    })
}

impl Engine {
    pub fn build(cfg: &Config) -> Result<Engine, ConfigError> {
        let mut clients = Vec::new();
        let mut by_id = HashMap::new();
        let mut key_table: Vec<([u8; 32], usize)> = Vec::new();
        let mut by_uri_san = HashMap::new();
        let mut by_subject = HashMap::new();
        let mut by_digest = HashMap::new();
        for (ci, c) in cfg.clients.iter().enumerate() {
            let at = format!("clients[{ci}]");
            ensure(
                valid_value(&c.id),
                &format!("{at}.id"),
                "must be 1-128 visible ASCII characters",
            )?;
            if by_id.insert(c.id.clone(), ci).is_some() {
                return Err(err(
                    format!("{at}.id"),
                    format!("duplicate client id `{}`", c.id),
                ));
            }
            if let Some(p) = &c.plan {
                ensure(
                    valid_value(p),
                    &format!("{at}.plan"),
                    "must be 1-128 visible ASCII characters",
                )?;
            }
            for (k, v) in &c.labels {
                ensure(
                    !k.is_empty()
                        && k.bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
                    &format!("{at}.labels"),
                    format!("label name `{k}` must be lower-case letters, digits and `-`"),
                )?;
                ensure(
                    valid_value(v),
                    &format!("{at}.labels.{k}"),
                    "must be 1-128 visible ASCII characters",
                )?;
            }
            for (ki, k) in c.api_keys.iter().enumerate() {
                let f = format!("{at}.api_keys[{ki}]");
                let hash = match (&k.sha256, &k.key) {
                    (Some(h), None) => apikey::parse_hash(h).ok_or_else(|| {
                        err(
                            format!("{f}.sha256"),
                            "must be 64 hex digits (SHA-256 of the key)",
                        )
                    })?,
                    (None, Some(plain)) => {
                        ensure(
                            cfg.api_key.allow_plain_keys,
                            &format!("{f}.key"),
                            "plain keys need `api_key.allow_plain_keys: true`; store the SHA-256 in `sha256` instead",
                        )?;
                        ensure(
                            plain.len() >= 8,
                            &format!("{f}.key"),
                            "must be at least 8 characters",
                        )?;
                        apikey::sha256(plain.as_bytes())
                    }
                    _ => return Err(err(&f, "exactly one of `sha256` and `key` is required")),
                };
                if key_table.iter().any(|(h, _)| *h == hash) {
                    return Err(err(&f, "duplicate API key (same hash as an earlier key)"));
                }
                key_table.push((hash, ci));
            }
            for (ti, t) in c.certificates.iter().enumerate() {
                let f = format!("{at}.certificates[{ti}]");
                let (map, value, name) = match (&t.uri_san, &t.subject, &t.sha256) {
                    (Some(u), None, None) => (&mut by_uri_san, u.clone(), "uri_san"),
                    (None, Some(s), None) => (&mut by_subject, s.clone(), "subject"),
                    (None, None, Some(d)) => {
                        let d = d.to_ascii_lowercase().replace(':', "");
                        ensure(
                            apikey::parse_hash(&d).is_some(),
                            &format!("{f}.sha256"),
                            "must be 64 hex digits",
                        )?;
                        (&mut by_digest, d, "sha256")
                    }
                    _ => {
                        return Err(err(
                            &f,
                            "exactly one of `uri_san`, `subject`, `sha256` is required",
                        ))
                    }
                };
                ensure(
                    !value.is_empty(),
                    &format!("{f}.{name}"),
                    "must not be empty",
                )?;
                if map.insert(value, ci).is_some() {
                    return Err(err(format!("{f}.{name}"), "duplicate certificate"));
                }
            }
            clients.push(ClientInfo {
                id: c.id.clone(),
                plan: c.plan.clone(),
                labels: c.labels.clone(),
                enabled: c.enabled,
            });
        }
        ensure(
            key_table.len() <= MAX_API_KEYS,
            "clients",
            format!("at most {MAX_API_KEYS} API keys"),
        )?;

        let ak = &cfg.api_key;
        if let Some(h) = &ak.header {
            check_header("api_key.header", h)?;
        }
        let mut key_schemes = Vec::new();
        for (i, s) in ak.authorization_schemes.iter().enumerate() {
            ensure(
                !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'),
                &format!("api_key.authorization_schemes[{i}]"),
                "must be a token such as `ApiKey` or `Bearer`",
            )?;
            key_schemes.push(s.to_ascii_lowercase());
        }
        if let Some(q) = &ak.query_param {
            ensure(!q.is_empty(), "api_key.query_param", "must not be empty")?;
        }
        if let Some(c) = &ak.cookie {
            ensure(
                !c.is_empty()
                    && c.bytes()
                        .all(|b| b.is_ascii_graphic() && !b"=;,\"".contains(&b)),
                "api_key.cookie",
                "must be a cookie name",
            )?;
        }

        let jwt = match &cfg.jwt {
            None => None,
            Some(j) => {
                ensure(
                    !j.issuers.is_empty(),
                    "jwt.issuers",
                    "at least one issuer is required",
                )?;
                ensure(
                    j.clock_skew_seconds <= 3600,
                    "jwt.clock_skew_seconds",
                    "must be at most 3600",
                )?;
                ensure(
                    j.max_token_bytes >= 64 && j.max_token_bytes <= 65536,
                    "jwt.max_token_bytes",
                    "must be 64..=65536",
                )?;
                ensure(
                    !j.client_id_claim.is_empty(),
                    "jwt.client_id_claim",
                    "must not be empty",
                )?;
                let mut issuers = Vec::new();
                for (i, c) in j.issuers.iter().enumerate() {
                    if j.issuers.iter().take(i).any(|o| o.issuer == c.issuer) {
                        return Err(err(format!("jwt.issuers[{i}].issuer"), "duplicate issuer"));
                    }
                    issuers.push(compile_issuer(
                        i,
                        c,
                        j.clock_skew_seconds,
                        j.max_token_bytes,
                        &j.client_id_claim,
                    )?);
                }
                let mut claims = Vec::new();
                for (i, ch) in j.claims_to_headers.iter().enumerate() {
                    ensure(
                        !ch.claim.is_empty(),
                        &format!("jwt.claims_to_headers[{i}].claim"),
                        "must not be empty",
                    )?;
                    check_header(&format!("jwt.claims_to_headers[{i}].header"), &ch.header)?;
                    claims.push((ch.claim.clone(), ch.header.clone()));
                }
                Some(JwtEngine {
                    issuers,
                    client_id_claim: j.client_id_claim.clone(),
                    plan_claim: j.plan_claim.clone(),
                    claims_to_headers: claims,
                    max_len: j.max_token_bytes,
                    verified: RefCell::new(VerifiedCache::new(
                        j.verified_cache_entries,
                        j.verified_cache_ttl_seconds,
                    )),
                    cache_events: Cell::new((0, 0)),
                })
            }
        };

        let cert_fields = match &cfg.mtls {
            None => Vec::new(),
            Some(m) => {
                ensure(!m.match_by.is_empty(), "mtls.match_by", "must not be empty")?;
                m.match_by.clone()
            }
        };

        let h = &cfg.headers;
        check_header("headers.client_id", &h.client_id)?;
        check_header("headers.plan", &h.plan)?;
        ensure(
            h.client_id != h.plan,
            "headers.plan",
            "must differ from headers.client_id",
        )?;
        if let Some(m) = &h.method {
            check_header("headers.method", m)?;
        }
        if let Some(p) = &h.label_prefix {
            check_header("headers.label_prefix", p)?;
            ensure(
                p.len() >= 3,
                "headers.label_prefix",
                "must be at least 3 characters (e.g. `x-client-label-`)",
            )?;
        }
        let anonymous = match &cfg.anonymous {
            None => None,
            Some(a) => {
                ensure(
                    valid_value(&a.client_id),
                    "anonymous.client_id",
                    "must be 1-128 visible ASCII characters",
                )?;
                if let Some(p) = &a.plan {
                    ensure(
                        valid_value(p),
                        "anonymous.plan",
                        "must be 1-128 visible ASCII characters",
                    )?;
                }
                Some((a.client_id.clone(), a.plan.clone()))
            }
        };

        let configured = |m: Method| match m {
            Method::ApiKey => !key_table.is_empty(),
            Method::Jwt => jwt.is_some(),
            Method::Mtls => cfg.mtls.is_some(),
        };
        let methods: Vec<Method> = match &cfg.methods {
            None => [Method::Mtls, Method::Jwt, Method::ApiKey]
                .into_iter()
                .filter(|m| configured(*m))
                .collect(),
            Some(list) => {
                for (i, m) in list.iter().enumerate() {
                    let f = format!("methods[{i}]");
                    ensure(!list.iter().take(i).any(|o| o == m), &f, "duplicate method")?;
                    ensure(
                        configured(*m),
                        &f,
                        format!("`{}` is listed but not configured (api_key needs clients with api_keys, jwt needs `jwt`, mtls needs `mtls`)", m.as_str()),
                    )?;
                }
                list.clone()
            }
        };
        // API keys enable their method by being listed; certificates need
        // the `mtls` block (and `mtls` in `methods`), else they never match.
        if let Some(ci) = cfg.clients.iter().position(|c| !c.certificates.is_empty()) {
            let f = format!("clients[{ci}].certificates");
            ensure(
                cfg.mtls.is_some(),
                &f,
                "certificates identify only with the `mtls` block (add `\"mtls\": {}`)",
            )?;
            ensure(
                methods.contains(&Method::Mtls),
                &f,
                "`mtls` is not in `methods`, so certificates would never identify",
            )?;
        }
        let needs_method =
            cfg.default_mode != Mode::Skip || cfg.rules.iter().any(|r| r.mode != Mode::Skip);
        ensure(
            !methods.is_empty() || !needs_method || anonymous.is_some(),
            "methods",
            "no identification method is configured (add clients with api_keys, `jwt` or `mtls`)",
        )?;

        let mut rules = Vec::new();
        for (i, r) in cfg.rules.iter().enumerate() {
            let mut hosts = Vec::new();
            for (hi, h) in r.hosts.iter().enumerate() {
                hosts.push(
                    HostPattern::parse(h).map_err(|e| err(format!("rules[{i}].hosts[{hi}]"), e))?,
                );
            }
            for (pi, p) in r.paths.iter().enumerate() {
                p.validate()
                    .map_err(|e| err(format!("rules[{i}].paths[{pi}]"), e))?;
            }
            for (ci, c) in r.allowed_clients.iter().enumerate() {
                ensure(
                    valid_value(c),
                    &format!("rules[{i}].allowed_clients[{ci}]"),
                    "must be a client id",
                )?;
            }
            rules.push(CompiledRule {
                hosts,
                paths: r.paths.clone(),
                mode: r.mode,
                allowed_clients: r.allowed_clients.clone(),
                allowed_plans: r.allowed_plans.clone(),
            });
        }
        ensure(
            !cfg.realm.is_empty()
                && cfg.realm.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
                && !cfg.realm.contains('"')
                && !cfg.realm.contains('\\'),
            "realm",
            "must be printable ASCII without quotes or backslashes",
        )?;

        Ok(Engine {
            methods,
            clients,
            by_id,
            key_table,
            key_header: ak.header.clone(),
            key_schemes,
            key_query: ak.query_param.clone(),
            key_cookie: ak.cookie.clone(),
            jwt,
            cert_fields,
            by_uri_san,
            by_subject,
            by_digest,
            id_header: h.client_id.clone(),
            plan_header: h.plan.clone(),
            method_header: h.method.clone(),
            label_prefix: h.label_prefix.clone(),
            anonymous,
            default_mode: cfg.default_mode,
            rules,
            strip_credentials: cfg.strip_credentials,
            bypass_cors_preflight: cfg.bypass_cors_preflight,
            realm: cfg.realm.clone(),
            path_rules: cfg.rules.iter().any(|r| !r.paths.is_empty()),
        })
    }

    /// True when connection properties must be read (mTLS is configured).
    pub fn needs_peer(&self) -> bool {
        self.methods.contains(&Method::Mtls)
    }

    /// Verified-token cache (hits, misses) since the last call (the adapter
    /// adds them to its counters).
    pub fn take_cache_events(&self) -> (u64, u64) {
        self.jwt
            .as_ref()
            .map_or((0, 0), |j| j.cache_events.replace((0, 0)))
    }

    pub fn issuers(&self) -> &[Issuer] {
        self.jwt.as_ref().map_or(&[], |j| j.issuers.as_slice())
    }

    /// Every header the filter owns: removed from every request.
    fn removal_ops(&self, headers: &HeaderSnapshot) -> Vec<HeaderOp> {
        let mut names: Vec<&str> = vec![self.id_header.as_str(), self.plan_header.as_str()];
        if let Some(m) = &self.method_header {
            names.push(m);
        }
        if let Some(j) = &self.jwt {
            names.extend(j.claims_to_headers.iter().map(|(_, h)| h.as_str()));
        }
        // Only copies the request actually carries need removing: a removal
        // of an absent header would still cost a host call per request.
        let mut ops: Vec<HeaderOp> = Vec::new();
        for n in &names {
            if headers.contains(n) && !ops.iter().any(|o| o.name() == *n) {
                ops.push(HeaderOp::remove(n));
            }
        }
        if let Some(p) = &self.label_prefix {
            for (name, _) in headers.iter() {
                if name.starts_with(p.as_str()) && !ops.iter().any(|o| o.name() == name) {
                    ops.push(HeaderOp::remove(name));
                }
            }
        }
        // CGI, WSGI, PHP (and more) read `x_client_id` as `x-client-id`:
        // every `_` spelling of an owned header goes too (Envoy's default
        // `headers_with_underscores_action` lets them through).
        for (name, _) in headers.iter() {
            if !name.contains('_') || ops.iter().any(|o| o.name() == name) {
                continue;
            }
            let dashed = name.replace('_', "-").to_ascii_lowercase();
            let owned = names.iter().any(|n| n.replace('_', "-") == dashed)
                || self
                    .label_prefix
                    .as_deref()
                    .is_some_and(|p| dashed.starts_with(&p.replace('_', "-")));
            if owned {
                ops.push(HeaderOp::remove(name));
            }
        }
        ops
    }

    fn mode_for(&self, headers: &HeaderSnapshot) -> (Mode, Option<&CompiledRule>) {
        let host = headers
            .first_str(":authority")
            .and_then(Result::ok)
            .and_then(normalize_host)
            .unwrap_or_default();
        let raw_path = headers
            .first_str(":path")
            .and_then(Result::ok)
            .unwrap_or("/");
        let (path, _) = split_path_query(raw_path);
        for r in &self.rules {
            let host_ok = r.hosts.is_empty() || r.hosts.iter().any(|h| h.matches(&host));
            let path_ok = r.paths.is_empty() || r.paths.iter().any(|p| p.matches(path));
            if host_ok && path_ok {
                return (r.mode, Some(r));
            }
        }
        (self.default_mode, None)
    }

    /// Challenges for a 401 without a usable credential.
    fn challenges(&self, error: Option<(&Method, &str)>) -> Vec<String> {
        let realm = &self.realm;
        let mut out = Vec::new();
        for m in &self.methods {
            let c = match (m, error) {
                (Method::Jwt, Some((Method::Jwt, desc))) => format!(
                    "Bearer realm=\"{realm}\", error=\"invalid_token\", error_description=\"{desc}\""
                ),
                (Method::Jwt, _) => format!("Bearer realm=\"{realm}\""),
                (Method::ApiKey, Some((Method::ApiKey, _))) => {
                    format!("ApiKey realm=\"{realm}\", error=\"invalid_key\"")
                }
                (Method::ApiKey, _) => format!("ApiKey realm=\"{realm}\""),
                (Method::Mtls, _) => format!("Mutual-TLS realm=\"{realm}\""),
            };
            out.push(c);
        }
        if out.is_empty() {
            out.push(format!("ApiKey realm=\"{realm}\""));
        }
        out
    }

    fn reject(
        &self,
        status: u16,
        reason: &'static str,
        message: &'static str,
        error: Option<(&Method, &str)>,
        fp: Option<String>,
    ) -> Outcome {
        Outcome::Rejected(Rejection {
            status,
            reason,
            message,
            challenges: if status == 401 {
                self.challenges(error)
            } else {
                Vec::new()
            },
            fingerprint: fp,
            retry_after: None,
        })
    }

    /// Decides what happens to a request. `remote` serves remote JWKS.
    pub fn decide(&self, input: &Input<'_>, remote: &mut dyn RemoteKeys) -> Step {
        let headers = input.headers;
        let mut ops = self.removal_ops(headers);
        if self.path_rules && ambiguous_path(headers) {
            // Rules scope by path: a path the upstream may read differently
            // (dot segments, encoded separators, `//`) must not pick a
            // weaker rule than the one it really targets.
            let mut o = self.reject(400, "bad_path", "the request path is ambiguous", None, None);
            if let Outcome::Rejected(r) = &mut o {
                r.challenges.clear();
            }
            return Step::Done(Decision { outcome: o, ops });
        }
        if self.bypass_cors_preflight && cors_preflight(headers) {
            // Browsers never send credentials on a preflight; it passes
            // without identity (the forged headers are still removed).
            return Step::Done(Decision {
                outcome: Outcome::CorsPreflight,
                ops,
            });
        }
        let (mode, rule) = self.mode_for(headers);
        if mode == Mode::Skip {
            return Step::Done(Decision {
                outcome: Outcome::Skipped,
                ops,
            });
        }
        for m in &self.methods {
            let found = match m {
                Method::ApiKey => self.try_api_key(headers),
                Method::Jwt => match self.try_jwt(input, remote) {
                    Tried::NeedFetch(issuer) => return Step::Fetch { issuer },
                    Tried::Wait(issuer) => return Step::Wait { issuer },
                    t => t,
                },
                Method::Mtls => self.try_mtls(input.peer),
            };
            match found {
                Tried::Absent => continue,
                Tried::NeedFetch(issuer) => return Step::Fetch { issuer },
                Tried::Wait(issuer) => return Step::Wait { issuer },
                Tried::Rejected(o) => return Step::Done(Decision { outcome: o, ops }),
                Tried::Found(id) => {
                    return Step::Done(self.accept(id, *m, rule, ops));
                }
            }
        }
        // No credential at all.
        let outcome = match (mode, &self.anonymous) {
            (Mode::Optional, Some((id, plan))) => {
                if let Some(r) = rule {
                    if !allowed(r, id, plan.as_deref()) {
                        return Step::Done(Decision {
                            outcome: self.reject(
                                401,
                                "missing_credential",
                                "this resource needs a credential",
                                None,
                                None,
                            ),
                            ops,
                        });
                    }
                }
                ops.push(HeaderOp::set(&self.id_header, id.clone()));
                if let Some(p) = plan {
                    ops.push(HeaderOp::set(&self.plan_header, p.clone()));
                }
                if let Some(mh) = &self.method_header {
                    ops.push(HeaderOp::set(mh, "anonymous"));
                }
                Outcome::Anonymous
            }
            (Mode::Optional, None) => Outcome::Unidentified,
            _ => self.reject(
                401,
                "missing_credential",
                "a credential is required",
                None,
                None,
            ),
        };
        Step::Done(Decision { outcome, ops })
    }

    fn accept(
        &self,
        id: Identity,
        method: Method,
        rule: Option<&CompiledRule>,
        mut ops: Vec<HeaderOp>,
    ) -> Decision {
        if !id.enabled {
            return Decision {
                outcome: self.reject(
                    403,
                    "disabled_client",
                    "this client is disabled",
                    None,
                    Some(id.fingerprint),
                ),
                ops,
            };
        }
        if let Some(r) = rule {
            if !allowed(r, &id.client_id, id.plan.as_deref()) {
                return Decision {
                    outcome: self.reject(
                        403,
                        "not_allowed",
                        "this client may not access this resource",
                        None,
                        Some(id.fingerprint),
                    ),
                    ops,
                };
            }
        }
        ops.push(HeaderOp::set(&self.id_header, id.client_id.clone()));
        if let Some(p) = &id.plan {
            ops.push(HeaderOp::set(&self.plan_header, p.clone()));
        }
        if let Some(mh) = &self.method_header {
            ops.push(HeaderOp::set(mh, method.as_str()));
        }
        if let Some(prefix) = &self.label_prefix {
            for (k, v) in &id.labels {
                ops.push(HeaderOp::set(&format!("{prefix}{k}"), v.clone()));
            }
        }
        ops.extend(id.extra);
        if self.strip_credentials.strips(method) {
            ops.extend(id.strip);
        }
        Decision {
            outcome: Outcome::Identified {
                client_id: id.client_id,
                method,
                fingerprint: id.fingerprint,
            },
            ops,
        }
    }

    fn client_identity(&self, idx: usize, fingerprint: String, strip: Vec<HeaderOp>) -> Tried {
        match self.clients.get(idx) {
            Some(c) => Tried::Found(Identity {
                client_id: c.id.clone(),
                plan: c.plan.clone(),
                labels: c.labels.clone(),
                enabled: c.enabled,
                extra: Vec::new(),
                strip,
                fingerprint,
            }),
            None => Tried::Rejected(self.reject(
                401,
                "unknown_key",
                "the API key is not valid",
                Some((&Method::ApiKey, "")),
                None,
            )),
        }
    }

    fn find_api_key(&self, headers: &HeaderSnapshot) -> Option<(String, Source)> {
        if let Some(h) = &self.key_header {
            if let Some(v) = headers.first(h) {
                let s = String::from_utf8_lossy(v).trim().to_string();
                return Some((s, Source::Header(h.clone())));
            }
        }
        if let Some((scheme, value)) = apikey::authorization(headers) {
            if self.key_schemes.contains(&scheme) {
                let jwt_owns =
                    scheme == "bearer" && self.jwt.is_some() && jwt::looks_like_jwt(&value);
                if !jwt_owns {
                    return Some((value, Source::Authorization));
                }
            }
        }
        if let Some(q) = &self.key_query {
            let raw = headers
                .first_str(":path")
                .and_then(Result::ok)
                .unwrap_or("/");
            if let (_, Some(query)) = split_path_query(raw) {
                if let Some(v) = apikey::query_param(query, q) {
                    return Some((v, Source::Query(q.clone())));
                }
            }
        }
        if let Some(c) = &self.key_cookie {
            if let Some(v) = apikey::cookie(headers, c) {
                return Some((v, Source::Cookie(c.clone())));
            }
        }
        None
    }

    fn try_api_key(&self, headers: &HeaderSnapshot) -> Tried {
        let Some((key, source)) = self.find_api_key(headers) else {
            return Tried::Absent;
        };
        let fp = apikey::fingerprint(key.as_bytes());
        let strip = match &source {
            Source::Header(h) => vec![HeaderOp::remove(h)],
            Source::Authorization => vec![HeaderOp::remove("authorization")],
            Source::Query(q) => {
                let raw = headers
                    .first_str(":path")
                    .and_then(Result::ok)
                    .unwrap_or("/");
                vec![HeaderOp::set(":path", apikey::path_without_param(raw, q))]
            }
            Source::Cookie(c) => vec![apikey::strip_cookie(headers, c)],
        };
        match apikey::lookup(&self.key_table, key.as_bytes()) {
            Some(idx) => self.client_identity(idx, fp, strip),
            None => Tried::Rejected(self.reject(
                401,
                "unknown_key",
                "the API key is not valid",
                Some((&Method::ApiKey, "")),
                Some(fp),
            )),
        }
    }

    fn try_mtls(&self, peer: Option<&PeerCert>) -> Tried {
        let Some(peer) = peer.filter(|p| p.present) else {
            return Tried::Absent;
        };
        let fp = peer
            .sha256
            .as_deref()
            .map(|d| d.get(..8).unwrap_or(d).to_string())
            .unwrap_or_default();
        for f in &self.cert_fields {
            let hit = match f {
                CertField::UriSan => peer.uri_san.as_ref().and_then(|v| self.by_uri_san.get(v)),
                CertField::Subject => peer.subject.as_ref().and_then(|v| self.by_subject.get(v)),
                CertField::Sha256 => peer
                    .sha256
                    .as_ref()
                    .and_then(|v| self.by_digest.get(&v.to_ascii_lowercase().replace(':', ""))),
            };
            if let Some(idx) = hit {
                return self.client_identity(*idx, fp, Vec::new());
            }
        }
        Tried::Rejected(self.reject(
            401,
            "unknown_certificate",
            "the client certificate is not known",
            Some((&Method::Mtls, "")),
            Some(fp),
        ))
    }

    fn try_jwt(&self, input: &Input<'_>, remote: &mut dyn RemoteKeys) -> Tried {
        let Some(j) = &self.jwt else {
            return Tried::Absent;
        };
        let Some((scheme, token)) = apikey::authorization(input.headers) else {
            return Tried::Absent;
        };
        if scheme != "bearer" {
            return Tried::Absent;
        }
        // A Bearer value that is not JWT-shaped may be an API key.
        if !jwt::looks_like_jwt(&token)
            && self.methods.contains(&Method::ApiKey)
            && self.key_schemes.iter().any(|s| s == "bearer")
        {
            return Tried::Absent;
        }
        let fp = apikey::fingerprint(token.as_bytes());
        let fail = |e: JwtError| {
            Tried::Rejected(self.reject(
                401,
                e.reason(),
                e.message(),
                Some((&Method::Jwt, e.message())),
                Some(fp.clone()),
            ))
        };
        let cache_key = apikey::sha256(token.as_bytes());
        let (cached, enabled) = match j.verified.try_borrow_mut() {
            Ok(mut c) => (c.get(&cache_key, input.now_secs), c.enabled()),
            Err(_) => (None, false),
        };
        if enabled {
            let (hits, misses) = j.cache_events.get();
            j.cache_events.set(if cached.is_some() {
                (hits.saturating_add(1), misses)
            } else {
                (hits, misses.saturating_add(1))
            });
        }
        let claims = match cached {
            Some((_, claims)) => claims,
            None => match self.verify_jwt(j, &token, input, remote, &fail, &fp) {
                Ok((idx, claims)) => {
                    if let Ok(mut c) = j.verified.try_borrow_mut() {
                        c.insert(cache_key, idx, &claims, input.now_secs);
                    }
                    claims
                }
                Err(t) => return t,
            },
        };
        self.identity_from_claims(j, claims, fp.clone(), &fail)
    }

    /// Full verification of a token not in the verified cache: the issuer
    /// index and the claims, or what to do instead.
    // `Tried` is the engine's internal answer, returned once per request.
    #[allow(clippy::result_large_err)]
    fn verify_jwt(
        &self,
        j: &JwtEngine,
        token: &str,
        input: &Input<'_>,
        remote: &mut dyn RemoteKeys,
        fail: &dyn Fn(JwtError) -> Tried,
        fp: &str,
    ) -> Result<(usize, Map<String, Value>), Tried> {
        let peek: Peek = match jwt::peek(token, j.max_len) {
            Ok(p) => p,
            Err(e) => return Err(fail(e)),
        };
        let Some((idx, issuer)) = j
            .issuers
            .iter()
            .enumerate()
            .find(|(_, i)| Some(i.policy.issuer.as_str()) == peek.iss.as_deref())
        else {
            return Err(fail(JwtError::UnknownIssuer));
        };
        if !issuer.algs.contains(&peek.alg) {
            return Err(fail(JwtError::AlgorithmNotAllowed));
        }
        let keys = match &issuer.keys {
            KeySource::Inline(k) => k.clone(),
            KeySource::Remote(cfg) => match remote.keys(idx, peek.kid.as_deref(), cfg) {
                KeysAnswer::Keys(k) => k,
                KeysAnswer::Fetch => return Err(Tried::NeedFetch(idx)),
                KeysAnswer::Wait => return Err(Tried::Wait(idx)),
                KeysAnswer::Unavailable => {
                    let mut o = self.reject(
                        503,
                        "jwks_unavailable",
                        "the signing keys are unavailable; retry later",
                        None,
                        Some(fp.to_string()),
                    );
                    if let Outcome::Rejected(r) = &mut o {
                        r.retry_after = Some(cfg.min_refresh_interval_seconds.max(1));
                    }
                    return Err(Tried::Rejected(o));
                }
            },
        };
        match jwt::verify(token, &peek, &keys, &issuer.policy, input.now_secs) {
            Ok(c) => Ok((idx, c)),
            Err(e) => Err(fail(e)),
        }
    }

    /// The identity a verified token's claims give.
    fn identity_from_claims(
        &self,
        j: &JwtEngine,
        claims: Map<String, Value>,
        fp: String,
        fail: &dyn Fn(JwtError) -> Tried,
    ) -> Tried {
        let client_id = match claims.get(&j.client_id_claim) {
            None | Some(Value::Null) => return fail(JwtError::MissingClaim),
            Some(Value::String(s)) if valid_value(s) => s.clone(),
            Some(Value::Number(n)) if n.is_u64() || n.is_i64() => n.to_string(),
            // Present but unusable: an object, a fraction, an empty or
            // over-long string, control characters ...
            Some(_) => return fail(JwtError::BadClaims),
        };
        let mut extra = Vec::new();
        for (claim, header) in &j.claims_to_headers {
            if let Some(v) = claims
                .get(claim)
                .and_then(claim_string)
                .filter(|s| valid_header_value(s))
            {
                extra.push(HeaderOp::set(header, v));
            }
        }
        let strip = vec![HeaderOp::remove("authorization")];
        let (plan, labels, enabled) = match self
            .by_id
            .get(&client_id)
            .and_then(|i| self.clients.get(*i))
        {
            Some(c) => (c.plan.clone(), c.labels.clone(), c.enabled),
            None => (
                j.plan_claim
                    .as_ref()
                    .and_then(|pc| claims.get(pc))
                    .and_then(claim_string)
                    .filter(|s| valid_value(s)),
                BTreeMap::new(),
                true,
            ),
        };
        Tried::Found(Identity {
            client_id,
            plan,
            labels,
            enabled,
            extra,
            strip,
            fingerprint: fp,
        })
    }
}

/// The request path is ambiguous (see [`gatehouse_core::path::is_ambiguous_path`]);
/// a path that is not UTF-8 is too.
pub fn ambiguous_path(headers: &HeaderSnapshot) -> bool {
    match headers.first_str(":path") {
        Some(Ok(raw)) => is_ambiguous_path(split_path_query(raw).0),
        Some(Err(())) => true,
        None => false,
    }
}

/// A CORS preflight: `OPTIONS` with `origin` and
/// `access-control-request-method` (what jwt_authn's `bypass_cors_preflight`
/// lets through).
pub fn cors_preflight(headers: &HeaderSnapshot) -> bool {
    headers.first(":method") == Some(b"OPTIONS".as_slice())
        && headers.contains("origin")
        && headers.contains("access-control-request-method")
}

fn allowed(r: &CompiledRule, id: &str, plan: Option<&str>) -> bool {
    (r.allowed_clients.is_empty() || r.allowed_clients.iter().any(|c| c == id))
        && (r.allowed_plans.is_empty()
            || plan.is_some_and(|p| r.allowed_plans.iter().any(|x| x == p)))
}

fn claim_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Identity values: 1-128 visible ASCII characters.
pub fn valid_value(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic())
}

fn valid_header_value(s: &str) -> bool {
    s.len() <= 1024
        && s.bytes()
            .all(|b| b == b' ' || b == b'\t' || b.is_ascii_graphic())
}

struct Identity {
    client_id: String,
    plan: Option<String>,
    labels: BTreeMap<String, String>,
    enabled: bool,
    extra: Vec<HeaderOp>,
    strip: Vec<HeaderOp>,
    fingerprint: String,
}

enum Tried {
    Absent,
    Found(Identity),
    Rejected(Outcome),
    NeedFetch(usize),
    Wait(usize),
}
