/* image.c — decoding (stb_image), DiT/ADM preprocessing (stb_image_resize) and PNG output
 * (stb_image_write). The stb implementations come from the system libstb; this file only
 * includes their declarations. */
#include "errmsg.h"
#include "image.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <stb_image.h>
#include <stb_image_resize.h>
#include <stb_image_write.h>

int image_load(const char *path, int channels, uint8_t **pixels, int *w, int *h,
               char *err, size_t errlen) {
    *pixels = NULL;
    if (channels != 1 && channels != 3) {
        dt_errorf(err, errlen, "%s: cannot load with %d channels (1 or 3)", path, channels);
        return -1;
    }
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        dt_errorf(err, errlen, "%s: cannot open image: %s", path, strerror(errno));
        return -1;
    }
    int comp = 0;
    /* The size in the header is checked first: 54 bytes of BMP header claiming 16000 x 16000
     * made stb allocate and zero-fill 768 MB for 18 s (a decompression bomb in a dataset
     * upload; fuzz/corpus/ingest/bmp_bomb.tar). stbi_info_from_file rewinds fp. */
    if (stbi_info_from_file(fp, w, h, &comp) && (int64_t)*w * *h > IMAGE_MAX_PIXELS) {
        fclose(fp);
        dt_errorf(err, errlen, "%s: the image is %d x %d pixels, more than the %lld an image may "
                  "have (8192 x 8192); resize it first", path, *w, *h, (long long)IMAGE_MAX_PIXELS);
        return -1;
    }
    /* stbi converts on the fly: grey is replicated, RGB becomes luminance, alpha is dropped. */
    uint8_t *p = stbi_load_from_file(fp, w, h, &comp, channels);
    fclose(fp);
    if (!p) {
        dt_errorf(err, errlen, "%s: cannot decode image (%s); the file is corrupt or in an "
                  "unsupported format", path, stbi_failure_reason());
        return -1;
    }
    *pixels = p;
    return 0;
}

/* Resizes (h,w,c) to (nh,nw,c) into a new buffer, or NULL on allocation failure. */
static uint8_t *image_resize(const uint8_t *src, int w, int h, int c, int nw, int nh,
                             stbir_filter filter) {
    uint8_t *dst = malloc((size_t)nw * nh * c);
    if (!dst) return NULL;
    if (!stbir_resize_uint8_generic(src, w, h, 0, dst, nw, nh, 0, c, STBIR_ALPHA_CHANNEL_NONE, 0,
                                    STBIR_EDGE_CLAMP, filter, STBIR_COLORSPACE_LINEAR, NULL)) {
        free(dst);
        return NULL;
    }
    return dst;
}

int image_center_crop(const uint8_t *src, int w, int h, int c, uint8_t *dst, int size) {
    if (w < 1 || h < 1 || c < 1 || size < 1) return -1;
    uint8_t *cur = NULL; /* owned intermediate, NULL while still reading src */
    const uint8_t *img = src;
    /* Box-downsample by 2 while the short side allows, as ADM does before the bicubic step:
     * a single large bicubic reduction would alias. */
    while ((w < h ? w : h) >= 2 * size) {
        int nw = w / 2, nh = h / 2;
        uint8_t *next = image_resize(img, w, h, c, nw, nh, STBIR_FILTER_BOX);
        free(cur);
        if (!next) return -1;
        cur = next;
        img = cur;
        w = nw;
        h = nh;
    }
    double scale = (double)size / (double)(w < h ? w : h);
    /* Python's round() (half to even), as in the reference; the short side lands on size. */
    int nw = (int)nearbyint(w * scale), nh = (int)nearbyint(h * scale);
    if (w <= h) nw = size; else nh = size;
    if (nw < size) nw = size;
    if (nh < size) nh = size;
    uint8_t *resized;
    if (nw == w && nh == h) {
        resized = NULL;
    } else {
        resized = image_resize(img, w, h, c, nw, nh, STBIR_FILTER_CATMULLROM);
        if (!resized) { free(cur); return -1; }
        img = resized;
    }
    int top = (nh - size) / 2, left = (nw - size) / 2;
    for (int y = 0; y < size; y++)
        memcpy(dst + (size_t)y * size * c, img + ((size_t)(top + y) * nw + left) * c,
               (size_t)size * c);
    free(resized);
    free(cur);
    return 0;
}

int image_write_png(const char *path, const uint8_t *pixels, int w, int h, int c,
                    char *err, size_t errlen) {
    if (w < 1 || h < 1 || (c != 1 && c != 3 && c != 4)) {
        dt_errorf(err, errlen, "%s: cannot write a %dx%dx%d image as PNG", path, w, h, c);
        return -1;
    }
    errno = 0;
    if (!stbi_write_png(path, w, h, c, pixels, w * c)) {
        dt_errorf(err, errlen, "%s: cannot write PNG: %s", path,
                  errno ? strerror(errno) : "encoder failed");
        return -1;
    }
    return 0;
}

void image_quantize(const float *src, uint8_t *dst, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float v = (src[i] + 1.0f) * 127.5f + 0.5f;
        if (!(v > 0.0f)) v = 0.0f; /* also maps NaN to 0 */
        if (v > 255.0f) v = 255.0f;
        dst[i] = (uint8_t)v;
    }
}

int image_write_grid(const char *path, const float *images, int n, int C, int H, int W,
                     int ncols, char *err, size_t errlen) {
    if (n < 1 || (C != 1 && C != 3) || H < 1 || W < 1 || ncols < 1) {
        dt_errorf(err, errlen, "%s: bad grid (%d images of %dx%dx%d, %d columns)", path, n, C, H,
                  W, ncols);
        return -1;
    }
    const int pad = 2;
    if (ncols > n) ncols = n;
    int nrows = (n + ncols - 1) / ncols;
    int gw = ncols * (W + pad) + pad, gh = nrows * (H + pad) + pad;
    size_t plane = (size_t)H * W;
    uint8_t *grid = calloc((size_t)gw * gh * C, 1); /* black background and borders */
    uint8_t *tile = malloc(plane * C);
    if (!grid || !tile) {
        free(grid);
        free(tile);
        dt_errorf(err, errlen, "%s: out of memory for a %dx%d grid", path, gw, gh);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        image_quantize(images + (size_t)i * C * plane, tile, (size_t)C * plane);
        int x0 = pad + (i % ncols) * (W + pad), y0 = pad + (i / ncols) * (H + pad);
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
                for (int ch = 0; ch < C; ch++)
                    grid[((size_t)(y0 + y) * gw + x0 + x) * C + ch] =
                        tile[(size_t)ch * plane + (size_t)y * W + x];
    }
    int rc = image_write_png(path, grid, gw, gh, C, err, errlen);
    free(grid);
    free(tile);
    return rc;
}
