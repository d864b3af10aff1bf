/* dit.h — the class-conditional Diffusion Transformer (adaLN-Zero), exactly the published DiT.
 *
 * Parameters live in one contiguous backend block in the official state-dict order and names
 * (see shared/reference/dit.md); gradients, Adam moments and the EMA use the same layout, so
 * optimizer ops run over one flat array. pos_embed is fixed and kept outside that block.
 * Forward and backward are written out layer by layer over preallocated activations.
 */
#ifndef DT_DIT_H
#define DT_DIT_H

#include <stddef.h>
#include <stdint.h>
#include "backend.h"

#define DIT_MAX_DEPTH 64
#define DIT_FREQ_DIM 256 /* sinusoidal timestep embedding size */
#define DIT_MAX_PARAMS (7 + 10 * DIT_MAX_DEPTH + 4) /* tensors of the deepest DiT */

typedef struct {
    int depth, hidden, heads, patch;
    int image_size;   /* pixels (or latent cells) per side */
    int in_channels;
    int out_channels; /* in_channels, or 2*in_channels with learn_sigma */
    int num_classes;  /* label table has num_classes + 1 rows; the last is the null class */
    int learn_sigma;
    /* derived */
    int grid;         /* image_size / patch */
    int tokens;       /* N = grid * grid */
    int patch_dim;    /* in_channels * patch * patch */
    int out_dim;      /* patch * patch * out_channels */
} dit_config;

/* One named parameter tensor inside the flat block. */
typedef struct {
    char name[64];
    int ndim;
    int64_t shape[4];
    size_t offset; /* floats from the start of the block */
    size_t numel;
} dit_param;

/* A parameter-efficient adapter (peft.h); NULL in a plain model. */
typedef struct dit_adapter dit_adapter;

typedef struct {
    float *qkv_w, *qkv_b;   /* (3D, D), (3D) */
    float *proj_w, *proj_b; /* (D, D), (D) */
    float *fc1_w, *fc1_b;   /* (4D, D), (4D) */
    float *fc2_w, *fc2_b;   /* (D, 4D), (D) */
    float *ada_w, *ada_b;   /* (6D, D), (6D) */
    /* Adapter tensors (peft.h), NULL when absent. DiffFit: */
    float *gamma1, *gamma2;           /* (D), (D) scale the attention and MLP branches */
    float *attn_gamma1, *attn_gamma2; /* (3D), (D) scale the qkv and proj outputs */
    /* LoRA, per target t (0 qkv, 1 proj, 2 fc1, 3 fc2): out += lora_scale * B (A x) */
    float *lora_a[4];                 /* (r, in) */
    float *lora_b[4];                 /* (out, r) */
} dit_block_weights;

/* Typed views into a parameter-shaped block (weights, gradients, moments or EMA). */
typedef struct {
    float *x_w, *x_b;             /* (D, C*p*p), (D) patch embedding */
    float *t0_w, *t0_b;           /* (D, 256), (D) */
    float *t2_w, *t2_b;           /* (D, D), (D) */
    float *y_table;               /* (num_classes + 1, D) */
    dit_block_weights blocks[DIT_MAX_DEPTH];
    float *final_w, *final_b;     /* (p*p*C_out, D), (p*p*C_out) */
    float *final_ada_w, *final_ada_b; /* (2D, D), (2D) */
    int lora_rank;                /* r of the LoRA tensors (0 without) */
    float lora_scale;             /* alpha / r */
} dit_weights;

typedef struct {
    dit_config cfg;
    dt_backend *be;
    dit_param *params;   /* (n_params) trainable tensors in state-dict order (owned) */
    int n_params;
    size_t num_floats;   /* total floats of the full parameter block */
    float *pos_embed;    /* (N, D) backend memory, fixed 2D sin-cos (owned) */
    /* NULL: the parameter blocks passed to the passes below are full blocks. Set (borrowed, by
     * the owner, before dit_acts_alloc): they are the adapter's trainable blocks, and the frozen
     * weights are read from ad->base. */
    const dit_adapter *ad;
} dit_model;

/* Fills cfg and its derived fields; validates divisibility and ranges. Returns 0, or -1 with a
 * message (e.g. "hidden size 100 is not divisible by 6 heads"). */
int dit_config_init(dit_config *cfg, int depth, int hidden, int heads, int patch, int image_size,
                    int in_channels, int num_classes, int learn_sigma, char *err, size_t errlen);
/* Depth, hidden size, heads and patch of a named preset ("DiT-S/2" ... "DiT-XL/8"); -1 if unknown. */
int dit_arch_lookup(const char *arch, int *depth, int *hidden, int *heads, int *patch);
/* Trainable parameter count of cfg (pos_embed excluded), without allocating. */
size_t dit_count_params(const dit_config *cfg);
/* Fills table (when non-NULL, room for DIT_MAX_PARAMS) with every parameter tensor of cfg in the
 * official state-dict order and *total with their floats; returns the tensor count. */
int dit_param_table(const dit_config *cfg, dit_param *table, size_t *total);

/* Builds the parameter table and the fixed pos_embed on be. Does not allocate the parameter
 * block itself (callers own blocks: weights, grads, EMA...). Returns 0 or -1 with a message. */
int dit_model_init(dit_model *m, const dit_config *cfg, dt_backend *be, char *err, size_t errlen);
void dit_model_free(dit_model *m);
/* Views of every tensor inside a full parameter block at base (adapter fields NULL). */
dit_weights dit_weights_at(const dit_model *m, float *base);
/* The addresses of w's base-tensor fields in table order (slots[i] is tensor i's field); returns
 * their count. For mapping a parameter index to its view. */
int dit_weights_slots(dit_weights *w, int depth, float **slots[]);
/* The tensor called name, or NULL. */
const dit_param *dit_find_param(const dit_model *m, const char *name);

/* Writes the from-scratch initialisation of dit.md into host memory `host` (num_floats floats):
 * xavier-uniform linears and patch conv, zero biases, N(0, 0.02) label table and timestep MLP,
 * zero adaLN modulations and final linear. Deterministic in seed. */
void dit_init_host(const dit_model *m, float *host, uint64_t seed);
/* The fixed pos_embed (N, D) into host memory, computed in float64 as in the reference. */
void dit_pos_embed_host(const dit_config *cfg, float *host);

/* Activation memory for batches of up to max_batch. With training = 0 one set of per-layer
 * buffers is reused by every layer (inference only; dit_backward is then not allowed). */
typedef struct {
    int max_batch, training, depth;
    void *block;       /* one backend allocation holding everything below */
    size_t bytes;
    float *patches;    /* (B, N, C*p*p) */
    float *t_freq;     /* (B, 256) */
    float *t_h, *t_act, *t_emb; /* (B, D) */
    float *y_emb;      /* (B, D) */
    float *c, *c_silu; /* (B, D) conditioning and SiLU(c) */
    float *x;          /* (depth+1 or 2, B, N, D) block inputs; x[depth] is the trunk output */
    float *mod;        /* (L, B, 6D) */
    float *ln1, *ln2;  /* (L, B, N, D) */
    float *mean1, *rstd1, *mean2, *rstd2; /* (L, B, N) */
    float *qkv;        /* (L, B, N, 3D) */
    float *att;        /* (L, B, N, D) */
    float *att_saved;  /* (L, attention_saved_floats) */
    float *att_proj;   /* (L, B, N, D) */
    float *x_mid;      /* (L, B, N, D) */
    float *h1, *h1g;   /* (L, B, N, 4D) fc1 output and its GELU */
    float *h2;         /* (L, B, N, D) */
    float *fmod;       /* (B, 2D) final-layer modulation */
    float *lnf, *meanf, *rstdf; /* (B, N, D), (B, N), (B, N) */
    float *fout;       /* (B, N, p*p*C_out) */
    /* backward scratch (training only) */
    float *att_scratch;
    float *d_x, *d_tmp, *d_ln;  /* (B, N, D) */
    float *d_qkv;      /* (B, N, 3D) */
    float *d_h, *d_h2; /* (B, N, 4D) */
    float *d_mod;      /* (B, 6D) */
    float *d_c, *d_c_silu, *d_t_act, *d_t_h; /* (B, D) */
    float *d_fout;     /* (B, N, p*p*C_out) */
    size_t saved_per_layer, layers;
    /* adapter buffers (model with an adapter, peft.h); NULL without. DiffFit: the unscaled
     * outputs of the first gamma_layers blocks (1 at inference) */
    size_t gamma_layers;
    float *qkv_raw;    /* (gamma_layers, B, N, 3D) */
    float *proj_raw, *h2_raw; /* (gamma_layers, B, N, D) */
    /* LoRA: u = A x of every target, the B u product, and its gradient (training) */
    int lora_rank;
    float *lora_u;     /* (L, 4, B, N, r) */
    float *lora_tmp;   /* (B, N, 4D) */
    float *lora_du;    /* (B, N, r) */
} dit_acts;

/* Allocates activations (and backward scratch when training), with the buffers of m's adapter
 * when it has one. Returns 0 or -1 with a message giving the bytes that could not be
 * allocated. */
int dit_acts_alloc(dit_acts *a, const dit_model *m, int max_batch, int training,
                   char *err, size_t errlen);
/* The bytes dit_acts_alloc would ask the backend for, allocating nothing; SIZE_MAX when the
 * size does not fit in a size_t at all. */
size_t dit_acts_bytes(const dit_model *m, int max_batch, int training);
void dit_acts_free(dit_acts *a, const dit_model *m);

/* out (B, C_out, H, W) = DiT(x (B, C_in, H, W), t (B), y (B)) with the weights at params (a full
 * block, or with m->ad the adapter's trainable block over the frozen m->ad->base). t holds
 * integer timesteps 0..999, y labels 0..num_classes (num_classes = null). All pointers are
 * backend memory; B <= a->max_batch. */
void dit_forward(const dit_model *m, const float *params, dit_acts *a, const float *x,
                 const int32_t *t, const int32_t *y, int B, float *out);
/* grads (shaped like params) += d loss / d params given dout (B, C_out, H, W), after a training
 * dit_forward on the same a and B. With an adapter only its trainable tensors get gradients,
 * and the weight gradients of frozen layers are never computed. Clobbers the backward
 * scratch. */
void dit_backward(const dit_model *m, const float *params, float *grads, dit_acts *a,
                  const float *dout, const int32_t *y, int B);

#endif
