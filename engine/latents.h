/* latents.h — datasets in the latent space of a VAE, for latent DiTs (DiT-XL/2 at 256 px works on
 * 32x32x4 latents of the SD VAE): every image encoded once, both horizontal flips, cached on disk
 * and shared by every job on the same dataset and VAE; training draws x0 from the cached
 * posterior without running the VAE; samples are decoded back to images (latent_decoder).
 *
 * Cache layout: ROOT/<key>/latents.safetensors holding
 *   "mean", "std"  F32 (N, 2, C, h, w): vae_encode of image i as stored ([i][0]) and mirrored
 *                  left-right ([i][1]), i.e. the posterior scaled by VAE_SCALE
 *   "labels"       I32 (N)
 *   __metadata__   format "difftune.latents.v1", images, pixel_size, num_classes, class_names
 *                  (a JSON array), vae_sha256, dataset (the real path it was encoded from)
 * <key> is the SHA-256 of the format, the dataset's real path, a fingerprint of its files (names,
 * sizes and modification times: a dataset folder that changes is encoded again), the VAE file's
 * SHA-256 and the pixel size. Encoding writes each finished chunk of images under
 * ROOT/<key>/partial/ (chunk_NNNNNN.f32: the chunk's mean then std, raw; temporary file, then
 * rename; beside them "dataset", the dataset's real path as text, written when the encoding
 * starts), so an interrupted encoding resumes where it stopped; the final file is written
 * crash-safely (safetensors_write) before the pieces are removed. latents_remove_dataset finds
 * a cache's dataset by __metadata__.dataset, or partial/dataset before the file exists.
 */
#ifndef DT_LATENTS_H
#define DT_LATENTS_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "dataset.h"
#include "events.h"
#include "vae.h"

#define LATENTS_FORMAT "difftune.latents.v1"
#define LATENTS_CHUNK 256 /* images per crash-safe piece of an encoding */

typedef struct {
    int n;              /* images */
    int C, h, w;        /* latent shape: the VAE's latent channels, pixel_size / 8 per side */
    int pixel_size;     /* the images were encoded at pixel_size x pixel_size */
    int num_classes;
    int32_t *labels;    /* (n) in 0..num_classes-1 */
    char **class_names; /* (num_classes) */
    float *mean, *std;  /* (n, 2, C, h, w) scaled posterior; [i][1] is image i mirrored */
} dt_latents;

/* The cache key (64 hex + NUL) of the dataset at dataset_path encoded by the VAE file vae_path at
 * pixel_size; the VAE file's SHA-256 into vae_sha256 when it is not NULL. Reads the VAE file
 * whole and lists the dataset's files (stat only). Returns 0, or -1 with a message. */
int latents_key(const char *dataset_path, const char *vae_path, int pixel_size, char key[65],
                char vae_sha256[65], char *err, size_t errlen);

/* Reads ROOT/key/latents.safetensors into lat when present. It must hold latents of shape
 * (C, h, w) (the model's input). Returns 0 when read, 1 when there is no cached file (encode
 * it), or -1 with a message when the file exists but is not what was expected. */
int latents_load(dt_latents *lat, const char *root, const char *key, int C, int h, int w,
                 char *err, size_t errlen);

typedef struct {
    const char *root;       /* cache root (created when missing) */
    const char *key;        /* latents_key */
    const char *vae_sha256; /* for the metadata */
    const char *dataset;    /* the dataset's path, for the metadata */
    int batch;              /* (image, flip) views per vae_encode call: the VAE's reservation */
    int chunk;              /* images per crash-safe piece (0 = LATENTS_CHUNK) */
    int stop_after_chunks;  /* > 0: stop as if signalled after encoding this many chunks (tests) */
    dt_events *ev;          /* progress in phase "encoding": step/total images, images_per_second,
                             * eta_seconds */
    volatile int *stop;     /* checked between VAE batches */
} dt_latents_encode_opts;

/* Encodes every image of ds (pixels, 3 channels, the VAE's reserved image size) and both flips
 * with vae (loaded on be, vae_reserve'd for o->batch images of ds->H pixels) into lat, reusing
 * the finished chunks of an interrupted encoding, and stores the cache file. Allocates the
 * host buffers it needs once. Returns 0, 1 when stopped (finished chunks are kept), FS_NO_SPACE
 * (fsutil.h) with a message when the disk is full, or -1 with a message (a backend failure names
 * the backend's reason). */
int latents_encode(dt_latents *lat, const dt_dataset *ds, vae_model *vae, dt_backend *be,
                   const dt_latents_encode_opts *o, char *err, size_t errlen);

/* Removes every cache ROOT/<key>/ encoded from a dataset that lies in dataset_dir (that folder
 * or a path below it; paths compared after resolving symbolic links where they exist): its
 * source is __metadata__.dataset of latents.safetensors, or partial/dataset for an encoding that
 * has not finished. A cache whose source cannot be read is left alone, and so are caches of
 * other datasets. The caller makes sure that no encoding from that dataset is running (the
 * server refuses to delete a dataset that a queued or running job uses). Returns the number of
 * caches removed (0 when root does not exist), or -1 with a message when root cannot be read or
 * a cache cannot be removed (the others are still tried). */
int latents_remove_dataset(const char *root, const char *dataset_dir, char *err, size_t errlen);

/* Frees what latents_load or latents_encode allocated; safe on a zeroed dt_latents. */
void latents_free(dt_latents *lat);

/* A view of lat as a dataset without pixels (images NULL; n, shape C x pixel_size^2 with C = 3,
 * classes and labels copied), for the code that needs only the labels. Returns 0 or -1 (out of
 * memory). Release with dataset_free. */
int latents_as_dataset(const dt_latents *lat, dt_dataset *ds);

/* x0 (C, h, w) = mean + std * n for image i, flip 0 or 1, n standard normal from
 * (seed, DT_STREAM_LATENT, slot * C*h*w + j): a training sample of the posterior, the same for
 * the same (seed, slot) on every run. */
void latents_draw(const dt_latents *lat, int i, int flip, uint64_t seed, uint64_t slot,
                  float *x0);

/* Decodes host latents into host images through a VAE, in batches, with backend buffers
 * allocated once (latent_decoder_init); decoding allocates nothing. */
typedef struct {
    vae_model *vae;    /* borrowed */
    dt_backend *be;    /* borrowed: the VAE's backend */
    int batch;         /* latents per vae_decode call */
    int C, h, w;       /* latent shape */
    int pixels;        /* image side: h * downsample */
    float *z_dev;      /* (batch, C, h, w) backend memory */
    float *img_dev;    /* (batch, 3, pixels, pixels) backend memory */
} dt_latent_decoder;

/* Prepares decoding of (C, h, w) latents (h = w) by vae on be, batch at a time: reserves the
 * VAE's activations for batch images of h * downsample pixels (vae_reserve) and allocates the
 * buffers. Returns 0, or -1 with a message (the latent channels do not match the VAE's, out of
 * memory). */
int latent_decoder_init(dt_latent_decoder *d, vae_model *vae, dt_backend *be, int batch, int C,
                        int h, char *err, size_t errlen);
/* Decodes n latents z (n, C, h, w) (host) into images (n, 3, pixels, pixels) (host, in [-1, 1]
 * up to the VAE's overshoot; image writers clamp). Returns 0 or a negative backend error. */
int latent_decode(dt_latent_decoder *d, const float *z, int n, float *images);
/* Frees the buffers (not the VAE); safe on a zeroed decoder. */
void latent_decoder_free(dt_latent_decoder *d);

#endif
