#!/usr/bin/env bash
# The test command (README): installs what the tests need, builds the workspace and runs
# every test: Rust unit and cross-process tests, the real Kafka clients in tests/clients, then
# the deployment in tests/deploy (the container image, the Helm chart, dashboards and alerts).
# Installs are skipped when already done, so repeat runs only build and test.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/strata-target}"
REQUIREMENTS=tests/clients/requirements.txt
JS_DIR=tests/clients/js

step() { printf '\n==> %s\n' "$*"; }

# System packages: kcat, make (rdkafka builds the benchmark's librdkafka with it), etcd,
# protoc, and Python's venv and Node.js where the machine lacks them.
missing=()
command -v kcat >/dev/null || missing+=(kcat)
command -v make >/dev/null || missing+=(make)
command -v python3 >/dev/null || missing+=(python3)
python3 -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv) # Debian splits ensurepip out
command -v node >/dev/null || missing+=(nodejs)
# etcd for the cluster tests; protoc and its includes to build the etcd client.
command -v etcd >/dev/null || missing+=(etcd-server)
command -v etcdctl >/dev/null || missing+=(etcd-client)
command -v protoc >/dev/null || missing+=(protobuf-compiler)
[ -e /usr/include/google/protobuf/descriptor.proto ] || missing+=(libprotobuf-dev)
command -v npm >/dev/null || missing+=(npm)
# podman builds the container image offline; Prometheus and promtool check the dashboards
# and alert rules.
command -v podman >/dev/null || missing+=(podman)
command -v prometheus >/dev/null || missing+=(prometheus)
if ((${#missing[@]})); then
  step "Installing ${missing[*]} with apt-get"
  bash scripts/apt-install.sh "${missing[@]}"
fi

# Python clients and emulators in .venv; reinstalled only when requirements.txt changes.
if [ ! -x .venv/bin/python ] || ! cmp -s "$REQUIREMENTS" .venv/strata-requirements.txt; then
  step "Installing the Python Kafka clients and store emulators into .venv"
  python3 -m venv --clear .venv
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$REQUIREMENTS"
  cp "$REQUIREMENTS" .venv/strata-requirements.txt
fi

# kafkajs and Azurite from the committed lock file; reinstalled only when the lock file changes.
if ! cmp -s "$JS_DIR/package-lock.json" "$JS_DIR/node_modules/strata-package-lock.json"; then
  step "Installing kafkajs and Azurite (npm ci)"
  (cd "$JS_DIR" && npm ci --no-audit --no-fund --loglevel=error)
  cp "$JS_DIR/package-lock.json" "$JS_DIR/node_modules/strata-package-lock.json"
fi

step "Building (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
cargo build --workspace --all-targets

# Both suites run even if the first fails, so one run reports every failure.
failed=()

step "Rust tests"
cargo test --workspace --no-fail-fast || failed+=("cargo test")

step "Kafka client tests (tests/clients)"
STRATA_BIN="$CARGO_TARGET_DIR/debug/strata" .venv/bin/python -m pytest tests/clients || failed+=("pytest tests/clients")

step "Deployment tests (tests/deploy)"
STRATA_BIN="$CARGO_TARGET_DIR/debug/strata" .venv/bin/python -m pytest tests/deploy || failed+=("pytest tests/deploy")

if ((${#failed[@]})); then
  printf '\nFAILED: %s\n' "${failed[*]}" >&2
  exit 1
fi
