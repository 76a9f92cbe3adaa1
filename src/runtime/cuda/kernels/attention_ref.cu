// Placeholder attention until the cuDNN SDPA lands: one warp per (sample, head, query), online
// softmax in f32. q, k, v, o: [B, S, H, D] row-major; D ≤ 256 and a multiple of 32... any D
// (each lane takes columns lane, lane + 32, ...).
struct bf16 { unsigned short v; };
struct f16 { unsigned short v; };
__device__ __forceinline__ float tof(float x) { return x; }
__device__ __forceinline__ float tof(bf16 x) { return __uint_as_float(((unsigned)x.v) << 16); }
__device__ __forceinline__ float tof(f16 x) { float f; asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(x.v)); return f; }
template <class T> __device__ __forceinline__ T fromf(float x);
template <> __device__ __forceinline__ float fromf<float>(float x) { return x; }
template <> __device__ __forceinline__ bf16 fromf<bf16>(float x) { bf16 r; asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(r.v) : "f"(x)); return r; }
template <> __device__ __forceinline__ f16 fromf<f16>(float x) { f16 r; asm("cvt.rn.f16.f32 %0, %1;" : "=h"(r.v) : "f"(x)); return r; }

template <class T>
__device__ void attn(const T* q, const T* k, const T* v, T* o, int B, int S, int H, int D, float scale) {
    long w = (long)blockIdx.x * blockDim.y + threadIdx.y;  // (b, s, h)
    if (w >= (long)B * S * H) return;
    int h = (int)(w % H);
    long bs = w / H;
    int b = (int)(bs / S);
    int lane = threadIdx.x;
    float qv[8], acc[8];
    int n = (D + 31) / 32;
    for (int j = 0; j < n; ++j) {
        int c = lane + 32 * j;
        qv[j] = c < D ? tof(q[w * D + c]) * scale : 0.f;
        acc[j] = 0.f;
    }
    float m = -1e30f, l = 0.f;
    for (int t = 0; t < S; ++t) {
        long kr = (((long)b * S + t) * H + h) * D;
        float s = 0.f;
        for (int j = 0; j < n; ++j) {
            int c = lane + 32 * j;
            if (c < D) s += qv[j] * tof(k[kr + c]);
        }
        for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
        float mn = fmaxf(m, s);
        float corr = expf(m - mn), p = expf(s - mn);
        l = l * corr + p;
        for (int j = 0; j < n; ++j) {
            int c = lane + 32 * j;
            acc[j] = acc[j] * corr + (c < D ? p * tof(v[kr + c]) : 0.f);
        }
        m = mn;
    }
    for (int j = 0; j < n; ++j) {
        int c = lane + 32 * j;
        if (c < D) o[w * D + c] = fromf<T>(acc[j] / l);
    }
}

#define K(S_, T) \
    extern "C" __global__ void attention_ref_##S_(const T* q, const T* k, const T* v, T* o, int B, int S, int H, int D, float scale) { attn<T>(q, k, v, o, B, S, H, D, scale); }
K(f32, float)
K(bf16, bf16)
K(f16, f16)
