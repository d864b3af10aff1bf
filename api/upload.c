/* upload.c — receiving a file upload to disk as it arrives: a raw request body, or the "file"
 * part of multipart/form-data (MHD's post processor), never held in memory whole.
 *
 * The free-space guard: an upload is refused with 507 disk_full before a byte is written when
 * its Content-Length plus the reserve (--min-free-mb) is more than the disk has free, and
 * stopped the same way when the free space drops under the reserve while it streams (bodies
 * without a length, or other writers at work) or a write finds the disk full (ENOSPC, EDQUOT).
 * The partial file is removed with the upload; nothing else is touched. */
#define _GNU_SOURCE /* mkostemp */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fsutil.h"
#include "http.h"
#include "layout.h"

struct api_upload {
    api_req *r;
    int fd;
    char path[4096];
    int64_t bytes;
    int multipart;
    int file_seen;     /* multipart: a "file" part arrived */
    char name[256];    /* the "name" form field or ?name= */
    char filename[256];
    struct MHD_PostProcessor *pp;
    int64_t guard_at;  /* u->bytes at which the free space is looked at again */
};

/* Bytes written between two looks at the free space while an upload streams. */
#define UPLOAD_GUARD_BYTES ((int64_t)64 << 20)

/* The free-space guard for `need` more bytes of upload; replies or refuses (refuse: while the
 * body streams) with 507 disk_full and returns -1 when they would eat into the reserve. */
static int upload_guard(api_req *r, int64_t need, int refuse) {
    char msg[256];
    uint64_t reserve = r->api->opts.min_free_bytes > 0 ? (uint64_t)r->api->opts.min_free_bytes : 0;
    /* the data directory: DIR/tmp, where the body goes, may not exist yet, and lies within it */
    if (fs_check_free(r->api->opts.data_dir, "the upload", need > 0 ? (uint64_t)need : 0, reserve,
                      "--min-free-mb", msg, sizeof msg) != FS_NO_SPACE)
        return 0;
    if (refuse) api_refuse(r, 507, "disk_full", NULL, msg);
    else api_reply_error(r, 507, "disk_full", NULL, "%s", msg);
    return -1;
}

/* Appends file bytes, enforcing the upload limit. */
static int upload_write(api_upload *u, const char *data, size_t len) {
    api_req *r = u->r;
    if (u->bytes + (int64_t)len > r->api->opts.max_upload_bytes) {
        char msg[160];
        snprintf(msg, sizeof msg, "the upload is larger than %lld bytes (--max-upload-mb)",
                 (long long)r->api->opts.max_upload_bytes);
        api_refuse(r, 413, "payload_too_large", NULL, msg);
        return -1;
    }
    if (u->bytes + (int64_t)len >= u->guard_at) {
        if (upload_guard(r, (int64_t)len, 1)) return -1;
        u->guard_at = u->bytes + (int64_t)len + UPLOAD_GUARD_BYTES;
    }
    int rc = fs_write_all(u->fd, data, len);
    if (rc) {
        char msg[160];
        snprintf(msg, sizeof msg, "cannot store the upload: %s%s", strerror(errno),
                 rc == FS_NO_SPACE ? " (the server's disk is full)" : "");
        api_refuse(r, 507, rc == FS_NO_SPACE ? "disk_full" : "insufficient_storage", NULL, msg);
        return -1;
    }
    u->bytes += (int64_t)len;
    return 0;
}

static enum MHD_Result upload_part(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *filename, const char *content_type,
                                   const char *transfer_encoding, const char *data, uint64_t off,
                                   size_t size) {
    (void)kind; (void)content_type; (void)transfer_encoding; (void)off;
    api_upload *u = cls;
    if (!key) return MHD_YES;
    if (!strcmp(key, "file")) {
        u->file_seen = 1;
        if (filename && !u->filename[0]) snprintf(u->filename, sizeof u->filename, "%s", filename);
        return size && upload_write(u, data, size) ? MHD_NO : MHD_YES;
    }
    if (!strcmp(key, "name")) {
        if (off == 0) u->name[0] = 0; /* the form field wins over ?name= */
        size_t have = strlen(u->name);
        if (have + size >= sizeof u->name) {
            api_refuse(u->r, 400, "invalid_value", "name", "name must be shorter than 256 bytes");
            return MHD_NO;
        }
        memcpy(u->name + have, data, size);
        u->name[have + size] = 0;
    }
    return MHD_YES; /* other fields are ignored */
}

int api_upload_begin(api_req *r) {
    api_upload *u = calloc(1, sizeof *u);
    char err[512];
    if (!u) {
        api_reply_error(r, 500, "internal_error", NULL, "out of memory");
        return -1;
    }
    u->r = r;
    u->fd = -1;
    /* Checked against the declared length first (the whole body must fit above the reserve),
     * then again as the body streams. */
    const char *cl = api_header(r, "Content-Length");
    char *end;
    errno = 0;
    long long declared = cl ? strtoll(cl, &end, 10) : 0;
    if (!cl || errno || *end || declared < 0) declared = 0;
    u->guard_at = UPLOAD_GUARD_BYTES;
    if (upload_guard(r, declared, 0)) {
        free(u);
        return -1;
    }
    char dir[4096];
    if (api_data_path(r->api, dir, sizeof dir, "%s", DT_LAYOUT_TMP) || fs_mkdirs(dir, err, sizeof err) ||
        api_data_path(r->api, u->path, sizeof u->path, "%s/upload_XXXXXX", DT_LAYOUT_TMP) ||
        (u->fd = mkostemp(u->path, O_CLOEXEC)) < 0) {
        u->path[0] = 0;
        free(u);
        api_reply_error(r, 500, "internal_error", NULL, "cannot create a temporary file for the upload");
        return -1;
    }
    const char *name = api_query(r, "name");
    if (name) snprintf(u->name, sizeof u->name, "%s", name);
    const char *ct = api_header(r, "Content-Type");
    r->upload = u;
    if (ct && !strncasecmp(ct, "multipart/form-data", 19)) {
        u->multipart = 1;
        u->pp = MHD_create_post_processor(r->conn, 64 * 1024, upload_part, u);
        if (!u->pp) {
            api_reply_error(r, 400, "invalid_value", "Content-Type",
                            "multipart/form-data needs a boundary parameter");
            return -1;
        }
    }
    return 0;
}

int api_upload_feed(api_req *r, const char *data, size_t len) {
    api_upload *u = r->upload;
    if (r->refused_status) return -1;
    if (!u->multipart) return upload_write(u, data, len);
    if (MHD_post_process(u->pp, data, len) != MHD_YES) {
        api_refuse(r, 400, "invalid_value", NULL, "the multipart/form-data body is malformed");
        return -1;
    }
    return 0;
}

const char *api_upload_path(api_req *r) {
    api_upload *u = r->upload;
    if (!u || (u->multipart && !u->file_seen)) return NULL;
    return u->path;
}

int64_t api_upload_bytes(api_req *r) { return r->upload ? r->upload->bytes : 0; }

const char *api_upload_name(api_req *r) {
    return r->upload && r->upload->name[0] ? r->upload->name : NULL;
}

const char *api_upload_filename(api_req *r) {
    return r->upload && r->upload->filename[0] ? r->upload->filename : NULL;
}

void api_upload_free(api_upload *u) {
    if (!u) return;
    if (u->pp) MHD_destroy_post_processor(u->pp);
    if (u->fd >= 0) close(u->fd);
    if (u->path[0]) unlink(u->path);
    free(u);
}
