/* auth.c — who may do what: API keys (Authorization: Bearer), browser sessions, scopes and
 * per-key rate limits (issue 7).
 *
 * Every route names the scope it needs (routes.c); public ones (the web UI's files, /health,
 * /openapi.json) need none. A request proves a key by the Bearer header, or, for GET and HEAD
 * only, by the session cookie that POST /session sets: <img> tags, download links and
 * EventSource cannot send a header, and a cookie never reaches a URL or a log. Cookies are not
 * accepted for state changes, so a page of another site cannot act through them (they are
 * SameSite=Strict besides).
 *
 * A session token is "v1.<key id>.<expiry>.<HMAC-SHA256 hex>" under a secret drawn when the
 * server starts: a restart ends every session (the UI opens a new one with the key it holds), and
 * revoking the key ends its sessions at once because each use looks the key up.
 *
 * With no active key, a server listening on loopback lets every request in (the single-user
 * default); one listening elsewhere refuses all but public routes (cmd_serve.c also refuses to
 * start that way). The active-key count is cached for a second, so a key made with
 * `difftune keys create` while the server runs takes effect within a second.
 */
#include <math.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "clock.h"
#include "http.h"

#define AUTH_COOKIE "difftune_session"
#define AUTH_SESSION_SECONDS (12 * 3600)
#define AUTH_BUCKETS 1024         /* rate-limit buckets: keys in use at once */
#define AUTH_COUNT_TTL 1.0        /* seconds the active-key count is trusted */
#define AUTH_TOKEN_MAX 160

typedef struct {
    char key_id[DT_STORE_ID_MAX]; /* "" = free */
    double tokens;
    double at;                    /* when tokens was last brought up to date */
} auth_bucket;

struct api_auth {
    unsigned char secret[32];
    pthread_mutex_t mu;           /* guards the buckets and the count cache */
    auth_bucket buckets[AUTH_BUCKETS];
    int64_t active_keys;
    double counted_at;            /* 0 = never */
};

int api_auth_init(dt_api *a, char *err, size_t errlen) {
    api_auth *au = calloc(1, sizeof *au);
    if (!au) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (store_random_bytes(au->secret, sizeof au->secret)) {
        snprintf(err, errlen, "no randomness for session tokens (getrandom failed)");
        free(au);
        return -1;
    }
    pthread_mutex_init(&au->mu, NULL);
    a->auth = au;
    return 0;
}

void api_auth_free(dt_api *a) {
    if (!a || !a->auth) return;
    pthread_mutex_destroy(&a->auth->mu);
    OPENSSL_cleanse(a->auth->secret, sizeof a->auth->secret);
    free(a->auth);
    a->auth = NULL;
}

/* The number of active keys, at most AUTH_COUNT_TTL seconds old; -1 when the store fails. */
static int64_t auth_active_keys(dt_api *a) {
    api_auth *au = a->auth;
    double now = dt_now();
    pthread_mutex_lock(&au->mu);
    int64_t n = au->counted_at > 0 && now - au->counted_at < AUTH_COUNT_TTL ? au->active_keys : -2;
    pthread_mutex_unlock(&au->mu);
    if (n != -2) return n;
    char err[256];
    if (store_key_count(a->opts.store, &n, err, sizeof err)) return -1;
    pthread_mutex_lock(&au->mu);
    au->active_keys = n;
    au->counted_at = now;
    pthread_mutex_unlock(&au->mu);
    return n;
}

/* Writes the token of a session for key_id that ends at expiry into out. */
static void auth_token(const api_auth *au, const char *key_id, long long expiry, char out[AUTH_TOKEN_MAX]) {
    char body[96];
    int n = snprintf(body, sizeof body, "v1.%s.%lld", key_id, expiry);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned maclen = 0;
    HMAC(EVP_sha256(), au->secret, (int)sizeof au->secret, (const unsigned char *)body, (size_t)n, mac, &maclen);
    int used = snprintf(out, AUTH_TOKEN_MAX, "%s.", body);
    for (unsigned i = 0; i < maclen && used + 2 < AUTH_TOKEN_MAX; i++) used += snprintf(out + used, 3, "%02x", mac[i]);
}

/* Checks a session token: 0 with key_id filled while it is genuine and unexpired, else -1. */
static int auth_token_check(const api_auth *au, const char *token, char key_id[DT_STORE_ID_MAX]) {
    char id[DT_STORE_ID_MAX];
    long long expiry;
    int consumed = 0;
    if (strlen(token) >= AUTH_TOKEN_MAX ||
        sscanf(token, "v1.%39[a-z0-9_].%lld.%n", id, &expiry, &consumed) != 2 || !consumed)
        return -1;
    if ((double)expiry < dt_now()) return -1;
    char want[AUTH_TOKEN_MAX];
    auth_token(au, id, expiry, want);
    size_t n = strlen(want);
    if (strlen(token) != n || CRYPTO_memcmp(want, token, n)) return -1;
    snprintf(key_id, DT_STORE_ID_MAX, "%s", id);
    return 0;
}

/* Takes one request from key_id's bucket. Returns 0, or the seconds to wait when it is empty. */
static int auth_rate(dt_api *a, const char *key_id) {
    double rate = a->opts.rate_limit, burst = a->opts.rate_burst > 0 ? a->opts.rate_burst : 2 * rate;
    if (rate <= 0) return 0;
    api_auth *au = a->auth;
    unsigned h = 2166136261u;
    for (const char *p = key_id; *p; p++) h = (h ^ (unsigned char)*p) * 16777619u;
    double now = dt_now();
    int wait = 0;
    pthread_mutex_lock(&au->mu);
    auth_bucket *b = NULL, *oldest = NULL;
    for (int i = 0; i < AUTH_BUCKETS && !b; i++) {
        auth_bucket *c = &au->buckets[(h + (unsigned)i) % AUTH_BUCKETS];
        if (!c->key_id[0] || !strcmp(c->key_id, key_id)) b = c;
        else if (!oldest || c->at < oldest->at) oldest = c;
    }
    if (!b) b = oldest, b->key_id[0] = 0; /* every bucket taken: the stalest key starts afresh */
    if (!b->key_id[0]) {
        snprintf(b->key_id, sizeof b->key_id, "%s", key_id);
        b->tokens = burst;
        b->at = now;
    }
    b->tokens = fmin(burst, b->tokens + (now - b->at) * rate);
    b->at = now;
    if (b->tokens >= 1) b->tokens -= 1;
    else wait = (int)ceil((1 - b->tokens) / rate);
    pthread_mutex_unlock(&au->mu);
    return wait;
}

static void auth_refuse(api_req *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void auth_refuse(api_req *r, const char *fmt, ...) {
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const char *h[] = {"WWW-Authenticate", "Bearer realm=\"difftune\"", NULL};
    api_reply_error_with(r, 401, h, "unauthorized", "Authorization", "%s", msg);
}

/* The Bearer credential of r, or NULL. */
static const char *auth_bearer(api_req *r) {
    const char *v = api_header(r, "Authorization");
    if (!v || strncasecmp(v, "Bearer ", 7)) return NULL;
    v += 7;
    while (*v == ' ') v++;
    return v;
}

int api_auth_check(api_req *r) {
    dt_api *a = r->api;
    dt_scope need = (dt_scope)r->route->scope;
    if (!need) return 0;
    const char *bearer = auth_bearer(r);
    const char *cookie = MHD_lookup_connection_value(r->conn, MHD_COOKIE_KIND, AUTH_COOKIE);
    int safe = !strcmp(r->method, "GET");
    if (!safe) cookie = NULL; /* sessions carry reads only */
    char err[256];
    dt_scope scope = 0;
    if (bearer) {
        char hash[DT_KEY_HASH_HEX];
        store_key_hash(bearer, hash);
        int rc = store_key_lookup(a->opts.store, hash, &scope, r->key_id, err, sizeof err);
        if (rc == DT_STORE_NOT_FOUND) {
            auth_refuse(r, "the API key is not valid: unknown or revoked");
            return -1;
        }
        if (rc) {
            api_reply_store_error(r, rc, NULL, err);
            return -1;
        }
    } else if (cookie) {
        int rc = auth_token_check(a->auth, cookie, r->key_id)
                     ? DT_STORE_NOT_FOUND : store_key_scope(a->opts.store, r->key_id, &scope, err, sizeof err);
        if (rc == DT_STORE_NOT_FOUND) {
            r->key_id[0] = 0;
            auth_refuse(r, "the session has ended (expired, server restarted, or its key revoked): "
                           "sign in with the API key again");
            return -1;
        }
        if (rc) {
            api_reply_store_error(r, rc, NULL, err);
            return -1;
        }
    } else {
        int64_t active = auth_active_keys(a);
        if (active < 0) {
            api_reply_error(r, 503, "unavailable", NULL, "the key store cannot be read");
            return -1;
        }
        if (active == 0 && a->opts.open_without_keys) return 0;
        auth_refuse(r, "an API key is needed: send Authorization: Bearer <key> (make one with "
                       "`difftune keys create --scope %s`)", store_scope_name(need));
        return -1;
    }
    r->scope = (int)scope;
    if (scope < need) {
        r->key_id[0] = 0;
        api_reply_error(r, 403, "forbidden", "Authorization", "this key's scope is %s; %s %s needs %s",
                        store_scope_name(scope), r->method, r->route->pattern, store_scope_name(need));
        return -1;
    }
    int wait = auth_rate(a, r->key_id);
    if (wait > 0) {
        char secs[16];
        snprintf(secs, sizeof secs, "%d", wait);
        const char *h[] = {"Retry-After", secs, NULL};
        api_reply_error_with(r, 429, h, "rate_limited", NULL,
                             "too many requests with this key (at most %g a second); retry in %d s",
                             a->opts.rate_limit, wait);
        return -1;
    }
    return 0;
}

/* POST /session: the key in the Authorization header opens a browser session (the cookie). */
void api_session_create(api_req *r) {
    if (!r->key_id[0]) {
        api_reply_json(r, 200, json_pack("{s:s, s:s, s:n}", "object", "session", "auth", "none", "expires_at"), NULL);
        return;
    }
    if (!auth_bearer(r)) {
        api_reply_error(r, 400, "invalid_value", "Authorization",
                        "a session is opened with the API key itself (Authorization: Bearer)");
        return;
    }
    long long expiry = (long long)dt_now() + AUTH_SESSION_SECONDS;
    char token[AUTH_TOKEN_MAX], cookie[AUTH_TOKEN_MAX + 96];
    auth_token(r->api->auth, r->key_id, expiry, token);
    snprintf(cookie, sizeof cookie, AUTH_COOKIE "=%s; Path=/; Max-Age=%d; HttpOnly; SameSite=Strict", token,
             AUTH_SESSION_SECONDS);
    const char *h[] = {"Set-Cookie", cookie, NULL};
    api_reply_json(r, 201,
                   json_pack("{s:s, s:s, s:s, s:s, s:I}", "object", "session", "auth", "key", "key", r->key_id,
                             "scope", store_scope_name((dt_scope)r->scope), "expires_at", (json_int_t)expiry),
                   h);
}

/* DELETE /session: forgets the browser's session cookie. */
void api_session_delete(api_req *r) {
    const char *h[] = {"Set-Cookie", AUTH_COOKIE "=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict", NULL};
    api_reply_json(r, 204, NULL, h);
}
