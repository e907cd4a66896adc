// conv3x3.cl: dense 3x3 convolution, pad 1, stride 1 or 2 (the stem), with bias (BatchNorm
// folded in at load time), activation (none/ReLU) and optional residual add.
//
// Layout: in (B, H, W, Cin) channels-last, the model's token layout, so the stem output is
// already (B, L, C0). Weight packed at load time from (Cout, Cin, 3, 3) to (3, 3, Cin, CoutP),
// CoutP = Cout rounded up to VEC with zero columns, so a VEC-wide load reads VEC output
// channels of one tap; bias padded to CoutP. out and RES (B, Ho, Wo, Cout), Ho = (H - 1) / s + 1.
// Launch: global (CoutP / VEC, ceil(Wo / XPW), B * Ho); each work-item computes XPW adjacent
// output pixels x VEC channels, reusing each weight vector XPW times.
// Variants (build defines): CPU VEC=16 XPW=4 (float16 -> zmm registers), local size auto;
//   GPU VEC=4 XPW=1 (float4, many work-items), local size auto.
// CPU reference: Reference.conv3x3(depthwise: false). Tests: ConvolutionTests.

#ifndef XPW
#define XPW 4
#endif

__kernel void conv3x3(const int H, const int W, const int Cin, const int Ho, const int Wo, const int Cout,
                      const int CoutP, const int stride, __global const float* in, __global const float* w,
                      __global const float* bias, __global const float* res, __global float* out,
                      const int act, const int flags) {
    const int c0 = get_global_id(0) * VEC;
    const int ox0 = get_global_id(1) * XPW;
    const int row = get_global_id(2);
    const int b = row / Ho, oy = row % Ho;
    if (c0 >= Cout || ox0 >= Wo) return;
    vec_t acc[XPW];
    const vec_t start = (flags & EPI_BIAS) ? VLOAD(bias + c0) : (vec_t)(0.0f);
    for (int p = 0; p < XPW; ++p) acc[p] = start;
    for (int ky = 0; ky < 3; ++ky) {
        const int iy = oy * stride + ky - 1;
        if (iy < 0 || iy >= H) continue;
        __global const float* inRow = in + ((size_t)b * H + iy) * W * Cin;
        for (int kx = 0; kx < 3; ++kx) {
            __global const float* wTap = w + (size_t)(ky * 3 + kx) * Cin * CoutP + c0;
            int offset[XPW];
            float valid[XPW];
            for (int p = 0; p < XPW; ++p) {
                const int ix = (ox0 + p) * stride + kx - 1;
                const int inside = ix >= 0 && ix < W && ox0 + p < Wo;
                valid[p] = inside ? 1.0f : 0.0f;
                offset[p] = (inside ? ix : 0) * Cin;
            }
            for (int ci = 0; ci < Cin; ++ci) {
                const vec_t wv = VLOAD(wTap + (size_t)ci * CoutP);
                for (int p = 0; p < XPW; ++p) acc[p] = fma((vec_t)(inRow[offset[p] + ci] * valid[p]), wv, acc[p]);
            }
        }
    }
    for (int p = 0; p < XPW; ++p) {
        const int ox = ox0 + p;
        if (ox >= Wo) break;
        vec_t v = VACT(acc[p], act);
        const size_t o = (((size_t)b * Ho + oy) * Wo + ox) * Cout + c0;
        if (c0 + VEC <= Cout) {
            if (flags & EPI_RESIDUAL) v += VLOAD(res + o);
            VSTORE(v, out + o);
        } else {
            float lanes[VEC];
            VSTORE(v, lanes);
            for (int j = 0; c0 + j < Cout; ++j) out[o + j] = lanes[j] + ((flags & EPI_RESIDUAL) ? res[o + j] : 0.0f);
        }
    }
}
