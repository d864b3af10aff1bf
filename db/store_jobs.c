/* store_jobs.c — jobs: creation with idempotency keys, the API object, listing, the claim that
 * dispatches them and the guarded status transitions (the lifecycle is drawn in store.h).
 *
 * Every transition reads the job's state and writes it in one write transaction, together with
 * the "status" event it produces, so a concurrent cancel and finish can never both win. */
#include "store_internal.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define IDEMPOTENCY_KEY_MAX 255

static const char *const STATUS_NAMES[] = {"queued", "running", "succeeded", "failed",
                                           "cancelled"};

const char *store_job_status_name(dt_job_status st) {
    if ((int)st < 0 || (int)st > DT_JOB_CANCELLED) return "?";
    return STATUS_NAMES[st];
}

int store_job_status_parse(const char *name, dt_job_status *out) {
    for (int i = 0; name && i <= DT_JOB_CANCELLED; i++)
        if (!strcmp(name, STATUS_NAMES[i])) {
            *out = (dt_job_status)i;
            return DT_STORE_OK;
        }
    return DT_STORE_INVALID;
}

int store_job_status_terminal(dt_job_status st) {
    return st == DT_JOB_SUCCEEDED || st == DT_JOB_FAILED || st == DT_JOB_CANCELLED;
}

/* ---- the API object -------------------------------------------------------------------------- */

#define JOB_COLUMNS                                                                         \
    "id, status, method, spec, priority, attempt, max_attempts, created_at, started_at, "   \
    "finished_at, device, progress, error_code, error_message, cancel_requested, "          \
    "params_total, params_trainable"

/* The job object of the row, without "spec" (job_from_row and store_job_get add it parsed,
 * the stored text in). NULL when a JSON column is corrupt. */
static json_t *job_from_row_base(sqlite3_stmt *st) {
    json_t *progress = store_column_json(st, 11);
    if (!progress) return NULL;
    json_t *o = json_object();
    json_object_set_new(o, "id", store_column_value(st, 0));
    json_object_set_new(o, "object", json_string("job"));
    json_object_set_new(o, "status", store_column_value(st, 1));
    json_object_set_new(o, "method", store_column_value(st, 2));
    json_t *params = json_null();
    if (sqlite3_column_type(st, 15) != SQLITE_NULL && sqlite3_column_type(st, 16) != SQLITE_NULL)
        params = json_pack("{s:I, s:I}", "total", (json_int_t)sqlite3_column_int64(st, 15),
                           "trainable", (json_int_t)sqlite3_column_int64(st, 16));
    json_object_set_new(o, "parameters", params);
    json_object_set_new(o, "priority", store_column_value(st, 4));
    json_object_set_new(o, "attempt", store_column_value(st, 5));
    json_object_set_new(o, "max_attempts", store_column_value(st, 6));
    json_object_set_new(o, "created_at", store_column_value(st, 7));
    json_object_set_new(o, "started_at", store_column_value(st, 8));
    json_object_set_new(o, "finished_at", store_column_value(st, 9));
    json_object_set_new(o, "device", store_column_value(st, 10));
    json_object_set_new(o, "progress", progress);
    json_t *error = json_null();
    if (sqlite3_column_type(st, 12) != SQLITE_NULL) {
        const char *msg = (const char *)sqlite3_column_text(st, 13);
        error = json_pack("{s:o, s:s}", "code", store_column_value(st, 12), "message",
                          msg ? msg : "");
    }
    json_object_set_new(o, "error", error);
    json_object_set_new(o, "cancel_requested", json_boolean(sqlite3_column_int(st, 14)));
    return o;
}

static json_t *job_from_row(sqlite3_stmt *st) {
    json_t *spec = store_column_json(st, 3);
    json_t *o = spec ? job_from_row_base(st) : NULL;
    if (!o) {
        json_decref(spec);
        return NULL;
    }
    json_object_set_new(o, "spec", spec);
    return o;
}

static const char SQL_JOB_GET[] = "SELECT " JOB_COLUMNS " FROM jobs WHERE id = ?1";

/* Reads job id under the store lock: its object without "spec" (*base) and the stored spec
 * text (*spec, malloc'd), so that callers parse or splice the spec after the lock is released. */
static int job_read(dt_store *s, const char *id, json_t **base, char **spec, char *err, size_t errlen) {
    *base = NULL;
    *spec = NULL;
    store_lock(s);
    int rc = DT_STORE_ERROR;
    sqlite3_stmt *st = store_stmt(s, SQL_JOB_GET, err, errlen);
    if (st) {
        store_bind_text(st, 1, id);
        int step = sqlite3_step(st);
        if (step == SQLITE_ROW) {
            const char *text = (const char *)sqlite3_column_text(st, 3);
            *base = job_from_row_base(st);
            *spec = text ? strdup(text) : NULL;
            if (*base && *spec) rc = DT_STORE_OK;
            else store_errorf(err, errlen, "job %s holds invalid JSON", id);
        } else {
            rc = store_step_missing(s, step, "reading a job", "job", id, err, errlen);
        }
    }
    store_stmt_done(st);
    store_unlock(s);
    if (rc != DT_STORE_OK) {
        json_decref(*base);
        free(*spec);
        *base = NULL;
        *spec = NULL;
    }
    return rc;
}

int store_job_get(dt_store *s, const char *id, json_t **out, char *err, size_t errlen) {
    assert(s && id && out);
    json_t *base;
    char *spec;
    int rc = job_read(s, id, &base, &spec, err, errlen);
    *out = NULL;
    if (rc) return rc;
    json_t *parsed = json_loads(spec, 0, NULL);
    free(spec);
    if (!parsed) {
        json_decref(base);
        store_errorf(err, errlen, "job %s holds invalid JSON", id);
        return DT_STORE_ERROR;
    }
    json_object_set_new(base, "spec", parsed);
    *out = base;
    return DT_STORE_OK;
}

int store_job_get_text(dt_store *s, const char *id, char **text_out, size_t *len_out,
                       char *err, size_t errlen) {
    assert(s && id && text_out && len_out);
    *text_out = NULL;
    *len_out = 0;
    json_t *base;
    char *spec;
    int rc = job_read(s, id, &base, &spec, err, errlen);
    if (rc) return rc;
    /* Encode the small part, then splice the stored spec in as it is. */
    char *head = json_dumps(base, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(16));
    json_decref(base);
    size_t hn = head ? strlen(head) : 0, sn = strlen(spec);
    char *out = hn ? malloc(hn + sn + 10) : NULL;
    if (out) {
        memcpy(out, head, hn - 1); /* without the closing brace */
        memcpy(out + hn - 1, ",\"spec\":", 8);
        memcpy(out + hn + 7, spec, sn);
        out[hn + 7 + sn] = '}';
        out[hn + 8 + sn] = 0;
        *text_out = out;
        *len_out = hn + 8 + sn;
    } else {
        store_errorf(err, errlen, "out of memory");
        rc = DT_STORE_ERROR;
    }
    free(head);
    free(spec);
    return rc;
}

static const char SQL_JOB_EXISTS[] = "SELECT 1 FROM jobs WHERE id = ?1";

int store_job_exists(dt_store *s, const char *id, char *err, size_t errlen) {
    sqlite3_stmt *st = store_stmt(s, SQL_JOB_EXISTS, err, errlen);
    if (!st) return DT_STORE_ERROR;
    store_bind_text(st, 1, id);
    int step = sqlite3_step(st), rc = DT_STORE_OK;
    if (step != SQLITE_ROW)
        rc = store_step_missing(s, step, "looking up a job", "job", id, err, errlen);
    store_stmt_done(st);
    return rc;
}

/* ---- listing --------------------------------------------------------------------------------- */

static const char SQL_JOB_CURSOR[] = "SELECT created_at FROM jobs WHERE id = ?1";
static const char SQL_JOB_PAGE[] =
    "SELECT " JOB_COLUMNS " FROM jobs ORDER BY created_at DESC, id DESC LIMIT ?1";
static const char SQL_JOB_PAGE_AFTER[] =
    "SELECT " JOB_COLUMNS " FROM jobs WHERE (created_at, id) < (?2, ?3)"
    " ORDER BY created_at DESC, id DESC LIMIT ?1";
static const char SQL_JOB_PAGE_STATUS[] =
    "SELECT " JOB_COLUMNS " FROM jobs WHERE status = ?4"
    " ORDER BY created_at DESC, id DESC LIMIT ?1";
static const char SQL_JOB_PAGE_STATUS_AFTER[] =
    "SELECT " JOB_COLUMNS " FROM jobs WHERE status = ?4 AND (created_at, id) < (?2, ?3)"
    " ORDER BY created_at DESC, id DESC LIMIT ?1";

int store_job_list(dt_store *s, const char *status, int limit, const char *after, json_t **out,
                   char *err, size_t errlen) {
    assert(s && out);
    *out = NULL;
    dt_job_status parsed;
    if (status && store_job_status_parse(status, &parsed) != DT_STORE_OK) {
        store_errorf(err, errlen, "status must be one of queued, running, succeeded, failed, "
                     "cancelled (got \"%s\")", status);
        return DT_STORE_INVALID;
    }
    const store_page_query all = {"job", SQL_JOB_CURSOR, SQL_JOB_PAGE, SQL_JOB_PAGE_AFTER,
                                  job_from_row};
    const store_page_query by_status = {"job", SQL_JOB_CURSOR, SQL_JOB_PAGE_STATUS,
                                        SQL_JOB_PAGE_STATUS_AFTER, job_from_row};
    store_lock(s);
    int rc = store_page(s, status ? &by_status : &all, status, limit, after, out, err, errlen);
    store_unlock(s);
    return rc;
}

/* ---- state inside a write transaction -------------------------------------------------------- */

typedef struct {
    dt_job_status status;
    int attempt, max_attempts, cancel_requested;
    char dataset_id[DT_STORE_ID_MAX * 2];
    char base_model_id[DT_STORE_ID_MAX * 2];
} job_state;

static const char SQL_JOB_STATE[] =
    "SELECT status, attempt, max_attempts, cancel_requested, dataset_id, base_model_id"
    " FROM jobs WHERE id = ?1";

/* Reads the job's state; DT_STORE_NOT_FOUND when there is no such job. */
static int job_load(dt_store *s, const char *id, job_state *js, char *err, size_t errlen) {
    sqlite3_stmt *st = store_stmt(s, SQL_JOB_STATE, err, errlen);
    if (!st) return DT_STORE_ERROR;
    store_bind_text(st, 1, id);
    int step = sqlite3_step(st), rc = DT_STORE_OK;
    if (step == SQLITE_ROW) {
        memset(js, 0, sizeof *js);
        if (store_job_status_parse((const char *)sqlite3_column_text(st, 0), &js->status)) {
            store_errorf(err, errlen, "job %s has an unknown status", id);
            rc = DT_STORE_ERROR;
        }
        js->attempt = sqlite3_column_int(st, 1);
        js->max_attempts = sqlite3_column_int(st, 2);
        js->cancel_requested = sqlite3_column_int(st, 3);
        store_column_copy(st, 4, js->dataset_id, sizeof js->dataset_id);
        store_column_copy(st, 5, js->base_model_id, sizeof js->base_model_id);
    } else {
        rc = store_step_missing(s, step, "reading a job", "job", id, err, errlen);
    }
    store_stmt_done(st);
    return rc;
}

/* Steps a statement that returns no rows (bound by the caller) to completion and resets it. */
static int job_step_done(dt_store *s, sqlite3_stmt *st, const char *what, char *err,
                         size_t errlen) {
    int step = sqlite3_step(st);
    store_stmt_done(st);
    if (step != SQLITE_DONE) return store_fail(s, step, what, err, errlen);
    return DT_STORE_OK;
}

/* Runs a one-parameter update statement on job id, inside the caller's transaction. */
static int job_exec_on(dt_store *s, const char *sql, const char *id, const char *what, char *err,
                       size_t errlen) {
    sqlite3_stmt *st = store_stmt(s, sql, err, errlen);
    if (!st) return DT_STORE_ERROR;
    store_bind_text(st, 1, id);
    return job_step_done(s, st, what, err, errlen);
}

/* The "status" event of a change: {"status", "attempt"} plus whatever extra holds (stolen). */
static int job_status_event(dt_store *s, const char *id, dt_job_status status, int attempt,
                            json_t *extra, char *err, size_t errlen) {
    json_t *data = json_pack("{s:s, s:i}", "status", store_job_status_name(status), "attempt",
                             attempt);
    if (extra) json_object_update(data, extra);
    json_decref(extra);
    int rc = store_event_insert(s, id, "status", data, 0, NULL, err, errlen);
    json_decref(data);
    return rc;
}

static json_t *error_object(const char *code, const char *message) {
    return json_pack("{s:s, s:s}", "code", code, "message", message ? message : "");
}

static const char SQL_DATASET_EXISTS[] = "SELECT 1 FROM datasets WHERE id = ?1";
static const char SQL_MODEL_EXISTS[] = "SELECT 1 FROM models WHERE id = ?1";

/* A job names datasets and models by id ("ds_...", "mdl_..."); anything else (a path, for jobs
 * made outside the server) is not the store's to check. */
static int check_ref(dt_store *s, const char *sql, const char *prefix, const char *what,
                     const char *ref, char *err, size_t errlen) {
    if (!ref || !ref[0] || strncmp(ref, prefix, strlen(prefix)) != 0) return DT_STORE_OK;
    sqlite3_stmt *st = store_stmt(s, sql, err, errlen);
    if (!st) return DT_STORE_ERROR;
    store_bind_text(st, 1, ref);
    int step = sqlite3_step(st), rc = DT_STORE_OK;
    if (step == SQLITE_DONE) {
        store_errorf(err, errlen, "%s %s does not exist", what, ref);
        rc = DT_STORE_NOT_FOUND;
    } else if (step != SQLITE_ROW) {
        rc = store_fail(s, step, "checking a reference", err, errlen);
    }
    store_stmt_done(st);
    return rc;
}

static int check_refs(dt_store *s, const char *dataset, const char *base_model, char *err,
                      size_t errlen) {
    int rc = check_ref(s, SQL_DATASET_EXISTS, "ds_", "dataset", dataset, err, errlen);
    if (rc == DT_STORE_OK)
        rc = check_ref(s, SQL_MODEL_EXISTS, "mdl_", "base model", base_model, err, errlen);
    return rc;
}

/* ---- creation -------------------------------------------------------------------------------- */

static const char SQL_IDEM_GET[] =
    "SELECT request_hash, job_id FROM idempotency_keys WHERE key = ?1";
static const char SQL_IDEM_PUT[] =
    "INSERT INTO idempotency_keys (key, request_hash, job_id, created_at)"
    " VALUES (?1, ?2, ?3, ?4)";
/* created_at never goes backwards, even with equal clock readings or a clock stepped back, so
 * "newest first" is also "last created first" */
static const char SQL_JOB_INSERT[] =
    "INSERT INTO jobs (id, status, method, spec, priority, requested_device, dataset_id,"
    " base_model_id, attempt, max_attempts, attempt_budget, created_at, idempotency_key,"
    " request_hash, params_total, params_trainable)"
    " VALUES (?1, 'queued', ?2, ?3, ?4, ?5, ?6, ?7, 0, ?8, ?8,"
    " max(?9, coalesce((SELECT max(created_at) FROM jobs), 0) + 0.000001), ?10, ?11, ?12, ?13)";

/* Looks up key; 1 = found (same hash: id_out set; other hash: CONFLICT), 0 = new key. */
static int idempotency_lookup(dt_store *s, const char *key, const char *hash, char *id_out,
                              char *err, size_t errlen) {
    sqlite3_stmt *st = store_stmt(s, SQL_IDEM_GET, err, errlen);
    if (!st) return DT_STORE_ERROR;
    store_bind_text(st, 1, key);
    int step = sqlite3_step(st), rc = 0;
    if (step == SQLITE_ROW) {
        const char *stored = (const char *)sqlite3_column_text(st, 0);
        if (stored && !strcmp(stored, hash)) {
            store_column_copy(st, 1, id_out, DT_STORE_ID_MAX);
            rc = 1;
        } else {
            store_errorf(err, errlen, "Idempotency-Key \"%s\" was already used for a different "
                         "request; use a new key for a new request", key);
            rc = DT_STORE_CONFLICT;
        }
    } else if (step != SQLITE_DONE) {
        rc = store_fail(s, step, "reading an idempotency key", err, errlen);
    }
    store_stmt_done(st);
    return rc;
}

/* The spec's string field name, NULL when absent or null; -1 when of another type. */
static int spec_string(json_t *spec, const char *name, const char **out) {
    json_t *v = json_object_get(spec, name);
    *out = NULL;
    if (!v || json_is_null(v)) return 0;
    if (!json_is_string(v)) return -1;
    *out = json_string_value(v);
    return 0;
}

int store_job_create(dt_store *s, json_t *spec, const dt_job_create_opts *opts,
                     char id_out[DT_STORE_ID_MAX], int *replayed, char *err, size_t errlen) {
    assert(s && spec && id_out);
    id_out[0] = '\0';
    if (replayed) *replayed = 0;

    const char *method, *device, *dataset, *base_model;
    if (!json_is_object(spec)) {
        store_errorf(err, errlen, "the job spec must be a JSON object");
        return DT_STORE_INVALID;
    }
    if (spec_string(spec, "method", &method) || !method || !method[0]) {
        store_errorf(err, errlen, "the job spec needs a \"method\" string");
        return DT_STORE_INVALID;
    }
    if (spec_string(spec, "device", &device) || spec_string(spec, "dataset", &dataset) ||
        spec_string(spec, "base_model", &base_model)) {
        store_errorf(err, errlen, "the job spec's device, dataset and base_model must be strings");
        return DT_STORE_INVALID;
    }
    json_t *prio = json_object_get(spec, "priority");
    if (prio && !json_is_integer(prio)) {
        store_errorf(err, errlen, "the job spec's priority must be an integer");
        return DT_STORE_INVALID;
    }
    int max_attempts = opts && opts->max_attempts ? opts->max_attempts
                                                  : DT_STORE_DEFAULT_MAX_ATTEMPTS;
    if (max_attempts < 1) {
        store_errorf(err, errlen, "max_attempts must be >= 1 (got %d)", max_attempts);
        return DT_STORE_INVALID;
    }
    const char *key = opts ? opts->idempotency_key : NULL;
    const char *hash = opts ? opts->request_hash : NULL;
    if (key && (!key[0] || strlen(key) > IDEMPOTENCY_KEY_MAX)) {
        store_errorf(err, errlen, "an Idempotency-Key must have 1 to %d characters",
                     IDEMPOTENCY_KEY_MAX);
        return DT_STORE_INVALID;
    }
    if (key && (!hash || !hash[0])) {
        store_errorf(err, errlen, "an idempotency key needs the request hash");
        return DT_STORE_INVALID;
    }
    const int64_t total = opts ? opts->params_total : 0, trainable = opts ? opts->params_trainable : 0;
    if (total < 0 || trainable < 0 || trainable > total) {
        store_errorf(err, errlen, "parameter counts must satisfy 0 <= trainable <= total (got %lld "
                     "of %lld)", (long long)trainable, (long long)total);
        return DT_STORE_INVALID;
    }

    char id[DT_STORE_ID_MAX];
    if (store_new_id("job_", id, sizeof id) != DT_STORE_OK) {
        store_errorf(err, errlen, "cannot read the system's random source for a job id");
        return DT_STORE_ERROR;
    }
    double now = store_now();

    store_lock(s);
    int rc = store_begin_write(s, err, errlen);
    if (rc != DT_STORE_OK) goto out;
    if (key) {
        rc = idempotency_lookup(s, key, hash, id_out, err, errlen);
        if (rc == 1) {
            if (replayed) *replayed = 1;
            rc = store_commit(s, err, errlen);
            goto out;
        }
        if (rc < 0) goto out;
    }
    rc = check_refs(s, dataset, base_model, err, errlen);
    if (rc != DT_STORE_OK) goto out;

    sqlite3_stmt *st = store_stmt(s, SQL_JOB_INSERT, err, errlen);
    if (!st) { rc = DT_STORE_ERROR; goto out; }
    store_bind_text(st, 1, id);
    store_bind_text(st, 2, method);
    store_bind_json(st, 3, spec);
    sqlite3_bind_int64(st, 4, prio ? json_integer_value(prio) : 0);
    store_bind_text(st, 5, device ? device : "auto");
    store_bind_text(st, 6, dataset);
    store_bind_text(st, 7, base_model);
    sqlite3_bind_int(st, 8, max_attempts);
    sqlite3_bind_double(st, 9, now);
    store_bind_text(st, 10, key);
    store_bind_text(st, 11, hash);
    if (total > 0) {
        sqlite3_bind_int64(st, 12, total);
        sqlite3_bind_int64(st, 13, trainable);
    }
    rc = job_step_done(s, st, "storing a job", err, errlen);
    if (rc != DT_STORE_OK) goto out;

    if (key) {
        st = store_stmt(s, SQL_IDEM_PUT, err, errlen);
        if (!st) { rc = DT_STORE_ERROR; goto out; }
        store_bind_text(st, 1, key);
        store_bind_text(st, 2, hash);
        store_bind_text(st, 3, id);
        sqlite3_bind_double(st, 4, now);
        rc = job_step_done(s, st, "storing an idempotency key", err, errlen);
        if (rc != DT_STORE_OK) goto out;
    }
    rc = job_status_event(s, id, DT_JOB_QUEUED, 0, NULL, err, errlen);
    if (rc == DT_STORE_OK) rc = store_commit(s, err, errlen);
    if (rc == DT_STORE_OK) snprintf(id_out, DT_STORE_ID_MAX, "%s", id);

out:
    if (rc != DT_STORE_OK) store_rollback(s);
    store_unlock(s);
    return rc;
}

static const char SQL_IDEM_PRUNE[] = "DELETE FROM idempotency_keys WHERE created_at < ?1";

int store_idempotency_prune(dt_store *s, double created_before, char *err, size_t errlen) {
    assert(s);
    store_lock(s);
    int rc = DT_STORE_ERROR;
    sqlite3_stmt *st = store_stmt(s, SQL_IDEM_PRUNE, err, errlen);
    if (st) {
        sqlite3_bind_double(st, 1, created_before);
        rc = job_step_done(s, st, "pruning idempotency keys", err, errlen);
        if (rc == DT_STORE_OK) rc = sqlite3_changes(s->db);
    }
    store_unlock(s);
    return rc;
}

/* ---- dispatch -------------------------------------------------------------------------------- */

static const char SQL_JOB_CLAIM[] =
    "UPDATE jobs SET status = 'running', attempt = attempt + 1, started_at = ?2, device = ?1"
    " WHERE id = (SELECT id FROM jobs WHERE status = 'queued'"
    "             AND (requested_device = 'auto' OR requested_device = ?1)"
    "             ORDER BY priority DESC, created_at, id LIMIT 1)"
    " RETURNING id, attempt";

int store_job_claim(dt_store *s, const char *device, char id_out[DT_STORE_ID_MAX],
                    char *err, size_t errlen) {
    assert(s && device && id_out);
    id_out[0] = '\0';
    store_lock(s);
    int rc = store_begin_write(s, err, errlen);
    if (rc != DT_STORE_OK) goto out;
    sqlite3_stmt *st = store_stmt(s, SQL_JOB_CLAIM, err, errlen);
    if (!st) { rc = DT_STORE_ERROR; goto out; }
    store_bind_text(st, 1, device);
    sqlite3_bind_double(st, 2, store_now());
    int step = sqlite3_step(st), attempt = 0;
    char id[DT_STORE_ID_MAX] = "";
    if (step == SQLITE_ROW) {
        store_column_copy(st, 0, id, sizeof id);
        attempt = sqlite3_column_int(st, 1);
        step = sqlite3_step(st); /* runs the statement to completion */
    }
    store_stmt_done(st);
    if (step != SQLITE_DONE) {
        rc = store_fail(s, step, "claiming a job", err, errlen);
        goto out;
    }
    if (id[0]) {
        rc = job_status_event(s, id, DT_JOB_RUNNING, attempt,
                              json_pack("{s:s}", "device", device), err, errlen);
        if (rc != DT_STORE_OK) goto out;
    }
    rc = store_commit(s, err, errlen);
    if (rc == DT_STORE_OK && id[0]) {
        snprintf(id_out, DT_STORE_ID_MAX, "%s", id);
        rc = 1;
    }
out:
    if (rc < 0) store_rollback(s);
    store_unlock(s);
    return rc;
}

/* ---- transitions ----------------------------------------------------------------------------- */

static const char SQL_JOB_END[] =
    "UPDATE jobs SET status = ?2, finished_at = ?3, error_code = ?4, error_message = ?5"
    " WHERE id = ?1";
static const char SQL_JOB_QUEUE_AGAIN[] =
    "UPDATE jobs SET status = 'queued', device = NULL, started_at = NULL, progress = NULL"
    " WHERE id = ?1";
static const char SQL_JOB_CANCEL_REQUEST[] =
    "UPDATE jobs SET cancel_requested = 1 WHERE id = ?1";
static const char SQL_JOB_RETRY[] =
    "UPDATE jobs SET status = 'queued', finished_at = NULL, error_code = NULL,"
    " error_message = NULL, device = NULL, started_at = NULL, progress = NULL,"
    " cancel_requested = 0,"
    " max_attempts = attempt + attempt_budget WHERE id = ?1";

/* Writes a terminal status (and its event) inside the caller's transaction. */
static int job_end(dt_store *s, const char *id, const job_state *js, dt_job_status status,
                   const char *code, const char *message, char *err, size_t errlen) {
    sqlite3_stmt *st = store_stmt(s, SQL_JOB_END, err, errlen);
    if (!st) return DT_STORE_ERROR;
    store_bind_text(st, 1, id);
    store_bind_text(st, 2, store_job_status_name(status));
    sqlite3_bind_double(st, 3, store_now());
    if (status == DT_JOB_FAILED) {
        store_bind_text(st, 4, code);
        store_bind_text(st, 5, message ? message : "");
    }
    int rc = job_step_done(s, st, "ending a job", err, errlen);
    if (rc != DT_STORE_OK) return rc;
    json_t *extra = status == DT_JOB_FAILED
                        ? json_pack("{s:o}", "error", error_object(code, message))
                        : NULL;
    return job_status_event(s, id, status, js->attempt, extra, err, errlen);
}

static int conflict_state(const char *id, const job_state *js, const char *action, char *err,
                          size_t errlen) {
    store_errorf(err, errlen, "job %s is %s: it cannot be %s", id,
                 store_job_status_name(js->status), action);
    return DT_STORE_CONFLICT;
}

int store_job_finish(dt_store *s, const char *id, dt_job_status status, const char *error_code,
                     const char *error_message, char *err, size_t errlen) {
    assert(s && id);
    if (!store_job_status_terminal(status)) {
        store_errorf(err, errlen, "a job can only finish as succeeded, failed or cancelled");
        return DT_STORE_INVALID;
    }
    if (status == DT_JOB_FAILED && (!error_code || !error_code[0])) {
        store_errorf(err, errlen, "a failed job needs an error code");
        return DT_STORE_INVALID;
    }
    store_lock(s);
    job_state js;
    int rc = store_begin_write(s, err, errlen);
    if (rc == DT_STORE_OK) rc = job_load(s, id, &js, err, errlen);
    if (rc == DT_STORE_OK && js.status != DT_JOB_RUNNING)
        rc = conflict_state(id, &js, "finished (only running jobs finish)", err, errlen);
    if (rc == DT_STORE_OK) rc = job_end(s, id, &js, status, error_code, error_message, err, errlen);
    if (rc == DT_STORE_OK) rc = store_commit(s, err, errlen);
    if (rc != DT_STORE_OK) store_rollback(s);
    store_unlock(s);
    return rc;
}

int store_job_cancel(dt_store *s, const char *id, dt_job_status *status_out, char *err,
                     size_t errlen) {
    assert(s && id);
    store_lock(s);
    job_state js;
    dt_job_status now_status = DT_JOB_CANCELLED;
    int rc = store_begin_write(s, err, errlen);
    if (rc == DT_STORE_OK) rc = job_load(s, id, &js, err, errlen);
    if (rc == DT_STORE_OK) {
        if (store_job_status_terminal(js.status)) {
            rc = conflict_state(id, &js, "cancelled", err, errlen);
        } else if (js.status == DT_JOB_QUEUED) {
            rc = job_end(s, id, &js, DT_JOB_CANCELLED, NULL, NULL, err, errlen);
        } else {
            now_status = DT_JOB_RUNNING;
            if (!js.cancel_requested) {
                rc = job_exec_on(s, SQL_JOB_CANCEL_REQUEST, id, "requesting a cancel", err, errlen);
                if (rc == DT_STORE_OK)
                    rc = job_status_event(s, id, DT_JOB_RUNNING, js.attempt,
                                          json_pack("{s:b}", "cancel_requested", 1), err, errlen);
            }
        }
    }
    if (rc == DT_STORE_OK) rc = store_commit(s, err, errlen);
    if (rc != DT_STORE_OK) store_rollback(s);
    else if (status_out) *status_out = now_status;
    store_unlock(s);
    return rc;
}

int store_job_retry(dt_store *s, const char *id, char *err, size_t errlen) {
    assert(s && id);
    store_lock(s);
    job_state js;
    int rc = store_begin_write(s, err, errlen);
    if (rc == DT_STORE_OK) rc = job_load(s, id, &js, err, errlen);
    if (rc == DT_STORE_OK && js.status != DT_JOB_FAILED && js.status != DT_JOB_CANCELLED)
        rc = conflict_state(id, &js, "retried (only failed or cancelled jobs can)", err, errlen);
    if (rc == DT_STORE_OK) rc = check_refs(s, js.dataset_id, js.base_model_id, err, errlen);
    if (rc == DT_STORE_OK) rc = job_exec_on(s, SQL_JOB_RETRY, id, "retrying a job", err, errlen);
    if (rc == DT_STORE_OK)
        rc = job_status_event(s, id, DT_JOB_QUEUED, js.attempt,
                              json_pack("{s:b}", "retry", 1), err, errlen);
    if (rc == DT_STORE_OK) rc = store_commit(s, err, errlen);
    if (rc != DT_STORE_OK) store_rollback(s);
    store_unlock(s);
    return rc;
}

/* The requeue decision for a running job whose worker is gone, inside the caller's transaction. */
static int job_requeue_locked(dt_store *s, const char *id, const char *code, const char *message,
                              dt_job_status *status_out, char *err, size_t errlen) {
    job_state js;
    int rc = job_load(s, id, &js, err, errlen);
    if (rc != DT_STORE_OK) return rc;
    if (js.status != DT_JOB_RUNNING) return conflict_state(id, &js, "requeued", err, errlen);
    dt_job_status next;
    if (js.cancel_requested) {
        next = DT_JOB_CANCELLED;
        rc = job_end(s, id, &js, next, NULL, NULL, err, errlen);
    } else if (js.attempt >= js.max_attempts) {
        next = DT_JOB_FAILED;
        rc = job_end(s, id, &js, next, code, message, err, errlen);
    } else {
        next = DT_JOB_QUEUED;
        rc = job_exec_on(s, SQL_JOB_QUEUE_AGAIN, id, "requeueing a job", err, errlen);
        /* the event keeps why the attempt ended; the queued job itself carries no error */
        if (rc == DT_STORE_OK)
            rc = job_status_event(s, id, next, js.attempt,
                                  json_pack("{s:o}", "reason", error_object(code, message)),
                                  err, errlen);
    }
    if (rc == DT_STORE_OK && status_out) *status_out = next;
    return rc;
}

int store_job_requeue(dt_store *s, const char *id, const char *error_code,
                      const char *error_message, dt_job_status *status_out, char *err,
                      size_t errlen) {
    assert(s && id && error_code);
    store_lock(s);
    int rc = store_begin_write(s, err, errlen);
    if (rc == DT_STORE_OK)
        rc = job_requeue_locked(s, id, error_code, error_message, status_out, err, errlen);
    if (rc == DT_STORE_OK) rc = store_commit(s, err, errlen);
    if (rc != DT_STORE_OK) store_rollback(s);
    store_unlock(s);
    return rc;
}

/* The attempt is not charged: the budget grows by the one the interrupted attempt used. */
static const char SQL_JOB_RELEASE[] =
    "UPDATE jobs SET status = 'queued', device = NULL, started_at = NULL, progress = NULL,"
    " max_attempts = max_attempts + 1 WHERE id = ?1";

/* The release of a running job, inside the caller's transaction. */
static int job_release_locked(dt_store *s, const char *id, char *err, size_t errlen) {
    job_state js;
    int rc = job_load(s, id, &js, err, errlen);
    if (rc != DT_STORE_OK) return rc;
    if (js.status != DT_JOB_RUNNING) return conflict_state(id, &js, "released", err, errlen);
    if (js.cancel_requested) return job_end(s, id, &js, DT_JOB_CANCELLED, NULL, NULL, err, errlen);
    rc = job_exec_on(s, SQL_JOB_RELEASE, id, "releasing a job", err, errlen);
    if (rc != DT_STORE_OK) return rc;
    json_t *reason = error_object("server_shutdown", "the server shut down while the job was "
                                  "running; it resumes from its last checkpoint");
    return job_status_event(s, id, DT_JOB_QUEUED, js.attempt,
                            json_pack("{s:o}", "reason", reason), err, errlen);
}

int store_job_release(dt_store *s, const char *id, char *err, size_t errlen) {
    assert(s && id);
    store_lock(s);
    int rc = store_begin_write(s, err, errlen);
    if (rc == DT_STORE_OK) rc = job_release_locked(s, id, err, errlen);
    if (rc == DT_STORE_OK) rc = store_commit(s, err, errlen);
    if (rc != DT_STORE_OK) store_rollback(s);
    store_unlock(s);
    return rc;
}

static const char SQL_JOB_RUNNING[] = "SELECT id FROM jobs WHERE status = 'running' ORDER BY id";

int store_job_reconcile(dt_store *s, const char *const *live_ids, size_t n_live,
                        const char *error_code, const char *error_message, char *err,
                        size_t errlen) {
    assert(s && error_code && (live_ids || n_live == 0));
    store_lock(s);
    char (*ids)[DT_STORE_ID_MAX] = NULL;
    size_t n = 0, cap = 0;
    int changed = 0;
    int rc = store_begin_write(s, err, errlen);
    if (rc != DT_STORE_OK) goto out;

    /* collect first: the updates below must not run under an open SELECT on the same rows */
    sqlite3_stmt *st = store_stmt(s, SQL_JOB_RUNNING, err, errlen);
    if (!st) { rc = DT_STORE_ERROR; goto out; }
    int step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            void *grown = realloc(ids, cap * sizeof *ids);
            if (!grown) { step = SQLITE_NOMEM; break; }
            ids = grown;
        }
        store_column_copy(st, 0, ids[n++], DT_STORE_ID_MAX);
    }
    store_stmt_done(st);
    if (step != SQLITE_DONE) {
        rc = store_fail(s, step, "listing running jobs", err, errlen);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        int live = 0;
        for (size_t j = 0; j < n_live && !live; j++) live = !strcmp(ids[i], live_ids[j]);
        if (live) continue;
        rc = job_requeue_locked(s, ids[i], error_code, error_message, NULL, err, errlen);
        if (rc != DT_STORE_OK) goto out;
        changed++;
    }
    rc = store_commit(s, err, errlen);
out:
    if (rc != DT_STORE_OK) store_rollback(s);
    free(ids);
    store_unlock(s);
    return rc == DT_STORE_OK ? changed : rc;
}

static const char SQL_JOB_PROGRESS[] = "UPDATE jobs SET progress = ?2 WHERE id = ?1";

int store_job_set_progress(dt_store *s, const char *id, json_t *progress, char *err,
                           size_t errlen) {
    assert(s && id && progress);
    if (!json_is_object(progress)) {
        store_errorf(err, errlen, "progress must be a JSON object");
        return DT_STORE_INVALID;
    }
    store_lock(s);
    job_state js;
    int rc = store_begin_write(s, err, errlen);
    if (rc == DT_STORE_OK) rc = job_load(s, id, &js, err, errlen);
    if (rc == DT_STORE_OK && js.status != DT_JOB_RUNNING)
        rc = conflict_state(id, &js, "given progress (only running jobs report it)", err,
                            errlen);
    if (rc == DT_STORE_OK) {
        sqlite3_stmt *st = store_stmt(s, SQL_JOB_PROGRESS, err, errlen);
        rc = DT_STORE_ERROR;
        if (st) {
            store_bind_text(st, 1, id);
            store_bind_json(st, 2, progress);
            rc = job_step_done(s, st, "storing progress", err, errlen);
        }
    }
    if (rc == DT_STORE_OK) rc = store_commit(s, err, errlen);
    if (rc != DT_STORE_OK) store_rollback(s);
    store_unlock(s);
    return rc;
}

static const char SQL_JOB_COUNTS[] = "SELECT status, count(*) FROM jobs GROUP BY status";

int store_job_counts(dt_store *s, int64_t counts[5], char *err, size_t errlen) {
    assert(s && counts);
    int64_t found[5] = {0};
    store_lock(s);
    int rc = DT_STORE_ERROR;
    sqlite3_stmt *st = store_stmt(s, SQL_JOB_COUNTS, err, errlen);
    if (st) {
        int step;
        rc = DT_STORE_OK;
        while ((step = sqlite3_step(st)) == SQLITE_ROW) {
            dt_job_status status;
            if (store_job_status_parse((const char *)sqlite3_column_text(st, 0), &status)) {
                store_errorf(err, errlen, "a job has an unknown status");
                rc = DT_STORE_ERROR;
                break;
            }
            found[status] = sqlite3_column_int64(st, 1);
        }
        if (rc == DT_STORE_OK && step != SQLITE_DONE)
            rc = store_fail(s, step, "counting jobs", err, errlen);
    }
    store_stmt_done(st);
    store_unlock(s);
    if (rc == DT_STORE_OK) memcpy(counts, found, sizeof found);
    else memset(counts, 0, sizeof found);
    return rc;
}
