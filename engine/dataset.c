/* dataset.c — image-folder and IDX loaders, preprocessing to the model resolution once.
 *
 * Both loaders first list everything they will read (so the image buffer is allocated once and
 * a bad layout is reported before any decoding), then decode and center-crop each image into its
 * (C,H,W) slot.
 */
#include "errmsg.h"
#include "dataset.h"

#include "image.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#define DS_IDX_IMAGES 0x00000803u
#define DS_IDX_LABELS 0x00000801u

void dataset_free(dt_dataset *ds) {
    if (!ds) return;
    free(ds->images);
    free(ds->labels);
    if (ds->class_names)
        for (int i = 0; i < ds->num_classes; i++) free(ds->class_names[i]);
    free(ds->class_names);
    memset(ds, 0, sizeof *ds);
}

void dataset_u8_to_float(const uint8_t *src, int C, int H, int W, int flip, float *dst) {
    for (int c = 0; c < C; c++)
        for (int y = 0; y < H; y++) {
            const uint8_t *row = src + ((size_t)c * H + y) * W;
            float *out = dst + ((size_t)c * H + y) * W;
            for (int x = 0; x < W; x++)
                out[x] = (float)row[flip ? W - 1 - x : x] / 127.5f - 1.0f;
        }
}

void dataset_image_to_float(const dt_dataset *ds, int i, int flip, float *dst) {
    assert(i >= 0 && i < ds->n);
    size_t sz = (size_t)ds->C * ds->H * ds->W;
    dataset_u8_to_float(ds->images + (size_t)i * sz, ds->C, ds->H, ds->W, flip, dst);
}

/* ---- small helpers --------------------------------------------------------------------------- */

typedef struct {
    char **items;
    int n, cap;
} ds_strlist;

static int ds_list_push(ds_strlist *l, const char *s) {
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 16;
        char **items = realloc(l->items, (size_t)cap * sizeof *items);
        if (!items) return -1;
        l->items = items;
        l->cap = cap;
    }
    char *d = strdup(s);
    if (!d) return -1;
    l->items[l->n++] = d;
    return 0;
}

static void ds_list_free(ds_strlist *l) {
    for (int i = 0; i < l->n; i++) free(l->items[i]);
    free(l->items);
    memset(l, 0, sizeof *l);
}

static int ds_cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void ds_list_sort(ds_strlist *l) {
    if (l->n > 1) qsort(l->items, (size_t)l->n, sizeof *l->items, ds_cmp_str);
}

static char *ds_join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

int dataset_is_image_name(const char *name) {
    const char *dot = strrchr(name, '.');
    if (!dot || dot == name) return 0;
    static const char *const exts[] = {"png", "jpg", "jpeg", "bmp"};
    for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++)
        if (strcasecmp(dot + 1, exts[i]) == 0) return 1;
    return 0;
}

static int ds_contains_ci(const char *s, const char *needle) {
    size_t n = strlen(needle);
    for (; *s; s++)
        if (strncasecmp(s, needle, n) == 0) return 1;
    return 0;
}

/* Lists the non-hidden entries of dir that are directories (want_dirs) or regular files, sorted
 * by name. Returns 0, or -1 with a message. */
static int ds_list_dir(const char *dir, int want_dirs, ds_strlist *out, char *err, size_t errlen) {
    DIR *d = opendir(dir);
    if (!d) {
        dt_errorf(err, errlen, "cannot read folder %s: %s", dir, strerror(errno));
        return -1;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char *full = ds_join(dir, e->d_name);
        struct stat sb;
        int ok = full && stat(full, &sb) == 0;
        free(full);
        if (!ok) continue; /* dangling link or vanished entry: not part of the dataset */
        if (want_dirs ? !S_ISDIR(sb.st_mode) : !S_ISREG(sb.st_mode)) continue;
        if (ds_list_push(out, e->d_name) != 0) {
            closedir(d);
            dt_errorf(err, errlen, "out of memory listing %s", dir);
            return -1;
        }
    }
    closedir(d);
    ds_list_sort(out);
    return 0;
}

/* Allocates ds->images for n images and the class name table. */
static int ds_alloc(dt_dataset *ds, int n, int channels, int size, int num_classes, char *err,
                    size_t errlen) {
    ds->n = n;
    ds->C = channels;
    ds->H = ds->W = size;
    size_t per = (size_t)channels * size * size, total;
    if (__builtin_mul_overflow(per, (size_t)n, &total)) {
        dt_errorf(err, errlen, "dataset of %d images at %dx%d is too large", n, size, size);
        return -1;
    }
    ds->images = malloc(total ? total : 1);
    ds->labels = calloc((size_t)(n ? n : 1), sizeof *ds->labels);
    ds->class_names = calloc((size_t)num_classes, sizeof *ds->class_names);
    if (!ds->images || !ds->labels || !ds->class_names) {
        dt_errorf(err, errlen, "out of memory for %d images at %dx%dx%d (%zu bytes)", n, channels,
               size, size, total);
        return -1;
    }
    ds->num_classes = num_classes;
    return 0;
}

/* Center-crops an interleaved (h,w,c) image to size and stores it planar (C,size,size) in dst,
 * replicating a single source channel when channels is 3. */
static int ds_store(const uint8_t *pix, int w, int h, int c, int channels, int size,
                    uint8_t *dst) {
    uint8_t *crop = malloc((size_t)size * size * c);
    if (!crop) return -1;
    if (image_center_crop(pix, w, h, c, crop, size) != 0) {
        free(crop);
        return -1;
    }
    size_t plane = (size_t)size * size;
    for (int ch = 0; ch < channels; ch++) {
        int sc = c == 1 ? 0 : ch;
        for (size_t i = 0; i < plane; i++) dst[ch * plane + i] = crop[i * c + sc];
    }
    free(crop);
    return 0;
}

/* The caller's dataset_visit_fn and its context; fn NULL = no visitor. */
typedef struct {
    dataset_visit_fn fn;
    void *ctx;
} ds_visitor;

/* ---- image folders --------------------------------------------------------------------------- */

static int ds_load_folder(dt_dataset *ds, const char *root, int size, int channels,
                          const ds_visitor *visit, char *err, size_t errlen) {
    ds_strlist classes = {0};
    ds_strlist *files = NULL;
    char **paths = NULL; /* (n) full paths in dataset order */
    int rc = -1;
    if (ds_list_dir(root, 1, &classes, err, errlen) != 0) goto done;
    if (classes.n == 0) {
        dt_errorf(err, errlen, "%s has no class subfolders; expected one subfolder per class "
               "holding PNG/JPEG/BMP images (or MNIST-style IDX files)", root);
        goto done;
    }
    files = calloc((size_t)classes.n, sizeof *files);
    if (!files) { dt_errorf(err, errlen, "out of memory"); goto done; }
    long total = 0;
    for (int k = 0; k < classes.n; k++) {
        char *dir = ds_join(root, classes.items[k]);
        if (!dir) { dt_errorf(err, errlen, "out of memory"); goto done; }
        ds_strlist all = {0};
        int lrc = ds_list_dir(dir, 0, &all, err, errlen);
        for (int i = 0; lrc == 0 && i < all.n; i++)
            if (dataset_is_image_name(all.items[i]) && ds_list_push(&files[k], all.items[i]) != 0) {
                dt_errorf(err, errlen, "out of memory");
                lrc = -1;
            }
        ds_list_free(&all);
        if (lrc == 0 && files[k].n == 0) {
            dt_errorf(err, errlen, "class folder %s has no images (.png, .jpg, .jpeg or .bmp); "
                   "remove it or add images", dir);
            lrc = -1;
        }
        free(dir);
        if (lrc != 0) goto done;
        total += files[k].n;
        if (total > 0x7fffffffL) { dt_errorf(err, errlen, "%s: too many images", root); goto done; }
    }
    if (ds_alloc(ds, (int)total, channels, size, classes.n, err, errlen) != 0) goto done;
    for (int k = 0; k < classes.n; k++) {
        ds->class_names[k] = strdup(classes.items[k]);
        if (!ds->class_names[k]) { dt_errorf(err, errlen, "out of memory"); goto done; }
    }
    /* Flatten to (path, label) in dataset order, then decode in parallel: large folders are
     * dominated by JPEG/PNG decoding, which is independent per file. */
    paths = calloc((size_t)total, sizeof *paths);
    if (!paths) { dt_errorf(err, errlen, "out of memory"); goto done; }
    int idx = 0;
    for (int k = 0; k < classes.n; k++)
        for (int i = 0; i < files[k].n; i++, idx++) {
            char *dir = ds_join(root, classes.items[k]);
            paths[idx] = dir ? ds_join(dir, files[k].items[i]) : NULL;
            free(dir);
            if (!paths[idx]) { dt_errorf(err, errlen, "out of memory"); goto done; }
            ds->labels[idx] = k;
        }
    size_t per = (size_t)channels * size * size;
    int first_bad = ds->n; /* the lowest failing index wins, so the message is deterministic */
#pragma omp parallel for schedule(dynamic, 16)
    for (int i = 0; i < ds->n; i++) {
        char msg[1024];
        uint8_t *pix = NULL;
        int w, h;
        int lrc = image_load(paths[i], channels, &pix, &w, &h, msg, sizeof msg);
        if (lrc == 0 && visit->fn) {
#pragma omp critical(ds_visit)
            visit->fn(visit->ctx, i, ds->labels[i], pix, w, h, channels);
        }
        if (lrc == 0 && ds_store(pix, w, h, channels, channels, size,
                                 ds->images + (size_t)i * per) != 0) {
            snprintf(msg, sizeof msg, "%s: cannot resize image (out of memory?)", paths[i]);
            lrc = -1;
        }
        free(pix);
        if (lrc != 0) {
#pragma omp critical(ds_load_error)
            if (i < first_bad) {
                first_bad = i;
                dt_errorf(err, errlen, "%s", msg);
            }
        }
    }
    if (first_bad < ds->n) goto done;
    rc = 0;
done:
    if (paths)
        for (int i = 0; i < ds->n; i++) free(paths[i]);
    free(paths);
    if (files)
        for (int k = 0; k < classes.n; k++) ds_list_free(&files[k]);
    free(files);
    ds_list_free(&classes);
    return rc;
}

/* ---- IDX ------------------------------------------------------------------------------------- */

static uint32_t ds_be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Reads the first 4 bytes of path as a big-endian magic; 0 when unreadable or shorter. */
static uint32_t ds_magic(const char *path) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return 0;
    uint8_t b[4];
    size_t got = fread(b, 1, 4, fp);
    fclose(fp);
    return got == 4 ? ds_be32(b) : 0;
}

/* Reads a whole IDX file and checks its magic, dimension count and size. dims receives
 * the ndim sizes; *payload points into *buf. */
static int ds_read_idx(const char *path, uint32_t magic, int ndim, uint32_t *dims, uint8_t **buf,
                       const uint8_t **payload, char *err, size_t errlen) {
    *buf = NULL;
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        dt_errorf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    struct stat sb;
    if (fstat(fileno(fp), &sb) != 0 || sb.st_size < 4 + 4 * ndim) {
        fclose(fp);
        dt_errorf(err, errlen, "%s: too short for an IDX file", path);
        return -1;
    }
    size_t len = (size_t)sb.st_size;
    uint8_t *b = malloc(len);
    if (!b) {
        fclose(fp);
        dt_errorf(err, errlen, "%s: out of memory (%zu bytes)", path, len);
        return -1;
    }
    size_t got = fread(b, 1, len, fp);
    fclose(fp);
    if (got != len) {
        free(b);
        dt_errorf(err, errlen, "%s: read error", path);
        return -1;
    }
    uint32_t m = ds_be32(b);
    if (m != magic) {
        free(b);
        dt_errorf(err, errlen, "%s: bad IDX magic 0x%08x, expected 0x%08x (%s, unsigned bytes)",
               path, m, magic, magic == DS_IDX_IMAGES ? "3-d images" : "1-d labels");
        return -1;
    }
    size_t need = 4 + 4 * (size_t)ndim, count = 1;
    for (int i = 0; i < ndim; i++) {
        dims[i] = ds_be32(b + 4 + 4 * i);
        if (__builtin_mul_overflow(count, (size_t)dims[i], &count)) count = SIZE_MAX;
    }
    if (count == SIZE_MAX || len - need != count) {
        free(b);
        dt_errorf(err, errlen, "%s: size mismatch: header promises %zu data bytes, file has %zu",
               path, count, len - need);
        return -1;
    }
    *buf = b;
    *payload = b + need;
    return 0;
}

static int ds_load_idx(dt_dataset *ds, const char *images_path, const char *labels_path, int size,
                       int channels, const ds_visitor *visit, char *err, size_t errlen) {
    uint8_t *ibuf = NULL, *lbuf = NULL;
    const uint8_t *ipix, *lab;
    uint32_t idims[3], ldims[1];
    int rc = -1;
    if (ds_read_idx(images_path, DS_IDX_IMAGES, 3, idims, &ibuf, &ipix, err, errlen) != 0)
        goto done;
    if (ds_read_idx(labels_path, DS_IDX_LABELS, 1, ldims, &lbuf, &lab, err, errlen) != 0)
        goto done;
    if (idims[0] != ldims[0]) {
        dt_errorf(err, errlen, "IDX count mismatch: %s holds %u images but %s holds %u labels",
               images_path, idims[0], labels_path, ldims[0]);
        goto done;
    }
    if (idims[0] == 0 || idims[0] > 0x7fffffffu || idims[1] == 0 || idims[2] == 0 ||
        idims[1] > 65536 || idims[2] > 65536) {
        dt_errorf(err, errlen, "%s: unusable IDX shape %u x %u x %u", images_path, idims[0],
               idims[1], idims[2]);
        goto done;
    }
    int n = (int)idims[0], rows = (int)idims[1], cols = (int)idims[2];
    int maxl = 0;
    for (int i = 0; i < n; i++)
        if (lab[i] > maxl) maxl = lab[i];
    if (ds_alloc(ds, n, channels, size, maxl + 1, err, errlen) != 0) goto done;
    for (int k = 0; k <= maxl; k++) {
        char name[12];
        snprintf(name, sizeof name, "%d", k);
        ds->class_names[k] = strdup(name);
        if (!ds->class_names[k]) { dt_errorf(err, errlen, "out of memory"); goto done; }
    }
    size_t per = (size_t)channels * size * size, plane = (size_t)rows * cols;
    for (int i = 0; i < n; i++) {
        if (ds_store(ipix + (size_t)i * plane, cols, rows, 1, channels, size,
                     ds->images + (size_t)i * per) != 0) {
            dt_errorf(err, errlen, "%s: cannot resize image %d (out of memory?)", images_path, i);
            goto done;
        }
        ds->labels[i] = lab[i];
        if (visit->fn) visit->fn(visit->ctx, i, lab[i], ipix + (size_t)i * plane, cols, rows, 1);
    }
    rc = 0;
done:
    free(ibuf);
    free(lbuf);
    return rc;
}

static size_t ds_common_prefix(const char *a, const char *b) {
    size_t i = 0;
    while (a[i] && a[i] == b[i]) i++;
    return i;
}

/* Picks the labels file in dir that belongs to images file `img` (the name sharing the longest
 * prefix, e.g. train-labels for train-images). Returns a malloc'd path or NULL (message). */
static char *ds_find_labels(const char *dir, const char *img_name, char *err, size_t errlen) {
    ds_strlist files = {0};
    if (ds_list_dir(dir, 0, &files, err, errlen) != 0) return NULL;
    char *best = NULL;
    size_t best_len = 0;
    for (int i = 0; i < files.n; i++) {
        char *p = ds_join(dir, files.items[i]);
        if (p && ds_magic(p) == DS_IDX_LABELS) {
            size_t l = ds_common_prefix(files.items[i], img_name);
            if (!best || l > best_len) {
                free(best);
                best = p;
                best_len = l;
                continue;
            }
        }
        free(p);
    }
    ds_list_free(&files);
    if (!best)
        dt_errorf(err, errlen, "%s holds an IDX images file (%s) but no IDX labels file (magic "
               "0x00000801) beside it", dir, img_name);
    return best;
}

/* Scans dir for IDX image files. Returns 1 and *img_name (malloc'd) when one was chosen,
 * 0 when the folder holds no IDX files at all, -1 with a message for IDX-looking trouble. */
static int ds_scan_idx(const char *dir, char **img_name, char *err, size_t errlen) {
    ds_strlist files = {0};
    *img_name = NULL;
    if (ds_list_dir(dir, 0, &files, err, errlen) != 0) return -1;
    ds_strlist imgs = {0};
    const char *suspicious = NULL;
    uint32_t suspicious_magic = 0;
    int has_labels = 0, rc = 0;
    for (int i = 0; i < files.n; i++) {
        char *p = ds_join(dir, files.items[i]);
        uint32_t m = p ? ds_magic(p) : 0;
        free(p);
        if (m == DS_IDX_IMAGES) {
            if (ds_list_push(&imgs, files.items[i]) != 0) {
                dt_errorf(err, errlen, "out of memory");
                rc = -1;
                goto done;
            }
        } else if (m == DS_IDX_LABELS) {
            has_labels = 1;
        } else if (!suspicious && !dataset_is_image_name(files.items[i]) &&
                   (ds_contains_ci(files.items[i], "idx") ||
                    ds_contains_ci(files.items[i], "ubyte"))) {
            suspicious = files.items[i];
            suspicious_magic = m;
        }
    }
    if (imgs.n == 0) {
        if (suspicious) {
            size_t l = strlen(suspicious);
            if (l > 3 && strcasecmp(suspicious + l - 3, ".gz") == 0)
                dt_errorf(err, errlen, "%s/%s is gzip-compressed; gunzip the IDX files first",
                       dir, suspicious);
            else
                dt_errorf(err, errlen, "%s/%s looks like an IDX file but has bad magic 0x%08x "
                       "(expected 0x00000803 for images, 0x00000801 for labels)", dir,
                       suspicious, suspicious_magic);
            rc = -1;
        } else if (has_labels) {
            dt_errorf(err, errlen, "%s holds an IDX labels file but no IDX images file (magic "
                   "0x00000803)", dir);
            rc = -1;
        }
        goto done;
    }
    /* Several image sets (train and test): prefer the training set. */
    const char *pick = imgs.n == 1 ? imgs.items[0] : NULL;
    for (int i = 0; !pick && i < imgs.n; i++)
        if (ds_contains_ci(imgs.items[i], "train")) pick = imgs.items[i];
    if (!pick) {
        dt_errorf(err, errlen, "%s holds %d IDX image files and none is named *train*; pass the "
               "images file itself as the dataset path", dir, imgs.n);
        rc = -1;
        goto done;
    }
    *img_name = strdup(pick);
    rc = *img_name ? 1 : -1;
    if (rc < 0) dt_errorf(err, errlen, "out of memory");
done:
    ds_list_free(&imgs);
    ds_list_free(&files);
    return rc;
}

/* ---- entry point ----------------------------------------------------------------------------- */

int dataset_load(dt_dataset *ds, const char *path, int image_size, int channels,
                 char *err, size_t errlen) {
    return dataset_load_visit(ds, path, image_size, channels, NULL, NULL, err, errlen);
}

int dataset_load_visit(dt_dataset *ds, const char *path, int image_size, int channels,
                       dataset_visit_fn visit_fn, void *visit_ctx, char *err, size_t errlen) {
    const ds_visitor visit = {visit_fn, visit_ctx};
    memset(ds, 0, sizeof *ds);
    if (channels != 1 && channels != 3) {
        dt_errorf(err, errlen, "channels must be 1 or 3, not %d", channels);
        return -1;
    }
    if (image_size < 1 || image_size > 4096) {
        dt_errorf(err, errlen, "image size must be in 1..4096, not %d", image_size);
        return -1;
    }
    struct stat sb;
    if (!path || !path[0] || stat(path, &sb) != 0) {
        dt_errorf(err, errlen, "dataset path %s does not exist: %s", path ? path : "(null)",
               strerror(errno));
        return -1;
    }
    int rc;
    if (S_ISREG(sb.st_mode)) {
        /* A file: it must be the images IDX file, with its labels file beside it. */
        uint32_t m = ds_magic(path);
        if (m != DS_IDX_IMAGES) {
            dt_errorf(err, errlen, "%s is a file but not an IDX images file (magic 0x%08x, expected "
                   "0x00000803); a dataset is a folder of class subfolders or IDX files",
                   path, m);
            return -1;
        }
        char *dir = strdup(path);
        if (!dir) { dt_errorf(err, errlen, "out of memory"); return -1; }
        char *slash = strrchr(dir, '/');
        const char *name = path;
        if (!slash) {
            strcpy(dir, ".");
        } else {
            name = path + (slash - dir) + 1;
            if (slash == dir) dir[1] = '\0'; else *slash = '\0';
        }
        char *labels = ds_find_labels(dir, name, err, errlen);
        free(dir);
        if (!labels) return -1;
        rc = ds_load_idx(ds, path, labels, image_size, channels, &visit, err, errlen);
        free(labels);
    } else if (S_ISDIR(sb.st_mode)) {
        char *img = NULL;
        int found = ds_scan_idx(path, &img, err, errlen);
        if (found < 0) return -1;
        if (found == 1) {
            char *ipath = ds_join(path, img);
            char *labels = ipath ? ds_find_labels(path, img, err, errlen) : NULL;
            rc = labels ? ds_load_idx(ds, ipath, labels, image_size, channels, &visit, err, errlen)
                        : -1;
            free(labels);
            free(ipath);
            free(img);
        } else {
            rc = ds_load_folder(ds, path, image_size, channels, &visit, err, errlen);
        }
    } else {
        dt_errorf(err, errlen, "dataset path %s is neither a folder nor a file", path);
        return -1;
    }
    if (rc != 0) dataset_free(ds);
    return rc;
}
