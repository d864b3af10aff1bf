/* cuda_internal.h — private glue between the source files of the CUDA backend.
 *
 * Mirrors kernels/cpu: each cuda_*.cu file owns one group of ops, keeps its kernels and host
 * wrappers static, and exposes only an installer that writes its function pointers into the
 * dt_backend table; cuda_backend.cu creates the context and calls every installer.
 *
 * Execution model:
 *  - One context per backend: one device, one non-blocking stream, one cuBLAS handle (and, once
 *    it first convolves, a cuDNN handle on the same stream: cuda_conv.cu). Every op enqueues work
 *    on that stream and returns at once; only download and sync wait.
 *  - Errors are sticky. The first failure (a launch error, a cuBLAS status, an out-of-memory
 *    scratch request) is recorded with the op's name; later ops become no-ops and `sync` returns
 *    a negative code with `last_error` saying what happened. Nothing aborts the process.
 *  - No allocation in steady state: ops that need temporary memory take it from the context's
 *    scratch slots, which grow to the high-water mark during the first step and are then reused.
 *  - Precision: be->precision selects fp32 (cublasSgemm with CUBLAS_DEFAULT_MATH, i.e. no TF32)
 *    or bf16 (inputs cast to bf16 into scratch, cublasGemmEx with fp32 accumulation and fp32
 *    outputs). Tensors in the op table are always fp32.
 */
#ifndef DT_CUDA_INTERNAL_H
#define DT_CUDA_INTERNAL_H

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>

#include "backend.h"

/* Scratch slots: each is an independent, growable device buffer. An op may use any slot for the
 * duration of its own call; no op relies on scratch contents left by another op. */
enum {
    CUDA_SCRATCH_CAST_A = 0, /* bf16 copy of a matmul's first operand */
    CUDA_SCRATCH_CAST_B,     /* bf16 copy of its second operand */
    CUDA_SCRATCH_CAST_C,     /* bf16 copy of a third operand (attention backward) */
    CUDA_SCRATCH_REDUCE,     /* partial sums of reductions (column sums, sum of squares) */
    CUDA_SCRATCH_SLOTS
};

typedef struct {
    int device;                 /* CUDA device index */
    char name[32];              /* "cuda:N" (also dt_backend.name) */
    cudaStream_t stream;        /* every op runs here, in order */
    cublasHandle_t cublas;      /* bound to `stream`, pointer mode host */
    int num_sms;                /* multiprocessor count, for grid sizing */
    void *scratch[CUDA_SCRATCH_SLOTS];
    size_t scratch_bytes[CUDA_SCRATCH_SLOTS];
    void *conv;                 /* cuda_conv.cu's state (cuDNN handle, plans), made on first use */
    int failed;                 /* sticky: set by the first failure */
    char error[256];            /* what failed, for last_error */
} cuda_ctx;

#ifdef __cplusplus
extern "C" {
#endif

/* The context of a CUDA backend. */
static inline cuda_ctx *cuda_ctx_of(dt_backend *be) {
    return (cuda_ctx *)be->impl;
}

/* Records a failure of `op` (first one wins) with a reason; returns -1. */
int cuda_fail(cuda_ctx *cx, const char *op, const char *reason);
/* 0 when `e` is cudaSuccess, else records "<op>: <cudaGetErrorString>" and returns -1. */
int cuda_check(cuda_ctx *cx, cudaError_t e, const char *op);
/* 0 when `s` is CUBLAS_STATUS_SUCCESS, else records it and returns -1. */
int cuda_check_blas(cuda_ctx *cx, cublasStatus_t s, const char *op);
/* After a kernel launch: records a launch error (bad configuration, no kernel image for this
 * GPU) against `op`. Returns 0 or -1. Does not synchronise. */
int cuda_check_launch(cuda_ctx *cx, const char *op);
/* Scratch slot `slot` with room for at least `bytes`, growing it (stream-synchronised free of the
 * old buffer, then cudaMalloc) when needed. NULL after recording an out-of-memory failure. */
void *cuda_scratch(cuda_ctx *cx, int slot, size_t bytes);

/* Writes n floats of src as bf16 (round to nearest even) into dst, on the context's stream. */
void cuda_cast_bf16(cuda_ctx *cx, __nv_bfloat16 *dst, const float *src, size_t n);

/* Installers: each fills the table entries of its group and touches nothing else. */
void cuda_dense_install(dt_backend *be);     /* matmul (cuda_dense.cu) */
void cuda_attention_install(dt_backend *be); /* attention (cuda_attention.cu) */
void cuda_norm_install(dt_backend *be);      /* ln_modulate, gate_residual (cuda_norm.cu) */
void cuda_pointwise_install(dt_backend *be); /* activations, axpy, scale, add_rows, randn */
void cuda_embed_install(dt_backend *be);     /* embeddings, patchify family (cuda_embed.cu) */
void cuda_diffusion_install(dt_backend *be); /* q_sample, cfg_combine, ddpm/ddim steps */
void cuda_loss_install(dt_backend *be);      /* diffusion_loss (cuda_loss.cu) */
void cuda_optim_install(dt_backend *be);     /* sum_squares, clip, adamw, ema (cuda_optim.cu) */
void cuda_conv_install(dt_backend *be);      /* conv2d_scratch_bytes, conv2d_forward (cuda_conv.cu) */
void cuda_image_install(dt_backend *be);     /* group_norm, upsample2x, transpose (cuda_image.cu) */

/* Releases cx->conv (the cuDNN handle and plans) if it was made; called before the stream goes. */
void cuda_conv_release(cuda_ctx *cx);

#ifdef __cplusplus
}
#endif

/* Threads per block for elementwise kernels, and a grid that covers n elements with a cap (the
 * kernels use grid-stride loops, so any grid is correct). */
#define CUDA_THREADS 256
static inline unsigned cuda_grid(size_t n) {
    size_t blocks = (n + CUDA_THREADS - 1) / CUDA_THREADS;
    if (blocks < 1) blocks = 1;
    if (blocks > 65535u * 8u) blocks = 65535u * 8u;
    return (unsigned)blocks;
}

/* Grid for kernels with samples on y: x covers `per_sample` elements as cuda_grid does, y runs
 * over B samples up to the hardware's cap (the kernels stride over samples as well). */
#define CUDA_GRID_Y_CAP 65535u
static inline dim3 cuda_sample_grid(int B, size_t per_sample) {
    unsigned by = (unsigned)B < CUDA_GRID_Y_CAP ? (unsigned)B : CUDA_GRID_Y_CAP;
    return dim3(cuda_grid(per_sample), by);
}

/* Ops return early, enqueueing nothing, once the context has failed. */
#define CUDA_OP_BEGIN(be, cx)          \
    cuda_ctx *cx = cuda_ctx_of(be);    \
    if (cx->failed) return

#endif
