/* ingest_model.c — validating an uploaded safetensors model: a DiT checkpoint (official or
 * diffusers layout), a difftune classifier (__metadata__.difftune_kind "classifier"), or an SD VAE
 * (diffusers' AutoencoderKL layout, told by encoder.conv_in.weight).
 *
 * The file is read exactly as a job will read it (a DiT: checkpoint_read_config, then
 * checkpoint_read_weights into a scratch host buffer; a classifier: classifier_load; a VAE:
 * vae_load on the CPU), so an accepted model is one that loads. A DiT's config is bounded before
 * any model is built: its sizes come from the upload and decide how much memory the check
 * allocates. A DiT that needed the upload's options to be read (diffusers' files store no input
 * size) gets that config written into its __metadata__, so jobs read it unaided. A PEFT
 * checkpoint (a job's adapter, format difftune.peft.v1) is a DiT too: read through its base
 * model, which its metadata names by path, so it is accepted only when promoted from a job.
 */
#include "ingest.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "checkpoint.h"
#include "classifier.h"
#include "dit_layout.h"
#include "errmsg.h"
#include "fsutil.h"
#include "safetensors.h"
#include "vae.h"

/* Far above any DiT (XL/2 at 512 px is a 64-cell latent, hidden 1152) yet small enough that no
 * size the engine derives from a config (tokens, pos_embed, table sizes) overflows. */
#define INGEST_MAX_IMAGE_SIZE 4096
#define INGEST_MAX_HIDDEN 16384
#define INGEST_MAX_CLASSES 1000000
#define INGEST_MAX_DIM INT32_MAX
#define INGEST_MAX_POS_EMBED ((size_t)1 << 28) /* floats: 1 GiB */

/* Refuses sizes out of all proportion before the engine derives token counts and products from
 * them in int arithmetic: a metadata config beyond the bounds above, or a tensor dimension (a
 * zero-sized tensor may claim any) beyond INT32_MAX. */
static int ingest_model_check_sizes(const st_file *f, char *err, size_t errlen) {
    for (int i = 0; i < f->n; i++)
        for (int d = 0; d < f->tensors[i].ndim; d++)
            if (f->tensors[i].shape[d] > INGEST_MAX_DIM) {
                dt_errorf(err, errlen, "tensor '%s' has a dimension of %lld; too large",
                          f->tensors[i].name, (long long)f->tensors[i].shape[d]);
                return DT_INGEST_INVALID;
            }
    const char *meta = safetensors_meta(f, "config");
    json_t *cfg = meta ? json_loads(meta, 0, NULL) : NULL;
    static const struct { const char *key; json_int_t max; } bounds[] = {
        {"image_size", INGEST_MAX_IMAGE_SIZE},
        {"hidden_size", INGEST_MAX_HIDDEN},
        {"num_classes", INGEST_MAX_CLASSES},
    };
    int rc = DT_INGEST_OK;
    for (size_t i = 0; cfg && i < sizeof bounds / sizeof bounds[0]; i++) {
        json_t *v = json_object_get(cfg, bounds[i].key);
        if (json_is_integer(v) && json_integer_value(v) > bounds[i].max) {
            dt_errorf(err, errlen, "__metadata__.config %s %lld is beyond the supported maximum "
                      "of %lld", bounds[i].key, (long long)json_integer_value(v),
                      (long long)bounds[i].max);
            rc = DT_INGEST_INVALID;
            break;
        }
    }
    json_decref(cfg); /* an unparsable config is reported by checkpoint_read_config */
    return rc;
}

/* The preset name ("DiT-S/2" ...) whose depth, width, heads and patch match cfg, or NULL. */
static const char *ingest_model_arch(const dit_config *cfg) {
    static const char *const presets[] = {"DiT-S/2", "DiT-S/4", "DiT-S/8", "DiT-B/2", "DiT-B/4",
                                          "DiT-B/8", "DiT-L/2", "DiT-L/4", "DiT-L/8", "DiT-XL/2",
                                          "DiT-XL/4", "DiT-XL/8"};
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++) {
        int depth, hidden, heads, patch;
        if (dit_arch_lookup(presets[i], &depth, &hidden, &heads, &patch) == 0 &&
            depth == cfg->depth && hidden == cfg->hidden && heads == cfg->heads &&
            patch == cfg->patch)
            return presets[i];
    }
    return NULL;
}

/* Builds the model cfg describes and reads every parameter tensor of f through it, which
 * checks names and shapes and that no foreign tensor is present. */
static int ingest_model_read(const st_file *f, const dit_config *cfg, char *err, size_t errlen) {
    /* Every parameter takes at least 2 bytes (F16/BF16), so a file too small for the config
     * is refused before the scratch buffer is sized from it (a PEFT checkpoint holds only its
     * adapter: the weights are its base's, which the read checks the same way). */
    size_t floats = dit_count_params(cfg);
    if (!checkpoint_is_peft(f) && floats > f->data_len / 2) {
        dt_errorf(err, errlen, "the config describes a DiT of %zu parameters but the file holds "
                  "only %zu bytes of tensors", floats, f->data_len);
        return DT_INGEST_INVALID;
    }
    if ((size_t)cfg->tokens * (size_t)cfg->hidden > INGEST_MAX_POS_EMBED) {
        dt_errorf(err, errlen, "the config's %d tokens x hidden size %d is too large a model "
                  "to accept", cfg->tokens, cfg->hidden);
        return DT_INGEST_INVALID;
    }
    dt_backend *be = dt_backend_create("cpu", err, errlen);
    if (!be) return DT_INGEST_ERROR;
    dit_model m;
    int rc = DT_INGEST_ERROR;
    if (dit_model_init(&m, cfg, be, err, errlen) == 0) {
        float *host = malloc(m.num_floats * sizeof *host);
        if (!host)
            dt_errorf(err, errlen, "out of memory reading %zu parameters", m.num_floats);
        else if (checkpoint_read_weights(f, &m, "", host, err, errlen) != 0)
            rc = DT_INGEST_INVALID;
        else
            rc = DT_INGEST_OK;
        free(host);
        dit_model_free(&m);
    }
    be->destroy(be);
    return rc;
}

/* The config as JSON (new reference), with "arch" when it is a preset and the file's "layout";
 * NULL when out of memory. */
static json_t *ingest_model_config_json(const dit_config *cfg, dit_layout layout) {
    char *text = checkpoint_config_json(cfg);
    json_t *o = text ? json_loads(text, 0, NULL) : NULL;
    free(text);
    const char *arch = ingest_model_arch(cfg);
    if (o && ((arch && json_object_set_new(o, "arch", json_string(arch)) != 0) ||
              json_object_set_new(o, "layout", json_string(dit_layout_name(layout))) != 0)) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* Drops the "<path>: " the engine puts before its messages: the path is the server's upload
 * file, meaningless (and not to be shown) to the user. */
static void ingest_model_unpath(char *err, size_t errlen, const char *path) {
    size_t n = strlen(path);
    if (!errlen || strncmp(err, path, n) != 0 || strncmp(err + n, ": ", 2) != 0) return;
    memmove(err, err + n + 2, strlen(err + n + 2) + 1);
}

/* A number from a metadata string, or NULL when there is none or it does not parse. */
static json_t *ingest_model_meta_real(const st_file *f, const char *key) {
    const char *v = safetensors_meta(f, key);
    char *end = NULL;
    double x = v ? strtod(v, &end) : 0;
    return v && end != v && !*end ? json_real(x) : NULL;
}

/* Validates a classifier file with classifier_load and describes it from its metadata:
 * {"image_size", "channels", "num_classes", "features", "train_accuracy"?,
 * "held_out_accuracy"?, "class_names"?} into *config (new reference). */
static int ingest_model_classifier(const char *path, const st_file *f, json_t **config,
                                   char *err, size_t errlen) {
    dt_classifier *c = NULL;
    if (classifier_load(&c, path, err, errlen) != 0) return DT_INGEST_INVALID;
    json_t *o = json_pack("{s:i, s:i, s:i, s:i}", "image_size", classifier_image_size(c),
                          "channels", classifier_channels(c), "num_classes",
                          classifier_num_classes(c), "features", CLASSIFIER_FEATURES);
    const int classes = classifier_num_classes(c);
    classifier_free(c);
    if (!o) {
        dt_errorf(err, errlen, "out of memory");
        return DT_INGEST_ERROR;
    }
    static const char *const accuracies[] = {"train_accuracy", "held_out_accuracy"};
    for (int i = 0; i < 2; i++) {
        json_t *v = ingest_model_meta_real(f, accuracies[i]);
        if (v) json_object_set_new(o, accuracies[i], v);
    }
    /* Class names only when they are what they claim: one string per class. */
    const char *names = safetensors_meta(f, "class_names");
    json_t *arr = names ? json_loads(names, 0, NULL) : NULL;
    int ok = json_is_array(arr) && json_array_size(arr) == (size_t)classes;
    for (size_t i = 0; ok && i < json_array_size(arr); i++) ok = json_is_string(json_array_get(arr, i));
    if (ok) json_object_set(o, "class_names", arr);
    json_decref(arr);
    *config = o;
    return DT_INGEST_OK;
}

/* Rewrites the file f was opened from with cfg as __metadata__.config (the other metadata kept,
 * the tensors' bytes unchanged), crash-safely: a new file renamed over the old, whose mapping f
 * still reads. */
static int ingest_model_add_config(const st_file *f, const dit_config *cfg, char *err, size_t errlen) {
    st_write_tensor *t = calloc((size_t)f->n + 1, sizeof *t);
    const char **kv = calloc(2 * (size_t)f->n_meta + 3, sizeof *kv);
    char *config = checkpoint_config_json(cfg);
    int rc = DT_INGEST_ERROR;
    if (!t || !kv || !config) {
        dt_errorf(err, errlen, "out of memory");
        goto done;
    }
    for (int i = 0; i < f->n; i++) {
        const st_tensor *s = &f->tensors[i];
        t[i].name = s->name;
        t[i].dtype = s->dtype;
        t[i].ndim = s->ndim;
        memcpy(t[i].shape, s->shape, sizeof t[i].shape);
        t[i].data = f->data + s->offset;
    }
    int k = 0;
    for (int i = 0; i < f->n_meta; i++) {
        if (!strcmp(f->meta_keys[i], "config")) continue;
        kv[k++] = f->meta_keys[i];
        kv[k++] = f->meta_values[i];
    }
    kv[k++] = "config";
    kv[k++] = config;
    kv[k] = NULL;
    int w = safetensors_write(f->path, t, f->n, kv, err, errlen);
    rc = w == 0 ? DT_INGEST_OK : w == FS_NO_SPACE ? DT_INGEST_NO_SPACE : DT_INGEST_ERROR;
done:
    free(config);
    free(kv);
    free(t);
    return rc;
}

/* The input size the file itself states (config metadata, else pos_embed), 0 when it states none
 * (or says it wrongly: checkpoint_read_config reports that). */
static int ingest_model_stated_size(const st_file *f) {
    dit_config cfg;
    char ignored[256];
    if (!safetensors_meta(f, "config") && !safetensors_find(f, "pos_embed")) return 0;
    return checkpoint_read_config(f, 0, 0, &cfg, ignored, sizeof ignored) == 0 ? cfg.image_size : 0;
}

/* The id of the stored model whose file is path (DIR/models/{id}/model.safetensors) as a JSON
 * string, or JSON null when path is no stored model's file. */
static json_t *ingest_model_id_of(const char *path) {
    const char *slash = strrchr(path, '/');
    const char *p = slash;
    while (p && p > path && p[-1] != '/') p--;
    if (!slash || !p || slash - p != 28 || strncmp(p, "mdl_", 4) != 0) return json_null();
    for (const char *c = p + 4; c < slash; c++)
        if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f'))) return json_null();
    return json_stringn(p, 28);
}

/* A PEFT checkpoint's adapter for its config's "peft": the __metadata__ "peft" object with the
 * base model's id (when it is a stored model) and sha256; NULL when the metadata is not JSON. */
static json_t *ingest_model_peft_json(const st_file *f) {
    const char *peft = safetensors_meta(f, "peft"), *base = safetensors_meta(f, "base_model");
    const char *sha = safetensors_meta(f, "base_sha256");
    json_t *o = peft ? json_loads(peft, 0, NULL) : NULL;
    if (!json_is_object(o) || !base || !sha) {
        json_decref(o);
        return NULL;
    }
    json_object_set_new(o, "base_model", ingest_model_id_of(base));
    json_object_set_new(o, "base_sha256", json_string(sha));
    return o;
}

/* Validates a DiT checkpoint (config bounds, config, every weight) into *config (new
 * reference); writes the config into the file when opts supplied part of it. */
static int ingest_model_dit(const st_file *f, const dt_ingest_model_opts *opts, json_t **config,
                            const char **param, char *err, size_t errlen) {
    dit_config cfg = {0};
    const dit_layout layout = dit_layout_detect(f, "");
    const int has_meta = safetensors_meta(f, "config") != NULL;
    const int peft = checkpoint_is_peft(f);
    if (peft && !opts->peft) {
        dt_errorf(err, errlen, "this is a PEFT checkpoint (%s): it holds only an adapter and names "
                  "its base model by a path on the server that trained it; promote it from its "
                  "job instead (POST /models {\"job\", \"checkpoint\"}), or promote it with "
                  "\"merge\": true for a plain DiT file", CHECKPOINT_FORMAT_PEFT);
        return DT_INGEST_INVALID;
    }
    if (peft && (opts->input_size > 0 || opts->num_heads > 0)) {
        *param = opts->input_size > 0 ? "input_size" : "num_heads";
        dt_errorf(err, errlen, "%s is not for a PEFT checkpoint, whose metadata has its config",
                  *param);
        return DT_INGEST_INVALID;
    }
    int rc = ingest_model_check_sizes(f, err, errlen); /* before any config is built from it */
    if (rc != DT_INGEST_OK) return rc;
    const int stated = ingest_model_stated_size(f);
    char names[DIT_LAYOUT_MAX_PARTS][DIT_LAYOUT_NAME_MAX];
    const st_tensor *x = dit_layout_names(layout, "", "x_embedder.proj.weight", 0, names) == 1
                             ? safetensors_find(f, names[0]) : NULL;
    /* (without a patch embedding it is no DiT at all: checkpoint_read_config says so) */
    if (x && !has_meta && !safetensors_find(f, "pos_embed") && opts->input_size <= 0) {
        *param = "input_size";
        dt_errorf(err, errlen, "this DiT (%s layout) does not store its input size (no pos_embed, "
                  "no config metadata): give it as the input_size query parameter, the latent "
                  "side: POST /models?input_size=32 for DiT-XL-2-256 (64 for DiT-XL-2-512)",
                  dit_layout_name(layout));
        return DT_INGEST_INVALID;
    }
    if (opts->input_size > 0 && stated > 0 && opts->input_size != stated) {
        *param = "input_size";
        dt_errorf(err, errlen, "input_size=%d contradicts the file, whose %s says %d; leave "
                  "input_size out", opts->input_size, has_meta ? "config metadata" : "pos_embed",
                  stated);
        return DT_INGEST_INVALID;
    }
    if (opts->num_heads > 0 && has_meta) {
        *param = "num_heads";
        dt_errorf(err, errlen, "num_heads is only for a file without config metadata; this one "
                  "has it; leave num_heads out");
        return DT_INGEST_INVALID;
    }
    const int input_hint = stated > 0 ? 0 : opts->input_size;
    if (input_hint > 0 && x && x->ndim == 4 && x->shape[2] > 0 && input_hint % x->shape[2] != 0) {
        *param = "input_size";
        dt_errorf(err, errlen, "input_size=%d is not a multiple of the DiT's patch size %lld",
                  input_hint, (long long)x->shape[2]);
        return DT_INGEST_INVALID;
    }
    if (checkpoint_read_config(f, opts->num_heads, input_hint, &cfg, err, errlen) != 0)
        return DT_INGEST_INVALID;
    /* shapes bound what the metadata bounds above did not see */
    if (cfg.image_size > INGEST_MAX_IMAGE_SIZE || cfg.hidden > INGEST_MAX_HIDDEN ||
        cfg.num_classes > INGEST_MAX_CLASSES) {
        *param = input_hint && cfg.image_size > INGEST_MAX_IMAGE_SIZE ? "input_size" : "file";
        dt_errorf(err, errlen, "input size %d, hidden size %d or %d classes is beyond the "
                  "supported maximum (%d, %d, %d)", cfg.image_size, cfg.hidden, cfg.num_classes,
                  INGEST_MAX_IMAGE_SIZE, INGEST_MAX_HIDDEN, INGEST_MAX_CLASSES);
        return DT_INGEST_INVALID;
    }
    rc = ingest_model_read(f, &cfg, err, errlen);
    if (rc != DT_INGEST_OK) return rc;
    if (!has_meta && (input_hint > 0 || opts->num_heads > 0)) {
        rc = ingest_model_add_config(f, &cfg, err, errlen);
        if (rc != DT_INGEST_OK) return rc;
    }
    *config = ingest_model_config_json(&cfg, layout);
    json_t *adapter = peft ? ingest_model_peft_json(f) : NULL;
    if (*config && peft && (!adapter || json_object_set_new(*config, "peft", adapter) != 0)) {
        json_decref(*config);
        *config = NULL;
    }
    if (!*config) {
        dt_errorf(err, errlen, "out of memory");
        return DT_INGEST_ERROR;
    }
    return DT_INGEST_OK;
}

/* Validates an SD VAE as a job loads it (vae_read_config, then every weight onto the CPU) and
 * describes it into *config (new reference). */
static int ingest_model_vae(const char *path, const st_file *f, json_t **config, char *err,
                            size_t errlen) {
    vae_config vc;
    if (vae_read_config(f, &vc, err, errlen) != 0) return DT_INGEST_INVALID;
    if (f->data_len / 2 < vc.num_floats) { /* every weight takes at least 2 bytes */
        dt_errorf(err, errlen, "the VAE has %zu parameters but the file holds only %zu bytes of "
                  "tensors", vc.num_floats, f->data_len);
        return DT_INGEST_INVALID;
    }
    dt_backend *be = dt_backend_create("cpu", err, errlen);
    if (!be) return DT_INGEST_ERROR;
    vae_model *v = NULL;
    int rc = vae_load(&v, path, be, err, errlen) == 0 ? DT_INGEST_OK : DT_INGEST_INVALID;
    vae_free(v);
    be->destroy(be);
    if (rc != DT_INGEST_OK) return rc;
    const double scale = floor((double)VAE_SCALE * 1e6 + 0.5) / 1e6; /* 0.18215, not the float's tail */
    json_t *levels = json_array();
    for (int i = 0; levels && i < vc.levels; i++) json_array_append_new(levels, json_integer(vc.block_out[i]));
    json_t *o = levels ? json_pack("{s:i, s:o, s:i, s:i, s:f, s:s}", "latent_channels",
                                   vc.latent_channels, "block_out_channels", levels,
                                   "layers_per_block", vc.layers_per_block, "downsample_factor",
                                   vc.downsample, "scaling_factor", scale,
                                   "attention_names",
                                   vc.attn_names == VAE_ATTN_LEGACY ? "legacy" : "diffusers")
                       : NULL;
    if (!o) {
        dt_errorf(err, errlen, "out of memory");
        return DT_INGEST_ERROR;
    }
    *config = o;
    return DT_INGEST_OK;
}

int ingest_model(const char *path, const dt_ingest_model_opts *opts, dt_ingest_model *out,
                 char *err, size_t errlen) {
    static const dt_ingest_model_opts none = {0};
    if (!opts) opts = &none;
    memset(out, 0, sizeof *out);
    out->param = "file";
    struct stat sb;
    if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        dt_errorf(err, errlen, "cannot read the uploaded file %s", path);
        return DT_INGEST_ERROR;
    }
    st_file f = {0};
    json_t *config = NULL;
    int rc = DT_INGEST_INVALID;
    if (safetensors_open(&f, path, err, errlen) == 0) {
        const char *kind = safetensors_meta(&f, "difftune_kind");
        const char *what = kind && !strcmp(kind, "classifier") ? "classifier"
                           : !kind && safetensors_find(&f, "encoder.conv_in.weight") ? "vae" : "dit";
        if (strcmp(what, "dit") && (opts->input_size > 0 || opts->num_heads > 0)) {
            out->param = opts->input_size > 0 ? "input_size" : "num_heads";
            dt_errorf(err, errlen, "%s is only for a DiT; this file is a %s", out->param, what);
        } else if (!strcmp(what, "classifier")) {
            rc = ingest_model_classifier(path, &f, &config, err, errlen);
        } else if (kind) {
            dt_errorf(err, errlen, "__metadata__.difftune_kind is \"%.60s\"; a model is a DiT "
                      "checkpoint or a VAE (no difftune_kind) or a classifier (\"classifier\")", kind);
        } else if (!strcmp(what, "vae")) {
            rc = ingest_model_vae(path, &f, &config, err, errlen);
        } else {
            rc = ingest_model_dit(&f, opts, &config, &out->param, err, errlen);
        }
        snprintf(out->kind, sizeof out->kind, "%s", what);
    }
    safetensors_close(&f);
    if (rc == DT_INGEST_INVALID) ingest_model_unpath(err, errlen, path);
    if (rc != DT_INGEST_OK) {
        json_decref(config);
        return rc;
    }
    if (stat(path, &sb) != 0) { /* again: a DiT given its config was rewritten */
        dt_errorf(err, errlen, "cannot read the stored file %s", path);
        json_decref(config);
        return DT_INGEST_ERROR;
    }
    if (fs_sha256_file(path, out->sha256, err, errlen) != 0) {
        json_decref(config);
        return DT_INGEST_ERROR;
    }
    out->config = config;
    out->bytes = (int64_t)sb.st_size;
    return DT_INGEST_OK;
}
