//! The `make run` chain: every built filter in the documented order, each
//! with its `filters/<name>/example.json`, and the demo requests that
//! `make run` prints as curl lines. tests/tests/chain.rs starts the
//! `gatehouse-run` binary and runs every printed line as printed (real
//! curl), checking each answer against its [`Demo`], so the printed lines are
//! known to work.

use crate::client::Request;
use crate::config::{EnvoyConfig, WasmFilter};
use crate::echo::Echo;
use crate::pki::TestPki;
use serde_json::{json, Value};

/// The order of the filters in the chain (also the WasmPlugin phase order):
/// the inventory, `gatehouse_core::FILTERS`.
pub const CHAIN_ORDER: [&str; 5] = gatehouse_core::FILTERS;

/// The filters of the repository, in chain order (the inventory: every one
/// has an adapter and is built by `make build`).
pub fn filters_in_repo() -> Vec<&'static str> {
    CHAIN_ORDER.to_vec()
}

/// Ports of the run; 0 picks free ones (tests).
#[derive(Debug, Clone, Copy)]
pub struct RunPorts {
    pub http: u16,
    pub https: u16,
    pub admin: u16,
}

/// `filters/<name>/example.json`.
pub fn example_config(filter: &str) -> Value {
    let p = crate::repo_root()
        .join("filters")
        .join(filter)
        .join("example.json");
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| {
        panic!(
            "{} is missing ({e}): every filter ships an example config",
            p.display()
        )
    });
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", p.display()))
}

/// The header host-router's example uses to pick the cluster.
pub fn routing_header() -> String {
    example_config("host-router")
        .get("routing_header")
        .and_then(|v| v.as_str())
        .unwrap_or("x-gatehouse-cluster")
        .to_string()
}

/// The Envoy config of `make run` with the given built filters.
pub fn chain_config(
    built: &[&str],
    ports: &RunPorts,
    echo: &Echo,
    webapp: &Echo,
    catalog: &Echo,
    pki: &TestPki,
) -> EnvoyConfig {
    let mut cfg = EnvoyConfig::new()
        .cluster("echo", echo.port)
        .cluster("webapp", webapp.port)
        .cluster("catalog", catalog.port)
        .tls(pki.listener(false, false))
        // An edge proxy: the client address is the connection's peer, never
        // a client-sent x-forwarded-for (rate-limit's `client_address`). At
        // the edge Envoy would replace every client's x-request-id; the
        // request-id filter decides instead (it keeps only safe ids).
        .hcm(json!({
            "use_remote_address": true,
            "xff_num_trusted_hops": 0,
            "preserve_external_request_id": true
        }));
    cfg.listen_port = ports.http;
    cfg.tls_port = ports.https;
    cfg.admin_port = ports.admin;
    for f in CHAIN_ORDER.iter().filter(|f| built.contains(f)) {
        let mut conf = example_config(f);
        if *f == "https-redirect" && ports.https != 0 {
            // Locally the HTTPS listener is not on 443.
            if let Some(obj) = conf.as_object_mut() {
                obj.insert("https_port".to_string(), json!(ports.https));
            }
        }
        cfg = cfg.filter(WasmFilter::new(f, conf));
    }
    if built.contains(&"host-router") {
        cfg = cfg.routes(json!([
            {"match": {"prefix": "/"}, "route": {"cluster_header": routing_header()}}
        ]));
    } else {
        cfg = cfg.routes(json!([{"match": {"prefix": "/"}, "route": {"cluster": "echo"}}]));
    }
    cfg
}

/// What a demo's answer must show besides its status (checked by
/// tests/tests/chain.rs on the answers to the printed curl lines).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// A response header with exactly this value.
    Header(&'static str, String),
    /// A response header that must be present.
    HeaderPresent(&'static str),
    /// A redirect to the same host and this path over HTTPS (with the
    /// HTTPS listener's port when it is not 443).
    RedirectToHttps(String),
    /// The body contains this text.
    BodyHas(String),
    /// The body does not contain this text.
    BodyLacks(String),
}

/// One demo request: the curl line printed by `make run`, and the same
/// request for the tests, with the status it must get.
#[derive(Debug, Clone)]
pub struct Demo {
    pub what: String,
    pub tls: bool,
    pub request: Request,
    pub expect_status: u16,
    /// Send it this many times (rate-limit demo); the last answer counts.
    pub repeat: u32,
    /// What the last answer must show besides the status.
    pub expect: Vec<Expect>,
}

/// The echo upstream's JSON body lists each received header as
/// `["name","value"]`.
pub(crate) fn upstream_saw(name: &str, value: &str) -> Expect {
    Expect::BodyHas(json!([name, value]).to_string())
}

impl Demo {
    pub fn curl(&self, ports: &RunPorts, pki: &TestPki) -> String {
        self.curl_to(ports.http, Some((pki, ports.https)))
    }

    /// The curl line against a plain listener on `http_port`, or (for a TLS
    /// demo) the HTTPS listener given with its CA.
    pub fn curl_to(&self, http_port: u16, tls: Option<(&TestPki, u16)>) -> String {
        let mut line = String::from("curl -si");
        let host = &self.request.authority;
        let url = if self.tls {
            let (pki, https) = tls.expect("a TLS demo needs the HTTPS listener");
            line.push_str(&format!(
                " --cacert {} --resolve {host}:{https}:127.0.0.1",
                pki.ca_pem.display(),
            ));
            format!("https://{host}:{https}{}", self.request.path)
        } else {
            line.push_str(&format!(" -H 'host: {host}'"));
            format!("http://127.0.0.1:{http_port}{}", self.request.path)
        };
        if self.request.method != "GET" {
            line.push_str(&format!(" -X {}", self.request.method));
        }
        for (k, v) in &self.request.headers {
            line.push_str(&format!(" -H '{k}: {}'", String::from_utf8_lossy(v)));
        }
        line.push_str(&format!(" '{url}'"));
        if self.repeat > 1 {
            // The first answers as status codes, the last one in full.
            let quiet = line.replacen("curl -si", "curl -s -o /dev/null -w '%{http_code}\\n'", 1);
            line = format!(
                "for i in $(seq {}); do {quiet}; done; {line}",
                self.repeat - 1
            );
        }
        format!(
            "  # {} (expect {})\n  {line}",
            self.what, self.expect_status
        )
    }
}

/// The demo requests for the built filters.
pub fn demos(built: &[&str]) -> Vec<Demo> {
    let has = |f: &str| built.contains(&f);
    let mut out = Vec::new();
    let tls_default = has("https-redirect");
    let host = if has("host-router") {
        "webapp.istioinaction.io"
    } else {
        "example.com"
    };
    if has("request-id") {
        out.push(Demo {
            what: "request-id: the upstream gets x-request-id and a trace context; the response echoes the id".into(),
            tls: tls_default,
            request: Request::get("/").host(host).header("x-request-id", "demo-123"),
            expect_status: if has("client-id") { 401 } else { 200 },
            repeat: 1,
            expect: vec![Expect::Header("x-request-id", "demo-123".into())],
        });
    }
    if has("https-redirect") {
        out.push(Demo {
            what: "https-redirect: plain HTTP is redirected to HTTPS".into(),
            tls: false,
            request: Request::post("/api/orders?id=7").host(host),
            expect_status: 308,
            repeat: 1,
            expect: vec![Expect::RedirectToHttps("/api/orders?id=7".into())],
        });
    }
    if has("client-id") {
        let cred = client_id_demo_credentials();
        let field = |k: &str| {
            cred.get(k)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string()
        };
        out.push(Demo {
            what: "client-id: the demo API key identifies client `demo` (plan gold); a forged x-client-id never reaches the upstream".into(),
            tls: tls_default,
            request: Request::get("/").host(host).header("x-api-key", &field("api_key")).header("x-client-id", "forged"),
            expect_status: 200,
            repeat: 1,
            expect: vec![
                Expect::Header("x-echo-upstream", "webapp".into()),
                upstream_saw("x-client-id", "demo"),
                upstream_saw("x-client-plan", "gold"),
                Expect::BodyLacks("forged".into()),
            ],
        });
        out.push(Demo {
            what: "client-id: the demo JWT (HS256, demo issuer) identifies `demo-jwt-client` (plan silver from its claim)".into(),
            tls: tls_default,
            request: Request::get("/").host(host).header("authorization", &format!("Bearer {}", field("jwt"))),
            expect_status: 200,
            repeat: 1,
            expect: vec![
                upstream_saw("x-client-id", &field("jwt_client")),
                upstream_saw("x-client-plan", "silver"),
            ],
        });
        out.push(Demo {
            what: "client-id: a disabled client's key gets 403 with a JSON body".into(),
            tls: tls_default,
            request: Request::get("/")
                .host(host)
                .header("x-api-key", &field("disabled_api_key")),
            expect_status: 403,
            repeat: 1,
            expect: vec![Expect::Header("content-type", "application/json".into())],
        });
        if has("rate-limit") {
            out.push(Demo {
                what: "rate-limit: the JWT client's plan (silver) is not configured, so the default plan `free` applies: 3 per minute; the 4th answer is a 429 with retry-after and x-ratelimit-* headers".into(),
                tls: tls_default,
                request: Request::get("/").host(host).header("authorization", &format!("Bearer {}", field("jwt"))),
                expect_status: 429,
                repeat: 4,
                expect: vec![
                Expect::HeaderPresent("retry-after"),
                Expect::HeaderPresent("x-ratelimit-limit"),
                Expect::HeaderPresent("x-ratelimit-remaining"),
                Expect::HeaderPresent("x-ratelimit-reset"),
            ],
            });
        }
        if has("host-router") {
            out.push(Demo {
                what: "host-router: catalog.istioinaction.io is answered by the `catalog` upstream"
                    .into(),
                tls: tls_default,
                request: Request::get("/items")
                    .host("catalog.istioinaction.io")
                    .header("x-api-key", &field("api_key")),
                expect_status: 200,
                repeat: 1,
                expect: vec![Expect::Header("x-echo-upstream", "catalog".into())],
            });
            out.push(Demo {
                what: "host-router: an unknown host gets 404".into(),
                tls: tls_default,
                request: Request::get("/")
                    .host("unknown.example.org")
                    .header("x-api-key", &field("api_key")),
                expect_status: 404,
                repeat: 1,
                expect: vec![],
            });
        }
    }
    out
}

/// The names the demo requests send over TLS (their `Host`), plus
/// `localhost`: the server certificate of `make run` covers exactly these, so
/// every printed HTTPS curl line verifies against the printed CA.
pub fn demo_hosts(built: &[&str]) -> Vec<String> {
    let mut out = vec!["localhost".to_string()];
    for d in demos(built).iter().filter(|d| d.tls) {
        let a = d.request.authority.as_str();
        let host = match a.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => a,
        };
        if !out.iter().any(|h| h.eq_ignore_ascii_case(host)) {
            out.push(host.to_string());
        }
    }
    out
}

/// The test PKI of `make run`: its server certificate names [`demo_hosts`].
pub fn demo_pki(dir: &std::path::Path, built: &[&str]) -> TestPki {
    TestPki::for_hosts(dir, &demo_hosts(built))
}

/// The curl lines `make run` prints.
pub fn demo_lines(built: &[&str], ports: &RunPorts, pki: &TestPki) -> Vec<String> {
    demos(built).iter().map(|d| d.curl(ports, pki)).collect()
}

/// `filters/client-id/demo-credentials.json`: the DEMO-ONLY key and token
/// matching client-id's example config.
pub fn client_id_demo_credentials() -> Value {
    let p = crate::repo_root().join("filters/client-id/demo-credentials.json");
    let text =
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{} is missing ({e})", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", p.display()))
}

/// A port from the environment variable `name`, else `default` (the run
/// binaries' `GATEHOUSE_*_PORT` settings).
pub fn port_from_env(name: &str, default: u16) -> u16 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Blocks until Ctrl-C (SIGINT), SIGTERM, or one of the `watched`
/// processes (name, pid) exits (then says which). The launchers stop their
/// children afterwards (dropping them).
pub fn wait_for_stop(watched: &[(&str, Option<u32>)]) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = term.recv() => break,
                _ = tick.tick() => {
                    let gone = watched.iter().find(|(_, pid)| {
                        !pid.map(|p| std::path::Path::new(&format!("/proc/{p}")).exists())
                            .unwrap_or(false)
                    });
                    if let Some((name, _)) = gone {
                        eprintln!("{name} exited; see its log above.");
                        break;
                    }
                }
            }
        }
    });
}
