#!/usr/bin/env python3
"""Validates manifests/ (run by `make validate-manifests`, part of `make test`).

Schema: Istio's own API models from the PyPI package `cloudcoil-models-istio`
(pydantic models generated from Istio's CRDs), installed by `make setup`. A
document must validate AND survive a round trip unchanged, so an unknown or
misspelt field (which the models would silently drop) is an error too.

Checked, for the files listed in kustomization.yaml and for the output of
`kubectl kustomize` (what `kubectl apply -k` sends):
- every WasmPlugin, Gateway and VirtualService against the schema;
- one WasmPlugin per filter that has an adapter (filters/*/src/filter.rs) and
  none for a filter that does not exist; selector `istio: ingressgateway`;
  `url` is `oci://REGISTRY/<filter>:TAG`; failStrategy set; type HTTP;
- the gateway order (phase, then priority) is request-id, https-redirect,
  client-id, rate-limit, host-router;
- kustomize writes the registry and tag from the kustomization into every url
  (also with a registry holding a port and a path), and the ConfigMap that
  carries them is not applied;
- every VirtualService names a Gateway of the manifests, which selects the
  ingress gateway.
The pluginConfig of each WasmPlugin is checked by the filter's own Rust
parser (tools/delivery/tests/manifests.rs), not here.

usage: validate.py MANIFEST_DIR KUBECTL
"""
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
ORDER = ["request-id", "https-redirect", "client-id", "rate-limit", "host-router"]
PHASES = {"AUTHN": 0, "AUTHZ": 1, "STATS": 2}

errors = []


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


def validate_doc(where, doc):
    key = (doc.get("apiVersion"), doc.get("kind"))
    model = MODELS.get(key)
    if model is None:
        fail(f"{where}: no schema for {key} (only {sorted(MODELS)})")
        return
    try:
        obj = model.model_validate(doc)
    except Exception as e:  # pydantic.ValidationError
        fail(f"{where}: {key[1]} {doc.get('metadata', {}).get('name')}: {e}")
        return
    back = obj.model_dump(by_alias=True, exclude_unset=True, mode="json")
    diff = first_difference(back, doc)
    if diff:
        fail(f"{where}: {key[1]}: field {diff} is not in Istio's schema (or has the wrong type)")


def filters_in_repo(root):
    return sorted(p.parent.parent.name for p in (root / "filters").glob("*/src/filter.rs"))


def check_plugins(where, docs, root, url_of):
    plugins = [d for d in docs if d.get("kind") == "WasmPlugin"]
    by_filter = {}
    for p in plugins:
        name = p["metadata"]["name"]
        spec = p.get("spec", {})
        filt = name.removeprefix("gatehouse-")
        if filt in by_filter:
            fail(f"{where}: two WasmPlugins for {filt}")
        by_filter[filt] = p
        if spec.get("selector") != {"matchLabels": {"istio": "ingressgateway"}}:
            fail(f"{where}: {name}: selector must be matchLabels istio: ingressgateway")
        if spec.get("url") != url_of(filt):
            fail(f"{where}: {name}: url {spec.get('url')!r}, expected {url_of(filt)!r}")
        if spec.get("failStrategy") not in ("FAIL_CLOSE", "FAIL_OPEN"):
            fail(f"{where}: {name}: failStrategy must be chosen explicitly")
        if spec.get("type") != "HTTP":
            fail(f"{where}: {name}: type must be HTTP")
        if not isinstance(spec.get("pluginConfig"), dict):
            fail(f"{where}: {name}: pluginConfig must be an object")
    wanted = filters_in_repo(root)
    for f in wanted:
        if f not in by_filter:
            fail(f"{where}: no WasmPlugin for filter {f} (filters/{f}/src/filter.rs exists)")
    for f in by_filter:
        if f not in wanted:
            fail(f"{where}: WasmPlugin for {f}, but filters/{f}/src/filter.rs does not exist")

    def rank(f):
        spec = by_filter[f]["spec"]
        return (PHASES.get(spec.get("phase"), 3), -spec.get("priority", 0), f)

    order = sorted(by_filter, key=rank)
    expected = [f for f in ORDER if f in by_filter]
    if order != expected:
        fail(f"{where}: gateway order is {order}, expected {expected}")
    return len(plugins)


def check_routing(where, docs):
    gateways = {d["metadata"]["name"]: d for d in docs if d.get("kind") == "Gateway"}
    for g in gateways.values():
        if g["spec"].get("selector") != {"istio": "ingressgateway"}:
            fail(f"{where}: Gateway {g['metadata']['name']} must select istio: ingressgateway")
    for vs in (d for d in docs if d.get("kind") == "VirtualService"):
        for g in vs["spec"].get("gateways", []):
            if g not in gateways:
                fail(f"{where}: VirtualService {vs['metadata']['name']} names unknown Gateway {g}")


def load_docs(path):
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def kustomize(kubectl, d):
    out = subprocess.run([kubectl, "kustomize", str(d)], capture_output=True, text=True)
    if out.returncode != 0:
        fail(f"kubectl kustomize {d} failed: {out.stderr.strip()}")
        return []
    return [x for x in yaml.safe_load_all(out.stdout) if x]


def image_settings(kustomization, generator="gatehouse-image"):
    literals = {}
    for gen in kustomization.get("configMapGenerator", []):
        if gen.get("name") == generator:
            for lit in gen.get("literals", []):
                k, _, v = lit.partition("=")
                literals[k] = v
    return literals.get("registry"), literals.get("tag")


def check_rendered(where, docs, root, registry, tag):
    for d in docs:
        validate_doc(where, d)
        if d.get("kind") == "ConfigMap":
            fail(f"{where}: the ConfigMap {d['metadata']['name']} would be applied to the cluster")
        if d.get("metadata", {}).get("namespace") != "istio-system":
            fail(f"{where}: {d.get('kind')} {d['metadata']['name']} is not in istio-system")
    check_plugins(where, docs, root, lambda f: f"oci://{registry}/{f}:{tag}")
    check_routing(where, docs)


def check_shared_module_variant(root, kubectl):
    """manifests-shared-module/: the same plugins from the one gatehouse.wasm
    image, each selecting its filter with pluginName (the Envoy root id)."""
    vdir = root / "manifests-shared-module"
    where = "manifests-shared-module"
    k = vdir / "kustomization.yaml"
    if not k.is_file():
        fail(f"{where}/kustomization.yaml is missing")
        return 0
    registry, tag = image_settings(yaml.safe_load(k.read_text()), "gatehouse-module-image")
    if not registry or not tag:
        fail(f"{where}: configMapGenerator gatehouse-module-image needs registry= and tag=")
        return 0

    def check(label, docs, registry, tag):
        for d in docs:
            validate_doc(label, d)
            if d.get("kind") == "ConfigMap":
                fail(f"{label}: the ConfigMap {d['metadata']['name']} would be applied to the cluster")
            if d.get("metadata", {}).get("namespace") != "istio-system":
                fail(f"{label}: {d.get('kind')} {d['metadata']['name']} is not in istio-system")
        n = check_plugins(label, docs, root, lambda f: f"oci://{registry}/gatehouse:{tag}")
        for d in docs:
            if d.get("kind") == "WasmPlugin":
                filt = d["metadata"]["name"].removeprefix("gatehouse-")
                if d["spec"].get("pluginName") != filt:
                    fail(f"{label}: {d['metadata']['name']}: pluginName must be {filt!r}")
        check_routing(label, docs)
        return n

    n = check(f"{where} kustomize output", kustomize(kubectl, vdir), registry, tag)
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(root / "manifests", pathlib.Path(tmp) / "manifests")
        shutil.copytree(vdir, pathlib.Path(tmp) / "manifests-shared-module")
        kc = pathlib.Path(tmp) / "manifests-shared-module" / "kustomization.yaml"
        text = kc.read_text()
        text = re.sub(r"registry=\S+", "registry=127.0.0.1:5000/team/gatehouse", text)
        text = re.sub(r"tag=\S+", "tag=v9.8.7-rc.1", text)
        kc.write_text(text)
        check(
            f"{where} kustomize output (other registry/tag)",
            kustomize(kubectl, kc.parent),
            "127.0.0.1:5000/team/gatehouse",
            "v9.8.7-rc.1",
        )
    return n


def main():
    mdir = pathlib.Path(sys.argv[1]).resolve()
    kubectl = sys.argv[2]
    root = mdir.parent
    kustomization = yaml.safe_load((mdir / "kustomization.yaml").read_text())
    docs = []
    for r in kustomization["resources"]:
        for d in load_docs(mdir / r):
            validate_doc(r, d)
            docs.append(d)
    n = check_plugins("manifests", docs, root, lambda f: f"oci://REGISTRY/{f}:TAG")
    check_routing("manifests", docs)

    registry, tag = image_settings(kustomization)
    if not registry or not tag:
        fail("kustomization.yaml: configMapGenerator gatehouse-image needs registry= and tag=")
    rendered = kustomize(kubectl, mdir)
    check_rendered("kustomize output", rendered, root, registry, tag)

    # The one place really is one place: another registry (with a port and
    # a path) and tag set there reach every url.
    with tempfile.TemporaryDirectory() as tmp:
        copy = pathlib.Path(tmp) / "manifests"
        shutil.copytree(mdir, copy)
        k = copy / "kustomization.yaml"
        text = k.read_text()
        text = re.sub(r"registry=\S+", "registry=127.0.0.1:5000/team/gatehouse", text)
        text = re.sub(r"tag=\S+", "tag=v9.8.7-rc.1", text)
        k.write_text(text)
        check_rendered(
            "kustomize output (other registry/tag)",
            kustomize(kubectl, copy),
            root,
            "127.0.0.1:5000/team/gatehouse",
            "v9.8.7-rc.1",
        )

    n_shared = check_shared_module_variant(root, kubectl)

    if errors:
        for e in errors:
            print(f"validate-manifests: {e}", file=sys.stderr)
        sys.exit(1)
    print(
        f"validate-manifests: {len(docs)} documents ({n} WasmPlugins) valid against "
        f"Istio's schema (cloudcoil-models-istio), kustomize output valid "
        f"(registry {registry}, tag {tag}); shared-module variant: {n_shared} WasmPlugins "
        f"on one gatehouse image, each with its pluginName"
    )


if __name__ == "__main__":
    main()
