/* extractor.h — the feature extractor behind a Fréchet distance, named for what it is.
 *
 * Two kinds: "inception" (the standard FID Inception-v3, engine/inception.h; the metric is
 * "fid") and "classifier" (a difftune classifier file, engine/classifier.h; the metric is
 * "fd_classifier", and it also reports the accuracy of generated images on their requested
 * labels). Evaluation code (engine/eval.h) sees only this interface.
 */
#ifndef DT_EXTRACTOR_H
#define DT_EXTRACTOR_H

#include <stddef.h>
#include <stdint.h>

typedef struct dt_extractor dt_extractor;

/* Opens an extractor: kind "inception" with the FID Inception weights at path, or kind
 * "classifier" with a classifier file at path. `label` is how results name the extractor
 * ("inception", or "classifier:<model id>") and is copied. Returns 0 and *out (release with
 * extractor_free), or -1 with a message that says what is missing (e.g. no weights path). */
int extractor_open(dt_extractor **out, const char *kind, const char *path, const char *label,
                   char *err, size_t errlen);

/* Feature width (2048 for Inception). */
int extractor_dim(const dt_extractor *x);
/* "fid" or "fd_classifier": the name of the distance this extractor defines. */
const char *extractor_metric(const dt_extractor *x);
/* The label given to extractor_open. */
const char *extractor_label(const dt_extractor *x);
/* 1 when the extractor can predict labels (a classifier), else 0. */
int extractor_has_labels(const dt_extractor *x);
/* Hex SHA-256 of the weights file given to extractor_open: what the features depend on besides
 * the label, so caches of reference statistics key on it. */
const char *extractor_weights_sha256(const dt_extractor *x);
/* Classes a classifier predicts (0 for Inception). */
int extractor_num_classes(const dt_extractor *x);

/* Checks that images (C, H, W) can be taken (Inception: C = 1 or 3; a classifier: exactly the
 * shape it was trained on), so a job finds out at setup, not at its first evaluation. Returns 0,
 * or -1 with a message naming both shapes. */
int extractor_check_shape(const dt_extractor *x, int C, int H, int W, char *err, size_t errlen);

/* Features (n, dim) of n images (n, C, H, W) in [-1, 1]; predictions (n) when non-NULL and the
 * extractor has labels. Returns 0, or -1 with a message (shape the extractor cannot take). */
int extractor_features(dt_extractor *x, const float *images, int n, int C, int H, int W,
                       float *features, int32_t *predictions, char *err, size_t errlen);

/* Runs the features on `device`, a backend name ("cpu" or "cuda:N"): the Inception moves to that
 * GPU when the build has the GPU Inception (inception_use_device, which checks it against the
 * CPU first); a classifier always stays on the CPU and this returns 0 for it. Returns 0, or -1
 * with a message, the extractor then staying on the CPU and fully usable (callers warn and go
 * on). */
int extractor_use_device(dt_extractor *x, const char *device, char *err, size_t errlen);

/* Releases x; NULL is allowed. */
void extractor_free(dt_extractor *x);

#endif
