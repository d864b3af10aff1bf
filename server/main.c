/* main.c — the difftune binary: one executable, one subcommand per task. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const struct {
    const char *name;
    int (*run)(int, char **);
    const char *summary;
} commands[] = {
    {"serve", cmd_serve, "run the HTTP job server: REST API, job queue, workers, live streams"},
    {"run-job", cmd_run_job, "run one stored job as a worker of `serve` (events on stdout)"},
    {"train", cmd_train, "train a DiT from a job spec (pretrain, full fine-tuning or Diff-Tuning)"},
    {"sample", cmd_sample, "draw a grid of samples from a checkpoint"},
    {"dataset", cmd_dataset, "make synthetic datasets and inspect image sets"},
    {"classifier", cmd_classifier, "train and evaluate the small CNN behind fd_classifier"},
    {"export", cmd_export, "a checkpoint as a plain DiT file (a PEFT checkpoint merged into its base)"},
    {"fid", cmd_fid, "Fréchet distance of a checkpoint's samples to a dataset (FID)"},
    {"forgetting-curve", cmd_forgetting, "what a fine-tuned checkpoint kept of its base model, by timestep"},
    {"keys", cmd_keys, "create, list and revoke the API keys of a data directory"},
    {"webhooks", cmd_webhooks, "show the secret job webhooks are signed with (webhooks secret)"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: difftune <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-16s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n'difftune <command> --help' describes each command.\n"
               "exit status: 0 success, 1 failure, 2 bad usage or rejected input, 3 stopped on request\n");
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
        printf("difftune %s\n", DIFFTUNE_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "difftune: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
