/* cpu_internal.h — private glue between the source files of the CPU reference backend.
 *
 * Each cpu_*.c file owns one group of ops, keeps them static, and exposes only an installer that
 * writes its function pointers into a dt_backend table; cpu_backend.c calls every installer.
 * CPU "backend memory" is ordinary host memory, so ops dereference tensor pointers directly.
 */
#ifndef DT_CPU_INTERNAL_H
#define DT_CPU_INTERNAL_H

#include <stddef.h>

#include "backend.h"

/* Element count below which a loop is not worth an OpenMP region (used in `if` clauses). */
#define CPU_PAR_MIN 16384

/* Installers: each fills the table entries of its group and touches nothing else. */
void cpu_dense_install(dt_backend *be);     /* matmul (cpu_dense.c) */
void cpu_attention_install(dt_backend *be); /* attention (cpu_attention.c) */
void cpu_norm_install(dt_backend *be);      /* ln_modulate, gate_residual (cpu_norm.c) */
void cpu_pointwise_install(dt_backend *be); /* activations, axpy, scale, add_rows, randn */
void cpu_embed_install(dt_backend *be);     /* embeddings, patchify family (cpu_embed.c) */
void cpu_diffusion_install(dt_backend *be); /* q_sample, cfg_combine, ddpm/ddim steps */
void cpu_loss_install(dt_backend *be);      /* diffusion_loss (cpu_loss.c) */
void cpu_optim_install(dt_backend *be);     /* sum_squares, clip, adamw, ema (cpu_optim.c) */
void cpu_conv_install(dt_backend *be);      /* conv2d_scratch_bytes, conv2d_forward (cpu_conv.c) */
void cpu_image_install(dt_backend *be);     /* group_norm, upsample2x, transpose (cpu_image.c) */

#endif
