/* inception_ops.c — convolution (im2col + sgemm), pools and the input resize of the FID
 * Inception network, for one image at a time. */
#include "inception_ops.h"

#include <cblas.h>
#include <float.h>
#include <string.h>

/* Rows [r0, r0 + nr) of the im2col matrix of in (cin, H, W) for conv c: col (K, nr * Wo) with
 * K = cin * kh * kw in PyTorch's weight order (channel, kernel row, kernel column); taps that
 * fall in the padding are zero. */
static void inception_im2col(const inception_conv *c, const float *in, int H, int W, int r0,
                             int nr, int Wo, float *col) {
    const int s = c->stride, N = nr * Wo;
    for (int ci = 0; ci < c->cin; ci++)
        for (int ki = 0; ki < c->kh; ki++)
            for (int kj = 0; kj < c->kw; kj++) {
                float *dst = col + ((size_t)(ci * c->kh + ki) * c->kw + kj) * N;
                const int dx = kj - c->pw;
                /* Columns ox with 0 <= ox * s + dx < W: a contiguous range [lo, hi). */
                int lo = dx >= 0 ? 0 : (-dx + s - 1) / s;
                int hi = W - dx <= 0 ? 0 : (W - dx - 1) / s + 1;
                if (hi > Wo) hi = Wo;
                if (lo > hi) lo = hi;
                for (int r = 0; r < nr; r++) {
                    float *row = dst + (size_t)r * Wo;
                    const int iy = (r0 + r) * s - c->ph + ki;
                    if (iy < 0 || iy >= H) { memset(row, 0, sizeof(float) * Wo); continue; }
                    const float *src = in + ((size_t)ci * H + iy) * W + dx;
                    for (int ox = 0; ox < lo; ox++) row[ox] = 0.0f;
                    if (s == 1) memcpy(row + lo, src + lo, sizeof(float) * (hi - lo));
                    else for (int ox = lo; ox < hi; ox++) row[ox] = src[ox * s];
                    for (int ox = hi; ox < Wo; ox++) row[ox] = 0.0f;
                }
            }
}

void inception_op_conv(const inception_conv *c, const float *in, int H, int W, float *out,
                       float *col, size_t col_floats) {
    const int Ho = inception_out_len(H, c->kh, c->stride, c->ph);
    const int Wo = inception_out_len(W, c->kw, c->stride, c->pw);
    const int K = c->cin * c->kh * c->kw, HWo = Ho * Wo;
    if (c->kh == 1 && c->kw == 1 && c->stride == 1 && c->ph == 0 && c->pw == 0) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, c->cout, HWo, K, 1.0f, c->weight,
                    K, in, HWo, 0.0f, out, HWo);
    } else {
        /* Bands of whole output rows keep the im2col matrix within col_floats (and in cache)
         * whatever the image size; the band height depends only on the layer, never on n. */
        int rows = (int)(col_floats / ((size_t)K * Wo));
        if (rows < 1) rows = 1;
        if (rows > Ho) rows = Ho;
        for (int r0 = 0; r0 < Ho; r0 += rows) {
            const int nr = r0 + rows <= Ho ? rows : Ho - r0;
            inception_im2col(c, in, H, W, r0, nr, Wo, col);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, c->cout, nr * Wo, K, 1.0f,
                        c->weight, K, col, nr * Wo, 0.0f, out + (size_t)r0 * Wo, HWo);
        }
    }
    for (int co = 0; co < c->cout; co++) {
        float *o = out + (size_t)co * HWo;
        const float b = c->bias[co];
        for (int i = 0; i < HWo; i++) {
            float v = o[i] + b;
            o[i] = v > 0.0f ? v : 0.0f;
        }
    }
}

void inception_op_maxpool3(const float *in, int C, int H, int W, int stride, int pad, float *out) {
    const int Ho = inception_out_len(H, 3, stride, pad), Wo = inception_out_len(W, 3, stride, pad);
    for (int ch = 0; ch < C; ch++) {
        const float *p = in + (size_t)ch * H * W;
        float *o = out + (size_t)ch * Ho * Wo;
        for (int oy = 0; oy < Ho; oy++)
            for (int ox = 0; ox < Wo; ox++) {
                float m = -FLT_MAX;
                for (int ky = 0; ky < 3; ky++) {
                    const int iy = oy * stride - pad + ky;
                    if (iy < 0 || iy >= H) continue;
                    for (int kx = 0; kx < 3; kx++) {
                        const int ix = ox * stride - pad + kx;
                        if (ix >= 0 && ix < W && p[iy * W + ix] > m) m = p[iy * W + ix];
                    }
                }
                o[oy * Wo + ox] = m;
            }
    }
}

void inception_op_avgpool3(const float *in, int C, int H, int W, float *out) {
    for (int ch = 0; ch < C; ch++) {
        const float *p = in + (size_t)ch * H * W;
        float *o = out + (size_t)ch * H * W;
        for (int y = 0; y < H; y++) {
            const int y0 = y > 0 ? y - 1 : 0, y1 = y + 1 < H ? y + 1 : H - 1;
            for (int x = 0; x < W; x++) {
                const int x0 = x > 0 ? x - 1 : 0, x1 = x + 1 < W ? x + 1 : W - 1;
                float sum = 0.0f;
                for (int iy = y0; iy <= y1; iy++)
                    for (int ix = x0; ix <= x1; ix++) sum += p[iy * W + ix];
                o[y * W + x] = sum / (float)((y1 - y0 + 1) * (x1 - x0 + 1));
            }
        }
    }
}

void inception_op_mean(const float *in, int C, int HW, float *out) {
    for (int ch = 0; ch < C; ch++) {
        double sum = 0.0;
        for (int i = 0; i < HW; i++) sum += in[(size_t)ch * HW + i];
        out[ch] = (float)(sum / HW);
    }
}

/* PyTorch's linear source index (area_pixel_compute_source_index, align_corners=False): the
 * lower neighbour i0, the step to the upper one (0 at the last pixel) and its weight. */
static void inception_src_index(int dst, float scale, int in_len, int *i0, int *step, float *w1) {
    float src = scale * ((float)dst + 0.5f) - 0.5f;
    if (src < 0.0f) src = 0.0f;
    *i0 = (int)src;
    if (*i0 > in_len - 1) *i0 = in_len - 1;
    *step = *i0 < in_len - 1 ? 1 : 0;
    *w1 = src - (float)*i0;
}

void inception_op_resize(const float *in, int H, int W, float *out, int Ho, int Wo) {
    const float sy = (float)H / (float)Ho, sx = (float)W / (float)Wo;
    for (int oy = 0; oy < Ho; oy++) {
        int y0, ystep;
        float wy1;
        inception_src_index(oy, sy, H, &y0, &ystep, &wy1);
        const float wy0 = 1.0f - wy1;
        const float *r0 = in + (size_t)y0 * W, *r1 = r0 + (size_t)ystep * W;
        for (int ox = 0; ox < Wo; ox++) {
            int x0, xstep;
            float wx1;
            inception_src_index(ox, sx, W, &x0, &xstep, &wx1);
            const float wx0 = 1.0f - wx1;
            /* pytorch-fid's input is in [0, 1]: the engine's [-1, 1] maps there first. */
            const float a = (r0[x0] + 1.0f) * 0.5f, b = (r0[x0 + xstep] + 1.0f) * 0.5f;
            const float c = (r1[x0] + 1.0f) * 0.5f, d = (r1[x0 + xstep] + 1.0f) * 0.5f;
            const float p = wy0 * (wx0 * a + wx1 * b) + wy1 * (wx0 * c + wx1 * d);
            out[(size_t)oy * Wo + ox] = 2.0f * p - 1.0f;
        }
    }
}
