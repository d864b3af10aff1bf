/* store_events.c — what a job reports while it runs: its event log (the SSE source, paged by
 * event id) and its metric series. */
#include "store_internal.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

static const char SQL_EVENT_INSERT[] =
    "INSERT INTO events (job_id, type, data, ts) VALUES (?1, ?2, ?3, ?4)";

/* Binds (job_id, type, data or {}, ts or now) to an event insert, runs it once and resets it;
 * returns the sqlite3_step result. */
static int event_run(sqlite3_stmt *st, const char *job_id, const char *type, json_t *data, double ts) {
    json_t *empty = data ? NULL : json_object();
    store_bind_text(st, 1, job_id);
    store_bind_text(st, 2, type);
    store_bind_json(st, 3, data ? data : empty);
    sqlite3_bind_double(st, 4, ts > 0 ? ts : store_now());
    int step = sqlite3_step(st);
    store_stmt_done(st);
    json_decref(empty);
    return step;
}

int store_event_insert(dt_store *s, const char *job_id, const char *type, json_t *data,
                       double ts, int64_t *id_out, char *err, size_t errlen) {
    sqlite3_stmt *st = store_stmt(s, SQL_EVENT_INSERT, err, errlen);
    if (!st) return DT_STORE_ERROR;
    int step = event_run(st, job_id, type, data, ts);
    if (step != SQLITE_DONE) return store_fail(s, step, "storing an event", err, errlen);
    if (id_out) *id_out = sqlite3_last_insert_rowid(s->db);
    return DT_STORE_OK;
}

/* One statement, so the status check and the insert cannot be split by a transition. */
static const char SQL_EVENT_APPEND[] =
    "INSERT INTO events (job_id, type, data, ts)"
    " SELECT ?1, ?2, ?3, ?4 FROM jobs WHERE id = ?1 AND status IN ('queued', 'running')";
static const char SQL_JOB_STATUS[] = "SELECT status FROM jobs WHERE id = ?1";

int store_event_append(dt_store *s, const char *job_id, const char *type, json_t *data,
                       double ts, int64_t *id_out, char *err, size_t errlen) {
    assert(s && job_id && type);
    if (!type[0]) {
        store_errorf(err, errlen, "an event needs a type");
        return DT_STORE_INVALID;
    }
    if (data && !json_is_object(data)) {
        store_errorf(err, errlen, "event data must be a JSON object");
        return DT_STORE_INVALID;
    }
    store_lock(s);
    int rc = DT_STORE_ERROR;
    sqlite3_stmt *st = store_stmt(s, SQL_EVENT_APPEND, err, errlen);
    if (!st) goto out;
    int step = event_run(st, job_id, type, data, ts);
    if (step != SQLITE_DONE) {
        rc = store_fail(s, step, "storing an event", err, errlen);
        goto out;
    }
    if (sqlite3_changes(s->db) == 1) {
        if (id_out) *id_out = sqlite3_last_insert_rowid(s->db);
        rc = DT_STORE_OK;
        goto out;
    }
    /* nothing inserted: say why */
    st = store_stmt(s, SQL_JOB_STATUS, err, errlen);
    if (!st) goto out;
    store_bind_text(st, 1, job_id);
    step = sqlite3_step(st);
    if (step == SQLITE_ROW) {
        store_errorf(err, errlen, "job %s is %s: a finished job takes no more events", job_id,
                     (const char *)sqlite3_column_text(st, 0));
        rc = DT_STORE_CONFLICT;
    } else {
        rc = store_step_missing(s, step, "looking up a job", "job", job_id, err, errlen);
    }
    store_stmt_done(st);
out:
    store_unlock(s);
    return rc;
}

static const char SQL_EVENT_PAGE[] =
    "SELECT id, type, data, ts FROM events WHERE job_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3";

int store_event_list(dt_store *s, const char *job_id, int64_t after, int limit, json_t **out,
                     char *err, size_t errlen) {
    assert(s && job_id && out);
    *out = NULL;
    int rc = store_check_limit(limit, DT_STORE_EVENTS_MAX, err, errlen);
    if (rc != DT_STORE_OK) return rc;
    if (after < 0) {
        store_errorf(err, errlen, "after must be an event id >= 0 (got %lld)", (long long)after);
        return DT_STORE_INVALID;
    }
    store_lock(s);
    json_t *data = NULL;
    sqlite3_stmt *st = NULL;
    rc = store_begin_read(s, err, errlen);
    if (rc == DT_STORE_OK) rc = store_job_exists(s, job_id, err, errlen);
    if (rc != DT_STORE_OK) goto out;
    st = store_stmt(s, SQL_EVENT_PAGE, err, errlen);
    if (!st) { rc = DT_STORE_ERROR; goto out; }
    store_bind_text(st, 1, job_id);
    sqlite3_bind_int64(st, 2, after);
    sqlite3_bind_int(st, 3, limit + 1);
    data = json_array();
    int has_more = 0, step;
    int64_t last = -1;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        if ((int)json_array_size(data) == limit) {
            has_more = 1;
            break;
        }
        json_t *payload = store_column_json(st, 2);
        if (!payload) {
            store_errorf(err, errlen, "an event of job %s holds invalid JSON", job_id);
            rc = DT_STORE_ERROR;
            goto out;
        }
        last = sqlite3_column_int64(st, 0);
        json_array_append_new(data, json_pack("{s:I, s:o, s:f, s:o}", "id", (json_int_t)last,
                                              "type", store_column_value(st, 1), "time",
                                              sqlite3_column_double(st, 3), "data", payload));
    }
    if (step != SQLITE_ROW && step != SQLITE_DONE) {
        rc = store_fail(s, step, "listing events", err, errlen);
        goto out;
    }
    *out = json_pack("{s:o, s:b, s:o}", "data", data, "has_more", has_more, "last_id",
                     last >= 0 ? json_integer(last) : json_null());
    data = NULL;
out:
    store_stmt_done(st);
    store_rollback(s);
    json_decref(data);
    store_unlock(s);
    return rc;
}

static const char SQL_EVENT_LAST[] = "SELECT coalesce(max(id), 0) FROM events";

int store_event_last_id(dt_store *s, int64_t *id_out, char *err, size_t errlen) {
    assert(s && id_out);
    *id_out = 0;
    store_lock(s);
    int rc = DT_STORE_ERROR;
    sqlite3_stmt *st = store_stmt(s, SQL_EVENT_LAST, err, errlen);
    if (st) {
        int step = sqlite3_step(st);
        if (step == SQLITE_ROW) {
            *id_out = sqlite3_column_int64(st, 0);
            rc = DT_STORE_OK;
        } else {
            rc = store_fail(s, step, "reading the newest event id", err, errlen);
        }
        store_stmt_done(st);
    }
    store_unlock(s);
    return rc;
}

/* ---- metrics --------------------------------------------------------------------------------- */

static const char SQL_METRIC_PUT[] =
    "INSERT INTO metrics (job_id, name, step, value, ts, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
    " ON CONFLICT (job_id, name, step) DO UPDATE SET value = excluded.value, ts = excluded.ts,"
    " detail = excluded.detail";

int store_metric_append(dt_store *s, const char *job_id, const char *name, int64_t step,
                        json_t *value, double ts, char *err, size_t errlen) {
    return store_metric_append_detail(s, job_id, name, step, value, NULL, ts, err, errlen);
}

int store_metric_append_detail(dt_store *s, const char *job_id, const char *name, int64_t step,
                               json_t *value, json_t *detail, double ts, char *err,
                               size_t errlen) {
    assert(s && job_id && name && value);
    if (!name[0]) {
        store_errorf(err, errlen, "a metric needs a name");
        return DT_STORE_INVALID;
    }
    if (detail && !json_is_object(detail)) {
        store_errorf(err, errlen, "a metric's detail must be a JSON object");
        return DT_STORE_INVALID;
    }
    store_lock(s);
    int rc = DT_STORE_ERROR;
    sqlite3_stmt *st = store_stmt(s, SQL_METRIC_PUT, err, errlen);
    if (st) {
        store_bind_text(st, 1, job_id);
        store_bind_text(st, 2, name);
        sqlite3_bind_int64(st, 3, step);
        store_bind_json(st, 4, value);
        sqlite3_bind_double(st, 5, ts > 0 ? ts : store_now());
        store_bind_json(st, 6, detail && json_object_size(detail) ? detail : NULL);
        int r = sqlite3_step(st);
        store_stmt_done(st);
        rc = store_step_job_write(s, r, "storing a metric", job_id, err, errlen);
    }
    store_unlock(s);
    return rc;
}

/* The point of the current row (columns name, step, value, ts, detail): {"step","value","time"}
 * and the detail's members. NULL when a JSON column is corrupt. */
static json_t *metric_point(sqlite3_stmt *st) {
    json_t *value = store_column_json(st, 2), *detail = store_column_json(st, 4);
    if (!value || !detail || !(json_is_object(detail) || json_is_null(detail))) {
        json_decref(value);
        json_decref(detail);
        return NULL;
    }
    json_t *p = json_pack("{s:I, s:o, s:f}", "step", (json_int_t)sqlite3_column_int64(st, 1),
                          "value", value, "time", sqlite3_column_double(st, 3));
    const char *key;
    json_t *v;
    json_object_foreach(detail, key, v) {
        if (strcmp(key, "step") && strcmp(key, "value") && strcmp(key, "time"))
            json_object_set(p, key, v);
    }
    json_decref(detail);
    return p;
}

static const char SQL_METRIC_ALL[] =
    "SELECT name, step, value, ts, detail FROM metrics WHERE job_id = ?1 ORDER BY name, step";
static const char SQL_METRIC_ONE[] =
    "SELECT name, step, value, ts, detail FROM metrics WHERE job_id = ?1 AND name = ?2"
    " ORDER BY step";

int store_metric_list(dt_store *s, const char *job_id, const char *name, json_t **out,
                      char *err, size_t errlen) {
    assert(s && job_id && out);
    *out = NULL;
    store_lock(s);
    json_t *series = NULL;
    sqlite3_stmt *st = NULL;
    int rc = store_begin_read(s, err, errlen);
    if (rc == DT_STORE_OK) rc = store_job_exists(s, job_id, err, errlen);
    if (rc != DT_STORE_OK) goto out;
    st = store_stmt(s, name ? SQL_METRIC_ONE : SQL_METRIC_ALL, err, errlen);
    if (!st) { rc = DT_STORE_ERROR; goto out; }
    store_bind_text(st, 1, job_id);
    if (name) store_bind_text(st, 2, name);
    series = json_object();
    int step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        const char *metric = (const char *)sqlite3_column_text(st, 0);
        json_t *point = metric ? metric_point(st) : NULL;
        if (!point) {
            store_errorf(err, errlen, "a metric of job %s holds invalid JSON", job_id);
            rc = DT_STORE_ERROR;
            goto out;
        }
        json_t *points = json_object_get(series, metric);
        if (!points) {
            points = json_array();
            json_object_set_new(series, metric, points);
        }
        json_array_append_new(points, point);
    }
    if (step != SQLITE_DONE) {
        rc = store_fail(s, step, "listing metrics", err, errlen);
        goto out;
    }
    *out = json_pack("{s:o}", "series", series);
    series = NULL;
out:
    store_stmt_done(st);
    store_rollback(s);
    json_decref(series);
    store_unlock(s);
    return rc;
}

/* (job_id, name, step) is the primary key: one index probe per name. */
static const char SQL_METRIC_LAST[] =
    "SELECT name, step, value, ts, detail FROM metrics WHERE job_id = ?1 AND name = ?2"
    " ORDER BY step DESC LIMIT 1";

int store_metric_latest(dt_store *s, const char *job_id, const char *const *names, int n,
                        json_t **out, char *err, size_t errlen) {
    assert(s && job_id && out && (names || n == 0));
    *out = NULL;
    store_lock(s);
    json_t *latest = json_object();
    int rc = store_begin_read(s, err, errlen);
    if (rc == DT_STORE_OK) rc = store_job_exists(s, job_id, err, errlen);
    for (int i = 0; rc == DT_STORE_OK && i < n; i++) {
        sqlite3_stmt *st = store_stmt(s, SQL_METRIC_LAST, err, errlen);
        if (!st) {
            rc = DT_STORE_ERROR;
            break;
        }
        store_bind_text(st, 1, job_id);
        store_bind_text(st, 2, names[i]);
        int step = sqlite3_step(st);
        if (step == SQLITE_ROW) {
            json_t *point = metric_point(st);
            if (point) {
                json_object_set_new(latest, names[i], point);
            } else {
                store_errorf(err, errlen, "a metric of job %s holds invalid JSON", job_id);
                rc = DT_STORE_ERROR;
            }
        } else if (step != SQLITE_DONE) {
            rc = store_fail(s, step, "reading the latest metric", err, errlen);
        }
        store_stmt_done(st);
    }
    store_rollback(s);
    store_unlock(s);
    if (rc == DT_STORE_OK) *out = latest;
    else json_decref(latest);
    return rc;
}
