#!/usr/bin/env bash
# Issue 14 item 5: `flux-trt serve-load` on the GPU machine, the transformer on the native CUDA backend
# (`serve --backend cuda`), adapter-aware vs FIFO, results in $OUT. Nothing is built there: the same
# binaries as tools/device/cuda-check.sh (its header says how to pack them into $HERE/bin.tar.xz).
#
#   bash .dev/cuda4/serve-load.sh tiny    the repository's tiny pipeline (fp32 engine, CLIP + transformer
#                                         LoRA slots), the fixture adapters; 64x64, 2 steps
#   bash .dev/cuda4/serve-load.sh full    a random full-size FluxPipeline folder (make-random-flux --pipeline:
#                                         FLUX.1-dev-shaped transformer in bf16, CLIP-L, VAE, T5-XXL width with
#                                         $T5_LAYERS of its 24 layers so the 64 GB disk holds it; cuda-check.sh's
#                                         when it ran first on this machine), text encoders and VAE in fp32 on
#                                         ONNX Runtime CPU (T5 at $T5_LEN (128) tokens), rank-64 attention adapters
#                                         A and B; 128x128, 4 steps (the CPU's VAE decode and T5 bound the rate)
# Env: REQUESTS (1000), CONCURRENCY (8), SIZE, STEPS, MAX_SECONDS (per policy), SCHEDULES, T5_LAYERS (2), MAX_WAIT_MS (full: 10000).
set -u
cd "$(dirname "$0")/../.." 2>/dev/null || true
ROOT=$(pwd)
HERE=${HERE:-$ROOT/.dev/cuda4}
OUT=${OUT:-/tmp/serve-load-out}
W=${WORK:-/tmp/serveload}
FX=$ROOT/tests/fixtures
MODE=${1:-tiny}
mkdir -p "$OUT" "$W"
t0=$(date +%s)
note() { echo "[$(( $(date +%s) - t0 )) s] $*" | tee -a "$OUT/serve-load-$MODE.txt"; }
B=$W/bin
if [ ! -x "$B/flux-trt" ]; then mkdir -p "$B" && tar -xJf "$HERE/bin.tar.xz" -C "$B" || { echo "cannot unpack binaries"; exit 1; }; fi
source "$ROOT/tools/device/cuda-libs.sh"
export ORT_DYLIB_PATH=$B/libonnxruntime.so.1.31.1
export FLUX_TRT_KERNEL_CACHE=/tmp/flux-trt-kernels
export RUST_LOG=${RUST_LOG:-warn}
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; date -u +%FT%TZ; nproc; } > "$OUT/machine-serve-$MODE.txt"

case "$MODE" in
  tiny)
    E=$W/tiny-pipe; A=$W/tiny-adapters
    mkdir -p "$A" && cp "$FX/loras/attn.peft.safetensors" "$A/attn.safetensors" && cp "$FX/pipeline/loras/clip.peft.safetensors" "$A/clip.safetensors"
    [ -f "$E/manifest.json" ] || "$B/build-engine" --pipeline "$FX/pipeline/flux-tiny" --model "$FX/models/dev-diffusers" \
      --lora "$FX/loras/attn.peft.safetensors" --lora "$FX/pipeline/loras/clip.peft.safetensors" --out "$E" > "$W/tiny-build.log" 2>&1 \
      || { note "build-engine failed"; tail -5 "$W/tiny-build.log" | tee -a "$OUT/serve-load-$MODE.txt"; exit 1; }
    SIZE=${SIZE:-64x64}; STEPS=${STEPS:-2}; MIX=${MIX:-base,attn,attn:0.5,clip,attn+clip}
    SERVER_ARGS=(--backend cuda --threads 4 --max-size 256 --default-size 64)
    ;;
  full)
    # the random pipeline folder and adapters of tools/device/cuda-check.sh when it ran before on this machine
    CW=${CHECK_WORK:-/tmp/cudacheck}
    P=$CW/pipe; E=$W/engine; A=$W/adapters
    mkdir -p "$A"
    # cuda-check.sh with PIPE_ENGINE=1 leaves the same pipeline engine (bf16, fp32 text encoders, T5 at 128 tokens)
    [ -f "$CW/engine-bf16/text_encoder/manifest.json" ] && E=$CW/engine-bf16
    rm -rf "$CW/engine-fp16"   # the disk holds the folder and one engine
    if [ ! -d "$P" ]; then
      "$B/make-random-flux" --pipeline --out "$P" --t5-layers "${T5_LAYERS:-2}" --tokenizers "$FX/pipeline/flux-tiny" > "$W/make.log" 2>&1 \
        || { note "make-random-flux --pipeline failed"; tail -5 "$W/make.log" | tee -a "$OUT/serve-load-$MODE.txt"; exit 1; }
    fi
    for s in 2:a64 3:b64; do
      f=$A/${s#*:}.safetensors
      [ -f "$CW/${s#*:}.safetensors" ] && cp "$CW/${s#*:}.safetensors" "$f" || "$B/make-random-flux" --out "$f" --lora attn --rank 64 --seed "${s%%:*}" >> "$W/make.log" 2>&1
    done
    note "random pipeline $(du -sh "$P" | cut -f1) + adapters"
    [ -f "$E/manifest.json" ] || "$B/build-engine" --pipeline "$P" --model "$P/transformer" --lora "$A/a64.safetensors" --lora "$A/b64.safetensors" \
      --precision bf16 --text-encoder-precision fp32 --t5-max-length "${T5_LEN:-128}" --out "$E" --no-hash > "$W/build.log" 2>&1 \
      || { note "build-engine failed"; tail -5 "$W/build.log" | tee -a "$OUT/serve-load-$MODE.txt"; exit 1; }
    note "engine: $(du -sh "$E" | cut -f1)"
    SIZE=${SIZE:-128x128}; STEPS=${STEPS:-4}; MIX=${MIX:-base,a64,b64,a64:0.5,b64:0.75}  # a64+b64 needs rank 128 > the slots' 64 (a 422)
    # the CPU stages make every image ≈ 0.5 s of worker time: with 8 clients requests wait ≈ 3.5 s, so the
    # starvation bound must be above that or adapter-aware degenerates to FIFO (2026-12-07 H100 run)
    SERVER_ARGS=(--backend cuda --threads 16 --max-size 1024 --default-size 256 --stage-budget-mib 2048 --max-wait-ms "${MAX_WAIT_MS:-10000}")
    ;;
  *) echo "mode: tiny or full"; exit 2 ;;
esac

"$B/flux-trt" serve-load --server "$B/flux-trt" --engine "$E" --adapters "$A" --requests "${REQUESTS:-1000}" --concurrency "${CONCURRENCY:-8}" \
  --size "$SIZE" --steps "$STEPS" --mix "$MIX" --schedules "${SCHEDULES:-adapter-aware,fifo}" --max-seconds "${MAX_SECONDS:-240}" \
  --out "$OUT/serve-load-$MODE-${SCHEDULES:-adapter-aware,fifo}.json" -- "${SERVER_ARGS[@]}" > "$W/load-$MODE.md" 2> "$W/load-$MODE.log"
r=$?
note "serve-load $MODE: rc=$r"
cat "$W/load-$MODE.md" | tee -a "$OUT/serve-load-$MODE.txt"
tail -5 "$W/load-$MODE.log" >> "$OUT/serve-load-$MODE.txt"
exit $r
