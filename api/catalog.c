/* catalog.c — what the dataset and model resources share: upload names and checks, and the
 * list / get / delete handlers over the store's catalog functions. */
#include <stdio.h>
#include <string.h>

#include "http.h"
#include "ingest.h"

/* Display names: 1..200 bytes, no control characters. */
int api_name_valid(const char *name) {
    size_t n = strlen(name);
    if (n < 1 || n > 200) return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)name[i] < 32 || name[i] == 127) return 0;
    return 1;
}

/* The name of an upload: the form field or ?name=, else the file name, else dflt. Replies 400
 * and returns NULL when the given name is not acceptable. */
const char *api_upload_display_name(api_req *r, const char *dflt) {
    const char *name = api_upload_name(r);
    if (!name) name = api_upload_filename(r);
    if (!name) return dflt;
    if (!api_name_valid(name)) {
        api_reply_error(r, 400, "invalid_value", "name", "name must be 1 to 200 printable characters");
        return NULL;
    }
    return name;
}

/* The uploaded file of r, or NULL after replying (no file part, empty). */
const char *api_upload_require(api_req *r, const char *what) {
    const char *tmp = api_upload_path(r);
    if (!r->upload) {
        api_reply_error(r, 415, "unsupported_media_type", "Content-Type",
                        "upload %s as the raw request body or as multipart/form-data with a \"file\" field", what);
        return NULL;
    }
    if (!tmp) {
        api_reply_error(r, 400, "missing_field", "file", "the multipart form has no \"file\" field");
        return NULL;
    }
    if (api_upload_bytes(r) == 0) {
        api_reply_error(r, 400, "invalid_value", "file", "the uploaded file is empty");
        return NULL;
    }
    return tmp;
}

/* The page GET /datasets or GET /models asks for, or NULL after replying. */
json_t *api_catalog_page(api_req *r, const char *prefix,
                         int (*list)(dt_store *, int, const char *, json_t **, char *, size_t)) {
    int64_t limit;
    if (api_query_int(r, "limit", 1, DT_STORE_LIST_MAX, 20, &limit)) return NULL;
    const char *after = api_query(r, "after");
    if (after && !api_id_valid(after, prefix)) {
        api_reply_error(r, 400, "invalid_value", "after", "after must be the last_id of a previous page");
        return NULL;
    }
    char err[512];
    json_t *page = NULL;
    int rc = list(r->api->opts.store, (int)limit, after, &page, err, sizeof err);
    if (rc) api_reply_store_error(r, rc, rc == DT_STORE_INVALID ? "after" : NULL, err);
    return page;
}

/* GET /datasets and GET /models: a page, newest first. */
void api_catalog_list(api_req *r, const char *prefix,
                      int (*list)(dt_store *, int, const char *, json_t **, char *, size_t)) {
    json_t *page = api_catalog_page(r, prefix, list);
    if (page) api_reply_json(r, 200, page, NULL);
}

/* GET /datasets/{id} and GET /models/{id}. */
void api_catalog_get(api_req *r, int (*get)(dt_store *, const char *, json_t **, char *, size_t)) {
    char err[512];
    json_t *obj = NULL;
    int rc = get(r->api->opts.store, r->params[0], &obj, err, sizeof err);
    if (rc) api_reply_store_error(r, rc, NULL, err);
    else api_reply_json(r, 200, obj, NULL);
}

/* DELETE /datasets/{id} and DELETE /models/{id}: the row, then its files. */
void api_catalog_delete(api_req *r, const char *object, const char *subdir,
                        int (*del)(dt_store *, const char *, char *, size_t, char *, size_t),
                        void (*cleanup)(const dt_api *a, const char *dir)) {
    char err[512], path[4096];
    int rc = del(r->api->opts.store, r->params[0], path, sizeof path, err, sizeof err);
    if (rc == DT_STORE_CONFLICT) {
        api_reply_error(r, 409, "in_use", NULL, "%s", err);
        return;
    }
    if (rc) {
        api_reply_store_error(r, rc, NULL, err);
        return;
    }
    char dir[4096];
    if (!api_data_path(r->api, dir, sizeof dir, "%s/%s", subdir, r->params[0])) {
        if (cleanup) cleanup(r->api, dir);
        ingest_remove_tree(dir);
    }
    api_reply_json(r, 200, json_pack("{s:s, s:s, s:b}", "id", r->params[0], "object", object, "deleted", 1), NULL);
}


void api_reply_created(api_req *r, const char *base, const char *id,
                       int (*get)(dt_store *, const char *, json_t **, char *, size_t)) {
    char err[512], location[128];
    json_t *obj = NULL;
    int rc = get(r->api->opts.store, id, &obj, err, sizeof err);
    if (rc) {
        api_reply_store_error(r, rc, NULL, err);
        return;
    }
    snprintf(location, sizeof location, "%s/%s", base, id);
    const char *h[] = {"Location", location, NULL};
    api_reply_json(r, 201, obj, h);
}
