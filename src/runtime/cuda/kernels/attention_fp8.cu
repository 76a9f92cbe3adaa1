// FP8 attention: dynamic per-tensor E4M3 quantization of the bf16 q, k, v the model writes, the
// scalars the cuDNN FP8 graph reads, and the dequantization of an E4M3 O into bf16.
// The E4M3 / bf16 / block_max helpers are in e4m3.cuh (compiled in front of this file).
// Every scale stays on the device (no host sync; the whole step can be graph-captured).
//
// Scalars buffer (one f32 per 16-byte slot, the order of Rust's attention::Fp8Scalar):
//   0 descale_q, 1 descale_k, 2 descale_v, 3 scale_s, 4 descale_s, 5 scale_o, 6 amax_s, 7 amax_o.
#define SLOT(i) ((i) * 4)
// Tensors are n8 groups of 8 values (16-byte bf16 / 8-byte E4M3 vectors); blockIdx.y picks q, k or v.

// An E4M3 O is scaled by 448 / (amax(v) * O_HEADROOM): O is a convex combination of v's rows, up to
// the rounding of the E4M3 probabilities (3 mantissa bits: at most 1/16 relative).
#define O_HEADROOM 1.0625f

__device__ __forceinline__ const uint4* pick(const uint4* q, const uint4* k, const uint4* v) {
    return blockIdx.y == 0 ? q : (blockIdx.y == 1 ? k : v);
}

// Pass 1: partial[y * gridDim.x + block] = max |x| over the block's grid-stride share of tensor y.
extern "C" __global__ void attn_fp8_amax(const uint4* __restrict__ q, const uint4* __restrict__ k, const uint4* __restrict__ v,
                                         float* __restrict__ partial, long long n8) {
    __shared__ float red[32];
    const uint4* x = pick(q, k, v);
    float m = 0.0f;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n8; i += (long long)gridDim.x * blockDim.x) {
        uint4 w = x[i];
        unsigned int u[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
        for (int j = 0; j < 4; ++j) m = fmaxf(m, fmaxf(fabsf(bf16_to_f32(u[j] & 0xffffu)), fabsf(bf16_to_f32(u[j] >> 16))));
    }
    m = block_max(m, red);
    if (threadIdx.x == 0) partial[blockIdx.y * gridDim.x + blockIdx.x] = m;
}

// Pass 2 (one block): descale_{q,k,v} = max(amax / 448, floor) (amax = 0 gives the floor: all
// zeros quantize to zeros); scale_s = 448, descale_s = 1/448; scale_o = 1 (bf16 O) or
// 1 / (descale_v * O_HEADROOM) (E4M3 O). amax_s / amax_o are cuDNN's outputs, left alone.
extern "C" __global__ void attn_fp8_scales(const float* __restrict__ partial, int parts, float* __restrict__ scalars, int fp8_out) {
    __shared__ float red[32];
    float descale_v = 1.0f;
    for (int t = 0; t < 3; ++t) {
        float m = 0.0f;
        for (int i = threadIdx.x; i < parts; i += blockDim.x) m = fmaxf(m, partial[t * parts + i]);
        m = block_max(m, red);
        if (threadIdx.x == 0) {
            float d = fmaxf(m / E4M3_MAX, SCALE_FLOOR);
            scalars[SLOT(t)] = d;
            descale_v = d;
        }
    }
    if (threadIdx.x == 0) {
        scalars[SLOT(3)] = E4M3_MAX;
        scalars[SLOT(4)] = 1.0f / E4M3_MAX;
        scalars[SLOT(5)] = fp8_out ? 1.0f / (descale_v * O_HEADROOM) : 1.0f;
    }
}

// Pass 3: x8 = e4m3(x / descale_x) for q, k, v (blockIdx.y), 8 values per thread.
extern "C" __global__ void attn_fp8_quantize(const uint4* __restrict__ q, const uint4* __restrict__ k, const uint4* __restrict__ v,
                                             uint2* __restrict__ q8, uint2* __restrict__ k8, uint2* __restrict__ v8,
                                             const float* __restrict__ scalars, long long n8) {
    const uint4* x = pick(q, k, v);
    uint2* y = blockIdx.y == 0 ? q8 : (blockIdx.y == 1 ? k8 : v8);
    float inv = 1.0f / fmaxf(scalars[SLOT(blockIdx.y)], SCALE_FLOOR);
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n8; i += (long long)gridDim.x * blockDim.x) {
        uint4 w = x[i];
        unsigned int u[4] = {w.x, w.y, w.z, w.w};
        unsigned short o[4];
#pragma unroll
        for (int j = 0; j < 4; ++j) o[j] = f32x2_to_e4m3x2(bf16_to_f32(u[j] & 0xffffu) * inv, bf16_to_f32(u[j] >> 16) * inv);
        uint2 r;
        r.x = (unsigned int)o[0] | ((unsigned int)o[1] << 16);
        r.y = (unsigned int)o[2] | ((unsigned int)o[3] << 16);
        y[i] = r;
    }
}

// E4M3 O -> bf16: o = o8 / scale_o (slot 5), 8 values per thread.
extern "C" __global__ void attn_fp8_dequantize_o(const uint2* __restrict__ o8, uint4* __restrict__ o, const float* __restrict__ scalars, long long n8) {
    float d = 1.0f / scalars[SLOT(5)];
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n8; i += (long long)gridDim.x * blockDim.x) {
        uint2 w = o8[i];
        unsigned int b[2] = {w.x, w.y};
        unsigned int r[4];
#pragma unroll
        for (int j = 0; j < 2; ++j) {
            unsigned short v0 = f32_to_bf16(e4m3_to_f32(b[j] & 0xffu) * d), v1 = f32_to_bf16(e4m3_to_f32((b[j] >> 8) & 0xffu) * d);
            unsigned short v2 = f32_to_bf16(e4m3_to_f32((b[j] >> 16) & 0xffu) * d), v3 = f32_to_bf16(e4m3_to_f32(b[j] >> 24) * d);
            r[2 * j] = (unsigned int)v0 | ((unsigned int)v1 << 16);
            r[2 * j + 1] = (unsigned int)v2 | ((unsigned int)v3 << 16);
        }
        o[i] = make_uint4(r[0], r[1], r[2], r[3]);
    }
}
