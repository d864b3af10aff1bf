/* run_job_forgetting.c — a worker's forgetting_curve job: forgetting.checkpoint resolved to a
 * file (a job's newest checkpoint, or a model's file), then engine/forgetting.h's analysis with
 * the job's settings, its events on stdout for the supervisor (run_job.h).
 *
 * The hybrid part samples and measures as a training job's evaluation would: eval.sampler,
 * eval.steps and eval.cfg, and eval.extractor (Inception with the weights the server gives its
 * workers, or a classifier model resolved to its file); reference statistics are cached under
 * DIR/eval-cache/ and shared with training jobs.
 */
#include <stdio.h>
#include <string.h>

#include "checkpoint.h"
#include "forgetting.h"
#include "layout.h"
#include "run_job.h"

_Static_assert(DT_SPEC_FORGETTING_BUCKETS_MAX == FORGETTING_MAX_BUCKETS,
               "forgetting.buckets is bounded by what the engine measures");

/* A store lookup of forgetting.checkpoint that failed: an unknown id is the job's input at fault
 * (the id was checked when the job was created, but a model can be deleted since). */
static int run_job_forgetting_store_fail(dt_events *ev, int rc, const char *ref, const char *err) {
    char msg[1024];
    snprintf(msg, sizeof msg, "forgetting.checkpoint %s: %s", ref, err);
    return rc == DT_STORE_NOT_FOUND ? run_job_reject(ev, RUN_JOB_INVALID, "invalid_input", msg)
                                    : run_job_reject(ev, RUN_JOB_FAILED, "store_error", msg);
}

/* The newest complete checkpoint of job ref (which the store has), into path. */
static int run_job_forgetting_job_checkpoint(const char *data_dir, const char *ref, char *path,
                                             size_t pathlen, dt_events *ev) {
    char dir[4200], msg[1024];
    snprintf(dir, sizeof dir, "%s/%s/%s/%s", data_dir, DT_LAYOUT_JOBS, ref, DT_LAYOUT_CHECKPOINTS);
    int step = checkpoint_latest(dir);
    if (step < 0) {
        snprintf(msg, sizeof msg, "forgetting.checkpoint: job %s has no checkpoint yet", ref);
        return run_job_reject(ev, RUN_JOB_INVALID, "invalid_input", msg);
    }
    checkpoint_path(path, pathlen, dir, step, "");
    events_log(ev, "info", "measuring job %s at its newest checkpoint, step %d", ref, step);
    return 0;
}

int run_job_forgetting_checkpoint(dt_store *st, const char *data_dir, json_t *spec, char *path,
                                  size_t pathlen, dt_events *ev) {
    const char *method = json_string_value(json_object_get(spec, "method"));
    const char *ref =
        json_string_value(json_object_get(json_object_get(spec, "forgetting"), "checkpoint"));
    path[0] = '\0';
    if (!method || strcmp(method, spec_method_name(DT_METHOD_FORGETTING_CURVE)) || !ref)
        return 0; /* not this method, or no checkpoint: spec_from_json reports that */
    char err[512];
    int rc;
    if (!strncmp(ref, "mdl_", 4)) {
        rc = store_model_path(st, ref, path, pathlen, err, sizeof err);
        if (rc != DT_STORE_OK) path[0] = '\0';
        return rc == DT_STORE_OK ? 0 : run_job_forgetting_store_fail(ev, rc, ref, err);
    }
    if (!strncmp(ref, "job_", 4)) {
        json_t *job = NULL;
        rc = store_job_get(st, ref, &job, err, sizeof err);
        json_decref(job);
        if (rc != DT_STORE_OK) return run_job_forgetting_store_fail(ev, rc, ref, err);
        return run_job_forgetting_job_checkpoint(data_dir, ref, path, pathlen, ev);
    }
    snprintf(path, pathlen, "%s", ref); /* a path: never from the API, which takes ids only */
    return 0;
}

/* The analysis options of the job's spec and what it resolved to (strings borrowed). */
static void run_job_forgetting_opts(dt_forgetting_opts *o, const run_job_args *a,
                                    const dt_spec *spec, const run_job_inputs *in,
                                    const char *eval_cache) {
    forgetting_opts_defaults(o);
    o->base_path = spec->base_model;
    o->finetuned_path = in->checkpoint[0] ? in->checkpoint : spec->forgetting.checkpoint;
    o->dataset_path = spec->dataset;
    o->device = in->device[0] ? in->device : spec->device;
    o->precision = spec->hp.precision;
    o->buckets = spec->forgetting.buckets;
    o->loss_images = spec->forgetting.loss_images;
    o->switch_points = spec->forgetting.switch_points;
    o->samples = spec->forgetting.samples;
    o->steps = spec->eval.steps;
    o->ddim = !strcmp(spec->eval.sampler, "ddim");
    o->cfg = spec->eval.cfg;
    const char *classifier = spec_eval_classifier(spec);
    if (classifier) {
        o->extractor_kind = "classifier";
        o->extractor_path = in->classifier[0] ? in->classifier : classifier;
        o->extractor_label = spec->eval.extractor; /* results name it by its id */
    } else {
        o->extractor_path = a->inception_weights; /* NULL: the hybrid curve is unavailable */
    }
    o->eval_cache_dir = eval_cache;
    o->seed = spec->hp.seed;
}

int run_job_forgetting(const run_job_args *a, const dt_spec *spec, const run_job_inputs *in,
                       dt_events *ev, volatile int *stop) {
    char eval_cache[4200], err[1024] = "";
    snprintf(eval_cache, sizeof eval_cache, "%s/%s", a->data_dir, DT_LAYOUT_EVAL_CACHE);
    dt_forgetting_opts o;
    run_job_forgetting_opts(&o, a, spec, in, eval_cache);
    o.events = ev;
    o.stop = stop;
    switch (forgetting_run(&o, err, sizeof err)) {
    case FORGETTING_OK: return RUN_JOB_OK;
    case FORGETTING_STOPPED: return RUN_JOB_STOPPED;
    case FORGETTING_INVALID:
        fprintf(stderr, "difftune run-job: %s: %s\n", a->job_id, err);
        return RUN_JOB_INVALID;
    default:
        fprintf(stderr, "difftune run-job: %s: %s\n", a->job_id, err);
        return RUN_JOB_FAILED;
    }
}
