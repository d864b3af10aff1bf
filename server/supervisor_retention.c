/* supervisor_retention.c — checkpoint retention applied (supervisor_internal.h). The store
 * decides which checkpoints of a job stay (store_checkpoint_prune: the newest
 * spec.checkpoint.keep, the best by the job's metric, every pinned one) and forgets the rest;
 * this file removes their files, and the optimizer-state companions of kept checkpoints that
 * are not among the newest (only those are ever resumed from). Workers delete nothing
 * themselves (run-job passes retention_by_caller), so this is the one place server jobs lose
 * checkpoints.
 *
 * Runs on the loop thread: after each checkpoint and evaluation event a worker sends, and for
 * the jobs other threads name through supervisor_checkpoints_changed (a pin was removed).
 * A download in progress keeps its open descriptor to a removed file, so it completes.
 */
#include "supervisor_internal.h"
#include "checkpoint.h"
#include "layout.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Removes path when it lies inside dir (the job's real directory); a file already gone is fine.
 * Returns 1 when a file was removed. */
static int sup_retention_unlink(const char *job_id, const char *dir, const char *path) {
    size_t n = strlen(dir);
    if (strncmp(path, dir, n) != 0 || path[n] != '/' || strstr(path, "/../")) {
        sup_log("job %s: retention refuses to delete %s, outside the job's directory", job_id,
                path);
        return 0;
    }
    if (unlink(path) == 0) return 1;
    if (errno != ENOENT)
        sup_log("job %s: deleting %s failed: %s", job_id, path, strerror(errno));
    return 0;
}

/* The optimizer-state file of the checkpoint whose model file is path. */
static int sup_retention_unlink_state(const char *job_id, const char *dir, const char *path) {
    char state[PATH_MAX];
    if (checkpoint_state_path_of(state, sizeof state, path) != 0) return 0;
    return sup_retention_unlink(job_id, dir, state);
}

void sup_retention_apply(dt_supervisor *s, const char *job_id) {
    char err[512], dir[PATH_MAX], where[PATH_MAX];
    json_t *res = NULL;
    int rc = store_checkpoint_prune(s->store, job_id, &res, err, sizeof err);
    if (rc != DT_STORE_OK) {
        if (rc != DT_STORE_NOT_FOUND)
            sup_log("job %s: checkpoint retention failed: %s", job_id, err);
        return;
    }
    /* the rows hold real paths under the job's real directory (supervisor_events.c) */
    snprintf(where, sizeof where, "%s/%s/%s", s->data_dir, DT_LAYOUT_JOBS, job_id);
    if (!realpath(where, dir)) {
        json_decref(res);
        return; /* no directory, so no files */
    }
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(res, "removed"), i, p) {
        const char *path = json_string_value(p);
        sup_retention_unlink(job_id, dir, path);
        sup_retention_unlink_state(job_id, dir, path);
        const char *base = strrchr(path, '/');
        sup_job_log(s, job_id, "retention: deleted checkpoint %s (not among the newest, not the "
                    "best evaluated, not pinned)", base ? base + 1 : path);
    }
    json_array_foreach(json_object_get(res, "stateless"), i, p)
        sup_retention_unlink_state(job_id, dir, json_string_value(p));
    json_decref(res);
}

void sup_retention_pending(dt_supervisor *s) {
    uv_mutex_lock(&s->mu);
    char(*jobs)[DT_STORE_ID_MAX] = s->retention_jobs;
    int n = s->n_retention;
    s->retention_jobs = NULL;
    s->n_retention = s->cap_retention = 0;
    uv_mutex_unlock(&s->mu);
    for (int i = 0; i < n; i++) sup_retention_apply(s, jobs[i]);
    free(jobs);
}

void supervisor_checkpoints_changed(dt_supervisor *s, const char *job_id) {
    if (!s || !job_id || strlen(job_id) >= DT_STORE_ID_MAX) return;
    uv_mutex_lock(&s->mu);
    int known = 0;
    for (int i = 0; i < s->n_retention && !known; i++)
        known = !strcmp(s->retention_jobs[i], job_id);
    if (!known && s->n_retention == s->cap_retention) {
        int cap = s->cap_retention ? 2 * s->cap_retention : 8;
        char(*grown)[DT_STORE_ID_MAX] = realloc(s->retention_jobs, (size_t)cap * DT_STORE_ID_MAX);
        if (grown) {
            s->retention_jobs = grown;
            s->cap_retention = cap;
        }
    }
    /* without memory the request is dropped: the job's next checkpoint prunes it anyway */
    if (!known && s->n_retention < s->cap_retention)
        snprintf(s->retention_jobs[s->n_retention++], DT_STORE_ID_MAX, "%s", job_id);
    if (!s->wake_closed) uv_async_send(&s->wake);
    uv_mutex_unlock(&s->mu);
}
