/* supervisor_attempt.c — the end of a worker's attempt: its exit status or signal, the signals
 * the supervisor sent and its last error event become the job's next status in the store (the
 * exit table of supervisor.h). Runs on the loop thread.
 */
#include "supervisor_internal.h"

#include <signal.h>
#include <stdio.h>

/* The name of the usual signals, for the logs. */
static const char *sup_signal_name(int sig) {
    switch (sig) {
    case SIGKILL: return "SIGKILL";
    case SIGTERM: return "SIGTERM";
    case SIGINT: return "SIGINT";
    case SIGHUP: return "SIGHUP";
    case SIGQUIT: return "SIGQUIT";
    case SIGSEGV: return "SIGSEGV";
    case SIGBUS: return "SIGBUS";
    case SIGABRT: return "SIGABRT";
    case SIGFPE: return "SIGFPE";
    case SIGILL: return "SIGILL";
    case SIGPIPE: return "SIGPIPE";
    default: return "a signal";
    }
}

/* Worker stopped on request (exit 3, or killed by the SIGTERM we sent before it could catch
 * it): cancelled when asked for, back in the queue uncharged at shutdown, else requeued. */
static int sup_end_stopped(sup_worker *w, char *outcome, size_t outlen, char *err,
                           size_t errlen) {
    dt_supervisor *s = w->sup;
    json_t *job = NULL;
    int cancel = store_job_get(s->store, w->job_id, &job, err, errlen) == DT_STORE_OK &&
                 json_is_true(json_object_get(job, "cancel_requested"));
    json_decref(job);
    if (cancel) {
        snprintf(outcome, outlen, "cancelled");
        return store_job_finish(s->store, w->job_id, DT_JOB_CANCELLED, NULL, NULL, err, errlen);
    }
    if (s->stopping) {
        snprintf(outcome, outlen, "released to the queue (server shutdown)");
        return store_job_release(s->store, w->job_id, err, errlen);
    }
    dt_job_status st = DT_JOB_QUEUED;
    int rc = store_job_requeue(s->store, w->job_id, "worker_stopped",
                               "the worker stopped before the job was done (it was signalled "
                               "from outside the server)", &st, err, errlen);
    snprintf(outcome, outlen, "%s (worker_stopped)", store_job_status_name(st));
    return rc;
}

/* Killed by a signal, or an exit status the worker never uses: the attempt is spent. */
static int sup_end_died(sup_worker *w, char *outcome, size_t outlen, char *err, size_t errlen) {
    char msg[256];
    if (w->term_signal == SIGKILL && w->kill_sent && w->grace_ms > 0)
        snprintf(msg, sizeof msg, "the worker did not stop within %d ms of SIGTERM and was "
                 "killed (SIGKILL)", w->grace_ms);
    else if (w->term_signal == SIGKILL && w->kill_sent)
        snprintf(msg, sizeof msg, "the worker was killed (SIGKILL) without waiting for it to "
                 "stop");
    else if (w->term_signal)
        snprintf(msg, sizeof msg, "worker killed by signal %d (%s)", w->term_signal,
                 sup_signal_name(w->term_signal));
    else
        snprintf(msg, sizeof msg, "worker exited with status %lld", (long long)w->exit_status);
    dt_job_status st = DT_JOB_QUEUED;
    int rc = store_job_requeue(w->sup->store, w->job_id, "worker_died", msg, &st, err, errlen);
    snprintf(outcome, outlen, "%s (%s)", store_job_status_name(st), msg);
    return rc;
}

/* Records how the attempt ended (the exit table of supervisor.h); returns 1 when the worker
 * died (counted in stats). */
int sup_attempt_end(sup_worker *w) {
    dt_store *st = w->sup->store;
    char err[512] = "", outcome[400];
    int rc, died = 0;
    if (w->term_signal == SIGTERM && w->term_sent) {
        rc = sup_end_stopped(w, outcome, sizeof outcome, err, sizeof err);
    } else if (w->term_signal) {
        died = 1;
        rc = sup_end_died(w, outcome, sizeof outcome, err, sizeof err);
    } else if (w->exit_status == 0) {
        snprintf(outcome, sizeof outcome, "succeeded");
        rc = store_job_finish(st, w->job_id, DT_JOB_SUCCEEDED, NULL, NULL, err, sizeof err);
    } else if (w->exit_status == 1) {
        const char *code = w->error_code[0] ? w->error_code : "training_failed";
        const char *msg = w->error_message[0] ? w->error_message
                                              : "the worker failed (see the job's worker log)";
        snprintf(outcome, sizeof outcome, "failed (%s)", code);
        rc = store_job_finish(st, w->job_id, DT_JOB_FAILED, code, msg, err, sizeof err);
    } else if (w->exit_status == 2) {
        const char *msg = w->error_message[0] ? w->error_message
                                              : "the worker rejected the job's input";
        snprintf(outcome, sizeof outcome, "failed (invalid_input)");
        rc = store_job_finish(st, w->job_id, DT_JOB_FAILED, "invalid_input", msg, err,
                              sizeof err);
    } else if (w->exit_status == 3) {
        rc = sup_end_stopped(w, outcome, sizeof outcome, err, sizeof err);
    } else {
        died = 1;
        rc = sup_end_died(w, outcome, sizeof outcome, err, sizeof err);
    }
    if (rc != DT_STORE_OK)
        sup_log("job %s: recording the end of its attempt failed: %s", w->job_id, err);
    if (w->term_signal)
        sup_job_log(w->sup, w->job_id, "worker killed by %s; job %s",
                    sup_signal_name(w->term_signal), outcome);
    else
        sup_job_log(w->sup, w->job_id, "worker exited with status %lld; job %s",
                    (long long)w->exit_status, outcome);
    sup_log("job %s: worker ended, job %s", w->job_id, outcome);
    return died;
}
