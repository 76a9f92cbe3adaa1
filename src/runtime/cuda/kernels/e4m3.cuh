// E4M3, bf16 and block-reduction helpers shared by fp8.cu and attention_fp8.cu (nvrtc.rs puts this file in front
// of each). No headers: bf16 is read as its bits, E4M3 is written with the sm_89+ `cvt ... e4m3x2` PTX.

#define E4M3_MAX 448.0f
#define SCALE_FLOOR 1.0e-12f

__device__ __forceinline__ float bf16_to_f32(unsigned short b) { return __uint_as_float(((unsigned int)b) << 16); }

__device__ __forceinline__ unsigned short f32_to_bf16(float v) {
    unsigned int u = __float_as_uint(v);
    u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even (finite values)
    return (unsigned short)(u >> 16);
}

// Two floats -> two E4M3 bytes (round to nearest even, saturated to ±448); `lo` at the lower address.
__device__ __forceinline__ unsigned short f32x2_to_e4m3x2(float lo, float hi) {
    unsigned short r;
    asm("cvt.rn.satfinite.e4m3x2.f32 %0, %1, %2;" : "=h"(r) : "f"(hi), "f"(lo));
    return r;
}

// One E4M3 byte (the low 8 bits of `b`) -> float.
__device__ __forceinline__ float e4m3_to_f32(unsigned int b) {
    unsigned int s = (b >> 7) & 1u, e = (b >> 3) & 15u, m = b & 7u;
    float v;
    if (e == 0) v = (float)m * 0.001953125f;  // 2^-9
    else if (e == 15 && m == 7) v = __int_as_float(0x7fc00000);
    else v = __uint_as_float(((e + 120u) << 23) | (m << 20));
    return s ? -v : v;
}

// Max of every thread's `m` over the block (blockDim.x a multiple of 32, at most 1024; `red` the
// block's shared [32] scratch); valid in thread 0. Ends with a barrier, so `red` can be reused.
__device__ __forceinline__ float block_max(float m, float* red) {
    for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = m;
    __syncthreads();
    if (threadIdx.x < 32) {
        m = threadIdx.x < (blockDim.x >> 5) ? red[threadIdx.x] : 0.0f;
        for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
    }
    __syncthreads();
    return m;
}

