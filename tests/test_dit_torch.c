/* test_dit_torch.c — difftune's DiT forward against committed PyTorch fixtures.
 *
 * tests/reference/torch_dit.py (a PyTorch DiT written from shared/reference/dit.md, run in float64)
 * made tests/fixtures/dit_torch_*.safetensors on weights from tests/tools/gen_dit in the official
 * layout: the input x, timesteps t, labels y, the tokens after block 0 and the whole output. This
 * test regenerates the weights with the recorded gen_dit arguments (DIFFTUNE_GEN_DIT; bit-identical
 * on every IEEE machine), checks their sum and sum of squares against the fixture's (so a changed
 * generator is told apart from a broken DiT), loads them through checkpoint_read_config /
 * checkpoint_read_weights and compares dit_forward's block-0 tokens and output with PyTorch's to
 * 1e-4 of the largest magnitude. No PyTorch is needed here.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "checkpoint.h"
#include "dit.h"
#include "safetensors.h"

#define TORCH_TOL 1e-4

/* Tensor name of f into a new float buffer of n elements (raw copy for I32). NULL (recorded) on
 * a mismatch. */
static void *fixture_tensor(const st_file *f, const char *name, st_dtype dtype, size_t n) {
    const st_tensor *t = safetensors_find(f, name);
    CHECK(t && t->dtype == dtype && safetensors_numel(t) == n, "%s: tensor %s missing or not %zu "
          "elements of dtype %d", f->path, name, n, (int)dtype);
    if (!t || t->dtype != dtype || safetensors_numel(t) != n) return NULL;
    void *buf = malloc(t->nbytes + 1);
    memcpy(buf, f->data + t->offset, t->nbytes);
    return buf;
}

static void check_fixture(const char *name) {
    char path[2048], err[1024], cmd[4096];
    const char *src = getenv("DIFFTUNE_SOURCE"), *gen = getenv("DIFFTUNE_GEN_DIT");
    snprintf(path, sizeof path, "%s/tests/fixtures/%s.safetensors", src ? src : ".", name);
    st_file fx;
    if (safetensors_open(&fx, path, err, sizeof err)) {
        CHECK(0, "%s", err);
        return;
    }
    const char *args = safetensors_meta(&fx, "gen_dit_args"), *heads_s = safetensors_meta(&fx, "num_heads");
    const char *sum_s = safetensors_meta(&fx, "weights_sum"), *sumsq_s = safetensors_meta(&fx, "weights_sumsq");
    CHECK(args && heads_s && sum_s && sumsq_s, "%s: metadata incomplete", name);
    if (!args || !heads_s || !sum_s || !sumsq_s) { safetensors_close(&fx); return; }

    const char *dir = check_tmpdir(name);
    char wpath[1200];
    snprintf(wpath, sizeof wpath, "%s/weights.safetensors", dir);
    snprintf(cmd, sizeof cmd, "'%s' --out '%s' %s > /dev/null", gen, wpath, args);
    int rc = system(cmd);
    CHECK(rc == 0, "gen_dit failed (%d): %s", rc, cmd);
    st_file fw;
    dit_config c;
    dt_backend *be = dt_backend_cpu_create();
    dit_model m = {0};
    float *host = NULL;
    int ok = rc == 0 && safetensors_open(&fw, wpath, err, sizeof err) == 0;
    CHECK(ok, "%s: %s", name, err);
    if (!ok) { be->destroy(be); safetensors_close(&fx); return; }
    ok = checkpoint_read_config(&fw, atoi(heads_s), 0, &c, err, sizeof err) == 0 &&
         dit_model_init(&m, &c, be, err, sizeof err) == 0;
    CHECK(ok, "%s: %s", name, err);
    if (ok) {
        host = malloc(m.num_floats * sizeof(float));
        ok = checkpoint_read_weights(&fw, &m, "", host, err, sizeof err) == 0;
        CHECK(ok, "%s: %s", name, err);
    }
    safetensors_close(&fw);
    if (ok) {
        double sum = 0, sumsq = 0;
        for (size_t i = 0; i < m.num_floats; i++) {
            sum += host[i];
            sumsq += (double)host[i] * host[i];
        }
        double want_sum = atof(sum_s), want_sumsq = atof(sumsq_s);
        ok = fabs(sum - want_sum) <= 1e-9 * fmax(1, fabs(want_sum)) + 1e-9 &&
             fabs(sumsq - want_sumsq) <= 1e-9 * want_sumsq;
        CHECK(ok, "%s: gen_dit made other weights than the fixture's (sum %.17g vs %.17g, sumsq "
              "%.17g vs %.17g): regenerate the fixtures with tests/reference/torch_dit.py", name,
              sum, want_sum, sumsq, want_sumsq);
    }
    const int B = ok ? (int)safetensors_find(&fx, "t")->shape[0] : 0;
    const size_t n_in = (size_t)B * c.in_channels * c.image_size * c.image_size;
    const size_t n_out = (size_t)B * c.out_channels * c.image_size * c.image_size;
    const size_t n_tok = (size_t)B * c.tokens * c.hidden;
    float *hx = ok ? fixture_tensor(&fx, "x", ST_F32, n_in) : NULL;
    int32_t *ht = ok ? fixture_tensor(&fx, "t", ST_I32, (size_t)B) : NULL;
    int32_t *hy = ok ? fixture_tensor(&fx, "y", ST_I32, (size_t)B) : NULL;
    float *want_out = ok ? fixture_tensor(&fx, "out", ST_F32, n_out) : NULL;
    float *want_b0 = ok ? fixture_tensor(&fx, "block0", ST_F32, n_tok) : NULL;
    if (hx && ht && hy && want_out && want_b0) {
        dit_acts a; /* training activations keep every block's output */
        CHECK(dit_acts_alloc(&a, &m, B, 1, err, sizeof err) == 0, "%s", err);
        float *params = be->alloc(be, m.num_floats * sizeof(float));
        float *x = be->alloc(be, n_in * sizeof(float)), *out = be->alloc(be, n_out * sizeof(float));
        int32_t *t = be->alloc(be, (size_t)B * sizeof(int32_t)), *y = be->alloc(be, (size_t)B * sizeof(int32_t));
        be->upload(be, params, host, m.num_floats * sizeof(float));
        be->upload(be, x, hx, n_in * sizeof(float));
        be->upload(be, t, ht, (size_t)B * sizeof(int32_t));
        be->upload(be, y, hy, (size_t)B * sizeof(int32_t));
        dit_forward(&m, params, &a, x, t, y, B, out);
        float *got_out = malloc(n_out * sizeof(float)), *got_b0 = malloc(n_tok * sizeof(float));
        be->download(be, got_out, out, n_out * sizeof(float));
        be->download(be, got_b0, a.x + n_tok, n_tok * sizeof(float)); /* x[1]: block 0's output */
        CHECK(be->sync(be) == 0, "backend failure");
        size_t worst;
        double e0 = check_norm_err(got_b0, want_b0, n_tok, &worst);
        printf("%s: block 0 max |difftune - torch| / max |torch| = %.3g\n", name, e0);
        CHECK(e0 < TORCH_TOL, "%s: block 0 differs from PyTorch: %.3g (at %zu: %.7g vs %.7g)", name,
              e0, worst, (double)got_b0[worst], (double)want_b0[worst]);
        double e1 = check_norm_err(got_out, want_out, n_out, &worst);
        printf("%s: output  max |difftune - torch| / max |torch| = %.3g\n", name, e1);
        CHECK(e1 < TORCH_TOL, "%s: the forward differs from PyTorch: %.3g (at %zu: %.7g vs %.7g)",
              name, e1, worst, (double)got_out[worst], (double)want_out[worst]);
        free(got_out);
        free(got_b0);
        be->free(be, params); be->free(be, x); be->free(be, out); be->free(be, t); be->free(be, y);
        dit_acts_free(&a, &m);
    }
    free(hx); free(ht); free(hy); free(want_out); free(want_b0);
    free(host);
    if (m.params) dit_model_free(&m);
    be->destroy(be);
    safetensors_close(&fx);
    remove(wpath);
}

int main(void) {
    if (!getenv("DIFFTUNE_GEN_DIT") || !getenv("DIFFTUNE_SOURCE")) {
        fprintf(stderr, "DIFFTUNE_GEN_DIT and DIFFTUNE_SOURCE are not set: run under ctest\n");
        return 1;
    }
    check_fixture("dit_torch_small"); /* hidden 64, 4 heads, 2 blocks, 8x8x4 latents, F32 */
    check_fixture("dit_torch_xl");    /* DiT-XL/2 widths (72-wide heads), 1 block, BF16 */
    return check_done("test_dit_torch");
}
