// adaptive_avg_pool.cl: adaptive average pooling to (S, S) with PyTorch's bins (the UperNet
// pyramid pooling module, S = 1, 2, 3, 6): output bin i covers rows
// [floor(i * H / S), ceil((i + 1) * H / S)), the same for columns; bins overlap or repeat when
// S does not divide the size. Value: the float sum over the bin divided by its area.
//
// Layout: x (B, H, W, C) read as a view (x[xOffset + p * xStride + c], so the pooled map can be
// the backbone output stored in its slice of the PSP concat buffer); y (B, S, S, C) dense.
// Launch: global (C, S, B * S), one output element per work-item. CPUs and GPUs alike.
// CPU reference: Reference.adaptiveAvgPool. Tests: SegmentationOpTests.

__kernel void adaptive_avg_pool(const int H, const int W, const int C, const int S, __global const float* x,
                                const int xOffset, const int xStride, __global float* y) {
    const int c = get_global_id(0), ox = get_global_id(1), row = get_global_id(2);
    if (c >= C || ox >= S) return;
    const int b = row / S, oy = row % S;
    const int ys = (oy * H) / S, ye = ((oy + 1) * H + S - 1) / S;
    const int xs = (ox * W) / S, xe = ((ox + 1) * W + S - 1) / S;
    __global const float* base = x + (size_t)xOffset + (size_t)b * H * W * xStride + c;
    float sum = 0.0f;
    for (int iy = ys; iy < ye; ++iy)
        for (int ix = xs; ix < xe; ++ix) sum += base[((size_t)iy * W + ix) * xStride];
    y[((size_t)row * S + ox) * C + c] = sum / (float)((ye - ys) * (xe - xs));
}
