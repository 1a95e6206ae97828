//! The compiled configuration ([`Engine`]) and the per-request decision.
//! Compilation is in [`crate::compile`], identification by API key, mTLS
//! certificate and JWT in [`crate::identify`].

use crate::config::{CertField, Method, Mode, RemoteJwks, StripCredentials};
use crate::jwt::{Alg, KeySet, Policy};
use crate::verified::VerifiedCache;
use gatehouse_core::host::{normalize_host, HostPattern};
use gatehouse_core::path::{is_ambiguous_path, split_path_query, PathMatch};
use gatehouse_core::random::OnceClock;
use gatehouse_core::{Clock, HeaderOp, HeaderSnapshot};
use std::borrow::Cow;
use std::cell::{Cell, OnceCell, RefCell};
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
    /// The label headers (`label_prefix` + label, value), built once at
    /// configuration; empty without `headers.label_prefix`.
    pub label_headers: Vec<(String, String)>,
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
pub(crate) struct JwtEngine {
    pub(crate) issuers: Vec<Issuer>,
    pub(crate) client_id_claim: String,
    pub(crate) plan_claim: Option<String>,
    pub(crate) claims_to_headers: Vec<(String, String)>,
    pub(crate) max_len: usize,
    pub(crate) verified: RefCell<VerifiedCache>,
    /// Verified-cache lookups since the last [`Engine::take_cache_events`]:
    /// (hits, misses).
    pub(crate) cache_events: Cell<(u64, u64)>,
}

#[derive(Debug, Clone)]
pub(crate) struct CompiledRule {
    pub(crate) hosts: Vec<HostPattern>,
    pub(crate) paths: Vec<PathMatch>,
    pub(crate) mode: Mode,
    pub(crate) allowed_clients: Vec<String>,
    pub(crate) allowed_plans: Vec<String>,
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

/// What the engine reads of the connection's certificate. [`PeerCert`] is
/// one read in full; [`LazyPeer`] reads each property on first use, so a
/// request decided before its certificate is looked at (an API key or JWT
/// tried first, a skipped path) reads none, and one matched by URI SAN
/// never reads the subject.
pub trait Peer {
    /// `connection.mtls`: a client certificate was presented and verified.
    fn present(&self) -> bool;
    fn uri_san(&self) -> Option<&str>;
    fn subject(&self) -> Option<&str>;
    fn sha256(&self) -> Option<&str>;
}

impl Peer for PeerCert {
    fn present(&self) -> bool {
        self.present
    }
    fn uri_san(&self) -> Option<&str> {
        self.uri_san.as_deref()
    }
    fn subject(&self) -> Option<&str> {
        self.subject.as_deref()
    }
    fn sha256(&self) -> Option<&str> {
        self.sha256.as_deref()
    }
}

/// Reads one connection property (an Envoy attribute path); the adapter
/// passes the host's `get_property`.
pub type PropertyReader = fn(&[&str]) -> Option<Vec<u8>>;

/// A [`Peer`] reading each connection property at most once, when the
/// engine first asks for it.
pub struct LazyPeer {
    read: PropertyReader,
    present: OnceCell<bool>,
    uri_san: OnceCell<Option<String>>,
    subject: OnceCell<Option<String>>,
    sha256: OnceCell<Option<String>>,
}

impl LazyPeer {
    pub fn new(read: PropertyReader) -> LazyPeer {
        LazyPeer {
            read,
            present: OnceCell::new(),
            uri_san: OnceCell::new(),
            subject: OnceCell::new(),
            sha256: OnceCell::new(),
        }
    }

    /// Everything, read now (for a request that will be decided again from
    /// another context, where this connection's properties are out of reach).
    pub fn snapshot(&self) -> PeerCert {
        if !self.present() {
            return PeerCert::default();
        }
        PeerCert {
            present: true,
            uri_san: self.uri_san().map(str::to_string),
            subject: self.subject().map(str::to_string),
            sha256: self.sha256().map(str::to_string),
        }
    }

    /// A non-empty UTF-8 property of a connection that presented a
    /// certificate.
    fn string<'s>(&'s self, cell: &'s OnceCell<Option<String>>, name: &str) -> Option<&'s str> {
        if !self.present() {
            return None;
        }
        cell.get_or_init(|| {
            (self.read)(&["connection", name])
                .and_then(|b| String::from_utf8(b).ok())
                .filter(|s| !s.is_empty())
        })
        .as_deref()
    }
}

impl Peer for LazyPeer {
    fn present(&self) -> bool {
        *self.present.get_or_init(|| {
            matches!(
                (self.read)(&["connection", "mtls"]).as_deref(),
                Some([1]) | Some(b"true")
            )
        })
    }
    fn uri_san(&self) -> Option<&str> {
        self.string(&self.uri_san, "uri_san_peer_certificate")
    }
    fn subject(&self) -> Option<&str> {
        self.string(&self.subject, "subject_peer_certificate")
    }
    fn sha256(&self) -> Option<&str> {
        self.string(&self.sha256, "sha256_peer_certificate_digest")
    }
}

/// What the adapter knows about a request.
pub struct Input<'a> {
    pub headers: &'a HeaderSnapshot,
    /// `None` unless [`Engine::needs_peer`].
    pub peer: Option<&'a dyn Peer>,
    /// The request's time, read only when the decision needs it (a JWT's
    /// `exp`/`nbf`/`iat`, the verified-token cache, remote key sets): an
    /// API key, a certificate or a request without credential never reads
    /// the clock.
    pub clock: &'a OnceClock<'a>,
}

impl Input<'_> {
    /// Seconds since the Unix epoch (reads the clock on first use).
    pub fn now_secs(&self) -> u64 {
        self.clock.now_unix_millis() / 1000
    }
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
    pub(crate) methods: Vec<Method>,
    pub(crate) clients: Vec<ClientInfo>,
    pub(crate) by_id: HashMap<String, usize>,
    pub(crate) key_table: Vec<([u8; 32], usize)>,
    pub(crate) key_header: Option<String>,
    pub(crate) key_schemes: Vec<String>,
    pub(crate) key_query: Option<String>,
    pub(crate) key_cookie: Option<String>,
    pub(crate) jwt: Option<JwtEngine>,
    pub(crate) cert_fields: Vec<CertField>,
    pub(crate) by_uri_san: HashMap<String, usize>,
    pub(crate) by_subject: HashMap<String, usize>,
    pub(crate) by_digest: HashMap<String, usize>,
    pub(crate) id_header: String,
    pub(crate) plan_header: String,
    pub(crate) method_header: Option<String>,
    pub(crate) label_prefix: Option<String>,
    /// Every header the filter sets (client id, plan, method, claim
    /// headers), once each, in that order: removed from every request.
    pub(crate) owned_headers: Vec<String>,
    /// `owned_headers` and `label_prefix` spelled with `-` for `_`, for
    /// matching the `_` spellings of a request's headers.
    pub(crate) owned_dashed: Vec<String>,
    pub(crate) label_prefix_dashed: Option<String>,
    pub(crate) anonymous: Option<(String, Option<String>)>,
    pub(crate) default_mode: Mode,
    pub(crate) rules: Vec<CompiledRule>,
    pub(crate) strip_credentials: StripCredentials,
    pub(crate) bypass_cors_preflight: bool,
    pub(crate) realm: String,
    /// The 401 challenges without an error, and for a refused API key (or
    /// certificate: same as without), made at configuration.
    pub(crate) challenges_plain: Vec<String>,
    pub(crate) challenges_bad_key: Vec<String>,
    /// Some rule matches on paths.
    pub(crate) path_rules: bool,
}

impl Engine {
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
    pub(crate) fn removal_ops(&self, headers: &HeaderSnapshot) -> Vec<HeaderOp> {
        // Only copies the request actually carries need removing: a removal
        // of an absent header would still cost a host call per request.
        let mut ops: Vec<HeaderOp> = Vec::new();
        for n in &self.owned_headers {
            if headers.contains(n) {
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
        // (Compared byte by byte against the spellings made at
        // configuration: nothing is allocated per request.)
        for (name, _) in headers.iter() {
            if !name.contains('_') || ops.iter().any(|o| o.name() == name) {
                continue;
            }
            let owned = self
                .owned_dashed
                .iter()
                .any(|n| name.len() == n.len() && dashed_prefix(name, n))
                || self
                    .label_prefix_dashed
                    .as_deref()
                    .is_some_and(|p| name.len() >= p.len() && dashed_prefix(name, p));
            if owned {
                ops.push(HeaderOp::remove(name));
            }
        }
        ops
    }

    pub(crate) fn mode_for(&self, headers: &HeaderSnapshot) -> (Mode, Option<&CompiledRule>) {
        if self.rules.is_empty() {
            return (self.default_mode, None);
        }
        // The host is normalized only if a rule scopes by host.
        let mut host: Option<String> = None;
        let raw_path = headers
            .first_str(":path")
            .and_then(Result::ok)
            .unwrap_or("/");
        let (path, _) = split_path_query(raw_path);
        for r in &self.rules {
            let host_ok = r.hosts.is_empty() || {
                let host = host.get_or_insert_with(|| {
                    headers
                        .first_str(":authority")
                        .and_then(Result::ok)
                        .and_then(normalize_host)
                        .unwrap_or_default()
                });
                r.hosts.iter().any(|h| h.matches(host))
            };
            let path_ok = r.paths.is_empty() || r.paths.iter().any(|p| p.matches(path));
            if host_ok && path_ok {
                return (r.mode, Some(r));
            }
        }
        (self.default_mode, None)
    }

    /// Challenges for a 401 without a usable credential (copies of those
    /// made at configuration, but for a token's error description).
    pub(crate) fn challenges(&self, error: Option<(&Method, &str)>) -> Vec<String> {
        match error {
            None | Some((Method::Mtls, _)) => self.challenges_plain.clone(),
            Some((Method::ApiKey, _)) => self.challenges_bad_key.clone(),
            Some((Method::Jwt, _)) => challenges(&self.methods, &self.realm, error),
        }
    }

    pub(crate) fn reject(
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

    pub(crate) fn accept(
        &self,
        id: Identity<'_>,
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
        ops.push(HeaderOp::set(&self.id_header, id.client_id.as_ref()));
        if let Some(p) = &id.plan {
            ops.push(HeaderOp::set(&self.plan_header, p.as_ref()));
        }
        if let Some(mh) = &self.method_header {
            ops.push(HeaderOp::set(mh, method.as_str()));
        }
        // Names made at configuration (`label_prefix` + label).
        for (name, v) in id.labels {
            ops.push(HeaderOp::set(name, v.as_str()));
        }
        ops.extend(id.extra);
        if self.strip_credentials.strips(method) {
            ops.extend(id.strip);
        }
        Decision {
            outcome: Outcome::Identified {
                client_id: id.client_id.into_owned(),
                method,
                fingerprint: id.fingerprint,
            },
            ops,
        }
    }

    pub(crate) fn client_identity(
        &self,
        idx: usize,
        fingerprint: String,
        strip: Vec<HeaderOp>,
    ) -> Tried<'_> {
        match self.clients.get(idx) {
            Some(c) => Tried::Found(Identity {
                client_id: Cow::Borrowed(&c.id),
                plan: c.plan.as_deref().map(Cow::Borrowed),
                labels: &c.label_headers,
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
}

/// The `www-authenticate` challenges of a 401 for `methods`.
pub(crate) fn challenges(
    methods: &[Method],
    realm: &str,
    error: Option<(&Method, &str)>,
) -> Vec<String> {
    let mut out = Vec::new();
    for m in methods {
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

/// The request path is ambiguous (see [`gatehouse_core::path::is_ambiguous_path`]);
/// a path that is not UTF-8 is too.
pub fn ambiguous_path(headers: &HeaderSnapshot) -> bool {
    match headers.first_str(":path") {
        Some(Ok(raw)) => is_ambiguous_path(split_path_query(raw).0),
        Some(Err(())) => true,
        None => false,
    }
}

/// Whether `name` (a request header's name), with every `_` read as `-` and
/// ASCII letters lower-cased, starts with `dashed` (a configured name already
/// spelled with `-`).
fn dashed_prefix(name: &str, dashed: &str) -> bool {
    name.len() >= dashed.len()
        && name.bytes().zip(dashed.bytes()).all(|(a, b)| {
            let a = if a == b'_' {
                b'-'
            } else {
                a.to_ascii_lowercase()
            };
            a == b
        })
}

/// A CORS preflight: `OPTIONS` with `origin` and
/// `access-control-request-method` (what jwt_authn's `bypass_cors_preflight`
/// lets through).
pub fn cors_preflight(headers: &HeaderSnapshot) -> bool {
    headers.first(":method") == Some(b"OPTIONS".as_slice())
        && headers.contains("origin")
        && headers.contains("access-control-request-method")
}

pub(crate) fn allowed(r: &CompiledRule, id: &str, plan: Option<&str>) -> bool {
    (r.allowed_clients.is_empty() || r.allowed_clients.iter().any(|c| c == id))
        && (r.allowed_plans.is_empty()
            || plan.is_some_and(|p| r.allowed_plans.iter().any(|x| x == p)))
}

/// Identity values: 1-128 visible ASCII characters.
pub fn valid_value(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic())
}

pub(crate) fn valid_header_value(s: &str) -> bool {
    s.len() <= 1024
        && s.bytes()
            .all(|b| b == b' ' || b == b'\t' || b.is_ascii_graphic())
}

/// Who a credential names; borrowed from the configuration where it can be.
pub(crate) struct Identity<'e> {
    pub(crate) client_id: Cow<'e, str>,
    pub(crate) plan: Option<Cow<'e, str>>,
    /// Label headers (names made at configuration).
    pub(crate) labels: &'e [(String, String)],
    pub(crate) enabled: bool,
    pub(crate) extra: Vec<HeaderOp>,
    pub(crate) strip: Vec<HeaderOp>,
    pub(crate) fingerprint: String,
}

pub(crate) enum Tried<'e> {
    Absent,
    Found(Identity<'e>),
    Rejected(Outcome),
    NeedFetch(usize),
    Wait(usize),
}
