// gemm.cl: Y = act(A B + bias) [* MUL] [+ RES] for linear layers and 1x1 convolutions.
//
// Layout: A (M, K) row-major: the token layout (L, C) of the model, so a 1x1 convolution on a
// channels-last map is the same GEMM with no transpose. B is the weight packed once at load
// time, N padded with zero columns to ldb = N rounded up to 64 (full-width vector loads), bias
// padded the same way; element (k, n) of B is at k * rowStride + (n / 16) * blockStride + n % 16:
// panels of 16 columns, each K x 16 contiguous (rowStride 16, blockStride 16 K: gemm_reg's
// weights stream sequentially), or rows (rowStride ldb, blockStride 16: CLBlast's layout).
// GemmWeights (Ops/Gemm.swift) picks one. Y, MUL and RES are (M, N) with row stride N.
// Epilogue order: bias, activation (ACT_* codes, common.cl), multiply, residual add; `flags`
// holds the EPI_* bits (EPI_STREAM: gemm_reg's final panel stores with MILA_STREAM16). MUL and
// RES may be any buffer when unused.
//
// Variants (chosen by device type, forced with MILA_KERNEL_VARIANT=cpu|gpu):
//   gemm_reg    CPU: each work-item holds an MR x NR register tile (MR rows x NR/16 float16
//               accumulators); A is broadcast, each k step loads NR/16 float16 of B. One kernel
//               per tile: gemm_reg (4x64: 16 zmm, ~190 GFLOP/s on the 2-core AVX-512 VM),
//               gemm_reg_6x16, gemm_reg_3x32 (12 ymm on AVX2), gemm_reg_8x32. No local
//               memory, local size (1,1). rowTiles x colTiles such tiles per work-item
//               (arguments) and K rows kBegin..kEnd per launch (K panels; partial sums go
//               through Y, the epilogue runs on the last panel only); the tile and the splits
//               come from the per-device tuning pass (GemmTuner).
//               Global (ceil(N/(NR colTiles)), ceil(M/(MR rowTiles))), or the two swapped with
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
    v = mila_act_inline_float16(v, act);
    const size_t o = (size_t)row * N + col;
    if (col + 16 <= N) {
        if (flags & EPI_MUL) v *= vload16(0, mul + o);
        if (flags & EPI_RESIDUAL) v += vload16(0, res + o);
        if (flags & EPI_STREAM) MILA_STREAM16(v, Y + o);
        else MILA_STORE16(v, Y + o);
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

// The partial sums of an earlier K panel (16 columns from col; zeros past N).
inline float16 gemm_load16(int row, int col, int N, __global const float* Y) {
    const size_t o = (size_t)row * N + col;
    if (col + 16 <= N) return vload16(0, Y + o);
    float lanes[16];
    for (int j = 0; j < 16; ++j) lanes[j] = col + j < N ? Y[o + j] : 0.0f;
    return vload16(0, lanes);
}

// One register-tile kernel per tile shape: MR rows x NV float16 columns (16 NV floats) of
// accumulators per tile. The arrays are fully unrolled, so they live in registers; which shape
// fits a device's register file (4x64: 16 zmm on AVX-512; 6x16 and 3x32: 12 ymm on AVX2) is
// chosen by the tuning pass (GemmTuner), like the splits below.
// rowsFirst: dim 0 walks row tiles, so consecutive work-items share one B panel (used when
// B is the larger operand, N > M); otherwise dim 0 walks column tiles and they share A rows.
// Each work-item computes rowTiles x colTiles consecutive tiles (down, then across: one B
// panel held in L1 down the rows, the A rows reused across the panels), over K rows
// kBegin..kEnd: a panel after the first adds to the partial sums in Y, and only the last
// (kEnd == K) applies the epilogue.
#define GEMM_REG_ARGUMENTS \
    const int M, const int N, const int K, const int rowStride, const int blockStride, \
    __global const float* A, __global const weight_t* B, __global const float* bias, \
    __global const float* mul, __global const float* res, __global float* Y, \
    const int act, const int flags, const int rowsFirst, const int kBegin, const int kEnd, \
    const int rowTiles, const int colTiles

// Bias and activation on the whole tile at once, before any store: one straight run of
// independent vectors that the compiler interleaves. Applied per 16 floats between the stores
// (branches), erf-GELU's long dependency chain ran one vector at a time: fc1 with GELU at 45-60
// against 95-120 GFLOP/s without on AVX2 (Zen 3). Bias is padded to ldb, so every column loads.
#define GEMM_TILE_BIAS_ACT(MR, NV) { \
    if (flags & EPI_BIAS) { \
        _Pragma("unroll") \
        for (int j = 0; j < (NV); ++j) { \
            const float16 bj = vload16(0, bias + n0 + 16 * j); \
            _Pragma("unroll") \
            for (int i = 0; i < (MR); ++i) c[i][j] += bj; \
        } \
    } \
    if (act == ACT_GELU) { \
        _Pragma("unroll") \
        for (int i = 0; i < (MR); ++i) { \
            _Pragma("unroll") \
            for (int j = 0; j < (NV); ++j) c[i][j] = mila_gelu_float16(c[i][j]); \
        } \
    } else if (act != ACT_NONE) { \
        _Pragma("unroll") \
        for (int i = 0; i < (MR); ++i) { \
            _Pragma("unroll") \
            for (int j = 0; j < (NV); ++j) c[i][j] = mila_act_inline_float16(c[i][j], act); \
        } \
    } \
}

#define GEMM_REG_BODY(MR, NV) \
    const int g0 = get_global_id(0), g1 = get_global_id(1); \
    const int nBase = (rowsFirst ? g1 : g0) * (16 * (NV) * colTiles); \
    const int mBase = (rowsFirst ? g0 : g1) * ((MR) * rowTiles); \
    const int last = kEnd == K; \
    for (int ct = 0; ct < colTiles; ++ct) \
    for (int t = 0; t < rowTiles; ++t) { \
        const int n0 = nBase + 16 * (NV) * ct; \
        const int m0 = mBase + (MR) * t; \
        if (n0 >= N || m0 >= M) break; \
        __global const float* a[MR]; \
        float16 c[MR][NV]; \
        _Pragma("unroll") \
        for (int i = 0; i < (MR); ++i) { \
            a[i] = A + (size_t)min(m0 + i, M - 1) * K; \
            _Pragma("unroll") \
            for (int j = 0; j < (NV); ++j) \
                c[i][j] = kBegin > 0 && m0 + i < M ? gemm_load16(m0 + i, n0 + 16 * j, N, Y) : (float16)(0.0f); \
        } \
        __global const weight_t* b = B + (size_t)kBegin * rowStride + (size_t)(n0 / 16) * blockStride; \
        for (int k = kBegin; k < kEnd; ++k, b += rowStride) { \
            float16 w[NV]; \
            _Pragma("unroll") \
            for (int j = 0; j < (NV); ++j) w[j] = WLOAD16(0, b + (size_t)j * blockStride); \
            _Pragma("unroll") \
            for (int i = 0; i < (MR); ++i) { \
                const float16 x = (float16)(a[i][k]); \
                _Pragma("unroll") \
                for (int j = 0; j < (NV); ++j) c[i][j] = fma(x, w[j], c[i][j]); \
            } \
        } \
        if (last) GEMM_TILE_BIAS_ACT(MR, NV) \
        _Pragma("unroll") \
        for (int i = 0; i < (MR); ++i) { \
            if (m0 + i >= M) break; \
            _Pragma("unroll") \
            for (int j = 0; j < (NV); ++j) \
                gemm_store16(c[i][j], m0 + i, n0 + 16 * j, N, bias, mul, res, Y, ACT_NONE, last ? flags & ~EPI_BIAS : 0); \
        } \
    }

__kernel void gemm_reg(GEMM_REG_ARGUMENTS) { GEMM_REG_BODY(4, 4) }
__kernel void gemm_reg_6x16(GEMM_REG_ARGUMENTS) { GEMM_REG_BODY(6, 1) }
__kernel void gemm_reg_3x32(GEMM_REG_ARGUMENTS) { GEMM_REG_BODY(3, 2) }
__kernel void gemm_reg_8x32(GEMM_REG_ARGUMENTS) { GEMM_REG_BODY(8, 2) }

#define TILE 64
#define TILE_K 16

__kernel __attribute__((reqd_work_group_size(16, 16, 1)))
void gemm_tiled(const int M, const int N, const int K, const int rowStride, const int blockStride,
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
            const int hk = k0 + bk, hn = n0 + bn;
            Bs[bk][bn] = (hk < K) ? WLOAD1((size_t)hk * rowStride + (size_t)(hn / 16) * blockStride + hn % 16, B) : 0.0f;
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
