#!/usr/bin/env bash
# FP8 TensorRT-RTX AOT builds on the GPU machine (H200 builds sm89/sm120 plans, cannot run them):
# exports the tiny fixture model as FP8 (bf16 float dtype, the TensorRT form) from a saved
# calibration (no ONNX Runtime needed), then builds plans for each weight-scale mode, with and
# without attention Q/DQ. Writes $OUT/fp8-*.json (exit code, plan bytes, layer counts incl.
# QUANTIZE/DEQUANTIZE, build seconds) and the build log.
#
# Here, once:  cargo build --features tensorrt --bin build-engine && mkdir -p .fp8dev &&
#              cp $CARGO_TARGET_DIR/debug/build-engine .fp8dev/ && strip .fp8dev/build-engine
#              (carry .fp8dev; TensorRT libraries from ../shared/device/stage.sh trt)
# There:       bash .device/partN/assemble.sh && source /opt/dev/env.sh && bash tools/device/fp8_build.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-.fp8dev/build-engine}
WORK=${WORK:-/tmp/fp8work}
OUT=${OUT:-/tmp/fp8out}
CALIB=${CALIB:-tools/device/fp8-tiny-calib.json}
mkdir -p "$WORK" "$OUT"
[ -n "${TRT_RTX_LIB_DIR:-}" ] || { echo "TRT_RTX_LIB_DIR is unset: source /opt/dev/env.sh first" >&2; exit 2; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader || true
for mode in channel tensor; do
  for attn in "" attn; do
    name="fp8-$mode${attn:+-$attn}"; d="$WORK/$name"
    "$BIN" --model tests/fixtures/models/dev-bfl.safetensors --lora tests/fixtures/loras/attn.peft.safetensors \
      --precision fp8 --fp8-weight-scale "$mode" ${attn:+--fp8-attention} --calib-in "$CALIB" --out "$d" --no-hash \
      > "$OUT/$name.log" 2>&1 || { echo "== $name: export failed"; tail -5 "$OUT/$name.log"; continue; }
    for t in sm89 sm120; do
      rc=0
      "$BIN" --out "$d" --tensorrt-only --trt-targets "$t" --plan-file "engine-$t.plan" --recipe tools/device/tiny.toml \
        --trt-report "$OUT/$name-$t.json" >> "$OUT/$name.log" 2>&1 || rc=$?
      echo "== $name $t: exit $rc $(ls -l "$d/engine-$t.plan" 2>/dev/null | awk '{print $5" bytes"}')"
      [ $rc -eq 0 ] || tail -8 "$OUT/$name.log"
    done
  done
done
