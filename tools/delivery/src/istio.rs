//! What istiod makes of our manifests, for a plain Envoy.
//!
//! [`Manifests::render`] runs `kubectl kustomize` on a kustomization (what
//! `kubectl apply -k` sends); [`Manifests::render_variant`] does it on a copy
//! of `manifests/` and `manifests-shared-module/` with the user's one-line
//! choices made (the kind: TrafficExtension or WasmPlugin; the attachment:
//! selector or Gateway API targetRefs; per-filter images or the shared
//! module). From the plugins, of either kind, it renders what istiod sends a
//! gateway (see FIELD-NOTES "Istio WasmPlugin"): one HTTP filter per plugin
//! that is discovered through ECDS (`config_discovery`), in phase/priority
//! order, and for each one a `TypedExtensionConfig` holding the Wasm filter
//! with `pluginConfig` as a JSON `google.protobuf.StringValue`, the V8
//! runtime, an empty `vm_id`, `root_id` from `pluginName` and
//! `failure_policy` from `failStrategy`. istiod sends these over ADS; here
//! they go into files (`path_config_source`), which Envoy watches and
//! reloads on an atomic rename. The OCI `url` becomes a local file, as the
//! Istio agent does after pulling the image.
//!
//! The `VirtualService`s or `HTTPRoute`s become an Envoy route configuration
//! with Istio's cluster names (`outbound|PORT||HOST`), for the subset of the
//! APIs our manifests use (exact/prefix path and exact header matches, one
//! destination per route); anything else is an error, never silently
//! dropped.

use serde_json::{json, Value};
use std::path::{Path, PathBuf};

pub const WASM_TYPE_URL: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
pub const TYPED_EXTENSION_CONFIG_TYPE_URL: &str =
    "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig";
pub const TRAFFIC_EXTENSION: &str = "TrafficExtension";
pub const WASM_PLUGIN: &str = "WasmPlugin";

/// One Kubernetes document of the rendered manifests.
#[derive(Debug, Clone)]
pub struct Doc {
    pub value: Value,
}

impl Doc {
    pub fn kind(&self) -> &str {
        self.value.get("kind").and_then(Value::as_str).unwrap_or("")
    }
    pub fn name(&self) -> &str {
        self.value
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
    }
    pub fn namespace(&self) -> &str {
        self.value
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("default")
    }
}

/// Parses every YAML document of `text` into JSON values. Duplicate keys
/// are an error (serde_yaml refuses them).
pub fn parse_yaml_docs(text: &str) -> Result<Vec<Value>, String> {
    use serde::Deserialize;
    let mut out = Vec::new();
    for de in serde_yaml::Deserializer::from_str(text) {
        let v = Value::deserialize(de).map_err(|e| e.to_string())?;
        if !v.is_null() {
            out.push(v);
        }
    }
    Ok(out)
}

/// The user's choices, each one line of a kustomization.yaml (see
/// manifests/kustomization.yaml).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Variant {
    /// `manifests-shared-module/` (one gatehouse image) instead of `manifests/`.
    pub shared_module: bool,
    /// WasmPlugins (Istio < 1.30) instead of TrafficExtensions.
    pub wasm_plugin: bool,
    /// `targetRefs` to a Gateway API Gateway (+ HTTPRoute) instead of the
    /// `istio: ingressgateway` selector (+ Istio Gateway and VirtualService).
    pub gateway_api: bool,
}

impl Variant {
    pub const DEFAULT: Variant = Variant {
        shared_module: false,
        wasm_plugin: false,
        gateway_api: false,
    };

    /// All eight combinations.
    pub fn all() -> Vec<Variant> {
        let mut out = Vec::new();
        for shared_module in [false, true] {
            for wasm_plugin in [false, true] {
                for gateway_api in [false, true] {
                    out.push(Variant {
                        shared_module,
                        wasm_plugin,
                        gateway_api,
                    });
                }
            }
        }
        out
    }

    pub fn kind(&self) -> &'static str {
        if self.wasm_plugin {
            WASM_PLUGIN
        } else {
            TRAFFIC_EXTENSION
        }
    }
}

impl std::fmt::Display for Variant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} {}",
            if self.shared_module {
                "manifests-shared-module/"
            } else {
                "manifests/"
            },
            self.kind(),
            if self.gateway_api {
                "targetRefs (Gateway API)"
            } else {
                "selector (istio-ingressgateway)"
            }
        )
    }
}

/// Uncomments the line `# <line>` of `file` (a user's one-line choice).
pub fn uncomment(file: &Path, line: &str) -> Result<(), String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let commented = format!("# {line}");
    let hits = text.lines().filter(|l| *l == commented).count();
    if hits != 1 {
        return Err(format!(
            "{}: expected exactly one line `{commented}`, found {hits}",
            file.display()
        ));
    }
    let new: Vec<&str> = text
        .lines()
        .map(|l| if l == commented { line } else { l })
        .collect();
    std::fs::write(file, new.join("\n") + "\n").map_err(|e| format!("{}: {e}", file.display()))
}

/// kubectl for `kubectl kustomize`: `$KUBECTL`, else the one `make setup`
/// installs in `.venv/kubectl-<version>/bin/kubectl` under `root`.
pub fn kubectl(root: &Path) -> Result<PathBuf, String> {
    if let Some(k) = std::env::var_os("KUBECTL") {
        return Ok(PathBuf::from(k));
    }
    let venv = root.join(".venv");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&venv)
        .map_err(|e| format!("{}: {e} (run `make setup`)", venv.display()))?
        .filter_map(|e| {
            let e = e.ok()?;
            let name = e.file_name().to_string_lossy().to_string();
            let k = e.path().join("bin/kubectl");
            (name.starts_with("kubectl-") && k.is_file()).then_some(k)
        })
        .collect();
    found.sort();
    found.pop().ok_or_else(|| {
        format!(
            "no .venv/kubectl-*/bin/kubectl under {} (run `make setup`)",
            root.display()
        )
    })
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let target = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &target)?;
        } else {
            std::fs::copy(e.path(), &target)?;
        }
    }
    Ok(())
}

/// The rendered manifests (the output of `kubectl kustomize`).
#[derive(Debug, Clone)]
pub struct Manifests {
    pub docs: Vec<Doc>,
}

impl Manifests {
    /// `kubectl kustomize dir`, parsed.
    pub fn render(kubectl: &Path, dir: &Path) -> Result<Manifests, String> {
        let out = std::process::Command::new(kubectl)
            .arg("kustomize")
            .arg(dir)
            .output()
            .map_err(|e| format!("{}: {e}", kubectl.display()))?;
        if !out.status.success() {
            return Err(format!(
                "kubectl kustomize {}: {}",
                dir.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Manifests::from_yaml(&String::from_utf8_lossy(&out.stdout))
    }

    pub fn from_yaml(text: &str) -> Result<Manifests, String> {
        Ok(Manifests {
            docs: parse_yaml_docs(text)?
                .into_iter()
                .map(|value| Doc { value })
                .collect(),
        })
    }

    /// Renders `variant` from the repository at `root`: copies `manifests/`
    /// and `manifests-shared-module/` to a scratch directory, makes the
    /// variant's one-line choices there (the lines the docs tell users to
    /// uncomment) and runs `kubectl kustomize`.
    pub fn render_variant(
        kubectl: &Path,
        root: &Path,
        variant: Variant,
    ) -> Result<Manifests, String> {
        Manifests::render_variant_with(kubectl, root, variant, |_| Ok(()))
    }

    /// [`Manifests::render_variant`], after `edit` changed the copy (its
    /// argument is the scratch directory holding `manifests/` and
    /// `manifests-shared-module/`), e.g. to apply a documented change.
    pub fn render_variant_with(
        kubectl: &Path,
        root: &Path,
        variant: Variant,
        edit: impl FnOnce(&Path) -> Result<(), String>,
    ) -> Result<Manifests, String> {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let tmp = std::env::temp_dir().join(format!(
            "gatehouse-kustomize-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&tmp);
        let result = (|| {
            for d in ["manifests", "manifests-shared-module"] {
                copy_dir(&root.join(d), &tmp.join(d)).map_err(|e| format!("copy {d}: {e}"))?;
            }
            let base = tmp.join("manifests/kustomization.yaml");
            let shared = tmp.join("manifests-shared-module/kustomization.yaml");
            if variant.gateway_api {
                uncomment(&base, "- components/gateway-api")?;
            }
            if variant.wasm_plugin {
                if variant.shared_module {
                    uncomment(&shared, "- ../manifests/wasmplugin")?;
                } else {
                    uncomment(&base, "- wasmplugin")?;
                }
            }
            edit(&tmp)?;
            let dir = if variant.shared_module {
                "manifests-shared-module"
            } else {
                "manifests"
            };
            Manifests::render(kubectl, &tmp.join(dir))
        })();
        let _ = std::fs::remove_dir_all(&tmp);
        result.map_err(|e| format!("{variant}: {e}"))
    }

    pub fn of_kind(&self, kind: &str) -> Vec<&Doc> {
        self.docs.iter().filter(|d| d.kind() == kind).collect()
    }

    /// The plugins (TrafficExtensions and WasmPlugins) in the order the
    /// gateway runs them.
    pub fn plugins(&self) -> Result<Vec<Plugin>, String> {
        let mut out = Vec::new();
        for d in &self.docs {
            if d.kind() == TRAFFIC_EXTENSION || d.kind() == WASM_PLUGIN {
                out.push(Plugin::from_doc(d)?);
            }
        }
        out.sort_by(|a, b| {
            (a.phase_rank(), -a.priority, &a.name).cmp(&(b.phase_rank(), -b.priority, &b.name))
        });
        Ok(out)
    }

    /// The route configuration istiod would give the gateway for the
    /// VirtualServices or HTTPRoutes, and the Istio cluster names it routes to.
    pub fn route_config(&self) -> Result<(Value, Vec<String>), String> {
        let mut vhosts = Vec::new();
        let mut clusters: Vec<String> = Vec::new();
        for d in self.of_kind("VirtualService") {
            vhosts.push(virtual_service_vhost(d, &mut clusters)?);
        }
        for d in self.of_kind("HTTPRoute") {
            vhosts.push(http_route_vhost(d, &mut clusters)?);
        }
        if vhosts.is_empty() {
            return Err("no VirtualService or HTTPRoute".into());
        }
        Ok((
            json!({"name": "http.80", "virtual_hosts": vhosts}),
            clusters,
        ))
    }
}

fn domains_of(hosts: &[String]) -> Vec<String> {
    let mut domains = Vec::new();
    for h in hosts {
        domains.push(h.clone());
        domains.push(format!("{h}:*"));
    }
    domains
}

fn strings(v: Option<&Value>, what: &str) -> Result<Vec<String>, String> {
    Ok(v.and_then(Value::as_array)
        .ok_or(format!("{what}: not a list"))?
        .iter()
        .filter_map(|h| h.as_str().map(str::to_string))
        .collect())
}

fn virtual_service_vhost(d: &Doc, clusters: &mut Vec<String>) -> Result<Value, String> {
    let spec = d.value.get("spec").ok_or("VirtualService without spec")?;
    let hosts = strings(spec.get("hosts"), "VirtualService hosts")?;
    let mut routes = Vec::new();
    for http in spec
        .get("http")
        .and_then(Value::as_array)
        .ok_or("VirtualService without http routes")?
    {
        let cluster = destination_cluster(http)?;
        if !clusters.contains(&cluster) {
            clusters.push(cluster.clone());
        }
        let matches: Vec<Value> = match http.get("match").and_then(Value::as_array) {
            Some(m) if !m.is_empty() => m.clone(),
            _ => vec![json!({})],
        };
        for m in matches {
            routes.push(json!({
                "match": envoy_route_match(&m)?,
                "route": {"cluster": cluster},
            }));
        }
    }
    Ok(json!({
        "name": format!("{}.{}", d.name(), d.namespace()),
        "domains": domains_of(&hosts),
        "routes": routes,
    }))
}

/// An HTTPRoute as istiod translates it for the subset our manifests use:
/// hostnames, Exact header matches, Exact/PathPrefix path matches, one
/// Service backend per rule (`outbound|PORT||NAME.NAMESPACE.svc.cluster.local`).
fn http_route_vhost(d: &Doc, clusters: &mut Vec<String>) -> Result<Value, String> {
    let spec = d.value.get("spec").ok_or("HTTPRoute without spec")?;
    let hosts = strings(spec.get("hostnames"), "HTTPRoute hostnames")?;
    let mut routes = Vec::new();
    for rule in spec
        .get("rules")
        .and_then(Value::as_array)
        .ok_or("HTTPRoute without rules")?
    {
        let backends = rule
            .get("backendRefs")
            .and_then(Value::as_array)
            .ok_or("HTTPRoute rule without backendRefs")?;
        let [only] = backends.as_slice() else {
            return Err("only one backendRef per HTTPRoute rule is supported here".into());
        };
        if only.get("kind").is_some_and(|k| k != "Service")
            || only.get("group").is_some_and(|g| g != "")
        {
            return Err("only Service backendRefs are supported here".into());
        }
        let name = only
            .get("name")
            .and_then(Value::as_str)
            .ok_or("backendRef without name")?;
        let port = only
            .get("port")
            .and_then(Value::as_u64)
            .ok_or("backendRef without port")?;
        let ns = only
            .get("namespace")
            .and_then(Value::as_str)
            .unwrap_or(d.namespace());
        let cluster = format!("outbound|{port}||{name}.{ns}.svc.cluster.local");
        if !clusters.contains(&cluster) {
            clusters.push(cluster.clone());
        }
        let matches: Vec<Value> = match rule.get("matches").and_then(Value::as_array) {
            Some(m) if !m.is_empty() => m.clone(),
            _ => vec![json!({})],
        };
        for m in matches {
            let mut out = json!({"prefix": "/"});
            let mut headers = Vec::new();
            for (k, v) in m.as_object().ok_or("HTTPRoute match: not a map")? {
                match k.as_str() {
                    "path" => {
                        let value = v.get("value").and_then(Value::as_str).unwrap_or("/");
                        out = match v
                            .get("type")
                            .and_then(Value::as_str)
                            .unwrap_or("PathPrefix")
                        {
                            "Exact" => json!({"path": value}),
                            "PathPrefix" => {
                                json!({"path_separated_prefix": value.trim_end_matches('/')})
                            }
                            other => {
                                return Err(format!("path type {other} is not supported here"))
                            }
                        };
                        if value == "/" {
                            out = json!({"prefix": "/"});
                        }
                    }
                    "headers" => {
                        for h in v.as_array().ok_or("headers: not a list")? {
                            if h.get("type").is_some_and(|t| t != "Exact") {
                                return Err("only Exact header matches are supported here".into());
                            }
                            let name = h
                                .get("name")
                                .and_then(Value::as_str)
                                .ok_or("header match without name")?;
                            let value = h
                                .get("value")
                                .and_then(Value::as_str)
                                .ok_or("header match without value")?;
                            headers.push(json!({"name": name.to_ascii_lowercase(), "string_match": {"exact": value}}));
                        }
                    }
                    other => return Err(format!("HTTPRoute match.{other} is not supported here")),
                }
            }
            if let (false, Some(o)) = (headers.is_empty(), out.as_object_mut()) {
                o.insert("headers".to_string(), Value::Array(headers));
            }
            routes.push(json!({"match": out, "route": {"cluster": cluster}}));
        }
    }
    Ok(json!({
        "name": format!("{}.{}", d.name(), d.namespace()),
        "domains": domains_of(&hosts),
        "routes": routes,
    }))
}

fn destination_cluster(http: &Value) -> Result<String, String> {
    let routes = http
        .get("route")
        .and_then(Value::as_array)
        .ok_or("http route without destinations")?;
    let [only] = routes.as_slice() else {
        return Err("only one destination per http route is supported here".into());
    };
    let host = only
        .pointer("/destination/host")
        .and_then(Value::as_str)
        .ok_or("destination without host")?;
    let port = only
        .pointer("/destination/port/number")
        .and_then(Value::as_u64)
        .ok_or("destination without port.number")?;
    Ok(format!("outbound|{port}||{host}"))
}

fn string_match(m: &Value, what: &str) -> Result<(&'static str, String), String> {
    let obj = m.as_object().ok_or(format!("{what}: not a map"))?;
    match obj.iter().next() {
        Some((k, v)) if obj.len() == 1 && (k == "exact" || k == "prefix") => {
            let s = v.as_str().ok_or(format!("{what}.{k}: not a string"))?;
            Ok((if k == "exact" { "exact" } else { "prefix" }, s.to_string()))
        }
        _ => Err(format!("{what}: only exact or prefix is supported here")),
    }
}

fn envoy_route_match(m: &Value) -> Result<Value, String> {
    let obj = m.as_object().ok_or("match: not a map")?;
    let mut out = json!({"prefix": "/"});
    let mut headers = Vec::new();
    for (k, v) in obj {
        match k.as_str() {
            "uri" => {
                let (kind, s) = string_match(v, "uri")?;
                out = if kind == "exact" {
                    json!({"path": s})
                } else {
                    json!({"prefix": s})
                };
            }
            "headers" => {
                for (name, hm) in v.as_object().ok_or("headers: not a map")? {
                    let (kind, s) = string_match(hm, &format!("headers.{name}"))?;
                    headers.push(json!({"name": name, "string_match": {kind: s}}));
                }
            }
            "name" => {}
            other => return Err(format!("match.{other} is not supported here")),
        }
    }
    if let (false, Some(o)) = (headers.is_empty(), out.as_object_mut()) {
        o.insert("headers".to_string(), Value::Array(headers));
    }
    Ok(out)
}

/// One plugin (a `TrafficExtension` or a `WasmPlugin`) as istiod reads it:
/// the two kinds carry the same fields, TrafficExtension's Wasm ones under
/// `spec.wasm`.
#[derive(Debug, Clone, PartialEq)]
pub struct Plugin {
    /// `TrafficExtension` or `WasmPlugin`.
    pub kind: String,
    /// `metadata.name`.
    pub name: String,
    pub namespace: String,
    pub url: String,
    /// The module the image carries: the image name in `url`
    /// (`oci://REGISTRY/<image>:TAG`), which is also `dist/<image>.wasm`.
    pub image: String,
    /// The gatehouse filter this plugin runs: `pluginName` (the root id
    /// the shared module dispatches on), else the image name.
    pub filter: String,
    pub phase: Option<String>,
    pub priority: i64,
    pub fail_strategy: Option<String>,
    pub plugin_name: Option<String>,
    pub plugin_config: Value,
    pub sha256: Option<String>,
    pub image_pull_policy: Option<String>,
    pub plugin_type: Option<String>,
    /// `selector`, or Null.
    pub selector: Value,
    /// `targetRefs`, or Null.
    pub target_refs: Value,
}

impl Plugin {
    pub fn from_doc(d: &Doc) -> Result<Plugin, String> {
        let what = format!("{} {}", d.kind(), d.name());
        let spec = d
            .value
            .get("spec")
            .ok_or_else(|| format!("{what}: no spec"))?;
        let wasm = match d.kind() {
            TRAFFIC_EXTENSION => spec
                .get("wasm")
                .ok_or_else(|| format!("{what}: no spec.wasm (gatehouse is Wasm, not Lua)"))?,
            WASM_PLUGIN => spec,
            other => return Err(format!("{what}: {other} is not a plugin kind")),
        };
        let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        let url = s(wasm, "url").ok_or_else(|| format!("{what}: no url"))?;
        let image = image_name(&url)
            .ok_or_else(|| format!("{what}: cannot read the image name of {url}"))?;
        let plugin_name = s(wasm, "pluginName");
        Ok(Plugin {
            kind: d.kind().to_string(),
            name: d.name().to_string(),
            namespace: d.namespace().to_string(),
            url,
            filter: plugin_name.clone().unwrap_or_else(|| image.clone()),
            image,
            phase: s(spec, "phase"),
            priority: spec.get("priority").and_then(Value::as_i64).unwrap_or(0),
            fail_strategy: s(wasm, "failStrategy"),
            plugin_name,
            plugin_config: wasm.get("pluginConfig").cloned().unwrap_or(json!({})),
            sha256: s(wasm, "sha256"),
            image_pull_policy: s(wasm, "imagePullPolicy"),
            plugin_type: s(wasm, "type"),
            selector: spec.get("selector").cloned().unwrap_or(Value::Null),
            target_refs: spec.get("targetRefs").cloned().unwrap_or(Value::Null),
        })
    }

    /// AUTHN < AUTHZ < STATS < unset (istiod's order on a gateway).
    pub fn phase_rank(&self) -> u8 {
        match self.phase.as_deref() {
            Some("AUTHN") => 0,
            Some("AUTHZ") => 1,
            Some("STATS") => 2,
            _ => 3,
        }
    }

    /// Envoy's `failure_policy` for `failStrategy`.
    pub fn failure_policy(&self) -> &'static str {
        match self.fail_strategy.as_deref() {
            Some("FAIL_OPEN") => "FAIL_OPEN",
            Some("FAIL_RELOAD") => "FAIL_RELOAD",
            _ => "FAIL_CLOSED",
        }
    }

    /// The ECDS resource name istiod uses: `<namespace>.<name>`.
    pub fn resource_name(&self) -> String {
        format!("{}.{}", self.namespace, self.name)
    }

    /// The `TypedExtensionConfig` with the Wasm filter, `pluginConfig`
    /// replaced by `plugin_config` (for reload tests) when given.
    pub fn typed_extension_config(&self, wasm: &Path, plugin_config: Option<&str>) -> Value {
        let configuration = match plugin_config {
            Some(raw) => raw.to_string(),
            None => self.plugin_config.to_string(),
        };
        json!({
            "@type": TYPED_EXTENSION_CONFIG_TYPE_URL,
            "name": self.resource_name(),
            "typed_config": {
                "@type": WASM_TYPE_URL,
                "config": {
                    "name": self.resource_name(),
                    "root_id": self.plugin_name.clone().unwrap_or_default(),
                    "configuration": {
                        "@type": "type.googleapis.com/google.protobuf.StringValue",
                        "value": configuration,
                    },
                    "vm_config": {
                        "vm_id": "",
                        "runtime": "envoy.wasm.runtime.v8",
                        "code": {"local": {"filename": wasm.display().to_string()}},
                    },
                    "failure_policy": self.failure_policy(),
                }
            }
        })
    }

    /// The content of this plugin's ECDS file.
    pub fn ecds_file(&self, wasm: &Path, plugin_config: Option<&str>) -> Value {
        json!({"resources": [self.typed_extension_config(wasm, plugin_config)]})
    }

    /// The HTTP filter entry: discovered from `ecds_path`.
    pub fn http_filter(&self, ecds_path: &Path) -> Value {
        json!({
            "name": self.resource_name(),
            "config_discovery": {
                "config_source": {
                    "path_config_source": {"path": ecds_path.display().to_string()},
                    "resource_api_version": "V3",
                },
                "type_urls": [WASM_TYPE_URL],
            }
        })
    }
}

/// `oci://registry/path/<name>:tag` (or `@sha256:...`) → `<name>`.
pub fn image_name(url: &str) -> Option<String> {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let rest = rest.split('@').next()?;
    let last = rest.rsplit('/').next()?;
    let name = last.split(':').next()?;
    (!name.is_empty()).then(|| name.to_string())
}

/// Writes `value` to `path` through a temporary file and an atomic rename,
/// the way a config agent must update a file Envoy watches.
pub fn write_atomically(path: &Path, value: &Value) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let bytes = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// Renders the ECDS files of every plugin into `dir` (`<filter>.json`, the
/// Wasm module at `dist/<image>.wasm`) and returns the HTTP filter entries
/// in gateway order.
pub fn render_ecds(plugins: &[Plugin], dist: &Path, dir: &Path) -> std::io::Result<Vec<Value>> {
    std::fs::create_dir_all(dir)?;
    let mut filters = Vec::new();
    for p in plugins {
        let path = dir.join(format!("{}.json", p.filter));
        let wasm = dist.join(format!("{}.wasm", p.image));
        write_atomically(&path, &p.ecds_file(&wasm, None))?;
        filters.push(p.http_filter(&path));
    }
    Ok(filters)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn image_names() {
        assert_eq!(
            image_name("oci://REGISTRY/request-id:TAG").as_deref(),
            Some("request-id")
        );
        assert_eq!(
            image_name("oci://localhost:5000/a/b/host-router@sha256:ab").as_deref(),
            Some("host-router")
        );
        assert_eq!(image_name("oci://x/").as_deref(), None);
    }

    #[test]
    fn order_policy_and_route_translation() {
        let m = Manifests::from_yaml(
            "kind: WasmPlugin\nmetadata: {name: b, namespace: istio-system}\nspec: {url: oci://r/b:1, phase: AUTHZ, failStrategy: FAIL_OPEN}\n---\n\
             kind: WasmPlugin\nmetadata: {name: a, namespace: istio-system}\nspec: {url: oci://r/a:1, priority: 5, failStrategy: FAIL_RELOAD}\n---\n\
             kind: TrafficExtension\nmetadata: {name: c, namespace: istio-system}\nspec: {phase: AUTHN, priority: 1, wasm: {url: oci://r/gatehouse:1, pluginName: c}}\n---\n\
             kind: WasmPlugin\nmetadata: {name: d, namespace: istio-system}\nspec: {url: oci://r/d:1, phase: AUTHN, priority: 9}\n---\n\
             kind: VirtualService\nmetadata: {name: vs, namespace: istio-system}\nspec:\n  hosts: [h.io]\n  http:\n  - match: [{headers: {x-c: {exact: w}}, uri: {prefix: /api}}]\n    route: [{destination: {host: w.ns.svc.cluster.local, port: {number: 80}}}]\n  - route: [{destination: {host: d.ns.svc.cluster.local, port: {number: 8080}}}]\n",
        )
        .unwrap();
        let plugins = m.plugins().unwrap();
        let order: Vec<&str> = plugins.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(order, ["d", "c", "b", "a"]);
        assert_eq!(plugins[2].failure_policy(), "FAIL_OPEN");
        assert_eq!(plugins[3].failure_policy(), "FAIL_RELOAD");
        assert_eq!(plugins[0].failure_policy(), "FAIL_CLOSED");
        // A TrafficExtension's Wasm fields come from spec.wasm.
        assert_eq!(
            (plugins[1].image.as_str(), plugins[1].filter.as_str()),
            ("gatehouse", "c")
        );
        let tec = plugins[0].typed_extension_config(Path::new("/d.wasm"), None);
        assert_eq!(tec["name"], "istio-system.d");
        assert_eq!(
            tec["typed_config"]["config"]["configuration"]["value"],
            "{}"
        );
        let (rc, clusters) = m.route_config().unwrap();
        assert_eq!(
            clusters,
            [
                "outbound|80||w.ns.svc.cluster.local",
                "outbound|8080||d.ns.svc.cluster.local"
            ]
        );
        let r0 = &rc["virtual_hosts"][0]["routes"][0];
        assert_eq!(r0["match"]["prefix"], "/api");
        assert_eq!(r0["match"]["headers"][0]["string_match"]["exact"], "w");
        assert_eq!(rc["virtual_hosts"][0]["routes"][1]["match"]["prefix"], "/");
    }

    #[test]
    fn both_kinds_give_the_same_envoy_config() {
        let m = Manifests::from_yaml(
            "kind: WasmPlugin\nmetadata: {name: x, namespace: ns}\nspec: {url: oci://r/x:1, phase: AUTHN, priority: 3, failStrategy: FAIL_OPEN, pluginName: x, pluginConfig: {a: [1]}}\n",
        )
        .unwrap();
        let t = Manifests::from_yaml(
            "kind: TrafficExtension\nmetadata: {name: x, namespace: ns}\nspec: {phase: AUTHN, priority: 3, wasm: {url: oci://r/x:1, failStrategy: FAIL_OPEN, pluginName: x, pluginConfig: {a: [1]}}}\n",
        )
        .unwrap();
        let (w, t) = (&m.plugins().unwrap()[0], &t.plugins().unwrap()[0]);
        assert_eq!(w.kind, "WasmPlugin");
        assert_eq!(t.kind, "TrafficExtension");
        let f = Path::new("/x.wasm");
        assert_eq!(
            w.typed_extension_config(f, None),
            t.typed_extension_config(f, None)
        );
        assert_eq!(w.http_filter(f), t.http_filter(f));
        // A Lua TrafficExtension is not something gatehouse ships.
        let lua = Manifests::from_yaml(
            "kind: TrafficExtension\nmetadata: {name: l}\nspec: {lua: {inlineCode: x}}\n",
        )
        .unwrap();
        assert!(lua.plugins().unwrap_err().contains("no spec.wasm"));
    }

    #[test]
    fn http_routes_become_istio_clusters() {
        let m = Manifests::from_yaml(
            "kind: HTTPRoute\nmetadata: {name: r, namespace: app}\nspec:\n  hostnames: [a.io]\n  rules:\n  - matches: [{headers: [{type: Exact, name: X-C, value: w}]}]\n    backendRefs: [{name: web, port: 80}]\n  - backendRefs: [{name: api, namespace: other, port: 8080}]\n",
        )
        .unwrap();
        let (rc, clusters) = m.route_config().unwrap();
        assert_eq!(
            clusters,
            [
                "outbound|80||web.app.svc.cluster.local",
                "outbound|8080||api.other.svc.cluster.local"
            ]
        );
        let vh = &rc["virtual_hosts"][0];
        assert_eq!(vh["domains"], json!(["a.io", "a.io:*"]));
        assert_eq!(vh["routes"][0]["match"]["headers"][0]["name"], "x-c");
        assert_eq!(vh["routes"][1]["match"]["prefix"], "/");
        let two = Manifests::from_yaml(
            "kind: HTTPRoute\nmetadata: {name: r}\nspec:\n  hostnames: [a.io]\n  rules:\n  - backendRefs: [{name: a, port: 80}, {name: b, port: 80}]\n",
        )
        .unwrap();
        assert!(two.route_config().is_err(), "never silently drop a backend");
    }

    #[test]
    fn uncomment_makes_exactly_one_choice() {
        let dir = std::env::temp_dir().join(format!("gh-uncomment-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("k.yaml");
        std::fs::write(&f, "components:\n# - components/gateway-api\n").unwrap();
        uncomment(&f, "- components/gateway-api").unwrap();
        assert_eq!(
            std::fs::read_to_string(&f).unwrap(),
            "components:\n- components/gateway-api\n"
        );
        assert!(uncomment(&f, "- components/gateway-api").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
