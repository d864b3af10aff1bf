#!/usr/bin/env python3
"""Independent float64 reference of the DiT training loss, for tests/test_ops.c.

Follows guided-diffusion / DiT (gaussian_diffusion.py: training_losses with LossType.MSE,
ModelVarType.LEARNED_RANGE, ModelMeanType.EPSILON; losses.py: normal_kl,
approx_standard_normal_cdf, discretized_gaussian_log_likelihood) element by element, with its
own schedule tables (betas = linspace(1e-4, 0.02, 1000)). Pure Python floats (IEEE double), so
it needs nothing beyond the standard library.

Usage: ref_diffusion_loss.py CASE_FILE. The file holds whitespace-separated numbers:
B C HW learn_sigma, then t (B ints), model_out (B*C_out*HW), x0, xt, eps (B*C*HW each), all
arrays row-major (B, channels, HW). Prints one loss per sample, one per line.
"""
import math
import sys

T = 1000


def linspace(start, stop, num):
    step = (stop - start) / (num - 1)
    return [start + i * step if i < num - 1 else stop for i in range(num)]


def schedule():
    betas = linspace(1e-4, 0.02, T)
    alphas_cumprod, prod = [], 1.0
    for b in betas:
        prod *= 1.0 - b
        alphas_cumprod.append(prod)
    alphas_cumprod_prev = [1.0] + alphas_cumprod[:-1]
    post_var = [betas[t] * (1.0 - alphas_cumprod_prev[t]) / (1.0 - alphas_cumprod[t])
                for t in range(T)]
    post_log_var_clipped = [math.log(v) for v in [post_var[1]] + post_var[1:]]
    return {
        "betas": betas,
        "sqrt_recip_alphas_cumprod": [math.sqrt(1.0 / a) for a in alphas_cumprod],
        "sqrt_recipm1_alphas_cumprod": [math.sqrt(1.0 / a - 1.0) for a in alphas_cumprod],
        "posterior_mean_coef1": [betas[t] * math.sqrt(alphas_cumprod_prev[t]) / (1.0 - alphas_cumprod[t])
                                 for t in range(T)],
        "posterior_mean_coef2": [(1.0 - alphas_cumprod_prev[t]) * math.sqrt(1.0 - betas[t]) /
                                 (1.0 - alphas_cumprod[t]) for t in range(T)],
        "posterior_log_variance_clipped": post_log_var_clipped,
    }


def normal_kl(mean1, logvar1, mean2, logvar2):
    return 0.5 * (-1.0 + logvar2 - logvar1 + math.exp(logvar1 - logvar2)
                  + (mean1 - mean2) ** 2 * math.exp(-logvar2))


def approx_standard_normal_cdf(x):
    return 0.5 * (1.0 + math.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def discretized_gaussian_log_likelihood(x, mean, log_scale):
    centered_x = x - mean
    inv_stdv = math.exp(-log_scale)
    cdf_plus = approx_standard_normal_cdf(inv_stdv * (centered_x + 1.0 / 255.0))
    cdf_min = approx_standard_normal_cdf(inv_stdv * (centered_x - 1.0 / 255.0))
    log_cdf_plus = math.log(max(cdf_plus, 1e-12))
    log_one_minus_cdf_min = math.log(max(1.0 - cdf_min, 1e-12))
    cdf_delta = cdf_plus - cdf_min
    if x < -0.999:
        return log_cdf_plus
    if x > 0.999:
        return log_one_minus_cdf_min
    return math.log(max(cdf_delta, 1e-12))


def sample_loss(s, t, eps_hat, v, x0, xt, eps):
    n = len(eps)
    mse = sum((e - eh) ** 2 for e, eh in zip(eps, eps_hat)) / n
    if v is None:
        return mse
    c1 = s["posterior_mean_coef1"][t]
    c2 = s["posterior_mean_coef2"][t]
    true_logvar = s["posterior_log_variance_clipped"][t]
    min_log = s["posterior_log_variance_clipped"][t]
    max_log = math.log(s["betas"][t])
    terms = []
    for i in range(n):
        # q(x_{t-1} | x_t, x_0)
        true_mean = c1 * x0[i] + c2 * xt[i]
        # p(x_{t-1} | x_t) with the detached eps prediction and the learned-range variance
        pred_xstart = (s["sqrt_recip_alphas_cumprod"][t] * xt[i]
                       - s["sqrt_recipm1_alphas_cumprod"][t] * eps_hat[i])
        model_mean = c1 * pred_xstart + c2 * xt[i]
        frac = (v[i] + 1.0) / 2.0
        model_logvar = frac * max_log + (1.0 - frac) * min_log
        if t == 0:
            terms.append(-discretized_gaussian_log_likelihood(x0[i], model_mean, 0.5 * model_logvar))
        else:
            terms.append(normal_kl(true_mean, true_logvar, model_mean, model_logvar))
    vb = sum(terms) / n / math.log(2.0)
    return mse + vb


def main():
    with open(sys.argv[1]) as f:
        tok = f.read().split()
    B, C, HW, learn_sigma = (int(x) for x in tok[:4])
    pos = 4
    ts = [int(x) for x in tok[pos:pos + B]]
    pos += B
    c_out = 2 * C if learn_sigma else C
    n = C * HW

    def take(count):
        nonlocal pos
        vals = [float(x) for x in tok[pos:pos + count]]
        pos += count
        return vals

    model_out, x0, xt, eps = take(B * c_out * HW), take(B * n), take(B * n), take(B * n)
    assert pos == len(tok), "trailing numbers in the case file"
    s = schedule()
    for b in range(B):
        row = model_out[b * c_out * HW:(b + 1) * c_out * HW]
        v = row[n:] if learn_sigma else None
        loss = sample_loss(s, ts[b], row[:n], v, x0[b * n:(b + 1) * n], xt[b * n:(b + 1) * n],
                           eps[b * n:(b + 1) * n])
        print(repr(loss))


if __name__ == "__main__":
    main()
