/* bench_gpu_sample.c — sampling throughput of a DiT on any backend (CUDA or CPU): DDIM or DDPM
 * with classifier-free guidance through engine/sampler.h, random (non-zero) weights.
 *
 * Each timed run is one sampler_run: `steps` reverse steps of a batch of B images, each step a
 * forward pass over [cond; null] (2B images when --cfg != 1), the guidance combine and the
 * DDIM/DDPM update, then the download of the images. Warm-up runs use a 2-step chain of the same
 * sampler settings. Reports seconds per run (median), images/s, model forwards/s, TFLOP/s
 * (analytic forward FLOPs x model batch x steps) and MFU against the matmul ceiling measured in
 * the same process, plus peak memory.
 *
 * usage: bench_gpu_sample [--device cuda:0] [--precision bf16|fp32] [--arch DiT-XL/2] [--image 32]
 *                         [--channels 4] [--classes 1000] [--batch 32] [--sampler ddim|ddpm]
 *                         [--steps 50|250] [--cfg 4.0] [--warmup 1] [--repeats 1] [--json FILE]
 */
#include "bench_gpu_common.h"
#include "diffusion.h"
#include "sampler.h"

typedef struct {
    const char *device, *precision, *arch, *sampler, *json_path;
    int image, channels, classes, learn_sigma, batch, steps, warmup, repeats;
    float cfg;
} sample_opts;

static void sample_usage(void) {
    fprintf(stderr, "usage: bench_gpu_sample [--device cuda:0|cpu] [--precision bf16|fp32] [--arch DiT-XL/2]\n"
                    "         [--image 32] [--channels 4] [--classes 1000] [--learn-sigma 1] [--batch 32]\n"
                    "         [--sampler ddim|ddpm] [--steps 50 (ddim) | 250 (ddpm)] [--cfg 4.0]\n"
                    "         [--warmup 1] [--repeats 1] [--json FILE]\n");
}

int main(int argc, char **argv) {
    sample_opts o = {.device = "cuda:0", .precision = "bf16", .arch = "DiT-XL/2", .sampler = "ddim",
                     .image = 32, .channels = 4, .classes = 1000, .learn_sigma = 1, .batch = 32,
                     .steps = 0, .warmup = 1, .repeats = 1, .cfg = 4.0f};
    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i], *v = argv[i + 1];
        if (i + 1 >= argc) { sample_usage(); return 2; }
        if (!strcmp(a, "--device")) o.device = v;
        else if (!strcmp(a, "--precision")) o.precision = v;
        else if (!strcmp(a, "--arch")) o.arch = v;
        else if (!strcmp(a, "--image")) o.image = atoi(v);
        else if (!strcmp(a, "--channels")) o.channels = atoi(v);
        else if (!strcmp(a, "--classes")) o.classes = atoi(v);
        else if (!strcmp(a, "--learn-sigma")) o.learn_sigma = atoi(v);
        else if (!strcmp(a, "--batch")) o.batch = atoi(v);
        else if (!strcmp(a, "--sampler")) o.sampler = v;
        else if (!strcmp(a, "--steps")) o.steps = atoi(v);
        else if (!strcmp(a, "--cfg")) o.cfg = (float)atof(v);
        else if (!strcmp(a, "--warmup")) o.warmup = atoi(v);
        else if (!strcmp(a, "--repeats")) o.repeats = atoi(v);
        else if (!strcmp(a, "--json")) o.json_path = v;
        else { fprintf(stderr, "unknown option %s\n", a); sample_usage(); return 2; }
    }
    const int ddim = !strcmp(o.sampler, "ddim");
    if (!ddim && strcmp(o.sampler, "ddpm")) { sample_usage(); return 2; }
    if (o.steps == 0) o.steps = ddim ? 50 : 250;
    if (o.batch < 1 || o.repeats < 1 || o.warmup < 0 || o.steps < 1) { sample_usage(); return 2; }

    dit_config c;
    if (bench_model_config(o.arch, o.image, o.channels, o.classes, o.learn_sigma, &c)) return 2;
    char err[512];
    char device_name[256];
    bench_device_name(o.device, device_name, sizeof device_name);
    const size_t base_used = bench_device_used_bytes(o.device); /* creates the CUDA context */
    dt_backend *be = bench_backend_open(o.device, o.precision, err, sizeof err);
    if (!be) {
        fprintf(stderr, "bench_gpu_sample: %s\n", err);
        return 1;
    }
    bench_mem_track(be);
    dit_model m;
    dt_schedule sched;
    dt_sampler smp, warm;
    memset(&sched, 0, sizeof sched);
    memset(&smp, 0, sizeof smp);
    memset(&warm, 0, sizeof warm);
    dt_sampler_opts so = {.steps = o.steps, .ddim = ddim, .eta = 0.0, .cfg = o.cfg, .clip_x0 = 0 /* latents */};
    dt_sampler_opts wo = so;
    wo.steps = 2;
    float *params = NULL;
    if (dit_model_init(&m, &c, be, err, sizeof err) || diffusion_schedule_init(&sched, DT_DIFFUSION_T) ||
        !(params = be->alloc(be, m.num_floats * sizeof(float)))) {
        fprintf(stderr, "bench_gpu_sample: setup failed: %s\n", params ? err : "out of memory for the weights");
        return 1;
    }
    bench_init_params(&m, params, 1);

    const size_t img = (size_t)o.channels * o.image * o.image;
    float *host = malloc((size_t)o.batch * img * sizeof(float));
    int32_t *labels = malloc((size_t)o.batch * sizeof(int32_t));
    double *times = calloc((size_t)o.repeats, sizeof(double));
    if (!host || !labels || !times) return 1;
    for (int i = 0; i < o.batch; i++) labels[i] = (i * 97) % o.classes;

    /* Warm-up on a 2-step chain (same batch, same activations), freed before the measured
     * sampler is allocated so the two never hold memory together. */
    if (o.warmup && sampler_init(&warm, &m, &sched, &wo, o.batch, err, sizeof err)) {
        fprintf(stderr, "bench_gpu_sample: warm-up setup failed: %s\n", err);
        return 1;
    }
    for (int w = 0; w < o.warmup; w++) {
        int r = sampler_run(&warm, params, labels, o.batch, 7, (uint64_t)w, host, NULL);
        if (r) {
            fprintf(stderr, "bench_gpu_sample: warm-up failed on %s: %s\n", be->name,
                    be->last_error ? be->last_error(be) : "backend error");
            return 1;
        }
    }
    sampler_free(&warm);
    if (sampler_init(&smp, &m, &sched, &so, o.batch, err, sizeof err)) {
        fprintf(stderr, "bench_gpu_sample: setup failed: %s\n", err);
        return 1;
    }
    size_t device_peak = 0;
    for (int rep = 0; rep < o.repeats; rep++) {
        be->sync(be);
        double t0 = bench_now();
        int r = sampler_run(&smp, params, labels, o.batch, 7, 100 + (uint64_t)rep, host, NULL);
        double t1 = bench_now(); /* sampler_run ends with a download and be->sync */
        if (r) {
            fprintf(stderr, "bench_gpu_sample: sampling failed on %s: %s\n", be->name,
                    be->last_error ? be->last_error(be) : "backend error");
            return 1;
        }
        times[rep] = t1 - t0;
        size_t used = bench_device_used_bytes(o.device);
        if (used > base_used && used - base_used > device_peak) device_peak = used - base_used;
    }
    /* Sanity: finite output and its spread (a model that outputs zeros would still be timed). */
    double sum = 0, sq = 0;
    int finite = 1;
    for (size_t i = 0; i < (size_t)o.batch * img; i++) {
        if (!isfinite(host[i])) finite = 0;
        else sum += host[i], sq += (double)host[i] * host[i];
    }
    const double n_out = (double)o.batch * img, out_std = sqrt(fmax(0.0, sq / n_out - (sum / n_out) * (sum / n_out)));
    const size_t tracked_peak = bench_mem.peak, P = m.num_floats;
    const size_t device_total = bench_device_total_bytes(o.device);
    sampler_free(&smp);
    be->free(be, params);
    dit_model_free(&m);
    diffusion_schedule_free(&sched);
    be->destroy(be);

    const int guided = o.cfg != 1.0f, MB = guided ? 2 * o.batch : o.batch;
    double mean = 0;
    for (int i = 0; i < o.repeats; i++) mean += times[i] / o.repeats;
    const double med = bench_median(times, o.repeats);
    const double fwd = bench_dit_forward_flops(&c), run_flops = fwd * MB * o.steps;
    const double tflops = run_flops / med * 1e-12, ips = o.batch / med;
    bench_ceiling ceil;
    bench_matmul_ceiling(o.device, o.precision, MB * c.tokens, c.hidden, &ceil);
    const double mfu = ceil.best_tflops > 0 ? tflops / ceil.best_tflops : 0;
    const char *eff = bench_effective_precision(o.device, o.precision);
    const size_t peak = device_peak > tracked_peak ? device_peak : tracked_peak;

    printf("bench_gpu_sample: %s on %s (%s), %s, %dx%dx%d, %d classes, %zu params\n", o.arch, o.device,
           device_name, eff, o.image, o.image, o.channels, o.classes, P);
    printf("  %s-%d, cfg %.2f (model batch %d), batch %d: %.3f s per run median (mean %.3f) over %d runs,"
           " %.2f ms per step\n", ddim ? "DDIM" : "DDPM", o.steps, o.cfg, MB, o.batch, med, mean, o.repeats,
           med / o.steps * 1e3);
    printf("  %.3f images/s, %.1f image-forwards/s, %.2f TFLOP/s achieved; output %s, std %.3f\n", ips,
           MB * o.steps / med, tflops, finite ? "finite" : "NOT FINITE", out_std);
    printf("  matmul ceiling %.2f TFLOP/s (%dx%dx%d: %.2f, model shapes: %.2f; %s): MFU %.1f%%\n",
           ceil.best_tflops, ceil.square, ceil.square, ceil.square, ceil.square_tflops, ceil.model_tflops,
           ceil.method, 100 * mfu);
    printf("  memory: %.2f GiB through be->alloc, %.2f GiB device (cudaMemGetInfo), %.2f GiB host RSS\n",
           tracked_peak / 1073741824.0, device_peak / 1073741824.0, bench_max_rss_bytes() / 1073741824.0);
    if (o.json_path) {
        FILE *f = fopen(o.json_path, "w");
        if (!f) {
            fprintf(stderr, "cannot write %s\n", o.json_path);
            return 1;
        }
        fprintf(f, "{\"benchmark\":\"sample\",\"impl\":\"difftune\",\"device\":\"%s\",\"device_name\":\"%s\","
                   "\"precision\":\"%s\",\"compile\":false,\"arch\":\"%s\",\"image\":%d,\"channels\":%d,"
                   "\"classes\":%d,\"learn_sigma\":%d,\"batch\":%d,\"params\":%zu,\"threads\":%d,"
                   "\"sampler\":\"%s\",\"sampling_steps\":%d,\"cfg\":%.3f,\"model_batch\":%d,\"warmup\":%d,"
                   "\"repeats\":%d,\"run_seconds_median\":%.5f,\"run_seconds_mean\":%.5f,\"step_ms_median\":%.4f,"
                   "\"images_per_second\":%.5f,\"forwards_per_second\":%.3f,\"gflop_per_image_forward\":%.4f,"
                   "\"flop_per_run\":%.6e,\"tflops\":%.4f,\"matmul_ceiling_tflops\":%.4f,"
                   "\"matmul_ceiling_square_tflops\":%.4f,\"matmul_ceiling_model_tflops\":%.4f,"
                   "\"matmul_ceiling_method\":\"%s\",\"mfu\":%.5f,\"peak_memory_gib\":%.4f,"
                   "\"allocated_memory_gib\":%.4f,\"device_memory_gib\":%.4f,\"device_total_gib\":%.4f,"
                   "\"host_rss_gib\":%.4f,\"output_finite\":%s,\"output_std\":%.5f}\n",
                o.device, device_name, eff, o.arch, o.image, o.channels, o.classes, o.learn_sigma, o.batch, P,
                omp_get_max_threads(), ddim ? "ddim" : "ddpm", o.steps, o.cfg, MB, o.warmup, o.repeats, med,
                mean, med / o.steps * 1e3, ips, MB * o.steps / med, fwd * 1e-9, run_flops, tflops,
                ceil.best_tflops, ceil.square_tflops, ceil.model_tflops, ceil.method, mfu, peak / 1073741824.0,
                tracked_peak / 1073741824.0, device_peak / 1073741824.0, device_total / 1073741824.0,
                bench_max_rss_bytes() / 1073741824.0, finite ? "true" : "false", out_std);
        fclose(f);
    }
    free(host);
    free(labels);
    free(times);
    return finite ? 0 : 3;
}
