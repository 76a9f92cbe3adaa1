#!/usr/bin/env bash
# The demo command (README): builds engines/tiny from the bundled fixtures with two adapters and
# runs it on ONNX Runtime (CPU), swapping adapters without rebuilding.
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/env.sh
cargo run --quiet --release --bin flux-trt -- demo "$@"
