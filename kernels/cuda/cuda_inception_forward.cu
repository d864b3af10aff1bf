/* cuda_inception_forward.cu — the GPU FID Inception's forward pass: the input resize, the stem
 * and the mixed blocks written as engine/inception.c writes them (same branches, same
 * temporaries, same concatenation order), and the global average pool. Convolutions and pools are cuDNN's;
 * the resize, bias + ReLU and the mean are the kernels below, in the CPU's formulas. */
#include <stdio.h>

#include "cuda_inception_internal.h"
#include "cuda_internal.h" /* CUDA_THREADS, cuda_grid */

/* ---- kernels -------------------------------------------------------------------------------- */

/* PyTorch's linear source index (align_corners=False), exactly inception_src_index in
 * engine/inception_ops.c: the lower neighbour i0, the step to the upper one (0 at the last
 * pixel) and its weight. */
static __device__ void cuinc_src_index(int dst, float scale, int in_len, int *i0, int *step,
                                       float *w1) {
    float src = scale * ((float)dst + 0.5f) - 0.5f;
    if (src < 0.0f) src = 0.0f;
    *i0 = (int)src;
    if (*i0 > in_len - 1) *i0 = in_len - 1;
    *step = *i0 < in_len - 1 ? 1 : 0;
    *w1 = src - (float)*i0;
}

/* out (nb, 3, R, R) = 2 * bilinear((in + 1) / 2) - 1 of in (nb, C, H, W), as
 * inception_op_resize; a grey image's channel feeds all three (the CPU copies its channel 0). */
static __global__ void cuinc_resize_kernel(float *out, const float *in, int nb, int C, int H,
                                          int W, int R) {
    const size_t plane = (size_t)R * R, total = (size_t)nb * 3 * plane;
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    const float sy = (float)H / (float)R, sx = (float)W / (float)R;
    for (size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x; idx < total; idx += stride) {
        const size_t img = idx / (3 * plane);
        const int ch = (int)(idx / plane % 3);
        const int oy = (int)(idx % plane / (size_t)R), ox = (int)(idx % (size_t)R);
        const float *src = in + (img * C + (C == 3 ? ch : 0)) * (size_t)H * W;
        int y0, ystep, x0, xstep;
        float wy1, wx1;
        cuinc_src_index(oy, sy, H, &y0, &ystep, &wy1);
        cuinc_src_index(ox, sx, W, &x0, &xstep, &wx1);
        const float wy0 = 1.0f - wy1, wx0 = 1.0f - wx1;
        const float *r0 = src + (size_t)y0 * W, *r1 = r0 + (size_t)ystep * W;
        /* pytorch-fid's input is in [0, 1]: the engine's [-1, 1] maps there first. */
        const float a = (r0[x0] + 1.0f) * 0.5f, b = (r0[x0 + xstep] + 1.0f) * 0.5f;
        const float c = (r1[x0] + 1.0f) * 0.5f, d = (r1[x0 + xstep] + 1.0f) * 0.5f;
        const float p = wy0 * (wx0 * a + wx1 * b) + wy1 * (wx0 * c + wx1 * d);
        out[idx] = 2.0f * p - 1.0f;
    }
}

/* dst = relu(src + bias) for src packed (nb, C, plane) and dst a (nb, C, plane) view whose images
 * are dst_stride apart (a channel slice of a concatenation, or src itself). */
static __global__ void cuinc_bias_relu_kernel(float *dst, size_t dst_stride, const float *src,
                                              const float *bias, int nb, int C, int plane) {
    const size_t per = (size_t)C * plane, total = per * nb;
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x; idx < total; idx += stride) {
        const size_t img = idx / per, rest = idx % per;
        const float v = src[idx] + bias[rest / (size_t)plane];
        dst[img * dst_stride + rest] = v > 0.0f ? v : 0.0f;
    }
}

/* out (rows) = the mean of each row of in (rows, plane), summed in double in order, as
 * inception_op_mean. */
static __global__ void cuinc_mean_kernel(float *out, const float *in, size_t rows, int plane) {
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t r = (size_t)blockIdx.x * blockDim.x + threadIdx.x; r < rows; r += stride) {
        const float *p = in + r * plane;
        double sum = 0.0;
        for (int i = 0; i < plane; i++) sum += p[i];
        out[r] = (float)(sum / plane);
    }
}

/* ---- tensors and operators ------------------------------------------------------------------ */

static const float cuinc_one = 1.0f, cuinc_zero = 0.0f;

static cuinc_tensor cuinc_packed(float *p, int c, int h, int w) {
    cuinc_tensor t = {p, c, h, w, (size_t)c * h * w};
    return t;
}

static int cuinc_is_packed(cuinc_tensor t) {
    return t.stride == (size_t)t.c * t.h * t.w;
}

/* A block's output being filled branch by branch: each branch takes the next channels. */
typedef struct {
    cuinc_tensor all;
    int used;
} cuinc_cat;

static cuinc_cat cuinc_cat_begin(float *buf, int c, int h, int w) {
    cuinc_cat cat = {cuinc_packed(buf, c, h, w), 0};
    return cat;
}

/* The slice of the next c channels of cat; fails if they run past its end. */
static cuinc_tensor cuinc_cat_next(cuda_inception *g, cuinc_cat *cat, int c) {
    cuinc_tensor t = cat->all;
    if (cat->used + c > cat->all.c) {
        cuinc_fail(g, "concatenation", "the branches have more channels than the block output");
        c = 0;
    }
    t.p += (size_t)cat->used * t.h * t.w;
    t.c = c;
    cat->used += c;
    return t;
}

/* The filled block output; fails unless every channel was written. */
static cuinc_tensor cuinc_cat_end(cuda_inception *g, const cuinc_cat *cat) {
    if (cat->used != cat->all.c)
        cuinc_fail(g, "concatenation", "the branches leave channels of the block output unwritten");
    return cat->all;
}

static void cuinc_launched(cuda_inception *g, const char *op) {
    cuinc_check(g, cudaGetLastError(), op);
}

/* Convolution k + bias + ReLU of in (packed) into out (packed, or a slice of a concatenation).
 * cuDNN writes a packed tensor; the bias and ReLU pass moves it into a slice on the way. */
static void cuinc_conv_into(cuda_inception *g, int k, cuinc_tensor in, cuinc_tensor out, int nb) {
    if (g->failed) return;
    const cuinc_conv *c = &g->convs[k];
    const int plane = c->out_h * c->out_w;
    const size_t packed = (size_t)c->cout * plane;
    float *raw = out.stride == packed ? out.p : g->y;
    if (in.c != c->cin || in.h != c->in_h || in.w != c->in_w || !cuinc_is_packed(in) ||
        out.c != c->cout || out.h != c->out_h || out.w != c->out_w ||
        (raw == g->y && packed > g->conv_floats)) {
        char reason[200];
        snprintf(reason, sizeof reason, "convolution %d (%d -> %d) gets input (%d, %d, %d) and "
                 "output (%d, %d, %d); its description says (%d, %d, %d) -> (%d, %d, %d)", k,
                 c->cin, c->cout, in.c, in.h, in.w, out.c, out.h, out.w, c->cin, c->in_h, c->in_w,
                 c->cout, c->out_h, c->out_w);
        cuinc_fail(g, "forward", reason);
        return;
    }
    if (cuinc_check_dnn(g, cudnnSetTensor4dDescriptor(g->xdesc, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT,
                                                      nb, c->cin, c->in_h, c->in_w),
                        "tensor descriptor") ||
        cuinc_check_dnn(g, cudnnSetTensor4dDescriptor(g->ydesc, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT,
                                                      nb, c->cout, c->out_h, c->out_w),
                        "tensor descriptor") ||
        cuinc_check_dnn(g, cudnnConvolutionForward(g->dnn, &cuinc_one, g->xdesc, in.p, c->wdesc,
                                                   c->weight, c->cdesc,
                                                   g->algo[(size_t)(nb - 1) * g->nconv + k],
                                                   g->ws, g->ws_bytes, &cuinc_zero, g->ydesc, raw),
                        "cudnnConvolutionForward"))
        return;
    const size_t total = packed * nb;
    cuinc_bias_relu_kernel<<<cuda_grid(total), CUDA_THREADS, 0, g->stream>>>(
        out.p, out.stride, raw, c->bias, nb, c->cout, plane);
    cuinc_launched(g, "bias_relu");
}

/* Convolution k of in into buf, packed; returns the output. */
static cuinc_tensor cuinc_conv_buf(cuda_inception *g, int k, cuinc_tensor in, float *buf, int nb) {
    const cuinc_conv *c = &g->convs[k];
    cuinc_tensor out = cuinc_packed(buf, c->cout, c->out_h, c->out_w);
    cuinc_conv_into(g, k, in, out, nb);
    return out;
}

/* Convolution k of in into the next channels of cat. */
static void cuinc_conv_cat(cuda_inception *g, int k, cuinc_tensor in, cuinc_cat *cat, int nb) {
    cuinc_tensor out = cuinc_cat_next(g, cat, g->convs[k].cout);
    cuinc_conv_into(g, k, in, out, nb);
}

/* 3x3 pool p of in (packed) into out, whose images may be out.stride apart (a slice): the output
 * descriptor carries the full tensor's strides, so cuDNN writes the slice in place. */
static void cuinc_pool_into(cuda_inception *g, const cuinc_pool *p, cuinc_tensor in,
                            cuinc_tensor out, int nb) {
    if (g->failed) return;
    const int oh = (in.h + 2 * p->pad - 3) / p->stride + 1;
    const int ow = (in.w + 2 * p->pad - 3) / p->stride + 1;
    int n = 0, c = 0, h = 0, w = 0;
    if (!cuinc_is_packed(in) || out.c != in.c || out.h != oh || out.w != ow) {
        cuinc_fail(g, "forward", "a pool's input and output shapes disagree");
        return;
    }
    if (cuinc_check_dnn(g, cudnnSetTensor4dDescriptor(g->xdesc, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT,
                                                      nb, in.c, in.h, in.w),
                        "tensor descriptor") ||
        cuinc_check_dnn(g, cudnnGetPooling2dForwardOutputDim(p->desc, g->xdesc, &n, &c, &h, &w),
                        "pooling output size"))
        return;
    if (n != nb || c != in.c || h != oh || w != ow) {
        cuinc_fail(g, "forward", "cuDNN's pool output size differs from the network's");
        return;
    }
    if (cuinc_check_dnn(g, cudnnSetTensor4dDescriptorEx(g->ydesc, CUDNN_DATA_FLOAT, nb, out.c, oh,
                                                        ow, (int)out.stride, oh * ow, ow, 1),
                        "tensor descriptor"))
        return;
    cuinc_check_dnn(g, cudnnPoolingForward(g->dnn, p->desc, &cuinc_one, g->xdesc, in.p, &cuinc_zero,
                                           g->ydesc, out.p),
                    "cudnnPoolingForward");
}

/* Pool p of in into buf, packed; returns the output. */
static cuinc_tensor cuinc_pool_buf(cuda_inception *g, const cuinc_pool *p, cuinc_tensor in,
                                   float *buf, int nb) {
    cuinc_tensor out = cuinc_packed(buf, in.c, (in.h + 2 * p->pad - 3) / p->stride + 1,
                                    (in.w + 2 * p->pad - 3) / p->stride + 1);
    cuinc_pool_into(g, p, in, out, nb);
    return out;
}

/* Pool p of in into the next channels of cat. */
static void cuinc_pool_cat(cuda_inception *g, const cuinc_pool *p, cuinc_tensor in, cuinc_cat *cat,
                           int nb) {
    cuinc_pool_into(g, p, in, cuinc_cat_next(g, cat, in.c), nb);
}

/* ---- the network ---------------------------------------------------------------------------- */

/* Conv2d_1a .. Conv2d_4a with maxpool1 and maxpool2 (convolutions k..k+4) of x (in a); the
 * result is in b. */
static cuinc_tensor cuinc_stem(cuda_inception *g, int k, cuinc_tensor x, int nb) {
    cuinc_tensor t = cuinc_conv_buf(g, k, x, g->b, nb); /* 32x149 */
    t = cuinc_conv_buf(g, k + 1, t, g->a, nb);           /* 32x147 */
    t = cuinc_conv_buf(g, k + 2, t, g->b, nb);           /* 64x147 */
    t = cuinc_pool_buf(g, &g->max_s2, t, g->a, nb);      /* 64x73 */
    t = cuinc_conv_buf(g, k + 3, t, g->b, nb);           /* 80x73 */
    t = cuinc_conv_buf(g, k + 4, t, g->a, nb);           /* 192x71 */
    return cuinc_pool_buf(g, &g->max_s2, t, g->b, nb);   /* 192x35 */
}

/* FIDInceptionA: [1x1, 5x5, 3x3dbl, conv(avgpool)]. */
static cuinc_tensor cuinc_block_a(cuda_inception *g, int k, cuinc_tensor x, float *y, int nb) {
    const cuinc_conv *c = g->convs + k;
    cuinc_cat cat = cuinc_cat_begin(y, c[0].cout + c[2].cout + c[5].cout + c[6].cout, x.h, x.w);
    cuinc_conv_cat(g, k, x, &cat, nb);
    cuinc_tensor t = cuinc_conv_buf(g, k + 1, x, g->t1, nb);
    cuinc_conv_cat(g, k + 2, t, &cat, nb);
    t = cuinc_conv_buf(g, k + 3, x, g->t1, nb);
    t = cuinc_conv_buf(g, k + 4, t, g->t2, nb);
    cuinc_conv_cat(g, k + 5, t, &cat, nb);
    t = cuinc_pool_buf(g, &g->avg_s1, x, g->t1, nb);
    cuinc_conv_cat(g, k + 6, t, &cat, nb);
    return cuinc_cat_end(g, &cat);
}

/* InceptionB (Mixed_6a): [3x3 s2, 3x3dbl (last s2), maxpool s2]. */
static cuinc_tensor cuinc_block_b(cuda_inception *g, int k, cuinc_tensor x, float *y, int nb) {
    const cuinc_conv *c = g->convs + k;
    cuinc_cat cat = cuinc_cat_begin(y, c[0].cout + c[3].cout + x.c, (x.h - 3) / 2 + 1,
                                    (x.w - 3) / 2 + 1);
    cuinc_conv_cat(g, k, x, &cat, nb);
    cuinc_tensor t = cuinc_conv_buf(g, k + 1, x, g->t1, nb);
    t = cuinc_conv_buf(g, k + 2, t, g->t2, nb);
    cuinc_conv_cat(g, k + 3, t, &cat, nb);
    cuinc_pool_cat(g, &g->max_s2, x, &cat, nb);
    return cuinc_cat_end(g, &cat);
}

/* FIDInceptionC: [1x1, 7x7 (1x7, 7x1), 7x7dbl (7x1, 1x7, 7x1, 1x7), conv(avgpool)]. */
static cuinc_tensor cuinc_block_c(cuda_inception *g, int k, cuinc_tensor x, float *y, int nb) {
    const cuinc_conv *c = g->convs + k;
    cuinc_cat cat = cuinc_cat_begin(y, c[0].cout + c[3].cout + c[8].cout + c[9].cout, x.h, x.w);
    cuinc_conv_cat(g, k, x, &cat, nb);
    cuinc_tensor t = cuinc_conv_buf(g, k + 1, x, g->t1, nb);
    t = cuinc_conv_buf(g, k + 2, t, g->t2, nb);
    cuinc_conv_cat(g, k + 3, t, &cat, nb);
    t = cuinc_conv_buf(g, k + 4, x, g->t1, nb);
    t = cuinc_conv_buf(g, k + 5, t, g->t2, nb);
    t = cuinc_conv_buf(g, k + 6, t, g->t1, nb);
    t = cuinc_conv_buf(g, k + 7, t, g->t2, nb);
    cuinc_conv_cat(g, k + 8, t, &cat, nb);
    t = cuinc_pool_buf(g, &g->avg_s1, x, g->t1, nb);
    cuinc_conv_cat(g, k + 9, t, &cat, nb);
    return cuinc_cat_end(g, &cat);
}

/* InceptionD (Mixed_7a): [3x3 (last s2), 7x7x3 (last s2), maxpool s2]. */
static cuinc_tensor cuinc_block_d(cuda_inception *g, int k, cuinc_tensor x, float *y, int nb) {
    const cuinc_conv *c = g->convs + k;
    cuinc_cat cat = cuinc_cat_begin(y, c[1].cout + c[5].cout + x.c, (x.h - 3) / 2 + 1,
                                    (x.w - 3) / 2 + 1);
    cuinc_tensor t = cuinc_conv_buf(g, k, x, g->t1, nb);
    cuinc_conv_cat(g, k + 1, t, &cat, nb);
    t = cuinc_conv_buf(g, k + 2, x, g->t1, nb);
    t = cuinc_conv_buf(g, k + 3, t, g->t2, nb);
    t = cuinc_conv_buf(g, k + 4, t, g->t1, nb);
    cuinc_conv_cat(g, k + 5, t, &cat, nb);
    cuinc_pool_cat(g, &g->max_s2, x, &cat, nb);
    return cuinc_cat_end(g, &cat);
}

/* FIDInceptionE_1 / _2: [1x1, 3x3 (1x3 | 3x1), 3x3dbl (3x3, then 1x3 | 3x1), conv(pool)], the
 * pool an average pool in E_1 and a 3x3 stride-1 max pool in E_2. */
static cuinc_tensor cuinc_block_e(cuda_inception *g, int k, cuinc_tensor x, float *y, int nb,
                                  const cuinc_pool *pool) {
    const cuinc_conv *c = g->convs + k;
    cuinc_cat cat = cuinc_cat_begin(y, c[0].cout + c[2].cout + c[3].cout + c[6].cout + c[7].cout +
                                       c[8].cout, x.h, x.w);
    cuinc_conv_cat(g, k, x, &cat, nb);
    cuinc_tensor t = cuinc_conv_buf(g, k + 1, x, g->t1, nb);
    cuinc_conv_cat(g, k + 2, t, &cat, nb);
    cuinc_conv_cat(g, k + 3, t, &cat, nb);
    t = cuinc_conv_buf(g, k + 4, x, g->t1, nb);
    t = cuinc_conv_buf(g, k + 5, t, g->t2, nb);
    cuinc_conv_cat(g, k + 6, t, &cat, nb);
    cuinc_conv_cat(g, k + 7, t, &cat, nb);
    t = cuinc_pool_buf(g, pool, x, g->t1, nb);
    cuinc_conv_cat(g, k + 8, t, &cat, nb);
    return cuinc_cat_end(g, &cat);
}

/* Features of the nb images already in g->in into g->feat (nb, out_channels). */
static void cuinc_forward_chunk(cuda_inception *g, int C, int H, int W, int nb) {
    const int R = CUDA_INCEPTION_SIZE;
    const size_t resized = (size_t)nb * 3 * R * R;
    cuinc_resize_kernel<<<cuda_grid(resized), CUDA_THREADS, 0, g->stream>>>(g->a, g->in, nb, C, H,
                                                                           W, R);
    cuinc_launched(g, "resize");
    cuinc_tensor x = cuinc_packed(g->a, 3, R, R);
    int k = 0;
    for (int b = 0; b < g->nblock && !g->failed; b++) {
        float *y = x.p == g->a ? g->b : g->a; /* block outputs alternate between a and b */
        switch (g->blocks[b]) {
        case CUDA_INCEPTION_STEM: x = cuinc_stem(g, k, x, nb); k += 5; break;
        case CUDA_INCEPTION_A: x = cuinc_block_a(g, k, x, y, nb); k += 7; break;
        case CUDA_INCEPTION_B: x = cuinc_block_b(g, k, x, y, nb); k += 4; break;
        case CUDA_INCEPTION_C: x = cuinc_block_c(g, k, x, y, nb); k += 10; break;
        case CUDA_INCEPTION_D: x = cuinc_block_d(g, k, x, y, nb); k += 6; break;
        case CUDA_INCEPTION_E1: x = cuinc_block_e(g, k, x, y, nb, &g->avg_s1); k += 9; break;
        case CUDA_INCEPTION_E2: x = cuinc_block_e(g, k, x, y, nb, &g->max_s1); k += 9; break;
        }
    }
    if (g->failed) return;
    if (x.c != g->out_channels || !cuinc_is_packed(x)) {
        cuinc_fail(g, "forward", "the last block's output is not the feature width");
        return;
    }
    const size_t rows = (size_t)nb * x.c;
    cuinc_mean_kernel<<<cuda_grid(rows), CUDA_THREADS, 0, g->stream>>>(g->feat, x.p, rows,
                                                                       x.h * x.w);
    cuinc_launched(g, "mean");
}

int cuda_inception_features(cuda_inception *g, const float *images, int n, int C, int H, int W,
                            float *features) {
    if (!g || g->failed) return -1;
    if (!g->finished) return cuinc_fail(g, "features", "the network is not finished");
    if (n < 0 || (C != 1 && C != 3) || H < 1 || W < 1) {
        char reason[160];
        snprintf(reason, sizeof reason, "images of shape (%d, %d, %d, %d); need n >= 0, 1 or 3 "
                 "channels and H, W >= 1", n, C, H, W);
        return cuinc_fail(g, "features", reason);
    }
    const size_t img = (size_t)C * H * W, F = (size_t)g->out_channels;
    const int previous = cuinc_enter(g);
    for (int done = 0; done < n && !g->failed;) {
        const int nb = n - done < CUDA_INCEPTION_MAX_CHUNK ? n - done : CUDA_INCEPTION_MAX_CHUNK;
        if (cuinc_plan(g, nb) || cuinc_reserve(g, nb, img * nb) ||
            /* pageable host memory: the copy has read the images when it returns */
            cuinc_check(g, cudaMemcpyAsync(g->in, images + (size_t)done * img,
                                           sizeof(float) * img * nb, cudaMemcpyHostToDevice,
                                           g->stream), "image upload"))
            break;
        cuinc_forward_chunk(g, C, H, W, nb);
        if (g->failed ||
            cuinc_check(g, cudaMemcpyAsync(features + (size_t)done * F, g->feat,
                                           sizeof(float) * F * nb, cudaMemcpyDeviceToHost,
                                           g->stream), "feature download") ||
            /* kernel faults surface here */
            cuinc_check(g, cudaStreamSynchronize(g->stream), "forward"))
            break;
        done += nb;
    }
    cuinc_leave(previous);
    return g->failed ? -1 : 0;
}
