#!/usr/bin/env bash
# TensorRT-RTX AOT builds on the GPU machine (H200): plan size with/without --strip-weights, wall
# time, peak host RSS and peak GPU memory for sm89 and sm120 plans. The H200 (sm90) can build
# these plans but not run them.
#
# Here (x86-64), once:   cargo build --release --features tensorrt --bin build-engine --bin make-random-flux
#                        mkdir -p .trtbin && cp target/release/{build-engine,make-random-flux} .trtbin/
#                        (echo /.trtbin/ >> .git/info/exclude; carry .trtbin with the run)
# There, per command:    bash .device/partN/assemble.sh && source /opt/dev/env.sh && bash tools/device/trt_build.sh STAGE
# Stages (send them back to back: /tmp survives only while the machine stays warm):
#   tiny                  export the tiny fixture model (fp32, slots for attn+mlp adapters) and build
#                         sm89 and sm120 plans, each with and without --strip-weights -> $OUT/tiny-*.json
#   full-export           random FLUX.1-dev-shaped bf16 checkpoint (DOUBLE=19 SINGLE=38 by default),
#                         exported with slots on every attention module (rank RANK=32) -> $OUT/full-export.json
#   full-build T [strip]  one plan of that export for target T (sm89 or sm120) -> $OUT/full-T[-strip].json
# Each JSON: build-engine's report (plan bytes, sha256, layer counts, parse/build seconds,
# peak_rss_bytes) plus wall_seconds and peak_gpu_mib (nvidia-smi every 200 ms); on failure, stderr_tail.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-.trtbin}
WORK=${WORK:-/tmp/trtwork}
OUT=${OUT:-/tmp/trtout}
DOUBLE=${DOUBLE:-19}
SINGLE=${SINGLE:-38}
RANK=${RANK:-32}
mkdir -p "$WORK" "$OUT"
export NO_COLOR=1
[ -n "${TRT_RTX_LIB_DIR:-}" ] || { echo "TRT_RTX_LIB_DIR is unset: source /opt/dev/env.sh first" >&2; exit 2; }
for b in build-engine make-random-flux; do [ -x "$BIN/$b" ] || { echo "missing $BIN/$b (see the header)" >&2; exit 2; }; done
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true

# measure NAME CMD...: runs CMD, samples GPU memory, writes $OUT/NAME.json (merging CMD's --trt-report).
measure() {
  local name=$1; shift
  local gpu_log="$WORK/$name.gpu" rep="$WORK/$name.report.json"
  rm -f "$rep"
  (while true; do nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits 2>/dev/null | head -1; sleep 0.2; done) > "$gpu_log" &
  local smi=$! t0 rc=0
  t0=$(date +%s.%N)
  RUST_BACKTRACE=0 "$@" --trt-report "$rep" 2> "$WORK/$name.log" || rc=$?
  tail -n 3 "$WORK/$name.log" | cut -c1-400 >&2
  kill "$smi" 2>/dev/null || true
  python3 - "$name" "$rep" "$gpu_log" "$t0" "$(date +%s.%N)" "$rc" "$WORK/$name.log" > "$OUT/$name.json" <<'PY'
import json, sys, os
name, rep, gpu_log, t0, t1, rc, log = sys.argv[1:]
out = {"name": name, "exit_code": int(rc), "wall_seconds": float(t1) - float(t0)}
if int(rc) != 0:
    out["stderr_tail"] = open(log, errors="replace").read()[-3000:]
if os.path.exists(rep):
    out["build_engine"] = json.load(open(rep))
vals = [int(l) for l in open(gpu_log) if l.strip().isdigit()]
out["peak_gpu_mib"] = max(vals) if vals else None
out["idle_gpu_mib"] = vals[0] if vals else None
print(json.dumps(out, indent=1))
PY
  echo "== $name: exit $rc"; head -c 600 "$OUT/$name.json"; echo
  return 0
}

stage=${1:-}
case "$stage" in
  tiny)
    d="$WORK/tiny"
    "$BIN/build-engine" --model tests/fixtures/models/dev-bfl.safetensors --lora tests/fixtures/loras/attn.peft.safetensors \
      --lora tests/fixtures/loras/mlp.peft.safetensors --precision fp32 --out "$d" --no-hash
    for t in sm89 sm120; do
      for s in "" strip; do
        measure "tiny-$t${s:+-$s}" "$BIN/build-engine" --out "$d" --tensorrt-only --trt-targets "$t" ${s:+--strip-weights} \
          --plan-file "engine-$t${s:+-$s}.plan" --recipe tools/device/tiny.toml
      done
    done
    ls -l "$d" ;;
  full-export)
    ck="$WORK/flux-dev-random.safetensors"; d="$WORK/full"
    t0=$(date +%s)
    "$BIN/make-random-flux" --out "$ck" --layout bfl --dtype bf16 --double "$DOUBLE" --single "$SINGLE"
    "$BIN/build-engine" --model "$ck" --targets attn --max-rank "$RANK" --precision bf16 --out "$d" --no-hash
    rm -f "$ck"
    printf '{"double": %s, "single": %s, "rank": %s, "seconds": %s, "onnx_data_bytes": %s}\n' "$DOUBLE" "$SINGLE" "$RANK" \
      "$(( $(date +%s) - t0 ))" "$(stat -c %s "$d/model.onnx.data")" > "$OUT/full-export.json"
    cat "$OUT/full-export.json"; df -h "$WORK" ;;
  full-build)
    t=${2:?target sm89 or sm120}; s=${3:-}
    d="$WORK/full"; plan="engine-$t${s:+-$s}.plan"
    measure "full-$t${s:+-$s}" "$BIN/build-engine" --out "$d" --tensorrt-only --trt-targets "$t" ${s:+--strip-weights} --plan-file "$plan"
    rm -f "$d/$plan"; df -h "$WORK" ;;
  *) echo "usage: $0 tiny | full-export | full-build sm89|sm120 [strip]" >&2; exit 2 ;;
esac
