// linear_attention.cl: the released MLLA linear attention, per head (spec: LinearAttention).
//   q, k = ELU(qk) + 1; qr, kr = 2-D RoPE(q), RoPE(k) over all C channels;
//   z_i = 1 / (q_i . mean_t(k_t) + 1e-6)          (un-rotated q and k)
//   kv  = sum_t kr_t^T v_t / L                     ((d, d) per head)
//   out_i = (qr_i kv) z_i; the host then adds LePE with dwconv3x3 (residual = this output).
//
// Layout: qk (B, L, 2C) straight from the qk GEMM (q = first C channels, k = last C), v (B, L, C),
// out (B, L, C): the token layout, so no transposes. Tokens are in raster order, t = y * W + x.
// RoPE tables from the host (computed in float64): rotY (H, C/4) and rotX (W, C/4) of
// (cos, sin); channel pair p = c / 2 turns by rotY[y][p] for p < C/4, else rotX[x][p - C/4].
// A pair may straddle two heads when d is odd; each work-item reads the partner channel itself.
// DHEAD (build define) is the head dimension d, so the per-head vectors live in registers.
//
// The reductions over all L tokens are split so they stay exact at L = 65536: tokens are summed
// in chunks (la_kv_partial), then the chunk sums are added with Kahan compensation
// (reduce_chunks in reduce.cl, scale 1/L).
//   la_kv_partial  global (C, chunks, B): for channel c of head h = c / d and chunk j,
//                  kvPart[b][j][c][:] = sum_t kr_t[c] v_t[h*d : h*d+d], kPart[b][j][c] = sum_t k_t[c].
//   la_output      global (L, heads, B): one (token, head) per work-item; tokens along dim 0 so
//                  PoCL's work-group vectoriser runs neighbouring tokens in SIMD lanes.
// One variant for CPUs and GPUs: both kernels are per-work-item loops over registers with no
// local memory, which suits PoCL; on a GPU the (C, chunks) grid gives thousands of work-items.
// CPU reference: Reference.linearAttention. Tests: LinearAttentionTests.

#ifndef DHEAD
#error "DHEAD (head dimension) must be defined"
#endif

inline float la_rotate(float self, float partner, int odd, float2 cs) {
    // (re, im) * (cos + i sin): re' = re cos - im sin, im' = re sin + im cos.
    return odd ? fma(partner, cs.y, self * cs.x) : fma(-partner, cs.y, self * cs.x);
}

inline float2 la_angle(int c, int y, int x, int kMax, __global const float2* rotY, __global const float2* rotX) {
    const int p = c >> 1;
    return p < kMax ? rotY[y * kMax + p] : rotX[x * kMax + (p - kMax)];
}

__kernel void la_kv_partial(const int L, const int W, const int C, const int chunk,
                            __global const float* qk, __global const float* v,
                            __global const float2* rotY, __global const float2* rotX,
                            __global float* kvPart, __global float* kPart) {
    const int c = get_global_id(0), j = get_global_id(1), b = get_global_id(2);
    const int chunks = get_global_size(1);
    if (c >= C) return;
    const int kMax = C / 4, partner = c ^ 1, odd = c & 1, h = c / DHEAD;
    float acc[DHEAD];
    for (int e = 0; e < DHEAD; ++e) acc[e] = 0.0f;
    float ksum = 0.0f;
    const int t0 = j * chunk, t1 = min(L, t0 + chunk);
    for (int t = t0; t < t1; ++t) {
        __global const float* krow = qk + ((size_t)b * L + t) * 2 * C + C;
        const float kc = mila_elu1_float(krow[c]);
        const float kp = mila_elu1_float(krow[partner]);
        const float kr = la_rotate(kc, kp, odd, la_angle(c, t / W, t % W, kMax, rotY, rotX));
        ksum += kc;
        __global const float* vrow = v + ((size_t)b * L + t) * C + h * DHEAD;
        for (int e = 0; e < DHEAD; ++e) acc[e] = fma(kr, vrow[e], acc[e]);
    }
    const size_t base = ((size_t)b * chunks + j) * C + c;
    for (int e = 0; e < DHEAD; ++e) kvPart[base * DHEAD + e] = acc[e];
    kPart[base] = ksum;
}

__kernel void la_output(const int L, const int W, const int C, __global const float* qk,
                        __global const float2* rotY, __global const float2* rotX,
                        __global const float* kv, __global const float* kMean, __global float* out) {
    const int t = get_global_id(0), h = get_global_id(1), b = get_global_id(2);
    if (h >= C / DHEAD || t >= L) return;
    const int kMax = C / 4, y = t / W, x = t % W;
    __global const float* qrow = qk + ((size_t)b * L + t) * 2 * C;
    __global const float* km = kMean + (size_t)b * C;
    float qr[DHEAD];
    float dot = 0.0f;
    for (int i = 0; i < DHEAD; ++i) {
        const int c = h * DHEAD + i;
        const float qc = mila_elu1_float(qrow[c]);
        const float qp = mila_elu1_float(qrow[c ^ 1]);
        dot = fma(qc, km[c], dot);
        qr[i] = la_rotate(qc, qp, c & 1, la_angle(c, y, x, kMax, rotY, rotX));
    }
    const float z = 1.0f / (dot + 1e-6f);
    float acc[DHEAD];
    for (int e = 0; e < DHEAD; ++e) acc[e] = 0.0f;
    __global const float* kvh = kv + ((size_t)b * C + h * DHEAD) * DHEAD;
    for (int i = 0; i < DHEAD; ++i)
        for (int e = 0; e < DHEAD; ++e) acc[e] = fma(qr[i], kvh[i * DHEAD + e], acc[e]);
    __global float* orow = out + ((size_t)b * L + t) * C + h * DHEAD;
    for (int e = 0; e < DHEAD; ++e) orow[e] = acc[e] * z;
}
