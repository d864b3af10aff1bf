/* cuda_image.cu — the VAE's image layers on the GPU: GroupNorm (optionally fused with SiLU),
 * nearest-neighbour 2x upsampling and the batched transpose. Same semantics as
 * kernels/cpu/cpu_image.c.
 *
 * GroupNorm statistics are two-pass like the CPU's (mean, then the centred sum of squares) and
 * deterministic: each (sample, group) slab of C/G * HW contiguous floats is cut into fixed
 * chunks, a block reduces one chunk (fp32 per thread, then a double block sum in a fixed order),
 * and the chunk partials of a slab are added in chunk order by whoever needs the total. Three
 * kernels: partial sums; mean and partial centred squares; normalise (+ SiLU). Small images use
 * few blocks per slab, 512x512 ones many, so a batch of one still fills the GPU.
 */
#include <math.h>

#include "cuda_internal.h"
#include "cuda_reduce.cuh"

#define CUDA_GN_CHUNK 16384 /* floats of a slab per block: 64 per thread */
#define CUDA_TILE 32        /* transpose tile; blocks of 32 x 8 threads */
#define CUDA_TILE_ROWS 8

/* ---- group norm ----------------------------------------------------------------------------- */

/* The slab's sum of chunk partials, in chunk order (the same value in every kernel). */
static __device__ double cuda_gn_total(const double *partial, int chunks) {
    double t = 0.0;
    for (int k = 0; k < chunks; k++) t += partial[k];
    return t;
}

/* partial_sum[s][k] = sum of chunk k of slab s (slabs on y, strided; chunks on x). */
static __global__ void cuda_gn_sum_kernel(double *partial_sum, const float *x, size_t slabs,
                                          size_t n, int chunks) {
    __shared__ double red[32];
    const size_t k = blockIdx.x, i0 = k * CUDA_GN_CHUNK;
    const size_t i1 = i0 + CUDA_GN_CHUNK < n ? i0 + CUDA_GN_CHUNK : n;
    for (size_t s = blockIdx.y; s < slabs; s += gridDim.y) {
        const float *xs = x + s * n;
        float acc = 0.0f;
        for (size_t i = i0 + threadIdx.x; i < i1; i += blockDim.x) acc += xs[i];
        const double total = cuda_block_sum((double)acc, red);
        if (threadIdx.x == 0) partial_sum[s * chunks + k] = total;
    }
}

/* partial_sq[s][k] = sum over chunk k of slab s of (x - mean_s)^2. */
static __global__ void cuda_gn_sq_kernel(double *partial_sq, const double *partial_sum,
                                         const float *x, size_t slabs, size_t n, int chunks) {
    __shared__ double red[32];
    __shared__ float mean;
    const size_t k = blockIdx.x, i0 = k * CUDA_GN_CHUNK;
    const size_t i1 = i0 + CUDA_GN_CHUNK < n ? i0 + CUDA_GN_CHUNK : n;
    for (size_t s = blockIdx.y; s < slabs; s += gridDim.y) {
        if (threadIdx.x == 0) mean = (float)(cuda_gn_total(partial_sum + s * chunks, chunks) / n);
        __syncthreads();
        const float m = mean;
        const float *xs = x + s * n;
        float acc = 0.0f;
        for (size_t i = i0 + threadIdx.x; i < i1; i += blockDim.x) {
            const float d = xs[i] - m;
            acc += d * d;
        }
        const double total = cuda_block_sum((double)acc, red); /* ends with a barrier */
        if (threadIdx.x == 0) partial_sq[s * chunks + k] = total;
    }
}

/* out = (x - mean) * rstd * gamma[c] + beta[c] over chunk k of each slab, then SiLU when silu.
 * Each thread reads an element before writing the same element, so out may be x. */
static __global__ void cuda_gn_apply_kernel(float *out, const float *x, const float *gamma,
                                            const float *beta, const double *partial_sum,
                                            const double *partial_sq, size_t slabs, size_t n,
                                            int chunks, int G, int cg, int HW, float eps,
                                            int silu) {
    __shared__ float stats[2];
    const size_t k = blockIdx.x, i0 = k * CUDA_GN_CHUNK;
    const size_t i1 = i0 + CUDA_GN_CHUNK < n ? i0 + CUDA_GN_CHUNK : n;
    for (size_t s = blockIdx.y; s < slabs; s += gridDim.y) {
        if (threadIdx.x == 0) {
            const double mu = cuda_gn_total(partial_sum + s * chunks, chunks) / n;
            const double var = cuda_gn_total(partial_sq + s * chunks, chunks) / n;
            stats[0] = (float)mu;
            stats[1] = (float)(1.0 / sqrt(var + (double)eps));
        }
        __syncthreads();
        const float m = stats[0], rs = stats[1];
        const int c0 = (int)(s % G) * cg;
        const float *xs = x + s * n;
        float *os = out + s * n;
        for (size_t i = i0 + threadIdx.x; i < i1; i += blockDim.x) {
            const int c = c0 + (int)(i / HW);
            const float v = (xs[i] - m) * rs * gamma[c] + beta[c];
            os[i] = silu ? v / (1.0f + expf(-v)) : v;
        }
        __syncthreads(); /* stats is rewritten for the next slab */
    }
}

/* out (B,C,HW) = GroupNorm over G groups (+ SiLU); partials in the REDUCE scratch slot. */
static void cuda_group_norm_forward(dt_backend *be, float *out, const float *x, const float *gamma,
                                    const float *beta, int B, int C, int HW, int G, float eps,
                                    int silu) {
    CUDA_OP_BEGIN(be, cx);
    const char *op = "group_norm_forward";
    if (B <= 0 || C <= 0 || HW <= 0) return;
    if (G <= 0 || C % G != 0) {
        cuda_fail(cx, op, "the channel count is not a multiple of the group count");
        return;
    }
    const int cg = C / G;
    const size_t n = (size_t)cg * HW, slabs = (size_t)B * G;
    const int chunks = (int)((n + CUDA_GN_CHUNK - 1) / CUDA_GN_CHUNK);
    double *partial = (double *)cuda_scratch(cx, CUDA_SCRATCH_REDUCE,
                                             2 * slabs * chunks * sizeof(double));
    if (!partial) return;
    double *psum = partial, *psq = partial + slabs * chunks;
    const dim3 grid((unsigned)chunks,
                    (unsigned)(slabs < CUDA_GRID_Y_CAP ? slabs : CUDA_GRID_Y_CAP));
    cuda_gn_sum_kernel<<<grid, CUDA_THREADS, 0, cx->stream>>>(psum, x, slabs, n, chunks);
    if (cuda_check_launch(cx, op)) return;
    cuda_gn_sq_kernel<<<grid, CUDA_THREADS, 0, cx->stream>>>(psq, psum, x, slabs, n, chunks);
    if (cuda_check_launch(cx, op)) return;
    cuda_gn_apply_kernel<<<grid, CUDA_THREADS, 0, cx->stream>>>(out, x, gamma, beta, psum, psq,
                                                                slabs, n, chunks, G, cg, HW, eps,
                                                                silu);
    cuda_check_launch(cx, op);
}

/* ---- upsampling and transpose --------------------------------------------------------------- */

/* out (planes, 2H, 2W)[p][y][x] = in (planes, H, W)[p][y/2][x/2]. */
static __global__ void cuda_upsample2x_kernel(float *out, const float *in, size_t planes, int H,
                                              int W) {
    const int W2 = 2 * W, H2 = 2 * H;
    const size_t total = planes * H2 * W2, stride = (size_t)gridDim.x * blockDim.x;
    for (size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x; idx < total; idx += stride) {
        const int x = (int)(idx % W2), y = (int)(idx / W2 % H2);
        const size_t p = idx / ((size_t)W2 * H2);
        out[idx] = in[(p * H + y / 2) * W + x / 2];
    }
}

static void cuda_upsample2x_forward(dt_backend *be, float *out, const float *x, int B, int C,
                                    int H, int W) {
    CUDA_OP_BEGIN(be, cx);
    if (B <= 0 || C <= 0 || H <= 0 || W <= 0) return;
    const size_t planes = (size_t)B * C, total = planes * 4 * H * W;
    cuda_upsample2x_kernel<<<cuda_grid(total), CUDA_THREADS, 0, cx->stream>>>(out, x, planes, H, W);
    cuda_check_launch(cx, "upsample2x_forward");
}

/* out (B,C,R) = x (B,R,C) transposed per sample through a padded shared tile: reads and writes
 * are both coalesced. Tiles: x over C, y over R, z over samples (y and z strided). */
static __global__ void cuda_transpose_kernel(float *out, const float *x, int B, int R, int C) {
    __shared__ float tile[CUDA_TILE][CUDA_TILE + 1];
    const int tiles_r = (R + CUDA_TILE - 1) / CUDA_TILE;
    for (int b = blockIdx.z; b < B; b += gridDim.z) {
        const float *xb = x + (size_t)b * R * C;
        float *ob = out + (size_t)b * R * C;
        for (int tr = blockIdx.y; tr < tiles_r; tr += gridDim.y) {
            const int r0 = tr * CUDA_TILE, c0 = blockIdx.x * CUDA_TILE;
            for (int j = threadIdx.y; j < CUDA_TILE; j += CUDA_TILE_ROWS) {
                const int r = r0 + j, c = c0 + threadIdx.x;
                if (r < R && c < C) tile[j][threadIdx.x] = xb[(size_t)r * C + c];
            }
            __syncthreads();
            for (int j = threadIdx.y; j < CUDA_TILE; j += CUDA_TILE_ROWS) {
                const int c = c0 + j, r = r0 + threadIdx.x;
                if (r < R && c < C) ob[(size_t)c * R + r] = tile[threadIdx.x][j];
            }
            __syncthreads();
        }
    }
}

static void cuda_transpose(dt_backend *be, float *out, const float *x, int B, int R, int C) {
    CUDA_OP_BEGIN(be, cx);
    if (B <= 0 || R <= 0 || C <= 0) return;
    const unsigned tc = (unsigned)((C + CUDA_TILE - 1) / CUDA_TILE);
    const unsigned tr = (unsigned)((R + CUDA_TILE - 1) / CUDA_TILE);
    if (tc > 0x7fffffffu) {
        cuda_fail(cx, "transpose", "too many columns");
        return;
    }
    const dim3 grid(tc, tr < CUDA_GRID_Y_CAP ? tr : CUDA_GRID_Y_CAP,
                    (unsigned)B < CUDA_GRID_Y_CAP ? (unsigned)B : CUDA_GRID_Y_CAP);
    cuda_transpose_kernel<<<grid, dim3(CUDA_TILE, CUDA_TILE_ROWS), 0, cx->stream>>>(out, x, B, R,
                                                                                   C);
    cuda_check_launch(cx, "transpose");
}

/* Installs group_norm_forward, upsample2x_forward and transpose into `be`; called once by
 * dt_backend_cuda_create, touches no other table entries. */
void cuda_image_install(dt_backend *be) {
    be->group_norm_forward = cuda_group_norm_forward;
    be->upsample2x_forward = cuda_upsample2x_forward;
    be->transpose = cuda_transpose;
}
