#!/usr/bin/env bash
# FP8 TensorRT-RTX AOT builds on the GPU machine (H200 builds sm89/sm120 plans, cannot run them):
# exports the tiny fixture model as FP8 (bf16 float dtype, the TensorRT form) from a saved
# calibration (no ONNX Runtime needed), then builds plans for each weight-scale mode, with and
# without attention Q/DQ. Writes $OUT/fp8-*.json (exit code, plan bytes, layer counts incl.
# QUANTIZE/DEQUANTIZE, build seconds) and the build log.
#
# Here, once:  cargo build --features tensorrt --bin build-engine && mkdir -p .fp8dev &&
#              cp $CARGO_TARGET_DIR/debug/build-engine .fp8dev/ && strip .fp8dev/build-engine
#              (carry .fp8dev; TensorRT libraries from tools/device/stage.sh trt)
# There:       bash .device/partN/assemble.sh && source /opt/dev/env.sh && bash tools/device/fp8_build.sh [tiny]
#              ... tools/device/fp8_build.sh full-export   (needs .fp8dev/make-random-flux; DOUBLE/SINGLE blocks)
#              ... tools/device/fp8_build.sh full-build sm89
# full-*: a random FLUX.1-dev-shaped bf16 checkpoint exported as FP8 (bf16 elsewhere, per-channel,
# slots on attn at rank 32) with a synthetic calibration (amax 8 everywhere: timings and sizes only).
set -uo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-.fp8dev/build-engine}
WORK=${WORK:-/tmp/fp8work}
OUT=${OUT:-/tmp/fp8out}
CALIB=${CALIB:-tools/device/fp8-tiny-calib.json}
mkdir -p "$WORK" "$OUT"
[ -n "${TRT_RTX_LIB_DIR:-}" ] || { echo "TRT_RTX_LIB_DIR is unset: source /opt/dev/env.sh first" >&2; exit 2; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader || true
stage=${1:-tiny}
DOUBLE=${DOUBLE:-19}
SINGLE=${SINGLE:-38}
if [ "$stage" = full-export ]; then
  ck="$WORK/flux-dev-random.safetensors"; d="$WORK/full-fp8"; t0=$(date +%s.%N)
  "${MRF:-.fp8dev/make-random-flux}" --out "$ck" --layout bfl --dtype bf16 --double "$DOUBLE" --single "$SINGLE" > "$OUT/full-make.log" 2>&1 || { tail -3 "$OUT/full-make.log"; exit 1; }
  t1=$(date +%s.%N)
  python3 "$(dirname "$0")/fp8-placeholder.py" "$WORK/full-calib.json" "$DOUBLE" "$SINGLE"
  /usr/bin/time -v "$BIN" --model "$ck" --targets attn --max-rank 32 --precision fp8 --calib-in "$WORK/full-calib.json" --out "$d" --no-hash > "$OUT/full-export.log" 2>&1
  rc=$?; t2=$(date +%s.%N); rm -f "$ck"
  rss=$(grep "Maximum resident" "$OUT/full-export.log" | awk '{print $6}')
  printf '{"double": %s, "single": %s, "make_seconds": %.1f, "export_exit": %s, "export_seconds": %.1f, "export_peak_rss_kb": "%s", "onnx_data_bytes": %s}\n' \
    "$DOUBLE" "$SINGLE" "$(awk "BEGIN{print $t1-$t0}")" "$rc" "$(awk "BEGIN{print $t2-$t1}")" "$rss" "$(stat -c %s "$d/model.onnx.data" 2>/dev/null || echo 0)" > "$OUT/full-export.json"
  cat "$OUT/full-export.json"; tail -3 "$OUT/full-export.log"; df -h "$WORK" | tail -1; exit 0
fi
if [ "$stage" = full-build ]; then
  t=${2:-sm89}; d="$WORK/full-fp8"; rc=0
  "$BIN" --out "$d" --tensorrt-only --trt-targets "$t" --plan-file "engine-$t.plan" --trt-report "$OUT/full-fp8-$t.json" > "$OUT/full-build-$t.log" 2>&1 || rc=$?
  echo "== full fp8 $t: exit $rc"; tail -4 "$OUT/full-build-$t.log"; ls -l "$d"; rm -f "$d/engine-$t.plan"; exit 0
fi
for mode in channel tensor; do
  for attn in "" attn; do
    name="fp8-$mode${attn:+-$attn}"; d="$WORK/$name"
    "$BIN" --model tests/fixtures/models/dev-bfl.safetensors --lora tests/fixtures/loras/attn.peft.safetensors \
      --precision fp8 --fp8-weight-scale "$mode" ${attn:+--fp8-attention} --calib-in "$CALIB" --out "$d" --no-hash \
      > "$OUT/$name.log" 2>&1 || { echo "== $name: export failed"; tail -5 "$OUT/$name.log"; continue; }
    for t in sm89 sm120; do
      rc=0
      "$BIN" --out "$d" --tensorrt-only --trt-targets "$t" --plan-file "engine-$t.plan" --recipe "${RECIPE:-tools/device/tiny.toml}" \
        --trt-report "$OUT/$name-$t.json" >> "$OUT/$name.log" 2>&1 || rc=$?
      echo "== $name $t: exit $rc $(ls -l "$d/engine-$t.plan" 2>/dev/null | awk '{print $5" bytes"}')"
      [ $rc -eq 0 ] || tail -8 "$OUT/$name.log"
    done
  done
done
