/* checkpoint.c — saving, finding, pruning and loading DiT checkpoints. */
#include "checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dit_layout.h"
#include "fsutil.h"
#include "peft.h"

/* The tensors a checkpoint of m holds: the adapter's trainable ones, or every parameter. */
static int ckpt_count(const dit_model *m) {
    return m->ad ? m->ad->n : m->n_params;
}

static const dit_param *ckpt_param(const dit_model *m, int i) {
    return m->ad ? &m->ad->t[i].p : &m->params[i];
}

/* Floats of one parameter-shaped host buffer of m's checkpoints. */
static size_t ckpt_floats(const dit_model *m) {
    return m->ad ? m->ad->num_floats : m->num_floats;
}

void checkpoint_path(char *out, size_t len, const char *dir, int step, const char *kind) {
    snprintf(out, len, "%s/step_%07d%s%s.safetensors", dir, step, kind[0] ? "." : "", kind);
}

int checkpoint_state_path_of(char *out, size_t len, const char *model_path) {
    static const char ext[] = ".safetensors";
    const size_t n = strlen(model_path), e = sizeof ext - 1;
    const char *base = strrchr(model_path, '/');
    base = base ? base + 1 : model_path;
    int step, used = 0;
    /* only "step_S.safetensors": never make a name out of another state file's */
    if (sscanf(base, "step_%d.safetensors%n", &step, &used) != 1 || (size_t)used != strlen(base))
        return -1;
    int w = snprintf(out, len, "%.*s.state%s", (int)(n - e), model_path, ext);
    return w < 0 || (size_t)w >= len ? -1 : 0;
}

char *checkpoint_config_json(const dit_config *c) {
    json_t *o = json_pack("{s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:b}", "depth", c->depth,
                          "hidden_size", c->hidden, "num_heads", c->heads, "patch_size", c->patch,
                          "image_size", c->image_size, "in_channels", c->in_channels,
                          "num_classes", c->num_classes, "learn_sigma", c->learn_sigma);
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    return s;
}

/* Fills tensor descriptors for one parameter-shaped host buffer under prefix; names are
 * allocated into names[] (freed by the caller). */
static void ckpt_describe(const dit_model *m, const char *prefix, const float *host,
                          st_write_tensor *out, char **names) {
    for (int i = 0; i < ckpt_count(m); i++) {
        const dit_param *p = ckpt_param(m, i);
        size_t len = strlen(prefix) + strlen(p->name) + 1;
        names[i] = malloc(len);
        if (names[i]) snprintf(names[i], len, "%s%s", prefix, p->name);
        out[i].name = names[i];
        out[i].dtype = ST_F32;
        out[i].ndim = p->ndim;
        for (int d = 0; d < p->ndim; d++) out[i].shape[d] = p->shape[d];
        out[i].data = host + p->offset;
    }
}

static int ckpt_write(const char *path, const dit_model *m, const char *const *prefixes,
                      const float *const *hosts, int groups, const float *pos_embed,
                      const char *const *meta, char *err, size_t errlen) {
    int n = ckpt_count(m) * groups + (pos_embed ? 1 : 0);
    st_write_tensor *t = calloc((size_t)n, sizeof *t);
    char **names = calloc((size_t)n, sizeof *names);
    int rc = -1;
    if (!t || !names) {
        snprintf(err, errlen, "out of memory writing %s", path);
        goto done;
    }
    int k = 0;
    if (pos_embed) {
        t[k].name = "pos_embed";
        t[k].dtype = ST_F32;
        t[k].ndim = 3;
        t[k].shape[0] = 1;
        t[k].shape[1] = m->cfg.tokens;
        t[k].shape[2] = m->cfg.hidden;
        t[k].data = pos_embed;
        k++;
    }
    for (int g = 0; g < groups; g++) {
        ckpt_describe(m, prefixes[g], hosts[g], t + k, names + k);
        k += ckpt_count(m);
    }
    for (int i = 0; i < n; i++)
        if (!t[i].name) {
            snprintf(err, errlen, "out of memory writing %s", path);
            goto done;
        }
    rc = safetensors_write(path, t, n, meta, err, errlen);
done:
    if (names)
        for (int i = 0; i < n; i++) free(names[i]);
    free(names);
    free(t);
    return rc;
}

/* The __metadata__ shared by both files of a checkpoint; frees nothing (see ckpt_meta_free). */
typedef struct {
    char step[32];
    char *config, *peft;
    const char *kv[17];
} ckpt_meta;

/* With an adapter: the PEFT format, its description and the base model's reference. */
static void ckpt_meta_init(ckpt_meta *mt, const dit_model *m, int step, const char *spec_json) {
    snprintf(mt->step, sizeof mt->step, "%d", step);
    mt->config = checkpoint_config_json(&m->cfg);
    mt->peft = m->ad ? peft_config_json(&m->ad->cfg) : NULL;
    const char *kv[] = {"format", m->ad ? CHECKPOINT_FORMAT_PEFT : CHECKPOINT_FORMAT,
                        "step", mt->step, "config", mt->config ? mt->config : "{}",
                        "spec", spec_json ? spec_json : "{}", "weights", "ema", NULL, NULL,
                        NULL, NULL, NULL, NULL, NULL};
    if (m->ad) {
        kv[10] = "peft";
        kv[11] = mt->peft ? mt->peft : "{}";
        kv[12] = "base_model";
        kv[13] = m->ad->base_path;
        kv[14] = "base_sha256";
        kv[15] = m->ad->base_sha256;
    }
    memcpy(mt->kv, kv, sizeof kv);
}

static void ckpt_meta_free(ckpt_meta *mt) {
    free(mt->config);
    free(mt->peft);
}

int checkpoint_save_state(const char *dir, int step, const dit_model *m, const float *adam_m,
                          const float *adam_v, const char *spec_json, char *err, size_t errlen) {
    if (fs_mkdirs(dir, err, errlen)) return -1;
    char path[4096];
    ckpt_meta mt;
    ckpt_meta_init(&mt, m, step, spec_json);
    const char *prefixes[] = {"adam.m.", "adam.v."};
    const float *hosts[] = {adam_m, adam_v};
    checkpoint_path(path, sizeof path, dir, step, "state");
    int rc = ckpt_write(path, m, prefixes, hosts, 2, NULL, mt.kv, err, errlen);
    ckpt_meta_free(&mt);
    return rc;
}

int checkpoint_save_model(const char *dir, int step, const dit_model *m, const float *ema,
                          const float *weights, const char *spec_json, char *err, size_t errlen) {
    if (fs_mkdirs(dir, err, errlen)) return -1;
    float *pe = malloc(sizeof(float) * (size_t)m->cfg.tokens * m->cfg.hidden);
    if (!pe) {
        snprintf(err, errlen, "out of memory writing checkpoint %d", step);
        return -1;
    }
    dit_pos_embed_host(&m->cfg, pe);
    char path[4096];
    ckpt_meta mt;
    ckpt_meta_init(&mt, m, step, spec_json);
    const char *prefixes[] = {"", "train."};
    const float *hosts[] = {ema, weights};
    checkpoint_path(path, sizeof path, dir, step, "");
    /* an adapter's checkpoint holds no pos_embed: its base has it, and it is computed anyway */
    int rc = ckpt_write(path, m, prefixes, hosts, weights ? 2 : 1, m->ad ? NULL : pe, mt.kv, err,
                        errlen);
    ckpt_meta_free(&mt);
    free(pe);
    return rc;
}

uint64_t checkpoint_bytes_bound(const dit_model *m, size_t spec_len) {
    /* tensors: weights, EMA, two moments, pos_embed */
    uint64_t data = 4 * (uint64_t)ckpt_floats(m) * sizeof(float) +
                    (uint64_t)m->cfg.tokens * m->cfg.hidden * sizeof(float);
    /* headers: an entry of under 256 bytes per tensor (names are under 64 characters, plus a
     * prefix, dtype, shape and offsets), the config, and the spec in each file, where JSON
     * escaping at most doubles it */
    uint64_t header = (3 * (uint64_t)ckpt_count(m) + 1) * 256 + 2 * (2 * (uint64_t)spec_len + 4096) +
                      (m->ad ? 2 * 8192 : 0); /* the base model's path and the peft JSON */
    return data + header;
}

/* Steps of checkpoint model files in dir, ascending; returns the count (caller frees *steps). */
static int ckpt_list(const char *dir, int **steps) {
    *steps = NULL;
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        int step, len = 0;
        if (sscanf(e->d_name, "step_%d.safetensors%n", &step, &len) == 1 &&
            (size_t)len == strlen(e->d_name)) {
            if (n == cap) {
                cap = cap ? 2 * cap : 16;
                int *grown = realloc(*steps, sizeof(int) * cap);
                if (!grown) break;
                *steps = grown;
            }
            (*steps)[n++] = step;
        }
    }
    closedir(d);
    for (int i = 1; i < n; i++) /* insertion sort: a handful of entries */
        for (int j = i; j > 0 && (*steps)[j - 1] > (*steps)[j]; j--) {
            int tmp = (*steps)[j];
            (*steps)[j] = (*steps)[j - 1];
            (*steps)[j - 1] = tmp;
        }
    return n;
}

static int ckpt_complete(const char *dir, int step) {
    char path[4096], err[256];
    const char *kinds[] = {"", "state"};
    for (int k = 0; k < 2; k++) {
        st_file f;
        checkpoint_path(path, sizeof path, dir, step, kinds[k]);
        if (safetensors_open(&f, path, err, sizeof err)) return 0;
        safetensors_close(&f);
    }
    return 1;
}

int checkpoint_latest(const char *dir) {
    int *steps, n = ckpt_list(dir, &steps), best = -1;
    for (int i = n - 1; i >= 0 && best < 0; i--)
        if (ckpt_complete(dir, steps[i])) best = steps[i];
    free(steps);
    return best;
}

void checkpoint_prune(const char *dir, int keep) {
    int *steps, n = ckpt_list(dir, &steps), kept = 0;
    char path[4096];
    for (int i = n - 1; i >= 0; i--) {
        if (kept < keep && ckpt_complete(dir, steps[i])) {
            kept++;
            continue;
        }
        if (kept < keep) continue; /* an incomplete newer one may still be being written */
        checkpoint_path(path, sizeof path, dir, steps[i], "");
        unlink(path);
        checkpoint_path(path, sizeof path, dir, steps[i], "state");
        unlink(path);
    }
    free(steps);
}

int checkpoint_load(const char *dir, int step, const dit_model *m, dt_train_state *st,
                    char *err, size_t errlen) {
    char path[4096];
    st_file f;
    checkpoint_path(path, sizeof path, dir, step, "");
    if (safetensors_open(&f, path, err, errlen)) return -1;
    int rc = 0;
    if (st->ema) rc = checkpoint_read_weights(&f, m, "", st->ema, err, errlen);
    if (!rc && st->weights) rc = checkpoint_read_weights(&f, m, "train.", st->weights, err, errlen);
    safetensors_close(&f);
    if (rc || !(st->adam_m || st->adam_v)) return rc;
    checkpoint_path(path, sizeof path, dir, step, "state");
    if (safetensors_open(&f, path, err, errlen)) return -1;
    if (st->adam_m) rc = checkpoint_read_weights(&f, m, "adam.m.", st->adam_m, err, errlen);
    if (!rc && st->adam_v) rc = checkpoint_read_weights(&f, m, "adam.v.", st->adam_v, err, errlen);
    safetensors_close(&f);
    return rc;
}

/* Dimension `axis` of official tensor `official` as layout stores it (its first part). */
static int ckpt_dim(const st_file *f, dit_layout layout, const char *official, int ndim, int axis,
                    int64_t *out, char *err, size_t errlen) {
    char names[DIT_LAYOUT_MAX_PARTS][DIT_LAYOUT_NAME_MAX];
    if (dit_layout_names(layout, "", official, 0, names) < 1) {
        snprintf(err, errlen, "%s: internal: no %s name for %s", f->path, dit_layout_name(layout), official);
        return -1;
    }
    const st_tensor *t = safetensors_find(f, names[0]);
    if (!t) {
        snprintf(err, errlen, "%s: no tensor '%s'; not a DiT checkpoint (%s layout)", f->path,
                 names[0], dit_layout_name(layout));
        return -1;
    }
    if (t->ndim != ndim) {
        snprintf(err, errlen, "%s: tensor '%s' has %d dims, a DiT has %d", f->path, names[0], t->ndim, ndim);
        return -1;
    }
    *out = t->shape[axis];
    return 0;
}

/* Head count of a preset with this hidden size (all presets have 64-wide heads except XL). */
static int ckpt_heads_for_hidden(int64_t hidden) {
    switch (hidden) {
    case 384: return 6;
    case 768: return 12;
    case 1024: return 16;
    case 1152: return 16;
    default: return 0;
    }
}

/* The input size (pixels or latent cells per side) the file's pos_embed implies: 0 when there is
 * no pos_embed, -1 (message) when it is not a square grid of patches. */
static int ckpt_pos_embed_size(const st_file *f, int64_t hidden, int64_t patch, char *err, size_t errlen) {
    const st_tensor *pe = safetensors_find(f, "pos_embed");
    if (!pe) return 0;
    int64_t tokens = pe->ndim == 3 ? pe->shape[1] : 0;
    int64_t grid = (int64_t)llround(sqrt((double)tokens));
    if (pe->ndim != 3 || pe->shape[0] != 1 || pe->shape[2] != hidden || tokens < 1 ||
        grid * grid != tokens || grid * patch > INT32_MAX) {
        snprintf(err, errlen, "%s: pos_embed is not (1, N, %lld) with N a square number of tokens",
                 f->path, (long long)hidden);
        return -1;
    }
    return (int)(grid * patch);
}

int checkpoint_read_config(const st_file *f, int heads_hint, int input_size_hint, dit_config *cfg,
                           char *err, size_t errlen) {
    const char *meta = safetensors_meta(f, "config");
    if (meta) {
        json_error_t je;
        json_t *o = json_loads(meta, 0, &je);
        int depth, hidden, heads, patch, image, chans, classes, ls;
        if (!o || json_unpack(o, "{s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:b}", "depth", &depth,
                              "hidden_size", &hidden, "num_heads", &heads, "patch_size", &patch,
                              "image_size", &image, "in_channels", &chans, "num_classes", &classes,
                              "learn_sigma", &ls)) {
            json_decref(o);
            snprintf(err, errlen, "%s: __metadata__.config is not a valid DiT config", f->path);
            return -1;
        }
        json_decref(o);
        if (input_size_hint > 0 && input_size_hint != image) {
            snprintf(err, errlen, "%s: the file's config says input size %d, not %d", f->path,
                     image, input_size_hint);
            return -1;
        }
        return dit_config_init(cfg, depth, hidden, heads, patch, image, chans, classes, ls, err, errlen);
    }
    /* No metadata: a converted PyTorch state dict or a diffusers transformer. Infer from shapes. */
    const dit_layout layout = dit_layout_detect(f, "");
    int64_t hidden, chans, patch, rows, out_dim;
    if (ckpt_dim(f, layout, "x_embedder.proj.weight", 4, 0, &hidden, err, errlen) ||
        ckpt_dim(f, layout, "x_embedder.proj.weight", 4, 1, &chans, err, errlen) ||
        ckpt_dim(f, layout, "x_embedder.proj.weight", 4, 2, &patch, err, errlen) ||
        ckpt_dim(f, layout, "y_embedder.embedding_table.weight", 2, 0, &rows, err, errlen) ||
        ckpt_dim(f, layout, "final_layer.linear.weight", 2, 0, &out_dim, err, errlen))
        return -1;
    if (hidden < 1 || hidden > INT32_MAX || chans < 1 || chans > 16 || patch < 1 || patch > 8 ||
        rows < 2 || rows > INT32_MAX) {
        snprintf(err, errlen, "%s: the patch embedding (%lld, %lld, %lld, ..) or the label table "
                 "(%lld rows) is not a DiT's", f->path, (long long)hidden, (long long)chans,
                 (long long)patch, (long long)rows);
        return -1;
    }
    int input = ckpt_pos_embed_size(f, hidden, patch, err, errlen);
    if (input < 0) return -1;
    if (input > 0 && input_size_hint > 0 && input != input_size_hint) {
        snprintf(err, errlen, "%s: the file's pos_embed says input size %d, not %d", f->path, input,
                 input_size_hint);
        return -1;
    }
    if (!input) input = input_size_hint;
    if (input <= 0) {
        snprintf(err, errlen, "%s: the file does not say the DiT's input size (no pos_embed and no "
                 "config metadata, as in diffusers' transformer files): give it (the latent side, "
                 "32 for a 256-pixel DiT on the SD VAE): ?input_size= on POST /models, "
                 "--input-size on the command line", f->path);
        return -1;
    }
    int depth = 0;
    char name[64], names[DIT_LAYOUT_MAX_PARTS][DIT_LAYOUT_NAME_MAX];
    for (; depth <= DIT_MAX_DEPTH; depth++) {
        snprintf(name, sizeof name, "blocks.%d.attn.qkv.weight", depth);
        if (dit_layout_names(layout, "", name, 0, names) < 1 || !safetensors_find(f, names[0])) break;
    }
    int heads = heads_hint > 0 ? heads_hint : ckpt_heads_for_hidden(hidden);
    if (!heads) {
        snprintf(err, errlen, "%s: hidden size %lld matches no DiT preset and the file has no "
                 "config metadata: give the head count", f->path, (long long)hidden);
        return -1;
    }
    if (out_dim % (patch * patch)) {
        snprintf(err, errlen, "%s: the final layer's %lld outputs are not whole %lldx%lld patches",
                 f->path, (long long)out_dim, (long long)patch, (long long)patch);
        return -1;
    }
    int64_t c_out = out_dim / (patch * patch);
    if (c_out != chans && c_out != 2 * chans) {
        snprintf(err, errlen, "%s: final layer has %lld output channels for %lld input channels",
                 f->path, (long long)c_out, (long long)chans);
        return -1;
    }
    return dit_config_init(cfg, depth, (int)hidden, heads, (int)patch, input, (int)chans,
                           (int)rows - 1, c_out == 2 * chans, err, errlen);
}

int checkpoint_is_peft(const st_file *f) {
    const char *fmt = safetensors_meta(f, "format");
    return fmt && !strcmp(fmt, CHECKPOINT_FORMAT_PEFT);
}

/* The adapter's trainable tensors stored under prefix into host (ad->num_floats). */
static int ckpt_read_adapter(const st_file *f, const dit_adapter *ad, const char *prefix,
                             float *host, char *err, size_t errlen) {
    char name[160];
    for (int i = 0; i < ad->n; i++) {
        const dit_param *p = &ad->t[i].p;
        snprintf(name, sizeof name, "%s%s", prefix, p->name);
        const st_tensor *t = safetensors_find(f, name);
        int same = t && t->ndim == p->ndim;
        for (int d = 0; same && d < p->ndim; d++) same = t->shape[d] == p->shape[d];
        if (!t) {
            snprintf(err, errlen, "%s: no tensor '%s'; the checkpoint is not of this %s adapter",
                     f->path, name, spec_peft_name(ad->cfg.kind));
            return -1;
        }
        if (!same) {
            snprintf(err, errlen, "%s: tensor '%s' is not shaped as the %s adapter's", f->path, name,
                     spec_peft_name(ad->cfg.kind));
            return -1;
        }
        if (safetensors_read_f32(f, name, host + p->offset, p->numel, err, errlen)) return -1;
    }
    return 0;
}

static int ckpt_read_plain(const st_file *f, const dit_model *m, const char *prefix, float *host,
                           int depth, char *err, size_t errlen);

/* A PEFT checkpoint f read as the plain DiT m (no adapter): its base (found by path, verified by
 * sha256, itself read as a plain DiT) with the adapter under prefix merged in. */
static int ckpt_read_merged(const st_file *f, const dit_model *m, const char *prefix, float *host,
                            int depth, char *err, size_t errlen) {
    const char *base = safetensors_meta(f, "base_model"), *sha = safetensors_meta(f, "base_sha256");
    const char *peft = safetensors_meta(f, "peft");
    if (!base || !sha || !peft) {
        snprintf(err, errlen, "%s: a PEFT checkpoint without its base model's reference "
                 "(__metadata__ base_model, base_sha256, peft)", f->path);
        return -1;
    }
    if (depth >= CHECKPOINT_PEFT_CHAIN_MAX) {
        snprintf(err, errlen, "%s: PEFT checkpoints stacked more than %d deep", f->path,
                 CHECKPOINT_PEFT_CHAIN_MAX);
        return -1;
    }
    char have[65], why[512];
    if (fs_sha256_file(base, have, why, sizeof why)) {
        snprintf(err, errlen, "%s is a PEFT checkpoint on the base model %s, which cannot be read "
                 "(%s): restore that file, or export a merged model where it is", f->path, base, why);
        return -1;
    }
    if (strcmp(have, sha)) {
        snprintf(err, errlen, "%s is a PEFT checkpoint on base model %s with sha256 %.12s, but "
                 "that file now has sha256 %.12s: restore the original base model", f->path, base,
                 sha, have);
        return -1;
    }
    dt_peft_config pc;
    dit_adapter ad;
    if (peft_config_parse(peft, &pc, err, errlen)) return -1;
    if (peft_adapter_init(&ad, &m->cfg, &pc, err, errlen)) return -1;
    float *train = malloc(ad.num_floats * sizeof(float));
    st_file bf = {0};
    dit_config bc;
    int rc = -1;
    if (!train) {
        snprintf(err, errlen, "out of host memory reading %s", f->path);
        goto done;
    }
    if (safetensors_open(&bf, base, err, errlen) ||
        checkpoint_read_config(&bf, m->cfg.heads, m->cfg.image_size, &bc, err, errlen))
        goto done;
    if (bc.depth != m->cfg.depth || bc.hidden != m->cfg.hidden || bc.patch != m->cfg.patch ||
        bc.in_channels != m->cfg.in_channels || bc.num_classes != m->cfg.num_classes ||
        bc.learn_sigma != m->cfg.learn_sigma) {
        snprintf(err, errlen, "%s: its base model %s is not the same DiT", f->path, base);
        goto done;
    }
    if (ckpt_read_plain(&bf, m, "", host, depth + 1, err, errlen) ||
        ckpt_read_adapter(f, &ad, prefix, train, err, errlen))
        goto done;
    peft_merge_host(&ad, m, host, train, host);
    rc = 0;
done:
    safetensors_close(&bf);
    free(train);
    peft_adapter_free(&ad);
    return rc;
}

static int ckpt_read_plain(const st_file *f, const dit_model *m, const char *prefix, float *host,
                           int depth, char *err, size_t errlen) {
    if (checkpoint_is_peft(f)) return ckpt_read_merged(f, m, prefix, host, depth, err, errlen);
    return dit_layout_read(f, m, prefix, host, err, errlen);
}

int checkpoint_read_weights(const st_file *f, const dit_model *m, const char *prefix, float *host,
                            char *err, size_t errlen) {
    if (!m->ad) return ckpt_read_plain(f, m, prefix, host, 0, err, errlen);
    if (!checkpoint_is_peft(f)) {
        snprintf(err, errlen, "%s: not a PEFT checkpoint, but the job trains a %s adapter", f->path,
                 spec_peft_name(m->ad->cfg.kind));
        return -1;
    }
    const char *peft = safetensors_meta(f, "peft");
    dt_peft_config pc;
    if (!peft || peft_config_parse(peft, &pc, err, errlen)) return -1;
    if (pc.kind != m->ad->cfg.kind || pc.rank != m->ad->cfg.rank ||
        pc.targets != m->ad->cfg.targets || pc.difffit_blocks != m->ad->cfg.difffit_blocks) {
        snprintf(err, errlen, "%s holds a different adapter (%s) than the job's", f->path, peft);
        return -1;
    }
    return ckpt_read_adapter(f, m->ad, prefix, host, err, errlen);
}

int checkpoint_export_merged(const char *src_path, const char *out_path, char *err, size_t errlen) {
    st_file f = {0};
    dit_model m;
    memset(&m, 0, sizeof m);
    float *host = NULL, *pe = NULL;
    char sha[65], *config = NULL;
    int rc = -1;
    if (safetensors_open(&f, src_path, err, errlen)) return -1;
    if (checkpoint_read_config(&f, 0, 0, &m.cfg, err, errlen) || fs_sha256_file(src_path, sha, err, errlen))
        goto done;
    /* a host-only model: the parameter table is all the readers and writers use */
    if (!(m.params = calloc(DIT_MAX_PARAMS, sizeof *m.params))) goto oom;
    m.n_params = dit_param_table(&m.cfg, m.params, &m.num_floats);
    if (!(host = malloc(m.num_floats * sizeof(float))) ||
        !(pe = malloc(sizeof(float) * (size_t)m.cfg.tokens * m.cfg.hidden)) ||
        !(config = checkpoint_config_json(&m.cfg)))
        goto oom;
    if (checkpoint_read_weights(&f, &m, "", host, err, errlen)) goto done;
    dit_pos_embed_host(&m.cfg, pe);
    const char *step = safetensors_meta(&f, "step"), *spec = safetensors_meta(&f, "spec");
    const char *kv[] = {"format", CHECKPOINT_FORMAT, "step", step ? step : "0", "config", config,
                        "spec", spec ? spec : "{}", "weights", "ema", "merged_from", sha, NULL};
    const char *prefixes[] = {""};
    const float *hosts[] = {host};
    rc = ckpt_write(out_path, &m, prefixes, hosts, 1, pe, kv, err, errlen);
    goto done;
oom:
    snprintf(err, errlen, "out of host memory exporting %s", src_path);
done:
    safetensors_close(&f);
    free(m.params);
    free(host);
    free(pe);
    free(config);
    return rc;
}
