#!/usr/bin/env python3
"""Copies filters/<filter>/example.json into spec.wasm.pluginConfig of manifests/<filter>.yaml.

The manifests carry each filter's example config verbatim (JSON is YAML), so a
manifest and the filter's documented example never drift apart; `make test`
fails when they differ and `make manifests-sync` runs this script to fix it.
Everything from the `    pluginConfig:` line (under `wasm:`) to the end of the
file is replaced; the comments and fields above it are kept. The WasmPlugin
variant (manifests/wasmplugin/) is derived from these files by kustomize, so
it needs no copy.
"""
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def sync(filter_name: str) -> bool:
    manifest = ROOT / "manifests" / f"{filter_name}.yaml"
    example = ROOT / "filters" / filter_name / "example.json"
    if not example.is_file():
        print(f"{example.relative_to(ROOT)} does not exist yet: {manifest.name} left as is")
        return False
    config = json.loads(example.read_text())
    lines = manifest.read_text().splitlines(keepends=True)
    try:
        at = next(i for i, l in enumerate(lines) if l.startswith("    pluginConfig:"))
    except StopIteration:
        sys.exit(f"{manifest}: no `    pluginConfig:` line (under `wasm:`)")
    body = json.dumps(config, indent=2).splitlines()
    new = lines[:at] + ["    pluginConfig:\n"] + [f"      {l}\n" for l in body]
    text = "".join(new)
    if text != manifest.read_text():
        manifest.write_text(text)
        print(f"updated {manifest.relative_to(ROOT)} from {example.relative_to(ROOT)}")
        return True
    return False


if __name__ == "__main__":
    names = sys.argv[1:] or sorted(
        p.parent.parent.name for p in (ROOT / "filters").glob("*/src/filter.rs")
    )
    for n in names:
        sync(n)
