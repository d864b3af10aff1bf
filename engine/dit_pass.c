/* dit_pass.c — the DiT forward and backward passes, layer by layer through the op table, with
 * the adapter tensors of peft.h where the model has them: DiffFit's gammas scale a layer's
 * outputs (the unscaled ones are kept for the gamma gradients), LoRA adds (alpha / r) B (A x) to
 * a target linear's output. */
#include <assert.h>

#include "dit.h"
#include "peft.h"

/* Per-layer views of the activation block (layer 0's buffers serve every layer at inference). */
typedef struct {
    float *x_in, *x_out, *mod, *ln1, *mean1, *rstd1, *qkv, *att, *att_saved, *att_proj;
    float *x_mid, *ln2, *mean2, *rstd2, *h1, *h1g, *h2;
    float *qkv_raw, *proj_raw, *h2_raw; /* DiffFit blocks: the outputs before their gammas */
    float *lora_u[4];                   /* LoRA: A x of each target */
} dit_layer_acts;

static dit_layer_acts dit_layer(const dit_acts *a, const dit_config *c, int l, int B) {
    const size_t BND = (size_t)a->max_batch * c->tokens * c->hidden;
    const size_t BN = (size_t)a->max_batch * c->tokens;
    const size_t k = a->training ? (size_t)l : 0;
    dit_layer_acts v;
    /* Inference ping-pongs the trunk between two buffers; training keeps every block input. */
    v.x_in = a->x + (a->training ? (size_t)l : (size_t)(l % 2)) * BND;
    v.x_out = a->x + (a->training ? (size_t)l + 1 : (size_t)((l + 1) % 2)) * BND;
    v.mod = a->mod + k * (size_t)a->max_batch * 6 * c->hidden;
    v.ln1 = a->ln1 + k * BND;
    v.mean1 = a->mean1 + k * BN;
    v.rstd1 = a->rstd1 + k * BN;
    v.qkv = a->qkv + k * 3 * BND;
    v.att = a->att + k * BND;
    v.att_saved = a->att_saved + k * a->saved_per_layer;
    v.att_proj = a->att_proj + k * BND;
    v.x_mid = a->x_mid + k * BND;
    v.ln2 = a->ln2 + k * BND;
    v.mean2 = a->mean2 + k * BN;
    v.rstd2 = a->rstd2 + k * BN;
    v.h1 = a->h1 + k * 4 * BND;
    v.h1g = a->h1g + k * 4 * BND;
    v.h2 = a->h2 + k * BND;
    if (a->qkv_raw && k < a->gamma_layers) { /* DiffFit's first blocks (all share k 0 at inference) */
        v.qkv_raw = a->qkv_raw + k * 3 * BND;
        v.proj_raw = a->proj_raw + k * BND;
        v.h2_raw = a->h2_raw + k * BND;
    } else {
        v.qkv_raw = v.proj_raw = v.h2_raw = NULL;
    }
    for (int t = 0; t < 4; t++)
        v.lora_u[t] = a->lora_u ? a->lora_u + (k * 4 + (size_t)t) * BN * a->lora_rank : NULL;
    (void)B;
    return v;
}

/* The weights the passes read: the full block, or the adapter's view over its frozen base. */
static dit_weights dit_view(const dit_model *m, const float *params) {
    return m->ad ? peft_weights(m->ad, m, m->ad->base, (float *)params)
                 : dit_weights_at(m, (float *)params);
}

/* out (rows, OC) = inp W^T + bias, plus lora_scale * (inp A^T) B^T when A is set (u keeps
 * inp A^T for the backward pass). */
static void dit_linear_forward(dt_backend *be, const dit_acts *a, const dit_weights *w,
                               float *out, const float *inp, const float *W, const float *bias,
                               const float *A, const float *Bm, float *u, int rows, int C, int OC) {
    be->matmul_forward(be, out, inp, W, bias, rows, C, OC);
    if (!A) return;
    be->matmul_forward(be, u, inp, A, NULL, rows, C, w->lora_rank);
    be->matmul_forward(be, a->lora_tmp, u, Bm, NULL, rows, w->lora_rank, OC);
    be->axpy(be, out, w->lora_scale, a->lora_tmp, (size_t)rows * OC);
}

/* The gradients of dit_linear_forward given dout: dinp += (through W and the LoRA path), dW,
 * dbias, dA, dB += theirs (each may be NULL: frozen). Clobbers lora_tmp and lora_du. */
static void dit_linear_backward(dt_backend *be, const dit_acts *a, const dit_weights *w,
                                float *dinp, float *dW, float *dbias, float *dA, float *dB,
                                const float *dout, const float *inp, const float *W,
                                const float *A, const float *Bm, const float *u, int rows, int C,
                                int OC) {
    be->matmul_backward(be, dinp, dW, dbias, dout, inp, W, rows, C, OC);
    if (!A) return;
    const int r = w->lora_rank;
    be->copy(be, a->lora_tmp, dout, sizeof(float) * (size_t)rows * OC);
    be->scale(be, a->lora_tmp, w->lora_scale, (size_t)rows * OC);
    be->zero(be, a->lora_du, sizeof(float) * (size_t)rows * r);
    be->matmul_backward(be, a->lora_du, dB, NULL, a->lora_tmp, u, Bm, rows, r, OC);
    be->matmul_backward(be, dinp, dA, NULL, a->lora_du, inp, A, rows, C, r);
}

/* The trunk output (input of the final layer). */
static float *dit_trunk_out(const dit_acts *a, const dit_config *c) {
    const size_t BND = (size_t)a->max_batch * c->tokens * c->hidden;
    return a->x + (a->training ? (size_t)c->depth : (size_t)(c->depth % 2)) * BND;
}

void dit_forward(const dit_model *m, const float *params, dit_acts *a, const float *x,
                 const int32_t *t, const int32_t *y, int B, float *out) {
    assert(B >= 1 && B <= a->max_batch);
    dt_backend *be = m->be;
    const dit_config *c = &m->cfg;
    const int D = c->hidden, N = c->tokens, BN = B * N, HS = D / c->heads;
    dit_weights w = dit_view(m, params);

    /* Patch embedding + fixed positions. */
    be->patchify(be, a->patches, x, B, c->in_channels, c->image_size, c->image_size, c->patch);
    float *x0 = dit_layer(a, c, 0, B).x_in;
    be->matmul_forward(be, x0, a->patches, w.x_w, w.x_b, BN, c->patch_dim, D);
    be->add_rows(be, x0, m->pos_embed, B, (size_t)N * D);

    /* Conditioning c = MLP(freq(t)) + table[y]. */
    be->timestep_embedding(be, a->t_freq, t, B, DIT_FREQ_DIM);
    be->matmul_forward(be, a->t_h, a->t_freq, w.t0_w, w.t0_b, B, DIT_FREQ_DIM, D);
    be->silu_forward(be, a->t_act, a->t_h, (size_t)B * D);
    be->matmul_forward(be, a->t_emb, a->t_act, w.t2_w, w.t2_b, B, D, D);
    be->embedding_forward(be, a->y_emb, w.y_table, y, B, D);
    be->copy(be, a->c, a->t_emb, (size_t)B * D * sizeof(float));
    be->axpy(be, a->c, 1.0f, a->y_emb, (size_t)B * D);
    be->silu_forward(be, a->c_silu, a->c, (size_t)B * D);

    for (int l = 0; l < c->depth; l++) {
        const dit_block_weights *bw = &w.blocks[l];
        dit_layer_acts v = dit_layer(a, c, l, B);
        const int ms = 6 * D; /* mod rows: shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp */
        be->matmul_forward(be, v.mod, a->c_silu, bw->ada_w, bw->ada_b, B, D, 6 * D);

        /* A DiffFit block writes each scaled output from its unscaled copy. */
        const int dg = bw->gamma1 != NULL;
        be->ln_modulate_forward(be, v.ln1, v.mean1, v.rstd1, v.x_in, v.mod, v.mod + D, B, N, D, ms);
        dit_linear_forward(be, a, &w, dg ? v.qkv_raw : v.qkv, v.ln1, bw->qkv_w, bw->qkv_b,
                           bw->lora_a[0], bw->lora_b[0], v.lora_u[0], BN, D, 3 * D);
        if (dg) be->scale_cols_forward(be, v.qkv, v.qkv_raw, bw->attn_gamma1, NULL, BN, 3 * D);
        be->attention_forward(be, v.att, v.att_saved, a->att_scratch, v.qkv, B, N, c->heads, HS);
        dit_linear_forward(be, a, &w, dg ? v.proj_raw : v.att_proj, v.att, bw->proj_w, bw->proj_b,
                           bw->lora_a[1], bw->lora_b[1], v.lora_u[1], BN, D, D);
        if (dg) be->scale_cols_forward(be, v.att_proj, v.proj_raw, bw->attn_gamma2, bw->gamma1, BN, D);
        be->gate_residual_forward(be, v.x_mid, v.x_in, v.att_proj, v.mod + 2 * D, B, N, D, ms);

        be->ln_modulate_forward(be, v.ln2, v.mean2, v.rstd2, v.x_mid, v.mod + 3 * D, v.mod + 4 * D, B, N, D, ms);
        dit_linear_forward(be, a, &w, v.h1, v.ln2, bw->fc1_w, bw->fc1_b, bw->lora_a[2],
                           bw->lora_b[2], v.lora_u[2], BN, D, 4 * D);
        be->gelu_forward(be, v.h1g, v.h1, (size_t)BN * 4 * D);
        dit_linear_forward(be, a, &w, dg ? v.h2_raw : v.h2, v.h1g, bw->fc2_w, bw->fc2_b,
                           bw->lora_a[3], bw->lora_b[3], v.lora_u[3], BN, 4 * D, D);
        if (dg) be->scale_cols_forward(be, v.h2, v.h2_raw, bw->gamma2, NULL, BN, D);
        be->gate_residual_forward(be, v.x_out, v.x_mid, v.h2, v.mod + 5 * D, B, N, D, ms);
    }

    /* Final layer: adaLN (shift, scale), linear, unpatchify. */
    float *xt = dit_trunk_out(a, c);
    be->matmul_forward(be, a->fmod, a->c_silu, w.final_ada_w, w.final_ada_b, B, D, 2 * D);
    be->ln_modulate_forward(be, a->lnf, a->meanf, a->rstdf, xt, a->fmod, a->fmod + D, B, N, D, 2 * D);
    be->matmul_forward(be, a->fout, a->lnf, w.final_w, w.final_b, BN, D, c->out_dim);
    be->unpatchify(be, out, a->fout, B, c->out_channels, c->image_size, c->image_size, c->patch);
}

void dit_backward(const dit_model *m, const float *params, float *grads, dit_acts *a,
                  const float *dout, const int32_t *y, int B) {
    assert(a->training && B >= 1 && B <= a->max_batch);
    dt_backend *be = m->be;
    const dit_config *c = &m->cfg;
    const int D = c->hidden, N = c->tokens, BN = B * N, HS = D / c->heads;
    const size_t fBND = sizeof(float) * (size_t)BN * D, fBD = sizeof(float) * (size_t)B * D;
    dit_weights w = dit_view(m, params);
    /* frozen tensors have NULL gradient views: their weight gradients are skipped */
    dit_weights g = m->ad ? peft_grads(m->ad, m, grads) : dit_weights_at(m, grads);
    /* d(conditioning) is needed only when something feeding it trains */
    const int need_dc = g.t0_w || g.t0_b || g.t2_w || g.t2_b || g.y_table;

    /* Every backward op accumulates: zero each activation gradient before its first use.
     * d_x carries d(trunk) from the top of the network down to the patch embedding. */
    be->zero(be, a->d_fout, sizeof(float) * (size_t)BN * c->out_dim);
    be->unpatchify_backward(be, a->d_fout, dout, B, c->out_channels, c->image_size, c->image_size, c->patch);
    be->zero(be, a->d_ln, fBND);
    be->matmul_backward(be, a->d_ln, g.final_w, g.final_b, a->d_fout, a->lnf, w.final_w, BN, D, c->out_dim);
    be->zero(be, a->d_x, fBND);
    be->zero(be, a->d_mod, sizeof(float) * (size_t)B * 2 * D);
    be->ln_modulate_backward(be, a->d_x, a->d_mod, a->d_mod + D, a->d_ln, dit_trunk_out(a, c),
                             a->meanf, a->rstdf, a->fmod + D, B, N, D, 2 * D);
    if (need_dc) be->zero(be, a->d_c_silu, fBD);
    if (need_dc || g.final_ada_w || g.final_ada_b)
        be->matmul_backward(be, need_dc ? a->d_c_silu : NULL, g.final_ada_w, g.final_ada_b, a->d_mod,
                            a->c_silu, w.final_ada_w, B, D, 2 * D);

    for (int l = c->depth - 1; l >= 0; l--) {
        const dit_block_weights *bw = &w.blocks[l];
        dit_block_weights *bg = &g.blocks[l];
        dit_layer_acts v = dit_layer(a, c, l, B);
        const int ms = 6 * D, dg = bw->gamma1 != NULL;
        be->zero(be, a->d_mod, sizeof(float) * (size_t)B * 6 * D);

        /* x_out = x_mid + gate_mlp * fc2(gelu(fc1(ln2))): d_x passes through the residual. */
        be->zero(be, a->d_tmp, fBND);
        be->gate_residual_backward(be, NULL, a->d_tmp, a->d_mod + 5 * D, a->d_x, v.h2, v.mod + 5 * D, B, N, D, ms);
        if (dg) /* d_tmp becomes d(unscaled fc2 output) */
            be->scale_cols_backward(be, a->d_tmp, bg->gamma2, NULL, a->d_tmp, v.h2_raw, bw->gamma2, NULL, BN, D);
        be->zero(be, a->d_h2, sizeof(float) * (size_t)BN * 4 * D);
        dit_linear_backward(be, a, &w, a->d_h2, bg->fc2_w, bg->fc2_b, bg->lora_a[3], bg->lora_b[3],
                            a->d_tmp, v.h1g, bw->fc2_w, bw->lora_a[3], bw->lora_b[3], v.lora_u[3], BN, 4 * D, D);
        be->zero(be, a->d_h, sizeof(float) * (size_t)BN * 4 * D);
        be->gelu_backward(be, a->d_h, v.h1, a->d_h2, (size_t)BN * 4 * D);
        be->zero(be, a->d_ln, fBND);
        dit_linear_backward(be, a, &w, a->d_ln, bg->fc1_w, bg->fc1_b, bg->lora_a[2], bg->lora_b[2],
                            a->d_h, v.ln2, bw->fc1_w, bw->lora_a[2], bw->lora_b[2], v.lora_u[2], BN, D, 4 * D);
        be->ln_modulate_backward(be, a->d_x, a->d_mod + 3 * D, a->d_mod + 4 * D, a->d_ln, v.x_mid,
                                 v.mean2, v.rstd2, v.mod + 4 * D, B, N, D, ms);

        /* x_mid = x_in + gate_msa * proj(attn(qkv(ln1))). */
        be->zero(be, a->d_tmp, fBND);
        be->gate_residual_backward(be, NULL, a->d_tmp, a->d_mod + 2 * D, a->d_x, v.att_proj, v.mod + 2 * D, B, N, D, ms);
        if (dg)
            be->scale_cols_backward(be, a->d_tmp, bg->attn_gamma2, bg->gamma1, a->d_tmp, v.proj_raw,
                                    bw->attn_gamma2, bw->gamma1, BN, D);
        be->zero(be, a->d_ln, fBND);
        dit_linear_backward(be, a, &w, a->d_ln, bg->proj_w, bg->proj_b, bg->lora_a[1], bg->lora_b[1],
                            a->d_tmp, v.att, bw->proj_w, bw->lora_a[1], bw->lora_b[1], v.lora_u[1], BN, D, D);
        be->zero(be, a->d_qkv, 3 * fBND);
        be->attention_backward(be, a->d_qkv, a->att_scratch, a->d_ln, v.qkv, v.att_saved, B, N, c->heads, HS);
        if (dg)
            be->scale_cols_backward(be, a->d_qkv, bg->attn_gamma1, NULL, a->d_qkv, v.qkv_raw,
                                    bw->attn_gamma1, NULL, BN, 3 * D);
        be->zero(be, a->d_ln, fBND);
        dit_linear_backward(be, a, &w, a->d_ln, bg->qkv_w, bg->qkv_b, bg->lora_a[0], bg->lora_b[0],
                            a->d_qkv, v.ln1, bw->qkv_w, bw->lora_a[0], bw->lora_b[0], v.lora_u[0], BN, D, 3 * D);
        be->ln_modulate_backward(be, a->d_x, a->d_mod, a->d_mod + D, a->d_ln, v.x_in,
                                 v.mean1, v.rstd1, v.mod + D, B, N, D, ms);

        /* mod = adaLN(SiLU(c)): every block adds into d_c_silu. */
        if (need_dc || bg->ada_w || bg->ada_b)
            be->matmul_backward(be, need_dc ? a->d_c_silu : NULL, bg->ada_w, bg->ada_b, a->d_mod,
                                a->c_silu, bw->ada_w, B, D, 6 * D);
    }

    /* Patch embedding (pos_embed is fixed; the input image needs no gradient). */
    if (g.x_w || g.x_b)
        be->matmul_backward(be, NULL, g.x_w, g.x_b, a->d_x, a->patches, w.x_w, BN, c->patch_dim, D);
    if (!need_dc) return;

    /* c = t_emb + y_emb, so both receive d_c. */
    be->zero(be, a->d_c, fBD);
    be->silu_backward(be, a->d_c, a->c, a->d_c_silu, (size_t)B * D);
    if (g.y_table) be->embedding_backward(be, g.y_table, a->d_c, y, B, D);
    const int need_dt = g.t0_w || g.t0_b;
    if (need_dt) be->zero(be, a->d_t_act, fBD);
    be->matmul_backward(be, need_dt ? a->d_t_act : NULL, g.t2_w, g.t2_b, a->d_c, a->t_act, w.t2_w, B, D, D);
    if (!need_dt) return;
    be->zero(be, a->d_t_h, fBD);
    be->silu_backward(be, a->d_t_h, a->t_h, a->d_t_act, (size_t)B * D);
    be->matmul_backward(be, NULL, g.t0_w, g.t0_b, a->d_t_h, a->t_freq, w.t0_w, B, DIT_FREQ_DIM, D);
}
