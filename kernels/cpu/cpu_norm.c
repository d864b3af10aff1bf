/* cpu_norm.c — adaLN pieces: LayerNorm (no affine, eps 1e-6) fused with the shift/scale
 * modulation, and the gated residual add. Modulation rows are read at `mod_stride` so chunks of
 * one (B, k*D) adaLN tensor are used in place.
 *
 * Gradients of per-sample modulation vectors (sums over the N tokens) are computed by tasks that
 * each own a (b, block of D) range and sum tokens in order: deterministic, no atomics.
 */
#include <math.h>

#include "cpu_internal.h"

#define CPU_NORM_EPS 1e-6
#define CPU_NORM_COLS 64 /* hidden units per modulation-gradient task */

/* out (B,N,D) = (x - mean) * rstd * (1 + scale[b]) + shift[b]; mean, rstd (B*N) saved. Row
 * statistics in double, biased variance. */
static void cpu_ln_modulate_forward(dt_backend *be, float *out, float *mean, float *rstd,
                                    const float *x, const float *shift, const float *scale,
                                    int B, int N, int D, int mod_stride) {
    long rows = (long)B * N;
    #pragma omp parallel for schedule(static) if ((size_t)rows * D >= CPU_PAR_MIN)
    for (long r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * D;
        const float *sh = shift + (size_t)(r / N) * mod_stride;
        const float *sc = scale + (size_t)(r / N) * mod_stride;
        double sum = 0.0;
        for (int d = 0; d < D; d++) sum += xr[d];
        double mu = sum / D, var = 0.0;
        for (int d = 0; d < D; d++) var += (xr[d] - mu) * (xr[d] - mu);
        float m = (float)mu, rs = (float)(1.0 / sqrt(var / D + CPU_NORM_EPS));
        mean[r] = m;
        rstd[r] = rs;
        float *o = out + (size_t)r * D;
        for (int d = 0; d < D; d++) o[d] = (xr[d] - m) * rs * (1.0f + sc[d]) + sh[d];
    }
}

/* dshift[b], dscale[b] (D at mod_stride) += sum over tokens of dout and dout * xhat. */
static void cpu_ln_modulate_dmod(float *dshift, float *dscale, const float *dout, const float *x,
                                 const float *mean, const float *rstd, int B, int N, int D,
                                 int mod_stride) {
    int blocks = (D + CPU_NORM_COLS - 1) / CPU_NORM_COLS;
    #pragma omp parallel for collapse(2) schedule(static) if ((size_t)B * N * D >= CPU_PAR_MIN)
    for (int b = 0; b < B; b++) {
        for (int blk = 0; blk < blocks; blk++) {
            int d0 = blk * CPU_NORM_COLS;
            int nd = D - d0 < CPU_NORM_COLS ? D - d0 : CPU_NORM_COLS;
            double acc_shift[CPU_NORM_COLS] = {0}, acc_scale[CPU_NORM_COLS] = {0};
            for (int n = 0; n < N; n++) {
                size_t r = (size_t)b * N + n;
                const float *g = dout + r * D + d0, *xr = x + r * D + d0;
                for (int j = 0; j < nd; j++) {
                    acc_shift[j] += g[j];
                    acc_scale[j] += g[j] * ((xr[j] - mean[r]) * rstd[r]);
                }
            }
            for (int j = 0; j < nd; j++) {
                dshift[(size_t)b * mod_stride + d0 + j] += (float)acc_shift[j];
                dscale[(size_t)b * mod_stride + d0 + j] += (float)acc_scale[j];
            }
        }
    }
}

/* dx (B,N,D) += LayerNorm backward of g = dout * (1 + scale[b]):
 * dx = rstd * (g - mean(g) - xhat * mean(g * xhat)); dshift, dscale (at mod_stride) += sums. */
static void cpu_ln_modulate_backward(dt_backend *be, float *dx, float *dshift, float *dscale,
                                     const float *dout, const float *x, const float *mean,
                                     const float *rstd, const float *scale,
                                     int B, int N, int D, int mod_stride) {
    long rows = (long)B * N;
    #pragma omp parallel for schedule(static) if ((size_t)rows * D >= CPU_PAR_MIN)
    for (long r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * D, *gr = dout + (size_t)r * D;
        const float *sc = scale + (size_t)(r / N) * mod_stride;
        float m = mean[r], rs = rstd[r];
        double sum_g = 0.0, sum_gx = 0.0;
        for (int d = 0; d < D; d++) {
            float g = gr[d] * (1.0f + sc[d]);
            sum_g += g;
            sum_gx += g * ((xr[d] - m) * rs);
        }
        float mean_g = (float)(sum_g / D), mean_gx = (float)(sum_gx / D);
        float *dxr = dx + (size_t)r * D;
        for (int d = 0; d < D; d++) {
            float g = gr[d] * (1.0f + sc[d]);
            dxr[d] += rs * (g - mean_g - (xr[d] - m) * rs * mean_gx);
        }
    }
    cpu_ln_modulate_dmod(dshift, dscale, dout, x, mean, rstd, B, N, D, mod_stride);
}

/* out (B,N,D) = res + gate[b] * y; out may alias res (element-wise, read before write). */
static void cpu_gate_residual_forward(dt_backend *be, float *out, const float *res, const float *y,
                                      const float *gate, int B, int N, int D, int mod_stride) {
    long rows = (long)B * N;
    #pragma omp parallel for schedule(static) if ((size_t)rows * D >= CPU_PAR_MIN)
    for (long r = 0; r < rows; r++) {
        const float *g = gate + (size_t)(r / N) * mod_stride;
        const float *rr = res + (size_t)r * D, *yr = y + (size_t)r * D;
        float *o = out + (size_t)r * D;
        for (int d = 0; d < D; d++) o[d] = rr[d] + g[d] * yr[d];
    }
}

/* dres += dout (skipped when NULL); dy += gate[b] * dout; dgate[b] += sum_n dout * y. */
static void cpu_gate_residual_backward(dt_backend *be, float *dres, float *dy, float *dgate,
                                       const float *dout, const float *y, const float *gate,
                                       int B, int N, int D, int mod_stride) {
    long rows = (long)B * N;
    #pragma omp parallel for schedule(static) if ((size_t)rows * D >= CPU_PAR_MIN)
    for (long r = 0; r < rows; r++) {
        const float *g = gate + (size_t)(r / N) * mod_stride;
        const float *dr = dout + (size_t)r * D;
        float *dyr = dy + (size_t)r * D;
        for (int d = 0; d < D; d++) dyr[d] += g[d] * dr[d];
        if (dres) {
            float *dres_r = dres + (size_t)r * D;
            for (int d = 0; d < D; d++) dres_r[d] += dr[d];
        }
    }
    int blocks = (D + CPU_NORM_COLS - 1) / CPU_NORM_COLS;
    #pragma omp parallel for collapse(2) schedule(static) if ((size_t)rows * D >= CPU_PAR_MIN)
    for (int b = 0; b < B; b++) {
        for (int blk = 0; blk < blocks; blk++) {
            int d0 = blk * CPU_NORM_COLS;
            int nd = D - d0 < CPU_NORM_COLS ? D - d0 : CPU_NORM_COLS;
            double acc[CPU_NORM_COLS] = {0};
            for (int n = 0; n < N; n++) {
                size_t off = ((size_t)b * N + n) * D + d0;
                for (int j = 0; j < nd; j++) acc[j] += dout[off + j] * y[off + j];
            }
            for (int j = 0; j < nd; j++) dgate[(size_t)b * mod_stride + d0 + j] += (float)acc[j];
        }
    }
}

/* Installs ln_modulate_* and gate_residual_* into `be`; called once by
 * dt_backend_cpu_create, touches no other table entries. */
void cpu_norm_install(dt_backend *be) {
    be->ln_modulate_forward = cpu_ln_modulate_forward;
    be->ln_modulate_backward = cpu_ln_modulate_backward;
    be->gate_residual_forward = cpu_gate_residual_forward;
    be->gate_residual_backward = cpu_gate_residual_backward;
}
