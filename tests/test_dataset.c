/* test_dataset.c — image folders, IDX files, preprocessing (center crop, flip, scaling), the
 * synthetic domains, and the PNG grid / quantisation used for samples. */
#include "check.h"
#include "dataset.h"
#include "image.h"
#include "synth.h"

#include <stb/stb_image.h>
#include <stb/stb_image_write.h>

#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *tmp;

static char *path_in(const char *fmt, const char *name) {
    static char buf[8][1400];
    static int next;
    char *p = buf[next++ % 8];
    char rel[512];
    snprintf(rel, sizeof rel, fmt, name);
    snprintf(p, 1400, "%s/%s", tmp, rel);
    return p;
}

static void mkdir_in(const char *rel) {
    if (mkdir(path_in("%s", rel), 0755) != 0) { perror(rel); exit(2); }
}

static void write_bytes(const char *path, const void *b, size_t n) {
    FILE *fp = fopen(path, "wb");
    if (!fp) { perror(path); exit(2); }
    fwrite(b, 1, n, fp);
    fclose(fp);
}

/* A solid (w,h,c) image of one colour. */
static uint8_t *solid(int w, int h, int c, uint8_t r, uint8_t g, uint8_t b, uint8_t a) {
    uint8_t *p = malloc((size_t)w * h * c);
    const uint8_t col[4] = {r, g, b, a};
    for (int i = 0; i < w * h; i++)
        for (int ch = 0; ch < c; ch++) p[i * c + ch] = c == 1 ? r : col[ch];
    return p;
}

static int within(int a, int b, int tol) { return abs(a - b) <= tol; }

/* ---- image folders ---------------------------------------------------------------------------- */

static void test_folder(void) {
    char err[1024];
    mkdir_in("folder");
    mkdir_in("folder/b_cls");
    mkdir_in("folder/a_cls");
    mkdir_in("folder/c_cls");
    mkdir_in("folder/.git");     /* hidden: ignored */
    mkdir_in("folder/a_cls/sub"); /* nested folders are not images */
    write_bytes(path_in("%s", "folder/README.txt"), "hi", 2);
    uint8_t *red = solid(10, 10, 3, 255, 0, 0, 0);
    uint8_t *grey = solid(8, 8, 1, 200, 0, 0, 0);
    uint8_t *rgba = solid(9, 9, 4, 0, 0, 255, 128);
    uint8_t *green = solid(12, 8, 3, 0, 255, 0, 0);
    CHECK(stbi_write_png(path_in("%s", "folder/a_cls/x.png"), 10, 10, 3, red, 30), "png");
    CHECK(stbi_write_jpg(path_in("%s", "folder/a_cls/y.JPG"), 12, 8, 3, green, 95), "jpg");
    write_bytes(path_in("%s", "folder/a_cls/.hidden.png"), "garbage", 7);
    write_bytes(path_in("%s", "folder/a_cls/notes.txt"), "not an image", 12);
    CHECK(stbi_write_png(path_in("%s", "folder/b_cls/g.png"), 8, 8, 1, grey, 8), "grey png");
    CHECK(stbi_write_bmp(path_in("%s", "folder/b_cls/h.bmp"), 10, 10, 3, red), "bmp");
    CHECK(stbi_write_png(path_in("%s", "folder/c_cls/a.jpeg.png"), 9, 9, 4, rgba, 36), "rgba");

    dt_dataset ds;
    int rc = dataset_load(&ds, path_in("%s", "folder"), 8, 3, err, sizeof err);
    CHECK(rc == 0, "load folder: %s", err);
    if (rc == 0) {
        CHECK(ds.n == 5 && ds.num_classes == 3, "n %d classes %d", ds.n, ds.num_classes);
        CHECK(ds.C == 3 && ds.H == 8 && ds.W == 8, "shape %dx%dx%d", ds.C, ds.H, ds.W);
        CHECK(strcmp(ds.class_names[0], "a_cls") == 0 && strcmp(ds.class_names[1], "b_cls") == 0 &&
              strcmp(ds.class_names[2], "c_cls") == 0, "class names not sorted");
        static const int want[5] = {0, 0, 1, 1, 2};
        for (int i = 0; i < 5 && i < ds.n; i++)
            CHECK(ds.labels[i] == want[i], "label[%d] = %d, expected %d", i, ds.labels[i], want[i]);
        const size_t per = 3 * 64;
        const uint8_t *im = ds.images;
        /* image 0: red PNG 10x10 resized to 8x8 stays red; planar layout */
        CHECK(within(im[0], 255, 1) && within(im[64], 0, 1) && within(im[128], 0, 1) &&
              within(im[63], 255, 1), "red png: %d %d %d", im[0], im[64], im[128]);
        /* image 1: green JPEG (lossy) */
        im = ds.images + per;
        CHECK(im[64 + 27] > 220 && im[27] < 40 && im[128 + 27] < 40, "green jpeg: %d %d %d",
              im[27], im[64 + 27], im[128 + 27]);
        /* image 2: grey replicated into three equal planes */
        im = ds.images + 2 * per;
        CHECK(im[5] == 200 && im[64 + 5] == 200 && im[128 + 5] == 200, "grey replicated: %d %d %d",
              im[5], im[64 + 5], im[128 + 5]);
        /* image 3: BMP red */
        im = ds.images + 3 * per;
        CHECK(within(im[9], 255, 1) && within(im[64 + 9], 0, 1), "bmp red: %d %d", im[9], im[73]);
        /* image 4: RGBA, alpha dropped */
        im = ds.images + 4 * per;
        CHECK(within(im[128 + 30], 255, 1) && within(im[30], 0, 1), "rgba blue: %d", im[128 + 30]);
        /* float view */
        float *x = malloc(per * sizeof *x);
        dataset_image_to_float(&ds, 2, 0, x);
        CHECK_CLOSE(x[0], 200 / 127.5 - 1, 1e-6, "grey as float");
        float lo = 1e9f, hi = -1e9f;
        for (int i = 0; i < ds.n; i++) {
            dataset_image_to_float(&ds, i, i & 1, x);
            for (size_t j = 0; j < per; j++) { lo = fminf(lo, x[j]); hi = fmaxf(hi, x[j]); }
        }
        CHECK(lo >= -1.0f && hi <= 1.0f && lo < -0.9f && hi > 0.9f, "float range [%g, %g]", lo, hi);
        free(x);
        dataset_free(&ds);
    }

    /* channel conversion to grey: colour becomes luminance, grey stays */
    rc = dataset_load(&ds, path_in("%s", "folder"), 6, 1, err, sizeof err);
    CHECK(rc == 0, "load grey: %s", err);
    if (rc == 0) {
        CHECK(ds.C == 1 && ds.H == 6 && ds.n == 5, "grey shape C=%d H=%d", ds.C, ds.H);
        int lum_red = (255 * 77) >> 8;  /* ITU-R 601 weights as used by stb_image */
        CHECK(within(ds.images[0], lum_red, 2), "red as grey = %d, expected ~%d", ds.images[0],
              lum_red);
        CHECK(ds.images[2 * 36 + 7] == 200, "grey stays 200: %d", ds.images[2 * 36 + 7]);
        dataset_free(&ds);
    }
    dataset_free(&ds); /* safe twice */
    free(red);
    free(grey);
    free(rgba);
    free(green);
}

static void expect_load_error(const char *path, const char *what, const char *needle) {
    dt_dataset ds;
    char err[1024] = "";
    int rc = dataset_load(&ds, path, 8, 3, err, sizeof err);
    CHECK(rc != 0, "%s: accepted", what);
    CHECK(needle == NULL || strstr(err, needle) != NULL, "%s: message '%s' lacks '%s'", what, err,
          needle);
    CHECK(ds.images == NULL && ds.labels == NULL && ds.n == 0, "%s: dataset not reset", what);
    if (rc == 0) dataset_free(&ds);
}

static void test_folder_errors(void) {
    expect_load_error(path_in("%s", "no-such-dir"), "missing path", "no-such-dir");
    mkdir_in("empty");
    expect_load_error(path_in("%s", "empty"), "empty folder", "no class subfolders");
    mkdir_in("loose");
    uint8_t *px = solid(4, 4, 3, 1, 2, 3, 0);
    CHECK(stbi_write_png(path_in("%s", "loose/a.png"), 4, 4, 3, px, 12), "png");
    expect_load_error(path_in("%s", "loose"), "images but no subfolders", "no class subfolders");

    mkdir_in("noimg");
    mkdir_in("noimg/cat");
    mkdir_in("noimg/dog");
    CHECK(stbi_write_png(path_in("%s", "noimg/cat/1.png"), 4, 4, 3, px, 12), "png");
    write_bytes(path_in("%s", "noimg/dog/readme.txt"), "x", 1);
    expect_load_error(path_in("%s", "noimg"), "class folder without images", "dog");

    mkdir_in("corrupt");
    mkdir_in("corrupt/cat");
    CHECK(stbi_write_png(path_in("%s", "corrupt/cat/1.png"), 4, 4, 3, px, 12), "png");
    write_bytes(path_in("%s", "corrupt/cat/2.png"), "\x89PNG\r\n\x1a\n garbage", 16);
    expect_load_error(path_in("%s", "corrupt"), "corrupt png", "2.png");

    expect_load_error(path_in("%s", "corrupt/cat/1.png"), "a PNG file as dataset path", "IDX");
    free(px);

    /* A BMP header alone claiming 16000 x 16000 pixels: refused from its header, before the
     * decoder allocates (and zero-fills) 768 MB for it. */
    uint8_t bmp[54] = {'B', 'M'};
    const uint32_t fields[][2] = {{10, 54}, {14, 40}, {18, 16000}, {22, 16000}};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        for (int b = 0; b < 4; b++) bmp[fields[i][0] + b] = (uint8_t)(fields[i][1] >> (8 * b));
    bmp[26] = 1;  /* planes */
    bmp[28] = 24; /* bits per pixel */
    mkdir_in("bomb");
    mkdir_in("bomb/cat");
    write_bytes(path_in("%s", "bomb/cat/a.bmp"), bmp, sizeof bmp);
    expect_load_error(path_in("%s", "bomb"), "a 54-byte BMP claiming 16000 x 16000", "16000 x 16000");

    dt_dataset ds;
    char err[256];
    CHECK(dataset_load(&ds, path_in("%s", "loose"), 8, 2, err, sizeof err) != 0, "2 channels");
    CHECK(dataset_load(&ds, path_in("%s", "loose"), 0, 3, err, sizeof err) != 0, "size 0");
}

/* ---- IDX -------------------------------------------------------------------------------------- */

static void put_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}

static uint8_t idx_pixel(int i, int y, int x) { return (uint8_t)(i * 37 + y * 6 + x * 2 + 1); }

static void write_idx_images(const char *path, uint32_t magic, int n, int rows, int cols) {
    size_t len = 16 + (size_t)n * rows * cols;
    uint8_t *b = malloc(len);
    put_be32(b, magic);
    put_be32(b + 4, (uint32_t)n);
    put_be32(b + 8, (uint32_t)rows);
    put_be32(b + 12, (uint32_t)cols);
    for (int i = 0; i < n; i++)
        for (int y = 0; y < rows; y++)
            for (int x = 0; x < cols; x++)
                b[16 + ((size_t)i * rows + y) * cols + x] = idx_pixel(i, y, x);
    write_bytes(path, b, len);
    free(b);
}

static void write_idx_labels(const char *path, uint32_t magic, int n, const uint8_t *labels) {
    uint8_t *b = malloc(8 + (size_t)n);
    put_be32(b, magic);
    put_be32(b + 4, (uint32_t)n);
    memcpy(b + 8, labels, (size_t)n);
    write_bytes(path, b, 8 + (size_t)n);
    free(b);
}

static void check_idx(const dt_dataset *ds, const uint8_t *labels, int n, int channels,
                      const char *what) {
    CHECK(ds->n == n && ds->num_classes == 4 && ds->C == channels && ds->H == 4,
          "%s: n %d classes %d C %d H %d", what, ds->n, ds->num_classes, ds->C, ds->H);
    if (ds->n != n || ds->H != 4) return;
    CHECK(strcmp(ds->class_names[0], "0") == 0 && strcmp(ds->class_names[3], "3") == 0,
          "%s: class names", what);
    int bad = 0;
    for (int i = 0; i < n; i++) {
        CHECK(ds->labels[i] == labels[i], "%s: label %d = %d", what, i, ds->labels[i]);
        /* 6 rows x 4 cols cropped to 4x4: no resize, top = (6-4)/2 = 1, left = 0 */
        for (int c = 0; c < channels; c++)
            for (int y = 0; y < 4; y++)
                for (int x = 0; x < 4; x++)
                    bad += ds->images[(((size_t)i * channels + c) * 4 + y) * 4 + x] !=
                           idx_pixel(i, y + 1, x);
    }
    CHECK(bad == 0, "%s: %d pixels differ from the IDX source", what, bad);
}

static void test_idx(void) {
    char err[1024];
    const uint8_t labels[5] = {3, 0, 1, 3, 2};
    mkdir_in("mnist");
    write_idx_images(path_in("%s", "mnist/train-images-idx3-ubyte"), 0x803, 5, 6, 4);
    write_idx_labels(path_in("%s", "mnist/train-labels-idx1-ubyte"), 0x801, 5, labels);
    /* a test split beside it, with other counts: must not be mixed up with the training split */
    const uint8_t tl[2] = {1, 1};
    write_idx_images(path_in("%s", "mnist/t10k-images-idx3-ubyte"), 0x803, 2, 6, 4);
    write_idx_labels(path_in("%s", "mnist/t10k-labels-idx1-ubyte"), 0x801, 2, tl);

    dt_dataset ds;
    int rc = dataset_load(&ds, path_in("%s", "mnist"), 4, 1, err, sizeof err);
    CHECK(rc == 0, "IDX folder: %s", err);
    if (rc == 0) { check_idx(&ds, labels, 5, 1, "IDX folder"); dataset_free(&ds); }
    rc = dataset_load(&ds, path_in("%s", "mnist/train-images-idx3-ubyte"), 4, 3, err, sizeof err);
    CHECK(rc == 0, "IDX file: %s", err);
    if (rc == 0) { check_idx(&ds, labels, 5, 3, "IDX file, 3 channels"); dataset_free(&ds); }
    rc = dataset_load(&ds, path_in("%s", "mnist/t10k-images-idx3-ubyte"), 4, 1, err, sizeof err);
    CHECK(rc == 0 && ds.n == 2 && ds.num_classes == 2, "t10k file: %s", err);
    if (rc == 0) dataset_free(&ds);

    /* detection is by magic, not by name */
    mkdir_in("oddnames");
    write_idx_images(path_in("%s", "oddnames/pixels.bin"), 0x803, 5, 6, 4);
    write_idx_labels(path_in("%s", "oddnames/answers.bin"), 0x801, 5, labels);
    rc = dataset_load(&ds, path_in("%s", "oddnames"), 4, 1, err, sizeof err);
    CHECK(rc == 0, "IDX with other names: %s", err);
    if (rc == 0) { check_idx(&ds, labels, 5, 1, "IDX other names"); dataset_free(&ds); }

    /* upscaling a small IDX image works too */
    rc = dataset_load(&ds, path_in("%s", "oddnames"), 16, 1, err, sizeof err);
    CHECK(rc == 0 && ds.H == 16 && ds.W == 16, "IDX upscaled: %s", err);
    if (rc == 0) dataset_free(&ds);

    mkdir_in("badmagic");
    write_idx_images(path_in("%s", "badmagic/train-images-idx3-ubyte"), 0x804, 5, 6, 4);
    write_idx_labels(path_in("%s", "badmagic/train-labels-idx1-ubyte"), 0x801, 5, labels);
    expect_load_error(path_in("%s", "badmagic"), "IDX bad magic", "magic");
    expect_load_error(path_in("%s", "badmagic/train-images-idx3-ubyte"), "IDX file bad magic",
                      "magic");

    mkdir_in("badlabels");
    write_idx_images(path_in("%s", "badlabels/train-images-idx3-ubyte"), 0x803, 5, 6, 4);
    write_idx_labels(path_in("%s", "badlabels/train-labels-idx1-ubyte"), 0x800, 5, labels);
    expect_load_error(path_in("%s", "badlabels"), "IDX labels bad magic", "labels");

    mkdir_in("mismatch");
    write_idx_images(path_in("%s", "mismatch/train-images-idx3-ubyte"), 0x803, 5, 6, 4);
    write_idx_labels(path_in("%s", "mismatch/train-labels-idx1-ubyte"), 0x801, 4, labels);
    expect_load_error(path_in("%s", "mismatch"), "IDX count mismatch", "mismatch");

    mkdir_in("trunc");
    write_idx_images(path_in("%s", "trunc/train-images-idx3-ubyte"), 0x803, 5, 6, 4);
    write_idx_labels(path_in("%s", "trunc/train-labels-idx1-ubyte"), 0x801, 5, labels);
    CHECK(truncate(path_in("%s", "trunc/train-images-idx3-ubyte"), 16 + 5 * 24 - 3) == 0, "trunc");
    expect_load_error(path_in("%s", "trunc"), "IDX truncated", "size");

    mkdir_in("nolabels");
    write_idx_images(path_in("%s", "nolabels/train-images-idx3-ubyte"), 0x803, 5, 6, 4);
    expect_load_error(path_in("%s", "nolabels"), "IDX without labels", "labels");

    mkdir_in("gz");
    write_bytes(path_in("%s", "gz/train-images-idx3-ubyte.gz"), "\x1f\x8b\x08\x00", 4);
    expect_load_error(path_in("%s", "gz"), "gzip IDX", "gzip");
}

/* ---- preprocessing ---------------------------------------------------------------------------- */

static void test_center_crop(void) {
    /* 40x20: box-downsampled once to 20x10, then the centre 10x10 = source columns 10..29.
     * Columns 10..29 green, the rest red: the crop must be all green. */
    int w = 40, h = 20;
    uint8_t *src = malloc((size_t)w * h * 3), dst[10 * 10 * 3];
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            int in = x >= 10 && x < 30;
            uint8_t *p = src + ((size_t)y * w + x) * 3;
            p[0] = in ? 0 : 255; p[1] = in ? 255 : 0; p[2] = 0;
        }
    CHECK(image_center_crop(src, w, h, 3, dst, 10) == 0, "crop");
    int bad = 0;
    for (int i = 0; i < 100; i++) bad += dst[i * 3] != 0 || dst[i * 3 + 1] != 255 || dst[i * 3 + 2];
    CHECK(bad == 0, "wide crop: %d pixels not green", bad);

    /* The same, tall (20x40, rows 10..29 green), 1 channel. */
    uint8_t *tall = malloc((size_t)20 * 40), dg[100];
    for (int y = 0; y < 40; y++)
        for (int x = 0; x < 20; x++) tall[y * 20 + x] = (y >= 10 && y < 30) ? 180 : 20;
    CHECK(image_center_crop(tall, 20, 40, 1, dg, 10) == 0, "crop tall");
    bad = 0;
    for (int i = 0; i < 100; i++) bad += dg[i] != 180;
    CHECK(bad == 0, "tall crop: %d pixels differ", bad);

    /* Bicubic path: 30x15 -> 20x10 -> centre columns cover source x in [7.5, 22.5). A green
     * band over x in [6, 24) dominates the crop; its left and right edges are a marker that the
     * crop is centred: both outer columns are equally (un)affected. */
    w = 30; h = 15;
    uint8_t *s2 = malloc((size_t)w * h * 3), d2[10 * 10 * 3];
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            int in = x >= 6 && x < 24;
            uint8_t *p = s2 + ((size_t)y * w + x) * 3;
            p[0] = in ? 0 : 255; p[1] = in ? 255 : 0; p[2] = 0;
        }
    CHECK(image_center_crop(s2, w, h, 3, d2, 10) == 0, "crop bicubic");
    bad = 0;
    for (int y = 0; y < 10; y++)
        for (int x = 1; x < 9; x++) bad += d2[(y * 10 + x) * 3 + 1] < 250 || d2[(y * 10 + x) * 3] > 5;
    CHECK(bad == 0, "bicubic crop: %d interior pixels not green", bad);
    CHECK(abs(d2[0] - d2[9 * 3]) <= 1 && abs(d2[1] - d2[9 * 3 + 1]) <= 1,
          "bicubic crop not symmetric: left %d,%d right %d,%d", d2[0], d2[1], d2[27], d2[28]);

    /* Through the loader: a 48x24 PNG whose central 24x24 square is blue, rest white. */
    mkdir_in("crop");
    mkdir_in("crop/only");
    uint8_t *png = malloc(48 * 24 * 3);
    for (int y = 0; y < 24; y++)
        for (int x = 0; x < 48; x++) {
            int in = x >= 12 && x < 36;
            uint8_t *p = png + ((size_t)y * 48 + x) * 3;
            p[0] = in ? 0 : 255; p[1] = in ? 0 : 255; p[2] = 255;
        }
    CHECK(stbi_write_png(path_in("%s", "crop/only/wide.png"), 48, 24, 3, png, 48 * 3), "png");
    dt_dataset ds;
    char err[512];
    int rc = dataset_load(&ds, path_in("%s", "crop"), 12, 3, err, sizeof err);
    CHECK(rc == 0, "crop load: %s", err);
    if (rc == 0) {
        bad = 0;
        for (int i = 0; i < 144; i++)
            bad += ds.images[i] != 0 || ds.images[144 + i] != 0 || ds.images[288 + i] != 255;
        CHECK(bad == 0, "loaded crop: %d pixels not blue", bad);
        dataset_free(&ds);
    }
    free(src); free(tall); free(s2); free(png);
}

static void test_flip_and_scale(void) {
    uint8_t src[2 * 2 * 3];
    for (int i = 0; i < 12; i++) src[i] = (uint8_t)(i * 23);
    src[0] = 0; src[11] = 255;
    float a[12], b[12];
    dataset_u8_to_float(src, 2, 2, 3, 0, a);
    dataset_u8_to_float(src, 2, 2, 3, 1, b);
    CHECK(a[0] == -1.0f && a[11] == 1.0f, "scaling endpoints %g %g", a[0], a[11]);
    int bad = 0;
    for (int c = 0; c < 2; c++)
        for (int y = 0; y < 2; y++)
            for (int x = 0; x < 3; x++) {
                int i = (c * 2 + y) * 3 + x, j = (c * 2 + y) * 3 + (2 - x);
                bad += a[i] != (float)src[i] / 127.5f - 1.0f;
                bad += b[i] != a[j];
            }
    CHECK(bad == 0, "flip/scale: %d values wrong", bad);

    /* image_quantize inverts the scaling exactly for every byte value */
    float v[256];
    uint8_t q[256];
    for (int i = 0; i < 256; i++) { uint8_t u = (uint8_t)i; dataset_u8_to_float(&u, 1, 1, 1, 0, &v[i]); }
    image_quantize(v, q, 256);
    bad = 0;
    for (int i = 0; i < 256; i++) bad += q[i] != i;
    CHECK(bad == 0, "quantize(u8_to_float(x)) != x for %d values", bad);
    float edge[6] = {-5.0f, 5.0f, 0.0f, NAN, -1.0f, 1.0f};
    uint8_t e[6];
    image_quantize(edge, e, 6);
    CHECK(e[0] == 0 && e[1] == 255 && e[2] == 128 && e[3] == 0 && e[4] == 0 && e[5] == 255,
          "quantize edges %d %d %d %d %d %d", e[0], e[1], e[2], e[3], e[4], e[5]);
}

static void test_grid(void) {
    /* 3 images of 3x4x5, 2 columns: 2*(5+2)+2 = 16 wide, 2*(4+2)+2 = 14 tall */
    float imgs[3 * 3 * 4 * 5];
    for (int i = 0; i < 3 * 60; i++) imgs[i] = -1.0f + 2.0f * (float)(i % 60) / 59.0f + (i / 60) * 0.01f;
    char err[512];
    const char *p = path_in("%s", "grid.png");
    CHECK(image_write_grid(p, imgs, 3, 3, 4, 5, 2, err, sizeof err) == 0, "grid: %s", err);
    int w, h, c;
    uint8_t *g = stbi_load(p, &w, &h, &c, 3);
    CHECK(g && w == 16 && h == 14, "grid is %dx%d", w, h);
    if (g && w == 16 && h == 14) {
        int bad = 0, border_bad = 0;
        uint8_t tile[60];
        for (int i = 0; i < 3; i++) {
            image_quantize(imgs + i * 60, tile, 60);
            int x0 = 2 + (i % 2) * 7, y0 = 2 + (i / 2) * 6;
            for (int ch = 0; ch < 3; ch++)
                for (int y = 0; y < 4; y++)
                    for (int x = 0; x < 5; x++)
                        bad += g[((y0 + y) * 16 + x0 + x) * 3 + ch] != tile[ch * 20 + y * 5 + x];
        }
        for (int x = 0; x < 16; x++)
            for (int ch = 0; ch < 3; ch++)
                border_bad += g[x * 3 + ch] + g[(16 + x) * 3 + ch] + g[(7 * 16 + x) * 3 + ch] +
                              g[(13 * 16 + x) * 3 + ch];
        for (int y = 9; y < 12; y++) border_bad += g[(y * 16 + 10) * 3]; /* the empty 4th tile */
        CHECK(bad == 0, "grid tiles: %d values differ", bad);
        CHECK(border_bad == 0, "grid borders or empty tile not black");
    }
    stbi_image_free(g);
    CHECK(image_write_grid(path_in("%s", "no/such/dir/g.png"), imgs, 1, 3, 4, 5, 1, err,
                           sizeof err) != 0, "grid into a missing folder");
    float one[16];
    for (int i = 0; i < 16; i++) one[i] = 0.0f;
    CHECK(image_write_grid(path_in("%s", "grey.png"), one, 1, 1, 4, 4, 4, err, sizeof err) == 0,
          "grey grid: %s", err);
    g = stbi_load(path_in("%s", "grey.png"), &w, &h, &c, 0);
    CHECK(g && w == 8 && h == 8 && c == 1 && g[2 * 8 + 2] == 128, "grey grid %dx%dx%d", w, h, c);
    stbi_image_free(g);
}

/* ---- synthetic domains ------------------------------------------------------------------------ */

static double border_mean(const uint8_t *rgb, int s) {
    double sum = 0;
    int n = 0;
    for (int i = 0; i < s; i++) {
        const int pts[4][2] = {{0, i}, {s - 1, i}, {i, 0}, {i, s - 1}};
        for (int k = 0; k < 4; k++)
            for (int ch = 0; ch < 3; ch++) { sum += rgb[(pts[k][0] * s + pts[k][1]) * 3 + ch]; n++; }
    }
    return sum / n;
}

static void test_synth(void) {
    const int s = 32;
    uint8_t a[32 * 32 * 3], b[32 * 32 * 3];
    CHECK(synth_styles[0] && synth_styles[1] && strcmp(synth_styles[0], "solid") == 0 &&
          strcmp(synth_styles[1], "outline") == 0, "style names");
    for (int k = 0; k < SYNTH_MAX_CLASSES; k++) CHECK(synth_class_name(k) != NULL, "class %d name", k);
    CHECK(synth_class_name(SYNTH_MAX_CLASSES) == NULL && synth_class_name(-1) == NULL, "bad class");
    CHECK(synth_render("watercolour", 0, s, 1, 0, a) != 0, "unknown style accepted");
    CHECK(synth_render("solid", SYNTH_MAX_CLASSES, s, 1, 0, a) != 0, "class 8 accepted");

    int same = 1, diff_seed = 0, diff_index = 0, style_ok = 0, visible = 0;
    for (int k = 0; k < SYNTH_MAX_CLASSES; k++) {
        for (int i = 0; i < 6; i++) {
            synth_render("solid", k, s, 7, (uint64_t)i, a);
            synth_render("solid", k, s, 7, (uint64_t)i, b);
            same &= memcmp(a, b, sizeof a) == 0;
            synth_render("solid", k, s, 8, (uint64_t)i, b);
            diff_seed += memcmp(a, b, sizeof a) != 0;
            synth_render("solid", k, s, 7, (uint64_t)i + 100, b);
            diff_index += memcmp(a, b, sizeof a) != 0;
            /* dark vs light backgrounds */
            double dark = border_mean(a, s);
            synth_render("outline", k, s, 7, (uint64_t)i, b);
            double light = border_mean(b, s);
            style_ok += dark < 45 && light > 180;
            /* the shape is there: enough pixels far from the background in both styles */
            int fa = 0, fb = 0;
            for (int p = 0; p < s * s; p++) {
                int la = a[p * 3] + a[p * 3 + 1] + a[p * 3 + 2];
                int lb = b[p * 3] + b[p * 3 + 1] + b[p * 3 + 2];
                fa += la > 3 * dark + 150;
                fb += lb < 3 * light - 200;
            }
            visible += fa > s * s / 20 && fb > s * s / 30;
        }
    }
    int total = SYNTH_MAX_CLASSES * 6;
    CHECK(same, "synth is not deterministic");
    CHECK(diff_seed == total, "seed change left %d images equal", total - diff_seed);
    CHECK(diff_index == total, "index change left %d images equal", total - diff_index);
    CHECK(style_ok == total, "styles: only %d of %d have a dark solid and a light outline background",
          style_ok, total);
    CHECK(visible == total, "shape clearly visible in only %d of %d images", visible, total);

    /* the same (seed, index) gives different images for different classes */
    int cls_diff = 1;
    for (int k = 1; k < SYNTH_MAX_CLASSES; k++) {
        synth_render("solid", 0, s, 3, 5, a);
        synth_render("solid", k, s, 3, 5, b);
        cls_diff &= memcmp(a, b, sizeof a) != 0;
    }
    CHECK(cls_diff, "two classes rendered identically");

    /* written folders load back as a dataset, bit for bit at the same size */
    char err[1024];
    const char *dir = path_in("%s", "synth/solid");
    int rc = synth_write_folder(dir, "solid", 4, 3, 16, 11, err, sizeof err);
    CHECK(rc == 0, "synth_write_folder: %s", err);
    dt_dataset ds;
    rc = rc == 0 ? dataset_load(&ds, dir, 16, 3, err, sizeof err) : -1;
    CHECK(rc == 0, "load synth: %s", err);
    if (rc == 0) {
        CHECK(ds.n == 12 && ds.num_classes == 4, "synth dataset n %d classes %d", ds.n, ds.num_classes);
        /* classes 0..3 are circle, square, triangle, cross; folders sort as circle, cross,
         * square, triangle */
        static const int synth_k[4] = {0, 3, 1, 2};
        int mism = 0;
        for (int c = 0; c < 4 && c < ds.num_classes; c++) {
            CHECK(strcmp(ds.class_names[c], synth_class_name(synth_k[c])) == 0, "class %d is %s",
                  c, ds.class_names[c]);
            for (int i = 0; i < 3; i++) {
                const uint8_t *im = ds.images + (size_t)(c * 3 + i) * 3 * 256;
                synth_render("solid", synth_k[c], 16, 11, (uint64_t)i, a);
                for (int p = 0; p < 256; p++)
                    for (int ch = 0; ch < 3; ch++) mism += im[ch * 256 + p] != a[p * 3 + ch];
                CHECK(ds.labels[c * 3 + i] == c, "synth label");
            }
        }
        CHECK(mism == 0, "%d loaded synth pixels differ from synth_render", mism);
        dataset_free(&ds);
    }
    CHECK(synth_write_folder(path_in("%s", "synth/x"), "nope", 2, 1, 16, 0, err, sizeof err) != 0 &&
          strstr(err, "nope"), "unknown style: '%s'", err);
    CHECK(synth_write_folder(path_in("%s", "synth/x"), "solid", 9, 1, 16, 0, err, sizeof err) != 0,
          "9 classes accepted");
    CHECK(synth_write_folder(path_in("%s", "synth/x"), "solid", 2, 0, 16, 0, err, sizeof err) != 0,
          "0 images accepted");
    CHECK(synth_write_folder(path_in("%s", "synth/x"), "solid", 2, 1, 4, 0, err, sizeof err) != 0,
          "size 4 accepted");
    write_bytes(path_in("%s", "synth/file"), "x", 1);
    CHECK(synth_write_folder(path_in("%s", "synth/file/sub"), "solid", 1, 1, 16, 0, err,
                             sizeof err) != 0 && err[0], "folder under a file accepted");
}

int main(void) {
    tmp = check_tmpdir("dataset");
    test_folder();
    test_folder_errors();
    test_idx();
    test_center_crop();
    test_flip_and_scale();
    test_grid();
    test_synth();
    return check_done("test_dataset");
}
