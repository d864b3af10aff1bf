/* philox.h — Philox4x32-10 counter-based random numbers, shared by every backend.
 *
 * A number is a pure function of (key, counter), so CPU and GPU produce the same stream, any
 * element can be computed independently, and resuming training needs no saved generator state.
 * Usable from C and CUDA (all functions are static inline and touch no globals).
 */
#ifndef DT_PHILOX_H
#define DT_PHILOX_H

#include <math.h>
#include <stdint.h>

#ifdef __CUDACC__
#define DT_PHILOX_FN static inline __host__ __device__
#else
#define DT_PHILOX_FN static inline
#endif

typedef struct { uint32_t v[4]; } dt_philox4;

DT_PHILOX_FN uint32_t dt_philox_mulhilo(uint32_t a, uint32_t b, uint32_t *hi) {
    uint64_t p = (uint64_t)a * (uint64_t)b;
    *hi = (uint32_t)(p >> 32);
    return (uint32_t)p;
}

/* Ten Philox rounds over counter c with key (k0, k1). */
DT_PHILOX_FN dt_philox4 dt_philox4x32(dt_philox4 c, uint32_t k0, uint32_t k1) {
    for (int r = 0; r < 10; r++) {
        uint32_t hi0, hi1;
        uint32_t lo0 = dt_philox_mulhilo(0xD2511F53u, c.v[0], &hi0);
        uint32_t lo1 = dt_philox_mulhilo(0xCD9E8D57u, c.v[2], &hi1);
        dt_philox4 n;
        n.v[0] = hi1 ^ c.v[1] ^ k0;
        n.v[1] = lo1;
        n.v[2] = hi0 ^ c.v[3] ^ k1;
        n.v[3] = lo0;
        c = n;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    return c;
}

/* Four random words for (seed, stream, index). `stream` separates independent uses. */
DT_PHILOX_FN dt_philox4 dt_philox_words(uint64_t seed, uint64_t stream, uint64_t index) {
    dt_philox4 c;
    c.v[0] = (uint32_t)index;
    c.v[1] = (uint32_t)(index >> 32);
    c.v[2] = (uint32_t)stream;
    c.v[3] = (uint32_t)(stream >> 32);
    return dt_philox4x32(c, (uint32_t)seed, (uint32_t)(seed >> 32));
}

/* Uniform in (0, 1], 24 bits, never 0 (safe for log). */
DT_PHILOX_FN float dt_philox_unit(uint32_t w) {
    return ((float)(w >> 8) + 1.0f) * (1.0f / 16777216.0f);
}

/* Standard normal number `index` of stream (seed, stream), by Box-Muller on words 0 and 1. */
DT_PHILOX_FN float dt_philox_normal(uint64_t seed, uint64_t stream, uint64_t index) {
    dt_philox4 w = dt_philox_words(seed, stream, index);
    float u1 = dt_philox_unit(w.v[0]);
    float u2 = dt_philox_unit(w.v[1]);
    float r = sqrtf(-2.0f * logf(u1));
    return r * cosf(6.28318530717958647692f * u2);
}

#endif
