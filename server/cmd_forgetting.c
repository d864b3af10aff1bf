/* cmd_forgetting.c — `difftune forgetting-curve`: how much of the base model a fine-tuned
 * checkpoint keeps along the denoising chain (engine/forgetting.h), as JSON events. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "diffusion.h"
#include "events.h"
#include "forgetting.h"

static volatile int forgetting_stop_flag;

static void forgetting_on_signal(int sig) {
    (void)sig;
    forgetting_stop_flag = 1;
}

static void forgetting_usage(FILE *f) {
    fprintf(f,
        "usage: difftune forgetting-curve --base FILE --checkpoint FILE --dataset DIR [options]\n\n"
        "Measures what a fine-tuned checkpoint kept of its base model, on held-out target data,\n"
        "and prints one JSON event per line (progress, metric, log, status):\n"
        "  forgetting_loss    the training loss of each model per timestep bucket (both\n"
        "                     unconditional, same images, timesteps and noise)\n"
        "  forgetting_hybrid  per switch timestep k: the fine-tuned model denoises from T down to\n"
        "                     k, the base model (unconditional) finishes; the Fréchet distance of\n"
        "                     those samples to the data (fid, or fd_classifier with a classifier)\n\n"
        "options:\n"
        "  --buckets N           timestep buckets of the loss curve (default 10)\n"
        "  --loss-images N       held-out images per bucket and model (default 256)\n"
        "  --switch-points P     switch timesteps 0, T/(P-1), ..., T; 0 skips the hybrid curve\n"
        "                        (default 11)\n"
        "  --samples N           images per switch point, >= 2 (default 1000)\n"
        "  --inception-weights F FID Inception weights (default $DIFFTUNE_INCEPTION_WEIGHTS);\n"
        "                        without them the hybrid curve is reported unavailable\n"
        "  --extractor X         inception (default) | classifier:FILE\n"
        "  --sampler KIND        ddim | ddpm (default ddim)\n"
        "  --steps S             sampler steps, 1..1000 (default 50)\n"
        "  --cfg S               guidance of the fine-tuned part, >= 1 (default 1.5)\n"
        "  --eval-cache DIR      reference-statistics cache (default $DIFFTUNE_EVAL_CACHE, else\n"
        "                        $HOME/.cache/difftune/eval)\n"
        "  --device DEV          cpu | auto | cuda:N (default auto)\n"
        "  --precision P         auto | bf16 | fp32 (default auto)\n"
        "  --seed N              timesteps and noise of the loss curve (default 0)\n"
        "  --format F            json (default) | text\n\n"
        "exit status: 0 done, 1 failed, 2 bad usage or rejected input, 3 stopped (SIGINT/SIGTERM)\n");
}

int cmd_forgetting(int argc, char **argv) {
    dt_forgetting_opts o;
    forgetting_opts_defaults(&o);
    const char *env_w = getenv("DIFFTUNE_INCEPTION_WEIGHTS"), *env_c = getenv("DIFFTUNE_EVAL_CACHE");
    const char *weights = env_w && env_w[0] ? env_w : NULL, *extractor = "inception";
    o.eval_cache_dir = env_c && env_c[0] ? env_c : NULL;
    char home_cache[4096];
    int text_mode = 0;
    long buckets = o.buckets, loss_images = o.loss_images, points = o.switch_points,
         samples = o.samples, steps = o.steps;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { forgetting_usage(stdout); return 0; }
        if (!v) { fprintf(stderr, "difftune forgetting-curve: %s needs a value (see --help)\n", a); return 2; }
        i++;
        int bad = 0;
        if (!strcmp(a, "--base")) o.base_path = v;
        else if (!strcmp(a, "--checkpoint")) o.finetuned_path = v;
        else if (!strcmp(a, "--dataset")) o.dataset_path = v;
        else if (!strcmp(a, "--inception-weights")) weights = v;
        else if (!strcmp(a, "--extractor")) {
            extractor = v;
            bad = strcmp(v, "inception") && (strncmp(v, "classifier:", 11) || !v[11]);
        } else if (!strcmp(a, "--eval-cache")) o.eval_cache_dir = v;
        else if (!strcmp(a, "--device")) o.device = v;
        else if (!strcmp(a, "--precision")) {
            o.precision = v;
            bad = dt_precision_parse(v, NULL, &(dt_precision){0});
        } else if (!strcmp(a, "--buckets")) bad = cli_parse_int(v, 1, FORGETTING_MAX_BUCKETS, &buckets);
        else if (!strcmp(a, "--loss-images")) bad = cli_parse_int(v, 1, 1000000, &loss_images);
        else if (!strcmp(a, "--switch-points")) bad = cli_parse_int(v, 0, 1001, &points) || points == 1;
        else if (!strcmp(a, "--samples")) bad = cli_parse_int(v, 2, 10000000, &samples);
        else if (!strcmp(a, "--steps")) bad = cli_parse_int(v, 1, DT_DIFFUSION_T, &steps);
        else if (!strcmp(a, "--cfg")) bad = cli_parse_double(v, &o.cfg) || !(o.cfg >= 1.0 && o.cfg <= 100.0);
        else if (!strcmp(a, "--seed")) bad = cli_parse_u64(v, &o.seed);
        else if (!strcmp(a, "--sampler")) {
            bad = strcmp(v, "ddim") && strcmp(v, "ddpm");
            o.ddim = !strcmp(v, "ddim");
        } else if (!strcmp(a, "--format")) {
            bad = strcmp(v, "json") && strcmp(v, "text");
            text_mode = !strcmp(v, "text");
        } else {
            fprintf(stderr, "difftune forgetting-curve: unknown option %s (see --help)\n", a);
            return 2;
        }
        if (bad) {
            fprintf(stderr, "difftune forgetting-curve: bad value for %s: '%s' (see --help)\n", a, v);
            return 2;
        }
    }
    if (!o.base_path || !o.finetuned_path || !o.dataset_path) {
        fprintf(stderr, "difftune forgetting-curve: --base, --checkpoint and --dataset are required "
                        "(see --help)\n");
        return 2;
    }
    o.buckets = (int)buckets;
    o.loss_images = (int)loss_images;
    o.switch_points = (int)points;
    o.samples = (int)samples;
    o.steps = (int)steps;
    if (!strncmp(extractor, "classifier:", 11)) {
        o.extractor_kind = "classifier";
        o.extractor_path = extractor + 11;
        o.extractor_label = extractor;
    } else {
        o.extractor_path = weights;
    }
    if (!o.eval_cache_dir) {
        const char *home = getenv("HOME");
        snprintf(home_cache, sizeof home_cache, "%s/.cache/difftune/eval", home ? home : ".");
        o.eval_cache_dir = home_cache;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = forgetting_on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    dt_events ev = {.out = stdout, .text = text_mode};
    o.events = &ev;
    o.stop = &forgetting_stop_flag;
    char err[1024] = "";
    switch (forgetting_run(&o, err, sizeof err)) {
    case FORGETTING_OK: return 0;
    case FORGETTING_STOPPED: return 3;
    case FORGETTING_INVALID: fprintf(stderr, "difftune forgetting-curve: %s\n", err); return 2;
    default: fprintf(stderr, "difftune forgetting-curve: %s\n", err); return 1;
    }
}
