/* test_store_retention.c — checkpoint retention (db/store.h): the rule on synthetic series (the
 * newest N, the best by the job's metric among evaluations at checkpoint steps, ties to the
 * earlier step, unavailable evaluations ignored, pins), then through a real store: the metric
 * a spec selects, the annotated list, pins (idempotent, unknown names), a prune that forgets
 * exactly the unkept rows and names the files to delete, a re-reported checkpoint keeping its
 * pin, and a store from before pins migrating with every checkpoint unpinned. */
#include "store.h"
#include "check.h"
#include "store_check.h"

#include <math.h>
#include <sqlite3.h>
#include <string.h>

static char err[512];


/* "N" (newest), "B" (best), "P" (pinned) letters of an item's kept bits, "-" for none. */
static const char *kept_letters(unsigned kept, char buf[4]) {
    int k = 0;
    if (kept & DT_KEPT_NEWEST) buf[k++] = 'N';
    if (kept & DT_KEPT_BEST) buf[k++] = 'B';
    if (kept & DT_KEPT_PINNED) buf[k++] = 'P';
    if (!k) buf[k++] = '-';
    buf[k] = 0;
    return buf;
}

/* Runs the rule on n items (steps 100, 200, ...) with the given metrics and pins and compares
 * the kept bits, one space-separated group of letters per item, with want. */
static void expect_select(const char *what, int keep, const double *metric, const int *pinned,
                          size_t n, const char *want) {
    dt_retention_item items[16];
    for (size_t i = 0; i < n; i++)
        items[i] = (dt_retention_item){.step = (int64_t)(i + 1) * 100, .metric = metric[i],
                                       .pinned = pinned ? pinned[i] : 0, .kept = 99};
    store_retention_select(items, n, keep);
    char got[128] = "", b[4];
    for (size_t i = 0; i < n; i++) {
        strcat(got, i ? " " : "");
        strcat(got, kept_letters(items[i].kept, b));
    }
    CHECK(!strcmp(got, want), "%s: kept %s, want %s", what, got, want);
}

static void test_rule(void) {
    const double none[6] = {NAN, NAN, NAN, NAN, NAN, NAN};
    expect_select("no evaluations: the newest 2", 2, none, NULL, 6, "- - - - N N");
    expect_select("keep 1", 1, none, NULL, 6, "- - - - - N");
    expect_select("keep more than there are", 9, none, NULL, 3, "N N N");
    expect_select("nothing at all", 2, none, NULL, 0, "");
    const double fid[6] = {9.0, 4.0, 6.0, 4.0, 5.0, NAN};
    expect_select("the lowest value, ties to the earlier step", 2, fid, NULL, 6, "- B - - N N");
    const double late[6] = {9.0, 8.0, 7.0, 6.0, 5.0, 1.0};
    expect_select("the best may be the newest", 2, late, NULL, 6, "- - - - N NB");
    const double with_null[4] = {NAN, 3.0, NAN, NAN};
    expect_select("unavailable evaluations rank nowhere", 1, with_null, NULL, 4, "- B - N");
    const double neg[3] = {-1.0, 0.0, 2.0};
    expect_select("any finite value counts, negative too", 1, neg, NULL, 3, "B - N");
    const int pins[6] = {1, 0, 0, 1, 0, 1};
    expect_select("pins add to the rest", 2, fid, pins, 6, "P B - P N NP");
    const double inf[3] = {INFINITY, NAN, 5.0};
    expect_select("an infinite value is no evaluation", 1, inf, NULL, 3, "- - NB");
    CHECK(!strcmp(store_retention_metric(NULL), "fid"), "no spec: fid");
    json_t *sp = json_pack("{s:{s:s}}", "eval", "extractor", "classifier:mdl_x");
    CHECK(!strcmp(store_retention_metric(sp), "fd_classifier"), "a classifier: fd_classifier");
    json_object_set_new(json_object_get(sp, "eval"), "extractor", json_string("inception"));
    CHECK(!strcmp(store_retention_metric(sp), "fid"), "inception: fid");
    json_decref(sp);
}

/* ---- through the store ------------------------------------------------------------------- */

static void make_job(dt_store *s, json_t *extra, char id[DT_STORE_ID_MAX]) {
    json_t *spec = json_pack("{s:s, s:s, s:{s:i}}", "method", "pretrain", "dataset", "/d",
                             "hyperparameters", "steps", 60);
    if (extra) json_object_update(spec, extra);
    OK(store_job_create(s, spec, NULL, id, NULL, err, E));
    json_decref(spec);
    json_decref(extra);
}

static void put_ckpt(dt_store *s, const char *job, int step) {
    dt_artifact a;
    memset(&a, 0, sizeof a);
    snprintf(a.job_id, sizeof a.job_id, "%s", job);
    a.kind = DT_ARTIFACT_CHECKPOINT;
    snprintf(a.name, sizeof a.name, "step_%07d.safetensors", step);
    snprintf(a.path, sizeof a.path, "/jobs/%s/checkpoints/step_%07d.safetensors", job, step);
    a.bytes = 1000 + step;
    memset(a.sha256, 'a', 64);
    a.step = step;
    OK(store_artifact_put(s, &a, err, E));
}

static void put_metric(dt_store *s, const char *job, const char *name, int step, double v) {
    json_t *value = isnan(v) ? json_null() : json_real(v);
    OK(store_metric_append(s, job, name, step, value, 0, err, E));
    json_decref(value);
}

/* The list as "step:reasons" items joined by spaces, reasons joined by "+", "-" for none, a
 * "*" after a pinned one: "10:- 20:best_fid 30:newest". */
static void list_str(dt_store *s, const char *job, char *out, size_t len) {
    json_t *l = NULL;
    out[0] = 0;
    OK(store_checkpoint_list(s, job, &l, err, E));
    size_t i, k;
    json_t *c, *r;
    json_array_foreach(json_object_get(l, "data"), i, c) {
        size_t n = strlen(out);
        snprintf(out + n, len - n, "%s%lld:", i ? " " : "",
                 (long long)json_integer_value(json_object_get(c, "step")));
        json_t *why = json_object_get(c, "kept_because");
        if (!json_array_size(why)) strncat(out, "-", len - strlen(out) - 1);
        json_array_foreach(why, k, r) {
            if (k) strncat(out, "+", len - strlen(out) - 1);
            strncat(out, json_string_value(r), len - strlen(out) - 1);
        }
        if (json_is_true(json_object_get(c, "pinned"))) strncat(out, "*", len - strlen(out) - 1);
        CHECK(json_is_integer(json_object_get(c, "bytes")) && json_is_string(json_object_get(c, "sha256")) &&
              json_is_string(json_object_get(c, "name")) && json_is_number(json_object_get(c, "created_at")),
              "a listed checkpoint has the artifact fields");
    }
    json_decref(l);
}

#define EXPECT_LIST(s, job, want, what) do { char got_[1024]; list_str((s), (job), got_, sizeof got_); \
    CHECK(!strcmp(got_, (want)), "%s: %s, want %s", (what), got_, (want)); } while (0)

/* The paths under key of a prune result as the steps they name ("10 20"). */
static void prune_steps(json_t *res, const char *key, char *out, size_t len) {
    size_t i;
    json_t *p;
    out[0] = 0;
    json_array_foreach(json_object_get(res, key), i, p) {
        const char *path = json_string_value(p), *at = path ? strstr(path, "step_") : NULL;
        size_t n = strlen(out);
        snprintf(out + n, len - n, "%s%d", i ? " " : "", at ? atoi(at + 5) : -1);
    }
}

#define EXPECT_PRUNE(s, job, want_removed, want_stateless) do { \
    json_t *res_ = NULL; char r_[256], st_[256]; \
    OK(store_checkpoint_prune((s), (job), &res_, err, E)); \
    prune_steps(res_, "removed", r_, sizeof r_); prune_steps(res_, "stateless", st_, sizeof st_); \
    CHECK(!strcmp(r_, (want_removed)), "removed %s, want %s", r_, (want_removed)); \
    CHECK(!strcmp(st_, (want_stateless)), "stateless %s, want %s", st_, (want_stateless)); \
    json_decref(res_); } while (0)

static void test_store(const char *dir) {
    dt_store *s = NULL;
    OK(store_open(check_path(dir, "retention.db"), NULL, &s, err, E));
    if (!s) return;
    char job[DT_STORE_ID_MAX], other[DT_STORE_ID_MAX], plain[DT_STORE_ID_MAX];
    make_job(s, json_pack("{s:{s:i, s:i}, s:{s:s}}", "checkpoint", "every", 10, "keep", 2, "eval",
                          "extractor", "classifier:mdl_000000000000000000000001"), job);
    for (int step = 10; step <= 60; step += 10) put_ckpt(s, job, step);
    EXPECT_LIST(s, job, "10:- 20:- 30:- 40:- 50:newest 60:newest", "no evaluations yet");

    /* fd_classifier ranks (this job has a classifier extractor); fid points are not its metric,
     * a point between checkpoints names no checkpoint, a null one is no value */
    put_metric(s, job, "fd_classifier", 10, 9.5);
    put_metric(s, job, "fd_classifier", 15, 0.5);
    put_metric(s, job, "fd_classifier", 20, NAN);
    put_metric(s, job, "fd_classifier", 30, 2.25);
    put_metric(s, job, "fd_classifier", 40, 3.0);
    put_metric(s, job, "fid", 20, 0.1);
    put_metric(s, job, "loss", 40, 0.01);
    EXPECT_LIST(s, job, "10:- 20:- 30:best_fd_classifier 40:- 50:newest 60:newest",
                "the best by fd_classifier at a checkpoint step");

    json_t *c = NULL;
    OK(store_checkpoint_pin(s, job, "step_0000020.safetensors", 1, &c, err, E));
    CHECK(c && json_is_true(json_object_get(c, "pinned")) &&
          !strcmp(json_string_value(json_array_get(json_object_get(c, "kept_because"), 0)), "pinned") &&
          json_array_size(json_object_get(c, "kept_because")) == 1,
          "pin answers with the pinned checkpoint");
    json_decref(c);
    OK(store_checkpoint_pin(s, job, "step_0000020.safetensors", 1, NULL, err, E));
    EXPECT(store_checkpoint_pin(s, job, "step_0000025.safetensors", 1, NULL, err, E), DT_STORE_NOT_FOUND);
    EXPECT(store_checkpoint_pin(s, "job_000000000000000000000000", "step_0000020.safetensors", 1, NULL, err, E),
           DT_STORE_NOT_FOUND);
    EXPECT_LIST(s, job, "10:- 20:pinned* 30:best_fd_classifier 40:- 50:newest 60:newest", "pinned twice");

    /* prune: 10 and 40 go; 20 (pinned) and 30 (best) stay but lose their optimizer state */
    EXPECT_PRUNE(s, job, "10 40", "20 30");
    EXPECT_LIST(s, job, "20:pinned* 30:best_fd_classifier 50:newest 60:newest", "after the prune");
    dt_artifact a;
    EXPECT(store_artifact_get(s, job, DT_ARTIFACT_CHECKPOINT, "step_0000010.safetensors", &a, err, E),
           DT_STORE_NOT_FOUND);
    EXPECT_PRUNE(s, job, "", "20 30");

    /* a new checkpoint: 50 falls out of the newest and nothing else keeps it */
    put_ckpt(s, job, 70);
    put_metric(s, job, "fd_classifier", 50, 2.5);
    EXPECT_PRUNE(s, job, "50", "20 30");
    /* a later, better evaluation moves "best"; the old best goes at the next prune */
    put_metric(s, job, "fd_classifier", 60, 1.0);
    EXPECT_LIST(s, job, "20:pinned* 30:- 60:newest+best_fd_classifier 70:newest", "a new best");
    EXPECT_PRUNE(s, job, "30", "20");

    /* unpinned: it goes at the next prune; unpinning again is a no-op */
    OK(store_checkpoint_pin(s, job, "step_0000020.safetensors", 0, &c, err, E));
    CHECK(c && json_is_false(json_object_get(c, "pinned")) &&
          json_array_size(json_object_get(c, "kept_because")) == 0,
          "unpin answers with an unkept checkpoint");
    json_decref(c);
    OK(store_checkpoint_pin(s, job, "step_0000020.safetensors", 0, NULL, err, E));
    EXPECT_PRUNE(s, job, "20", "");
    EXPECT_LIST(s, job, "60:newest+best_fd_classifier 70:newest", "only the newest are left");

    /* a checkpoint reported again (a resumed worker) keeps its pin */
    OK(store_checkpoint_pin(s, job, "step_0000070.safetensors", 1, NULL, err, E));
    put_ckpt(s, job, 70);
    EXPECT_LIST(s, job, "60:newest+best_fd_classifier 70:newest+pinned*", "re-reported, still pinned");

    /* FID when the extractor is not a classifier; keep 3 when the spec does not say */
    make_job(s, json_pack("{s:{s:s}}", "eval", "extractor", "inception"), other);
    for (int step = 1; step <= 5; step++) put_ckpt(s, other, step);
    put_metric(s, other, "fid", 1, 40.0);
    put_metric(s, other, "fid", 2, 30.0);
    put_metric(s, other, "fd_classifier", 1, 1.0);
    EXPECT_LIST(s, other, "1:- 2:best_fid 3:newest 4:newest 5:newest", "fid, keep 3 by default");
    make_job(s, NULL, plain);
    EXPECT_LIST(s, plain, "", "a job without checkpoints");
    EXPECT_PRUNE(s, plain, "", "");
    json_t *l = NULL;
    EXPECT(store_checkpoint_list(s, "job_000000000000000000000000", &l, err, E), DT_STORE_NOT_FOUND);
    CHECK(l == NULL, "no list for an unknown job");
    EXPECT(store_checkpoint_prune(s, "job_000000000000000000000000", &l, err, E), DT_STORE_NOT_FOUND);
    CHECK(l == NULL, "no prune result for an unknown job");
    store_close(s);
}

/* A store from before pins (schema 5) with a checkpoint: once migrated, it is unpinned. */
static void test_migrate(const char *dir) {
    const char *path = check_path(dir, "schema5.db");
    dt_store *s = NULL;
    char job[DT_STORE_ID_MAX];
    OK(store_open(path, NULL, &s, err, E));
    if (!s) return;
    make_job(s, NULL, job);
    put_ckpt(s, job, 5);
    store_close(s);
    sqlite3 *db = NULL;
    CHECK(sqlite3_open(path, &db) == SQLITE_OK, "raw open");
    /* undo what migrations 6 and 8 add (7 rebuilds models and can run again) */
    CHECK(sqlite3_exec(db, "ALTER TABLE artifacts DROP COLUMN pinned; "
                           "ALTER TABLE jobs DROP COLUMN params_total; "
                           "ALTER TABLE jobs DROP COLUMN params_trainable; PRAGMA user_version = 5;",
                       NULL, NULL, NULL) == SQLITE_OK, "back to schema 5: %s", sqlite3_errmsg(db));
    sqlite3_close(db);
    s = NULL;
    OK(store_open(path, NULL, &s, err, E));
    if (!s) return;
    CHECK(store_schema_version(s) == store_schema_latest() && store_schema_latest() >= 6,
          "migrated to %d", store_schema_version(s));
    EXPECT_LIST(s, job, "5:newest", "an older checkpoint, unpinned");
    OK(store_checkpoint_pin(s, job, "step_0000005.safetensors", 1, NULL, err, E));
    EXPECT_LIST(s, job, "5:newest+pinned*", "and pinnable");
    store_close(s);
}

int main(void) {
    const char *dir = check_tmpdir("store_retention");
    test_rule();
    test_store(dir);
    test_migrate(dir);
    return check_done("test_store_retention");
}
