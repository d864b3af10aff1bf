/* cuda_dense.cu — fully connected layers on cuBLAS (row-major, weights stored (OC, C) like
 * PyTorch's nn.Linear), matching kernels/cpu/cpu_dense.c.
 *
 * cuBLAS is column-major. A row-major (R, K) matrix with row stride K is, byte for byte, the
 * column-major (K, R) matrix of its transpose with leading dimension K. Every product below is
 * therefore computed transposed: for row-major Y = A.B we ask cuBLAS for Y^T = B^T.A^T, where
 * B^T and A^T are the buffers as they lie, and a row-major operand used transposed becomes
 * CUBLAS_OP_T. The derivation of each call is written next to it.
 *
 * Precision (be->precision): fp32 runs cublasSgemm (the handle is in CUBLAS_DEFAULT_MATH, so no
 * TF32); bf16 casts each operand into a scratch slot and runs cublasGemmEx with bf16 inputs,
 * fp32 accumulation and an fp32 output, so out/dinp/dw stay fp32 either way.
 */
#include "cuda_internal.h"

/* Bias-gradient column sum, pass 1: a block covers 32 columns (one warp reads one 128-byte row
 * segment) and a fixed chunk of rows; threadIdx.y interleaves the rows of the chunk. */
#define DENSE_DBIAS_COLS 32
#define DENSE_DBIAS_LANES_Y 8
#define DENSE_DBIAS_CHUNK 256 /* rows per block: the partial count depends on BT only */
#define DENSE_MAX_GRID_Y 65535

/* out (BT,OC) = bias (OC) on every row; the GEMM then accumulates onto it with beta = 1. A block
 * per row keeps the column index a plain loop counter (no 64-bit modulo per element). */
static __global__ void cuda_dense_bias_fill_kernel(float *out, const float *bias, int BT, int OC) {
    for (int r = blockIdx.x; r < BT; r += gridDim.x) {
        float *row = out + (size_t)r * OC;
        for (int c = threadIdx.x; c < OC; c += blockDim.x) row[c] = bias[c];
    }
}

/* partial (chunks, OC): partial[y][c] = sum of dout[r][c] over the rows r of chunk y. The
 * summation order is fixed by the launch shape, so results are bitwise repeatable. */
static __global__ void cuda_dense_dbias_partial_kernel(float *partial, const float *dout, int BT,
                                                       int OC, int chunk_rows) {
    __shared__ float sums[DENSE_DBIAS_LANES_Y][DENSE_DBIAS_COLS + 1];
    const int col = blockIdx.x * DENSE_DBIAS_COLS + threadIdx.x;
    const int r0 = blockIdx.y * chunk_rows;
    const int r1 = BT - r0 < chunk_rows ? BT : r0 + chunk_rows;
    float acc = 0.0f;
    if (col < OC)
        for (int r = r0 + threadIdx.y; r < r1; r += DENSE_DBIAS_LANES_Y)
            acc += dout[(size_t)r * OC + col];
    sums[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && col < OC) {
        float s = 0.0f;
        for (int y = 0; y < DENSE_DBIAS_LANES_Y; y++) s += sums[y][threadIdx.x];
        partial[(size_t)blockIdx.y * OC + col] = s;
    }
}

/* dbias (OC) += sum over the chunks of partial (chunks, OC), chunks in order. */
static __global__ void cuda_dense_dbias_sum_kernel(float *dbias, const float *partial, int chunks,
                                                   int OC) {
    for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < OC; c += gridDim.x * blockDim.x) {
        float s = 0.0f;
        for (int y = 0; y < chunks; y++) s += partial[(size_t)y * OC + c];
        dbias[c] += s;
    }
}

/* The operand the GEMM should read: `src` itself in fp32 mode, or its bf16 copy (n elements) in
 * scratch slot `slot` in bf16 mode. NULL after a recorded failure. */
static const void *cuda_dense_operand(cuda_ctx *cx, int bf16, int slot, const float *src,
                                      size_t n) {
    if (!bf16) return src;
    __nv_bfloat16 *dst = (__nv_bfloat16 *)cuda_scratch(cx, slot, n * sizeof(__nv_bfloat16));
    if (!dst) return NULL;
    cuda_cast_bf16(cx, dst, src, n);
    return cx->failed ? NULL : dst;
}

/* Column-major C (m,n) = op(A) op(B) + beta C with alpha 1, A and B fp32 or (bf16 mode) bf16
 * from cuda_dense_operand; C is always fp32. Returns 0 or -1 after recording the failure. */
static int cuda_dense_gemm(cuda_ctx *cx, int bf16, cublasOperation_t ta, cublasOperation_t tb,
                           int m, int n, int k, const void *A, int lda, const void *B, int ldb,
                           float beta, float *C, int ldc, const char *op) {
    const float alpha = 1.0f;
    cublasStatus_t s;
    if (bf16)
        s = cublasGemmEx(cx->cublas, ta, tb, m, n, k, &alpha, A, CUDA_R_16BF, lda, B, CUDA_R_16BF,
                         ldb, &beta, C, CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    else
        s = cublasSgemm(cx->cublas, ta, tb, m, n, k, &alpha, (const float *)A, lda,
                        (const float *)B, ldb, &beta, C, ldc);
    return cuda_check_blas(cx, s, op);
}

/* out (BT,OC) = inp (BT,C) . w (OC,C)^T + bias (OC); overwrites out, bias may be NULL. */
static void cuda_matmul_forward(dt_backend *be, float *out, const float *inp, const float *w,
                                const float *bias, int BT, int C, int OC) {
    CUDA_OP_BEGIN(be, cx);
    if (BT <= 0 || OC <= 0) return;
    const char *op = "matmul_forward";
    const size_t total = (size_t)BT * OC;
    if (bias) {
        unsigned rows = BT < 65535 * 8 ? (unsigned)BT : 65535u * 8u;
        cuda_dense_bias_fill_kernel<<<rows, CUDA_THREADS, 0, cx->stream>>>(out, bias, BT, OC);
        if (cuda_check_launch(cx, op)) return;
    } else if (C <= 0) {
        cuda_check(cx, cudaMemsetAsync(out, 0, total * sizeof(float), cx->stream), op);
    }
    if (C <= 0) return; /* cuBLAS rejects k = 0 with a zero leading dimension */
    const int bf16 = be->precision == DT_PRECISION_BF16;
    const void *wm = cuda_dense_operand(cx, bf16, CUDA_SCRATCH_CAST_A, w, (size_t)OC * C);
    const void *im = cuda_dense_operand(cx, bf16, CUDA_SCRATCH_CAST_B, inp, (size_t)BT * C);
    if (!wm || !im) return;
    /* Row-major out = inp.w^T, so column-major out^T (OC,BT) = w (OC,C) . inp^T (C,BT).
     * w's buffer is column-major w^T (C,OC), ld C -> op T; inp's buffer is column-major
     * inp^T (C,BT), ld C -> op N; out's buffer is column-major out^T (OC,BT), ld OC. */
    cuda_dense_gemm(cx, bf16, CUBLAS_OP_T, CUBLAS_OP_N, OC, BT, C, wm, C, im, C,
                    bias ? 1.0f : 0.0f, out, OC, op);
}

/* dbias (OC) += column sums of dout (BT,OC): deterministic two-pass reduction through the
 * REDUCE scratch slot, no atomics. */
static void cuda_matmul_dbias(cuda_ctx *cx, float *dbias, const float *dout, int BT, int OC,
                              const char *op) {
    int chunk_rows = DENSE_DBIAS_CHUNK;
    int chunks = (BT + chunk_rows - 1) / chunk_rows;
    if (chunks > DENSE_MAX_GRID_Y) { /* grid.y limit: longer chunks, still a function of BT */
        chunks = DENSE_MAX_GRID_Y;
        chunk_rows = (BT + chunks - 1) / chunks;
        chunks = (BT + chunk_rows - 1) / chunk_rows;
    }
    float *partial = (float *)cuda_scratch(cx, CUDA_SCRATCH_REDUCE,
                                           (size_t)chunks * OC * sizeof(float));
    if (!partial) return;
    dim3 block(DENSE_DBIAS_COLS, DENSE_DBIAS_LANES_Y);
    dim3 grid((unsigned)((OC + DENSE_DBIAS_COLS - 1) / DENSE_DBIAS_COLS), (unsigned)chunks);
    cuda_dense_dbias_partial_kernel<<<grid, block, 0, cx->stream>>>(partial, dout, BT, OC,
                                                                    chunk_rows);
    if (cuda_check_launch(cx, op)) return;
    cuda_dense_dbias_sum_kernel<<<cuda_grid((size_t)OC), CUDA_THREADS, 0, cx->stream>>>(
        dbias, partial, chunks, OC);
    cuda_check_launch(cx, op);
}

/* dinp (BT,C) += dout (BT,OC) . w (OC,C); dw (OC,C) += dout^T . inp (BT,C); dbias (OC) +=
 * colsum(dout). Any of dinp, dw, dbias may be NULL. */
static void cuda_matmul_backward(dt_backend *be, float *dinp, float *dw, float *dbias,
                                 const float *dout, const float *inp, const float *w,
                                 int BT, int C, int OC) {
    CUDA_OP_BEGIN(be, cx);
    if (BT <= 0 || OC <= 0) return;
    const char *op = "matmul_backward";
    const int bf16 = be->precision == DT_PRECISION_BF16;
    if ((dinp || dw) && C > 0) {
        /* dout feeds both products: cast it once. */
        const void *dm = cuda_dense_operand(cx, bf16, CUDA_SCRATCH_CAST_A, dout, (size_t)BT * OC);
        if (!dm) return;
        if (dinp) {
            const void *wm = cuda_dense_operand(cx, bf16, CUDA_SCRATCH_CAST_B, w, (size_t)OC * C);
            if (!wm) return;
            /* Row-major dinp = dout.w, so column-major dinp^T (C,BT) = w^T (C,OC) . dout^T
             * (OC,BT): w's buffer is w^T with ld C -> op N; dout's buffer is dout^T with ld OC
             * -> op N; dinp's buffer is dinp^T with ld C. beta 1 accumulates. */
            if (cuda_dense_gemm(cx, bf16, CUBLAS_OP_N, CUBLAS_OP_N, C, BT, OC, wm, C, dm, OC,
                                1.0f, dinp, C, op))
                return;
        }
        if (dw) {
            const void *im = cuda_dense_operand(cx, bf16, CUDA_SCRATCH_CAST_C, inp,
                                                (size_t)BT * C);
            if (!im) return;
            /* Row-major dw = dout^T.inp, so column-major dw^T (C,OC) = inp^T (C,BT) . dout
             * (BT,OC): inp's buffer is inp^T with ld C -> op N; dout's buffer is dout^T
             * (OC,BT) with ld OC, used transposed -> op T; dw's buffer is dw^T with ld C. */
            if (cuda_dense_gemm(cx, bf16, CUBLAS_OP_N, CUBLAS_OP_T, C, OC, BT, im, C, dm, OC,
                                1.0f, dw, C, op))
                return;
        }
    }
    if (dbias) cuda_matmul_dbias(cx, dbias, dout, BT, OC, op);
}

/* Installs matmul_forward and matmul_backward into `be`; called once by
 * dt_backend_cuda_create, touches no other table entries. */
void cuda_dense_install(dt_backend *be) {
    be->matmul_forward = cuda_matmul_forward;
    be->matmul_backward = cuda_matmul_backward;
}
