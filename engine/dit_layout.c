/* dit_layout.c — the official and diffusers names of the DiT's parameters, and reading either. */
#include "dit_layout.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errmsg.h"

/* Where an official tensor family lives in the diffusers layout. */
typedef enum {
    MAP_GLOBAL, /* one tensor, outside the blocks */
    MAP_SHARED, /* one official tensor, a copy in every diffusers block */
    MAP_BLOCK   /* one per block */
} map_scope;

static const struct {
    map_scope scope;
    const char *official; /* without "blocks.{i}." and ".weight"/".bias" */
    const char *diffusers[DIT_LAYOUT_MAX_PARTS]; /* without "transformer_blocks.{i}." and the leaf */
    int parts;
} dit_layout_map[] = {
    {MAP_GLOBAL, "x_embedder.proj", {"pos_embed.proj"}, 1},
    {MAP_SHARED, "t_embedder.mlp.0", {"norm1.emb.timestep_embedder.linear_1"}, 1},
    {MAP_SHARED, "t_embedder.mlp.2", {"norm1.emb.timestep_embedder.linear_2"}, 1},
    {MAP_SHARED, "y_embedder.embedding_table", {"norm1.emb.class_embedder.embedding_table"}, 1},
    {MAP_BLOCK, "attn.qkv", {"attn1.to_q", "attn1.to_k", "attn1.to_v"}, 3},
    {MAP_BLOCK, "attn.proj", {"attn1.to_out.0"}, 1},
    {MAP_BLOCK, "mlp.fc1", {"ff.net.0.proj"}, 1},
    {MAP_BLOCK, "mlp.fc2", {"ff.net.2"}, 1},
    {MAP_BLOCK, "adaLN_modulation.1", {"norm1.linear"}, 1},
    {MAP_GLOBAL, "final_layer.linear", {"proj_out_2"}, 1},
    {MAP_GLOBAL, "final_layer.adaLN_modulation.1", {"proj_out_1"}, 1},
};
#define MAP_N ((int)(sizeof dit_layout_map / sizeof dit_layout_map[0]))

#define BLOCKS_OFFICIAL "blocks."
#define BLOCKS_DIFFUSERS "transformer_blocks."

const char *dit_layout_name(dit_layout layout) {
    return layout == DIT_LAYOUT_DIFFUSERS ? "diffusers" : "official";
}

static int dl_has(const st_file *f, const char *prefix, const char *name) {
    char full[DIT_LAYOUT_NAME_MAX];
    int n = snprintf(full, sizeof full, "%s%s", prefix, name);
    return n > 0 && (size_t)n < sizeof full && safetensors_find(f, full) != NULL;
}

dit_layout dit_layout_detect(const st_file *f, const char *prefix) {
    if (dl_has(f, prefix, "x_embedder.proj.weight")) return DIT_LAYOUT_OFFICIAL;
    if (dl_has(f, prefix, "pos_embed.proj.weight") ||
        dl_has(f, prefix, "transformer_blocks.0.attn1.to_q.weight"))
        return DIT_LAYOUT_DIFFUSERS;
    return DIT_LAYOUT_OFFICIAL;
}

/* Splits an official name into its block (-1 outside the blocks), stem and leaf ("weight" or
 * "bias"). Returns the map entry, or -1. */
static int dl_parse_official(const char *name, int *block, char *stem, size_t stemlen,
                             const char **leaf) {
    const char *dot = strrchr(name, '.');
    if (!dot || (strcmp(dot + 1, "weight") && strcmp(dot + 1, "bias"))) return -1;
    *leaf = dot + 1;
    *block = -1;
    const char *s = name;
    if (!strncmp(name, BLOCKS_OFFICIAL, sizeof BLOCKS_OFFICIAL - 1)) {
        char *end;
        long b = strtol(name + sizeof BLOCKS_OFFICIAL - 1, &end, 10);
        if (end == name + sizeof BLOCKS_OFFICIAL - 1 || *end != '.' || b < 0 || b >= DIT_MAX_DEPTH)
            return -1;
        *block = (int)b;
        s = end + 1;
    }
    size_t n = (size_t)(dot - s);
    if (n >= stemlen) return -1;
    memcpy(stem, s, n);
    stem[n] = '\0';
    for (int k = 0; k < MAP_N; k++)
        if (!strcmp(dit_layout_map[k].official, stem) &&
            (dit_layout_map[k].scope == MAP_BLOCK) == (*block >= 0))
            return k;
    return -1;
}

int dit_layout_names(dit_layout layout, const char *prefix, const char *official, int copy,
                     char out[DIT_LAYOUT_MAX_PARTS][DIT_LAYOUT_NAME_MAX]) {
    int block;
    char stem[64];
    const char *leaf;
    int k = dl_parse_official(official, &block, stem, sizeof stem, &leaf);
    if (k < 0) return -1;
    if (layout == DIT_LAYOUT_OFFICIAL) {
        int n = snprintf(out[0], DIT_LAYOUT_NAME_MAX, "%s%s", prefix, official);
        return n > 0 && n < DIT_LAYOUT_NAME_MAX ? 1 : -1;
    }
    const int parts = dit_layout_map[k].parts;
    const int b = dit_layout_map[k].scope == MAP_SHARED ? copy : block;
    for (int p = 0; p < parts; p++) {
        int n = dit_layout_map[k].scope == MAP_GLOBAL
                    ? snprintf(out[p], DIT_LAYOUT_NAME_MAX, "%s%s.%s", prefix,
                               dit_layout_map[k].diffusers[p], leaf)
                    : snprintf(out[p], DIT_LAYOUT_NAME_MAX, "%s" BLOCKS_DIFFUSERS "%d.%s.%s", prefix,
                               b, dit_layout_map[k].diffusers[p], leaf);
        if (n <= 0 || n >= DIT_LAYOUT_NAME_MAX) return -1;
    }
    return parts;
}

int dit_layout_copies(dit_layout layout, const char *official, int depth) {
    int block;
    char stem[64];
    const char *leaf;
    int k = dl_parse_official(official, &block, stem, sizeof stem, &leaf);
    return layout == DIT_LAYOUT_DIFFUSERS && k >= 0 && dit_layout_map[k].scope == MAP_SHARED
               ? depth : 1;
}

/* The official name of a diffusers tensor name into out, and the block of its copy (0 outside
 * the blocks). Returns 0, or -1 when it is no diffusers DiT name. */
static int dl_official_of_diffusers(const char *name, char *out, size_t outlen, int *copy) {
    const char *dot = strrchr(name, '.');
    if (!dot || (strcmp(dot + 1, "weight") && strcmp(dot + 1, "bias"))) return -1;
    const char *leaf = dot + 1, *body = name;
    int block = -1;
    *copy = 0;
    if (!strncmp(name, BLOCKS_DIFFUSERS, sizeof BLOCKS_DIFFUSERS - 1)) {
        char *end;
        long b = strtol(name + sizeof BLOCKS_DIFFUSERS - 1, &end, 10);
        if (end == name + sizeof BLOCKS_DIFFUSERS - 1 || *end != '.' || b < 0 || b >= DIT_MAX_DEPTH)
            return -1;
        block = (int)b;
        body = end + 1;
    }
    const size_t n = (size_t)(dot - body);
    for (int k = 0; k < MAP_N; k++) {
        if ((dit_layout_map[k].scope != MAP_GLOBAL) != (block >= 0)) continue;
        for (int p = 0; p < dit_layout_map[k].parts; p++) {
            const char *d = dit_layout_map[k].diffusers[p];
            if (strlen(d) != n || strncmp(d, body, n)) continue;
            int w;
            if (dit_layout_map[k].scope == MAP_BLOCK)
                w = snprintf(out, outlen, BLOCKS_OFFICIAL "%d.%s.%s", block, dit_layout_map[k].official, leaf);
            else
                w = snprintf(out, outlen, "%s.%s", dit_layout_map[k].official, leaf);
            if (dit_layout_map[k].scope == MAP_SHARED) *copy = block;
            return w > 0 && (size_t)w < outlen ? 0 : -1;
        }
    }
    return -1;
}

/* "[a, b, c]" of a shape into out. */
static void dl_shape_str(char *out, size_t len, int ndim, const int64_t *shape) {
    size_t used = 0;
    out[0] = '\0';
    for (int d = 0; d < ndim && used < len; d++) {
        int w = snprintf(out + used, len - used, "%s%lld", d ? ", " : "", (long long)shape[d]);
        if (w < 0) break;
        used += (size_t)w;
    }
}

/* Checks that tensor `name` exists with the shape of parameter p split in `parts` along rows,
 * then reads it as fp32 into dst. */
static int dl_read_part(const st_file *f, const char *name, const dit_param *p, int parts,
                        float *dst, char *err, size_t errlen) {
    const st_tensor *t = safetensors_find(f, name);
    if (!t) {
        dt_errorf(err, errlen, "%s: missing tensor '%s' (parameter %s of this DiT)", f->path, name,
                  p->name);
        return -1;
    }
    int64_t want[4];
    memcpy(want, p->shape, sizeof want);
    want[0] /= parts;
    int same = t->ndim == p->ndim;
    for (int d = 0; same && d < p->ndim; d++) same = t->shape[d] == want[d];
    if (!same) {
        char has[128], need[128];
        dl_shape_str(has, sizeof has, t->ndim, t->shape);
        dl_shape_str(need, sizeof need, p->ndim, want);
        dt_errorf(err, errlen, "%s: tensor '%s' has shape [%s]; this DiT needs [%s]", f->path, name,
                  has, need);
        return -1;
    }
    return safetensors_read_f32(f, name, dst, p->numel / (size_t)parts, err, errlen);
}

/* Refuses a tensor of f that is no parameter of m in layout (train.*, adam.* and pos_embed
 * aside). */
static int dl_check_foreign(const st_file *f, const dit_model *m, dit_layout layout, char *err,
                            size_t errlen) {
    for (int i = 0; i < f->n; i++) {
        const char *tn = f->tensors[i].name;
        if (!strncmp(tn, "train.", 6) || !strncmp(tn, "adam.", 5) || !strcmp(tn, "pos_embed")) continue;
        char official[DIT_LAYOUT_NAME_MAX];
        int copy = 0, ok;
        if (layout == DIT_LAYOUT_OFFICIAL)
            ok = dit_find_param(m, tn) != NULL;
        else
            ok = dl_official_of_diffusers(tn, official, sizeof official, &copy) == 0 &&
                 dit_find_param(m, official) != NULL && copy < m->cfg.depth;
        if (!ok) {
            dt_errorf(err, errlen, "%s: unexpected tensor '%s' (not a parameter of this DiT in the "
                      "%s layout)", f->path, tn, dit_layout_name(layout));
            return -1;
        }
    }
    return 0;
}

int dit_layout_read(const st_file *f, const dit_model *m, const char *prefix, float *host,
                    char *err, size_t errlen) {
    const dit_layout layout = dit_layout_detect(f, prefix);
    size_t scratch_n = 0;
    for (int i = 0; i < m->n_params; i++)
        if (dit_layout_copies(layout, m->params[i].name, m->cfg.depth) > 1 &&
            m->params[i].numel > scratch_n)
            scratch_n = m->params[i].numel;
    float *scratch = scratch_n ? malloc(scratch_n * sizeof *scratch) : NULL;
    if (scratch_n && !scratch) {
        dt_errorf(err, errlen, "out of memory reading %s", f->path);
        return -1;
    }
    int rc = 0;
    char names[DIT_LAYOUT_MAX_PARTS][DIT_LAYOUT_NAME_MAX];
    for (int i = 0; !rc && i < m->n_params; i++) {
        const dit_param *p = &m->params[i];
        const int copies = dit_layout_copies(layout, p->name, m->cfg.depth);
        for (int c = 0; !rc && c < copies; c++) {
            int parts = dit_layout_names(layout, prefix, p->name, c, names);
            if (parts < 1) {
                dt_errorf(err, errlen, "%s: cannot name parameter %s under prefix '%s'", f->path,
                          p->name, prefix);
                rc = -1;
                break;
            }
            const size_t part_n = p->numel / (size_t)parts;
            float *dst = c == 0 ? host + p->offset : scratch;
            for (int k = 0; !rc && k < parts; k++)
                rc = dl_read_part(f, names[k], p, parts, dst + (size_t)k * part_n, err, errlen);
            if (rc || c == 0) continue;
            /* a copy must be block 0's bit for bit (same bytes convert to the same floats) */
            const float *first = host + p->offset;
            for (size_t j = 0; j < p->numel; j++) {
                if (memcmp(&first[j], &scratch[j], sizeof(float)) != 0) {
                    char first_name[DIT_LAYOUT_MAX_PARTS][DIT_LAYOUT_NAME_MAX];
                    dit_layout_names(layout, prefix, p->name, 0, first_name);
                    dt_errorf(err, errlen, "%s: tensor '%s' differs from block 0's copy '%s' "
                              "(element %zu: %g, not %g); diffusers' DiT stores the timestep and "
                              "label embedders in every block, and they must all be equal",
                              f->path, names[0], first_name[0], j, (double)scratch[j],
                              (double)first[j]);
                    rc = -1;
                    break;
                }
            }
        }
    }
    free(scratch);
    if (rc) return rc;
    return dl_check_foreign(f, m, layout, err, errlen);
}
