/* classifier_net.h — the fd_classifier network's parameters, activations and CPU passes
 * (internal to classifier.c and its tests; the contract for everyone else is classifier.h).
 *
 * Shapes: S image size, C input channels, K classes, F = CLASSIFIER_FEATURES, n images in a
 * batch. Stage l (0..2) is conv 3x3 pad 1 (ic[l] -> oc[l] channels) at side hw[l], ReLU, 2x2
 * average pool to side hw[l] / 2. The last pool is folded into the global average (the mean of
 * 2x2 block means is the mean), so stage 2 keeps no pooled output.
 *
 * Ownership: clf_net owns one parameter block; clf_work owns every activation, gradient and
 * scratch buffer for up to cap images. Nothing in the passes allocates.
 */
#ifndef DT_CLASSIFIER_NET_H
#define DT_CLASSIFIER_NET_H

#include <stddef.h>
#include <stdint.h>

#define CLF_STAGES 3
#define CLF_GAP_CHANNELS 128
/* Weight gradients are summed per chunk of a batch, then over chunks in a fixed order: the
 * result does not depend on how many threads ran. */
#define CLF_CHUNKS 16

typedef struct {
    int S, C, K;
    int ic[CLF_STAGES], oc[CLF_STAGES], hw[CLF_STAGES];
    size_t num_params;      /* all parameters, one block */
    float *params;          /* (num_params) */
    float *conv_w[CLF_STAGES]; /* (oc, ic * 9) = PyTorch's (oc, ic, 3, 3) */
    float *conv_b[CLF_STAGES]; /* (oc) */
    float *fc1_w;           /* (F, 128) */
    float *fc1_b;           /* (F) */
    float *fc2_w;           /* (K, F) */
    float *fc2_b;           /* (K) */
} clf_net;

typedef struct {
    int cap;                   /* images per pass at most */
    int threads;               /* per-thread scratch slots; passes run on at most this many */
    int backward;              /* 1 when the gradient buffers exist */
    size_t col_floats;         /* per thread: the largest im2col matrix (ic * 9, hw * hw) */
    float *x;                  /* (cap, C, S, S) input, filled by the caller */
    float *act[CLF_STAGES];    /* (cap, oc, hw, hw) after ReLU */
    float *pool[CLF_STAGES - 1]; /* (cap, oc, hw / 2, hw / 2) */
    float *gap;                /* (cap, 128) */
    float *hid;                /* (cap, F) the features, after ReLU */
    float *logits;             /* (cap, K) */
    float *col;                /* (threads, col_floats) */
    /* backward only */
    float *dcol;               /* (threads, col_floats) */
    float *dz;                 /* (threads, oc[0] * S * S) */
    float *dpool;              /* (threads, oc[0] * (S / 2)^2) */
    float *dlogits;            /* (cap, K) */
    float *dhid;               /* (cap, F) */
    float *dgap;               /* (cap, 128) */
    float *chunk_grad;         /* (min(cap, CLF_CHUNKS), num_params) */
    double chunk_loss[CLF_CHUNKS]; /* summed loss and argmax hits of each chunk */
    int chunk_hits[CLF_CHUNKS];
    float *grad;               /* (num_params), laid out as params */
} clf_work;

/* Sets the shapes of an S x S x C, K-class network and allocates its zeroed parameters.
 * Requires S a positive multiple of 8, C >= 1, K >= 1. Returns 0, or -1 (out of memory). */
int clf_net_init(clf_net *net, int S, int C, int K);
/* Frees the parameters; safe on a zeroed or freed net. */
void clf_net_free(clf_net *net);
/* He-normal conv and fc weights (std sqrt(2 / fan_in)), zero biases; a pure function of seed. */
void clf_net_init_weights(clf_net *net, uint64_t seed);
#define CLF_NET_TENSORS 10
/* Tensor i (0..CLF_NET_TENSORS-1, parameter order) as the file names it: *name ("conv1.weight"
 * ... "fc2.bias"), shape (returns ndim: 4, 2 or 1) and *data, a view into net->params. */
int clf_net_tensor(const clf_net *net, int i, const char **name, int64_t shape[4], float **data);
/* The file name of tensor i, or NULL when i is out of range. */
const char *clf_net_tensor_name(int i);
/* Writes the ten tensors (F32) and meta (key, value, ..., NULL) to path, crash safely
 * (safetensors_write). Returns 0, or -1 with a message. */
int clf_net_save(const clf_net *net, const char *path, const char *const *meta, char *err,
                 size_t errlen);

/* Allocates buffers for passes over up to cap images, with the gradient buffers when
 * backward. Returns 0, or -1 (out of memory; nothing left allocated). */
int clf_work_init(clf_work *w, const clf_net *net, int cap, int backward);
void clf_work_free(clf_work *w);

/* Forward pass of the first n (<= cap) images of w->x: fills act, pool, gap, hid, logits. */
void clf_forward(const clf_net *net, clf_work *w, int n);
/* Mean cross-entropy of w->logits (the last forward pass) against labels (n); also writes its
 * gradient into w->dlogits when w has one, and counts argmax hits in *correct (may be NULL). */
double clf_loss(const clf_net *net, clf_work *w, int n, const int32_t *labels, int *correct);
/* A training step's passes on the first n images of w->x (needs a backward work): forward,
 * mean cross-entropy against labels (returned; argmax hits in *correct, may be NULL) and its
 * gradient into w->grad (overwritten, laid out as params). Leaves the activations as
 * clf_forward does. */
double clf_step(const clf_net *net, clf_work *w, int n, const int32_t *labels, int *correct);

#endif
