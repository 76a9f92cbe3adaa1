#!/usr/bin/env bash
# Session 6, call 1: GPU tests, swap bench, cuda-check (tiny + full bf16; the pipeline engine is kept)
set -u
ROOT=$(pwd); G=$ROOT/.dev/g; O=/tmp/o1; mkdir -p $O
export HERE=$G
# the test executable reads tests/fixtures under the checkout it was built in
[ -e /work/main/tests/fixtures ] || { mkdir -p /work; ln -sfn "$ROOT" /work/main; }
W=/tmp/cudacheck; B=$W/bin; mkdir -p $B; tar -xJf $G/bin.tar.xz -C $B || exit 1
t0=$(date +%s); note(){ echo "[$(( $(date +%s)-t0 )) s] $*" | tee -a $O/s1.txt; }
source tools/device/cuda-libs.sh
export FLUX_TRT_KERNEL_CACHE=/tmp/flux-trt-kernels ORT_DYLIB_PATH=$B/libonnxruntime.so.1.31.1
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; date -u +%FT%TZ; nproc; df -h /tmp | tail -1; } > $O/machine.txt
cat $O/machine.txt
( $B/make-random-flux --pipeline --out $W/pipe --t5-layers 2 --tokenizers $ROOT/tests/fixtures/pipeline/flux-tiny > $W/make.log 2>&1
  $B/make-random-flux --out $W/a64.safetensors --lora attn --rank 64 --seed 2 >> $W/make.log 2>&1
  $B/make-random-flux --out $W/b64.safetensors --lora attn --rank 64 --seed 3 >> $W/make.log 2>&1 ) & MK=$!
timeout 220 $B/cuda-test --include-ignored --test-threads 1 --nocapture > $O/test.log 2>&1
note "tests/cuda.rs (all GPU tests): rc=$?"; grep -E "^test |test result|panicked" $O/test.log | tee -a $O/s1.txt
wait $MK; note "random pipeline + adapters: $(tail -1 $W/make.log | cut -c1-200)"; cp $W/make.log $O/
timeout 90 $B/slot_bench --adapter $W/a64.safetensors --cuda 0 --reps 20 --json $O/slot_bench.json > $O/slot_bench.log 2>&1
note "slot_bench: rc=$?"; grep -E "stage|copy" $O/slot_bench.log | cut -c1-400 | tee -a $O/s1.txt
left=$(( ${BUDGET:-560} - ($(date +%s)-t0) ))
note "cuda-check.sh with $left s left"
SKIP_FP16=1 PIPE_ENGINE=1 OUT=$O timeout $left bash tools/device/cuda-check.sh > $O/cuda-check.out 2>&1
note "cuda-check: rc=$?"; tail -40 $O/summary.txt 2>/dev/null
df -h /tmp | tail -1 >> $O/s1.txt; ls $W >> $O/s1.txt
