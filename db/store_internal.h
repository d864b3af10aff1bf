/* store_internal.h — what the SQLite implementation's files share: the handle, the statement
 * cache, transactions, error mapping and JSON column helpers. Not for use outside db/. */
#ifndef DT_STORE_INTERNAL_H
#define DT_STORE_INTERNAL_H

#include "store.h"

#include <pthread.h>
#include <sqlite3.h>

/* Distinct SQL texts the implementation prepares; each is prepared once and kept. */
#define STORE_STMT_CACHE 96

struct dt_store {
    sqlite3 *db;
    pthread_mutex_t mu; /* held for a whole public call: one transaction at a time */
    struct {
        const char *sql; /* keyed by the address of a static SQL string */
        sqlite3_stmt *st;
    } cache[STORE_STMT_CACHE];
    int n_cached;
};

/* Formats into err (may be NULL). */
void store_errorf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The prepared statement for sql (a string with static storage: the cache keys on its
 * address), reset and with bindings cleared. NULL with a message when preparing fails. The
 * caller must hold the lock and call store_stmt_done after its last step. */
sqlite3_stmt *store_stmt(dt_store *s, const char *sql, char *err, size_t errlen);
/* Resets st so it holds no read snapshot and releases bound values. */
void store_stmt_done(sqlite3_stmt *st);

/* Maps a failed sqlite3 result (rc from step or exec) to a dt_store_code with a message naming
 * what was being done: foreign key violations are DT_STORE_NOT_FOUND, unique and primary key
 * violations DT_STORE_CONFLICT, everything else DT_STORE_ERROR. */
int store_fail(dt_store *s, int rc, const char *what, char *err, size_t errlen);

/* Triage of a step that wanted a row and got step instead (call it for anything but
 * SQLITE_ROW): SQLITE_DONE means no such row, DT_STORE_NOT_FOUND with "no <kind> <id>";
 * anything else is store_fail(s, step, what, ...). */
int store_step_missing(dt_store *s, int step, const char *what, const char *kind,
                       const char *id, char *err, size_t errlen);

/* Triage of stepping a write whose foreign key names job job_id: SQLITE_DONE is DT_STORE_OK,
 * SQLITE_CONSTRAINT_FOREIGNKEY DT_STORE_NOT_FOUND with "no job <job_id>", anything else
 * store_fail(s, step, what, ...). */
int store_step_job_write(dt_store *s, int step, const char *what, const char *job_id,
                         char *err, size_t errlen);

/* Transactions: write transactions take the write lock up front (BEGIN IMMEDIATE) so two
 * writers never deadlock upgrading read locks; read transactions give several SELECTs one
 * snapshot. store_rollback is safe to call when no transaction is open. */
int store_begin_write(dt_store *s, char *err, size_t errlen);
int store_begin_read(dt_store *s, char *err, size_t errlen);
int store_commit(dt_store *s, char *err, size_t errlen);
void store_rollback(dt_store *s);

void store_lock(dt_store *s);
void store_unlock(dt_store *s);

/* Wall clock, unix seconds. */
double store_now(void);

/* Binds JSON text of v (compact, key order kept) at index i; a NULL v binds SQL NULL. Returns
 * an sqlite3 result code. */
int store_bind_json(sqlite3_stmt *st, int i, json_t *v);
/* Binds a string or, for NULL, SQL NULL (the text is copied). */
int store_bind_text(sqlite3_stmt *st, int i, const char *text);
/* Column i parsed as JSON (a new reference); SQL NULL gives json_null(). NULL when the stored
 * text is not JSON (corruption) — callers report DT_STORE_ERROR. */
json_t *store_column_json(sqlite3_stmt *st, int i);
/* Column i as a JSON string, integer or real by its SQL type; SQL NULL gives json_null(). */
json_t *store_column_value(sqlite3_stmt *st, int i);
/* Copies text column i into buf (bufsize bytes, truncating; NULL gives ""). */
void store_column_copy(sqlite3_stmt *st, int i, char *buf, size_t bufsize);

/* A limit argument in 1..max, else DT_STORE_INVALID with a message naming it. */
int store_check_limit(int limit, int max, char *err, size_t errlen);

/* One page of a newest-first listing keyed by (created_at, id). The SQL texts bind ?1 = limit
 * (the caller's limit + 1, to learn has_more), ?2 and ?3 = the cursor's created_at and id (the
 * _after text only), ?4 = filter (when not NULL); sql_cursor selects created_at by id = ?1.
 * row turns a result row into its API object (NULL when stored JSON is corrupt), which must
 * have an "id". Opens its own read transaction; the caller holds the lock. */
typedef struct {
    const char *noun;        /* "job", "dataset", ... for messages */
    const char *sql_cursor;
    const char *sql_first;
    const char *sql_after;
    json_t *(*row)(sqlite3_stmt *st);
} store_page_query;

int store_page(dt_store *s, const store_page_query *q, const char *filter, int limit,
               const char *after, json_t **out, char *err, size_t errlen);

/* store_jobs.c: DT_STORE_OK when the job exists, else DT_STORE_NOT_FOUND with a message. */
int store_job_exists(dt_store *s, const char *id, char *err, size_t errlen);

/* store_events.c: appends an event inside the caller's transaction (no status check).
 * data is borrowed (NULL = {}). */
int store_event_insert(dt_store *s, const char *job_id, const char *type, json_t *data,
                       double ts, int64_t *id_out, char *err, size_t errlen);

/* migrations.c: DT_STORE_OK when db's schema version is one this build knows (not newer than
 * store_schema_latest()), else DT_STORE_ERROR with the reason in err. Only reads. */
int store_schema_check(sqlite3 *db, char *err, size_t errlen);
/* Writes n bytes as 2n lower-case hex digits and a NUL into out. */
void store_hex_encode(const unsigned char *raw, size_t n, char *out);
/* Writes prefix and 2 x nbytes random hex digits (nbytes <= 64) into out. Returns DT_STORE_OK, or
 * DT_STORE_ERROR when out is too small or the random source fails. */
int store_random_hex(const char *prefix, size_t nbytes, char *out, size_t outlen);
/* migrations.c: brings db to store_schema_latest(), one transaction per migration. */
int store_migrate(sqlite3 *db, char *err, size_t errlen);

#endif
