/* jobs.c — the job resource: create (validated, idempotent), list, get, cancel, retry, and
 * the job's metrics. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dit.h"
#include "fsutil.h"
#include "http.h"
#include "peft.h"
#include "spec.h"

#define JOBS_IDEMPOTENCY_KEY_MAX 255

static void jobs_wake(api_req *r) {
    if (r->api->opts.wake) r->api->opts.wake(r->api->opts.hook_ctx);
}

/* The store wrote events of job id on our behalf (a create's queued status, a cancel, a retry). */
static void jobs_stored(api_req *r, const char *id) {
    if (r->api->opts.stored) r->api->opts.stored(r->api->opts.hook_ctx, id);
}

/* The evaluation series whose newest points the job object carries as "evaluation". */
static const char *const jobs_eval_series[] = {"fid", "fd_classifier", "classifier_accuracy"};

/* Replies with the job (status) or the store's error. The store hands out the JSON text, so
 * the hot GET /jobs/{id} never parses and re-encodes the spec; the newest point of each
 * evaluation series is spliced in as "evaluation" ({} before the first evaluation). */
static void jobs_reply_job(api_req *r, int status, const char *id, const char *const *headers) {
    char err[512], *text = NULL, *eval_text = NULL;
    size_t len = 0;
    json_t *eval = NULL;
    int rc = store_job_get_text(r->api->opts.store, id, &text, &len, err, sizeof err);
    if (!rc)
        rc = store_metric_latest(r->api->opts.store, id, jobs_eval_series,
                                 (int)(sizeof jobs_eval_series / sizeof jobs_eval_series[0]),
                                 &eval, err, sizeof err);
    if (rc) {
        free(text);
        api_reply_store_error(r, rc, NULL, err);
        return;
    }
    eval_text = json_dumps(eval, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(16));
    json_decref(eval);
    size_t en = eval_text ? strlen(eval_text) : 0;
    char *joined = en && len ? realloc(text, len + en + 16) : NULL;
    if (!joined) {
        free(eval_text);
        free(text);
        api_reply_error(r, 500, "internal_error", NULL, "out of memory");
        return;
    }
    /* {...,"spec":{...}} -> {...,"spec":{...},"evaluation":{...}} */
    memcpy(joined + len - 1, ",\"evaluation\":", 14);
    memcpy(joined + len + 13, eval_text, en);
    joined[len + 13 + en] = '}';
    joined[len + 14 + en] = '\0';
    free(eval_text);
    api_reply_text(r, status, joined, len + 14 + en, headers);
}

/* Checks that a referenced dataset or model id is well formed and exists (and that a
 * base_model is a DiT, a vae a VAE). */
static int jobs_check_ref(api_req *r, const char *param, const char *id, const char *prefix) {
    if (!api_id_valid(id, prefix)) {
        api_reply_error(r, 400, "invalid_value", param, "%s must be the id of an uploaded %s (%s...), not '%.80s'",
                        param, !strcmp(prefix, "ds_") ? "dataset" : "model", prefix, id);
        return -1;
    }
    char err[512];
    json_t *obj = NULL;
    dt_store *st = r->api->opts.store;
    int rc = !strcmp(prefix, "ds_") ? store_dataset_get(st, id, &obj, err, sizeof err)
                                    : store_model_get(st, id, &obj, err, sizeof err);
    if (rc == DT_STORE_NOT_FOUND) {
        api_reply_error(r, 404, "not_found", param, "no %s with id %s", param, id);
        return -1;
    }
    if (rc) {
        api_reply_store_error(r, rc, param, err);
        json_decref(obj);
        return -1;
    }
    /* A base model is fine-tuned: it must be a DiT, not a classifier or a VAE. */
    const char *kind = json_string_value(json_object_get(obj, "kind"));
    if (!strcmp(param, "base_model") && kind && strcmp(kind, "dit") != 0) {
        api_reply_error(r, 400, "invalid_value", param, "%s %s is a %s, not a DiT checkpoint to "
                        "fine-tune", param, id, kind);
        json_decref(obj);
        return -1;
    }
    if (!strcmp(param, "vae") && (!kind || strcmp(kind, "vae") != 0)) {
        api_reply_error(r, 400, "invalid_value", param, "%s %s is a %s, not a VAE (upload the SD "
                        "VAE's diffusion_pytorch_model.safetensors with POST /models)", param, id,
                        kind ? kind : "model of unknown kind");
        json_decref(obj);
        return -1;
    }
    json_decref(obj);
    return 0;
}

/* An integer of a stored model's config, or -1 when the model or the key is not there. */
static long jobs_model_config_int(api_req *r, const char *id, const char *key) {
    char err[512];
    json_t *model = NULL;
    long v = -1;
    if (store_model_get(r->api->opts.store, id, &model, err, sizeof err) == DT_STORE_OK) {
        json_t *x = json_object_get(json_object_get(model, "config"), key);
        if (json_is_integer(x)) v = (long)json_integer_value(x);
    }
    json_decref(model);
    return v;
}

/* Pixel or latent space (after jobs_check_ref): a DiT that takes 4-channel latents (base_model's
 * in_channels, or model.channels for pretrain) needs a vae, and a vae's latent channels must be
 * the DiT's input channels. The worker checks the files again; this answers before queueing. */
static int jobs_check_space(api_req *r, const dt_spec *spec) {
    long channels = spec->method == DT_METHOD_PRETRAIN
                        ? spec->model.channels
                        : jobs_model_config_int(r, spec->base_model, "in_channels");
    if (channels < 0) return 0; /* a config without it: the worker decides */
    if (!spec->vae[0]) {
        if (channels != 4) return 0;
        if (spec->method == DT_METHOD_FORGETTING_CURVE) {
            api_reply_error(r, 400, "invalid_value", "vae",
                            "base_model %s is a latent DiT (4-channel latents, it needs a vae): "
                            "forgetting_curve measures pixel-space DiTs only for now",
                            spec->base_model);
            return -1;
        }
        api_reply_error(r, 400, "invalid_value", "vae",
                        "%s %s takes 4-channel latents: a latent DiT needs vae, the id of the VAE "
                        "whose latents it models (the SD VAE uploaded with POST /models)",
                        spec->base_model[0] ? "base_model" : "model.channels",
                        spec->base_model[0] ? spec->base_model : "4");
        return -1;
    }
    long latent = jobs_model_config_int(r, spec->vae, "latent_channels");
    if (latent < 0 || latent == channels) return 0;
    api_reply_error(r, 400, "invalid_value", "vae",
                    "vae %s makes %ld-channel latents but the DiT (%s) takes %ld channels",
                    spec->vae, latent, spec->base_model[0] ? spec->base_model : "model.channels",
                    channels);
    return -1;
}

/* The DiT a job trains: the base model's stored config (fine-tuning, forgetting_curve), or the
 * spec's model with the dataset's class count when it names none (pretrain). Returns 1 with cfg
 * filled, 0 when a stored config lacks what it takes (an upload from before configs were
 * recorded: the worker reads the file). */
static int jobs_dit_config(api_req *r, const dt_spec *spec, dit_config *cfg) {
    char err[512];
    json_t *obj = NULL;
    int ok = 0;
    if (spec->method == DT_METHOD_PRETRAIN) {
        long classes = spec->model.num_classes;
        if (!classes && store_dataset_get(r->api->opts.store, spec->dataset, &obj, err, sizeof err) == 0)
            classes = json_is_integer(json_object_get(obj, "classes"))
                          ? (long)json_integer_value(json_object_get(obj, "classes")) : 0;
        ok = classes > 0 &&
             dit_config_init(cfg, spec->model.depth, spec->model.hidden_size, spec->model.num_heads,
                             spec->model.patch_size, spec->model.image_size, spec->model.channels,
                             (int)classes, spec->model.learn_sigma, err, sizeof err) == 0;
    } else if (store_model_get(r->api->opts.store, spec->base_model, &obj, err, sizeof err) == 0) {
        static const char *const keys[] = {"depth", "hidden_size", "num_heads", "patch_size",
                                           "image_size", "in_channels", "num_classes"};
        json_t *c = json_object_get(obj, "config");
        int v[7];
        ok = json_is_boolean(json_object_get(c, "learn_sigma"));
        for (int i = 0; ok && i < 7; i++) {
            json_t *x = json_object_get(c, keys[i]);
            ok = json_is_integer(x) && json_integer_value(x) > 0 && json_integer_value(x) <= 1 << 24;
            if (ok) v[i] = (int)json_integer_value(x);
        }
        ok = ok && dit_config_init(cfg, v[0], v[1], v[2], v[3], v[4], v[5], v[6],
                                   json_is_true(json_object_get(c, "learn_sigma")), err,
                                   sizeof err) == 0;
    }
    json_decref(obj);
    return ok;
}

/* The parameters of the job's DiT and those it trains, into o (left 0 when the DiT is not known
 * here). A peft's options must fit the base model: a misfit is a 400 naming the option (the
 * engine's message, e.g. difffit_blocks beyond the depth or a rank above a layer's size). */
static int jobs_parameters(api_req *r, const dt_spec *spec, dt_job_create_opts *o) {
    dit_config cfg;
    if (!jobs_dit_config(r, spec, &cfg)) return 0;
    const size_t total = dit_count_params(&cfg);
    size_t trainable = total;
    if (spec->method == DT_METHOD_FORGETTING_CURVE) {
        trainable = 0; /* an analysis: nothing trains */
    } else if (spec->peft.kind != DT_PEFT_NONE) {
        dit_adapter ad;
        char err[256];
        if (peft_adapter_init(&ad, &cfg, &spec->peft, err, sizeof err)) {
            /* the engine's message starts with the option's path */
            char param[64] = "peft_options";
            const char *at = strstr(err, "peft_options.");
            if (at) {
                size_t n = strspn(at, "abcdefghijklmnopqrstuvwxyz_.");
                if (n > 0 && at[n - 1] == '.') n--;
                snprintf(param, sizeof param, "%.*s", (int)n, at);
            }
            api_reply_error(r, 400, "invalid_value", param, "%s (base_model %s)", err,
                            spec->base_model);
            return -1;
        }
        trainable = ad.num_floats;
        peft_adapter_free(&ad);
    }
    o->params_total = (int64_t)total;
    o->params_trainable = (int64_t)trainable;
    return 0;
}

/* eval.extractor "classifier:<id>" must name a stored classifier model: the API takes ids, never
 * server paths. */
static int jobs_check_classifier(api_req *r, const dt_spec *spec) {
    const char *ref = spec_eval_classifier(spec);
    if (!ref) return 0;
    if (!api_id_valid(ref, "mdl_")) {
        api_reply_error(r, 400, "invalid_value", "eval.extractor",
                        "eval.extractor must be \"inception\" or \"classifier:<model id>\" with the "
                        "id of an uploaded classifier (mdl_...), not '%.80s'", spec->eval.extractor);
        return -1;
    }
    char err[512];
    json_t *model = NULL;
    int rc = store_model_get(r->api->opts.store, ref, &model, err, sizeof err);
    if (rc == DT_STORE_NOT_FOUND) {
        api_reply_error(r, 404, "not_found", "eval.extractor", "no model with id %s", ref);
        return -1;
    }
    if (rc) {
        api_reply_store_error(r, rc, "eval.extractor", err);
        return -1;
    }
    const char *kind = json_string_value(json_object_get(model, "kind"));
    if (kind && strcmp(kind, "classifier")) {
        api_reply_error(r, 400, "invalid_value", "eval.extractor",
                        "eval.extractor: model %s is a %s, not a classifier (upload a classifier "
                        "file trained by difftune)", ref, kind);
        json_decref(model);
        return -1;
    }
    json_decref(model);
    return 0;
}

/* forgetting_curve: forgetting.checkpoint names the fine-tuned model to measure, a job of this
 * server (any status: its newest checkpoint is taken when the analysis runs) or an uploaded DiT.
 * Whether it has the base model's architecture is checked by the worker (invalid_input). */
static int jobs_check_forgetting(api_req *r, const dt_spec *spec) {
    static const char *const param = "forgetting.checkpoint";
    const char *ref = spec->forgetting.checkpoint;
    if (spec->method != DT_METHOD_FORGETTING_CURVE) return 0;
    int is_job = api_id_valid(ref, "job_");
    if (!is_job && !api_id_valid(ref, "mdl_")) {
        api_reply_error(r, 400, "invalid_value", param,
                        "%s must be the id of a job (job_...), whose newest checkpoint is measured, "
                        "or of an uploaded DiT model (mdl_...), not '%.80s'", param, ref);
        return -1;
    }
    char err[512];
    json_t *obj = NULL;
    dt_store *st = r->api->opts.store;
    int rc = is_job ? store_job_get(st, ref, &obj, err, sizeof err)
                    : store_model_get(st, ref, &obj, err, sizeof err);
    if (rc == DT_STORE_NOT_FOUND) {
        api_reply_error(r, 404, "not_found", param, "%s: no %s with id %s", param,
                        is_job ? "job" : "model", ref);
        return -1;
    }
    if (rc) {
        api_reply_store_error(r, rc, param, err);
        json_decref(obj);
        return -1;
    }
    const char *method = json_string_value(json_object_get(obj, "method"));
    const char *kind = json_string_value(json_object_get(obj, "kind"));
    int bad = 0;
    if (is_job && method && !strcmp(method, spec_method_name(DT_METHOD_FORGETTING_CURVE))) {
        api_reply_error(r, 400, "invalid_value", param,
                        "%s: job %s is a forgetting_curve analysis, which writes no checkpoints; "
                        "name the job that trained the model", param, ref);
        bad = -1;
    } else if (!is_job && kind && strcmp(kind, "dit") != 0) {
        api_reply_error(r, 400, "invalid_value", param,
                        "%s: model %s is a %s, not a DiT checkpoint", param, ref, kind);
        bad = -1;
    }
    json_decref(obj);
    return bad;
}

/* The device a job asks for must be "auto" or one this server runs. */
static int jobs_check_device(api_req *r, const char *device) {
    if (!strcmp(device, "auto")) return 0;
    for (int i = 0; i < r->api->opts.n_devices; i++)
        if (!strcmp(device, r->api->opts.devices[i])) return 0;
    char have[256] = "";
    for (int i = 0; i < r->api->opts.n_devices; i++) {
        size_t n = strlen(have);
        snprintf(have + n, sizeof have - n, "%s\"%s\"", i ? ", " : "", r->api->opts.devices[i]);
    }
    api_reply_error(r, 400, "invalid_value", "device",
                    "device \"%s\" is not served here; use \"auto\" or one of %s", device, have);
    return -1;
}

int api_idempotency_key_valid(const char *key) {
    size_t n = strlen(key);
    int ok = n >= 1 && n <= JOBS_IDEMPOTENCY_KEY_MAX;
    for (size_t i = 0; ok && i < n; i++) ok = key[i] > 32 && key[i] < 127;
    return ok;
}

/* The Idempotency-Key header: absent, or valid (api_idempotency_key_valid). */
static int jobs_idempotency_key(api_req *r, const char **key) {
    *key = api_header(r, "Idempotency-Key");
    if (!*key) return 0;
    if (!api_idempotency_key_valid(*key)) {
        api_reply_error(r, 400, "invalid_value", "Idempotency-Key",
                        "Idempotency-Key must be 1 to %d visible ASCII characters", JOBS_IDEMPOTENCY_KEY_MAX);
        return -1;
    }
    return 0;
}

void api_jobs_create(api_req *r) {
    const char *key;
    if (jobs_idempotency_key(r, &key)) return;
    dt_spec spec;
    dt_spec_error se;
    if (spec_parse(&spec, r->body ? r->body : "", r->body_len, &se)) {
        api_reply_error(r, 400, se.code, se.param, "%s", se.message);
        return;
    }
    if (jobs_check_ref(r, "dataset", spec.dataset, "ds_")) return;
    if (spec.base_model[0] && jobs_check_ref(r, "base_model", spec.base_model, "mdl_")) return;
    if (spec.vae[0] && jobs_check_ref(r, "vae", spec.vae, "mdl_")) return;
    if (jobs_check_space(r, &spec)) return;
    if (jobs_check_classifier(r, &spec)) return;
    if (jobs_check_forgetting(r, &spec)) return;
    if (jobs_check_device(r, spec.device)) return;
    dt_job_create_opts o = {.idempotency_key = key};
    if (jobs_parameters(r, &spec, &o)) return;

    json_t *full = spec_to_json(&spec);
    if (!full) {
        api_reply_error(r, 500, "internal_error", NULL, "out of memory");
        return;
    }
    /* The request hash covers the normalised spec, so the same request sent with other
     * whitespace or key order is the same request. */
    char hash[65] = "";
    char *canon = json_dumps(full, JSON_COMPACT | JSON_SORT_KEYS);
    if (canon) fs_sha256_hex(canon, strlen(canon), hash);
    free(canon);
    o.request_hash = hash;
    char id[DT_STORE_ID_MAX], err[512];
    int replayed = 0;
    int rc = store_job_create(r->api->opts.store, full, &o, id, &replayed, err, sizeof err);
    json_decref(full);
    if (rc == DT_STORE_CONFLICT && key) {
        api_reply_error(r, 409, "idempotency_conflict", "Idempotency-Key",
                        "this Idempotency-Key was used for a different request: %s", err);
        return;
    }
    if (rc) {
        api_reply_store_error(r, rc, NULL, err);
        return;
    }
    char location[64];
    snprintf(location, sizeof location, "/jobs/%s", id);
    const char *headers[] = {"Location", location, replayed ? "Idempotent-Replayed" : NULL, "true", NULL};
    if (!replayed) {
        jobs_stored(r, id);
        jobs_wake(r);
    }
    jobs_reply_job(r, 201, id, headers);
}

void api_jobs_list(api_req *r) {
    int64_t limit;
    if (api_query_int(r, "limit", 1, DT_STORE_LIST_MAX, 20, &limit)) return;
    const char *status = api_query(r, "status"), *after = api_query(r, "after");
    dt_job_status st;
    if (status && store_job_status_parse(status, &st)) {
        api_reply_error(r, 400, "invalid_value", "status",
                        "status must be queued, running, succeeded, failed or cancelled");
        return;
    }
    if (after && !api_id_valid(after, "job_")) {
        api_reply_error(r, 400, "invalid_value", "after", "after must be the last_id of a previous page");
        return;
    }
    char err[512];
    json_t *page = NULL;
    int rc = store_job_list(r->api->opts.store, status, (int)limit, after, &page, err, sizeof err);
    if (rc) api_reply_store_error(r, rc, rc == DT_STORE_INVALID ? "after" : NULL, err);
    else api_reply_json(r, 200, page, NULL);
}

void api_jobs_get(api_req *r) { jobs_reply_job(r, 200, r->params[0], NULL); }

/* A state change of the job named in the path: 409 invalid_state when its status forbids it;
 * otherwise its streams and the scheduler are woken and the job is the answer. */
static void jobs_transition(api_req *r, int (*change)(dt_store *, const char *, char *, size_t)) {
    const char *id = r->params[0];
    char err[512];
    int rc = change(r->api->opts.store, id, err, sizeof err);
    if (rc == DT_STORE_CONFLICT) {
        api_reply_error(r, 409, "invalid_state", NULL, "%s", err);
        return;
    }
    if (rc) {
        api_reply_store_error(r, rc, NULL, err);
        return;
    }
    api_notify(r->api, id);
    jobs_stored(r, id);
    jobs_wake(r);
    jobs_reply_job(r, 200, id, NULL);
}

static int jobs_cancel(dt_store *s, const char *id, char *err, size_t errlen) {
    return store_job_cancel(s, id, NULL, err, errlen);
}

void api_jobs_cancel(api_req *r) { jobs_transition(r, jobs_cancel); }

void api_jobs_retry(api_req *r) { jobs_transition(r, store_job_retry); }

void api_jobs_metrics(api_req *r) {
    const char *name = api_query(r, "name");
    char err[512];
    json_t *out = NULL;
    int rc = store_metric_list(r->api->opts.store, r->params[0], name, &out, err, sizeof err);
    if (rc) api_reply_store_error(r, rc, NULL, err);
    else api_reply_json(r, 200, out, NULL);
}
