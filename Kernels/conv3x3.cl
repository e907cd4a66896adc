// conv3x3.cl: dense 3x3 convolution, pad 1, stride 1 or 2 (the stem), with bias (BatchNorm
// folded in at load time), activation (none/ReLU) and optional residual add.
//
// Layout: in (B, H, W, Cin) channels-last, the model's token layout, so the stem output is
// already (B, L, C0). out is written as a view: pixel p, channel c at out[outOffset +
// p * outStride + c] (a channel slice of a concat buffer; outStride = Cout when dense); RES is
// dense. Weight packed at load time from (Cout, Cin, 3, 3) to (3, 3, Cin, CoutP),
// CoutP = Cout rounded up to 16 * COV with zero columns, so vector loads read whole groups of
// output channels of one tap; bias padded to CoutP. out and RES (B, Ho, Wo, Cout),
// Ho = (H - 1) / s + 1.
// Launch: global (CoutP / (VEC * COV), ceil(Wo / XPW), B * Ho); each work-item computes XPW
// adjacent output pixels x COV vectors of VEC channels: a register tile like gemm_reg's, where
// each (tap, input channel) step broadcasts XPW inputs against COV weight vectors.
// Variants (build defines): CPU with the GEMM's wide tile (AVX-512) VEC=16 with XPW x COV =
//   16 x 1 (Cout <= 16) or 8 x 2 (16 float16 accumulators; 8 x 2 beat 4 x 4 by ~25% on the
//   32 -> 256 stem conv); CPU with a narrow tile (AVX2) VEC=8, 6 x 2 (12 float8); GPU: conv3x3_tiled
//   (below, local-memory tiles) for Cin >= 16, else this kernel with VEC=4 COV=1 XPW=1 (float4,
//   many work-items; the 3-channel stem conv). Local size auto.
// Weights are weight_t (common.cl): float, or half with MILA_HALF_WEIGHTS; the math is float.
// CPU reference: Reference.conv3x3(depthwise: false). Tests: ConvolutionTests.

#ifndef XPW
#define XPW 4
#endif
#ifndef COV
#define COV 1
#endif

__kernel void conv3x3(const int H, const int W, const int Cin, const int Ho, const int Wo, const int Cout,
                      const int CoutP, const int stride, __global const float* in, __global const weight_t* w,
                      __global const float* bias, __global const float* res, __global float* out,
                      const int act, const int flags, const int outOffset, const int outStride) {
    const int c0 = get_global_id(0) * (VEC * COV);
    const int ox0 = get_global_id(1) * XPW;
    const int row = get_global_id(2);
    const int b = row / Ho, oy = row % Ho;
    if (c0 >= Cout || ox0 >= Wo) return;
    vec_t acc[XPW][COV];
    #pragma unroll
    for (int q = 0; q < COV; ++q) {
        const vec_t start = (flags & EPI_BIAS) ? VLOAD(bias + c0 + q * VEC) : (vec_t)(0.0f);
        #pragma unroll
        for (int p = 0; p < XPW; ++p) acc[p][q] = start;
    }
    #pragma unroll
    for (int ky = 0; ky < 3; ++ky) {
        const int iy = oy * stride + ky - 1;
        if (iy < 0 || iy >= H) continue;
        __global const float* inRow = in + ((size_t)b * H + iy) * W * Cin;
        #pragma unroll
        for (int kx = 0; kx < 3; ++kx) {
            __global const weight_t* wTap = w + (size_t)(ky * 3 + kx) * Cin * CoutP + c0;
            int offset[XPW];
            float valid[XPW];
            #pragma unroll
            for (int p = 0; p < XPW; ++p) {
                const int ix = (ox0 + p) * stride + kx - 1;
                const int inside = ix >= 0 && ix < W && ox0 + p < Wo;
                valid[p] = inside ? 1.0f : 0.0f;
                offset[p] = (inside ? ix : 0) * Cin;
            }
            for (int ci = 0; ci < Cin; ++ci) {
                vec_t wv[COV];
                #pragma unroll
                for (int q = 0; q < COV; ++q) wv[q] = WVLOAD(wTap + (size_t)ci * CoutP + q * VEC);
                #pragma unroll
                for (int p = 0; p < XPW; ++p) {
                    const vec_t xv = (vec_t)(inRow[offset[p] + ci] * valid[p]);
                    #pragma unroll
                    for (int q = 0; q < COV; ++q) acc[p][q] = fma(xv, wv[q], acc[p][q]);
                }
            }
        }
    }
    #pragma unroll
    for (int p = 0; p < XPW; ++p) {
        const int ox = ox0 + p;
        if (ox >= Wo) break;
        #pragma unroll
        for (int q = 0; q < COV; ++q) {
            const int c = c0 + q * VEC;
            if (c >= Cout) break;
            vec_t v = VACT(acc[p][q], act);
            const size_t pixel = ((size_t)b * Ho + oy) * Wo + ox;
            const size_t r = pixel * Cout + c, o = outOffset + pixel * outStride + c;
            if (c + VEC <= Cout) {
                if (flags & EPI_RESIDUAL) v += VLOAD(res + r);
                VSTORE_OUT(v, out + o, flags);
            } else {
                float lanes[VEC];
                VSTORE_PRIVATE(v, lanes);
                for (int j = 0; c + j < Cout; ++j) out[o + j] = lanes[j] + ((flags & EPI_RESIDUAL) ? res[r + j] : 0.0f);
            }
        }
    }
}

// conv3x3_igemm: the same convolution as an implicit GEMM for many input channels (the stem's
// 32 -> 256 conv, the UperNet head's 512-2816 -> 512 convs): M = output pixels, N = Cout,
// K = 9 * Cin, with the register tiles of gemm_reg (gemm.cl): each work-item holds MR adjacent
// output pixels of one row x NR output channels (MR x NR/16 float16 accumulators); each (tap,
// input channel) step broadcasts MR inputs against NR/16 float16 weight loads. One kernel per
// tile, the GEMM's tuned tile (conv3x3_igemm is 4x64; conv3x3_igemm_6x16, _3x32, _8x32). No
// im2col is formed (at 512x2048 the head's would be 4.5 GiB): a pixel's row pointer for a tap
// points into the input, or at `zeros` (Cin zero floats) where the tap falls in the padding, so
// the inner loop has no bounds test and no mask.
// Weights packed in panels of 16 output channels, each (9 Cin) x 16 contiguous (row k =
// tap * Cin + ci, tap = ky * 3 + kx), CoutP = Cout rounded up to 64 with zero columns: a
// tile's weights stream sequentially. Epilogue as conv3x3 (bias, activation, residual; output
// view).
// Launch: global (ceil(Wo / MR), B * Ho, CoutP / NR), local (1, 1, 1): consecutive work-items
// walk the pixels of one output row with one weight panel, like gemm_reg's rowsFirst order.
// CPU reference: Reference.conv3x3(depthwise: false). Tests: ConvolutionTests, SegmentationOpTests.

// A partial sum of an earlier launch (16 channels from col), zeros past Cout.
inline float16 igemm_load16(int col, int Cout, size_t pixel, __global const float* out, int outOffset, int outStride) {
    const size_t o = outOffset + pixel * outStride + col;
    if (col + 16 <= Cout) return vload16(0, out + o);
    float lanes[16];
    for (int j = 0; j < 16; ++j) lanes[j] = col + j < Cout ? out[o + j] : 0.0f;
    return vload16(0, lanes);
}

// Final launch: bias, activation, residual, store; earlier launches store the raw partial sums.
inline void igemm_store16(float16 v, int col, int Cout, size_t pixel, __global const float* bias,
                          __global const float* res, __global float* out, int outOffset, int outStride,
                          int act, int flags, int last) {
    if (col >= Cout) return;
    if (last) {
        if (flags & EPI_BIAS) v += vload16(0, bias + col);
        v = mila_act_inline_float16(v, act);
    }
    const size_t r = pixel * Cout + col, o = outOffset + pixel * outStride + col;
    const int addResidual = last && (flags & EPI_RESIDUAL);
    if (col + 16 <= Cout) {
        if (addResidual) v += vload16(0, res + r);
        if (last && (flags & EPI_STREAM)) MILA_STREAM16(v, out + o);
        else MILA_STORE16(v, out + o);
    } else {
        float lanes[16];
        vstore16(v, 0, lanes);
        for (int j = 0; col + j < Cout; ++j) out[o + j] = lanes[j] + (addResidual ? res[r + j] : 0.0f);
    }
}

// Rows [kBegin, kEnd) of K = 9 Cin. A convolution whose weight panel (K x NR floats per
// work-item) would not stay in cache is split into launches over K ranges: the first starts
// from zero, later ones from the partial sums in `out`, and only the last (kEnd == 9 Cin)
// applies the epilogue. Each launch's panel then serves every pixel tile from cache. Summation
// order over k is unchanged by the split.
#define IGEMM_ARGUMENTS \
    const int H, const int W, const int Cin, const int Ho, const int Wo, const int Cout, \
    const int CoutP, const int stride, __global const float* in, __global const weight_t* w, \
    __global const float* bias, __global const float* res, __global float* out, \
    const int act, const int flags, const int outOffset, const int outStride, \
    __global const float* zeros, const int kBegin, const int kEnd

#define IGEMM_BODY(MR, NV) \
    const int ox0 = get_global_id(0) * (MR); \
    const int row = get_global_id(1); \
    const int n0 = get_global_id(2) * (16 * (NV)); \
    const int b = row / Ho, oy = row % Ho; \
    if (ox0 >= Wo || n0 >= Cout) return; \
    const int last = kEnd == 9 * Cin; \
    const size_t panel = (size_t)16 * 9 * Cin; \
    const size_t pixel0 = ((size_t)b * Ho + oy) * Wo + ox0; \
    float16 c[MR][NV]; \
    _Pragma("unroll") \
    for (int p = 0; p < (MR); ++p) { \
        _Pragma("unroll") \
        for (int j = 0; j < (NV); ++j) \
            c[p][j] = kBegin > 0 && ox0 + p < Wo ? igemm_load16(n0 + 16 * j, Cout, pixel0 + p, out, outOffset, outStride) : (float16)(0.0f); \
    } \
    for (int tap = kBegin / Cin; tap * Cin < kEnd; ++tap) { \
        const int ky = tap / 3, kx = tap % 3; \
        const int ciBegin = max(kBegin - tap * Cin, 0), ciEnd = min(kEnd - tap * Cin, Cin); \
        const int iy = oy * stride + ky - 1; \
        if (iy < 0 || iy >= H) continue; \
        __global const float* inRow = in + ((size_t)b * H + iy) * W * Cin; \
        __global const float* a[MR]; \
        _Pragma("unroll") \
        for (int p = 0; p < (MR); ++p) { \
            const int ix = (ox0 + p) * stride + kx - 1; \
            a[p] = ix >= 0 && ix < W && ox0 + p < Wo ? inRow + (size_t)ix * Cin : zeros; \
        } \
        __global const weight_t* wt = w + (size_t)(n0 / 16) * panel + ((size_t)tap * Cin + ciBegin) * 16; \
        for (int ci = ciBegin; ci < ciEnd; ++ci, wt += 16) { \
            float16 wv[NV]; \
            _Pragma("unroll") \
            for (int j = 0; j < (NV); ++j) wv[j] = WLOAD16(0, wt + j * panel); \
            _Pragma("unroll") \
            for (int p = 0; p < (MR); ++p) { \
                const float16 x = (float16)(a[p][ci]); \
                _Pragma("unroll") \
                for (int j = 0; j < (NV); ++j) c[p][j] = fma(x, wv[j], c[p][j]); \
            } \
        } \
    } \
    _Pragma("unroll") \
    for (int p = 0; p < (MR); ++p) { \
        if (ox0 + p >= Wo) break; \
        _Pragma("unroll") \
        for (int j = 0; j < (NV); ++j) \
            igemm_store16(c[p][j], n0 + 16 * j, Cout, pixel0 + p, bias, res, out, outOffset, outStride, act, flags, last); \
    }

__kernel void conv3x3_igemm(IGEMM_ARGUMENTS) { IGEMM_BODY(4, 4) }
__kernel void conv3x3_igemm_6x16(IGEMM_ARGUMENTS) { IGEMM_BODY(6, 1) }
__kernel void conv3x3_igemm_3x32(IGEMM_ARGUMENTS) { IGEMM_BODY(3, 2) }
__kernel void conv3x3_igemm_8x32(IGEMM_ARGUMENTS) { IGEMM_BODY(8, 2) }

// conv3x3_tiled: the GPU variant for Cin >= 16, an implicit GEMM through local memory with the
// tiling of gemm_tiled (gemm.cl): M = B * Ho * Wo output pixels, N = Cout, K = 9 * Cin (row k =
// tap * Cin + ci, the packed weight's row order, so the weight is B of the GEMM as packed:
// (9 Cin, CoutP)). A 16 x 16 work-group computes a 64-pixel x 64-channel tile, 4 x 4 outputs
// per work-item, K in steps of 16: each step the 256 work-items stage a 64 x 16 slice of the
// implicit im2col matrix (gathered from the input, zeros in the padding) and a 16 x 64 slice of
// the weight in local memory, consecutive work-items reading consecutive input channels and
// output channels. Epilogue as conv3x3 (bias, activation, residual; output view). Never forms
// the im2col matrix. Launch: global (16 * ceil(Cout / 64), 16 * ceil(M / 64)), local (16, 16).
#define CT_TILE 64
#define CT_K 16

__kernel __attribute__((reqd_work_group_size(16, 16, 1)))
void conv3x3_tiled(const int H, const int W, const int Cin, const int Ho, const int Wo, const int Cout,
                   const int CoutP, const int stride, __global const float* in, __global const weight_t* w,
                   __global const float* bias, __global const float* res, __global float* out,
                   const int act, const int flags, const int outOffset, const int outStride, const int M) {
    __local float As[CT_K][CT_TILE + 1];
    __local float Bs[CT_K][CT_TILE];
    const int tx = get_local_id(0), ty = get_local_id(1);
    const int n0 = get_group_id(0) * CT_TILE, m0 = get_group_id(1) * CT_TILE;
    const int lid = ty * 16 + tx;
    const int K = 9 * Cin;
    float acc[4][4];
    for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 4; ++j) acc[i][j] = 0.0f;
    for (int k0 = 0; k0 < K; k0 += CT_K) {
        for (int e = lid; e < CT_TILE * CT_K; e += 256) {
            // A: pixel am of the tile, row k of the implicit im2col (ak fastest: channels).
            const int am = e / CT_K, ak = e % CT_K;
            const int m = m0 + am, k = k0 + ak;
            float a = 0.0f;
            if (m < M && k < K) {
                const int tap = k / Cin, ci = k - tap * Cin;
                const int ox = m % Wo, rest = m / Wo, oy = rest % Ho, b = rest / Ho;
                const int iy = oy * stride + tap / 3 - 1, ix = ox * stride + tap % 3 - 1;
                if (iy >= 0 && iy < H && ix >= 0 && ix < W) a = in[(((size_t)b * H + iy) * W + ix) * Cin + ci];
            }
            As[ak][am] = a;
            const int bk = e / CT_TILE, bn = e % CT_TILE;
            const int kk = k0 + bk, n = n0 + bn;
            Bs[bk][bn] = (kk < K && n < CoutP) ? WLOAD1((size_t)kk * CoutP + n, w) : 0.0f;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int kk = 0; kk < CT_K; ++kk) mila_tile_4x4_step(As[kk], Bs[kk], tx, ty, acc);
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    for (int i = 0; i < 4; ++i) {
        const int m = m0 + ty + 16 * i;
        if (m >= M) continue;
        for (int j = 0; j < 4; ++j) {
            const int c = n0 + tx + 16 * j;
            if (c >= Cout) continue;
            float v = acc[i][j];
            if (flags & EPI_BIAS) v += bias[c];
            v = mila_act_float(v, act);
            if (flags & EPI_RESIDUAL) v += res[(size_t)m * Cout + c];
            out[outOffset + (size_t)m * outStride + c] = v;
        }
    }
}
