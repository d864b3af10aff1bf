/* backend.h — the compute op table that every difftune backend implements.
 *
 * The engine never touches tensor memory directly: it allocates through the backend, moves data
 * with upload/download, and computes only through these ops. kernels/cpu is the reference
 * implementation; kernels/cuda implements the same table and is checked against it op by op.
 *
 * Conventions shared by every op:
 *  - All tensor pointers are backend memory obtained from `alloc` (device memory on a GPU).
 *    Scalars are passed by value. Integer tensors (labels, timesteps) are int32.
 *  - Layouts are row-major. Shape letters: B batch, N tokens, D hidden, NH heads, HS head size,
 *    C channels, H/W image height/width, OC output features, T diffusion timesteps.
 *  - Forward ops overwrite their outputs.
 *  - Backward ops ACCUMULATE (+=) into every gradient they produce, parameters and activations
 *    alike; the caller zeroes gradient buffers when a fresh sum is needed.
 *  - "mod" arguments point into an adaLN modulation tensor of shape (B, k*D); `mod_stride` is that
 *    tensor's row length (k*D) so chunks are addressed without copies.
 *  - Ops return nothing; a backend records a failure (e.g. a CUDA fault) and reports it from
 *    `sync`, which returns 0 on success and a negative code otherwise.
 */
#ifndef DT_BACKEND_H
#define DT_BACKEND_H

#include <stddef.h>
#include <stdint.h>

typedef struct dt_backend dt_backend;

/* Input precision of the matrix products (dense layers and attention). Accumulation, master
 * weights, optimizer state and every elementwise op stay fp32 in both modes. The CPU backend
 * always computes in fp32 and ignores the setting. */
typedef enum {
    DT_PRECISION_FP32 = 0, /* fp32 inputs, fp32 math (no TF32): the checking mode */
    DT_PRECISION_BF16 = 1  /* bf16 inputs on tensor cores, fp32 accumulation and outputs */
} dt_precision;

/* Per-timestep diffusion tables living in backend memory, each of length T (float). Built by
 * engine/diffusion.c from float64 host tables. */
typedef struct {
    int T;
    float *sqrt_alphas_cumprod;           /* (T) sqrt(abar_t) */
    float *sqrt_one_minus_alphas_cumprod; /* (T) sqrt(1 - abar_t) */
    float *sqrt_recip_alphas_cumprod;     /* (T) 1/sqrt(abar_t) */
    float *sqrt_recipm1_alphas_cumprod;   /* (T) sqrt(1/abar_t - 1) */
    float *posterior_mean_coef1;          /* (T) beta_t sqrt(abar_{t-1}) / (1 - abar_t) */
    float *posterior_mean_coef2;          /* (T) (1 - abar_{t-1}) sqrt(alpha_t) / (1 - abar_t) */
    float *posterior_log_variance_clipped;/* (T) log posterior variance, entry 0 := entry 1 */
    float *log_betas;                     /* (T) log beta_t */
} dt_diffusion_tables;

/* Scalar coefficients of one reverse (sampling) step; every sample in the batch shares t. */
typedef struct {
    float sqrt_recip_ac;     /* 1/sqrt(abar_t) */
    float sqrt_recipm1_ac;   /* sqrt(1/abar_t - 1) */
    float post_coef1;        /* posterior mean coefficient of x0 */
    float post_coef2;        /* posterior mean coefficient of x_t */
    float post_log_var;      /* clipped log posterior variance (fixed variance / learned-sigma min) */
    float log_beta;          /* log beta_t (learned-sigma max) */
    float fixed_log_var;     /* log variance used when the model does not learn sigma */
    float sqrt_ac_prev;      /* DDIM: sqrt(abar_prev) */
    float sqrt_1m_ac_prev;   /* DDIM: sqrt(1 - abar_prev - sigma^2) direction coefficient */
    float ddim_sigma;        /* DDIM: sigma_t (eta * ...) */
    int add_noise;           /* 0 on the final step */
    int clip_x0;             /* clamp the predicted x0 to [-1, 1] (pixel-space models); DDIM then
                              * re-derives eps from the clamped x0, as ADM does */
} dt_step_coefs;

struct dt_backend {
    const char *name; /* "cpu", "cuda:0", ... */
    void *impl;       /* backend-private state */
    dt_precision precision; /* read by every matrix product; the creator sets FP32, callers may
                             * change it between ops */

    /* ---- memory ---- */
    /* Returns `bytes` of zeroed backend memory, or NULL when out of memory. */
    void *(*alloc)(dt_backend *be, size_t bytes);
    void (*free)(dt_backend *be, void *ptr);
    void (*upload)(dt_backend *be, void *dst, const void *host_src, size_t bytes);
    void (*download)(dt_backend *be, void *host_dst, const void *src, size_t bytes);
    void (*copy)(dt_backend *be, void *dst, const void *src, size_t bytes);
    void (*zero)(dt_backend *be, void *dst, size_t bytes);
    /* Waits for queued work; returns 0, or a negative code after an earlier failure. */
    int (*sync)(dt_backend *be);
    /* Releases the backend and everything it owns (not individual allocations). */
    void (*destroy)(dt_backend *be);
    /* One line saying why the last failing sync failed ("" when nothing failed), e.g. "CUDA out
     * of memory in attention_forward (cuda:0)". Valid until the next call into the backend. */
    const char *(*last_error)(dt_backend *be);

    /* ---- dense ---- */
    /* out (BT,OC) = inp (BT,C) . w(OC,C)^T + bias(OC); bias may be NULL. */
    void (*matmul_forward)(dt_backend *be, float *out, const float *inp, const float *w,
                           const float *bias, int BT, int C, int OC);
    /* dinp (BT,C) += dout.w; dw (OC,C) += dout^T.inp; dbias (OC) += colsum(dout).
     * Any of dinp, dw, dbias may be NULL to skip it. */
    void (*matmul_backward)(dt_backend *be, float *dinp, float *dw, float *dbias,
                            const float *dout, const float *inp, const float *w,
                            int BT, int C, int OC);

    /* ---- attention ---- */
    /* Floats of per-layer saved state (kept from forward to backward) and of shared scratch. */
    size_t (*attention_saved_floats)(int B, int N, int NH, int HS);
    size_t (*attention_scratch_floats)(int B, int N, int NH, int HS);
    /* qkv (B,N,3,NH,HS) -> out (B,N,NH*HS): softmax(q k^T / sqrt(HS)) v per head, heads
     * concatenated. `saved` (attention_saved_floats) is written for the backward pass;
     * `scratch` (attention_scratch_floats) is clobbered. */
    void (*attention_forward)(dt_backend *be, float *out, float *saved, float *scratch,
                              const float *qkv, int B, int N, int NH, int HS);
    /* dqkv (B,N,3*NH*HS) += gradient given dout (B,N,NH*HS) and the forward's qkv/saved. */
    void (*attention_backward)(dt_backend *be, float *dqkv, float *scratch, const float *dout,
                               const float *qkv, const float *saved, int B, int N, int NH, int HS);

    /* ---- normalisation and adaLN ---- */
    /* out (B,N,D) = LN(x) * (1 + scale[b]) + shift[b], LN without affine, eps 1e-6.
     * shift/scale rows at stride mod_stride. Saves mean, rstd (B*N) for backward. */
    void (*ln_modulate_forward)(dt_backend *be, float *out, float *mean, float *rstd,
                                const float *x, const float *shift, const float *scale,
                                int B, int N, int D, int mod_stride);
    /* dx (B,N,D), dshift, dscale (rows at mod_stride) += gradients. */
    void (*ln_modulate_backward)(dt_backend *be, float *dx, float *dshift, float *dscale,
                                 const float *dout, const float *x, const float *mean,
                                 const float *rstd, const float *scale,
                                 int B, int N, int D, int mod_stride);
    /* out (B,N,D) = res + gate[b] * y (gate rows at mod_stride). out may alias res. */
    void (*gate_residual_forward)(dt_backend *be, float *out, const float *res, const float *y,
                                  const float *gate, int B, int N, int D, int mod_stride);
    /* dres += dout; dy += gate*dout; dgate[b] += sum_n dout*y. dres may be NULL. */
    void (*gate_residual_backward)(dt_backend *be, float *dres, float *dy, float *dgate,
                                   const float *dout, const float *y, const float *gate,
                                   int B, int N, int D, int mod_stride);

    /* ---- pointwise ---- */
    /* GELU, tanh approximation. */
    void (*gelu_forward)(dt_backend *be, float *out, const float *inp, size_t n);
    void (*gelu_backward)(dt_backend *be, float *dinp, const float *inp, const float *dout, size_t n);
    void (*silu_forward)(dt_backend *be, float *out, const float *inp, size_t n);
    void (*silu_backward)(dt_backend *be, float *dinp, const float *inp, const float *dout, size_t n);
    /* y += a * x */
    void (*axpy)(dt_backend *be, float *y, float a, const float *x, size_t n);
    /* x *= a */
    void (*scale)(dt_backend *be, float *x, float a, size_t n);
    /* x (B, R) += row (R) for every b (e.g. pos_embed over the batch) */
    void (*add_rows)(dt_backend *be, float *x, const float *row, int B, size_t R);
    /* y (rows, cols) = x * g1[col] * g2[col] (g2 NULL = 1): DiffFit's gammas on a layer's
     * outputs. y may alias x. */
    void (*scale_cols_forward)(dt_backend *be, float *y, const float *x, const float *g1,
                               const float *g2, int rows, int cols);
    /* Given dy (rows, cols) and the unscaled x of the forward: dg1 (cols) += sum over rows of
     * dy*x*g2 and dg2 += sum of dy*x*g1 (each may be NULL; dg2 needs g2), summed in double, rows
     * in order; then dx = dy*g1*g2, overwritten (not accumulated), dx may alias dy, NULL skips. */
    void (*scale_cols_backward)(dt_backend *be, float *dx, float *dg1, float *dg2,
                                const float *dy, const float *x, const float *g1,
                                const float *g2, int rows, int cols);

    /* ---- embeddings and layout ---- */
    /* out (B,D) = table[labels[b]] */
    void (*embedding_forward)(dt_backend *be, float *out, const float *table,
                              const int32_t *labels, int B, int D);
    /* dtable[labels[b]] += dout[b] */
    void (*embedding_backward)(dt_backend *be, float *dtable, const float *dout,
                               const int32_t *labels, int B, int D);
    /* out (B,dim) = [cos(t f_k), sin(t f_k)], f_k = exp(-ln(10000) k/(dim/2)), dim even. */
    void (*timestep_embedding)(dt_backend *be, float *out, const int32_t *t, int B, int dim);
    /* img (B,C,H,W) -> out (B, N=(H/p)(W/p), C*p*p), patch flattened (c, i, j), tokens (h, w). */
    void (*patchify)(dt_backend *be, float *out, const float *img, int B, int C, int H, int W, int p);
    /* tokens (B,N,p*p*C) with patch order (i, j, c) -> img (B,C,H,W). */
    void (*unpatchify)(dt_backend *be, float *img, const float *tokens, int B, int C, int H, int W, int p);
    /* dtokens (B,N,p*p*C) += rearranged dimg (B,C,H,W). */
    void (*unpatchify_backward)(dt_backend *be, float *dtokens, const float *dimg,
                                int B, int C, int H, int W, int p);

    /* ---- random numbers (counter based, identical on every backend) ---- */
    /* out[i] = standard normal number i of stream (seed, offset); see kernels/philox.h. */
    void (*randn)(dt_backend *be, float *out, size_t n, uint64_t seed, uint64_t offset);

    /* ---- diffusion ---- */
    /* xt (B,CHW) = sqrt(abar[t_b]) x0 + sqrt(1-abar[t_b]) eps */
    void (*q_sample)(dt_backend *be, float *xt, const float *x0, const float *eps,
                     const int32_t *t, const dt_diffusion_tables *tab, int B, int CHW);
    /* Per-sample diffusion loss and its gradient.
     * model_out (B, C_out, HW) with C_out = C (eps only) or 2C (eps, then v in [-1,1]).
     * loss (B) = mean_{C,HW} (eps - eps_hat)^2 [+ vb in bits per dim when learn_sigma]; vb is the
     * KL of the true posterior from the model's (mean from a detached eps_hat) or, at t = 0, the
     * discretised Gaussian NLL of x0. dout (B,C_out,HW) += weight[b] * dloss_b/dmodel_out
     * (vb reaches only the v channels). weight may be NULL (then dout is not touched). */
    void (*diffusion_loss)(dt_backend *be, float *loss, float *dout, const float *model_out,
                           const float *x0, const float *xt, const float *eps, const int32_t *t,
                           const float *weight, const dt_diffusion_tables *tab,
                           int B, int C, int HW, int learn_sigma);
    /* Classifier-free guidance on a [cond; uncond] batch of 2B model outputs (2B, C_out, HW):
     * out (B, C_out, HW): eps channels eps_u + s (eps_c - eps_u), other channels from cond. */
    void (*cfg_combine)(dt_backend *be, float *out, const float *model_out, float s,
                        int B, int C, int C_out, int HW);
    /* One DDPM ancestral step in place on x (B,C,HW) from model_out (B,C_out,HW) and noise. */
    void (*ddpm_step)(dt_backend *be, float *x, const float *model_out, const float *noise,
                      const dt_step_coefs *k, int B, int C, int HW, int learn_sigma);
    /* One DDIM step in place on x (B,C,HW) from the eps channels of model_out (B,C_out,HW),
     * C_out = 2C when learn_sigma; noise is used only when k->ddim_sigma > 0. */
    void (*ddim_step)(dt_backend *be, float *x, const float *model_out, const float *noise,
                      const dt_step_coefs *k, int B, int C, int HW, int learn_sigma);

    /* ---- convolution and image layers (the VAE; forward only, NCHW) ---- */
    /* Bytes of scratch conv2d_forward needs for this shape (im2col tiles on the CPU, the
     * convolution workspace on a GPU); the caller allocates the largest over its layers once.
     * The answer also covers a batch of fewer images of the same layer, and either precision. */
    size_t (*conv2d_scratch_bytes)(dt_backend *be, int B, int C, int H, int W, int OC, int KH,
                                   int KW, int stride, int pad_t, int pad_l, int pad_b, int pad_r);
    /* out (B,OC,Ho,Wo) = conv2d(inp (B,C,H,W), w (OC,C,KH,KW)) + bias (OC), cross-correlation as
     * PyTorch computes it, with `stride` and zero padding pad_t rows above, pad_b below, pad_l
     * columns left and pad_r right: Ho = (H + pad_t + pad_b - KH) / stride + 1 (Wo alike).
     * bias may be NULL. scratch holds conv2d_scratch_bytes of the same shape (clobbered).
     * Matrix-product precision follows be->precision. out must not alias inp. */
    void (*conv2d_forward)(dt_backend *be, float *out, const float *inp, const float *w,
                           const float *bias, void *scratch, int B, int C, int H, int W, int OC,
                           int KH, int KW, int stride, int pad_t, int pad_l, int pad_b, int pad_r);
    /* out (B,C,HW) = GroupNorm(x) * gamma[c] + beta[c] over G groups of C/G consecutive channels
     * (statistics over the group's channels and HW, biased variance, fp32), then SiLU when silu
     * is non-zero. C % G == 0. out may alias x. */
    void (*group_norm_forward)(dt_backend *be, float *out, const float *x, const float *gamma,
                               const float *beta, int B, int C, int HW, int G, float eps, int silu);
    /* out (B,C,2H,2W): nearest-neighbour upsampling by 2 of x (B,C,H,W). */
    void (*upsample2x_forward)(dt_backend *be, float *out, const float *x, int B, int C, int H,
                               int W);
    /* out (B,C,R) = the transpose of each sample's x (B,R,C) (e.g. NCHW <-> tokens). out must
     * not alias x. */
    void (*transpose)(dt_backend *be, float *out, const float *x, int B, int R, int C);

    /* ---- optimisation ---- */
    /* *out = sum_i x[i]^2 over n floats (out is one float of backend memory). */
    void (*sum_squares)(dt_backend *be, float *out, const float *x, size_t n);
    /* Scales x by min(1, max_norm / sqrt(*norm_sq)) where norm_sq is backend memory. */
    void (*clip_by_norm)(dt_backend *be, float *x, size_t n, const float *norm_sq, float max_norm);
    /* AdamW with bias correction at step `step` (1-based); decoupled weight decay. */
    void (*adamw_update)(dt_backend *be, float *param, const float *grad, float *m, float *v,
                         size_t n, float lr, float beta1, float beta2, float eps,
                         float weight_decay, int step);
    /* ema = decay*ema + (1-decay)*param */
    void (*ema_update)(dt_backend *be, float *ema, const float *param, size_t n, float decay);
};

/* Creates the CPU reference backend (OpenBLAS + OpenMP). Returns NULL on allocation failure.
 * Release with be->destroy(be). */
dt_backend *dt_backend_cpu_create(void);

/* Creates a backend by name: "cpu", "auto" (CUDA device 0 when built and present, else CPU), or
 * "cuda:N". On failure returns NULL and writes a message to err (may be NULL). */
dt_backend *dt_backend_create(const char *device, char *err, size_t errlen);

/* "fp32" or "bf16" for a precision. */
const char *dt_precision_name(dt_precision p);

/* Resolves a precision name for backend `be`: "fp32", "bf16", or "auto" (bf16 on a GPU, fp32 on
 * the CPU, where bf16 would only lose accuracy). Returns 0, or -1 for any other name. */
int dt_precision_parse(const char *name, const dt_backend *be, dt_precision *out);

#endif
