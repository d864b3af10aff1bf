/* cpu_pointwise.c — element-wise ops: activations, BLAS-1 style updates, row broadcast and the
 * counter-based normal generator. */
#include <math.h>

#include "cpu_internal.h"
#include "philox.h"

#define CPU_GELU_K 0.79788456080286535588f /* sqrt(2/pi) */
#define CPU_GELU_C 0.044715f

/* out = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), the tanh approximation of GELU. */
static void cpu_gelu_forward(dt_backend *be, float *out, const float *inp, size_t n) {
    #pragma omp parallel for schedule(static) if (n >= CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        out[i] = 0.5f * x * (1.0f + tanhf(CPU_GELU_K * (x + CPU_GELU_C * x * x * x)));
    }
}

/* dinp += dout * gelu'(inp); sech^2 as 1 - tanh^2 so large |x| cannot overflow cosh. */
static void cpu_gelu_backward(dt_backend *be, float *dinp, const float *inp, const float *dout,
                              size_t n) {
    #pragma omp parallel for schedule(static) if (n >= CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        float th = tanhf(CPU_GELU_K * (x + CPU_GELU_C * x * x * x));
        float sech2 = 1.0f - th * th;
        float grad = 0.5f * (1.0f + th) +
                     0.5f * x * sech2 * CPU_GELU_K * (1.0f + 3.0f * CPU_GELU_C * x * x);
        dinp[i] += dout[i] * grad;
    }
}

/* out = x * sigmoid(x). */
static void cpu_silu_forward(dt_backend *be, float *out, const float *inp, size_t n) {
    #pragma omp parallel for schedule(static) if (n >= CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++) out[i] = inp[i] / (1.0f + expf(-inp[i]));
}

/* dinp += dout * s (1 + x (1 - s)), s = sigmoid(x). */
static void cpu_silu_backward(dt_backend *be, float *dinp, const float *inp, const float *dout,
                              size_t n) {
    #pragma omp parallel for schedule(static) if (n >= CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        float s = 1.0f / (1.0f + expf(-x));
        dinp[i] += dout[i] * s * (1.0f + x * (1.0f - s));
    }
}

/* y += a * x */
static void cpu_axpy(dt_backend *be, float *y, float a, const float *x, size_t n) {
    #pragma omp parallel for schedule(static) if (n >= CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++) y[i] += a * x[i];
}

/* x *= a */
static void cpu_scale(dt_backend *be, float *x, float a, size_t n) {
    #pragma omp parallel for schedule(static) if (n >= CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++) x[i] *= a;
}

/* x (B,R) += row (R) for every b. */
static void cpu_add_rows(dt_backend *be, float *x, const float *row, int B, size_t R) {
    #pragma omp parallel for schedule(static) if ((size_t)B * R >= CPU_PAR_MIN)
    for (int b = 0; b < B; b++) {
        float *xb = x + (size_t)b * R;
        for (size_t i = 0; i < R; i++) xb[i] += row[i];
    }
}

/* Columns per task of the gamma-gradient sums: each task owns its columns, so every sum runs
 * over the rows in a fixed order whatever the thread count. */
#define CPU_SCALE_COLS 64

/* y (rows, cols) = x * g1[c] * g2[c] (g2 NULL = 1); y may alias x. */
static void cpu_scale_cols_forward(dt_backend *be, float *y, const float *x, const float *g1,
                                   const float *g2, int rows, int cols) {
    #pragma omp parallel for schedule(static) if ((size_t)rows * cols >= CPU_PAR_MIN)
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * cols;
        float *yr = y + (size_t)r * cols;
        for (int c = 0; c < cols; c++) yr[c] = xr[c] * (g2 ? g1[c] * g2[c] : g1[c]);
    }
}

/* dg1 += sum_r dy*x*g2, dg2 += sum_r dy*x*g1 (double, rows in order); then dx = dy*g1*g2. */
static void cpu_scale_cols_backward(dt_backend *be, float *dx, float *dg1, float *dg2,
                                    const float *dy, const float *x, const float *g1,
                                    const float *g2, int rows, int cols) {
    if (dg1 || dg2) {
        int tasks = (cols + CPU_SCALE_COLS - 1) / CPU_SCALE_COLS;
        #pragma omp parallel for schedule(static) if ((size_t)rows * cols >= CPU_PAR_MIN)
        for (int task = 0; task < tasks; task++) {
            int c0 = task * CPU_SCALE_COLS;
            int nc = cols - c0 < CPU_SCALE_COLS ? cols - c0 : CPU_SCALE_COLS;
            double acc[CPU_SCALE_COLS] = {0};
            for (int r = 0; r < rows; r++) {
                const float *dyr = dy + (size_t)r * cols + c0, *xr = x + (size_t)r * cols + c0;
                for (int j = 0; j < nc; j++) acc[j] += (double)dyr[j] * xr[j];
            }
            for (int j = 0; j < nc; j++) {
                if (dg1) dg1[c0 + j] += (float)(acc[j] * (g2 ? g2[c0 + j] : 1.0f));
                if (dg2) dg2[c0 + j] += (float)(acc[j] * g1[c0 + j]);
            }
        }
    }
    if (dx) cpu_scale_cols_forward(be, dx, dy, g1, g2, rows, cols);
}

/* out[i] = dt_philox_normal(seed, stream = offset, index = i): identical on every backend and
 * independent of how the work is split. */
static void cpu_randn(dt_backend *be, float *out, size_t n, uint64_t seed, uint64_t offset) {
    #pragma omp parallel for schedule(static) if (n >= 1024)
    for (size_t i = 0; i < n; i++) out[i] = dt_philox_normal(seed, offset, i);
}

/* Installs activations, axpy, scale, add_rows, scale_cols_* and randn into `be`; called once by
 * dt_backend_cpu_create, touches no other table entries. */
void cpu_pointwise_install(dt_backend *be) {
    be->gelu_forward = cpu_gelu_forward;
    be->gelu_backward = cpu_gelu_backward;
    be->silu_forward = cpu_silu_forward;
    be->silu_backward = cpu_silu_backward;
    be->axpy = cpu_axpy;
    be->scale = cpu_scale;
    be->add_rows = cpu_add_rows;
    be->scale_cols_forward = cpu_scale_cols_forward;
    be->scale_cols_backward = cpu_scale_cols_backward;
    be->randn = cpu_randn;
}
