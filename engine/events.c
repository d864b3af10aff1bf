/* events.c — JSON Lines event output. */
#include "events.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

static double events_now(void) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + tv.tv_usec * 1e-6;
}

void events_emit(dt_events *ev, const char *type, json_t *fields) {
    if (!ev || !ev->out || (ev->quiet && !strcmp(type, "log"))) {
        json_decref(fields);
        return;
    }
    json_t *o = json_object();
    json_object_set_new(o, "type", json_string(type));
    json_object_set_new(o, "time", json_real(events_now()));
    if (fields) json_object_update(o, fields);
    json_decref(fields);
    char *line = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (line) {
        fputs(line, ev->out);
        fputc('\n', ev->out);
        fflush(ev->out);
        free(line);
    }
    json_decref(o);
}

void events_log(dt_events *ev, const char *level, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    events_emit(ev, "log", json_pack("{s:s, s:s}", "level", level, "message", msg));
}

void events_error(dt_events *ev, const char *code, const char *message) {
    events_emit(ev, "error", json_pack("{s:s, s:s}", "code", code, "message", message));
}
