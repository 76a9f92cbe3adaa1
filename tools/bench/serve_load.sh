#!/usr/bin/env bash
# Load run of `flux-trt serve` on the tiny engine (CPU): builds the engine and an adapter folder,
# then `flux-trt serve-load` compares adapter-aware and FIFO scheduling over N requests.
# Usage: tools/bench/serve_load.sh [FLUX_TRT_BIN_DIR] [N]   (bin dir default target/release)
set -euo pipefail
cd "$(dirname "$0")/../.."
source tools/env.sh
BIN=${1:-target/release}
N=${2:-1000}
W=$(mktemp -d)
"$BIN/build-engine" --pipeline tests/fixtures/pipeline/flux-tiny --model tests/fixtures/models/dev-diffusers \
    --lora tests/fixtures/loras/attn.peft.safetensors --lora tests/fixtures/pipeline/loras/clip.peft.safetensors --out "$W/tiny" >/dev/null
mkdir -p "$W/adapters"
cp tests/fixtures/loras/attn.peft.safetensors "$W/adapters/attn.safetensors"
cp tests/fixtures/pipeline/loras/clip.peft.safetensors "$W/adapters/clip.safetensors"
"$BIN/flux-trt" serve-load --engine "$W/tiny" --adapters "$W/adapters" --requests "$N" --concurrency 8 \
    --size 64x64 --steps 2 --mix base,attn,attn:0.5,clip,attn+clip \
    --out tools/bench/results/serve_load_tiny_cpu.json -- --threads 1 --max-size 64 --default-size 64
rm -rf "$W"
