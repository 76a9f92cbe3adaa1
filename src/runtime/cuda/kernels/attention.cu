// Attention kernels of src/runtime/cuda/attention.rs (compiled by NVRTC, no headers, sm_80+):
// attention_f32 (the fp32 path) and attention_ref_bf16 / attention_ref_f16 (fp32-accumulating
// references with fp32 output, used to check cuDNN's fused attention).
#define WARPS 4
#define TILE 32
#define MAXD 256
#define FULL 0xffffffffu
#define NEG_INF __int_as_float(0xff800000)

struct LoadF32 { typedef float T; static __device__ __forceinline__ float ld(const float* p) { return *p; } };
struct LoadBF16 { typedef unsigned short T;
  static __device__ __forceinline__ float ld(const unsigned short* p) { return __uint_as_float(((unsigned int)*p) << 16); } };
struct LoadF16 { typedef unsigned short T;
  static __device__ __forceinline__ float ld(const unsigned short* p) { float f; asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(*p)); return f; } };

// q, k, v: [B, S, H, D] contiguous; o: [B, S, H, D] fp32. One warp per query row, WARPS rows per
// block (blockIdx.x), one (batch, head) per blockIdx.y; keys stream through shared memory in
// tiles of TILE with an online softmax, all in fp32.
template <typename L>
__device__ void attention_rows(const typename L::T* __restrict__ q, const typename L::T* __restrict__ k,
                               const typename L::T* __restrict__ v, float* __restrict__ o,
                               int B, int H, int S, int D, float scale) {
  extern __shared__ float smem[];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int b = blockIdx.y / H, h = blockIdx.y % H;
  const int row = blockIdx.x * WARPS + warp;
  const bool active = row < S;
  const long tok = (long)H * D;
  float* ks = smem;                      // [TILE][D + 1] (padded: lane j reads row j)
  float* vs = ks + TILE * (D + 1);       // [TILE][D]
  float* qs = vs + TILE * D + warp * D;  // [WARPS][D]
  if (active) {
    const long base = ((long)b * S + row) * tok + (long)h * D;
    for (int d = lane; d < D; d += 32) qs[d] = L::ld(q + base + d) * scale;
  }
  float acc[MAXD / 32];
#pragma unroll
  for (int i = 0; i < MAXD / 32; ++i) acc[i] = 0.f;
  float m = NEG_INF, l = 0.f;
  for (int t0 = 0; t0 < S; t0 += TILE) {
    __syncthreads();
    for (int i = threadIdx.x; i < TILE * D; i += blockDim.x) {
      const int j = i / D, d = i % D, key = t0 + j;
      float kv = 0.f, vv = 0.f;
      if (key < S) {
        const long off = ((long)b * S + key) * tok + (long)h * D + d;
        kv = L::ld(k + off);
        vv = L::ld(v + off);
      }
      ks[j * (D + 1) + d] = kv;
      vs[j * D + d] = vv;
    }
    __syncthreads();
    if (!active) continue;
    const int key = t0 + lane;
    float s = NEG_INF;
    if (key < S) {
      s = 0.f;
      for (int d = 0; d < D; ++d) s = fmaf(qs[d], ks[lane * (D + 1) + d], s);
    }
    float tm = s;
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) tm = fmaxf(tm, __shfl_xor_sync(FULL, tm, off));
    const float mn = fmaxf(m, tm);
    const float p = key < S ? expf(s - mn) : 0.f;
    const float corr = expf(m - mn);
    float ps = p;
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) ps += __shfl_xor_sync(FULL, ps, off);
    l = l * corr + ps;
#pragma unroll
    for (int i = 0; i < MAXD / 32; ++i) acc[i] *= corr;
    for (int j = 0; j < TILE; ++j) {
      const float pj = __shfl_sync(FULL, p, j);
#pragma unroll
      for (int i = 0; i < MAXD / 32; ++i) {
        const int d = lane + 32 * i;
        if (d < D) acc[i] = fmaf(pj, vs[j * D + d], acc[i]);
      }
    }
    m = mn;
  }
  if (active) {
    const long base = ((long)b * S + row) * tok + (long)h * D;
    const float inv = 1.f / l;
#pragma unroll
    for (int i = 0; i < MAXD / 32; ++i) {
      const int d = lane + 32 * i;
      if (d < D) o[base + d] = acc[i] * inv;
    }
  }
}

extern "C" __global__ void attention_f32(const float* q, const float* k, const float* v, float* o, int B, int H, int S, int D, float scale) {
  attention_rows<LoadF32>(q, k, v, o, B, H, S, D, scale);
}
extern "C" __global__ void attention_ref_bf16(const unsigned short* q, const unsigned short* k, const unsigned short* v, float* o, int B, int H, int S, int D, float scale) {
  attention_rows<LoadBF16>(q, k, v, o, B, H, S, D, scale);
}
extern "C" __global__ void attention_ref_f16(const unsigned short* q, const unsigned short* k, const unsigned short* v, float* o, int B, int H, int S, int D, float scale) {
  attention_rows<LoadF16>(q, k, v, o, B, H, S, D, scale);
}
