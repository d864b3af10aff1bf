/* cmd_run_job.c — `difftune run-job <job_id> --data-dir DIR`: the worker process that
 * `difftune serve` spawns for one attempt of a stored job (DESIGN.md section 2).
 *
 * It reads the job's spec from the store, resolves the dataset, base model and VAE ids to their
 * files, closes the store again (the server alone writes it) and trains into DIR/jobs/<id>/,
 * resuming from the newest complete checkpoint there; a forgetting_curve job instead measures
 * the checkpoint it names against its base model (run_job_forgetting.c). Events go to stdout as
 * JSON lines for the supervisor; messages for people go to stderr (the server appends them to
 * the job's log). Exit status as `difftune train`: 0 done, 1 failed, 2 rejected input, 3 stopped
 * on request.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <jansson.h>

#include "cli.h"
#include "events.h"
#include "layout.h"
#include "run_job.h"
#include "spec.h"
#include "store.h"
#include "supervisor.h"
#include "train.h"

static volatile int run_job_stop_flag;

static void run_job_on_signal(int sig) {
    (void)sig;
    run_job_stop_flag = 1;
}

/* SIGTERM and SIGINT ask for a stop at the next step boundary. Installed first thing, so a
 * worker signalled while it still loads stops cleanly (exit 3) instead of dying. */
static void run_job_trap_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = run_job_on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
}

static void run_job_usage(FILE *f) {
    fprintf(f,
        "usage: difftune run-job JOB_ID --data-dir DIR [options]\n\n"
        "Runs one attempt of a stored job as a worker of `difftune serve`, which spawns\n"
        "it; people normally never run it themselves. Reads the job from DIR/" DT_LAYOUT_DB ",\n"
        "trains into DIR/" DT_LAYOUT_JOBS "/JOB_ID/ (resuming from its newest complete\n"
        "checkpoint) with knowledge banks under DIR/" DT_LAYOUT_BANKS "/, datasets encoded by a\n"
        "job's VAE under DIR/" DT_LAYOUT_LATENTS "/ and reference statistics\n"
        "under DIR/" DT_LAYOUT_EVAL_CACHE "/ (a forgetting_curve job measures the checkpoint it\n"
        "names instead, and writes no files), and prints one JSON\n"
        "event per line on stdout (status, progress, sample, checkpoint, metric, log, error).\n"
        "It never writes the store.\n"
        "SIGTERM or SIGINT stops at the next step boundary after writing a checkpoint.\n"
        "The worker dies with its parent (PR_SET_PDEATHSIG).\n\n"
        "options:\n"
        "  --data-dir DIR     the server's data directory (required)\n"
        "  --device DEV       cpu | auto | cuda:N (default: the device the job was claimed for)\n"
        "  --log-every N      steps between progress events, 1..1000000000 (default 10)\n"
        "  --min-free-mb N    MiB that must stay free on the data directory's file system after a\n"
        "                     checkpoint is written, else the job fails with disk_full\n"
        "                     (default 1024; `difftune serve --min-free-mb` passes its own)\n"
        "  --inception-weights FILE\n"
        "                     FID Inception weights (default $DIFFTUNE_INCEPTION_WEIGHTS, which\n"
        "                     `difftune serve --inception-weights` sets for its workers)\n"
        "  -h, --help         show this help\n\n"
        "exit status: 0 done, 1 failed while training, 2 bad usage or rejected input,\n"
        "             3 stopped on request (a checkpoint was written; the job can resume)\n");
}

/* Parses argv strictly; returns -1 after printing the problem (or 1 after --help). */
static int run_job_parse_args(int argc, char **argv, run_job_args *a) {
    const char *env_weights = getenv("DIFFTUNE_INCEPTION_WEIGHTS");
    *a = (run_job_args){.log_every = 10, .min_free_mb = DT_MIN_FREE_MB_DEFAULT,
                        .inception_weights = env_weights && env_weights[0] ? env_weights : NULL};
    for (int i = 1; i < argc; i++) {
        const char *opt = argv[i];
        if (!strcmp(opt, "--help") || !strcmp(opt, "-h")) {
            run_job_usage(stdout);
            return 1;
        }
        if (opt[0] != '-') {
            if (a->job_id) {
                fprintf(stderr, "difftune run-job: one job id only (got %s and %s)\n", a->job_id,
                        opt);
                return -1;
            }
            a->job_id = opt;
            continue;
        }
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(opt, "--data-dir") || !strcmp(opt, "--device") || !strcmp(opt, "--log-every") ||
            !strcmp(opt, "--inception-weights") || !strcmp(opt, "--min-free-mb")) {
            if (!v || !v[0]) {
                fprintf(stderr, "difftune run-job: %s needs a value (see --help)\n", opt);
                return -1;
            }
            i++;
        }
        if (!strcmp(opt, "--data-dir")) {
            a->data_dir = v;
        } else if (!strcmp(opt, "--device")) {
            a->device = v;
        } else if (!strcmp(opt, "--inception-weights")) {
            a->inception_weights = v;
        } else if (!strcmp(opt, "--min-free-mb")) {
            if (cli_parse_int(v, 0, DT_MIN_FREE_MB_MAX, &a->min_free_mb)) {
                fprintf(stderr, "difftune run-job: --min-free-mb must be an integer in "
                        "0..%ld (got \"%s\")\n", (long)DT_MIN_FREE_MB_MAX, v);
                return -1;
            }
        } else if (!strcmp(opt, "--log-every")) {
            if (cli_parse_int(v, 1, 1000000000, &a->log_every)) {
                fprintf(stderr, "difftune run-job: --log-every must be an integer in "
                        "1..1000000000 (got \"%s\")\n", v);
                return -1;
            }
        } else {
            fprintf(stderr, "difftune run-job: unknown option %s (see --help)\n", opt);
            return -1;
        }
    }
    if (!a->job_id || !a->data_dir) {
        fprintf(stderr, "difftune run-job: a job id and --data-dir are required (see --help)\n");
        return -1;
    }
    if (strncmp(a->job_id, "job_", 4) != 0 || strlen(a->job_id) >= DT_STORE_ID_MAX) {
        fprintf(stderr, "difftune run-job: \"%s\" is not a job id (job_...)\n", a->job_id);
        return -1;
    }
    return 0;
}

/* Ties the worker's life to its parent's: the kernel SIGKILLs it when the server dies, so no
 * worker outlives a server killed with -9 (checkpoints are crash safe: nothing is lost). A
 * server that died before the signal was armed is caught by comparing the parent with the pid
 * the supervisor put in the environment (or, without it, with init). Returns 0 or -1. */
static int run_job_bind_to_parent(void) {
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) {
        perror("difftune run-job: prctl(PR_SET_PDEATHSIG)");
        return -1;
    }
    const char *expected = getenv(SUPERVISOR_PARENT_PID_ENV);
    long want;
    pid_t parent = getppid();
    int orphaned = expected && cli_parse_int(expected, 2, 0x7fffffffL, &want) == 0
                       ? parent != (pid_t)want
                       : parent == 1;
    if (orphaned) {
        fprintf(stderr, "difftune run-job: the server that started this worker is gone\n");
        return -1;
    }
    return 0;
}

/* (run_job.h) */
int run_job_reject(dt_events *ev, int status, const char *code, const char *message) {
    fprintf(stderr, "difftune run-job: %s\n", message);
    events_error(ev, code, message);
    return status;
}

/* Replaces the id in spec[field] ("ds_..." or "mdl_...") by the file it names. Values that are
 * absent, null or not ids are left alone. Returns 0 or the run-job exit status. */
static int run_job_resolve(dt_store *st, json_t *spec, const char *field, const char *prefix,
                           dt_events *ev) {
    const char *ref = json_string_value(json_object_get(spec, field));
    if (!ref || strncmp(ref, prefix, strlen(prefix)) != 0) return 0;
    char path[4096], err[512], msg[1024];
    int rc = !strcmp(field, "dataset")
                 ? store_dataset_path(st, ref, path, sizeof path, err, sizeof err)
                 : store_model_path(st, ref, path, sizeof path, err, sizeof err);
    if (rc != DT_STORE_OK) {
        snprintf(msg, sizeof msg, "%s %s: %s", field, ref, err);
        return rc == DT_STORE_NOT_FOUND
                   ? run_job_reject(ev, RUN_JOB_INVALID, "invalid_input", msg)
                   : run_job_reject(ev, RUN_JOB_FAILED, "store_error", msg);
    }
    json_object_set_new(spec, field, json_string(path));
    return 0;
}

#define RUN_JOB_CLASSIFIER "classifier:"

/* The file of the classifier model eval.extractor names ("classifier:mdl_..."), into path
 * (pathlen bytes; "" when the extractor is not a classifier id). The spec keeps the id: results
 * name the extractor by it. Returns 0 or the run-job exit status. */
static int run_job_classifier(dt_store *st, json_t *spec, char *path, size_t pathlen,
                              dt_events *ev) {
    const char *x = json_string_value(json_object_get(json_object_get(spec, "eval"), "extractor"));
    path[0] = '\0';
    size_t plen = strlen(RUN_JOB_CLASSIFIER);
    if (!x || strncmp(x, RUN_JOB_CLASSIFIER, plen) || strncmp(x + plen, "mdl_", 4)) return 0;
    char err[512], msg[1024];
    int rc = store_model_path(st, x + plen, path, pathlen, err, sizeof err);
    if (rc == DT_STORE_OK) return 0;
    path[0] = '\0';
    snprintf(msg, sizeof msg, "eval.extractor %s: %s", x, err);
    return rc == DT_STORE_NOT_FOUND ? run_job_reject(ev, RUN_JOB_INVALID, "invalid_input", msg)
                                    : run_job_reject(ev, RUN_JOB_FAILED, "store_error", msg);
}

/* Reads the job from the store: its spec with ids resolved to paths (*spec_out, new reference)
 * and the rest of in (run_job.h). The store is closed again before returning. Returns 0 or the
 * run-job exit status. */
static int run_job_load(const run_job_args *a, dt_events *ev, json_t **spec_out,
                        run_job_inputs *in) {
    char db[4200], err[512], msg[4800];
    *spec_out = NULL;
    memset(in, 0, sizeof *in);
    snprintf(db, sizeof db, "%s/%s", a->data_dir, DT_LAYOUT_DB);
    if (access(db, F_OK) != 0) {
        snprintf(msg, sizeof msg, "no store at %s: --data-dir must be the server's data "
                 "directory", db);
        return run_job_reject(ev, RUN_JOB_FAILED, "store_error", msg);
    }
    dt_store *st = NULL;
    if (store_open(db, NULL, &st, err, sizeof err) != DT_STORE_OK) {
        snprintf(msg, sizeof msg, "cannot open the store %s: %s", db, err);
        return run_job_reject(ev, RUN_JOB_FAILED, "store_error", msg);
    }
    json_t *job = NULL;
    int rc = store_job_get(st, a->job_id, &job, err, sizeof err);
    int status = 0;
    if (rc != DT_STORE_OK) {
        status = run_job_reject(ev, rc == DT_STORE_NOT_FOUND ? RUN_JOB_INVALID : RUN_JOB_FAILED,
                                rc == DT_STORE_NOT_FOUND ? "invalid_input" : "store_error", err);
        goto out;
    }
    const char *state = json_string_value(json_object_get(job, "status"));
    json_t *spec = json_object_get(job, "spec");
    if (!state || strcmp(state, "running") != 0) {
        snprintf(msg, sizeof msg, "job %s is %s, not running: workers run only jobs the server "
                 "dispatched", a->job_id, state ? state : "in an unknown state");
        status = run_job_reject(ev, RUN_JOB_INVALID, "invalid_input", msg);
        goto out;
    }
    if (!json_is_object(spec)) {
        snprintf(msg, sizeof msg, "job %s has no spec object", a->job_id);
        status = run_job_reject(ev, RUN_JOB_INVALID, "invalid_input", msg);
        goto out;
    }
    spec = json_deep_copy(spec);
    if (!spec) {
        status = run_job_reject(ev, RUN_JOB_FAILED, DT_ERR_OOM, "out of memory copying the job's spec");
        goto out;
    }
    status = run_job_resolve(st, spec, "dataset", "ds_", ev);
    if (!status) status = run_job_resolve(st, spec, "base_model", "mdl_", ev);
    if (!status) status = run_job_resolve(st, spec, "vae", "mdl_", ev);
    if (!status) status = run_job_classifier(st, spec, in->classifier, sizeof in->classifier, ev);
    if (!status)
        status = run_job_forgetting_checkpoint(st, a->data_dir, spec, in->checkpoint,
                                               sizeof in->checkpoint, ev);
    if (status) {
        json_decref(spec);
        goto out;
    }
    const char *claimed = json_string_value(json_object_get(job, "device"));
    if (claimed) snprintf(in->device, sizeof in->device, "%s", claimed);
    *spec_out = spec;
out:
    json_decref(job);
    store_close(st);
    return status;
}

/* Trains the parsed spec; returns the exit status. */
static int run_job_train(const run_job_args *a, const dt_spec *spec, const run_job_inputs *in,
                         dt_events *ev) {
    const char *device = in->device, *classifier = in->classifier;
    char out_dir[4200], bank_dir[4200], latent_dir[4200], eval_cache[4200], err[1024] = "";
    snprintf(out_dir, sizeof out_dir, "%s/%s/%s", a->data_dir, DT_LAYOUT_JOBS, a->job_id);
    snprintf(bank_dir, sizeof bank_dir, "%s/%s", a->data_dir, DT_LAYOUT_BANKS);
    snprintf(latent_dir, sizeof latent_dir, "%s/%s", a->data_dir, DT_LAYOUT_LATENTS);
    snprintf(eval_cache, sizeof eval_cache, "%s/%s", a->data_dir, DT_LAYOUT_EVAL_CACHE);
    dt_train_opts o = {.out_dir = out_dir, .bank_dir = bank_dir, .latent_dir = latent_dir,
                       .device = device[0] ? device : NULL, .log_every = (int)a->log_every,
                       .min_free_bytes = (int64_t)a->min_free_mb << 20,
                       .events = ev, .stop = &run_job_stop_flag,
                       .inception_weights = a->inception_weights, .eval_cache_dir = eval_cache,
                       .classifier_path = classifier[0] ? classifier : NULL,
                       /* the server keeps the books: pins, the best evaluation, keep-N */
                       .retention_by_caller = 1};
    int rc = train_run(spec, &o, err, sizeof err);
    switch (rc) {
    case TRAIN_OK: return RUN_JOB_OK;
    case TRAIN_STOPPED: return RUN_JOB_STOPPED;
    case TRAIN_INVALID:
        fprintf(stderr, "difftune run-job: %s: %s\n", a->job_id, err);
        return RUN_JOB_INVALID;
    default:
        fprintf(stderr, "difftune run-job: %s: %s\n", a->job_id, err);
        return RUN_JOB_FAILED;
    }
}

int cmd_run_job(int argc, char **argv) {
    run_job_args a;
    int parsed = run_job_parse_args(argc, argv, &a);
    if (parsed) return parsed > 0 ? 0 : RUN_JOB_INVALID;
    run_job_trap_signals();
    if (run_job_bind_to_parent()) return RUN_JOB_FAILED;

    dt_events ev = {.out = stdout};
    json_t *spec_json = NULL;
    run_job_inputs in;
    int status = run_job_load(&a, &ev, &spec_json, &in);
    if (status) return status;
    if (a.device) snprintf(in.device, sizeof in.device, "%s", a.device);

    dt_spec spec;
    dt_spec_error se;
    int bad = spec_from_json(&spec, spec_json, &se);
    json_decref(spec_json);
    if (bad) {
        /* the message is the job's error.message: it names the field unless it cannot */
        char msg[600];
        int named = !se.param[0] || strstr(se.message, se.param);
        snprintf(msg, sizeof msg, "%s%s%s", named ? "" : se.param, named ? "" : ": ", se.message);
        return run_job_reject(&ev, RUN_JOB_INVALID, "invalid_input", msg);
    }
    if (run_job_stop_flag) {
        fprintf(stderr, "difftune run-job: %s: stopped before the work began\n", a.job_id);
        return RUN_JOB_STOPPED;
    }
    fprintf(stderr, "difftune run-job: %s: %s on %s, pid %ld\n", a.job_id,
            spec_method_name(spec.method), in.device[0] ? in.device : spec.device, (long)getpid());
    if (spec.method == DT_METHOD_FORGETTING_CURVE)
        return run_job_forgetting(&a, &spec, &in, &ev, &run_job_stop_flag);
    return run_job_train(&a, &spec, &in, &ev);
}
