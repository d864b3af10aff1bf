/* test_backend_vs_cpu.c — a compute backend (normally CUDA) checked against the CPU reference.
 *
 * Four groups, one printed line per check:
 *   ops     every op of kernels/backend.h on random inputs at three shapes (tiny, odd sizes,
 *           DiT-like), and the VAE's image ops at odd and SD-VAE shapes. Identical inputs go to both backends; each output is compared by the
 *           normalised error max|dev - ref| / (max|ref| + 1e-6) (rms printed alongside).
 *           Forward outputs start as junk (a skipped element shows); backward gradients start
 *           non-zero and are compared on what the op added (so overwriting instead of += fails);
 *           in-place tensors are compared on what they hold afterwards.
 *   step    one full DiT training step (q_sample, forward, loss, backward, clip, AdamW, EMA).
 *   train   K steps from the same initialisation on the same host batches: the loss curves.
 *   sample  DDPM and DDIM chains with guidance from the same weights: the final images.
 * Bounds depend on the op kind and on the device's matmul precision (tests/gpu/README.md).
 *
 * --perturb OP damages one output element of OP on the device backend, to show the suite fails.
 * --emulate-bf16 / --jitter X make a CPU "device" round matrix-product inputs to bf16 / add
 * relative noise X to matrix-product outputs, to calibrate the bounds on a machine without a GPU.
 * Exit status: 0 all passed, 1 a check failed, 2 bad usage or setup, 77 no device (only with
 * --skip-without-device).
 */
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend.h"
#include "check.h"
#include "diffusion.h"
#include "dit.h"
#include "rng.h"
#include "sampler.h"

/* ---- settings ---------------------------------------------------------------------------- */

enum { REF = 0, DEV = 1 };

static dt_backend *g_be[2];               /* reference, device */
static dt_diffusion_tables g_tab[2];      /* the T = 1000 tables on each backend */
static dt_schedule g_sched;               /* the T = 1000 training schedule (host) */
static dt_schedule g_chain;               /* a 10-step respaced sampling chain (host) */
static double g_tol_scale = 1.0;
static const char *g_only;                /* comma-separated groups or op names, NULL = all */
static const char *g_prec = "fp32";       /* precision label of the op checks being run */
static int g_bf16;                        /* device matmul precision is bf16 */
static int g_verbose;

/* Op kinds and their bounds on the normalised max error, per device matmul precision. Only
 * matrix products change with bf16: everything else stays fp32 on every backend. */
typedef enum { K_LAYOUT, K_POINT, K_TRANS, K_REDUCE, K_TEMB, K_LOSS, K_MATMUL, K_ATTN, K_CONV, K_NKINDS } op_kind;
static const struct { const char *name; double fp32, bf16; } KINDS[K_NKINDS] = {
    [K_LAYOUT] = {"layout", 0.0, 0.0},      /* copies and single adds: bit-exact */
    [K_POINT] = {"pointwise", 1e-6, 1e-6},  /* a few flops per element (FMA contraction) */
    [K_TRANS] = {"transcend", 1e-5, 1e-5},  /* exp/log/tanh/sin per element (1-2 ulp libm) */
    [K_REDUCE] = {"reduction", 1e-5, 1e-5}, /* sums over rows/tokens/labels (order differs) */
    [K_TEMB] = {"timestep", 5e-4, 5e-4},    /* sin(t f): t <= 999 amplifies 1-ulp f by 1e3 */
    [K_LOSS] = {"loss", 1e-4, 1e-4},        /* float vs double log/exp/cdf chains, cancellations */
    [K_MATMUL] = {"matmul", 5e-5, 2e-2},    /* fp32 bound catches accidental TF32 (~5e-4) */
    [K_ATTN] = {"attention", 5e-5, 2e-2},
    [K_CONV] = {"conv", 5e-5, 2e-2},        /* as matmul: sums of up to 4608 products */
};

/* Bounds of the engine-level checks (always fp32 on the device, except the bf16 loss curve). */
#define B_STEP_OUT 1e-4    /* forward output and per-sample loss of one step */
#define B_STEP_GRAD 1e-3   /* every parameter gradient, normalised per tensor */
#define B_STEP_OPT 1e-3    /* AdamW update, moments, EMA, gradient norm */
#define B_TRAIN_FP32 1e-4  /* relative difference of the mean loss of the last 10 steps */
#define B_TRAIN_BF16 1e-2
#define B_SAMPLE 1e-3      /* final images of a sampling chain */

static double kind_bound(op_kind k) {
    return (g_bf16 ? KINDS[k].bf16 : KINDS[k].fp32) * g_tol_scale;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* 1 when a check of `group` on `op` (may be NULL) is selected by --only. */
static int selected(const char *group, const char *op) {
    if (!g_only) return 1;
    const char *s = g_only;
    while (*s) {
        size_t len = strcspn(s, ",");
        if ((strlen(group) == len && !strncmp(s, group, len)) ||
            (op && strlen(op) == len && !strncmp(s, op, len)))
            return 1;
        s += len + (s[len] == ',');
    }
    return 0;
}

/* ---- host random numbers (fixed seed: every run sees the same inputs) ---------------------- */

static uint64_t g_rng = 0x243F6A8885A308D3ull;

static double urand(void) { /* uniform [0, 1) */
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (double)(g_rng >> 11) * (1.0 / 9007199254740992.0);
}

static double nrand(void) {
    double u1 = urand() + 1e-300, u2 = urand();
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

static void fill_normal(float *x, size_t n, double mean, double sd) {
    for (size_t i = 0; i < n; i++) x[i] = (float)(mean + sd * nrand());
}

static void fill_uniform(float *x, size_t n, double lo, double hi) {
    for (size_t i = 0; i < n; i++) x[i] = (float)(lo + (hi - lo) * urand());
}

/* Pixels as a dataset holds them: k/127.5 - 1 for k in 0..255, with both ends present. */
static void fill_pixels(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = (float)((int)(urand() * 256.0) / 127.5 - 1.0);
    if (n > 1) x[0] = -1.0f, x[n - 1] = 1.0f;
}

/* ---- comparison and the verdict line ------------------------------------------------------ */

typedef struct {
    double err, rms; /* normalised max and rms error */
    size_t at;       /* index of the worst element */
    double ref_at, dev_at;
} errstat;

/* Compares dev against ref, both minus base when base is non-NULL (what an op added). */
static errstat compare(const float *ref, const float *dev, const float *base, size_t n) {
    double maxref = 0.0, maxdiff = -1.0, sumsq = 0.0;
    errstat s = {0, 0, 0, 0, 0};
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        double b = base ? base[i] : 0.0, r = ref[i] - b, d = dev[i] - b;
        if (!isfinite(r) || !isfinite(d)) {
            if (!bad) s.at = i, s.ref_at = r, s.dev_at = d;
            bad = 1;
            continue;
        }
        double e = fabs(d - r);
        maxref = fmax(maxref, fabs(r));
        sumsq += e * e;
        if (e > maxdiff && !bad) maxdiff = e, s.at = i, s.ref_at = r, s.dev_at = d;
    }
    maxdiff = fmax(maxdiff, 0.0);
    s.err = bad ? INFINITY : maxdiff / (maxref + 1e-6);
    s.rms = bad ? INFINITY : sqrt(sumsq / (double)(n ? n : 1)) / (maxref + 1e-6);
    return s;
}

/* Prints one check line and records it. */
static void verdict(const char *group, const char *what, const char *shape, const char *prec,
                    errstat e, double bound) {
    int pass = e.err <= bound;
    printf("%-6s %-40s %-34s %-4s err %.3e rms %.3e bound %.1e %s\n", group, what, shape, prec,
           e.err, e.rms, bound, pass ? "PASS" : "FAIL");
    CHECK(pass, "%s %s [%s] %s: err %.3e > %.1e (worst at %zu: ref %.9g dev %.9g)", group, what,
          shape, prec, e.err, bound, e.at, e.ref_at, e.dev_at);
}

/* A check that is a plain condition (setup, sync status). */
static void verdict_bool(const char *group, const char *what, const char *shape, int ok,
                         const char *why) {
    printf("%-6s %-40s %-34s %-4s %-48s %s\n", group, what, shape, "", why ? why : "", ok ? "PASS" : "FAIL");
    CHECK(ok, "%s %s [%s]: %s", group, what, shape, why ? why : "");
}

static const char *backend_error(dt_backend *be) {
    const char *e = be->last_error ? be->last_error(be) : NULL;
    return e ? e : "(backend has no last_error)";
}

/* Waits for be; a non-zero status is a failed check naming the backend's last error. */
static int sync_ok(dt_backend *be, const char *group, const char *what, const char *shape) {
    int rc = be->sync(be);
    if (rc != 0) {
        char why[512];
        snprintf(why, sizeof why, "%s sync returned %d: %s", be->name, rc, backend_error(be));
        verdict_bool(group, what, shape, 0, why);
    }
    return rc == 0;
}

/* ---- device-side instrumentation: --perturb, --emulate-bf16, --jitter ---------------------- */

static dt_backend g_inner;   /* the device table that the --perturb wrappers call through */
static dt_backend g_pristine; /* the device table before any instrumentation */
static int g_emulate_bf16;
static double g_jitter;
static uint64_t g_jitter_calls;

/* Multiplies the largest-magnitude element of x (n floats of backend memory) by 1.05 and adds
 * 1e-3: a small, single-element error every compared output must notice. */
static void damage(dt_backend *be, float *x, size_t n) {
    if (!x || !n) return;
    float *h = malloc(n * sizeof(float));
    if (!h) return;
    be->download(be, h, x, n * sizeof(float));
    size_t at = 0;
    for (size_t i = 1; i < n; i++)
        if (fabsf(h[i]) > fabsf(h[at])) at = i;
    h[at] = h[at] * 1.05f + 1e-3f;
    be->upload(be, x + at, h + at, sizeof(float));
    free(h);
}

#define PT g_inner
static void pt_matmul_forward(dt_backend *be, float *out, const float *inp, const float *w,
                              const float *bias, int BT, int C, int OC) {
    PT.matmul_forward(be, out, inp, w, bias, BT, C, OC);
    damage(be, out, (size_t)BT * OC);
}
static void pt_matmul_backward(dt_backend *be, float *dinp, float *dw, float *dbias,
                               const float *dout, const float *inp, const float *w, int BT, int C,
                               int OC) {
    PT.matmul_backward(be, dinp, dw, dbias, dout, inp, w, BT, C, OC);
    if (dinp) damage(be, dinp, (size_t)BT * C);
    else if (dw) damage(be, dw, (size_t)OC * C);
    else damage(be, dbias, (size_t)OC);
}
static void pt_attention_forward(dt_backend *be, float *out, float *saved, float *scratch,
                                 const float *qkv, int B, int N, int NH, int HS) {
    PT.attention_forward(be, out, saved, scratch, qkv, B, N, NH, HS);
    damage(be, out, (size_t)B * N * NH * HS);
}
static void pt_attention_backward(dt_backend *be, float *dqkv, float *scratch, const float *dout,
                                  const float *qkv, const float *saved, int B, int N, int NH,
                                  int HS) {
    PT.attention_backward(be, dqkv, scratch, dout, qkv, saved, B, N, NH, HS);
    damage(be, dqkv, (size_t)3 * B * N * NH * HS);
}
static void pt_ln_modulate_forward(dt_backend *be, float *out, float *mean, float *rstd,
                                   const float *x, const float *shift, const float *scale, int B,
                                   int N, int D, int ms) {
    PT.ln_modulate_forward(be, out, mean, rstd, x, shift, scale, B, N, D, ms);
    damage(be, out, (size_t)B * N * D);
}
static void pt_ln_modulate_backward(dt_backend *be, float *dx, float *dshift, float *dscale,
                                    const float *dout, const float *x, const float *mean,
                                    const float *rstd, const float *scale, int B, int N, int D,
                                    int ms) {
    PT.ln_modulate_backward(be, dx, dshift, dscale, dout, x, mean, rstd, scale, B, N, D, ms);
    damage(be, dx, (size_t)B * N * D);
}
static void pt_gate_residual_forward(dt_backend *be, float *out, const float *res, const float *y,
                                     const float *gate, int B, int N, int D, int ms) {
    PT.gate_residual_forward(be, out, res, y, gate, B, N, D, ms);
    damage(be, out, (size_t)B * N * D);
}
static void pt_gate_residual_backward(dt_backend *be, float *dres, float *dy, float *dgate,
                                      const float *dout, const float *y, const float *gate, int B,
                                      int N, int D, int ms) {
    PT.gate_residual_backward(be, dres, dy, dgate, dout, y, gate, B, N, D, ms);
    damage(be, dy, (size_t)B * N * D);
}
static void pt_gelu_forward(dt_backend *be, float *out, const float *inp, size_t n) {
    PT.gelu_forward(be, out, inp, n);
    damage(be, out, n);
}
static void pt_gelu_backward(dt_backend *be, float *dinp, const float *inp, const float *dout,
                             size_t n) {
    PT.gelu_backward(be, dinp, inp, dout, n);
    damage(be, dinp, n);
}
static void pt_silu_forward(dt_backend *be, float *out, const float *inp, size_t n) {
    PT.silu_forward(be, out, inp, n);
    damage(be, out, n);
}
static void pt_silu_backward(dt_backend *be, float *dinp, const float *inp, const float *dout,
                             size_t n) {
    PT.silu_backward(be, dinp, inp, dout, n);
    damage(be, dinp, n);
}
static void pt_axpy(dt_backend *be, float *y, float a, const float *x, size_t n) {
    PT.axpy(be, y, a, x, n);
    damage(be, y, n);
}
static void pt_scale(dt_backend *be, float *x, float a, size_t n) {
    PT.scale(be, x, a, n);
    damage(be, x, n);
}
static void pt_add_rows(dt_backend *be, float *x, const float *row, int B, size_t R) {
    PT.add_rows(be, x, row, B, R);
    damage(be, x, (size_t)B * R);
}
static void pt_scale_cols_forward(dt_backend *be, float *y, const float *x, const float *g1,
                                  const float *g2, int rows, int cols) {
    PT.scale_cols_forward(be, y, x, g1, g2, rows, cols);
    damage(be, y, (size_t)rows * cols);
}
static void pt_scale_cols_backward(dt_backend *be, float *dx, float *dg1, float *dg2,
                                   const float *dy, const float *x, const float *g1,
                                   const float *g2, int rows, int cols) {
    PT.scale_cols_backward(be, dx, dg1, dg2, dy, x, g1, g2, rows, cols);
    damage(be, dg1, (size_t)cols);
}
static void pt_embedding_forward(dt_backend *be, float *out, const float *table,
                                 const int32_t *labels, int B, int D) {
    PT.embedding_forward(be, out, table, labels, B, D);
    damage(be, out, (size_t)B * D);
}
static void pt_embedding_backward(dt_backend *be, float *dtable, const float *dout,
                                  const int32_t *labels, int B, int D) {
    PT.embedding_backward(be, dtable, dout, labels, B, D);
    int32_t *h = malloc((size_t)B * sizeof(int32_t));
    be->download(be, h, labels, (size_t)B * sizeof(int32_t));
    int rows = 0;
    for (int b = 0; b < B; b++) rows = h[b] + 1 > rows ? h[b] + 1 : rows;
    free(h);
    damage(be, dtable, (size_t)rows * D);
}
static void pt_timestep_embedding(dt_backend *be, float *out, const int32_t *t, int B, int dim) {
    PT.timestep_embedding(be, out, t, B, dim);
    damage(be, out, (size_t)B * dim);
}
static void pt_patchify(dt_backend *be, float *out, const float *img, int B, int C, int H, int W,
                        int p) {
    PT.patchify(be, out, img, B, C, H, W, p);
    damage(be, out, (size_t)B * C * H * W);
}
static void pt_unpatchify(dt_backend *be, float *img, const float *tokens, int B, int C, int H,
                          int W, int p) {
    PT.unpatchify(be, img, tokens, B, C, H, W, p);
    damage(be, img, (size_t)B * C * H * W);
}
static void pt_unpatchify_backward(dt_backend *be, float *dtokens, const float *dimg, int B, int C,
                                   int H, int W, int p) {
    PT.unpatchify_backward(be, dtokens, dimg, B, C, H, W, p);
    damage(be, dtokens, (size_t)B * C * H * W);
}
static void pt_randn(dt_backend *be, float *out, size_t n, uint64_t seed, uint64_t offset) {
    PT.randn(be, out, n, seed, offset);
    damage(be, out, n);
}
static void pt_q_sample(dt_backend *be, float *xt, const float *x0, const float *eps,
                        const int32_t *t, const dt_diffusion_tables *tab, int B, int CHW) {
    PT.q_sample(be, xt, x0, eps, t, tab, B, CHW);
    damage(be, xt, (size_t)B * CHW);
}
static void pt_diffusion_loss(dt_backend *be, float *loss, float *dout, const float *model_out,
                              const float *x0, const float *xt, const float *eps, const int32_t *t,
                              const float *weight, const dt_diffusion_tables *tab, int B, int C,
                              int HW, int learn_sigma) {
    PT.diffusion_loss(be, loss, dout, model_out, x0, xt, eps, t, weight, tab, B, C, HW, learn_sigma);
    damage(be, loss, (size_t)B);
}
static void pt_cfg_combine(dt_backend *be, float *out, const float *model_out, float s, int B,
                           int C, int C_out, int HW) {
    PT.cfg_combine(be, out, model_out, s, B, C, C_out, HW);
    damage(be, out, (size_t)B * C_out * HW);
}
static void pt_ddpm_step(dt_backend *be, float *x, const float *model_out, const float *noise,
                         const dt_step_coefs *k, int B, int C, int HW, int learn_sigma) {
    PT.ddpm_step(be, x, model_out, noise, k, B, C, HW, learn_sigma);
    damage(be, x, (size_t)B * C * HW);
}
static void pt_ddim_step(dt_backend *be, float *x, const float *model_out, const float *noise,
                         const dt_step_coefs *k, int B, int C, int HW, int learn_sigma) {
    PT.ddim_step(be, x, model_out, noise, k, B, C, HW, learn_sigma);
    damage(be, x, (size_t)B * C * HW);
}
static void pt_sum_squares(dt_backend *be, float *out, const float *x, size_t n) {
    PT.sum_squares(be, out, x, n);
    damage(be, out, 1);
}
static void pt_clip_by_norm(dt_backend *be, float *x, size_t n, const float *norm_sq,
                            float max_norm) {
    PT.clip_by_norm(be, x, n, norm_sq, max_norm);
    damage(be, x, n);
}
static void pt_adamw_update(dt_backend *be, float *param, const float *grad, float *m, float *v,
                            size_t n, float lr, float beta1, float beta2, float eps, float wd,
                            int step) {
    PT.adamw_update(be, param, grad, m, v, n, lr, beta1, beta2, eps, wd, step);
    damage(be, param, n);
}
static void pt_ema_update(dt_backend *be, float *ema, const float *param, size_t n, float decay) {
    PT.ema_update(be, ema, param, n, decay);
    damage(be, ema, n);
}
static void pt_conv2d_forward(dt_backend *be, float *out, const float *inp, const float *w,
                              const float *bias, void *scratch, int B, int C, int H, int W, int OC,
                              int KH, int KW, int s, int pt, int pl, int pb, int pr) {
    PT.conv2d_forward(be, out, inp, w, bias, scratch, B, C, H, W, OC, KH, KW, s, pt, pl, pb, pr);
    damage(be, out, (size_t)B * OC * ((H + pt + pb - KH) / s + 1) * ((W + pl + pr - KW) / s + 1));
}
static void pt_group_norm_forward(dt_backend *be, float *out, const float *x, const float *gamma,
                                  const float *beta, int B, int C, int HW, int G, float eps,
                                  int silu) {
    PT.group_norm_forward(be, out, x, gamma, beta, B, C, HW, G, eps, silu);
    damage(be, out, (size_t)B * C * HW);
}
static void pt_upsample2x_forward(dt_backend *be, float *out, const float *x, int B, int C, int H,
                                  int W) {
    PT.upsample2x_forward(be, out, x, B, C, H, W);
    damage(be, out, (size_t)B * C * 4 * H * W);
}
static void pt_transpose(dt_backend *be, float *out, const float *x, int B, int R, int C) {
    PT.transpose(be, out, x, B, R, C);
    damage(be, out, (size_t)B * R * C);
}
#undef PT

/* Every op --perturb accepts, in table order. */
static const char *const PERTURBABLE[] = {
    "matmul_forward", "matmul_backward", "attention_forward", "attention_backward",
    "ln_modulate_forward", "ln_modulate_backward", "gate_residual_forward",
    "gate_residual_backward", "gelu_forward", "gelu_backward", "silu_forward", "silu_backward",
    "axpy", "scale", "add_rows", "embedding_forward", "embedding_backward", "timestep_embedding",
    "patchify", "unpatchify", "unpatchify_backward", "randn", "q_sample", "diffusion_loss",
    "cfg_combine", "ddpm_step", "ddim_step", "sum_squares", "clip_by_norm", "adamw_update",
    "ema_update", "conv2d_forward", "group_norm_forward", "upsample2x_forward", "transpose",
    "scale_cols_forward", "scale_cols_backward",
};

/* 1 when be implements op `name` (a backend under construction may leave entries NULL). */
static int op_present(const dt_backend *be, const char *name) {
#define HAS(field) if (!strcmp(name, #field)) return be->field != NULL;
    HAS(matmul_forward) HAS(matmul_backward) HAS(attention_forward) HAS(attention_backward)
    HAS(ln_modulate_forward) HAS(ln_modulate_backward) HAS(gate_residual_forward)
    HAS(gate_residual_backward) HAS(gelu_forward) HAS(gelu_backward) HAS(silu_forward)
    HAS(silu_backward) HAS(axpy) HAS(scale) HAS(add_rows) HAS(embedding_forward)
    HAS(embedding_backward) HAS(timestep_embedding) HAS(patchify) HAS(unpatchify)
    HAS(unpatchify_backward) HAS(randn) HAS(q_sample) HAS(diffusion_loss) HAS(cfg_combine)
    HAS(ddpm_step) HAS(ddim_step) HAS(sum_squares) HAS(clip_by_norm) HAS(adamw_update)
    HAS(ema_update) HAS(group_norm_forward) HAS(upsample2x_forward) HAS(transpose)
    HAS(scale_cols_forward) HAS(scale_cols_backward)
#undef HAS
    if (!strcmp(name, "conv2d_forward")) return be->conv2d_forward && be->conv2d_scratch_bytes;
    return 1;
}

/* 1 when --only selects the op group or at least one op. */
static int any_op_selected(void) {
    if (selected("ops", NULL)) return 1;
    for (size_t i = 0; i < sizeof PERTURBABLE / sizeof PERTURBABLE[0]; i++)
        if (selected("", PERTURBABLE[i])) return 1;
    return 0;
}

/* Replaces op `name` of be by its damaging wrapper; -1 when no op has that name. */
static int perturb_install(dt_backend *be, const char *name) {
    g_inner = *be;
#define PT_SET(field) if (!strcmp(name, #field)) { be->field = pt_##field; return 0; }
    PT_SET(matmul_forward) PT_SET(matmul_backward) PT_SET(attention_forward)
    PT_SET(attention_backward) PT_SET(ln_modulate_forward) PT_SET(ln_modulate_backward)
    PT_SET(gate_residual_forward) PT_SET(gate_residual_backward) PT_SET(gelu_forward)
    PT_SET(gelu_backward) PT_SET(silu_forward) PT_SET(silu_backward) PT_SET(axpy) PT_SET(scale)
    PT_SET(add_rows) PT_SET(embedding_forward) PT_SET(embedding_backward)
    PT_SET(timestep_embedding) PT_SET(patchify) PT_SET(unpatchify) PT_SET(unpatchify_backward)
    PT_SET(randn) PT_SET(q_sample) PT_SET(diffusion_loss) PT_SET(cfg_combine) PT_SET(ddpm_step)
    PT_SET(ddim_step) PT_SET(sum_squares) PT_SET(clip_by_norm) PT_SET(adamw_update)
    PT_SET(ema_update) PT_SET(conv2d_forward) PT_SET(group_norm_forward)
    PT_SET(upsample2x_forward) PT_SET(transpose)
    PT_SET(scale_cols_forward) PT_SET(scale_cols_backward)
#undef PT_SET
    return -1;
}

/* bf16 round-to-nearest-even of x, as the CUDA backend casts matmul inputs. */
static float bf16_round(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    if ((u & 0x7f800000u) == 0x7f800000u) return x; /* inf, nan */
    u += 0x7fffu + ((u >> 16) & 1u);
    u &= 0xffff0000u;
    memcpy(&x, &u, sizeof x);
    return x;
}

/* A CPU "device" only (its memory is host memory): a bf16-rounded copy of x when the device is in
 * bf16 mode and --emulate-bf16 is on, else x itself. Free with em_release. */
static const float *em_inputs(dt_backend *be, const float *x, size_t n) {
    if (!g_emulate_bf16 || be->precision != DT_PRECISION_BF16 || !x) return x;
    float *r = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) r[i] = bf16_round(x[i]);
    return r;
}

static void em_release(const float *copy, const float *x) {
    if (copy != x) free((void *)copy);
}

/* x (host-addressable) *= 1 + g_jitter u, u uniform in [-1, 1) from a hash of (call, index):
 * the size of the rounding-order differences between two fp32 implementations. */
static void em_jitter(float *x, size_t n) {
    if (g_jitter <= 0 || !x) return;
    uint64_t call = ++g_jitter_calls;
    for (size_t i = 0; i < n; i++) {
        uint64_t z = (call << 40) ^ (uint64_t)i ^ 0x9E3779B97F4A7C15ull;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        double u = (double)(z >> 11) * (2.0 / 9007199254740992.0) - 1.0;
        x[i] = (float)(x[i] * (1.0 + g_jitter * u));
    }
}

#define EM g_pristine
static void em_matmul_forward(dt_backend *be, float *out, const float *inp, const float *w,
                              const float *bias, int BT, int C, int OC) {
    const float *ri = em_inputs(be, inp, (size_t)BT * C), *rw = em_inputs(be, w, (size_t)OC * C);
    EM.matmul_forward(be, out, ri, rw, bias, BT, C, OC);
    em_release(ri, inp), em_release(rw, w);
    em_jitter(out, (size_t)BT * OC);
}
static void em_matmul_backward(dt_backend *be, float *dinp, float *dw, float *dbias,
                               const float *dout, const float *inp, const float *w, int BT, int C,
                               int OC) {
    const float *rd = em_inputs(be, dout, (size_t)BT * OC), *ri = em_inputs(be, inp, (size_t)BT * C);
    const float *rw = em_inputs(be, w, (size_t)OC * C);
    EM.matmul_backward(be, dinp, dw, dbias, rd, ri, rw, BT, C, OC);
    em_release(rd, dout), em_release(ri, inp), em_release(rw, w);
    em_jitter(dinp, (size_t)BT * C), em_jitter(dw, (size_t)OC * C), em_jitter(dbias, (size_t)OC);
}
static void em_attention_forward(dt_backend *be, float *out, float *saved, float *scratch,
                                 const float *qkv, int B, int N, int NH, int HS) {
    const float *rq = em_inputs(be, qkv, (size_t)3 * B * N * NH * HS);
    EM.attention_forward(be, out, saved, scratch, rq, B, N, NH, HS);
    em_release(rq, qkv);
    em_jitter(out, (size_t)B * N * NH * HS);
}
static void em_attention_backward(dt_backend *be, float *dqkv, float *scratch, const float *dout,
                                  const float *qkv, const float *saved, int B, int N, int NH,
                                  int HS) {
    const float *rq = em_inputs(be, qkv, (size_t)3 * B * N * NH * HS);
    const float *rd = em_inputs(be, dout, (size_t)B * N * NH * HS);
    EM.attention_backward(be, dqkv, scratch, rd, rq, saved, B, N, NH, HS);
    em_release(rq, qkv), em_release(rd, dout);
    em_jitter(dqkv, (size_t)3 * B * N * NH * HS);
}
#undef EM

static void emulate_install(dt_backend *be) {
    be->matmul_forward = em_matmul_forward;
    be->matmul_backward = em_matmul_backward;
    be->attention_forward = em_attention_forward;
    be->attention_backward = em_attention_backward;
}

/* ---- op cases: tensors with roles, run on both backends, compared ------------------------ */

typedef enum {
    R_IN,          /* input, identical on both backends */
    R_OUT,         /* written by the op; starts as (identical) junk; compared as is */
    R_ACC,         /* a gradient the op adds into; starts non-zero; compared on the increment */
    R_INOUT,       /* updated in place; compared on the final contents */
    R_INOUT_DELTA, /* updated in place by a small step; compared on the change */
    R_NULL         /* passed as NULL (the op must skip it) */
} t_role;

#define OC_MAX_T 12

typedef struct {
    const char *name;
    t_role role;
    size_t n;      /* elements (float or int32) */
    float *host;   /* initial contents */
    float *res[2]; /* downloaded results, reference and device */
} oc_tensor;

typedef struct opcase opcase;
typedef void (*oc_call_fn)(dt_backend *be, int which, void **p, const opcase *c);

struct opcase {
    const char *op;
    op_kind kind;
    char shape[96];
    oc_call_fn call;
    int nt;
    oc_tensor t[OC_MAX_T];
    int iv[12];      /* integer arguments, meaning per op */
    float fv[4];     /* float arguments */
    uint64_t uv[2];
    dt_step_coefs k;
};

static opcase g_case;

static opcase *oc_begin(const char *op, op_kind kind, oc_call_fn call, const char *fmt, ...) {
    opcase *c = &g_case;
    memset(c, 0, sizeof *c);
    c->op = op;
    c->kind = kind;
    c->call = call;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->shape, sizeof c->shape, fmt, ap);
    va_end(ap);
    return c;
}

/* Adds a tensor of n elements; returns its host buffer (NULL for R_NULL). R_OUT buffers are
 * filled with junk here; the caller fills every other role. */
static float *oc_add(opcase *c, const char *name, t_role role, size_t n) {
    if (c->nt == OC_MAX_T) {
        fprintf(stderr, "test_backend_vs_cpu: too many tensors in %s\n", c->op);
        exit(2);
    }
    oc_tensor *t = &c->t[c->nt++];
    t->name = name;
    t->role = role;
    t->n = n;
    if (role == R_NULL) return NULL;
    t->host = calloc(n ? n : 1, sizeof(float));
    if (!t->host) {
        fprintf(stderr, "test_backend_vs_cpu: out of host memory\n");
        exit(2);
    }
    if (role == R_OUT) fill_normal(t->host, n, 0.0, 1.0);
    return t->host;
}

static float *oc_in(opcase *c, const char *name, size_t n, double mean, double sd) {
    float *h = oc_add(c, name, R_IN, n);
    fill_normal(h, n, mean, sd);
    return h;
}

static int32_t *oc_int(opcase *c, const char *name, size_t n) {
    return (int32_t *)oc_add(c, name, R_IN, n);
}

static void oc_free(opcase *c) {
    for (int i = 0; i < c->nt; i++) {
        free(c->t[i].host);
        free(c->t[i].res[0]);
        free(c->t[i].res[1]);
    }
    c->nt = 0;
}

/* Uploads every tensor to backend `which`, runs the op, downloads every result. zero_acc starts
 * R_ACC tensors at zero instead of their host contents. Returns 0, or -1 after a failed check. */
static int oc_run_on(opcase *c, int which, int zero_acc) {
    dt_backend *be = g_be[which];
    void *p[OC_MAX_T] = {0};
    int ok = 1;
    for (int i = 0; i < c->nt && ok; i++) {
        oc_tensor *t = &c->t[i];
        if (t->role == R_NULL) continue;
        size_t bytes = (t->n ? t->n : 1) * sizeof(float);
        if (!(p[i] = be->alloc(be, bytes))) {
            char why[160];
            snprintf(why, sizeof why, "%s: alloc of %zu bytes failed", be->name, bytes);
            verdict_bool("ops", c->op, c->shape, 0, why);
            ok = 0;
            break;
        }
        if (t->role == R_ACC && zero_acc) be->zero(be, p[i], bytes);
        else be->upload(be, p[i], t->host, bytes);
    }
    if (ok) {
        c->call(be, which, p, c);
        for (int i = 0; i < c->nt; i++) {
            oc_tensor *t = &c->t[i];
            if (t->role == R_IN || t->role == R_NULL) continue;
            if (!t->res[which]) t->res[which] = malloc((t->n ? t->n : 1) * sizeof(float));
            be->download(be, t->res[which], p[i], t->n * sizeof(float));
        }
        ok = sync_ok(be, "ops", c->op, c->shape);
    }
    for (int i = 0; i < c->nt; i++)
        if (p[i]) be->free(be, p[i]);
    return ok ? 0 : -1;
}

static int g_dev_complete = 1; /* the device implements every op (else missing ones are skipped) */

/* Runs the case on both backends and prints one line per compared tensor; frees the case. */
static void oc_run(opcase *c) {
    if (!selected("ops", c->op) || !op_present(g_be[DEV], c->op)) {
        oc_free(c);
        return;
    }
    /* Gradient buffers start at N(0, s^2) with s the size of the op's own contribution, so the
     * increment is neither lost in rounding nor hidden if the device overwrites instead of
     * adding. A first reference run from zero measures s. */
    int has_acc = 0;
    for (int i = 0; i < c->nt; i++) has_acc |= c->t[i].role == R_ACC;
    if (has_acc) {
        if (oc_run_on(c, REF, 1)) goto done;
        for (int i = 0; i < c->nt; i++) {
            oc_tensor *t = &c->t[i];
            if (t->role != R_ACC) continue;
            double s = 0.0;
            for (size_t j = 0; j < t->n; j++) s = fmax(s, fabs(t->res[REF][j]));
            fill_normal(t->host, t->n, 0.0, s > 0.0 ? s : 1.0);
        }
    }
    if (oc_run_on(c, REF, 0) || oc_run_on(c, DEV, 0)) goto done;
    for (int i = 0; i < c->nt; i++) {
        oc_tensor *t = &c->t[i];
        if (t->role == R_IN || t->role == R_NULL) continue;
        const float *base = t->role == R_ACC || t->role == R_INOUT_DELTA ? t->host : NULL;
        char what[96];
        snprintf(what, sizeof what, "%s.%s%s", c->op, t->name,
                 t->role == R_ACC ? " (+=)" : t->role == R_INOUT_DELTA ? " (delta)" : "");
        verdict("ops", what, c->shape, g_prec, compare(t->res[REF], t->res[DEV], base, t->n),
                kind_bound(c->kind));
    }
done:
    oc_free(c);
}

/* ---- op calls: p[] holds backend pointers in the order the builder added tensors ----------- */

#define F(i) ((float *)p[i])
#define I(i) ((int32_t *)p[i])

static void call_matmul_forward(dt_backend *be, int w, void **p, const opcase *c) {
    be->matmul_forward(be, F(0), F(1), F(2), F(3), c->iv[0], c->iv[1], c->iv[2]);
}
static void call_matmul_backward(dt_backend *be, int w, void **p, const opcase *c) {
    be->matmul_backward(be, F(0), F(1), F(2), F(3), F(4), F(5), c->iv[0], c->iv[1], c->iv[2]);
}
/* attention cases own their backend-specific saved/scratch buffers */
static void call_attention(dt_backend *be, int w, void **p, const opcase *c) {
    const int B = c->iv[0], N = c->iv[1], NH = c->iv[2], HS = c->iv[3], backward = c->iv[4];
    size_t ns = be->attention_saved_floats(B, N, NH, HS);
    size_t nx = be->attention_scratch_floats(B, N, NH, HS);
    float *saved = be->alloc(be, (ns ? ns : 1) * sizeof(float));
    float *scratch = be->alloc(be, (nx ? nx : 1) * sizeof(float));
    float *out = backward ? be->alloc(be, (size_t)B * N * NH * HS * sizeof(float)) : F(0);
    if (!saved || !scratch || !out) {
        verdict_bool("ops", c->op, c->shape, 0, "alloc of attention saved/scratch failed");
    } else if (!backward) {
        be->attention_forward(be, out, saved, scratch, F(1), B, N, NH, HS);
    } else { /* p: dqkv, qkv, dout */
        be->attention_forward(be, out, saved, scratch, F(1), B, N, NH, HS);
        be->attention_backward(be, F(0), scratch, F(2), F(1), saved, B, N, NH, HS);
    }
    be->sync(be); /* before freeing memory queued work may still use */
    if (saved) be->free(be, saved);
    if (scratch) be->free(be, scratch);
    if (backward && out) be->free(be, out);
}
/* p: out, mean, rstd, x, mod; shift and scale are chunks iv[4], iv[5] of mod rows */
static void call_ln_forward(dt_backend *be, int w, void **p, const opcase *c) {
    const int D = c->iv[2];
    be->ln_modulate_forward(be, F(0), F(1), F(2), F(3), F(4) + c->iv[4] * D, F(4) + c->iv[5] * D,
                            c->iv[0], c->iv[1], D, c->iv[3]);
}
/* p: dx, dmod, dout, x, mean, rstd, mod */
static void call_ln_backward(dt_backend *be, int w, void **p, const opcase *c) {
    const int D = c->iv[2];
    be->ln_modulate_backward(be, F(0), F(1) + c->iv[4] * D, F(1) + c->iv[5] * D, F(2), F(3), F(4),
                             F(5), F(6) + c->iv[5] * D, c->iv[0], c->iv[1], D, c->iv[3]);
}
/* p: out (or NULL when aliasing), res, y, mod; gate is chunk iv[4] */
static void call_gate_forward(dt_backend *be, int w, void **p, const opcase *c) {
    const int D = c->iv[2];
    float *out = c->iv[5] ? F(1) : F(0);
    be->gate_residual_forward(be, out, F(1), F(2), F(3) + c->iv[4] * D, c->iv[0], c->iv[1], D,
                              c->iv[3]);
}
/* p: dres, dy, dmod, dout, y, mod */
static void call_gate_backward(dt_backend *be, int w, void **p, const opcase *c) {
    const int D = c->iv[2];
    be->gate_residual_backward(be, F(0), F(1), F(2) + c->iv[4] * D, F(3), F(4),
                               F(5) + c->iv[4] * D, c->iv[0], c->iv[1], D, c->iv[3]);
}
static void call_gelu_forward(dt_backend *be, int w, void **p, const opcase *c) {
    be->gelu_forward(be, F(0), F(1), (size_t)c->iv[0]);
}
static void call_gelu_backward(dt_backend *be, int w, void **p, const opcase *c) {
    be->gelu_backward(be, F(0), F(1), F(2), (size_t)c->iv[0]);
}
static void call_silu_forward(dt_backend *be, int w, void **p, const opcase *c) {
    be->silu_forward(be, F(0), F(1), (size_t)c->iv[0]);
}
static void call_silu_backward(dt_backend *be, int w, void **p, const opcase *c) {
    be->silu_backward(be, F(0), F(1), F(2), (size_t)c->iv[0]);
}
static void call_axpy(dt_backend *be, int w, void **p, const opcase *c) {
    be->axpy(be, F(0), c->fv[0], F(1), (size_t)c->iv[0]);
}
static void call_scale(dt_backend *be, int w, void **p, const opcase *c) {
    be->scale(be, F(0), c->fv[0], (size_t)c->iv[0]);
}
static void call_add_rows(dt_backend *be, int w, void **p, const opcase *c) {
    be->add_rows(be, F(0), F(1), c->iv[0], (size_t)c->iv[1]);
}
/* p: y (NULL when it aliases x), x, g1, g2 (NULL for one gamma); iv: rows, cols, alias */
static void call_scale_cols_forward(dt_backend *be, int w, void **p, const opcase *c) {
    be->scale_cols_forward(be, c->iv[2] ? F(1) : F(0), F(1), F(2), F(3), c->iv[0], c->iv[1]);
}
/* p: dx (NULL when it aliases dy), dg1, dg2, dy, x, g1, g2; iv: rows, cols, alias */
static void call_scale_cols_backward(dt_backend *be, int w, void **p, const opcase *c) {
    be->scale_cols_backward(be, c->iv[2] ? F(3) : F(0), F(1), F(2), F(3), F(4), F(5), F(6),
                            c->iv[0], c->iv[1]);
}
static void call_embedding_forward(dt_backend *be, int w, void **p, const opcase *c) {
    be->embedding_forward(be, F(0), F(1), I(2), c->iv[0], c->iv[1]);
}
static void call_embedding_backward(dt_backend *be, int w, void **p, const opcase *c) {
    be->embedding_backward(be, F(0), F(1), I(2), c->iv[0], c->iv[1]);
}
static void call_timestep_embedding(dt_backend *be, int w, void **p, const opcase *c) {
    be->timestep_embedding(be, F(0), I(1), c->iv[0], c->iv[1]);
}
static void call_patchify(dt_backend *be, int w, void **p, const opcase *c) {
    be->patchify(be, F(0), F(1), c->iv[0], c->iv[1], c->iv[2], c->iv[3], c->iv[4]);
}
static void call_unpatchify(dt_backend *be, int w, void **p, const opcase *c) {
    be->unpatchify(be, F(0), F(1), c->iv[0], c->iv[1], c->iv[2], c->iv[3], c->iv[4]);
}
static void call_unpatchify_backward(dt_backend *be, int w, void **p, const opcase *c) {
    be->unpatchify_backward(be, F(0), F(1), c->iv[0], c->iv[1], c->iv[2], c->iv[3], c->iv[4]);
}
static void call_randn(dt_backend *be, int w, void **p, const opcase *c) {
    be->randn(be, F(0), (size_t)c->iv[0], c->uv[0], c->uv[1]);
}
static void call_q_sample(dt_backend *be, int w, void **p, const opcase *c) {
    be->q_sample(be, F(0), F(1), F(2), I(3), &g_tab[w], c->iv[0], c->iv[1]);
}
/* p: loss, dout, model_out, x0, xt, eps, t, weight */
static void call_diffusion_loss(dt_backend *be, int w, void **p, const opcase *c) {
    be->diffusion_loss(be, F(0), F(1), F(2), F(3), F(4), F(5), I(6), F(7), &g_tab[w], c->iv[0],
                       c->iv[1], c->iv[2], c->iv[3]);
}
static void call_cfg_combine(dt_backend *be, int w, void **p, const opcase *c) {
    be->cfg_combine(be, F(0), F(1), c->fv[0], c->iv[0], c->iv[1], c->iv[2], c->iv[3]);
}
/* p: x, model_out, noise */
static void call_ddpm_step(dt_backend *be, int w, void **p, const opcase *c) {
    be->ddpm_step(be, F(0), F(1), F(2), &c->k, c->iv[0], c->iv[1], c->iv[2], c->iv[3]);
}
static void call_ddim_step(dt_backend *be, int w, void **p, const opcase *c) {
    be->ddim_step(be, F(0), F(1), F(2), &c->k, c->iv[0], c->iv[1], c->iv[2], c->iv[3]);
}
static void call_sum_squares(dt_backend *be, int w, void **p, const opcase *c) {
    be->sum_squares(be, F(0), F(1), (size_t)c->iv[0]);
}
static void call_clip_by_norm(dt_backend *be, int w, void **p, const opcase *c) {
    be->clip_by_norm(be, F(0), (size_t)c->iv[0], F(1), c->fv[0]);
}
/* p: param, m, v, grad */
static void call_adamw_update(dt_backend *be, int w, void **p, const opcase *c) {
    be->adamw_update(be, F(0), F(3), F(1), F(2), (size_t)c->iv[0], c->fv[0], 0.9f, 0.999f, 1e-8f,
                     c->fv[1], c->iv[1]);
}
static void call_ema_update(dt_backend *be, int w, void **p, const opcase *c) {
    be->ema_update(be, F(0), F(1), (size_t)c->iv[0], c->fv[0]);
}
/* p: out, inp, w, bias; each backend sizes and owns its scratch. iv: B C H W OC KH KW stride
 * pad_t pad_l pad_b pad_r; uv[0]: the batch the scratch is sized for, when larger than B */
static void call_conv2d_forward(dt_backend *be, int w, void **p, const opcase *c) {
    const int *v = c->iv;
    const int sized_for = c->uv[0] > (uint64_t)v[0] ? (int)c->uv[0] : v[0];
    size_t bytes = be->conv2d_scratch_bytes(be, sized_for, v[1], v[2], v[3], v[4], v[5], v[6],
                                            v[7], v[8], v[9], v[10], v[11]);
    void *scratch = bytes ? be->alloc(be, bytes) : NULL;
    if (bytes && !scratch) {
        verdict_bool("ops", c->op, c->shape, 0, "alloc of the convolution scratch failed");
        return;
    }
    be->conv2d_forward(be, F(0), F(1), F(2), F(3), scratch, v[0], v[1], v[2], v[3], v[4], v[5],
                       v[6], v[7], v[8], v[9], v[10], v[11]);
    be->sync(be); /* before freeing memory queued work may still use */
    if (scratch) be->free(be, scratch);
}
/* p: out (or NULL when in place), x, gamma, beta */
static void call_group_norm_forward(dt_backend *be, int w, void **p, const opcase *c) {
    float *out = c->iv[5] ? F(1) : F(0);
    be->group_norm_forward(be, out, F(1), F(2), F(3), c->iv[0], c->iv[1], c->iv[2], c->iv[3],
                           c->fv[0], c->iv[4]);
}
static void call_upsample2x_forward(dt_backend *be, int w, void **p, const opcase *c) {
    be->upsample2x_forward(be, F(0), F(1), c->iv[0], c->iv[1], c->iv[2], c->iv[3]);
}
static void call_transpose(dt_backend *be, int w, void **p, const opcase *c) {
    be->transpose(be, F(0), F(1), c->iv[0], c->iv[1], c->iv[2]);
}

#undef F
#undef I

/* ---- the op suite ------------------------------------------------------------------------ */

typedef struct {
    const char *name;
    int B, N, NH, HS;           /* token ops: D = NH * HS */
    int BT, C, OC;              /* a dense layer */
    int BT2, C2, OC2;           /* a second one (fc2-like), 0 = none */
    int IC, H, W, P;            /* images: channels, height, width, patch */
    int n;                      /* element-wise length */
    int rows, nlab;             /* label table rows (classes + null), labels per batch */
    int nrand, nsum;            /* randn and sum_squares lengths */
    int temb_B, temb_dim;       /* timestep embedding */
} op_shape;

static const op_shape SHAPES[] = {
    {"tiny", 2, 4, 2, 4, 8, 8, 12, 0, 0, 0, 2, 4, 4, 2, 10, 3, 5, 7, 5, 2, 10},
    {"odd", 3, 17, 3, 8, 51, 37, 29, 17, 5, 3, 3, 6, 9, 3, 1001, 11, 23, 4099, 100003, 17, 64},
    {"dit", 4, 64, 6, 64, 256, 384, 1152, 256, 1536, 384, 4, 32, 32, 4, 393216, 1001, 256,
     (1 << 20) + 3, (1 << 21) + 5, 64, 256},
};

static void ops_dense(const op_shape *s) {
    for (int layer = 0; layer < 2; layer++) {
        const int BT = layer ? s->BT2 : s->BT, C = layer ? s->C2 : s->C, OC = layer ? s->OC2 : s->OC;
        if (!BT) continue;
        for (int nobias = 0; nobias < 2; nobias++) {
            opcase *c = oc_begin("matmul_forward", K_MATMUL, call_matmul_forward,
                                 "%s BT%d C%d OC%d%s", s->name, BT, C, OC, nobias ? " bias=NULL" : "");
            c->iv[0] = BT, c->iv[1] = C, c->iv[2] = OC;
            oc_add(c, "out", R_OUT, (size_t)BT * OC);
            oc_in(c, "inp", (size_t)BT * C, 0.0, 1.0);
            oc_in(c, "w", (size_t)OC * C, 0.0, 1.0 / sqrt(C));
            if (nobias) oc_add(c, "bias", R_NULL, OC);
            else oc_in(c, "bias", OC, 0.0, 1.0);
            oc_run(c);
        }
        /* all gradients; no dinp (patch embedding, t0 layer); dinp only */
        static const char *const variant[] = {"", " dinp=NULL", " dw=dbias=NULL"};
        for (int v = 0; v < 3; v++) {
            opcase *c = oc_begin("matmul_backward", K_MATMUL, call_matmul_backward,
                                 "%s BT%d C%d OC%d%s", s->name, BT, C, OC, variant[v]);
            c->iv[0] = BT, c->iv[1] = C, c->iv[2] = OC;
            oc_add(c, "dinp", v == 1 ? R_NULL : R_ACC, (size_t)BT * C);
            oc_add(c, "dw", v == 2 ? R_NULL : R_ACC, (size_t)OC * C);
            oc_add(c, "dbias", v == 2 ? R_NULL : R_ACC, OC);
            oc_in(c, "dout", (size_t)BT * OC, 0.0, 1.0);
            oc_in(c, "inp", (size_t)BT * C, 0.0, 1.0);
            oc_in(c, "w", (size_t)OC * C, 0.0, 1.0 / sqrt(C));
            oc_run(c);
        }
    }
}

static void ops_attention(const op_shape *s) {
    const int B = s->B, N = s->N, NH = s->NH, HS = s->HS, D = NH * HS;
    const size_t nqkv = (size_t)B * N * 3 * D, nout = (size_t)B * N * D;
    for (int backward = 0; backward < 2; backward++) {
        opcase *c = oc_begin(backward ? "attention_backward" : "attention_forward", K_ATTN,
                             call_attention, "%s B%d N%d NH%d HS%d", s->name, B, N, NH, HS);
        c->iv[0] = B, c->iv[1] = N, c->iv[2] = NH, c->iv[3] = HS, c->iv[4] = backward;
        if (backward) oc_add(c, "dqkv", R_ACC, nqkv);
        else oc_add(c, "out", R_OUT, nout);
        oc_in(c, "qkv", nqkv, 0.0, 1.5); /* logits of spread ~2: peaked but not one-hot rows */
        if (backward) oc_in(c, "dout", nout, 0.0, 1.0);
        oc_run(c);
    }
}

/* adaLN pieces with modulation chunks read at a stride: the final layer's (B, 2D) layout at the
 * tiny shape, a block's (B, 6D) layout otherwise. */
static void ops_norm(const op_shape *s) {
    const int B = s->B, N = s->N, D = s->NH * s->HS;
    const int chunks = s->N < 8 ? 2 : 6, ms = chunks * D;
    const int shift = chunks == 2 ? 0 : 3, scale = chunks == 2 ? 1 : 4, gate = chunks == 2 ? 1 : 5;
    const size_t nx = (size_t)B * N * D, nmod = (size_t)B * ms, rows = (size_t)B * N;
    char shape[96];
    snprintf(shape, sizeof shape, "%s B%d N%d D%d stride %dD", s->name, B, N, D, chunks);

    opcase *c = oc_begin("ln_modulate_forward", K_REDUCE, call_ln_forward, "%s", shape);
    c->iv[0] = B, c->iv[1] = N, c->iv[2] = D, c->iv[3] = ms, c->iv[4] = shift, c->iv[5] = scale;
    oc_add(c, "out", R_OUT, nx);
    oc_add(c, "mean", R_OUT, rows);
    oc_add(c, "rstd", R_OUT, rows);
    oc_in(c, "x", nx, 3.0, 1.5); /* an offset mean: single-pass variance loses digits */
    oc_in(c, "mod", nmod, 0.0, 0.5);
    oc_run(c);

    /* backward from host statistics (double), so it is checked apart from the forward */
    c = oc_begin("ln_modulate_backward", K_REDUCE, call_ln_backward, "%s", shape);
    c->iv[0] = B, c->iv[1] = N, c->iv[2] = D, c->iv[3] = ms, c->iv[4] = shift, c->iv[5] = scale;
    oc_add(c, "dx", R_ACC, nx);
    oc_add(c, "dmod", R_ACC, nmod); /* only the shift and scale chunks may change */
    oc_in(c, "dout", nx, 0.0, 1.0);
    float *x = oc_in(c, "x", nx, 3.0, 1.5);
    float *mean = oc_add(c, "mean", R_IN, rows), *rstd = oc_add(c, "rstd", R_IN, rows);
    for (size_t r = 0; r < rows; r++) {
        double mu = 0.0, var = 0.0;
        for (int d = 0; d < D; d++) mu += x[r * D + d];
        mu /= D;
        for (int d = 0; d < D; d++) var += (x[r * D + d] - mu) * (x[r * D + d] - mu);
        mean[r] = (float)mu;
        rstd[r] = (float)(1.0 / sqrt(var / D + 1e-6));
    }
    oc_in(c, "mod", nmod, 0.0, 0.5);
    oc_run(c);

    for (int alias = 0; alias < 2; alias++) {
        c = oc_begin("gate_residual_forward", K_POINT, call_gate_forward, "%s%s", shape,
                     alias ? " out=res" : "");
        c->iv[0] = B, c->iv[1] = N, c->iv[2] = D, c->iv[3] = ms, c->iv[4] = gate, c->iv[5] = alias;
        if (alias) {
            oc_add(c, "out", R_NULL, nx);
            fill_normal(oc_add(c, "res", R_INOUT, nx), nx, 0.0, 1.0);
        } else {
            oc_add(c, "out", R_OUT, nx);
            oc_in(c, "res", nx, 0.0, 1.0);
        }
        oc_in(c, "y", nx, 0.0, 1.0);
        oc_in(c, "mod", nmod, 0.0, 1.0);
        oc_run(c);
    }
    for (int nores = 0; nores < 2; nores++) {
        c = oc_begin("gate_residual_backward", K_REDUCE, call_gate_backward, "%s%s", shape,
                     nores ? " dres=NULL" : "");
        c->iv[0] = B, c->iv[1] = N, c->iv[2] = D, c->iv[3] = ms, c->iv[4] = gate;
        oc_add(c, "dres", nores ? R_NULL : R_ACC, nx);
        oc_add(c, "dy", R_ACC, nx);
        oc_add(c, "dmod", R_ACC, nmod); /* only the gate chunk may change */
        oc_in(c, "dout", nx, 0.0, 1.0);
        oc_in(c, "y", nx, 0.0, 1.0);
        oc_in(c, "mod", nmod, 0.0, 1.0);
        oc_run(c);
    }
}

/* Activation inputs over the whole range, saturated tails and zero included. */
static float *act_input(opcase *c, size_t n) {
    float *x = oc_in(c, "inp", n, 0.0, 2.5);
    static const float special[] = {0.0f, 30.0f, -30.0f, -9.0f, 9.0f, 1e-4f};
    for (size_t i = 0; i < n && i < sizeof special / sizeof special[0]; i++) x[i] = special[i];
    return x;
}

static void ops_pointwise(const op_shape *s) {
    const size_t n = (size_t)s->n;
    for (int act = 0; act < 2; act++) {
        opcase *c = oc_begin(act ? "silu_forward" : "gelu_forward", K_TRANS,
                             act ? call_silu_forward : call_gelu_forward, "%s n%zu", s->name, n);
        c->iv[0] = (int)n;
        oc_add(c, "out", R_OUT, n);
        act_input(c, n);
        oc_run(c);
        c = oc_begin(act ? "silu_backward" : "gelu_backward", K_TRANS,
                     act ? call_silu_backward : call_gelu_backward, "%s n%zu", s->name, n);
        c->iv[0] = (int)n;
        oc_add(c, "dinp", R_ACC, n);
        act_input(c, n);
        oc_in(c, "dout", n, 0.0, 1.0);
        oc_run(c);
    }
    opcase *c = oc_begin("axpy", K_POINT, call_axpy, "%s n%zu a=-0.37", s->name, n);
    c->iv[0] = (int)n, c->fv[0] = -0.37f;
    fill_normal(oc_add(c, "y", R_INOUT, n), n, 0.0, 1.0);
    oc_in(c, "x", n, 0.0, 1.0);
    oc_run(c);
    c = oc_begin("scale", K_POINT, call_scale, "%s n%zu a=1.7", s->name, n);
    c->iv[0] = (int)n, c->fv[0] = 1.7f;
    fill_normal(oc_add(c, "x", R_INOUT, n), n, 0.0, 1.0);
    oc_run(c);
    const int B = s->B, R = s->N * s->NH * s->HS; /* pos_embed over the batch */
    c = oc_begin("add_rows", K_POINT, call_add_rows, "%s B%d R%d", s->name, B, R);
    c->iv[0] = B, c->iv[1] = R;
    fill_normal(oc_add(c, "x", R_INOUT, (size_t)B * R), (size_t)B * R, 0.0, 1.0);
    oc_in(c, "row", (size_t)R, 0.0, 1.0);
    oc_run(c);
    /* DiffFit's gammas: qkv outputs (one gamma, 3D wide) and proj outputs (two gammas) */
    const int rows = s->B * s->N, D = s->NH * s->HS;
    for (int two = 0; two < 2; two++) {
        const int cols = two ? D : 3 * D;
        const size_t n2 = (size_t)rows * cols;
        for (int alias = 0; alias < 2; alias++) {
            c = oc_begin("scale_cols_forward", K_POINT, call_scale_cols_forward, "%s rows%d cols%d%s%s",
                         s->name, rows, cols, two ? " g1*g2" : "", alias ? " y=x" : "");
            c->iv[0] = rows, c->iv[1] = cols, c->iv[2] = alias;
            if (alias) {
                oc_add(c, "y", R_NULL, n2);
                fill_normal(oc_add(c, "x", R_INOUT, n2), n2, 0.0, 1.0);
            } else {
                oc_add(c, "y", R_OUT, n2);
                oc_in(c, "x", n2, 0.0, 1.0);
            }
            oc_in(c, "g1", (size_t)cols, 1.0, 0.3);
            if (two) oc_in(c, "g2", (size_t)cols, 1.0, 0.3);
            else oc_add(c, "g2", R_NULL, (size_t)cols);
            oc_run(c);
            c = oc_begin("scale_cols_backward", K_REDUCE, call_scale_cols_backward,
                         "%s rows%d cols%d%s%s", s->name, rows, cols, two ? " g1*g2" : "",
                         alias ? " dx=dy" : "");
            c->iv[0] = rows, c->iv[1] = cols, c->iv[2] = alias;
            oc_add(c, "dx", alias ? R_NULL : R_OUT, n2);
            oc_add(c, "dg1", R_ACC, (size_t)cols);
            oc_add(c, "dg2", two ? R_ACC : R_NULL, (size_t)cols);
            if (alias) fill_normal(oc_add(c, "dy", R_INOUT, n2), n2, 0.0, 1.0);
            else oc_in(c, "dy", n2, 0.0, 1.0);
            oc_in(c, "x", n2, 0.0, 1.0);
            oc_in(c, "g1", (size_t)cols, 1.0, 0.3);
            if (two) oc_in(c, "g2", (size_t)cols, 1.0, 0.3);
            else oc_add(c, "g2", R_NULL, (size_t)cols);
            oc_run(c);
        }
    }
}

static void ops_embed(const op_shape *s) {
    const int D = s->NH * s->HS, L = s->nlab;
    for (int backward = 0; backward < 2; backward++) {
        opcase *c = oc_begin(backward ? "embedding_backward" : "embedding_forward",
                             backward ? K_REDUCE : K_LAYOUT,
                             backward ? call_embedding_backward : call_embedding_forward,
                             "%s rows%d B%d D%d dup", s->name, s->rows, L, D);
        c->iv[0] = L, c->iv[1] = D;
        if (backward) {
            oc_add(c, "dtable", R_ACC, (size_t)s->rows * D);
            oc_in(c, "dout", (size_t)L * D, 0.0, 1.0);
        } else {
            oc_add(c, "out", R_OUT, (size_t)L * D);
            oc_in(c, "table", (size_t)s->rows * D, 0.0, 1.0);
        }
        /* labels: mostly a few hot rows (duplicates), the null row, the rest anywhere */
        int32_t *lab = oc_int(c, "labels", (size_t)L);
        for (int b = 0; b < L; b++) {
            double u = urand();
            lab[b] = u < 0.5 ? (int32_t)(urand() * 3) : u < 0.6 ? s->rows - 1 : (int32_t)(urand() * s->rows);
        }
        lab[0] = lab[L - 1] = 1 % s->rows;
        oc_run(c);
    }
    const int TB = s->temb_B, dim = s->temb_dim;
    opcase *c = oc_begin("timestep_embedding", K_TEMB, call_timestep_embedding, "%s B%d dim%d",
                         s->name, TB, dim);
    c->iv[0] = TB, c->iv[1] = dim;
    oc_add(c, "out", R_OUT, (size_t)TB * dim);
    int32_t *t = oc_int(c, "t", (size_t)TB);
    for (int b = 0; b < TB; b++) t[b] = (int32_t)(urand() * 1000);
    t[0] = 0, t[TB - 1] = 999;

    oc_run(c);
    const int B = s->B, C = s->IC, H = s->H, W = s->W, p = s->P, CO = 2 * C;
    const size_t nimg = (size_t)B * C * H * W, nout = (size_t)B * CO * H * W;
    c = oc_begin("patchify", K_LAYOUT, call_patchify, "%s B%d C%d H%d W%d p%d", s->name, B, C, H, W, p);
    c->iv[0] = B, c->iv[1] = C, c->iv[2] = H, c->iv[3] = W, c->iv[4] = p;
    oc_add(c, "out", R_OUT, nimg);
    oc_in(c, "img", nimg, 0.0, 1.0);
    oc_run(c);
    c = oc_begin("unpatchify", K_LAYOUT, call_unpatchify, "%s B%d C%d H%d W%d p%d", s->name, B, CO, H, W, p);
    c->iv[0] = B, c->iv[1] = CO, c->iv[2] = H, c->iv[3] = W, c->iv[4] = p;
    oc_add(c, "img", R_OUT, nout);
    oc_in(c, "tokens", nout, 0.0, 1.0);
    oc_run(c);
    c = oc_begin("unpatchify_backward", K_LAYOUT, call_unpatchify_backward, "%s B%d C%d H%d W%d p%d",
                 s->name, B, CO, H, W, p);
    c->iv[0] = B, c->iv[1] = CO, c->iv[2] = H, c->iv[3] = W, c->iv[4] = p;
    oc_add(c, "dtokens", R_ACC, nout);
    oc_in(c, "dimg", nout, 0.0, 1.0);
    oc_run(c);
}

/* Timesteps of a diffusion batch: 0, 999 and 1 first, the rest anywhere. */
static void diffusion_timesteps(int32_t *t, int B) {
    for (int b = 0; b < B; b++) t[b] = (int32_t)(urand() * 1000);
    if (B > 0) t[0] = 0;
    if (B > 1) t[1] = 999;
    if (B > 2) t[2] = 1;
}

static void ops_diffusion(const op_shape *s) {
    const int B = s->B, C = s->IC, HW = s->H * s->W;
    const size_t n = (size_t)B * C * HW;
    uint64_t seeds[3][2] = {{1234, DT_STREAM_NOISE + 5 * 4096 + 1}, {7, 0},
                            {0xfeedull, DT_STREAM_SAMPLE + (3ull << 16) + 0xFFFF}};
    for (int i = 0; i < 3; i++) {
        opcase *c = oc_begin("randn", K_TRANS, call_randn, "%s n%d seed %llu off %#llx", s->name,
                             s->nrand, (unsigned long long)seeds[i][0], (unsigned long long)seeds[i][1]);
        c->iv[0] = s->nrand, c->uv[0] = seeds[i][0], c->uv[1] = seeds[i][1];
        oc_add(c, "out", R_OUT, (size_t)s->nrand);
        oc_run(c);
    }

    opcase *c = oc_begin("q_sample", K_POINT, call_q_sample, "%s B%d CHW%d", s->name, B, C * HW);
    c->iv[0] = B, c->iv[1] = C * HW;
    oc_add(c, "xt", R_OUT, n);
    fill_pixels(oc_add(c, "x0", R_IN, n), n);
    oc_in(c, "eps", n, 0.0, 1.0);
    diffusion_timesteps(oc_int(c, "t", (size_t)B), B);
    oc_run(c);

    /* learned sigma with weights; eps only with weights; learned sigma with weight = NULL (dout
     * must stay untouched) */
    for (int v = 0; v < 3; v++) {
        const int ls = v != 1, CO = ls ? 2 * C : C;
        const size_t nmo = (size_t)B * CO * HW;
        c = oc_begin("diffusion_loss", K_LOSS, call_diffusion_loss, "%s B%d C%d HW%d%s%s", s->name,
                     B, C, HW, ls ? " learn_sigma" : "", v == 2 ? " weight=NULL" : "");
        c->iv[0] = B, c->iv[1] = C, c->iv[2] = HW, c->iv[3] = ls;
        oc_add(c, "loss", R_OUT, (size_t)B);
        oc_add(c, "dout", R_ACC, nmo);
        float *mo = oc_add(c, "model_out", R_IN, nmo);
        float *x0 = oc_add(c, "x0", R_IN, n), *xt = oc_add(c, "xt", R_IN, n);
        float *eps = oc_in(c, "eps", n, 0.0, 1.0);
        int32_t *t = oc_int(c, "t", (size_t)B);
        fill_pixels(x0, n);
        diffusion_timesteps(t, B);
        for (int b = 0; b < B; b++) {
            double a = sqrt(g_sched.alphas_cumprod[t[b]]), sg = sqrt(1.0 - g_sched.alphas_cumprod[t[b]]);
            for (size_t i = 0; i < (size_t)C * HW; i++) {
                size_t j = (size_t)b * C * HW + i, o = (size_t)b * CO * HW + i;
                xt[j] = (float)(a * x0[j] + sg * eps[j]);
                mo[o] = (float)(eps[j] + 0.3 * nrand()); /* a fair but imperfect prediction */
                if (ls) mo[o + (size_t)C * HW] = (float)(2.0 * urand() - 1.0);
            }
        }
        if (v == 2) oc_add(c, "weight", R_NULL, (size_t)B);
        else fill_uniform(oc_add(c, "weight", R_IN, (size_t)B), (size_t)B, 0.5, 1.5);
        oc_run(c);
    }

    for (int ls = 0; ls < 2; ls++) {
        const int CO = ls ? 2 * C : C;
        const float sc = ls ? 1.5f : 4.0f;
        c = oc_begin("cfg_combine", K_POINT, call_cfg_combine, "%s B%d C%d C_out%d HW%d s=%.1f",
                     s->name, B, C, CO, HW, sc);
        c->iv[0] = B, c->iv[1] = C, c->iv[2] = CO, c->iv[3] = HW, c->fv[0] = sc;
        oc_add(c, "out", R_OUT, (size_t)B * CO * HW);
        oc_in(c, "model_out", (size_t)2 * B * CO * HW, 0.0, 1.0);
        oc_run(c);
    }

    /* Reverse steps at the noise end, the middle, next to last and last of a 10-step chain, and
     * one step of the full 1000-step chain, with and without learned sigma and clipping. */
    static const struct { int chain_i; double eta; int ls, clip; } steps[] = {
        {9, 0.0, 1, 0}, {4, 1.0, 0, 1}, {1, 0.5, 1, 1}, {0, 0.0, 1, 0}, {-500, 0.0, 1, 1},
    };
    for (int ddim = 0; ddim < 2; ddim++) {
        for (size_t v = 0; v < sizeof steps / sizeof steps[0]; v++) {
            const int ls = steps[v].ls, CO = ls ? 2 * C : C;
            const double eta = ddim ? steps[v].eta : 0.0;
            const int full = steps[v].chain_i < 0, i = full ? -steps[v].chain_i : steps[v].chain_i;
            c = oc_begin(ddim ? "ddim_step" : "ddpm_step", K_TRANS, ddim ? call_ddim_step : call_ddpm_step,
                         "%s B%d C%d HW%d i%d/%d%s%s%s", s->name, B, C, HW, i, full ? g_sched.T : g_chain.T,
                         ls ? " ls" : "", steps[v].clip ? " clip" : "", ddim && eta > 0 ? " eta>0" : "");
            c->iv[0] = B, c->iv[1] = C, c->iv[2] = HW, c->iv[3] = ls;
            c->k = diffusion_step_coefs(full ? &g_sched : &g_chain, i, eta);
            c->k.clip_x0 = steps[v].clip;
            fill_normal(oc_add(c, "x", R_INOUT, n), n, 0.0, 1.0);
            float *mo = oc_in(c, "model_out", (size_t)B * CO * HW, 0.0, 1.0);
            if (ls)
                for (int b = 0; b < B; b++)
                    fill_uniform(mo + ((size_t)b * CO + C) * HW, (size_t)C * HW, -1.0, 1.0);
            oc_in(c, "noise", n, 0.0, 1.0);
            oc_run(c);
        }
    }
}

static void ops_optim(const op_shape *s) {
    const size_t ns = (size_t)s->nsum, n = (size_t)s->n;
    opcase *c = oc_begin("sum_squares", K_REDUCE, call_sum_squares, "%s n%zu", s->name, ns);
    c->iv[0] = (int)ns;
    oc_add(c, "out", R_OUT, 1);
    oc_in(c, "x", ns, 0.0, 1.0);
    oc_run(c);

    for (int clips = 0; clips < 2; clips++) {
        c = oc_begin("clip_by_norm", K_POINT, call_clip_by_norm, "%s n%zu %s", s->name, ns,
                     clips ? "clipping" : "not clipping");
        c->iv[0] = (int)ns;
        float *x = oc_add(c, "x", R_INOUT, ns);
        fill_normal(x, ns, 0.0, 1.0);
        double sq = 0.0;
        for (size_t i = 0; i < ns; i++) sq += (double)x[i] * x[i];
        oc_add(c, "norm_sq", R_IN, 1)[0] = (float)sq;
        c->fv[0] = (float)(sqrt(sq) * (clips ? 0.5 : 2.0));
        oc_run(c);
    }

    /* step 1 from zero moments (sign-like first step); step 1000 with moments and decay */
    for (int late = 0; late < 2; late++) {
        c = oc_begin("adamw_update", K_TRANS, call_adamw_update, "%s n%zu step %d%s", s->name, n,
                     late ? 1000 : 1, late ? " wd=0.1" : "");
        c->iv[0] = (int)n, c->iv[1] = late ? 1000 : 1;
        c->fv[0] = 0.1f, c->fv[1] = late ? 0.1f : 0.0f; /* steps well above param rounding */
        fill_uniform(oc_add(c, "param", R_INOUT_DELTA, n), n, -1.0, 1.0);
        float *m = oc_add(c, "m", R_INOUT, n), *v = oc_add(c, "v", R_INOUT, n);
        if (late) {
            fill_normal(m, n, 0.0, 0.05);
            for (size_t i = 0; i < n; i++) v[i] = (float)(0.01 * nrand() * nrand() + 1e-4);
            for (size_t i = 0; i < n; i++) v[i] = fabsf(v[i]);
        }
        oc_in(c, "grad", n, 0.0, 0.1);
        oc_run(c);
    }

    for (int slow = 0; slow < 2; slow++) {
        const float decay = slow ? 0.9999f : 0.75f;
        c = oc_begin("ema_update", K_POINT, call_ema_update, "%s n%zu decay %g", s->name, n, decay);
        c->iv[0] = (int)n, c->fv[0] = decay;
        /* A fast EMA is compared on its change (0.75, not 0.5, so that swapping decay and 1 - decay
         * shows); a slow one moves too little for that and is compared on its value. */
        fill_normal(oc_add(c, "ema", slow ? R_INOUT : R_INOUT_DELTA, n), n, 0.0, 1.0);
        oc_in(c, "param", n, 0.0, 1.0);
        oc_run(c);
    }
}

/* The VAE's layers (forward only, NCHW): convolutions of odd sizes and of the SD VAE's widths,
 * GroupNorm with and without SiLU and in place, upsampling, transposes. */
static void ops_vae(void) {
    /* B C H W OC KH KW stride pad_t pad_l pad_b pad_r bias, scratch sized for a batch of */
    static const int convs[][14] = {
        {2, 3, 7, 5, 4, 3, 3, 1, 1, 1, 1, 1, 1},        /* odd sizes */
        {3, 5, 9, 8, 6, 3, 3, 2, 0, 0, 1, 1, 1},        /* Downsample2D, odd H */
        {2, 7, 6, 5, 3, 1, 1, 1, 0, 0, 0, 0, 0},        /* 1x1, bias NULL */
        {2, 3, 5, 6, 2, 1, 3, 1, 2, 0, 1, 1, 1},        /* every side padded differently */
        {2, 3, 64, 64, 128, 3, 3, 1, 1, 1, 1, 1, 1},    /* conv_in */
        {2, 128, 32, 32, 128, 3, 3, 1, 1, 1, 1, 1, 1},  /* resnet conv */
        {2, 128, 32, 32, 128, 3, 3, 2, 0, 0, 1, 1, 1},  /* downsample */
        {1, 512, 16, 16, 512, 3, 3, 1, 1, 1, 1, 1, 1},  /* mid block width */
        {2, 256, 16, 16, 512, 1, 1, 1, 0, 0, 0, 0, 1},  /* conv_shortcut */
        {4, 64, 512, 512, 64, 3, 3, 2, 0, 0, 1, 1, 1},  /* padded copy in chunks of 3 and 1 */
        /* a last, smaller batch on scratch sized for the full one */
        {3, 128, 32, 32, 128, 3, 3, 2, 0, 0, 1, 1, 1, 16},
        {1, 256, 24, 24, 256, 3, 3, 1, 1, 1, 1, 1, 1, 9},
    };
    for (size_t i = 0; i < sizeof convs / sizeof convs[0]; i++) {
        const int *v = convs[i];
        const int Ho = (v[2] + v[8] + v[10] - v[5]) / v[7] + 1;
        const int Wo = (v[3] + v[9] + v[11] - v[6]) / v[7] + 1;
        char sized[32] = "";
        if (v[13]) snprintf(sized, sizeof sized, " scratch for B%d", v[13]);
        opcase *c = oc_begin("conv2d_forward", K_CONV, call_conv2d_forward,
                             "B%d C%d %dx%d OC%d k%dx%d s%d pad %d,%d,%d,%d%s%s", v[0], v[1],
                             v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[11],
                             v[12] ? "" : " bias=NULL", sized);
        memcpy(c->iv, v, 12 * sizeof(int));
        c->uv[0] = (uint64_t)v[13];
        oc_add(c, "out", R_OUT, (size_t)v[0] * v[4] * Ho * Wo);
        oc_in(c, "inp", (size_t)v[0] * v[1] * v[2] * v[3], 0.0, 1.0);
        oc_in(c, "w", (size_t)v[4] * v[1] * v[5] * v[6], 0.0, 1.0 / sqrt(v[1] * v[5] * v[6]));
        if (v[12]) oc_in(c, "bias", (size_t)v[4], 0.0, 1.0);
        else oc_add(c, "bias", R_NULL, (size_t)v[4]);
        oc_run(c);
    }

    /* B C HW G silu in-place */
    static const int norms[][6] = {
        {2, 64, 35, 32, 0, 0}, {2, 64, 35, 32, 1, 0}, {3, 12, 11, 4, 1, 1},
        {2, 128, 128 * 128, 32, 1, 0}, /* 4 chunks per slab */
        {1, 512, 32 * 32, 32, 0, 1},   /* exactly one chunk, in place */
    };
    for (size_t i = 0; i < sizeof norms / sizeof norms[0]; i++) {
        const int *v = norms[i];
        const size_t n = (size_t)v[0] * v[1] * v[2];
        opcase *c = oc_begin("group_norm_forward", K_REDUCE, call_group_norm_forward,
                             "B%d C%d HW%d G%d%s%s", v[0], v[1], v[2], v[3], v[4] ? " silu" : "",
                             v[5] ? " out=x" : "");
        memcpy(c->iv, v, 6 * sizeof(int));
        c->fv[0] = 1e-6f;
        if (v[5]) {
            oc_add(c, "out", R_NULL, n);
            fill_normal(oc_add(c, "x", R_INOUT, n), n, 3.0, 1.5);
        } else {
            oc_add(c, "out", R_OUT, n);
            oc_in(c, "x", n, 3.0, 1.5); /* an offset mean: a one-pass variance loses digits */
        }
        oc_in(c, "gamma", (size_t)v[1], 1.0, 0.3);
        oc_in(c, "beta", (size_t)v[1], 0.0, 0.5);
        oc_run(c);
    }

    static const int ups[][4] = {{2, 3, 5, 7}, {2, 128, 32, 32}};
    for (size_t i = 0; i < 2; i++) {
        const int *v = ups[i];
        const size_t n = (size_t)v[0] * v[1] * v[2] * v[3];
        opcase *c = oc_begin("upsample2x_forward", K_LAYOUT, call_upsample2x_forward,
                             "B%d C%d %dx%d", v[0], v[1], v[2], v[3]);
        memcpy(c->iv, v, 4 * sizeof(int));
        oc_add(c, "out", R_OUT, 4 * n);
        oc_in(c, "x", n, 0.0, 1.0);
        oc_run(c);
    }

    static const int trs[][3] = {{3, 37, 45}, {2, 4096, 128}, {2, 128, 4096}};
    for (size_t i = 0; i < 3; i++) {
        const int *v = trs[i];
        const size_t n = (size_t)v[0] * v[1] * v[2];
        opcase *c = oc_begin("transpose", K_LAYOUT, call_transpose, "B%d R%d C%d", v[0], v[1],
                             v[2]);
        memcpy(c->iv, v, 3 * sizeof(int));
        oc_add(c, "out", R_OUT, n);
        oc_in(c, "x", n, 0.0, 1.0);
        oc_run(c);
    }
}

/* Every op at every shape, at the device's current precision. */
static void run_op_suite(void) {
    for (size_t i = 0; i < sizeof SHAPES / sizeof SHAPES[0]; i++) {
        const op_shape *s = &SHAPES[i];
        ops_dense(s);
        ops_attention(s);
        ops_norm(s);
        ops_pointwise(s);
        ops_embed(s);
        ops_diffusion(s);
        ops_optim(s);
    }
    ops_vae();
}

/* ---- engine level: a small DiT trained and sampled on both backends ---------------------- */

/* DiT-S/4-like but tiny: 16x16x4 images, patch 4 (16 tokens), hidden 64, depth 2, 4 heads,
 * 10 classes, learned sigma. */
#define E_SEED 20240611ull
#define E_BATCH 8

typedef struct {
    int B;
    float *x0; /* (B, C, H, W) */
    int32_t *t, *y;
    float *w;
} host_batch;

/* The training state of one backend, laid out like train.c's (grad_accum = 1). */
typedef struct {
    dt_backend *be;
    int which;
    dit_model m;
    dit_acts acts;
    int B;
    size_t P, img, oimg;
    float *params, *grads, *adam_m, *adam_v, *ema; /* (P) */
    float *x0, *eps, *xt, *out, *dout;             /* (B, C[_out], H, W) */
    float *loss, *w, *norm_sq;                     /* (B), (B), (1) */
    int32_t *t, *y;                                /* (B) */
} rig;

static void rig_free(rig *r) {
    if (!r->be) return;
    dt_backend *be = r->be;
    void *bufs[] = {r->params, r->grads, r->adam_m, r->adam_v, r->ema, r->x0, r->eps, r->xt,
                    r->out, r->dout, r->loss, r->w, r->norm_sq, r->t, r->y};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        if (bufs[i]) be->free(be, bufs[i]);
    if (r->acts.block) dit_acts_free(&r->acts, &r->m);
    if (r->m.params) dit_model_free(&r->m);
    memset(r, 0, sizeof *r);
}

/* Model, activations and every buffer of a step on backend `which`. Returns 0, or -1 after a
 * failed check. */
static int rig_init(rig *r, int which, const dit_config *cfg, int B, const char *group) {
    memset(r, 0, sizeof *r);
    dt_backend *be = g_be[which];
    char err[256];
    r->be = be;
    r->which = which;
    r->B = B;
    if (dit_model_init(&r->m, cfg, be, err, sizeof err) ||
        dit_acts_alloc(&r->acts, &r->m, B, 1, err, sizeof err)) {
        verdict_bool(group, "setup", be->name, 0, err);
        rig_free(r);
        return -1;
    }
    r->P = r->m.num_floats;
    r->img = (size_t)cfg->in_channels * cfg->image_size * cfg->image_size;
    r->oimg = (size_t)cfg->out_channels * cfg->image_size * cfg->image_size;
    const size_t fb = sizeof(float);
    float **pb[] = {&r->params, &r->grads, &r->adam_m, &r->adam_v, &r->ema};
    int ok = 1;
    for (int i = 0; i < 5; i++) ok = ok && (*pb[i] = be->alloc(be, r->P * fb));
    ok = ok && (r->x0 = be->alloc(be, B * r->img * fb)) && (r->eps = be->alloc(be, B * r->img * fb)) &&
         (r->xt = be->alloc(be, B * r->img * fb)) && (r->out = be->alloc(be, B * r->oimg * fb)) &&
         (r->dout = be->alloc(be, B * r->oimg * fb)) && (r->loss = be->alloc(be, B * fb)) &&
         (r->w = be->alloc(be, B * fb)) && (r->norm_sq = be->alloc(be, fb)) &&
         (r->t = be->alloc(be, B * sizeof(int32_t))) && (r->y = be->alloc(be, B * sizeof(int32_t)));
    if (!ok) {
        verdict_bool(group, "setup", be->name, 0, "out of backend memory");
        rig_free(r);
        return -1;
    }
    return 0;
}

/* Forward, loss and backward of one batch as train.c's step runs them: grads = d loss. */
static void rig_forward_backward(rig *r, const host_batch *hb, int step) {
    dt_backend *be = r->be;
    const dit_config *c = &r->m.cfg;
    const int B = r->B, HW = c->image_size * c->image_size;
    be->zero(be, r->grads, r->P * sizeof(float));
    be->upload(be, r->x0, hb->x0, B * r->img * sizeof(float));
    be->upload(be, r->t, hb->t, B * sizeof(int32_t));
    be->upload(be, r->y, hb->y, B * sizeof(int32_t));
    be->upload(be, r->w, hb->w, B * sizeof(float));
    be->randn(be, r->eps, B * r->img, E_SEED, DT_STREAM_NOISE + (uint64_t)step * 4096);
    be->q_sample(be, r->xt, r->x0, r->eps, r->t, &g_tab[r->which], B, (int)r->img);
    dit_forward(&r->m, r->params, &r->acts, r->xt, r->t, r->y, B, r->out);
    be->zero(be, r->dout, B * r->oimg * sizeof(float));
    be->diffusion_loss(be, r->loss, r->dout, r->out, r->x0, r->xt, r->eps, r->t, r->w,
                       &g_tab[r->which], B, c->in_channels, HW, c->learn_sigma);
    dit_backward(&r->m, r->params, r->grads, &r->acts, r->dout, r->y, B);
}

/* Clip (when clip > 0), AdamW and EMA, as train.c's step ends. */
static void rig_optimize(rig *r, int step, float lr, float wd, float clip, float ema_decay) {
    dt_backend *be = r->be;
    if (clip > 0) {
        be->sum_squares(be, r->norm_sq, r->grads, r->P);
        be->clip_by_norm(be, r->grads, r->P, r->norm_sq, clip);
    }
    be->adamw_update(be, r->params, r->grads, r->adam_m, r->adam_v, r->P, lr, 0.9f, 0.999f, 1e-8f,
                     wd, step);
    be->ema_update(be, r->ema, r->params, r->P, ema_decay);
}

static void rig_set_params(rig *r, const float *host) {
    const size_t bytes = r->P * sizeof(float);
    r->be->upload(r->be, r->params, host, bytes);
    r->be->copy(r->be, r->ema, r->params, bytes);
    r->be->zero(r->be, r->adam_m, bytes);
    r->be->zero(r->be, r->adam_v, bytes);
}

static float *download(rig *r, const void *src, size_t n) {
    float *h = malloc((n ? n : 1) * sizeof(float));
    r->be->download(r->be, h, src, n * sizeof(float));
    return h;
}

/* The batch of `step`, a pure function of it: class patterns in quantised pixels, some labels
 * dropped to the null class, timesteps anywhere with 0 and 999 showing up regularly. */
static void make_batch(host_batch *hb, const dit_config *c, int step) {
    const int S = c->image_size, C = c->in_channels;
    const uint64_t st = (uint64_t)step * 65536;
    for (int b = 0; b < hb->B; b++) {
        int label = (int)dt_rng_below(E_SEED, DT_STREAM_LABELS + st, (uint64_t)b, (uint32_t)c->num_classes);
        float *img = hb->x0 + (size_t)b * C * S * S;
        for (int ch = 0; ch < C; ch++)
            for (int h = 0; h < S; h++)
                for (int w = 0; w < S; w++) {
                    uint64_t idx = (((uint64_t)b * C + ch) * S + h) * S + w;
                    double v = 0.7 * sin(0.5 * (h + 1) * (1 + label % 3) + 0.9 * ch + 0.3 * label) *
                                   cos(0.35 * (w + 1) * (1 + (label / 3) % 3)) +
                               0.1 * dt_philox_normal(E_SEED, DT_STREAM_FLIP + st, idx);
                    v = fmin(1.0, fmax(-1.0, v));
                    img[(ch * S + h) * S + w] = (float)(nearbyint((v + 1.0) * 127.5) / 127.5 - 1.0);
                }
        int drop = dt_rng_uniform(E_SEED, DT_STREAM_DROPOUT + st, (uint64_t)b) < 0.1f;
        hb->y[b] = drop ? c->num_classes : label;
        hb->t[b] = (int32_t)dt_rng_below(E_SEED, DT_STREAM_TIMESTEP + st, (uint64_t)b, 1000);
        hb->w[b] = b == hb->B - 1 ? 0.5f : 1.0f;
    }
    if (step % 5 == 0) hb->t[0] = 0;
    if (step % 7 == 0 && hb->B > 1) hb->t[1] = 999;
}

static int batch_alloc(host_batch *hb, const dit_config *c, int B) {
    hb->B = B;
    hb->x0 = malloc((size_t)B * c->in_channels * c->image_size * c->image_size * sizeof(float));
    hb->t = malloc(B * sizeof(int32_t));
    hb->y = malloc(B * sizeof(int32_t));
    hb->w = malloc(B * sizeof(float));
    return hb->x0 && hb->t && hb->y && hb->w ? 0 : -1;
}

static void batch_free(host_batch *hb) {
    free(hb->x0), free(hb->t), free(hb->y), free(hb->w);
}

/* From-scratch weights plus N(0, sd^2) everywhere (sd = 0: the plain initialisation, whose zero
 * adaLN and final layer would hide most gradients from a one-step check). */
static float *engine_weights(const dit_model *m, double sd) {
    float *h = malloc(m->num_floats * sizeof(float));
    dit_init_host(m, h, E_SEED);
    for (size_t i = 0; sd > 0 && i < m->num_floats; i++)
        h[i] += (float)(sd * dt_philox_normal(E_SEED, DT_STREAM_INIT - 1, i));
    return h;
}

/* Worst per-tensor error over the parameter block: each tensor normalised by its own scale. */
static errstat compare_params(const dit_model *m, const float *ref, const float *dev,
                              const float *base, const char **worst_name) {
    errstat worst = {0, 0, 0, 0, 0};
    *worst_name = m->params[0].name;
    for (int i = 0; i < m->n_params; i++) {
        const dit_param *p = &m->params[i];
        errstat e = compare(ref + p->offset, dev + p->offset, base ? base + p->offset : NULL, p->numel);
        if (!(e.err <= worst.err)) {
            e.at += p->offset;
            worst = e;
            *worst_name = p->name;
        }
    }
    return worst;
}

static void engine_config(dit_config *cfg) {
    char err[256];
    if (dit_config_init(cfg, 2, 64, 4, 4, 16, 4, 10, 1, err, sizeof err)) {
        fprintf(stderr, "test_backend_vs_cpu: %s\n", err);
        exit(2);
    }
}

/* One training step on both backends: q_sample, forward, loss, every gradient, then the
 * optimiser from a mid-training state (non-zero second moments, so the AdamW step is smooth in
 * the gradient rather than its sign, which is arbitrary for gradients near zero). */
static void check_step(void) {
    if (!selected("step", NULL)) return;
    double t0 = now_s();
    dit_config cfg;
    engine_config(&cfg);
    char shape[96];
    snprintf(shape, sizeof shape, "D%d L%d NH%d p%d %dx%dx%d B%d", cfg.hidden, cfg.depth, cfg.heads,
             cfg.patch, cfg.image_size, cfg.image_size, cfg.in_channels, E_BATCH);
    rig r[2];
    if (rig_init(&r[REF], REF, &cfg, E_BATCH, "step")) return;
    if (rig_init(&r[DEV], DEV, &cfg, E_BATCH, "step")) {
        rig_free(&r[REF]);
        return;
    }
    const size_t P = r[REF].P, nimg = E_BATCH * r[REF].img, nout = E_BATCH * r[REF].oimg;
    host_batch hb;
    batch_alloc(&hb, &cfg, E_BATCH);
    make_batch(&hb, &cfg, 35); /* 35: both t = 0 and t = 999 present */
    float *w0 = engine_weights(&r[REF].m, 0.03);
    float *xt[2], *out[2], *loss[2], *dout[2], *grads[2];
    int ok = 1;
    for (int k = 0; k < 2; k++) {
        rig_set_params(&r[k], w0);
        rig_forward_backward(&r[k], &hb, 35);
        xt[k] = download(&r[k], r[k].xt, nimg);
        out[k] = download(&r[k], r[k].out, nout);
        loss[k] = download(&r[k], r[k].loss, E_BATCH);
        dout[k] = download(&r[k], r[k].dout, nout);
        grads[k] = download(&r[k], r[k].grads, P);
        ok = sync_ok(r[k].be, "step", "forward+backward", shape) && ok;
    }
    if (ok) {
        const double bound = B_STEP_OUT * g_tol_scale;
        verdict("step", "q_sample xt", shape, "fp32", compare(xt[0], xt[1], NULL, nimg), bound);
        verdict("step", "dit_forward out", shape, "fp32", compare(out[0], out[1], NULL, nout), bound);
        verdict("step", "diffusion_loss loss", shape, "fp32",
                compare(loss[0], loss[1], NULL, E_BATCH), bound);
        verdict("step", "diffusion_loss dout", shape, "fp32", compare(dout[0], dout[1], NULL, nout),
                bound);
        for (int i = 0; i < r[REF].m.n_params; i++) {
            const dit_param *p = &r[REF].m.params[i];
            char what[96];
            snprintf(what, sizeof what, "grad %s", p->name);
            verdict("step", what, shape, "fp32",
                    compare(grads[0] + p->offset, grads[1] + p->offset, NULL, p->numel),
                    B_STEP_GRAD * g_tol_scale);
        }

        /* Optimiser: m = 0, v = 1e-4 rms(g)^2 per tensor, clip at half the reference norm. */
        float *v0 = calloc(P, sizeof(float));
        double norm_sq = 0.0;
        for (int i = 0; i < r[REF].m.n_params; i++) {
            const dit_param *p = &r[REF].m.params[i];
            double s = 0.0;
            const float *g = grads[0] + p->offset;
            for (size_t j = 0; j < p->numel; j++) s += (double)g[j] * g[j];
            norm_sq += s;
            for (size_t j = 0; j < p->numel; j++) v0[p->offset + j] = (float)(1e-4 * s / p->numel);
        }
        float *params[2], *m[2], *v[2], *ema[2], *nsq[2];
        for (int k = 0; k < 2; k++) {
            r[k].be->upload(r[k].be, r[k].adam_v, v0, P * sizeof(float));
            rig_optimize(&r[k], 10, 1e-2f, 0.01f, (float)(0.5 * sqrt(norm_sq)), 0.99f);
            params[k] = download(&r[k], r[k].params, P);
            m[k] = download(&r[k], r[k].adam_m, P);
            v[k] = download(&r[k], r[k].adam_v, P);
            ema[k] = download(&r[k], r[k].ema, P);
            nsq[k] = download(&r[k], r[k].norm_sq, 1);
            ok = sync_ok(r[k].be, "step", "optimizer", shape) && ok;
        }
        if (ok) {
            const char *name;
            char what[160];
            const double bound = B_STEP_OPT * g_tol_scale;
            verdict("step", "sum_squares grad norm^2", shape, "fp32", compare(nsq[0], nsq[1], NULL, 1),
                    bound);
            errstat e = compare_params(&r[REF].m, params[0], params[1], w0, &name);
            snprintf(what, sizeof what, "adamw params (delta) worst %s", name);
            verdict("step", what, shape, "fp32", e, bound);
            e = compare_params(&r[REF].m, m[0], m[1], NULL, &name);
            snprintf(what, sizeof what, "adamw m worst %s", name);
            verdict("step", what, shape, "fp32", e, bound);
            e = compare_params(&r[REF].m, v[0], v[1], v0, &name);
            snprintf(what, sizeof what, "adamw v (delta) worst %s", name);
            verdict("step", what, shape, "fp32", e, bound);
            e = compare_params(&r[REF].m, ema[0], ema[1], NULL, &name);
            snprintf(what, sizeof what, "ema worst %s", name);
            verdict("step", what, shape, "fp32", e, bound);
        }
        for (int k = 0; k < 2; k++)
            free(params[k]), free(m[k]), free(v[k]), free(ema[k]), free(nsq[k]);
        free(v0);
    }
    for (int k = 0; k < 2; k++) {
        free(xt[k]), free(out[k]), free(loss[k]), free(dout[k]), free(grads[k]);
        rig_free(&r[k]);
    }
    free(w0);
    batch_free(&hb);
    printf("# step: %.2f s\n", now_s() - t0);
}

/* K steps of from-scratch training on backend `which` at precision prec; per-step mean losses
 * into curve (K). Returns 0, or -1 after a failed check. */
static int train_curve(int which, dt_precision prec, const dit_config *cfg, int K, double *curve) {
    rig r;
    if (rig_init(&r, which, cfg, E_BATCH, "train")) return -1;
    dt_precision keep = r.be->precision;
    r.be->precision = prec;
    host_batch hb;
    batch_alloc(&hb, cfg, E_BATCH);
    float *w0 = engine_weights(&r.m, 0.0), loss[E_BATCH];
    rig_set_params(&r, w0);
    int rc = 0;
    for (int step = 1; step <= K && rc == 0; step++) {
        make_batch(&hb, cfg, step);
        rig_forward_backward(&r, &hb, step);
        rig_optimize(&r, step, 1e-3f, 0.0f, 1.0f, 0.9999f);
        r.be->download(r.be, loss, r.loss, sizeof loss);
        if (!sync_ok(r.be, "train", "training step", r.be->name)) rc = -1;
        double s = 0.0;
        for (int b = 0; b < E_BATCH; b++) s += loss[b];
        curve[step - 1] = s / E_BATCH;
    }
    r.be->precision = keep;
    free(w0);
    batch_free(&hb);
    rig_free(&r);
    return rc;
}

static double mean_last(const double *x, int K, int n) {
    double s = 0.0;
    int from = K > n ? K - n : 0;
    for (int i = from; i < K; i++) s += x[i];
    return s / (K - from);
}

/* The loss curves of K steps on both backends from the same weights and batches. */
static void check_train(int K, int with_bf16) {
    if (!selected("train", NULL) || K <= 0) return;
    double t0 = now_s();
    dit_config cfg;
    engine_config(&cfg);
    double *ref = calloc((size_t)K, sizeof(double)), *dev = calloc((size_t)K, sizeof(double));
    if (train_curve(REF, DT_PRECISION_FP32, &cfg, K, ref)) goto done;
    printf("# train: reference (%s) %d steps %.2f s\n", g_be[REF]->name, K, now_s() - t0);
    if (K >= 20) {
        char why[128];
        double first = 0.0;
        for (int i = 0; i < 10; i++) first += ref[i] / 10;
        snprintf(why, sizeof why, "reference loss: first 10 %.4f, last 10 %.4f", first, mean_last(ref, K, 10));
        verdict_bool("train", "reference loss decreases", "", mean_last(ref, K, 10) < first, why);
    }
    for (int pass = 0; pass < (with_bf16 ? 2 : 1); pass++) {
        const dt_precision prec = pass ? DT_PRECISION_BF16 : DT_PRECISION_FP32;
        const char *pn = pass ? "bf16" : "fp32";
        double t1 = now_s();
        if (train_curve(DEV, prec, &cfg, K, dev)) continue;
        printf("# train: device (%s, %s) %d steps %.2f s\n", g_be[DEV]->name, pn, K, now_s() - t1);
        double worst = 0.0;
        for (int i = 0; i < K; i++) {
            double rel = fabs(dev[i] - ref[i]) / fmax(fabs(ref[i]), 1e-12);
            worst = fmax(worst, isfinite(rel) ? rel : INFINITY);
            if ((i + 1) % 10 == 0 || i == 0 || i == K - 1)
                printf("# train %s step %4d  ref %.6f  dev %.6f  rel %.2e\n", pn, i + 1, ref[i], dev[i], rel);
        }
        printf("# train %s: worst per-step relative difference %.2e (information)\n", pn, worst);
        double a = mean_last(ref, K, 10), b = mean_last(dev, K, 10);
        errstat e = {fabs(b - a) / fmax(fabs(a), 1e-12), 0, 0, a, b};
        if (!isfinite(e.err)) e.err = INFINITY;
        char shape[64], what[64];
        snprintf(shape, sizeof shape, "D%d L%d B%d %d steps", cfg.hidden, cfg.depth, E_BATCH, K);
        snprintf(what, sizeof what, "mean loss of last %d steps", K < 10 ? K : 10);
        verdict("train", what, shape, pn, e, (pass ? B_TRAIN_BF16 : B_TRAIN_FP32) * g_tol_scale);
    }
    printf("# train: %.2f s\n", now_s() - t0);
done:
    free(ref);
    free(dev);
}

/* DDPM and DDIM chains with guidance from the same weights on both backends. */
static void check_sample(void) {
    if (!selected("sample", NULL)) return;
    double t0 = now_s();
    dit_config cfg;
    engine_config(&cfg);
    static const struct { const char *name; int steps, ddim; double eta; float cfg; int clip; } runs[] = {
        {"ddpm 10 steps cfg 4", 10, 0, 0.0, 4.0f, 0},
        {"ddpm 10 steps unguided clip", 10, 0, 0.0, 1.0f, 1},
        {"ddim 10 steps cfg 1.5 clip", 10, 1, 0.0, 1.5f, 1},
        {"ddim 10 steps eta 1 cfg 4", 10, 1, 1.0, 4.0f, 0},
    };
    const int B = 4;
    const int32_t labels[4] = {0, 3, 7, cfg.num_classes}; /* the last one is the null class */
    dit_model m[2];
    float *params[2] = {0};
    char err[256];
    int ok = 1;
    float *w0 = NULL;
    for (int k = 0; k < 2; k++) {
        memset(&m[k], 0, sizeof m[k]);
        if (!ok) continue;
        if (dit_model_init(&m[k], &cfg, g_be[k], err, sizeof err)) {
            verdict_bool("sample", "setup", g_be[k]->name, 0, err);
            ok = 0;
            continue;
        }
        if (!w0) w0 = engine_weights(&m[k], 0.03);
        params[k] = g_be[k]->alloc(g_be[k], m[k].num_floats * sizeof(float));
        if (!params[k]) ok = 0;
        else g_be[k]->upload(g_be[k], params[k], w0, m[k].num_floats * sizeof(float));
    }
    const size_t n = (size_t)B * cfg.in_channels * cfg.image_size * cfg.image_size;
    float *img[2] = {malloc(n * sizeof(float)), malloc(n * sizeof(float))};
    for (size_t i = 0; ok && i < sizeof runs / sizeof runs[0]; i++) {
        dt_sampler_opts o = {.steps = runs[i].steps, .ddim = runs[i].ddim, .eta = runs[i].eta,
                             .cfg = runs[i].cfg, .clip_x0 = runs[i].clip};
        char shape[64];
        snprintf(shape, sizeof shape, "D%d L%d B%d", cfg.hidden, cfg.depth, B);
        int run_ok = 1;
        for (int k = 0; k < 2 && run_ok; k++) {
            dt_sampler s;
            if (sampler_init(&s, &m[k], &g_sched, &o, B, err, sizeof err)) {
                verdict_bool("sample", runs[i].name, g_be[k]->name, 0, err);
                run_ok = 0;
                break;
            }
            int rc = sampler_run(&s, params[k], labels, B, E_SEED, 3, img[k], NULL);
            if (rc) {
                char why[512];
                snprintf(why, sizeof why, "%s: sampler_run returned %d: %s", g_be[k]->name, rc,
                         backend_error(g_be[k]));
                verdict_bool("sample", runs[i].name, shape, 0, why);
                run_ok = 0;
            }
            sampler_free(&s);
        }
        if (run_ok)
            verdict("sample", runs[i].name, shape, "fp32", compare(img[0], img[1], NULL, n),
                    B_SAMPLE * g_tol_scale);
    }
    for (int k = 0; k < 2; k++) {
        if (params[k]) g_be[k]->free(g_be[k], params[k]);
        if (m[k].params) dit_model_free(&m[k]);
        free(img[k]);
    }
    free(w0);
    printf("# sample: %.2f s\n", now_s() - t0);
}

/* ---- main -------------------------------------------------------------------------------- */

static void usage(FILE *f) {
    fprintf(f,
            "usage: test_backend_vs_cpu [--ref cpu] [--dev cuda:0] [--precision fp32|bf16|both]\n"
            "         [--tol-scale X] [--train-steps K] [--perturb OP] [--only LIST]\n"
            "         [--emulate-bf16] [--jitter X] [--skip-without-device] [--verbose]\n"
            "  --only LIST   comma-separated groups (ops, step, train, sample) and/or op names\n"
            "  --perturb OP  damage one output element of OP on the device (the suite must fail)\n"
            "  --emulate-bf16, --jitter X   calibration on a CPU device: bf16-rounded matmul\n"
            "                inputs in bf16 mode / relative noise X on matmul and attention outputs\n");
}

/* The value of option `name` when argv[*i] is it (advancing *i past the value), else NULL.
 * A missing value is a usage error. */
static const char *opt_value(int argc, char **argv, int *i, const char *name) {
    if (strcmp(argv[*i], name)) return NULL;
    if (*i + 1 >= argc) {
        fprintf(stderr, "%s needs a value\n", name);
        exit(2);
    }
    return argv[++*i];
}

int main(int argc, char **argv) {
    const char *ref_name = "cpu", *dev_name = "cuda:0", *precision = "fp32", *perturb = NULL;
    int train_steps = 100, skip_without_device = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if ((v = opt_value(argc, argv, &i, "--ref"))) ref_name = v;
        else if ((v = opt_value(argc, argv, &i, "--dev"))) dev_name = v;
        else if ((v = opt_value(argc, argv, &i, "--precision"))) precision = v;
        else if ((v = opt_value(argc, argv, &i, "--tol-scale"))) g_tol_scale = atof(v);
        else if ((v = opt_value(argc, argv, &i, "--train-steps"))) train_steps = atoi(v);
        else if ((v = opt_value(argc, argv, &i, "--perturb"))) perturb = v;
        else if ((v = opt_value(argc, argv, &i, "--only"))) g_only = v;
        else if ((v = opt_value(argc, argv, &i, "--jitter"))) g_jitter = atof(v);
        else if (!strcmp(a, "--emulate-bf16")) g_emulate_bf16 = 1;
        else if (!strcmp(a, "--skip-without-device")) skip_without_device = 1;
        else if (!strcmp(a, "--verbose")) g_verbose = 1;
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "unknown argument %s\n", a);
            usage(stderr);
            return 2;
        }
    }
    int want_fp32 = !strcmp(precision, "fp32") || !strcmp(precision, "both");
    int want_bf16 = !strcmp(precision, "bf16") || !strcmp(precision, "both");
    if (!want_fp32 && !want_bf16) {
        fprintf(stderr, "--precision must be fp32, bf16 or both\n");
        return 2;
    }
    if (!(g_tol_scale > 0)) {
        fprintf(stderr, "--tol-scale must be positive\n");
        return 2;
    }

    char err[256];
    if (!(g_be[REF] = dt_backend_create(ref_name, err, sizeof err))) {
        fprintf(stderr, "reference backend %s: %s\n", ref_name, err);
        return 2;
    }
    if (!(g_be[DEV] = dt_backend_create(dev_name, err, sizeof err))) {
        fprintf(stderr, "device backend %s: %s\n", dev_name, err);
        g_be[REF]->destroy(g_be[REF]);
        return skip_without_device ? 77 : 2;
    }
    dt_backend *dev = g_be[DEV];
    g_pristine = *dev;
    if (g_emulate_bf16 || g_jitter > 0) {
        if (strcmp(dev->name, "cpu")) {
            fprintf(stderr, "--emulate-bf16 and --jitter need a CPU device (host memory)\n");
            return 2;
        }
        emulate_install(dev);
    }
    if (perturb && perturb_install(dev, perturb)) {
        fprintf(stderr, "--perturb: no op named %s; one of:", perturb);
        for (size_t i = 0; i < sizeof PERTURBABLE / sizeof PERTURBABLE[0]; i++)
            fprintf(stderr, " %s", PERTURBABLE[i]);
        fputc('\n', stderr);
        return 2;
    }
    if (!dev->alloc || !dev->free || !dev->upload || !dev->download || !dev->copy || !dev->zero ||
        !dev->sync || !dev->destroy || !dev->attention_saved_floats || !dev->attention_scratch_floats) {
        fprintf(stderr, "device backend %s lacks memory or attention-size entries\n", dev->name);
        return 2;
    }
    if (diffusion_schedule_init(&g_sched, DT_DIFFUSION_T) ||
        diffusion_schedule_respace(&g_chain, &g_sched, 10) ||
        diffusion_tables_upload(&g_tab[REF], &g_sched, g_be[REF]) ||
        diffusion_tables_upload(&g_tab[DEV], &g_sched, dev)) {
        fprintf(stderr, "out of memory for the diffusion tables\n");
        return 2;
    }
    printf("# reference %s, device %s%s%s%s; precision %s; tol-scale %g; last_error %s\n",
           g_be[REF]->name, dev->name, perturb ? ", perturbed op " : "", perturb ? perturb : "",
           g_emulate_bf16 ? ", emulated bf16" : "", precision, g_tol_scale,
           dev->last_error ? "present" : "absent");
    if (g_jitter > 0) printf("# jitter %g on matmul/attention outputs of the device\n", g_jitter);
    if (g_verbose) {
        printf("# bounds (normalised max error):");
        for (int k = 0; k < K_NKINDS; k++) printf(" %s %.0e/%.0e", KINDS[k].name, KINDS[k].fp32, KINDS[k].bf16);
        printf("\n");
    }

    /* An op the device does not implement yet is one failed check; its cases and the engine
     * checks (which need every op) are skipped rather than crashing on a NULL entry. */
    for (size_t i = 0; i < sizeof PERTURBABLE / sizeof PERTURBABLE[0]; i++) {
        if (op_present(dev, PERTURBABLE[i])) continue;
        g_dev_complete = 0;
        verdict_bool("ops", PERTURBABLE[i], dev->name, 0, "not implemented (NULL table entry)");
    }
    double t0 = now_s();
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 0 ? !want_fp32 : !want_bf16) continue;
        if (!any_op_selected()) break;
        g_bf16 = pass;
        g_prec = pass ? "bf16" : "fp32";
        dev->precision = pass ? DT_PRECISION_BF16 : DT_PRECISION_FP32;
        double t1 = now_s();
        run_op_suite();
        printf("# ops %s: %.2f s\n", g_prec, now_s() - t1);
    }
    dev->precision = DT_PRECISION_FP32;
    g_bf16 = 0;
    if (g_dev_complete) {
        check_step();
        check_train(train_steps, want_bf16);
        check_sample();
    } else {
        printf("# step, train, sample skipped: the device does not implement every op\n");
    }

    int rc_dev = dev->sync(dev), rc_ref = g_be[REF]->sync(g_be[REF]);
    printf("# last_error: reference \"%s\", device \"%s\"\n", backend_error(g_be[REF]), backend_error(dev));
    verdict_bool("final", "sync", dev->name, rc_dev == 0 && rc_ref == 0,
                 rc_dev || rc_ref ? backend_error(rc_dev ? dev : g_be[REF]) : "both backends idle");
    printf("# total %.2f s\n", now_s() - t0);

    diffusion_tables_free(&g_tab[REF], g_be[REF]);
    diffusion_tables_free(&g_tab[DEV], dev);
    diffusion_schedule_free(&g_sched);
    diffusion_schedule_free(&g_chain);
    g_be[REF]->destroy(g_be[REF]);
    dev->destroy(dev);
    return check_done("test_backend_vs_cpu");
}
