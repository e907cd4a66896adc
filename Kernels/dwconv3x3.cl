// dwconv3x3.cl: depthwise 3x3 convolution, pad 1, stride 1 or 2, with bias, activation
// (none/ReLU/SiLU) and optional residual add (CPE is x + dwconv(x); LePE adds the attention
// output the same way).
//
// Layout: in (B, H, W, C) channels-last (the token layout, no transposes around it); weight
// packed at load time from (C, 1, 3, 3) to (9, C) so a VEC-wide load reads one tap for VEC
// channels; out and RES (B, Ho, Wo, C). VEC must divide C (the host picks 16, 4 or 1).
// dwconv3x3 (below) handles both strides: global (C / VEC, ceil(Wo / (XPW * blocksPerItem)),
// B * Ho); each work-item computes blocksPerItem blocks of XPW adjacent output pixels of VEC
// channels. Stride 1 slides a 3-column window along the row, so each input vector is loaded
// once per row instead of three times, with a bounds-check-free path for blocks away from the
// left and right edges; stride 2 reads its taps directly.
// Variants (build defines): CPU: dwconv3x3_rows and dwconv3x3_rows_s2 (further below) at
//   stride 1 and 2, VEC=16 where C allows (explicit float16: 10x faster than scalar on PoCL,
//   ../shared/notes/opencl-pocl.md section 3); GPU: dwconv3x3_tiled (local-memory input tiles)
//   when C % 4 == 0, else dwconv3x3 with VEC=1 XPW=1, one block (one output per work-item).
// Weights are weight_t (common.cl): float, or half with MILA_HALF_WEIGHTS; the math is float.
// CPU reference: Reference.conv3x3(depthwise: true). Tests: ConvolutionTests.

#ifndef XPW
#define XPW 8
#endif

inline vec_t dw_load(__global const float* rowIn, int x, int W, int C) {
    return (x >= 0 && x < W) ? VLOAD(rowIn + (size_t)x * C) : (vec_t)(0.0f);
}

__kernel void dwconv3x3(const int H, const int W, const int C, const int Ho, const int Wo, const int stride,
                        __global const float* in, __global const weight_t* w, __global const float* bias,
                        __global const float* res, __global float* out, const int act, const int flags,
                        const int blocksPerItem) {
    const int c0 = get_global_id(0) * VEC;
    const int row = get_global_id(2);
    const int b = row / Ho, oy = row % Ho;
    if (c0 >= C) return;
    for (int block = 0; block < blocksPerItem; ++block) {
    const int ox0 = (get_global_id(1) * blocksPerItem + block) * XPW;
    if (ox0 >= Wo) return;
    vec_t acc[XPW];
    const vec_t start = (flags & EPI_BIAS) ? VLOAD(bias + c0) : (vec_t)(0.0f);
    #pragma unroll
    for (int p = 0; p < XPW; ++p) acc[p] = start;
    #pragma unroll
    for (int ky = 0; ky < 3; ++ky) {
        const int iy = oy * stride + ky - 1;
        if (iy < 0 || iy >= H) continue;
        __global const float* rowIn = in + ((size_t)b * H + iy) * W * C + c0;
        const vec_t w0 = WVLOAD(w + (ky * 3 + 0) * C + c0);
        const vec_t w1 = WVLOAD(w + (ky * 3 + 1) * C + c0);
        const vec_t w2 = WVLOAD(w + (ky * 3 + 2) * C + c0);
        if (stride == 1 && ox0 >= 1 && ox0 + XPW < W) {
            // Interior: all XPW + 2 input columns exist, no bounds checks.
            __global const float* p = rowIn + (size_t)(ox0 - 1) * C;
            vec_t left = VLOAD(p), mid = VLOAD(p + C);
            #pragma unroll
            for (int q = 0; q < XPW; ++q) {
                const vec_t right = VLOAD(p + (size_t)(q + 2) * C);
                acc[q] = fma(left, w0, fma(mid, w1, fma(right, w2, acc[q])));
                left = mid;
                mid = right;
            }
        } else if (stride == 1) {
            vec_t left = dw_load(rowIn, ox0 - 1, W, C);
            vec_t mid = dw_load(rowIn, ox0, W, C);
            #pragma unroll
            for (int p = 0; p < XPW; ++p) {
                const vec_t right = dw_load(rowIn, ox0 + p + 1, W, C);
                acc[p] = fma(left, w0, fma(mid, w1, fma(right, w2, acc[p])));
                left = mid;
                mid = right;
            }
        } else {
            #pragma unroll
            for (int p = 0; p < XPW; ++p) {
                const int ix = (ox0 + p) * stride - 1;
                acc[p] = fma(dw_load(rowIn, ix, W, C), w0,
                             fma(dw_load(rowIn, ix + 1, W, C), w1, fma(dw_load(rowIn, ix + 2, W, C), w2, acc[p])));
            }
        }
    }
    #pragma unroll
    for (int p = 0; p < XPW; ++p) {
        const int ox = ox0 + p;
        if (ox >= Wo) break;
        vec_t v = VACT(acc[p], act);
        const size_t o = (((size_t)b * Ho + oy) * Wo + ox) * C + c0;
        if (flags & EPI_RESIDUAL) v += VLOAD(res + o);
        VSTORE_OUT(v, out + o, flags);
    }
    }
}

// dwconv3x3_rows: the CPU kernel at stride 1. A work-item computes VEC channels x 4 adjacent
// pixels x ROWS output rows, streaming down its column strip: each input row is read once (6
// vectors: a 3-column window sliding over 4 pixels) and feeds the three output rows it
// touches, held in three rotating accumulator sets: `above` (output row iy - 1, taps ky = 2),
// `here` (row iy, ky = 1), `below` (row iy + 1, ky = 0). After input row iy, row iy - 1 is
// complete and stored. 12 accumulators + 9 weights + 6 inputs stay in registers (AVX-512 has
// 32), named rather than in arrays. Per output vector that is 1.5 input loads, against 3.75 in
// dwconv3x3 (each input row read for each of its three output rows). Each output sums its taps
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
// The rows kernels' start: the work-item's 4-pixel strip, channels and row tile, the 9 taps'
// weights (k0..k8, row-major) and the accumulators' starting value (bias or 0).
#define DW_ROWS_BEGIN                                                                                         \
    const int c0 = get_global_id(0) * VEC;                                                                    \
    const int ox0 = get_global_id(1) * 4;                                                                     \
    const int rowTiles = (Ho + ROWS - 1) / ROWS;                                                              \
    const int b = get_global_id(2) / rowTiles, oy0 = (get_global_id(2) % rowTiles) * ROWS;                    \
    if (c0 >= C || ox0 >= Wo) return;                                                                         \
    const vec_t k0 = WVLOAD(w + 0 * C + c0), k1 = WVLOAD(w + 1 * C + c0), k2 = WVLOAD(w + 2 * C + c0);        \
    const vec_t k3 = WVLOAD(w + 3 * C + c0), k4 = WVLOAD(w + 4 * C + c0), k5 = WVLOAD(w + 5 * C + c0);        \
    const vec_t k6 = WVLOAD(w + 6 * C + c0), k7 = WVLOAD(w + 7 * C + c0), k8 = WVLOAD(w + 8 * C + c0);        \
    const vec_t start = (flags & EPI_BIAS) ? VLOAD(bias + c0) : (vec_t)(0.0f);
#define DW_ROTATE(q) above##q = here##q; here##q = below##q; below##q = start;

__kernel void dwconv3x3_rows(const int H, const int W, const int C, const int Ho, const int Wo,
                             __global const float* in, __global const weight_t* w, __global const float* bias,
                             __global const float* res, __global float* out, const int act, const int flags) {
    DW_ROWS_BEGIN
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

// dwconv3x3_rows_s2: the CPU kernel at stride 2, dwconv3x3_rows' walk for it. Output row oy
// reads input rows 2 oy - 1 (taps ky = 0), 2 oy (ky = 1) and 2 oy + 1 (ky = 2), and that last
// row also starts row oy + 1 (its ky = 0). A work-item walks down a strip of 4 output pixels
// (9 input columns) for ROWS output rows with two accumulator sets, `here` (row oy) and `next`
// (row oy + 1): per output vector 4.5 input loads, against 9 in dwconv3x3. Same tap order as
// dwconv3x3 (ky = 0, 1, 2; right, mid, left), so the two agree bit for bit.
// Launch: global (C / VEC, ceil(Wo / 4), B * ceil(Ho / ROWS)). Defines: VEC, ROWS.
#define DW2_TAPS(acc, q, left, mid, right, kl, km, kr) acc##q = fma(left, kl, fma(mid, km, fma(right, kr, acc##q)));
#define DW2_ROW(acc, kl, km, kr)                                                                  \
    DW2_TAPS(acc, 0, x0, x1, x2, kl, km, kr) DW2_TAPS(acc, 1, x2, x3, x4, kl, km, kr)             \
    DW2_TAPS(acc, 2, x4, x5, x6, kl, km, kr) DW2_TAPS(acc, 3, x6, x7, x8, kl, km, kr)
#define DW2_LOAD(iy)                                                                              \
    __global const float* rowIn = in + ((size_t)b * H + (iy)) * W * C + c0;                       \
    vec_t x0, x1, x2, x3, x4, x5, x6, x7, x8;                                                     \
    if (interior) {                                                                               \
        __global const float* p = rowIn + (size_t)ix0 * C;                                        \
        x0 = VLOAD(p); x1 = VLOAD(p + C); x2 = VLOAD(p + 2 * C); x3 = VLOAD(p + 3 * C);           \
        x4 = VLOAD(p + 4 * C); x5 = VLOAD(p + 5 * C); x6 = VLOAD(p + 6 * C);                      \
        x7 = VLOAD(p + 7 * C); x8 = VLOAD(p + 8 * C);                                             \
    } else {                                                                                      \
        x0 = dw_load(rowIn, ix0, W, C); x1 = dw_load(rowIn, ix0 + 1, W, C);                       \
        x2 = dw_load(rowIn, ix0 + 2, W, C); x3 = dw_load(rowIn, ix0 + 3, W, C);                   \
        x4 = dw_load(rowIn, ix0 + 4, W, C); x5 = dw_load(rowIn, ix0 + 5, W, C);                   \
        x6 = dw_load(rowIn, ix0 + 6, W, C); x7 = dw_load(rowIn, ix0 + 7, W, C);                   \
        x8 = dw_load(rowIn, ix0 + 8, W, C);                                                       \
    }
#define DW2_NEXT(q) here##q = next##q; next##q = start;

__kernel void dwconv3x3_rows_s2(const int H, const int W, const int C, const int Ho, const int Wo,
                                __global const float* in, __global const weight_t* w, __global const float* bias,
                                __global const float* res, __global float* out, const int act, const int flags) {
    DW_ROWS_BEGIN
    const int ix0 = 2 * ox0 - 1;  // the strip's first input column
    const bool interior = ix0 >= 0 && ix0 + 8 < W;
    vec_t here0 = start, here1 = start, here2 = start, here3 = start;
    vec_t next0 = start, next1 = start, next2 = start, next3 = start;
    const int last = min(oy0 + ROWS, Ho);
    if (oy0 > 0) {  // row oy0's ky = 0 (input row 2 oy0 - 1; above the image for oy0 = 0)
        DW2_LOAD(2 * oy0 - 1)
        DW2_ROW(here, k0, k1, k2)
    }
    for (int oy = oy0; oy < last; ++oy) {
        if (2 * oy < H) {
            DW2_LOAD(2 * oy)
            DW2_ROW(here, k3, k4, k5)
        }
        if (2 * oy + 1 < H) {
            DW2_LOAD(2 * oy + 1)
            DW2_ROW(here, k6, k7, k8)
            if (oy + 1 < last) { DW2_ROW(next, k0, k1, k2) }
        }
        const size_t o = (((size_t)b * Ho + oy) * Wo + ox0) * C + c0;
        DW_STORE(here, 0) DW_STORE(here, 1) DW_STORE(here, 2) DW_STORE(here, 3)
        DW2_NEXT(0) DW2_NEXT(1) DW2_NEXT(2) DW2_NEXT(3)
    }
}
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
