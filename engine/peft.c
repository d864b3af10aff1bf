/* peft.c — DiffFit, BitFit and LoRA adapters: the trainable table, views, initialisation and
 * merging into a plain DiT. */
#include "peft.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"

static const char *const peft_target_layers[PEFT_LORA_TARGETS] = {"attn.qkv", "attn.proj",
                                                                  "mlp.fc1", "mlp.fc2"};
/* (out, in) of each target as multiples of the hidden size */
static const int peft_target_out[PEFT_LORA_TARGETS] = {3, 1, 4, 1};
static const int peft_target_in[PEFT_LORA_TARGETS] = {1, 1, 1, 4};

/* Appends one tensor (or only counts when ad->t is NULL). */
static void peft_add(dit_adapter *ad, const char *name, int ndim, int64_t d0, int64_t d1,
                     peft_role role, int base_index, int block, int target) {
    size_t numel = (size_t)d0 * (size_t)(ndim > 1 ? d1 : 1);
    if (ad->t) {
        peft_tensor *t = &ad->t[ad->n];
        memset(t, 0, sizeof *t);
        snprintf(t->p.name, sizeof t->p.name, "%s", name);
        t->p.ndim = ndim;
        t->p.shape[0] = d0;
        t->p.shape[1] = ndim > 1 ? d1 : 0;
        t->p.offset = ad->num_floats;
        t->p.numel = numel;
        t->role = role;
        t->base_index = base_index;
        t->block = block;
        t->target = target;
    }
    ad->n++;
    ad->num_floats += numel;
}

/* Whether base tensor p trains under kind (DiffFit and BitFit: biases and the label table). */
static int peft_trains_base(dt_peft_kind kind, const dit_param *p) {
    if (kind != DT_PEFT_DIFFFIT && kind != DT_PEFT_BITFIT) return 0;
    return p->ndim == 1 || !strcmp(p->name, "y_embedder.embedding_table.weight");
}

/* Walks the trainable tensors in block order into ad (counting only when ad->t is NULL). */
static void peft_walk(dit_adapter *ad, const dit_config *c, const dit_param *table, int n_base) {
    const dt_peft_config *pc = &ad->cfg;
    const int64_t D = c->hidden;
    char name[64];
    ad->n = 0;
    ad->num_floats = 0;
    for (int i = 0; i < n_base; i++)
        if (peft_trains_base(pc->kind, &table[i]))
            peft_add(ad, table[i].name, table[i].ndim, table[i].shape[0], table[i].shape[1],
                     PEFT_ROLE_BASE, i, -1, -1);
    for (int b = 0; b < c->depth; b++) {
        if (pc->kind == DT_PEFT_DIFFFIT && b < pc->difffit_blocks) {
            static const struct { const char *fmt; int mult; peft_role role; } g[] = {
                {"blocks.%d.gamma1", 1, PEFT_ROLE_GAMMA1},
                {"blocks.%d.gamma2", 1, PEFT_ROLE_GAMMA2},
                {"blocks.%d.attn.gamma1", 3, PEFT_ROLE_ATTN_GAMMA1},
                {"blocks.%d.attn.gamma2", 1, PEFT_ROLE_ATTN_GAMMA2},
            };
            for (size_t k = 0; k < sizeof g / sizeof g[0]; k++) {
                snprintf(name, sizeof name, g[k].fmt, b);
                peft_add(ad, name, 1, g[k].mult * D, 0, g[k].role, -1, b, -1);
            }
        }
        if (pc->kind != DT_PEFT_LORA) continue;
        for (int t = 0; t < PEFT_LORA_TARGETS; t++) {
            if (!(pc->targets & (1u << t))) continue;
            snprintf(name, sizeof name, "blocks.%d.%s.lora_A.weight", b, peft_target_layers[t]);
            peft_add(ad, name, 2, pc->rank, peft_target_in[t] * D, PEFT_ROLE_LORA_A, -1, b, t);
            snprintf(name, sizeof name, "blocks.%d.%s.lora_B.weight", b, peft_target_layers[t]);
            peft_add(ad, name, 2, peft_target_out[t] * D, pc->rank, PEFT_ROLE_LORA_B, -1, b, t);
        }
    }
}

/* Resolves pc's defaults against c into out; returns 0 or -1 with a message. */
static int peft_resolve(dt_peft_config *out, const dit_config *c, const dt_peft_config *pc,
                        char *err, size_t errlen) {
    *out = *pc;
    if (pc->kind != DT_PEFT_DIFFFIT && pc->kind != DT_PEFT_BITFIT && pc->kind != DT_PEFT_LORA) {
        snprintf(err, errlen, "peft: no adapter for \"%s\"", spec_peft_name(pc->kind));
        return -1;
    }
    if (pc->kind == DT_PEFT_DIFFFIT) {
        if (!out->difffit_blocks) out->difffit_blocks = (c->depth + 1) / 2;
        if (out->difffit_blocks < 1 || out->difffit_blocks > c->depth) {
            snprintf(err, errlen, "peft_options.difffit_blocks is %d but the base model has %d "
                     "blocks (give 1..%d, or null for %d)", out->difffit_blocks, c->depth,
                     c->depth, (c->depth + 1) / 2);
            return -1;
        }
    }
    if (pc->kind == DT_PEFT_LORA) {
        if (pc->rank < 1 || pc->rank > DT_LORA_RANK_MAX || pc->rank > c->hidden) {
            snprintf(err, errlen, "peft_options.rank is %d: it must be 1..%d and at most the "
                     "hidden size (%d)", pc->rank, DT_LORA_RANK_MAX, c->hidden);
            return -1;
        }
        if (!(pc->targets & DT_LORA_ALL) || (pc->targets & ~DT_LORA_ALL)) {
            snprintf(err, errlen, "peft_options.targets must name at least one of qkv, proj, fc1, fc2");
            return -1;
        }
        if (!(out->alpha > 0)) out->alpha = pc->rank;
    }
    return 0;
}

int peft_adapter_init(dit_adapter *ad, const dit_config *c, const dt_peft_config *pc,
                      char *err, size_t errlen) {
    memset(ad, 0, sizeof *ad);
    if (peft_resolve(&ad->cfg, c, pc, err, errlen)) return -1;
    ad->lora_scale = ad->cfg.kind == DT_PEFT_LORA ? (float)(ad->cfg.alpha / ad->cfg.rank) : 0.0f;
    dit_param *table = malloc(sizeof *table * DIT_MAX_PARAMS);
    if (!table) {
        snprintf(err, errlen, "out of host memory for the adapter table");
        return -1;
    }
    size_t total;
    int n_base = dit_param_table(c, table, &total);
    peft_walk(ad, c, table, n_base); /* count */
    ad->t = calloc((size_t)ad->n, sizeof *ad->t);
    if (!ad->t) {
        free(table);
        snprintf(err, errlen, "out of host memory for the adapter table");
        return -1;
    }
    peft_walk(ad, c, table, n_base);
    free(table);
    return 0;
}

void peft_adapter_free(dit_adapter *ad) {
    free(ad->t);
    memset(ad, 0, sizeof *ad);
}

size_t peft_count(const dit_config *c, const dt_peft_config *pc) {
    if (pc->kind == DT_PEFT_NONE) return dit_count_params(c);
    dit_adapter ad;
    char err[256];
    if (peft_adapter_init(&ad, c, pc, err, sizeof err)) return 0;
    size_t n = ad.num_floats;
    peft_adapter_free(&ad);
    return n;
}

const peft_tensor *peft_find(const dit_adapter *ad, const char *name) {
    for (int i = 0; i < ad->n; i++)
        if (!strcmp(ad->t[i].p.name, name)) return &ad->t[i];
    return NULL;
}

/* Points the view w at the trainable tensors in block (views of a parameter or gradient
 * block). */
static void peft_point(const dit_adapter *ad, dit_weights *w, float **slots[], float *block) {
    for (int i = 0; i < ad->n; i++) {
        const peft_tensor *t = &ad->t[i];
        float *p = block + t->p.offset;
        dit_block_weights *b = t->block >= 0 ? &w->blocks[t->block] : NULL;
        switch (t->role) {
        case PEFT_ROLE_BASE: *slots[t->base_index] = p; break;
        case PEFT_ROLE_GAMMA1: b->gamma1 = p; break;
        case PEFT_ROLE_GAMMA2: b->gamma2 = p; break;
        case PEFT_ROLE_ATTN_GAMMA1: b->attn_gamma1 = p; break;
        case PEFT_ROLE_ATTN_GAMMA2: b->attn_gamma2 = p; break;
        case PEFT_ROLE_LORA_A: b->lora_a[t->target] = p; break;
        case PEFT_ROLE_LORA_B: b->lora_b[t->target] = p; break;
        }
    }
    w->lora_rank = ad->cfg.kind == DT_PEFT_LORA ? ad->cfg.rank : 0;
    w->lora_scale = ad->lora_scale;
}

dit_weights peft_weights(const dit_adapter *ad, const dit_model *m, const float *base,
                         float *train) {
    dit_weights w = dit_weights_at(m, (float *)base);
    float **slots[DIT_MAX_PARAMS];
    dit_weights_slots(&w, m->cfg.depth, slots);
    peft_point(ad, &w, slots, train);
    return w;
}

dit_weights peft_grads(const dit_adapter *ad, const dit_model *m, float *grads) {
    dit_weights w;
    memset(&w, 0, sizeof w);
    float **slots[DIT_MAX_PARAMS];
    dit_weights_slots(&w, m->cfg.depth, slots);
    peft_point(ad, &w, slots, grads);
    return w;
}

void peft_init_host(const dit_adapter *ad, const dit_model *m, const float *base_host,
                    float *train_host, uint64_t seed) {
    for (int i = 0; i < ad->n; i++) {
        const peft_tensor *t = &ad->t[i];
        float *dst = train_host + t->p.offset;
        switch (t->role) {
        case PEFT_ROLE_BASE:
            memcpy(dst, base_host + m->params[t->base_index].offset, t->p.numel * sizeof(float));
            break;
        case PEFT_ROLE_LORA_A: {
            /* PyTorch's Linear default (kaiming-uniform with a = sqrt(5)): +-1/sqrt(fan_in) */
            const float bound = (float)(1.0 / sqrt((double)t->p.shape[1]));
            for (size_t j = 0; j < t->p.numel; j++)
                dst[j] = bound * (2.0f * dt_rng_uniform(seed, DT_STREAM_PEFT + (uint64_t)i, j) - 1.0f);
            break;
        }
        case PEFT_ROLE_LORA_B:
            memset(dst, 0, t->p.numel * sizeof(float));
            break;
        default: /* gammas */
            for (size_t j = 0; j < t->p.numel; j++) dst[j] = 1.0f;
            break;
        }
    }
}

/* Scales row o of the (rows, cols) matrix w and entry o of bias by g[o] (times g2[o] if g2). */
static void peft_scale_rows(float *w, float *bias, const float *g, const float *g2, int64_t rows,
                            int64_t cols) {
    for (int64_t o = 0; o < rows; o++) {
        const float s = g2 ? g[o] * g2[o] : g[o];
        float *row = w + o * cols;
        for (int64_t i = 0; i < cols; i++) row[i] *= s;
        bias[o] *= s;
    }
}

void peft_merge_host(const dit_adapter *ad, const dit_model *m, const float *base_host,
                     const float *train_host, float *out_host) {
    if (out_host != base_host) memcpy(out_host, base_host, m->num_floats * sizeof(float));
    const int64_t D = m->cfg.hidden;
    for (int i = 0; i < ad->n; i++) {
        const peft_tensor *t = &ad->t[i];
        if (t->role == PEFT_ROLE_BASE)
            memcpy(out_host + m->params[t->base_index].offset, train_host + t->p.offset,
                   t->p.numel * sizeof(float));
    }
    dit_weights o = dit_weights_at(m, out_host);
    dit_weights tw = peft_weights(ad, m, base_host, (float *)train_host);
    for (int b = 0; b < m->cfg.depth; b++) {
        dit_block_weights *ob = &o.blocks[b];
        const dit_block_weights *gb = &tw.blocks[b];
        if (gb->gamma1) {
            /* qkv = (W x + b) * attn.gamma1; the attention branch's proj output is scaled by
             * attn.gamma2 and then by gamma1; the MLP branch by gamma2. */
            peft_scale_rows(ob->qkv_w, ob->qkv_b, gb->attn_gamma1, NULL, 3 * D, D);
            peft_scale_rows(ob->proj_w, ob->proj_b, gb->attn_gamma2, gb->gamma1, D, D);
            peft_scale_rows(ob->fc2_w, ob->fc2_b, gb->gamma2, NULL, D, 4 * D);
        }
        float *targets[PEFT_LORA_TARGETS] = {ob->qkv_w, ob->proj_w, ob->fc1_w, ob->fc2_w};
        for (int t = 0; t < PEFT_LORA_TARGETS; t++) {
            if (!gb->lora_a[t]) continue;
            const int64_t out = peft_target_out[t] * D, in = peft_target_in[t] * D, r = tw.lora_rank;
            for (int64_t row = 0; row < out; row++) {
                float *w = targets[t] + row * in;
                for (int64_t k = 0; k < r; k++) {
                    const float c = tw.lora_scale * gb->lora_b[t][row * r + k];
                    const float *a = gb->lora_a[t] + k * in;
                    for (int64_t i = 0; i < in; i++) w[i] += c * a[i];
                }
            }
        }
    }
}

char *peft_config_json(const dt_peft_config *pc) {
    json_t *targets = json_array();
    for (int t = 0; t < PEFT_LORA_TARGETS; t++)
        if (pc->targets & (1u << t))
            json_array_append_new(targets, json_string(spec_lora_target_name(t)));
    json_t *o = json_pack("{s:s, s:i, s:f, s:o, s:i}", "kind", spec_peft_name(pc->kind), "rank",
                          pc->rank, "alpha", pc->alpha, "targets", targets, "difffit_blocks",
                          pc->difffit_blocks);
    char *s = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(o);
    return s;
}

int peft_config_parse(const char *text, dt_peft_config *pc, char *err, size_t errlen) {
    memset(pc, 0, sizeof *pc);
    json_error_t je;
    json_t *o = json_loads(text, 0, &je), *targets = NULL;
    const char *kind = NULL;
    int rc = -1;
    if (!o || json_unpack(o, "{s:s, s:i, s:F, s:o, s:i}", "kind", &kind, "rank", &pc->rank,
                          "alpha", &pc->alpha, "targets", &targets, "difffit_blocks",
                          &pc->difffit_blocks) || !json_is_array(targets)) {
        snprintf(err, errlen, "the peft metadata is not a valid adapter description");
        goto done;
    }
    const int k = spec_peft_kind(kind);
    pc->kind = k > 0 ? (dt_peft_kind)k : DT_PEFT_NONE; /* "none" is no adapter either */
    size_t i;
    json_t *v;
    json_array_foreach(targets, i, v) {
        for (int t = 0; t < PEFT_LORA_TARGETS; t++)
            if (json_is_string(v) && !strcmp(json_string_value(v), spec_lora_target_name(t)))
                pc->targets |= 1u << t;
    }
    if (pc->kind == DT_PEFT_NONE) {
        snprintf(err, errlen, "the peft metadata names an unknown adapter \"%s\"", kind);
        goto done;
    }
    rc = 0;
done:
    json_decref(o);
    return rc;
}
