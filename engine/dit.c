/* dit.c — DiT configuration, parameter table, initialisation and pos_embed.
 * The forward and backward passes are in dit_pass.c; activation memory in dit_acts.c. */
#include "dit.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "philox.h"
#include "rng.h"

static const struct {
    const char *size;
    int depth, hidden, heads;
} dit_presets[] = {
    {"S", 12, 384, 6}, {"B", 12, 768, 12}, {"L", 24, 1024, 16}, {"XL", 28, 1152, 16},
};

int dit_arch_lookup(const char *arch, int *depth, int *hidden, int *heads, int *patch) {
    if (strncmp(arch, "DiT-", 4) != 0) return -1;
    const char *slash = strchr(arch + 4, '/');
    if (!slash) return -1;
    size_t len = (size_t)(slash - (arch + 4));
    int p = atoi(slash + 1);
    if (strcmp(slash + 1, "2") && strcmp(slash + 1, "4") && strcmp(slash + 1, "8")) return -1;
    for (size_t i = 0; i < sizeof dit_presets / sizeof dit_presets[0]; i++) {
        if (strlen(dit_presets[i].size) == len && !strncmp(dit_presets[i].size, arch + 4, len)) {
            *depth = dit_presets[i].depth;
            *hidden = dit_presets[i].hidden;
            *heads = dit_presets[i].heads;
            *patch = p;
            return 0;
        }
    }
    return -1;
}

int dit_config_init(dit_config *cfg, int depth, int hidden, int heads, int patch, int image_size,
                    int in_channels, int num_classes, int learn_sigma, char *err, size_t errlen) {
    memset(cfg, 0, sizeof *cfg);
    const char *why = NULL;
    if (depth < 1 || depth > DIT_MAX_DEPTH) why = "depth must be 1..64";
    else if (hidden < 8 || hidden % 4) why = "hidden size must be >= 8 and a multiple of 4";
    else if (heads < 1 || hidden % heads) why = "hidden size must be divisible by the head count";
    else if (patch < 1 || patch > 8) why = "patch size must be 1..8";
    else if (image_size < patch || image_size % patch) why = "image size must be a multiple of the patch size";
    else if (in_channels < 1 || in_channels > 16) why = "channels must be 1..16";
    else if (num_classes < 1) why = "the model needs at least one class";
    if (why) {
        snprintf(err, errlen, "invalid DiT config (depth %d, hidden %d, heads %d, patch %d, image %d, "
                 "channels %d, classes %d): %s", depth, hidden, heads, patch, image_size,
                 in_channels, num_classes, why);
        return -1;
    }
    cfg->depth = depth;
    cfg->hidden = hidden;
    cfg->heads = heads;
    cfg->patch = patch;
    cfg->image_size = image_size;
    cfg->in_channels = in_channels;
    cfg->learn_sigma = learn_sigma ? 1 : 0;
    cfg->out_channels = learn_sigma ? 2 * in_channels : in_channels;
    cfg->num_classes = num_classes;
    cfg->grid = image_size / patch;
    cfg->tokens = cfg->grid * cfg->grid;
    cfg->patch_dim = in_channels * patch * patch;
    cfg->out_dim = patch * patch * cfg->out_channels;
    return 0;
}

/* Appends one tensor to the table (or only counts when table is NULL). */
static void dit_add_param(dit_param *table, int *n, size_t *offset, const char *name, int ndim,
                          int64_t d0, int64_t d1, int64_t d2, int64_t d3) {
    int64_t shape[4] = {d0, d1, d2, d3};
    size_t numel = 1;
    for (int i = 0; i < ndim; i++) numel *= (size_t)shape[i];
    if (table) {
        dit_param *p = &table[*n];
        snprintf(p->name, sizeof p->name, "%s", name);
        p->ndim = ndim;
        memcpy(p->shape, shape, sizeof shape);
        p->offset = *offset;
        p->numel = numel;
    }
    (*n)++;
    *offset += numel;
}

int dit_param_table(const dit_config *c, dit_param *table, size_t *total) {
    int n = 0;
    size_t off = 0;
    const int64_t D = c->hidden;
    char name[64];
    dit_add_param(table, &n, &off, "x_embedder.proj.weight", 4, D, c->in_channels, c->patch, c->patch);
    dit_add_param(table, &n, &off, "x_embedder.proj.bias", 1, D, 0, 0, 0);
    dit_add_param(table, &n, &off, "t_embedder.mlp.0.weight", 2, D, DIT_FREQ_DIM, 0, 0);
    dit_add_param(table, &n, &off, "t_embedder.mlp.0.bias", 1, D, 0, 0, 0);
    dit_add_param(table, &n, &off, "t_embedder.mlp.2.weight", 2, D, D, 0, 0);
    dit_add_param(table, &n, &off, "t_embedder.mlp.2.bias", 1, D, 0, 0, 0);
    dit_add_param(table, &n, &off, "y_embedder.embedding_table.weight", 2, c->num_classes + 1, D, 0, 0);
    static const struct { const char *suffix; int out_mult, in_mult; } layers[] = {
        {"attn.qkv", 3, 1}, {"attn.proj", 1, 1}, {"mlp.fc1", 4, 1}, {"mlp.fc2", 1, 4},
        {"adaLN_modulation.1", 6, 1},
    };
    for (int i = 0; i < c->depth; i++) {
        for (size_t k = 0; k < sizeof layers / sizeof layers[0]; k++) {
            snprintf(name, sizeof name, "blocks.%d.%s.weight", i, layers[k].suffix);
            dit_add_param(table, &n, &off, name, 2, layers[k].out_mult * D, layers[k].in_mult * D, 0, 0);
            snprintf(name, sizeof name, "blocks.%d.%s.bias", i, layers[k].suffix);
            dit_add_param(table, &n, &off, name, 1, layers[k].out_mult * D, 0, 0, 0);
        }
    }
    dit_add_param(table, &n, &off, "final_layer.linear.weight", 2, c->out_dim, D, 0, 0);
    dit_add_param(table, &n, &off, "final_layer.linear.bias", 1, c->out_dim, 0, 0, 0);
    dit_add_param(table, &n, &off, "final_layer.adaLN_modulation.1.weight", 2, 2 * D, D, 0, 0);
    dit_add_param(table, &n, &off, "final_layer.adaLN_modulation.1.bias", 1, 2 * D, 0, 0, 0);
    *total = off;
    return n;
}

size_t dit_count_params(const dit_config *cfg) {
    size_t total;
    dit_param_table(cfg, NULL, &total);
    return total;
}

void dit_pos_embed_host(const dit_config *cfg, float *host) {
    /* First D/2 dims encode the column index, last D/2 the row; each half is
     * [sin(pos w_k) for k < D/4, cos(pos w_k) for k < D/4], w_k = 10000^(-k/(D/4)). */
    const int D = cfg->hidden, G = cfg->grid, Q = D / 4;
    for (int h = 0; h < G; h++) {
        for (int w = 0; w < G; w++) {
            float *row = host + (size_t)(h * G + w) * D;
            for (int k = 0; k < Q; k++) {
                double omega = 1.0 / pow(10000.0, (double)k / (double)Q);
                row[k] = (float)sin(w * omega);
                row[Q + k] = (float)cos(w * omega);
                row[2 * Q + k] = (float)sin(h * omega);
                row[3 * Q + k] = (float)cos(h * omega);
            }
        }
    }
}

int dit_model_init(dit_model *m, const dit_config *cfg, dt_backend *be, char *err, size_t errlen) {
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    m->be = be;
    size_t total;
    int n = dit_param_table(cfg, NULL, &total);
    m->params = calloc((size_t)n, sizeof *m->params);
    if (!m->params) {
        snprintf(err, errlen, "out of host memory for the parameter table");
        return -1;
    }
    m->n_params = dit_param_table(cfg, m->params, &m->num_floats);
    size_t pe_bytes = (size_t)cfg->tokens * cfg->hidden * sizeof(float);
    float *host = malloc(pe_bytes);
    m->pos_embed = be->alloc(be, pe_bytes);
    if (!host || !m->pos_embed) {
        free(host);
        dit_model_free(m);
        snprintf(err, errlen, "out of memory for pos_embed (%zu bytes)", pe_bytes);
        return -1;
    }
    dit_pos_embed_host(cfg, host);
    be->upload(be, m->pos_embed, host, pe_bytes);
    free(host);
    return 0;
}

void dit_model_free(dit_model *m) {
    if (m->pos_embed) m->be->free(m->be, m->pos_embed);
    free(m->params);
    memset(m, 0, sizeof *m);
}

const dit_param *dit_find_param(const dit_model *m, const char *name) {
    for (int i = 0; i < m->n_params; i++)
        if (!strcmp(m->params[i].name, name)) return &m->params[i];
    return NULL;
}

int dit_weights_slots(dit_weights *w, int depth, float **slots[]) {
    /* The table is in state-dict order: head tensors, ten per block, four of the final layer. */
    int n = 0;
    float **head[] = {&w->x_w, &w->x_b, &w->t0_w, &w->t0_b, &w->t2_w, &w->t2_b, &w->y_table};
    for (size_t k = 0; k < sizeof head / sizeof head[0]; k++) slots[n++] = head[k];
    for (int i = 0; i < depth; i++) {
        dit_block_weights *b = &w->blocks[i];
        float **blk[] = {&b->qkv_w, &b->qkv_b, &b->proj_w, &b->proj_b, &b->fc1_w,
                         &b->fc1_b, &b->fc2_w, &b->fc2_b, &b->ada_w, &b->ada_b};
        for (size_t k = 0; k < sizeof blk / sizeof blk[0]; k++) slots[n++] = blk[k];
    }
    float **fin[] = {&w->final_w, &w->final_b, &w->final_ada_w, &w->final_ada_b};
    for (size_t k = 0; k < sizeof fin / sizeof fin[0]; k++) slots[n++] = fin[k];
    return n;
}

dit_weights dit_weights_at(const dit_model *m, float *base) {
    dit_weights w;
    memset(&w, 0, sizeof w);
    float **slots[DIT_MAX_PARAMS];
    int n = dit_weights_slots(&w, m->cfg.depth, slots);
    for (int i = 0; i < n && i < m->n_params; i++) *slots[i] = base + m->params[i].offset;
    return w;
}

/* Xavier-uniform bound for a (fan_out, fan_in) matrix. */
static float dit_xavier_bound(int64_t fan_out, int64_t fan_in) {
    return (float)sqrt(6.0 / (double)(fan_in + fan_out));
}

void dit_init_host(const dit_model *m, float *host, uint64_t seed) {
    memset(host, 0, m->num_floats * sizeof(float));
    for (int i = 0; i < m->n_params; i++) {
        const dit_param *p = &m->params[i];
        float *dst = host + p->offset;
        const char *name = p->name;
        uint64_t stream = DT_STREAM_INIT + (uint64_t)i;
        if (p->ndim == 1) continue; /* every bias starts at zero */
        if (strstr(name, "adaLN_modulation") || !strcmp(name, "final_layer.linear.weight")) continue;
        if (!strncmp(name, "t_embedder", 10) || !strncmp(name, "y_embedder", 10)) {
            for (size_t j = 0; j < p->numel; j++) dst[j] = 0.02f * dt_philox_normal(seed, stream, j);
            continue;
        }
        /* Linear layers and the patch conv viewed as (D, C*p*p): xavier uniform. */
        int64_t fan_out = p->shape[0];
        int64_t fan_in = (int64_t)(p->numel / (size_t)fan_out);
        float bound = dit_xavier_bound(fan_out, fan_in);
        for (size_t j = 0; j < p->numel; j++)
            dst[j] = bound * (2.0f * dt_rng_uniform(seed, stream, j) - 1.0f);
    }
}
