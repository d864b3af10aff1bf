/* bench_gpu_common.h — shared by bench_gpu_train.c and bench_gpu_sample.c: the model config of
 * an arch name, backend opening, random non-zero DiT weights, the analytic FLOP count, memory
 * accounting and the matmul ceiling (cuBLAS on CUDA, cblas_sgemm on the CPU).
 *
 * Header-only (static inline) so that bench/CMakeLists.txt can keep building every bench_*.c as
 * one executable. Everything that touches CUDA directly is under DIFFTUNE_HAVE_CUDA, which the
 * difftune_kernels target exports when the CUDA backend is built (it also links CUDA::cudart and
 * CUDA::cublas), so the benchmarks build and run unchanged on a CPU-only machine.
 */
#ifndef DT_BENCH_GPU_COMMON_H
#define DT_BENCH_GPU_COMMON_H

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "backend.h"
#include "dit.h"

#ifdef DIFFTUNE_HAVE_CUDA
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#endif

static inline double bench_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static inline int bench_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of n values (sorts v in place); 0 when n is 0. */
static inline double bench_median(double *v, int n) {
    if (n <= 0) return 0;
    qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* ---- FLOPs ------------------------------------------------------------------------------- */

/* Forward FLOPs of one image, counted analytically, 2 FLOPs per multiply-add:
 *   per token : patch embed (C p^2) D + depth (3D^2 qkv + D^2 proj + 8D^2 mlp) + D (p^2 C_out)
 *   attention : depth * 2 N^2 D          (q k^T and P v, all heads together)
 *   per image : 256 D + D^2 (timestep MLP) + depth 6D^2 (adaLN) + 2D^2 (final adaLN)
 *   total     : 2 (N per_token + attention + per_image)
 * Softmax, layer norms, GELU and other pointwise work are not counted. For DiT-XL/2 at 32x32x4
 * this is 237.2 GFLOP, i.e. the DiT paper's 118.6 "GFLOPs", which are multiply-adds. */
static inline double bench_dit_forward_flops(const dit_config *c) {
    const double N = c->tokens, D = c->hidden, L = c->depth;
    double per_token = c->patch_dim * D + L * (3 * D * D + D * D + 8 * D * D) + D * c->out_dim;
    double attention = L * 2.0 * N * N * D;
    double per_image = DIT_FREQ_DIM * D + D * D + L * 6 * D * D + 2 * D * D;
    return 2.0 * (N * per_token + attention + per_image);
}

/* ---- model ------------------------------------------------------------------------------- */

/* Fills c for the preset `arch` ("DiT-S/2" ... "DiT-XL/8") at the given image size, channels,
 * classes and learn_sigma. Returns 0, or -1 after printing why to stderr (unknown arch, or
 * dit_config_init's message). */
static inline int bench_model_config(const char *arch, int image, int channels, int classes,
                                     int learn_sigma, dit_config *c) {
    int depth, hidden, heads, patch;
    char err[512];
    if (dit_arch_lookup(arch, &depth, &hidden, &heads, &patch)) {
        fprintf(stderr, "unknown arch %s (DiT-S|B|L|XL/2|4|8)\n", arch);
        return -1;
    }
    if (dit_config_init(c, depth, hidden, heads, patch, image, channels, classes, learn_sigma, err,
                        sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    return 0;
}

/* ---- backend ----------------------------------------------------------------------------- */

/* CUDA device index of a device string ("cuda" -> 0, "cuda:N" -> N), or -1 for anything else. */
static inline int bench_cuda_index(const char *device) {
    if (strncmp(device, "cuda", 4) != 0) return -1;
    return device[4] == ':' ? atoi(device + 5) : 0;
}

/* Opens the backend named by device ("cpu", "cuda:N", "auto") with matmul precision "bf16" or
 * "fp32". Returns NULL with a message in err. */
static inline dt_backend *bench_backend_open(const char *device, const char *precision, char *err,
                                             size_t errlen) {
    dt_precision p;
    if (!strcmp(precision, "bf16")) p = DT_PRECISION_BF16;
    else if (!strcmp(precision, "fp32")) p = DT_PRECISION_FP32;
    else {
        snprintf(err, errlen, "unknown precision \"%s\" (bf16 or fp32)", precision);
        return NULL;
    }
    dt_backend *be = dt_backend_create(device, err, errlen);
    if (be) be->precision = p;
    return be;
}

/* Human name of the device: the GPU's name, or the CPU's model name. */
static inline void bench_device_name(const char *device, char *out, size_t outlen) {
    snprintf(out, outlen, "unknown");
#ifdef DIFFTUNE_HAVE_CUDA
    if (bench_cuda_index(device) >= 0) {
        struct cudaDeviceProp prop;
        if (cudaGetDeviceProperties(&prop, bench_cuda_index(device)) == cudaSuccess)
            snprintf(out, outlen, "%s", prop.name);
        return;
    }
#endif
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];
    while (f && fgets(line, sizeof line, f)) {
        char *colon = strchr(line, ':');
        if (!strncmp(line, "model name", 10) && colon) {
            snprintf(out, outlen, "%s", colon + 2);
            out[strcspn(out, "\n")] = '\0';
            break;
        }
    }
    if (f) fclose(f);
}

/* Random non-zero weights, written on the backend with its own randn (identical on every
 * backend): N(0, 2/(fan_in+fan_out)) for linear and patch weights (xavier variance), N(0, 0.02)
 * for the label table, N(0, 1e-3) for biases. The published adaLN-Zero initialisation zeroes the
 * modulations and the final layer, which makes the output trivially zero; here every tensor is
 * random so the benchmark's work is real work. */
static inline void bench_init_params(const dit_model *m, float *params, uint64_t seed) {
    dt_backend *be = m->be;
    for (int i = 0; i < m->n_params; i++) {
        const dit_param *p = &m->params[i];
        float std;
        if (strstr(p->name, "embedding_table")) std = 0.02f;
        else if (p->ndim == 1) std = 1e-3f;
        else {
            double fan_out = (double)p->shape[0], fan_in = (double)p->numel / p->shape[0];
            std = (float)sqrt(2.0 / (fan_in + fan_out));
        }
        be->randn(be, params + p->offset, p->numel, seed, (uint64_t)i);
        be->scale(be, params + p->offset, std, p->numel);
    }
}

/* ---- memory ------------------------------------------------------------------------------ */

/* High-water count of the bytes held through be->alloc, by wrapping the backend's alloc and free
 * (backend-internal scratch is not seen; on CUDA the device's own counter covers it). One
 * tracked backend at a time. */
typedef struct {
    void *(*alloc)(dt_backend *, size_t);
    void (*free)(dt_backend *, void *);
    size_t cur, peak;
    int n;
    struct { void *ptr; size_t bytes; } live[256];
} bench_mem_tracker;

static bench_mem_tracker bench_mem;

static inline void *bench_mem_alloc(dt_backend *be, size_t bytes) {
    void *p = bench_mem.alloc(be, bytes);
    if (p && bench_mem.n < (int)(sizeof bench_mem.live / sizeof bench_mem.live[0])) {
        bench_mem.live[bench_mem.n].ptr = p;
        bench_mem.live[bench_mem.n++].bytes = bytes;
        bench_mem.cur += bytes;
        if (bench_mem.cur > bench_mem.peak) bench_mem.peak = bench_mem.cur;
    }
    return p;
}

static inline void bench_mem_free(dt_backend *be, void *ptr) {
    for (int i = 0; i < bench_mem.n; i++)
        if (bench_mem.live[i].ptr == ptr) {
            bench_mem.cur -= bench_mem.live[i].bytes;
            bench_mem.live[i] = bench_mem.live[--bench_mem.n];
            break;
        }
    bench_mem.free(be, ptr);
}

/* Starts counting be's allocations from zero. */
static inline void bench_mem_track(dt_backend *be) {
    memset(&bench_mem, 0, sizeof bench_mem);
    bench_mem.alloc = be->alloc;
    bench_mem.free = be->free;
    be->alloc = bench_mem_alloc;
    be->free = bench_mem_free;
}

/* Bytes in use on the CUDA device (total - free, every process's), or 0 off CUDA. The first call
 * creates the device context, so call it once before opening the backend to get a baseline. */
static inline size_t bench_device_used_bytes(const char *device) {
#ifdef DIFFTUNE_HAVE_CUDA
    int idx = bench_cuda_index(device);
    size_t free_b = 0, total_b = 0;
    if (idx >= 0 && cudaSetDevice(idx) == cudaSuccess && cudaMemGetInfo(&free_b, &total_b) == cudaSuccess)
        return total_b - free_b;
#endif
    (void)device;
    return 0;
}

/* Total memory of the CUDA device in bytes, or 0 off CUDA. */
static inline size_t bench_device_total_bytes(const char *device) {
#ifdef DIFFTUNE_HAVE_CUDA
    int idx = bench_cuda_index(device);
    size_t free_b = 0, total_b = 0;
    if (idx >= 0 && cudaSetDevice(idx) == cudaSuccess && cudaMemGetInfo(&free_b, &total_b) == cudaSuccess)
        return total_b;
#endif
    (void)device;
    return 0;
}

/* Peak resident set of this process in bytes. */
static inline size_t bench_max_rss_bytes(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (size_t)ru.ru_maxrss * 1024;
}

/* ---- matmul ceiling ---------------------------------------------------------------------- */

/* Shapes timed for the ceiling: one large square product and the model's four linear layers
 * (M = B*N rows; out features x in features). */
typedef struct {
    double best_tflops;      /* max of the two below */
    double square_tflops;    /* the square product */
    double model_tflops;     /* best model-shaped product */
    int square;              /* its side */
    char method[96];         /* what was timed */
} bench_ceiling;

static inline void bench_ceiling_shapes(int M, int D, int square, int shapes[5][3]) {
    const int s[5][3] = {{square, square, square}, {M, 3 * D, D}, {M, D, D}, {M, 4 * D, D}, {M, D, 4 * D}};
    memcpy(shapes, s, sizeof s);
}

/* cblas_sgemm: best of 3 timed calls after one warm-up, per shape. */
static inline void bench_ceiling_cpu(int M, int D, bench_ceiling *r) {
    int shapes[5][3];
    bench_ceiling_shapes(M, D, 2048, shapes);
    r->square = 2048;
    snprintf(r->method, sizeof r->method, "cblas_sgemm fp32, best of 3 after warm-up");
    for (int s = 0; s < 5; s++) {
        int m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
        float *a = malloc((size_t)m * k * 4), *b = malloc((size_t)n * k * 4), *c = malloc((size_t)m * n * 4);
        if (!a || !b || !c) { free(a); free(b); free(c); continue; }
        for (size_t i = 0; i < (size_t)m * k; i++) a[i] = (float)(i % 7) * 0.1f;
        for (size_t i = 0; i < (size_t)n * k; i++) b[i] = (float)(i % 5) * 0.1f;
        double best = 0;
        for (int rep = 0; rep < 4; rep++) {
            double t0 = bench_now();
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, a, k, b, k, 0.0f, c, n);
            double tf = 2.0 * m * n * k / (bench_now() - t0) * 1e-12;
            if (rep && tf > best) best = tf;
        }
        free(a); free(b); free(c);
        if (s == 0) r->square_tflops = best;
        else if (best > r->model_tflops) r->model_tflops = best;
    }
}

#ifdef DIFFTUNE_HAVE_CUDA
/* bf16 bits of x, rounded to nearest even. */
static inline unsigned short bench_bf16_bits(float x) {
    unsigned int u;
    memcpy(&u, &x, 4);
    return (unsigned short)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

/* Fills n elements of esize bytes at dev with a repeating pseudo-random pattern in [-1, 1]
 * (not zeros: tensor cores draw less power on constant data). */
static inline int bench_cuda_fill(void *dev, size_t n, int esize) {
    enum { TILE = 1 << 20 };
    void *host = malloc((size_t)TILE * esize);
    if (!host) return -1;
    unsigned int x = 12345;
    for (size_t i = 0; i < TILE; i++) {
        x = x * 1664525u + 1013904223u;
        float v = (float)(x >> 8) / 8388608.0f - 1.0f;
        if (esize == 2) ((unsigned short *)host)[i] = bench_bf16_bits(v);
        else ((float *)host)[i] = v;
    }
    int rc = 0;
    for (size_t off = 0; off < n && !rc; off += TILE) {
        size_t len = n - off < TILE ? n - off : TILE;
        rc = cudaMemcpy((char *)dev + off * esize, host, len * esize, cudaMemcpyHostToDevice) != cudaSuccess;
    }
    free(host);
    return rc ? -1 : 0;
}

/* cublasGemmEx, row-major out (M,N) = inp (M,K) . w (N,K)^T as the backend's matmul_forward lays
 * it out (column-major: op T on w, N on inp). bf16: bf16 inputs, fp32 output, CUBLAS_COMPUTE_32F;
 * fp32: fp32 everything, CUBLAS_COMPUTE_32F with the default math mode (no TF32), as the backend's
 * fp32 mode. Two warm-up calls, then the best of 5 trials of 5 back-to-back calls timed with
 * cudaEvents. Returns TFLOP/s, or 0 after a CUDA failure (reported on stderr). */
static inline void bench_ceiling_cuda(int dev, int bf16, int M, int D, bench_ceiling *r) {
    int shapes[5][3];
    bench_ceiling_shapes(M, D, 8192, shapes);
    r->square = 8192;
    snprintf(r->method, sizeof r->method, "cublasGemmEx %s in, fp32 out, compute 32F, best of 5x5 (cudaEvents)",
             bf16 ? "bf16" : "fp32");
    size_t max_a = 0, max_b = 0, max_c = 0;
    for (int s = 0; s < 5; s++) {
        size_t m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
        if (m * k > max_a) max_a = m * k;
        if (n * k > max_b) max_b = n * k;
        if (m * n > max_c) max_c = m * n;
    }
    const int es = bf16 ? 2 : 4;
    const cudaDataType_t in_t = bf16 ? CUDA_R_16BF : CUDA_R_32F;
    void *a = NULL, *b = NULL, *c = NULL;
    cublasHandle_t h = NULL;
    cudaStream_t st = NULL;
    cudaEvent_t e0 = NULL, e1 = NULL;
    if (cudaSetDevice(dev) != cudaSuccess || cudaMalloc(&a, max_a * es) != cudaSuccess ||
        cudaMalloc(&b, max_b * es) != cudaSuccess || cudaMalloc(&c, max_c * 4) != cudaSuccess ||
        bench_cuda_fill(a, max_a, es) || bench_cuda_fill(b, max_b, es) ||
        cudaStreamCreate(&st) != cudaSuccess || cudaEventCreate(&e0) != cudaSuccess ||
        cudaEventCreate(&e1) != cudaSuccess || cublasCreate(&h) != CUBLAS_STATUS_SUCCESS ||
        cublasSetStream(h, st) != CUBLAS_STATUS_SUCCESS) {
        fprintf(stderr, "matmul ceiling: CUDA setup failed: %s\n", cudaGetErrorString(cudaGetLastError()));
        goto done;
    }
    const float alpha = 1.0f, beta = 0.0f;
    for (int s = 0; s < 5; s++) {
        int m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
        double best_ms = 0;
        int ok = 1;
        for (int w = 0; w < 2 && ok; w++)
            ok = cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, n, m, k, &alpha, b, in_t, k, a, in_t, k, &beta,
                              c, CUDA_R_32F, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_SUCCESS;
        for (int trial = 0; trial < 5 && ok; trial++) {
            cudaEventRecord(e0, st);
            for (int rep = 0; rep < 5 && ok; rep++)
                ok = cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, n, m, k, &alpha, b, in_t, k, a, in_t, k, &beta,
                                  c, CUDA_R_32F, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_SUCCESS;
            cudaEventRecord(e1, st);
            float ms = 0;
            if (!ok || cudaEventSynchronize(e1) != cudaSuccess || cudaEventElapsedTime(&ms, e0, e1) != cudaSuccess) {
                ok = 0;
                break;
            }
            if (best_ms == 0 || ms / 5 < best_ms) best_ms = ms / 5;
        }
        if (!ok || best_ms <= 0) {
            fprintf(stderr, "matmul ceiling: cublasGemmEx %dx%dx%d failed: %s\n", m, n, k,
                    cudaGetErrorString(cudaGetLastError()));
            continue;
        }
        double tf = 2.0 * m * n * k / (best_ms * 1e-3) * 1e-12;
        if (s == 0) r->square_tflops = tf;
        else if (tf > r->model_tflops) r->model_tflops = tf;
    }
done:
    if (h) cublasDestroy(h);
    if (e0) cudaEventDestroy(e0);
    if (e1) cudaEventDestroy(e1);
    if (st) cudaStreamDestroy(st);
    cudaFree(a);
    cudaFree(b);
    cudaFree(c);
}
#endif

/* The matmul ceiling of `device` at `precision` for a model with M = B*N rows and hidden D: on
 * CUDA cuBLAS at that precision, elsewhere cblas_sgemm (the CPU backend always computes fp32).
 * Call it with no backend open, so the memory the model used is free. */
static inline void bench_matmul_ceiling(const char *device, const char *precision, int M, int D,
                                        bench_ceiling *r) {
    memset(r, 0, sizeof *r);
#ifdef DIFFTUNE_HAVE_CUDA
    if (bench_cuda_index(device) >= 0) {
        bench_ceiling_cuda(bench_cuda_index(device), !strcmp(precision, "bf16"), M, D, r);
        r->best_tflops = r->square_tflops > r->model_tflops ? r->square_tflops : r->model_tflops;
        return;
    }
#endif
    (void)device;
    (void)precision;
    bench_ceiling_cpu(M, D, r);
    r->best_tflops = r->square_tflops > r->model_tflops ? r->square_tflops : r->model_tflops;
}

/* The precision the matrix products actually ran at: the CPU backend ignores bf16. */
static inline const char *bench_effective_precision(const char *device, const char *precision) {
    return bench_cuda_index(device) >= 0 ? precision : "fp32";
}

#endif
