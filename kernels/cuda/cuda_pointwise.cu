/* cuda_pointwise.cu — element-wise ops on the GPU: activations, BLAS-1 style updates, row
 * broadcast and the counter-based normal generator. Same formulas, written in the same operation
 * order, as kernels/cpu/cpu_pointwise.c; precise libm (tanhf, expf, logf, cosf), no fast-math
 * intrinsics.
 *
 * Every kernel is a grid-stride loop with size_t indices. axpy and scale take float4 loads when
 * all their pointers are 16-byte aligned (tensors may start at any float offset inside an
 * allocation) and finish the last n % 4 elements with a scalar tail.
 */
#include <math.h>
#include <stdint.h>

#include "cuda_internal.h"
#include "cuda_vec.cuh"
#include "philox.h"

#define CUDA_GELU_K 0.79788456080286535588f /* sqrt(2/pi) */
#define CUDA_GELU_C 0.044715f

/* out = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) */
static __global__ void cuda_pointwise_gelu_forward_kernel(float *out, const float *inp, size_t n) {
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        float x = inp[i];
        out[i] = 0.5f * x * (1.0f + tanhf(CUDA_GELU_K * (x + CUDA_GELU_C * x * x * x)));
    }
}

/* dinp += dout * gelu'(inp); sech^2 as 1 - tanh^2 so large |x| cannot overflow cosh. */
static __global__ void cuda_pointwise_gelu_backward_kernel(float *dinp, const float *inp,
                                                    const float *dout, size_t n) {
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        float x = inp[i];
        float th = tanhf(CUDA_GELU_K * (x + CUDA_GELU_C * x * x * x));
        float sech2 = 1.0f - th * th;
        float grad = 0.5f * (1.0f + th) +
                     0.5f * x * sech2 * CUDA_GELU_K * (1.0f + 3.0f * CUDA_GELU_C * x * x);
        dinp[i] += dout[i] * grad;
    }
}

/* out = x * sigmoid(x), as x / (1 + exp(-x)) like the CPU */
static __global__ void cuda_pointwise_silu_forward_kernel(float *out, const float *inp, size_t n) {
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        out[i] = inp[i] / (1.0f + expf(-inp[i]));
}

/* dinp += dout * s (1 + x (1 - s)), s = sigmoid(x) */
static __global__ void cuda_pointwise_silu_backward_kernel(float *dinp, const float *inp,
                                                    const float *dout, size_t n) {
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        float x = inp[i];
        float s = 1.0f / (1.0f + expf(-x));
        dinp[i] += dout[i] * s * (1.0f + x * (1.0f - s));
    }
}

/* y += a * x: float4 over the first 4*n4 elements, scalar tail after them. */
static __global__ void cuda_pointwise_axpy_kernel(float *y, float a, const float *x, size_t n,
                                                  size_t n4) {
    const size_t start = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    float4 *y4 = (float4 *)y;
    const float4 *x4 = (const float4 *)x;
    for (size_t i = start; i < n4; i += stride) {
        float4 yv = y4[i];
        const float4 xv = x4[i];
        yv.x += a * xv.x;
        yv.y += a * xv.y;
        yv.z += a * xv.z;
        yv.w += a * xv.w;
        y4[i] = yv;
    }
    for (size_t i = 4 * n4 + start; i < n; i += stride) y[i] += a * x[i];
}

/* x *= a: float4 over the first 4*n4 elements, scalar tail after them. */
static __global__ void cuda_pointwise_scale_kernel(float *x, float a, size_t n, size_t n4) {
    cuda_scale_inplace(x, a, n, n4);
}

/* x (B,R) += row (R): x over columns (strided), y over samples (strided); no index division. */
static __global__ void cuda_pointwise_add_rows_kernel(float *x, const float *row, int B, size_t R) {
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    for (int b = blockIdx.y; b < B; b += gridDim.y) {
        float *xb = x + (size_t)b * R;
        for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < R; i += stride)
            xb[i] += row[i];
    }
}

/* out[i] = dt_philox_normal(seed, offset, i): a pure function of the index, so the stream is
 * the CPU's whatever the launch shape (up to libm rounding in logf/cosf). */
static __global__ void cuda_pointwise_randn_kernel(float *out, size_t n, uint64_t seed,
                                                   uint64_t offset) {
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        out[i] = dt_philox_normal(seed, offset, (uint64_t)i);
}

/* out (n) = gelu(inp), tanh approximation. */
static void cuda_pointwise_gelu_forward(dt_backend *be, float *out, const float *inp, size_t n) {
    CUDA_OP_BEGIN(be, cx);
    if (n == 0) return;
    cuda_pointwise_gelu_forward_kernel<<<cuda_grid(n), CUDA_THREADS, 0, cx->stream>>>(out, inp, n);
    cuda_check_launch(cx, "gelu_forward");
}

/* dinp (n) += dout * gelu'(inp). */
static void cuda_pointwise_gelu_backward(dt_backend *be, float *dinp, const float *inp,
                                         const float *dout, size_t n) {
    CUDA_OP_BEGIN(be, cx);
    if (n == 0) return;
    cuda_pointwise_gelu_backward_kernel<<<cuda_grid(n), CUDA_THREADS, 0, cx->stream>>>(dinp, inp,
                                                                                      dout, n);
    cuda_check_launch(cx, "gelu_backward");
}

/* out (n) = silu(inp). */
static void cuda_pointwise_silu_forward(dt_backend *be, float *out, const float *inp, size_t n) {
    CUDA_OP_BEGIN(be, cx);
    if (n == 0) return;
    cuda_pointwise_silu_forward_kernel<<<cuda_grid(n), CUDA_THREADS, 0, cx->stream>>>(out, inp, n);
    cuda_check_launch(cx, "silu_forward");
}

/* dinp (n) += dout * silu'(inp). */
static void cuda_pointwise_silu_backward(dt_backend *be, float *dinp, const float *inp,
                                         const float *dout, size_t n) {
    CUDA_OP_BEGIN(be, cx);
    if (n == 0) return;
    cuda_pointwise_silu_backward_kernel<<<cuda_grid(n), CUDA_THREADS, 0, cx->stream>>>(dinp, inp,
                                                                                      dout, n);
    cuda_check_launch(cx, "silu_backward");
}

/* y (rows, cols) = x * g1[c] * g2[c] (g2 NULL = 1); y may alias x. */
static __global__ void cuda_pointwise_scale_cols_kernel(float *y, const float *x, const float *g1,
                                                        const float *g2, size_t n, int cols) {
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const int c = (int)(i % (size_t)cols);
        y[i] = x[i] * (g2 ? g1[c] * g2[c] : g1[c]);
    }
}

/* One thread per column: sum over rows of dy*x in double, rows in order (as the CPU), then
 * dg1 += sum * g2, dg2 += sum * g1. Adjacent threads read adjacent columns (coalesced). */
static __global__ void cuda_pointwise_scale_cols_grad_kernel(float *dg1, float *dg2,
                                                             const float *dy, const float *x,
                                                             const float *g1, const float *g2,
                                                             int rows, int cols) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= cols) return;
    double acc = 0.0;
    for (int r = 0; r < rows; r++) {
        const size_t i = (size_t)r * cols + c;
        acc += (double)dy[i] * x[i];
    }
    if (dg1) dg1[c] += (float)(acc * (g2 ? g2[c] : 1.0f));
    if (dg2) dg2[c] += (float)(acc * g1[c]);
}

/* y (rows, cols) = x * g1 * g2 by column. */
static void cuda_pointwise_scale_cols_forward(dt_backend *be, float *y, const float *x,
                                              const float *g1, const float *g2, int rows,
                                              int cols) {
    CUDA_OP_BEGIN(be, cx);
    if (rows <= 0 || cols <= 0) return;
    const size_t n = (size_t)rows * cols;
    cuda_pointwise_scale_cols_kernel<<<cuda_grid(n), CUDA_THREADS, 0, cx->stream>>>(y, x, g1, g2,
                                                                                   n, cols);
    cuda_check_launch(cx, "scale_cols_forward");
}

/* Gamma gradients first (they read dy), then dx = dy * g1 * g2, which may overwrite dy. */
static void cuda_pointwise_scale_cols_backward(dt_backend *be, float *dx, float *dg1, float *dg2,
                                               const float *dy, const float *x, const float *g1,
                                               const float *g2, int rows, int cols) {
    CUDA_OP_BEGIN(be, cx);
    if (rows <= 0 || cols <= 0) return;
    if (dg1 || dg2) {
        cuda_pointwise_scale_cols_grad_kernel<<<(cols + CUDA_THREADS - 1) / CUDA_THREADS,
                                                CUDA_THREADS, 0, cx->stream>>>(
            dg1, dg2, dy, x, g1, g2, rows, cols);
        if (cuda_check_launch(cx, "scale_cols_backward")) return;
    }
    if (!dx) return;
    const size_t n = (size_t)rows * cols;
    cuda_pointwise_scale_cols_kernel<<<cuda_grid(n), CUDA_THREADS, 0, cx->stream>>>(dx, dy, g1, g2,
                                                                                   n, cols);
    cuda_check_launch(cx, "scale_cols_backward");
}

/* y (n) += a * x (n). */
static void cuda_pointwise_axpy(dt_backend *be, float *y, float a, const float *x, size_t n) {
    CUDA_OP_BEGIN(be, cx);
    if (n == 0) return;
    const size_t n4 = cuda_aligned16(y) && cuda_aligned16(x) ? n / 4 : 0;
    cuda_pointwise_axpy_kernel<<<cuda_grid(n4 ? n4 : n), CUDA_THREADS, 0, cx->stream>>>(y, a, x, n,
                                                                                       n4);
    cuda_check_launch(cx, "axpy");
}

/* x (n) *= a. */
static void cuda_pointwise_scale(dt_backend *be, float *x, float a, size_t n) {
    CUDA_OP_BEGIN(be, cx);
    if (n == 0) return;
    const size_t n4 = cuda_aligned16(x) ? n / 4 : 0;
    cuda_pointwise_scale_kernel<<<cuda_grid(n4 ? n4 : n), CUDA_THREADS, 0, cx->stream>>>(x, a, n,
                                                                                        n4);
    cuda_check_launch(cx, "scale");
}

/* x (B,R) += row (R) for every b. */
static void cuda_pointwise_add_rows(dt_backend *be, float *x, const float *row, int B, size_t R) {
    CUDA_OP_BEGIN(be, cx);
    if (B <= 0 || R == 0) return;
    cuda_pointwise_add_rows_kernel<<<cuda_sample_grid(B, R), CUDA_THREADS, 0, cx->stream>>>(
        x, row, B, R);
    cuda_check_launch(cx, "add_rows");
}

/* out (n) = standard normals number 0..n-1 of stream (seed, offset), as on the CPU. */
static void cuda_pointwise_randn(dt_backend *be, float *out, size_t n, uint64_t seed,
                                 uint64_t offset) {
    CUDA_OP_BEGIN(be, cx);
    if (n == 0) return;
    cuda_pointwise_randn_kernel<<<cuda_grid(n), CUDA_THREADS, 0, cx->stream>>>(out, n, seed,
                                                                              offset);
    cuda_check_launch(cx, "randn");
}

/* Installs activations, axpy, scale, add_rows, scale_cols_* and randn into `be`; called once by the CUDA
 * backend's creator, touches no other table entries. */
void cuda_pointwise_install(dt_backend *be) {
    be->gelu_forward = cuda_pointwise_gelu_forward;
    be->gelu_backward = cuda_pointwise_gelu_backward;
    be->silu_forward = cuda_pointwise_silu_forward;
    be->silu_backward = cuda_pointwise_silu_backward;
    be->axpy = cuda_pointwise_axpy;
    be->scale = cuda_pointwise_scale;
    be->add_rows = cuda_pointwise_add_rows;
    be->scale_cols_forward = cuda_pointwise_scale_cols_forward;
    be->scale_cols_backward = cuda_pointwise_scale_cols_backward;
    be->randn = cuda_pointwise_randn;
}
