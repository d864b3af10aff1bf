/* store_artifacts.c — files a job wrote (checkpoints, sample grids), keyed by (job, kind, name).
 * The row holds the real path; the server looks files up by name and never builds a path from
 * what a client sent. */
#include "store_internal.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

const char *store_artifact_kind_name(dt_artifact_kind kind) {
    return kind == DT_ARTIFACT_SAMPLE ? "sample" : "checkpoint";
}

static int check_kind(dt_artifact_kind kind, char *err, size_t errlen) {
    if (kind == DT_ARTIFACT_CHECKPOINT || kind == DT_ARTIFACT_SAMPLE) return DT_STORE_OK;
    store_errorf(err, errlen, "unknown artifact kind %d", (int)kind);
    return DT_STORE_INVALID;
}

static const char SQL_ARTIFACT_PUT[] =
    "INSERT INTO artifacts (job_id, kind, name, path, bytes, sha256, step, created_at)"
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
    " ON CONFLICT (job_id, kind, name) DO UPDATE SET path = excluded.path,"
    " bytes = excluded.bytes, sha256 = excluded.sha256, step = excluded.step,"
    " created_at = excluded.created_at";

int store_artifact_put(dt_store *s, const dt_artifact *a, char *err, size_t errlen) {
    assert(s && a);
    int rc = check_kind(a->kind, err, errlen);
    if (rc != DT_STORE_OK) return rc;
    if (!a->name[0] || !a->path[0] || a->bytes < 0) {
        store_errorf(err, errlen, "an artifact needs a name, a path and a size >= 0");
        return DT_STORE_INVALID;
    }
    store_lock(s);
    rc = DT_STORE_ERROR;
    sqlite3_stmt *st = store_stmt(s, SQL_ARTIFACT_PUT, err, errlen);
    if (st) {
        store_bind_text(st, 1, a->job_id);
        store_bind_text(st, 2, store_artifact_kind_name(a->kind));
        store_bind_text(st, 3, a->name);
        store_bind_text(st, 4, a->path);
        sqlite3_bind_int64(st, 5, a->bytes);
        store_bind_text(st, 6, a->sha256[0] ? a->sha256 : NULL);
        if (a->step >= 0) sqlite3_bind_int64(st, 7, a->step);
        sqlite3_bind_double(st, 8, store_now());
        int step = sqlite3_step(st);
        store_stmt_done(st);
        rc = store_step_job_write(s, step, "storing an artifact", a->job_id, err, errlen);
    }
    store_unlock(s);
    return rc;
}

static const char SQL_ARTIFACT_GET[] =
    "SELECT path, bytes, sha256, step, created_at FROM artifacts"
    " WHERE job_id = ?1 AND kind = ?2 AND name = ?3";

int store_artifact_get(dt_store *s, const char *job_id, dt_artifact_kind kind, const char *name,
                       dt_artifact *out, char *err, size_t errlen) {
    assert(s && job_id && name && out);
    int rc = check_kind(kind, err, errlen);
    if (rc != DT_STORE_OK) return rc;
    store_lock(s);
    rc = DT_STORE_ERROR;
    sqlite3_stmt *st = store_stmt(s, SQL_ARTIFACT_GET, err, errlen);
    if (st) {
        store_bind_text(st, 1, job_id);
        store_bind_text(st, 2, store_artifact_kind_name(kind));
        store_bind_text(st, 3, name);
        int step = sqlite3_step(st);
        if (step == SQLITE_ROW) {
            memset(out, 0, sizeof *out);
            snprintf(out->job_id, sizeof out->job_id, "%s", job_id);
            out->kind = kind;
            snprintf(out->name, sizeof out->name, "%s", name);
            store_column_copy(st, 0, out->path, sizeof out->path);
            out->bytes = sqlite3_column_int64(st, 1);
            store_column_copy(st, 2, out->sha256, sizeof out->sha256);
            out->step = sqlite3_column_type(st, 3) == SQLITE_NULL ? -1
                                                                   : sqlite3_column_int64(st, 3);
            out->created_at = sqlite3_column_double(st, 4);
            rc = DT_STORE_OK;
        } else if (step == SQLITE_DONE) {
            store_errorf(err, errlen, "job %s has no %s named \"%s\"", job_id,
                         store_artifact_kind_name(kind), name);
            rc = DT_STORE_NOT_FOUND;
        } else {
            rc = store_fail(s, step, "reading an artifact", err, errlen);
        }
    }
    store_stmt_done(st);
    store_unlock(s);
    return rc;
}

static const char SQL_ARTIFACT_LIST[] =
    "SELECT name, step, bytes, sha256, created_at FROM artifacts"
    " WHERE job_id = ?1 AND kind = ?2 ORDER BY step, name";

int store_artifact_list(dt_store *s, const char *job_id, dt_artifact_kind kind, json_t **out,
                        char *err, size_t errlen) {
    assert(s && job_id && out);
    *out = NULL;
    int rc = check_kind(kind, err, errlen);
    if (rc != DT_STORE_OK) return rc;
    store_lock(s);
    json_t *data = NULL;
    sqlite3_stmt *st = NULL;
    rc = store_begin_read(s, err, errlen);
    if (rc == DT_STORE_OK) rc = store_job_exists(s, job_id, err, errlen);
    if (rc != DT_STORE_OK) goto out;
    st = store_stmt(s, SQL_ARTIFACT_LIST, err, errlen);
    if (!st) { rc = DT_STORE_ERROR; goto out; }
    store_bind_text(st, 1, job_id);
    store_bind_text(st, 2, store_artifact_kind_name(kind));
    data = json_array();
    int step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW)
        json_array_append_new(data, json_pack("{s:o, s:o, s:o, s:o, s:o}",
                                              "name", store_column_value(st, 0),
                                              "step", store_column_value(st, 1),
                                              "bytes", store_column_value(st, 2),
                                              "sha256", store_column_value(st, 3),
                                              "created_at", store_column_value(st, 4)));
    if (step != SQLITE_DONE) {
        rc = store_fail(s, step, "listing artifacts", err, errlen);
        goto out;
    }
    *out = json_pack("{s:o}", "data", data);
    data = NULL;
out:
    store_stmt_done(st);
    store_rollback(s);
    json_decref(data);
    store_unlock(s);
    return rc;
}

static const char SQL_ARTIFACT_DELETE[] =
    "DELETE FROM artifacts WHERE job_id = ?1 AND kind = ?2 AND name = ?3";

int store_artifact_delete(dt_store *s, const char *job_id, dt_artifact_kind kind,
                          const char *name, char *err, size_t errlen) {
    assert(s && job_id && name);
    int rc = check_kind(kind, err, errlen);
    if (rc != DT_STORE_OK) return rc;
    store_lock(s);
    rc = DT_STORE_ERROR;
    sqlite3_stmt *st = store_stmt(s, SQL_ARTIFACT_DELETE, err, errlen);
    if (st) {
        store_bind_text(st, 1, job_id);
        store_bind_text(st, 2, store_artifact_kind_name(kind));
        store_bind_text(st, 3, name);
        int step = sqlite3_step(st);
        store_stmt_done(st);
        if (step != SQLITE_DONE) {
            rc = store_fail(s, step, "deleting an artifact", err, errlen);
        } else if (sqlite3_changes(s->db) == 0) {
            store_errorf(err, errlen, "job %s has no %s named \"%s\"", job_id,
                         store_artifact_kind_name(kind), name);
            rc = DT_STORE_NOT_FOUND;
        } else {
            rc = DT_STORE_OK;
        }
    }
    store_unlock(s);
    return rc;
}
