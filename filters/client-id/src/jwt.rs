//! JWT verification with `jwt-simple` against JWKS keys.
//!
//! The token header is read first (unverified) only to pick the issuer and
//! the key: `alg: none` and unknown algorithms are refused before any key is
//! touched, and every key carries its own algorithm allowlist derived from
//! its type (an RSA/EC/OKP key never verifies an HMAC algorithm, an `oct`
//! key never an asymmetric one), its `alg` member and the issuer's list.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jwt_simple::prelude::*;
use jwt_simple::JWTError;
use serde_json::{Map, Value};
use std::fmt;

/// Supported signature algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Alg {
    HS256,
    HS384,
    HS512,
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
}

pub const ALL_ALGS: [Alg; 12] = [
    Alg::HS256,
    Alg::HS384,
    Alg::HS512,
    Alg::RS256,
    Alg::RS384,
    Alg::RS512,
    Alg::PS256,
    Alg::PS384,
    Alg::PS512,
    Alg::ES256,
    Alg::ES384,
    Alg::EdDSA,
];

impl Alg {
    pub fn parse(s: &str) -> Option<Alg> {
        ALL_ALGS.iter().copied().find(|a| a.name() == s)
    }

    pub fn name(self) -> &'static str {
        match self {
            Alg::HS256 => "HS256",
            Alg::HS384 => "HS384",
            Alg::HS512 => "HS512",
            Alg::RS256 => "RS256",
            Alg::RS384 => "RS384",
            Alg::RS512 => "RS512",
            Alg::PS256 => "PS256",
            Alg::PS384 => "PS384",
            Alg::PS512 => "PS512",
            Alg::ES256 => "ES256",
            Alg::ES384 => "ES384",
            Alg::EdDSA => "EdDSA",
        }
    }

    pub fn is_hmac(self) -> bool {
        matches!(self, Alg::HS256 | Alg::HS384 | Alg::HS512)
    }
}

/// Public key material of one JWK.
#[derive(Clone)]
pub enum Material {
    /// HMAC secret (`kty: oct`).
    Oct(Vec<u8>),
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// SEC1 uncompressed point.
    P256(Vec<u8>),
    P384(Vec<u8>),
    Ed25519(Vec<u8>),
}

impl fmt::Debug for Material {
    // Never print key bytes (an `oct` key is a secret).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self {
            Material::Oct(_) => "oct",
            Material::Rsa { .. } => "RSA",
            Material::P256(_) => "EC P-256",
            Material::P384(_) => "EC P-384",
            Material::Ed25519(_) => "OKP Ed25519",
        };
        f.write_str(kind)
    }
}

impl Material {
    fn compatible(&self, alg: Alg) -> bool {
        match self {
            Material::Oct(_) => alg.is_hmac(),
            Material::Rsa { .. } => matches!(
                alg,
                Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256 | Alg::PS384 | Alg::PS512
            ),
            Material::P256(_) => alg == Alg::ES256,
            Material::P384(_) => alg == Alg::ES384,
            Material::Ed25519(_) => alg == Alg::EdDSA,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Jwk {
    pub kid: Option<String>,
    pub material: Material,
    /// Algorithms this key may verify (never empty).
    pub algs: Vec<Alg>,
}

#[derive(Debug, Clone, Default)]
pub struct KeySet {
    pub keys: Vec<Jwk>,
}

impl KeySet {
    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }
}

/// A JWKS problem: the JSON path inside the document and a reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksError {
    pub field: String,
    pub reason: String,
}

fn jerr(field: impl Into<String>, reason: impl Into<String>) -> JwksError {
    JwksError {
        field: field.into(),
        reason: reason.into(),
    }
}

fn b64(v: &Value, field: &str) -> Result<Vec<u8>, JwksError> {
    let s = v
        .as_str()
        .ok_or_else(|| jerr(field, "must be a base64url string"))?;
    URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|_| jerr(field, "is not valid base64url"))
}

/// JWK members holding private key material (RFC 7518 section 6).
const PRIVATE_MEMBERS: [&str; 7] = ["d", "p", "q", "dp", "dq", "qi", "oth"];

/// Parses a JWKS document. `allowed` limits the algorithms of every key.
///
/// `strict` (inline config): every key must be usable, or the document is
/// refused. Not strict (remote documents): unusable keys (other key types,
/// encryption keys) are skipped, and the set must still hold at least one key.
pub fn parse_jwks(doc: &Value, allowed: &[Alg], strict: bool) -> Result<KeySet, JwksError> {
    let keys = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| jerr("keys", "a JWKS must be an object with a `keys` array"))?;
    let mut out = KeySet::default();
    for (i, k) in keys.iter().enumerate() {
        if strict {
            // A private JWK pasted into the config: refused (naming the
            // member, never quoting it). Verification needs public keys only.
            if let Some(m) = PRIVATE_MEMBERS.iter().find(|m| k.get(**m).is_some()) {
                return Err(jerr(
                    format!("keys[{i}].{m}"),
                    "private key material does not belong in the configuration; give the public key only (the value is not shown)",
                ));
            }
        }
        match parse_jwk(k, allowed) {
            Ok(jwk) => {
                if let Some(kid) = &jwk.kid {
                    if out.has_kid(kid) && strict {
                        return Err(jerr(
                            format!("keys[{i}].kid"),
                            format!("duplicate kid `{kid}`"),
                        ));
                    }
                }
                out.keys.push(jwk)
            }
            Err(e) if strict => {
                return Err(jerr(format!("keys[{i}]{}", e.field), e.reason));
            }
            Err(_) => {}
        }
    }
    if out.keys.is_empty() {
        return Err(jerr("keys", "no usable signature key"));
    }
    Ok(out)
}

fn parse_jwk(k: &Value, allowed: &[Alg]) -> Result<Jwk, JwksError> {
    let obj = k.as_object().ok_or_else(|| jerr("", "must be an object"))?;
    let get = |name: &str| obj.get(name).unwrap_or(&Value::Null);
    let kty = get("kty")
        .as_str()
        .ok_or_else(|| jerr(".kty", "missing or not a string"))?;
    if let Some(u) = obj.get("use") {
        if u.as_str() != Some("sig") {
            return Err(jerr(".use", "only `sig` keys are used"));
        }
    }
    let kid = match obj.get("kid") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(jerr(".kid", "must be a string")),
    };
    let material = match kty {
        "oct" => {
            let key = b64(get("k"), ".k")?;
            if key.len() < 32 {
                return Err(jerr(".k", "HMAC keys must be at least 32 bytes"));
            }
            Material::Oct(key)
        }
        "RSA" => {
            let n = b64(get("n"), ".n")?;
            let e = b64(get("e"), ".e")?;
            // jwt-simple refuses moduli under 2048 bits; check here so the
            // config is refused rather than every token.
            if RS256PublicKey::from_components(&n, &e).is_err() {
                return Err(jerr(
                    ".n",
                    "not a usable RSA public key (2048 bits or more)",
                ));
            }
            Material::Rsa { n, e }
        }
        "EC" => {
            let crv = get("crv")
                .as_str()
                .ok_or_else(|| jerr(".crv", "missing or not a string"))?;
            let x = b64(get("x"), ".x")?;
            let y = b64(get("y"), ".y")?;
            let mut point = vec![4u8];
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            match crv {
                "P-256" => {
                    if x.len() != 32 || y.len() != 32 || ES256PublicKey::from_bytes(&point).is_err()
                    {
                        return Err(jerr(".x", "not a valid P-256 point"));
                    }
                    Material::P256(point)
                }
                "P-384" => {
                    if x.len() != 48 || y.len() != 48 || ES384PublicKey::from_bytes(&point).is_err()
                    {
                        return Err(jerr(".x", "not a valid P-384 point"));
                    }
                    Material::P384(point)
                }
                other => return Err(jerr(".crv", format!("unsupported curve `{other}`"))),
            }
        }
        "OKP" => {
            if get("crv").as_str() != Some("Ed25519") {
                return Err(jerr(".crv", "only Ed25519 is supported"));
            }
            let x = b64(get("x"), ".x")?;
            if Ed25519PublicKey::from_bytes(&x).is_err() {
                return Err(jerr(".x", "not a valid Ed25519 public key"));
            }
            Material::Ed25519(x)
        }
        other => return Err(jerr(".kty", format!("unsupported key type `{other}`"))),
    };
    let jwk_alg = match obj.get("alg") {
        None => None,
        Some(Value::String(a)) => match a.as_str() {
            "none" => return Err(jerr(".alg", "`none` is never accepted")),
            name => Some(
                Alg::parse(name)
                    .ok_or_else(|| jerr(".alg", format!("unknown algorithm `{name}`")))?,
            ),
        },
        Some(_) => return Err(jerr(".alg", "must be a string")),
    };
    if let Some(a) = jwk_alg {
        if !material.compatible(a) {
            return Err(jerr(
                ".alg",
                format!("`{}` cannot be used with a {material:?} key", a.name()),
            ));
        }
    }
    let algs: Vec<Alg> = allowed
        .iter()
        .copied()
        .filter(|a| material.compatible(*a) && jwk_alg.is_none_or(|j| j == *a))
        .collect();
    if algs.is_empty() {
        return Err(jerr("", "no allowed algorithm fits this key"));
    }
    Ok(Jwk {
        kid,
        material,
        algs,
    })
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtError {
    Malformed,
    TooLong,
    AlgNone,
    AlgorithmNotAllowed,
    UnknownIssuer,
    UnknownKid,
    BadSignature,
    Expired,
    NotYetValid,
    WrongAudience,
    MissingClaim,
    /// A validly signed token whose claims have the wrong type or an
    /// impossible value (e.g. a numeric `jti`, a string or out-of-range `exp`).
    BadClaims,
}

impl JwtError {
    pub fn reason(self) -> &'static str {
        match self {
            JwtError::Malformed => "malformed_token",
            JwtError::TooLong => "token_too_long",
            JwtError::AlgNone => "alg_none",
            JwtError::AlgorithmNotAllowed => "algorithm_not_allowed",
            JwtError::UnknownIssuer => "wrong_issuer",
            JwtError::UnknownKid => "unknown_kid",
            JwtError::BadSignature => "bad_signature",
            JwtError::Expired => "expired",
            JwtError::NotYetValid => "not_yet_valid",
            JwtError::WrongAudience => "wrong_audience",
            JwtError::MissingClaim => "missing_claim",
            JwtError::BadClaims => "bad_claims",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            JwtError::Malformed => "the token is malformed",
            JwtError::TooLong => "the token is too long",
            JwtError::AlgNone => "unsigned tokens are not accepted",
            JwtError::AlgorithmNotAllowed => "the token's algorithm is not allowed for its key",
            JwtError::UnknownIssuer => "the token's issuer is not trusted",
            JwtError::UnknownKid => "the token's signing key is unknown",
            JwtError::BadSignature => "the token's signature is invalid",
            JwtError::Expired => "the token has expired",
            JwtError::NotYetValid => "the token is not valid yet",
            JwtError::WrongAudience => "the token is not meant for this audience",
            JwtError::MissingClaim => "the token lacks a required claim",
            JwtError::BadClaims => "the token's claims are invalid",
        }
    }
}

/// What the token says about itself before verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peek {
    pub alg: Alg,
    pub kid: Option<String>,
    pub iss: Option<String>,
}

fn decode_json_part(part: &str) -> Result<Map<String, Value>, JwtError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| JwtError::Malformed)?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(JwtError::Malformed),
    }
}

/// True when `s` has the compact JWS shape (three base64url parts).
pub fn looks_like_jwt(s: &str) -> bool {
    let mut n = 0;
    for part in s.split('.') {
        n += 1;
        if !part
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return false;
        }
    }
    n == 3
}

/// Reads the header and the (unverified) issuer.
pub fn peek(token: &str, max_len: usize) -> Result<Peek, JwtError> {
    if token.len() > max_len {
        return Err(JwtError::TooLong);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(_sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };
    let header = decode_json_part(h)?;
    let alg = match header.get("alg").and_then(Value::as_str) {
        None => return Err(JwtError::Malformed),
        Some(a) if a.eq_ignore_ascii_case("none") => return Err(JwtError::AlgNone),
        Some(a) => Alg::parse(a).ok_or(JwtError::AlgorithmNotAllowed)?,
    };
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(k)) => Some(k.clone()),
        Some(_) => return Err(JwtError::Malformed),
    };
    let payload = decode_json_part(p)?;
    let iss = payload
        .get("iss")
        .and_then(Value::as_str)
        .map(str::to_string);
    Ok(Peek { alg, kid, iss })
}

/// Checks that apply to one issuer.
#[derive(Debug, Clone)]
pub struct Policy {
    pub issuer: String,
    pub audiences: Vec<String>,
    pub required_claims: Vec<String>,
    pub skew_seconds: u64,
    pub max_len: usize,
    /// The claim naming the client: it may be a string or an integer, even
    /// when it is `sub` (which is otherwise a string).
    pub client_id_claim: String,
}

/// Picks the candidate keys for a token. `Err(UnknownKid)` when the token
/// names a kid the set lacks.
pub fn candidates<'k>(keys: &'k KeySet, peek: &Peek) -> Result<Vec<&'k Jwk>, JwtError> {
    if let Some(kid) = &peek.kid {
        let named: Vec<&Jwk> = keys
            .keys
            .iter()
            .filter(|k| k.kid.as_deref() == Some(kid.as_str()))
            .collect();
        if named.is_empty() {
            return Err(JwtError::UnknownKid);
        }
        let fit: Vec<&Jwk> = named
            .into_iter()
            .filter(|k| k.algs.contains(&peek.alg))
            .collect();
        if fit.is_empty() {
            return Err(JwtError::AlgorithmNotAllowed);
        }
        return Ok(fit);
    }
    let fit: Vec<&Jwk> = keys
        .keys
        .iter()
        .filter(|k| k.algs.contains(&peek.alg))
        .take(MAX_CANDIDATES)
        .collect();
    if fit.is_empty() {
        return Err(JwtError::AlgorithmNotAllowed);
    }
    Ok(fit)
}

/// Keys tried for a token without `kid`.
pub const MAX_CANDIDATES: usize = 8;

/// Latest time accepted in `exp`, `nbf` and `iat`: 9999-12-31T23:59:59Z.
/// A later value is no real time (1e29, 1.8e308 ...): the token is refused
/// (`bad_claims`) rather than read as "never expires".
pub const MAX_NUMERIC_DATE: u64 = 253_402_300_799;

/// Verifies `token` (already peeked) against `keys`; returns its claims.
///
/// The signature is checked first (by `jwt-simple`); only a validly signed
/// token has its claims judged, by [`check_claims`], so a claim problem is
/// never reported as a bad signature and a forged token never as a claim
/// problem.
pub fn verify(
    token: &str,
    peek: &Peek,
    keys: &KeySet,
    policy: &Policy,
    now_secs: u64,
) -> Result<Map<String, Value>, JwtError> {
    let cands = candidates(keys, peek)?;
    // The header as jwt-simple reads it. Once it parses, a JSON error from
    // jwt-simple can only come from the claims, which it reads after the
    // signature verified (see `signature_verified`).
    if Token::decode_metadata(token).is_err() {
        return Err(JwtError::Malformed);
    }
    let mut worst = JwtError::BadSignature;
    let mut signed = false;
    for key in cands {
        match verify_with(token, peek.alg, key, policy, now_secs) {
            Ok(()) => {
                signed = true;
                break;
            }
            Err(JwtError::BadSignature) => {}
            Err(e) => worst = e,
        }
    }
    if !signed {
        return Err(worst);
    }
    let payload = token.split('.').nth(1).ok_or(JwtError::Malformed)?;
    let claims = decode_json_part(payload)?;
    check_claims(&claims, policy, now_secs)?;
    Ok(claims)
}

/// A registered time claim (`exp`, `nbf`, `iat`): absent, or a non-negative
/// number of seconds up to [`MAX_NUMERIC_DATE`] (fractions are dropped).
pub fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<u64>, JwtError> {
    let Some(v) = claims.get(name) else {
        return Ok(None);
    };
    let Value::Number(n) = v else {
        return Err(JwtError::BadClaims);
    };
    let secs = match (n.as_u64(), n.as_f64()) {
        (Some(u), _) => u,
        (None, Some(f)) if f.is_finite() && f >= 0.0 && f <= MAX_NUMERIC_DATE as f64 => f as u64,
        _ => return Err(JwtError::BadClaims),
    };
    if secs > MAX_NUMERIC_DATE {
        return Err(JwtError::BadClaims);
    }
    Ok(Some(secs))
}

/// The claim checks of a validly signed token: types of the registered
/// claims, times (with the skew), issuer, audience, required claims.
pub fn check_claims(
    claims: &Map<String, Value>,
    policy: &Policy,
    now_secs: u64,
) -> Result<(), JwtError> {
    // Types first: a claim of the wrong type is `bad_claims` whatever else.
    // (`null` counts as absent, as for `required_claims`.)
    let string_or_absent = |name: &str| {
        matches!(
            claims.get(name),
            None | Some(Value::Null) | Some(Value::String(_))
        )
    };
    if !string_or_absent("jti") || !string_or_absent("iss") {
        return Err(JwtError::BadClaims);
    }
    match claims.get("sub") {
        None | Some(Value::Null) | Some(Value::String(_)) => {}
        Some(Value::Number(n)) if policy.client_id_claim == "sub" && (n.is_u64() || n.is_i64()) => {
        }
        Some(_) => return Err(JwtError::BadClaims),
    }
    let audiences: Option<Vec<&str>> = match claims.get("aud") {
        None => None,
        Some(Value::String(a)) => Some(vec![a.as_str()]),
        Some(Value::Array(list)) => Some(
            list.iter()
                .map(Value::as_str)
                .collect::<Option<Vec<&str>>>()
                .ok_or(JwtError::BadClaims)?,
        ),
        Some(_) => return Err(JwtError::BadClaims),
    };
    let exp = numeric_date(claims, "exp")?;
    let nbf = numeric_date(claims, "nbf")?;
    let iat = numeric_date(claims, "iat")?;
    let skew = policy.skew_seconds;
    if exp.is_some_and(|e| now_secs > e.saturating_add(skew)) {
        return Err(JwtError::Expired);
    }
    if nbf.is_some_and(|t| t > now_secs.saturating_add(skew))
        || iat.is_some_and(|t| t > now_secs.saturating_add(skew))
    {
        return Err(JwtError::NotYetValid);
    }
    if claims.get("iss").and_then(Value::as_str) != Some(policy.issuer.as_str()) {
        return Err(JwtError::UnknownIssuer);
    }
    if !policy.audiences.is_empty() {
        let ok = audiences
            .is_some_and(|list| list.iter().any(|a| policy.audiences.iter().any(|p| p == a)));
        if !ok {
            return Err(JwtError::WrongAudience);
        }
    }
    for c in &policy.required_claims {
        if claims.get(c).is_none_or(Value::is_null) {
            return Err(JwtError::MissingClaim);
        }
    }
    Ok(())
}

fn options(policy: &Policy, now_secs: u64) -> VerificationOptions {
    // The claims are judged by `check_claims`; jwt-simple only verifies the
    // signature (its own time checks may fail, after the signature).
    VerificationOptions {
        time_tolerance: Some(Duration::from_secs(policy.skew_seconds)),
        max_token_length: Some(policy.max_len),
        artificial_time: Some(UnixTimeStamp::from_secs(now_secs)),
        ..Default::default()
    }
}

fn verify_with(
    token: &str,
    alg: Alg,
    key: &Jwk,
    policy: &Policy,
    now_secs: u64,
) -> Result<(), JwtError> {
    let o = Some(options(policy, now_secs));
    let r: Result<JWTClaims<NoCustomClaims>, jwt_simple::Error> = match (&key.material, alg) {
        (Material::Oct(k), Alg::HS256) => HS256Key::from_bytes(k).verify_token(token, o),
        (Material::Oct(k), Alg::HS384) => HS384Key::from_bytes(k).verify_token(token, o),
        (Material::Oct(k), Alg::HS512) => HS512Key::from_bytes(k).verify_token(token, o),
        (Material::Rsa { n, e }, Alg::RS256) => {
            RS256PublicKey::from_components(n, e).and_then(|k| k.verify_token(token, o))
        }
        (Material::Rsa { n, e }, Alg::RS384) => {
            RS384PublicKey::from_components(n, e).and_then(|k| k.verify_token(token, o))
        }
        (Material::Rsa { n, e }, Alg::RS512) => {
            RS512PublicKey::from_components(n, e).and_then(|k| k.verify_token(token, o))
        }
        (Material::Rsa { n, e }, Alg::PS256) => {
            PS256PublicKey::from_components(n, e).and_then(|k| k.verify_token(token, o))
        }
        (Material::Rsa { n, e }, Alg::PS384) => {
            PS384PublicKey::from_components(n, e).and_then(|k| k.verify_token(token, o))
        }
        (Material::Rsa { n, e }, Alg::PS512) => {
            PS512PublicKey::from_components(n, e).and_then(|k| k.verify_token(token, o))
        }
        (Material::P256(p), Alg::ES256) => {
            ES256PublicKey::from_bytes(p).and_then(|k| k.verify_token(token, o))
        }
        (Material::P384(p), Alg::ES384) => {
            ES384PublicKey::from_bytes(p).and_then(|k| k.verify_token(token, o))
        }
        (Material::Ed25519(p), Alg::EdDSA) => {
            Ed25519PublicKey::from_bytes(p).and_then(|k| k.verify_token(token, o))
        }
        // Never reached: candidates() only pairs a key with its own algorithms.
        _ => return Err(JwtError::AlgorithmNotAllowed),
    };
    match r {
        Ok(_) => Ok(()),
        Err(e) if signature_verified(&e) => Ok(()),
        Err(e) => Err(map_error(&e)),
    }
}

/// Whether a jwt-simple error can only happen after the signature verified:
/// its claim-time checks, or the claims JSON not fitting its typed claims
/// (a numeric `sub`, a string `exp`: the header was already parsed by
/// `Token::decode_metadata`, so a JSON error is the claims'). Every other
/// error, including ones jwt-simple raises before or while checking the
/// signature, is not.
fn signature_verified(e: &jwt_simple::Error) -> bool {
    matches!(
        e.downcast_ref::<JWTError>(),
        Some(JWTError::TokenHasExpired)
            | Some(JWTError::TokenNotValidYet)
            | Some(JWTError::ClockDrift)
    ) || e.downcast_ref::<serde_json::Error>().is_some()
}

fn map_error(e: &jwt_simple::Error) -> JwtError {
    match e.downcast_ref::<JWTError>() {
        Some(JWTError::AlgorithmMismatch) => JwtError::AlgorithmNotAllowed,
        Some(JWTError::TokenTooLong) => JwtError::TooLong,
        // An invalid signature, signature bytes that do not even decode, ...
        _ => JwtError::BadSignature,
    }
}
