// FP8 (E4M3) activation quantization and the fp32 reference GEMM of the FP8 tests.
// The E4M3 / bf16 / block_max helpers are in e4m3.cuh (compiled in front of this file).

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
    m = block_max(m, red);
    if (threadIdx.x == 0) partial[blockIdx.x] = m;
}

// Pass 2 (one block): scale[0] = max(max(partial) / 448, floor).
extern "C" __global__ void fp8_scale(const float* __restrict__ partial, int parts, float* __restrict__ scale) {
    __shared__ float red[32];
    float m = 0.0f;
    for (int i = threadIdx.x; i < parts; i += blockDim.x) m = fmaxf(m, partial[i]);
    m = block_max(m, red);
    if (threadIdx.x == 0) scale[0] = fmaxf(m / E4M3_MAX, SCALE_FLOOR);
}

// Per-channel fallback epilogue: y[m, n] = y[m, n] * wscale[n] (+ bias[n]), bf16 in place.
extern "C" __global__ void fp8_scale_columns_bf16(unsigned short* __restrict__ y, const float* __restrict__ wscale, const unsigned short* __restrict__ bias, long long rows, int cols) {
    long long total = rows * cols;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x) {
        int c = (int)(i % cols);
        float v = bf16_to_f32(y[i]) * wscale[c];
        if (bias) v += bf16_to_f32(bias[c]);
        y[i] = f32_to_bf16(v);
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

// ---- the model's activation quantization (strided rows, 8 values per thread) ----

__device__ __forceinline__ float gelu_tanh_f(float x) {
    float u = 0.7978845608028654f * (x + 0.044715f * x * x * x);
    return 0.5f * x * (1.f + tanhf(u));
}

// q[r, c] = e4m3(f(x[r, c]) / scale[0]) for a [rows, cols] block of a bf16 matrix with row stride
// ldx (elements) into an E4M3 matrix with row stride ldq (bytes); f = GELU-tanh when gelu != 0,
// else identity. cols, ldx, ldq multiples of 8; x 16-byte and q 8-byte aligned.
extern "C" __global__ void fp8_quantize_rows_bf16(const unsigned short* __restrict__ x, long long ldx, unsigned char* __restrict__ q, long long ldq,
                                                  const float* __restrict__ scale, long long rows, int cols, int gelu) {
    float inv = 1.0f / fmaxf(scale[0], SCALE_FLOOR);
    int c8 = cols >> 3;
    long long total = rows * c8;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x) {
        long long r = i / c8;
        int c = (int)(i - r * c8) << 3;
        uint4 v = *(const uint4*)(x + r * ldx + c);
        unsigned int w[4] = {v.x, v.y, v.z, v.w};
        unsigned short o[4];
#pragma unroll
        for (int k = 0; k < 4; ++k) {
            float lo = bf16_to_f32(w[k] & 0xffffu), hi = bf16_to_f32(w[k] >> 16);
            if (gelu) { lo = gelu_tanh_f(lo); hi = gelu_tanh_f(hi); }
            o[k] = f32x2_to_e4m3x2(lo * inv, hi * inv);
        }
        uint2 out;
        out.x = (unsigned int)o[0] | ((unsigned int)o[1] << 16);
        out.y = (unsigned int)o[2] | ((unsigned int)o[3] << 16);
        *(uint2*)(q + r * ldq + c) = out;
    }
}

// Dynamic scaling: amax[0] = max(amax[0], max |f(x)|) over a [rows, cols] block (as fp8_quantize_rows_bf16;
// amax holds a non-negative float's bits, so the unsigned maximum is the float maximum; zeroed
// before the first block of a tensor, then fp8_scale(amax, 1, scale)).
extern "C" __global__ void fp8_amax_rows_bf16(const unsigned short* __restrict__ x, long long ldx, long long rows, int cols, int gelu, unsigned int* __restrict__ amax) {
    __shared__ float red[32];
    int c8 = cols >> 3;
    long long total = rows * c8;
    float m = 0.0f;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x) {
        long long r = i / c8;
        int c = (int)(i - r * c8) << 3;
        uint4 v = *(const uint4*)(x + r * ldx + c);
        unsigned int w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
        for (int k = 0; k < 4; ++k) {
            float lo = bf16_to_f32(w[k] & 0xffffu), hi = bf16_to_f32(w[k] >> 16);
            if (gelu) { lo = gelu_tanh_f(lo); hi = gelu_tanh_f(hi); }
            m = fmaxf(m, fmaxf(fabsf(lo), fabsf(hi)));
        }
    }
    m = block_max(m, red);
    if (threadIdx.x == 0) atomicMax(amax, __float_as_uint(m));
}
