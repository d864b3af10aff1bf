/* cuda_inception_internal.h — private glue between cuda_inception.cu (the network's description,
 * algorithm plans and buffers) and cuda_inception_forward.cu (kernels and the forward pass). */
#ifndef DT_CUDA_INCEPTION_INTERNAL_H
#define DT_CUDA_INCEPTION_INTERNAL_H

#include <cuda_runtime.h>
#include <cudnn.h>
#include <stddef.h>

#include "cuda_inception.h"

/* One convolution on the device. in_h..out_w are its plane sizes for a 299x299 network input,
 * set by cuda_inception_finish. */
typedef struct {
    int cin, cout, kh, kw, stride, ph, pw;
    int in_h, in_w, out_h, out_w;
    float *weight; /* device (cout, cin, kh, kw) */
    float *bias;   /* device (cout) */
    cudnnFilterDescriptor_t wdesc;
    cudnnConvolutionDescriptor_t cdesc; /* cross-correlation, fp32, CUDNN_FMA_MATH */
} cuinc_conv;

/* A 3x3 pool: its descriptor and the geometry the descriptor was set with. */
typedef struct {
    cudnnPoolingDescriptor_t desc;
    int stride, pad;
} cuinc_pool;

struct cuda_inception {
    int device;
    char name[16];                 /* "cuda:N" */
    cudaStream_t stream;           /* every copy, kernel and cuDNN call of the network */
    cudnnHandle_t dnn;             /* bound to stream */
    cudnnTensorDescriptor_t xdesc, ydesc; /* set before each cuDNN call */
    cuinc_pool max_s2, max_s1, avg_s1; /* 3x3: stride 2 unpadded; stride 1, padding 1 */
    cuinc_conv *convs;
    int nconv, conv_cap;
    cuda_inception_block *blocks;
    int nblock, block_cap;
    int finished, out_channels;
    /* per-image floats of the buffers (cuda_inception_finish) */
    size_t stem_floats;  /* largest stem tensor or block output: buffers a, b */
    size_t block_floats; /* largest tensor inside a block: t1, t2 */
    size_t conv_floats;  /* largest block convolution output: y, before it goes into its slice */
    int cap;             /* images the activation buffers hold */
    float *a, *b, *t1, *t2, *y, *feat; /* (cap, ...) */
    float *in;           /* raw images of a chunk */
    size_t in_floats;
    void *ws;            /* cuDNN workspace, the largest any planned convolution needs */
    size_t ws_bytes;
    cudnnConvolutionFwdAlgo_t *algo; /* (CUDA_INCEPTION_MAX_CHUNK, nconv): row nb - 1 */
    unsigned char planned[CUDA_INCEPTION_MAX_CHUNK]; /* row nb - 1 of algo is chosen */
    int failed;          /* sticky */
    char error[512];
};

/* A tensor view: image i, channel c, row y, column x is p[i * stride + (c * h + y) * w + x].
 * stride is c * h * w for a packed tensor and larger for a channel slice of a concatenation. */
typedef struct {
    float *p;
    int c, h, w;
    size_t stride;
} cuinc_tensor;

/* Records the first failure as "<what> in <op> on cuda:N: <reason>"; returns -1. */
int cuinc_fail(cuda_inception *g, const char *op, const char *reason);
/* 0 for cudaSuccess, else records the runtime's message against op (-1). */
int cuinc_check(cuda_inception *g, cudaError_t e, const char *op);
/* 0 for CUDNN_STATUS_SUCCESS, else records cuDNN's status and last message against op (-1). */
int cuinc_check_dnn(cuda_inception *g, cudnnStatus_t s, const char *op);

/* Chooses the convolution algorithms for chunks of nb images (once per nb) and grows the
 * workspace to what they need. Returns 0 or -1. */
int cuinc_plan(cuda_inception *g, int nb);
/* Activation buffers for nb images and an input buffer of in_floats, grown when needed (after
 * waiting for the stream). Returns 0 or -1. */
int cuinc_reserve(cuda_inception *g, int nb, size_t in_floats);

/* Makes the network's device current; returns the device that was current, for cuinc_leave. */
int cuinc_enter(cuda_inception *g);
void cuinc_leave(int previous);

#endif
