/* cuda_conv_internal.h — private glue between cuda_conv.cu (the op entry points, cuDNN plans,
 * padding and bias) and cuda_conv_gemm.cu (the im2col + cuBLAS convolution used without cuDNN,
 * when cuDNN offers no suitable algorithm for a shape, or when DIFFTUNE_CUDA_CONV=im2col). */
#ifndef DT_CUDA_CONV_INTERNAL_H
#define DT_CUDA_CONV_INTERNAL_H

#include "cuda_internal.h"

/* One conv2d_forward call's shape (backend.h): input (B, C, H, W), weight (OC, C, KH, KW), output
 * (B, OC, Ho, Wo), zero padding pad_t above, pad_b below, pad_l left, pad_r right. */
typedef struct {
    int B, C, H, W, OC, KH, KW, stride, pad_t, pad_l, pad_b, pad_r;
    int Ho, Wo;
} cuda_conv_shape;

/* 1 for a 1x1, stride-1, unpadded convolution: a plain matrix product per image. */
static inline int cuda_conv_is_pointwise(const cuda_conv_shape *s) {
    return s->KH == 1 && s->KW == 1 && s->stride == 1 && s->pad_t == 0 && s->pad_l == 0 &&
           s->pad_b == 0 && s->pad_r == 0;
}

/* Bytes of scratch cuda_conv_gemm_forward needs for shape s: the im2col matrix of as many whole
 * images as fit its budget, or of a band of output rows of one image (0 for 1x1). */
size_t cuda_conv_gemm_scratch_bytes(const cuda_conv_shape *s);

/* out (B, OC, Ho, Wo) = w * inp without the bias, as im2col + cuBLAS on the context's stream;
 * fp32 sgemm, or TF32 tensor-op math when bf16 is set. scratch holds
 * cuda_conv_gemm_scratch_bytes(s). Failures are recorded on cx against "conv2d_forward". */
void cuda_conv_gemm_forward(cuda_ctx *cx, int bf16, const cuda_conv_shape *s, float *out,
                            const float *inp, const float *w, void *scratch);

#endif
