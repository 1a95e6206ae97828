//! `make run-cluster`: one client's rate limit shared by two gateway
//! replicas. A real Redis, one `gatehouse-ratelimit` service, an echo
//! upstream and two Envoys (`--concurrency 2` each) running client-id then
//! rate-limit in global mode, and the demo requests printed as curl lines.
//! tests/tests/run_cluster.rs starts the `gatehouse-run-cluster` binary and
//! runs every printed line as printed (real curl), checking each answer.

use crate::config::{EnvoyConfig, WasmFilter};
use crate::echo::Echo;
use crate::envoy::Envoy;
use crate::ratelimit_service::RateLimitService;
use crate::redis::Redis;
use crate::run::{client_id_demo_credentials, example_config, upstream_saw, Demo, Expect};
use crate::Request;
use serde_json::{json, Value};

/// The Envoy cluster of the rate-limit service (HTTP/2).
pub const RLS_CLUSTER: &str = "ratelimit";
/// The demo limit: requests per minute per client, across both replicas.
pub const DEMO_LIMIT: u32 = 5;
/// The last line of the banner.
pub const BANNER_END: &str =
    "Ctrl-C stops both Envoys, the rate-limit service, Redis and the upstream.";

/// Ports of the two replicas; 0 picks free ones.
#[derive(Debug, Clone, Copy)]
pub struct ClusterPorts {
    pub http_a: u16,
    pub http_b: u16,
    pub admin_a: u16,
    pub admin_b: u16,
}

/// Which replica a demo request goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replica {
    A,
    B,
}

impl ClusterPorts {
    pub fn http(&self, r: Replica) -> u16 {
        match r {
            Replica::A => self.http_a,
            Replica::B => self.http_b,
        }
    }
}

/// rate-limit's configuration (the service reads the same JSON): one rule,
/// keyed by the client id client-id sets, [`DEMO_LIMIT`] per minute, decided
/// by the service; when it fails, each replica enforces half the limit.
pub fn rate_limit_config() -> Value {
    json!({
        "headers": "x_ratelimit",
        "slots": 1024,
        "client_id_header": "x-client-id",
        "rules": [{
            "name": "api",
            "descriptor": ["client_id"],
            "limits": [{"name": "demo-per-minute", "rate": DEMO_LIMIT, "per": "minute"}],
            "global": {"cluster": RLS_CLUSTER, "timeout_ms": 1000, "on_error": "local", "replicas": 2}
        }]
    })
}

/// A static HTTP/2 cluster to the rate-limit service on loopback.
pub fn rls_cluster(name: &str, ports: &[u16]) -> Value {
    let endpoints: Vec<Value> = ports
        .iter()
        .map(|p| json!({"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": p}}}}))
        .collect();
    json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "lb_policy": "ROUND_ROBIN",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}}
            }
        },
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": endpoints}]}
    })
}

/// One replica's Envoy config: client-id (its example) then rate-limit in
/// global mode, all routes to `echo`.
pub fn replica_config(http: u16, admin: u16, echo: &Echo, rls_port: u16) -> EnvoyConfig {
    let mut cfg = EnvoyConfig::new()
        .cluster("echo", echo.port)
        .raw_cluster(rls_cluster(RLS_CLUSTER, &[rls_port]))
        .concurrency(2)
        // An edge proxy, as `make run`.
        .hcm(json!({"use_remote_address": true, "xff_num_trusted_hops": 0}))
        .filter(WasmFilter::new("client-id", example_config("client-id")))
        .filter(WasmFilter::new("rate-limit", rate_limit_config()));
    cfg.listen_port = http;
    cfg.admin_port = admin;
    cfg
}

/// Everything `make run-cluster` runs; all stopped on drop.
pub struct Cluster {
    pub a: Envoy,
    pub b: Envoy,
    pub service: RateLimitService,
    pub redis: Redis,
    pub echo: Echo,
}

impl Cluster {
    /// Starts Redis, the service, the upstream and both replicas; `Err`
    /// with the failing part's log.
    pub fn start(ports: &ClusterPorts) -> Result<Cluster, String> {
        let redis = Redis::start();
        let service = RateLimitService::try_start(
            &rate_limit_config().to_string(),
            &redis.url(),
            "127.0.0.1:0",
        )
        .map_err(|f| {
            format!(
                "gatehouse-ratelimit did not start (exit {:?}):\n{}",
                f.exited, f.log
            )
        })?;
        let echo = Echo::start("echo");
        let start = |http, admin, name| {
            Envoy::try_start(&replica_config(http, admin, &echo, service.port)).map_err(|f| {
                format!(
                    "Envoy replica {name} did not start (exit {:?}). Log:\n{}",
                    f.exited, f.log
                )
            })
        };
        let a = start(ports.http_a, ports.admin_a, "A")?;
        let b = start(ports.http_b, ports.admin_b, "B")?;
        Ok(Cluster {
            a,
            b,
            service,
            redis,
            echo,
        })
    }
}

/// One demo request and the replica it goes to.
#[derive(Debug, Clone)]
pub struct ClusterDemo {
    pub replica: Replica,
    pub demo: Demo,
}

/// The demo requests: one client's limit shared across both replicas, and
/// another client unaffected. The answers printed before the last one of a
/// repeated request are all 200.
pub fn cluster_demos() -> Vec<ClusterDemo> {
    let cred = client_id_demo_credentials();
    let field = |k: &str| {
        cred.get(k)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string()
    };
    let key_client = Request::get("/api/items")
        .host("api.example.com")
        .header("x-api-key", &field("api_key"));
    let jwt_client = Request::get("/api/items")
        .host("api.example.com")
        .header("authorization", &format!("Bearer {}", field("jwt")));
    let remaining = |n: u32| Expect::Header("x-ratelimit-remaining", n.to_string());
    vec![
        ClusterDemo {
            replica: Replica::A,
            demo: Demo {
                what: format!(
                    "replica A: client `demo` (API key) sends 3 requests; its limit is {DEMO_LIMIT} per minute across the replicas, counted by gatehouse-ratelimit in Redis"
                ),
                tls: false,
                request: key_client.clone(),
                expect_status: 200,
                repeat: 3,
                expect: vec![
                    remaining(DEMO_LIMIT - 3),
                    upstream_saw("x-client-id", "demo"),
                ],
            },
        },
        ClusterDemo {
            replica: Replica::B,
            demo: Demo {
                what: "replica B: the same client sends 3 more (run it within 12 s of the line above: one request refills every 12 s); 2 pass, the 6th gets 429 with retry-after".into(),
                tls: false,
                request: key_client,
                expect_status: 429,
                repeat: 3,
                expect: vec![
                    Expect::HeaderPresent("retry-after"),
                    remaining(0),
                    Expect::BodyHas("rate_limited".into()),
                ],
            },
        },
        ClusterDemo {
            replica: Replica::B,
            demo: Demo {
                what: format!(
                    "replica B: another client (`{}`, the demo JWT) is not affected",
                    field("jwt_client")
                ),
                tls: false,
                request: jwt_client,
                expect_status: 200,
                repeat: 1,
                expect: vec![
                    remaining(DEMO_LIMIT - 1),
                    upstream_saw("x-client-id", &field("jwt_client")),
                ],
            },
        },
    ]
}

/// The curl lines `make run-cluster` prints.
pub fn cluster_demo_lines(ports: &ClusterPorts) -> Vec<String> {
    cluster_demos()
        .iter()
        .map(|d| d.demo.curl_to(ports.http(d.replica), None))
        .collect()
}
