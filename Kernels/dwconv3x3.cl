// dwconv3x3.cl: depthwise 3x3 convolution, pad 1, stride 1 or 2, with bias, activation
// (none/ReLU/SiLU) and optional residual add (CPE is x + dwconv(x); LePE adds the attention
// output the same way).
//
// Layout: in (B, H, W, C) channels-last (the token layout, no transposes around it); weight
// packed at load time from (C, 1, 3, 3) to (9, C) so a VEC-wide load reads one tap for VEC
// channels; out and RES (B, Ho, Wo, C). VEC must divide C (the host picks 16, 4 or 1).
// Launch: global (C / VEC, ceil(Wo / (XPW * blocksPerItem)), B * Ho). Each work-item computes
// blocksPerItem blocks of XPW adjacent output pixels of VEC channels. Stride 1 slides a 3-column window along the row, so each input vector
// is loaded once per row instead of three times, with a bounds-check-free path for blocks away
// from the left and right edges; stride 2 reads its taps directly.
// Variants (build defines): CPU VEC=16 XPW=8, 2 blocks per work-item (explicit float16: 10x
//   faster than scalar on PoCL, ../shared/notes/opencl-pocl.md section 3); GPU VEC=4 XPW=1, one
//   block (one output vector per work-item, many work-items).
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
        VSTORE(v, out + o);
    }
    }
}
