/* test_latents.c — latent DiTs on the CPU, with weights generated in the published layouts
 * (gen_vae: the SD VAE's diffusers layout, reduced widths to stay fast; gen_dit: the official DiT
 * layout, 4 input channels):
 *  - the latent cache: every image and its mirror image encoded (equal to vae_encode of each
 *    view), read back as written, keyed apart by dataset, VAE and pixel size, resumed after an
 *    interruption to the same bytes (a torn chunk encoded again), the stop flag;
 *  - posterior draws x0 = mean + std * n, deterministic in (seed, slot);
 *  - decoding: the decoder in batches against vae_decode one latent at a time;
 *  - removal with the dataset: an encoding records the dataset's real path (partial/dataset,
 *    then the metadata); latents_remove_dataset removes the caches of a dataset named through a
 *    symbolic link with a trailing slash, and nothing for another dataset or a missing root;
 *  - a latent diff_tuning job: encoding progress, finite losses, a knowledge bank of latents,
 *    grids decoded at the pixel size, fd_classifier measured on decoded samples against the
 *    dataset's images; a second job reuses the cache and replays the same losses;
 *  - the engine's refusals naming "vae": a 4-channel DiT without a VAE, a VAE whose latents do
 *    not fit the DiT, a file that is not a VAE, no cache directory. */
#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend.h"
#include "classifier.h"
#include "dataset.h"
#include "image.h"
#include "latents.h"
#include "rng.h"
#include "safetensors.h"
#include "train_util.h"
#include "vae.h"

#define VAE_WIDTHS "32,64,64,64" /* the published 128,256,512,512 cost too much under ASan */
#define PIXELS 32                /* -> 4x4x4 latents */

static char dir[1024];

/* dir/name in a buffer of its own (check_path's buffers rotate). */
static const char *keep_path(char *buf, size_t n, const char *name) {
    snprintf(buf, n, "%s/%s", dir, name);
    return buf;
}

/* Runs a generator tool named by environment variable env with args; 0 on success. */
static int gen(const char *env, const char *args) {
    const char *tool = getenv(env);
    if (!tool || !tool[0]) {
        fprintf(stderr, "%s is not set (the test runs under ctest, which sets it)\n", env);
        return -1;
    }
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "'%s' %s > /dev/null", tool, args);
    return system(cmd) == 0 ? 0 : -1;
}

/* Max |a - b| / max(1, |b|) over n floats. */
static double rel_diff(const float *a, const float *b, size_t n) {
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]) / fmax(1.0, fabs((double)b[i]));
        if (!(d <= worst)) worst = d; /* NaN wins */
    }
    return worst;
}

static int count_events(const char *events, const char *type, const char *phase) {
    int n = 0;
    for (const char *line = events; line && *line;) {
        const char *nl = strchr(line, '\n');
        json_t *o = json_loadb(line, nl ? (size_t)(nl - line) : strlen(line), 0, NULL);
        const char *t = json_string_value(json_object_get(o, "type"));
        const char *p = json_string_value(json_object_get(o, "phase"));
        n += t && !strcmp(t, type) && (!phase || (p && !strcmp(p, phase)));
        json_decref(o);
        line = nl ? nl + 1 : NULL;
    }
    return n;
}

/* ---- the cache ----------------------------------------------------------------------------- */

static int encode_into(dt_latents *lat, const dt_dataset *ds, vae_model *v, dt_backend *be,
                       const char *root, const char *key, int stop_after, volatile int *stop,
                       char **events, char *err, size_t errlen) {
    size_t len = 0;
    char *buf = NULL;
    FILE *f = open_memstream(&buf, &len);
    dt_events ev = {.out = f};
    char ds_dir[1200];
    keep_path(ds_dir, sizeof ds_dir, "ds"); /* the dataset's path (main) */
    dt_latents_encode_opts o = {.root = root, .key = key, .vae_sha256 = "x", .dataset = ds_dir,
                                .batch = 3, .chunk = 2, .stop_after_chunks = stop_after,
                                .ev = &ev, .stop = stop};
    int r = latents_encode(lat, ds, v, be, &o, err, errlen);
    fclose(f);
    if (events) *events = buf;
    else free(buf);
    return r;
}

static void test_cache(const char *vae_path, const char *ds_path) {
    char err[1024];
    dt_dataset ds;
    CHECK(dataset_load(&ds, ds_path, PIXELS, 3, err, sizeof err) == 0, "dataset: %s", err);
    dt_backend *be = dt_backend_create("cpu", err, sizeof err);
    vae_model *v = NULL;
    CHECK(be && vae_load(&v, vae_path, be, err, sizeof err) == 0, "vae_load: %s", err);
    if (!v) return;
    CHECK(vae_reserve(v, 3, PIXELS, err, sizeof err) == 0, "reserve: %s", err);

    /* keys: dataset, VAE and pixel size all count */
    char key[65], key64[65], key_other_vae[65], key_copy[65], key_touched[65], sha[65];
    CHECK(latents_key(ds_path, vae_path, PIXELS, key, sha, err, sizeof err) == 0, "key: %s", err);
    CHECK(latents_key(ds_path, vae_path, 2 * PIXELS, key64, NULL, err, sizeof err) == 0 &&
          strcmp(key, key64), "another pixel size, another key");
    const char *vae2 = check_path(dir, "vae2.safetensors");
    char args[2048];
    snprintf(args, sizeof args, "--out '%s' --channels " VAE_WIDTHS " --seed 9", vae2);
    CHECK(gen("DIFFTUNE_GEN_VAE", args) == 0, "gen_vae (seed 9)");
    CHECK(latents_key(ds_path, vae2, PIXELS, key_other_vae, NULL, err, sizeof err) == 0 &&
          strcmp(key, key_other_vae), "another VAE, another key");
    const char *copy = check_path(dir, "ds_copy");
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "cp -rp '%s' '%s'", ds_path, copy);
    CHECK(system(cmd) == 0, "copy the dataset");
    CHECK(latents_key(copy, vae_path, PIXELS, key_copy, NULL, err, sizeof err) == 0 &&
          strcmp(key, key_copy), "another dataset path, another key");
    snprintf(cmd, sizeof cmd, "touch -d '2001-02-03' \"$(find '%s' -name '*.png' | head -1)\"", copy);
    CHECK(system(cmd) == 0, "touch a file");
    CHECK(latents_key(copy, vae_path, PIXELS, key_touched, NULL, err, sizeof err) == 0 &&
          strcmp(key_copy, key_touched), "a changed file, another key");
    CHECK(latents_key(check_path(dir, "nowhere"), vae_path, PIXELS, key_touched, NULL, err,
                      sizeof err) != 0 && strstr(err, "does not exist"), "missing dataset: %s", err);

    /* one uninterrupted encoding */
    const char *root_a = check_path(dir, "cache_a"), *root_b = check_path(dir, "cache_b");
    dt_latents a, b;
    char *events = NULL;
    CHECK(encode_into(&a, &ds, v, be, root_a, key, 0, NULL, &events, err, sizeof err) == 0,
          "encode: %s", err);
    CHECK(count_events(events, "progress", "encoding") >= 2, "progress in phase encoding");
    free(events);
    char file[2400];
    snprintf(file, sizeof file, "%s/%s/latents.safetensors", root_a, key);
    struct stat sb;
    CHECK(stat(file, &sb) == 0, "cache file written: %s", file);
    snprintf(cmd, sizeof cmd, "%s/%s/partial", root_a, key);
    CHECK(stat(cmd, &sb) != 0, "the pieces are removed once the file is whole");
    CHECK(a.n == ds.n && a.C == 4 && a.h == PIXELS / 8 && a.w == PIXELS / 8 &&
          a.pixel_size == PIXELS && a.num_classes == ds.num_classes &&
          !memcmp(a.labels, ds.labels, sizeof(int32_t) * ds.n) &&
          !strcmp(a.class_names[1], ds.class_names[1]), "shape, labels and classes");

    /* each view is vae_encode of that image, as stored ([i][0]) and mirrored ([i][1]) */
    const size_t limg = (size_t)a.C * a.h * a.w, pimg = (size_t)3 * PIXELS * PIXELS;
    float *h_img = malloc(pimg * sizeof(float)), *h_mean = malloc(limg * sizeof(float)),
          *h_std = malloc(limg * sizeof(float));
    float *d_img = be->alloc(be, pimg * sizeof(float)), *d_mean = be->alloc(be, limg * sizeof(float)),
          *d_std = be->alloc(be, limg * sizeof(float));
    double worst_mean = 0, worst_std = 0, flip_gap = 0;
    for (int i = 0; i < ds.n; i++)
        for (int f = 0; f < 2; f++) {
            dataset_image_to_float(&ds, i, f, h_img);
            be->upload(be, d_img, h_img, pimg * sizeof(float));
            CHECK(vae_encode(v, d_img, 1, PIXELS, PIXELS, d_mean, d_std) == 0, "vae_encode");
            be->download(be, h_mean, d_mean, limg * sizeof(float));
            be->download(be, h_std, d_std, limg * sizeof(float));
            be->sync(be);
            const size_t off = ((size_t)i * 2 + f) * limg;
            worst_mean = fmax(worst_mean, rel_diff(a.mean + off, h_mean, limg));
            worst_std = fmax(worst_std, rel_diff(a.std + off, h_std, limg));
            if (f) flip_gap = fmax(flip_gap, rel_diff(a.mean + off, a.mean + off - limg, limg));
        }
    CHECK(worst_mean < 1e-4 && worst_std < 1e-4, "cached views = vae_encode of each view "
          "(mean %.3g, std %.3g)", worst_mean, worst_std);
    CHECK(flip_gap > 1e-3, "the mirror images' latents differ from the images' (%.3g)", flip_gap);
    int std_positive = 1;
    for (size_t j = 0; j < (size_t)a.n * 2 * limg; j++) std_positive &= a.std[j] > 0;
    CHECK(std_positive, "std > 0");

    /* read back exactly */
    dt_latents back;
    CHECK(latents_load(&back, root_a, key, 4, PIXELS / 8, PIXELS / 8, err, sizeof err) == 0,
          "load: %s", err);
    CHECK(back.n == a.n && back.pixel_size == PIXELS && back.num_classes == a.num_classes &&
          !memcmp(back.mean, a.mean, (size_t)a.n * 2 * limg * sizeof(float)) &&
          !memcmp(back.std, a.std, (size_t)a.n * 2 * limg * sizeof(float)) &&
          !memcmp(back.labels, a.labels, sizeof(int32_t) * a.n) &&
          !strcmp(back.class_names[0], a.class_names[0]), "read back as written");
    latents_free(&back);
    CHECK(latents_load(&back, root_a, key, 4, 8, 8, err, sizeof err) == -1 &&
          strstr(err, "not a latent cache"), "another latent shape is refused: %s", err);
    CHECK(latents_load(&back, root_b, key, 4, 4, 4, err, sizeof err) == 1, "absent: 1");

    /* interrupted after one chunk of two images, a torn second chunk, then resumed */
    volatile int stop = 0;
    CHECK(encode_into(&b, &ds, v, be, root_b, key, 1, &stop, NULL, err, sizeof err) == 1,
          "stops after one chunk");
    snprintf(file, sizeof file, "%s/%s/partial/chunk_000000.f32", root_b, key);
    CHECK(stat(file, &sb) == 0 && sb.st_size == (off_t)(2 * 2 * 2 * limg * sizeof(float)),
          "the finished chunk is kept");
    char real[PATH_MAX] = "", src[PATH_MAX] = "";
    CHECK(realpath(ds_path, real) != NULL, "realpath %s", ds_path);
    snprintf(file, sizeof file, "%s/%s/partial/dataset", root_b, key);
    FILE *sf = fopen(file, "rb");
    if (sf) {
        src[fread(src, 1, sizeof src - 1, sf)] = '\0';
        fclose(sf);
    }
    CHECK(!strcmp(src, real), "partial/dataset holds the dataset's real path: '%s'", src);
    snprintf(file, sizeof file, "%s/%s/partial/chunk_000001.f32", root_b, key);
    CHECK(stat(file, &sb) != 0, "no second chunk");
    FILE *torn = fopen(file, "wb");
    fputs("torn", torn);
    fclose(torn);
    snprintf(file, sizeof file, "%s/%s/partial/chunk_000002.f32.tmp.1", root_b, key);
    torn = fopen(file, "wb"); /* what a writer killed mid-chunk leaves */
    fputs("stale", torn);
    fclose(torn);
    stop = 1;
    CHECK(encode_into(&b, &ds, v, be, root_b, key, 0, &stop, NULL, err, sizeof err) == 1,
          "the stop flag stops the encoding");
    stop = 0;
    CHECK(encode_into(&b, &ds, v, be, root_b, key, 0, &stop, &events, err, sizeof err) == 0,
          "resumed: %s", err);
    CHECK(strstr(events, "2 of 6 images were already encoded") != NULL, "resumed, not redone:\n%s",
          events);
    free(events);
    snprintf(file, sizeof file, "%s/%s/partial", root_b, key);
    CHECK(stat(file, &sb) != 0, "the pieces, stale ones too, are removed");
    CHECK(b.n == a.n && !memcmp(b.mean, a.mean, (size_t)a.n * 2 * limg * sizeof(float)) &&
          !memcmp(b.std, a.std, (size_t)a.n * 2 * limg * sizeof(float)),
          "the resumed encoding equals the uninterrupted one");

    /* training draws */
    float *x = malloc(limg * sizeof(float)), *y = malloc(limg * sizeof(float));
    latents_draw(&a, 4, 1, 5, 7, x);
    latents_draw(&a, 4, 1, 5, 7, y);
    CHECK(!memcmp(x, y, limg * sizeof(float)), "a draw is a function of (seed, slot)");
    double worst = 0;
    const float *m = a.mean + (4 * 2 + 1) * limg, *s = a.std + (4 * 2 + 1) * limg;
    for (size_t j = 0; j < limg; j++)
        worst = fmax(worst, fabs(x[j] - (m[j] + s[j] * dt_philox_normal(5, DT_STREAM_LATENT,
                                                                         7 * limg + j))));
    CHECK(worst < 1e-6, "x0 = mean + std * n (%.3g)", worst);
    latents_draw(&a, 4, 1, 5, 8, y);
    CHECK(memcmp(x, y, limg * sizeof(float)) != 0, "another slot, another draw");

    /* decoding in batches = one at a time */
    dt_latent_decoder dec;
    CHECK(latent_decoder_init(&dec, v, be, 2, 4, PIXELS / 8, err, sizeof err) == 0, "decoder: %s",
          err);
    CHECK(latent_decoder_init(&(dt_latent_decoder){0}, v, be, 2, 3, PIXELS / 8, err, sizeof err)
              == -1, "3-channel latents refused");
    float *imgs = malloc(3 * pimg * sizeof(float)), *one = malloc(pimg * sizeof(float));
    float *d_z = be->alloc(be, limg * sizeof(float));
    CHECK(latent_decode(&dec, a.mean, 3, imgs) == 0, "decode 3 latents in batches of 2");
    double dec_worst = 0;
    for (int i = 0; i < 3; i++) {
        be->upload(be, d_z, a.mean + (size_t)i * limg, limg * sizeof(float));
        vae_decode(v, d_z, 1, PIXELS / 8, PIXELS / 8, d_img);
        be->download(be, one, d_img, pimg * sizeof(float));
        be->sync(be);
        dec_worst = fmax(dec_worst, rel_diff(imgs + (size_t)i * pimg, one, pimg));
    }
    CHECK(dec.pixels == PIXELS && dec_worst < 1e-4, "batched decoding = vae_decode (%.3g)",
          dec_worst);
    latent_decoder_free(&dec);

    /* removal with the dataset */
    char link[1200], via[1300];
    CHECK(latents_remove_dataset(keep_path(link, sizeof link, "no_cache_root"), ds_path, err,
                                 sizeof err) == 0, "no cache root: nothing removed (%s)", err);
    CHECK(latents_remove_dataset(root_a, keep_path(link, sizeof link, "ds_copy"), err, sizeof err)
              == 0, "another dataset: nothing removed (%s)", err);
    snprintf(file, sizeof file, "%s/%s", root_a, key);
    CHECK(stat(file, &sb) == 0, "the cache is still there");
    keep_path(link, sizeof link, "link");
    snprintf(via, sizeof via, "%s/ds/", link);
    unlink(link);
    CHECK(symlink(dir, link) == 0 && latents_remove_dataset(root_a, via, err, sizeof err) == 1,
          "the dataset through a symbolic link, with a trailing slash: one cache removed (%s)", err);
    CHECK(stat(file, &sb) != 0, "the cache folder is gone");
    CHECK(latents_remove_dataset(root_b, real, err, sizeof err) == 1, "the resumed one too (%s)",
          err);
    be->free(be, d_z);
    be->free(be, d_img);
    be->free(be, d_mean);
    be->free(be, d_std);
    free(imgs);
    free(one);
    free(x);
    free(y);
    free(h_img);
    free(h_mean);
    free(h_std);
    latents_free(&a);
    latents_free(&b);
    vae_free(v);
    be->destroy(be);
    dataset_free(&ds);
}

/* ---- training ------------------------------------------------------------------------------ */

static int run(const dt_spec *s, const char *out, const char *latent_dir, char **events,
               char *err, size_t errlen) {
    size_t len = 0;
    char *buf = NULL;
    FILE *f = open_memstream(&buf, &len);
    dt_events ev = {.out = f};
    dt_train_opts o = {.out_dir = out, .bank_dir = check_path(dir, "banks"),
                       .latent_dir = latent_dir, .log_every = 1, .grid_size = 4, .events = &ev};
    int rc = train_run(s, &o, err, errlen);
    fclose(f);
    *events = buf;
    return rc;
}

static void latent_spec(dt_spec *s, const char *base, const char *vae, const char *ds) {
    spec_defaults(s);
    s->method = DT_METHOD_DIFF_TUNING;
    tu_set_str(s->base_model, sizeof s->base_model, base);
    tu_set_str(s->vae, sizeof s->vae, vae);
    tu_set_str(s->dataset, sizeof s->dataset, ds);
    s->hp.steps = 2;
    s->hp.batch_size = 4;
    s->diff_tuning.bank_size = 4;
    s->diff_tuning.bank_steps = 2;
    s->diff_tuning.replay_ratio = 0.25;
    s->eval.sample_every = 0;
    s->eval.fid_every = 0;
    s->checkpoint.every = 2;
    snprintf(s->device, sizeof s->device, "cpu");
}

static void test_train(const char *vae_path, const char *ds_path) {
    char err[1024], args[2048], base_buf[1200], latents_buf[1200], base3_buf[1200], clf[1200];
    const char *base = keep_path(base_buf, sizeof base_buf, "dit4.safetensors");
    snprintf(args, sizeof args, "--out '%s' --layout official --arch DiT-S/2 --depth 2 "
             "--input-size %d --in-channels 4 --classes 10", base, PIXELS / 8);
    CHECK(gen("DIFFTUNE_GEN_DIT", args) == 0, "gen_dit (4 channels)");
    const char *latents = keep_path(latents_buf, sizeof latents_buf, "latents");

    /* a classifier on the dataset's images, to measure the decoded samples */
    dt_dataset ds;
    CHECK(dataset_load(&ds, ds_path, PIXELS, 3, err, sizeof err) == 0, "dataset: %s", err);
    dt_classifier_opts co;
    classifier_opts_defaults(&co);
    co.epochs = 1;
    co.held_out = 0;
    keep_path(clf, sizeof clf, "classifier.safetensors");
    CHECK(classifier_train(&ds, &co, clf, NULL, NULL, err, sizeof err) == 0, "classifier: %s", err);
    dataset_free(&ds);

    /* the first job encodes the dataset and measures fd_classifier on decoded samples */
    dt_spec s;
    latent_spec(&s, base, vae_path, ds_path);
    s.eval.fid_every = 2;
    s.eval.fid_samples = 4;
    s.eval.steps = 2;
    snprintf(s.eval.extractor, sizeof s.eval.extractor, "classifier:%.1000s", clf);
    char *ev = NULL;
    int rc = run(&s, check_path(dir, "run1"), latents, &ev, err, sizeof err);
    CHECK(rc == TRAIN_OK, "latent diff_tuning: %s", err);
    double l1[3] = {0}, l2[3] = {0};
    CHECK(tu_losses(ev, l1, 2) == 2 && isfinite(l1[1]) && isfinite(l1[2]) && l1[1] > 0,
          "finite losses: %g %g", l1[1], l1[2]);
    CHECK(count_events(ev, "progress", "encoding") >= 2, "encoding progress");
    json_t *m = tu_find_event(ev, "metric", "latent_cache");
    CHECK(m && json_is_false(json_object_get(m, "reused")) &&
          json_integer_value(json_object_get(m, "images")) == 6 &&
          json_integer_value(json_object_get(m, "pixel_size")) == PIXELS,
          "latent_cache: encoded, 6 images of 32 px");
    json_decref(m);
    m = tu_find_event(ev, "metric", "fd_classifier");
    CHECK(m && json_is_true(json_object_get(m, "available")) &&
          isfinite(json_real_value(json_object_get(m, "value"))) &&
          json_integer_value(json_object_get(json_object_get(m, "reference"), "images")) == 6,
          "fd_classifier of decoded samples against the dataset's images");
    json_decref(m);
    m = tu_find_event(ev, "metric", "knowledge_bank");
    char bank_file[2400];
    snprintf(bank_file, sizeof bank_file, "%s/%s/bank.safetensors", check_path(dir, "banks"),
             m ? json_string_value(json_object_get(m, "key")) : "");
    json_decref(m);
    free(ev);
    st_file f;
    CHECK(safetensors_open(&f, bank_file, err, sizeof err) == 0, "bank: %s", err);
    const st_tensor *t = safetensors_find(&f, "latents");
    CHECK(t && t->dtype == ST_F32 && t->ndim == 4 && t->shape[0] == 4 && t->shape[1] == 4 &&
          t->shape[2] == PIXELS / 8 && t->shape[3] == PIXELS / 8 &&
          !safetensors_find(&f, "images"), "the bank holds F32 latents (4, 4, 4, 4)");
    safetensors_close(&f);
    uint8_t *px = NULL;
    int w = 0, h = 0;
    const char *grid = check_path(dir, "run1/samples/step_0000002.png");
    CHECK(image_load(grid, 3, &px, &w, &h, err, sizeof err) == 0 && w == 2 * (PIXELS + 2) + 2 &&
          h == w, "the grid is decoded: %dx%d (%s)", w, h, err);
    free(px);

    /* a second job on the same dataset and VAE reuses the cache: same latents, same losses */
    latent_spec(&s, base, vae_path, ds_path);
    rc = run(&s, check_path(dir, "run2"), latents, &ev, err, sizeof err);
    CHECK(rc == TRAIN_OK, "second job: %s", err);
    m = tu_find_event(ev, "metric", "latent_cache");
    CHECK(m && json_is_true(json_object_get(m, "reused")), "latent_cache reused");
    json_decref(m);
    CHECK(count_events(ev, "progress", "encoding") == 0, "nothing encoded again");
    CHECK(tu_losses(ev, l2, 2) == 2 && l2[1] == l1[1] && l2[2] == l1[2],
          "the same losses from the cached latents (%.9g %.9g vs %.9g %.9g)", l2[1], l2[2],
          l1[1], l1[2]);
    free(ev);

    /* refusals naming vae */
    latent_spec(&s, base, "", ds_path);
    rc = run(&s, check_path(dir, "bad1"), latents, &ev, err, sizeof err);
    CHECK(rc == TRAIN_INVALID && strstr(err, "\"vae\"") && strstr(err, "4-channel"),
          "a 4-channel DiT without a VAE: %s", err);
    free(ev);
    const char *base3 = keep_path(base3_buf, sizeof base3_buf, "dit3.safetensors");
    snprintf(args, sizeof args, "--out '%s' --layout official --arch DiT-S/2 --depth 1 "
             "--input-size 4 --in-channels 3 --classes 10", base3);
    CHECK(gen("DIFFTUNE_GEN_DIT", args) == 0, "gen_dit (3 channels)");
    latent_spec(&s, base3, vae_path, ds_path);
    rc = run(&s, check_path(dir, "bad2"), latents, &ev, err, sizeof err);
    CHECK(rc == TRAIN_INVALID && !strncmp(err, "vae: ", 5) && strstr(err, "4-channel latents"),
          "a VAE whose latents the DiT does not take: %s", err);
    free(ev);
    latent_spec(&s, base, base, ds_path);
    rc = run(&s, check_path(dir, "bad3"), latents, &ev, err, sizeof err);
    CHECK(rc == TRAIN_INVALID && !strncmp(err, "vae ", 4), "a DiT as the VAE: %s", err);
    free(ev);
    latent_spec(&s, base, vae_path, ds_path);
    rc = run(&s, check_path(dir, "bad4"), NULL, &ev, err, sizeof err);
    CHECK(rc == TRAIN_INVALID && strstr(err, "latent-cache"), "no cache directory: %s", err);
    free(ev);
}

int main(void) {
    snprintf(dir, sizeof dir, "%s", check_tmpdir("latents"));
    char err[512], args[2048], vae_buf[1200], ds[1200];
    const char *vae = keep_path(vae_buf, sizeof vae_buf, "vae.safetensors");
    snprintf(args, sizeof args, "--out '%s' --channels " VAE_WIDTHS, vae);
    if (gen("DIFFTUNE_GEN_VAE", args) != 0) {
        CHECK(0, "cannot generate the VAE");
        return check_done("test_latents");
    }
    keep_path(ds, sizeof ds, "ds");
    CHECK(synth_write_folder(ds, "solid", 2, 3, PIXELS, 1, err, sizeof err) == 0, "%s", err);
    test_cache(vae, ds);
    test_train(vae, ds);
    return check_done("test_latents");
}
