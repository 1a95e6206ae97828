//! Request paths: splitting off the query and matching configured paths.

use serde::Deserialize;

/// Splits `:path` into the path and the query (without the `?`).
pub fn split_path_query(path: &str) -> (&str, Option<&str>) {
    match path.find('?') {
        Some(i) => (path.get(..i).unwrap_or_default(), path.get(i + 1..)),
        None => (path, None),
    }
}

/// How a configured path is compared with the request path (query excluded).
///
/// In JSON: an object with exactly one of `exact`, `prefix`,
/// `segment_prefix` (`{"prefix": "/api"}`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "PathMatchFields")]
pub enum PathMatch {
    /// The whole path equals this.
    Exact(String),
    /// The path starts with this string (`/api` matches `/apix`).
    Prefix(String),
    /// Segment-aware prefix: `/api` matches `/api` and `/api/x`, not `/apix`.
    SegmentPrefix(String),
}

/// The JSON form of [`PathMatch`], checked by `TryFrom` so that zero or
/// two kinds get a message naming the rule (serde's externally tagged enums
/// report them as a JSON syntax error).
#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "an object with exactly one of `exact`, `prefix`, `segment_prefix`"
)]
struct PathMatchFields {
    #[serde(default)]
    exact: Option<String>,
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    segment_prefix: Option<String>,
}

/// The message for a `match` without exactly one kind.
pub const PATH_MATCH_KINDS: &str =
    "a path match needs exactly one of `exact`, `prefix`, `segment_prefix`";

impl TryFrom<PathMatchFields> for PathMatch {
    type Error = String;

    fn try_from(f: PathMatchFields) -> Result<Self, String> {
        match (f.exact, f.prefix, f.segment_prefix) {
            (Some(p), None, None) => Ok(PathMatch::Exact(p)),
            (None, Some(p), None) => Ok(PathMatch::Prefix(p)),
            (None, None, Some(p)) => Ok(PathMatch::SegmentPrefix(p)),
            (None, None, None) => Err(format!("{PATH_MATCH_KINDS} (got none)")),
            (e, p, s) => {
                let given: Vec<&str> = [("`exact`", e), ("`prefix`", p), ("`segment_prefix`", s)]
                    .into_iter()
                    .filter_map(|(n, v)| v.map(|_| n))
                    .collect();
                Err(format!("{PATH_MATCH_KINDS} (got {})", given.join(" and ")))
            }
        }
    }
}

impl PathMatch {
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Exact(p) => path == p,
            PathMatch::Prefix(p) => path.starts_with(p.as_str()),
            PathMatch::SegmentPrefix(p) => segment_prefix_matches(p, path),
        }
    }

    pub fn pattern(&self) -> &str {
        match self {
            PathMatch::Exact(p) | PathMatch::Prefix(p) | PathMatch::SegmentPrefix(p) => p,
        }
    }

    /// A configured path must start with `/`.
    pub fn validate(&self) -> Result<(), String> {
        if self.pattern().starts_with('/') {
            Ok(())
        } else {
            Err(format!("path `{}` must start with `/`", self.pattern()))
        }
    }
}

/// `/api` matches `/api`, `/api/` and `/api/x` but not `/apix`; a prefix that
/// ends with `/` is a plain prefix.
pub fn segment_prefix_matches(prefix: &str, path: &str) -> bool {
    let trimmed = prefix.strip_suffix('/').unwrap_or(prefix);
    if trimmed.is_empty() {
        return path.starts_with('/');
    }
    match path.strip_prefix(trimmed) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// A path segment that means "this" or "parent" to a server that normalises:
/// `.` or `..`, also with percent-encoded dots (`%2e`, `.%2E`) and before a
/// `;` parameter (`..;x`, which some servers strip).
pub fn is_dot_segment(segment: &str) -> bool {
    let bare = segment.split(';').next().unwrap_or(segment);
    let lower = bare.to_ascii_lowercase();
    let dots = lower.replace("%2e", ".");
    dots == "." || dots == ".."
}

/// The path (query excluded) holds a dot segment; `\` counts as a
/// separator, as some servers treat it.
pub fn has_dot_segment(path: &str) -> bool {
    path.split(['/', '\\']).any(is_dot_segment)
}

/// The path starts with `//` (also written `/\`, `/%2f`, `/%5c`): a
/// server or a client building a URL from it can read what follows as
/// a host (`//evil.example/x`).
pub fn has_authority_like_start(path: &str) -> bool {
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    let lower = rest.get(..3).unwrap_or(rest).to_ascii_lowercase();
    rest.starts_with('/')
        || rest.starts_with('\\')
        || lower.starts_with("%2f")
        || lower.starts_with("%5c")
}

/// A path (query excluded) that a normalising server may read as a
/// different path: a dot segment, `//` anywhere, a backslash, a
/// percent-encoded `.`, `/` or `\`, or a `;` (Tomcat, Jetty and Spring strip
/// `;params` from every segment before mapping: `/public/..;/admin` is
/// `/admin` to them, `/admin;x/users` is `/admin/users`; Spring Security's
/// firewall refuses `;` by default for the same reason). Rules matched on
/// the raw path cannot be trusted for such a path.
pub fn is_ambiguous_path(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    has_dot_segment(path)
        || lower.contains("//")
        || lower.contains('\\')
        || lower.contains("%2e")
        || lower.contains("%2f")
        || lower.contains("%5c")
        || lower.contains(';')
        || lower.contains("%3b")
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn split() {
        assert_eq!(split_path_query("/a?b=1"), ("/a", Some("b=1")));
        assert_eq!(split_path_query("/a"), ("/a", None));
        assert_eq!(split_path_query("/a?"), ("/a", Some("")));
    }

    #[test]
    fn matching() {
        let s = PathMatch::SegmentPrefix("/api".into());
        assert!(s.matches("/api"));
        assert!(s.matches("/api/x"));
        assert!(s.matches("/api/"));
        assert!(!s.matches("/apix"));
        assert!(PathMatch::SegmentPrefix("/".into()).matches("/anything"));
        assert!(PathMatch::SegmentPrefix("/api/".into()).matches("/api/x"));
        assert!(PathMatch::Prefix("/api".into()).matches("/apix"));
        assert!(PathMatch::Exact("/healthz".into()).matches("/healthz"));
        assert!(!PathMatch::Exact("/healthz".into()).matches("/healthz/"));
        assert!(PathMatch::Exact("x".into()).validate().is_err());
    }

    #[test]
    fn dot_segments() {
        for p in [
            "/a/../b",
            "/a/./b",
            "/..",
            "/a/..",
            "/a/%2e%2e/b",
            "/a/.%2E/b",
            "/a/%2e/b",
            "/a/..;x/b",
            "/a\\..\\b",
        ] {
            assert!(has_dot_segment(p), "{p}");
        }
        for p in [
            "/a/b",
            "/a/...",
            "/a/.b",
            "/a/b..",
            "/",
            "/a/%2e%2e%2e",
            "/.well-known/x",
        ] {
            assert!(!has_dot_segment(p), "{p}");
        }
    }

    #[test]
    fn authority_like_starts() {
        for p in ["//evil.example/x", "/\\evil", "/%2fevil", "/%5Cevil", "//"] {
            assert!(has_authority_like_start(p), "{p}");
        }
        for p in ["/", "/a//b", "/a", "", "a//b", "/%2", "/%"] {
            assert!(!has_authority_like_start(p), "{p}");
        }
    }

    #[test]
    fn ambiguous_paths() {
        for p in [
            "/a//b",
            "/a/../b",
            "/a\\b",
            "/a%2fb",
            "/a%2Eb",
            "/a%5cb",
            "/p/..;/admin",
            "/admin;x/u",
            "/a%3Bb",
        ] {
            assert!(is_ambiguous_path(p), "{p}");
        }
        for p in ["/a/b", "/a/b/", "/", "/a-b.c_d~e"] {
            assert!(!is_ambiguous_path(p), "{p}");
        }
    }

    #[test]
    fn path_match_json() {
        let m: PathMatch = serde_json::from_str(r#"{"segment_prefix": "/api"}"#).unwrap();
        assert_eq!(m, PathMatch::SegmentPrefix("/api".into()));
        let e = serde_json::from_str::<PathMatch>(r#"{}"#)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with(PATH_MATCH_KINDS), "{e}");
        assert!(e.contains("(got none)"), "{e}");
        let e = serde_json::from_str::<PathMatch>(r#"{"exact": "/a", "prefix": "/b"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("(got `exact` and `prefix`)"), "{e}");
        let e = serde_json::from_str::<PathMatch>(r#"{"regex": ".*"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `regex`"), "{e}");
        let e = serde_json::from_str::<PathMatch>(r#""/a""#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("exactly one of"), "{e}");
    }
}
