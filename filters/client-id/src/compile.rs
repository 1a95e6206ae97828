//! Compiling the configuration into the [`Engine`], once per `on_configure`.

use crate::apikey;
use crate::config::{check_header, Config, IssuerConfig, Method, Mode};
use crate::engine::*;
use crate::jwt::{self, Alg, Policy, ALL_ALGS};
use crate::verified::VerifiedCache;
use gatehouse_core::config::{ensure, ConfigError};
use gatehouse_core::host::HostPattern;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

pub(crate) fn err(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::new(field, reason)
}

pub(crate) fn parse_algs(
    field: &str,
    names: &Option<Vec<String>>,
) -> Result<Vec<Alg>, ConfigError> {
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

pub(crate) fn compile_issuer(
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
                label_headers: match &cfg.headers.label_prefix {
                    Some(p) => c
                        .labels
                        .iter()
                        .map(|(k, v)| (format!("{p}{k}"), v.clone()))
                        .collect(),
                    None => Vec::new(),
                },
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

        // Every header the filter owns, once each (see `removal_ops`).
        let mut owned_headers: Vec<String> = Vec::new();
        let claim_headers = jwt
            .iter()
            .flat_map(|j| j.claims_to_headers.iter().map(|(_, h)| h));
        for n in [&h.client_id, &h.plan]
            .into_iter()
            .chain(&h.method)
            .chain(claim_headers)
        {
            if !owned_headers.contains(n) {
                owned_headers.push(n.clone());
            }
        }
        let owned_dashed = owned_headers.iter().map(|n| n.replace('_', "-")).collect();

        let challenges_plain = challenges(&methods, &cfg.realm, None);
        let challenges_bad_key = challenges(&methods, &cfg.realm, Some((&Method::ApiKey, "")));

        Ok(Engine {
            challenges_plain,
            challenges_bad_key,
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
            owned_headers,
            owned_dashed,
            label_prefix_dashed: h.label_prefix.as_ref().map(|p| p.replace('_', "-")),
            anonymous,
            default_mode: cfg.default_mode,
            rules,
            strip_credentials: cfg.strip_credentials,
            bypass_cors_preflight: cfg.bypass_cors_preflight,
            realm: cfg.realm.clone(),
            path_rules: cfg.rules.iter().any(|r| !r.paths.is_empty()),
        })
    }
}
