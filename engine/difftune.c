/* difftune.c — timestep distributions and batch composition for pretrain/full/diff_tuning. */
#include "difftune.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"

/* cdf[t] = sum_{u<=t} w(u) / sum w, with w from the exponent on base(t). */
static void tdist_fill(double *cdf, int T, double power, int bank_side) {
    double total = 0.0;
    for (int t = 0; t < T; t++) {
        double base = bank_side ? (double)(T - t) : (double)(t + 1);
        total += pow(base, power);
        cdf[t] = total;
    }
    for (int t = 0; t < T; t++) cdf[t] /= total;
    cdf[T - 1] = 1.0;
}

int difftune_tdist_init(dt_tdist *d, int T, dt_method method, double power) {
    d->T = T;
    d->down = malloc(sizeof(double) * T);
    d->bank = malloc(sizeof(double) * T);
    if (!d->down || !d->bank) {
        difftune_tdist_free(d);
        return -1;
    }
    /* Standard fine-tuning and pretraining draw t uniformly: power 0. */
    tdist_fill(d->down, T, method == DT_METHOD_DIFF_TUNING ? power : 0.0, 0);
    tdist_fill(d->bank, T, power, 1);
    return 0;
}

void difftune_tdist_free(dt_tdist *d) {
    free(d->down);
    free(d->bank);
    d->down = d->bank = NULL;
}

int difftune_draw_t(const double *cdf, int T, double u) {
    int lo = 0, hi = T - 1;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (cdf[mid] > u) hi = mid;
        else lo = mid + 1;
    }
    return lo;
}

int data_order_init(dt_data_order *o, int n, uint64_t seed) {
    o->n = n;
    o->epoch = -1;
    o->seed = seed;
    o->perm = malloc(sizeof(int32_t) * (size_t)n);
    return o->perm ? 0 : -1;
}

void data_order_free(dt_data_order *o) {
    free(o->perm);
    o->perm = NULL;
}

int data_order_index(dt_data_order *o, int64_t k) {
    int64_t epoch = k / o->n;
    if (epoch != o->epoch) {
        /* Fisher-Yates with draws keyed by (epoch, position). */
        for (int i = 0; i < o->n; i++) o->perm[i] = i;
        for (int i = o->n - 1; i > 0; i--) {
            int j = (int)dt_rng_below(o->seed, DT_STREAM_DATA_PERM + (uint64_t)epoch, (uint64_t)i,
                                      (uint32_t)(i + 1));
            int32_t tmp = o->perm[i];
            o->perm[i] = o->perm[j];
            o->perm[j] = tmp;
        }
        o->epoch = epoch;
    }
    return o->perm[k % o->n];
}

void difftune_plan(dt_batch_plan *p, const dt_spec *spec, int num_classes) {
    memset(p, 0, sizeof *p);
    p->B = spec->hp.batch_size;
    p->B_bank = spec->method == DT_METHOD_DIFF_TUNING
                    ? (int)floor(spec->hp.batch_size * spec->diff_tuning.replay_ratio) : 0;
    p->B_down = p->B - p->B_bank;
    p->null_label = num_classes;
    p->class_dropout = spec->hp.class_dropout;
    p->replay_weight = spec->diff_tuning.replay_weight;
    p->seed = spec->hp.seed;
}

void difftune_compose(const dt_batch_plan *p, const dt_tdist *td, int64_t step,
                      const dt_dataset *ds, const dt_latents *lat, dt_data_order *order,
                      const dt_bank *bank, float *x0, int32_t *labels, int32_t *t, float *weight) {
    const size_t img = lat ? (size_t)lat->C * lat->h * lat->w : (size_t)ds->C * ds->H * ds->W;
    const uint64_t slot0 = (uint64_t)(step - 1) * (uint64_t)p->B;
    for (int i = 0; i < p->B; i++) {
        const uint64_t slot = slot0 + (uint64_t)i;
        const int flip = (dt_philox_words(p->seed, DT_STREAM_FLIP, slot).v[0] >> 31) & 1;
        const double u = dt_rng_double(p->seed, DT_STREAM_TIMESTEP, slot);
        if (i < p->B_down) {
            int idx = data_order_index(order, (step - 1) * (int64_t)p->B_down + i);
            if (lat) latents_draw(lat, idx, flip, p->seed, slot, x0 + i * img);
            else dataset_image_to_float(ds, idx, flip, x0 + i * img);
            int drop = dt_rng_double(p->seed, DT_STREAM_DROPOUT, slot) < p->class_dropout;
            labels[i] = drop ? p->null_label : lat ? lat->labels[idx] : ds->labels[idx];
            t[i] = difftune_draw_t(td->down, td->T, u);
            weight[i] = 1.0f / (float)p->B_down;
        } else {
            uint32_t idx = dt_rng_below(p->seed, DT_STREAM_BANK_PICK, slot, (uint32_t)bank->n);
            /* A latent is not flipped: a mirrored latent is not the latent of the mirrored image */
            if (bank->latents) memcpy(x0 + i * img, bank->latents + idx * img, img * sizeof(float));
            else dataset_u8_to_float(bank->images + idx * img, bank->C, bank->H, bank->W, flip, x0 + i * img);
            labels[i] = p->null_label; /* retention trains the unconditional branch only */
            t[i] = difftune_draw_t(td->bank, td->T, u);
            weight[i] = (float)(p->replay_weight / p->B_bank);
        }
    }
}
