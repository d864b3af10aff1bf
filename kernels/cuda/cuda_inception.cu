/* cuda_inception.cu — the GPU FID Inception's description and resources: device and cuDNN
 * handle, convolutions uploaded once, the shape walk that sizes the buffers, convolution
 * algorithms per chunk size, buffers grown to the largest chunk. The forward pass is in
 * cuda_inception_forward.cu; the contract in cuda_inception.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_backend.h"
#include "cuda_dnn.h"
#include "cuda_inception_internal.h"

/* A workspace larger than this rules an algorithm out (the GEMM algorithm's im2col copy of a stem
 * layer at 64 images would take gigabytes); an implicit-GEMM algorithm needs little or none. */
#define CUINC_MAX_WORKSPACE ((size_t)256 << 20)

/* ---- errors and the device ------------------------------------------------------------------ */

int cuinc_fail(cuda_inception *g, const char *op, const char *reason) {
    if (!g->failed) {
        g->failed = 1;
        snprintf(g->error, sizeof g->error, "GPU Inception error in %s on %s: %s", op, g->name,
                 reason);
    }
    return -1;
}

int cuinc_check(cuda_inception *g, cudaError_t e, const char *op) {
    if (e == cudaSuccess) return 0;
    cudaGetLastError(); /* a later launch check must not blame its own kernel for this */
    return cuinc_fail(g, op, cudaGetErrorString(e));
}

int cuinc_check_dnn(cuda_inception *g, cudnnStatus_t s, const char *op) {
    if (s == CUDNN_STATUS_SUCCESS) return 0;
    char reason[400];
    cuda_dnn_status_text(s, reason, sizeof reason);
    return cuinc_fail(g, op, reason);
}

int cuinc_enter(cuda_inception *g) {
    int previous = g->device;
    if (cudaGetDevice(&previous) != cudaSuccess) {
        cudaGetLastError();
        previous = g->device;
    }
    if (previous != g->device) cuinc_check(g, cudaSetDevice(g->device), "set device");
    return previous;
}

void cuinc_leave(int previous) {
    int current;
    if (cudaGetDevice(&current) == cudaSuccess && current != previous) cudaSetDevice(previous);
    cudaGetLastError();
}

const char *cuda_inception_error(const cuda_inception *g) {
    return g ? g->error : "";
}

/* ---- creation ------------------------------------------------------------------------------- */

/* The stream, cuDNN handle, reusable tensor descriptors and the three pooling descriptors. */
static int cuinc_init(cuda_inception *g) {
    int major = 0;
    if (cuinc_check(g, cudaSetDevice(g->device), "set device") ||
        cuinc_check(g, cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, g->device),
                    "device query"))
        return -1;
    /* The kernels ship as sm_90 code and compute_80 PTX, as the CUDA backend's. */
    if (major < 8) return cuinc_fail(g, "create", "compute capability 8.0 or newer is needed");
    if (cuinc_check(g, cudaStreamCreateWithFlags(&g->stream, cudaStreamNonBlocking),
                    "create stream")) {
        g->stream = NULL;
        return -1;
    }
    if (cuinc_check_dnn(g, cudnnCreate(&g->dnn), "cudnnCreate")) {
        g->dnn = NULL;
        return -1;
    }
    if (cuinc_check_dnn(g, cudnnSetStream(g->dnn, g->stream), "cudnnSetStream")) return -1;
    cudnnTensorDescriptor_t *descs[2] = {&g->xdesc, &g->ydesc};
    for (int i = 0; i < 2; i++)
        if (cuinc_check_dnn(g, cudnnCreateTensorDescriptor(descs[i]), "tensor descriptor")) {
            *descs[i] = NULL;
            return -1;
        }
    /* Max pools see only ReLU outputs (>= 0), so how padding counts cannot matter; the average
     * pool is count_include_pad=False: the divisor counts the pixels inside the image. */
    struct { cuinc_pool *p; cudnnPoolingMode_t mode; int stride, pad; } pools[3] = {
        {&g->max_s2, CUDNN_POOLING_MAX, 2, 0},
        {&g->max_s1, CUDNN_POOLING_MAX, 1, 1},
        {&g->avg_s1, CUDNN_POOLING_AVERAGE_COUNT_EXCLUDE_PADDING, 1, 1},
    };
    for (int i = 0; i < 3; i++) {
        cuinc_pool *p = pools[i].p;
        p->stride = pools[i].stride;
        p->pad = pools[i].pad;
        if (cuinc_check_dnn(g, cudnnCreatePoolingDescriptor(&p->desc), "pooling descriptor")) {
            p->desc = NULL;
            return -1;
        }
        if (cuinc_check_dnn(g, cudnnSetPooling2dDescriptor(p->desc, pools[i].mode,
                                                           CUDNN_NOT_PROPAGATE_NAN, 3, 3, p->pad,
                                                           p->pad, p->stride, p->stride),
                            "pooling descriptor"))
            return -1;
    }
    return 0;
}

cuda_inception *cuda_inception_create(int device, char *err, size_t errlen) {
    if (err && errlen) err[0] = '\0';
    char why[200];
    int count = dt_cuda_device_count(why, sizeof why);
    if (count == 0) {
        if (err && errlen) snprintf(err, errlen, "cuda:%d: %s", device, why);
        return NULL;
    }
    if (device < 0 || device >= count) {
        if (err && errlen)
            snprintf(err, errlen, "cuda:%d: only %d CUDA device%s (0..%d)", device, count,
                     count == 1 ? "" : "s", count - 1);
        return NULL;
    }
    cuda_inception *g = (cuda_inception *)calloc(1, sizeof *g);
    if (!g) {
        if (err && errlen) snprintf(err, errlen, "cuda:%d: out of host memory", device);
        return NULL;
    }
    g->device = device;
    snprintf(g->name, sizeof g->name, "cuda:%d", device);
    int previous = cuinc_enter(g);
    int rc = g->failed ? -1 : cuinc_init(g);
    cuinc_leave(previous);
    if (rc) {
        if (err && errlen) snprintf(err, errlen, "%s", g->error);
        cuda_inception_free(g);
        return NULL;
    }
    return g;
}

int cuda_inception_add_conv(cuda_inception *g, const cuda_inception_conv_desc *d) {
    if (g->failed) return -1;
    if (g->finished) return cuinc_fail(g, "add_conv", "the network is already finished");
    if (d->cin < 1 || d->cout < 1 || d->kh < 1 || d->kw < 1 || d->stride < 1 || d->ph < 0 ||
        d->pw < 0 || !d->weight || !d->bias) {
        char reason[160];
        snprintf(reason, sizeof reason, "convolution %d: bad description (%d -> %d, %dx%d, stride "
                 "%d, padding %d,%d)", g->nconv, d->cin, d->cout, d->kh, d->kw, d->stride, d->ph,
                 d->pw);
        return cuinc_fail(g, "add_conv", reason);
    }
    if (g->nconv == g->conv_cap) {
        int cap = g->conv_cap ? 2 * g->conv_cap : 128;
        cuinc_conv *convs = (cuinc_conv *)realloc(g->convs, sizeof *convs * (size_t)cap);
        if (!convs) return cuinc_fail(g, "add_conv", "out of host memory");
        g->convs = convs;
        g->conv_cap = cap;
    }
    cuinc_conv *c = &g->convs[g->nconv];
    memset(c, 0, sizeof *c);
    c->cin = d->cin; c->cout = d->cout; c->kh = d->kh; c->kw = d->kw;
    c->stride = d->stride; c->ph = d->ph; c->pw = d->pw;
    g->nconv++; /* counted now so cuda_inception_free releases whatever was made below */
    const size_t wbytes = sizeof(float) * (size_t)c->cout * c->cin * c->kh * c->kw;
    const size_t bbytes = sizeof(float) * (size_t)c->cout;
    int previous = cuinc_enter(g);
    int rc = g->failed ? -1 : 0;
    if (rc == 0 && cuinc_check(g, cudaMalloc((void **)&c->weight, wbytes), "weight upload")) {
        c->weight = NULL;
        rc = -1;
    }
    if (rc == 0 && cuinc_check(g, cudaMalloc((void **)&c->bias, bbytes), "weight upload")) {
        c->bias = NULL;
        rc = -1;
    }
    /* From pageable memory the copy has read the source by the time it returns. */
    if (rc == 0)
        rc = cuinc_check(g, cudaMemcpyAsync(c->weight, d->weight, wbytes, cudaMemcpyHostToDevice,
                                            g->stream), "weight upload") ||
             cuinc_check(g, cudaMemcpyAsync(c->bias, d->bias, bbytes, cudaMemcpyHostToDevice,
                                            g->stream), "weight upload");
    if (rc == 0 &&
        cuinc_check_dnn(g, cudnnCreateFilterDescriptor(&c->wdesc), "filter descriptor")) {
        c->wdesc = NULL;
        rc = -1;
    }
    if (rc == 0 && cuinc_check_dnn(g, cudnnCreateConvolutionDescriptor(&c->cdesc),
                                   "convolution descriptor")) {
        c->cdesc = NULL;
        rc = -1;
    }
    if (rc == 0)
        rc = cuinc_check_dnn(g, cudnnSetFilter4dDescriptor(c->wdesc, CUDNN_DATA_FLOAT,
                                                           CUDNN_TENSOR_NCHW, c->cout, c->cin,
                                                           c->kh, c->kw), "filter descriptor") ||
             /* PyTorch's conv2d is a cross-correlation; fp32 accumulation */
             cuinc_check_dnn(g, cudnnSetConvolution2dDescriptor(c->cdesc, c->ph, c->pw, c->stride,
                                                                c->stride, 1, 1,
                                                                CUDNN_CROSS_CORRELATION,
                                                                CUDNN_DATA_FLOAT),
                             "convolution descriptor") ||
             /* FMA kernels only: CUDNN_DEFAULT_MATH lets Ampere and newer run fp32 as TF32 */
             cuinc_check_dnn(g, cudnnSetConvolutionMathType(c->cdesc, CUDNN_FMA_MATH),
                             "convolution math type");
    cuinc_leave(previous);
    return rc ? -1 : 0;
}

int cuda_inception_add_block(cuda_inception *g, cuda_inception_block kind) {
    if (g->failed) return -1;
    if (g->finished) return cuinc_fail(g, "add_block", "the network is already finished");
    if ((int)kind < CUDA_INCEPTION_STEM || (int)kind > CUDA_INCEPTION_E2)
        return cuinc_fail(g, "add_block", "unknown block kind");
    if (g->nblock == g->block_cap) {
        int cap = g->block_cap ? 2 * g->block_cap : 16;
        cuda_inception_block *b =
            (cuda_inception_block *)realloc(g->blocks, sizeof *b * (size_t)cap);
        if (!b) return cuinc_fail(g, "add_block", "out of host memory");
        g->blocks = b;
        g->block_cap = cap;
    }
    g->blocks[g->nblock++] = kind;
    return 0;
}

/* ---- the shape walk ------------------------------------------------------------------------- */

static int cuinc_block_convs(cuda_inception_block kind) {
    static const int n[] = {5, 7, 4, 10, 6, 9, 9};
    return n[kind];
}

static int cuinc_out_len(int n, int k, int stride, int pad) {
    return (n + 2 * pad - k) / stride + 1;
}

static size_t cuinc_max(size_t a, size_t b) { return a > b ? a : b; }

/* Sets conv c's input plane (h, w) and output plane; returns its output size per image, 0 when
 * the plane is too small for the kernel. */
static size_t cuinc_place(cuinc_conv *c, int h, int w) {
    c->in_h = h;
    c->in_w = w;
    c->out_h = h + 2 * c->ph >= c->kh ? cuinc_out_len(h, c->kh, c->stride, c->ph) : 0;
    c->out_w = w + 2 * c->pw >= c->kw ? cuinc_out_len(w, c->kw, c->stride, c->pw) : 0;
    return (size_t)c->cout * c->out_h * c->out_w;
}

int cuda_inception_finish(cuda_inception *g, int *out_channels) {
    if (g->failed) return -1;
    if (g->finished) {
        *out_channels = g->out_channels;
        return 0;
    }
    char reason[200];
    if (g->nblock < 1 || g->blocks[0] != CUDA_INCEPTION_STEM)
        return cuinc_fail(g, "finish", "the first block must be the stem");
    int k = 0, C = 3, h = CUDA_INCEPTION_SIZE, w = CUDA_INCEPTION_SIZE;
    size_t stem = (size_t)C * h * w, blk = 0, conv = 0;
    for (int b = 0; b < g->nblock; b++) {
        const cuda_inception_block kind = g->blocks[b];
        const int need = cuinc_block_convs(kind);
        if (k + need > g->nconv || (b > 0 && kind == CUDA_INCEPTION_STEM)) {
            snprintf(reason, sizeof reason, "block %d (kind %d) needs convolutions %d..%d of %d%s",
                     b, (int)kind, k, k + need - 1, g->nconv,
                     kind == CUDA_INCEPTION_STEM ? ", and only the first block is a stem" : "");
            return cuinc_fail(g, "finish", reason);
        }
        cuinc_conv *c = g->convs + k;
        k += need;
        if (kind == CUDA_INCEPTION_STEM) {
            /* conv, conv, conv, max pool, conv, conv, max pool: each conv takes the last plane */
            for (int j = 0; j < 5; j++) {
                const size_t out = cuinc_place(&c[j], h, w);
                if (out == 0 || ((j == 2 || j == 4) && (c[j].out_h < 3 || c[j].out_w < 3)))
                    return cuinc_fail(g, "finish", "the stem's planes shrink to nothing");
                stem = cuinc_max(stem, cuinc_max((size_t)c[j].cin * h * w, out));
                h = c[j].out_h;
                w = c[j].out_w;
                if (j == 2 || j == 4) {
                    h = cuinc_out_len(h, 3, 2, 0);
                    w = cuinc_out_len(w, 3, 2, 0);
                }
            }
            C = c[4].cout;
            continue;
        }
        /* Inside a mixed block every convolution reads a plane of the block's input size; the
         * pool that feeds a convolution (A, C, E) writes one input-sized tensor. */
        for (int j = 0; j < need; j++) {
            size_t out = cuinc_place(&c[j], h, w);
            if (out == 0) {
                snprintf(reason, sizeof reason, "convolution %d (%dx%d) does not fit a %dx%d plane",
                         k - need + j, c[j].kh, c[j].kw, h, w);
                return cuinc_fail(g, "finish", reason);
            }
            blk = cuinc_max(blk, cuinc_max((size_t)c[j].cin * h * w, out));
            conv = cuinc_max(conv, out);
        }
        blk = cuinc_max(blk, (size_t)C * h * w);
        switch (kind) {
        case CUDA_INCEPTION_A: C = c[0].cout + c[2].cout + c[5].cout + c[6].cout; break;
        case CUDA_INCEPTION_B: C = c[0].cout + c[3].cout + C; break;
        case CUDA_INCEPTION_C: C = c[0].cout + c[3].cout + c[8].cout + c[9].cout; break;
        case CUDA_INCEPTION_D: C = c[1].cout + c[5].cout + C; break;
        default: C = c[0].cout + c[2].cout + c[3].cout + c[6].cout + c[7].cout + c[8].cout; break;
        }
        if (kind == CUDA_INCEPTION_B || kind == CUDA_INCEPTION_D) {
            h = cuinc_out_len(h, 3, 2, 0);
            w = cuinc_out_len(w, 3, 2, 0);
        }
        stem = cuinc_max(stem, (size_t)C * h * w); /* block outputs live in a and b */
    }
    if (k != g->nconv) {
        snprintf(reason, sizeof reason, "the blocks use %d of the %d convolutions", k, g->nconv);
        return cuinc_fail(g, "finish", reason);
    }
    if (h < 1 || w < 1) return cuinc_fail(g, "finish", "the planes shrink to nothing");
    g->stem_floats = stem;
    g->block_floats = blk ? blk : 1;
    g->conv_floats = conv ? conv : 1;
    g->out_channels = C;
    g->algo = (cudnnConvolutionFwdAlgo_t *)calloc((size_t)CUDA_INCEPTION_MAX_CHUNK * g->nconv,
                                                  sizeof *g->algo);
    if (!g->algo) return cuinc_fail(g, "finish", "out of host memory");
    g->finished = 1;
    *out_channels = C;
    return 0;
}

/* ---- algorithms and buffers ----------------------------------------------------------------- */

/* The algorithm cuda_dnn_choose_forward picks in FMA math (no TF32, no FFT or Winograd,
 * deterministic) with a workspace of at most CUINC_MAX_WORKSPACE. xdesc and ydesc describe the
 * convolution's tensors. */
static int cuinc_choose(cuda_inception *g, const cuinc_conv *c, int layer, int nb,
                        cudnnConvolutionFwdAlgo_t *algo, size_t *ws) {
    cudnnMathType_t math;
    int returned = 0;
    cudnnStatus_t s = cuda_dnn_choose_forward(g->dnn, g->xdesc, c->wdesc, c->cdesc, g->ydesc, 0,
                                              CUINC_MAX_WORKSPACE, algo, ws, &math, &returned);
    if (s == CUDNN_STATUS_SUCCESS) return 0;
    if (s != CUDNN_STATUS_NOT_SUPPORTED)
        return cuinc_check_dnn(g, s, "cudnnGetConvolutionForwardAlgorithm_v7");
    char reason[240];
    snprintf(reason, sizeof reason, "no deterministic FMA-math algorithm among %d for convolution "
             "%d (%d -> %d, %dx%d, stride %d, %dx%d input) at %d images", returned, layer, c->cin,
             c->cout, c->kh, c->kw, c->stride, c->in_h, c->in_w, nb);
    return cuinc_fail(g, "algorithm choice", reason);
}

int cuinc_plan(cuda_inception *g, int nb) {
    if (g->failed) return -1;
    if (nb < 1 || nb > CUDA_INCEPTION_MAX_CHUNK) return cuinc_fail(g, "plan", "bad chunk size");
    if (g->planned[nb - 1]) return 0;
    size_t need = 0;
    for (int k = 0; k < g->nconv; k++) {
        const cuinc_conv *c = &g->convs[k];
        int n = 0, ch = 0, oh = 0, ow = 0;
        if (cuinc_check_dnn(g, cudnnSetTensor4dDescriptor(g->xdesc, CUDNN_TENSOR_NCHW,
                                                          CUDNN_DATA_FLOAT, nb, c->cin, c->in_h,
                                                          c->in_w), "tensor descriptor") ||
            cuinc_check_dnn(g, cudnnGetConvolution2dForwardOutputDim(c->cdesc, g->xdesc, c->wdesc,
                                                                     &n, &ch, &oh, &ow),
                            "convolution output size"))
            return -1;
        if (n != nb || ch != c->cout || oh != c->out_h || ow != c->out_w) {
            char reason[160];
            snprintf(reason, sizeof reason, "convolution %d: cuDNN makes (%d, %d, %d, %d) of a "
                     "plane the network expects as (%d, %d, %d, %d)", k, n, ch, oh, ow, nb,
                     c->cout, c->out_h, c->out_w);
            return cuinc_fail(g, "plan", reason);
        }
        size_t bytes = 0;
        cudnnConvolutionFwdAlgo_t *algo = &g->algo[(size_t)(nb - 1) * g->nconv + k];
        if (cuinc_check_dnn(g, cudnnSetTensor4dDescriptor(g->ydesc, CUDNN_TENSOR_NCHW,
                                                          CUDNN_DATA_FLOAT, nb, c->cout, c->out_h,
                                                          c->out_w), "tensor descriptor") ||
            cuinc_choose(g, c, k, nb, algo, &bytes))
            return -1;
        need = cuinc_max(need, bytes);
    }
    if (need > g->ws_bytes) {
        if (cuinc_check(g, cudaStreamSynchronize(g->stream), "workspace")) return -1;
        cudaFree(g->ws);
        g->ws = NULL;
        g->ws_bytes = 0;
        if (cuinc_check(g, cudaMalloc(&g->ws, need), "workspace")) {
            g->ws = NULL;
            return -1;
        }
        g->ws_bytes = need;
    }
    g->planned[nb - 1] = 1;
    return 0;
}

static void cuinc_release_buffers(cuda_inception *g) {
    float **bufs[6] = {&g->a, &g->b, &g->t1, &g->t2, &g->y, &g->feat};
    for (int i = 0; i < 6; i++) {
        cudaFree(*bufs[i]);
        *bufs[i] = NULL;
    }
    g->cap = 0;
}

int cuinc_reserve(cuda_inception *g, int nb, size_t in_floats) {
    if (g->failed) return -1;
    if (nb > g->cap || in_floats > g->in_floats) {
        /* queued work may still use the old buffers */
        if (cuinc_check(g, cudaStreamSynchronize(g->stream), "buffers")) return -1;
    }
    if (nb > g->cap) {
        /* Double up to the largest chunk so a growing n reallocates a few times at most. */
        int cap = 2 * g->cap > nb ? 2 * g->cap : nb;
        if (cap > CUDA_INCEPTION_MAX_CHUNK) cap = CUDA_INCEPTION_MAX_CHUNK;
        cuinc_release_buffers(g);
        const size_t floats[6] = {g->stem_floats, g->stem_floats, g->block_floats, g->block_floats,
                                  g->conv_floats, (size_t)g->out_channels};
        float **bufs[6] = {&g->a, &g->b, &g->t1, &g->t2, &g->y, &g->feat};
        size_t total = 0;
        for (int i = 0; i < 6; i++) {
            const size_t bytes = sizeof(float) * floats[i] * (size_t)cap;
            total += bytes;
            cudaError_t e = cudaMalloc((void **)bufs[i], bytes);
            if (e != cudaSuccess) {
                *bufs[i] = NULL;
                cudaGetLastError();
                cuinc_release_buffers(g);
                char reason[200];
                snprintf(reason, sizeof reason, "%s allocating activations for %d images (%zu MiB "
                         "and more)", cudaGetErrorString(e), cap, total >> 20);
                return cuinc_fail(g, "buffers", reason);
            }
        }
        g->cap = cap;
    }
    if (in_floats > g->in_floats) {
        cudaFree(g->in);
        g->in = NULL;
        g->in_floats = 0;
        if (cuinc_check(g, cudaMalloc((void **)&g->in, sizeof(float) * in_floats),
                        "input buffer")) {
            g->in = NULL;
            return -1;
        }
        g->in_floats = in_floats;
    }
    return 0;
}

/* ---- release -------------------------------------------------------------------------------- */

void cuda_inception_free(cuda_inception *g) {
    if (!g) return;
    int previous = g->device;
    if (cudaGetDevice(&previous) != cudaSuccess) previous = g->device;
    cudaSetDevice(g->device);
    if (g->stream) cudaStreamSynchronize(g->stream);
    for (int k = 0; k < g->nconv; k++) {
        cuinc_conv *c = &g->convs[k];
        cudaFree(c->weight);
        cudaFree(c->bias);
        if (c->wdesc) cudnnDestroyFilterDescriptor(c->wdesc);
        if (c->cdesc) cudnnDestroyConvolutionDescriptor(c->cdesc);
    }
    cuinc_release_buffers(g);
    cudaFree(g->in);
    cudaFree(g->ws);
    cudnnPoolingDescriptor_t pools[3] = {g->max_s2.desc, g->max_s1.desc, g->avg_s1.desc};
    for (int i = 0; i < 3; i++)
        if (pools[i]) cudnnDestroyPoolingDescriptor(pools[i]);
    if (g->xdesc) cudnnDestroyTensorDescriptor(g->xdesc);
    if (g->ydesc) cudnnDestroyTensorDescriptor(g->ydesc);
    if (g->dnn) cudnnDestroy(g->dnn);
    if (g->stream) cudaStreamDestroy(g->stream);
    cudaGetLastError();
    cudaSetDevice(previous);
    cudaGetLastError();
    free(g->convs);
    free(g->blocks);
    free(g->algo);
    free(g);
}
