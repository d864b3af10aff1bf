/* test_vae_gpu.c — the SD VAE (engine/vae.c) on a device backend checked against the CPU backend,
 * on weights in the published layout and widths made by tests/tools/gen_vae.
 *
 * One printed line per check, with the normalised errors max|dev - cpu| / (max|cpu| + 1e-6)
 * (rms alongside):
 *   fp32        encode (mean, std) of 3 images at 64x64 and decode of 3 latents at 8x8; a 32x64
 *               non-square image; bound 1e-4 (the CPU is ~1e-6 from float64 numpy in
 *               tests/test_vae.c; TF32 convolutions would show ~1e-3).
 *   bf16        the same with the device's matrix products in bf16; bound 5e-2.
 *   determinism the same device call twice: bit-identical.
 *   spread      two different images' latents and decodes differ by more than 1e-2, so the bounds
 *               can fail.
 *   256 px      a batch of 4 images at 256x256 (the DiT-XL/2 setting) encoded and decoded on the
 *               device; image 0 against the CPU (bound 1e-4); images per second printed.
 * Exit status: 0 all passed, 1 a check failed, 2 bad usage or setup, 77 skipped (no device).
 *
 * usage: test_vae_gpu [--dev cuda:N] [--gen-vae PATH] [--skip-256]
 * PATH defaults to $DIFFTUNE_GEN_VAE. --dev cpu runs the device side on a second CPU backend, to
 * try the test without a GPU (with --skip-256 it takes a minute on two cores).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "philox.h"
#include "vae.h"

#define BOUND_FP32 1e-4
#define BOUND_BF16 5e-2

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static float *random_floats(size_t n, uint64_t stream, int uniform) {
    float *x = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        x[i] = uniform ? 2.0f * dt_philox_unit(dt_philox_words(91, stream, i).v[0]) - 1.0f
                       : dt_philox_normal(91, stream, i);
    return x;
}

/* max|a - b| / (max|b| + 1e-6); NaN or Inf is infinite. Prints a line; checks against bound
 * (bound < 0: the error must exceed -bound instead). */
static void compare(const char *what, const float *a, const float *b, size_t n, double bound) {
    double e = 0, rms = 0, scale = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!isfinite(a[i]) || !isfinite(b[i])) d = INFINITY;
        e = fmax(e, d);
        rms += d * d;
        scale = fmax(scale, fabs((double)b[i]));
    }
    const double norm = e / (scale + 1e-6), norm_rms = sqrt(rms / (double)n) / (scale + 1e-6);
    const int ok = bound >= 0 ? norm <= bound : norm > -bound;
    printf("%-40s max %.3e  rms %.3e  %s %.0e  %s\n", what, norm, norm_rms, bound >= 0 ? "<=" : ">",
           fabs(bound), ok ? "PASS" : "FAIL");
    CHECK(ok, "%s: normalised error %.3g against bound %g", what, norm, bound);
}

typedef struct {
    dt_backend *be;
    vae_model *v;
} side;

/* Encodes n_img floats of images (B, 3, H, W) and decodes z (B, 4, H/8, W/8) on s; host in/out.
 * Returns 0 or the failing call's status; *secs gets the time of encode + decode. */
static int run(side *s, int B, int H, int W, const float *img, const float *z, float *mean,
               float *std, float *dec, double *secs) {
    dt_backend *be = s->be;
    const size_t n_img = (size_t)B * 3 * H * W, n_lat = (size_t)B * 4 * (H / 8) * (W / 8);
    float *d_img = be->alloc(be, n_img * 4), *d_dec = be->alloc(be, n_img * 4);
    float *d_mean = be->alloc(be, n_lat * 4), *d_std = be->alloc(be, n_lat * 4);
    float *d_z = be->alloc(be, n_lat * 4);
    int rc = !d_img || !d_dec || !d_mean || !d_std || !d_z ? -1 : 0;
    if (rc == 0) {
        be->upload(be, d_img, img, n_img * 4);
        be->upload(be, d_z, z, n_lat * 4);
        rc = be->sync(be);
    }
    double t0 = now_s();
    if (rc == 0) rc = vae_encode(s->v, d_img, B, H, W, d_mean, d_std);
    if (rc == 0) rc = vae_decode(s->v, d_z, B, H / 8, W / 8, d_dec);
    if (secs) *secs = now_s() - t0;
    if (rc == 0) {
        be->download(be, mean, d_mean, n_lat * 4);
        be->download(be, std, d_std, n_lat * 4);
        be->download(be, dec, d_dec, n_img * 4);
        rc = be->sync(be);
    }
    if (d_img) be->free(be, d_img);
    if (d_dec) be->free(be, d_dec);
    if (d_mean) be->free(be, d_mean);
    if (d_std) be->free(be, d_std);
    if (d_z) be->free(be, d_z);
    CHECK(rc == 0, "%s: encode/decode of %d images %dx%d failed (%d): %s", be->name, B, H, W, rc,
          be->last_error ? be->last_error(be) : "");
    return rc;
}

/* Device against CPU for B images of H x W; label names the case. */
static void check_case(side *cpu, side *dev, const char *label, int B, int H, int W, double bound,
                       uint64_t stream) {
    const size_t n_img = (size_t)B * 3 * H * W, n_lat = (size_t)B * 4 * (H / 8) * (W / 8);
    float *img = random_floats(n_img, stream, 1), *z = random_floats(n_lat, stream + 1, 0);
    float *m[2], *s[2], *d[2];
    for (int i = 0; i < 2; i++) {
        m[i] = malloc(n_lat * 4);
        s[i] = malloc(n_lat * 4);
        d[i] = malloc(n_img * 4);
    }
    if (run(cpu, B, H, W, img, z, m[0], s[0], d[0], NULL) == 0 &&
        run(dev, B, H, W, img, z, m[1], s[1], d[1], NULL) == 0) {
        char what[96];
        snprintf(what, sizeof what, "%s mean", label);
        compare(what, m[1], m[0], n_lat, bound);
        snprintf(what, sizeof what, "%s std", label);
        compare(what, s[1], s[0], n_lat, bound);
        snprintf(what, sizeof what, "%s decoded", label);
        compare(what, d[1], d[0], n_img, bound);
    }
    for (int i = 0; i < 2; i++) { free(m[i]); free(s[i]); free(d[i]); }
    free(img);
    free(z);
}

int main(int argc, char **argv) {
    const char *dev_name = "cuda:0", *gen = getenv("DIFFTUNE_GEN_VAE");
    int skip_256 = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--dev") && i + 1 < argc) dev_name = argv[++i];
        else if (!strcmp(argv[i], "--skip-256")) skip_256 = 1;
        else if (!strcmp(argv[i], "--gen-vae") && i + 1 < argc) gen = argv[++i];
        else {
            fprintf(stderr, "usage: test_vae_gpu [--dev cuda:N] [--gen-vae PATH] [--skip-256]\n");
            return 2;
        }
    }
    char err[1024];
    side dev = {dt_backend_create(dev_name, err, sizeof err), NULL};
    if (!dev.be) {
        printf("test_vae_gpu: skipped: %s\n", err);
        return 77;
    }
    if (!gen || !gen[0]) {
        fprintf(stderr, "test_vae_gpu: give --gen-vae or DIFFTUNE_GEN_VAE (tests/tools/gen_vae)\n");
        return 2;
    }
    const char *dir = check_tmpdir("test_vae_gpu");
    const char *weights = check_path(dir, "vae.safetensors");
    char cmd[2600];
    snprintf(cmd, sizeof cmd, "'%s' --out '%s' --seed 1 > /dev/null", gen, weights);
    side cpu = {dt_backend_cpu_create(), NULL};
    if (system(cmd) != 0 || vae_load(&cpu.v, weights, cpu.be, err, sizeof err) ||
        vae_load(&dev.v, weights, dev.be, err, sizeof err) ||
        vae_reserve(cpu.v, 4, 256, err, sizeof err) || vae_reserve(dev.v, 4, 256, err, sizeof err)) {
        fprintf(stderr, "test_vae_gpu: setup: %s (%s)\n", err, cmd);
        return 2;
    }
    printf("test_vae_gpu: %s against cpu, %zu-parameter VAE\n", dev.be->name,
           vae_get_config(dev.v)->num_floats);

    dev.be->precision = DT_PRECISION_FP32;
    check_case(&cpu, &dev, "fp32 3x64x64", 3, 64, 64, BOUND_FP32, 1);
    check_case(&cpu, &dev, "fp32 1x32x64", 1, 32, 64, BOUND_FP32, 3);
    dev.be->precision = DT_PRECISION_BF16;
    check_case(&cpu, &dev, "bf16 3x64x64", 3, 64, 64, BOUND_BF16, 1);
    dev.be->precision = DT_PRECISION_FP32;

    /* determinism and spread on the device */
    const int B = 2, H = 64;
    const size_t n_img = (size_t)B * 3 * H * H, n_lat = (size_t)B * 4 * (H / 8) * (H / 8);
    float *img = random_floats(n_img, 5, 1), *z = random_floats(n_lat, 6, 0);
    float *m0 = malloc(n_lat * 4), *s0 = malloc(n_lat * 4), *d0 = malloc(n_img * 4);
    float *m1 = malloc(n_lat * 4), *s1 = malloc(n_lat * 4), *d1 = malloc(n_img * 4);
    if (run(&dev, B, H, H, img, z, m0, s0, d0, NULL) == 0 &&
        run(&dev, B, H, H, img, z, m1, s1, d1, NULL) == 0) {
        int same = !memcmp(m0, m1, n_lat * 4) && !memcmp(s0, s1, n_lat * 4) && !memcmp(d0, d1, n_img * 4);
        printf("%-40s %s\n", "determinism (same call twice)", same ? "PASS" : "FAIL");
        CHECK(same, "the device's encode/decode is not deterministic");
        compare("spread: latents of two images", m0, m0 + n_lat / 2, n_lat / 2, -1e-2);
        compare("spread: decodes of two latents", d0, d0 + n_img / 2, n_img / 2, -1e-2);
    }
    free(img); free(z); free(m0); free(s0); free(d0); free(m1); free(s1); free(d1);

    /* 256 px: the batch on the device, image 0 on the CPU */
    const int BB = 4, S = 256;
    const size_t ni = (size_t)BB * 3 * S * S, nl = (size_t)BB * 4 * (S / 8) * (S / 8);
    float *bimg = random_floats(ni, 7, 1), *bz = random_floats(nl, 8, 0);
    float *bm = malloc(nl * 4), *bs = malloc(nl * 4), *bd = malloc(ni * 4);
    float *cm = malloc(nl / BB * 4), *cs = malloc(nl / BB * 4), *cd = malloc(ni / BB * 4);
    double secs = 0, warm = 0;
    if (!skip_256 && run(&dev, BB, S, S, bimg, bz, bm, bs, bd, &warm) == 0 &&
        run(&dev, BB, S, S, bimg, bz, bm, bs, bd, &secs) == 0 &&
        run(&cpu, 1, S, S, bimg, bz, cm, cs, cd, NULL) == 0) {
        printf("256 px on %s: %d images encoded and decoded in %.3f s (%.1f images/s; first call "
               "%.3f s)\n", dev.be->name, BB, secs, BB / secs, warm);
        compare("256px image 0 mean", bm, cm, nl / BB, BOUND_FP32);
        compare("256px image 0 std", bs, cs, nl / BB, BOUND_FP32);
        compare("256px image 0 decoded", bd, cd, ni / BB, BOUND_FP32);
    }
    free(bimg); free(bz); free(bm); free(bs); free(bd); free(cm); free(cs); free(cd);

    vae_free(cpu.v);
    vae_free(dev.v);
    cpu.be->destroy(cpu.be);
    dev.be->destroy(dev.be);
    remove(weights);
    return check_done("test_vae_gpu");
}
