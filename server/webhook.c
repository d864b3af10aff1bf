/* webhook.c — the delivery thread of job webhooks (webhook.h).
 *
 * Other threads only append job ids to the dirty list (under mu) and wake the thread through
 * curl_multi_wakeup. Everything else belongs to the delivery thread: the table of jobs it has
 * seen (each with its webhook, or none, and its event cursor), the queue of deliveries (one list
 * in arrival order, for dropping the oldest, and one per job, for sending in order), and the
 * requests in flight on libcurl's multi handle. One pass of its loop: read the new events of the
 * dirty jobs, let libcurl work, settle finished requests, start the requests that are due, then
 * sleep in curl_multi_poll until a socket, a retry or a notification needs it.
 */
#include "webhook.h"
#include "spec.h"
#include "webhook_sign.h"

#include <curl/curl.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define WH_QUEUE_MAX 10000
#define WH_QUEUE_BYTES_MAX ((size_t)64 << 20) /* of bodies: an event line may be 1 MiB */
#define WH_TIMEOUT_MS 10000
#define WH_ATTEMPTS 6
#define WH_BACKOFF_MS 1000
#define WH_IN_FLIGHT 16
#define WH_GRACE_MS 1000
#define WH_RETRY_AFTER_MAX_S 300.0
#define WH_POLL_MAX_MS 1000
#define WH_BUCKETS 1024
#define WH_DEDUP_SCAN 64      /* notify looks this far back for the same job id */
#define WH_SWEEP_S 10.0
/* a job without a webhook is forgotten after this long unseen: its entry only spares a busy
 * job's spec a re-read, and memory grows with the jobs seen in this window (at 180 new jobs a
 * second, the old 600 s held 100k entries, ~27 MB) */
#define WH_IDLE_PLAIN_S 20.0
#define WH_IDLE_DONE_S 3600.0 /* and a finished job with one after this long */

typedef struct wh_job wh_job;
typedef struct wh_delivery wh_delivery;

struct wh_delivery {
    wh_delivery *prev, *next;         /* every delivery, oldest first */
    wh_delivery *job_prev, *job_next; /* the job's, oldest first */
    wh_job *job;
    int64_t event_id;
    char type[16];
    char *body;
    size_t body_len;
    int attempts;                     /* made so far */
    double due;                       /* monotonic time of the next attempt */
    CURL *easy;                       /* in flight; NULL while waiting */
    struct curl_slist *headers;
    char last_error[128];             /* why the last attempt failed */
};

struct wh_job {
    wh_job *hnext;                    /* hash chain */
    wh_job *active_prev, *active_next;/* the active list: jobs with deliveries */
    int active;
    char id[DT_STORE_ID_MAX];
    char *url;                        /* NULL: no webhook */
    char host[128];                   /* host[:port] of url, for log lines */
    unsigned events;                  /* spec_webhook_event_bit() set */
    int64_t cursor;                   /* events up to this id were looked at */
    int terminal;                     /* the last status seen was terminal */
    int gone;                         /* the receiver answered 410 Gone */
    wh_delivery *head, *tail;
    double used;                      /* monotonic time of the last notification */
};

struct dt_webhooks {
    dt_webhook_opts o;
    char *data_dir, *user_agent;
    CURLM *multi;
    pthread_t thread;
    pthread_mutex_t mu;               /* guards dirty*, stopping and stats */
    char (*dirty)[DT_STORE_ID_MAX];
    size_t n_dirty, cap_dirty;
    int stopping;
    dt_webhook_stats stats;
    /* the delivery thread's */
    wh_job *table[WH_BUCKETS];
    wh_job *active_head, *active_tail;
    wh_delivery *oldest, *newest;
    size_t n_queued, bytes_queued;
    int in_flight;
    int64_t start_cursor;
    webhook_key key;
    int have_key;
    int overflow_warned;
    uint64_t rng;
    double next_sweep;
};

typedef enum { WH_OK, WH_FAILED, WH_DROPPED } wh_outcome;

/* ---- small helpers --------------------------------------------------------------------------- */

static void wh_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void wh_log(const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "difftune serve: webhooks: %s\n", msg);
}

static double wh_mono(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Uniform in [0, 1): xorshift64*, seeded from the kernel (jitter needs no more). */
static double wh_random(dt_webhooks *w) {
    w->rng ^= w->rng >> 12;
    w->rng ^= w->rng << 25;
    w->rng ^= w->rng >> 27;
    return (double)((w->rng * 2685821657736338717ull) >> 11) / 9007199254740992.0;
}

/* host[:port] of a validated http(s) URL (spec.c refuses user:password@), for log lines: the
 * path and query may carry a receiver's token. */
static void wh_url_host(const char *url, char *out, size_t len) {
    const char *p = strstr(url, "://");
    p = p ? p + 3 : url;
    int n = (int)strcspn(p, "/?#");
    snprintf(out, len, "%.*s", n, p);
}

static unsigned wh_hash(const char *id) {
    unsigned h = 2166136261u;
    for (; *id; id++) h = (h ^ (unsigned char)*id) * 16777619u;
    return h % WH_BUCKETS;
}

static void wh_stats_add(dt_webhooks *w, wh_outcome outcome) {
    pthread_mutex_lock(&w->mu);
    if (outcome == WH_OK) w->stats.ok++;
    else if (outcome == WH_FAILED) w->stats.failed++;
    else w->stats.dropped++;
    w->stats.pending = w->n_queued;
    pthread_mutex_unlock(&w->mu);
}

/* ---- jobs ------------------------------------------------------------------------------------ */

static void wh_activate(dt_webhooks *w, wh_job *j) {
    if (j->active) return;
    j->active = 1;
    j->active_prev = w->active_tail;
    j->active_next = NULL;
    if (w->active_tail) w->active_tail->active_next = j;
    else w->active_head = j;
    w->active_tail = j;
}

static void wh_deactivate(dt_webhooks *w, wh_job *j) {
    if (!j->active) return;
    j->active = 0;
    if (j->active_prev) j->active_prev->active_next = j->active_next;
    else w->active_head = j->active_next;
    if (j->active_next) j->active_next->active_prev = j->active_prev;
    else w->active_tail = j->active_prev;
    j->active_prev = j->active_next = NULL;
}

static int wh_status_terminal(const char *status) {
    return status && (!strcmp(status, "succeeded") || !strcmp(status, "failed") ||
                      !strcmp(status, "cancelled"));
}

/* The job's entry, made on first sight from its stored spec. NULL when the job does not exist
 * or cannot be read now (tried again at its next notification). */
static wh_job *wh_job_get(dt_webhooks *w, const char *id) {
    unsigned b = wh_hash(id);
    for (wh_job *j = w->table[b]; j; j = j->hnext)
        if (!strcmp(j->id, id)) return j;
    json_t *job = NULL;
    char err[512];
    int rc = store_job_get(w->o.store, id, &job, err, sizeof err);
    if (rc == DT_STORE_NOT_FOUND) return NULL;
    if (rc) {
        wh_log("reading job %s failed: %s", id, err);
        return NULL;
    }
    wh_job *j = calloc(1, sizeof *j);
    if (!j) {
        json_decref(job);
        return NULL;
    }
    snprintf(j->id, sizeof j->id, "%s", id);
    j->cursor = w->start_cursor;
    j->terminal = wh_status_terminal(json_string_value(json_object_get(job, "status")));
    json_t *hook = json_object_get(json_object_get(job, "spec"), "webhook");
    const char *url = json_string_value(json_object_get(hook, "url"));
    if (url && url[0]) {
        size_t i;
        json_t *type;
        json_array_foreach(json_object_get(hook, "events"), i, type)
            j->events |= spec_webhook_event_bit(json_string_value(type));
        if (!json_object_get(hook, "events")) j->events = DT_SPEC_WEBHOOK_STATUS;
        j->url = strdup(url);
        wh_url_host(url, j->host, sizeof j->host);
        if (!j->url) {
            free(j);
            json_decref(job);
            return NULL;
        }
    }
    json_decref(job);
    j->hnext = w->table[b];
    w->table[b] = j;
    return j;
}

static void wh_job_free(wh_job *j) {
    free(j->url);
    free(j);
}

/* Forgets jobs that are unlikely to be heard of again (a later notification reads them anew). */
static void wh_sweep(dt_webhooks *w, double now) {
    for (int b = 0; b < WH_BUCKETS; b++) {
        wh_job **link = &w->table[b];
        while (*link) {
            wh_job *j = *link;
            double idle = now - j->used;
            int forget = !j->head && (j->url ? (j->terminal || j->gone) && idle > WH_IDLE_DONE_S
                                             : idle > WH_IDLE_PLAIN_S);
            if (forget) {
                *link = j->hnext;
                wh_job_free(j);
            } else {
                link = &j->hnext;
            }
        }
    }
}

/* ---- the queue ------------------------------------------------------------------------------- */

/* Takes d out of the queue, counts and (unless dropped) logs how it ended, and frees it. d must
 * not be in flight. */
static void wh_finish(dt_webhooks *w, wh_delivery *d, wh_outcome outcome, const char *why,
                      long http) {
    wh_job *j = d->job;
    if (d->prev) d->prev->next = d->next;
    else w->oldest = d->next;
    if (d->next) d->next->prev = d->prev;
    else w->newest = d->prev;
    if (d->job_prev) d->job_prev->job_next = d->job_next;
    else j->head = d->job_next;
    if (d->job_next) d->job_next->job_prev = d->job_prev;
    else j->tail = d->job_prev;
    if (!j->head) wh_deactivate(w, j);
    w->n_queued--;
    w->bytes_queued -= d->body_len;
    if (w->n_queued <= (size_t)w->o.queue_max / 2) w->overflow_warned = 0;
    wh_stats_add(w, outcome);
    if (outcome == WH_OK)
        wh_log("evt_%s_%" PRId64 " (%s) to %s: delivered (HTTP %ld, attempt %d)", j->id,
               d->event_id, d->type, j->host, http, d->attempts);
    else if (outcome == WH_FAILED)
        wh_log("evt_%s_%" PRId64 " (%s) to %s: failed after %d attempt%s: %s", j->id, d->event_id,
               d->type, j->host, d->attempts, d->attempts == 1 ? "" : "s", why);
    free(d->body);
    free(d);
}

/* Drops the oldest delivery not in flight; 0 when every one is in flight. */
static int wh_drop_oldest(dt_webhooks *w) {
    for (wh_delivery *d = w->oldest; d; d = d->next) {
        if (d->easy) continue;
        if (!w->overflow_warned) {
            wh_log("the delivery queue is full (%d deliveries or %zu MiB): dropping the oldest "
                   "ones (counted as dropped in /metrics)", w->o.queue_max, WH_QUEUE_BYTES_MAX >> 20);
            w->overflow_warned = 1;
        }
        wh_finish(w, d, WH_DROPPED, NULL, 0);
        return 1;
    }
    return 0;
}

/* Seconds-since-epoch as ISO 8601 UTC with milliseconds. */
static void wh_iso8601(double t, char out[32]) {
    time_t secs = (time_t)floor(t);
    int ms = (int)((t - (double)secs) * 1000.0);
    if (ms > 999) ms = 999;
    if (ms < 0) ms = 0;
    struct tm tm;
    char base[24];
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", gmtime_r(&secs, &tm));
    snprintf(out, 32, "%s.%03dZ", base, ms);
}

/* Queues the delivery of one stored event ({"id","type","time","data"}) of job j. */
static void wh_enqueue(dt_webhooks *w, wh_job *j, json_t *ev, double now) {
    const char *type = json_string_value(json_object_get(ev, "type"));
    json_int_t event_id = json_integer_value(json_object_get(ev, "id"));
    char stamp[32];
    wh_iso8601(json_number_value(json_object_get(ev, "time")), stamp);
    json_t *data = json_pack("{s:s, s:I}", "job", j->id, "event_id", event_id);
    json_t *src = json_object_get(ev, "data");
    if (data && json_is_object(src)) json_object_update_missing(data, src);
    json_t *body = data ? json_pack("{s:s, s:s, s:o}", "type", type ? type : "", "timestamp",
                                    stamp, "data", data)
                        : NULL;
    char *text = body ? json_dumps(body, JSON_COMPACT | JSON_REAL_PRECISION(17)) : NULL;
    json_decref(body);
    wh_delivery *d = text ? calloc(1, sizeof *d) : NULL;
    if (!d) {
        free(text);
        wh_log("out of memory for a delivery of job %s: dropped", j->id);
        wh_stats_add(w, WH_DROPPED);
        return;
    }
    d->body = text;
    d->body_len = strlen(text);
    while ((w->n_queued >= (size_t)w->o.queue_max ||
            w->bytes_queued + d->body_len > WH_QUEUE_BYTES_MAX) && wh_drop_oldest(w)) {
    }
    d->job = j;
    d->event_id = event_id;
    snprintf(d->type, sizeof d->type, "%s", type ? type : "");
    d->due = now;
    d->prev = w->newest;
    if (w->newest) w->newest->next = d;
    else w->oldest = d;
    w->newest = d;
    d->job_prev = j->tail;
    if (j->tail) j->tail->job_next = d;
    else j->head = d;
    j->tail = d;
    w->n_queued++;
    w->bytes_queued += d->body_len;
    wh_activate(w, j);
}

/* Reads the job's events past its cursor and queues those its filter names. */
static void wh_scan(dt_webhooks *w, const char *id, double now) {
    wh_job *j = wh_job_get(w, id);
    if (!j) return;
    j->used = now;
    if (!j->url || j->gone) return;
    for (;;) {
        json_t *page = NULL;
        char err[512];
        int rc = store_event_list(w->o.store, j->id, j->cursor, DT_STORE_EVENTS_MAX, &page, err,
                                  sizeof err);
        if (rc) {
            if (rc != DT_STORE_NOT_FOUND) wh_log("reading the events of job %s failed: %s", j->id, err);
            return;
        }
        size_t i;
        json_t *ev;
        json_array_foreach(json_object_get(page, "data"), i, ev) {
            const char *type = json_string_value(json_object_get(ev, "type"));
            if (type && !strcmp(type, "status"))
                j->terminal = wh_status_terminal(
                    json_string_value(json_object_get(json_object_get(ev, "data"), "status")));
            if (spec_webhook_event_bit(type) & j->events) wh_enqueue(w, j, ev, now);
            j->cursor = json_integer_value(json_object_get(ev, "id"));
        }
        int more = json_is_true(json_object_get(page, "has_more"));
        json_decref(page);
        if (!more) return;
    }
}

/* ---- requests -------------------------------------------------------------------------------- */

static size_t wh_discard(char *ptr, size_t size, size_t nmemb, void *ctx) {
    (void)ptr;
    (void)ctx;
    return size * nmemb;
}

/* Starts an attempt of d (the head of its job, not in flight). */
static void wh_attempt(dt_webhooks *w, wh_delivery *d, double now) {
    char err[512];
    if (!w->have_key) {
        if (webhook_secret_load(w->data_dir, NULL, 0, &w->key, NULL, err, sizeof err)) {
            d->attempts++;
            wh_finish(w, d, WH_FAILED, err, 0);
            return;
        }
        w->have_key = 1;
    }
    char id[DT_STORE_ID_MAX + 32], line[160], sig[WEBHOOK_SIGNATURE_MAX];
    snprintf(id, sizeof id, "evt_%s_%" PRId64, d->job->id, d->event_id);
    int64_t stamp = (int64_t)time(NULL);
    if (webhook_sign(&w->key, id, stamp, d->body, d->body_len, sig)) {
        d->attempts++;
        wh_finish(w, d, WH_FAILED, "signing failed (the crypto library)", 0);
        return;
    }
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    snprintf(line, sizeof line, "webhook-id: %s", id);
    if (h) h = curl_slist_append(h, line);
    snprintf(line, sizeof line, "webhook-timestamp: %" PRId64, stamp);
    if (h) h = curl_slist_append(h, line);
    snprintf(line, sizeof line, "webhook-signature: %s", sig);
    if (h) h = curl_slist_append(h, line);
    if (h) h = curl_slist_append(h, "Expect:"); /* no 100-continue round trip for big bodies */
    CURL *e = h ? curl_easy_init() : NULL;
    if (!e) {
        curl_slist_free_all(h);
        d->due = now + 1; /* out of memory: try again in a second */
        return;
    }
    curl_easy_setopt(e, CURLOPT_URL, d->job->url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, d->body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)d->body_len);
    curl_easy_setopt(e, CURLOPT_USERAGENT, w->user_agent);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)w->o.timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)w->o.timeout_ms);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
#if LIBCURL_VERSION_NUM >= 0x075500 /* 7.85 */
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
#else
    curl_easy_setopt(e, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
#if LIBCURL_VERSION_NUM >= 0x075700 /* 7.87: do not wait for a resolver thread at shutdown */
    curl_easy_setopt(e, CURLOPT_QUICK_EXIT, 1L);
#endif
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, wh_discard);
    curl_easy_setopt(e, CURLOPT_PRIVATE, d);
    if (curl_multi_add_handle(w->multi, e) != CURLM_OK) {
        curl_easy_cleanup(e);
        curl_slist_free_all(h);
        d->due = now + 1;
        return;
    }
    d->easy = e;
    d->headers = h;
    d->attempts++;
    w->in_flight++;
    if (d->attempts > 1) {
        pthread_mutex_lock(&w->mu);
        w->stats.retries++;
        pthread_mutex_unlock(&w->mu);
    }
}

/* Ends d's request (in flight) and frees what libcurl held for it. */
static void wh_release(dt_webhooks *w, wh_delivery *d) {
    curl_multi_remove_handle(w->multi, d->easy);
    curl_easy_cleanup(d->easy);
    curl_slist_free_all(d->headers);
    d->easy = NULL;
    d->headers = NULL;
    w->in_flight--;
}

/* A 410 Gone: the receiver wants no more of this job's events. */
static void wh_gone(dt_webhooks *w, wh_job *j) {
    j->gone = 1;
    wh_log("%s answered 410 Gone: no more deliveries for job %s", j->host, j->id);
    for (wh_delivery *d = j->head, *next; d; d = next) {
        next = d->job_next;
        if (!d->easy) wh_finish(w, d, WH_DROPPED, NULL, 0);
    }
}

/* What an attempt's answer (or failure) means for d. */
static void wh_settle(dt_webhooks *w, wh_delivery *d, CURLcode res, long http,
                      curl_off_t retry_after, double now) {
    if (res == CURLE_OK && http >= 200 && http < 300) {
        wh_finish(w, d, WH_OK, NULL, http);
        return;
    }
    int retry;
    if (res != CURLE_OK) {
        /* network trouble is worth another try; a URL libcurl cannot use is not */
        retry = res != CURLE_URL_MALFORMAT && res != CURLE_UNSUPPORTED_PROTOCOL &&
                res != CURLE_NOT_BUILT_IN;
        snprintf(d->last_error, sizeof d->last_error, "%s", curl_easy_strerror(res));
    } else {
        retry = http >= 500 || http == 429;
        snprintf(d->last_error, sizeof d->last_error, "HTTP %ld%s", http,
                 http >= 300 && http < 400 ? " (a redirect, not followed: update the URL)" : "");
    }
    if (res == CURLE_OK && http == 410) {
        wh_job *j = d->job;
        wh_finish(w, d, WH_FAILED, "HTTP 410 Gone", http);
        wh_gone(w, j);
        return;
    }
    if (retry && d->attempts < w->o.max_attempts) {
        double delay = w->o.backoff_ms / 1000.0 * ldexp(1.0, d->attempts - 1) *
                       (0.8 + 0.4 * wh_random(w));
        if (retry_after > 0) delay = fmax(delay, fmin((double)retry_after, WH_RETRY_AFTER_MAX_S));
        d->due = now + delay;
        return;
    }
    wh_finish(w, d, WH_FAILED, d->last_error, http);
}

/* Settles every request libcurl has finished. */
static void wh_collect(dt_webhooks *w, double now) {
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(w->multi, &left))) {
        if (m->msg != CURLMSG_DONE) continue;
        CURL *e = m->easy_handle;
        CURLcode res = m->data.result; /* m is invalid once the handle is removed */
        wh_delivery *d = NULL;
        long http = 0;
        curl_off_t retry_after = 0;
        curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&d);
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &http);
        curl_easy_getinfo(e, CURLINFO_RETRY_AFTER, &retry_after);
        wh_release(w, d);
        wh_settle(w, d, res, http, retry_after, now);
    }
}

/* Starts the due heads of the active jobs, round robin, while fewer than max_in_flight requests
 * run; with a deadline (shutdown) only those due before it. */
static void wh_start_due(dt_webhooks *w, double now) {
    wh_job *last = w->active_tail;
    for (wh_job *j = w->active_head, *next; j && w->in_flight < w->o.max_in_flight; j = next) {
        next = j == last ? NULL : j->active_next;
        wh_delivery *d = j->head;
        if (!d || d->easy || d->due > now) continue;
        wh_attempt(w, d, now);
        if (j->active && j != w->active_tail) { /* served: to the back of the line */
            wh_deactivate(w, j);
            wh_activate(w, j);
        }
    }
}

/* When the next waiting head is due, at most WH_POLL_MAX_MS from now; in milliseconds. */
static int wh_wait_ms(dt_webhooks *w, double now) {
    double next = now + WH_POLL_MAX_MS / 1000.0;
    if (w->in_flight < w->o.max_in_flight)
        for (wh_job *j = w->active_head; j; j = j->active_next)
            if (j->head && !j->head->easy && j->head->due < next) next = j->head->due;
    double ms = (next - now) * 1000.0;
    return ms <= 0 ? 0 : (int)ceil(ms);
}

/* Is anything still worth waiting for before the shutdown deadline? */
static int wh_busy_until(dt_webhooks *w, double deadline) {
    if (w->in_flight) return 1;
    for (wh_job *j = w->active_head; j; j = j->active_next)
        if (j->head && j->head->due < deadline) return 1;
    return 0;
}

/* ---- the thread ------------------------------------------------------------------------------ */

static void *wh_main(void *arg) {
    dt_webhooks *w = arg;
    double deadline = 0;
    for (;;) {
        pthread_mutex_lock(&w->mu);
        char(*dirty)[DT_STORE_ID_MAX] = w->dirty;
        size_t n_dirty = w->n_dirty;
        int stopping = w->stopping;
        w->dirty = NULL;
        w->n_dirty = w->cap_dirty = 0;
        pthread_mutex_unlock(&w->mu);

        double now = wh_mono();
        for (size_t i = 0; i < n_dirty; i++) wh_scan(w, dirty[i], now);
        free(dirty);
        int running;
        curl_multi_perform(w->multi, &running);
        now = wh_mono();
        wh_collect(w, now);
        if (stopping) {
            if (!deadline) deadline = now + w->o.shutdown_grace_ms / 1000.0;
            if (now >= deadline || !wh_busy_until(w, deadline)) break;
        }
        wh_start_due(w, now);
        if (now >= w->next_sweep) {
            wh_sweep(w, now);
            w->next_sweep = now + WH_SWEEP_S;
        }
        pthread_mutex_lock(&w->mu);
        w->stats.pending = w->n_queued;
        pthread_mutex_unlock(&w->mu);
        int wait = wh_wait_ms(w, now);
        if (deadline) {
            int left = (int)ceil((deadline - now) * 1000.0);
            if (left < wait) wait = left > 0 ? left : 0;
        }
        curl_multi_poll(w->multi, NULL, 0, wait, NULL);
    }
    /* shutdown: what is left is dropped */
    size_t dropped = 0;
    while (w->oldest) {
        wh_delivery *d = w->oldest;
        if (d->easy) wh_release(w, d);
        wh_finish(w, d, WH_DROPPED, NULL, 0);
        dropped++;
    }
    if (dropped)
        wh_log("%zu deliver%s not made before shutdown %s dropped", dropped,
               dropped == 1 ? "y" : "ies", dropped == 1 ? "was" : "were");
    return NULL;
}

/* ---- public ---------------------------------------------------------------------------------- */

int webhook_start(const dt_webhook_opts *opts, dt_webhooks **out, char *err, size_t errlen) {
    *out = NULL;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        snprintf(err, errlen, "webhooks: libcurl failed to initialise");
        return -1;
    }
    dt_webhooks *w = calloc(1, sizeof *w);
    if (!w) {
        curl_global_cleanup();
        snprintf(err, errlen, "webhooks: out of memory");
        return -1;
    }
    w->o = *opts;
    if (!w->o.queue_max) w->o.queue_max = WH_QUEUE_MAX;
    if (!w->o.timeout_ms) w->o.timeout_ms = WH_TIMEOUT_MS;
    if (!w->o.max_attempts) w->o.max_attempts = WH_ATTEMPTS;
    if (!w->o.backoff_ms) w->o.backoff_ms = WH_BACKOFF_MS;
    if (!w->o.max_in_flight) w->o.max_in_flight = WH_IN_FLIGHT;
    if (!w->o.shutdown_grace_ms) w->o.shutdown_grace_ms = WH_GRACE_MS;
    w->data_dir = strdup(opts->data_dir);
    w->user_agent = strdup(opts->user_agent ? opts->user_agent : "difftune-webhooks");
    w->multi = curl_multi_init();
    if (getrandom(&w->rng, sizeof w->rng, 0) != (ssize_t)sizeof w->rng || !w->rng)
        w->rng = (uint64_t)time(NULL) | 1;
    pthread_mutex_init(&w->mu, NULL);
    int rc = -1;
    if (!w->data_dir || !w->user_agent || !w->multi) {
        snprintf(err, errlen, "webhooks: out of memory");
    } else if (store_event_last_id(opts->store, &w->start_cursor, err, errlen) == DT_STORE_OK) {
        curl_multi_setopt(w->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)w->o.max_in_flight);
        w->next_sweep = wh_mono() + WH_SWEEP_S;
        rc = pthread_create(&w->thread, NULL, wh_main, w) == 0 ? 0 : -1;
        if (rc) snprintf(err, errlen, "webhooks: cannot start the delivery thread");
    }
    if (rc) {
        if (w->multi) curl_multi_cleanup(w->multi);
        pthread_mutex_destroy(&w->mu);
        free(w->data_dir);
        free(w->user_agent);
        free(w);
        curl_global_cleanup();
        return -1;
    }
    *out = w;
    return 0;
}

void webhook_notify(dt_webhooks *w, const char *job_id) {
    if (!w || !job_id) return;
    pthread_mutex_lock(&w->mu);
    if (!w->stopping) {
        int seen = 0;
        for (size_t i = 0; i < w->n_dirty && i < WH_DEDUP_SCAN && !seen; i++)
            seen = !strcmp(w->dirty[w->n_dirty - 1 - i], job_id);
        if (!seen && w->n_dirty == w->cap_dirty) {
            size_t cap = w->cap_dirty ? w->cap_dirty * 2 : 16;
            void *grown = realloc(w->dirty, cap * sizeof *w->dirty);
            if (grown) {
                w->dirty = grown;
                w->cap_dirty = cap;
            }
        }
        /* out of memory: the job's events go out with its next notification */
        if (!seen && w->n_dirty < w->cap_dirty)
            snprintf(w->dirty[w->n_dirty++], DT_STORE_ID_MAX, "%s", job_id);
        curl_multi_wakeup(w->multi);
    }
    pthread_mutex_unlock(&w->mu);
}

void webhook_stats(dt_webhooks *w, dt_webhook_stats *out) {
    memset(out, 0, sizeof *out);
    if (!w) return;
    pthread_mutex_lock(&w->mu);
    *out = w->stats;
    pthread_mutex_unlock(&w->mu);
}

void webhook_stop(dt_webhooks *w) {
    if (!w) return;
    pthread_mutex_lock(&w->mu);
    w->stopping = 1;
    curl_multi_wakeup(w->multi);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    for (int b = 0; b < WH_BUCKETS; b++)
        for (wh_job *j = w->table[b], *next; j; j = next) {
            next = j->hnext;
            wh_job_free(j);
        }
    curl_multi_cleanup(w->multi);
    curl_global_cleanup();
    free(w->dirty);
    free(w->data_dir);
    free(w->user_agent);
    pthread_mutex_destroy(&w->mu);
    memset(&w->key, 0, sizeof w->key);
    free(w);
}
