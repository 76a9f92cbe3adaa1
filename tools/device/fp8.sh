#!/usr/bin/env bash
# GPU tests of the CUDA backend's FP8 GEMMs (src/runtime/cuda/fp8.rs) on the H200: quantization
# kernels vs the CPU E4M3 rounding, cuBLASLt E4M3 GEMMs (per-tensor; per-channel by outer-vector
# scaling and by the epilogue kernel; with and without fast accumulation) vs an fp32 reference GEMM
# of the dequantized operands, and time per call for the six FLUX.1 GEMM shapes at 1024² (M = 4608).
#
# Here (x86-64), once:
#   cargo test --features cuda --test cuda_fp8 --no-run   (prints the binary's path; GEMM speed is cuBLASLt's)
#   mkdir -p /work/main/.dev/fp8 && cp <that binary> /work/main/.dev/fp8/cuda_fp8 && strip /work/main/.dev/fp8/cuda_fp8
#   cp tools/device/fp8.sh /work/main/.dev/fp8/
# There (carry .dev/fp8):   bash .dev/fp8/fp8.sh        -> $OUT/fp8.log
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${BIN:-$HERE/cuda_fp8}
OUT=${OUT:-/tmp/fp8-out}
mkdir -p "$OUT"
# cuBLASLt 13, NVRTC 13 and the CUDA runtime come from the image's pip nvidia-* packages. cudarc
# looks for unversioned or CUDA-12 names, so expose them under libcublasLt.so / libnvrtc.so too.
NV=$(python3 -c 'import glob,os,sys; print(":".join(sorted({d for p in sys.path for d in glob.glob(os.path.join(p, "nvidia", "*", "lib")) + glob.glob(os.path.join(p, "nvidia", "cu*", "lib"))})))' 2>/dev/null)
LINKS=/tmp/fp8-libs; mkdir -p "$LINKS"
for d in ${NV//:/ }; do
  for f in "$d"/libnvrtc.so.*[0-9] ; do [ -e "$f" ] && case "$f" in *builtins*) ;; *) ln -sf "$f" "$LINKS/libnvrtc.so";; esac; done
  for f in "$d"/libcublasLt.so.*[0-9] ; do [ -e "$f" ] && ln -sf "$f" "$LINKS/libcublasLt.so"; done
  for f in "$d"/libcublas.so.*[0-9] ; do [ -e "$f" ] && ln -sf "$f" "$LINKS/libcublas.so"; done
done
export LD_LIBRARY_PATH="$LINKS:$NV:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
export RUST_LOG=${RUST_LOG:-info} RUST_BACKTRACE=1
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  date -u +%FT%TZ
  ls -l "$LINKS"
  "$BIN" --ignored --nocapture --test-threads=1 "$@"
  echo "exit: $?"
} 2>&1 | tee "$OUT/fp8.log"
