/* bench_gpu_train.c — training throughput of a DiT on any backend (CUDA or CPU), against the
 * device's measured matmul ceiling.
 *
 * Runs full training steps on random data, exactly what engine/train.c does per step through the
 * public engine functions and the op table: upload x0/t/y/weights, randn eps, q_sample, forward,
 * diffusion loss (mse + vb with learned sigma), backward, AdamW, EMA, download of the per-sample
 * losses and a sync. Reports the median step time, images/s, achieved TFLOP/s (analytic model
 * FLOPs, see bench_dit_forward_flops; a training step counts 3x the forward), MFU against the
 * best matmul rate measured in the same run (cuBLAS at the run's precision on CUDA, cblas_sgemm
 * on the CPU) and peak memory. With --max-batch it first finds the largest batch that fits.
 *
 * With --vae FILE the step encodes its batch on the fly instead of reading cached latents: each
 * step uploads B random images of (8 x image) pixels, runs the SD VAE encoder on them
 * (engine/vae.h) and trains on the posterior mean (the sample's elementwise mean + std * noise is
 * left out: it costs nothing next to the encoder). Without it the batch is latents as the cache
 * gives them. The two runs side by side are the cost of not caching.
 *
 * usage: bench_gpu_train [--device cuda:0] [--precision bf16|fp32] [--arch DiT-XL/2] [--image 32]
 *                        [--channels 4] [--classes 1000] [--batch 32] [--max-batch]
 *                        [--max-batch-cap 4096] [--steps 20] [--warmup 3] [--phase-sync 1]
 *                        [--vae FILE] [--json FILE]
 */
#include "bench_gpu_common.h"
#include "diffusion.h"
#include "rng.h"
#include "vae.h"

typedef struct {
    const char *device, *precision, *arch, *json_path;
    const char *vae_path; /* encode every batch on the fly with this VAE; NULL = cached latents */
    int image, channels, classes, learn_sigma, batch, steps, warmup;
    int max_batch;     /* search for the largest batch that fits */
    int max_batch_cap; /* never try more than this (CPU memory is overcommitted, not refused) */
    int phase_sync;    /* sync between phases to time them (costs a few µs per step) */
} train_opts;

typedef struct {
    size_t params;
    double step_median, step_mean, step_min;             /* seconds */
    double data, forward, backward, update;             /* seconds per step, phase means */
    double encode;                                      /* of data: the VAE encoder (--vae) */
    double loss;                                        /* mean per-sample loss of the last step */
    size_t tracked_peak, device_peak, device_total;     /* bytes */
    char device_name[256];
} train_result;

/* The backend state of one run; everything is freed by train_close. */
typedef struct {
    dt_backend *be;
    dit_model m;
    dit_acts a;
    dt_schedule sched;
    dt_diffusion_tables tab;
    float *params, *grads, *ema, *mom, *vel;
    float *x0, *eps, *xt, *out, *dout, *loss, *w;
    int32_t *t, *y;
    vae_model *vae;        /* --vae: the encoder of on-the-fly batches */
    float *pixels, *std;   /* (B, 3, 8 image, 8 image) images, (B, C, image, image) posterior std */
} train_state;

static void train_close(train_state *s) {
    if (s->be) {
        dt_backend *be = s->be;
        void *bufs[] = {s->params, s->grads, s->ema, s->mom, s->vel, s->x0, s->eps, s->xt,
                        s->out, s->dout, s->loss, s->w, s->t, s->y, s->pixels, s->std};
        for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
            if (bufs[i]) be->free(be, bufs[i]);
        if (s->a.block) dit_acts_free(&s->a, &s->m);
        vae_free(s->vae);
        diffusion_tables_free(&s->tab, be); /* NULL-safe */
        if (s->m.params) dit_model_free(&s->m);
        be->destroy(be);
    }
    diffusion_schedule_free(&s->sched);
    memset(s, 0, sizeof *s);
}

/* Opens a backend and allocates a full training state for `batch`. Returns 0; 1 when the
 * backend refused an allocation (does not fit); -1 on any other failure. Message in err. */
static int train_open(train_state *s, const train_opts *o, const dit_config *c, int batch, char *err,
                      size_t errlen) {
    memset(s, 0, sizeof *s);
    if (!(s->be = bench_backend_open(o->device, o->precision, err, errlen))) return -1;
    dt_backend *be = s->be;
    bench_mem_track(be);
    if (dit_model_init(&s->m, c, be, err, errlen)) return 1;
    const size_t P = s->m.num_floats, B = (size_t)batch;
    const size_t img = (size_t)c->in_channels * c->image_size * c->image_size;
    const size_t oimg = (size_t)c->out_channels * c->image_size * c->image_size;
    float **blocks[] = {&s->params, &s->grads, &s->ema, &s->mom, &s->vel};
    for (int i = 0; i < 5; i++)
        if (!(*blocks[i] = be->alloc(be, P * sizeof(float)))) goto oom;
    if (!(s->x0 = be->alloc(be, B * img * 4)) || !(s->eps = be->alloc(be, B * img * 4)) ||
        !(s->xt = be->alloc(be, B * img * 4)) || !(s->out = be->alloc(be, B * oimg * 4)) ||
        !(s->dout = be->alloc(be, B * oimg * 4)) || !(s->loss = be->alloc(be, B * 4)) ||
        !(s->w = be->alloc(be, B * 4)) || !(s->t = be->alloc(be, B * 4)) || !(s->y = be->alloc(be, B * 4)))
        goto oom;
    if (dit_acts_alloc(&s->a, &s->m, batch, 1, err, errlen)) return 1;
    if (diffusion_schedule_init(&s->sched, DT_DIFFUSION_T) || diffusion_tables_upload(&s->tab, &s->sched, be)) {
        snprintf(err, errlen, "out of memory for the diffusion tables");
        return 1;
    }
    bench_init_params(&s->m, s->params, 1);
    be->copy(be, s->ema, s->params, P * sizeof(float));
    if (o->vae_path) {
        const int px = c->image_size * 8;
        if (vae_load(&s->vae, o->vae_path, be, err, errlen)) return -1;
        if (vae_get_config(s->vae)->latent_channels != c->in_channels ||
            vae_get_config(s->vae)->downsample != 8) {
            snprintf(err, errlen, "the VAE's latents are not %dx%dx%d", c->in_channels,
                     c->image_size, c->image_size);
            return -1;
        }
        if (!(s->pixels = be->alloc(be, B * 3 * px * px * 4)) || !(s->std = be->alloc(be, B * img * 4)) ||
            vae_reserve(s->vae, batch, px, err, errlen))
            return 1;
    }
    return 0;
oom:
    snprintf(err, errlen, "out of memory: parameters, optimizer state and batch-%d buffers (%.2f GiB "
             "held) do not fit on %s", batch, bench_mem.cur / 1073741824.0, be->name);
    return 1;
}

/* Opens a state for `batch`, runs warmup + steps training steps and closes it. Returns 0 (r is
 * filled), 1 when it does not fit (allocation refused or the device ran out of memory during a
 * step), -1 on another failure. Message in err. */
static int train_bench(const train_opts *o, const dit_config *c, int batch, int steps, int warmup,
                       train_result *r, char *err, size_t errlen) {
    memset(r, 0, sizeof *r);
    bench_device_name(o->device, r->device_name, sizeof r->device_name);
    const size_t base_used = bench_device_used_bytes(o->device); /* context already created */
    r->device_total = bench_device_total_bytes(o->device);
    train_state s;
    int rc = train_open(&s, o, c, batch, err, errlen);
    if (rc) {
        train_close(&s);
        return rc;
    }
    dt_backend *be = s.be;
    const size_t P = s.m.num_floats, B = (size_t)batch;
    const int HW = c->image_size * c->image_size;
    const size_t img = (size_t)c->in_channels * HW, oimg = (size_t)c->out_channels * HW;
    r->params = P;

    /* Host data, allocated once: a fixed random batch, fresh timesteps and labels every step. */
    const size_t pix = s.vae ? (size_t)3 * 64 * HW : 0; /* floats of one on-the-fly image */
    float *hx = malloc(B * (s.vae ? pix : img) * 4), *hw = malloc(B * 4), *hloss = malloc(B * 4);
    int32_t *ht = malloc(B * 4), *hy = malloc(B * 4);
    double *times = calloc((size_t)steps + 1, sizeof(double));
    if (!hx || !hw || !hloss || !ht || !hy || !times) {
        snprintf(err, errlen, "out of host memory");
        rc = -1;
        goto done;
    }
    for (size_t i = 0; i < B * (s.vae ? pix : img); i++)
        hx[i] = s.vae ? 2.0f * dt_rng_uniform(2, 2, i) - 1.0f : dt_philox_normal(2, 2, i);
    for (size_t i = 0; i < B; i++) hw[i] = 1.0f / (float)B;

    const int total = warmup + steps;
    for (int step = 1; step <= total; step++) {
        for (size_t i = 0; i < B; i++) {
            ht[i] = (int32_t)dt_rng_below(3, DT_STREAM_TIMESTEP, (uint64_t)step * B + i, DT_DIFFUSION_T);
            hy[i] = (int32_t)dt_rng_below(3, DT_STREAM_LABELS, (uint64_t)step * B + i, (uint32_t)c->num_classes + 1);
        }
        double t0 = bench_now();
        be->zero(be, s.grads, P * sizeof(float));
        double te = 0;
        if (s.vae) { /* on the fly: the images go up and through the encoder every step */
            const int px = c->image_size * 8;
            be->upload(be, s.pixels, hx, B * pix * 4);
            if (o->phase_sync) be->sync(be);
            double e0 = bench_now();
            vae_encode(s.vae, s.pixels, batch, px, px, s.x0, s.std);
            if (o->phase_sync) be->sync(be);
            te = bench_now() - e0;
        } else {
            be->upload(be, s.x0, hx, B * img * 4);
        }
        be->upload(be, s.t, ht, B * 4);
        be->upload(be, s.y, hy, B * 4);
        be->upload(be, s.w, hw, B * 4);
        be->randn(be, s.eps, B * img, 3, DT_STREAM_NOISE + (uint64_t)step * 4096);
        be->q_sample(be, s.xt, s.x0, s.eps, s.t, &s.tab, batch, (int)img);
        if (o->phase_sync) be->sync(be);
        double t1 = bench_now();
        dit_forward(&s.m, s.params, &s.a, s.xt, s.t, s.y, batch, s.out);
        if (o->phase_sync) be->sync(be);
        double t2 = bench_now();
        be->zero(be, s.dout, B * oimg * 4);
        be->diffusion_loss(be, s.loss, s.dout, s.out, s.x0, s.xt, s.eps, s.t, s.w, &s.tab, batch,
                           c->in_channels, HW, c->learn_sigma);
        dit_backward(&s.m, s.params, s.grads, &s.a, s.dout, s.y, batch);
        if (o->phase_sync) be->sync(be);
        double t3 = bench_now();
        be->adamw_update(be, s.params, s.grads, s.mom, s.vel, P, 1e-4f, 0.9f, 0.999f, 1e-8f, 0.0f, step);
        be->ema_update(be, s.ema, s.params, P, 0.9999f);
        be->download(be, hloss, s.loss, B * 4);
        int sync_rc = be->sync(be);
        double t4 = bench_now();
        if (sync_rc) {
            const char *why = be->last_error ? be->last_error(be) : "";
            snprintf(err, errlen, "step %d failed on %s: %s", step, be->name, why && *why ? why : "backend error");
            /* cudaMalloc ("out of memory"), a scratch slot or cuBLAS (CUBLAS_STATUS_ALLOC_FAILED) */
            rc = strstr(err, "out of memory") || strstr(err, "ALLOC_FAILED") ? 1 : -1;
            goto done;
        }
        size_t used = bench_device_used_bytes(o->device);
        if (used > base_used && used - base_used > r->device_peak) r->device_peak = used - base_used;
        if (step > warmup) {
            times[step - warmup - 1] = t4 - t0;
            r->data += t1 - t0;
            r->encode += te;
            r->forward += t2 - t1;
            r->backward += t3 - t2;
            r->update += t4 - t3;
        }
    }
    double sum = 0, loss = 0;
    r->step_min = steps ? times[0] : 0;
    for (int i = 0; i < steps; i++) {
        sum += times[i];
        if (times[i] < r->step_min) r->step_min = times[i];
    }
    for (size_t i = 0; i < B; i++) loss += hloss[i];
    r->loss = loss / (double)B;
    if (steps) {
        r->step_mean = sum / steps;
        r->data /= steps;
        r->encode /= steps;
        r->forward /= steps;
        r->backward /= steps;
        r->update /= steps;
    }
    r->step_median = bench_median(times, steps);
    r->tracked_peak = bench_mem.peak;
done:
    free(hx); free(hw); free(hloss); free(ht); free(hy); free(times);
    train_close(&s);
    return rc;
}

/* Does a training step at `batch` fit? Opens a fresh backend (a failed step leaves the backend's
 * sticky error set), allocates everything, runs one full step and frees it all. */
static int train_fits(const train_opts *o, const dit_config *c, int batch) {
    char err[512];
    train_result r;
    double t0 = bench_now();
    int rc = train_bench(o, c, batch, 1, 0, &r, err, sizeof err);
    if (rc == 0)
        printf("  batch %5d: fits (%.2f GiB allocated, %.2f GiB on the device; %.1f s)\n", batch,
               r.tracked_peak / 1073741824.0, r.device_peak / 1073741824.0, bench_now() - t0);
    else
        printf("  batch %5d: %s: %s\n", batch, rc > 0 ? "does not fit" : "FAILED", err);
    fflush(stdout);
    if (rc < 0) {
        fprintf(stderr, "bench_gpu_train: a try failed for a reason other than memory: %s\n", err);
        exit(1);
    }
    return rc == 0;
}

/* Largest batch that fits: doubling from `start` (never beyond cap), then bisecting to within
 * 1/16 of the answer. Returns 0 when not even batch 1 fits. */
static int train_find_max_batch(const train_opts *o, const dit_config *c, int start, int cap, int *capped) {
    int lo = 0, hi = 0, b = start < 1 ? 1 : start;
    *capped = 0;
    printf("max batch search (doubling from %d, cap %d):\n", b, cap);
    while (!hi) {
        if (b > cap) {
            *capped = 1;
            break;
        }
        if (train_fits(o, c, b)) lo = b, b *= 2;
        else hi = b;
    }
    if (*capped) return lo;
    int gran = lo > 0 ? lo / 16 : hi / 32;
    if (gran < 1) gran = 1;
    while (hi - lo > gran) {
        int mid = lo + (hi - lo) / 2;
        if (train_fits(o, c, mid)) lo = mid;
        else hi = mid;
    }
    return lo;
}

static void train_usage(void) {
    fprintf(stderr, "usage: bench_gpu_train [--device cuda:0|cpu] [--precision bf16|fp32] [--arch DiT-XL/2]\n"
                    "         [--image 32] [--channels 4] [--classes 1000] [--learn-sigma 1] [--batch 32]\n"
                    "         [--max-batch] [--max-batch-cap 4096] [--steps 20] [--warmup 3]\n"
                    "         [--phase-sync 1] [--vae FILE] [--json FILE]\n");
}

int main(int argc, char **argv) {
    train_opts o = {.device = "cuda:0", .precision = "bf16", .arch = "DiT-XL/2", .image = 32, .channels = 4,
                    .classes = 1000, .learn_sigma = 1, .batch = 32, .steps = 20, .warmup = 3,
                    .max_batch_cap = 4096, .phase_sync = 1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--max-batch")) { o.max_batch = 1; continue; }
        if (!v) { train_usage(); return 2; }
        i++;
        if (!strcmp(a, "--device")) o.device = v;
        else if (!strcmp(a, "--precision")) o.precision = v;
        else if (!strcmp(a, "--arch")) o.arch = v;
        else if (!strcmp(a, "--image")) o.image = atoi(v);
        else if (!strcmp(a, "--channels")) o.channels = atoi(v);
        else if (!strcmp(a, "--classes")) o.classes = atoi(v);
        else if (!strcmp(a, "--learn-sigma")) o.learn_sigma = atoi(v);
        else if (!strcmp(a, "--batch")) o.batch = atoi(v);
        else if (!strcmp(a, "--max-batch-cap")) o.max_batch_cap = atoi(v);
        else if (!strcmp(a, "--steps")) o.steps = atoi(v);
        else if (!strcmp(a, "--warmup")) o.warmup = atoi(v);
        else if (!strcmp(a, "--phase-sync")) o.phase_sync = atoi(v);
        else if (!strcmp(a, "--json")) o.json_path = v;
        else if (!strcmp(a, "--vae")) o.vae_path = v;
        else { fprintf(stderr, "unknown option %s\n", a); train_usage(); return 2; }
    }
    if (o.steps < 1 || o.warmup < 0 || o.batch < 1) { train_usage(); return 2; }
    dit_config c;
    if (bench_model_config(o.arch, o.image, o.channels, o.classes, o.learn_sigma, &c)) return 2;
    char err[512];
    bench_device_used_bytes(o.device); /* creates the CUDA context before any baseline is taken */

    int batch = o.batch, capped = 0;
    if (o.max_batch) {
        batch = train_find_max_batch(&o, &c, o.batch, o.max_batch_cap, &capped);
        if (batch < 1) {
            fprintf(stderr, "bench_gpu_train: not even batch 1 fits on %s\n", o.device);
            return 1;
        }
        printf("max batch: %d%s\n", batch, capped ? " (the cap; more may fit)" : "");
    }

    train_result r;
    int rc = train_bench(&o, &c, batch, o.steps, o.warmup, &r, err, sizeof err);
    if (rc) {
        fprintf(stderr, "bench_gpu_train: %s\n", err);
        return 1;
    }
    bench_ceiling ceil;
    bench_matmul_ceiling(o.device, o.precision, batch * c.tokens, c.hidden, &ceil);

    const double fwd = bench_dit_forward_flops(&c), step_flops = 3.0 * fwd * batch;
    const double tflops = step_flops / r.step_median * 1e-12, ips = batch / r.step_median;
    const double mfu = ceil.best_tflops > 0 ? tflops / ceil.best_tflops : 0;
    const char *eff = bench_effective_precision(o.device, o.precision);
    const size_t peak = r.device_peak > r.tracked_peak ? r.device_peak : r.tracked_peak;
    const int threads = omp_get_max_threads();

    printf("bench_gpu_train: %s on %s (%s), %s, %dx%dx%d, %d classes, batch %d, %zu params\n", o.arch,
           o.device, r.device_name, eff, o.image, o.image, o.channels, o.classes, batch, r.params);
    printf("  step %.2f ms median (mean %.2f, min %.2f) over %d steps after %d warm-up\n",
           r.step_median * 1e3, r.step_mean * 1e3, r.step_min * 1e3, o.steps, o.warmup);
    printf("  phases (mean ms%s): data %.2f%s, forward %.2f, loss+backward %.2f, AdamW+EMA %.2f\n",
           o.phase_sync ? ", synced" : ", unsynced: only the total is meaningful", r.data * 1e3,
           o.vae_path ? " (of it the VAE encoder, on the fly)" : " (cached latents)",
           r.forward * 1e3, r.backward * 1e3, r.update * 1e3);
    if (o.vae_path) printf("  VAE encoder %.2f ms per step; TFLOP/s and MFU below count the DiT only\n",
                           r.encode * 1e3);
    printf("  %.2f images/s, %.2f GFLOP/image forward, %.2f TFLOP/s achieved, last loss %.4f\n", ips,
           fwd * 1e-9, tflops, r.loss);
    printf("  matmul ceiling %.2f TFLOP/s (%dx%dx%d: %.2f, model shapes: %.2f; %s): MFU %.1f%%\n",
           ceil.best_tflops, ceil.square, ceil.square, ceil.square, ceil.square_tflops, ceil.model_tflops,
           ceil.method, 100 * mfu);
    printf("  memory: %.2f GiB through be->alloc, %.2f GiB device (cudaMemGetInfo), %.2f GiB host RSS\n",
           r.tracked_peak / 1073741824.0, r.device_peak / 1073741824.0, bench_max_rss_bytes() / 1073741824.0);
    if (o.json_path) {
        FILE *f = fopen(o.json_path, "w");
        if (!f) {
            fprintf(stderr, "cannot write %s\n", o.json_path);
            return 1;
        }
        fprintf(f, "{\"benchmark\":\"train\",\"impl\":\"difftune\",\"device\":\"%s\",\"device_name\":\"%s\","
                   "\"precision\":\"%s\",\"compile\":false,\"arch\":\"%s\",\"image\":%d,\"channels\":%d,"
                   "\"classes\":%d,\"learn_sigma\":%d,\"batch\":%d,\"max_batch_search\":%s,\"max_batch_capped\":%s,"
                   "\"params\":%zu,\"threads\":%d,\"steps\":%d,\"warmup\":%d,\"phase_sync\":%s,"
                   "\"step_ms_median\":%.4f,\"step_ms_mean\":%.4f,\"step_ms_min\":%.4f,"
                   "\"latents\":\"%s\",\"phase_ms\":{\"data\":%.4f,\"encode\":%.4f,\"forward\":%.4f,\"backward\":%.4f,\"update\":%.4f},"
                   "\"images_per_second\":%.4f,\"gflop_per_image_forward\":%.4f,\"flop_per_step\":%.6e,"
                   "\"tflops\":%.4f,\"matmul_ceiling_tflops\":%.4f,\"matmul_ceiling_square_tflops\":%.4f,"
                   "\"matmul_ceiling_model_tflops\":%.4f,\"matmul_ceiling_method\":\"%s\",\"mfu\":%.5f,"
                   "\"peak_memory_gib\":%.4f,\"allocated_memory_gib\":%.4f,\"device_memory_gib\":%.4f,"
                   "\"device_total_gib\":%.4f,\"host_rss_gib\":%.4f,\"loss\":%.6f}\n",
                o.device, r.device_name, eff, o.arch, o.image, o.channels, o.classes, o.learn_sigma, batch,
                o.max_batch ? "true" : "false", capped ? "true" : "false", r.params, threads, o.steps,
                o.warmup, o.phase_sync ? "true" : "false", r.step_median * 1e3, r.step_mean * 1e3,
                r.step_min * 1e3, o.vae_path ? "on_the_fly" : "cached", r.data * 1e3, r.encode * 1e3, r.forward * 1e3, r.backward * 1e3, r.update * 1e3, ips,
                fwd * 1e-9, step_flops, tflops, ceil.best_tflops, ceil.square_tflops, ceil.model_tflops,
                ceil.method, mfu, peak / 1073741824.0, r.tracked_peak / 1073741824.0,
                r.device_peak / 1073741824.0, r.device_total / 1073741824.0,
                bench_max_rss_bytes() / 1073741824.0, r.loss);
        fclose(f);
    }
    return 0;
}
