/* cuda_loss.cu — the DiT training loss per sample on the GPU: mse on eps plus, with learned
 * sigma, the variational bound term in bits per dimension (guided-diffusion's _vb_terms_bpd with
 * a detached eps). Same semantics as kernels/cpu/cpu_loss.c.
 *
 * Element math and sums are double, as on the CPU: the discretised Gaussian likelihood takes
 * the difference of two nearby CDF values and the KL subtracts nearly equal means, both of which
 * lose too many digits in float. The op is small (B*C*HW elements once per step), so double
 * costs little even on GPUs with slow fp64.
 *
 * One block per sample: its threads stride over the sample's C*HW elements in one pass (mse,
 * vb term, and both gradients), then a fixed-shape block reduction gives the loss. No atomics,
 * deterministic for a given launch shape.
 */
#include <math.h>

#include "cuda_internal.h"
#include "cuda_reduce.cuh"

#define CUDA_LOSS_THREADS 256
#define CUDA_LOSS_LN2 0.69314718055994530942
#define CUDA_LOSS_K 0.79788456080286535588 /* sqrt(2/pi) */
#define CUDA_LOSS_FLOOR 1e-12              /* probabilities are clamped here before log */

/* guided-diffusion's approx_standard_normal_cdf. */
static __device__ double cuda_loss_cdf(double x) {
    return 0.5 * (1.0 + tanh(CUDA_LOSS_K * (x + 0.044715 * x * x * x)));
}

/* Derivative of cuda_loss_cdf. */
static __device__ double cuda_loss_cdf_deriv(double x) {
    double th = tanh(CUDA_LOSS_K * (x + 0.044715 * x * x * x));
    return 0.5 * (1.0 - th * th) * CUDA_LOSS_K * (1.0 + 3.0 * 0.044715 * x * x);
}

/* -log P(x in its 2/255 bin) under N(mean, exp(log_scale)^2), edge bins open-ended at
 * |x| > 0.999; *dlog_scale = d(-log P)/d(log_scale). A clamped probability has zero gradient, as
 * in torch's clamp. */
static __device__ double cuda_loss_decoder_nll(double x, double mean, double log_scale,
                                               double *dlog_scale) {
    double inv_stdv = exp(-log_scale);
    double plus_in = inv_stdv * (x - mean + 1.0 / 255.0);
    double min_in = inv_stdv * (x - mean - 1.0 / 255.0);
    /* d(plus_in)/d(log_scale) = -plus_in, likewise for min_in */
    double dplus = -cuda_loss_cdf_deriv(plus_in) * plus_in;
    double dmin = -cuda_loss_cdf_deriv(min_in) * min_in;
    double prob, dprob;
    if (x < -0.999) {
        prob = cuda_loss_cdf(plus_in);
        dprob = dplus;
    } else if (x > 0.999) {
        prob = 1.0 - cuda_loss_cdf(min_in);
        dprob = -dmin;
    } else {
        prob = cuda_loss_cdf(plus_in) - cuda_loss_cdf(min_in);
        dprob = dplus - dmin;
    }
    if (prob < CUDA_LOSS_FLOOR) {
        *dlog_scale = 0.0;
        return -log(CUDA_LOSS_FLOOR);
    }
    *dlog_scale = -dprob / prob;
    return -log(prob);
}

/* Block b: loss[b] = mse [+ vb in bits/dim]; when dout is non-NULL, dout[b] (row floats) +=
 * weight[b] dloss_b/dmodel_out. n = C*HW; model_out rows are 2n floats when learn_sigma. A
 * timestep outside [0, T) (the CPU asserts) gives a NaN loss and no gradient. */
static __global__ void cuda_loss_kernel(float *loss, float *dout, const float *model_out,
                                        const float *x0, const float *xt, const float *eps,
                                        const int32_t *t, const float *weight,
                                        dt_diffusion_tables tab, size_t n, int learn_sigma) {
    __shared__ double red[32];
    const int b = blockIdx.x;
    const int tb = t[b];
    if (tb < 0 || tb >= tab.T) { /* uniform over the block: nobody reaches a barrier */
        if (threadIdx.x == 0) loss[b] = __int_as_float(0x7fc00000);
        return;
    }
    const size_t row = learn_sigma ? 2 * n : n;
    const float *eps_hat = model_out + (size_t)b * row;
    const float *v = eps_hat + n;
    const float *eps_b = eps + (size_t)b * n;
    const float *x0_b = x0 + (size_t)b * n, *xt_b = xt + (size_t)b * n;
    float *dout_b = dout ? dout + (size_t)b * row : NULL;
    const double w = dout ? (double)weight[b] : 0.0;
    const double g = 2.0 * w / (double)n;

    /* vb constants at t (see cpu_loss_vb) */
    double sr = 0.0, srm1 = 0.0, c1 = 0.0, c2 = 0.0, true_logvar = 0.0, log_beta = 0.0;
    double dlogvar_dv = 0.0, gscale = 0.0;
    if (learn_sigma) {
        sr = tab.sqrt_recip_alphas_cumprod[tb];
        srm1 = tab.sqrt_recipm1_alphas_cumprod[tb];
        c1 = tab.posterior_mean_coef1[tb];
        c2 = tab.posterior_mean_coef2[tb];
        true_logvar = tab.posterior_log_variance_clipped[tb];
        log_beta = tab.log_betas[tb];
        dlogvar_dv = 0.5 * (log_beta - true_logvar);
        gscale = w / ((double)n * CUDA_LOSS_LN2);
    }

    double sse = 0.0, vb_sum = 0.0;
    for (size_t i = threadIdx.x; i < n; i += blockDim.x) {
        const double d = (double)eps_hat[i] - eps_b[i];
        sse += d * d;
        if (dout_b) dout_b[i] += (float)(g * d);
        if (!learn_sigma) continue;
        const double xti = xt_b[i];
        const double pred_x0 = sr * xti - srm1 * eps_hat[i]; /* eps_hat detached */
        const double model_mean = c1 * pred_x0 + c2 * xti;
        const double frac = 0.5 * ((double)v[i] + 1.0);
        const double model_logvar = frac * log_beta + (1.0 - frac) * true_logvar;
        double term, dterm; /* dterm = d term / d model_logvar */
        if (tb > 0) {
            const double diff = c1 * x0_b[i] + c2 * xti - model_mean;
            const double ratio = exp(true_logvar - model_logvar);
            const double sq = diff * diff * exp(-model_logvar);
            term = 0.5 * (-1.0 + model_logvar - true_logvar + ratio + sq);
            dterm = 0.5 * (1.0 - ratio - sq);
        } else {
            double dlog_scale;
            term = cuda_loss_decoder_nll(x0_b[i], model_mean, 0.5 * model_logvar, &dlog_scale);
            dterm = 0.5 * dlog_scale;
        }
        vb_sum += term;
        if (dout_b) dout_b[n + i] += (float)(gscale * dterm * dlogvar_dv);
    }

    sse = cuda_block_sum(sse, red);
    if (learn_sigma) vb_sum = cuda_block_sum(vb_sum, red); /* uniform branch */
    if (threadIdx.x == 0) {
        const double vb = learn_sigma ? vb_sum / (double)n / CUDA_LOSS_LN2 : 0.0;
        loss[b] = (float)(sse / (double)n + vb);
    }
}

/* loss (B) = mse [+ vb]; dout (B,C_out,HW) += weight[b] dloss_b/dmodel_out when weight and dout
 * are non-NULL. x0, xt, eps (B,C,HW); model_out (B,C_out,HW), C_out = learn_sigma ? 2C : C;
 * t (B), weight (B) and the tables are device memory. */
static void cuda_loss_diffusion_loss(dt_backend *be, float *loss, float *dout,
                                     const float *model_out, const float *x0, const float *xt,
                                     const float *eps, const int32_t *t, const float *weight,
                                     const dt_diffusion_tables *tab, int B, int C, int HW,
                                     int learn_sigma) {
    CUDA_OP_BEGIN(be, cx);
    const size_t n = (size_t)C * HW;
    if (B <= 0 || n == 0) return;
    float *grad_out = weight ? dout : NULL; /* no weight: dout is not touched */
    cuda_loss_kernel<<<(unsigned)B, CUDA_LOSS_THREADS, 0, cx->stream>>>(
        loss, grad_out, model_out, x0, xt, eps, t, weight, *tab, n, learn_sigma);
    cuda_check_launch(cx, "diffusion_loss");
}

/* Installs diffusion_loss into `be`; called once by the CUDA backend's creator, touches no
 * other table entries. */
void cuda_loss_install(dt_backend *be) {
    be->diffusion_loss = cuda_loss_diffusion_loss;
}
