/* cuda_conv_gemm.cu — 2-D convolution as im2col + cuBLAS, the CUDA counterpart of
 * kernels/cpu/cpu_conv.c: the convolution of a build without cuDNN, and the fallback of one with
 * it (see cuda_conv.cu).
 *
 * Per image, out (OC, Ho*Wo) = w (OC, K) . col (K, Ho*Wo) with K = C*KH*KW. cuBLAS is
 * column-major, so each product is asked for transposed: out^T (HWo, OC) = col^T (HWo, K) .
 * w^T (K, OC), where the row-major buffers of col, w and out are, as they lie, the column-major
 * col^T (ld HWo), w^T (ld K) and out^T (ld HWo): no operand is transposed (CUBLAS_OP_N twice).
 *
 * The im2col matrix of several whole images goes into scratch at once (one strided-batched GEMM
 * over them) when an image's matrix fits the budget; a larger image is done in bands of output
 * rows, each band a GEMM writing its rows of out (ld HWo keeps them in place).
 */
#include "cuda_conv_internal.h"

/* The im2col scratch budget (whole images, or one image's band of rows). */
#define CUDA_CONV_COL_BUDGET ((size_t)256 << 20)

/* col (n, K, nr * Wo) = the im2col rows [r0, r0 + nr) of the n images at in (n, C, H, W): column
 * (r, ox) of row k = (c, ki, kj) is in[c][(r0 + r) * s - pt + ki][ox * s - pl + kj], 0 in the
 * padding. */
static __global__ void cuda_conv_im2col_kernel(float *col, const float *in, int n, int C, int H,
                                               int W, int KH, int KW, int s, int pt, int pl,
                                               int r0, int nr, int Wo) {
    const int K = C * KH * KW;
    const size_t total = (size_t)n * K * nr * Wo;
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x; idx < total; idx += stride) {
        const int ox = (int)(idx % Wo);
        size_t t = idx / Wo;
        const int r = (int)(t % nr);
        t /= nr;
        const int k = (int)(t % K);
        const size_t i = t / K;
        const int kj = k % KW, ki = k / KW % KH, c = k / (KW * KH);
        const int iy = (r0 + r) * s - pt + ki, ix = ox * s - pl + kj;
        col[idx] = iy >= 0 && iy < H && ix >= 0 && ix < W
                       ? in[((i * C + c) * H + iy) * W + ix]
                       : 0.0f;
    }
}

/* Column-major C_i (m, n) = A_i (m, k) . B (k, n) for i < batch (B shared: stride 0), beta 0:
 * fp32 sgemm, or TF32 tensor-op math with fp32 inputs, accumulation and outputs in bf16 mode.
 * Returns 0, or -1 after recording the failure. */
static int cuda_conv_gemm(cuda_ctx *cx, int bf16, int m, int n, int k, const float *A, int lda,
                          long long strideA, const float *B, int ldb, float *C, int ldc,
                          long long strideC, int batch) {
    const float alpha = 1.0f, beta = 0.0f;
    cublasStatus_t st;
    if (bf16)
        st = cublasGemmStridedBatchedEx(cx->cublas, CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &alpha, A,
                                        CUDA_R_32F, lda, strideA, B, CUDA_R_32F, ldb, 0, &beta, C,
                                        CUDA_R_32F, ldc, strideC, batch,
                                        CUBLAS_COMPUTE_32F_FAST_TF32, CUBLAS_GEMM_DEFAULT);
    else
        st = cublasSgemmStridedBatched(cx->cublas, CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &alpha, A,
                                       lda, strideA, B, ldb, 0, &beta, C, ldc, strideC, batch);
    return cuda_check_blas(cx, st, "conv2d_forward");
}

/* How the scratch is used: `images` whole images per pass (rows = Ho), or one image in bands of
 * `rows` output rows (images = 1, rows < Ho). */
typedef struct {
    int images, rows;
    size_t bytes;
} cuda_conv_gemm_tiling;

static cuda_conv_gemm_tiling cuda_conv_gemm_tile(const cuda_conv_shape *s) {
    cuda_conv_gemm_tiling t = {0, 0, 0};
    if (cuda_conv_is_pointwise(s)) return t;
    const size_t K = (size_t)s->C * s->KH * s->KW;
    const size_t row = K * s->Wo * sizeof(float), image = row * s->Ho;
    if (image <= CUDA_CONV_COL_BUDGET) {
        size_t n = CUDA_CONV_COL_BUDGET / image;
        t.images = n < (size_t)s->B ? (int)n : s->B;
        t.rows = s->Ho;
        t.bytes = (size_t)t.images * image;
    } else {
        size_t r = CUDA_CONV_COL_BUDGET / row;
        t.images = 1;
        t.rows = r < 1 ? 1 : (int)r; /* r < Ho here */
        t.bytes = (size_t)t.rows * row;
    }
    return t;
}

size_t cuda_conv_gemm_scratch_bytes(const cuda_conv_shape *s) {
    return cuda_conv_gemm_tile(s).bytes;
}

void cuda_conv_gemm_forward(cuda_ctx *cx, int bf16, const cuda_conv_shape *s, float *out,
                            const float *inp, const float *w, void *scratch) {
    const int K = s->C * s->KH * s->KW, HWo = s->Ho * s->Wo;
    const size_t in_img = (size_t)s->C * s->H * s->W, out_img = (size_t)s->OC * HWo;
    if (cuda_conv_is_pointwise(s)) {
        /* out_b^T (HW, OC) = in_b^T (HW, C) . w^T (C, OC), every image in one call */
        cuda_conv_gemm(cx, bf16, HWo, s->OC, K, inp, HWo, (long long)in_img, w, K, out, HWo,
                       (long long)out_img, s->B);
        return;
    }
    const cuda_conv_gemm_tiling t = cuda_conv_gemm_tile(s);
    float *col = (float *)scratch;
    for (int b0 = 0; b0 < s->B && !cx->failed; b0 += t.images) {
        const int n = s->B - b0 < t.images ? s->B - b0 : t.images;
        for (int r0 = 0; r0 < s->Ho && !cx->failed; r0 += t.rows) {
            const int nr = s->Ho - r0 < t.rows ? s->Ho - r0 : t.rows;
            const size_t total = (size_t)n * K * nr * s->Wo;
            cuda_conv_im2col_kernel<<<cuda_grid(total), CUDA_THREADS, 0, cx->stream>>>(
                col, inp + (size_t)b0 * in_img, n, s->C, s->H, s->W, s->KH, s->KW, s->stride,
                s->pad_t, s->pad_l, r0, nr, s->Wo);
            if (cuda_check_launch(cx, "conv2d_forward")) return;
            /* rows [r0, r0 + nr) of images b0.. : m = nr * Wo columns of out, ld HWo */
            const int m = nr * s->Wo;
            cuda_conv_gemm(cx, bf16, m, s->OC, K, col, m, (long long)K * m, w, K,
                           out + (size_t)b0 * out_img + (size_t)r0 * s->Wo, HWo,
                           (long long)out_img, n);
        }
    }
}
