/* store_sqlite.c — the SQLite store's handle: opening (pragmas, migrations), the statement
 * cache, transactions, error mapping, ids and the JSON column helpers the other files share. */
#include "store_internal.h"

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/time.h>

/* RETURNING (3.35) and STRICT tables (3.37). */
#define STORE_SQLITE_MIN 3037000

void store_errorf(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || errlen == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

const char *store_code_name(int code) {
    switch (code) {
    case DT_STORE_OK: return "ok";
    case DT_STORE_NOT_FOUND: return "not_found";
    case DT_STORE_CONFLICT: return "conflict";
    case DT_STORE_INVALID: return "invalid";
    default: return "error";
    }
}

double store_now(void) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + tv.tv_usec * 1e-6;
}

int store_random_bytes(void *buf, size_t n) {
    assert(buf || !n);
    size_t got = 0;
    while (got < n) {
        ssize_t r = getrandom((unsigned char *)buf + got, n - got, 0);
        if (r < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        got += (size_t)r;
    }
    return 0;
}

void store_hex_encode(const unsigned char *raw, size_t n, char *out) {
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[raw[i] >> 4];
        out[2 * i + 1] = hex[raw[i] & 15];
    }
    out[2 * n] = '\0';
}

int store_random_hex(const char *prefix, size_t nbytes, char *out, size_t outlen) {
    assert(prefix && out && nbytes <= 64);
    size_t plen = strlen(prefix);
    unsigned char raw[64];
    if (outlen < plen + 2 * nbytes + 1 || store_random_bytes(raw, nbytes)) return DT_STORE_ERROR;
    memcpy(out, prefix, plen);
    store_hex_encode(raw, nbytes, out + plen);
    return DT_STORE_OK;
}

int store_new_id(const char *prefix, char *out, size_t outlen) {
    return store_random_hex(prefix, 12, out, outlen);
}

void store_lock(dt_store *s) {
    int rc = pthread_mutex_lock(&s->mu);
    assert(rc == 0);
    (void)rc;
}

void store_unlock(dt_store *s) {
    int rc = pthread_mutex_unlock(&s->mu);
    assert(rc == 0);
    (void)rc;
}

int store_fail(dt_store *s, int rc, const char *what, char *err, size_t errlen) {
    const char *msg = s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc);
    switch (rc) {
    case SQLITE_CONSTRAINT_FOREIGNKEY:
        store_errorf(err, errlen, "%s: a referenced row does not exist", what);
        return DT_STORE_NOT_FOUND;
    case SQLITE_CONSTRAINT_PRIMARYKEY:
    case SQLITE_CONSTRAINT_UNIQUE:
        store_errorf(err, errlen, "%s: already exists (%s)", what, msg);
        return DT_STORE_CONFLICT;
    default:
        store_errorf(err, errlen, "%s: database error: %s (sqlite code %d)", what, msg, rc);
        return DT_STORE_ERROR;
    }
}

int store_step_missing(dt_store *s, int step, const char *what, const char *kind,
                       const char *id, char *err, size_t errlen) {
    if (step != SQLITE_DONE) return store_fail(s, step, what, err, errlen);
    store_errorf(err, errlen, "no %s %s", kind, id);
    return DT_STORE_NOT_FOUND;
}

int store_step_job_write(dt_store *s, int step, const char *what, const char *job_id,
                         char *err, size_t errlen) {
    if (step == SQLITE_DONE) return DT_STORE_OK;
    if (step != SQLITE_CONSTRAINT_FOREIGNKEY) return store_fail(s, step, what, err, errlen);
    store_errorf(err, errlen, "no job %s", job_id);
    return DT_STORE_NOT_FOUND;
}

sqlite3_stmt *store_stmt(dt_store *s, const char *sql, char *err, size_t errlen) {
    for (int i = 0; i < s->n_cached; i++)
        if (s->cache[i].sql == sql) return s->cache[i].st;
    /* the set of statements is fixed by the code, so running out is a programmer error */
    assert(s->n_cached < STORE_STMT_CACHE && "raise STORE_STMT_CACHE");
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL);
    if (rc != SQLITE_OK) {
        store_errorf(err, errlen, "preparing a statement: %s", sqlite3_errmsg(s->db));
        sqlite3_finalize(st);
        return NULL;
    }
    s->cache[s->n_cached].sql = sql;
    s->cache[s->n_cached].st = st;
    s->n_cached++;
    return st;
}

void store_stmt_done(sqlite3_stmt *st) {
    if (!st) return;
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

static int store_exec_cached(dt_store *s, const char *sql, const char *what,
                             char *err, size_t errlen) {
    sqlite3_stmt *st = store_stmt(s, sql, err, errlen);
    if (!st) return DT_STORE_ERROR;
    int rc = sqlite3_step(st);
    store_stmt_done(st);
    if (rc != SQLITE_DONE) return store_fail(s, rc, what, err, errlen);
    return DT_STORE_OK;
}

static const char SQL_BEGIN_WRITE[] = "BEGIN IMMEDIATE";
static const char SQL_BEGIN_READ[] = "BEGIN";
static const char SQL_COMMIT[] = "COMMIT";
static const char SQL_ROLLBACK[] = "ROLLBACK";

int store_begin_write(dt_store *s, char *err, size_t errlen) {
    return store_exec_cached(s, SQL_BEGIN_WRITE, "starting a transaction", err, errlen);
}

int store_begin_read(dt_store *s, char *err, size_t errlen) {
    return store_exec_cached(s, SQL_BEGIN_READ, "starting a transaction", err, errlen);
}

int store_commit(dt_store *s, char *err, size_t errlen) {
    int rc = store_exec_cached(s, SQL_COMMIT, "committing", err, errlen);
    if (rc != DT_STORE_OK) store_rollback(s);
    return rc;
}

void store_rollback(dt_store *s) {
    if (sqlite3_get_autocommit(s->db)) return; /* no transaction open */
    store_exec_cached(s, SQL_ROLLBACK, "rolling back", NULL, 0);
}

int store_bind_json(sqlite3_stmt *st, int i, json_t *v) {
    if (!v) return sqlite3_bind_null(st, i);
    /* 16 significant digits: what people typed (1e-4, 0.9999) reads back as typed. */
    char *text = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY | JSON_REAL_PRECISION(16));
    if (!text) return SQLITE_NOMEM;
    return sqlite3_bind_text(st, i, text, -1, free);
}

int store_bind_text(sqlite3_stmt *st, int i, const char *text) {
    if (!text) return sqlite3_bind_null(st, i);
    return sqlite3_bind_text(st, i, text, -1, SQLITE_TRANSIENT);
}

json_t *store_column_json(sqlite3_stmt *st, int i) {
    if (sqlite3_column_type(st, i) == SQLITE_NULL) return json_null();
    const char *text = (const char *)sqlite3_column_text(st, i);
    int n = sqlite3_column_bytes(st, i);
    if (!text) return NULL;
    return json_loadb(text, (size_t)n, JSON_DECODE_ANY, NULL);
}

json_t *store_column_value(sqlite3_stmt *st, int i) {
    switch (sqlite3_column_type(st, i)) {
    case SQLITE_INTEGER: return json_integer(sqlite3_column_int64(st, i));
    case SQLITE_FLOAT: return json_real(sqlite3_column_double(st, i));
    case SQLITE_TEXT: return json_string((const char *)sqlite3_column_text(st, i));
    default: return json_null();
    }
}

void store_column_copy(sqlite3_stmt *st, int i, char *buf, size_t bufsize) {
    if (bufsize == 0) return;
    const char *text = (const char *)sqlite3_column_text(st, i);
    snprintf(buf, bufsize, "%s", text ? text : "");
}

int store_check_limit(int limit, int max, char *err, size_t errlen) {
    if (limit < 1 || limit > max) {
        store_errorf(err, errlen, "limit must be between 1 and %d (got %d)", max, limit);
        return DT_STORE_INVALID;
    }
    return DT_STORE_OK;
}

/* Runs a pragma that is part of opening and checks its answer when it has one. */
static int store_pragma(sqlite3 *db, const char *sql, const char *want, char *err,
                        size_t errlen) {
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    int ok = rc == SQLITE_ROW || rc == SQLITE_DONE;
    if (ok && want) {
        const char *got = rc == SQLITE_ROW ? (const char *)sqlite3_column_text(st, 0) : NULL;
        if (!got || strcmp(got, want) != 0) {
            store_errorf(err, errlen, "%s gave \"%s\", not \"%s\" (is the database on a file "
                         "system without shared-memory support, such as NFS?)",
                         sql, got ? got : "", want);
            sqlite3_finalize(st);
            return DT_STORE_ERROR;
        }
    }
    if (!ok) store_errorf(err, errlen, "%s: %s", sql, sqlite3_errmsg(db));
    sqlite3_finalize(st);
    return ok ? DT_STORE_OK : DT_STORE_ERROR;
}

int store_open(const char *path, const dt_store_options *opts, dt_store **out,
               char *err, size_t errlen) {
    assert(path && out);
    *out = NULL;
    if (sqlite3_libversion_number() < STORE_SQLITE_MIN) {
        store_errorf(err, errlen, "SQLite %s is too old: difftune needs 3.37 or newer",
                     sqlite3_libversion());
        return DT_STORE_ERROR;
    }
    if (!sqlite3_threadsafe()) {
        store_errorf(err, errlen, "this SQLite library was built without thread support");
        return DT_STORE_ERROR;
    }
    dt_store *s = calloc(1, sizeof *s);
    if (!s) {
        store_errorf(err, errlen, "out of memory");
        return DT_STORE_ERROR;
    }
    if (pthread_mutex_init(&s->mu, NULL) != 0) {
        free(s);
        store_errorf(err, errlen, "cannot create a mutex");
        return DT_STORE_ERROR;
    }
    /* NOMUTEX: the handle's own mutex already serialises every call on this connection */
    int rc = sqlite3_open_v2(path, &s->db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                             NULL);
    if (rc != SQLITE_OK) {
        store_errorf(err, errlen, "cannot open database %s: %s", path,
                     s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
        store_close(s);
        return DT_STORE_ERROR;
    }
    sqlite3_extended_result_codes(s->db, 1);
    int busy_ms = opts && opts->busy_timeout_ms > 0 ? opts->busy_timeout_ms : 5000;
    sqlite3_busy_timeout(s->db, busy_ms);

    char why[512] = "";
    /* A database from a newer difftune is refused before anything writes to it: no switch to
     * WAL, no migration, and no checkpoint folding its WAL into the file when we close. */
    if (store_schema_check(s->db, why, sizeof why) != DT_STORE_OK) {
        sqlite3_db_config(s->db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, NULL);
        store_errorf(err, errlen, "database %s: %s", path, why);
        store_close(s);
        return DT_STORE_ERROR;
    }
    int st = store_pragma(s->db, "PRAGMA journal_mode = WAL", "wal", why, sizeof why);
    if (st == DT_STORE_OK)
        st = store_pragma(s->db, opts && opts->durable ? "PRAGMA synchronous = FULL"
                                                        : "PRAGMA synchronous = NORMAL",
                          NULL, why, sizeof why);
    if (st == DT_STORE_OK)
        st = store_pragma(s->db, "PRAGMA foreign_keys = ON", NULL, why, sizeof why);
    if (st == DT_STORE_OK) st = store_migrate(s->db, why, sizeof why);
    if (st != DT_STORE_OK) {
        store_errorf(err, errlen, "database %s: %s", path, why);
        store_close(s);
        return DT_STORE_ERROR;
    }
    *out = s;
    return DT_STORE_OK;
}

void store_close(dt_store *s) {
    if (!s) return;
    for (int i = 0; i < s->n_cached; i++) sqlite3_finalize(s->cache[i].st);
    if (s->db) sqlite3_close(s->db);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

static const char SQL_USER_VERSION[] = "PRAGMA user_version";

int store_schema_version(dt_store *s) {
    assert(s);
    store_lock(s);
    int version = DT_STORE_ERROR;
    sqlite3_stmt *st = store_stmt(s, SQL_USER_VERSION, NULL, 0);
    if (st && sqlite3_step(st) == SQLITE_ROW) version = sqlite3_column_int(st, 0);
    store_stmt_done(st);
    store_unlock(s);
    return version;
}

int store_page(dt_store *s, const store_page_query *q, const char *filter, int limit,
               const char *after, json_t **out, char *err, size_t errlen) {
    *out = NULL;
    int rc = store_check_limit(limit, DT_STORE_LIST_MAX, err, errlen);
    if (rc != DT_STORE_OK) return rc;
    rc = store_begin_read(s, err, errlen);
    if (rc != DT_STORE_OK) return rc;

    double cursor_ts = 0;
    sqlite3_stmt *st = NULL;
    if (after) {
        st = store_stmt(s, q->sql_cursor, err, errlen);
        if (!st) goto fail;
        store_bind_text(st, 1, after);
        int step = sqlite3_step(st);
        if (step == SQLITE_ROW) {
            cursor_ts = sqlite3_column_double(st, 0);
        } else if (step == SQLITE_DONE) {
            store_errorf(err, errlen, "after: no %s %s (pass the last_id of a previous page)",
                         q->noun, after);
            rc = DT_STORE_INVALID;
            goto fail;
        } else {
            rc = store_fail(s, step, "reading the page cursor", err, errlen);
            goto fail;
        }
        store_stmt_done(st);
    }

    st = store_stmt(s, after ? q->sql_after : q->sql_first, err, errlen);
    if (!st) { rc = DT_STORE_ERROR; goto fail; }
    sqlite3_bind_int(st, 1, limit + 1);
    if (after) {
        sqlite3_bind_double(st, 2, cursor_ts);
        store_bind_text(st, 3, after);
    }
    if (filter) store_bind_text(st, 4, filter);

    json_t *data = json_array();
    int has_more = 0, step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        if ((int)json_array_size(data) == limit) {
            has_more = 1;
            break;
        }
        json_t *o = q->row(st);
        if (!o) {
            json_decref(data);
            store_errorf(err, errlen, "a stored %s holds invalid JSON", q->noun);
            rc = DT_STORE_ERROR;
            goto fail;
        }
        json_array_append_new(data, o);
    }
    if (step != SQLITE_ROW && step != SQLITE_DONE) {
        json_decref(data);
        rc = store_fail(s, step, "listing", err, errlen);
        goto fail;
    }
    store_stmt_done(st);
    store_rollback(s); /* read-only: nothing to keep */

    size_t n = json_array_size(data);
    json_t *page = json_object();
    json_object_set_new(page, "data", data);
    json_object_set_new(page, "has_more", json_boolean(has_more));
    json_object_set(page, "last_id",
                    n ? json_object_get(json_array_get(data, n - 1), "id") : json_null());
    *out = page;
    return DT_STORE_OK;

fail:
    if (rc == DT_STORE_OK) rc = DT_STORE_ERROR;
    store_stmt_done(st);
    store_rollback(s);
    return rc;
}
