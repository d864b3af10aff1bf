/* ingest_preview.h — the thumbnail grid of an uploaded dataset, collected while validation
 * decodes its images (dataset_load_visit), so no image is decoded twice. Internal to the ingest
 * library.
 *
 * The grid has one row per class (the first INGEST_PREVIEW_CLASSES classes) holding that
 * class's first INGEST_PREVIEW_PER_CLASS images in dataset order, each center-cropped and
 * resized to INGEST_PREVIEW_TILE square RGB as training preprocesses it (grey images
 * replicated), INGEST_PREVIEW_GAP pixels apart on a neutral grey background.
 */
#ifndef DT_INGEST_PREVIEW_H
#define DT_INGEST_PREVIEW_H

#include <stddef.h>
#include <stdint.h>

#define INGEST_PREVIEW_CLASSES 10
#define INGEST_PREVIEW_PER_CLASS 8
#define INGEST_PREVIEW_TILE 32
#define INGEST_PREVIEW_GAP 2

typedef struct ingest_preview ingest_preview;

/* A new, empty preview, or NULL when out of memory. Free it with ingest_preview_free. */
ingest_preview *ingest_preview_new(void);
/* NULL-safe. */
void ingest_preview_free(ingest_preview *p);

/* A dataset_visit_fn (ctx is the preview): keeps the image when it is among the first
 * INGEST_PREVIEW_PER_CLASS (by index) of its class seen so far, for visits in any order. */
void ingest_preview_visit(void *ctx, int index, int label, const uint8_t *pixels, int w, int h,
                          int c);

/* Writes the grid for a dataset of `classes` classes as a PNG at path, replacing whatever is
 * there: min(classes, INGEST_PREVIEW_CLASSES) rows and as many columns as the fullest row has
 * images (at least one), so GAP + columns * (TILE + GAP) wide and GAP + rows * (TILE + GAP)
 * high. Returns DT_INGEST_OK, or DT_INGEST_ERROR with a message (a visit ran out of memory,
 * the file could not be written). */
int ingest_preview_write(const ingest_preview *p, int classes, const char *path, char *err,
                         size_t errlen);

#endif
