//! The project's own schema checker for the resources no package on our
//! registries ships a (current) schema for: Istio's `TrafficExtension`
//! (`extensions.istio.io/v1alpha1`, Istio >= 1.30), today's `WasmPlugin`
//! (the Python models `make validate-manifests` also uses stop at Istio
//! 1.24, before `failStrategy: FAIL_RELOAD`), and the Gateway API `Gateway`
//! and `HTTPRoute` (`gateway.networking.k8s.io/v1`).
//!
//! `TrafficExtension` is written from Istio's API reference (the CRD generated
//! from istio/api `extensions/v1alpha1/traffic_extension.proto`): every field,
//! its type, enum values, length and pattern limits, and the CRD's CEL rules
//! (at most one of `selector` and `targetRefs`; exactly one of `wasm` and
//! `lua`; no wildcard or empty label keys; no cross-namespace `targetRefs`;
//! `url` schemes; `vmConfig.env` `value` only with `INLINE`). The Gateway API
//! kinds are checked for the fields of the Gateway API v1 reference that a
//! gateway in front of HTTP services uses (listeners, TLS, allowed routes;
//! parent refs, hostnames, header/path matches, backend refs); a field this
//! checker does not know is refused, never skipped, like an unknown field.
//!
//! Unknown fields are errors everywhere except inside `pluginConfig`
//! (`x-kubernetes-preserve-unknown-fields`: the filter's own parser checks it).

use serde_json::{Map, Value};

type Rule = fn(&Map<String, Value>) -> Option<String>;
/// A pattern of the reference, as code: (check, how it is described).
type Pattern = (fn(&str) -> bool, &'static str);

/// One node of a schema.
enum S {
    Str {
        min: usize,
        max: Option<usize>,
        enums: &'static [&'static str],
        pattern: Option<Pattern>,
    },
    Int {
        min: i64,
        max: i64,
    },
    Obj {
        fields: Vec<(&'static str, S)>,
        required: &'static [&'static str],
        rules: Vec<Rule>,
    },
    /// A map of string keys (e.g. `matchLabels`).
    Map {
        values: Box<S>,
        max: Option<usize>,
        key: fn(&str) -> Option<String>,
    },
    Arr {
        items: Box<S>,
        min: usize,
        max: Option<usize>,
        /// `x-kubernetes-list-type: map`: items are unique by this key.
        unique_by: Option<&'static str>,
    },
    /// Any object (`x-kubernetes-preserve-unknown-fields`).
    AnyObject,
}

fn string() -> S {
    S::Str {
        min: 0,
        max: None,
        enums: &[],
        pattern: None,
    }
}

fn len(min: usize, max: usize) -> S {
    S::Str {
        min,
        max: Some(max),
        enums: &[],
        pattern: None,
    }
}

fn one_of(enums: &'static [&'static str]) -> S {
    S::Str {
        min: 0,
        max: None,
        enums,
        pattern: None,
    }
}

fn pattern(min: usize, max: usize, f: fn(&str) -> bool, what: &'static str) -> S {
    S::Str {
        min,
        max: Some(max),
        enums: &[],
        pattern: Some((f, what)),
    }
}

fn int(min: i64, max: i64) -> S {
    S::Int { min, max }
}

fn obj(fields: Vec<(&'static str, S)>, required: &'static [&'static str]) -> S {
    S::Obj {
        fields,
        required,
        rules: Vec::new(),
    }
}

fn obj_with(
    fields: Vec<(&'static str, S)>,
    required: &'static [&'static str],
    rules: Vec<Rule>,
) -> S {
    S::Obj {
        fields,
        required,
        rules,
    }
}

fn arr(items: S) -> S {
    S::Arr {
        items: Box::new(items),
        min: 0,
        max: None,
        unique_by: None,
    }
}

fn arr_max(items: S, max: usize) -> S {
    S::Arr {
        items: Box::new(items),
        min: 0,
        max: Some(max),
        unique_by: None,
    }
}

fn any_key(_: &str) -> Option<String> {
    None
}

// --- patterns of the references, as code ---------------------------------

fn is_alnum_lower(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`
fn dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.chars().all(|c| is_alnum_lower(c) || c == '-')
        && s.starts_with(is_alnum_lower)
        && s.ends_with(is_alnum_lower)
}

/// `^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
fn group_pattern(s: &str) -> bool {
    s.is_empty() || s.split('.').all(dns_label)
}

/// `^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$`
fn kind_pattern(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// `(^$|^[a-f0-9]{64}$)`
fn sha256_pattern(s: &str) -> bool {
    s.is_empty() || (s.len() == 64 && s.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')))
}

/// The CRD's rule: the scheme, if any, is one of "", http, https, file, oci.
fn url_scheme(s: &str) -> bool {
    match s.split_once("://") {
        Some((scheme, rest)) => {
            ["http", "https", "file", "oci"].contains(&scheme.to_ascii_lowercase().as_str())
                && !rest.is_empty()
        }
        None => !s.contains(char::is_whitespace),
    }
}

/// Gateway API `SectionName`: `^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`.
fn section_name(s: &str) -> bool {
    !s.is_empty() && group_pattern(s)
}

/// Gateway API `Hostname`: an optional leading `*.` then DNS labels.
fn hostname(s: &str) -> bool {
    let rest = s.strip_prefix("*.").unwrap_or(s);
    !rest.is_empty() && rest.split('.').all(dns_label)
}

fn label_key(k: &str) -> Option<String> {
    if k.is_empty() {
        Some("key must not be empty".into())
    } else if k.contains('*') {
        Some("wildcard not allowed in label key match".into())
    } else {
        None
    }
}

fn no_wildcard_value(s: &str) -> bool {
    !s.contains('*')
}

// --- the schemas ---------------------------------------------------------

fn metadata() -> S {
    obj(
        vec![
            (
                "name",
                pattern(1, 253, section_name, "a DNS subdomain name"),
            ),
            ("namespace", pattern(1, 63, dns_label, "a DNS label")),
            (
                "labels",
                S::Map {
                    values: Box::new(len(0, 63)),
                    max: None,
                    key: any_key,
                },
            ),
            (
                "annotations",
                S::Map {
                    values: Box::new(string()),
                    max: None,
                    key: any_key,
                },
            ),
        ],
        &["name"],
    )
}

fn selector() -> S {
    obj(
        vec![(
            "matchLabels",
            S::Map {
                values: Box::new(pattern(
                    0,
                    63,
                    no_wildcard_value,
                    "no wildcard (label value match)",
                )),
                max: Some(4096),
                key: label_key,
            },
        )],
        &[],
    )
}

fn policy_target_ref() -> S {
    obj_with(
        vec![
            (
                "group",
                pattern(0, 253, group_pattern, "a DNS subdomain or empty"),
            ),
            (
                "kind",
                pattern(1, 63, kind_pattern, "^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$"),
            ),
            ("name", len(1, 253)),
            ("namespace", string()),
        ],
        &["kind", "name"],
        vec![|m| match m.get("namespace").and_then(Value::as_str) {
            Some(ns) if !ns.is_empty() => {
                Some("namespace: cross namespace referencing is not currently supported".into())
            }
            _ => None,
        }],
    )
}

/// The Wasm fields: TrafficExtension's `spec.wasm`, WasmPlugin's `spec`.
fn wasm_fields() -> Vec<(&'static str, S)> {
    let env_var = obj_with(
        vec![
            ("name", len(1, 256)),
            ("value", len(0, 2048)),
            ("valueFrom", one_of(&["INLINE", "HOST"])),
        ],
        &["name"],
        vec![|m| {
            (m.get("valueFrom").and_then(Value::as_str) == Some("HOST") && m.contains_key("value"))
                .then(|| "value may only be set when valueFrom is INLINE".into())
        }],
    );
    vec![
        (
            "url",
            pattern(
                1,
                usize::MAX,
                url_scheme,
                "a url with scheme one of [http, https, file, oci]",
            ),
        ),
        (
            "sha256",
            pattern(0, 64, sha256_pattern, "(^$|^[a-f0-9]{64}$)"),
        ),
        (
            "imagePullPolicy",
            one_of(&["UNSPECIFIED_POLICY", "IfNotPresent", "Always"]),
        ),
        ("imagePullSecret", len(1, 253)),
        ("pluginConfig", S::AnyObject),
        ("pluginName", len(1, 256)),
        (
            "failStrategy",
            one_of(&["FAIL_CLOSE", "FAIL_OPEN", "FAIL_RELOAD"]),
        ),
        (
            "type",
            one_of(&["UNSPECIFIED_PLUGIN_TYPE", "HTTP", "NETWORK"]),
        ),
        ("verificationKey", string()),
        (
            "vmConfig",
            obj(
                vec![(
                    "env",
                    S::Arr {
                        items: Box::new(env_var),
                        min: 0,
                        max: Some(256),
                        unique_by: Some("name"),
                    },
                )],
                &[],
            ),
        ),
    ]
}

fn traffic_selector() -> S {
    obj(
        vec![
            (
                "mode",
                one_of(&["UNDEFINED", "CLIENT", "SERVER", "CLIENT_AND_SERVER"]),
            ),
            (
                "ports",
                S::Arr {
                    items: Box::new(obj(vec![("number", int(1, 65535))], &["number"])),
                    min: 0,
                    max: None,
                    unique_by: Some("number"),
                },
            ),
        ],
        &[],
    )
}

fn selector_xor_target_refs(m: &Map<String, Value>) -> Option<String> {
    let n = ["selector", "targetRefs", "targetRef"]
        .iter()
        .filter(|k| m.contains_key(**k))
        .count();
    (n > 1).then(|| "only one of targetRefs or selector can be set".into())
}

/// WasmPlugin (Istio's current API: FAIL_RELOAD since 1.27, targetRefs since 1.22).
fn wasm_plugin_spec() -> S {
    let mut fields = wasm_fields();
    fields.extend([
        ("selector", selector()),
        ("targetRef", policy_target_ref()),
        ("targetRefs", arr_max(policy_target_ref(), 16)),
        (
            "phase",
            one_of(&["UNSPECIFIED_PHASE", "AUTHN", "AUTHZ", "STATS"]),
        ),
        ("priority", int(i64::from(i32::MIN), i64::from(i32::MAX))),
        ("match", arr(traffic_selector())),
    ]);
    obj_with(fields, &["url"], vec![selector_xor_target_refs])
}

fn traffic_extension_spec() -> S {
    let wasm = obj(wasm_fields(), &["url"]);
    obj_with(
        vec![
            ("selector", selector()),
            ("targetRefs", arr_max(policy_target_ref(), 16)),
            ("phase", one_of(&["UNSPECIFIED", "AUTHN", "AUTHZ", "STATS"])),
            ("priority", int(i64::from(i32::MIN), i64::from(i32::MAX))),
            ("match", arr(traffic_selector())),
            ("wasm", wasm),
            (
                "lua",
                obj(vec![("inlineCode", len(1, 65536))], &["inlineCode"]),
            ),
        ],
        &[],
        vec![selector_xor_target_refs, |m| {
            (m.contains_key("wasm") == m.contains_key("lua"))
                .then(|| "exactly one of wasm or lua must be set".into())
        }],
    )
}

fn gateway_spec() -> S {
    let secret_ref = obj(
        vec![
            (
                "group",
                pattern(0, 253, group_pattern, "a DNS subdomain or empty"),
            ),
            ("kind", pattern(1, 63, kind_pattern, "a kind")),
            ("name", len(1, 253)),
            ("namespace", pattern(1, 63, dns_label, "a DNS label")),
        ],
        &["name"],
    );
    let listener = obj(
        vec![
            ("name", pattern(1, 253, section_name, "a section name")),
            (
                "hostname",
                pattern(1, 253, hostname, "a hostname, optionally *.-prefixed"),
            ),
            ("port", int(1, 65535)),
            (
                "protocol",
                pattern(1, 255, kind_pattern, "a protocol name (HTTP, HTTPS, ...)"),
            ),
            (
                "tls",
                obj(
                    vec![
                        ("mode", one_of(&["Terminate", "Passthrough"])),
                        ("certificateRefs", arr_max(secret_ref, 64)),
                    ],
                    &[],
                ),
            ),
            (
                "allowedRoutes",
                obj(
                    vec![
                        (
                            "namespaces",
                            obj(
                                vec![
                                    ("from", one_of(&["All", "Same", "Selector", "None"])),
                                    ("selector", selector()),
                                ],
                                &[],
                            ),
                        ),
                        (
                            "kinds",
                            arr_max(
                                obj(
                                    vec![
                                        (
                                            "group",
                                            pattern(
                                                0,
                                                253,
                                                group_pattern,
                                                "a DNS subdomain or empty",
                                            ),
                                        ),
                                        ("kind", pattern(1, 63, kind_pattern, "a kind")),
                                    ],
                                    &["kind"],
                                ),
                                8,
                            ),
                        ),
                    ],
                    &[],
                ),
            ),
        ],
        &["name", "port", "protocol"],
    );
    obj(
        vec![
            ("gatewayClassName", len(1, 253)),
            (
                "listeners",
                S::Arr {
                    items: Box::new(listener),
                    min: 1,
                    max: Some(64),
                    unique_by: Some("name"),
                },
            ),
        ],
        &["gatewayClassName", "listeners"],
    )
}

fn http_route_spec() -> S {
    let parent_ref = obj(
        vec![
            (
                "group",
                pattern(0, 253, group_pattern, "a DNS subdomain or empty"),
            ),
            ("kind", pattern(1, 63, kind_pattern, "a kind")),
            ("namespace", pattern(1, 63, dns_label, "a DNS label")),
            ("name", len(1, 253)),
            (
                "sectionName",
                pattern(1, 253, section_name, "a section name"),
            ),
            ("port", int(1, 65535)),
        ],
        &["name"],
    );
    let header_match = obj(
        vec![
            ("type", one_of(&["Exact", "RegularExpression"])),
            ("name", len(1, 256)),
            ("value", len(0, 4096)),
        ],
        &["name", "value"],
    );
    let path_match = obj(
        vec![
            (
                "type",
                one_of(&["Exact", "PathPrefix", "RegularExpression"]),
            ),
            ("value", len(0, 1024)),
        ],
        &[],
    );
    let route_match = obj(
        vec![
            ("path", path_match),
            ("headers", arr_max(header_match, 16)),
            (
                "method",
                one_of(&[
                    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
                ]),
            ),
        ],
        &[],
    );
    let backend_ref = obj(
        vec![
            (
                "group",
                pattern(0, 253, group_pattern, "a DNS subdomain or empty"),
            ),
            ("kind", pattern(1, 63, kind_pattern, "a kind")),
            ("name", len(1, 253)),
            ("namespace", pattern(1, 63, dns_label, "a DNS label")),
            ("port", int(1, 65535)),
            ("weight", int(0, 1_000_000)),
        ],
        &["name"],
    );
    let rule = obj(
        vec![
            ("name", pattern(1, 253, section_name, "a section name")),
            ("matches", arr_max(route_match, 64)),
            ("backendRefs", arr_max(backend_ref, 16)),
        ],
        &[],
    );
    obj(
        vec![
            ("parentRefs", arr_max(parent_ref, 32)),
            (
                "hostnames",
                arr_max(pattern(1, 253, hostname, "a hostname"), 16),
            ),
            ("rules", arr_max(rule, 16)),
        ],
        &[],
    )
}

/// The schema of a document this checker knows, by apiVersion and kind.
fn schema_of(api_version: &str, kind: &str) -> Option<S> {
    let spec = match (api_version, kind) {
        ("extensions.istio.io/v1alpha1", "TrafficExtension") => traffic_extension_spec(),
        ("extensions.istio.io/v1alpha1", "WasmPlugin") => wasm_plugin_spec(),
        ("gateway.networking.k8s.io/v1", "Gateway") => gateway_spec(),
        ("gateway.networking.k8s.io/v1", "HTTPRoute") => http_route_spec(),
        _ => return None,
    };
    Some(obj(
        vec![
            ("apiVersion", string()),
            ("kind", string()),
            ("metadata", metadata()),
            ("spec", spec),
        ],
        &["apiVersion", "kind", "metadata", "spec"],
    ))
}

/// Whether this checker has a schema for `doc`'s apiVersion and kind.
pub fn knows(doc: &Value) -> bool {
    let s = |k: &str| doc.get(k).and_then(Value::as_str).unwrap_or("");
    schema_of(s("apiVersion"), s("kind")).is_some()
}

/// Checks `doc`; `None` when the kind is not one this checker knows,
/// otherwise every error found (empty: valid).
pub fn check(doc: &Value) -> Option<Vec<String>> {
    let s = |k: &str| doc.get(k).and_then(Value::as_str).unwrap_or("");
    let schema = schema_of(s("apiVersion"), s("kind"))?;
    let mut errors = Vec::new();
    walk(&schema, doc, "", &mut errors);
    Some(errors)
}

fn at(path: &str, k: &str) -> String {
    if path.is_empty() {
        k.to_string()
    } else {
        format!("{path}.{k}")
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn walk(s: &S, v: &Value, path: &str, errors: &mut Vec<String>) {
    let shown = if path.is_empty() { "." } else { path };
    match s {
        S::Str {
            min,
            max,
            enums,
            pattern,
        } => {
            let Some(x) = v.as_str() else {
                errors.push(format!("{shown}: must be a string, not {}", type_name(v)));
                return;
            };
            let n = x.chars().count();
            if n < *min {
                errors.push(format!("{shown}: must be at least {min} characters"));
            }
            if let Some(max) = max {
                if n > *max {
                    errors.push(format!("{shown}: must be at most {max} characters"));
                }
            }
            if !enums.is_empty() && !enums.contains(&x) {
                errors.push(format!("{shown}: {x:?} is not one of {}", enums.join(", ")));
            }
            if let Some((f, what)) = pattern {
                if !f(x) {
                    errors.push(format!("{shown}: {x:?} must be {what}"));
                }
            }
        }
        S::Int { min, max } => match v.as_i64() {
            Some(n) if n < *min || n > *max => {
                errors.push(format!("{shown}: {n} is out of range {min}..={max}"))
            }
            Some(_) => {}
            None => errors.push(format!("{shown}: must be an integer, not {}", type_name(v))),
        },
        S::AnyObject => {
            if !v.is_object() {
                errors.push(format!("{shown}: must be an object, not {}", type_name(v)));
            }
        }
        S::Map { values, max, key } => {
            let Some(m) = v.as_object() else {
                errors.push(format!("{shown}: must be an object, not {}", type_name(v)));
                return;
            };
            if let Some(max) = max {
                if m.len() > *max {
                    errors.push(format!("{shown}: at most {max} entries"));
                }
            }
            for (k, x) in m {
                if let Some(e) = key(k) {
                    errors.push(format!("{shown}: key {k:?}: {e}"));
                }
                walk(values, x, &at(path, k), errors);
            }
        }
        S::Arr {
            items,
            min,
            max,
            unique_by,
        } => {
            let Some(a) = v.as_array() else {
                errors.push(format!("{shown}: must be a list, not {}", type_name(v)));
                return;
            };
            if a.len() < *min {
                errors.push(format!("{shown}: needs at least {min} items"));
            }
            if let Some(max) = max {
                if a.len() > *max {
                    errors.push(format!("{shown}: at most {max} items"));
                }
            }
            let mut seen: Vec<&Value> = Vec::new();
            for (i, x) in a.iter().enumerate() {
                walk(items, x, &format!("{path}[{i}]"), errors);
                if let Some(k) = unique_by {
                    if let Some(key) = x.get(*k) {
                        if seen.contains(&key) {
                            errors.push(format!("{path}[{i}]: duplicate {k} {key}"));
                        }
                        seen.push(key);
                    }
                }
            }
        }
        S::Obj {
            fields,
            required,
            rules,
        } => {
            let Some(m) = v.as_object() else {
                errors.push(format!("{shown}: must be an object, not {}", type_name(v)));
                return;
            };
            for r in required.iter() {
                if !m.contains_key(*r) {
                    errors.push(format!("{}: required field is missing", at(path, r)));
                }
            }
            for (k, x) in m {
                match fields.iter().find(|(name, _)| name == k) {
                    Some((_, fs)) => walk(fs, x, &at(path, k), errors),
                    None => errors.push(format!(
                        "{}: unknown field (known: {})",
                        at(path, k),
                        fields
                            .iter()
                            .map(|(n, _)| *n)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )),
                }
            }
            for rule in rules {
                if let Some(e) = rule(m) {
                    errors.push(format!("{shown}: {e}"));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn te() -> Value {
        json!({
            "apiVersion": "extensions.istio.io/v1alpha1",
            "kind": "TrafficExtension",
            "metadata": {"name": "gatehouse-x", "namespace": "istio-system", "labels": {"a": "b"}},
            "spec": {
                "selector": {"matchLabels": {"istio": "ingressgateway"}},
                "phase": "AUTHN",
                "priority": 10,
                "match": [{"mode": "CLIENT", "ports": [{"number": 80}, {"number": 443}]}],
                "wasm": {
                    "url": "oci://ghcr.io/a/x:1",
                    "sha256": "",
                    "imagePullPolicy": "IfNotPresent",
                    "pluginName": "x",
                    "failStrategy": "FAIL_RELOAD",
                    "type": "HTTP",
                    "vmConfig": {"env": [{"name": "A", "value": "1"}, {"name": "B", "valueFrom": "HOST"}]},
                    "pluginConfig": {"anything": {"goes": [1, 2]}},
                }
            }
        })
    }

    fn errors_of(doc: &Value) -> Vec<String> {
        check(doc).expect("a kind the checker knows")
    }

    /// Sets `pointer` in a copy of `doc` (creating the last key).
    fn with(doc: &Value, pointer: &str, v: Value) -> Value {
        let mut d = doc.clone();
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        d.pointer_mut(parent)
            .unwrap()
            .as_object_mut()
            .unwrap()
            .insert(key.to_string(), v);
        d
    }

    fn without(doc: &Value, pointer: &str) -> Value {
        let mut d = doc.clone();
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        d.pointer_mut(parent)
            .unwrap()
            .as_object_mut()
            .unwrap()
            .remove(key);
        d
    }

    fn refused(doc: &Value, expected: &str) {
        let e = errors_of(doc);
        assert!(
            e.iter().any(|x| x.contains(expected)),
            "expected an error containing {expected:?}, got {e:?}"
        );
    }

    #[test]
    fn a_valid_traffic_extension_passes() {
        assert_eq!(errors_of(&te()), Vec::<String>::new());
        let lua = with(
            &without(&te(), "/spec/wasm"),
            "/spec/lua",
            json!({"inlineCode": "function envoy_on_request(h) end"}),
        );
        assert_eq!(errors_of(&lua), Vec::<String>::new());
        let refs = with(
            &without(&te(), "/spec/selector"),
            "/spec/targetRefs",
            json!([{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw"}]),
        );
        assert_eq!(errors_of(&refs), Vec::<String>::new());
    }

    #[test]
    fn unknown_fields_are_refused_at_every_level() {
        refused(
            &with(&te(), "/spec/url", json!("oci://x")),
            "spec.url: unknown field",
        );
        refused(
            &with(&te(), "/spec/wasm/failStrategyy", json!("FAIL_OPEN")),
            "spec.wasm.failStrategyy: unknown field",
        );
        refused(
            &with(&te(), "/spec/selector/matchExpressions", json!([])),
            "spec.selector.matchExpressions: unknown field",
        );
        refused(
            &with(&te(), "/metadata/uid", json!("1")),
            "metadata.uid: unknown field",
        );
        refused(&with(&te(), "/status", json!({})), "status: unknown field");
        // pluginConfig keeps unknown fields (the filter's parser checks it).
        assert!(errors_of(&with(&te(), "/spec/wasm/pluginConfig/zzz", json!(1))).is_empty());
    }

    #[test]
    fn enums_types_and_limits_are_checked() {
        refused(
            &with(&te(), "/spec/wasm/failStrategy", json!("FAIL_CLOSED")),
            "is not one of FAIL_CLOSE, FAIL_OPEN, FAIL_RELOAD",
        );
        refused(
            &with(&te(), "/spec/phase", json!("AUTHORIZATION")),
            "spec.phase",
        );
        refused(
            &with(&te(), "/spec/wasm/type", json!("TCP")),
            "spec.wasm.type",
        );
        refused(
            &with(&te(), "/spec/wasm/imagePullPolicy", json!("Never")),
            "spec.wasm.imagePullPolicy",
        );
        refused(
            &with(&te(), "/spec/priority", json!("10")),
            "spec.priority: must be an integer",
        );
        refused(
            &with(&te(), "/spec/priority", json!(1_i64 << 40)),
            "out of range",
        );
        refused(
            &with(&te(), "/spec/wasm/sha256", json!("ABC")),
            "spec.wasm.sha256",
        );
        refused(
            &with(&te(), "/spec/wasm/sha256", json!("a".repeat(63))),
            "spec.wasm.sha256",
        );
        assert!(errors_of(&with(&te(), "/spec/wasm/sha256", json!("a".repeat(64)))).is_empty());
        refused(
            &with(&te(), "/spec/wasm/url", json!("ftp://x/y")),
            "spec.wasm.url",
        );
        refused(
            &with(&te(), "/spec/wasm/url", json!("")),
            "spec.wasm.url: must be at least 1",
        );
        refused(
            &with(&te(), "/spec/wasm/pluginName", json!("")),
            "spec.wasm.pluginName",
        );
        refused(
            &with(&te(), "/spec/wasm/pluginConfig", json!("{}")),
            "spec.wasm.pluginConfig: must be an object",
        );
        refused(
            &with(&te(), "/spec/match", json!([{"ports": [{"number": 0}]}])),
            "spec.match[0].ports[0].number",
        );
        refused(
            &with(
                &te(),
                "/spec/match",
                json!([{"ports": [{"number": 80}, {"number": 80}]}]),
            ),
            "duplicate number",
        );
        refused(
            &with(&te(), "/spec/match", json!([{"mode": "INBOUND"}])),
            "spec.match[0].mode",
        );
        refused(
            &with(
                &te(),
                "/spec/selector/matchLabels",
                json!({"istio": "ingress*"}),
            ),
            "no wildcard",
        );
        refused(
            &with(&te(), "/spec/selector/matchLabels", json!({"": "x"})),
            "key must not be empty",
        );
        refused(
            &without(&te(), "/spec/wasm/url"),
            "spec.wasm.url: required field is missing",
        );
        refused(
            &without(&te(), "/metadata/name"),
            "metadata.name: required field is missing",
        );
        refused(&without(&te(), "/spec"), "spec: required field is missing");
        refused(
            &with(
                &te(),
                "/spec/wasm/vmConfig",
                json!({"env": [{"name": "A", "value": "1", "valueFrom": "HOST"}]}),
            ),
            "value may only be set when valueFrom is INLINE",
        );
        refused(
            &with(
                &te(),
                "/spec/wasm/vmConfig",
                json!({"env": [{"value": "1"}]}),
            ),
            "env[0].name: required",
        );
        refused(
            &with(&te(), "/spec/lua", json!({"inlineCode": ""})),
            "spec.lua.inlineCode",
        );
    }

    #[test]
    fn the_oneofs_are_enforced() {
        let both = with(
            &te(),
            "/spec/targetRefs",
            json!([{"kind": "Gateway", "name": "gw"}]),
        );
        refused(&both, "only one of targetRefs or selector can be set");
        refused(
            &with(&te(), "/spec/lua", json!({"inlineCode": "x"})),
            "exactly one of wasm or lua must be set",
        );
        refused(
            &without(&te(), "/spec/wasm"),
            "exactly one of wasm or lua must be set",
        );
        let cross = with(
            &without(&te(), "/spec/selector"),
            "/spec/targetRefs",
            json!([{"kind": "Gateway", "name": "gw", "namespace": "other"}]),
        );
        refused(
            &cross,
            "cross namespace referencing is not currently supported",
        );
        let bad_kind = with(
            &without(&te(), "/spec/selector"),
            "/spec/targetRefs",
            json!([{"kind": "1Gateway", "name": "gw"}]),
        );
        refused(&bad_kind, "spec.targetRefs[0].kind");
        let bad_group = with(
            &without(&te(), "/spec/selector"),
            "/spec/targetRefs",
            json!([{"group": "Gateway.Networking", "kind": "Gateway", "name": "gw"}]),
        );
        refused(&bad_group, "spec.targetRefs[0].group");
        let too_many: Vec<Value> = (0..17)
            .map(|i| json!({"kind": "Gateway", "name": format!("g{i}")}))
            .collect();
        refused(
            &with(
                &without(&te(), "/spec/selector"),
                "/spec/targetRefs",
                json!(too_many),
            ),
            "at most 16 items",
        );
    }

    #[test]
    fn wasm_plugins_are_checked_too() {
        let wp = json!({
            "apiVersion": "extensions.istio.io/v1alpha1",
            "kind": "WasmPlugin",
            "metadata": {"name": "x", "namespace": "istio-system"},
            "spec": {"selector": {"matchLabels": {"istio": "ingressgateway"}}, "url": "oci://r/x:1",
                     "phase": "AUTHN", "priority": 5, "failStrategy": "FAIL_RELOAD", "pluginName": "x",
                     "pluginConfig": {"a": 1}, "type": "HTTP", "sha256": ""}
        });
        assert_eq!(errors_of(&wp), Vec::<String>::new());
        refused(
            &with(&wp, "/spec/wasm", json!({})),
            "spec.wasm: unknown field",
        );
        refused(
            &with(
                &wp,
                "/spec/targetRefs",
                json!([{"kind": "Gateway", "name": "g"}]),
            ),
            "only one of targetRefs or selector",
        );
        refused(
            &with(&wp, "/spec/phase", json!("UNSPECIFIED")),
            "spec.phase",
        );
        refused(&without(&wp, "/spec/url"), "spec.url: required");
    }

    #[test]
    fn gateway_api_kinds_are_checked() {
        let gw = json!({
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "Gateway",
            "metadata": {"name": "gw", "namespace": "istio-system"},
            "spec": {"gatewayClassName": "istio", "listeners": [
                {"name": "http", "port": 80, "protocol": "HTTP", "hostname": "*.example.io",
                 "allowedRoutes": {"namespaces": {"from": "Selector", "selector": {"matchLabels": {"a": "b"}}}}},
                {"name": "https", "port": 443, "protocol": "HTTPS",
                 "tls": {"mode": "Terminate", "certificateRefs": [{"kind": "Secret", "name": "c"}]}},
            ]}
        });
        assert_eq!(errors_of(&gw), Vec::<String>::new());
        refused(&with(&gw, "/spec/listeners", json!([])), "at least 1 items");
        refused(
            &with(&gw, "/spec/addresses", json!([])),
            "spec.addresses: unknown field",
        );
        refused(
            &without(&gw, "/spec/gatewayClassName"),
            "gatewayClassName: required",
        );
        let mut bad = gw.clone();
        bad["spec"]["listeners"][1]["tls"]["mode"] = json!("Terminating");
        refused(&bad, "spec.listeners[1].tls.mode");
        let mut dup = gw.clone();
        dup["spec"]["listeners"][1]["name"] = json!("http");
        refused(&dup, "duplicate name");

        let route = json!({
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": "r", "namespace": "app"},
            "spec": {
                "parentRefs": [{"name": "gw", "namespace": "istio-system"}],
                "hostnames": ["a.example.io"],
                "rules": [{"matches": [{"headers": [{"type": "Exact", "name": "x", "value": "y"}], "path": {"type": "PathPrefix", "value": "/"}}],
                           "backendRefs": [{"name": "svc", "port": 80}]}]
            }
        });
        assert_eq!(errors_of(&route), Vec::<String>::new());
        let mut bad = route.clone();
        bad["spec"]["rules"][0]["matches"][0]["headers"][0]["type"] = json!("Prefix");
        refused(&bad, "headers[0].type");
        let mut bad = route.clone();
        bad["spec"]["rules"][0]["backendRefs"][0]["port"] = json!(70000);
        refused(&bad, "backendRefs[0].port");
        refused(
            &with(&route, "/spec/hostnames", json!(["Not_A_Host"])),
            "spec.hostnames[0]",
        );
        assert!(check(&json!({"apiVersion": "v1", "kind": "ConfigMap"})).is_none());
    }
}
