/* models.c — the model resource: upload a safetensors DiT checkpoint (official or diffusers
 * layout; ?input_size= and ?num_heads= for a file that does not say them), difftune classifier or
 * SD VAE (kind "dit", "classifier" or "vae", ingest_model tells them apart), or promote a job's
 * checkpoint (JSON body {"job","checkpoint","name"?,"merge"?}: a PEFT job's checkpoint is kept
 * as its adapter on the base model, or with "merge": true exported as the merged plain DiT); all
 * are validated (tensor names, shapes, config) before the model is stored. List, get, delete. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint.h"
#include "fsutil.h"
#include "http.h"
#include "ingest.h"
#include "layout.h"

/* Copies src to dst (a new file), hard-linking when both are on one file system. Returns 0, or
 * -1 (FS_NO_SPACE when the disk is full) with a message; a failed copy leaves no dst. */
static int models_copy(const char *src, const char *dst, char *err, size_t errlen) {
    if (!link(src, dst)) return 0;
    int in = open(src, O_RDONLY | O_CLOEXEC), out = -1;
    if (in < 0 || (out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644)) < 0) {
        snprintf(err, errlen, "cannot copy the checkpoint: %s", strerror(errno));
        if (in >= 0) close(in);
        return -1;
    }
    char buf[1 << 16];
    ssize_t n;
    int bad = 0;
    while (!bad && (n = read(in, buf, sizeof buf)) != 0) {
        if (n < 0) {
            if (errno == EINTR) continue;
            bad = 1;
            break;
        }
        for (ssize_t w = 0; !bad && w < n;) {
            ssize_t k = write(out, buf + w, (size_t)(n - w));
            if (k < 0 && errno == EINTR) continue;
            if (k <= 0) bad = 1;
            else w += k;
        }
    }
    if (!bad && fsync(out)) bad = 1;
    close(in);
    if (close(out)) bad = 1;
    if (bad) {
        int e = errno;
        snprintf(err, errlen, "cannot copy the checkpoint: %s", strerror(e));
        unlink(dst);
        return fs_errno_no_space(e) ? FS_NO_SPACE : -1;
    }
    return 0;
}

/* Validates the model file now at DIR/models/{id}/model.safetensors and stores its row; replies
 * 201 with the model, or the error (removing the directory). */
static void models_finish(api_req *r, const char *id, const char *dir, const char *file, const char *name,
                          const char *source_job, const char *source_checkpoint,
                          const dt_ingest_model_opts *opts) {
    char err[1024];
    dt_ingest_model info = {0};
    int rc = ingest_model(file, opts, &info, err, sizeof err);
    if (rc) {
        ingest_remove_tree(dir);
        /* a promoted file is the job's checkpoint, not an upload */
        const char *param = source_job && info.param && !strcmp(info.param, "file") ? "checkpoint" : info.param;
        if (rc == DT_INGEST_INVALID) api_reply_error(r, 422, "invalid_model", param, "%s", err);
        else if (rc == DT_INGEST_NO_SPACE) api_reply_error(r, 507, "disk_full", NULL, "%s", err);
        else api_reply_error(r, 500, "internal_error", NULL, "%s", err);
        return;
    }
    dt_model_new m = {.id = id, .name = name, .path = file, .kind = info.kind, .config = info.config,
                      .source_job = source_job, .source_checkpoint = source_checkpoint,
                      .bytes = info.bytes, .sha256 = info.sha256};
    char stored[DT_STORE_ID_MAX];
    rc = store_model_create(r->api->opts.store, &m, stored, err, sizeof err);
    json_decref(info.config);
    if (rc) {
        ingest_remove_tree(dir);
        api_reply_store_error(r, rc, source_job ? "job" : NULL, err);
        return;
    }
    api_reply_created(r, "/models", id, store_model_get);
}

/* Makes DIR/models/{id}/ and names the model file in it. */
static int models_prepare(api_req *r, char id[DT_STORE_ID_MAX], char *dir, char *file, size_t len) {
    char err[512];
    if (store_new_id("mdl_", id, DT_STORE_ID_MAX) ||
        api_data_path(r->api, dir, len, "%s/%s", DT_LAYOUT_MODELS, id) ||
        api_data_path(r->api, file, len, "%s/%s/%s", DT_LAYOUT_MODELS, id, DT_LAYOUT_MODEL_FILE) ||
        fs_mkdirs(dir, err, sizeof err)) {
        api_reply_error(r, 500, "internal_error", NULL, "cannot make the model's directory");
        return -1;
    }
    return 0;
}

/* A string member of the promote request: required, a string. */
static const char *models_field(api_req *r, json_t *body, const char *key, int required) {
    json_t *v = json_object_get(body, key);
    if (!v && !required) return NULL;
    if (!v) {
        api_reply_error(r, 400, "missing_field", key, "%s is required", key);
        return NULL;
    }
    if (!json_is_string(v)) {
        api_reply_error(r, 400, "invalid_type", key, "%s must be a string", key);
        return NULL;
    }
    return json_string_value(v);
}

static void models_promote(api_req *r) {
    json_t *body = api_body_json(r);
    if (!body) return;
    const char *key;
    json_t *v;
    json_object_foreach(body, key, v) {
        if (strcmp(key, "job") && strcmp(key, "checkpoint") && strcmp(key, "name") && strcmp(key, "merge")) {
            api_reply_error(r, 400, "unknown_field", key,
                            "unknown field %s: promote a checkpoint with {\"job\", \"checkpoint\", "
                            "\"name\", \"merge\"}", key);
            json_decref(body);
            return;
        }
    }
    json_t *merge_v = json_object_get(body, "merge");
    if (merge_v && !json_is_boolean(merge_v)) {
        api_reply_error(r, 400, "invalid_type", "merge", "merge must be true or false");
        json_decref(body);
        return;
    }
    const int merge = json_is_true(merge_v);
    const char *job = models_field(r, body, "job", 1);
    const char *ckpt = job ? models_field(r, body, "checkpoint", 1) : NULL;
    const char *name = ckpt ? models_field(r, body, "name", 0) : NULL;
    if (!job || !ckpt || r->responded) {
        json_decref(body);
        return;
    }
    if (name && !api_name_valid(name)) {
        api_reply_error(r, 400, "invalid_value", "name", "name must be 1 to 200 printable characters");
        json_decref(body);
        return;
    }
    char err[512], id[DT_STORE_ID_MAX], dir[4096], file[4096], dflt[400];
    dt_artifact a;
    json_t *j = NULL;
    int rc = store_job_get(r->api->opts.store, job, &j, err, sizeof err);
    json_decref(j);
    if (!rc) rc = store_artifact_get(r->api->opts.store, job, DT_ARTIFACT_CHECKPOINT, ckpt, &a, err, sizeof err);
    if (rc) {
        api_reply_store_error(r, rc, rc == DT_STORE_NOT_FOUND ? "checkpoint" : NULL, err);
        json_decref(body);
        return;
    }
    snprintf(dflt, sizeof dflt, "%.60s %.300s", job, ckpt);
    if (!models_prepare(r, id, dir, file, sizeof dir)) {
        /* merge: the plain DiT the checkpoint computes (a PEFT adapter merged into its base, a
         * plain checkpoint's EMA weights), written by the engine; else the file itself */
        int copied = merge ? checkpoint_export_merged(a.path, file, err, sizeof err)
                           : models_copy(a.path, file, err, sizeof err);
        if (copied) {
            ingest_remove_tree(dir);
            if (copied == FS_NO_SPACE) api_reply_error(r, 507, "disk_full", NULL, "%s", err);
            else if (merge) api_reply_error(r, 422, "invalid_model", "checkpoint", "%s", err);
            else api_reply_error(r, 404, "not_found", "checkpoint", "%s", err);
        } else {
            const dt_ingest_model_opts promoted = {.peft = 1};
            models_finish(r, id, dir, file, name ? name : dflt, job, ckpt, &promoted);
        }
    }
    json_decref(body);
}

void api_models_create(api_req *r) {
    if (!r->upload) {
        models_promote(r);
        return;
    }
    /* what a DiT file may not say itself (diffusers' layout stores no input size) */
    int64_t input_size, num_heads;
    if (api_query_int(r, "input_size", 1, 4096, 0, &input_size) ||
        api_query_int(r, "num_heads", 1, 1024, 0, &num_heads))
        return;
    const dt_ingest_model_opts opts = {.input_size = (int)input_size, .num_heads = (int)num_heads};
    const char *tmp = api_upload_require(r, "the safetensors file");
    if (!tmp) return;
    const char *name = api_upload_display_name(r, "model");
    if (!name) return;
    char id[DT_STORE_ID_MAX], dir[4096], file[4096];
    if (models_prepare(r, id, dir, file, sizeof dir)) return;
    if (rename(tmp, file)) {
        ingest_remove_tree(dir);
        api_reply_error(r, 500, "internal_error", NULL, "cannot store the model: %s", strerror(errno));
        return;
    }
    models_finish(r, id, dir, file, name, NULL, NULL, &opts);
}

void api_models_list(api_req *r) { api_catalog_list(r, "mdl_", store_model_list); }

void api_models_get(api_req *r) { api_catalog_get(r, store_model_get); }

/* The first stored PEFT model whose adapter is on model id (its config's peft.base_model), into
 * dep; 1 when there is one, 0 when none, -1 when the store failed (err). */
static int models_peft_dependent(api_req *r, const char *id, char dep[DT_STORE_ID_MAX], char *err,
                                 size_t errlen) {
    char after[DT_STORE_ID_MAX] = "";
    for (;;) {
        json_t *page = NULL;
        if (store_model_list(r->api->opts.store, DT_STORE_LIST_MAX, after[0] ? after : NULL, &page,
                             err, errlen))
            return -1;
        size_t i;
        json_t *m;
        int found = 0;
        json_array_foreach(json_object_get(page, "data"), i, m) {
            json_t *base = json_object_get(json_object_get(json_object_get(m, "config"), "peft"),
                                           "base_model");
            if (!found && json_is_string(base) && !strcmp(json_string_value(base), id)) {
                snprintf(dep, DT_STORE_ID_MAX, "%s", json_string_value(json_object_get(m, "id")));
                found = 1;
            }
        }
        const char *last = json_string_value(json_object_get(page, "last_id"));
        int more = json_is_true(json_object_get(page, "has_more")) && last;
        if (more) snprintf(after, sizeof after, "%s", last);
        json_decref(page);
        if (found || !more) return found;
    }
}

/* A model that a stored PEFT model adapts stays: that model holds only its adapter (409). */
void api_models_delete(api_req *r) {
    char dep[DT_STORE_ID_MAX], err[512];
    int rc = models_peft_dependent(r, r->params[0], dep, err, sizeof err);
    if (rc < 0) {
        api_reply_store_error(r, DT_STORE_ERROR, NULL, err);
        return;
    }
    if (rc) {
        api_reply_error(r, 409, "in_use", NULL, "model %s is the base of PEFT model %s, which holds "
                        "only an adapter on it: delete %s first (promote its checkpoint with "
                        "\"merge\": true for a model that stands alone)", r->params[0], dep, dep);
        return;
    }
    api_catalog_delete(r, "model", DT_LAYOUT_MODELS, store_model_delete, NULL);
}
