//! Envoy bootstrap generation for tests and `make run`.

use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// One proxy-wasm HTTP filter in the chain.
#[derive(Debug, Clone)]
pub struct WasmFilter {
    /// Filter name (`request-id`, ...): also the default root id and the
    /// default `.wasm` file name in `dist/`.
    pub name: String,
    pub root_id: String,
    pub wasm: PathBuf,
    /// The plugin configuration, delivered as a JSON string.
    pub config: Value,
    /// Deliver this exact string instead of `config` (for bad-JSON tests).
    pub raw_config: Option<String>,
    /// `FAIL_CLOSED` (default), `FAIL_OPEN`, `FAIL_RELOAD`.
    pub failure_policy: Option<String>,
    pub vm_id: String,
    /// Set when a test chose the module or root id itself: such a filter is
    /// never re-delivered through gatehouse.wasm.
    pub pinned: bool,
}

/// How the harness delivers gatehouse filters to Envoy, from
/// `$GATEHOUSE_DELIVERY` (`make test` runs the suite in all three):
/// - `separate` (default): `dist/<filter>.wasm`, one module per filter;
/// - `shared`: every filter from `dist/gatehouse.wasm`, selected by root id,
///   one VM per worker shared by all of them;
/// - `fused`: consecutive gatehouse filters become stages of one `chain`
///   filter from `dist/gatehouse.wasm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Separate,
    Shared,
    Fused,
}

impl Delivery {
    pub fn from_env() -> Delivery {
        match std::env::var("GATEHOUSE_DELIVERY").as_deref() {
            Ok("shared") => Delivery::Shared,
            Ok("fused") => Delivery::Fused,
            Ok("separate") | Ok("") | Err(_) => Delivery::Separate,
            Ok(other) => panic!("GATEHOUSE_DELIVERY={other}: expected separate, shared or fused"),
        }
    }
}

impl WasmFilter {
    /// The filter `name` from `dist/<name>.wasm` with this JSON config.
    pub fn new(name: &str, config: Value) -> WasmFilter {
        let wasm = match Delivery::from_env() {
            Delivery::Separate => crate::wasm_path(name),
            Delivery::Shared | Delivery::Fused => crate::wasm_path("gatehouse"),
        };
        WasmFilter {
            name: name.to_string(),
            root_id: name.to_string(),
            wasm,
            config,
            raw_config: None,
            failure_policy: None,
            vm_id: String::new(),
            pinned: false,
        }
    }

    /// The filter `name` from an explicit module (never re-delivered).
    pub fn new_at(name: &str, wasm: PathBuf, config: Value) -> WasmFilter {
        WasmFilter {
            name: name.to_string(),
            root_id: name.to_string(),
            wasm,
            config,
            raw_config: None,
            failure_policy: None,
            vm_id: String::new(),
            pinned: true,
        }
    }

    pub fn root_id(mut self, root_id: &str) -> Self {
        self.root_id = root_id.to_string();
        self.pinned = true;
        self
    }

    pub fn wasm(mut self, path: PathBuf) -> Self {
        self.wasm = path;
        self.pinned = true;
        self
    }

    pub fn raw_config(mut self, raw: &str) -> Self {
        self.raw_config = Some(raw.to_string());
        self
    }

    pub fn failure_policy(mut self, policy: &str) -> Self {
        self.failure_policy = Some(policy.to_string());
        self
    }

    pub fn vm_id(mut self, vm_id: &str) -> Self {
        self.vm_id = vm_id.to_string();
        self.pinned = true;
        self
    }

    /// This filter's configuration as one stage of the fused chain: the JSON
    /// object, or the raw string when a test sends raw bytes.
    fn stage_config(&self) -> Value {
        match &self.raw_config {
            Some(raw) => Value::String(raw.clone()),
            None => self.config.clone(),
        }
    }

    /// Several filters as one fused `chain` filter of gatehouse.wasm.
    fn fuse(group: &[WasmFilter]) -> WasmFilter {
        let mut stages = serde_json::Map::new();
        for f in group {
            stages.insert(f.name.clone(), f.stage_config());
        }
        WasmFilter {
            name: "chain".to_string(),
            root_id: "chain".to_string(),
            wasm: crate::wasm_path("gatehouse"),
            config: Value::Object(stages),
            raw_config: None,
            failure_policy: group.iter().find_map(|f| f.failure_policy.clone()),
            vm_id: String::new(),
            pinned: true,
        }
    }

    /// The `PluginConfig` message (also used for ECDS).
    pub fn plugin_config(&self) -> Value {
        let value = match &self.raw_config {
            Some(raw) => raw.clone(),
            None => self.config.to_string(),
        };
        let mut cfg = json!({
            "name": self.name,
            "root_id": self.root_id,
            "configuration": {
                "@type": "type.googleapis.com/google.protobuf.StringValue",
                "value": value,
            },
            "vm_config": {
                "vm_id": self.vm_id,
                "runtime": "envoy.wasm.runtime.v8",
                "code": {"local": {"filename": self.wasm.display().to_string()}},
            },
        });
        if let Some(p) = &self.failure_policy {
            cfg["failure_policy"] = json!(p);
        }
        cfg
    }

    /// The HTTP filter entry for the connection manager.
    pub fn http_filter(&self) -> Value {
        json!({
            "name": format!("gatehouse.{}", self.name),
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                "config": self.plugin_config(),
            }
        })
    }
}

/// A static upstream cluster on loopback.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub name: String,
    pub ports: Vec<u16>,
}

/// A TLS listener beside the plain one.
#[derive(Debug, Clone)]
pub struct TlsListener {
    pub cert_chain: PathBuf,
    pub private_key: PathBuf,
    /// When set, client certificates are requested and verified against it.
    pub client_ca: Option<PathBuf>,
    /// With `client_ca`: refuse connections without a certificate.
    pub require_client_cert: bool,
}

/// One HTTP filter of the chain.
#[derive(Debug, Clone)]
pub enum FilterEntry {
    Wasm(WasmFilter),
    /// Any filter as JSON (native filters, ECDS entries).
    Raw(Value),
}

/// The filters as Envoy JSON, fusing consecutive gatehouse filters into
/// one chain filter when the delivery is `fused`.
pub fn render_filters(entries: &[FilterEntry], delivery: Delivery) -> Vec<Value> {
    let mut out = Vec::new();
    let mut group: Vec<WasmFilter> = Vec::new();
    let flush = |group: &mut Vec<WasmFilter>, out: &mut Vec<Value>| {
        if !group.is_empty() {
            out.push(WasmFilter::fuse(group).http_filter());
            group.clear();
        }
    };
    for e in entries {
        match e {
            FilterEntry::Wasm(f) if delivery == Delivery::Fused && !f.pinned => {
                if group.iter().any(|g| g.name == f.name) {
                    flush(&mut group, &mut out);
                }
                group.push(f.clone());
            }
            FilterEntry::Wasm(f) => {
                flush(&mut group, &mut out);
                out.push(f.http_filter());
            }
            FilterEntry::Raw(v) => {
                flush(&mut group, &mut out);
                out.push(v.clone());
            }
        }
    }
    flush(&mut group, &mut out);
    out
}

/// An Envoy bootstrap under construction.
#[derive(Debug, Clone)]
pub struct EnvoyConfig {
    /// HTTP filters before the router, in order.
    pub http_filters: Vec<FilterEntry>,
    pub clusters: Vec<Cluster>,
    /// Routes of the single virtual host (`domains: ["*"]`); default: all to
    /// the first cluster.
    pub routes: Option<Value>,
    /// Complete `route_config` override (several virtual hosts, ...).
    pub route_config: Option<Value>,
    /// Extra fields merged into the HttpConnectionManager.
    pub hcm_extra: Value,
    pub concurrency: u32,
    pub tls: Option<TlsListener>,
    /// Fixed ports (for `make run`); 0 = pick a free one.
    pub listen_port: u16,
    pub tls_port: u16,
    pub admin_port: u16,
    /// Extra static clusters as raw JSON.
    pub raw_clusters: Vec<Value>,
}

impl Default for EnvoyConfig {
    fn default() -> Self {
        EnvoyConfig {
            http_filters: Vec::new(),
            clusters: Vec::new(),
            routes: None,
            route_config: None,
            hcm_extra: json!({}),
            concurrency: 2,
            tls: None,
            listen_port: 0,
            tls_port: 0,
            admin_port: 0,
            raw_clusters: Vec::new(),
        }
    }
}

impl EnvoyConfig {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn filter(mut self, f: WasmFilter) -> Self {
        self.http_filters.push(FilterEntry::Wasm(f));
        self
    }

    /// Any HTTP filter as JSON (native filters, ECDS entries).
    pub fn raw_filter(mut self, v: Value) -> Self {
        self.http_filters.push(FilterEntry::Raw(v));
        self
    }

    pub fn cluster(mut self, name: &str, port: u16) -> Self {
        self.clusters.push(Cluster {
            name: name.to_string(),
            ports: vec![port],
        });
        self
    }

    pub fn raw_cluster(mut self, v: Value) -> Self {
        self.raw_clusters.push(v);
        self
    }

    pub fn routes(mut self, routes: Value) -> Self {
        self.routes = Some(routes);
        self
    }

    pub fn route_config(mut self, rc: Value) -> Self {
        self.route_config = Some(rc);
        self
    }

    /// Merges fields into the HttpConnectionManager config (e.g.
    /// `{"generate_request_id": false}`).
    pub fn hcm(mut self, extra: Value) -> Self {
        if let (Some(dst), Some(src)) = (self.hcm_extra.as_object_mut(), extra.as_object()) {
            for (k, v) in src {
                dst.insert(k.clone(), v.clone());
            }
        }
        self
    }

    pub fn concurrency(mut self, n: u32) -> Self {
        self.concurrency = n;
        self
    }

    pub fn tls(mut self, tls: TlsListener) -> Self {
        self.tls = Some(tls);
        self
    }

    fn hcm_config(&self, stat_prefix: &str) -> Value {
        let route_config = match &self.route_config {
            Some(rc) => rc.clone(),
            None => {
                let routes = self.routes.clone().unwrap_or_else(|| {
                    let first = self
                        .clusters
                        .first()
                        .map(|c| c.name.clone())
                        .unwrap_or_else(|| "echo".to_string());
                    json!([{"match": {"prefix": "/"}, "route": {"cluster": first}}])
                });
                json!({
                    "name": "local",
                    "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": routes}],
                })
            }
        };
        let mut filters = render_filters(&self.http_filters, Delivery::from_env());
        filters.push(json!({
            "name": "envoy.filters.http.router",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}
        }));
        let mut hcm = json!({
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": stat_prefix,
            "codec_type": "AUTO",
            "route_config": route_config,
            "http_filters": filters,
        });
        if let (Some(dst), Some(src)) = (hcm.as_object_mut(), self.hcm_extra.as_object()) {
            for (k, v) in src {
                dst.insert(k.clone(), v.clone());
            }
        }
        hcm
    }

    fn listener(&self, name: &str, port: u16, transport: Option<Value>) -> Value {
        let mut chain = json!({
            "filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": self.hcm_config(name),
            }]
        });
        if let Some(t) = transport {
            chain["transport_socket"] = t;
        }
        json!({
            "name": name,
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
            "filter_chains": [chain],
        })
    }

    /// The complete bootstrap as JSON.
    pub fn bootstrap(&self) -> Value {
        let mut listeners = vec![self.listener("plain", self.listen_port, None)];
        if let Some(tls) = &self.tls {
            let mut ctx = json!({
                "common_tls_context": {
                    "tls_certificates": [{
                        "certificate_chain": {"filename": path_str(&tls.cert_chain)},
                        "private_key": {"filename": path_str(&tls.private_key)},
                    }],
                    "alpn_protocols": ["h2", "http/1.1"],
                }
            });
            if let Some(ca) = &tls.client_ca {
                ctx["common_tls_context"]["validation_context"] =
                    json!({"trusted_ca": {"filename": path_str(ca)}});
                ctx["require_client_certificate"] = json!(tls.require_client_cert);
            }
            let transport = json!({
                "name": "envoy.transport_sockets.tls",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                    "common_tls_context": ctx["common_tls_context"].clone(),
                    "require_client_certificate": ctx.get("require_client_certificate").cloned().unwrap_or(json!(false)),
                }
            });
            listeners.push(self.listener("tls", self.tls_port, Some(transport)));
        }
        let mut clusters: Vec<Value> = self
            .clusters
            .iter()
            .map(|c| {
                let endpoints: Vec<Value> = c
                    .ports
                    .iter()
                    .map(|p| {
                        json!({"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": p}}}})
                    })
                    .collect();
                json!({
                    "name": c.name,
                    "type": "STATIC",
                    "connect_timeout": "2s",
                    "load_assignment": {"cluster_name": c.name, "endpoints": [{"lb_endpoints": endpoints}]},
                })
            })
            .collect();
        clusters.extend(self.raw_clusters.iter().cloned());
        json!({
            "node": {"id": "gatehouse-test", "cluster": "gatehouse"},
            "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": self.admin_port}}},
            "static_resources": {"listeners": listeners, "clusters": clusters},
        })
    }
}

fn path_str(p: &Path) -> String {
    p.display().to_string()
}
