//! The redirect decision: pure code over a request's headers and whether
//! its connection is TLS.

use crate::config::Config;
use gatehouse_core::config::ConfigError;
use gatehouse_core::headers::HeaderSnapshot;
use gatehouse_core::host::{parse_authority, HostTable};
use gatehouse_core::path::split_path_query;

/// The compiled configuration.
#[derive(Debug, Clone)]
pub struct Policy {
    status: u16,
    non_get_status: Option<u16>,
    /// `:port` suffix for the Location (empty for none / 443).
    port_suffix: String,
    trust_xfp: bool,
    exempt_prefixes: Vec<String>,
    exempt_paths: Vec<String>,
    /// `None`: every host is enabled.
    hosts: Option<HostTable<()>>,
    /// `None`: no allowlist.
    allowed: Option<HostTable<()>>,
    hsts: Option<String>,
}

/// How the request reached us, as far as the filter can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Http,
    Https,
}

/// Why a plain-HTTP request was let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExemptReason {
    Path,
    Host,
}

/// Every rejection reason (the `error` of the JSON body): the
/// [`RejectReason::code`]s.
pub const REASONS: [&str; 3] = ["invalid_host", "host_not_allowed", "invalid_path"];

/// Why a plain-HTTP request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// `:authority` missing or not a syntactically valid `host[:port]`.
    InvalidHost,
    /// The host is not on `allowed_hosts`.
    HostNotAllowed,
    /// `:path` is not origin-form visible ASCII.
    InvalidPath,
}

impl RejectReason {
    /// Machine-readable code for the JSON error body.
    pub fn code(&self) -> &'static str {
        match self {
            RejectReason::InvalidHost => "invalid_host",
            RejectReason::HostNotAllowed => "host_not_allowed",
            RejectReason::InvalidPath => "invalid_path",
        }
    }

    /// Human-readable message (never echoes the request).
    pub fn message(&self) -> &'static str {
        match self {
            RejectReason::InvalidHost => {
                "plain-HTTP request with a missing or invalid Host; cannot redirect to HTTPS"
            }
            RejectReason::HostNotAllowed => "plain-HTTP request for a host that is not allowed",
            RejectReason::InvalidPath => {
                "plain-HTTP request with a path that is not origin-form; cannot redirect to HTTPS"
            }
        }
    }
}

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The request is HTTPS: let it through; put `hsts` (a complete
    /// `strict-transport-security` value) on the response when set.
    Secure { hsts: Option<String> },
    /// Plain HTTP, but exempt: let it through unchanged.
    Exempt(ExemptReason),
    /// Answer with this redirect.
    Redirect { status: u16, location: String },
    /// Answer 400 with a JSON error body.
    Reject(RejectReason),
}

/// The HSTS response header name.
pub const HSTS_HEADER: &str = "strict-transport-security";

/// The configuration's checks, then the policy: once per `on_configure`.
impl gatehouse_core::Compile for Policy {
    type Config = Config;
    fn compile(config: &Config) -> Result<Policy, ConfigError> {
        gatehouse_core::Validate::validate(config)?;
        Policy::new(config)
    }
}

impl Policy {
    /// Compiles a (validated) config. Fails only on what `validate` refuses.
    pub fn new(cfg: &Config) -> Result<Policy, ConfigError> {
        let table = |field: &str, list: &[String]| -> Result<Option<HostTable<()>>, ConfigError> {
            if list.is_empty() {
                Ok(None)
            } else {
                HostTable::build(field, list.iter().map(|h| (h.clone(), ()))).map(Some)
            }
        };
        let port_suffix = match cfg.https_port {
            None | Some(443) => String::new(),
            Some(p) => format!(":{p}"),
        };
        Ok(Policy {
            status: cfg.status,
            non_get_status: cfg.non_get_status,
            port_suffix,
            trust_xfp: cfg.trust_x_forwarded_proto,
            exempt_prefixes: cfg.exempt_path_prefixes.clone(),
            exempt_paths: cfg.exempt_paths.clone(),
            hosts: table("hosts", &cfg.hosts)?,
            allowed: table("allowed_hosts", &cfg.allowed_hosts)?,
            hsts: cfg.hsts.as_ref().map(|h| h.header_value()),
        })
    }

    /// Whether the request counts as HTTPS: the connection decides, unless
    /// `trust_x_forwarded_proto` is on and the header carries a recognised
    /// value. `:scheme` is never consulted (an h2c client can send anything).
    pub fn proto(&self, headers: &HeaderSnapshot, tls_connection: bool) -> Proto {
        self.proto_lazy(headers, &|| tls_connection)
    }

    /// [`Policy::proto`] asking `tls_connection` only when the answer
    /// depends on it (not when a trusted `x-forwarded-proto` decides).
    pub fn proto_lazy(&self, headers: &HeaderSnapshot, tls_connection: &dyn Fn() -> bool) -> Proto {
        let forwarded = if self.trust_xfp {
            forwarded_proto(headers)
        } else {
            None
        };
        forwarded.unwrap_or_else(|| {
            if tls_connection() {
                Proto::Https
            } else {
                Proto::Http
            }
        })
    }

    /// Decides what to do with a request.
    pub fn decide(&self, headers: &HeaderSnapshot, tls_connection: bool) -> Outcome {
        self.decide_lazy(headers, &|| tls_connection)
    }

    /// [`Policy::decide`] for the adapter: `tls_connection` (a connection
    /// property, a host call) is asked only when a trusted
    /// `x-forwarded-proto` does not already tell.
    pub fn decide_lazy(
        &self,
        headers: &HeaderSnapshot,
        tls_connection: &dyn Fn() -> bool,
    ) -> Outcome {
        let authority = || {
            headers
                .first(":authority")
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(|a| parse_authority(a).ok())
        };
        if self.proto_lazy(headers, tls_connection) == Proto::Https {
            // The host matters only for HSTS.
            let Some(hsts) = &self.hsts else {
                return Outcome::Secure { hsts: None };
            };
            let enabled = authority()
                .as_ref()
                .map(|a| self.host_enabled(&a.host))
                .unwrap_or(false);
            return Outcome::Secure {
                hsts: enabled.then(|| hsts.clone()),
            };
        }
        let authority = authority();
        let raw_path = headers.first(":path").unwrap_or_default();
        let path = std::str::from_utf8(raw_path)
            .ok()
            .filter(|p| is_origin_form(p));
        if let Some(p) = path {
            if self.path_exempt(p) {
                return Outcome::Exempt(ExemptReason::Path);
            }
        }
        let Some(authority) = authority else {
            return Outcome::Reject(RejectReason::InvalidHost);
        };
        if !self.host_enabled(&authority.host) {
            return Outcome::Exempt(ExemptReason::Host);
        }
        if let Some(allowed) = &self.allowed {
            if allowed.lookup(&authority.host).is_none() {
                return Outcome::Reject(RejectReason::HostNotAllowed);
            }
        }
        let Some(path) = path else {
            return Outcome::Reject(RejectReason::InvalidPath);
        };
        let method = headers.first(":method").unwrap_or_default();
        let status = match self.non_get_status {
            Some(s) if method != b"GET" && method != b"HEAD" => s,
            _ => self.status,
        };
        let mut location =
            String::with_capacity(8 + authority.host.len() + self.port_suffix.len() + path.len());
        location.push_str("https://");
        location.push_str(&authority.host);
        location.push_str(&self.port_suffix);
        location.push_str(path);
        Outcome::Redirect { status, location }
    }

    fn host_enabled(&self, host: &str) -> bool {
        match &self.hosts {
            None => true,
            Some(t) => t.lookup(host).is_some(),
        }
    }

    fn path_exempt(&self, path_and_query: &str) -> bool {
        if self.exempt_paths.is_empty() && self.exempt_prefixes.is_empty() {
            return false;
        }
        let (path, _) = split_path_query(path_and_query);
        if !is_plain_path(path) {
            return false;
        }
        self.exempt_paths.iter().any(|p| p == path)
            || self
                .exempt_prefixes
                .iter()
                .any(|p| path.starts_with(p.as_str()))
    }
}

/// The protocol a trusted `x-forwarded-proto` announces: the FIRST value of
/// the first header line (comma-separated lists and repeated headers are read
/// left to right, the leftmost element wins: the outermost proxy's view of
/// the client). `https` / `http` in any case; anything else (empty, non-ASCII,
/// `wss`, garbage) means "no usable header" and the connection decides.
pub fn forwarded_proto(headers: &HeaderSnapshot) -> Option<Proto> {
    let first_line = headers.first("x-forwarded-proto")?;
    let first = first_line.split(|b| *b == b',').next()?.trim_ascii();
    if first.eq_ignore_ascii_case(b"https") {
        Some(Proto::Https)
    } else if first.eq_ignore_ascii_case(b"http") {
        Some(Proto::Http)
    } else {
        None
    }
}

/// The request's `x-request-id` for the JSON error body (the one rule of
/// every gatehouse filter: [`gatehouse_core::reply::request_id_for_body`]).
pub use gatehouse_core::reply::request_id_for_body as safe_request_id;

/// Origin-form request target (`/path[?query]`) made of visible ASCII only,
/// so it can be copied into a `Location` verbatim.
pub fn is_origin_form(path: &str) -> bool {
    path.starts_with('/') && path.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

/// A path that cannot mean something else after normalisation: no `.` or
/// `..` segment (also before a `;` parameter), no encoded dot, slash or
/// backslash, no backslash. Exemptions apply only to such paths, so
/// `/.well-known/acme-challenge/../admin` is redirected, not let through.
pub fn is_plain_path(path: &str) -> bool {
    if path.contains('\\') {
        return false;
    }
    // `%2e`, `%2f`, `%5c` in any case (no lower-cased copy of the path).
    let encoded = path.as_bytes().windows(3).any(|w| {
        w.first() == Some(&b'%')
            && matches!(
                (
                    w.get(1).map(u8::to_ascii_lowercase),
                    w.get(2).map(u8::to_ascii_lowercase)
                ),
                (Some(b'2'), Some(b'e' | b'f')) | (Some(b'5'), Some(b'c'))
            )
    });
    if encoded {
        return false;
    }
    !path.split('/').any(|seg| {
        let name = seg.split(';').next().unwrap_or_default();
        name == "." || name == ".."
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_core::parse_config;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn policy(json: &str) -> Policy {
        Policy::new(&parse_config::<Config>(json.as_bytes()).unwrap()).unwrap()
    }

    fn req(method: &str, authority: &str, path: &str) -> HeaderSnapshot {
        HeaderSnapshot::from_pairs([
            (":method", method),
            (":authority", authority),
            (":path", path),
        ])
    }

    fn redirect(status: u16, location: &str) -> Outcome {
        Outcome::Redirect {
            status,
            location: location.to_string(),
        }
    }

    #[test]
    fn default_redirects_plain_http_with_host_path_and_query() {
        let p = policy("{}");
        assert_eq!(
            p.decide(&req("GET", "Example.COM:8080", "/a/b?x=1&y=%20"), false),
            redirect(301, "https://example.com/a/b?x=1&y=%20")
        );
        assert_eq!(
            p.decide(&req("POST", "example.com", "/"), false),
            redirect(301, "https://example.com/")
        );
        assert_eq!(
            p.decide(&req("GET", "[::1]:80", "/v6"), false),
            redirect(301, "https://[::1]/v6")
        );
        assert_eq!(
            p.decide(&req("GET", "example.com.", "/"), false),
            redirect(301, "https://example.com/")
        );
    }

    #[test]
    fn tls_connection_is_secure() {
        let p = policy("{}");
        assert_eq!(
            p.decide(&req("GET", "example.com", "/"), true),
            Outcome::Secure { hsts: None }
        );
    }

    #[test]
    fn statuses_and_method_preservation() {
        for s in [301, 302, 303, 307, 308] {
            let p = policy(&format!(r#"{{"status": {s}}}"#));
            assert_eq!(
                p.decide(&req("GET", "a.com", "/x"), false),
                redirect(s, "https://a.com/x")
            );
        }
        let p = policy(r#"{"non_get_status": 308}"#);
        assert_eq!(
            p.decide(&req("GET", "a.com", "/"), false),
            redirect(301, "https://a.com/")
        );
        assert_eq!(
            p.decide(&req("HEAD", "a.com", "/"), false),
            redirect(301, "https://a.com/")
        );
        for m in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
            assert_eq!(
                p.decide(&req(m, "a.com", "/"), false),
                redirect(308, "https://a.com/")
            );
        }
        let p = policy(r#"{"status": 302, "non_get_status": 307}"#);
        assert_eq!(
            p.decide(&req("POST", "a.com", "/"), false),
            redirect(307, "https://a.com/")
        );
    }

    #[test]
    fn port_mapping() {
        let p = policy(r#"{"https_port": 8443}"#);
        assert_eq!(
            p.decide(&req("GET", "a.com:8080", "/p"), false),
            redirect(301, "https://a.com:8443/p")
        );
        assert_eq!(
            p.decide(&req("GET", "[2001:DB8::1]:80", "/"), false),
            redirect(301, "https://[2001:db8::1]:8443/")
        );
        let p = policy(r#"{"https_port": 443}"#);
        assert_eq!(
            p.decide(&req("GET", "a.com:80", "/p"), false),
            redirect(301, "https://a.com/p")
        );
    }

    #[test]
    fn x_forwarded_proto_only_when_trusted() {
        let mut h = req("GET", "a.com", "/");
        h.apply(&[gatehouse_core::HeaderOp::add("x-forwarded-proto", "https")]);
        assert_eq!(
            policy("{}").decide(&h, false),
            redirect(301, "https://a.com/")
        );
        let p = policy(r#"{"trust_x_forwarded_proto": true}"#);
        assert_eq!(p.decide(&h, false), Outcome::Secure { hsts: None });
        // A trusted `http` on a TLS hop means the client used plain HTTP.
        let mut h = req("GET", "a.com", "/");
        h.apply(&[gatehouse_core::HeaderOp::add("x-forwarded-proto", "http")]);
        assert_eq!(p.decide(&h, true), redirect(301, "https://a.com/"));
    }

    #[test]
    fn x_forwarded_proto_first_value_wins() {
        let with = |vals: &[&[u8]]| {
            let mut e = vec![(":authority".to_string(), b"a.com".to_vec())];
            for v in vals {
                e.push(("x-forwarded-proto".to_string(), v.to_vec()));
            }
            HeaderSnapshot::new(e)
        };
        assert_eq!(forwarded_proto(&with(&[b"https"])), Some(Proto::Https));
        assert_eq!(forwarded_proto(&with(&[b" HTTPS "])), Some(Proto::Https));
        assert_eq!(
            forwarded_proto(&with(&[b"https, http"])),
            Some(Proto::Https)
        );
        assert_eq!(forwarded_proto(&with(&[b"http,https"])), Some(Proto::Http));
        assert_eq!(
            forwarded_proto(&with(&[b"http", b"https"])),
            Some(Proto::Http)
        );
        assert_eq!(
            forwarded_proto(&with(&[b"https", b"http"])),
            Some(Proto::Https)
        );
        assert_eq!(forwarded_proto(&with(&[b""])), None);
        assert_eq!(forwarded_proto(&with(&[b"wss"])), None);
        assert_eq!(forwarded_proto(&with(&[b"\xffhttps"])), None);
        assert_eq!(forwarded_proto(&with(&[b",https"])), None);
        assert_eq!(forwarded_proto(&with(&[])), None);
    }

    #[test]
    fn unusable_forwarded_proto_falls_back_to_the_connection() {
        let p = policy(r#"{"trust_x_forwarded_proto": true}"#);
        let mut h = req("GET", "a.com", "/");
        h.apply(&[gatehouse_core::HeaderOp::add("x-forwarded-proto", "bogus")]);
        assert_eq!(p.decide(&h, false), redirect(301, "https://a.com/"));
        assert_eq!(p.decide(&h, true), Outcome::Secure { hsts: None });
    }

    #[test]
    fn scheme_header_is_ignored() {
        let p = policy("{}");
        let mut h = req("GET", "a.com", "/");
        h.apply(&[gatehouse_core::HeaderOp::add(":scheme", "https")]);
        assert_eq!(p.decide(&h, false), redirect(301, "https://a.com/"));
    }

    #[test]
    fn path_exemptions() {
        let p = policy(r#"{"exempt_paths": ["/healthz"]}"#);
        let acme = "/.well-known/acme-challenge/tok123";
        assert_eq!(
            p.decide(&req("GET", "a.com", acme), false),
            Outcome::Exempt(ExemptReason::Path)
        );
        assert_eq!(
            p.decide(&req("GET", "a.com", "/healthz?probe=1"), false),
            Outcome::Exempt(ExemptReason::Path)
        );
        assert_eq!(
            p.decide(&req("GET", "a.com", "/healthz/x"), false),
            redirect(301, "https://a.com/healthz/x")
        );
        assert_eq!(
            p.decide(&req("GET", "a.com", "/.well-known/acme-challenge"), false),
            redirect(301, "https://a.com/.well-known/acme-challenge")
        );
        // Exempt paths are served even when the host is garbage (no redirect is built).
        assert_eq!(
            p.decide(&req("GET", "a b", "/healthz"), false),
            Outcome::Exempt(ExemptReason::Path)
        );
        // Prefix tricks that a normaliser would turn into another path are redirected.
        for trick in [
            "/.well-known/acme-challenge/../../admin",
            "/.well-known/acme-challenge/%2e%2e/admin",
            "/.well-known/acme-challenge/..;/admin",
            "/.well-known/acme-challenge/x%2Fy",
            "/.well-known/acme-challenge/..\\admin",
            "/.well-known/acme-challenge/./x",
        ] {
            assert!(
                matches!(
                    p.decide(&req("GET", "a.com", trick), false),
                    Outcome::Redirect { .. }
                ),
                "{trick}"
            );
        }
        let p = policy(r#"{"exempt_path_prefixes": []}"#);
        assert_eq!(
            p.decide(&req("GET", "a.com", acme), false),
            redirect(301, &format!("https://a.com{acme}"))
        );
    }

    #[test]
    fn host_enablement() {
        let p = policy(r#"{"hosts": ["a.com", "*.b.com"]}"#);
        assert_eq!(
            p.decide(&req("GET", "A.com:80", "/"), false),
            redirect(301, "https://a.com/")
        );
        assert_eq!(
            p.decide(&req("GET", "x.y.b.com", "/"), false),
            redirect(301, "https://x.y.b.com/")
        );
        assert_eq!(
            p.decide(&req("GET", "b.com", "/"), false),
            Outcome::Exempt(ExemptReason::Host)
        );
        assert_eq!(
            p.decide(&req("GET", "c.com", "/"), false),
            Outcome::Exempt(ExemptReason::Host)
        );
        // An invalid host is refused, not exempted: it matches nothing, but
        // silently passing it would let a broken request through.
        assert_eq!(
            p.decide(&req("GET", "a.com@evil.com", "/"), false),
            Outcome::Reject(RejectReason::InvalidHost)
        );
    }

    #[test]
    fn hostile_hosts_are_rejected() {
        let p = policy("{}");
        for bad in [
            "",
            "user@a.com",
            "a.com@evil.com",
            "a b.com",
            "a.com\r\nx: y",
            "évil.com",
            "a.com:0",
            "a.com:65536",
            "a.com:",
            "a.com:8x",
            "[::1",
            "a.com/evil",
            "a.com\\evil",
            "a..com",
            "evil.com#a.com",
            "evil.com?a.com",
        ] {
            assert_eq!(
                p.decide(&req("GET", bad, "/"), false),
                Outcome::Reject(RejectReason::InvalidHost),
                "{bad:?}"
            );
        }
        let long = "a".repeat(300);
        assert_eq!(
            p.decide(&req("GET", &long, "/"), false),
            Outcome::Reject(RejectReason::InvalidHost)
        );
        let missing = HeaderSnapshot::from_pairs([(":method", "GET"), (":path", "/")]);
        assert_eq!(
            p.decide(&missing, false),
            Outcome::Reject(RejectReason::InvalidHost)
        );
        let non_utf8 = HeaderSnapshot::new(vec![
            (":authority".into(), b"a\xff.com".to_vec()),
            (":path".into(), b"/".to_vec()),
        ]);
        assert_eq!(
            p.decide(&non_utf8, false),
            Outcome::Reject(RejectReason::InvalidHost)
        );
    }

    #[test]
    fn allowlist() {
        let p = policy(r#"{"allowed_hosts": ["a.com", "*.b.com"]}"#);
        assert_eq!(
            p.decide(&req("GET", "a.com", "/"), false),
            redirect(301, "https://a.com/")
        );
        assert_eq!(
            p.decide(&req("GET", "x.b.com", "/"), false),
            redirect(301, "https://x.b.com/")
        );
        assert_eq!(
            p.decide(&req("GET", "evil.com", "/"), false),
            Outcome::Reject(RejectReason::HostNotAllowed)
        );
        // HTTPS requests are not affected by the allowlist.
        assert_eq!(
            p.decide(&req("GET", "evil.com", "/"), true),
            Outcome::Secure { hsts: None }
        );
    }

    #[test]
    fn paths_must_be_origin_form() {
        let p = policy("{}");
        for bad in ["*", "", "http://evil.com/", "/a b", "/\u{e9}", "/a\tb"] {
            assert_eq!(
                p.decide(&req("OPTIONS", "a.com", bad), false),
                Outcome::Reject(RejectReason::InvalidPath),
                "{bad:?}"
            );
        }
        let raw = HeaderSnapshot::new(vec![
            (":authority".into(), b"a.com".to_vec()),
            (":path".into(), b"/\xff".to_vec()),
        ]);
        assert_eq!(
            p.decide(&raw, false),
            Outcome::Reject(RejectReason::InvalidPath)
        );
        // `//evil.com` stays a path on the fixed host.
        assert_eq!(
            p.decide(&req("GET", "a.com", "//evil.com/x"), false),
            redirect(301, "https://a.com//evil.com/x")
        );
    }

    #[test]
    fn hsts_on_https_for_enabled_hosts() {
        let p = policy(
            r#"{"hosts": ["a.com"], "hsts": {"max_age": 63072000, "include_subdomains": true, "preload": true}}"#,
        );
        let v = "max-age=63072000; includeSubDomains; preload".to_string();
        assert_eq!(
            p.decide(&req("GET", "a.com", "/"), true),
            Outcome::Secure { hsts: Some(v) }
        );
        assert_eq!(
            p.decide(&req("GET", "other.com", "/"), true),
            Outcome::Secure { hsts: None }
        );
        assert_eq!(
            p.decide(&req("GET", "bad host", "/"), true),
            Outcome::Secure { hsts: None }
        );
        // Never on plain HTTP answers.
        assert_eq!(
            p.decide(&req("GET", "a.com", "/"), false),
            redirect(301, "https://a.com/")
        );
    }

    #[test]
    fn request_ids_in_error_bodies_are_sanitized() {
        let h = |v: &[u8]| HeaderSnapshot::new(vec![("x-request-id".into(), v.to_vec())]);
        assert_eq!(safe_request_id(&h(b"abc-123_x.y:z")), Some("abc-123_x.y:z"));
        assert_eq!(safe_request_id(&h(b"")), None);
        assert_eq!(safe_request_id(&h(b"a\"b")), None);
        assert_eq!(safe_request_id(&h(b"\xff")), None);
        assert_eq!(safe_request_id(&h("a".repeat(129).as_bytes())), None);
        assert_eq!(safe_request_id(&HeaderSnapshot::default()), None);
    }

    /// Random hostile input: never a panic, and every redirect points to the
    /// request's own (parsed) host with a clean, origin-form path.
    #[test]
    fn random_input_never_panics_nor_redirects_elsewhere() {
        use gatehouse_core::random::{RandomSource, SplitMix64};
        const ALPHABET: &[u8] = b"aZ09.-_:@[]/\\?#% \t\r\n,;*\x00\x7f\xc3\xa9\xff";
        let mut rng = SplitMix64(0x5eed);
        let pick = |rng: &mut SplitMix64, max: u64| -> Vec<u8> {
            let len = rng.next_u64() % max;
            (0..len)
                .map(|_| ALPHABET[(rng.next_u64() % ALPHABET.len() as u64) as usize])
                .collect()
        };
        let policies = [
            policy("{}"),
            policy(
                r#"{"trust_x_forwarded_proto": true, "https_port": 8443, "hosts": ["*.a.com"], "allowed_hosts": ["x.a.com"], "hsts": {"max_age": 1}}"#,
            ),
        ];
        let mut redirects = 0;
        for i in 0..4000u32 {
            let mut authority = pick(&mut rng, 24);
            if i % 3 == 0 {
                authority = b"x.a.com:80".to_vec();
            }
            let mut path = pick(&mut rng, 24);
            if i % 2 == 0 {
                path.insert(0, b'/');
            }
            let headers = HeaderSnapshot::new(vec![
                (":method".into(), pick(&mut rng, 6)),
                (":authority".into(), authority.clone()),
                (":path".into(), path.clone()),
                ("x-forwarded-proto".into(), pick(&mut rng, 8)),
            ]);
            for p in &policies {
                if let Outcome::Redirect { location, .. } = p.decide(&headers, i % 5 == 0) {
                    redirects += 1;
                    let host = parse_authority(std::str::from_utf8(&authority).unwrap())
                        .unwrap()
                        .host;
                    let rest = location.strip_prefix("https://").unwrap();
                    assert!(rest.starts_with(&host), "{location}");
                    let after_host = rest.strip_prefix(&host).unwrap();
                    let after_port = after_host.strip_prefix(":8443").unwrap_or(after_host);
                    assert_eq!(after_port.as_bytes(), &path[..], "{location}");
                    assert!(location.bytes().all(|b| (0x21..=0x7e).contains(&b)));
                }
            }
        }
        assert!(
            redirects > 100,
            "the generator must reach the redirect branch"
        );
    }

    #[test]
    fn plain_path_check() {
        assert!(is_plain_path("/.well-known/acme-challenge/abc"));
        assert!(is_plain_path("/a..b/c."));
        assert!(!is_plain_path("/a/../b"));
        assert!(!is_plain_path("/a/.."));
        assert!(!is_plain_path("/a/%2E%2e/b"));
        assert!(!is_plain_path("/a/.;x/b"));
        for encoded in ["/a%2fb", "/a%2Fb", "/a%5cb", "/a%5Cb", "/%2E"] {
            assert!(!is_plain_path(encoded), "{encoded}");
        }
        for plain in ["/a%2gb", "/a%25b", "/a%2", "/%", "/a%3fb", "/é%2"] {
            assert!(is_plain_path(plain), "{plain}");
        }
    }

    #[test]
    fn the_connection_is_asked_only_when_it_decides() {
        let asked = std::cell::Cell::new(0);
        let tls = || {
            asked.set(asked.get() + 1);
            true
        };
        let trusted = policy(r#"{"trust_x_forwarded_proto": true}"#);
        let mut h = req("GET", "a.com", "/");
        h.apply(&[gatehouse_core::HeaderOp::add("x-forwarded-proto", "http")]);
        assert_eq!(
            trusted.decide_lazy(&h, &tls),
            redirect(301, "https://a.com/")
        );
        assert_eq!(asked.get(), 0);
        // Without the header, or untrusted, the connection decides.
        let plain = req("GET", "a.com", "/");
        assert_eq!(
            trusted.decide_lazy(&plain, &tls),
            Outcome::Secure { hsts: None }
        );
        assert_eq!(
            policy("{}").decide_lazy(&h, &tls),
            Outcome::Secure { hsts: None }
        );
        assert_eq!(asked.get(), 2);
    }
}
