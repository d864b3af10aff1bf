/* test_peft.c — DiffFit, BitFit and LoRA on the CPU: the adapters' gradients against finite
 * differences, frozen tensors untouched by training, merges that reproduce the adapted model,
 * and PEFT jobs end to end through train_run (checkpoint contents, resume replay, merged export,
 * a PEFT checkpoint as the base of a new job, a changed base refused). */
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint.h"
#include "peft.h"
#include "rng.h"
#include "safetensors.h"
#include "train_util.h"

/* A small adapted model with random base weights and a perturbed trainable block (gammas away
 * from 1 and LoRA B away from 0, so every adapter gradient is non-trivial). */
typedef struct {
    dt_backend *be;
    dit_config c;
    dit_model m;
    dit_adapter ad;
    float *h_base, *h_train;  /* host copies */
    float *base, *train;      /* backend */
    size_t P, T;
} fixture;

static void fixture_init(fixture *f, const dt_peft_config *pc) {
    char err[256];
    memset(f, 0, sizeof *f);
    f->be = dt_backend_cpu_create();
    CHECK(dit_config_init(&f->c, 3, 16, 2, 2, 4, 3, 3, 1, err, sizeof err) == 0, "%s", err);
    CHECK(dit_model_init(&f->m, &f->c, f->be, err, sizeof err) == 0, "%s", err);
    CHECK(peft_adapter_init(&f->ad, &f->c, pc, err, sizeof err) == 0, "%s", err);
    f->P = f->m.num_floats;
    f->T = f->ad.num_floats;
    f->h_base = malloc(f->P * sizeof(float));
    f->h_train = malloc(f->T * sizeof(float));
    for (size_t i = 0; i < f->P; i++) f->h_base[i] = 0.3f * dt_philox_normal(5, 1, i);
    peft_init_host(&f->ad, &f->m, f->h_base, f->h_train, 3);
    for (int i = 0; i < f->ad.n; i++) {
        const peft_tensor *t = &f->ad.t[i];
        float *p = f->h_train + t->p.offset;
        for (size_t j = 0; j < t->p.numel; j++) {
            if (t->role == PEFT_ROLE_LORA_B) p[j] = 0.3f * dt_philox_normal(5, 2 + (uint64_t)i, j);
            else if (t->role != PEFT_ROLE_LORA_A) /* moved biases, table rows, gammas */
                p[j] += 0.3f * dt_philox_normal(5, 2 + (uint64_t)i, j);
        }
    }
    f->base = f->be->alloc(f->be, f->P * sizeof(float));
    f->train = f->be->alloc(f->be, f->T * sizeof(float));
    f->be->upload(f->be, f->base, f->h_base, f->P * sizeof(float));
    f->be->upload(f->be, f->train, f->h_train, f->T * sizeof(float));
    f->ad.base = f->base;
    f->m.ad = &f->ad;
}

static void fixture_free(fixture *f) {
    f->be->free(f->be, f->base);
    f->be->free(f->be, f->train);
    free(f->h_base);
    free(f->h_train);
    f->m.ad = NULL;
    dit_model_free(&f->m);
    peft_adapter_free(&f->ad);
    f->be->destroy(f->be);
}

/* Inputs and a random projection r of the output: L = sum(r * DiT(x, t, y)). */
typedef struct {
    int B;
    size_t n_in, n_out;
    float *x, *out, *dout;
    int32_t *t, *y;
    float *r;
} probe;

static void probe_init(probe *p, fixture *f) {
    dt_backend *be = f->be;
    p->B = 3;
    p->n_in = (size_t)p->B * f->c.in_channels * 16;
    p->n_out = (size_t)p->B * f->c.out_channels * 16;
    float *hx = malloc(p->n_in * sizeof(float));
    p->r = malloc(p->n_out * sizeof(float));
    for (size_t i = 0; i < p->n_in; i++) hx[i] = dt_philox_normal(9, 1, i);
    for (size_t i = 0; i < p->n_out; i++) p->r[i] = dt_philox_normal(9, 2, i);
    int32_t ht[3] = {3, 420, 998}, hy[3] = {0, 2, 3};
    p->x = be->alloc(be, p->n_in * sizeof(float));
    p->out = be->alloc(be, p->n_out * sizeof(float));
    p->dout = be->alloc(be, p->n_out * sizeof(float));
    p->t = be->alloc(be, sizeof ht);
    p->y = be->alloc(be, sizeof hy);
    be->upload(be, p->x, hx, p->n_in * sizeof(float));
    be->upload(be, p->t, ht, sizeof ht);
    be->upload(be, p->y, hy, sizeof hy);
    be->upload(be, p->dout, p->r, p->n_out * sizeof(float));
    free(hx);
}

static void probe_free(probe *p, dt_backend *be) {
    be->free(be, p->x); be->free(be, p->out); be->free(be, p->dout);
    be->free(be, p->t); be->free(be, p->y);
    free(p->r);
}

static double probe_loss(const dit_model *m, const float *params, dit_acts *a, probe *p) {
    dt_backend *be = m->be;
    dit_forward(m, params, a, p->x, p->t, p->y, p->B, p->out);
    float *host = malloc(p->n_out * sizeof(float));
    be->download(be, host, p->out, p->n_out * sizeof(float));
    double L = 0;
    for (size_t i = 0; i < p->n_out; i++) L += (double)p->r[i] * host[i];
    free(host);
    return L;
}

/* The adapter's gradients against central differences on entries of every trainable tensor;
 * frozen base bytes unchanged by forward and backward. */
static void check_gradients(const char *label, const dt_peft_config *pc) {
    fixture f;
    fixture_init(&f, pc);
    char err[256];
    dit_acts a;
    CHECK(dit_acts_alloc(&a, &f.m, 3, 1, err, sizeof err) == 0, "%s", err);
    probe p;
    probe_init(&p, &f);
    float *grads = f.be->alloc(f.be, f.T * sizeof(float));
    f.be->zero(f.be, grads, f.T * sizeof(float));
    probe_loss(&f.m, f.train, &a, &p);
    dit_backward(&f.m, f.train, grads, &a, p.dout, p.y, p.B);
    float *g = malloc(f.T * sizeof(float));
    f.be->download(f.be, g, grads, f.T * sizeof(float));

    int bad = 0, checked = 0, zero = 0;
    double dot = 0, na = 0, nn = 0;
    const float h = 3e-3f;
    for (int ti = 0; ti < f.ad.n; ti++) {
        const peft_tensor *t = &f.ad.t[ti];
        int per = t->p.numel < 4 ? (int)t->p.numel : 4;
        for (int k = 0; k < per; k++) {
            size_t idx = t->p.offset + dt_rng_below(13, (uint64_t)ti, (uint64_t)k, (uint32_t)t->p.numel);
            float keep = f.h_train[idx];
            f.h_train[idx] = keep + h;
            f.be->upload(f.be, f.train, f.h_train, f.T * sizeof(float));
            double lp = probe_loss(&f.m, f.train, &a, &p);
            f.h_train[idx] = keep - h;
            f.be->upload(f.be, f.train, f.h_train, f.T * sizeof(float));
            double lm = probe_loss(&f.m, f.train, &a, &p);
            f.h_train[idx] = keep;
            double num = (lp - lm) / (2.0 * h), ana = g[idx];
            double rel = fabs(num - ana) / fmax(fmax(fabs(num), fabs(ana)), 1e-1);
            if (rel > 3e-2) {
                bad++;
                fprintf(stderr, "  %s %s[%zu]: analytic %.6g numeric %.6g\n", label, t->p.name,
                        idx - t->p.offset, ana, num);
            }
            zero += ana == 0.0;
            dot += num * ana;
            na += ana * ana;
            nn += num * num;
            checked++;
        }
    }
    f.be->upload(f.be, f.train, f.h_train, f.T * sizeof(float));
    CHECK(bad == 0, "%s: %d of %d sampled adapter gradients disagree with finite differences",
          label, bad, checked);
    CHECK(dot / sqrt(na * nn + 1e-30) > 0.9999, "%s: cosine(analytic, numeric)", label);
    CHECK(zero < checked / 4, "%s: %d of %d sampled gradients are exactly zero", label, zero, checked);
    float *after = malloc(f.P * sizeof(float));
    f.be->download(f.be, after, f.base, f.P * sizeof(float));
    CHECK(memcmp(after, f.h_base, f.P * sizeof(float)) == 0, "%s: the passes leave the base alone", label);

    /* The replaced base tensors get the same gradient a plain model of the merged weights
     * gives them (the frozen path changes nothing upstream). */
    float *merged = malloc(f.P * sizeof(float));
    peft_merge_host(&f.ad, &f.m, f.h_base, f.h_train, merged);
    dit_model plain = f.m;
    plain.ad = NULL;
    dit_acts pa;
    CHECK(dit_acts_alloc(&pa, &plain, 3, 1, err, sizeof err) == 0, "%s", err);
    float *full = f.be->alloc(f.be, f.P * sizeof(float)), *fg = f.be->alloc(f.be, f.P * sizeof(float));
    f.be->upload(f.be, full, merged, f.P * sizeof(float));
    f.be->zero(f.be, fg, f.P * sizeof(float));
    probe_loss(&plain, full, &pa, &p);
    dit_backward(&plain, full, fg, &pa, p.dout, p.y, p.B);
    float *hfg = malloc(f.P * sizeof(float));
    f.be->download(f.be, hfg, fg, f.P * sizeof(float));
    double worst = 0;
    int compared = 0;
    for (int ti = 0; ti < f.ad.n; ti++) {
        const peft_tensor *t = &f.ad.t[ti];
        if (t->role != PEFT_ROLE_BASE) continue;
        /* a gamma-scaled layer's bias gradient differs by the gamma: compare only the rest */
        if (pc->kind == DT_PEFT_DIFFFIT && strstr(t->p.name, "blocks.") &&
            (strstr(t->p.name, "qkv.bias") || strstr(t->p.name, "proj.bias") ||
             strstr(t->p.name, "fc2.bias")) && atoi(t->p.name + 7) < f.ad.cfg.difffit_blocks)
            continue;
        const float *ga = g + t->p.offset, *gb = hfg + f.m.params[t->base_index].offset;
        double dd = 0, nb = 0;
        for (size_t j = 0; j < t->p.numel; j++) {
            dd += (ga[j] - gb[j]) * (double)(ga[j] - gb[j]);
            nb += (double)gb[j] * gb[j];
        }
        double tw = sqrt(dd / fmax(nb, 1e-30));
        if (tw > 1e-4) fprintf(stderr, "  %s %s: gradient differs from the plain model's by %.3g\n", label, t->p.name, tw);
        worst = fmax(worst, tw);
        compared++;
    }
    if (pc->kind != DT_PEFT_LORA) {
        CHECK(compared > 0, "%s: replaced tensors compared", label);
        CHECK(worst < 1e-4, "%s: replaced tensors' gradients match the plain model's (worst %.3g)",
              label, worst);
    }

    /* The merge reproduces the adapted model's output. */
    dit_acts ia;
    CHECK(dit_acts_alloc(&ia, &f.m, 3, 0, err, sizeof err) == 0, "%s", err);
    float *o_ad = malloc(p.n_out * sizeof(float)), *o_pl = malloc(p.n_out * sizeof(float));
    dit_forward(&f.m, f.train, &ia, p.x, p.t, p.y, p.B, p.out);
    f.be->download(f.be, o_ad, p.out, p.n_out * sizeof(float));
    dit_forward(&plain, full, &pa, p.x, p.t, p.y, p.B, p.out);
    f.be->download(f.be, o_pl, p.out, p.n_out * sizeof(float));
    double num = 0, den = 0, moved = 0;
    float *o_base = malloc(p.n_out * sizeof(float));
    f.be->upload(f.be, full, f.h_base, f.P * sizeof(float));
    dit_forward(&plain, full, &pa, p.x, p.t, p.y, p.B, p.out);
    f.be->download(f.be, o_base, p.out, p.n_out * sizeof(float));
    for (size_t i = 0; i < p.n_out; i++) {
        num += (o_ad[i] - o_pl[i]) * (double)(o_ad[i] - o_pl[i]);
        den += (double)o_ad[i] * o_ad[i];
        moved += fabs(o_ad[i] - o_base[i]);
    }
    CHECK(sqrt(num / den) < 1e-5, "%s: merged weights reproduce the adapted output (err %.3g)",
          label, sqrt(num / den));
    CHECK(moved > 1e-3, "%s: the adapter changes the output (so the merge test means something)", label);

    /* Training steps on the trainable block leave the frozen base bit-identical. */
    float *m1 = f.be->alloc(f.be, f.T * sizeof(float)), *v1 = f.be->alloc(f.be, f.T * sizeof(float));
    f.be->zero(f.be, m1, f.T * sizeof(float));
    f.be->zero(f.be, v1, f.T * sizeof(float));
    for (int step = 1; step <= 3; step++) {
        f.be->zero(f.be, grads, f.T * sizeof(float));
        probe_loss(&f.m, f.train, &a, &p);
        dit_backward(&f.m, f.train, grads, &a, p.dout, p.y, p.B);
        f.be->adamw_update(f.be, f.train, grads, m1, v1, f.T, 1e-2f, 0.9f, 0.999f, 1e-8f, 0.0f, step);
    }
    float *tr_after = malloc(f.T * sizeof(float));
    f.be->download(f.be, tr_after, f.train, f.T * sizeof(float));
    f.be->download(f.be, after, f.base, f.P * sizeof(float));
    CHECK(memcmp(after, f.h_base, f.P * sizeof(float)) == 0, "%s: base bit-identical after 3 steps", label);
    CHECK(memcmp(tr_after, f.h_train, f.T * sizeof(float)) != 0, "%s: the trainable block moved", label);

    free(tr_after); free(o_base); free(o_ad); free(o_pl); free(hfg); free(merged); free(after); free(g);
    f.be->free(f.be, m1); f.be->free(f.be, v1);
    f.be->free(f.be, full); f.be->free(f.be, fg); f.be->free(f.be, grads);
    dit_acts_free(&ia, &f.m);
    dit_acts_free(&pa, &plain);
    dit_acts_free(&a, &f.m);
    probe_free(&p, f.be);
    fixture_free(&f);
}

/* Tensor tables and counts: names of shared/reference/dit.md, DiffFit at XL/2's 14 blocks. */
static void check_tables(void) {
    char err[256];
    dit_config xl;
    CHECK(dit_config_init(&xl, 28, 1152, 16, 2, 32, 4, 1000, 1, err, sizeof err) == 0, "%s", err);
    dt_peft_config pc = {.kind = DT_PEFT_DIFFFIT};
    dit_adapter ad;
    CHECK(peft_adapter_init(&ad, &xl, &pc, err, sizeof err) == 0, "%s", err);
    CHECK(ad.cfg.difffit_blocks == 14, "DiffFit defaults to 14 blocks of XL/2's 28");
    const peft_tensor *t = peft_find(&ad, "blocks.13.attn.gamma1");
    CHECK(t && t->p.ndim == 1 && t->p.shape[0] == 3 * 1152, "blocks.13.attn.gamma1 is (3D)");
    CHECK(peft_find(&ad, "blocks.13.gamma2") && peft_find(&ad, "blocks.0.attn.gamma2"), "gamma names");
    CHECK(!peft_find(&ad, "blocks.14.gamma1"), "no gammas past block 13");
    CHECK(peft_find(&ad, "y_embedder.embedding_table.weight") && peft_find(&ad, "blocks.27.mlp.fc2.bias") &&
          !peft_find(&ad, "blocks.0.attn.qkv.weight"), "biases and label table train, weights do not");
    /* biases: 1152*(1+1+1) + 28*(3+1+4+1+6)*1152 + 32 + 2*1152; table 1001*1152; gammas 14*6*1152 */
    size_t biases = 1152 * 3 + (size_t)28 * 15 * 1152 + 32 + 2 * 1152, table = (size_t)1001 * 1152;
    CHECK(ad.num_floats == biases + table + (size_t)14 * 6 * 1152, "DiffFit XL/2 count %zu", ad.num_floats);
    peft_adapter_free(&ad);
    pc.kind = DT_PEFT_BITFIT;
    CHECK(peft_count(&xl, &pc) == biases + table, "BitFit XL/2 count");
    pc = (dt_peft_config){.kind = DT_PEFT_LORA, .rank = 8, .targets = DT_LORA_ALL};
    CHECK(peft_count(&xl, &pc) == (size_t)28 * 8 * 16 * 1152,
          "LoRA r8 XL/2 count %zu", peft_count(&xl, &pc));
    CHECK(peft_adapter_init(&ad, &xl, &pc, err, sizeof err) == 0 && ad.lora_scale == 1.0f, "alpha defaults to r");
    t = peft_find(&ad, "blocks.3.mlp.fc2.lora_A.weight");
    CHECK(t && t->p.shape[0] == 8 && t->p.shape[1] == 4608, "fc2 lora_A is (r, 4D)");
    t = peft_find(&ad, "blocks.3.attn.qkv.lora_B.weight");
    CHECK(t && t->p.shape[0] == 3456 && t->p.shape[1] == 8, "qkv lora_B is (3D, r)");
    peft_adapter_free(&ad);
    pc.kind = DT_PEFT_NONE;
    CHECK(peft_count(&xl, &pc) == dit_count_params(&xl), "no peft: every parameter");
    /* bad options */
    pc = (dt_peft_config){.kind = DT_PEFT_DIFFFIT, .difffit_blocks = 29};
    CHECK(peft_adapter_init(&ad, &xl, &pc, err, sizeof err) != 0 && strstr(err, "difffit_blocks"),
          "too many DiffFit blocks refused: %s", err);
    pc = (dt_peft_config){.kind = DT_PEFT_LORA, .rank = 2000, .targets = DT_LORA_ALL};
    CHECK(peft_adapter_init(&ad, &xl, &pc, err, sizeof err) != 0 && strstr(err, "rank"), "rank refused: %s", err);
    pc = (dt_peft_config){.kind = DT_PEFT_LORA, .rank = 4, .targets = 0};
    CHECK(peft_adapter_init(&ad, &xl, &pc, err, sizeof err) != 0 && strstr(err, "targets"), "no target refused");
    /* metadata round trip */
    pc = (dt_peft_config){.kind = DT_PEFT_LORA, .rank = 4, .alpha = 2, .targets = DT_LORA_QKV | DT_LORA_FC2};
    char *js = peft_config_json(&pc);
    dt_peft_config back;
    CHECK(js && peft_config_parse(js, &back, err, sizeof err) == 0 && back.kind == pc.kind &&
          back.rank == 4 && back.alpha == 2 && back.targets == pc.targets, "peft metadata round trip: %s", js);
    free(js);
}

/* ---- jobs through train_run ------------------------------------------------------------------ */

/* Reads tensor name of path into a new buffer (its element count in *n); NULL when absent. */
static float *read_tensor(const char *path, const char *name, size_t *n) {
    st_file f;
    char err[256];
    if (safetensors_open(&f, path, err, sizeof err)) return NULL;
    const st_tensor *t = safetensors_find(&f, name);
    float *buf = NULL;
    if (t) {
        *n = safetensors_numel(t);
        buf = malloc(*n * sizeof(float));
        if (safetensors_read_f32(&f, name, buf, *n, err, sizeof err)) { free(buf); buf = NULL; }
    }
    safetensors_close(&f);
    return buf;
}

static int same_tensor(const char *a, const char *b, const char *name) {
    size_t na = 0, nb = 0;
    float *x = read_tensor(a, name, &na), *y = read_tensor(b, name, &nb);
    int same = x && y && na == nb && !memcmp(x, y, na * sizeof(float));
    free(x);
    free(y);
    return same;
}

/* Which plain tensors of block-layer names stay bit-identical in a merged export. */
static int expect_frozen(dt_peft_kind kind, const char *name, int difffit_blocks, unsigned targets) {
    int bias = strstr(name, ".bias") != NULL, table = strstr(name, "embedding_table") != NULL;
    int blk = !strncmp(name, "blocks.", 7) ? atoi(name + 7) : -1;
    if (kind == DT_PEFT_BITFIT) return !bias && !table;
    if (kind == DT_PEFT_DIFFFIT) {
        if (bias || table) return 0;
        int folded = strstr(name, "qkv.weight") || strstr(name, "proj.weight") || strstr(name, "fc2.weight");
        return !(folded && blk >= 0 && blk < difffit_blocks);
    }
    static const char *const tn[] = {"attn.qkv.weight", "attn.proj.weight", "mlp.fc1.weight", "mlp.fc2.weight"};
    for (int t = 0; t < 4; t++)
        if ((targets & (1u << t)) && strstr(name, tn[t])) return 0;
    return 1;
}

static void check_jobs(void) {
    const char *root = check_tmpdir("peft");
    char dom_a[2048], dom_b[2048], base_out[2048], bank[2048], err[512];
    snprintf(dom_a, sizeof dom_a, "%s/solid", root);
    snprintf(dom_b, sizeof dom_b, "%s/outline", root);
    snprintf(base_out, sizeof base_out, "%s/base", root);
    snprintf(bank, sizeof bank, "%s/banks", root);
    CHECK(synth_write_folder(dom_a, "solid", 3, 8, 8, 1, err, sizeof err) == 0, "%s", err);
    CHECK(synth_write_folder(dom_b, "outline", 2, 8, 8, 2, err, sizeof err) == 0, "%s", err);
    dt_spec base;
    tu_tiny_spec(&base, dom_a, 8, 20, 8); /* long enough for the adaLN gates to open */
    base.model.depth = 3;
    base.hp.learning_rate = 5e-3;
    base.hp.ema_decay = 0;
    char *ev = NULL;
    CHECK(tu_run(&base, base_out, bank, 0, &ev) == TRAIN_OK, "pretraining the base model");
    free(ev);
    char base_ckpt[2300];
    snprintf(base_ckpt, sizeof base_ckpt, "%s/checkpoints/step_0000020.safetensors", base_out);

    static const struct { dt_peft_kind kind; dt_method method; unsigned targets; } runs[] = {
        {DT_PEFT_DIFFFIT, DT_METHOD_DIFF_TUNING, 0},
        {DT_PEFT_BITFIT, DT_METHOD_FULL, 0},
        {DT_PEFT_LORA, DT_METHOD_DIFF_TUNING, DT_LORA_QKV | DT_LORA_FC2},
    };
    for (size_t r = 0; r < sizeof runs / sizeof runs[0]; r++) {
        const char *name = spec_peft_name(runs[r].kind);
        dt_spec s;
        tu_tiny_spec(&s, dom_b, 8, 6, 8);
        s.method = runs[r].method;
        tu_set_str(s.base_model, sizeof s.base_model, base_ckpt);
        s.peft.kind = runs[r].kind;
        s.peft.rank = 2;
        s.peft.targets = runs[r].targets ? runs[r].targets : DT_LORA_ALL;
        s.peft.difffit_blocks = 2;
        s.diff_tuning.bank_size = 4;
        s.diff_tuning.bank_steps = 3;
        s.diff_tuning.replay_ratio = 0.25;
        s.checkpoint.every = 3;
        s.checkpoint.keep = 5;
        char run_a[2300], run_b[2300], ck_a[2400], ck_b[2400], merged[2400];
        snprintf(run_a, sizeof run_a, "%s/%s_a", root, name);
        snprintf(run_b, sizeof run_b, "%s/%s_b", root, name);
        CHECK(tu_run(&s, run_a, bank, 0, &ev) == TRAIN_OK, "%s: the job runs", name);
        json_t *pm = tu_find_event(ev, "metric", "parameters");
        json_int_t total = pm ? json_integer_value(json_object_get(pm, "total")) : 0;
        json_int_t trainable = pm ? json_integer_value(json_object_get(pm, "trainable")) : 0;
        CHECK(pm && trainable > 0 && trainable < total / 2, "%s: %lld of %lld parameters train", name,
              (long long)trainable, (long long)total);
        json_decref(pm);
        free(ev);
        snprintf(ck_a, sizeof ck_a, "%s/checkpoints/step_0000006.safetensors", run_a);
        snprintf(ck_b, sizeof ck_b, "%s/checkpoints/step_0000006.safetensors", run_b);

        /* The checkpoint holds only the trained tensors and the base's reference. */
        st_file f;
        CHECK(safetensors_open(&f, ck_a, err, sizeof err) == 0, "%s", err);
        CHECK(checkpoint_is_peft(&f), "%s: PEFT format", name);
        CHECK(!safetensors_find(&f, "blocks.0.attn.qkv.weight") && !safetensors_find(&f, "pos_embed"),
              "%s: no frozen tensor in the checkpoint", name);
        const char *want = runs[r].kind == DT_PEFT_DIFFFIT ? "blocks.1.attn.gamma1"
                           : runs[r].kind == DT_PEFT_BITFIT ? "train.blocks.2.mlp.fc1.bias"
                                                            : "blocks.2.mlp.fc2.lora_B.weight";
        CHECK(safetensors_find(&f, want) != NULL, "%s: has %s", name, want);
        CHECK(runs[r].kind != DT_PEFT_DIFFFIT || !safetensors_find(&f, "blocks.2.gamma1"),
              "difffit: gammas only in the first 2 blocks");
        const char *bm = safetensors_meta(&f, "base_model");
        CHECK(bm && bm[0] == '/' && strstr(bm, "step_0000020.safetensors"), "%s: base reference %s", name, bm ? bm : "-");
        safetensors_close(&f);
        struct stat sa, sb;
        CHECK(stat(ck_a, &sa) == 0 && stat(base_ckpt, &sb) == 0 && sa.st_size < sb.st_size / 2,
              "%s: checkpoint %lld bytes vs the base's %lld", name, (long long)sa.st_size, (long long)sb.st_size);

        /* Interrupted and resumed: the same checkpoint, byte for byte. */
        CHECK(tu_run(&s, run_b, bank, 2, &ev) == TRAIN_STOPPED, "%s: stops at step 2", name);
        free(ev);
        CHECK(tu_run(&s, run_b, bank, 0, &ev) == TRAIN_OK, "%s: resumes", name);
        free(ev);
        CHECK(tu_same_file(ck_a, ck_b), "%s: resumed run replays the uninterrupted one", name);

        /* The merged export: a plain DiT whose frozen tensors are the base's, bit for bit. */
        snprintf(merged, sizeof merged, "%s/%s_merged.safetensors", root, name);
        CHECK(checkpoint_export_merged(ck_a, merged, err, sizeof err) == 0, "%s: export: %s", name, err);
        CHECK(safetensors_open(&f, merged, err, sizeof err) == 0 && !checkpoint_is_peft(&f) &&
              safetensors_find(&f, "pos_embed"), "%s: the export is a plain DiT", name);
        safetensors_close(&f);
        dit_config c;
        CHECK(safetensors_open(&f, merged, err, sizeof err) == 0 &&
              checkpoint_read_config(&f, 0, 0, &c, err, sizeof err) == 0, "%s", err);
        safetensors_close(&f);
        dit_param *table = calloc(DIT_MAX_PARAMS, sizeof *table);
        size_t total_floats;
        int n = dit_param_table(&c, table, &total_floats), frozen_same = 1, trained_moved = 0;
        for (int i = 0; i < n; i++) {
            int same = same_tensor(base_ckpt, merged, table[i].name);
            if (expect_frozen(runs[r].kind, table[i].name, 2, s.peft.targets)) {
                if (!same) fprintf(stderr, "  %s: frozen %s changed\n", name, table[i].name);
                frozen_same &= same;
            } else {
                trained_moved += !same;
            }
        }
        CHECK(frozen_same, "%s: frozen tensors bit-identical after training", name);
        CHECK(trained_moved > 0, "%s: %d trained tensors moved", name, trained_moved);
        free(table);
    }

    /* A PEFT checkpoint as the base of a new job (it is merged into its own base). */
    char chained[2300], ck_lora[2400], copy[2400];
    snprintf(ck_lora, sizeof ck_lora, "%s/lora_a/checkpoints/step_0000006.safetensors", root);
    snprintf(chained, sizeof chained, "%s/chained", root);
    dt_spec s2;
    tu_tiny_spec(&s2, dom_b, 8, 2, 8);
    s2.method = DT_METHOD_FULL;
    tu_set_str(s2.base_model, sizeof s2.base_model, ck_lora);
    s2.peft.kind = DT_PEFT_BITFIT;
    CHECK(tu_run(&s2, chained, bank, 0, &ev) == TRAIN_OK, "a job on a PEFT checkpoint runs");
    free(ev);

    /* A base model that changed since is refused by name. */
    snprintf(copy, sizeof copy, "%s/base_copy.safetensors", root);
    CHECK(rename(base_ckpt, copy) == 0, "moving the base away");
    st_file f;
    dit_config c;
    CHECK(safetensors_open(&f, ck_lora, err, sizeof err) == 0 && checkpoint_read_config(&f, 0, 0, &c, err, sizeof err) == 0, "%s", err);
    dit_model m;
    memset(&m, 0, sizeof m);
    m.cfg = c;
    m.params = calloc(DIT_MAX_PARAMS, sizeof *m.params);
    m.n_params = dit_param_table(&c, m.params, &m.num_floats);
    float *host = malloc(m.num_floats * sizeof(float));
    CHECK(checkpoint_read_weights(&f, &m, "", host, err, sizeof err) != 0 && strstr(err, "base model"),
          "a missing base is named: %s", err);
    FILE *w = fopen(base_ckpt, "wb");
    fputs("not the base", w);
    fclose(w);
    CHECK(checkpoint_read_weights(&f, &m, "", host, err, sizeof err) != 0 && strstr(err, "sha256"),
          "a changed base is refused: %s", err);
    CHECK(rename(copy, base_ckpt) == 0, "restoring the base");
    CHECK(checkpoint_read_weights(&f, &m, "", host, err, sizeof err) == 0, "restored base reads: %s", err);
    safetensors_close(&f);
    free(host);
    free(m.params);
}

int main(void) {
    check_tables();
    dt_peft_config difffit = {.kind = DT_PEFT_DIFFFIT, .difffit_blocks = 2};
    dt_peft_config bitfit = {.kind = DT_PEFT_BITFIT};
    dt_peft_config lora = {.kind = DT_PEFT_LORA, .rank = 2, .alpha = 3, .targets = DT_LORA_ALL};
    dt_peft_config lora2 = {.kind = DT_PEFT_LORA, .rank = 3, .targets = DT_LORA_PROJ | DT_LORA_FC1};
    check_gradients("difffit", &difffit);
    check_gradients("bitfit", &bitfit);
    check_gradients("lora", &lora);
    check_gradients("lora(proj,fc1)", &lora2);
    check_jobs();
    return check_done("test_peft");
}
