/* store_catalog.c — datasets and models: the inputs jobs name by id. Either is deletable only
 * while no queued or running job names it; job creation and retry check the other direction. */
#include "store_internal.h"

#include <assert.h>
#include <ctype.h>
#include <stdio.h>
#include <string.h>

/* prefix followed by exactly 24 lower-case hex digits, as store_new_id makes them */
static int valid_id(const char *id, const char *prefix) {
    size_t plen = strlen(prefix);
    if (strncmp(id, prefix, plen) != 0 || strlen(id) != plen + 24) return 0;
    for (const char *c = id + plen; *c; c++)
        if (!isdigit((unsigned char)*c) && !(*c >= 'a' && *c <= 'f')) return 0;
    return 1;
}

/* Uses the given id (checked) or makes one. */
static int pick_id(const char *given, const char *prefix, char *id, char *err, size_t errlen) {
    if (given) {
        if (!valid_id(given, prefix)) {
            store_errorf(err, errlen, "\"%s\" is not an id of the form %s<24 hex digits>", given,
                         prefix);
            return DT_STORE_INVALID;
        }
        snprintf(id, DT_STORE_ID_MAX, "%s", given);
        return DT_STORE_OK;
    }
    if (store_new_id(prefix, id, DT_STORE_ID_MAX) != DT_STORE_OK) {
        store_errorf(err, errlen, "cannot read the system's random source for an id");
        return DT_STORE_ERROR;
    }
    return DT_STORE_OK;
}

/* Steps an INSERT to completion; a duplicate id is CONFLICT, a missing reference NOT_FOUND. */
static int insert_done(dt_store *s, sqlite3_stmt *st, const char *noun, const char *id,
                       char *err, size_t errlen) {
    int step = sqlite3_step(st);
    store_stmt_done(st);
    if (step == SQLITE_DONE) return DT_STORE_OK;
    if (step == SQLITE_CONSTRAINT_PRIMARYKEY) {
        store_errorf(err, errlen, "%s %s already exists", noun, id);
        return DT_STORE_CONFLICT;
    }
    if (step == SQLITE_CONSTRAINT_FOREIGNKEY) {
        store_errorf(err, errlen, "the source job of %s %s does not exist", noun, id);
        return DT_STORE_NOT_FOUND;
    }
    return store_fail(s, step, "storing a catalog entry", err, errlen);
}

/* Runs a SELECT of one row by id (?1); row (may be NULL) reads it. */
static int get_one(dt_store *s, const char *sql, const char *noun, const char *id,
                   json_t *(*row)(sqlite3_stmt *), json_t **out, char *path, size_t pathlen,
                   char *err, size_t errlen) {
    int rc = DT_STORE_ERROR;
    sqlite3_stmt *st = store_stmt(s, sql, err, errlen);
    if (!st) return rc;
    store_bind_text(st, 1, id);
    int step = sqlite3_step(st);
    if (step == SQLITE_ROW) {
        rc = DT_STORE_OK;
        if (out) {
            *out = row(st);
            if (!*out) {
                store_errorf(err, errlen, "%s %s holds invalid JSON", noun, id);
                rc = DT_STORE_ERROR;
            }
        }
        if (path) store_column_copy(st, 0, path, pathlen);
    } else {
        rc = store_step_missing(s, step, "reading the catalog", noun, id, err, errlen);
    }
    store_stmt_done(st);
    return rc;
}

/* Deletes id unless an active job uses it (sql_user selects such a job's id and status). */
static int delete_unused(dt_store *s, const char *sql_path, const char *sql_user,
                         const char *sql_delete, const char *noun, const char *id,
                         char *path_out, size_t pathlen, char *err, size_t errlen) {
    char path[4096] = "";
    int rc = store_begin_write(s, err, errlen);
    if (rc == DT_STORE_OK)
        rc = get_one(s, sql_path, noun, id, NULL, NULL, path, sizeof path, err, errlen);
    if (rc == DT_STORE_OK) {
        sqlite3_stmt *st = store_stmt(s, sql_user, err, errlen);
        rc = DT_STORE_ERROR;
        if (st) {
            store_bind_text(st, 1, id);
            int step = sqlite3_step(st);
            if (step == SQLITE_ROW) {
                store_errorf(err, errlen, "%s %s is used by job %s (%s); cancel the job or wait "
                             "for it to finish", noun, id, sqlite3_column_text(st, 0),
                             sqlite3_column_text(st, 1));
                rc = DT_STORE_CONFLICT;
            } else if (step == SQLITE_DONE) {
                rc = DT_STORE_OK;
            } else {
                rc = store_fail(s, step, "checking the jobs that use it", err, errlen);
            }
            store_stmt_done(st);
        }
    }
    if (rc == DT_STORE_OK) {
        sqlite3_stmt *st = store_stmt(s, sql_delete, err, errlen);
        rc = DT_STORE_ERROR;
        if (st) {
            store_bind_text(st, 1, id);
            int step = sqlite3_step(st);
            store_stmt_done(st);
            rc = step == SQLITE_DONE ? DT_STORE_OK : store_fail(s, step, "deleting", err, errlen);
        }
    }
    if (rc == DT_STORE_OK) rc = store_commit(s, err, errlen);
    if (rc != DT_STORE_OK) store_rollback(s);
    else if (path_out && pathlen) snprintf(path_out, pathlen, "%s", path);
    return rc;
}

/* ---- datasets -------------------------------------------------------------------------------- */

#define DATASET_COLUMNS \
    "id, name, format, images, classes, class_names, bytes, created_at, class_counts"

static json_t *dataset_from_row(sqlite3_stmt *st) {
    json_t *class_names = store_column_json(st, 5);
    json_t *class_counts = store_column_json(st, 8);
    if (!class_names || !class_counts) {
        json_decref(class_names);
        json_decref(class_counts);
        return NULL;
    }
    return json_pack("{s:o, s:s, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}",
                     "id", store_column_value(st, 0), "object", "dataset",
                     "name", store_column_value(st, 1), "format", store_column_value(st, 2),
                     "images", store_column_value(st, 3), "classes", store_column_value(st, 4),
                     "class_names", class_names, "class_counts", class_counts,
                     "bytes", store_column_value(st, 6), "created_at", store_column_value(st, 7));
}

static const char SQL_DATASET_INSERT[] =
    "INSERT INTO datasets (id, name, path, format, images, classes, class_names, bytes,"
    " created_at, class_counts) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";
static const char SQL_DATASET_GET[] = "SELECT " DATASET_COLUMNS " FROM datasets WHERE id = ?1";
static const char SQL_DATASET_PATH[] = "SELECT path FROM datasets WHERE id = ?1";
static const char SQL_DATASET_USER[] =
    "SELECT id, status FROM jobs WHERE dataset_id = ?1 AND status IN ('queued', 'running')"
    " LIMIT 1";
static const char SQL_DATASET_DELETE[] = "DELETE FROM datasets WHERE id = ?1";
static const char SQL_DATASET_CURSOR[] = "SELECT created_at FROM datasets WHERE id = ?1";
static const char SQL_DATASET_PAGE[] =
    "SELECT " DATASET_COLUMNS " FROM datasets ORDER BY created_at DESC, id DESC LIMIT ?1";
static const char SQL_DATASET_PAGE_AFTER[] =
    "SELECT " DATASET_COLUMNS " FROM datasets WHERE (created_at, id) < (?2, ?3)"
    " ORDER BY created_at DESC, id DESC LIMIT ?1";

int store_dataset_create(dt_store *s, const dt_dataset_new *d, char id_out[DT_STORE_ID_MAX],
                         char *err, size_t errlen) {
    assert(s && d && id_out);
    id_out[0] = '\0';
    if (!d->name || !d->path || !d->format || !d->name[0] || !d->path[0] || !d->format[0] ||
        d->images < 0 || d->classes < 0 || d->bytes < 0) {
        store_errorf(err, errlen, "a dataset needs a name, a path, a format and counts >= 0");
        return DT_STORE_INVALID;
    }
    if ((d->class_names && !json_is_array(d->class_names)) ||
        (d->class_counts && !json_is_array(d->class_counts))) {
        store_errorf(err, errlen, "class_names and class_counts must be JSON arrays");
        return DT_STORE_INVALID;
    }
    char id[DT_STORE_ID_MAX];
    int rc = pick_id(d->id, "ds_", id, err, errlen);
    if (rc != DT_STORE_OK) return rc;
    json_t *none = json_array();
    store_lock(s);
    rc = DT_STORE_ERROR;
    sqlite3_stmt *st = store_stmt(s, SQL_DATASET_INSERT, err, errlen);
    if (st) {
        store_bind_text(st, 1, id);
        store_bind_text(st, 2, d->name);
        store_bind_text(st, 3, d->path);
        store_bind_text(st, 4, d->format);
        sqlite3_bind_int64(st, 5, d->images);
        sqlite3_bind_int64(st, 6, d->classes);
        store_bind_json(st, 7, d->class_names ? d->class_names : none);
        sqlite3_bind_int64(st, 8, d->bytes);
        sqlite3_bind_double(st, 9, store_now());
        store_bind_json(st, 10, d->class_counts ? d->class_counts : none);
        rc = insert_done(s, st, "dataset", id, err, errlen);
    }
    store_unlock(s);
    json_decref(none);
    if (rc == DT_STORE_OK) snprintf(id_out, DT_STORE_ID_MAX, "%s", id);
    return rc;
}

int store_dataset_get(dt_store *s, const char *id, json_t **out, char *err, size_t errlen) {
    assert(s && id && out);
    *out = NULL;
    store_lock(s);
    int rc = get_one(s, SQL_DATASET_GET, "dataset", id, dataset_from_row, out, NULL, 0, err,
                     errlen);
    store_unlock(s);
    return rc;
}

int store_dataset_list(dt_store *s, int limit, const char *after, json_t **out, char *err,
                       size_t errlen) {
    assert(s && out);
    static const store_page_query q = {"dataset", SQL_DATASET_CURSOR, SQL_DATASET_PAGE,
                                       SQL_DATASET_PAGE_AFTER, dataset_from_row};
    store_lock(s);
    int rc = store_page(s, &q, NULL, limit, after, out, err, errlen);
    store_unlock(s);
    return rc;
}

int store_dataset_path(dt_store *s, const char *id, char *path, size_t pathlen, char *err,
                       size_t errlen) {
    assert(s && id && path && pathlen);
    path[0] = '\0';
    store_lock(s);
    int rc = get_one(s, SQL_DATASET_PATH, "dataset", id, NULL, NULL, path, pathlen, err, errlen);
    store_unlock(s);
    return rc;
}

int store_dataset_delete(dt_store *s, const char *id, char *path_out, size_t pathlen,
                         char *err, size_t errlen) {
    assert(s && id);
    store_lock(s);
    int rc = delete_unused(s, SQL_DATASET_PATH, SQL_DATASET_USER, SQL_DATASET_DELETE, "dataset",
                           id, path_out, pathlen, err, errlen);
    store_unlock(s);
    return rc;
}

/* ---- models ---------------------------------------------------------------------------------- */

#define MODEL_COLUMNS \
    "id, name, config, source_job, source_checkpoint, bytes, sha256, created_at, kind"

static json_t *model_from_row(sqlite3_stmt *st) {
    json_t *config = store_column_json(st, 2);
    if (!config) return NULL;
    return json_pack("{s:o, s:s, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}",
                     "id", store_column_value(st, 0), "object", "model",
                     "name", store_column_value(st, 1), "kind", store_column_value(st, 8),
                     "config", config,
                     "source_job", store_column_value(st, 3),
                     "source_checkpoint", store_column_value(st, 4),
                     "bytes", store_column_value(st, 5), "sha256", store_column_value(st, 6),
                     "created_at", store_column_value(st, 7));
}

static const char SQL_MODEL_INSERT[] =
    "INSERT INTO models (id, name, path, config, source_job, source_checkpoint, bytes, sha256,"
    " created_at, kind) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";
static const char SQL_MODEL_GET[] = "SELECT " MODEL_COLUMNS " FROM models WHERE id = ?1";
static const char SQL_MODEL_PATH[] = "SELECT path FROM models WHERE id = ?1";
static const char SQL_MODEL_USER[] =
    "SELECT id, status FROM jobs WHERE base_model_id = ?1 AND status IN ('queued', 'running')"
    " LIMIT 1";
static const char SQL_MODEL_DELETE[] = "DELETE FROM models WHERE id = ?1";
static const char SQL_MODEL_CURSOR[] = "SELECT created_at FROM models WHERE id = ?1";
static const char SQL_MODEL_PAGE[] =
    "SELECT " MODEL_COLUMNS " FROM models ORDER BY created_at DESC, id DESC LIMIT ?1";
static const char SQL_MODEL_PAGE_AFTER[] =
    "SELECT " MODEL_COLUMNS " FROM models WHERE (created_at, id) < (?2, ?3)"
    " ORDER BY created_at DESC, id DESC LIMIT ?1";

int store_model_create(dt_store *s, const dt_model_new *m, char id_out[DT_STORE_ID_MAX],
                       char *err, size_t errlen) {
    assert(s && m && id_out);
    id_out[0] = '\0';
    if (!m->name || !m->path || !m->name[0] || !m->path[0] || m->bytes < 0) {
        store_errorf(err, errlen, "a model needs a name, a path and a size >= 0");
        return DT_STORE_INVALID;
    }
    if (!json_is_object(m->config)) {
        store_errorf(err, errlen, "a model's config must be a JSON object");
        return DT_STORE_INVALID;
    }
    const char *kind = m->kind ? m->kind : "dit";
    if (strcmp(kind, "dit") != 0 && strcmp(kind, "classifier") != 0 && strcmp(kind, "vae") != 0) {
        store_errorf(err, errlen, "a model's kind is \"dit\", \"classifier\" or \"vae\", not \"%s\"", kind);
        return DT_STORE_INVALID;
    }
    char id[DT_STORE_ID_MAX];
    int rc = pick_id(m->id, "mdl_", id, err, errlen);
    if (rc != DT_STORE_OK) return rc;
    store_lock(s);
    rc = DT_STORE_ERROR;
    sqlite3_stmt *st = store_stmt(s, SQL_MODEL_INSERT, err, errlen);
    if (st) {
        store_bind_text(st, 1, id);
        store_bind_text(st, 2, m->name);
        store_bind_text(st, 3, m->path);
        store_bind_json(st, 4, m->config);
        store_bind_text(st, 5, m->source_job);
        store_bind_text(st, 6, m->source_checkpoint);
        sqlite3_bind_int64(st, 7, m->bytes);
        store_bind_text(st, 8, m->sha256);
        sqlite3_bind_double(st, 9, store_now());
        store_bind_text(st, 10, kind);
        rc = insert_done(s, st, "model", id, err, errlen);
    }
    store_unlock(s);
    if (rc == DT_STORE_OK) snprintf(id_out, DT_STORE_ID_MAX, "%s", id);
    return rc;
}

int store_model_get(dt_store *s, const char *id, json_t **out, char *err, size_t errlen) {
    assert(s && id && out);
    *out = NULL;
    store_lock(s);
    int rc = get_one(s, SQL_MODEL_GET, "model", id, model_from_row, out, NULL, 0, err, errlen);
    store_unlock(s);
    return rc;
}

int store_model_list(dt_store *s, int limit, const char *after, json_t **out, char *err,
                     size_t errlen) {
    assert(s && out);
    static const store_page_query q = {"model", SQL_MODEL_CURSOR, SQL_MODEL_PAGE,
                                       SQL_MODEL_PAGE_AFTER, model_from_row};
    store_lock(s);
    int rc = store_page(s, &q, NULL, limit, after, out, err, errlen);
    store_unlock(s);
    return rc;
}

int store_model_path(dt_store *s, const char *id, char *path, size_t pathlen, char *err,
                     size_t errlen) {
    assert(s && id && path && pathlen);
    path[0] = '\0';
    store_lock(s);
    int rc = get_one(s, SQL_MODEL_PATH, "model", id, NULL, NULL, path, pathlen, err, errlen);
    store_unlock(s);
    return rc;
}

int store_model_delete(dt_store *s, const char *id, char *path_out, size_t pathlen, char *err,
                       size_t errlen) {
    assert(s && id);
    store_lock(s);
    int rc = delete_unused(s, SQL_MODEL_PATH, SQL_MODEL_USER, SQL_MODEL_DELETE, "model", id,
                           path_out, pathlen, err, errlen);
    store_unlock(s);
    return rc;
}
