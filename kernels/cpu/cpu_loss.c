/* cpu_loss.c — the DiT training loss per sample: mse on eps plus, with learned sigma, the
 * variational bound term in bits per dimension (guided-diffusion's _vb_terms_bpd with a
 * detached eps). Element math and reductions are double; one sample per OpenMP task.
 */
#include <assert.h>
#include <math.h>

#include "cpu_internal.h"

#define CPU_LOSS_LN2 0.69314718055994530942
#define CPU_LOSS_K 0.79788456080286535588 /* sqrt(2/pi) */
#define CPU_LOSS_FLOOR 1e-12              /* probabilities are clamped here before log */

/* guided-diffusion's approx_standard_normal_cdf and its derivative. */
static double cpu_loss_cdf(double x) {
    return 0.5 * (1.0 + tanh(CPU_LOSS_K * (x + 0.044715 * x * x * x)));
}

static double cpu_loss_cdf_deriv(double x) {
    double th = tanh(CPU_LOSS_K * (x + 0.044715 * x * x * x));
    return 0.5 * (1.0 - th * th) * CPU_LOSS_K * (1.0 + 3.0 * 0.044715 * x * x);
}

/* -log P(x in its 2/255 bin) under N(mean, exp(log_scale)^2) (discretized_gaussian_log_likelihood,
 * edge bins open-ended at |x| > 0.999); *dlog_scale = d(-log P)/d(log_scale). A clamped
 * probability has zero gradient, as in torch's clamp. */
static double cpu_loss_decoder_nll(double x, double mean, double log_scale, double *dlog_scale) {
    double inv_stdv = exp(-log_scale);
    double plus_in = inv_stdv * (x - mean + 1.0 / 255.0);
    double min_in = inv_stdv * (x - mean - 1.0 / 255.0);
    /* d(plus_in)/d(log_scale) = -plus_in, likewise for min_in */
    double dplus = -cpu_loss_cdf_deriv(plus_in) * plus_in;
    double dmin = -cpu_loss_cdf_deriv(min_in) * min_in;
    double prob, dprob;
    if (x < -0.999) {
        prob = cpu_loss_cdf(plus_in);
        dprob = dplus;
    } else if (x > 0.999) {
        prob = 1.0 - cpu_loss_cdf(min_in);
        dprob = -dmin;
    } else {
        prob = cpu_loss_cdf(plus_in) - cpu_loss_cdf(min_in);
        dprob = dplus - dmin;
    }
    if (prob < CPU_LOSS_FLOOR) {
        *dlog_scale = 0.0;
        return -log(CPU_LOSS_FLOOR);
    }
    *dlog_scale = -dprob / prob;
    return -log(prob);
}

/* vb of one sample in bits per dim; dv (C*HW, may be NULL) += gscale * dvb_sum/dv where vb_sum
 * is the sum over elements in nats. Tables are indexed at t. */
static double cpu_loss_vb(const float *eps_hat, const float *v, const float *x0, const float *xt,
                          int t, const dt_diffusion_tables *tab, size_t n, float *dv,
                          double gscale) {
    const double sr = tab->sqrt_recip_alphas_cumprod[t];
    const double srm1 = tab->sqrt_recipm1_alphas_cumprod[t];
    const double c1 = tab->posterior_mean_coef1[t], c2 = tab->posterior_mean_coef2[t];
    const double true_logvar = tab->posterior_log_variance_clipped[t];
    const double log_beta = tab->log_betas[t];
    const double dlogvar_dv = 0.5 * (log_beta - true_logvar);
    double sum = 0.0;
    for (size_t i = 0; i < n; i++) {
        double xti = xt[i];
        double pred_x0 = sr * xti - srm1 * eps_hat[i]; /* eps_hat detached */
        double model_mean = c1 * pred_x0 + c2 * xti;
        double frac = 0.5 * ((double)v[i] + 1.0);
        double model_logvar = frac * log_beta + (1.0 - frac) * true_logvar;
        double term, dterm; /* dterm = d term / d model_logvar */
        if (t > 0) {
            double diff = c1 * x0[i] + c2 * xti - model_mean;
            double ratio = exp(true_logvar - model_logvar);
            double sq = diff * diff * exp(-model_logvar);
            term = 0.5 * (-1.0 + model_logvar - true_logvar + ratio + sq);
            dterm = 0.5 * (1.0 - ratio - sq);
        } else {
            double dlog_scale;
            term = cpu_loss_decoder_nll(x0[i], model_mean, 0.5 * model_logvar, &dlog_scale);
            dterm = 0.5 * dlog_scale;
        }
        sum += term;
        if (dv) dv[i] += (float)(gscale * dterm * dlogvar_dv);
    }
    return sum / (double)n / CPU_LOSS_LN2;
}

/* loss (B) = mse [+ vb]; dout (B,C_out,HW) += weight[b] dloss_b/dmodel_out when weight and dout
 * are non-NULL. x0, xt, eps (B,C,HW); model_out (B,C_out,HW), C_out = learn_sigma ? 2C : C. */
static void cpu_diffusion_loss(dt_backend *be, float *loss, float *dout, const float *model_out,
                               const float *x0, const float *xt, const float *eps,
                               const int32_t *t, const float *weight,
                               const dt_diffusion_tables *tab, int B, int C, int HW,
                               int learn_sigma) {
    const size_t n = (size_t)C * HW, row = learn_sigma ? 2 * n : n;
    const int grad = weight && dout;
    #pragma omp parallel for schedule(static) if ((size_t)B * row >= 2048)
    for (int b = 0; b < B; b++) {
        assert(t[b] >= 0 && t[b] < tab->T);
        const float *eps_hat = model_out + (size_t)b * row;
        const float *eps_b = eps + (size_t)b * n;
        float *dout_b = grad ? dout + (size_t)b * row : NULL;
        double sse = 0.0;
        for (size_t i = 0; i < n; i++) {
            double d = (double)eps_hat[i] - eps_b[i];
            sse += d * d;
        }
        if (grad) {
            double g = 2.0 * weight[b] / (double)n;
            for (size_t i = 0; i < n; i++)
                dout_b[i] += (float)(g * ((double)eps_hat[i] - eps_b[i]));
        }
        double vb = 0.0;
        if (learn_sigma) {
            double gscale = grad ? weight[b] / ((double)n * CPU_LOSS_LN2) : 0.0;
            vb = cpu_loss_vb(eps_hat, eps_hat + n, x0 + (size_t)b * n, xt + (size_t)b * n, t[b],
                             tab, n, grad ? dout_b + n : NULL, gscale);
        }
        loss[b] = (float)(sse / (double)n + vb);
    }
}

/* Installs diffusion_loss into `be`; called once by
 * dt_backend_cpu_create, touches no other table entries. */
void cpu_loss_install(dt_backend *be) {
    be->diffusion_loss = cpu_diffusion_loss;
}
