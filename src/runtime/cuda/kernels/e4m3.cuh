// E4M3 and bf16 helpers shared by fp8.cu and attention_fp8.cu (nvrtc.rs puts this file in front
// of each). No headers: bf16 is read as its bits, E4M3 is written with the sm_89+ `cvt ... e4m3x2` PTX.

#define E4M3_MAX 448.0f
#define SCALE_FLOOR 1.0e-12f

__device__ __forceinline__ float bf16_to_f32(unsigned short b) { return __uint_as_float(((unsigned int)b) << 16); }

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

