#!/usr/bin/env bash
# Runs the end-to-end matrix (the Makefile's E2E_MATRIX) in $E2E_JOBS
# parallel lanes. Each argument is one run, delivery:envoy-version:filters
# (filters: comma-separated test-name filters, empty for every test).
# A lane takes the next run not yet started; each run's output is buffered
# and printed whole when it ends, so the lanes' logs do not interleave.
# Exits non-zero when any run fails (every run still finishes).
#
# Env: VENV (Envoys at $VENV/envoy-<version>), E2E_JOBS (default 1),
# E2E_TEST_THREADS (--test-threads of each run, default 2), TEST_PACKAGES
# (cargo's package selection, default --workspace).
set -euo pipefail
: "${VENV:?VENV must name the virtualenv holding the Envoys}"
jobs=${E2E_JOBS:-1}
threads=${E2E_TEST_THREADS:-2}
read -ra packages <<< "${TEST_PACKAGES:---workspace}"
runs=("$@")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

describe() {
  local mode v filters
  IFS=: read -r mode v filters <<< "$1"
  echo "tests (${filters:-all}), Envoy $v, delivery: $mode"
}

run_one() { # index
  local mode v filters start status
  IFS=: read -r mode v filters <<< "${runs[$1]}"
  start=$(date +%s)
  set +e
  GATEHOUSE_DELIVERY=$mode ENVOY_BIN=$VENV/envoy-$v/envoy/_bin/envoy \
    cargo test "${packages[@]}" --test '*' -- --test-threads "$threads" ${filters//,/ } 2>&1 |
    while IFS= read -r line || [ -n "$line" ]; do
      # Each test binary's start, seconds into the run: where the time goes.
      case "$line" in
        *Running\ *) printf '%s [+%ss]\n' "$line" $(( $(date +%s) - start )) ;;
        *) printf '%s\n' "$line" ;;
      esac
    done > "$work/$1.log"
  status=${PIPESTATUS[0]}
  set -e
  echo "$status" > "$work/$1.status"
  {
    flock 9
    echo "== $(describe "${runs[$1]}"): exit $status after $(( $(date +%s) - start ))s"
    cat "$work/$1.log"
  } 9> "$work/print.lock"
}

lane() {
  local i
  for i in "${!runs[@]}"; do
    # mkdir is atomic: the lane that creates the claim runs the entry.
    mkdir "$work/claim.$i" 2>/dev/null || continue
    echo "== started: $(describe "${runs[$i]}")"
    run_one "$i"
  done
}

pids=()
for ((l = 0; l < jobs; l++)); do
  lane &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done

failed=0
for i in "${!runs[@]}"; do
  s=$(cat "$work/$i.status" 2>/dev/null || echo missing)
  if [ "$s" != 0 ]; then
    echo "FAILED: $(describe "${runs[$i]}") (exit $s)"
    failed=1
  fi
done
exit "$failed"
