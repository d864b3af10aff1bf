/* cuda_diffusion.cu — forward noising, classifier-free guidance and the reverse (sampling) steps
 * on the GPU; same float formulas, in the same operation order, as kernels/cpu/cpu_diffusion.c.
 *
 * All four ops are element-wise within a sample: grid y runs over samples and grid x over one
 * sample's elements, both strided, so no thread divides an index. The per-timestep tables
 * (dt_diffusion_tables) hold device pointers and are passed to kernels by value; the host-side
 * step coefficients (dt_step_coefs) are copied into the kernel arguments, so no op waits on the
 * host or uploads anything.
 */
#include <math.h>

#include "cuda_internal.h"

/* xt[b] = sqrt(abar[t_b]) x0[b] + sqrt(1 - abar[t_b]) eps[b]. A timestep outside [0, T) (the CPU
 * asserts) poisons the sample with NaN rather than reading outside the tables. */
static __global__ void cuda_diffusion_q_sample_kernel(float *xt, const float *x0, const float *eps,
                                                      const int32_t *t, dt_diffusion_tables tab,
                                                      int B, size_t CHW) {
    for (int b = blockIdx.y; b < B; b += gridDim.y) {
        const int32_t tb = t[b];
        const int valid = tb >= 0 && tb < tab.T;
        const float a = valid ? tab.sqrt_alphas_cumprod[tb] : __int_as_float(0x7fc00000);
        const float s = valid ? tab.sqrt_one_minus_alphas_cumprod[tb] : 0.0f;
        const size_t off = (size_t)b * CHW;
        for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < CHW;
             i += (size_t)gridDim.x * blockDim.x)
            xt[off + i] = a * x0[off + i] + s * eps[off + i];
    }
}

/* out[b] (C_out*HW): the first C*HW values eps_u + s (eps_c - eps_u), the rest copied from the
 * conditional half; model_out (2B, C_out, HW) is [cond; uncond]. */
static __global__ void cuda_diffusion_cfg_kernel(float *out, const float *model_out, float s, int B,
                                                 size_t row, size_t eps_len) {
    for (int b = blockIdx.y; b < B; b += gridDim.y) {
        const float *cond = model_out + (size_t)b * row;
        const float *uncond = model_out + (size_t)(B + b) * row;
        float *o = out + (size_t)b * row;
        for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < row;
             i += (size_t)gridDim.x * blockDim.x)
            o[i] = i < eps_len ? uncond[i] + s * (cond[i] - uncond[i]) : cond[i];
    }
}

/* x[b] <- posterior mean of the predicted x0 (clamped to [-1, 1] when k.clip_x0) plus, unless
 * the last step, exp(logvar / 2) * noise with logvar learned (v channels) or fixed. noise is
 * read only when k.add_noise. */
static __global__ void cuda_diffusion_ddpm_kernel(float *x, const float *model_out,
                                                  const float *noise, dt_step_coefs k, int B,
                                                  size_t plane, int learn_sigma) {
    const size_t row = learn_sigma ? 2 * plane : plane; /* model_out floats per sample */
    for (int b = blockIdx.y; b < B; b += gridDim.y) {
        const float *eps = model_out + (size_t)b * row;
        float *xb = x + (size_t)b * plane;
        for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < plane;
             i += (size_t)gridDim.x * blockDim.x) {
            float xi = xb[i];
            float pred_x0 = k.sqrt_recip_ac * xi - k.sqrt_recipm1_ac * eps[i];
            if (k.clip_x0) pred_x0 = fminf(1.0f, fmaxf(-1.0f, pred_x0));
            float mean = k.post_coef1 * pred_x0 + k.post_coef2 * xi;
            if (k.add_noise) {
                float logvar = k.fixed_log_var;
                if (learn_sigma) {
                    float frac = 0.5f * (eps[plane + i] + 1.0f);
                    logvar = frac * k.log_beta + (1.0f - frac) * k.post_log_var;
                }
                mean += expf(0.5f * logvar) * noise[(size_t)b * plane + i];
            }
            xb[i] = mean;
        }
    }
}

/* x[b] <- sqrt(abar_prev) pred_x0 + dir * eps (+ sigma * noise when sigma > 0). With clip_x0
 * the clamped x0 re-derives eps, as ADM does. noise is read only when k.ddim_sigma > 0. */
static __global__ void cuda_diffusion_ddim_kernel(float *x, const float *model_out,
                                                  const float *noise, dt_step_coefs k, int B,
                                                  size_t plane, int learn_sigma) {
    const size_t row = learn_sigma ? 2 * plane : plane;
    const int use_noise = k.ddim_sigma > 0.0f;
    for (int b = blockIdx.y; b < B; b += gridDim.y) {
        const float *eps = model_out + (size_t)b * row;
        float *xb = x + (size_t)b * plane;
        for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < plane;
             i += (size_t)gridDim.x * blockDim.x) {
            float e = eps[i];
            float pred_x0 = k.sqrt_recip_ac * xb[i] - k.sqrt_recipm1_ac * e;
            if (k.clip_x0) {
                pred_x0 = fminf(1.0f, fmaxf(-1.0f, pred_x0));
                e = (k.sqrt_recip_ac * xb[i] - pred_x0) / k.sqrt_recipm1_ac;
            }
            float xn = k.sqrt_ac_prev * pred_x0 + k.sqrt_1m_ac_prev * e;
            if (use_noise) xn += k.ddim_sigma * noise[(size_t)b * plane + i];
            xb[i] = xn;
        }
    }
}

/* xt (B,CHW) = sqrt(abar[t_b]) x0 + sqrt(1 - abar[t_b]) eps; t (B) and the tables are device
 * memory. */
static void cuda_diffusion_q_sample(dt_backend *be, float *xt, const float *x0, const float *eps,
                                    const int32_t *t, const dt_diffusion_tables *tab, int B,
                                    int CHW) {
    CUDA_OP_BEGIN(be, cx);
    if (B <= 0 || CHW <= 0) return;
    cuda_diffusion_q_sample_kernel<<<cuda_sample_grid(B, (size_t)CHW), CUDA_THREADS, 0,
                                     cx->stream>>>(xt, x0, eps, t, *tab, B, (size_t)CHW);
    cuda_check_launch(cx, "q_sample");
}

/* out (B,C_out,HW) = guidance-combined eps channels + conditional extra channels of the
 * [cond; uncond] model_out (2B,C_out,HW). */
static void cuda_diffusion_cfg_combine(dt_backend *be, float *out, const float *model_out, float s,
                                       int B, int C, int C_out, int HW) {
    CUDA_OP_BEGIN(be, cx);
    const size_t row = (size_t)C_out * HW, eps_len = (size_t)C * HW;
    if (B <= 0 || row == 0) return;
    cuda_diffusion_cfg_kernel<<<cuda_sample_grid(B, row), CUDA_THREADS, 0, cx->stream>>>(
        out, model_out, s, B, row, eps_len);
    cuda_check_launch(cx, "cfg_combine");
}

/* One DDPM ancestral step in place on x (B,C,HW) from model_out (B,C_out,HW) and noise (B,C,HW);
 * `k` is host memory, copied into the launch. */
static void cuda_diffusion_ddpm_step(dt_backend *be, float *x, const float *model_out,
                                     const float *noise, const dt_step_coefs *k, int B, int C,
                                     int HW, int learn_sigma) {
    CUDA_OP_BEGIN(be, cx);
    const size_t plane = (size_t)C * HW;
    if (B <= 0 || plane == 0) return;
    cuda_diffusion_ddpm_kernel<<<cuda_sample_grid(B, plane), CUDA_THREADS, 0, cx->stream>>>(
        x, model_out, noise, *k, B, plane, learn_sigma);
    cuda_check_launch(cx, "ddpm_step");
}

/* One DDIM step in place on x (B,C,HW) from the eps channels of model_out (B,C_out,HW); `k` is
 * host memory, copied into the launch. */
static void cuda_diffusion_ddim_step(dt_backend *be, float *x, const float *model_out,
                                     const float *noise, const dt_step_coefs *k, int B, int C,
                                     int HW, int learn_sigma) {
    CUDA_OP_BEGIN(be, cx);
    const size_t plane = (size_t)C * HW;
    if (B <= 0 || plane == 0) return;
    cuda_diffusion_ddim_kernel<<<cuda_sample_grid(B, plane), CUDA_THREADS, 0, cx->stream>>>(
        x, model_out, noise, *k, B, plane, learn_sigma);
    cuda_check_launch(cx, "ddim_step");
}

/* Installs q_sample, cfg_combine, ddpm_step and ddim_step into `be`; called once by the CUDA
 * backend's creator, touches no other table entries. */
void cuda_diffusion_install(dt_backend *be) {
    be->q_sample = cuda_diffusion_q_sample;
    be->cfg_combine = cuda_diffusion_cfg_combine;
    be->ddpm_step = cuda_diffusion_ddpm_step;
    be->ddim_step = cuda_diffusion_ddim_step;
}
