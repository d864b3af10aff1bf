/* train_util.h — helpers shared by the training tests: small specs, synthetic data, and
 * reading back the event stream. */
#ifndef DT_TRAIN_UTIL_H
#define DT_TRAIN_UTIL_H

#include <jansson.h>
#include <string.h>

#include "check.h"
#include "spec.h"
#include "synth.h"
#include "train.h"

/* Copies src into a fixed-size spec field, truncating (test paths are short). */
static inline void tu_set_str(char *dst, size_t cap, const char *src) {
    size_t n = strlen(src);
    if (n >= cap) n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

/* A tiny pretraining spec on dataset path. */
static inline void tu_tiny_spec(dt_spec *s, const char *dataset, int image, int steps, int batch) {
    spec_defaults(s);
    s->method = DT_METHOD_PRETRAIN;
    tu_set_str(s->dataset, sizeof s->dataset, dataset);
    snprintf(s->model.arch, sizeof s->model.arch, "custom");
    s->model.depth = 2;
    s->model.hidden_size = 32;
    s->model.num_heads = 2;
    s->model.patch_size = 2;
    s->model.image_size = image;
    s->model.channels = 3;
    s->hp.steps = steps;
    s->hp.batch_size = batch;
    s->hp.learning_rate = 1e-3;
    s->hp.ema_decay = 0.9;
    s->checkpoint.every = steps;
    s->eval.sample_every = 0;
    snprintf(s->device, sizeof s->device, "cpu");
}

/* Runs train_run with events captured in a memory stream; returns its code, *events_out the
 * text (caller frees). */
static inline int tu_run(const dt_spec *s, const char *out, const char *bank, int stop_after,
                         char **events_out) {
    size_t len = 0;
    char *buf = NULL;
    FILE *f = open_memstream(&buf, &len);
    dt_events ev = {.out = f};
    dt_train_opts o = {.out_dir = out, .bank_dir = bank, .log_every = 1, .stop_after = stop_after,
                       .grid_size = 4, .events = &ev};
    char err[1024] = "";
    int rc = train_run(s, &o, err, sizeof err);
    fclose(f);
    if (rc < 0) fprintf(stderr, "train_run: %s\n", err);
    *events_out = buf;
    return rc;
}

/* Parses events (JSON Lines) one object at a time; stops early when visit returns non-zero and
 * then hands that object (a new reference) back, else returns NULL. */
static inline json_t *tu_each_event(const char *events, int (*visit)(json_t *o, void *ctx), void *ctx) {
    const char *line = events;
    while (line && *line) {
        const char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        json_t *o = json_loadb(line, len, 0, NULL);
        if (o && visit(o, ctx)) return o;
        json_decref(o);
        line = nl ? nl + 1 : NULL;
    }
    return NULL;
}

typedef struct {
    double *losses;
    int max_step, n;
} tu_loss_ctx;

static inline int tu_visit_loss(json_t *o, void *ctx) {
    tu_loss_ctx *c = ctx;
    const char *type = json_string_value(json_object_get(o, "type"));
    const char *phase = json_string_value(json_object_get(o, "phase"));
    if (type && phase && !strcmp(type, "progress") && !strcmp(phase, "training")) {
        int step = (int)json_integer_value(json_object_get(o, "step"));
        if (step >= 0 && step <= c->max_step) {
            c->losses[step] = json_real_value(json_object_get(o, "loss"));
            c->n++;
        }
    }
    return 0;
}

/* Collects the "loss" of training progress events, indexed by step (losses[step]); returns how
 * many there were. */
static inline int tu_losses(const char *events, double *losses, int max_step) {
    tu_loss_ctx c = {losses, max_step, 0};
    tu_each_event(events, tu_visit_loss, &c);
    return c.n;
}

typedef struct {
    const char *type, *name;
} tu_find_ctx;

static inline int tu_visit_find(json_t *o, void *ctx) {
    tu_find_ctx *c = ctx;
    const char *t = json_string_value(json_object_get(o, "type"));
    const char *nm = json_string_value(json_object_get(o, "name"));
    return t && !strcmp(t, c->type) && (!c->name || (nm && !strcmp(nm, c->name)));
}

/* The first event of type whose "name" (when given) matches; new reference or NULL. */
static inline json_t *tu_find_event(const char *events, const char *type, const char *name) {
    tu_find_ctx c = {type, name};
    return tu_each_event(events, tu_visit_find, &c);
}

/* 1 when two files have identical bytes. */
static inline int tu_same_file(const char *a, const char *b) {
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    int same = fa && fb;
    while (same) {
        int ca = fgetc(fa), cb = fgetc(fb);
        if (ca != cb) same = 0;
        if (ca == EOF || cb == EOF) break;
    }
    if (fa) fclose(fa);
    if (fb) fclose(fb);
    return same;
}

#endif
