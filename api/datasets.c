/* datasets.c — the dataset resource: upload (tar or zip of an image folder or IDX files,
 * validated before it is stored), list, get, delete. */
#include <stdio.h>
#include <string.h>

#include "http.h"
#include "ingest.h"
#include "layout.h"

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
    dt_ingest_limits lim = {.max_bytes = r->api->opts.max_upload_bytes * 4};
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
    if (rc) {
        api_reply_error(r, 500, "internal_error", NULL, "%s", err);
        return;
    }
    dt_dataset_new d = {.id = id, .name = name, .path = info.root, .format = info.format,
                        .images = info.images, .classes = info.classes,
                        .class_names = info.class_names, .bytes = info.bytes};
    char stored[DT_STORE_ID_MAX];
    rc = store_dataset_create(r->api->opts.store, &d, stored, err, sizeof err);
    json_decref(info.class_names);
    if (rc) {
        ingest_remove_tree(dest);
        api_reply_store_error(r, rc, NULL, err);
        return;
    }
    api_reply_created(r, "/datasets", id, store_dataset_get);
}

void api_datasets_list(api_req *r) { api_catalog_list(r, "ds_", store_dataset_list); }

void api_datasets_get(api_req *r) { api_catalog_get(r, store_dataset_get); }

void api_datasets_delete(api_req *r) {
    api_catalog_delete(r, "dataset", DT_LAYOUT_DATASETS, store_dataset_delete);
}
