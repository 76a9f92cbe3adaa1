#!/usr/bin/env bash
# Prepares the GPU machine's dependencies (an H200 with no network) in parts of at most 56 MB, small
# enough to send one at a time with the project tree. Run from the project root:
#   tools/device/stage.sh [trt] [ort] [py]
#   trt : TensorRT-RTX 1.7.1 (CUDA 12 build) libraries + Python bindings: builds engines for sm_89/sm_120 on
#         the H200 (its driver is CUDA 13.0; the CUDA 13 build of TRT-RTX fails there with CUDA error 222);
#         cannot run them on sm_90
#   ort : ONNX Runtime 1.31.1 with the CUDA 13 execution provider (libonnxruntime + CUDA EP)
#   py  : diffusers 0.42.1, torchao 0.18.0, importlib_metadata (reference pipeline and seed benchmark)
# Output: .device/partN/ folders (git-ignored). Each holds chunks, a manifest and assemble.sh.
# Send ONE part with each command on the GPU machine, back to back (it keeps files only ~30 s between
# commands), each command starting with `bash .device/partN/assemble.sh`; once every part has arrived it
# unpacks to /opt/dev and writes /opt/dev/env.sh (LD_LIBRARY_PATH, PYTHONPATH, ORT_DYLIB_PATH, TRT_RTX_LIB_DIR).
set -euo pipefail
what=("$@"); [ ${#what[@]} -eq 0 ] && what=(trt ort py)
cache="${DEVICE_STAGE_CACHE:-$HOME/.cache/device-stage}"; mkdir -p "$cache"
root="$(git rev-parse --show-toplevel)"; out="$root/.device"
grep -qx '/.device/' "$root/.git/info/exclude" 2>/dev/null || echo '/.device/' >> "$root/.git/info/exclude"
PART_BYTES=${PART_BYTES:-56000000}
pipdl() { python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any -d "$cache/whl" "$@"; }
xzfile() { if [ ! -s "$2" ]; then xz -T0 -9 -c "$1" > "$2.tmp"; mv -f "$2.tmp" "$2"; fi; }
payload="$cache/payload-v2"; mkdir -p "$payload" "$cache/whl" "$cache/x"
for w in "${what[@]}"; do case "$w" in
  trt) pipdl tensorrt-rtx-cu12-libs==1.7.1.116 tensorrt-rtx-cu12-bindings==1.7.1.116
       (cd "$cache/x" && unzip -o -q "$cache"/whl/tensorrt_rtx_cu12_libs-1.7.1.116-*.whl)
       xzfile "$cache/x/tensorrt_rtx_libs/libtensorrt_rtx.so.1" "$payload/trt__libtensorrt_rtx.so.1.xz"
       xzfile "$cache/x/tensorrt_rtx_libs/libtensorrt_onnxparser_rtx.so.1" "$payload/trt__libtensorrt_onnxparser_rtx.so.1.xz"
       cp "$cache"/whl/tensorrt_rtx_cu12_bindings-1.7.1.116-*.whl "$payload/" ;;
  ort) pipdl onnxruntime-gpu==1.31.1
       (cd "$cache/x" && unzip -o -q "$cache"/whl/onnxruntime_gpu-1.31.1-*.whl 'onnxruntime/capi/libonnxruntime*')
       xzfile "$cache/x/onnxruntime/capi/libonnxruntime.so.1.31.1" "$payload/ort__libonnxruntime.so.1.31.1.xz"
       xzfile "$cache/x/onnxruntime/capi/libonnxruntime_providers_shared.so" "$payload/ort__libonnxruntime_providers_shared.so.xz"
       xzfile "$cache/x/onnxruntime/capi/libonnxruntime_providers_cuda.so" "$payload/ort__libonnxruntime_providers_cuda.so.xz" ;;
  py)  pipdl diffusers==0.42.1 torchao==0.18.0 importlib_metadata==10.2.0
       cp "$cache"/whl/diffusers-0.42.1-*.whl "$cache"/whl/torchao-0.18.0-*.whl "$cache"/whl/importlib_metadata-10.2.0-*.whl "$payload/" ;;
  *) echo "unknown item: $w (use trt, ort, py)" >&2; exit 2 ;;
esac; done
rm -rf "$out"; mkdir -p "$out"
blob="$cache/blob.tar"; (cd "$payload" && tar -cf "$blob" $(for w in "${what[@]}"; do case $w in trt) echo trt__* tensorrt_rtx_cu12*.whl;; ort) echo ort__*;; py) echo diffusers-*.whl torchao-*.whl importlib_metadata-*.whl;; esac; done))
sum=$(sha256sum "$blob" | cut -d' ' -f1); (cd "$cache" && rm -f chunk.* && split -b "$PART_BYTES" -d -a 2 blob.tar chunk.)
n=$(ls "$cache"/chunk.* | wc -l); i=0
for c in "$cache"/chunk.*; do i=$((i+1)); d="$out/part$i"; mkdir -p "$d"; mv "$c" "$d/"
  printf 'parts=%s\nsha256=%s\n' "$n" "$sum" > "$d/manifest"; cp "$(dirname "$0")/assemble.sh" "$d/"; done
echo "staged $n part(s), $(du -sh "$out" | cut -f1) in .device/ (sha256 $sum)"
for j in $(seq 1 "$n"); do echo "  command $j: send .device/part$j, start with: bash .device/part$j/assemble.sh && source /opt/dev/env.sh; ..."; done
