#!/usr/bin/env bash
# The LogCleaner's throughput (MB/s of log cleaned) and write amplification (bytes the
# cleans wrote over the bytes produced), on bytes in memory: see
# segment-store/benches/log_cleaner.rs for the workload and its arguments.
# Usage: bench/log_cleaner.sh [segments [MB per segment [keys [value bytes]]]]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/strata-target}"
cargo bench -p segment-store --bench log_cleaner -- "$@"
