//! The rate-limit configuration (Istio `pluginConfig` JSON) and its checks.
//!
//! Every field and default is documented in the README (rate-limit section). [`Config`] is
//! the serde form; [`crate::engine::Engine::new`] compiles it (host tables,
//! emission intervals) and is also what [`Validate`] runs, so a config that
//! validates always compiles.

use gatehouse_core::config::{ensure, validate_header_name};
use gatehouse_core::path::PathMatch;
use gatehouse_core::{ConfigError, Validate};
use serde::Deserialize;
use std::collections::BTreeMap;

/// Most limits one limit set may hold (they share one slot, see README).
pub const MAX_LIMITS_PER_SET: usize = 8;
/// Largest slot table we accept.
pub const MAX_SLOTS: u32 = 1 << 20;
/// Default `slot_min_idle_secs`.
pub const DEFAULT_SLOT_MIN_IDLE_SECS: u32 = 60;
/// Largest `slot_min_idle_secs` we accept (one day).
pub const MAX_SLOT_MIN_IDLE_SECS: u32 = 86_400;
/// Largest rate or burst we accept.
pub const MAX_COUNT: i64 = 1_000_000_000;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Rules, tried in order; the first whose hosts and paths match applies.
    pub rules: Vec<Rule>,
    /// Status of a rate-limited answer.
    #[serde(default = "default_status")]
    pub status: u16,
    /// Status when a rule's key part is missing and `on_missing` is `reject`.
    #[serde(default = "default_reject_status")]
    pub reject_status: u16,
    /// Which rate-limit headers to put on responses of limited routes.
    #[serde(default)]
    pub headers: HeaderStyle,
    /// Count and log what would be limited, never reject.
    #[serde(default)]
    pub shadow: bool,
    /// What to do when the shared state cannot be read or written.
    #[serde(default)]
    pub on_store_failure: FailureMode,
    /// How many times a compare-and-swap conflict is retried.
    #[serde(default = "default_cas_retries")]
    pub cas_retries: u32,
    /// Number of shared-data slots (the memory bound, see README).
    #[serde(default = "default_slots")]
    pub slots: u32,
    /// Seconds a slot's bucket must have been full (idle) before another key
    /// may take the slot over.
    #[serde(default = "default_slot_min_idle_secs")]
    pub slot_min_idle_secs: u32,
    /// Prefix of the shared-data keys.
    #[serde(default = "default_table")]
    pub table: String,
    /// Secret mixed into the slot hash so clients cannot aim at a slot.
    #[serde(default)]
    pub hash_seed: String,
    /// Header carrying the client id (set by the client-id filter).
    #[serde(default = "default_client_id_header")]
    pub client_id_header: String,
    /// Header carrying the client's plan (set by the client-id filter).
    #[serde(default = "default_plan_header")]
    pub plan_header: String,
    /// Where the `client_address` descriptor part comes from.
    #[serde(default)]
    pub client_address: ClientAddress,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Used in metric names and logs; default `rule<index>`.
    #[serde(default)]
    pub name: Option<String>,
    /// Host patterns (exact, `*.suffix`, `*`); default `["*"]`.
    #[serde(default = "default_hosts")]
    pub hosts: Vec<String>,
    /// Path matches; empty (default) = every path.
    #[serde(default)]
    pub paths: Vec<PathMatch>,
    /// The parts the bucket key is built from; empty = one bucket for the rule.
    #[serde(default)]
    pub descriptor: Vec<DescriptorPart>,
    /// What to do when a descriptor part is missing from the request.
    #[serde(default)]
    pub on_missing: OnMissing,
    /// The limits of the rule (when it has no plans).
    #[serde(default)]
    pub limits: Vec<Limit>,
    /// Limit sets by plan name (the plan header picks one).
    #[serde(default)]
    pub plans: BTreeMap<String, Vec<Limit>>,
    /// The plan used when the plan header is absent or names no known plan.
    #[serde(default)]
    pub default_plan: Option<String>,
    /// Decide this rule's limits in a rate-limit service (Envoy's RLS v3
    /// API) shared by every gateway replica, instead of in this process.
    #[serde(default)]
    pub global: Option<Global>,
}

/// A rule's global mode: the rate-limit service that holds its counters.
/// The wire contract (descriptor entries, answers) is in [`crate::rls`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Global {
    /// The Envoy cluster of the rate-limit service (HTTP/2, gRPC).
    pub cluster: String,
    /// The RLS `domain` sent with every request.
    #[serde(default = "default_domain")]
    pub domain: String,
    /// How long a request waits for the service's answer.
    #[serde(default = "default_global_timeout_ms")]
    pub timeout_ms: u32,
    /// What happens when the service fails, times out or answers nonsense.
    #[serde(default)]
    pub on_error: GlobalOnError,
    /// With `on_error: local`: how many gateway replicas share the limit;
    /// the per-process fallback enforces each limit divided by it.
    #[serde(default = "default_replicas")]
    pub replicas: u32,
    /// Refuse a request this process alone already counts over the limit
    /// without asking the service (saves the round trip under attack).
    #[serde(default)]
    pub local_precheck: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GlobalOnError {
    /// Let the request through (counted).
    #[default]
    Allow,
    /// Answer as if limited.
    Deny,
    /// Enforce the rule's limits in this process (exact per process).
    Local,
}

/// One part of a bucket key.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum DescriptorPart {
    /// The client id header (`client_id_header`).
    ClientId,
    /// The client address (`client_address`).
    ClientAddress,
    /// The request host (`:authority` without port).
    Host,
    /// The request method.
    Method,
    /// The first value of this request header.
    Header(String),
    /// The first N segments of the path (query excluded).
    PathPrefix(u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnMissing {
    /// Missing parts take a fixed "anonymous" value: all such requests share buckets.
    #[default]
    Shared,
    /// The request is not rate limited by this rule.
    Skip,
    /// The request is refused with `reject_status`.
    Reject,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeaderStyle {
    /// `x-ratelimit-limit`, `x-ratelimit-remaining`, `x-ratelimit-reset`.
    #[default]
    XRatelimit,
    /// IETF `RateLimit-Policy` and `RateLimit` fields.
    Ietf,
    /// No rate-limit headers (429 answers still carry `retry-after`).
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureMode {
    /// Let the request through (fail open).
    #[default]
    Allow,
    /// Answer as if limited (fail closed).
    Deny,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    /// Name shown in `RateLimit-Policy`; default `<rate>-per-<per>`.
    #[serde(default)]
    pub name: Option<String>,
    /// Requests per period (sustained rate).
    pub rate: i64,
    /// The period.
    pub per: Period,
    /// Most requests that may pass at once; default = `rate`.
    #[serde(default)]
    pub burst: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    Second,
    Minute,
    Hour,
    Day,
}

impl Period {
    pub fn seconds(self) -> u64 {
        match self {
            Period::Second => 1,
            Period::Minute => 60,
            Period::Hour => 3600,
            Period::Day => 86_400,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Period::Second => "second",
            Period::Minute => "minute",
            Period::Hour => "hour",
            Period::Day => "day",
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientAddress {
    #[serde(default)]
    pub from: AddressSource,
    /// With `x_forwarded_for`: how many right-most entries were appended by
    /// proxies you trust; the client is the entry just left of them.
    #[serde(default)]
    pub trusted_hops: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AddressSource {
    /// Envoy's `source.address` (the peer of the connection), port removed.
    #[default]
    SourceAddress,
    /// The `x-forwarded-for` header, `trusted_hops` from the right.
    XForwardedFor,
}

fn default_status() -> u16 {
    429
}
fn default_reject_status() -> u16 {
    403
}
fn default_cas_retries() -> u32 {
    16
}
fn default_slots() -> u32 {
    16_384
}
fn default_slot_min_idle_secs() -> u32 {
    DEFAULT_SLOT_MIN_IDLE_SECS
}
fn default_table() -> String {
    "gatehouse.rate_limit".to_string()
}
fn default_client_id_header() -> String {
    "x-client-id".to_string()
}
fn default_plan_header() -> String {
    "x-client-plan".to_string()
}
fn default_domain() -> String {
    crate::rls::DEFAULT_DOMAIN.to_string()
}
fn default_global_timeout_ms() -> u32 {
    crate::rls::DEFAULT_TIMEOUT_MS
}
fn default_replicas() -> u32 {
    1
}
fn default_hosts() -> Vec<String> {
    vec!["*".to_string()]
}

/// Metric-safe names: lower-case letters, digits, `_` and `-`.
pub fn is_simple_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

impl Limit {
    /// Validates one limit; `field` is its path (e.g. `rules[0].limits[1]`).
    pub fn check(&self, field: &str) -> Result<(), ConfigError> {
        ensure(
            (1..=MAX_COUNT).contains(&self.rate),
            &format!("{field}.rate"),
            format!(
                "rate must be a whole number from 1 to {MAX_COUNT}, got {}",
                self.rate
            ),
        )?;
        if let Some(b) = self.burst {
            ensure(
                (1..=MAX_COUNT).contains(&b),
                &format!("{field}.burst"),
                format!("burst must be a whole number from 1 to {MAX_COUNT}, got {b}"),
            )?;
        }
        if let Some(n) = &self.name {
            ensure(
                is_simple_name(n),
                &format!("{field}.name"),
                "must be 1-64 characters of a-z, 0-9, `_`, `-`",
            )?;
        }
        Ok(())
    }

    pub fn burst(&self) -> i64 {
        self.burst.unwrap_or(self.rate)
    }

    pub fn display_name(&self) -> String {
        match &self.name {
            Some(n) => n.clone(),
            None => format!("{}-per-{}", self.rate, self.per.name()),
        }
    }
}

impl Config {
    /// Checks everything except what the engine compiles (hosts, paths).
    pub fn check_fields(&self) -> Result<(), ConfigError> {
        ensure(
            !self.rules.is_empty(),
            "rules",
            "at least one rule is needed",
        )?;
        ensure(
            (400..=599).contains(&self.status),
            "status",
            "must be an HTTP error status (400-599)",
        )?;
        ensure(
            (400..=599).contains(&self.reject_status),
            "reject_status",
            "must be an HTTP error status (400-599)",
        )?;
        ensure(
            (1..=1000).contains(&self.cas_retries),
            "cas_retries",
            "must be from 1 to 1000",
        )?;
        ensure(
            (1..=MAX_SLOTS).contains(&self.slots),
            "slots",
            format!("must be from 1 to {MAX_SLOTS}"),
        )?;
        ensure(
            self.slot_min_idle_secs <= MAX_SLOT_MIN_IDLE_SECS,
            "slot_min_idle_secs",
            format!("must be from 0 to {MAX_SLOT_MIN_IDLE_SECS} seconds"),
        )?;
        ensure(
            !self.table.is_empty()
                && self.table.len() <= 100
                && self
                    .table
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)),
            "table",
            "must be 1-100 characters of letters, digits, `.`, `_`, `-`",
        )?;
        validate_header_name("client_id_header", &self.client_id_header)?;
        validate_header_name("plan_header", &self.plan_header)?;
        ensure(
            self.client_address.trusted_hops <= 64,
            "client_address.trusted_hops",
            "must be at most 64",
        )?;
        let mut names = Vec::new();
        for (i, rule) in self.rules.iter().enumerate() {
            let at = format!("rules[{i}]");
            rule.check_fields(&at)?;
            let name = rule.name(i);
            ensure(
                !names.contains(&name),
                &format!("{at}.name"),
                format!("duplicate rule name `{name}`"),
            )?;
            names.push(name);
        }
        Ok(())
    }
}

impl Rule {
    pub fn name(&self, index: usize) -> String {
        self.name.clone().unwrap_or_else(|| format!("rule{index}"))
    }

    fn check_fields(&self, at: &str) -> Result<(), ConfigError> {
        if let Some(n) = &self.name {
            ensure(
                is_simple_name(n),
                &format!("{at}.name"),
                "must be 1-64 characters of a-z, 0-9, `_`, `-`",
            )?;
        }
        ensure(
            !self.hosts.is_empty(),
            &format!("{at}.hosts"),
            "must not be empty (use [\"*\"] for every host)",
        )?;
        for (j, p) in self.paths.iter().enumerate() {
            p.validate()
                .map_err(|r| ConfigError::new(format!("{at}.paths[{j}]"), r))?;
        }
        for (j, part) in self.descriptor.iter().enumerate() {
            let f = format!("{at}.descriptor[{j}]");
            match part {
                DescriptorPart::Header(h) => validate_header_name(&format!("{f}.header"), h)?,
                DescriptorPart::PathPrefix(n) => ensure(
                    (1..=32).contains(n),
                    &format!("{f}.path_prefix"),
                    "must be from 1 to 32 segments",
                )?,
                _ => {}
            }
            ensure(
                !self.descriptor.iter().take(j).any(|p| p == part),
                &f,
                "duplicate descriptor part",
            )?;
        }
        if let Some(g) = &self.global {
            g.check(&format!("{at}.global"))?;
        }
        match (self.limits.is_empty(), self.plans.is_empty()) {
            (false, false) => {
                return Err(ConfigError::new(
                    format!("{at}.plans"),
                    "use either `limits` or `plans`, not both",
                ))
            }
            (true, true) => {
                return Err(ConfigError::new(
                    format!("{at}.limits"),
                    "a rule needs `limits` or `plans`",
                ))
            }
            (false, true) => {
                ensure(
                    self.default_plan.is_none(),
                    &format!("{at}.default_plan"),
                    "only meaningful with `plans`",
                )?;
                check_set(&self.limits, &format!("{at}.limits"))?;
            }
            (true, false) => {
                for (plan, set) in &self.plans {
                    let f = format!("{at}.plans.{plan}");
                    ensure(
                        !plan.is_empty()
                            && plan.len() <= 64
                            && plan.bytes().all(|b| b.is_ascii_graphic()),
                        &f,
                        "a plan name must be 1-64 visible ASCII characters",
                    )?;
                    check_set(set, &f)?;
                }
                match &self.default_plan {
                    None => {
                        return Err(ConfigError::new(
                            format!("{at}.default_plan"),
                            "required with `plans`",
                        ))
                    }
                    Some(d) => ensure(
                        self.plans.contains_key(d),
                        &format!("{at}.default_plan"),
                        format!("`{d}` is not one of the plans"),
                    )?,
                }
            }
        }
        Ok(())
    }
}

/// Largest `global.timeout_ms`.
pub const MAX_GLOBAL_TIMEOUT_MS: u32 = 10_000;
/// Largest `global.replicas`.
pub const MAX_REPLICAS: u32 = 1000;

impl Global {
    /// Validates the global block; `at` is its path (`rules[i].global`).
    pub fn check(&self, at: &str) -> Result<(), ConfigError> {
        ensure(
            !self.cluster.is_empty()
                && self.cluster.len() <= 255
                && self
                    .cluster
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"|.-_:".contains(&b)),
            &format!("{at}.cluster"),
            "must be an Envoy cluster name: 1-255 characters of letters, digits, `|`, `.`, `-`, `_`, `:`",
        )?;
        ensure(
            !crate::rls::parses_as_protobuf(self.cluster.as_bytes()),
            &format!("{at}.cluster"),
            "Envoy would read this name as a serialized GrpcService message; rename the cluster",
        )?;
        ensure(
            !self.domain.is_empty()
                && self.domain.len() <= 128
                && self
                    .domain
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)),
            &format!("{at}.domain"),
            "must be 1-128 characters of letters, digits, `.`, `_`, `-`",
        )?;
        ensure(
            (1..=MAX_GLOBAL_TIMEOUT_MS).contains(&self.timeout_ms),
            &format!("{at}.timeout_ms"),
            format!(
                "must be from 1 to {MAX_GLOBAL_TIMEOUT_MS} ms, got {}",
                self.timeout_ms
            ),
        )?;
        ensure(
            (1..=MAX_REPLICAS).contains(&self.replicas),
            &format!("{at}.replicas"),
            format!("must be from 1 to {MAX_REPLICAS}, got {}", self.replicas),
        )?;
        ensure(
            self.replicas == 1 || self.on_error == GlobalOnError::Local,
            &format!("{at}.replicas"),
            "only meaningful with `on_error: local`",
        )?;
        Ok(())
    }
}

fn check_set(set: &[Limit], field: &str) -> Result<(), ConfigError> {
    ensure(!set.is_empty(), field, "at least one limit is needed")?;
    ensure(
        set.len() <= MAX_LIMITS_PER_SET,
        field,
        format!("at most {MAX_LIMITS_PER_SET} limits per set"),
    )?;
    let mut names = Vec::new();
    for (k, l) in set.iter().enumerate() {
        let f = format!("{field}[{k}]");
        l.check(&f)?;
        let n = l.display_name();
        ensure(
            !names.contains(&n),
            &format!("{f}.name"),
            format!("duplicate limit name `{n}`"),
        )?;
        names.push(n);
    }
    Ok(())
}

impl Validate for Config {
    fn validate(&self) -> Result<(), ConfigError> {
        crate::engine::Engine::new(self).map(|_| ())
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

    const LIMIT: &str = r#"{"rate": 10, "per": "minute"}"#;

    #[test]
    fn minimal_config_and_defaults() {
        let c: Config = parse_config(
            br#"{"rules": [{"descriptor": ["client_id"], "limits": [{"rate": 10, "per": "minute"}]}]}"#,
        )
        .unwrap();
        assert_eq!(c.status, 429);
        assert_eq!(c.reject_status, 403);
        assert_eq!(c.headers, HeaderStyle::XRatelimit);
        assert_eq!(c.on_store_failure, FailureMode::Allow);
        assert_eq!(c.slots, 16_384);
        assert_eq!(c.cas_retries, 16);
        assert_eq!(c.slot_min_idle_secs, 60);
        assert!(!c.shadow);
        assert_eq!(c.rules[0].hosts, vec!["*"]);
        assert_eq!(c.rules[0].on_missing, OnMissing::Shared);
        assert_eq!(c.rules[0].limits[0].burst(), 10);
        assert_eq!(c.rules[0].limits[0].display_name(), "10-per-minute");
        assert_eq!(c.rules[0].name(0), "rule0");
    }

    #[test]
    fn descriptor_parts_parse() {
        let c: Config = parse_config(
            format!(
                r#"{{"rules": [{{"descriptor": ["client_id", "client_address", "host", "method",
                {{"header": "x-api-key"}}, {{"path_prefix": 2}}], "limits": [{LIMIT}]}}]}}"#
            )
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(c.rules[0].descriptor.len(), 6);
        assert_eq!(c.rules[0].descriptor[5], DescriptorPart::PathPrefix(2));
    }

    #[test]
    fn bad_rates_and_bursts_name_the_field() {
        let e = err(r#"{"rules": [{"limits": [{"rate": 0, "per": "second"}]}]}"#);
        assert_eq!(e.field, "rules[0].limits[0].rate");
        let e = err(r#"{"rules": [{"limits": [{"rate": -5, "per": "second"}]}]}"#);
        assert_eq!(e.field, "rules[0].limits[0].rate");
        assert!(e.reason.contains("-5"), "{e}");
        let e = err(r#"{"rules": [{"limits": [{"rate": 5, "per": "second", "burst": 0}]}]}"#);
        assert_eq!(e.field, "rules[0].limits[0].burst");
        let e = err(r#"{"rules": [{"limits": [{"rate": 5, "per": "second", "burst": -1}]}]}"#);
        assert_eq!(e.field, "rules[0].limits[0].burst");
        let e = err(r#"{"rules": [{"limits": [{"rate": 1.5, "per": "second"}]}]}"#);
        assert_eq!(e.field, "rules[0].limits[0].rate");
        let e = err(r#"{"rules": [{"limits": [{"rate": 5, "per": "week"}]}]}"#);
        assert_eq!(e.field, "rules[0].limits[0].per");
        let e = err(
            r#"{"rules": [{"plans": {"gold": [{"rate": 0, "per": "second"}]}, "default_plan": "gold"}]}"#,
        );
        assert_eq!(e.field, "rules[0].plans.gold[0].rate");
    }

    #[test]
    fn unknown_descriptor_part_is_named() {
        let e = err(&format!(
            r#"{{"rules": [{{"descriptor": ["client_id", "cookie"], "limits": [{LIMIT}]}}]}}"#
        ));
        assert_eq!(e.field, "rules[0].descriptor[1]");
        assert!(e.reason.contains("cookie"), "{e}");
        let e = err(&format!(
            r#"{{"rules": [{{"descriptor": [{{"header": "X-Bad"}}], "limits": [{LIMIT}]}}]}}"#
        ));
        assert_eq!(e.field, "rules[0].descriptor[0].header");
        let e = err(&format!(
            r#"{{"rules": [{{"descriptor": ["host", "host"], "limits": [{LIMIT}]}}]}}"#
        ));
        assert_eq!(e.field, "rules[0].descriptor[1]");
    }

    #[test]
    fn structure_errors() {
        assert_eq!(err(r#"{"rules": []}"#).field, "rules");
        assert_eq!(err(r#"{"rules": [{}]}"#).field, "rules[0].limits");
        assert_eq!(
            err(&format!(
                r#"{{"rules": [{{"limits": [{LIMIT}], "plans": {{"a": [{LIMIT}]}}}}]}}"#
            ))
            .field,
            "rules[0].plans"
        );
        assert_eq!(
            err(&format!(
                r#"{{"rules": [{{"plans": {{"a": [{LIMIT}]}}}}]}}"#
            ))
            .field,
            "rules[0].default_plan"
        );
        assert_eq!(
            err(&format!(
                r#"{{"rules": [{{"plans": {{"a": [{LIMIT}]}}, "default_plan": "b"}}]}}"#
            ))
            .field,
            "rules[0].default_plan"
        );
        assert_eq!(
            err(&format!(
                r#"{{"rules": [{{"limits": [{LIMIT}]}}], "slots": 0}}"#
            ))
            .field,
            "slots"
        );
        assert_eq!(
            err(&format!(
                r#"{{"rules": [{{"limits": [{LIMIT}]}}], "slot_min_idle_secs": 86401}}"#
            ))
            .field,
            "slot_min_idle_secs"
        );
        assert_eq!(
            err(&format!(
                r#"{{"rules": [{{"limits": [{LIMIT}]}}], "slot_min_idle_secs": -1}}"#
            ))
            .field,
            "slot_min_idle_secs"
        );
        assert_eq!(
            err(&format!(
                r#"{{"rules": [{{"limits": [{LIMIT}]}}], "status": 200}}"#
            ))
            .field,
            "status"
        );
        assert_eq!(
            err(&format!(
                r#"{{"rules": [{{"limits": [{LIMIT}]}}], "headers": "x"}}"#
            ))
            .field,
            "headers"
        );
        assert_eq!(
            err(&format!(
                r#"{{"rules": [{{"limits": [{LIMIT}], "hosts": ["a.*.com"]}}]}}"#
            ))
            .field,
            "rules[0].hosts[0]"
        );
        assert_eq!(
            err(&format!(
                r#"{{"rules": [{{"limits": [{LIMIT}], "paths": [{{"prefix": "api"}}]}}]}}"#
            ))
            .field,
            "rules[0].paths[0]"
        );
        assert_eq!(
            err(&format!(
                r#"{{"rules": [{{"name": "a", "limits": [{LIMIT}]}}, {{"name": "a", "limits": [{LIMIT}]}}]}}"#
            ))
            .field,
            "rules[1].name"
        );
        let nine = [LIMIT; 9].join(",");
        assert_eq!(
            err(&format!(r#"{{"rules": [{{"limits": [{nine}]}}]}}"#)).field,
            "rules[0].limits"
        );
        assert_eq!(
            err(&format!(
                r#"{{"rules": [{{"limits": [{LIMIT}, {LIMIT}]}}]}}"#
            ))
            .field,
            "rules[0].limits[1].name"
        );
        assert_eq!(err(r#"{"rules": [], "x": 1}"#).field, "x");
    }

    fn global(g: &str) -> String {
        format!(r#"{{"rules": [{{"limits": [{LIMIT}], "global": {g}}}]}}"#)
    }

    #[test]
    fn global_defaults_and_checks() {
        let c: Config = parse_config(
            global(r#"{"cluster": "outbound|8081||rls.ns.svc.cluster.local"}"#).as_bytes(),
        )
        .unwrap();
        let g = c.rules[0].global.clone().unwrap();
        assert_eq!(g.domain, "gatehouse");
        assert_eq!(g.timeout_ms, crate::rls::DEFAULT_TIMEOUT_MS);
        assert_eq!(g.on_error, GlobalOnError::Allow);
        assert_eq!(g.replicas, 1);
        assert!(!g.local_precheck);
        for (g, field) in [
            (r#"{"cluster": ""}"#, "rules[0].global.cluster"),
            (r#"{"cluster": "a b"}"#, "rules[0].global.cluster"),
            (r#"{"domain": "x"}"#, "rules[0].global"),
            (
                r#"{"cluster": "rls", "domain": ""}"#,
                "rules[0].global.domain",
            ),
            (
                r#"{"cluster": "rls", "domain": "a/b"}"#,
                "rules[0].global.domain",
            ),
            (
                r#"{"cluster": "rls", "timeout_ms": 0}"#,
                "rules[0].global.timeout_ms",
            ),
            (
                r#"{"cluster": "rls", "timeout_ms": 10001}"#,
                "rules[0].global.timeout_ms",
            ),
            (
                r#"{"cluster": "rls", "on_error": "local", "replicas": 0}"#,
                "rules[0].global.replicas",
            ),
            (
                r#"{"cluster": "rls", "on_error": "local", "replicas": 1001}"#,
                "rules[0].global.replicas",
            ),
            (
                r#"{"cluster": "rls", "replicas": 2}"#,
                "rules[0].global.replicas",
            ),
            (
                r#"{"cluster": "rls", "on_error": "deny", "replicas": 2}"#,
                "rules[0].global.replicas",
            ),
            (
                r#"{"cluster": "rls", "on_error": "maybe"}"#,
                "rules[0].global.on_error",
            ),
            (r#"{"cluster": "rls", "x": 1}"#, "rules[0].global.x"),
        ] {
            assert_eq!(err(&global(g)).field, field, "{g}");
        }
        let c: Config = parse_config(
            global(
                r#"{"cluster": "rls", "on_error": "local", "replicas": 3, "timeout_ms": 10000}"#,
            )
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(c.rules[0].global.as_ref().unwrap().replicas, 3);
    }
}
