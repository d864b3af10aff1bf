/* bench_inception.c — CPU throughput of the FID Inception-v3 features (engine/inception.c).
 *
 * Times inception_features on batches of random images at 32x32 and 256x256 (both are resized
 * to 299x299, so the network costs the same; the difference is the resize), counts the
 * convolution FLOPs analytically from the layer table and compares the achieved rate with the
 * best multi-threaded cblas_sgemm rate measured in the same run. Random weights unless --weights
 * names a real file.
 *
 * usage: bench_inception [--batch 8] [--reps 2] [--weights FILE] [--json FILE]
 */
#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "inception.h"
#include "rng.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Best sgemm GFLOP/s of a 2048^3 product (BLAS threads, outside any parallel region). */
static double sgemm_peak(void) {
    const int M = 2048;
    float *a = malloc(sizeof(float) * M * M), *b = malloc(sizeof(float) * M * M);
    float *c = malloc(sizeof(float) * M * M);
    for (size_t i = 0; i < (size_t)M * M; i++) { a[i] = (float)(i % 7) * 0.1f; b[i] = (float)(i % 5) * 0.1f; }
    double best = 0;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, M, M, 1.0f, a, M, b, M, 0.0f, c, M);
        double g = 2.0 * M * M * M / (now() - t0) * 1e-9;
        if (rep && g > best) best = g; /* the first call warms up */
    }
    free(a); free(b); free(c);
    return best;
}

typedef struct {
    int size;
    double seconds_per_batch, images_per_second, gflops;
} bench_result;

static int bench_size(dt_inception *net, int size, int batch, int reps, bench_result *r) {
    char err[512];
    const size_t len = (size_t)batch * 3 * size * size;
    float *x = malloc(sizeof(float) * len), *f = malloc(sizeof(float) * batch * INCEPTION_FEATURES);
    for (size_t i = 0; i < len; i++) x[i] = 2.0f * dt_rng_uniform(5, (uint64_t)size, i) - 1.0f;
    /* Warm-up: allocates the thread scratch and faults the weights in. */
    int rc = inception_features(net, x, batch, 3, size, size, f, err, sizeof err);
    double t0 = now();
    for (int i = 0; i < reps && rc == 0; i++)
        rc = inception_features(net, x, batch, 3, size, size, f, err, sizeof err);
    double t = (now() - t0) / reps;
    if (rc) fprintf(stderr, "bench_inception: %s\n", err);
    r->size = size;
    r->seconds_per_batch = t;
    r->images_per_second = batch / t;
    r->gflops = inception_forward_flops(net) * batch / t * 1e-9;
    free(x); free(f);
    return rc;
}

int main(int argc, char **argv) {
    const char *json_path = NULL, *weights = NULL;
    int batch = 8, reps = 2;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--batch")) batch = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--reps")) reps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--weights")) weights = argv[i + 1];
        else if (!strcmp(argv[i], "--json")) json_path = argv[i + 1];
        else { fprintf(stderr, "unknown option %s\n", argv[i]); return 2; }
    }
    if (batch < 1 || reps < 1) { fprintf(stderr, "--batch and --reps must be >= 1\n"); return 2; }
    char err[512], tmp[512];
    if (!weights) {
        const char *dir = getenv("TMPDIR");
        snprintf(tmp, sizeof tmp, "%s/bench_inception_%d.safetensors", dir && dir[0] ? dir : "/tmp",
                 (int)getpid());
        if (inception_write_random_weights(tmp, 1, err, sizeof err)) { fprintf(stderr, "%s\n", err); return 1; }
        weights = tmp;
    }
    dt_inception *net;
    int rc = inception_load(&net, weights, err, sizeof err);
    if (weights == tmp) remove(tmp);
    if (rc) { fprintf(stderr, "%s\n", err); return 1; }

    const int sizes[2] = {32, 256};
    bench_result res[2];
    for (int s = 0; s < 2; s++)
        if (bench_size(net, sizes[s], batch, reps, &res[s])) { inception_free(net); return 1; }
    const double peak = sgemm_peak(), gflop = inception_forward_flops(net) * 1e-9;
    const int threads = omp_get_max_threads();
    printf("bench_inception: FID Inception-v3, %.3f GFLOP/image (convolutions), batch %d, %d threads\n",
           gflop, batch, threads);
    for (int s = 0; s < 2; s++)
        printf("  %3dx%-3d input: %.3f s/batch, %.2f images/s, %.1f GFLOP/s (%.0f%% of sgemm peak)\n",
               res[s].size, res[s].size, res[s].seconds_per_batch, res[s].images_per_second,
               res[s].gflops, 100.0 * res[s].gflops / peak);
    printf("  sgemm peak %.1f GFLOP/s measured (2048^3, %d threads)\n", peak, threads);
    if (json_path) {
        FILE *f = fopen(json_path, "w");
        if (!f) { fprintf(stderr, "cannot write %s\n", json_path); inception_free(net); return 1; }
        fprintf(f, "{\"model\":\"fid_inception_v3\",\"gflop_per_image\":%.4f,\"batch\":%d,\"threads\":%d,"
                   "\"reps\":%d,\"sgemm_peak_gflops\":%.2f,\"results\":[", gflop, batch, threads, reps, peak);
        for (int s = 0; s < 2; s++)
            fprintf(f, "%s{\"input\":%d,\"seconds_per_batch\":%.4f,\"images_per_second\":%.3f,"
                       "\"gflops\":%.2f,\"fraction_of_peak\":%.4f}", s ? "," : "", res[s].size,
                    res[s].seconds_per_batch, res[s].images_per_second, res[s].gflops,
                    res[s].gflops / peak);
        fprintf(f, "]}\n");
        fclose(f);
    }
    inception_free(net);
    return 0;
}
