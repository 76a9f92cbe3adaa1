#!/usr/bin/env bash
# GPU tests of the CUDA backend's attention (src/runtime/cuda/attention.rs) on the H200:
# fp32 kernel vs CPU, cuDNN fused SDPA (bf16/fp16, composite graph and SDPA operation) vs an
# fp32-accumulating reference kernel, CUDA-graph replay bit-exactness, time per call at 1024².
#
# Here (x86-64), once:
#   cargo test --release --features cuda --test cuda_attention --no-run   (prints the binary's path)
#   mkdir -p /work/main/.dev/attn && cp <that binary> /work/main/.dev/attn/cuda_attention && strip /work/main/.dev/attn/cuda_attention
#   cp tools/device/attn.sh /work/main/.dev/attn/
# There (carry .dev/attn):   bash .dev/attn/attn.sh        -> $OUT/attn.log
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${BIN:-$HERE/cuda_attention}
OUT=${OUT:-/tmp/attn-out}
mkdir -p "$OUT"
# cuDNN 9, NVRTC and the CUDA runtime come from the image's pip nvidia-* packages. cudarc looks for
# unversioned or CUDA-12 names, so expose NVRTC 13 under libnvrtc.so as well.
NV=$(python3 -c 'import glob,os,sys; print(":".join(sorted({d for p in sys.path for d in glob.glob(os.path.join(p, "nvidia", "*", "lib")) + glob.glob(os.path.join(p, "nvidia", "cu*", "lib"))})))' 2>/dev/null)
LINKS=/tmp/attn-libs; mkdir -p "$LINKS"
for d in ${NV//:/ }; do
  for f in "$d"/libnvrtc.so.*[0-9] ; do [ -e "$f" ] && case "$f" in *builtins*) ;; *) ln -sf "$f" "$LINKS/libnvrtc.so";; esac; done
done
export LD_LIBRARY_PATH="$LINKS:$NV:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
export RUST_LOG=${RUST_LOG:-debug} RUST_BACKTRACE=1
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  date -u +%FT%TZ
  echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
  ls "$LINKS"
  "$BIN" --ignored --nocapture --test-threads=1 "$@"
  echo "exit: $?"
} 2>&1 | tee "$OUT/attn.log"
