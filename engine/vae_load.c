/* vae_load.c — the SD VAE's tensor names and shapes (diffusers AutoencoderKL layout), the
 * architecture read from them, and loading the weights into one fp32 parameter block.
 * The forward passes and activation memory are in vae.c.
 *
 * One walk over the architecture serves both uses: with no backend it only checks every tensor
 * (present, float dtype, shape) and counts floats; with one it also converts each tensor to fp32
 * through a host staging buffer and uploads it at its place in the block.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vae_internal.h"

#define VAE_NAME_LEN 160

typedef struct {
    const st_file *f;
    vae_model *v;          /* layer views are assigned here (NULL pointers while only checking) */
    dt_backend *be;        /* non-NULL when loading: weights go to v->params */
    float *stage;          /* host staging of one tensor, stage_floats long */
    size_t stage_floats;   /* the largest tensor seen so far */
    size_t off;            /* floats assigned so far */
    char *err;
    size_t errlen;
} vae_walk;

/* Formats a tensor name or prefix into dst (VAE_NAME_LEN bytes); every name of the layout is
 * far shorter, so nothing is ever cut. */
static void vae_name(char *dst, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(dst, VAE_NAME_LEN, fmt, ap);
    va_end(ap);
}

/* Where a tensor at float offset off lives in the block (NULL while only checking). */
static float *vae_at(const vae_walk *w, size_t off) {
    return w->v->params ? w->v->params + off : NULL;
}

static int vae_is_float(st_dtype dt) {
    return dt == ST_F32 || dt == ST_F16 || dt == ST_BF16 || dt == ST_F64;
}

/* Checks tensor name against shape (d[0..ndim)); when linear_or_conv, a 2-d (A, B) weight may
 * also be stored as (A, B, 1, 1). When loading, uploads it at float offset dst. */
static int vae_tensor(vae_walk *w, const char *name, size_t dst, int ndim, const int64_t *d,
                      int linear_or_conv) {
    const st_tensor *t = safetensors_find(w->f, name);
    char want[96];
    int len = snprintf(want, sizeof want, "(");
    for (int i = 0; i < ndim; i++)
        len += snprintf(want + len, sizeof want - (size_t)len, "%s%lld", i ? ", " : "", (long long)d[i]);
    snprintf(want + len, sizeof want - (size_t)len, ")%s", linear_or_conv ? " or (..., 1, 1)" : "");
    if (!t) {
        snprintf(w->err, w->errlen, "%s: missing tensor %s %s (a diffusers AutoencoderKL VAE "
                 "needs it)", w->f->path, name, want);
        return -1;
    }
    if (!vae_is_float(t->dtype)) {
        snprintf(w->err, w->errlen, "%s: tensor %s is not a float tensor (F32, F16 or BF16 expected)",
                 w->f->path, name);
        return -1;
    }
    int same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = t->shape[i] == d[i];
    if (!same && linear_or_conv && ndim == 2 && t->ndim == 4)
        same = t->shape[0] == d[0] && t->shape[1] == d[1] && t->shape[2] == 1 && t->shape[3] == 1;
    if (!same) {
        char got[96];
        len = snprintf(got, sizeof got, "(");
        for (int i = 0; i < t->ndim; i++)
            len += snprintf(got + len, sizeof got - (size_t)len, "%s%lld", i ? ", " : "",
                            (long long)t->shape[i]);
        snprintf(got + len, sizeof got - (size_t)len, ")");
        snprintf(w->err, w->errlen, "%s: tensor %s has shape %s, the VAE read from this file "
                 "needs %s", w->f->path, name, got, want);
        return -1;
    }
    size_t n = safetensors_numel(t);
    if (n > w->stage_floats && !w->be) w->stage_floats = n;
    if (w->be) {
        if (safetensors_read_f32(w->f, name, w->stage, n, w->err, w->errlen)) return -1;
        w->be->upload(w->be, w->v->params + dst, w->stage, n * sizeof(float));
    }
    return 0;
}

/* Assigns the next n floats of the block. */
static size_t vae_take(vae_walk *w, size_t n) {
    size_t off = w->off;
    w->off += n;
    return off;
}

static int vae_walk_conv(vae_walk *w, vae_conv *c, const char *prefix, int C, int OC, int K) {
    char name[VAE_NAME_LEN];
    c->C = C;
    c->OC = OC;
    c->K = K;
    size_t ow = vae_take(w, (size_t)OC * C * K * K), ob = vae_take(w, (size_t)OC);
    c->w = vae_at(w, ow);
    c->b = vae_at(w, ob);
    int64_t dw[4] = {OC, C, K, K}, db[1] = {OC};
    vae_name(name, "%s.weight", prefix);
    if (vae_tensor(w, name, ow, 4, dw, 0)) return -1;
    vae_name(name, "%s.bias", prefix);
    return vae_tensor(w, name, ob, 1, db, 0);
}

static int vae_walk_norm(vae_walk *w, vae_norm *nm, const char *prefix, int C) {
    char name[VAE_NAME_LEN];
    nm->C = C;
    size_t og = vae_take(w, (size_t)C), ob = vae_take(w, (size_t)C);
    nm->gamma = vae_at(w, og);
    nm->beta = vae_at(w, ob);
    int64_t d[1] = {C};
    vae_name(name, "%s.weight", prefix);
    if (vae_tensor(w, name, og, 1, d, 0)) return -1;
    vae_name(name, "%s.bias", prefix);
    return vae_tensor(w, name, ob, 1, d, 0);
}

static int vae_walk_resnet(vae_walk *w, vae_resnet *r, const char *prefix, int C, int OC) {
    char p[VAE_NAME_LEN];
    r->C = C;
    r->OC = OC;
    vae_name(p, "%s.norm1", prefix);
    if (vae_walk_norm(w, &r->norm1, p, C)) return -1;
    vae_name(p, "%s.conv1", prefix);
    if (vae_walk_conv(w, &r->conv1, p, C, OC, 3)) return -1;
    vae_name(p, "%s.norm2", prefix);
    if (vae_walk_norm(w, &r->norm2, p, OC)) return -1;
    vae_name(p, "%s.conv2", prefix);
    if (vae_walk_conv(w, &r->conv2, p, OC, OC, 3)) return -1;
    memset(&r->shortcut, 0, sizeof r->shortcut);
    if (C == OC) return 0;
    vae_name(p, "%s.conv_shortcut", prefix);
    return vae_walk_conv(w, &r->shortcut, p, C, OC, 1);
}

/* attentions.0 of a mid block: group_norm, then q, k, v stacked into one (3C, C) weight. */
static int vae_walk_attn(vae_walk *w, vae_attn *a, const char *prefix, int C) {
    static const char *const current[4] = {"to_q", "to_k", "to_v", "to_out.0"};
    static const char *const legacy[4] = {"query", "key", "value", "proj_attn"};
    const char *const *names = w->v->cfg.attn_names == VAE_ATTN_LEGACY ? legacy : current;
    char p[VAE_NAME_LEN], name[VAE_NAME_LEN];
    a->C = C;
    vae_name(p, "%s.group_norm", prefix);
    if (vae_walk_norm(w, &a->norm, p, C)) return -1;
    const size_t CC = (size_t)C * C;
    size_t oqkv_w = vae_take(w, 3 * CC), oqkv_b = vae_take(w, 3 * (size_t)C);
    size_t oout_w = vae_take(w, CC), oout_b = vae_take(w, (size_t)C);
    a->qkv_w = vae_at(w, oqkv_w);
    a->qkv_b = vae_at(w, oqkv_b);
    a->out_w = vae_at(w, oout_w);
    a->out_b = vae_at(w, oout_b);
    int64_t dw[2] = {C, C}, db[1] = {C};
    for (int k = 0; k < 4; k++) {
        size_t ow = k < 3 ? oqkv_w + (size_t)k * CC : oout_w;
        size_t ob = k < 3 ? oqkv_b + (size_t)k * C : oout_b;
        vae_name(name, "%s.%s.weight", prefix, names[k]);
        if (vae_tensor(w, name, ow, 2, dw, 1)) return -1;
        vae_name(name, "%s.%s.bias", prefix, names[k]);
        if (vae_tensor(w, name, ob, 1, db, 0)) return -1;
    }
    return 0;
}

static int vae_walk_mid(vae_walk *w, vae_coder *cd, const char *prefix, int C) {
    char p[VAE_NAME_LEN];
    vae_name(p, "%s.mid_block.resnets.0", prefix);
    if (vae_walk_resnet(w, &cd->mid_res0, p, C, C)) return -1;
    vae_name(p, "%s.mid_block.attentions.0", prefix);
    if (vae_walk_attn(w, &cd->mid_attn, p, C)) return -1;
    vae_name(p, "%s.mid_block.resnets.1", prefix);
    return vae_walk_resnet(w, &cd->mid_res1, p, C, C);
}

/* Encoder: conv_in, down_blocks (layers resnets, then a stride-2 conv except on the last
 * level), mid block, conv_norm_out, conv_out to 2 * latent channels. */
static int vae_walk_encoder(vae_walk *w) {
    const vae_config *c = &w->v->cfg;
    vae_coder *e = &w->v->enc;
    const int L = c->levels, top = c->block_out[L - 1];
    char p[VAE_NAME_LEN];
    if (vae_walk_conv(w, &e->conv_in, "encoder.conv_in", c->in_channels, c->block_out[0], 3))
        return -1;
    int cin = c->block_out[0];
    for (int i = 0; i < L; i++) {
        for (int j = 0; j < c->layers_per_block; j++) {
            vae_name(p, "encoder.down_blocks.%d.resnets.%d", i, j);
            if (vae_walk_resnet(w, &e->res[i][j], p, j ? c->block_out[i] : cin, c->block_out[i]))
                return -1;
        }
        memset(&e->resample[i], 0, sizeof e->resample[i]);
        if (i < L - 1) {
            vae_name(p, "encoder.down_blocks.%d.downsamplers.0.conv", i);
            if (vae_walk_conv(w, &e->resample[i], p, c->block_out[i], c->block_out[i], 3)) return -1;
        }
        cin = c->block_out[i];
    }
    if (vae_walk_mid(w, e, "encoder", top)) return -1;
    if (vae_walk_norm(w, &e->norm_out, "encoder.conv_norm_out", top)) return -1;
    return vae_walk_conv(w, &e->conv_out, "encoder.conv_out", top, 2 * c->latent_channels, 3);
}

/* Decoder: conv_in, mid block, up_blocks over the reversed channels (layers + 1 resnets, then
 * nearest 2x and a conv except on the last level), conv_norm_out, conv_out to the image. */
static int vae_walk_decoder(vae_walk *w) {
    const vae_config *c = &w->v->cfg;
    vae_coder *d = &w->v->dec;
    const int L = c->levels, top = c->block_out[L - 1];
    char p[VAE_NAME_LEN];
    if (vae_walk_conv(w, &d->conv_in, "decoder.conv_in", c->latent_channels, top, 3)) return -1;
    if (vae_walk_mid(w, d, "decoder", top)) return -1;
    int prev = top;
    for (int i = 0; i < L; i++) {
        const int out = c->block_out[L - 1 - i];
        for (int j = 0; j < c->layers_per_block + 1; j++) {
            vae_name(p, "decoder.up_blocks.%d.resnets.%d", i, j);
            if (vae_walk_resnet(w, &d->res[i][j], p, j ? out : prev, out)) return -1;
        }
        memset(&d->resample[i], 0, sizeof d->resample[i]);
        if (i < L - 1) {
            vae_name(p, "decoder.up_blocks.%d.upsamplers.0.conv", i);
            if (vae_walk_conv(w, &d->resample[i], p, out, out, 3)) return -1;
        }
        prev = out;
    }
    if (vae_walk_norm(w, &d->norm_out, "decoder.conv_norm_out", c->block_out[0])) return -1;
    return vae_walk_conv(w, &d->conv_out, "decoder.conv_out", c->block_out[0], c->in_channels, 3);
}

static int vae_walk_model(vae_walk *w) {
    const int lat = w->v->cfg.latent_channels;
    w->off = 0;
    if (vae_walk_encoder(w)) return -1;
    if (vae_walk_conv(w, &w->v->quant, "quant_conv", 2 * lat, 2 * lat, 1)) return -1;
    if (vae_walk_conv(w, &w->v->post_quant, "post_quant_conv", lat, lat, 1)) return -1;
    return vae_walk_decoder(w);
}

/* First dimension of tensor name, or -1 when it is absent or has fewer than ndim_min dims. */
static int64_t vae_dim0(const st_file *f, const char *name, int ndim_min) {
    const st_tensor *t = safetensors_find(f, name);
    return t && t->ndim >= ndim_min ? t->shape[0] : -1;
}

/* Reads levels, channels, resnets per level, latent channels and the attention naming from
 * the names and shapes of f (the walk then checks every tensor against them). */
static int vae_detect(const st_file *f, vae_config *c, char *err, size_t errlen) {
    memset(c, 0, sizeof *c);
    const st_tensor *conv_in = safetensors_find(f, "encoder.conv_in.weight");
    if (!conv_in) {
        snprintf(err, errlen, "%s is not a VAE: it has no tensor encoder.conv_in.weight (expected "
                 "a diffusers AutoencoderKL file such as sd-vae-ft-mse's "
                 "diffusion_pytorch_model.safetensors)", f->path);
        return -1;
    }
    if (conv_in->ndim != 4 || conv_in->shape[1] < 1 || conv_in->shape[1] > 16) {
        snprintf(err, errlen, "%s: encoder.conv_in.weight must be (channels, image channels, 3, 3)",
                 f->path);
        return -1;
    }
    c->in_channels = (int)conv_in->shape[1];
    char name[VAE_NAME_LEN];
    for (int i = 0; i <= VAE_MAX_LEVELS; i++) {
        vae_name(name, "encoder.down_blocks.%d.resnets.0.conv1.weight", i);
        int64_t ch = vae_dim0(f, name, 1);
        if (ch < 0) break;
        if (i == VAE_MAX_LEVELS) {
            snprintf(err, errlen, "%s: more than %d encoder levels", f->path, VAE_MAX_LEVELS);
            return -1;
        }
        if (ch < VAE_GROUPS || ch % VAE_GROUPS || ch > 65536) {
            snprintf(err, errlen, "%s: %s has %lld output channels; the VAE's group norms need a "
                     "multiple of %d", f->path, name, (long long)ch, VAE_GROUPS);
            return -1;
        }
        c->block_out[c->levels++] = (int)ch;
    }
    if (c->levels == 0) {
        snprintf(err, errlen, "%s: missing tensor encoder.down_blocks.0.resnets.0.conv1.weight",
                 f->path);
        return -1;
    }
    for (int j = 0; j <= VAE_MAX_LAYERS; j++) {
        vae_name(name, "encoder.down_blocks.0.resnets.%d.conv1.weight", j);
        if (!safetensors_find(f, name)) break;
        if (j == VAE_MAX_LAYERS) {
            snprintf(err, errlen, "%s: more than %d resnets per level", f->path, VAE_MAX_LAYERS);
            return -1;
        }
        c->layers_per_block++;
    }
    int64_t lat = vae_dim0(f, "post_quant_conv.weight", 1);
    if (lat < 1 || lat > 64) {
        snprintf(err, errlen, "%s: missing tensor post_quant_conv.weight (latent, latent, 1, 1)",
                 f->path);
        return -1;
    }
    c->latent_channels = (int)lat;
    const st_tensor *q = safetensors_find(f, "encoder.mid_block.attentions.0.to_q.weight");
    c->attn_names = VAE_ATTN_DIFFUSERS;
    if (!q) {
        q = safetensors_find(f, "encoder.mid_block.attentions.0.query.weight");
        c->attn_names = VAE_ATTN_LEGACY;
    }
    if (!q) {
        snprintf(err, errlen, "%s: missing tensor encoder.mid_block.attentions.0.to_q.weight (or "
                 "the legacy name encoder.mid_block.attentions.0.query.weight)", f->path);
        return -1;
    }
    c->attn_conv = q->ndim == 4;
    c->downsample = 1 << (c->levels - 1);
    return 0;
}

/* Detects the configuration and walks (checking, counting) into v. */
static int vae_plan(const st_file *f, vae_model *v, size_t *stage_floats, char *err,
                    size_t errlen) {
    if (vae_detect(f, &v->cfg, err, errlen)) return -1;
    vae_walk w = {.f = f, .v = v, .err = err, .errlen = errlen};
    if (vae_walk_model(&w)) return -1;
    v->cfg.num_floats = w.off;
    if (stage_floats) *stage_floats = w.stage_floats;
    return 0;
}

int vae_read_config(const st_file *f, vae_config *cfg, char *err, size_t errlen) {
    vae_model *v = calloc(1, sizeof *v);
    if (!v) {
        snprintf(err, errlen, "out of host memory");
        return -1;
    }
    int rc = vae_plan(f, v, NULL, err, errlen);
    if (rc == 0) *cfg = v->cfg;
    free(v);
    return rc;
}

int vae_load(vae_model **out, const char *path, dt_backend *be, char *err, size_t errlen) {
    *out = NULL;
    st_file f;
    if (safetensors_open(&f, path, err, errlen)) return -1;
    size_t stage_floats = 0;
    float *stage = NULL;
    vae_model *v = calloc(1, sizeof *v);
    int rc = -1;
    if (!v) {
        snprintf(err, errlen, "out of host memory");
        goto done;
    }
    v->be = be;
    if (vae_plan(&f, v, &stage_floats, err, errlen)) goto done;
    size_t bytes = v->cfg.num_floats * sizeof(float);
    v->params = be->alloc(be, bytes);
    stage = malloc(stage_floats * sizeof(float));
    if (!v->params || !stage) {
        snprintf(err, errlen, "out of memory for the VAE's weights (%zu bytes on %s)", bytes,
                 be->name);
        goto done;
    }
    vae_walk w = {.f = &f, .v = v, .be = be, .stage = stage, .stage_floats = stage_floats,
                  .err = err, .errlen = errlen};
    if (vae_walk_model(&w)) goto done;
    if (be->sync(be)) {
        snprintf(err, errlen, "uploading the VAE's weights failed: %s", be->last_error(be));
        goto done;
    }
    rc = 0;
done:
    free(stage);
    safetensors_close(&f);
    if (rc) vae_free(v);
    else *out = v;
    return rc;
}

const vae_config *vae_get_config(const vae_model *v) {
    return &v->cfg;
}
