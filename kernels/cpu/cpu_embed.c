/* cpu_embed.c — embeddings and image <-> token layouts.
 *
 * Index formulas (hp = H/p, wp = W/p, token n = hh*wp + ww, patch pixel (i, j)):
 *   patchify:   out[b][n][(c*p + i)*p + j]  = img[b][c][hh*p + i][ww*p + j]   (conv weight order)
 *   unpatchify: img[b][c][hh*p + i][ww*p + j] = tokens[b][n][(i*p + j)*C + c] (channel fastest)
 */
#include <assert.h>
#include <math.h>
#include <string.h>

#include "cpu_internal.h"

/* out (B,D) = table[labels[b]] (D floats per row). */
static void cpu_embedding_forward(dt_backend *be, float *out, const float *table,
                                  const int32_t *labels, int B, int D) {
    for (int b = 0; b < B; b++) {
        assert(labels[b] >= 0);
        memcpy(out + (size_t)b * D, table + (size_t)labels[b] * D, (size_t)D * sizeof(float));
    }
}

/* dtable[labels[b]] += dout[b]. Labels repeat, so tasks split D, and within a task samples are
 * added in batch order (deterministic). */
static void cpu_embedding_backward(dt_backend *be, float *dtable, const float *dout,
                                   const int32_t *labels, int B, int D) {
    #pragma omp parallel for schedule(static) if ((size_t)B * D >= CPU_PAR_MIN)
    for (int d = 0; d < D; d++) {
        for (int b = 0; b < B; b++) dtable[(size_t)labels[b] * D + d] += dout[(size_t)b * D + d];
    }
}

/* out (B,dim) = [cos(t f_k), sin(t f_k)], f_k = exp(-ln(10000) k / half), computed in float the
 * way PyTorch does (float frequencies, float t * f_k) so embeddings match the reference bit for
 * bit up to libm differences. */
static void cpu_timestep_embedding(dt_backend *be, float *out, const int32_t *t, int B, int dim) {
    assert(dim % 2 == 0);
    const int half = dim / 2;
    const float neg_log_period = (float)-9.21034037197618273607; /* -ln(10000) */
    for (int b = 0; b < B; b++) {
        float tb = (float)t[b];
        float *o = out + (size_t)b * dim;
        for (int k = 0; k < half; k++) {
            float freq = expf(neg_log_period * (float)k / (float)half);
            float arg = tb * freq;
            o[k] = cosf(arg);
            o[half + k] = sinf(arg);
        }
    }
}

/* img (B,C,H,W) -> out (B,N,C*p*p), see the index formula at the top. */
static void cpu_patchify(dt_backend *be, float *out, const float *img, int B, int C, int H, int W,
                         int p) {
    assert(p > 0 && H % p == 0 && W % p == 0);
    const int hp = H / p, wp = W / p, N = hp * wp, F = C * p * p;
    #pragma omp parallel for collapse(2) schedule(static) if ((size_t)B * C * H * W >= CPU_PAR_MIN)
    for (int b = 0; b < B; b++) {
        for (int n = 0; n < N; n++) {
            int hh = n / wp, ww = n % wp;
            float *row = out + ((size_t)b * N + n) * F;
            for (int c = 0; c < C; c++)
                for (int i = 0; i < p; i++)
                    for (int j = 0; j < p; j++)
                        row[(c * p + i) * p + j] =
                            img[(((size_t)b * C + c) * H + hh * p + i) * W + ww * p + j];
        }
    }
}

/* img (B,C,H,W) <- tokens (B,N,p*p*C), channel fastest inside a patch. */
static void cpu_unpatchify(dt_backend *be, float *img, const float *tokens, int B, int C, int H,
                           int W, int p) {
    assert(p > 0 && H % p == 0 && W % p == 0);
    const int hp = H / p, wp = W / p, N = hp * wp, F = p * p * C;
    #pragma omp parallel for collapse(3) schedule(static) if ((size_t)B * C * H * W >= CPU_PAR_MIN)
    for (int b = 0; b < B; b++) {
        for (int c = 0; c < C; c++) {
            for (int y = 0; y < H; y++) {
                float *dst = img + (((size_t)b * C + c) * H + y) * W;
                const float *tok = tokens + ((size_t)b * N + (size_t)(y / p) * wp) * F +
                                   (size_t)(y % p) * p * C + c;
                for (int x = 0; x < W; x++)
                    dst[x] = tok[(size_t)(x / p) * F + (size_t)(x % p) * C];
            }
        }
    }
}

/* dtokens (B,N,p*p*C) += dimg (B,C,H,W) rearranged: the adjoint of unpatchify. Every token
 * element has exactly one image element, so the split over (b, c, y) never races. */
static void cpu_unpatchify_backward(dt_backend *be, float *dtokens, const float *dimg, int B,
                                    int C, int H, int W, int p) {
    assert(p > 0 && H % p == 0 && W % p == 0);
    const int hp = H / p, wp = W / p, N = hp * wp, F = p * p * C;
    #pragma omp parallel for collapse(3) schedule(static) if ((size_t)B * C * H * W >= CPU_PAR_MIN)
    for (int b = 0; b < B; b++) {
        for (int c = 0; c < C; c++) {
            for (int y = 0; y < H; y++) {
                const float *src = dimg + (((size_t)b * C + c) * H + y) * W;
                float *tok = dtokens + ((size_t)b * N + (size_t)(y / p) * wp) * F +
                             (size_t)(y % p) * p * C + c;
                for (int x = 0; x < W; x++)
                    tok[(size_t)(x / p) * F + (size_t)(x % p) * C] += src[x];
            }
        }
    }
}

/* Installs embedding_*, timestep_embedding, patchify, unpatchify(_backward) into `be`; called once
 * by dt_backend_cpu_create, touches no other table entries. */
void cpu_embed_install(dt_backend *be) {
    be->embedding_forward = cpu_embedding_forward;
    be->embedding_backward = cpu_embedding_backward;
    be->timestep_embedding = cpu_timestep_embedding;
    be->patchify = cpu_patchify;
    be->unpatchify = cpu_unpatchify;
    be->unpatchify_backward = cpu_unpatchify_backward;
}
