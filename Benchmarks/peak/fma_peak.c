// The machine's float32 FMA ceiling: every thread runs independent chains of fused multiply-adds
// as wide as one vector register (GCC vector extension: 16 lanes with AVX-512, else 8) with
// nothing else in the loop, so no real kernel can go faster. Twelve chains cover the FMA
// latency of two pipes and, with the two operands, fit sixteen registers: wider chains than
// the registers (16-lane chains on AVX2) spill and measured 13 GFLOP/s on a 197 GFLOP/s Zen 3.
//
//   cc -O3 -march=native -pthread Benchmarks/peak/fma_peak.c -o fma_peak && ./fma_peak [THREADS]
//
// Prints one line: threads, GFLOP/s (2 FLOP per lane per FMA). Used by the benchmarks' floor.
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#ifdef __AVX512F__
enum { lanes = 16 };
#else
enum { lanes = 8 };
#endif
typedef float vec __attribute__((vector_size(4 * lanes)));
enum { chains = 12 };
static const long iterations = 100000000;

static double seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void *spin(void *arg) {
    vec acc[chains];
    const vec scale = {0}, bias = {0};
    vec s = scale + 1.0000001f, b = bias + 1e-7f;
    for (int c = 0; c < chains; ++c) acc[c] = s * (float)c;
    for (long i = 0; i < iterations; ++i) {
#pragma GCC unroll 12
        for (int c = 0; c < chains; ++c) acc[c] = acc[c] * s + b;
    }
    float sum = 0;
    for (int c = 0; c < chains; ++c)
        for (int l = 0; l < lanes; ++l) sum += acc[c][l];
    *(float *)arg = sum;  // keeps the chains live
    return NULL;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 1;
    if (threads < 1 || threads > 256) {
        fprintf(stderr, "fma_peak: threads must be 1..256, got %s\n", argv[1]);
        return 2;
    }
    pthread_t *ids = calloc((size_t)threads, sizeof *ids);
    float *sinks = calloc((size_t)threads, sizeof *sinks);
    double start = seconds();
    for (int t = 0; t < threads; ++t) pthread_create(&ids[t], NULL, spin, &sinks[t]);
    for (int t = 0; t < threads; ++t) pthread_join(ids[t], NULL);
    double elapsed = seconds() - start;
    printf("%d %.1f\n", threads, (double)threads * iterations * chains * lanes * 2 / elapsed / 1e9);
    free(ids);
    free(sinks);
    return 0;
}
