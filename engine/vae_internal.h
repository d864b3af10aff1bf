/* vae_internal.h — the VAE's layers as views into its one parameter block, shared by
 * vae_load.c (names, shapes, loading) and vae.c (activations and the forward passes).
 * Not part of the public contract (vae.h).
 */
#ifndef DT_VAE_INTERNAL_H
#define DT_VAE_INTERNAL_H

#include "vae.h"

#define VAE_MAX_LAYERS 8 /* resnets per encoder level; the decoder has one more */

/* A convolution (or, with K = 1, a per-pixel linear layer). Pointers into vae_model.params. */
typedef struct {
    float *w; /* (OC, C, K, K) */
    float *b; /* (OC) */
    int C, OC, K;
} vae_conv;

typedef struct {
    float *gamma; /* (C) */
    float *beta;  /* (C) */
    int C;
} vae_norm;

/* ResnetBlock2D: out = shortcut(x) + conv2(silu(norm2(conv1(silu(norm1(x)))))). */
typedef struct {
    vae_norm norm1, norm2; /* (C), (OC) */
    vae_conv conv1, conv2;
    vae_conv shortcut;     /* 1x1, w NULL when C == OC (identity) */
    int C, OC;
} vae_resnet;

/* The mid-block's single-head self-attention over the H*W positions, with a residual. The
 * query, key and value weights are stacked so one matrix product yields the (N, 3, 1, C) layout
 * attention_forward takes. */
typedef struct {
    vae_norm norm;
    float *qkv_w; /* (3C, C): rows of to_q, to_k, to_v */
    float *qkv_b; /* (3C) */
    float *out_w; /* (C, C) to_out.0 */
    float *out_b; /* (C) */
    int C;
} vae_attn;

/* The encoder or the decoder. Level i of the encoder works at block_out[i] channels; level i of
 * the decoder at block_out[levels - 1 - i]. */
typedef struct {
    vae_conv conv_in;
    vae_resnet res[VAE_MAX_LEVELS][VAE_MAX_LAYERS + 1]; /* (levels, resnets per level) */
    vae_conv resample[VAE_MAX_LEVELS]; /* down (stride 2) or up (after nearest 2x); w NULL on the
                                        * last level */
    vae_resnet mid_res0, mid_res1;
    vae_attn mid_attn;
    vae_norm norm_out;
    vae_conv conv_out;
} vae_coder;

struct vae_model {
    vae_config cfg;
    dt_backend *be;
    float *params;           /* (cfg.num_floats) backend memory, every weight as fp32 */
    vae_coder enc, dec;
    vae_conv quant;          /* (2 * latent, 2 * latent, 1, 1) */
    vae_conv post_quant;     /* (latent, latent, 1, 1) */

    /* ---- activations, from vae_reserve ---- */
    int max_batch, image_size; /* the reservation (0 before vae_reserve) */
    void *act_block;         /* one backend allocation holding everything below */
    size_t act_bytes;
    float *act[3];           /* (max activation floats) each: rotating feature maps */
    float *qkv;              /* (B, N, 3C) mid-block attention input */
    float *att_saved;        /* attention_saved_floats */
    float *att_scratch;      /* attention_scratch_floats */
    void *conv_scratch;      /* the largest conv2d_scratch_bytes over every layer */
    float *host_logvar;      /* host (B, latent, h, w): std is computed on the host */
};

#endif
