// reduce.cl: sums over the token axis, exact for large L (65536 tokens at 1024x1024 input).
//
// A flat float sum over 65536 values loses ~1e-4 relative; instead tokens are summed in chunks
// of `chunk` (partial sums stay short), and the chunk sums are added with Kahan compensation.
// Layout: x (B, L, C) tokens; partials (B, chunks, E); out (B, E).
//   token_sum_partial  global (C, chunks, B): partial[b][j][c] = sum of x[b][t][c] over chunk j.
//   reduce_chunks      global (ceil(E / 16), B): out[b][e] = scale * sum over j of partial[b][j][e], Kahan.
//                      Also finishes the linear attention's kr^T v and mean(k) reductions.
// Mean over tokens = token_sum_partial then reduce_chunks with scale 1/L.
// CPU reference: Reference.meanTokens. Tests: ReductionTests.

__kernel void token_sum_partial(const int L, const int C, const int chunk, __global const float* x,
                                __global float* partial) {
    const int c = get_global_id(0), j = get_global_id(1), b = get_global_id(2);
    const int chunks = get_global_size(1);
    if (c >= C) return;
    const int t0 = j * chunk, t1 = min(L, t0 + chunk);
    __global const float* xb = x + (size_t)b * L * C + c;
    float sum = 0.0f;
    for (int t = t0; t < t1; ++t) sum += xb[(size_t)t * C];
    partial[((size_t)b * chunks + j) * C + c] = sum;
}

// 16 consecutive elements per work-item (a cache line per chunk step; one element per work-item
// walked every chunk's row once per element and was TLB bound: 24 ms of an MLLA-T forward at
// 1024), the tail of E one by one.
__kernel void reduce_chunks(const int E, const int chunks, const float scale, __global const float* partial,
                            __global float* out) {
    const int e0 = get_global_id(0) * 16, b = get_global_id(1);
    if (e0 >= E) return;
    __global const float* p = partial + (size_t)b * chunks * E + e0;
    if (e0 + 16 <= E) {
        float16 sum = (float16)(0.0f), compensation = (float16)(0.0f);
        for (int j = 0; j < chunks; ++j) {
            const float16 yv = vload16(0, p + (size_t)j * E) - compensation;
            const float16 t = sum + yv;
            compensation = (t - sum) - yv;
            sum = t;
        }
        vstore16(sum * scale, 0, out + (size_t)b * E + e0);
        return;
    }
    for (int e = 0; e < E - e0; ++e) {
        float sum = 0.0f, compensation = 0.0f;
        for (int j = 0; j < chunks; ++j) {
            const float yv = p[(size_t)j * E + e] - compensation;
            const float t = sum + yv;
            compensation = (t - sum) - yv;
            sum = t;
        }
        out[(size_t)b * E + e0 + e] = sum * scale;
    }
}
