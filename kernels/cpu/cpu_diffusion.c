/* cpu_diffusion.c — forward noising, classifier-free guidance and the reverse (sampling) steps.
 * Sampling arithmetic is float, like the PyTorch reference; no clipping of x0 anywhere. */
#include <assert.h>
#include <math.h>

#include "cpu_internal.h"

/* xt (B,CHW) = sqrt(abar[t_b]) x0 + sqrt(1 - abar[t_b]) eps. */
static void cpu_q_sample(dt_backend *be, float *xt, const float *x0, const float *eps,
                         const int32_t *t, const dt_diffusion_tables *tab, int B, int CHW) {
    #pragma omp parallel for schedule(static) if ((size_t)B * CHW >= CPU_PAR_MIN)
    for (int b = 0; b < B; b++) {
        assert(t[b] >= 0 && t[b] < tab->T);
        float a = tab->sqrt_alphas_cumprod[t[b]];
        float s = tab->sqrt_one_minus_alphas_cumprod[t[b]];
        size_t off = (size_t)b * CHW;
        for (int i = 0; i < CHW; i++) xt[off + i] = a * x0[off + i] + s * eps[off + i];
    }
}

/* out (B,C_out,HW): channels < C are eps_u + s (eps_c - eps_u), the rest copied from the
 * conditional half; model_out (2B,C_out,HW) holds [cond; uncond]. */
static void cpu_cfg_combine(dt_backend *be, float *out, const float *model_out, float s, int B,
                            int C, int C_out, int HW) {
    const size_t row = (size_t)C_out * HW, eps_len = (size_t)C * HW;
    #pragma omp parallel for schedule(static) if ((size_t)B * row >= CPU_PAR_MIN)
    for (int b = 0; b < B; b++) {
        const float *cond = model_out + (size_t)b * row;
        const float *uncond = model_out + (size_t)(B + b) * row;
        float *o = out + (size_t)b * row;
        for (size_t i = 0; i < eps_len; i++) o[i] = uncond[i] + s * (cond[i] - uncond[i]);
        for (size_t i = eps_len; i < row; i++) o[i] = cond[i];
    }
}

/* x (B,C,HW) <- posterior mean of the predicted x0 plus (unless last) sigma * noise, where the
 * log variance is learned (v channels of model_out (B,2C,HW)) or fixed. */
static void cpu_ddpm_step(dt_backend *be, float *x, const float *model_out, const float *noise,
                          const dt_step_coefs *k, int B, int C, int HW, int learn_sigma) {
    const int C_out = learn_sigma ? 2 * C : C;
    const size_t plane = (size_t)C * HW;
    const dt_step_coefs kc = *k;
    #pragma omp parallel for schedule(static) if ((size_t)B * plane >= CPU_PAR_MIN)
    for (int b = 0; b < B; b++) {
        const float *eps = model_out + (size_t)b * C_out * HW;
        float *xb = x + (size_t)b * plane;
        for (size_t i = 0; i < plane; i++) {
            float xi = xb[i];
            float pred_x0 = kc.sqrt_recip_ac * xi - kc.sqrt_recipm1_ac * eps[i];
            if (kc.clip_x0) pred_x0 = fminf(1.0f, fmaxf(-1.0f, pred_x0));
            float mean = kc.post_coef1 * pred_x0 + kc.post_coef2 * xi;
            if (kc.add_noise) {
                float logvar = kc.fixed_log_var;
                if (learn_sigma) {
                    float frac = 0.5f * (eps[plane + i] + 1.0f);
                    logvar = frac * kc.log_beta + (1.0f - frac) * kc.post_log_var;
                }
                mean += expf(0.5f * logvar) * noise[(size_t)b * plane + i];
            }
            xb[i] = mean;
        }
    }
}

/* x (B,C,HW) <- sqrt(abar_prev) pred_x0 + dir * eps (+ sigma * noise when sigma > 0), eps from
 * the first C channels of model_out (B,C_out,HW), C_out = learn_sigma ? 2C : C. */
static void cpu_ddim_step(dt_backend *be, float *x, const float *model_out, const float *noise,
                          const dt_step_coefs *k, int B, int C, int HW, int learn_sigma) {
    const int C_out = learn_sigma ? 2 * C : C;
    const size_t plane = (size_t)C * HW;
    const dt_step_coefs kc = *k;
    const int use_noise = kc.ddim_sigma > 0.0f;
    #pragma omp parallel for schedule(static) if ((size_t)B * plane >= CPU_PAR_MIN)
    for (int b = 0; b < B; b++) {
        const float *eps = model_out + (size_t)b * C_out * HW;
        float *xb = x + (size_t)b * plane;
        const float *nb = use_noise ? noise + (size_t)b * plane : NULL;
        for (size_t i = 0; i < plane; i++) {
            float e = eps[i];
            float pred_x0 = kc.sqrt_recip_ac * xb[i] - kc.sqrt_recipm1_ac * e;
            if (kc.clip_x0) {
                pred_x0 = fminf(1.0f, fmaxf(-1.0f, pred_x0));
                e = (kc.sqrt_recip_ac * xb[i] - pred_x0) / kc.sqrt_recipm1_ac;
            }
            float xn = kc.sqrt_ac_prev * pred_x0 + kc.sqrt_1m_ac_prev * e;
            if (use_noise) xn += kc.ddim_sigma * nb[i];
            xb[i] = xn;
        }
    }
}

/* Installs q_sample, cfg_combine, ddpm_step and ddim_step into `be`; called once by
 * dt_backend_cpu_create, touches no other table entries. */
void cpu_diffusion_install(dt_backend *be) {
    be->q_sample = cpu_q_sample;
    be->cfg_combine = cpu_cfg_combine;
    be->ddpm_step = cpu_ddpm_step;
    be->ddim_step = cpu_ddim_step;
}
