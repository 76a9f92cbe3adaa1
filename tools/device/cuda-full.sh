#!/usr/bin/env bash
# Issue 12 item 6 on the GPU machine, in two calls of ≤ 330 s on one warm machine (the second
# within the machine's 30 s idle window, so both run in the same lease):
#   bash .dev/NAME/cuda-full.sh bench   (carry .dev/NAME)
#       GPU tests (tests/cuda.rs tiny goldens, cuda_attention, cuda_fp8), the full-size random
#       FLUX.1-dev bench of this build (`cuda.sh bench`: all shapes, breakdown, swaps, GEMM
#       autotuning table), then on the same engine at 1024²: this build with autotuning off
#       (FLUX_TRT_GEMM_TUNE=0) and, when carried, the previous build (`cuda_bench_old`).
#   bash .dev/NAME/cuda-full.sh seed    (carry .dev/NAME and .device/part1)
#       the seed recipe anchor (diffusers + PEFT hotswap + torch.compile, `seed_recipe.py bf16`,
#       SDPA=cudnn) on the same machine.
# Binaries are built here and carried (see cuda.sh); nothing is built there.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
cd "$HERE/../.." 2>/dev/null || true
ROOT=$(pwd)
export BIN=${BIN:-$HERE}
# everything is written under a local folder and comes back as one tarball in $OUT (the tool
# returns at most 8 files)
RET=${OUT:-/tmp/cuda-out}
export OUT=/tmp/cuda-res-${1:-bench}
export WORK=${WORK:-/tmp/cudawork}
mkdir -p "$OUT" "$RET"
pack() { tar czf "$RET/${1:-bench}.tgz" -C "$OUT" . ; cp "$OUT"/*.json "$RET/" 2>/dev/null; true; }
trap 'pack "${1:-bench}"' EXIT
t0=$(date +%s)
el() { echo "$(( $(date +%s) - t0 )) s"; }
case "${1:-bench}" in
bench)
  echo "== GPU tests $(date -u +%FT%TZ)"
  OUT=$OUT timeout ${TEST_LIMIT:-100} bash "$BIN/cuda.sh" test > "$OUT/test-summary.txt" 2>&1; echo "cuda tests rc=$? after $(el)"
  grep -E "^test result|FAILED|panicked" "$OUT/test-summary.txt" | head -8
  for t in cuda_attention cuda_fp8; do
    [ -x "$BIN/$t" ] || continue
    ( source "$BIN/cuda.sh" env; timeout ${TEST_LIMIT2:-40} "$BIN/$t" --include-ignored --test-threads 1 --nocapture ) > "$OUT/$t.log" 2>&1
    echo "$t rc=$? after $(el)"; grep -E "^test result|FAILED|panicked" "$OUT/$t.log" | head -4
  done
  echo "== cuda bench (full size) $(date -u +%FT%TZ)"
  BENCH_ARGS="--save-output $WORK/out-tuned.bin ${BENCH_ARGS:-}" RM_MODEL=1 timeout ${BENCH_LIMIT:-200} bash "$BIN/cuda.sh" bench > "$OUT/bench-summary.txt" 2>&1
  echo "cuda bench rc=$? after $(el)"; grep -E "^[0-9]+x[0-9]+ batch" "$OUT/bench-summary.txt" | cut -c1-400
  E=$WORK/engine-bf16
  ( source "$BIN/cuda.sh" env
    FLUX_TRT_GEMM_TUNE=0 timeout 60 "$BIN/cuda_bench" --engine "$E" --adapters "$WORK/a64.safetensors" --shapes 1024x1024x1 \
      --json "$OUT/bench-notune.json" --save-output "$WORK/out-notune.bin" 2>&1 | grep -E "^[0-9]+x" | cut -c1-300
    echo "notune rc=$? after $(el)"
    if [ -x "$BIN/cuda_bench_old" ]; then
      timeout 60 "$BIN/cuda_bench_old" --engine "$E" --adapters "$WORK/a64.safetensors" --shapes 1024x1024x1 --json "$OUT/bench-old.json" 2>&1 | grep -E "^[0-9]+x" | cut -c1-300
      echo "old rc=$? after $(el)"
    fi )
  python3 - "$WORK" <<'PY' 2>&1 | tee "$OUT/compare.txt"
import sys, numpy as np
w = sys.argv[1]
try:
    a = np.fromfile(f"{w}/out-tuned.bin", dtype="<f4"); b = np.fromfile(f"{w}/out-notune.bin", dtype="<f4")
    print("tuned vs heuristic-only output (1024², set a): rel L2 %.3e, max |d| %.3e, finite %s" % (np.linalg.norm(a - b) / np.linalg.norm(b), np.abs(a - b).max(), np.isfinite(a).all()))
except Exception as e:
    print("compare failed:", e)
PY
  nvidia-smi --query-gpu=memory.used,temperature.gpu,clocks.sm,power.draw --format=csv,noheader
  ;;
seed)
  echo "== seed recipe (bf16, SDPA=cudnn) $(date -u +%FT%TZ)"
  nvidia-smi --query-gpu=name,driver_version,memory.used --format=csv,noheader
  ( bash "$ROOT/.device/part1/assemble.sh" && source /opt/dev/env.sh && SDPA=cudnn timeout ${SEED_LIMIT:-310} python3 "${SEED_RECIPE:-$ROOT/tools/bench/seed_recipe.py}" bf16 ) > "$OUT/seed-bf16.log" 2>&1
  echo "seed rc=$? after $(el)"
  grep -E "RESULT|Error|error" "$OUT/seed-bf16.log" | tail -5
  ;;
extra)
  # FP8 GEMM tests (issue 13: accuracy vs the dequantized reference, time per FLUX shape) and the
  # burst-vs-sustained GEMM probe (tools/bench/gemm_sustained.py: clocks and power during each)
  echo "== gemm_sustained $(date -u +%FT%TZ)"
  timeout ${PROBE_LIMIT:-120} python3 "${PROBE:-$ROOT/tools/bench/gemm_sustained.py}" > "$OUT/gemm-sustained.log" 2>&1
  echo "probe rc=$? after $(el)"; tail -2 "$OUT/gemm-sustained.log" | cut -c1-600
  echo "== cuda_fp8 $(date -u +%FT%TZ)"
  ( source "$BIN/cuda.sh" env; timeout ${FP8_LIMIT:-150} "$BIN/cuda_fp8" --include-ignored --test-threads 1 --nocapture ) > "$OUT/cuda_fp8.log" 2>&1
  echo "cuda_fp8 rc=$? after $(el)"; grep -E "^test result|FAILED|panicked|per step" "$OUT/cuda_fp8.log" | head -8
  ;;
*) echo "unknown stage $1 (bench, seed, extra)" >&2; exit 2 ;;
esac
