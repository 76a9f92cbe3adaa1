// Device lay-out of a LoRA slot set (src/runtime/cuda/stage.rs): the adapters' factors arrive
// packed (each module's A, then B, one after the other) in one upload, with a table of pieces;
// `scatter_<dtype>` writes each piece into its rows of the zero-filled slot buffer, multiplying
// B by its scale. Conversions round exactly as the host lay-out (Rust's `half` crate): round to
// nearest even, NaN kept quiet with its upper payload, so both lay-outs agree bit for bit.

struct Piece {
    unsigned long long src;  // byte offset in the packed upload
    unsigned long long dst;  // byte offset of element (0, 0) in the slot buffer
    unsigned rows, cols, ld;  // ld: destination row stride, elements
    unsigned flags;           // 1: source is f32 (else the slot dtype); 2: multiply by scale
    float scale;
    unsigned pad;
};

struct bf16 { unsigned short v; };
struct f16 { unsigned short v; };

__device__ __forceinline__ float tof(float x) { return x; }
__device__ __forceinline__ float tof(bf16 x) { return __uint_as_float(((unsigned)x.v) << 16); }
__device__ __forceinline__ float tof(f16 x) { float f; asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(x.v)); return f; }

// half::bf16::from_f32
__device__ __forceinline__ unsigned short bf16_bits(float f) {
    unsigned x = __float_as_uint(f);
    if ((x & 0x7FFFFFFFu) > 0x7F800000u) return (unsigned short)((x >> 16) | 0x0040u);
    const unsigned round_bit = 0x00008000u;
    if ((x & round_bit) != 0 && (x & (3 * round_bit - 1)) != 0) return (unsigned short)((x >> 16) + 1);
    return (unsigned short)(x >> 16);
}

// half::f16::from_f32 (its portable path; F16C rounds the same way)
__device__ __forceinline__ unsigned short f16_bits(float f) {
    unsigned x = __float_as_uint(f);
    unsigned sign = x & 0x80000000u, exp = x & 0x7F800000u, man = x & 0x007FFFFFu;
    if (exp == 0x7F800000u) {
        unsigned nan_bit = man == 0 ? 0u : 0x0200u;
        return (unsigned short)((sign >> 16) | 0x7C00u | nan_bit | (man >> 13));
    }
    unsigned half_sign = sign >> 16;
    int half_exp = (int)(exp >> 23) - 127 + 15;
    if (half_exp >= 0x1F) return (unsigned short)(half_sign | 0x7C00u);
    if (half_exp <= 0) {
        if (14 - half_exp > 24) return (unsigned short)half_sign;
        unsigned m = man | 0x00800000u;
        unsigned half_man = m >> (14 - half_exp);
        unsigned round_bit = 1u << (13 - half_exp);
        if ((m & round_bit) != 0 && (m & (3 * round_bit - 1)) != 0) half_man += 1;
        return (unsigned short)(half_sign | half_man);
    }
    unsigned h = half_sign | ((unsigned)half_exp << 10) | (man >> 13);
    const unsigned round_bit = 0x00001000u;
    if ((man & round_bit) != 0 && (man & (3 * round_bit - 1)) != 0) h += 1;
    return (unsigned short)h;
}

template <class T> __device__ __forceinline__ T fromf(float x);
template <> __device__ __forceinline__ float fromf<float>(float x) { return x; }
template <> __device__ __forceinline__ bf16 fromf<bf16>(float x) { bf16 r; r.v = bf16_bits(x); return r; }
template <> __device__ __forceinline__ f16 fromf<f16>(float x) { f16 r; r.v = f16_bits(x); return r; }

// v · s in f32 as the host computes it; a NaN operand stays that NaN, quieted (the GPU would
// return its canonical NaN).
__device__ __forceinline__ float scaled(float v, float s) {
    if (v != v) return __uint_as_float(__float_as_uint(v) | 0x00400000u);
    if (s != s) return __uint_as_float(__float_as_uint(s) | 0x00400000u);
    return __fmul_rn(v, s);
}

// grid: (blocks per piece, pieces or fewer); each block strides over its pieces' elements.
template <class T>
__device__ void scatter(const Piece* pieces, int n, const unsigned char* packed, unsigned char* slots) {
    for (int p = blockIdx.y; p < n; p += gridDim.y) {
        const Piece pc = pieces[p];
        const unsigned total = pc.rows * pc.cols;  // < 2^32 (checked by the host plan)
        T* dst = (T*)(slots + pc.dst);
        for (unsigned i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += gridDim.x * blockDim.x) {
            const unsigned r = i / pc.cols, c = i - r * pc.cols;
            T out;
            if (pc.flags & 1u) {
                float v = ((const float*)(packed + pc.src))[i];
                out = fromf<T>((pc.flags & 2u) ? scaled(v, pc.scale) : v);
            } else {
                T t = ((const T*)(packed + pc.src))[i];
                out = (pc.flags & 2u) ? fromf<T>(scaled(tof(t), pc.scale)) : t;
            }
            dst[(unsigned long long)r * pc.ld + c] = out;
        }
    }
}

extern "C" __global__ void scatter_f32(const Piece* pieces, int n, const unsigned char* packed, unsigned char* slots) { scatter<float>(pieces, n, packed, slots); }
extern "C" __global__ void scatter_bf16(const Piece* pieces, int n, const unsigned char* packed, unsigned char* slots) { scatter<bf16>(pieces, n, packed, slots); }
extern "C" __global__ void scatter_f16(const Piece* pieces, int n, const unsigned char* packed, unsigned char* slots) { scatter<f16>(pieces, n, packed, slots); }
