/* bench_eval.c — one evaluation end to end (engine/eval.h, what a job runs at eval.fid_every):
 * reference statistics of a dataset, then N samples from a DiT's weights with the sampler,
 * features through the FID Inception (or a classifier), running statistics and the Fréchet
 * distance. Reports the time of each part, split into sampling and feature extraction.
 *
 * The DiT has random weights (dit_init_host, perturbed so every op does real work), the dataset
 * is synthetic shapes (synth.h), and the Inception has random weights unless --weights names the
 * real file: the times are those of real evaluations, the distances mean nothing.
 *
 * usage: bench_eval [--samples 10000] [--ref-images 1000] [--arch custom|DiT-S/2|...]
 *                   [--depth 2 --hidden 64 --heads 4 --patch 2] [--image 32] [--steps 50]
 *                   [--sampler ddim|ddpm] [--cfg 1.5] [--batch 64] [--device cpu]
 *                   [--weights FILE] [--json FILE]
 */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backend.h"
#include "dataset.h"
#include "diffusion.h"
#include "dit.h"
#include "eval.h"
#include "extractor.h"
#include "inception.h"
#include "philox.h"
#include "synth.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void on_progress(void *ctx, const char *stage, long done, long total) {
    double *last = ctx, t = now();
    if (done != total && t - *last < 10.0) return;
    *last = t;
    fprintf(stderr, "bench_eval: %s %ld/%ld\n", stage, done, total);
}

/* n synthetic images at size x size (classes cycling over K), CHW uint8. */
static int make_dataset(dt_dataset *ds, int n, int K, int size) {
    memset(ds, 0, sizeof *ds);
    ds->n = n;
    ds->C = 3;
    ds->H = ds->W = size;
    ds->num_classes = K;
    ds->images = malloc((size_t)n * 3 * size * size);
    ds->labels = malloc(sizeof(int32_t) * n);
    uint8_t *rgb = malloc((size_t)size * size * 3);
    if (!ds->images || !ds->labels || !rgb) return -1;
    for (int i = 0; i < n; i++) {
        ds->labels[i] = i % K;
        synth_render("solid", i % K, size, 1, (uint64_t)i, rgb);
        for (int c = 0; c < 3; c++)
            for (int p = 0; p < size * size; p++)
                ds->images[((size_t)i * 3 + c) * size * size + p] = rgb[p * 3 + c];
    }
    free(rgb);
    return 0;
}

int main(int argc, char **argv) {
    const char *arch = "custom", *device = "cpu", *weights = NULL, *json_path = NULL, *sampler = "ddim";
    int samples = 10000, ref_images = 1000, depth = 2, hidden = 64, heads = 4, patch = 2, image = 32;
    int steps = 50, batch = 64, classes = 8;
    double cfg = 1.5;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *o = argv[i], *v = argv[i + 1];
        if (!strcmp(o, "--samples")) samples = atoi(v);
        else if (!strcmp(o, "--ref-images")) ref_images = atoi(v);
        else if (!strcmp(o, "--arch")) arch = v;
        else if (!strcmp(o, "--depth")) depth = atoi(v);
        else if (!strcmp(o, "--hidden")) hidden = atoi(v);
        else if (!strcmp(o, "--heads")) heads = atoi(v);
        else if (!strcmp(o, "--patch")) patch = atoi(v);
        else if (!strcmp(o, "--image")) image = atoi(v);
        else if (!strcmp(o, "--steps")) steps = atoi(v);
        else if (!strcmp(o, "--sampler")) sampler = v;
        else if (!strcmp(o, "--cfg")) cfg = atof(v);
        else if (!strcmp(o, "--batch")) batch = atoi(v);
        else if (!strcmp(o, "--device")) device = v;
        else if (!strcmp(o, "--weights")) weights = v;
        else if (!strcmp(o, "--json")) json_path = v;
        else { fprintf(stderr, "unknown option %s\n", o); return 2; }
    }
    char err[1024], tmp_weights[64] = "";
    if (strcmp(arch, "custom") && dit_arch_lookup(arch, &depth, &hidden, &heads, &patch)) {
        fprintf(stderr, "unknown arch %s\n", arch);
        return 2;
    }
    if (!weights) {
        snprintf(tmp_weights, sizeof tmp_weights, "/tmp/bench_eval_inception_%ld.safetensors", (long)getpid());
        if (inception_write_random_weights(tmp_weights, 1, err, sizeof err)) { fprintf(stderr, "%s\n", err); return 1; }
        weights = tmp_weights;
    }
    dt_extractor *x = NULL;
    int rc = extractor_open(&x, "inception", weights, "inception", err, sizeof err);
    if (tmp_weights[0]) unlink(tmp_weights);
    if (rc) { fprintf(stderr, "%s\n", err); return 1; }

    dt_backend *be = dt_backend_create(device, err, sizeof err);
    dit_config c;
    dit_model m = {0};
    if (!be || dit_config_init(&c, depth, hidden, heads, patch, image, 3, classes, 1, err, sizeof err) ||
        dit_model_init(&m, &c, be, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    float *host = malloc(m.num_floats * sizeof(float));
    dit_init_host(&m, host, 0);
    for (size_t i = 0; i < m.num_floats; i++) host[i] += 0.02f * dt_philox_normal(3, 0, i);
    float *params = be->alloc(be, m.num_floats * sizeof(float));
    be->upload(be, params, host, m.num_floats * sizeof(float));
    free(host);
    dt_schedule sched;
    diffusion_schedule_init(&sched, DT_DIFFUSION_T);
    dt_dataset ds;
    if (make_dataset(&ds, ref_images, classes, image)) { fprintf(stderr, "out of memory\n"); return 1; }

    dt_eval_opts o = {.samples = samples, .steps = steps, .ddim = !strcmp(sampler, "ddim"),
                      .cfg = (float)cfg, .num_classes = classes, .chunk = batch, .seed = EVAL_SEED};
    dt_evaluator e;
    double last = 0;
    if (eval_init(&e, &m, &sched, x, &o, err, sizeof err)) { fprintf(stderr, "%s\n", err); return 1; }
    e.progress = on_progress;
    e.progress_ctx = &last;
    dt_eval_reference ref;
    double t0 = now();
    if (eval_reference(&e, &ds, NULL, &ref, err, sizeof err)) { fprintf(stderr, "%s\n", err); return 1; }
    double t_ref = now() - t0;
    dt_eval_result r;
    t0 = now();
    if (eval_run(&e, params, &ref, &r, err, sizeof err)) { fprintf(stderr, "%s\n", err); return 1; }
    double t_eval = now() - t0;

    const double feat_ips = samples / r.seconds_features, samp_ips = samples / r.seconds_sampling;
    const double ref_ips = ref_images / t_ref;
    printf("bench_eval: %d samples of a %d-layer DiT (hidden %d, patch %d, %dx%dx3, %zu params) on %s, "
           "%s %d steps cfg %.2g, batch %d; Inception features on %d CPU threads\n",
           samples, depth, hidden, patch, image, image, m.num_floats, be->name, sampler, steps, cfg,
           batch, omp_get_max_threads());
    printf("  evaluation %.2f s: sampling %.2f s (%.1f images/s), features %.2f s (%.2f images/s), "
           "distance %.2f s\n", t_eval, r.seconds_sampling, samp_ips, r.seconds_features, feat_ips,
           r.seconds_distance);
    printf("  reference statistics of %d images: %.2f s (%.2f images/s, including the covariance root)\n",
           ref_images, t_ref, ref_ips);
    printf("  10,000 samples at these rates: %.0f s sampling + %.0f s features\n",
           10000 / samp_ips, 10000 / feat_ips);
    if (json_path) {
        FILE *f = fopen(json_path, "w");
        if (f) {
            fprintf(f, "{\"bench\":\"eval\",\"device\":\"%s\",\"threads\":%d,\"model\":{\"arch\":\"%s\","
                    "\"depth\":%d,\"hidden\":%d,\"heads\":%d,\"patch\":%d,\"image\":%d,\"params\":%zu},"
                    "\"samples\":%d,\"sampler\":\"%s\",\"steps\":%d,\"cfg\":%g,\"batch\":%d,"
                    "\"extractor\":\"inception\",\"weights\":\"%s\",\"seconds\":{\"evaluation\":%.3f,"
                    "\"sampling\":%.3f,\"features\":%.3f,\"distance\":%.3f},\"sampling_images_per_second\":%.3f,"
                    "\"features_images_per_second\":%.3f,\"reference\":{\"images\":%d,\"seconds\":%.3f},"
                    "\"projected_10000\":{\"sampling\":%.1f,\"features\":%.1f}}\n",
                    be->name, omp_get_max_threads(), arch, depth, hidden, heads, patch, image,
                    m.num_floats, samples, sampler, steps, cfg, batch, tmp_weights[0] ? "random" : "file",
                    t_eval, r.seconds_sampling, r.seconds_features, r.seconds_distance, samp_ips, feat_ips,
                    ref_images, t_ref, 10000 / samp_ips, 10000 / feat_ips);
            fclose(f);
        }
    }
    eval_reference_free(&ref);
    eval_free(&e);
    be->free(be, params);
    dit_model_free(&m);
    diffusion_schedule_free(&sched);
    be->destroy(be);
    extractor_free(x);
    free(ds.images);
    free(ds.labels);
    return 0;
}
