/* vae.c — the SD VAE's encoder and decoder forward passes through the backend op table, and
 * their activation memory. Names, shapes and loading are in vae_load.c.
 *
 * Each pass is written once and run in two modes: a dry run that only measures (the largest
 * feature map, the attention buffers, the largest convolution scratch), which is what
 * vae_reserve allocates, and the real run, which then allocates nothing. Feature maps rotate
 * through three equal buffers x (the current map), y and z.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vae_internal.h"

#define VAE_MAX_BATCH 4096
#define VAE_MAX_IMAGE 8192

typedef struct {
    vae_model *v;
    dt_backend *be;
    int dry;     /* measure only: no op runs, buffers may be NULL */
    int B;
    float *x, *y, *z;
    /* what a dry run measured */
    size_t act_floats;         /* the largest feature map (B, C, H, W) */
    size_t qkv_floats;         /* (B, N, 3C) */
    size_t saved_floats;       /* attention_saved_floats */
    size_t att_scratch_floats; /* attention_scratch_floats */
    size_t scratch_bytes;      /* the largest conv2d_scratch_bytes */
    size_t logvar_floats;      /* (B, latent, h, w) host copy */
} vae_pass;

static void vae_note(size_t *max, size_t n) {
    if (n > *max) *max = n;
}

static void vae_rotate(float **a, float **b) {
    float *t = *a;
    *a = *b;
    *b = t;
}

/* out = conv(in) for in (B, C, H, W) with the given stride and padding (top, left, bottom, right). */
static void vae_conv_run(vae_pass *p, const vae_conv *c, float *out, const float *in, int H, int W,
                         int stride, int pt, int pl, int pb, int pr) {
    dt_backend *be = p->be;
    if (p->dry) {
        int Ho = (H + pt + pb - c->K) / stride + 1, Wo = (W + pl + pr - c->K) / stride + 1;
        vae_note(&p->act_floats, (size_t)p->B * c->OC * Ho * Wo);
        vae_note(&p->scratch_bytes, be->conv2d_scratch_bytes(be, p->B, c->C, H, W, c->OC, c->K,
                                                             c->K, stride, pt, pl, pb, pr));
        return;
    }
    be->conv2d_forward(be, out, in, c->w, c->b, p->v->conv_scratch, p->B, c->C, H, W, c->OC, c->K,
                       c->K, stride, pt, pl, pb, pr);
}

/* Size-preserving convolution: padding K/2 on every side (3x3 and 1x1 layers). */
static void vae_conv_same(vae_pass *p, const vae_conv *c, float *out, const float *in, int H, int W) {
    int pad = c->K / 2;
    vae_conv_run(p, c, out, in, H, W, 1, pad, pad, pad, pad);
}

/* out (B, C, HW) = GroupNorm(32, eps 1e-6)(in) with the layer's affine, then SiLU when silu. */
static void vae_norm_run(vae_pass *p, const vae_norm *n, float *out, const float *in, int HW,
                         int silu) {
    if (p->dry) {
        vae_note(&p->act_floats, (size_t)p->B * n->C * HW);
        return;
    }
    p->be->group_norm_forward(p->be, out, in, n->gamma, n->beta, p->B, n->C, HW, VAE_GROUPS,
                              VAE_EPS, silu);
}

/* x <- shortcut(x) + conv2(silu(norm2(conv1(silu(norm1(x)))))), C -> OC channels. */
static void vae_resnet_run(vae_pass *p, const vae_resnet *r, int H, int W) {
    const int HW = H * W;
    vae_norm_run(p, &r->norm1, p->y, p->x, HW, 1);
    vae_conv_same(p, &r->conv1, p->z, p->y, H, W);
    vae_norm_run(p, &r->norm2, p->z, p->z, HW, 1);
    vae_conv_same(p, &r->conv2, p->y, p->z, H, W);
    const float *shortcut = p->x;
    if (r->C != r->OC) {
        vae_conv_same(p, &r->shortcut, p->z, p->x, H, W);
        shortcut = p->z;
    }
    if (!p->dry) p->be->axpy(p->be, p->y, 1.0f, shortcut, (size_t)p->B * r->OC * HW);
    vae_rotate(&p->x, &p->y);
}

/* x (B, C, N) += attention over the N positions: GroupNorm, tokens (B, N, C), one head of size
 * C (scale 1/sqrt(C), as diffusers' mid-block attention with heads = 1), output projection. */
static void vae_attn_run(vae_pass *p, const vae_attn *a, int N) {
    dt_backend *be = p->be;
    const int B = p->B, C = a->C;
    vae_norm_run(p, &a->norm, p->y, p->x, N, 0);
    if (p->dry) {
        vae_note(&p->act_floats, (size_t)B * N * C);
        vae_note(&p->qkv_floats, (size_t)B * N * 3 * C);
        vae_note(&p->saved_floats, be->attention_saved_floats(B, N, 1, C));
        vae_note(&p->att_scratch_floats, be->attention_scratch_floats(B, N, 1, C));
        return;
    }
    vae_model *v = p->v;
    be->transpose(be, p->z, p->y, B, C, N);
    be->matmul_forward(be, v->qkv, p->z, a->qkv_w, a->qkv_b, B * N, C, 3 * C);
    be->attention_forward(be, p->y, v->att_saved, v->att_scratch, v->qkv, B, N, 1, C);
    be->matmul_forward(be, p->z, p->y, a->out_w, a->out_b, B * N, C, C);
    be->transpose(be, p->y, p->z, B, N, C);
    be->axpy(be, p->x, 1.0f, p->y, (size_t)B * C * N);
}

static void vae_mid_run(vae_pass *p, const vae_coder *cd, int H, int W) {
    vae_resnet_run(p, &cd->mid_res0, H, W);
    vae_attn_run(p, &cd->mid_attn, H * W);
    vae_resnet_run(p, &cd->mid_res1, H, W);
}

/* images (B, 3, H, W) -> mean (B, latent, H/f, W/f) times VAE_SCALE (backend memory), and the
 * unclamped logvar (same shape) left in p->x. */
static void vae_encoder_run(vae_pass *p, const float *images, int H, int W, float *mean) {
    const vae_model *v = p->v;
    const vae_config *c = &v->cfg;
    const vae_coder *e = &v->enc;
    vae_conv_same(p, &e->conv_in, p->x, images, H, W);
    for (int i = 0; i < c->levels; i++) {
        for (int j = 0; j < c->layers_per_block; j++) vae_resnet_run(p, &e->res[i][j], H, W);
        if (i < c->levels - 1) {
            /* Downsample2D: zero padding of one row below and one column right, 3x3 stride 2 */
            vae_conv_run(p, &e->resample[i], p->y, p->x, H, W, 2, 0, 0, 1, 1);
            vae_rotate(&p->x, &p->y);
            H /= 2;
            W /= 2;
        }
    }
    vae_mid_run(p, e, H, W);
    vae_norm_run(p, &e->norm_out, p->y, p->x, H * W, 1);
    vae_conv_same(p, &e->conv_out, p->z, p->y, H, W);
    /* quant_conv, split: its first latent output channels are the mean, the rest the logvar */
    const int lat = c->latent_channels;
    vae_conv mean_part = v->quant, logvar_part = v->quant;
    mean_part.OC = logvar_part.OC = lat;
    logvar_part.w = v->quant.w + (size_t)lat * 2 * lat;
    logvar_part.b = v->quant.b + lat;
    vae_conv_same(p, &mean_part, mean, p->z, H, W);
    vae_conv_same(p, &logvar_part, p->x, p->z, H, W);
    size_t n = (size_t)p->B * lat * H * W;
    if (p->dry) vae_note(&p->logvar_floats, n);
    else p->be->scale(p->be, mean, VAE_SCALE, n);
}

/* z (B, latent, h, w) scaled latents -> images (B, 3, f h, f w). */
static void vae_decoder_run(vae_pass *p, const float *z, int h, int w, float *images) {
    const vae_model *v = p->v;
    const vae_config *c = &v->cfg;
    const vae_coder *d = &v->dec;
    size_t n = (size_t)p->B * c->latent_channels * h * w;
    if (p->dry) {
        vae_note(&p->act_floats, n);
    } else {
        p->be->copy(p->be, p->z, z, n * sizeof(float));
        p->be->scale(p->be, p->z, 1.0f / VAE_SCALE, n);
    }
    vae_conv_same(p, &v->post_quant, p->y, p->z, h, w);
    vae_conv_same(p, &d->conv_in, p->x, p->y, h, w);
    vae_mid_run(p, d, h, w);
    for (int i = 0; i < c->levels; i++) {
        for (int j = 0; j < c->layers_per_block + 1; j++) vae_resnet_run(p, &d->res[i][j], h, w);
        if (i < c->levels - 1) {
            const vae_conv *up = &d->resample[i];
            if (p->dry) vae_note(&p->act_floats, (size_t)p->B * up->C * 4 * h * w);
            else p->be->upsample2x_forward(p->be, p->y, p->x, p->B, up->C, h, w);
            h *= 2;
            w *= 2;
            vae_conv_same(p, up, p->z, p->y, h, w);
            vae_rotate(&p->x, &p->z);
        }
    }
    vae_norm_run(p, &d->norm_out, p->y, p->x, h * w, 1);
    vae_conv_same(p, &d->conv_out, images, p->y, h, w);
}

/* Floats rounded up to a 256-byte boundary, so every piece of the block stays aligned. */
static size_t vae_align(size_t floats) {
    return (floats + 63) & ~(size_t)63;
}

/* Measures both passes at (max_batch, image_size). */
static vae_pass vae_measure(const vae_model *v, int max_batch, int image_size) {
    vae_pass p;
    memset(&p, 0, sizeof p);
    p.v = (vae_model *)v;
    p.be = v->be;
    p.dry = 1;
    p.B = max_batch;
    vae_encoder_run(&p, NULL, image_size, image_size, NULL);
    const int lat = image_size / v->cfg.downsample;
    vae_decoder_run(&p, NULL, lat, lat, NULL);
    return p;
}

static size_t vae_block_bytes(const vae_pass *p) {
    size_t floats = 3 * vae_align(p->act_floats) + vae_align(p->qkv_floats) +
                    vae_align(p->saved_floats) + vae_align(p->att_scratch_floats);
    return floats * sizeof(float) + vae_align((p->scratch_bytes + 3) / 4) * sizeof(float);
}

/* The sizes vae_reserve accepts. */
static int vae_size_ok(const vae_model *v, int max_batch, int image_size) {
    const int f = v->cfg.downsample;
    return max_batch >= 1 && max_batch <= VAE_MAX_BATCH && image_size >= f &&
           image_size <= VAE_MAX_IMAGE && image_size % f == 0;
}

size_t vae_reserve_bytes(const vae_model *v, int max_batch, int image_size) {
    if (!vae_size_ok(v, max_batch, image_size)) return 0;
    vae_pass p = vae_measure(v, max_batch, image_size);
    return vae_block_bytes(&p);
}

static void vae_release_acts(vae_model *v) {
    if (v->act_block) v->be->free(v->be, v->act_block);
    free(v->host_logvar);
    v->act_block = NULL;
    v->host_logvar = NULL;
    v->act_bytes = 0;
    v->max_batch = v->image_size = 0;
}

int vae_reserve(vae_model *v, int max_batch, int image_size, char *err, size_t errlen) {
    const int f = v->cfg.downsample;
    if (!vae_size_ok(v, max_batch, image_size)) {
        snprintf(err, errlen, "VAE reservation of %d images of %d px: the batch must be 1..%d and "
                 "the image size a multiple of %d up to %d", max_batch, image_size, VAE_MAX_BATCH,
                 f, VAE_MAX_IMAGE);
        return -1;
    }
    if (max_batch <= v->max_batch && image_size <= v->image_size) return 0;
    if (max_batch < v->max_batch) max_batch = v->max_batch;
    if (image_size < v->image_size) image_size = v->image_size;
    vae_release_acts(v);
    vae_pass p = vae_measure(v, max_batch, image_size);
    size_t bytes = vae_block_bytes(&p);
    dt_backend *be = v->be;
    v->act_block = be->alloc(be, bytes);
    v->host_logvar = malloc(p.logvar_floats * sizeof(float));
    if (!v->act_block || !v->host_logvar) {
        vae_release_acts(v);
        snprintf(err, errlen, "out of memory for the VAE's activations: %zu bytes on %s for %d "
                 "images of %d px (plus %zu bytes of host memory)", bytes, be->name, max_batch,
                 image_size, p.logvar_floats * sizeof(float));
        return -1;
    }
    float *next = v->act_block;
    for (int i = 0; i < 3; i++) {
        v->act[i] = next;
        next += vae_align(p.act_floats);
    }
    v->qkv = next;
    next += vae_align(p.qkv_floats);
    v->att_saved = next;
    next += vae_align(p.saved_floats);
    v->att_scratch = next;
    next += vae_align(p.att_scratch_floats);
    v->conv_scratch = next;
    v->act_bytes = bytes;
    v->max_batch = max_batch;
    v->image_size = image_size;
    return 0;
}

/* A real pass over B images of H x W pixels, or NULL outside the reservation. */
static int vae_pass_begin(vae_pass *p, vae_model *v, int B, int H, int W) {
    const int f = v->cfg.downsample;
    if (B < 1 || B > v->max_batch || H < f || W < f || H > v->image_size || W > v->image_size ||
        H % f || W % f)
        return -1;
    memset(p, 0, sizeof *p);
    p->v = v;
    p->be = v->be;
    p->B = B;
    p->x = v->act[0];
    p->y = v->act[1];
    p->z = v->act[2];
    return 0;
}

int vae_encode(vae_model *v, const float *images, int B, int H, int W, float *mean, float *std) {
    vae_pass p;
    if (vae_pass_begin(&p, v, B, H, W)) return -1;
    vae_encoder_run(&p, images, H, W, mean);
    /* std = exp(0.5 clamp(logvar, -30, 20)) has no backend op: the (B, latent, h, w) logvar,
     * 1/(3 f^2) of the image's size, makes a round trip through host memory. */
    const size_t n = (size_t)B * v->cfg.latent_channels * (H / v->cfg.downsample) *
                     (W / v->cfg.downsample);
    dt_backend *be = v->be;
    be->download(be, v->host_logvar, p.x, n * sizeof(float));
    int rc = be->sync(be);
    if (rc) return rc;
    for (size_t i = 0; i < n; i++) {
        float lv = fminf(fmaxf(v->host_logvar[i], -30.0f), 20.0f);
        v->host_logvar[i] = VAE_SCALE * expf(0.5f * lv);
    }
    be->upload(be, std, v->host_logvar, n * sizeof(float));
    return be->sync(be);
}

int vae_decode(vae_model *v, const float *z, int B, int h, int w, float *images) {
    vae_pass p;
    const int f = v->cfg.downsample;
    if (h > VAE_MAX_IMAGE / f || w > VAE_MAX_IMAGE / f) return -1;
    if (vae_pass_begin(&p, v, B, h * f, w * f)) return -1;
    vae_decoder_run(&p, z, h, w, images);
    return v->be->sync(v->be);
}

void vae_free(vae_model *v) {
    if (!v) return;
    vae_release_acts(v);
    if (v->params) v->be->free(v->be, v->params);
    free(v);
}
