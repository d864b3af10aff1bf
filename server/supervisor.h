/* supervisor.h — the scheduler and worker supervisor of `difftune serve` (DESIGN.md section 2).
 *
 * Runs on one libuv loop (the serve process's main thread). It owns dispatch: whenever a device
 * slot is free it claims the next queued job for that device from the store (priority, then
 * age), spawns `difftune run-job <id> --data-dir DIR --device DEV`, reads the worker's JSON event
 * lines from its stdout, stores them (events, progress, metrics, artifacts) and calls the notify
 * hook so that stream subscribers wake. When the worker exits it ends the attempt:
 *     exit 0                      -> succeeded
 *     exit 1 (training failed)    -> failed, error.code from the worker's "error" event
 *                                    (nan_loss, oom, disk_full, training_failed, ...): at once,
 *                                    whatever attempts are left, since the worker saw the cause
 *                                    and another attempt on the same settings meets it again
 *     exit 2 (rejected input)     -> failed, error.code "invalid_input"
 *     exit 3 (stopped on request) -> cancelled when a cancel was requested; queued again without
 *                                    spending an attempt when the server is shutting down
 *     killed by a signal, other   -> store_job_requeue "worker_died": resumes from its newest
 *                                    checkpoint, or fails once max_attempts are spent
 * Cancel of a running job (the API marks cancel_requested, then calls supervisor_wake): SIGTERM to
 * the worker, SIGKILL after the grace period.
 * Checkpoint retention: workers delete no checkpoint; after each checkpoint and evaluation a
 * worker reports (and after an unpin, supervisor_checkpoints_changed) the supervisor deletes
 * what the store's retention rule no longer keeps (store.h, "checkpoint retention").
 * On start it reconciles: jobs the store says are running have no live worker (this process just
 * started), so they are requeued (store_job_reconcile, "server_restarted").
 */
#ifndef DT_SUPERVISOR_H
#define DT_SUPERVISOR_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include <uv.h>

#include "store.h"

typedef struct dt_supervisor dt_supervisor;

/* Workers find the server's pid in this environment variable: `run-job` exits at once when its
 * parent is another process (the server died before the worker armed PR_SET_PDEATHSIG). */
#define SUPERVISOR_PARENT_PID_ENV "DIFFTUNE_SERVER_PID"

/* Called on the loop thread after the supervisor stored one or more events of job_id (also
 * after status changes it made: claim, finish, requeue). Must not block. */
typedef void (*supervisor_notify_fn)(void *ctx, const char *job_id);

typedef struct {
    const char *data_dir;      /* the server's data directory (jobs/<id>/, banks/ live there) */
    const char *exe;           /* path of the difftune binary to spawn as `run-job` */
    const char *const *devices;/* device names ("cpu", "cuda:0", ...), n_devices >= 1 */
    int n_devices;
    int slots_per_device;      /* concurrent workers per device, >= 0 (0: jobs only queue) */
    int cancel_grace_ms;       /* SIGTERM -> SIGKILL delay; 0 = 10000 */
    int log_every;             /* --log-every passed to workers; 0 = 10 */
    long min_free_mb;          /* --min-free-mb passed to workers (their checkpoint free-space
                                * reserve, MiB); 0 = none */
    dt_store *store;           /* borrowed; outlives the supervisor */
    supervisor_notify_fn notify;
    void *notify_ctx;
} dt_supervisor_opts;

/* Reconciles the store, then starts dispatching on loop (an async handle for wakes and a 1 s
 * timer that also retries dispatch). The options' strings and arrays are copied. Returns 0, or
 * -1 with a message in err. */
int supervisor_start(uv_loop_t *loop, const dt_supervisor_opts *opts, dt_supervisor **out,
                     char *err, size_t errlen);

/* Thread-safe: something changed (a job was created, cancelled or retried); dispatch and cancel
 * checks run soon on the loop thread. Callable until supervisor_free (a no-op once the
 * supervisor has shut down). */
void supervisor_wake(dt_supervisor *s);

/* Thread-safe: the pins of job_id's checkpoints changed (the API unpinned one); checkpoint
 * retention runs for the job soon on the loop thread, so a checkpoint nothing keeps any more is
 * deleted without waiting for the job's next checkpoint (a finished job has none). */
void supervisor_checkpoints_changed(dt_supervisor *s, const char *job_id);

/* Thread-safe: {"data":[{"device","slot","status":"idle"|"busy","job":id|null,"pid":n|null,
 * "started_at":t|null}...]} — one entry per device slot. New reference. */
json_t *supervisor_workers_json(dt_supervisor *s);

typedef struct {
    int slots, busy;           /* device slots and how many run a worker now */
    uint64_t spawned;          /* workers started since the server started */
    uint64_t died;             /* workers that ended by a signal (other than the SIGTERM the
                                * supervisor sent) or an exit status run-job never uses */
    uint64_t events;           /* worker event lines stored */
} dt_supervisor_stats;

/* Thread-safe counters for GET /metrics. */
void supervisor_stats(dt_supervisor *s, dt_supervisor_stats *out);

/* Loop thread: stops dispatching, sends SIGTERM to every worker (they write a checkpoint and
 * exit 3, and their jobs go back to the queue without spending an attempt: store_job_release),
 * SIGKILLs what is left after grace_ms (<= 0: at once; a killed worker's attempt is spent, as
 * for any worker that died), and calls done(ctx) on the loop thread once no worker is left and
 * every handle is closed. Calling it again (a second Ctrl-C, grace_ms 0) only shortens the
 * grace period; done and ctx of the first call stand. */
void supervisor_shutdown(dt_supervisor *s, int grace_ms, void (*done)(void *ctx), void *ctx);

/* Frees the supervisor; NULL is a no-op. Only after done was called: a supervisor that
 * started owns handles on the loop, so even one that never spawned a worker is shut down (and
 * the loop run until done) first. No thread may call supervisor_wake, _workers_json or _stats
 * any more. */
void supervisor_free(dt_supervisor *s);

#endif
