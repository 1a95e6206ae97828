//! The routing decision: host lookup, rule matching and the resulting header
//! edits or local reply. Pure: headers in, [`Decision`] out.

use crate::config::{
    check_config, Config, HeaderCondition, RouteConfig, RuleConfig, UnknownAction,
};
use crate::split;
use gatehouse_core::config::ConfigError;
use gatehouse_core::headers::{HeaderOp, HeaderSnapshot};
use gatehouse_core::host::{parse_authority, HostTable};
use gatehouse_core::path::{
    has_authority_like_start, has_dot_segment, split_path_query, PathMatch,
};
use gatehouse_core::random::RandomSource;
use gatehouse_core::reply::error_body;

/// A validated configuration ready to route.
#[derive(Debug, Clone)]
pub struct Router {
    cfg: Config,
    /// Host pattern -> index into `cfg.hosts`.
    table: HostTable<usize>,
}

/// What happened to a request (one counter each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Sent to a cluster chosen by a rule.
    Routed,
    /// Answered by a rule's `direct_response`.
    DirectResponse,
    /// The host matched, no rule did: 404.
    NoRoute,
    /// No host entry matched; rejected with 404/421.
    UnknownHostRejected,
    /// No host entry matched; passed through untouched.
    UnknownHostPassed,
    /// `:authority` missing or malformed: 400 (or passed with `pass`).
    BadHost,
    /// The host matched but `:path` is not UTF-8, or a path rewrite would
    /// send a path with dot segments or a leading `//`: 400.
    BadPath,
}

/// A reply produced by the filter itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

/// What the adapter must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Apply these edits (in order), then clear the route cache if any.
    Continue(Vec<HeaderOp>),
    /// Answer locally.
    Reply(LocalReply),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub outcome: Outcome,
    pub action: Action,
    /// Index of the matched host entry (config order), for per-host counters.
    pub host: Option<usize>,
    /// Host or path was rewritten.
    pub rewritten: bool,
    /// The client sent the routing header (it is removed).
    pub forged_routing_header: bool,
    /// The cluster the request is sent to, when routed.
    pub cluster: Option<String>,
}

impl Router {
    /// Validates `cfg` and builds the host table.
    pub fn build(cfg: &Config) -> Result<Router, ConfigError> {
        check_config(cfg)?;
        let table = HostTable::build(
            "hosts",
            cfg.hosts
                .iter()
                .enumerate()
                .map(|(i, h)| (h.host.clone(), i)),
        )
        .map_err(|mut e| {
            // The pattern is the `host` field of the entry.
            if e.field.starts_with("hosts[") && e.field.ends_with(']') {
                e.field.push_str(".host");
            }
            e
        })?;
        Ok(Router {
            cfg: cfg.clone(),
            table,
        })
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn routing_header(&self) -> &str {
        &self.cfg.routing_header
    }

    /// Decides for one request. `rng` is used only for an unsticky split.
    pub fn decide(&self, headers: &HeaderSnapshot, rng: &mut dyn RandomSource) -> Decision {
        let forged = headers.contains(&self.cfg.routing_header);
        let mut ops = Vec::new();
        if forged {
            ops.push(HeaderOp::remove(&self.cfg.routing_header));
        }
        let mut d = Decision {
            outcome: Outcome::Routed,
            action: Action::Continue(Vec::new()),
            host: None,
            rewritten: false,
            forged_routing_header: forged,
            cluster: None,
        };
        let pass = self.cfg.unknown_host.action == UnknownAction::Pass;

        let raw_host = headers
            .first(":authority")
            .or_else(|| headers.first("host"))
            .and_then(|v| std::str::from_utf8(v).ok());
        let Some(host) = raw_host
            .and_then(|h| parse_authority(h).ok())
            .map(|a| a.host)
        else {
            d.outcome = Outcome::BadHost;
            d.action = if pass {
                Action::Continue(ops)
            } else {
                Action::Reply(json_reply(
                    400,
                    "bad_host",
                    "missing or malformed Host",
                    headers,
                ))
            };
            return d;
        };
        let Some((index, entry)) = self
            .table
            .lookup(&host)
            .and_then(|&i| self.cfg.hosts.get(i).map(|e| (i, e)))
        else {
            if pass {
                d.outcome = Outcome::UnknownHostPassed;
                d.action = Action::Continue(ops);
            } else {
                d.outcome = Outcome::UnknownHostRejected;
                let status = self.cfg.unknown_host.reject_status();
                let message = if status == 421 {
                    "this gateway does not serve this host"
                } else {
                    "no virtual host matches this request"
                };
                d.action = Action::Reply(json_reply(status, "unknown_host", message, headers));
            }
            return d;
        };
        d.host = Some(index);

        // No `:path` (CONNECT): match as `/`. A path that is not UTF-8 is
        // refused rather than matched as something else.
        let path_full = match headers.first(":path").map(std::str::from_utf8) {
            None => "/",
            Some(Ok(p)) => p,
            Some(Err(_)) => {
                d.outcome = Outcome::BadPath;
                d.action = Action::Reply(json_reply(
                    400,
                    "bad_path",
                    "malformed request path",
                    headers,
                ));
                return d;
            }
        };
        let (path, _) = split_path_query(path_full);
        let method = headers
            .first(":method")
            .and_then(|v| std::str::from_utf8(v).ok())
            .unwrap_or("");

        let Some(rule) = entry
            .rules
            .iter()
            .find(|r| rule_matches(r, path, method, headers))
        else {
            d.outcome = Outcome::NoRoute;
            d.action = Action::Reply(json_reply(
                404,
                "no_route",
                "no route matches this request",
                headers,
            ));
            return d;
        };

        if let Some(direct) = &rule.direct_response {
            d.outcome = Outcome::DirectResponse;
            d.action = Action::Reply(LocalReply {
                status: direct.status,
                content_type: direct.content_type.clone(),
                body: direct.body.clone(),
            });
            return d;
        }
        let Some(route) = &rule.route else {
            // Unreachable after validation; answer rather than guess.
            d.outcome = Outcome::NoRoute;
            d.action = Action::Reply(json_reply(404, "no_route", "no route", headers));
            return d;
        };
        let cluster = pick_cluster(route, headers, rng);
        ops.push(HeaderOp::set(&self.cfg.routing_header, cluster.clone()));
        if let Some(rw) = &route.rewrite {
            if let Some(h) = &rw.host {
                ops.push(HeaderOp::set(":authority", h.clone()));
                d.rewritten = true;
            }
            if let Some(prefix) = &rw.path_prefix {
                let new_path = rewrite_path(rule.path.as_ref(), path_full, prefix);
                if !safe_rewritten_path(&new_path) {
                    d.outcome = Outcome::BadPath;
                    d.action = Action::Reply(json_reply(
                        400,
                        "bad_path",
                        "the rewritten path would hold dot segments or start with //",
                        headers,
                    ));
                    return d;
                }
                if new_path != path_full {
                    d.rewritten = true;
                }
                ops.push(HeaderOp::set(":path", new_path));
            }
        }
        for name in &route.request_headers_to_remove {
            ops.push(HeaderOp::remove(name));
        }
        for a in &route.request_headers_to_add {
            ops.push(if a.append {
                HeaderOp::add(&a.name, a.value.clone())
            } else {
                HeaderOp::set(&a.name, a.value.clone())
            });
        }
        d.outcome = Outcome::Routed;
        d.cluster = Some(cluster);
        d.action = Action::Continue(ops);
        d
    }
}

fn rule_matches(rule: &RuleConfig, path: &str, method: &str, headers: &HeaderSnapshot) -> bool {
    if let Some(p) = &rule.path {
        if !p.matches(path) {
            return false;
        }
    }
    if !rule.methods.is_empty() && !rule.methods.iter().any(|m| m == method) {
        return false;
    }
    rule.headers.iter().all(|c| condition_holds(c, headers))
}

/// `exact` / `prefix`: some value of the header satisfies it (values are
/// compared as bytes); `present`: the header is (or is not) there.
fn condition_holds(c: &HeaderCondition, headers: &HeaderSnapshot) -> bool {
    if let Some(want) = c.present {
        return headers.contains(&c.name) == want;
    }
    if let Some(exact) = &c.exact {
        return headers.all(&c.name).any(|v| v == exact.as_bytes());
    }
    if let Some(prefix) = &c.prefix {
        return headers
            .all(&c.name)
            .any(|v| v.starts_with(prefix.as_bytes()));
    }
    false
}

fn pick_cluster(
    route: &RouteConfig,
    headers: &HeaderSnapshot,
    rng: &mut dyn RandomSource,
) -> String {
    if let Some(c) = &route.cluster {
        return c.clone();
    }
    let Some(s) = &route.split else {
        return String::new();
    };
    // The sticky key is hashed where it lies in the request (no copy).
    let key: Option<&[u8]> = s.sticky.as_ref().and_then(|st| {
        if let Some(h) = &st.header {
            headers.first(h).filter(|v| !v.is_empty())
        } else if let Some(name) = &st.cookie {
            headers
                .all("cookie")
                .find_map(|v| split::cookie_value(v, name))
                .filter(|v| !v.is_empty())
        } else {
            None
        }
    });
    let bucket = match key {
        Some(k) => split::sticky_bucket(k),
        None => split::random_bucket(rng),
    };
    let i = split::pick_iter(s.clusters.iter().map(|c| c.weight), bucket);
    s.clusters
        .get(i)
        .or_else(|| s.clusters.first())
        .map(|c| c.cluster.clone())
        .unwrap_or_default()
}

/// Replaces the part of `path_full` matched by `m` with `prefix`, keeping
/// the rest and the query. Without a `match` (or with an exact match, whose
/// whole path is replaced) see the README. A doubled `/` at the join is
/// collapsed: `/api` -> `/` on `/api/x` gives `/x`.
pub fn rewrite_path(m: Option<&PathMatch>, path_full: &str, prefix: &str) -> String {
    let (path, query) = split_path_query(path_full);
    let rest = match m {
        None => path,
        Some(PathMatch::Exact(_)) => "",
        Some(PathMatch::Prefix(p)) => path.strip_prefix(p.as_str()).unwrap_or(path),
        Some(PathMatch::SegmentPrefix(p)) => {
            let trimmed = p.strip_suffix('/').unwrap_or(p);
            path.strip_prefix(trimmed).unwrap_or(path)
        }
    };
    let mut out = String::with_capacity(prefix.len() + rest.len() + 16);
    out.push_str(prefix);
    if prefix.ends_with('/') {
        out.push_str(rest.strip_prefix('/').unwrap_or(rest));
    } else {
        out.push_str(rest);
    }
    if out.is_empty() {
        out.push('/');
    }
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// A rewritten path may be sent upstream only when it cannot escape the new
/// prefix or name another host, whatever Envoy's path normalisation: no dot
/// segment (`.`, `..`, also percent-encoded or before `;`) and no leading
/// `//` (also `/\`, `/%2f`, `/%5c`). The query is not looked at.
pub fn safe_rewritten_path(path_full: &str) -> bool {
    let (path, _) = split_path_query(path_full);
    !has_dot_segment(path) && !has_authority_like_start(path)
}

use gatehouse_core::reply::request_id_for_body as request_id;

/// Every rejection reason (the `error` of the JSON body of a local reply).
pub const REASONS: [&str; 4] = ["bad_host", "unknown_host", "bad_path", "no_route"];

/// A JSON error reply; the request id it quotes is looked up only here,
/// for a request answered locally.
fn json_reply(status: u16, code: &str, message: &str, headers: &HeaderSnapshot) -> LocalReply {
    LocalReply {
        status,
        content_type: "application/json".to_string(),
        body: error_body(code, message, request_id(headers)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_core::parse_config;
    use gatehouse_core::random::SplitMix64;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn router(json: &str) -> Router {
        let cfg: Config = parse_config(json.as_bytes()).unwrap();
        Router::build(&cfg).unwrap()
    }

    fn req(host: &str, path: &str) -> Vec<(&'static str, String)> {
        vec![
            (":authority", host.to_string()),
            (":path", path.to_string()),
            (":method", "GET".to_string()),
        ]
    }

    fn decide(r: &Router, h: &[(&str, String)]) -> Decision {
        let snap = HeaderSnapshot::from_pairs(h.iter().map(|(k, v)| (*k, v.as_str())));
        r.decide(&snap, &mut SplitMix64(7))
    }

    fn cluster_of(d: &Decision) -> Option<&str> {
        d.cluster.as_deref()
    }

    const HOSTS: &str = r#"{"hosts": [
        {"host": "*", "rules": [{"route": {"cluster": "any"}}]},
        {"host": "*.com", "rules": [{"route": {"cluster": "com"}}]},
        {"host": "*.example.com", "rules": [{"route": {"cluster": "wild"}}]},
        {"host": "api.example.com", "rules": [{"route": {"cluster": "exact"}}]}
    ]}"#;

    #[test]
    fn host_precedence_and_normalization() {
        let r = router(HOSTS);
        for (host, want) in [
            ("api.example.com", "exact"),
            ("API.Example.COM:8443", "exact"),
            ("api.example.com.", "exact"),
            ("www.example.com", "wild"),
            ("a.b.example.com:80", "wild"),
            ("example.com", "com"),
            ("example.org", "any"),
            ("[::1]:8080", "any"),
            ("10.1.2.3", "any"),
        ] {
            let d = decide(&r, &req(host, "/"));
            assert_eq!(d.outcome, Outcome::Routed, "{host}");
            assert_eq!(cluster_of(&d), Some(want), "{host}");
        }
    }

    #[test]
    fn order_in_config_never_matters() {
        let cfg: Config = parse_config(HOSTS.as_bytes()).unwrap();
        let mut rev = cfg.clone();
        rev.hosts.reverse();
        let a = Router::build(&cfg).unwrap();
        let b = Router::build(&rev).unwrap();
        for host in ["api.example.com", "x.example.com", "x.com", "x.org"] {
            assert_eq!(
                cluster_of(&decide(&a, &req(host, "/"))),
                cluster_of(&decide(&b, &req(host, "/")))
            );
        }
    }

    #[test]
    fn ipv6_host_entry() {
        let r =
            router(r#"{"hosts": [{"host": "[::1]", "rules": [{"route": {"cluster": "v6"}}]}]}"#);
        assert_eq!(cluster_of(&decide(&r, &req("[::1]:8080", "/"))), Some("v6"));
        assert_eq!(
            decide(&r, &req("[::2]", "/")).outcome,
            Outcome::UnknownHostRejected
        );
    }

    #[test]
    fn unknown_and_bad_hosts() {
        let r = router(r#"{"hosts": [{"host": "a.com", "rules": [{"route": {"cluster": "a"}}]}]}"#);
        let d = decide(&r, &req("b.com", "/"));
        assert_eq!(d.outcome, Outcome::UnknownHostRejected);
        let Action::Reply(rep) = &d.action else {
            panic!()
        };
        assert_eq!(rep.status, 404);
        assert!(rep.body.contains("unknown_host"));
        let d = decide(&r, &req("a.com@evil.com", "/"));
        assert_eq!(d.outcome, Outcome::BadHost);
        let Action::Reply(rep) = &d.action else {
            panic!()
        };
        assert_eq!(rep.status, 400);
        let d = decide(&r, &[(":path", "/".to_string())]);
        assert_eq!(d.outcome, Outcome::BadHost);

        let r = router(
            r#"{"unknown_host": {"status": 421}, "hosts": [{"host": "a.com", "rules": [{"route": {"cluster": "a"}}]}]}"#,
        );
        let Action::Reply(rep) = decide(&r, &req("b.com", "/")).action else {
            panic!()
        };
        assert_eq!(rep.status, 421);

        let r = router(
            r#"{"unknown_host": {"action": "pass"}, "hosts": [{"host": "a.com", "rules": [{"route": {"cluster": "a"}}]}]}"#,
        );
        let d = decide(&r, &req("b.com", "/"));
        assert_eq!(d.outcome, Outcome::UnknownHostPassed);
        assert_eq!(d.action, Action::Continue(vec![]));
        // Even when passing, a forged routing header is removed.
        let mut h = req("b.com", "/");
        h.push(("x-gatehouse-cluster", "secret".to_string()));
        let d = decide(&r, &h);
        assert!(d.forged_routing_header);
        assert_eq!(
            d.action,
            Action::Continue(vec![HeaderOp::remove("x-gatehouse-cluster")])
        );
    }

    #[test]
    fn a_non_utf8_path_is_refused() {
        let r = router(r#"{"hosts": [{"host": "a.com", "rules": [{"route": {"cluster": "a"}}]}]}"#);
        let snap = HeaderSnapshot::new(vec![
            (":authority".into(), b"a.com".to_vec()),
            (":path".into(), b"/caf\xff".to_vec()),
        ]);
        let d = r.decide(&snap, &mut SplitMix64(1));
        assert_eq!(d.outcome, Outcome::BadPath);
        let Action::Reply(rep) = d.action else {
            panic!()
        };
        assert_eq!(rep.status, 400);
        // Without `:path` (CONNECT) the path is `/`.
        let snap = HeaderSnapshot::from_pairs([(":authority", "a.com")]);
        assert_eq!(
            r.decide(&snap, &mut SplitMix64(1)).cluster.as_deref(),
            Some("a")
        );
    }

    #[test]
    fn the_request_id_is_echoed_only_when_sane() {
        let r = router("{}");
        let mut h = req("b.com", "/");
        h.push(("x-request-id", "abc-123".to_string()));
        let Action::Reply(rep) = decide(&r, &h).action else {
            panic!()
        };
        assert!(rep.body.contains("abc-123"));
        let mut h = req("b.com", "/");
        h.push(("x-request-id", "a b\"<script>".to_string()));
        let Action::Reply(rep) = decide(&r, &h).action else {
            panic!()
        };
        assert!(!rep.body.contains("script"));
    }

    const RULES: &str = r#"{"hosts": [{"host": "a.com", "rules": [
        {"match": {"exact": "/healthz"}, "direct_response": {"status": 200, "body": "ok"}},
        {"match": {"segment_prefix": "/api"}, "methods": ["POST"], "route": {"cluster": "writer"}},
        {"match": {"segment_prefix": "/api"}, "headers": [{"name": "x-canary", "exact": "1"}], "route": {"cluster": "canary"}},
        {"match": {"segment_prefix": "/api"}, "headers": [{"name": "x-beta", "present": true}, {"name": "x-block", "present": false}], "route": {"cluster": "beta"}},
        {"match": {"segment_prefix": "/api"}, "headers": [{"name": "user-agent", "prefix": "curl/"}], "route": {"cluster": "curl"}},
        {"match": {"segment_prefix": "/api"}, "route": {"cluster": "api"}},
        {"match": {"prefix": "/static"}, "route": {"cluster": "static"}}
    ]}]}"#;

    #[test]
    fn rules_first_match_wins() {
        let r = router(RULES);
        let c = |path: &str, method: &str, extra: &[(&'static str, &str)]| {
            let mut h = req("a.com", path);
            h.retain(|(k, _)| *k != ":method");
            h.push((":method", method.to_string()));
            for (k, v) in extra {
                h.push((k, v.to_string()));
            }
            let d = decide(&r, &h);
            d.cluster
                .clone()
                .unwrap_or_else(|| format!("{:?}", d.outcome))
        };
        assert_eq!(c("/healthz", "GET", &[]), "DirectResponse");
        assert_eq!(c("/healthz?x", "GET", &[]), "DirectResponse");
        assert_eq!(c("/healthz/x", "GET", &[]), "NoRoute");
        assert_eq!(c("/api", "POST", &[]), "writer");
        assert_eq!(c("/api/x", "GET", &[("x-canary", "1")]), "canary");
        assert_eq!(c("/api/x", "GET", &[("x-canary", "2")]), "api");
        assert_eq!(
            c("/api/x", "GET", &[("x-canary", "2"), ("x-canary", "1")]),
            "canary"
        );
        assert_eq!(c("/api/x", "GET", &[("x-beta", "")]), "beta");
        assert_eq!(
            c("/api/x", "GET", &[("x-beta", ""), ("x-block", "1")]),
            "api"
        );
        assert_eq!(c("/api/x", "GET", &[("user-agent", "curl/8")]), "curl");
        assert_eq!(c("/api?q=1", "GET", &[]), "api");
        assert_eq!(c("/apix", "GET", &[]), "NoRoute");
        assert_eq!(c("/staticfoo", "GET", &[]), "static");
        let d = decide(&r, &req("a.com", "/nothing"));
        let Action::Reply(rep) = d.action else {
            panic!()
        };
        assert_eq!(rep.status, 404);
        assert!(rep.body.contains("no_route"));
    }

    #[test]
    fn direct_response() {
        let r = router(
            r#"{"hosts": [{"host": "a.com", "rules": [{"direct_response": {"status": 503, "body": "maintenance"}}]}]}"#,
        );
        let d = decide(&r, &req("a.com", "/x"));
        assert_eq!(d.host, Some(0));
        assert_eq!(
            d.action,
            Action::Reply(LocalReply {
                status: 503,
                content_type: "text/plain; charset=utf-8".into(),
                body: "maintenance".into()
            })
        );
    }

    #[test]
    fn routing_edits() {
        let r = router(
            r#"{"hosts": [{"host": "a.com", "rules": [{"match": {"segment_prefix": "/api"}, "route": {
                "cluster": "c",
                "rewrite": {"host": "internal.svc:8080", "path_prefix": "/v2"},
                "request_headers_to_remove": ["x-debug"],
                "request_headers_to_add": [{"name": "x-a", "value": "1"}, {"name": "x-b", "value": "2", "append": true}]
            }}]}]}"#,
        );
        let mut h = req("a.com", "/api/items?q=1");
        h.push(("x-gatehouse-cluster", "forged".to_string()));
        let d = decide(&r, &h);
        assert!(d.rewritten);
        assert!(d.forged_routing_header);
        assert_eq!(
            d.action,
            Action::Continue(vec![
                HeaderOp::remove("x-gatehouse-cluster"),
                HeaderOp::set("x-gatehouse-cluster", "c"),
                HeaderOp::set(":authority", "internal.svc:8080"),
                HeaderOp::set(":path", "/v2/items?q=1"),
                HeaderOp::remove("x-debug"),
                HeaderOp::set("x-a", "1"),
                HeaderOp::add("x-b", "2"),
            ])
        );
    }

    #[test]
    fn path_rewrites() {
        let sp = PathMatch::SegmentPrefix("/api".into());
        assert_eq!(rewrite_path(Some(&sp), "/api/x", "/v2"), "/v2/x");
        assert_eq!(rewrite_path(Some(&sp), "/api", "/v2"), "/v2");
        assert_eq!(rewrite_path(Some(&sp), "/api/x?a=b", "/"), "/x?a=b");
        assert_eq!(rewrite_path(Some(&sp), "/api", "/"), "/");
        assert_eq!(rewrite_path(Some(&sp), "/api/", "/v2/"), "/v2/");
        let p = PathMatch::Prefix("/old".into());
        assert_eq!(rewrite_path(Some(&p), "/oldthing", "/new"), "/newthing");
        let e = PathMatch::Exact("/a".into());
        assert_eq!(rewrite_path(Some(&e), "/a?x=1", "/b/c"), "/b/c?x=1");
        assert_eq!(rewrite_path(None, "/x/y", "/base"), "/base/x/y");
        assert_eq!(rewrite_path(None, "/x/y", "/"), "/x/y");
    }

    #[test]
    fn rewrites_never_emit_dot_segments_or_a_leading_double_slash() {
        let r = router(
            r#"{"hosts": [{"host": "a.com", "rules": [
                {"match": {"segment_prefix": "/legacy"}, "route": {"cluster": "c", "rewrite": {"path_prefix": "/v2"}}},
                {"match": {"segment_prefix": "/strip"}, "route": {"cluster": "c", "rewrite": {"path_prefix": "/"}}},
                {"match": {"prefix": "/p"}, "route": {"cluster": "c", "rewrite": {"path_prefix": "/"}}},
                {"route": {"cluster": "plain"}}]}]}"#,
        );
        for path in [
            "/legacy/../admin",
            "/legacy/./x",
            "/legacy/a/%2e%2e/b",
            "/legacy/..;x/admin",
            "/strip//evil.example/x",
            "/strip/%2fevil.example/x",
            "/strip/\\evil.example",
            "/p/./x",
            "/p//x",
        ] {
            let d = decide(&r, &req("a.com", path));
            assert_eq!(d.outcome, Outcome::BadPath, "{path}");
            let Action::Reply(rep) = &d.action else {
                panic!("{path}")
            };
            assert_eq!(rep.status, 400);
            assert!(rep.body.contains("bad_path"), "{}", rep.body);
        }
        for (path, want) in [
            ("/legacy/items?x=/../y", "/v2/items?x=/../y"),
            ("/legacy", "/v2"),
            ("/strip/x//y", "/x//y"),
            ("/p...x", "/...x"),
        ] {
            let d = decide(&r, &req("a.com", path));
            assert_eq!(d.outcome, Outcome::Routed, "{path}");
            let Action::Continue(ops) = &d.action else {
                panic!("{path}")
            };
            assert!(
                ops.contains(&HeaderOp::set(":path", want)),
                "{path}: {ops:?}"
            );
        }
        // Without a rewrite the path is the client's and Envoy's business.
        let d = decide(&r, &req("a.com", "/other/../x"));
        assert_eq!(d.cluster.as_deref(), Some("plain"));
    }

    const SPLIT: &str = r#"{"hosts": [{"host": "a.com", "rules": [{"route": {"split": {
        "clusters": [{"cluster": "v1", "weight": 80}, {"cluster": "v2", "weight": 20}],
        "sticky": {"cookie": "user"}}}}]}]}"#;

    #[test]
    fn sticky_split_by_cookie() {
        let r = router(SPLIT);
        let pick = |cookie: &str| {
            let mut h = req("a.com", "/");
            h.push(("cookie", cookie.to_string()));
            let snap = HeaderSnapshot::from_pairs(h.iter().map(|(k, v)| (*k, v.as_str())));
            // A different random seed each time: stickiness must not depend on it.
            let mut picks = (0..20u64).map(|seed| r.decide(&snap, &mut SplitMix64(seed)).cluster);
            let first = picks.next().flatten();
            assert!(picks.all(|p| p == first), "{cookie}");
            first.unwrap()
        };
        let mut v2 = 0;
        for i in 0..1000 {
            let c = pick(&format!("theme=dark; user=u{i}"));
            if c == "v2" {
                v2 += 1;
            }
            assert_eq!(c, pick(&format!("user=u{i}; other=1")));
        }
        assert!((150..=250).contains(&v2), "{v2}");
    }

    #[test]
    fn unsticky_split_follows_weights() {
        let r = router(SPLIT);
        let snap = HeaderSnapshot::from_pairs([(":authority", "a.com"), (":path", "/")]);
        let mut rng = SplitMix64(42);
        let v2 = (0..10_000)
            .filter(|_| r.decide(&snap, &mut rng).cluster.as_deref() == Some("v2"))
            .count();
        assert!((1800..=2200).contains(&v2), "{v2}");
    }

    #[test]
    fn sticky_by_header() {
        let r = router(
            r#"{"hosts": [{"host": "a.com", "rules": [{"route": {"split": {
            "clusters": [{"cluster": "v1", "weight": 50}, {"cluster": "v2", "weight": 50}],
            "sticky": {"header": "x-user"}}}}]}]}"#,
        );
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..50 {
            let mut h = req("a.com", "/");
            let user = format!("user-{i}");
            h.push(("x-user", user));
            let snap = HeaderSnapshot::from_pairs(h.iter().map(|(k, v)| (*k, v.as_str())));
            let a = r.decide(&snap, &mut SplitMix64(1)).cluster;
            let b = r.decide(&snap, &mut SplitMix64(2)).cluster;
            assert_eq!(a, b);
            seen.insert(a);
        }
        assert_eq!(seen.len(), 2);
    }
}
