/* cuda_optim.cu — optimiser-side ops on the GPU: gradient norm, clipping, AdamW and the EMA of
 * weights. Same semantics as kernels/cpu/cpu_optim.c.
 *
 * sum_squares accumulates in double like the CPU (a norm over hundreds of millions of floats
 * loses digits in fp32) and reduces in two fixed-shape passes through the CUDA_SCRATCH_REDUCE
 * slot: the grid depends only on n, so the result is the same on every run and every GPU.
 * clip_by_norm reads the squared norm from device memory inside its kernel: no host round trip.
 * Element-wise kernels take float4 loads when every pointer is 16-byte aligned (parameter
 * groups may start at any float offset) and finish with a scalar tail.
 */
#include <math.h>
#include <stdint.h>

#include "cuda_internal.h"
#include "cuda_reduce.cuh"
#include "cuda_vec.cuh"

#define CUDA_OPTIM_SUMSQ_THREADS 256
#define CUDA_OPTIM_SUMSQ_MAX_BLOCKS 1024 /* partials in the first pass */
#define CUDA_OPTIM_SUMSQ_PER_THREAD 16   /* floats per thread before another block is added */

/* Pass 1: partial[blockIdx.x] = sum of x[i]^2 over this block's grid-stride share, in double
 * (float products are exact in double). float4 over the first 4*n4 floats, scalar tail. */
static __global__ void cuda_optim_sumsq_partial_kernel(double *partial, const float *x, size_t n,
                                                       size_t n4) {
    __shared__ double red[32];
    const size_t start = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    const float4 *x4 = (const float4 *)x;
    double acc = 0.0;
    for (size_t i = start; i < n4; i += stride) {
        const float4 v = x4[i];
        acc += (double)v.x * v.x;
        acc += (double)v.y * v.y;
        acc += (double)v.z * v.z;
        acc += (double)v.w * v.w;
    }
    for (size_t i = 4 * n4 + start; i < n; i += stride) acc += (double)x[i] * x[i];
    acc = cuda_block_sum(acc, red);
    if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

/* Pass 2 (one block): *out = (float) sum of the `count` partials, in a fixed order. */
static __global__ void cuda_optim_sumsq_final_kernel(float *out, const double *partial,
                                                     int count) {
    __shared__ double red[32];
    double acc = 0.0;
    for (int i = threadIdx.x; i < count; i += blockDim.x) acc += partial[i];
    acc = cuda_block_sum(acc, red);
    if (threadIdx.x == 0) *out = (float)acc;
}

/* x *= min(1, max_norm / sqrt(*norm_sq)); a zero, NaN or infinite norm leaves x unchanged, as on
 * the CPU. Every thread derives the factor from the device scalar itself. */
static __global__ void cuda_optim_clip_kernel(float *x, size_t n, size_t n4, const float *norm_sq,
                                              float max_norm) {
    const float norm = sqrtf(*norm_sq);
    if (!(norm > max_norm) || !isfinite(norm)) return;
    cuda_scale_inplace(x, max_norm / norm, n, n4);
}

/* AdamW hyper-parameters of one update, bias corrections precomputed on the host. */
typedef struct {
    float lr, beta1, beta2, eps, weight_decay;
    float bc1, bc2; /* 1 - beta^step, computed in double as on the CPU */
} cuda_optim_adamw_hp;

/* One AdamW element, the CPU's expression order: m, v updated; the decoupled decay uses the
 * parameter before this step. */
static __device__ __forceinline__ void cuda_optim_adamw_elem(float &p, float g, float &m, float &v,
                                                             const cuda_optim_adamw_hp &h) {
    float mi = h.beta1 * m + (1.0f - h.beta1) * g;
    float vi = h.beta2 * v + (1.0f - h.beta2) * g * g;
    m = mi;
    v = vi;
    float mhat = mi / h.bc1, vhat = vi / h.bc2;
    p -= h.lr * (mhat / (sqrtf(vhat) + h.eps) + h.weight_decay * p);
}

/* AdamW over n elements: float4 over the first 4*n4, scalar tail. */
static __global__ void cuda_optim_adamw_kernel(float *param, const float *grad, float *m, float *v,
                                               size_t n, size_t n4, cuda_optim_adamw_hp h) {
    const size_t start = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    float4 *p4 = (float4 *)param, *m4 = (float4 *)m, *v4 = (float4 *)v;
    const float4 *g4 = (const float4 *)grad;
    for (size_t i = start; i < n4; i += stride) {
        float4 pv = p4[i], mv = m4[i], vv = v4[i];
        const float4 gv = g4[i];
        cuda_optim_adamw_elem(pv.x, gv.x, mv.x, vv.x, h);
        cuda_optim_adamw_elem(pv.y, gv.y, mv.y, vv.y, h);
        cuda_optim_adamw_elem(pv.z, gv.z, mv.z, vv.z, h);
        cuda_optim_adamw_elem(pv.w, gv.w, mv.w, vv.w, h);
        p4[i] = pv;
        m4[i] = mv;
        v4[i] = vv;
    }
    for (size_t i = 4 * n4 + start; i < n; i += stride)
        cuda_optim_adamw_elem(param[i], grad[i], m[i], v[i], h);
}

/* ema = decay * ema + rest * param (rest = 1 - decay from the host, as on the CPU). */
static __global__ void cuda_optim_ema_kernel(float *ema, const float *param, size_t n, size_t n4,
                                             float decay, float rest) {
    const size_t start = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    float4 *e4 = (float4 *)ema;
    const float4 *p4 = (const float4 *)param;
    for (size_t i = start; i < n4; i += stride) {
        float4 ev = e4[i];
        const float4 pv = p4[i];
        ev.x = decay * ev.x + rest * pv.x;
        ev.y = decay * ev.y + rest * pv.y;
        ev.z = decay * ev.z + rest * pv.z;
        ev.w = decay * ev.w + rest * pv.w;
        e4[i] = ev;
    }
    for (size_t i = 4 * n4 + start; i < n; i += stride) ema[i] = decay * ema[i] + rest * param[i];
}

/* *out (one float of device memory) = sum x[i]^2 over n floats, accumulated in double. Uses the
 * CUDA_SCRATCH_REDUCE slot for the partials; n == 0 writes 0. */
static void cuda_optim_sum_squares(dt_backend *be, float *out, const float *x, size_t n) {
    CUDA_OP_BEGIN(be, cx);
    const size_t per_block = (size_t)CUDA_OPTIM_SUMSQ_THREADS * CUDA_OPTIM_SUMSQ_PER_THREAD;
    size_t blocks = (n + per_block - 1) / per_block;
    if (blocks < 1) blocks = 1;
    if (blocks > CUDA_OPTIM_SUMSQ_MAX_BLOCKS) blocks = CUDA_OPTIM_SUMSQ_MAX_BLOCKS;
    double *partial = (double *)cuda_scratch(cx, CUDA_SCRATCH_REDUCE, blocks * sizeof(double));
    if (!partial) return; /* cuda_scratch recorded the failure */
    const size_t n4 = cuda_aligned16(x) ? n / 4 : 0;
    cuda_optim_sumsq_partial_kernel<<<(unsigned)blocks, CUDA_OPTIM_SUMSQ_THREADS, 0, cx->stream>>>(
        partial, x, n, n4);
    if (cuda_check_launch(cx, "sum_squares")) return;
    cuda_optim_sumsq_final_kernel<<<1, CUDA_OPTIM_SUMSQ_THREADS, 0, cx->stream>>>(out, partial,
                                                                                  (int)blocks);
    cuda_check_launch(cx, "sum_squares");
}

/* x (n) *= min(1, max_norm / sqrt(*norm_sq)), norm_sq one float of device memory. */
static void cuda_optim_clip_by_norm(dt_backend *be, float *x, size_t n, const float *norm_sq,
                                    float max_norm) {
    CUDA_OP_BEGIN(be, cx);
    if (n == 0) return;
    const size_t n4 = cuda_aligned16(x) ? n / 4 : 0;
    cuda_optim_clip_kernel<<<cuda_grid(n4 ? n4 : n), CUDA_THREADS, 0, cx->stream>>>(
        x, n, n4, norm_sq, max_norm);
    cuda_check_launch(cx, "clip_by_norm");
}

/* AdamW on n parameters with bias correction at 1-based `step` and decoupled weight decay;
 * param, m, v updated in place. */
static void cuda_optim_adamw_update(dt_backend *be, float *param, const float *grad, float *m,
                                    float *v, size_t n, float lr, float beta1, float beta2,
                                    float eps, float weight_decay, int step) {
    CUDA_OP_BEGIN(be, cx);
    if (n == 0) return;
    cuda_optim_adamw_hp h;
    h.lr = lr;
    h.beta1 = beta1;
    h.beta2 = beta2;
    h.eps = eps;
    h.weight_decay = weight_decay;
    /* host libm pow in double, exactly the CPU's expression */
    h.bc1 = (float)(1.0 - pow((double)beta1, (double)step));
    h.bc2 = (float)(1.0 - pow((double)beta2, (double)step));
    const int vec = cuda_aligned16(param) && cuda_aligned16(grad) &&
                    cuda_aligned16(m) && cuda_aligned16(v);
    const size_t n4 = vec ? n / 4 : 0;
    cuda_optim_adamw_kernel<<<cuda_grid(n4 ? n4 : n), CUDA_THREADS, 0, cx->stream>>>(
        param, grad, m, v, n, n4, h);
    cuda_check_launch(cx, "adamw_update");
}

/* ema (n) = decay * ema + (1 - decay) * param. */
static void cuda_optim_ema_update(dt_backend *be, float *ema, const float *param, size_t n,
                                  float decay) {
    CUDA_OP_BEGIN(be, cx);
    if (n == 0) return;
    const float rest = 1.0f - decay;
    const size_t n4 = cuda_aligned16(ema) && cuda_aligned16(param) ? n / 4 : 0;
    cuda_optim_ema_kernel<<<cuda_grid(n4 ? n4 : n), CUDA_THREADS, 0, cx->stream>>>(
        ema, param, n, n4, decay, rest);
    cuda_check_launch(cx, "ema_update");
}

/* Installs sum_squares, clip_by_norm, adamw_update and ema_update into `be`; called once by
 * the CUDA backend's creator, touches no other table entries. */
void cuda_optim_install(dt_backend *be) {
    be->sum_squares = cuda_optim_sum_squares;
    be->clip_by_norm = cuda_optim_clip_by_norm;
    be->adamw_update = cuda_optim_adamw_update;
    be->ema_update = cuda_optim_ema_update;
}
