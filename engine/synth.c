/* synth.c — synthetic shape domains for transfer experiments without downloads.
 *
 * Geometry (centre, size, rotation) is drawn from (seed, class, index) only, independent of the
 * style, so two styles are the same classes under a change of appearance:
 *   solid   — a filled shape in a saturated colour on a dark, nearly uniform background;
 *   outline — the shape's outline in dark ink on a light pastel background with mild noise.
 * Edges are anti-aliased by 4x4 supersampling of an exact inside test per shape.
 */
#include "errmsg.h"
#include "fsutil.h"
#include "synth.h"

#include "image.h"
#include "philox.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

enum { SYNTH_CIRCLE, SYNTH_SQUARE, SYNTH_TRIANGLE, SYNTH_CROSS, SYNTH_DIAMOND, SYNTH_RING,
       SYNTH_STAR, SYNTH_BAR };

static const char *const synth_class_names[SYNTH_MAX_CLASSES] = {
    "circle", "square", "triangle", "cross", "diamond", "ring", "star", "bar",
};

const char *const synth_styles[] = {"solid", "outline", NULL};

/* Streams separating independent random uses: (purpose << 32) | class, plus a block counter for
 * pixel noise. Geometry has no style component on purpose (see the file comment). */
enum { SYNTH_RNG_GEOMETRY = 1, SYNTH_RNG_COLOUR = 2, SYNTH_RNG_COLOUR2 = 4, SYNTH_RNG_NOISE = 8 };
/* (COLOUR and COLOUR2 are offset by the style index, so each needs two slots.) */

#define SYNTH_PI 3.14159265358979323846f

const char *synth_class_name(int k) {
    return k >= 0 && k < SYNTH_MAX_CLASSES ? synth_class_names[k] : NULL;
}

static int synth_style_index(const char *style) {
    for (int i = 0; style && synth_styles[i]; i++)
        if (strcmp(style, synth_styles[i]) == 0) return i;
    return -1;
}

static float synth_unit(uint32_t w) { return (float)(w >> 8) * (1.0f / 16777216.0f); } /* [0,1) */

/* Point-in-polygon by the even-odd rule. */
static int synth_in_polygon(const float *xs, const float *ys, int n, float u, float v) {
    int in = 0;
    for (int i = 0, j = n - 1; i < n; j = i++)
        if ((ys[i] > v) != (ys[j] > v) &&
            u < (xs[j] - xs[i]) * (v - ys[i]) / (ys[j] - ys[i]) + xs[i])
            in = !in;
    return in;
}

/* Whether local point (u,v) lies inside class k's shape. Shapes fit the unit disc. */
static int synth_inside(int k, float u, float v) {
    float au = fabsf(u), av = fabsf(v), rr = u * u + v * v;
    switch (k) {
    case SYNTH_CIRCLE: return rr <= 1.0f;
    case SYNTH_SQUARE: return au <= 0.74f && av <= 0.74f;
    case SYNTH_TRIANGLE: {
        /* Equilateral, apex up (v grows downwards): edges at distance 0.5 from the centre,
         * outward normals at 90, 210 and 330 degrees. */
        const float s = 0.8660254f;
        return v <= 0.5f && (-s * u - 0.5f * v) <= 0.5f && (s * u - 0.5f * v) <= 0.5f;
    }
    case SYNTH_CROSS: return (au <= 0.3f && av <= 1.0f) || (av <= 0.3f && au <= 1.0f);
    case SYNTH_DIAMOND: return au / 0.68f + av <= 1.0f;
    case SYNTH_RING: /* a band with a centre dot, so its outline differs from a circle's */
        return (rr <= 1.0f && rr >= 0.64f * 0.64f) || rr <= 0.32f * 0.32f;
    case SYNTH_STAR: {
        /* five points: outer radius 1, inner 0.42, first point straight up */
        static const float xs[10] = {0.0000000f, 0.2468698f, 0.9510565f, 0.3994437f, 0.5877853f,
                                     0.0000000f, -0.5877853f, -0.3994437f, -0.9510565f, -0.2468698f};
        static const float ys[10] = {-1.0000000f, -0.3397871f, -0.3090170f, 0.1297871f, 0.8090170f,
                                     0.4200000f, 0.8090170f, 0.1297871f, -0.3090170f, -0.3397871f};
        return rr <= 1.0f && synth_in_polygon(xs, ys, 10, u, v);
    }
    case SYNTH_BAR: return au <= 1.0f && av <= 0.24f;
    default: return 0;
    }
}

/* Rotation range (radians, +/-) per class: symmetric shapes keep near their canonical pose so
 * that square and diamond (and cross and an "x") stay distinct classes. */
static float synth_max_rotation(int k) {
    switch (k) {
    case SYNTH_SQUARE: case SYNTH_DIAMOND: case SYNTH_CROSS: return 15.0f * SYNTH_PI / 180.0f;
    case SYNTH_TRIANGLE: return 25.0f * SYNTH_PI / 180.0f;
    case SYNTH_STAR: return 36.0f * SYNTH_PI / 180.0f;
    case SYNTH_BAR: return SYNTH_PI / 2.0f;
    default: return 0.0f;
    }
}

static void synth_hsv(float h, float s, float v, float rgb[3]) {
    h = (h - floorf(h)) * 6.0f;
    int i = (int)h % 6;
    float f = h - floorf(h), p = v * (1 - s), q = v * (1 - s * f), t = v * (1 - s * (1 - f));
    float r, g, b;
    switch (i) {
    case 0: r = v; g = t; b = p; break;
    case 1: r = q; g = v; b = p; break;
    case 2: r = p; g = v; b = t; break;
    case 3: r = p; g = q; b = v; break;
    case 4: r = t; g = p; b = v; break;
    default: r = v; g = p; b = q; break;
    }
    rgb[0] = r * 255.0f;
    rgb[1] = g * 255.0f;
    rgb[2] = b * 255.0f;
}

int synth_render(const char *style, int k, int size, uint64_t seed, uint64_t index, uint8_t *rgb) {
    int st = synth_style_index(style);
    if (st < 0 || k < 0 || k >= SYNTH_MAX_CLASSES || size < 4 || size > 4096 || !rgb) return -1;
    const int outline = st == 1;

    dt_philox4 g = dt_philox_words(seed, ((uint64_t)SYNTH_RNG_GEOMETRY << 32) | (uint64_t)k,
                                   index);
    float S = (float)size;
    float radius = S * (0.20f + 0.175f * synth_unit(g.v[0])); /* diameter 40..75% of size */
    float margin = radius + 0.02f * S;
    float span = S - 2.0f * margin;
    if (span < 0) span = 0;
    float cx = margin + span * synth_unit(g.v[1]), cy = margin + span * synth_unit(g.v[2]);
    float maxrot = synth_max_rotation(k);
    float angle = maxrot * (2.0f * synth_unit(g.v[3]) - 1.0f);
    float ca = cosf(angle), sa = sinf(angle);

    uint64_t cs = ((uint64_t)(SYNTH_RNG_COLOUR + st) << 32) | (uint64_t)k;
    uint64_t cs2 = ((uint64_t)(SYNTH_RNG_COLOUR2 + st) << 32) | (uint64_t)k;
    dt_philox4 c = dt_philox_words(seed, cs, index), c2 = dt_philox_words(seed, cs2, index);
    float fg[3], bg[3], noise_amp;
    if (!outline) {
        synth_hsv(synth_unit(c.v[0]), 0.75f + 0.25f * synth_unit(c.v[1]),
                  0.80f + 0.20f * synth_unit(c.v[2]), fg);
        synth_hsv(synth_unit(c.v[3]), 0.5f, 0.04f + 0.07f * synth_unit(c2.v[0]), bg);
        noise_amp = 2.0f;
    } else {
        synth_hsv(synth_unit(c.v[0]), 0.12f + 0.18f * synth_unit(c.v[1]),
                  0.88f + 0.10f * synth_unit(c.v[2]), bg);
        synth_hsv(synth_unit(c.v[3]), 0.5f * synth_unit(c2.v[0]),
                  0.08f + 0.14f * synth_unit(c2.v[1]), fg);
        noise_amp = 9.0f;
    }

    /* Outline ink width in pixels, converted to shape-local units for the erosion test. */
    float ink = fmaxf(1.25f, 0.075f * S) / radius;
    static const float dir8[8][2] = {{1, 0}, {0.7071f, 0.7071f}, {0, 1}, {-0.7071f, 0.7071f},
                                     {-1, 0}, {-0.7071f, -0.7071f}, {0, -1}, {0.7071f, -0.7071f}};
    const int ss = 4;
    dt_philox4 nw = {{0, 0, 0, 0}};
    for (int y = 0; y < size; y++) {
        for (int x = 0; x < size; x++) {
            int hits = 0;
            for (int sy = 0; sy < ss; sy++)
                for (int sx = 0; sx < ss; sx++) {
                    float px = (float)x + ((float)sx + 0.5f) / ss - cx;
                    float py = (float)y + ((float)sy + 0.5f) / ss - cy;
                    /* rotate the sample into the shape's frame and normalise by its radius */
                    float u = (ca * px + sa * py) / radius, v = (-sa * px + ca * py) / radius;
                    int in = synth_inside(k, u, v);
                    if (in && outline) {
                        /* on the outline when some point within `ink` is outside the shape */
                        int interior = 1;
                        for (int d = 0; d < 8 && interior; d++)
                            interior = synth_inside(k, u + ink * dir8[d][0], v + ink * dir8[d][1]);
                        in = !interior;
                    }
                    hits += in;
                }
            float a = (float)hits / (float)(ss * ss);
            size_t p = (size_t)y * size + x;
            if (p % 4 == 0) /* one Philox call gives the noise of four pixels */
                nw = dt_philox_words(
                    seed, ((uint64_t)SYNTH_RNG_NOISE << 32) | ((uint64_t)k << 24) | (p / 4), index);
            float n = noise_amp * (2.0f * synth_unit(nw.v[p % 4]) - 1.0f);
            for (int ch = 0; ch < 3; ch++) {
                float val = bg[ch] + n + a * (fg[ch] - bg[ch] - n);
                val = val < 0 ? 0 : val > 255 ? 255 : val;
                rgb[p * 3 + ch] = (uint8_t)(val + 0.5f > 255 ? 255 : val + 0.5f);
            }
        }
    }
    return 0;
}

int synth_write_folder(const char *out_dir, const char *style, int num_classes, int n_per_class,
                       int size, uint64_t seed, char *err, size_t errlen) {
    if (synth_style_index(style) < 0) {
        dt_errorf(err, errlen, "unknown synthetic style '%s' (solid, outline)",
                  style ? style : "(null)");
        return -1;
    }
    if (num_classes < 1 || num_classes > SYNTH_MAX_CLASSES) {
        dt_errorf(err, errlen, "number of classes must be 1..%d, not %d", SYNTH_MAX_CLASSES,
                  num_classes);
        return -1;
    }
    if (n_per_class < 1 || n_per_class > 1000000) {
        dt_errorf(err, errlen, "images per class must be 1..1000000, not %d", n_per_class);
        return -1;
    }
    if (size < 8 || size > 1024) {
        dt_errorf(err, errlen, "image size must be 8..1024, not %d", size);
        return -1;
    }
    if (!out_dir || !out_dir[0]) {
        dt_errorf(err, errlen, "no output folder given");
        return -1;
    }
    if (fs_mkdirs(out_dir, err, errlen) != 0) return -1;
    size_t plen = strlen(out_dir) + 64;
    char *dir = malloc(plen);
    if (!dir) { dt_errorf(err, errlen, "out of memory"); return -1; }
    for (int k = 0; k < num_classes; k++) {
        snprintf(dir, plen, "%s/%s", out_dir, synth_class_names[k]);
        if (fs_mkdirs(dir, err, errlen) != 0) { free(dir); return -1; }
    }
    free(dir);
    /* Images are independent: render and encode them in parallel; the lowest failing image
     * reports, so the message does not depend on thread timing. */
    long total = (long)num_classes * n_per_class, first_bad = total;
#pragma omp parallel
    {
        uint8_t *rgb = malloc((size_t)size * size * 3);
        char *path = malloc(plen), msg[512];
#pragma omp for schedule(dynamic, 8)
        for (long j = 0; j < total; j++) {
            int k = (int)(j / n_per_class), i = (int)(j % n_per_class);
            int rc = -1;
            if (!rgb || !path) {
                snprintf(msg, sizeof msg, "out of memory");
            } else {
                synth_render(style, k, size, seed, (uint64_t)i, rgb);
                snprintf(path, plen, "%s/%s/%05d.png", out_dir, synth_class_names[k], i);
                rc = image_write_png(path, rgb, size, size, 3, msg, sizeof msg);
            }
            if (rc != 0) {
#pragma omp critical(synth_write_error)
                if (j < first_bad) {
                    first_bad = j;
                    dt_errorf(err, errlen, "%s", msg);
                }
            }
        }
        free(rgb);
        free(path);
    }
    return first_bad < total ? -1 : 0;
}
