/* forgetting.c — the forgetting curve's measurements (see forgetting.h). */
#include "forgetting.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "checkpoint.h"
#include "errmsg.h"
#include "extractor.h"
#include "rng.h"
#include "safetensors.h"

#define FORGETTING_BATCH 32
#define FORGETTING_STREAM_T (10ull << 20) /* + sample index: the timestep within its bucket */

typedef struct {
    dit_acts acts;
    float *x0, *eps, *xt, *out, *loss; /* backend: (MB, C, H, W) x3, (MB, C_out, H, W), (MB) */
    int32_t *t_dev, *y_dev;            /* backend: (MB) */
    float *h_x0, *h_loss;              /* host: (MB, C, H, W), (MB) */
    int32_t *h_t, *h_y;                /* host: (MB) */
} forgetting_bufs;

static void forgetting_bufs_free(forgetting_bufs *b, const dit_model *m) {
    dt_backend *be = m->be;
    void *dev[] = {b->x0, b->eps, b->xt, b->out, b->loss, b->t_dev, b->y_dev};
    for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++)
        if (dev[i]) be->free(be, dev[i]);
    if (b->acts.block) dit_acts_free(&b->acts, m);
    free(b->h_x0); free(b->h_loss); free(b->h_t); free(b->h_y);
}

static int forgetting_bufs_alloc(forgetting_bufs *b, const dit_model *m, int MB, char *err,
                                 size_t errlen) {
    dt_backend *be = m->be;
    const dit_config *c = &m->cfg;
    const size_t HW = (size_t)c->image_size * c->image_size, img = c->in_channels * HW,
                 oimg = c->out_channels * HW;
    memset(b, 0, sizeof *b);
    if (dit_acts_alloc(&b->acts, m, MB, 0, err, errlen)) return -1;
    b->x0 = be->alloc(be, MB * img * sizeof(float));
    b->eps = be->alloc(be, MB * img * sizeof(float));
    b->xt = be->alloc(be, MB * img * sizeof(float));
    b->out = be->alloc(be, MB * oimg * sizeof(float));
    b->loss = be->alloc(be, MB * sizeof(float));
    b->t_dev = be->alloc(be, MB * sizeof(int32_t));
    b->y_dev = be->alloc(be, MB * sizeof(int32_t));
    b->h_x0 = malloc(MB * img * sizeof(float));
    b->h_loss = malloc(MB * sizeof(float));
    b->h_t = malloc(MB * sizeof(int32_t));
    b->h_y = malloc(MB * sizeof(int32_t));
    if (!b->x0 || !b->eps || !b->xt || !b->out || !b->loss || !b->t_dev || !b->y_dev || !b->h_x0 ||
        !b->h_loss || !b->h_t || !b->h_y) {
        dt_errorf(err, errlen, "out of memory for the forgetting-curve buffers (batch %d)", MB);
        forgetting_bufs_free(b, m);
        return -1;
    }
    return 0;
}

int forgetting_loss_by_bucket(const dit_model *m, const float *params, const dt_diffusion_tables *tab,
                              const dt_dataset *ds, int buckets, int per_bucket, uint64_t seed,
                              double *loss_out, char *err, size_t errlen) {
    const dit_config *c = &m->cfg;
    if (buckets < 1 || buckets > FORGETTING_MAX_BUCKETS || buckets > tab->T || per_bucket < 1) {
        dt_errorf(err, errlen, "the loss curve needs 1..%d buckets (at most T) and at least one "
                  "image per bucket (got %d, %d)", FORGETTING_MAX_BUCKETS, buckets, per_bucket);
        return -1;
    }
    if (ds->n < 1 || ds->C != c->in_channels || ds->H != c->image_size || ds->W != c->image_size) {
        dt_errorf(err, errlen, "the held-out images (%d of %dx%dx%d) do not fit the model (%dx%dx%d)",
                  ds->n, ds->C, ds->H, ds->W, c->in_channels, c->image_size, c->image_size);
        return -1;
    }
    const int MB = per_bucket < FORGETTING_BATCH ? per_bucket : FORGETTING_BATCH;
    forgetting_bufs b;
    if (forgetting_bufs_alloc(&b, m, MB, err, errlen)) return -1;
    dt_backend *be = m->be;
    const int HW = c->image_size * c->image_size;
    const size_t img = (size_t)c->in_channels * HW;
    int rc = 0;
    for (int k = 0; k < buckets && rc == 0; k++) {
        /* bucket k covers timesteps [lo, hi) */
        const int lo = (int)((long)k * tab->T / buckets), hi = (int)((long)(k + 1) * tab->T / buckets);
        double sum = 0;
        for (int first = 0; first < per_bucket; first += MB) {
            const int n = per_bucket - first < MB ? per_bucket - first : MB;
            for (int i = 0; i < n; i++) {
                const uint64_t idx = (uint64_t)k * per_bucket + first + i;
                dataset_image_to_float(ds, (int)(idx % (uint64_t)ds->n), 0, b.h_x0 + i * img);
                b.h_t[i] = lo + (int32_t)dt_rng_below(seed, FORGETTING_STREAM_T, idx, (uint32_t)(hi - lo));
                b.h_y[i] = c->num_classes; /* null class: see forgetting.h */
            }
            be->upload(be, b.x0, b.h_x0, n * img * sizeof(float));
            be->upload(be, b.t_dev, b.h_t, n * sizeof(int32_t));
            be->upload(be, b.y_dev, b.h_y, n * sizeof(int32_t));
            be->randn(be, b.eps, n * img, seed, DT_STREAM_NOISE + (uint64_t)k * per_bucket + first);
            be->q_sample(be, b.xt, b.x0, b.eps, b.t_dev, tab, n, (int)img);
            dit_forward(m, params, &b.acts, b.xt, b.t_dev, b.y_dev, n, b.out);
            be->diffusion_loss(be, b.loss, NULL, b.out, b.x0, b.xt, b.eps, b.t_dev, NULL, tab, n,
                               c->in_channels, HW, c->learn_sigma);
            be->download(be, b.h_loss, b.loss, n * sizeof(float));
            if (be->sync(be)) {
                dt_errorf(err, errlen, "backend failure on %s: %s", be->name, be->last_error(be));
                rc = -1;
                break;
            }
            for (int i = 0; i < n; i++) sum += b.h_loss[i];
        }
        loss_out[k] = sum / per_bucket;
    }
    forgetting_bufs_free(&b, m);
    return rc;
}

/* ---- the whole analysis ------------------------------------------------------------------- */

void forgetting_opts_defaults(dt_forgetting_opts *o) {
    memset(o, 0, sizeof *o);
    o->buckets = 10;
    o->loss_images = 256;
    o->switch_points = 11;
    o->samples = 1000;
    o->steps = 50;
    o->ddim = 1;
    o->cfg = 1.5;
    o->extractor_kind = "inception";
    o->extractor_label = "inception";
}

typedef struct {
    const dt_forgetting_opts *o;
    dt_backend *be;
    dit_model m;
    dt_dataset ds;
    dt_schedule sched;
    dt_diffusion_tables tab;
    float *base, *tuned; /* backend: (num_floats) EMA weights of each model */
    int hybrid_point, hybrid_points; /* progress of the hybrid part */
} forgetting_ctx;

/* Reads one model file's EMA weights (the official names) into backend memory at dst. */
static int forgetting_load_weights(forgetting_ctx *f, const char *path, float *dst, float *host,
                                   char *err, size_t errlen) {
    st_file st = {0};
    dit_config cfg;
    char why[512];
    int rc = -1;
    if (safetensors_open(&st, path, why, sizeof why) ||
        checkpoint_read_config(&st, 0, 0, &cfg, why, sizeof why)) {
        dt_errorf(err, errlen, "%s: %s", path, why);
    } else if (memcmp(&cfg, &f->m.cfg, sizeof cfg)) {
        dt_errorf(err, errlen, "%s is not the base model's architecture (depth %d, hidden %d, "
                  "patch %d, %dx%dx%d, %d classes vs depth %d, hidden %d, patch %d, %dx%dx%d, %d "
                  "classes)", path, cfg.depth, cfg.hidden, cfg.patch, cfg.in_channels,
                  cfg.image_size, cfg.image_size, cfg.num_classes, f->m.cfg.depth, f->m.cfg.hidden,
                  f->m.cfg.patch, f->m.cfg.in_channels, f->m.cfg.image_size, f->m.cfg.image_size,
                  f->m.cfg.num_classes);
    } else if (checkpoint_read_weights(&st, &f->m, "", host, why, sizeof why)) {
        dt_errorf(err, errlen, "%s: %s", path, why);
    } else {
        f->be->upload(f->be, dst, host, f->m.num_floats * sizeof(float));
        rc = 0;
    }
    safetensors_close(&st);
    return rc;
}

/* Backend, model shape (from the base model), both weight sets, data, schedule. */
static int forgetting_setup(forgetting_ctx *f, char *err, size_t errlen) {
    const dt_forgetting_opts *o = f->o;
    char why[512];
    st_file st = {0};
    dit_config cfg;
    if (safetensors_open(&st, o->base_path, why, sizeof why) ||
        checkpoint_read_config(&st, 0, 0, &cfg, why, sizeof why)) {
        dt_errorf(err, errlen, "base model %s: %s", o->base_path, why);
        safetensors_close(&st);
        return FORGETTING_INVALID;
    }
    safetensors_close(&st);
    if (cfg.in_channels != 1 && cfg.in_channels != 3) { /* not before a VAE can decode samples */
        dt_errorf(err, errlen, "base model %s takes %d-channel latents: the forgetting curve "
                  "measures pixel-space DiTs only; latent DiTs (with a vae) are not supported yet",
                  o->base_path, cfg.in_channels);
        return FORGETTING_INVALID;
    }
    const char *device = o->device ? o->device : "auto";
    if (!(f->be = dt_backend_create(device, why, sizeof why))) {
        dt_errorf(err, errlen, "device %s: %s", device, why);
        return FORGETTING_INVALID;
    }
    dt_precision_parse(o->precision ? o->precision : "auto", f->be, &f->be->precision);
    if (dit_model_init(&f->m, &cfg, f->be, err, errlen)) return FORGETTING_FAILED;
    if (dataset_load(&f->ds, o->dataset_path, cfg.image_size, cfg.in_channels, why, sizeof why)) {
        dt_errorf(err, errlen, "dataset %s: %s", o->dataset_path, why);
        return FORGETTING_INVALID;
    }
    if (f->ds.num_classes > cfg.num_classes) {
        dt_errorf(err, errlen, "the dataset has %d classes, the models %d", f->ds.num_classes,
                  cfg.num_classes);
        return FORGETTING_INVALID;
    }
    const size_t bytes = f->m.num_floats * sizeof(float);
    float *host = malloc(bytes);
    f->base = f->be->alloc(f->be, bytes);
    f->tuned = f->be->alloc(f->be, bytes);
    if (!host || !f->base || !f->tuned || diffusion_schedule_init(&f->sched, DT_DIFFUSION_T) ||
        diffusion_tables_upload(&f->tab, &f->sched, f->be)) {
        free(host);
        dt_errorf(err, errlen, "out of memory for two %zu-parameter models on %s", f->m.num_floats,
                  f->be->name);
        return FORGETTING_FAILED;
    }
    int rc = forgetting_load_weights(f, o->base_path, f->base, host, err, errlen) ||
             forgetting_load_weights(f, o->finetuned_path, f->tuned, host, err, errlen);
    free(host);
    return rc ? FORGETTING_INVALID : FORGETTING_OK;
}

static void forgetting_teardown(forgetting_ctx *f) {
    if (f->be) {
        if (f->base) f->be->free(f->be, f->base);
        if (f->tuned) f->be->free(f->be, f->tuned);
        diffusion_tables_free(&f->tab, f->be);
        if (f->m.params) dit_model_free(&f->m);
        f->be->destroy(f->be);
    }
    diffusion_schedule_free(&f->sched);
    dataset_free(&f->ds);
}

/* Part 1: both models' loss by bucket, one metric event. */
static int forgetting_loss_part(forgetting_ctx *f, char *err, size_t errlen) {
    const dt_forgetting_opts *o = f->o;
    double base[FORGETTING_MAX_BUCKETS], tuned[FORGETTING_MAX_BUCKETS];
    events_emit(o->events, "progress", json_pack("{s:s, s:i, s:i}", "phase", "loss_curve", "step", 0,
                                                 "total_steps", 2));
    if (forgetting_loss_by_bucket(&f->m, f->base, &f->tab, &f->ds, o->buckets, o->loss_images,
                                  o->seed, base, err, errlen))
        return -1;
    if (o->stop && *o->stop) return 1;
    events_emit(o->events, "progress", json_pack("{s:s, s:i, s:i}", "phase", "loss_curve", "step", 1,
                                                 "total_steps", 2));
    if (forgetting_loss_by_bucket(&f->m, f->tuned, &f->tab, &f->ds, o->buckets, o->loss_images,
                                  o->seed, tuned, err, errlen))
        return -1;
    json_t *starts = json_array(), *jb = json_array(), *jt = json_array();
    for (int k = 0; k < o->buckets; k++) {
        json_array_append_new(starts, json_integer((json_int_t)k * f->tab.T / o->buckets));
        json_array_append_new(jb, json_real(base[k]));
        json_array_append_new(jt, json_real(tuned[k]));
    }
    events_emit(o->events, "metric", json_pack("{s:s, s:i, s:o, s:o, s:o, s:i}", "name", "forgetting_loss",
                                               "step", 0, "timesteps", starts, "base", jb,
                                               "finetuned", jt, "images_per_bucket", o->loss_images));
    return 0;
}

static void forgetting_hybrid_progress(void *ctx, const char *stage, long done, long total) {
    forgetting_ctx *f = ctx;
    events_emit(f->o->events, "progress",
                json_pack("{s:s, s:s, s:i, s:i, s:I, s:I}", "phase", "hybrid", "stage", stage,
                          "step", f->hybrid_point, "total_steps", f->hybrid_points,
                          "done", (json_int_t)done, "total", (json_int_t)total));
}

static void forgetting_hybrid_unavailable(const dt_forgetting_opts *o, const char *reason) {
    events_log(o->events, "warn", "the hybrid-sampling curve is unavailable: %s", reason);
    events_emit(o->events, "metric", json_pack("{s:s, s:i, s:n, s:b, s:s}", "name", "forgetting_hybrid",
                                               "step", 0, "value", "available", 0, "reason", reason));
}

/* Part 2: the Fréchet distance of hybrid samples for every switch point. A missing or unusable
 * extractor makes it unavailable (one event), not the analysis failed. */
static int forgetting_hybrid_part(forgetting_ctx *f, char *err, size_t errlen) {
    const dt_forgetting_opts *o = f->o;
    char why[768];
    if (o->switch_points == 0) return 0;
    if (!o->extractor_path || !o->extractor_path[0]) {
        forgetting_hybrid_unavailable(o, "no feature extractor: give --inception-weights FILE or "
                                         "--extractor classifier:FILE (README: Evaluation)");
        return 0;
    }
    dt_extractor *x = NULL;
    if (extractor_open(&x, o->extractor_kind, o->extractor_path, o->extractor_label, why, sizeof why) ||
        extractor_check_shape(x, f->m.cfg.in_channels, f->m.cfg.image_size, f->m.cfg.image_size,
                              why, sizeof why)) {
        extractor_free(x);
        forgetting_hybrid_unavailable(o, why);
        return 0;
    }
    if (extractor_use_device(x, f->be->name, why, sizeof why))
        events_log(o->events, "warn", "features on the CPU: %s", why);
    dt_eval_opts eo = {.samples = o->samples, .steps = o->steps, .ddim = o->ddim, .cfg = (float)o->cfg,
                       .num_classes = f->ds.num_classes, .chunk = o->samples < 32 ? o->samples : 32,
                       .seed = EVAL_SEED};
    dt_evaluator e;
    dt_eval_reference ref = {0};
    int rc = eval_init(&e, &f->m, &f->sched, x, &eo, err, errlen);
    if (rc) {
        extractor_free(x);
        return -1;
    }
    e.stop = o->stop;
    e.progress = forgetting_hybrid_progress;
    e.progress_ctx = f;
    f->hybrid_points = o->switch_points;
    rc = eval_reference(&e, &f->ds, o->eval_cache_dir, &ref, err, errlen);
    for (int p = 0; rc == 0 && p < o->switch_points; p++) {
        const int k = (int)((long)p * f->tab.T / (o->switch_points - 1));
        dt_eval_result res;
        f->hybrid_point = p;
        rc = eval_run_hybrid(&e, f->tuned, f->base, k, 1, &ref, &res, err, errlen);
        if (rc) break;
        events_emit(o->events, "metric",
                    json_pack("{s:s, s:i, s:f, s:b, s:s, s:i, s:s, s:i, s:f, s:s, s:{s:s, s:I}}",
                              "name", "forgetting_hybrid", "step", k, "value", res.value,
                              "available", 1, "metric", res.metric, "samples", res.samples,
                              "sampler", res.sampler, "steps", res.steps, "cfg", res.cfg,
                              "extractor", res.extractor, "reference", "dataset_sha256",
                              res.reference_sha256, "images", (json_int_t)res.reference_images));
    }
    eval_reference_free(&ref);
    eval_free(&e);
    extractor_free(x);
    return rc == 1 ? 1 : rc ? -1 : 0;
}

int forgetting_run(const dt_forgetting_opts *o, char *err, size_t errlen) {
    forgetting_ctx f;
    memset(&f, 0, sizeof f);
    f.o = o;
    events_emit(o->events, "status", json_pack("{s:s}", "status", "running"));
    events_emit(o->events, "progress", json_pack("{s:s, s:i, s:i}", "phase", "loading", "step", 0,
                                                 "total_steps", 0));
    int rc = FORGETTING_INVALID;
    if (o->switch_points == 1 || o->switch_points < 0) {
        dt_errorf(err, errlen, "switch points must be 0 (no hybrid curve) or at least 2 (got %d)",
                  o->switch_points);
    } else if ((rc = forgetting_setup(&f, err, errlen)) == FORGETTING_OK) {
        int r = forgetting_loss_part(&f, err, errlen);
        if (r == 0) r = forgetting_hybrid_part(&f, err, errlen);
        rc = r == 1 ? FORGETTING_STOPPED : r ? FORGETTING_FAILED : FORGETTING_OK;
    }
    forgetting_teardown(&f);
    if (rc == FORGETTING_OK)
        events_emit(o->events, "status", json_pack("{s:s}", "status", "succeeded"));
    else if (rc == FORGETTING_STOPPED)
        events_emit(o->events, "status", json_pack("{s:s}", "status", "stopped"));
    else {
        events_error(o->events, rc == FORGETTING_INVALID ? "invalid_input" : "analysis_failed", err);
        events_emit(o->events, "status", json_pack("{s:s}", "status", "failed"));
    }
    return rc;
}
