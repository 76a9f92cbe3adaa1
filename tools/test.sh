#!/usr/bin/env bash
# The test command (README): installs what the tests need, then runs every test, TensorRT parser checks included.
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/env.sh
echo "[flux-trt] ORT_DYLIB_PATH=$ORT_DYLIB_PATH TRT_RTX_LIB_DIR=$TRT_RTX_LIB_DIR" >&2
# TensorRT Enterprise headers must keep compiling too (no library is loaded for this).
cargo check --quiet --lib --no-default-features --features tensorrt-enterprise
cargo test --features tensorrt,pipeline,cuda "$@"
