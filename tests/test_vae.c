/* test_vae.c — the SD VAE (engine/vae.h) on the CPU backend.
 *
 *  - Weights in the published layout (tests/tools/gen_vae: full sd-vae-ft-* widths; F32, F16 and
 *    BF16 files; current and legacy attention names; Linear- and conv-shaped attention weights)
 *    encode and decode small images, compared with an independent float64 numpy VAE
 *    (tests/ref_vae.py) to a normalised error bound.
 *  - The same against committed PyTorch fixtures (tests/fixtures/vae_torch_*.safetensors, made by
 *    tests/reference/torch_vae.py on gen_vae weights that the test regenerates bit-exactly).
 *  - vae_read_config: the architecture read from the shapes, and rejection of a missing tensor,
 *    a wrong shape, a non-float tensor and a DiT file.
 *  - An encode-decode round trip (shapes, finiteness, determinism, batch independence, output
 *    depending on the input) and vae_reserve's limits.
 * Environment: DIFFTUNE_GEN_VAE (the generator), DIFFTUNE_SOURCE, DIFFTUNE_PYTHON (numpy),
 * DIFFTUNE_TEST_TMP.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ref_python.h"
#include "philox.h"
#include "safetensors.h"
#include "vae.h"

/* A reservation far beyond memory must fail with a message, not abort the sanitizer build. */
const char *__asan_default_options(void);
const char *__asan_default_options(void) {
    return "allocator_may_return_null=1";
}

#define TOL_F32 2e-5   /* fp32 against float64, normalised by the reference's largest value */
#define TOL_TORCH 2e-5

static const char *tmp;

/* Runs gen_vae --out path args; returns 0 or -1 (reported). */
static int gen_vae(const char *path, const char *args) {
    const char *tool = getenv("DIFFTUNE_GEN_VAE");
    CHECK(tool && tool[0], "DIFFTUNE_GEN_VAE is not set (tests/CMakeLists.txt sets it to gen_vae)");
    if (!tool || !tool[0]) return -1;
    char cmd[3000];
    snprintf(cmd, sizeof cmd, "'%s' --out '%s' %s > /dev/null", tool, path, args);
    int rc = system(cmd);
    CHECK(rc == 0, "gen_vae failed (status %d): %s", rc, cmd);
    return rc == 0 ? 0 : -1;
}

static void fill_normal(float *x, size_t n, uint64_t stream, float scale) {
    for (size_t i = 0; i < n; i++) x[i] = scale * dt_philox_normal(77, stream, i);
}

/* Images in [-1, 1]: smooth ramps plus noise, so neighbouring pixels are correlated. */
static void fill_images(float *x, int B, int H, int W, uint64_t stream) {
    for (int b = 0; b < B; b++)
        for (int c = 0; c < 3; c++)
            for (int i = 0; i < H; i++)
                for (int j = 0; j < W; j++) {
                    size_t k = (((size_t)b * 3 + c) * H + i) * W + j;
                    float v = 0.6f * sinf(0.3f * (float)(i + 2 * c) + 0.2f * (float)(j * (b + 1))) +
                              0.3f * dt_philox_normal(78, stream, k);
                    x[k] = fminf(1.0f, fmaxf(-1.0f, v));
                }
}

static int all_finite(const float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return 0;
    return 1;
}

/* ---- running the VAE from host arrays ---------------------------------------------------- */

typedef struct {
    int B, H, W, h, w, lat;
    size_t n_img, n_lat;
} shapes;

static shapes shapes_of(const vae_model *v, int B, int H, int W) {
    const vae_config *c = vae_get_config(v);
    shapes s = {B, H, W, H / c->downsample, W / c->downsample, c->latent_channels, 0, 0};
    s.n_img = (size_t)B * c->in_channels * H * W;
    s.n_lat = (size_t)B * s.lat * s.h * s.w;
    return s;
}

/* Encodes himg into hmean/hstd and (when hz) decodes hz into hdec; returns the first nonzero
 * status of vae_encode / vae_decode. Backend buffers are made and freed here (test code). */
static int run_host(vae_model *v, dt_backend *be, const shapes *s, const float *himg, float *hmean,
                    float *hstd, const float *hz, float *hdec) {
    float *img = be->alloc(be, s->n_img * sizeof(float)), *dec = be->alloc(be, s->n_img * sizeof(float));
    float *mean = be->alloc(be, s->n_lat * sizeof(float)), *std = be->alloc(be, s->n_lat * sizeof(float));
    float *z = be->alloc(be, s->n_lat * sizeof(float));
    be->upload(be, img, himg, s->n_img * sizeof(float));
    int rc = vae_encode(v, img, s->B, s->H, s->W, mean, std);
    if (rc == 0) {
        be->download(be, hmean, mean, s->n_lat * sizeof(float));
        be->download(be, hstd, std, s->n_lat * sizeof(float));
    }
    if (rc == 0 && hz) {
        be->upload(be, z, hz, s->n_lat * sizeof(float));
        rc = vae_decode(v, z, s->B, s->h, s->w, dec);
        if (rc == 0) be->download(be, hdec, dec, s->n_img * sizeof(float));
    }
    be->free(be, img); be->free(be, dec); be->free(be, mean); be->free(be, std); be->free(be, z);
    return rc;
}

static int write_blob(const char *path, const void *data, size_t bytes) {
    FILE *f = fopen(path, "wb");
    int ok = f && fwrite(data, 1, bytes, f) == bytes;
    if (f) ok &= fclose(f) == 0;
    CHECK(ok, "cannot write %s", path);
    return ok ? 0 : -1;
}

static int read_blob(const char *path, float *dst, size_t n) {
    FILE *f = fopen(path, "rb");
    size_t got = f ? fread(dst, sizeof(float), n, f) : 0;
    int extra = f ? fgetc(f) != EOF : 0;
    if (f) fclose(f);
    CHECK(got == n && !extra, "%s: %zu floats (more: %d), expected %zu", path, got, extra, n);
    return got == n && !extra ? 0 : -1;
}

/* Runs ref_vae.py on weights with himg and hz; fills the reference outputs. */
static int run_numpy(const char *dir, const char *weights, const shapes *s, const float *himg,
                     const float *hz, float *rmean, float *rstd, float *rdec) {
    char json[256];
    int len = snprintf(json, sizeof json, "{\"batch\": %d, \"height\": %d, \"width\": %d, "
                       "\"images\": \"images.f32\", \"latents\": \"latents.f32\"}\n", s->B, s->H, s->W);
    if (write_blob(check_path(dir, "images.f32"), himg, s->n_img * sizeof(float)) ||
        write_blob(check_path(dir, "latents.f32"), hz, s->n_lat * sizeof(float)) ||
        write_blob(check_path(dir, "inputs.json"), json, (size_t)len))
        return -1;
    const char *src = getenv("DIFFTUNE_SOURCE");
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "'%s' '%s/tests/ref_vae.py' '%s' '%s/inputs.json' '%s'", ref_python(),
             src ? src : ".", weights, dir, dir);
    int rc = system(cmd);
    CHECK(rc == 0, "reference failed (status %d): %s", rc, cmd);
    if (rc) return -1;
    if (read_blob(check_path(dir, "mean.f32"), rmean, s->n_lat) ||
        read_blob(check_path(dir, "std.f32"), rstd, s->n_lat) ||
        read_blob(check_path(dir, "decoded.f32"), rdec, s->n_img))
        return -1;
    return 0;
}

static void compare(const char *what, const char *label, const float *ours, const float *ref,
                    size_t n, double tol) {
    size_t worst;
    double e = check_norm_err(ours, ref, n, &worst);
    printf("%s %s: normalised error %.3g\n", label, what, e);
    CHECK(e < tol, "%s %s: normalised error %.3g >= %g (worst at %zu: ours %.7g, reference %.7g)",
          label, what, e, tol, worst, (double)ours[worst], (double)ref[worst]);
}

/* ---- against numpy ----------------------------------------------------------------------- */

typedef struct {
    const char *label;
    const char *args; /* gen_vae options */
    int B, H, W;
    int levels, layers, attn_names, attn_conv;
    int block_out[4];
} numpy_case;

static void check_numpy_case(const numpy_case *nc, int python_ok) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/%s", tmp, nc->label);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", dir);
    CHECK(system(cmd) == 0, "mkdir %s", dir);
    char weights[1200];
    snprintf(weights, sizeof weights, "%s/vae.safetensors", dir);
    if (gen_vae(weights, nc->args)) return;

    dt_backend *be = dt_backend_cpu_create();
    vae_model *v = NULL;
    char err[512];
    int rc = vae_load(&v, weights, be, err, sizeof err);
    CHECK(rc == 0, "%s: vae_load: %s", nc->label, err);
    if (rc) { be->destroy(be); return; }
    const vae_config *c = vae_get_config(v);
    int same = c->levels == nc->levels && c->layers_per_block == nc->layers &&
               c->attn_names == (vae_attn_names)nc->attn_names && c->attn_conv == nc->attn_conv &&
               c->in_channels == 3 && c->latent_channels == 4 &&
               c->downsample == 1 << (nc->levels - 1);
    for (int i = 0; i < nc->levels; i++) same = same && c->block_out[i] == nc->block_out[i];
    CHECK(same, "%s: config read as levels %d layers %d attn %d/%d latent %d", nc->label, c->levels,
          c->layers_per_block, (int)c->attn_names, c->attn_conv, c->latent_channels);

    shapes s = shapes_of(v, nc->B, nc->H, nc->W);
    CHECK(vae_reserve(v, nc->B, nc->H > nc->W ? nc->H : nc->W, err, sizeof err) == 0, "%s: %s",
          nc->label, err);
    float *img = malloc(s.n_img * sizeof(float)), *dec = malloc(s.n_img * sizeof(float));
    float *rdec = malloc(s.n_img * sizeof(float));
    float *mean = malloc(s.n_lat * sizeof(float)), *std = malloc(s.n_lat * sizeof(float));
    float *rmean = malloc(s.n_lat * sizeof(float)), *rstd = malloc(s.n_lat * sizeof(float));
    float *z = malloc(s.n_lat * sizeof(float));
    fill_images(img, s.B, s.H, s.W, 1);
    fill_normal(z, s.n_lat, 2, 1.0f);
    rc = run_host(v, be, &s, img, mean, std, z, dec);
    CHECK(rc == 0, "%s: encode/decode returned %d", nc->label, rc);
    if (rc == 0 && python_ok &&
        run_numpy(dir, weights, &s, img, z, rmean, rstd, rdec) == 0) {
        compare("mean", nc->label, mean, rmean, s.n_lat, TOL_F32);
        compare("std", nc->label, std, rstd, s.n_lat, TOL_F32);
        compare("decoded", nc->label, dec, rdec, s.n_img, TOL_F32);
    }
    free(img); free(dec); free(rdec); free(mean); free(std); free(rmean); free(rstd); free(z);
    vae_free(v);
    be->destroy(be);
    remove(weights);
}

/* ---- vae_read_config --------------------------------------------------------------------- */

/* Copies src to dst without tensor `drop` and with tensor `reshape` (if any) given shape
 * (d0, d1) over its first d0*d1 elements, or dtype I32 when as_int, or the bytes of `data`
 * (same dtype and size) when data is not NULL. */
static int rewrite_data(const char *src, const char *dst, const char *drop, const char *reshape,
                        int64_t d0, int64_t d1, int as_int, const void *data) {
    st_file f;
    char err[512];
    if (safetensors_open(&f, src, err, sizeof err)) {
        CHECK(0, "open %s: %s", src, err);
        return -1;
    }
    st_write_tensor *t = calloc((size_t)f.n, sizeof *t);
    int n = 0;
    for (int i = 0; i < f.n; i++) {
        const st_tensor *s = &f.tensors[i];
        if (drop && !strcmp(s->name, drop)) continue;
        t[n].name = s->name;
        t[n].dtype = s->dtype;
        t[n].ndim = s->ndim;
        memcpy(t[n].shape, s->shape, sizeof s->shape);
        t[n].data = f.data + s->offset;
        if (reshape && !strcmp(s->name, reshape)) {
            if (data) {
                t[n].data = data;
            } else if (as_int) {
                t[n].dtype = ST_I32; /* same bytes as F32, another dtype */
            } else {
                t[n].ndim = 2;
                t[n].shape[0] = d0;
                t[n].shape[1] = d1;
            }
        }
        n++;
    }
    int rc = safetensors_write(dst, t, n, NULL, err, sizeof err);
    CHECK(rc == 0, "write %s: %s", dst, err);
    free(t);
    safetensors_close(&f);
    return rc;
}

static int rewrite(const char *src, const char *dst, const char *drop, const char *reshape,
                   int64_t d0, int64_t d1, int as_int) {
    return rewrite_data(src, dst, drop, reshape, d0, d1, as_int, NULL);
}

/* vae_read_config on path: expect failure with a message containing want (or success when want
 * is NULL, filling *cfg). */
static void expect_config(const char *path, const char *want, vae_config *cfg) {
    st_file f;
    char err[512] = "";
    if (safetensors_open(&f, path, err, sizeof err)) {
        CHECK(0, "open %s: %s", path, err);
        return;
    }
    vae_config c;
    int rc = vae_read_config(&f, &c, err, sizeof err);
    if (!want) {
        CHECK(rc == 0, "%s: %s", path, err);
        if (cfg) *cfg = c;
    } else {
        CHECK(rc == -1 && strstr(err, want), "%s: rc %d, message '%s' should name '%s'", path, rc,
              err, want);
    }
    safetensors_close(&f);
}

static void check_read_config(void) {
    char good[1200], bad[1200];
    snprintf(good, sizeof good, "%s/config.safetensors", tmp);
    snprintf(bad, sizeof bad, "%s/bad.safetensors", tmp);
    if (gen_vae(good, "--channels 32,64,96 --layers 3 --attn legacy --dtype f16 --seed 3")) return;
    vae_config c;
    memset(&c, 0, sizeof c);
    expect_config(good, NULL, &c);
    /* parameters: the same layout counted independently from the file's tensors */
    st_file f;
    char err[512];
    size_t total = 0;
    if (safetensors_open(&f, good, err, sizeof err) == 0) {
        for (int i = 0; i < f.n; i++) total += safetensors_numel(&f.tensors[i]);
        safetensors_close(&f);
    }
    CHECK(c.levels == 3 && c.block_out[0] == 32 && c.block_out[1] == 64 && c.block_out[2] == 96 &&
          c.layers_per_block == 3 && c.latent_channels == 4 && c.in_channels == 3 &&
          c.downsample == 4 && c.attn_names == VAE_ATTN_LEGACY && !c.attn_conv &&
          c.num_floats == total && total > 0,
          "config: levels %d (%d %d %d) layers %d latent %d downsample %d attn %d/%d floats %zu "
          "(file %zu)", c.levels, c.block_out[0], c.block_out[1], c.block_out[2],
          c.layers_per_block, c.latent_channels, c.downsample, (int)c.attn_names, c.attn_conv,
          c.num_floats, total);

    if (rewrite(good, bad, "decoder.up_blocks.2.resnets.3.conv2.bias", NULL, 0, 0, 0) == 0)
        expect_config(bad, "decoder.up_blocks.2.resnets.3.conv2.bias", NULL);
    if (rewrite(good, bad, "encoder.mid_block.attentions.0.proj_attn.weight", NULL, 0, 0, 0) == 0)
        expect_config(bad, "encoder.mid_block.attentions.0.proj_attn.weight", NULL);
    if (rewrite(good, bad, "encoder.down_blocks.1.resnets.0.conv_shortcut.weight", NULL, 0, 0, 0) == 0)
        expect_config(bad, "encoder.down_blocks.1.resnets.0.conv_shortcut.weight", NULL);
    /* (96, 96) attention weight stored as (48, 192): same bytes, wrong shape */
    if (rewrite(good, bad, NULL, "decoder.mid_block.attentions.0.key.weight", 48, 192, 0) == 0)
        expect_config(bad, "decoder.mid_block.attentions.0.key.weight", NULL);
    /* a conv weight flattened to 2-d */
    if (rewrite(good, bad, NULL, "encoder.down_blocks.0.downsamplers.0.conv.weight", 32, 288, 0) == 0)
        expect_config(bad, "encoder.down_blocks.0.downsamplers.0.conv.weight", NULL);
    if (rewrite(good, bad, NULL, "post_quant_conv.bias", 0, 0, 1) == 0)
        expect_config(bad, "post_quant_conv.bias", NULL);

    /* a DiT checkpoint is not a VAE */
    float w[2 * 4 * 2 * 2] = {0};
    st_write_tensor dit[1] = {{"x_embedder.proj.weight", ST_F32, 4, {2, 4, 2, 2}, w}};
    CHECK(safetensors_write(bad, dit, 1, NULL, err, sizeof err) == 0, "%s", err);
    expect_config(bad, "not a VAE", NULL);
    dt_backend *be = dt_backend_cpu_create();
    vae_model *v = (vae_model *)&c; /* must be reset to NULL on failure */
    CHECK(vae_load(&v, bad, be, err, sizeof err) == -1 && !v && strstr(err, "not a VAE"),
          "vae_load of a DiT file: %s", err);
    snprintf(bad, sizeof bad, "%s/absent.safetensors", tmp);
    CHECK(vae_load(&v, bad, be, err, sizeof err) == -1 && !v, "vae_load of a missing file");
    be->destroy(be);
    remove(good);
}

/* ---- round trip and reservation limits ---------------------------------------------------- */

static void check_round_trip_and_limits(void) {
    char weights[1200], err[512];
    snprintf(weights, sizeof weights, "%s/small.safetensors", tmp);
    if (gen_vae(weights, "--channels 32,64,64 --layers 1 --seed 9")) return;
    dt_backend *be = dt_backend_cpu_create();
    vae_model *v = NULL;
    int rc = vae_load(&v, weights, be, err, sizeof err);
    CHECK(rc == 0, "vae_load: %s", err);
    if (rc) { be->destroy(be); return; }
    CHECK(vae_get_config(v)->downsample == 4, "downsample %d", vae_get_config(v)->downsample);

    /* limits of vae_reserve */
    CHECK(vae_reserve(v, 0, 16, err, sizeof err) == -1, "a batch of 0 must be refused");
    CHECK(vae_reserve(v, 1, 18, err, sizeof err) == -1 && strstr(err, "multiple of 4"),
          "18 px is not a multiple of 4: %s", err);
    CHECK(vae_reserve(v, 1, 2, err, sizeof err) == -1, "2 px is below one latent cell");
    CHECK(vae_reserve(v, 1 << 20, 16, err, sizeof err) == -1, "a batch of 2^20 must be refused");
    size_t b1 = vae_reserve_bytes(v, 1, 16), b2 = vae_reserve_bytes(v, 2, 16);
    size_t b3 = vae_reserve_bytes(v, 2, 32);
    CHECK(b1 > 0 && b2 > b1 && b3 > 3 * b2, "reserve bytes %zu %zu %zu", b1, b2, b3);
    /* a feature map of 64 channels at 16x16 per image, three of them, at least */
    CHECK(b1 >= 3 * 64 * 16 * 16 * sizeof(float), "reserve bytes %zu too small", b1);
    rc = vae_reserve(v, 4096, 8192, err, sizeof err);
    CHECK(rc == -1 && strstr(err, "bytes"), "an impossible reservation: rc %d, '%s'", rc, err);

    shapes s = shapes_of(v, 2, 16, 16);
    float *img = malloc(s.n_img * sizeof(float)), *dec = malloc(s.n_img * sizeof(float));
    float *dec2 = malloc(s.n_img * sizeof(float));
    float *mean = malloc(s.n_lat * sizeof(float)), *std = malloc(s.n_lat * sizeof(float));
    float *mean2 = malloc(s.n_lat * sizeof(float)), *std2 = malloc(s.n_lat * sizeof(float));
    fill_images(img, 2, 16, 16, 5);
    CHECK(run_host(v, be, &s, img, mean, std, NULL, NULL) == -1,
          "encode without a reservation must fail (after a failed vae_reserve)");
    CHECK(vae_reserve(v, 2, 16, err, sizeof err) == 0, "%s", err);

    /* round trip: encode, decode the posterior mean */
    CHECK(run_host(v, be, &s, img, mean, std, mean, dec) == 0, "round trip");
    CHECK(all_finite(mean, s.n_lat) && all_finite(std, s.n_lat) && all_finite(dec, s.n_img),
          "non-finite values in the round trip");
    int std_pos = 1;
    for (size_t i = 0; i < s.n_lat; i++) std_pos &= std[i] > 0;
    CHECK(std_pos, "std must be positive");
    /* determinism: bit-identical on a second run */
    CHECK(run_host(v, be, &s, img, mean2, std2, mean, dec2) == 0, "second run");
    CHECK(!memcmp(mean, mean2, s.n_lat * sizeof(float)) && !memcmp(std, std2, s.n_lat * sizeof(float)) &&
          !memcmp(dec, dec2, s.n_img * sizeof(float)), "encode/decode are not deterministic");
    /* batch independence: image 1 alone gives what it gave in the batch */
    shapes s1 = shapes_of(v, 1, 16, 16);
    CHECK(run_host(v, be, &s1, img + s1.n_img, mean2, std2, mean + s1.n_lat, dec2) == 0, "single");
    size_t worst;
    CHECK(check_norm_err(mean2, mean + s1.n_lat, s1.n_lat, &worst) < 1e-5 &&
          check_norm_err(std2, std + s1.n_lat, s1.n_lat, &worst) < 1e-5 &&
          check_norm_err(dec2, dec + s1.n_img, s1.n_img, &worst) < 1e-5,
          "the second image's results depend on the first image of the batch");
    /* the output depends on the input: the two images differ, so do their latents and decodes */
    CHECK(check_norm_err(mean, mean + s1.n_lat, s1.n_lat, &worst) > 1e-2 &&
          check_norm_err(dec, dec + s1.n_img, s1.n_img, &worst) > 1e-2,
          "different images give the same latents or decodes");

    /* outside the reservation: refused without computing */
    shapes s3 = shapes_of(v, 3, 16, 16);
    float *big = calloc(s3.n_img, sizeof(float)), *bm = calloc(s3.n_lat, sizeof(float));
    float *bs = calloc(s3.n_lat, sizeof(float));
    CHECK(run_host(v, be, &s3, big, bm, bs, NULL, NULL) == -1, "batch 3 over a reservation of 2");
    shapes s20 = shapes_of(v, 1, 20, 16);
    CHECK(run_host(v, be, &s20, big, bm, bs, NULL, NULL) == -1, "20 px over a reservation of 16");
    shapes s14 = shapes_of(v, 1, 14, 16);
    CHECK(run_host(v, be, &s14, big, bm, bs, NULL, NULL) == -1, "14 px is not a multiple of 4");
    /* a larger reservation reallocates; a smaller one keeps it; results do not change */
    CHECK(vae_reserve(v, 3, 32, err, sizeof err) == 0, "%s", err);
    CHECK(vae_reserve(v, 1, 8, err, sizeof err) == 0, "%s", err);
    CHECK(run_host(v, be, &s3, big, bm, bs, NULL, NULL) == 0, "batch 3 after growing");
    CHECK(run_host(v, be, &s, img, mean2, std2, mean, dec2) == 0, "after growing");
    CHECK(check_norm_err(mean2, mean, s.n_lat, &worst) < 1e-6 && check_norm_err(dec2, dec, s.n_img, &worst) < 1e-6,
          "results changed with the reservation");
    /* non-square images within the reservation */
    shapes sr = shapes_of(v, 1, 32, 8);
    CHECK(run_host(v, be, &sr, big, bm, bs, bm, big) == 0 && all_finite(big, sr.n_img),
          "32x8 image in a 32 px reservation");

    free(img); free(dec); free(dec2); free(mean); free(std); free(mean2); free(std2);
    free(big); free(bm); free(bs);
    vae_free(v);
    vae_free(NULL);

    /* the logvar clamp to [-30, 20]: quant_conv biases far outside it on the logvar channels */
    char clamped[1200];
    snprintf(clamped, sizeof clamped, "%s/clamped.safetensors", tmp);
    const float bias[8] = {0.1f, -0.1f, 0.2f, 0.0f, 500.0f, 500.0f, -500.0f, -500.0f};
    v = NULL;
    if (rewrite_data(weights, clamped, NULL, "quant_conv.bias", 0, 0, 0, bias) == 0 &&
        vae_load(&v, clamped, be, err, sizeof err) == 0 && vae_reserve(v, 1, 8, err, sizeof err) == 0) {
        shapes sc = shapes_of(v, 1, 8, 8);
        float cimg[3 * 8 * 8], cm[4 * 2 * 2], cs[4 * 2 * 2];
        fill_images(cimg, 1, 8, 8, 6);
        CHECK(run_host(v, be, &sc, cimg, cm, cs, NULL, NULL) == 0, "clamp run");
        int ok = 1;
        for (int i = 0; i < 8; i++) {
            /* latent channels 0, 1 from logvar 500 (clamped to 20), 2, 3 from -500 (to -30) */
            ok &= fabsf(cs[i] / (VAE_SCALE * expf(10.0f)) - 1.0f) <= 1e-5f;
            ok &= fabsf(cs[8 + i] / (VAE_SCALE * expf(-15.0f)) - 1.0f) <= 1e-5f;
        }
        CHECK(ok, "std must be 0.18215 exp(0.5 clamp(logvar, -30, 20)): got %g and %g "
              "(want %g and %g)", (double)cs[0], (double)cs[8], (double)(VAE_SCALE * expf(10.0f)),
              (double)(VAE_SCALE * expf(-15.0f)));
    } else {
        CHECK(0, "clamp file: %s", err);
    }
    vae_free(v);
    be->destroy(be);
    remove(weights);
    remove(clamped);
}

/* ---- committed PyTorch fixtures ------------------------------------------------------------ */

/* Reads tensor name of f into a malloc'd float array of n elements (NULL, reported, if not). */
static float *fixture_tensor(const st_file *f, const char *name, size_t n) {
    float *x = malloc(n * sizeof(float));
    char err[512];
    if (safetensors_read_f32(f, name, x, n, err, sizeof err)) {
        CHECK(0, "fixture: %s", err);
        free(x);
        return NULL;
    }
    return x;
}

static void check_torch_fixture(const char *file) {
    const char *src = getenv("DIFFTUNE_SOURCE");
    char path[1200], err[512];
    snprintf(path, sizeof path, "%s/tests/fixtures/%s", src ? src : ".", file);
    st_file fx;
    if (safetensors_open(&fx, path, err, sizeof err)) {
        CHECK(0, "fixture %s: %s", path, err);
        return;
    }
    const char *args = safetensors_meta(&fx, "gen_vae_args");
    const char *sum_s = safetensors_meta(&fx, "weights_sum"), *sq_s = safetensors_meta(&fx, "weights_sumsq");
    const st_tensor *ti = safetensors_find(&fx, "images");
    CHECK(args && sum_s && sq_s && ti && ti->ndim == 4, "%s: incomplete fixture", file);
    if (!args || !sum_s || !sq_s || !ti || ti->ndim != 4) { safetensors_close(&fx); return; }
    char weights[1200];
    snprintf(weights, sizeof weights, "%s/torch_weights.safetensors", tmp);
    if (gen_vae(weights, args)) { safetensors_close(&fx); return; }

    /* the regenerated weights are the ones the fixture was made from */
    st_file wf;
    double sum = 0, sumsq = 0;
    if (safetensors_open(&wf, weights, err, sizeof err) == 0) {
        for (int i = 0; i < wf.n; i++) {
            size_t n = safetensors_numel(&wf.tensors[i]);
            float *x = fixture_tensor(&wf, wf.tensors[i].name, n);
            for (size_t j = 0; x && j < n; j++) {
                sum += x[j];
                sumsq += (double)x[j] * x[j];
            }
            free(x);
        }
        safetensors_close(&wf);
    }
    double want_sum = atof(sum_s), want_sq = atof(sq_s);
    CHECK(fabs(sum - want_sum) <= 1e-9 * want_sq && fabs(sumsq - want_sq) <= 1e-9 * want_sq,
          "%s: gen_vae %s no longer makes the fixture's weights (sum %.17g vs %.17g, sum of "
          "squares %.17g vs %.17g)", file, args, sum, want_sum, sumsq, want_sq);

    dt_backend *be = dt_backend_cpu_create();
    vae_model *v = NULL;
    int rc = vae_load(&v, weights, be, err, sizeof err);
    CHECK(rc == 0, "%s: %s", file, err);
    if (rc == 0) {
        int B = (int)ti->shape[0], H = (int)ti->shape[2], W = (int)ti->shape[3];
        shapes s = shapes_of(v, B, H, W);
        float *img = fixture_tensor(&fx, "images", s.n_img), *z = fixture_tensor(&fx, "latents", s.n_lat);
        float *rmean = fixture_tensor(&fx, "mean", s.n_lat), *rstd = fixture_tensor(&fx, "std", s.n_lat);
        float *rdec = fixture_tensor(&fx, "decoded", s.n_img);
        float *mean = malloc(s.n_lat * sizeof(float)), *std = malloc(s.n_lat * sizeof(float));
        float *dec = malloc(s.n_img * sizeof(float));
        CHECK(vae_reserve(v, B, H > W ? H : W, err, sizeof err) == 0, "%s", err);
        if (img && z && rmean && rstd && rdec &&
            run_host(v, be, &s, img, mean, std, z, dec) == 0) {
            compare("mean", file, mean, rmean, s.n_lat, TOL_TORCH);
            compare("std", file, std, rstd, s.n_lat, TOL_TORCH);
            compare("decoded", file, dec, rdec, s.n_img, TOL_TORCH);
        } else {
            CHECK(0, "%s: could not run the fixture", file);
        }
        free(img); free(z); free(rmean); free(rstd); free(rdec); free(mean); free(std); free(dec);
        vae_free(v);
    }
    be->destroy(be);
    safetensors_close(&fx);
    remove(weights);
}

int main(void) {
    tmp = check_tmpdir("test_vae");
    int python_ok = ref_python_ready();
    static const numpy_case cases[] = {
        /* the published widths, each file format; images kept small for the sanitizer build */
        {"published_f32", "--seed 1", 2, 16, 16, 4, 2, VAE_ATTN_DIFFUSERS, 0, {128, 256, 512, 512}},
        {"published_f16_legacy_conv", "--seed 1 --dtype f16 --attn legacy --attn-conv", 1, 16, 16,
         4, 2, VAE_ATTN_LEGACY, 1, {128, 256, 512, 512}},
        {"published_bf16_conv", "--seed 2 --dtype bf16 --attn-conv", 1, 8, 8, 4, 2,
         VAE_ATTN_DIFFUSERS, 1, {128, 256, 512, 512}},
        /* a narrow VAE at a non-square size: catches H/W mix-ups */
        {"narrow_nonsquare", "--seed 4 --channels 32,64 --layers 1", 2, 12, 6, 2, 1,
         VAE_ATTN_DIFFUSERS, 0, {32, 64}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_numpy_case(&cases[i], python_ok);
    check_read_config();
    check_round_trip_and_limits();
    check_torch_fixture("vae_torch_small.safetensors");
    check_torch_fixture("vae_torch_published.safetensors");
    return check_done("test_vae");
}
