/* cuda_embed.cu — embeddings and image <-> token layouts on the GPU; same semantics as
 * kernels/cpu/cpu_embed.c.
 *
 * Index formulas (hp = H/p, wp = W/p, token n = hh*wp + ww, patch pixel (i, j)):
 *   patchify:   out[b][n][(c*p + i)*p + j]  = img[b][c][hh*p + i][ww*p + j]   (conv weight order)
 *   unpatchify: img[b][c][hh*p + i][ww*p + j] = tokens[b][n][(i*p + j)*C + c] (channel fastest)
 *
 * Layout kernels put samples on grid y and one sample's C*H*W elements on grid x, each thread
 * owning one element of the tensor it writes (coalesced stores, no races). Offsets inside one
 * sample are int: a single image or token matrix is assumed to hold fewer than 2^31 floats;
 * sample offsets are size_t.
 */
#include <math.h>

#include "cuda_internal.h"

/* out[b][d] = table[labels[b]][d]. A negative label (a caller bug the CPU asserts on) gives a
 * zero row instead of an out-of-bounds read. */
static __global__ void cuda_embed_lookup_kernel(float *out, const float *table,
                                                const int32_t *labels, int B, int D) {
    for (int b = blockIdx.y; b < B; b += gridDim.y) {
        const int32_t lab = labels[b];
        const float *src = table + (size_t)(lab < 0 ? 0 : lab) * D;
        float *dst = out + (size_t)b * D;
        for (int d = blockIdx.x * blockDim.x + threadIdx.x; d < D; d += gridDim.x * blockDim.x)
            dst[d] = lab < 0 ? 0.0f : src[d];
    }
}

/* dtable[labels[b]][d] += dout[b][d]. Labels repeat inside a batch, so only the first sample
 * carrying a label writes its row: it adds the rows of every sample with that label in batch
 * order, exactly the CPU's sequence of additions (deterministic, no atomics). The O(B) label
 * scan per thread reads the same address across a warp and is cheap for batch-sized B. */
static __global__ void cuda_embed_backward_kernel(float *dtable, const float *dout,
                                                  const int32_t *labels, int B, int D) {
    for (int b = blockIdx.y; b < B; b += gridDim.y) {
        const int32_t lab = labels[b];
        if (lab < 0) continue;
        int first = 1;
        for (int j = 0; j < b && first; j++) first = labels[j] != lab;
        if (!first) continue;
        for (int d = blockIdx.x * blockDim.x + threadIdx.x; d < D; d += gridDim.x * blockDim.x) {
            float *dst = dtable + (size_t)lab * D + d;
            float acc = *dst;
            for (int j = b; j < B; j++)
                if (labels[j] == lab) acc += dout[(size_t)j * D + d];
            *dst = acc;
        }
    }
}

/* out[b] = [cos(t f_k), sin(t f_k)], f_k = expf(-ln(10000) k / half), in float and in the CPU's
 * operation order so embeddings agree up to libm rounding. */
static __global__ void cuda_embed_timestep_kernel(float *out, const int32_t *t, int B, int half) {
    const float neg_log_period = (float)-9.21034037197618273607; /* -ln(10000) */
    for (int b = blockIdx.y; b < B; b += gridDim.y) {
        const float tb = (float)t[b];
        float *o = out + (size_t)b * 2 * half;
        for (int k = blockIdx.x * blockDim.x + threadIdx.x; k < half; k += gridDim.x * blockDim.x) {
            float freq = expf(neg_log_period * (float)k / (float)half);
            float arg = tb * freq;
            o[k] = cosf(arg);
            o[half + k] = sinf(arg);
        }
    }
}

/* One thread per output element e = n*F + (c*p + i)*p + j of sample b (F = C*p*p). */
static __global__ void cuda_embed_patchify_kernel(float *out, const float *img, int B, int C,
                                                  int H, int W, int p) {
    const int wp = W / p, pp = p * p, F = C * pp, per = C * H * W;
    for (int b = blockIdx.y; b < B; b += gridDim.y) {
        const float *src = img + (size_t)b * per;
        float *dst = out + (size_t)b * per;
        for (int e = blockIdx.x * blockDim.x + threadIdx.x; e < per; e += gridDim.x * blockDim.x) {
            const int n = e / F, f = e - n * F;
            const int c = f / pp, ij = f - c * pp;
            const int i = ij / p, j = ij - i * p;
            const int hh = n / wp, ww = n - hh * wp;
            dst[e] = src[((size_t)c * H + hh * p + i) * W + ww * p + j];
        }
    }
}

/* One thread per image element e = (c*H + y)*W + x of sample b. */
static __global__ void cuda_embed_unpatchify_kernel(float *img, const float *tokens, int B, int C,
                                                    int H, int W, int p) {
    const int wp = W / p, F = p * p * C, HW = H * W, per = C * HW;
    for (int b = blockIdx.y; b < B; b += gridDim.y) {
        const float *src = tokens + (size_t)b * per;
        float *dst = img + (size_t)b * per;
        for (int e = blockIdx.x * blockDim.x + threadIdx.x; e < per; e += gridDim.x * blockDim.x) {
            const int c = e / HW, yx = e - c * HW;
            const int y = yx / W, x = yx - y * W;
            const int n = (y / p) * wp + x / p;
            dst[e] = src[(size_t)n * F + ((y % p) * p + x % p) * C + c];
        }
    }
}

/* One thread per token element e = n*F + (i*p + j)*C + c of sample b: the adjoint of unpatchify.
 * The map is a bijection, so each thread's += owns its element. */
static __global__ void cuda_embed_unpatchify_backward_kernel(float *dtokens, const float *dimg,
                                                             int B, int C, int H, int W, int p) {
    const int wp = W / p, F = p * p * C, per = C * H * W;
    for (int b = blockIdx.y; b < B; b += gridDim.y) {
        const float *src = dimg + (size_t)b * per;
        float *dst = dtokens + (size_t)b * per;
        for (int e = blockIdx.x * blockDim.x + threadIdx.x; e < per; e += gridDim.x * blockDim.x) {
            const int n = e / F, f = e - n * F;
            const int ij = f / C, c = f - ij * C;
            const int i = ij / p, j = ij - i * p;
            const int hh = n / wp, ww = n - hh * wp;
            dst[e] += src[((size_t)c * H + hh * p + i) * W + ww * p + j];
        }
    }
}

/* out (B,D) = table[labels[b]]. */
static void cuda_embed_embedding_forward(dt_backend *be, float *out, const float *table,
                                         const int32_t *labels, int B, int D) {
    CUDA_OP_BEGIN(be, cx);
    if (B <= 0 || D <= 0) return;
    cuda_embed_lookup_kernel<<<cuda_sample_grid(B, (size_t)D), CUDA_THREADS, 0, cx->stream>>>(
        out, table, labels, B, D);
    cuda_check_launch(cx, "embedding_forward");
}

/* dtable[labels[b]] (D) += dout[b] (D), duplicate labels summed in batch order. */
static void cuda_embed_embedding_backward(dt_backend *be, float *dtable, const float *dout,
                                          const int32_t *labels, int B, int D) {
    CUDA_OP_BEGIN(be, cx);
    if (B <= 0 || D <= 0) return;
    cuda_embed_backward_kernel<<<cuda_sample_grid(B, (size_t)D), CUDA_THREADS, 0, cx->stream>>>(
        dtable, dout, labels, B, D);
    cuda_check_launch(cx, "embedding_backward");
}

/* out (B,dim) = [cos(t f_k), sin(t f_k)]; dim must be even (the CPU asserts it). */
static void cuda_embed_timestep_embedding(dt_backend *be, float *out, const int32_t *t, int B,
                                          int dim) {
    CUDA_OP_BEGIN(be, cx);
    if (dim % 2 != 0) {
        cuda_fail(cx, "timestep_embedding", "dim must be even");
        return;
    }
    if (B <= 0 || dim <= 0) return;
    cuda_embed_timestep_kernel<<<cuda_sample_grid(B, (size_t)dim / 2), CUDA_THREADS, 0,
                                 cx->stream>>>(out, t, B, dim / 2);
    cuda_check_launch(cx, "timestep_embedding");
}

/* 0 when p divides H and W; otherwise records the failure of `op` (the CPU asserts). */
static int cuda_embed_check_patch(cuda_ctx *cx, const char *op, int H, int W, int p) {
    if (p > 0 && H % p == 0 && W % p == 0) return 0;
    return cuda_fail(cx, op, "patch size must be positive and divide H and W");
}

/* img (B,C,H,W) -> out (B, (H/p)(W/p), C*p*p). */
static void cuda_embed_patchify(dt_backend *be, float *out, const float *img, int B, int C, int H,
                                int W, int p) {
    CUDA_OP_BEGIN(be, cx);
    if (cuda_embed_check_patch(cx, "patchify", H, W, p)) return;
    if (B <= 0 || (size_t)C * H * W == 0) return;
    cuda_embed_patchify_kernel<<<cuda_sample_grid(B, (size_t)C * H * W), CUDA_THREADS, 0,
                                 cx->stream>>>(out, img, B, C, H, W, p);
    cuda_check_launch(cx, "patchify");
}

/* tokens (B,N,p*p*C) -> img (B,C,H,W). */
static void cuda_embed_unpatchify(dt_backend *be, float *img, const float *tokens, int B, int C,
                                  int H, int W, int p) {
    CUDA_OP_BEGIN(be, cx);
    if (cuda_embed_check_patch(cx, "unpatchify", H, W, p)) return;
    if (B <= 0 || (size_t)C * H * W == 0) return;
    cuda_embed_unpatchify_kernel<<<cuda_sample_grid(B, (size_t)C * H * W), CUDA_THREADS, 0,
                                   cx->stream>>>(img, tokens, B, C, H, W, p);
    cuda_check_launch(cx, "unpatchify");
}

/* dtokens (B,N,p*p*C) += dimg (B,C,H,W) rearranged. */
static void cuda_embed_unpatchify_backward(dt_backend *be, float *dtokens, const float *dimg,
                                           int B, int C, int H, int W, int p) {
    CUDA_OP_BEGIN(be, cx);
    if (cuda_embed_check_patch(cx, "unpatchify_backward", H, W, p)) return;
    if (B <= 0 || (size_t)C * H * W == 0) return;
    cuda_embed_unpatchify_backward_kernel<<<cuda_sample_grid(B, (size_t)C * H * W), CUDA_THREADS,
                                            0, cx->stream>>>(dtokens, dimg, B, C, H, W, p);
    cuda_check_launch(cx, "unpatchify_backward");
}

/* Installs embedding_*, timestep_embedding, patchify, unpatchify(_backward) into `be`; called
 * once by the CUDA backend's creator, touches no other table entries. */
void cuda_embed_install(dt_backend *be) {
    be->embedding_forward = cuda_embed_embedding_forward;
    be->embedding_backward = cuda_embed_embedding_backward;
    be->timestep_embedding = cuda_embed_timestep_embedding;
    be->patchify = cuda_embed_patchify;
    be->unpatchify = cuda_embed_unpatchify;
    be->unpatchify_backward = cuda_embed_unpatchify_backward;
}
