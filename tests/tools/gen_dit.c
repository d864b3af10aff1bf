/* gen_dit.c — writes a DiT safetensors file in a published layout with deterministic random
 * weights, for the tests and benchmarks.
 *
 * Usage: gen_dit --out FILE --layout official|diffusers [--dtype f32|f16|bf16] [--arch DiT-XL/2]
 *                [--depth N] [--hidden D --heads H --patch P] [--input-size 32] [--in-channels 4]
 *                [--classes 1000] [--learn-sigma 0|1] [--seed S]
 *
 * official:  the state-dict names of facebookresearch/DiT (shared/reference/dit.md), as a user gets
 *            by saving the released DiT-XL-2-256x256.pt with safetensors, pos_embed (1, N, D)
 *            included; no __metadata__.
 * diffusers: the names of diffusers' DiTTransformer2DModel / Transformer2DModel with norm_type
 *            "ada_norm_zero" (transformer/diffusion_pytorch_model.safetensors of facebook/DiT-XL-2-256,
 *            as scripts/convert_dit_to_diffusers.py produces it): no pos_embed, attn.qkv split into
 *            to_q/to_k/to_v, the timestep and label embedders repeated in every block;
 *            __metadata__ {"format": "pt"}.
 * The name map is written here independently of engine/dit_layout.c, so a naming mistake in one
 * is caught by the other.
 *
 * --arch gives hidden size, heads, patch and depth; --depth, --hidden, --heads and --patch override
 * it (tests use XL widths with one or two blocks, or a tiny model).
 *
 * Weights: every value is a function of (seed, official tensor name, index) only, so files that
 * differ only in --layout or --dtype hold the same numbers (rounded to the dtype). Values are
 * 24-bit integers over 2^23 times a scale, one rounding, so they are bit-identical on every IEEE
 * machine (committed PyTorch fixtures rely on that). Linear and patch-conv weights U(-a, a) with
 * variance 1/fan_in, biases U(-0.1, 0.1), the label table U(-1, 1); the adaLN modulations and the
 * final linear are random too (not zero as at initialisation), so no block is an identity.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dit.h"
#include "safetensors.h"

#define GEN_TOOL "gen_dit"
#include "gen_common.h"

enum { GEN_WEIGHT, GEN_BIAS, GEN_TABLE };

/* One parameter under its official name, with its values. */
typedef struct {
    char name[128];
    int kind;
    int ndim;
    int64_t shape[4];
    size_t numel;
    float *values;
} gen_param;

typedef struct {
    gen_param *p;
    int n, cap;
} gen_list;


static gen_param *gen_add(gen_list *l, const char *name, int kind, int ndim, int64_t d0,
                          int64_t d1, int64_t d2, int64_t d3) {
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 256;
        l->p = realloc(l->p, (size_t)l->cap * sizeof *l->p);
        if (!l->p) gen_die("out of memory");
    }
    gen_param *p = &l->p[l->n++];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    p->kind = kind;
    p->ndim = ndim;
    int64_t s[4] = {d0, d1, d2, d3};
    p->numel = 1;
    for (int i = 0; i < ndim; i++) {
        p->shape[i] = s[i];
        p->numel *= (size_t)s[i];
    }
    return p;
}

/* A linear layer "<prefix>.weight" (out, in) and "<prefix>.bias" (out). */
static void gen_linear(gen_list *l, const char *prefix, int64_t out, int64_t in) {
    char name[160];
    snprintf(name, sizeof name, "%s.weight", prefix);
    gen_add(l, name, GEN_WEIGHT, 2, out, in, 0, 0);
    snprintf(name, sizeof name, "%s.bias", prefix);
    gen_add(l, name, GEN_BIAS, 1, out, 0, 0, 0);
}

/* The official parameters in state-dict order (dit.md, "State-dict names and shapes"). */
static void gen_official(gen_list *l, const dit_config *c) {
    const int64_t D = c->hidden;
    char p[96];
    gen_add(l, "x_embedder.proj.weight", GEN_WEIGHT, 4, D, c->in_channels, c->patch, c->patch);
    gen_add(l, "x_embedder.proj.bias", GEN_BIAS, 1, D, 0, 0, 0);
    gen_linear(l, "t_embedder.mlp.0", D, DIT_FREQ_DIM);
    gen_linear(l, "t_embedder.mlp.2", D, D);
    gen_add(l, "y_embedder.embedding_table.weight", GEN_TABLE, 2, c->num_classes + 1, D, 0, 0);
    for (int i = 0; i < c->depth; i++) {
        snprintf(p, sizeof p, "blocks.%d.attn.qkv", i);
        gen_linear(l, p, 3 * D, D);
        snprintf(p, sizeof p, "blocks.%d.attn.proj", i);
        gen_linear(l, p, D, D);
        snprintf(p, sizeof p, "blocks.%d.mlp.fc1", i);
        gen_linear(l, p, 4 * D, D);
        snprintf(p, sizeof p, "blocks.%d.mlp.fc2", i);
        gen_linear(l, p, D, 4 * D);
        snprintf(p, sizeof p, "blocks.%d.adaLN_modulation.1", i);
        gen_linear(l, p, 6 * D, D);
    }
    gen_linear(l, "final_layer.linear", c->out_dim, D);
    gen_linear(l, "final_layer.adaLN_modulation.1", 2 * D, D);
}



static void gen_fill(gen_param *p, uint64_t seed) {
    uint64_t stream = gen_hash(p->name);
    float a = 0.1f;
    if (p->kind == GEN_WEIGHT) a = sqrtf(3.0f / (float)(p->numel / (size_t)p->shape[0]));
    else if (p->kind == GEN_TABLE) a = 1.0f;
    for (size_t i = 0; i < p->numel; i++) p->values[i] = a * gen_sym_unit(seed, stream, i);
}



/* The tensors to write, each a slice of an official parameter's values under a file name. */
typedef struct {
    st_write_tensor *t;
    char (*names)[128];
    int n, cap;
    st_dtype dtype;
} gen_out;

static void gen_emit(gen_out *o, const char *name, const gen_param *p, size_t first_row,
                     int64_t rows) {
    if (o->n == o->cap) {
        o->cap = o->cap ? 2 * o->cap : 512;
        o->t = realloc(o->t, (size_t)o->cap * sizeof *o->t);
        o->names = realloc(o->names, (size_t)o->cap * sizeof *o->names);
        if (!o->t || !o->names) gen_die("out of memory");
    }
    st_write_tensor *t = &o->t[o->n];
    memset(t, 0, sizeof *t);
    snprintf(o->names[o->n], sizeof o->names[o->n], "%s", name);
    t->dtype = o->dtype;
    t->ndim = p->ndim;
    for (int d = 0; d < p->ndim; d++) t->shape[d] = p->shape[d];
    t->shape[0] = rows;
    const size_t row = p->numel / (size_t)p->shape[0], n = row * (size_t)rows;
    const float *src = p->values + first_row * row;
    if (o->dtype == ST_F32) {
        t->data = src;
    } else {
        uint16_t *h = malloc(n * sizeof *h + 1);
        if (!h) gen_die("out of memory");
        for (size_t i = 0; i < n; i++) h[i] = o->dtype == ST_F16 ? gen_f16(src[i]) : gen_bf16(src[i]);
        t->data = h;
    }
    o->n++;
}

static void gen_emit_all(gen_out *o, const char *name, const gen_param *p) {
    gen_emit(o, name, p, 0, p->shape[0]);
}

static const gen_param *gen_find(const gen_list *l, const char *name) {
    for (int i = 0; i < l->n; i++)
        if (!strcmp(l->p[i].name, name)) return &l->p[i];
    gen_die("internal: parameter missing");
    return NULL;
}

/* diffusers' names (scripts/convert_dit_to_diffusers.py): the embedders go into every block's
 * norm1.emb, qkv is chunked in three along rows (q, k, v), the rest is renamed one to one. */
static void gen_diffusers(gen_out *o, const gen_list *l, const dit_config *c) {
    char name[128], src[96];
    static const char *const wb[] = {"weight", "bias"};
    for (int k = 0; k < 2; k++) {
        snprintf(src, sizeof src, "x_embedder.proj.%s", wb[k]);
        snprintf(name, sizeof name, "pos_embed.proj.%s", wb[k]);
        gen_emit_all(o, name, gen_find(l, src));
    }
    for (int i = 0; i < c->depth; i++) {
        char b[64];
        snprintf(b, sizeof b, "transformer_blocks.%d", i);
        for (int k = 0; k < 2; k++) {
            static const char *const t_src[] = {"t_embedder.mlp.0", "t_embedder.mlp.2"};
            static const char *const t_dst[] = {"linear_1", "linear_2"};
            for (int j = 0; j < 2; j++) {
                snprintf(src, sizeof src, "%s.%s", t_src[j], wb[k]);
                snprintf(name, sizeof name, "%s.norm1.emb.timestep_embedder.%s.%s", b, t_dst[j], wb[k]);
                gen_emit_all(o, name, gen_find(l, src));
            }
        }
        snprintf(name, sizeof name, "%s.norm1.emb.class_embedder.embedding_table.weight", b);
        gen_emit_all(o, name, gen_find(l, "y_embedder.embedding_table.weight"));
        static const struct { const char *src, *dst; } one[] = {
            {"adaLN_modulation.1", "norm1.linear"}, {"attn.proj", "attn1.to_out.0"},
            {"mlp.fc1", "ff.net.0.proj"}, {"mlp.fc2", "ff.net.2"},
        };
        for (int k = 0; k < 2; k++) {
            for (size_t j = 0; j < sizeof one / sizeof one[0]; j++) {
                snprintf(src, sizeof src, "blocks.%d.%s.%s", i, one[j].src, wb[k]);
                snprintf(name, sizeof name, "%s.%s.%s", b, one[j].dst, wb[k]);
                gen_emit_all(o, name, gen_find(l, src));
            }
            static const char *const qkv[] = {"to_q", "to_k", "to_v"};
            snprintf(src, sizeof src, "blocks.%d.attn.qkv.%s", i, wb[k]);
            const gen_param *p = gen_find(l, src);
            for (int j = 0; j < 3; j++) {
                snprintf(name, sizeof name, "%s.attn1.%s.%s", b, qkv[j], wb[k]);
                gen_emit(o, name, p, (size_t)j * (size_t)c->hidden, c->hidden);
            }
        }
    }
    for (int k = 0; k < 2; k++) {
        snprintf(src, sizeof src, "final_layer.adaLN_modulation.1.%s", wb[k]);
        snprintf(name, sizeof name, "proj_out_1.%s", wb[k]);
        gen_emit_all(o, name, gen_find(l, src));
        snprintf(src, sizeof src, "final_layer.linear.%s", wb[k]);
        snprintf(name, sizeof name, "proj_out_2.%s", wb[k]);
        gen_emit_all(o, name, gen_find(l, src));
    }
}

static void gen_usage(void) {
    fprintf(stderr,
            "usage: gen_dit --out FILE --layout official|diffusers [--dtype f32|f16|bf16]\n"
            "               [--arch DiT-XL/2] [--depth N] [--hidden D --heads H --patch P]\n"
            "               [--input-size 32] [--in-channels 4] [--classes 1000]\n"
            "               [--learn-sigma 0|1] [--seed S]\n"
            "Writes a DiT with deterministic random weights in the official DiT state-dict layout\n"
            "(with pos_embed) or diffusers' transformer layout (without).\n");
    exit(2);
}

static int gen_int(const char *v, int lo, int hi, const char *what) {
    char *end;
    long x = strtol(v, &end, 10);
    if (end == v || *end || x < lo || x > hi) {
        fprintf(stderr, "gen_dit: %s must be an integer in %d..%d (got '%s')\n", what, lo, hi, v);
        exit(2);
    }
    return (int)x;
}

int main(int argc, char **argv) {
    const char *out = NULL, *layout = NULL, *dtype_name = "f32", *arch = "DiT-XL/2";
    int depth = 0, hidden = 0, heads = 0, patch = 0, input = 32, chans = 4, classes = 1000, ls = 1;
    uint64_t seed = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) gen_usage();
        i++;
        if (!strcmp(a, "--out")) out = v;
        else if (!strcmp(a, "--layout")) layout = v;
        else if (!strcmp(a, "--dtype")) dtype_name = v;
        else if (!strcmp(a, "--arch")) arch = v;
        else if (!strcmp(a, "--depth")) depth = gen_int(v, 1, DIT_MAX_DEPTH, a);
        else if (!strcmp(a, "--hidden")) hidden = gen_int(v, 8, 16384, a);
        else if (!strcmp(a, "--heads")) heads = gen_int(v, 1, 1024, a);
        else if (!strcmp(a, "--patch")) patch = gen_int(v, 1, 8, a);
        else if (!strcmp(a, "--input-size")) input = gen_int(v, 1, 4096, a);
        else if (!strcmp(a, "--in-channels")) chans = gen_int(v, 1, 16, a);
        else if (!strcmp(a, "--classes")) classes = gen_int(v, 1, 1000000, a);
        else if (!strcmp(a, "--learn-sigma")) ls = gen_int(v, 0, 1, a);
        else if (!strcmp(a, "--seed")) seed = strtoull(v, NULL, 10);
        else gen_usage();
    }
    if (!out || !layout) gen_usage();
    int diffusers = !strcmp(layout, "diffusers");
    if (!diffusers && strcmp(layout, "official")) gen_die("--layout must be official or diffusers");
    st_dtype dtype = ST_F32;
    if (!strcmp(dtype_name, "f16")) dtype = ST_F16;
    else if (!strcmp(dtype_name, "bf16")) dtype = ST_BF16;
    else if (strcmp(dtype_name, "f32")) gen_die("--dtype must be f32, f16 or bf16");
    int a_depth, a_hidden, a_heads, a_patch;
    if (dit_arch_lookup(arch, &a_depth, &a_hidden, &a_heads, &a_patch))
        gen_die("--arch must be a DiT preset such as DiT-XL/2 or DiT-S/8");
    dit_config c;
    char err[512];
    if (dit_config_init(&c, depth ? depth : a_depth, hidden ? hidden : a_hidden,
                        heads ? heads : a_heads, patch ? patch : a_patch, input, chans, classes,
                        ls, err, sizeof err))
        gen_die(err);

    gen_list l = {0};
    gen_official(&l, &c);
    size_t total = 0;
    for (int i = 0; i < l.n; i++) total += l.p[i].numel;
    float *values = malloc(total * sizeof *values);
    float *pos = diffusers ? NULL : malloc((size_t)c.tokens * c.hidden * sizeof *pos);
    if (!values || (!diffusers && !pos)) gen_die("out of memory");
    for (size_t i = 0, off = 0; i < (size_t)l.n; off += l.p[i].numel, i++) {
        l.p[i].values = values + off;
        gen_fill(&l.p[i], seed);
    }
    gen_out o = {.dtype = dtype};
    if (diffusers) {
        gen_diffusers(&o, &l, &c);
    } else {
        gen_param pe = {.name = "pos_embed", .ndim = 3, .shape = {1, c.tokens, c.hidden},
                        .numel = (size_t)c.tokens * c.hidden, .values = pos};
        dit_pos_embed_host(&c, pos);
        gen_emit_all(&o, "pos_embed", &pe);
        for (int i = 0; i < l.n; i++) gen_emit_all(&o, l.p[i].name, &l.p[i]);
    }
    for (int i = 0; i < o.n; i++) o.t[i].name = o.names[i];
    static const char *const meta[] = {"format", "pt", NULL};
    int rc = safetensors_write(out, o.t, o.n, diffusers ? meta : NULL, err, sizeof err);
    if (rc) fprintf(stderr, "gen_dit: %s\n", err);
    else
        printf("gen_dit: wrote %s: %s layout, %d tensors, %zu parameters, %s, depth %d, hidden %d, "
               "heads %d, patch %d, input %d\n", out, layout, o.n, total, dtype_name, c.depth,
               c.hidden, c.heads, c.patch, c.image_size);
    if (dtype != ST_F32)
        for (int i = 0; i < o.n; i++) free((void *)o.t[i].data);
    free(o.t);
    free(o.names);
    free(values);
    free(pos);
    free(l.p);
    return rc ? 1 : 0;
}
