/* gen_common.h — what the weight generators (gen_dit.c, gen_vae.c) share: the random value of a
 * tensor element, a deterministic function of (seed, the tensor's name, its index), and the
 * float32 -> F16 / BF16 roundings of the files they write, so that files of one seed in different
 * dtypes hold the same numbers rounded, bit-identically on every IEEE machine.
 *
 * Header-only (static inline): each generator is one executable (tests/tools/CMakeLists.txt).
 * Define GEN_TOOL (the program's name, for messages) before including it.
 */
#ifndef DT_GEN_COMMON_H
#define DT_GEN_COMMON_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "philox.h"

/* Prints "GEN_TOOL: msg" and exits 2 (bad usage or input): these are command-line tools. */
static inline void gen_die(const char *msg) {
    fprintf(stderr, "%s: %s\n", GEN_TOOL, msg);
    exit(2);
}

/* FNV-1a of the name: the tensor's random stream. */
static inline uint64_t gen_hash(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) {
        h ^= (uint8_t)*s;
        h *= 1099511628211ull;
    }
    return h;
}

/* Uniform in (-1, 1], exact: a 24-bit integer over 2^23. */
static inline float gen_sym_unit(uint64_t seed, uint64_t stream, uint64_t i) {
    uint32_t w = dt_philox_words(seed, stream, i).v[0] >> 8; /* 0 .. 2^24-1 */
    return (float)((int32_t)w - (1 << 23) + 1) * (1.0f / 8388608.0f);
}

/* float32 -> IEEE half, round to nearest even; subnormals and overflow (to inf) handled. */
static inline uint16_t gen_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    const uint32_t sign = (x >> 16) & 0x8000u, absx = x & 0x7fffffffu;
    if (absx >= 0x7f800000u) return (uint16_t)(sign | 0x7c00u | (absx > 0x7f800000u ? 0x200u : 0));
    if (absx >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds past 65504 */
    if (absx < 0x38800000u) {                                   /* below 2^-14: subnormal */
        float a;
        memcpy(&a, &absx, 4);
        return (uint16_t)(sign | (uint32_t)lrintf(a * 16777216.0f)); /* units of 2^-24, RNE */
    }
    uint32_t h = (((absx >> 23) - 112u) << 10) | ((absx & 0x7fffffu) >> 13);
    const uint32_t rest = absx & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) h++;
    return (uint16_t)(sign | h);
}

/* float32 -> bfloat16, round to nearest even (the generators' values are finite). */
static inline uint16_t gen_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

#endif
