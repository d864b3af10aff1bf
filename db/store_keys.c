/* store_keys.c — API keys: a secret shown once to its creator, stored only as its SHA-256, a
 * scope, and revocation that takes effect at the next lookup. */
#include "store_internal.h"

#include <assert.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

#define KEY_PREFIX "dtk_"
#define KEY_RANDOM_BYTES 32 /* 64 hex digits: 256 bits, beyond any guessing */
#define KEY_NAME_MAX 200    /* bytes of a key's display name */

const char *store_scope_name(dt_scope scope) {
    switch (scope) {
    case DT_SCOPE_READ: return "read";
    case DT_SCOPE_SUBMIT: return "submit";
    case DT_SCOPE_ADMIN: return "admin";
    default: return "?";
    }
}

int store_scope_parse(const char *name, dt_scope *out) {
    assert(name && out);
    static const dt_scope all[] = {DT_SCOPE_READ, DT_SCOPE_SUBMIT, DT_SCOPE_ADMIN};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (!strcmp(name, store_scope_name(all[i]))) {
            *out = all[i];
            return 0;
        }
    return -1;
}

int store_key_generate(char out[DT_KEY_SECRET_MAX]) {
    assert(out);
    out[0] = '\0';
    return store_random_hex(KEY_PREFIX, KEY_RANDOM_BYTES, out, DT_KEY_SECRET_MAX) ? -1 : 0;
}

void store_key_hash(const char *secret, char out[DT_KEY_HASH_HEX]) {
    assert(secret && out);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    int ok = EVP_Digest(secret, strlen(secret), md, &len, EVP_sha256(), NULL);
    /* SHA-256 of a memory buffer fails only when OpenSSL itself is broken */
    assert(ok == 1 && len == 32);
    (void)ok;
    store_hex_encode(md, 32, out);
}

/* 64 lower-case hex digits, as store_key_hash writes them */
static int valid_hash(const char *hash) {
    size_t n = 0;
    for (; hash[n]; n++)
        if (!((hash[n] >= '0' && hash[n] <= '9') || (hash[n] >= 'a' && hash[n] <= 'f'))) return 0;
    return n == DT_KEY_HASH_HEX - 1;
}

/* A name shows in listings and tables: UTF-8 text without control characters, bounded. */
static int valid_name(const char *name) {
    if (strlen(name) > KEY_NAME_MAX) return 0;
    for (const unsigned char *c = (const unsigned char *)name; *c; c++)
        if (*c < 0x20 || *c == 0x7f) return 0;
    json_t *probe = json_string(name); /* NULL when not UTF-8 */
    json_decref(probe);
    return probe != NULL;
}

static const char SQL_KEY_INSERT[] =
    "INSERT INTO api_keys (id, name, hash, scope, created_at) VALUES (?1, ?2, ?3, ?4, ?5)";
static const char SQL_KEY_BY_HASH[] =
    "SELECT id, scope FROM api_keys WHERE hash = ?1 AND revoked_at IS NULL";
static const char SQL_KEY_BY_ID[] =
    "SELECT scope FROM api_keys WHERE id = ?1 AND revoked_at IS NULL";
static const char SQL_KEY_COUNT[] = "SELECT count(*) FROM api_keys WHERE revoked_at IS NULL";
static const char SQL_KEY_LIST[] =
    "SELECT id, name, scope, created_at, revoked_at FROM api_keys"
    " ORDER BY created_at DESC, id DESC";
/* the first revocation's time stays; the row counts as changed either way, so no change means
 * no such key */
static const char SQL_KEY_REVOKE[] =
    "UPDATE api_keys SET revoked_at = coalesce(revoked_at, ?2) WHERE id = ?1";

int store_key_create(dt_store *s, const char *name, dt_scope scope, const char *hash,
                     char id_out[DT_STORE_ID_MAX], char *err, size_t errlen) {
    assert(s && hash && id_out);
    id_out[0] = '\0';
    if (!name) name = "";
    if (!valid_hash(hash)) {
        store_errorf(err, errlen, "a key's hash is 64 lower-case hex digits (store_key_hash)");
        return DT_STORE_INVALID;
    }
    if (scope != DT_SCOPE_READ && scope != DT_SCOPE_SUBMIT && scope != DT_SCOPE_ADMIN) {
        store_errorf(err, errlen, "unknown scope %d: read, submit or admin", (int)scope);
        return DT_STORE_INVALID;
    }
    if (!valid_name(name)) {
        store_errorf(err, errlen, "a key's name is UTF-8 text of at most %d bytes without "
                     "control characters", KEY_NAME_MAX);
        return DT_STORE_INVALID;
    }
    char id[DT_STORE_ID_MAX];
    if (store_new_id("key_", id, sizeof id) != DT_STORE_OK) {
        store_errorf(err, errlen, "cannot read the system's random source for an id");
        return DT_STORE_ERROR;
    }
    store_lock(s);
    int rc = DT_STORE_ERROR;
    sqlite3_stmt *st = store_stmt(s, SQL_KEY_INSERT, err, errlen);
    if (st) {
        store_bind_text(st, 1, id);
        store_bind_text(st, 2, name);
        store_bind_text(st, 3, hash);
        store_bind_text(st, 4, store_scope_name(scope));
        sqlite3_bind_double(st, 5, store_now());
        int step = sqlite3_step(st);
        store_stmt_done(st);
        if (step == SQLITE_DONE) {
            rc = DT_STORE_OK;
        } else if (step == SQLITE_CONSTRAINT_UNIQUE) {
            store_errorf(err, errlen, "a key with this secret is already stored");
            rc = DT_STORE_CONFLICT;
        } else {
            rc = store_fail(s, step, "storing a key", err, errlen);
        }
    }
    store_unlock(s);
    if (rc == DT_STORE_OK) snprintf(id_out, DT_STORE_ID_MAX, "%s", id);
    return rc;
}

/* The scope in column i of a key row; DT_STORE_ERROR when the stored name is not one. */
static int column_scope(sqlite3_stmt *st, int i, dt_scope *out, char *err, size_t errlen) {
    const char *name = (const char *)sqlite3_column_text(st, i);
    if (name && store_scope_parse(name, out) == 0) return DT_STORE_OK;
    store_errorf(err, errlen, "a stored key has the unknown scope \"%s\"", name ? name : "");
    return DT_STORE_ERROR;
}

int store_key_lookup(dt_store *s, const char *hash, dt_scope *scope, char id_out[DT_STORE_ID_MAX],
                     char *err, size_t errlen) {
    assert(s && hash && scope && id_out);
    id_out[0] = '\0';
    store_lock(s);
    int rc = DT_STORE_ERROR;
    sqlite3_stmt *st = store_stmt(s, SQL_KEY_BY_HASH, err, errlen);
    if (st) {
        store_bind_text(st, 1, hash);
        int step = sqlite3_step(st);
        if (step == SQLITE_ROW) {
            rc = column_scope(st, 1, scope, err, errlen);
            if (rc == DT_STORE_OK) store_column_copy(st, 0, id_out, DT_STORE_ID_MAX);
        } else if (step == SQLITE_DONE) {
            /* the hash is not echoed: it identifies a secret someone tried */
            store_errorf(err, errlen, "no active key has this secret");
            rc = DT_STORE_NOT_FOUND;
        } else {
            rc = store_fail(s, step, "looking up a key", err, errlen);
        }
        store_stmt_done(st);
    }
    store_unlock(s);
    return rc;
}

int store_key_scope(dt_store *s, const char *id, dt_scope *scope, char *err, size_t errlen) {
    assert(s && id && scope);
    store_lock(s);
    int rc = DT_STORE_ERROR;
    sqlite3_stmt *st = store_stmt(s, SQL_KEY_BY_ID, err, errlen);
    if (st) {
        store_bind_text(st, 1, id);
        int step = sqlite3_step(st);
        if (step == SQLITE_ROW) rc = column_scope(st, 0, scope, err, errlen);
        else rc = store_step_missing(s, step, "reading a key", "active key", id, err, errlen);
        store_stmt_done(st);
    }
    store_unlock(s);
    return rc;
}

int store_key_count(dt_store *s, int64_t *active, char *err, size_t errlen) {
    assert(s && active);
    *active = 0;
    store_lock(s);
    int rc = DT_STORE_ERROR;
    sqlite3_stmt *st = store_stmt(s, SQL_KEY_COUNT, err, errlen);
    if (st) {
        int step = sqlite3_step(st);
        if (step == SQLITE_ROW) {
            *active = sqlite3_column_int64(st, 0);
            rc = DT_STORE_OK;
        } else {
            rc = store_fail(s, step, "counting keys", err, errlen);
        }
        store_stmt_done(st);
    }
    store_unlock(s);
    return rc;
}

static json_t *key_from_row(sqlite3_stmt *st) {
    return json_pack("{s:o, s:s, s:o, s:o, s:o, s:o}",
                     "id", store_column_value(st, 0), "object", "api_key",
                     "name", store_column_value(st, 1), "scope", store_column_value(st, 2),
                     "created_at", store_column_value(st, 3),
                     "revoked_at", store_column_value(st, 4));
}

int store_key_list(dt_store *s, json_t **out, char *err, size_t errlen) {
    assert(s && out);
    *out = NULL;
    store_lock(s);
    int rc = DT_STORE_ERROR;
    sqlite3_stmt *st = store_stmt(s, SQL_KEY_LIST, err, errlen);
    if (st) {
        json_t *data = json_array();
        int step;
        rc = DT_STORE_OK;
        while ((step = sqlite3_step(st)) == SQLITE_ROW) {
            json_t *k = key_from_row(st);
            if (!k) {
                store_errorf(err, errlen, "a stored key cannot be shown (bad name or time)");
                rc = DT_STORE_ERROR;
                break;
            }
            json_array_append_new(data, k);
        }
        if (rc == DT_STORE_OK && step != SQLITE_DONE)
            rc = store_fail(s, step, "listing keys", err, errlen);
        store_stmt_done(st);
        if (rc == DT_STORE_OK) *out = json_pack("{s:o}", "data", data);
        else json_decref(data);
    }
    store_unlock(s);
    return rc;
}

int store_key_revoke(dt_store *s, const char *id, char *err, size_t errlen) {
    assert(s && id);
    store_lock(s);
    int rc = DT_STORE_ERROR;
    sqlite3_stmt *st = store_stmt(s, SQL_KEY_REVOKE, err, errlen);
    if (st) {
        store_bind_text(st, 1, id);
        sqlite3_bind_double(st, 2, store_now());
        int step = sqlite3_step(st);
        store_stmt_done(st);
        if (step != SQLITE_DONE) {
            rc = store_fail(s, step, "revoking a key", err, errlen);
        } else if (sqlite3_changes(s->db) == 0) {
            store_errorf(err, errlen, "no key %s", id);
            rc = DT_STORE_NOT_FOUND;
        } else {
            rc = DT_STORE_OK;
        }
    }
    store_unlock(s);
    return rc;
}
