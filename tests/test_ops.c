/* test_ops.c — checks every op of the CPU reference backend against independent references.
 *
 * Ops with a backward are checked against central finite differences of the scalar
 * L = sum(r * forward_output) for a random projection r (the backward runs with dout = r):
 * element by element at small sizes, and along random directions at sizes large enough to take
 * the OpenMP paths. Forward ops are checked against naive loops or the scalar formulas of
 * shared/reference/dit.md written out here; diffusion_loss is also checked against an
 * independent float64 Python implementation (tests/ref_diffusion_loss.py). The VAE's forward-only
 * image ops (conv2d, group norm, upsampling, transpose) and the shared one-image convolution core
 * (kernels/cpu_conv.h) are checked against direct loops.
 * Environment: DIFFTUNE_SOURCE (repo root, for the Python reference), DIFFTUNE_TEST_TMP.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend.h"
#include "check.h"
#include "cpu_conv.h"
#include "philox.h"

static dt_backend *be;

/* ---- buffers: backend memory, all released at the end ------------------------------------ */

#define OPS_MAX_BUFS 1024
static void *ops_bufs[OPS_MAX_BUFS];
static int ops_nbufs;

static float *fbuf(size_t n) {
    float *p = be->alloc(be, n * sizeof(float));
    if (!p || ops_nbufs == OPS_MAX_BUFS) {
        fprintf(stderr, "test_ops: allocation failed\n");
        exit(2);
    }
    ops_bufs[ops_nbufs++] = p;
    return p;
}

static int32_t *ibuf(size_t n) {
    return (int32_t *)fbuf(n); /* int32 and float have the same size */
}

static void free_bufs(void) {
    for (int i = 0; i < ops_nbufs; i++) be->free(be, ops_bufs[i]);
    ops_nbufs = 0;
}

/* ---- random inputs (test-local generator, fixed seed) ------------------------------------ */

static uint64_t ops_rng = 0x9E3779B97F4A7C15ull;

static double urand(void) { /* uniform [0, 1) */
    ops_rng ^= ops_rng << 13;
    ops_rng ^= ops_rng >> 7;
    ops_rng ^= ops_rng << 17;
    return (double)(ops_rng >> 11) * (1.0 / 9007199254740992.0);
}

static double nrand(void) {
    double u1 = urand() + 1e-300, u2 = urand();
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

static void fill_uniform(float *x, size_t n, double lo, double hi) {
    for (size_t i = 0; i < n; i++) x[i] = (float)(lo + (hi - lo) * urand());
}

static void fill_normal(float *x, size_t n, double sd) {
    for (size_t i = 0; i < n; i++) x[i] = (float)(sd * nrand());
}

static float *copy_of(const float *x, size_t n) {
    float *y = fbuf(n);
    memcpy(y, x, n * sizeof(float));
    return y;
}

static double max_abs_diff(const float *a, const double *b, size_t n) {
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) worst = fmax(worst, fabs((double)a[i] - b[i]));
    return worst;
}

/* ---- finite differences ------------------------------------------------------------------ */

/* A forward computation: reads its inputs and writes `out` (nout floats); L = sum r * out. */
typedef struct {
    void (*forward)(void *ctx);
    void *ctx;
    const float *out;
    const float *r;
    size_t nout;
} fd_obj;

static double fd_loss(const fd_obj *o) {
    o->forward(o->ctx);
    double s = 0.0;
    for (size_t i = 0; i < o->nout; i++) s += (double)o->r[i] * o->out[i];
    return s;
}

/* Worst normalised error between the analytic gradient g (n) of L wrt x and central differences
 * (only where mask[i] != 0 when mask is non-NULL), per element |g - num| / max(|g|, |num|, 0.1
 * max_j |num_j|): element-relative, with a floor at a tenth of the tensor's gradient scale so float
 * noise on tiny entries does not count. */
static double fd_elementwise(const fd_obj *o, float *x, const float *g, size_t n, float eps,
                             const unsigned char *mask, size_t *worst_at, double *worst_num) {
    double *num = calloc(n, sizeof(double));
    double scale = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (mask && !mask[i]) continue;
        float keep = x[i];
        float xp = keep + eps, xm = keep - eps;
        x[i] = xp;
        double lp = fd_loss(o);
        x[i] = xm;
        double lm = fd_loss(o);
        x[i] = keep;
        num[i] = (lp - lm) / ((double)xp - (double)xm);
        scale = fmax(scale, fabs(num[i]));
    }
    o->forward(o->ctx); /* leave the outputs of the unperturbed inputs behind */
    double worst = 0.0;
    *worst_at = 0;
    *worst_num = n ? num[0] : 0.0;
    for (size_t i = 0; i < n; i++) {
        if (mask && !mask[i]) continue;
        double den = fmax(fmax(fabs(g[i]), fabs(num[i])), fmax(0.1 * scale, 1e-6));
        double err = fabs(g[i] - num[i]) / den;
        if (err > worst) {
            worst = err;
            *worst_at = i;
            *worst_num = num[i];
        }
    }
    free(num);
    return worst;
}

#define FD_TOL 1e-2

static void fd_check_masked(const char *what, const fd_obj *o, float *x, const float *g, size_t n,
                            float eps, const unsigned char *mask) {
    size_t at;
    double num;
    double err = fd_elementwise(o, x, g, n, eps, mask, &at, &num);
    CHECK(err <= FD_TOL, "%s: gradient[%zu] analytic %.7g vs numeric %.7g (normalised error %.3g)",
          what, at, (double)g[at], num, err);
}

static void fd_check(const char *what, const fd_obj *o, float *x, const float *g, size_t n,
                     float eps) {
    fd_check_masked(what, o, x, g, n, eps, NULL);
}

/* Directional check for large tensors: (L(x + eps u) - L(x - eps u)) / 2 eps against <g, u> for
 * a random normal direction u, normalised by max(|<g,u>|, |numeric|, 1e-3 sum |g u|). */
static void fd_direction(const char *what, const fd_obj *o, float *x, const float *g, size_t n,
                         float eps) {
    float *keep = malloc(n * sizeof(float));
    float *u = malloc(n * sizeof(float));
    memcpy(keep, x, n * sizeof(float));
    fill_normal(u, n, 1.0);
    double dot = 0.0, abs_sum = 0.0;
    for (size_t i = 0; i < n; i++) {
        dot += (double)g[i] * u[i];
        abs_sum += fabs((double)g[i] * u[i]);
    }
    for (size_t i = 0; i < n; i++) x[i] = keep[i] + eps * u[i];
    double lp = fd_loss(o);
    for (size_t i = 0; i < n; i++) x[i] = keep[i] - eps * u[i];
    double lm = fd_loss(o);
    memcpy(x, keep, n * sizeof(float));
    o->forward(o->ctx);
    double num = (lp - lm) / (2.0 * eps);
    double err = fabs(dot - num) / fmax(fmax(fabs(dot), fabs(num)), fmax(1e-3 * abs_sum, 1e-12));
    CHECK(err <= FD_TOL, "%s: directional derivative analytic %.7g vs numeric %.7g (error %.3g)",
          what, dot, num, err);
    free(keep);
    free(u);
}

/* Backward ops accumulate: running the backward once more must double every gradient. */
static void check_doubled(const char *what, const float *once, const float *twice, size_t n) {
    double worst = 0.0;
    for (size_t i = 0; i < n; i++)
        worst = fmax(worst, fabs((double)twice[i] - 2.0 * once[i]) / fmax(fabs(once[i]), 1e-6));
    CHECK(worst <= 1e-5, "%s: second backward did not accumulate (worst relative %.3g)", what,
          worst);
}

/* ---- memory ops and construction --------------------------------------------------------- */

static void test_memory_and_create(void) {
    float host[37], back[37];
    for (int i = 0; i < 37; i++) host[i] = (float)i - 5.5f;
    float *a = be->alloc(be, sizeof host), *b = be->alloc(be, sizeof host);
    CHECK(a && b, "alloc returned NULL");
    CHECK(((uintptr_t)a & 63) == 0 && ((uintptr_t)b & 63) == 0, "alloc not 64-byte aligned");
    int zero = 1;
    for (int i = 0; i < 37; i++) zero &= a[i] == 0.0f;
    CHECK(zero, "alloc memory not zeroed");
    be->upload(be, a, host, sizeof host);
    be->copy(be, b, a, sizeof host);
    be->download(be, back, b, sizeof host);
    CHECK(memcmp(host, back, sizeof host) == 0, "upload/copy/download round trip");
    be->zero(be, b, 10 * sizeof(float));
    CHECK(b[9] == 0.0f && b[10] == host[10], "zero cleared the wrong range");
    CHECK(be->sync(be) == 0, "sync after successful ops");
    void *empty = be->alloc(be, 0);
    CHECK(empty != NULL, "alloc(0) should return a freeable pointer");
    be->free(be, empty);
    be->free(be, a);
    be->free(be, b);
    be->free(be, NULL);

#define OPS_HAS(f) CHECK(be->f != NULL, "op table entry %s is NULL", #f)
    OPS_HAS(alloc); OPS_HAS(free); OPS_HAS(upload); OPS_HAS(download); OPS_HAS(copy);
    OPS_HAS(zero); OPS_HAS(sync); OPS_HAS(destroy); OPS_HAS(matmul_forward);
    OPS_HAS(matmul_backward); OPS_HAS(attention_saved_floats); OPS_HAS(attention_scratch_floats);
    OPS_HAS(attention_forward); OPS_HAS(attention_backward); OPS_HAS(ln_modulate_forward);
    OPS_HAS(ln_modulate_backward); OPS_HAS(gate_residual_forward); OPS_HAS(gate_residual_backward);
    OPS_HAS(gelu_forward); OPS_HAS(gelu_backward); OPS_HAS(silu_forward); OPS_HAS(silu_backward);
    OPS_HAS(axpy); OPS_HAS(scale); OPS_HAS(add_rows); OPS_HAS(embedding_forward);
    OPS_HAS(embedding_backward); OPS_HAS(timestep_embedding); OPS_HAS(patchify);
    OPS_HAS(unpatchify); OPS_HAS(unpatchify_backward); OPS_HAS(randn); OPS_HAS(q_sample);
    OPS_HAS(diffusion_loss); OPS_HAS(cfg_combine); OPS_HAS(ddpm_step); OPS_HAS(ddim_step);
    OPS_HAS(sum_squares); OPS_HAS(clip_by_norm); OPS_HAS(adamw_update); OPS_HAS(ema_update);
    OPS_HAS(conv2d_scratch_bytes); OPS_HAS(conv2d_forward); OPS_HAS(group_norm_forward);
    OPS_HAS(upsample2x_forward); OPS_HAS(transpose);
#undef OPS_HAS
    CHECK(be->name && strcmp(be->name, "cpu") == 0, "backend name %s", be->name ? be->name : "?");
    CHECK(be->last_error && be->last_error(be)[0] == '\0', "last_error is empty on the CPU");
    CHECK(be->precision == DT_PRECISION_FP32, "the CPU reference starts in fp32");
    dt_precision prec = DT_PRECISION_BF16;
    CHECK(dt_precision_parse("auto", be, &prec) == 0 && prec == DT_PRECISION_FP32,
          "auto precision on the CPU is fp32");
    CHECK(dt_precision_parse("bf16", be, &prec) == 0 && prec == DT_PRECISION_BF16, "bf16 parses");
    CHECK(dt_precision_parse("fp32", be, &prec) == 0 && prec == DT_PRECISION_FP32, "fp32 parses");
    CHECK(dt_precision_parse("fp16", be, &prec) == -1, "fp16 is refused");
    CHECK(!strcmp(dt_precision_name(DT_PRECISION_BF16), "bf16") &&
          !strcmp(dt_precision_name(DT_PRECISION_FP32), "fp32"), "precision names");

    char err[256];
    dt_backend *other = dt_backend_create("cpu", err, sizeof err);
    CHECK(other && strcmp(other->name, "cpu") == 0, "create(\"cpu\"): %s", err);
    if (other) other->destroy(other);
    other = dt_backend_create("auto", err, sizeof err);
    CHECK(other != NULL, "create(\"auto\"): %s", err);
    if (other) other->destroy(other);
    other = dt_backend_create("cuda:1", err, sizeof err);
    if (other) {
        other->destroy(other); /* a build with the CUDA backend on a machine with two GPUs */
    } else {
        CHECK(strstr(err, "CUDA") != NULL && strstr(err, "cuda:1") != NULL, "cuda:1 error: %s",
              err);
    }
    other = dt_backend_create("gpu0", err, sizeof err);
    CHECK(other == NULL && strstr(err, "\"cpu\"") && strstr(err, "cuda:N"),
          "invalid device message: %s", err);
    other = dt_backend_create("cuda:x", err, sizeof err);
    CHECK(other == NULL && strstr(err, "unknown device"), "cuda:x message: %s", err);
    CHECK(dt_backend_create("nope", NULL, 0) == NULL, "invalid device with err = NULL");
}

/* ---- matmul ------------------------------------------------------------------------------ */

typedef struct {
    float *out, *inp, *w, *bias;
    int BT, C, OC;
} mm_ctx;

static void mm_forward(void *p) {
    mm_ctx *c = p;
    be->matmul_forward(be, c->out, c->inp, c->w, c->bias, c->BT, c->C, c->OC);
}

static void mm_case(int BT, int C, int OC, int elementwise) {
    mm_ctx c = {
        fbuf((size_t)BT * OC), fbuf((size_t)BT * C), fbuf((size_t)OC * C), fbuf(OC), BT, C, OC};
    fill_uniform(c.inp, (size_t)BT * C, -1, 1);
    fill_uniform(c.w, (size_t)OC * C, -1, 1);
    fill_uniform(c.bias, OC, -1, 1);
    float *r = fbuf((size_t)BT * OC);
    fill_uniform(r, (size_t)BT * OC, -1, 1);
    fd_obj o = {mm_forward, &c, c.out, r, (size_t)BT * OC};

    /* forward against a naive double loop, with and without bias */
    double *ref = malloc((size_t)BT * OC * sizeof(double));
    for (int pass = 0; pass < 2; pass++) {
        const float *bias = pass ? NULL : c.bias;
        be->matmul_forward(be, c.out, c.inp, c.w, bias, BT, C, OC);
        for (int i = 0; i < BT; i++)
            for (int j = 0; j < OC; j++) {
                double s = bias ? bias[j] : 0.0;
                for (int k = 0; k < C; k++) s += (double)c.inp[i * C + k] * c.w[j * C + k];
                ref[i * OC + j] = s;
            }
        CHECK(max_abs_diff(c.out, ref, (size_t)BT * OC) < 1e-4,
              "matmul forward (bias %s, %dx%dx%d)", bias ? "on" : "NULL", BT, C, OC);
    }
    free(ref);
    mm_forward(&c);

    float *dinp = fbuf((size_t)BT * C), *dw = fbuf((size_t)OC * C), *db = fbuf(OC);
    be->matmul_backward(be, dinp, dw, db, r, c.inp, c.w, BT, C, OC);
    if (elementwise) {
        fd_check("matmul dinp", &o, c.inp, dinp, (size_t)BT * C, 1e-2f);
        fd_check("matmul dw", &o, c.w, dw, (size_t)OC * C, 1e-2f);
        fd_check("matmul dbias", &o, c.bias, db, OC, 1e-2f);

        /* the checker itself must notice a gradient that is 3% off in one entry */
        float *bad = copy_of(dw, (size_t)OC * C);
        bad[(size_t)OC * C / 2] *= 1.03f;
        size_t at;
        double num, err = fd_elementwise(&o, c.w, bad, (size_t)OC * C, 1e-2f, NULL, &at, &num);
        CHECK(err > FD_TOL, "finite-difference checker missed a 3%% error (%.3g)", err);
    } else {
        fd_direction("matmul dinp (large)", &o, c.inp, dinp, (size_t)BT * C, 1e-2f);
        fd_direction("matmul dw (large)", &o, c.w, dw, (size_t)OC * C, 1e-2f);
        fd_direction("matmul dbias (large)", &o, c.bias, db, OC, 1e-2f);
    }
    float *dinp1 = copy_of(dinp, (size_t)BT * C), *dw1 = copy_of(dw, (size_t)OC * C);
    float *db1 = copy_of(db, OC);
    be->matmul_backward(be, dinp, dw, db, r, c.inp, c.w, BT, C, OC);
    check_doubled("matmul dinp", dinp1, dinp, (size_t)BT * C);
    check_doubled("matmul dw", dw1, dw, (size_t)OC * C);
    check_doubled("matmul dbias", db1, db, OC);

    /* NULL gradient outputs are skipped, the others still accumulate */
    float *dw2 = copy_of(dw, (size_t)OC * C), *dinp2 = copy_of(dinp, (size_t)BT * C);
    float *db2 = copy_of(db, OC);
    be->matmul_backward(be, NULL, dw2, NULL, r, c.inp, c.w, BT, C, OC);
    be->matmul_backward(be, dinp2, NULL, NULL, r, c.inp, c.w, BT, C, OC);
    be->matmul_backward(be, NULL, NULL, db2, r, c.inp, c.w, BT, C, OC);
    be->matmul_backward(be, NULL, NULL, NULL, r, c.inp, c.w, BT, C, OC);
    double worst = 0.0;
    for (size_t i = 0; i < (size_t)OC * C; i++) worst = fmax(worst, fabs(dw2[i] - 1.5 * dw[i]));
    for (size_t i = 0; i < (size_t)BT * C; i++) worst = fmax(worst, fabs(dinp2[i] - 1.5 * dinp[i]));
    for (int i = 0; i < OC; i++) worst = fmax(worst, fabs(db2[i] - 1.5 * db[i]));
    CHECK(worst < 1e-3, "matmul backward with NULL outputs (worst %.3g)", worst);
}

static void test_matmul(void) {
    mm_case(5, 7, 6, 1);
    mm_case(300, 96, 130, 0); /* OpenMP bias/colsum paths, a partial 64-column block */
}

/* ---- attention --------------------------------------------------------------------------- */

typedef struct {
    float *out, *saved, *scratch, *qkv;
    int B, N, NH, HS;
} attn_ctx;

static void attn_forward(void *p) {
    attn_ctx *c = p;
    be->attention_forward(be, c->out, c->saved, c->scratch, c->qkv, c->B, c->N, c->NH, c->HS);
}

/* Naive reference: out (B,N,NH*HS) and P (B,NH,N,N) in double. */
static void attn_reference(const float *qkv, int B, int N, int NH, int HS, double *out, double *P) {
    int C3 = 3 * NH * HS;
    double *s = malloc((size_t)N * sizeof(double));
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            for (int i = 0; i < N; i++) {
                const float *q = qkv + ((size_t)b * N + i) * C3 + h * HS;
                double mx = -1e300, sum = 0.0;
                for (int j = 0; j < N; j++) {
                    const float *k = qkv + ((size_t)b * N + j) * C3 + NH * HS + h * HS;
                    double d = 0.0;
                    for (int e = 0; e < HS; e++) d += (double)q[e] * k[e];
                    s[j] = d / sqrt((double)HS);
                    mx = fmax(mx, s[j]);
                }
                for (int j = 0; j < N; j++) sum += (s[j] = exp(s[j] - mx));
                for (int j = 0; j < N; j++) P[(((size_t)b * NH + h) * N + i) * N + j] = s[j] / sum;
                for (int e = 0; e < HS; e++) {
                    double acc = 0.0;
                    for (int j = 0; j < N; j++)
                        acc +=
                            s[j] / sum * qkv[((size_t)b * N + j) * C3 + 2 * NH * HS + h * HS + e];
                    out[((size_t)b * N + i) * NH * HS + h * HS + e] = acc;
                }
            }
    free(s);
}

static void attn_case(int B, int N, int NH, int HS, int elementwise) {
    size_t nqkv = (size_t)B * N * 3 * NH * HS, nout = (size_t)B * N * NH * HS;
    size_t nsaved = be->attention_saved_floats(B, N, NH, HS);
    attn_ctx c = {fbuf(nout), fbuf(nsaved), fbuf(be->attention_scratch_floats(B, N, NH, HS)),
                  fbuf(nqkv), B, N, NH, HS};
    CHECK(nsaved >= (size_t)B * NH * N * N, "attention saved too small for P");
    fill_normal(c.qkv, nqkv, 1.0);
    attn_forward(&c);
    double *ref = malloc(nout * sizeof(double)),
           *P = malloc((size_t)B * NH * N * N * sizeof(double));
    attn_reference(c.qkv, B, N, NH, HS, ref, P);
    CHECK(max_abs_diff(c.out, ref, nout) < 1e-5,
          "attention forward vs naive (B%d N%d NH%d HS%d): %.3g", B, N, NH, HS,
          max_abs_diff(c.out, ref, nout));
    CHECK(max_abs_diff(c.saved, P, (size_t)B * NH * N * N) < 1e-6,
          "attention saved probabilities vs naive softmax");
    free(ref);
    free(P);

    float *r = fbuf(nout), *dqkv = fbuf(nqkv);
    fill_uniform(r, nout, -1, 1);
    be->attention_backward(be, dqkv, c.scratch, r, c.qkv, c.saved, B, N, NH, HS);
    fd_obj o = {attn_forward, &c, c.out, r, nout};
    if (elementwise) fd_check("attention dqkv", &o, c.qkv, dqkv, nqkv, 1e-2f);
    else fd_direction("attention dqkv (large)", &o, c.qkv, dqkv, nqkv, 1e-2f);
    float *once = copy_of(dqkv, nqkv);
    be->attention_backward(be, dqkv, c.scratch, r, c.qkv, c.saved, B, N, NH, HS);
    check_doubled("attention dqkv", once, dqkv, nqkv);
}

static void test_attention(void) {
    attn_case(2, 5, 2, 3, 1);
    attn_case(1, 4, 1, 8, 1);  /* one task: one scratch slot */
    attn_case(3, 48, 4, 16, 0); /* several tasks per thread */
}

/* ---- ln_modulate and gate_residual ------------------------------------------------------- */

typedef struct {
    float *out, *mean, *rstd, *x, *mod;
    int B, N, D;
} ln_ctx;

/* shift is chunk 1 and scale chunk 2 of a (B, 3D) modulation tensor, to exercise mod_stride. */
static void ln_forward(void *p) {
    ln_ctx *c = p;
    be->ln_modulate_forward(be, c->out, c->mean, c->rstd, c->x, c->mod + c->D, c->mod + 2 * c->D,
                            c->B, c->N, c->D, 3 * c->D);
}

static void ln_case(int B, int N, int D, int elementwise) {
    size_t n = (size_t)B * N * D, nmod = (size_t)B * 3 * D;
    ln_ctx c = {fbuf(n), fbuf((size_t)B * N), fbuf((size_t)B * N), fbuf(n), fbuf(nmod), B, N, D};
    for (size_t i = 0; i < n; i++) c.x[i] = (float)(0.3 + 2.0 * nrand());
    fill_uniform(c.mod, nmod, -1, 1);
    ln_forward(&c);
    double *ref = malloc(n * sizeof(double));
    for (int b = 0; b < B; b++)
        for (int t = 0; t < N; t++) {
            const float *xr = c.x + ((size_t)b * N + t) * D;
            double mu = 0.0, var = 0.0;
            for (int d = 0; d < D; d++) mu += xr[d];
            mu /= D;
            for (int d = 0; d < D; d++) var += (xr[d] - mu) * (xr[d] - mu);
            var /= D;
            for (int d = 0; d < D; d++) {
                double shift = c.mod[(size_t)b * 3 * D + D + d],
                       scale = c.mod[(size_t)b * 3 * D + 2 * D + d];
                ref[((size_t)b * N + t) * D + d] =
                    (xr[d] - mu) / sqrt(var + 1e-6) * (1 + scale) + shift;
            }
        }
    CHECK(max_abs_diff(c.out, ref, n) < 1e-5, "ln_modulate forward vs naive: %.3g",
          max_abs_diff(c.out, ref, n));
    free(ref);

    float *r = fbuf(n), *dx = fbuf(n), *dmod = fbuf(nmod);
    fill_uniform(r, n, -1, 1);
    be->ln_modulate_backward(be, dx, dmod + D, dmod + 2 * D, r, c.x, c.mean, c.rstd, c.mod + 2 * D,
                             B, N, D, 3 * D);
    int chunk0_zero = 1;
    for (int b = 0; b < B; b++)
        for (int d = 0; d < D; d++) chunk0_zero &= dmod[(size_t)b * 3 * D + d] == 0.0f;
    CHECK(chunk0_zero, "ln_modulate backward wrote outside its shift/scale chunks");
    fd_obj o = {ln_forward, &c, c.out, r, n};
    if (elementwise) {
        fd_check("ln_modulate dx", &o, c.x, dx, n, 1e-2f);
        fd_check("ln_modulate dshift/dscale", &o, c.mod, dmod, nmod, 1e-2f);
    } else {
        fd_direction("ln_modulate dx (large)", &o, c.x, dx, n, 1e-2f);
        fd_direction("ln_modulate dmod (large)", &o, c.mod, dmod, nmod, 1e-2f);
    }
    float *dx1 = copy_of(dx, n), *dmod1 = copy_of(dmod, nmod);
    be->ln_modulate_backward(be, dx, dmod + D, dmod + 2 * D, r, c.x, c.mean, c.rstd, c.mod + 2 * D,
                             B, N, D, 3 * D);
    check_doubled("ln_modulate dx", dx1, dx, n);
    check_doubled("ln_modulate dmod", dmod1, dmod, nmod);
    /* deterministic: the same accumulation from the same start gives the same bits */
    float *dx2 = copy_of(dx1, n), *dmod2 = copy_of(dmod1, nmod);
    be->ln_modulate_backward(be, dx2, dmod2 + D, dmod2 + 2 * D, r, c.x, c.mean, c.rstd,
                             c.mod + 2 * D, B, N, D, 3 * D);
    CHECK(memcmp(dx2, dx, n * sizeof(float)) == 0 && memcmp(dmod2, dmod, nmod * sizeof(float)) == 0,
          "ln_modulate backward is not deterministic");
}

typedef struct {
    float *out, *res, *y, *mod;
    int B, N, D;
} gr_ctx;

/* gate is chunk 2 of a (B, 3D) modulation tensor. */
static void gr_forward(void *p) {
    gr_ctx *c = p;
    be->gate_residual_forward(be, c->out, c->res, c->y, c->mod + 2 * c->D, c->B, c->N, c->D,
                              3 * c->D);
}

static void gr_case(int B, int N, int D, int elementwise) {
    size_t n = (size_t)B * N * D, nmod = (size_t)B * 3 * D;
    gr_ctx c = {fbuf(n), fbuf(n), fbuf(n), fbuf(nmod), B, N, D};
    fill_uniform(c.res, n, -1, 1);
    fill_uniform(c.y, n, -1, 1);
    fill_uniform(c.mod, nmod, -1, 1);
    gr_forward(&c);
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        size_t b = i / ((size_t)N * D), d = i % D;
        worst = fmax(worst,
                     fabs(c.out[i] - (c.res[i] + (double)c.mod[b * 3 * D + 2 * D + d] * c.y[i])));
    }
    CHECK(worst < 1e-6, "gate_residual forward: %.3g", worst);
    float *inplace = copy_of(c.res, n);
    be->gate_residual_forward(be, inplace, inplace, c.y, c.mod + 2 * D, B, N, D, 3 * D);
    CHECK(memcmp(inplace, c.out, n * sizeof(float)) == 0, "gate_residual forward with out == res");

    float *r = fbuf(n), *dres = fbuf(n), *dy = fbuf(n), *dmod = fbuf(nmod);
    fill_uniform(r, n, -1, 1);
    be->gate_residual_backward(be, dres, dy, dmod + 2 * D, r, c.y, c.mod + 2 * D, B, N, D, 3 * D);
    fd_obj o = {gr_forward, &c, c.out, r, n};
    if (elementwise) {
        fd_check("gate_residual dres", &o, c.res, dres, n, 1e-2f);
        fd_check("gate_residual dy", &o, c.y, dy, n, 1e-2f);
        fd_check("gate_residual dgate", &o, c.mod, dmod, nmod, 1e-2f);
    } else {
        fd_direction("gate_residual dy (large)", &o, c.y, dy, n, 1e-2f);
        fd_direction("gate_residual dgate (large)", &o, c.mod, dmod, nmod, 1e-2f);
    }
    float *dy1 = copy_of(dy, n), *dmod1 = copy_of(dmod, nmod), *dres1 = copy_of(dres, n);
    be->gate_residual_backward(be, NULL, dy, dmod + 2 * D, r, c.y, c.mod + 2 * D, B, N, D, 3 * D);
    check_doubled("gate_residual dy", dy1, dy, n);
    check_doubled("gate_residual dgate", dmod1, dmod, nmod);
    be->gate_residual_backward(be, dres, dy, dmod + 2 * D, r, c.y, c.mod + 2 * D, B, N, D, 3 * D);
    check_doubled("gate_residual dres", dres1, dres, n);
}

static void test_norm(void) {
    ln_case(2, 3, 8, 1);
    ln_case(3, 40, 200, 0);
    gr_case(2, 3, 5, 1);
    gr_case(2, 50, 200, 0);
}

/* ---- activations and small pointwise ops ------------------------------------------------- */

typedef struct {
    void (*fwd)(dt_backend *, float *, const float *, size_t);
    float *out, *inp;
    size_t n;
} act_ctx;

static void act_forward(void *p) {
    act_ctx *c = p;
    c->fwd(be, c->out, c->inp, c->n);
}

static double gelu_ref(double x) {
    return 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
}

static double silu_ref(double x) {
    return x / (1.0 + exp(-x));
}

static void act_case(const char *name, void (*fwd)(dt_backend *, float *, const float *, size_t),
                     void (*bwd)(dt_backend *, float *, const float *, const float *, size_t),
                     double (*ref)(double), size_t n) {
    act_ctx c = {fwd, fbuf(n), fbuf(n), n};
    fill_uniform(c.inp, n, -5, 5);
    c.inp[0] = 0.0f;
    c.inp[1] = 1.0f;
    c.inp[2] = -1.0f;
    c.inp[3] = 20.0f;
    c.inp[4] = -20.0f;
    act_forward(&c);
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) worst = fmax(worst, fabs(c.out[i] - ref(c.inp[i])));
    CHECK(worst < 2e-6, "%s forward vs formula: %.3g", name, worst);
    float *r = fbuf(n), *dinp = fbuf(n);
    fill_uniform(r, n, -1, 1);
    bwd(be, dinp, c.inp, r, n);
    fd_obj o = {act_forward, &c, c.out, r, n};
    char what[64];
    snprintf(what, sizeof what, "%s backward", name);
    if (n <= 512) fd_check(what, &o, c.inp, dinp, n, 1e-3f);
    else fd_direction(what, &o, c.inp, dinp, n, 1e-3f);
    float *once = copy_of(dinp, n);
    bwd(be, dinp, c.inp, r, n);
    check_doubled(what, once, dinp, n);
}

static void test_pointwise(void) {
    act_case("gelu", be->gelu_forward, be->gelu_backward, gelu_ref, 200);
    act_case("gelu", be->gelu_forward, be->gelu_backward, gelu_ref, 50000);
    act_case("silu", be->silu_forward, be->silu_backward, silu_ref, 200);
    act_case("silu", be->silu_forward, be->silu_backward, silu_ref, 50000);
    /* published values: torch gelu(approximate="tanh") and silu */
    float pts[3] = {1.0f, -1.0f, 3.0f}, out[3];
    be->gelu_forward(be, out, pts, 3);
    CHECK_CLOSE(out[0], 0.8411920071, 1e-6, "gelu(1)");
    CHECK_CLOSE(out[1], -0.1588080078, 1e-6, "gelu(-1)");
    CHECK_CLOSE(out[2], 2.9963626862, 1e-6, "gelu(3)");
    be->silu_forward(be, out, pts, 3);
    CHECK_CLOSE(out[0], 0.7310585786, 1e-6, "silu(1)");
    CHECK_CLOSE(out[1], -0.2689414214, 1e-6, "silu(-1)");

    size_t n = 40000;
    float *x = fbuf(n), *y = fbuf(n);
    fill_uniform(x, n, -1, 1);
    fill_uniform(y, n, -1, 1);
    float *y0 = copy_of(y, n);
    be->axpy(be, y, 0.75f, x, n);
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) worst = fmax(worst, fabs(y[i] - (y0[i] + 0.75 * x[i])));
    CHECK(worst < 1e-6, "axpy: %.3g", worst);
    be->scale(be, y0, -2.5f, n);
    worst = 0.0;
    for (size_t i = 0; i < n; i++) worst = fmax(worst, fabs(y0[i] - (y[i] - 0.75 * x[i]) * -2.5));
    CHECK(worst < 1e-5, "scale: %.3g", worst);
    float *rows = copy_of(x, n);
    be->add_rows(be, rows, y, 4, n / 4);
    worst = 0.0;
    for (size_t i = 0; i < n; i++)
        worst = fmax(worst, fabs(rows[i] - (x[i] + (double)y[i % (n / 4)])));
    CHECK(worst < 1e-6, "add_rows: %.3g", worst);

    /* scale_cols (DiffFit's gammas): forward, in place, and the gamma sums of the backward. */
    const int R = 300, C = 67;
    float *sx = fbuf((size_t)R * C), *sy = fbuf((size_t)R * C), *sd = fbuf((size_t)R * C);
    float *g1 = fbuf(C), *g2 = fbuf(C), *dg1 = fbuf(C), *dg2 = fbuf(C);
    fill_uniform(sx, (size_t)R * C, -1, 1);
    fill_uniform(sd, (size_t)R * C, -1, 1);
    fill_uniform(g1, C, 0.5, 1.5);
    fill_uniform(g2, C, 0.5, 1.5);
    fill_uniform(dg1, C, -1, 1);
    fill_uniform(dg2, C, -1, 1);
    float *dg1_0 = copy_of(dg1, C), *dg2_0 = copy_of(dg2, C), *sd0 = copy_of(sd, (size_t)R * C);
    be->scale_cols_forward(be, sy, sx, g1, g2, R, C);
    worst = 0.0;
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++)
            worst = fmax(worst, fabs(sy[r * C + c] - sx[r * C + c] * (double)g1[c] * g2[c]));
    CHECK(worst < 1e-6, "scale_cols_forward: %.3g", worst);
    float *inplace = copy_of(sx, (size_t)R * C);
    be->scale_cols_forward(be, inplace, inplace, g1, NULL, R, C);
    worst = 0.0;
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) worst = fmax(worst, fabs(inplace[r * C + c] - sx[r * C + c] * (double)g1[c]));
    CHECK(worst < 1e-6, "scale_cols_forward in place, one gamma: %.3g", worst);
    be->scale_cols_backward(be, sd, dg1, dg2, sd, sx, g1, g2, R, C); /* dx aliases dy */
    double wg = 0.0, wx = 0.0;
    for (int c = 0; c < C; c++) {
        double sum = 0.0;
        for (int r = 0; r < R; r++) sum += (double)sd0[r * C + c] * sx[r * C + c];
        wg = fmax(wg, fabs(dg1[c] - (dg1_0[c] + sum * g2[c])));
        wg = fmax(wg, fabs(dg2[c] - (dg2_0[c] + sum * g1[c])));
        for (int r = 0; r < R; r++)
            wx = fmax(wx, fabs(sd[r * C + c] - sd0[r * C + c] * (double)g1[c] * g2[c]));
    }
    CHECK(wg < 1e-5, "scale_cols_backward gamma sums: %.3g", wg);
    CHECK(wx < 1e-6, "scale_cols_backward dx = dy * g1 * g2 over dy: %.3g", wx);
}

/* ---- random numbers ---------------------------------------------------------------------- */

static void test_randn(void) {
    size_t n = 100000;
    float *a = fbuf(n), *b = fbuf(n), *c = fbuf(n), *d = fbuf(n), *head = fbuf(10);
    be->randn(be, a, n, 1234, 7);
    be->randn(be, b, n, 1234, 7);
    be->randn(be, c, n, 1234, 8);
    be->randn(be, d, n, 1235, 7);
    be->randn(be, head, 10, 1234, 7);
    double mean = 0.0, var = 0.0;
    for (size_t i = 0; i < n; i++) mean += a[i];
    mean /= n;
    for (size_t i = 0; i < n; i++) var += (a[i] - mean) * (a[i] - mean);
    var /= n;
    CHECK(fabs(mean) < 0.015, "randn mean %.4f", mean);
    CHECK(fabs(var - 1.0) < 0.025, "randn variance %.4f", var);
    CHECK(memcmp(a, b, n * sizeof(float)) == 0, "randn not deterministic for equal seed/offset");
    CHECK(memcmp(a, head, 10 * sizeof(float)) == 0, "randn prefix depends on n");
    size_t same_c = 0, same_d = 0;
    for (size_t i = 0; i < n; i++) {
        same_c += a[i] == c[i];
        same_d += a[i] == d[i];
    }
    CHECK(same_c < 10 && same_d < 10, "randn streams overlap (%zu, %zu equal)", same_c, same_d);
    CHECK(a[0] == dt_philox_normal(1234, 7, 0) && a[n - 1] == dt_philox_normal(1234, 7, n - 1),
          "randn is not dt_philox_normal(seed, offset, i)");
}

/* ---- embeddings and layouts -------------------------------------------------------------- */

typedef struct {
    float *out, *table;
    const int32_t *labels;
    int B, D;
} emb_ctx;

static void emb_forward(void *p) {
    emb_ctx *c = p;
    be->embedding_forward(be, c->out, c->table, c->labels, c->B, c->D);
}

typedef struct {
    float *img, *tokens;
    int B, C, H, W, p;
} unp_ctx;

static void unp_forward(void *q) {
    unp_ctx *c = q;
    be->unpatchify(be, c->img, c->tokens, c->B, c->C, c->H, c->W, c->p);
}

static void test_embed(void) {
    int V = 4, D = 5, B = 5;
    int32_t *labels = ibuf(B);
    int32_t lab[5] = {2, 0, 2, 3, 2};
    memcpy(labels, lab, sizeof lab);
    emb_ctx e = {fbuf((size_t)B * D), fbuf((size_t)V * D), labels, B, D};
    fill_uniform(e.table, (size_t)V * D, -1, 1);
    emb_forward(&e);
    int ok = 1;
    for (int b = 0; b < B; b++)
        ok &= memcmp(e.out + b * D, e.table + lab[b] * D, D * sizeof(float)) == 0;
    CHECK(ok, "embedding forward rows");
    float *r = fbuf((size_t)B * D), *dtable = fbuf((size_t)V * D);
    fill_uniform(r, (size_t)B * D, -1, 1);
    be->embedding_backward(be, dtable, r, labels, B, D);
    fd_obj o = {emb_forward, &e, e.out, r, (size_t)B * D};
    fd_check("embedding dtable", &o, e.table, dtable, (size_t)V * D, 1e-2f);
    float *once = copy_of(dtable, (size_t)V * D);
    be->embedding_backward(be, dtable, r, labels, B, D);
    check_doubled("embedding dtable", once, dtable, (size_t)V * D);

    /* timestep embedding: [cos(t f_k) for k < half, then sin(t f_k)] */
    int dim = 256, half = 128;
    int32_t *t = ibuf(4);
    int32_t tv[4] = {0, 1, 500, 999};
    memcpy(t, tv, sizeof tv);
    float *emb = fbuf((size_t)4 * dim);
    be->timestep_embedding(be, emb, t, 4, dim);
    double worst = 0.0;
    for (int b = 0; b < 4; b++)
        for (int k = 0; k < half; k++) {
            double f = exp(-log(10000.0) * k / half), arg = tv[b] * f;
            /* the argument is formed in float (like PyTorch): its error grows with t f_k */
            double tol = 1e-5 + 1e-6 * arg;
            worst = fmax(worst, fabs(emb[b * dim + k] - cos(arg)) / tol);
            worst = fmax(worst, fabs(emb[b * dim + half + k] - sin(arg)) / tol);
        }
    CHECK(worst <= 1.0, "timestep_embedding vs formula: %.3g of tolerance", worst);
    CHECK(emb[0] == 1.0f && emb[half] == 0.0f, "timestep_embedding t=0 must be [1..., 0...]");

    /* patchify / unpatchify layouts against the index formulas of dit.md */
    int Bi = 2, C = 3, H = 4, W = 6, p = 2, hp = H / p, wp = W / p, N = hp * wp;
    size_t nimg = (size_t)Bi * C * H * W;
    float *img = fbuf(nimg), *tok = fbuf(nimg), *img2 = fbuf(nimg);
    for (size_t i = 0; i < nimg; i++) img[i] = (float)i;
    be->patchify(be, tok, img, Bi, C, H, W, p);
    ok = 1;
    for (int b = 0; b < Bi; b++)
        for (int hh = 0; hh < hp; hh++)
            for (int ww = 0; ww < wp; ww++)
                for (int c = 0; c < C; c++)
                    for (int i = 0; i < p; i++)
                        for (int j = 0; j < p; j++) {
                            size_t n = (size_t)hh * wp + ww;
                            float want =
                                img[(((size_t)b * C + c) * H + hh * p + i) * W + ww * p + j];
                            ok &=
                                tok[((size_t)b * N + n) * C * p * p + (c * p + i) * p + j] == want;
                        }
    CHECK(ok, "patchify layout (patch flattened (c, i, j), tokens (h, w))");
    for (size_t i = 0; i < nimg; i++) tok[i] = (float)i;
    be->unpatchify(be, img2, tok, Bi, C, H, W, p);
    ok = 1;
    for (int b = 0; b < Bi; b++)
        for (int hh = 0; hh < hp; hh++)
            for (int ww = 0; ww < wp; ww++)
                for (int i = 0; i < p; i++)
                    for (int j = 0; j < p; j++)
                        for (int c = 0; c < C; c++) {
                            size_t n = (size_t)hh * wp + ww;
                            float want = tok[((size_t)b * N + n) * p * p * C + (i * p + j) * C + c];
                            ok &= img2[(((size_t)b * C + c) * H + hh * p + i) * W + ww * p + j] ==
                                  want;
                        }
    CHECK(ok, "unpatchify layout (patch (i, j, c) -> (C, H, W))");

    /* unpatchify_backward is the adjoint of unpatchify: <U a, g> == <a, U^T g> */
    float *a = fbuf(nimg), *g = fbuf(nimg), *ua = fbuf(nimg), *utg = fbuf(nimg);
    fill_uniform(a, nimg, -1, 1);
    fill_uniform(g, nimg, -1, 1);
    be->unpatchify(be, ua, a, Bi, C, H, W, p);
    be->unpatchify_backward(be, utg, g, Bi, C, H, W, p);
    double lhs = 0.0, rhs = 0.0;
    for (size_t i = 0; i < nimg; i++) {
        lhs += (double)ua[i] * g[i];
        rhs += (double)a[i] * utg[i];
    }
    CHECK(fabs(lhs - rhs) < 1e-9 * fmax(1.0, fabs(lhs)), "unpatchify adjoint: %.12g vs %.12g", lhs,
          rhs);
    unp_ctx u = {ua, a, Bi, C, H, W, p};
    fd_obj uo = {unp_forward, &u, ua, g, nimg};
    fd_check("unpatchify_backward", &uo, a, utg, nimg, 1e-2f);
    once = copy_of(utg, nimg);
    be->unpatchify_backward(be, utg, g, Bi, C, H, W, p);
    check_doubled("unpatchify_backward", once, utg, nimg);

    /* a large case through the OpenMP paths: unpatchify then its adjoint is a permutation */
    int Cl = 8, Hl = 32, Wl = 32, Bl = 4;
    size_t nl = (size_t)Bl * Cl * Hl * Wl;
    float *tl = fbuf(nl), *il = fbuf(nl), *back = fbuf(nl), *pl = fbuf(nl);
    fill_uniform(tl, nl, -1, 1);
    be->unpatchify(be, il, tl, Bl, Cl, Hl, Wl, 2);
    be->unpatchify_backward(be, back, il, Bl, Cl, Hl, Wl, 2);
    CHECK(memcmp(back, tl, nl * sizeof(float)) == 0, "unpatchify_backward(unpatchify(x)) != x");
    be->patchify(be, pl, il, Bl, Cl, Hl, Wl, 2);
    double s1 = 0.0, s2 = 0.0;
    for (size_t i = 0; i < nl; i++) {
        s1 += tl[i];
        s2 += pl[i];
    }
    CHECK(fabs(s1 - s2) < 1e-6 * nl, "patchify is not a permutation");
}

/* ---- diffusion tables, built here from float64 math (independent of engine/diffusion.c) -- */

#define OPS_T 1000

typedef struct {
    double beta[OPS_T], abar[OPS_T], abar_prev[OPS_T];
} ops_schedule;

static void ops_make_schedule(ops_schedule *s) {
    double prod = 1.0;
    for (int i = 0; i < OPS_T; i++) {
        s->beta[i] = i == OPS_T - 1 ? 0.02 : 1e-4 + (0.02 - 1e-4) / (OPS_T - 1) * i;
        s->abar_prev[i] = prod;
        prod *= 1.0 - s->beta[i];
        s->abar[i] = prod;
    }
}

static dt_diffusion_tables ops_make_tables(const ops_schedule *s) {
    dt_diffusion_tables tab = {.T = OPS_T};
    float **cols[8] = {&tab.sqrt_alphas_cumprod, &tab.sqrt_one_minus_alphas_cumprod,
                       &tab.sqrt_recip_alphas_cumprod, &tab.sqrt_recipm1_alphas_cumprod,
                       &tab.posterior_mean_coef1, &tab.posterior_mean_coef2,
                       &tab.posterior_log_variance_clipped, &tab.log_betas};
    for (int k = 0; k < 8; k++) *cols[k] = fbuf(OPS_T);
    for (int i = 0; i < OPS_T; i++) {
        double ab = s->abar[i], abp = s->abar_prev[i], be_ = s->beta[i];
        int j = i == 0 ? 1 : i; /* log posterior variance: entry 0 := entry 1 */
        double post_var = s->beta[j] * (1.0 - s->abar_prev[j]) / (1.0 - s->abar[j]);
        tab.sqrt_alphas_cumprod[i] = (float)sqrt(ab);
        tab.sqrt_one_minus_alphas_cumprod[i] = (float)sqrt(1.0 - ab);
        tab.sqrt_recip_alphas_cumprod[i] = (float)sqrt(1.0 / ab);
        tab.sqrt_recipm1_alphas_cumprod[i] = (float)sqrt(1.0 / ab - 1.0);
        tab.posterior_mean_coef1[i] = (float)(be_ * sqrt(abp) / (1.0 - ab));
        tab.posterior_mean_coef2[i] = (float)((1.0 - abp) * sqrt(1.0 - be_) / (1.0 - ab));
        tab.posterior_log_variance_clipped[i] = (float)log(post_var);
        tab.log_betas[i] = (float)log(be_);
    }
    return tab;
}

/* ---- diffusion_loss: finite differences and the Python reference ------------------------- */

typedef struct {
    float *loss, *model_out, *x0, *xt, *eps;
    int32_t *t;
    const dt_diffusion_tables *tab;
    int B, C, HW, learn_sigma;
} loss_ctx;

static void loss_forward(void *p) {
    loss_ctx *c = p;
    be->diffusion_loss(be, c->loss, NULL, c->model_out, c->x0, c->xt, c->eps, c->t, NULL, c->tab,
                       c->B, c->C, c->HW, c->learn_sigma);
}

/* Random inputs: x0 in [-1, 1] with edge values for the discretised likelihood, eps ~ N(0,1),
 * xt by q_sample, eps_hat = eps + 0.7 N(0,1), v in [-1, 1]. With push_far, elements 0, 1, 3 of
 * every t = 0 sample get predictions so far off that their likelihood hits the 1e-12 floor. */
static loss_ctx loss_inputs(const dt_diffusion_tables *tab, int B, int C, int HW, int learn_sigma,
                            const int32_t *tv, int push_far) {
    size_t n = (size_t)B * C * HW, nout = n * (learn_sigma ? 2 : 1);
    loss_ctx c = {fbuf(B), fbuf(nout), fbuf(n), fbuf(n), fbuf(n), ibuf(B),
                  tab, B, C, HW, learn_sigma};
    memcpy(c.t, tv, B * sizeof(int32_t));
    fill_uniform(c.x0, n, -1, 1);
    static const float edges[] = {-1.0f, 1.0f, -0.9995f, 0.9995f, -0.9985f, 0.9985f};
    for (size_t i = 0; i < n; i += 3) c.x0[i] = edges[(i / 3) % 6];
    fill_normal(c.eps, n, 1.0);
    be->q_sample(be, c.xt, c.x0, c.eps, c.t, tab, B, C * HW);
    size_t row = (size_t)C * HW * (learn_sigma ? 2 : 1);
    for (int b = 0; b < B; b++)
        for (size_t i = 0; i < row; i++) {
            float *o = c.model_out + b * row + i;
            if (i < (size_t)C * HW) *o = c.eps[b * (size_t)C * HW + i] + (float)(0.7 * nrand());
            else *o = (float)(2.0 * urand() - 1.0);
        }
    /* at t = 0, push a few predictions far off so every branch of the likelihood hits its 1e-12
     * floor: x0[0] = -1 (lower edge bin), x0[1] interior, x0[3] = +1 (upper edge bin) */
    for (int b = 0; b < B && push_far; b++) {
        if (tv[b] != 0 || C * HW < 4) continue;
        float *eps_hat = c.model_out + b * row, *eps_b = c.eps + (size_t)b * C * HW;
        eps_hat[0] = eps_b[0] - 12.0f;
        eps_hat[1] = eps_b[1] + 12.0f;
        eps_hat[3] = eps_b[3] + 12.0f;
    }
    return c;
}

static void loss_fd_case(const dt_diffusion_tables *tab, int learn_sigma) {
    int B = 6, C = 2, HW = 4;
    int32_t tv[6] = {0, 0, 1, 500, 998, 999};
    loss_ctx c = loss_inputs(tab, B, C, HW, learn_sigma, tv, 0);
    size_t nout = (size_t)B * C * HW * (learn_sigma ? 2 : 1);
    float *w = fbuf(B), *dout = fbuf(nout), *loss2 = fbuf(B);
    fill_uniform(w, B, -1, 1);
    be->diffusion_loss(be, loss2, dout, c.model_out, c.x0, c.xt, c.eps, c.t, w, tab, B, C, HW,
                       learn_sigma);
    loss_forward(&c);
    CHECK(memcmp(loss2, c.loss, B * sizeof(float)) == 0, "diffusion_loss: loss depends on weight");
    fd_obj o = {loss_forward, &c, c.loss, w, B};
    if (!learn_sigma) {
        fd_check("diffusion_loss deps_hat", &o, c.model_out, dout, nout, 1e-2f);
    } else {
        /* vb sees eps_hat only through a detached mean, so finite differences apply to the v
         * channels alone; the eps channels must carry exactly the mse gradient */
        size_t n = (size_t)C * HW;
        unsigned char *v_only = calloc(nout, 1);
        double worst = 0.0;
        for (int b = 0; b < B; b++)
            for (size_t i = 0; i < n; i++) {
                v_only[b * 2 * n + n + i] = 1;
                double want = w[b] * 2.0 * (c.model_out[b * 2 * n + i] - c.eps[b * n + i]) / n;
                worst = fmax(worst, fabs(dout[b * 2 * n + i] - want));
            }
        CHECK(worst < 1e-6, "diffusion_loss eps-channel gradient is not the mse gradient: %.3g",
              worst);
        fd_check_masked("diffusion_loss dv (learned sigma)", &o, c.model_out, dout, nout, 1e-2f,
                        v_only);
        free(v_only);
    }
    float *once = copy_of(dout, nout);
    be->diffusion_loss(be, loss2, dout, c.model_out, c.x0, c.xt, c.eps, c.t, w, tab, B, C, HW,
                       learn_sigma);
    check_doubled("diffusion_loss dout", once, dout, nout);
    float *untouched = copy_of(dout, nout);
    be->diffusion_loss(be, loss2, untouched, c.model_out, c.x0, c.xt, c.eps, c.t, NULL, tab, B, C,
                       HW, learn_sigma);
    CHECK(memcmp(untouched, dout, nout * sizeof(float)) == 0,
          "diffusion_loss with weight NULL wrote dout");
}

/* Writes the case to a file, runs tests/ref_diffusion_loss.py on it, compares per-sample losses. */
static void loss_python_case(const dt_diffusion_tables *tab, int learn_sigma, const char *dir) {
    int B = 8, C = 4, HW = 64; /* big enough for the per-sample OpenMP split */
    int32_t tv[8] = {0, 0, 1, 2, 250, 500, 998, 999};
    loss_ctx c = loss_inputs(tab, B, C, HW, learn_sigma, tv, 1);
    size_t n = (size_t)B * C * HW, nout = n * (learn_sigma ? 2 : 1);
    float *ones = fbuf(B), *dout = fbuf(nout);
    for (int b = 0; b < B; b++) ones[b] = 1.0f;
    be->diffusion_loss(be, c.loss, dout, c.model_out, c.x0, c.xt, c.eps, c.t, ones, tab, B, C, HW,
                       learn_sigma);
    if (learn_sigma) { /* a floored probability is a constant: no gradient to v */
        size_t v0 = (size_t)C * HW; /* sample 0 has t = 0 */
        CHECK(dout[v0] == 0.0f && dout[v0 + 1] == 0.0f && dout[v0 + 3] == 0.0f &&
                  dout[v0 + 2] != 0.0f,
              "diffusion_loss: gradient through the 1e-12 floor (%g %g %g)", dout[v0], dout[v0 + 1],
              dout[v0 + 3]);
    }

    char path[1200];
    snprintf(path, sizeof path, "%s/loss_case_%d.txt", dir, learn_sigma);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL, "cannot write %s", path);
    if (!f) return;
    fprintf(f, "%d %d %d %d\n", B, C, HW, learn_sigma);
    for (int b = 0; b < B; b++) fprintf(f, "%d ", c.t[b]);
    fputc('\n', f);
    const float *arrays[4] = {c.model_out, c.x0, c.xt, c.eps};
    size_t sizes[4] = {nout, n, n, n};
    for (int k = 0; k < 4; k++) {
        for (size_t i = 0; i < sizes[k]; i++) fprintf(f, "%.9g\n", arrays[k][i]);
    }
    fclose(f);

    const char *src = getenv("DIFFTUNE_SOURCE");
    char script[1200];
    if (src) snprintf(script, sizeof script, "%s/tests/ref_diffusion_loss.py", src);
    else snprintf(script, sizeof script, "tests/ref_diffusion_loss.py"); /* from the repo root */
    char cmd[2600];
    snprintf(cmd, sizeof cmd, "python3 '%s' '%s'", script, path);
    FILE *pipe = popen(cmd, "r");
    CHECK(pipe != NULL, "cannot run %s", cmd);
    if (!pipe) return;
    double ref[8];
    int got = 0;
    while (got < B && fscanf(pipe, "%lf", &ref[got]) == 1) got++;
    int status = pclose(pipe);
    CHECK(status == 0 && got == B, "%s failed (status %d, %d of %d losses)", cmd, status, got, B);
    if (got != B) return;
    for (int b = 0; b < B; b++) {
        double err = fabs(c.loss[b] - ref[b]) / fmax(fabs(ref[b]), 1e-2);
        CHECK(err <= 1e-5, "diffusion_loss (learn_sigma %d) sample %d t=%d: %.9g vs python %.9g",
              learn_sigma, b, c.t[b], (double)c.loss[b], ref[b]);
    }
}

static void test_diffusion_loss(const dt_diffusion_tables *tab) {
    loss_fd_case(tab, 1);
    loss_fd_case(tab, 0);
    const char *dir = check_tmpdir("test_ops");
    char dircopy[1024];
    snprintf(dircopy, sizeof dircopy, "%s", dir);
    loss_python_case(tab, 1, dircopy);
    loss_python_case(tab, 0, dircopy);
}

/* ---- sampling-side diffusion ops --------------------------------------------------------- */

static void test_diffusion_steps(const ops_schedule *s, const dt_diffusion_tables *tab) {
    int B = 3, C = 2, HW = 5;
    size_t n = (size_t)B * C * HW;
    int32_t *t = ibuf(B);
    int32_t tv[3] = {0, 321, 999};
    memcpy(t, tv, sizeof tv);
    float *x0 = fbuf(n), *eps = fbuf(n), *xt = fbuf(n);
    fill_uniform(x0, n, -1, 1);
    fill_normal(eps, n, 1.0);
    be->q_sample(be, xt, x0, eps, t, tab, B, C * HW);
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        int b = (int)(i / ((size_t)C * HW));
        double ab = s->abar[tv[b]];
        worst = fmax(worst, fabs(xt[i] - (sqrt(ab) * x0[i] + sqrt(1.0 - ab) * eps[i])));
    }
    CHECK(worst < 1e-5, "q_sample vs formula: %.3g", worst);

    /* cfg_combine on [cond; uncond] with C_out = 2C */
    int C_out = 2 * C;
    size_t row = (size_t)C_out * HW;
    float *mo2 = fbuf(2 * B * row), *cfg = fbuf(B * row);
    fill_normal(mo2, 2 * B * row, 1.0);
    be->cfg_combine(be, cfg, mo2, 1.5f, B, C, C_out, HW);
    worst = 0.0;
    for (int b = 0; b < B; b++)
        for (size_t i = 0; i < row; i++) {
            double cnd = mo2[b * row + i], unc = mo2[(B + b) * row + i];
            double want = i < (size_t)C * HW ? unc + 1.5 * (cnd - unc) : cnd;
            worst = fmax(worst, fabs(cfg[b * row + i] - want));
        }
    CHECK(worst < 1e-5, "cfg_combine vs formula: %.3g", worst);

    /* ddpm_step: learned and fixed variance, with and without noise */
    int tt = 500;
    double ab = s->abar[tt], abp = s->abar_prev[tt], beta = s->beta[tt];
    double post_var = beta * (1 - abp) / (1 - ab);
    dt_step_coefs k = {
        .sqrt_recip_ac = (float)sqrt(1 / ab),
        .sqrt_recipm1_ac = (float)sqrt(1 / ab - 1),
        .post_coef1 = (float)(beta * sqrt(abp) / (1 - ab)),
        .post_coef2 = (float)((1 - abp) * sqrt(1 - beta) / (1 - ab)),
        .post_log_var = (float)log(post_var),
        .log_beta = (float)log(beta),
        .fixed_log_var = (float)log(beta),
        .sqrt_ac_prev = (float)sqrt(abp),
        .add_noise = 1,
    };
    float *noise = fbuf(n);
    fill_normal(noise, n, 1.0);
    for (int clip = 0; clip < 2; clip++)
    for (int ls = 0; ls < 2; ls++)
        for (int add = 0; add < 2; add++) {
            int co = ls ? 2 * C : C;
            float *mo = fbuf((size_t)B * co * HW), *x = copy_of(xt, n);
            fill_normal(mo, (size_t)B * co * HW, 1.0);
            for (int b = 0; b < B && ls; b++)
                fill_uniform(mo + ((size_t)b * co + C) * HW, (size_t)C * HW, -1, 1);
            k.add_noise = add;
            k.clip_x0 = clip;
            be->ddpm_step(be, x, mo, noise, &k, B, C, HW, ls);
            worst = 0.0;
            int clipped = 0;
            for (int b = 0; b < B; b++)
                for (int c = 0; c < C; c++)
                    for (int i = 0; i < HW; i++) {
                        size_t xi = ((size_t)b * C + c) * HW + i;
                        double e = mo[((size_t)b * co + c) * HW + i], xv = xt[xi];
                        double px0 = sqrt(1 / ab) * xv - sqrt(1 / ab - 1) * e;
                        if (clip && fabs(px0) > 1) px0 = px0 > 0 ? 1 : -1, clipped++;
                        double mean = beta * sqrt(abp) / (1 - ab) * px0 +
                                      (1 - abp) * sqrt(1 - beta) / (1 - ab) * xv;
                        double logvar = log(beta);
                        if (ls) {
                            double frac = (mo[((size_t)b * co + C + c) * HW + i] + 1) / 2;
                            logvar = frac * log(beta) + (1 - frac) * log(post_var);
                        }
                        double want = mean + (add ? exp(0.5 * logvar) * noise[xi] : 0.0);
                        worst = fmax(worst, fabs(x[xi] - want));
                    }
            CHECK(!clip || clipped > 0, "the clip case clips something");
            CHECK(worst < 2e-5, "ddpm_step (learn_sigma %d, noise %d, clip %d): %.3g", ls, add, clip, worst);
        }
    k.clip_x0 = 0;

    /* ddim_step, eta = 0 and eta = 1 (sigma from the DDIM paper), eps-only and learned-sigma
     * model outputs (eps = first C channels of each sample) */
    for (int clip = 0; clip < 2; clip++)
    for (int ls = 0; ls < 2; ls++)
        for (int eta = 0; eta < 2; eta++) {
            int co = ls ? 2 * C : C;
            double sigma = eta * sqrt((1 - abp) / (1 - ab)) * sqrt(1 - ab / abp);
            k.ddim_sigma = (float)sigma;
            k.sqrt_1m_ac_prev = (float)sqrt(1 - abp - sigma * sigma);
            k.clip_x0 = clip;
            float *mo = fbuf((size_t)B * co * HW), *x = copy_of(xt, n);
            fill_normal(mo, (size_t)B * co * HW, 1.0);
            be->ddim_step(be, x, mo, noise, &k, B, C, HW, ls);
            worst = 0.0;
            for (int b = 0; b < B; b++)
                for (int c = 0; c < C; c++)
                    for (int i = 0; i < HW; i++) {
                        size_t xi = ((size_t)b * C + c) * HW + i;
                        double e = mo[((size_t)b * co + c) * HW + i];
                        double px0 = sqrt(1 / ab) * xt[xi] - sqrt(1 / ab - 1) * e;
                        if (clip && fabs(px0) > 1) {
                            px0 = px0 > 0 ? 1 : -1;
                            e = (sqrt(1 / ab) * xt[xi] - px0) / sqrt(1 / ab - 1);
                        }
                        double want =
                            sqrt(abp) * px0 + sqrt(1 - abp - sigma * sigma) * e + sigma * noise[xi];
                        worst = fmax(worst, fabs(x[xi] - want));
                    }
            CHECK(worst < 2e-5, "ddim_step (learn_sigma %d, eta %d, clip %d): %.3g", ls, eta, clip, worst);
        }
}

/* ---- optimiser ops ----------------------------------------------------------------------- */

static void test_optim(void) {
    size_t sizes[3] = {0, 5, 100003};
    for (int s = 0; s < 3; s++) {
        size_t n = sizes[s];
        float *x = fbuf(n + 1), *out = fbuf(1), *out2 = fbuf(1);
        fill_uniform(x, n, -2, 2);
        double want = 0.0;
        for (size_t i = 0; i < n; i++) want += (double)x[i] * x[i];
        be->sum_squares(be, out, x, n);
        be->sum_squares(be, out2, x, n);
        CHECK_CLOSE(*out, want, 1e-6, "sum_squares");
        CHECK(*out == *out2, "sum_squares not deterministic");
        if (n < 100) continue;
        /* clip: a norm above max_norm is scaled down to it; below it nothing changes */
        float *y = copy_of(x, n);
        be->clip_by_norm(be, y, n, out, 10.0f);
        double norm2 = 0.0;
        for (size_t i = 0; i < n; i++) norm2 += (double)y[i] * y[i];
        CHECK_CLOSE(sqrt(norm2), 10.0, 1e-5, "clip_by_norm result norm");
        float *z = copy_of(x, n);
        be->clip_by_norm(be, z, n, out, 1e6f);
        CHECK(memcmp(z, x, n * sizeof(float)) == 0, "clip_by_norm changed x below max_norm");
    }

    /* AdamW against a scalar reference for three steps */
    size_t n = 1000;
    float *p = fbuf(n), *m = fbuf(n), *v = fbuf(n), *g = fbuf(n);
    double *rp = malloc(n * sizeof(double)), *rm = calloc(n, sizeof(double)),
           *rv = calloc(n, sizeof(double));
    fill_uniform(p, n, -1, 1);
    for (size_t i = 0; i < n; i++) rp[i] = p[i];
    const double lr = 1e-2, b1 = 0.9, b2 = 0.999, eps = 1e-8, wd = 0.05;
    for (int step = 1; step <= 3; step++) {
        fill_normal(g, n, 0.1);
        be->adamw_update(be, p, g, m, v, n, (float)lr, (float)b1, (float)b2, (float)eps, (float)wd,
                         step);
        for (size_t i = 0; i < n; i++) {
            rm[i] = (float)b1 * rm[i] + (1 - (float)b1) * g[i];
            rv[i] = (float)b2 * rv[i] + (1 - (float)b2) * (double)g[i] * g[i];
            double mhat = rm[i] / (1 - pow((float)b1, step)),
                   vhat = rv[i] / (1 - pow((float)b2, step));
            rp[i] -= lr * (mhat / (sqrt(vhat) + eps) + wd * rp[i]);
        }
    }
    CHECK(max_abs_diff(p, rp, n) < 1e-6, "adamw params vs reference: %.3g", max_abs_diff(p, rp, n));
    CHECK(max_abs_diff(m, rm, n) < 1e-7, "adamw m vs reference");
    CHECK(max_abs_diff(v, rv, n) < 1e-8, "adamw v vs reference");
    free(rp);
    free(rm);
    free(rv);

    float *ema = fbuf(n), *param = fbuf(n);
    fill_uniform(ema, n, -1, 1);
    fill_uniform(param, n, -1, 1);
    float *ema0 = copy_of(ema, n);
    be->ema_update(be, ema, param, n, 0.9999f);
    double worst = 0.0;
    for (size_t i = 0; i < n; i++)
        worst = fmax(worst, fabs(ema[i] - (0.9999 * ema0[i] + (1 - 0.9999) * param[i])));
    CHECK(worst < 1e-6, "ema_update: %.3g", worst);
}

/* ---- convolution and image layers --------------------------------------------------------- */

/* Naive direct convolution in double: ref (B,OC,Ho,Wo) with the padding of each side written as
 * a bounds test on the input index. */
static void conv_reference(const float *in, const float *w, const float *bias, double *ref, int B,
                           int C, int H, int W, int OC, int KH, int KW, int s, int pt, int pl,
                           int Ho, int Wo) {
    for (int b = 0; b < B; b++)
        for (int o = 0; o < OC; o++)
            for (int oy = 0; oy < Ho; oy++)
                for (int ox = 0; ox < Wo; ox++) {
                    double acc = bias ? bias[o] : 0.0;
                    for (int c = 0; c < C; c++)
                        for (int ki = 0; ki < KH; ki++)
                            for (int kj = 0; kj < KW; kj++) {
                                int iy = oy * s - pt + ki, ix = ox * s - pl + kj;
                                if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                                acc += (double)w[((o * C + c) * KH + ki) * KW + kj] *
                                       in[(((size_t)b * C + c) * H + iy) * W + ix];
                            }
                    ref[(((size_t)b * OC + o) * Ho + oy) * Wo + ox] = acc;
                }
}

/* max |a - ref| / max |ref| */
static double rel_err(const float *a, const double *ref, size_t n) {
    double scale = 1e-30;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(ref[i]));
    return max_abs_diff(a, ref, n) / scale;
}

/* conv2d_forward through the op table against the naive loops; out starts as junk so an
 * element never written shows. */
static void conv_case(int B, int C, int H, int W, int OC, int KH, int KW, int s, int pt, int pl,
                      int pb, int pr, int with_bias) {
    const int Ho = (H + pt + pb - KH) / s + 1, Wo = (W + pl + pr - KW) / s + 1;
    const size_t nin = (size_t)B * C * H * W, nout = (size_t)B * OC * Ho * Wo;
    float *in = fbuf(nin), *w = fbuf((size_t)OC * C * KH * KW), *bias = fbuf(OC), *out = fbuf(nout);
    fill_uniform(in, nin, -1, 1);
    fill_normal(w, (size_t)OC * C * KH * KW, 1.0 / sqrt(C * KH * KW));
    fill_uniform(bias, OC, -1, 1);
    for (size_t i = 0; i < nout; i++) out[i] = 777.0f;
    size_t sb = be->conv2d_scratch_bytes(be, B, C, H, W, OC, KH, KW, s, pt, pl, pb, pr);
    void *scratch = sb ? fbuf((sb + sizeof(float) - 1) / sizeof(float)) : NULL;
    be->conv2d_forward(be, out, in, w, with_bias ? bias : NULL, scratch, B, C, H, W, OC, KH, KW, s,
                       pt, pl, pb, pr);
    double *ref = malloc(nout * sizeof(double));
    conv_reference(in, w, with_bias ? bias : NULL, ref, B, C, H, W, OC, KH, KW, s, pt, pl, Ho, Wo);
    double err = rel_err(out, ref, nout);
    CHECK(err < 1e-5, "conv2d B%d C%d %dx%d -> OC%d k%dx%d s%d pad t%d l%d b%d r%d bias %s: "
          "error %.3g", B, C, H, W, OC, KH, KW, s, pt, pl, pb, pr, with_bias ? "on" : "NULL", err);
    free(ref);
}

/* The shared one-image core with a deliberately small band: several bands, a partial last one. */
static void conv_band_case(int rows_per_band) {
    const cpu_conv_geom g = {6, 13, 11, 5, 3, 3, 1, 1, 1, 1, 1};
    const int Ho = cpu_conv_out_h(&g), Wo = cpu_conv_out_w(&g);
    float *in = fbuf((size_t)g.C * g.H * g.W), *w = fbuf((size_t)g.OC * g.C * 9);
    float *bias = fbuf(g.OC), *out = fbuf((size_t)g.OC * Ho * Wo);
    size_t col_floats = cpu_conv_row_floats(&g) * rows_per_band;
    float *col = fbuf(col_floats);
    fill_uniform(in, (size_t)g.C * g.H * g.W, -1, 1);
    fill_uniform(w, (size_t)g.OC * g.C * 9, -1, 1);
    fill_uniform(bias, g.OC, -1, 1);
    cpu_conv2d_image(&g, out, in, w, bias, col, col_floats);
    double *ref = malloc((size_t)g.OC * Ho * Wo * sizeof(double));
    conv_reference(in, w, bias, ref, 1, g.C, g.H, g.W, g.OC, 3, 3, 1, 1, 1, Ho, Wo);
    double err = rel_err(out, ref, (size_t)g.OC * Ho * Wo);
    CHECK(err < 1e-5, "cpu_conv2d_image with bands of %d rows: error %.3g", rows_per_band, err);
    free(ref);
}

static void test_conv(void) {
    conv_case(2, 3, 7, 5, 4, 3, 3, 1, 1, 1, 1, 1, 1);   /* the VAE's 3x3 stride 1 pad 1 */
    conv_case(3, 5, 9, 8, 6, 3, 3, 2, 0, 0, 1, 1, 1);   /* Downsample2D: odd H, even W */
    conv_case(1, 4, 10, 7, 3, 3, 3, 2, 0, 0, 1, 1, 0);  /* the same, one image, no bias */
    conv_case(2, 7, 6, 5, 3, 1, 1, 1, 0, 0, 0, 0, 0);   /* 1x1: no im2col */
    conv_case(1, 9, 4, 6, 5, 1, 1, 1, 0, 0, 0, 0, 1);
    conv_case(2, 3, 5, 6, 2, 1, 3, 1, 2, 0, 1, 1, 1);   /* 1x3, every side padded differently */
    conv_case(3, 2, 8, 8, 4, 1, 1, 2, 0, 0, 0, 0, 1);   /* strided 1x1 goes through im2col */
    conv_case(4, 32, 12, 12, 16, 3, 3, 1, 1, 1, 1, 1, 1); /* the OpenMP bias and im2col paths */
    conv_case(1, 64, 64, 64, 16, 3, 3, 1, 1, 1, 1, 1, 1); /* one image in bands of 28, 28, 8 rows */
    conv_case(1, 128, 128, 128, 8, 3, 3, 2, 0, 0, 1, 1, 0); /* strided, 5 bands */
    conv_band_case(1);
    conv_band_case(4); /* bands of 4, 4, 4, 1 rows */

    /* scratch: none for 1x1, bounded for the largest VAE layers at 512 px and a batch of 32 */
    CHECK(be->conv2d_scratch_bytes(be, 8, 512, 64, 64, 512, 1, 1, 1, 0, 0, 0, 0) == 0,
          "a 1x1 convolution needs no scratch");
    const size_t cap = (size_t)64 << 20;
    size_t big[3] = {
        be->conv2d_scratch_bytes(be, 32, 128, 512, 512, 128, 3, 3, 1, 1, 1, 1, 1),
        be->conv2d_scratch_bytes(be, 32, 512, 256, 256, 512, 3, 3, 1, 1, 1, 1, 1),
        be->conv2d_scratch_bytes(be, 32, 128, 512, 512, 128, 3, 3, 2, 0, 0, 1, 1)};
    for (int i = 0; i < 3; i++)
        CHECK(big[i] > 0 && big[i] <= cap, "conv2d scratch %d: %zu bytes", i, big[i]);
}

/* GroupNorm against double loops: an offset mean (a one-pass variance would lose digits), SiLU
 * on and off, and in place. */
static void gn_case(int B, int C, int HW, int G, int silu) {
    const size_t n = (size_t)B * C * HW;
    float *x = fbuf(n), *gamma = fbuf(C), *beta = fbuf(C), *out = fbuf(n);
    for (size_t i = 0; i < n; i++) x[i] = (float)(3.0 + 1.5 * nrand());
    fill_uniform(gamma, C, 0.5, 1.5);
    fill_uniform(beta, C, -0.5, 0.5);
    for (size_t i = 0; i < n; i++) out[i] = 777.0f;
    const float eps = 1e-6f;
    be->group_norm_forward(be, out, x, gamma, beta, B, C, HW, G, eps, silu);
    double *ref = malloc(n * sizeof(double));
    const int cg = C / G;
    for (int b = 0; b < B; b++)
        for (int g = 0; g < G; g++) {
            const float *xs = x + ((size_t)b * C + (size_t)g * cg) * HW;
            const size_t m = (size_t)cg * HW;
            double mu = 0.0, var = 0.0;
            for (size_t i = 0; i < m; i++) mu += xs[i];
            mu /= m;
            for (size_t i = 0; i < m; i++) var += (xs[i] - mu) * (xs[i] - mu);
            var /= m;
            for (size_t i = 0; i < m; i++) {
                int c = g * cg + (int)(i / HW);
                double v = (xs[i] - mu) / sqrt(var + eps) * gamma[c] + beta[c];
                ref[((size_t)b * C + (size_t)g * cg) * HW + i] = silu ? v / (1.0 + exp(-v)) : v;
            }
        }
    double err = max_abs_diff(out, ref, n);
    CHECK(err < 2e-5, "group_norm B%d C%d HW%d G%d silu %d: %.3g", B, C, HW, G, silu, err);
    float *inplace = copy_of(x, n);
    be->group_norm_forward(be, inplace, inplace, gamma, beta, B, C, HW, G, eps, silu);
    CHECK(memcmp(inplace, out, n * sizeof(float)) == 0, "group_norm in place (out == x) differs");
    free(ref);
}

static void test_image_layers(void) {
    gn_case(2, 64, 35, 32, 0);
    gn_case(2, 64, 35, 32, 1);
    gn_case(3, 12, 11, 4, 1);
    gn_case(2, 128, 256, 32, 1); /* the OpenMP path */

    /* upsample: every output pixel is its source pixel, bit for bit */
    const int B = 2, C = 3, H = 5, W = 7;
    float *x = fbuf((size_t)B * C * H * W), *up = fbuf((size_t)B * C * 4 * H * W);
    fill_uniform(x, (size_t)B * C * H * W, -1, 1);
    fill_uniform(up, (size_t)B * C * 4 * H * W, 5, 6);
    be->upsample2x_forward(be, up, x, B, C, H, W);
    int bad = 0;
    for (int bc = 0; bc < B * C; bc++)
        for (int y = 0; y < 2 * H; y++)
            for (int xx = 0; xx < 2 * W; xx++)
                bad += up[((size_t)bc * 2 * H + y) * 2 * W + xx] !=
                       x[((size_t)bc * H + y / 2) * W + xx / 2];
    CHECK(bad == 0, "upsample2x: %d wrong pixels", bad);
    float *big = fbuf((size_t)4 * 8 * 32 * 32), *bigup = fbuf((size_t)4 * 8 * 64 * 64);
    fill_uniform(big, (size_t)4 * 8 * 32 * 32, -1, 1);
    be->upsample2x_forward(be, bigup, big, 4, 8, 32, 32);
    bad = 0;
    for (int bc = 0; bc < 32; bc++)
        for (int y = 0; y < 64; y++)
            for (int xx = 0; xx < 64; xx++)
                bad += bigup[((size_t)bc * 64 + y) * 64 + xx] !=
                       big[((size_t)bc * 32 + y / 2) * 32 + xx / 2];
    CHECK(bad == 0, "upsample2x (OpenMP path): %d wrong pixels", bad);

    /* transpose: partial tiles on both axes, and a size that takes the OpenMP path */
    const int shapes[2][3] = {{3, 37, 45}, {2, 1024, 33}};
    for (int k = 0; k < 2; k++) {
        const int TB = shapes[k][0], R = shapes[k][1], TC = shapes[k][2];
        const size_t n = (size_t)TB * R * TC;
        float *src = fbuf(n), *dst = fbuf(n);
        fill_uniform(src, n, -1, 1);
        be->transpose(be, dst, src, TB, R, TC);
        bad = 0;
        for (int b = 0; b < TB; b++)
            for (int r = 0; r < R; r++)
                for (int c = 0; c < TC; c++)
                    bad += dst[((size_t)b * TC + c) * R + r] != src[((size_t)b * R + r) * TC + c];
        CHECK(bad == 0, "transpose (%d, %d, %d): %d wrong elements", TB, R, TC, bad);
    }
}

int main(void) {
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    be = dt_backend_cpu_create();
    if (!be) {
        fprintf(stderr, "test_ops: cannot create the CPU backend\n");
        return 2;
    }
    static ops_schedule sched;
    ops_make_schedule(&sched);
    dt_diffusion_tables tab = ops_make_tables(&sched);
    CHECK(fabs(sched.abar[0] - 0.9999) < 1e-9 && fabs(sched.abar[999] - 4.04e-5) < 1e-7,
          "schedule: abar_0 %.6g abar_999 %.4g", sched.abar[0], sched.abar[999]);

    test_memory_and_create();
    test_matmul();
    test_attention();
    test_norm();
    test_pointwise();
    test_randn();
    test_embed();
    test_diffusion_loss(&tab);
    test_diffusion_steps(&sched, &tab);
    test_optim();
    test_conv();
    test_image_layers();

    free_bufs();
    be->destroy(be);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("test_ops: %.2f s\n", (t1.tv_sec - t0.tv_sec) + 1e-9 * (t1.tv_nsec - t0.tv_nsec));
    return check_done("test_ops");
}
