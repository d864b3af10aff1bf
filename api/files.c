/* files.c — serving a file from disk: ETag / If-None-Match, one byte range (206 / 416), and
 * the bytes straight from the file descriptor (sendfile where MHD can). */
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "http.h"

int api_etag_matches(const char *list, const char *etag) {
    if (!list) return 0;
    if (!strcmp(list, "*")) return 1;
    size_t n = strlen(etag);
    for (const char *p = list; (p = strstr(p, etag)); p += n)
        if ((p == list || p[-1] == ' ' || p[-1] == ',' || p[-1] == '/') &&
            (p[n] == 0 || p[n] == ',' || p[n] == ' '))
            return 1;
    return 0;
}

static int files_parse_u64(const char *s, const char *end, uint64_t *out) {
    if (s == end) return -1;
    uint64_t v = 0;
    for (const char *p = s; p < end; p++) {
        if (*p < '0' || *p > '9' || v > (UINT64_MAX - 9) / 10) return -1;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    *out = v;
    return 0;
}

int api_range_parse(const char *h, uint64_t size, uint64_t *off, uint64_t *len) {
    if (!h || strncmp(h, "bytes=", 6) || strchr(h, ',')) return 0;
    const char *s = h + 6, *dash = strchr(s, '-');
    if (!dash) return 0;
    const char *end = s + strlen(s);
    uint64_t a, b;
    if (s == dash) { /* suffix: the last n bytes */
        if (files_parse_u64(dash + 1, end, &b)) return 0;
        if (b == 0 || size == 0) return -1;
        if (b > size) b = size;
        *off = size - b;
        *len = b;
        return 1;
    }
    if (files_parse_u64(s, dash, &a)) return 0;
    if (dash + 1 == end) b = size ? size - 1 : 0;
    else if (files_parse_u64(dash + 1, end, &b) || b < a) return 0;
    if (a >= size) return -1;
    if (b >= size) b = size - 1;
    *off = a;
    *len = b - a + 1;
    return 1;
}

void api_serve_file(api_req *r, const char *path, const char *content_type, const char *sha256,
                    const char *download_name) {
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) || !S_ISREG(st.st_mode)) {
        if (fd >= 0) close(fd);
        api_reply_error(r, 404, "not_found", NULL, "the file is no longer on disk");
        return;
    }
    char etag[80];
    if (sha256 && sha256[0]) snprintf(etag, sizeof etag, "\"%.64s\"", sha256);
    else snprintf(etag, sizeof etag, "\"%jx-%jx\"", (uintmax_t)st.st_size,
                  (uintmax_t)st.st_mtim.tv_sec * 1000000000u + (uintmax_t)st.st_mtim.tv_nsec);
    char disposition[400] = "";
    if (download_name) snprintf(disposition, sizeof disposition, "attachment; filename=\"%.300s\"", download_name);

    if (api_etag_matches(api_header(r, "If-None-Match"), etag)) {
        close(fd);
        const char *h[] = {"ETag", etag, NULL};
        api_reply_json(r, 304, NULL, h);
        return;
    }
    const uint64_t size = (uint64_t)st.st_size;
    uint64_t off = 0, len = size;
    const char *if_range = api_header(r, "If-Range");
    int ranged = if_range && strcmp(if_range, etag) ? 0 : api_range_parse(api_header(r, "Range"), size, &off, &len);
    char content_range[96];
    if (ranged < 0) {
        close(fd);
        snprintf(content_range, sizeof content_range, "bytes */%" PRIu64, size);
        const char *h[] = {"Content-Range", content_range, NULL};
        api_reply_error_with(r, 416, h, "range_not_satisfiable", "Range", "the file has %" PRIu64 " bytes", size);
        return;
    }
    struct MHD_Response *resp = MHD_create_response_from_fd_at_offset64(len, fd, off);
    if (!resp) {
        close(fd);
        api_reply_error(r, 500, "internal_error", NULL, "cannot serve the file");
        return;
    }
    MHD_add_response_header(resp, "Content-Type", content_type);
    MHD_add_response_header(resp, "ETag", etag);
    MHD_add_response_header(resp, "Accept-Ranges", "bytes");
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    if (disposition[0]) MHD_add_response_header(resp, "Content-Disposition", disposition);
    if (ranged > 0) {
        snprintf(content_range, sizeof content_range, "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64, off,
                 off + len - 1, size);
        MHD_add_response_header(resp, "Content-Range", content_range);
    }
    api_reply_response(r, ranged > 0 ? 206 : 200, resp);
}
