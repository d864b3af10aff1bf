/* test_train_resume.c — Diff-Tuning end to end on the CPU: a tiny base model is pretrained on
 * one synthetic domain and Diff-Tuned to another; an interrupted and resumed run must replay the
 * uninterrupted one exactly (losses and every checkpoint byte), and the knowledge bank must be
 * generated once and reused. */
#include <sys/stat.h>

#include "checkpoint.h"
#include "train_util.h"

#define STEPS 8

int main(void) {
    const char *root = check_tmpdir("train_resume");
    char dom_a[2048], dom_b[2048], base_out[2048], bank[2048], run_a[2048], run_b[2048], err[512];
    snprintf(dom_a, sizeof dom_a, "%s/solid", root);
    snprintf(dom_b, sizeof dom_b, "%s/outline", root);
    snprintf(base_out, sizeof base_out, "%s/base", root);
    snprintf(bank, sizeof bank, "%s/banks", root);
    snprintf(run_a, sizeof run_a, "%s/run_a", root);
    snprintf(run_b, sizeof run_b, "%s/run_b", root);
    CHECK(synth_write_folder(dom_a, "solid", 3, 8, 8, 1, err, sizeof err) == 0, "%s", err);
    CHECK(synth_write_folder(dom_b, "outline", 2, 8, 8, 2, err, sizeof err) == 0, "%s", err);

    /* The base model. */
    dt_spec base;
    tu_tiny_spec(&base, dom_a, 8, 6, 8);
    char *ev = NULL;
    CHECK(tu_run(&base, base_out, bank, 0, &ev) == TRAIN_OK, "pretraining the base model");
    free(ev);
    char base_ckpt[2300];
    snprintf(base_ckpt, sizeof base_ckpt, "%s/checkpoints/step_0000006.safetensors", base_out);

    /* Diff-Tuning to the other domain, uninterrupted. */
    dt_spec s;
    tu_tiny_spec(&s, dom_b, 8, STEPS, 8);
    s.method = DT_METHOD_DIFF_TUNING;
    tu_set_str(s.base_model, sizeof s.base_model, base_ckpt);
    s.diff_tuning.bank_size = 6;
    s.diff_tuning.bank_steps = 4;
    s.diff_tuning.replay_ratio = 0.25;
    s.checkpoint.every = 4;
    s.checkpoint.keep = 5;
    s.hp.grad_clip = 1.0;
    double la[STEPS + 1] = {0}, lb[STEPS + 1] = {0};
    CHECK(tu_run(&s, run_a, bank, 0, &ev) == TRAIN_OK, "uninterrupted run");
    CHECK(tu_losses(ev, la, STEPS) == STEPS, "one loss per step");
    json_t *m = tu_find_event(ev, "metric", "knowledge_bank");
    CHECK(m && json_is_false(json_object_get(m, "reused")), "first run generates the bank");
    CHECK(json_integer_value(json_object_get(m, "images")) == 6, "bank holds bank_size images");
    char bank_file[2400];
    snprintf(bank_file, sizeof bank_file, "%s/%s/bank.safetensors", bank,
             m ? json_string_value(json_object_get(m, "key")) : "");
    json_decref(m);
    free(ev);
    struct stat st1, st2;
    CHECK(stat(bank_file, &st1) == 0, "bank cached at %s", bank_file);

    /* Interrupted at STEPS/2, then resumed. */
    CHECK(tu_run(&s, run_b, bank, STEPS / 2, &ev) == TRAIN_STOPPED, "first half stops on request");
    CHECK(tu_losses(ev, lb, STEPS) == STEPS / 2, "first half ran %d steps", STEPS / 2);
    m = tu_find_event(ev, "metric", "knowledge_bank");
    CHECK(m && json_is_true(json_object_get(m, "reused")), "second job reuses the cached bank");
    json_decref(m);
    free(ev);
    CHECK(checkpoint_latest(run_b) < 0, "checkpoints live under out/checkpoints");
    char ckdir_b[2300], ckdir_a[2300];
    snprintf(ckdir_a, sizeof ckdir_a, "%s/checkpoints", run_a);
    snprintf(ckdir_b, sizeof ckdir_b, "%s/checkpoints", run_b);
    CHECK(checkpoint_latest(ckdir_b) == STEPS / 2, "stop wrote a checkpoint at step %d", STEPS / 2);
    CHECK(tu_run(&s, run_b, bank, 0, &ev) == TRAIN_OK, "resumed run completes");
    CHECK(tu_losses(ev, lb, STEPS) == STEPS / 2, "resume ran only the remaining steps");
    CHECK(strstr(ev, "resuming from checkpoint step 4") != NULL, "resume announced");
    free(ev);
    CHECK(stat(bank_file, &st2) == 0 && st1.st_mtime == st2.st_mtime && st1.st_ino == st2.st_ino,
          "the bank file was not rewritten");

    int same_losses = 1;
    for (int i = 1; i <= STEPS; i++) {
        if (la[i] != lb[i]) fprintf(stderr, "step %d: %.9g vs %.9g\n", i, la[i], lb[i]);
        same_losses &= la[i] == lb[i] && la[i] > 0;
    }
    CHECK(same_losses, "losses of the resumed run equal the uninterrupted run's bit for bit");
    const char *kinds[] = {"", "state"};
    for (int k = 0; k < 2; k++) {
        char pa[2400], pb[2400];
        checkpoint_path(pa, sizeof pa, ckdir_a, STEPS, kinds[k]);
        checkpoint_path(pb, sizeof pb, ckdir_b, STEPS, kinds[k]);
        CHECK(tu_same_file(pa, pb), "final %s file identical: weights, EMA and moments",
              k ? "state" : "model");
    }
    /* A finished job run again does no work and still succeeds. */
    CHECK(tu_run(&s, run_b, bank, 0, &ev) == TRAIN_OK, "re-running a finished job");
    CHECK(tu_losses(ev, lb, STEPS) == 0, "no steps re-run");
    free(ev);
    return check_done("test_train_resume");
}
