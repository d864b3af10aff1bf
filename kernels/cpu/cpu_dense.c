/* cpu_dense.c — fully connected layers on OpenBLAS (row-major, weights stored (OC, C) like
 * PyTorch's nn.Linear). */
#include <string.h>

#include <cblas.h>

#include "cpu_internal.h"

/* Columns per task of the bias-gradient column sum: each task owns its columns, so the sum over
 * rows runs in a fixed order whatever the thread count. */
#define CPU_DENSE_COLS 64

/* out (BT,OC) = inp (BT,C) . w (OC,C)^T + bias (OC). The bias is written first and then
 * accumulated onto by sgemm (beta = 1), saving a second pass over out. */
static void cpu_matmul_forward(dt_backend *be, float *out, const float *inp, const float *w,
                               const float *bias, int BT, int C, int OC) {
    if (BT <= 0 || OC <= 0) return;
    if (bias) {
        #pragma omp parallel for schedule(static) if ((size_t)BT * OC >= CPU_PAR_MIN)
        for (int r = 0; r < BT; r++) memcpy(out + (size_t)r * OC, bias, (size_t)OC * sizeof(float));
    } else if (C <= 0) {
        memset(out, 0, (size_t)BT * OC * sizeof(float));
    }
    if (C <= 0) return; /* BLAS rejects k = 0 with lda = 0 */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, BT, OC, C, 1.0f, inp, C, w, C,
                bias ? 1.0f : 0.0f, out, OC);
}

/* dbias (OC) += column sums of dout (BT,OC), in double, rows in order. */
static void cpu_matmul_dbias(float *dbias, const float *dout, int BT, int OC) {
    int tasks = (OC + CPU_DENSE_COLS - 1) / CPU_DENSE_COLS;
    #pragma omp parallel for schedule(static) if ((size_t)BT * OC >= CPU_PAR_MIN)
    for (int task = 0; task < tasks; task++) {
        int c0 = task * CPU_DENSE_COLS;
        int nc = OC - c0 < CPU_DENSE_COLS ? OC - c0 : CPU_DENSE_COLS;
        double acc[CPU_DENSE_COLS] = {0};
        for (int r = 0; r < BT; r++) {
            const float *row = dout + (size_t)r * OC + c0;
            for (int j = 0; j < nc; j++) acc[j] += row[j];
        }
        for (int j = 0; j < nc; j++) dbias[c0 + j] += (float)acc[j];
    }
}

/* dinp (BT,C) += dout (BT,OC) . w (OC,C); dw (OC,C) += dout^T . inp (BT,C); dbias += colsum. */
static void cpu_matmul_backward(dt_backend *be, float *dinp, float *dw, float *dbias,
                                const float *dout, const float *inp, const float *w,
                                int BT, int C, int OC) {
    if (BT <= 0 || OC <= 0) return;
    if (dinp && C > 0)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, BT, C, OC, 1.0f, dout, OC, w, C,
                    1.0f, dinp, C);
    if (dw && C > 0)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, C, BT, 1.0f, dout, OC, inp, C,
                    1.0f, dw, C);
    if (dbias) cpu_matmul_dbias(dbias, dout, BT, OC);
}

/* Installs matmul_forward and matmul_backward into `be`; called once by
 * dt_backend_cpu_create, touches no other table entries. */
void cpu_dense_install(dt_backend *be) {
    be->matmul_forward = cpu_matmul_forward;
    be->matmul_backward = cpu_matmul_backward;
}
