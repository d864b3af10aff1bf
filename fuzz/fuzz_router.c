/* fuzz_router.c — the HTTP router (api/routes.c: api_route_match over the real route table)
 * and the header parsers a request reaches before any store access: Range (api/files.c),
 * Last-Event-ID (api/events.c) and If-None-Match (api_etag_matches), on arbitrary strings.
 *
 * Input layout, newline-separated (each field ends at its first NUL, as MHD hands strings on):
 * method, path, Range value, Last-Event-ID value, If-None-Match value. The route is matched
 * twice: with the server's Allow buffer and with one of 1..256 bytes picked from the input, so
 * that truncating the Allow list is exercised too.
 *
 * Checked besides the sanitizers:
 *   - a match is a route of that method whose pattern, with the captured parameters put back
 *     in place of its {} and {*}, spells exactly the path; {} captures are non-empty and have
 *     no '/'; a 405 lists the path's methods in a NUL-terminated Allow; a 404 leaves it empty;
 *   - a satisfiable range lies inside the file and is not empty, against several file sizes;
 *   - an accepted Last-Event-ID is non-negative; "*" and an exact ETag match If-None-Match.
 */
#include "fuzz_util.h"

#include "http.h"

/* Rebuilds the path a route matched from its pattern and the captures in r. */
static void fuzz_router_check_match(const api_req *r, int i, const char *method, const char *path) {
    const api_route *rt = &api_routes[i];
    FUZZ_CHECK(!strcmp(rt->method, method), "route %d is %s, asked %s", i, rt->method, method);
    char built[2048];
    size_t n = 0;
    int np = 0;
    for (const char *p = rt->pattern; *p;) {
        const char *piece = NULL;
        if (p[0] == '{' && p[1] == '}') {
            piece = r->params[np++];
            FUZZ_CHECK(piece[0] && !strchr(piece, '/'), "{} capture '%s'", piece);
            p += 2;
        } else if (p[0] == '{' && p[1] == '*' && p[2] == '}') {
            piece = r->params[np++];
            FUZZ_CHECK(piece[0], "empty {*} capture");
            p += 3;
        }
        if (piece) {
            size_t m = strlen(piece);
            FUZZ_CHECK(n + m < sizeof built, "capture too long");
            memcpy(built + n, piece, m);
            n += m;
        } else {
            FUZZ_CHECK(n + 1 < sizeof built, "path too long");
            built[n++] = *p++;
        }
        FUZZ_CHECK(np <= API_MAX_PARAMS, "too many captures");
    }
    built[n] = '\0';
    FUZZ_CHECK(!strcmp(built, path), "route %s %s matched '%s' but rebuilds as '%s'", rt->method,
               rt->pattern, path, built);
}

static void fuzz_router(const char *method, const char *path, size_t allowlen) {
    static api_req r; /* large (params, url, body state); only params are touched */
    char allow[256];
    memset(&r, 0, sizeof r);
    memset(allow, 'x', sizeof allow);
    int i = api_route_match(&r, method, path, allow, allowlen);
    FUZZ_CHECK(i >= -2 && i < api_route_count, "index %d", i);
    FUZZ_CHECK(memchr(allow, 0, allowlen) != NULL, "Allow not terminated within %zu", allowlen);
    if (i >= 0) fuzz_router_check_match(&r, i, method, path);
    else if (i == -1) FUZZ_CHECK(allow[0] == 0, "a 404 with Allow '%s'", allow);
    else FUZZ_CHECK(allowlen < 4 || allow[0], "a 405 with no Allow");
}

static void fuzz_range(const char *h) {
    static const uint64_t sizes[] = {0, 1, 2, 10, 1000, (uint64_t)1 << 40, UINT64_MAX - 1, UINT64_MAX};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        uint64_t off = 7, len = 7;
        int rc = api_range_parse(h, sizes[k], &off, &len);
        FUZZ_CHECK(rc >= -1 && rc <= 1, "rc %d", rc);
        if (rc == 1)
            FUZZ_CHECK(len >= 1 && off < sizes[k] && len <= sizes[k] - off,
                       "Range '%s' on %llu bytes gave [%llu, +%llu)", h,
                       (unsigned long long)sizes[k], (unsigned long long)off,
                       (unsigned long long)len);
    }
}

/* The next field of the input (up to '\n'), as a NUL-terminated copy ending at its first NUL. */
static char *fuzz_field(const uint8_t **data, size_t *size) {
    const uint8_t *head;
    size_t n;
    if (!fuzz_split(data, size, '\n', &head, &n)) { /* the last field: all that is left */
        head = *data;
        n = *size;
        *data += *size;
        *size = 0;
    }
    return fuzz_strndup(head, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *method = fuzz_field(&data, &size), *path = fuzz_field(&data, &size);
    char *range = fuzz_field(&data, &size), *last = fuzz_field(&data, &size);
    char *inm = fuzz_field(&data, &size);

    /* http.c routes HEAD as GET and refuses paths of 1024 bytes or more with 414. */
    if (strlen(path) < sizeof ((api_req *)0)->url) {
        fuzz_router(method, path, 64); /* http.c's Allow buffer */
        fuzz_router(method, path, 1 + (strlen(path) * 37 + strlen(method)) % 256);
    }
    fuzz_range(range);
    fuzz_range(NULL);

    int64_t id = -5;
    if (api_last_event_id_parse(last, &id) == 0) FUZZ_CHECK(id >= 0, "Last-Event-ID %lld", (long long)id);
    else FUZZ_CHECK(id == -5, "a refused Last-Event-ID wrote %lld", (long long)id);

    (void)api_etag_matches(inm, "\"0123abcd\"");
    if (inm[0] && !strchr(inm, '"')) {
        char quoted[300];
        snprintf(quoted, sizeof quoted, "\"%.290s\"", inm);
        FUZZ_CHECK(api_etag_matches(quoted, quoted), "ETag %s does not match itself", quoted);
    }
    FUZZ_CHECK(api_etag_matches("*", inm) && !api_etag_matches(NULL, inm), "* and NULL");

    free(method);
    free(path);
    free(range);
    free(last);
    free(inm);
    return 0;
}
