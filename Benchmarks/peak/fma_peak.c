// The machine's float32 FMA ceiling: every thread runs independent chains of 16-wide fused
// multiply-adds (GCC vector extension; AVX-512 or two AVX2 halves per chain, as -march=native
// allows) with nothing else in the loop, so no real kernel can go faster.
//
//   cc -O3 -march=native -pthread Benchmarks/peak/fma_peak.c -o fma_peak && ./fma_peak [THREADS]
//
// Prints one line: threads, GFLOP/s (2 FLOP per lane per FMA). Used by the benchmarks' floor.
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

typedef float v16 __attribute__((vector_size(64)));
enum { chains = 16 };
static const long iterations = 100000000;

static double seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void *spin(void *arg) {
    v16 acc[chains];
    const v16 scale = {0}, bias = {0};
    v16 s = scale + 1.0000001f, b = bias + 1e-7f;
    for (int c = 0; c < chains; ++c) acc[c] = s * (float)c;
    for (long i = 0; i < iterations; ++i) {
#pragma GCC unroll 16
        for (int c = 0; c < chains; ++c) acc[c] = acc[c] * s + b;
    }
    float sum = 0;
    for (int c = 0; c < chains; ++c)
        for (int l = 0; l < 16; ++l) sum += acc[c][l];
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
    printf("%d %.1f\n", threads, (double)threads * iterations * chains * 16 * 2 / elapsed / 1e9);
    free(ids);
    free(sinks);
    return 0;
}
