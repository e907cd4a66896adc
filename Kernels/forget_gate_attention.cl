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
// Work decomposition: one work-group per (head, batch), one work-item per value column e of the
// head (d of them) plus, with NORMALIZE, one for a column of ones whose "output" is den. Each
// work-item keeps its column of the d x d state in registers; the chunk's q, k, v, gates and the
// masked score matrix A live in local memory. This fused form suits a 2-core CPU (B x heads
// work-groups keep both cores busy, no state round trips through global memory); a GPU would
// rather split chunk states / scan / outputs into three launches over chunks (not built yet).
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
    if (e < DHEAD) {
        for (int t = 0; t < L; ++t) {
            const size_t o = ((size_t)b * L + t) * C + h * DHEAD + e;
            out[o] = out[o] / (den[((size_t)b * L + t) * heads + h] + 1e-6f);
        }
    }
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
    if (e < DHEAD) {
        for (int t = 0; t < L; ++t) {
            const size_t o = ((size_t)b * L + t) * C + h * DHEAD + e;
            out[o] = out[o] / (den[((size_t)b * L + t) * heads + h] + 1e-6f);
        }
    }
#endif
}
