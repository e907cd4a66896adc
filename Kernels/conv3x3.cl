// conv3x3.cl: dense 3x3 convolution, pad 1, stride 1 or 2 (the stem), with bias (BatchNorm
// folded in at load time), activation (none/ReLU) and optional residual add.
//
// Layout: in (B, H, W, Cin) channels-last, the model's token layout, so the stem output is
// already (B, L, C0). Weight packed at load time from (Cout, Cin, 3, 3) to (3, 3, Cin, CoutP),
// CoutP = Cout rounded up to 16 * COV with zero columns, so vector loads read whole groups of
// output channels of one tap; bias padded to CoutP. out and RES (B, Ho, Wo, Cout),
// Ho = (H - 1) / s + 1.
// Launch: global (CoutP / (VEC * COV), ceil(Wo / XPW), B * Ho); each work-item computes XPW
// adjacent output pixels x COV vectors of VEC channels: a register tile like gemm_reg's, where
// each (tap, input channel) step broadcasts XPW inputs against COV weight vectors.
// Variants (build defines): CPU VEC=16 with XPW x COV = 16 x 1 (Cout <= 16) or 8 x 2 (16 float16
//   accumulators; 8 x 2 beat 4 x 4 by ~25% on the 32 -> 256 stem conv); GPU VEC=4 COV=1 XPW=1
//   (float4, many work-items). Local size auto.
// CPU reference: Reference.conv3x3(depthwise: false). Tests: ConvolutionTests.

#ifndef XPW
#define XPW 4
#endif
#ifndef COV
#define COV 1
#endif

__kernel void conv3x3(const int H, const int W, const int Cin, const int Ho, const int Wo, const int Cout,
                      const int CoutP, const int stride, __global const float* in, __global const float* w,
                      __global const float* bias, __global const float* res, __global float* out,
                      const int act, const int flags) {
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
            __global const float* wTap = w + (size_t)(ky * 3 + kx) * Cin * CoutP + c0;
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
                for (int q = 0; q < COV; ++q) wv[q] = VLOAD(wTap + (size_t)ci * CoutP + q * VEC);
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
            const size_t o = (((size_t)b * Ho + oy) * Wo + ox) * Cout + c;
            if (c + VEC <= Cout) {
                if (flags & EPI_RESIDUAL) v += VLOAD(res + o);
                VSTORE(v, out + o);
            } else {
                float lanes[VEC];
                VSTORE(v, lanes);
                for (int j = 0; c + j < Cout; ++j) out[o + j] = lanes[j] + ((flags & EPI_RESIDUAL) ? res[o + j] : 0.0f);
            }
        }
    }
}
