/* inception_ops.h — the CPU operators of the FID Inception network (internal to inception.c and
 * its tests). Tensors are one image's (C, H, W), row-major; nothing here allocates: the caller
 * runs one image per thread and hands in its scratch.
 */
#ifndef DT_INCEPTION_OPS_H
#define DT_INCEPTION_OPS_H

#include <stddef.h>

/* One BasicConv2d (conv without bias, BatchNorm eps 0.001, ReLU) with the BatchNorm folded in:
 * out = relu(weight * x + bias). */
typedef struct {
    char name[48];  /* state-dict prefix, e.g. "Mixed_6b.branch7x7_2" */
    int cin, cout, kh, kw, stride, ph, pw;
    int in_h, in_w; /* input size when the network input is 299x299 (for scratch sizes, FLOPs) */
    float *weight;  /* (cout, cin * kh * kw), PyTorch's (cout, cin, kh, kw) order */
    float *bias;    /* (cout) */
} inception_conv;

/* Output length of a window op over n inputs: floor((n + 2 pad - k) / stride) + 1. */
static inline int inception_out_len(int n, int k, int stride, int pad) {
    return (n + 2 * pad - k) / stride + 1;
}

/* Convolution + bias + ReLU of in (cin, H, W) into out (cout, Ho, Wo), on the CPU convolution
 * core shared with the CPU backend (kernels/cpu_conv.h): anything but a 1x1 stride-1 unpadded
 * conv goes through im2col in bands of output rows, each band at most col_floats floats of col
 * (the caller guarantees col_floats >= cin * kh * kw * Wo). Inside a parallel region everything
 * runs on the calling thread; outside one the im2col and sgemm use the threads. */
void inception_op_conv(const inception_conv *c, const float *in, int H, int W, float *out,
                       float *col, size_t col_floats);

/* 3x3 max pool of in (C, H, W) with stride and zero or one padding (padding never wins: it
 * counts as -inf, as in PyTorch) into out (C, Ho, Wo). */
void inception_op_maxpool3(const float *in, int C, int H, int W, int stride, int pad, float *out);

/* 3x3 average pool, stride 1, padding 1, count_include_pad=False (the divisor counts only the
 * pixels inside the image, as TensorFlow's pool does) of in (C, H, W) into out (C, H, W). */
void inception_op_avgpool3(const float *in, int C, int H, int W, float *out);

/* Mean over the H*W plane of each channel: in (C, HW) into out (C). */
void inception_op_mean(const float *in, int C, int HW, float *out);

/* One channel of an engine image (H, W), values in [-1, 1], to the network's input (Ho, Wo):
 * p = (x + 1) / 2, PyTorch's bilinear interpolation with align_corners=False (source coordinate
 * (dst + 0.5) * in / out - 0.5, clamped at 0, the far neighbour clamped to the edge), then 2p - 1,
 * as pytorch-fid's InceptionV3.forward does to its [0, 1] input. */
void inception_op_resize(const float *in, int H, int W, float *out, int Ho, int Wo);

#endif
