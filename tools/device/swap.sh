#!/usr/bin/env bash
# Adapter swap on the native CUDA backend (issue 11 item 4) on the GPU machine: the GPU tests of
# tests/cuda.rs (the device lay-out vs the host lay-out bit for bit, the tiny engines vs the
# diffusers goldens through the new stage path, swaps), then slot_bench on a full-size rank-64
# attention adapter (no model weights needed). Nothing is built there.
#
# Here:   cargo test --features cuda,export --test cuda --no-run        (prints the test executable)
#         cargo build --release --features cuda --example slot_bench --bin make-random-flux
#         mkdir -p /work/main/.dev/NAME && cp <test executable> /work/main/.dev/NAME/cuda-test
#         cp $CARGO_TARGET_DIR/release/{make-random-flux,examples/slot_bench} tools/device/{swap,cuda-libs}.sh /work/main/.dev/NAME/
#         strip the binaries; the test executable looks for tests/fixtures under the checkout it
#         was built in: pass BUILT_IN=that path
# There:  bash .dev/NAME/swap.sh          (carry .dev/NAME; results in $OUT)
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(pwd)
OUT=${OUT:-/tmp/swap-out}
W=${WORK:-/tmp/swapwork}
mkdir -p "$OUT" "$W"
source "$HERE/cuda-libs.sh"
export FLUX_TRT_KERNEL_CACHE=${FLUX_TRT_KERNEL_CACHE:-/tmp/flux-trt-kernels}
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; date -u +%FT%TZ; nproc; } > "$OUT/machine.txt"
src=${BUILT_IN:-/work/wt/swap}
[ -e "$src/tests/fixtures" ] || { mkdir -p "$(dirname "$src")"; ln -sfn "$ROOT" "$src"; }
rc=0
if [ -x "$HERE/cuda-test" ]; then
  timeout "${TEST_TIMEOUT:-150}" "$HERE/cuda-test" --include-ignored --test-threads 1 --nocapture ${TEST_FILTER:-} > "$OUT/test.log" 2>&1 || rc=$?
  grep -E "^test |equal;|rel L2|panicked|FAILED|test result" "$OUT/test.log" | head -60
fi
"$HERE/make-random-flux" --out "$W/a64.safetensors" --lora attn --rank 64 --seed 2 > "$OUT/make.log" 2>&1 || { tail -5 "$OUT/make.log"; exit 1; }
"$HERE/slot_bench" --adapter "$W/a64.safetensors" --cuda 0 --reps ${REPS:-20} --json "$OUT/slot_bench.json" 2>&1 | tee "$OUT/slot_bench.log"
bench=${PIPESTATUS[0]}
[ "$rc" -ne 0 ] && exit "$rc"
exit "$bench"
