//! Identifying the caller: API key, mTLS certificate, JWT.

use crate::apikey::{self, Source};
use crate::config::{CertField, Method};
use crate::engine::*;
use crate::jwt::{self, JwtError, Peek};
use gatehouse_core::path::split_path_query;
use gatehouse_core::{HeaderOp, HeaderSnapshot};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::rc::Rc;

impl Engine {
    /// The presented API key (borrowed from the request unless it had to be
    /// decoded) and where it was found (borrowing the configured name).
    pub(crate) fn find_api_key<'h>(
        &self,
        headers: &'h HeaderSnapshot,
    ) -> Option<(Cow<'h, str>, Source<'_>)> {
        if let Some(h) = &self.key_header {
            if let Some(v) = headers.first(h) {
                let s = match String::from_utf8_lossy(v) {
                    Cow::Borrowed(s) => Cow::Borrowed(s.trim()),
                    Cow::Owned(s) => Cow::Owned(s.trim().to_string()),
                };
                return Some((s, Source::Header(h)));
            }
        }
        if let Some((scheme, value)) = apikey::authorization(headers) {
            // Configured schemes are lower-case; the request's any case.
            if self
                .key_schemes
                .iter()
                .any(|s| scheme.eq_ignore_ascii_case(s))
            {
                let jwt_owns = scheme.eq_ignore_ascii_case("bearer")
                    && self.jwt.is_some()
                    && jwt::looks_like_jwt(value);
                if !jwt_owns {
                    return Some((Cow::Borrowed(value), Source::Authorization));
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
                    return Some((Cow::Owned(v), Source::Query(q)));
                }
            }
        }
        if let Some(c) = &self.key_cookie {
            if let Some(v) = apikey::cookie(headers, c) {
                return Some((Cow::Owned(v), Source::Cookie(c)));
            }
        }
        None
    }

    pub(crate) fn try_api_key(&self, headers: &HeaderSnapshot) -> Tried<'_> {
        let Some((key, source)) = self.find_api_key(headers) else {
            return Tried::Absent;
        };
        // Hashed once: the lookup and the fingerprint both use the digest.
        let digest = apikey::sha256(key.as_bytes());
        let fp = apikey::fingerprint_of(&digest);
        // Built only when it will be applied (see `accept`).
        let strip = if !self.strip_credentials.strips(Method::ApiKey) {
            Vec::new()
        } else {
            match source {
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
            }
        };
        match apikey::lookup_digest(&self.key_table, &digest) {
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

    pub(crate) fn try_mtls(&self, peer: Option<&dyn Peer>) -> Tried<'_> {
        let Some(peer) = peer.filter(|p| p.present()) else {
            return Tried::Absent;
        };
        let fp = peer
            .sha256()
            .map(|d| d.get(..8).unwrap_or(d).to_string())
            .unwrap_or_default();
        // Fields after the one that matched are never read.
        for f in &self.cert_fields {
            let hit = match f {
                CertField::UriSan => peer.uri_san().and_then(|v| self.by_uri_san.get(v)),
                CertField::Subject => peer.subject().and_then(|v| self.by_subject.get(v)),
                CertField::Sha256 => peer
                    .sha256()
                    .and_then(|v| self.by_digest.get(normalize_digest(v).as_ref())),
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

    pub(crate) fn try_jwt(&self, input: &Input<'_>, remote: &mut dyn RemoteKeys) -> Tried<'_> {
        let Some(j) = &self.jwt else {
            return Tried::Absent;
        };
        let Some((scheme, token)) = apikey::authorization(input.headers) else {
            return Tried::Absent;
        };
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Tried::Absent;
        }
        // A Bearer value that is not JWT-shaped may be an API key.
        if !jwt::looks_like_jwt(token)
            && self.methods.contains(&Method::ApiKey)
            && self.key_schemes.iter().any(|s| s == "bearer")
        {
            return Tried::Absent;
        }
        // Hashed once: the verified-cache key and the fingerprint are both
        // the token's SHA-256.
        let cache_key = apikey::sha256(token.as_bytes());
        let fp = apikey::fingerprint_of(&cache_key);
        let fail = |e: JwtError| {
            Tried::Rejected(self.reject(
                401,
                e.reason(),
                e.message(),
                Some((&Method::Jwt, e.message())),
                Some(fp.clone()),
            ))
        };
        let (cached, enabled) = match j.verified.try_borrow_mut() {
            Ok(mut c) => (c.get(&cache_key, input.now_secs()), c.enabled()),
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
            None => match self.verify_jwt(j, token, input, remote, &fail, &fp) {
                Ok((idx, claims)) => {
                    let claims = Rc::new(claims);
                    if let Ok(mut c) = j.verified.try_borrow_mut() {
                        c.insert(cache_key, idx, &claims, input.now_secs());
                    }
                    claims
                }
                Err(t) => return t,
            },
        };
        self.identity_from_claims(j, &claims, fp.clone(), &fail)
    }

    /// Full verification of a token not in the verified cache: the issuer
    /// index and the claims, or what to do instead.
    // `Tried` is the engine's internal answer, returned once per request.
    #[allow(clippy::result_large_err)]
    pub(crate) fn verify_jwt<'e>(
        &'e self,
        j: &JwtEngine,
        token: &str,
        input: &Input<'_>,
        remote: &mut dyn RemoteKeys,
        fail: &dyn Fn(JwtError) -> Tried<'e>,
        fp: &str,
    ) -> Result<(usize, Map<String, Value>), Tried<'e>> {
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
        match jwt::verify(token, &peek, &keys, &issuer.policy, input.now_secs()) {
            Ok(c) => Ok((idx, c)),
            Err(e) => Err(fail(e)),
        }
    }

    /// The identity a verified token's claims give.
    pub(crate) fn identity_from_claims<'e>(
        &'e self,
        j: &JwtEngine,
        claims: &Map<String, Value>,
        fp: String,
        fail: &dyn Fn(JwtError) -> Tried<'e>,
    ) -> Tried<'e> {
        let client_id: Cow<'e, str> = match claims.get(&j.client_id_claim) {
            None | Some(Value::Null) => return fail(JwtError::MissingClaim),
            Some(Value::String(s)) if valid_value(s) => Cow::Owned(s.clone()),
            Some(Value::Number(n)) if n.is_u64() || n.is_i64() => Cow::Owned(n.to_string()),
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
        // Built only when it will be applied (see `accept`).
        let strip = if self.strip_credentials.strips(Method::Jwt) {
            vec![HeaderOp::remove("authorization")]
        } else {
            Vec::new()
        };
        let (plan, labels, enabled) = match self
            .by_id
            .get(client_id.as_ref())
            .and_then(|i| self.clients.get(*i))
        {
            Some(c) => (
                c.plan.as_deref().map(Cow::Borrowed),
                c.label_headers.as_slice(),
                c.enabled,
            ),
            None => (
                j.plan_claim
                    .as_ref()
                    .and_then(|pc| claims.get(pc))
                    .and_then(claim_string)
                    .filter(|s| valid_value(s))
                    .map(Cow::Owned),
                [].as_slice(),
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

pub(crate) fn claim_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A certificate digest as configured digests are kept: lower-case hex
/// without `:` (allocates only when the presented one is not already so).
fn normalize_digest(v: &str) -> Cow<'_, str> {
    if v.bytes().any(|b| b == b':' || b.is_ascii_uppercase()) {
        Cow::Owned(v.to_ascii_lowercase().replace(':', ""))
    } else {
        Cow::Borrowed(v)
    }
}
