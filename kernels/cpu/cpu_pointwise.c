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

/* out[i] = dt_philox_normal(seed, stream = offset, index = i): identical on every backend and
 * independent of how the work is split. */
static void cpu_randn(dt_backend *be, float *out, size_t n, uint64_t seed, uint64_t offset) {
    #pragma omp parallel for schedule(static) if (n >= 1024)
    for (size_t i = 0; i < n; i++) out[i] = dt_philox_normal(seed, offset, i);
}

/* Installs activations, axpy, scale, add_rows and randn into `be`; called once by
 * dt_backend_cpu_create, touches no other table entries. */
void cpu_pointwise_install(dt_backend *be) {
    be->gelu_forward = cpu_gelu_forward;
    be->gelu_backward = cpu_gelu_backward;
    be->silu_forward = cpu_silu_forward;
    be->silu_backward = cpu_silu_backward;
    be->axpy = cpu_axpy;
    be->scale = cpu_scale;
    be->add_rows = cpu_add_rows;
    be->randn = cpu_randn;
}
