/* difftune.h — how each training batch is composed for the three methods (DESIGN.md section 6).
 *
 * pretrain / full: B downstream samples, t uniform, weight 1/B each.
 * diff_tuning:     B_r = floor(B * replay_ratio) knowledge-bank samples with t ~ (T - t)^s, the
 *                  null label and weight replay_weight / B_r; B - B_r downstream samples with
 *                  t ~ (t + 1)^s, their class (dropped to null with class_dropout) and weight
 *                  1 / (B - B_r). The loss is sum_b weight_b * loss_b, which is exactly
 *                  mean(downstream) + replay_weight * mean(bank), in one forward pass.
 * Every choice is a function of (seed, step, slot): see rng.h.
 */
#ifndef DT_DIFFTUNE_H
#define DT_DIFFTUNE_H

#include <stdint.h>
#include "dataset.h"
#include "latents.h"
#include "spec.h"

/* Cumulative distributions over t = 0..T-1. */
typedef struct {
    int T;
    double *down; /* (T) downstream: uniform, or ∝ (t+1)^s for diff_tuning */
    double *bank; /* (T) bank: ∝ (T-t)^s */
} dt_tdist;

/* Builds the distributions for method with power s. Returns 0 or -1 (out of memory). */
int difftune_tdist_init(dt_tdist *d, int T, dt_method method, double power);
void difftune_tdist_free(dt_tdist *d);
/* The t whose cumulative interval holds u in [0,1): smallest t with cdf[t] > u. */
int difftune_draw_t(const double *cdf, int T, double u);

/* The knowledge bank: samples of the base model, stored like a dataset: images for a pixel-space
 * DiT, the sampler's latents (never decoded) for a latent one. Exactly one of the two is set. */
typedef struct {
    int n, C, H, W;
    uint8_t *images; /* (n, C, H, W) pixel space */
    float *latents;  /* (n, C, H, W) latent space */
} dt_bank;

/* Deterministic epoch-shuffled data order (no state beyond a cached permutation). */
typedef struct {
    int n;
    int64_t epoch; /* epoch whose permutation is in perm, -1 none */
    int32_t *perm; /* (n) */
    uint64_t seed;
} dt_data_order;

int data_order_init(dt_data_order *o, int n, uint64_t seed);
void data_order_free(dt_data_order *o);
/* Dataset index of global downstream sample k (epoch k / n, shuffled within the epoch). */
int data_order_index(dt_data_order *o, int64_t k);

typedef struct {
    int B;           /* whole batch */
    int B_bank;      /* bank samples, at the end of the batch */
    int B_down;      /* downstream samples, at the start */
    int null_label;  /* the model's num_classes */
    double class_dropout, replay_weight;
    uint64_t seed;
} dt_batch_plan;

/* The split of spec's batch for a model with num_classes classes. */
void difftune_plan(dt_batch_plan *p, const dt_spec *spec, int num_classes);

/* Composes the batch of `step` (1-based) into host buffers: x0 (B, C, H, W), labels (B), t (B),
 * weight (B). Downstream samples come from lat when it is not NULL (a posterior draw of the
 * cached latents, latents_draw, with the slot's flip; labels from lat), else from ds's images
 * in [-1, 1]. Bank samples are flipped bank images, or bank latents as sampled. bank may be
 * NULL when p->B_bank == 0. No allocation. */
void difftune_compose(const dt_batch_plan *p, const dt_tdist *td, int64_t step,
                      const dt_dataset *ds, const dt_latents *lat, dt_data_order *order,
                      const dt_bank *bank, float *x0, int32_t *labels, int32_t *t, float *weight);

#endif
