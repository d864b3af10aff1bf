/* migrations.c — the schema, as an ordered list of migrations.
 *
 * PRAGMA user_version holds how many have been applied. At open, each pending migration runs in
 * its own write transaction together with the user_version bump, so a crash leaves the schema
 * at a whole version. Migrations are append-only: a released one is never edited; a change is a
 * new entry at the end.
 *
 * Times are REAL unix seconds everywhere. JSON columns hold compact JSON text written by the
 * store. Tables are STRICT so a wrongly typed bind fails loudly instead of being stored.
 */
#include "store_internal.h"

#include <stdio.h>

typedef struct {
    const char *name;
    const char *sql;
} store_migration;

static const store_migration MIGRATIONS[] = {
    {"initial schema",
     "CREATE TABLE jobs ("
     "  id TEXT PRIMARY KEY,"
     "  status TEXT NOT NULL"
     "    CHECK (status IN ('queued','running','succeeded','failed','cancelled')),"
     "  method TEXT NOT NULL,"
     "  spec TEXT NOT NULL,"                      /* the complete job spec, JSON */
     "  priority INTEGER NOT NULL DEFAULT 0,"
     "  requested_device TEXT NOT NULL DEFAULT 'auto'," /* spec.device: auto, cpu, cuda:N */
     "  dataset_id TEXT,"                         /* spec.dataset, spec.base_model: what the */
     "  base_model_id TEXT,"                      /* job holds on to while active */
     "  attempt INTEGER NOT NULL DEFAULT 0,"      /* attempts ever started */
     "  max_attempts INTEGER NOT NULL CHECK (max_attempts >= 1),"
     "  attempt_budget INTEGER NOT NULL CHECK (attempt_budget >= 1)," /* per submission/retry */
     "  cancel_requested INTEGER NOT NULL DEFAULT 0,"
     "  created_at REAL NOT NULL,"
     "  started_at REAL,"
     "  finished_at REAL,"
     "  device TEXT,"
     "  error_code TEXT,"
     "  error_message TEXT,"
     "  progress TEXT,"                           /* JSON object */
     "  idempotency_key TEXT,"
     "  request_hash TEXT"
     ") STRICT;"
     /* GET /jobs newest first, with and without a status filter, cursor on (created_at, id) */
     "CREATE INDEX jobs_by_created ON jobs (created_at, id);"
     "CREATE INDEX jobs_by_status ON jobs (status, created_at, id);"
     /* the dispatch queue in claim order (status first: a partial index on status = 'queued'
      * loses to jobs_by_status in SQLite's planner and the claim then sorts) */
     "CREATE INDEX jobs_queue ON jobs (status, priority DESC, created_at, id);"

     "CREATE TABLE events ("
     "  id INTEGER PRIMARY KEY AUTOINCREMENT,"    /* the SSE id: increasing, never reused */
     "  job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,"
     "  type TEXT NOT NULL,"
     "  data TEXT NOT NULL,"                      /* JSON object */
     "  ts REAL NOT NULL"
     ") STRICT;"
     "CREATE INDEX events_by_job ON events (job_id, id);"

     "CREATE TABLE metrics ("
     "  job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,"
     "  name TEXT NOT NULL,"
     "  step INTEGER NOT NULL,"
     "  value TEXT NOT NULL,"                     /* JSON value */
     "  ts REAL NOT NULL,"
     "  PRIMARY KEY (job_id, name, step)"
     ") STRICT;"

     "CREATE TABLE artifacts ("
     "  job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,"
     "  kind TEXT NOT NULL CHECK (kind IN ('checkpoint','sample')),"
     "  name TEXT NOT NULL,"
     "  path TEXT NOT NULL,"
     "  bytes INTEGER NOT NULL,"
     "  sha256 TEXT,"
     "  step INTEGER,"
     "  created_at REAL NOT NULL,"
     "  PRIMARY KEY (job_id, kind, name)"
     ") STRICT;"

     "CREATE TABLE datasets ("
     "  id TEXT PRIMARY KEY,"
     "  name TEXT NOT NULL,"
     "  path TEXT NOT NULL,"
     "  format TEXT NOT NULL,"
     "  images INTEGER NOT NULL,"
     "  classes INTEGER NOT NULL,"
     "  class_names TEXT NOT NULL,"               /* JSON array of strings */
     "  bytes INTEGER NOT NULL,"
     "  created_at REAL NOT NULL"
     ") STRICT;"
     "CREATE INDEX datasets_by_created ON datasets (created_at, id);"

     "CREATE TABLE models ("
     "  id TEXT PRIMARY KEY,"
     "  name TEXT NOT NULL,"
     "  path TEXT NOT NULL,"
     "  config TEXT NOT NULL,"                    /* JSON object */
     "  source_job TEXT REFERENCES jobs(id) ON DELETE SET NULL,"
     "  source_checkpoint TEXT,"
     "  bytes INTEGER NOT NULL,"
     "  sha256 TEXT,"
     "  created_at REAL NOT NULL"
     ") STRICT;"
     "CREATE INDEX models_by_created ON models (created_at, id);"

     "CREATE TABLE idempotency_keys ("
     "  key TEXT PRIMARY KEY,"
     "  request_hash TEXT NOT NULL,"
     "  job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,"
     "  created_at REAL NOT NULL"
     ") STRICT;"
     "CREATE INDEX idempotency_keys_by_created ON idempotency_keys (created_at);"

     "CREATE TABLE api_keys ("
     "  id TEXT PRIMARY KEY,"
     "  name TEXT NOT NULL DEFAULT '',"
     "  hash TEXT NOT NULL UNIQUE,"               /* SHA-256 of the secret; never the secret */
     "  created_at REAL NOT NULL"
     ") STRICT;"},
    {"model kind",
     /* What a model file holds: a DiT to fine-tune, or a classifier for fd_classifier. */
     "ALTER TABLE models ADD COLUMN kind TEXT NOT NULL DEFAULT 'dit'"
     "  CHECK (kind IN ('dit', 'classifier'));"},
    /* what an evaluation point records besides its value (samples, sampler, reference set) */
    {"metric detail",
     "ALTER TABLE metrics ADD COLUMN detail TEXT;"}, /* JSON object or NULL */
    /* the images of each class, in class_names order; datasets stored before it keep [] */
    {"dataset class counts",
     "ALTER TABLE datasets ADD COLUMN class_counts TEXT NOT NULL DEFAULT '[]';"}, /* JSON array */
    /* what a key may do, and revocation; keys made before scopes existed could do everything */
    {"api key scopes",
     "ALTER TABLE api_keys ADD COLUMN scope TEXT NOT NULL DEFAULT 'admin'"
     "  CHECK (scope IN ('read','submit','admin'));"
     "ALTER TABLE api_keys ADD COLUMN revoked_at REAL;" /* NULL while active */
     /* lookup by hash uses hash's UNIQUE index; counting the active keys reads only this
      * partial index; the listing walks the second one newest first */
     "CREATE INDEX api_keys_active ON api_keys (id) WHERE revoked_at IS NULL;"
     "CREATE INDEX api_keys_by_created ON api_keys (created_at, id);"},
    /* checkpoints pinned through the API: retention never deletes them (store_retention.c) */
    {"checkpoint pins",
     "ALTER TABLE artifacts ADD COLUMN pinned INTEGER NOT NULL DEFAULT 0"
     "  CHECK (pinned IN (0, 1));"},
    /* a third kind of model, the SD VAE of latent DiTs: SQLite cannot change a CHECK, so the
     * table is rebuilt with the same columns in the same order (nothing references models) */
    {"model kind vae",
     "CREATE TABLE models_new ("
     "  id TEXT PRIMARY KEY,"
     "  name TEXT NOT NULL,"
     "  path TEXT NOT NULL,"
     "  config TEXT NOT NULL,"
     "  source_job TEXT REFERENCES jobs(id) ON DELETE SET NULL,"
     "  source_checkpoint TEXT,"
     "  bytes INTEGER NOT NULL,"
     "  sha256 TEXT,"
     "  created_at REAL NOT NULL,"
     "  kind TEXT NOT NULL DEFAULT 'dit' CHECK (kind IN ('dit', 'classifier', 'vae'))"
     ") STRICT;"
     "INSERT INTO models_new (id, name, path, config, source_job, source_checkpoint, bytes, sha256,"
     "  created_at, kind)"
     "  SELECT id, name, path, config, source_job, source_checkpoint, bytes, sha256, created_at, kind"
     "  FROM models;"
     "DROP TABLE models;"
     "ALTER TABLE models_new RENAME TO models;"
     "CREATE INDEX models_by_created ON models (created_at, id);"},
    /* the job's parameter counts (the whole DiT, and what its method trains: a peft trains a
     * fraction), computed when the job is created; NULL for jobs stored before */
    {"job parameters",
     "ALTER TABLE jobs ADD COLUMN params_total INTEGER CHECK (params_total >= 0);"
     "ALTER TABLE jobs ADD COLUMN params_trainable INTEGER CHECK (params_trainable >= 0);"},
};

#define N_MIGRATIONS ((int)(sizeof MIGRATIONS / sizeof MIGRATIONS[0]))

int store_schema_latest(void) { return N_MIGRATIONS; }

static int read_user_version(sqlite3 *db, int *out) {
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            *out = sqlite3_column_int(st, 0);
            rc = SQLITE_OK;
        }
    }
    sqlite3_finalize(st);
    return rc;
}

/* Reads the schema version into *version; a newer one than this build knows is an error. */
static int schema_version_known(sqlite3 *db, int *version, char *err, size_t errlen) {
    if (read_user_version(db, version) != SQLITE_OK) {
        store_errorf(err, errlen, "reading the schema version: %s", sqlite3_errmsg(db));
        return DT_STORE_ERROR;
    }
    if (*version > N_MIGRATIONS) {
        store_errorf(err, errlen,
                     "the database has schema version %d but this difftune knows only %d: it was "
                     "written by a newer difftune; upgrade difftune or use another --data-dir",
                     *version, N_MIGRATIONS);
        return DT_STORE_ERROR;
    }
    return DT_STORE_OK;
}

int store_schema_check(sqlite3 *db, char *err, size_t errlen) {
    int version = 0;
    return schema_version_known(db, &version, err, errlen);
}

int store_migrate(sqlite3 *db, char *err, size_t errlen) {
    int version = 0;
    if (schema_version_known(db, &version, err, errlen) != DT_STORE_OK) return DT_STORE_ERROR;
    while (version < N_MIGRATIONS) {
        int rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
        if (rc != SQLITE_OK) {
            store_errorf(err, errlen, "starting schema migration: %s", sqlite3_errmsg(db));
            return DT_STORE_ERROR;
        }
        /* another process may have migrated while we waited for the lock */
        rc = read_user_version(db, &version);
        if (rc == SQLITE_OK && version >= N_MIGRATIONS) {
            sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
            break;
        }
        const store_migration *m = &MIGRATIONS[version];
        /* PRAGMA takes no bound parameters; the value is our own integer, not input */
        char bump[64];
        snprintf(bump, sizeof bump, "PRAGMA user_version = %d", version + 1);
        if (rc == SQLITE_OK) rc = sqlite3_exec(db, m->sql, NULL, NULL, NULL);
        if (rc == SQLITE_OK) rc = sqlite3_exec(db, bump, NULL, NULL, NULL);
        if (rc == SQLITE_OK) rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
        if (rc != SQLITE_OK) {
            store_errorf(err, errlen, "schema migration %d (%s) failed: %s", version + 1, m->name,
                         sqlite3_errmsg(db));
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
            return DT_STORE_ERROR;
        }
        version++;
    }
    return DT_STORE_OK;
}
