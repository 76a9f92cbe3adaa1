#!/usr/bin/env bash
# Issue 13 items 1 and 4: FP8 engines on the native CUDA backend, in ONE call on the GPU machine.
# Nothing is built there. Here (release deps in the shared target dir):
#
#   cargo build --release --no-default-features --features cuda,cli,export,ort \
#       --bin build-engine --bin make-random-flux --example cuda_bench --example cuda_fp8_check
#   cargo test --release --no-default-features --features cuda,cli,export,ort --test cuda --no-run   (prints the test executable)
#   mkdir -p /work/main/.dev/fp8 && cd $CARGO_TARGET_DIR/release && cp build-engine make-random-flux examples/cuda_bench \
#       examples/cuda_fp8_check <test executable as cuda-test> <libonnxruntime.so.1.x (ORT_DYLIB_PATH)> /tmp/fp8bin/ && strip /tmp/fp8bin/*
#   tar -cJf /work/main/.dev/fp8/bin.tar.xz -C /tmp/fp8bin . && cp tools/device/fp8-full.sh tools/device/cuda-libs.sh /work/main/.dev/fp8/
#
# There:  bash .dev/fp8/fp8-full.sh        (carry .dev/fp8; results in $OUT)
#
# 1. tiny: the GPU tests of tests/cuda.rs whose names contain `fp8` (tiny FP8 engine vs ONNX Runtime
#    CPU on the same FP8 export and vs the diffusers goldens; static and dynamic scales; A→B→A).
# 2. full size: random FLUX.1-dev-shaped bf16 checkpoint (make-random-flux), rank-64 attention
#    adapters A, B; bf16 engine → bf16 outputs (base, A, B) and the bf16 ms/step at 1024² (same
#    lease baseline); the bf16 engine is deleted (disk: 24 GB checkpoint + 24 GB engine), then the
#    FP8 engine (default per-channel weight scales) → cuda_fp8_check (calibration on the GPU with
#    dynamic scales, accuracy dynamic and static vs bf16, A→B→A) → cuda_bench at 1024² with the
#    calibrated static scales and with dynamic scales.
#    The FP8 export gets a placeholder calibration file (amax 8 at every point, as fp8_build.sh):
#    build-engine's own calibration runs the fp32 model on ONNX Runtime CPU and writes an fp32
#    copy of the model (48 GB), which this 64 GB disk cannot hold beside the checkpoint; the static
#    runs use the GPU calibration (`cuda_fp8_check --scales-out`, `cuda_bench --fp8-scales`).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
cd "$HERE/../.." 2>/dev/null || true
ROOT=$(pwd)
OUT=${OUT:-/tmp/fp8-out}
W=${WORK:-/tmp/fp8full}
mkdir -p "$OUT" "$W"
t0=$(date +%s)
note() { echo "[$(( $(date +%s) - t0 )) s] $*" | tee -a "$OUT/summary.txt"; }
B=$W/bin
export FLUX_TRT_TEST_BINS=$B   # tests/cuda.rs runs build-engine and flux-trt from here
[ -x "$B/build-engine" ] || { mkdir -p "$B" && tar -xJf "${BIN_TAR:-$HERE/bin.tar.xz}" -C "$B"; } || { echo "cannot unpack binaries"; exit 1; }
source "$HERE/cuda-libs.sh"
export ORT_DYLIB_PATH=$(ls "$B"/libonnxruntime.so.* | head -1)
export FLUX_TRT_KERNEL_CACHE=/tmp/flux-trt-kernels
export RUST_LOG=${RUST_LOG:-warn}
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; date -u +%FT%TZ; df -h /tmp | tail -1; } > "$OUT/machine.txt"
rc_all=0

# ---------------- 1. tiny ----------------
if [ -z "${SKIP_TINY:-}" ]; then
  src=${BUILT_IN:-/work/wt/fp8}
  [ -e "$src/tests/fixtures" ] || { mkdir -p "$(dirname "$src")"; ln -sfn "$ROOT" "$src"; }
  timeout ${TINY_LIMIT:-120} "$B/cuda-test" --include-ignored --test-threads 1 --nocapture fp8 > "$OUT/tiny-tests.log" 2>&1
  r=$?; note "tiny FP8 tests (tests/cuda.rs *fp8*): rc=$r"; grep -E "^test |^fp8 |panicked|failures" "$OUT/tiny-tests.log" | head -60 >> "$OUT/summary.txt"; [ $r -eq 0 ] || rc_all=1
fi

# ---------------- 2. full size ----------------
[ -n "${SKIP_FULL:-}" ] && { cat "$OUT/summary.txt"; exit $rc_all; }
# MODEL / ADAPTERS / BF16_ENGINE: reuse what tools/device/cuda-check.sh left on this machine (its pipeline
# folder's transformer/, a64 and b64, its bf16 engine; the disk holds the checkpoint and two engines at most)
M=${MODEL:-$W/model}; AD=${ADAPTERS:-$W}; E16=${BF16_ENGINE:-$W/engine-bf16}
if [ ! -d "$M" ]; then
  "$B/make-random-flux" --out "$M" --layout diffusers --dtype bf16 > "$W/make.log" 2>&1 || { note "make-random-flux failed"; tail -5 "$W/make.log" >> "$OUT/summary.txt"; exit 1; }
fi
[ -f "$AD/a64.safetensors" ] || "$B/make-random-flux" --out "$AD/a64.safetensors" --lora attn --rank 64 --seed 2 >> "$W/make.log" 2>&1
[ -f "$AD/b64.safetensors" ] || "$B/make-random-flux" --out "$AD/b64.safetensors" --lora attn --rank 64 --seed 3 >> "$W/make.log" 2>&1
[ -f "$W/make.log" ] && cp "$W/make.log" "$OUT/"; note "random model $M + adapters in $AD"
ADS="$AD/a64.safetensors,$AD/b64.safetensors"
if [ ! -f "$E16/manifest.json" ]; then
  "$B/build-engine" --model "$M" --lora "$AD/a64.safetensors" --lora "$AD/b64.safetensors" --precision bf16 --out "$E16" --no-hash > "$OUT/export-bf16.log" 2>&1
  note "export bf16: rc=$? $(tail -1 "$OUT/export-bf16.log" | cut -c1-200)"
fi
timeout 120 "$B/cuda_fp8_check" ref --engine "$E16" --adapters "$ADS" --out "$W/ref.bin" > "$OUT/ref.log" 2>&1
note "bf16 reference outputs: rc=$? $(tail -1 "$OUT/ref.log" | cut -c1-300)"
timeout 120 "$B/cuda_bench" --engine "$E16" --adapters "$AD/a64.safetensors" --shapes 1024x1024x1 --steps ${STEPS:-10} --warmup 2 \
  --json "$OUT/bench-bf16.json" > "$OUT/bench-bf16.log" 2>&1
note "bench bf16: rc=$? $(grep -E '^1024x1024' "$OUT/bench-bf16.log" | cut -c1-200)"
rm -rf "$E16"
python3 "$ROOT/tools/device/fp8-placeholder.py" "$W/calib-placeholder.json"
/usr/bin/time -v "$B/build-engine" --model "$M" --lora "$AD/a64.safetensors" --lora "$AD/b64.safetensors" --precision fp8 \
  --calib-in "$W/calib-placeholder.json" --out "$W/engine-fp8" --no-hash > "$OUT/export-fp8.log" 2>&1
note "export fp8 (per-channel weight scales): rc=$? $(grep -E 'Elapsed' "$OUT/export-fp8.log") data $(stat -c %s "$W/engine-fp8/model.onnx.data" 2>/dev/null) bytes"
# the per-tensor-scale engine, exported (CPU, disk: 24 + 15 + 15 GB) while the GPU checks the per-channel one
( /usr/bin/time -v "$B/build-engine" --model "$M" --lora "$AD/a64.safetensors" --lora "$AD/b64.safetensors" --precision fp8 --fp8-weight-scale tensor \
    --calib-in "$W/calib-placeholder.json" --out "$W/engine-fp8t" --no-hash > "$OUT/export-fp8-tensor.log" 2>&1; echo "rc=$?" >> "$OUT/export-fp8-tensor.log" ) &
EXPT=$!
timeout 150 "$B/cuda_fp8_check" fp8 --engine "$W/engine-fp8" --adapters "$ADS" --reference "$W/ref.bin" --json "$OUT/fp8-check.json" \
  --scales-out "$OUT/fp8-gpu-calibration.json" --calib ${CALIB:-8} > "$OUT/fp8-check.log" 2>&1
r=$?; note "cuda_fp8_check: rc=$r"; grep -E "^(Dynamic|Static)|FAILED" "$OUT/fp8-check.log" | cut -c1-1500 >> "$OUT/summary.txt"; [ $r -eq 0 ] || rc_all=1
if [ -f "$OUT/fp8-gpu-calibration.json" ]; then
  timeout 120 "$B/cuda_bench" --engine "$W/engine-fp8" --adapters "$AD/a64.safetensors" --shapes 1024x1024x1 --steps ${STEPS:-10} --warmup 2 \
    --fp8-scales "$OUT/fp8-gpu-calibration.json" --json "$OUT/bench-fp8-static.json" > "$OUT/bench-fp8-static.log" 2>&1
  note "bench fp8 static (GPU-calibrated scales): rc=$? $(grep -E '^1024x1024' "$OUT/bench-fp8-static.log" | cut -c1-200)"
fi
timeout 120 "$B/cuda_bench" --engine "$W/engine-fp8" --adapters "$AD/a64.safetensors" --shapes 1024x1024x1 --steps ${STEPS:-10} --warmup 2 \
  --fp8-dynamic --json "$OUT/bench-fp8-dynamic.json" > "$OUT/bench-fp8-dynamic.log" 2>&1
note "bench fp8 dynamic: rc=$? $(grep -E '^1024x1024' "$OUT/bench-fp8-dynamic.log" | cut -c1-200)"
wait $EXPT; rm -rf "$W/engine-fp8"; [ -n "${MODEL:-}" ] || rm -rf "$M"
note "export fp8 per-tensor: $(tail -1 "$OUT/export-fp8-tensor.log") $(grep -E 'Elapsed' "$OUT/export-fp8-tensor.log")"
if [ -f "$OUT/fp8-gpu-calibration.json" ] && [ -f "$W/engine-fp8t/manifest.json" ]; then
  timeout 100 "$B/cuda_bench" --engine "$W/engine-fp8t" --adapters "$AD/a64.safetensors" --shapes 1024x1024x1 --steps ${STEPS:-10} --warmup 2 \
    --fp8-scales "$OUT/fp8-gpu-calibration.json" --json "$OUT/bench-fp8t-static.json" > "$OUT/bench-fp8t-static.log" 2>&1
  note "bench fp8 per-tensor static: rc=$? $(grep -E '^1024x1024' "$OUT/bench-fp8t-static.log" | cut -c1-200)"
  if [ $(( $(date +%s) - t0 )) -lt ${ACC_T_BEFORE:-400} ]; then
    timeout 100 "$B/cuda_fp8_check" fp8 --engine "$W/engine-fp8t" --adapters "$ADS" --reference "$W/ref.bin" --json "$OUT/fp8t-check.json" \
      --calib ${CALIB:-8} > "$OUT/fp8t-check.log" 2>&1
    r=$?; note "cuda_fp8_check per-tensor: rc=$r"; grep -E "^(Dynamic|Static)|FAILED" "$OUT/fp8t-check.log" | cut -c1-1500 >> "$OUT/summary.txt"
  fi
fi
nvidia-smi --query-gpu=memory.used,temperature.gpu,clocks.sm --format=csv,noheader >> "$OUT/machine.txt"
cat "$OUT/summary.txt"
exit $rc_all
