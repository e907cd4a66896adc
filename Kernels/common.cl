// common.cl: helpers prepended to every other kernel file when it is built (it has no entry
// points of its own).
//
// Math without library calls: PoCL turns exp/erf into per-element calls that do not vectorise
// (an erf-GELU pass over 3136x256 took 9.9 ms, ../shared/notes/opencl-pocl.md section 5), so
// exp and erfc are written out with FMAs and work on any vector width.
//   mila_exp:  Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2, degree-7 Taylor polynomial
//              (truncation < 6e-10 relative), 2^n built in the exponent bits. n is rounded by
//              adding 1.5 * 2^23 (PoCL expands floor() into ~7 instructions: exp took 6.2 against
//              3.6 ns per float16 with it). Inputs are clamped to [-87.3, 88], so it never
//              returns Inf.
//   softplus:  max(x, 0) + log1p(exp(-|x|)), with the library log1p (used only on gate values).
//   GELU:      x/2 * erfc(-x/sqrt(2)) with the Chebyshev-fitted erfc of Numerical Recipes
//              (fractional error < 1.2e-7 everywhere), so negative inputs keep their relative
//              accuracy. Its exp is inlined so that z^2's rounding error and the polynomial
//              join the reduced argument (no two-sum): 14.6 against 31.2 ns per float16 on
//              PoCL, 13.8 against 26.0 on Intel (Zen 4, eight independent vectors in flight).
// CPU references: Sources/MilaReference/Reference.swift (activate). Tests: ActivationTests.

#define ACT_NONE 0
#define ACT_RELU 1
#define ACT_SILU 2
#define ACT_GELU 3
#define ACT_SOFTPLUS 4

// Epilogue flags shared by the GEMM and convolution kernels.
#define EPI_BIAS 1
#define EPI_MUL 2
#define EPI_RESIDUAL 4
#define EPI_STREAM 8     /* store the output with non-temporal stores (an output far larger than the caches) */

#define MILA_LOG2E 1.44269504088896341f
#define MILA_LN2_HI 0.693145751953125f          /* ln 2 to 11 bits: n * MILA_LN2_HI is exact */
#define MILA_LN2_LO 1.428606765330187045e-06f
#define MILA_ROUND_MAGIC 12582912.0f           /* 1.5 * 2^23: fma(x, s, it) - it rounds x*s to an integer */

#define MILA_DEFINE_MATH(T, IT, CONVERT_IT, AS_T, AS_IT)                                              \
/* 2^n for the integer n held in a float rounded through MILA_ROUND_MAGIC (1.5 * 2^23): its low */ \
/* mantissa bits are n, so shifting the float's bits left by 23 leaves n << 23 (two's complement). */ \
__attribute__((always_inline)) inline T mila_exp2i_##T(T rounded) {                             \
    return AS_T((AS_IT(rounded) << (IT)(23)) + (IT)(0x3F800000));                              \
}                                                                                               \
/* exp(r) on |r| <= ln2/2 + 1e-7: degree-7 Taylor polynomial. */                               \
__attribute__((always_inline)) inline T mila_exp_poly_##T(T r) {                                \
    T p = (T)(1.0f / 5040.0f);                                                                  \
    p = fma(p, r, (T)(1.0f / 720.0f));                                                          \
    p = fma(p, r, (T)(1.0f / 120.0f));                                                          \
    p = fma(p, r, (T)(1.0f / 24.0f));                                                           \
    p = fma(p, r, (T)(1.0f / 6.0f));                                                            \
    p = fma(p, r, (T)(0.5f));                                                                   \
    p = fma(p, r, (T)(1.0f));                                                                   \
    return fma(p, r, (T)(1.0f));                                                                \
}                                                                                               \
__attribute__((always_inline)) inline T mila_exp_##T(T x) {                                     \
    x = clamp(x, (T)(-87.3f), (T)(88.0f));                                                     \
    T rounded = fma(x, (T)(MILA_LOG2E), (T)(MILA_ROUND_MAGIC)); /* n = round(x / ln2), exactly */ \
    T n = rounded - (T)(MILA_ROUND_MAGIC);                                                      \
    T r = fma(n, (T)(-MILA_LN2_HI), x);                                                         \
    r = fma(n, (T)(-MILA_LN2_LO), r);                                                           \
    return mila_exp_poly_##T(r) * mila_exp2i_##T(rounded);                                      \
}                                                                                               \
/* GELU(x) = x/2 * erfc(-x/sqrt 2). With z = |x|/sqrt 2, Numerical Recipes' erfcc gives       */ \
/* erfc(z) = t exp(p(t) - z^2), t = 1/(1 + z/2). z^2 = x^2/2 is formed from x (a rounded z     */ \
/* would cost 2 z^2 ulp: 5e-6 at z = 7), and its rounding error zzErr and p enter the exp's    */ \
/* reduced argument after n ln2 is taken from z^2 exactly (fma), so p - z^2 is never rounded   */ \
/* at the size of z^2. z^2 is capped at 87 (erfc < 2e-38 there: the output is 0 or x).       */ \
__attribute__((always_inline)) inline T mila_gelu_##T(T x) {                                    \
    T hx = (T)(0.5f) * x;                                                                       \
    T z = fabs(x) * (T)(0.70710678118654752f);                                                  \
    T t = (T)(1.0f) / fma((T)(0.5f), z, (T)(1.0f));                                             \
    T p = (T)(0.17087277f);                                                                     \
    p = fma(p, t, (T)(-0.82215223f));                                                           \
    p = fma(p, t, (T)(1.48851587f));                                                            \
    p = fma(p, t, (T)(-1.13520398f));                                                           \
    p = fma(p, t, (T)(0.27886807f));                                                            \
    p = fma(p, t, (T)(-0.18628806f));                                                           \
    p = fma(p, t, (T)(0.09678418f));                                                            \
    p = fma(p, t, (T)(0.37409196f));                                                            \
    p = fma(p, t, (T)(1.00002368f));                                                            \
    p = fma(p, t, (T)(-1.26551223f));                                                           \
    T zz = hx * x;                                                                              \
    T zzErr = fma(hx, x, -zz); /* x^2/2 = zz + zzErr exactly */                                 \
    zz = fmin(zz, (T)(87.0f));                                                                  \
    T rounded = fma(p - zz, (T)(MILA_LOG2E), (T)(MILA_ROUND_MAGIC));                            \
    T n = rounded - (T)(MILA_ROUND_MAGIC);                                                      \
    T r = fma(n, (T)(-MILA_LN2_HI), -zz); /* |r| < 1.7: exact to half an ulp of 1 */           \
    r = r + p;                                                                                  \
    r = fma(n, (T)(-MILA_LN2_LO), r);                                                           \
    r = r - zzErr;                                                                              \
    T e = t * (mila_exp_poly_##T(r) * mila_exp2i_##T(rounded)); /* erfc(z) */                  \
    T he = hx * e;                                                                              \
    /* x >= 0: x/2 erfc(-z) = x/2 (2 - erfc z) = x - he; x < 0: he */                           \
    return select(he, x - he, CONVERT_IT(x >= (T)(0.0f)) != (IT)(0));                          \
}                                                                                               \
__attribute__((always_inline)) inline T mila_silu_##T(T x) { return x / ((T)(1.0f) + mila_exp_##T(-x)); }                      \
/* softplus(x) = max(x, 0) + log1p(exp(-|x|)) (the forget gate's dt); log1p is a library call, */ \
/* acceptable for the few gate values per token. */                                             \
inline T mila_softplus_##T(T x) { return fmax(x, (T)(0.0f)) + log1p(mila_exp_##T(-fabs(x))); }   \
inline T mila_act_##T(T x, int act) {                                                           \
    if (act == ACT_RELU) return fmax(x, (T)(0.0f));                                             \
    if (act == ACT_SILU) return mila_silu_##T(x);                                               \
    if (act == ACT_GELU) return mila_gelu_##T(x);                                               \
    if (act == ACT_SOFTPLUS) return mila_softplus_##T(x);                                       \
    return x;                                                                                   \
}                                                                                               \
/* The epilogues' activation: none, ReLU and SiLU inline (an out-of-line call makes PoCL save */ \
/* every live vector register around it: the accumulators and weights of a register tile), */  \
/* GELU and softplus through mila_act. */                                                       \
__attribute__((always_inline)) inline T mila_act_inline_##T(T x, int act) {                     \
    if (act == ACT_NONE) return x;                                                              \
    if (act == ACT_RELU) return fmax(x, (T)(0.0f));                                             \
    if (act == ACT_SILU) return mila_silu_##T(x);                                               \
    return mila_act_##T(x, act);                                                                \
}                                                                                               \
/* ELU(x) + 1: the positive feature map of the linear attention. */                             \
inline T mila_elu1_##T(T x) {                                                                   \
    return select(mila_exp_##T(x), x + (T)(1.0f), CONVERT_IT(x > (T)(0.0f)) != (IT)(0));       \
}

MILA_DEFINE_MATH(float, int, (int), as_float, as_int)
MILA_DEFINE_MATH(float4, int4, convert_int4, as_float4, as_int4)
MILA_DEFINE_MATH(float8, int8, convert_int8, as_float8, as_int8)
MILA_DEFINE_MATH(float16, int16, convert_int16, as_float16, as_int16)

// Weight storage: float, or IEEE half with MILA_HALF_WEIGHTS (Precision.fp16 on the host).
// Half weights are read with vload_half* (core OpenCL C, widened to float on load); every
// product and sum stays float32. Kernels declare their weight pointers weight_t and load
// them only through these macros.
#ifdef MILA_HALF_WEIGHTS
typedef half weight_t;
#define WLOAD1(i, p) vload_half((i), (p))
#define WLOAD4(i, p) vload_half4((i), (p))
#define WLOAD8(i, p) vload_half8((i), (p))
#define WLOAD16(i, p) vload_half16((i), (p))
#else
typedef float weight_t;
#define WLOAD1(i, p) ((p)[i])
#define WLOAD4(i, p) vload4((i), (p))
#define WLOAD8(i, p) vload8((i), (p))
#define WLOAD16(i, p) vload16((i), (p))
#endif

// LePE, the attention's depthwise 3x3 conv of v (pad 1), for 16 channels from c of token (y, x)
// of an (H, W, C) image at `image`, weights packed (9, C) as dwconv3x3.cl's: from `acc` (the
// bias or zero), rows y - 1, y, y + 1 that are in the image, each acc = fma(left, w0, fma(mid,
// w1, fma(right, w2, acc))) with zeros outside the columns: dwconv3x3's order, so an output
// kernel that adds it itself equals the conv with the attention as its residual bit for bit.
inline float16 mila_lepe16(__global const float* image, int y, int x, int H, int W, int C, int c,
                           __global const weight_t* lw, float16 acc) {
    for (int ky = 0; ky < 3; ++ky) {
        const int iy = y + ky - 1;
        if (iy < 0 || iy >= H) continue;
        __global const float* row = image + (size_t)iy * W * C + c;
        const float16 left = x > 0 ? vload16(0, row + (size_t)(x - 1) * C) : (float16)(0.0f);
        const float16 mid = vload16(0, row + (size_t)x * C);
        const float16 right = x + 1 < W ? vload16(0, row + (size_t)(x + 1) * C) : (float16)(0.0f);
        acc = fma(left, WLOAD16(0, lw + (ky * 3 + 0) * C + c),
                  fma(mid, WLOAD16(0, lw + (ky * 3 + 1) * C + c), fma(right, WLOAD16(0, lw + (ky * 3 + 2) * C + c), acc)));
    }
    return acc;
}

// Whole-vector stores to addresses aligned to a float only. PoCL 3.1 lowers vstore16 to three
// partial stores (16 + 16 + 32 bytes: vextractf32x4, vmovups xmm, vextractf64x4 in its kernel
// .so); a store through a pointer to a vector type declared 4-byte aligned is one vmovups zmm.
// Used by the register-tiled kernels' stores (gemm, conv3x3, dwconv3x3 through VSTORE) only:
// in copy_vec16 it made Intel's runtime 3x slower (0.066 against 0.020 ms at 56x56x64) and
// gained nothing on PoCL, so the streaming kernels keep vstore16.
typedef float16 mila_float16_u __attribute__((aligned(4)));
typedef float8 mila_float8_u __attribute__((aligned(4)));
#define MILA_STORE16(v, p) (*(__global mila_float16_u*)(p) = (v))
#define MILA_STORE8(v, p) (*(__global mila_float8_u*)(p) = (v))

// A non-temporal (streaming) store of 16 (8) floats where the compiler has one and the address
// is 64 (32)-byte aligned, else MILA_STORE16 (8). For outputs much larger than the caches (EPI_STREAM): a
// normal store first reads the line it writes (read for ownership), so a GEMM whose output goes
// to DRAM moves twice its bytes. On PoCL 3.1 (Zen 4) `vmovntps` made the GEMMs at 1024x1024
// 12-14% faster in all (K = 64 shapes 124 -> 179 GFLOP/s), the stem's direct conv3x3 12-16% and
// the depthwise kernels ~12%; Intel's runtime takes the stores and measured unchanged.
#ifdef __has_builtin
#if __has_builtin(__builtin_nontemporal_store)
#define MILA_HAS_STREAM_STORE 1
#endif
#endif
#ifdef MILA_HAS_STREAM_STORE
#define MILA_STREAM8(v, p)                                                                      \
    do {                                                                                        \
        if ((((size_t)(p)) & 31) == 0) __builtin_nontemporal_store((v), (__global float8*)(p)); \
        else MILA_STORE8((v), (p));                                                             \
    } while (0)
#define MILA_STREAM16(v, p)                                                                     \
    do {                                                                                        \
        if ((((size_t)(p)) & 63) == 0) __builtin_nontemporal_store((v), (__global float16*)(p)); \
        else MILA_STORE16((v), (p));                                                            \
    } while (0)
#else
#define MILA_STREAM8(v, p) MILA_STORE8((v), (p))
#define MILA_STREAM16(v, p) MILA_STORE16((v), (p))
#endif

// Software prefetch of the line holding p into the caches (a hint: no fault, no effect on
// results). Oclgrind accepts __builtin_prefetch at build time but cannot run it, so the host
// defines MILA_NO_PREFETCH for simulators.
#if defined(__has_builtin) && !defined(MILA_NO_PREFETCH)
#if __has_builtin(__builtin_prefetch)
#define MILA_PREFETCH(p) __builtin_prefetch(p)
#endif
#endif
#ifndef MILA_PREFETCH
#define MILA_PREFETCH(p) ((void)0)
#endif

// The sum of a float16's lanes in a fixed order (halves, then quarters, then pairs): LayerNorm's
// reductions (layernorm_rows_vec and the depthwise kernel that fuses it) round alike.
inline float mila_sum16(float16 v) {
    const float8 a = v.lo + v.hi;
    const float4 b = a.lo + a.hi;
    return (b.x + b.y) + (b.z + b.w);
}

// Vector helpers parameterised by VEC (1, 4, 8 or 16) for kernels that choose their width by a
// build define.
#ifdef VEC
#if VEC == 1
typedef float vec_t;
#define VLOAD(p) (*(p))
#define WVLOAD(p) WLOAD1(0, (p))
#define VSTORE(v, p) (*(p) = (v))
#define VSTREAM(v, p) VSTORE((v), (p))
#define VSTORE_PRIVATE(v, p) (*(p) = (v))
#define VACT(x, act) mila_act_inline_float((x), (act))
#elif VEC == 4
typedef float4 vec_t;
#define VLOAD(p) vload4(0, (p))
#define WVLOAD(p) WLOAD4(0, (p))
#define VSTORE(v, p) vstore4((v), 0, (p))
#define VSTREAM(v, p) VSTORE((v), (p))
#define VSTORE_PRIVATE(v, p) vstore4((v), 0, (p))
#define VACT(x, act) mila_act_inline_float4((x), (act))
#elif VEC == 8
typedef float8 vec_t;
#define VLOAD(p) vload8(0, (p))
#define WVLOAD(p) WLOAD8(0, (p))
#define VSTORE(v, p) MILA_STORE8((v), (p))
#define VSTREAM(v, p) MILA_STREAM8((v), (p))
#define VSTORE_PRIVATE(v, p) vstore8((v), 0, (p))
#define VACT(x, act) mila_act_inline_float8((x), (act))
#elif VEC == 16
typedef float16 vec_t;
#define VLOAD(p) vload16(0, (p))
#define WVLOAD(p) WLOAD16(0, (p))
#define VSTORE(v, p) MILA_STORE16((v), (p))
#define VSTREAM(v, p) MILA_STREAM16((v), (p))
#define VSTORE_PRIVATE(v, p) vstore16((v), 0, (p))
#define VACT(x, act) mila_act_inline_float16((x), (act))
#else
#error "VEC must be 1, 4, 8 or 16"
#endif
// A kernel's output store: streamed (non-temporal) when the host set EPI_STREAM.
#define VSTORE_OUT(v, p, flags)                                                                 \
    do {                                                                                        \
        if ((flags) & EPI_STREAM) VSTREAM((v), (p));                                            \
        else VSTORE((v), (p));                                                                  \
    } while (0)
#endif

// Bilinear source taps with align_corners=False (PyTorch `compute_source_index_and_lambda`),
// float32 steps exactly as MilaCore's Bilinear.tap: the same size is a copy; else
// src = max(0, scale * (dst + 0.5) - 0.5) with scale = in / out computed on the host (a
// correctly rounded division), i0 = min(floor(src), in - 1), w1 = clamp(src - i0, 0, 1),
// i1 = i0 + (i0 < in - 1), w0 = 1 - w1. Contraction is off so no step fuses into an FMA.
#pragma OPENCL FP_CONTRACT OFF
inline void mila_bilinear_tap(int dst, int inSize, int outSize, float scale, int* i0, int* i1, float* w0, float* w1) {
    if (inSize == outSize) {
        *i0 = dst; *i1 = dst; *w0 = 1.0f; *w1 = 0.0f;
        return;
    }
    const float shifted = (float)dst + 0.5f;
    const float product = scale * shifted;
    const float src = fmax(product - 0.5f, 0.0f);
    const int a = min((int)src, inSize - 1);
    const float l1 = clamp(src - (float)a, 0.0f, 1.0f);
    *i0 = a;
    *i1 = a + (a < inSize - 1 ? 1 : 0);
    *w1 = l1;
    *w0 = 1.0f - l1;
}
#pragma OPENCL FP_CONTRACT ON

// One k of the 64 x 64 local-memory tiles of gemm_tiled and conv3x3_tiled: work-item (tx, ty)
// of a 16 x 16 group adds a[r] * b[c] to its 4 x 4 outputs, rows ty + 16 i of the A slice's row
// `a` and columns tx + 16 j of the B slice's row `b`.
inline void mila_tile_4x4_step(__local const float* a, __local const float* b, int tx, int ty, float acc[4][4]) {
    float av[4], bv[4];
    for (int i = 0; i < 4; ++i) av[i] = a[ty + 16 * i];
    for (int j = 0; j < 4; ++j) bv[j] = b[tx + 16 * j];
    for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 4; ++j) acc[i][j] = fma(av[i], bv[j], acc[i][j]);
}
