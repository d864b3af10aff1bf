/* eval.h — Fréchet-distance evaluation of a DiT: reference statistics of a dataset (computed
 * once and cached) and evaluations that sample N images from given weights, extract features in
 * chunks and compare their Gaussian statistics with the reference (DESIGN.md section 5).
 *
 * The extractor decides the metric (extractor.h): "fid" for the FID Inception, "fd_classifier"
 * for a difftune classifier, which also yields the accuracy of the samples on the labels they
 * were generated for. Every result records what it depends on: sample count, sampler, steps,
 * guidance scale, extractor and reference set (dataset content hash and image count).
 *
 * Comparability: sample i of an evaluation has label i % num_classes and the noise of
 * (EVAL_SEED, chunk), so evaluations of successive checkpoints differ only by the weights.
 *
 * Latent DiTs (dt_eval_opts.decoder): each chunk of sampled latents is decoded to images by the
 * VAE before the extractor sees it, and the reference statistics come from the dataset's images
 * at the decoded size (the model's input size times the VAE's downsampling).
 *
 * Reference cache: CACHE_DIR/<key>.safetensors with "mu" (F64, (dim)) and "sigma" (F64,
 * (dim, dim)) and __metadata__ {format, extractor, weights_sha256, dataset_sha256, images, dim};
 * key = SHA-256 of the dataset's content hash, the extractor label, the extractor's weights hash
 * and EVAL_REF_MAX_IMAGES. Written crash-safely (temporary file, fsync, rename), so concurrent
 * jobs and crashes never leave a torn file; a file that does not read back is recomputed.
 */
#ifndef DT_EVAL_H
#define DT_EVAL_H

#include <stddef.h>
#include <stdint.h>

#include "dataset.h"
#include "diffusion.h"
#include "dit.h"
#include "extractor.h"
#include "fid.h"
#include "latents.h"
#include "sampler.h"

/* Reference statistics use every dataset image up to this many; larger datasets use this many,
 * evenly spaced over the dataset order (image floor(i * n / cap) for i < cap). */
#define EVAL_REF_MAX_IMAGES 50000
#define EVAL_SEED 0x6576616c2d30ULL /* noise of evaluation sampling ("eval-0") */

typedef struct {
    int samples;     /* images generated per evaluation (>= 2) */
    int steps;       /* sampler steps, 1..T */
    int ddim;        /* 1 = DDIM (eta 0), 0 = DDPM (ancestral, respaced) */
    float cfg;       /* guidance scale (>= 1; 1 = plain conditional sampling) */
    int num_classes; /* sample labels cycle over 0..num_classes-1 (>= 1) */
    int chunk;       /* images per sampling and feature batch (>= 1) */
    uint64_t seed;   /* sampling noise (EVAL_SEED unless a caller wants other noise) */
    dt_latent_decoder *decoder; /* latent DiT: decodes the samples (borrowed, must outlive the
                                 * evaluator); NULL = pixel space (samples are images, x0 is
                                 * clipped while sampling) */
} dt_eval_opts;

typedef struct {
    dt_gauss_stats stats;
    char dataset_sha256[65]; /* content hash of the dataset (eval_dataset_sha256) */
    long images;             /* images the statistics were computed from */
    int reused;              /* 1 when read from the cache */
    double seconds;          /* spent computing or loading them */
} dt_eval_reference;

typedef struct {
    const char *metric;      /* "fid" | "fd_classifier" (static string) */
    double value;            /* the Fréchet distance */
    double accuracy;         /* classifier: share of samples predicted as their label; NAN else */
    int samples;
    const char *sampler;     /* "ddim" | "ddpm" (static string) */
    int steps;
    double cfg;
    const char *extractor;   /* the extractor's label (owned by the extractor) */
    char reference_sha256[65];
    long reference_images;
    double seconds_sampling, seconds_features, seconds_distance, seconds_total;
} dt_eval_result;

/* Progress of long work: stage "reference" (done/total dataset images) or "sampling" (done/total
 * generated images, features included); called after every chunk. */
typedef void (*eval_progress_fn)(void *ctx, const char *stage, long done, long total);

/* An evaluator: the sampler and every host buffer, allocated once by eval_init, so evaluations
 * inside a training loop allocate nothing but their result statistics. */
typedef struct {
    const dit_model *m;      /* borrowed */
    dt_extractor *x;         /* borrowed */
    dt_eval_opts o;
    dt_sampler sampler;
    int C, S;                /* the images measured: channels and side (decoded for a latent DiT) */
    float *h_images;         /* (chunk, C, S, S) */
    float *h_latents;        /* (chunk, model C, H, W) a latent DiT's samples; NULL in pixel space */
    float *h_features;       /* (chunk, dim) */
    int32_t *h_labels, *h_pred; /* (chunk) */
    fid_accum acc;
    eval_progress_fn progress; /* may be NULL */
    void *progress_ctx;
    volatile int *stop;      /* may be NULL; checked between chunks and sampler steps */
} dt_evaluator;

/* Prepares an evaluator for model m (its shapes; the weights come with each eval_run) over the
 * diffusion schedule sched, measuring with x (which must take the model's image shape:
 * extractor_check_shape). m, sched and x must outlive it. Returns 0, or -1 with a message. */
int eval_init(dt_evaluator *e, const dit_model *m, const dt_schedule *sched, dt_extractor *x,
              const dt_eval_opts *o, char *err, size_t errlen);
void eval_free(dt_evaluator *e);

/* Content hash of a dataset as loaded (shape, class count, image bytes, labels): what reference
 * statistics depend on, so a dataset loaded at another size or channel count hashes apart. */
void eval_dataset_sha256(const dt_dataset *ds, char out[65]);

/* The reference statistics of ds for e's extractor into *ref (release with
 * eval_reference_free): read from cache_dir when present, else computed over the dataset's
 * images (see EVAL_REF_MAX_IMAGES) with progress in stage "reference" and written there.
 * cache_dir NULL = no cache. The images must have the measured shape (e->C, e->S: the model's,
 * or the decoded images' for a latent DiT). Returns 0, 1 when stopped through e->stop (nothing
 * cached), or -1 with a message. */
int eval_reference(dt_evaluator *e, const dt_dataset *ds, const char *cache_dir,
                   dt_eval_reference *ref, char *err, size_t errlen);
void eval_reference_free(dt_eval_reference *ref);

/* One evaluation of the weights at params (backend memory, e.g. the EMA): o.samples images in
 * chunks, features and running statistics per chunk (no image outlives its chunk), then the
 * Fréchet distance to ref. Fills *res. Returns 0, 1 when stopped through e->stop, -1 with a
 * message when measuring failed (extractor, eigensolver, memory), or EVAL_BACKEND_FAILED with a
 * message when sampling failed on the backend (whose state is then unknown). */
#define EVAL_BACKEND_FAILED (-2)
int eval_run(dt_evaluator *e, const float *params, const dt_eval_reference *ref,
             dt_eval_result *res, char *err, size_t errlen);

/* eval_run with hybrid samples (sampler_run_hybrid, for the forgetting curve): the sampler steps
 * at timesteps t >= switch_t use params_noise, those below use params_data (unconditional
 * without guidance when data_unconditional). Same labels and noise as eval_run, which is
 * eval_run_hybrid(e, params, params, 0, 0, ...). Returns as eval_run. */
int eval_run_hybrid(dt_evaluator *e, const float *params_noise, const float *params_data,
                    int switch_t, int data_unconditional, const dt_eval_reference *ref,
                    dt_eval_result *res, char *err, size_t errlen);

#endif
