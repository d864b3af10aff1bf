/* test_ingest.c — uploads: safe archive extraction (tar, tar.gz, zip), locating and validating
 * image-folder and IDX datasets with their class counts and preview grid, refusal of unsafe or
 * broken archives with the destination removed, limits, and validation of safetensors DiT
 * checkpoints and difftune classifiers.
 *
 * Archives are built here with libarchive's write side from PNGs written by the engine, so each
 * case controls exactly which members (and which hostile ones) an archive holds.
 */
#include "check.h"
#include "checkpoint.h"
#include "classifier.h"
#include "dataset.h"
#include "fsutil.h"
#include "image.h"
#include "ingest.h"
#include "ingest_preview.h"
#include "safetensors.h"

#include <archive.h>
#include <archive_entry.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmp[1024];
static char err[2048];

static void write_bytes(const char *path, const void *b, size_t n) {
    FILE *fp = fopen(path, "wb");
    if (!fp || fwrite(b, 1, n, fp) != n) { perror(path); exit(2); }
    fclose(fp);
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint8_t rand_byte(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint8_t)(rng_state >> 24);
}

static uint8_t *random_bytes(size_t n) {
    uint8_t *b = malloc(n);
    for (size_t i = 0; i < n; i++) b[i] = rand_byte();
    return b;
}

/* The bytes of a w x h RGB PNG of random pixels, written by the engine's image writer; *pix_out
 * (may be NULL) receives the pixels (h, w, 3), which the caller frees. */
static uint8_t *make_png_keep(int w, int h, size_t *len, uint8_t **pix_out) {
    uint8_t *pix = random_bytes((size_t)w * h * 3);
    char *path = check_path(tmp, "make.png");
    if (image_write_png(path, pix, w, h, 3, err, sizeof err) != 0) {
        fprintf(stderr, "image_write_png: %s\n", err);
        exit(2);
    }
    if (pix_out) *pix_out = pix;
    else free(pix);
    uint8_t *b = check_read_file(path, len);
    unlink(path);
    return b;
}

static uint8_t *make_png(int w, int h, size_t *len) { return make_png_keep(w, h, len, NULL); }

/* ---- building archives ----------------------------------------------------------------------- */

enum { M_FILE, M_DIR, M_SYMLINK, M_HARDLINK, M_FIFO };

typedef struct {
    const char *name;
    int type;
    const void *data;  /* M_FILE */
    size_t len;
    const char *link;  /* M_SYMLINK, M_HARDLINK */
} member;

static void la_check(int rc, struct archive *a, const char *what) {
    if (rc != ARCHIVE_OK) {
        fprintf(stderr, "libarchive %s: %s\n", what, archive_error_string(a));
        exit(2);
    }
}

/* Writes members to path as kind "tar", "tar.gz" or "zip". */
static void write_archive(const char *path, const char *kind, const member *ms, int n) {
    struct archive *a = archive_write_new();
    if (!strcmp(kind, "zip")) {
        la_check(archive_write_set_format_zip(a), a, "zip");
    } else {
        la_check(archive_write_set_format_pax_restricted(a), a, "pax");
        if (!strcmp(kind, "tar.gz")) la_check(archive_write_add_filter_gzip(a), a, "gzip");
    }
    la_check(archive_write_open_filename(a, path), a, "open");
    for (int i = 0; i < n; i++) {
        struct archive_entry *e = archive_entry_new();
        archive_entry_set_pathname(e, ms[i].name);
        archive_entry_set_perm(e, ms[i].type == M_DIR ? 0755 : 0644);
        switch (ms[i].type) {
        case M_FILE: archive_entry_set_filetype(e, AE_IFREG); archive_entry_set_size(e, (la_int64_t)ms[i].len); break;
        case M_DIR: archive_entry_set_filetype(e, AE_IFDIR); break;
        case M_SYMLINK: archive_entry_set_filetype(e, AE_IFLNK); archive_entry_set_symlink(e, ms[i].link); break;
        case M_HARDLINK: archive_entry_set_filetype(e, AE_IFREG); archive_entry_set_hardlink(e, ms[i].link); break;
        case M_FIFO: archive_entry_set_filetype(e, AE_IFIFO); break;
        }
        la_check(archive_write_header(a, e), a, "header");
        if (ms[i].type == M_FILE && ms[i].len &&
            archive_write_data(a, ms[i].data, ms[i].len) != (la_ssize_t)ms[i].len)
            la_check(ARCHIVE_FATAL, a, "data");
        archive_entry_free(e);
    }
    la_check(archive_write_close(a), a, "close");
    archive_write_free(a);
}

/* PNGs shared by the dataset cases (different sizes, so center cropping runs). */
static uint8_t *png_a, *png_b, *png_c;
static size_t png_a_len, png_b_len, png_c_len;

static int json_str_at(const json_t *arr, size_t i, const char *want) {
    const char *s = json_string_value(json_array_get(arr, i));
    return s && !strcmp(s, want);
}

/* arr is exactly the integers want[0..n). */
static int json_ints_are(const json_t *arr, const int *want, size_t n) {
    if (json_array_size(arr) != n) return 0;
    for (size_t i = 0; i < n; i++)
        if (!json_is_integer(json_array_get(arr, i)) ||
            json_integer_value(json_array_get(arr, i)) != want[i])
            return 0;
    return 1;
}

/* ---- the preview grid ------------------------------------------------------------------------ */

#define TILE INGEST_PREVIEW_TILE
#define STEP (INGEST_PREVIEW_TILE + INGEST_PREVIEW_GAP)

/* The preview ingest wrote into dest, decoded as (h, w, 3), after checking it is a PNG of rows
 * x cols tiles. NULL (a failure recorded) when it is missing or of another size. */
static uint8_t *load_preview(const char *dest, int rows, int cols, const char *what) {
    char path[1400];
    snprintf(path, sizeof path, "%s/%s", dest, DT_INGEST_PREVIEW_NAME);
    size_t len = 0;
    uint8_t *bytes = check_read_file(path, &len);
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    CHECK(bytes && len > 8 && !memcmp(bytes, sig, 8), "%s: the preview is not a PNG", what);
    free(bytes);
    uint8_t *pix = NULL;
    int w = 0, h = 0;
    if (image_load(path, 3, &pix, &w, &h, err, sizeof err) != 0) {
        CHECK(0, "%s: preview does not decode: %s", what, err);
        return NULL;
    }
    int want_w = INGEST_PREVIEW_GAP + cols * STEP, want_h = INGEST_PREVIEW_GAP + rows * STEP;
    CHECK(w == want_w && h == want_h, "%s: preview %dx%d, want %dx%d", what, w, h, want_w, want_h);
    if (w != want_w || h != want_h) {
        free(pix);
        return NULL;
    }
    return pix;
}

/* 1 when the tile at (row, col) of grid (gw wide) is src (h, w, c) center-cropped to a tile,
 * grey replicated. */
static int tile_is(const uint8_t *grid, int gw, int row, int col, const uint8_t *src, int w,
                   int h, int c) {
    uint8_t crop[TILE * TILE * 3];
    if (image_center_crop(src, w, h, c, crop, TILE) != 0) return 0;
    int x0 = INGEST_PREVIEW_GAP + col * STEP, y0 = INGEST_PREVIEW_GAP + row * STEP;
    for (int y = 0; y < TILE; y++)
        for (int x = 0; x < TILE; x++)
            for (int ch = 0; ch < 3; ch++)
                if (grid[((size_t)(y0 + y) * gw + x0 + x) * 3 + ch] !=
                    crop[(y * TILE + x) * c + (c == 1 ? 0 : ch)])
                    return 0;
    return 1;
}

/* 1 when the tile at (row, col) is all background grey. */
static int tile_is_empty(const uint8_t *grid, int gw, int row, int col) {
    int x0 = INGEST_PREVIEW_GAP + col * STEP, y0 = INGEST_PREVIEW_GAP + row * STEP;
    for (int y = 0; y < TILE; y++)
        for (int x = 0; x < TILE * 3; x++)
            if (grid[((size_t)(y0 + y) * gw + x0) * 3 + x] != 128) return 0;
    return 1;
}

/* The loader reads the dataset at root with the preview beside it as it did at ingest. */
static void check_loads_with_preview(const char *root, int64_t images, const char *what) {
    dt_dataset loaded;
    int rc = dataset_load(&loaded, root, 8, 3, err, sizeof err);
    CHECK(rc == 0 && loaded.n == images, "%s: reloading with the preview: rc %d, %d images, want "
          "%lld (%s)", what, rc, loaded.n, (long long)images, rc ? err : "");
    dataset_free(&loaded);
}

/* Runs ingest_dataset on archive into a fresh dest "<tmp>/<dest_name>" and expects a refusal
 * with `code` whose message contains `needle`; the destination must be gone afterwards. */
static void expect_refused(const char *archive, const char *dest_name, const dt_ingest_limits *lim,
                           int code, const char *needle) {
    char dest[1200];
    snprintf(dest, sizeof dest, "%s/%s", tmp, dest_name);
    dt_ingest_dataset ds;
    err[0] = '\0';
    int rc = ingest_dataset(archive, dest, lim, &ds, err, sizeof err);
    CHECK(rc == code, "%s: code %d, want %d (%s)", dest_name, rc, code, err);
    CHECK(strstr(err, needle) != NULL, "%s: message '%s' lacks '%s'", dest_name, err, needle);
    CHECK(!strstr(err, tmp), "%s: message '%s' shows the server path", dest_name, err);
    CHECK(!fs_exists(dest), "%s: destination left behind after a failure", dest_name);
    CHECK(ds.class_names == NULL && ds.class_counts == NULL && ds.images == 0,
          "%s: output not zeroed", dest_name);
    if (rc == DT_INGEST_OK) { ingest_dataset_clear(&ds); ingest_remove_tree(dest); }
}

/* ---- datasets that are accepted -------------------------------------------------------------- */

static void test_image_folder_tar(void) {
    member ms[] = {
        {"dogs/", M_DIR, 0, 0, 0},
        {"dogs/d1.png", M_FILE, png_a, png_a_len, 0},
        {"cats/c1.png", M_FILE, png_b, png_b_len, 0}, /* parent folder created implicitly */
        {"cats/c2.PNG", M_FILE, png_c, png_c_len, 0},
        {"cats/notes.txt", M_FILE, "hello", 5, 0},
    };
    char *arc = check_path(tmp, "folder.tar"), *dest = check_path(tmp, "uploads/ds_folder");
    write_archive(arc, "tar", ms, 5);
    dt_ingest_dataset ds;
    int rc = ingest_dataset(arc, dest, NULL, &ds, err, sizeof err);
    CHECK(rc == DT_INGEST_OK, "image folder tar: %d %s", rc, err);
    CHECK(!strcmp(ds.format, "image_folder"), "format %s", ds.format);
    CHECK(!strcmp(ds.root, dest), "root %s, want %s", ds.root, dest);
    CHECK(ds.images == 3 && ds.classes == 2, "images %lld classes %lld", (long long)ds.images,
          (long long)ds.classes);
    CHECK(json_array_size(ds.class_names) == 2 && json_str_at(ds.class_names, 0, "cats") &&
          json_str_at(ds.class_names, 1, "dogs"), "class names not [cats, dogs]");
    CHECK(json_ints_are(ds.class_counts, (int[]){2, 1}, 2), "class counts not [2, 1]");
    CHECK(ds.bytes == (int64_t)(png_a_len + png_b_len + png_c_len + 5), "bytes %lld",
          (long long)ds.bytes);
    /* root is dest here: the preview lies beside the class folders, and the loader skips it. */
    check_loads_with_preview(ds.root, ds.images, "image folder");
    uint8_t *grid = load_preview(dest, 2, 2, "image folder");
    CHECK(grid && tile_is_empty(grid, 2 + 2 * STEP, 1, 1), "dogs' second tile is not empty");
    free(grid);
    size_t len = 0;
    char on_disk[1400];
    snprintf(on_disk, sizeof on_disk, "%s/cats/c1.png", dest);
    uint8_t *b = check_read_file(on_disk, &len);
    CHECK(b && len == png_b_len && !memcmp(b, png_b, len), "cats/c1.png not extracted intact");
    free(b);
    ingest_dataset_clear(&ds);
    /* A second upload to the same destination must not touch the first. */
    rc = ingest_dataset(arc, dest, NULL, &ds, err, sizeof err);
    CHECK(rc == DT_INGEST_ERROR, "existing destination: %d %s", rc, err);
    CHECK(fs_exists(on_disk), "existing destination was damaged");
}

static void test_wrapped_tar_gz(void) {
    member ms[] = {
        {"export/", M_DIR, 0, 0, 0},
        {"export/mnist_png/b/x.png", M_FILE, png_a, png_a_len, 0},
        {"export/mnist_png/a/y.png", M_FILE, png_b, png_b_len, 0},
        {"export/mnist_png/README.md", M_FILE, "readme", 6, 0},
    };
    char *arc = check_path(tmp, "wrapped.tgz"), *dest = check_path(tmp, "ds_wrapped");
    write_archive(arc, "tar.gz", ms, 4);
    dt_ingest_dataset ds;
    int rc = ingest_dataset(arc, dest, NULL, &ds, err, sizeof err);
    CHECK(rc == DT_INGEST_OK, "wrapped tar.gz: %d %s", rc, err);
    char want[1400];
    snprintf(want, sizeof want, "%s/export/mnist_png", dest);
    CHECK(!strcmp(ds.root, want), "root %s, want %s", ds.root, want);
    CHECK(ds.images == 2 && ds.classes == 2 && json_str_at(ds.class_names, 0, "a"),
          "wrapped: images %lld classes %lld", (long long)ds.images, (long long)ds.classes);
    char preview[1400];
    snprintf(preview, sizeof preview, "%s/%s", dest, DT_INGEST_PREVIEW_NAME);
    CHECK(fs_exists(preview), "wrapped: the preview is not in the upload's folder");
    ingest_dataset_clear(&ds);
    ingest_remove_tree(dest);
}

/* A lone folder holding images is a one-class dataset, not a wrapper to descend into. */
static void test_single_class(void) {
    member ms[] = {
        {"digits/", M_DIR, 0, 0, 0},
        {"digits/one/1.png", M_FILE, png_a, png_a_len, 0},
        {"digits/one/2.png", M_FILE, png_b, png_b_len, 0},
    };
    char *arc = check_path(tmp, "single.tar"), *dest = check_path(tmp, "ds_single");
    write_archive(arc, "tar", ms, 3);
    dt_ingest_dataset ds;
    int rc = ingest_dataset(arc, dest, NULL, &ds, err, sizeof err);
    CHECK(rc == DT_INGEST_OK, "one class: %d %s", rc, err);
    CHECK(ds.classes == 1 && ds.images == 2 && json_str_at(ds.class_names, 0, "one"),
          "one class: classes %lld images %lld", (long long)ds.classes, (long long)ds.images);
    CHECK(json_ints_are(ds.class_counts, (int[]){2}, 1), "one class: class counts not [2]");
    ingest_dataset_clear(&ds);
    ingest_remove_tree(dest);
}

static void test_zip_with_junk(void) {
    size_t junk_len = 300;
    uint8_t *junk = random_bytes(junk_len);
    member ms[] = {
        {"__MACOSX/", M_DIR, 0, 0, 0},
        {"__MACOSX/cats/._c1.png", M_FILE, junk, junk_len, 0},
        {"cats/c1.png", M_FILE, png_a, png_a_len, 0},
        {"cats/._c1.png", M_FILE, junk, junk_len, 0},
        {"cats/.DS_Store", M_FILE, junk, junk_len, 0},
        {"dogs/d1.jpg.png", M_FILE, png_b, png_b_len, 0},
        {"dogs/Thumbs.db", M_FILE, junk, junk_len, 0},
        {"./birds/b1.png", M_FILE, png_c, png_c_len, 0},
        {"birds/__MACOSX", M_DIR, 0, 0, 0},
        {"__MACOSX", M_DIR, 0, 0, 0},
    };
    char *arc = check_path(tmp, "junk.zip"), *dest = check_path(tmp, "ds_zip");
    write_archive(arc, "zip", ms, 10);
    dt_ingest_dataset ds;
    int rc = ingest_dataset(arc, dest, NULL, &ds, err, sizeof err);
    CHECK(rc == DT_INGEST_OK, "zip: %d %s", rc, err);
    CHECK(ds.classes == 3 && ds.images == 3, "zip: classes %lld images %lld",
          (long long)ds.classes, (long long)ds.images);
    CHECK(json_str_at(ds.class_names, 0, "birds") && json_str_at(ds.class_names, 2, "dogs"),
          "zip class names");
    CHECK(ds.bytes == (int64_t)(png_a_len + png_b_len + png_c_len), "zip: junk bytes counted (%lld)",
          (long long)ds.bytes);
    char p[1400];
    snprintf(p, sizeof p, "%s/__MACOSX", dest);
    CHECK(!fs_exists(p), "__MACOSX was extracted");
    snprintf(p, sizeof p, "%s/birds/__MACOSX", dest);
    CHECK(!fs_exists(p), "a nested __MACOSX folder was extracted");
    snprintf(p, sizeof p, "%s/cats/._c1.png", dest);
    CHECK(!fs_exists(p), "AppleDouble file was extracted");
    snprintf(p, sizeof p, "%s/dogs/Thumbs.db", dest);
    CHECK(!fs_exists(p), "Thumbs.db was extracted");
    ingest_dataset_clear(&ds);
    ingest_remove_tree(dest);
    free(junk);
}

/* An IDX file: big-endian magic, dims, then bytes. */
static uint8_t *make_idx(uint32_t magic, const uint32_t *dims, int ndim, const uint8_t *data,
                         size_t n, size_t *len) {
    *len = 4 + 4 * (size_t)ndim + n;
    uint8_t *b = malloc(*len), *p = b;
    uint32_t words[4] = {magic, dims[0], ndim > 1 ? dims[1] : 0, ndim > 2 ? dims[2] : 0};
    for (int w = 0; w <= ndim; w++, p += 4)
        for (int k = 0; k < 4; k++) p[k] = (uint8_t)(words[w] >> (24 - 8 * k));
    memcpy(p, data, n);
    return b;
}

static void test_idx(void) {
    uint32_t idims[3] = {4, 5, 5}, ldims[1] = {4};
    uint8_t *pix = random_bytes(4 * 25), labels[4] = {0, 2, 1, 2};
    size_t ilen, llen, bad_len;
    uint8_t *img = make_idx(0x803, idims, 3, pix, 100, &ilen);
    uint8_t *lab = make_idx(0x801, ldims, 1, labels, 4, &llen);
    member ms[] = {
        {"mnist/train-images-idx3-ubyte", M_FILE, img, ilen, 0},
        {"mnist/train-labels-idx1-ubyte", M_FILE, lab, llen, 0},
    };
    char *arc = check_path(tmp, "idx.tar"), *dest = check_path(tmp, "ds_idx");
    write_archive(arc, "tar", ms, 2);
    dt_ingest_dataset ds;
    int rc = ingest_dataset(arc, dest, NULL, &ds, err, sizeof err);
    CHECK(rc == DT_INGEST_OK, "idx: %d %s", rc, err);
    CHECK(!strcmp(ds.format, "idx"), "idx format %s", ds.format);
    CHECK(ds.images == 4 && ds.classes == 3, "idx: images %lld classes %lld",
          (long long)ds.images, (long long)ds.classes);
    CHECK(json_array_size(ds.class_names) == 3 && json_str_at(ds.class_names, 0, "0") &&
          json_str_at(ds.class_names, 2, "2"), "idx class names");
    CHECK(ds.bytes == (int64_t)(ilen + llen), "idx bytes %lld", (long long)ds.bytes);
    CHECK(json_ints_are(ds.class_counts, (int[]){1, 1, 2}, 3), "idx class counts not [1, 1, 2]");
    /* Rows are labels, columns the label's images in file order: class 2 is images 1 then 3. */
    uint8_t *grid = load_preview(dest, 3, 2, "idx");
    int gw = 2 + 2 * STEP;
    CHECK(grid && tile_is(grid, gw, 0, 0, pix, 5, 5, 1) &&
          tile_is(grid, gw, 1, 0, pix + 50, 5, 5, 1) &&
          tile_is(grid, gw, 2, 0, pix + 25, 5, 5, 1) &&
          tile_is(grid, gw, 2, 1, pix + 75, 5, 5, 1) && tile_is_empty(grid, gw, 0, 1),
          "idx preview tiles");
    free(grid);
    ingest_dataset_clear(&ds);
    ingest_remove_tree(dest);
    /* The IDX files at the top: the preview lies beside them, and the loader still picks them. */
    member top[] = {
        {"train-images-idx3-ubyte", M_FILE, img, ilen, 0},
        {"train-labels-idx1-ubyte", M_FILE, lab, llen, 0},
    };
    write_archive(arc, "tar", top, 2);
    rc = ingest_dataset(arc, dest, NULL, &ds, err, sizeof err);
    CHECK(rc == DT_INGEST_OK && !strcmp(ds.root, dest), "idx at the top: %d %s", rc, err);
    check_loads_with_preview(ds.root, 4, "idx at the top");
    ingest_dataset_clear(&ds);
    ingest_remove_tree(dest);
    /* Three labels for four images: the loader's count check, reported as invalid. */
    uint8_t *bad = make_idx(0x801, (uint32_t[]){3}, 1, labels, 3, &bad_len);
    ms[1].data = bad;
    ms[1].len = bad_len;
    write_archive(arc, "tar", ms, 2);
    expect_refused(arc, "ds_idx_bad", NULL, DT_INGEST_INVALID, "mismatch");
    free(bad);
    free(pix);
    free(img);
    free(lab);
}

/* More classes and images than the grid shows: the first 10 classes, each with its first 8
 * images in the loader's order (sorted names), although the loader decodes in parallel. */
static void test_preview_grid(void) {
    enum { CLASSES = 11, PER = 9, W = 7, H = 5 };
    member ms[CLASSES * PER];
    uint8_t *pngs[CLASSES * PER], *pix[CLASSES * PER];
    char names[CLASSES * PER][32];
    for (int k = 0; k < CLASSES; k++)
        for (int i = 0; i < PER; i++) {
            int m = k * PER + i;
            /* written in reverse, so archive order is not the loader's order */
            int at = CLASSES * PER - 1 - m;
            size_t len = 0;
            snprintf(names[m], sizeof names[m], "c%02d/i%d.png", k, i);
            pngs[m] = make_png_keep(W, H, &len, &pix[m]);
            ms[at] = (member){names[m], M_FILE, pngs[m], len, 0};
        }
    char *arc = check_path(tmp, "grid.tar"), *dest = check_path(tmp, "ds_grid");
    write_archive(arc, "tar", ms, CLASSES * PER);
    dt_ingest_dataset ds;
    int rc = ingest_dataset(arc, dest, NULL, &ds, err, sizeof err);
    CHECK(rc == DT_INGEST_OK && ds.classes == CLASSES, "grid: %d %s", rc, err);
    int counts[CLASSES];
    for (int k = 0; k < CLASSES; k++) counts[k] = PER;
    CHECK(json_ints_are(ds.class_counts, counts, CLASSES), "grid: class counts");
    uint8_t *grid = load_preview(dest, INGEST_PREVIEW_CLASSES, INGEST_PREVIEW_PER_CLASS, "grid");
    int gw = INGEST_PREVIEW_GAP + INGEST_PREVIEW_PER_CLASS * STEP, wrong = 0;
    for (int k = 0; grid && k < INGEST_PREVIEW_CLASSES; k++)
        for (int i = 0; i < INGEST_PREVIEW_PER_CLASS; i++)
            wrong += !tile_is(grid, gw, k, i, pix[k * PER + i], W, H, 3);
    CHECK(grid && wrong == 0, "grid: %d tiles are not the class's first images", wrong);
    CHECK(grid && grid[0] == 128 && grid[(size_t)(gw * STEP + STEP - 1) * 3] == 128,
          "grid: the gaps are not grey");
    free(grid);
    check_loads_with_preview(ds.root, CLASSES * PER, "grid");
    ingest_dataset_clear(&ds);
    ingest_remove_tree(dest);
    for (int m = 0; m < CLASSES * PER; m++) {
        free(pngs[m]);
        free(pix[m]);
    }
}

/* Visits in any order (the folder loader decodes in parallel) keep each class's smallest
 * indices; labels past the grid are dropped. */
static void test_preview_visit_order(void) {
    ingest_preview *p = ingest_preview_new();
    for (int i = 11; i >= 0; i--) {
        uint8_t grey = (uint8_t)(10 * i);
        ingest_preview_visit(p, i, i % 2, &grey, 1, 1, 1);
    }
    uint8_t grey = 1;
    ingest_preview_visit(p, 0, INGEST_PREVIEW_CLASSES, &grey, 1, 1, 1);
    char *path = check_path(tmp, "order.png");
    int rc = ingest_preview_write(p, 2, path, err, sizeof err);
    ingest_preview_free(p);
    uint8_t *grid = NULL;
    int w = 0, h = 0;
    CHECK(rc == DT_INGEST_OK && image_load(path, 3, &grid, &w, &h, err, sizeof err) == 0,
          "visit order: %s", err);
    CHECK(w == INGEST_PREVIEW_GAP + 6 * STEP && h == INGEST_PREVIEW_GAP + 2 * STEP,
          "visit order: %dx%d, want 6 columns and 2 rows", w, h);
    int wrong = 0;
    for (int i = 0; grid && w == INGEST_PREVIEW_GAP + 6 * STEP && i < 12; i++) {
        uint8_t want = (uint8_t)(10 * i);
        wrong += !tile_is(grid, w, i % 2, i / 2, &want, 1, 1, 1);
    }
    CHECK(grid && wrong == 0, "visit order: %d tiles out of place", wrong);
    free(grid);
}

/* A hidden entry of the preview's name in the archive is no part of the dataset: it gives way. */
static void test_preview_name_taken(void) {
    char taken[64];
    snprintf(taken, sizeof taken, "%s/x.txt", DT_INGEST_PREVIEW_NAME);
    member ms[] = {
        {taken, M_FILE, "x", 1, 0},
        {"cats/a.png", M_FILE, png_a, png_a_len, 0},
    };
    char *arc = check_path(tmp, "taken.tar"), *dest = check_path(tmp, "ds_taken");
    write_archive(arc, "tar", ms, 2);
    dt_ingest_dataset ds;
    int rc = ingest_dataset(arc, dest, NULL, &ds, err, sizeof err);
    CHECK(rc == DT_INGEST_OK, "a folder in the preview's place: %d %s", rc, err);
    free(load_preview(dest, 1, 1, "a folder in the preview's place"));
    ingest_dataset_clear(&ds);
    ingest_remove_tree(dest);
}

/* ---- archives that are refused --------------------------------------------------------------- */

static void test_not_archives(void) {
    uint8_t *noise = random_bytes(5000);
    char *arc = check_path(tmp, "noise.bin");
    write_bytes(arc, noise, 5000);
    expect_refused(arc, "ds_noise", NULL, DT_INGEST_INVALID, "not a tar or zip archive");
    write_bytes(arc, png_a, png_a_len);
    expect_refused(arc, "ds_png", NULL, DT_INGEST_INVALID, "not a tar or zip archive");
    write_bytes(arc, "", 0);
    expect_refused(arc, "ds_zero", NULL, DT_INGEST_INVALID, "empty");
    write_archive(arc, "tar", NULL, 0);
    expect_refused(arc, "ds_empty_tar", NULL, DT_INGEST_INVALID, "empty");
    member dirs[] = {{"cats/", M_DIR, 0, 0, 0}, {"__MACOSX/._x", M_FILE, "x", 1, 0}};
    write_archive(arc, "zip", dirs, 2);
    expect_refused(arc, "ds_only_dirs", NULL, DT_INGEST_INVALID, "no files");
    free(noise);
}

static void test_truncated(void) {
    member ms[] = {
        {"cats/a.png", M_FILE, png_a, png_a_len, 0},
        {"cats/b.png", M_FILE, png_b, png_b_len, 0},
        {"dogs/c.png", M_FILE, png_c, png_c_len, 0},
    };
    char *arc = check_path(tmp, "trunc.tgz");
    write_archive(arc, "tar.gz", ms, 3);
    size_t len;
    uint8_t *b = check_read_file(arc, &len);
    write_bytes(arc, b, len / 2);
    expect_refused(arc, "ds_trunc", NULL, DT_INGEST_INVALID, "damaged or truncated");
    free(b);
    /* Uncompressed, cut inside the second member's data. */
    write_archive(arc, "tar", ms, 3);
    b = check_read_file(arc, &len);
    size_t a_padded = (png_a_len + 511) / 512 * 512; /* tar: 512-byte header, padded data */
    write_bytes(arc, b, 512 + a_padded + 512 + png_b_len / 2);
    expect_refused(arc, "ds_trunc_tar", NULL, DT_INGEST_INVALID, "'cats/b.png' cannot be read");
    free(b);
}

static void test_unsafe_members(void) {
    char arc[1200];
    snprintf(arc, sizeof arc, "%s/unsafe.tar", tmp);
    member dotdot[] = {
        {"cats/a.png", M_FILE, png_a, png_a_len, 0},
        {"../evil.png", M_FILE, png_b, png_b_len, 0},
    };
    write_archive(arc, "tar", dotdot, 2);
    expect_refused(arc, "ds_dotdot", NULL, DT_INGEST_INVALID, "'../evil.png'");
    CHECK(!fs_exists(check_path(tmp, "evil.png")),
          "../evil.png was written outside the destination");
    dotdot[1].name = "cats/../../evil2.png";
    write_archive(arc, "tar", dotdot, 2);
    expect_refused(arc, "ds_dotdot2", NULL, DT_INGEST_INVALID, "cats/../../evil2.png");
    CHECK(!fs_exists(check_path(tmp, "evil2.png")),
          "evil2.png was written outside the destination");

    /* Beside the scratch folder rather than in it, so that the name (which the message must
     * show) does not contain the destination's path. */
    char abs_name[1200];
    snprintf(abs_name, sizeof abs_name, "%s", tmp);
    snprintf(strrchr(abs_name, '/'), 32, "/abs-ingest.png");
    unlink(abs_name);
    member absolute[] = {{abs_name, M_FILE, png_a, png_a_len, 0}};
    write_archive(arc, "tar", absolute, 1);
    expect_refused(arc, "ds_abs", NULL, DT_INGEST_INVALID, "absolute path");
    CHECK(strstr(err, abs_name) != NULL, "absolute member not named: %s", err);
    CHECK(!fs_exists(abs_name), "absolute member was written");

    member sym[] = {
        {"cats/a.png", M_FILE, png_a, png_a_len, 0},
        {"cats/link.png", M_SYMLINK, 0, 0, "/etc/passwd"},
    };
    write_archive(arc, "tar", sym, 2);
    expect_refused(arc, "ds_symlink", NULL, DT_INGEST_INVALID, "'cats/link.png' is a symbolic link");
    member hard[] = {
        {"cats/a.png", M_FILE, png_a, png_a_len, 0},
        {"cats/hard.png", M_HARDLINK, 0, 0, "cats/a.png"},
    };
    write_archive(arc, "tar", hard, 2);
    expect_refused(arc, "ds_hardlink", NULL, DT_INGEST_INVALID, "'cats/hard.png' is a hard link");
    member fifo[] = {{"cats/pipe.png", M_FIFO, 0, 0, 0}};
    write_archive(arc, "tar", fifo, 1);
    expect_refused(arc, "ds_fifo", NULL, DT_INGEST_INVALID, "'cats/pipe.png' is a FIFO");
    member twice[] = {
        {"cats/a.png", M_FILE, png_a, png_a_len, 0},
        {"cats/a.png", M_FILE, png_b, png_b_len, 0},
    };
    write_archive(arc, "tar", twice, 2);
    expect_refused(arc, "ds_twice", NULL, DT_INGEST_INVALID, "twice");
}

static void test_bad_datasets(void) {
    char *arc = check_path(tmp, "bad.tar");
    uint8_t *noise = random_bytes(700);
    member broken[] = {
        {"cats/a.png", M_FILE, png_a, png_a_len, 0},
        {"cats/broken.png", M_FILE, noise, 700, 0},
        {"dogs/b.png", M_FILE, png_b, png_b_len, 0},
    };
    write_archive(arc, "tar", broken, 3);
    expect_refused(arc, "ds_broken", NULL, DT_INGEST_INVALID, "cats/broken.png");
    member flat[] = {{"notes.txt", M_FILE, "just text", 9, 0}};
    write_archive(arc, "tar", flat, 1);
    expect_refused(arc, "ds_flat", NULL, DT_INGEST_INVALID, "no class subfolders");
    member loose[] = {
        {"cats/a.png", M_FILE, png_a, png_a_len, 0},
        {"dogs/b.png", M_FILE, png_b, png_b_len, 0},
        {"stray.png", M_FILE, png_c, png_c_len, 0},
    };
    write_archive(arc, "tar", loose, 3);
    expect_refused(arc, "ds_loose", NULL, DT_INGEST_INVALID, "'stray.png' is not inside a class folder");
    member empty_class[] = {
        {"cats/a.png", M_FILE, png_a, png_a_len, 0},
        {"dogs/readme.txt", M_FILE, "x", 1, 0},
    };
    write_archive(arc, "tar", empty_class, 2);
    expect_refused(arc, "ds_empty_class", NULL, DT_INGEST_INVALID, "dogs has no images");
    free(noise);
}

static void test_limits(void) {
    member ms[] = {
        {"cats/a.png", M_FILE, png_a, png_a_len, 0},
        {"dogs/b.png", M_FILE, png_b, png_b_len, 0},
        {"dogs/c.png", M_FILE, png_c, png_c_len, 0},
    };
    char *arc = check_path(tmp, "limits.tgz");
    write_archive(arc, "tar.gz", ms, 3);
    int64_t total = (int64_t)(png_a_len + png_b_len + png_c_len);
    dt_ingest_limits tiny = {.max_bytes = 100};
    expect_refused(arc, "ds_bytes", &tiny, DT_INGEST_TOO_LARGE, "limit of 100 bytes");
    dt_ingest_limits one_short = {.max_bytes = total - 1};
    expect_refused(arc, "ds_bytes_short", &one_short, DT_INGEST_TOO_LARGE, "dogs/c.png");
    dt_ingest_limits entries = {.max_entries = 2};
    expect_refused(arc, "ds_entries", &entries, DT_INGEST_TOO_LARGE, "limit of 2 members");
    /* Exactly at both limits is accepted. */
    dt_ingest_limits exact = {.max_bytes = total, .max_entries = 3};
    dt_ingest_dataset ds;
    char *dest = check_path(tmp, "ds_exact");
    int rc = ingest_dataset(arc, dest, &exact, &ds, err, sizeof err);
    CHECK(rc == DT_INGEST_OK && ds.bytes == total, "exact limits: %d %s", rc, err);
    ingest_dataset_clear(&ds);
    ingest_remove_tree(dest);
}

/* ---- models ---------------------------------------------------------------------------------- */

typedef struct {
    const char *rename, *rename_to; /* write this parameter under another name */
    const char *transpose;          /* write this 2-d parameter with its dims swapped */
    const char *extra;              /* add a foreign tensor of this name */
    int no_meta;                    /* no __metadata__ (a converted PyTorch state dict) */
    const char *config;             /* __metadata__.config; NULL = the model's own */
} model_opts;

/* Writes m's parameters (values from host) and pos_embed to path, altered as o says. */
static void write_model(const char *path, const dit_model *m, const float *host, const model_opts *o) {
    int n = m->n_params;
    st_write_tensor *t = calloc((size_t)n + 2, sizeof *t);
    float *pe = malloc(sizeof(float) * (size_t)m->cfg.tokens * m->cfg.hidden);
    dit_pos_embed_host(&m->cfg, pe);
    for (int i = 0; i < n; i++) {
        const dit_param *p = &m->params[i];
        t[i] = (st_write_tensor){p->name, ST_F32, p->ndim, {0}, host + p->offset};
        for (int d = 0; d < p->ndim; d++) t[i].shape[d] = p->shape[d];
        if (o->rename && !strcmp(p->name, o->rename)) t[i].name = o->rename_to;
        if (o->transpose && !strcmp(p->name, o->transpose)) {
            t[i].shape[0] = p->shape[1];
            t[i].shape[1] = p->shape[0];
        }
    }
    t[n] = (st_write_tensor){"pos_embed", ST_F32, 3, {1, m->cfg.tokens, m->cfg.hidden}, pe};
    int count = n + 1;
    if (o->extra) t[count++] = (st_write_tensor){o->extra, ST_F32, 1, {4}, host};
    char *own = checkpoint_config_json(&m->cfg);
    const char *meta[] = {"format", CHECKPOINT_FORMAT, "config", o->config ? o->config : own, NULL};
    if (safetensors_write(path, t, count, o->no_meta ? NULL : meta, err, sizeof err) != 0) {
        fprintf(stderr, "safetensors_write: %s\n", err);
        exit(2);
    }
    free(own);
    free(pe);
    free(t);
}

/* Expects ingest_model to refuse path as invalid with a message containing needle. */
static void expect_model_refused(const char *path, const char *needle, const char *what) {
    dt_ingest_model mo;
    err[0] = '\0';
    int rc = ingest_model(path, NULL, &mo, err, sizeof err);
    CHECK(rc == DT_INGEST_INVALID, "%s: code %d (%s)", what, rc, err);
    CHECK(strstr(err, needle) != NULL, "%s: message '%s' lacks '%s'", what, err, needle);
    CHECK(!strstr(err, tmp), "%s: message '%s' shows the server path", what, err);
    CHECK(mo.config == NULL, "%s: config set on failure", what);
    if (rc == DT_INGEST_OK) json_decref(mo.config);
}

static int json_int_is(const json_t *o, const char *key, json_int_t want) {
    json_t *v = json_object_get(o, key);
    return json_is_integer(v) && json_integer_value(v) == want;
}

static void test_model(dt_backend *be) {
    dit_config c;
    dit_model m;
    if (dit_config_init(&c, 2, 32, 2, 2, 8, 3, 4, 1, err, sizeof err) != 0 ||
        dit_model_init(&m, &c, be, err, sizeof err) != 0) {
        fprintf(stderr, "model: %s\n", err);
        exit(2);
    }
    float *host = malloc(m.num_floats * sizeof *host);
    dit_init_host(&m, host, 7);
    /* adaLN-Zero leaves some tensors zero; fill everything so a mix-up would show. */
    for (size_t i = 0; i < m.num_floats; i++) host[i] += 1e-3f * (float)(i % 97);
    char *dir = check_path(tmp, "ckpt"), path[1400];
    CHECK(checkpoint_save_model(dir, 3, &m, host, host, "{}", err, sizeof err) == 0, "%s", err);
    checkpoint_path(path, sizeof path, dir, 3, "");

    dt_ingest_model mo;
    int rc = ingest_model(path, NULL, &mo, err, sizeof err);
    CHECK(rc == DT_INGEST_OK, "real checkpoint: %d %s", rc, err);
    CHECK(json_int_is(mo.config, "depth", 2) && json_int_is(mo.config, "hidden_size", 32) &&
          json_int_is(mo.config, "num_heads", 2) && json_int_is(mo.config, "patch_size", 2) &&
          json_int_is(mo.config, "image_size", 8) && json_int_is(mo.config, "in_channels", 3) &&
          json_int_is(mo.config, "num_classes", 4) &&
          json_is_true(json_object_get(mo.config, "learn_sigma")), "config read back wrong");
    CHECK(json_object_get(mo.config, "arch") == NULL, "a custom size got a preset arch");
    CHECK(!strcmp(mo.kind, "dit"), "kind %s", mo.kind);
    size_t len = 0;
    uint8_t *bytes = check_read_file(path, &len);
    char want_sha[65];
    fs_sha256_hex(bytes, len, want_sha);
    CHECK(mo.bytes == (int64_t)len, "bytes %lld, file %zu", (long long)mo.bytes, len);
    CHECK(!strcmp(mo.sha256, want_sha), "sha256 %s, want %s", mo.sha256, want_sha);
    json_decref(mo.config);

    char *cut = check_path(tmp, "cut.safetensors");
    write_bytes(cut, bytes, len - 64);
    expect_model_refused(cut, "past the end", "truncated checkpoint");
    free(bytes);

    char *alt = check_path(tmp, "alt.safetensors");
    write_model(alt, &m, host, &(model_opts){0});
    rc = ingest_model(alt, NULL, &mo, err, sizeof err);
    CHECK(rc == DT_INGEST_OK, "rewritten model: %d %s", rc, err);
    json_decref(mo.config);
    write_model(alt, &m, host, &(model_opts){.rename = "blocks.1.mlp.fc1.weight",
                                             .rename_to = "blocks.1.mlp.fc9.weight"});
    expect_model_refused(alt, "missing tensor 'blocks.1.mlp.fc1.weight'", "renamed tensor");
    write_model(alt, &m, host, &(model_opts){.transpose = "blocks.0.attn.qkv.weight"});
    expect_model_refused(alt, "'blocks.0.attn.qkv.weight' has shape [32, 96]; this DiT needs [96, 32]",
                         "mis-shaped tensor");
    write_model(alt, &m, host, &(model_opts){.extra = "lora.A"});
    expect_model_refused(alt, "unexpected tensor 'lora.A'", "foreign tensor");
    write_model(alt, &m, host, &(model_opts){.no_meta = 1});
    expect_model_refused(alt, "head count", "no metadata, hidden size of no preset");
    write_model(alt, &m, host, &(model_opts){.config = "{\"depth\":2,\"hidden_size\":32,"
        "\"num_heads\":2,\"patch_size\":2,\"image_size\":1000000,\"in_channels\":3,"
        "\"num_classes\":4,\"learn_sigma\":true}"});
    expect_model_refused(alt, "image_size 1000000", "absurd image size in the metadata");
    write_model(alt, &m, host, &(model_opts){.config = "{\"depth\":2,\"hidden_size\":64,"
        "\"num_heads\":2,\"patch_size\":2,\"image_size\":8,\"in_channels\":3,"
        "\"num_classes\":4,\"learn_sigma\":true}"});
    expect_model_refused(alt, "the config describes a DiT of", "metadata config far too big");
    write_model(alt, &m, host, &(model_opts){.config = "{\"depth\":2,\"hidden_size\":32,"
        "\"num_heads\":2,\"patch_size\":2,\"image_size\":8,\"in_channels\":3,"
        "\"num_classes\":5,\"learn_sigma\":true}"});
    expect_model_refused(alt, "'y_embedder.embedding_table.weight' has shape [5, 32]; this DiT needs [6, 32]",
                         "metadata config disagreeing with the tensors");

    uint8_t *noise = random_bytes(4096);
    write_bytes(alt, noise, 4096);
    expect_model_refused(alt, "header length", "random bytes");
    free(noise);
    free(host);
    dit_model_free(&m);
}

/* A converted state dict without metadata whose hidden size is a preset's: the config, heads
 * included, is inferred from the shapes. */
static void test_model_inferred(dt_backend *be) {
    dit_config c;
    dit_model m;
    if (dit_config_init(&c, 1, 384, 6, 4, 8, 1, 2, 0, err, sizeof err) != 0 ||
        dit_model_init(&m, &c, be, err, sizeof err) != 0) {
        fprintf(stderr, "model: %s\n", err);
        exit(2);
    }
    float *host = malloc(m.num_floats * sizeof *host);
    dit_init_host(&m, host, 3);
    char *path = check_path(tmp, "converted.safetensors");
    write_model(path, &m, host, &(model_opts){.no_meta = 1});
    dt_ingest_model mo;
    int rc = ingest_model(path, NULL, &mo, err, sizeof err);
    CHECK(rc == DT_INGEST_OK, "converted checkpoint: %d %s", rc, err);
    CHECK(json_int_is(mo.config, "num_heads", 6) && json_int_is(mo.config, "depth", 1) &&
          json_int_is(mo.config, "image_size", 8) && json_int_is(mo.config, "in_channels", 1) &&
          json_int_is(mo.config, "num_classes", 2) &&
          json_is_false(json_object_get(mo.config, "learn_sigma")), "inferred config wrong");
    json_decref(mo.config);
    free(host);
    dit_model_free(&m);
}

/* Rewrites the tensors of the classifier file src to dst: one tensor renamed (rename ->
 * rename_to) or with its first two dimensions swapped (transpose), the metadata as kv (NULL =
 * src's own). */
static void rewrite_classifier(const char *src, const char *dst, const char *rename,
                               const char *rename_to, const char *transpose, const char *const *kv) {
    st_file f = {0};
    if (safetensors_open(&f, src, err, sizeof err) != 0) { fprintf(stderr, "%s\n", err); exit(2); }
    st_write_tensor t[16];
    const char *meta[2 * 16 + 1];
    int nm = 0;
    for (int i = 0; i < f.n && i < 16; i++) {
        const st_tensor *x = &f.tensors[i];
        t[i] = (st_write_tensor){x->name, x->dtype, x->ndim, {0}, f.data + x->offset};
        for (int d = 0; d < x->ndim; d++) t[i].shape[d] = x->shape[d];
        if (rename && !strcmp(x->name, rename)) t[i].name = rename_to;
        if (transpose && !strcmp(x->name, transpose)) {
            t[i].shape[0] = x->shape[1];
            t[i].shape[1] = x->shape[0];
        }
    }
    for (int i = 0; i < f.n_meta && i < 16; i++) {
        meta[nm++] = f.meta_keys[i];
        meta[nm++] = f.meta_values[i];
    }
    meta[nm] = NULL;
    if (safetensors_write(dst, t, f.n, kv ? kv : meta, err, sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        exit(2);
    }
    safetensors_close(&f);
}

/* A difftune classifier is recognised by its metadata, validated by classifier_load and
 * described from its metadata; a broken one is refused naming the tensor. */
static void test_model_classifier(void) {
    /* A tiny grey 8x8 dataset of two classes, trained for one epoch: any file will do. */
    dt_dataset ds = {.n = 6, .C = 1, .H = 8, .W = 8, .num_classes = 2};
    uint8_t images[6 * 64];
    int32_t labels[6] = {0, 0, 0, 1, 1, 1};
    char n0[] = "dots", n1[] = "stripes", *names[2] = {n0, n1};
    for (int i = 0; i < 6 * 64; i++) images[i] = (uint8_t)(i * 37 + (i / 64) * 11);
    ds.images = images;
    ds.labels = labels;
    ds.class_names = names;
    dt_classifier_opts o;
    classifier_opts_defaults(&o);
    o.epochs = 1;
    o.held_out = 0.34;
    char *path = check_path(tmp, "classifier.safetensors");
    CHECK(classifier_train(&ds, &o, path, NULL, NULL, err, sizeof err) == 0, "train: %s", err);

    dt_ingest_model mo;
    int rc = ingest_model(path, NULL, &mo, err, sizeof err);
    CHECK(rc == DT_INGEST_OK, "classifier: %d %s", rc, err);
    if (rc == DT_INGEST_OK) {
        CHECK(!strcmp(mo.kind, "classifier"), "kind %s", mo.kind);
        CHECK(json_int_is(mo.config, "image_size", 8) && json_int_is(mo.config, "channels", 1) &&
              json_int_is(mo.config, "num_classes", 2) &&
              json_int_is(mo.config, "features", CLASSIFIER_FEATURES) &&
              json_is_number(json_object_get(mo.config, "held_out_accuracy")) &&
              json_is_number(json_object_get(mo.config, "train_accuracy")),
              "classifier config read back wrong");
        json_t *cn = json_object_get(mo.config, "class_names");
        CHECK(json_array_size(cn) == 2 &&
              !strcmp(json_string_value(json_array_get(cn, 1)) ? json_string_value(json_array_get(cn, 1)) : "", "stripes"),
              "class names");
        CHECK(mo.sha256[0] && mo.bytes > 0, "hash and size");
        json_decref(mo.config);
    }
    char *alt = check_path(tmp, "classifier_alt.safetensors");
    rewrite_classifier(path, alt, NULL, NULL, NULL, NULL);
    rc = ingest_model(alt, NULL, &mo, err, sizeof err);
    CHECK(rc == DT_INGEST_OK, "rewritten classifier: %d %s", rc, err);
    if (rc == DT_INGEST_OK) json_decref(mo.config);
    rewrite_classifier(path, alt, NULL, NULL, "fc1.weight", NULL);
    expect_model_refused(alt, "tensor 'fc1.weight' has the wrong shape (128, 256)",
                         "classifier with a transposed tensor");
    rewrite_classifier(path, alt, "conv2.weight", "conv2.w", NULL, NULL);
    expect_model_refused(alt, "unexpected tensor 'conv2.w'", "classifier with a renamed tensor");
    const char *dit_like[] = {"format", CHECKPOINT_FORMAT, NULL};
    rewrite_classifier(path, alt, NULL, NULL, NULL, dit_like);
    expect_model_refused(alt, "not a DiT checkpoint",
                         "classifier tensors without the classifier metadata");
    const char *vae[] = {"difftune_kind", "vae", NULL};
    rewrite_classifier(path, alt, NULL, NULL, NULL, vae);
    expect_model_refused(alt, "difftune_kind is \"vae\"", "an unknown difftune_kind");
    const char *classes9[] = {"difftune_kind", "classifier", "image_size", "8", "channels", "1",
                              "num_classes", "9", NULL};
    rewrite_classifier(path, alt, NULL, NULL, NULL, classes9);
    expect_model_refused(alt, "'fc2.weight' has the wrong shape (2, 256)",
                         "metadata class count disagreeing with the tensors");
}

/* Runs the weight generator DIFFTUNE_GEN_<tool> with args writing path; 0, or -1 (recorded). */
static int run_tool(const char *tool, const char *path, const char *args) {
    char var[64], cmd[3000];
    snprintf(var, sizeof var, "DIFFTUNE_GEN_%s", tool);
    const char *exe = getenv(var);
    CHECK(exe && exe[0], "%s is not set: run under ctest (tests/tools)", var);
    if (!exe || !exe[0]) return -1;
    snprintf(cmd, sizeof cmd, "'%s' --out '%s' %s > /dev/null", exe, path, args);
    int rc = system(cmd);
    CHECK(rc == 0, "%s failed (%d)", cmd, rc);
    return rc == 0 ? 0 : -1;
}

/* Expects ingest_model(path, opts) to refuse with code DT_INGEST_INVALID, out.param == param and
 * a message containing needle. */
static void expect_param_refused(const char *path, const dt_ingest_model_opts *opts,
                                 const char *param, const char *needle, const char *what) {
    dt_ingest_model mo;
    err[0] = '\0';
    int rc = ingest_model(path, opts, &mo, err, sizeof err);
    CHECK(rc == DT_INGEST_INVALID, "%s: code %d (%s)", what, rc, err);
    CHECK(mo.param && !strcmp(mo.param, param), "%s: param %s, want %s", what,
          mo.param ? mo.param : "(null)", param);
    CHECK(strstr(err, needle) != NULL, "%s: message '%s' lacks '%s'", what, err, needle);
    if (rc == DT_INGEST_OK) json_decref(mo.config);
}

/* diffusers' DiT transformer file: refused without the input size (naming input_size), accepted
 * with it and then carrying its config, so a second read needs nothing. */
static void test_model_diffusers(void) {
    char *path = check_path(tmp, "diffusers_dit.safetensors");
    if (run_tool("DIT", path, "--layout diffusers --arch DiT-S/2 --depth 2 --input-size 8 "
                 "--classes 10 --dtype bf16"))
        return;
    expect_param_refused(path, NULL, "input_size", "input_size query parameter",
                         "diffusers DiT without input_size");
    expect_param_refused(path, &(dt_ingest_model_opts){.input_size = 7}, "input_size",
                         "multiple of the DiT's patch size 2", "an input size of no whole patches");
    dt_ingest_model mo;
    int rc = ingest_model(path, &(dt_ingest_model_opts){.input_size = 8}, &mo, err, sizeof err);
    CHECK(rc == DT_INGEST_OK, "diffusers DiT with input_size: %d %s", rc, err);
    if (rc == DT_INGEST_OK) {
        CHECK(!strcmp(mo.kind, "dit"), "kind %s", mo.kind);
        CHECK(json_int_is(mo.config, "image_size", 8) && json_int_is(mo.config, "depth", 2) &&
              json_int_is(mo.config, "hidden_size", 384) && json_int_is(mo.config, "num_heads", 6) &&
              json_int_is(mo.config, "num_classes", 10) &&
              !strcmp(json_string_value(json_object_get(mo.config, "layout")) ?
                      json_string_value(json_object_get(mo.config, "layout")) : "", "diffusers"),
              "diffusers config read back wrong");
        size_t len = 0;
        uint8_t *bytes = check_read_file(path, &len);
        char want_sha[65] = "";
        if (bytes) fs_sha256_hex(bytes, len, want_sha);
        CHECK(mo.bytes == (int64_t)len && !strcmp(mo.sha256, want_sha), "size and hash are not "
              "the stored (rewritten) file's");
        free(bytes);
        json_decref(mo.config);
    }
    /* the file now says its config: no option needed, a contradicting one refused */
    st_file f = {0};
    CHECK(safetensors_open(&f, path, err, sizeof err) == 0 && safetensors_meta(&f, "config") &&
          safetensors_find(&f, "transformer_blocks.1.attn1.to_v.weight"),
          "the accepted file lacks its config or its diffusers tensors");
    safetensors_close(&f);
    rc = ingest_model(path, NULL, &mo, err, sizeof err);
    CHECK(rc == DT_INGEST_OK && json_int_is(mo.config, "image_size", 8), "second read: %d %s", rc, err);
    if (rc == DT_INGEST_OK) json_decref(mo.config);
    expect_param_refused(path, &(dt_ingest_model_opts){.input_size = 16}, "input_size",
                         "contradicts the file", "a contradicting input_size");
    expect_param_refused(path, &(dt_ingest_model_opts){.num_heads = 3}, "num_heads",
                         "leave num_heads out", "num_heads on a file with a config");

    /* the official layout states its input size in pos_embed */
    char *official = check_path(tmp, "official_dit.safetensors");
    if (run_tool("DIT", official, "--layout official --arch DiT-S/2 --depth 1 --input-size 8 "
                 "--classes 10 --dtype f16"))
        return;
    rc = ingest_model(official, &(dt_ingest_model_opts){.input_size = 8}, &mo, err, sizeof err);
    CHECK(rc == DT_INGEST_OK && json_int_is(mo.config, "image_size", 8) &&
          !strcmp(json_string_value(json_object_get(mo.config, "layout")) ?
                  json_string_value(json_object_get(mo.config, "layout")) : "", "official"),
          "official file with an agreeing input_size: %d %s", rc, err);
    if (rc == DT_INGEST_OK) json_decref(mo.config);
    expect_param_refused(official, &(dt_ingest_model_opts){.input_size = 16}, "input_size",
                         "whose pos_embed says 8", "input_size against pos_embed");
    /* a custom width without metadata takes num_heads */
    char *custom = check_path(tmp, "custom_dit.safetensors");
    if (run_tool("DIT", custom, "--layout diffusers --hidden 64 --heads 4 --patch 2 --depth 1 "
                 "--input-size 8 --classes 3"))
        return;
    expect_param_refused(custom, &(dt_ingest_model_opts){.input_size = 8}, "file", "head count",
                         "custom width without num_heads");
    rc = ingest_model(custom, &(dt_ingest_model_opts){.input_size = 8, .num_heads = 4}, &mo, err, sizeof err);
    CHECK(rc == DT_INGEST_OK && json_int_is(mo.config, "num_heads", 4), "custom width with num_heads: %d %s", rc, err);
    if (rc == DT_INGEST_OK) json_decref(mo.config);
}

/* An SD VAE (diffusers layout) is recognised by its encoder, loaded as a job loads it and
 * described; a damaged one is refused naming the tensor. */
static void test_model_vae(void) {
    char *path = check_path(tmp, "vae.safetensors");
    if (run_tool("VAE", path, "--channels 32,64 --layers 1 --dtype f16")) return;
    dt_ingest_model mo;
    int rc = ingest_model(path, NULL, &mo, err, sizeof err);
    CHECK(rc == DT_INGEST_OK, "vae: %d %s", rc, err);
    if (rc == DT_INGEST_OK) {
        json_t *ch = json_object_get(mo.config, "block_out_channels");
        json_t *scale = json_object_get(mo.config, "scaling_factor");
        CHECK(!strcmp(mo.kind, "vae"), "kind %s", mo.kind);
        CHECK(json_int_is(mo.config, "latent_channels", 4) && json_int_is(mo.config, "layers_per_block", 1) &&
              json_int_is(mo.config, "downsample_factor", 2) && json_array_size(ch) == 2 &&
              json_integer_value(json_array_get(ch, 0)) == 32 &&
              json_integer_value(json_array_get(ch, 1)) == 64 &&
              json_is_real(scale) && fabs(json_real_value(scale) - 0.18215) < 1e-6 &&
              !strcmp(json_string_value(json_object_get(mo.config, "attention_names")) ?
                      json_string_value(json_object_get(mo.config, "attention_names")) : "", "diffusers"),
              "vae config read back wrong");
        CHECK(mo.sha256[0] && mo.bytes > 0, "hash and size");
        json_decref(mo.config);
    }
    expect_param_refused(path, &(dt_ingest_model_opts){.input_size = 32}, "input_size",
                         "only for a DiT", "input_size on a VAE");
    char *legacy = check_path(tmp, "vae_legacy.safetensors");
    if (run_tool("VAE", legacy, "--channels 32,64 --layers 1 --attn legacy --attn-conv")) return;
    rc = ingest_model(legacy, NULL, &mo, err, sizeof err);
    CHECK(rc == DT_INGEST_OK, "legacy vae: %d %s", rc, err);
    if (rc == DT_INGEST_OK) {
        CHECK(!strcmp(json_string_value(json_object_get(mo.config, "attention_names")) ?
                      json_string_value(json_object_get(mo.config, "attention_names")) : "", "legacy"),
              "legacy attention names not reported");
        json_decref(mo.config);
    }
    /* drop one decoder tensor */
    st_file f = {0};
    char *broken = check_path(tmp, "vae_broken.safetensors");
    if (safetensors_open(&f, path, err, sizeof err) == 0) {
        st_write_tensor *t = calloc((size_t)f.n, sizeof *t);
        int n = 0;
        for (int i = 0; i < f.n; i++) {
            const st_tensor *x = &f.tensors[i];
            if (!strcmp(x->name, "decoder.up_blocks.0.resnets.1.conv2.weight")) continue;
            t[n] = (st_write_tensor){x->name, x->dtype, x->ndim, {0}, f.data + x->offset};
            for (int d = 0; d < x->ndim; d++) t[n].shape[d] = x->shape[d];
            n++;
        }
        CHECK(n == f.n - 1, "the dropped tensor is not in the generated VAE");
        CHECK(safetensors_write(broken, t, n, NULL, err, sizeof err) == 0, "%s", err);
        free(t);
        safetensors_close(&f);
        expect_model_refused(broken, "decoder.up_blocks.0.resnets.1.conv2.weight", "vae without a tensor");
    }
}

int main(void) {
    snprintf(tmp, sizeof tmp, "%s", check_tmpdir("ingest"));
    png_a = make_png(12, 10, &png_a_len);
    png_b = make_png(8, 8, &png_b_len);
    png_c = make_png(9, 16, &png_c_len);

    test_image_folder_tar();
    test_wrapped_tar_gz();
    test_single_class();
    test_zip_with_junk();
    test_idx();
    test_preview_grid();
    test_preview_visit_order();
    test_preview_name_taken();
    test_not_archives();
    test_truncated();
    test_unsafe_members();
    test_bad_datasets();
    test_limits();

    dt_backend *be = dt_backend_create("cpu", err, sizeof err);
    if (!be) { fprintf(stderr, "backend: %s\n", err); return 2; }
    test_model(be);
    test_model_inferred(be);
    be->destroy(be);
    test_model_classifier();
    test_model_diffusers();
    test_model_vae();

    free(png_a);
    free(png_b);
    free(png_c);
    return check_done("test_ingest");
}
