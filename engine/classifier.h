/* classifier.h — a small convolutional image classifier, trained by difftune itself, whose
 * penultimate features give a Fréchet distance that needs no downloaded weights (fd_classifier)
 * and whose predictions give the accuracy of generated samples on the labels they were asked for.
 *
 * Architecture (fixed, so a file is self-describing through its metadata): input (C, S, S) in
 * [-1, 1] with S = the training image size; three stages of conv 3x3 (pad 1) + ReLU + 2x2 average
 * pool with 32, 64, 128 channels; global average pool; fc 128 -> CLASSIFIER_FEATURES + ReLU (the
 * features); fc -> num_classes (the logits). CPU (OpenBLAS) forward and backward; training is
 * plain cross-entropy with AdamW and random horizontal flips.
 *
 * File: safetensors with tensors conv{1,2,3}.weight (OC, IC, 3, 3), conv{1,2,3}.bias, fc1.weight
 * (F, 128), fc1.bias, fc2.weight (K, F), fc2.bias, and __metadata__ {"difftune_kind":
 * "classifier", "image_size", "channels", "num_classes", "train_accuracy", "held_out_accuracy",
 * "dataset", "class_names" (a JSON array of the class names, in label order)}, every value a
 * string as safetensors requires. The learning rate follows a cosine from its value to zero.
 */
#ifndef DT_CLASSIFIER_H
#define DT_CLASSIFIER_H

#include <stddef.h>
#include <stdint.h>

#include "dataset.h"
#include "events.h"

#define CLASSIFIER_FEATURES 256

typedef struct dt_classifier dt_classifier;

typedef struct {
    int epochs;          /* passes over the training split (default 10) */
    int batch_size;      /* default 64 */
    double learning_rate;/* default 2e-3 */
    double held_out;     /* fraction of each class kept out of training for the accuracy check
                          * (default 0.1; 0 = none) */
    uint64_t seed;       /* weights init, data order, flips, split (default 0) */
    const char *dataset; /* what the file's metadata "dataset" records (a path or a name;
                          * borrowed; default NULL = "") */
} dt_classifier_opts;

/* The documented defaults. */
void classifier_opts_defaults(dt_classifier_opts *o);

/* Trains a classifier on ds (any square image size that is a multiple of 8, C = 1 or 3, 2 to
 * 10000 classes) and writes it to out_path (crash safe). Emits a log line, progress events
 * (phase "training", step = epoch, "loss" and the running "train_accuracy" of the epoch) and a
 * final metric event {"name": "classifier", "train_accuracy", "held_out_accuracy",
 * "train_images", "held_out_images"} when ev is non-NULL. The same seed gives the same file
 * whatever the number of OpenMP threads. *held_out_accuracy (may be NULL) receives the held-out
 * accuracy (or the training accuracy when held_out is 0). Returns 0, or -1 with a message. */
int classifier_train(const dt_dataset *ds, const dt_classifier_opts *o, const char *out_path,
                     dt_events *ev, double *held_out_accuracy, char *err, size_t errlen);

/* Loads a classifier file written by classifier_train. Returns 0 and *out (release with
 * classifier_free), or -1 with a message (not a classifier file, missing or mis-shaped tensor). */
int classifier_load(dt_classifier **out, const char *path, char *err, size_t errlen);

/* Shape the classifier was trained on. */
int classifier_image_size(const dt_classifier *c);
int classifier_channels(const dt_classifier *c);
int classifier_num_classes(const dt_classifier *c);

/* Features (n, CLASSIFIER_FEATURES) and, when predictions is non-NULL, argmax labels (n) of n
 * images (n, C, H, W) in [-1, 1]; C and H = W must match the classifier's. Not reentrant on one
 * classifier. Returns 0, or -1 with a message. */
int classifier_features(dt_classifier *c, const float *images, int n, int C, int H, int W,
                        float *features, int32_t *predictions, char *err, size_t errlen);

/* Releases c; NULL is allowed. */
void classifier_free(dt_classifier *c);

#endif
