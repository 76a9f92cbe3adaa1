#!/usr/bin/env bash
# Issue #6 on the H200: the full-size random FLUX.1-dev-shaped model on ONNX Runtime CUDA vs
# diffusers eager (same checkpoint, inputs, adapter) and the seed recipe. Three stages, each one
# `run` call, back to back while the machine is warm (it keeps /tmp between calls):
#
# Here, once:   cargo build --release --features tensorrt --bins --example ort_bench
#               mkdir -p .trtbin && cp target/release/{flux-trt,build-engine,make-random-flux} \
#                 target/release/examples/ort_bench .trtbin/ && strip .trtbin/* && tar -cJf .trtbin.tar.xz .trtbin
#               PART_BYTES=50000000 tools/device/stage.sh ort py    (parts: carry one per call)
# There:        bash .device/partN/assemble.sh && source /opt/dev/env.sh && bash tools/device/ort_bench.sh prep
#               ... bash tools/device/ort_bench.sh bench
#               ... bash tools/device/ort_bench.sh seed
# prep : make-random-flux (diffusers layout, bf16, 11.9 B) + random PEFT adapters (attn r16, attn r64,
#        attn r16 second seed), build-engine bf16 with attention slots at rank 64 (export time, RSS),
#        random 1024² inputs, diffusers eager bf16 reference (timings, peak memory, outputs base/LoRA,
#        fp32 yardstick).
# bench: ort_bench on CUDA (session, ms/step, peak memory, swaps, 1000-swap stress, threads), outputs
#        compared with the diffusers reference.
# seed : tools/bench/seed_recipe.py bf16.
set -uo pipefail
cd "$(dirname "$0")/../.."
W=${WORK:-/tmp/ortbench}
OUT=${OUT:-/tmp/ortbench-out}
mkdir -p "$W" "$OUT"
if [ -f .trtbin.tar.xz ] && [ ! -x "$W/bin/flux-trt" ]; then mkdir -p "$W/bin" && tar -xJf .trtbin.tar.xz -C "$W/bin" --strip-components=1; fi
BIN="$W/bin"
# ONNX Runtime's CUDA EP needs the CUDA runtime libraries of the image's pip `nvidia-*` packages.
NV=$(python3 -c 'import glob,os,sys; print(":".join(sorted({d for p in sys.path for d in glob.glob(os.path.join(p, "nvidia", "*", "lib"))})))' 2>/dev/null)
[ -n "$NV" ] && export LD_LIBRARY_PATH="$NV:${LD_LIBRARY_PATH:-}"
export RUST_LOG=${RUST_LOG:-info}
stage=${1:-prep}
# Overrides for a CPU smoke test of this script with a small model (defaults: the H200 run).
MRF_ARGS=${MRF_ARGS:-}        # e.g. "--double 1 --single 1 --hidden 128 --heads 2 --context 64 --pooled 32"
RES=${RES:-1024}; TXT=${TXT:-512}; CONTEXT=${CONTEXT:-4096}; POOLED=${POOLED:-768}
PROVIDER=${PROVIDER:-cuda}; REF_DEVICE=${REF_DEVICE:-cuda}; PRECISION=${PRECISION:-bf16}
info() { nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; date -u +%FT%TZ; }
# rss FILE CMD...: runs CMD, writes {"wall_s", "max_rss_kb"} (peak RSS of the child) to FILE.
rss() { python3 -c 'import json,resource,subprocess,sys,time
t=time.time(); rc=subprocess.call(sys.argv[2:])
json.dump({"wall_s": time.time()-t, "max_rss_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, "rc": rc}, open(sys.argv[1], "w")); sys.exit(rc)' "$@"; }

case "$stage" in
prep)
  info > "$OUT/machine.txt"
  t0=$(date +%s)
  "$BIN/make-random-flux" --out "$W/model" --layout diffusers --dtype bf16 $MRF_ARGS > "$OUT/make.log" 2>&1 || { tail -5 "$OUT/make.log"; exit 1; }
  "$BIN/make-random-flux" --out "$W/a16.safetensors" --lora attn --rank 16 --seed 1 $MRF_ARGS >> "$OUT/make.log" 2>&1
  "$BIN/make-random-flux" --out "$W/a64.safetensors" --lora attn --rank 64 --seed 2 $MRF_ARGS >> "$OUT/make.log" 2>&1
  "$BIN/make-random-flux" --out "$W/b16.safetensors" --lora attn --rank 16 --seed 3 $MRF_ARGS >> "$OUT/make.log" 2>&1 || { tail -5 "$OUT/make.log"; exit 1; }
  echo "{\"make_random_s\": $(( $(date +%s) - t0 ))}" > "$OUT/make.json"
  rss "$OUT/export-time.json" "$BIN/build-engine" --model "$W/model" --lora "$W/a16.safetensors" --lora "$W/a64.safetensors" --lora "$W/b16.safetensors" \
      --precision $PRECISION --out "$W/engine-$PRECISION" > "$OUT/export.log" 2>&1 || { tail -20 "$OUT/export.log"; exit 1; }
  cat "$OUT/export-time.json"; du -sb "$W/engine-$PRECISION" | tee "$OUT/engine-size.txt"
  python3 tools/bench/diffusers_ref.py make-inputs --out "$W/inputs.safetensors" --width $RES --height $RES --txt $TXT --context $CONTEXT --pooled $POOLED
  python3 tools/bench/diffusers_ref.py run --model "$W/model" --inputs "$W/inputs.safetensors" --lora "$W/a64.safetensors" \
      --out "$W/ref.safetensors" --json "$OUT/diffusers-ref.json" --steps 10 --warmup 3 --fp32 --device $REF_DEVICE 2>&1 | grep -v 'it/s\]' | tail -4
  ;;
bench)
  info >> "$OUT/machine.txt"
  "$BIN/ort_bench" --engine "$W/engine-$PRECISION" --provider $PROVIDER --width $RES --height $RES --txt-len $TXT --steps 10 --warmup 3 \
      --adapters "$W/a16.safetensors,$W/a64.safetensors,$W/b16.safetensors" --stress-swaps ${STRESS:-1000} --threads 4 \
      --inputs "$W/inputs.safetensors" --save-output "$W/ours.safetensors" --json "$OUT/ort-$PROVIDER-$PRECISION.json" ${BENCH_ARGS:-} > "$OUT/ort-bench.log" 2>&1
  rc=$?; tail -25 "$OUT/ort-bench.log"; [ $rc -eq 0 ] || exit $rc
  python3 - "$W/ref.safetensors" "$W/ours.safetensors" "$OUT/accuracy.json" <<'PY'
import json, sys, torch
from safetensors.torch import load_file
ref, ours = load_file(sys.argv[1]), load_file(sys.argv[2])
print("ours:", sorted(ours))
res = {}
for mine, theirs in [("sample", "sample.base"), ("sample.a64", "sample.lora")]:
    if mine not in ours:
        continue
    o = ours[mine].float()
    for k in [theirs, theirs + ".fp32"]:
        r = ref[k].float()
        res[f"ours {mine} vs diffusers {k}"] = {"max_abs": (o - r).abs().max().item(), "rel_l2": ((o - r).norm() / r.norm()).item(),
            "cos": torch.nn.functional.cosine_similarity(o.flatten(), r.flatten(), dim=0).item()}
for k in ["sample.base", "sample.lora"]:
    r, b = ref[k + ".fp32"].float(), ref[k].float()
    res[f"diffusers bf16 {k} vs fp32"] = {"max_abs": (b - r).abs().max().item(), "rel_l2": ((b - r).norm() / r.norm()).item()}
json.dump(res, open(sys.argv[3], "w"), indent=1); print(json.dumps(res, indent=1))
PY
  ;;
extra)
  # On a fresh machine: the same random model and adapters (deterministic seeds), then an ONNX Runtime
  # profile of the fp16 engine (time per operator) and a short bf16 run (slots uploaded with the driver).
  info > "$OUT/machine-extra.txt"
  [ -d "$W/model" ] || "$BIN/make-random-flux" --out "$W/model" --layout diffusers --dtype bf16 $MRF_ARGS > /dev/null 2>&1
  for x in "a16 16 1" "a64 64 2" "b16 16 3"; do set -- $x
    [ -f "$W/$1.safetensors" ] || "$BIN/make-random-flux" --out "$W/$1.safetensors" --lora attn --rank $2 --seed $3 $MRF_ARGS > /dev/null 2>&1; done
  [ -f "$W/inputs.safetensors" ] || python3 tools/bench/diffusers_ref.py make-inputs --out "$W/inputs.safetensors" --width $RES --height $RES --txt $TXT --context $CONTEXT --pooled $POOLED
  ADP="$W/a16.safetensors,$W/a64.safetensors,$W/b16.safetensors"
  [ -f "$W/engine-fp16/manifest.json" ] || "$BIN/build-engine" --model "$W/model" --lora "$W/a16.safetensors" --lora "$W/a64.safetensors" --lora "$W/b16.safetensors" --precision fp16 --out "$W/engine-fp16" --no-hash > /dev/null 2>&1
  "$BIN/ort_bench" --engine "$W/engine-fp16" --provider $PROVIDER --width $RES --height $RES --txt-len $TXT --steps 3 --warmup 1 \
      --inputs "$W/inputs.safetensors" --profile "$W/prof" --profile-only --json "$OUT/profile-run.json" > "$OUT/profile.log" 2>&1 || { tail -5 "$OUT/profile.log"; exit 1; }
  python3 tools/bench/ort_profile_summary.py "$W"/prof_*.json --skip 1 --json "$OUT/profile-fp16.json" | tee "$OUT/profile-fp16.txt"
  rm -rf "$W/engine-fp16" "$W"/prof_*.json
  "$BIN/build-engine" --model "$W/model" --lora "$W/a16.safetensors" --lora "$W/a64.safetensors" --lora "$W/b16.safetensors" --precision bf16 --out "$W/engine-bf16" --no-hash > /dev/null 2>&1
  "$BIN/ort_bench" --engine "$W/engine-bf16" --provider $PROVIDER --width $RES --height $RES --txt-len $TXT --steps 5 --warmup 2 \
      --adapters "$ADP" --stress-swaps 60 --threads 2 --inputs "$W/inputs.safetensors" --json "$OUT/ort-cuda-bf16.json" > "$OUT/ort-bench-bf16.log" 2>&1
  rc=$?; tail -4 "$OUT/ort-bench-bf16.log"; exit $rc
  ;;
seed)
  python3 tools/bench/seed_recipe.py bf16 2>&1 | grep -v 'it/s\]' | tail -8 | tee "$OUT/seed-bf16.log"
  ;;
*) echo "unknown stage $stage (prep, bench, extra, seed)" >&2; exit 2 ;;
esac
