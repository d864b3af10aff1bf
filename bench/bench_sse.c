/* bench_sse.c — how many concurrent SSE subscribers `difftune serve` holds while every one of
 * them still receives every event of a job, in order, with no gap and no duplicate.
 *
 * Opens N raw HTTP/1.1 connections (GET /jobs/{id}/events, Accept: text/event-stream) from one
 * epoll loop, parses the chunked transfer encoding and the SSE frames ("id: N", "data: {...}"),
 * lets the job's events flow for --live seconds once every subscriber is connected, then cancels
 * the job (POST /jobs/{id}/cancel: a terminal status event, after which every stream must end
 * with the last chunk). The job's stored event list (GET /jobs/{id}/events, paged) is the
 * reference each subscriber's sequence must equal. The job must be one that produces events
 * while it is open: bench/bench_server.sh runs it as a tiny training job on a 1-slot server.
 *
 * Latency of an event: the event's own "time" (stamped by the worker when it emitted it) to the
 * moment the LAST subscriber received it (end to end: worker pipe, supervisor, store, broker
 * wake-up, one store read per subscriber, the socket); and the spread between the first and the
 * last subscriber to receive it (the fan-out alone). Only events stamped after every subscriber
 * was connected count ("live" events); the replay of older ones does not.
 *
 *   bench_sse --url http://127.0.0.1:PORT --job JOB_ID --subscribers N [--live SECONDS]
 *             [--close-timeout SECONDS] [--pid NAME=PID ...] [--json FILE]
 *
 * Prints a summary and one JSON object (also written to --json). Exit status 0 when every
 * subscriber received every event and saw its stream end; 3 when the only failures are streams
 * that ended cleanly without the job's final status event (a race in the server's stream reader,
 * see bench/README.md); 1 on any other failure; 2 on bad usage. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

/* ---- small helpers ----------------------------------------------------------------------- */

static double now_real(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void die(const char *msg) {
    fprintf(stderr, "bench_sse: %s\n", msg);
    exit(2);
}

static void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n);
    if (!q) die("out of memory");
    return q;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* q-quantile (nearest rank) of n sorted values. */
static double quantile(const double *v, size_t n, double q) {
    if (!n) return 0;
    size_t k = (size_t)(q * (double)n + 0.999999);
    if (k < 1) k = 1;
    if (k > n) k = n;
    return v[k - 1];
}

/* ---- options ----------------------------------------------------------------------------- */

#define MAX_PIDS 8

typedef struct {
    char host[64];
    int port;
    const char *job;
    int n;
    double live_s, close_timeout_s, connect_timeout_s;
    const char *json_path;
    int npids;
    const char *pid_name[MAX_PIDS];
    int pid[MAX_PIDS];
} opts_t;

static void usage(void) {
    fprintf(stderr,
            "usage: bench_sse --url http://127.0.0.1:PORT --job JOB_ID --subscribers N [--live S]\n"
            "                 [--close-timeout S] [--connect-timeout S] [--pid NAME=PID ...] [--json FILE]\n");
    exit(2);
}

static void parse_opts(int argc, char **argv, opts_t *o) {
    memset(o, 0, sizeof *o);
    o->live_s = 10;
    o->close_timeout_s = 60;
    o->connect_timeout_s = 60;
    const char *url = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) usage();
        i++;
        if (!strcmp(a, "--url")) url = v;
        else if (!strcmp(a, "--job")) o->job = v;
        else if (!strcmp(a, "--subscribers")) o->n = atoi(v);
        else if (!strcmp(a, "--live")) o->live_s = atof(v);
        else if (!strcmp(a, "--close-timeout")) o->close_timeout_s = atof(v);
        else if (!strcmp(a, "--connect-timeout")) o->connect_timeout_s = atof(v);
        else if (!strcmp(a, "--json")) o->json_path = v;
        else if (!strcmp(a, "--pid")) {
            const char *eq = strchr(v, '=');
            if (!eq || o->npids == MAX_PIDS) usage();
            o->pid_name[o->npids] = strndup(v, (size_t)(eq - v));
            o->pid[o->npids++] = atoi(eq + 1);
        } else usage();
    }
    if (!url || !o->job || o->n < 1) usage();
    if (sscanf(url, "http://%63[0-9.]:%d", o->host, &o->port) != 2) die("--url must be http://IPV4:PORT");
}

/* ---- CPU time of processes (from /proc/PID/stat) ----------------------------------------- */

static double proc_cpu_s(int pid) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    if (!p) return -1;
    unsigned long utime = 0, stime = 0;
    /* after ") ": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime) != 2) return -1;
    return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

/* Busy and total jiffies of the whole machine (/proc/stat "cpu" line). */
static void machine_cpu(double *busy, double *total) {
    unsigned long long v[10] = {0};
    FILE *f = fopen("/proc/stat", "r");
    *busy = *total = 0;
    if (!f) return;
    if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4],
               &v[5], &v[6], &v[7], &v[8], &v[9]) >= 8) {
        double t = 0;
        for (int i = 0; i < 8; i++) t += (double)v[i];
        *total = t / (double)sysconf(_SC_CLK_TCK);
        *busy = (t - (double)v[3] - (double)v[4]) / (double)sysconf(_SC_CLK_TCK); /* less idle, iowait */
    }
    fclose(f);
}

static double self_cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec * 1e-6;
}

/* ---- the per-event table (indexed by event id - base) ------------------------------------ */

typedef struct {
    int count;       /* subscribers that received it */
    double first, last; /* receive times */
    double stamp;    /* the event's "time" */
    char type[16];
} ev_rec;

static ev_rec *evs;
static int64_t ev_base = -1;
static size_t ev_cap;

static ev_rec *ev_at(int64_t id) {
    if (ev_base < 0) ev_base = id > 1000 ? id - 1000 : 0;
    if (id < ev_base) return NULL; /* never: a stream's first id is its oldest */
    size_t k = (size_t)(id - ev_base);
    if (k >= ev_cap) {
        size_t cap = ev_cap ? ev_cap : 4096;
        while (cap <= k) cap *= 2;
        evs = xrealloc(evs, cap * sizeof *evs);
        memset(evs + ev_cap, 0, (cap - ev_cap) * sizeof *evs);
        ev_cap = cap;
    }
    return &evs[k];
}

/* ---- one subscriber ---------------------------------------------------------------------- */

enum { S_CONNECTING, S_HEADERS, S_CHUNK_SIZE, S_CHUNK_DATA, S_CHUNK_CRLF, S_TRAILER, S_DONE, S_FAILED };

typedef struct {
    int fd;
    int state;
    int http_status;
    size_t req_off;       /* request bytes sent */
    size_t chunk_left;    /* bytes of the current chunk still to come */
    char *line;           /* the partial SSE line (it may span chunks) */
    size_t line_len, line_cap;
    char *hline;          /* the partial framing line (status, headers, chunk sizes) */
    size_t hline_len, hline_cap;
    int64_t cur_id;       /* "id:" of the frame being read, -1 when none */
    double cur_stamp;
    char cur_type[16];
    int64_t last_id;      /* newest event id received */
    int64_t *ids;         /* every event id received, in order */
    size_t n_ids, cap_ids;
    int order_errors;     /* ids not strictly increasing (duplicates, reordering) */
    int heartbeats;
    double connected_at;  /* the response headers arrived */
    char why[96];         /* why it failed */
} sub_t;

static const opts_t *O;
static char request[512];
static size_t request_len;
static int n_connected, n_finished; /* headers seen; done or failed */

static void sub_fail(sub_t *s, const char *why) {
    if (s->state == S_DONE || s->state == S_FAILED) return;
    if (!s->why[0]) snprintf(s->why, sizeof s->why, "%s", why);
    s->state = S_FAILED;
    n_finished++;
}

static void buf_add(char **b, size_t *len, size_t *capp, const char *p, size_t n) {
    if (*len + n + 1 > *capp) {
        size_t cap = *capp ? *capp : 256;
        while (cap < *len + n + 1) cap *= 2;
        *b = xrealloc(*b, cap);
        *capp = cap;
    }
    memcpy(*b + *len, p, n);
    *len += n;
    (*b)[*len] = 0;
}

static void line_add(sub_t *s, const char *p, size_t n) { buf_add(&s->line, &s->line_len, &s->line_cap, p, n); }

/* One complete SSE line (without its newline). */
static void sse_line(sub_t *s, const char *l, size_t n, double t) {
    if (n == 0) { /* the end of a frame */
        if (s->cur_id >= 0) {
            if (s->cur_id <= s->last_id) s->order_errors++;
            s->last_id = s->cur_id;
            if (s->n_ids == s->cap_ids) {
                s->cap_ids = s->cap_ids ? 2 * s->cap_ids : 64;
                s->ids = xrealloc(s->ids, s->cap_ids * sizeof *s->ids);
            }
            s->ids[s->n_ids++] = s->cur_id;
            ev_rec *e = ev_at(s->cur_id);
            if (e) {
                if (!e->count++) {
                    e->first = t;
                    e->stamp = s->cur_stamp;
                    memcpy(e->type, s->cur_type, sizeof e->type);
                }
                e->last = t;
            }
        }
        s->cur_id = -1;
        s->cur_stamp = 0;
        s->cur_type[0] = 0;
        return;
    }
    if (l[0] == ':') {
        s->heartbeats++;
        return;
    }
    if (n > 4 && !memcmp(l, "id: ", 4)) {
        s->cur_id = strtoll(l + 4, NULL, 10);
    } else if (n > 7 && !memcmp(l, "event: ", 7)) {
        snprintf(s->cur_type, sizeof s->cur_type, "%.*s", (int)(n - 7), l + 7);
    } else if (n > 6 && !memcmp(l, "data: ", 6)) {
        /* {"id":N,"type":"...","time":T,"data":{...}}: the first "time" is the event's own */
        const char *p = memmem(l, n, "\"time\":", 7);
        if (p) s->cur_stamp = strtod(p + 7, NULL);
    }
}

/* SSE payload bytes (the data of chunks). */
static void sse_bytes(sub_t *s, const char *p, size_t n, double t) {
    while (n) {
        const char *nl = memchr(p, '\n', n);
        if (!nl) {
            line_add(s, p, n);
            return;
        }
        size_t k = (size_t)(nl - p);
        if (s->line_len) {
            line_add(s, p, k);
            sse_line(s, s->line, s->line_len, t);
            s->line_len = 0;
        } else {
            sse_line(s, p, k, t);
        }
        p += k + 1;
        n -= k + 1;
    }
}

/* Takes one CRLF-terminated line from p/n into s->hline; returns bytes used, and sets *done. */
static size_t take_line(sub_t *s, const char *p, size_t n, int *done) {
    const char *nl = memchr(p, '\n', n);
    *done = nl != NULL;
    size_t k = nl ? (size_t)(nl - p) + 1 : n;
    buf_add(&s->hline, &s->hline_len, &s->hline_cap, p, k);
    if (*done) { /* strip CRLF */
        while (s->hline_len && (s->hline[s->hline_len - 1] == '\n' || s->hline[s->hline_len - 1] == '\r'))
            s->hline[--s->hline_len] = 0;
    }
    return k;
}

/* Bytes from the socket. */
static void sub_bytes(sub_t *s, const char *p, size_t n, double t) {
    while (n && s->state != S_FAILED && s->state != S_DONE) {
        int done;
        size_t k;
        switch (s->state) {
        case S_HEADERS:
            k = take_line(s, p, n, &done);
            p += k, n -= k;
            if (!done) break;
            if (!s->http_status) {
                if (sscanf(s->hline, "HTTP/1.%*d %d", &s->http_status) != 1 || s->http_status != 200) {
                    char why[96];
                    snprintf(why, sizeof why, "status line: %.60s", s->hline);
                    sub_fail(s, why);
                }
            } else if (!strncasecmp(s->hline, "Transfer-Encoding:", 18)) {
                if (!strstr(s->hline, "chunked")) sub_fail(s, "not chunked");
            } else if (s->hline_len == 0) {
                s->state = S_CHUNK_SIZE;
                s->connected_at = t;
                n_connected++;
            }
            s->hline_len = 0;
            break;
        case S_CHUNK_SIZE:
            k = take_line(s, p, n, &done);
            p += k, n -= k;
            if (!done) break;
            {
                char *end;
                unsigned long long sz = strtoull(s->hline, &end, 16);
                if (end == s->hline) {
                    sub_fail(s, "bad chunk size line");
                    break;
                }
                s->hline_len = 0;
                if (sz == 0) s->state = S_TRAILER;
                else {
                    s->chunk_left = (size_t)sz;
                    s->state = S_CHUNK_DATA;
                }
            }
            break;
        case S_CHUNK_DATA: {
            k = n < s->chunk_left ? n : s->chunk_left;
            sse_bytes(s, p, k, t);
            p += k, n -= k;
            s->chunk_left -= k;
            if (!s->chunk_left) s->state = S_CHUNK_CRLF;
            break;
        }
        case S_CHUNK_CRLF:
            if (*p == '\r' || *p == '\n') {
                if (*p == '\n') s->state = S_CHUNK_SIZE;
                p++, n--;
            } else {
                sub_fail(s, "no CRLF after a chunk");
            }
            break;
        case S_TRAILER:
            k = take_line(s, p, n, &done);
            p += k, n -= k;
            if (done && s->hline_len == 0) {
                s->state = S_DONE;
                n_finished++;
            }
            s->hline_len = 0;
            break;
        default: return;
        }
    }
}

/* ---- one blocking request (cancel, the reference list) ----------------------------------- */

/* Sends METHOD PATH with Connection: close; returns the body (malloc'd) and sets *status. */
static char *http_simple(const char *method, const char *path, int *status) {
    *status = 0;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)O->port)};
    inet_pton(AF_INET, O->host, &sa.sin_addr);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa)) {
        if (fd >= 0) close(fd);
        return NULL;
    }
    char req[512];
    int n = snprintf(req, sizeof req, "%s %s HTTP/1.1\r\nHost: %s:%d\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
                     method, path, O->host, O->port);
    if (write(fd, req, (size_t)n) != n) {
        close(fd);
        return NULL;
    }
    size_t len = 0, cap = 65536;
    char *buf = xrealloc(NULL, cap);
    for (;;) {
        if (len + 4096 > cap) buf = xrealloc(buf, cap *= 2);
        ssize_t r = read(fd, buf + len, cap - len - 1);
        if (r <= 0) break;
        len += (size_t)r;
    }
    close(fd);
    buf[len] = 0;
    sscanf(buf, "HTTP/1.%*d %d", status);
    char *body = strstr(buf, "\r\n\r\n");
    if (!body) {
        free(buf);
        return NULL;
    }
    char *out = strdup(body + 4); /* Content-Length bodies only (JSON replies are not chunked) */
    free(buf);
    return out;
}

static char (*ref_types)[32]; /* the reference events' types */

/* The job's stored events: ids into *ids (types into ref_types); returns the count, or -1. */
static long reference_ids(int64_t **ids) {
    *ids = NULL;
    size_t n = 0, cap = 0;
    int64_t after = 0;
    for (;;) {
        char path[256];
        snprintf(path, sizeof path, "/jobs/%s/events?limit=1000&after=%lld", O->job, (long long)after);
        int st;
        char *body = http_simple("GET", path, &st);
        json_t *page = body ? json_loads(body, 0, NULL) : NULL;
        free(body);
        if (st != 200 || !page) {
            json_decref(page);
            return -1;
        }
        size_t i;
        json_t *ev;
        json_array_foreach(json_object_get(page, "data"), i, ev) {
            if (n == cap) {
                cap = cap ? 2 * cap : 1024;
                *ids = xrealloc(*ids, cap * sizeof **ids);
                ref_types = xrealloc(ref_types, cap * sizeof *ref_types);
            }
            const char *type = json_string_value(json_object_get(ev, "type"));
            const char *st = json_string_value(json_object_get(json_object_get(ev, "data"), "status"));
            snprintf(ref_types[n], sizeof ref_types[n], "%s%s%s", type ? type : "?", st ? " " : "", st ? st : "");
            (*ids)[n++] = after = json_integer_value(json_object_get(ev, "id"));
        }
        int more = json_is_true(json_object_get(page, "has_more"));
        json_decref(page);
        if (!more) break;
    }
    return (long)n;
}

/* ---- main -------------------------------------------------------------------------------- */

static void raise_nofile(void) {
    struct rlimit rl;
    if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int main(int argc, char **argv) {
    opts_t o;
    parse_opts(argc, argv, &o);
    O = &o;
    raise_nofile();
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    if ((rlim_t)o.n + 64 > rl.rlim_cur) {
        fprintf(stderr, "bench_sse: %d subscribers need more descriptors than RLIMIT_NOFILE %llu\n", o.n,
                (unsigned long long)rl.rlim_cur);
        return 2;
    }
    request_len = (size_t)snprintf(request, sizeof request,
                                   "GET /jobs/%s/events HTTP/1.1\r\nHost: %s:%d\r\nAccept: text/event-stream\r\n\r\n",
                                   o.job, o.host, o.port);

    sub_t *subs = calloc((size_t)o.n, sizeof *subs);
    if (!subs) die("out of memory");
    int ep = epoll_create1(0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)o.port)};
    inet_pton(AF_INET, o.host, &sa.sin_addr);

    double t_start = now_real();
    double cpu0[MAX_PIDS], self0 = self_cpu_s(), mbusy0 = 0, mtotal0 = 0;
    double cpu1[MAX_PIDS], self1 = 0, mbusy1 = 0, mtotal1 = 0;
    int connect_errors = 0;
    /* Open every connection (non-blocking); the request goes out when the socket is writable. */
    for (int i = 0; i < o.n; i++) {
        sub_t *s = &subs[i];
        s->cur_id = -1;
        s->last_id = -1;
        s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        if (s->fd < 0) {
            sub_fail(s, "socket() failed");
            connect_errors++;
            continue;
        }
        int one = 1;
        setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (connect(s->fd, (struct sockaddr *)&sa, sizeof sa) && errno != EINPROGRESS) {
            char why[96];
            snprintf(why, sizeof why, "connect: %s", strerror(errno));
            sub_fail(s, why);
            connect_errors++;
            close(s->fd);
            s->fd = -1;
            continue;
        }
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = s};
        epoll_ctl(ep, EPOLL_CTL_ADD, s->fd, &ev);
    }

    static char rbuf[1 << 16];
    struct epoll_event evbuf[512];
    enum { P_CONNECT, P_LIVE, P_CLOSE } phase = P_CONNECT;
    double t_all = 0, t_cancel = 0, t_end = 0, deadline = t_start + o.connect_timeout_s;
    int cancel_status = 0;
    for (;;) {
        double t = now_real();
        if (phase == P_CONNECT && (n_connected + n_finished >= o.n || t > deadline)) {
            t_all = t;
            phase = P_LIVE;
            deadline = t + o.live_s;
            for (int k = 0; k < o.npids; k++) cpu0[k] = proc_cpu_s(o.pid[k]);
            self0 = self_cpu_s();
            machine_cpu(&mbusy0, &mtotal0);
            fprintf(stderr, "bench_sse: %d of %d subscribers connected in %.3f s\n", n_connected, o.n, t - t_start);
        } else if (phase == P_LIVE && t > deadline) {
            for (int k = 0; k < o.npids; k++) cpu1[k] = proc_cpu_s(o.pid[k]);
            self1 = self_cpu_s();
            machine_cpu(&mbusy1, &mtotal1);
            t_cancel = now_real();
            char path[256];
            snprintf(path, sizeof path, "/jobs/%s/cancel", o.job);
            free(http_simple("POST", path, &cancel_status));
            phase = P_CLOSE;
            deadline = now_real() + o.close_timeout_s;
        } else if (phase == P_CLOSE && (n_finished >= o.n || t > deadline)) {
            t_end = t;
            break;
        }
        int timeout_ms = (int)((deadline - t) * 1000) + 1;
        if (timeout_ms > 200) timeout_ms = 200;
        int m = epoll_wait(ep, evbuf, 512, timeout_ms);
        double tr = now_real();
        for (int k = 0; k < m; k++) {
            sub_t *s = evbuf[k].data.ptr;
            if (s->state == S_DONE || s->state == S_FAILED) continue;
            if (s->state == S_CONNECTING && (evbuf[k].events & EPOLLOUT)) {
                int err = 0;
                socklen_t el = sizeof err;
                getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &el);
                if (err) {
                    char why[96];
                    snprintf(why, sizeof why, "connect: %s", strerror(err));
                    sub_fail(s, why);
                    connect_errors++;
                    continue;
                }
                ssize_t w = write(s->fd, request + s->req_off, request_len - s->req_off);
                if (w > 0) s->req_off += (size_t)w;
                if (s->req_off == request_len) {
                    s->state = S_HEADERS;
                    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = s};
                    epoll_ctl(ep, EPOLL_CTL_MOD, s->fd, &ev);
                }
            }
            if (evbuf[k].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                for (;;) {
                    ssize_t r = read(s->fd, rbuf, sizeof rbuf);
                    if (r > 0) {
                        sub_bytes(s, rbuf, (size_t)r, tr);
                        if (s->state == S_DONE || s->state == S_FAILED) break;
                        if ((size_t)r < sizeof rbuf) break;
                        continue;
                    }
                    if (r == 0) sub_fail(s, "closed before the last chunk");
                    else if (errno != EAGAIN && errno != EINTR) {
                        char why[96];
                        snprintf(why, sizeof why, "read: %s", strerror(errno));
                        sub_fail(s, why);
                    }
                    break;
                }
                if (s->state == S_DONE || s->state == S_FAILED) {
                    epoll_ctl(ep, EPOLL_CTL_DEL, s->fd, NULL);
                    close(s->fd);
                    s->fd = -1;
                }
            }
        }
    }
    double wall_measured = t_cancel - t_all; /* the CPU split is of the live phase */
    (void)mtotal0;
    (void)mtotal1;

    /* ---- check every subscriber against the stored list ---- */
    int64_t *ref = NULL;
    long nref = reference_ids(&ref);
    int ok = 0, missing = 0, order = 0, not_closed = 0, failed_other = 0, never_connected = 0;
    int lost_final = 0; /* ended cleanly with every event but the last, the terminal status */
    char first_why[400] = "";
    for (int i = 0; i < o.n; i++) {
        sub_t *s = &subs[i];
        int good = 1;
        if (!s->connected_at) {
            never_connected++;
            good = 0;
        } else if (s->order_errors) {
            order++;
            good = 0;
        } else if (nref < 0 || (long)s->n_ids != nref || memcmp(s->ids, ref, (size_t)nref * sizeof *ref)) {
            if (nref > 0 && s->state == S_DONE && (long)s->n_ids == nref - 1 &&
                !memcmp(s->ids, ref, (size_t)(nref - 1) * sizeof *ref) && !strncmp(ref_types[nref - 1], "status ", 7))
                lost_final++;
            else
                missing++;
            good = 0;
        } else if (s->state != S_DONE) {
            if (s->state == S_FAILED) failed_other++;
            else not_closed++;
            good = 0;
        }
        if (good) ok++;
        else if (!first_why[0]) {
            /* the first stored event it lacks (or the first it has that is not stored) */
            char diff[96] = "";
            size_t k = 0;
            while (nref > 0 && k < s->n_ids && k < (size_t)nref && s->ids[k] == ref[k]) k++;
            if (nref > 0 && k < (size_t)nref)
                snprintf(diff, sizeof diff, "; first missing: event %lld (%s, %zu of %ld)", (long long)ref[k],
                         ref_types[k], k + 1, nref);
            else if (k < s->n_ids)
                snprintf(diff, sizeof diff, "; extra event %lld", (long long)s->ids[k]);
            snprintf(first_why, sizeof first_why, "subscriber %d: %s, %zu of %ld events, order errors %d%s%s%s", i,
                     s->state == S_DONE ? "stream ended" : s->state == S_FAILED ? "failed" : "still open", s->n_ids,
                     nref, s->order_errors, diff, s->why[0] ? ": " : "", s->why);
        }
    }

    /* ---- latency of live events ---- */
    double *lat = calloc(ev_cap + 1, sizeof *lat), *spread = calloc(ev_cap + 1, sizeof *spread);
    size_t nl = 0;
    long live_events = 0, events_total = 0, heartbeat_total = 0;
    double first_live = 0, last_live = 0;
    for (size_t k = 0; k < ev_cap; k++) {
        ev_rec *e = &evs[k];
        if (!e->count) continue;
        events_total++;
        if (e->stamp < t_all) continue;
        if (!strcmp(e->type, "status") && e->stamp >= t_cancel) continue; /* the cancel itself */
        live_events++;
        if (!first_live) first_live = e->stamp;
        last_live = e->stamp;
        lat[nl] = (e->last - e->stamp) * 1e3;
        spread[nl++] = (e->last - e->first) * 1e3;
    }
    for (int i = 0; i < o.n; i++) heartbeat_total += subs[i].heartbeats;
    qsort(lat, nl, sizeof *lat, cmp_double);
    qsort(spread, nl, sizeof *spread, cmp_double);
    /* the terminal event: cancel request to the last stream's end */
    double close_ms = (t_end - t_cancel) * 1e3;
    double live_wall = t_cancel - t_all;

    json_t *res = json_pack(
        "{s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:I, s:I, s:f, s:f, s:f, s:I, s:f, s:i,"
        " s:{s:f, s:f, s:f, s:f}, s:{s:f, s:f, s:f}, s:f, s:f, s:I, s:s}",
        "subscribers", o.n, "connected", n_connected, "all_events_ok", ok, "missing_or_extra", missing,
        "out_of_order_or_duplicate", order, "lost_only_the_final_status_event", lost_final, "not_closed", not_closed, "failed", failed_other,
        "never_connected", never_connected, "connect_errors", connect_errors, "reference_events", (json_int_t)nref,
        "live_events", (json_int_t)live_events, "live_seconds", live_wall,
        "live_event_rate_per_s", live_wall > 0 ? (double)live_events / live_wall : 0.0,
        "connect_seconds", t_all - t_start, "frames_received",
        (json_int_t)((long)o.n * (nref > 0 ? nref : 0)),
        "frames_offered_per_s_live", live_wall > 0 ? (double)live_events * ok / live_wall : 0.0,
        "cancel_status", cancel_status,
        "latency_ms_worker_to_last_subscriber", "p50", quantile(lat, nl, 0.5), "p99", quantile(lat, nl, 0.99),
        "max", nl ? lat[nl - 1] : 0.0, "mean", 0.0,
        "fanout_spread_ms_first_to_last_subscriber", "p50", quantile(spread, nl, 0.5), "p99",
        quantile(spread, nl, 0.99), "max", nl ? spread[nl - 1] : 0.0,
        "close_ms_cancel_to_last_stream_end", close_ms, "measured_seconds", t_end - t_all,
        "heartbeat_comments", (json_int_t)heartbeat_total, "first_failure", first_why);
    double sum = 0;
    for (size_t k = 0; k < nl; k++) sum += lat[k];
    json_object_set_new(json_object_get(res, "latency_ms_worker_to_last_subscriber"), "mean",
                        json_real(nl ? sum / (double)nl : 0));
    json_t *cpu = json_object();
    for (int k = 0; k < o.npids; k++)
        json_object_set_new(cpu, o.pid_name[k],
                            json_real(wall_measured > 0 ? (cpu1[k] - cpu0[k]) / wall_measured : 0));
    json_object_set_new(cpu, "bench_sse", json_real(wall_measured > 0 ? (self1 - self0) / wall_measured : 0));
    json_object_set_new(cpu, "machine_busy", json_real(wall_measured > 0 ? (mbusy1 - mbusy0) / wall_measured : 0));
    json_object_set_new(res, "cpu_cores_used_live", cpu);
    (void)first_live;
    (void)last_live;

    char *text = json_dumps(res, JSON_INDENT(2) | JSON_REAL_PRECISION(6));
    printf("%s\n", text);
    if (o.json_path) {
        FILE *f = fopen(o.json_path, "w");
        if (f) {
            fprintf(f, "%s\n", text);
            fclose(f);
        }
    }
    fprintf(stderr,
            "bench_sse: N=%d: %d of %d got all %ld events in order and saw the end (%d lost only the final "
            "status); %ld live events (%.1f/s); worker->last subscriber p50 %.1f ms p99 %.1f ms max %.1f ms; %s\n",
            o.n, ok, o.n, nref, lost_final, live_events, live_wall > 0 ? live_events / live_wall : 0, quantile(lat, nl, 0.5),
            quantile(lat, nl, 0.99), nl ? lat[nl - 1] : 0, first_why[0] ? first_why : "no failure");
    free(text);
    json_decref(res);
    if (ok == o.n && nref > 0) return 0;
    return ok + lost_final == o.n && nref > 0 ? 3 : 1;
}
