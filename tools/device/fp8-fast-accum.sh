#!/usr/bin/env bash
# Issue 13: Hopper's fast FP8 accumulation (CudaOptions::fp8_fast_accum) at full size, in ONE call of about
# 6 minutes. Nothing is built there: the binaries of fp8-pipeline.sh's bin.tar.xz (build-engine,
# make-random-flux, cuda_bench, cuda_fp8_check) in $HERE.
#
#   HERE=.dev/fp8pipe bash tools/device/fp8-fast-accum.sh        (carry .dev/fp8pipe; results in $OUT)
#
# Random FLUX.1-dev-shaped transformer, rank-64 attention adapters A, B, 1024², 512 text tokens:
# 1. the bf16 engine's outputs for base, A, B (the yardstick);
# 2. the FP8 engine (per-tensor weight scales) vs the yardstick with precise accumulation
#    (--fp8-precise-accum) and with the default fast accumulation (cuda_fp8_check: dynamic scales, then
#    static scales calibrated on the GPU);
# 3. ms/step (CUDA graph) of the FP8 engine with the first run's static scales: precise accumulation, fast
#    (the default), fast + FP8 attention.
# The model and engines (~40 GB of the 64 GB disk) are deleted at the end unless KEEP_WORK is set.
# (The run of 2026-12-07, tools/bench/results/h100-fp8-pipeline-2026-12-07/call7-fast-accum/, used binaries
# of 1edda42, where fast accumulation was off by default and the flag was --fp8-fast-accum.)
set -u
cd "$(dirname "$0")/../.." 2>/dev/null || true
ROOT=$(pwd)
HERE=${HERE:-$ROOT/.dev/fp8pipe}
OUT=${OUT:-/tmp/fp8-fast-accum-out}
W=${WORK:-/tmp/fp8fast}
mkdir -p "$OUT" "$W"
t0=$(date +%s)
note() { echo "[$(( $(date +%s) - t0 )) s] $*" | tee -a "$OUT/summary.txt"; }
B=$W/bin
[ -x "$B/cuda_bench" ] || { mkdir -p "$B" && tar -xJf "$HERE/bin.tar.xz" -C "$B"; } || { echo "cannot unpack binaries"; exit 1; }
source "$ROOT/tools/device/cuda-libs.sh"
source "$ROOT/tools/device/random-flux.sh"
export FLUX_TRT_KERNEL_CACHE=/tmp/flux-trt-kernels RUST_LOG=${RUST_LOG:-warn} ORT_DYLIB_PATH=$B/libonnxruntime.so.1.31.1
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; date -u +%FT%TZ; echo "binaries from $(cat "$B/COMMIT" 2>/dev/null)"; } | tee "$OUT/summary.txt"   # 8 files come back: no separate machine.txt

M=$W/model; ADS="$W/a64.safetensors,$W/b64.safetensors"
random_transformer "$M" || { note "make-random-flux failed"; exit 1; }
random_adapters "$W"
note "random model + adapters"
E16=$W/engine-bf16
if [ ! -f "$W/ref.bin" ]; then
  "$B/build-engine" --model "$M" --lora "$W/a64.safetensors" --lora "$W/b64.safetensors" --precision bf16 --out "$E16" --no-hash > "$W/export-bf16.log" 2>&1
  timeout 120 "$B/cuda_fp8_check" ref --engine "$E16" --adapters "$ADS" --out "$W/ref.bin" > "$W/ref.log" 2>&1
  note "bf16 reference outputs: rc=$? $(tail -1 "$W/ref.log" | cut -c1-300)"
  rm -rf "$E16"
fi
python3 "$ROOT/tools/device/fp8-placeholder.py" "$W/calib-placeholder.json"
E8=$W/engine-fp8t
[ -f "$E8/manifest.json" ] || "$B/build-engine" --model "$M" --lora "$W/a64.safetensors" --lora "$W/b64.safetensors" --precision fp8 \
  --fp8-weight-scale tensor --calib-in "$W/calib-placeholder.json" --out "$E8" --no-hash > "$W/export-fp8.log" 2>&1
note "export fp8 per-tensor: rc=$?"
for fa in --fp8-precise-accum ""; do
  n=check${fa:+-precise}
  timeout 150 "$B/cuda_fp8_check" fp8 --engine "$E8" --adapters "$ADS" --reference "$W/ref.bin" --calib 8 $fa \
    --scales-out "$([ -n "$fa" ] && echo "$OUT" || echo "$W")/scales.json" --json "$OUT/$n.json" > "$W/$n.log" 2>&1
  note "FP8 vs bf16 ${fa:-(fast accumulation)}: rc=$? $(grep -E '^(Dynamic|Static)|FAILED' "$W/$n.log" | cut -c1-700 | tr '\n' ' ')"
done
for a in "--fp8-precise-accum" "" "--fp8-attention"; do
  n=bench$(echo "$a" | sed 's/--fp8-precise-accum/-precise/; s/--fp8-attention/-fp8attn/')
  timeout 100 "$B/cuda_bench" --engine "$E8" --adapters "$W/a64.safetensors" --shapes 1024x1024x1 --steps 20 --warmup 2 $a \
    --fp8-scales "$OUT/scales.json" --json "$OUT/$n.json" > "$W/$n.log" 2>&1
  note "bench FP8 (static, GPU-calibrated) ${a:-(fast accumulation)}: rc=$? $(grep -oE '"ms_per_step_median_gpu":[0-9.]+' "$W/$n.log") $(grep -oE '"gemm_ms":[0-9.]+' "$W/$n.log")"
done
nvidia-smi --query-gpu=memory.used,temperature.gpu,clocks.sm --format=csv,noheader >> "$OUT/summary.txt"
cat "$W"/check*.log "$W"/bench*.log > "$OUT/logs.txt" 2>/dev/null
[ -n "${KEEP_WORK:-}" ] || rm -rf "$M" "$E8"
cat "$OUT/summary.txt"
