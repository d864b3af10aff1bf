/* bank.c — generating, caching and loading the knowledge bank. */
#include "bank.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "diffusion.h"
#include "fsutil.h"
#include "image.h"
#include "rng.h"
#include "safetensors.h"
#include "sampler.h"

/* The bank's own seed: fixed, so every job with the same base model and settings shares it. */
#define BANK_SEED 0x6B62616E6BULL

void bank_settings_from_spec(dt_bank_settings *s, const dt_spec *spec) {
    s->size = spec->diff_tuning.bank_size;
    s->steps = spec->diff_tuning.bank_steps;
    s->ddim = !strcmp(spec->diff_tuning.bank_sampler, "ddim");
    s->cfg = spec->diff_tuning.bank_cfg;
    s->chunk = spec->hp.batch_size < s->size ? spec->hp.batch_size : s->size;
    if (s->chunk < 1) s->chunk = 1;
    s->latent = spec->vae[0] != '\0';
}

void bank_key(const char *base_sha256, const dt_bank_settings *s, char key[65]) {
    char text[256];
    /* chunk only changes how the work is split, not the images, so it is not part of the key */
    snprintf(text, sizeof text, "%s|n=%d|steps=%d|sampler=%s|cfg=%.6g|seed=%llu|%s", base_sha256,
             s->size, s->steps, s->ddim ? "ddim" : "ddpm", s->cfg, (unsigned long long)BANK_SEED,
             s->latent ? "clip_x0=0|store=latents" : "clip_x0=1");
    fs_sha256_hex(text, strlen(text), key);
}

static int bank_read(dt_bank *bank, const char *path, const dt_bank_settings *s,
                     const dit_config *c, char *err, size_t errlen) {
    st_file f;
    if (safetensors_open(&f, path, err, errlen)) return -1;
    const st_tensor *t = safetensors_find(&f, s->latent ? "latents" : "images");
    void *data = NULL;
    int rc = -1;
    if (!t || t->dtype != (s->latent ? ST_F32 : ST_U8) || t->ndim != 4 || t->shape[0] != s->size ||
        t->shape[1] != c->in_channels || t->shape[2] != c->image_size || t->shape[3] != c->image_size) {
        snprintf(err, errlen, "%s: not a knowledge bank of %d %s of %dx%dx%d", path, s->size,
                 s->latent ? "latents" : "images", c->in_channels, c->image_size, c->image_size);
    } else if (!(data = malloc(t->nbytes))) {
        snprintf(err, errlen, "out of memory loading %s", path);
    } else {
        memcpy(data, f.data + t->offset, t->nbytes);
        if (s->latent) bank->latents = data;
        else bank->images = data;
        bank->n = s->size;
        bank->C = c->in_channels;
        bank->H = bank->W = c->image_size;
        rc = 0;
    }
    safetensors_close(&f);
    return rc;
}

/* Reads a finished chunk file (raw uint8 images or float latents) into dst; 0 when present and
 * whole. */
static int bank_read_chunk(const char *path, uint8_t *dst, size_t bytes) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    size_t got = fread(dst, 1, bytes, f);
    int extra = fgetc(f);
    fclose(f);
    return got == bytes && extra == EOF ? 0 : -1;
}

static int bank_write_chunk(const char *path, const uint8_t *src, size_t bytes, char *err, size_t errlen) {
    char tmp[4500];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f || fwrite(src, 1, bytes, f) != bytes || fflush(f) || fclose(f)) {
        if (f) fclose(f);
        snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
        return -1;
    }
    if (rename(tmp, path)) {
        snprintf(err, errlen, "cannot rename %s: %s", tmp, strerror(errno));
        return -1;
    }
    return 0;
}

int bank_load_or_generate(dt_bank *bank, const char *root, const char *key,
                          const dt_bank_settings *s, const dit_model *m, const float *params,
                          dt_events *ev, volatile int *stop, int *reused, char *err, size_t errlen) {
    memset(bank, 0, sizeof *bank);
    *reused = 0;
    const dit_config *c = &m->cfg;
    char dir[4096], path[4200], partial[4200];
    snprintf(dir, sizeof dir, "%s/%s", root, key);
    snprintf(path, sizeof path, "%s/bank.safetensors", dir);
    if (fs_exists(path)) {
        if (bank_read(bank, path, s, c, err, errlen)) return -1;
        *reused = 1;
        events_log(ev, "info", "knowledge bank reused: %s", path);
        return 0;
    }
    snprintf(partial, sizeof partial, "%s/partial", dir);
    if (fs_mkdirs(partial, err, errlen)) return -1;

    const size_t img = (size_t)c->in_channels * c->image_size * c->image_size;
    const int chunks = (s->size + s->chunk - 1) / s->chunk;
    /* Pixel banks are quantised images (as a saved PNG); latent banks keep the sampler's floats. */
    const size_t elem = s->latent ? sizeof(float) : 1;
    const char *suffix = s->latent ? "f32" : "u8";
    uint8_t *store = malloc(elem * img * s->size);
    int32_t *labels = malloc(sizeof(int32_t) * s->size);
    float *host = s->latent ? NULL : malloc(sizeof(float) * img * s->chunk);
    dt_schedule sched = {0};
    dt_sampler smp = {0};
    int rc = -1;
    if (!store || !labels || (!s->latent && !host) || diffusion_schedule_init(&sched, DT_DIFFUSION_T)) {
        snprintf(err, errlen, "out of memory for a knowledge bank of %d images", s->size);
        goto done;
    }
    /* Pixel-space models sample with x0 clipped; latents are sampled unclipped, as DiT does. */
    dt_sampler_opts so = {.steps = s->steps, .ddim = s->ddim, .eta = 0.0, .cfg = (float)s->cfg,
                          .clip_x0 = !s->latent};
    if (sampler_init(&smp, m, &sched, &so, s->chunk, err, errlen)) goto done;
    /* Random source classes, as the reference sampler draws them. */
    for (int i = 0; i < s->size; i++)
        labels[i] = (int32_t)dt_rng_below(BANK_SEED, DT_STREAM_LABELS, (uint64_t)i, (uint32_t)c->num_classes);

    events_log(ev, "info", "generating a knowledge bank of %d images (%s, %d steps, cfg %.2f) into %s",
               s->size, s->ddim ? "ddim" : "ddpm", s->steps, s->cfg, dir);
    double t0 = dt_now();
    int fresh = 0;
    for (int k = 0; k < chunks; k++) {
        int first = k * s->chunk, n = s->size - first < s->chunk ? s->size - first : s->chunk;
        char cpath[4400];
        snprintf(cpath, sizeof cpath, "%s/chunk_%06d.%s", partial, k, suffix);
        uint8_t *piece = store + elem * img * first;
        if (bank_read_chunk(cpath, piece, elem * img * n) != 0) {
            float *out = s->latent ? (float *)piece : host;
            int r = sampler_run(&smp, params, labels + first, n, BANK_SEED, (uint64_t)k, out, stop);
            if (r == 1) {
                rc = 1;
                goto done;
            }
            if (r < 0) {
                snprintf(err, errlen, "backend failure while sampling the knowledge bank (%d)", r);
                goto done;
            }
            if (!s->latent) image_quantize(host, piece, img * n);
            if (bank_write_chunk(cpath, piece, elem * img * n, err, errlen)) goto done;
            fresh += n;
        }
        double el = dt_now() - t0;
        int done_n = first + n;
        double ips = el > 0 ? fresh / el : 0.0;
        events_emit(ev, "progress", json_pack("{s:s, s:i, s:i, s:f, s:f}", "phase", "knowledge_bank",
                    "step", done_n, "total_steps", s->size, "images_per_second", ips,
                    "eta_seconds", ips > 0 ? (s->size - done_n) / ips : 0.0));
    }
    {
        char n_s[16], steps_s[16], cfg_s[32];
        snprintf(n_s, sizeof n_s, "%d", s->size);
        snprintf(steps_s, sizeof steps_s, "%d", s->steps);
        snprintf(cfg_s, sizeof cfg_s, "%g", s->cfg);
        const char *meta[] = {"format", "difftune.bank.v1", "size", n_s, "steps", steps_s,
                              "sampler", s->ddim ? "ddim" : "ddpm", "cfg", cfg_s,
                              "space", s->latent ? "latent" : "pixel", NULL};
        st_write_tensor t[2] = {
            {.name = s->latent ? "latents" : "images", .dtype = s->latent ? ST_F32 : ST_U8, .ndim = 4,
             .shape = {s->size, c->in_channels, c->image_size, c->image_size}, .data = store},
            {.name = "labels", .dtype = ST_I32, .ndim = 1, .shape = {s->size}, .data = labels},
        };
        if (safetensors_write(path, t, 2, meta, err, errlen)) goto done;
    }
    for (int k = 0; k < chunks; k++) { /* the whole bank is safe: drop the pieces */
        char cpath[4400];
        snprintf(cpath, sizeof cpath, "%s/chunk_%06d.%s", partial, k, suffix);
        remove(cpath);
    }
    remove(partial);
    if (s->latent) bank->latents = (float *)store;
    else bank->images = store;
    store = NULL;
    bank->n = s->size;
    bank->C = c->in_channels;
    bank->H = bank->W = c->image_size;
    rc = 0;
done:
    sampler_free(&smp);
    diffusion_schedule_free(&sched);
    free(store);
    free(labels);
    free(host);
    return rc;
}

void bank_free(dt_bank *bank) {
    free(bank->images);
    free(bank->latents);
    memset(bank, 0, sizeof *bank);
}
