/* cuda_vec.cuh — float4 access shared by the element-wise kernels of the CUDA backend.
 *
 * Header-only. Element-wise kernels (cuda_pointwise.cu, cuda_optim.cu) read and write float4
 * when every pointer they touch is 16-byte aligned: tensors and parameter groups may start at any
 * float offset inside an allocation, so the host checks the pointers, passes n4 = n / 4 (or 0 to
 * stay scalar) and the kernel finishes the last n - 4*n4 elements one float at a time.
 */
#ifndef DT_CUDA_VEC_CUH
#define DT_CUDA_VEC_CUH

#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>

/* Host: 1 when p is 16-byte aligned, i.e. can be read as float4. */
static inline int cuda_aligned16(const void *p) {
    return ((uintptr_t)p & 15u) == 0;
}

/* x[i] *= s for i in [0, n), this thread's grid-stride share of it: float4 over the first 4*n4
 * floats (x 16-byte aligned when n4 > 0), then a scalar tail [4*n4, n). */
static __device__ __forceinline__ void cuda_scale_inplace(float *x, float s, size_t n, size_t n4) {
    const size_t start = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    float4 *x4 = (float4 *)x;
    for (size_t i = start; i < n4; i += stride) {
        float4 v = x4[i];
        v.x *= s;
        v.y *= s;
        v.z *= s;
        v.w *= s;
        x4[i] = v;
    }
    for (size_t i = 4 * n4 + start; i < n; i += stride) x[i] *= s;
}

#endif
