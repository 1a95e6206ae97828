//! The whole per-request decision: rule matching, plan and key selection,
//! the slot-table check, and the answer (headers, local reply, counters).

use crate::config::{
    AddressSource, Config, DescriptorPart, FailureMode, Global, GlobalOnError, HeaderStyle, Limit,
    OnMissing, Rule,
};
use crate::gcra::{ceil_secs, most_restrictive, LimitSpec, LimitStatus, NANOS};
use crate::key::{hash64, part_value, push_field, KeySources, RequestInfo};
use crate::rls::{self, Code, RlsRequest, RlsResponse};
use crate::table::{check, Checked, FailReason, SetResult, SharedStore, StoreError, Target, Trace};
use gatehouse_core::decimal::push_u64;
use gatehouse_core::host::{normalize_host, HostTable};
use gatehouse_core::path::{split_path_query, PathMatch};
use gatehouse_core::random::FixedClock;
use gatehouse_core::reply::error_body;
use gatehouse_core::{Clock, ConfigError, HeaderOp, HeaderSnapshot};

/// Longest time a drained bucket may need to refill (`burst * period / rate`).
const MAX_WINDOW_SECS: u128 = 366 * 86_400;

/// One limit set (a rule's `limits`, or one plan's).
#[derive(Debug, Clone)]
pub struct LimitSet {
    pub plan: Option<String>,
    pub specs: Vec<LimitSpec>,
    /// Hash of everything that defines this set's buckets (see
    /// [`set_identity`]); the first field of every bucket key of the set.
    pub identity: u64,
    pub overflow_key: String,
    pub overflow_fingerprint: u64,
}

#[derive(Debug, Clone)]
pub struct CompiledRule {
    pub name: String,
    hosts: HostTable<()>,
    paths: Vec<PathMatch>,
    descriptor: Vec<DescriptorPart>,
    on_missing: OnMissing,
    pub sets: Vec<LimitSet>,
    default_set: usize,
    /// A descriptor part is the connection's `source.address`.
    reads_source_address: bool,
    /// The global mode, when the rule has one.
    pub global: Option<GlobalRule>,
}

/// A rule's global mode, compiled.
#[derive(Debug, Clone)]
pub struct GlobalRule {
    pub cfg: Global,
    /// Per limit set (same index as `sets`): the per-process fallback
    /// buckets (`on_error: local`, limits divided by `replicas`).
    pub fallback: Vec<LimitSet>,
    /// Per limit set: the precheck buckets (`local_precheck`, the full
    /// limits, advanced only when the service allowed).
    pub precheck: Vec<LimitSet>,
}

/// The compiled configuration.
#[derive(Debug, Clone)]
pub struct Engine {
    pub rules: Vec<CompiledRule>,
    pub status: u16,
    pub reject_status: u16,
    pub headers: HeaderStyle,
    pub shadow: bool,
    pub on_store_failure: FailureMode,
    pub cas_retries: u32,
    pub slots: u32,
    /// `slot_min_idle_secs` in ns.
    pub slot_min_idle: u64,
    pub table: String,
    /// `<table>.slot.`, made once: a slot key is this and the slot number.
    slot_prefix: String,
    seed: Vec<u8>,
    sources: KeySources,
    plan_header: String,
    needs_source_address: bool,
}

/// What happened to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// No rule applies, or the rule skips requests lacking a key part.
    NotLimited,
    Allowed,
    Limited,
    /// Shadow mode: would have been limited; let through.
    ShadowLimited,
    /// The rule rejects requests lacking a key part.
    MissingKey,
    /// The store failed or CAS conflicts exceeded the budget; `denied` when
    /// `on_store_failure` is `deny`.
    Failed {
        denied: bool,
        reason: FailReason,
    },
}

/// A local reply to send instead of forwarding the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// Everything the adapter needs to act on a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    /// Index of the rule that applied.
    pub rule: Option<usize>,
    pub outcome: Outcome,
    /// Send this instead of forwarding.
    pub reply: Option<Reply>,
    /// Headers to add to the upstream's response (allowed requests).
    pub response_ops: Vec<HeaderOp>,
    /// Headers to add to the request before it is forwarded (the rate-limit
    /// service's `request_headers_to_add`).
    pub request_ops: Vec<HeaderOp>,
    pub trace: Trace,
    /// What the global mode did, for counters and logs.
    pub global: GlobalTrace,
}

impl Evaluation {
    fn plain(rule: Option<usize>, outcome: Outcome) -> Evaluation {
        Evaluation {
            rule,
            outcome,
            reply: None,
            response_ops: Vec::new(),
            request_ops: Vec::new(),
            trace: Trace::default(),
            global: GlobalTrace::default(),
        }
    }
}

/// Why a call to the rate-limit service gave no usable answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GlobalError {
    /// Envoy refused to start the call (e.g. unknown cluster).
    Dispatch,
    /// No answer within `timeout_ms` (gRPC DEADLINE_EXCEEDED).
    Timeout,
    /// The service could not be reached (gRPC UNAVAILABLE).
    Unavailable,
    /// Any other gRPC status than OK.
    Status,
    /// A malformed answer, an UNKNOWN overall code, or a wrong number of
    /// statuses.
    BadAnswer,
}

impl GlobalError {
    pub fn name(self) -> &'static str {
        match self {
            GlobalError::Dispatch => "dispatch",
            GlobalError::Timeout => "timeout",
            GlobalError::Unavailable => "unavailable",
            GlobalError::Status => "status",
            GlobalError::BadAnswer => "bad_answer",
        }
    }

    /// The error for a finished call's gRPC status (0 = OK: `None`).
    /// `timed_out`: the call took (about) the timeout, or Envoy's message
    /// says so (Envoy ends a call cut by its timeout with UNAVAILABLE,
    /// "upstream request timeout"); see [`GlobalError::timed_out`].
    pub fn from_grpc_status(status: u32, timed_out: bool) -> Option<GlobalError> {
        match status {
            0 => None,
            4 => Some(GlobalError::Timeout),
            _ if timed_out => Some(GlobalError::Timeout),
            14 => Some(GlobalError::Unavailable),
            _ => Some(GlobalError::Status),
        }
    }
}

impl GlobalError {
    /// Whether a failed call ended by its timeout: it took at least the
    /// timeout less 10 ms (the host clock is coarse), or Envoy's message
    /// names a timeout.
    pub fn timed_out(elapsed_ms: u64, timeout_ms: u64, message: &[u8]) -> bool {
        elapsed_ms.saturating_add(10) >= timeout_ms
            || message
                .windows(7)
                .any(|w| w.eq_ignore_ascii_case(b"timeout"))
    }
}

/// What the global mode did for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GlobalTrace {
    /// The service answered OK / OVER_LIMIT.
    pub answered: Option<Code>,
    /// The service failed this way ...
    pub error: Option<GlobalError>,
    /// ... and this fallback was applied.
    pub fallback: Option<GlobalOnError>,
    /// Refused by `local_precheck` without a callout.
    pub precheck_limited: bool,
}

/// A request a global rule applies to: the call to make, and what is
/// needed to finish it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobalCall {
    pub rule: usize,
    pub set: usize,
    /// The encoded `RateLimitRequest`.
    pub message: Vec<u8>,
    /// The bucket key (for the precheck and fallback buckets).
    key: Vec<u8>,
}

/// The first step of a request: decided, or a call to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    Done(Evaluation),
    Call(GlobalCall),
}

/// A request's rule, limit set and descriptor part values.
struct Resolved {
    rule: usize,
    set: usize,
    parts: Vec<Option<Vec<u8>>>,
}

/// A store that reads through and never writes: `check` on it tells
/// whether a request would pass without counting it.
struct ReadOnly<'a, S: SharedStore + ?Sized>(&'a mut S);

impl<S: SharedStore + ?Sized> SharedStore for ReadOnly<'_, S> {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        self.0.get(key)
    }
    fn set(&mut self, _key: &str, _value: &[u8], _cas: u32) -> SetResult {
        SetResult::Ok
    }
}

/// A limit set with every limit divided by `replicas` (at least 1).
fn divided(specs: &[LimitSpec], replicas: u32) -> Vec<LimitSpec> {
    let r = u128::from(replicas.max(1));
    specs
        .iter()
        .map(|s| {
            let burst = (s.burst / u64::from(replicas.max(1))).max(1);
            let interval = u64::try_from(u128::from(s.interval) * r).unwrap_or(u64::MAX);
            LimitSpec {
                name: s.name.clone(),
                interval,
                burst,
            }
        })
        .collect()
}

/// A copy of `set` with other limits and its own identity (`tag` tells
/// the fallback and precheck buckets apart from each other and from any
/// local rule).
fn derived_set(set: &LimitSet, specs: Vec<LimitSpec>, tag: &[u8], seed: &[u8]) -> LimitSet {
    let mut id = Vec::with_capacity(64);
    push_field(&mut id, b'g', Some(tag));
    push_field(&mut id, b'i', Some(&set.identity.to_le_bytes()));
    for spec in &specs {
        let mut v = spec.interval.to_le_bytes().to_vec();
        v.extend_from_slice(&spec.burst.to_le_bytes());
        push_field(&mut id, b'l', Some(&v));
    }
    let fp = hash64(seed, 3, &id) | 1;
    let table = set
        .overflow_key
        .rsplit_once(".overflow.")
        .map_or("", |(t, _)| t);
    LimitSet {
        plan: set.plan.clone(),
        specs,
        identity: hash64(seed, 4, &id),
        overflow_key: format!("{table}.overflow.{fp:016x}"),
        overflow_fingerprint: fp,
    }
}

/// What makes a limit set's buckets *its own*, as canonical bytes: the rule's
/// name, hosts and paths (order-insensitive), descriptor (in order, with the
/// header or address source each part reads), `on_missing`, the plan, and
/// every limit's emission interval and burst (limit names, which only show in
/// headers, are left out).
///
/// Its hash starts every bucket key and names the overflow key, so two rules
/// that differ in any of these, even in two filter instances sharing one
/// table with default names, never share or reset each other's buckets,
/// whatever name Envoy or Istio gives the plugins. Identical rules share
/// buckets: the same limit, e.g. one plugin configured on two listeners.
/// Changing any of these gives the rule fresh buckets.
pub fn set_identity(
    rule: &Rule,
    rule_name: &str,
    plan: Option<&str>,
    specs: &[LimitSpec],
    sources: &KeySources,
) -> Vec<u8> {
    let mut id = Vec::with_capacity(128);
    push_field(&mut id, b'v', Some(b"gatehouse.rate_limit.set.1"));
    push_field(&mut id, b'r', Some(rule_name.as_bytes()));
    let mut hosts: Vec<String> = rule.hosts.iter().map(|h| h.to_ascii_lowercase()).collect();
    hosts.sort();
    hosts.dedup();
    for h in &hosts {
        push_field(&mut id, b'h', Some(h.as_bytes()));
    }
    let mut paths: Vec<(u8, &str)> = rule
        .paths
        .iter()
        .map(|p| match p {
            PathMatch::Exact(v) => (b'e', v.as_str()),
            PathMatch::Prefix(v) => (b'p', v.as_str()),
            PathMatch::SegmentPrefix(v) => (b's', v.as_str()),
        })
        .collect();
    paths.sort();
    paths.dedup();
    for (kind, v) in paths {
        push_field(&mut id, kind, Some(v.as_bytes()));
    }
    for part in &rule.descriptor {
        let (kind, arg): (u8, Vec<u8>) = match part {
            DescriptorPart::ClientId => (b'c', sources.client_id_header.as_bytes().to_vec()),
            DescriptorPart::ClientAddress => {
                let a = &sources.client_address;
                let mut v = match a.from {
                    AddressSource::SourceAddress => b"source_address".to_vec(),
                    AddressSource::XForwardedFor => b"x_forwarded_for".to_vec(),
                };
                v.extend_from_slice(&a.trusted_hops.to_le_bytes());
                (b'a', v)
            }
            DescriptorPart::Host => (b'H', Vec::new()),
            DescriptorPart::Method => (b'M', Vec::new()),
            DescriptorPart::Header(name) => (b'x', name.as_bytes().to_vec()),
            DescriptorPart::PathPrefix(n) => (b'n', n.to_le_bytes().to_vec()),
        };
        push_field(&mut id, kind, Some(&arg));
    }
    let missing: &[u8] = match rule.on_missing {
        OnMissing::Shared => b"shared",
        OnMissing::Skip => b"skip",
        OnMissing::Reject => b"reject",
    };
    push_field(&mut id, b'o', Some(missing));
    push_field(&mut id, b'P', plan.map(str::as_bytes));
    for spec in specs {
        let mut v = spec.interval.to_le_bytes().to_vec();
        v.extend_from_slice(&spec.burst.to_le_bytes());
        push_field(&mut id, b'l', Some(&v));
    }
    id
}

fn compile_set(
    rule: &Rule,
    set: &[Limit],
    plan: Option<&str>,
    field: &str,
    rule_name: &str,
    cfg: &Config,
    sources: &KeySources,
) -> Result<LimitSet, ConfigError> {
    let mut specs = Vec::with_capacity(set.len());
    for (k, l) in set.iter().enumerate() {
        let rate = u64::try_from(l.rate).unwrap_or(1);
        let burst = u64::try_from(l.burst()).unwrap_or(1);
        let window = u128::from(burst) * u128::from(l.per.seconds()) / u128::from(rate);
        if window > MAX_WINDOW_SECS {
            return Err(ConfigError::new(
                format!("{field}[{k}].burst"),
                "burst / rate must refill within a year (burst * period / rate)",
            ));
        }
        specs.push(LimitSpec::new(
            &l.display_name(),
            rate,
            l.per.seconds(),
            burst,
        ));
    }
    let id = set_identity(rule, rule_name, plan, &specs, sources);
    let seed = cfg.hash_seed.as_bytes();
    let fp = hash64(seed, 3, &id) | 1;
    Ok(LimitSet {
        plan: plan.map(str::to_string),
        specs,
        identity: hash64(seed, 4, &id),
        overflow_key: format!("{}.overflow.{fp:016x}", cfg.table),
        overflow_fingerprint: fp,
    })
}

impl Engine {
    pub fn new(cfg: &Config) -> Result<Engine, ConfigError> {
        cfg.check_fields()?;
        let sources = KeySources {
            client_id_header: cfg.client_id_header.clone(),
            client_address: cfg.client_address.clone(),
        };
        let mut rules = Vec::with_capacity(cfg.rules.len());
        for (i, r) in cfg.rules.iter().enumerate() {
            let at = format!("rules[{i}]");
            let name = r.name(i);
            let hosts = HostTable::build(
                &format!("{at}.hosts"),
                r.hosts.iter().map(|h| (h.clone(), ())),
            )?;
            let mut sets = Vec::new();
            let mut default_set = 0;
            if r.plans.is_empty() {
                sets.push(compile_set(
                    r,
                    &r.limits,
                    None,
                    &format!("{at}.limits"),
                    &name,
                    cfg,
                    &sources,
                )?);
            } else {
                for (plan, set) in &r.plans {
                    if r.default_plan.as_deref() == Some(plan.as_str()) {
                        default_set = sets.len();
                    }
                    sets.push(compile_set(
                        r,
                        set,
                        Some(plan),
                        &format!("{at}.plans.{plan}"),
                        &name,
                        cfg,
                        &sources,
                    )?);
                }
            }
            let seed = cfg.hash_seed.as_bytes();
            let global = r.global.as_ref().map(|g| GlobalRule {
                cfg: g.clone(),
                fallback: if g.on_error == GlobalOnError::Local {
                    sets.iter()
                        .map(|s| derived_set(s, divided(&s.specs, g.replicas), b"fallback", seed))
                        .collect()
                } else {
                    Vec::new()
                },
                precheck: if g.local_precheck {
                    sets.iter()
                        .map(|s| derived_set(s, s.specs.clone(), b"precheck", seed))
                        .collect()
                } else {
                    Vec::new()
                },
            });
            rules.push(CompiledRule {
                name,
                hosts,
                paths: r.paths.clone(),
                descriptor: r.descriptor.clone(),
                reads_source_address: cfg.client_address.from == AddressSource::SourceAddress
                    && r.descriptor.contains(&DescriptorPart::ClientAddress),
                on_missing: r.on_missing,
                sets,
                default_set,
                global,
            });
        }
        let needs_source_address = cfg.client_address.from
            == crate::config::AddressSource::SourceAddress
            && cfg
                .rules
                .iter()
                .any(|r| r.descriptor.contains(&DescriptorPart::ClientAddress));
        Ok(Engine {
            rules,
            status: cfg.status,
            reject_status: cfg.reject_status,
            headers: cfg.headers,
            shadow: cfg.shadow,
            on_store_failure: cfg.on_store_failure,
            cas_retries: cfg.cas_retries,
            slots: cfg.slots,
            table: cfg.table.clone(),
            slot_prefix: format!("{}.slot.", cfg.table),
            seed: cfg.hash_seed.as_bytes().to_vec(),
            slot_min_idle: u64::from(cfg.slot_min_idle_secs).saturating_mul(NANOS),
            sources,
            plan_header: cfg.plan_header.clone(),
            needs_source_address,
        })
    }

    /// True when some rule keys on `source.address` (the adapter reads that
    /// property only then).
    pub fn needs_source_address(&self) -> bool {
        self.needs_source_address
    }

    pub fn slot_key(&self, i: u32) -> String {
        let mut key = String::with_capacity(self.slot_prefix.len() + 10);
        key.push_str(&self.slot_prefix);
        push_u64(&mut key, u64::from(i));
        key
    }

    /// Every shared-data key this configuration can ever touch: the slots
    /// and one overflow key per (rule, plan). The memory bound.
    pub fn all_keys(&self) -> impl Iterator<Item = String> + '_ {
        (0..self.slots)
            .map(|i| self.slot_key(i))
            .chain(self.rules.iter().flat_map(|r| {
                let global = r
                    .global
                    .iter()
                    .flat_map(|g| g.fallback.iter().chain(&g.precheck));
                r.sets
                    .iter()
                    .filter(|_| r.global.is_none())
                    .chain(global)
                    .map(|s| s.overflow_key.clone())
            }))
    }

    /// The first rule whose hosts and paths match the request.
    pub fn match_rule(&self, headers: &HeaderSnapshot) -> Option<usize> {
        let host = headers
            .first_str(":authority")
            .and_then(Result::ok)
            .and_then(normalize_host)
            .unwrap_or_default();
        let path = headers
            .first_str(":path")
            .and_then(Result::ok)
            .map(|p| split_path_query(p).0)
            .unwrap_or("/");
        self.rules.iter().position(|r| {
            r.hosts.lookup(&host).is_some()
                && (r.paths.is_empty() || r.paths.iter().any(|m| m.matches(path)))
        })
    }

    /// The limit set and descriptor part values of a request matched by
    /// rule `ri`, or the evaluation when that already decides it.
    fn resolve(&self, ri: usize, req: &RequestInfo) -> Result<Resolved, Box<Evaluation>> {
        let Some(rule) = self.rules.get(ri) else {
            return Err(Box::new(Evaluation::plain(None, Outcome::NotLimited)));
        };
        // The plan picks the limit set.
        let plan_value = req.headers.first(&self.plan_header);
        let set_index = rule
            .sets
            .iter()
            .position(|s| s.plan.is_some() && s.plan.as_deref().map(str::as_bytes) == plan_value)
            .unwrap_or(rule.default_set);
        if rule.sets.get(set_index).is_none() {
            return Err(Box::new(Evaluation::plain(Some(ri), Outcome::NotLimited)));
        }
        let mut parts = Vec::with_capacity(rule.descriptor.len());
        for part in &rule.descriptor {
            let value = part_value(part, &self.sources, req);
            if value.is_none() {
                match rule.on_missing {
                    OnMissing::Shared => {}
                    OnMissing::Skip => {
                        return Err(Box::new(Evaluation::plain(Some(ri), Outcome::NotLimited)))
                    }
                    OnMissing::Reject => {
                        let mut e = Evaluation::plain(Some(ri), Outcome::MissingKey);
                        e.reply = Some(Reply {
                            status: self.reject_status,
                            headers: vec![(
                                "content-type".to_string(),
                                "application/json".to_string(),
                            )],
                            body: error_body(
                                "missing_rate_limit_key",
                                "the request lacks what this route is rate limited by",
                                request_id(req.headers),
                            ),
                        });
                        return Err(Box::new(e));
                    }
                }
            }
            parts.push(value);
        }
        Ok(Resolved {
            rule: ri,
            set: set_index,
            parts,
        })
    }

    /// The descriptor parts as key bytes (length-prefixed, position-tagged).
    fn parts_key(parts: &[Option<Vec<u8>>]) -> Vec<u8> {
        let mut key = Vec::with_capacity(64);
        for (j, value) in parts.iter().enumerate() {
            push_field(
                &mut key,
                u8::try_from(j).unwrap_or(u8::MAX),
                value.as_deref(),
            );
        }
        key
    }

    /// Checks (and on success counts) the bucket of `parts_key` in `set`.
    fn check_set<S: SharedStore + ?Sized>(
        &self,
        store: &mut S,
        now: u64,
        set: &LimitSet,
        parts_key: &[u8],
    ) -> Checked {
        // The bucket key: the limit set's identity (rule, plan, limits, ...),
        // then the descriptor parts.
        let mut key = Vec::with_capacity(16 + parts_key.len());
        push_field(&mut key, b'i', Some(&set.identity.to_le_bytes()));
        key.extend_from_slice(parts_key);
        let slot = hash64(&self.seed, 1, &key) % u64::from(self.slots.max(1));
        let slot_key = self.slot_key(u32::try_from(slot).unwrap_or(0));
        let target = Target {
            slot_key: &slot_key,
            overflow_key: &set.overflow_key,
            fingerprint: hash64(&self.seed, 2, &key) | 1,
            overflow_fingerprint: set.overflow_fingerprint,
        };
        check(
            store,
            &target,
            &set.specs,
            now,
            self.cas_retries,
            self.slot_min_idle,
        )
    }

    /// Decides one request of a local rule at `now` (ns since the Unix
    /// epoch). A request a global rule applies to is [`Outcome::NotLimited`]
    /// here: use [`Engine::start`].
    pub fn evaluate<S: SharedStore + ?Sized>(
        &self,
        store: &mut S,
        now: u64,
        req: &RequestInfo,
    ) -> Evaluation {
        match self.start(store, now, req) {
            Start::Done(e) => e,
            Start::Call(c) => Evaluation::plain(Some(c.rule), Outcome::NotLimited),
        }
    }

    /// The first step of a request: a local rule decides it now; a global
    /// rule gives the call to make (unless `local_precheck` refuses it).
    pub fn start<S: SharedStore + ?Sized>(
        &self,
        store: &mut S,
        now: u64,
        req: &RequestInfo,
    ) -> Start {
        self.start_lazy(store, &FixedClock(now), req.headers, &|| {
            req.source_address.map(<[u8]>::to_vec)
        })
    }

    /// [`Engine::start`] reading the host only for what the request needs:
    /// `clock` (ns since the Unix epoch) only when a bucket is checked (a
    /// request no rule limits, or one skipped or refused for a missing key
    /// part, never reads it), and `source_address` only when the matched
    /// rule keys on the connection's address.
    pub fn start_lazy<S: SharedStore + ?Sized>(
        &self,
        store: &mut S,
        clock: &dyn Clock,
        headers: &HeaderSnapshot,
        source_address: &dyn Fn() -> Option<Vec<u8>>,
    ) -> Start {
        let Some((ri, rule)) = self
            .match_rule(headers)
            .and_then(|i| self.rules.get(i).map(|r| (i, r)))
        else {
            return Start::Done(Evaluation::plain(None, Outcome::NotLimited));
        };
        let source = if rule.reads_source_address {
            source_address()
        } else {
            None
        };
        let req = &RequestInfo {
            headers,
            source_address: source.as_deref(),
        };
        let Resolved {
            rule: ri,
            set: si,
            parts,
        } = match self.resolve(ri, req) {
            Ok(r) => r,
            Err(e) => return Start::Done(*e),
        };
        let (Some(rule), key) = (self.rules.get(ri), Self::parts_key(&parts)) else {
            return Start::Done(Evaluation::plain(None, Outcome::NotLimited));
        };
        let Some(set) = rule.sets.get(si) else {
            return Start::Done(Evaluation::plain(Some(ri), Outcome::NotLimited));
        };
        let Some(global) = &rule.global else {
            let checked = self.check_set(store, clock.now_unix_nanos(), set, &key);
            return Start::Done(self.answer(ri, set, checked, req.headers));
        };
        if let Some(pre) = global.precheck.get(si) {
            if !self.shadow {
                if let Checked::Limited {
                    retry_after,
                    status,
                    trace,
                } = self.check_set(&mut ReadOnly(store), clock.now_unix_nanos(), pre, &key)
                {
                    let mut e = self.answer(
                        ri,
                        pre,
                        Checked::Limited {
                            retry_after,
                            status,
                            trace,
                        },
                        req.headers,
                    );
                    e.global.precheck_limited = true;
                    return Start::Done(e);
                }
            }
        }
        Start::Call(GlobalCall {
            rule: ri,
            set: si,
            message: rls::encode_request(&self.rls_request(rule, set, &global.cfg, &parts)),
            key,
        })
    }

    /// The `RateLimitRequest` of one request (see [`crate::rls`]).
    fn rls_request(
        &self,
        rule: &CompiledRule,
        set: &LimitSet,
        global: &Global,
        parts: &[Option<Vec<u8>>],
    ) -> RlsRequest {
        let mut common = Vec::with_capacity(parts.len());
        for (part, value) in rule.descriptor.iter().zip(parts) {
            let v = match value {
                Some(v) => rls::entry_value(v),
                None => rls::ANONYMOUS_VALUE.to_string(),
            };
            common.push((rls::part_key(part), v));
        }
        let descriptors = set
            .specs
            .iter()
            .map(|spec| {
                let mut entries = Vec::with_capacity(3 + common.len());
                entries.push((rls::ENTRY_RULE.to_string(), rule.name.clone()));
                if let Some(p) = &set.plan {
                    entries.push((rls::ENTRY_PLAN.to_string(), p.clone()));
                }
                entries.push((rls::ENTRY_LIMIT.to_string(), spec.name.clone()));
                entries.extend(common.iter().cloned());
                entries
            })
            .collect();
        RlsRequest {
            domain: global.domain.clone(),
            descriptors,
            hits_addend: 1,
        }
    }

    /// Finishes a global call with the service's answer (`Ok`: the decoded
    /// response of a call with gRPC status OK) or its failure.
    pub fn finish<S: SharedStore + ?Sized>(
        &self,
        store: &mut S,
        now: u64,
        call: &GlobalCall,
        answer: Result<RlsResponse, GlobalError>,
        headers: &HeaderSnapshot,
    ) -> Evaluation {
        let ri = call.rule;
        let (Some(rule), si) = (self.rules.get(ri), call.set) else {
            return Evaluation::plain(None, Outcome::NotLimited);
        };
        let (Some(set), Some(global)) = (rule.sets.get(si), rule.global.as_ref()) else {
            return Evaluation::plain(Some(ri), Outcome::NotLimited);
        };
        let answer = answer.and_then(|r| {
            if r.overall_code == Code::Unknown || r.statuses.len() != set.specs.len() {
                Err(GlobalError::BadAnswer)
            } else {
                Ok(r)
            }
        });
        match answer {
            Ok(resp) => {
                let mut e = self.global_answer(ri, set, &resp, headers);
                if e.outcome == Outcome::Allowed {
                    if let Some(pre) = global.precheck.get(si) {
                        // The precheck bucket counts what the service let
                        // through; its verdict does not matter here.
                        let _ = self.check_set(store, now, pre, &call.key);
                    }
                }
                e.global.answered = Some(resp.overall_code);
                e
            }
            Err(err) => {
                let mode = global.cfg.on_error;
                let mut e = match mode {
                    GlobalOnError::Allow => Evaluation::plain(Some(ri), Outcome::Allowed),
                    GlobalOnError::Deny if self.shadow => {
                        Evaluation::plain(Some(ri), Outcome::ShadowLimited)
                    }
                    GlobalOnError::Deny => {
                        let mut e = Evaluation::plain(Some(ri), Outcome::Limited);
                        e.reply = Some(self.limited_reply(
                            1,
                            Vec::new(),
                            "rate_limit_unavailable",
                            "the rate limit service is unavailable",
                            headers,
                        ));
                        e
                    }
                    GlobalOnError::Local => match global.fallback.get(si) {
                        Some(fb) => {
                            let checked = self.check_set(store, now, fb, &call.key);
                            self.answer(ri, fb, checked, headers)
                        }
                        None => Evaluation::plain(Some(ri), Outcome::Allowed),
                    },
                };
                e.global.error = Some(err);
                e.global.fallback = Some(mode);
                e
            }
        }
    }

    /// The evaluation for a valid answer of the service (same number of
    /// statuses as limits).
    fn global_answer(
        &self,
        ri: usize,
        set: &LimitSet,
        resp: &RlsResponse,
        headers: &HeaderSnapshot,
    ) -> Evaluation {
        let specs: Vec<LimitSpec> = set
            .specs
            .iter()
            .zip(&resp.statuses)
            .map(|(spec, st)| match &st.current_limit {
                Some(l) if crate::config::is_simple_name(&l.name) => LimitSpec {
                    name: l.name.clone(),
                    ..spec.clone()
                },
                _ => spec.clone(),
            })
            .collect();
        let status: Vec<LimitStatus> = specs
            .iter()
            .zip(&resp.statuses)
            .map(|(spec, st)| LimitStatus {
                limit: spec.burst,
                remaining: u64::from(st.limit_remaining).min(spec.burst),
                reset: st
                    .duration_until_reset
                    .map_or(0, |ns| ceil_secs(u128::from(ns))),
                window: ceil_secs(spec.capacity()),
            })
            .collect();
        let mut hs = rate_headers(self.headers, &specs, &status);
        let service_response = valid_headers(&resp.response_headers_to_add);
        hs.extend(service_response.iter().cloned());
        let over = resp.overall_code == Code::OverLimit;
        let mut e = Evaluation::plain(Some(ri), Outcome::Allowed);
        if over && !self.shadow {
            let retry_after = resp
                .statuses
                .iter()
                .filter(|st| st.code == Code::OverLimit)
                .chain(
                    resp.statuses
                        .iter()
                        .filter(|_| !resp.statuses.iter().any(|st| st.code == Code::OverLimit)),
                )
                .filter_map(|st| st.duration_until_reset)
                .map(|ns| ceil_secs(u128::from(ns)))
                .max()
                .unwrap_or(1)
                .max(1);
            e.outcome = Outcome::Limited;
            e.reply = Some(self.limited_reply(
                retry_after,
                hs,
                "rate_limited",
                "too many requests",
                headers,
            ));
            return e;
        }
        if over {
            e.outcome = Outcome::ShadowLimited;
        }
        e.response_ops = hs.into_iter().map(|(k, v)| HeaderOp::Set(k, v)).collect();
        e.request_ops = valid_headers(&resp.request_headers_to_add)
            .into_iter()
            .map(|(k, v)| HeaderOp::Set(k, v))
            .collect();
        e
    }

    fn answer(
        &self,
        ri: usize,
        set: &LimitSet,
        checked: Checked,
        headers: &HeaderSnapshot,
    ) -> Evaluation {
        match checked {
            Checked::Allowed { status, trace } => Evaluation {
                rule: Some(ri),
                outcome: Outcome::Allowed,
                reply: None,
                response_ops: rate_headers(self.headers, &set.specs, &status)
                    .into_iter()
                    .map(|(k, v)| HeaderOp::Set(k, v))
                    .collect(),
                request_ops: Vec::new(),
                trace,
                global: GlobalTrace::default(),
            },
            Checked::Limited {
                retry_after,
                status,
                trace,
            } => {
                let hs = rate_headers(self.headers, &set.specs, &status);
                if self.shadow {
                    return Evaluation {
                        rule: Some(ri),
                        outcome: Outcome::ShadowLimited,
                        reply: None,
                        response_ops: hs.into_iter().map(|(k, v)| HeaderOp::Set(k, v)).collect(),
                        request_ops: Vec::new(),
                        trace,
                        global: GlobalTrace::default(),
                    };
                }
                Evaluation {
                    rule: Some(ri),
                    outcome: Outcome::Limited,
                    reply: Some(self.limited_reply(
                        retry_after,
                        hs,
                        "rate_limited",
                        "too many requests",
                        headers,
                    )),
                    response_ops: Vec::new(),
                    request_ops: Vec::new(),
                    trace,
                    global: GlobalTrace::default(),
                }
            }
            Checked::Failed { reason, trace } => {
                let denied = self.on_store_failure == FailureMode::Deny && !self.shadow;
                Evaluation {
                    rule: Some(ri),
                    outcome: Outcome::Failed { denied, reason },
                    reply: denied.then(|| {
                        self.limited_reply(
                            1,
                            Vec::new(),
                            "rate_limit_unavailable",
                            "the rate limit state is unavailable",
                            headers,
                        )
                    }),
                    response_ops: Vec::new(),
                    request_ops: Vec::new(),
                    trace,
                    global: GlobalTrace::default(),
                }
            }
        }
    }

    fn limited_reply(
        &self,
        retry_after: u64,
        mut hs: Vec<(String, String)>,
        code: &str,
        message: &str,
        headers: &HeaderSnapshot,
    ) -> Reply {
        hs.push(("retry-after".to_string(), retry_after.to_string()));
        hs.push(("content-type".to_string(), "application/json".to_string()));
        Reply {
            status: self.status,
            headers: hs,
            body: error_body(code, message, request_id(headers)),
        }
    }
}

/// The service's headers that are safe to set: a lower-case header name
/// (pseudo-headers and `content-length` / `host` excluded) and a value of
/// visible ASCII, spaces and tabs. Others are left out.
pub fn valid_headers(hs: &[rls::HeaderValue]) -> Vec<(String, String)> {
    hs.iter()
        .filter_map(|h| {
            let key = h.key.to_ascii_lowercase();
            let name_ok = gatehouse_core::config::validate_header_name("h", &key).is_ok()
                && !matches!(
                    key.as_str(),
                    "content-length" | "host" | "transfer-encoding"
                );
            let value = std::str::from_utf8(&h.value).ok()?;
            let value_ok = value
                .bytes()
                .all(|b| b == b'\t' || (b' '..=b'~').contains(&b));
            (name_ok && value_ok).then(|| (key, value.to_string()))
        })
        .collect()
}

/// The request id for error bodies (the one rule of every gatehouse filter).
pub use gatehouse_core::reply::request_id_for_body as request_id;

/// The rate-limit response headers in the configured style.
///
/// - `x_ratelimit`: the most restrictive limit (fewest remaining):
///   `x-ratelimit-limit` (its burst), `x-ratelimit-remaining`,
///   `x-ratelimit-reset` (seconds until its bucket is full again).
/// - `ietf`: every limit, `RateLimit-Policy: "<name>";q=<burst>;w=<secs>`
///   (w = seconds a drained bucket takes to refill) and
///   `RateLimit: "<name>";r=<remaining>;t=<reset secs>`.
pub fn rate_headers(
    style: HeaderStyle,
    specs: &[LimitSpec],
    status: &[LimitStatus],
) -> Vec<(String, String)> {
    match style {
        HeaderStyle::None => Vec::new(),
        HeaderStyle::XRatelimit => match most_restrictive(status) {
            // (Integer `to_string` is specialized: faster than formatting
            // or appending the digits.)
            Some(s) => vec![
                ("x-ratelimit-limit".to_string(), s.limit.to_string()),
                ("x-ratelimit-remaining".to_string(), s.remaining.to_string()),
                ("x-ratelimit-reset".to_string(), s.reset.to_string()),
            ],
            None => Vec::new(),
        },
        HeaderStyle::Ietf => {
            // Each value written once into its own string (no format! and
            // join per limit).
            let mut policy = String::with_capacity(40 * specs.len());
            let mut current = String::with_capacity(40 * specs.len());
            for (i, (sp, st)) in specs.iter().zip(status).enumerate() {
                if i > 0 {
                    policy.push_str(", ");
                    current.push_str(", ");
                }
                policy.push('"');
                policy.push_str(&sp.name);
                policy.push_str("\";q=");
                push_u64(&mut policy, st.limit);
                policy.push_str(";w=");
                push_u64(&mut policy, st.window);
                current.push('"');
                current.push_str(&sp.name);
                current.push_str("\";r=");
                push_u64(&mut current, st.remaining);
                current.push_str(";t=");
                push_u64(&mut current, st.reset);
            }
            vec![
                ("ratelimit-policy".to_string(), policy),
                ("ratelimit".to_string(), current),
            ]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gcra::NANOS;
    use crate::table::{ensure_keys, MemoryStore};
    use gatehouse_core::parse_config;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const T0: u64 = 1_700_000_000 * NANOS;

    fn engine(json: &str) -> (Engine, MemoryStore) {
        let cfg: Config = parse_config(json.as_bytes()).unwrap();
        let e = Engine::new(&cfg).unwrap();
        let mut s = MemoryStore::new();
        ensure_keys(&mut s, e.all_keys()).unwrap();
        (e, s)
    }

    fn req<'a>(pairs: &[(&'a str, &'a str)]) -> HeaderSnapshot {
        let mut v = pairs.to_vec();
        for (k, d) in [
            (":method", "GET"),
            (":authority", "api.example.com"),
            (":path", "/api/x"),
        ] {
            if !pairs.iter().any(|(p, _)| *p == k) {
                v.push((k, d));
            }
        }
        HeaderSnapshot::from_pairs(v)
    }

    fn eval(e: &Engine, s: &mut MemoryStore, h: &HeaderSnapshot, now: u64) -> Evaluation {
        e.evaluate(
            s,
            now,
            &RequestInfo {
                headers: h,
                source_address: Some(b"192.0.2.7:4000"),
            },
        )
    }

    fn header<'a>(ops: &'a [HeaderOp], name: &str) -> Option<&'a str> {
        ops.iter().find_map(|op| match op {
            HeaderOp::Set(k, v) if k == name => Some(v.as_str()),
            _ => None,
        })
    }

    fn reply_header<'a>(r: &'a Reply, name: &str) -> Option<&'a str> {
        r.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    const BASIC: &str = r#"{"slots": 64, "rules": [{"name": "api", "descriptor": ["client_id"],
        "limits": [{"rate": 3, "per": "hour"}]}]}"#;

    #[test]
    fn limits_per_client_with_headers_and_429() {
        let (e, mut s) = engine(BASIC);
        assert_eq!(e.all_keys().count(), 65);
        let alice = req(&[("x-client-id", "alice"), ("x-request-id", "rid-1")]);
        let bob = req(&[("x-client-id", "bob")]);
        for i in 0..3u64 {
            let ev = eval(&e, &mut s, &alice, T0);
            assert_eq!(ev.outcome, Outcome::Allowed);
            assert_eq!(header(&ev.response_ops, "x-ratelimit-limit"), Some("3"));
            assert_eq!(
                header(&ev.response_ops, "x-ratelimit-remaining"),
                Some((2 - i).to_string().as_str())
            );
            assert_eq!(
                header(&ev.response_ops, "x-ratelimit-reset"),
                Some(((i + 1) * 1200).to_string().as_str())
            );
        }
        let ev = eval(&e, &mut s, &alice, T0);
        assert_eq!(ev.outcome, Outcome::Limited);
        let r = ev.reply.unwrap();
        assert_eq!(r.status, 429);
        assert_eq!(reply_header(&r, "retry-after"), Some("1200"));
        assert_eq!(reply_header(&r, "x-ratelimit-remaining"), Some("0"));
        assert_eq!(reply_header(&r, "x-ratelimit-reset"), Some("3600"));
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body["error"], "rate_limited");
        assert_eq!(body["request_id"], "rid-1");
        // Bob is independent.
        assert_eq!(eval(&e, &mut s, &bob, T0).outcome, Outcome::Allowed);
    }

    #[test]
    fn ietf_headers_list_every_limit() {
        let (e, mut s) = engine(
            r#"{"headers": "ietf", "slots": 8, "rules": [{"descriptor": ["client_id"],
            "limits": [{"name": "burst", "rate": 2, "per": "second"},
                       {"name": "daily", "rate": 1000, "per": "day", "burst": 100}]}]}"#,
        );
        let ev = eval(&e, &mut s, &req(&[("x-client-id", "a")]), T0);
        assert_eq!(
            header(&ev.response_ops, "ratelimit-policy"),
            Some(r#""burst";q=2;w=1, "daily";q=100;w=8640"#)
        );
        assert_eq!(
            header(&ev.response_ops, "ratelimit"),
            Some(r#""burst";r=1;t=1, "daily";r=99;t=87"#)
        );
        let (e, mut s) = engine(
            r#"{"headers": "none", "slots": 8, "rules": [{"limits": [{"rate": 1, "per": "second"}]}]}"#,
        );
        let ev = eval(&e, &mut s, &req(&[]), T0);
        assert!(ev.response_ops.is_empty());
        let ev = eval(&e, &mut s, &req(&[]), T0);
        let r = ev.reply.unwrap();
        assert_eq!(r.headers.len(), 2, "{:?}", r.headers);
        assert_eq!(reply_header(&r, "retry-after"), Some("1"));
    }

    #[test]
    fn plans_pick_limit_sets() {
        let (e, mut s) = engine(
            r#"{"slots": 64, "rules": [{"descriptor": ["client_id"], "default_plan": "free",
            "plans": {"free": [{"rate": 2, "per": "hour"}], "gold": [{"rate": 5, "per": "hour"}]}}]}"#,
        );
        let count = |s: &mut MemoryStore, h: &HeaderSnapshot| {
            (0..10)
                .filter(|_| eval(&e, s, h, T0).outcome == Outcome::Allowed)
                .count()
        };
        assert_eq!(
            count(
                &mut s,
                &req(&[("x-client-id", "a"), ("x-client-plan", "gold")])
            ),
            5
        );
        assert_eq!(
            count(
                &mut s,
                &req(&[("x-client-id", "b"), ("x-client-plan", "free")])
            ),
            2
        );
        assert_eq!(count(&mut s, &req(&[("x-client-id", "c")])), 2);
        assert_eq!(
            count(
                &mut s,
                &req(&[("x-client-id", "d"), ("x-client-plan", "platinum")])
            ),
            2
        );
        // Same client, other plan: other bucket.
        assert_eq!(
            count(
                &mut s,
                &req(&[("x-client-id", "b"), ("x-client-plan", "gold")])
            ),
            5
        );
    }

    #[test]
    fn missing_parts_shared_skip_reject() {
        let cfg = |mode: &str| {
            format!(
                r#"{{"slots": 64, "rules": [{{"descriptor": ["client_id"], "on_missing": "{mode}",
                "limits": [{{"rate": 2, "per": "hour"}}]}}]}}"#
            )
        };
        let anon = req(&[]);
        let (e, mut s) = engine(&cfg("shared"));
        assert_eq!(eval(&e, &mut s, &anon, T0).outcome, Outcome::Allowed);
        assert_eq!(
            eval(&e, &mut s, &req(&[("x-client-id", "")]), T0).outcome,
            Outcome::Allowed
        );
        assert_eq!(eval(&e, &mut s, &anon, T0).outcome, Outcome::Limited);
        let (e, mut s) = engine(&cfg("skip"));
        for _ in 0..5 {
            let ev = eval(&e, &mut s, &anon, T0);
            assert_eq!(ev.outcome, Outcome::NotLimited);
            assert!(ev.response_ops.is_empty());
        }
        let (e, mut s) = engine(&cfg("reject"));
        let ev = eval(&e, &mut s, &anon, T0);
        assert_eq!(ev.outcome, Outcome::MissingKey);
        assert_eq!(ev.reply.unwrap().status, 403);
    }

    #[test]
    fn clock_and_source_address_are_read_only_when_needed() {
        use std::cell::Cell;
        struct Counting(Cell<u32>);
        impl Clock for Counting {
            fn now_unix_nanos(&self) -> u64 {
                self.0.set(self.0.get() + 1);
                T0
            }
        }
        let (e, mut s) = engine(
            r#"{"slots": 64, "rules": [
              {"name": "by-address", "hosts": ["a.example.com"], "descriptor": ["client_address"],
               "limits": [{"rate": 5, "per": "hour"}]},
              {"name": "by-client", "hosts": ["b.example.com"], "descriptor": ["client_id"],
               "on_missing": "skip", "limits": [{"rate": 5, "per": "hour"}]}
            ]}"#,
        );
        assert!(e.needs_source_address());
        // (clock reads, source.address reads, outcome)
        let mut run = |host: &str, extra: &[(&str, &str)]| {
            let mut pairs = vec![(":authority", host), (":path", "/"), (":method", "GET")];
            pairs.extend_from_slice(extra);
            let h = HeaderSnapshot::from_pairs(pairs);
            let clock = Counting(Cell::new(0));
            let sources = Cell::new(0u32);
            let source = || {
                sources.set(sources.get() + 1);
                Some(b"192.0.2.7:4000".to_vec())
            };
            let outcome = match e.start_lazy(&mut s, &clock, &h, &source) {
                Start::Done(ev) => ev.outcome,
                Start::Call(_) => panic!("no global rule"),
            };
            (clock.0.get(), sources.get(), outcome)
        };
        assert_eq!(run("c.example.com", &[]), (0, 0, Outcome::NotLimited));
        assert_eq!(run("b.example.com", &[]), (0, 0, Outcome::NotLimited));
        assert_eq!(
            run("b.example.com", &[("x-client-id", "acme")]),
            (1, 0, Outcome::Allowed)
        );
        assert_eq!(run("a.example.com", &[]), (1, 1, Outcome::Allowed));
    }

    #[test]
    fn slot_keys_are_table_slot_number() {
        let (e, s) =
            engine(r#"{"slots": 10, "rules": [{"limits": [{"rate": 1, "per": "hour"}]}]}"#);
        for i in [0, 7, 9, 4_294_967_295] {
            assert_eq!(e.slot_key(i), format!("{}.slot.{i}", e.table));
        }
        assert!(s.map.contains_key(&format!("{}.slot.9", e.table)));
        assert_eq!(e.all_keys().count(), 11);
    }

    #[test]
    fn rules_scoped_by_host_and_path_first_match_wins() {
        let (e, mut s) = engine(
            r#"{"slots": 64, "rules": [
              {"name": "admin", "hosts": ["api.example.com"], "paths": [{"segment_prefix": "/admin"}],
               "limits": [{"rate": 1, "per": "hour"}]},
              {"name": "wild", "hosts": ["*.example.com"], "limits": [{"rate": 2, "per": "hour"}]}
            ]}"#,
        );
        let h = |host: &str, path: &str| {
            HeaderSnapshot::from_pairs([(":authority", host), (":path", path), (":method", "GET")])
        };
        assert_eq!(e.match_rule(&h("api.example.com", "/admin/x")), Some(0));
        assert_eq!(e.match_rule(&h("API.example.com:443", "/admin?x")), Some(0));
        assert_eq!(e.match_rule(&h("api.example.com", "/adminx")), Some(1));
        assert_eq!(e.match_rule(&h("www.example.com", "/admin")), Some(1));
        assert_eq!(e.match_rule(&h("example.org", "/")), None);
        let ev = eval(&e, &mut s, &h("example.org", "/"), T0);
        assert_eq!(ev.outcome, Outcome::NotLimited);
        assert!(ev.response_ops.is_empty());
        assert_eq!(eval(&e, &mut s, &h("a.example.com", "/"), T0).rule, Some(1));
    }

    #[test]
    fn descriptor_mixes_parts() {
        let (e, mut s) = engine(
            r#"{"slots": 1024, "client_address": {"from": "x_forwarded_for", "trusted_hops": 1},
            "rules": [{"descriptor": ["client_address", "method", {"path_prefix": 1}, {"header": "x-tenant"}],
            "limits": [{"rate": 1, "per": "hour"}]}]}"#,
        );
        assert!(!e.needs_source_address());
        let base = [
            ("x-forwarded-for", "203.0.113.9, 10.0.0.1"),
            ("x-tenant", "t1"),
        ];
        let ok = |s: &mut MemoryStore, extra: &[(&str, &str)]| {
            let mut v = base.to_vec();
            v.extend_from_slice(extra);
            eval(&e, s, &req(&v), T0).outcome == Outcome::Allowed
        };
        assert!(ok(&mut s, &[]));
        assert!(!ok(&mut s, &[]));
        // A different path prefix, method or tenant is another bucket; the
        // part of the path past the prefix is not.
        assert!(ok(&mut s, &[(":path", "/other")]));
        assert!(!ok(&mut s, &[(":path", "/other/deeper")]));
        assert!(ok(&mut s, &[(":method", "POST")]));
        let mut v = base.to_vec();
        v[1] = ("x-tenant", "t2");
        assert_eq!(eval(&e, &mut s, &req(&v), T0).outcome, Outcome::Allowed);
        // Another trusted-proxy hop in front is the same client.
        let v = [
            ("x-forwarded-for", "1.1.1.1, 203.0.113.9, 10.0.0.1"),
            ("x-tenant", "t1"),
        ];
        assert_eq!(eval(&e, &mut s, &req(&v), T0).outcome, Outcome::Limited);
    }

    #[test]
    fn shadow_mode_never_rejects() {
        let (e, mut s) = engine(
            r#"{"shadow": true, "slots": 8, "rules": [{"limits": [{"rate": 1, "per": "hour"}]}]}"#,
        );
        assert_eq!(eval(&e, &mut s, &req(&[]), T0).outcome, Outcome::Allowed);
        let ev = eval(&e, &mut s, &req(&[]), T0);
        assert_eq!(ev.outcome, Outcome::ShadowLimited);
        assert!(ev.reply.is_none());
        assert_eq!(header(&ev.response_ops, "x-ratelimit-remaining"), Some("0"));
    }

    #[test]
    fn store_failure_open_or_closed() {
        let (e, mut s) = engine(BASIC);
        s.fail_get = true;
        let ev = eval(&e, &mut s, &req(&[("x-client-id", "a")]), T0);
        assert_eq!(
            ev.outcome,
            Outcome::Failed {
                denied: false,
                reason: FailReason::Store
            }
        );
        assert!(ev.reply.is_none());
        let closed = BASIC.replacen('{', r#"{"on_store_failure": "deny", "#, 1);
        let (e, mut s) = engine(&closed);
        s.fail_set = true;
        let ev = eval(&e, &mut s, &req(&[("x-client-id", "a")]), T0);
        assert!(matches!(ev.outcome, Outcome::Failed { denied: true, .. }));
        let r = ev.reply.unwrap();
        assert_eq!(r.status, 429);
        assert_eq!(reply_header(&r, "retry-after"), Some("1"));
    }

    #[test]
    fn window_longer_than_a_year_is_refused() {
        let e = parse_config::<Config>(
            br#"{"rules": [{"limits": [{"rate": 1, "per": "day", "burst": 400}]}]}"#,
        )
        .unwrap_err();
        assert_eq!(e.field, "rules[0].limits[0].burst");
        assert!(parse_config::<Config>(
            br#"{"rules": [{"limits": [{"rate": 1, "per": "day", "burst": 300}]}]}"#,
        )
        .is_ok());
    }

    /// Two filter instances on one shared store, default table, unnamed
    /// rules keyed on the same client id.
    fn twins(a: &str, b: &str) -> (Engine, Engine, MemoryStore) {
        let (ea, mut s) = engine(a);
        let cfg: Config = parse_config(b.as_bytes()).unwrap();
        let eb = Engine::new(&cfg).unwrap();
        ensure_keys(&mut s, eb.all_keys()).unwrap();
        (ea, eb, s)
    }

    #[test]
    fn two_instances_sharing_the_default_table_keep_their_own_buckets() {
        let one = r#"{"slots": 64, "rules": [{"descriptor": ["client_id"],
            "limits": [{"rate": 3, "per": "hour"}]}]}"#;
        let two = r#"{"slots": 64, "rules": [{"descriptor": ["client_id"],
            "limits": [{"rate": 5, "per": "hour"}, {"rate": 100, "per": "day"}]}]}"#;
        // Same number of limits, other values: no sharing of TATs either.
        let same_count = r#"{"slots": 64, "rules": [{"descriptor": ["client_id"],
            "limits": [{"rate": 4, "per": "hour"}]}]}"#;
        for other in [two, same_count] {
            let (ea, eb, mut s) = twins(one, other);
            assert_ne!(ea.rules[0].sets[0].identity, eb.rules[0].sets[0].identity);
            assert_ne!(
                ea.rules[0].sets[0].overflow_key,
                eb.rules[0].sets[0].overflow_key
            );
            let h = req(&[("x-client-id", "twin")]);
            let mut passed = (0, 0);
            for _ in 0..8 {
                // Every request goes through both, as in one filter chain.
                if eval(&ea, &mut s, &h, T0).outcome == Outcome::Allowed {
                    passed.0 += 1;
                }
                if eval(&eb, &mut s, &h, T0).outcome == Outcome::Allowed {
                    passed.1 += 1;
                }
            }
            let expect_b = if other == two { 5 } else { 4 };
            assert_eq!(passed, (3, expect_b), "{other}");
        }
    }

    #[test]
    fn identity_follows_what_defines_the_buckets() {
        let id = |json: &str| {
            let cfg: Config = parse_config(json.as_bytes()).unwrap();
            let e = Engine::new(&cfg).unwrap();
            (
                e.rules[0].sets[0].identity,
                e.rules[0].sets[0].overflow_key.clone(),
            )
        };
        let base = id(
            r#"{"rules": [{"hosts": ["a.com", "b.com"], "descriptor": ["client_id"],
            "limits": [{"rate": 3, "per": "hour"}]}]}"#,
        );
        // Identical rules share buckets; limit names and host order do not matter.
        assert_eq!(
            base,
            id(
                r#"{"slots": 8, "rules": [{"hosts": ["b.com", "a.com"], "descriptor": ["client_id"],
                "limits": [{"name": "x", "rate": 3, "per": "hour"}]}]}"#
            )
        );
        for other in [
            r#"{"rules": [{"name": "rule1", "hosts": ["a.com", "b.com"], "descriptor": ["client_id"],
                "limits": [{"rate": 3, "per": "hour"}]}]}"#,
            r#"{"rules": [{"hosts": ["a.com"], "descriptor": ["client_id"],
                "limits": [{"rate": 3, "per": "hour"}]}]}"#,
            r#"{"rules": [{"hosts": ["a.com", "b.com"], "paths": [{"prefix": "/"}], "descriptor": ["client_id"],
                "limits": [{"rate": 3, "per": "hour"}]}]}"#,
            r#"{"rules": [{"hosts": ["a.com", "b.com"], "descriptor": [{"header": "x-client-id"}],
                "limits": [{"rate": 3, "per": "hour"}]}]}"#,
            r#"{"client_id_header": "x-user", "rules": [{"hosts": ["a.com", "b.com"], "descriptor": ["client_id"],
                "limits": [{"rate": 3, "per": "hour"}]}]}"#,
            r#"{"rules": [{"hosts": ["a.com", "b.com"], "descriptor": ["client_id"], "on_missing": "skip",
                "limits": [{"rate": 3, "per": "hour"}]}]}"#,
            r#"{"rules": [{"hosts": ["a.com", "b.com"], "descriptor": ["client_id"],
                "limits": [{"rate": 3, "per": "hour", "burst": 2}]}]}"#,
            r#"{"rules": [{"hosts": ["a.com", "b.com"], "descriptor": ["client_id"],
                "limits": [{"rate": 3, "per": "hour"}, {"rate": 10, "per": "day"}]}]}"#,
            r#"{"hash_seed": "s", "rules": [{"hosts": ["a.com", "b.com"], "descriptor": ["client_id"],
                "limits": [{"rate": 3, "per": "hour"}]}]}"#,
        ] {
            let o = id(other);
            assert_ne!(base.0, o.0, "{other}");
            assert_ne!(base.1, o.1, "{other}");
        }
        // The plan is part of it.
        let cfg: Config = parse_config(
            br#"{"rules": [{"default_plan": "a", "plans": {"a": [{"rate": 1, "per": "hour"}],
                "b": [{"rate": 1, "per": "hour"}]}}]}"#,
        )
        .unwrap();
        let e = Engine::new(&cfg).unwrap();
        assert_ne!(e.rules[0].sets[0].identity, e.rules[0].sets[1].identity);
    }

    #[test]
    fn slot_min_idle_is_compiled() {
        let (e, _) = engine(BASIC);
        assert_eq!(e.slot_min_idle, 60 * NANOS);
        let (e, _) = engine(&BASIC.replacen('{', r#"{"slot_min_idle_secs": 0, "#, 1));
        assert_eq!(e.slot_min_idle, 0);
    }

    #[test]
    fn request_id_is_sanitized() {
        let h = HeaderSnapshot::from_pairs([("x-request-id", "a b")]);
        assert_eq!(request_id(&h), None);
        let h = HeaderSnapshot::from_pairs([("x-request-id", "abc-1")]);
        assert_eq!(request_id(&h), Some("abc-1"));
    }

    // ---- global mode ----

    use crate::rls::{decode_request, CurrentLimit, DescriptorStatus, HeaderValue, RlsResponse};

    const GLOBAL: &str = r#"{"slots": 64, "rules": [{"name": "api", "descriptor": ["client_id", {"header": "x-k"}],
        "plans": {"gold": [{"rate": 4, "per": "hour"}, {"name": "daily", "rate": 100, "per": "day"}],
                  "free": [{"rate": 4, "per": "hour"}]},
        "default_plan": "free",
        "global": {"cluster": "rls", "domain": "edge"}}]}"#;

    fn with_global(json: &str, global: &str) -> String {
        json.replace(r#"{"cluster": "rls", "domain": "edge"}"#, global)
    }

    fn call(e: &Engine, s: &mut MemoryStore, h: &HeaderSnapshot) -> GlobalCall {
        match e.start(
            s,
            T0,
            &RequestInfo {
                headers: h,
                source_address: None,
            },
        ) {
            Start::Call(c) => c,
            Start::Done(ev) => panic!("no call: {ev:?}"),
        }
    }

    fn status(code: Code, remaining: u32, reset_ns: u64) -> DescriptorStatus {
        DescriptorStatus {
            code,
            current_limit: Some(CurrentLimit {
                name: String::new(),
                requests_per_unit: 4,
                unit: 3,
            }),
            limit_remaining: remaining,
            duration_until_reset: Some(reset_ns),
        }
    }

    fn resp(code: Code, statuses: Vec<DescriptorStatus>) -> RlsResponse {
        RlsResponse {
            overall_code: code,
            statuses,
            response_headers_to_add: Vec::new(),
            request_headers_to_add: Vec::new(),
        }
    }

    #[test]
    fn global_request_carries_rule_plan_limit_and_parts() {
        let (e, mut s) = engine(GLOBAL);
        let h = req(&[("x-client-id", "alice"), ("x-client-plan", "gold")]);
        let c = call(&e, &mut s, &h);
        let r = decode_request(&c.message).unwrap();
        assert_eq!(r.domain, "edge");
        assert_eq!(r.hits_addend, 1);
        let kv = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(
            r.descriptors,
            vec![
                kv(&[
                    ("gatehouse_rule", "api"),
                    ("plan", "gold"),
                    ("limit", "4-per-hour"),
                    ("client_id", "alice"),
                    ("header:x-k", rls::ANONYMOUS_VALUE)
                ]),
                kv(&[
                    ("gatehouse_rule", "api"),
                    ("plan", "gold"),
                    ("limit", "daily"),
                    ("client_id", "alice"),
                    ("header:x-k", rls::ANONYMOUS_VALUE)
                ]),
            ]
        );
        // Unknown plan: the default plan; non-UTF-8 value: b64.
        let h = HeaderSnapshot::new(vec![
            (":authority".to_string(), b"a".to_vec()),
            (":path".to_string(), b"/".to_vec()),
            ("x-client-id".to_string(), vec![0xff, 0x00]),
            ("x-k".to_string(), b"b64:1".to_vec()),
        ]);
        let r = decode_request(&call(&e, &mut s, &h).message).unwrap();
        assert_eq!(
            r.descriptors,
            vec![kv(&[
                ("gatehouse_rule", "api"),
                ("plan", "free"),
                ("limit", "4-per-hour"),
                ("client_id", "b64:/wA="),
                ("header:x-k", "b64:YjY0OjE=")
            ])]
        );
    }

    #[test]
    fn global_answers_map_to_headers_and_429() {
        let (e, mut s) = engine(GLOBAL);
        let h = req(&[("x-client-id", "alice"), ("x-request-id", "rid-9")]);
        let c = call(&e, &mut s, &h);
        let mut ok = resp(Code::Ok, vec![status(Code::Ok, 2, 1_800 * NANOS + 1)]);
        ok.response_headers_to_add.push(HeaderValue {
            key: "X-Svc".into(),
            value: b"a".to_vec(),
        });
        ok.response_headers_to_add.push(HeaderValue {
            key: "bad header".into(),
            value: b"a".to_vec(),
        });
        ok.request_headers_to_add.push(HeaderValue {
            key: "x-up".into(),
            value: b"1".to_vec(),
        });
        ok.request_headers_to_add.push(HeaderValue {
            key: "x-crlf".into(),
            value: b"a\r\nb".to_vec(),
        });
        let ev = e.finish(&mut s, T0, &c, Ok(ok), &h);
        assert_eq!(ev.outcome, Outcome::Allowed);
        assert_eq!(ev.global.answered, Some(Code::Ok));
        assert_eq!(header(&ev.response_ops, "x-ratelimit-limit"), Some("4"));
        assert_eq!(header(&ev.response_ops, "x-ratelimit-remaining"), Some("2"));
        assert_eq!(header(&ev.response_ops, "x-ratelimit-reset"), Some("1801"));
        assert_eq!(header(&ev.response_ops, "x-svc"), Some("a"));
        assert_eq!(ev.response_ops.len(), 4);
        assert_eq!(ev.request_ops, vec![HeaderOp::set("x-up", "1")]);

        let over = resp(
            Code::OverLimit,
            vec![status(Code::OverLimit, 0, 12 * NANOS)],
        );
        let ev = e.finish(&mut s, T0, &c, Ok(over.clone()), &h);
        assert_eq!(ev.outcome, Outcome::Limited);
        let r = ev.reply.unwrap();
        assert_eq!(r.status, 429);
        assert_eq!(reply_header(&r, "retry-after"), Some("12"));
        assert_eq!(reply_header(&r, "x-ratelimit-remaining"), Some("0"));
        assert!(
            r.body.contains("rate_limited") && r.body.contains("rid-9"),
            "{}",
            r.body
        );

        // IETF style, names from current_limit when set.
        let (e2, mut s2) =
            engine(&GLOBAL.replace(r#""slots": 64"#, r#""slots": 64, "headers": "ietf""#));
        let mut st = status(Code::Ok, 3, 10 * NANOS);
        st.current_limit.as_mut().unwrap().name = "svc-name".into();
        let c2 = call(&e2, &mut s2, &h);
        let ev = e2.finish(&mut s2, T0, &c2, Ok(resp(Code::Ok, vec![st])), &h);
        assert_eq!(
            header(&ev.response_ops, "ratelimit"),
            Some("\"svc-name\";r=3;t=10")
        );
        assert_eq!(
            header(&ev.response_ops, "ratelimit-policy"),
            Some("\"svc-name\";q=4;w=3600")
        );

        // Shadow: counted, never rejected.
        let (e3, mut s3) =
            engine(&GLOBAL.replace(r#""slots": 64"#, r#""slots": 64, "shadow": true"#));
        let c3 = call(&e3, &mut s3, &h);
        let ev = e3.finish(&mut s3, T0, &c3, Ok(over), &h);
        assert_eq!(ev.outcome, Outcome::ShadowLimited);
        assert!(ev.reply.is_none());
        assert_eq!(header(&ev.response_ops, "x-ratelimit-remaining"), Some("0"));
    }

    #[test]
    fn bad_answers_and_errors_follow_on_error() {
        for (mode, want) in [("allow", Outcome::Allowed), ("deny", Outcome::Limited)] {
            let json = with_global(
                GLOBAL,
                &format!(r#"{{"cluster": "rls", "on_error": "{mode}"}}"#),
            );
            let (e, mut s) = engine(&json);
            let h = req(&[("x-client-id", "alice")]);
            let c = call(&e, &mut s, &h);
            for answer in [
                Ok(resp(Code::Ok, vec![])),
                Ok(resp(
                    Code::Ok,
                    vec![status(Code::Ok, 1, 0), status(Code::Ok, 1, 0)],
                )),
                Ok(resp(Code::Unknown, vec![status(Code::Ok, 1, 0)])),
                Err(GlobalError::Timeout),
            ] {
                let expect_err = match &answer {
                    Err(err) => *err,
                    Ok(_) => GlobalError::BadAnswer,
                };
                let ev = e.finish(&mut s, T0, &c, answer, &h);
                assert_eq!(ev.outcome, want, "{mode}");
                assert_eq!(ev.global.error, Some(expect_err));
                if mode == "deny" {
                    let r = ev.reply.unwrap();
                    assert_eq!(reply_header(&r, "retry-after"), Some("1"));
                    assert!(r.body.contains("rate_limit_unavailable"));
                } else {
                    assert!(ev.reply.is_none());
                }
            }
        }
        assert_eq!(GlobalError::from_grpc_status(0, true), None);
        assert_eq!(
            GlobalError::from_grpc_status(4, false),
            Some(GlobalError::Timeout)
        );
        assert_eq!(
            GlobalError::from_grpc_status(14, false),
            Some(GlobalError::Unavailable)
        );
        assert_eq!(
            GlobalError::from_grpc_status(14, true),
            Some(GlobalError::Timeout)
        );
        assert_eq!(
            GlobalError::from_grpc_status(13, false),
            Some(GlobalError::Status)
        );
    }

    #[test]
    fn local_fallback_divides_by_replicas_exactly() {
        let json = with_global(
            GLOBAL,
            r#"{"cluster": "rls", "on_error": "local", "replicas": 2}"#,
        );
        let (e, mut s) = engine(&json);
        let h = req(&[("x-client-id", "alice")]);
        let c = call(&e, &mut s, &h);
        let outcomes: Vec<Outcome> = (0..4)
            .map(|_| {
                e.finish(&mut s, T0, &c, Err(GlobalError::Unavailable), &h)
                    .outcome
            })
            .collect();
        assert_eq!(
            outcomes,
            [
                Outcome::Allowed,
                Outcome::Allowed,
                Outcome::Limited,
                Outcome::Limited
            ]
        );
        let ev = e.finish(&mut s, T0, &c, Err(GlobalError::Unavailable), &h);
        assert_eq!(ev.global.fallback, Some(GlobalOnError::Local));
        assert_eq!(
            reply_header(ev.reply.as_ref().unwrap(), "x-ratelimit-limit"),
            Some("2")
        );
        // Another client has its own fallback bucket.
        let bob = req(&[("x-client-id", "bob")]);
        let cb = call(&e, &mut s, &bob);
        assert_eq!(
            e.finish(&mut s, T0, &cb, Err(GlobalError::Dispatch), &bob)
                .outcome,
            Outcome::Allowed
        );
        // Every key the fallback can touch exists after configuration.
        assert_eq!(e.all_keys().count(), 64 + 2);
    }

    #[test]
    fn precheck_counts_only_what_the_service_allowed() {
        let json = with_global(GLOBAL, r#"{"cluster": "rls", "local_precheck": true}"#);
        let (e, mut s) = engine(&json);
        let h = req(&[("x-client-id", "alice")]);
        let ok = || resp(Code::Ok, vec![status(Code::Ok, 1, 0)]);
        // Refusals by the service do not advance the precheck bucket.
        for _ in 0..10 {
            let c = call(&e, &mut s, &h);
            let over = resp(Code::OverLimit, vec![status(Code::OverLimit, 0, NANOS)]);
            assert_eq!(
                e.finish(&mut s, T0, &c, Ok(over), &h).outcome,
                Outcome::Limited
            );
        }
        for _ in 0..4 {
            let c = call(&e, &mut s, &h);
            assert_eq!(
                e.finish(&mut s, T0, &c, Ok(ok()), &h).outcome,
                Outcome::Allowed
            );
        }
        // The fifth is over locally already: refused without a call.
        match e.start(
            &mut s,
            T0,
            &RequestInfo {
                headers: &h,
                source_address: None,
            },
        ) {
            Start::Done(ev) => {
                assert_eq!(ev.outcome, Outcome::Limited);
                assert!(ev.global.precheck_limited);
                assert_eq!(
                    reply_header(ev.reply.as_ref().unwrap(), "retry-after"),
                    Some("900")
                );
            }
            Start::Call(_) => panic!("precheck did not refuse"),
        }
        // Bob is unaffected.
        call(&e, &mut s, &req(&[("x-client-id", "bob")]));
    }
}
