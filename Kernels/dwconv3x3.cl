// dwconv3x3.cl: depthwise 3x3 convolution, pad 1, stride 1 or 2, with bias, activation
// (none/ReLU/SiLU) and optional residual add (CPE is x + dwconv(x); LePE adds the attention
// output the same way).
//
// Layout: in (B, H, W, C) channels-last (the token layout, no transposes around it); weight
// packed at load time from (C, 1, 3, 3) to (9, C) so a VEC-wide load reads one tap for VEC
// channels; out and RES (B, Ho, Wo, C). VEC must divide C (the host picks 16, 4 or 1).
// Variants (build defines): CPU: dwconv3x3_rows at stride 1, dwconv3x3_strips_s2 at stride 2,
//   VEC=16 where C allows (explicit float16: 10x faster than scalar on PoCL,
//   ../shared/notes/opencl-pocl.md section 3); GPU: dwconv3x3_tiled (local-memory input tiles)
//   when C % 4 == 0, else dwconv3x3 (VEC=1, one output per work-item).
// Weights are weight_t (common.cl): float, or half with MILA_HALF_WEIGHTS; the math is float.
// CPU reference: Reference.conv3x3(depthwise: true). Tests: ConvolutionTests.

inline vec_t dw_load(__global const float* rowIn, int x, int W, int C) {
    return (x >= 0 && x < W) ? VLOAD(rowIn + (size_t)x * C) : (vec_t)(0.0f);
}

// dwconv3x3: one output pixel of VEC channels per work-item at either stride, each tap read
// directly (zero outside the image). It fixes the order of the sums that the other kernels
// follow bit for bit: for ky = 0, 1, 2 (rows outside the image skipped),
// acc = fma(left, w0, fma(mid, w1, fma(right, w2, acc))).
// Launch: global (C / VEC, Wo, B * Ho). Defines: VEC.
__kernel void dwconv3x3(const int H, const int W, const int C, const int Ho, const int Wo, const int stride,
                        __global const float* in, __global const weight_t* w, __global const float* bias,
                        __global const float* res, __global float* out, const int act, const int flags) {
    const int c0 = get_global_id(0) * VEC, ox = get_global_id(1);
    const int b = get_global_id(2) / Ho, oy = get_global_id(2) % Ho;
    if (c0 >= C || ox >= Wo) return;
    vec_t acc = (flags & EPI_BIAS) ? VLOAD(bias + c0) : (vec_t)(0.0f);
    const int ix = ox * stride - 1;
    for (int ky = 0; ky < 3; ++ky) {
        const int iy = oy * stride + ky - 1;
        if (iy < 0 || iy >= H) continue;
        __global const float* rowIn = in + ((size_t)b * H + iy) * W * C + c0;
        acc = fma(dw_load(rowIn, ix, W, C), WVLOAD(w + (ky * 3 + 0) * C + c0),
                  fma(dw_load(rowIn, ix + 1, W, C), WVLOAD(w + (ky * 3 + 1) * C + c0),
                      fma(dw_load(rowIn, ix + 2, W, C), WVLOAD(w + (ky * 3 + 2) * C + c0), acc)));
    }
    vec_t v = VACT(acc, act);
    const size_t o = (((size_t)b * Ho + oy) * Wo + ox) * C + c0;
    if (flags & EPI_RESIDUAL) v += VLOAD(res + o);
    VSTORE_OUT(v, out + o, flags);
}

// dwconv3x3_rows: the CPU kernel at stride 1. A work-item computes VEC channels x 4 adjacent
// pixels x ROWS output rows, streaming down its column strip: each input row is read once (6
// vectors: a 3-column window sliding over 4 pixels) and feeds the three output rows it
// touches, held in three rotating accumulator sets: `above` (output row iy - 1, taps ky = 2),
// `here` (row iy, ky = 1), `below` (row iy + 1, ky = 0). After input row iy, row iy - 1 is
// complete and stored. 12 accumulators + 9 weights + 6 inputs stay in registers (AVX-512 has
// 32), named rather than in arrays. Per output vector that is 1.5 input loads (each input row
// read once for its three output rows; 9 in dwconv3x3). Each output sums its taps
// in the same order as dwconv3x3 (ky = 0, 1, 2; within a row right, mid, left), so the two
// kernels agree bit for bit. Launch: global (C / VEC, ceil(Wo / 4), B * ceil(Ho / ROWS)).
// Defines: VEC, ROWS.
#ifdef ROWS
#define DW_TAPS(q, left, mid, right) \
    above##q = fma(left, k6, fma(mid, k7, fma(right, k8, above##q))); \
    here##q = fma(left, k3, fma(mid, k4, fma(right, k5, here##q))); \
    below##q = fma(left, k0, fma(mid, k1, fma(right, k2, below##q)));
#define DW_STORE(acc, q) \
    if (ox0 + q < Wo) { \
        vec_t v = VACT(acc##q, act); \
        if (flags & EPI_RESIDUAL) v += VLOAD(res + o + (size_t)q * C); \
        VSTORE_OUT(v, out + o + (size_t)q * C, flags); \
    }
#define DW_ROTATE(q) above##q = here##q; here##q = below##q; below##q = start;

__kernel void dwconv3x3_rows(const int H, const int W, const int C, const int Ho, const int Wo,
                             __global const float* in, __global const weight_t* w, __global const float* bias,
                             __global const float* res, __global float* out, const int act, const int flags) {
    const int c0 = get_global_id(0) * VEC;
    const int ox0 = get_global_id(1) * 4;
    const int rowTiles = (Ho + ROWS - 1) / ROWS;
    const int b = get_global_id(2) / rowTiles, oy0 = (get_global_id(2) % rowTiles) * ROWS;
    if (c0 >= C || ox0 >= Wo) return;
    const vec_t k0 = WVLOAD(w + 0 * C + c0), k1 = WVLOAD(w + 1 * C + c0), k2 = WVLOAD(w + 2 * C + c0);
    const vec_t k3 = WVLOAD(w + 3 * C + c0), k4 = WVLOAD(w + 4 * C + c0), k5 = WVLOAD(w + 5 * C + c0);
    const vec_t k6 = WVLOAD(w + 6 * C + c0), k7 = WVLOAD(w + 7 * C + c0), k8 = WVLOAD(w + 8 * C + c0);
    const vec_t start = (flags & EPI_BIAS) ? VLOAD(bias + c0) : (vec_t)(0.0f);
    const bool interior = ox0 >= 1 && ox0 + 4 < W;
    vec_t above0 = start, above1 = start, above2 = start, above3 = start;
    vec_t here0 = start, here1 = start, here2 = start, here3 = start;
    vec_t below0 = start, below1 = start, below2 = start, below3 = start;
    const int last = min(oy0 + ROWS, Ho);  // output rows oy0 ..< last; input rows oy0 - 1 ... last
    for (int iy = oy0 - 1; iy <= last; ++iy) {
        if (iy >= 0 && iy < H) {
            __global const float* rowIn = in + ((size_t)b * H + iy) * W * C + c0;
            vec_t x0, x1, x2, x3, x4, x5;
            if (interior) {
                __global const float* p = rowIn + (size_t)(ox0 - 1) * C;
                x0 = VLOAD(p); x1 = VLOAD(p + C); x2 = VLOAD(p + 2 * C);
                x3 = VLOAD(p + 3 * C); x4 = VLOAD(p + 4 * C); x5 = VLOAD(p + 5 * C);
            } else {
                x0 = dw_load(rowIn, ox0 - 1, W, C); x1 = dw_load(rowIn, ox0, W, C); x2 = dw_load(rowIn, ox0 + 1, W, C);
                x3 = dw_load(rowIn, ox0 + 2, W, C); x4 = dw_load(rowIn, ox0 + 3, W, C); x5 = dw_load(rowIn, ox0 + 4, W, C);
            }
            DW_TAPS(0, x0, x1, x2) DW_TAPS(1, x1, x2, x3) DW_TAPS(2, x2, x3, x4) DW_TAPS(3, x3, x4, x5)
        }
        if (iy > oy0) {  // output row iy - 1 is complete
            const size_t o = (((size_t)b * Ho + iy - 1) * Wo + ox0) * C + c0;
            DW_STORE(above, 0) DW_STORE(above, 1) DW_STORE(above, 2) DW_STORE(above, 3)
        }
        DW_ROTATE(0) DW_ROTATE(1) DW_ROTATE(2) DW_ROTATE(3)
    }
}

// dwconv3x3_strips_s2: the CPU kernel at stride 2. A work-item takes a strip of 4 output
// pixels (input columns 2 ox0 - 1 ... 2 ox0 + 7) over ROWS output rows and, for each row, walks
// all C channels VEC at a time, reading the strip's three input rows (2 oy - 1, 2 oy, 2 oy + 1):
// 27 loads per channel step, each 64 bytes on from the last step's. Walking down the rows with
// the channels spread over work-items instead (dwconv3x3_rows' walk: 4.5 loads per output
// vector against 6.75 here, but each work-item's 17 input rows touched line by line) ran 25-40%
// slower at 1024, where the input (256x256x512, 134 MB) streams from DRAM (kernel bench, PoCL,
// Zen 4); scattering each input pixel's channels into 4 x C accumulators in private memory,
// to read every pixel front to back, was slower still. One work-item per work-group, row tiles
// first, so a strip's consecutive row tiles run in turn and the input row two tiles share is
// still cached. Same tap order as dwconv3x3 (ky = 0, 1, 2; right, mid, left), so the two
// agree bit for bit.
// Launch: global (B * ceil(Ho / ROWS), ceil(Wo / 4), 1), local (1, 1, 1). Defines: VEC, ROWS.
#define DW2_TAPS(q, left, mid, right) acc##q = fma(left, kl, fma(mid, km, fma(right, kr, acc##q)));
// One input row's taps (weights row ky) for the strip's 4 outputs at channels c0 ..< c0 + VEC.
#define DW2_ROW(iy, ky)                                                                           \
    {                                                                                             \
        const vec_t kl = WVLOAD(w + (ky * 3 + 0) * C + c0), km = WVLOAD(w + (ky * 3 + 1) * C + c0); \
        const vec_t kr = WVLOAD(w + (ky * 3 + 2) * C + c0);                                       \
        __global const float* rowIn = in + ((size_t)b * H + (iy)) * W * C + c0;                   \
        vec_t x0, x1, x2, x3, x4, x5, x6, x7, x8;                                                 \
        if (interior) {                                                                           \
            __global const float* p = rowIn + (size_t)ix0 * C;                                    \
            x0 = VLOAD(p); x1 = VLOAD(p + C); x2 = VLOAD(p + 2 * C); x3 = VLOAD(p + 3 * C);       \
            x4 = VLOAD(p + 4 * C); x5 = VLOAD(p + 5 * C); x6 = VLOAD(p + 6 * C);                  \
            x7 = VLOAD(p + 7 * C); x8 = VLOAD(p + 8 * C);                                         \
        } else {                                                                                  \
            x0 = dw_load(rowIn, ix0, W, C); x1 = dw_load(rowIn, ix0 + 1, W, C);                   \
            x2 = dw_load(rowIn, ix0 + 2, W, C); x3 = dw_load(rowIn, ix0 + 3, W, C);               \
            x4 = dw_load(rowIn, ix0 + 4, W, C); x5 = dw_load(rowIn, ix0 + 5, W, C);               \
            x6 = dw_load(rowIn, ix0 + 6, W, C); x7 = dw_load(rowIn, ix0 + 7, W, C);               \
            x8 = dw_load(rowIn, ix0 + 8, W, C);                                                   \
        }                                                                                         \
        DW2_TAPS(0, x0, x1, x2) DW2_TAPS(1, x2, x3, x4) DW2_TAPS(2, x4, x5, x6) DW2_TAPS(3, x6, x7, x8) \
    }

__kernel void dwconv3x3_strips_s2(const int H, const int W, const int C, const int Ho, const int Wo,
                                  __global const float* in, __global const weight_t* w, __global const float* bias,
                                  __global const float* res, __global float* out, const int act, const int flags) {
    const int rowTiles = (Ho + ROWS - 1) / ROWS;
    const int b = get_global_id(0) / rowTiles, oy0 = (get_global_id(0) % rowTiles) * ROWS;
    const int ox0 = get_global_id(1) * 4;
    if (ox0 >= Wo) return;
    const int ix0 = 2 * ox0 - 1;  // the strip's first input column
    const bool interior = ix0 >= 0 && ix0 + 8 < W;
    const int last = min(oy0 + ROWS, Ho);
    for (int oy = oy0; oy < last; ++oy) {
        for (int c0 = 0; c0 < C; c0 += VEC) {
            const vec_t start = (flags & EPI_BIAS) ? VLOAD(bias + c0) : (vec_t)(0.0f);
            vec_t acc0 = start, acc1 = start, acc2 = start, acc3 = start;
            if (oy > 0) DW2_ROW(2 * oy - 1, 0)  // row 0 is above the image
            DW2_ROW(2 * oy, 1)                  // 2 oy <= H - 1 always: Ho = (H + 1) / 2
            if (2 * oy + 1 < H) DW2_ROW(2 * oy + 1, 2)
            const size_t o = (((size_t)b * Ho + oy) * Wo + ox0) * C + c0;
            DW_STORE(acc, 0) DW_STORE(acc, 1) DW_STORE(acc, 2) DW_STORE(acc, 3)
        }
    }
}

#if VEC == 16
// The widest map dwconv3x3_strips_ln takes (its 4 pixels' outputs, 4 x DWLN_MAX_C floats, stay
// in private memory for the LayerNorm): the host checks it (CLContext.fusesDepthwiseLayerNorm).
#define DWLN_MAX_C 1024
// dwconv3x3_strips_ln: the CPU kernel at stride 1 for a depthwise conv whose output a LayerNorm
// reads next (the MLLA block's CPEs, x + dwconv(x), each followed by norm1 or norm2): one launch
// writes both, out and y = LayerNorm(out). A work-item takes a strip of 4 output pixels over
// ROWS output rows; for each row it walks all C channels VEC at a time (18 input loads and 4
// residual loads per step), stores out, keeps a copy in private memory and sums each pixel's
// channels as it goes, then normalises the 4 pixels from that copy in layernorm_rows_vec's
// order (float16 partial sums over the channels from zero, mila_sum16, the mean, then the
// centred squares), so y equals the two-kernel path bit for bit. Both outputs stream when the
// host sets EPI_STREAM (re-reading out from memory instead of the copy: 4-30% slower). Same
// tap order as dwconv3x3. Only rows that exist are read (an output row's taps outside the image
// are skipped, not multiplied by zero), as in dwconv3x3_rows. Faster than the two kernels up to
// 56x56 maps (the launch saved, and the LayerNorm's read of out), slower from 64x64 on, where
// the rows kernel's walk down the image streams the input better: the host fuses only the
// small maps (CLContext.fusesDepthwiseLayerNorm).
// Launch: global (B * ceil(H / ROWS), ceil(W / 4), 1), local (1, 1, 1). Defines: VEC = 16, ROWS.
#define DW1_ROW(iy, ky)                                                                           \
    {                                                                                             \
        const vec_t kl = WVLOAD(w + (ky * 3 + 0) * C + c0), km = WVLOAD(w + (ky * 3 + 1) * C + c0); \
        const vec_t kr = WVLOAD(w + (ky * 3 + 2) * C + c0);                                       \
        __global const float* rowIn = in + ((size_t)b * H + (iy)) * W * C + c0;                   \
        vec_t x0, x1, x2, x3, x4, x5;                                                             \
        if (interior) {                                                                           \
            __global const float* p = rowIn + (size_t)(ox0 - 1) * C;                              \
            x0 = VLOAD(p); x1 = VLOAD(p + C); x2 = VLOAD(p + 2 * C);                              \
            x3 = VLOAD(p + 3 * C); x4 = VLOAD(p + 4 * C); x5 = VLOAD(p + 5 * C);                  \
        } else {                                                                                  \
            x0 = dw_load(rowIn, ox0 - 1, W, C); x1 = dw_load(rowIn, ox0, W, C);                   \
            x2 = dw_load(rowIn, ox0 + 1, W, C); x3 = dw_load(rowIn, ox0 + 2, W, C);               \
            x4 = dw_load(rowIn, ox0 + 3, W, C); x5 = dw_load(rowIn, ox0 + 4, W, C);               \
        }                                                                                         \
        DW2_TAPS(0, x0, x1, x2) DW2_TAPS(1, x1, x2, x3) DW2_TAPS(2, x2, x3, x4) DW2_TAPS(3, x3, x4, x5) \
    }
// Output pixel q of the strip: the activation and residual, the store (and a copy in private
// memory for the LayerNorm), the channel sum.
#define DW1_STORE(q)                                                                              \
    if (ox0 + q < W) {                                                                            \
        vec_t v = VACT(acc##q, act);                                                              \
        if (flags & EPI_RESIDUAL) v += VLOAD(res + o + (size_t)q * C);                            \
        VSTORE_OUT(v, out + o + (size_t)q * C, flags);                                            \
        kept[q * (DWLN_MAX_C / 16) + c0 / 16] = v;                                                \
        sum##q += v;                                                                              \
    }
// LayerNorm of output pixel q (its C values kept in private memory) into y.
#define DW1_NORM(q)                                                                               \
    if (ox0 + q < W) {                                                                            \
        const float16* xr = kept + q * (DWLN_MAX_C / 16);                                         \
        __global float* yr = y + row + (size_t)q * C;                                             \
        const float mean = mila_sum16(sum##q) / C;                                                \
        float16 sq = (float16)(0.0f);                                                             \
        for (int i = 0; i < C / 16; ++i) {                                                        \
            const float16 d = xr[i] - mean;                                                       \
            sq = fma(d, d, sq);                                                                   \
        }                                                                                         \
        const float inv = rsqrt(mila_sum16(sq) / C + eps);                                        \
        for (int i = 0; i < C / 16; ++i)                                                          \
            VSTORE_OUT(fma((xr[i] - mean) * inv, vload16(i, lnWeight), vload16(i, lnBias)), yr + 16 * i, flags); \
    }

__kernel void dwconv3x3_strips_ln(const int H, const int W, const int C,
                                  __global const float* in, __global const weight_t* w, __global const float* bias,
                                  __global const float* res, __global float* out, const int act, const int flags,
                                  const float eps, __global const float* lnWeight, __global const float* lnBias,
                                  __global float* y) {
    const int rowTiles = (H + ROWS - 1) / ROWS;
    const int b = get_global_id(0) / rowTiles, oy0 = (get_global_id(0) % rowTiles) * ROWS;
    const int ox0 = get_global_id(1) * 4;
    if (ox0 >= W) return;
    const bool interior = ox0 >= 1 && ox0 + 4 < W;
    const int last = min(oy0 + ROWS, H);
    for (int oy = oy0; oy < last; ++oy) {
        const size_t row = (((size_t)b * H + oy) * W + ox0) * C;
        float16 kept[4 * (DWLN_MAX_C / 16)];
        float16 sum0 = (float16)(0.0f), sum1 = sum0, sum2 = sum0, sum3 = sum0;
        for (int c0 = 0; c0 < C; c0 += VEC) {
            const vec_t start = (flags & EPI_BIAS) ? VLOAD(bias + c0) : (vec_t)(0.0f);
            vec_t acc0 = start, acc1 = start, acc2 = start, acc3 = start;
            if (oy > 0) DW1_ROW(oy - 1, 0)
            DW1_ROW(oy, 1)
            if (oy + 1 < H) DW1_ROW(oy + 1, 2)
            const size_t o = row + c0;
            DW1_STORE(0) DW1_STORE(1) DW1_STORE(2) DW1_STORE(3)
        }
        DW1_NORM(0) DW1_NORM(1) DW1_NORM(2) DW1_NORM(3)
    }
}
#endif
#endif

// dwconv3x3_tiled: the GPU variant. A work-group of (LC, LX) work-items computes TY output rows
// x LX output pixels x LC float4 channel groups (4 LC channels). It first stages the input
// window those outputs read, (TY - 1) * STRIDE + 3 rows x (LX - 1) * STRIDE + 3 columns x 4 LC
// channels, in local memory (zeros where the window leaves the image), one coalesced float4
// per work-item per column (neighbouring work-items read neighbouring channels); after one
// barrier every output's 9 taps come from local memory: (TY_IN * TX_IN) / (TY * LX) global
// loads per output (1.7 at stride 1, 4 x 16) instead of 9. C % 4 == 0 (the host falls back to
// dwconv3x3 otherwise). Weights (9, C) as dwconv3x3, weight_t.
// Launch: global (LC * ceil(C / (4 LC)), LX * ceil(Wo / LX), B * ceil(Ho / TY)), local (LC, LX, 1).
// Defines: STRIDE (1 or 2), LC, LX, TY.
#ifdef STRIDE
#define DW_TY_IN ((TY - 1) * STRIDE + 3)
#define DW_TX_IN ((LX - 1) * STRIDE + 3)

__kernel __attribute__((reqd_work_group_size(LC, LX, 1)))
void dwconv3x3_tiled(const int H, const int W, const int C, const int Ho, const int Wo,
                     __global const float* in, __global const weight_t* w, __global const float* bias,
                     __global const float* res, __global float* out, const int act, const int flags) {
    __local float4 tile[DW_TY_IN][DW_TX_IN][LC];
    const int lc = get_local_id(0), lx = get_local_id(1);
    const int c0 = (get_group_id(0) * LC + lc) * 4;
    const int ox0 = get_group_id(1) * LX;
    const int rowTiles = (Ho + TY - 1) / TY;
    const int b = get_group_id(2) / rowTiles, oy0 = (get_group_id(2) % rowTiles) * TY;
    const int iy0 = oy0 * STRIDE - 1, ix0 = ox0 * STRIDE - 1;
    for (int r = 0; r < DW_TY_IN; ++r) {
        const int iy = iy0 + r;
        for (int col = lx; col < DW_TX_IN; col += LX) {
            const int ix = ix0 + col;
            const int inside = c0 < C && iy >= 0 && iy < H && ix >= 0 && ix < W;
            tile[r][col][lc] = inside ? vload4(0, in + (((size_t)b * H + iy) * W + ix) * C + c0) : (float4)(0.0f);
        }
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    const int ox = ox0 + lx;
    if (c0 >= C || ox >= Wo) return;  // no barrier follows
    float4 k[9];
    for (int tap = 0; tap < 9; ++tap) k[tap] = WLOAD4(0, w + tap * C + c0);
    const float4 start = (flags & EPI_BIAS) ? vload4(0, bias + c0) : (float4)(0.0f);
    for (int ty = 0; ty < TY; ++ty) {
        const int oy = oy0 + ty;
        if (oy >= Ho) break;
        float4 acc = start;
        for (int ky = 0; ky < 3; ++ky)
            for (int kx = 0; kx < 3; ++kx) acc = fma(tile[ty * STRIDE + ky][lx * STRIDE + kx][lc], k[ky * 3 + kx], acc);
        acc = mila_act_float4(acc, act);
        const size_t o = (((size_t)b * Ho + oy) * Wo + ox) * C + c0;
        if (flags & EPI_RESIDUAL) acc += vload4(0, res + o);
        vstore4(acc, 0, out + o);
    }
}
#endif
