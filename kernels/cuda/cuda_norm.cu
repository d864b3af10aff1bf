/* cuda_norm.cu — adaLN pieces on the GPU: LayerNorm (no affine, eps 1e-6) fused with the
 * shift/scale modulation, and the gated residual add. Same semantics as kernels/cpu/cpu_norm.c;
 * modulation rows are read at `mod_stride` so chunks of one (B, k*D) adaLN tensor are used in
 * place.
 *
 * Row work (statistics, dx) runs one warp per (b, n) row with butterfly shuffles, so every lane
 * ends with the same total and no shared memory is needed. Statistics are fp32 and two-pass
 * (mean, then centred variance), which keeps the variance accurate without the CPU's doubles.
 *
 * Per-sample modulation gradients are sums over the N tokens. They run one block per
 * (32 hidden units, b): the block's 8 thread rows stride over tokens with coalesced 128-byte
 * reads and their partials are added in a fixed order, so results are deterministic and no
 * atomics touch the gradients.
 */
#include <math.h>

#include "cuda_internal.h"
#include "cuda_reduce.cuh"

#define CUDA_NORM_EPS 1e-6f
#define CUDA_NORM_WARPS (CUDA_THREADS / 32) /* rows per block in the warp-per-row kernels */
#define CUDA_NORM_TILE 32                    /* hidden units per modulation-gradient block */
#define CUDA_NORM_TILE_ROWS 8                /* token lanes per modulation-gradient block */
#define CUDA_NORM_GRID_CAP (65535u * 8u)     /* any grid is correct: loops are grid-strided */

/* Blocks for the warp-per-row kernels. */
static unsigned cuda_norm_warp_grid(size_t rows) {
    size_t blocks = (rows + CUDA_NORM_WARPS - 1) / CUDA_NORM_WARPS;
    if (blocks < 1) blocks = 1;
    return blocks > CUDA_NORM_GRID_CAP ? CUDA_NORM_GRID_CAP : (unsigned)blocks;
}

/* Grid of the modulation-gradient kernels: x over column tiles, y over samples (strided). */
static dim3 cuda_norm_tile_grid(int B, int D) {
    unsigned by = (unsigned)B < CUDA_GRID_Y_CAP ? (unsigned)B : CUDA_GRID_Y_CAP;
    return dim3((unsigned)((D + CUDA_NORM_TILE - 1) / CUDA_NORM_TILE), by);
}

/* One warp per row r of x (rows = B*N, D floats each): mean/rstd saved, out modulated.
 * out may equal x: each lane reads an element before writing the same element. */
static __global__ void cuda_norm_ln_forward_kernel(float *out, float *mean, float *rstd,
                                                   const float *x, const float *shift,
                                                   const float *scale, size_t rows, int N, int D,
                                                   int mod_stride) {
    const int lane = threadIdx.x & 31;
    const size_t warps = cuda_warp_row_stride();
    for (size_t r = cuda_warp_row_first(); r < rows; r += warps) {
        const float *xr = x + r * D;
        const size_t b = r / N;
        const float *sh = shift + b * mod_stride, *sc = scale + b * mod_stride;
        float sum = 0.0f;
        for (int d = lane; d < D; d += 32) sum += xr[d];
        const float m = cuda_warp_sum(sum) / (float)D;
        float sq = 0.0f;
        for (int d = lane; d < D; d += 32) {
            float c = xr[d] - m;
            sq += c * c;
        }
        /* biased variance, as the CPU reference and PyTorch's LayerNorm */
        const float rs = 1.0f / sqrtf(cuda_warp_sum(sq) / (float)D + CUDA_NORM_EPS);
        if (lane == 0) {
            mean[r] = m;
            rstd[r] = rs;
        }
        float *o = out + r * D;
        for (int d = lane; d < D; d += 32) o[d] = (xr[d] - m) * rs * (1.0f + sc[d]) + sh[d];
    }
}

/* One warp per row: dx += rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dout * (1 + scale). */
static __global__ void cuda_norm_ln_dx_kernel(float *dx, const float *dout, const float *x,
                                              const float *mean, const float *rstd,
                                              const float *scale, size_t rows, int N, int D,
                                              int mod_stride) {
    const int lane = threadIdx.x & 31;
    const size_t warps = cuda_warp_row_stride();
    for (size_t r = cuda_warp_row_first(); r < rows; r += warps) {
        const float *xr = x + r * D, *gr = dout + r * D;
        const float *sc = scale + (r / N) * mod_stride;
        const float m = mean[r], rs = rstd[r];
        float sum_g = 0.0f, sum_gx = 0.0f;
        for (int d = lane; d < D; d += 32) {
            float g = gr[d] * (1.0f + sc[d]);
            sum_g += g;
            sum_gx += g * ((xr[d] - m) * rs);
        }
        const float mean_g = cuda_warp_sum(sum_g) / (float)D;
        const float mean_gx = cuda_warp_sum(sum_gx) / (float)D;
        float *dxr = dx + r * D;
        for (int d = lane; d < D; d += 32) {
            float g = gr[d] * (1.0f + sc[d]);
            dxr[d] += rs * (g - mean_g - (xr[d] - m) * rs * mean_gx);
        }
    }
}

/* Block (32, 8) per (column tile, b): dshift[b][d] += sum_n dout, dscale[b][d] += sum_n dout*xhat.
 * The 8 token lanes' partials are added in lane order (deterministic). */
static __global__ void cuda_norm_ln_dmod_kernel(float *dshift, float *dscale, const float *dout,
                                                const float *x, const float *mean,
                                                const float *rstd, int B, int N, int D,
                                                int mod_stride) {
    __shared__ float part_shift[CUDA_NORM_TILE_ROWS][CUDA_NORM_TILE];
    __shared__ float part_scale[CUDA_NORM_TILE_ROWS][CUDA_NORM_TILE];
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int d = blockIdx.x * CUDA_NORM_TILE + tx;
    for (int b = blockIdx.y; b < B; b += gridDim.y) {
        float acc_shift = 0.0f, acc_scale = 0.0f;
        if (d < D) {
            for (int n = ty; n < N; n += CUDA_NORM_TILE_ROWS) {
                const size_t r = (size_t)b * N + n;
                const float g = dout[r * D + d];
                acc_shift += g;
                acc_scale += g * ((x[r * D + d] - mean[r]) * rstd[r]);
            }
        }
        part_shift[ty][tx] = acc_shift;
        part_scale[ty][tx] = acc_scale;
        __syncthreads();
        if (ty == 0 && d < D) {
            float s = 0.0f, c = 0.0f;
            for (int k = 0; k < CUDA_NORM_TILE_ROWS; k++) {
                s += part_shift[k][tx];
                c += part_scale[k][tx];
            }
            dshift[(size_t)b * mod_stride + d] += s;
            dscale[(size_t)b * mod_stride + d] += c;
        }
        __syncthreads(); /* the next sample reuses the partial arrays */
    }
}

/* out (B,N,D) = LN(x) * (1 + scale[b]) + shift[b]; mean, rstd (B*N) saved for backward. */
static void cuda_norm_ln_modulate_forward(dt_backend *be, float *out, float *mean, float *rstd,
                                          const float *x, const float *shift, const float *scale,
                                          int B, int N, int D, int mod_stride) {
    CUDA_OP_BEGIN(be, cx);
    const size_t rows = (size_t)B * N;
    if (rows == 0 || D <= 0) return;
    cuda_norm_ln_forward_kernel<<<cuda_norm_warp_grid(rows), CUDA_THREADS, 0, cx->stream>>>(
        out, mean, rstd, x, shift, scale, rows, N, D, mod_stride);
    cuda_check_launch(cx, "ln_modulate_forward");
}

/* dx (B,N,D) += LayerNorm-modulate backward; dshift, dscale (rows at mod_stride) += token sums. */
static void cuda_norm_ln_modulate_backward(dt_backend *be, float *dx, float *dshift, float *dscale,
                                           const float *dout, const float *x, const float *mean,
                                           const float *rstd, const float *scale,
                                           int B, int N, int D, int mod_stride) {
    CUDA_OP_BEGIN(be, cx);
    const size_t rows = (size_t)B * N;
    if (rows == 0 || D <= 0) return;
    cuda_norm_ln_dx_kernel<<<cuda_norm_warp_grid(rows), CUDA_THREADS, 0, cx->stream>>>(
        dx, dout, x, mean, rstd, scale, rows, N, D, mod_stride);
    if (cuda_check_launch(cx, "ln_modulate_backward")) return;
    cuda_norm_ln_dmod_kernel<<<cuda_norm_tile_grid(B, D), dim3(CUDA_NORM_TILE, CUDA_NORM_TILE_ROWS),
                               0, cx->stream>>>(dshift, dscale, dout, x, mean, rstd, B, N, D,
                                                mod_stride);
    cuda_check_launch(cx, "ln_modulate_backward");
}

/* Block per row (strided), threads over D: out = res + gate[b] * y. No __restrict__: out may
 * alias res, and each element is read before it is written by the same thread. */
static __global__ void cuda_norm_gate_forward_kernel(float *out, const float *res, const float *y,
                                                     const float *gate, size_t rows, int N, int D,
                                                     int mod_stride) {
    for (size_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const float *g = gate + (r / N) * mod_stride;
        const size_t off = r * D;
        for (int d = threadIdx.x; d < D; d += blockDim.x)
            out[off + d] = res[off + d] + g[d] * y[off + d];
    }
}

/* Block (32, 8) per (column tile, b), one pass over its elements: dy += gate*dout,
 * dres += dout (when non-NULL), and dgate[b][d] += sum_n dout*y added in fixed order. */
static __global__ void cuda_norm_gate_backward_kernel(float *dres, float *dy, float *dgate,
                                                      const float *dout, const float *y,
                                                      const float *gate, int B, int N, int D,
                                                      int mod_stride) {
    __shared__ float part[CUDA_NORM_TILE_ROWS][CUDA_NORM_TILE];
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int d = blockIdx.x * CUDA_NORM_TILE + tx;
    for (int b = blockIdx.y; b < B; b += gridDim.y) {
        float acc = 0.0f;
        if (d < D) {
            const float g = gate[(size_t)b * mod_stride + d];
            for (int n = ty; n < N; n += CUDA_NORM_TILE_ROWS) {
                const size_t off = ((size_t)b * N + n) * D + d;
                const float go = dout[off];
                dy[off] += g * go;
                if (dres) dres[off] += go;
                acc += go * y[off];
            }
        }
        part[ty][tx] = acc;
        __syncthreads();
        if (ty == 0 && d < D) {
            float s = 0.0f;
            for (int k = 0; k < CUDA_NORM_TILE_ROWS; k++) s += part[k][tx];
            dgate[(size_t)b * mod_stride + d] += s;
        }
        __syncthreads(); /* the next sample reuses `part` */
    }
}

/* out (B,N,D) = res + gate[b] * y (gate rows at mod_stride); out may alias res. */
static void cuda_norm_gate_residual_forward(dt_backend *be, float *out, const float *res,
                                            const float *y, const float *gate, int B, int N, int D,
                                            int mod_stride) {
    CUDA_OP_BEGIN(be, cx);
    const size_t rows = (size_t)B * N;
    if (rows == 0 || D <= 0) return;
    /* threads sized to D so small hidden sizes do not leave most of each block idle */
    const int threads = D >= CUDA_THREADS ? CUDA_THREADS : (D + 31) / 32 * 32;
    const unsigned blocks = rows > CUDA_NORM_GRID_CAP ? CUDA_NORM_GRID_CAP : (unsigned)rows;
    cuda_norm_gate_forward_kernel<<<blocks, threads, 0, cx->stream>>>(out, res, y, gate, rows, N,
                                                                      D, mod_stride);
    cuda_check_launch(cx, "gate_residual_forward");
}

/* dres += dout (dres may be NULL); dy += gate[b] * dout; dgate[b] += sum_n dout * y. */
static void cuda_norm_gate_residual_backward(dt_backend *be, float *dres, float *dy, float *dgate,
                                             const float *dout, const float *y, const float *gate,
                                             int B, int N, int D, int mod_stride) {
    CUDA_OP_BEGIN(be, cx);
    if (B <= 0 || N <= 0 || D <= 0) return;
    cuda_norm_gate_backward_kernel<<<cuda_norm_tile_grid(B, D),
                                     dim3(CUDA_NORM_TILE, CUDA_NORM_TILE_ROWS), 0, cx->stream>>>(
        dres, dy, dgate, dout, y, gate, B, N, D, mod_stride);
    cuda_check_launch(cx, "gate_residual_backward");
}

/* Installs ln_modulate_* and gate_residual_* into `be`; called once by the CUDA backend's
 * creator, touches no other table entries. */
void cuda_norm_install(dt_backend *be) {
    be->ln_modulate_forward = cuda_norm_ln_modulate_forward;
    be->ln_modulate_backward = cuda_norm_ln_modulate_backward;
    be->gate_residual_forward = cuda_norm_gate_residual_forward;
    be->gate_residual_backward = cuda_norm_gate_residual_backward;
}
