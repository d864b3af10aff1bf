/* cpu_backend.c — memory ops of the CPU reference backend and the constructor that assembles
 * the full op table from the per-purpose files. */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_internal.h"

/* Backend memory is host memory: 64-byte aligned (one cache line, any SIMD width) and zeroed. */
static void *cpu_alloc(dt_backend *be, size_t bytes) {
    size_t rounded = (bytes + 63) & ~(size_t)63;
    if (rounded < bytes) return NULL; /* size overflow */
    if (rounded == 0) rounded = 64;   /* a valid, freeable pointer even for 0 bytes */
    void *ptr = aligned_alloc(64, rounded);
    if (ptr) memset(ptr, 0, rounded);
    return ptr;
}

static void cpu_free(dt_backend *be, void *ptr) {
    free(ptr);
}

static void cpu_upload(dt_backend *be, void *dst, const void *host_src, size_t bytes) {
    if (bytes) memcpy(dst, host_src, bytes);
}

static void cpu_download(dt_backend *be, void *host_dst, const void *src, size_t bytes) {
    if (bytes) memcpy(host_dst, src, bytes);
}

static void cpu_copy(dt_backend *be, void *dst, const void *src, size_t bytes) {
    if (bytes && dst != src) memmove(dst, src, bytes);
}

static void cpu_zero(dt_backend *be, void *dst, size_t bytes) {
    if (bytes) memset(dst, 0, bytes);
}

/* Every CPU op completes before it returns and none can fail, so there is nothing to report. */
static int cpu_sync(dt_backend *be) {
    return 0;
}

static void cpu_destroy(dt_backend *be) {
    free(be);
}

/* Nothing can fail on the CPU (allocation failures are reported by alloc returning NULL). */
static const char *cpu_last_error(dt_backend *be) {
    return "";
}

/* Creates the CPU reference backend with every op of dt_backend filled in (see backend.h).
 * The backend owns no memory besides the table itself; allocations made through it are
 * independent blocks the caller frees with be->free. Returns NULL when out of memory. */
dt_backend *dt_backend_cpu_create(void) {
    dt_backend *be = calloc(1, sizeof *be);
    if (!be) return NULL;
    be->name = "cpu";
    be->impl = NULL;
    be->precision = DT_PRECISION_FP32; /* the reference always computes in fp32 */
    be->alloc = cpu_alloc;
    be->free = cpu_free;
    be->upload = cpu_upload;
    be->download = cpu_download;
    be->copy = cpu_copy;
    be->zero = cpu_zero;
    be->sync = cpu_sync;
    be->destroy = cpu_destroy;
    be->last_error = cpu_last_error;
    cpu_dense_install(be);
    cpu_attention_install(be);
    cpu_norm_install(be);
    cpu_pointwise_install(be);
    cpu_embed_install(be);
    cpu_diffusion_install(be);
    cpu_loss_install(be);
    cpu_optim_install(be);
    cpu_conv_install(be);
    cpu_image_install(be);
    return be;
}
