/* vae.h — the Stable Diffusion VAE (AutoencoderKL, as in sd-vae-ft-ema / sd-vae-ft-mse), frozen,
 * forward only: images to latents for training latent DiTs, latents to images for samples and FID.
 *
 * Weights load by tensor name from the diffusers safetensors layout (diffusion_pytorch_model.
 * safetensors): encoder.*, decoder.*, quant_conv.*, post_quant_conv.*, with the mid-block attention
 * under either diffusers naming (to_q/to_k/to_v/to_out.0, current) or the legacy one
 * (query/key/value/proj_attn, files saved before diffusers 0.14, like the published sd-vae-ft-*),
 * as Linear (C, C) or 1x1 conv (C, C, 1, 1) weights. F32, F16 and BF16 files load (held as fp32).
 * The architecture (channels per level, resnets per level, latent channels) is read from the
 * shapes; groups are 32 and every norm's eps is 1e-6, as in every SD VAE.
 *
 * Latents are the DiT's: z = scale * (mean + std * noise), scale VAE_SCALE (0.18215); vae_encode
 * returns the scaled posterior mean and std, vae_decode takes scaled latents.
 * Images are (B, 3, H, W) in [-1, 1], H and W multiples of 8 (2^(levels-1)).
 */
#ifndef DT_VAE_H
#define DT_VAE_H

#include <stddef.h>
#include "backend.h"
#include "safetensors.h"

#define VAE_MAX_LEVELS 8
#define VAE_SCALE 0.18215f  /* latent scaling factor of the SD VAE (sd-vae-ft-ema/-mse, SD 1.x) */
#define VAE_GROUPS 32
#define VAE_EPS 1e-6f

typedef enum {
    VAE_ATTN_DIFFUSERS = 0, /* attentions.0.to_q / to_k / to_v / to_out.0 */
    VAE_ATTN_LEGACY = 1     /* attentions.0.query / key / value / proj_attn */
} vae_attn_names;

typedef struct {
    int in_channels;               /* image channels, 3 */
    int latent_channels;           /* 4 */
    int levels;                    /* len(block_out_channels), 4 */
    int block_out[VAE_MAX_LEVELS]; /* channels per level, (128, 256, 512, 512) */
    int layers_per_block;          /* resnets per encoder level (decoder: one more), 2 */
    int downsample;                /* image pixels per latent cell, 2^(levels-1) = 8 */
    vae_attn_names attn_names;     /* how the file names the mid-block attention */
    int attn_conv;                 /* 1 when the attention weights are (C, C, 1, 1) convs */
    size_t num_floats;             /* parameters held (fp32) */
} vae_config;

typedef struct vae_model vae_model;

/* Reads the architecture of the VAE in f from its tensor names and shapes and checks that every
 * tensor the model needs is present with the right shape and a float dtype, without reading any
 * weight. A file that is not a VAE at all (no encoder.conv_in.weight) gets a message saying so.
 * Returns 0, or -1 with a message naming the first missing or mis-shaped tensor. */
int vae_read_config(const st_file *f, vae_config *cfg, char *err, size_t errlen);

/* Loads the VAE at path onto be (weights converted to fp32). Returns 0 with *out set (release
 * with vae_free), or -1 with a message (unreadable file, not a VAE, a tensor missing, out of
 * memory). */
int vae_load(vae_model **out, const char *path, dt_backend *be, char *err, size_t errlen);
/* Frees the weights and activations; safe on NULL. */
void vae_free(vae_model *v);
const vae_config *vae_get_config(const vae_model *v);

/* Allocates the activation memory (and convolution scratch) for batches of up to max_batch images
 * of image_size x image_size pixels; encode and decode then allocate nothing. Calling it again
 * with a larger size reallocates (a smaller one keeps the reservation). Returns 0, or -1 with a
 * message giving the bytes asked for (the model then holds no reservation). */
int vae_reserve(vae_model *v, int max_batch, int image_size, char *err, size_t errlen);
/* The bytes vae_reserve would allocate (activations and scratch), for memory planning; 0 for
 * sizes vae_reserve refuses. */
size_t vae_reserve_bytes(const vae_model *v, int max_batch, int image_size);

/* Encodes images (B, 3, H, W) in [-1, 1] into the scaled posterior: mean and std (B, 4, H/8,
 * W/8), std = exp(0.5 * clamp(logvar, -30, 20)), both times VAE_SCALE. All pointers are backend
 * memory; B and H = W within the reservation. Returns 0, a negative backend error (sync), or -1
 * without computing when B, H or W is outside the reservation or H, W not multiples of 8. */
int vae_encode(vae_model *v, const float *images, int B, int H, int W, float *mean, float *std);
/* Decodes scaled latents z (B, 4, h, w) into images (B, 3, 8h, 8w), not clamped (callers that
 * write pixels clamp to [-1, 1]). Backend memory; returns 0, a negative backend error, or -1
 * without computing when B, 8h or 8w is outside the reservation. */
int vae_decode(vae_model *v, const float *z, int B, int h, int w, float *images);

#endif
