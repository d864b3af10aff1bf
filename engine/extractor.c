/* extractor.c — one interface over the FID Inception (inception.h) and difftune's classifier
 * (classifier.h), for evaluation code that should not care which one measures. */
#include "extractor.h"

#include <stdlib.h>
#include <string.h>

#include "classifier.h"
#include "errmsg.h"
#include "fsutil.h"
#include "inception.h"

struct dt_extractor {
    int is_classifier;
    dt_inception *inception;   /* kind "inception" */
    dt_classifier *classifier; /* kind "classifier" */
    char *label;
    char weights_sha256[65];
};

int extractor_open(dt_extractor **out, const char *kind, const char *path, const char *label,
                   char *err, size_t errlen) {
    *out = NULL;
    int is_classifier;
    if (kind && !strcmp(kind, "inception")) is_classifier = 0;
    else if (kind && !strcmp(kind, "classifier")) is_classifier = 1;
    else {
        dt_errorf(err, errlen, "unknown feature extractor kind \"%s\": use inception or classifier",
                  kind ? kind : "(null)");
        return -1;
    }
    if (!path || !path[0]) {
        if (is_classifier)
            dt_errorf(err, errlen, "no classifier file given for %s", label ? label : "classifier");
        else
            dt_errorf(err, errlen, "no Inception weights file given (the FID Inception is "
                      "pytorch-fid's pt_inception-2015-12-05 state dict saved as safetensors)");
        return -1;
    }
    dt_extractor *x = calloc(1, sizeof *x);
    if (!x || !(x->label = strdup(label && label[0] ? label : kind))) {
        free(x);
        dt_errorf(err, errlen, "out of memory opening the feature extractor");
        return -1;
    }
    x->is_classifier = is_classifier;
    int rc = is_classifier ? classifier_load(&x->classifier, path, err, errlen)
                           : inception_load(&x->inception, path, err, errlen);
    if (rc || fs_sha256_file(path, x->weights_sha256, err, errlen)) {
        extractor_free(x);
        return -1;
    }
    *out = x;
    return 0;
}

int extractor_dim(const dt_extractor *x) {
    return x->is_classifier ? CLASSIFIER_FEATURES : INCEPTION_FEATURES;
}

const char *extractor_metric(const dt_extractor *x) {
    return x->is_classifier ? "fd_classifier" : "fid";
}

const char *extractor_label(const dt_extractor *x) { return x->label; }

int extractor_has_labels(const dt_extractor *x) { return x->is_classifier; }

const char *extractor_weights_sha256(const dt_extractor *x) { return x->weights_sha256; }

int extractor_num_classes(const dt_extractor *x) {
    return x->is_classifier ? classifier_num_classes(x->classifier) : 0;
}

int extractor_check_shape(const dt_extractor *x, int C, int H, int W, char *err, size_t errlen) {
    if (!x->is_classifier) {
        if ((C == 1 || C == 3) && H >= 1 && W >= 1) return 0;
        dt_errorf(err, errlen, "the FID Inception takes images with 1 or 3 channels, not %dx%dx%d",
                  C, H, W);
        return -1;
    }
    int S = classifier_image_size(x->classifier), CC = classifier_channels(x->classifier);
    if (C == CC && H == S && W == S) return 0;
    dt_errorf(err, errlen, "%s was trained on %dx%dx%d images; these are %dx%dx%d", x->label, S, S,
              CC, H, W, C);
    return -1;
}

int extractor_features(dt_extractor *x, const float *images, int n, int C, int H, int W,
                       float *features, int32_t *predictions, char *err, size_t errlen) {
    if (x->is_classifier)
        return classifier_features(x->classifier, images, n, C, H, W, features, predictions, err,
                                   errlen);
    return inception_features(x->inception, images, n, C, H, W, features, err, errlen);
}

int extractor_use_device(dt_extractor *x, const char *device, char *err, size_t errlen) {
    if (x->is_classifier) return 0; /* the classifier has a CPU forward pass only */
    return inception_use_device(x->inception, device, err, errlen);
}

void extractor_free(dt_extractor *x) {
    if (!x) return;
    inception_free(x->inception);
    classifier_free(x->classifier);
    free(x->label);
    free(x);
}
