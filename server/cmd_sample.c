/* cmd_sample.c — `difftune sample --checkpoint F --n N --out grid.png [--vae VAE]`. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "cli.h"
#include "diffusion.h"
#include "image.h"
#include "latents.h"
#include "safetensors.h"
#include "sampler.h"
#include "vae.h"

#define SAMPLE_MAX_CLASSES 4096 /* entries of --classes */
#define SAMPLE_VAE_BATCH 4      /* latents per VAE decode */

static void sample_usage(FILE *f) {
    fprintf(f,
        "usage: difftune sample --checkpoint FILE --n N --out GRID.png [options]\n\n"
        "Samples N images from a DiT checkpoint (safetensors; the EMA weights under the DiT names)\n"
        "and writes them as one PNG grid. A latent DiT (4 input channels, e.g. DiT-XL/2-256)\n"
        "needs --vae: its samples are latents, decoded to images (8x their size) by the VAE.\n\n"
        "options:\n"
        "  --vae FILE         the SD VAE (diffusers' diffusion_pytorch_model.safetensors) of a\n"
        "                     latent DiT; latents are sampled without clipping x0\n"
        "  --class K          class label for every image (default: 0, 1, 2, ... cycling);\n"
        "                     K = num_classes samples the unconditional (null) class\n"
        "  --classes K1,K2,.. class labels cycled over the N images (e.g. ImageNet classes\n"
        "                     207,360,387,974,88,979,417,279)\n"
        "  --cfg S            classifier-free guidance scale (default 1.5; 1 = none)\n"
        "  --sampler KIND     ddpm | ddim (default ddpm)\n"
        "  --steps S          sampling steps, 1..1000 (default 250 for ddpm, 50 for ddim)\n"
        "  --seed X           noise seed (default 0)\n"
        "  --weights W        ema | train: which weights of a training checkpoint (default ema)\n"
        "  --heads H          attention heads, for a converted checkpoint without metadata whose\n"
        "                     hidden size matches no preset\n"
        "  --input-size S     the DiT's input size (latent side, 32 for 256 px), for a file that\n"
        "                     does not say it: diffusers' transformer layout has no pos_embed\n"
        "  --device DEV       cpu | auto | cuda:N (default auto)\n"
        "  --precision P      auto | bf16 | fp32 (default auto: bf16 on a GPU, fp32 on the CPU)\n"
        "  --batch B          images per sampling batch (default 16)\n"
        "  --no-clip          do not clamp each step's predicted x0 to [-1, 1] (clamping is the\n"
        "                     default for pixel-space models; latents are never clamped)\n");
}

/* Parses "K1,K2,..." (integers 0..1000000) into list; returns the count, or -1 when malformed. */
static int sample_parse_classes(const char *v, int32_t *list, int max) {
    int n = 0;
    for (const char *p = v;;) {
        char item[32];
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        long k;
        if (len == 0 || len >= sizeof item || n == max) return -1;
        memcpy(item, p, len);
        item[len] = '\0';
        if (cli_parse_int(item, 0, 1000000, &k)) return -1;
        list[n++] = (int32_t)k;
        if (!comma) return n;
        p = comma + 1;
    }
}

int cmd_sample(int argc, char **argv) {
    const char *ckpt = NULL, *out = NULL, *device = "auto", *weights = "ema", *sampler = "ddpm",
               *precision = "auto", *vae_path = NULL;
    static int32_t classes[SAMPLE_MAX_CLASSES];
    int n_classes = 0;
    long n = 0, klass = -1, steps = 0, heads = 0, input_size = 0, batch = 16;
    double cfg = 1.5;
    uint64_t seed = 0;
    int clip = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { sample_usage(stdout); return 0; }
        if (!strcmp(a, "--no-clip")) { clip = 0; continue; }
        if (!v) { fprintf(stderr, "difftune sample: %s needs a value (see --help)\n", a); return 2; }
        i++;
        int bad = 0;
        if (!strcmp(a, "--checkpoint")) ckpt = v;
        else if (!strcmp(a, "--out")) out = v;
        else if (!strcmp(a, "--device")) device = v;
        else if (!strcmp(a, "--weights")) weights = v;
        else if (!strcmp(a, "--precision")) { precision = v; bad = dt_precision_parse(v, NULL, &(dt_precision){0}); }
        else if (!strcmp(a, "--sampler")) sampler = v;
        else if (!strcmp(a, "--n")) bad = cli_parse_int(v, 1, 100000, &n);
        else if (!strcmp(a, "--class")) bad = cli_parse_int(v, 0, 1000000, &klass);
        else if (!strcmp(a, "--classes")) bad = (n_classes = sample_parse_classes(v, classes, SAMPLE_MAX_CLASSES)) < 1;
        else if (!strcmp(a, "--vae")) vae_path = v;
        else if (!strcmp(a, "--steps")) bad = cli_parse_int(v, 1, DT_DIFFUSION_T, &steps);
        else if (!strcmp(a, "--heads")) bad = cli_parse_int(v, 1, 64, &heads);
        else if (!strcmp(a, "--input-size")) bad = cli_parse_int(v, 1, 4096, &input_size);
        else if (!strcmp(a, "--batch")) bad = cli_parse_int(v, 1, 4096, &batch);
        else if (!strcmp(a, "--cfg")) bad = cli_parse_double(v, &cfg) || !(cfg >= 0.0 && cfg <= 100.0);
        else if (!strcmp(a, "--seed")) bad = cli_parse_u64(v, &seed);
        else { fprintf(stderr, "difftune sample: unknown option %s (see --help)\n", a); return 2; }
        if (bad) { fprintf(stderr, "difftune sample: bad value for %s: '%s' (see --help)\n", a, v); return 2; }
    }
    if (!ckpt || !out || n <= 0) {
        fprintf(stderr, "difftune sample: --checkpoint, --n and --out are required (see --help)\n");
        return 2;
    }
    int ddim = !strcmp(sampler, "ddim");
    if (!ddim && strcmp(sampler, "ddpm")) { fprintf(stderr, "difftune sample: --sampler must be ddpm or ddim\n"); return 2; }
    if (strcmp(weights, "ema") && strcmp(weights, "train")) { fprintf(stderr, "difftune sample: --weights must be ema or train\n"); return 2; }
    if (!steps) steps = ddim ? 50 : 250;
    if (klass >= 0 && n_classes > 0) { fprintf(stderr, "difftune sample: give --class or --classes, not both\n"); return 2; }
    if (klass >= 0) classes[n_classes++] = (int32_t)klass;

    char err[1024];
    st_file f = {0};
    dit_config c;
    if (safetensors_open(&f, ckpt, err, sizeof err) || checkpoint_read_config(&f, (int)heads, (int)input_size, &c, err, sizeof err)) {
        fprintf(stderr, "difftune sample: %s\n", err);
        safetensors_close(&f);
        return 2;
    }
    for (int i = 0; i < n_classes; i++)
        if (classes[i] > c.num_classes) {
            fprintf(stderr, "difftune sample: class %d: the model has classes 0..%d (%d = unconditional)\n",
                    classes[i], c.num_classes - 1, c.num_classes);
            safetensors_close(&f);
            return 2;
        }
    /* A latent DiT's samples are latents: they become images only through its VAE. */
    int latent_px = 0;
    if (cli_latent_pixels("difftune sample", vae_path, c.in_channels, c.image_size, &latent_px)) {
        safetensors_close(&f);
        return 2;
    }
    if (latent_px) clip = 0; /* latents are sampled unclipped, as DiT does */
    dt_backend *be = dt_backend_create(device, err, sizeof err);
    if (!be) { fprintf(stderr, "difftune sample: device %s: %s\n", device, err); safetensors_close(&f); return 2; }
    dt_precision_parse(precision, be, &be->precision); /* validated with the options */
    int rc = 1;
    dit_model m = {0};
    dt_schedule sched = {0};
    dt_sampler smp = {0};
    vae_model *vae = NULL;
    dt_latent_decoder dec = {0};
    float *host = NULL, *params = NULL, *images = NULL, *pixels = NULL;
    int32_t *labels = NULL;
    if (batch > n) batch = n;
    if (dit_model_init(&m, &c, be, err, sizeof err)) goto done;
    host = malloc(m.num_floats * sizeof(float));
    params = be->alloc(be, m.num_floats * sizeof(float));
    size_t img = (size_t)c.in_channels * c.image_size * c.image_size;
    images = malloc((size_t)n * img * sizeof(float));
    labels = malloc((size_t)n * sizeof(int32_t));
    if (latent_px) pixels = malloc((size_t)n * 3 * latent_px * latent_px * sizeof(float));
    if (!host || !params || !images || !labels || (latent_px && !pixels)) { snprintf(err, sizeof err, "out of memory"); goto done; }
    if (latent_px && (vae_load(&vae, vae_path, be, err, sizeof err) ||
                      latent_decoder_init(&dec, vae, be, batch < SAMPLE_VAE_BATCH ? (int)batch : SAMPLE_VAE_BATCH,
                                          c.in_channels, c.image_size, err, sizeof err)))
        goto done;
    if (checkpoint_read_weights(&f, &m, strcmp(weights, "train") ? "" : "train.", host, err, sizeof err)) { rc = 2; goto done; }
    be->upload(be, params, host, m.num_floats * sizeof(float));
    if (diffusion_schedule_init(&sched, DT_DIFFUSION_T)) { snprintf(err, sizeof err, "out of memory"); goto done; }
    dt_sampler_opts so = {.steps = (int)steps, .ddim = ddim, .eta = 0.0, .cfg = (float)cfg, .clip_x0 = clip};
    if (sampler_init(&smp, &m, &sched, &so, (int)batch, err, sizeof err)) goto done;
    for (long i = 0; i < n; i++) labels[i] = n_classes ? classes[i % n_classes] : (int32_t)(i % c.num_classes);
    for (long first = 0, chunk = 0; first < n; first += batch, chunk++) {
        int b = (int)(n - first < batch ? n - first : batch);
        if (sampler_run(&smp, params, labels + first, b, seed, (uint64_t)chunk, images + first * img, NULL)) {
            snprintf(err, sizeof err, "backend failure while sampling on %s: %s", be->name, be->last_error(be));
            goto done;
        }
        fprintf(stderr, "difftune sample: %ld/%ld images\n", first + b, n);
    }
    if (latent_px && latent_decode(&dec, images, (int)n, pixels)) {
        snprintf(err, sizeof err, "backend failure while decoding with the VAE on %s: %s", be->name, be->last_error(be));
        goto done;
    }
    if (latent_px ? image_write_grid(out, pixels, (int)n, 3, latent_px, latent_px, (int)ceil(sqrt((double)n)), err, sizeof err)
                  : image_write_grid(out, images, (int)n, c.in_channels, c.image_size, c.image_size,
                                     (int)ceil(sqrt((double)n)), err, sizeof err))
        goto done;
    printf("{\"path\":\"%s\",\"images\":%ld,\"steps\":%ld,\"sampler\":\"%s\",\"cfg\":%g}\n", out, n, steps, sampler, cfg);
    rc = 0;
done:
    if (rc) fprintf(stderr, "difftune sample: %s\n", err);
    sampler_free(&smp);
    diffusion_schedule_free(&sched);
    latent_decoder_free(&dec);
    vae_free(vae);
    if (params) be->free(be, params);
    if (m.params) dit_model_free(&m);
    be->destroy(be);
    free(host);
    free(images);
    free(pixels);
    free(labels);
    safetensors_close(&f);
    return rc;
}
