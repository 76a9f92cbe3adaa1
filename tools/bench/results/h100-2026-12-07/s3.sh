#!/usr/bin/env bash
# Session 6, call 3: fp16 accuracy vs the diffusers fp32 yardstick, then serve-load full (adapter-aware vs FIFO)
set -u
ROOT=$(pwd); O=/tmp/o3; mkdir -p $O; W=/tmp/cudacheck
export HERE=$ROOT/.dev/g
rm -rf $W/engine-fp8t $W/engine-fp8
t0=$(date +%s)
if [ -z "${SKIP_FP16:-}" ]; then
  SKIP_TINY=1 SKIP_BF16=1 OUT=$O timeout 150 bash tools/device/cuda-check.sh > $O/cuda-check-fp16.out 2>&1; echo "fp16 check rc=$?"; tail -8 $O/summary.txt
  rm -rf $W/engine-fp16
fi
left=$(( ${BUDGET:-570} - ($(date +%s)-t0) - 20 ))
ms=$(( (left - 90) / 2 ))
echo "serve-load with $left s left, $ms s per policy"
MAX_SECONDS=$ms REQUESTS=${REQUESTS:-1000} OUT=$O timeout $left bash tools/device/serve-load.sh full > $O/serve-load.out 2>&1; echo "serve-load rc=$?"
cat $O/serve-load-full.txt 2>/dev/null | tail -30
