/* cuda_reduce.cuh — the thread reductions shared by the kernels of the CUDA backend.
 *
 * Header-only: static __device__ __forceinline__ helpers, included by the cuda_*.cu files that
 * reduce across threads (cuda_attention.cu, cuda_norm.cu, cuda_loss.cu, cuda_optim.cu). Each
 * helper is the exact code it replaced in those files, so kernels compile to the same
 * instructions and reduce in the same order as before.
 *
 * Two shapes, kept apart on purpose (their rounding differs):
 *  - Warp reductions of a float use butterfly __shfl_xor_sync over the full warp: every lane ends
 *    with the same total. Used by the warp-per-row kernels (softmax, LayerNorm).
 *  - The block reduction of a double uses __shfl_down_sync trees (lane 0 gets each warp's total)
 *    and 32 doubles of shared memory between the two levels; only thread 0 has the result.
 *    Used by the loss and the gradient norm, which must be deterministic for a launch shape.
 *
 * Warp-per-row kernels give each warp one row at a time, rows strided over the whole grid; the
 * row index is the same on every lane of a warp, so whole warps leave the row loop together and
 * the full-mask shuffles inside it are safe.
 */
#ifndef DT_CUDA_REDUCE_CUH
#define DT_CUDA_REDUCE_CUH

#include <cuda_runtime.h>
#include <stddef.h>

#define CUDA_FULL_MASK 0xffffffffu

/* Sum of v over the 32 lanes of a warp (butterfly order); every lane receives the same value.
 * All 32 lanes must call it. */
static __device__ __forceinline__ float cuda_warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(CUDA_FULL_MASK, v, o);
    return v;
}

/* Maximum of v over the 32 lanes of a warp (fmaxf, butterfly order); every lane receives the
 * same value. All 32 lanes must call it. */
static __device__ __forceinline__ float cuda_warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(CUDA_FULL_MASK, v, o));
    return v;
}

/* Sum of v over the block (blockDim.x a multiple of 32, at most 1024), valid in thread 0 only;
 * `red` is 32 doubles of shared memory. Every thread of the block must call it (it contains
 * barriers). Ends with a barrier, so `red` may be reused by the next call. Fixed order:
 * deterministic for a given blockDim. */
static __device__ __forceinline__ double cuda_block_sum(double v, double *red) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(CUDA_FULL_MASK, v, o);
    if (lane == 0) red[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = lane < (int)(blockDim.x >> 5) ? red[lane] : 0.0;
        for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(CUDA_FULL_MASK, v, o);
    }
    __syncthreads();
    return v;
}

/* Warp-per-row loops: `for (size_t r = cuda_warp_row_first(); r < rows; r += stride)` with
 * stride = cuda_warp_row_stride(). The first row of this thread's warp (blockDim.x a multiple
 * of 32); the same on every lane of the warp. */
static __device__ __forceinline__ size_t cuda_warp_row_first(void) {
    return (size_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
}

/* The number of warps in the grid: the row stride of a warp-per-row loop. */
static __device__ __forceinline__ size_t cuda_warp_row_stride(void) {
    return (size_t)gridDim.x * (blockDim.x >> 5);
}

#endif
