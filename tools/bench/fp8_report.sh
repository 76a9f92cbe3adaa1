#!/usr/bin/env bash
# FP8 accuracy report (tiny fixtures, ONNX Runtime CPU): writes tools/bench/fp8_report.json.
#   tools/bench/fp8_report.sh [--samples N]
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/work/main/target}"
machine="$(uname -srm); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'); $(nproc) cpus"
cargo run --quiet --example fp8_report -- --date "$(date -u +%Y-%m-%dT%H:%M:%SZ)" --machine "$machine" --out tools/bench/fp8_report.json "$@"
echo "wrote tools/bench/fp8_report.json"
