/* cmd_fid.c — `difftune fid`: the Fréchet distance of a checkpoint's samples to a dataset, as a
 * training job's evaluation measures it (engine/eval.h; a latent DiT's samples decoded by --vae),
 * and random FID Inception weights for tests and benchmarks. */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "checkpoint.h"
#include "cli.h"
#include "clock.h"
#include "dataset.h"
#include "diffusion.h"
#include "eval.h"
#include "extractor.h"
#include "inception.h"
#include "latents.h"
#include "safetensors.h"
#include "vae.h"

#define FID_VAE_BATCH 4 /* latents per VAE decode, as a training job's evaluation */

static volatile int fid_stop_flag;

static void fid_on_signal(int sig) {
    (void)sig;
    fid_stop_flag = 1;
}

static void fid_usage(FILE *f) {
    fprintf(f,
        "usage: difftune fid --checkpoint FILE --dataset DIR [options]\n"
        "       difftune fid --random-weights FILE [--seed N]\n\n"
        "Samples --samples images from a checkpoint's EMA weights (labels cycling over the\n"
        "dataset's classes, a fixed noise seed) and prints their Fréchet distance to the dataset\n"
        "as one JSON line, exactly as a training job's evaluation (eval.fid_every) measures it:\n"
        "{\"name\", \"value\", \"samples\", \"sampler\", \"steps\", \"cfg\", \"extractor\",\n"
        "\"reference\": {\"dataset_sha256\", \"images\"}, \"seconds\": {...}} (plus\n"
        "\"classifier_accuracy\" with a classifier). The dataset's reference statistics are cached.\n"
        "A latent DiT (4 input channels, e.g. DiT-XL/2-256) needs --vae: its samples are decoded\n"
        "by the VAE before the extractor sees them, and the dataset is measured at the decoded\n"
        "size (the model's input size x 8 for the SD VAE), as a job with \"vae\" does.\n"
        "--random-weights writes a complete FID Inception weights file of random values, for\n"
        "tests and benchmarks: the pipeline runs, the values mean nothing.\n\n"
        "options:\n"
        "  --inception-weights FILE  FID Inception weights (pytorch-fid's state dict as\n"
        "                     safetensors; README: Evaluation) (default $DIFFTUNE_INCEPTION_WEIGHTS)\n"
        "  --vae FILE         the SD VAE (diffusers' diffusion_pytorch_model.safetensors) of a\n"
        "                     latent DiT; its latent channels must be the checkpoint's inputs\n"
        "  --extractor X      inception (default: FID) | classifier:FILE (fd_classifier, with a\n"
        "                     classifier from `difftune classifier train`)\n"
        "  --samples N        images to generate, >= 2 (default 5000)\n"
        "  --sampler KIND     ddim | ddpm (default ddim)\n"
        "  --steps S          sampler steps, 1..1000 (default 50)\n"
        "  --cfg S            guidance scale, >= 1 (default 1.5)\n"
        "  --batch B          images per sampling and feature batch (default 32; a job uses its\n"
        "                     batch_size, and the same B reproduces its values exactly)\n"
        "  --eval-cache DIR   reference-statistics cache (default $DIFFTUNE_EVAL_CACHE, else\n"
        "                     $HOME/.cache/difftune/eval)\n"
        "  --device DEV       cpu | auto | cuda:N (default auto)\n"
        "  --seed N           with --random-weights: the values' seed (default 0)\n\n"
        "exit status: 0 done, 1 failed, 2 bad usage or input (e.g. no Inception weights),\n"
        "             3 stopped by SIGINT/SIGTERM\n");
}

static void fid_progress(void *ctx, const char *stage, long done, long total) {
    double *last = ctx, now = dt_now();
    if (done != total && now - *last < 1.0) return;
    *last = now;
    fprintf(stderr, "difftune fid: %s %ld/%ld\n", stage, done, total);
}

typedef struct {
    const char *ckpt, *dataset, *weights, *extractor, *cache, *device, *vae;
    long samples, steps, batch;
    int ddim;
    double cfg;
} fid_args;

/* The evaluation; returns the exit status. */
static int fid_run(const fid_args *a) {
    char err[1024];
    st_file f = {0};
    dit_config c;
    if (safetensors_open(&f, a->ckpt, err, sizeof err) ||
        checkpoint_read_config(&f, 0, 0, &c, err, sizeof err)) {
        fprintf(stderr, "difftune fid: %s\n", err);
        safetensors_close(&f);
        return 2;
    }
    /* a latent DiT's samples are measured as images decoded by its VAE, at px pixels */
    int px = 0;
    if (cli_latent_pixels("difftune fid", a->vae, c.in_channels, c.image_size, &px)) {
        safetensors_close(&f);
        return 2;
    }
    dt_dataset ds = {0};
    dt_extractor *x = NULL;
    int classifier = !strncmp(a->extractor, "classifier:", 11);
    int opened = classifier ? extractor_open(&x, "classifier", a->extractor + 11, a->extractor, err,
                                             sizeof err)
                            : extractor_open(&x, "inception", a->weights, "inception", err, sizeof err);
    if (opened || dataset_load(&ds, a->dataset, px ? px : c.image_size, px ? 3 : c.in_channels,
                               err, sizeof err)) {
        fprintf(stderr, "difftune fid: %s%s\n", err,
                !classifier && !a->weights ? " (--inception-weights FILE; README: Evaluation)" : "");
        extractor_free(x);
        safetensors_close(&f);
        return 2;
    }
    dt_backend *be = dt_backend_create(a->device, err, sizeof err);
    if (!be) {
        fprintf(stderr, "difftune fid: device %s: %s\n", a->device, err);
        extractor_free(x);
        dataset_free(&ds);
        safetensors_close(&f);
        return 2;
    }
    /* The Inception follows the sampler onto its GPU where the build has cuDNN; otherwise the
     * CPU computes the features (the same to rounding), only slower. */
    if (extractor_use_device(x, be->name, err, sizeof err))
        fprintf(stderr, "difftune fid: warning: features run on the CPU: %s\n", err);
    int rc = 1;
    dit_model m = {0};
    dt_schedule sched = {0};
    dt_evaluator e = {0};
    dt_eval_reference ref = {0};
    vae_model *vae = NULL;
    dt_latent_decoder dec = {0};
    float *host = NULL, *params = NULL;
    double last = 0;
    if (dit_model_init(&m, &c, be, err, sizeof err)) goto done;
    host = malloc(m.num_floats * sizeof(float));
    params = be->alloc(be, m.num_floats * sizeof(float));
    if (!host || !params || diffusion_schedule_init(&sched, DT_DIFFUSION_T)) {
        snprintf(err, sizeof err, "out of memory");
        goto done;
    }
    if (checkpoint_read_weights(&f, &m, "", host, err, sizeof err)) { rc = 2; goto done; }
    if (px && vae_load(&vae, a->vae, be, err, sizeof err)) { rc = 2; goto done; }
    if (px && latent_decoder_init(&dec, vae, be, FID_VAE_BATCH, c.in_channels, c.image_size, err,
                                  sizeof err))
        goto done;
    be->upload(be, params, host, m.num_floats * sizeof(float));
    if (ds.num_classes > c.num_classes) {
        snprintf(err, sizeof err, "the dataset has %d classes, the model %d", ds.num_classes,
                 c.num_classes);
        rc = 2;
        goto done;
    }
    dt_eval_opts o = {.samples = (int)a->samples, .steps = (int)a->steps, .ddim = a->ddim,
                      .cfg = (float)a->cfg, .num_classes = ds.num_classes,
                      .chunk = (int)(a->batch < a->samples ? a->batch : a->samples), .seed = EVAL_SEED,
                      .decoder = px ? &dec : NULL};
    if (eval_init(&e, &m, &sched, x, &o, err, sizeof err)) { rc = 2; goto done; }
    e.progress = fid_progress;
    e.progress_ctx = &last;
    e.stop = &fid_stop_flag;
    int r = eval_reference(&e, &ds, a->cache, &ref, err, sizeof err);
    dt_eval_result res;
    if (r == 0) r = eval_run(&e, params, &ref, &res, err, sizeof err);
    if (r == 1) { snprintf(err, sizeof err, "stopped"); rc = 3; goto done; }
    if (r) goto done;
    json_t *out = json_pack("{s:s, s:f, s:i, s:s, s:i, s:f, s:s, s:{s:s, s:I, s:b},"
                            " s:{s:f, s:f, s:f, s:f, s:f}}",
                            "name", res.metric, "value", res.value, "samples", res.samples,
                            "sampler", res.sampler, "steps", res.steps, "cfg", res.cfg,
                            "extractor", res.extractor, "reference", "dataset_sha256",
                            res.reference_sha256, "images", (json_int_t)res.reference_images,
                            "cached", ref.reused, "seconds", "reference", ref.seconds,
                            "sampling", res.seconds_sampling, "features", res.seconds_features,
                            "distance", res.seconds_distance, "total", res.seconds_total);
    if (!isnan(res.accuracy)) json_object_set_new(out, "classifier_accuracy", json_real(res.accuracy));
    char *text = json_dumps(out, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17));
    printf("%s\n", text ? text : "{}");
    free(text);
    json_decref(out);
    rc = 0;
done:
    if (rc) fprintf(stderr, "difftune fid: %s\n", err);
    eval_reference_free(&ref);
    if (e.m) eval_free(&e);
    diffusion_schedule_free(&sched);
    latent_decoder_free(&dec);
    vae_free(vae);
    if (params) be->free(be, params);
    if (m.params) dit_model_free(&m);
    be->destroy(be);
    free(host);
    extractor_free(x);
    dataset_free(&ds);
    safetensors_close(&f);
    return rc;
}

int cmd_fid(int argc, char **argv) {
    const char *env_w = getenv("DIFFTUNE_INCEPTION_WEIGHTS"), *env_c = getenv("DIFFTUNE_EVAL_CACHE");
    fid_args a = {.weights = env_w && env_w[0] ? env_w : NULL, .extractor = "inception",
                  .cache = env_c && env_c[0] ? env_c : NULL, .device = "auto", .samples = 5000,
                  .steps = 50, .batch = 32, .ddim = 1, .cfg = 1.5};
    const char *random_out = NULL;
    uint64_t seed = 0;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(o, "--help") || !strcmp(o, "-h")) { fid_usage(stdout); return 0; }
        if (!v) { fprintf(stderr, "difftune fid: %s needs a value (see --help)\n", o); return 2; }
        i++;
        int bad = 0;
        if (!strcmp(o, "--checkpoint")) a.ckpt = v;
        else if (!strcmp(o, "--dataset")) a.dataset = v;
        else if (!strcmp(o, "--vae")) a.vae = v;
        else if (!strcmp(o, "--inception-weights")) a.weights = v;
        else if (!strcmp(o, "--extractor")) {
            a.extractor = v;
            bad = strcmp(v, "inception") && (strncmp(v, "classifier:", 11) || !v[11]);
        } else if (!strcmp(o, "--eval-cache")) a.cache = v;
        else if (!strcmp(o, "--device")) a.device = v;
        else if (!strcmp(o, "--random-weights")) random_out = v;
        else if (!strcmp(o, "--samples")) bad = cli_parse_int(v, 2, 10000000, &a.samples);
        else if (!strcmp(o, "--steps")) bad = cli_parse_int(v, 1, DT_DIFFUSION_T, &a.steps);
        else if (!strcmp(o, "--batch")) bad = cli_parse_int(v, 1, 4096, &a.batch);
        else if (!strcmp(o, "--cfg")) bad = cli_parse_double(v, &a.cfg) || !(a.cfg >= 1.0 && a.cfg <= 100.0);
        else if (!strcmp(o, "--seed")) bad = cli_parse_u64(v, &seed);
        else if (!strcmp(o, "--sampler")) {
            bad = strcmp(v, "ddim") && strcmp(v, "ddpm");
            a.ddim = !strcmp(v, "ddim");
        } else { fprintf(stderr, "difftune fid: unknown option %s (see --help)\n", o); return 2; }
        if (bad) { fprintf(stderr, "difftune fid: bad value for %s: '%s' (see --help)\n", o, v); return 2; }
    }
    char err[1024];
    if (random_out) {
        if (inception_write_random_weights(random_out, seed, err, sizeof err)) {
            fprintf(stderr, "difftune fid: %s\n", err);
            return 1;
        }
        printf("{\"path\":\"%s\",\"seed\":%llu}\n", random_out, (unsigned long long)seed);
        return 0;
    }
    if (!a.ckpt || !a.dataset) {
        fprintf(stderr, "difftune fid: --checkpoint and --dataset are required (see --help)\n");
        return 2;
    }
    char home_cache[4096];
    if (!a.cache) {
        const char *home = getenv("HOME");
        snprintf(home_cache, sizeof home_cache, "%s/.cache/difftune/eval", home ? home : ".");
        a.cache = home_cache;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = fid_on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    return fid_run(&a);
}
