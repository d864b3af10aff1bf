/* events.c — JSON Lines event output. */
#include "events.h"
#include "clock.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* One human-readable line: progress gets a fixed layout, other events "type: k=v ...". */
static void events_write_text(FILE *f, const char *type, json_t *o) {
    if (!strcmp(type, "progress")) {
        const char *phase = json_string_value(json_object_get(o, "phase"));
        fprintf(f, "%-14s step %lld/%lld", phase ? phase : "?",
                (long long)json_integer_value(json_object_get(o, "step")),
                (long long)json_integer_value(json_object_get(o, "total_steps")));
        json_t *loss = json_object_get(o, "loss");
        if (json_is_number(loss)) fprintf(f, "  loss %.4f", json_number_value(loss));
        json_t *ips = json_object_get(o, "images_per_second");
        if (json_is_number(ips)) fprintf(f, "  %.1f img/s", json_number_value(ips));
        json_t *eta = json_object_get(o, "eta_seconds");
        if (json_is_number(eta)) {
            long s = (long)json_number_value(eta);
            fprintf(f, "  eta %ldm%02lds", s / 60, s % 60);
        }
        fputc('\n', f);
        return;
    }
    if (!strcmp(type, "log")) {
        fprintf(f, "%s\n", json_string_value(json_object_get(o, "message")));
        return;
    }
    fprintf(f, "%s:", type);
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v) {
        if (!strcmp(key, "type") || !strcmp(key, "time") || json_is_object(v) || json_is_array(v)) continue;
        char *txt = json_dumps(v, JSON_ENCODE_ANY | JSON_REAL_PRECISION(6));
        fprintf(f, " %s=%s", key, txt ? txt : "?");
        free(txt);
    }
    fputc('\n', f);
}

void events_emit(dt_events *ev, const char *type, json_t *fields) {
    if (!ev || !ev->out || (ev->quiet && !strcmp(type, "log"))) {
        json_decref(fields);
        return;
    }
    json_t *o = json_object();
    json_object_set_new(o, "type", json_string(type));
    json_object_set_new(o, "time", json_real(dt_now()));
    if (fields) json_object_update(o, fields);
    json_decref(fields);
    if (ev->text) {
        events_write_text(ev->out, type, o);
        fflush(ev->out);
        json_decref(o);
        return;
    }
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
