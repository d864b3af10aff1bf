/* test_store.c — the job server's store (db/store.h) on a real SQLite file: every operation and
 * every documented error, idempotency replay and conflict, stable pagination while jobs arrive,
 * claim order, the lifecycle guards, requeue until max_attempts, reconcile, release at shutdown
 * (attempt not charged), job counts by status, event paging,
 * catalog delete guards, API keys (secrets, hashes, scopes, revocation, lookups from several
 * threads), reopening (data kept, schema version right, newer schema refused), migrations from
 * older schemas, and two threads writing at once without losing anything. */
#include "store.h"
#include "check.h"
#include "store_check.h"

#include <pthread.h>
#include <sqlite3.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static char db_path[1200];
static char err[512];


/* 1 when o[key] is the string want (0 when absent or not a string, so a wrong answer fails
 * instead of crashing). */
static int jeq(json_t *o, const char *key, const char *want) {
    const char *v = json_string_value(json_object_get(o, key));
    return v && !strcmp(v, want);
}

/* o[key] as a string, "" when absent or not a string. */
static const char *jstr(json_t *o, const char *key) {
    const char *v = json_string_value(json_object_get(o, key));
    return v ? v : "";
}

static json_t *spec_for(const char *method, int priority, const char *device, const char *dataset,
                        const char *base_model) {
    json_t *s = json_pack("{s:s, s:i, s:s, s:{s:i, s:i}}", "method", method, "priority", priority,
                          "device", device, "hyperparameters", "steps", 100, "batch_size", 8);
    json_object_set_new(s, "dataset", dataset ? json_string(dataset) : json_null());
    json_object_set_new(s, "base_model", base_model ? json_string(base_model) : json_null());
    return s;
}

/* A queued job with the given priority and device; returns its id in id. */
static void make_job(dt_store *s, int priority, const char *device, char id[DT_STORE_ID_MAX]) {
    json_t *spec = spec_for("full", priority, device, "/data/somewhere", NULL);
    OK(store_job_create(s, spec, NULL, id, NULL, err, E));
    json_decref(spec);
}

static const char *job_str(dt_store *s, const char *id, const char *field, char *buf, size_t n) {
    json_t *j = NULL;
    buf[0] = '\0';
    OK(store_job_get(s, id, &j, err, E));
    if (j) snprintf(buf, n, "%s", json_is_string(json_object_get(j, field))
                                      ? json_string_value(json_object_get(j, field)) : "(null)");
    json_decref(j);
    return buf;
}

static long long job_int(dt_store *s, const char *id, const char *field) {
    json_t *j = NULL;
    OK(store_job_get(s, id, &j, err, E));
    long long v = j ? json_integer_value(json_object_get(j, field)) : -999;
    json_decref(j);
    return v;
}

#define CHECK_STATUS(s, id, want) do { char b_[32]; \
    CHECK(!strcmp(job_str((s), (id), "status", b_, sizeof b_), (want)), \
          "job status %s, want %s", b_, (want)); } while (0)

/* Every job id of the store through pages of size limit (status filter optional), newest first;
 * between pages, hook (if given) runs. Returns the count; ids go into out (cap entries). */
static int list_all(dt_store *s, const char *status, int limit, char (*out)[DT_STORE_ID_MAX],
                    int cap, void (*hook)(dt_store *, int page)) {
    char after[DT_STORE_ID_MAX] = "";
    int n = 0;
    for (int page = 0; page < 1000; page++) {
        json_t *p = NULL;
        OK(store_job_list(s, status, limit, after[0] ? after : NULL, &p, err, E));
        if (!p) break;
        json_t *data = json_object_get(p, "data");
        CHECK(json_array_size(data) <= (size_t)limit, "page larger than limit");
        size_t i;
        json_t *j;
        json_array_foreach(data, i, j) {
            if (n < cap) snprintf(out[n], DT_STORE_ID_MAX, "%s", jstr(j, "id"));
            n++;
        }
        int more = json_is_true(json_object_get(p, "has_more"));
        json_t *last = json_object_get(p, "last_id");
        if (json_array_size(data))
            CHECK(json_is_string(last) &&
                  !strcmp(json_string_value(last),
                          jstr(json_array_get(data, json_array_size(data) - 1), "id")),
                  "last_id is the last item's id");
        else
            CHECK(json_is_null(last), "last_id of an empty page is null");
        if (json_is_string(last)) snprintf(after, sizeof after, "%s", json_string_value(last));
        json_decref(p);
        if (!more) break;
        if (hook) hook(s, page);
    }
    return n;
}

/* ---- opening, ids ---------------------------------------------------------------------------- */

static void test_open_and_ids(dt_store *s) {
    CHECK(store_schema_version(s) == store_schema_latest() && store_schema_latest() >= 1,
          "schema version %d, latest %d", store_schema_version(s), store_schema_latest());
    CHECK(!strcmp(store_code_name(DT_STORE_CONFLICT), "conflict"), "code name");
    CHECK(!strcmp(store_code_name(DT_STORE_NOT_FOUND), "not_found"), "code name");

    char a[DT_STORE_ID_MAX], b[DT_STORE_ID_MAX];
    OK(store_new_id("job_", a, sizeof a));
    OK(store_new_id("job_", b, sizeof b));
    CHECK(strlen(a) == 28 && !strncmp(a, "job_", 4) && strspn(a + 4, "0123456789abcdef") == 24,
          "id format: %s", a);
    CHECK(strcmp(a, b) != 0, "two ids differ");
    char small[20];
    CHECK(store_new_id("job_", small, sizeof small) == DT_STORE_ERROR, "too small a buffer");

    dt_store *bad = NULL;
    EXPECT(store_open("/nonexistent-dir/x/y.db", NULL, &bad, err, E), DT_STORE_ERROR);
    CHECK(bad == NULL, "failed open leaves no handle");

    dt_job_status st;
    OK(store_job_status_parse("cancelled", &st));
    CHECK(st == DT_JOB_CANCELLED && store_job_status_terminal(st), "parse cancelled");
    CHECK(store_job_status_parse("done", &st) == DT_STORE_INVALID, "unknown status name");
    CHECK(!store_job_status_terminal(DT_JOB_RUNNING), "running is not terminal");
}

/* ---- create, get ----------------------------------------------------------------------------- */

static void test_create_get(dt_store *s) {
    json_t *spec = spec_for("diff_tuning", 7, "auto", "/data/x", NULL);
    char id[DT_STORE_ID_MAX];
    int replayed = -1;
    double before = (double)time(NULL) - 1;
    OK(store_job_create(s, spec, NULL, id, &replayed, err, E));
    CHECK(replayed == 0, "a new job is not a replay");
    CHECK(!strncmp(id, "job_", 4) && strlen(id) == 28, "job id %s", id);

    json_t *j = NULL;
    OK(store_job_get(s, id, &j, err, E));
    CHECK(j && json_is_object(j), "job object");
    if (j) {
        CHECK(jeq(j, "id", id), "id");
        CHECK(jeq(j, "object", "job"), "object");
        CHECK(jeq(j, "status", "queued"), "status");
        CHECK(jeq(j, "method", "diff_tuning"), "method");
        CHECK(json_equal(json_object_get(j, "spec"), spec), "spec round trip");
        CHECK(json_integer_value(json_object_get(j, "priority")) == 7, "priority");
        CHECK(json_integer_value(json_object_get(j, "attempt")) == 0, "attempt");
        CHECK(json_integer_value(json_object_get(j, "max_attempts")) == 3, "max_attempts");
        double created = json_number_value(json_object_get(j, "created_at"));
        CHECK(json_is_real(json_object_get(j, "created_at")) && created >= before &&
              created <= before + 60, "created_at %f", created);
        const char *nulls[] = {"started_at", "finished_at", "device", "progress", "error",
                               "parameters"};
        for (int i = 0; i < 6; i++)
            CHECK(json_is_null(json_object_get(j, nulls[i])), "%s is null", nulls[i]);
        CHECK(json_is_false(json_object_get(j, "cancel_requested")), "cancel_requested");
    }
    json_decref(j);

    EXPECT(store_job_get(s, "job_000000000000000000000000", &j, err, E), DT_STORE_NOT_FOUND);
    CHECK(j == NULL && strstr(err, "job_000000000000000000000000"), "not found names the id");

    /* bad specs and options */
    json_t *arr = json_array();
    EXPECT(store_job_create(s, arr, NULL, id, NULL, err, E), DT_STORE_INVALID);
    json_decref(arr);
    json_t *nomethod = json_pack("{s:i}", "priority", 1);
    EXPECT(store_job_create(s, nomethod, NULL, id, NULL, err, E), DT_STORE_INVALID);
    json_decref(nomethod);
    json_t *badprio = json_pack("{s:s, s:s}", "method", "full", "priority", "high");
    EXPECT(store_job_create(s, badprio, NULL, id, NULL, err, E), DT_STORE_INVALID);
    json_decref(badprio);
    dt_job_create_opts o = {.max_attempts = -1};
    EXPECT(store_job_create(s, spec, &o, id, NULL, err, E), DT_STORE_INVALID);
    dt_job_create_opts nohash = {.idempotency_key = "k"};
    EXPECT(store_job_create(s, spec, &nohash, id, NULL, err, E), DT_STORE_INVALID);
    /* a dataset or base model named by id must exist */
    json_t *ghost = spec_for("full", 0, "auto", "ds_000000000000000000000000", NULL);
    EXPECT(store_job_create(s, ghost, NULL, id, NULL, err, E), DT_STORE_NOT_FOUND);
    CHECK(strstr(err, "ds_000000000000000000000000") != NULL, "names the dataset: %s", err);
    json_decref(ghost);
    ghost = spec_for("full", 0, "auto", "/data/x", "mdl_000000000000000000000000");
    EXPECT(store_job_create(s, ghost, NULL, id, NULL, err, E), DT_STORE_NOT_FOUND);
    json_decref(ghost);
    o.max_attempts = 5;
    OK(store_job_create(s, spec, &o, id, NULL, err, E));
    CHECK(job_int(s, id, "max_attempts") == 5, "max_attempts option");

    /* parameter counts: given, they are the job's "parameters" in get and list alike */
    dt_job_create_opts counts = {.params_total = 675129632, .params_trainable = 1234567};
    OK(store_job_create(s, spec, &counts, id, NULL, err, E));
    OK(store_job_get(s, id, &j, err, E));
    json_t *p = j ? json_object_get(j, "parameters") : NULL;
    CHECK(p && json_integer_value(json_object_get(p, "total")) == 675129632 &&
          json_integer_value(json_object_get(p, "trainable")) == 1234567 && json_object_size(p) == 2,
          "parameters {total, trainable}");
    json_decref(j);
    char *text = NULL;
    size_t len = 0;
    OK(store_job_get_text(s, id, &text, &len, err, E));
    CHECK(text && strstr(text, "\"parameters\":{\"total\":675129632,\"trainable\":1234567}"),
          "parameters in the text form: %s", text ? text : "(null)");
    free(text);
    json_t *page = NULL;
    OK(store_job_list(s, NULL, 1, NULL, &page, err, E));
    json_t *first = page ? json_array_get(json_object_get(page, "data"), 0) : NULL;
    CHECK(first && jeq(first, "id", id) &&
          json_integer_value(json_object_get(json_object_get(first, "parameters"), "trainable")) ==
              1234567, "parameters in the list");
    json_decref(page);
    dt_job_create_opts all = {.params_total = 10, .params_trainable = 10};
    OK(store_job_create(s, spec, &all, id, NULL, err, E));
    OK(store_job_get(s, id, &j, err, E));
    CHECK(j && json_integer_value(json_object_get(json_object_get(j, "parameters"), "trainable")) == 10,
          "trainable = total");
    json_decref(j);
    dt_job_create_opts more = {.params_total = 10, .params_trainable = 11};
    EXPECT(store_job_create(s, spec, &more, id, NULL, err, E), DT_STORE_INVALID);
    dt_job_create_opts negative = {.params_total = -1};
    EXPECT(store_job_create(s, spec, &negative, id, NULL, err, E), DT_STORE_INVALID);
    json_decref(spec);
}

static int count_jobs(dt_store *s) {
    static char ids[4096][DT_STORE_ID_MAX];
    return list_all(s, NULL, 100, ids, 4096, NULL);
}

static void test_idempotency(dt_store *s) {
    json_t *spec = spec_for("full", 0, "auto", "/d", NULL);
    dt_job_create_opts o = {.idempotency_key = "key-1", .request_hash = "hash-a"};
    char a[DT_STORE_ID_MAX], b[DT_STORE_ID_MAX], c[DT_STORE_ID_MAX];
    int replayed = -1;
    int n0 = count_jobs(s);
    OK(store_job_create(s, spec, &o, a, &replayed, err, E));
    CHECK(replayed == 0, "first use of a key is no replay");
    OK(store_job_create(s, spec, &o, b, &replayed, err, E));
    CHECK(replayed == 1 && !strcmp(a, b), "same key, same hash: the same job (%s vs %s)", a, b);
    CHECK(count_jobs(s) == n0 + 1, "a replay stores nothing");

    dt_job_create_opts other = {.idempotency_key = "key-1", .request_hash = "hash-b"};
    EXPECT(store_job_create(s, spec, &other, c, &replayed, err, E), DT_STORE_CONFLICT);
    CHECK(count_jobs(s) == n0 + 1 && c[0] == '\0', "a conflict stores nothing");

    dt_job_create_opts fresh = {.idempotency_key = "key-2", .request_hash = "hash-a"};
    OK(store_job_create(s, spec, &fresh, c, &replayed, err, E));
    CHECK(replayed == 0 && strcmp(c, a) != 0, "another key makes another job");

    dt_job_create_opts longkey = {.request_hash = "h"};
    char big[400];
    memset(big, 'k', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    longkey.idempotency_key = big;
    EXPECT(store_job_create(s, spec, &longkey, c, NULL, err, E), DT_STORE_INVALID);

    /* pruning forgets keys (not jobs): the old key then makes a new job */
    EXPECT(store_idempotency_prune(s, 0, err, E), 0);
    EXPECT(store_idempotency_prune(s, (double)time(NULL) + 10, err, E), 2);
    OK(store_job_create(s, spec, &other, c, &replayed, err, E));
    CHECK(replayed == 0 && strcmp(c, a) != 0, "a pruned key is new again");
    CHECK(job_int(s, a, "attempt") == 0, "pruning keeps the job");
    json_decref(spec);
}

/* ---- listing --------------------------------------------------------------------------------- */

static void insert_between_pages(dt_store *s, int page) {
    char id[DT_STORE_ID_MAX];
    for (int i = 0; i < 3 + page; i++) make_job(s, 0, "auto", id);
}

static void test_pagination(const char *dir) {
    char path[1300];
    snprintf(path, sizeof path, "%s/pages.db", dir);
    dt_store *s = NULL;
    OK(store_open(path, NULL, &s, err, E));
    if (!s) return;
    enum { N = 25 };
    char made[N][DT_STORE_ID_MAX];
    for (int i = 0; i < N; i++) make_job(s, i % 3, "auto", made[i]);

    static char got[200][DT_STORE_ID_MAX];
    int n = list_all(s, NULL, 7, got, 200, insert_between_pages);
    CHECK(n == N, "paging while jobs arrive sees exactly the first %d jobs, got %d", N, n);
    for (int i = 0; i < N && i < n; i++)
        CHECK(!strcmp(got[i], made[N - 1 - i]), "newest first: position %d", i);
    int total = list_all(s, NULL, 100, got, 200, NULL);
    CHECK(total == N + 3 + 4 + 5, "all jobs on one page: %d", total);
    int shown = total < 200 ? total : 200;
    for (int i = 0; i < shown; i++)
        for (int k = i + 1; k < shown; k++) CHECK(strcmp(got[i], got[k]) != 0, "repeated %d", i);

    /* status filter: claim 5 of them and page through the running ones 2 at a time */
    char claimed[5][DT_STORE_ID_MAX];
    for (int i = 0; i < 5; i++) EXPECT(store_job_claim(s, "cpu", claimed[i], err, E), 1);
    n = list_all(s, "running", 2, got, 200, NULL);
    CHECK(n == 5, "5 running, listed %d", n);
    for (int i = 0; i < n && i < 5; i++) {
        int found = 0;
        for (int k = 0; k < 5; k++) found |= !strcmp(got[i], claimed[k]);
        CHECK(found, "listed running job %s was claimed", got[i]);
    }
    CHECK(list_all(s, "queued", 10, got, 200, NULL) == total - 5, "queued count");
    CHECK(list_all(s, "failed", 10, got, 200, NULL) == 0, "no failed jobs");

    json_t *p = NULL;
    EXPECT(store_job_list(s, NULL, 0, NULL, &p, err, E), DT_STORE_INVALID);
    EXPECT(store_job_list(s, NULL, 101, NULL, &p, err, E), DT_STORE_INVALID);
    EXPECT(store_job_list(s, "bogus", 10, NULL, &p, err, E), DT_STORE_INVALID);
    EXPECT(store_job_list(s, NULL, 10, "job_000000000000000000000000", &p, err, E),
           DT_STORE_INVALID);
    CHECK(p == NULL, "no page on error");
    OK(store_job_list(s, NULL, 100, NULL, &p, err, E));
    CHECK(p && json_is_false(json_object_get(p, "has_more")), "one page holds all");
    json_decref(p);
    store_close(s);
}

/* ---- dispatch and lifecycle ------------------------------------------------------------------ */

static void test_claim_order(const char *dir) {
    char path[1300];
    snprintf(path, sizeof path, "%s/claim.db", dir);
    dt_store *s = NULL;
    OK(store_open(path, NULL, &s, err, E));
    if (!s) return;
    char a[DT_STORE_ID_MAX], b[DT_STORE_ID_MAX], c[DT_STORE_ID_MAX], d[DT_STORE_ID_MAX],
        e[DT_STORE_ID_MAX], g[DT_STORE_ID_MAX], id[DT_STORE_ID_MAX];
    make_job(s, 0, "auto", a);
    make_job(s, 5, "auto", b);
    make_job(s, 0, "auto", c);
    make_job(s, 5, "auto", d);
    make_job(s, -1, "auto", e);
    make_job(s, 50, "cuda:1", g); /* only a cuda:1 slot may take it */
    const char *want[] = {b, d, a, c, e};
    for (int i = 0; i < 5; i++) {
        EXPECT(store_job_claim(s, "cpu", id, err, E), 1);
        CHECK(!strcmp(id, want[i]), "claim %d: got %s, want %s", i, id, want[i]);
    }
    EXPECT(store_job_claim(s, "cpu", id, err, E), 0);
    CHECK(id[0] == '\0', "nothing claimed");
    EXPECT(store_job_claim(s, "cuda:1", id, err, E), 1);
    CHECK(!strcmp(id, g), "the device-bound job goes to its device");
    EXPECT(store_job_claim(s, "cuda:1", id, err, E), 0);

    json_t *j = NULL;
    OK(store_job_get(s, b, &j, err, E));
    if (j) {
        CHECK(jeq(j, "status", "running"), "running");
        CHECK(json_integer_value(json_object_get(j, "attempt")) == 1, "attempt 1");
        CHECK(jeq(j, "device", "cpu"), "device");
        CHECK(json_is_real(json_object_get(j, "started_at")), "started_at set");
    }
    json_decref(j);
    store_close(s);
}

static void test_transitions(dt_store *s) {
    char id[DT_STORE_ID_MAX], q[DT_STORE_ID_MAX], got[DT_STORE_ID_MAX];
    const char *ghost = "job_ffffffffffffffffffffffff";
    /* drain whatever earlier tests queued so claims below take our jobs */
    while (store_job_claim(s, "cpu", got, err, E) == 1) {}

    make_job(s, 0, "auto", id);
    EXPECT(store_job_finish(s, id, DT_JOB_SUCCEEDED, NULL, NULL, err, E), DT_STORE_CONFLICT);
    json_t *prog = json_pack("{s:s, s:i, s:i}", "phase", "training", "step", 10, "total_steps",
                             100);
    EXPECT(store_job_set_progress(s, id, prog, err, E), DT_STORE_CONFLICT);
    EXPECT(store_job_claim(s, "cpu", got, err, E), 1);
    CHECK(!strcmp(got, id), "claimed ours");
    OK(store_job_set_progress(s, id, prog, err, E));
    json_t *j = NULL;
    OK(store_job_get(s, id, &j, err, E));
    CHECK(j && json_equal(json_object_get(j, "progress"), prog), "progress stored");
    json_decref(j);
    json_t *notobj = json_integer(3);
    EXPECT(store_job_set_progress(s, id, notobj, err, E), DT_STORE_INVALID);
    json_decref(notobj);
    EXPECT(store_job_set_progress(s, ghost, prog, err, E), DT_STORE_NOT_FOUND);

    EXPECT(store_job_finish(s, id, DT_JOB_QUEUED, NULL, NULL, err, E), DT_STORE_INVALID);
    EXPECT(store_job_finish(s, id, DT_JOB_FAILED, NULL, NULL, err, E), DT_STORE_INVALID);
    EXPECT(store_job_finish(s, ghost, DT_JOB_SUCCEEDED, NULL, NULL, err, E), DT_STORE_NOT_FOUND);
    OK(store_job_finish(s, id, DT_JOB_SUCCEEDED, NULL, NULL, err, E));
    CHECK_STATUS(s, id, "succeeded");
    OK(store_job_get(s, id, &j, err, E));
    CHECK(j && json_is_real(json_object_get(j, "finished_at")) &&
          json_is_null(json_object_get(j, "error")), "finished_at set, no error");
    json_decref(j);

    /* terminal states never change */
    EXPECT(store_job_finish(s, id, DT_JOB_FAILED, "x", "y", err, E), DT_STORE_CONFLICT);
    EXPECT(store_job_finish(s, id, DT_JOB_SUCCEEDED, NULL, NULL, err, E), DT_STORE_CONFLICT);
    EXPECT(store_job_cancel(s, id, NULL, err, E), DT_STORE_CONFLICT);
    EXPECT(store_job_retry(s, id, err, E), DT_STORE_CONFLICT);
    EXPECT(store_job_requeue(s, id, "worker_died", NULL, NULL, err, E), DT_STORE_CONFLICT);
    EXPECT(store_job_set_progress(s, id, prog, err, E), DT_STORE_CONFLICT);
    CHECK_STATUS(s, id, "succeeded");
    json_decref(prog);

    /* a failure carries its error */
    make_job(s, 0, "auto", id);
    EXPECT(store_job_claim(s, "cpu", got, err, E), 1);
    OK(store_job_finish(s, id, DT_JOB_FAILED, "diverged", "loss became NaN at step 12", err, E));
    OK(store_job_get(s, id, &j, err, E));
    json_t *error = j ? json_object_get(j, "error") : NULL;
    CHECK(error && jeq(error, "code", "diverged") &&
          jeq(error, "message", "loss became NaN at step 12"), "error object");
    json_decref(j);

    /* cancel: queued at once, running only marked */
    dt_job_status st = DT_JOB_QUEUED;
    make_job(s, 0, "auto", q);
    OK(store_job_cancel(s, q, &st, err, E));
    CHECK(st == DT_JOB_CANCELLED, "a queued job is cancelled at once");
    CHECK_STATUS(s, q, "cancelled");
    EXPECT(store_job_claim(s, "cpu", got, err, E), 0);
    EXPECT(store_job_cancel(s, q, &st, err, E), DT_STORE_CONFLICT);
    EXPECT(store_job_cancel(s, ghost, &st, err, E), DT_STORE_NOT_FOUND);

    make_job(s, 0, "auto", id);
    EXPECT(store_job_claim(s, "cpu", got, err, E), 1);
    OK(store_job_cancel(s, id, &st, err, E));
    CHECK(st == DT_JOB_RUNNING, "a running job keeps running until its worker stops");
    OK(store_job_get(s, id, &j, err, E));
    CHECK(j && json_is_true(json_object_get(j, "cancel_requested")) &&
          jeq(j, "status", "running"), "cancel_requested");
    json_decref(j);
    OK(store_job_cancel(s, id, &st, err, E)); /* asking twice is harmless */
    OK(store_job_finish(s, id, DT_JOB_CANCELLED, NULL, NULL, err, E));
    CHECK_STATUS(s, id, "cancelled");

    /* a cancel-requested job whose worker dies is cancelled, not requeued */
    make_job(s, 0, "auto", id);
    EXPECT(store_job_claim(s, "cpu", got, err, E), 1);
    OK(store_job_cancel(s, id, NULL, err, E));
    OK(store_job_requeue(s, id, "worker_died", NULL, &st, err, E));
    CHECK(st == DT_JOB_CANCELLED, "requeue after a cancel request ends cancelled (%d)", st);
    CHECK_STATUS(s, id, "cancelled");
}

static void test_requeue_and_retry(dt_store *s) {
    char id[DT_STORE_ID_MAX], got[DT_STORE_ID_MAX];
    while (store_job_claim(s, "cpu", got, err, E) == 1) {}
    json_t *spec = spec_for("full", 0, "auto", "/d", NULL);
    dt_job_create_opts o = {.max_attempts = 3};
    OK(store_job_create(s, spec, &o, id, NULL, err, E));
    json_decref(spec);
    EXPECT(store_job_requeue(s, id, "worker_died", NULL, NULL, err, E), DT_STORE_CONFLICT);

    dt_job_status st;
    for (int attempt = 1; attempt <= 3; attempt++) {
        EXPECT(store_job_claim(s, "cuda:0", got, err, E), 1);
        CHECK(!strcmp(got, id) && job_int(s, id, "attempt") == attempt, "attempt %d", attempt);
        json_t *prog = json_pack("{s:s, s:i}", "phase", "training", "step", 10 * attempt);
        OK(store_job_set_progress(s, id, prog, err, E));
        json_decref(prog);
        OK(store_job_requeue(s, id, "worker_died", "killed by signal 9", &st, err, E));
        CHECK(st == (attempt < 3 ? DT_JOB_QUEUED : DT_JOB_FAILED), "after attempt %d: %s",
              attempt, store_job_status_name(st));
        if (attempt < 3) {
            json_t *j = NULL;
            OK(store_job_get(s, id, &j, err, E));
            CHECK(j && json_is_null(json_object_get(j, "device")) &&
                  json_is_null(json_object_get(j, "started_at")) &&
                  json_is_null(json_object_get(j, "progress")) &&
                  json_is_null(json_object_get(j, "error")),
                  "requeued job: no device, start, progress (of the ended attempt) or error");
            json_decref(j);
        }
    }
    CHECK_STATUS(s, id, "failed");
    json_t *j = NULL;
    OK(store_job_get(s, id, &j, err, E));
    CHECK(j && jeq(json_object_get(j, "error"), "code", "worker_died"),
          "exhausted attempts fail with the given code");
    CHECK(j && json_integer_value(json_object_get(json_object_get(j, "progress"), "step")) == 30,
          "a failed job keeps the progress its last attempt reached");
    json_decref(j);
    EXPECT(store_job_claim(s, "cpu", got, err, E), 0);

    /* retry: queued again with a fresh budget, history kept */
    OK(store_job_retry(s, id, err, E));
    OK(store_job_get(s, id, &j, err, E));
    if (j) {
        CHECK(jeq(j, "status", "queued"), "retried");
        CHECK(json_integer_value(json_object_get(j, "attempt")) == 3, "attempt kept");
        CHECK(json_integer_value(json_object_get(j, "max_attempts")) == 6, "fresh budget");
        CHECK(json_is_null(json_object_get(j, "error")) &&
              json_is_null(json_object_get(j, "finished_at")) &&
              json_is_null(json_object_get(j, "progress")), "error and progress cleared");
    }
    json_decref(j);
    EXPECT(store_job_retry(s, id, err, E), DT_STORE_CONFLICT); /* queued */
    EXPECT(store_job_claim(s, "cpu", got, err, E), 1);
    CHECK(job_int(s, id, "attempt") == 4, "the retry is attempt 4");
    OK(store_job_requeue(s, id, "worker_died", NULL, &st, err, E));
    CHECK(st == DT_JOB_QUEUED, "the retry has attempts left");
    EXPECT(store_job_retry(s, "job_ffffffffffffffffffffffff", err, E), DT_STORE_NOT_FOUND);
}

static void test_reconcile(const char *dir) {
    char path[1300];
    snprintf(path, sizeof path, "%s/reconcile.db", dir);
    dt_store *s = NULL;
    OK(store_open(path, NULL, &s, err, E));
    if (!s) return;
    char a[DT_STORE_ID_MAX], b[DT_STORE_ID_MAX], c[DT_STORE_ID_MAX], q[DT_STORE_ID_MAX],
        got[DT_STORE_ID_MAX];
    json_t *spec = spec_for("full", 0, "auto", "/d", NULL);
    dt_job_create_opts once = {.max_attempts = 1};
    OK(store_job_create(s, spec, NULL, a, NULL, err, E));
    OK(store_job_create(s, spec, &once, b, NULL, err, E));
    OK(store_job_create(s, spec, NULL, c, NULL, err, E));
    json_decref(spec);
    for (int i = 0; i < 3; i++) EXPECT(store_job_claim(s, "cpu", got, err, E), 1);
    make_job(s, 0, "auto", q);

    const char *live[] = {c};
    EXPECT(store_job_reconcile(s, live, 1, "server_restart", "the server restarted", err, E), 2);
    CHECK_STATUS(s, a, "queued");
    CHECK_STATUS(s, b, "failed");
    CHECK_STATUS(s, c, "running");
    CHECK_STATUS(s, q, "queued");
    char code[64];
    json_t *j = NULL;
    OK(store_job_get(s, b, &j, err, E));
    snprintf(code, sizeof code, "%s",
             jstr(json_object_get(j, "error"), "code"));
    CHECK(!strcmp(code, "server_restart"), "failed with the reconcile code: %s", code);
    json_decref(j);
    EXPECT(store_job_reconcile(s, NULL, 0, "server_restart", NULL, err, E), 1);
    CHECK_STATUS(s, c, "queued");
    EXPECT(store_job_reconcile(s, NULL, 0, "server_restart", NULL, err, E), 0);
    store_close(s);
}

/* The data of the job's newest event (a new reference; NULL when it has none), its type into
 * type (typelen bytes). */
static json_t *last_event(dt_store *s, const char *id, char *type, size_t typelen) {
    json_t *p = NULL, *data = NULL;
    type[0] = '\0';
    OK(store_event_list(s, id, 0, DT_STORE_EVENTS_MAX, &p, err, E));
    json_t *events = json_object_get(p, "data");
    json_t *ev = json_array_get(events, json_array_size(events) - 1);
    if (ev) {
        snprintf(type, typelen, "%s", jstr(ev, "type"));
        data = json_incref(json_object_get(ev, "data"));
    }
    json_decref(p);
    return data;
}

static void test_release(dt_store *s) {
    char id[DT_STORE_ID_MAX], got[DT_STORE_ID_MAX], type[32];
    const char *ghost = "job_ffffffffffffffffffffffff";
    while (store_job_claim(s, "cpu", got, err, E) == 1) {}
    json_t *spec = spec_for("full", 0, "auto", "/d", NULL);
    dt_job_create_opts once = {.max_attempts = 1};
    OK(store_job_create(s, spec, &once, id, NULL, err, E));
    json_decref(spec);
    EXPECT(store_job_release(s, id, err, E), DT_STORE_CONFLICT); /* queued */
    EXPECT(store_job_release(s, ghost, err, E), DT_STORE_NOT_FOUND);

    EXPECT(store_job_claim(s, "cuda:0", got, err, E), 1);
    CHECK(!strcmp(got, id), "claimed ours");
    json_t *prog = json_pack("{s:s, s:i}", "phase", "training", "step", 40);
    OK(store_job_set_progress(s, id, prog, err, E));
    json_decref(prog);
    OK(store_job_release(s, id, err, E));
    json_t *j = NULL;
    OK(store_job_get(s, id, &j, err, E));
    CHECK(j && jeq(j, "status", "queued"), "released: queued again");
    CHECK(j && json_integer_value(json_object_get(j, "attempt")) == 1 &&
          json_integer_value(json_object_get(j, "max_attempts")) == 2,
          "the attempt still counts, the budget grew by one");
    CHECK(j && json_is_null(json_object_get(j, "device")) &&
          json_is_null(json_object_get(j, "started_at")) &&
          json_is_null(json_object_get(j, "progress")) &&
          json_is_null(json_object_get(j, "error")),
          "released: no device, start, progress or error");
    json_decref(j);
    json_t *ev = last_event(s, id, type, sizeof type);
    CHECK(!strcmp(type, "status") && jeq(ev, "status", "queued") &&
          json_integer_value(json_object_get(ev, "attempt")) == 1 &&
          jeq(json_object_get(ev, "reason"), "code", "server_shutdown") &&
          jstr(json_object_get(ev, "reason"), "message")[0],
          "release writes a queued status event with the server_shutdown reason");
    json_decref(ev);
    EXPECT(store_job_release(s, id, err, E), DT_STORE_CONFLICT); /* queued again */

    /* the one attempt the job was given is still there: the next death is what fails it */
    EXPECT(store_job_claim(s, "cpu", got, err, E), 1);
    CHECK(!strcmp(got, id) && job_int(s, id, "attempt") == 2, "released job claimed again");
    dt_job_status st = DT_JOB_RUNNING;
    OK(store_job_requeue(s, id, "worker_died", NULL, &st, err, E));
    CHECK(st == DT_JOB_FAILED, "after its one charged attempt the job fails (%s)",
          store_job_status_name(st));
    EXPECT(store_job_release(s, id, err, E), DT_STORE_CONFLICT); /* terminal */
    CHECK_STATUS(s, id, "failed");

    /* a job whose cancel was requested is cancelled, its budget unchanged */
    make_job(s, 0, "auto", id);
    EXPECT(store_job_claim(s, "cpu", got, err, E), 1);
    OK(store_job_cancel(s, id, NULL, err, E));
    long long budget = job_int(s, id, "max_attempts");
    OK(store_job_release(s, id, err, E));
    CHECK_STATUS(s, id, "cancelled");
    CHECK(job_int(s, id, "max_attempts") == budget, "a cancelled release keeps max_attempts");
    ev = last_event(s, id, type, sizeof type);
    CHECK(!strcmp(type, "status") && jeq(ev, "status", "cancelled"),
          "the cancelled status is the last event");
    json_decref(ev);
}

static void check_counts(dt_store *s, const int64_t want[5], const char *when) {
    int64_t got[5] = {-1, -1, -1, -1, -1};
    OK(store_job_counts(s, got, err, E));
    for (int i = 0; i < 5; i++)
        CHECK(got[i] == want[i], "%s: %lld %s jobs, want %lld", when, (long long)got[i],
              store_job_status_name((dt_job_status)i), (long long)want[i]);
}

static void test_counts(const char *dir) {
    char path[1300];
    snprintf(path, sizeof path, "%s/counts.db", dir);
    dt_store *s = NULL;
    OK(store_open(path, NULL, &s, err, E));
    if (!s) return;
    check_counts(s, (int64_t[5]){0, 0, 0, 0, 0}, "empty store");
    int64_t newest = -1;
    OK(store_event_last_id(s, &newest, err, E));
    CHECK(newest == 0, "no event yet: the newest event id is 0 (%lld)", (long long)newest);
    char ids[7][DT_STORE_ID_MAX], got[DT_STORE_ID_MAX];
    for (int i = 0; i < 7; i++) make_job(s, 0, "auto", ids[i]);
    check_counts(s, (int64_t[5]){7, 0, 0, 0, 0}, "seven queued");
    for (int i = 0; i < 5; i++) EXPECT(store_job_claim(s, "cpu", got, err, E), 1);
    OK(store_job_finish(s, ids[0], DT_JOB_SUCCEEDED, NULL, NULL, err, E));
    OK(store_job_finish(s, ids[1], DT_JOB_FAILED, "training_failed", "x", err, E));
    OK(store_job_finish(s, ids[2], DT_JOB_FAILED, "invalid_input", "y", err, E));
    OK(store_job_cancel(s, ids[6], NULL, err, E));
    check_counts(s, (int64_t[5]){1, 2, 1, 2, 1}, "mixed");
    store_close(s);
}

/* ---- events, metrics, artifacts -------------------------------------------------------------- */

static void test_events(dt_store *s) {
    char id[DT_STORE_ID_MAX], got[DT_STORE_ID_MAX];
    while (store_job_claim(s, "cpu", got, err, E) == 1) {}
    make_job(s, 0, "auto", id);
    EXPECT(store_job_claim(s, "cpu", got, err, E), 1);
    enum { N = 23 };
    int64_t ids[N], prev = 0;
    for (int i = 0; i < N; i++) {
        json_t *d = json_pack("{s:i}", "step", i);
        OK(store_event_append(s, id, "progress", d, 0, &ids[i], err, E));
        json_decref(d);
        CHECK(ids[i] > prev, "event ids grow");
        prev = ids[i];
    }
    OK(store_event_append(s, id, "log", NULL, 12345.5, NULL, err, E));
    OK(store_job_finish(s, id, DT_JOB_SUCCEEDED, NULL, NULL, err, E));
    json_t *late = json_object();
    EXPECT(store_event_append(s, id, "log", late, 0, NULL, err, E), DT_STORE_CONFLICT);
    EXPECT(store_event_append(s, "job_ffffffffffffffffffffffff", "log", late, 0, NULL, err, E),
           DT_STORE_NOT_FOUND);
    EXPECT(store_event_append(s, id, "", late, 0, NULL, err, E), DT_STORE_INVALID);
    json_decref(late);

    /* page through: queued, running, 23 progress, the log, succeeded */
    int64_t after = 0, last = 0;
    int n = 0, progress = 0, pages = 0;
    char first_type[32] = "", last_type[32] = "", last_status[32] = "";
    for (;;) {
        json_t *p = NULL;
        OK(store_event_list(s, id, after, 4, &p, err, E));
        if (!p) break;
        pages++;
        size_t i;
        json_t *ev;
        json_array_foreach(json_object_get(p, "data"), i, ev) {
            int64_t eid = json_integer_value(json_object_get(ev, "id"));
            CHECK(eid > last, "events in id order, none repeated");
            last = eid;
            const char *type = jstr(ev, "type");
            json_t *data = json_object_get(ev, "data");
            if (n == 0) snprintf(first_type, sizeof first_type, "%s", type);
            snprintf(last_type, sizeof last_type, "%s", type);
            if (!strcmp(type, "status"))
                snprintf(last_status, sizeof last_status, "%s",
                         jstr(data, "status"));
            if (!strcmp(type, "progress")) {
                CHECK(json_integer_value(json_object_get(data, "step")) == progress,
                      "progress %d in order", progress);
                CHECK(eid == ids[progress], "event id matches append");
                progress++;
            }
            if (!strcmp(type, "log"))
                CHECK(json_number_value(json_object_get(ev, "time")) == 12345.5, "given ts kept");
            n++;
        }
        int more = json_is_true(json_object_get(p, "has_more"));
        json_t *lid = json_object_get(p, "last_id");
        if (json_is_integer(lid)) after = json_integer_value(lid);
        json_decref(p);
        if (!more) break;
    }
    CHECK(n == N + 4 && progress == N, "all %d events seen, got %d", N + 4, n);
    CHECK(pages == (N + 4 + 3) / 4, "pages %d", pages);
    CHECK(!strcmp(first_type, "status"), "creation writes a status event first");
    CHECK(!strcmp(last_type, "status") && !strcmp(last_status, "succeeded"),
          "the terminal status is the last event (%s %s)", last_type, last_status);
    int64_t newest = -1;
    OK(store_event_last_id(s, &newest, err, E));
    CHECK(newest == last, "the newest event id of the store is this job's last (%lld, %lld)",
          (long long)newest, (long long)last);

    json_t *p = NULL;
    OK(store_event_list(s, id, last, 10, &p, err, E));
    CHECK(p && json_array_size(json_object_get(p, "data")) == 0 &&
          json_is_null(json_object_get(p, "last_id")) &&
          json_is_false(json_object_get(p, "has_more")), "nothing after the last event");
    json_decref(p);
    EXPECT(store_event_list(s, "job_ffffffffffffffffffffffff", 0, 10, &p, err, E),
           DT_STORE_NOT_FOUND);
    EXPECT(store_event_list(s, id, 0, 0, &p, err, E), DT_STORE_INVALID);
    EXPECT(store_event_list(s, id, 0, DT_STORE_EVENTS_MAX + 1, &p, err, E), DT_STORE_INVALID);
    EXPECT(store_event_list(s, id, -1, 10, &p, err, E), DT_STORE_INVALID);
}

static void test_metrics(dt_store *s) {
    char id[DT_STORE_ID_MAX];
    make_job(s, 0, "auto", id);
    for (int step = 1; step <= 3; step++) {
        json_t *v = json_real(1.0 / step);
        OK(store_metric_append(s, id, "loss", step, v, 0, err, E));
        json_decref(v);
    }
    json_t *fid = json_pack("{s:f, s:i}", "value", 42.5, "samples", 5000);
    OK(store_metric_append(s, id, "fid", 2, fid, 0, err, E));
    json_t *v = json_real(9.0);
    OK(store_metric_append(s, id, "loss", 2, v, 0, err, E)); /* a resumed run repeats step 2 */
    EXPECT(store_metric_append(s, "job_ffffffffffffffffffffffff", "loss", 1, v, 0, err, E),
           DT_STORE_NOT_FOUND);
    EXPECT(store_metric_append(s, id, "", 1, v, 0, err, E), DT_STORE_INVALID);
    json_decref(v);

    json_t *m = NULL;
    OK(store_metric_list(s, id, NULL, &m, err, E));
    json_t *series = m ? json_object_get(m, "series") : NULL;
    json_t *loss = json_object_get(series, "loss");
    CHECK(json_array_size(loss) == 3, "three loss points (the repeat replaced), %zu",
          json_array_size(loss));
    CHECK(json_integer_value(json_object_get(json_array_get(loss, 1), "step")) == 2 &&
          json_real_value(json_object_get(json_array_get(loss, 1), "value")) == 9.0,
          "step 2 holds the newer value");
    CHECK(json_integer_value(json_object_get(json_array_get(loss, 2), "step")) == 3, "by step");
    CHECK(json_equal(json_object_get(json_array_get(json_object_get(series, "fid"), 0), "value"),
                     fid), "JSON values kept");
    json_decref(m);
    OK(store_metric_list(s, id, "fid", &m, err, E));
    series = m ? json_object_get(m, "series") : NULL;
    CHECK(json_object_size(series) == 1 && json_object_get(series, "fid"), "name filter");
    json_decref(m);
    EXPECT(store_metric_list(s, "job_ffffffffffffffffffffffff", NULL, &m, err, E),
           DT_STORE_NOT_FOUND);
    json_decref(fid);
}

/* Points with detail (what an evaluation records besides its value) and the newest point of
 * each series (the job object's "evaluation"). */
static void test_metric_detail_latest(dt_store *s) {
    char id[DT_STORE_ID_MAX];
    make_job(s, 0, "auto", id);
    static const char *const names[] = {"fid", "fd_classifier", "classifier_accuracy"};
    json_t *m = NULL;
    OK(store_metric_latest(s, id, names, 3, &m, err, E));
    CHECK(json_is_object(m) && json_object_size(m) == 0, "no evaluation yet: {}");
    json_decref(m);

    for (int step = 100; step <= 300; step += 100) { /* stored out of order: 100, 300, 200 */
        int at = step == 200 ? 300 : step == 300 ? 200 : step;
        json_t *v = json_real(50.0 - at / 10.0);
        json_t *d = json_pack("{s:i, s:s, s:{s:s, s:i}, s:i, s:f}", "samples", 64, "sampler", "ddim",
                              "reference", "dataset_sha256", "ab12", "images", 10,
                              "step", 999, "time", 1.0); /* step and time are the point's own */
        OK(store_metric_append_detail(s, id, "fid", at, v, d, 0, err, E));
        json_decref(v);
        json_decref(d);
    }
    json_t *nul = json_null(), *why = json_pack("{s:b, s:s}", "available", 0, "reason", "no weights");
    OK(store_metric_append_detail(s, id, "fd_classifier", 5, nul, why, 0, err, E));
    json_t *arr = json_array();
    EXPECT(store_metric_append_detail(s, id, "fid", 7, nul, arr, 0, err, E), DT_STORE_INVALID);
    json_decref(arr);

    OK(store_metric_latest(s, id, names, 3, &m, err, E));
    json_t *fid = json_object_get(m, "fid"), *fdc = json_object_get(m, "fd_classifier");
    CHECK(json_object_size(m) == 2 && fid && fdc && !json_object_get(m, "classifier_accuracy"),
          "the series with points, and only those");
    CHECK(json_integer_value(json_object_get(fid, "step")) == 300 &&
          json_real_value(json_object_get(fid, "value")) == 20.0, "the newest step wins");
    CHECK(json_integer_value(json_object_get(fid, "samples")) == 64 &&
          !strcmp(json_string_value(json_object_get(fid, "sampler")), "ddim") &&
          json_integer_value(json_object_get(json_object_get(fid, "reference"), "images")) == 10 &&
          json_real_value(json_object_get(fid, "time")) > 1.0, "detail kept, own step and time");
    CHECK(json_is_null(json_object_get(fdc, "value")) &&
          json_is_false(json_object_get(fdc, "available")) &&
          !strcmp(json_string_value(json_object_get(fdc, "reason")), "no weights"),
          "an unavailable point: null value with its reason");
    json_decref(m);

    /* a resumed run rewriting a step replaces the detail too */
    json_t *v = json_real(1.5);
    OK(store_metric_append_detail(s, id, "fid", 300, v, NULL, 0, err, E));
    json_decref(v);
    OK(store_metric_list(s, id, "fid", &m, err, E));
    json_t *pts = json_object_get(json_object_get(m, "series"), "fid");
    json_t *last = json_array_get(pts, json_array_size(pts) - 1);
    CHECK(json_array_size(pts) == 3 && json_integer_value(json_object_get(json_array_get(pts, 0), "step")) == 100 &&
          json_object_get(json_array_get(pts, 0), "samples") && !json_object_get(last, "samples") &&
          json_real_value(json_object_get(last, "value")) == 1.5, "list: detail per point, by step");
    json_decref(m);
    EXPECT(store_metric_latest(s, "job_ffffffffffffffffffffffff", names, 3, &m, err, E),
           DT_STORE_NOT_FOUND);
    json_decref(nul);
    json_decref(why);
}

static void test_artifacts(dt_store *s) {
    char id[DT_STORE_ID_MAX];
    make_job(s, 0, "auto", id);
    dt_artifact a = {.kind = DT_ARTIFACT_CHECKPOINT, .bytes = 1000, .step = 2000};
    snprintf(a.job_id, sizeof a.job_id, "%s", id);
    snprintf(a.name, sizeof a.name, "step_002000.safetensors");
    snprintf(a.path, sizeof a.path, "/data/jobs/%s/checkpoints/step_002000.safetensors", id);
    snprintf(a.sha256, sizeof a.sha256, "%064d", 7);
    OK(store_artifact_put(s, &a, err, E));
    a.step = 1000;
    snprintf(a.name, sizeof a.name, "step_001000.safetensors");
    OK(store_artifact_put(s, &a, err, E));
    dt_artifact sample = {.kind = DT_ARTIFACT_SAMPLE, .bytes = 10, .step = -1};
    snprintf(sample.job_id, sizeof sample.job_id, "%s", id);
    snprintf(sample.name, sizeof sample.name, "grid.png");
    snprintf(sample.path, sizeof sample.path, "/x/grid.png");
    OK(store_artifact_put(s, &sample, err, E));

    json_t *l = NULL;
    OK(store_artifact_list(s, id, DT_ARTIFACT_CHECKPOINT, &l, err, E));
    json_t *data = l ? json_object_get(l, "data") : NULL;
    CHECK(json_array_size(data) == 2, "two checkpoints");
    json_t *first = json_array_get(data, 0);
    CHECK(first && jeq(first, "name", "step_001000.safetensors") &&
          json_integer_value(json_object_get(first, "step")) == 1000 &&
          json_integer_value(json_object_get(first, "bytes")) == 1000 &&
          json_is_string(json_object_get(first, "sha256")) && !json_object_get(first, "path"),
          "ordered by step, API shape without the path");
    json_decref(l);
    OK(store_artifact_list(s, id, DT_ARTIFACT_SAMPLE, &l, err, E));
    first = l ? json_array_get(json_object_get(l, "data"), 0) : NULL;
    CHECK(first && json_is_null(json_object_get(first, "step")) &&
          json_is_null(json_object_get(first, "sha256")), "no step, no digest: null");
    json_decref(l);

    /* upsert on (job, kind, name) */
    a.bytes = 2222;
    OK(store_artifact_put(s, &a, err, E));
    dt_artifact got;
    OK(store_artifact_get(s, id, DT_ARTIFACT_CHECKPOINT, "step_001000.safetensors", &got, err, E));
    CHECK(got.bytes == 2222 && got.step == 1000 && !strcmp(got.path, a.path) &&
          !strcmp(got.sha256, a.sha256) && got.created_at > 0, "get after upsert");
    OK(store_artifact_get(s, id, DT_ARTIFACT_SAMPLE, "grid.png", &got, err, E));
    CHECK(got.step == -1 && got.sha256[0] == '\0', "sample without step");
    EXPECT(store_artifact_get(s, id, DT_ARTIFACT_SAMPLE, "step_001000.safetensors", &got, err, E),
           DT_STORE_NOT_FOUND); /* kinds are separate namespaces */
    EXPECT(store_artifact_get(s, id, DT_ARTIFACT_CHECKPOINT, "../../etc/passwd", &got, err, E),
           DT_STORE_NOT_FOUND);

    OK(store_artifact_delete(s, id, DT_ARTIFACT_CHECKPOINT, "step_001000.safetensors", err, E));
    EXPECT(store_artifact_delete(s, id, DT_ARTIFACT_CHECKPOINT, "step_001000.safetensors", err, E),
           DT_STORE_NOT_FOUND);
    EXPECT(store_artifact_get(s, id, DT_ARTIFACT_CHECKPOINT, "step_001000.safetensors", &got, err,
                              E), DT_STORE_NOT_FOUND);

    snprintf(a.job_id, sizeof a.job_id, "job_ffffffffffffffffffffffff");
    EXPECT(store_artifact_put(s, &a, err, E), DT_STORE_NOT_FOUND);
    EXPECT(store_artifact_list(s, a.job_id, DT_ARTIFACT_CHECKPOINT, &l, err, E),
           DT_STORE_NOT_FOUND);
    snprintf(a.job_id, sizeof a.job_id, "%s", id);
    a.name[0] = '\0';
    EXPECT(store_artifact_put(s, &a, err, E), DT_STORE_INVALID);
    a.kind = (dt_artifact_kind)7;
    snprintf(a.name, sizeof a.name, "x");
    EXPECT(store_artifact_put(s, &a, err, E), DT_STORE_INVALID);
}

/* ---- datasets and models --------------------------------------------------------------------- */

static void test_catalog(dt_store *s) {
    char got[DT_STORE_ID_MAX];
    while (store_job_claim(s, "cpu", got, err, E) == 1) {}
    json_t *names = json_pack("[s, s]", "cat", "dog"), *counts = json_pack("[i, i]", 100, 20);
    dt_dataset_new d = {.name = "pets", .path = "/data/datasets/x", .format = "image_folder",
                        .images = 120, .classes = 2, .class_names = names,
                        .class_counts = counts, .bytes = 4096};
    char ds[DT_STORE_ID_MAX], ds2[DT_STORE_ID_MAX], id[DT_STORE_ID_MAX];
    OK(store_dataset_create(s, &d, ds, err, E));
    CHECK(!strncmp(ds, "ds_", 3) && strlen(ds) == 27, "dataset id %s", ds);
    json_t *j = NULL;
    OK(store_dataset_get(s, ds, &j, err, E));
    if (j) {
        CHECK(jeq(j, "object", "dataset") &&
              jeq(j, "name", "pets") &&
              jeq(j, "format", "image_folder") &&
              json_integer_value(json_object_get(j, "images")) == 120 &&
              json_integer_value(json_object_get(j, "classes")) == 2 &&
              json_integer_value(json_object_get(j, "bytes")) == 4096 &&
              json_equal(json_object_get(j, "class_names"), names) &&
              json_equal(json_object_get(j, "class_counts"), counts) &&
              json_is_real(json_object_get(j, "created_at")) && !json_object_get(j, "path"),
              "dataset object");
    }
    json_decref(j);
    char path[256];
    OK(store_dataset_path(s, ds, path, sizeof path, err, E));
    CHECK(!strcmp(path, "/data/datasets/x"), "dataset path");

    /* a caller-made id, then the same id again */
    OK(store_new_id("ds_", ds2, sizeof ds2));
    d.id = ds2;
    d.class_names = NULL;
    d.class_counts = NULL;
    OK(store_dataset_create(s, &d, id, err, E));
    CHECK(!strcmp(id, ds2), "the given id is used");
    OK(store_dataset_get(s, ds2, &j, err, E));
    CHECK(j && json_array_size(json_object_get(j, "class_counts")) == 0 &&
          json_is_array(json_object_get(j, "class_counts")), "no class counts: []");
    json_decref(j);
    EXPECT(store_dataset_create(s, &d, id, err, E), DT_STORE_CONFLICT);
    d.id = "ds_nothex";
    EXPECT(store_dataset_create(s, &d, id, err, E), DT_STORE_INVALID);
    d.id = "mdl_000000000000000000000000";
    EXPECT(store_dataset_create(s, &d, id, err, E), DT_STORE_INVALID);
    d.id = NULL;
    d.format = NULL;
    EXPECT(store_dataset_create(s, &d, id, err, E), DT_STORE_INVALID);
    d.format = "idx";
    json_t *not_array = json_object();
    d.class_counts = not_array;
    EXPECT(store_dataset_create(s, &d, id, err, E), DT_STORE_INVALID);
    d.class_counts = NULL;
    json_decref(not_array);

    json_t *p = NULL;
    OK(store_dataset_list(s, 1, NULL, &p, err, E));
    const char *first = p ? json_string_value(json_object_get(p, "last_id")) : NULL;
    CHECK(first && !strcmp(first, ds2) && json_is_true(json_object_get(p, "has_more")),
          "newest dataset first");
    json_t *p2 = NULL;
    OK(store_dataset_list(s, 10, first, &p2, err, E));
    CHECK(p2 && json_array_size(json_object_get(p2, "data")) == 1 &&
          jeq(p2, "last_id", ds) &&
          json_is_false(json_object_get(p2, "has_more")), "second page");
    json_decref(p);
    json_decref(p2);
    EXPECT(store_dataset_list(s, 0, NULL, &p, err, E), DT_STORE_INVALID);
    EXPECT(store_dataset_list(s, 5, "ds_000000000000000000000000", &p, err, E), DT_STORE_INVALID);

    /* models, one promoted from a job */
    json_t *config = json_pack("{s:s, s:i}", "arch", "DiT-S/2", "image_size", 32);
    char src[DT_STORE_ID_MAX], mdl[DT_STORE_ID_MAX], mdl2[DT_STORE_ID_MAX];
    make_job(s, 0, "auto", src);
    dt_model_new m = {.name = "base", .path = "/data/models/a/model.safetensors",
                      .config = config, .bytes = 99, .sha256 = "abc"};
    OK(store_model_create(s, &m, mdl, err, E));
    m.source_job = src;
    m.source_checkpoint = "step_001000.safetensors";
    OK(store_model_create(s, &m, mdl2, err, E));
    OK(store_model_get(s, mdl2, &j, err, E));
    if (j) {
        CHECK(jeq(j, "object", "model") &&
              jeq(j, "source_job", src) &&
              json_equal(json_object_get(j, "config"), config) &&
              json_integer_value(json_object_get(j, "bytes")) == 99 &&
              !json_object_get(j, "path"), "model object");
    }
    json_decref(j);
    OK(store_model_get(s, mdl, &j, err, E));
    CHECK(j && json_is_null(json_object_get(j, "source_job")), "no source job: null");
    CHECK(j && jeq(j, "kind", "dit"), "a model's kind defaults to dit");
    json_decref(j);
    {   /* a classifier: its kind is stored and shown; other kinds are refused */
        dt_model_new cm = {.name = "clf", .path = "/data/models/c/model.safetensors",
                           .kind = "classifier", .config = config, .bytes = 9};
        char cid[DT_STORE_ID_MAX];
        OK(store_model_create(s, &cm, cid, err, E));
        OK(store_model_get(s, cid, &j, err, E));
        CHECK(j && jeq(j, "kind", "classifier"), "classifier kind");
        json_decref(j);
        OK(store_model_delete(s, cid, NULL, 0, err, E));
        cm.kind = "vae";
        OK(store_model_create(s, &cm, cid, err, E));
        OK(store_model_get(s, cid, &j, err, E));
        CHECK(j && jeq(j, "kind", "vae"), "vae kind");
        json_decref(j);
        OK(store_model_delete(s, cid, NULL, 0, err, E));
        cm.kind = "lora";
        EXPECT(store_model_create(s, &cm, cid, err, E), DT_STORE_INVALID);
    }
    m.source_job = "job_ffffffffffffffffffffffff";
    EXPECT(store_model_create(s, &m, id, err, E), DT_STORE_NOT_FOUND);
    m.source_job = NULL;
    m.config = NULL;
    EXPECT(store_model_create(s, &m, id, err, E), DT_STORE_INVALID);
    OK(store_model_list(s, 10, NULL, &p, err, E));
    CHECK(p && json_array_size(json_object_get(p, "data")) == 2, "two models");
    json_decref(p);
    OK(store_model_path(s, mdl, path, sizeof path, err, E));
    CHECK(!strcmp(path, "/data/models/a/model.safetensors"), "model path");

    /* deletes refuse while a queued or running job uses the entry */
    json_t *spec = spec_for("diff_tuning", 0, "auto", ds, mdl);
    char job[DT_STORE_ID_MAX];
    OK(store_job_create(s, spec, NULL, job, NULL, err, E));
    json_decref(spec);
    EXPECT(store_dataset_delete(s, ds, NULL, 0, err, E), DT_STORE_CONFLICT);
    CHECK(strstr(err, job) != NULL, "the conflict names the job: %s", err);
    EXPECT(store_model_delete(s, mdl, NULL, 0, err, E), DT_STORE_CONFLICT);
    for (int i = 0; i < 2 && strcmp(got, job); i++) /* src is older: it goes first */
        EXPECT(store_job_claim(s, "cpu", got, err, E), 1);
    CHECK_STATUS(s, job, "running");
    EXPECT(store_dataset_delete(s, ds, NULL, 0, err, E), DT_STORE_CONFLICT);
    OK(store_job_finish(s, job, DT_JOB_FAILED, "oom", NULL, err, E));
    OK(store_dataset_get(s, ds, &j, err, E)); /* still there after the refusals */
    json_decref(j);
    OK(store_dataset_delete(s, ds, path, sizeof path, err, E));
    CHECK(!strcmp(path, "/data/datasets/x"), "delete hands back the path");
    EXPECT(store_dataset_get(s, ds, &j, err, E), DT_STORE_NOT_FOUND);
    EXPECT(store_dataset_delete(s, ds, NULL, 0, err, E), DT_STORE_NOT_FOUND);
    EXPECT(store_dataset_path(s, ds, path, sizeof path, err, E), DT_STORE_NOT_FOUND);
    /* the failed job names a deleted dataset now: retrying it must not revive the reference */
    EXPECT(store_job_retry(s, job, err, E), DT_STORE_NOT_FOUND);
    CHECK_STATUS(s, job, "failed");
    OK(store_model_delete(s, mdl, NULL, 0, err, E));
    EXPECT(store_model_get(s, mdl, &j, err, E), DT_STORE_NOT_FOUND);
    EXPECT(store_model_delete(s, mdl, NULL, 0, err, E), DT_STORE_NOT_FOUND);
    json_decref(config);
    json_decref(names);
    json_decref(counts);
}

/* ---- API keys -------------------------------------------------------------------------------- */

/* 1 when s is n lower-case hex digits exactly */
static int is_hex(const char *s, size_t n) {
    size_t i = 0;
    for (; s[i]; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
    return i == n;
}

/* The key with this id in a store_key_list object (borrowed), or NULL. */
static json_t *key_in(json_t *list, const char *id) {
    size_t i;
    json_t *k;
    json_array_foreach(json_object_get(list, "data"), i, k)
        if (jeq(k, "id", id)) return k;
    return NULL;
}

static int64_t active_keys(dt_store *s) {
    int64_t n = -1;
    OK(store_key_count(s, &n, err, E));
    return n;
}

static void test_key_secrets(void) {
    CHECK(!strcmp(store_scope_name(DT_SCOPE_READ), "read") &&
          !strcmp(store_scope_name(DT_SCOPE_SUBMIT), "submit") &&
          !strcmp(store_scope_name(DT_SCOPE_ADMIN), "admin"), "scope names");
    CHECK(!strcmp(store_scope_name((dt_scope)0), "?") && !strcmp(store_scope_name((dt_scope)4), "?"),
          "a value out of range is \"?\"");
    const char *names[] = {"read", "submit", "admin"};
    for (int i = 0; i < 3; i++) {
        dt_scope sc = (dt_scope)0;
        CHECK(store_scope_parse(names[i], &sc) == 0 && sc == (dt_scope)(i + 1), "parse %s", names[i]);
    }
    dt_scope sc = DT_SCOPE_READ;
    CHECK(store_scope_parse("ADMIN", &sc) == -1 && store_scope_parse("", &sc) == -1 &&
          store_scope_parse("write", &sc) == -1 && store_scope_parse("admin ", &sc) == -1,
          "unknown scope names are refused");
    CHECK(sc == DT_SCOPE_READ, "a refused parse leaves *out alone");

    enum { N = 64 };
    static char secrets[N][DT_KEY_SECRET_MAX];
    int malformed = 0, same = 0;
    for (int i = 0; i < N; i++) {
        CHECK(store_key_generate(secrets[i]) == 0, "generate %d", i);
        malformed += strncmp(secrets[i], "dtk_", 4) != 0 || !is_hex(secrets[i] + 4, 64);
        for (int j = 0; j < i; j++) same += !strcmp(secrets[i], secrets[j]);
    }
    CHECK(malformed == 0, "%d of %d secrets are not dtk_ + 64 hex digits (e.g. %s)", malformed, N,
          secrets[0]);
    CHECK(same == 0, "%d repeated secrets", same);

    /* test vectors from sha256sum: FIPS 180-2's "abc", and a secret-shaped string */
    char h[DT_KEY_HASH_HEX];
    store_key_hash("abc", h);
    CHECK(!strcmp(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
          "sha256(abc) = %s", h);
    store_key_hash("dtk_00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff", h);
    CHECK(!strcmp(h, "64e70fc6bf8a849b35b7ec4a01dd3705000dc5602de1ccd156aa7f114fd7d2f2"),
          "sha256 of a secret = %s", h);
}

static void test_keys(dt_store *s) {
    CHECK(active_keys(s) == 0, "no keys in a new store");
    char secret[DT_KEY_SECRET_MAX], hash[DT_KEY_HASH_HEX], other[DT_KEY_SECRET_MAX];
    char other_hash[DT_KEY_HASH_HEX], id[DT_STORE_ID_MAX], id2[DT_STORE_ID_MAX],
        got[DT_STORE_ID_MAX], none[DT_STORE_ID_MAX];
    CHECK(store_key_generate(secret) == 0 && store_key_generate(other) == 0, "generate");
    store_key_hash(secret, hash);
    store_key_hash(other, other_hash);

    OK(store_key_create(s, "ci", DT_SCOPE_READ, hash, id, err, E));
    CHECK(!strncmp(id, "key_", 4) && is_hex(id + 4, 24), "key id %s", id);
    CHECK(active_keys(s) == 1, "one active key");
    dt_scope sc = (dt_scope)0;
    OK(store_key_lookup(s, hash, &sc, got, err, E));
    CHECK(sc == DT_SCOPE_READ && !strcmp(got, id), "lookup: scope %d id %s", (int)sc, got);
    sc = (dt_scope)0;
    OK(store_key_scope(s, id, &sc, err, E));
    CHECK(sc == DT_SCOPE_READ, "scope by id");

    /* other secrets, and things that are not hashes, find nothing */
    EXPECT(store_key_lookup(s, other_hash, &sc, got, err, E), DT_STORE_NOT_FOUND);
    CHECK(got[0] == '\0', "no id on a miss");
    CHECK(!strstr(err, other_hash), "the miss does not echo the hash: %s", err);
    EXPECT(store_key_lookup(s, secret, &sc, got, err, E), DT_STORE_NOT_FOUND);
    EXPECT(store_key_lookup(s, "", &sc, got, err, E), DT_STORE_NOT_FOUND);
    EXPECT(store_key_scope(s, "key_000000000000000000000000", &sc, err, E), DT_STORE_NOT_FOUND);

    /* the same secret twice; malformed hashes, scopes and names */
    EXPECT(store_key_create(s, "again", DT_SCOPE_ADMIN, hash, none, err, E), DT_STORE_CONFLICT);
    CHECK(none[0] == '\0', "no id for a refused key");
    char upper[DT_KEY_HASH_HEX], short_hash[DT_KEY_HASH_HEX], long_hash[80];
    snprintf(upper, sizeof upper, "%s", other_hash);
    for (char *c = upper; *c; c++)
        if (*c >= 'a' && *c <= 'f') *c = (char)(*c - 'a' + 'A');
    snprintf(short_hash, sizeof short_hash, "%.63s", other_hash);
    snprintf(long_hash, sizeof long_hash, "%s0", other_hash);
    const char *bad_hashes[] = {upper, short_hash, long_hash, "", other,
                                "g000000000000000000000000000000000000000000000000000000000000000"};
    for (size_t i = 0; i < sizeof bad_hashes / sizeof bad_hashes[0]; i++)
        EXPECT(store_key_create(s, NULL, DT_SCOPE_READ, bad_hashes[i], none, err, E),
               DT_STORE_INVALID);
    EXPECT(store_key_create(s, NULL, (dt_scope)0, other_hash, none, err, E), DT_STORE_INVALID);
    EXPECT(store_key_create(s, NULL, (dt_scope)4, other_hash, none, err, E), DT_STORE_INVALID);
    char long_name[300];
    memset(long_name, 'n', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    const char *bad_names[] = {"tab\there", "line\n", "\xff\xfe", long_name};
    for (size_t i = 0; i < sizeof bad_names / sizeof bad_names[0]; i++)
        EXPECT(store_key_create(s, bad_names[i], DT_SCOPE_READ, other_hash, none, err, E),
               DT_STORE_INVALID);
    CHECK(active_keys(s) == 1, "refused keys are not stored");

    /* a second key, no name; the listing shows both, newest first, without secrets */
    OK(store_key_create(s, NULL, DT_SCOPE_ADMIN, other_hash, id2, err, E));
    CHECK(strcmp(id, id2) != 0, "distinct ids");
    OK(store_key_lookup(s, other_hash, &sc, got, err, E));
    CHECK(sc == DT_SCOPE_ADMIN && !strcmp(got, id2), "the second key's lookup");
    CHECK(active_keys(s) == 2, "two active keys");
    json_t *list = NULL;
    OK(store_key_list(s, &list, err, E));
    json_t *data = json_object_get(list, "data");
    CHECK(json_array_size(data) == 2, "two keys listed");
    CHECK(jeq(json_array_get(data, 0), "id", id2) && jeq(json_array_get(data, 1), "id", id),
          "newest first");
    json_t *k = key_in(list, id);
    CHECK(k && jeq(k, "object", "api_key") && jeq(k, "name", "ci") && jeq(k, "scope", "read") &&
          json_is_number(json_object_get(k, "created_at")) &&
          json_is_null(json_object_get(k, "revoked_at")) && json_object_size(k) == 6,
          "an active key's listing");
    k = key_in(list, id2);
    CHECK(k && jeq(k, "name", "") && jeq(k, "scope", "admin"), "a key without a name lists \"\"");
    char *text = json_dumps(list, JSON_COMPACT);
    CHECK(text && !strstr(text, hash) && !strstr(text, other_hash) && !strstr(text, secret) &&
          !strstr(text, other) && !strstr(text, "hash"), "the listing holds no hash or secret: %s",
          text ? text : "");
    free(text);
    json_decref(list);

    /* revocation: at once, once, and only of known keys */
    OK(store_key_revoke(s, id, err, E));
    EXPECT(store_key_lookup(s, hash, &sc, got, err, E), DT_STORE_NOT_FOUND);
    EXPECT(store_key_scope(s, id, &sc, err, E), DT_STORE_NOT_FOUND);
    CHECK(active_keys(s) == 1, "revoking drops the count");
    OK(store_key_lookup(s, other_hash, &sc, got, err, E));
    list = NULL;
    OK(store_key_list(s, &list, err, E));
    k = key_in(list, id);
    double created = json_number_value(json_object_get(k, "created_at"));
    json_t *revoked = json_object_get(k, "revoked_at");
    CHECK(json_is_number(revoked) && json_number_value(revoked) >= created,
          "a revoked key lists revoked_at");
    double first_revoked = json_number_value(revoked);
    CHECK(json_is_null(json_object_get(key_in(list, id2), "revoked_at")), "the other stays active");
    json_decref(list);
    OK(store_key_revoke(s, id, err, E));
    CHECK(active_keys(s) == 1, "revoking twice changes nothing");
    list = NULL;
    OK(store_key_list(s, &list, err, E));
    CHECK(json_number_value(json_object_get(key_in(list, id), "revoked_at")) == first_revoked,
          "the first revocation's time stays");
    json_decref(list);
    EXPECT(store_key_revoke(s, "key_000000000000000000000000", err, E), DT_STORE_NOT_FOUND);
    EXPECT(store_key_revoke(s, "", err, E), DT_STORE_NOT_FOUND);
    /* a revoked secret stays spent: it cannot come back as a new key */
    EXPECT(store_key_create(s, "back", DT_SCOPE_READ, hash, none, err, E), DT_STORE_CONFLICT);
    OK(store_key_revoke(s, id2, err, E));
    CHECK(active_keys(s) == 0, "every key revoked");
}

/* The server looks keys up from many HTTP threads while keys are made and revoked. */
typedef struct {
    dt_store *s;
    const char *hash, *id;
    int failures;
} key_reader;

static void *key_reader_run(void *p) {
    key_reader *r = p;
    char e[256], got[DT_STORE_ID_MAX];
    for (int i = 0; i < 500; i++) {
        dt_scope sc = (dt_scope)0;
        int64_t n = 0;
        if (store_key_lookup(r->s, r->hash, &sc, got, e, sizeof e) != DT_STORE_OK ||
            sc != DT_SCOPE_SUBMIT || strcmp(got, r->id) != 0 ||
            store_key_scope(r->s, r->id, &sc, e, sizeof e) != DT_STORE_OK ||
            store_key_count(r->s, &n, e, sizeof e) != DT_STORE_OK || n < 1)
            r->failures++;
    }
    return NULL;
}

static void test_keys_threads(const char *dir) {
    dt_store *s = NULL;
    OK(store_open(check_path(dir, "keys_threads.db"), NULL, &s, err, E));
    if (!s) return;
    char secret[DT_KEY_SECRET_MAX], hash[DT_KEY_HASH_HEX], id[DT_STORE_ID_MAX];
    CHECK(store_key_generate(secret) == 0, "generate");
    store_key_hash(secret, hash);
    OK(store_key_create(s, "steady", DT_SCOPE_SUBMIT, hash, id, err, E));
    static key_reader r[4];
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        r[i] = (key_reader){.s = s, .hash = hash, .id = id};
        pthread_create(&t[i], NULL, key_reader_run, &r[i]);
    }
    int churn_failures = 0;
    for (int i = 0; i < 100; i++) {
        char sec2[DT_KEY_SECRET_MAX], h2[DT_KEY_HASH_HEX], id2[DT_STORE_ID_MAX], e[256];
        store_key_generate(sec2);
        store_key_hash(sec2, h2);
        churn_failures += store_key_create(s, NULL, DT_SCOPE_READ, h2, id2, e, sizeof e) != 0 ||
                          store_key_revoke(s, id2, e, sizeof e) != 0;
    }
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    CHECK(r[0].failures + r[1].failures + r[2].failures + r[3].failures == 0 &&
          churn_failures == 0, "concurrent lookups: %d %d %d %d failed, churn %d", r[0].failures,
          r[1].failures, r[2].failures, r[3].failures, churn_failures);
    CHECK(active_keys(s) == 1, "only the steady key is active");
    store_close(s);
}

/* Undoes migration 8 (job parameters), then 6 (checkpoint pins) and 5 (key scopes), on a raw
 * connection, for the tests that rebuild an older schema. */
#define UNDO_JOB_PARAMETERS \
    "ALTER TABLE jobs DROP COLUMN params_total; ALTER TABLE jobs DROP COLUMN params_trainable;"
#define UNDO_KEY_SCOPES \
    UNDO_JOB_PARAMETERS \
    " ALTER TABLE artifacts DROP COLUMN pinned;" \
    " DROP INDEX api_keys_active; DROP INDEX api_keys_by_created;" \
    " ALTER TABLE api_keys DROP COLUMN revoked_at; ALTER TABLE api_keys DROP COLUMN scope;"

/* Makes a store at path (the latest schema), runs sql on it raw (what takes it back to an older
 * schema, and the rows stored there), and opens it again, which migrates it. Returns the store,
 * or NULL after a failed check. */
static dt_store *store_rewound(const char *path, const char *sql, const char *what) {
    dt_store *s = NULL;
    OK(store_open(path, NULL, &s, err, E));
    if (!s) return NULL;
    store_close(s);
    sqlite3 *db = NULL;
    CHECK(sqlite3_open(path, &db) == SQLITE_OK, "raw open");
    CHECK(sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK, "%s: %s", what, sqlite3_errmsg(db));
    sqlite3_close(db);
    s = NULL;
    OK(store_open(path, NULL, &s, err, E));
    if (s) CHECK(store_schema_version(s) == store_schema_latest(), "%s: migrated to the latest schema", what);
    return s;
}

/* A key stored at schema 4, before scopes, can do everything (scope admin) once migrated. */
static void test_migrate_key_scopes(const char *dir) {
    char h[DT_KEY_HASH_HEX], sql[512];
    store_key_hash("dtk_old", h);
    snprintf(sql, sizeof sql, UNDO_KEY_SCOPES " PRAGMA user_version = 4;"
             " INSERT INTO api_keys (id, name, hash, created_at)"
             " VALUES ('key_000000000000000000000004', 'old', '%s', 1.0)", h);
    dt_store *s = store_rewound(check_path(dir, "schema4.db"), sql, "back to schema 4");
    if (!s) return;
    CHECK(store_schema_latest() >= 5, "schema 5 exists");
    dt_scope sc = (dt_scope)0;
    char got[DT_STORE_ID_MAX];
    OK(store_key_lookup(s, h, &sc, got, err, E));
    CHECK(sc == DT_SCOPE_ADMIN && !strcmp(got, "key_000000000000000000000004"),
          "an older key is an active admin key");
    CHECK(active_keys(s) == 1, "and counts as active");
    json_t *list = NULL;
    OK(store_key_list(s, &list, err, E));
    json_t *k = list ? key_in(list, "key_000000000000000000000004") : NULL;
    CHECK(k && jeq(k, "scope", "admin") && json_is_null(json_object_get(k, "revoked_at")) &&
          jeq(k, "name", "old"), "its listing");
    json_decref(list);
    store_close(s);
}

/* A dataset stored at schema 3, before class counts, reads back with class_counts [] once the
 * store has migrated. */
static void test_migrate_class_counts(const char *dir) {
    const char *to3 =
        UNDO_KEY_SCOPES
        " ALTER TABLE datasets DROP COLUMN class_counts; PRAGMA user_version = 3;"
        "INSERT INTO datasets (id, name, path, format, images, classes, class_names, bytes,"
        " created_at) VALUES ('ds_000000000000000000000003', 'old', '/d', 'idx', 5, 2,"
        " '[\"0\",\"1\"]', 10, 1.0)";
    dt_store *s = store_rewound(check_path(dir, "schema3.db"), to3, "back to schema 3");
    if (!s) return;
    json_t *j = NULL;
    OK(store_dataset_get(s, "ds_000000000000000000000003", &j, err, E));
    json_t *cc = j ? json_object_get(j, "class_counts") : NULL;
    CHECK(json_is_array(cc) && json_array_size(cc) == 0, "an older dataset has class_counts []");
    json_decref(j);
    store_close(s);
}

/* A model stored at schema 6, when kind was dit or classifier, keeps its row and kind once the
 * table is rebuilt for kind vae, and a VAE can then be stored. */
static void test_migrate_model_kind_vae(const char *dir) {
    const char *to6 =
        UNDO_JOB_PARAMETERS
        " CREATE TABLE models_old (id TEXT PRIMARY KEY, name TEXT NOT NULL, path TEXT NOT NULL,"
        " config TEXT NOT NULL, source_job TEXT REFERENCES jobs(id) ON DELETE SET NULL,"
        " source_checkpoint TEXT, bytes INTEGER NOT NULL, sha256 TEXT, created_at REAL NOT NULL,"
        " kind TEXT NOT NULL DEFAULT 'dit' CHECK (kind IN ('dit', 'classifier'))) STRICT;"
        " INSERT INTO models_old SELECT * FROM models; DROP TABLE models;"
        " ALTER TABLE models_old RENAME TO models;"
        " CREATE INDEX models_by_created ON models (created_at, id); PRAGMA user_version = 6;"
        " INSERT INTO models (id, name, path, config, bytes, sha256, created_at, kind) VALUES"
        " ('mdl_000000000000000000000006', 'old', '/m', '{\"features\":256}', 3, NULL, 1.0,"
        " 'classifier')";
    dt_store *s = store_rewound(check_path(dir, "schema6.db"), to6, "back to schema 6");
    if (!s) return;
    json_t *j = NULL;
    OK(store_model_get(s, "mdl_000000000000000000000006", &j, err, E));
    CHECK(j && jeq(j, "kind", "classifier") && jeq(j, "name", "old") &&
          json_integer_value(json_object_get(json_object_get(j, "config"), "features")) == 256,
          "an older model keeps its row");
    json_decref(j);
    json_t *config = json_pack("{s:i}", "latent_channels", 4);
    dt_model_new v = {.name = "vae", .path = "/v", .kind = "vae", .config = config, .bytes = 1};
    char id[DT_STORE_ID_MAX];
    OK(store_model_create(s, &v, id, err, E));
    json_decref(config);
    store_close(s);
}

/* A job stored at schema 7, before parameter counts, reads back with "parameters": null once the
 * store has migrated, and new jobs get theirs. */
static void test_migrate_job_parameters(const char *dir) {
    const char *to7 =
        UNDO_JOB_PARAMETERS " PRAGMA user_version = 7;"
        " INSERT INTO jobs (id, status, method, spec, max_attempts, attempt_budget, created_at)"
        " VALUES ('job_000000000000000000000007', 'succeeded', 'full', '{\"method\":\"full\"}',"
        " 3, 3, 1.0)";
    dt_store *s = store_rewound(check_path(dir, "schema7.db"), to7, "back to schema 7");
    if (!s) return;
    json_t *j = NULL;
    OK(store_job_get(s, "job_000000000000000000000007", &j, err, E));
    CHECK(j && json_is_null(json_object_get(j, "parameters")) && jeq(j, "status", "succeeded"),
          "an older job has parameters null");
    json_decref(j);
    json_t *spec = spec_for("full", 0, "auto", "/data/x", NULL);
    dt_job_create_opts counts = {.params_total = 100, .params_trainable = 7};
    char id[DT_STORE_ID_MAX];
    OK(store_job_create(s, spec, &counts, id, NULL, err, E));
    OK(store_job_get(s, id, &j, err, E));
    CHECK(j && json_integer_value(json_object_get(json_object_get(j, "parameters"), "total")) == 100,
          "a new job has its counts");
    json_decref(j);
    json_decref(spec);
    store_close(s);
}

/* ---- reopening ------------------------------------------------------------------------------- */

static void test_reopen(const char *dir) {
    char path[1300];
    snprintf(path, sizeof path, "%s/reopen.db", dir);
    dt_store *s = NULL;
    OK(store_open(path, NULL, &s, err, E));
    if (!s) return;
    char id[DT_STORE_ID_MAX], got[DT_STORE_ID_MAX];
    make_job(s, 3, "auto", id);
    EXPECT(store_job_claim(s, "cpu", got, err, E), 1);
    int64_t ev = 0;
    OK(store_event_append(s, id, "log", NULL, 0, &ev, err, E));
    json_t *before = NULL, *after = NULL;
    OK(store_job_get(s, id, &before, err, E));
    store_close(s);

    s = NULL;
    dt_store_options durable = {.durable = 1, .busy_timeout_ms = 100};
    OK(store_open(path, &durable, &s, err, E));
    if (s) {
        CHECK(store_schema_version(s) == store_schema_latest(), "user_version after reopen");
        OK(store_job_get(s, id, &after, err, E));
        CHECK(before && after && json_equal(before, after), "the job survives reopening");
        json_t *p = NULL;
        OK(store_event_list(s, id, ev - 1, 10, &p, err, E));
        CHECK(p && json_array_size(json_object_get(p, "data")) == 1, "events survive");
        json_decref(p);
        int64_t ev2 = 0;
        OK(store_event_append(s, id, "log", NULL, 0, &ev2, err, E));
        CHECK(ev2 > ev, "event ids keep growing across opens");
        store_close(s);
    }
    json_decref(before);
    json_decref(after);

    /* the file really is in WAL mode at the expected version; a newer schema is refused */
    sqlite3 *db = NULL;
    CHECK(sqlite3_open(path, &db) == SQLITE_OK, "raw open");
    sqlite3_stmt *st = NULL;
    sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL);
    CHECK(st && sqlite3_step(st) == SQLITE_ROW &&
          !strcmp((const char *)sqlite3_column_text(st, 0), "wal"), "WAL mode");
    sqlite3_finalize(st);
    sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL);
    CHECK(st && sqlite3_step(st) == SQLITE_ROW &&
          sqlite3_column_int(st, 0) == store_schema_latest(), "user_version on disk");
    sqlite3_finalize(st);
    CHECK(sqlite3_exec(db, "PRAGMA user_version = 999", NULL, NULL, NULL) == SQLITE_OK, "bump");
    sqlite3_close(db);
    s = NULL;
    EXPECT(store_open(path, NULL, &s, err, E), DT_STORE_ERROR);
    CHECK(s == NULL && strstr(err, "newer"), "a newer schema is refused: %s", err);
}

/* 1 when the file at path holds exactly want[0..n) (0 when it cannot be read). */
static int file_is(const char *path, const uint8_t *want, size_t n) {
    size_t len = 0;
    uint8_t *got = check_read_file(path, &len);
    int same = got && want && len == n && !memcmp(got, want, n);
    free(got);
    return same;
}

/* A database written by a newer difftune (user_version above the latest) is refused by
 * store_open, which must leave it exactly as it found it: a rollback-journal file keeps its
 * journal mode (no switch to WAL), and a WAL file keeps its uncheckpointed frames (closing
 * does not fold them into the main file). Both are readable afterwards at their version. */
static void test_newer_schema_untouched(const char *dir) {
    static const char *const modes[] = {"delete", "wal"};
    for (int m = 0; m < 2; m++) {
        char *path = check_path(dir, m ? "newer_wal.db" : "newer_delete.db");
        char wal[1300], sql[256];
        snprintf(wal, sizeof wal, "%s-wal", path);
        int newer = store_schema_latest() + 1;
        snprintf(sql, sizeof sql, "PRAGMA journal_mode = %s; CREATE TABLE future (x INTEGER);"
                 " INSERT INTO future VALUES (42); PRAGMA user_version = %d;", modes[m], newer);
        sqlite3 *db = NULL;
        CHECK(sqlite3_open(path, &db) == SQLITE_OK, "raw open %s", path);
        CHECK(sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK, "%s: %s", modes[m],
              sqlite3_errmsg(db));
        /* the WAL case: leave the frames in the -wal file, as a crashed newer server would */
        sqlite3_db_config(db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, NULL);
        sqlite3_close(db);
        size_t n_main = 0, n_wal = 0;
        uint8_t *main_before = check_read_file(path, &n_main);
        uint8_t *wal_before = m ? check_read_file(wal, &n_wal) : NULL;
        CHECK(main_before && (!m || (wal_before && n_wal > 0)), "%s: the files before", modes[m]);

        dt_store *s = NULL;
        EXPECT(store_open(path, NULL, &s, err, E), DT_STORE_ERROR);
        CHECK(s == NULL && strstr(err, "newer") && strstr(err, "upgrade difftune"),
              "%s: refused with a clear message: %s", modes[m], err);
        store_close(s);
        CHECK(file_is(path, main_before, n_main), "%s: the main file is untouched", modes[m]);
        if (m) CHECK(file_is(wal, wal_before, n_wal), "wal: the -wal frames are untouched");
        else CHECK(access(wal, F_OK) != 0, "delete: no -wal file appeared (still not WAL)");
        free(main_before);
        free(wal_before);

        db = NULL;
        sqlite3_stmt *st = NULL;
        CHECK(sqlite3_open(path, &db) == SQLITE_OK, "raw reopen");
        sqlite3_prepare_v2(db, "SELECT (SELECT x FROM future),"
                           " (SELECT user_version FROM pragma_user_version),"
                           " (SELECT journal_mode FROM pragma_journal_mode)", -1, &st, NULL);
        CHECK(st && sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) == 42 &&
              sqlite3_column_int(st, 1) == newer &&
              !strcmp((const char *)sqlite3_column_text(st, 2), modes[m]),
              "%s: the newer database reads back whole at version %d", modes[m], newer);
        sqlite3_finalize(st);
        sqlite3_close(db);
    }
}

/* ---- threads --------------------------------------------------------------------------------- */

enum { THREAD_OPS = 200 };

typedef struct {
    dt_store *s;
    const char *shared_job;
    int failures;
    int64_t event_ids[THREAD_OPS];
    char jobs[THREAD_OPS][DT_STORE_ID_MAX];
} worker_arg;

static void *worker(void *p) {
    worker_arg *w = p;
    char e[256];
    for (int i = 0; i < THREAD_OPS; i++) {
        json_t *spec = spec_for("full", i % 5, "auto", "/d", NULL);
        if (store_job_create(w->s, spec, NULL, w->jobs[i], NULL, e, sizeof e) != DT_STORE_OK)
            w->failures++;
        json_decref(spec);
        json_t *d = json_pack("{s:i}", "i", i);
        if (store_event_append(w->s, w->shared_job, "log", d, 0, &w->event_ids[i], e, sizeof e) !=
            DT_STORE_OK)
            w->failures++;
        json_decref(d);
    }
    return NULL;
}

/* Two threads on one handle, or (separate = 1) each on its own handle to the same file. */
static void test_threads(const char *dir, int separate) {
    char path[1300];
    snprintf(path, sizeof path, "%s/threads%d.db", dir, separate);
    dt_store *s = NULL, *s2 = NULL;
    OK(store_open(path, NULL, &s, err, E));
    if (separate) OK(store_open(path, NULL, &s2, err, E));
    if (!s || (separate && !s2)) return;
    char shared[DT_STORE_ID_MAX];
    make_job(s, 0, "auto", shared);
    static worker_arg w[2];
    memset(w, 0, sizeof w);
    pthread_t t[2];
    for (int i = 0; i < 2; i++) {
        w[i].s = separate && i ? s2 : s;
        w[i].shared_job = shared;
        pthread_create(&t[i], NULL, worker, &w[i]);
    }
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    CHECK(w[0].failures == 0 && w[1].failures == 0, "failures %d %d", w[0].failures,
          w[1].failures);

    static char ids[1000][DT_STORE_ID_MAX];
    int n = list_all(s, NULL, 100, ids, 1000, NULL);
    CHECK(n == 2 * THREAD_OPS + 1, "jobs stored: %d of %d", n, 2 * THREAD_OPS + 1);
    int missing = 0;
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < THREAD_OPS; i++) {
            int found = 0;
            for (int m = 0; m < n && m < 1000 && !found; m++) found = !strcmp(ids[m], w[k].jobs[i]);
            missing += !found;
        }
    CHECK(missing == 0, "%d created jobs missing from the listing", missing);

    /* every appended event is there exactly once, in id order */
    int64_t after = 0;
    int seen = 0, dup = 0;
    for (;;) {
        json_t *p = NULL;
        OK(store_event_list(s, shared, after, DT_STORE_EVENTS_MAX, &p, err, E));
        if (!p) break;
        size_t i;
        json_t *ev;
        json_array_foreach(json_object_get(p, "data"), i, ev) {
            if (!jeq(ev, "type", "log")) continue;
            int64_t eid = json_integer_value(json_object_get(ev, "id"));
            int owners = 0;
            for (int k = 0; k < 2; k++)
                for (int m = 0; m < THREAD_OPS; m++) owners += w[k].event_ids[m] == eid;
            dup += owners != 1;
            seen++;
        }
        int more = json_is_true(json_object_get(p, "has_more"));
        after = json_integer_value(json_object_get(p, "last_id"));
        json_decref(p);
        if (!more) break;
    }
    CHECK(seen == 2 * THREAD_OPS && dup == 0, "events: %d seen of %d, %d not matching an append",
          seen, 2 * THREAD_OPS, dup);
    store_close(s2);
    store_close(s);
}

int main(void) {
    const char *dir = check_tmpdir("store");
    snprintf(db_path, sizeof db_path, "%s/main.db", dir);
    dt_store *s = NULL;
    OK(store_open(db_path, NULL, &s, err, E));
    if (!s) return check_done("test_store");

    test_open_and_ids(s);
    test_create_get(s);
    test_idempotency(s);
    test_pagination(dir);
    test_claim_order(dir);
    test_transitions(s);
    test_requeue_and_retry(s);
    test_reconcile(dir);
    test_release(s);
    test_counts(dir);
    test_events(s);
    test_metrics(s);
    test_metric_detail_latest(s);
    test_artifacts(s);
    test_catalog(s);
    test_key_secrets();
    test_keys(s);
    store_close(s);
    test_reopen(dir);
    test_newer_schema_untouched(dir);
    test_migrate_class_counts(dir);
    test_migrate_key_scopes(dir);
    test_migrate_model_kind_vae(dir);
    test_migrate_job_parameters(dir);
    test_keys_threads(dir);
    test_threads(dir, 0);
    test_threads(dir, 1);
    return check_done("test_store");
}
