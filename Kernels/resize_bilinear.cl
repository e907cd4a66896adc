// resize_bilinear.cl: bilinear resize with align_corners=False to an explicit size (PyTorch
// F.interpolate(mode='bilinear'), no antialiasing), as mmseg's `resize` in the UperNet head:
// y = w0y * (w0x * x[y0, x0] + w1x * x[y0, x1]) + w1y * (w0x * x[y1, x0] + w1x * x[y1, x1]),
// in PyTorch's order, taps from mila_bilinear_tap (common.cl), no contraction.
//
// Layout: x (B, Hi, Wi, C) dense channels-last; y (B, Ho, Wo, C) written as a view: pixel p,
// channel c at y[yOffset + p * yStride + c], so a resize can fill its channel slice of a concat
// buffer directly (yStride = C, yOffset = 0 for a dense output).
// Launch: global (C, Wo, B * Ho), one output element per work-item (PoCL vectorises across the
// contiguous channels). The same kernel serves CPUs and GPUs (coalesced over channels).
// CPU reference: Reference.resizeBilinear. Tests: SegmentationOpTests.

#pragma OPENCL FP_CONTRACT OFF

__kernel void resize_bilinear(const int Hi, const int Wi, const int C, const int Ho, const int Wo,
                              const float scaleY, const float scaleX, __global const float* x,
                              __global float* y, const int yOffset, const int yStride) {
    const int c = get_global_id(0), ox = get_global_id(1), row = get_global_id(2);
    if (c >= C || ox >= Wo) return;
    const int b = row / Ho, oy = row % Ho;
    int y0, y1, x0, x1;
    float wy0, wy1, wx0, wx1;
    mila_bilinear_tap(oy, Hi, Ho, scaleY, &y0, &y1, &wy0, &wy1);
    mila_bilinear_tap(ox, Wi, Wo, scaleX, &x0, &x1, &wx0, &wx1);
    __global const float* base = x + (size_t)b * Hi * Wi * C + c;
    const float top = wx0 * base[((size_t)y0 * Wi + x0) * C] + wx1 * base[((size_t)y0 * Wi + x1) * C];
    const float bottom = wx0 * base[((size_t)y1 * Wi + x0) * C] + wx1 * base[((size_t)y1 * Wi + x1) * C];
    y[(size_t)yOffset + ((size_t)row * Wo + ox) * yStride + c] = wy0 * top + wy1 * bottom;
}

// resize_bilinear_vec: the same for C % 16 == 0 (the head's 512-channel maps), 16 channels per
// work-item with float16 loads: the taps are computed once per 16 channels instead of per
// channel. Global (C / 16, Wo, B * Ho).
__kernel void resize_bilinear_vec(const int Hi, const int Wi, const int C, const int Ho, const int Wo,
                                  const float scaleY, const float scaleX, __global const float* x,
                                  __global float* y, const int yOffset, const int yStride) {
    const int c = get_global_id(0) * 16, ox = get_global_id(1), row = get_global_id(2);
    if (c >= C || ox >= Wo) return;
    const int b = row / Ho, oy = row % Ho;
    int y0, y1, x0, x1;
    float wy0, wy1, wx0, wx1;
    mila_bilinear_tap(oy, Hi, Ho, scaleY, &y0, &y1, &wy0, &wy1);
    mila_bilinear_tap(ox, Wi, Wo, scaleX, &x0, &x1, &wx0, &wx1);
    __global const float* base = x + (size_t)b * Hi * Wi * C + c;
    const float16 top = wx0 * vload16(0, base + ((size_t)y0 * Wi + x0) * C) + wx1 * vload16(0, base + ((size_t)y0 * Wi + x1) * C);
    const float16 bottom = wx0 * vload16(0, base + ((size_t)y1 * Wi + x0) * C) + wx1 * vload16(0, base + ((size_t)y1 * Wi + x1) * C);
    vstore16(wy0 * top + wy1 * bottom, 0, y + (size_t)yOffset + ((size_t)row * Wo + ox) * yStride + c);
}
