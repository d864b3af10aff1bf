/* sampler.h — DDPM (ancestral, respaced) and DDIM sampling of a DiT with classifier-free
 * guidance. All buffers are allocated at init; a run does no allocation. */
#ifndef DT_SAMPLER_H
#define DT_SAMPLER_H

#include <stdint.h>
#include "diffusion.h"
#include "dit.h"

typedef struct {
    int steps;  /* length of the respaced chain, 1..T (default 250) */
    int ddim;   /* 0 = DDPM ancestral, 1 = DDIM */
    double eta; /* DDIM noise (0 = deterministic) */
    float cfg;  /* guidance scale s; 1 = plain conditional sampling */
    int clip_x0; /* clamp each step's predicted x0 to [-1, 1]: right for pixel-space models (as
                  * ADM samples them), wrong for latents (DiT samples latents unclipped) */
} dt_sampler_opts;

typedef struct {
    const dit_model *m;
    dt_sampler_opts opts;
    int max_batch;
    dt_schedule chain;
    dit_acts acts;     /* inference activations for 2 * max_batch */
    float *x;          /* (B, C, H, W) current sample */
    float *xin;        /* (2B, C, H, W) model input ([x; x] under guidance) */
    float *model_out;  /* (2B, C_out, H, W) */
    float *guided;     /* (B, C_out, H, W) */
    float *noise;      /* (B, C, H, W) */
    int32_t *t_dev;    /* (2B) */
    int32_t *y_dev;    /* (2B) */
    int32_t *y_null_dev; /* (2B) every label the null class (hybrid sampling's unconditional part) */
    int32_t *host_i32; /* (2B) staging */
} dt_sampler;

/* Prepares a sampler for batches up to max_batch over the respaced chain of base. Returns 0 or
 * -1 with a message. */
int sampler_init(dt_sampler *s, const dit_model *m, const dt_schedule *base,
                 const dt_sampler_opts *opts, int max_batch, char *err, size_t errlen);
void sampler_free(dt_sampler *s);

/* Draws B samples with class labels (host, B values; num_classes = the null class) using the
 * weights at params, into host_out (B, C, H, W). The noise is a function of (seed, chunk), so
 * any chunk of a large sampling job can be redone alone. Returns 0, 1 when *stop became
 * non-zero between steps, or a negative backend error. */
int sampler_run(dt_sampler *s, const float *params, const int32_t *labels, int B,
                uint64_t seed, uint64_t chunk, float *host_out, volatile int *stop);

/* Hybrid sampling for the forgetting curve: the steps at timesteps t >= switch_t use
 * params_noise (the fine-tuned model, conditioned on labels, with guidance), the steps below it
 * use params_data (the base model), conditioned on the null class without guidance when
 * data_unconditional is set (a fine-tuned model's class k is not the base model's class k), else
 * like the first part. switch_t = 0 is plain sampling with params_noise; switch_t > T-1 is
 * plain sampling with params_data. Both weight sets belong to the sampler's model
 * (same architecture). Same noise as sampler_run for the same (seed, chunk). Returns as
 * sampler_run. */
int sampler_run_hybrid(dt_sampler *s, const float *params_noise, const float *params_data,
                       int switch_t, int data_unconditional, const int32_t *labels, int B,
                       uint64_t seed, uint64_t chunk, float *host_out, volatile int *stop);

#endif
