/* events.c — GET /jobs/{id}/events: the JSON event list, and the SSE stream with its broker.
 *
 * A stream is a callback response. Its reader sends the job's stored events after the last id
 * it sent (frames "id: N / event: TYPE / data: {...}"), and when there is nothing to send it
 * suspends its connection, so an idle subscriber costs no thread. The broker resumes the
 * subscribers of a job when the supervisor stores its events, and a heartbeat thread resumes
 * any stream that has been quiet for heartbeat_s to send a comment. Wake-ups cannot be lost: a
 * notification sets the subscriber's flag under the broker lock, and the reader suspends only
 * under that lock with the flag clear. The stream ends after the job's terminal status event.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "http.h"

typedef struct api_sub {
    struct api_sub *prev, *next;
    api_broker *broker;
    struct MHD_Connection *conn;
    char job_id[DT_STORE_ID_MAX];
    int64_t last_id;   /* the newest event id sent */
    int suspended;     /* its connection is suspended (broker lock) */
    int notified;      /* an event arrived since the reader last looked (broker lock) */
    int heartbeat_due; /* the heartbeat thread asks for a comment (broker lock) */
    double last_write; /* broker lock */
    int done;          /* the terminal status was sent: end after the buffer drains */
    char *buf;         /* frames waiting to go out: buf[off..len) */
    size_t len, off, cap;
} api_sub;

struct api_broker {
    dt_api *api;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    api_sub *head;
    int count;
    int closing;
    int stop;
    pthread_t heartbeat;
    int heartbeat_started;
};

/* ---- the broker -------------------------------------------------------------------------- */

/* Resumes s if its reader is parked (broker lock held). */
static void broker_wake_locked(api_sub *s) {
    if (s->suspended) {
        s->suspended = 0;
        MHD_resume_connection(s->conn);
    }
}

static void *broker_heartbeat_main(void *arg) {
    api_broker *b = arg;
    const double period = b->api->opts.heartbeat_s;
    pthread_mutex_lock(&b->mu);
    while (!b->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        pthread_cond_timedwait(&b->cv, &b->mu, &ts);
        double now = dt_now();
        for (api_sub *s = b->head; s; s = s->next)
            if (now - s->last_write >= period) {
                s->heartbeat_due = 1;
                broker_wake_locked(s);
            }
    }
    pthread_mutex_unlock(&b->mu);
    return NULL;
}

api_broker *api_broker_new(dt_api *a) {
    api_broker *b = calloc(1, sizeof *b);
    if (!b) return NULL;
    b->api = a;
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv, NULL);
    if (pthread_create(&b->heartbeat, NULL, broker_heartbeat_main, b)) {
        pthread_mutex_destroy(&b->mu);
        pthread_cond_destroy(&b->cv);
        free(b);
        return NULL;
    }
    b->heartbeat_started = 1;
    return b;
}

void api_broker_free(api_broker *b) {
    if (!b) return;
    pthread_mutex_lock(&b->mu);
    b->stop = 1;
    pthread_cond_signal(&b->cv);
    pthread_mutex_unlock(&b->mu);
    if (b->heartbeat_started) pthread_join(b->heartbeat, NULL);
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->cv);
    free(b);
}

void api_broker_notify(api_broker *b, const char *job_id) {
    pthread_mutex_lock(&b->mu);
    for (api_sub *s = b->head; s; s = s->next)
        if (!strcmp(s->job_id, job_id)) {
            s->notified = 1;
            broker_wake_locked(s);
        }
    pthread_mutex_unlock(&b->mu);
}

void api_broker_close_all(api_broker *b) {
    pthread_mutex_lock(&b->mu);
    b->closing = 1;
    for (api_sub *s = b->head; s; s = s->next) broker_wake_locked(s);
    pthread_mutex_unlock(&b->mu);
}

int api_broker_count(api_broker *b) {
    pthread_mutex_lock(&b->mu);
    int n = b->count;
    pthread_mutex_unlock(&b->mu);
    return n;
}

/* ---- one stream -------------------------------------------------------------------------- */

static int sub_append(api_sub *s, const char *text, size_t n) {
    if (s->len + n > s->cap) {
        size_t cap = s->cap ? s->cap : 8192;
        while (cap < s->len + n) cap *= 2;
        char *b = realloc(s->buf, cap);
        if (!b) return -1;
        s->buf = b;
        s->cap = cap;
    }
    memcpy(s->buf + s->len, text, n);
    s->len += n;
    return 0;
}

static int sub_is_terminal(const char *status) {
    dt_job_status st;
    return status && !store_job_status_parse(status, &st) && store_job_status_terminal(st);
}

/* Appends the frames of the stored events after last_id (at most a page). Returns how many, or
 * -1. */
static int sub_fill_events(api_sub *s) {
    dt_store *store = s->broker->api->opts.store;
    json_t *page = NULL;
    char err[256];
    if (store_event_list(store, s->job_id, s->last_id, 100, &page, err, sizeof err)) return -1;
    json_t *data = json_object_get(page, "data");
    size_t i;
    json_t *ev;
    int added = 0;
    json_array_foreach(data, i, ev) {
        int64_t id = json_integer_value(json_object_get(ev, "id"));
        const char *type = json_string_value(json_object_get(ev, "type"));
        char *text = json_dumps(ev, JSON_COMPACT | JSON_REAL_PRECISION(16));
        char head[128];
        int hn = snprintf(head, sizeof head, "id: %lld\nevent: %s\ndata: ", (long long)id, type ? type : "message");
        int bad = !text || sub_append(s, head, (size_t)hn) || sub_append(s, text, strlen(text)) ||
                  sub_append(s, "\n\n", 2);
        free(text);
        if (bad) {
            json_decref(page);
            return -1;
        }
        s->last_id = id;
        added++;
        /* The newest status decides: a retried job's "cancelled" is followed by "queued". */
        if (type && !strcmp(type, "status"))
            s->done = sub_is_terminal(json_string_value(json_object_get(json_object_get(ev, "data"), "status")));
    }
    json_decref(page);
    return added;
}

/* Appends the frames of new events; with none, decides whether the stream is over. Returns the
 * number of events added, or -1. */
static int sub_fill(api_sub *s) {
    int added = sub_fill_events(s);
    if (added) return added;
    /* Nothing new. A terminal job has no event to come: its status change and status event are
     * one transaction. The status is read before listing again, so a job that ended after the
     * first listing still gets its last events out before the stream closes. */
    json_t *job = NULL;
    char err[256];
    if (store_job_get(s->broker->api->opts.store, s->job_id, &job, err, sizeof err)) return -1;
    int terminal = sub_is_terminal(json_string_value(json_object_get(job, "status")));
    json_decref(job);
    if (!terminal) return 0;
    added = sub_fill_events(s);
    if (added == 0) s->done = 1;
    return added;
}

static ssize_t sub_read(void *cls, uint64_t pos, char *out, size_t max) {
    (void)pos;
    api_sub *s = cls;
    api_broker *b = s->broker;
    for (;;) {
        if (s->off < s->len) {
            size_t n = s->len - s->off < max ? s->len - s->off : max;
            memcpy(out, s->buf + s->off, n);
            s->off += n;
            if (s->off == s->len) s->off = s->len = 0;
            pthread_mutex_lock(&b->mu);
            s->last_write = dt_now();
            pthread_mutex_unlock(&b->mu);
            return (ssize_t)n;
        }
        if (s->done) return MHD_CONTENT_READER_END_OF_STREAM;
        pthread_mutex_lock(&b->mu);
        int closing = b->closing, heartbeat = s->heartbeat_due;
        s->notified = 0;
        s->heartbeat_due = 0;
        pthread_mutex_unlock(&b->mu);
        if (closing) return MHD_CONTENT_READER_END_OF_STREAM;
        if (sub_fill(s) < 0) return MHD_CONTENT_READER_END_WITH_ERROR;
        if (s->len) continue;
        if (s->done) return MHD_CONTENT_READER_END_OF_STREAM;
        if (heartbeat) {
            if (sub_append(s, ": heartbeat\n\n", 13)) return MHD_CONTENT_READER_END_WITH_ERROR;
            continue;
        }
        pthread_mutex_lock(&b->mu);
        if (s->notified || s->heartbeat_due || b->closing) {
            pthread_mutex_unlock(&b->mu);
            continue;
        }
        s->suspended = 1;
        MHD_suspend_connection(s->conn);
        pthread_mutex_unlock(&b->mu);
        return 0;
    }
}

static void sub_free(void *cls) {
    api_sub *s = cls;
    api_broker *b = s->broker;
    pthread_mutex_lock(&b->mu);
    if (s->prev) s->prev->next = s->next;
    else b->head = s->next;
    if (s->next) s->next->prev = s->prev;
    b->count--;
    pthread_mutex_unlock(&b->mu);
    free(s->buf);
    free(s);
}

int api_last_event_id_parse(const char *text, int64_t *out) {
    char *end;
    long long v = strtoll(text, &end, 10);
    if (!text[0] || *end || v < 0) return -1;
    *out = v;
    return 0;
}

/* Where a stream starts: Last-Event-ID (a reconnecting EventSource), else ?after=, else 0. */
static int events_stream_start(api_req *r, int64_t *after) {
    const char *last = api_header(r, "Last-Event-ID");
    if (!last) return api_query_int(r, "after", 0, INT64_MAX, 0, after);
    if (api_last_event_id_parse(last, after)) {
        api_reply_error(r, 400, "invalid_value", "Last-Event-ID",
                        "Last-Event-ID must be the id of an event (a non-negative integer)");
        return -1;
    }
    return 0;
}

static void events_stream(api_req *r, int64_t after) {
    api_broker *b = r->api->broker;
    api_sub *s = calloc(1, sizeof *s);
    if (!s) {
        api_reply_error(r, 500, "internal_error", NULL, "out of memory");
        return;
    }
    s->broker = b;
    s->conn = r->conn;
    s->last_id = after;
    s->last_write = dt_now();
    snprintf(s->job_id, sizeof s->job_id, "%.*s", DT_STORE_ID_MAX - 1, r->params[0]);
    if (sub_append(s, "retry: 2000\n\n", 13)) {
        free(s);
        api_reply_error(r, 500, "internal_error", NULL, "out of memory");
        return;
    }
    struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, sub_read, s, sub_free);
    if (!resp) {
        free(s->buf);
        free(s);
        api_reply_error(r, 500, "internal_error", NULL, "cannot start the stream");
        return;
    }
    pthread_mutex_lock(&b->mu);
    s->next = b->head;
    if (b->head) b->head->prev = s;
    b->head = s;
    b->count++;
    pthread_mutex_unlock(&b->mu);
    MHD_add_response_header(resp, "Content-Type", "text/event-stream");
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    MHD_add_response_header(resp, "X-Accel-Buffering", "no");
    api_reply_response(r, 200, resp);
}

static int events_wants_stream(api_req *r) {
    const char *accept = api_header(r, "Accept");
    return accept && strstr(accept, "text/event-stream") != NULL;
}

void api_events_get(api_req *r) {
    const char *id = r->params[0];
    char err[512];
    json_t *job = NULL;
    int rc = store_job_get(r->api->opts.store, id, &job, err, sizeof err);
    if (rc) {
        api_reply_store_error(r, rc, NULL, err);
        return;
    }
    json_decref(job);
    int64_t after, limit;
    if (events_wants_stream(r)) {
        if (events_stream_start(r, &after) == 0) events_stream(r, after);
        return;
    }
    if (api_query_int(r, "after", 0, INT64_MAX, 0, &after) ||
        api_query_int(r, "limit", 1, DT_STORE_EVENTS_MAX, 100, &limit))
        return;
    json_t *page = NULL;
    rc = store_event_list(r->api->opts.store, id, after, (int)limit, &page, err, sizeof err);
    if (rc) api_reply_store_error(r, rc, NULL, err);
    else api_reply_json(r, 200, page, NULL);
}
