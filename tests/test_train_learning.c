/* test_train_learning.c — pretraining a tiny DiT on a synthetic domain must learn: the loss
 * falls clearly, and samples of the trained model are measurably closer to the data than
 * samples of the untrained one.
 *
 * The distance is the Fréchet distance between Gaussian fits of 4x4-average-pooled images
 * (48 features): FID's construction with pixels as features. Pooling keeps the covariance
 * well estimated from a few hundred images while still seeing colour, brightness and layout —
 * exactly what separates noise from the shapes of the dataset. */
#include "checkpoint.h"
#include "dataset.h"
#include "diffusion.h"
#include "fid.h"
#include "sampler.h"
#include "train_util.h"

#define IMG 16
#define POOL 4
#define FEAT (3 * POOL * POOL)
#define NS 128

static void pool_features(const float *img, float *feat) {
    const int cell = IMG / POOL;
    for (int c = 0; c < 3; c++)
        for (int py = 0; py < POOL; py++)
            for (int px = 0; px < POOL; px++) {
                double acc = 0;
                for (int y = 0; y < cell; y++)
                    for (int x = 0; x < cell; x++)
                        acc += img[(c * IMG + py * cell + y) * IMG + px * cell + x];
                feat[(c * POOL + py) * POOL + px] = (float)(acc / (cell * cell));
            }
}

/* Fréchet distance of NS samples drawn with `weights` (host) against the data statistics. */
static double sample_distance(const dit_model *m, const float *weights, const dt_gauss_stats *data) {
    char err[256];
    dt_backend *be = m->be;
    dt_schedule sched;
    diffusion_schedule_init(&sched, 1000);
    dt_sampler smp;
    dt_sampler_opts so = {.steps = 50, .ddim = 1, .cfg = 1.0f, .clip_x0 = 1};
    CHECK(sampler_init(&smp, m, &sched, &so, 64, err, sizeof err) == 0, "%s", err);
    float *params = be->alloc(be, m->num_floats * sizeof(float));
    be->upload(be, params, weights, m->num_floats * sizeof(float));
    float *imgs = malloc(sizeof(float) * NS * 3 * IMG * IMG), *feats = malloc(sizeof(float) * NS * FEAT);
    int32_t labels[NS];
    for (int i = 0; i < NS; i++) labels[i] = i % m->cfg.num_classes;
    for (int c = 0; c < NS / 64; c++)
        CHECK(sampler_run(&smp, params, labels + 64 * c, 64, 99, (uint64_t)c,
                          imgs + (size_t)64 * c * 3 * IMG * IMG, NULL) == 0, "sampling");
    for (int i = 0; i < NS; i++) pool_features(imgs + (size_t)i * 3 * IMG * IMG, feats + i * FEAT);
    dt_gauss_stats st;
    fid_stats_compute(&st, feats, NS, FEAT);
    double d = fid_frechet_distance(&st, data);
    fid_stats_free(&st);
    free(imgs);
    free(feats);
    be->free(be, params);
    sampler_free(&smp);
    diffusion_schedule_free(&sched);
    return d;
}

int main(void) {
    const char *root = check_tmpdir("train_learning");
    char data[1100], out[1100], ckdir[1200], err[512];
    snprintf(data, sizeof data, "%s/solid", root);
    snprintf(out, sizeof out, "%s/run", root);
    snprintf(ckdir, sizeof ckdir, "%s/checkpoints", out);
    CHECK(synth_write_folder(data, "solid", 4, 64, IMG, 3, err, sizeof err) == 0, "%s", err);

    const int steps = 400;
    dt_spec s;
    tu_tiny_spec(&s, data, IMG, steps, 32);
    s.model.depth = 3;
    s.model.hidden_size = 64;
    s.model.num_heads = 4;
    s.hp.learning_rate = 1e-3;
    s.hp.ema_decay = 0.99;
    char *ev = NULL;
    CHECK(tu_run(&s, out, NULL, 0, &ev) == TRAIN_OK, "pretraining runs");
    static double loss[401];
    CHECK(tu_losses(ev, loss, steps) == steps, "a loss for every step");
    free(ev);
    double first = 0, last = 0;
    for (int i = 1; i <= 20; i++) first += loss[i] / 20;
    for (int i = steps - 19; i <= steps; i++) last += loss[i] / 20;
    printf("loss: first 20 steps %.4f, last 20 steps %.4f\n", first, last);
    CHECK(last < 0.5 * first, "loss falls clearly: %.4f -> %.4f", first, last);

    /* Data statistics over the same features. */
    dt_dataset ds;
    CHECK(dataset_load(&ds, data, IMG, 3, err, sizeof err) == 0, "%s", err);
    float *img = malloc(sizeof(float) * 3 * IMG * IMG), *feats = malloc(sizeof(float) * ds.n * FEAT);
    for (int i = 0; i < ds.n; i++) {
        dataset_image_to_float(&ds, i, 0, img);
        pool_features(img, feats + (size_t)i * FEAT);
    }
    dt_gauss_stats data_st;
    fid_stats_compute(&data_st, feats, ds.n, FEAT);

    /* Untrained (step-0) weights versus the trained EMA. */
    dt_backend *be = dt_backend_cpu_create();
    dit_config c;
    dit_config_init(&c, 3, 64, 4, 2, IMG, 3, 4, 1, err, sizeof err);
    dit_model m;
    CHECK(dit_model_init(&m, &c, be, err, sizeof err) == 0, "%s", err);
    float *w0 = malloc(m.num_floats * sizeof(float)), *w1 = malloc(m.num_floats * sizeof(float));
    dit_init_host(&m, w0, s.hp.seed);
    dt_train_state st = {.ema = w1};
    CHECK(checkpoint_load(ckdir, steps, &m, &st, err, sizeof err) == 0, "%s", err);
    double d0 = sample_distance(&m, w0, &data_st), d1 = sample_distance(&m, w1, &data_st);
    printf("Frechet distance to the data (pooled pixels): step 0 %.3f, step %d %.3f\n", d0, steps, d1);
    CHECK(d1 < 0.5 * d0, "samples moved towards the data: %.3f -> %.3f", d0, d1);

    /* The distance itself: zero for identical statistics, positive for shifted ones. */
    CHECK(fabs(fid_frechet_distance(&data_st, &data_st)) < 1e-6, "distance to itself is 0");
    fid_stats_free(&data_st);
    free(w0); free(w1); free(img); free(feats);
    dit_model_free(&m);
    be->destroy(be);
    dataset_free(&ds);
    return check_done("test_train_learning");
}
