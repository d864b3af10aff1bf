/* datasets.c — the dataset resource: upload (tar or zip of an image folder or IDX files,
 * validated before it is stored), list, get, delete, and the preview grid drawn at upload.
 *
 * A dataset object carries "preview_url" only when its preview file exists: datasets uploaded
 * before previews were drawn have none, and a client should not be sent to a 404. Deleting a
 * dataset also removes the latent caches encoded from it (DATA/latents/<key>/). */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "http.h"
#include "ingest.h"
#include "latents.h"
#include "layout.h"

/* 1 when the preview of dataset id is on disk; path (pathlen bytes) receives where it is. */
static int datasets_has_preview(const dt_api *a, const char *id, char *path, size_t pathlen) {
    struct stat sb;
    return !api_data_path(a, path, pathlen, "%s/%s/%s", DT_LAYOUT_DATASETS, id,
                          DT_INGEST_PREVIEW_NAME) &&
           stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* Adds "preview_url" to the dataset object obj when its preview exists. */
static void datasets_add_preview_url(const dt_api *a, json_t *obj) {
    const char *id = json_string_value(json_object_get(obj, "id"));
    char path[4096], url[128];
    if (!id || !datasets_has_preview(a, id, path, sizeof path)) return;
    snprintf(url, sizeof url, "/datasets/%s/preview.png", id);
    json_object_set_new(obj, "preview_url", json_string(url));
}

/* The API object of dataset id (a new reference), or NULL after replying an error. */
static json_t *datasets_object(api_req *r, const char *id) {
    char err[512];
    json_t *obj = NULL;
    int rc = store_dataset_get(r->api->opts.store, id, &obj, err, sizeof err);
    if (rc) {
        api_reply_store_error(r, rc, NULL, err);
        return NULL;
    }
    datasets_add_preview_url(r->api, obj);
    return obj;
}

void api_datasets_create(api_req *r) {
    const char *tmp = api_upload_require(r, "the archive (tar or zip)");
    if (!tmp) return;
    const char *name = api_upload_display_name(r, "dataset");
    if (!name) return;
    char id[DT_STORE_ID_MAX], dest[4096], err[1024];
    if (store_new_id("ds_", id, sizeof id) ||
        api_data_path(r->api, dest, sizeof dest, "%s/%s", DT_LAYOUT_DATASETS, id)) {
        api_reply_error(r, 500, "internal_error", NULL, "cannot name the dataset");
        return;
    }
    dt_ingest_limits lim = {.max_bytes = r->api->opts.max_unpacked_bytes,
                            .max_entries = r->api->opts.max_archive_files};
    dt_ingest_dataset info = {0};
    int rc = ingest_dataset(tmp, dest, &lim, &info, err, sizeof err);
    if (rc == DT_INGEST_INVALID) {
        api_reply_error(r, 422, "invalid_dataset", "file", "%s", err);
        return;
    }
    if (rc == DT_INGEST_TOO_LARGE) {
        api_reply_error(r, 413, "payload_too_large", "file", "%s", err);
        return;
    }
    if (rc == DT_INGEST_NO_SPACE) {
        api_reply_error(r, 507, "disk_full", NULL, "%s", err);
        return;
    }
    if (rc) {
        api_reply_error(r, 500, "internal_error", NULL, "%s", err);
        return;
    }
    dt_dataset_new d = {.id = id, .name = name, .path = info.root, .format = info.format,
                        .images = info.images, .classes = info.classes,
                        .class_names = info.class_names, .class_counts = info.class_counts,
                        .bytes = info.bytes};
    char stored[DT_STORE_ID_MAX];
    rc = store_dataset_create(r->api->opts.store, &d, stored, err, sizeof err);
    ingest_dataset_clear(&info);
    if (rc) {
        ingest_remove_tree(dest);
        api_reply_store_error(r, rc, NULL, err);
        return;
    }
    json_t *obj = datasets_object(r, id);
    if (!obj) return;
    char location[128];
    snprintf(location, sizeof location, "/datasets/%s", id);
    const char *h[] = {"Location", location, NULL};
    api_reply_json(r, 201, obj, h);
}

void api_datasets_list(api_req *r) {
    json_t *page = api_catalog_page(r, "ds_", store_dataset_list);
    if (!page) return;
    size_t i;
    json_t *obj;
    json_array_foreach(json_object_get(page, "data"), i, obj) datasets_add_preview_url(r->api, obj);
    api_reply_json(r, 200, page, NULL);
}

void api_datasets_get(api_req *r) {
    json_t *obj = datasets_object(r, r->params[0]);
    if (obj) api_reply_json(r, 200, obj, NULL);
}

void api_datasets_preview(api_req *r) {
    char err[512], root[4096], path[4096];
    /* The row first, so an id is only ever joined into a path once the store knows it. */
    int rc = store_dataset_path(r->api->opts.store, r->params[0], root, sizeof root, err,
                                sizeof err);
    if (rc) {
        api_reply_store_error(r, rc, NULL, err);
        return;
    }
    if (!datasets_has_preview(r->api, r->params[0], path, sizeof path)) {
        api_reply_error(r, 404, "not_found", NULL, "dataset %s has no preview: it was uploaded "
                        "before previews were made; upload it again to get one", r->params[0]);
        return;
    }
    api_serve_file(r, path, "image/png", NULL, NULL);
}

/* The latent caches encoded from the dataset in dir (DATA/datasets/<id>) are of no use once it
 * is gone. No job can be encoding it: the row was deleted only because no queued or
 * running job uses the dataset, and no new job can name it. A failure is logged; the dataset is
 * deleted all the same. */
static void datasets_remove_latents(const dt_api *a, const char *dir) {
    char root[4096], err[512];
    if (api_data_path(a, root, sizeof root, "%s", DT_LAYOUT_LATENTS)) return;
    if (latents_remove_dataset(root, dir, err, sizeof err) < 0)
        fprintf(stderr, "difftune serve: deleting a dataset: %s\n", err);
}

void api_datasets_delete(api_req *r) {
    api_catalog_delete(r, "dataset", DT_LAYOUT_DATASETS, store_dataset_delete,
                       datasets_remove_latents);
}
