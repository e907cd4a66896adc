// gemm.cl: Y = act(A B + bias) [* MUL] [+ RES] for linear layers and 1x1 convolutions.
//
// Layout: A (M, K) row-major: the token layout (L, C) of the model, so a 1x1 convolution on a
// channels-last map is the same GEMM with no transpose. B is the weight transposed once at load
// time to (K, ldb) row-major, ldb = N rounded up to 64 with zero columns, so every B row can be
// read with full-width vector loads; bias is padded the same way. Y, MUL and RES are (M, N)
// with row stride N. Epilogue order: bias, activation (ACT_* codes, common.cl), multiply,
// residual add; `flags` holds the EPI_* bits. MUL and RES may be any buffer when unused.
//
// Variants (chosen by device type, forced with MILA_KERNEL_VARIANT=cpu|gpu):
//   gemm_reg    CPU: each work-item holds a 4x64 register tile (4 rows x 4 float16
//               accumulators); A is broadcast, each k step does 4 float16 loads of a B row.
//               No local memory, local size (1,1). ~190 GFLOP/s on the 2-core AVX-512 VM.
//               rowTiles x colTiles such tiles per work-item (arguments, from the per-device
//               tuning pass: GemmTuner) and K rows kBegin..kEnd per launch (K panels; partial
//               sums go through Y, the epilogue runs on the last panel only).
//               Global (ceil(N/(64 colTiles)), ceil(M/(4 rowTiles))), or the two swapped with
//               rowsFirst when N > M, so the larger operand streams once; ragged M clamps the
//               load row, stores are guarded.
//   gemm_tiled  GPU: 64x64 output tile per 16x16 work-group, K in steps of 16 through local
//               memory, 4x4 outputs per work-item. On PoCL it is ~26x slower than gemm_reg.
//               Global (16 * ceil(N/64), 16 * ceil(M/64)), local (16, 16).
//   gemm_epilogue  the epilogue alone, for the CLBlast provider (which cannot fuse it):
//               Y = act(Y + bias) * MUL + RES in place. Global (N, M).
// B is weight_t (common.cl): float, or half with MILA_HALF_WEIGHTS (fp16 weights, float math).
// CPU reference: Reference.gemm (Sources/MilaReference/Reference.swift). Tests: GemmTests.

inline void gemm_store16(float16 v, int row, int col, int N, __global const float* bias,
                         __global const float* mul, __global const float* res, __global float* Y,
                         int act, int flags) {
    if (col >= N) return;
    if (flags & EPI_BIAS) v += vload16(0, bias + col);
    v = mila_act_float16(v, act);
    const size_t o = (size_t)row * N + col;
    if (col + 16 <= N) {
        if (flags & EPI_MUL) v *= vload16(0, mul + o);
        if (flags & EPI_RESIDUAL) v += vload16(0, res + o);
        vstore16(v, 0, Y + o);
    } else {
        float lanes[16];
        vstore16(v, 0, lanes);
        for (int j = 0; col + j < N; ++j) {
            float s = lanes[j];
            if (flags & EPI_MUL) s *= mul[o + j];
            if (flags & EPI_RESIDUAL) s += res[o + j];
            Y[o + j] = s;
        }
    }
}

inline void gemm_store1(float v, int row, int col, int N, __global const float* bias,
                        __global const float* mul, __global const float* res, __global float* Y,
                        int act, int flags) {
    if (flags & EPI_BIAS) v += bias[col];
    v = mila_act_float(v, act);
    const size_t o = (size_t)row * N + col;
    if (flags & EPI_MUL) v *= mul[o];
    if (flags & EPI_RESIDUAL) v += res[o];
    Y[o] = v;
}

#define GEMM_ROW_FMA(x, c0, c1, c2, c3) \
    c0 = fma((float16)(x), b0, c0); c1 = fma((float16)(x), b1, c1); \
    c2 = fma((float16)(x), b2, c2); c3 = fma((float16)(x), b3, c3);

#define GEMM_ROW_STORE(row, c0, c1, c2, c3) \
    if ((row) < M) { \
        if (last) { \
            gemm_store16(c0, (row), n0, N, bias, mul, res, Y, act, flags); \
            gemm_store16(c1, (row), n0 + 16, N, bias, mul, res, Y, act, flags); \
            gemm_store16(c2, (row), n0 + 32, N, bias, mul, res, Y, act, flags); \
            gemm_store16(c3, (row), n0 + 48, N, bias, mul, res, Y, act, flags); \
        } else { \
            gemm_store16(c0, (row), n0, N, bias, mul, res, Y, ACT_NONE, 0); \
            gemm_store16(c1, (row), n0 + 16, N, bias, mul, res, Y, ACT_NONE, 0); \
            gemm_store16(c2, (row), n0 + 32, N, bias, mul, res, Y, ACT_NONE, 0); \
            gemm_store16(c3, (row), n0 + 48, N, bias, mul, res, Y, ACT_NONE, 0); \
        } \
    }

// The partial sums of an earlier K panel (16 columns from col; zeros past N).
inline float16 gemm_load16(int row, int col, int N, __global const float* Y) {
    const size_t o = (size_t)row * N + col;
    if (col + 16 <= N) return vload16(0, Y + o);
    float lanes[16];
    for (int j = 0; j < 16; ++j) lanes[j] = col + j < N ? Y[o + j] : 0.0f;
    return vload16(0, lanes);
}

#define GEMM_ROW_LOAD(row, c0, c1, c2, c3) \
    if ((row) < M) { \
        c0 = gemm_load16((row), n0, N, Y); c1 = gemm_load16((row), n0 + 16, N, Y); \
        c2 = gemm_load16((row), n0 + 32, N, Y); c3 = gemm_load16((row), n0 + 48, N, Y); \
    }

__kernel void gemm_reg(const int M, const int N, const int K, const int ldb,
                       __global const float* A, __global const weight_t* B, __global const float* bias,
                       __global const float* mul, __global const float* res, __global float* Y,
                       const int act, const int flags, const int rowsFirst, const int kBegin, const int kEnd,
                       const int rowTiles, const int colTiles) {
    // rowsFirst: dim 0 walks row tiles, so consecutive work-items share one B panel (used when
    // B is the larger operand, N > M); otherwise dim 0 walks column tiles and they share A rows.
    // Each work-item computes rowTiles x colTiles consecutive 4 x 64 tiles (down, then across:
    // one B panel held in L1 down the rows, the A rows reused across the panels), over K rows
    // kBegin..kEnd: a panel after the first adds to the partial sums
    // in Y, and only the last (kEnd == K) applies the epilogue.
    const int g0 = get_global_id(0), g1 = get_global_id(1);
    const int nBase = (rowsFirst ? g1 : g0) * (64 * colTiles);
    const int mBase = (rowsFirst ? g0 : g1) * (4 * rowTiles);
    const int last = kEnd == K;
    for (int ct = 0; ct < colTiles; ++ct)
    for (int t = 0; t < rowTiles; ++t) {
        const int n0 = nBase + 64 * ct;
        const int m0 = mBase + 4 * t;
        if (n0 >= N || m0 >= M) break;
        __global const float* a0 = A + (size_t)m0 * K;
        __global const float* a1 = A + (size_t)min(m0 + 1, M - 1) * K;
        __global const float* a2 = A + (size_t)min(m0 + 2, M - 1) * K;
        __global const float* a3 = A + (size_t)min(m0 + 3, M - 1) * K;
        float16 c00 = 0, c01 = 0, c02 = 0, c03 = 0, c10 = 0, c11 = 0, c12 = 0, c13 = 0;
        float16 c20 = 0, c21 = 0, c22 = 0, c23 = 0, c30 = 0, c31 = 0, c32 = 0, c33 = 0;
        if (kBegin > 0) {
            GEMM_ROW_LOAD(m0, c00, c01, c02, c03)
            GEMM_ROW_LOAD(m0 + 1, c10, c11, c12, c13)
            GEMM_ROW_LOAD(m0 + 2, c20, c21, c22, c23)
            GEMM_ROW_LOAD(m0 + 3, c30, c31, c32, c33)
        }
        __global const weight_t* b = B + (size_t)kBegin * ldb + n0;
        for (int k = kBegin; k < kEnd; ++k, b += ldb) {
            const float16 b0 = WLOAD16(0, b), b1 = WLOAD16(1, b), b2 = WLOAD16(2, b), b3 = WLOAD16(3, b);
            GEMM_ROW_FMA(a0[k], c00, c01, c02, c03)
            GEMM_ROW_FMA(a1[k], c10, c11, c12, c13)
            GEMM_ROW_FMA(a2[k], c20, c21, c22, c23)
            GEMM_ROW_FMA(a3[k], c30, c31, c32, c33)
        }
        GEMM_ROW_STORE(m0, c00, c01, c02, c03)
        GEMM_ROW_STORE(m0 + 1, c10, c11, c12, c13)
        GEMM_ROW_STORE(m0 + 2, c20, c21, c22, c23)
        GEMM_ROW_STORE(m0 + 3, c30, c31, c32, c33)
    }
}

#define TILE 64
#define TILE_K 16

__kernel __attribute__((reqd_work_group_size(16, 16, 1)))
void gemm_tiled(const int M, const int N, const int K, const int ldb,
                __global const float* A, __global const weight_t* B, __global const float* bias,
                __global const float* mul, __global const float* res, __global float* Y,
                const int act, const int flags) {
    __local float As[TILE_K][TILE + 1];
    __local float Bs[TILE_K][TILE];
    const int tx = get_local_id(0), ty = get_local_id(1);
    const int n0 = get_group_id(0) * TILE, m0 = get_group_id(1) * TILE;
    const int lid = ty * 16 + tx;
    float acc[4][4];
    for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 4; ++j) acc[i][j] = 0.0f;
    for (int k0 = 0; k0 < K; k0 += TILE_K) {
        // 256 work-items load the 64x16 A tile and the 16x64 B tile, 4 floats each.
        for (int e = lid; e < TILE * TILE_K; e += 256) {
            const int am = e / TILE_K, ak = e % TILE_K;
            const int gm = m0 + am, gk = k0 + ak;
            As[ak][am] = (gm < M && gk < K) ? A[(size_t)gm * K + gk] : 0.0f;
            const int bk = e / TILE, bn = e % TILE;
            const int hk = k0 + bk;
            Bs[bk][bn] = (hk < K) ? WLOAD1((size_t)hk * ldb + n0 + bn, B) : 0.0f;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int kk = 0; kk < TILE_K; ++kk) mila_tile_4x4_step(As[kk], Bs[kk], tx, ty, acc);
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    for (int i = 0; i < 4; ++i) {
        const int row = m0 + ty + 16 * i;
        if (row >= M) continue;
        for (int j = 0; j < 4; ++j) {
            const int col = n0 + tx + 16 * j;
            if (col < N) gemm_store1(acc[i][j], row, col, N, bias, mul, res, Y, act, flags);
        }
    }
}

__kernel void gemm_epilogue(const int M, const int N, __global const float* bias, __global const float* mul,
                            __global const float* res, __global float* Y, const int act, const int flags) {
    const int col = get_global_id(0), row = get_global_id(1);
    if (col >= N || row >= M) return;
    const float v = Y[(size_t)row * N + col];
    gemm_store1(v, row, col, N, bias, mul, res, Y, act, flags);
}
