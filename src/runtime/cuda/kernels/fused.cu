// Fused elementwise / normalization kernels of the FLUX transformer (compiled by NVRTC at
// session creation for the GPU's architecture; no headers needed).
//
// Storage types: f32, bf16, f16; math in f32. Activations are "joint" buffers
// [B, S_tot, C] with the text tokens first (rows b*S_tot + [0, S_txt)) and the image tokens
// after them; kernels that treat the two streams differently take one parameter pointer per
// stream and pick it by the row's position.

struct bf16 { unsigned short v; };
struct f16 { unsigned short v; };

__device__ __forceinline__ float tof(float x) { return x; }
__device__ __forceinline__ float tof(bf16 x) { return __uint_as_float(((unsigned)x.v) << 16); }
__device__ __forceinline__ float tof(f16 x) { float f; asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(x.v)); return f; }

template <class T> __device__ __forceinline__ T fromf(float x);
template <> __device__ __forceinline__ float fromf<float>(float x) { return x; }
template <> __device__ __forceinline__ bf16 fromf<bf16>(float x) { bf16 r; asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(r.v) : "f"(x)); return r; }
template <> __device__ __forceinline__ f16 fromf<f16>(float x) { f16 r; asm("cvt.rn.f16.f32 %0, %1;" : "=h"(r.v) : "f"(x)); return r; }

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// Sum over a block of blockDim.x (a multiple of 32, ≤ 1024) threads; every thread gets it.
__device__ float block_sum(float v) {
    __shared__ float part[32];
    __shared__ float total;
    v = warp_sum(v);
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) part[warp] = v;
    __syncthreads();
    if (warp == 0) {
        float s = lane < (int)(blockDim.x >> 5) ? part[lane] : 0.f;
        s = warp_sum(s);
        if (lane == 0) total = s;
    }
    __syncthreads();
    float r = total;
    __syncthreads();
    return r;
}

// y = LayerNorm(x) (no affine, eps 1e-6) * (1 + scale) + shift; one block per row.
// shift/scale of stream s for sample b: sh_s + b * mod_stride.
template <class T>
__device__ void ln_mod(const T* x, T* y, int H, int s_tot, int s_txt, const T* sh_t, const T* sc_t, const T* sh_i, const T* sc_i, int mod_stride) {
    long row = blockIdx.x;
    int b = (int)(row / s_tot), s = (int)(row % s_tot);
    const T* sh = (s < s_txt ? sh_t : sh_i) + (long)b * mod_stride;
    const T* sc = (s < s_txt ? sc_t : sc_i) + (long)b * mod_stride;
    const T* xr = x + row * H;
    T* yr = y + row * H;
    float sum = 0.f;
    for (int c = threadIdx.x; c < H; c += blockDim.x) sum += tof(xr[c]);
    float mean = block_sum(sum) / H;
    float sq = 0.f;
    for (int c = threadIdx.x; c < H; c += blockDim.x) { float d = tof(xr[c]) - mean; sq += d * d; }
    float rstd = rsqrtf(block_sum(sq) / H + 1e-6f);
    for (int c = threadIdx.x; c < H; c += blockDim.x) {
        float n = (tof(xr[c]) - mean) * rstd;
        yr[c] = fromf<T>(n * (1.f + tof(sc[c])) + tof(sh[c]));
    }
}

// QK RMSNorm (eps 1e-6, learned weight) + interleaved-pair RoPE on q and k, and a copy of v,
// from a projection output `src` (joint rows, row stride ld, q/k/v at column offsets) into
// Q, K, V [B, s_tot, heads, D]. Covers the rows of one stream: `s_len` rows per sample from
// joint position `s_off`. One warp per (token, head); blockDim = (32, 4).
template <class T>
__device__ void qk_norm_rope(const T* src, long ld, int qoff, int koff, int voff, int s_len, int s_off, int s_tot, int heads, int D, const T* wq,
                             const T* wk, const float* cos_t, const float* sin_t, T* Q, T* K, T* V, int batch) {
    long t = blockIdx.x;
    int h = blockIdx.y * blockDim.y + threadIdx.y;
    if (h >= heads || t >= (long)batch * s_len) return;
    int b = (int)(t / s_len), s = s_off + (int)(t % s_len);
    long row = (long)b * s_tot + s;
    const T* r = src + row * ld;
    long dst = (row * heads + h) * D;
    int half = D / 2;
    const float* cs = cos_t + (long)s * half;
    const float* sn = sin_t + (long)s * half;
    for (int which = 0; which < 2; ++which) {
        const T* x = r + (which == 0 ? qoff : koff) + h * D;
        const T* w = which == 0 ? wq : wk;
        T* out = (which == 0 ? Q : K) + dst;
        float sq = 0.f;
        for (int p = threadIdx.x; p < half; p += 32) {
            float a = tof(x[2 * p]), c = tof(x[2 * p + 1]);
            sq += a * a + c * c;
        }
        float inv = rsqrtf(warp_sum(sq) / D + 1e-6f);
        for (int p = threadIdx.x; p < half; p += 32) {
            float a = tof(x[2 * p]) * inv * tof(w[2 * p]);
            float c = tof(x[2 * p + 1]) * inv * tof(w[2 * p + 1]);
            float co = cs[p], si = sn[p];
            out[2 * p] = fromf<T>(a * co - c * si);
            out[2 * p + 1] = fromf<T>(c * co + a * si);
        }
    }
    const T* v = r + voff + h * D;
    for (int c = threadIdx.x; c < D; c += 32) V[dst + c] = v[c];
}

// x += gate * y over joint rows [rows, H] (y with row stride ldy); optional clip to ±65504
// per stream (fp16 engines, where diffusers clips).
template <class T>
__device__ void gate_res(T* x, const T* y, long ldy, long rows, int H, int s_tot, int s_txt, const T* g_t, const T* g_i, int mod_stride, int clip_txt,
                         int clip_img) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= rows * H) return;
    long row = i / H;
    int c = (int)(i % H);
    int b = (int)(row / s_tot), s = (int)(row % s_tot);
    bool txt = s < s_txt;
    const T* g = (txt ? g_t : g_i) + (long)b * mod_stride;
    float v = tof(x[i]) + tof(g[c]) * tof(y[row * ldy + c]);
    if (txt ? clip_txt : clip_img) v = fminf(fmaxf(v, -65504.f), 65504.f);
    x[i] = fromf<T>(v);
}

// In-place GELU (tanh approximation) on columns [col0, col0 + cols) of a [rows, ld] matrix.
template <class T>
__device__ void gelu_tanh(T* p, long rows, int cols, long ld, int col0) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= rows * cols) return;
    long r = i / cols;
    int c = (int)(i % cols);
    T* e = p + r * ld + col0 + c;
    float x = tof(*e);
    float u = 0.7978845608028654f * (x + 0.044715f * x * x * x);
    *e = fromf<T>(0.5f * x * (1.f + tanhf(u)));
}

// Sinusoidal embedding of t·1000 (diffusers get_timestep_embedding, flip_sin_to_cos: cos first).
// freqs: [half] f32 = exp(-ln(10000)·i/half). out: [batch, 2·half].
template <class T>
__device__ void time_embed(const float* t, const float* freqs, T* out, int batch, int half) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= batch * 2 * half) return;
    int b = i / (2 * half), j = i % (2 * half);
    float a = (t[b] * 1000.f) * freqs[j % half];
    out[i] = fromf<T>(j < half ? cosf(a) : sinf(a));
}

// out = SiLU(a + b [+ c]) over n elements (c may be null).
template <class T>
__device__ void add_silu(const T* a, const T* b, const T* c, T* out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float v = tof(a[i]) + tof(b[i]);
    if (c) v += tof(c[i]);
    out[i] = fromf<T>(v / (1.f + expf(-v)));
}

// SiLU in place.
template <class T>
__device__ void silu(T* p, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float v = tof(p[i]);
    p[i] = fromf<T>(v / (1.f + expf(-v)));
}

template <class T>
__device__ void from_f32(const float* src, T* dst, long n) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) dst[i] = fromf<T>(src[i]);
}

// dst [batch, s_len, C] f32 <- rows [s_off, s_off + s_len) of each sample of src [batch, s_tot, C].
template <class T>
__device__ void to_f32_rows(const T* src, float* dst, int batch, int s_tot, int s_off, int s_len, int C) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long)batch * s_len * C) return;
    long r = i / C;
    int c = (int)(i % C);
    int b = (int)(r / s_len), s = (int)(r % s_len);
    dst[i] = tof(src[((long)b * s_tot + s_off + s) * C + c]);
}


// ---- 16-byte vectorized variants (the host picks them when every row, stride, column offset
// and pointer is aligned to a 16-byte vector of T; the scalar kernels above cover the rest).

template <class T> struct alignas(16) Vec { T v[16 / sizeof(T)]; };
template <class T> struct alignas(8) Vec4 { T v[4]; };

// ln_mod with the row held in registers: blockDim.x threads, each up to LN_CHUNKS vectors of the row
// (H / (16 / sizeof(T)) ≤ LN_CHUNKS · blockDim.x); one read of x, one write of y.
#define LN_CHUNKS 4
template <class T>
__device__ void ln_mod_v(const T* x, T* y, int H, int s_tot, int s_txt, const T* sh_t, const T* sc_t, const T* sh_i, const T* sc_i, int mod_stride) {
    constexpr int V = 16 / sizeof(T);
    long row = blockIdx.x;
    int b = (int)(row / s_tot), s = (int)(row % s_tot);
    const Vec<T>* sh = (const Vec<T>*)((s < s_txt ? sh_t : sh_i) + (long)b * mod_stride);
    const Vec<T>* sc = (const Vec<T>*)((s < s_txt ? sc_t : sc_i) + (long)b * mod_stride);
    const Vec<T>* xr = (const Vec<T>*)(x + row * H);
    Vec<T>* yr = (Vec<T>*)(y + row * H);
    int nv = H / V;
    float r[LN_CHUNKS][V];
    float sum = 0.f;
#pragma unroll
    for (int k = 0; k < LN_CHUNKS; ++k) {
        int c = threadIdx.x + k * blockDim.x;
        if (c < nv) {
            Vec<T> a = xr[c];
#pragma unroll
            for (int e = 0; e < V; ++e) { r[k][e] = tof(a.v[e]); sum += r[k][e]; }
        }
    }
    float mean = block_sum(sum) / H;
    float sq = 0.f;
#pragma unroll
    for (int k = 0; k < LN_CHUNKS; ++k) {
        int c = threadIdx.x + k * blockDim.x;
        if (c < nv) {
#pragma unroll
            for (int e = 0; e < V; ++e) { float d = r[k][e] - mean; sq += d * d; }
        }
    }
    float rstd = rsqrtf(block_sum(sq) / H + 1e-6f);
#pragma unroll
    for (int k = 0; k < LN_CHUNKS; ++k) {
        int c = threadIdx.x + k * blockDim.x;
        if (c < nv) {
            Vec<T> a = sc[c], h = sh[c], o;
#pragma unroll
            for (int e = 0; e < V; ++e) o.v[e] = fromf<T>((r[k][e] - mean) * rstd * (1.f + tof(a.v[e])) + tof(h.v[e]));
            yr[c] = o;
        }
    }
}

// qk_norm_rope with 4 consecutive elements (2 RoPE pairs) per lane: D % 4 == 0, D ≤ 128, rows,
// column offsets and pointers aligned to 4 elements.
template <class T>
__device__ void qk_norm_rope_v(const T* src, long ld, int qoff, int koff, int voff, int s_len, int s_off, int s_tot, int heads, int D, const T* wq,
                               const T* wk, const float* cos_t, const float* sin_t, T* Q, T* K, T* V, int batch) {
    long t = blockIdx.x;
    int h = blockIdx.y * blockDim.y + threadIdx.y;
    if (h >= heads || t >= (long)batch * s_len) return;
    int b = (int)(t / s_len), s = s_off + (int)(t % s_len);
    long row = (long)b * s_tot + s;
    const T* r = src + row * ld;
    long dst = (row * heads + h) * D;
    int half = D / 2;
    int c = 4 * threadIdx.x;
    bool on = c < D;
    float2 co = make_float2(0.f, 0.f), si = co;
    if (on) {
        co = *(const float2*)(cos_t + (long)s * half + c / 2);
        si = *(const float2*)(sin_t + (long)s * half + c / 2);
    }
#pragma unroll
    for (int which = 0; which < 2; ++which) {
        float a[4] = {0.f, 0.f, 0.f, 0.f};
        if (on) {
            Vec4<T> xv = *(const Vec4<T>*)(r + (which == 0 ? qoff : koff) + h * D + c);
#pragma unroll
            for (int e = 0; e < 4; ++e) a[e] = tof(xv.v[e]);
        }
        float sq = a[0] * a[0] + a[1] * a[1] + a[2] * a[2] + a[3] * a[3];
        float inv = rsqrtf(warp_sum(sq) / D + 1e-6f);
        if (on) {
            Vec4<T> wv = *(const Vec4<T>*)((which == 0 ? wq : wk) + c), o;
#pragma unroll
            for (int e = 0; e < 4; ++e) a[e] *= inv * tof(wv.v[e]);
            o.v[0] = fromf<T>(a[0] * co.x - a[1] * si.x);
            o.v[1] = fromf<T>(a[1] * co.x + a[0] * si.x);
            o.v[2] = fromf<T>(a[2] * co.y - a[3] * si.y);
            o.v[3] = fromf<T>(a[3] * co.y + a[2] * si.y);
            *(Vec4<T>*)((which == 0 ? Q : K) + dst + c) = o;
        }
    }
    if (on) *(Vec4<T>*)(V + dst + c) = *(const Vec4<T>*)(r + voff + h * D + c);
}

// gate_res on 16-byte vectors (H and ldy multiples of the vector).
template <class T>
__device__ void gate_res_v(T* x, const T* y, long ldy, long rows, int H, int s_tot, int s_txt, const T* g_t, const T* g_i, int mod_stride, int clip_txt,
                           int clip_img) {
    constexpr int V = 16 / sizeof(T);
    int hv = H / V;
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= rows * hv) return;
    long row = i / hv;
    int c = (int)(i % hv) * V;
    int b = (int)(row / s_tot), s = (int)(row % s_tot);
    bool txt = s < s_txt;
    bool clip = txt ? clip_txt : clip_img;
    Vec<T> g = *(const Vec<T>*)((txt ? g_t : g_i) + (long)b * mod_stride + c);
    Vec<T> yv = *(const Vec<T>*)(y + row * ldy + c);
    Vec<T>* xp = (Vec<T>*)(x + row * H + c);
    Vec<T> xv = *xp;
#pragma unroll
    for (int e = 0; e < V; ++e) {
        float v = tof(xv.v[e]) + tof(g.v[e]) * tof(yv.v[e]);
        if (clip) v = fminf(fmaxf(v, -65504.f), 65504.f);
        xv.v[e] = fromf<T>(v);
    }
    *xp = xv;
}

// In-place GELU-tanh on 16-byte vectors (cols, ld and col0 multiples of the vector).
template <class T>
__device__ void gelu_tanh_v(T* p, long rows, int cols, long ld, int col0) {
    constexpr int V = 16 / sizeof(T);
    int cv = cols / V;
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= rows * cv) return;
    long r = i / cv;
    int c = (int)(i % cv) * V;
    Vec<T>* e = (Vec<T>*)(p + r * ld + col0 + c);
    Vec<T> a = *e;
#pragma unroll
    for (int k = 0; k < V; ++k) {
        float x = tof(a.v[k]);
        float u = 0.7978845608028654f * (x + 0.044715f * x * x * x);
        a.v[k] = fromf<T>(0.5f * x * (1.f + tanhf(u)));
    }
    *e = a;
}

#define FOR_TYPES(M) M(f32, float) M(bf16, bf16) M(f16, f16)

#define K_LN_MOD(S, T)                                                                                                                            \
    extern "C" __global__ void ln_mod_##S(const T* x, T* y, int H, int s_tot, int s_txt, const T* sh_t, const T* sc_t, const T* sh_i, const T* sc_i, \
                                          int mod_stride) {                                                                                     \
        ln_mod<T>(x, y, H, s_tot, s_txt, sh_t, sc_t, sh_i, sc_i, mod_stride);                                                                   \
    }
FOR_TYPES(K_LN_MOD)

#define K_QK(S, T)                                                                                                                                  \
    extern "C" __global__ void qk_norm_rope_##S(const T* src, long ld, int qoff, int koff, int voff, int s_len, int s_off, int s_tot, int heads, int D, \
                                                const T* wq, const T* wk, const float* c, const float* s, T* Q, T* K, T* V, int batch) {          \
        qk_norm_rope<T>(src, ld, qoff, koff, voff, s_len, s_off, s_tot, heads, D, wq, wk, c, s, Q, K, V, batch);                                   \
    }
FOR_TYPES(K_QK)

#define K_GATE(S, T)                                                                                                                          \
    extern "C" __global__ void gate_res_##S(T* x, const T* y, long ldy, long rows, int H, int s_tot, int s_txt, const T* g_t, const T* g_i,   \
                                            int mod_stride, int clip_txt, int clip_img) {                                                   \
        gate_res<T>(x, y, ldy, rows, H, s_tot, s_txt, g_t, g_i, mod_stride, clip_txt, clip_img);                                            \
    }
FOR_TYPES(K_GATE)

#define K_GELU(S, T) \
    extern "C" __global__ void gelu_tanh_##S(T* p, long rows, int cols, long ld, int col0) { gelu_tanh<T>(p, rows, cols, ld, col0); }
FOR_TYPES(K_GELU)

#define K_TIME(S, T) \
    extern "C" __global__ void time_embed_##S(const float* t, const float* f, T* out, int batch, int half) { time_embed<T>(t, f, out, batch, half); }
FOR_TYPES(K_TIME)

#define K_ADD_SILU(S, T) \
    extern "C" __global__ void add_silu_##S(const T* a, const T* b, const T* c, T* out, int n) { add_silu<T>(a, b, c, out, n); }
FOR_TYPES(K_ADD_SILU)

#define K_SILU(S, T) \
    extern "C" __global__ void silu_##S(T* p, int n) { silu<T>(p, n); }
FOR_TYPES(K_SILU)

#define K_FROM(S, T) \
    extern "C" __global__ void from_f32_##S(const float* src, T* dst, long n) { from_f32<T>(src, dst, n); }
FOR_TYPES(K_FROM)

#define K_TO(S, T)                                                                                                      \
    extern "C" __global__ void to_f32_rows_##S(const T* src, float* dst, int batch, int s_tot, int s_off, int s_len, int C) { \
        to_f32_rows<T>(src, dst, batch, s_tot, s_off, s_len, C);                                                        \
    }
FOR_TYPES(K_TO)

#define K_LN_MOD_V(S, T)                                                                                                                            \
    extern "C" __global__ void ln_mod_v_##S(const T* x, T* y, int H, int s_tot, int s_txt, const T* sh_t, const T* sc_t, const T* sh_i, const T* sc_i, \
                                            int mod_stride) {                                                                                     \
        ln_mod_v<T>(x, y, H, s_tot, s_txt, sh_t, sc_t, sh_i, sc_i, mod_stride);                                                                   \
    }
FOR_TYPES(K_LN_MOD_V)

#define K_QK_V(S, T)                                                                                                                                  \
    extern "C" __global__ void qk_norm_rope_v_##S(const T* src, long ld, int qoff, int koff, int voff, int s_len, int s_off, int s_tot, int heads, int D, \
                                                  const T* wq, const T* wk, const float* c, const float* s, T* Q, T* K, T* V, int batch) {          \
        qk_norm_rope_v<T>(src, ld, qoff, koff, voff, s_len, s_off, s_tot, heads, D, wq, wk, c, s, Q, K, V, batch);                                   \
    }
FOR_TYPES(K_QK_V)

#define K_GATE_V(S, T)                                                                                                                          \
    extern "C" __global__ void gate_res_v_##S(T* x, const T* y, long ldy, long rows, int H, int s_tot, int s_txt, const T* g_t, const T* g_i,   \
                                              int mod_stride, int clip_txt, int clip_img) {                                                   \
        gate_res_v<T>(x, y, ldy, rows, H, s_tot, s_txt, g_t, g_i, mod_stride, clip_txt, clip_img);                                            \
    }
FOR_TYPES(K_GATE_V)

#define K_GELU_V(S, T) \
    extern "C" __global__ void gelu_tanh_v_##S(T* p, long rows, int cols, long ld, int col0) { gelu_tanh_v<T>(p, rows, cols, ld, col0); }
FOR_TYPES(K_GELU_V)
