/* test_difftune.c — Diff-Tuning mechanics: timestep distributions, the batch split, labels,
 * loss weights and the data order. */
#include <string.h>

#include "check.h"
#include "difftune.h"
#include "spec.h"

#define T 1000
#define BUCKETS 10

/* Chi-square of bucket counts against the bucket masses of weight w(t). */
static double chi_square(const long *counts, long total, int bank_side, double power) {
    double mass[BUCKETS] = {0}, all = 0;
    for (int t = 0; t < T; t++) {
        double w = pow(bank_side ? (double)(T - t) : (double)(t + 1), power);
        mass[t * BUCKETS / T] += w;
        all += w;
    }
    double chi = 0;
    for (int k = 0; k < BUCKETS; k++) {
        double expect = total * mass[k] / all;
        chi += (counts[k] - expect) * (counts[k] - expect) / expect;
    }
    return chi;
}

static void make_dataset(dt_dataset *ds, int n, int classes) {
    memset(ds, 0, sizeof *ds);
    ds->n = n;
    ds->C = 1;
    ds->H = ds->W = 2;
    ds->num_classes = classes;
    ds->images = calloc((size_t)n * 4, 1);
    ds->labels = calloc((size_t)n, sizeof(int32_t));
    for (int i = 0; i < n; i++) {
        ds->labels[i] = i % classes;
        for (int p = 0; p < 4; p++) ds->images[i * 4 + p] = (uint8_t)(i * 10 + p);
    }
}

static void check_compose(double power) {
    dt_spec spec;
    spec_defaults(&spec);
    spec.method = DT_METHOD_DIFF_TUNING;
    spec.hp.batch_size = 10;
    spec.hp.seed = 42;
    spec.diff_tuning.power = power;
    spec.diff_tuning.replay_ratio = 0.2;
    spec.diff_tuning.replay_weight = 0.1;
    dt_dataset ds;
    make_dataset(&ds, 7, 3);
    dt_bank bank = {.n = 5, .C = 1, .H = 2, .W = 2, .images = calloc(20, 1)};
    for (int i = 0; i < 20; i++) bank.images[i] = 255;
    dt_tdist td;
    CHECK(difftune_tdist_init(&td, T, spec.method, power) == 0, "tdist");
    dt_batch_plan plan;
    difftune_plan(&plan, &spec, 1000);
    CHECK(plan.B_bank == 2 && plan.B_down == 8, "batch 10 at replay 0.2 = 8 downstream + 2 bank (%d + %d)",
          plan.B_down, plan.B_bank);
    dt_data_order order;
    data_order_init(&order, ds.n, spec.hp.seed);

    float x0[10 * 4], w[10];
    int32_t y[10], t[10];
    long down_counts[BUCKETS] = {0}, bank_counts[BUCKETS] = {0}, n_down = 0, n_bank = 0;
    int bank_label_ok = 1, bank_pixels_ok = 1, weights_ok = 1, dropped = 0, labels_ok = 1;
    const int steps = 3000;
    for (int s = 1; s <= steps; s++) {
        difftune_compose(&plan, &td, s, &ds, NULL, &order, &bank, x0, y, t, w);
        double wd = 0, wb = 0;
        for (int i = 0; i < 10; i++) {
            if (i < plan.B_down) {
                down_counts[t[i] * BUCKETS / T]++;
                n_down++;
                wd += w[i];
                if (y[i] == 1000) dropped++;
                else labels_ok &= y[i] >= 0 && y[i] < 3;
            } else {
                bank_counts[t[i] * BUCKETS / T]++;
                n_bank++;
                wb += w[i];
                bank_label_ok &= y[i] == 1000;
                for (int p = 0; p < 4; p++) bank_pixels_ok &= x0[i * 4 + p] == 1.0f;
            }
        }
        weights_ok &= fabs(wd - 1.0) < 1e-5 && fabs(wb - 0.1) < 1e-6;
    }
    CHECK(bank_label_ok, "bank samples always carry the null label");
    CHECK(bank_pixels_ok, "bank slots hold bank images");
    CHECK(weights_ok, "weights: downstream sum to 1, bank to replay_weight (loss = mean_d + 0.1 mean_b)");
    CHECK(labels_ok, "downstream labels are the dataset's classes");
    double drop_rate = (double)dropped / n_down;
    CHECK(fabs(drop_rate - 0.1) < 0.015, "label dropout rate %.4f ~ 0.1", drop_rate);
    /* 9 degrees of freedom: P(chi2 > 27.9) = 0.001. */
    double chi_d = chi_square(down_counts, n_down, 0, power);
    double chi_b = chi_square(bank_counts, n_bank, 1, power);
    CHECK(chi_d < 27.9, "s=%.1f downstream t ~ (t+1)^s: chi2 = %.2f", power, chi_d);
    CHECK(chi_b < 27.9, "s=%.1f bank t ~ (T-t)^s: chi2 = %.2f", power, chi_b);
    /* The test has teeth: the same draws are far from the uniform or the opposite law. */
    CHECK(chi_square(down_counts, n_down, 1, power) > 100, "downstream draws are not the bank law");
    CHECK(chi_square(down_counts, n_down, 0, 0.0) > 100, "downstream draws are not uniform");

    /* Composition is a pure function of the step: recomposing step 17 gives the same batch. */
    float x0b[40], wb2[10];
    int32_t yb[10], tb[10];
    difftune_compose(&plan, &td, 17, &ds, NULL, &order, &bank, x0, y, t, w);
    dt_data_order fresh;
    data_order_init(&fresh, ds.n, spec.hp.seed);
    difftune_compose(&plan, &td, 17, &ds, NULL, &fresh, &bank, x0b, yb, tb, wb2);
    CHECK(!memcmp(x0, x0b, sizeof x0) && !memcmp(y, yb, sizeof y) && !memcmp(t, tb, sizeof t),
          "batch of a step is reproducible from the step alone (resume)");
    data_order_free(&fresh);

    data_order_free(&order);
    difftune_tdist_free(&td);
    dataset_free(&ds);
    free(bank.images);
}

static void check_full_is_uniform(void) {
    dt_spec spec;
    spec_defaults(&spec);
    spec.method = DT_METHOD_FULL;
    spec.hp.batch_size = 16;
    dt_dataset ds;
    make_dataset(&ds, 5, 2);
    dt_tdist td;
    difftune_tdist_init(&td, T, spec.method, 1.0);
    dt_batch_plan plan;
    difftune_plan(&plan, &spec, 10);
    CHECK(plan.B_bank == 0 && plan.B_down == 16, "full fine-tuning uses no bank");
    dt_data_order order;
    data_order_init(&order, ds.n, 0);
    float x0[16 * 4], w[16];
    int32_t y[16], t[16];
    long counts[BUCKETS] = {0}, n = 0;
    for (int s = 1; s <= 1500; s++) {
        difftune_compose(&plan, &td, s, &ds, NULL, &order, NULL, x0, y, t, w);
        for (int i = 0; i < 16; i++) counts[t[i] * BUCKETS / T]++, n++;
    }
    CHECK(chi_square(counts, n, 0, 0.0) < 27.9, "full: t uniform (chi2 %.2f)", chi_square(counts, n, 0, 0.0));
    data_order_free(&order);
    difftune_tdist_free(&td);
    dataset_free(&ds);
}

static void check_data_order(void) {
    dt_data_order o;
    data_order_init(&o, 13, 5);
    for (int e = 0; e < 3; e++) {
        int seen[13] = {0};
        for (int i = 0; i < 13; i++) seen[data_order_index(&o, e * 13 + i)]++;
        int perm = 1;
        for (int i = 0; i < 13; i++) perm &= seen[i] == 1;
        CHECK(perm, "epoch %d visits every image exactly once", e);
    }
    int a[13], b[13];
    for (int i = 0; i < 13; i++) a[i] = data_order_index(&o, i), b[i] = data_order_index(&o, 13 + i);
    CHECK(memcmp(a, b, sizeof a) != 0, "epochs are shuffled differently");
    data_order_free(&o);
}

static void check_draw_t(void) {
    double cdf[4] = {0.1, 0.4, 0.4, 1.0}; /* t=2 has zero mass */
    CHECK(difftune_draw_t(cdf, 4, 0.0) == 0, "u=0 -> 0");
    CHECK(difftune_draw_t(cdf, 4, 0.1) == 1, "u=0.1 -> 1");
    CHECK(difftune_draw_t(cdf, 4, 0.4) == 3, "zero-mass t never drawn");
    CHECK(difftune_draw_t(cdf, 4, 0.999) == 3, "u near 1 -> last");
}

int main(void) {
    check_draw_t();
    check_data_order();
    check_compose(1.0);
    check_compose(0.5);
    check_full_is_uniform();
    return check_done("test_difftune");
}
