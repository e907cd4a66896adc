// resize_argmax.cl: mmseg's whole-image output in one pass: the head's logits (B, Hs, Ws, K)
// resized bilinearly (align_corners=False) to the network input's size (Hm, Wm), then to the
// image's size (Ho, Wo), then the first maximal class per pixel (PyTorch argmax; softmax does
// not change it). The two resizes do not compose into one (spec section 1), so each output
// pixel forms the 4 mid-size values it interpolates, each from 4 logits, per class, with the
// arithmetic of resize_bilinear.cl (same taps, same order, no contraction): the labels are
// those of the materialised float32 two-resize result, and no (K, Ho, Wo) tensor exists.
//
// Layout: x (B, Hs, Ws, K) dense; labels (B, Ho, Wo) as float class indices.
// Launch: global (Wo, Ho, B), one output pixel per work-item, K classes in a loop.
// CPU reference: Reference.resizeArgmax. Tests: SegmentationOpTests.

#pragma OPENCL FP_CONTRACT OFF

// Shared by both kernels: the taps of output pixel (oy, ox) through the mid size, and the 16
// logit pixels they read (p[r][s][i][j]: mid row r's source row i, mid column s's column j).
#define RA_SETUP \
    int my[2], mx[2]; \
    float ly[2], lx[2]; \
    mila_bilinear_tap(oy, Hm, Ho, outScaleY, &my[0], &my[1], &ly[0], &ly[1]); \
    mila_bilinear_tap(ox, Wm, Wo, outScaleX, &mx[0], &mx[1], &lx[0], &lx[1]); \
    int ry[2][2], rx[2][2]; \
    float wy[2][2], wx[2][2]; \
    _Pragma("unroll") \
    for (int r = 0; r < 2; ++r) { \
        mila_bilinear_tap(my[r], Hs, Hm, midScaleY, &ry[r][0], &ry[r][1], &wy[r][0], &wy[r][1]); \
        mila_bilinear_tap(mx[r], Ws, Wm, midScaleX, &rx[r][0], &rx[r][1], &wx[r][0], &wx[r][1]); \
    } \
    __global const float* base = x + (size_t)b * Hs * Ws * K; \
    __global const float* p[2][2][2][2]; \
    _Pragma("unroll") \
    for (int r = 0; r < 2; ++r) \
        _Pragma("unroll") \
        for (int s = 0; s < 2; ++s) \
            _Pragma("unroll") \
            for (int i = 0; i < 2; ++i) \
                _Pragma("unroll") \
                for (int j = 0; j < 2; ++j) p[r][s][i][j] = base + ((size_t)ry[r][i] * Ws + rx[s][j]) * K;
// The twice-resized value v of class k (resize_bilinear.cl's arithmetic and order).
#define RA_VALUE(k) \
        float mid[2][2]; \
        _Pragma("unroll") \
        for (int r = 0; r < 2; ++r) \
            _Pragma("unroll") \
            for (int s = 0; s < 2; ++s) { \
                const float top = wx[s][0] * p[r][s][0][0][(k)] + wx[s][1] * p[r][s][0][1][(k)]; \
                const float bottom = wx[s][0] * p[r][s][1][0][(k)] + wx[s][1] * p[r][s][1][1][(k)]; \
                mid[r][s] = wy[r][0] * top + wy[r][1] * bottom; \
            } \
        const float top = lx[0] * mid[0][0] + lx[1] * mid[0][1]; \
        const float bottom = lx[0] * mid[1][0] + lx[1] * mid[1][1]; \
        const float v = ly[0] * top + ly[1] * bottom;

__kernel void resize_argmax(const int Hs, const int Ws, const int K, const int Hm, const int Wm,
                            const int Ho, const int Wo, const float midScaleY, const float midScaleX,
                            const float outScaleY, const float outScaleX, __global const float* x,
                            __global float* labels) {
    const int ox = get_global_id(0), oy = get_global_id(1), b = get_global_id(2);
    if (ox >= Wo || oy >= Ho) return;
    RA_SETUP
    float best = 0.0f;
    int bestK = 0;
    for (int k = 0; k < K; ++k) {
        RA_VALUE(k)
        if (k == 0 || v > best) {
            best = v;
            bestK = k;
        }
    }
    labels[((size_t)b * Ho + oy) * Wo + ox] = (float)bestK;
}

// resize_argmax_vec: the same per output pixel, with the classes in blocks of 16 read by
// float16 loads from the 16 logit pixels (contiguous in channels-last memory) instead of one
// scalar gather per class; the classes past the last full block one by one. Same arithmetic
// per class, same first-maximum rule. Global (Wo, Ho, B).
__kernel void resize_argmax_vec(const int Hs, const int Ws, const int K, const int Hm, const int Wm,
                                const int Ho, const int Wo, const float midScaleY, const float midScaleX,
                                const float outScaleY, const float outScaleX, __global const float* x,
                                __global float* labels) {
    const int ox = get_global_id(0), oy = get_global_id(1), b = get_global_id(2);
    if (ox >= Wo || oy >= Ho) return;
    RA_SETUP
    float best = 0.0f;
    int bestK = 0;
    int k0 = 0;
    for (; k0 + 16 <= K; k0 += 16) {
        float16 mid[2][2];
        #pragma unroll
        for (int r = 0; r < 2; ++r)
            #pragma unroll
            for (int s = 0; s < 2; ++s) {
                const float16 top = wx[s][0] * vload16(0, p[r][s][0][0] + k0) + wx[s][1] * vload16(0, p[r][s][0][1] + k0);
                const float16 bottom = wx[s][0] * vload16(0, p[r][s][1][0] + k0) + wx[s][1] * vload16(0, p[r][s][1][1] + k0);
                mid[r][s] = wy[r][0] * top + wy[r][1] * bottom;
            }
        const float16 top = lx[0] * mid[0][0] + lx[1] * mid[0][1];
        const float16 bottom = lx[0] * mid[1][0] + lx[1] * mid[1][1];
        float v[16];
        vstore16(ly[0] * top + ly[1] * bottom, 0, v);
        for (int j = 0; j < 16; ++j) {
            if ((k0 == 0 && j == 0) || v[j] > best) {
                best = v[j];
                bestK = k0 + j;
            }
        }
    }
    for (int k = k0; k < K; ++k) {
        RA_VALUE(k)
        if (k == 0 || v > best) {
            best = v;
            bestK = k;
        }
    }
    labels[((size_t)b * Ho + oy) * Wo + ox] = (float)bestK;
}
