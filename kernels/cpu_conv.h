/* cpu_conv.h — the CPU convolution core (im2col in bands of output rows + OpenBLAS sgemm), shared
 * by the CPU backend's conv2d_forward (kernels/cpu/cpu_conv.c) and the engine's CPU-only networks
 * that run one image per thread (the FID Inception, engine/inception_ops.c).
 *
 * One image at a time, NCHW, fp32, cross-correlation as PyTorch's conv2d computes it, with zero
 * padding that may differ on each side (diffusers' Downsample2D pads only bottom and right).
 * Nothing here allocates: the caller hands in the im2col scratch.
 */
#ifndef DT_CPU_CONV_H
#define DT_CPU_CONV_H

#include <stddef.h>

/* The shape of one convolution: input (C, H, W), weight (OC, C, KH, KW), `stride` on both axes,
 * pad_t zero rows above, pad_b below, pad_l columns left, pad_r right. */
typedef struct {
    int C, H, W;
    int OC, KH, KW;
    int stride;
    int pad_t, pad_l, pad_b, pad_r;
} cpu_conv_geom;

/* Output height and width: (H + pad_t + pad_b - KH) / stride + 1 (W alike). */
static inline int cpu_conv_out_h(const cpu_conv_geom *g) {
    return (g->H + g->pad_t + g->pad_b - g->KH) / g->stride + 1;
}
static inline int cpu_conv_out_w(const cpu_conv_geom *g) {
    return (g->W + g->pad_l + g->pad_r - g->KW) / g->stride + 1;
}

/* 1 when the convolution is a plain matrix product (1x1, stride 1, no padding): no im2col. */
static inline int cpu_conv_is_pointwise(const cpu_conv_geom *g) {
    return g->KH == 1 && g->KW == 1 && g->stride == 1 && g->pad_t == 0 && g->pad_l == 0 &&
           g->pad_b == 0 && g->pad_r == 0;
}

/* Floats of the im2col matrix of one output row, C * KH * KW * Wo: the least scratch
 * cpu_conv2d_image accepts. 0 for a pointwise convolution, which needs none. */
static inline size_t cpu_conv_row_floats(const cpu_conv_geom *g) {
    if (cpu_conv_is_pointwise(g)) return 0;
    return (size_t)g->C * g->KH * g->KW * (size_t)cpu_conv_out_w(g);
}

/* out (OC, Ho, Wo) = w (OC, C, KH, KW) * in (C, H, W) + bias (OC) for one image; bias may be
 * NULL. The geometry must give Ho, Wo >= 1. col is scratch of col_floats floats, at least
 * cpu_conv_row_floats(g) (NULL and 0 for a pointwise convolution); the im2col matrix is built in
 * bands of whole output rows that fit in it. out must not alias in. Threads: outside an OpenMP
 * parallel region the im2col copy is OpenMP-parallel and sgemm uses OpenBLAS's threads; inside
 * one (one image per thread) everything runs on the calling thread. */
void cpu_conv2d_image(const cpu_conv_geom *g, float *out, const float *in, const float *w,
                      const float *bias, float *col, size_t col_floats);

#endif
