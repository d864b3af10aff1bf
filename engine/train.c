/* train.c — the training job: setup, the step, sample grids, checkpoints, resume. */
#include "train.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include "bank.h"
#include "checkpoint.h"
#include "clock.h"
#include "dataset.h"
#include "difftune.h"
#include "diffusion.h"
#include "dit.h"
#include "eval.h"
#include "extractor.h"
#include "fsutil.h"
#include "image.h"
#include "latents.h"
#include "peft.h"
#include "rng.h"
#include "safetensors.h"
#include "sampler.h"
#include "vae.h"

#define TRAIN_GRID_STEPS 50   /* DDIM steps for sample grids */
#define TRAIN_GRID_CFG 1.5f   /* guidance for sample grids, as for the knowledge bank */
#define TRAIN_GRID_SEED 0x67726964ULL
#define TRAIN_BUCKETS 10      /* loss-by-timestep buckets of T/10 steps */
/* Steps whose per-sample losses stay in backend memory before the host reads them: the step
 * itself never waits for the device; the host looks at losses when it logs, saves, samples, or
 * when the ring is full. */
#define TRAIN_LOSS_RING 64
#define TRAIN_EVAL_PROGRESS_S 1.0 /* seconds between progress events of an evaluation */
/* Images per VAE call (encoding the dataset, decoding grids and evaluation samples): the VAE's
 * activations are reserved once for this many images at the pixel size. */
#define TRAIN_VAE_BATCH 4
#define TRAIN_NO_INCEPTION \
    "no Inception weights: start the server (or difftune train) with --inception-weights FILE " \
    "(README: Evaluation)"

typedef struct {
    const dt_spec *spec;
    const dt_train_opts *o;
    dt_events *ev;
    dt_backend *be;
    dit_model m;
    dt_dataset ds;
    dt_bank bank;
    dt_data_order order;
    dt_schedule sched;
    dt_diffusion_tables tab;
    dt_tdist td;
    dt_batch_plan plan;
    dit_acts acts;
    dt_sampler grid;
    char ckpt_dir[4096], sample_dir[4096];
    char *spec_json;
    const char *err_code;     /* the failure's error.code (events.h); NULL = training_failed */
    int micro;                /* micro-batch size = B / grad_accum */
    /* a parameter-efficient job (spec peft): the adapter (m.ad points at it) */
    dit_adapter ad;
    size_t P_t;               /* trainable floats: the adapter's, else the model's num_floats */
    /* backend memory */
    float *params, *grads, *ema, *adam_m, *adam_v; /* (P_t) each */
    float *base;              /* (num_floats) the frozen base of a PEFT job, else NULL */
    float *x0, *eps, *xt, *out, *dout;  /* (micro, C[_out], H, W) */
    float *loss_ring;         /* (TRAIN_LOSS_RING, B) per-sample losses of unread steps */
    float *norm_sq;           /* (1) */
    int32_t *t_dev, *y_dev;   /* (micro) */
    float *w_dev;             /* (micro) */
    /* host memory, allocated once */
    float *h_x0, *h_w;          /* (B, C, H, W), (B) the batch being composed */
    int32_t *h_t, *h_y;         /* (B) */
    float *h_ring_loss, *h_ring_w; /* (TRAIN_LOSS_RING, B) losses read back, objective weights */
    int32_t *h_ring_t;          /* (TRAIN_LOSS_RING, B) timesteps of the ring's steps */
    int ring_n, ring_step;      /* steps in the ring; the step of its first row */
    float *h_stage;             /* (2 * P_t) checkpoint staging; at setup the base weights
                                 * (num_floats) and, for a PEFT job, its trainable block */
    float *h_grid;              /* (grid, C, H, W) */
    int32_t *h_grid_labels;     /* (grid) */
    /* latent DiT (spec "vae"): the VAE, the dataset's latents, decoding of samples */
    vae_model *vae;             /* NULL in pixel space */
    int pixel_size;             /* the images' side: image_size x the VAE's downsampling */
    dt_latents lat;             /* the dataset's latents; lat.mean NULL until read or encoded */
    char lat_key[65], vae_sha[65];
    char base_sha[65];          /* sha256 of the base model file; "" until train_base_sha */
    int lat_reused;             /* 1: read from the cache at setup; 0: train_latents encodes */
    int keep_pixels;            /* the dataset's images stay loaded (evaluation references) */
    dt_latent_decoder dec;      /* sample grids and evaluation samples */
    float *h_grid_pixels;       /* (grid, 3, pixel_size, pixel_size) the decoded grid */
    /* evaluation (eval.fid_every > 0) */
    dt_extractor *fx;           /* NULL: the metric is unavailable, for eval_unavailable */
    dt_evaluator evaluator;     /* sampler and buffers, allocated at setup */
    dt_eval_reference ref;      /* reference statistics, from the first evaluation on */
    int ref_ready;
    const char *eval_metric;    /* "fid" | "fd_classifier" */
    char eval_unavailable[1024];
    int eval_step;              /* the step being evaluated (for progress events) */
    double eval_last_progress;  /* time of the last evaluation progress event */
    /* running statistics since the last progress event */
    double sum_obj, sum_down, sum_bank;
    long n_obj, n_down, n_bank;
    double bucket_sum[2][TRAIN_BUCKETS];
    long bucket_n[2][TRAIN_BUCKETS];
} trainer;

/* ---- setup ------------------------------------------------------------------------------- */

/* The architecture: the base model's (fine-tuning) or the spec's (pretraining). */
static int train_config(trainer *tr, dit_config *cfg, st_file *base, char *err, size_t errlen) {
    const dt_spec *s = tr->spec;
    if (s->method != DT_METHOD_PRETRAIN) {
        if (safetensors_open(base, s->base_model, err, errlen)) return -1;
        return checkpoint_read_config(base, tr->o->base_heads, tr->o->base_input_size, cfg, err,
                                      errlen);
    }
    int depth = s->model.depth, hidden = s->model.hidden_size, heads = s->model.num_heads,
        patch = s->model.patch_size;
    if (strcmp(s->model.arch, "custom") && dit_arch_lookup(s->model.arch, &depth, &hidden, &heads, &patch)) {
        snprintf(err, errlen, "unknown model.arch '%s'", s->model.arch);
        return -1;
    }
    /* num_classes is settled once the dataset is known; 1 is a placeholder that passes checks */
    return dit_config_init(cfg, depth, hidden, heads, patch, s->model.image_size, s->model.channels,
                           s->model.num_classes > 0 ? s->model.num_classes : 1, s->model.learn_sigma,
                           err, errlen);
}

/* Fails the job as out of memory ("oom"): the message names what the user can change (the
 * parameter count, the batch, the device), then detail (may be NULL; may alias err). */
static void train_oom(trainer *tr, const char *detail, char *err, size_t errlen) {
    char why[512] = "";
    static const char lead[] = "out of memory: "; /* the inner message's own lead, said once */
    if (detail && !strncmp(detail, lead, sizeof lead - 1)) detail += sizeof lead - 1;
    if (detail && detail[0]) snprintf(why, sizeof why, " (%.500s)", detail);
    char micro[48] = "";
    if (tr->micro > 0 && tr->micro != tr->plan.B)
        snprintf(micro, sizeof micro, " (micro-batch %d)", tr->micro);
    tr->err_code = DT_ERR_OOM;
    snprintf(err, errlen, "out of memory: a %zu-parameter DiT with batch %d%s does not fit on %s%s; "
             "lower hyperparameters.batch_size, raise grad_accum or choose a smaller model",
             tr->m.num_floats, tr->plan.B, micro, tr->be->name, why);
}

/* The backend failed while doing `what` (e.g. "by step 12"): oom when it ran out of memory
 * (CUDA's cudaErrorMemoryAllocation reads "out of memory"; cuBLAS says
 * CUBLAS_STATUS_ALLOC_FAILED), else err gives the backend's reason. */
static void train_backend_error(trainer *tr, const char *what, char *err, size_t errlen) {
    const char *why = tr->be->last_error(tr->be);
    if (strstr(why, "out of memory") || strstr(why, "ALLOC_FAILED")) {
        char detail[512];
        snprintf(detail, sizeof detail, "%s, %s", why, what);
        train_oom(tr, detail, err, errlen);
    } else {
        snprintf(err, errlen, "backend failure %s on %s: %s", what, tr->be->name, why);
    }
}

/* Floats of the host staging area: two trainable blocks (checkpoints), and at setup the base
 * weights, followed by the starting trainable block of a PEFT job. */
static size_t train_stage_floats(const trainer *tr) {
    const size_t two = 2 * tr->P_t, setup = tr->m.num_floats + (tr->m.ad ? tr->P_t : 0);
    return two > setup ? two : setup;
}

/* Refuses, before anything is allocated, a plan that cannot fit in host memory: the staging
 * buffers always live there, and on the CPU so do the parameters, optimizer state, activations
 * and batch buffers. More than RAM plus swap is either refused by the kernel or ends with the
 * OOM killer taking the worker, so it fails here as "oom" instead. (A GPU's own memory is
 * checked by allocating it: its allocator says no cleanly.) A latent DiT adds the VAE (weights,
 * activations for TRAIN_VAE_BATCH images, its batch buffers) on the device, and on the host the
 * latents of the dataset (mean and std, both flips), its images and the decoded grid.
 * Returns 0 or -1. */
static int train_fits_host(trainer *tr, int grid, char *err, size_t errlen) {
    const dit_config *c = &tr->m.cfg;
    const double f = sizeof(float), P = (double)tr->P_t, B = tr->plan.B, mb = tr->micro;
    const double base = tr->m.ad ? (double)tr->m.num_floats : 0; /* the frozen block */
    const double img = (double)c->in_channels * c->image_size * c->image_size;
    const double oimg = (double)c->out_channels * c->image_size * c->image_size;
    double host = f * (train_stage_floats(tr) + B * img + 3 * TRAIN_LOSS_RING * B + grid * img);
    double dev = f * (base + 5 * P + mb * (3 * img + 2 * oimg) + TRAIN_LOSS_RING * B + grid * 5 * img) +
                 (double)dit_acts_bytes(&tr->m, tr->micro, 1) +
                 (double)dit_acts_bytes(&tr->m, 2 * grid, 0);
    if (tr->vae) {
        const double pimg = 3.0 * tr->pixel_size * tr->pixel_size, n = tr->ds.n;
        dev += f * ((double)vae_get_config(tr->vae)->num_floats +
                    TRAIN_VAE_BATCH * (2 * pimg + 3 * img)) +
               (double)vae_reserve_bytes(tr->vae, TRAIN_VAE_BATCH, tr->pixel_size);
        host += f * (4 * n * img + grid * pimg + TRAIN_VAE_BATCH * pimg) +
                (tr->ds.images ? n * pimg : 0);
    }
    double need = strcmp(tr->be->name, "cpu") ? host : host + dev;
    struct sysinfo si;
    if (sysinfo(&si) != 0) return 0; /* cannot tell: the allocations will */
    double have = ((double)si.totalram + (double)si.totalswap) * si.mem_unit;
    if (need <= have) return 0;
    char why[160];
    snprintf(why, sizeof why, "it needs %.1f GiB of host memory; this machine has %.1f GiB of "
             "memory and swap", need / 1073741824.0, have / 1073741824.0);
    train_oom(tr, why, err, errlen);
    return -1;
}

static int train_alloc(trainer *tr, char *err, size_t errlen) {
    dt_backend *be = tr->be;
    const dit_config *c = &tr->m.cfg;
    const size_t P = tr->P_t, B = (size_t)tr->plan.B, mb = (size_t)tr->micro;
    const size_t img = (size_t)c->in_channels * c->image_size * c->image_size;
    const size_t oimg = (size_t)c->out_channels * c->image_size * c->image_size;
    float **blocks[] = {&tr->params, &tr->grads, &tr->ema, &tr->adam_m, &tr->adam_v};
    const int G = tr->o->grid_size > 0 ? tr->o->grid_size : 16;
    if (train_fits_host(tr, G, err, errlen)) return -1;
    for (int i = 0; i < 5; i++)
        if (!(*blocks[i] = be->alloc(be, P * sizeof(float)))) goto oom;
    if (tr->m.ad && !(tr->base = be->alloc(be, tr->m.num_floats * sizeof(float)))) goto oom;
    tr->ad.base = tr->base;
    if (!(tr->x0 = be->alloc(be, mb * img * sizeof(float))) ||
        !(tr->eps = be->alloc(be, mb * img * sizeof(float))) ||
        !(tr->xt = be->alloc(be, mb * img * sizeof(float))) ||
        !(tr->out = be->alloc(be, mb * oimg * sizeof(float))) ||
        !(tr->dout = be->alloc(be, mb * oimg * sizeof(float))) ||
        !(tr->loss_ring = be->alloc(be, TRAIN_LOSS_RING * B * sizeof(float))) ||
        !(tr->norm_sq = be->alloc(be, sizeof(float))) ||
        !(tr->t_dev = be->alloc(be, mb * sizeof(int32_t))) ||
        !(tr->y_dev = be->alloc(be, mb * sizeof(int32_t))) ||
        !(tr->w_dev = be->alloc(be, mb * sizeof(float))))
        goto oom;
    tr->h_x0 = malloc(B * img * sizeof(float));
    tr->h_w = malloc(B * sizeof(float));
    tr->h_ring_loss = malloc(TRAIN_LOSS_RING * B * sizeof(float));
    tr->h_ring_w = malloc(TRAIN_LOSS_RING * B * sizeof(float));
    tr->h_ring_t = malloc(TRAIN_LOSS_RING * B * sizeof(int32_t));
    tr->h_t = malloc(B * sizeof(int32_t));
    tr->h_y = malloc(B * sizeof(int32_t));
    tr->h_stage = malloc(train_stage_floats(tr) * sizeof(float));
    tr->h_grid = malloc((size_t)G * img * sizeof(float));
    tr->h_grid_labels = malloc((size_t)G * sizeof(int32_t));
    if (!tr->h_x0 || !tr->h_w || !tr->h_ring_loss || !tr->h_ring_w || !tr->h_ring_t || !tr->h_t || !tr->h_y || !tr->h_stage ||
        !tr->h_grid || !tr->h_grid_labels)
        goto oom;
    if (dit_acts_alloc(&tr->acts, &tr->m, tr->micro, 1, err, errlen)) {
        train_oom(tr, err, err, errlen);
        return -1;
    }
    /* x0 is clipped in pixel space only: latents are sampled unclipped, as DiT does */
    dt_sampler_opts so = {.steps = TRAIN_GRID_STEPS, .ddim = 1, .eta = 0.0, .cfg = TRAIN_GRID_CFG,
                          .clip_x0 = !tr->vae};
    if (sampler_init(&tr->grid, &tr->m, &tr->sched, &so, G, err, errlen)) {
        train_oom(tr, err, err, errlen); /* its one other failure (bad steps) cannot happen here */
        return -1;
    }
    if (tr->vae) {
        const size_t pimg = (size_t)3 * tr->pixel_size * tr->pixel_size;
        if (!(tr->h_grid_pixels = malloc((size_t)G * pimg * sizeof(float)))) goto oom;
        if (latent_decoder_init(&tr->dec, tr->vae, be, TRAIN_VAE_BATCH, c->in_channels,
                                c->image_size, err, errlen)) {
            train_oom(tr, err, err, errlen); /* the shapes were checked at setup */
            return -1;
        }
    }
    for (int i = 0; i < G; i++) tr->h_grid_labels[i] = i % tr->ds.num_classes;
    return 0;
oom:
    train_oom(tr, NULL, err, errlen);
    return -1;
}

/* Opens the feature extractor of eval.extractor and allocates the evaluator. A classifier that
 * cannot be used rejects the job (-1, the user named it); Inception weights that are missing or
 * unusable only make the metric unavailable (tr->eval_unavailable says why). */
static int train_eval_setup(trainer *tr, char *err, size_t errlen) {
    const dt_spec *s = tr->spec;
    const dt_train_opts *o = tr->o;
    const dit_config *c = &tr->m.cfg;
    const char *classifier = spec_eval_classifier(s);
    char why[768];
    /* what the extractor measures: the model's images, or a latent DiT's decoded samples */
    const int img_c = tr->vae ? 3 : c->in_channels, img_s = tr->vae ? tr->pixel_size : c->image_size;
    tr->eval_metric = classifier ? "fd_classifier" : "fid";
    if (classifier) {
        const char *path = o->classifier_path ? o->classifier_path : classifier;
        if (extractor_open(&tr->fx, "classifier", path, s->eval.extractor, why, sizeof why) ||
            extractor_check_shape(tr->fx, img_c, img_s, img_s, why, sizeof why)) {
            snprintf(err, errlen, "eval.extractor %s: %s", s->eval.extractor, why);
            return -1;
        }
    } else if (!o->inception_weights || !o->inception_weights[0]) {
        snprintf(tr->eval_unavailable, sizeof tr->eval_unavailable, "%s", TRAIN_NO_INCEPTION);
    } else if (extractor_open(&tr->fx, "inception", o->inception_weights, "inception", why,
                              sizeof why)) {
        snprintf(tr->eval_unavailable, sizeof tr->eval_unavailable,
                 "the Inception weights %s cannot be used: %s", o->inception_weights, why);
    } else if (extractor_check_shape(tr->fx, img_c, img_s, img_s, why, sizeof why)) {
        snprintf(tr->eval_unavailable, sizeof tr->eval_unavailable, "%s", why);
        extractor_free(tr->fx);
        tr->fx = NULL;
    }
    if (!tr->fx) {
        events_log(tr->ev, "warn", "%s unavailable: %s; training goes on without it",
                   tr->eval_metric, tr->eval_unavailable);
        return 0;
    }
    /* The Inception follows the job onto its GPU where the build has cuDNN; if it cannot, the CPU
     * computes the features (the same to rounding), only slower. */
    if (extractor_use_device(tr->fx, tr->be->name, why, sizeof why))
        events_log(tr->ev, "warn", "%s features run on the CPU: %s", tr->eval_metric, why);
    int chunk = s->hp.batch_size < s->eval.fid_samples ? s->hp.batch_size : s->eval.fid_samples;
    dt_eval_opts eo = {.samples = s->eval.fid_samples, .steps = s->eval.steps,
                       .ddim = !strcmp(s->eval.sampler, "ddim"), .cfg = (float)s->eval.cfg,
                       .num_classes = tr->ds.num_classes, .chunk = chunk, .seed = EVAL_SEED,
                       .decoder = tr->vae ? &tr->dec : NULL};
    if (eval_init(&tr->evaluator, &tr->m, &tr->sched, tr->fx, &eo, why, sizeof why)) {
        snprintf(err, errlen, "eval: %s", why);
        return -1;
    }
    tr->evaluator.stop = o->stop;
    return 0;
}

/* Pixel or latent space. With spec "vae" the VAE's latent channels must be the DiT's input
 * channels, and the images are pixel_size = the DiT's input size x the VAE's downsampling (only
 * the VAE file's header is read here); without one the DiT must take images (1 or 3 channels).
 * Returns 0 or -1 with a message naming "vae". */
static int train_space(trainer *tr, const dit_config *cfg, char *err, size_t errlen) {
    const dt_spec *s = tr->spec;
    const int pretrain = s->method == DT_METHOD_PRETRAIN;
    tr->pixel_size = cfg->image_size;
    if (!s->vae[0]) {
        if (cfg->in_channels == 1 || cfg->in_channels == 3) return 0;
        snprintf(err, errlen, "%s %d-channel inputs, which are not images: a latent DiT (4 channels, "
                 "like DiT-XL/2 at 256 px) needs \"vae\", the VAE whose latents it models (the SD "
                 "VAE: the id of a model of kind vae, or its file with difftune train)",
                 pretrain ? "model.channels asks for" : "the base model takes", cfg->in_channels);
        return -1;
    }
    st_file f = {0};
    vae_config vc;
    char why[768];
    if (safetensors_open(&f, s->vae, why, sizeof why) || vae_read_config(&f, &vc, why, sizeof why)) {
        safetensors_close(&f);
        snprintf(err, errlen, "vae %s: %s", s->vae, why);
        return -1;
    }
    safetensors_close(&f);
    if (vc.latent_channels != cfg->in_channels) {
        snprintf(err, errlen, "vae: the VAE %s makes %d-channel latents but %s %d channels; a "
                 "latent DiT must take the latents of its VAE", s->vae, vc.latent_channels,
                 pretrain ? "model.channels is" : "the base model takes", cfg->in_channels);
        return -1;
    }
    if ((long)cfg->image_size * vc.downsample > 4096) {
        snprintf(err, errlen, "vae: a %d-cell latent input is %d-pixel images, beyond the 4096 "
                 "pixels a dataset loads at", cfg->image_size, cfg->image_size * vc.downsample);
        return -1;
    }
    tr->pixel_size = cfg->image_size * vc.downsample;
    return 0;
}

/* The data of a latent DiT: the dataset's latents from the cache when it holds them (and the
 * images too when an evaluation will need them), else the images at pixel_size for
 * train_latents to encode. A cache file that does not read back, or no longer matches the
 * dataset, is encoded again. Returns 0 or -1 with a message. */
static int train_latent_data(trainer *tr, const dit_config *cfg, char *err, size_t errlen) {
    const dt_spec *s = tr->spec;
    const dt_train_opts *o = tr->o;
    if (!o->latent_dir) {
        snprintf(err, errlen, "a latent DiT (vae) needs a latent-cache directory");
        return -1;
    }
    const char *inception = o->inception_weights;
    tr->keep_pixels = s->eval.fid_every > 0 &&
                      (spec_eval_classifier(s) || (inception && inception[0]));
    if (latents_key(s->dataset, s->vae, tr->pixel_size, tr->lat_key, tr->vae_sha, err, errlen))
        return -1;
    char why[1024];
    int r = latents_load(&tr->lat, o->latent_dir, tr->lat_key, cfg->in_channels, cfg->image_size,
                         cfg->image_size, why, sizeof why);
    if (r == 0 && tr->lat.pixel_size != tr->pixel_size) {
        snprintf(why, sizeof why, "the latent cache %s was encoded at %d pixels, not %d",
                 tr->lat_key, tr->lat.pixel_size, tr->pixel_size);
        latents_free(&tr->lat);
        r = -1;
    }
    if (r < 0) events_log(tr->ev, "warn", "%s; encoding the dataset again", why);
    tr->lat_reused = r == 0;
    if (tr->lat_reused && !tr->keep_pixels) {
        if (latents_as_dataset(&tr->lat, &tr->ds) == 0) return 0;
        snprintf(err, errlen, "out of memory for the labels of %d images", tr->lat.n);
        return -1;
    }
    if (dataset_load(&tr->ds, s->dataset, tr->pixel_size, 3, err, errlen)) return -1;
    if (tr->lat_reused && (tr->ds.n != tr->lat.n || tr->ds.num_classes != tr->lat.num_classes ||
                           memcmp(tr->ds.labels, tr->lat.labels, sizeof(int32_t) * tr->ds.n))) {
        events_log(tr->ev, "warn", "the latent cache %s does not match the dataset's %d images; "
                   "encoding the dataset again", tr->lat_key, tr->ds.n);
        latents_free(&tr->lat);
        tr->lat_reused = 0;
    }
    return 0;
}

/* The sha256 of the base model file, hashed once however many parts of the job need it (the
 * knowledge bank's key, a PEFT checkpoint's base reference). Returns it, or NULL with a
 * message. */
static const char *train_base_sha(trainer *tr, char *err, size_t errlen) {
    if (!tr->base_sha[0] && fs_sha256_file(tr->spec->base_model, tr->base_sha, err, errlen)) {
        tr->base_sha[0] = '\0';
        return NULL;
    }
    return tr->base_sha;
}

/* The adapter of a PEFT job (spec peft) on the model, with its base model's reference (absolute
 * path and sha256, recorded in every checkpoint). Returns 0 or -1 with a message (bad options,
 * or the base model cannot be read). */
static int train_adapter(trainer *tr, char *err, size_t errlen) {
    const dt_spec *s = tr->spec;
    if (s->method != DT_METHOD_FULL && s->method != DT_METHOD_DIFF_TUNING) {
        snprintf(err, errlen, "peft \"%s\" needs method full or diff_tuning",
                 spec_peft_name(s->peft.kind));
        return -1;
    }
    if (peft_adapter_init(&tr->ad, &tr->m.cfg, &s->peft, err, errlen)) return -1;
    if (!realpath(s->base_model, tr->ad.base_path)) {
        snprintf(err, errlen, "base model %s: %s", s->base_model, strerror(errno));
        return -1;
    }
    const char *sha = train_base_sha(tr, err, errlen);
    if (!sha) return -1;
    snprintf(tr->ad.base_sha256, sizeof tr->ad.base_sha256, "%s", sha);
    tr->m.ad = &tr->ad;
    tr->P_t = tr->ad.num_floats;
    return 0;
}

/* Everything that can be checked before work starts: base model, dataset, class counts. */
static int train_setup(trainer *tr, char *err, size_t errlen) {
    const dt_spec *s = tr->spec;
    st_file base = {0};
    dit_config cfg;
    int rc = TRAIN_INVALID;
    if (s->method == DT_METHOD_FORGETTING_CURVE) {
        snprintf(err, errlen, "method \"forgetting_curve\" is an analysis, not training: run "
                 "`difftune forgetting-curve`, or submit it as an API job");
        goto done;
    }
    if (train_config(tr, &cfg, &base, err, errlen) || train_space(tr, &cfg, err, errlen)) goto done;
    if (s->vae[0] ? train_latent_data(tr, &cfg, err, errlen)
                  : dataset_load(&tr->ds, s->dataset, cfg.image_size, cfg.in_channels, err, errlen))
        goto done;
    if (s->method == DT_METHOD_PRETRAIN) {
        int classes = s->model.num_classes > 0 ? s->model.num_classes : tr->ds.num_classes;
        if (classes < tr->ds.num_classes) {
            snprintf(err, errlen, "model.num_classes is %d but the dataset has %d classes",
                     classes, tr->ds.num_classes);
            goto done;
        }
        dit_config_init(&cfg, cfg.depth, cfg.hidden, cfg.heads, cfg.patch, cfg.image_size,
                        cfg.in_channels, classes, cfg.learn_sigma, err, errlen);
    } else if (tr->ds.num_classes > cfg.num_classes) {
        snprintf(err, errlen, "the dataset has %d classes but the base model's label table has only "
                 "%d (plus the null class)", tr->ds.num_classes, cfg.num_classes);
        goto done;
    }
    if (s->hp.batch_size % s->hp.grad_accum) {
        snprintf(err, errlen, "hyperparameters.grad_accum (%d) must divide batch_size (%d)",
                 s->hp.grad_accum, s->hp.batch_size);
        goto done;
    }
    if (s->method == DT_METHOD_DIFF_TUNING && !tr->o->bank_dir) {
        snprintf(err, errlen, "diff_tuning needs a knowledge-bank directory");
        goto done;
    }
    rc = TRAIN_FAILED;
    char dev_err[256];
    const char *device = tr->o->device ? tr->o->device : s->device;
    if (!(tr->be = dt_backend_create(device, dev_err, sizeof dev_err))) {
        snprintf(err, errlen, "device %s: %s", device, dev_err);
        rc = TRAIN_INVALID;
        goto done;
    }
    const char *precision = tr->o->precision ? tr->o->precision : s->hp.precision;
    if (dt_precision_parse(precision, tr->be, &tr->be->precision)) {
        snprintf(err, errlen, "unknown precision \"%s\": use auto, bf16 or fp32", precision);
        rc = TRAIN_INVALID;
        goto done;
    }
    difftune_plan(&tr->plan, s, cfg.num_classes);
    tr->micro = tr->plan.B / s->hp.grad_accum;
    if (dit_model_init(&tr->m, &cfg, tr->be, err, errlen)) { /* fails only out of memory */
        tr->err_code = DT_ERR_OOM;
        goto done;
    }
    tr->P_t = tr->m.num_floats;
    if (s->peft.kind != DT_PEFT_NONE && train_adapter(tr, err, errlen)) {
        rc = TRAIN_INVALID;
        goto done;
    }
    if (diffusion_schedule_init(&tr->sched, DT_DIFFUSION_T) ||
        diffusion_tables_upload(&tr->tab, &tr->sched, tr->be) ||
        difftune_tdist_init(&tr->td, DT_DIFFUSION_T, s->method, s->diff_tuning.power) ||
        data_order_init(&tr->order, tr->ds.n, s->hp.seed)) {
        tr->err_code = DT_ERR_OOM;
        snprintf(err, errlen, "out of memory for the diffusion tables");
        goto done;
    }
    if (s->vae[0] && vae_load(&tr->vae, s->vae, tr->be, err, errlen)) {
        if (strstr(err, "out of memory")) tr->err_code = DT_ERR_OOM;
        goto done;
    }
    if (train_alloc(tr, err, errlen)) goto done;
    if (s->eval.fid_every > 0 && train_eval_setup(tr, err, errlen)) {
        rc = TRAIN_INVALID;
        goto done;
    }

    /* Starting weights: the base model's (EMA) weights, or the from-scratch initialisation. A
     * PEFT job keeps them frozen and starts its trainable block from them. The base file is
     * read as a plain DiT (a PEFT checkpoint as base is merged into its own base). */
    float *host = tr->h_stage;
    if (s->method == DT_METHOD_PRETRAIN) dit_init_host(&tr->m, host, s->hp.seed);
    else {
        const dit_adapter *ad = tr->m.ad;
        tr->m.ad = NULL;
        int r = checkpoint_read_weights(&base, &tr->m, "", host, err, errlen);
        tr->m.ad = ad;
        if (r) {
            rc = TRAIN_INVALID;
            goto done;
        }
    }
    if (tr->m.ad) {
        float *train_host = host + tr->m.num_floats;
        tr->be->upload(tr->be, tr->base, host, tr->m.num_floats * sizeof(float));
        peft_init_host(&tr->ad, &tr->m, host, train_host, s->hp.seed);
        host = train_host;
    }
    tr->be->upload(tr->be, tr->params, host, tr->P_t * sizeof(float));
    tr->be->copy(tr->be, tr->ema, tr->params, tr->P_t * sizeof(float));
    rc = TRAIN_OK;
done:
    safetensors_close(&base);
    return rc;
}

static void train_teardown(trainer *tr) {
    if (tr->be) {
        dt_backend *be = tr->be;
        void *bufs[] = {tr->params, tr->grads, tr->ema, tr->adam_m, tr->adam_v, tr->base, tr->x0, tr->eps,
                        tr->xt, tr->out, tr->dout, tr->loss_ring, tr->norm_sq, tr->t_dev, tr->y_dev, tr->w_dev};
        for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
            if (bufs[i]) be->free(be, bufs[i]);
        sampler_free(&tr->grid);
        if (tr->evaluator.m) eval_free(&tr->evaluator);
        latent_decoder_free(&tr->dec);
        vae_free(tr->vae);
        if (tr->acts.block) dit_acts_free(&tr->acts, &tr->m);
        diffusion_tables_free(&tr->tab, be);
        if (tr->m.params) dit_model_free(&tr->m);
        be->destroy(be);
    }
    extractor_free(tr->fx);
    eval_reference_free(&tr->ref);
    diffusion_schedule_free(&tr->sched);
    difftune_tdist_free(&tr->td);
    data_order_free(&tr->order);
    dataset_free(&tr->ds);
    latents_free(&tr->lat);
    bank_free(&tr->bank);
    peft_adapter_free(&tr->ad);
    free(tr->h_x0); free(tr->h_w); free(tr->h_t); free(tr->h_y);
    free(tr->h_ring_loss); free(tr->h_ring_w); free(tr->h_ring_t);
    free(tr->h_stage); free(tr->h_grid); free(tr->h_grid_labels); free(tr->h_grid_pixels);
    free(tr->spec_json);
}

/* ---- outputs ----------------------------------------------------------------------------- */

static int train_report_checkpoint(trainer *tr, int step, char *err, size_t errlen);

/* A checkpoint of step that could not be written (rc from checkpoint_save_*): removes what
 * was written of it (its state file: a checkpoint without its model file is never loaded, and
 * would only hold space), and for a full disk makes the error disk_full, naming the newest
 * checkpoint, which is intact. Returns -1. */
static int train_save_failed(trainer *tr, int step, int rc, char *err, size_t errlen) {
    char path[4200];
    checkpoint_path(path, sizeof path, tr->ckpt_dir, step, "state");
    unlink(path);
    if (rc != FS_NO_SPACE) return -1;
    tr->err_code = DT_ERR_DISK_FULL;
    size_t n = strlen(err);
    int latest = checkpoint_latest(tr->ckpt_dir);
    char have[64] = "there is no earlier checkpoint";
    if (latest >= 0) snprintf(have, sizeof have, "the checkpoint of step %d is intact", latest);
    snprintf(err + n, errlen > n ? errlen - n : 0, "; checkpoint step %d was not written and %s: "
             "free disk space, then retry the job", step, have);
    return -1;
}

static int train_save(trainer *tr, int step, char *err, size_t errlen) {
    dt_backend *be = tr->be;
    const size_t P = tr->P_t, bytes = P * sizeof(float);
    events_emit(tr->ev, "progress", json_pack("{s:s, s:i, s:i}", "phase", "saving", "step", step,
                                              "total_steps", tr->spec->hp.steps));
    /* The free-space guard: the new checkpoint and the reserve must fit before older ones are
     * pruned (they stay until the new one is complete). */
    uint64_t need = checkpoint_bytes_bound(&tr->m, tr->spec_json ? strlen(tr->spec_json) : 0);
    int rc = fs_check_free(tr->ckpt_dir, "a checkpoint", need, (uint64_t)tr->o->min_free_bytes,
                           "--min-free-mb", err, errlen);
    if (rc == FS_NO_SPACE) return train_save_failed(tr, step, rc, err, errlen);
    /* Moments first (state file), then weights and EMA (model file), through one staging area
     * of two parameter blocks. */
    float *a = tr->h_stage, *b = tr->h_stage + P;
    be->download(be, a, tr->adam_m, bytes);
    be->download(be, b, tr->adam_v, bytes);
    if ((rc = checkpoint_save_state(tr->ckpt_dir, step, &tr->m, a, b, tr->spec_json, err, errlen)))
        return train_save_failed(tr, step, rc, err, errlen);
    be->download(be, a, tr->ema, bytes);
    be->download(be, b, tr->params, bytes);
    if ((rc = checkpoint_save_model(tr->ckpt_dir, step, &tr->m, a, b, tr->spec_json, err, errlen)))
        return train_save_failed(tr, step, rc, err, errlen);
    if (!tr->o->retention_by_caller) checkpoint_prune(tr->ckpt_dir, tr->spec->checkpoint.keep);
    return train_report_checkpoint(tr, step, err, errlen);
}

/* The "checkpoint" event of the complete checkpoint of step: name, path, size and sha256 of
 * its model file. Returns 0, or -1 when the file cannot be read. */
static int train_report_checkpoint(trainer *tr, int step, char *err, size_t errlen) {
    char path[4200], sha[65], name[64];
    checkpoint_path(path, sizeof path, tr->ckpt_dir, step, "");
    if (fs_sha256_file(path, sha, err, errlen)) return -1;
    snprintf(name, sizeof name, "step_%07d.safetensors", step);
    events_emit(tr->ev, "checkpoint", json_pack("{s:i, s:s, s:s, s:I, s:s}", "step", step,
                "name", name, "path", path, "bytes", (json_int_t)fs_file_size(path), "sha256", sha));
    return 0;
}

/* Samples the fixed-seed, fixed-label grid from the EMA weights into samples/step_S.png; a
 * latent DiT's samples are decoded to images first. */
static int train_grid(trainer *tr, int step, char *err, size_t errlen) {
    const dit_config *c = &tr->m.cfg;
    const int G = tr->grid.max_batch;
    events_emit(tr->ev, "progress", json_pack("{s:s, s:i, s:i}", "phase", "evaluating", "step", step,
                                              "total_steps", tr->spec->hp.steps));
    int r = sampler_run(&tr->grid, tr->ema, tr->h_grid_labels, G, TRAIN_GRID_SEED, 0, tr->h_grid, NULL);
    if (r < 0) {
        train_backend_error(tr, "while sampling", err, errlen);
        return -1;
    }
    const float *images = tr->h_grid;
    int C = c->in_channels, S = c->image_size;
    if (tr->vae) {
        if (latent_decode(&tr->dec, tr->h_grid, G, tr->h_grid_pixels) < 0) {
            train_backend_error(tr, "while decoding samples with the VAE", err, errlen);
            return -1;
        }
        images = tr->h_grid_pixels;
        C = 3;
        S = tr->pixel_size;
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/step_%07d.png", tr->sample_dir, step);
    int cols = (int)ceil(sqrt((double)G));
    if (image_write_grid(path, images, G, C, S, S, cols, err, errlen))
        return -1;
    char name[64];
    snprintf(name, sizeof name, "step_%07d.png", step);
    events_emit(tr->ev, "sample", json_pack("{s:i, s:s, s:s, s:i}", "step", step, "name", name,
                                            "path", path, "images", G));
    return 0;
}

/* Evaluation progress: a "progress" event in phase evaluating at most every
 * TRAIN_EVAL_PROGRESS_S seconds, and always at the start and the end of a stage. */
static void train_eval_progress(void *ctx, const char *stage, long done, long total) {
    trainer *tr = ctx;
    double now = dt_now();
    if (done != 0 && done != total && now - tr->eval_last_progress < TRAIN_EVAL_PROGRESS_S) return;
    tr->eval_last_progress = now;
    events_emit(tr->ev, "progress",
                json_pack("{s:s, s:i, s:i, s:s, s:I, s:I}", "phase", "evaluating", "step",
                          tr->eval_step, "total_steps", tr->spec->hp.steps, "stage", stage,
                          "done", (json_int_t)done, "total", (json_int_t)total));
}

/* One metric event {"name": metric, "step", "value": null, "available": false, "reason"}. */
static void train_eval_unavailable(trainer *tr, int step, const char *reason) {
    events_emit(tr->ev, "metric", json_pack("{s:s, s:i, s:n, s:b, s:s}", "name", tr->eval_metric,
                                            "step", step, "value", "available", 0, "reason", reason));
}

/* An evaluation step that gave no value without harming training: r = 1 when a stop request
 * interrupted it (logged, nothing recorded), else a failure recorded as unavailable with why. */
static void train_eval_skipped(trainer *tr, int step, int r, const char *why) {
    if (r == 1) {
        events_log(tr->ev, "info", "evaluation at step %d interrupted by the stop request", step);
        return;
    }
    events_log(tr->ev, "warn", "%s at step %d failed: %s", tr->eval_metric, step, why);
    train_eval_unavailable(tr, step, why);
}

/* The evaluation at step: the Fréchet distance of the EMA weights' samples to the dataset (the
 * reference statistics are computed or loaded the first time), as metric events. Returns 0
 * (also when the metric is unavailable, the evaluation failed without harming training, or a
 * stop request interrupted it) or -1 when the backend failed (err says why). */
static int train_evaluate(trainer *tr, int step, char *err, size_t errlen) {
    if (!tr->fx) {
        train_eval_unavailable(tr, step, tr->eval_unavailable);
        return 0;
    }
    char why[1024];
    tr->eval_step = step;
    tr->evaluator.progress = train_eval_progress;
    tr->evaluator.progress_ctx = tr;
    double ref_seconds = -1;
    if (!tr->ref_ready) {
        int r = eval_reference(&tr->evaluator, &tr->ds, tr->o->eval_cache_dir, &tr->ref, why, sizeof why);
        if (r) {
            train_eval_skipped(tr, step, r, why);
            return 0;
        }
        tr->ref_ready = 1;
        ref_seconds = tr->ref.seconds;
        events_log(tr->ev, "info", "reference statistics (%s) of %ld dataset images %.12s: %s in %.1f s",
                   extractor_label(tr->fx), tr->ref.images, tr->ref.dataset_sha256,
                   tr->ref.reused ? "read from the cache" : "computed", tr->ref.seconds);
    }
    dt_eval_result res;
    int r = eval_run(&tr->evaluator, tr->ema, &tr->ref, &res, why, sizeof why);
    if (r == EVAL_BACKEND_FAILED) {
        snprintf(err, errlen, "%s", why);
        return -1;
    }
    if (r) {
        train_eval_skipped(tr, step, r, why);
        return 0;
    }
    json_t *seconds = json_pack("{s:f, s:f, s:f, s:f}", "sampling", res.seconds_sampling,
                                "features", res.seconds_features, "distance", res.seconds_distance,
                                "total", res.seconds_total);
    if (ref_seconds >= 0) json_object_set_new(seconds, "reference", json_real(ref_seconds));
    events_emit(tr->ev, "metric",
                json_pack("{s:s, s:i, s:f, s:b, s:i, s:s, s:i, s:f, s:s, s:{s:s, s:I}, s:o}",
                          "name", res.metric, "step", step, "value", res.value, "available", 1,
                          "samples", res.samples, "sampler", res.sampler, "steps", res.steps,
                          "cfg", res.cfg, "extractor", res.extractor, "reference",
                          "dataset_sha256", res.reference_sha256, "images",
                          (json_int_t)res.reference_images, "seconds", seconds));
    if (!isnan(res.accuracy))
        events_emit(tr->ev, "metric",
                    json_pack("{s:s, s:i, s:f, s:i, s:s}", "name", "classifier_accuracy", "step",
                              step, "value", res.accuracy, "samples", res.samples, "extractor",
                              res.extractor));
    return 0;
}

/* ---- the step ---------------------------------------------------------------------------- */

/* Enqueues one optimisation step (1-based) on the backend: no allocation, no host-device
 * transfer besides the composed batch going in, and no wait. Its per-sample losses land in the
 * loss ring; train_flush reads them. */
static void train_step(trainer *tr, int step) {
    dt_backend *be = tr->be;
    const dt_spec *s = tr->spec;
    const dit_config *c = &tr->m.cfg;
    const size_t P = tr->P_t, mb = (size_t)tr->micro, B = (size_t)tr->plan.B;
    const int HW = c->image_size * c->image_size;
    const size_t img = (size_t)c->in_channels * HW, oimg = (size_t)c->out_channels * HW;

    difftune_compose(&tr->plan, &tr->td, step, &tr->ds, tr->lat.mean ? &tr->lat : NULL, &tr->order,
                     tr->bank.images || tr->bank.latents ? &tr->bank : NULL, tr->h_x0, tr->h_y,
                     tr->h_t, tr->h_w);
    if (tr->ring_n == 0) tr->ring_step = step;
    const size_t row = (size_t)tr->ring_n * B;
    memcpy(tr->h_ring_t + row, tr->h_t, B * sizeof(int32_t));
    memcpy(tr->h_ring_w + row, tr->h_w, B * sizeof(float));
    be->zero(be, tr->grads, P * sizeof(float));
    for (int k = 0; k < s->hp.grad_accum; k++) {
        const size_t off = (size_t)k * mb;
        be->upload(be, tr->x0, tr->h_x0 + off * img, mb * img * sizeof(float));
        be->upload(be, tr->t_dev, tr->h_t + off, mb * sizeof(int32_t));
        be->upload(be, tr->y_dev, tr->h_y + off, mb * sizeof(int32_t));
        be->upload(be, tr->w_dev, tr->h_w + off, mb * sizeof(float));
        be->randn(be, tr->eps, mb * img, s->hp.seed, DT_STREAM_NOISE + (uint64_t)step * 4096 + (uint64_t)k);
        be->q_sample(be, tr->xt, tr->x0, tr->eps, tr->t_dev, &tr->tab, (int)mb, (int)img);
        dit_forward(&tr->m, tr->params, &tr->acts, tr->xt, tr->t_dev, tr->y_dev, (int)mb, tr->out);
        be->zero(be, tr->dout, mb * oimg * sizeof(float));
        be->diffusion_loss(be, tr->loss_ring + row + off, tr->dout, tr->out, tr->x0, tr->xt, tr->eps,
                           tr->t_dev, tr->w_dev, &tr->tab, (int)mb, c->in_channels, HW, c->learn_sigma);
        dit_backward(&tr->m, tr->params, tr->grads, &tr->acts, tr->dout, tr->y_dev, (int)mb);
    }
    if (s->hp.grad_clip > 0) {
        be->sum_squares(be, tr->norm_sq, tr->grads, P);
        be->clip_by_norm(be, tr->grads, P, tr->norm_sq, (float)s->hp.grad_clip);
    }
    be->adamw_update(be, tr->params, tr->grads, tr->adam_m, tr->adam_v, P, (float)s->hp.learning_rate,
                     0.9f, 0.999f, 1e-8f, (float)s->hp.weight_decay, step);
    be->ema_update(be, tr->ema, tr->params, P, (float)s->hp.ema_decay);
    tr->ring_n++;
}

/* Waits for the enqueued steps, reads their per-sample losses and folds them into the running
 * statistics (objective, downstream/bank split, loss by timestep). Returns 0; 1 with *bad_step
 * and *bad_loss set when a step's loss is not finite or its mean passes TRAIN_LOSS_LIMIT (the
 * weights are garbage from that step on); or -1 when the backend failed (be->last_error says
 * why). */
static int train_flush(trainer *tr, int *bad_step, double *bad_loss) {
    dt_backend *be = tr->be;
    const size_t B = (size_t)tr->plan.B;
    const int n = tr->ring_n;
    tr->ring_n = 0;
    if (n == 0) return be->sync(be) ? -1 : 0;
    be->download(be, tr->h_ring_loss, tr->loss_ring, (size_t)n * B * sizeof(float));
    if (be->sync(be)) return -1;
    for (int r = 0; r < n; r++) {
        const float *loss = tr->h_ring_loss + (size_t)r * B, *w = tr->h_ring_w + (size_t)r * B;
        const int32_t *t = tr->h_ring_t + (size_t)r * B;
        double mean = 0;
        for (size_t i = 0; i < B; i++) mean += loss[i]; /* NaN and inf carry through */
        mean /= (double)B;
        if (!(mean <= TRAIN_LOSS_LIMIT)) {
            *bad_step = tr->ring_step + r;
            *bad_loss = mean;
            return 1;
        }
        for (size_t i = 0; i < B; i++) {
            double l = loss[i];
            int bank = (int)i >= tr->plan.B_down, bucket = t[i] * TRAIN_BUCKETS / DT_DIFFUSION_T;
            tr->sum_obj += w[i] * l;
            if (bank) { tr->sum_bank += l; tr->n_bank++; }
            else { tr->sum_down += l; tr->n_down++; }
            tr->bucket_sum[bank][bucket] += l;
            tr->bucket_n[bank][bucket]++;
        }
        tr->n_obj++;
    }
    return 0;
}

/* Flushes the loss ring; on failure writes the job's error and code (nan_loss naming the step
 * that diverged; oom when the backend ran out of memory; otherwise the backend's reason) and
 * returns nonzero. `saved` is the last checkpointed step. */
static int train_check(trainer *tr, int step, int saved, char *err, size_t errlen) {
    int bad = 0;
    double loss = 0;
    int fr = train_flush(tr, &bad, &loss);
    if (fr > 0) {
        char what[160];
        if (isnan(loss)) snprintf(what, sizeof what, "the loss became NaN at step %d", bad);
        else if (isinf(loss)) snprintf(what, sizeof what, "the loss became infinite at step %d", bad);
        else snprintf(what, sizeof what, "the loss exploded at step %d (%.3g, past the limit of "
                      "%.0e no converging run reaches)", bad, loss, TRAIN_LOSS_LIMIT);
        char kept[64] = "no checkpoint had been written";
        if (saved > 0) snprintf(kept, sizeof kept, "the last checkpoint (step %d) is intact", saved);
        tr->err_code = DT_ERR_NAN_LOSS;
        snprintf(err, errlen, "%s: training diverged (lower hyperparameters.learning_rate or set "
                 "grad_clip); %s", what, kept);
    } else if (fr < 0) {
        char what[64];
        snprintf(what, sizeof what, "by step %d", step);
        train_backend_error(tr, what, err, errlen);
    }
    return fr;
}

static json_t *train_bucket_json(const trainer *tr, int bank) {
    json_t *a = json_array();
    for (int k = 0; k < TRAIN_BUCKETS; k++)
        json_array_append_new(a, tr->bucket_n[bank][k]
                                     ? json_real(tr->bucket_sum[bank][k] / tr->bucket_n[bank][k])
                                     : json_null());
    return a;
}

/* Emits progress (and the loss-by-timestep metric) and resets the running sums. */
static void train_report(trainer *tr, int step, double ips) {
    const dt_spec *s = tr->spec;
    double loss = tr->n_obj ? tr->sum_obj / tr->n_obj : NAN;
    json_t *p = json_pack("{s:s, s:i, s:i, s:f, s:f, s:f, s:f}", "phase", "training", "step", step,
                          "total_steps", s->hp.steps, "loss", loss, "learning_rate", s->hp.learning_rate,
                          "images_per_second", ips,
                          "eta_seconds", ips > 0 ? (s->hp.steps - step) * (double)tr->plan.B / ips : 0.0);
    if (tr->n_down) json_object_set_new(p, "loss_downstream", json_real(tr->sum_down / tr->n_down));
    if (tr->n_bank) json_object_set_new(p, "loss_bank", json_real(tr->sum_bank / tr->n_bank));
    events_emit(tr->ev, "progress", p);
    json_t *m = json_pack("{s:s, s:i, s:o}", "name", "loss_by_timestep", "step", step,
                          "downstream", train_bucket_json(tr, 0));
    if (tr->plan.B_bank) json_object_set_new(m, "bank", train_bucket_json(tr, 1));
    events_emit(tr->ev, "metric", m);
    tr->sum_obj = tr->sum_down = tr->sum_bank = 0;
    tr->n_obj = tr->n_down = tr->n_bank = 0;
    memset(tr->bucket_sum, 0, sizeof tr->bucket_sum);
    memset(tr->bucket_n, 0, sizeof tr->bucket_n);
}

/* ---- the job ----------------------------------------------------------------------------- */

static int train_resume(trainer *tr, int *start, char *err, size_t errlen) {
    *start = 0;
    int latest = checkpoint_latest(tr->ckpt_dir);
    if (latest < 0) return 0;
    const size_t P = tr->P_t, bytes = P * sizeof(float);
    float *a = tr->h_stage, *b = tr->h_stage + P;
    dt_train_state st = {.weights = a, .ema = b};
    if (checkpoint_load(tr->ckpt_dir, latest, &tr->m, &st, err, errlen)) return -1;
    tr->be->upload(tr->be, tr->params, a, bytes);
    tr->be->upload(tr->be, tr->ema, b, bytes);
    st = (dt_train_state){.adam_m = a, .adam_v = b};
    if (checkpoint_load(tr->ckpt_dir, latest, &tr->m, &st, err, errlen)) return -1;
    tr->be->upload(tr->be, tr->adam_m, a, bytes);
    tr->be->upload(tr->be, tr->adam_v, b, bytes);
    *start = latest;
    events_log(tr->ev, "info", "resuming from checkpoint step %d", latest);
    /* The caller that keeps the books of checkpoints hears of this one again: a worker killed
     * between writing it and reporting it would otherwise leave it unknown to the server. */
    return tr->o->retention_by_caller ? train_report_checkpoint(tr, latest, err, errlen) : 0;
}

/* The dataset's latents (a latent DiT): encoded now, in phase "encoding", unless setup read them
 * from the cache; then the images are dropped unless an evaluation needs them. Emits the
 * "latent_cache" metric {key, images, pixel_size, reused, seconds}. Returns 0, 1 when stopped
 * (finished chunks are kept for the next run), or -1 with a message. */
static int train_latents(trainer *tr, char *err, size_t errlen) {
    double t0 = dt_now();
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/%s", tr->o->latent_dir, tr->lat_key);
    if (tr->lat_reused) {
        events_log(tr->ev, "info", "dataset latents reused: %s (%d images of %d pixels)", dir,
                   tr->lat.n, tr->pixel_size);
    } else {
        dt_latents_encode_opts eo = {.root = tr->o->latent_dir, .key = tr->lat_key,
                                     .vae_sha256 = tr->vae_sha, .dataset = tr->spec->dataset,
                                     .batch = TRAIN_VAE_BATCH, .ev = tr->ev, .stop = tr->o->stop};
        events_emit(tr->ev, "progress", json_pack("{s:s, s:i, s:i}", "phase", "encoding", "step", 0,
                                                  "total_steps", tr->ds.n));
        int r = latents_encode(&tr->lat, &tr->ds, tr->vae, tr->be, &eo, err, errlen);
        if (r == FS_NO_SPACE) tr->err_code = DT_ERR_DISK_FULL;
        else if (r < 0 && strstr(err, "out of memory")) tr->err_code = DT_ERR_OOM;
        if (r) return r;
    }
    if (!tr->keep_pixels) { /* training reads only the latents */
        free(tr->ds.images);
        tr->ds.images = NULL;
    }
    events_emit(tr->ev, "metric", json_pack("{s:s, s:s, s:i, s:i, s:b, s:f}", "name", "latent_cache",
                                            "key", tr->lat_key, "images", tr->lat.n, "pixel_size",
                                            tr->pixel_size, "reused", tr->lat_reused,
                                            "seconds", dt_now() - t0));
    return 0;
}

static int train_bank(trainer *tr, char *err, size_t errlen) {
    dt_bank_settings bs;
    char key[65];
    bank_settings_from_spec(&bs, tr->spec);
    const char *sha = train_base_sha(tr, err, errlen);
    if (!sha) return -1;
    bank_key(sha, &bs, key);
    events_emit(tr->ev, "progress", json_pack("{s:s, s:i, s:i}", "phase", "knowledge_bank", "step", 0,
                                              "total_steps", bs.size));
    int reused = 0;
    /* params hold the base model's weights here: resume happens after the bank exists. */
    int r = bank_load_or_generate(&tr->bank, tr->o->bank_dir, key, &bs, &tr->m, tr->params, tr->ev,
                                  tr->o->stop, &reused, err, errlen);
    if (r == 0)
        events_emit(tr->ev, "metric", json_pack("{s:s, s:s, s:i, s:b}", "name", "knowledge_bank",
                                                "key", key, "images", tr->bank.n, "reused", reused));
    return r;
}

int train_run(const dt_spec *spec, const dt_train_opts *o, char *err, size_t errlen) {
    trainer tr;
    memset(&tr, 0, sizeof tr);
    tr.spec = spec;
    tr.o = o;
    tr.ev = o->events;
    int rc;
    double t_start = dt_now();
    events_emit(tr.ev, "status", json_pack("{s:s}", "status", "running"));
    events_emit(tr.ev, "progress", json_pack("{s:s, s:i, s:i}", "phase", "loading", "step", 0,
                                             "total_steps", spec->hp.steps));
    if ((rc = train_setup(&tr, err, errlen)) != TRAIN_OK) goto fail;
    rc = TRAIN_FAILED;
    json_t *sj = spec_to_json(spec);
    tr.spec_json = json_dumps(sj, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(sj);
    snprintf(tr.ckpt_dir, sizeof tr.ckpt_dir, "%s/checkpoints", o->out_dir);
    snprintf(tr.sample_dir, sizeof tr.sample_dir, "%s/samples", o->out_dir);
    if (fs_mkdirs(tr.ckpt_dir, err, errlen) || fs_mkdirs(tr.sample_dir, err, errlen)) goto fail;
    events_log(tr.ev, "info", "%s: %d-layer DiT, hidden %d, %d heads, patch %d, %dx%dx%d, %d classes, "
               "%zu parameters on %s (%s); dataset %d images in %d classes",
               spec_method_name(spec->method), tr.m.cfg.depth, tr.m.cfg.hidden, tr.m.cfg.heads,
               tr.m.cfg.patch, tr.m.cfg.image_size, tr.m.cfg.image_size, tr.m.cfg.in_channels,
               tr.m.cfg.num_classes, tr.m.num_floats, tr.be->name, dt_precision_name(tr.be->precision),
               tr.ds.n, tr.ds.num_classes);
    if (tr.m.ad)
        events_log(tr.ev, "info", "peft %s: %zu of %zu parameters train (%.2f%%) in %d tensors; the "
                   "base model %s (sha256 %.12s) stays frozen", spec_peft_name(spec->peft.kind),
                   tr.P_t, tr.m.num_floats, 100.0 * (double)tr.P_t / (double)tr.m.num_floats,
                   tr.ad.n, tr.ad.base_path, tr.ad.base_sha256);
    events_emit(tr.ev, "metric", json_pack("{s:s, s:s, s:I, s:I}", "name", "parameters", "peft",
                                           spec_peft_name(spec->peft.kind), "total",
                                           (json_int_t)tr.m.num_floats, "trainable", (json_int_t)tr.P_t));

    if (tr.vae) {
        events_log(tr.ev, "info", "latent DiT: VAE %s (sha256 %.12s), %dx%d-pixel images as %dx%dx%d "
                   "latents", spec->vae, tr.vae_sha, tr.pixel_size, tr.pixel_size, tr.m.cfg.image_size,
                   tr.m.cfg.image_size, tr.m.cfg.in_channels);
        int r = train_latents(&tr, err, errlen);
        if (r == 1) {
            rc = TRAIN_STOPPED;
            events_emit(tr.ev, "status", json_pack("{s:s, s:i}", "status", "stopped", "step", 0));
            goto out;
        }
        if (r) goto fail;
    }
    if (spec->method == DT_METHOD_DIFF_TUNING) {
        int r = train_bank(&tr, err, errlen);
        if (r == 1) {
            rc = TRAIN_STOPPED;
            events_emit(tr.ev, "status", json_pack("{s:s, s:i}", "status", "stopped", "step", 0));
            goto out;
        }
        if (r) goto fail;
    }
    int start;
    if (train_resume(&tr, &start, err, errlen)) goto fail;
    if (start == 0 && train_grid(&tr, 0, err, errlen)) goto fail;

    int saved = start, done = start;
    double t_train = dt_now();
    const int log_every = o->log_every > 0 ? o->log_every : 10;
    for (int step = start + 1; step <= spec->hp.steps; step++) {
        if (o->stop && *o->stop) break;
        train_step(&tr, step);
        done = step;
        int stop_now = (o->stop_after > 0 && step >= o->stop_after) || (o->stop && *o->stop);
        int report = step == start + 1 || step % log_every == 0 || step == spec->hp.steps;
        int save = step % spec->checkpoint.every == 0 || step == spec->hp.steps || stop_now;
        int grid = (spec->eval.sample_every > 0 && step % spec->eval.sample_every == 0) ||
                   step == spec->hp.steps;
        int fid = spec->eval.fid_every > 0 &&
                  (step % spec->eval.fid_every == 0 || step == spec->hp.steps);
        /* Nothing is reported, saved or evaluated before its losses have been checked. */
        if ((report || save || grid || fid || tr.ring_n == TRAIN_LOSS_RING) &&
            train_check(&tr, step, saved, err, errlen))
            goto fail;
        double el = dt_now() - t_train;
        if (report) train_report(&tr, step, el > 0 ? (step - start) * (double)tr.plan.B / el : 0.0);
        if (save) {
            if (train_save(&tr, step, err, errlen)) goto fail;
            saved = step;
        }
        if (grid && train_grid(&tr, step, err, errlen)) goto fail;
        if (fid && !stop_now && train_evaluate(&tr, step, err, errlen)) goto fail;
        if (stop_now) break;
    }
    if (done > saved) { /* signalled between a save and the next step */
        if (train_check(&tr, done, saved, err, errlen) || train_save(&tr, done, err, errlen)) goto fail;
        saved = done;
    }
    if (saved < spec->hp.steps) {
        /* Stopped early; the last finished step is checkpointed (saved == that step). */
        events_emit(tr.ev, "status", json_pack("{s:s, s:i}", "status", "stopped", "step", saved));
        rc = TRAIN_STOPPED;
        goto out;
    }
    if (start == spec->hp.steps) events_log(tr.ev, "info", "already complete at step %d", start);
    events_emit(tr.ev, "status", json_pack("{s:s, s:i, s:f}", "status", "succeeded", "step",
                                           spec->hp.steps, "seconds", dt_now() - t_start));
    rc = TRAIN_OK;
    goto out;
fail:
    events_error(tr.ev, rc == TRAIN_INVALID ? "invalid_input"
                        : tr.err_code             ? tr.err_code
                                                  : DT_ERR_TRAINING_FAILED, err);
    events_emit(tr.ev, "status", json_pack("{s:s}", "status", "failed"));
out:
    train_teardown(&tr);
    return rc;
}
