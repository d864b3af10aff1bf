/* bench_inception.c — throughput of the FID Inception-v3 features (engine/inception.c), on the
 * CPU or, with --device cuda:N, on the GPU network (kernels/cuda/cuda_inception.h).
 *
 * Times inception_features on batches of random images at 32x32 and 256x256 (both are resized
 * to 299x299, so the network costs the same; the difference is the resize) and counts the
 * convolution FLOPs analytically from the layer table. On the CPU it compares the achieved rate
 * with the best multi-threaded cblas_sgemm rate measured in the same run; on a GPU it reports
 * images/s and the convolution TFLOP/s (fp32, no TF32). A device the build or the machine
 * cannot give is an error (exit 1). Random weights unless --weights names a real file.
 *
 * usage: bench_inception [--device cpu|cuda:N] [--batch 8] [--reps 2] [--weights FILE]
 *                        [--json FILE]
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
    /* Warm-up: allocates the thread scratch and faults the weights in (on a GPU: the buffers and
     * the convolution algorithms for this batch size). */
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
    const char *json_path = NULL, *weights = NULL, *device = "cpu";
    int batch = 8, reps = 2;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--batch")) batch = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--device")) device = argv[i + 1];
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
    /* Before the CPU's timing: the GPU network checks one image against the CPU first. */
    if (inception_use_device(net, device, err, sizeof err)) {
        fprintf(stderr, "bench_inception: %s\n", err);
        inception_free(net);
        return 1;
    }
    const int on_cpu = !strcmp(inception_device(net), "cpu");

    const int sizes[2] = {32, 256};
    bench_result res[2];
    for (int s = 0; s < 2; s++)
        if (bench_size(net, sizes[s], batch, reps, &res[s])) { inception_free(net); return 1; }
    /* The sgemm peak is the CPU's ceiling; a GPU run reports its rate alone. */
    const double peak = on_cpu ? sgemm_peak() : 0, gflop = inception_forward_flops(net) * 1e-9;
    const int threads = omp_get_max_threads();
    printf("bench_inception: FID Inception-v3, %.3f GFLOP/image (convolutions), batch %d, on %s",
           gflop, batch, inception_device(net));
    if (on_cpu) printf(", %d threads", threads);
    printf("\n");
    for (int s = 0; s < 2; s++) {
        printf("  %3dx%-3d input: %.3f s/batch, %.2f images/s, %.1f GFLOP/s", res[s].size,
               res[s].size, res[s].seconds_per_batch, res[s].images_per_second, res[s].gflops);
        if (on_cpu) printf(" (%.0f%% of sgemm peak)", 100.0 * res[s].gflops / peak);
        printf("\n");
    }
    if (on_cpu) printf("  sgemm peak %.1f GFLOP/s measured (2048^3, %d threads)\n", peak, threads);
    if (json_path) {
        FILE *f = fopen(json_path, "w");
        if (!f) { fprintf(stderr, "cannot write %s\n", json_path); inception_free(net); return 1; }
        /* impl .. tflops: the fields bench/gpu_bench.sh's summary table reads (32x32 input) */
        fprintf(f, "{\"impl\":\"difftune\",\"benchmark\":\"inception\",\"precision\":\"fp32\","
                   "\"images_per_second\":%.3f,\"tflops\":%.4f,\"model\":\"fid_inception_v3\","
                   "\"device\":\"%s\",\"gflop_per_image\":%.4f,\"batch\":%d,\"threads\":%d,"
                   "\"reps\":%d,\"sgemm_peak_gflops\":", res[0].images_per_second,
                res[0].gflops * 1e-3, inception_device(net), gflop, batch, threads, reps);
        if (on_cpu) fprintf(f, "%.2f", peak);
        else fprintf(f, "null");
        fprintf(f, ",\"results\":[");
        for (int s = 0; s < 2; s++) {
            fprintf(f, "%s{\"input\":%d,\"seconds_per_batch\":%.4f,\"images_per_second\":%.3f,"
                       "\"gflops\":%.2f,\"fraction_of_peak\":", s ? "," : "", res[s].size,
                    res[s].seconds_per_batch, res[s].images_per_second, res[s].gflops);
            if (on_cpu) fprintf(f, "%.4f}", res[s].gflops / peak);
            else fprintf(f, "null}");
        }
        fprintf(f, "]}\n");
        fclose(f);
    }
    inception_free(net);
    return 0;
}
