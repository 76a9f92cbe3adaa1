// FP8 (E4M3) activation quantization and the fp32 reference GEMM of the FP8 tests.
// No headers: bf16 is read as its bits, E4M3 is written with the sm_89+ `cvt ... e4m3x2` PTX.

#define E4M3_MAX 448.0f
#define SCALE_FLOOR 1.0e-12f

__device__ __forceinline__ float bf16_to_f32(unsigned short b) { return __uint_as_float(((unsigned int)b) << 16); }

// Two floats -> two E4M3 bytes (round to nearest even, saturated to ±448); `lo` at the lower address.
__device__ __forceinline__ unsigned short f32x2_to_e4m3x2(float lo, float hi) {
    unsigned short r;
    asm("cvt.rn.satfinite.e4m3x2.f32 %0, %1, %2;" : "=h"(r) : "f"(hi), "f"(lo));
    return r;
}

__device__ __forceinline__ float e4m3_to_f32(unsigned char b) {
    unsigned int s = (b >> 7) & 1u, e = (b >> 3) & 15u, m = b & 7u;
    float v;
    if (e == 0) v = (float)m * 0.001953125f;  // 2^-9
    else if (e == 15 && m == 7) v = __int_as_float(0x7fc00000);
    else v = __uint_as_float(((e + 120u) << 23) | (m << 20));
    return s ? -v : v;
}

// q[i] = e4m3(x[i] / scale[0]); n even. Static scale (from calibration) or the one fp8_scale wrote.
extern "C" __global__ void fp8_quantize_bf16(const unsigned short* __restrict__ x, unsigned short* __restrict__ q, const float* __restrict__ scale, long long n2) {
    float inv = 1.0f / fmaxf(scale[0], SCALE_FLOOR);
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n2; i += (long long)gridDim.x * blockDim.x) {
        unsigned int two = ((const unsigned int*)x)[i];
        q[i] = f32x2_to_e4m3x2(bf16_to_f32(two & 0xffffu) * inv, bf16_to_f32(two >> 16) * inv);
    }
}

// Dynamic per-tensor scaling, pass 1: partial[block] = max |x| over the block's grid-stride share.
extern "C" __global__ void fp8_amax_bf16(const unsigned short* __restrict__ x, float* __restrict__ partial, long long n2) {
    __shared__ float red[32];
    float m = 0.0f;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n2; i += (long long)gridDim.x * blockDim.x) {
        unsigned int two = ((const unsigned int*)x)[i];
        m = fmaxf(m, fmaxf(fabsf(bf16_to_f32(two & 0xffffu)), fabsf(bf16_to_f32(two >> 16))));
    }
    for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = m;
    __syncthreads();
    if (threadIdx.x < 32) {
        m = threadIdx.x < (blockDim.x >> 5) ? red[threadIdx.x] : 0.0f;
        for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
        if (threadIdx.x == 0) partial[blockIdx.x] = m;
    }
}

// Pass 2 (one block): scale[0] = max(max(partial) / 448, floor).
extern "C" __global__ void fp8_scale(const float* __restrict__ partial, int parts, float* __restrict__ scale) {
    __shared__ float red[32];
    float m = 0.0f;
    for (int i = threadIdx.x; i < parts; i += blockDim.x) m = fmaxf(m, partial[i]);
    for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = m;
    __syncthreads();
    if (threadIdx.x < 32) {
        m = threadIdx.x < (blockDim.x >> 5) ? red[threadIdx.x] : 0.0f;
        for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
        if (threadIdx.x == 0) scale[0] = fmaxf(m / E4M3_MAX, SCALE_FLOOR);
    }
}

// Per-channel fallback epilogue: y[m, n] = y[m, n] * wscale[n] (+ bias[n]), bf16 in place.
extern "C" __global__ void fp8_scale_columns_bf16(unsigned short* __restrict__ y, const float* __restrict__ wscale, const unsigned short* __restrict__ bias, long long rows, int cols) {
    long long total = rows * cols;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x) {
        int c = (int)(i % cols);
        float v = bf16_to_f32(y[i]) * wscale[c];
        if (bias) v += bf16_to_f32(bias[c]);
        unsigned int u = __float_as_uint(v);
        u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even (finite values)
        y[i] = (unsigned short)(u >> 16);
    }
}

// Reference (tests): out[r, n] = sum_k deq(x[row(r), k]) * deq(w[n, k]) (+ bias[n]) in fp32, for
// rows row(r) = r * row_step. deq(x) = e4m3 * xscale[0]; deq(w) = e4m3 * wscale[n or 0].
extern "C" __global__ void fp8_reference_gemm(const unsigned char* __restrict__ x, const unsigned char* __restrict__ w, const float* __restrict__ xscale,
                                              const float* __restrict__ wscale, int per_channel, const unsigned short* __restrict__ bias,
                                              float* __restrict__ out, int rows, int row_step, int n_out, int k) {
    int n = blockIdx.x * blockDim.x + threadIdx.x;
    int r = blockIdx.y;
    if (n >= n_out || r >= rows) return;
    const unsigned char* xr = x + (long long)r * row_step * k;
    const unsigned char* wr = w + (long long)n * k;
    float acc = 0.0f;
    for (int i = 0; i < k; ++i) acc += e4m3_to_f32(xr[i]) * e4m3_to_f32(wr[i]);
    float v = acc * xscale[0] * wscale[per_channel ? n : 0];
    if (bias) v += bf16_to_f32(bias[n]);
    out[(long long)r * n_out + n] = v;
}
