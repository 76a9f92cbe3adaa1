#!/usr/bin/env bash
# Issue 12 item 6 in one GPU-machine call (carry .dev/cuda and .device/part1): the native CUDA
# backend's full-size bf16 benchmark (`cuda.sh bench`: random FLUX.1-dev-shaped model, 19 double +
# 38 single blocks, rank-64 attention slots), then the seed recipe anchor
# (diffusers + PEFT hotswap + torch.compile, `seed_recipe.py bf16`, SDPA=cudnn) on the same machine.
# Each part runs under `timeout` so the whole call stays below 9 minutes; cuda_bench writes its JSON
# after every shape.
set -u
cd "$(dirname "$0")/../.." 2>/dev/null || true
ROOT=$(pwd)
BIN=${BIN:-$ROOT/.dev/cuda}
export OUT=${OUT:-/tmp/cuda-out}
mkdir -p "$OUT"
t0=$(date +%s)
echo "== cuda bench (full size) $(date -u +%FT%TZ)"
RM_MODEL=1 timeout ${BENCH_LIMIT:-330} bash "$BIN/cuda.sh" bench
echo "cuda bench rc=$? after $(( $(date +%s) - t0 )) s"
nvidia-smi --query-gpu=memory.used --format=csv,noheader
left=$(( ${TOTAL_LIMIT:-535} - ($(date +%s) - t0) ))
echo "== seed recipe (bf16, SDPA=cudnn), limit ${left} s $(date -u +%FT%TZ)"
( bash .device/part1/assemble.sh && source /opt/dev/env.sh && SDPA=cudnn timeout "$left" python3 "${SEED_RECIPE:-$ROOT/tools/bench/seed_recipe.py}" bf16 ) > "$OUT/seed-bf16.log" 2>&1
echo "seed rc=$? after $(( $(date +%s) - t0 )) s"
grep -E "RESULT|Error|error" "$OUT/seed-bf16.log" | tail -5
