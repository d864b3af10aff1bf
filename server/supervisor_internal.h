/* supervisor_internal.h — what the supervisor's files share (private to server/supervisor*.c).
 *
 *   supervisor.c          dispatch, spawning workers, stopping them, the life cycle
 *   supervisor_events.c   a worker's stdout: event lines into the store
 *   supervisor_attempt.c  the end of an attempt: exit status or signal into a job status
 *   supervisor_retention.c  checkpoint retention: deleting what the store no longer keeps
 *
 * All of it runs on the serve process's loop thread, except what supervisor.h marks
 * thread-safe; fields other threads read are marked "under mu".
 */
#ifndef DT_SUPERVISOR_INTERNAL_H
#define DT_SUPERVISOR_INTERNAL_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "supervisor.h"

#define SUP_READ_CHUNK 65536 /* one read of a worker's stdout */

typedef struct sup_worker sup_worker;

/* What other threads may read of a slot (guarded by dt_supervisor.mu). */
typedef struct {
    char job[DT_STORE_ID_MAX]; /* "" = idle */
    long pid;
    double started_at;
} sup_slot_view;

typedef struct {
    int device;         /* index into dt_supervisor.devices */
    int index;          /* slot number within its device */
    sup_worker *worker; /* loop thread only; NULL = free */
    sup_slot_view view;
} sup_slot;

/* One worker process and the attempt it runs; freed when its last handle is closed. */
struct sup_worker {
    dt_supervisor *sup;
    sup_slot *slot;               /* NULL once the attempt has ended */
    char job_id[DT_STORE_ID_MAX];
    char job_dir[PATH_MAX];       /* realpath of DIR/jobs/<id>: artifacts must lie inside */
    uv_process_t proc;
    uv_pipe_t out;                /* the worker's stdout */
    uv_timer_t timer;             /* SIGKILL after the grace period; after exit, drain limit */
    int open_handles;             /* freed when the last one is closed */
    int exited, eof, ended;
    int64_t exit_status;
    int term_signal;
    int term_sent, kill_sent;
    int grace_ms;                 /* of the SIGTERM sent */
    char *line;                   /* a partial event line carried across reads */
    size_t line_len, line_cap;
    int line_dropping;            /* inside an overlong line: skip to its newline */
    char error_code[64];          /* of the last "error" event */
    char error_message[1024];
    char buf[SUP_READ_CHUNK];
};

struct dt_supervisor {
    uv_loop_t *loop;
    dt_store *store;
    char *data_dir, *exe;
    char **devices;
    int n_devices, slots_per_device;
    int grace_ms, log_every;
    long min_free_mb;
    supervisor_notify_fn notify;
    void *notify_ctx;
    char **env;                   /* the environment of workers: ours + the server pid */
    sup_slot *slots;
    int n_slots;
    uv_async_t wake;
    uv_timer_t tick;
    int handles_open;             /* wake and tick until closed at shutdown */
    int n_workers;                /* worker structs not yet freed */
    int stopping, closing;
    void (*done)(void *ctx);
    void *done_ctx;
    uv_mutex_t mu;                /* guards slots[].view, stats, wake_closed, retention_jobs */
    int wake_closed;
    char (*retention_jobs)[DT_STORE_ID_MAX]; /* jobs to prune soon (supervisor_checkpoints_changed) */
    int n_retention, cap_retention;
    dt_supervisor_stats stats;
};

/* ---- supervisor.c ---- */

/* Prints one line, prefixed "difftune serve: ", to stderr (the server's log). Any thread. */
void sup_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Appends one line, stamped with the UTC time, to DIR/jobs/<job_id>/log/worker.log. Best
 * effort: the log is for people, a failure to write it changes nothing else. */
void sup_job_log(dt_supervisor *s, const char *job_id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Calls the notify hook of the options (if any) for job_id. Loop thread. */
void sup_notify(dt_supervisor *s, const char *job_id);

/* ---- supervisor_events.c ---- */

/* Splits n bytes the worker wrote to stdout into lines (a line may span calls; w->line carries
 * the partial one) and stores each event line. Lines over 1 MiB are dropped, with a warning
 * stored as a log event. An "error" event is also kept in w->error_code/error_message for
 * sup_attempt_end. */
void sup_events_feed(sup_worker *w, const char *data, size_t n);

/* At the end of the worker's stdout: stores the last line when it had no newline, and empties
 * w->line. */
void sup_events_flush(sup_worker *w);

/* ---- supervisor_retention.c ---- */

/* Applies checkpoint retention to job_id: store_checkpoint_prune forgets the checkpoints that
 * nothing keeps, then their files (model and state) are deleted, and the state files of kept
 * checkpoints outside the newest. Failures are logged; an unknown job is a no-op. */
void sup_retention_apply(dt_supervisor *s, const char *job_id);

/* Applies retention to every job supervisor_checkpoints_changed queued. */
void sup_retention_pending(dt_supervisor *s);

/* ---- supervisor_attempt.c ---- */

/* Records in the store how w's attempt ended (the exit table of supervisor.h) from
 * w->exit_status, w->term_signal, the signals the supervisor sent and the last error event;
 * logs it to the server's and the job's log. Returns 1 when the worker died (counted in
 * stats), else 0. Call once, after both the exit and the end of stdout were seen. */
int sup_attempt_end(sup_worker *w);

#endif
