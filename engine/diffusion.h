/* diffusion.h — the Gaussian diffusion of DiT: linear beta schedule, float64 tables, respaced
 * sampling chains, and the per-step coefficients the backends' sampler ops consume. */
#ifndef DT_DIFFUSION_H
#define DT_DIFFUSION_H

#include <stddef.h>
#include "backend.h"

#define DT_DIFFUSION_T 1000

/* All tables have length T and are float64, as in the reference. */
typedef struct {
    int T;
    double *betas, *alphas_cumprod, *alphas_cumprod_prev;
    double *posterior_variance, *posterior_log_variance_clipped;
    double *posterior_mean_coef1, *posterior_mean_coef2;
    int *timestep_map; /* original timestep of each entry (identity unless respaced) */
} dt_schedule;

/* The training schedule: T steps, betas = linspace(1e-4, 0.02, T) scaled by 1000/T.
 * Returns 0, or -1 when out of memory. Free with diffusion_schedule_free. */
int diffusion_schedule_init(dt_schedule *s, int T);
/* A sampling chain of `steps` entries keeping t_k = round(k (T-1)/(steps-1)) of base, with betas
 * recomputed from alpha_bar on that subset (the reference's space_timesteps). */
int diffusion_schedule_respace(dt_schedule *out, const dt_schedule *base, int steps);
void diffusion_schedule_free(dt_schedule *s);

/* Uploads the per-timestep float tables the loss ops need. Returns 0 or -1 (out of memory). */
int diffusion_tables_upload(dt_diffusion_tables *tab, const dt_schedule *s, dt_backend *be);
void diffusion_tables_free(dt_diffusion_tables *tab, dt_backend *be);

/* Coefficients of reverse step i (0 = the last, at the data end) of chain s.
 * DDIM uses eta (0 = deterministic); add_noise is 0 for i == 0. */
dt_step_coefs diffusion_step_coefs(const dt_schedule *s, int i, double eta);

#endif
