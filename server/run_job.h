/* run_job.h — the pieces of `difftune run-job` (cmd_run_job.c) that its method-specific parts
 * share: the exit statuses, the parsed arguments, what the job's ids resolved to, and the
 * rejection of bad input before any work starts. The forgetting curve's part is
 * run_job_forgetting.c.
 */
#ifndef DT_RUN_JOB_H
#define DT_RUN_JOB_H

#include <stddef.h>

#include <jansson.h>

#include "events.h"
#include "spec.h"
#include "store.h"

/* Exit statuses, as `difftune train`'s (the supervisor's exit table, supervisor.h). */
#define RUN_JOB_OK 0
#define RUN_JOB_FAILED 1
#define RUN_JOB_INVALID 2
#define RUN_JOB_STOPPED 3

typedef struct {
    const char *job_id;
    const char *data_dir;
    const char *device; /* NULL = the job's claimed device */
    const char *inception_weights; /* NULL = FID unavailable */
    long log_every;
    long min_free_mb;  /* free-space reserve kept by checkpoint writes (--min-free-mb) */
} run_job_args;

/* What the stored job resolved to, besides the spec's own ids turned into paths. */
typedef struct {
    char device[64];        /* the device the job was claimed for; "" = none */
    char classifier[4096];  /* the file of an eval.extractor "classifier:mdl_..."; "" = none */
    char checkpoint[4096];  /* forgetting_curve: the file of forgetting.checkpoint; "" = none */
} run_job_inputs;

/* Reports a problem found before the work: a message on stderr for the log and an "error" event
 * on stdout for the supervisor (which records code as the job's error). Returns status. */
int run_job_reject(dt_events *ev, int status, const char *code, const char *message);

/* forgetting_curve: the file forgetting.checkpoint names, into path (pathlen bytes; "" for other
 * methods). A job id is the newest complete checkpoint under DIR/jobs/<id>/checkpoints (invalid
 * input while it has none), a model id the model's file, anything else is taken as a path.
 * st is the open store. Returns 0 or the run-job exit status (after run_job_reject). */
int run_job_forgetting_checkpoint(dt_store *st, const char *data_dir, json_t *spec, char *path,
                                  size_t pathlen, dt_events *ev);

/* Runs a forgetting_curve job (spec's base_model and dataset are paths); returns the exit
 * status. stop is the worker's stop flag. */
int run_job_forgetting(const run_job_args *a, const dt_spec *spec, const run_job_inputs *in,
                       dt_events *ev, volatile int *stop);

#endif
