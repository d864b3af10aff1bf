/* cpu_image.c — image layers of the VAE around its convolutions: GroupNorm (optionally fused
 * with SiLU), nearest-neighbour 2x upsampling, and the batched transpose between NCHW planes and
 * token rows. Forward only. */
#include <assert.h>
#include <math.h>
#include <string.h>

#include "cpu_internal.h"

#define CPU_TRANSPOSE_TILE 32 /* square tiles: both the reads and the writes stay in cache lines */

/* out (B,C,HW) = (x - mean) * rstd * gamma[c] + beta[c] per (sample, group), statistics in
 * double over the group's C/G channels and HW (two passes, biased variance), then SiLU when silu
 * is set. A (sample, group) slab is contiguous and owned by one task, and its statistics are
 * complete before any element is written, so out may alias x. */
static void cpu_group_norm_forward(dt_backend *be, float *out, const float *x, const float *gamma,
                                   const float *beta, int B, int C, int HW, int G, float eps,
                                   int silu) {
    assert(G > 0 && C % G == 0);
    const int cg = C / G;
    const size_t n = (size_t)cg * HW;
    const long slabs = (long)B * G;
    #pragma omp parallel for schedule(static) if ((size_t)slabs * n >= CPU_PAR_MIN)
    for (long s = 0; s < slabs; s++) {
        const float *xs = x + (size_t)s * n;
        double sum = 0.0;
        for (size_t i = 0; i < n; i++) sum += xs[i];
        const double mu = sum / (double)n;
        double var = 0.0;
        for (size_t i = 0; i < n; i++) var += (xs[i] - mu) * (xs[i] - mu);
        const float m = (float)mu, rs = (float)(1.0 / sqrt(var / (double)n + (double)eps));
        float *os = out + (size_t)s * n;
        const int c0 = (int)(s % G) * cg;
        for (int c = 0; c < cg; c++) {
            const float ga = gamma[c0 + c], sh = beta[c0 + c];
            const float *xr = xs + (size_t)c * HW;
            float *orow = os + (size_t)c * HW;
            if (silu) {
                for (int i = 0; i < HW; i++) {
                    const float v = (xr[i] - m) * rs * ga + sh;
                    orow[i] = v / (1.0f + expf(-v));
                }
            } else {
                for (int i = 0; i < HW; i++) orow[i] = (xr[i] - m) * rs * ga + sh;
            }
        }
    }
}

/* out (B,C,2H,2W): out[b][c][y][x] = x[b][c][y/2][x/2]. */
static void cpu_upsample2x_forward(dt_backend *be, float *out, const float *x, int B, int C, int H,
                                   int W) {
    const long rows = (long)B * C * H;
    #pragma omp parallel for schedule(static) if ((size_t)rows * W >= CPU_PAR_MIN)
    for (long r = 0; r < rows; r++) {
        const float *src = x + (size_t)r * W;
        float *dst = out + (size_t)r * 4 * W; /* input row r -> output rows 2r and 2r + 1 */
        for (int i = 0; i < W; i++) dst[2 * i] = dst[2 * i + 1] = src[i];
        memcpy(dst + 2 * (size_t)W, dst, sizeof(float) * 2 * (size_t)W);
    }
}

/* out (B,C,R)[b][c][r] = x (B,R,C)[b][r][c], in square tiles. */
static void cpu_transpose(dt_backend *be, float *out, const float *x, int B, int R, int C) {
    const int T = CPU_TRANSPOSE_TILE;
    const int tr = (R + T - 1) / T, tc = (C + T - 1) / T;
    const long tasks = (long)B * tr;
    #pragma omp parallel for schedule(static) if ((size_t)B * R * C >= CPU_PAR_MIN)
    for (long task = 0; task < tasks; task++) {
        const int b = (int)(task / tr), r0 = (int)(task % tr) * T;
        const int r1 = r0 + T < R ? r0 + T : R;
        const float *xb = x + (size_t)b * R * C;
        float *ob = out + (size_t)b * R * C;
        for (int t = 0; t < tc; t++) {
            const int c0 = t * T, c1 = c0 + T < C ? c0 + T : C;
            for (int c = c0; c < c1; c++)
                for (int r = r0; r < r1; r++) ob[(size_t)c * R + r] = xb[(size_t)r * C + c];
        }
    }
}

/* Installs group_norm_forward, upsample2x_forward and transpose into `be`; called once by
 * dt_backend_cpu_create, touches no other table entries. */
void cpu_image_install(dt_backend *be) {
    be->group_norm_forward = cpu_group_norm_forward;
    be->upsample2x_forward = cpu_upsample2x_forward;
    be->transpose = cpu_transpose;
}
