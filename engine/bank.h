/* bank.h — the Diff-Tuning knowledge bank: N images sampled from the base model before
 * fine-tuning, cached on disk and shared by every job with the same base model and settings.
 *
 * Layout: ROOT/<key>/bank.safetensors with "images" (U8, (N, C, H, W)) for a pixel-space DiT or
 * "latents" (F32, (N, C, H, W), the sampler's output, never decoded) for a latent DiT, and
 * "labels" (I32, the source classes used), __metadata__ with the settings. <key> is the SHA-256
 * of the base model file's bytes and the bank settings (latent banks, sampled without clipping
 * x0, have their own keys). Generation writes finished chunks under ROOT/<key>/partial/ so an
 * interrupted generation resumes where it stopped.
 */
#ifndef DT_BANK_H
#define DT_BANK_H

#include <stddef.h>
#include "difftune.h"
#include "dit.h"
#include "events.h"
#include "spec.h"

typedef struct {
    int size;          /* N images */
    int steps;         /* sampler steps */
    int ddim;          /* sampler kind */
    double cfg;        /* guidance scale */
    int chunk;         /* images per sampling batch */
    int latent;        /* 1: a latent DiT (spec "vae"): stored as F32 latents, x0 not clipped */
} dt_bank_settings;

/* Settings from a spec (chunk = min(batch_size, size), at least 1). */
void bank_settings_from_spec(dt_bank_settings *s, const dt_spec *spec);
/* The cache key (64 hex + NUL) for the base model file of sha256 base_sha256 (fs_sha256_file)
 * and settings. */
void bank_key(const char *base_sha256, const dt_bank_settings *s, char key[65]);

/* Loads ROOT/key/bank.safetensors into bank when present (*reused = 1); otherwise samples it with
 * the weights at params (backend memory, the base model's EMA weights), emitting "progress"
 * events in phase knowledge_bank, and stores it (*reused = 0). Returns 0, 1 when stopped via
 * *stop (finished chunks are kept), or -1 with a message. */
int bank_load_or_generate(dt_bank *bank, const char *root, const char *key,
                          const dt_bank_settings *s, const dit_model *m, const float *params,
                          dt_events *ev, volatile int *stop, int *reused, char *err, size_t errlen);
void bank_free(dt_bank *bank);

#endif
