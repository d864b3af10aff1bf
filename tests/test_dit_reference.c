/* test_dit_reference.c — our DiT forward pass and checkpoint layout against an independent
 * float64 numpy DiT (tests/ref_dit_forward.py, written from shared/reference/dit.md).
 *
 * For each configuration: random weights everywhere (the zero init would hide errors) are saved
 * with checkpoint_save_model, the checkpoint's tensor names and shapes are checked against the
 * published DiT state dict, dit_forward runs on the CPU backend, the Python reference runs on the
 * saved file, and the outputs must agree to 1e-4 of the output's largest magnitude.
 * Environment: DIFFTUNE_SOURCE (repo root, for the script), DIFFTUNE_PYTHON (an interpreter with
 * numpy; default /usr/bin/python3), DIFFTUNE_TEST_TMP. A missing numpy is a failure, not a skip:
 * deploy/install-deps.sh installs python3-numpy.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ref_python.h"
#include "checkpoint.h"
#include "dit.h"
#include "philox.h"
#include "safetensors.h"

#define REF_BATCH 3
#define REF_WEIGHT_SCALE 0.2f
#define REF_TOL 1e-4

typedef struct {
    int depth, hidden, heads, patch, image, channels, classes, learn_sigma;
} ref_case;

/* ---- checkpoint layout ------------------------------------------------------------------- */

typedef struct {
    char name[64];
    int ndim;
    int64_t shape[4];
} ref_tensor;

static int ref_add(ref_tensor *t, int n, const char *name, int ndim, int64_t a, int64_t b,
                   int64_t c, int64_t d) {
    snprintf(t[n].name, sizeof t[n].name, "%s", name);
    t[n].ndim = ndim;
    t[n].shape[0] = a; t[n].shape[1] = b; t[n].shape[2] = c; t[n].shape[3] = d;
    return n + 1;
}

/* Writes the published DiT state dict of rc (dit.md, "State-dict names and shapes") into t
 * (room for 12 + 10 * depth entries); returns the count. */
static int ref_expected_tensors(const ref_case *rc, ref_tensor *t) {
    const int64_t D = rc->hidden, p = rc->patch, g = rc->image / rc->patch;
    const int64_t out_dim = p * p * rc->channels * (rc->learn_sigma ? 2 : 1);
    int n = 0;
    n = ref_add(t, n, "pos_embed", 3, 1, g * g, D, 0);
    n = ref_add(t, n, "x_embedder.proj.weight", 4, D, rc->channels, p, p);
    n = ref_add(t, n, "x_embedder.proj.bias", 1, D, 0, 0, 0);
    n = ref_add(t, n, "t_embedder.mlp.0.weight", 2, D, 256, 0, 0);
    n = ref_add(t, n, "t_embedder.mlp.0.bias", 1, D, 0, 0, 0);
    n = ref_add(t, n, "t_embedder.mlp.2.weight", 2, D, D, 0, 0);
    n = ref_add(t, n, "t_embedder.mlp.2.bias", 1, D, 0, 0, 0);
    n = ref_add(t, n, "y_embedder.embedding_table.weight", 2, rc->classes + 1, D, 0, 0);
    static const struct { const char *name; int out_mult, in_mult; } layers[] = {
        {"attn.qkv", 3, 1}, {"attn.proj", 1, 1}, {"mlp.fc1", 4, 1}, {"mlp.fc2", 1, 4},
        {"adaLN_modulation.1", 6, 1},
    };
    for (int i = 0; i < rc->depth; i++)
        for (int l = 0; l < 5; l++) {
            char name[64];
            snprintf(name, sizeof name, "blocks.%d.%s.weight", i, layers[l].name);
            n = ref_add(t, n, name, 2, layers[l].out_mult * D, layers[l].in_mult * D, 0, 0);
            snprintf(name, sizeof name, "blocks.%d.%s.bias", i, layers[l].name);
            n = ref_add(t, n, name, 1, layers[l].out_mult * D, 0, 0, 0);
        }
    n = ref_add(t, n, "final_layer.linear.weight", 2, out_dim, D, 0, 0);
    n = ref_add(t, n, "final_layer.linear.bias", 1, out_dim, 0, 0, 0);
    n = ref_add(t, n, "final_layer.adaLN_modulation.1.weight", 2, 2 * D, D, 0, 0);
    n = ref_add(t, n, "final_layer.adaLN_modulation.1.bias", 1, 2 * D, 0, 0, 0);
    return n;
}

/* Checks that the file at path holds exactly the DiT state dict of rc, all float32. */
static void ref_check_layout(const char *path, const ref_case *rc) {
    st_file f;
    char err[512];
    int ok = safetensors_open(&f, path, err, sizeof err) == 0;
    CHECK(ok, "open %s: %s", path, err);
    if (!ok) return;
    ref_tensor *want = calloc((size_t)(12 + 10 * rc->depth), sizeof *want);
    int n = ref_expected_tensors(rc, want);
    CHECK(f.n == n, "%s: %d tensors, the DiT state dict has %d", path, f.n, n);
    for (int i = 0; i < n; i++) {
        const st_tensor *t = safetensors_find(&f, want[i].name);
        CHECK(t != NULL, "%s: missing tensor %s", path, want[i].name);
        if (!t) continue;
        int same = t->dtype == ST_F32 && t->ndim == want[i].ndim;
        for (int d = 0; same && d < t->ndim; d++) same = t->shape[d] == want[i].shape[d];
        CHECK(same, "%s: %s has dtype %d, %d dims (%lld, %lld, ...), DiT expects F32 %d dims "
              "(%lld, %lld, %lld, %lld)", path, want[i].name, (int)t->dtype, t->ndim,
              (long long)t->shape[0], (long long)(t->ndim > 1 ? t->shape[1] : 0), want[i].ndim,
              (long long)want[i].shape[0], (long long)want[i].shape[1],
              (long long)want[i].shape[2], (long long)want[i].shape[3]);
    }
    free(want);
    safetensors_close(&f);
}

/* ---- inputs and the reference run -------------------------------------------------------- */

/* Writes raw little-endian bytes to dir/name; returns 0 or -1 (reported). */
static int ref_write_blob(const char *dir, const char *name, const void *data, size_t bytes) {
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    int ok = f && fwrite(data, 1, bytes, f) == bytes;
    if (f) ok &= fclose(f) == 0;
    CHECK(ok, "cannot write %s", path);
    return ok ? 0 : -1;
}

/* Writes x (B,C,H,W) float32, t and y (B) int32 and the JSON sidecar inputs.json into dir. */
static int ref_write_inputs(const char *dir, const ref_case *rc, const float *x, const int32_t *t,
                            const int32_t *y) {
    size_t n_in = (size_t)REF_BATCH * rc->channels * rc->image * rc->image;
    if (ref_write_blob(dir, "x.f32", x, n_in * sizeof(float)) ||
        ref_write_blob(dir, "t.i32", t, REF_BATCH * sizeof(int32_t)) ||
        ref_write_blob(dir, "y.i32", y, REF_BATCH * sizeof(int32_t)))
        return -1;
    char json[256];
    int len = snprintf(json, sizeof json,
                       "{\"batch\": %d, \"channels\": %d, \"height\": %d, \"width\": %d, "
                       "\"x\": \"x.f32\", \"t\": \"t.i32\", \"y\": \"y.i32\"}\n",
                       REF_BATCH, rc->channels, rc->image, rc->image);
    return ref_write_blob(dir, "inputs.json", json, (size_t)len);
}

/* Runs tests/ref_dit_forward.py on ckpt and dir/inputs.json; reads its n_out floats into out.
 * Returns 0, or -1 after recording a failure. */
static int ref_run_python(const char *dir, const char *ckpt, int heads, float *out, size_t n_out) {
    const char *src = getenv("DIFFTUNE_SOURCE");
    char cmd[4096], out_path[1200];
    snprintf(out_path, sizeof out_path, "%s/ref_out.f32", dir);
    snprintf(cmd, sizeof cmd, "'%s' '%s/tests/ref_dit_forward.py' '%s' '%s/inputs.json' %d '%s'",
             ref_python(), src ? src : ".", ckpt, dir, heads, out_path);
    int rc = system(cmd);
    CHECK(rc == 0, "reference failed (status %d): %s", rc, cmd);
    if (rc != 0) return -1;
    FILE *f = fopen(out_path, "rb");
    size_t got = f ? fread(out, sizeof(float), n_out, f) : 0;
    int extra = f ? fgetc(f) != EOF : 0;
    if (f) fclose(f);
    CHECK(got == n_out && !extra, "%s: %zu floats (more: %d), expected %zu", out_path, got, extra, n_out);
    return got == n_out && !extra ? 0 : -1;
}

/* ---- one configuration ------------------------------------------------------------------- */

/* dit_forward of host params on a random batch (x, t, y given) into host out (n_out floats). */
static void ref_run_ours(const dit_model *m, const float *host, const float *hx, size_t n_in,
                         const int32_t *ht, const int32_t *hy, float *hout, size_t n_out) {
    dt_backend *be = m->be;
    char err[256];
    dit_acts a;
    CHECK(dit_acts_alloc(&a, m, REF_BATCH, 0, err, sizeof err) == 0, "%s", err);
    float *params = be->alloc(be, m->num_floats * sizeof(float));
    float *x = be->alloc(be, n_in * sizeof(float)), *out = be->alloc(be, n_out * sizeof(float));
    int32_t *t = be->alloc(be, REF_BATCH * sizeof(int32_t)), *y = be->alloc(be, REF_BATCH * sizeof(int32_t));
    be->upload(be, params, host, m->num_floats * sizeof(float));
    be->upload(be, x, hx, n_in * sizeof(float));
    be->upload(be, t, ht, REF_BATCH * sizeof(int32_t));
    be->upload(be, y, hy, REF_BATCH * sizeof(int32_t));
    dit_forward(m, params, &a, x, t, y, REF_BATCH, out);
    be->download(be, hout, out, n_out * sizeof(float));
    CHECK(be->sync(be) == 0, "backend reported a failure");
    be->free(be, params); be->free(be, x); be->free(be, out); be->free(be, t); be->free(be, y);
    dit_acts_free(&a, m);
}

/* One configuration: layout of the saved checkpoint, then (when python_ok) the forward pass
 * against the numpy reference. */
static void ref_check_case(const ref_case *rc, int id, int python_ok) {
    char err[512], name[64];
    snprintf(name, sizeof name, "test_dit_reference/case%d", id);
    const char *tmp = check_tmpdir(name);
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", tmp);

    dt_backend *be = dt_backend_cpu_create();
    dit_config c;
    dit_model m;
    int ok = be && dit_config_init(&c, rc->depth, rc->hidden, rc->heads, rc->patch, rc->image,
                                   rc->channels, rc->classes, rc->learn_sigma, err, sizeof err) == 0;
    ok = ok && dit_model_init(&m, &c, be, err, sizeof err) == 0;
    CHECK(ok, "case %d: model setup: %s", id, be ? err : "no CPU backend");
    if (!ok) { if (be) be->destroy(be); return; }

    const size_t n_in = (size_t)REF_BATCH * c.in_channels * c.image_size * c.image_size;
    const size_t n_out = (size_t)REF_BATCH * c.out_channels * c.image_size * c.image_size;
    float *host = malloc(m.num_floats * sizeof(float)), *hx = malloc(n_in * sizeof(float));
    float *ours = malloc(n_out * sizeof(float)), *ref = malloc(n_out * sizeof(float));
    for (size_t i = 0; i < m.num_floats; i++)
        host[i] = REF_WEIGHT_SCALE * dt_philox_normal(1234, (uint64_t)id, i);
    for (size_t i = 0; i < n_in; i++) hx[i] = dt_philox_normal(1234, 100 + (uint64_t)id, i);
    int32_t ht[REF_BATCH] = {0, 999, 437}, hy[REF_BATCH] = {1, rc->classes, 0}; /* classes = null */

    CHECK(checkpoint_save_model(dir, 0, &m, host, NULL, NULL, err, sizeof err) == 0,
          "case %d: save: %s", id, err);
    char ckpt[1200];
    checkpoint_path(ckpt, sizeof ckpt, dir, 0, "");
    ref_check_layout(ckpt, rc);

    ref_run_ours(&m, host, hx, n_in, ht, hy, ours, n_out);
    if (python_ok && ref_write_inputs(dir, rc, hx, ht, hy) == 0 && ref_run_python(dir, ckpt, rc->heads, ref, n_out) == 0) {
        size_t worst;
        double err_rel = check_norm_err(ours, ref, n_out, &worst);
        printf("case %d: max |ours - numpy| / max |numpy| = %.3g\n", id, err_rel);
        CHECK(err_rel < REF_TOL, "case %d: forward differs from the numpy DiT: normalised error %.3g "
              "(worst at %zu: ours %.7g, numpy %.7g)", id, err_rel, worst, (double)ours[worst],
              (double)ref[worst]);
    }
    free(host); free(hx); free(ours); free(ref);
    dit_model_free(&m);
    be->destroy(be);
}

int main(void) {
    static const ref_case cases[] = {
        /* depth hidden heads patch image channels classes learn_sigma */
        {2, 32, 2, 2, 8, 3, 5, 1},
        {1, 48, 3, 4, 16, 1, 3, 0},
    };
    int python_ok = ref_python_ready();
    for (int i = 0; i < 2; i++) ref_check_case(&cases[i], i, python_ok);
    return check_done("test_dit_reference");
}
