/* ingest_dataset.c — an uploaded dataset archive: extract it, find the dataset inside, and
 * validate it with the engine's own loader so that what is accepted here is exactly what a
 * training job can load.
 *
 * Validation decodes every image at 8x8 (dataset_load), which checks the layout, the class
 * folders, IDX headers and labels while keeping memory small; the preview grid takes its images
 * from that same pass.
 */
#include "ingest.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dataset.h"
#include "errmsg.h"
#include "ingest_preview.h"

#define INGEST_IDX_IMAGES 0x00000803u
#define INGEST_VALIDATE_SIZE 8
#define INGEST_MAX_WRAPPERS 32

/* What one folder holds, counting only what dataset_load looks at (names not starting '.'). */
typedef struct {
    int entries;            /* non-hidden entries of any type */
    int dirs;
    int images;             /* regular files with an image extension */
    int idx_images;         /* regular files starting with the IDX images magic */
    char only_dir[256];     /* the folder's name when it is the sole entry */
    char first_image[256];  /* the smallest image name (for a deterministic message) */
} ingest_dir_info;

/* The first 4 bytes of path as a big-endian number; 0 when shorter or unreadable. */
static uint32_t ingest_magic(const char *path) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return 0;
    unsigned char b[4];
    size_t got = fread(b, 1, 4, fp);
    fclose(fp);
    if (got != 4) return 0;
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

static int ingest_scan_dir(const char *dir, ingest_dir_info *info, char *err, size_t errlen) {
    memset(info, 0, sizeof *info);
    DIR *d = opendir(dir);
    if (!d) {
        dt_errorf(err, errlen, "cannot read the extracted folder %s", dir);
        return DT_INGEST_ERROR;
    }
    struct dirent *e;
    char full[4400];
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        snprintf(full, sizeof full, "%s/%s", dir, e->d_name);
        struct stat sb;
        if (lstat(full, &sb) != 0) continue;
        info->entries++;
        if (S_ISDIR(sb.st_mode)) {
            info->dirs++;
            snprintf(info->only_dir, sizeof info->only_dir, "%s", e->d_name);
        } else if (S_ISREG(sb.st_mode)) {
            if (ingest_magic(full) == INGEST_IDX_IMAGES) info->idx_images++;
            if (dataset_is_image_name(e->d_name)) {
                if (info->images++ == 0 || strcmp(e->d_name, info->first_image) < 0)
                    snprintf(info->first_image, sizeof info->first_image, "%s", e->d_name);
            }
        }
    }
    closedir(d);
    return DT_INGEST_OK;
}

/* Finds the dataset root below dest: descends while a folder holds nothing but one folder that
 * is not itself a class folder (one holding images directly: then it is a one-class dataset).
 * root receives the path, *info what it holds. */
static int ingest_find_root(const char *dest, char *root, size_t cap, ingest_dir_info *info,
                            char *err, size_t errlen) {
    if (snprintf(root, cap, "%s", dest) >= (int)cap) {
        dt_errorf(err, errlen, "destination path too long");
        return DT_INGEST_ERROR;
    }
    int rc = ingest_scan_dir(root, info, err, errlen);
    for (int depth = 0; rc == DT_INGEST_OK && depth < INGEST_MAX_WRAPPERS; depth++) {
        if (info->entries != 1 || info->dirs != 1) break;
        char child[4400];
        snprintf(child, sizeof child, "%s/%s", root, info->only_dir);
        ingest_dir_info inner;
        rc = ingest_scan_dir(child, &inner, err, errlen);
        if (rc != DT_INGEST_OK || inner.images > 0) break;
        if (strlen(child) >= cap) {
            dt_errorf(err, errlen, "the archive's folders are nested too deeply");
            return DT_INGEST_INVALID;
        }
        memcpy(root, child, strlen(child) + 1);
        *info = inner;
    }
    return rc;
}

/* Rewrites err so that it names archive members rather than server paths: "dest/x" becomes
 * "x" and dest itself "the archive". Leaves err as it is when out of memory. */
static void ingest_relativize(char *err, size_t errlen, const char *dest) {
    size_t dl = strlen(dest);
    char *out = errlen && dl ? malloc(errlen) : NULL;
    if (!out) return;
    size_t o = 0;
    for (const char *p = err; *p && o + 1 < errlen;) {
        if (strncmp(p, dest, dl) != 0) {
            out[o++] = *p++;
            continue;
        }
        p += dl;
        if (*p == '/') {
            p++;
            continue;
        }
        for (const char *r = "the archive"; *r && o + 1 < errlen; r++) out[o++] = *r;
    }
    out[o] = '\0';
    memcpy(err, out, o + 1);
    free(out);
}

/* The class names as a JSON array (new reference), or NULL with a message and a code. */
static json_t *ingest_class_names(const dt_dataset *ds, int *rc, char *err, size_t errlen) {
    json_t *names = json_array();
    if (!names) {
        dt_errorf(err, errlen, "out of memory");
        *rc = DT_INGEST_ERROR;
        return NULL;
    }
    for (int k = 0; k < ds->num_classes; k++) {
        /* json_string refuses invalid UTF-8, which only a user's folder name can be here. */
        if (json_array_append_new(names, json_string(ds->class_names[k])) != 0) {
            dt_errorf(err, errlen, "class folder name '%s' is not valid UTF-8; rename it",
                      ds->class_names[k]);
            json_decref(names);
            *rc = DT_INGEST_INVALID;
            return NULL;
        }
    }
    *rc = DT_INGEST_OK;
    return names;
}

/* The number of images of each class as a JSON array (new reference), NULL when out of memory. */
static json_t *ingest_class_counts(const dt_dataset *ds) {
    int64_t *counts = calloc((size_t)ds->num_classes, sizeof *counts);
    json_t *arr = counts ? json_array() : NULL;
    if (arr) {
        for (int i = 0; i < ds->n; i++) counts[ds->labels[i]]++;
        for (int k = 0; k < ds->num_classes; k++)
            if (json_array_append_new(arr, json_integer(counts[k])) != 0) {
                json_decref(arr);
                arr = NULL;
                break;
            }
    }
    free(counts);
    return arr;
}

/* Fills out's format, counts, class names and class counts from the loaded dataset. */
static int ingest_describe(const dt_dataset *ds, int idx, dt_ingest_dataset *out, char *err,
                           size_t errlen) {
    int rc;
    out->class_names = ingest_class_names(ds, &rc, err, errlen);
    if (!out->class_names) return rc;
    out->class_counts = ingest_class_counts(ds);
    if (!out->class_counts) {
        dt_errorf(err, errlen, "out of memory");
        return DT_INGEST_ERROR;
    }
    snprintf(out->format, sizeof out->format, "%s", idx ? "idx" : "image_folder");
    out->images = ds->n;
    out->classes = ds->num_classes;
    return DT_INGEST_OK;
}

/* Finds and validates the dataset extracted under dest, filling out (bytes excepted) and
 * collecting the preview's images while decoding. */
static int ingest_validate(const char *dest, ingest_preview *preview, dt_ingest_dataset *out,
                           char *err, size_t errlen) {
    ingest_dir_info info;
    int rc = ingest_find_root(dest, out->root, sizeof out->root, &info, err, errlen);
    if (rc != DT_INGEST_OK) return rc;
    int idx = info.idx_images > 0;
    if (!idx && info.images > 0) {
        /* dataset_load looks only inside class folders and would silently drop these. */
        dt_errorf(err, errlen, "image '%s/%s' is not inside a class folder; put every image in "
                  "a subfolder named after its class (e.g. cat/0001.png)", out->root,
                  info.first_image);
        return DT_INGEST_INVALID;
    }
    dt_dataset ds;
    if (dataset_load_visit(&ds, out->root, INGEST_VALIDATE_SIZE, 3, ingest_preview_visit, preview,
                           err, errlen) != 0)
        return DT_INGEST_INVALID;
    if (ds.n < 1 || ds.num_classes < 1) {
        dt_errorf(err, errlen, "the dataset in %s has no images", out->root);
        rc = DT_INGEST_INVALID;
    } else {
        rc = ingest_describe(&ds, idx, out, err, errlen);
    }
    dataset_free(&ds);
    return rc;
}

/* Validates what was extracted into dest_dir and writes its preview there. */
static int ingest_accept(const char *dest_dir, dt_ingest_dataset *out, char *err, size_t errlen) {
    ingest_preview *preview = ingest_preview_new();
    if (!preview) {
        dt_errorf(err, errlen, "out of memory");
        return DT_INGEST_ERROR;
    }
    int rc = ingest_validate(dest_dir, preview, out, err, errlen);
    if (rc == DT_INGEST_OK) {
        char path[4400];
        snprintf(path, sizeof path, "%s/%s", dest_dir, DT_INGEST_PREVIEW_NAME);
        rc = ingest_preview_write(preview, (int)out->classes, path, err, errlen);
    }
    ingest_preview_free(preview);
    return rc;
}

void ingest_dataset_clear(dt_ingest_dataset *d) {
    json_decref(d->class_names);
    json_decref(d->class_counts);
    memset(d, 0, sizeof *d);
}

int ingest_dataset(const char *archive_path, const char *dest_dir, const dt_ingest_limits *limits,
                   dt_ingest_dataset *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    int64_t bytes = 0;
    int rc = ingest_extract(archive_path, dest_dir, limits, &bytes, err, errlen);
    if (rc != DT_INGEST_OK) return rc;
    rc = ingest_accept(dest_dir, out, err, errlen);
    if (rc != DT_INGEST_OK) {
        if (rc == DT_INGEST_INVALID) ingest_relativize(err, errlen, dest_dir);
        ingest_dataset_clear(out);
        /* The validation failure is the answer; a removal failure cannot change it. */
        (void)ingest_remove_tree(dest_dir);
        return rc;
    }
    out->bytes = bytes;
    return DT_INGEST_OK;
}
