//! What istiod makes of our manifests, for a plain Envoy.
//!
//! [`Manifests::load`] reads `manifests/kustomization.yaml` and every
//! resource it lists. From the `WasmPlugin`s it renders what istiod sends a
//! gateway (see FIELD-NOTES "Istio WasmPlugin"): one HTTP filter per plugin
//! that is discovered through ECDS (`config_discovery`), in phase/priority
//! order, and for each one a `TypedExtensionConfig` holding the Wasm filter
//! with `pluginConfig` as a JSON `google.protobuf.StringValue`, the V8
//! runtime, an empty `vm_id` and `failure_policy` from `failStrategy`.
//! istiod sends these over ADS; here they go into files
//! (`path_config_source`), which Envoy watches and reloads on an atomic
//! rename. The OCI `url` becomes a local file, as the Istio agent does
//! after pulling the image.
//!
//! The `VirtualService`s become an Envoy route configuration with Istio's
//! cluster names (`outbound|PORT||HOST`), for the subset of the API our
//! manifests use (exact/prefix URI and header matches, one destination per
//! route); anything else is an error, never silently dropped.

use serde_json::{json, Value};
use std::path::{Path, PathBuf};

pub const WASM_TYPE_URL: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
pub const TYPED_EXTENSION_CONFIG_TYPE_URL: &str =
    "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig";

/// One Kubernetes document from a manifest file.
#[derive(Debug, Clone)]
pub struct Doc {
    pub file: PathBuf,
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
}

/// The manifests as kustomize would read them (the listed resources).
#[derive(Debug, Clone)]
pub struct Manifests {
    pub dir: PathBuf,
    pub kustomization: Value,
    pub docs: Vec<Doc>,
}

/// Parses every YAML document of `text` into JSON values.
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

fn read_yaml(path: &Path) -> Result<Vec<Value>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse_yaml_docs(&text).map_err(|e| format!("{}: {e}", path.display()))
}

impl Manifests {
    /// Reads `dir/kustomization.yaml` and the resources it lists.
    pub fn load(dir: &Path) -> Result<Manifests, String> {
        let kustomization = read_yaml(&dir.join("kustomization.yaml"))?
            .into_iter()
            .next()
            .ok_or("kustomization.yaml is empty")?;
        let resources = kustomization
            .get("resources")
            .and_then(Value::as_array)
            .ok_or("kustomization.yaml has no resources list")?;
        let mut docs = Vec::new();
        for r in resources {
            let file = dir.join(r.as_str().ok_or("a resource is not a string")?);
            for value in read_yaml(&file)? {
                docs.push(Doc {
                    file: file.clone(),
                    value,
                });
            }
        }
        Ok(Manifests {
            dir: dir.to_path_buf(),
            kustomization,
            docs,
        })
    }

    /// The namespace kustomize puts every resource in.
    pub fn namespace(&self) -> String {
        self.kustomization
            .get("namespace")
            .and_then(Value::as_str)
            .unwrap_or("default")
            .to_string()
    }

    pub fn of_kind(&self, kind: &str) -> Vec<&Doc> {
        self.docs.iter().filter(|d| d.kind() == kind).collect()
    }

    /// The WasmPlugins in the order the gateway runs them.
    pub fn wasm_plugins(&self) -> Result<Vec<WasmPlugin>, String> {
        let mut out = Vec::new();
        for d in self.of_kind("WasmPlugin") {
            out.push(WasmPlugin::from_doc(d, &self.namespace())?);
        }
        out.sort_by(|a, b| {
            (a.phase_rank(), -a.priority, &a.name).cmp(&(b.phase_rank(), -b.priority, &b.name))
        });
        Ok(out)
    }

    /// The route configuration istiod would give the gateway for the
    /// VirtualServices, and the Istio cluster names it routes to.
    pub fn route_config(&self) -> Result<(Value, Vec<String>), String> {
        let mut vhosts = Vec::new();
        let mut clusters: Vec<String> = Vec::new();
        for d in self.of_kind("VirtualService") {
            let spec = d.value.get("spec").ok_or("VirtualService without spec")?;
            let hosts: Vec<String> = spec
                .get("hosts")
                .and_then(Value::as_array)
                .ok_or("VirtualService without hosts")?
                .iter()
                .filter_map(|h| h.as_str().map(str::to_string))
                .collect();
            let mut domains = Vec::new();
            for h in &hosts {
                domains.push(h.clone());
                domains.push(format!("{h}:*"));
            }
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
            vhosts.push(json!({
                "name": format!("{}.{}", d.name(), self.namespace()),
                "domains": domains,
                "routes": routes,
            }));
        }
        Ok((
            json!({"name": "http.80", "virtual_hosts": vhosts}),
            clusters,
        ))
    }
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

/// One `WasmPlugin` as istiod reads it.
#[derive(Debug, Clone)]
pub struct WasmPlugin {
    /// `metadata.name`.
    pub name: String,
    pub namespace: String,
    pub url: String,
    /// The filter this image carries: the image name in `url`
    /// (`oci://REGISTRY/<filter>:TAG`), which is also `dist/<filter>.wasm`.
    pub filter: String,
    pub phase: Option<String>,
    pub priority: i64,
    pub fail_strategy: Option<String>,
    pub plugin_name: Option<String>,
    pub plugin_config: Value,
    pub selector: Value,
}

impl WasmPlugin {
    pub fn from_doc(d: &Doc, default_namespace: &str) -> Result<WasmPlugin, String> {
        let spec = d
            .value
            .get("spec")
            .ok_or_else(|| format!("{}: WasmPlugin without spec", d.file.display()))?;
        let s = |k: &str| spec.get(k).and_then(Value::as_str).map(str::to_string);
        let url = s("url").ok_or_else(|| format!("{}: no spec.url", d.file.display()))?;
        let filter = image_name(&url)
            .ok_or_else(|| format!("{}: cannot read the image name of {url}", d.file.display()))?;
        Ok(WasmPlugin {
            name: d.name().to_string(),
            namespace: d
                .value
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or(default_namespace)
                .to_string(),
            url,
            filter,
            phase: s("phase"),
            priority: spec.get("priority").and_then(Value::as_i64).unwrap_or(0),
            fail_strategy: s("failStrategy"),
            plugin_name: s("pluginName"),
            plugin_config: spec.get("pluginConfig").cloned().unwrap_or(json!({})),
            selector: spec.get("selector").cloned().unwrap_or(Value::Null),
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
/// Wasm module at `dist/<filter>.wasm`) and returns the HTTP filter entries
/// in gateway order.
pub fn render_ecds(plugins: &[WasmPlugin], dist: &Path, dir: &Path) -> std::io::Result<Vec<Value>> {
    std::fs::create_dir_all(dir)?;
    let mut filters = Vec::new();
    for p in plugins {
        let path = dir.join(format!("{}.json", p.filter));
        let wasm = dist.join(format!("{}.wasm", p.filter));
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
        let docs = parse_yaml_docs(
            "kind: WasmPlugin\nmetadata: {name: b}\nspec: {url: oci://r/b:1, phase: AUTHZ, failStrategy: FAIL_OPEN}\n---\n\
             kind: WasmPlugin\nmetadata: {name: a}\nspec: {url: oci://r/a:1, priority: 5}\n---\n\
             kind: WasmPlugin\nmetadata: {name: c}\nspec: {url: oci://r/c:1, phase: AUTHN, priority: 1}\n---\n\
             kind: WasmPlugin\nmetadata: {name: d}\nspec: {url: oci://r/d:1, phase: AUTHN, priority: 9}\n---\n\
             kind: VirtualService\nmetadata: {name: vs}\nspec:\n  hosts: [h.io]\n  http:\n  - match: [{headers: {x-c: {exact: w}}, uri: {prefix: /api}}]\n    route: [{destination: {host: w.ns.svc.cluster.local, port: {number: 80}}}]\n  - route: [{destination: {host: d.ns.svc.cluster.local, port: {number: 8080}}}]\n",
        )
        .unwrap();
        let m = Manifests {
            dir: PathBuf::from("."),
            kustomization: json!({"namespace": "istio-system"}),
            docs: docs
                .into_iter()
                .map(|value| Doc {
                    file: PathBuf::from("x.yaml"),
                    value,
                })
                .collect(),
        };
        let order: Vec<String> = m
            .wasm_plugins()
            .unwrap()
            .iter()
            .map(|p| p.name.clone())
            .collect();
        assert_eq!(order, ["d", "c", "b", "a"]);
        let plugins = m.wasm_plugins().unwrap();
        assert_eq!(plugins[2].failure_policy(), "FAIL_OPEN");
        assert_eq!(plugins[0].failure_policy(), "FAIL_CLOSED");
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
}
