// layernorm.cl: LayerNorm over the channels of each token (eps given, 1e-5 in the model):
// y = (x - mean) / sqrt(var + eps) * weight + bias, biased variance, two passes (mean first,
// then the centred squares) so large means do not cancel.
//
// Layout: x (rows, C) dense, rows = B * L, the token layout; y written as a view: row r at
// y + yOffset + r * yStride (a backbone output stored in its slice of a concat buffer; yStride = C
// when dense); weight and bias (C).
// Variants (chosen by device type):
//   layernorm_rows  one work-item per row, scalar sums (any C; PoCL vectorises across rows, with
//                   gathers). Global (rows).
//   layernorm_rows_vec  CPU when C % 16 == 0 (all model widths): one work-item per row with
//                   float16 loads and sums, ~2x layernorm_rows. Global (rows).
//   layernorm_wg    GPU: one work-group of LN_WG work-items per row (consecutive work-items on
//                   consecutive channels: coalesced), tree reductions in local memory. LN_WG
//                   from the host: ~4 channels per work-item, 32..256, within the device's
//                   work-group limit (CLContext.layerNormGroup). Global (LN_WG * rows), local (LN_WG).
// CPU reference: Reference.layerNorm. Tests: LayerNormTests.

#ifndef LN_WG
#define LN_WG 64
#endif

__kernel void layernorm_rows(const int rows, const int C, const float eps, __global const float* x,
                             __global const float* weight, __global const float* bias, __global float* y,
                             const int yOffset, const int yStride) {
    const int r = get_global_id(0);
    if (r >= rows) return;
    __global const float* xr = x + (size_t)r * C;
    __global float* yr = y + yOffset + (size_t)r * yStride;
    float sum = 0.0f;
    for (int i = 0; i < C; ++i) sum += xr[i];
    const float mean = sum / C;
    float sq = 0.0f;
    for (int i = 0; i < C; ++i) { const float d = xr[i] - mean; sq = fma(d, d, sq); }
    const float inv = rsqrt(sq / C + eps);
    for (int i = 0; i < C; ++i) yr[i] = fma((xr[i] - mean) * inv, weight[i], bias[i]);
}

__kernel void layernorm_rows_vec(const int rows, const int C, const float eps, __global const float* x,
                                 __global const float* weight, __global const float* bias, __global float* y,
                             const int yOffset, const int yStride) {
    const int r = get_global_id(0);
    if (r >= rows) return;
    __global const float* xr = x + (size_t)r * C;
    __global float* yr = y + yOffset + (size_t)r * yStride;
    const int n = C / 16;
    float16 sum = (float16)(0.0f);
    for (int i = 0; i < n; ++i) sum += vload16(i, xr);
    const float mean = mila_sum16(sum) / C;
    float16 sq = (float16)(0.0f);
    for (int i = 0; i < n; ++i) { const float16 d = vload16(i, xr) - mean; sq = fma(d, d, sq); }
    const float inv = rsqrt(mila_sum16(sq) / C + eps);
    for (int i = 0; i < n; ++i)
        vstore16(fma((vload16(i, xr) - mean) * inv, vload16(i, weight), vload16(i, bias)), i, yr);
}

// Sums `v` over the work-group into scratch[0]; every work-item must call it.
#define LN_GROUP_SUM(v, scratch, lid, total)                   \
    scratch[lid] = (v);                                        \
    barrier(CLK_LOCAL_MEM_FENCE);                              \
    for (int s = LN_WG / 2; s > 0; s >>= 1) {                  \
        if (lid < s) scratch[lid] += scratch[lid + s];         \
        barrier(CLK_LOCAL_MEM_FENCE);                          \
    }                                                          \
    total = scratch[0];                                        \
    barrier(CLK_LOCAL_MEM_FENCE);

__kernel __attribute__((reqd_work_group_size(LN_WG, 1, 1)))
void layernorm_wg(const int rows, const int C, const float eps, __global const float* x,
                  __global const float* weight, __global const float* bias, __global float* y,
                             const int yOffset, const int yStride) {
    // The host launches exactly rows work-groups, so no work-item leaves before the barriers.
    __local float scratch[LN_WG];
    const int r = get_group_id(0), lid = get_local_id(0);
    __global const float* xr = x + (size_t)r * C;
    __global float* yr = y + yOffset + (size_t)r * yStride;
    float part = 0.0f, total;
    for (int i = lid; i < C; i += LN_WG) part += xr[i];
    LN_GROUP_SUM(part, scratch, lid, total)
    const float mean = total / C;
    part = 0.0f;
    for (int i = lid; i < C; i += LN_WG) { const float d = xr[i] - mean; part = fma(d, d, part); }
    LN_GROUP_SUM(part, scratch, lid, total)
    const float inv = rsqrt(total / C + eps);
    for (int i = lid; i < C; i += LN_WG) yr[i] = fma((xr[i] - mean) * inv, weight[i], bias[i]);
}
