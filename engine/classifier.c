/* classifier.c — training, saving, loading and running the fd_classifier CNN (classifier.h).
 * The network itself (parameters, forward and backward passes) is classifier_layers.c.
 *
 * Training: a per-class held-out split, then epochs over the training images in a shuffled
 * order with random horizontal flips, mean cross-entropy, AdamW (beta 0.9 / 0.999, eps 1e-8,
 * no weight decay) with the learning rate on a cosine from its value down to zero. Every random
 * choice is a pure function of the seed (rng.h streams). Everything is allocated before the
 * first epoch.
 */
#include "classifier.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "classifier_net.h"
#include "clock.h"
#include "errmsg.h"
#include "rng.h"
#include "safetensors.h"

#define CLF_BETA1 0.9
#define CLF_BETA2 0.999
#define CLF_EPS 1e-8
#define CLF_WEIGHT_DECAY 0.0
#define CLF_MAX_IMAGE_SIZE 4096
#define CLF_MAX_CLASSES 10000
/* Inference batches hold at most this many bytes of activations. */
#define CLF_INFER_BYTES ((size_t)64 << 20)

struct dt_classifier {
    clf_net net;
    clf_work work; /* inference buffers, made on the first classifier_features call */
    int have_work;
};

void classifier_opts_defaults(dt_classifier_opts *o) {
    memset(o, 0, sizeof *o);
    o->epochs = 10;
    o->batch_size = 64;
    o->learning_rate = 2e-3;
    o->held_out = 0.1;
    o->seed = 0;
}

int classifier_image_size(const dt_classifier *c) { return c->net.S; }
int classifier_channels(const dt_classifier *c) { return c->net.C; }
int classifier_num_classes(const dt_classifier *c) { return c->net.K; }

/* ---- the file -------------------------------------------------------------------------------- */

/* Integer metadata value key of f in lo..hi, or -1 with a message. */
static int clf_meta_int(const st_file *f, const char *key, long lo, long hi, long *out,
                        char *err, size_t errlen) {
    const char *v = safetensors_meta(f, key);
    char *end = NULL;
    long x = v ? strtol(v, &end, 10) : 0;
    if (!v || end == v || *end || x < lo || x > hi) {
        dt_errorf(err, errlen, "%s: __metadata__.%s is %s%s%s; expected an integer in %ld..%ld",
                  f->path, key, v ? "\"" : "missing", v ? v : "", v ? "\"" : "", lo, hi);
        return -1;
    }
    *out = x;
    return 0;
}

static void clf_shape_text(const int64_t *shape, int ndim, char *buf, size_t len) {
    size_t k = (size_t)snprintf(buf, len, "(");
    for (int d = 0; d < ndim && k < len; d++)
        k += (size_t)snprintf(buf + k, len - k, "%s%lld", d ? ", " : "", (long long)shape[d]);
    if (k < len) snprintf(buf + k, len - k, ")");
}

int classifier_load(dt_classifier **out, const char *path, char *err, size_t errlen) {
    *out = NULL;
    st_file f = {0};
    if (safetensors_open(&f, path, err, errlen) != 0) return -1;
    int rc = -1;
    dt_classifier *c = NULL;
    const char *kind = safetensors_meta(&f, "difftune_kind");
    long S, C, K;
    if (!kind || strcmp(kind, "classifier") != 0) {
        dt_errorf(err, errlen, "%s: not a difftune classifier (%s%.60s%s); make one with "
                  "'difftune classifier train'", path,
                  kind ? "__metadata__.difftune_kind is \"" : "no __metadata__.difftune_kind: a "
                  "DiT checkpoint?", kind ? kind : "", kind ? "\", not \"classifier\"" : "");
        goto done;
    }
    if (clf_meta_int(&f, "image_size", 8, CLF_MAX_IMAGE_SIZE, &S, err, errlen) ||
        clf_meta_int(&f, "channels", 1, 3, &C, err, errlen) ||
        clf_meta_int(&f, "num_classes", 1, CLF_MAX_CLASSES, &K, err, errlen))
        goto done;
    if (S % 8 != 0 || C == 2) {
        dt_errorf(err, errlen, "%s: image_size %ld / channels %ld: the image size must be a "
                  "multiple of 8 and channels 1 or 3", path, S, C);
        goto done;
    }
    /* A tensor that does not belong is named first; a missing one is named below. */
    for (int i = 0; i < f.n; i++) {
        int known = 0;
        for (int j = 0; j < CLF_NET_TENSORS; j++)
            known |= strcmp(clf_net_tensor_name(j), f.tensors[i].name) == 0;
        if (!known) {
            dt_errorf(err, errlen, "%s: unexpected tensor '%s' in a classifier file", path,
                      f.tensors[i].name);
            goto done;
        }
    }
    c = calloc(1, sizeof *c);
    if (!c || clf_net_init(&c->net, (int)S, (int)C, (int)K) != 0) {
        dt_errorf(err, errlen, "%s: out of memory", path);
        goto done;
    }
    for (int i = 0; i < CLF_NET_TENSORS; i++) {
        const char *name;
        int64_t shape[4];
        float *data;
        int ndim = clf_net_tensor(&c->net, i, &name, shape, &data);
        const st_tensor *t = safetensors_find(&f, name);
        if (!t) {
            dt_errorf(err, errlen, "%s: missing tensor '%s'", path, name);
            goto done;
        }
        int same = t->ndim == ndim;
        for (int d = 0; same && d < ndim; d++) same = t->shape[d] == shape[d];
        if (!same) {
            char want[96], got[96];
            clf_shape_text(shape, ndim, want, sizeof want);
            clf_shape_text(t->shape, t->ndim, got, sizeof got);
            dt_errorf(err, errlen, "%s: tensor '%s' has the wrong shape %s; a %ld-channel %ldx%ld "
                      "%ld-class classifier needs %s", path, name, got, C, S, S, K, want);
            goto done;
        }
        size_t numel = 1;
        for (int d = 0; d < ndim; d++) numel *= (size_t)shape[d];
        if (safetensors_read_f32(&f, name, data, numel, err, errlen) != 0) goto done;
    }
    rc = 0;
    *out = c;
    c = NULL;
done:
    classifier_free(c);
    safetensors_close(&f);
    return rc;
}

void classifier_free(dt_classifier *c) {
    if (!c) return;
    clf_work_free(&c->work);
    clf_net_free(&c->net);
    free(c);
}

/* ---- inference ------------------------------------------------------------------------------- */

/* Images per inference batch: as many as fit CLF_INFER_BYTES of activations, 1..64. */
static int clf_infer_cap(const clf_net *net) {
    size_t per = (size_t)net->C * net->S * net->S + CLF_GAP_CHANNELS + CLASSIFIER_FEATURES + net->K;
    for (int l = 0; l < CLF_STAGES; l++) per += (size_t)net->oc[l] * net->hw[l] * net->hw[l] * 5 / 4;
    size_t cap = CLF_INFER_BYTES / (per * sizeof(float));
    return cap < 1 ? 1 : cap > 64 ? 64 : (int)cap;
}

/* Copies features and argmax predictions of the n images of the last forward pass. */
static void clf_take_outputs(const clf_net *net, const clf_work *w, int n, float *features,
                             int32_t *predictions) {
    if (features)
        memcpy(features, w->hid, (size_t)n * CLASSIFIER_FEATURES * sizeof *features);
    for (int b = 0; predictions && b < n; b++) {
        const float *z = w->logits + (size_t)b * net->K;
        int best = 0;
        for (int k = 1; k < net->K; k++)
            if (z[k] > z[best]) best = k;
        predictions[b] = best;
    }
}

int classifier_features(dt_classifier *c, const float *images, int n, int C, int H, int W,
                        float *features, int32_t *predictions, char *err, size_t errlen) {
    const clf_net *net = &c->net;
    if (n < 0 || C != net->C || H != net->S || W != net->S) {
        dt_errorf(err, errlen, "classifier: got %d images of (%d, %d, %d); this classifier takes "
                  "(%d, %d, %d) images (channels, height, width)", n, C, H, W, net->C, net->S,
                  net->S);
        return -1;
    }
    if (!c->have_work) {
        if (clf_work_init(&c->work, net, clf_infer_cap(net), 0) != 0) {
            dt_errorf(err, errlen, "classifier: out of memory for its activations");
            return -1;
        }
        c->have_work = 1;
    }
    const size_t img = (size_t)C * H * W;
    for (int start = 0; start < n; start += c->work.cap) {
        int m = n - start < c->work.cap ? n - start : c->work.cap;
        memcpy(c->work.x, images + (size_t)start * img, (size_t)m * img * sizeof *images);
        clf_forward(net, &c->work, m);
        clf_take_outputs(net, &c->work, m,
                         features ? features + (size_t)start * CLASSIFIER_FEATURES : NULL,
                         predictions ? predictions + start : NULL);
    }
    return 0;
}

/* ---- training -------------------------------------------------------------------------------- */

typedef struct {
    int *train, *held;  /* dataset indices */
    int n_train, n_held;
} clf_split;

/* Holds out round(held_out * count) images of each class (at least one when held_out > 0, never
 * the class's last one), chosen by a shuffle keyed by (seed, class). */
static int clf_split_make(clf_split *sp, const dt_dataset *ds, double held_out, uint64_t seed) {
    memset(sp, 0, sizeof *sp);
    const int K = ds->num_classes;
    int *order = malloc(sizeof *order * (size_t)ds->n);
    int *start = calloc((size_t)K + 1, sizeof *start);
    sp->train = malloc(sizeof *sp->train * (size_t)ds->n);
    sp->held = malloc(sizeof *sp->held * (size_t)ds->n);
    if (!order || !start || !sp->train || !sp->held) {
        free(order);
        free(start);
        return -1;
    }
    /* The images grouped by class, in dataset order within a class (a counting sort). */
    for (int i = 0; i < ds->n; i++) start[ds->labels[i] + 1]++;
    for (int k = 0; k < K; k++) start[k + 1] += start[k];
    for (int i = 0; i < ds->n; i++) order[start[ds->labels[i]]++] = i;
    for (int k = K; k > 0; k--) start[k] = start[k - 1];
    start[0] = 0;
    for (int k = 0; k < K; k++) {
        int *cls = order + start[k], m = start[k + 1] - start[k];
        for (int i = m - 1; i > 0; i--) {
            int j = (int)dt_rng_below(seed, DT_STREAM_SPLIT + (uint64_t)k, (uint64_t)i,
                                      (uint32_t)(i + 1));
            int tmp = cls[i];
            cls[i] = cls[j];
            cls[j] = tmp;
        }
        int hold = (int)floor(held_out * m + 0.5);
        if (held_out > 0 && hold < 1) hold = 1;
        if (hold > m - 1) hold = m - 1 > 0 ? m - 1 : 0;
        for (int i = 0; i < m; i++) {
            if (i < hold) sp->held[sp->n_held++] = cls[i];
            else sp->train[sp->n_train++] = cls[i];
        }
    }
    free(order);
    free(start);
    return 0;
}

static void clf_split_free(clf_split *sp) {
    free(sp->train);
    free(sp->held);
}

/* Accuracy of the network on images idx (n), unflipped, through the training buffers. */
static double clf_accuracy(const clf_net *net, clf_work *w, const dt_dataset *ds, const int *idx,
                           int n, int32_t *labels) {
    const size_t img = (size_t)ds->C * ds->H * ds->W;
    int hits = 0;
    for (int start = 0; start < n; start += w->cap) {
        int m = n - start < w->cap ? n - start : w->cap;
        for (int b = 0; b < m; b++) {
            dataset_image_to_float(ds, idx[start + b], 0, w->x + (size_t)b * img);
            labels[b] = ds->labels[idx[start + b]];
        }
        clf_forward(net, w, m);
        int correct;
        clf_loss(net, w, m, labels, &correct);
        hits += correct;
    }
    return n ? (double)hits / n : 0.0;
}

/* One AdamW step (step t >= 1) of params with grad. */
static void clf_adamw(float *params, const float *grad, float *m, float *v, size_t n, double lr,
                      int64_t t) {
    const float b1 = (float)CLF_BETA1, b2 = (float)CLF_BETA2;
    const float c1 = (float)(1.0 / (1.0 - pow(CLF_BETA1, (double)t)));
    const float c2 = (float)(1.0 / (1.0 - pow(CLF_BETA2, (double)t)));
    const float step = (float)lr, decay = (float)(1.0 - lr * CLF_WEIGHT_DECAY);
    for (size_t i = 0; i < n; i++) {
        m[i] = b1 * m[i] + (1.0f - b1) * grad[i];
        v[i] = b2 * v[i] + (1.0f - b2) * grad[i] * grad[i];
        params[i] = decay * params[i] -
                    step * (m[i] * c1) / (sqrtf(v[i] * c2) + (float)CLF_EPS);
    }
}

static int clf_check_inputs(const dt_dataset *ds, const dt_classifier_opts *o, char *err,
                            size_t errlen) {
    if (!ds || ds->n < 1 || !ds->images || !ds->labels) {
        dt_errorf(err, errlen, "the dataset holds no images");
        return -1;
    }
    if (ds->H != ds->W || ds->H < 8 || ds->H % 8 || ds->H > CLF_MAX_IMAGE_SIZE) {
        dt_errorf(err, errlen, "images of %dx%d: the classifier needs square images whose size is "
                  "a multiple of 8 (8..%d)", ds->H, ds->W, CLF_MAX_IMAGE_SIZE);
        return -1;
    }
    if (ds->C != 1 && ds->C != 3) {
        dt_errorf(err, errlen, "images with %d channels: the classifier takes 1 or 3", ds->C);
        return -1;
    }
    if (ds->num_classes < 2 || ds->num_classes > CLF_MAX_CLASSES) {
        dt_errorf(err, errlen, "the dataset has %d classes; a classifier needs 2..%d",
                  ds->num_classes, CLF_MAX_CLASSES);
        return -1;
    }
    if (o->epochs < 1 || o->batch_size < 1 || !(o->learning_rate > 0) ||
        !(o->held_out >= 0 && o->held_out < 1)) {
        dt_errorf(err, errlen, "bad options: epochs %d and batch size %d must be >= 1, learning "
                  "rate %g > 0, held-out fraction %g in [0, 1)", o->epochs, o->batch_size,
                  o->learning_rate, o->held_out);
        return -1;
    }
    return 0;
}

/* The __metadata__ of a trained classifier, as key, value, ..., NULL in kv (17 slots), the
 * texts in buf; *names is a malloc'd JSON text the caller frees. */
static void clf_meta(const dt_dataset *ds, const char *dataset, double train_acc, double held_acc,
                     char buf[5][32], char **names, const char *kv[17]) {
    json_t *arr = json_array();
    for (int k = 0; arr && k < ds->num_classes; k++) {
        /* A name that is missing or not UTF-8 is recorded as its class index. */
        const char *nm = ds->class_names ? ds->class_names[k] : NULL;
        json_t *s = nm ? json_string(nm) : NULL;
        json_array_append_new(arr, s ? s : json_sprintf("%d", k));
    }
    *names = arr ? json_dumps(arr, JSON_COMPACT) : NULL;
    json_decref(arr);
    snprintf(buf[0], 32, "%d", ds->H);
    snprintf(buf[1], 32, "%d", ds->C);
    snprintf(buf[2], 32, "%d", ds->num_classes);
    snprintf(buf[3], 32, "%.6f", train_acc);
    snprintf(buf[4], 32, "%.6f", held_acc);
    const char *src[] = {"difftune_kind", "classifier", "image_size", buf[0], "channels", buf[1],
                         "num_classes", buf[2], "train_accuracy", buf[3], "held_out_accuracy",
                         buf[4], "dataset", dataset ? dataset : "", "class_names",
                         *names ? *names : "[]", NULL};
    memcpy(kv, src, sizeof src);
}

int classifier_train(const dt_dataset *ds, const dt_classifier_opts *o, const char *out_path,
                     dt_events *ev, double *held_out_accuracy, char *err, size_t errlen) {
    if (clf_check_inputs(ds, o, err, errlen) != 0) return -1;
    clf_net net = {0};
    clf_work w = {0};
    clf_split sp = {0};
    float *adam_m = NULL, *adam_v = NULL;
    int32_t *labels = NULL;
    char *names = NULL;
    int rc = -1;
    if (clf_split_make(&sp, ds, o->held_out, o->seed) != 0) {
        dt_errorf(err, errlen, "out of memory splitting %d images", ds->n);
        goto done;
    }
    if (sp.n_train < 1) {
        dt_errorf(err, errlen, "no image is left for training after the held-out split");
        goto done;
    }
    /* A batch larger than the training split would only allocate buffers it never fills. */
    const int B = o->batch_size < sp.n_train ? o->batch_size : sp.n_train;
    if (clf_net_init(&net, ds->H, ds->C, ds->num_classes) != 0 ||
        clf_work_init(&w, &net, B, 1) != 0 ||
        !(adam_m = calloc(net.num_params, sizeof *adam_m)) ||
        !(adam_v = calloc(net.num_params, sizeof *adam_v)) ||
        !(labels = malloc(sizeof *labels * (size_t)B))) {
        dt_errorf(err, errlen, "out of memory for a %dx%d classifier with batch size %d", ds->H,
                  ds->W, B);
        goto done;
    }
    clf_net_init_weights(&net, o->seed);
    const size_t img = (size_t)ds->C * ds->H * ds->W;
    const int steps_per_epoch = (sp.n_train + B - 1) / B;
    const int64_t total_steps = (int64_t)steps_per_epoch * o->epochs;
    int64_t step = 0;
    double t0 = dt_now();
    events_log(ev, "info", "classifier: %d training and %d held-out images of %dx%dx%d, %d "
               "classes, %zu parameters", sp.n_train, sp.n_held, ds->C, ds->H, ds->W,
               ds->num_classes, net.num_params);
    for (int epoch = 0; epoch < o->epochs; epoch++) {
        /* The epoch's order: Fisher-Yates over the training indices, keyed by (seed, epoch). */
        for (int i = sp.n_train - 1; i > 0; i--) {
            int j = (int)dt_rng_below(o->seed, DT_STREAM_DATA_PERM + (uint64_t)epoch, (uint64_t)i,
                                      (uint32_t)(i + 1));
            int tmp = sp.train[i];
            sp.train[i] = sp.train[j];
            sp.train[j] = tmp;
        }
        double loss_sum = 0.0;
        int hits = 0;
        for (int s = 0; s < steps_per_epoch; s++) {
            const int start = s * B, n = sp.n_train - start < B ? sp.n_train - start : B;
            for (int b = 0; b < n; b++) {
                const int idx = sp.train[start + b];
                const uint64_t slot = (uint64_t)epoch * (uint64_t)sp.n_train + (uint64_t)(start + b);
                const int flip = (dt_philox_words(o->seed, DT_STREAM_FLIP, slot).v[0] >> 31) & 1;
                dataset_image_to_float(ds, idx, flip, w.x + (size_t)b * img);
                labels[b] = ds->labels[idx];
            }
            int correct;
            loss_sum += clf_step(&net, &w, n, labels, &correct) * n;
            hits += correct;
            step++;
            const double lr = o->learning_rate * 0.5 *
                              (1.0 + cos(M_PI * (double)(step - 1) / (double)total_steps));
            clf_adamw(net.params, w.grad, adam_m, adam_v, net.num_params, lr, step);
        }
        const double elapsed = dt_now() - t0;
        const double ips = elapsed > 0 ? (double)(epoch + 1) * sp.n_train / elapsed : 0.0;
        events_emit(ev, "progress",
                    json_pack("{s:s, s:i, s:i, s:f, s:f, s:f, s:f}", "phase", "training", "step",
                              epoch + 1, "total_steps", o->epochs, "loss", loss_sum / sp.n_train,
                              "train_accuracy", (double)hits / sp.n_train,
                              "images_per_second", ips,
                              "eta_seconds",
                              ips > 0 ? (double)(o->epochs - epoch - 1) * sp.n_train / ips : 0.0));
    }
    const double train_acc = clf_accuracy(&net, &w, ds, sp.train, sp.n_train, labels);
    const double held_acc =
        sp.n_held ? clf_accuracy(&net, &w, ds, sp.held, sp.n_held, labels) : train_acc;
    events_emit(ev, "metric", json_pack("{s:s, s:f, s:f, s:i, s:i}", "name", "classifier",
                                        "train_accuracy", train_acc, "held_out_accuracy", held_acc,
                                        "train_images", sp.n_train, "held_out_images", sp.n_held));
    char buf[5][32];
    const char *kv[17];
    clf_meta(ds, o->dataset, train_acc, held_acc, buf, &names, kv);
    if (clf_net_save(&net, out_path, kv, err, errlen) != 0) goto done;
    if (held_out_accuracy) *held_out_accuracy = held_acc;
    rc = 0;
done:
    free(names);
    free(labels);
    free(adam_m);
    free(adam_v);
    clf_split_free(&sp);
    clf_work_free(&w);
    clf_net_free(&net);
    return rc;
}
