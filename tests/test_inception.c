/* test_inception.c — the FID Inception-v3 forward pass (engine/inception.c).
 *
 * Operators against hand-computed values and a naive convolution loop; on random weights
 * (inception_write_random_weights): output shape, finiteness and spread, bit-exact determinism
 * across calls, batching and thread counts, the resize path (other sizes, grey images), load
 * errors naming the tensor, inception_use_device's refusals and CPU fallback; and the
 * features of two 32x32 images against the independent float64 numpy network
 * tests/ref_inception.py (written from pytorch-fid and torchvision), to 1e-3 of the feature
 * scale. Environment: DIFFTUNE_SOURCE (repo root), DIFFTUNE_PYTHON (an interpreter with numpy;
 * default /usr/bin/python3), DIFFTUNE_TEST_TMP. A failing reference is a failure, not a skip.
 */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ref_python.h"
#include "inception.h"
#include "inception_ops.h"
#include "philox.h"
#include "safetensors.h"

#define F INCEPTION_FEATURES
#define REF_TOL 1e-3

/* max |a - b| / max(|b|) over n values. */
static double rel_diff(const float *a, const float *b, size_t n) {
    double e = 0, s = 0;
    for (size_t i = 0; i < n; i++) {
        e = fmax(e, fabs((double)a[i] - b[i]));
        s = fmax(s, fabs((double)b[i]));
    }
    return e / fmax(s, 1e-30);
}

/* n images (C, H, W) uniform in [-1, 1] from stream. */
static float *random_images(int n, int C, int H, int W, uint64_t stream) {
    size_t len = (size_t)n * C * H * W;
    float *x = malloc(len * sizeof(float));
    for (size_t i = 0; i < len; i++)
        x[i] = 2.0f * dt_philox_unit(dt_philox_words(99, stream, i).v[0]) - 1.0f;
    return x;
}

/* ---- operators ---------------------------------------------------------------------------- */

static void test_resize(void) {
    /* PyTorch F.interpolate(bilinear, align_corners=False) of [[0,1],[2,3]] to 4x4; the engine
     * -> [0,1] -> engine mapping is affine, so the expected values are the plain interpolation. */
    const float in[4] = {0, 1, 2, 3};
    const float want[16] = {0, 0.25f, 0.75f, 1, 0.5f, 0.75f, 1.25f, 1.5f,
                            1.5f, 1.75f, 2.25f, 2.5f, 2, 2.25f, 2.75f, 3};
    float out[16];
    inception_op_resize(in, 2, 2, out, 4, 4);
    for (int i = 0; i < 16; i++) CHECK_CLOSE(out[i], want[i], 1e-6, "resize 2x2->4x4");
    /* 3 -> 5: sources 0 (clamped), 0.4, 1.0, 1.6, 2.2 (upper neighbour clamped to the edge). */
    const float row[3] = {0.1f, 0.2f, 0.4f}, want5[5] = {0.1f, 0.14f, 0.2f, 0.32f, 0.4f};
    float out5[5];
    inception_op_resize(row, 1, 3, out5, 1, 5);
    for (int i = 0; i < 5; i++) CHECK_CLOSE(out5[i], want5[i], 1e-6, "resize 1x3->1x5");
    /* 4 -> 2: sources 0.5 and 2.5, means of neighbouring pairs. */
    const float row4[4] = {0, 0.25f, -0.5f, 0.75f}, want2[2] = {0.125f, 0.125f};
    inception_op_resize(row4, 1, 4, out5, 1, 2);
    for (int i = 0; i < 2; i++) CHECK_CLOSE(out5[i], want2[i], 1e-6, "resize 1x4->1x2");
    /* Same size: the identity. */
    float *img = random_images(1, 1, 7, 5, 1), same[35];
    inception_op_resize(img, 7, 5, same, 7, 5);
    CHECK(rel_diff(same, img, 35) < 1e-6, "resize to the same size is not the identity");
    free(img);
}

static void test_pools(void) {
    float a[9], out[9];
    for (int i = 0; i < 9; i++) a[i] = (float)(i + 1);
    /* count_include_pad=False: corner (1+2+4+5)/4, edge (1..6)/6, centre 5. */
    const float want_avg[9] = {3, 3.5f, 4, 4.5f, 5, 5.5f, 6, 6.5f, 7};
    inception_op_avgpool3(a, 1, 3, 3, out);
    for (int i = 0; i < 9; i++) CHECK_CLOSE(out[i], want_avg[i], 1e-6, "avg pool exclude pad");
    /* Max pool padding is -inf, never 0, even on negative inputs. */
    for (int i = 0; i < 9; i++) a[i] = -(float)(i + 1);
    const float want_max[9] = {-1, -1, -2, -1, -1, -2, -4, -4, -5};
    inception_op_maxpool3(a, 1, 3, 3, 1, 1, out);
    for (int i = 0; i < 9; i++) CHECK_CLOSE(out[i], want_max[i], 0, "max pool s1 p1");
    float b[25], o4[4];
    for (int i = 0; i < 25; i++) b[i] = (float)i;
    const float want_s2[4] = {12, 14, 22, 24};
    inception_op_maxpool3(b, 1, 5, 5, 2, 0, o4);
    for (int i = 0; i < 4; i++) CHECK_CLOSE(o4[i], want_s2[i], 0, "max pool s2");
    float mean;
    inception_op_mean(b, 1, 25, &mean);
    CHECK_CLOSE(mean, 12.0, 1e-7, "mean");
}

/* inception_op_conv against the definition (direct loops, double), for each kernel shape the
 * network uses, with the im2col band small enough to split the output rows. */
static void test_conv(void) {
    static const int shapes[][5] = { /* kh kw stride ph pw */
        {3, 3, 2, 0, 0}, {3, 3, 1, 1, 1}, {5, 5, 1, 2, 2}, {1, 7, 1, 0, 3}, {7, 1, 1, 3, 0},
        {1, 3, 1, 0, 1}, {3, 1, 1, 1, 0}, {1, 1, 1, 0, 0}, {3, 3, 1, 0, 0},
    };
    const int cin = 3, cout = 5, H = 11, W = 9;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        inception_conv c = {.cin = cin, .cout = cout, .kh = shapes[s][0], .kw = shapes[s][1],
                            .stride = shapes[s][2], .ph = shapes[s][3], .pw = shapes[s][4]};
        const int K = cin * c.kh * c.kw;
        const int Ho = inception_out_len(H, c.kh, c.stride, c.ph);
        const int Wo = inception_out_len(W, c.kw, c.stride, c.pw);
        float *x = random_images(1, cin, H, W, 10 + s), *w = random_images(1, cout, K, 1, 30 + s);
        float bias[5] = {0.1f, -0.2f, 0.3f, 0.0f, -0.05f};
        c.weight = w;
        c.bias = bias;
        size_t col_floats = (size_t)K * Wo * 2; /* two output rows per band */
        float *col = malloc(col_floats * sizeof(float)), *out = malloc(sizeof(float) * cout * Ho * Wo);
        inception_op_conv(&c, x, H, W, out, col, col_floats);
        double worst = 0;
        for (int o = 0; o < cout; o++)
            for (int oy = 0; oy < Ho; oy++)
                for (int ox = 0; ox < Wo; ox++) {
                    double acc = bias[o];
                    for (int i = 0; i < cin; i++)
                        for (int ky = 0; ky < c.kh; ky++)
                            for (int kx = 0; kx < c.kw; kx++) {
                                int iy = oy * c.stride - c.ph + ky, ix = ox * c.stride - c.pw + kx;
                                if (iy >= 0 && iy < H && ix >= 0 && ix < W)
                                    acc += (double)x[(i * H + iy) * W + ix] *
                                           w[((o * cin + i) * c.kh + ky) * c.kw + kx];
                            }
                    acc = acc > 0 ? acc : 0;
                    worst = fmax(worst, fabs(acc - out[(o * Ho + oy) * Wo + ox]));
                }
        CHECK(worst < 1e-5, "conv k%dx%d s%d p%d,%d differs from the direct loop by %g", c.kh,
              c.kw, c.stride, c.ph, c.pw, worst);
        free(x); free(w); free(col); free(out);
    }
}

/* ---- the network on random weights -------------------------------------------------------- */

static void test_features(dt_inception *net) {
    char err[512];
    float *x = random_images(3, 3, 32, 32, 100);
    float *f = malloc(sizeof(float) * 3 * F), *g = malloc(sizeof(float) * 3 * F);
    CHECK(inception_features(net, x, 2, 3, 32, 32, f, err, sizeof err) == 0, "features: %s", err);
    int finite = 1;
    double mean = 0, sq = 0, diff = 0;
    for (int i = 0; i < 2 * F; i++) {
        finite &= isfinite(f[i]);
        mean += f[i];
        sq += (double)f[i] * f[i];
    }
    for (int i = 0; i < F; i++) diff = fmax(diff, fabs(f[i] - f[F + i]));
    mean /= 2 * F;
    double sd = sqrt(fmax(sq / (2 * F) - mean * mean, 0));
    printf("features of 2 random 32x32 images: mean %.4g, sd %.4g, max |f0 - f1| %.4g\n", mean, sd,
           diff);
    CHECK(finite, "features are not finite");
    CHECK(sd > 1e-3 * fmax(fabs(mean), 1e-3) && sd > 1e-6, "features are constant (sd %g)", sd);
    CHECK(diff > 1e-4 * sd, "two different images give the same features (max diff %g)", diff);

    /* Determinism: the same call again is bit-identical. */
    CHECK(inception_features(net, x, 2, 3, 32, 32, g, err, sizeof err) == 0, "features: %s", err);
    CHECK(memcmp(f, g, sizeof(float) * 2 * F) == 0, "two identical calls differ");

    /* Batching and threads: 3 at once, one by one, and 3 at once on one thread are
     * bit-identical (every sgemm runs single-threaded, see inception.h). */
    CHECK(inception_features(net, x, 3, 3, 32, 32, f, err, sizeof err) == 0, "features: %s", err);
    for (int i = 0; i < 3; i++)
        CHECK(inception_features(net, x + (size_t)i * 3 * 32 * 32, 1, 3, 32, 32, g + (size_t)i * F,
                                 err, sizeof err) == 0, "features: %s", err);
    printf("n=3 at once vs one by one: max rel diff %.3g\n", rel_diff(g, f, 3 * F));
    CHECK(memcmp(f, g, sizeof(float) * 3 * F) == 0, "batched and single-image features differ "
          "by %g", rel_diff(g, f, 3 * F));
    const int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    CHECK(inception_features(net, x, 3, 3, 32, 32, g, err, sizeof err) == 0, "features: %s", err);
    omp_set_num_threads(threads);
    printf("%d threads vs 1 thread: max rel diff %.3g\n", threads, rel_diff(g, f, 3 * F));
    CHECK(memcmp(f, g, sizeof(float) * 3 * F) == 0, "features on %d threads and on 1 differ by %g",
          threads, rel_diff(g, f, 3 * F));
    free(x); free(f); free(g);
}

/* Inputs of other sizes go through the resize: a constant image gives the same features at any
 * size; an image and its own 299x299 resize give the same features; a grey image equals the
 * same image replicated to three channels; a bad channel count is an error. */
static void test_resize_path(dt_inception *net) {
    char err[512];
    const int R = INCEPTION_SIZE;
    float *f = malloc(sizeof(float) * 2 * F), *g = malloc(sizeof(float) * 2 * F);

    float *c64 = malloc(sizeof(float) * 3 * 64 * 64), *c299 = malloc(sizeof(float) * 3 * R * R);
    for (int i = 0; i < 3 * 64 * 64; i++) c64[i] = 0.3f - 0.2f * (float)(i / (64 * 64));
    for (int i = 0; i < 3 * R * R; i++) c299[i] = 0.3f - 0.2f * (float)(i / (R * R));
    CHECK(inception_features(net, c64, 1, 3, 64, 64, f, err, sizeof err) == 0, "%s", err);
    CHECK(inception_features(net, c299, 1, 3, R, R, g, err, sizeof err) == 0, "%s", err);
    double d = rel_diff(f, g, F);
    CHECK(d < 1e-5, "constant image: 64x64 and 299x299 features differ by %g", d);

    /* A non-square 40x52 image against its resize to 299x299 done by the same op. */
    float *small = random_images(1, 3, 40, 52, 200);
    for (int ch = 0; ch < 3; ch++)
        inception_op_resize(small + ch * 40 * 52, 40, 52, c299 + (size_t)ch * R * R, R, R);
    CHECK(inception_features(net, small, 1, 3, 40, 52, f, err, sizeof err) == 0, "%s", err);
    CHECK(inception_features(net, c299, 1, 3, R, R, g, err, sizeof err) == 0, "%s", err);
    d = rel_diff(f, g, F);
    printf("40x52 image vs its 299x299 resize: max rel diff %.3g\n", d);
    CHECK(d < 1e-4, "a 40x52 image and its 299x299 resize give features %g apart", d);

    float *grey = random_images(2, 1, 24, 24, 300), *rgb = malloc(sizeof(float) * 2 * 3 * 24 * 24);
    for (int i = 0; i < 2; i++)
        for (int ch = 0; ch < 3; ch++)
            memcpy(rgb + ((size_t)i * 3 + ch) * 576, grey + (size_t)i * 576, 576 * sizeof(float));
    CHECK(inception_features(net, grey, 2, 1, 24, 24, f, err, sizeof err) == 0, "%s", err);
    CHECK(inception_features(net, rgb, 2, 3, 24, 24, g, err, sizeof err) == 0, "%s", err);
    CHECK(memcmp(f, g, sizeof(float) * 2 * F) == 0, "grey image differs from its RGB copy");

    CHECK(inception_features(net, rgb, 1, 2, 24, 24, f, err, sizeof err) == -1 &&
          strstr(err, "channels"), "2 channels accepted (%s)", err);
    free(f); free(g); free(c64); free(c299); free(small); free(grey); free(rgb);
}

/* Copies every tensor of src into dst except `drop`, and with `reshape` given new dims. */
static int copy_weights(const char *src, const char *dst, const char *drop, const char *reshape,
                        const int64_t *dims, int ndim) {
    char err[512];
    st_file f;
    if (safetensors_open(&f, src, err, sizeof err)) { CHECK(0, "%s", err); return -1; }
    st_write_tensor *t = calloc((size_t)f.n, sizeof *t);
    int n = 0;
    for (int i = 0; i < f.n; i++) {
        const st_tensor *s = &f.tensors[i];
        if (drop && strcmp(s->name, drop) == 0) continue;
        t[n].name = s->name;
        t[n].dtype = s->dtype;
        t[n].ndim = s->ndim;
        memcpy(t[n].shape, s->shape, sizeof s->shape);
        if (reshape && strcmp(s->name, reshape) == 0) {
            t[n].ndim = ndim;
            memcpy(t[n].shape, dims, sizeof(int64_t) * ndim);
        }
        t[n].data = f.data + s->offset;
        n++;
    }
    int rc = safetensors_write(dst, t, n, NULL, err, sizeof err);
    CHECK(rc == 0, "%s", err);
    free(t);
    safetensors_close(&f);
    return rc;
}

static void test_load_errors(const char *dir, const char *weights) {
    char err[512];
    dt_inception *net = NULL;
    const char *missing = check_path(dir, "missing.safetensors");
    if (copy_weights(weights, missing, "Mixed_6c.branch7x7dbl_3.bn.running_var", NULL, NULL, 0) == 0) {
        CHECK(inception_load(&net, missing, err, sizeof err) == -1 && !net, "missing tensor loaded");
        printf("missing tensor: %s\n", err);
        CHECK(strstr(err, "Mixed_6c.branch7x7dbl_3.bn.running_var") && strstr(err, "(160)"),
              "error does not name the tensor and its shape: %s", err);
    }
    /* (384, 384, 3, 1) has the element count of (384, 384, 1, 3): only the shape can tell. */
    const char *shaped = check_path(dir, "shape.safetensors");
    const int64_t dims[4] = {384, 384, 3, 1};
    if (copy_weights(weights, shaped, NULL, "Mixed_7b.branch3x3_2a.conv.weight", dims, 4) == 0) {
        CHECK(inception_load(&net, shaped, err, sizeof err) == -1 && !net, "wrong shape loaded");
        printf("wrong shape: %s\n", err);
        CHECK(strstr(err, "Mixed_7b.branch3x3_2a.conv.weight") && strstr(err, "(384, 384, 1, 3)"),
              "error does not name the tensor and the expected shape: %s", err);
    }
    CHECK(inception_load(&net, check_path(dir, "absent.safetensors"), err, sizeof err) == -1,
          "absent file loaded");
}

/* ---- against the numpy reference ---------------------------------------------------------- */

static void test_reference(dt_inception *net, const char *dir, const char *weights) {
    char err[512];
    const int n = 2, C = 3, S = 32;
    const size_t len = (size_t)n * C * S * S;
    float *x = random_images(n, C, S, S, 400);
    float *ours = malloc(sizeof(float) * n * F), *ref = malloc(sizeof(float) * n * F);
    CHECK(inception_features(net, x, n, C, S, S, ours, err, sizeof err) == 0, "%s", err);

    const char *in_path = check_path(dir, "ref_in.txt"), *out_path = check_path(dir, "ref_out.txt");
    FILE *fp = fopen(in_path, "w");
    CHECK(fp != NULL, "cannot write %s", in_path);
    if (!fp) goto done;
    fprintf(fp, "%d %d %d %d\n", n, C, S, S);
    for (size_t i = 0; i < len; i++) fprintf(fp, "%.9g\n", (double)x[i]);
    CHECK(fclose(fp) == 0, "cannot write %s", in_path);

    const char *src = getenv("DIFFTUNE_SOURCE");
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "'%s' '%s/tests/ref_inception.py' '%s' '%s' '%s'", ref_python(),
             src ? src : ".", weights, in_path, out_path);
    int rc = system(cmd);
    CHECK(rc == 0, "reference failed (status %d): %s", rc, cmd);
    if (rc != 0) goto done;
    fp = fopen(out_path, "r");
    size_t got = 0;
    while (fp && got < (size_t)n * F && fscanf(fp, "%f", &ref[got]) == 1) got++;
    float extra;
    int more = fp && fscanf(fp, "%f", &extra) == 1;
    if (fp) fclose(fp);
    CHECK(got == (size_t)n * F && !more, "%s: %zu values (more: %d), expected %d", out_path, got,
          more, n * F);
    if (got != (size_t)n * F) goto done;
    size_t worst = 0;
    double e = 0, scale = 0;
    for (size_t i = 0; i < (size_t)n * F; i++) {
        double d = fabs((double)ours[i] - ref[i]);
        if (d > e) { e = d; worst = i; }
        scale = fmax(scale, fabs(ref[i]));
    }
    printf("vs numpy reference: max |ours - ref| = %.3g, feature scale (max |ref|) %.4g, "
           "normalised %.3g\n", e, scale, e / scale);
    CHECK(e <= REF_TOL * scale, "features differ from the numpy FID Inception by %.3g of the scale "
          "(worst at image %zu feature %zu: ours %.7g, numpy %.7g)", e / scale, worst / F,
          worst % F, (double)ours[worst], (double)ref[worst]);
done:
    free(x); free(ours); free(ref);
}

/* inception_use_device: bad names are refused, "cpu" is the pass above, and a GPU that cannot be
 * had (no cuDNN, no device: this machine, most likely) leaves the net on the CPU, unchanged. On a
 * GPU machine "cuda:0" may succeed (tests/gpu/test_inception_gpu.c checks the values there). */
static void test_device(dt_inception *net) {
    char err[512];
    float *x = random_images(2, 3, 32, 32, 500);
    float *f = malloc(sizeof(float) * 2 * F), *g = malloc(sizeof(float) * 2 * F);
    CHECK(!strcmp(inception_device(net), "cpu"), "a loaded net runs on %s", inception_device(net));
    CHECK(inception_features(net, x, 2, 3, 32, 32, f, err, sizeof err) == 0, "%s", err);
    const char *bad[] = {"gpu", "cuda:", "cuda:x", "cuda:0x", "cuda:-1", "CPU"};
    for (int i = 0; i < 6; i++) {
        err[0] = '\0';
        CHECK(inception_use_device(net, bad[i], err, sizeof err) == -1 &&
              strstr(err, "unknown device"), "device \"%s\": %s", bad[i], err);
    }
    CHECK(inception_use_device(net, "cpu", err, sizeof err) == 0, "cpu: %s", err);
    err[0] = '\0';
    int rc = inception_use_device(net, "cuda:0", err, sizeof err);
    printf("inception_use_device(cuda:0): %s\n", rc == 0 ? "on the GPU" : err);
    CHECK(rc == 0 ? !strcmp(inception_device(net), "cuda:0")
                  : !strcmp(inception_device(net), "cpu") && err[0],
          "cuda:0 gave %d, device %s, message \"%s\"", rc, inception_device(net), err);
    CHECK(inception_use_device(net, "cpu", err, sizeof err) == 0 &&
          !strcmp(inception_device(net), "cpu"), "back to cpu: %s", err);
    CHECK(inception_features(net, x, 2, 3, 32, 32, g, err, sizeof err) == 0, "%s", err);
    CHECK(memcmp(f, g, sizeof(float) * 2 * F) == 0,
          "the CPU features changed after cuda:0 was tried");
    free(x); free(f); free(g);
}

int main(void) {
    const char *dir = check_tmpdir("test_inception");
    char err[512];
    test_resize();
    test_pools();
    test_conv();

    const char *weights = check_path(dir, "weights.safetensors");
    int ok = inception_write_random_weights(weights, 7, err, sizeof err) == 0;
    CHECK(ok, "write random weights: %s", err);
    dt_inception *net = NULL;
    ok = ok && inception_load(&net, weights, err, sizeof err) == 0;
    CHECK(ok, "load: %s", err);
    if (ok) {
        printf("conv FLOPs per image: %.3f GFLOP\n", inception_forward_flops(net) * 1e-9);
        test_features(net);
        test_device(net);
        test_resize_path(net);
        test_load_errors(dir, weights);
        test_reference(net, dir, weights);
    }
    inception_free(net);
    return check_done("test_inception");
}
