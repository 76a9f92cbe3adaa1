#!/usr/bin/env bash
# Issue 13 item 2: FP8 attention (CudaOptions::fp8_attention) on the GPU machine, in ONE call of
# about 8 minutes. Nothing is built there: the binaries of fp8-pipeline.sh's bin.tar.xz (flux-trt,
# build-engine, make-random-flux, cuda_bench, cuda_fp8_check, the tests/cuda.rs executable as
# cuda-test and the tests/cuda_attention.rs one as cuda_attention, the CPU libonnxruntime) in $HERE.
#
#   HERE=.dev/fp8pipe bash tools/device/fp8-attn.sh        (carry .dev/fp8pipe; results in $OUT)
#
# Logs stay in $W until the end (a call cut off at its limit still returns $OUT's first 8 files:
# the summary, the test logs and the JSON results).
# 1. Beside the CPU-bound steps: the GPU tests `cuda_attention fp8_` (FP8 attention vs the bf16
#    reference kernel on small shapes and the FLUX shape, device scales, zero inputs, graph replay,
#    time per call) and `cuda-test fp8_attention` (the tiny dev bf16 engine with the switch on).
# 2. Full size (random FLUX.1-dev-shaped transformer, rank-64 attention adapters A, B, 1024², 512
#    text tokens): the bf16 engine's outputs (the yardstick), its ms/step with bf16 and with FP8
#    attention, and FP8 attention alone vs the yardstick (cuda_fp8_check on the bf16 engine); then
#    the FP8 engine (per-tensor weight scales, GPU-calibrated static activation scales) with FP8
#    attention vs the yardstick, and its ms/step with bf16 and with FP8 attention.
set -u
cd "$(dirname "$0")/../.." 2>/dev/null || true
ROOT=$(pwd)
HERE=${HERE:-$ROOT/.dev/fp8pipe}
OUT=${OUT:-/tmp/fp8-attn-out}
W=${WORK:-/tmp/fp8attn}
mkdir -p "$OUT" "$W"
t0=$(date +%s)
note() { echo "[$(( $(date +%s) - t0 )) s] $*" | tee -a "$OUT/summary.txt"; }
B=$W/bin
export FLUX_TRT_TEST_BINS=$B   # tests/cuda.rs runs build-engine and flux-trt from here
[ -x "$B/cuda_bench" ] || { mkdir -p "$B" && tar -xJf "$HERE/bin.tar.xz" -C "$B"; } || { echo "cannot unpack binaries"; exit 1; }
source "$ROOT/tools/device/cuda-libs.sh"
source "$ROOT/tools/device/random-flux.sh"
export FLUX_TRT_KERNEL_CACHE=/tmp/flux-trt-kernels RUST_LOG=${RUST_LOG:-warn} ORT_DYLIB_PATH=$B/libonnxruntime.so.1.31.1
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; date -u +%FT%TZ; nproc; df -h /tmp | tail -1; } > "$OUT/machine.txt"

[ -e /work/main/tests/fixtures ] || { mkdir -p /work && ln -sfn "$ROOT" /work/main; }   # the test binaries read the fixtures there
( timeout 300 "$B/cuda_attention" --ignored --nocapture --test-threads=1 fp8_ > "$OUT/attn-tests.log" 2>&1; echo "rc=$?" >> "$OUT/attn-tests.log"
  timeout 200 "$B/cuda-test" --ignored --nocapture --test-threads=1 fp8_attention > "$OUT/attn-engine-test.log" 2>&1; echo "rc=$?" >> "$OUT/attn-engine-test.log" ) &
TESTS=$!

if [ -n "${TESTS_ONLY:-}" ]; then
  wait $TESTS
  note "FP8 attention GPU tests: $(grep -hE '^test |test result|rc=' "$OUT/attn-tests.log" "$OUT/attn-engine-test.log" | tr '\n' ' ' | cut -c1-1200)"
  exit 0
fi
M=$W/model; ADS="$W/a64.safetensors,$W/b64.safetensors"
random_transformer "$M" || { note "make-random-flux failed"; exit 1; }
random_adapters "$W"
note "random model + adapters"
E16=$W/engine-bf16
if [ -z "${SKIP_BF16:-}" ]; then
"$B/build-engine" --model "$M" --lora "$W/a64.safetensors" --lora "$W/b64.safetensors" --precision bf16 --out "$E16" --no-hash > "$W/export-bf16.log" 2>&1
note "export bf16: rc=$?"
fi
wait $TESTS
note "FP8 attention GPU tests: $(grep -hE '^test |test result|rc=' "$OUT/attn-tests.log" "$OUT/attn-engine-test.log" | tr '\n' ' ' | cut -c1-1200)"
if [ -z "${SKIP_BF16:-}" ]; then
timeout 120 "$B/cuda_fp8_check" ref --engine "$E16" --adapters "$ADS" --out "$W/ref.bin" > "$W/ref.log" 2>&1
note "bf16 reference outputs: rc=$? $(tail -1 "$W/ref.log" | cut -c1-300)"
for a in "" --fp8-attention; do
  timeout 100 "$B/cuda_bench" --engine "$E16" --adapters "$W/a64.safetensors" --shapes 1024x1024x1 --steps 10 --warmup 2 $a \
    --json "$OUT/bench-bf16${a:+-fp8attn}.json" > "$W/bench.log" 2>&1
  note "bench bf16 engine ${a:-(bf16 attention)}: rc=$? $(grep -E '^1024x1024' "$W/bench.log" | cut -c1-200)"
done
timeout 120 "$B/cuda_fp8_check" fp8 --engine "$E16" --adapters "$ADS" --reference "$W/ref.bin" --fp8-attention --json "$OUT/check-bf16-fp8attn.json" > "$W/check-bf16-fp8attn.log" 2>&1
note "FP8 attention alone vs bf16 (bf16 engine): rc=$? $(grep -vE '^\s*$' "$W/check-bf16-fp8attn.log" | tail -4 | tr '\n' ' ' | cut -c1-900)"
rm -rf "$E16"
fi
python3 "$ROOT/tools/device/fp8-placeholder.py" "$W/calib-placeholder.json"
E8=$W/engine-fp8t
"$B/build-engine" --model "$M" --lora "$W/a64.safetensors" --lora "$W/b64.safetensors" --precision fp8 --fp8-weight-scale tensor \
  --calib-in "$W/calib-placeholder.json" --out "$E8" --no-hash > "$W/export-fp8.log" 2>&1
note "export fp8 per-tensor: rc=$?"
if [ ! -f "$W/ref.bin" ]; then   # SKIP_BF16: the yardstick is the FP8 engine itself with bf16 attention (dynamic scales)
  FLUX_TRT_FP8_DYNAMIC=1 timeout 120 "$B/cuda_fp8_check" ref --engine "$E8" --adapters "$ADS" --out "$W/ref.bin" > "$W/ref.log" 2>&1
  note "yardstick = FP8 engine, dynamic scales, bf16 attention: rc=$? $(tail -1 "$W/ref.log" | cut -c1-300)"
fi
[ -f "$W/ref.bin" ] && timeout 150 "$B/cuda_fp8_check" fp8 --engine "$E8" --adapters "$ADS" --reference "$W/ref.bin" --fp8-attention --calib 8 \
  --scales-out "$OUT/fp8-gpu-calibration.json" --json "$OUT/check-fp8-fp8attn.json" > "$W/check-fp8-fp8attn.log" 2>&1
note "FP8 engine + FP8 attention vs bf16: rc=$? $(grep -E '^(Dynamic|Static)|FAILED' "$W/check-fp8-fp8attn.log" | tr '\n' ' ' | cut -c1-1200)"
for a in "" --fp8-attention; do
  timeout 100 "$B/cuda_bench" --engine "$E8" --adapters "$W/a64.safetensors" --shapes 1024x1024x1 --steps 10 --warmup 2 $a \
    $([ -f "$OUT/fp8-gpu-calibration.json" ] && echo --fp8-scales "$OUT/fp8-gpu-calibration.json") --json "$OUT/bench-fp8${a:+-fp8attn}.json" > "$W/bench.log" 2>&1
  note "bench FP8 engine (static, GPU-calibrated) ${a:-(bf16 attention)}: rc=$? $(grep -E '^1024x1024' "$W/bench.log" | cut -c1-200)"
done
nvidia-smi --query-gpu=memory.used,temperature.gpu,clocks.sm --format=csv,noheader >> "$OUT/machine.txt"
cp "$W"/*.log "$OUT/" 2>/dev/null
[ "$(ls "$OUT" | wc -l)" -le 8 ] || (cd "$OUT" && tar -czf results.tgz --exclude=results.tgz --exclude=summary.txt -- * && find . -type f ! -name results.tgz ! -name summary.txt -delete)   # 8 files come back
cat "$OUT/summary.txt"
