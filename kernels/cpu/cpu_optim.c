/* cpu_optim.c — optimiser-side ops: gradient norm, clipping, AdamW and the EMA of weights. */
#include <math.h>

#include "cpu_internal.h"

/* sum_squares splits x into this many contiguous chunks whatever the thread count, and adds the
 * chunk sums in order: the result is identical for any OMP_NUM_THREADS. */
#define CPU_OPTIM_CHUNKS 256

/* *out = sum x[i]^2 in double (8 interleaved accumulators per chunk, fixed order). */
static void cpu_sum_squares(dt_backend *be, float *out, const float *x, size_t n) {
    double part[CPU_OPTIM_CHUNKS];
    const size_t chunk = (n + CPU_OPTIM_CHUNKS - 1) / CPU_OPTIM_CHUNKS;
    #pragma omp parallel for schedule(static) if (n >= CPU_PAR_MIN)
    for (int c = 0; c < CPU_OPTIM_CHUNKS; c++) {
        size_t lo = (size_t)c * chunk, hi = lo + chunk < n ? lo + chunk : n;
        double acc[8] = {0};
        size_t i = lo;
        for (; i + 8 <= hi; i += 8)
            for (int j = 0; j < 8; j++) acc[j] += (double)x[i + j] * x[i + j];
        for (; i < hi; i++) acc[0] += (double)x[i] * x[i];
        part[c] = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    }
    double total = 0.0;
    for (int c = 0; c < CPU_OPTIM_CHUNKS; c++) total += part[c];
    *out = (float)total;
}

/* x *= min(1, max_norm / sqrt(*norm_sq)). A zero or non-finite norm leaves x unchanged. */
static void cpu_clip_by_norm(dt_backend *be, float *x, size_t n, const float *norm_sq,
                             float max_norm) {
    float norm = sqrtf(*norm_sq);
    if (!(norm > max_norm) || !isfinite(norm)) return;
    float s = max_norm / norm;
    #pragma omp parallel for schedule(static) if (n >= CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++) x[i] *= s;
}

/* AdamW, bias-corrected at 1-based `step`, decoupled decay applied to the old parameter:
 * p -= lr (mhat / (sqrt(vhat) + eps) + wd p). */
static void cpu_adamw_update(dt_backend *be, float *param, const float *grad, float *m, float *v,
                             size_t n, float lr, float beta1, float beta2, float eps,
                             float weight_decay, int step) {
    const float bc1 = (float)(1.0 - pow(beta1, step));
    const float bc2 = (float)(1.0 - pow(beta2, step));
    #pragma omp parallel for schedule(static) if (n >= CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float g = grad[i];
        float mi = beta1 * m[i] + (1.0f - beta1) * g;
        float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
        m[i] = mi;
        v[i] = vi;
        float mhat = mi / bc1, vhat = vi / bc2;
        param[i] -= lr * (mhat / (sqrtf(vhat) + eps) + weight_decay * param[i]);
    }
}

/* ema = decay * ema + (1 - decay) * param */
static void cpu_ema_update(dt_backend *be, float *ema, const float *param, size_t n, float decay) {
    const float rest = 1.0f - decay;
    #pragma omp parallel for schedule(static) if (n >= CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++) ema[i] = decay * ema[i] + rest * param[i];
}

/* Installs sum_squares, clip_by_norm, adamw_update and ema_update into `be`; called once by
 * dt_backend_cpu_create, touches no other table entries. */
void cpu_optim_install(dt_backend *be) {
    be->sum_squares = cpu_sum_squares;
    be->clip_by_norm = cpu_clip_by_norm;
    be->adamw_update = cpu_adamw_update;
    be->ema_update = cpu_ema_update;
}
