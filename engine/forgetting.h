/* forgetting.h — the forgetting curve: how much of the base model a fine-tuned model keeps,
 * along the denoising chain.
 *
 * Two measurements (Zhong et al.'s motivation for Diff-Tuning):
 *  1. Denoising loss by timestep bucket: the training loss of a model on held-out target images,
 *     averaged per bucket of T / buckets timesteps, computed for the base and the fine-tuned
 *     model with the same images, timesteps and noise. Both models are conditioned on the null
 *     class: a fine-tuned model's class k is not the base model's class k, and the unconditional
 *     branch is what Diff-Tuning's retention trains.
 *  2. Hybrid sampling: the fine-tuned model denoises from T down to timestep k, the base model
 *     finishes (sampler_run_hybrid); a Fréchet distance to the target data as a function of k.
 */
#ifndef DT_FORGETTING_H
#define DT_FORGETTING_H

#include <stdint.h>

#include "dataset.h"
#include "diffusion.h"
#include "dit.h"
#include "eval.h"
#include "events.h"

#define FORGETTING_MAX_BUCKETS 100

/* Mean loss per timestep bucket of the weights at params (backend memory, model m) over
 * `per_bucket` images of ds per bucket (images taken in order, cycling; timesteps uniform within
 * the bucket and noise, both a function of seed only, so two models see identical inputs).
 * loss_out (buckets) receives the means. `tab` are the diffusion tables on m's backend.
 * Allocates its own buffers (not a training loop). Returns 0, or -1 with a message. */
int forgetting_loss_by_bucket(const dit_model *m, const float *params, const dt_diffusion_tables *tab,
                              const dt_dataset *ds, int buckets, int per_bucket, uint64_t seed,
                              double *loss_out, char *err, size_t errlen);

/* A whole analysis (difftune forgetting-curve, and API jobs with method "forgetting_curve"). */
typedef struct {
    const char *base_path;      /* the base model (safetensors, official DiT names) */
    const char *finetuned_path; /* a fine-tuned checkpoint of it (its EMA weights are used) */
    const char *dataset_path;   /* held-out target data */
    const char *device;         /* backend name (NULL = auto) */
    const char *precision;      /* auto | bf16 | fp32 (NULL = auto) */
    int buckets;                /* loss curve: timestep buckets (default 10) */
    int loss_images;            /* loss curve: images per bucket (default 256) */
    int switch_points;          /* hybrid: switches k = 0, T/(P-1), ..., T (P >= 2); 0 = no hybrid part */
    int samples;                /* hybrid: generated images per switch point (>= 2) */
    int steps, ddim;            /* hybrid sampler: steps, DDIM (1) or DDPM (0) */
    double cfg;                 /* hybrid guidance scale for the fine-tuned part (>= 1) */
    const char *extractor_kind; /* "inception" or "classifier" */
    const char *extractor_path; /* its weights file (NULL: the hybrid metric is unavailable) */
    const char *extractor_label;/* how results name it ("inception", "classifier:<id>") */
    const char *eval_cache_dir; /* reference statistics cache (NULL = none) */
    uint64_t seed;              /* timesteps and noise of the loss curve */
    dt_events *events;          /* progress, metric and status events */
    volatile int *stop;         /* set asynchronously: stop between batches */
} dt_forgetting_opts;

/* The documented defaults (paths NULL). */
void forgetting_opts_defaults(dt_forgetting_opts *o);

/* Return codes of forgetting_run (as train_run's). */
#define FORGETTING_OK 0
#define FORGETTING_STOPPED 1
#define FORGETTING_INVALID (-2)
#define FORGETTING_FAILED (-1)

/* Loads both models (they must share one architecture) and the held-out data, then emits metric
 * events: "forgetting_loss" (step 0; {"timesteps": bucket starts, "base": [...], "finetuned":
 * [...]}) and, per switch point k, "forgetting_hybrid" (step k; the Fréchet distance with the
 * same fields as an evaluation), or one "forgetting_hybrid" event {"available": false, "reason"}
 * when the extractor cannot be used. Progress events phase "loss_curve" and "hybrid". Returns
 * one of the codes above; on failure err holds the message. */
int forgetting_run(const dt_forgetting_opts *o, char *err, size_t errlen);

#endif
