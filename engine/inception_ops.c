/* inception_ops.c — convolution (the shared CPU core of kernels/cpu_conv.h, then ReLU), pools
 * and the input resize of the FID Inception network, for one image at a time. */
#include "inception_ops.h"

#include <float.h>
#include <string.h>

#include "cpu_conv.h"

void inception_op_conv(const inception_conv *c, const float *in, int H, int W, float *out,
                       float *col, size_t col_floats) {
    const cpu_conv_geom g = {c->cin, H, W, c->cout, c->kh, c->kw, c->stride,
                             c->ph, c->pw, c->ph, c->pw};
    cpu_conv2d_image(&g, out, in, c->weight, c->bias, col, col_floats);
    const size_t n = (size_t)c->cout * cpu_conv_out_h(&g) * cpu_conv_out_w(&g);
    for (size_t i = 0; i < n; i++) out[i] = out[i] > 0.0f ? out[i] : 0.0f;
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
