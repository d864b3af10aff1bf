/* ingest.h — turning uploaded files into datasets and models: safe archive extraction and
 * validation, with no knowledge of HTTP (the API's upload handlers stream the request body to a
 * file, then call these).
 *
 * Every function returns one of the dt_ingest_code values and on failure writes a message a
 * user can act on into err (naming the offending archive member or tensor). Nothing here exits
 * or prints. On failure nothing is left behind in the destination.
 */
#ifndef DT_INGEST_H
#define DT_INGEST_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

typedef enum {
    DT_INGEST_OK = 0,
    DT_INGEST_ERROR = -1,    /* the server failed (disk full, I/O error): HTTP 500 */
    DT_INGEST_INVALID = -2,  /* the upload is not acceptable (not an archive, unsafe member, no
                              * images, undecodable image, bad IDX, bad checkpoint): HTTP 422 */
    DT_INGEST_TOO_LARGE = -3, /* extraction would exceed the limits: HTTP 413 */
    DT_INGEST_NO_SPACE = -4   /* the disk filled up while extracting (ENOSPC, EDQUOT): HTTP 507
                               * disk_full */
} dt_ingest_code;

typedef struct {
    int64_t max_bytes;   /* total extracted bytes; 0 = 8 GiB */
    int64_t max_entries; /* archive members; 0 = 1,000,000 */
} dt_ingest_limits;

/* The preview grid ingest_dataset writes into dest_dir (ingest_preview.h draws it). Hidden, so
 * that no loader ever reads it: dataset_load and ingest's own scans skip names starting with '.',
 * and dest_dir is the dataset's root or holds it. Deleting dest_dir deletes it. */
#define DT_INGEST_PREVIEW_NAME ".preview.png"

typedef struct {
    char format[16];     /* "image_folder" | "idx" */
    char root[4096];     /* the folder inside dest_dir that holds the class folders or IDX files */
    int64_t images;
    int64_t classes;
    json_t *class_names; /* new reference: array of strings (class folder names, "0".."9" for IDX) */
    json_t *class_counts; /* new reference: array of integers, the images of each class in
                           * class_names order */
    int64_t bytes;       /* extracted bytes */
} dt_ingest_dataset;

/* Extracts the archive at archive_path (tar, optionally gzip/bzip2/xz compressed, or zip;
 * detected from the content, not the name) into dest_dir, which it creates (parents as needed;
 * if dest_dir already exists nothing is touched and DT_INGEST_ERROR is returned). Only folders
 * and regular files are written, never outside dest_dir; members with absolute paths, ".."
 * components, links, devices, FIFOs or sockets are refused (DT_INGEST_INVALID, naming the
 * member), macOS/Windows junk ("__MACOSX/", "._*", ".DS_Store", "Thumbs.db") is skipped, and
 * limits are enforced while extracting (DT_INGEST_TOO_LARGE). An archive that writes no file is
 * DT_INGEST_INVALID. limits may be NULL. On success *bytes_out (may be NULL) is the number of
 * file bytes written; on failure dest_dir is removed. */
int ingest_extract(const char *archive_path, const char *dest_dir, const dt_ingest_limits *limits,
                   int64_t *bytes_out, char *err, size_t errlen);

/* Extracts the archive at archive_path as ingest_extract does (same formats, refusals, limits
 * and dest_dir rules), then finds and validates the dataset in it: an image folder (one
 * subfolder per class holding PNG/JPEG/BMP images; single top-level folders wrapping it are
 * descended into) or MNIST-style IDX files (an images and a labels file). Every image must
 * decode; an image lying beside the class folders rather than in one is refused. Messages name archive members by their path inside the archive,
 * never by dest_dir. limits may be NULL. On success *out is filled (release it with
 * ingest_dataset_clear) and dest_dir also holds DT_INGEST_PREVIEW_NAME, a PNG grid of the
 * first images of the first classes (ingest_preview.h); on failure *out is zeroed and dest_dir
 * is removed. */
int ingest_dataset(const char *archive_path, const char *dest_dir, const dt_ingest_limits *limits,
                   dt_ingest_dataset *out, char *err, size_t errlen);
/* Drops the JSON references ingest_dataset put in *d and zeroes it; safe on a zeroed one. */
void ingest_dataset_clear(dt_ingest_dataset *d);

typedef struct {
    char kind[16];       /* "dit" | "classifier" | "vae" */
    json_t *config;      /* new reference. A DiT: its config {"arch"?, "depth", "hidden_size",
                          * "num_heads", "patch_size", "image_size", "in_channels",
                          * "num_classes", "learn_sigma"} as checkpoint_config_json writes it,
                          * plus "layout": "official" | "diffusers". A classifier:
                          * {"image_size", "channels", "num_classes", "features",
                          * "train_accuracy"?, "held_out_accuracy"?, "class_names"?} from its
                          * metadata. A VAE: {"latent_channels", "block_out_channels",
                          * "layers_per_block", "downsample_factor", "scaling_factor",
                          * "attention_names": "diffusers" | "legacy"}. A PEFT checkpoint is
                          * a DiT whose config adds "peft": its adapter ({"kind", "rank",
                          * "alpha", "targets", "difffit_blocks"}) with "base_model" (the id of
                          * the stored model it adapts, or null) and "base_sha256". */
    int64_t bytes;
    char sha256[65];
    const char *param;   /* on DT_INGEST_INVALID: the request parameter at fault, "file" or one
                          * of the dt_ingest_model_opts names ("input_size", "num_heads"); a
                          * static string */
} dt_ingest_model;

/* What an upload may add to a DiT file that does not say it itself. */
typedef struct {
    int input_size; /* the DiT's input size (latent cells per side): needed for diffusers'
                     * layout, which stores no pos_embed; 0 = not given */
    int num_heads;  /* attention heads, for a hidden size that matches no preset; 0 = not given */
    int peft;       /* 1: a PEFT checkpoint (CHECKPOINT_FORMAT_PEFT of checkpoint.h) is accepted:
                     * a job's checkpoint promoted on the server that holds its base model. 0
                     * (uploads): refused, its base is a path on the server that wrote it */
} dt_ingest_model_opts;

/* Validates a safetensors model file and hashes it. A file whose __metadata__.difftune_kind is
 * "classifier" is a difftune classifier and is read with classifier_load (every tensor present
 * with its shape, none foreign). A file with "encoder.conv_in.weight" is a VAE (diffusers'
 * AutoencoderKL layout): vae_read_config, then vae_load of every weight on the CPU. Any other is
 * a DiT checkpoint in the official or diffusers layout: parses the header, reads the config
 * (metadata or shapes, with opts), checks every DiT parameter tensor is present with its shape
 * and no foreign tensor is there (checkpoint_read_config / checkpoint_read_weights). A PEFT
 * checkpoint (accepted only with opts->peft) is read the same way, which reads its base model
 * (verified by sha256) and merges the adapter in. A DiT
 * whose config needed opts (no config metadata, and an input size or head count from opts) is
 * rewritten in place with that config as __metadata__.config, tensors unchanged, so that every
 * later load reads the same DiT without being told. opts may be NULL (none given); an option
 * that contradicts the file is refused. On success *out is filled (json_decref out->config);
 * on DT_INGEST_INVALID out->param names the parameter at fault. */
int ingest_model(const char *path, const dt_ingest_model_opts *opts, dt_ingest_model *out,
                 char *err, size_t errlen);

/* Removes path and everything under it (no symlink is followed). Returns 0 or -1. */
int ingest_remove_tree(const char *path);

#endif
