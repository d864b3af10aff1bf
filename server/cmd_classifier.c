/* cmd_classifier.c — `difftune classifier ...`: train the small CNN whose features give
 * fd_classifier (engine/classifier.h), and measure its accuracy on a dataset.
 *
 *   difftune classifier train --dataset PATH --out FILE [options]
 *   difftune classifier eval --classifier FILE --dataset PATH
 *
 * train prints events on stdout as `difftune train` does (one JSON object per line, or text);
 * eval prints one line of JSON. Problems go to stderr. Exit status: 0 success, 1 the work failed
 * (I/O, out of memory), 2 bad command line or rejected input (unloadable dataset, not a
 * classifier file, mismatched classes).
 */
#include "classifier.h"
#include "cli.h"
#include "dataset.h"
#include "events.h"
#include "safetensors.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char cmd_classifier_usage[] =
    "usage: difftune classifier <command> [options]\n"
    "\n"
    "A small CNN (3 conv stages of 32/64/128 channels, global average pool, a 256-wide feature\n"
    "layer) trained on a labelled dataset; its features give the fd_classifier metric and its\n"
    "predictions the accuracy of generated samples on the classes they were asked for.\n"
    "\n"
    "commands:\n"
    "  train   train a classifier on a dataset and write it as a safetensors file\n"
    "  eval    print a classifier's accuracy on a dataset\n"
    "\n"
    "Run 'difftune classifier <command> --help' for the options of a command.\n";

static const char cmd_classifier_train_usage[] =
    "usage: difftune classifier train --dataset PATH --out FILE [options]\n"
    "\n"
    "Trains the classifier on the dataset at PATH (an image folder with one subfolder per class,\n"
    "or MNIST-style IDX files) with cross-entropy, AdamW and random horizontal flips, keeping a\n"
    "fraction of each class out of training to measure its accuracy, and writes FILE\n"
    "(safetensors, __metadata__.difftune_kind \"classifier\"; upload it with POST /models).\n"
    "Prints one JSON event per line on stdout: progress per epoch, a \"metric\" event with the\n"
    "train and held-out accuracies, and a final \"status\" event with both and the file.\n"
    "The same seed gives the same file.\n"
    "\n"
    "options:\n"
    "  --dataset PATH   labelled dataset (required)\n"
    "  --out FILE       classifier file to write (required; replaced atomically)\n"
    "  --image-size S   resolution to train at, a multiple of 8 in 8..1024 (default 32)\n"
    "  --channels C     1 (grey) or 3 (RGB) (default 3)\n"
    "  --epochs N       passes over the training images, 1..100000 (default 10)\n"
    "  --batch B        images per step, 1..4096 (default 64)\n"
    "  --lr X           AdamW learning rate, > 0 and <= 1; decays on a cosine (default 0.002)\n"
    "  --held-out F     fraction of each class held out, 0 <= F < 1 (default 0.1)\n"
    "  --seed N         random seed, a non-negative integer (default 0)\n"
    "  --format F       json (default) | text (for people)\n"
    "  --quiet          leave out \"log\" events\n"
    "  -h, --help       show this help\n"
    "\n"
    "exit status: 0 done, 1 failed while training or writing, 2 bad usage or rejected input\n";

static const char cmd_classifier_eval_usage[] =
    "usage: difftune classifier eval --classifier FILE --dataset PATH\n"
    "\n"
    "Loads the dataset at the classifier's image size and channels and prints\n"
    "{\"classifier\":..,\"dataset\":..,\"images\":n,\"classes\":k,\"accuracy\":a,\n"
    " \"per_class_accuracy\":[...]}. The dataset must have the classifier's number of classes,\n"
    "in the same (sorted folder name) order.\n"
    "\n"
    "options:\n"
    "  --classifier FILE  a file written by 'difftune classifier train' (required)\n"
    "  --dataset PATH     labelled dataset (required)\n"
    "  -h, --help         show this help\n"
    "\n"
    "exit status: 0 done, 1 failed while evaluating, 2 bad usage or rejected input\n";

static int cmd_classifier_bad(const char *sub, const char *fmt, const char *what) {
    fprintf(stderr, "difftune classifier %s: ", sub);
    fprintf(stderr, fmt, what);
    fprintf(stderr, "\nRun 'difftune classifier %s --help' for usage.\n", sub);
    return 2;
}

/* A JSON string of s, even when s is not UTF-8 (a path). */
static json_t *cmd_classifier_string(const char *s) {
    json_t *j = json_string(s);
    return j ? j : json_stringn_nocheck(s, strlen(s));
}

/* The accuracies the file records, for the final status event; -1 when unreadable. */
static void cmd_classifier_read_accuracy(const char *path, double *train, double *held) {
    st_file f = {0};
    char err[256];
    *train = *held = -1;
    if (safetensors_open(&f, path, err, sizeof err) != 0) return;
    const char *t = safetensors_meta(&f, "train_accuracy"), *h = safetensors_meta(&f, "held_out_accuracy");
    if (t) *train = atof(t);
    if (h) *held = atof(h);
    safetensors_close(&f);
}

static int cmd_classifier_train(int argc, char **argv) {
    const char *dataset = NULL, *out = NULL;
    long size = 32, channels = 3, epochs, batch;
    int text = 0, quiet = 0;
    dt_classifier_opts o;
    classifier_opts_defaults(&o);
    epochs = o.epochs;
    batch = o.batch_size;
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        int m;
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(cmd_classifier_train_usage, stdout);
            return 0;
        }
        if (!strcmp(argv[i], "--quiet")) {
            quiet = 1;
        } else if ((m = cli_match_opt(argc, argv, &i, "--dataset", &v, "difftune classifier")) != 0) {
            if (m < 0) return 2;
            dataset = v;
        } else if ((m = cli_match_opt(argc, argv, &i, "--out", &v, "difftune classifier")) != 0) {
            if (m < 0) return 2;
            if (!*v) return cmd_classifier_bad("train", "--out needs a file name%s", "");
            out = v;
        } else if ((m = cli_match_opt(argc, argv, &i, "--image-size", &v, "difftune classifier")) != 0) {
            if (m < 0) return 2;
            if (cli_parse_int(v, 8, 1024, &size) != 0 || size % 8)
                return cmd_classifier_bad("train", "--image-size must be a multiple of 8 in "
                                          "8..1024, not '%s'", v);
        } else if ((m = cli_match_opt(argc, argv, &i, "--channels", &v, "difftune classifier")) != 0) {
            if (m < 0) return 2;
            if (cli_parse_int(v, 1, 3, &channels) != 0 || channels == 2)
                return cmd_classifier_bad("train", "--channels must be 1 or 3, not '%s'", v);
        } else if ((m = cli_match_opt(argc, argv, &i, "--epochs", &v, "difftune classifier")) != 0) {
            if (m < 0) return 2;
            if (cli_parse_int(v, 1, 100000, &epochs) != 0)
                return cmd_classifier_bad("train", "--epochs must be an integer in 1..100000, "
                                          "not '%s'", v);
        } else if ((m = cli_match_opt(argc, argv, &i, "--batch", &v, "difftune classifier")) != 0) {
            if (m < 0) return 2;
            if (cli_parse_int(v, 1, 4096, &batch) != 0)
                return cmd_classifier_bad("train", "--batch must be an integer in 1..4096, not "
                                          "'%s'", v);
        } else if ((m = cli_match_opt(argc, argv, &i, "--lr", &v, "difftune classifier")) != 0) {
            if (m < 0) return 2;
            if (cli_parse_double(v, &o.learning_rate) != 0 || !(o.learning_rate > 0) ||
                o.learning_rate > 1)
                return cmd_classifier_bad("train", "--lr must be a number > 0 and <= 1, not '%s'",
                                          v);
        } else if ((m = cli_match_opt(argc, argv, &i, "--held-out", &v, "difftune classifier")) != 0) {
            if (m < 0) return 2;
            if (cli_parse_double(v, &o.held_out) != 0 || !(o.held_out >= 0 && o.held_out < 1))
                return cmd_classifier_bad("train", "--held-out must be a number in [0, 1), not "
                                          "'%s'", v);
        } else if ((m = cli_match_opt(argc, argv, &i, "--seed", &v, "difftune classifier")) != 0) {
            if (m < 0) return 2;
            if (cli_parse_u64(v, &o.seed) != 0)
                return cmd_classifier_bad("train", "--seed must be a non-negative integer, not "
                                          "'%s'", v);
        } else if ((m = cli_match_opt(argc, argv, &i, "--format", &v, "difftune classifier")) != 0) {
            if (m < 0) return 2;
            if (strcmp(v, "json") && strcmp(v, "text"))
                return cmd_classifier_bad("train", "--format must be json or text, not '%s'", v);
            text = !strcmp(v, "text");
        } else if (argv[i][0] == '-') {
            return cmd_classifier_bad("train", "unknown option '%s'", argv[i]);
        } else {
            return cmd_classifier_bad("train", "unexpected argument '%s'", argv[i]);
        }
    }
    if (!dataset) return cmd_classifier_bad("train", "--dataset PATH is required%s", "");
    if (!out) return cmd_classifier_bad("train", "--out FILE is required%s", "");
    o.epochs = (int)epochs;
    o.batch_size = (int)batch;
    o.dataset = dataset;

    dt_events ev = {.out = stdout, .quiet = quiet, .text = text};
    char err[1024] = "";
    dt_dataset ds;
    events_emit(&ev, "status", json_pack("{s:s}", "status", "running"));
    if (dataset_load(&ds, dataset, (int)size, (int)channels, err, sizeof err) != 0) {
        fprintf(stderr, "difftune classifier train: %s\n", err);
        events_error(&ev, "invalid_dataset", err);
        events_emit(&ev, "status", json_pack("{s:s}", "status", "failed"));
        return 2;
    }
    if (ds.num_classes < 2) {
        fprintf(stderr, "difftune classifier train: %s has %d class; a classifier needs at "
                "least 2\n", dataset, ds.num_classes);
        events_emit(&ev, "status", json_pack("{s:s}", "status", "failed"));
        dataset_free(&ds);
        return 2;
    }
    double held = 0, train = 0;
    int rc = classifier_train(&ds, &o, out, &ev, &held, err, sizeof err);
    dataset_free(&ds);
    if (rc != 0) {
        fprintf(stderr, "difftune classifier train: %s\n", err);
        events_error(&ev, "training_failed", err);
        events_emit(&ev, "status", json_pack("{s:s}", "status", "failed"));
        return 1;
    }
    double held_file;
    cmd_classifier_read_accuracy(out, &train, &held_file); /* what the file records */
    if (held_file >= 0) held = held_file;
    json_t *done = json_pack("{s:s, s:f, s:f}", "status", "succeeded", "train_accuracy", train,
                             "held_out_accuracy", held);
    json_object_set_new(done, "path", cmd_classifier_string(out));
    events_emit(&ev, "status", done);
    return fflush(stdout) == 0 ? 0 : 1;
}

static int cmd_classifier_eval(int argc, char **argv) {
    const char *path = NULL, *dataset = NULL;
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        int m;
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(cmd_classifier_eval_usage, stdout);
            return 0;
        }
        if ((m = cli_match_opt(argc, argv, &i, "--classifier", &v, "difftune classifier")) != 0) {
            if (m < 0) return 2;
            path = v;
        } else if ((m = cli_match_opt(argc, argv, &i, "--dataset", &v, "difftune classifier")) != 0) {
            if (m < 0) return 2;
            dataset = v;
        } else if (argv[i][0] == '-') {
            return cmd_classifier_bad("eval", "unknown option '%s'", argv[i]);
        } else {
            return cmd_classifier_bad("eval", "unexpected argument '%s'", argv[i]);
        }
    }
    if (!path) return cmd_classifier_bad("eval", "--classifier FILE is required%s", "");
    if (!dataset) return cmd_classifier_bad("eval", "--dataset PATH is required%s", "");

    char err[1024] = "";
    dt_classifier *c = NULL;
    if (classifier_load(&c, path, err, sizeof err) != 0) {
        fprintf(stderr, "difftune classifier eval: %s\n", err);
        return 2;
    }
    const int S = classifier_image_size(c), C = classifier_channels(c), K = classifier_num_classes(c);
    dt_dataset ds;
    if (dataset_load(&ds, dataset, S, C, err, sizeof err) != 0) {
        fprintf(stderr, "difftune classifier eval: %s\n", err);
        classifier_free(c);
        return 2;
    }
    if (ds.num_classes != K) {
        fprintf(stderr, "difftune classifier eval: %s has %d classes but the classifier was "
                "trained on %d\n", dataset, ds.num_classes, K);
        dataset_free(&ds);
        classifier_free(c);
        return 2;
    }
    /* A few hundred images at a time, so memory stays small whatever the dataset's size. */
    enum { CHUNK = 256 };
    const size_t img = (size_t)C * S * S;
    float *x = malloc(sizeof *x * img * CHUNK);
    int32_t *pred = malloc(sizeof *pred * CHUNK);
    int *hits = calloc((size_t)K, sizeof *hits), *count = calloc((size_t)K, sizeof *count);
    int rc = x && pred && hits && count ? 0 : 1;
    if (rc) snprintf(err, sizeof err, "out of memory");
    for (int start = 0; !rc && start < ds.n; start += CHUNK) {
        int n = ds.n - start < CHUNK ? ds.n - start : CHUNK;
        for (int b = 0; b < n; b++) dataset_image_to_float(&ds, start + b, 0, x + (size_t)b * img);
        if (classifier_features(c, x, n, C, S, S, NULL, pred, err, sizeof err) != 0) rc = 1;
        for (int b = 0; !rc && b < n; b++) {
            int y = ds.labels[start + b];
            count[y]++;
            hits[y] += pred[b] == y;
        }
    }
    if (rc) {
        fprintf(stderr, "difftune classifier eval: %s\n", err);
    } else {
        int total = 0;
        json_t *per = json_array();
        for (int k = 0; k < K; k++) {
            total += hits[k];
            json_array_append_new(per, count[k] ? json_real((double)hits[k] / count[k]) : json_null());
        }
        json_t *j = json_object();
        json_object_set_new(j, "classifier", cmd_classifier_string(path));
        json_object_set_new(j, "dataset", cmd_classifier_string(dataset));
        json_object_set_new(j, "images", json_integer(ds.n));
        json_object_set_new(j, "classes", json_integer(K));
        json_object_set_new(j, "accuracy", json_real(ds.n ? (double)total / ds.n : 0.0));
        json_object_set_new(j, "per_class_accuracy", per);
        char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
        json_decref(j);
        if (s) printf("%s\n", s);
        else rc = 1;
        free(s);
        if (fflush(stdout) != 0) rc = 1;
    }
    free(x);
    free(pred);
    free(hits);
    free(count);
    dataset_free(&ds);
    classifier_free(c);
    return rc;
}

/* Entry point of `difftune classifier` (argv[0] == "classifier"). Returns the exit status. */
int cmd_classifier(int argc, char **argv) {
    if (argc < 2) {
        fputs(cmd_classifier_usage, stderr);
        return 2;
    }
    const char *sub = argv[1];
    if (!strcmp(sub, "-h") || !strcmp(sub, "--help") || !strcmp(sub, "help")) {
        fputs(cmd_classifier_usage, stdout);
        return 0;
    }
    if (!strcmp(sub, "train")) return cmd_classifier_train(argc - 1, argv + 1);
    if (!strcmp(sub, "eval")) return cmd_classifier_eval(argc - 1, argv + 1);
    fprintf(stderr, "difftune classifier: unknown command '%s'\n\n%s", sub, cmd_classifier_usage);
    return 2;
}
