/* gen_vae.c — writes a Stable Diffusion VAE (diffusers AutoencoderKL) safetensors file with the
 * published tensor names and shapes and deterministic random weights, for the tests.
 *
 * Usage: gen_vae --out FILE [--dtype f32|f16|bf16] [--attn diffusers|legacy] [--attn-conv]
 *                [--channels 128,256,512,512] [--layers 2] [--seed S]
 * The defaults are the published sd-vae-ft-ema / sd-vae-ft-mse shapes (83,653,863 parameters).
 *
 * The layout is written here from diffusers' AutoencoderKL (Encoder, Decoder, ResnetBlock2D,
 * UNetMidBlock2D, Downsample2D, Upsample2D), independently of engine/vae_load.c, so that a naming
 * mistake in one is caught by the other.
 *
 * Weights: every value is a function of (seed, tensor name, index) only, so files that differ only
 * in --dtype, --attn or --attn-conv hold the same numbers (rounded to the dtype); the stream of a
 * tensor is a hash of its current diffusers name. Values are built from 24-bit integers with one
 * rounding, so they are bit-identical on every IEEE machine (the committed PyTorch fixtures rely
 * on that). Scales keep activations well-scaled through the whole network: conv and linear weights
 * U(-a, a) with variance 1/fan_in, biases U(-0.1, 0.1), norm gammas 1 + U(-0.2, 0.2), betas
 * U(-0.1, 0.1).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#include "safetensors.h"

#define GEN_TOOL "gen_vae"
#include "gen_common.h"

#define GEN_MAX_LEVELS 8
#define GEN_LATENT 4
#define GEN_IMAGE_CHANNELS 3

typedef struct {
    char name[128];
    char hash_name[128]; /* the diffusers name: the random stream does not depend on --attn */
    int ndim;
    int64_t shape[4];
    size_t numel;
    int kind; /* GEN_WEIGHT, GEN_BIAS, GEN_GAMMA, GEN_BETA */
    float *values;
} gen_tensor;

enum { GEN_WEIGHT, GEN_BIAS, GEN_GAMMA, GEN_BETA };

typedef struct {
    int channels[GEN_MAX_LEVELS];
    int levels;
    int layers;
    int legacy;    /* query/key/value/proj_attn names */
    int attn_conv; /* attention weights (C, C, 1, 1) */
    gen_tensor *t;
    int n, cap;
} gen_model;


static void gen_add(gen_model *m, const char *name, const char *hash_name, int kind, int ndim,
                    int64_t d0, int64_t d1, int64_t d2, int64_t d3) {
    if (m->n == m->cap) {
        m->cap = m->cap ? 2 * m->cap : 256;
        m->t = realloc(m->t, (size_t)m->cap * sizeof *m->t);
        if (!m->t) gen_die("out of memory");
    }
    gen_tensor *t = &m->t[m->n++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    snprintf(t->hash_name, sizeof t->hash_name, "%s", hash_name ? hash_name : name);
    t->kind = kind;
    t->ndim = ndim;
    int64_t s[4] = {d0, d1, d2, d3};
    t->numel = 1;
    for (int i = 0; i < ndim; i++) {
        t->shape[i] = s[i];
        t->numel *= (size_t)s[i];
    }
}

static void gen_conv(gen_model *m, const char *prefix, int cin, int cout, int k) {
    char name[128];
    snprintf(name, sizeof name, "%s.weight", prefix);
    gen_add(m, name, NULL, GEN_WEIGHT, 4, cout, cin, k, k);
    snprintf(name, sizeof name, "%s.bias", prefix);
    gen_add(m, name, NULL, GEN_BIAS, 1, cout, 0, 0, 0);
}

static void gen_norm(gen_model *m, const char *prefix, int c) {
    char name[128];
    snprintf(name, sizeof name, "%s.weight", prefix);
    gen_add(m, name, NULL, GEN_GAMMA, 1, c, 0, 0, 0);
    snprintf(name, sizeof name, "%s.bias", prefix);
    gen_add(m, name, NULL, GEN_BETA, 1, c, 0, 0, 0);
}

/* ResnetBlock2D: norm1, conv1, norm2, conv2, and a 1x1 conv_shortcut when channels change. */
static void gen_resnet(gen_model *m, const char *prefix, int cin, int cout) {
    char p[96];
    snprintf(p, sizeof p, "%s.norm1", prefix);
    gen_norm(m, p, cin);
    snprintf(p, sizeof p, "%s.conv1", prefix);
    gen_conv(m, p, cin, cout, 3);
    snprintf(p, sizeof p, "%s.norm2", prefix);
    gen_norm(m, p, cout);
    snprintf(p, sizeof p, "%s.conv2", prefix);
    gen_conv(m, p, cout, cout, 3);
    if (cin != cout) {
        snprintf(p, sizeof p, "%s.conv_shortcut", prefix);
        gen_conv(m, p, cin, cout, 1);
    }
}

/* One linear layer of the mid-block attention, under the requested naming and shape. */
static void gen_attn_linear(gen_model *m, const char *prefix, const char *current,
                            const char *legacy, int c) {
    char name[128], hash[128];
    const char *which = m->legacy ? legacy : current;
    snprintf(name, sizeof name, "%s.%s.weight", prefix, which);
    snprintf(hash, sizeof hash, "%s.%s.weight", prefix, current);
    if (m->attn_conv) gen_add(m, name, hash, GEN_WEIGHT, 4, c, c, 1, 1);
    else gen_add(m, name, hash, GEN_WEIGHT, 2, c, c, 0, 0);
    snprintf(name, sizeof name, "%s.%s.bias", prefix, which);
    snprintf(hash, sizeof hash, "%s.%s.bias", prefix, current);
    gen_add(m, name, hash, GEN_BIAS, 1, c, 0, 0, 0);
}

/* UNetMidBlock2D: resnets.0, attentions.0 (group_norm + single-head attention), resnets.1. */
static void gen_mid(gen_model *m, const char *prefix, int c) {
    char p[96];
    snprintf(p, sizeof p, "%s.resnets.0", prefix);
    gen_resnet(m, p, c, c);
    snprintf(p, sizeof p, "%s.attentions.0.group_norm", prefix);
    gen_norm(m, p, c);
    snprintf(p, sizeof p, "%s.attentions.0", prefix);
    gen_attn_linear(m, p, "to_q", "query", c);
    gen_attn_linear(m, p, "to_k", "key", c);
    gen_attn_linear(m, p, "to_v", "value", c);
    gen_attn_linear(m, p, "to_out.0", "proj_attn", c);
    snprintf(p, sizeof p, "%s.resnets.1", prefix);
    gen_resnet(m, p, c, c);
}

static void gen_build(gen_model *m) {
    const int L = m->levels, *ch = m->channels, top = ch[L - 1];
    char p[96];
    /* encoder */
    gen_conv(m, "encoder.conv_in", GEN_IMAGE_CHANNELS, ch[0], 3);
    int cin = ch[0];
    for (int i = 0; i < L; i++) {
        for (int j = 0; j < m->layers; j++) {
            snprintf(p, sizeof p, "encoder.down_blocks.%d.resnets.%d", i, j);
            gen_resnet(m, p, j == 0 ? cin : ch[i], ch[i]);
        }
        if (i < L - 1) {
            snprintf(p, sizeof p, "encoder.down_blocks.%d.downsamplers.0.conv", i);
            gen_conv(m, p, ch[i], ch[i], 3);
        }
        cin = ch[i];
    }
    gen_mid(m, "encoder.mid_block", top);
    gen_norm(m, "encoder.conv_norm_out", top);
    gen_conv(m, "encoder.conv_out", top, 2 * GEN_LATENT, 3);
    gen_conv(m, "quant_conv", 2 * GEN_LATENT, 2 * GEN_LATENT, 1);
    /* decoder */
    gen_conv(m, "post_quant_conv", GEN_LATENT, GEN_LATENT, 1);
    gen_conv(m, "decoder.conv_in", GEN_LATENT, top, 3);
    gen_mid(m, "decoder.mid_block", top);
    int prev = top;
    for (int i = 0; i < L; i++) {
        int out = ch[L - 1 - i];
        for (int j = 0; j < m->layers + 1; j++) {
            snprintf(p, sizeof p, "decoder.up_blocks.%d.resnets.%d", i, j);
            gen_resnet(m, p, j == 0 ? prev : out, out);
        }
        if (i < L - 1) {
            snprintf(p, sizeof p, "decoder.up_blocks.%d.upsamplers.0.conv", i);
            gen_conv(m, p, out, out, 3);
        }
        prev = out;
    }
    gen_norm(m, "decoder.conv_norm_out", ch[0]);
    gen_conv(m, "decoder.conv_out", ch[0], GEN_IMAGE_CHANNELS, 3);
}



static void gen_fill(gen_tensor *t, uint64_t seed) {
    uint64_t stream = gen_hash(t->hash_name);
    float a = 0.1f, base = 0.0f;
    if (t->kind == GEN_WEIGHT) {
        size_t fan_in = t->numel / (size_t)t->shape[0];
        a = sqrtf(3.0f / (float)fan_in); /* variance a^2/3 = 1/fan_in */
    } else if (t->kind == GEN_GAMMA) {
        a = 0.2f;
        base = 1.0f;
    }
    for (size_t i = 0; i < t->numel; i++) t->values[i] = base + a * gen_sym_unit(seed, stream, i);
}



static int gen_parse_channels(gen_model *m, const char *s) {
    m->levels = 0;
    const char *p = s;
    while (*p) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 32 || v % 32 || v > 4096 || m->levels == GEN_MAX_LEVELS) return -1;
        m->channels[m->levels++] = (int)v;
        if (*end == ',') end++;
        else if (*end) return -1;
        p = end;
    }
    return m->levels > 0 ? 0 : -1;
}

static void gen_usage(void) {
    fprintf(stderr,
            "usage: gen_vae --out FILE [--dtype f32|f16|bf16] [--attn diffusers|legacy] [--attn-conv]\n"
            "               [--channels 128,256,512,512] [--layers 2] [--seed S]\n"
            "Writes an SD VAE (diffusers AutoencoderKL layout) with deterministic random weights.\n"
            "Channels are multiples of 32 (GroupNorm with 32 groups); defaults: the published shapes.\n");
    exit(2);
}

int main(int argc, char **argv) {
    gen_model m;
    memset(&m, 0, sizeof m);
    const char *out = NULL, *dtype_name = "f32";
    uint64_t seed = 0;
    m.layers = 2;
    gen_parse_channels(&m, "128,256,512,512");
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--attn-conv")) { m.attn_conv = 1; continue; }
        if (!v) gen_usage();
        i++;
        if (!strcmp(a, "--out")) out = v;
        else if (!strcmp(a, "--dtype")) dtype_name = v;
        else if (!strcmp(a, "--attn")) {
            if (!strcmp(v, "legacy")) m.legacy = 1;
            else if (strcmp(v, "diffusers")) gen_usage();
        } else if (!strcmp(a, "--channels")) {
            if (gen_parse_channels(&m, v)) gen_die("--channels: comma-separated multiples of 32, 1 to 8 levels");
        } else if (!strcmp(a, "--layers")) {
            m.layers = atoi(v);
            if (m.layers < 1 || m.layers > 8) gen_die("--layers must be 1..8");
        } else if (!strcmp(a, "--seed")) seed = strtoull(v, NULL, 10);
        else gen_usage();
    }
    if (!out) gen_usage();
    st_dtype dtype;
    if (!strcmp(dtype_name, "f32")) dtype = ST_F32;
    else if (!strcmp(dtype_name, "f16")) dtype = ST_F16;
    else if (!strcmp(dtype_name, "bf16")) dtype = ST_BF16;
    else gen_die("--dtype must be f32, f16 or bf16");

    gen_build(&m);
    size_t total = 0;
    for (int i = 0; i < m.n; i++) total += m.t[i].numel;
    float *values = malloc(total * sizeof(float));
    uint16_t *halves = dtype == ST_F32 ? NULL : malloc(total * sizeof(uint16_t));
    st_write_tensor *wt = calloc((size_t)m.n, sizeof *wt);
    if (!values || (dtype != ST_F32 && !halves) || !wt) gen_die("out of memory");
    size_t off = 0;
    for (int i = 0; i < m.n; i++) {
        gen_tensor *t = &m.t[i];
        t->values = values + off;
        gen_fill(t, seed);
        wt[i].name = t->name;
        wt[i].dtype = dtype;
        wt[i].ndim = t->ndim;
        memcpy(wt[i].shape, t->shape, sizeof t->shape);
        if (dtype == ST_F32) {
            wt[i].data = t->values;
        } else {
            for (size_t j = 0; j < t->numel; j++)
                halves[off + j] = dtype == ST_F16 ? gen_f16(t->values[j]) : gen_bf16(t->values[j]);
            wt[i].data = halves + off;
        }
        off += t->numel;
    }
    static const char *const meta[] = {"format", "pt", NULL};
    char err[512];
    if (safetensors_write(out, wt, m.n, meta, err, sizeof err) != 0) {
        fprintf(stderr, "gen_vae: %s\n", err);
        return 1;
    }
    printf("gen_vae: wrote %s: %d tensors, %zu parameters, %s\n", out, m.n, total, dtype_name);
    free(values);
    free(halves);
    free(wt);
    free(m.t);
    return 0;
}
