/* bench_cpu_train.c — CPU training throughput of a DiT against the machine's sgemm peak.
 *
 * Runs full training steps (q_sample, forward, loss, backward, AdamW, EMA: the ops train.c
 * runs) of a DiT on random data, times each phase, counts the model FLOPs analytically and
 * compares the achieved rate with the best cblas_sgemm rate measured in the same run.
 *
 * usage: bench_cpu_train [--arch DiT-S/2] [--image 32] [--channels 3] [--batch 32] [--steps 5]
 *                        [--warmup 1] [--json FILE]
 */
#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "diffusion.h"
#include "dit.h"
#include "rng.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Best sgemm GFLOP/s over a few square and model-shaped products. */
static double sgemm_peak(int BN, int D) {
    const int shapes[][3] = {{2048, 2048, 2048}, {BN, 4 * D, D}, {BN, D, 4 * D}, {BN, 3 * D, D}};
    double best = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        float *a = calloc((size_t)M * K, 4), *b = calloc((size_t)N * K, 4), *c = calloc((size_t)M * N, 4);
        for (size_t i = 0; i < (size_t)M * K; i++) a[i] = (float)(i % 7) * 0.1f;
        for (size_t i = 0; i < (size_t)N * K; i++) b[i] = (float)(i % 5) * 0.1f;
        for (int rep = 0; rep < 4; rep++) {
            double t0 = now();
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, a, K, b, K, 0.0f, c, N);
            double g = 2.0 * M * N * K / (now() - t0) * 1e-9;
            if (rep && g > best) best = g; /* first call warms up */
        }
        free(a); free(b); free(c);
    }
    return best;
}

/* Forward FLOPs of one image: every matmul (2 per multiply-add) and the attention products. */
static double dit_forward_flops(const dit_config *c) {
    const double N = c->tokens, D = c->hidden;
    double per_token = c->patch_dim * D + c->depth * (3 * D * D + D * D + 8 * D * D) + D * c->out_dim;
    double attention = c->depth * 2.0 * N * N * D;           /* q k^T and P v */
    double per_image = DIT_FREQ_DIM * D + D * D + c->depth * 6 * D * D + 2 * D * D; /* conditioning */
    return 2.0 * (N * per_token + attention + per_image);
}

int main(int argc, char **argv) {
    const char *arch = "DiT-S/2", *json_path = NULL;
    int image = 32, channels = 3, batch = 32, steps = 5, warmup = 1;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--arch")) arch = argv[i + 1];
        else if (!strcmp(argv[i], "--image")) image = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--channels")) channels = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--batch")) batch = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--steps")) steps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--warmup")) warmup = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--json")) json_path = argv[i + 1];
        else { fprintf(stderr, "unknown option %s\n", argv[i]); return 2; }
    }
    int depth, hidden, heads, patch;
    char err[256];
    if (dit_arch_lookup(arch, &depth, &hidden, &heads, &patch)) { fprintf(stderr, "unknown arch %s\n", arch); return 2; }
    dit_config c;
    if (dit_config_init(&c, depth, hidden, heads, patch, image, channels, 10, 1, err, sizeof err)) { fprintf(stderr, "%s\n", err); return 2; }

    dt_backend *be = dt_backend_cpu_create();
    dit_model m;
    dit_acts a;
    if (dit_model_init(&m, &c, be, err, sizeof err) || dit_acts_alloc(&a, &m, batch, 1, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    const size_t P = m.num_floats, img = (size_t)channels * image * image, oimg = 2 * img;
    float *host = malloc(P * 4);
    dit_init_host(&m, host, 0);
    /* Nonzero adaLN and output weights so every op does real work. */
    for (size_t i = 0; i < P; i++) if (host[i] == 0.0f) host[i] = 1e-3f * dt_philox_normal(1, 1, i);
    float *params = be->alloc(be, P * 4), *grads = be->alloc(be, P * 4), *ema = be->alloc(be, P * 4);
    float *mom = be->alloc(be, P * 4), *vel = be->alloc(be, P * 4);
    be->upload(be, params, host, P * 4);
    be->copy(be, ema, params, P * 4);
    float *x0 = be->alloc(be, batch * img * 4), *eps = be->alloc(be, batch * img * 4);
    float *xt = be->alloc(be, batch * img * 4), *out = be->alloc(be, batch * oimg * 4);
    float *dout = be->alloc(be, batch * oimg * 4), *loss = be->alloc(be, batch * 4), *w = be->alloc(be, batch * 4);
    int32_t *t = be->alloc(be, batch * 4), *y = be->alloc(be, batch * 4);
    float *hx = malloc(batch * img * 4), *hw = malloc(batch * 4);
    int32_t *ht = malloc(batch * 4), *hy = malloc(batch * 4);
    for (size_t i = 0; i < batch * img; i++) hx[i] = dt_philox_normal(2, 2, i) * 0.5f;
    for (int i = 0; i < batch; i++) { ht[i] = (i * 37) % 1000; hy[i] = i % 11; hw[i] = 1.0f / batch; }
    dt_schedule sched;
    dt_diffusion_tables tab;
    diffusion_schedule_init(&sched, 1000);
    diffusion_tables_upload(&tab, &sched, be);

    double t_fwd = 0, t_bwd = 0, t_opt = 0, t_other = 0;
    for (int s = 0; s < warmup + steps; s++) {
        double t0 = now();
        be->upload(be, x0, hx, batch * img * 4);
        be->upload(be, t, ht, batch * 4);
        be->upload(be, y, hy, batch * 4);
        be->upload(be, w, hw, batch * 4);
        be->randn(be, eps, batch * img, 0, (uint64_t)s);
        be->q_sample(be, xt, x0, eps, t, &tab, batch, (int)img);
        be->zero(be, grads, P * 4);
        double t1 = now();
        dit_forward(&m, params, &a, xt, t, y, batch, out);
        double t2 = now();
        be->zero(be, dout, batch * oimg * 4);
        be->diffusion_loss(be, loss, dout, out, x0, xt, eps, t, w, &tab, batch, channels, image * image, 1);
        dit_backward(&m, params, grads, &a, dout, y, batch);
        double t3 = now();
        be->adamw_update(be, params, grads, mom, vel, P, 1e-4f, 0.9f, 0.999f, 1e-8f, 0.0f, s + 1);
        be->ema_update(be, ema, params, P, 0.9999f);
        be->sync(be);
        double t4 = now();
        if (s >= warmup) { t_other += t1 - t0; t_fwd += t2 - t1; t_bwd += t3 - t2; t_opt += t4 - t3; }
    }
    double total = t_fwd + t_bwd + t_opt + t_other, per_step = total / steps;
    double fwd = dit_forward_flops(&c), step_flops = 3.0 * fwd * batch; /* backward ~ 2x forward */
    double gflops = step_flops / per_step * 1e-9;
    double peak = sgemm_peak(batch * c.tokens, hidden);
    double ips = batch / per_step;
    printf("bench_cpu_train: %s %dx%dx%d batch %d, %zu params, %d threads\n", arch, image, image, channels,
           batch, P, omp_get_max_threads());
    printf("  step %.3f s (forward %.3f, backward+loss %.3f, optimizer %.3f, data %.3f)\n", per_step,
           t_fwd / steps, t_bwd / steps, t_opt / steps, t_other / steps);
    printf("  %.2f images/s, %.2f GFLOP/image forward, %.1f GFLOP/s achieved\n", ips, fwd * 1e-9, gflops);
    printf("  sgemm peak %.1f GFLOP/s measured: %.1f%% of peak\n", peak, 100.0 * gflops / peak);
    if (json_path) {
        FILE *f = fopen(json_path, "w");
        if (f) {
            fprintf(f, "{\"arch\":\"%s\",\"image\":%d,\"channels\":%d,\"batch\":%d,\"params\":%zu,"
                       "\"threads\":%d,\"steps\":%d,\"step_seconds\":%.4f,\"forward_seconds\":%.4f,"
                       "\"backward_seconds\":%.4f,\"optimizer_seconds\":%.4f,\"images_per_second\":%.3f,"
                       "\"gflop_per_image_forward\":%.3f,\"gflops\":%.2f,\"sgemm_peak_gflops\":%.2f,"
                       "\"fraction_of_peak\":%.4f}\n", arch, image, channels, batch, P, omp_get_max_threads(),
                    steps, per_step, t_fwd / steps, t_bwd / steps, t_opt / steps, ips, fwd * 1e-9, gflops,
                    peak, gflops / peak);
            fclose(f);
        }
    }
    return 0;
}
