/* events.h — the engine's event stream: one JSON object per line (JSON Lines) on a FILE,
 * stdout for `difftune train`. The server's supervisor reads exactly these lines.
 *
 * Types: status, progress, sample, checkpoint, metric, log, error. Every event carries "type"
 * and "time" (unix seconds, fractional).
 */
#ifndef DT_EVENTS_H
#define DT_EVENTS_H

#include <stdio.h>
#include <jansson.h>

typedef struct {
    FILE *out;  /* NULL = events are dropped (library use, tests) */
    int quiet;  /* drop "log" events */
    int text;   /* human-readable lines instead of JSON (for people at a terminal) */
} dt_events;

/* Writes {"type": type, "time": now, ...fields} as one line and flushes. Steals the reference
 * to fields (may be NULL). */
void events_emit(dt_events *ev, const char *type, json_t *fields);
/* A "log" event with a printf-style message and a level ("info", "warn"). */
void events_log(dt_events *ev, const char *level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* error.code values of a training job's "error" event besides invalid_input (the one list of
 * all job error codes is ErrorInfo in api/openapi.json). A job that fails with one of them fails
 * at once: the same attempt again would fail the same way. */
#define DT_ERR_TRAINING_FAILED "training_failed" /* any other failure while working */
#define DT_ERR_NAN_LOSS "nan_loss"   /* the loss became NaN/inf or exploded; the message names the step */
#define DT_ERR_OOM "oom"             /* the model and batch do not fit in the device's memory */
#define DT_ERR_DISK_FULL "disk_full" /* a checkpoint write found the disk full (or below the reserve) */

/* An "error" event: machine-readable code and a message. */
void events_error(dt_events *ev, const char *code, const char *message);

#endif
