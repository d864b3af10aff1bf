/* diffusion.c — schedule tables in float64 and their respacing. */
#include "diffusion.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static double *diff_alloc(int T) { return calloc((size_t)T, sizeof(double)); }

/* Fills every derived table of s from s->betas. */
static void diffusion_derive(dt_schedule *s) {
    const int T = s->T;
    double prod = 1.0;
    for (int t = 0; t < T; t++) {
        prod *= 1.0 - s->betas[t];
        s->alphas_cumprod[t] = prod;
        s->alphas_cumprod_prev[t] = t ? s->alphas_cumprod[t - 1] : 1.0;
    }
    for (int t = 0; t < T; t++) {
        double ac = s->alphas_cumprod[t], acp = s->alphas_cumprod_prev[t], b = s->betas[t];
        s->posterior_variance[t] = b * (1.0 - acp) / (1.0 - ac);
        s->posterior_mean_coef1[t] = b * sqrt(acp) / (1.0 - ac);
        s->posterior_mean_coef2[t] = (1.0 - acp) * sqrt(1.0 - b) / (1.0 - ac);
    }
    /* The variance at t = 0 is 0; its log is clipped to the t = 1 value. */
    for (int t = 0; t < T; t++) {
        double v = (t == 0 && T > 1) ? s->posterior_variance[1] : s->posterior_variance[t];
        s->posterior_log_variance_clipped[t] = log(v);
    }
}

static int diffusion_alloc_tables(dt_schedule *s, int T) {
    memset(s, 0, sizeof *s);
    s->T = T;
    s->betas = diff_alloc(T);
    s->alphas_cumprod = diff_alloc(T);
    s->alphas_cumprod_prev = diff_alloc(T);
    s->posterior_variance = diff_alloc(T);
    s->posterior_log_variance_clipped = diff_alloc(T);
    s->posterior_mean_coef1 = diff_alloc(T);
    s->posterior_mean_coef2 = diff_alloc(T);
    s->timestep_map = calloc((size_t)T, sizeof(int));
    if (!s->betas || !s->alphas_cumprod || !s->alphas_cumprod_prev || !s->posterior_variance ||
        !s->posterior_log_variance_clipped || !s->posterior_mean_coef1 ||
        !s->posterior_mean_coef2 || !s->timestep_map) {
        diffusion_schedule_free(s);
        return -1;
    }
    return 0;
}

int diffusion_schedule_init(dt_schedule *s, int T) {
    if (T < 2 || diffusion_alloc_tables(s, T)) return -1;
    double scale = 1000.0 / T, start = scale * 1e-4, end = scale * 0.02;
    for (int t = 0; t < T; t++) {
        s->betas[t] = start + (end - start) * t / (T - 1);
        s->timestep_map[t] = t;
    }
    diffusion_derive(s);
    return 0;
}

int diffusion_schedule_respace(dt_schedule *out, const dt_schedule *base, int steps) {
    if (steps < 1 || steps > base->T) return -1;
    if (steps == 1) { /* a single step from the noise end */
        if (diffusion_alloc_tables(out, 1)) return -1;
        out->betas[0] = 1.0 - base->alphas_cumprod[base->T - 1];
        out->timestep_map[0] = base->T - 1;
        diffusion_derive(out);
        return 0;
    }
    if (diffusion_alloc_tables(out, steps)) return -1;
    /* Same float accumulation as the reference, so the kept indices match it exactly. */
    double stride = (double)(base->T - 1) / (double)(steps - 1), cur = 0.0;
    double last = 1.0;
    int k = 0, next = 0;
    for (int i = 0; i < steps; i++) {
        int want = (int)nearbyint(cur);
        cur += stride;
        for (; next <= want && next < base->T; next++) {
            if (next == want) {
                out->betas[k] = 1.0 - base->alphas_cumprod[next] / last;
                out->timestep_map[k] = next;
                last = base->alphas_cumprod[next];
                k++;
            }
        }
    }
    out->T = k;
    diffusion_derive(out);
    return 0;
}

void diffusion_schedule_free(dt_schedule *s) {
    free(s->betas);
    free(s->alphas_cumprod);
    free(s->alphas_cumprod_prev);
    free(s->posterior_variance);
    free(s->posterior_log_variance_clipped);
    free(s->posterior_mean_coef1);
    free(s->posterior_mean_coef2);
    free(s->timestep_map);
    memset(s, 0, sizeof *s);
}

/* Uploads f(t) for t < T as floats into a new backend array; NULL on failure. */
static float *diff_upload(dt_backend *be, const dt_schedule *s, int which, float *host) {
    for (int t = 0; t < s->T; t++) {
        double ac = s->alphas_cumprod[t], v;
        switch (which) {
        case 0: v = sqrt(ac); break;
        case 1: v = sqrt(1.0 - ac); break;
        case 2: v = sqrt(1.0 / ac); break;
        case 3: v = sqrt(1.0 / ac - 1.0); break;
        case 4: v = s->posterior_mean_coef1[t]; break;
        case 5: v = s->posterior_mean_coef2[t]; break;
        case 6: v = s->posterior_log_variance_clipped[t]; break;
        default: v = log(s->betas[t]); break;
        }
        host[t] = (float)v;
    }
    float *dev = be->alloc(be, sizeof(float) * (size_t)s->T);
    if (dev) be->upload(be, dev, host, sizeof(float) * (size_t)s->T);
    return dev;
}

int diffusion_tables_upload(dt_diffusion_tables *tab, const dt_schedule *s, dt_backend *be) {
    memset(tab, 0, sizeof *tab);
    float *host = malloc(sizeof(float) * (size_t)s->T);
    if (!host) return -1;
    tab->T = s->T;
    float **slots[] = {
        &tab->sqrt_alphas_cumprod, &tab->sqrt_one_minus_alphas_cumprod,
        &tab->sqrt_recip_alphas_cumprod, &tab->sqrt_recipm1_alphas_cumprod,
        &tab->posterior_mean_coef1, &tab->posterior_mean_coef2,
        &tab->posterior_log_variance_clipped, &tab->log_betas,
    };
    int ok = 1;
    for (int i = 0; i < 8; i++) {
        *slots[i] = diff_upload(be, s, i, host);
        ok = ok && *slots[i];
    }
    free(host);
    if (!ok) {
        diffusion_tables_free(tab, be);
        return -1;
    }
    return 0;
}

void diffusion_tables_free(dt_diffusion_tables *tab, dt_backend *be) {
    float *all[] = {tab->sqrt_alphas_cumprod, tab->sqrt_one_minus_alphas_cumprod,
                    tab->sqrt_recip_alphas_cumprod, tab->sqrt_recipm1_alphas_cumprod,
                    tab->posterior_mean_coef1, tab->posterior_mean_coef2,
                    tab->posterior_log_variance_clipped, tab->log_betas};
    for (int i = 0; i < 8; i++)
        if (all[i]) be->free(be, all[i]);
    memset(tab, 0, sizeof *tab);
}

dt_step_coefs diffusion_step_coefs(const dt_schedule *s, int i, double eta) {
    dt_step_coefs k;
    memset(&k, 0, sizeof k);
    double ac = s->alphas_cumprod[i], acp = s->alphas_cumprod_prev[i];
    k.sqrt_recip_ac = (float)sqrt(1.0 / ac);
    k.sqrt_recipm1_ac = (float)sqrt(1.0 / ac - 1.0);
    k.post_coef1 = (float)s->posterior_mean_coef1[i];
    k.post_coef2 = (float)s->posterior_mean_coef2[i];
    k.post_log_var = (float)s->posterior_log_variance_clipped[i];
    k.log_beta = (float)log(s->betas[i]);
    /* Fixed ("large") variance: beta_t, with the posterior variance at t = 1 for t = 0. */
    k.fixed_log_var = (float)log(i == 0 && s->T > 1 ? s->posterior_variance[1] : s->betas[i]);
    double sigma = eta * sqrt((1.0 - acp) / (1.0 - ac)) * sqrt(1.0 - ac / acp);
    k.ddim_sigma = (float)sigma;
    k.sqrt_ac_prev = (float)sqrt(acp);
    k.sqrt_1m_ac_prev = (float)sqrt(fmax(0.0, 1.0 - acp - sigma * sigma));
    k.add_noise = i > 0;
    return k;
}
