// forget_gate_attention.cl: forget-gated linear attention per head (../shared/spec/mila-fg.md),
// scalar gate per token and head given as log a <= 0 (fp32), causal or bidirectional, with or
// without the normaliser. Output without LePE (the host adds it with dwconv3x3's residual).
//   num_i = sum_j M_ij (q_i . k_j) v_j,  den_i = sum_j M_ij (q_i . k_j),  out_i = num_i / (den_i + 1e-6)
//   causal M_ij = exp(sum_{t=j+1..i} log a_t) (j <= i); bidirectional adds M_ij = exp(sum_{t=i+1..j}) for j > i.
//
// Layout: qk (B, L, 2C) straight from the qk GEMM (q, k = ELU + 1 of its halves, applied here),
// v (B, L, C), gate (B, L, heads) and gateScale (heads): log a = gateScale[h] * gate, which fuses
// the model's -exp(A_log) * softplus(...) (the GEMM's softplus epilogue makes `gate`; a plain
// log a comes with gateScale = 1). out (B, L, C); den (B, L, heads) is scratch for the
// normaliser. Tokens in raster order.
//
// Two work decompositions:
// - fused (fgla_chunked): one work-group per (head, batch), one work-item per value column e of
//   the head plus, with NORMALIZE, one for a column of ones whose "output" is den; the chunk's
//   q, k, v, gates and the masked score matrix A in local memory. Any head dimension. The notes
//   expected it to suit a 2-core CPU (no state round trips), but on PoCL its per-column scalar
//   loops run at ~2.5 GFLOP/s.
// - three phases (fgla_features, fgla_chunk_state, fgla_state_scan, fgla_output_vec, below):
//   parallel over chunks and tokens with float16 registers over the head dimension (d % 16 == 0),
//   the layout GPUs want and 4-5x faster than the fused kernel on PoCL. The engine uses it
//   whenever d allows (CLBackend.forgetGateKernel).
//   fgla_chunked    chunks of CHUNK tokens (the last may be shorter). Per chunk: A_rs =
//                   (q_r . k_s) exp(sum of log a between s and r) from direct segment sums (every
//                   exponent is a sum of gates, so <= 0: no exp of a positive number, no masking
//                   after exp, no cancellation between prefix sums); intra-chunk part A v;
//                   inter-chunk part exp(P_r) q_r H (P_r: decay from the chunk start to r, H: state
//                   entering the chunk); then H = exp(P_last) H + sum_s exp(X_s) k_s v_s (X_s: decay
//                   from s to the chunk end). Bidirectional: A holds both triangles (diagonal once)
//                   and a second sweep from the last chunk adds exp(X_r) q_r E with the state E
//                   entering from the right, E = exp(P_last) E + sum_s exp(P_s) k_s v_s.
//   fgla_recurrent  the sequential scan S_i = a_i S_{i-1} + k_i^T v_i (and the backward one),
//                   token by token: the baseline, same launch shape.
// Launch: global ((d + NORMALIZE), heads, B), local (d + NORMALIZE, 1, 1). Defines: DHEAD, CHUNK,
// NORMALIZE (0/1), BIDIRECTIONAL (0/1).
// CPU reference: Reference.forgetGateAttention (Sources/MilaReference/ForgetGateReference.swift,
// Float64 recurrent). Tests: ForgetGateTests.

#ifndef DHEAD
#error "DHEAD must be defined"
#endif
#ifndef CHUNK
#define CHUNK 32
#endif
#ifndef NORMALIZE
#define NORMALIZE 1
#endif
#ifndef BIDIRECTIONAL
#define BIDIRECTIONAL 1
#endif
#define NCOL (DHEAD + NORMALIZE)

// Loads chunk [t0, t0 + n) of one head into local memory: q, k (ELU + 1), v columns (plus a
// column of ones), gates (0 past the end: a = 1 changes no decay).
inline void fg_load(int t0, int n, int L, int C, int heads, int h, int b, __global const float* qk,
                    __global const float* v, __global const float* gate, const float scale,
                    __local float (*Q)[DHEAD], __local float (*K)[DHEAD], __local float (*V)[NCOL], __local float* G) {
    const int lid = get_local_id(0), stride = get_local_size(0);
    for (int idx = lid; idx < CHUNK * DHEAD; idx += stride) {
        const int r = idx / DHEAD, m = idx % DHEAD;
        if (r < n) {
            __global const float* row = qk + ((size_t)b * L + t0 + r) * 2 * C + h * DHEAD;
            Q[r][m] = mila_elu1_float(row[m]);
            K[r][m] = mila_elu1_float(row[C + m]);
            V[r][m] = v[((size_t)b * L + t0 + r) * C + h * DHEAD + m];
        } else {
            Q[r][m] = 0.0f;
            K[r][m] = 0.0f;
            V[r][m] = 0.0f;
        }
    }
    for (int r = lid; r < CHUNK; r += stride) {
        G[r] = r < n ? scale * gate[((size_t)b * L + t0 + r) * heads + h] : 0.0f;
#if NORMALIZE
        V[r][DHEAD] = r < n ? 1.0f : 0.0f;
#endif
    }
}

// out = num / (den + 1e-6) for column e of one head, once both directions are summed.
inline void fg_normalize(int L, int C, int heads, int h, int b, int e, __global float* out, __global const float* den) {
    if (e >= DHEAD) return;
    for (int t = 0; t < L; ++t) {
        const size_t o = ((size_t)b * L + t) * C + h * DHEAD + e;
        out[o] = out[o] / (den[((size_t)b * L + t) * heads + h] + 1e-6f);
    }
}

// Decays inside a chunk, as running sums of the gates (each a sum of terms <= 0, accumulated in
// order, never a difference of prefix sums): EP[r] = exp(sum_{t<=r} g), EX[r] = exp(sum_{t>r} g);
// returns exp(sum of all). Every work-item computes its own copy (O(CHUNK), private): sharing
// them through local memory written by some work-items lost the values on PoCL 3.1.
inline float fg_decays(__local const float* G, float* EP, float* EX) {
    float p = 0.0f;
    for (int r = 0; r < CHUNK; ++r) {
        p += G[r];
        EP[r] = mila_exp_float(p);
    }
    float x = 0.0f;
    for (int r = CHUNK - 1; r >= 0; --r) {
        EX[r] = mila_exp_float(x);
        x += G[r];
    }
    return mila_exp_float(p);
}

__kernel __attribute__((reqd_work_group_size(NCOL, 1, 1)))
void fgla_chunked(const int L, const int C, __global const float* qk, __global const float* v,
                  __global const float* gate, __global const float* gateScale, __global float* out, __global float* den) {
    __local float Q[CHUNK][DHEAD], K[CHUNK][DHEAD], V[CHUNK][NCOL], G[CHUNK];
    __local float A[CHUNK][CHUNK];
    float EP[CHUNK], EX[CHUNK];
    // The d x (d + NORMALIZE) state, column e owned by work-item e. In local memory rather than a
    // private array: PoCL 3.1 gave wrong inter-chunk results with a private state array live
    // across the barriers once d >= CHUNK (caught by the tests).
    __local float H[DHEAD][NCOL];
    const int e = get_local_id(0), h = get_group_id(1), b = get_group_id(2);
    const int heads = get_num_groups(1);
    const int chunks = (L + CHUNK - 1) / CHUNK;
    const int stride = get_local_size(0);
    for (int m = 0; m < DHEAD; ++m) H[m][e] = 0.0f;

    for (int c = 0; c < chunks; ++c) {
        const int t0 = c * CHUNK, n = min(CHUNK, L - t0);
        fg_load(t0, n, L, C, heads, h, b, qk, v, gate, gateScale[h], Q, K, V, G);
        barrier(CLK_LOCAL_MEM_FENCE);
        // Decays to the chunk start (inclusive prefix P_r) and to the chunk end (exclusive
        // suffix X_r), each summed directly, exponentiated once.
        const float g = fg_decays(G, EP, EX);
        // Masked scores, row by row: the segment sum grows away from the diagonal.
        for (int r = e; r < n; r += stride) {
            float seg = 0.0f;
            for (int s = r; s >= 0; --s) {
                float dot = 0.0f;
                for (int m = 0; m < DHEAD; ++m) dot = fma(Q[r][m], K[s][m], dot);
                A[r][s] = dot * mila_exp_float(seg);
                seg += G[s];
            }
            seg = 0.0f;
            for (int s = r + 1; s < CHUNK; ++s) {
#if BIDIRECTIONAL
                seg += G[s];
                float dot = 0.0f;
                for (int m = 0; m < DHEAD; ++m) dot = fma(Q[r][m], K[s][m], dot);
                A[r][s] = s < n ? dot * mila_exp_float(seg) : 0.0f;
#else
                A[r][s] = 0.0f;
#endif
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int r = 0; r < n; ++r) {
            float y = 0.0f;
            for (int s = 0; s < CHUNK; ++s) y = fma(A[r][s], V[s][e], y);
            float inter = 0.0f;
            for (int m = 0; m < DHEAD; ++m) inter = fma(Q[r][m], H[m][e], inter);
            y = fma(EP[r], inter, y);
            if (e < DHEAD) out[((size_t)b * L + t0 + r) * C + h * DHEAD + e] = y;
            else den[((size_t)b * L + t0 + r) * heads + h] = y;
        }
        for (int m = 0; m < DHEAD; ++m) {
            float u = 0.0f;
            for (int s = 0; s < n; ++s) u = fma(EX[s] * K[s][m], V[s][e], u);
            H[m][e] = fma(g, H[m][e], u);
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }

#if BIDIRECTIONAL
    for (int m = 0; m < DHEAD; ++m) H[m][e] = 0.0f;  // now E: the state entering from the right
    for (int c = chunks - 1; c >= 0; --c) {
        const int t0 = c * CHUNK, n = min(CHUNK, L - t0);
        fg_load(t0, n, L, C, heads, h, b, qk, v, gate, gateScale[h], Q, K, V, G);
        barrier(CLK_LOCAL_MEM_FENCE);
        const float g = fg_decays(G, EP, EX);
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int r = 0; r < n; ++r) {
            float inter = 0.0f;
            for (int m = 0; m < DHEAD; ++m) inter = fma(Q[r][m], H[m][e], inter);
            const size_t o = e < DHEAD ? ((size_t)b * L + t0 + r) * C + h * DHEAD + e : ((size_t)b * L + t0 + r) * heads + h;
            __global float* target = e < DHEAD ? out : den;
            target[o] = fma(EX[r], inter, target[o]);
        }
        for (int m = 0; m < DHEAD; ++m) {
            float u = 0.0f;
            for (int s = 0; s < n; ++s) u = fma(EP[s] * K[s][m], V[s][e], u);
            H[m][e] = fma(g, H[m][e], u);
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
#endif

#if NORMALIZE
    barrier(CLK_GLOBAL_MEM_FENCE);
    fg_normalize(L, C, heads, h, b, e, out, den);
#endif
}

__kernel __attribute__((reqd_work_group_size(NCOL, 1, 1)))
void fgla_recurrent(const int L, const int C, __global const float* qk, __global const float* v,
                    __global const float* gate, __global const float* gateScale, __global float* out, __global float* den) {
    const int e = get_local_id(0), h = get_group_id(1), b = get_group_id(2);
    const int heads = get_num_groups(1);
    const float scale = gateScale[h];
    float S[DHEAD];
    for (int m = 0; m < DHEAD; ++m) S[m] = 0.0f;
    for (int t = 0; t < L; ++t) {
        __global const float* row = qk + ((size_t)b * L + t) * 2 * C + h * DHEAD;
        const float a = mila_exp_float(scale * gate[((size_t)b * L + t) * heads + h]);
        const float ve = e < DHEAD ? v[((size_t)b * L + t) * C + h * DHEAD + e] : 1.0f;
        float y = 0.0f;
        for (int m = 0; m < DHEAD; ++m) {
            S[m] = fma(a, S[m], mila_elu1_float(row[C + m]) * ve);
            y = fma(mila_elu1_float(row[m]), S[m], y);
        }
        if (e < DHEAD) out[((size_t)b * L + t) * C + h * DHEAD + e] = y;
        else den[((size_t)b * L + t) * heads + h] = y;
    }
#if BIDIRECTIONAL
    // Backward scan R_i = a_{i+1} R_{i+1} + k_i v_i, minus the diagonal both scans counted.
    for (int m = 0; m < DHEAD; ++m) S[m] = 0.0f;
    float aNext = 1.0f;
    for (int t = L - 1; t >= 0; --t) {
        __global const float* row = qk + ((size_t)b * L + t) * 2 * C + h * DHEAD;
        const float ve = e < DHEAD ? v[((size_t)b * L + t) * C + h * DHEAD + e] : 1.0f;
        float y = 0.0f, diagonal = 0.0f;
        for (int m = 0; m < DHEAD; ++m) {
            const float km = mila_elu1_float(row[C + m]), qm = mila_elu1_float(row[m]);
            S[m] = fma(aNext, S[m], km * ve);
            y = fma(qm, S[m], y);
            diagonal = fma(qm, km, diagonal);
        }
        y -= diagonal * ve;
        const size_t o = e < DHEAD ? ((size_t)b * L + t) * C + h * DHEAD + e : ((size_t)b * L + t) * heads + h;
        __global float* target = e < DHEAD ? out : den;
        target[o] += y;
        aNext = mila_exp_float(scale * gate[((size_t)b * L + t) * heads + h]);
    }
#endif
#if NORMALIZE
    barrier(CLK_GLOBAL_MEM_FENCE);
    fg_normalize(L, C, heads, h, b, e, out, den);
#endif
}

// ---------------------------------------------------------------------------------------------
// Three-phase decomposition (chunk states / scan over chunks / outputs), explicitly vectorised
// over the head dimension (DHEAD % 16 == 0). Parallel over chunks and tokens instead of heads,
// so it suits GPUs and, with float16 registers, PoCL on CPUs. Same math as fgla_chunked:
// every decay is exp of a running sum of gates (<= 0), accumulated in order.
//   fgla_features       f = ELU(qk) + 1 once, (B, L, 2C), so the later phases read features.
//   fgla_decay_factors  a = exp(log a) per token and head, (B, L, heads).
//   fgla_chunk_state    global (C / 8, chunks, B): for 8 state rows (channels of one head),
//                       U_c[i][j] = sum_s w_s k_s[i] v_s[j] and U_c[i][d] = sum_s w_s k_s[i] (the
//                       normaliser's column), w_s = exp(X_s) forward / exp(P_s) backward; the
//                       first block of each head also writes the chunk decay exp(sum of gates).
//                       States: (B, chunks, C, d + 1).
//   fgla_state_scan     global (C * (d + 1), B): per state element, sequential over chunks,
//                       replaces U_c by the state entering chunk c: forward H_c (from the left),
//                       backward E_c (from the right).
//   fgla_output_vec     global (L, heads, B): per token and head, the intra-chunk sum with
//                       running products of the factors a on both sides (at most CHUNK - 1
//                       factors, so ~CHUNK ulp; no exp per pair), plus exp(P_r) q H_c (and
//                       exp(X_r) q E_c) from direct sums of the gates, then the normaliser.

__kernel void fgla_features(const int n, __global const float* qk, __global float* features) {
    const int i = get_global_id(0);
    if (i < n) features[i] = mila_elu1_float(qk[i]);
}

// a = exp(gateScale[h] * gate) per token and head, (B, L, heads): the factors of the output
// phase's running products. Global (heads, B * L).
__kernel void fgla_decay_factors(__global const float* gate, __global const float* gateScale, __global float* factors) {
    const int h = get_global_id(0), row = get_global_id(1), heads = get_global_size(0);
    const size_t i = (size_t)row * heads + h;
    factors[i] = mila_exp_float(gateScale[h] * gate[i]);
}

#if DHEAD % 16 == 0
#define FG_GROUPS (DHEAD / 16)

__kernel void fgla_chunk_state(const int L, const int C, const int backward, __global const float* features,
                               __global const float* v, __global const float* gate, __global const float* gateScale,
                               __global float* states, __global float* decay) {
    const int c0 = get_global_id(0) * 8, chunk = get_global_id(1), b = get_global_id(2);
    const int chunks = get_global_size(1), heads = C / DHEAD;
    if (c0 >= C) return;
    const int h = c0 / DHEAD;
    const float scale = gateScale[h];
    const int t0 = chunk * CHUNK, t1 = min(L, t0 + CHUNK);
    float16 acc[8][FG_GROUPS];
    for (int r = 0; r < 8; ++r)
        for (int g = 0; g < FG_GROUPS; ++g) acc[r][g] = (float16)(0.0f);
    float8 ksum = (float8)(0.0f);
    float run = 0.0f;  // forward: gates after s (X_s); backward: gates up to s (P_s)
    for (int i = 0; i < t1 - t0; ++i) {
        const int t = backward ? t0 + i : t1 - 1 - i;
        const float g = scale * gate[((size_t)b * L + t) * heads + h];
        if (backward) run += g;
        const float w = mila_exp_float(run);
        if (!backward) run += g;
        const float8 k = w * vload8(0, features + ((size_t)b * L + t) * 2 * C + C + c0);
        ksum += k;
        float kr[8];
        vstore8(k, 0, kr);
        __global const float* vrow = v + ((size_t)b * L + t) * C + h * DHEAD;
        for (int g2 = 0; g2 < FG_GROUPS; ++g2) {
            const float16 vg = vload16(g2, vrow);
            for (int r = 0; r < 8; ++r) acc[r][g2] = fma((float16)(kr[r]), vg, acc[r][g2]);
        }
    }
    const size_t base = ((size_t)b * chunks + chunk) * C + c0;
    float ks[8];
    vstore8(ksum, 0, ks);
    for (int r = 0; r < 8; ++r) {
        for (int g2 = 0; g2 < FG_GROUPS; ++g2) vstore16(acc[r][g2], 0, states + (base + r) * (DHEAD + 1) + g2 * 16);
        states[(base + r) * (DHEAD + 1) + DHEAD] = ks[r];
    }
    if (c0 % DHEAD == 0) {
        float total = 0.0f;
        for (int t = t0; t < t1; ++t) total += scale * gate[((size_t)b * L + t) * heads + h];
        decay[((size_t)b * chunks + chunk) * heads + h] = mila_exp_float(total);
    }
}

__kernel void fgla_state_scan(const int C, const int chunks, const int backward, __global float* states,
                              __global const float* decay) {
    const int e = get_global_id(0), b = get_global_id(1);
    const int heads = C / DHEAD;
    if (e >= C * (DHEAD + 1)) return;
    const int h = (e / (DHEAD + 1)) / DHEAD;
    float state = 0.0f;
    for (int i = 0; i < chunks; ++i) {
        const int c = backward ? chunks - 1 - i : i;
        __global float* u = states + ((size_t)b * chunks + c) * C * (DHEAD + 1) + e;
        const float contribution = *u;
        *u = state;  // the state entering chunk c
        state = fma(decay[((size_t)b * chunks + c) * heads + h], state, contribution);
    }
}

// One intra-chunk term: w = decay * (q . k_s); num += w v_s; returns w (the normaliser's share).
inline float fg_intra(const float* q, __global const float* ks, __global const float* vs, float decay, float16* num) {
    float16 dot16 = (float16)(0.0f);
    for (int g2 = 0; g2 < FG_GROUPS; ++g2) dot16 = fma(vload16(g2, q), vload16(g2, ks), dot16);
    const float8 d8 = dot16.lo + dot16.hi;
    const float4 d4 = d8.lo + d8.hi;
    const float w = decay * ((d4.x + d4.y) + (d4.z + d4.w));
    for (int g2 = 0; g2 < FG_GROUPS; ++g2) num[g2] = fma((float16)(w), vload16(g2, vs), num[g2]);
    return w;
}

__kernel void fgla_output_vec(const int L, const int C, const int bidirectional, const int normalize,
                              __global const float* features, __global const float* v, __global const float* gate,
                              __global const float* gateScale, __global const float* forward, __global const float* backwardStates,
                              __global const float* factors, __global float* out) {
    const int t = get_global_id(0), h = get_global_id(1), b = get_global_id(2);
    const int heads = C / DHEAD;
    if (t >= L || h >= heads) return;
    const int chunks = (L + CHUNK - 1) / CHUNK, chunk = t / CHUNK;
    const int t0 = chunk * CHUNK, t1 = min(L, t0 + CHUNK);
    const float scale = gateScale[h];
    __global const float* frow = features + (size_t)b * L * 2 * C + h * DHEAD;
    __global const float* gh = gate + (size_t)b * L * heads + h;
    __global const float* ah = factors + (size_t)b * L * heads + h;
    float q[DHEAD];
    for (int g2 = 0; g2 < FG_GROUPS; ++g2) vstore16(vload16(g2, frow + (size_t)t * 2 * C), g2, q);
    float16 num[FG_GROUPS];
    for (int g2 = 0; g2 < FG_GROUPS; ++g2) num[g2] = (float16)(0.0f);
    float den = 0.0f;
    // Intra-chunk, s <= t: the decay is the product of the factors passed going left.
    float m = 1.0f;
    for (int s = t; s >= t0; --s) {
        den += fg_intra(q, frow + (size_t)s * 2 * C + C, v + ((size_t)b * L + s) * C + h * DHEAD, m, num);
        m *= ah[(size_t)s * heads];
    }
    if (bidirectional) {
        m = 1.0f;
        for (int s = t + 1; s < t1; ++s) {
            m *= ah[(size_t)s * heads];
            den += fg_intra(q, frow + (size_t)s * 2 * C + C, v + ((size_t)b * L + s) * C + h * DHEAD, m, num);
        }
    }
    // Inter-chunk: P_r = gates from the chunk start to t (inclusive), X_r = gates after t.
    float p = 0.0f, x = 0.0f;
    for (int s = t0; s <= t; ++s) p += scale * gh[(size_t)s * heads];
    for (int s = t + 1; s < t1; ++s) x += scale * gh[(size_t)s * heads];
    for (int pass = 0; pass < (bidirectional ? 2 : 1); ++pass) {
        __global const float* state = (pass == 0 ? forward : backwardStates)
            + (((size_t)b * chunks + chunk) * C + h * DHEAD) * (DHEAD + 1);
        const float w = mila_exp_float(pass == 0 ? p : x);
        float16 acc[FG_GROUPS];
        for (int g2 = 0; g2 < FG_GROUPS; ++g2) acc[g2] = (float16)(0.0f);
        float accDen = 0.0f;
        for (int i = 0; i < DHEAD; ++i) {
            const float qi = q[i];
            for (int g2 = 0; g2 < FG_GROUPS; ++g2) acc[g2] = fma((float16)(qi), vload16(g2, state + i * (DHEAD + 1)), acc[g2]);
            accDen = fma(qi, state[i * (DHEAD + 1) + DHEAD], accDen);
        }
        for (int g2 = 0; g2 < FG_GROUPS; ++g2) num[g2] = fma((float16)(w), acc[g2], num[g2]);
        den = fma(w, accDen, den);
    }
    const float inv = normalize ? 1.0f / (den + 1e-6f) : 1.0f;
    __global float* orow = out + ((size_t)b * L + t) * C + h * DHEAD;
    for (int g2 = 0; g2 < FG_GROUPS; ++g2) vstore16(num[g2] * inv, g2, orow);
}
#endif
