#!/usr/bin/env bash
# The test command (README): installs what the tests need, checks what users build (formatting,
# the service feature sets, clippy), then runs every test, TensorRT parser checks and doctests included.
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/env.sh
echo "[flux-trt] ORT_DYLIB_PATH=$ORT_DYLIB_PATH TRT_RTX_LIB_DIR=$TRT_RTX_LIB_DIR" >&2
step() { echo "[flux-trt] $*" >&2; }
step "cargo fmt --check"
cargo fmt --check
# The library as a service embeds it (README): one backend, no CLI, exporter or pipeline.
step "library builds: --no-default-features --features ort | tensorrt"
cargo build --quiet --lib --no-default-features --features ort
cargo build --quiet --lib --no-default-features --features tensorrt
# TensorRT Enterprise headers must keep compiling too (no library is loaded for this).
cargo check --quiet --lib --no-default-features --features tensorrt-enterprise
# Clippy over every target with the features CI tests; any lint fails the run.
step "clippy (all targets, -D warnings)"
cargo clippy --quiet --features tensorrt,pipeline,cuda --all-targets -- -D warnings
# Unit, integration and doc tests (`cargo test` runs the doctests after the others).
step "cargo test"
cargo test --features tensorrt,pipeline,cuda "$@"
