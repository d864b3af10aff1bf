/* system.c — the service endpoints: GET / (the web UI, or the index of the API), /health, /workers, /metrics
 * (Prometheus text format 0.0.4) and /openapi.json. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "http.h"

/* Does the client prefer HTML (a browser navigating) over JSON? */
static int system_wants_html(api_req *r) {
    const char *accept = api_header(r, "Accept");
    return accept && strstr(accept, "text/html");
}

void api_system_root(api_req *r) {
    const api_asset *page = api_asset_find("/ui/index.html");
    if (page && system_wants_html(r)) {
        api_serve_asset(r, page, "Accept");
        return;
    }
    const char *h[] = {"Vary", "Accept", NULL};
    api_reply_json(r, 200,
                   json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "service", "difftune", "version",
                             DIFFTUNE_VERSION, "ui", "/", "openapi", "/openapi.json", "jobs", "/jobs",
                             "datasets", "/datasets", "models", "/models", "health", "/health"),
                   h);
}

static int system_job_counts(dt_api *a, int64_t counts[5]) {
    char err[256];
    return store_job_counts(a->opts.store, counts, err, sizeof err);
}

void api_system_health(api_req *r) {
    dt_api *a = r->api;
    int64_t counts[5];
    int store_ok = system_job_counts(a, counts) == 0;
    int draining = atomic_load(&a->draining);
    json_t *body = json_pack("{s:s, s:s, s:f, s:s}", "status", !store_ok ? "degraded" : draining ? "draining" : "ok",
                             "version", DIFFTUNE_VERSION, "uptime_seconds", dt_now() - a->started_at,
                             "store", store_ok ? "ok" : "failing");
    if (store_ok)
        json_object_set_new(body, "jobs", json_pack("{s:I, s:I}", "queued", (json_int_t)counts[DT_JOB_QUEUED],
                                                    "running", (json_int_t)counts[DT_JOB_RUNNING]));
    if (a->opts.stats) {
        json_t *w = json_object();
        a->opts.stats(a->opts.hook_ctx, w);
        json_object_set_new(body, "workers", w);
    }
    api_reply_json(r, store_ok && !draining ? 200 : 503, body, NULL);
}

void api_system_workers(api_req *r) {
    dt_api *a = r->api;
    json_t *w = a->opts.workers ? a->opts.workers(a->opts.hook_ctx) : NULL;
    api_reply_json(r, 200, w ? w : json_pack("{s:[]}", "data"), NULL);
}

void api_system_openapi(api_req *r) {
    api_serve_asset(r, api_asset_find("/openapi.json"), NULL);
}

/* ---- Prometheus ---------------------------------------------------------------------------- */

typedef struct {
    char *buf;
    size_t len, cap;
    int failed;
} system_text;

static void system_printf(system_text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void system_printf(system_text *t, const char *fmt, ...) {
    if (t->failed) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->buf + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->failed = 1;
            return;
        }
        if ((size_t)n < t->cap - t->len) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = t->cap ? t->cap * 2 : 16384;
        while (cap - t->len <= (size_t)n) cap *= 2;
        char *b = realloc(t->buf, cap);
        if (!b) {
            t->failed = 1;
            return;
        }
        t->buf = b;
        t->cap = cap;
    }
}

static void system_route_metrics(system_text *t, const char *name, const api_route_stats *st) {
    static const char *classes[] = {"0xx", "1xx", "2xx", "3xx", "4xx", "5xx"};
    uint64_t total = 0;
    for (int c = 1; c < 6; c++) {
        uint64_t n = atomic_load(&st->by_class[c]);
        total += n;
        if (n) system_printf(t, "difftune_http_requests_total{route=\"%s\",code=\"%s\"} %llu\n", name, classes[c],
                             (unsigned long long)n);
    }
    if (total)
        system_printf(t, "difftune_http_request_seconds_sum{route=\"%s\"} %.6f\n"
                         "difftune_http_request_seconds_count{route=\"%s\"} %llu\n",
                      name, atomic_load(&st->micros) / 1e6, name, (unsigned long long)total);
}

void api_system_metrics(api_req *r) {
    dt_api *a = r->api;
    system_text t = {0};
    system_printf(&t, "# HELP difftune_build_info The running version.\n# TYPE difftune_build_info gauge\n"
                      "difftune_build_info{version=\"%s\"} 1\n", DIFFTUNE_VERSION);
    system_printf(&t, "# HELP difftune_uptime_seconds Seconds since the server started.\n"
                      "# TYPE difftune_uptime_seconds gauge\ndifftune_uptime_seconds %.3f\n",
                  dt_now() - a->started_at);
    system_printf(&t, "# HELP difftune_http_requests_total HTTP requests answered, by route and status class.\n"
                      "# TYPE difftune_http_requests_total counter\n"
                      "# HELP difftune_http_request_seconds Time spent answering requests (to the response being queued; streams count their set-up).\n"
                      "# TYPE difftune_http_request_seconds summary\n");
    for (int i = 0; i < api_route_count; i++) system_route_metrics(&t, api_routes[i].name, &a->route_stats[i]);
    system_route_metrics(&t, "unrouted", &a->unrouted);
    int64_t counts[5];
    if (!system_job_counts(a, counts)) {
        system_printf(&t, "# HELP difftune_jobs Jobs in the store by status.\n# TYPE difftune_jobs gauge\n");
        for (int s = 0; s < 5; s++)
            system_printf(&t, "difftune_jobs{status=\"%s\"} %lld\n", store_job_status_name((dt_job_status)s),
                          (long long)counts[s]);
    }
    system_printf(&t, "# HELP difftune_sse_subscribers Open event streams.\n# TYPE difftune_sse_subscribers gauge\n"
                      "difftune_sse_subscribers %d\n", api_broker_count(a->broker));
    if (a->opts.stats) {
        json_t *w = json_object();
        a->opts.stats(a->opts.hook_ctx, w);
        const char *key;
        json_t *v;
        json_object_foreach(w, key, v) {
            int counter = strstr(key, "_total") != NULL;
            system_printf(&t, "# TYPE difftune_workers_%s %s\ndifftune_workers_%s %lld\n", key,
                          counter ? "counter" : "gauge", key, (long long)json_integer_value(v));
        }
        json_decref(w);
    }
    if (a->opts.webhook_stats) {
        dt_api_webhook_stats ws = {0};
        a->opts.webhook_stats(a->opts.hook_ctx, &ws);
        system_printf(&t, "# HELP difftune_webhook_deliveries_total Webhook deliveries by the outcome of their last attempt (dropped: the queue was full, the receiver answered 410 to an earlier one, or the server stopped first).\n"
                          "# TYPE difftune_webhook_deliveries_total counter\n"
                          "difftune_webhook_deliveries_total{result=\"ok\"} %llu\n"
                          "difftune_webhook_deliveries_total{result=\"failed\"} %llu\n"
                          "difftune_webhook_deliveries_total{result=\"dropped\"} %llu\n"
                          "# HELP difftune_webhook_retries_total Webhook attempts after a delivery's first.\n"
                          "# TYPE difftune_webhook_retries_total counter\ndifftune_webhook_retries_total %llu\n"
                          "# HELP difftune_webhook_pending Webhook deliveries waiting or in flight.\n"
                          "# TYPE difftune_webhook_pending gauge\ndifftune_webhook_pending %llu\n",
                      (unsigned long long)ws.ok, (unsigned long long)ws.failed, (unsigned long long)ws.dropped,
                      (unsigned long long)ws.retries, (unsigned long long)ws.pending);
    }
    if (t.failed) {
        free(t.buf);
        api_reply_error(r, 500, "internal_error", NULL, "out of memory");
        return;
    }
    struct MHD_Response *resp = MHD_create_response_from_buffer(t.len, t.buf, MHD_RESPMEM_MUST_FREE);
    if (!resp) free(t.buf);
    else MHD_add_response_header(resp, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    api_reply_response(r, 200, resp);
}
