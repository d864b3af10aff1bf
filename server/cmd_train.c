/* cmd_train.c — `difftune train --spec SPEC.json --out DIR`. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "cli.h"
#include "events.h"
#include "spec.h"
#include "train.h"

static volatile int train_stop_flag;

static void train_on_signal(int sig) {
    (void)sig;
    train_stop_flag = 1;
}

static void train_usage(FILE *f) {
    fprintf(f,
        "usage: difftune train --spec SPEC.json --out DIR [options]\n\n"
        "Trains a DiT as the job spec says (DESIGN.md section 3; base_model, vae and dataset are\n"
        "paths): method \"pretrain\" (from scratch), \"full\" (standard fine-tuning) or\n"
        "\"diff_tuning\". With \"vae\" (a latent DiT) the dataset is encoded once into the latent\n"
        "cache and sample grids are decoded to images.\n"
        "Writes DIR/checkpoints/step_N.safetensors (+ .state.safetensors) and DIR/samples/step_N.png\n"
        "and prints one JSON event per line on stdout (status, progress, sample, checkpoint, metric,\n"
        "log, error). Run again with the same DIR to resume from the newest complete checkpoint.\n"
        "SIGTERM or SIGINT stops at the next step boundary after writing a checkpoint.\n\n"
        "options:\n"
        "  --spec FILE        job spec JSON (required)\n"
        "  --out DIR          output directory (required; created)\n"
        "  --bank-dir DIR     knowledge-bank cache (default $DIFFTUNE_BANK_DIR, else\n"
        "                     $HOME/.cache/difftune/banks)\n"
        "  --latent-dir DIR   cache of datasets encoded by the spec's \"vae\" (a latent DiT; default\n"
        "                     $DIFFTUNE_LATENT_DIR, else $HOME/.cache/difftune/latents)\n"
        "  --input-size N     the base model's input size (latent cells or pixels per side), for a\n"
        "                     file that does not state it: diffusers' DiT layout (32 for\n"
        "                     DiT-XL-2-256); a file that does state it must agree\n"
        "  --heads H          the base model's attention heads, for a file without metadata whose\n"
        "                     hidden size matches no preset\n"
        "  --inception-weights FILE\n"
        "                     FID Inception weights (pytorch-fid's state dict as safetensors; see\n"
        "                     README: Evaluation) for eval.fid_every (default\n"
        "                     $DIFFTUNE_INCEPTION_WEIGHTS; without them FID is reported unavailable)\n"
        "  --eval-cache DIR   reference-statistics cache (default $DIFFTUNE_EVAL_CACHE, else\n"
        "                     $HOME/.cache/difftune/eval)\n"
        "  --device DEV       cpu | auto | cuda:N (default: the spec's \"device\")\n"
        "  --precision P      auto | bf16 | fp32: matrix-product inputs on a GPU (default: the\n"
        "                     spec's hyperparameters.precision; the CPU always runs fp32)\n"
        "  --log-every N      steps between progress events (default 10)\n"
        "  --min-free-mb N    MiB that must stay free on DIR's file system after a checkpoint is\n"
        "                     written, else training stops with error disk_full (default 1024)\n"
        "  --stop-after N     stop (as if signalled) once step N is done\n"
        "  --grid N           images per sample grid (default 16)\n"
        "  --format F         json (default: one JSON event per line) | text (for people)\n"
        "  --quiet            leave out \"log\" events\n\n"
        "exit status: 0 done, 1 failed while training, 2 bad usage or rejected input,\n"
        "             3 stopped on request (a checkpoint was written; run again to resume)\n");
}

int cmd_train(int argc, char **argv) {
    const char *spec_path = NULL, *out = NULL, *bank_dir = getenv("DIFFTUNE_BANK_DIR"), *device = NULL,
               *latent_dir = getenv("DIFFTUNE_LATENT_DIR"),
               *precision = NULL, *inception = getenv("DIFFTUNE_INCEPTION_WEIGHTS"),
               *eval_cache = getenv("DIFFTUNE_EVAL_CACHE");
    long log_every = 10, stop_after = 0, grid = 16, min_free_mb = DT_MIN_FREE_MB_DEFAULT;
    long input_size = 0, heads = 0;
    int quiet = 0, text_mode = 0;
    char home_bank[4096], home_eval[4096], home_latents[4096];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { train_usage(stdout); return 0; }
        if (!strcmp(a, "--quiet")) { quiet = 1; continue; }
        if (!v) { fprintf(stderr, "difftune train: %s needs a value (see --help)\n", a); return 2; }
        i++;
        if (!strcmp(a, "--spec")) spec_path = v;
        else if (!strcmp(a, "--out")) out = v;
        else if (!strcmp(a, "--bank-dir")) bank_dir = v;
        else if (!strcmp(a, "--latent-dir")) latent_dir = v;
        else if (!strcmp(a, "--inception-weights")) inception = v;
        else if (!strcmp(a, "--eval-cache")) eval_cache = v;
        else if (!strcmp(a, "--device")) device = v;
        else if (!strcmp(a, "--precision")) {
            if (dt_precision_parse(v, NULL, &(dt_precision){0})) { fprintf(stderr, "difftune train: --precision must be auto, bf16 or fp32\n"); return 2; }
            precision = v;
        }
        else if (!strcmp(a, "--format")) {
            if (strcmp(v, "json") && strcmp(v, "text")) { fprintf(stderr, "difftune train: --format must be json or text\n"); return 2; }
            text_mode = !strcmp(v, "text");
        }
        else if (!strcmp(a, "--min-free-mb")) {
            if (cli_parse_int(v, 0, DT_MIN_FREE_MB_MAX, &min_free_mb)) { fprintf(stderr, "difftune train: --min-free-mb must be 0..%ld\n", (long)DT_MIN_FREE_MB_MAX); return 2; }
        }
        else if (!strcmp(a, "--log-every")) {
            if (cli_parse_int(v, 1, 1000000000, &log_every)) { fprintf(stderr, "difftune train: --log-every must be a positive integer\n"); return 2; }
        } else if (!strcmp(a, "--stop-after")) {
            if (cli_parse_int(v, 1, 1000000000, &stop_after)) { fprintf(stderr, "difftune train: --stop-after must be a positive integer\n"); return 2; }
        } else if (!strcmp(a, "--input-size")) {
            if (cli_parse_int(v, 1, 4096, &input_size)) { fprintf(stderr, "difftune train: --input-size must be 1..4096\n"); return 2; }
        } else if (!strcmp(a, "--heads")) {
            if (cli_parse_int(v, 1, 1024, &heads)) { fprintf(stderr, "difftune train: --heads must be 1..1024\n"); return 2; }
        } else if (!strcmp(a, "--grid")) {
            if (cli_parse_int(v, 1, 256, &grid)) { fprintf(stderr, "difftune train: --grid must be 1..256\n"); return 2; }
        } else {
            fprintf(stderr, "difftune train: unknown option %s (see --help)\n", a);
            return 2;
        }
    }
    if (!spec_path || !out) {
        fprintf(stderr, "difftune train: --spec and --out are required (see --help)\n");
        return 2;
    }
    size_t len;
    char *text = cli_read_file(spec_path, &len);
    if (!text) {
        fprintf(stderr, "difftune train: cannot read spec %s\n", spec_path);
        return 2;
    }
    dt_spec spec;
    dt_spec_error se;
    int bad = spec_parse(&spec, text, len, &se);
    free(text);
    if (bad) {
        fprintf(stderr, "difftune train: %s: %s%s%s (%s)\n", spec_path, se.param,
                se.param[0] ? ": " : "", se.message, se.code);
        return 2;
    }
    if (!bank_dir) {
        const char *home = getenv("HOME");
        snprintf(home_bank, sizeof home_bank, "%s/.cache/difftune/banks", home ? home : ".");
        bank_dir = home_bank;
    }
    if (!latent_dir || !latent_dir[0]) {
        const char *home = getenv("HOME");
        snprintf(home_latents, sizeof home_latents, "%s/.cache/difftune/latents", home ? home : ".");
        latent_dir = home_latents;
    }
    if (!eval_cache || !eval_cache[0]) {
        const char *home = getenv("HOME");
        snprintf(home_eval, sizeof home_eval, "%s/.cache/difftune/eval", home ? home : ".");
        eval_cache = home_eval;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = train_on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    dt_events ev = {.out = stdout, .quiet = quiet, .text = text_mode};
    dt_train_opts o = {.out_dir = out, .bank_dir = bank_dir, .latent_dir = latent_dir,
                       .base_input_size = (int)input_size, .base_heads = (int)heads,
                       .device = device, .precision = precision,
                       .log_every = (int)log_every, .stop_after = (int)stop_after,
                       .min_free_bytes = (int64_t)min_free_mb << 20,
                       .grid_size = (int)grid, .events = &ev, .stop = &train_stop_flag,
                       .inception_weights = inception && inception[0] ? inception : NULL,
                       .eval_cache_dir = eval_cache};
    char err[1024] = "";
    int rc = train_run(&spec, &o, err, sizeof err);
    switch (rc) {
    case TRAIN_OK: return 0;
    case TRAIN_STOPPED: return 3;
    case TRAIN_INVALID: fprintf(stderr, "difftune train: %s\n", err); return 2;
    default: fprintf(stderr, "difftune train: %s\n", err); return 1;
    }
}
