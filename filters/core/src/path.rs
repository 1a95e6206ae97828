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
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum PathMatch {
    /// The whole path equals this.
    Exact(String),
    /// The path starts with this string (`/api` matches `/apix`).
    Prefix(String),
    /// Segment-aware prefix: `/api` matches `/api` and `/api/x`, not `/apix`.
    SegmentPrefix(String),
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
}
