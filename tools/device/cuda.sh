#!/usr/bin/env bash
# Native CUDA backend (issue 12) on the GPU machine. Nothing is built there: the binaries are built
# here and carried in .dev/cuda/ (git-ignored).
#
# Here:   cargo test --features cuda,export --test cuda --no-run      (prints the test executable)
#         mkdir -p /work/main/.dev/NAME && cp <that executable> /work/main/.dev/NAME/cuda-test
#         (built in the checkout /work/wt/NAME: pass BUILT_IN=that path there if it is another one)
#         cargo build --release --features cuda --example cuda_bench --bin make-random-flux --bin build-engine
#         cp $CARGO_TARGET_DIR/release/{make-random-flux,build-engine,examples/cuda_bench} tools/device/cuda*.sh /work/main/.dev/NAME/
#         strip /work/main/.dev/NAME/*   (the binaries)
# There:  bash .dev/NAME/cuda.sh test        (carry .dev/NAME; GPU tests vs the diffusers goldens)
#         bash .dev/NAME/cuda.sh bench       (full-size random FLUX.1-dev, bf16, rank-64 attention slots)
#         bash .dev/NAME/cuda-full.sh bench|seed  (tests + bench + ablations, then the seed recipe anchor)
#
# Whole image (tokenizers, CLIP-L, T5-XXL, transformer, VAE): a random FluxPipeline folder in the real
# shapes replaces "$W/model" (its transformer/ is the same model: same seed, same writer). The 64 GB
# disk cannot hold the 23.8 GB transformer + its engine + 9.5 GB of T5 + its export at once, so keep T5
# to a few of its 24 blocks (full width; 26.0 GB of weights with 4 blocks, README):
#   "$BIN/make-random-flux" --pipeline --out "$W/pipe" --t5-layers 4 --tokenizers "$ROOT/tests/fixtures/pipeline/flux-tiny"
#   "$BIN/build-engine" --pipeline "$W/pipe" --lora "$W/a64.safetensors" --lora "$W/b64.safetensors" --precision bf16 --out "$W/engine-pipe" --no-hash
#   "$BIN/flux-trt" generate --engine "$W/engine-pipe" --backend cuda --cuda 0 --prompt "a cat" --steps 28 --width 1024 --height 1024 --out "$OUT/cat.png"
# (--cuda 0 puts the text encoders and the VAE on ONNX Runtime's CUDA provider: its CPU one has no bf16
# kernels. Not run on the GPU yet.)
#
# CUDA 13 libraries: the image has them as pip `nvidia-*` packages (libcublasLt.so.13,
# libnvrtc.so.13, libcudnn.so.9). cudarc's loader asks for the unversioned names and the CUDA 12
# ones, so `tools/device/cuda-libs.sh` (sourced below) links `libcublasLt.so`, `libnvrtc.so`, `libcudnn.so` to them in a folder put
# first on LD_LIBRARY_PATH. Do the same for any deployment on CUDA 13.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
cd "$HERE/../.." 2>/dev/null || true
ROOT=$(pwd)
BIN=${BIN:-$HERE}
export FLUX_TRT_TEST_BINS=${FLUX_TRT_TEST_BINS:-$BIN}   # tests/cuda.rs runs build-engine and flux-trt from here
OUT=${OUT:-/tmp/cuda-out}
W=${WORK:-/tmp/cudawork}
mkdir -p "$OUT" "$W"
source "$ROOT/tools/device/cuda-libs.sh"
export FLUX_TRT_KERNEL_CACHE=${FLUX_TRT_KERNEL_CACHE:-/tmp/flux-trt-kernels}
export RUST_LOG=${RUST_LOG:-info}
info() { nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; date -u +%FT%TZ; ls -l "$LINKS"; }

case "${1:-test}" in
env) return 0 2>/dev/null || exit 0 ;;  # `source cuda.sh env`: only the library setup above
test)
  info > "$OUT/machine.txt"
  # the test executable looks for tests/fixtures under the checkout it was built in (CARGO_MANIFEST_DIR)
  src=${BUILT_IN:-/work/wt/cudaperf}
  [ -e "$src/tests/fixtures" ] || { mkdir -p "$(dirname "$src")"; ln -sfn "$ROOT" "$src"; }
  "$BIN/cuda-test" --include-ignored --test-threads 1 --nocapture ${TEST_FILTER:-} 2>&1 | tee "$OUT/test.log" | grep -E "^test |rel L2|panicked|error|FAILED|passed|failed" | head -80
  exit "${PIPESTATUS[0]}"
  ;;
bench)
  info > "$OUT/machine.txt"
  MRF_ARGS=${MRF_ARGS:-}
  [ -d "$W/model" ] || "$BIN/make-random-flux" --out "$W/model" --layout diffusers --dtype bf16 $MRF_ARGS > "$OUT/make.log" 2>&1 || { tail -5 "$OUT/make.log"; exit 1; }
  [ -f "$W/a64.safetensors" ] || "$BIN/make-random-flux" --out "$W/a64.safetensors" --lora attn --rank 64 --seed 2 $MRF_ARGS ${LORA_ARGS:-} >> "$OUT/make.log" 2>&1
  [ -f "$W/b64.safetensors" ] || "$BIN/make-random-flux" --out "$W/b64.safetensors" --lora attn --rank 64 --seed 3 $MRF_ARGS ${LORA_ARGS:-} >> "$OUT/make.log" 2>&1 || { tail -5 "$OUT/make.log"; exit 1; }
  [ -f "$W/engine-bf16/manifest.json" ] || "$BIN/build-engine" --model "$W/model" --lora "$W/a64.safetensors" --lora "$W/b64.safetensors" \
      --precision bf16 --out "$W/engine-bf16" --no-hash > "$OUT/export.log" 2>&1 || { tail -20 "$OUT/export.log"; exit 1; }
  # the checkpoint is not needed once exported (the full-size pair is 2 × 24 GB on a 64 GB disk)
  [ -n "${RM_MODEL:-}" ] && rm -rf "$W/model"
  echo "model + adapters + export done at $(date -u +%FT%TZ)"; tail -2 "$OUT/make.log"; tail -1 "$OUT/export.log"
  nvidia-smi --query-gpu=memory.used --format=csv,noheader
  "$BIN/cuda_bench" --engine "$W/engine-bf16" --adapters "$W/a64.safetensors,$W/b64.safetensors" --json "$OUT/cuda-bench.json" ${BENCH_ARGS:-} 2>&1 | tee "$OUT/cuda-bench.log" | tail -40
  exit "${PIPESTATUS[0]}"
  ;;
*) echo "unknown stage $1 (test, bench)" >&2; exit 2 ;;
esac
