/* dit_layout.h — where a DiT's parameters live in the safetensors layouts difftune loads.
 *
 * official   the state-dict names of facebookresearch/DiT (dit.h's parameter table), what difftune
 *            writes and what the released DiT-XL-2-256x256.pt holds once saved as safetensors.
 * diffusers  DiTTransformer2DModel / Transformer2DModel with norm_type "ada_norm_zero", as in
 *            facebook/DiT-XL-2-256 transformer/diffusion_pytorch_model.safetensors (diffusers'
 *            scripts/convert_dit_to_diffusers.py). Every tensor is an official one renamed, with
 *            the same values and chunk orders:
 *   pos_embed.proj.{weight,bias}                            x_embedder.proj.*
 *   transformer_blocks.{i}.norm1.emb.timestep_embedder.linear_1.*, .linear_2.*
 *                                                           t_embedder.mlp.0.*, t_embedder.mlp.2.*
 *   transformer_blocks.{i}.norm1.emb.class_embedder.embedding_table.weight
 *                                                           y_embedder.embedding_table.weight
 *       (these two embedders are stored once per block, all copies equal)
 *   transformer_blocks.{i}.norm1.linear.*                   blocks.{i}.adaLN_modulation.1.*
 *   transformer_blocks.{i}.attn1.to_q.*, to_k.*, to_v.*     rows [0,D), [D,2D), [2D,3D) of
 *                                                           blocks.{i}.attn.qkv.*
 *   transformer_blocks.{i}.attn1.to_out.0.*                 blocks.{i}.attn.proj.*
 *   transformer_blocks.{i}.ff.net.0.proj.*, ff.net.2.*      blocks.{i}.mlp.fc1.*, mlp.fc2.*
 *   proj_out_1.*, proj_out_2.*                              final_layer.adaLN_modulation.1.*,
 *                                                           final_layer.linear.*
 *            The file has no pos_embed (diffusers recomputes it), so the input size is not in it.
 */
#ifndef DT_DIT_LAYOUT_H
#define DT_DIT_LAYOUT_H

#include <stddef.h>
#include "dit.h"
#include "safetensors.h"

typedef enum { DIT_LAYOUT_OFFICIAL = 0, DIT_LAYOUT_DIFFUSERS = 1 } dit_layout;

#define DIT_LAYOUT_NAME_MAX 160 /* bytes of a tensor name, prefix included */
#define DIT_LAYOUT_MAX_PARTS 3  /* attn.qkv is three tensors in the diffusers layout */

/* The layout of the DiT stored under prefix in f (by tensor names): diffusers when it has
 * "<prefix>pos_embed.proj.weight" or "<prefix>transformer_blocks.0.attn1.to_q.weight" and no
 * "<prefix>x_embedder.proj.weight"; otherwise official. */
dit_layout dit_layout_detect(const st_file *f, const char *prefix);
/* "official" or "diffusers". */
const char *dit_layout_name(dit_layout layout);

/* The file names (prefix + name) of official parameter `official` in layout, into out: one
 * part, or three for attn.qkv in the diffusers layout (q, k, v, each a third of the rows). For
 * the embedders stored in every block (diffusers), copy is the block whose copy is named; it is
 * ignored otherwise. Returns the number of parts, or -1 when official is no DiT parameter name
 * or a name does not fit. */
int dit_layout_names(dit_layout layout, const char *prefix, const char *official, int copy,
                     char out[DIT_LAYOUT_MAX_PARTS][DIT_LAYOUT_NAME_MAX]);
/* How many copies of official the layout stores in a DiT of `depth` blocks: depth for the
 * timestep and label embedders in the diffusers layout, else 1. */
int dit_layout_copies(dit_layout layout, const char *official, int depth);

/* Copies every parameter of m stored under prefix in f into host (m->num_floats floats, the
 * official order), converting F16/BF16/F64 to fp32 and checking each shape. In the diffusers
 * layout attn.qkv is assembled from its three parts and every block's copy of the embedders must
 * equal block 0's. Tensors named "train.*", "adam.*" and pos_embed are left alone; any other
 * tensor that is no parameter of m in this layout is refused. Returns 0, or -1 with a message
 * naming the first missing, mis-shaped, disagreeing or foreign tensor. */
int dit_layout_read(const st_file *f, const dit_model *m, const char *prefix, float *host,
                    char *err, size_t errlen);

#endif
