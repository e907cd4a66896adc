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
// - phases (fgla_states_seq and fgla_output_vec on CPUs; fgla_state_wg, fgla_state_scan and
//   fgla_output_wg on GPUs, below): the states entering each chunk, then outputs parallel over
//   chunks and tokens with float16 registers over the head dimension (d % 16 == 0), 7-16x
//   faster than the fused kernel on PoCL. The engine uses them whenever d allows
//   (CLBackend.forgetGateKernel).
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
// Phased decomposition (states entering each chunk / outputs), explicitly vectorised over the
// head dimension (DHEAD % 16 == 0), parallel over chunks and tokens in the output phase. Same
// math as fgla_chunked: every decay is exp of a running sum of gates (<= 0), accumulated in
// order. The states entering each chunk, per direction: (B, heads, chunks, d (d + 1)), each
// block the d x d matrix S[i][e] (rows = k channels) then the d normaliser sums, so one head's
// states lie in one run of memory in chunk order. CPU launches:
//   fgla_states_seq     global (heads, directions, B): per head and direction, a walk over the
//                       chunks in the direction's order that writes the state entering each
//                       chunk and then adds the chunk's own part: forward H_{c+1} = exp(sum of
//                       the chunk's gates) H_c + sum_s exp(X_s) k_s v_s^T, backward E_{c-1} the
//                       same with exp(P_s) (X_s: gates after s to the chunk end, P_s: gates from
//                       the chunk start up to s, both direct sums), with the column sum_s w_s k_s
//                       for the normaliser. The forward walk also writes the chunk's k features
//                       transposed (kT, (B, chunks, C, FG_CHUNK16)) and the factors a = exp(log a)
//                       for the output phase.
//   fgla_output_vec     global (chunks * ceil(CHUNK / FG_TB), heads, B): per FG_TB tokens of a chunk
//                       and a head, q = ELU + 1 of its qk half, the scores against the chunk's
//                       kT, the intra-chunk sum with running products of the factors a on both
//                       sides (at most CHUNK - 1 factors, so ~CHUNK ulp; no exp per pair), plus
//                       exp(P_r) q H_c (and exp(X_r) q E_c), then the normaliser; with lepe
//                       set (1: no bias, 2: bias lb) it also adds LePE of the (L / W, W) image
//                       (mila_lepe16, weights lw as dwconv3x3's), bit for bit the conv after it.
// The GPU variant (fgla_state_wg, fgla_state_scan, fgla_output_wg, at the end of this file)
// leaves the same states.
// Measured on PoCL (2-core AVX-512 VM, MILA-FG-T at 1024, the model's 18 calls): a state phase
// parallel over chunks (each chunk's sums U_c written, then a scan kernel over them in place)
// took 66 + 19 ms against 67 ms for the walk, which keeps U_c in registers and writes each state
// once with streaming stores; the output phase 100 -> 86 ms with the head-major state layout
// (8.4 KiB strides per chunk before: a new page, so no hardware prefetch) and prefetches one
// chunk ahead. The `#pragma unroll` on loops over register arrays matters most: without it
// PoCL's LLVM kept the float16 accumulators in memory (load-FMA-store chains) and the output
// phase took 2.3x longer.

#if DHEAD % 16 == 0
#define FG_GROUPS (DHEAD / 16)
#ifndef FG_BIDIR
#define FG_BIDIR 1
#endif
#define FG_CHUNK16 ((CHUNK + 15) / 16 * 16)
#define FG_STATE (DHEAD * (DHEAD + 1))

// Decays below e^-60 are flushed to 0. Strong gates (trained or random weights give log a of
// -10 and less per token) otherwise drive weights, decay products and the terms they scale into
// the subnormal range, where every x86 FMA takes a microcode assist: one MILA-FG-T forward at
// 1024 spent 1.3 s instead of 40 ms in the state phase. A term scaled by e^-60 is 1e-26 of the
// token's own (diagonal) term, far below float rounding of the output.
#define FG_TINY 8.7e-27f
inline float fg_decay(float exponent) { return exponent > -60.0f ? mila_exp_float(exponent) : 0.0f; }
inline float16 fg_decay16(float16 exponent) {
    return select((float16)(0.0f), mila_exp_float16(exponent), exponent > (float16)(-60.0f));
}
inline float fg_flush(float x) { return x < FG_TINY ? 0.0f : x; }
inline float16 fg_flush16(float16 x) { return select(x, (float16)(0.0f), x < (float16)(FG_TINY)); }
inline float16 fg_flush_signed16(float16 x) { return select(x, (float16)(0.0f), fabs(x) < (float16)(FG_TINY)); }

// State rows per register block in fgla_states_seq: FG_SROWS x FG_GROUPS float16 accumulators
// (16 of AVX-512's 32 registers at d = 32).
#define FG_SROWS 8

__kernel void fgla_states_seq(const int L, const int C, __global const float* qk, __global const float* v,
                              __global const float* gate, __global const float* gateScale, __global float* forward,
                              __global float* backward, __global float* kfeat, __global float* factors) {
    const int h = get_global_id(0), isBackward = get_global_id(1), b = get_global_id(2);
    const int heads = C / DHEAD, chunks = (L + CHUNK - 1) / CHUNK;
    if (h >= heads) return;
    const float scale = gateScale[h];
    __global float* states = (isBackward ? backward : forward) + ((size_t)b * heads + h) * chunks * FG_STATE;
    // The running state (rows = k channels) and its normaliser column; per chunk the weights w
    // and the weighted k features kw[s][m] = w_s k_s[m].
    float st[DHEAD][DHEAD], sums[DHEAD], kw[FG_CHUNK16][DHEAD], w[FG_CHUNK16];
    for (int r = 0; r < DHEAD; ++r)
        #pragma unroll
        for (int g2 = 0; g2 < FG_GROUPS; ++g2) vstore16((float16)(0.0f), g2, st[r]);
    #pragma unroll
    for (int g2 = 0; g2 < FG_GROUPS; ++g2) vstore16((float16)(0.0f), g2, sums);
    for (int step = 0; step < chunks; ++step) {
        const int chunk = isBackward ? chunks - 1 - step : step;
        const int t0 = chunk * CHUNK, n = min(L, t0 + CHUNK) - t0;
        // The state entering this chunk, streamed past the caches (the output phase reads it
        // much later).
        __global float* out = states + (size_t)chunk * FG_STATE;
        for (int r = 0; r < DHEAD; ++r)
            #pragma unroll
            for (int g2 = 0; g2 < FG_GROUPS; ++g2) MILA_STREAM16(vload16(g2, st[r]), out + r * DHEAD + g2 * 16);
        #pragma unroll
        for (int g2 = 0; g2 < FG_GROUPS; ++g2) MILA_STREAM16(vload16(g2, sums), out + DHEAD * DHEAD + g2 * 16);
        // Token weights as exponents, direct sums of the gates (forward: after s, summed from the
        // end; backward: up to s), exponentiated 16 at a time; 0 past the end.
        __global const float* gh = gate + ((size_t)b * L + t0) * heads + h;
        float run = 0.0f;
        if (isBackward) {
            for (int i = 0; i < n; ++i) {
                run += scale * gh[(size_t)i * heads];
                w[i] = run;
            }
        } else {
            for (int i = n - 1; i >= 0; --i) {
                w[i] = run;
                const float g = scale * gh[(size_t)i * heads];
                run += g;
                factors[((size_t)b * L + t0 + i) * heads + h] = fg_decay(g);
            }
        }
        for (int i = n; i < FG_CHUNK16; ++i) w[i] = -100.0f;
        #pragma unroll
        for (int i = 0; i < FG_CHUNK16; i += 16) vstore16(fg_decay16(vload16(0, w + i)), 0, w + i);
        const float gamma = fg_decay(run);
        // k features (ELU + 1) times the weights; the forward walk also writes them unweighted
        // and transposed, zero past the end.
        __global float* kt = kfeat + (((size_t)b * chunks + chunk) * C + h * DHEAD) * FG_CHUNK16;
        for (int i = 0; i < FG_CHUNK16; ++i) {
            float16 kv[FG_GROUPS];
            #pragma unroll
            for (int g2 = 0; g2 < FG_GROUPS; ++g2)
                kv[g2] = i < n ? mila_elu1_float16(vload16(g2, qk + ((size_t)b * L + t0 + i) * 2 * C + C + h * DHEAD)) : (float16)(0.0f);
            if (!isBackward) {
                #pragma unroll
                for (int g2 = 0; g2 < FG_GROUPS; ++g2) {
                    float kr[16];
                    vstore16(kv[g2], 0, kr);
                    #pragma unroll
                    for (int m = 0; m < 16; ++m) kt[(size_t)(g2 * 16 + m) * FG_CHUNK16 + i] = kr[m];
                }
            }
            #pragma unroll
            for (int g2 = 0; g2 < FG_GROUPS; ++g2) vstore16(kv[g2] * w[i], g2, kw[i]);
        }
        // S = gamma S + sum_s kw_s v_s^T, FG_SROWS rows at a time; the normaliser column alike.
        __global const float* vh = v + ((size_t)b * L + t0) * C + h * DHEAD;
        for (int r0 = 0; r0 < DHEAD; r0 += FG_SROWS) {
            float16 acc[FG_SROWS][FG_GROUPS];
            #pragma unroll
            for (int r = 0; r < FG_SROWS; ++r)
                #pragma unroll
                for (int g2 = 0; g2 < FG_GROUPS; ++g2) acc[r][g2] = (float16)(0.0f);
            for (int s = 0; s < n; ++s) {
                #pragma unroll
                for (int g2 = 0; g2 < FG_GROUPS; ++g2) {
                    const float16 vs = vload16(g2, vh + (size_t)s * C);
                    #pragma unroll
                    for (int r = 0; r < FG_SROWS; ++r) acc[r][g2] = fma((float16)(kw[s][r0 + r]), vs, acc[r][g2]);
                }
            }
            #pragma unroll
            for (int r = 0; r < FG_SROWS; ++r)
                #pragma unroll
                for (int g2 = 0; g2 < FG_GROUPS; ++g2)
                    vstore16(fg_flush_signed16(fma((float16)(gamma), vload16(g2, st[r0 + r]), acc[r][g2])), g2, st[r0 + r]);
        }
        #pragma unroll
        for (int g2 = 0; g2 < FG_GROUPS; ++g2) {
            float16 ks = (float16)(0.0f);
            for (int s = 0; s < n; ++s) ks += vload16(g2, kw[s]);
            vstore16(fg_flush16(fma((float16)(gamma), vload16(g2, sums), ks)), g2, sums);
        }
    }
}

// Tokens per work-item in fgla_output_vec: each k row, v row and state row loaded once serves
// FG_TB tokens (register blocking). The host sets it (CLContext.forgetGateTokensPerItem) and
// sizes the launch by it.
#ifndef FG_TB
#define FG_TB 4
#endif

__kernel void fgla_output_vec(const int L, const int C, const int normalize,
                              __global const float* qk, __global const float* kfeat, __global const float* v, __global const float* gate,
                              __global const float* gateScale, __global const float* forward, __global const float* backwardStates,
                              __global const float* factors, __global float* out,
                              const int W, __global const weight_t* lw, __global const float* lb, const int lepe) {
    const int block = get_global_id(0), h = get_global_id(1), b = get_global_id(2);
    const int heads = C / DHEAD, chunks = (L + CHUNK - 1) / CHUNK, blocksPerChunk = (CHUNK + FG_TB - 1) / FG_TB;
    const int chunk = block / blocksPerChunk, i0 = block % blocksPerChunk * FG_TB;
    if (chunk >= chunks || h >= heads) return;
    const int t0 = chunk * CHUNK, n = min(L, t0 + CHUNK) - t0;
    if (i0 >= n) return;
    const int nt = min(FG_TB, n - i0);  // tokens of this block; the others repeat the last one, unstored
    const float scale = gateScale[h];
    // While this chunk computes, the caches fetch the next chunk's share of this work-item: its
    // tokens' q and v rows and its run of rows of kT and of both states (the sums row with the
    // first). Contiguous runs: rows strided by the blocks per chunk gained nothing.
    if (chunk + 1 < chunks) {
        const int tn = t0 + CHUNK + i0, part = block % blocksPerChunk;
        for (int tb = 0; tb < FG_TB && tn + tb < L; ++tb) {
            const size_t row = (size_t)b * L + tn + tb;
            #pragma unroll
            for (int g2 = 0; g2 < FG_GROUPS; ++g2) {
                MILA_PREFETCH(qk + row * 2 * C + h * DHEAD + g2 * 16);
                MILA_PREFETCH(v + row * C + h * DHEAD + g2 * 16);
            }
        }
        __global const float* ktNext = kfeat + (((size_t)b * chunks + chunk + 1) * C + h * DHEAD) * FG_CHUNK16;
        __global const float* fNext = forward + (((size_t)b * heads + h) * chunks + chunk + 1) * FG_STATE;
        __global const float* bNext = backwardStates + (((size_t)b * heads + h) * chunks + chunk + 1) * FG_STATE;
        const int rows = (DHEAD + blocksPerChunk - 1) / blocksPerChunk, r0 = min(DHEAD, part * rows), r1 = min(DHEAD, r0 + rows);
        for (int j = r0 * FG_CHUNK16; j < r1 * FG_CHUNK16; j += 16) MILA_PREFETCH(ktNext + j);
        for (int j = r0 * DHEAD; j < r1 * DHEAD; j += 16) {
            MILA_PREFETCH(fNext + j);
            if (FG_BIDIR) MILA_PREFETCH(bNext + j);
        }
        if (part == 0)
            for (int j = DHEAD * DHEAD; j < FG_STATE; j += 16) {
                MILA_PREFETCH(fNext + j);
                if (FG_BIDIR) MILA_PREFETCH(bNext + j);
            }
    }
    __global const float* gh = gate + ((size_t)b * L + t0) * heads + h;
    __global const float* ah = factors + ((size_t)b * L + t0) * heads + h;
    float q[FG_TB][DHEAD];
    #pragma unroll
    for (int tb = 0; tb < FG_TB; ++tb) {
        __global const float* qrow = qk + ((size_t)b * L + t0 + i0 + min(tb, nt - 1)) * 2 * C + h * DHEAD;
        #pragma unroll
        for (int g2 = 0; g2 < FG_GROUPS; ++g2) vstore16(mila_elu1_float16(vload16(g2, qrow)), g2, q[tb]);
    }
    // Intra-chunk weights M_is = product of the factors a passed going from token i to s (at
    // most CHUNK - 1 of them; no exp per pair), 0 outside the window, built 16 at a time: the
    // left part of the block's first token by a scalar loop, then token by token
    // Left_i = a_i Left_{i-1} + [s == i]; the right part from the block's last token backwards,
    // Right_i = a_{i+1} Right_{i+1} + a_{i+1} [s == i + 1].
    // Inter-chunk exponents, direct sums of the gates: P_i = gates from the chunk start to i
    // (inclusive, summed forward), X_i = gates after i (summed from the end).
    float w[FG_TB][FG_CHUNK16], right[FG_CHUNK16];
    float p[FG_TB], x[FG_TB];
    const int last = i0 + nt - 1;
    float m = 1.0f, sp = 0.0f, sx = 0.0f;
    for (int s = 0; s < FG_CHUNK16; ++s) w[0][s] = right[s] = 0.0f;
    for (int s = i0; s >= 0; --s) {
        w[0][s] = m;
        m = fg_flush(m * ah[(size_t)s * heads]);
    }
    for (int s = 0; s <= i0; ++s) sp += scale * gh[(size_t)s * heads];
    for (int s = n - 1; s > last; --s) sx += scale * gh[(size_t)s * heads];
    if (FG_BIDIR) {
        m = 1.0f;
        for (int s = last + 1; s < n; ++s) {
            m = fg_flush(m * ah[(size_t)s * heads]);
            right[s] = m;
        }
    }
    p[0] = sp;
    x[min(nt, FG_TB) - 1] = sx;
    const int16 lane = (int16)(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    for (int tb = 1; tb < FG_TB; ++tb) {
        const int i = i0 + min(tb, nt - 1);
        const float a = tb < nt ? ah[(size_t)i * heads] : 1.0f;
        #pragma unroll
        for (int j = 0; j < FG_CHUNK16 / 16; ++j) {
            const float16 prev = vload16(j, w[tb - 1]);
            vstore16(tb < nt ? select(fg_flush16(prev * a), (float16)(1.0f), lane + j * 16 == (int16)(i)) : prev, j, w[tb]);
        }
        p[tb] = tb < nt ? p[tb - 1] + scale * gh[(size_t)i * heads] : p[tb - 1];
    }
    for (int tb = FG_TB - 1; tb >= 0; --tb) {
        if (tb < nt - 1) {  // token i0 + tb, from the right part of token i0 + tb + 1
            const int i = i0 + tb;
            const float a = ah[(size_t)(i + 1) * heads];
            x[tb] = x[tb + 1] + scale * gh[(size_t)(i + 1) * heads];
            #pragma unroll
            for (int j = 0; j < FG_CHUNK16 / 16; ++j)
                vstore16(select(fg_flush16(vload16(j, right) * a), (float16)(a), lane + j * 16 == (int16)(i + 1)), j, right);
        } else if (tb >= nt) {
            x[tb] = x[nt - 1];
        }
        if (FG_BIDIR && tb < nt)
            #pragma unroll
            for (int j = 0; j < FG_CHUNK16 / 16; ++j) vstore16(vload16(j, w[tb]) + vload16(j, right), j, w[tb]);
    }
    // Scores q . k_s for the whole chunk (kT holds the chunk's k transposed), times M.
    float16 sc[FG_TB][FG_CHUNK16 / 16];
    #pragma unroll
    for (int tb = 0; tb < FG_TB; ++tb)
        #pragma unroll
        for (int j = 0; j < FG_CHUNK16 / 16; ++j) sc[tb][j] = (float16)(0.0f);
    __global const float* kt = kfeat + (((size_t)b * chunks + chunk) * C + h * DHEAD) * FG_CHUNK16;
    for (int mm = 0; mm < DHEAD; ++mm) {
        #pragma unroll
        for (int j = 0; j < FG_CHUNK16 / 16; ++j) {
            const float16 kv = vload16(j, kt + (size_t)mm * FG_CHUNK16);
            #pragma unroll
            for (int tb = 0; tb < FG_TB; ++tb) sc[tb][j] = fma((float16)(q[tb][mm]), kv, sc[tb][j]);
        }
    }
    // The normaliser's terms gather in one vector per token, summed across lanes at the end.
    float16 den[FG_TB];
    #pragma unroll
    for (int tb = 0; tb < FG_TB; ++tb) {
        den[tb] = (float16)(0.0f);
        #pragma unroll
        for (int j = 0; j < FG_CHUNK16 / 16; ++j) {
            const float16 y = sc[tb][j] * vload16(j, w[tb]);
            vstore16(y, j, w[tb]);
            den[tb] += y;
        }
    }
    float16 num[FG_TB][FG_GROUPS];
    #pragma unroll
    for (int tb = 0; tb < FG_TB; ++tb)
        #pragma unroll
        for (int g2 = 0; g2 < FG_GROUPS; ++g2) num[tb][g2] = (float16)(0.0f);
    __global const float* vh = v + ((size_t)b * L + t0) * C + h * DHEAD;
    for (int s = 0; s < (FG_BIDIR ? n : i0 + nt); ++s) {
        #pragma unroll
        for (int g2 = 0; g2 < FG_GROUPS; ++g2) {
            const float16 vs = vload16(g2, vh + (size_t)s * C);
            #pragma unroll
            for (int tb = 0; tb < FG_TB; ++tb) num[tb][g2] = fma((float16)(w[tb][s]), vs, num[tb][g2]);
        }
    }
    // Inter-chunk: exp(P) q H_c (and exp(X) q E_c), the decays as one vector of exps.
    float wgt[2][FG_TB];
    for (int tb = 0; tb < FG_TB; ++tb) {
        wgt[0][tb] = p[tb];
        wgt[1][tb] = x[tb];
    }
    for (int i = 0; i < 2 * FG_TB; i += 8) {
        const float8 e = vload8(0, wgt[0] + i);
        vstore8(select((float8)(0.0f), mila_exp_float8(e), e > (float8)(-60.0f)), 0, wgt[0] + i);
    }
    for (int pass = 0; pass < (FG_BIDIR ? 2 : 1); ++pass) {
        __global const float* state = (pass == 0 ? forward : backwardStates) + (((size_t)b * heads + h) * chunks + chunk) * FG_STATE;
        __global const float* sums = state + DHEAD * DHEAD;  // the normaliser's d sums
        float16 acc[FG_TB][FG_GROUPS];
        #pragma unroll
        for (int tb = 0; tb < FG_TB; ++tb)
            #pragma unroll
            for (int g2 = 0; g2 < FG_GROUPS; ++g2) {
                acc[tb][g2] = (float16)(0.0f);
                den[tb] = fma(vload16(g2, q[tb]) * wgt[pass][tb], vload16(g2, sums), den[tb]);
            }
        for (int r = 0; r < DHEAD; ++r) {
            #pragma unroll
            for (int g2 = 0; g2 < FG_GROUPS; ++g2) {
                const float16 sv = vload16(g2, state + r * DHEAD);
                #pragma unroll
                for (int tb = 0; tb < FG_TB; ++tb) acc[tb][g2] = fma((float16)(q[tb][r]), sv, acc[tb][g2]);
            }
        }
        #pragma unroll
        for (int tb = 0; tb < FG_TB; ++tb)
            #pragma unroll
            for (int g2 = 0; g2 < FG_GROUPS; ++g2) num[tb][g2] = fma((float16)(wgt[pass][tb]), acc[tb][g2], num[tb][g2]);
    }
    for (int tb = 0; tb < nt; ++tb) {
        const float8 d8 = den[tb].lo + den[tb].hi;
        const float4 d4 = d8.lo + d8.hi;
        const float inv = normalize ? 1.0f / ((d4.x + d4.y) + (d4.z + d4.w) + 1e-6f) : 1.0f;
        const int t = t0 + i0 + tb;
        __global float* orow = out + ((size_t)b * L + t) * C + h * DHEAD;
        #pragma unroll
        for (int g2 = 0; g2 < FG_GROUPS; ++g2) {
            const float16 attention = num[tb][g2] * inv;
            if (lepe) {  // + LePE of the (L / W, W) image, as the conv after the attention would add it
                const int c = h * DHEAD + g2 * 16;
                const float16 conv = mila_lepe16(v + (size_t)b * L * C, t / W, t % W, L / W, W, C, c, lw,
                                                 lepe == 2 ? vload16(0, lb + c) : (float16)(0.0f));
                vstore16(conv + attention, g2, orow);
            } else {
                vstore16(attention, g2, orow);
            }
        }
    }
}
#endif

// The GPU variant of the phases: a work-group per (head, chunk, batch) with the chunk's rows in
// local memory, consecutive work-items on consecutive channels (coalesced loads and stores),
// every pair weight a direct sum of gates (exp per pair is cheap on GPUs), no transposed-k or
// factor buffers. The chunks' own sums are written in parallel, then a scan turns them into the
// states entering each chunk, the layout fgla_states_seq writes.
//   fgla_state_wg   states per chunk: U[i][e] = sum_s w_s k_s[i] v_s[e] and the sums
//                   sum_s w_s k_s[i], w_s = exp(gates after s) forward, exp(gates up to s)
//                   backward; FG_OPW entries of the d x d block per work-item. Writes the chunk
//                   decay for the scan. Launch: global (FG_WG * heads, chunks, B), local (FG_WG).
//   fgla_state_scan one vector of 16 state elements per work-item, sequential over chunks: in
//                   place, U_c -> the state entering chunk c (forward from the left, backward
//                   from the right). Launch: global (heads d (d + 1) / 16, B, directions).
//   fgla_output_wg  per chunk and head: the scores S = q k^T of the chunk in local memory, masked
//                   row by row (M_rs = exp(gates between s and r), one work-item per row), then
//                   out[r][e] = (sum_s S_rs v_s[e] + exp(P_r) q_r H[:, e] + exp(X_r) q_r E[:, e])
//                   / den_r, with H, E the states entering the chunk read from global memory.
//                   Launch: global (FG_WG * chunks, heads, B), local (FG_WG).
// Defines: DHEAD, CHUNK, FG_BIDIR, FG_WG (work-group size), FG_OPW = ceil(d * d / FG_WG).
#ifdef FG_WG
#ifndef FG_BIDIR
#define FG_BIDIR 1
#endif
inline float fg_decay_wg(float exponent) { return exponent > -60.0f ? mila_exp_float(exponent) : 0.0f; }

// Rows [t0, t0 + n) of one head: k (and q when withQ) as ELU + 1, v, gates as log a (0 past
// the end), zeros past the end. (A flag, not a null Q: local address 0 can be a real address.)
inline void fg_stage(int t0, int n, int L, int C, int h, int b, __global const float* qk, __global const float* v,
                     __global const float* gate, float scale, int withQ, __local float (*Q)[DHEAD], __local float (*K)[DHEAD],
                     __local float (*V)[DHEAD], __local float* G) {
    const int lid = get_local_id(0), heads = C / DHEAD;
    for (int idx = lid; idx < CHUNK * DHEAD; idx += FG_WG) {
        const int r = idx / DHEAD, i = idx % DHEAD;
        const size_t row = (size_t)b * L + t0 + r;
        const bool inside = r < n;
        if (withQ) Q[r][i] = inside ? mila_elu1_float(qk[row * 2 * C + h * DHEAD + i]) : 0.0f;
        K[r][i] = inside ? mila_elu1_float(qk[row * 2 * C + C + h * DHEAD + i]) : 0.0f;
        V[r][i] = inside ? v[row * C + h * DHEAD + i] : 0.0f;
    }
    for (int r = lid; r < CHUNK; r += FG_WG) G[r] = r < n ? scale * gate[((size_t)b * L + t0 + r) * heads + h] : 0.0f;
}

__kernel __attribute__((reqd_work_group_size(FG_WG, 1, 1)))
void fgla_state_wg(const int L, const int C, __global const float* qk, __global const float* v, __global const float* gate,
                   __global const float* gateScale, __global float* forward, __global float* backward, __global float* decay) {
    __local float K[CHUNK][DHEAD], V[CHUNK][DHEAD], G[CHUNK], WF[CHUNK], WB[CHUNK];
    const int lid = get_local_id(0), h = get_group_id(0), chunk = get_group_id(1), b = get_group_id(2);
    const int chunks = get_num_groups(1), heads = C / DHEAD;
    const int t0 = chunk * CHUNK, n = min(L, t0 + CHUNK) - t0;
    fg_stage(t0, n, L, C, h, b, qk, v, gate, gateScale[h], 0, K, K, V, G);
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int r = lid; r < CHUNK; r += FG_WG) {
        float after = 0.0f, upTo = 0.0f;
        for (int t = n - 1; t > r; --t) after += G[t];
        for (int t = 0; t <= r && t < n; ++t) upTo += G[t];
        WF[r] = r < n ? fg_decay_wg(after) : 0.0f;
        WB[r] = r < n ? fg_decay_wg(upTo) : 0.0f;
    }
    if (lid == 0) {
        float total = 0.0f;
        for (int t = n - 1; t >= 0; --t) total += G[t];
        decay[((size_t)b * chunks + chunk) * heads + h] = fg_decay_wg(total);
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    const size_t base = (((size_t)b * heads + h) * chunks + chunk) * FG_STATE;
    for (int o = 0; o < FG_OPW; ++o) {
        const int entry = lid + o * FG_WG;
        if (entry >= DHEAD * DHEAD) break;
        const int i = entry / DHEAD, e = entry % DHEAD;
        float accF = 0.0f, accB = 0.0f;
        for (int r = 0; r < n; ++r) {
            const float kv = K[r][i] * V[r][e];
            accF = fma(WF[r], kv, accF);
            accB = fma(WB[r], kv, accB);
        }
        forward[base + i * DHEAD + e] = accF;
#if FG_BIDIR
        backward[base + i * DHEAD + e] = accB;
#endif
    }
    if (lid < DHEAD) {
        float sumF = 0.0f, sumB = 0.0f;
        for (int r = 0; r < n; ++r) {
            sumF = fma(WF[r], K[r][lid], sumF);
            sumB = fma(WB[r], K[r][lid], sumB);
        }
        forward[base + DHEAD * DHEAD + lid] = sumF;
#if FG_BIDIR
        backward[base + DHEAD * DHEAD + lid] = sumB;
#endif
    }
}

__kernel void fgla_state_scan(const int C, const int chunks, __global float* forward, __global float* backward,
                              __global const float* decay) {
    const int b = get_global_id(1), isBackward = get_global_id(2), heads = C / DHEAD;
    const int e = get_global_id(0) * 16;  // d (d + 1) is a multiple of 16: a vector lies in one head
    if (e >= heads * FG_STATE) return;
    const int h = e / FG_STATE;
    __global float* states = (isBackward ? backward : forward) + ((size_t)b * heads + h) * chunks * FG_STATE + e % FG_STATE;
    float16 state = (float16)(0.0f);
    for (int i = 0; i < chunks; ++i) {
        const int c = isBackward ? chunks - 1 - i : i;
        __global float* u = states + (size_t)c * FG_STATE;
        const float16 contribution = vload16(0, u);
        vstore16(state, 0, u);  // the state entering chunk c
        state = fg_flush_signed16(fma((float16)(decay[((size_t)b * chunks + c) * heads + h]), state, contribution));
    }
}

__kernel __attribute__((reqd_work_group_size(FG_WG, 1, 1)))
void fgla_output_wg(const int L, const int C, const int normalize, __global const float* qk, __global const float* v,
                    __global const float* gate, __global const float* gateScale, __global const float* forward,
                    __global const float* backwardStates, __global float* out) {
    __local float Q[CHUNK][DHEAD], K[CHUNK][DHEAD], V[CHUNK][DHEAD], S[CHUNK][CHUNK + 1], G[CHUNK];
    __local float WP[CHUNK], WX[CHUNK], DEN[CHUNK];
    const int lid = get_local_id(0), chunk = get_group_id(0), h = get_group_id(1), b = get_group_id(2);
    const int chunks = get_num_groups(0);
    const int t0 = chunk * CHUNK, n = min(L, t0 + CHUNK) - t0;
    fg_stage(t0, n, L, C, h, b, qk, v, gate, gateScale[h], 1, Q, K, V, G);
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int idx = lid; idx < CHUNK * CHUNK; idx += FG_WG) {
        const int r = idx / CHUNK, s = idx % CHUNK;
        float dot = 0.0f;
        for (int i = 0; i < DHEAD; ++i) dot = fma(Q[r][i], K[s][i], dot);
        S[r][s] = dot;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    const int heads = C / DHEAD;
    __global const float* fstate = forward + (((size_t)b * heads + h) * chunks + chunk) * FG_STATE;
    __global const float* bstate = backwardStates + (((size_t)b * heads + h) * chunks + chunk) * FG_STATE;
    for (int r = lid; r < n; r += FG_WG) {
        // Row r of the mask, from the diagonal outwards: s < r by the gates s+1..r, s > r
        // (bidirectional) by the gates r+1..s; the row's part of the normaliser on the way.
        float den = S[r][r], exponent = 0.0f;
        for (int s = r - 1; s >= 0; --s) {
            exponent += G[s + 1];
            const float y = S[r][s] * fg_decay_wg(exponent);
            S[r][s] = y;
            den += y;
        }
        exponent = 0.0f;
        for (int s = r + 1; s < CHUNK; ++s) {
            exponent += G[s];
            const float y = FG_BIDIR && s < n ? S[r][s] * fg_decay_wg(exponent) : 0.0f;
            S[r][s] = y;
            den += y;
        }
        float p = 0.0f, x = 0.0f;
        for (int t = 0; t <= r; ++t) p += G[t];
        for (int t = n - 1; t > r; --t) x += G[t];
        const float wp = fg_decay_wg(p), wx = FG_BIDIR ? fg_decay_wg(x) : 0.0f;
        float dotF = 0.0f, dotB = 0.0f;
        for (int i = 0; i < DHEAD; ++i) {
            dotF = fma(Q[r][i], fstate[DHEAD * DHEAD + i], dotF);
#if FG_BIDIR
            dotB = fma(Q[r][i], bstate[DHEAD * DHEAD + i], dotB);
#endif
        }
        WP[r] = wp;
        WX[r] = wx;
        DEN[r] = fma(wx, dotB, fma(wp, dotF, den));
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int idx = lid; idx < n * DHEAD; idx += FG_WG) {
        const int r = idx / DHEAD, e = idx % DHEAD;
        float num = 0.0f;
        for (int s = 0; s < n; ++s) num = fma(S[r][s], V[s][e], num);
        float hf = 0.0f, hb = 0.0f;
        for (int i = 0; i < DHEAD; ++i) {
            hf = fma(Q[r][i], fstate[i * DHEAD + e], hf);
#if FG_BIDIR
            hb = fma(Q[r][i], bstate[i * DHEAD + e], hb);
#endif
        }
        num = fma(WX[r], hb, fma(WP[r], hf, num));
        out[((size_t)b * L + t0 + r) * C + h * DHEAD + e] = normalize ? num / (DEN[r] + 1e-6f) : num;
    }
}
#endif
