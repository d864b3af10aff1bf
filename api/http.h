/* http.h — what the API's resource files share: the server state, one request, the route
 * table, and the reply helpers. Internal to api/.
 *
 * A request lives from its first header callback to MHD's completion callback. The access
 * handler routes it on the first call, collects its body (JSON into memory up to a limit,
 * uploads streamed to a file), then calls the route's handler once, which must queue exactly
 * one response through an api_reply_* helper (or start a stream).
 */
#ifndef DT_API_HTTP_H
#define DT_API_HTTP_H

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <microhttpd.h>
#include <jansson.h>

#include "api.h"
#include "assets.h"
#include "store.h"

#define API_MAX_PARAMS 2
#define API_JSON_MAX_DEPTH 32 /* request bodies nest at most this deep (a job request needs 3) */
#define API_REQUEST_ID_MAX 65

typedef struct api_req api_req;
typedef struct api_broker api_broker;
typedef struct api_upload api_upload;
typedef struct api_auth api_auth;

/* How a route takes its request body. */
typedef enum {
    API_BODY_NONE = 0, /* no body expected (one that comes anyway is read and ignored) */
    API_BODY_JSON,     /* application/json, held in memory up to max_json_bytes */
    API_BODY_UPLOAD    /* a file: a raw body or multipart/form-data, streamed to DIR/tmp */
} api_body_kind;

typedef void (*api_handler)(api_req *r);

typedef struct {
    const char *method;  /* "GET" (also answers HEAD), "POST", "DELETE" */
    const char *pattern; /* "/jobs/{}/events": each {} captures one path segment, a final {*}
                          * the rest of the path ("/ui/{*}") */
    api_body_kind body;
    api_handler handler;
    const char *name;    /* label in metrics: "jobs.get" */
    const char *accepts; /* media types of the body, comma separated (NULL for API_BODY_NONE);
                          * other types get 415. application/json on an upload route is read
                          * into memory like a JSON body. */
    int slow;            /* the handler takes seconds (extracting, validating, hashing an upload):
                          * it runs on a thread of its own while the connection is suspended,
                          * so the HTTP thread keeps serving its other connections */
    int scope;           /* the dt_scope a key needs here (auth.c); 0 = public */
} api_route;

/* Request counters of one route, by status class (1xx unused) and total seconds. */
typedef struct {
    atomic_uint_fast64_t by_class[6];
    atomic_uint_fast64_t micros;
} api_route_stats;

struct dt_api {
    dt_api_opts opts;          /* strings below are owned copies */
    char *data_dir;
    char *host;
    char **devices;
    struct MHD_Daemon *daemon;
    int port;
    api_broker *broker;
    api_auth *auth;               /* keys, sessions, rate limits (auth.c) */
    api_route_stats *route_stats; /* one per route, same order as api_routes */
    api_route_stats unrouted;     /* 404s and 405s */
    atomic_int draining;
    atomic_int slow_running;      /* slow handlers on their own threads now */
    double started_at;
};

struct api_req {
    dt_api *api;
    struct MHD_Connection *conn;
    const char *method;           /* "HEAD" requests are routed as "GET" */
    int is_head;
    char url[1024];
    const api_route *route;
    int route_index;              /* -1 when unrouted */
    char params[API_MAX_PARAMS][256]; /* the {} captures, URL-decoded */
    char request_id[API_REQUEST_ID_MAX];
    char key_id[DT_STORE_ID_MAX]; /* the key the request proved ("" = none) */
    int scope;                    /* that key's dt_scope (0 = none) */
    double t0;
    int status;                   /* what was queued (for metrics) */
    int responded;                /* a response was queued (no more body handling) */
    int handled;                  /* the handler ran */
    int on_thread;                /* a slow handler runs (or ran) on its own thread */
    atomic_int thread_done;       /* ... and has finished */
    struct MHD_Response *held;    /* the response it made, queued once the connection resumes */
    int held_status;

    /* API_BODY_JSON */
    char *body;
    size_t body_len, body_cap;
    /* API_BODY_UPLOAD */
    api_upload *upload;
    /* a body refused while it arrives: the error is queued at the end of the upload */
    int refused_status;
    char refused_code[48], refused_param[64], refused_msg[256];
};

/* ---- routes (routes.c) ---------------------------------------------------------------------- */

extern const api_route api_routes[];
extern const int api_route_count;
/* Finds the route for method and path, filling r->params. Returns its index; -1 when no route
 * matches the path (404); -2 when the path exists for other methods (405; allow receives
 * them, comma separated). */
int api_route_match(api_req *r, const char *method, const char *path, char *allow, size_t allowlen);

/* ---- replies (http.c) -------------------------------------------------------------------- */

/* Queues status with the JSON body (stolen; NULL = no body). Adds Content-Type and
 * X-Request-Id. extra_headers: NULL or a NULL-terminated list of name, value pairs. */
void api_reply_json(api_req *r, int status, json_t *body, const char *const *extra_headers);
/* Queues status with a JSON text body (malloc'd, len bytes; taken over; NULL = no body). */
void api_reply_text(api_req *r, int status, char *text, size_t len, const char *const *extra_headers);
/* Queues the error object {"error":{"code","message","param"?,"request_id"}}; param may be
 * NULL. For 405, param is the Allow list (sent as the Allow header, not as param). */
void api_reply_error(api_req *r, int status, const char *code, const char *param,
                     const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* api_reply_error with extra headers (a NULL-terminated list of name, value pairs). */
void api_reply_error_with(api_req *r, int status, const char *const *headers, const char *code,
                          const char *param, const char *fmt, ...) __attribute__((format(printf, 6, 7)));
/* Queues an error for a store failure (not_found 404, conflict 409, invalid 400, else 500)
 * with the store's message; param names the argument that was at fault (may be NULL). */
void api_reply_store_error(api_req *r, int code, const char *param, const char *msg);
/* Queues a prepared response, adding X-Request-Id; takes ownership of resp. */
void api_reply_response(api_req *r, int status, struct MHD_Response *resp);

/* Refuses the body while it arrives: the error (status, code, param, message) is queued once
 * the rest of the body has been read. The first refusal wins. */
void api_refuse(api_req *r, int status, const char *code, const char *param, const char *msg);
/* Answers 201 with the object just stored (get reads it by id) and Location: {base}/{id}. */
void api_reply_created(api_req *r, const char *base, const char *id,
                       int (*get)(dt_store *, const char *, json_t **, char *, size_t));

/* ---- request access (http.c) ------------------------------------------------------------- */

/* A request header or NULL. */
const char *api_header(api_req *r, const char *name);
/* A query argument or NULL. */
const char *api_query(api_req *r, const char *name);
/* Parses an integer query argument in [lo, hi]: returns 0 with *out (dflt when absent), or
 * replies 400 naming the argument and returns -1. */
int api_query_int(api_req *r, const char *name, int64_t lo, int64_t hi, int64_t dflt, int64_t *out);
/* The JSON body parsed (new reference), or NULL after replying 400 invalid_json or invalid_type
 * (not an object). Bodies nested deeper than API_JSON_MAX_DEPTH never reach a handler. */
json_t *api_body_json(api_req *r);
/* "job_…" style id check: the prefix and 24 lower-case hex digits. */
int api_id_valid(const char *id, const char *prefix);
/* How deeply the arrays and objects of the JSON text s (n bytes, not NUL-terminated) nest:
 * brackets inside strings do not count; for valid JSON this is the document's depth (0 for a
 * scalar). Pure; any bytes are safe. */
int api_json_depth(const char *s, size_t n);
/* Joins the data directory and a relative path into out. Returns 0, or -1 when it does not fit. */
int api_data_path(const dt_api *a, char *out, size_t outlen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* ---- request fields (pure functions, in the files that use them) ---------------------------- */

/* jobs.c: is key (NUL-terminated) an acceptable Idempotency-Key, 1 to 255 visible ASCII
 * characters? 1 or 0. */
int api_idempotency_key_valid(const char *key);
/* files.c: parses a Range header value h (NULL = absent) against a file of size bytes: a single
 * "bytes=a-b" | "bytes=a-" | "bytes=-n". Returns 1 with [*off, *off + *len) inside the file
 * (*len >= 1) for a satisfiable range, 0 when the header is to be ignored (absent, malformed,
 * several ranges: the whole file is sent), -1 when it is unsatisfiable (416). */
int api_range_parse(const char *h, uint64_t size, uint64_t *off, uint64_t *len);
/* events.c: parses a Last-Event-ID header value (NUL-terminated) as a decimal event id, the
 * way strtoll reads it (leading white space and a '+' are accepted; a value past INT64_MAX
 * reads as INT64_MAX). Returns 0 with *out >= 0, or -1 (*out untouched) when it is empty, has
 * trailing characters or is negative (400). */
int api_last_event_id_parse(const char *text, int64_t *out);

/* ---- uploads (upload.c) ------------------------------------------------------------------ */

/* Starts receiving the body of r into a new file under DIR/tmp: multipart/form-data (the part
 * named "file"; a "name" field is kept) or any other content type taken as the raw file.
 * Returns 0, or -1 after queueing an error. */
int api_upload_begin(api_req *r);
/* Feeds body bytes. Returns 0, or -1 when the body is refused (too large, bad multipart, disk
 * error: r->refused_* is filled and the rest of the body is discarded). */
int api_upload_feed(api_req *r, const char *data, size_t len);
/* After the body: the file's path, its size, and the "name" form field or ?name= (or NULL). */
const char *api_upload_path(api_req *r);
int64_t api_upload_bytes(api_req *r);
const char *api_upload_name(api_req *r);
/* The upload's original file name from the multipart part, or NULL. */
const char *api_upload_filename(api_req *r);
/* Removes the temporary file (if still there) and frees the upload; NULL-safe. */
void api_upload_free(api_upload *u);

/* ---- catalog helpers (catalog.c) --------------------------------------------------------- */

/* Display names: 1..200 bytes, no control characters. */
int api_name_valid(const char *name);
/* The uploaded file of r, or NULL after replying (not an upload, no "file" part, empty). */
const char *api_upload_require(api_req *r, const char *what);
/* The name of an upload: the form field or ?name=, else the file name, else dflt. Replies 400
 * and returns NULL when the given name is not acceptable. */
const char *api_upload_display_name(api_req *r, const char *dflt);
/* GET /datasets and GET /models: a page, newest first (?limit=, ?after=). */
void api_catalog_list(api_req *r, const char *prefix,
                      int (*list)(dt_store *, int, const char *, json_t **, char *, size_t));
/* The page api_catalog_list would send (a new reference), or NULL after replying an error. */
json_t *api_catalog_page(api_req *r, const char *prefix,
                         int (*list)(dt_store *, int, const char *, json_t **, char *, size_t));
/* GET /datasets/{id} and GET /models/{id}. */
void api_catalog_get(api_req *r, int (*get)(dt_store *, const char *, json_t **, char *, size_t));
/* DELETE /datasets/{id} and DELETE /models/{id}: the row (409 in_use while a queued or running
 * job needs it), then cleanup(api, DIR/subdir/{id}) when cleanup is not NULL, then that
 * directory. */
void api_catalog_delete(api_req *r, const char *object, const char *subdir,
                        int (*del)(dt_store *, const char *, char *, size_t, char *, size_t),
                        void (*cleanup)(const dt_api *a, const char *dir));

/* ---- files (files.c) --------------------------------------------------------------------- */

/* Serves the file at path with content_type, honouring Range (one range; 206 / 416),
 * If-None-Match (304) with the ETag made from sha256 (or size and mtime when sha256 is NULL or
 * empty), and Content-Disposition when download_name is non-NULL. 404 when the file is gone. */
void api_serve_file(api_req *r, const char *path, const char *content_type, const char *sha256,
                    const char *download_name);
/* Does an If-None-Match header value (a list of ETags, or "*") contain etag? NULL = no. */
int api_etag_matches(const char *list, const char *etag);

/* ---- access (auth.c) --------------------------------------------------------------------- */

/* Draws the session secret and sets up the rate limiter. Returns 0, or -1 with a message. */
int api_auth_init(dt_api *a, char *err, size_t errlen);
void api_auth_free(dt_api *a);
/* Admits r to its route: the key (Bearer, or the session cookie on GET) must be active with the
 * route's scope and within its rate. Returns 0, or -1 after replying 401, 403, 429 or 503. */
int api_auth_check(api_req *r);
/* POST /session and DELETE /session: open and end a browser session (an HttpOnly cookie). */
void api_session_create(api_req *r);
void api_session_delete(api_req *r);

/* ---- compiled-in files (assets.c) -------------------------------------------------------- */

/* Serves a compiled-in file (assets.h) with its ETag (304 on If-None-Match), Cache-Control:
 * no-cache, nosniff and the UI's Content-Security-Policy; vary, when not NULL, is sent as Vary. */
void api_serve_asset(api_req *r, const api_asset *a, const char *vary);

/* ---- streams (events.c) ------------------------------------------------------------------ */

api_broker *api_broker_new(dt_api *a);
void api_broker_free(api_broker *b);
/* Wakes the subscribers of job_id (thread-safe). */
void api_broker_notify(api_broker *b, const char *job_id);
/* Ends every stream (thread-safe). */
void api_broker_close_all(api_broker *b);
/* The number of open streams. */
int api_broker_count(api_broker *b);

/* ---- handlers (one file per resource) ---------------------------------------------------- */

void api_jobs_create(api_req *r);
void api_jobs_list(api_req *r);
void api_jobs_get(api_req *r);
void api_jobs_cancel(api_req *r);
void api_jobs_retry(api_req *r);
void api_jobs_metrics(api_req *r);
void api_jobs_samples(api_req *r);
void api_jobs_sample_file(api_req *r);
void api_jobs_checkpoints(api_req *r);
void api_jobs_checkpoint_file(api_req *r);
/* POST and DELETE /jobs/{id}/checkpoints/{name}/pin: keep a checkpoint whatever retention says,
 * or stop keeping it (it goes at the next prune, which the unpin asks the supervisor for). */
void api_jobs_checkpoint_pin(api_req *r);
void api_jobs_checkpoint_unpin(api_req *r);
void api_events_get(api_req *r);
void api_datasets_create(api_req *r);
void api_datasets_list(api_req *r);
void api_datasets_get(api_req *r);
void api_datasets_delete(api_req *r);
/* GET /datasets/{id}/preview.png: the grid ingest drew at upload (404 for older datasets). */
void api_datasets_preview(api_req *r);
void api_models_create(api_req *r);
void api_models_list(api_req *r);
void api_models_get(api_req *r);
void api_models_delete(api_req *r);
/* GET /: the web UI's page for a browser (Accept names text/html), else the JSON index. */
void api_system_root(api_req *r);
/* GET /ui/{path}: a file of the web UI. */
void api_web_file(api_req *r);
void api_system_health(api_req *r);
void api_system_workers(api_req *r);
void api_system_metrics(api_req *r);
void api_system_openapi(api_req *r);

#endif
