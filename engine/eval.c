/* eval.c — reference statistics (computed once per dataset and extractor, cached) and
 * evaluations: sample, extract features chunk by chunk, Fréchet distance. */
#include "eval.h"

#include <math.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "errmsg.h"
#include "fsutil.h"
#include "safetensors.h"

#define EVAL_REF_FORMAT "difftune-eval-reference-1"

/* ---- the evaluator --------------------------------------------------------------------------- */

int eval_init(dt_evaluator *e, const dit_model *m, const dt_schedule *sched, dt_extractor *x,
              const dt_eval_opts *o, char *err, size_t errlen) {
    memset(e, 0, sizeof *e);
    const dit_config *c = &m->cfg;
    if (o->samples < 2 || o->chunk < 1 || o->num_classes < 1 || o->steps < 1 || o->cfg < 1.0f) {
        dt_errorf(err, errlen, "evaluation needs >= 2 samples, a chunk >= 1, >= 1 class, >= 1 "
                  "sampler step and guidance >= 1");
        return -1;
    }
    if (o->num_classes > c->num_classes) {
        dt_errorf(err, errlen, "evaluation labels 0..%d are beyond the model's %d classes",
                  o->num_classes - 1, c->num_classes);
        return -1;
    }
    const dt_latent_decoder *d = o->decoder;
    if (d && (d->C != c->in_channels || d->h != c->image_size || d->w != c->image_size)) {
        dt_errorf(err, errlen, "the VAE decodes %dx%dx%d latents, the model makes %dx%dx%d", d->h,
                  d->w, d->C, c->image_size, c->image_size, c->in_channels);
        return -1;
    }
    const int C = d ? 3 : c->in_channels, S = d ? d->pixels : c->image_size;
    if (extractor_check_shape(x, C, S, S, err, errlen)) return -1;
    if (extractor_has_labels(x) && extractor_num_classes(x) != o->num_classes) {
        dt_errorf(err, errlen, "%s predicts %d classes but the evaluation samples %d (the "
                  "dataset's classes): use a classifier trained on this dataset",
                  extractor_label(x), extractor_num_classes(x), o->num_classes);
        return -1;
    }
    e->m = m;
    e->x = x;
    e->o = *o;
    e->C = C;
    e->S = S;
    if (e->o.chunk > o->samples) e->o.chunk = o->samples;
    const int B = e->o.chunk, dim = extractor_dim(x);
    const size_t img = (size_t)C * S * S;
    /* x0 is clipped in pixel space, as the sample grids; latents are sampled unclipped */
    dt_sampler_opts so = {.steps = o->steps, .ddim = o->ddim, .eta = 0.0, .cfg = o->cfg,
                          .clip_x0 = !d};
    e->h_images = malloc(sizeof(float) * B * img);
    if (d) e->h_latents = malloc(sizeof(float) * B * (size_t)d->C * d->h * d->w);
    e->h_features = malloc(sizeof(float) * (size_t)B * dim);
    e->h_labels = malloc(sizeof(int32_t) * B);
    e->h_pred = malloc(sizeof(int32_t) * B);
    if (!e->h_images || (d && !e->h_latents) || !e->h_features || !e->h_labels || !e->h_pred ||
        fid_accum_init(&e->acc, dim, B)) {
        dt_errorf(err, errlen, "out of memory for evaluation buffers (%d images of %zu floats, "
                  "%d features)", B, img, dim);
        eval_free(e);
        return -1;
    }
    if (sampler_init(&e->sampler, m, sched, &so, B, err, errlen)) {
        eval_free(e);
        return -1;
    }
    return 0;
}

void eval_free(dt_evaluator *e) {
    if (e->sampler.m) sampler_free(&e->sampler);
    free(e->h_images);
    free(e->h_latents);
    free(e->h_features);
    free(e->h_labels);
    free(e->h_pred);
    fid_accum_free(&e->acc);
    memset(e, 0, sizeof *e);
}

static int eval_stopped(const dt_evaluator *e) { return e->stop && *e->stop; }

static void eval_progress(const dt_evaluator *e, const char *stage, long done, long total) {
    if (e->progress) e->progress(e->progress_ctx, stage, done, total);
}

/* ---- reference statistics -------------------------------------------------------------------- */

void eval_dataset_sha256(const dt_dataset *ds, char out[65]) {
    char head[128];
    int n = snprintf(head, sizeof head, "difftune-dataset|n=%d|C=%d|H=%d|W=%d|K=%d|", ds->n, ds->C,
                     ds->H, ds->W, ds->num_classes);
    unsigned char md[32];
    unsigned int len = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    EVP_DigestUpdate(ctx, head, (size_t)n);
    EVP_DigestUpdate(ctx, ds->images, (size_t)ds->n * ds->C * ds->H * ds->W);
    EVP_DigestUpdate(ctx, ds->labels, sizeof(int32_t) * (size_t)ds->n);
    EVP_DigestFinal_ex(ctx, md, &len);
    EVP_MD_CTX_free(ctx);
    for (int i = 0; i < 32; i++) snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* The cache key of a dataset hash and extractor (see eval.h). */
static void eval_reference_key(const char *dataset_sha, const dt_extractor *x, char key[65]) {
    char text[4096];
    int n = snprintf(text, sizeof text, "%s|dataset=%s|extractor=%s|weights=%s|cap=%d",
                     EVAL_REF_FORMAT, dataset_sha, extractor_label(x), extractor_weights_sha256(x),
                     EVAL_REF_MAX_IMAGES);
    fs_sha256_hex(text, (size_t)(n < (int)sizeof text ? n : (int)sizeof text - 1), key);
}

/* Reads cached statistics; returns 0, or -1 when the file is absent or not what was expected
 * (the caller then recomputes and overwrites it). */
static int eval_reference_read(const char *path, const dt_extractor *x, dt_eval_reference *ref) {
    if (!fs_exists(path)) return -1;
    st_file f;
    char err[256];
    if (safetensors_open(&f, path, err, sizeof err)) return -1;
    const int dim = extractor_dim(x);
    const st_tensor *mu = safetensors_find(&f, "mu"), *sigma = safetensors_find(&f, "sigma");
    const char *format = safetensors_meta(&f, "format"), *images = safetensors_meta(&f, "images");
    long count = images ? strtol(images, NULL, 10) : 0;
    int ok = format && !strcmp(format, EVAL_REF_FORMAT) && count >= 2 && mu && sigma &&
             mu->dtype == ST_F64 && mu->ndim == 1 && mu->shape[0] == dim && sigma->dtype == ST_F64 &&
             sigma->ndim == 2 && sigma->shape[0] == dim && sigma->shape[1] == dim;
    if (ok) {
        ref->stats.dim = dim;
        ref->stats.count = count;
        ref->stats.mu = malloc(mu->nbytes);
        ref->stats.sigma = malloc(sigma->nbytes);
        ok = ref->stats.mu && ref->stats.sigma;
        if (ok) {
            memcpy(ref->stats.mu, f.data + mu->offset, mu->nbytes);
            memcpy(ref->stats.sigma, f.data + sigma->offset, sigma->nbytes);
            ref->images = count;
        } else {
            fid_stats_free(&ref->stats);
        }
    }
    safetensors_close(&f);
    return ok ? 0 : -1;
}

static int eval_reference_write(const char *path, const dt_extractor *x,
                                const dt_eval_reference *ref, char *err, size_t errlen) {
    const int dim = ref->stats.dim;
    char images[32], dims[16];
    snprintf(images, sizeof images, "%ld", ref->images);
    snprintf(dims, sizeof dims, "%d", dim);
    st_write_tensor t[2] = {
        {.name = "mu", .dtype = ST_F64, .ndim = 1, .shape = {dim}, .data = ref->stats.mu},
        {.name = "sigma", .dtype = ST_F64, .ndim = 2, .shape = {dim, dim}, .data = ref->stats.sigma},
    };
    const char *meta[] = {"format", EVAL_REF_FORMAT, "extractor", extractor_label(x),
                          "weights_sha256", extractor_weights_sha256(x), "dataset_sha256",
                          ref->dataset_sha256, "images", images, "dim", dims, NULL};
    return safetensors_write(path, t, 2, meta, err, errlen);
}

/* Features of the reference images into e->acc. Returns 0, 1 when stopped, or -1. */
static int eval_reference_compute(dt_evaluator *e, const dt_dataset *ds, long count, char *err,
                                  size_t errlen) {
    const int B = e->o.chunk, C = ds->C, H = ds->H, W = ds->W;
    const size_t img = (size_t)C * H * W;
    fid_accum_reset(&e->acc);
    eval_progress(e, "reference", 0, count);
    for (long done = 0; done < count;) {
        if (eval_stopped(e)) return 1;
        const int n = (int)(count - done < B ? count - done : B);
        for (int i = 0; i < n; i++) {
            long idx = (long)((done + i) * (double)ds->n / (double)count); /* evenly spaced */
            dataset_image_to_float(ds, (int)idx, 0, e->h_images + (size_t)i * img);
        }
        if (extractor_features(e->x, e->h_images, n, C, H, W, e->h_features, NULL, err, errlen))
            return -1;
        fid_accum_add(&e->acc, e->h_features, n);
        done += n;
        eval_progress(e, "reference", done, count);
    }
    return 0;
}

/* Every evaluation compares with the reference: its covariance's square root is computed once
 * here. Finishes ref (seconds since t0); returns 0, or -1 with ref released. */
static int eval_reference_root(dt_eval_reference *ref, double t0, char *err, size_t errlen) {
    if (fid_stats_sqrt(&ref->stats)) {
        dt_errorf(err, errlen, "the square root of the reference covariance failed (eigensolver "
                  "or memory)");
        eval_reference_free(ref);
        return -1;
    }
    ref->seconds = dt_now() - t0;
    return 0;
}

int eval_reference(dt_evaluator *e, const dt_dataset *ds, const char *cache_dir,
                   dt_eval_reference *ref, char *err, size_t errlen) {
    memset(ref, 0, sizeof *ref);
    if (ds->C != e->C || ds->H != e->S || ds->W != e->S || !ds->images) {
        dt_errorf(err, errlen, "the reference images are %dx%dx%d%s, the evaluated ones %dx%dx%d",
                  ds->H, ds->W, ds->C, ds->images ? "" : " (not loaded)", e->S, e->S, e->C);
        return -1;
    }
    if (ds->n < 2) {
        dt_errorf(err, errlen, "reference statistics need at least 2 images (the dataset has %d)",
                  ds->n);
        return -1;
    }
    double t0 = dt_now();
    char key[65], path[4200] = "";
    eval_dataset_sha256(ds, ref->dataset_sha256);
    eval_reference_key(ref->dataset_sha256, e->x, key);
    if (cache_dir) {
        snprintf(path, sizeof path, "%s/%s.safetensors", cache_dir, key);
        if (eval_reference_read(path, e->x, ref) == 0) {
            ref->reused = 1;
            return eval_reference_root(ref, t0, err, errlen);
        }
    }
    const long count = ds->n < EVAL_REF_MAX_IMAGES ? ds->n : EVAL_REF_MAX_IMAGES;
    int r = eval_reference_compute(e, ds, count, err, errlen);
    if (r) return r;
    if (fid_accum_stats(&e->acc, &ref->stats)) {
        dt_errorf(err, errlen, "out of memory for reference statistics");
        return -1;
    }
    ref->images = count;
    if (cache_dir && (fs_mkdirs(cache_dir, err, errlen) ||
                      eval_reference_write(path, e->x, ref, err, errlen))) {
        eval_reference_free(ref);
        return -1;
    }
    return eval_reference_root(ref, t0, err, errlen);
}

void eval_reference_free(dt_eval_reference *ref) {
    fid_stats_free(&ref->stats);
    memset(ref, 0, sizeof *ref);
}

/* ---- one evaluation -------------------------------------------------------------------------- */

int eval_run(dt_evaluator *e, const float *params, const dt_eval_reference *ref,
             dt_eval_result *res, char *err, size_t errlen) {
    return eval_run_hybrid(e, params, params, 0, 0, ref, res, err, errlen);
}

int eval_run_hybrid(dt_evaluator *e, const float *params_noise, const float *params_data,
                    int switch_t, int data_unconditional, const dt_eval_reference *ref,
                    dt_eval_result *res, char *err, size_t errlen) {
    memset(res, 0, sizeof *res);
    const int B = e->o.chunk, N = e->o.samples, C = e->C, S = e->S;
    if (ref->stats.dim != extractor_dim(e->x)) {
        dt_errorf(err, errlen, "the reference statistics have %d features, %s gives %d",
                  ref->stats.dim, extractor_label(e->x), extractor_dim(e->x));
        return -1;
    }
    double t0 = dt_now(), t_sampling = 0, t_features = 0;
    long correct = 0;
    fid_accum_reset(&e->acc);
    eval_progress(e, "sampling", 0, N);
    for (long done = 0, chunk = 0; done < N; chunk++) {
        if (eval_stopped(e)) return 1;
        const int n = (int)(N - done < B ? N - done : B);
        for (int i = 0; i < n; i++) e->h_labels[i] = (int32_t)((done + i) % e->o.num_classes);
        double ts = dt_now();
        /* n < B only in the last chunk; its noise is still that of (seed, chunk) */
        int r = sampler_run_hybrid(&e->sampler, params_noise, params_data, switch_t,
                                   data_unconditional, e->h_labels, n, e->o.seed,
                                   (uint64_t)chunk, e->h_latents ? e->h_latents : e->h_images,
                                   e->stop);
        if (r == 1) return 1;
        if (r == 0 && e->o.decoder) r = latent_decode(e->o.decoder, e->h_latents, n, e->h_images);
        if (r < 0) {
            dt_backend *be = e->m->be;
            dt_errorf(err, errlen, "backend failure while sampling for evaluation on %s: %s",
                      be->name, be->last_error(be));
            return EVAL_BACKEND_FAILED;
        }
        double tf = dt_now();
        t_sampling += tf - ts;
        int32_t *pred = extractor_has_labels(e->x) ? e->h_pred : NULL;
        if (extractor_features(e->x, e->h_images, n, C, S, S, e->h_features, pred, err, errlen))
            return -1;
        fid_accum_add(&e->acc, e->h_features, n);
        for (int i = 0; pred && i < n; i++) correct += pred[i] == e->h_labels[i];
        t_features += dt_now() - tf;
        done += n;
        eval_progress(e, "sampling", done, N);
    }
    double td = dt_now();
    dt_gauss_stats gen;
    if (fid_accum_stats(&e->acc, &gen)) {
        dt_errorf(err, errlen, "out of memory for the statistics of %d samples", N);
        return -1;
    }
    double fd = fid_frechet_distance(&gen, &ref->stats);
    fid_stats_free(&gen);
    if (fd < 0) {
        dt_errorf(err, errlen, "the Fréchet distance failed (eigensolver or memory)");
        return -1;
    }
    res->metric = extractor_metric(e->x);
    res->value = fd;
    res->accuracy = extractor_has_labels(e->x) ? (double)correct / N : NAN;
    res->samples = N;
    res->sampler = e->o.ddim ? "ddim" : "ddpm";
    res->steps = e->o.steps;
    res->cfg = e->o.cfg;
    res->extractor = extractor_label(e->x);
    memcpy(res->reference_sha256, ref->dataset_sha256, sizeof res->reference_sha256);
    res->reference_images = ref->images;
    res->seconds_sampling = t_sampling;
    res->seconds_features = t_features;
    res->seconds_distance = dt_now() - td;
    res->seconds_total = dt_now() - t0;
    return 0;
}
