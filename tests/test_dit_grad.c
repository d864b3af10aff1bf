/* test_dit_grad.c — the whole DiT's backward pass against finite differences, with learned
 * sigma on and off, plus the parameter counts of the published configurations. */
#include <string.h>

#include "check.h"
#include "diffusion.h"
#include "dit.h"
#include "rng.h"

/* L(params) = sum(r * DiT(x, t, y)): the projection makes every output element matter. */
static double dit_probe_loss(const dit_model *m, float *params, dit_acts *a, const float *x,
                             const int32_t *t, const int32_t *y, int B, float *out,
                             const float *r, size_t n_out) {
    dt_backend *be = m->be;
    dit_forward(m, params, a, x, t, y, B, out);
    float *host = malloc(n_out * sizeof(float));
    be->download(be, host, out, n_out * sizeof(float));
    double L = 0.0;
    for (size_t i = 0; i < n_out; i++) L += (double)r[i] * host[i];
    free(host);
    return L;
}

static void check_dit_gradients(int learn_sigma) {
    char err[256];
    dt_backend *be = dt_backend_cpu_create();
    dit_config c;
    CHECK(dit_config_init(&c, 2, 16, 2, 2, 4, 3, 3, learn_sigma, err, sizeof err) == 0, "%s", err);
    dit_model m;
    CHECK(dit_model_init(&m, &c, be, err, sizeof err) == 0, "%s", err);
    const int B = 3;
    dit_acts a;
    CHECK(dit_acts_alloc(&a, &m, B, 1, err, sizeof err) == 0, "%s", err);

    /* Random weights everywhere (the zero init would hide most gradients). */
    const size_t P = m.num_floats;
    float *host = malloc(P * sizeof(float));
    for (size_t i = 0; i < P; i++) host[i] = 0.3f * dt_philox_normal(7, 1, i);
    float *params = be->alloc(be, P * sizeof(float));
    float *grads = be->alloc(be, P * sizeof(float));
    be->upload(be, params, host, P * sizeof(float));

    const size_t n_in = (size_t)B * c.in_channels * 16, n_out = (size_t)B * c.out_channels * 16;
    float *hx = malloc(n_in * sizeof(float)), *r = malloc(n_out * sizeof(float));
    for (size_t i = 0; i < n_in; i++) hx[i] = dt_philox_normal(7, 2, i);
    for (size_t i = 0; i < n_out; i++) r[i] = dt_philox_normal(7, 3, i);
    int32_t ht[3] = {0, 517, 999}, hy[3] = {0, 2, 3}; /* label 3 = the null class */
    float *x = be->alloc(be, n_in * sizeof(float)), *out = be->alloc(be, n_out * sizeof(float));
    float *dout = be->alloc(be, n_out * sizeof(float));
    int32_t *t = be->alloc(be, sizeof ht), *y = be->alloc(be, sizeof hy);
    be->upload(be, x, hx, n_in * sizeof(float));
    be->upload(be, t, ht, sizeof ht);
    be->upload(be, y, hy, sizeof hy);
    be->upload(be, dout, r, n_out * sizeof(float));

    dit_probe_loss(&m, params, &a, x, t, y, B, out, r, n_out);
    dit_backward(&m, params, grads, &a, dout, y, B);
    float *g = malloc(P * sizeof(float));
    be->download(be, g, grads, P * sizeof(float));

    /* Central differences on a sample of entries of every tensor. */
    double dot = 0, na = 0, nn = 0;
    int bad = 0, checked = 0;
    const float h = 1e-2f;
    for (int pi = 0; pi < m.n_params; pi++) {
        const dit_param *p = &m.params[pi];
        int per = p->numel < 6 ? (int)p->numel : 6;
        for (int k = 0; k < per; k++) {
            size_t idx = p->offset + dt_rng_below(11, (uint64_t)pi, (uint64_t)k, (uint32_t)p->numel);
            float keep = host[idx];
            host[idx] = keep + h;
            be->upload(be, params, host, P * sizeof(float));
            double lp = dit_probe_loss(&m, params, &a, x, t, y, B, out, r, n_out);
            host[idx] = keep - h;
            be->upload(be, params, host, P * sizeof(float));
            double lm = dit_probe_loss(&m, params, &a, x, t, y, B, out, r, n_out);
            host[idx] = keep;
            double num = (lp - lm) / (2.0 * h), ana = g[idx];
            double rel = fabs(num - ana) / fmax(fmax(fabs(num), fabs(ana)), 1e-1);
            if (rel > 3e-2) {
                bad++;
                fprintf(stderr, "  %s[%zu]: analytic %.6g numeric %.6g\n", p->name, idx - p->offset, ana, num);
            }
            dot += num * ana;
            na += ana * ana;
            nn += num * num;
            checked++;
        }
    }
    be->upload(be, params, host, P * sizeof(float));
    double cosine = dot / sqrt(na * nn + 1e-30);
    CHECK(bad == 0, "learn_sigma=%d: %d of %d sampled gradients disagree with finite differences",
          learn_sigma, bad, checked);
    CHECK(cosine > 0.9999, "learn_sigma=%d: cosine(analytic, numeric) = %.6f", learn_sigma, cosine);

    /* Backward accumulates: a second call doubles the gradient. */
    dit_forward(&m, params, &a, x, t, y, B, out);
    dit_backward(&m, params, grads, &a, dout, y, B);
    float *g2 = malloc(P * sizeof(float));
    be->download(be, g2, grads, P * sizeof(float));
    double maxdiff = 0;
    for (size_t i = 0; i < P; i++) maxdiff = fmax(maxdiff, fabs(g2[i] - 2.0f * g[i]));
    CHECK(maxdiff < 1e-3, "gradients accumulate across backward calls (max diff %g)", maxdiff);

    /* Inference activations (one reused layer set) give the same output as training ones. */
    dit_acts ai;
    CHECK(dit_acts_alloc(&ai, &m, B, 0, err, sizeof err) == 0, "%s", err);
    float *o1 = malloc(n_out * sizeof(float)), *o2 = malloc(n_out * sizeof(float));
    dit_forward(&m, params, &a, x, t, y, B, out);
    be->download(be, o1, out, n_out * sizeof(float));
    dit_forward(&m, params, &ai, x, t, y, B, out);
    be->download(be, o2, out, n_out * sizeof(float));
    CHECK(memcmp(o1, o2, n_out * sizeof(float)) == 0, "inference and training forward agree");
    /* The label matters and the timestep matters. */
    int32_t hy2[3] = {1, 2, 3};
    be->upload(be, y, hy2, sizeof hy2);
    dit_forward(&m, params, &ai, x, t, y, B, out);
    be->download(be, o2, out, n_out * sizeof(float));
    size_t per_img = n_out / B;
    CHECK(memcmp(o1, o2, per_img * sizeof(float)) != 0, "changing the label changes the output");
    CHECK(memcmp(o1 + per_img, o2 + per_img, 2 * per_img * sizeof(float)) == 0,
          "other samples are unaffected by one sample's label");

    dit_acts_free(&ai, &m);
    free(o1); free(o2); free(g2); free(g); free(hx); free(r); free(host);
    be->free(be, x); be->free(be, out); be->free(be, dout); be->free(be, t); be->free(be, y);
    be->free(be, params); be->free(be, grads);
    dit_acts_free(&a, &m);
    dit_model_free(&m);
    be->destroy(be);
}

static void check_param_counts(void) {
    /* shared/reference/dit.md: latent 4 channels, learned sigma, 1000 classes, 32x32 latents. */
    static const struct { const char *arch; size_t params; } ref[] = {
        {"DiT-S/2", 32865056}, {"DiT-B/2", 130315808}, {"DiT-L/2", 457840672}, {"DiT-XL/2", 674834720},
    };
    for (size_t i = 0; i < 4; i++) {
        int depth, hidden, heads, patch;
        char err[256];
        CHECK(dit_arch_lookup(ref[i].arch, &depth, &hidden, &heads, &patch) == 0, "%s known", ref[i].arch);
        dit_config c;
        CHECK(dit_config_init(&c, depth, hidden, heads, patch, 32, 4, 1000, 1, err, sizeof err) == 0, "%s", err);
        CHECK(dit_count_params(&c) == ref[i].params, "%s: %zu parameters, reference %zu", ref[i].arch,
              dit_count_params(&c), ref[i].params);
    }
    int d, h, n, p;
    CHECK(dit_arch_lookup("DiT-XL/3", &d, &h, &n, &p) != 0, "unknown patch rejected");
    CHECK(dit_arch_lookup("DiT-M/2", &d, &h, &n, &p) != 0, "unknown size rejected");
}

static void check_pos_embed(void) {
    /* Token (h=1, w=2) of a 4x4 grid, D = 16: column half first, sin then cos, omega_k = 10000^(-k/4). */
    dit_config c;
    char err[256];
    dit_config_init(&c, 1, 16, 2, 2, 8, 3, 1, 0, err, sizeof err);
    float pe[16 * 16];
    dit_pos_embed_host(&c, pe);
    const float *row = pe + (1 * 4 + 2) * 16;
    for (int k = 0; k < 4; k++) {
        double om = pow(10000.0, -k / 4.0);
        CHECK_CLOSE(row[k], sin(2 * om), 1e-6, "pos_embed column sin");
        CHECK_CLOSE(row[4 + k], cos(2 * om), 1e-6, "pos_embed column cos");
        CHECK_CLOSE(row[8 + k], sin(1 * om), 1e-6, "pos_embed row sin");
        CHECK_CLOSE(row[12 + k], cos(1 * om), 1e-6, "pos_embed row cos");
    }
}

static void check_schedule(void) {
    dt_schedule s, r;
    CHECK(diffusion_schedule_init(&s, 1000) == 0, "schedule");
    /* shared/reference/dit.md values */
    CHECK_CLOSE(s.alphas_cumprod[0], 0.9999, 1e-6, "abar_0");
    CHECK(fabs(s.alphas_cumprod[249] - 0.524) < 1e-3, "abar_249 = %g", s.alphas_cumprod[249]);
    CHECK(fabs(s.alphas_cumprod[499] - 0.0786) < 1e-4, "abar_499 = %g", s.alphas_cumprod[499]);
    CHECK(fabs(s.alphas_cumprod[999] - 4.04e-5) < 1e-7, "abar_999 = %g", s.alphas_cumprod[999]);
    CHECK(diffusion_schedule_respace(&r, &s, 250) == 0, "respace");
    CHECK(r.T == 250, "250 kept steps, got %d", r.T);
    int ok = 1;
    for (int k = 0; k < 250; k++) ok &= r.timestep_map[k] == (int)nearbyint(k * 999.0 / 249.0);
    CHECK(ok, "respaced steps are round(k * 999 / 249)");
    /* Respacing keeps alpha_bar on the kept steps. */
    CHECK_CLOSE(r.alphas_cumprod[249], s.alphas_cumprod[999], 1e-12, "alpha_bar kept at t=999");
    CHECK_CLOSE(r.alphas_cumprod[100], s.alphas_cumprod[r.timestep_map[100]], 1e-12, "alpha_bar kept mid-chain");
    diffusion_schedule_free(&r);
    diffusion_schedule_free(&s);
}

int main(void) {
    check_param_counts();
    check_pos_embed();
    check_schedule();
    check_dit_gradients(1);
    check_dit_gradients(0);
    return check_done("test_dit_grad");
}
