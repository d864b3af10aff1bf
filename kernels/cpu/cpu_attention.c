/* cpu_attention.c — multi-head self-attention, one (batch, head) pair per OpenMP task.
 *
 * q, k and v of a head are read in place from qkv (B,N,3,NH,HS) as strided matrices (row
 * stride 3*NH*HS) and head outputs are written in place into out (B,N,NH*HS) (row stride
 * NH*HS), so nothing is gathered. BLAS calls made inside the parallel region run single-threaded
 * (OpenBLAS OpenMP build), one head per thread.
 *
 * saved (B,NH,N,N): the softmax probabilities P of every head.
 * scratch: one (N,N) slot per concurrently running task, for dP in the backward pass.
 */
#include <math.h>

#include <cblas.h>
#include <omp.h>

#include "cpu_internal.h"

/* Most scratch slots (backward tasks running at once). A fixed cap keeps the scratch size a pure
 * function of the shape, so it cannot disagree with the thread count at call time. */
#define CPU_ATTN_MAX_SLOTS 64

static int cpu_attn_slots(int B, int NH) {
    long tasks = (long)B * NH;
    if (tasks < 1) return 1;
    return tasks < CPU_ATTN_MAX_SLOTS ? (int)tasks : CPU_ATTN_MAX_SLOTS;
}

static int cpu_attn_threads(int B, int NH) {
    int slots = cpu_attn_slots(B, NH);
    int max_threads = omp_get_max_threads();
    return max_threads < slots ? max_threads : slots;
}

/* Tiny problems run on the calling thread: waking a team costs more than the work. */
static int cpu_attn_worth_threads(int B, int N, int NH, int HS) {
    return B * NH > 1 && (size_t)B * NH * N * N * HS >= CPU_PAR_MIN;
}

static size_t cpu_attention_saved_floats(int B, int N, int NH, int HS) {
    return (size_t)B * NH * N * N;
}

static size_t cpu_attention_scratch_floats(int B, int N, int NH, int HS) {
    return (size_t)cpu_attn_slots(B, NH) * N * N;
}

/* Row-wise softmax of p (N,N) in place, max-subtracted. */
static void cpu_attn_softmax(float *p, int N) {
    for (int i = 0; i < N; i++) {
        float *row = p + (size_t)i * N;
        float maxv = row[0];
        for (int j = 1; j < N; j++) maxv = row[j] > maxv ? row[j] : maxv;
        float sum = 0.0f;
        for (int j = 0; j < N; j++) {
            row[j] = expf(row[j] - maxv);
            sum += row[j];
        }
        float inv = 1.0f / sum;
        for (int j = 0; j < N; j++) row[j] *= inv;
    }
}

/* out (B,N,NH*HS) = per head softmax(q k^T / sqrt(HS)) v; P saved in `saved` (B,NH,N,N). */
static void cpu_attention_forward(dt_backend *be, float *out, float *saved, float *scratch,
                                  const float *qkv, int B, int N, int NH, int HS) {
    if (B <= 0 || N <= 0 || NH <= 0 || HS <= 0) return;
    const int ld_qkv = 3 * NH * HS, ld_out = NH * HS;
    const float scale = 1.0f / sqrtf((float)HS);
    #pragma omp parallel for schedule(static) if (cpu_attn_worth_threads(B, N, NH, HS))
    for (int bh = 0; bh < B * NH; bh++) {
        int b = bh / NH, h = bh % NH;
        const float *q = qkv + (size_t)b * N * ld_qkv + (size_t)h * HS;
        const float *k = q + (size_t)NH * HS;
        const float *v = q + (size_t)2 * NH * HS;
        float *p = saved + (size_t)bh * N * N;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, N, HS, scale, q, ld_qkv, k, ld_qkv,
                    0.0f, p, N);
        cpu_attn_softmax(p, N);
        float *o = out + (size_t)b * N * ld_out + (size_t)h * HS;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, HS, N, 1.0f, p, N, v, ld_qkv,
                    0.0f, o, ld_out);
    }
}

/* dqkv (B,N,3,NH,HS) += gradient of the forward given dout (B,N,NH*HS). With S = q k^T * scale,
 * P = softmax(S), O = P v: dP = dO v^T, dS = P * (dP - rowsum(P * dP)), dq = scale dS k,
 * dk = scale dS^T q, dv = P^T dO. */
static void cpu_attention_backward(dt_backend *be, float *dqkv, float *scratch, const float *dout,
                                   const float *qkv, const float *saved, int B, int N, int NH,
                                   int HS) {
    if (B <= 0 || N <= 0 || NH <= 0 || HS <= 0) return;
    const int ld_qkv = 3 * NH * HS, ld_out = NH * HS;
    const float scale = 1.0f / sqrtf((float)HS);
    const int threads = cpu_attn_worth_threads(B, N, NH, HS) ? cpu_attn_threads(B, NH) : 1;
    #pragma omp parallel num_threads(threads)
    {
        float *dp = scratch + (size_t)omp_get_thread_num() * N * N;
        #pragma omp for schedule(static)
        for (int bh = 0; bh < B * NH; bh++) {
            int b = bh / NH, h = bh % NH;
            size_t head = (size_t)b * N * ld_qkv + (size_t)h * HS;
            const float *q = qkv + head, *k = q + (size_t)NH * HS, *v = q + (size_t)2 * NH * HS;
            float *dq = dqkv + head, *dk = dq + (size_t)NH * HS, *dv = dq + (size_t)2 * NH * HS;
            const float *p = saved + (size_t)bh * N * N;
            const float *dO = dout + (size_t)b * N * ld_out + (size_t)h * HS;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, N, HS, 1.0f, dO, ld_out, v,
                        ld_qkv, 0.0f, dp, N);
            for (int i = 0; i < N; i++) {
                const float *prow = p + (size_t)i * N;
                float *drow = dp + (size_t)i * N;
                float dot = 0.0f;
                for (int j = 0; j < N; j++) dot += prow[j] * drow[j];
                for (int j = 0; j < N; j++) drow[j] = scale * prow[j] * (drow[j] - dot);
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, HS, N, 1.0f, dp, N, k,
                        ld_qkv, 1.0f, dq, ld_qkv);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, N, HS, N, 1.0f, dp, N, q,
                        ld_qkv, 1.0f, dk, ld_qkv);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, N, HS, N, 1.0f, p, N, dO,
                        ld_out, 1.0f, dv, ld_qkv);
        }
    }
}

/* Installs the four attention entries into `be`; called once by
 * dt_backend_cpu_create, touches no other table entries. */
void cpu_attention_install(dt_backend *be) {
    be->attention_saved_floats = cpu_attention_saved_floats;
    be->attention_scratch_floats = cpu_attention_scratch_floats;
    be->attention_forward = cpu_attention_forward;
    be->attention_backward = cpu_attention_backward;
}
