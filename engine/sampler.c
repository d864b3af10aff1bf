/* sampler.c — the reverse diffusion loop over the op table. */
#include "sampler.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"

int sampler_init(dt_sampler *s, const dit_model *m, const dt_schedule *base,
                 const dt_sampler_opts *opts, int max_batch, char *err, size_t errlen) {
    memset(s, 0, sizeof *s);
    s->m = m;
    s->opts = *opts;
    s->max_batch = max_batch;
    if (opts->steps < 1 || opts->steps > base->T) {
        snprintf(err, errlen, "sampling steps must be 1..%d (got %d)", base->T, opts->steps);
        return -1;
    }
    if (diffusion_schedule_respace(&s->chain, base, opts->steps)) {
        snprintf(err, errlen, "out of memory for the sampling schedule");
        return -1;
    }
    if (dit_acts_alloc(&s->acts, m, 2 * max_batch, 0, err, errlen)) {
        sampler_free(s);
        return -1;
    }
    dt_backend *be = m->be;
    const dit_config *c = &m->cfg;
    size_t img = (size_t)c->in_channels * c->image_size * c->image_size;
    size_t oimg = (size_t)c->out_channels * c->image_size * c->image_size;
    s->x = be->alloc(be, sizeof(float) * max_batch * img);
    s->xin = be->alloc(be, sizeof(float) * 2 * max_batch * img);
    s->model_out = be->alloc(be, sizeof(float) * 2 * max_batch * oimg);
    s->guided = be->alloc(be, sizeof(float) * max_batch * oimg);
    s->noise = be->alloc(be, sizeof(float) * max_batch * img);
    s->t_dev = be->alloc(be, sizeof(int32_t) * 2 * max_batch);
    s->y_dev = be->alloc(be, sizeof(int32_t) * 2 * max_batch);
    s->y_null_dev = be->alloc(be, sizeof(int32_t) * 2 * max_batch);
    s->host_i32 = malloc(sizeof(int32_t) * 2 * max_batch);
    if (!s->x || !s->xin || !s->model_out || !s->guided || !s->noise || !s->t_dev || !s->y_dev ||
        !s->y_null_dev || !s->host_i32) {
        sampler_free(s);
        snprintf(err, errlen, "out of memory for sampling buffers (batch %d)", max_batch);
        return -1;
    }
    for (int i = 0; i < 2 * max_batch; i++) s->host_i32[i] = c->num_classes;
    be->upload(be, s->y_null_dev, s->host_i32, sizeof(int32_t) * 2 * max_batch);
    return 0;
}

void sampler_free(dt_sampler *s) {
    if (!s->m) return;
    dt_backend *be = s->m->be;
    void *bufs[] = {s->x, s->xin, s->model_out, s->guided, s->noise, s->t_dev, s->y_dev,
                    s->y_null_dev};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        if (bufs[i]) be->free(be, bufs[i]);
    if (s->acts.block) dit_acts_free(&s->acts, s->m);
    diffusion_schedule_free(&s->chain);
    free(s->host_i32);
    memset(s, 0, sizeof *s);
}

int sampler_run(dt_sampler *s, const float *params, const int32_t *labels, int B,
                uint64_t seed, uint64_t chunk, float *host_out, volatile int *stop) {
    return sampler_run_hybrid(s, params, params, 0, 0, labels, B, seed, chunk, host_out, stop);
}

int sampler_run_hybrid(dt_sampler *s, const float *params_noise, const float *params_data,
                       int switch_t, int data_unconditional, const int32_t *labels, int B,
                       uint64_t seed, uint64_t chunk, float *host_out, volatile int *stop) {
    const dit_model *m = s->m;
    dt_backend *be = m->be;
    const dit_config *c = &m->cfg;
    const int C = c->in_channels, HW = c->image_size * c->image_size;
    const size_t img = (size_t)C * HW;
    const uint64_t stream = DT_STREAM_SAMPLE + (chunk << 16);

    /* Labels: [y; null] under guidance. */
    const int guided_noise = s->opts.cfg != 1.0f;
    for (int i = 0; i < B; i++) {
        s->host_i32[i] = labels[i];
        if (guided_noise) s->host_i32[B + i] = c->num_classes;
    }
    be->upload(be, s->y_dev, s->host_i32, sizeof(int32_t) * (guided_noise ? 2 * B : B));
    be->randn(be, s->x, (size_t)B * img, seed, stream + 0xFFFF);

    for (int i = s->chain.T - 1; i >= 0; i--) {
        if (stop && *stop) return 1;
        const int t = s->chain.timestep_map[i];
        const int data_part = t < switch_t;
        const float *params = data_part ? params_data : params_noise;
        const int32_t *y = data_part && data_unconditional ? s->y_null_dev : s->y_dev;
        /* Guidance mixes conditional and unconditional outputs; with only null labels it would
         * mix two identical outputs, so the unconditional part runs unguided. */
        const int guided = guided_noise && !(data_part && data_unconditional);
        const int MB = guided ? 2 * B : B; /* model batch */
        for (int j = 0; j < MB; j++) s->host_i32[j] = t;
        be->upload(be, s->t_dev, s->host_i32, sizeof(int32_t) * MB);
        be->copy(be, s->xin, s->x, sizeof(float) * B * img);
        if (guided) be->copy(be, s->xin + B * img, s->x, sizeof(float) * B * img);
        dit_forward(m, params, &s->acts, s->xin, s->t_dev, y, MB, s->model_out);
        const float *out = s->model_out;
        if (guided) {
            be->cfg_combine(be, s->guided, s->model_out, s->opts.cfg, B, C, c->out_channels, HW);
            out = s->guided;
        }
        dt_step_coefs k = diffusion_step_coefs(&s->chain, i, s->opts.ddim ? s->opts.eta : 0.0);
        k.clip_x0 = s->opts.clip_x0;
        int needs_noise = k.add_noise && (!s->opts.ddim || k.ddim_sigma > 0.0f);
        if (needs_noise) be->randn(be, s->noise, (size_t)B * img, seed, stream + (uint64_t)i);
        if (s->opts.ddim)
            be->ddim_step(be, s->x, out, s->noise, &k, B, C, HW, c->learn_sigma);
        else
            be->ddpm_step(be, s->x, out, s->noise, &k, B, C, HW, c->learn_sigma);
    }
    be->download(be, host_out, s->x, sizeof(float) * B * img);
    return be->sync(be);
}
