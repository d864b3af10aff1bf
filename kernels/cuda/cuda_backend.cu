/* cuda_backend.cu — the CUDA backend's context: device selection, stream and cuBLAS handle,
 * sticky error recording, scratch slots, the memory ops, and the constructor that assembles the
 * op table from the per-purpose files (see cuda_internal.h for the execution model). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_backend.h"
#include "cuda_internal.h"

/* Scratch grows in whole mebibytes so a slot that creeps up a little per op is not reallocated
 * (each growth costs a stream synchronisation) over and over during the first step. */
#define CUDA_SCRATCH_GRANULE ((size_t)1 << 20)

/* ---- error recording ------------------------------------------------------------------------ */

/* Records the first failure as "CUDA error in <op> on cuda:N: <reason>"; later ones are dropped
 * because they are almost always consequences of the first. Returns -1. */
int cuda_fail(cuda_ctx *cx, const char *op, const char *reason) {
    if (!cx->failed) {
        cx->failed = 1;
        snprintf(cx->error, sizeof cx->error, "CUDA error in %s on %s: %s", op, cx->name, reason);
    }
    return -1;
}

/* 0 for cudaSuccess; otherwise records the runtime's message against `op` and returns -1. */
int cuda_check(cuda_ctx *cx, cudaError_t e, const char *op) {
    if (e == cudaSuccess) return 0;
    return cuda_fail(cx, op, cudaGetErrorString(e));
}

/* 0 for CUBLAS_STATUS_SUCCESS; otherwise records the status name and text against `op`. */
int cuda_check_blas(cuda_ctx *cx, cublasStatus_t s, const char *op) {
    if (s == CUBLAS_STATUS_SUCCESS) return 0;
    char reason[160];
    snprintf(reason, sizeof reason, "cuBLAS %s (%s)", cublasGetStatusName(s),
             cublasGetStatusString(s));
    return cuda_fail(cx, op, reason);
}

/* Reads and clears the thread's last runtime error, which is where a failed <<<>>> launch (bad
 * configuration, no kernel image for this GPU) reports itself. */
int cuda_check_launch(cuda_ctx *cx, const char *op) {
    return cuda_check(cx, cudaGetLastError(), op);
}

/* ---- scratch and casts ---------------------------------------------------------------------- */

/* Returns slot `slot` with room for `bytes`, growing it when needed. Growth synchronises the
 * stream first because queued kernels may still read the old buffer. The returned pointer stays
 * valid until the same slot is requested larger; NULL after recording a failure. */
void *cuda_scratch(cuda_ctx *cx, int slot, size_t bytes) {
    if (slot < 0 || slot >= CUDA_SCRATCH_SLOTS) {
        cuda_fail(cx, "scratch", "invalid scratch slot");
        return NULL;
    }
    if (bytes <= cx->scratch_bytes[slot] && cx->scratch[slot]) return cx->scratch[slot];
    if (cx->failed) return NULL;
    size_t rounded = (bytes + CUDA_SCRATCH_GRANULE - 1) & ~(CUDA_SCRATCH_GRANULE - 1);
    if (rounded < bytes) {
        cuda_fail(cx, "scratch", "scratch request overflows size_t");
        return NULL;
    }
    if (rounded == 0) rounded = CUDA_SCRATCH_GRANULE;
    if (cuda_check(cx, cudaStreamSynchronize(cx->stream), "scratch")) return NULL;
    if (cx->scratch[slot]) {
        cudaError_t e = cudaFree(cx->scratch[slot]);
        cx->scratch[slot] = NULL;
        cx->scratch_bytes[slot] = 0;
        if (cuda_check(cx, e, "scratch")) return NULL;
    }
    void *ptr = NULL;
    cudaError_t e = cudaMalloc(&ptr, rounded);
    if (e != cudaSuccess) {
        cudaGetLastError(); /* do not let a later launch check blame its own op for this */
        char reason[160];
        snprintf(reason, sizeof reason, "%s growing scratch slot %d to %zu MiB",
                 cudaGetErrorString(e), slot, rounded >> 20);
        cuda_fail(cx, "scratch", reason);
        return NULL;
    }
    cx->scratch[slot] = ptr;
    cx->scratch_bytes[slot] = rounded;
    return ptr;
}

static __global__ void cuda_cast_bf16_kernel(__nv_bfloat16 *dst, const float *src, size_t n) {
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        dst[i] = __float2bfloat16_rn(src[i]);
}

/* dst (n) = bf16(src (n)), round to nearest even, queued on the context's stream. */
void cuda_cast_bf16(cuda_ctx *cx, __nv_bfloat16 *dst, const float *src, size_t n) {
    if (cx->failed || n == 0) return;
    cuda_cast_bf16_kernel<<<cuda_grid(n), CUDA_THREADS, 0, cx->stream>>>(dst, src, n);
    cuda_check_launch(cx, "cast_bf16");
}

/* ---- memory ops ----------------------------------------------------------------------------- */

/* Zeroed device memory, or NULL. Out of memory is the engine's to report (it knows which buffer
 * did not fit), so it does not fail the context; the zeroing is queued on the stream, ahead of
 * any op that could use the memory. A 0-byte request still gets a valid, freeable pointer. */
static void *cuda_alloc(dt_backend *be, size_t bytes) {
    cuda_ctx *cx = cuda_ctx_of(be);
    if (cx->failed) return NULL;
    void *ptr = NULL;
    cudaError_t e = cudaMalloc(&ptr, bytes ? bytes : 1);
    if (e == cudaErrorMemoryAllocation) {
        cudaGetLastError();
        return NULL;
    }
    if (cuda_check(cx, e, "alloc")) return NULL;
    if (bytes && cuda_check(cx, cudaMemsetAsync(ptr, 0, bytes, cx->stream), "alloc")) {
        cudaFree(ptr);
        return NULL;
    }
    return ptr;
}

/* cudaFree waits for the device, so memory still used by queued work is not recycled early. */
static void cuda_free(dt_backend *be, void *ptr) {
    if (!ptr) return;
    cuda_ctx *cx = cuda_ctx_of(be);
    cudaError_t e = cudaFree(ptr);
    if (!cx->failed) cuda_check(cx, e, "free");
}

/* From pageable memory the driver stages the source before returning, so the caller may reuse
 * its buffer at once (true of malloc'd memory; pinned memory would be read asynchronously). */
static void cuda_upload(dt_backend *be, void *dst, const void *host_src, size_t bytes) {
    CUDA_OP_BEGIN(be, cx);
    if (bytes == 0) return;
    cuda_check(cx, cudaMemcpyAsync(dst, host_src, bytes, cudaMemcpyHostToDevice, cx->stream),
               "upload");
}

/* Waits for the stream: the caller reads host_dst as soon as this returns. */
static void cuda_download(dt_backend *be, void *host_dst, const void *src, size_t bytes) {
    CUDA_OP_BEGIN(be, cx);
    if (bytes == 0) return;
    if (cuda_check(cx, cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDeviceToHost, cx->stream),
                   "download"))
        return;
    cuda_check(cx, cudaStreamSynchronize(cx->stream), "download");
}

static void cuda_copy(dt_backend *be, void *dst, const void *src, size_t bytes) {
    CUDA_OP_BEGIN(be, cx);
    if (bytes == 0 || dst == src) return;
    cuda_check(cx, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, cx->stream), "copy");
}

static void cuda_zero(dt_backend *be, void *dst, size_t bytes) {
    CUDA_OP_BEGIN(be, cx);
    if (bytes == 0) return;
    cuda_check(cx, cudaMemsetAsync(dst, 0, bytes, cx->stream), "zero");
}

/* Kernel faults (illegal address, ...) surface only here, hence the op name "sync". */
static int cuda_sync(dt_backend *be) {
    cuda_ctx *cx = cuda_ctx_of(be);
    if (!cx->failed) cuda_check(cx, cudaStreamSynchronize(cx->stream), "sync");
    return cx->failed ? -1 : 0;
}

static const char *cuda_last_error(dt_backend *be) {
    return cuda_ctx_of(be)->error;
}

/* Releases what the context owns; errors are ignored because nothing can act on them now. */
static void cuda_ctx_release(cuda_ctx *cx) {
    cudaSetDevice(cx->device);
    if (cx->stream) cudaStreamSynchronize(cx->stream);
    cuda_conv_release(cx);
    for (int i = 0; i < CUDA_SCRATCH_SLOTS; i++)
        if (cx->scratch[i]) cudaFree(cx->scratch[i]);
    if (cx->cublas) cublasDestroy(cx->cublas);
    if (cx->stream) cudaStreamDestroy(cx->stream);
    cudaGetLastError();
    free(cx);
}

static void cuda_destroy(dt_backend *be) {
    cuda_ctx_release(cuda_ctx_of(be));
    free(be);
}

/* ---- construction --------------------------------------------------------------------------- */

static void cuda_backend_error(char *err, size_t errlen, const char *what, int index,
                               const char *reason) {
    if (err && errlen) snprintf(err, errlen, "cuda:%d: %s: %s", index, what, reason);
}

/* Number of devices the driver reports; 0 with a one-line reason in err when there is no driver,
 * the driver is older than the runtime, or there is no device. */
int dt_cuda_device_count(char *err, size_t errlen) {
    if (err && errlen) err[0] = '\0';
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
        cudaGetLastError();
        if (err && errlen) {
            if (e == cudaErrorInsufficientDriver || e == cudaErrorNoDevice)
                snprintf(err, errlen, "no CUDA driver or device: %s", cudaGetErrorString(e));
            else
                snprintf(err, errlen, "CUDA initialisation failed: %s", cudaGetErrorString(e));
        }
        return 0;
    }
    if (count <= 0) {
        if (err && errlen)
            snprintf(err, errlen, "no CUDA driver or device: the driver reports none");
        return 0;
    }
    return count;
}

/* Makes the device current, creates the stream and the cuBLAS handle and reads the SM count.
 * Returns 0, or -1 with a message in err (partial state is released by the caller). */
static int cuda_ctx_init(cuda_ctx *cx, int index, char *err, size_t errlen) {
    cudaError_t e = cudaSetDevice(index);
    if (e != cudaSuccess) {
        cuda_backend_error(err, errlen, "cannot initialise the device", index,
                           cudaGetErrorString(e));
        return -1;
    }
    /* bf16 tensor cores and the compute_80 PTX we ship both need sm_80; fail here rather than
     * at the first kernel launch with "no kernel image". */
    int major = 0, minor = 0;
    const cudaDeviceAttr attrs[3] = {cudaDevAttrComputeCapabilityMajor,
                                     cudaDevAttrComputeCapabilityMinor,
                                     cudaDevAttrMultiProcessorCount};
    int *values[3] = {&major, &minor, &cx->num_sms};
    for (int i = 0; i < 3 && e == cudaSuccess; i++)
        e = cudaDeviceGetAttribute(values[i], attrs[i], index);
    if (e != cudaSuccess) {
        cuda_backend_error(err, errlen, "cannot query the device", index, cudaGetErrorString(e));
        return -1;
    }
    if (major < 8) {
        if (err && errlen)
            snprintf(err, errlen,
                     "cuda:%d: compute capability %d.%d is too old (difftune needs 8.0 or newer)",
                     index, major, minor);
        return -1;
    }
    e = cudaStreamCreateWithFlags(&cx->stream, cudaStreamNonBlocking);
    if (e != cudaSuccess) {
        cx->stream = NULL;
        cuda_backend_error(err, errlen, "cannot create a stream", index, cudaGetErrorString(e));
        return -1;
    }
    cublasStatus_t s = cublasCreate(&cx->cublas);
    if (s != CUBLAS_STATUS_SUCCESS) {
        cx->cublas = NULL;
        cuda_backend_error(err, errlen, "cannot create a cuBLAS handle", index,
                           cublasGetStatusString(s));
        return -1;
    }
    /* DEFAULT_MATH keeps sgemm in true fp32 (no TF32), which the fp32 checking mode relies on;
     * pointer mode host because every alpha/beta is a host scalar. */
    if ((s = cublasSetStream(cx->cublas, cx->stream)) != CUBLAS_STATUS_SUCCESS ||
        (s = cublasSetMathMode(cx->cublas, CUBLAS_DEFAULT_MATH)) != CUBLAS_STATUS_SUCCESS ||
        (s = cublasSetPointerMode(cx->cublas, CUBLAS_POINTER_MODE_HOST)) != CUBLAS_STATUS_SUCCESS) {
        cuda_backend_error(err, errlen, "cannot configure cuBLAS", index, cublasGetStatusString(s));
        return -1;
    }
    return 0;
}

/* Creates the backend on device `index` with every op of dt_backend installed and precision
 * fp32. Returns NULL with one line in err when there is no usable driver or device, the index is
 * out of range, or initialisation fails. The caller owns the result and releases it with
 * be->destroy(be), which frees the context's own memory (scratch, stream, handle); memory
 * obtained through be->alloc must be freed with be->free before that. */
dt_backend *dt_backend_cuda_create(int index, char *err, size_t errlen) {
    if (err && errlen) err[0] = '\0';
    char why[200];
    int count = dt_cuda_device_count(why, sizeof why);
    if (count == 0) {
        if (err && errlen) snprintf(err, errlen, "cuda:%d: %s", index, why);
        return NULL;
    }
    if (index < 0 || index >= count) {
        if (err && errlen)
            snprintf(err, errlen, "cuda:%d: only %d CUDA device%s (0..%d)", index, count,
                     count == 1 ? "" : "s", count - 1);
        return NULL;
    }
    dt_backend *be = (dt_backend *)calloc(1, sizeof *be);
    cuda_ctx *cx = (cuda_ctx *)calloc(1, sizeof *cx);
    if (!be || !cx) {
        free(be);
        free(cx);
        if (err && errlen) snprintf(err, errlen, "cuda:%d: out of host memory", index);
        return NULL;
    }
    cx->device = index;
    snprintf(cx->name, sizeof cx->name, "cuda:%d", index);
    if (cuda_ctx_init(cx, index, err, errlen)) {
        cuda_ctx_release(cx);
        free(be);
        return NULL;
    }
    be->name = cx->name;
    be->impl = cx;
    be->precision = DT_PRECISION_FP32;
    be->alloc = cuda_alloc;
    be->free = cuda_free;
    be->upload = cuda_upload;
    be->download = cuda_download;
    be->copy = cuda_copy;
    be->zero = cuda_zero;
    be->sync = cuda_sync;
    be->destroy = cuda_destroy;
    be->last_error = cuda_last_error;
    cuda_dense_install(be);
    cuda_attention_install(be);
    cuda_norm_install(be);
    cuda_pointwise_install(be);
    cuda_embed_install(be);
    cuda_diffusion_install(be);
    cuda_loss_install(be);
    cuda_optim_install(be);
    cuda_conv_install(be);
    cuda_image_install(be);
    return be;
}
