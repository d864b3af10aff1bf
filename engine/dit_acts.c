/* dit_acts.c — one backend allocation holding every DiT activation and backward buffer. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "dit.h"
#include "peft.h"

/* Carves `count` floats from the block, 64-byte aligned; with base NULL only measures. A size
 * past SIZE_MAX (extreme batch and image sizes) sticks at SIZE_MAX, which no allocator grants. */
static float *acts_take(char *base, size_t *cursor, size_t count) {
    if (*cursor > SIZE_MAX - 63 || count > (SIZE_MAX - ((*cursor + 63) & ~(size_t)63)) / sizeof(float)) {
        *cursor = SIZE_MAX;
        return NULL;
    }
    size_t start = (*cursor + 63) & ~(size_t)63;
    *cursor = start + count * sizeof(float);
    return base ? (float *)(base + start) : NULL;
}

/* a * b, or SIZE_MAX when the product does not fit. */
static size_t acts_mul(size_t a, size_t b) {
    size_t r;
    return __builtin_mul_overflow(a, b, &r) ? SIZE_MAX : r;
}

/* Lays out every buffer over base (or measures when base is NULL); returns the bytes used. */
static size_t acts_layout(dit_acts *a, const dit_model *m, char *base) {
    const dit_config *c = &m->cfg;
    const dt_backend *be = m->be;
    const size_t B = (size_t)a->max_batch, N = (size_t)c->tokens, D = (size_t)c->hidden;
    const size_t L = a->layers, BN = B * N;
    size_t cur = 0;
    a->patches = acts_take(base, &cur, BN * c->patch_dim);
    a->t_freq = acts_take(base, &cur, B * DIT_FREQ_DIM);
    a->t_h = acts_take(base, &cur, B * D);
    a->t_act = acts_take(base, &cur, B * D);
    a->t_emb = acts_take(base, &cur, B * D);
    a->y_emb = acts_take(base, &cur, B * D);
    a->c = acts_take(base, &cur, B * D);
    a->c_silu = acts_take(base, &cur, B * D);
    a->x = acts_take(base, &cur, (a->training ? L + 1 : 2) * BN * D);
    a->mod = acts_take(base, &cur, L * B * 6 * D);
    a->ln1 = acts_take(base, &cur, L * BN * D);
    a->ln2 = acts_take(base, &cur, L * BN * D);
    a->mean1 = acts_take(base, &cur, L * BN);
    a->rstd1 = acts_take(base, &cur, L * BN);
    a->mean2 = acts_take(base, &cur, L * BN);
    a->rstd2 = acts_take(base, &cur, L * BN);
    a->qkv = acts_take(base, &cur, L * BN * 3 * D);
    a->att = acts_take(base, &cur, L * BN * D);
    a->saved_per_layer = be->attention_saved_floats((int)B, (int)N, c->heads, c->hidden / c->heads);
    a->att_saved = acts_take(base, &cur, acts_mul(L, a->saved_per_layer));
    a->att_proj = acts_take(base, &cur, L * BN * D);
    a->x_mid = acts_take(base, &cur, L * BN * D);
    a->h1 = acts_take(base, &cur, L * BN * 4 * D);
    a->h1g = acts_take(base, &cur, L * BN * 4 * D);
    a->h2 = acts_take(base, &cur, L * BN * D);
    a->fmod = acts_take(base, &cur, B * 2 * D);
    a->lnf = acts_take(base, &cur, BN * D);
    a->meanf = acts_take(base, &cur, BN);
    a->rstdf = acts_take(base, &cur, BN);
    a->fout = acts_take(base, &cur, BN * c->out_dim);
    /* attention scratch is needed by the forward pass too */
    a->att_scratch = acts_take(base, &cur,
        be->attention_scratch_floats((int)B, (int)N, c->heads, c->hidden / c->heads));
    if (a->training) {
        a->d_x = acts_take(base, &cur, BN * D);
        a->d_tmp = acts_take(base, &cur, BN * D);
        a->d_ln = acts_take(base, &cur, BN * D);
        a->d_qkv = acts_take(base, &cur, BN * 3 * D);
        a->d_h = acts_take(base, &cur, BN * 4 * D);
        a->d_h2 = acts_take(base, &cur, BN * 4 * D);
        a->d_mod = acts_take(base, &cur, B * 6 * D);
        a->d_c = acts_take(base, &cur, B * D);
        a->d_c_silu = acts_take(base, &cur, B * D);
        a->d_t_act = acts_take(base, &cur, B * D);
        a->d_t_h = acts_take(base, &cur, B * D);
        a->d_fout = acts_take(base, &cur, BN * c->out_dim);
    }
    if (m->ad && m->ad->cfg.kind == DT_PEFT_DIFFFIT) {
        a->gamma_layers = a->training ? (size_t)m->ad->cfg.difffit_blocks : 1;
        a->qkv_raw = acts_take(base, &cur, a->gamma_layers * BN * 3 * D);
        a->proj_raw = acts_take(base, &cur, a->gamma_layers * BN * D);
        a->h2_raw = acts_take(base, &cur, a->gamma_layers * BN * D);
    }
    if (m->ad && m->ad->cfg.kind == DT_PEFT_LORA) {
        const size_t r = (size_t)m->ad->cfg.rank;
        a->lora_rank = (int)r;
        a->lora_u = acts_take(base, &cur, L * 4 * BN * r);
        a->lora_tmp = acts_take(base, &cur, BN * 4 * D);
        if (a->training) a->lora_du = acts_take(base, &cur, BN * r);
    }
    return cur;
}

int dit_acts_alloc(dit_acts *a, const dit_model *m, int max_batch, int training,
                   char *err, size_t errlen) {
    memset(a, 0, sizeof *a);
    a->max_batch = max_batch;
    a->training = training ? 1 : 0;
    a->depth = m->cfg.depth;
    a->layers = training ? (size_t)m->cfg.depth : 1;
    a->bytes = acts_layout(a, m, NULL);
    a->block = a->bytes == SIZE_MAX ? NULL : m->be->alloc(m->be, a->bytes);
    if (!a->block) {
        snprintf(err, errlen, "out of memory: activations for batch %d need %.1f MiB on %s",
                 max_batch, a->bytes / 1048576.0, m->be->name);
        return -1;
    }
    acts_layout(a, m, a->block);
    return 0;
}

size_t dit_acts_bytes(const dit_model *m, int max_batch, int training) {
    dit_acts a;
    memset(&a, 0, sizeof a);
    a.max_batch = max_batch;
    a.training = training ? 1 : 0;
    a.depth = m->cfg.depth;
    a.layers = training ? (size_t)m->cfg.depth : 1;
    return acts_layout(&a, m, NULL);
}

void dit_acts_free(dit_acts *a, const dit_model *m) {
    if (a->block) m->be->free(m->be, a->block);
    memset(a, 0, sizeof *a);
}
