/* job_files.c — a job's files: sample grids and checkpoints, listed from the store's artifact
 * rows and served by name (never by a path from the URL). */
#include <stdio.h>
#include <string.h>

#include "http.h"

/* Adds the "url" of a listed file of the request's job. */
static void job_files_url(api_req *r, json_t *a, const char *segment) {
    char url[512];
    snprintf(url, sizeof url, "/jobs/%s/%s/%s", r->params[0], segment,
             json_string_value(json_object_get(a, "name")));
    json_object_set_new(a, "url", json_string(url));
}

/* The artifact list with a "url" for each entry; checkpoints also say whether and why they
 * are kept (store_checkpoint_list). */
static void job_files_list(api_req *r, dt_artifact_kind kind, const char *segment) {
    char err[512];
    json_t *out = NULL;
    int rc = kind == DT_ARTIFACT_CHECKPOINT
                 ? store_checkpoint_list(r->api->opts.store, r->params[0], &out, err, sizeof err)
                 : store_artifact_list(r->api->opts.store, r->params[0], kind, &out, err, sizeof err);
    if (rc) {
        api_reply_store_error(r, rc, NULL, err);
        return;
    }
    size_t i;
    json_t *a;
    json_array_foreach(json_object_get(out, "data"), i, a) job_files_url(r, a, segment);
    api_reply_json(r, 200, out, NULL);
}

static void job_files_serve(api_req *r, dt_artifact_kind kind, const char *content_type, int attach) {
    char err[512];
    json_t *job = NULL;
    int rc = store_job_get(r->api->opts.store, r->params[0], &job, err, sizeof err);
    json_decref(job);
    if (rc) {
        api_reply_store_error(r, rc, NULL, err);
        return;
    }
    dt_artifact a;
    rc = store_artifact_get(r->api->opts.store, r->params[0], kind, r->params[1], &a, err, sizeof err);
    if (rc == DT_STORE_NOT_FOUND) {
        api_reply_error(r, 404, "not_found", NULL, "job %s has no %s named '%s'", r->params[0],
                        store_artifact_kind_name(kind), r->params[1]);
        return;
    }
    if (rc) {
        api_reply_store_error(r, rc, NULL, err);
        return;
    }
    api_serve_file(r, a.path, content_type, a.sha256, attach ? a.name : NULL);
}

void api_jobs_samples(api_req *r) { job_files_list(r, DT_ARTIFACT_SAMPLE, "samples"); }

void api_jobs_sample_file(api_req *r) { job_files_serve(r, DT_ARTIFACT_SAMPLE, "image/png", 0); }

void api_jobs_checkpoints(api_req *r) { job_files_list(r, DT_ARTIFACT_CHECKPOINT, "checkpoints"); }

void api_jobs_checkpoint_file(api_req *r) {
    job_files_serve(r, DT_ARTIFACT_CHECKPOINT, "application/octet-stream", 1);
}

/* Pins or unpins; 200 with the checkpoint as the list shows it now. An unpinned checkpoint
 * that nothing else keeps (kept_because []) is deleted by the supervisor right after. */
static void job_files_pin(api_req *r, int pinned) {
    char err[512];
    json_t *c = NULL;
    int rc = store_checkpoint_pin(r->api->opts.store, r->params[0], r->params[1], pinned, &c, err,
                                  sizeof err);
    if (rc) {
        api_reply_store_error(r, rc, NULL, err);
        return;
    }
    if (!pinned && r->api->opts.checkpoints_changed)
        r->api->opts.checkpoints_changed(r->api->opts.hook_ctx, r->params[0]);
    job_files_url(r, c, "checkpoints");
    api_reply_json(r, 200, c, NULL);
}

void api_jobs_checkpoint_pin(api_req *r) { job_files_pin(r, 1); }

void api_jobs_checkpoint_unpin(api_req *r) { job_files_pin(r, 0); }
