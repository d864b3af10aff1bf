/* supervisor_events.c — a worker's stdout, one JSON event per line, into the store: progress
 * and training series, metrics, sample and checkpoint artifacts (files checked to lie inside the
 * job's directory), log and error events (supervisor_internal.h).
 *
 * Runs on the loop thread. Each stored event wakes stream subscribers through the notify hook.
 */
#include "supervisor_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define SUP_LINE_MAX (1u << 20) /* longer event lines are dropped */

/* Counts a stored event line for GET /metrics (under mu: HTTP threads read the stats). */
static void sup_count_event(dt_supervisor *s) {
    uv_mutex_lock(&s->mu);
    s->stats.events++;
    uv_mutex_unlock(&s->mu);
}

/* Appends an event of the worker's job; returns 1 when stored. */
static int sup_append(sup_worker *w, const char *type, json_t *data, double ts) {
    char err[512];
    if (store_event_append(w->sup->store, w->job_id, type, data, ts, NULL, err, sizeof err)) {
        sup_log("job %s: storing a %s event failed: %s", w->job_id, type, err);
        return 0;
    }
    return 1;
}

/* detail: what the point records besides its value (may be NULL). */
static void sup_metric(sup_worker *w, const char *name, json_int_t step, json_t *value,
                       json_t *detail, double ts) {
    char err[512];
    if (store_metric_append_detail(w->sup->store, w->job_id, name, step, value, detail, ts, err,
                                   sizeof err))
        sup_log("job %s: storing metric %s failed: %s", w->job_id, name, err);
}

/* progress: the job's progress object, the training series at its step, and the event. */
static int sup_on_progress(sup_worker *w, json_t *p, double ts) {
    static const char *const series[] = {"loss", "learning_rate", "images_per_second",
                                         "loss_downstream", "loss_bank"};
    char err[512];
    if (store_job_set_progress(w->sup->store, w->job_id, p, err, sizeof err))
        sup_log("job %s: storing progress failed: %s", w->job_id, err);
    const char *phase = json_string_value(json_object_get(p, "phase"));
    json_t *step = json_object_get(p, "step");
    if (phase && !strcmp(phase, "training") && json_is_integer(step)) {
        for (size_t i = 0; i < sizeof series / sizeof series[0]; i++) {
            json_t *v = json_object_get(p, series[i]);
            if (json_is_number(v)) sup_metric(w, series[i], json_integer_value(step), v, NULL, ts);
        }
    }
    return sup_append(w, "progress", p, ts);
}

/* metric: one point of series "name" at "step" (0 when the event has none, e.g. the knowledge
 * bank's); its value is the "value" field, with the rest of the event as the point's detail (an
 * FID's sample count, sampler, reference set), else the value is the rest of the event. */
static int sup_on_metric(sup_worker *w, json_t *m, double ts) {
    const char *name = json_string_value(json_object_get(m, "name"));
    json_t *step = json_object_get(m, "step");
    if (!name || !name[0] || (step && !json_is_integer(step))) {
        sup_log("job %s: ignoring a metric event without a name or with a bad step", w->job_id);
        return 0;
    }
    json_t *value = json_object_get(m, "value"), *rest = json_copy(m);
    if (rest) {
        json_object_del(rest, "name");
        json_object_del(rest, "step");
        json_object_del(rest, "value");
    }
    if (value) sup_metric(w, name, step ? json_integer_value(step) : 0, value, rest, ts);
    else if (rest) sup_metric(w, name, step ? json_integer_value(step) : 0, rest, NULL, ts);
    json_decref(rest);
    /* an evaluation may make another checkpoint the best (it follows its checkpoint's event) */
    if (json_is_number(value) && (!strcmp(name, "fid") || !strcmp(name, "fd_classifier")))
        sup_retention_apply(w->sup, w->job_id);
    return sup_append(w, "metric", m, ts);
}

/* Resolves path into out (PATH_MAX bytes) when it names a regular file inside the job's
 * directory; paths a worker reports are never trusted further than that. Returns 0 or -1. */
static int sup_artifact_path(const sup_worker *w, const char *path, char *out, struct stat *sb) {
    if (!realpath(path, out)) return -1;
    size_t n = strlen(w->job_dir);
    if (strncmp(out, w->job_dir, n) != 0 || out[n] != '/') return -1;
    return stat(out, sb) == 0 && S_ISREG(sb->st_mode) ? 0 : -1;
}

static int sup_is_sha256(const char *hex) {
    if (!hex || strlen(hex) != 64) return 0;
    for (const char *p = hex; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'))) return 0;
    return 1;
}

/* sample, checkpoint: the file becomes an artifact of the job, then the event is stored
 * without its path (paths never leave the server). */
static int sup_on_artifact(sup_worker *w, json_t *ev, double ts, dt_artifact_kind kind) {
    const char *kind_name = store_artifact_kind_name(kind);
    const char *name = json_string_value(json_object_get(ev, "name"));
    const char *path = json_string_value(json_object_get(ev, "path"));
    json_t *step = json_object_get(ev, "step");
    dt_artifact a;
    struct stat sb;
    memset(&a, 0, sizeof a);
    if (!name || !name[0] || strlen(name) >= sizeof a.name || strchr(name, '/') || !path ||
        sup_artifact_path(w, path, a.path, &sb)) {
        sup_log("job %s: ignoring a %s event whose file is not in the job's directory",
                w->job_id, kind_name);
        return 0;
    }
    snprintf(a.job_id, sizeof a.job_id, "%s", w->job_id);
    snprintf(a.name, sizeof a.name, "%s", name);
    a.kind = kind;
    a.bytes = (int64_t)sb.st_size;
    a.step = json_is_integer(step) ? json_integer_value(step) : -1;
    const char *sha = json_string_value(json_object_get(ev, "sha256"));
    if (sup_is_sha256(sha)) memcpy(a.sha256, sha, 65);
    char err[512];
    if (store_artifact_put(w->sup->store, &a, err, sizeof err)) {
        sup_log("job %s: storing %s %s failed: %s", w->job_id, kind_name, name, err);
        return 0;
    }
    if (kind == DT_ARTIFACT_CHECKPOINT) sup_retention_apply(w->sup, w->job_id);
    json_object_del(ev, "path");
    return sup_append(w, kind_name, ev, ts);
}

/* error: stored, and remembered as the attempt's error should the worker then exit 1. */
static int sup_on_error(sup_worker *w, json_t *ev, double ts) {
    const char *code = json_string_value(json_object_get(ev, "code"));
    const char *message = json_string_value(json_object_get(ev, "message"));
    snprintf(w->error_code, sizeof w->error_code, "%s", code && code[0] ? code : "training_failed");
    snprintf(w->error_message, sizeof w->error_message, "%s", message ? message : "");
    return sup_append(w, "error", ev, ts);
}

/* One event line of the worker (not NUL-terminated). */
static void sup_handle_line(sup_worker *w, const char *text, size_t len) {
    while (len && (text[len - 1] == '\r' || text[len - 1] == ' ')) len--;
    if (!len) return;
    json_t *ev = json_loadb(text, len, 0, NULL);
    const char *type_in = json_string_value(json_object_get(ev, "type"));
    if (!json_is_object(ev) || !type_in) {
        sup_log("job %s: ignoring a worker output line that is not an event: %.*s", w->job_id,
                (int)(len < 120 ? len : 120), text);
        json_decref(ev);
        return;
    }
    char type[32];
    snprintf(type, sizeof type, "%s", type_in);
    json_t *when = json_object_get(ev, "time");
    double ts = json_is_number(when) ? json_number_value(when) : 0;
    json_object_del(ev, "type");
    json_object_del(ev, "time");
    int stored = 0;
    if (!strcmp(type, "progress")) stored = sup_on_progress(w, ev, ts);
    else if (!strcmp(type, "metric")) stored = sup_on_metric(w, ev, ts);
    else if (!strcmp(type, "sample")) stored = sup_on_artifact(w, ev, ts, DT_ARTIFACT_SAMPLE);
    else if (!strcmp(type, "checkpoint"))
        stored = sup_on_artifact(w, ev, ts, DT_ARTIFACT_CHECKPOINT);
    else if (!strcmp(type, "log")) stored = sup_append(w, "log", ev, ts);
    else if (!strcmp(type, "error")) stored = sup_on_error(w, ev, ts);
    else if (strcmp(type, "status") != 0) /* the store writes status events on transitions */
        sup_log("job %s: ignoring a worker event of unknown type \"%s\"", w->job_id, type);
    json_decref(ev);
    if (stored) {
        sup_count_event(w->sup);
        sup_notify(w->sup, w->job_id);
    }
}

/* ---- splitting the output into lines --------------------------------------------------------- */

static void sup_line_too_long(sup_worker *w) {
    char msg[160];
    snprintf(msg, sizeof msg, "a worker event line longer than %u bytes was dropped",
             SUP_LINE_MAX);
    sup_log("job %s: %s", w->job_id, msg);
    json_t *data = json_pack("{s:s, s:s}", "level", "warn", "message", msg);
    if (sup_append(w, "log", data, 0)) sup_notify(w->sup, w->job_id);
    json_decref(data);
}

/* Adds bytes to the partial line; returns -1 when it would pass SUP_LINE_MAX (or no memory). */
static int sup_line_append(sup_worker *w, const char *data, size_t n) {
    if (w->line_len + n > SUP_LINE_MAX) return -1;
    if (w->line_len + n > w->line_cap) {
        size_t cap = w->line_cap ? w->line_cap : 4096;
        while (cap < w->line_len + n) cap *= 2;
        char *grown = realloc(w->line, cap);
        if (!grown) return -1;
        w->line = grown;
        w->line_cap = cap;
    }
    memcpy(w->line + w->line_len, data, n);
    w->line_len += n;
    return 0;
}

void sup_events_feed(sup_worker *w, const char *data, size_t n) {
    while (n > 0) {
        const char *nl = memchr(data, '\n', n);
        size_t take = nl ? (size_t)(nl - data) : n;
        if (nl && !w->line_dropping && w->line_len == 0) {
            if (take <= SUP_LINE_MAX) sup_handle_line(w, data, take); /* whole: no copy */
            else sup_line_too_long(w);
        } else if (!w->line_dropping && sup_line_append(w, data, take)) {
            sup_line_too_long(w);
            w->line_dropping = 1;
            w->line_len = 0;
        } else if (nl && !w->line_dropping) {
            sup_handle_line(w, w->line, w->line_len);
        }
        if (nl) {
            w->line_dropping = 0;
            w->line_len = 0;
            take++;
        }
        data += take;
        n -= take;
    }
}

void sup_events_flush(sup_worker *w) {
    if (w->line_len && !w->line_dropping) sup_handle_line(w, w->line, w->line_len);
    w->line_len = 0;
}
