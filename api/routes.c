/* routes.c — the route table of the API and path matching. */
#include <stdio.h>
#include <string.h>

#include "http.h"

#define ROUTES_ARCHIVES                                                                      \
    "application/x-tar,application/tar,application/x-gtar,application/gzip,application/x-gzip,"  \
    "application/zip,application/x-zip-compressed,application/octet-stream,multipart/form-data"

const api_route api_routes[] = {
    {"GET", "/", API_BODY_NONE, api_system_root, "root", NULL, 0, 0},
    {"GET", "/ui/{*}", API_BODY_NONE, api_web_file, "ui.file", NULL, 0, 0},
    {"POST", "/session", API_BODY_NONE, api_session_create, "session.create", NULL, 0, DT_SCOPE_READ},
    {"DELETE", "/session", API_BODY_NONE, api_session_delete, "session.delete", NULL, 0, 0},
    {"GET", "/health", API_BODY_NONE, api_system_health, "health", NULL, 0, 0},
    {"GET", "/metrics", API_BODY_NONE, api_system_metrics, "metrics", NULL, 0, DT_SCOPE_READ},
    {"GET", "/openapi.json", API_BODY_NONE, api_system_openapi, "openapi", NULL, 0, 0},
    {"GET", "/workers", API_BODY_NONE, api_system_workers, "workers", NULL, 0, DT_SCOPE_READ},
    {"POST", "/jobs", API_BODY_JSON, api_jobs_create, "jobs.create", "application/json", 0, DT_SCOPE_SUBMIT},
    {"GET", "/jobs", API_BODY_NONE, api_jobs_list, "jobs.list", NULL, 0, DT_SCOPE_READ},
    {"GET", "/jobs/{}", API_BODY_NONE, api_jobs_get, "jobs.get", NULL, 0, DT_SCOPE_READ},
    {"POST", "/jobs/{}/cancel", API_BODY_NONE, api_jobs_cancel, "jobs.cancel", NULL, 0, DT_SCOPE_SUBMIT},
    {"POST", "/jobs/{}/retry", API_BODY_NONE, api_jobs_retry, "jobs.retry", NULL, 0, DT_SCOPE_SUBMIT},
    {"GET", "/jobs/{}/events", API_BODY_NONE, api_events_get, "jobs.events", NULL, 0, DT_SCOPE_READ},
    {"GET", "/jobs/{}/metrics", API_BODY_NONE, api_jobs_metrics, "jobs.metrics", NULL, 0, DT_SCOPE_READ},
    {"GET", "/jobs/{}/samples", API_BODY_NONE, api_jobs_samples, "jobs.samples", NULL, 0, DT_SCOPE_READ},
    {"GET", "/jobs/{}/samples/{}", API_BODY_NONE, api_jobs_sample_file, "jobs.sample_file", NULL, 0, DT_SCOPE_READ},
    {"GET", "/jobs/{}/checkpoints", API_BODY_NONE, api_jobs_checkpoints, "jobs.checkpoints", NULL, 0, DT_SCOPE_READ},
    {"GET", "/jobs/{}/checkpoints/{}", API_BODY_NONE, api_jobs_checkpoint_file, "jobs.checkpoint_file", NULL, 0, DT_SCOPE_READ},
    {"POST", "/jobs/{}/checkpoints/{}/pin", API_BODY_NONE, api_jobs_checkpoint_pin, "jobs.checkpoint_pin", NULL, 0, DT_SCOPE_SUBMIT},
    {"DELETE", "/jobs/{}/checkpoints/{}/pin", API_BODY_NONE, api_jobs_checkpoint_unpin, "jobs.checkpoint_unpin", NULL, 0, DT_SCOPE_SUBMIT},
    {"POST", "/datasets", API_BODY_UPLOAD, api_datasets_create, "datasets.create", ROUTES_ARCHIVES, 1, DT_SCOPE_SUBMIT},
    {"GET", "/datasets", API_BODY_NONE, api_datasets_list, "datasets.list", NULL, 0, DT_SCOPE_READ},
    {"GET", "/datasets/{}", API_BODY_NONE, api_datasets_get, "datasets.get", NULL, 0, DT_SCOPE_READ},
    {"GET", "/datasets/{}/preview.png", API_BODY_NONE, api_datasets_preview, "datasets.preview", NULL, 0, DT_SCOPE_READ},
    {"DELETE", "/datasets/{}", API_BODY_NONE, api_datasets_delete, "datasets.delete", NULL, 0, DT_SCOPE_ADMIN},
    {"POST", "/models", API_BODY_UPLOAD, api_models_create, "models.create",
     "application/octet-stream,multipart/form-data,application/json", 1, DT_SCOPE_SUBMIT},
    {"GET", "/models", API_BODY_NONE, api_models_list, "models.list", NULL, 0, DT_SCOPE_READ},
    {"GET", "/models/{}", API_BODY_NONE, api_models_get, "models.get", NULL, 0, DT_SCOPE_READ},
    {"DELETE", "/models/{}", API_BODY_NONE, api_models_delete, "models.delete", NULL, 0, DT_SCOPE_ADMIN},
};
const int api_route_count = (int)(sizeof api_routes / sizeof api_routes[0]);

/* Copies one path segment (n bytes; MHD has already decoded %XX escapes) into out. */
static int route_segment(const char *s, size_t n, char *out, size_t outlen) {
    if (n + 1 > outlen) return -1;
    memcpy(out, s, n);
    out[n] = 0;
    return 0;
}

/* Matches path against pattern, capturing {} segments into r->params. */
static int route_match_one(api_req *r, const char *pattern, const char *path) {
    int np = 0;
    const char *p = pattern, *s = path;
    while (*p && *s) {
        if (p[0] == '{' && p[1] == '*' && p[2] == '}') { /* the rest of the path, slashes too */
            size_t n = strlen(s);
            if (n == 0 || np >= API_MAX_PARAMS || strstr(s, "//")) return 0;
            if (route_segment(s, n, r->params[np], sizeof r->params[np])) return 0;
            np++;
            s += n;
            p += 3;
        } else if (p[0] == '{' && p[1] == '}') {
            size_t n = strcspn(s, "/");
            if (n == 0 || np >= API_MAX_PARAMS) return 0;
            if (route_segment(s, n, r->params[np], sizeof r->params[np])) return 0;
            np++;
            s += n;
            p += 2;
        } else if (*p == *s) {
            p++;
            s++;
        } else {
            return 0;
        }
    }
    return !*p && !*s;
}

int api_route_match(api_req *r, const char *method, const char *path, char *allow, size_t allowlen) {
    int path_seen = 0;
    allow[0] = 0;
    for (int i = 0; i < api_route_count; i++) {
        const api_route *rt = &api_routes[i];
        if (!route_match_one(r, rt->pattern, path)) continue;
        if (!strcmp(rt->method, method)) return i;
        path_seen = 1;
        size_t used = strlen(allow);
        snprintf(allow + used, allowlen - used, "%s%s", used ? ", " : "", rt->method);
        if (!strcmp(rt->method, "GET")) {
            used = strlen(allow);
            snprintf(allow + used, allowlen - used, ", HEAD");
        }
    }
    return path_seen ? -2 : -1;
}
