# Sourced by the native CUDA device scripts (cuda.sh, cuda-check.sh): the CUDA 13 libraries the
# image has as pip `nvidia-*` packages (libcublasLt.so.13, libnvrtc.so.13, libcudnn.so.9), linked
# under the unversioned names cudarc's loader asks for in a folder put first on LD_LIBRARY_PATH.
# Do the same for any deployment on CUDA 13. Sets NV (the pip library folders) and LINKS.
NV=$(python3 -c 'import glob,os,sys; print(":".join(sorted({d for p in sys.path for d in glob.glob(os.path.join(p, "nvidia", "*", "lib"))})))' 2>/dev/null)
LINKS=/tmp/flux-trt-cuda-libs
mkdir -p "$LINKS"
for lib in cublasLt nvrtc cudnn cublas; do
  for d in ${NV//:/ } /usr/local/cuda/lib64; do
    f=$(ls "$d"/lib$lib.so.[0-9]* 2>/dev/null | sort -V | tail -1)
    if [ -n "$f" ]; then ln -sf "$f" "$LINKS/lib$lib.so"; break; fi
  done
done
export LD_LIBRARY_PATH="$LINKS:$NV:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
