/* bench_peft.c — step time and memory of parameter-efficient fine-tuning (DiffFit, BitFit, LoRA)
 * against full fine-tuning, on any backend (the CPU, or CUDA when the build has it).
 *
 * Runs training steps on random data, exactly what engine/train.c runs per step: upload
 * x0/t/y/weights, randn eps, q_sample, forward, diffusion loss (mse + vb with learned sigma),
 * backward, AdamW, EMA, download of the per-sample losses and a sync. With --peft none the
 * parameters, gradients, moments and EMA are the full block; with a peft they are the adapter's
 * compact trainable block (engine/peft.h) over one frozen base block, as train.c allocates a
 * PEFT job. Reports the trainable parameters, the step time (median, min, max over --steps after
 * --warmup, with phases), images/s, the bytes held through be->alloc by category (frozen base,
 * trainable params, grads, Adam moments, EMA, activations from dit_acts_bytes, batch buffers, the
 * rest), the high-water mark of those bytes, the growth of the CUDA device's used memory, and
 * the process's peak RSS (getrusage). Run one method per process so the peak RSS is its own
 * (bench/peft_bench.sh does).
 *
 * Weights are random and non-zero (bench_init_params; gammas 1 + N(0, 1e-3), LoRA A uniform in
 * +-1/sqrt(in), LoRA B N(0, 1e-3)): speed does not depend on the values.
 *
 * usage: bench_peft [--device cpu|cuda:N] [--precision bf16|fp32] [--arch DiT-S/2] [--image 32]
 *                   [--channels 3] [--classes 10] [--learn-sigma 1] [--batch 16] [--steps 5]
 *                   [--warmup 1] [--peft none|difffit|bitfit|lora] [--rank 8] [--alpha 0]
 *                   [--difffit-blocks 0] [--json FILE]
 */
#include "bench_gpu_common.h"
#include "diffusion.h"
#include "peft.h"
#include "rng.h"

typedef struct {
    const char *device, *precision, *arch, *peft, *json_path;
    int image, channels, classes, learn_sigma, batch, steps, warmup;
    int rank, difffit_blocks;
    double alpha;
} peft_opts;

/* Bytes requested from the backend, by what they hold. */
typedef struct {
    size_t base, params, grads, moments, ema, acts, batch;
} peft_bytes;

/* The backend state of one run; peft_close frees everything. */
typedef struct {
    dt_backend *be;
    dit_model m;
    dit_adapter ad;
    int adapted;          /* ad is initialised and m.ad points at it */
    dit_acts a;
    dt_schedule sched;
    dt_diffusion_tables tab;
    size_t P_t;           /* floats of the trainable block */
    float *base;          /* (num_floats) the frozen base; NULL with --peft none */
    float *params, *grads, *ema, *mom, *vel; /* (P_t) each */
    float *x0, *eps, *xt, *out, *dout, *loss, *w;
    int32_t *t, *y;
    peft_bytes bytes;
} peft_state;

static void peft_close(peft_state *s) {
    if (s->be) {
        dt_backend *be = s->be;
        void *bufs[] = {s->base, s->params, s->grads, s->ema, s->mom, s->vel, s->x0, s->eps,
                        s->xt, s->out, s->dout, s->loss, s->w, s->t, s->y};
        for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
            if (bufs[i]) be->free(be, bufs[i]);
        if (s->a.block) dit_acts_free(&s->a, &s->m);
        diffusion_tables_free(&s->tab, be);
        s->m.ad = NULL;
        if (s->m.params) dit_model_free(&s->m);
        be->destroy(be);
    }
    if (s->adapted) peft_adapter_free(&s->ad);
    diffusion_schedule_free(&s->sched);
    memset(s, 0, sizeof *s);
}

/* The starting trainable block of an adapted model, written on the backend: replaced tensors
 * copied from the (random) base, gammas 1 + N(0, 1e-3), LoRA A uniform in +-1/sqrt(in), LoRA B
 * N(0, 1e-3) (non-zero, so the LoRA branch's products are real work). Only the compact block
 * passes through host memory. Returns 0 or -1 (out of host memory). */
static int peft_init_train(peft_state *s) {
    dt_backend *be = s->be;
    float *host = malloc(s->P_t * sizeof(float));
    if (!host) return -1;
    for (int i = 0; i < s->ad.n; i++) {
        const peft_tensor *t = &s->ad.t[i];
        float *p = host + t->p.offset;
        const float bound = t->p.ndim == 2 ? 1.0f / sqrtf((float)t->p.shape[1]) : 0.0f;
        for (size_t j = 0; j < t->p.numel; j++) {
            switch (t->role) {
            case PEFT_ROLE_BASE: p[j] = 0.0f; break; /* copied below */
            case PEFT_ROLE_LORA_A: p[j] = bound * (2.0f * dt_rng_uniform(7, (uint64_t)i, j) - 1.0f); break;
            case PEFT_ROLE_LORA_B: p[j] = 1e-3f * dt_philox_normal(7, (uint64_t)i, j); break;
            default: p[j] = 1.0f + 1e-3f * dt_philox_normal(7, (uint64_t)i, j); break; /* gammas */
            }
        }
    }
    be->upload(be, s->params, host, s->P_t * sizeof(float));
    free(host);
    for (int i = 0; i < s->ad.n; i++) {
        const peft_tensor *t = &s->ad.t[i];
        if (t->role == PEFT_ROLE_BASE)
            be->copy(be, s->params + t->p.offset, s->base + s->m.params[t->base_index].offset,
                     t->p.numel * sizeof(float));
    }
    return 0;
}

/* Opens the backend and allocates everything a training step of `batch` needs, as train.c
 * does: the five trainable-shaped blocks, the frozen base (a peft), batch buffers, training
 * activations and the diffusion tables. Returns 0, or -1 with a message in err. */
static int peft_open(peft_state *s, const peft_opts *o, const dit_config *c, int kind, char *err,
                     size_t errlen) {
    memset(s, 0, sizeof *s);
    if (!(s->be = bench_backend_open(o->device, o->precision, err, errlen))) return -1;
    dt_backend *be = s->be;
    bench_mem_track(be);
    if (dit_model_init(&s->m, c, be, err, errlen)) return -1;
    s->P_t = s->m.num_floats;
    if (kind != DT_PEFT_NONE) {
        dt_peft_config pc = {.kind = (dt_peft_kind)kind, .rank = o->rank, .alpha = o->alpha,
                             .targets = DT_LORA_ALL, .difffit_blocks = o->difffit_blocks};
        if (peft_adapter_init(&s->ad, c, &pc, err, errlen)) return -1;
        s->adapted = 1;
        s->P_t = s->ad.num_floats;
    }
    const size_t P = s->P_t, B = (size_t)o->batch, f = sizeof(float);
    const size_t img = (size_t)c->in_channels * c->image_size * c->image_size;
    const size_t oimg = (size_t)c->out_channels * c->image_size * c->image_size;
    float **blocks[] = {&s->params, &s->grads, &s->ema, &s->mom, &s->vel};
    for (int i = 0; i < 5; i++)
        if (!(*blocks[i] = be->alloc(be, P * f))) goto oom;
    s->bytes.params = s->bytes.grads = s->bytes.ema = P * f;
    s->bytes.moments = 2 * P * f;
    if (s->adapted) {
        if (!(s->base = be->alloc(be, s->m.num_floats * f))) goto oom;
        s->bytes.base = s->m.num_floats * f;
        s->ad.base = s->base;
        s->m.ad = &s->ad; /* before dit_acts_alloc: the adapter's buffers come with it */
    }
    if (!(s->x0 = be->alloc(be, B * img * f)) || !(s->eps = be->alloc(be, B * img * f)) ||
        !(s->xt = be->alloc(be, B * img * f)) || !(s->out = be->alloc(be, B * oimg * f)) ||
        !(s->dout = be->alloc(be, B * oimg * f)) || !(s->loss = be->alloc(be, B * f)) ||
        !(s->w = be->alloc(be, B * f)) || !(s->t = be->alloc(be, B * sizeof(int32_t))) ||
        !(s->y = be->alloc(be, B * sizeof(int32_t))))
        goto oom;
    s->bytes.batch = B * (3 * img + 2 * oimg + 2) * f + 2 * B * sizeof(int32_t);
    s->bytes.acts = dit_acts_bytes(&s->m, o->batch, 1);
    if (dit_acts_alloc(&s->a, &s->m, o->batch, 1, err, errlen)) return -1;
    if (diffusion_schedule_init(&s->sched, DT_DIFFUSION_T) || diffusion_tables_upload(&s->tab, &s->sched, be)) {
        snprintf(err, errlen, "out of memory for the diffusion tables");
        return -1;
    }
    if (s->adapted) {
        bench_init_params(&s->m, s->base, 1);
        if (peft_init_train(s)) {
            snprintf(err, errlen, "out of host memory for the trainable block");
            return -1;
        }
    } else {
        bench_init_params(&s->m, s->params, 1);
    }
    be->copy(be, s->ema, s->params, P * f);
    if (be->sync(be)) {
        snprintf(err, errlen, "setup failed on %s: %s", be->name, be->last_error(be));
        return -1;
    }
    return 0;
oom:
    snprintf(err, errlen, "out of memory: %.2f GiB held when the next buffer was refused on %s",
             bench_mem.cur / 1073741824.0, be->name);
    return -1;
}

typedef struct {
    double median, mean, min, max;      /* step seconds */
    double data, forward, backward, update; /* phase means, seconds */
    double loss;                        /* mean per-sample loss of the last step */
    size_t device_peak;                 /* growth of the CUDA device's used memory, bytes */
} peft_result;

/* Runs warmup + steps steps on s, timing each (a sync ends every phase). Returns 0, or -1 with
 * the backend's failure in err. */
static int peft_run(peft_state *s, const peft_opts *o, int kind, size_t base_used, peft_result *r,
                    char *err, size_t errlen) {
    dt_backend *be = s->be;
    const dit_config *c = &s->m.cfg;
    const size_t P = s->P_t, B = (size_t)o->batch, f = sizeof(float);
    const int HW = c->image_size * c->image_size, batch = o->batch;
    const size_t img = (size_t)c->in_channels * HW, oimg = (size_t)c->out_channels * HW;
    /* the learning rates a job gets by default: 1e-4 full, DT_PEFT_DIFFFIT_DEFAULT_LR with a peft */
    const float lr = kind == DT_PEFT_NONE ? 1e-4f : (float)DT_PEFT_DIFFFIT_DEFAULT_LR;
    memset(r, 0, sizeof *r);
    float *hx = malloc(B * img * f), *hw = malloc(B * f), *hloss = malloc(B * f);
    int32_t *ht = malloc(B * sizeof(int32_t)), *hy = malloc(B * sizeof(int32_t));
    double *times = calloc((size_t)o->steps + 1, sizeof(double));
    int rc = -1;
    if (!hx || !hw || !hloss || !ht || !hy || !times) {
        snprintf(err, errlen, "out of host memory");
        goto done;
    }
    for (size_t i = 0; i < B * img; i++) hx[i] = dt_philox_normal(2, 2, i);
    for (size_t i = 0; i < B; i++) hw[i] = 1.0f / (float)B;
    for (int step = 1; step <= o->warmup + o->steps; step++) {
        for (size_t i = 0; i < B; i++) {
            ht[i] = (int32_t)dt_rng_below(3, DT_STREAM_TIMESTEP, (uint64_t)step * B + i, DT_DIFFUSION_T);
            hy[i] = (int32_t)dt_rng_below(3, DT_STREAM_LABELS, (uint64_t)step * B + i, (uint32_t)c->num_classes + 1);
        }
        double t0 = bench_now();
        be->zero(be, s->grads, P * f);
        be->upload(be, s->x0, hx, B * img * f);
        be->upload(be, s->t, ht, B * sizeof(int32_t));
        be->upload(be, s->y, hy, B * sizeof(int32_t));
        be->upload(be, s->w, hw, B * f);
        be->randn(be, s->eps, B * img, 3, DT_STREAM_NOISE + (uint64_t)step * 4096);
        be->q_sample(be, s->xt, s->x0, s->eps, s->t, &s->tab, batch, (int)img);
        be->sync(be);
        double t1 = bench_now();
        dit_forward(&s->m, s->params, &s->a, s->xt, s->t, s->y, batch, s->out);
        be->sync(be);
        double t2 = bench_now();
        be->zero(be, s->dout, B * oimg * f);
        be->diffusion_loss(be, s->loss, s->dout, s->out, s->x0, s->xt, s->eps, s->t, s->w, &s->tab,
                           batch, c->in_channels, HW, c->learn_sigma);
        dit_backward(&s->m, s->params, s->grads, &s->a, s->dout, s->y, batch);
        be->sync(be);
        double t3 = bench_now();
        be->adamw_update(be, s->params, s->grads, s->mom, s->vel, P, lr, 0.9f, 0.999f, 1e-8f, 0.0f, step);
        be->ema_update(be, s->ema, s->params, P, 0.9999f);
        be->download(be, hloss, s->loss, B * f);
        int sync_rc = be->sync(be);
        double t4 = bench_now();
        if (sync_rc) {
            snprintf(err, errlen, "step %d failed on %s: %s", step, be->name, be->last_error(be));
            goto done;
        }
        size_t used = bench_device_used_bytes(o->device);
        if (used > base_used && used - base_used > r->device_peak) r->device_peak = used - base_used;
        if (step > o->warmup) {
            times[step - o->warmup - 1] = t4 - t0;
            r->data += t1 - t0;
            r->forward += t2 - t1;
            r->backward += t3 - t2;
            r->update += t4 - t3;
        }
    }
    double sum = 0, loss = 0;
    r->min = r->max = times[0];
    for (int i = 0; i < o->steps; i++) {
        sum += times[i];
        if (times[i] < r->min) r->min = times[i];
        if (times[i] > r->max) r->max = times[i];
    }
    for (size_t i = 0; i < B; i++) loss += hloss[i];
    r->loss = loss / (double)B;
    r->mean = sum / o->steps;
    r->data /= o->steps;
    r->forward /= o->steps;
    r->backward /= o->steps;
    r->update /= o->steps;
    r->median = bench_median(times, o->steps);
    rc = 0;
done:
    free(hx); free(hw); free(hloss); free(ht); free(hy); free(times);
    return rc;
}

static void peft_usage(void) {
    fprintf(stderr, "usage: bench_peft [--device cpu|cuda:N] [--precision bf16|fp32] [--arch DiT-S/2]\n"
                    "         [--image 32] [--channels 3] [--classes 10] [--learn-sigma 1] [--batch 16]\n"
                    "         [--steps 5] [--warmup 1] [--peft none|difffit|bitfit|lora] [--rank 8]\n"
                    "         [--alpha 0 (= rank)] [--difffit-blocks 0 (= half the depth)] [--json FILE]\n");
}

static double gib(size_t bytes) { return bytes / 1073741824.0; }

int main(int argc, char **argv) {
    peft_opts o = {.device = "cpu", .precision = "bf16", .arch = "DiT-S/2", .peft = "none",
                   .image = 32, .channels = 3, .classes = 10, .learn_sigma = 1, .batch = 16,
                   .steps = 5, .warmup = 1, .rank = 8};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) { peft_usage(); return 2; }
        i++;
        if (!strcmp(a, "--device")) o.device = v;
        else if (!strcmp(a, "--precision")) o.precision = v;
        else if (!strcmp(a, "--arch")) o.arch = v;
        else if (!strcmp(a, "--image")) o.image = atoi(v);
        else if (!strcmp(a, "--channels")) o.channels = atoi(v);
        else if (!strcmp(a, "--classes")) o.classes = atoi(v);
        else if (!strcmp(a, "--learn-sigma")) o.learn_sigma = atoi(v);
        else if (!strcmp(a, "--batch")) o.batch = atoi(v);
        else if (!strcmp(a, "--steps")) o.steps = atoi(v);
        else if (!strcmp(a, "--warmup")) o.warmup = atoi(v);
        else if (!strcmp(a, "--peft")) o.peft = v;
        else if (!strcmp(a, "--rank")) o.rank = atoi(v);
        else if (!strcmp(a, "--alpha")) o.alpha = atof(v);
        else if (!strcmp(a, "--difffit-blocks")) o.difffit_blocks = atoi(v);
        else if (!strcmp(a, "--json")) o.json_path = v;
        else { fprintf(stderr, "unknown option %s\n", a); peft_usage(); return 2; }
    }
    const int kind = spec_peft_kind(o.peft);
    if (kind < 0) { fprintf(stderr, "unknown --peft %s\n", o.peft); peft_usage(); return 2; }
    if (o.steps < 1 || o.warmup < 0 || o.batch < 1) { peft_usage(); return 2; }
    dit_config c;
    if (bench_model_config(o.arch, o.image, o.channels, o.classes, o.learn_sigma, &c)) return 2;
    char err[512], device_name[256];
    bench_device_name(o.device, device_name, sizeof device_name);
    bench_device_used_bytes(o.device); /* creates the CUDA context before the baseline */
    const size_t base_used = bench_device_used_bytes(o.device);

    peft_state s;
    peft_result r;
    if (peft_open(&s, &o, &c, kind, err, sizeof err) ||
        peft_run(&s, &o, kind, base_used, &r, err, sizeof err)) {
        fprintf(stderr, "bench_peft: %s\n", err);
        peft_close(&s);
        return 1;
    }
    const peft_bytes *b = &s.bytes;
    const size_t total = s.m.num_floats, trainable = s.P_t, tracked = bench_mem.peak;
    const size_t named = b->base + b->params + b->grads + b->moments + b->ema + b->acts + b->batch;
    const size_t other = tracked > named ? tracked - named : 0;
    const size_t rss = bench_max_rss_bytes();
    const double ips = o.batch / r.median;
    const int tensors = s.adapted ? s.ad.n : s.m.n_params;
    char method[64];
    if (kind == DT_PEFT_LORA)
        snprintf(method, sizeof method, "lora r%d alpha %g", s.ad.cfg.rank, s.ad.cfg.alpha);
    else if (kind == DT_PEFT_DIFFFIT)
        snprintf(method, sizeof method, "difffit %d blocks", s.ad.cfg.difffit_blocks);
    else snprintf(method, sizeof method, "%s", kind == DT_PEFT_NONE ? "full" : o.peft);
    const char *eff = bench_effective_precision(o.device, o.precision);

    printf("bench_peft: %s, %s on %s (%s, %s), %dx%dx%d, %d classes, batch %d, %d threads\n", method,
           o.arch, o.device, device_name, eff, o.image, o.image, o.channels, o.classes, o.batch,
           omp_get_max_threads());
    printf("  trainable %zu of %zu parameters (%.3f%%) in %d tensors\n", trainable, total,
           100.0 * trainable / total, tensors);
    printf("  step %.1f ms median (min %.1f, max %.1f, mean %.1f) over %d steps after %d warm-up: "
           "%.2f images/s\n", r.median * 1e3, r.min * 1e3, r.max * 1e3, r.mean * 1e3, o.steps,
           o.warmup, ips);
    printf("  phases (mean ms): data %.1f, forward %.1f, loss+backward %.1f, AdamW+EMA %.1f; last loss %.4f\n",
           r.data * 1e3, r.forward * 1e3, r.backward * 1e3, r.update * 1e3, r.loss);
    printf("  be->alloc (GiB): frozen base %.3f, params %.3f, grads %.3f, Adam moments %.3f, EMA %.3f, "
           "activations %.3f, batch %.3f, other %.3f; peak %.3f\n", gib(b->base), gib(b->params),
           gib(b->grads), gib(b->moments), gib(b->ema), gib(b->acts), gib(b->batch), gib(other),
           gib(tracked));
    printf("  peak RSS %.3f GiB%s", gib(rss), bench_cuda_index(o.device) >= 0 ? "" : "\n");
    if (bench_cuda_index(o.device) >= 0) printf(", device memory growth %.3f GiB\n", gib(r.device_peak));
    if (o.json_path) {
        FILE *f = fopen(o.json_path, "w");
        if (!f) {
            fprintf(stderr, "cannot write %s\n", o.json_path);
            peft_close(&s);
            return 1;
        }
        fprintf(f, "{\"benchmark\":\"peft\",\"impl\":\"difftune\",\"peft\":\"%s\",\"method\":\"%s\",\"rank\":%d,\"alpha\":%g,"
                   "\"difffit_blocks\":%d,\"device\":\"%s\",\"device_name\":\"%s\",\"precision\":\"%s\","
                   "\"arch\":\"%s\",\"image\":%d,\"channels\":%d,\"classes\":%d,\"learn_sigma\":%d,"
                   "\"batch\":%d,\"threads\":%d,\"steps\":%d,\"warmup\":%d,"
                   "\"params_total\":%zu,\"params_trainable\":%zu,\"trainable_fraction\":%.6f,"
                   "\"trainable_tensors\":%d,\"step_ms_median\":%.3f,\"step_ms_min\":%.3f,"
                   "\"step_ms_max\":%.3f,\"step_ms_mean\":%.3f,\"phase_ms\":{\"data\":%.3f,"
                   "\"forward\":%.3f,\"backward\":%.3f,\"update\":%.3f},\"images_per_second\":%.4f,"
                   "\"loss\":%.6f,\"memory_bytes\":{\"frozen_base\":%zu,\"trainable_params\":%zu,"
                   "\"grads\":%zu,\"adam_moments\":%zu,\"ema\":%zu,\"activations\":%zu,"
                   "\"batch_buffers\":%zu,\"other\":%zu},\"allocated_peak_bytes\":%zu,"
                   "\"device_memory_growth_bytes\":%zu,\"peak_memory_gib\":%.4f,\"peak_rss_bytes\":%zu}\n",
                o.peft, method, kind == DT_PEFT_LORA ? s.ad.cfg.rank : 0,
                kind == DT_PEFT_LORA ? s.ad.cfg.alpha : 0.0,
                kind == DT_PEFT_DIFFFIT ? s.ad.cfg.difffit_blocks : 0, o.device, device_name, eff,
                o.arch, o.image, o.channels, o.classes, o.learn_sigma, o.batch, omp_get_max_threads(),
                o.steps, o.warmup, total, trainable, (double)trainable / total, tensors,
                r.median * 1e3, r.min * 1e3, r.max * 1e3, r.mean * 1e3, r.data * 1e3, r.forward * 1e3,
                r.backward * 1e3, r.update * 1e3, ips, r.loss, b->base, b->params, b->grads,
                b->moments, b->ema, b->acts, b->batch, other, tracked, r.device_peak,
                gib(r.device_peak > tracked ? r.device_peak : tracked), rss);
        fclose(f);
    }
    peft_close(&s);
    return 0;
}
