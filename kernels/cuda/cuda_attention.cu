/* cuda_attention.cu — multi-head self-attention on cuBLAS, matching kernels/cpu/cpu_attention.c.
 *
 * As in llm.c: q, k and v are gathered from qkv (B,N,3,NH,HS) into contiguous (B,NH,N,HS)
 * blocks so every head is one entry of a strided-batched GEMM (batch B*NH); softmax and its
 * gradient are fused fp32 kernels (one warp per row); head outputs are scattered back.
 *
 * Memory, with X = B*NH*N*HS and Y = B*NH*N*N (sub-buffers start at multiples of 64 elements so
 * cuBLAS sees aligned operands; Xp, Yp are the padded sizes):
 *  saved (Y floats): the softmax probabilities P (B,NH,N,N), as on the CPU.
 *  float scratch (7 Xp + Yp): [q | k | v | dO | dQ | dK | dV] (Xp each) then dP/dS (Yp).
 *    fp32 forward uses q, k, v and o (o in the dO place); fp32 backward uses all of it (dS
 *    overwrites dP in place). bf16 mode keeps only fp32 results here: o (forward), dQ dK dV
 *    and dP (backward), at the same offsets.
 *  bf16 mode, scratch slots: CAST_A [q | k | v] (3 Xp bf16); forward CAST_B P (Y bf16);
 *    backward CAST_B dO (X bf16) and CAST_C P then dS (Y bf16).
 *
 * cuBLAS is column-major: a row-major (R, K) matrix with row stride K is the column-major
 * (K, R) matrix of its transpose, ld K. For row-major Y = A.B we request column-major
 * Y^T = B^T.A^T, with each buffer as it lies; a derivation sits next to each call.
 */
#include <math.h>

#include "cuda_internal.h"
#include "cuda_reduce.cuh"

#define ATTN_PAD 64
#define ATTN_WARPS 8 /* warps per block of the row kernels, one row per warp */
#define ATTN_MAX_BLOCKS (65535u * 8u)

static size_t cuda_attn_pad(size_t n) {
    return (n + ATTN_PAD - 1) & ~(size_t)(ATTN_PAD - 1);
}

/* Stores an fp32 value into fp32 or bf16 (round to nearest even) memory. */
static __device__ __forceinline__ void cuda_attn_store(float *p, float v) {
    *p = v;
}
static __device__ __forceinline__ void cuda_attn_store(__nv_bfloat16 *p, float v) {
    *p = __float2bfloat16_rn(v);
}

/* Gathers src (B,N,S,NH,HS) into S blocks of (B,NH,N,HS) placed `slot_stride` elements apart
 * in dst (S = 3 for qkv, 1 for dout). A block per (b, n) row keeps the inner index math 32-bit;
 * reads are coalesced along the row, writes along HS. */
template <typename T>
static __global__ void cuda_attn_permute_kernel(T *dst, const float *src, int B, int N, int S,
                                                int NH, int HS, size_t slot_stride) {
    const int row_len = S * NH * HS;
    const size_t rows = (size_t)B * N;
    for (size_t row = blockIdx.x; row < rows; row += gridDim.x) {
        const size_t b = row / N;
        const int n = (int)(row - b * N);
        const float *in = src + row * row_len;
        for (int col = threadIdx.x; col < row_len; col += blockDim.x) {
            const int d = col % HS, h = (col / HS) % NH, s = col / (NH * HS);
            size_t o = (size_t)s * slot_stride + ((b * NH + h) * N + n) * HS + d;
            cuda_attn_store(dst + o, in[col]);
        }
    }
}

/* The inverse gather: dst (B,N,S,NH,HS) = (or += when accumulate) the S blocks of
 * (B,NH,N,HS) in src, `slot_stride` elements apart. */
static __global__ void cuda_attn_unpermute_kernel(float *dst, const float *src, int B, int N,
                                                  int S, int NH, int HS, size_t slot_stride,
                                                  int accumulate) {
    const int row_len = S * NH * HS;
    const size_t rows = (size_t)B * N;
    for (size_t row = blockIdx.x; row < rows; row += gridDim.x) {
        const size_t b = row / N;
        const int n = (int)(row - b * N);
        float *out = dst + row * row_len;
        for (int col = threadIdx.x; col < row_len; col += blockDim.x) {
            const int d = col % HS, h = (col / HS) % NH, s = col / (NH * HS);
            float v = src[(size_t)s * slot_stride + ((b * NH + h) * N + n) * HS + d];
            out[col] = accumulate ? out[col] + v : v;
        }
    }
}

/* p (rows, N) in place: p = softmax(scale * p) per row, max-subtracted as on the CPU; also
 * writes the result as bf16 to p_bf16 when non-NULL. One warp per row, lanes strided over the
 * row; whole warps leave the row loop together, so the full-mask shuffles are safe. */
static __global__ void cuda_attn_softmax_kernel(float *p, __nv_bfloat16 *p_bf16, size_t rows,
                                                int N, float scale) {
    const int lane = threadIdx.x & 31;
    const size_t warps = cuda_warp_row_stride();
    for (size_t r = cuda_warp_row_first(); r < rows; r += warps) {
        float *row = p + r * N;
        float maxv = -INFINITY;
        for (int j = lane; j < N; j += 32) maxv = fmaxf(maxv, row[j] * scale);
        maxv = cuda_warp_max(maxv);
        float sum = 0.0f;
        for (int j = lane; j < N; j += 32) sum += expf(row[j] * scale - maxv);
        const float inv = 1.0f / cuda_warp_sum(sum);
        for (int j = lane; j < N; j += 32) {
            float v = expf(row[j] * scale - maxv) * inv;
            row[j] = v;
            if (p_bf16) p_bf16[r * N + j] = __float2bfloat16_rn(v);
        }
    }
}

/* Softmax gradient per row of (rows, N): ds = scale * p * (dp - sum_j p dp), written to ds
 * (fp32, may alias dp: each element is read before it is written, by the same lane) or, when
 * ds_bf16 is non-NULL, to ds_bf16 instead. One warp per row as in the forward. */
static __global__ void cuda_attn_softmax_backward_kernel(float *ds, __nv_bfloat16 *ds_bf16,
                                                         const float *p, const float *dp,
                                                         size_t rows, int N, float scale) {
    const int lane = threadIdx.x & 31;
    const size_t warps = cuda_warp_row_stride();
    for (size_t r = cuda_warp_row_first(); r < rows; r += warps) {
        const float *prow = p + r * N, *dprow = dp + r * N;
        float dot = 0.0f;
        for (int j = lane; j < N; j += 32) dot += prow[j] * dprow[j];
        dot = cuda_warp_sum(dot);
        for (int j = lane; j < N; j += 32) {
            float v = scale * prow[j] * (dprow[j] - dot);
            if (ds_bf16) ds_bf16[r * N + j] = __float2bfloat16_rn(v);
            else ds[r * N + j] = v;
        }
    }
}

static unsigned cuda_attn_row_blocks(size_t rows) {
    size_t blocks = rows < 1 ? 1 : rows;
    return blocks > ATTN_MAX_BLOCKS ? ATTN_MAX_BLOCKS : (unsigned)blocks;
}

static unsigned cuda_attn_warp_blocks(size_t rows) {
    return cuda_attn_row_blocks((rows + ATTN_WARPS - 1) / ATTN_WARPS);
}

/* Column-major C (m,n) = op(A) op(B) (+ beta C) for each of `batch` heads, operands fp32 or
 * (bf16 mode) bf16, C fp32, alpha 1. Returns 0 or -1 after recording the failure. */
static int cuda_attn_gemm(cuda_ctx *cx, int bf16, cublasOperation_t ta, cublasOperation_t tb,
                          int m, int n, int k, const void *A, int lda, long long sa,
                          const void *B, int ldb, long long sb, float beta, float *C, int ldc,
                          long long sc, int batch, const char *op) {
    const float alpha = 1.0f;
    cublasStatus_t s;
    if (bf16)
        s = cublasGemmStridedBatchedEx(cx->cublas, ta, tb, m, n, k, &alpha, A, CUDA_R_16BF, lda,
                                       sa, B, CUDA_R_16BF, ldb, sb, &beta, C, CUDA_R_32F, ldc, sc,
                                       batch, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    else
        s = cublasSgemmStridedBatched(cx->cublas, ta, tb, m, n, k, &alpha, (const float *)A, lda,
                                      sa, (const float *)B, ldb, sb, &beta, C, ldc, sc, batch);
    return cuda_check_blas(cx, s, op);
}

/* Queues the gather of src (B,N,S,NH,HS) into dst (fp32 or bf16 per T). */
template <typename T>
static int cuda_attn_permute(cuda_ctx *cx, T *dst, const float *src, int B, int N, int S, int NH,
                             int HS, size_t slot_stride, const char *op) {
    cuda_attn_permute_kernel<T><<<cuda_attn_row_blocks((size_t)B * N), CUDA_THREADS, 0,
                                  cx->stream>>>(dst, src, B, N, S, NH, HS, slot_stride);
    return cuda_check_launch(cx, op);
}

static int cuda_attn_unpermute(cuda_ctx *cx, float *dst, const float *src, int B, int N, int S,
                               int NH, int HS, size_t slot_stride, int accumulate,
                               const char *op) {
    cuda_attn_unpermute_kernel<<<cuda_attn_row_blocks((size_t)B * N), CUDA_THREADS, 0,
                                 cx->stream>>>(dst, src, B, N, S, NH, HS, slot_stride, accumulate);
    return cuda_check_launch(cx, op);
}

/* saved (B,NH,N,N): the softmax probabilities, exactly like the CPU backend. */
static size_t cuda_attention_saved_floats(int B, int N, int NH, int HS) {
    if (B <= 0 || N <= 0 || NH <= 0 || HS <= 0) return 0;
    return (size_t)B * NH * N * N;
}

/* Room for the fp32 backward (the largest user): seven (B,NH,N,HS) blocks and dP. */
static size_t cuda_attention_scratch_floats(int B, int N, int NH, int HS) {
    if (B <= 0 || N <= 0 || NH <= 0 || HS <= 0) return 0;
    size_t X = (size_t)B * NH * N * HS, Y = (size_t)B * NH * N * N;
    return 7 * cuda_attn_pad(X) + cuda_attn_pad(Y);
}

/* Row-major, per head: S (N,N) = Q (N,HS) . K^T, so column-major S^T (N,N) = K (N,HS) .
 * Q^T (HS,N). K's buffer is column-major K^T (HS,N), ld HS, used transposed -> op T; Q's buffer
 * is Q^T, ld HS -> op N; S's buffer is S^T, ld N. The same call gives dP = dO . V^T with
 * (A, B) = (V, dO). */
static int cuda_attn_gemm_abt(cuda_ctx *cx, int bf16, float *C, const void *A, const void *B,
                              int batch, int N, int HS, const char *op) {
    return cuda_attn_gemm(cx, bf16, CUBLAS_OP_T, CUBLAS_OP_N, N, N, HS, A, HS, (long long)N * HS,
                          B, HS, (long long)N * HS, 0.0f, C, N, (long long)N * N, batch, op);
}

/* Row-major, per head: O (N,HS) = P (N,N) . V (N,HS), so column-major O^T (HS,N) = V^T (HS,N) .
 * P^T (N,N). V's buffer is V^T, ld HS -> op N; P's buffer is P^T, ld N -> op N; O's buffer is
 * O^T, ld HS. The same call gives dQ = dS . K with (mat, vec) = (dS, K). */
static int cuda_attn_gemm_pv(cuda_ctx *cx, int bf16, float *C, const void *mat, const void *vec,
                             int batch, int N, int HS, const char *op) {
    return cuda_attn_gemm(cx, bf16, CUBLAS_OP_N, CUBLAS_OP_N, HS, N, N, vec, HS,
                          (long long)N * HS, mat, N, (long long)N * N, 0.0f, C, HS,
                          (long long)N * HS, batch, op);
}

/* Row-major, per head: dV (N,HS) = P^T (N,N) . dO (N,HS), so column-major dV^T (HS,N) =
 * dO^T (HS,N) . P (N,N). dO's buffer is dO^T, ld HS -> op N; P's buffer is P^T (ld N), needed
 * untransposed -> op T; dV's buffer is dV^T, ld HS. The same call gives dK = dS^T . Q with
 * (mat, vec) = (dS, Q). */
static int cuda_attn_gemm_ptv(cuda_ctx *cx, int bf16, float *C, const void *mat, const void *vec,
                              int batch, int N, int HS, const char *op) {
    return cuda_attn_gemm(cx, bf16, CUBLAS_OP_N, CUBLAS_OP_T, HS, N, N, vec, HS,
                          (long long)N * HS, mat, N, (long long)N * N, 0.0f, C, HS,
                          (long long)N * HS, batch, op);
}

/* out (B,N,NH*HS) = per head softmax(q k^T / sqrt(HS)) v from qkv (B,N,3,NH,HS); P (B,NH,N,N)
 * is written to `saved` for the backward pass; scratch (attention_scratch_floats) and the
 * scratch slots are clobbered. */
static void cuda_attention_forward(dt_backend *be, float *out, float *saved, float *scratch,
                                   const float *qkv, int B, int N, int NH, int HS) {
    CUDA_OP_BEGIN(be, cx);
    if (B <= 0 || N <= 0 || NH <= 0 || HS <= 0) return;
    const char *op = "attention_forward";
    const int bf16 = be->precision == DT_PRECISION_BF16, batch = B * NH;
    const size_t X = (size_t)B * NH * N * HS, Xp = cuda_attn_pad(X), Y = (size_t)B * NH * N * N;
    const size_t rows = (size_t)B * NH * N;
    const float scale = 1.0f / sqrtf((float)HS);
    float *o = scratch + 3 * Xp; /* the dO place of the layout */
    const void *q, *k, *v;
    __nv_bfloat16 *p_bf16 = NULL;
    if (bf16) {
        __nv_bfloat16 *qkv_h = (__nv_bfloat16 *)cuda_scratch(cx, CUDA_SCRATCH_CAST_A,
                                                             3 * Xp * sizeof(__nv_bfloat16));
        p_bf16 = (__nv_bfloat16 *)cuda_scratch(cx, CUDA_SCRATCH_CAST_B, Y * sizeof(__nv_bfloat16));
        if (!qkv_h || !p_bf16) return;
        if (cuda_attn_permute(cx, qkv_h, qkv, B, N, 3, NH, HS, Xp, op)) return;
        q = qkv_h, k = qkv_h + Xp, v = qkv_h + 2 * Xp;
    } else {
        if (cuda_attn_permute(cx, scratch, qkv, B, N, 3, NH, HS, Xp, op)) return;
        q = scratch, k = scratch + Xp, v = scratch + 2 * Xp;
    }
    /* Unscaled scores into saved; the softmax kernel applies 1/sqrt(HS). */
    if (cuda_attn_gemm_abt(cx, bf16, saved, k, q, batch, N, HS, op)) return;
    cuda_attn_softmax_kernel<<<cuda_attn_warp_blocks(rows), ATTN_WARPS * 32, 0, cx->stream>>>(
        saved, p_bf16, rows, N, scale);
    if (cuda_check_launch(cx, op)) return;
    if (cuda_attn_gemm_pv(cx, bf16, o, bf16 ? (const void *)p_bf16 : (const void *)saved, v,
                          batch, N, HS, op))
        return;
    cuda_attn_unpermute(cx, out, o, B, N, 1, NH, HS, Xp, 0, op);
}

/* dqkv (B,N,3,NH,HS) += the gradient of the forward given dout (B,N,NH*HS), qkv and saved P.
 * With S = q k^T scale, P = softmax(S), O = P v: dP = dO v^T, dV = P^T dO,
 * dS = scale P (dP - rowsum(P dP)), dQ = dS k, dK = dS^T q. q, k, v are gathered again from
 * qkv (cheaper than keeping them per layer). */
static void cuda_attention_backward(dt_backend *be, float *dqkv, float *scratch,
                                    const float *dout, const float *qkv, const float *saved,
                                    int B, int N, int NH, int HS) {
    CUDA_OP_BEGIN(be, cx);
    if (B <= 0 || N <= 0 || NH <= 0 || HS <= 0) return;
    const char *op = "attention_backward";
    const int bf16 = be->precision == DT_PRECISION_BF16, batch = B * NH;
    const size_t X = (size_t)B * NH * N * HS, Xp = cuda_attn_pad(X), Y = (size_t)B * NH * N * N;
    const size_t rows = (size_t)B * NH * N;
    const float scale = 1.0f / sqrtf((float)HS);
    float *dqkv_h = scratch + 4 * Xp; /* [dQ | dK | dV], Xp apart */
    float *dq = dqkv_h, *dk = dqkv_h + Xp, *dv = dqkv_h + 2 * Xp;
    float *dp = scratch + 7 * Xp;
    const void *q, *k, *v, *dO, *p, *ds;
    __nv_bfloat16 *ds_bf16 = NULL;
    if (bf16) {
        __nv_bfloat16 *qkv_h = (__nv_bfloat16 *)cuda_scratch(cx, CUDA_SCRATCH_CAST_A,
                                                             3 * Xp * sizeof(__nv_bfloat16));
        __nv_bfloat16 *do_h = (__nv_bfloat16 *)cuda_scratch(cx, CUDA_SCRATCH_CAST_B,
                                                            X * sizeof(__nv_bfloat16));
        /* P's bf16 copy, later overwritten by dS once dV (its only reader) has been queued. */
        __nv_bfloat16 *p_h = (__nv_bfloat16 *)cuda_scratch(cx, CUDA_SCRATCH_CAST_C,
                                                           Y * sizeof(__nv_bfloat16));
        if (!qkv_h || !do_h || !p_h) return;
        if (cuda_attn_permute(cx, qkv_h, qkv, B, N, 3, NH, HS, Xp, op)) return;
        if (cuda_attn_permute(cx, do_h, dout, B, N, 1, NH, HS, Xp, op)) return;
        cuda_cast_bf16(cx, p_h, saved, Y);
        if (cx->failed) return;
        q = qkv_h, k = qkv_h + Xp, v = qkv_h + 2 * Xp, dO = do_h, p = p_h, ds = p_h;
        ds_bf16 = p_h;
    } else {
        if (cuda_attn_permute(cx, scratch, qkv, B, N, 3, NH, HS, Xp, op)) return;
        float *do_f = scratch + 3 * Xp;
        if (cuda_attn_permute(cx, do_f, dout, B, N, 1, NH, HS, Xp, op)) return;
        q = scratch, k = scratch + Xp, v = scratch + 2 * Xp, dO = do_f, p = saved, ds = dp;
    }
    if (cuda_attn_gemm_abt(cx, bf16, dp, v, dO, batch, N, HS, op)) return;   /* dP = dO v^T */
    if (cuda_attn_gemm_ptv(cx, bf16, dv, p, dO, batch, N, HS, op)) return;   /* dV = P^T dO */
    cuda_attn_softmax_backward_kernel<<<cuda_attn_warp_blocks(rows), ATTN_WARPS * 32, 0,
                                        cx->stream>>>(dp, ds_bf16, saved, dp, rows, N, scale);
    if (cuda_check_launch(cx, op)) return;
    if (cuda_attn_gemm_pv(cx, bf16, dq, ds, k, batch, N, HS, op)) return;    /* dQ = dS k */
    if (cuda_attn_gemm_ptv(cx, bf16, dk, ds, q, batch, N, HS, op)) return;   /* dK = dS^T q */
    cuda_attn_unpermute(cx, dqkv, dqkv_h, B, N, 3, NH, HS, Xp, 1, op);
}

/* Installs the four attention entries into `be`; called once by
 * dt_backend_cuda_create, touches no other table entries. */
void cuda_attention_install(dt_backend *be) {
    be->attention_saved_floats = cuda_attention_saved_floats;
    be->attention_scratch_floats = cuda_attention_scratch_floats;
    be->attention_forward = cuda_attention_forward;
    be->attention_backward = cuda_attention_backward;
}
