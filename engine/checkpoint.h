/* checkpoint.h — DiT checkpoints as safetensors, interoperable with the published DiT.
 *
 * A checkpoint of step S in DIR is two files, written in this order, each crash-safely:
 *   DIR/step_SSSSSSS.state.safetensors  AdamW moments "adam.m.<name>", "adam.v.<name>"
 *   DIR/step_SSSSSSS.safetensors        the EMA weights under the official DiT names (what a
 *                                       PyTorch DiT loads), the training weights under
 *                                       "train.<name>", the fixed pos_embed; __metadata__ holds
 *                                       format, step, config (JSON) and spec (JSON).
 * A checkpoint is complete when both files exist and parse; all randomness is a function of
 * (seed, step), so weights, moments and the step are the whole training state.
 */
#ifndef DT_CHECKPOINT_H
#define DT_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>
#include "dit.h"
#include "safetensors.h"

#define CHECKPOINT_FORMAT "difftune.dit.v1"
/* A parameter-efficient job's checkpoint (peft.h): only the trainable tensors (the EMA under
 * their names, "train.<name>" the training weights; the state file their moments), no pos_embed;
 * __metadata__ adds "peft" (peft_config_json), "base_model" (the absolute path of the base model
 * file) and "base_sha256". Reading it as a plain DiT (checkpoint_read_weights on a model without
 * an adapter) reads the base, verifies its sha256 and merges the adapter into it. */
#define CHECKPOINT_FORMAT_PEFT "difftune.peft.v1"
#define CHECKPOINT_PEFT_CHAIN_MAX 8 /* PEFT checkpoints on PEFT checkpoints, at most this deep */

/* Host copies of the training state, parameter-shaped (m->num_floats each, or the adapter's
 * num_floats when m has one: every function below then reads and writes the PEFT format);
 * NULL = absent. */
typedef struct {
    float *weights, *ema, *adam_m, *adam_v;
} dt_train_state;

/* Writes the state file of `step` (AdamW moments, host buffers of m->num_floats) into dir
 * (created if missing). Write it before the model file. Returns 0, or -1 with a message
 * (FS_NO_SPACE of fsutil.h when the disk is full); an earlier checkpoint is never damaged by a
 * failure, and a failed write leaves no file of its own behind. */
int checkpoint_save_state(const char *dir, int step, const dit_model *m, const float *adam_m,
                          const float *adam_v, const char *spec_json, char *err, size_t errlen);
/* Writes the model file of `step`: ema under the DiT names, weights (may be NULL) under
 * "train.", pos_embed and metadata. Its appearance completes the checkpoint. Returns as
 * checkpoint_save_state. */
int checkpoint_save_model(const char *dir, int step, const dit_model *m, const float *ema,
                          const float *weights, const char *spec_json, char *err, size_t errlen);

/* An upper bound on the bytes both files of one checkpoint of m take (weights and EMA, the
 * moments, pos_embed, and headers carrying a spec of spec_len bytes), for the free-space guard
 * before a save. */
uint64_t checkpoint_bytes_bound(const dit_model *m, size_t spec_len);

/* Newest complete checkpoint step in dir, or -1 when there is none. */
int checkpoint_latest(const char *dir);
/* Path of a checkpoint file: kind "" (model) or "state". */
void checkpoint_path(char *out, size_t len, const char *dir, int step, const char *kind);
/* The state file that belongs to the model file at model_path (".../step_S.safetensors" ->
 * ".../step_S.state.safetensors") into out. Returns 0, or -1 when model_path is not a model
 * file's name or the result does not fit. */
int checkpoint_state_path_of(char *out, size_t len, const char *model_path);
/* Deletes all but the newest `keep` complete checkpoints (and any incomplete older files). */
void checkpoint_prune(const char *dir, int keep);
/* Loads step's weights, EMA and moments into st (buffers that are non-NULL). Shapes must match m. */
int checkpoint_load(const char *dir, int step, const dit_model *m, dt_train_state *st,
                    char *err, size_t errlen);

/* The DiT config of a safetensors model file, in the official or the diffusers layout
 * (dit_layout.h): from our metadata when present, otherwise inferred from the tensor shapes:
 * heads from the preset of that hidden size, or heads_hint when > 0; the input size (pixels or
 * latent cells per side) from pos_embed, or input_size_hint when > 0 and the file has no
 * pos_embed (diffusers' files do not). A hint > 0 that contradicts the file's metadata or
 * pos_embed is an error. Returns 0, or -1 with a message naming what is missing or inconsistent
 * (for a missing input size, how to give it). */
int checkpoint_read_config(const st_file *f, int heads_hint, int input_size_hint, dit_config *cfg,
                           char *err, size_t errlen);
/* Copies the DiT parameters stored under prefix ("" or "train.") into host (m->num_floats, the
 * official order), in either layout (dit_layout_read). Fails naming the first missing or
 * mis-shaped tensor, a diffusers embedder copy that differs from block 0's, or a tensor that is
 * not a DiT parameter (outside the "train.", "adam." and pos_embed names). */
int checkpoint_read_weights(const st_file *f, const dit_model *m, const char *prefix, float *host,
                            char *err, size_t errlen);
/* 1 when f is a PEFT checkpoint (CHECKPOINT_FORMAT_PEFT), else 0. */
int checkpoint_is_peft(const st_file *f);

/* Writes to out_path (crash-safely) the plain DiT of the checkpoint model file src_path: its EMA
 * weights under the official names, pos_embed, and __metadata__ format CHECKPOINT_FORMAT, config,
 * step and spec of the source, plus "merged_from" (the source's sha256) — what PyTorch's DiT and
 * every difftune command load. A PEFT checkpoint is merged into its base (which must be found
 * and match its sha256); a plain one is copied weight for weight. Returns 0, or -1 with a
 * message (FS_NO_SPACE of fsutil.h when the disk is full). */
int checkpoint_export_merged(const char *src_path, const char *out_path, char *err, size_t errlen);

/* The DiT config as a JSON string (caller frees), as stored in __metadata__["config"]. */
char *checkpoint_config_json(const dit_config *cfg);

#endif
