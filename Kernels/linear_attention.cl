// linear_attention.cl: the released MLLA linear attention, per head (spec: LinearAttention).
//   q, k = ELU(qk) + 1; qr, kr = 2-D RoPE(q), RoPE(k) over all C channels;
//   z_i = 1 / (q_i . mean_t(k_t) + 1e-6)          (un-rotated q and k)
//   kv  = sum_t kr_t^T v_t / L                     ((d, d) per head)
//   out_i = (qr_i kv) z_i, plus LePE (dwconv3x3 of v): la_output_vec adds it itself; after the
//   other output kernels the host adds it with dwconv3x3 (residual = this output).
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
//   la_kv_partial  global (C, chunks, B): for channel c of head h = c / d and chunk j, into the
//                  chunk's record of C (d + 1) floats, part[b][j] = (kv (C, d), ksum (C)):
//                  kv[c][:] = sum_t kr_t[c] v_t[h*d : h*d+d], ksum[c] = sum_t k_t[c]. One
//                  reduce_chunks over whole records then gives each image's (kv / L, mean k),
//                  the record the output kernels read (kvm).
//   la_output      global (L, heads, B): one (token, head) per work-item; tokens along dim 0 so
//                  PoCL's work-group vectoriser runs neighbouring tokens in SIMD lanes.
// Variants:
//   la_kv_partial, la_output          scalar per channel / per (token, head): any d; the GPU
//                                      variant (thousands of light work-items, SIMT lanes).
//   la_kv_partial_vec, la_output_vec  CPU variant when d % 16 == 0 (the models: d = 32): explicit
//                                      float8/float16 so PoCL emits AVX-512 (its work-group
//                                      vectoriser gives up on the token loop); the scalar pair
//                                      ran at 6-8 GFLOP/s on the MLLA-T shapes.
//   la_kv_partial_vec  global (C / 8, chunks, B): 8 rows of one head's kv block per work-item,
//                      a rank-1 update per token (8 x d FMAs in float16 registers).
//   la_output_vec      global (L, heads, B) like la_output, with vector loads of kv rows.
// CPU reference: Reference.linearAttention. Tests: LinearAttentionTests.

#ifndef DHEAD
#error "DHEAD (head dimension) must be defined"
#endif

// Offset of record r (C (d + 1) floats: the kv block, then the k sums) in a partial or reduced buffer.
#define LA_RECORD(r) ((size_t)(r) * C * (DHEAD + 1))

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
                            __global float* part) {
    const int c = get_global_id(0), j = get_global_id(1), b = get_global_id(2);
    const int chunks = get_global_size(1);
    if (c >= C) return;
    const int kMax = C / 4, partner = c ^ 1, odd = c & 1, h = c / DHEAD;
    float acc[DHEAD];
    #pragma unroll
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
        #pragma unroll
        for (int e = 0; e < DHEAD; ++e) acc[e] = fma(kr, vrow[e], acc[e]);
    }
    __global float* record = part + LA_RECORD(b * chunks + j);
    #pragma unroll
    for (int e = 0; e < DHEAD; ++e) record[c * DHEAD + e] = acc[e];
    record[C * DHEAD + c] = ksum;
}

__kernel void la_output(const int L, const int W, const int C, __global const float* qk,
                        __global const float2* rotY, __global const float2* rotX,
                        __global const float* kvm, __global float* out) {
    const int t = get_global_id(0), h = get_global_id(1), b = get_global_id(2);
    if (h >= C / DHEAD || t >= L) return;
    const int kMax = C / 4, y = t / W, x = t % W;
    __global const float* qrow = qk + ((size_t)b * L + t) * 2 * C;
    __global const float* km = kvm + LA_RECORD(b) + C * DHEAD;
    float qr[DHEAD];
    float dot = 0.0f;
    #pragma unroll
    for (int i = 0; i < DHEAD; ++i) {
        const int c = h * DHEAD + i;
        const float qc = mila_elu1_float(qrow[c]);
        const float qp = mila_elu1_float(qrow[c ^ 1]);
        dot = fma(qc, km[c], dot);
        qr[i] = la_rotate(qc, qp, c & 1, la_angle(c, y, x, kMax, rotY, rotX));
    }
    const float z = 1.0f / (dot + 1e-6f);
    float acc[DHEAD];
    #pragma unroll
    for (int e = 0; e < DHEAD; ++e) acc[e] = 0.0f;
    __global const float* kvh = kvm + LA_RECORD(b) + h * DHEAD * DHEAD;
    #pragma unroll
    for (int i = 0; i < DHEAD; ++i)
        #pragma unroll
        for (int e = 0; e < DHEAD; ++e) acc[e] = fma(qr[i], kvh[i * DHEAD + e], acc[e]);
    __global float* orow = out + ((size_t)b * L + t) * C + h * DHEAD;
    #pragma unroll
    for (int e = 0; e < DHEAD; ++e) orow[e] = acc[e] * z;
}

#if DHEAD % 16 == 0
#define LA_GROUPS (DHEAD / 16)

// kr (or qr) for 8 channels c0..c0+7 (c0 % 8 == 0, so 4 whole RoPE pairs from one table row;
// C % 16 == 0 keeps them in one table): even lanes re cos - im sin, odd lanes im cos + re sin.
inline float8 la_rotate8(float8 f, int c0, int y, int x, int kMax, __global const float2* rotY,
                         __global const float2* rotX) {
    const int p0 = c0 >> 1;
    __global const float* table = (__global const float*)(p0 < kMax ? rotY + y * kMax + p0 : rotX + x * kMax + (p0 - kMax));
    const float8 rot = vload8(0, table);  // (cos, sin) x 4 pairs
    const float8 cs = shuffle(rot, (uint8)(0, 0, 2, 2, 4, 4, 6, 6));
    const float8 sn = shuffle(rot, (uint8)(1, 1, 3, 3, 5, 5, 7, 7)) * (float8)(-1, 1, -1, 1, -1, 1, -1, 1);
    const float8 swapped = shuffle(f, (uint8)(1, 0, 3, 2, 5, 4, 7, 6));
    return fma(swapped, sn, f * cs);
}

__kernel void la_kv_partial_vec(const int L, const int W, const int C, const int chunk,
                                __global const float* qk, __global const float* v,
                                __global const float2* rotY, __global const float2* rotX,
                                __global float* part) {
    const int c0 = get_global_id(0) * 8, j = get_global_id(1), b = get_global_id(2);
    const int chunks = get_global_size(1);
    if (c0 >= C) return;
    const int kMax = C / 4, h = c0 / DHEAD;
    float16 acc[8][LA_GROUPS];
    #pragma unroll
    for (int r = 0; r < 8; ++r)
        #pragma unroll
        for (int g = 0; g < LA_GROUPS; ++g) acc[r][g] = (float16)(0.0f);
    float8 ksum = (float8)(0.0f);
    const int t0 = j * chunk, t1 = min(L, t0 + chunk);
    for (int t = t0; t < t1; ++t) {
        const float8 k = mila_elu1_float8(vload8(0, qk + ((size_t)b * L + t) * 2 * C + C + c0));
        ksum += k;
        float kr[8];
        vstore8(la_rotate8(k, c0, t / W, t % W, kMax, rotY, rotX), 0, kr);
        __global const float* vrow = v + ((size_t)b * L + t) * C + h * DHEAD;
        #pragma unroll
        for (int g = 0; g < LA_GROUPS; ++g) {
            const float16 vg = vload16(g, vrow);
            #pragma unroll
            for (int r = 0; r < 8; ++r) acc[r][g] = fma((float16)(kr[r]), vg, acc[r][g]);
        }
    }
    __global float* record = part + LA_RECORD(b * chunks + j);
    #pragma unroll
    for (int r = 0; r < 8; ++r)
        #pragma unroll
        for (int g = 0; g < LA_GROUPS; ++g) vstore16(acc[r][g], g, record + (c0 + r) * DHEAD);
    vstore8(ksum, 0, record + C * DHEAD + c0);
}

// la_output_vec also adds LePE (mila_lepe16: dwconv3x3(v) with lw packed (9, C) and bias lb,
// hasBias 0: none), so no attention-only tensor is written and read back: out = LePE +
// attention, the sum the separate conv forms (its residual add), bit for bit the two-launch
// result. The image is (L / W, W).
__kernel void la_output_vec(const int L, const int W, const int C, __global const float* qk,
                            __global const float2* rotY, __global const float2* rotX,
                            __global const float* kvm, __global float* out, __global const float* v,
                            __global const weight_t* lw, __global const float* lb, const int hasBias) {
    const int t = get_global_id(0), h = get_global_id(1), b = get_global_id(2);
    if (h >= C / DHEAD || t >= L) return;
    const int kMax = C / 4, y = t / W, x = t % W;
    __global const float* qrow = qk + ((size_t)b * L + t) * 2 * C;
    float qr[DHEAD];
    float8 dot8 = (float8)(0.0f);
    #pragma unroll
    for (int blk = 0; blk < DHEAD / 8; ++blk) {
        const int c0 = h * DHEAD + blk * 8;
        const float8 q = mila_elu1_float8(vload8(0, qrow + c0));
        dot8 = fma(q, vload8(0, kvm + LA_RECORD(b) + C * DHEAD + c0), dot8);
        vstore8(la_rotate8(q, c0, y, x, kMax, rotY, rotX), 0, qr + blk * 8);
    }
    const float4 d4 = dot8.lo + dot8.hi;
    const float z = 1.0f / ((d4.x + d4.y) + (d4.z + d4.w) + 1e-6f);
    float16 acc[LA_GROUPS];
    #pragma unroll
    for (int g = 0; g < LA_GROUPS; ++g) acc[g] = (float16)(0.0f);
    __global const float* kvh = kvm + LA_RECORD(b) + h * DHEAD * DHEAD;
    #pragma unroll
    for (int i = 0; i < DHEAD; ++i)
        #pragma unroll
        for (int g = 0; g < LA_GROUPS; ++g) acc[g] = fma((float16)(qr[i]), vload16(g, kvh + i * DHEAD), acc[g]);
    __global float* orow = out + ((size_t)b * L + t) * C + h * DHEAD;
    #pragma unroll
    for (int g = 0; g < LA_GROUPS; ++g) {
        const int c = h * DHEAD + g * 16;
        const float16 lepe = mila_lepe16(v + (size_t)b * L * C, y, x, L / W, W, C, c, lw,
                                         hasBias ? vload16(0, lb + c) : (float16)(0.0f));
        const float16 attention = acc[g] * z;  // rounded apart: one expression may contract to an fma
        vstore16(lepe + attention, g, orow);
    }
}
#endif

// The GPU variant: local-memory tiles, consecutive work-items on consecutive channels.
//   la_kv_wg      one work-group of LA_WG work-items per (head, chunk, batch): the chunk's
//                 tokens pass through local memory LA_TS at a time (rotated k, un-rotated k and
//                 v rows of the head, each row loaded by neighbouring work-items), then every
//                 work-item adds its LA_OPW (i, e) entries of the d x d block over those tokens
//                 (kr[t][i] is a broadcast, v[t][e] consecutive); work-items 0..d-1 also sum k.
//                 Writes the same partial sums as la_kv_partial, so reduce_chunks follows as on CPUs.
//                 Launch: global (LA_WG * heads, chunks, B), local (LA_WG, 1, 1).
//   la_output_wg  one work-group per (LA_TT tokens, head, batch): the head's d x d kv block and
//                 key mean go to local memory once, the tile's rotated q rows and z next; each
//                 work-item then writes LA_TT * d / LA_WG outputs, consecutive work-items on
//                 consecutive channels of one token row (coalesced stores).
//                 Launch: global (LA_WG * ceil(L / LA_TT), heads, B), local (LA_WG, 1, 1).
// Defines: LA_WG (work-group size), LA_TS, LA_TT (tokens per tile), LA_OPW = ceil(d * d / LA_WG).
// The host sizes LA_TS and LA_TT from the device's local memory (CLContext.attentionTiles).
#ifdef LA_WG
__kernel __attribute__((reqd_work_group_size(LA_WG, 1, 1)))
void la_kv_wg(const int L, const int W, const int C, const int chunk,
              __global const float* qk, __global const float* v,
              __global const float2* rotY, __global const float2* rotX,
              __global float* part) {
    __local float KR[LA_TS][DHEAD], KU[LA_TS][DHEAD], VV[LA_TS][DHEAD];
    const int lid = get_local_id(0), h = get_group_id(0), j = get_group_id(1), b = get_group_id(2);
    const int chunks = get_num_groups(1), kMax = C / 4;
    float acc[LA_OPW];
    #pragma unroll
    for (int o = 0; o < LA_OPW; ++o) acc[o] = 0.0f;
    float ksum = 0.0f;
    const int t0 = j * chunk, t1 = min(L, t0 + chunk);
    for (int s0 = t0; s0 < t1; s0 += LA_TS) {
        const int n = min(LA_TS, t1 - s0);
        for (int idx = lid; idx < n * DHEAD; idx += LA_WG) {
            const int r = idx / DHEAD, i = idx % DHEAD, t = s0 + r, c = h * DHEAD + i;
            __global const float* krow = qk + ((size_t)b * L + t) * 2 * C + C;
            const float kc = mila_elu1_float(krow[c]);
            const float kp = mila_elu1_float(krow[c ^ 1]);
            KU[r][i] = kc;
            KR[r][i] = la_rotate(kc, kp, c & 1, la_angle(c, t / W, t % W, kMax, rotY, rotX));
            VV[r][i] = v[((size_t)b * L + t) * C + c];
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        #pragma unroll
        for (int o = 0; o < LA_OPW; ++o) {
            const int entry = lid + o * LA_WG;
            if (entry < DHEAD * DHEAD) {
                const int i = entry / DHEAD, e = entry % DHEAD;
                float a = acc[o];
                for (int r = 0; r < n; ++r) a = fma(KR[r][i], VV[r][e], a);
                acc[o] = a;
            }
        }
        if (lid < DHEAD)
            for (int r = 0; r < n; ++r) ksum += KU[r][lid];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    __global float* record = part + LA_RECORD(b * chunks + j);
    #pragma unroll
    for (int o = 0; o < LA_OPW; ++o) {
        const int entry = lid + o * LA_WG;
        if (entry < DHEAD * DHEAD) record[h * DHEAD * DHEAD + entry] = acc[o];
    }
    if (lid < DHEAD) record[C * DHEAD + h * DHEAD + lid] = ksum;
}

__kernel __attribute__((reqd_work_group_size(LA_WG, 1, 1)))
void la_output_wg(const int L, const int W, const int C, __global const float* qk,
                  __global const float2* rotY, __global const float2* rotX,
                  __global const float* kvm, __global float* out) {
    __local float KV[DHEAD][DHEAD], QR[LA_TT][DHEAD], QU[LA_TT][DHEAD], KM[DHEAD], Z[LA_TT];
    const int lid = get_local_id(0), h = get_group_id(1), b = get_group_id(2);
    const int t0 = get_group_id(0) * LA_TT, n = min(LA_TT, L - t0), kMax = C / 4;
    __global const float* kvh = kvm + LA_RECORD(b) + h * DHEAD * DHEAD;
    for (int idx = lid; idx < DHEAD * DHEAD; idx += LA_WG) KV[idx / DHEAD][idx % DHEAD] = kvh[idx];
    for (int i = lid; i < DHEAD; i += LA_WG) KM[i] = kvm[LA_RECORD(b) + C * DHEAD + h * DHEAD + i];
    for (int idx = lid; idx < n * DHEAD; idx += LA_WG) {
        const int r = idx / DHEAD, i = idx % DHEAD, t = t0 + r, c = h * DHEAD + i;
        __global const float* qrow = qk + ((size_t)b * L + t) * 2 * C;
        const float qc = mila_elu1_float(qrow[c]);
        const float qp = mila_elu1_float(qrow[c ^ 1]);
        QU[r][i] = qc;
        QR[r][i] = la_rotate(qc, qp, c & 1, la_angle(c, t / W, t % W, kMax, rotY, rotX));
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int r = lid; r < n; r += LA_WG) {
        float dot = 0.0f;
        for (int i = 0; i < DHEAD; ++i) dot = fma(QU[r][i], KM[i], dot);
        Z[r] = 1.0f / (dot + 1e-6f);
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int idx = lid; idx < n * DHEAD; idx += LA_WG) {
        const int r = idx / DHEAD, e = idx % DHEAD;
        float acc = 0.0f;
        for (int i = 0; i < DHEAD; ++i) acc = fma(QR[r][i], KV[i][e], acc);
        out[((size_t)b * L + t0 + r) * C + h * DHEAD + e] = acc * Z[r];
    }
}
#endif
