/* supervisor.c — dispatch of queued jobs to device slots, one `difftune run-job` worker process
 * per busy slot, stopping workers (cancel, shutdown) and the supervisor's life cycle
 * (supervisor.h). A worker's event lines go to supervisor_events.c, the end of its attempt to
 * supervisor_attempt.c.
 *
 * Everything here runs on the serve process's libuv loop except supervisor_wake,
 * supervisor_workers_json and supervisor_stats, which HTTP threads call: they touch only the
 * async handle and the slot views and counters, all under sup->mu.
 *
 * A worker's attempt ends once BOTH its exit and the end of its stdout have been seen (libuv
 * may report the exit before the pipe is drained, and the last lines matter: the error event of
 * a failure, the checkpoint of a stop). Its handles are then closed and its memory is freed in
 * the last close callback.
 */
#include "supervisor_internal.h"
#include "clock.h"
#include "fsutil.h"
#include "layout.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define SUP_TICK_MS 1000             /* dispatch and cancel checks even without a wake */
#define SUP_DEFAULT_GRACE_MS 10000
#define SUP_DEFAULT_LOG_EVERY 10
#define SUP_DRAIN_MS 5000            /* how long stdout may stay open after the worker exited */

static void sup_dispatch(dt_supervisor *s);
static void sup_maybe_done(dt_supervisor *s);

/* ---- small helpers --------------------------------------------------------------------------- */

void sup_log(const char *fmt, ...) {
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "difftune serve: %s\n", msg);
}

void sup_notify(dt_supervisor *s, const char *job_id) {
    if (s->notify) s->notify(s->notify_ctx, job_id);
}

void sup_job_log(dt_supervisor *s, const char *job_id, const char *fmt, ...) {
    char path[PATH_MAX], stamp[32], msg[1024];
    snprintf(path, sizeof path, "%s/%s/%s/%s", s->data_dir, DT_LAYOUT_JOBS, job_id,
             DT_LAYOUT_WORKER_LOG);
    time_t now = time(NULL);
    struct tm tm;
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &tm));
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    FILE *f = fopen(path, "ae");
    if (!f) return;
    fprintf(f, "==== %s difftune serve: %s\n", stamp, msg);
    fclose(f);
}

/* The workers' environment: ours without any inherited server pid, plus our own pid. NULL when
 * out of memory. Free with sup_env_free. */
static char **sup_env_build(void) {
    const size_t key_len = strlen(SUPERVISOR_PARENT_PID_ENV);
    size_t n = 0;
    while (environ && environ[n]) n++;
    char **env = calloc(n + 2, sizeof *env);
    if (!env) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (!strncmp(environ[i], SUPERVISOR_PARENT_PID_ENV, key_len) && environ[i][key_len] == '=')
            continue;
        if (!(env[k++] = strdup(environ[i]))) goto oom;
    }
    char pid_var[64];
    snprintf(pid_var, sizeof pid_var, "%s=%ld", SUPERVISOR_PARENT_PID_ENV, (long)getpid());
    if (!(env[k] = strdup(pid_var))) goto oom;
    return env;
oom:
    for (size_t i = 0; env[i]; i++) free(env[i]);
    free(env);
    return NULL;
}

static void sup_env_free(char **env) {
    for (size_t i = 0; env && env[i]; i++) free(env[i]);
    free(env);
}

/* ---- the slot views other threads read ------------------------------------------------------- */

static void sup_view_set(dt_supervisor *s, sup_slot *slot, const char *job_id, long pid) {
    uv_mutex_lock(&s->mu);
    snprintf(slot->view.job, sizeof slot->view.job, "%s", job_id);
    slot->view.pid = pid;
    slot->view.started_at = dt_now();
    s->stats.busy++;
    s->stats.spawned++;
    uv_mutex_unlock(&s->mu);
}

static void sup_view_clear(dt_supervisor *s, sup_slot *slot, int died) {
    uv_mutex_lock(&s->mu);
    memset(&slot->view, 0, sizeof slot->view);
    s->stats.busy--;
    if (died) s->stats.died++;
    uv_mutex_unlock(&s->mu);
}


static void sup_worker_on_closed(uv_handle_t *h) {
    sup_worker *w = h->data;
    if (--w->open_handles > 0) return;
    dt_supervisor *s = w->sup;
    free(w->line);
    free(w);
    s->n_workers--;
    sup_maybe_done(s);
}

static void sup_worker_close(sup_worker *w) {
    uv_close((uv_handle_t *)&w->proc, sup_worker_on_closed);
    uv_close((uv_handle_t *)&w->out, sup_worker_on_closed);
    uv_close((uv_handle_t *)&w->timer, sup_worker_on_closed);
}

/* Ends the attempt once both the exit and the end of stdout were seen: store, free the slot,
 * close the handles, dispatch again. */
static void sup_worker_maybe_end(sup_worker *w) {
    if (!w->exited || !w->eof || w->ended) return;
    w->ended = 1;
    dt_supervisor *s = w->sup;
    int died = sup_attempt_end(w);
    sup_notify(s, w->job_id);
    sup_view_clear(s, w->slot, died);
    w->slot->worker = NULL;
    w->slot = NULL;
    sup_worker_close(w);
    sup_dispatch(s);
}

static void sup_on_output_end(sup_worker *w) {
    if (w->eof) return;
    w->eof = 1;
    uv_read_stop((uv_stream_t *)&w->out);
    sup_events_flush(w);
    sup_worker_maybe_end(w);
}

static void sup_on_drain_timeout(uv_timer_t *t) {
    sup_worker *w = t->data;
    sup_log("job %s: the worker exited but its output stayed open; closing it", w->job_id);
    sup_on_output_end(w);
}

static void sup_on_exit(uv_process_t *p, int64_t exit_status, int term_signal) {
    sup_worker *w = p->data;
    w->exited = 1;
    w->exit_status = exit_status;
    w->term_signal = term_signal;
    uv_timer_stop(&w->timer);
    if (!w->eof) uv_timer_start(&w->timer, sup_on_drain_timeout, SUP_DRAIN_MS, 0);
    sup_worker_maybe_end(w);
}

static void sup_on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    sup_worker *w = h->data;
    (void)suggested;
    buf->base = w->buf;
    buf->len = sizeof w->buf;
}

static void sup_on_read(uv_stream_t *stream, ssize_t n, const uv_buf_t *buf) {
    sup_worker *w = stream->data;
    if (n > 0) {
        sup_events_feed(w, buf->base, (size_t)n);
        return;
    }
    if (n == 0) return; /* nothing this time (EAGAIN) */
    if (n != UV_EOF)
        sup_log("job %s: reading the worker's output failed: %s", w->job_id, uv_strerror((int)n));
    sup_on_output_end(w);
}

/* ---- stopping workers ------------------------------------------------------------------------ */

/* SIGKILL to the worker's whole process group (it leads its own session), so nothing it left
 * behind keeps its stdout open. */
static void sup_worker_kill(sup_worker *w) {
    int r = uv_kill(-uv_process_get_pid(&w->proc), SIGKILL);
    if (r) r = uv_process_kill(&w->proc, SIGKILL);
    if (r && r != UV_ESRCH) sup_log("job %s: SIGKILL failed: %s", w->job_id, uv_strerror(r));
}

static void sup_on_grace_over(uv_timer_t *t) {
    sup_worker *w = t->data;
    if (w->exited || w->kill_sent) return;
    w->kill_sent = 1;
    if (w->grace_ms > 0)
        sup_log("job %s: the worker did not stop within %d ms; sending SIGKILL", w->job_id,
                w->grace_ms);
    else
        sup_log("job %s: sending SIGKILL", w->job_id);
    sup_worker_kill(w);
}

/* SIGTERM once (the worker checkpoints and exits 3), SIGKILL if it is still alive after
 * grace_ms; a shorter grace replaces a longer one already running. */
static void sup_worker_stop(sup_worker *w, int grace_ms) {
    if (w->exited || w->kill_sent) return;
    if (!w->term_sent) {
        w->term_sent = 1;
        int r = uv_process_kill(&w->proc, SIGTERM);
        if (r && r != UV_ESRCH) sup_log("job %s: SIGTERM failed: %s", w->job_id, uv_strerror(r));
    }
    if (uv_is_active((uv_handle_t *)&w->timer) &&
        uv_timer_get_due_in(&w->timer) <= (uint64_t)grace_ms)
        return;
    w->grace_ms = grace_ms;
    uv_timer_start(&w->timer, sup_on_grace_over, (uint64_t)grace_ms, 0);
}

/* SIGTERM to every worker whose job has a cancel request. */
static void sup_check_cancels(dt_supervisor *s) {
    for (int i = 0; i < s->n_slots; i++) {
        sup_worker *w = s->slots[i].worker;
        if (!w || w->exited || w->term_sent) continue;
        json_t *job = NULL;
        char err[512];
        if (store_job_get(s->store, w->job_id, &job, err, sizeof err)) {
            sup_log("job %s: reading it for a cancel check failed: %s", w->job_id, err);
            continue;
        }
        if (json_is_true(json_object_get(job, "cancel_requested"))) {
            sup_log("job %s: cancel requested; stopping its worker", w->job_id);
            sup_worker_stop(w, s->grace_ms);
        }
        json_decref(job);
    }
}

/* ---- starting workers ------------------------------------------------------------------------ */

/* Creates DIR/jobs/<id>/log/, resolves the job directory into w->job_dir and opens the worker
 * log for appending. Returns the descriptor, or -1 with a message. */
static int sup_open_job_dir(dt_supervisor *s, sup_worker *w, const char *device, char *msg,
                            size_t msglen) {
    char dir[PATH_MAX], log_path[PATH_MAX + 64];
    snprintf(dir, sizeof dir, "%s/%s/%s", s->data_dir, DT_LAYOUT_JOBS, w->job_id);
    snprintf(log_path, sizeof log_path, "%s/%s", dir, DT_LAYOUT_WORKER_LOG);
    char *slash = strrchr(log_path, '/');
    *slash = '\0';
    /* mkdir -p; on failure its message names the folder it could not create */
    int made = fs_mkdirs(log_path, msg, msglen);
    *slash = '/';
    if (made != 0) return -1;
    if (!realpath(dir, w->job_dir)) {
        snprintf(msg, msglen, "cannot create the job directory %s: %s", dir, strerror(errno));
        return -1;
    }
    sup_job_log(s, w->job_id, "starting a worker on %s", device);
    int fd = open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        snprintf(msg, msglen, "cannot open the worker log %s: %s", log_path, strerror(errno));
    return fd;
}

/* Spawns the worker process with stdout on w->out and stderr on log_fd. Returns a uv error. */
static int sup_spawn(dt_supervisor *s, sup_worker *w, const char *device, int log_fd) {
    char log_every[24], min_free[24];
    snprintf(log_every, sizeof log_every, "%d", s->log_every);
    snprintf(min_free, sizeof min_free, "%ld", s->min_free_mb);
    char *args[] = {s->exe, "run-job", w->job_id, "--data-dir", s->data_dir, "--device",
                    (char *)device, "--log-every", log_every, "--min-free-mb", min_free, NULL};
    uv_stdio_container_t stdio[3];
    memset(stdio, 0, sizeof stdio);
    stdio[0].flags = UV_IGNORE; /* /dev/null */
    stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    stdio[1].data.stream = (uv_stream_t *)&w->out;
    stdio[2].flags = UV_INHERIT_FD;
    stdio[2].data.fd = log_fd;
    uv_process_options_t po;
    memset(&po, 0, sizeof po);
    po.exit_cb = sup_on_exit;
    po.file = s->exe;
    po.args = args;
    po.env = s->env;
    /* its own session: a Ctrl-C at the server's terminal reaches the server, which stops the
     * workers itself (a worker stopped behind its back would be charged an attempt) */
    po.flags = UV_PROCESS_DETACHED;
    po.stdio_count = 3;
    po.stdio = stdio;
    return uv_spawn(s->loop, &w->proc, &po);
}

/* A job the supervisor claimed but could not start goes back through requeue (which spends the
 * attempt, so a binary that cannot start fails jobs instead of looping). */
static void sup_spawn_failed(dt_supervisor *s, const char *job_id, const char *msg) {
    char err[512];
    dt_job_status st = DT_JOB_QUEUED;
    sup_log("job %s: %s", job_id, msg);
    if (store_job_requeue(s->store, job_id, "spawn_failed", msg, &st, err, sizeof err))
        sup_log("job %s: requeueing it failed: %s", job_id, err);
    sup_notify(s, job_id);
}

/* Starts the worker of a claimed job in slot. Returns 0, or -1 when it could not start (the
 * job was requeued). */
static int sup_worker_start(dt_supervisor *s, sup_slot *slot, const char *job_id) {
    const char *device = s->devices[slot->device];
    char msg[PATH_MAX + 256];
    sup_worker *w = calloc(1, sizeof *w);
    if (!w) {
        sup_spawn_failed(s, job_id, "out of memory for a worker");
        return -1;
    }
    w->sup = s;
    snprintf(w->job_id, sizeof w->job_id, "%s", job_id);
    int log_fd = sup_open_job_dir(s, w, device, msg, sizeof msg);
    if (log_fd < 0) {
        free(w);
        sup_spawn_failed(s, job_id, msg);
        return -1;
    }
    w->proc.data = w->out.data = w->timer.data = w;
    /* neither can fail on Unix: libuv returns 0 unconditionally */
    if (uv_pipe_init(s->loop, &w->out, 0) != 0 || uv_timer_init(s->loop, &w->timer) != 0)
        abort();
    int r = sup_spawn(s, w, device, log_fd);
    close(log_fd);
    w->open_handles = 3;
    s->n_workers++;
    if (r != 0) {
        /* the process handle is initialised even when the spawn failed: close it too */
        snprintf(msg, sizeof msg, "cannot start the worker %s: %s", s->exe, uv_strerror(r));
        w->ended = 1;
        sup_worker_close(w);
        sup_job_log(s, job_id, "%s", msg);
        sup_spawn_failed(s, job_id, msg);
        return -1;
    }
    long pid = (long)uv_process_get_pid(&w->proc);
    w->slot = slot;
    slot->worker = w;
    sup_view_set(s, slot, job_id, pid);
    sup_log("job %s: worker pid %ld started on %s", job_id, pid, device);
    r = uv_read_start((uv_stream_t *)&w->out, sup_on_alloc, sup_on_read);
    if (r != 0) {
        /* unread, it would block on a full pipe: end it, and the attempt, the usual way */
        sup_log("job %s: cannot read the worker's output (%s); killing it", job_id,
                uv_strerror(r));
        w->eof = 1;
        sup_worker_kill(w);
    }
    return 0;
}

/* Fills free slots with queued jobs, device by device. */
static void sup_dispatch(dt_supervisor *s) {
    if (s->stopping) return;
    for (int d = 0; d < s->n_devices; d++) {
        for (int k = 0; k < s->slots_per_device; k++) {
            sup_slot *slot = &s->slots[d * s->slots_per_device + k];
            if (slot->worker) continue;
            char id[DT_STORE_ID_MAX], err[512];
            int rc = store_job_claim(s->store, s->devices[d], id, err, sizeof err);
            if (rc < 0) {
                sup_log("claiming a job for %s failed: %s", s->devices[d], err);
                return; /* the store is in trouble: try again at the next tick */
            }
            if (rc == 0) break; /* nothing waits for this device */
            sup_notify(s, id);
            if (sup_worker_start(s, slot, id) != 0) return; /* retry at the next tick */
        }
    }
}

static void sup_pass(dt_supervisor *s) {
    sup_retention_pending(s);
    sup_check_cancels(s);
    sup_dispatch(s);
}

static void sup_on_wake(uv_async_t *a) {
    sup_pass(a->data);
}

static void sup_on_tick(uv_timer_t *t) {
    sup_pass(t->data);
}

/* ---- life cycle ------------------------------------------------------------------------------ */

static void sup_destroy(dt_supervisor *s) {
    for (int d = 0; s->devices && d < s->n_devices; d++) free(s->devices[d]);
    free(s->devices);
    free(s->data_dir);
    free(s->exe);
    free(s->slots);
    free(s->retention_jobs);
    sup_env_free(s->env);
    uv_mutex_destroy(&s->mu);
    free(s);
}

/* Copies the options; returns -1 with a message when they are unusable or memory runs out. */
static int sup_copy_opts(dt_supervisor *s, const dt_supervisor_opts *o, char *err,
                         size_t errlen) {
    if (o->n_devices < 1 || o->slots_per_device < 0 || o->cancel_grace_ms < 0 ||
        o->log_every < 0) {
        snprintf(err, errlen, "the supervisor needs at least one device, and non-negative slot "
                 "counts, grace and log intervals");
        return -1;
    }
    s->store = o->store;
    s->n_devices = o->n_devices;
    s->slots_per_device = o->slots_per_device;
    s->grace_ms = o->cancel_grace_ms ? o->cancel_grace_ms : SUP_DEFAULT_GRACE_MS;
    s->log_every = o->log_every ? o->log_every : SUP_DEFAULT_LOG_EVERY;
    s->min_free_mb = o->min_free_mb > 0 ? o->min_free_mb : 0;
    s->notify = o->notify;
    s->notify_ctx = o->notify_ctx;
    s->data_dir = strdup(o->data_dir);
    s->exe = strdup(o->exe);
    s->devices = calloc((size_t)o->n_devices, sizeof *s->devices);
    s->n_slots = o->n_devices * o->slots_per_device;
    s->slots = calloc((size_t)s->n_slots + 1, sizeof *s->slots); /* + 1: never calloc(0) */
    s->env = sup_env_build();
    int ok = s->data_dir && s->exe && s->devices && s->slots && s->env;
    for (int d = 0; ok && d < o->n_devices; d++) {
        assert(o->devices[d]);
        ok = (s->devices[d] = strdup(o->devices[d])) != NULL;
    }
    if (!ok) {
        snprintf(err, errlen, "out of memory starting the supervisor");
        return -1;
    }
    for (int i = 0; i < s->n_slots; i++) {
        s->slots[i].device = i / o->slots_per_device;
        s->slots[i].index = i % o->slots_per_device;
    }
    s->stats.slots = s->n_slots;
    return 0;
}

static void sup_on_failed_start_closed(uv_handle_t *h) {
    sup_destroy(h->data);
}

int supervisor_start(uv_loop_t *loop, const dt_supervisor_opts *opts, dt_supervisor **out,
                     char *err, size_t errlen) {
    assert(loop && opts && out && opts->store && opts->data_dir && opts->exe && opts->devices);
    *out = NULL;
    dt_supervisor *s = calloc(1, sizeof *s);
    if (!s || uv_mutex_init(&s->mu) != 0) {
        free(s);
        snprintf(err, errlen, "out of memory starting the supervisor");
        return -1;
    }
    s->loop = loop;
    if (sup_copy_opts(s, opts, err, errlen)) {
        sup_destroy(s);
        return -1;
    }
    /* this process just started, so no job the store calls running has a live worker */
    char serr[512];
    int n = store_job_reconcile(s->store, NULL, 0, "server_restarted",
                                "the server restarted while the job was running", serr,
                                sizeof serr);
    if (n < 0) {
        snprintf(err, errlen, "reconciling the jobs left running: %s", serr);
        sup_destroy(s);
        return -1;
    }
    if (n > 0) sup_log("%d job%s left running by the previous server went back to the queue",
                       n, n == 1 ? "" : "s");
    s->wake.data = s->tick.data = s;
    int r = uv_async_init(loop, &s->wake, sup_on_wake);
    if (r) {
        snprintf(err, errlen, "cannot create the supervisor's wake handle: %s", uv_strerror(r));
        sup_destroy(s);
        return -1;
    }
    r = uv_timer_init(loop, &s->tick);
    if (r == 0) r = uv_timer_start(&s->tick, sup_on_tick, 0, SUP_TICK_MS);
    if (r) {
        snprintf(err, errlen, "cannot start the supervisor's timer: %s", uv_strerror(r));
        uv_close((uv_handle_t *)&s->wake, sup_on_failed_start_closed);
        return -1;
    }
    s->handles_open = 2;
    *out = s;
    return 0;
}

void supervisor_wake(dt_supervisor *s) {
    assert(s);
    uv_mutex_lock(&s->mu);
    if (!s->wake_closed) uv_async_send(&s->wake);
    uv_mutex_unlock(&s->mu);
}

json_t *supervisor_workers_json(dt_supervisor *s) {
    assert(s);
    json_t *data = json_array();
    uv_mutex_lock(&s->mu);
    for (int i = 0; i < s->n_slots; i++) {
        const sup_slot *slot = &s->slots[i];
        int busy = slot->view.job[0] != '\0';
        json_array_append_new(data, json_pack(
            "{s:s, s:i, s:s, s:o, s:o, s:o}", "device", s->devices[slot->device], "slot",
            slot->index, "status", busy ? "busy" : "idle",
            "job", busy ? json_string(slot->view.job) : json_null(),
            "pid", busy ? json_integer(slot->view.pid) : json_null(),
            "started_at", busy ? json_real(slot->view.started_at) : json_null()));
    }
    uv_mutex_unlock(&s->mu);
    return json_pack("{s:o}", "data", data);
}

void supervisor_stats(dt_supervisor *s, dt_supervisor_stats *out) {
    assert(s && out);
    uv_mutex_lock(&s->mu);
    *out = s->stats;
    uv_mutex_unlock(&s->mu);
}

static void sup_on_own_closed(uv_handle_t *h) {
    dt_supervisor *s = h->data;
    if (--s->handles_open == 0 && s->done) s->done(s->done_ctx);
}

/* At shutdown, once the last worker is freed: close the wake and tick handles, then done. */
static void sup_maybe_done(dt_supervisor *s) {
    if (!s->stopping || s->n_workers > 0 || s->closing) return;
    s->closing = 1;
    uv_mutex_lock(&s->mu);
    s->wake_closed = 1; /* from now on supervisor_wake is a no-op */
    uv_mutex_unlock(&s->mu);
    uv_close((uv_handle_t *)&s->wake, sup_on_own_closed);
    uv_close((uv_handle_t *)&s->tick, sup_on_own_closed);
}

void supervisor_shutdown(dt_supervisor *s, int grace_ms, void (*done)(void *ctx), void *ctx) {
    assert(s);
    if (!s->stopping) {
        s->stopping = 1;
        s->done = done;
        s->done_ctx = ctx;
        uv_timer_stop(&s->tick);
    }
    int grace = grace_ms > 0 ? grace_ms : 0;
    int busy = 0;
    for (int i = 0; i < s->n_slots; i++) {
        sup_worker *w = s->slots[i].worker;
        if (!w) continue;
        busy++;
        sup_worker_stop(w, grace);
    }
    if (busy) sup_log("stopping %d worker%s (SIGKILL after %d ms)", busy, busy == 1 ? "" : "s",
                      grace);
    sup_maybe_done(s);
}

void supervisor_free(dt_supervisor *s) {
    if (!s) return;
    assert(s->n_workers == 0 && s->handles_open == 0);
    sup_destroy(s);
}
