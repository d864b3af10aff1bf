/* train.h — one training job from spec to checkpoints: load and validate everything, build or
 * reuse the knowledge bank, train (pretrain / full / diff_tuning), write sample grids and
 * checkpoints, evaluate the EMA weights (eval.fid_every: FID or fd_classifier as "metric"
 * events, engine/eval.h), resume from the newest complete checkpoint in the output directory.
 *
 * Output directory: checkpoints/ (see checkpoint.h), samples/step_SSSSSSS.png. Events (see
 * events.h) describe every phase; `difftune train` prints them on stdout.
 *
 * A latent DiT (spec "vae", a file path here) trains on the dataset's VAE latents, encoded once
 * into the latent cache (engine/latents.h, phase "encoding", reused by later jobs: metric
 * "latent_cache"); its knowledge bank holds latents; sample grids and evaluation samples are
 * decoded to images; the FID reference is the dataset's images at the decoded size.
 */
#ifndef DT_TRAIN_H
#define DT_TRAIN_H

#include <stddef.h>
#include <stdint.h>
#include "events.h"
#include "spec.h"

typedef struct {
    const char *out_dir;   /* required */
    const char *bank_dir;  /* knowledge-bank cache root (required for diff_tuning) */
    const char *latent_dir; /* latent-cache root (required with spec "vae"; latents.h) */
    /* What a base model file may not state (diffusers' DiT layout stores neither pos_embed nor a
     * config): its input size and heads, as checkpoint_read_config's hints; 0 = none. */
    int base_input_size, base_heads;
    const char *device;    /* overrides spec->device when non-NULL */
    const char *precision; /* overrides spec->hp.precision when non-NULL: auto | bf16 | fp32 */
    int log_every;         /* steps between progress events (>= 1); first and last always */
    int stop_after;        /* > 0: stop as if signalled once this step is done (tests, debugging) */
    int grid_size;         /* images in each sample grid (default 16 when 0) */
    /* Evaluation (spec eval.fid_every > 0). Without inception_weights, or with a file that does
     * not load, FID is reported unavailable with the reason and training goes on; a classifier
     * named by eval.extractor that does not load rejects the job. */
    const char *inception_weights; /* FID Inception safetensors, or NULL */
    const char *eval_cache_dir;    /* reference-statistics cache (NULL = computed every run) */
    const char *classifier_path;   /* the file of eval.extractor "classifier:<ref>" when <ref> is
                                    * an id resolved by the caller; NULL = <ref> is the path */
    /* Free-space reserve: a checkpoint is written only while the file system of out_dir keeps
     * at least this many bytes free after it (else the job fails with "disk_full", and earlier
     * checkpoints stay as they are). 0 = only the checkpoint itself must fit. */
    int64_t min_free_bytes;
    /* 1: the caller decides which checkpoints stay (run-job: the server's retention, with pins
     * and the best evaluation): none is deleted here, and the checkpoint a run resumes from is
     * reported again as a "checkpoint" event. 0: `difftune train` keeps the newest
     * spec.checkpoint.keep and deletes the rest after each save. */
    int retention_by_caller;
    dt_events *events;
    volatile int *stop;    /* set asynchronously (SIGTERM): stop at the next step boundary */
} dt_train_opts;

/* Return codes of train_run. */
#define TRAIN_OK 0
#define TRAIN_STOPPED 1    /* stopped on request; a checkpoint of the last finished step exists */
#define TRAIN_INVALID (-2) /* bad input, rejected before any work started */
#define TRAIN_FAILED (-1)  /* failed while working (I/O, backend, out of memory) */

/* A step whose mean per-sample loss passes this has diverged even when the number is finite:
 * the model predicts unit-variance noise, so predicting zero already scores about 1 (plus a
 * bounded variational term with learn_sigma), and a loss a million times that means outputs
 * about a thousand times the scale of anything the model is asked for. The job then fails with
 * "nan_loss" as for a NaN. */
#define TRAIN_LOSS_LIMIT 1e6

/* Runs the job described by spec (base_model and dataset are file paths). Returns one of the
 * codes above; on failure err holds the message and an "error" event was emitted whose code
 * (events.h) is invalid_input (TRAIN_INVALID), nan_loss (the loss became NaN/inf or passed
 * TRAIN_LOSS_LIMIT; the message names the step), oom (the model and batch do not fit: the
 * message names the parameter count, the batch and the device), disk_full (a checkpoint could
 * not be written for want of space; earlier checkpoints are intact) or training_failed. */
int train_run(const dt_spec *spec, const dt_train_opts *opts, char *err, size_t errlen);

#endif
