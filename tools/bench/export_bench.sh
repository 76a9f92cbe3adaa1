#!/usr/bin/env bash
# Export benchmark: a full FLUX.1-dev-shaped random bf16 checkpoint (BFL layout, ~23.8 GB) on
# local disk, then `cp` of it vs `build-engine --precision bf16 --targets attn --max-rank 64`,
# peak RSS from /usr/bin/time -v. Writes tools/bench/results/export-<date>.json. Deletes the
# checkpoint and the outputs afterwards.
#   tools/bench/export_bench.sh [WORKDIR]    (default: /work/bench-tmp; needs ~50 GB free: the copy is deleted before the export)
# Binaries: $BUILD_ENGINE / $MAKE_RANDOM_FLUX, default target/release/{build-engine,make-random-flux}
# (cargo build --release --bin build-engine --bin make-random-flux).
set -euo pipefail
cd "$(dirname "$0")/../.."
WORK=${1:-/work/bench-tmp}
TARGET=${CARGO_TARGET_DIR:-target}
BE=${BUILD_ENGINE:-$TARGET/release/build-engine}
MR=${MAKE_RANDOM_FLUX:-$TARGET/release/make-random-flux}
NOTE=${BENCH_NOTE:-}
mkdir -p "$WORK" tools/bench/results
CKPT="$WORK/flux1-dev-random-bf16.safetensors"
trap 'rm -rf "$WORK/copy.safetensors" "$WORK/engine" "$CKPT"' EXIT
df -h "$WORK" >&2
avail=$(df --output=avail -B1 "$WORK" | tail -1)
need=$((50 * 1000 * 1000 * 1000))
[ "$avail" -gt "$need" ] || { echo "need ~50 GB free in $WORK (checkpoint + one copy or export at a time), have $avail bytes" >&2; exit 1; }

t() { /usr/bin/time -f '%e %M' -o "$WORK/time.txt" "$@"; read -r secs rss_kb < "$WORK/time.txt"; }

echo "[bench] generating $CKPT" >&2
t "$MR" --out "$CKPT" --layout bfl --dtype bf16
gen_s=$secs; gen_rss=$rss_kb
ckpt_bytes=$(stat -c %s "$CKPT")
sync; echo "[bench] cp" >&2
t bash -c "cp '$CKPT' '$WORK/copy.safetensors' && sync"
cp_s=$secs; cp_rss=$rss_kb
rm -f "$WORK/copy.safetensors"; sync
run_export() {  # $1 = label, rest = extra flags; sets exp_s exp_rss
  rm -rf "$WORK/engine"; sync
  CMD=("$BE" --model "$CKPT" --targets attn --max-rank 64 --precision bf16 --out "$WORK/engine" "${@:2}")
  echo "[bench] $1: ${CMD[*]}" >&2
  /usr/bin/time -v -o "$WORK/time-v.txt" bash -c "$(printf '%q ' "${CMD[@]}") && sync" 2> "$WORK/export-$1.log"
  exp_s=$(awk -F': ' '/Elapsed \(wall clock\)/{print $2}' "$WORK/time-v.txt" | awk -F: '{ if (NF==3) print $1*3600+$2*60+$3; else print $1*60+$2 }')
  exp_rss=$(awk -F': ' '/Maximum resident set size/{print $2}' "$WORK/time-v.txt")
  exp_user=$(awk -F': ' '/User time/{print $2}' "$WORK/time-v.txt")
  CMDSTR="${CMD[*]} && sync"
}
run_export nohash --no-hash
nh_s=$exp_s; nh_rss=$exp_rss; nh_user=$exp_user; nh_cmd=$CMDSTR
run_export hash
data_bytes=$(stat -c %s "$WORK/engine/model.onnx.data")
model_bytes=$(stat -c %s "$WORK/engine/model.onnx")
date=$(date -u +%Y-%m-%d)
out=tools/bench/results/export-$date.json
python3 - "$out" <<PY
import json, os, sys
exp_s=float("$exp_s"); cp_s=float("$cp_s")
json.dump({
  "date": "$(date -u +%FT%TZ)",
  "machine": {"nproc": os.cpu_count(), "mem_bytes": os.sysconf("SC_PAGE_SIZE")*os.sysconf("SC_PHYS_PAGES"),
              "disk": "$(df --output=source "$WORK" | tail -1)", "kernel": os.uname().release,
              "cpu": [l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")][0],
              "sha_ni": " sha_ni" in open("/proc/cpuinfo").read()},
  "checkpoint": {"layout": "bfl", "dtype": "bf16", "bytes": $ckpt_bytes, "generate_seconds": float("$gen_s"), "generate_peak_rss_kb": int("$gen_rss")},
  "cp": {"command": "cp CKPT COPY && sync", "seconds": cp_s, "peak_rss_kb": int("$cp_rss")},
  "export": {"command": "$CMDSTR", "seconds": exp_s, "peak_rss_kb": int("$exp_rss"), "user_cpu_seconds": float("$exp_user"),
             "model_onnx_bytes": $model_bytes, "data_bytes": $data_bytes,
             "includes": "graph build, streaming external data, fsync, BLAKE3 of the checkpoint in a parallel thread"},
  "export_no_hash": {"command": "$nh_cmd", "seconds": float("$nh_s"), "peak_rss_kb": int("$nh_rss"), "user_cpu_seconds": float("$nh_user"),
                     "includes": "graph build, streaming external data, fsync; no source hashing (--no-hash)"},
  "ratio_export_over_cp": exp_s / cp_s,
  "ratio_export_no_hash_over_cp": float("$nh_s") / cp_s,
  "targets": {"peak_rss_bytes_max": 2*1024**3, "ratio_max": 1.5},
  "meets": {"rss": max(int("$exp_rss"), int("$nh_rss"))*1024 <= 2*1024**3, "ratio": exp_s / cp_s <= 1.5, "ratio_no_hash": float("$nh_s") / cp_s <= 1.5},
  "note": "$NOTE",
}, open(sys.argv[1], "w"), indent=2)
print(open(sys.argv[1]).read())
PY
