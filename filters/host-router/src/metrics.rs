//! Metric names (pure; the adapter defines the counters).

/// Prefix of every host-router metric.
pub const PREFIX: &str = "gatehouse.host_router";

/// Outcome counters, in the order the adapter defines them.
pub const OUTCOMES: [&str; 9] = [
    "routed",
    "rewritten",
    "direct_response",
    "no_route",
    "unknown_host",
    "unknown_host_passed",
    "bad_host",
    "bad_path",
    "forged_routing_header",
];

/// Counters kept for every configured host.
pub const PER_HOST: [&str; 4] = ["requests", "routed", "direct_response", "no_route"];

/// A stats-safe token for a host pattern: `.` becomes `_`, a leading `*.`
/// becomes `wildcard_`, `*` alone is `any`, `[`/`]`/`:` (IPv6) become `_`.
pub fn host_token(pattern: &str) -> String {
    let p = pattern.trim().to_ascii_lowercase();
    if p == "*" {
        return "any".to_string();
    }
    let (wild, rest) = match p.strip_prefix("*.") {
        Some(r) => (true, r),
        None => (false, p.as_str()),
    };
    let mut out = String::with_capacity(rest.len() + 9);
    if wild {
        out.push_str("wildcard_");
    }
    for c in rest.chars() {
        out.push(if c.is_ascii_alphanumeric() || c == '-' {
            c
        } else {
            '_'
        });
    }
    out
}

/// Tokens for every configured host, made unique (a clash gets `_<index>`).
pub fn host_tokens(patterns: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(patterns.len());
    for (i, p) in patterns.iter().enumerate() {
        let t = host_token(p);
        if out.contains(&t) {
            out.push(format!("{t}_{i}"));
        } else {
            out.push(t);
        }
    }
    out
}

/// `gatehouse.host_router.<name>`.
pub fn outcome_metric(name: &str) -> String {
    format!("{PREFIX}.{name}")
}

/// `gatehouse.host_router.host.<token>.<name>`.
pub fn host_metric(token: &str, name: &str) -> String {
    format!("{PREFIX}.host.{token}.{name}")
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn the_readme_documents_every_counter() {
        let readme = include_str!("../README.md");
        for name in OUTCOMES {
            assert!(
                readme.contains(&format!("`{}`", outcome_metric(name))),
                "{name}"
            );
        }
        for name in PER_HOST {
            assert!(readme.contains(&format!("{name}`")), "{name}");
        }
    }

    #[test]
    fn tokens() {
        assert_eq!(
            host_token("webapp.istioinaction.io"),
            "webapp_istioinaction_io"
        );
        assert_eq!(host_token("*.Example.com"), "wildcard_example_com");
        assert_eq!(host_token("*"), "any");
        assert_eq!(host_token("[::1]"), "___1_");
        assert_eq!(
            host_tokens(&["a.b", "a_b", "c"]),
            vec!["a_b".to_string(), "a_b_1".to_string(), "c".to_string()]
        );
        assert_eq!(
            host_metric("any", "requests"),
            "gatehouse.host_router.host.any.requests"
        );
        assert_eq!(outcome_metric("routed"), "gatehouse.host_router.routed");
    }
}
