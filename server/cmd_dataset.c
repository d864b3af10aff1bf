/* cmd_dataset.c — `difftune dataset ...`: make synthetic datasets and inspect datasets.
 *
 *   difftune dataset synth --style solid|outline --out DIR [--classes K] [--per-class N]
 *                          [--size S] [--seed X]
 *   difftune dataset info PATH [--size S] [--channels C]
 *
 * Results go to stdout as one line of JSON; problems go to stderr. Exit status: 0 success,
 * 1 the work failed (bad dataset, I/O), 2 bad command line.
 */
#include "cli.h"
#include "dataset.h"
#include "synth.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char cmd_dataset_usage[] =
    "usage: difftune dataset <command> [options]\n"
    "\n"
    "commands:\n"
    "  synth   write a synthetic labelled image folder (shapes in a chosen style)\n"
    "  info    load a dataset and print its image and class counts\n"
    "\n"
    "Run 'difftune dataset <command> --help' for the options of a command.\n";

static const char cmd_dataset_synth_usage[] =
    "usage: difftune dataset synth --style solid|outline --out DIR [options]\n"
    "\n"
    "Writes DIR/<class>/<00000>.png: one subfolder per shape class (circle, square, triangle,\n"
    "cross, diamond, ring, star, bar; the first K are used), each shape at a random position,\n"
    "size and colour. The styles draw the same shapes in two different looks:\n"
    "  solid    filled shape in a saturated colour on a dark background\n"
    "  outline  dark outline on a light pastel, slightly noisy background\n"
    "Images are deterministic in (seed, class, index).\n"
    "\n"
    "options:\n"
    "  --style S        solid or outline (required)\n"
    "  --out DIR        output folder, created if missing (required)\n"
    "  --classes K      number of classes, 1..8 (default 4)\n"
    "  --per-class N    images per class, 1..1000000 (default 200)\n"
    "  --size S         image width and height in pixels, 8..256 (default 32)\n"
    "  --seed X         random seed, a non-negative integer (default 0)\n"
    "  -h, --help       show this help\n"
    "\n"
    "Prints {\"path\":..,\"style\":..,\"classes\":..,\"images\":..} on success.\n";

static const char cmd_dataset_info_usage[] =
    "usage: difftune dataset info PATH [options]\n"
    "\n"
    "Loads the dataset at PATH the way training does and prints\n"
    "{\"images\":n,\"classes\":k,\"class_names\":[...],\"per_class\":[...]}.\n"
    "PATH is an image folder (one subfolder per class with PNG/JPEG/BMP files), a folder\n"
    "holding MNIST-style IDX files, or an IDX images file with its labels file beside it.\n"
    "\n"
    "options:\n"
    "  --size S         resolution to preprocess to, 1..4096 (default 32)\n"
    "  --channels C     1 (grey) or 3 (RGB) (default 3)\n"
    "  -h, --help       show this help\n";

static int cmd_dataset_print_json(json_t *j) {
    char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(j);
    if (!s) {
        fprintf(stderr, "difftune dataset: out of memory\n");
        return 1;
    }
    printf("%s\n", s);
    free(s);
    return fflush(stdout) == 0 ? 0 : 1;
}

static int cmd_dataset_bad(const char *sub, const char *fmt, const char *what) {
    fprintf(stderr, "difftune dataset %s: ", sub);
    fprintf(stderr, fmt, what);
    fprintf(stderr, "\nRun 'difftune dataset %s --help' for usage.\n", sub);
    return 2;
}

static int cmd_dataset_synth(int argc, char **argv) {
    const char *style = NULL, *out = NULL;
    long classes = 4, per_class = 200, size = 32;
    uint64_t seed = 0;
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        int m;
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            fputs(cmd_dataset_synth_usage, stdout);
            return 0;
        }
        if ((m = cli_match_opt(argc, argv, &i, "--style", &v, "difftune dataset")) != 0) {
            if (m < 0) return 2;
            style = v;
        } else if ((m = cli_match_opt(argc, argv, &i, "--out", &v, "difftune dataset")) != 0) {
            if (m < 0) return 2;
            if (!*v) return cmd_dataset_bad("synth", "--out needs a folder%s", "");
            out = v;
        } else if ((m = cli_match_opt(argc, argv, &i, "--classes", &v, "difftune dataset")) != 0) {
            if (m < 0) return 2;
            if (cli_parse_int(v, 1, SYNTH_MAX_CLASSES, &classes) != 0)
                return cmd_dataset_bad("synth", "--classes must be an integer in 1..8, not '%s'", v);
        } else if ((m = cli_match_opt(argc, argv, &i, "--per-class", &v, "difftune dataset")) != 0) {
            if (m < 0) return 2;
            if (cli_parse_int(v, 1, 1000000, &per_class) != 0)
                return cmd_dataset_bad("synth", "--per-class must be an integer in 1..1000000, "
                                       "not '%s'", v);
        } else if ((m = cli_match_opt(argc, argv, &i, "--size", &v, "difftune dataset")) != 0) {
            if (m < 0) return 2;
            if (cli_parse_int(v, 8, 256, &size) != 0)
                return cmd_dataset_bad("synth", "--size must be an integer in 8..256, not '%s'", v);
        } else if ((m = cli_match_opt(argc, argv, &i, "--seed", &v, "difftune dataset")) != 0) {
            if (m < 0) return 2;
            if (cli_parse_u64(v, &seed) != 0)
                return cmd_dataset_bad("synth", "--seed must be a non-negative integer, not '%s'",
                                       v);
        } else if (argv[i][0] == '-') {
            return cmd_dataset_bad("synth", "unknown option '%s'", argv[i]);
        } else {
            return cmd_dataset_bad("synth", "unexpected argument '%s'", argv[i]);
        }
    }
    if (!style) return cmd_dataset_bad("synth", "--style is required (solid or outline)%s", "");
    int known = 0;
    for (int i = 0; synth_styles[i]; i++) known |= strcmp(style, synth_styles[i]) == 0;
    if (!known)
        return cmd_dataset_bad("synth", "unknown --style '%s' (solid or outline)", style);
    if (!out) return cmd_dataset_bad("synth", "--out DIR is required%s", "");

    char err[512];
    if (synth_write_folder(out, style, (int)classes, (int)per_class, (int)size, seed, err,
                           sizeof err) != 0) {
        fprintf(stderr, "difftune dataset synth: %s\n", err);
        return 1;
    }
    json_t *j = json_object();
    json_object_set_new(j, "path", json_string(out));
    json_object_set_new(j, "style", json_string(style));
    json_object_set_new(j, "classes", json_integer(classes));
    json_object_set_new(j, "images", json_integer(classes * per_class));
    if (!json_object_get(j, "path")) { /* the path was not UTF-8 */
        json_object_set_new(j, "path", json_stringn_nocheck(out, strlen(out)));
    }
    return cmd_dataset_print_json(j);
}

static int cmd_dataset_info(int argc, char **argv) {
    const char *path = NULL;
    long size = 32, channels = 3;
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        int m;
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            fputs(cmd_dataset_info_usage, stdout);
            return 0;
        }
        if ((m = cli_match_opt(argc, argv, &i, "--size", &v, "difftune dataset")) != 0) {
            if (m < 0) return 2;
            if (cli_parse_int(v, 1, 4096, &size) != 0)
                return cmd_dataset_bad("info", "--size must be an integer in 1..4096, not '%s'", v);
        } else if ((m = cli_match_opt(argc, argv, &i, "--channels", &v, "difftune dataset")) != 0) {
            if (m < 0) return 2;
            if (cli_parse_int(v, 1, 3, &channels) != 0 || channels == 2)
                return cmd_dataset_bad("info", "--channels must be 1 or 3, not '%s'", v);
        } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
            return cmd_dataset_bad("info", "unknown option '%s'", argv[i]);
        } else if (path) {
            return cmd_dataset_bad("info", "unexpected argument '%s' (one PATH only)", argv[i]);
        } else {
            path = argv[i];
        }
    }
    if (!path) return cmd_dataset_bad("info", "PATH is required%s", "");

    dt_dataset ds;
    char err[1024];
    if (dataset_load(&ds, path, (int)size, (int)channels, err, sizeof err) != 0) {
        fprintf(stderr, "difftune dataset info: %s\n", err);
        return 1;
    }
    int *per = calloc((size_t)ds.num_classes, sizeof *per);
    if (!per) {
        dataset_free(&ds);
        fprintf(stderr, "difftune dataset info: out of memory\n");
        return 1;
    }
    for (int i = 0; i < ds.n; i++) per[ds.labels[i]]++;
    json_t *j = json_object(), *names = json_array(), *counts = json_array();
    for (int k = 0; k < ds.num_classes; k++) {
        const char *nm = ds.class_names[k];
        json_t *s = json_string(nm);
        json_array_append_new(names, s ? s : json_stringn_nocheck(nm, strlen(nm)));
        json_array_append_new(counts, json_integer(per[k]));
    }
    json_object_set_new(j, "images", json_integer(ds.n));
    json_object_set_new(j, "classes", json_integer(ds.num_classes));
    json_object_set_new(j, "class_names", names);
    json_object_set_new(j, "per_class", counts);
    free(per);
    dataset_free(&ds);
    return cmd_dataset_print_json(j);
}

/* Entry point of `difftune dataset` (argv[0] == "dataset"). Returns the process exit status:
 * 0 success, 1 failure of the work itself, 2 bad arguments. */
int cmd_dataset(int argc, char **argv) {
    if (argc < 2) {
        fputs(cmd_dataset_usage, stderr);
        return 2;
    }
    const char *sub = argv[1];
    if (strcmp(sub, "-h") == 0 || strcmp(sub, "--help") == 0 || strcmp(sub, "help") == 0) {
        fputs(cmd_dataset_usage, stdout);
        return 0;
    }
    if (strcmp(sub, "synth") == 0) return cmd_dataset_synth(argc - 1, argv + 1);
    if (strcmp(sub, "info") == 0) return cmd_dataset_info(argc - 1, argv + 1);
    fprintf(stderr, "difftune dataset: unknown command '%s'\n\n%s", sub, cmd_dataset_usage);
    return 2;
}
