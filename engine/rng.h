/* rng.h — host-side random numbers for the engine, all derived from kernels/philox.h.
 *
 * Every random choice is a pure function of (seed, stream, index): the data order, timesteps,
 * label dropout and flips of step s are recomputed from s alone, so a resumed run replays
 * exactly what an uninterrupted one would have done, with no generator state to save.
 */
#ifndef DT_RNG_H
#define DT_RNG_H

#include <stdint.h>
#include "philox.h"

/* Streams: disjoint ranges so no two uses ever share numbers. */
#define DT_STREAM_INIT        (1ull << 20) /* + tensor index: weight initialisation */
#define DT_STREAM_DATA_PERM   (2ull << 20) /* + epoch: data order */
#define DT_STREAM_TIMESTEP    (3ull << 20) /* training timesteps */
#define DT_STREAM_DROPOUT     (4ull << 20) /* label dropout */
#define DT_STREAM_FLIP        (5ull << 20) /* horizontal flips */
#define DT_STREAM_BANK_PICK   (6ull << 20) /* which bank sample */
#define DT_STREAM_NOISE       (7ull << 36) /* + step: training noise (device randn stream) */
#define DT_STREAM_LABELS      (9ull << 20) /* random class labels (knowledge bank) */
#define DT_STREAM_SPLIT       (10ull << 20) /* + class: held-out split (classifier) */
#define DT_STREAM_LATENT      (11ull << 20) /* latent draws x0 = mean + std * n (index: slot, element) */
#define DT_STREAM_PEFT        (12ull << 20) /* + trainable tensor index: adapter initialisation (LoRA A) */
#define DT_STREAM_SAMPLE      (8ull << 40) /* + chunk << 16 + step: sampling noise */

/* Uniform float in (0, 1] for (seed, stream, index). */
static inline float dt_rng_uniform(uint64_t seed, uint64_t stream, uint64_t index) {
    return dt_philox_unit(dt_philox_words(seed, stream, index).v[0]);
}

/* Uniform double in [0, 1) with 53 random bits. */
static inline double dt_rng_double(uint64_t seed, uint64_t stream, uint64_t index) {
    dt_philox4 w = dt_philox_words(seed, stream, index);
    uint64_t bits = ((uint64_t)w.v[0] << 21) ^ (uint64_t)w.v[1];
    return (double)(bits & ((1ull << 53) - 1)) * (1.0 / 9007199254740992.0);
}

/* Uniform integer in [0, n) (n > 0), via 64-bit multiply-shift (bias < 2^-32 for n < 2^32). */
static inline uint32_t dt_rng_below(uint64_t seed, uint64_t stream, uint64_t index, uint32_t n) {
    dt_philox4 w = dt_philox_words(seed, stream, index);
    return (uint32_t)(((uint64_t)w.v[2] * (uint64_t)n) >> 32);
}

#endif
