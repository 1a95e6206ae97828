//! The host-router configuration (JSON, Istio `pluginConfig`), its defaults
//! and its validation. Every field is documented in the README (host-router section).

use gatehouse_core::config::{ensure, validate_header_name, ConfigError, Validate};
use gatehouse_core::host::parse_authority;
use gatehouse_core::path::PathMatch;
use serde::Deserialize;

/// Default name of the header the Envoy route reads with `cluster_header`.
pub const DEFAULT_ROUTING_HEADER: &str = "x-gatehouse-cluster";
/// Split weights must add up to exactly this.
pub const TOTAL_WEIGHT: u32 = 100;
/// Limits that keep a mistaken config from exploding memory or stats.
pub const MAX_HOSTS: usize = 1000;
pub const MAX_RULES_PER_HOST: usize = 200;
pub const MAX_SPLIT_CLUSTERS: usize = 20;
pub const MAX_DIRECT_BODY: usize = 64 * 1024;
pub const MAX_HEADER_VALUE: usize = 8 * 1024;

fn default_routing_header() -> String {
    DEFAULT_ROUTING_HEADER.to_string()
}

/// The whole filter configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Header set to the chosen cluster name; the Envoy route reads it with
    /// `cluster_header`. A client-supplied copy is always removed.
    #[serde(default = "default_routing_header")]
    pub routing_header: String,
    /// Virtual hosts. Order does not matter (exact > longer wildcard >
    /// shorter wildcard > `*`).
    #[serde(default)]
    pub hosts: Vec<HostConfig>,
    /// What to do with a request whose host matches no entry.
    #[serde(default)]
    pub unknown_host: UnknownHost,
}

/// One virtual host.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    /// `name.example.com`, `*.example.com` or `*`.
    pub host: String,
    /// Ordered rules; the first that matches wins.
    pub rules: Vec<RuleConfig>,
}

/// One rule: conditions (all must hold) and one action.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Path condition (query excluded). Absent: every path.
    #[serde(default, rename = "match")]
    pub path: Option<PathMatch>,
    /// Allowed methods (upper-case). Empty: every method.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Header conditions, all must hold.
    #[serde(default)]
    pub headers: Vec<HeaderCondition>,
    /// Send the request upstream.
    #[serde(default)]
    pub route: Option<RouteConfig>,
    /// Answer from the gateway.
    #[serde(default)]
    pub direct_response: Option<DirectResponse>,
}

/// A header condition: exactly one of `exact`, `prefix`, `present`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderCondition {
    pub name: String,
    #[serde(default)]
    pub exact: Option<String>,
    #[serde(default)]
    pub prefix: Option<String>,
    /// `true`: the header must be present; `false`: it must be absent.
    #[serde(default)]
    pub present: Option<bool>,
}

/// Where and how a request goes upstream.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// One Envoy cluster (exclusive with `split`).
    #[serde(default)]
    pub cluster: Option<String>,
    /// A weighted split across clusters (exclusive with `cluster`).
    #[serde(default)]
    pub split: Option<SplitConfig>,
    /// Host and/or path-prefix rewrite.
    #[serde(default)]
    pub rewrite: Option<Rewrite>,
    /// Request headers to set (or append) before forwarding.
    #[serde(default)]
    pub request_headers_to_add: Vec<HeaderToAdd>,
    /// Request headers to remove before forwarding.
    #[serde(default)]
    pub request_headers_to_remove: Vec<String>,
}

/// A weighted split.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitConfig {
    /// Clusters and weights; weights add up to exactly 100.
    pub clusters: Vec<WeightedCluster>,
    /// Stickiness key; absent: every request is drawn at random.
    #[serde(default)]
    pub sticky: Option<Sticky>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightedCluster {
    pub cluster: String,
    pub weight: u32,
}

/// Where the sticky key comes from: exactly one of `header`, `cookie`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sticky {
    #[serde(default)]
    pub header: Option<String>,
    #[serde(default)]
    pub cookie: Option<String>,
}

/// A rewrite: at least one of `host`, `path_prefix`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rewrite {
    /// New `:authority` (`host` or `host:port`).
    #[serde(default)]
    pub host: Option<String>,
    /// Replaces the part of the path matched by the rule's `match`.
    #[serde(default)]
    pub path_prefix: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderToAdd {
    pub name: String,
    pub value: String,
    /// `false` (default): replace any existing value; `true`: add a value.
    #[serde(default)]
    pub append: bool,
}

fn default_content_type() -> String {
    "text/plain; charset=utf-8".to_string()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectResponse {
    /// 200–599.
    pub status: u16,
    #[serde(default)]
    pub body: String,
    #[serde(default = "default_content_type")]
    pub content_type: String,
}

/// `reject` (default) or `pass`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnknownAction {
    #[default]
    Reject,
    Pass,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnknownHost {
    #[serde(default)]
    pub action: UnknownAction,
    /// With `reject`: 404 (default) or 421.
    #[serde(default)]
    pub status: Option<u16>,
}

impl UnknownHost {
    pub fn reject_status(&self) -> u16 {
        self.status.unwrap_or(404)
    }
}

impl Validate for Config {
    fn validate(&self) -> Result<(), ConfigError> {
        crate::router::Router::build(self).map(|_| ())
    }
}

/// Checks that does not need the host table (called by `Router::build`).
pub(crate) fn check_config(cfg: &Config) -> Result<(), ConfigError> {
    validate_header_name("routing_header", &cfg.routing_header)?;
    ensure(
        cfg.routing_header != "host",
        "routing_header",
        "`host` cannot be the routing header",
    )?;
    ensure(
        cfg.hosts.len() <= MAX_HOSTS,
        "hosts",
        format!("at most {MAX_HOSTS} hosts"),
    )?;
    match cfg.unknown_host.action {
        UnknownAction::Reject => ensure(
            matches!(cfg.unknown_host.status, None | Some(404) | Some(421)),
            "unknown_host.status",
            "must be 404 or 421",
        )?,
        UnknownAction::Pass => ensure(
            cfg.unknown_host.status.is_none(),
            "unknown_host.status",
            "has no effect with action `pass`; remove it",
        )?,
    }
    for (i, h) in cfg.hosts.iter().enumerate() {
        check_host(h, &cfg.routing_header).map_err(|e| e.within(&format!("hosts[{i}]")))?;
    }
    Ok(())
}

fn check_host(h: &HostConfig, routing_header: &str) -> Result<(), ConfigError> {
    ensure(
        !h.rules.is_empty(),
        "rules",
        "a host needs at least one rule",
    )?;
    ensure(
        h.rules.len() <= MAX_RULES_PER_HOST,
        "rules",
        format!("at most {MAX_RULES_PER_HOST} rules per host"),
    )?;
    for (j, r) in h.rules.iter().enumerate() {
        check_rule(r, routing_header).map_err(|e| e.within(&format!("rules[{j}]")))?;
    }
    Ok(())
}

fn check_rule(r: &RuleConfig, routing_header: &str) -> Result<(), ConfigError> {
    if let Some(p) = &r.path {
        p.validate()
            .map_err(|reason| ConfigError::new("match", reason))?;
    }
    for (k, m) in r.methods.iter().enumerate() {
        ensure(
            !m.is_empty() && m.len() <= 32 && m.bytes().all(|b| b.is_ascii_uppercase()),
            &format!("methods[{k}]"),
            format!("`{m}` is not an upper-case method name"),
        )?;
    }
    for (k, c) in r.headers.iter().enumerate() {
        check_condition(c).map_err(|e| e.within(&format!("headers[{k}]")))?;
    }
    match (&r.route, &r.direct_response) {
        (Some(route), None) => check_route(route, routing_header).map_err(|e| e.within("route")),
        (None, Some(d)) => check_direct(d).map_err(|e| e.within("direct_response")),
        (Some(_), Some(_)) => Err(ConfigError::new(
            ".",
            "a rule has either `route` or `direct_response`, not both",
        )),
        (None, None) => Err(ConfigError::new(
            ".",
            "a rule needs an action: `route` or `direct_response`",
        )),
    }
}

fn check_condition(c: &HeaderCondition) -> Result<(), ConfigError> {
    validate_header_name("name", &c.name)?;
    let kinds = usize::from(c.exact.is_some())
        + usize::from(c.prefix.is_some())
        + usize::from(c.present.is_some());
    ensure(
        kinds == 1,
        ".",
        "a header condition needs exactly one of `exact`, `prefix`, `present`",
    )
}

/// An Envoy cluster name carried in a header value: printable ASCII, no
/// spaces (Istio names such as `outbound|80||svc.ns.svc.cluster.local` fit).
pub fn valid_cluster_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 255 && name.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

fn check_cluster(field: &str, name: &str) -> Result<(), ConfigError> {
    ensure(
        valid_cluster_name(name),
        field,
        format!(
            "`{name}` is not a valid cluster name (1-255 printable ASCII characters, no spaces)"
        ),
    )
}

fn check_route(r: &RouteConfig, routing_header: &str) -> Result<(), ConfigError> {
    match (&r.cluster, &r.split) {
        (Some(c), None) => check_cluster("cluster", c)?,
        (None, Some(s)) => check_split(s).map_err(|e| e.within("split"))?,
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(
                ".",
                "a route has either `cluster` or `split`, not both",
            ))
        }
        (None, None) => {
            return Err(ConfigError::new(
                ".",
                "a route needs a target: `cluster` or `split`",
            ))
        }
    }
    if let Some(rw) = &r.rewrite {
        check_rewrite(rw).map_err(|e| e.within("rewrite"))?;
    }
    let forbidden = |field: &str, name: &str| -> Result<(), ConfigError> {
        validate_header_name(field, name)?;
        ensure(
            name != routing_header && name != "host",
            field,
            format!("`{name}` cannot be edited here (the routing header and `host` belong to the router)"),
        )
    };
    for (k, a) in r.request_headers_to_add.iter().enumerate() {
        let at = format!("request_headers_to_add[{k}]");
        forbidden(&format!("{at}.name"), &a.name)?;
        ensure(
            valid_header_value(&a.value),
            &format!("{at}.value"),
            format!("must be at most {MAX_HEADER_VALUE} bytes without control characters"),
        )?;
    }
    for (k, n) in r.request_headers_to_remove.iter().enumerate() {
        forbidden(&format!("request_headers_to_remove[{k}]"), n)?;
    }
    Ok(())
}

fn valid_header_value(v: &str) -> bool {
    v.len() <= MAX_HEADER_VALUE && v.chars().all(|c| c == '\t' || !c.is_control())
}

fn check_split(s: &SplitConfig) -> Result<(), ConfigError> {
    ensure(
        !s.clusters.is_empty(),
        "clusters",
        "a split needs at least one cluster",
    )?;
    ensure(
        s.clusters.len() <= MAX_SPLIT_CLUSTERS,
        "clusters",
        format!("at most {MAX_SPLIT_CLUSTERS} clusters"),
    )?;
    let mut total: u32 = 0;
    for (k, c) in s.clusters.iter().enumerate() {
        check_cluster(&format!("clusters[{k}].cluster"), &c.cluster)?;
        ensure(
            !s.clusters.iter().take(k).any(|o| o.cluster == c.cluster),
            &format!("clusters[{k}].cluster"),
            format!("duplicate cluster `{}`", c.cluster),
        )?;
        ensure(
            c.weight <= TOTAL_WEIGHT,
            &format!("clusters[{k}].weight"),
            format!("must be between 0 and {TOTAL_WEIGHT}"),
        )?;
        total = total.saturating_add(c.weight);
    }
    ensure(
        total == TOTAL_WEIGHT,
        "clusters",
        format!("weights must add up to {TOTAL_WEIGHT} (they add up to {total})"),
    )?;
    if let Some(st) = &s.sticky {
        match (&st.header, &st.cookie) {
            (Some(h), None) => validate_header_name("sticky.header", h)?,
            (None, Some(c)) => ensure(
                !c.is_empty()
                    && c.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)),
                "sticky.cookie",
                format!("`{c}` is not a valid cookie name"),
            )?,
            _ => {
                return Err(ConfigError::new(
                    "sticky",
                    "needs exactly one of `header`, `cookie`",
                ))
            }
        }
    }
    Ok(())
}

fn check_rewrite(rw: &Rewrite) -> Result<(), ConfigError> {
    ensure(
        rw.host.is_some() || rw.path_prefix.is_some(),
        ".",
        "a rewrite needs a target: `host` and/or `path_prefix`",
    )?;
    if let Some(h) = &rw.host {
        ensure(
            parse_authority(h).is_ok(),
            "host",
            format!("`{h}` is not a valid host[:port]"),
        )?;
    }
    if let Some(p) = &rw.path_prefix {
        ensure(
            p.starts_with('/')
                && p.len() <= 1024
                && p.bytes()
                    .all(|b| (0x21..=0x7e).contains(&b) && b != b'?' && b != b'#'),
            "path_prefix",
            format!("`{p}` must start with `/` and hold no spaces, `?` or `#`"),
        )?;
    }
    Ok(())
}

fn check_direct(d: &DirectResponse) -> Result<(), ConfigError> {
    ensure(
        (200..=599).contains(&d.status),
        "status",
        "must be between 200 and 599",
    )?;
    ensure(
        d.body.len() <= MAX_DIRECT_BODY,
        "body",
        format!("at most {MAX_DIRECT_BODY} bytes"),
    )?;
    ensure(
        !d.content_type.is_empty() && valid_header_value(&d.content_type),
        "content_type",
        "must be a non-empty header value",
    )
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

    fn one_rule(rule: &str) -> String {
        format!(r#"{{"hosts": [{{"host": "a.com", "rules": [{rule}]}}]}}"#)
    }

    #[test]
    fn defaults() {
        let c: Config = parse_config(b"").unwrap();
        assert_eq!(c.routing_header, "x-gatehouse-cluster");
        assert!(c.hosts.is_empty());
        assert_eq!(c.unknown_host.action, UnknownAction::Reject);
        assert_eq!(c.unknown_host.reject_status(), 404);
    }

    #[test]
    fn the_example_parses() {
        let c: Config = parse_config(include_bytes!("../example.json")).unwrap();
        assert_eq!(c.hosts.len(), 2);
    }

    #[test]
    fn duplicate_hosts_name_the_field() {
        let e = err(r#"{"hosts": [
            {"host": "a.com", "rules": [{"route": {"cluster": "x"}}]},
            {"host": "A.com", "rules": [{"route": {"cluster": "y"}}]}]}"#);
        assert_eq!(e.field, "hosts[1].host");
        assert!(e.reason.contains("duplicate"), "{e}");
    }

    #[test]
    fn bad_wildcard_names_the_field() {
        let e = err(r#"{"hosts": [{"host": "a.*.com", "rules": [{"route": {"cluster": "x"}}]}]}"#);
        assert_eq!(e.field, "hosts[0].host");
        assert!(e.reason.contains("a.*.com"), "{e}");
    }

    #[test]
    fn weights_must_add_up() {
        let e = err(&one_rule(
            r#"{"route": {"split": {"clusters": [{"cluster": "a", "weight": 50}, {"cluster": "b", "weight": 40}]}}}"#,
        ));
        assert_eq!(e.field, "hosts[0].rules[0].route.split.clusters");
        assert!(e.reason.contains("add up to 100"), "{e}");
        let e = err(&one_rule(
            r#"{"route": {"split": {"clusters": [{"cluster": "a", "weight": 150}, {"cluster": "b", "weight": 0}]}}}"#,
        ));
        assert_eq!(e.field, "hosts[0].rules[0].route.split.clusters[0].weight");
        let e = err(&one_rule(
            r#"{"route": {"split": {"clusters": [{"cluster": "a", "weight": 50}, {"cluster": "a", "weight": 50}]}}}"#,
        ));
        assert_eq!(e.field, "hosts[0].rules[0].route.split.clusters[1].cluster");
        let e = err(&one_rule(
            r#"{"route": {"split": {"clusters": [{"cluster": "a", "weight": -1}]}}}"#,
        ));
        assert_eq!(e.field, "hosts[0].rules[0].route.split.clusters[0].weight");
        let e = err(&one_rule(
            r#"{"route": {"split": {"clusters": [{"cluster": "a", "weight": 100}], "sticky": {}}}}"#,
        ));
        assert_eq!(e.field, "hosts[0].rules[0].route.split.sticky");
    }

    #[test]
    fn rewrite_without_target() {
        let e = err(&one_rule(r#"{"route": {"cluster": "a", "rewrite": {}}}"#));
        assert_eq!(e.field, "hosts[0].rules[0].route.rewrite");
        assert!(e.reason.contains("needs a target"), "{e}");
        let e = err(&one_rule(r#"{"route": {"rewrite": {"host": "b.com"}}}"#));
        assert_eq!(e.field, "hosts[0].rules[0].route");
        assert!(e.reason.contains("needs a target"), "{e}");
        let e = err(&one_rule(
            r#"{"route": {"cluster": "a", "rewrite": {"path_prefix": "v2"}}}"#,
        ));
        assert_eq!(e.field, "hosts[0].rules[0].route.rewrite.path_prefix");
        let e = err(&one_rule(
            r#"{"route": {"cluster": "a", "rewrite": {"host": "b .com"}}}"#,
        ));
        assert_eq!(e.field, "hosts[0].rules[0].route.rewrite.host");
    }

    #[test]
    fn other_rule_errors() {
        assert_eq!(err(&one_rule("{}")).field, "hosts[0].rules[0]");
        assert_eq!(
            err(&one_rule(
                r#"{"route": {"cluster": "a"}, "direct_response": {"status": 200}}"#
            ))
            .field,
            "hosts[0].rules[0]"
        );
        assert_eq!(
            err(&one_rule(
                r#"{"match": {"prefix": "api"}, "route": {"cluster": "a"}}"#
            ))
            .field,
            "hosts[0].rules[0].match"
        );
        assert_eq!(
            err(&one_rule(
                r#"{"methods": ["get"], "route": {"cluster": "a"}}"#
            ))
            .field,
            "hosts[0].rules[0].methods[0]"
        );
        assert_eq!(
            err(&one_rule(
                r#"{"headers": [{"name": "x", "exact": "1", "present": true}], "route": {"cluster": "a"}}"#
            ))
            .field,
            "hosts[0].rules[0].headers[0]"
        );
        assert_eq!(
            err(&one_rule(r#"{"route": {"cluster": "a b"}}"#)).field,
            "hosts[0].rules[0].route.cluster"
        );
        assert_eq!(
            err(&one_rule(
                r#"{"route": {"cluster": "a", "request_headers_to_remove": ["x-gatehouse-cluster"]}}"#
            ))
            .field,
            "hosts[0].rules[0].route.request_headers_to_remove[0]"
        );
        assert_eq!(
            err(&one_rule(
                r#"{"route": {"cluster": "a", "request_headers_to_add": [{"name": "x", "value": "a\nb"}]}}"#
            ))
            .field,
            "hosts[0].rules[0].route.request_headers_to_add[0].value"
        );
        assert_eq!(
            err(&one_rule(r#"{"direct_response": {"status": 99}}"#)).field,
            "hosts[0].rules[0].direct_response.status"
        );
        assert_eq!(
            err(&one_rule(r#"{"route": {"cluster": "a", "weight": 1}}"#)).field,
            "hosts[0].rules[0].route.weight"
        );
        assert_eq!(
            err(r#"{"hosts": [{"host": "a.com", "rules": []}]}"#).field,
            "hosts[0].rules"
        );
    }

    #[test]
    fn match_needs_exactly_one_kind() {
        for (rule, got) in [
            (r#"{"match": {}, "route": {"cluster": "a"}}"#, "(got none)"),
            (
                r#"{"match": {"exact": "/a", "prefix": "/b"}, "route": {"cluster": "a"}}"#,
                "(got `exact` and `prefix`)",
            ),
            (
                r#"{"match": {"prefix": "/b", "segment_prefix": "/c", "exact": "/a"}, "route": {"cluster": "a"}}"#,
                "(got `exact` and `prefix` and `segment_prefix`)",
            ),
        ] {
            let e = err(&one_rule(rule));
            assert_eq!(e.field, "hosts[0].rules[0].match", "{rule}: {e}");
            assert!(
                e.reason
                    .contains("exactly one of `exact`, `prefix`, `segment_prefix`"),
                "{e}"
            );
            assert!(e.reason.contains(got), "{e}");
            assert!(!e.to_string().contains("line 1"), "{e}");
        }
        let e = err(&one_rule(
            r#"{"match": {"regex": "/a"}, "route": {"cluster": "a"}}"#,
        ));
        assert_eq!(e.field, "hosts[0].rules[0].match.regex");
        assert!(e.reason.contains("unknown field `regex`"), "{e}");
        // An enum elsewhere written as an object: the field, never `.`.
        let e = err(r#"{"unknown_host": {"action": {"reject": null, "pass": null}}}"#);
        assert_eq!(e.field, "unknown_host.action", "{e}");
        assert!(!e.to_string().contains("line 1"), "{e}");
    }

    #[test]
    fn top_level_errors() {
        assert_eq!(
            err(r#"{"routing_header": "X-Cluster"}"#).field,
            "routing_header"
        );
        assert_eq!(
            err(r#"{"unknown_host": {"status": 403}}"#).field,
            "unknown_host.status"
        );
        assert_eq!(
            err(r#"{"unknown_host": {"action": "pass", "status": 404}}"#).field,
            "unknown_host.status"
        );
        assert_eq!(
            err(r#"{"unknown_host": {"action": "drop"}}"#).field,
            "unknown_host.action"
        );
        assert_eq!(err(r#"{"hostz": []}"#).field, "hostz");
        let c: Config = parse_config(br#"{"unknown_host": {"status": 421}}"#).unwrap();
        assert_eq!(c.unknown_host.reject_status(), 421);
    }
}
