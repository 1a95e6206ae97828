#!/usr/bin/env python3
"""Validates manifests/ and manifests-shared-module/ (run by `make
validate-manifests`, part of `make test`).

Rendered with `kubectl kustomize` (what `kubectl apply -k` sends) in all
eight variants a user chooses with one line each: TrafficExtension (Istio >=
1.30) or WasmPlugin (`- wasmplugin` under `transformers:`); selector on the
istio-ingressgateway Deployment or targetRefs to a Gateway API Gateway
(`- components/gateway-api`); per-filter images (manifests/) or the shared
module (manifests-shared-module/). The lines are uncommented in a copy,
exactly as the docs tell users to.

Schemas:
- TrafficExtension, WasmPlugin, Gateway API Gateway and HTTPRoute: the
  project's own checker written from Istio's and the Gateway API's references
  (tools/delivery/src/schema.rs, `gatehouse-delivery check`): every field,
  type, enum and CEL rule, unknown fields refused, the oneofs selector /
  targetRefs and wasm / lua. No package on our registries ships a
  TrafficExtension schema.
- WasmPlugin, Istio Gateway, VirtualService: also Istio's API models from the
  PyPI package `cloudcoil-models-istio` (pydantic models generated from
  Istio's CRDs, installed by `make setup`). A document must validate AND
  survive a round trip unchanged, so an unknown or misspelt field (which the
  models would silently drop) is an error too. That release (1.24, the newest
  for Python 3.11) predates `failStrategy: FAIL_RELOAD` (Istio 1.27): the
  model sees FAIL_CLOSE in its place, the project's checker checks the real
  value.

Checked too, in every variant:
- one plugin per filter that has an adapter (filters/*/src/filter.rs) and
  none for a filter that does not exist; `url` is
  `oci://<registry>/<filter or gatehouse>:<tag>`; pluginName is the filter;
  failStrategy set; type HTTP; the attachment the variant chose;
- the gateway order (phase, then priority) is request-id, https-redirect,
  client-id, rate-limit, host-router;
- both kinds carry the same plugins (one source: the WasmPlugins are the
  TrafficExtensions with the Wasm fields moved up, nothing else differs);
- kustomize writes the registry and tag into every url (also with a
  registry holding a port and a path), and the ConfigMap that carries them
  is not applied;
- routing: every VirtualService names a Gateway of the manifests, which
  selects the ingress gateway; every HTTPRoute's parent is the Gateway API
  Gateway the plugins target.
- rate-limit in global mode (`- components/rate-limit-global`), both kinds,
  both modules: rate-limit's pluginConfig is manifests/ratelimit/ratelimit.json
  and nothing else differs from the local-mode rendering;
- manifests/ratelimit/ (the rate-limit service of global rules, a
  separate kustomization): rendered, every document in istio-system; the
  gatehouse-ratelimit Deployment (2 replicas) mounts the generated
  ConfigMap holding ratelimit.json and is selected by its Service, whose
  port is named grpc and is the port of ratelimit.json's `global.cluster`;
  it points at the Redis Service of the same kustomization.
The pluginConfig of each plugin, and manifests/ratelimit/ratelimit.json, are
checked by the filter's own Rust parser (tools/delivery/tests/manifests.rs),
not here.

usage: validate.py ROOT KUBECTL GATEHOUSE_DELIVERY
"""
import copy
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

import yaml
from cloudcoil.models.istio.extensions.v1alpha1 import WasmPlugin
from cloudcoil.models.istio.networking.v1 import Gateway, VirtualService

MODELS = {
    ("extensions.istio.io/v1alpha1", "WasmPlugin"): WasmPlugin,
    ("networking.istio.io/v1", "Gateway"): Gateway,
    ("networking.istio.io/v1", "VirtualService"): VirtualService,
}
# Checked by the project's checker (gatehouse-delivery check).
OWN_SCHEMA = {
    ("extensions.istio.io/v1alpha1", "TrafficExtension"),
    ("extensions.istio.io/v1alpha1", "WasmPlugin"),
    ("gateway.networking.k8s.io/v1", "Gateway"),
    ("gateway.networking.k8s.io/v1", "HTTPRoute"),
}
ORDER = ["request-id", "https-redirect", "client-id", "rate-limit", "host-router"]
PHASES = {"AUTHN": 0, "AUTHZ": 1, "STATS": 2}
PLUGIN_KINDS = ("TrafficExtension", "WasmPlugin")
TARGET_REFS = [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "webapp-gateway"}]

errors = []
counts = {"docs": 0, "variants": 0}


def fail(msg):
    errors.append(msg)


def first_difference(a, b, path=""):
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            d = first_difference(a.get(k), b.get(k), f"{path}.{k}")
            if d:
                return d
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            d = first_difference(x, y, f"{path}[{i}]")
            if d:
                return d
        return None
    return None if a == b else path or "."


def validate_model(where, doc):
    key = (doc.get("apiVersion"), doc.get("kind"))
    model = MODELS.get(key)
    if model is None:
        if key not in OWN_SCHEMA:
            fail(f"{where}: no schema for {key}")
        return
    checked = copy.deepcopy(doc)
    if key[1] == "WasmPlugin" and checked.get("spec", {}).get("failStrategy") == "FAIL_RELOAD":
        checked["spec"]["failStrategy"] = "FAIL_CLOSE"  # the 1.24 model predates FAIL_RELOAD
    try:
        obj = model.model_validate(checked)
    except Exception as e:  # pydantic.ValidationError
        fail(f"{where}: {key[1]} {doc.get('metadata', {}).get('name')}: {e}")
        return
    back = obj.model_dump(by_alias=True, exclude_unset=True, mode="json")
    diff = first_difference(back, checked)
    if diff:
        fail(f"{where}: {key[1]}: field {diff} is not in Istio's schema (or has the wrong type)")


def own_check(where, text, checker):
    out = subprocess.run([checker, "check", "-"], input=text, capture_output=True, text=True)
    if out.returncode != 0:
        fail(f"{where}: project schema check failed:\n{out.stdout}{out.stderr}")


def filters_in_repo(root):
    return sorted(p.parent.parent.name for p in (root / "filters").glob("*/src/filter.rs"))


def flat(doc):
    """A plugin's spec with TrafficExtension's `wasm` fields moved up (the
    shape of a WasmPlugin's spec)."""
    spec = dict(doc.get("spec", {}))
    if doc.get("kind") == "TrafficExtension":
        wasm = spec.pop("wasm", None)
        if not isinstance(wasm, dict):
            fail(f"TrafficExtension {doc['metadata']['name']}: no spec.wasm")
            return spec
        spec.update(wasm)
    return spec


def check_plugins(where, docs, root, kind, url_of, gateway_api):
    plugins = [d for d in docs if d.get("kind") in PLUGIN_KINDS]
    by_filter = {}
    for p in plugins:
        name = p["metadata"]["name"]
        spec = flat(p)
        filt = name.removeprefix("gatehouse-")
        if p["kind"] != kind:
            fail(f"{where}: {name} is a {p['kind']}, expected {kind}")
        if filt in by_filter:
            fail(f"{where}: two plugins for {filt}")
        by_filter[filt] = spec
        if gateway_api:
            if spec.get("targetRefs") != TARGET_REFS or "selector" in spec:
                fail(f"{where}: {name}: must attach with targetRefs {TARGET_REFS}")
        elif spec.get("selector") != {"matchLabels": {"istio": "ingressgateway"}} or "targetRefs" in spec:
            fail(f"{where}: {name}: selector must be matchLabels istio: ingressgateway")
        if spec.get("url") != url_of(filt):
            fail(f"{where}: {name}: url {spec.get('url')!r}, expected {url_of(filt)!r}")
        if spec.get("pluginName") != filt:
            fail(f"{where}: {name}: pluginName must be {filt!r}")
        if spec.get("failStrategy") not in ("FAIL_CLOSE", "FAIL_OPEN", "FAIL_RELOAD"):
            fail(f"{where}: {name}: failStrategy must be chosen explicitly")
        if spec.get("type") != "HTTP":
            fail(f"{where}: {name}: type must be HTTP")
        if not isinstance(spec.get("pluginConfig"), dict):
            fail(f"{where}: {name}: pluginConfig must be an object")
    wanted = filters_in_repo(root)
    for f in wanted:
        if f not in by_filter:
            fail(f"{where}: no plugin for filter {f} (filters/{f}/src/filter.rs exists)")
    for f in by_filter:
        if f not in wanted:
            fail(f"{where}: plugin for {f}, but filters/{f}/src/filter.rs does not exist")

    def rank(f):
        spec = by_filter[f]
        return (PHASES.get(spec.get("phase"), 3), -spec.get("priority", 0), f)

    order = sorted(by_filter, key=rank)
    expected = [f for f in ORDER if f in by_filter]
    if order != expected:
        fail(f"{where}: gateway order is {order}, expected {expected}")
    return {f: s for f, s in by_filter.items()}


def check_routing(where, docs, gateway_api):
    istio_gws = {d["metadata"]["name"]: d for d in docs
                 if d.get("kind") == "Gateway" and d["apiVersion"].startswith("networking.istio.io/")}
    api_gws = {d["metadata"]["name"]: d for d in docs
               if d.get("kind") == "Gateway" and d["apiVersion"].startswith("gateway.networking.k8s.io/")}
    vss = [d for d in docs if d.get("kind") == "VirtualService"]
    routes = [d for d in docs if d.get("kind") == "HTTPRoute"]
    if gateway_api:
        if istio_gws or vss or not api_gws or not routes:
            fail(f"{where}: expected a Gateway API Gateway + HTTPRoute and no Istio Gateway/VirtualService")
        for r in routes:
            for ref in r["spec"].get("parentRefs", []):
                ns = ref.get("namespace", r["metadata"].get("namespace"))
                g = api_gws.get(ref["name"])
                if g is None or g["metadata"].get("namespace") != ns:
                    fail(f"{where}: HTTPRoute {r['metadata']['name']} names unknown Gateway {ns}/{ref['name']}")
        for g in api_gws.values():
            if g["spec"].get("gatewayClassName") != "istio":
                fail(f"{where}: Gateway {g['metadata']['name']} must have gatewayClassName istio")
            if g["metadata"].get("namespace") != "istio-system":
                fail(f"{where}: Gateway {g['metadata']['name']} must be in istio-system, with the plugins")
    else:
        if api_gws or routes or not istio_gws or not vss:
            fail(f"{where}: expected an Istio Gateway + VirtualService and no Gateway API resources")
        for g in istio_gws.values():
            if g["spec"].get("selector") != {"istio": "ingressgateway"}:
                fail(f"{where}: Gateway {g['metadata']['name']} must select istio: ingressgateway")
        for vs in vss:
            for g in vs["spec"].get("gateways", []):
                if g not in istio_gws:
                    fail(f"{where}: VirtualService {vs['metadata']['name']} names unknown Gateway {g}")


def kustomize(kubectl, d):
    out = subprocess.run([kubectl, "kustomize", str(d)], capture_output=True, text=True)
    if out.returncode != 0:
        fail(f"kubectl kustomize {d} failed: {out.stderr.strip()}")
        return "", []
    return out.stdout, [x for x in yaml.safe_load_all(out.stdout) if x]


def image_settings(kustomization_text, generator):
    kustomization = yaml.safe_load(kustomization_text)
    literals = {}
    for gen in kustomization.get("configMapGenerator", []):
        if gen.get("name") == generator:
            for lit in gen.get("literals", []):
                k, _, v = lit.partition("=")
                literals[k] = v
    return literals.get("registry"), literals.get("tag")


def uncomment(path, line):
    text = path.read_text()
    if text.count(f"\n# {line}\n") != 1:
        fail(f"{path.name}: expected exactly one line `# {line}` (the user's one-line choice)")
        return
    path.write_text(text.replace(f"\n# {line}\n", f"\n{line}\n"))


def render_variant(root, kubectl, shared, wasm_plugin, gateway_api, registry=None, tag=None,
                   rate_limit_global=False):
    """Copies the manifests, makes the variant's one-line choices, renders."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        for d in ("manifests", "manifests-shared-module"):
            shutil.copytree(root / d, tmp / d, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
        base = tmp / "manifests" / "kustomization.yaml"
        module = tmp / "manifests-shared-module" / "kustomization.yaml"
        if gateway_api:
            uncomment(base, "- components/gateway-api")
        if rate_limit_global:
            uncomment(base, "- components/rate-limit-global")
        if wasm_plugin:
            uncomment(module if shared else base, "- ../manifests/wasmplugin" if shared else "- wasmplugin")
        if registry:
            k = module if shared else base
            text = re.sub(r"registry=\S+", f"registry={registry}", k.read_text())
            k.write_text(re.sub(r"tag=\S+", f"tag={tag}", text))
        return kustomize(kubectl, tmp / ("manifests-shared-module" if shared else "manifests"))


def check_variant(root, kubectl, checker, shared, wasm_plugin, gateway_api, registry=None, tag=None,
                  rate_limit_global=False):
    kind = "WasmPlugin" if wasm_plugin else "TrafficExtension"
    where = (f"{'manifests-shared-module' if shared else 'manifests'} {kind} "
             f"{'targetRefs' if gateway_api else 'selector'}" + (f" (registry {registry}, tag {tag})" if registry else "")
             + (" rate-limit global" if rate_limit_global else ""))
    text, docs = render_variant(root, kubectl, shared, wasm_plugin, gateway_api, registry, tag,
                                rate_limit_global)
    if not docs:
        fail(f"{where}: nothing rendered")
        return {}
    counts["variants"] += 1
    counts["docs"] += len(docs)
    if not registry:
        k = root / ("manifests-shared-module" if shared else "manifests") / "kustomization.yaml"
        registry, tag = image_settings(k.read_text(), "gatehouse-module-image" if shared else "gatehouse-image")
        if not registry or not tag:
            fail(f"{k}: the image configMapGenerator needs registry= and tag=")
    own_check(where, text, checker)
    for d in docs:
        validate_model(where, d)
        if d.get("kind") == "ConfigMap":
            fail(f"{where}: the ConfigMap {d['metadata']['name']} would be applied to the cluster")
        ns = d.get("metadata", {}).get("namespace")
        expected_ns = "istioinaction" if d.get("kind") == "HTTPRoute" else "istio-system"
        if ns != expected_ns:
            fail(f"{where}: {d.get('kind')} {d['metadata']['name']} is in {ns}, expected {expected_ns}")
    url_of = (lambda f: f"oci://{registry}/gatehouse:{tag}") if shared else (lambda f: f"oci://{registry}/{f}:{tag}")
    plugins = check_plugins(where, docs, root, kind, url_of, gateway_api)
    check_routing(where, docs, gateway_api)
    return plugins


def check_ratelimit(root, kubectl):
    """manifests/ratelimit/: the service, its Redis, the one config."""
    import json
    where = "manifests/ratelimit"
    _, docs = kustomize(kubectl, root / "manifests" / "ratelimit")
    if not docs:
        return
    counts["docs"] += len(docs)
    by = {(d.get("kind"), d["metadata"]["name"]): d for d in docs}
    for d in docs:
        if d["metadata"].get("namespace") != "istio-system":
            fail(f"{where}: {d['kind']} {d['metadata']['name']} is not in istio-system")
    kinds = sorted((k, n.split("-")[0] if k == "ConfigMap" else n) for k, n in by)
    want = sorted([("ConfigMap", "gatehouse"), ("Deployment", "gatehouse-ratelimit"),
                   ("Deployment", "gatehouse-ratelimit-redis"), ("Service", "gatehouse-ratelimit"),
                   ("Service", "gatehouse-ratelimit-redis")])
    if kinds != want:
        fail(f"{where}: documents {kinds}, expected {want}")
        return
    cms = [d for d in docs if d["kind"] == "ConfigMap"]
    cm = cms[0]
    cfg = json.loads(cm["data"]["ratelimit.json"])
    if cm["data"]["ratelimit.json"] != (root / "manifests/ratelimit/ratelimit.json").read_text():
        fail(f"{where}: the ConfigMap is not ratelimit.json")
    for kind, name, svc_name in (("Deployment", "gatehouse-ratelimit", "gatehouse-ratelimit"),
                                 ("Deployment", "gatehouse-ratelimit-redis", "gatehouse-ratelimit-redis")):
        dep, svc = by[(kind, name)], by[("Service", svc_name)]
        labels = dep["spec"]["template"]["metadata"]["labels"]
        if dep["spec"]["selector"]["matchLabels"].items() - labels.items():
            fail(f"{where}: {name}: selector does not match its pod labels")
        if svc["spec"]["selector"].items() - labels.items():
            fail(f"{where}: Service {svc_name} does not select {name}")
        ports = {p["name"]: p["containerPort"] for c in dep["spec"]["template"]["spec"]["containers"]
                 for p in c.get("ports", [])}
        for p in svc["spec"]["ports"]:
            if p.get("targetPort") not in ports:
                fail(f"{where}: Service {svc_name} port {p.get('name')} targets no container port")
    dep = by[("Deployment", "gatehouse-ratelimit")]
    if dep["spec"].get("replicas") != 2:
        fail(f"{where}: gatehouse-ratelimit must run 2 replicas")
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    args = dict(a.removeprefix("--").split("=", 1) for a in c.get("args", []))
    if set(args) != {"config", "listen", "redis"}:
        fail(f"{where}: gatehouse-ratelimit args {c.get('args')}: need --config, --listen, --redis")
        return
    if not c["image"].endswith("/gatehouse-ratelimit:0.1.0"):
        fail(f"{where}: image {c['image']}")
    mounts = {m["name"]: m["mountPath"] for m in c.get("volumeMounts", [])}
    vols = {v["name"]: v.get("configMap", {}).get("name") for v in pod.get("volumes", [])}
    cfg_dir, _, cfg_file = args["config"].rpartition("/")
    vol = next((n for n, m in mounts.items() if m == cfg_dir), None)
    if vol is None or vols.get(vol) != cm["metadata"]["name"] or cfg_file not in cm["data"]:
        fail(f"{where}: --config {args['config']} is not the generated ConfigMap {cm['metadata']['name']}")
    svc = by[("Service", "gatehouse-ratelimit")]
    port = svc["spec"]["ports"][0]
    if port.get("name") != "grpc" or args["listen"] != f"0.0.0.0:{port['port']}":
        fail(f"{where}: Service port {port} must be named grpc and be the --listen port {args['listen']}")
    redis_svc = by[("Service", "gatehouse-ratelimit-redis")]
    want_redis = f"redis://gatehouse-ratelimit-redis.istio-system.svc.cluster.local:{redis_svc['spec']['ports'][0]['port']}"
    if args["redis"] != want_redis:
        fail(f"{where}: --redis {args['redis']}, expected {want_redis}")
    cluster = f"outbound|{port['port']}||gatehouse-ratelimit.istio-system.svc.cluster.local"
    globals_ = [r["global"] for r in cfg["rules"] if "global" in r]
    if not globals_ or any(g.get("cluster") != cluster for g in globals_):
        fail(f"{where}: every global rule of ratelimit.json must name the cluster {cluster}")


def check_rate_limit_global(root, kubectl, checker, shared, te, wp):
    import json
    want = json.loads((root / "manifests/ratelimit/ratelimit.json").read_text())
    for wasm_plugin, local in ((False, te), (True, wp)):
        got = check_variant(root, kubectl, checker, shared, wasm_plugin, False, rate_limit_global=True)
        where = f"{'shared' if shared else 'per-filter'} {'WasmPlugin' if wasm_plugin else 'TrafficExtension'} rate-limit global"
        if got.get("rate-limit", {}).get("pluginConfig") != want:
            fail(f"{where}: rate-limit's pluginConfig is not manifests/ratelimit/ratelimit.json "
                 "(components/rate-limit-global/kustomization.yaml)")
        if not any("global" in r for r in want.get("rules", [])):
            fail(f"{where}: manifests/ratelimit/ratelimit.json has no global rule")
        rest = {f: s for f, s in got.items() if f != "rate-limit"}
        if rest != {f: s for f, s in local.items() if f != "rate-limit"}:
            fail(f"{where}: the component changes other plugins than rate-limit")
        rl, rl_local = dict(got.get("rate-limit", {})), dict(local.get("rate-limit", {}))
        rl.pop("pluginConfig", None)
        rl_local.pop("pluginConfig", None)
        if rl != rl_local:
            fail(f"{where}: the component changes more than rate-limit's pluginConfig")


def main():
    root = pathlib.Path(sys.argv[1]).resolve()
    kubectl, checker = sys.argv[2], sys.argv[3]
    mdir = root / "manifests"
    # The sources themselves (each file kustomization.yaml lists).
    kustomization = yaml.safe_load((mdir / "kustomization.yaml").read_text())
    n_sources = 0
    for r in kustomization["resources"]:
        text = (mdir / r).read_text()
        own_check(r, text, checker)
        for d in yaml.safe_load_all(text):
            if d:
                validate_model(r, d)
                n_sources += 1
    for shared in (False, True):
        for gateway_api in (False, True):
            te = check_variant(root, kubectl, checker, shared, False, gateway_api)
            wp = check_variant(root, kubectl, checker, shared, True, gateway_api)
            # One source: the two kinds carry the same plugins.
            if te != wp:
                diff = first_difference(te, wp)
                fail(f"{'shared' if shared else 'per-filter'} {'targetRefs' if gateway_api else 'selector'}: "
                     f"TrafficExtension and WasmPlugin variants differ at {diff}")
            # The one place really is one place: another registry (with a
            # port and a path) and tag set there reach every url.
            for wasm_plugin in (False, True):
                check_variant(root, kubectl, checker, shared, wasm_plugin, gateway_api,
                              "127.0.0.1:5000/team/gatehouse", "v9.8.7-rc.1")

            # rate-limit in global mode (components/rate-limit-global): the
            # same plugins, but rate-limit's pluginConfig is
            # manifests/ratelimit/ratelimit.json, in both kinds.
            if not gateway_api:
                check_rate_limit_global(root, kubectl, checker, shared, te, wp)

    check_ratelimit(root, kubectl)

    if errors:
        for e in errors:
            print(f"validate-manifests: {e}", file=sys.stderr)
        sys.exit(1)
    print(
        f"validate-manifests: {n_sources} source documents and {counts['docs']} rendered documents in "
        f"{counts['variants']} kustomize renderings (TrafficExtension/WasmPlugin x selector/targetRefs x "
        f"per-filter/shared module x two registries, and rate-limit in global mode) valid: the project's checker "
        f"(TrafficExtension, WasmPlugin, Gateway API) and cloudcoil-models-istio (WasmPlugin, Gateway, "
        f"VirtualService); both kinds carry the same plugins; manifests/ratelimit consistent"
    )


if __name__ == "__main__":
    main()
