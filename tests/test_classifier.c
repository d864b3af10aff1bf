/* test_classifier.c — the fd_classifier CNN: its gradient against finite differences, learning
 * a synthetic domain to a high held-out accuracy, determinism, the file round trip, and the
 * refusals of classifier_load and classifier_features. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <omp.h>

#include "backend.h"
#include "check.h"
#include "checkpoint.h"
#include "classifier.h"
#include "classifier_net.h"
#include "philox.h"
#include "safetensors.h"
#include "synth.h"

/* Mean cross-entropy of the current parameters on the images in w->x. */
static double loss_now(const clf_net *net, clf_work *w, int n, const int32_t *labels) {
    clf_forward(net, w, n);
    return clf_loss(net, w, n, labels, NULL);
}

/* A fingerprint of which ReLU units are on after the last forward pass: a finite difference
 * whose two sides differ here crossed a kink, where the derivative does not exist. */
static uint64_t relu_pattern(const clf_net *net, const clf_work *w, int n) {
    uint64_t h = 1469598103934665603ull;
    for (int l = 0; l < CLF_STAGES; l++) {
        size_t m = (size_t)n * net->oc[l] * net->hw[l] * net->hw[l];
        for (size_t e = 0; e < m; e++) h = (h ^ (uint64_t)(w->act[l][e] > 0.0f)) * 1099511628211ull;
    }
    for (size_t e = 0; e < (size_t)n * CLASSIFIER_FEATURES; e++)
        h = (h ^ (uint64_t)(w->hid[e] > 0.0f)) * 1099511628211ull;
    return h;
}

/* Every layer's gradient against central differences, element by element on the largest and
 * on random entries, and along a random direction over the whole tensor. */
static void test_gradient(void) {
    clf_net net;
    clf_work w;
    const int S = 8, C = 3, K = 4, n = 3;
    if (clf_net_init(&net, S, C, K) != 0 || clf_work_init(&w, &net, n, 1) != 0) {
        CHECK(0, "out of memory");
        return;
    }
    clf_net_init_weights(&net, 7);
    /* Non-zero biases, so their gradients and every ReLU pattern are exercised. */
    for (int i = 0; i < CLF_NET_TENSORS; i++) {
        const char *name;
        int64_t shape[4];
        float *data;
        if (clf_net_tensor(&net, i, &name, shape, &data) == 1)
            for (int64_t e = 0; e < shape[0]; e++)
                data[e] = 0.1f * dt_philox_normal(11, (uint64_t)i, (uint64_t)e);
    }
    int32_t labels[3] = {0, 3, 1};
    for (size_t e = 0; e < (size_t)n * C * S * S; e++)
        w.x[e] = 2.0f * dt_philox_unit(dt_philox_words(3, 0, e).v[0]) - 1.0f;
    const double loss = clf_step(&net, &w, n, labels, NULL);
    CHECK_CLOSE(loss, loss_now(&net, &w, n, labels), 1e-6, "clf_step's loss");
    float *grad = malloc(net.num_params * sizeof *grad);
    memcpy(grad, w.grad, net.num_params * sizeof *grad);

    const float eps = 1e-3f;
    for (int i = 0; i < CLF_NET_TENSORS; i++) {
        const char *name;
        int64_t shape[4];
        float *data;
        int ndim = clf_net_tensor(&net, i, &name, shape, &data);
        size_t numel = 1;
        for (int d = 0; d < ndim; d++) numel *= (size_t)shape[d];
        const float *g = grad + (data - net.params);
        size_t top = 0;
        for (size_t e = 1; e < numel; e++)
            if (fabs(g[e]) > fabs(g[top])) top = e;
        const double gmax = fabs(g[top]);
        CHECK(gmax > 1e-4, "%s: the largest gradient is %g; the check would show nothing", name,
              gmax);
        /* The largest entry, then random ones: 8 checks whose two sides stay on one side of
         * every ReLU kink (those that cross one are skipped: there the derivative is not
         * defined and the difference measures the kink). */
        int checked = 0, crossed = 0;
        for (int t = 0; t < 60 && checked < 8; t++) {
            size_t e = t == 0 ? top : dt_philox_words(5, (uint64_t)i, (uint64_t)t).v[0] % numel;
            float keep = data[e];
            data[e] = keep + eps;
            double lp = loss_now(&net, &w, n, labels);
            uint64_t side = relu_pattern(&net, &w, n);
            data[e] = keep - eps;
            double lm = loss_now(&net, &w, n, labels);
            data[e] = keep;
            if (side != relu_pattern(&net, &w, n)) {
                crossed++;
                continue;
            }
            checked++;
            double fd = (lp - lm) / (2.0 * eps), an = g[e];
            double tol = 2e-2 * fmax(fabs(fd), fabs(an)) + 1e-3 * gmax + 2e-5;
            CHECK(fabs(fd - an) <= tol, "%s[%zu]: backward %.6g, finite difference %.6g", name,
                  e, an, fd);
        }
        CHECK(checked == 8, "%s: only %d entries checked (%d crossed a kink)", name, checked,
              crossed);
        /* Along a random unit direction d: (L(p + h d) - L(p - h d)) / 2h against g . d, with
         * a new direction and a shorter step while the step crosses a kink. */
        float *keep = malloc(numel * sizeof *keep), *dir = malloc(numel * sizeof *dir);
        memcpy(keep, data, numel * sizeof *keep);
        int done = 0;
        for (int t = 0; t < 8 && !done; t++) {
            double norm = 0.0, gd = 0.0;
            for (size_t e = 0; e < numel; e++) {
                dir[e] = dt_philox_normal(9 + (uint64_t)t, (uint64_t)i, e);
                norm += (double)dir[e] * dir[e];
            }
            for (size_t e = 0; e < numel; e++) {
                dir[e] /= (float)sqrt(norm);
                gd += (double)g[e] * dir[e];
            }
            const float h = 1e-3f / (float)(1 << t); /* fewer kinks in reach each try */
            for (size_t e = 0; e < numel; e++) data[e] = keep[e] + h * dir[e];
            double lp = loss_now(&net, &w, n, labels);
            uint64_t side = relu_pattern(&net, &w, n);
            for (size_t e = 0; e < numel; e++) data[e] = keep[e] - h * dir[e];
            double lm = loss_now(&net, &w, n, labels);
            memcpy(data, keep, numel * sizeof *keep);
            if (side != relu_pattern(&net, &w, n)) continue;
            done = 1;
            double fd = (lp - lm) / (2.0 * h);
            CHECK(fabs(fd - gd) <= 2e-2 * fmax(fabs(fd), fabs(gd)) + 1e-4,
                  "%s along a random direction: backward %.6g, finite difference %.6g", name, gd,
                  fd);
        }
        CHECK(done, "%s: every random direction crossed a ReLU kink", name);
        free(keep);
        free(dir);
    }
    free(grad);
    clf_work_free(&w);
    clf_net_free(&net);
}

/* A dataset of k synthetic shape classes, per_class images each, size x size RGB. */
static int synth_dataset(dt_dataset *ds, const char *style, int k, int per_class, int size,
                         uint64_t seed) {
    memset(ds, 0, sizeof *ds);
    ds->n = k * per_class;
    ds->C = 3;
    ds->H = ds->W = size;
    ds->num_classes = k;
    const size_t img = (size_t)3 * size * size;
    ds->images = malloc(img * (size_t)ds->n);
    ds->labels = malloc(sizeof *ds->labels * (size_t)ds->n);
    ds->class_names = calloc((size_t)k, sizeof *ds->class_names);
    uint8_t *rgb = malloc(img);
    if (!ds->images || !ds->labels || !ds->class_names || !rgb) return -1;
    for (int c = 0; c < k; c++) ds->class_names[c] = strdup(synth_class_name(c));
    for (int c = 0; c < k; c++)
        for (int i = 0; i < per_class; i++) {
            const int idx = c * per_class + i;
            if (synth_render(style, c, size, seed, (uint64_t)i, rgb) != 0) return -1;
            uint8_t *dst = ds->images + (size_t)idx * img;
            for (int ch = 0; ch < 3; ch++) /* (H, W, 3) to (3, H, W) */
                for (int p = 0; p < size * size; p++) dst[(size_t)ch * size * size + p] = rgb[p * 3 + ch];
            ds->labels[idx] = c;
        }
    free(rgb);
    return 0;
}

static double seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Argmax predictions of the whole dataset through a loaded classifier; returns the hits. */
static int count_hits(dt_classifier *c, const dt_dataset *ds) {
    const size_t img = (size_t)ds->C * ds->H * ds->W;
    float *x = malloc(img * (size_t)ds->n * sizeof *x);
    int32_t *pred = malloc(sizeof *pred * (size_t)ds->n);
    char err[512] = "";
    int hits = -1;
    for (int i = 0; x && i < ds->n; i++) dataset_image_to_float(ds, i, 0, x + (size_t)i * img);
    if (x && pred &&
        classifier_features(c, x, ds->n, ds->C, ds->H, ds->W, NULL, pred, err, sizeof err) == 0) {
        hits = 0;
        for (int i = 0; i < ds->n; i++) hits += pred[i] == ds->labels[i];
    }
    CHECK(hits >= 0, "classifier_features: %s", err);
    free(x);
    free(pred);
    return hits;
}

/* Learning: 8 synthetic shape classes at 32x32 (random position, size and colour), 80 training
 * and 20 held-out images per class, must reach >= 0.9 held-out accuracy (chance is 0.125). It
 * reaches 0.975 in 20 epochs of batch 8, 7-9 s on 2 cores (more steps matter more than more
 * images here: batch 64 reaches only ~0.5 in 10 epochs). */
static void test_learning(const char *dir) {
    dt_dataset ds;
    if (synth_dataset(&ds, "solid", SYNTH_MAX_CLASSES, 100, 32, 1) != 0) {
        CHECK(0, "synth_dataset");
        return;
    }
    dt_classifier_opts o;
    classifier_opts_defaults(&o);
    CHECK(o.epochs == 10 && o.batch_size == 64 && o.learning_rate == 2e-3 && o.held_out == 0.1 &&
          o.seed == 0, "documented defaults");
    o.epochs = 20;
    o.batch_size = 8;
    o.held_out = 0.2;
    o.seed = 1;
    o.dataset = "synth:solid";
    char *events = NULL;
    size_t events_len = 0;
    FILE *mem = open_memstream(&events, &events_len);
    dt_events ev = {.out = mem};
    const char *path = check_path(dir, "shapes.safetensors");
    char err[512] = "";
    double held = -1, t0 = seconds();
    int rc = classifier_train(&ds, &o, path, &ev, &held, err, sizeof err);
    double took = seconds() - t0;
    fclose(mem);
    CHECK(rc == 0, "classifier_train: %s", err);
    printf("classifier: held-out accuracy %.4f after %d epochs in %.1f s\n", held, o.epochs, took);
    CHECK(held >= 0.9, "held-out accuracy %.4f < 0.9 (chance 0.125)", held);
    int progress = 0;
    for (char *line = events; line && *line;) {
        char *nl = strchr(line, '\n');
        progress += strstr(line, "\"type\":\"progress\"") != NULL && nl &&
                    strstr(line, "\"phase\":\"training\"") < nl;
        line = nl ? nl + 1 : line + strlen(line);
    }
    CHECK(progress == o.epochs, "%d progress events for %d epochs", progress, o.epochs);
    CHECK(events && strstr(events, "\"name\":\"classifier\"") &&
          strstr(events, "\"held_out_accuracy\""), "final metric event: %s", events ? events : "");
    free(events);

    /* The file: its metadata, and the loaded network predicts exactly what training measured
     * (train and held-out hits together over the whole dataset). */
    st_file f = {0};
    if (safetensors_open(&f, path, err, sizeof err) == 0) {
        const char *kind = safetensors_meta(&f, "difftune_kind");
        const char *tr = safetensors_meta(&f, "train_accuracy");
        const char *ho = safetensors_meta(&f, "held_out_accuracy");
        const char *names = safetensors_meta(&f, "class_names");
        const char *dsn = safetensors_meta(&f, "dataset");
        CHECK(kind && !strcmp(kind, "classifier"), "difftune_kind");
        CHECK(dsn && !strcmp(dsn, "synth:solid"), "dataset metadata");
        CHECK(names && strstr(names, "\"circle\"") && strstr(names, "\"bar\""), "class_names %s",
              names ? names : "(none)");
        CHECK(ho && fabs(atof(ho) - held) < 1e-6, "held_out_accuracy metadata %s", ho ? ho : "");
        dt_classifier *c = NULL;
        CHECK(classifier_load(&c, path, err, sizeof err) == 0, "classifier_load: %s", err);
        if (c && tr && ho) {
            CHECK(classifier_image_size(c) == 32 && classifier_channels(c) == 3 &&
                  classifier_num_classes(c) == SYNTH_MAX_CLASSES, "shape getters");
            int want = (int)lround(atof(tr) * 640) + (int)lround(atof(ho) * 160);
            int got = count_hits(c, &ds);
            CHECK(got == want, "loaded classifier: %d hits, training measured %d", got, want);
        }
        classifier_free(c);
        safetensors_close(&f);
    } else {
        CHECK(0, "%s", err);
    }
    dataset_free(&ds);
}

/* The same seed gives the same file whatever the thread count; another seed another file. */
static void test_determinism(const char *dir) {
    dt_dataset ds;
    if (synth_dataset(&ds, "outline", 4, 12, 16, 2) != 0) {
        CHECK(0, "synth_dataset");
        return;
    }
    dt_classifier_opts o;
    classifier_opts_defaults(&o);
    o.epochs = 2;
    o.batch_size = 7; /* a partial last batch */
    o.seed = 5;
    char err[512] = "";
    const char *a = check_path(dir, "det_a.safetensors"), *b = check_path(dir, "det_b.safetensors"),
               *c = check_path(dir, "det_c.safetensors");
    int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    CHECK(classifier_train(&ds, &o, a, NULL, NULL, err, sizeof err) == 0, "%s", err);
    omp_set_num_threads(threads > 1 ? threads : 2);
    CHECK(classifier_train(&ds, &o, b, NULL, NULL, err, sizeof err) == 0, "%s", err);
    omp_set_num_threads(threads);
    o.seed = 6;
    CHECK(classifier_train(&ds, &o, c, NULL, NULL, err, sizeof err) == 0, "%s", err);
    size_t la = 0, lb = 0, lc = 0;
    uint8_t *fa = check_read_file(a, &la), *fb = check_read_file(b, &lb), *fc = check_read_file(c, &lc);
    CHECK(fa && fb && la == lb && memcmp(fa, fb, la) == 0,
          "the same seed on 1 and %d threads gave different files", threads > 1 ? threads : 2);
    CHECK(fa && fc && (la != lc || memcmp(fa, fc, la) != 0), "another seed gave the same file");
    free(fa);
    free(fb);
    free(fc);
    dataset_free(&ds);
}

/* Tensors of net written with one change: skip drops a tensor, reshape swaps the first two
 * dimensions of one, extra adds a foreign one; meta as given. */
static void write_variant(const clf_net *net, const char *path, const char *skip,
                          const char *reshape, const char *extra, const char *const *meta) {
    st_write_tensor t[CLF_NET_TENSORS + 1];
    memset(t, 0, sizeof t);
    int n = 0;
    static const float one[4] = {1, 2, 3, 4};
    for (int i = 0; i < CLF_NET_TENSORS; i++) {
        float *data;
        st_write_tensor *w = &t[n];
        w->ndim = clf_net_tensor(net, i, &w->name, w->shape, &data);
        w->dtype = ST_F32;
        w->data = data;
        if (skip && !strcmp(w->name, skip)) continue;
        if (reshape && !strcmp(w->name, reshape)) {
            int64_t s0 = w->shape[0];
            w->shape[0] = w->shape[1];
            w->shape[1] = s0;
        }
        n++;
    }
    if (extra) t[n++] = (st_write_tensor){.name = extra, .dtype = ST_F32, .ndim = 1,
                                          .shape = {4}, .data = one};
    char err[512];
    if (safetensors_write(path, t, n, meta, err, sizeof err) != 0) CHECK(0, "write: %s", err);
}

static void expect_load_refused(const char *path, const char *needle, const char *what) {
    dt_classifier *c = (dt_classifier *)1;
    char err[512] = "";
    int rc = classifier_load(&c, path, err, sizeof err);
    CHECK(rc == -1 && c == NULL, "%s: loaded", what);
    CHECK(strstr(err, needle) != NULL, "%s: message '%s' lacks '%s'", what, err, needle);
}

/* Save and load give the very same features; the loader refuses what is not a classifier. */
static void test_file(const char *dir) {
    clf_net net;
    clf_work w;
    const int S = 16, C = 1, K = 5, n = 7;
    if (clf_net_init(&net, S, C, K) != 0 || clf_work_init(&w, &net, n, 0) != 0) {
        CHECK(0, "out of memory");
        return;
    }
    clf_net_init_weights(&net, 3);
    for (size_t e = 0; e < (size_t)n * S * S; e++)
        w.x[e] = 2.0f * dt_philox_unit(dt_philox_words(4, 0, e).v[0]) - 1.0f;
    float *images = malloc(sizeof *images * (size_t)n * S * S);
    memcpy(images, w.x, sizeof *images * (size_t)n * S * S);
    clf_forward(&net, &w, n);
    const char *meta[] = {"difftune_kind", "classifier", "image_size", "16", "channels", "1",
                          "num_classes", "5", NULL};
    const char *path = check_path(dir, "rt.safetensors");
    char err[512] = "";
    CHECK(clf_net_save(&net, path, meta, err, sizeof err) == 0, "clf_net_save: %s", err);
    dt_classifier *c = NULL;
    CHECK(classifier_load(&c, path, err, sizeof err) == 0, "classifier_load: %s", err);
    if (c) {
        float feats[7 * CLASSIFIER_FEATURES];
        int32_t pred[7];
        CHECK(classifier_features(c, images, n, C, S, S, feats, pred, err, sizeof err) == 0,
              "classifier_features: %s", err);
        CHECK(memcmp(feats, w.hid, sizeof feats) == 0, "features differ after save and load");
        int same = 1;
        for (int b = 0; b < n; b++) {
            int best = 0;
            for (int k = 1; k < K; k++)
                if (w.logits[b * K + k] > w.logits[b * K + best]) best = k;
            same &= pred[b] == best;
        }
        CHECK(same, "predictions differ after save and load");
        /* One image at a time gives the same features as the batch. */
        float one[CLASSIFIER_FEATURES];
        CHECK(classifier_features(c, images + 3 * S * S, 1, C, S, S, one, NULL, err, sizeof err) == 0,
              "%s", err);
        double diff = 0;
        for (int j = 0; j < CLASSIFIER_FEATURES; j++)
            diff = fmax(diff, fabs(one[j] - feats[3 * CLASSIFIER_FEATURES + j]));
        CHECK(diff < 1e-5, "image 3 alone differs from in the batch by %g", diff);
        err[0] = '\0';
        CHECK(classifier_features(c, images, n, 3, S, S, feats, NULL, err, sizeof err) == -1,
              "wrong channel count accepted");
        CHECK(strstr(err, "takes (1, 16, 16)") != NULL, "shape message: %s", err);
        CHECK(classifier_features(c, images, 1, 1, 32, 32, feats, NULL, err, sizeof err) == -1,
              "wrong size accepted");
        CHECK(classifier_features(c, images, 0, 1, 16, 16, feats, NULL, err, sizeof err) == 0,
              "no images is fine: %s", err);
        classifier_free(c);
    }

    const char *alt = check_path(dir, "alt.safetensors");
    write_variant(&net, alt, "fc1.bias", NULL, NULL, meta);
    expect_load_refused(alt, "missing tensor 'fc1.bias'", "missing tensor");
    write_variant(&net, alt, NULL, "conv2.weight", NULL, meta);
    expect_load_refused(alt, "'conv2.weight' has the wrong shape (32, 64, 3, 3)", "mis-shaped");
    write_variant(&net, alt, NULL, NULL, "lora.A", meta);
    expect_load_refused(alt, "unexpected tensor 'lora.A'", "foreign tensor");
    const char *dit_meta[] = {"config", "{\"depth\":2}", "step", "3", NULL};
    write_variant(&net, alt, NULL, NULL, NULL, dit_meta);
    expect_load_refused(alt, "not a difftune classifier", "classifier tensors without difftune_kind");
    const char *other_meta[] = {"difftune_kind", "classifier", "image_size", "16", "channels", "1",
                                "num_classes", "6", NULL};
    write_variant(&net, alt, NULL, NULL, NULL, other_meta);
    expect_load_refused(alt, "'fc2.weight' has the wrong shape (5, 256)", "class count mismatch");
    const char *odd_meta[] = {"difftune_kind", "classifier", "image_size", "12", "channels", "1",
                              "num_classes", "5", NULL};
    write_variant(&net, alt, NULL, NULL, NULL, odd_meta);
    expect_load_refused(alt, "multiple of 8", "image size not a multiple of 8");
    const char *bad_meta[] = {"difftune_kind", "classifier", "image_size", "16x", "channels", "1",
                              "num_classes", "5", NULL};
    write_variant(&net, alt, NULL, NULL, NULL, bad_meta);
    expect_load_refused(alt, "__metadata__.image_size", "unparsable image size");
    expect_load_refused(check_path(dir, "nothere.safetensors"), "nothere.safetensors", "no file");
    {   /* a real DiT checkpoint */
        dt_backend *be = dt_backend_create("cpu", err, sizeof err);
        dit_config dc;
        dit_model dm;
        if (be && dit_config_init(&dc, 1, 32, 2, 2, 8, 3, 4, 1, err, sizeof err) == 0 &&
            dit_model_init(&dm, &dc, be, err, sizeof err) == 0) {
            float *host = calloc(dm.num_floats, sizeof *host);
            char ckpt[1400];
            CHECK(checkpoint_save_model(dir, 1, &dm, host, host, "{}", err, sizeof err) == 0,
                  "%s", err);
            checkpoint_path(ckpt, sizeof ckpt, dir, 1, "");
            expect_load_refused(ckpt, "no __metadata__.difftune_kind", "a DiT checkpoint");
            free(host);
            dit_model_free(&dm);
        } else {
            CHECK(0, "DiT: %s", err);
        }
        if (be) be->destroy(be);
    }

    /* classifier_train refuses what it cannot train on. */
    dt_dataset ds;
    if (synth_dataset(&ds, "solid", 2, 3, 12, 0) == 0) {
        dt_classifier_opts o;
        classifier_opts_defaults(&o);
        CHECK(classifier_train(&ds, &o, alt, NULL, NULL, err, sizeof err) == -1 &&
              strstr(err, "multiple of 8"), "12x12 images: %s", err);
        dataset_free(&ds);
    }
    if (synth_dataset(&ds, "solid", 2, 3, 8, 0) == 0) {
        dt_classifier_opts o;
        classifier_opts_defaults(&o);
        o.held_out = 1.0;
        CHECK(classifier_train(&ds, &o, alt, NULL, NULL, err, sizeof err) == -1 &&
              strstr(err, "held-out"), "held-out 1: %s", err);
        dataset_free(&ds);
    }
    free(images);
    clf_work_free(&w);
    clf_net_free(&net);
}

int main(void) {
    const char *dir = check_tmpdir("classifier");
    test_gradient();
    test_file(dir);
    test_determinism(dir);
    test_learning(dir);
    return check_done("classifier");
}
