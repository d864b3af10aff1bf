/* upload.c — receiving a file upload to disk as it arrives: a raw request body, or the "file"
 * part of multipart/form-data (MHD's post processor), never held in memory whole. */
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
};

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
    while (len) {
        ssize_t n = write(u->fd, data, len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            char msg[160];
            snprintf(msg, sizeof msg, "cannot store the upload: %s", strerror(errno));
            api_refuse(r, 507, "insufficient_storage", NULL, msg);
            return -1;
        }
        data += n;
        len -= (size_t)n;
        u->bytes += n;
    }
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
