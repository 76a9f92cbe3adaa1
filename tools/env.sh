# Sourced by tools/test.sh and tools/demo.sh: installs what flux-trt's tests and demo need on a fresh
# Debian machine (idempotent) and exports the library paths.
#   ORT_DYLIB_PATH   libonnxruntime.so from PyPI onnxruntime==1.31.1 (ort's download is not used)
#   TRT_RTX_LIB_DIR  TensorRT-RTX 1.7.1 (CUDA 12 build) from PyPI, for the parser checks
#   LD_LIBRARY_PATH  + NVRTC 13 from PyPI (nvidia-cuda-nvrtc) behind an unversioned libnvrtc.so link,
#                    for the native CUDA backend's kernel-compile test (no GPU needed)
set -euo pipefail
FLUX_TRT_PY_REQS=(onnx==1.23.2 onnxruntime==1.31.1 numpy safetensors tensorrt-rtx-cu12-libs==1.7.1.116 nvidia-cuda-nvrtc==13.5.37)
if [ "${FLUX_TRT_SKIP_INSTALL:-0}" != 1 ]; then
  if ! dpkg -s libclang-dev >/dev/null 2>&1; then
    echo "[flux-trt] installing libclang-dev (needed to build the trtx crate)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null && apt-get install -y -qq libclang-dev >/dev/null
  fi
  if ! python3 -c "import onnx, onnxruntime, numpy, safetensors, tensorrt_rtx_libs, glob, sysconfig, sys; sys.exit(not glob.glob(sysconfig.get_paths()['purelib'] + '/nvidia/*/lib/libnvrtc.so.*'))" >/dev/null 2>&1; then
    echo "[flux-trt] installing Python packages: ${FLUX_TRT_PY_REQS[*]}" >&2
    python3 -m pip install -q --disable-pip-version-check "${FLUX_TRT_PY_REQS[@]}" >&2
  fi
fi
site=$(python3 -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
export ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$site/onnxruntime/capi/libonnxruntime.so.1.31.1}"
export TRT_RTX_LIB_DIR="${TRT_RTX_LIB_DIR:-$site/tensorrt_rtx_libs}"
[ -f "$ORT_DYLIB_PATH" ] || { echo "[flux-trt] ONNX Runtime library not found at $ORT_DYLIB_PATH" >&2; exit 1; }
[ -f "$TRT_RTX_LIB_DIR/libtensorrt_rtx.so.1" ] || { echo "[flux-trt] TensorRT-RTX not found in $TRT_RTX_LIB_DIR" >&2; exit 1; }
# cudarc's loader asks for libnvrtc.so (or the CUDA 12 names); pip's CUDA 13 NVRTC is libnvrtc.so.13.
nvrtc=$(ls "$site"/nvidia/*/lib/libnvrtc.so.* 2>/dev/null | grep -v builtins | sort -V | tail -1 || true)
if [ -n "$nvrtc" ]; then
  links="${FLUX_TRT_CUDA_LINKS:-${XDG_CACHE_HOME:-$HOME/.cache}/flux-trt/cuda-libs}"
  mkdir -p "$links" && ln -sf "$nvrtc" "$links/libnvrtc.so"
  export LD_LIBRARY_PATH="$links:$(dirname "$nvrtc")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
