/* cuda_backend.h — the CUDA backend's constructor and device queries, callable from C.
 *
 * Only built when nvcc is found (DIFFTUNE_HAVE_CUDA); kernels/backend_create.c reaches it through
 * dt_backend_create("cuda:N" / "auto").
 */
#ifndef DT_CUDA_BACKEND_H
#define DT_CUDA_BACKEND_H

#include <stddef.h>

#include "backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Number of CUDA devices the driver reports; 0 when there is no driver or no device (the reason
 * goes to err when err is non-NULL). */
int dt_cuda_device_count(char *err, size_t errlen);

/* Creates the CUDA backend on device `index` with precision DT_PRECISION_FP32: one stream, a
 * cuBLAS handle and lazily grown scratch. Returns NULL and writes one line to err when the
 * driver is missing, the index is out of range, the GPU is older than compute capability 8.0,
 * or the device cannot be initialised. Free the allocations made through it with be->free,
 * then release it with be->destroy(be) (which frees the backend's own scratch). */
dt_backend *dt_backend_cuda_create(int index, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif
