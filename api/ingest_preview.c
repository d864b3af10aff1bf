/* ingest_preview.c — the thumbnail grid of an uploaded dataset (see ingest_preview.h).
 *
 * Tiles are kept as they are visited: the loader decodes image folders in parallel, so visits
 * come in any order, and each class keeps the smallest indices seen so far, sorted.
 */
#include "ingest_preview.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "errmsg.h"
#include "image.h"
#include "ingest.h"

#define TILE_BYTES (INGEST_PREVIEW_TILE * INGEST_PREVIEW_TILE * 3)
#define PREVIEW_GREY 128

struct ingest_preview {
    int count[INGEST_PREVIEW_CLASSES];                            /* tiles kept per class */
    int index[INGEST_PREVIEW_CLASSES][INGEST_PREVIEW_PER_CLASS];  /* their indices, ascending */
    uint8_t tile[INGEST_PREVIEW_CLASSES][INGEST_PREVIEW_PER_CLASS][TILE_BYTES]; /* (T, T, 3) */
    int failed;                                                   /* a tile could not be made */
};

ingest_preview *ingest_preview_new(void) { return calloc(1, sizeof(ingest_preview)); }

void ingest_preview_free(ingest_preview *p) { free(p); }

/* Center-crops (h, w, c) pixels to a (T, T, 3) tile, replicating a grey channel. */
static int preview_tile(const uint8_t *pixels, int w, int h, int c, uint8_t *tile) {
    uint8_t crop[TILE_BYTES];
    if (c != 1 && c != 3) return -1;
    if (image_center_crop(pixels, w, h, c, crop, INGEST_PREVIEW_TILE) != 0) return -1;
    for (int i = 0; i < INGEST_PREVIEW_TILE * INGEST_PREVIEW_TILE; i++)
        for (int ch = 0; ch < 3; ch++) tile[i * 3 + ch] = crop[i * c + (c == 1 ? 0 : ch)];
    return 0;
}

void ingest_preview_visit(void *ctx, int index, int label, const uint8_t *pixels, int w, int h,
                          int c) {
    ingest_preview *p = ctx;
    if (label < 0 || label >= INGEST_PREVIEW_CLASSES) return;
    int n = p->count[label], *idx = p->index[label];
    int pos = n;
    while (pos > 0 && idx[pos - 1] > index) pos--;
    if (pos >= INGEST_PREVIEW_PER_CLASS) return;
    uint8_t tile[TILE_BYTES];
    if (preview_tile(pixels, w, h, c, tile) != 0) {
        p->failed = 1;
        return;
    }
    /* Shift the later tiles right; the last one falls off when the row is full. */
    int keep = n < INGEST_PREVIEW_PER_CLASS ? n + 1 : INGEST_PREVIEW_PER_CLASS;
    int moved = keep - 1 - pos;
    memmove(&idx[pos + 1], &idx[pos], (size_t)moved * sizeof *idx);
    memmove(p->tile[label][pos + 1], p->tile[label][pos], (size_t)moved * TILE_BYTES);
    idx[pos] = index;
    memcpy(p->tile[label][pos], tile, TILE_BYTES);
    p->count[label] = keep;
}

/* Copies tile (T, T, 3) into the (gh, gw, 3) grid with its top-left corner at (x0, y0). */
static void preview_blit(uint8_t *grid, int gw, const uint8_t *tile, int x0, int y0) {
    const size_t row = (size_t)INGEST_PREVIEW_TILE * 3;
    for (int y = 0; y < INGEST_PREVIEW_TILE; y++)
        memcpy(grid + ((size_t)(y0 + y) * gw + x0) * 3, tile + y * row, row);
}

int ingest_preview_write(const ingest_preview *p, int classes, const char *path, char *err,
                         size_t errlen) {
    if (p->failed) {
        dt_errorf(err, errlen, "out of memory while making the dataset preview");
        return DT_INGEST_ERROR;
    }
    const int step = INGEST_PREVIEW_TILE + INGEST_PREVIEW_GAP;
    int rows = classes < INGEST_PREVIEW_CLASSES ? classes : INGEST_PREVIEW_CLASSES, cols = 1;
    if (rows < 1) rows = 1;
    for (int r = 0; r < rows; r++)
        if (p->count[r] > cols) cols = p->count[r];
    int gw = INGEST_PREVIEW_GAP + cols * step, gh = INGEST_PREVIEW_GAP + rows * step;
    uint8_t *grid = malloc((size_t)gw * gh * 3);
    if (!grid) {
        dt_errorf(err, errlen, "out of memory for a %dx%d dataset preview", gw, gh);
        return DT_INGEST_ERROR;
    }
    memset(grid, PREVIEW_GREY, (size_t)gw * gh * 3);
    for (int r = 0; r < rows; r++)
        for (int k = 0; k < p->count[r]; k++)
            preview_blit(grid, gw, p->tile[r][k], INGEST_PREVIEW_GAP + k * step,
                         INGEST_PREVIEW_GAP + r * step);
    /* An entry of this name that came with the archive is in the way (a folder would make the
     * write fail); the caller picks a name no loader reads, so it can go. */
    struct stat sb;
    int rc = DT_INGEST_OK;
    if (lstat(path, &sb) == 0 && ingest_remove_tree(path) != 0) {
        dt_errorf(err, errlen, "cannot replace %s: %s", path, strerror(errno));
        rc = DT_INGEST_ERROR;
    } else if (image_write_png(path, grid, gw, gh, 3, err, errlen) != 0) {
        rc = DT_INGEST_ERROR;
    }
    free(grid);
    return rc;
}
