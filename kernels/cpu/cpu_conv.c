/* cpu_conv.c — 2-D convolution on the CPU: the one-image core shared with the engine
 * (kernels/cpu_conv.h) and the backend's batched conv2d_forward built on it.
 *
 * A convolution is the matrix product w (OC, K) . col (K, Ho*Wo), K = C*KH*KW, where col is the
 * im2col matrix of the image (column ox of row (c, ki, kj) holds the input pixel that output ox
 * reads through tap (ki, kj), zero in the padding). col is built in bands of whole output rows so
 * the scratch stays bounded whatever the image size: a 3x3 conv over 128 channels at 512x512
 * would need 1.2 GB for the whole matrix.
 *
 * The backend's batches split into (image, band) work units that OpenMP threads take whole, each
 * with its own band buffer and a single-threaded sgemm: one fork-join per call, so a busy
 * machine does not stall the threads at a barrier per band. A call with a single unit (or a
 * single thread) runs it with a parallel im2col and OpenBLAS's own threads instead. Every unit
 * is computed the same way whichever thread takes it, so results do not depend on the thread
 * count.
 */
#include <assert.h>
#include <omp.h>
#include <string.h>

#include <cblas.h>

#include "cpu_conv.h"
#include "cpu_internal.h"

/* Band budget of one work unit (4 MiB) and the most band buffers in the scratch (16, at most
 * 64 MiB in all): the scratch stays <= 64 MiB unless a single output row's im2col alone is
 * larger (no VAE layer comes close: the largest, 512 channels 3x3 at 256 wide, is 4.7 MB a
 * row, which makes 13 buffers of one row). */
#define CPU_CONV_BAND_FLOATS ((size_t)1 << 20)
#define CPU_CONV_SLOTS 16
#define CPU_CONV_SCRATCH_MAX ((size_t)64 << 20)

/* Rows [r0, r0 + nr) of the im2col matrix of in (C, H, W): col (K, nr * Wo), rows in PyTorch's
 * weight order (channel, kernel row, kernel column). */
static void cpu_conv_im2col(const cpu_conv_geom *g, const float *in, int r0, int nr, int Wo,
                            float *col) {
    const int s = g->stride, N = nr * Wo, taps = g->KH * g->KW, K = g->C * taps;
    const int H = g->H, W = g->W;
    const int par = !omp_in_parallel() && (size_t)K * N >= CPU_PAR_MIN;
    #pragma omp parallel for schedule(static) if (par)
    for (int k = 0; k < K; k++) {
        const int ci = k / taps, ki = k % taps / g->KW, kj = k % g->KW;
        float *dst = col + (size_t)k * N;
        const int dx = kj - g->pad_l;
        /* Output columns ox with 0 <= ox * s + dx < W: one contiguous range [lo, hi). */
        int lo = dx >= 0 ? 0 : (-dx + s - 1) / s;
        int hi = W - dx <= 0 ? 0 : (W - dx - 1) / s + 1;
        if (hi > Wo) hi = Wo;
        if (lo > hi) lo = hi;
        for (int r = 0; r < nr; r++) {
            float *row = dst + (size_t)r * Wo;
            const int iy = (r0 + r) * s - g->pad_t + ki;
            if (iy < 0 || iy >= H) {
                memset(row, 0, sizeof(float) * Wo);
                continue;
            }
            const float *src = in + ((size_t)ci * H + iy) * W; /* input row iy */
            for (int ox = 0; ox < lo; ox++) row[ox] = 0.0f;
            if (s == 1) memcpy(row + lo, src + lo + dx, sizeof(float) * (size_t)(hi - lo));
            else for (int ox = lo; ox < hi; ox++) row[ox] = src[ox * s + dx];
            for (int ox = hi; ox < Wo; ox++) row[ox] = 0.0f;
        }
    }
}

/* Output rows [r0, r0 + nr) of one image, for every output channel: bias, im2col band into col
 * (at least (K, nr * Wo) floats), sgemm onto the rows (ld Ho * Wo). */
static void cpu_conv_band(const cpu_conv_geom *g, float *out, const float *in, const float *w,
                          const float *bias, float *col, int r0, int nr, int Ho, int Wo) {
    const int K = g->C * g->KH * g->KW;
    const size_t HWo = (size_t)Ho * Wo, N = (size_t)nr * Wo;
    float *o = out + (size_t)r0 * Wo;
    /* The bias goes in first and sgemm accumulates onto it (beta = 1): no second pass. */
    if (bias) {
        const int par = !omp_in_parallel() && (size_t)g->OC * N >= CPU_PAR_MIN;
        #pragma omp parallel for schedule(static) if (par)
        for (int co = 0; co < g->OC; co++)
            for (size_t i = 0; i < N; i++) o[(size_t)co * HWo + i] = bias[co];
    }
    cpu_conv_im2col(g, in, r0, nr, Wo, col);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g->OC, (int)N, K, 1.0f, w, K, col,
                (int)N, bias ? 1.0f : 0.0f, o, (int)HWo);
}

/* out (OC, HWo) = w (OC, C) . in (C, HWo) + bias: a 1x1 stride-1 unpadded convolution. */
static void cpu_conv_pointwise(const cpu_conv_geom *g, float *out, const float *in,
                               const float *w, const float *bias, int HWo) {
    if (bias) {
        const int par = !omp_in_parallel() && (size_t)g->OC * HWo >= CPU_PAR_MIN;
        #pragma omp parallel for schedule(static) if (par)
        for (int co = 0; co < g->OC; co++)
            for (int i = 0; i < HWo; i++) out[(size_t)co * HWo + i] = bias[co];
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g->OC, HWo, g->C, 1.0f, w, g->C, in,
                HWo, bias ? 1.0f : 0.0f, out, HWo);
}

static void cpu_conv_check(const cpu_conv_geom *g) {
    assert(g->stride >= 1 && g->pad_t >= 0 && g->pad_l >= 0 && g->pad_b >= 0 && g->pad_r >= 0);
    assert(cpu_conv_out_h(g) >= 1 && cpu_conv_out_w(g) >= 1 && g->OC >= 1 && g->C >= 1);
    (void)g;
}

void cpu_conv2d_image(const cpu_conv_geom *g, float *out, const float *in, const float *w,
                      const float *bias, float *col, size_t col_floats) {
    cpu_conv_check(g);
    const int Ho = cpu_conv_out_h(g), Wo = cpu_conv_out_w(g);
    if (cpu_conv_is_pointwise(g)) {
        cpu_conv_pointwise(g, out, in, w, bias, Ho * Wo);
        return;
    }
    const size_t row_floats = cpu_conv_row_floats(g);
    assert(col && col_floats >= row_floats);
    /* The band height depends only on the layer and the scratch, never on the batch. */
    size_t rows = col_floats / row_floats;
    if (rows > (size_t)Ho) rows = (size_t)Ho;
    for (int r0 = 0; r0 < Ho; r0 += (int)rows) {
        const int nr = r0 + (int)rows <= Ho ? (int)rows : Ho - r0;
        cpu_conv_band(g, out, in, w, bias, col, r0, nr, Ho, Wo);
    }
}

/* ---- the backend op ------------------------------------------------------------------------ */

/* How a batch is cut: bands of `rows` output rows (`bands` per image), `band` floats of im2col
 * each, and `slots` band buffers in the scratch. A function of the shape only (never of the
 * thread count), so the scratch the caller sized always suffices. */
typedef struct {
    int rows, bands, slots;
    size_t band;
} cpu_conv_plan;

static cpu_conv_plan cpu_conv_plan_of(const cpu_conv_geom *g, int B) {
    cpu_conv_plan p = {0, 0, 0, 0};
    const size_t row = cpu_conv_row_floats(g);
    if (row == 0 || B < 1) return p; /* pointwise: no im2col */
    const int Ho = cpu_conv_out_h(g);
    size_t rows = CPU_CONV_BAND_FLOATS / row;
    if (rows < 1) rows = 1;
    if (rows > (size_t)Ho) rows = (size_t)Ho;
    p.rows = (int)rows;
    p.bands = (Ho + p.rows - 1) / p.rows;
    p.band = rows * row;
    const size_t units = (size_t)B * p.bands;
    size_t slots = CPU_CONV_SCRATCH_MAX / (p.band * sizeof(float));
    if (slots > CPU_CONV_SLOTS) slots = CPU_CONV_SLOTS;
    if (slots > units) slots = units;
    p.slots = slots < 1 ? 1 : (int)slots;
    return p;
}

static cpu_conv_geom cpu_conv_make(int C, int H, int W, int OC, int KH, int KW, int stride,
                                   int pad_t, int pad_l, int pad_b, int pad_r) {
    cpu_conv_geom g = {C, H, W, OC, KH, KW, stride, pad_t, pad_l, pad_b, pad_r};
    return g;
}

/* Bytes of scratch conv2d_forward needs for this shape: slots x band (0 for 1x1 stride-1
 * unpadded convolutions). */
static size_t cpu_conv2d_scratch_bytes(dt_backend *be, int B, int C, int H, int W, int OC, int KH,
                                       int KW, int stride, int pad_t, int pad_l, int pad_b,
                                       int pad_r) {
    const cpu_conv_geom g = cpu_conv_make(C, H, W, OC, KH, KW, stride, pad_t, pad_l, pad_b, pad_r);
    const cpu_conv_plan p = cpu_conv_plan_of(&g, B);
    return (size_t)p.slots * p.band * sizeof(float);
}

/* out (B,OC,Ho,Wo) = conv2d(inp (B,C,H,W), w) + bias in (image, band) units (see the top of the
 * file). scratch holds cpu_conv2d_scratch_bytes of this shape. */
static void cpu_conv2d_forward(dt_backend *be, float *out, const float *inp, const float *w,
                               const float *bias, void *scratch, int B, int C, int H, int W,
                               int OC, int KH, int KW, int stride, int pad_t, int pad_l,
                               int pad_b, int pad_r) {
    if (B <= 0) return;
    const cpu_conv_geom g = cpu_conv_make(C, H, W, OC, KH, KW, stride, pad_t, pad_l, pad_b, pad_r);
    cpu_conv_check(&g);
    const int Ho = cpu_conv_out_h(&g), Wo = cpu_conv_out_w(&g);
    const size_t in_img = (size_t)C * H * W, out_img = (size_t)OC * Ho * Wo;
    const int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
    if (cpu_conv_is_pointwise(&g)) {
        /* images across threads when there are enough of them, else OpenBLAS's threads */
        #pragma omp parallel for schedule(static) if (threads > 1 && B >= threads)
        for (int b = 0; b < B; b++)
            cpu_conv_pointwise(&g, out + (size_t)b * out_img, inp + (size_t)b * in_img, w, bias,
                               Ho * Wo);
        return;
    }
    const cpu_conv_plan p = cpu_conv_plan_of(&g, B);
    float *col = scratch;
    const int units = B * p.bands, workers = threads < p.slots ? threads : p.slots;
    if (workers < 2) {
        for (int u = 0; u < units; u++) {
            const int b = u / p.bands, r0 = u % p.bands * p.rows;
            cpu_conv_band(&g, out + (size_t)b * out_img, inp + (size_t)b * in_img, w, bias, col,
                          r0, Ho - r0 < p.rows ? Ho - r0 : p.rows, Ho, Wo);
        }
        return;
    }
    #pragma omp parallel num_threads(workers)
    {
        /* the runtime may grant fewer threads than asked: stride by what it gave */
        const int tid = omp_get_thread_num(), team = omp_get_num_threads();
        float *mine = col + (size_t)tid * p.band;
        for (int u = tid; u < units; u += team) {
            const int b = u / p.bands, r0 = u % p.bands * p.rows;
            cpu_conv_band(&g, out + (size_t)b * out_img, inp + (size_t)b * in_img, w, bias, mine,
                          r0, Ho - r0 < p.rows ? Ho - r0 : p.rows, Ho, Wo);
        }
    }
}

/* Installs conv2d_scratch_bytes and conv2d_forward into `be`; called once by
 * dt_backend_cpu_create, touches no other table entries. */
void cpu_conv_install(dt_backend *be) {
    be->conv2d_scratch_bytes = cpu_conv2d_scratch_bytes;
    be->conv2d_forward = cpu_conv2d_forward;
}
