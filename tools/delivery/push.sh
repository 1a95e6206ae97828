#!/usr/bin/env bash
# push.sh OCI_DIR REGISTRY TAG FILTER...
# Pushes the OCI image layouts written by `gatehouse-delivery image`
# (OCI_DIR/<filter>) to REGISTRY/<filter>:TAG with skopeo, unchanged
# (--preserve-digests: the manifest digest in the registry is the one built
# here), and prints, per image, what a user pastes (valid YAML):
#   <filter>:
#     url: oci://<REGISTRY>/<filter>@sha256:<hex>    # a url pinned by digest
#     sha256: <hex>                                  # for spec.wasm.sha256 / spec.sha256
# The hex is the manifest digest, which Istio compares with `sha256` (the CRD
# requires ^[a-f0-9]{64}$: no "sha256:" prefix).
# Credentials: `skopeo login REGISTRY` first, or PUSH_CREDS=user:password.
# A registry without TLS (a local test registry): PUSH_TLS_VERIFY=false.
set -euo pipefail
if [ $# -lt 4 ]; then
  echo "usage: $0 OCI_DIR REGISTRY TAG FILTER..." >&2
  exit 2
fi
oci_dir=$1 registry=${2%/} tag=$3
shift 3
args=(--quiet --preserve-digests --dest-tls-verify="${PUSH_TLS_VERIFY:-true}")
if [ -n "${PUSH_CREDS:-}" ]; then args+=(--dest-creds "$PUSH_CREDS"); fi
first=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for f in "$@"; do
  layout="$oci_dir/$f"
  [ -f "$layout/index.json" ] || { echo "$layout is not an OCI layout: run \`make image\`" >&2; exit 1; }
  # The layout's tag may differ from TAG; the image is the same.
  src_tag=$(sed -E 's/.*"org\.opencontainers\.image\.ref\.name":"([^"]+)".*/\1/' "$layout/index.json")
  skopeo copy "${args[@]}" --digestfile "$tmp/$f" "oci:$layout:$src_tag" "docker://$registry/$f:$tag"
  digest=$(cat "$tmp/$f")
  hex=${digest#sha256:}
  [[ $digest == sha256:* && $hex =~ ^[a-f0-9]{64}$ ]] || { echo "$f: unexpected digest '$digest'" >&2; exit 1; }
  [ "$f" = "$first" ] && echo "# pushed as $registry/<image>:$tag; pin with the url or with sha256 (docs/istio.md, \"Pin the digests\")"
  printf '%s:\n  url: oci://%s/%s@%s\n  sha256: %s\n' "$f" "$registry" "$f" "$digest" "$hex"
done
