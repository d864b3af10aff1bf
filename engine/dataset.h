/* dataset.h — labelled image sets for training, held in memory at the model's resolution.
 *
 * Sources: an image folder (one subfolder per class, classes in sorted name order, PNG/JPEG
 * files), or MNIST-style IDX files (a folder holding an images file with magic 0x00000803 and
 * a labels file with magic 0x00000801, gzip not supported). Images are preprocessed once as in
 * DiT (center crop, resize) and kept as uint8; flips and scaling to [-1,1] happen per batch.
 */
#ifndef DT_DATASET_H
#define DT_DATASET_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int n;            /* number of images */
    int C, H, W;      /* per-image shape (H = W = image size) */
    int num_classes;
    uint8_t *images;  /* (n, C, H, W) */
    int32_t *labels;  /* (n) in 0..num_classes-1 */
    char **class_names; /* (num_classes), folder names or "0".."9" for IDX */
} dt_dataset;

/* Loads the dataset at path at image_size x image_size with `channels` (1 or 3; grey sources are
 * replicated, colour sources converted to luminance). Rejects with a message: a missing path, a
 * folder with no class subfolders or no decodable images, an undecodable file (named), IDX files
 * with bad magic, mismatched counts or labels out of range. Returns 0 or -1. */
int dataset_load(dt_dataset *ds, const char *path, int image_size, int channels,
                 char *err, size_t errlen);
/* Sees one source image as dataset_load decodes it, before any resizing: its index in dataset
 * order, its label, and the decoded pixels (h, w, c) interleaved, borrowed for the call (c is the
 * channels asked for, or 1 for IDX, whose images are grey). */
typedef void (*dataset_visit_fn)(void *ctx, int index, int label, const uint8_t *pixels, int w,
                                 int h, int c);
/* dataset_load that also calls visit(ctx, ...) once for every image it decodes, so a caller can
 * keep some source images (a preview) without decoding them again. Calls are never concurrent
 * but come in no particular order; after a failure some images may not have been visited. */
int dataset_load_visit(dt_dataset *ds, const char *path, int image_size, int channels,
                       dataset_visit_fn visit, void *ctx, char *err, size_t errlen);
/* 1 when name has one of the image extensions dataset_load reads in a class folder (.png,
 * .jpg, .jpeg, .bmp, any case; a name that is only an extension, like ".png", does not count),
 * else 0. Looks at the name only, never at the file. */
int dataset_is_image_name(const char *name);
/* Frees what dataset_load allocated; safe on a zeroed dataset. */
void dataset_free(dt_dataset *ds);
/* Writes image i as floats (C,H,W) in [-1,1], mirrored left-right when flip is non-zero. */
void dataset_image_to_float(const dt_dataset *ds, int i, int flip, float *dst);
/* Converts one uint8 image (C,H,W) to floats in [-1,1], mirrored left-right when flip. */
void dataset_u8_to_float(const uint8_t *src, int C, int H, int W, int flip, float *dst);

#endif
