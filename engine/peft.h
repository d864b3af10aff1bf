/* peft.h — parameter-efficient fine-tuning of a DiT: DiffFit, BitFit and LoRA.
 *
 * An adapter splits the parameters in two blocks. The frozen base is the full parameter block of
 * dit.h (the pre-trained weights, never written while training). The trainable block is compact
 * and has its own table (peft_tensor, in the order below); only it gets gradients, AdamW moments
 * and an EMA, so frozen parameters cost nothing beyond their weights. A trainable tensor either
 * replaces a base tensor of the same name (biases, the label table) or is new:
 *   DiffFit  blocks.{i}.gamma1, blocks.{i}.gamma2 (D) scale the attention and MLP branches and
 *            blocks.{i}.attn.gamma1 (3D), blocks.{i}.attn.gamma2 (D) the qkv and proj outputs,
 *            for i < difffit_blocks; all gammas start at 1. Plus every bias and the label table.
 *   BitFit   every bias (x_embedder, t_embedder, blocks, final_layer) and the label table.
 *   LoRA     blocks.{i}.<target>.lora_A.weight (r, in) and .lora_B.weight (out, r) for each target
 *            linear (attn.qkv, attn.proj, mlp.fc1, mlp.fc2): W x + b + (alpha / r) B A x. A starts
 *            uniform in +-1/sqrt(in) (PyTorch's Linear default), B at zero, so the adapted model
 *            starts as the base.
 * Order of the trainable block: for each base tensor in state-dict order, its trainable
 * replacement; then per block i the gammas (gamma1, gamma2, attn.gamma1, attn.gamma2) or the LoRA
 * pairs (targets in block order, A before B).
 *
 * Every adapter merges exactly into a plain DiT (peft_merge_host): gammas fold into the rows of
 * qkv, proj and fc2 (weights and biases), LoRA adds (alpha / r) B A to its target's weight.
 */
#ifndef DT_PEFT_H
#define DT_PEFT_H

#include <stddef.h>
#include <stdint.h>
#include "dit.h"
#include "spec.h"

#define PEFT_LORA_TARGETS 4 /* qkv, proj, fc1, fc2: index t is bit (1 << t) of the targets */

typedef enum {
    PEFT_ROLE_BASE = 0,   /* replaces base tensor base_index */
    PEFT_ROLE_GAMMA1,     /* blocks.{i}.gamma1 (D): the attention branch */
    PEFT_ROLE_GAMMA2,     /* blocks.{i}.gamma2 (D): the MLP branch */
    PEFT_ROLE_ATTN_GAMMA1,/* blocks.{i}.attn.gamma1 (3D): the qkv output */
    PEFT_ROLE_ATTN_GAMMA2,/* blocks.{i}.attn.gamma2 (D): the proj output */
    PEFT_ROLE_LORA_A,     /* (r, in) */
    PEFT_ROLE_LORA_B      /* (out, r) */
} peft_role;

typedef struct {
    dit_param p;          /* name, shape, offset (floats from the start of the trainable block) */
    peft_role role;
    int base_index;       /* PEFT_ROLE_BASE: index into the model's table; else -1 */
    int block;            /* the block of a gamma or LoRA tensor; else -1 */
    int target;           /* LoRA: 0 qkv, 1 proj, 2 fc1, 3 fc2; else -1 */
} peft_tensor;

struct dit_adapter {
    dt_peft_config cfg;   /* resolved: difffit_blocks and alpha filled in */
    float lora_scale;     /* alpha / rank (LoRA) */
    peft_tensor *t;       /* (n) the trainable tensors (owned) */
    int n;
    size_t num_floats;    /* floats of the trainable block */
    const float *base;    /* backend memory: the frozen full block (the model's num_floats), set
                           * by the owner before any forward pass */
    /* The base model file the adapter was trained on (absolute path) and its sha256, set by the
     * owner: checkpoints record them, and loading one finds and verifies its base by them. */
    char base_path[4096];
    char base_sha256[65];
};

/* Builds the adapter of pc for a DiT of config c (pc->kind != DT_PEFT_NONE). Resolves the
 * defaults (difffit_blocks 0 -> ceil(depth / 2), alpha 0 -> rank). Returns 0, or -1 with a
 * message naming the option (e.g. "peft_options.difffit_blocks is 30 but the base model has 28
 * blocks"; a rank above the layer's smaller dimension). */
int peft_adapter_init(dit_adapter *ad, const dit_config *c, const dt_peft_config *pc,
                      char *err, size_t errlen);
void peft_adapter_free(dit_adapter *ad);

/* Trainable floats of pc on config c without building anything: dit_count_params(c) for
 * DT_PEFT_NONE; 0 when the options do not fit the config (peft_adapter_init says why). */
size_t peft_count(const dit_config *c, const dt_peft_config *pc);

/* The starting trainable block (host, ad->num_floats) of a job on base weights base_host (host,
 * the model's num_floats): replaced tensors copied from the base, gammas 1, LoRA A uniform in
 * +-1/sqrt(in) (deterministic in seed), LoRA B zero. */
void peft_init_host(const dit_adapter *ad, const dit_model *m, const float *base_host,
                    float *train_host, uint64_t seed);

/* The plain DiT (host, the model's num_floats) that computes what base_host with the trainable
 * block train_host computes: replaced tensors copied in, gammas folded into qkv, proj and fc2
 * rows, (alpha / r) B A added to each LoRA target. out_host may be base_host. */
void peft_merge_host(const dit_adapter *ad, const dit_model *m, const float *base_host,
                     const float *train_host, float *out_host);

/* Views of the tensors the forward pass reads: the base block's, with trainable tensors taken
 * from train (the trainable block) and the gamma and LoRA pointers set. */
dit_weights peft_weights(const dit_adapter *ad, const dit_model *m, const float *base,
                         float *train);
/* Views for gradients into grads (a trainable-shaped block): a pointer for each trainable tensor,
 * NULL for every frozen one. */
dit_weights peft_grads(const dit_adapter *ad, const dit_model *m, float *grads);

/* The trainable tensor called name, or NULL. */
const peft_tensor *peft_find(const dit_adapter *ad, const char *name);

/* pc as the JSON object stored in a checkpoint's __metadata__["peft"] ({"kind", "rank",
 * "alpha", "targets", "difffit_blocks"}; caller frees), and back. peft_config_parse returns 0,
 * or -1 with a message. */
char *peft_config_json(const dt_peft_config *pc);
int peft_config_parse(const char *json, dt_peft_config *pc, char *err, size_t errlen);

#endif
