/* store_retention.c — which checkpoints of a job stay (store.h, "checkpoint retention"): the
 * rule itself (store_retention_select), pins, the annotated list the API shows and the prune the
 * supervisor applies. The rule reads three things the store holds: the job's spec
 * (checkpoint.keep, eval.extractor), its checkpoint rows with their pins, and the metric series
 * of its evaluations. */
#include "store_internal.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RETENTION_DEFAULT_KEEP 3 /* spec.checkpoint.keep when a stored spec lacks it */

void store_retention_select(dt_retention_item *items, size_t n, int keep) {
    assert(keep >= 1);
    size_t best = n;
    for (size_t i = 0; i < n; i++) {
        dt_retention_item *it = &items[i];
        it->kept = 0;
        if (i + (size_t)keep >= n) it->kept |= DT_KEPT_NEWEST;
        if (it->pinned) it->kept |= DT_KEPT_PINNED;
        /* strictly lower: an equal value later on does not displace the earlier best */
        if (isfinite(it->metric) && (best == n || it->metric < items[best].metric)) best = i;
    }
    if (best < n) items[best].kept |= DT_KEPT_BEST;
}

const char *store_retention_metric(json_t *spec) {
    const char *x = json_string_value(json_object_get(json_object_get(spec, "eval"), "extractor"));
    return x && !strncmp(x, "classifier:", 11) ? "fd_classifier" : "fid";
}

/* ---- a job's checkpoints as the rule sees them -------------------------------------------- */

typedef struct {
    char name[256];
    char path[4096];
    int64_t bytes;
    char sha256[65];
    double created_at;
    int has_step;
} ckpt_row;

typedef struct {
    int keep;
    char metric[16];
    size_t n;
    ckpt_row *rows;           /* n, ascending step (then name) */
    dt_retention_item *items; /* n, the same order */
} ckpt_set;

static void ckpt_set_free(ckpt_set *cs) {
    free(cs->rows);
    free(cs->items);
    memset(cs, 0, sizeof *cs);
}

static const char SQL_RETENTION_SPEC[] = "SELECT spec FROM jobs WHERE id = ?1";
static const char SQL_RETENTION_ROWS[] =
    "SELECT name, step, path, bytes, sha256, created_at, pinned FROM artifacts"
    " WHERE job_id = ?1 AND kind = 'checkpoint' ORDER BY step, name";
static const char SQL_RETENTION_METRIC[] =
    "SELECT step, value FROM metrics WHERE job_id = ?1 AND name = ?2 ORDER BY step";

/* keep and metric from the job's stored spec; DT_STORE_NOT_FOUND for an unknown job. */
static int ckpt_set_spec(dt_store *s, const char *job_id, ckpt_set *cs, char *err, size_t errlen) {
    sqlite3_stmt *st = store_stmt(s, SQL_RETENTION_SPEC, err, errlen);
    if (!st) return DT_STORE_ERROR;
    store_bind_text(st, 1, job_id);
    int step = sqlite3_step(st), rc = DT_STORE_OK;
    if (step == SQLITE_ROW) {
        json_t *spec = store_column_json(st, 0);
        json_t *keep = json_object_get(json_object_get(spec, "checkpoint"), "keep");
        cs->keep = json_is_integer(keep) && json_integer_value(keep) >= 1 &&
                           json_integer_value(keep) <= INT32_MAX
                       ? (int)json_integer_value(keep)
                       : RETENTION_DEFAULT_KEEP;
        snprintf(cs->metric, sizeof cs->metric, "%s", store_retention_metric(spec));
        json_decref(spec);
    } else {
        rc = store_step_missing(s, step, "reading a job's spec", "job", job_id, err, errlen);
    }
    store_stmt_done(st);
    return rc;
}

static int ckpt_set_rows(dt_store *s, const char *job_id, ckpt_set *cs, char *err, size_t errlen) {
    sqlite3_stmt *st = store_stmt(s, SQL_RETENTION_ROWS, err, errlen);
    if (!st) return DT_STORE_ERROR;
    store_bind_text(st, 1, job_id);
    size_t cap = 0;
    int step, rc = DT_STORE_OK;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        if (cs->n == cap) {
            cap = cap ? 2 * cap : 16;
            ckpt_row *rows = realloc(cs->rows, cap * sizeof *rows);
            if (rows) cs->rows = rows;
            dt_retention_item *items = realloc(cs->items, cap * sizeof *items);
            if (items) cs->items = items;
            if (!rows || !items) {
                store_errorf(err, errlen, "out of memory reading the checkpoints of job %s", job_id);
                rc = DT_STORE_ERROR;
                break;
            }
        }
        ckpt_row *r = &cs->rows[cs->n];
        dt_retention_item *it = &cs->items[cs->n];
        memset(r, 0, sizeof *r);
        store_column_copy(st, 0, r->name, sizeof r->name);
        r->has_step = sqlite3_column_type(st, 1) != SQLITE_NULL;
        store_column_copy(st, 2, r->path, sizeof r->path);
        r->bytes = sqlite3_column_int64(st, 3);
        store_column_copy(st, 4, r->sha256, sizeof r->sha256);
        r->created_at = sqlite3_column_double(st, 5);
        *it = (dt_retention_item){.step = r->has_step ? sqlite3_column_int64(st, 1) : -1,
                                  .metric = NAN, .pinned = sqlite3_column_int(st, 6) != 0};
        cs->n++;
    }
    if (rc == DT_STORE_OK && step != SQLITE_DONE)
        rc = store_fail(s, step, "reading a job's checkpoints", err, errlen);
    store_stmt_done(st);
    return rc;
}

/* Each item's metric: the series' numeric value at the item's step (both in step order). */
static int ckpt_set_metric(dt_store *s, const char *job_id, ckpt_set *cs, char *err,
                           size_t errlen) {
    sqlite3_stmt *st = store_stmt(s, SQL_RETENTION_METRIC, err, errlen);
    if (!st) return DT_STORE_ERROR;
    store_bind_text(st, 1, job_id);
    store_bind_text(st, 2, cs->metric);
    size_t i = 0;
    int step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t at = sqlite3_column_int64(st, 0);
        while (i < cs->n && cs->items[i].step < at) i++;
        if (i == cs->n) continue; /* run the statement to its end */
        json_t *v = cs->items[i].step == at ? store_column_json(st, 1) : NULL;
        /* an unavailable evaluation (null) ranks nowhere; every checkpoint of that step gets it */
        for (size_t k = i; json_is_number(v) && k < cs->n && cs->items[k].step == at; k++)
            cs->items[k].metric = json_number_value(v);
        json_decref(v);
    }
    int rc = step == SQLITE_DONE ? DT_STORE_OK
                                 : store_fail(s, step, "reading a job's evaluations", err, errlen);
    store_stmt_done(st);
    return rc;
}

/* Loads the job's checkpoints and decides; the caller holds the lock and a transaction. */
static int ckpt_set_load(dt_store *s, const char *job_id, ckpt_set *cs, char *err, size_t errlen) {
    memset(cs, 0, sizeof *cs);
    int rc = ckpt_set_spec(s, job_id, cs, err, errlen);
    if (rc == DT_STORE_OK) rc = ckpt_set_rows(s, job_id, cs, err, errlen);
    if (rc == DT_STORE_OK) rc = ckpt_set_metric(s, job_id, cs, err, errlen);
    if (rc == DT_STORE_OK) store_retention_select(cs->items, cs->n, cs->keep);
    else ckpt_set_free(cs);
    return rc;
}

/* The API object of checkpoint i (as store_artifact_list, plus pinned and kept_because). */
static json_t *ckpt_set_json(const ckpt_set *cs, size_t i) {
    const ckpt_row *r = &cs->rows[i];
    unsigned kept = cs->items[i].kept;
    char best[32];
    snprintf(best, sizeof best, "best_%s", cs->metric);
    json_t *why = json_array();
    if (kept & DT_KEPT_NEWEST) json_array_append_new(why, json_string("newest"));
    if (kept & DT_KEPT_BEST) json_array_append_new(why, json_string(best));
    if (kept & DT_KEPT_PINNED) json_array_append_new(why, json_string("pinned"));
    return json_pack("{s:s, s:o, s:I, s:o, s:f, s:b, s:o}", "name", r->name, "step",
                     r->has_step ? json_integer(cs->items[i].step) : json_null(), "bytes",
                     (json_int_t)r->bytes, "sha256",
                     r->sha256[0] ? json_string(r->sha256) : json_null(), "created_at",
                     r->created_at, "pinned", cs->items[i].pinned, "kept_because", why);
}

int store_checkpoint_list(dt_store *s, const char *job_id, json_t **out, char *err,
                          size_t errlen) {
    assert(s && job_id && out);
    *out = NULL;
    store_lock(s);
    ckpt_set cs;
    int rc = store_begin_read(s, err, errlen);
    if (rc == DT_STORE_OK) rc = ckpt_set_load(s, job_id, &cs, err, errlen);
    store_rollback(s);
    if (rc == DT_STORE_OK) {
        json_t *data = json_array();
        for (size_t i = 0; i < cs.n; i++) json_array_append_new(data, ckpt_set_json(&cs, i));
        *out = json_pack("{s:o}", "data", data);
        ckpt_set_free(&cs);
    }
    store_unlock(s);
    return rc;
}

static const char SQL_RETENTION_PIN[] =
    "UPDATE artifacts SET pinned = ?3 WHERE job_id = ?1 AND kind = 'checkpoint' AND name = ?2"
    " AND pinned != ?3";
static const char SQL_RETENTION_EXISTS[] =
    "SELECT 1 FROM artifacts WHERE job_id = ?1 AND kind = 'checkpoint' AND name = ?2";

int store_checkpoint_pin(dt_store *s, const char *job_id, const char *name, int pinned,
                         json_t **out, char *err, size_t errlen) {
    assert(s && job_id && name);
    if (out) *out = NULL;
    store_lock(s);
    int rc = store_begin_write(s, err, errlen);
    if (rc == DT_STORE_OK) rc = store_job_exists(s, job_id, err, errlen);
    sqlite3_stmt *st = NULL;
    if (rc == DT_STORE_OK && !(st = store_stmt(s, SQL_RETENTION_EXISTS, err, errlen)))
        rc = DT_STORE_ERROR;
    if (st) {
        store_bind_text(st, 1, job_id);
        store_bind_text(st, 2, name);
        int step = sqlite3_step(st);
        if (step != SQLITE_ROW) {
            rc = step == SQLITE_DONE ? DT_STORE_NOT_FOUND
                                     : store_fail(s, step, "looking up a checkpoint", err, errlen);
            if (step == SQLITE_DONE)
                store_errorf(err, errlen, "job %s has no checkpoint named \"%s\"", job_id, name);
        }
        store_stmt_done(st);
    }
    if (rc == DT_STORE_OK) {
        st = store_stmt(s, SQL_RETENTION_PIN, err, errlen);
        if (!st) {
            rc = DT_STORE_ERROR;
        } else {
            store_bind_text(st, 1, job_id);
            store_bind_text(st, 2, name);
            sqlite3_bind_int(st, 3, pinned ? 1 : 0);
            int step = sqlite3_step(st);
            store_stmt_done(st);
            if (step != SQLITE_DONE) rc = store_fail(s, step, "pinning a checkpoint", err, errlen);
        }
    }
    ckpt_set cs;
    if (rc == DT_STORE_OK && out && (rc = ckpt_set_load(s, job_id, &cs, err, errlen)) == DT_STORE_OK) {
        for (size_t i = 0; i < cs.n && !*out; i++)
            if (!strcmp(cs.rows[i].name, name)) *out = ckpt_set_json(&cs, i);
        ckpt_set_free(&cs);
        if (!*out) { /* the row was there a moment ago, in this transaction */
            store_errorf(err, errlen, "checkpoint \"%s\" of job %s vanished", name, job_id);
            rc = DT_STORE_ERROR;
        }
    }
    if (rc == DT_STORE_OK) rc = store_commit(s, err, errlen);
    if (rc != DT_STORE_OK) {
        store_rollback(s);
        if (out) {
            json_decref(*out);
            *out = NULL;
        }
    }
    store_unlock(s);
    return rc;
}

static const char SQL_RETENTION_FORGET[] =
    "DELETE FROM artifacts WHERE job_id = ?1 AND kind = 'checkpoint' AND name = ?2";

int store_checkpoint_prune(dt_store *s, const char *job_id, json_t **out, char *err,
                           size_t errlen) {
    assert(s && job_id && out);
    *out = NULL;
    store_lock(s);
    ckpt_set cs;
    int loaded = 0;
    json_t *removed = json_array(), *stateless = json_array();
    int rc = store_begin_write(s, err, errlen);
    if (rc == DT_STORE_OK) rc = ckpt_set_load(s, job_id, &cs, err, errlen);
    loaded = rc == DT_STORE_OK;
    for (size_t i = 0; loaded && rc == DT_STORE_OK && i < cs.n; i++) {
        unsigned kept = cs.items[i].kept;
        if (kept) {
            if (!(kept & DT_KEPT_NEWEST))
                json_array_append_new(stateless, json_string(cs.rows[i].path));
            continue;
        }
        sqlite3_stmt *st = store_stmt(s, SQL_RETENTION_FORGET, err, errlen);
        if (!st) {
            rc = DT_STORE_ERROR;
            break;
        }
        store_bind_text(st, 1, job_id);
        store_bind_text(st, 2, cs.rows[i].name);
        int step = sqlite3_step(st);
        store_stmt_done(st);
        if (step != SQLITE_DONE) rc = store_fail(s, step, "forgetting a checkpoint", err, errlen);
        else json_array_append_new(removed, json_string(cs.rows[i].path));
    }
    if (loaded) ckpt_set_free(&cs);
    if (rc == DT_STORE_OK) rc = store_commit(s, err, errlen);
    if (rc == DT_STORE_OK) {
        *out = json_pack("{s:o, s:o}", "removed", removed, "stateless", stateless);
    } else {
        store_rollback(s);
        json_decref(removed);
        json_decref(stateless);
    }
    store_unlock(s);
    return rc;
}
