/* test_inception_gpu.c — the GPU FID Inception (kernels/cuda/cuda_inception.h, reached through
 * inception_use_device) checked against the CPU forward pass (engine/inception.c).
 *
 * On random weights (inception_write_random_weights), one printed line per check:
 *   cpu-vs-gpu   features of RGB 32x32 and 299x299 images and grey 40x52 ones on both; the
 *                normalised max error max|gpu - cpu| / max|cpu| must stay under 1e-4 (fp32 on
 *                both sides: the CPU's own error against a float64 reference is ~2e-7, while TF32
 *                convolutions would show ~1e-3).
 *   determinism  the same GPU call twice gives the same bits.
 *   chunking     5 images at once against one by one, and 70 (chunks of 64 and 6) against calls of
 *                10: within 1e-5 (cuDNN may pick another algorithm for another batch size, so
 *                bits may differ; a chunking bug shows as O(1)).
 *   spread       features of two different images differ by far more than the bounds, so the
 *                comparisons can fail.
 *   cpu again    inception_use_device("cpu") gives back the CPU features bit for bit.
 * Exit status: 0 all passed, 1 a check failed, 2 bad usage or setup, 77 skipped (a build
 * without the CUDA backend or cuDNN, or no CUDA device).
 *
 * usage: test_inception_gpu [--dev cuda:N]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "inception.h"
#include "philox.h"
#if defined(DIFFTUNE_HAVE_CUDA) && defined(DIFFTUNE_HAVE_CUDNN)
#include "cuda_backend.h"
#endif

#define F INCEPTION_FEATURES
#define BOUND_CPU 1e-4   /* GPU against CPU */
#define BOUND_CHUNK 1e-5 /* GPU against GPU in other batch sizes */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* n images (C, H, W) uniform in [-1, 1] from stream. */
static float *random_images(int n, int C, int H, int W, uint64_t stream) {
    size_t len = (size_t)n * C * H * W;
    float *x = malloc(len * sizeof(float));
    for (size_t i = 0; i < len; i++)
        x[i] = 2.0f * dt_philox_unit(dt_philox_words(77, stream, i).v[0]) - 1.0f;
    return x;
}

/* max|a - b| / (max|b| + 1e-6) over n values; a NaN or Inf counts as infinite. Prints one line
 * and records a check against bound. */
static void compare(const char *what, const float *a, const float *b, size_t n, double bound) {
    double e = 0, rms = 0, scale = 0;
    size_t worst = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!isfinite(a[i]) || !isfinite(b[i])) d = INFINITY;
        if (d > e) { e = d; worst = i; }
        rms += d * d;
        scale = fmax(scale, fabs((double)b[i]));
    }
    const double norm = e / (scale + 1e-6), norm_rms = sqrt(rms / n) / (scale + 1e-6);
    const int ok = norm <= bound;
    printf("%-44s max %.3e  rms %.3e  bound %.0e  %s\n", what, norm, norm_rms, bound,
           ok ? "PASS" : "FAIL");
    CHECK(ok, "%s: normalised error %.3g > %g (worst: image %zu feature %zu, %.9g vs %.9g)", what,
          norm, bound, worst / F, worst % F, (double)a[worst], (double)b[worst]);
}

/* 1 when the build has the GPU Inception and the driver reports a device, else 0 and why. */
static int gpu_available(char *why, size_t len) {
#if defined(DIFFTUNE_HAVE_CUDA) && defined(DIFFTUNE_HAVE_CUDNN)
    return dt_cuda_device_count(why, len) > 0;
#else
    snprintf(why, len, "this build has no GPU Inception (it needs the CUDA backend and cuDNN 8+ "
             "found by CMake)");
    return 0;
#endif
}

typedef struct {
    const char *name;
    int n, C, H, W;
} image_case;

static const image_case CASES[] = {
    {"rgb 32x32", 3, 3, 32, 32},    /* upsampled, the usual FID input of small models */
    {"rgb 299x299", 2, 3, 299, 299}, /* no resize: source pixels exactly on the grid */
    {"grey 40x52", 2, 1, 40, 52},    /* one channel fed to three, non-square */
};
#define NCASES ((int)(sizeof CASES / sizeof CASES[0]))

int main(int argc, char **argv) {
    const char *dev = "cuda:0";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--dev") && i + 1 < argc) dev = argv[++i];
        else {
            fprintf(stderr, "usage: test_inception_gpu [--dev cuda:N]\n");
            return 2;
        }
    }
    char why[256];
    if (!gpu_available(why, sizeof why)) {
        printf("test_inception_gpu: skipped: %s\n", why);
        return 77;
    }
    char err[1024];
    const char *dir = check_tmpdir("test_inception_gpu");
    const char *weights = check_path(dir, "weights.safetensors");
    dt_inception *net = NULL;
    if (inception_write_random_weights(weights, 11, err, sizeof err) ||
        inception_load(&net, weights, err, sizeof err)) {
        fprintf(stderr, "test_inception_gpu: %s\n", err);
        return 2;
    }

    /* CPU features of every case first. */
    float *img[NCASES], *cpu[NCASES], *gpu[NCASES];
    for (int c = 0; c < NCASES; c++) {
        const image_case *k = &CASES[c];
        img[c] = random_images(k->n, k->C, k->H, k->W, (uint64_t)c);
        cpu[c] = malloc(sizeof(float) * k->n * F);
        gpu[c] = malloc(sizeof(float) * k->n * F);
        if (inception_features(net, img[c], k->n, k->C, k->H, k->W, cpu[c], err, sizeof err)) {
            fprintf(stderr, "test_inception_gpu: CPU features: %s\n", err);
            return 2;
        }
    }

    double t0 = now_s();
    int rc = inception_use_device(net, dev, err, sizeof err);
    CHECK(rc == 0, "inception_use_device(%s): %s", dev, err);
    CHECK(!strcmp(inception_device(net), rc == 0 ? dev : "cpu"), "inception_device says %s",
          inception_device(net));
    printf("inception_use_device(%s): %s in %.2f s (upload, algorithm choice, test image)\n", dev,
           rc == 0 ? "ok" : err, now_s() - t0);
    if (rc) {
        inception_free(net);
        return check_done("test_inception_gpu");
    }

    /* cpu-vs-gpu */
    char what[96];
    for (int c = 0; c < NCASES; c++) {
        const image_case *k = &CASES[c];
        rc = inception_features(net, img[c], k->n, k->C, k->H, k->W, gpu[c], err, sizeof err);
        CHECK(rc == 0, "GPU features (%s): %s", k->name, err);
        snprintf(what, sizeof what, "cpu-vs-gpu  %s, n=%d", k->name, k->n);
        if (rc == 0) compare(what, gpu[c], cpu[c], (size_t)k->n * F, BOUND_CPU);
    }

    /* spread: the bounds are far below what separates two images */
    double diff = 0, scale = 0;
    for (int i = 0; i < F; i++) {
        diff = fmax(diff, fabs((double)cpu[0][i] - cpu[0][F + i]));
        scale = fmax(scale, fabs((double)cpu[0][i]));
    }
    printf("%-44s %.3e of the scale (must be > 1e-2)\n", "spread      two rgb 32x32 images",
           diff / scale);
    CHECK(diff > 1e-2 * scale, "two different images give features only %.3g apart", diff / scale);

    /* determinism */
    float *again = malloc(sizeof(float) * CASES[0].n * F);
    rc = inception_features(net, img[0], CASES[0].n, 3, 32, 32, again, err, sizeof err);
    const int same = rc == 0 && !memcmp(again, gpu[0], sizeof(float) * CASES[0].n * F);
    CHECK(same, "determinism: the same GPU call twice differs (%s)", rc ? err : "bits");
    printf("%-44s %s\n", "determinism same call twice", same ? "PASS (bit-identical)" : "FAIL");
    free(again);

    /* chunking: 5 at once vs one by one; 70 at once (64 + 6) vs calls of 10 */
    const int counts[2] = {5, 70}, steps[2] = {1, 10};
    for (int t = 0; t < 2; t++) {
        const int n = counts[t], step = steps[t];
        float *x = random_images(n, 3, 32, 32, 100 + (uint64_t)t);
        float *all = malloc(sizeof(float) * n * F), *parts = malloc(sizeof(float) * n * F);
        t0 = now_s();
        rc = inception_features(net, x, n, 3, 32, 32, all, err, sizeof err);
        const double seconds = now_s() - t0;
        for (int i = 0; i < n && rc == 0; i += step)
            rc = inception_features(net, x + (size_t)i * 3 * 32 * 32, step, 3, 32, 32,
                                    parts + (size_t)i * F, err, sizeof err);
        CHECK(rc == 0, "chunking: %s", err);
        snprintf(what, sizeof what, "chunking    n=%d at once vs %d at a time", n, step);
        if (rc == 0) compare(what, all, parts, (size_t)n * F, BOUND_CHUNK);
        if (t == 1 && rc == 0)
            printf("  (%d images in %.3f s on %s: %.0f images/s, first call of this size)\n", n,
                   seconds, dev, n / seconds);
        free(x); free(all); free(parts);
    }

    /* cpu again: the GPU released, the CPU pass unchanged */
    float *back = malloc(sizeof(float) * CASES[0].n * F);
    rc = inception_use_device(net, "cpu", err, sizeof err) ||
         inception_features(net, img[0], CASES[0].n, 3, 32, 32, back, err, sizeof err);
    CHECK(rc == 0 && !strcmp(inception_device(net), "cpu"), "back to the CPU: %s", err);
    const int restored = rc == 0 && !memcmp(back, cpu[0], sizeof(float) * CASES[0].n * F);
    CHECK(restored, "back on the CPU, the features differ from the CPU's before");
    printf("%-44s %s\n", "cpu again   rgb 32x32 after use_device(cpu)",
           restored ? "PASS (bit-identical)" : "FAIL");
    free(back);

    for (int c = 0; c < NCASES; c++) { free(img[c]); free(cpu[c]); free(gpu[c]); }
    inception_free(net);
    return check_done("test_inception_gpu");
}
