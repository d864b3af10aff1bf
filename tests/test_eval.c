/* test_eval.c — Fréchet distance and evaluation: closed forms (diagonal covariances, a shifted
 * set), singular covariances, the chunked statistics against a two-pass computation, FID of a
 * set against itself (~0) and growing monotonically with added noise through the FID Inception
 * (random weights), reference statistics cached once per dataset and extractor (a second call
 * reads the file, a changed dataset gets a new key, a torn file is recomputed), and whole
 * evaluations of a tiny DiT: recorded fields, progress, determinism, the stop flag, and the
 * classifier's accuracy. */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "check.h"
#include "classifier.h"
#include "dataset.h"
#include "diffusion.h"
#include "dit.h"
#include "eval.h"
#include "extractor.h"
#include "fid.h"
#include "inception.h"
#include "philox.h"
#include "synth.h"

static double normal(uint64_t seed, uint64_t stream, uint64_t i) {
    return dt_philox_normal(seed, stream, i);
}

/* Stats with given mean and covariance (copied). */
static void stats_make(dt_gauss_stats *s, int d, const double *mu, const double *sigma) {
    memset(s, 0, sizeof *s);
    s->dim = d;
    s->count = 100;
    s->mu = malloc(sizeof(double) * d);
    s->sigma = malloc(sizeof(double) * d * d);
    memcpy(s->mu, mu, sizeof(double) * d);
    memcpy(s->sigma, sigma, sizeof(double) * d * d);
}

/* ---- the distance ---------------------------------------------------------------------------- */

static void test_closed_forms(void) {
    enum { D = 6 };
    double mu1[D], mu2[D], s1[D * D] = {0}, s2[D * D] = {0}, want = 0;
    for (int k = 0; k < D; k++) {
        mu1[k] = 0.3 * k;
        mu2[k] = 1.0 - 0.1 * k;
        s1[k * D + k] = 0.5 + k;
        s2[k * D + k] = 2.0 / (1 + k);
        want += (mu1[k] - mu2[k]) * (mu1[k] - mu2[k]) +
                (sqrt(s1[k * D + k]) - sqrt(s2[k * D + k])) * (sqrt(s1[k * D + k]) - sqrt(s2[k * D + k]));
    }
    dt_gauss_stats a, b;
    stats_make(&a, D, mu1, s1);
    stats_make(&b, D, mu2, s2);
    CHECK_CLOSE(fid_frechet_distance(&a, &b), want, 1e-12, "diagonal covariances");
    CHECK_CLOSE(fid_frechet_distance(&b, &a), want, 1e-12, "symmetric in its arguments");
    CHECK(fid_stats_sqrt(&b) == 0 && b.sigma_sqrt, "square root cached");
    CHECK_CLOSE(fid_frechet_distance(&a, &b), want, 1e-12, "with b's cached root");
    CHECK_CLOSE(fid_frechet_distance(&b, &a), want, 1e-12, "with the cached root first");
    CHECK(fid_frechet_distance(&a, &a) < 1e-12, "a set against itself: %g", fid_frechet_distance(&a, &a));

    /* a full covariance S and the same set shifted by delta: the distance is |delta|^2 */
    double s3[D * D], mu3[D], shift = 0;
    for (int r = 0; r < D; r++)
        for (int c = 0; c < D; c++) {
            double acc = 0;
            for (int k = 0; k < D; k++) acc += normal(1, r, k) * normal(1, c, k);
            s3[r * D + c] = acc + (r == c ? 0.1 : 0);
        }
    for (int k = 0; k < D; k++) {
        mu3[k] = mu1[k] + 0.25 * (k - 2);
        shift += 0.0625 * (k - 2) * (k - 2);
    }
    dt_gauss_stats c1, c2;
    stats_make(&c1, D, mu1, s3);
    stats_make(&c2, D, mu3, s3);
    CHECK_CLOSE(fid_frechet_distance(&c1, &c2), shift, 1e-9, "a shifted set: |delta|^2");

    dt_gauss_stats other;
    stats_make(&other, 3, mu1, s1);
    CHECK(fid_frechet_distance(&a, &other) < 0, "different dims are an error");
    fid_stats_free(&a); fid_stats_free(&b); fid_stats_free(&c1); fid_stats_free(&c2);
    fid_stats_free(&other);
}

/* Fewer samples than features: rank-deficient covariances, as FID of a few images has. */
static void test_singular(void) {
    enum { N = 10, D = 64 };
    float *x = malloc(sizeof(float) * N * D), *y = malloc(sizeof(float) * N * D);
    double delta2 = 0;
    for (int i = 0; i < N * D; i++) x[i] = (float)normal(2, 0, i);
    for (int k = 0; k < D; k++) delta2 += 0.01 * (k % 3) * (k % 3);
    for (int i = 0; i < N; i++)
        for (int k = 0; k < D; k++) y[i * D + k] = x[i * D + k] + 0.1f * (k % 3);
    dt_gauss_stats a, b;
    CHECK(fid_stats_compute(&a, x, N, D) == 0 && fid_stats_compute(&b, y, N, D) == 0, "stats");
    double tr = 0;
    for (int k = 0; k < D; k++) tr += a.sigma[k * D + k];
    double self = fid_frechet_distance(&a, &a);
    CHECK(self >= 0 && self < 1e-9 * tr, "singular: a set against itself %g (trace %g)", self, tr);
    /* the shift is exact in float only up to rounding of x + 0.1 */
    CHECK_CLOSE(fid_frechet_distance(&a, &b), delta2, 1e-4, "singular: shifted set");
    fid_stats_free(&a); fid_stats_free(&b);
    free(x); free(y);
}

/* The chunked accumulator against a two-pass computation in long double, with a mean far from
 * zero (where a naive one-pass sum of squares would lose the covariance). */
static void test_accumulator(void) {
    enum { N = 523, D = 7 };
    float *x = malloc(sizeof(float) * N * D);
    for (int i = 0; i < N; i++)
        for (int k = 0; k < D; k++) x[i * D + k] = (float)(1000.0 + 10 * k + normal(3, k, i) * (1 + 0.1 * k));
    long double mu[D] = {0}, cov[D][D] = {{0}};
    for (int i = 0; i < N; i++)
        for (int k = 0; k < D; k++) mu[k] += x[i * D + k];
    for (int k = 0; k < D; k++) mu[k] /= N;
    for (int i = 0; i < N; i++)
        for (int r = 0; r < D; r++)
            for (int c = 0; c < D; c++) cov[r][c] += (x[i * D + r] - mu[r]) * (x[i * D + c] - mu[c]);
    fid_accum acc;
    CHECK(fid_accum_init(&acc, D, 16) == 0, "init");
    for (int done = 0; done < N;) { /* uneven feeds, some larger than the chunk */
        int n = done % 3 ? 5 : 37;
        if (n > N - done) n = N - done;
        fid_accum_add(&acc, x + (size_t)done * D, n);
        done += n;
    }
    dt_gauss_stats s, one;
    CHECK(fid_accum_stats(&acc, &s) == 0 && s.count == N, "stats of %ld rows", s.count);
    CHECK(fid_stats_compute(&one, x, N, D) == 0, "one shot");
    double worst = 0, worst_one = 0;
    for (int r = 0; r < D; r++) {
        worst = fmax(worst, fabs((double)(s.mu[r] - mu[r])) / 1000);
        for (int c = 0; c < D; c++) {
            double want = (double)(cov[r][c] / (N - 1));
            worst = fmax(worst, fabs(s.sigma[r * D + c] - want) / fmax(1, fabs(want)));
            worst_one = fmax(worst_one, fabs(one.sigma[r * D + c] - want) / fmax(1, fabs(want)));
        }
    }
    CHECK(worst < 1e-12, "chunked statistics vs two-pass: %g", worst);
    CHECK(worst_one < 1e-12, "fid_stats_compute vs two-pass: %g", worst_one);
    fid_stats_free(&s);
    fid_accum_reset(&acc);
    CHECK(acc.count == 0 && fid_accum_stats(&acc, &s) != 0, "reset forgets every row");
    fid_accum_free(&acc);
    fid_stats_free(&one);
    free(x);
}

/* ---- a small dataset ----------------------------------------------------------------------- */

/* n images of synthetic shapes (classes cycling over K) at size x size, CHW uint8. */
static void make_dataset(dt_dataset *ds, int n, int K, int size, uint64_t seed) {
    memset(ds, 0, sizeof *ds);
    ds->n = n;
    ds->C = 3;
    ds->H = ds->W = size;
    ds->num_classes = K;
    ds->images = malloc((size_t)n * 3 * size * size);
    ds->labels = malloc(sizeof(int32_t) * n);
    uint8_t *rgb = malloc((size_t)size * size * 3);
    for (int i = 0; i < n; i++) {
        ds->labels[i] = i % K;
        synth_render("solid", i % K, size, seed, (uint64_t)i, rgb);
        for (int c = 0; c < 3; c++)
            for (int p = 0; p < size * size; p++)
                ds->images[((size_t)i * 3 + c) * size * size + p] = rgb[p * 3 + c];
    }
    free(rgb);
}

static void free_dataset(dt_dataset *ds) {
    free(ds->images);
    free(ds->labels);
    memset(ds, 0, sizeof *ds);
}

/* ---- FID through the Inception -------------------------------------------------------------- */

/* Features of the dataset's images with Gaussian noise of sigma added (clamped to [-1, 1]). */
static int noisy_features(dt_extractor *x, const dt_dataset *ds, double sigma, float *feat) {
    const size_t img = (size_t)ds->C * ds->H * ds->W;
    float *im = malloc(sizeof(float) * img * ds->n);
    for (int i = 0; i < ds->n; i++) {
        dataset_image_to_float(ds, i, 0, im + i * img);
        for (size_t p = 0; p < img; p++) {
            float v = im[i * img + p] + (float)(sigma * normal(9, (uint64_t)i, p));
            im[i * img + p] = v < -1 ? -1 : v > 1 ? 1 : v;
        }
    }
    char err[512];
    int rc = extractor_features(x, im, ds->n, ds->C, ds->H, ds->W, feat, NULL, err, sizeof err);
    if (rc) fprintf(stderr, "features: %s\n", err);
    free(im);
    return rc;
}

/* FID of a set against itself is ~0 and grows monotonically with the noise added to it. */
static void check_noise(dt_extractor *x, const dt_dataset *ds, const double *sigmas, int n_sigmas) {
    const int dim = extractor_dim(x);
    float *clean = malloc(sizeof(float) * dim * ds->n), *noisy = malloc(sizeof(float) * dim * ds->n);
    CHECK(noisy_features(x, ds, 0.0, clean) == 0, "%s: clean features", extractor_label(x));
    dt_gauss_stats ref;
    fid_stats_compute(&ref, clean, ds->n, dim);
    fid_stats_sqrt(&ref);
    double tr = 0;
    for (int k = 0; k < dim; k++) tr += ref.sigma[(size_t)k * dim + k];
    double self = fid_frechet_distance(&ref, &ref);
    CHECK(self >= 0 && self < 1e-6 * tr, "%s: a set against itself %g (trace %g)",
          extractor_label(x), self, tr);
    double prev = self;
    for (int i = 0; i < n_sigmas; i++) {
        dt_gauss_stats s;
        noisy_features(x, ds, sigmas[i], noisy);
        fid_stats_compute(&s, noisy, ds->n, dim);
        double fd = fid_frechet_distance(&s, &ref);
        printf("%s: noise %.2f: %s %.4g\n", extractor_label(x), sigmas[i], extractor_metric(x), fd);
        CHECK(fd > prev, "%s grows with noise: %g at sigma %g after %g", extractor_metric(x), fd,
              sigmas[i], prev);
        prev = fd;
        fid_stats_free(&s);
    }
    fid_stats_free(&ref);
    free(clean);
    free(noisy);
}

static void test_inception(const char *weights) {
    char err[512];
    dt_extractor *x = NULL;
    CHECK(extractor_open(&x, "inception", weights, "inception", err, sizeof err) == 0, "open: %s", err);
    if (!x) return;
    CHECK(extractor_dim(x) == 2048 && !strcmp(extractor_metric(x), "fid") &&
          !strcmp(extractor_label(x), "inception") && !extractor_has_labels(x) &&
          strlen(extractor_weights_sha256(x)) == 64, "the Inception extractor describes itself");
    CHECK(extractor_check_shape(x, 3, 16, 16, err, sizeof err) == 0 &&
          extractor_check_shape(x, 1, 7, 9, err, sizeof err) == 0, "takes 1 or 3 channels");
    CHECK(extractor_check_shape(x, 4, 16, 16, err, sizeof err) != 0 && strstr(err, "1 or 3"),
          "refuses 4 channels: %s", err);
    /* Random weights make no semantic features: past sigma ~0.2 their response to noise is not
     * monotone any more (measured: 106 at 0.2, 59 at 0.3, 191 at 1.0), so the Inception is
     * checked in the small-noise range and the trained classifier over the whole range. */
    static const double sigmas[] = {0.02, 0.05, 0.1};
    dt_dataset ds;
    make_dataset(&ds, 16, 4, 16, 1);
    check_noise(x, &ds, sigmas, 3);
    free_dataset(&ds);
    extractor_free(x);

    CHECK(extractor_open(&x, "inception", NULL, "inception", err, sizeof err) != 0 && !x &&
          strstr(err, "no Inception weights"), "no weights path: %s", err);
    CHECK(extractor_open(&x, "inception", "/nonexistent/w.safetensors", "inception", err, sizeof err) != 0,
          "missing weights file");
    CHECK(extractor_open(&x, "clip", weights, "clip", err, sizeof err) != 0 && strstr(err, "clip"),
          "unknown kind: %s", err);
}

/* ---- evaluations of a tiny DiT --------------------------------------------------------------- */

typedef struct {
    int calls, stop_at;
    long last_done, last_total;
    char stage[16];
    int monotone;
    volatile int *stop;
} progress_log;

static void on_progress(void *ctx, const char *stage, long done, long total) {
    progress_log *p = ctx;
    if (!strcmp(p->stage, stage) && done < p->last_done) p->monotone = 0;
    snprintf(p->stage, sizeof p->stage, "%s", stage);
    p->calls++;
    p->last_done = done;
    p->last_total = total;
    if (p->stop_at && p->calls >= p->stop_at && p->stop) *p->stop = 1;
}

static int count_files(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strstr(e->d_name, ".safetensors") && !strstr(e->d_name, ".tmp")) n++;
    if (d) closedir(d);
    return n;
}

typedef struct {
    dt_backend *be;
    dit_model m;
    dt_schedule sched;
    float *params;
} tiny_dit;

static int tiny_dit_init(tiny_dit *t, int K) {
    char err[512];
    dit_config cfg;
    memset(t, 0, sizeof *t);
    if (!(t->be = dt_backend_create("cpu", err, sizeof err)) ||
        dit_config_init(&cfg, 1, 16, 2, 2, 8, 3, K, 1, err, sizeof err) ||
        dit_model_init(&t->m, &cfg, t->be, err, sizeof err) ||
        diffusion_schedule_init(&t->sched, DT_DIFFUSION_T)) {
        fprintf(stderr, "tiny DiT: %s\n", err);
        return -1;
    }
    float *host = malloc(sizeof(float) * t->m.num_floats);
    dit_init_host(&t->m, host, 3);
    /* adaLN-Zero starts at the identity; perturb so samples depend on labels and weights */
    for (size_t i = 0; i < t->m.num_floats; i++) host[i] += 0.02f * (float)normal(4, 0, i);
    t->params = t->be->alloc(t->be, sizeof(float) * t->m.num_floats);
    t->be->upload(t->be, t->params, host, sizeof(float) * t->m.num_floats);
    free(host);
    return 0;
}

static void tiny_dit_free(tiny_dit *t) {
    if (t->params) t->be->free(t->be, t->params);
    if (t->m.params) dit_model_free(&t->m);
    diffusion_schedule_free(&t->sched);
    if (t->be) t->be->destroy(t->be);
}

static void test_reference_cache(const char *dir, dt_extractor *x, tiny_dit *t) {
    char err[512];
    const char *cache = check_path(dir, "cache");
    dt_eval_opts o = {.samples = 6, .steps = 2, .ddim = 1, .cfg = 1.5f, .num_classes = 4,
                      .chunk = 4, .seed = EVAL_SEED};
    dt_evaluator e;
    CHECK(eval_init(&e, &t->m, &t->sched, x, &o, err, sizeof err) == 0, "eval_init: %s", err);
    progress_log p = {.monotone = 1};
    e.progress = on_progress;
    e.progress_ctx = &p;
    dt_dataset ds;
    make_dataset(&ds, 10, 4, 8, 2);
    dt_eval_reference r1, r2, r3;
    CHECK(eval_reference(&e, &ds, cache, &r1, err, sizeof err) == 0, "reference: %s", err);
    CHECK(!r1.reused && r1.images == 10 && r1.stats.count == 10 && r1.stats.sigma_sqrt,
          "computed over every image (reused %d, %ld images)", r1.reused, r1.images);
    CHECK(p.calls >= 3 && p.last_done == 10 && p.last_total == 10 && !strcmp(p.stage, "reference") &&
          p.monotone, "reference progress: %d calls, %ld/%ld", p.calls, p.last_done, p.last_total);
    CHECK(count_files(cache) == 1, "one cache file");
    char sha[65];
    eval_dataset_sha256(&ds, sha);
    CHECK(!strcmp(sha, r1.dataset_sha256), "the reference names the dataset hash");

    p.calls = 0;
    CHECK(eval_reference(&e, &ds, cache, &r2, err, sizeof err) == 0, "again: %s", err);
    CHECK(r2.reused && p.calls == 0, "the second call reads the cache (reused %d, %d progress calls)",
          r2.reused, p.calls);
    CHECK(r2.images == 10 && !memcmp(r1.stats.mu, r2.stats.mu, sizeof(double) * r1.stats.dim) &&
          !memcmp(r1.stats.sigma, r2.stats.sigma, sizeof(double) * r1.stats.dim * r1.stats.dim),
          "cached statistics are bit-identical");
    eval_reference_free(&r2);

    /* one pixel changes: another dataset, another key */
    ds.images[5] ^= 0x40;
    CHECK(eval_reference(&e, &ds, cache, &r3, err, sizeof err) == 0, "changed: %s", err);
    CHECK(!r3.reused && strcmp(r3.dataset_sha256, r1.dataset_sha256) != 0 && count_files(cache) == 2,
          "a changed dataset is computed anew under its own key (%d files)", count_files(cache));
    eval_reference_free(&r3);
    ds.labels[0] = 1; /* the labels are content too */
    char sha2[65];
    eval_dataset_sha256(&ds, sha2);
    ds.images[5] ^= 0x40;
    char sha3[65];
    eval_dataset_sha256(&ds, sha3);
    CHECK(strcmp(sha2, sha3) && strcmp(sha3, sha), "labels change the hash");
    ds.labels[0] = 0;

    /* a torn cache file is recomputed, not trusted */
    char cmd[1400];
    snprintf(cmd, sizeof cmd,
             "for f in '%s'/*.safetensors; do head -c 100 \"$f\" > \"$f.x\" && mv \"$f.x\" \"$f\"; done",
             cache);
    CHECK(system(cmd) == 0, "truncate cache files");
    p.calls = 0;
    CHECK(eval_reference(&e, &ds, cache, &r2, err, sizeof err) == 0 && !r2.reused && p.calls > 0,
          "a truncated cache file is recomputed: %s", err);
    CHECK(!memcmp(r1.stats.mu, r2.stats.mu, sizeof(double) * r1.stats.dim), "to the same values");
    eval_reference_free(&r2);
    CHECK(eval_reference(&e, &ds, NULL, &r2, err, sizeof err) == 0 && !r2.reused, "no cache dir");
    eval_reference_free(&r2);

    dt_dataset small;
    make_dataset(&small, 10, 4, 16, 2);
    CHECK(eval_reference(&e, &small, cache, &r2, err, sizeof err) != 0 && strstr(err, "16x16x3"),
          "a dataset at another size is refused: %s", err);
    free_dataset(&small);
    eval_reference_free(&r1);
    eval_free(&e);
    free_dataset(&ds);
}

static void test_eval_run(const char *dir, dt_extractor *x, tiny_dit *t, int expect_accuracy) {
    char err[512];
    volatile int stop = 0;
    dt_eval_opts o = {.samples = 7, .steps = 3, .ddim = 1, .cfg = 1.5f, .num_classes = 4,
                      .chunk = 3, .seed = EVAL_SEED};
    dt_evaluator e;
    CHECK(eval_init(&e, &t->m, &t->sched, x, &o, err, sizeof err) == 0, "eval_init: %s", err);
    progress_log p = {.monotone = 1, .stop = &stop};
    e.progress = on_progress;
    e.progress_ctx = &p;
    e.stop = &stop;
    dt_dataset ds;
    make_dataset(&ds, 8, 4, 8, 5);
    dt_eval_reference ref;
    CHECK(eval_reference(&e, &ds, check_path(dir, "cache"), &ref, err, sizeof err) == 0, "ref: %s", err);
    dt_eval_result r, again;
    p.calls = 0;
    CHECK(eval_run(&e, t->params, &ref, &r, err, sizeof err) == 0, "eval_run: %s", err);
    CHECK(isfinite(r.value) && r.value > 0, "a finite positive distance: %g", r.value);
    CHECK(!strcmp(r.metric, extractor_metric(x)) && r.samples == 7 && !strcmp(r.sampler, "ddim") &&
          r.steps == 3 && r.cfg == 1.5 && !strcmp(r.extractor, extractor_label(x)) &&
          !strcmp(r.reference_sha256, ref.dataset_sha256) && r.reference_images == 8,
          "the result records what it depends on");
    CHECK(r.seconds_sampling > 0 && r.seconds_features > 0 && r.seconds_total >=
          r.seconds_sampling + r.seconds_features, "seconds split into sampling and features");
    CHECK(p.calls == 4 && p.last_done == 7 && p.last_total == 7 && !strcmp(p.stage, "sampling") &&
          p.monotone, "progress per chunk: %d calls, %ld/%ld", p.calls, p.last_done, p.last_total);
    if (expect_accuracy)
        CHECK(r.accuracy >= 0 && r.accuracy <= 1, "classifier accuracy %g", r.accuracy);
    else
        CHECK(isnan(r.accuracy), "no accuracy without labels");
    CHECK(eval_run(&e, t->params, &ref, &again, err, sizeof err) == 0 && again.value == r.value,
          "fixed labels and noise: the same weights give the same value (%.17g vs %.17g)",
          again.value, r.value);

    p.calls = 0;
    p.stop_at = 2; /* after the first chunk */
    CHECK(eval_run(&e, t->params, &ref, &again, err, sizeof err) == 1, "the stop flag interrupts");
    CHECK(p.calls == 2, "stopped after one chunk (%d progress calls)", p.calls);
    stop = 0;
    p.stop_at = 0;
    eval_reference_free(&ref);
    eval_free(&e);
    free_dataset(&ds);

    dt_eval_opts bad = o;
    bad.num_classes = 9;
    CHECK(eval_init(&e, &t->m, &t->sched, x, &bad, err, sizeof err) != 0, "more labels than the model: %s", err);
}

int main(void) {
    const char *dir = check_tmpdir("eval");
    test_closed_forms();
    test_singular();
    test_accumulator();

    char err[512];
    const char *weights = check_path(dir, "inception_random.safetensors");
    CHECK(inception_write_random_weights(weights, 7, err, sizeof err) == 0, "random weights: %s", err);
    test_inception(weights);

    /* a classifier trained on the domain: fd_classifier and the accuracy on requested labels */
    dt_dataset ds;
    make_dataset(&ds, 128, 4, 8, 6);
    dt_classifier_opts co;
    classifier_opts_defaults(&co);
    co.epochs = 4;
    const char *cpath = check_path(dir, "classifier.safetensors");
    CHECK(classifier_train(&ds, &co, cpath, NULL, NULL, err, sizeof err) == 0, "classifier: %s", err);
    free_dataset(&ds);
    dt_extractor *clf = NULL;
    CHECK(extractor_open(&clf, "classifier", cpath, "classifier:test", err, sizeof err) == 0,
          "open classifier: %s", err);
    if (clf) {
        CHECK(!strcmp(extractor_metric(clf), "fd_classifier") && extractor_has_labels(clf) &&
              extractor_num_classes(clf) == 4 && extractor_dim(clf) == CLASSIFIER_FEATURES &&
              !strcmp(extractor_label(clf), "classifier:test"),
              "the classifier extractor describes itself");
        CHECK(extractor_check_shape(clf, 3, 16, 16, err, sizeof err) != 0 && strstr(err, "8x8x3"),
              "other sizes refused: %s", err);
        static const double sigmas[] = {0.05, 0.1, 0.2, 0.4, 0.8};
        make_dataset(&ds, 64, 4, 8, 8);
        check_noise(clf, &ds, sigmas, 5);
        free_dataset(&ds);
    }

    tiny_dit t;
    if (clf && tiny_dit_init(&t, 4) == 0) {
        test_reference_cache(dir, clf, &t);
        test_eval_run(dir, clf, &t, 1);
        dt_extractor *x = NULL;
        if (extractor_open(&x, "inception", weights, "inception", err, sizeof err) == 0)
            test_eval_run(dir, x, &t, 0);
        extractor_free(x);
        tiny_dit t5;
        if (tiny_dit_init(&t5, 5) == 0) {
            dt_evaluator e;
            dt_eval_opts o = {.samples = 4, .steps = 2, .ddim = 1, .cfg = 1, .num_classes = 5,
                              .chunk = 4, .seed = EVAL_SEED};
            CHECK(eval_init(&e, &t5.m, &t5.sched, clf, &o, err, sizeof err) != 0 &&
                  strstr(err, "4 classes"), "a classifier of other classes: %s", err);
        }
        tiny_dit_free(&t5);
    }
    tiny_dit_free(&t);
    extractor_free(clf);
    return check_done("test_eval");
}
