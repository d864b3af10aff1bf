/* http.c — the libmicrohttpd daemon: request lifecycle (route, collect the body, run the
 * handler once), reply helpers, request ids and per-route counters. */
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "clock.h"
#include "http.h"

/* ---- request ids ------------------------------------------------------------------------- */

static _Thread_local uint64_t http_rng_state;

static uint64_t http_rng_next(void) {
    if (!http_rng_state) {
        if (getrandom(&http_rng_state, sizeof http_rng_state, 0) != sizeof http_rng_state)
            http_rng_state = (uint64_t)(dt_now() * 1e6) ^ (uint64_t)(uintptr_t)&http_rng_state;
        http_rng_state |= 1;
    }
    uint64_t x = http_rng_state; /* xorshift64* */
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    http_rng_state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* A client's X-Request-Id is echoed when it is short and plain; otherwise we make one. */
static void http_request_id(api_req *r) {
    const char *given = api_header(r, "X-Request-Id");
    if (given) {
        size_t n = strlen(given);
        int ok = n > 0 && n < API_REQUEST_ID_MAX;
        for (size_t i = 0; ok && i < n; i++)
            ok = (given[i] >= '0' && given[i] <= '9') || (given[i] >= 'a' && given[i] <= 'z') ||
                 (given[i] >= 'A' && given[i] <= 'Z') || strchr("-_.:", given[i]);
        if (ok) {
            memcpy(r->request_id, given, n + 1);
            return;
        }
    }
    snprintf(r->request_id, sizeof r->request_id, "req_%016llx", (unsigned long long)http_rng_next());
}

/* ---- replies ----------------------------------------------------------------------------- */

void api_reply_response(api_req *r, int status, struct MHD_Response *resp) {
    if (!resp) {
        r->responded = 1;
        r->status = 500;
        return;
    }
    MHD_add_response_header(resp, "X-Request-Id", r->request_id);
    if (r->on_thread) { /* only an HTTP thread may queue: hold it until the connection resumes */
        r->held = resp;
        r->held_status = status;
        r->responded = 1;
        r->status = status;
        return;
    }
    if (MHD_queue_response(r->conn, (unsigned)status, resp) != MHD_YES) status = 500;
    MHD_destroy_response(resp);
    r->responded = 1;
    r->status = status;
}

void api_reply_text(api_req *r, int status, char *text, size_t len, const char *const *extra_headers) {
    if (text) { /* a newline ends the body, for people reading curl output */
        char *t = realloc(text, len + 2);
        if (t) {
            text = t;
            text[len++] = '\n';
            text[len] = 0;
        }
    }
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, text ? text : (void *)"", text ? MHD_RESPMEM_MUST_FREE
                                                                             : MHD_RESPMEM_PERSISTENT);
    if (!resp) {
        free(text);
        api_reply_response(r, 500, NULL);
        return;
    }
    if (text) MHD_add_response_header(resp, "Content-Type", "application/json");
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    for (int i = 0; extra_headers && extra_headers[i]; i += 2)
        MHD_add_response_header(resp, extra_headers[i], extra_headers[i + 1]);
    api_reply_response(r, status, resp);
}

void api_reply_json(api_req *r, int status, json_t *body, const char *const *extra_headers) {
    char *text = NULL;
    if (body) {
        text = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(16));
        json_decref(body);
        if (!text) {
            api_reply_response(r, 500, NULL);
            return;
        }
    }
    api_reply_text(r, status, text, text ? strlen(text) : 0, extra_headers);
}

/* Replaces every byte that is not part of a valid UTF-8 sequence with '?', in place, so that
 * messages quoting user input (archive member names) always make valid JSON. */
static void http_utf8_clean(char *s) {
    unsigned char *p = (unsigned char *)s;
    while (*p) {
        int n = *p < 0x80 ? 1 : (*p >> 5) == 6 ? 2 : (*p >> 4) == 14 ? 3 : (*p >> 3) == 30 ? 4 : 0;
        int ok = n > 0;
        for (int i = 1; ok && i < n; i++) ok = (p[i] & 0xC0) == 0x80;
        if (ok && n > 1) { /* jansson's own check: no overlong forms, surrogates or > U+10FFFF */
            json_t *t = json_stringn((const char *)p, (size_t)n);
            ok = t != NULL;
            json_decref(t);
        }
        if (!ok) {
            *p++ = '?';
            continue;
        }
        p += n;
    }
}

static void http_verror(api_req *r, int status, const char *const *headers, const char *code,
                        const char *param, const char *fmt, va_list ap) {
    char msg[1024];
    vsnprintf(msg, sizeof msg, fmt, ap);
    http_utf8_clean(msg);
    json_t *e = json_pack("{s:s, s:s}", "code", code, "message", msg);
    if (param && param[0]) json_object_set_new(e, "param", json_string(param));
    json_object_set_new(e, "request_id", json_string(r->request_id));
    api_reply_json(r, status, json_pack("{s:o}", "error", e), headers);
}

void api_reply_error(api_req *r, int status, const char *code, const char *param, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    if (status == 405) { /* param carries the Allow list */
        const char *h[] = {"Allow", param ? param : "", NULL};
        http_verror(r, status, h, code, NULL, fmt, ap);
    } else {
        http_verror(r, status, NULL, code, param, fmt, ap);
    }
    va_end(ap);
}

void api_reply_error_with(api_req *r, int status, const char *const *headers, const char *code,
                          const char *param, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    http_verror(r, status, headers, code, param, fmt, ap);
    va_end(ap);
}

void api_reply_store_error(api_req *r, int code, const char *param, const char *msg) {
    switch (code) {
    case DT_STORE_NOT_FOUND: api_reply_error(r, 404, "not_found", param, "%s", msg); break;
    case DT_STORE_CONFLICT: api_reply_error(r, 409, "conflict", param, "%s", msg); break;
    case DT_STORE_INVALID: api_reply_error(r, 400, "invalid_value", param, "%s", msg); break;
    default: api_reply_error(r, 500, "internal_error", NULL, "the store failed: %s", msg); break;
    }
}

/* ---- request access ---------------------------------------------------------------------- */

const char *api_header(api_req *r, const char *name) {
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

const char *api_query(api_req *r, const char *name) {
    return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
}

int api_query_int(api_req *r, const char *name, int64_t lo, int64_t hi, int64_t dflt, int64_t *out) {
    const char *v = api_query(r, name);
    *out = dflt;
    if (!v) return 0;
    const char *p = v;
    int neg = *p == '-';
    if (neg) p++;
    int64_t x = 0;
    int ok = *p != 0;
    for (; ok && *p; p++) {
        if (*p < '0' || *p > '9' || x > (INT64_MAX - 9) / 10) ok = 0;
        else x = x * 10 + (*p - '0');
    }
    if (neg) x = -x;
    if (!ok || x < lo || x > hi) {
        api_reply_error(r, 400, "invalid_value", name, "%s must be an integer in %lld..%lld", name,
                        (long long)lo, (long long)hi);
        return -1;
    }
    *out = x;
    return 0;
}

int api_json_depth(const char *s, size_t n) {
    int depth = 0, max = 0, in_string = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (in_string) {
            if (c == '\\') i++;
            else if (c == '"') in_string = 0;
        } else if (c == '"') {
            in_string = 1;
        } else if (c == '[' || c == '{') {
            if (++depth > max) max = depth;
        } else if (c == ']' || c == '}') {
            depth--;
        }
    }
    return max;
}

json_t *api_body_json(api_req *r) {
    json_error_t je;
    json_t *j = json_loadb(r->body ? r->body : "", r->body_len, JSON_REJECT_DUPLICATES, &je);
    if (!j) {
        api_reply_error(r, 400, "invalid_json", NULL, "the body is not valid JSON: line %d column %d: %s",
                        je.line, je.column, je.text);
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        api_reply_error(r, 400, "invalid_type", NULL, "the body must be a JSON object");
        return NULL;
    }
    return j;
}

int api_id_valid(const char *id, const char *prefix) {
    size_t pl = strlen(prefix);
    if (strncmp(id, prefix, pl) || strlen(id) != pl + 24) return 0;
    for (const char *p = id + pl; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'))) return 0;
    return 1;
}

int api_data_path(const dt_api *a, char *out, size_t outlen, const char *fmt, ...) {
    int n = snprintf(out, outlen, "%s/", a->data_dir);
    if (n < 0 || (size_t)n >= outlen) return -1;
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(out + n, outlen - (size_t)n, fmt, ap);
    va_end(ap);
    return m < 0 || (size_t)(n + m) >= outlen ? -1 : 0;
}

/* ---- the request lifecycle --------------------------------------------------------------- */

/* Is the request's media type (without parameters) one of the comma-separated list? Writes
 * the bare type into type (empty when there is no Content-Type). */
static int http_content_type_in(api_req *r, const char *list, char *type, size_t typelen) {
    const char *ct = api_header(r, "Content-Type");
    size_t n = ct ? strcspn(ct, "; \t") : 0;
    snprintf(type, typelen, "%.*s", (int)n, ct ? ct : "");
    if (!n) return 0;
    for (const char *p = list; *p;) {
        size_t m = strcspn(p, ",");
        if (m == n && !strncasecmp(p, ct, n)) return 1;
        p += m + (p[m] == ',');
    }
    return 0;
}

/* Declared body size, or -1 when absent or unreadable. */
static int64_t http_content_length(api_req *r) {
    const char *v = api_header(r, "Content-Length");
    if (!v) return -1;
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    return errno || *end || n < 0 ? -1 : n;
}

void api_refuse(api_req *r, int status, const char *code, const char *param, const char *msg) {
    if (r->refused_status) return;
    r->refused_status = status;
    snprintf(r->refused_code, sizeof r->refused_code, "%s", code);
    snprintf(r->refused_param, sizeof r->refused_param, "%s", param ? param : "");
    snprintf(r->refused_msg, sizeof r->refused_msg, "%s", msg);
}

/* The first call for a request: route it and check what can be checked before the body. */
static void http_begin(api_req *r, const char *url, const char *method) {
    http_request_id(r);
    r->is_head = !strcmp(method, "HEAD");
    r->method = r->is_head ? "GET" : method;
    r->route_index = -1;
    if (strlen(url) >= sizeof r->url) {
        api_reply_error(r, 414, "uri_too_long", NULL, "the request path is longer than %zu bytes",
                        sizeof r->url - 1);
        return;
    }
    snprintf(r->url, sizeof r->url, "%s", url);
    char allow[64];
    int idx = api_route_match(r, r->method, r->url, allow, sizeof allow);
    /* While shutting down only /health answers (503, "draining"), so balancers see it. */
    if (atomic_load(&r->api->draining) && !(idx >= 0 && api_routes[idx].handler == api_system_health)) {
        api_reply_error(r, 503, "unavailable", NULL, "the server is shutting down");
        return;
    }
    if (idx == -1) {
        api_reply_error(r, 404, "not_found", NULL, "no such resource: %s", r->url);
        return;
    }
    if (idx == -2) {
        api_reply_error(r, 405, "method_not_allowed", allow, "%s is not allowed on %s (allowed: %s)",
                        method, r->url, allow);
        return;
    }
    r->route_index = idx;
    r->route = &api_routes[idx];
    if (api_auth_check(r)) return;
    if (r->route->body == API_BODY_NONE) return;
    char type[128];
    if (!http_content_type_in(r, r->route->accepts, type, sizeof type)) {
        api_reply_error(r, 415, "unsupported_media_type", "Content-Type",
                        "%s%s%s is not accepted here; send one of: %s", type[0] ? "Content-Type " : "",
                        type[0] ? type : "a body without a Content-Type", "", r->route->accepts);
        return;
    }
    int in_memory = r->route->body == API_BODY_JSON || !strcasecmp(type, "application/json");
    int64_t declared = http_content_length(r);
    int64_t max = in_memory ? r->api->opts.max_json_bytes : r->api->opts.max_upload_bytes;
    if (declared > max) {
        api_reply_error(r, 413, "payload_too_large", NULL,
                        "the body is %lld bytes; at most %lld are accepted here%s", (long long)declared,
                        (long long)max, in_memory ? "" : " (--max-upload-mb)");
        return;
    }
    if (!in_memory) api_upload_begin(r);
}

/* Body bytes of a request whose route wants them. */
static void http_body(api_req *r, const char *data, size_t len) {
    if (r->refused_status || !r->route) return;
    if (r->route->body == API_BODY_UPLOAD && r->upload) {
        api_upload_feed(r, data, len);
        return;
    }
    if (r->route->body == API_BODY_NONE) return; /* ignored */
    int64_t max = r->api->opts.max_json_bytes;
    if ((int64_t)(r->body_len + len) > max) {
        char msg[128];
        snprintf(msg, sizeof msg, "the body is larger than %lld bytes", (long long)max);
        api_refuse(r, 413, "payload_too_large", NULL, msg);
        free(r->body);
        r->body = NULL;
        r->body_len = r->body_cap = 0;
        return;
    }
    if (r->body_len + len + 1 > r->body_cap) {
        size_t cap = r->body_cap ? r->body_cap : 4096;
        while (cap < r->body_len + len + 1) cap *= 2;
        char *b = realloc(r->body, cap);
        if (!b) {
            api_refuse(r, 500, "internal_error", NULL, "out of memory reading the body");
            return;
        }
        r->body = b;
        r->body_cap = cap;
    }
    memcpy(r->body + r->body_len, data, len);
    r->body_len += len;
    r->body[r->body_len] = 0;
}

/* ---- slow handlers ---------------------------------------------------------------------- */

static void *http_slow_main(void *arg) {
    api_req *r = arg;
    dt_api *a = r->api;
    r->route->handler(r);
    if (!r->responded) api_reply_error(r, 500, "internal_error", NULL, "the handler gave no answer");
    atomic_store(&r->thread_done, 1);
    MHD_resume_connection(r->conn); /* r belongs to the HTTP thread again from here */
    atomic_fetch_sub(&a->slow_running, 1);
    return NULL;
}

/* Runs r's handler on a thread of its own; the connection is suspended until it is done. */
static void http_slow_start(api_req *r) {
    dt_api *a = r->api;
    atomic_fetch_add(&a->slow_running, 1);
    r->on_thread = 1;
    MHD_suspend_connection(r->conn);
    pthread_attr_t attr;
    pthread_t t;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&t, &attr, http_slow_main, r);
    pthread_attr_destroy(&attr);
    if (rc) {
        MHD_resume_connection(r->conn);
        r->on_thread = 0;
        atomic_fetch_sub(&a->slow_running, 1);
        api_reply_error(r, 503, "unavailable", NULL, "the server cannot start more work now; try again");
    }
}

/* The connection of a slow handler resumed: queue what it answered. */
static void http_slow_finish(api_req *r) {
    r->on_thread = 0;
    struct MHD_Response *resp = r->held;
    r->held = NULL;
    if (!resp || MHD_queue_response(r->conn, (unsigned)r->held_status, resp) != MHD_YES) r->status = 500;
    if (resp) MHD_destroy_response(resp);
}

static enum MHD_Result http_access(void *cls, struct MHD_Connection *conn, const char *url,
                                   const char *method, const char *version, const char *upload_data,
                                   size_t *upload_data_size, void **con_cls) {
    (void)version;
    api_req *r = *con_cls;
    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r) return MHD_NO;
        r->api = cls;
        r->conn = conn;
        r->t0 = dt_now();
        *con_cls = r;
        http_begin(r, url, method);
        return MHD_YES;
    }
    if (*upload_data_size) {
        if (!r->responded) http_body(r, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (r->on_thread) {
        if (atomic_load(&r->thread_done)) http_slow_finish(r);
        return MHD_YES;
    }
    if (r->responded || r->handled) return MHD_YES;
    r->handled = 1;
    if (r->refused_status) {
        api_reply_error(r, r->refused_status, r->refused_code, r->refused_param, "%s", r->refused_msg);
        return MHD_YES;
    }
    /* Every JSON body, whichever handler parses it: nothing nests deeper than a request can mean. */
    if (r->body && api_json_depth(r->body, r->body_len) > API_JSON_MAX_DEPTH) {
        api_reply_error(r, 400, "invalid_json", NULL, "the body nests arrays and objects more than %d deep",
                        API_JSON_MAX_DEPTH);
        return MHD_YES;
    }
    if (r->route->slow) {
        http_slow_start(r);
        return MHD_YES;
    }
    r->route->handler(r);
    if (!r->responded) api_reply_error(r, 500, "internal_error", NULL, "the handler gave no answer");
    return MHD_YES;
}

static void http_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                           enum MHD_RequestTerminationCode toe) {
    (void)conn;
    (void)toe;
    dt_api *a = cls;
    api_req *r = *con_cls;
    if (!r) return;
    api_route_stats *st = r->route_index >= 0 ? &a->route_stats[r->route_index] : &a->unrouted;
    int cls_idx = r->status >= 100 && r->status < 600 ? r->status / 100 : 5;
    atomic_fetch_add(&st->by_class[cls_idx], 1);
    atomic_fetch_add(&st->micros, (uint_fast64_t)((dt_now() - r->t0) * 1e6));
    free(r->body);
    api_upload_free(r->upload);
    free(r);
    *con_cls = NULL;
}

static void http_log(void *cls, const char *fmt, va_list ap) {
    (void)cls;
    fprintf(stderr, "difftune serve: http: ");
    vfprintf(stderr, fmt, ap);
}

/* ---- start and stop ---------------------------------------------------------------------- */

static char *http_strdup(const char *s) { return s ? strdup(s) : NULL; }

static int http_copy_opts(dt_api *a, const dt_api_opts *o) {
    a->opts = *o;
    a->data_dir = http_strdup(o->data_dir);
    a->host = http_strdup(o->host ? o->host : "127.0.0.1");
    a->devices = calloc((size_t)o->n_devices + 1, sizeof *a->devices);
    if (!a->data_dir || !a->host || !a->devices) return -1;
    for (int i = 0; i < o->n_devices; i++)
        if (!(a->devices[i] = strdup(o->devices[i]))) return -1;
    a->opts.data_dir = a->data_dir;
    a->opts.host = a->host;
    a->opts.devices = (const char *const *)a->devices;
    if (a->opts.max_json_bytes <= 0) a->opts.max_json_bytes = 1 << 20;
    if (a->opts.max_upload_bytes <= 0) a->opts.max_upload_bytes = 4LL << 30;
    if (a->opts.max_unpacked_bytes <= 0) a->opts.max_unpacked_bytes = 4 * a->opts.max_upload_bytes;
    if (a->opts.max_archive_files <= 0) a->opts.max_archive_files = 1000000;
    if (a->opts.heartbeat_s <= 0) a->opts.heartbeat_s = 15;
    if (a->opts.threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        a->opts.threads = n < 2 ? 2 : (int)n;
    }
    return 0;
}

static void http_free(dt_api *a) {
    if (!a) return;
    api_broker_free(a->broker);
    api_auth_free(a);
    for (int i = 0; a->devices && i < a->opts.n_devices; i++) free(a->devices[i]);
    free(a->devices);
    free(a->data_dir);
    free(a->host);
    free(a->route_stats);
    free(a);
}

int api_start(const dt_api_opts *opts, dt_api **out, char *err, size_t errlen) {
    *out = NULL;
    dt_api *a = calloc(1, sizeof *a);
    if (!a || http_copy_opts(a, opts) ||
        !(a->route_stats = calloc((size_t)api_route_count, sizeof *a->route_stats)) ||
        !(a->broker = api_broker_new(a))) {
        http_free(a);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (api_auth_init(a, err, errlen)) {
        http_free(a);
        return -1;
    }
    a->started_at = dt_now();
    struct addrinfo hints = {.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV, .ai_socktype = SOCK_STREAM};
    struct addrinfo *ai = NULL;
    char port[16];
    snprintf(port, sizeof port, "%d", opts->port);
    int gai = getaddrinfo(a->host, port, &hints, &ai);
    if (gai) {
        snprintf(err, errlen, "bad --host '%s': %s (give a numeric IPv4 or IPv6 address)", a->host,
                 gai_strerror(gai));
        http_free(a);
        return -1;
    }
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ERROR_LOG | (ai->ai_family == AF_INET6 ? MHD_USE_IPv6 : 0);
    a->daemon = MHD_start_daemon(
        flags, (uint16_t)opts->port, NULL, NULL, http_access, a,
        MHD_OPTION_EXTERNAL_LOGGER, http_log, NULL,
        MHD_OPTION_SOCK_ADDR, ai->ai_addr,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)a->opts.threads,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)16384,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)300,
        MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)4096,
        MHD_OPTION_NOTIFY_COMPLETED, http_completed, a,
        MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!a->daemon) {
        snprintf(err, errlen, "cannot listen on %s port %d (in use, or not allowed)", a->host, opts->port);
        http_free(a);
        return -1;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(a->daemon, MHD_DAEMON_INFO_BIND_PORT);
    a->port = info ? info->port : opts->port;
    *out = a;
    return 0;
}

int api_port(const dt_api *a) { return a->port; }

void api_notify(dt_api *a, const char *job_id) { api_broker_notify(a->broker, job_id); }

void api_drain(dt_api *a) {
    atomic_store(&a->draining, 1);
    api_broker_close_all(a->broker);
}

void api_stop(dt_api *a) {
    if (!a) return;
    atomic_store(&a->draining, 1);
    api_broker_close_all(a->broker);
    /* A slow handler still holds its request and a suspended connection: let it finish. */
    while (atomic_load(&a->slow_running) > 0) usleep(10000);
    MHD_stop_daemon(a->daemon);
    http_free(a);
}
