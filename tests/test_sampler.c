/* test_sampler.c — hybrid sampling (the forgetting curve's instrument) against plain sampling.
 *
 * sampler_run_hybrid must reduce to sampler_run at its ends (switch 0: only the noise-end
 * model; switch past T: only the data-end model), be plain sampling when both models are the
 * same, run the data end unconditionally and unguided when asked, and differ from both models
 * in between.
 */
#include <string.h>

#include "check.h"
#include "diffusion.h"
#include "dit.h"
#include "rng.h"
#include "sampler.h"

#define B 4

/* The initialisation with every parameter jittered, so adaLN-Zero's zeros do not make every
 * model output the same. */
static void random_weights(const dit_model *m, float *host, uint64_t seed) {
    dit_init_host(m, host, seed);
    for (size_t i = 0; i < m->num_floats; i++)
        host[i] += 0.05f * (2.0f * dt_rng_uniform(seed, 77, i) - 1.0f);
}

static double max_diff(const float *a, const float *b, size_t n) {
    double d = 0;
    for (size_t i = 0; i < n; i++) d = fmax(d, fabs((double)a[i] - b[i]));
    return d;
}

int main(void) {
    char err[512];
    dt_backend *be = dt_backend_create("cpu", err, sizeof err);
    dit_config cfg;
    dit_model m;
    dt_schedule sched;
    CHECK(be && dit_config_init(&cfg, 2, 32, 2, 4, 16, 3, 5, 1, err, sizeof err) == 0, "%s", err);
    CHECK(dit_model_init(&m, &cfg, be, err, sizeof err) == 0, "%s", err);
    CHECK(diffusion_schedule_init(&sched, DT_DIFFUSION_T) == 0, "schedule");
    const size_t P = m.num_floats, img = (size_t)3 * 16 * 16;
    float *host = malloc(P * sizeof(float));
    float *wa = be->alloc(be, P * sizeof(float)), *wb = be->alloc(be, P * sizeof(float));
    random_weights(&m, host, 1);
    be->upload(be, wa, host, P * sizeof(float));
    random_weights(&m, host, 2);
    be->upload(be, wb, host, P * sizeof(float));

    dt_sampler guided, plain;
    dt_sampler_opts go = {.steps = 20, .ddim = 0, .cfg = 3.0f, .clip_x0 = 1};
    dt_sampler_opts po = go;
    po.cfg = 1.0f;
    CHECK(sampler_init(&guided, &m, &sched, &go, B, err, sizeof err) == 0, "%s", err);
    CHECK(sampler_init(&plain, &m, &sched, &po, B, err, sizeof err) == 0, "%s", err);
    const int32_t labels[B] = {0, 1, 2, 4}, nulls[B] = {5, 5, 5, 5};
    float *ra = malloc(B * img * 4), *rb = malloc(B * img * 4), *rnull = malloc(B * img * 4),
          *h = malloc(B * img * 4);
    CHECK(sampler_run(&guided, wa, labels, B, 7, 0, ra, NULL) == 0, "run a");
    CHECK(sampler_run(&guided, wb, labels, B, 7, 0, rb, NULL) == 0, "run b");
    CHECK(sampler_run(&plain, wb, nulls, B, 7, 0, rnull, NULL) == 0, "run b unconditional");
    CHECK(max_diff(ra, rb, B * img) > 1e-3, "two models sample differently (%g)", max_diff(ra, rb, B * img));

    CHECK(sampler_run_hybrid(&guided, wa, wb, 0, 1, labels, B, 7, 0, h, NULL) == 0, "switch 0");
    CHECK(max_diff(h, ra, B * img) == 0, "switch 0 is the noise-end model alone (%g)", max_diff(h, ra, B * img));
    CHECK(sampler_run_hybrid(&guided, wa, wb, DT_DIFFUSION_T, 0, labels, B, 7, 0, h, NULL) == 0, "switch T");
    CHECK(max_diff(h, rb, B * img) == 0, "switch T is the data-end model alone (%g)", max_diff(h, rb, B * img));
    CHECK(sampler_run_hybrid(&guided, wa, wb, DT_DIFFUSION_T, 1, labels, B, 7, 0, h, NULL) == 0, "switch T, uncond");
    CHECK(max_diff(h, rnull, B * img) == 0,
          "an unconditional data end is the null class without guidance (%g)", max_diff(h, rnull, B * img));
    CHECK(sampler_run_hybrid(&guided, wa, wa, 500, 0, labels, B, 7, 0, h, NULL) == 0, "same model");
    CHECK(max_diff(h, ra, B * img) == 0, "one model on both sides is plain sampling (%g)", max_diff(h, ra, B * img));
    CHECK(sampler_run_hybrid(&guided, wa, wb, 500, 0, labels, B, 7, 0, h, NULL) == 0, "switch 500");
    CHECK(max_diff(h, ra, B * img) > 1e-4 && max_diff(h, rb, B * img) > 1e-4,
          "a switch in the middle differs from both models (%g, %g)", max_diff(h, ra, B * img),
          max_diff(h, rb, B * img));
    volatile int stop = 1;
    CHECK(sampler_run_hybrid(&guided, wa, wb, 500, 0, labels, B, 7, 0, h, &stop) == 1, "stop flag");

    sampler_free(&guided);
    sampler_free(&plain);
    be->free(be, wa);
    be->free(be, wb);
    diffusion_schedule_free(&sched);
    dit_model_free(&m);
    be->destroy(be);
    free(host); free(ra); free(rb); free(rnull); free(h);
    return check_done("test_sampler");
}
