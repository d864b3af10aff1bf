/* test_dit_layouts.c — DiT weights in the published layouts load to the same model.
 *
 * tests/tools/gen_dit (DIFFTUNE_GEN_DIT) writes the same random DiT, at DiT-XL/2 widths with one
 * or two blocks, in the official state-dict layout (with pos_embed) and in diffusers' transformer
 * layout (to_q/to_k/to_v, embedders repeated per block, no pos_embed), as F32, F16 and BF16.
 * Both layouts must give the same config (the diffusers one only with the input-size hint, and a
 * message saying how to give it without) and bit-identical weights, hence the same forward; F16
 * and BF16 weights must equal the F32 ones up to the dtype's rounding. Damaged files (a replicated
 * embedder that disagrees, a mis-shaped, missing or foreign tensor) are refused, naming the tensor.
 * gen_dit's name map is written independently of engine/dit_layout.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "checkpoint.h"
#include "dit.h"
#include "dit_layout.h"
#include "safetensors.h"

#define XL_HIDDEN 1152
#define XL_HEADS 16
#define INPUT 4 /* latent side: 2x2 tokens of 2x2 patches keep the forward cheap */
#define BATCH 2

static const char *gen_dit(void) {
    const char *g = getenv("DIFFTUNE_GEN_DIT");
    return g && g[0] ? g : NULL;
}

/* Runs gen_dit with args into path; returns 0 or -1 (recorded). */
static int run_gen(const char *path, const char *args) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s' --out '%s' %s > /dev/null", gen_dit(), path, args);
    int rc = system(cmd);
    CHECK(rc == 0, "gen_dit failed (%d): %s", rc, cmd);
    return rc == 0 ? 0 : -1;
}

/* Opens path, reads its config with the head-count and input-size hints and its weights into a new host buffer
 * (*host, caller frees) on model *m (caller frees). Returns 0, or -1 with err. */
static int load(const char *path, int heads_hint, int input_hint, dt_backend *be, dit_model *m, float **host,
                char *err, size_t errlen) {
    st_file f;
    dit_config c;
    *host = NULL;
    if (safetensors_open(&f, path, err, errlen)) return -1;
    int rc = checkpoint_read_config(&f, heads_hint, input_hint, &c, err, errlen);
    if (!rc) rc = dit_model_init(m, &c, be, err, errlen);
    if (!rc) {
        *host = malloc(m->num_floats * sizeof(float));
        rc = checkpoint_read_weights(&f, m, "", *host, err, errlen);
        if (rc) {
            dit_model_free(m);
            free(*host);
            *host = NULL;
        }
    }
    safetensors_close(&f);
    return rc;
}

/* The forward of host weights on a fixed batch into out (BATCH * C_out * H * W floats). */
static void forward(const dit_model *m, const float *host, float *hout) {
    dt_backend *be = m->be;
    const dit_config *c = &m->cfg;
    char err[256];
    const size_t n_in = (size_t)BATCH * c->in_channels * c->image_size * c->image_size;
    const size_t n_out = (size_t)BATCH * c->out_channels * c->image_size * c->image_size;
    float *hx = malloc(n_in * sizeof(float));
    for (size_t i = 0; i < n_in; i++) hx[i] = (float)sin(0.37 * (double)i) * 1.5f;
    int32_t ht[BATCH] = {17, 803}, hy[BATCH] = {207, c->num_classes};
    dit_acts a;
    CHECK(dit_acts_alloc(&a, m, BATCH, 0, err, sizeof err) == 0, "%s", err);
    float *params = be->alloc(be, m->num_floats * sizeof(float));
    float *x = be->alloc(be, n_in * sizeof(float)), *out = be->alloc(be, n_out * sizeof(float));
    int32_t *t = be->alloc(be, sizeof ht), *y = be->alloc(be, sizeof hy);
    be->upload(be, params, host, m->num_floats * sizeof(float));
    be->upload(be, x, hx, n_in * sizeof(float));
    be->upload(be, t, ht, sizeof ht);
    be->upload(be, y, hy, sizeof hy);
    dit_forward(m, params, &a, x, t, y, BATCH, out);
    be->download(be, hout, out, n_out * sizeof(float));
    CHECK(be->sync(be) == 0, "backend failure");
    be->free(be, params); be->free(be, x); be->free(be, out); be->free(be, t); be->free(be, y);
    dit_acts_free(&a, m);
    free(hx);
}

/* ---- name map ---------------------------------------------------------------------------- */

static void check_names(void) {
    char n[DIT_LAYOUT_MAX_PARTS][DIT_LAYOUT_NAME_MAX];
    CHECK(dit_layout_names(DIT_LAYOUT_DIFFUSERS, "", "blocks.3.attn.qkv.bias", 0, n) == 3 &&
          !strcmp(n[0], "transformer_blocks.3.attn1.to_q.bias") &&
          !strcmp(n[1], "transformer_blocks.3.attn1.to_k.bias") &&
          !strcmp(n[2], "transformer_blocks.3.attn1.to_v.bias"), "qkv parts: %s %s %s", n[0], n[1], n[2]);
    CHECK(dit_layout_names(DIT_LAYOUT_DIFFUSERS, "", "y_embedder.embedding_table.weight", 5, n) == 1 &&
          !strcmp(n[0], "transformer_blocks.5.norm1.emb.class_embedder.embedding_table.weight"), "%s", n[0]);
    CHECK(dit_layout_names(DIT_LAYOUT_DIFFUSERS, "", "t_embedder.mlp.2.bias", 0, n) == 1 &&
          !strcmp(n[0], "transformer_blocks.0.norm1.emb.timestep_embedder.linear_2.bias"), "%s", n[0]);
    CHECK(dit_layout_names(DIT_LAYOUT_DIFFUSERS, "", "final_layer.adaLN_modulation.1.weight", 0, n) == 1 &&
          !strcmp(n[0], "proj_out_1.weight"), "%s", n[0]);
    CHECK(dit_layout_names(DIT_LAYOUT_DIFFUSERS, "", "blocks.0.mlp.fc1.weight", 0, n) == 1 &&
          !strcmp(n[0], "transformer_blocks.0.ff.net.0.proj.weight"), "%s", n[0]);
    CHECK(dit_layout_names(DIT_LAYOUT_OFFICIAL, "train.", "blocks.0.mlp.fc1.weight", 0, n) == 1 &&
          !strcmp(n[0], "train.blocks.0.mlp.fc1.weight"), "%s", n[0]);
    CHECK(dit_layout_copies(DIT_LAYOUT_DIFFUSERS, "t_embedder.mlp.0.weight", 28) == 28, "copies");
    CHECK(dit_layout_copies(DIT_LAYOUT_DIFFUSERS, "blocks.2.attn.proj.weight", 28) == 1, "copies");
    CHECK(dit_layout_copies(DIT_LAYOUT_OFFICIAL, "t_embedder.mlp.0.weight", 28) == 1, "copies");
    CHECK(dit_layout_names(DIT_LAYOUT_DIFFUSERS, "", "blocks.0.attn.gamma1", 0, n) == -1, "not a param");
    CHECK(dit_layout_names(DIT_LAYOUT_DIFFUSERS, "", "pos_embed", 0, n) == -1, "not a param");
}

/* ---- the published layouts, three dtypes ------------------------------------------------- */

/* |a - b| within the rounding of dtype (relative half-ulp, plus the subnormal step). */
static int within_rounding(float exact, float rounded, const char *dtype) {
    double rel = !strcmp(dtype, "f16") ? 1.0 / 2048 : 1.0 / 256, abs_step = !strcmp(dtype, "f16") ? 6e-8 : 0;
    return fabs((double)exact - rounded) <= rel * fabs((double)exact) + abs_step;
}

static void check_dtype(const char *dir, const char *dtype, int depth, dt_backend *be,
                        const float *f32_weights, size_t f32_n) {
    char args[512], err[1024];
    char *official = check_path(dir, "official.safetensors"), *diffusers = check_path(dir, "diffusers.safetensors");
    snprintf(args, sizeof args, "--arch DiT-XL/2 --depth %d --input-size %d --dtype %s --seed 7 --layout", depth, INPUT, dtype);
    char a1[600], a2[600];
    snprintf(a1, sizeof a1, "%s official", args);
    snprintf(a2, sizeof a2, "%s diffusers", args);
    if (run_gen(official, a1) || run_gen(diffusers, a2)) return;

    /* configs: the official file says everything, the diffusers file needs the input size */
    st_file f;
    dit_config c;
    CHECK(safetensors_open(&f, diffusers, err, sizeof err) == 0, "%s", err);
    CHECK(dit_layout_detect(&f, "") == DIT_LAYOUT_DIFFUSERS, "%s: detected as official", dtype);
    int rc = checkpoint_read_config(&f, 0, 0, &c, err, sizeof err);
    CHECK(rc != 0 && strstr(err, "input size") && strstr(err, "input_size=") && strstr(err, "--input-size"),
          "%s: diffusers without a hint: rc %d, '%s'", dtype, rc, err);
    safetensors_close(&f);
    CHECK(safetensors_open(&f, official, err, sizeof err) == 0, "%s", err);
    CHECK(dit_layout_detect(&f, "") == DIT_LAYOUT_OFFICIAL, "%s: detected as diffusers", dtype);
    rc = checkpoint_read_config(&f, 0, 2 * INPUT, &c, err, sizeof err);
    CHECK(rc != 0 && strstr(err, "pos_embed says input size 4, not 8"), "%s: contradicting hint: '%s'", dtype, err);
    CHECK(checkpoint_read_config(&f, 0, INPUT, &c, err, sizeof err) == 0, "agreeing hint: %s", err);
    safetensors_close(&f);

    dit_model mo, md;
    float *ho = NULL, *hd = NULL;
    int ok_o = load(official, 0, 0, be, &mo, &ho, err, sizeof err) == 0;
    CHECK(ok_o, "%s official: %s", dtype, err);
    int ok_d = load(diffusers, 0, INPUT, be, &md, &hd, err, sizeof err) == 0;
    CHECK(ok_d, "%s diffusers: %s", dtype, err);
    if (ok_o) {
        const dit_config *k = &mo.cfg;
        CHECK(k->depth == depth && k->hidden == XL_HIDDEN && k->heads == XL_HEADS && k->patch == 2 &&
              k->image_size == INPUT && k->in_channels == 4 && k->num_classes == 1000 &&
              k->learn_sigma == 1, "%s official config: depth %d hidden %d heads %d patch %d image %d "
              "channels %d classes %d sigma %d", dtype, k->depth, k->hidden, k->heads, k->patch,
              k->image_size, k->in_channels, k->num_classes, k->learn_sigma);
    }
    if (ok_o && ok_d) {
        CHECK(!memcmp(&mo.cfg, &md.cfg, sizeof mo.cfg), "%s: configs differ between layouts", dtype);
        CHECK(mo.num_floats == md.num_floats, "sizes");
        size_t first = mo.num_floats;
        for (size_t i = 0; i < mo.num_floats && first == mo.num_floats; i++)
            if (memcmp(&ho[i], &hd[i], sizeof(float))) first = i;
        CHECK(first == mo.num_floats, "%s: weights differ between layouts from float %zu", dtype, first);
        if (first != mo.num_floats)
            for (int p = 0; p < mo.n_params; p++)
                if (first >= mo.params[p].offset && first < mo.params[p].offset + mo.params[p].numel)
                    fprintf(stderr, "  (in %s)\n", mo.params[p].name);
        /* a non-trivial model: adaLN is random, so the gates are not zero */
        dit_weights w = dit_weights_at(&mo, ho);
        CHECK(w.blocks[0].ada_w[0] != 0.0f && w.final_w[0] != 0.0f, "gen_dit wrote zero adaLN");
        const size_t n_out = (size_t)BATCH * mo.cfg.out_channels * INPUT * INPUT;
        float *yo = malloc(n_out * sizeof(float)), *yd = malloc(n_out * sizeof(float));
        forward(&mo, ho, yo);
        forward(&md, hd, yd);
        CHECK(!memcmp(yo, yd, n_out * sizeof(float)), "%s: forward differs between layouts", dtype);
        double mag = 0;
        for (size_t i = 0; i < n_out; i++) mag = fmax(mag, fabs(yo[i]));
        CHECK(mag > 1e-3 && isfinite(mag), "%s: forward output magnitude %g", dtype, mag);
        free(yo);
        free(yd);
        if (f32_weights && f32_n <= mo.num_floats) {
            size_t bad = 0, worst = 0;
            for (size_t i = 0; i < f32_n; i++)
                if (!within_rounding(f32_weights[i], ho[i], dtype) && !bad++) worst = i;
            CHECK(bad == 0, "%s: %zu weights beyond the dtype's rounding of the f32 file (first %zu: "
                  "%.9g vs %.9g)", dtype, bad, worst, (double)f32_weights[worst], (double)ho[worst]);
        }
    }
    if (ok_o) dit_model_free(&mo);
    if (ok_d) dit_model_free(&md);
    free(ho);
    free(hd);
    remove(official);
    remove(diffusers);
}

/* The f32 weights of the depth-1 model (the prefix every depth shares is not the whole model:
 * the final layer comes after the blocks), for the rounding checks. */
static float *f32_reference(const char *dir, dt_backend *be, size_t *n) {
    char err[1024], args[256];
    char *path = check_path(dir, "ref.safetensors");
    snprintf(args, sizeof args, "--arch DiT-XL/2 --depth 1 --input-size %d --seed 7 --layout official", INPUT);
    if (run_gen(path, args)) return NULL;
    dit_model m;
    float *host;
    int ok = load(path, 0, 0, be, &m, &host, err, sizeof err) == 0;
    CHECK(ok, "f32 reference: %s", err);
    remove(path);
    if (!ok) return NULL;
    *n = m.num_floats;
    dit_model_free(&m);
    return host;
}

/* ---- damaged files ----------------------------------------------------------------------- */

enum { EDIT_PERTURB, EDIT_RESHAPE, EDIT_DROP, EDIT_ADD };

/* Copies src to dst with tensor `name` changed by edit (F32 files): one element perturbed, its
 * first two dims reshaped (d0/2, 2*d1), dropped, or a foreign tensor of that name added. */
static int copy_edited(const char *src, const char *dst, const char *name, int edit) {
    st_file f;
    char err[512];
    if (safetensors_open(&f, src, err, sizeof err)) { CHECK(0, "%s", err); return -1; }
    st_write_tensor *t = calloc((size_t)f.n + 1, sizeof *t);
    float *changed = NULL, extra = 1.0f;
    int n = 0;
    for (int i = 0; i < f.n; i++) {
        const st_tensor *s = &f.tensors[i];
        if (edit == EDIT_DROP && !strcmp(s->name, name)) continue;
        st_write_tensor *w = &t[n++];
        w->name = s->name;
        w->dtype = s->dtype;
        w->ndim = s->ndim;
        memcpy(w->shape, s->shape, sizeof w->shape);
        w->data = f.data + s->offset;
        if (strcmp(s->name, name)) continue;
        if (edit == EDIT_PERTURB) {
            changed = malloc(s->nbytes);
            memcpy(changed, f.data + s->offset, s->nbytes);
            changed[safetensors_numel(s) / 2] += 0.25f;
            w->data = changed;
        } else if (edit == EDIT_RESHAPE) {
            w->shape[0] /= 2;
            w->shape[1] *= 2;
        }
    }
    if (edit == EDIT_ADD) {
        t[n] = (st_write_tensor){.name = name, .dtype = ST_F32, .ndim = 1, .shape = {1}, .data = &extra};
        n++;
    }
    const char *meta[2 * 8 + 1];
    int k = 0;
    for (int i = 0; i < f.n_meta && i < 8; i++) {
        meta[k++] = f.meta_keys[i];
        meta[k++] = f.meta_values[i];
    }
    meta[k] = NULL;
    int rc = safetensors_write(dst, t, n, meta, err, sizeof err);
    CHECK(rc == 0, "%s", err);
    free(changed);
    free(t);
    safetensors_close(&f);
    return rc;
}

/* Loading the edited copy fails with a message holding every one of want[] (NULL-terminated). */
static void check_refused(const char *dir, const char *src, const char *name, int edit, int hint,
                          const char *const *want) {
    char err[1024] = "";
    char *dst = check_path(dir, "edited.safetensors");
    if (copy_edited(src, dst, name, edit)) return;
    dit_model m;
    float *host;
    dt_backend *be = dt_backend_cpu_create();
    int rc = load(dst, 4, hint, be, &m, &host, err, sizeof err);
    CHECK(rc != 0, "edit %d of %s was accepted", edit, name);
    if (!rc) {
        dit_model_free(&m);
        free(host);
    }
    for (int i = 0; want[i]; i++)
        CHECK(strstr(err, want[i]) != NULL, "edit %d of %s: message '%s' lacks '%s'", edit, name, err, want[i]);
    be->destroy(be);
    remove(dst);
}

static void check_damaged(const char *dir) {
    char diff[1200], off[1200]; /* check_path's buffers rotate */
    snprintf(diff, sizeof diff, "%s", check_path(dir, "small_diffusers.safetensors"));
    snprintf(off, sizeof off, "%s", check_path(dir, "small_official.safetensors"));
    const char *small = "--hidden 64 --heads 4 --patch 2 --depth 3 --input-size 8 --classes 10 --layout";
    char a[256];
    snprintf(a, sizeof a, "%s diffusers", small);
    if (run_gen(diff, a)) return;
    snprintf(a, sizeof a, "%s official", small);
    if (run_gen(off, a)) return;
    {
        dit_model m;
        float *host;
        char err[1024];
        dt_backend *be = dt_backend_cpu_create();
        int rc = load(diff, 0, 8, be, &m, &host, err, sizeof err);
        CHECK(rc != 0 && strstr(err, "give the head count"), "hidden 64 without heads: '%s'", err);
        int ok = load(diff, 4, 8, be, &m, &host, err, sizeof err) == 0;
        CHECK(ok, "small diffusers file: %s", err);
        if (ok) {
            CHECK(m.cfg.heads == 4 && m.cfg.depth == 3 && m.cfg.num_classes == 10, "small config");
            dit_model_free(&m);
            free(host);
        }
        be->destroy(be);
    }
    const char *disagree[] = {"transformer_blocks.2.norm1.emb.class_embedder.embedding_table.weight",
                              "block 0", NULL};
    check_refused(dir, diff, "transformer_blocks.2.norm1.emb.class_embedder.embedding_table.weight",
                  EDIT_PERTURB, 8, disagree);
    const char *disagree_t[] = {"transformer_blocks.1.norm1.emb.timestep_embedder.linear_1.bias", "differs", NULL};
    check_refused(dir, diff, "transformer_blocks.1.norm1.emb.timestep_embedder.linear_1.bias",
                  EDIT_PERTURB, 8, disagree_t);
    const char *shape_k[] = {"transformer_blocks.1.attn1.to_k.weight", "shape [32, 128]", "[64, 64]", NULL};
    check_refused(dir, diff, "transformer_blocks.1.attn1.to_k.weight", EDIT_RESHAPE, 8, shape_k);
    const char *shape_o[] = {"blocks.0.mlp.fc2.weight", "shape [32, 512]", "[64, 256]", NULL};
    check_refused(dir, off, "blocks.0.mlp.fc2.weight", EDIT_RESHAPE, 0, shape_o);
    const char *missing[] = {"missing tensor 'transformer_blocks.2.ff.net.2.bias'", NULL};
    check_refused(dir, diff, "transformer_blocks.2.ff.net.2.bias", EDIT_DROP, 8, missing);
    const char *foreign[] = {"unexpected tensor 'transformer_blocks.0.attn1.norm_q.weight'", NULL};
    check_refused(dir, diff, "transformer_blocks.0.attn1.norm_q.weight", EDIT_ADD, 8, foreign);
    const char *beyond[] = {"unexpected tensor 'transformer_blocks.3.norm1.linear.bias'", NULL};
    check_refused(dir, diff, "transformer_blocks.3.norm1.linear.bias", EDIT_ADD, 8, beyond);
    const char *no_bias[] = {"unexpected tensor 'transformer_blocks.0.norm1.emb.class_embedder.embedding_table.bias'", NULL};
    check_refused(dir, diff, "transformer_blocks.0.norm1.emb.class_embedder.embedding_table.bias", EDIT_ADD, 8, no_bias);
    remove(diff);
    remove(off);
}

int main(void) {
    if (!gen_dit()) {
        fprintf(stderr, "DIFFTUNE_GEN_DIT is not set: run under ctest (tests/tools/gen_dit)\n");
        return 1;
    }
    check_names();
    const char *dir = check_tmpdir("test_dit_layouts");
    dt_backend *be = dt_backend_cpu_create();
    size_t ref_n = 0;
    float *ref = f32_reference(dir, be, &ref_n);
    check_dtype(dir, "f32", 2, be, NULL, 0);
    check_dtype(dir, "f16", 1, be, ref, ref_n);
    check_dtype(dir, "bf16", 1, be, ref, ref_n);
    free(ref);
    check_damaged(dir);
    be->destroy(be);
    return check_done("test_dit_layouts");
}
