/* store.h — the job server's store: jobs, their events, metrics and artifacts, datasets and
 * models (DESIGN.md sections 2-4). The only interface in difftune that reaches a database; the
 * SQLite implementation lives in db/store_*.c, a PostgreSQL one can later sit behind this header.
 *
 * Conventions, once for every function below:
 * - Every function returns DT_STORE_OK (0) or a negative dt_store_code, and on failure writes a
 *   message a caller can show into err (errlen bytes, always terminated; err may be NULL).
 *   Nothing here exits or prints.
 * - Passing NULL where a value is required, or a NULL store, is a programmer error (assert).
 *   Values that come from users (ids, limits, status names, cursors) are checked and rejected
 *   with DT_STORE_INVALID or DT_STORE_NOT_FOUND.
 * - JSON handed in (json_t *) is borrowed: the store copies what it keeps, the caller still owns
 *   its reference. JSON handed out (json_t **out) is a new reference the caller must json_decref;
 *   on failure *out is set to NULL.
 * - Strings handed out go into caller buffers of the stated size.
 * - Times are unix seconds as double (fractional), read from the wall clock by the store.
 * - Ids are a prefix ("job_", "ds_", "mdl_", "key_") and 24 lower-case hex digits from the
 *   kernel's random source.
 * - A dt_store is safe to use from several threads at once; calls are serialised on one
 *   connection, each call is one transaction.
 *
 * Job lifecycle (terminal states never change):
 *     queued --claim--> running --finish--> succeeded | failed | cancelled
 *     queued --cancel--> cancelled            running --cancel--> running + cancel_requested
 *     running --requeue--> queued (attempts left) | failed (none left)
 *                          | cancelled (a cancel was requested)
 *     running --release--> queued, the attempt not charged (graceful server shutdown)
 *                          | cancelled (a cancel was requested)
 *     failed | cancelled --retry--> queued
 * Every status change (and a cancel request) appends a "status" event to the job in the same
 * transaction, so an event stream that has seen a terminal status has seen every event of that
 * run. Its data: {"status", "attempt"} plus "device" (running), "error" {code, message}
 * (failed), "reason" {code, message} (queued again after a worker died or the server shut
 * down), "cancel_requested": true, or "retry": true.
 */
#ifndef DT_STORE_H
#define DT_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

typedef struct dt_store dt_store;

typedef enum {
    DT_STORE_OK = 0,
    DT_STORE_ERROR = -1,     /* the database failed (I/O, corruption, locked too long): see err */
    DT_STORE_NOT_FOUND = -2, /* no such job, dataset, model, artifact (or a referenced one) */
    DT_STORE_CONFLICT = -3,  /* the request contradicts stored state: illegal transition, an
                              * idempotency key reused for another request, a duplicate id,
                              * deleting a dataset or model an active job uses */
    DT_STORE_INVALID = -4    /* a bad argument value: limit out of range, unknown status, bad
                              * cursor, spec without a method, JSON of the wrong type */
} dt_store_code;

/* Room for any id the store makes or accepts, with its NUL. */
#define DT_STORE_ID_MAX 40
/* Bounds of the limit argument of the list functions. */
#define DT_STORE_LIST_MAX 100
#define DT_STORE_EVENTS_MAX 1000
/* Attempts a job gets when the creator does not say. */
#define DT_STORE_DEFAULT_MAX_ATTEMPTS 3

/* "ok", "error", "not_found", "conflict", "invalid" (a static string). */
const char *store_code_name(int code);

/* ---- opening --------------------------------------------------------------------------------- */

typedef struct {
    int durable;         /* 1: fsync every commit (synchronous=FULL); 0: NORMAL, which in WAL
                          * mode survives any crash of the process but may lose the last
                          * commits on power loss */
    int busy_timeout_ms; /* wait for another process's lock this long; 0 = 5000 */
} dt_store_options;

/* Opens (creating if needed) the database at path, sets WAL mode and the pragmas, and brings
 * the schema up to date by applying the pending migrations, each in its own transaction.
 * opts may be NULL for the defaults. On success *out owns the handle (store_close it). Fails
 * with DT_STORE_ERROR when the file cannot be opened or its schema is newer than this build. */
int store_open(const char *path, const dt_store_options *opts, dt_store **out,
               char *err, size_t errlen);
/* Closes the handle and frees it; NULL is a no-op. No call may be in flight. */
void store_close(dt_store *s);
/* The schema version of the open database (PRAGMA user_version), or a negative code. */
int store_schema_version(dt_store *s);
/* The schema version this build migrates to (the number of migrations it knows). */
int store_schema_latest(void);

/* Writes prefix followed by 24 random hex digits into out (outlen >= strlen(prefix) + 25).
 * Returns 0, or DT_STORE_ERROR when the random source fails or out is too small. Callers use
 * it to name a directory before the row that points at it exists. */
int store_new_id(const char *prefix, char *out, size_t outlen);
/* Fills buf with n bytes from the kernel's random source, retrying interrupted reads. Returns 0,
 * or -1 when no randomness is available. */
int store_random_bytes(void *buf, size_t n);

/* ---- jobs ------------------------------------------------------------------------------------ */

typedef enum {
    DT_JOB_QUEUED = 0,
    DT_JOB_RUNNING,
    DT_JOB_SUCCEEDED,
    DT_JOB_FAILED,
    DT_JOB_CANCELLED
} dt_job_status;

/* "queued", "running", ... (a static string; "?" for a value out of range). */
const char *store_job_status_name(dt_job_status st);
/* Parses a status name. Returns 0 with *out set, or DT_STORE_INVALID. */
int store_job_status_parse(const char *name, dt_job_status *out);
/* 1 for succeeded, failed and cancelled. */
int store_job_status_terminal(dt_job_status st);

typedef struct {
    int max_attempts;            /* attempts per submission (and per retry); 0 = default 3 */
    const char *idempotency_key; /* NULL = none */
    const char *request_hash;    /* required with a key: a digest of the request body */
    int64_t params_total;        /* the DiT's parameters; 0 = unknown ("parameters" is null) */
    int64_t params_trainable;    /* those the job trains, 0..params_total */
} dt_job_create_opts;

/* Stores a new queued job whose spec is the complete, validated job spec (a JSON object,
 * borrowed; DESIGN.md section 3). The store reads "method" (a string, required), "priority"
 * (integer, default 0), "device" (default "auto"), "dataset" and "base_model" from it; a
 * dataset ("ds_...") or base model ("mdl_...") id must exist (else DT_STORE_NOT_FOUND), so an
 * active job never names a deleted one. opts may be NULL.
 * With an idempotency key: a key first seen stores the job and the key; the same key with the
 * same request_hash stores nothing and returns the job it made before, with *replayed = 1; the
 * same key with another hash is DT_STORE_CONFLICT. id_out (DT_STORE_ID_MAX bytes) receives the
 * job id; replayed may be NULL. */
int store_job_create(dt_store *s, json_t *spec, const dt_job_create_opts *opts,
                     char id_out[DT_STORE_ID_MAX], int *replayed, char *err, size_t errlen);

/* The job as its API object (DESIGN.md section 3): {"id","object":"job","status","method",
 * "parameters","spec","priority","attempt","max_attempts","created_at","started_at",
 * "finished_at","device","progress","error","cancel_requested"}; parameters is
 * {"total","trainable"} as given at creation, null when not given; started_at, finished_at,
 * device and progress are null until set, error is {"code","message"} for a failed job and null
 * otherwise. started_at,
 * device and progress describe the current (or last) attempt and are null again while a job
 * waits in the queue. *out is a new reference. */
int store_job_get(dt_store *s, const char *id, json_t **out, char *err, size_t errlen);

/* The same job object as compact JSON text (spec last), built without parsing the stored spec:
 * the fast path of GET /jobs/{id}. *text_out is malloc'd (the caller frees it), *len_out its
 * length without the NUL. */
int store_job_get_text(dt_store *s, const char *id, char **text_out, size_t *len_out,
                       char *err, size_t errlen);

/* A page of jobs, newest first by (created_at, id): {"data":[job...],"has_more":bool,
 * "last_id":id|null}. status NULL = any, else a status name (DT_STORE_INVALID if unknown);
 * limit in 1..DT_STORE_LIST_MAX; after NULL for the first page, else the last_id of the
 * previous page (DT_STORE_INVALID when no such job). Pages are stable: jobs created after the
 * first page never appear in later pages, and no job is skipped or repeated. */
int store_job_list(dt_store *s, const char *status, int limit, const char *after, json_t **out,
                   char *err, size_t errlen);

/* Claims the next queued job for device ("cpu", "cuda:0", ...): the one with the highest
 * priority, then the oldest, then the smallest id, among jobs whose spec asks for "auto" or for
 * exactly this device. Atomically sets it running with attempt + 1, started_at = now and this
 * device, and writes its id to id_out (DT_STORE_ID_MAX bytes). Returns 1 when a job was
 * claimed, 0 when none waits (id_out = ""), or a negative code. */
int store_job_claim(dt_store *s, const char *device, char id_out[DT_STORE_ID_MAX],
                    char *err, size_t errlen);

/* Ends a running job: status is DT_JOB_SUCCEEDED, DT_JOB_FAILED (error_code required,
 * error_message may be NULL) or DT_JOB_CANCELLED; sets finished_at. DT_STORE_CONFLICT when the
 * job is not running (a terminal job never changes), DT_STORE_INVALID for another status. */
int store_job_finish(dt_store *s, const char *id, dt_job_status status, const char *error_code,
                     const char *error_message, char *err, size_t errlen);

/* Cancels a job. A queued job becomes cancelled at once (*status_out = DT_JOB_CANCELLED); a
 * running job is only marked cancel_requested and stays running (*status_out = DT_JOB_RUNNING):
 * the supervisor must signal its worker and finish it as cancelled. Repeating the request for
 * a running job is harmless. DT_STORE_CONFLICT when the job is already terminal. status_out
 * may be NULL. */
int store_job_cancel(dt_store *s, const char *id, dt_job_status *status_out,
                     char *err, size_t errlen);

/* Requeues a failed or cancelled job so that it resumes from its last checkpoint: status
 * queued, error, finished_at, device and cancel_requested cleared, attempt kept (it counts every
 * attempt ever made) and max_attempts raised to attempt + the job's per-submission budget.
 * DT_STORE_CONFLICT for queued, running or succeeded jobs; DT_STORE_NOT_FOUND also when its
 * dataset or base model has since been deleted. */
int store_job_retry(dt_store *s, const char *id, char *err, size_t errlen);

/* The worker of a running job died (error_code says how, e.g. "worker_died"; message may be
 * NULL). The attempt is spent: with attempt < max_attempts the job is queued again (it resumes
 * from its newest checkpoint); otherwise it fails with this error; and a job whose cancel was
 * requested is cancelled instead. *status_out (may be NULL) receives the new status.
 * DT_STORE_CONFLICT when the job is not running. */
int store_job_requeue(dt_store *s, const char *id, const char *error_code,
                      const char *error_message, dt_job_status *status_out,
                      char *err, size_t errlen);

/* Puts a running job back in the queue without charging its attempt: the server shut down
 * gracefully and its worker stopped at a checkpoint, so the interruption is not the job's fault.
 * The job becomes queued with device, started_at and progress cleared, and max_attempts grows
 * by one (attempt keeps counting every attempt ever started); its "status" event carries
 * "reason" {"code":"server_shutdown", ...}. A job whose cancel was requested is cancelled
 * instead. DT_STORE_CONFLICT when the job is not running. */
int store_job_release(dt_store *s, const char *id, char *err, size_t errlen);

/* At server start: every running job whose id is not among live_ids[0..n_live) (NULL, 0 = none
 * is alive) is handled as by store_job_requeue with this error. Returns how many jobs it
 * changed (>= 0), or a negative code (then none changed). */
int store_job_reconcile(dt_store *s, const char *const *live_ids, size_t n_live,
                        const char *error_code, const char *error_message,
                        char *err, size_t errlen);

/* Replaces the progress object (borrowed JSON object) of a running job. DT_STORE_CONFLICT when
 * the job is not running. */
int store_job_set_progress(dt_store *s, const char *id, json_t *progress,
                           char *err, size_t errlen);

/* How many jobs are in each status: counts[st] for every dt_job_status st (GET /metrics).
 * On failure counts is left all zero. */
int store_job_counts(dt_store *s, int64_t counts[5], char *err, size_t errlen);

/* Forgets idempotency keys stored before the given time (their jobs stay). Returns how many
 * were removed, or a negative code. */
int store_idempotency_prune(dt_store *s, double created_before, char *err, size_t errlen);

/* ---- events and metrics ---------------------------------------------------------------------- */

/* Appends an event of a job: type ("progress", "sample", "log", ...), data a JSON object
 * (borrowed; NULL = {}), ts its time (<= 0: now). *id_out (may be NULL) receives the event id,
 * which grows with every event of every job and is never reused (the SSE id).
 * DT_STORE_NOT_FOUND for an unknown job; DT_STORE_CONFLICT when the job is terminal, so the
 * status event that ended a run stays its last event. */
int store_event_append(dt_store *s, const char *job_id, const char *type, json_t *data,
                       double ts, int64_t *id_out, char *err, size_t errlen);

/* The events of a job with id > after, oldest first, at most limit (1..DT_STORE_EVENTS_MAX):
 * {"data":[{"id","type","time","data"}...],"has_more":bool,"last_id":id|null}. Pass the
 * previous last_id as after to page on (0 = from the start). DT_STORE_NOT_FOUND for an unknown
 * job. */
int store_event_list(dt_store *s, const char *job_id, int64_t after, int limit, json_t **out,
                     char *err, size_t errlen);

/* The id of the newest event of any job into *id_out (0 when there is none): events stored
 * later have greater ids (a process that starts can tell them from the history). */
int store_event_last_id(dt_store *s, int64_t *id_out, char *err, size_t errlen);

/* Records a metric point: name ("loss", "fid", ...), the training step, value any JSON value
 * (borrowed), ts (<= 0: now). A second point for the same (job, name, step) replaces the first,
 * so a job resumed from a checkpoint rewrites the steps it repeats. Allowed in any status
 * (evaluations may follow the run). DT_STORE_NOT_FOUND for an unknown job. */
int store_metric_append(dt_store *s, const char *job_id, const char *name, int64_t step,
                        json_t *value, double ts, char *err, size_t errlen);
/* The same with detail: a JSON object (borrowed; NULL = none) of what the point records besides
 * its value (an FID's "samples", "sampler", "reference", ...), returned as members of the point.
 * Its keys "step", "value" and "time" are ignored. DT_STORE_INVALID when detail is not an
 * object. */
int store_metric_append_detail(dt_store *s, const char *job_id, const char *name, int64_t step,
                               json_t *value, json_t *detail, double ts, char *err,
                               size_t errlen);

/* The series of a job: {"series":{name:[{"step","value","time",...detail}...]}} ordered by
 * step; name NULL = every series, else only that one (absent when it has no points).
 * DT_STORE_NOT_FOUND for an unknown job. */
int store_metric_list(dt_store *s, const char *job_id, const char *name, json_t **out,
                      char *err, size_t errlen);

/* The newest point (highest step) of each of the n series names, as *out = {name: point} with
 * points as in store_metric_list; series without points are absent (so {} when none has any).
 * For the job object's "evaluation" (the latest fid, fd_classifier, classifier_accuracy).
 * DT_STORE_NOT_FOUND for an unknown job. */
int store_metric_latest(dt_store *s, const char *job_id, const char *const *names, int n,
                        json_t **out, char *err, size_t errlen);

/* ---- artifacts (files a job wrote: checkpoints, sample grids) -------------------------------- */

typedef enum { DT_ARTIFACT_CHECKPOINT = 0, DT_ARTIFACT_SAMPLE } dt_artifact_kind;

/* "checkpoint" | "sample". */
const char *store_artifact_kind_name(dt_artifact_kind kind);

typedef struct {
    char job_id[DT_STORE_ID_MAX];
    dt_artifact_kind kind;
    char name[256];     /* unique per (job, kind); what URLs name: "step_001000.safetensors" */
    char path[4096];    /* where the file lives; the server serves this path, never the name */
    int64_t bytes;
    char sha256[65];    /* lower-case hex, or "" when unknown */
    int64_t step;       /* training step, -1 = none */
    double created_at;  /* set by the store (ignored by store_artifact_put) */
} dt_artifact;

/* Inserts or replaces the artifact (job_id, kind, name). DT_STORE_NOT_FOUND for an unknown job,
 * DT_STORE_INVALID for an empty name or path. */
int store_artifact_put(dt_store *s, const dt_artifact *a, char *err, size_t errlen);
/* Fills *out with the artifact. DT_STORE_NOT_FOUND when there is none. */
int store_artifact_get(dt_store *s, const char *job_id, dt_artifact_kind kind, const char *name,
                       dt_artifact *out, char *err, size_t errlen);
/* The artifacts of one kind of a job, by step then name, without paths (the API shape):
 * {"data":[{"name","step"|null,"bytes","sha256"|null,"created_at"}...]}. DT_STORE_NOT_FOUND for
 * an unknown job. */
int store_artifact_list(dt_store *s, const char *job_id, dt_artifact_kind kind, json_t **out,
                        char *err, size_t errlen);
/* Forgets one artifact (the caller removes the file, e.g. a rotated checkpoint).
 * DT_STORE_NOT_FOUND when there is none. */
int store_artifact_delete(dt_store *s, const char *job_id, dt_artifact_kind kind,
                          const char *name, char *err, size_t errlen);

/* ---- checkpoint retention (store_retention.c) ------------------------------------------------
 * Which of a job's checkpoints stay is decided here and nowhere else: the newest
 * spec.checkpoint.keep by step, the best by the job's evaluation metric, and every pinned one.
 * The supervisor applies the decision (store_checkpoint_prune, then it removes the files); the
 * API shows it (store_checkpoint_list) and pins. */

/* Why a checkpoint is kept (bits); one with none of them goes at the next prune. */
#define DT_KEPT_NEWEST 1u /* among the job's newest spec.checkpoint.keep by step: a checkpoint
                           * to resume from, so its optimizer-state companion file stays too */
#define DT_KEPT_BEST 2u   /* the lowest value of the job's metric (fid, or fd_classifier when
                           * eval.extractor is a classifier) among the evaluations at steps
                           * that have a checkpoint; ties go to the earlier step */
#define DT_KEPT_PINNED 4u /* pinned through the API */

/* One checkpoint as the rule sees it. */
typedef struct {
    int64_t step;  /* -1 = unknown */
    double metric; /* the job's metric evaluated at this step; NAN when there is none */
    int pinned;
    unsigned kept; /* out: DT_KEPT_* bits */
} dt_retention_item;

/* The retention rule: sets kept of each of the n items, which must be in ascending step order
 * (the newest are the last `keep`; keep >= 1). Pure: no store involved. */
void store_retention_select(dt_retention_item *items, size_t n, int keep);

/* The metric a job's checkpoints are ranked by: "fd_classifier" when spec.eval.extractor names
 * a classifier, else "fid" (a static string; spec is borrowed, NULL gives "fid"). */
const char *store_retention_metric(json_t *spec);

/* The job's checkpoints as store_artifact_list gives them (without urls), each with "pinned"
 * (bool) and "kept_because": the reasons it is kept, in the order "newest", "best_<metric>"
 * ("best_fid" or "best_fd_classifier"), "pinned"; empty when the next prune deletes it.
 * DT_STORE_NOT_FOUND for an unknown job. */
int store_checkpoint_list(dt_store *s, const char *job_id, json_t **out, char *err,
                          size_t errlen);

/* Pins (pinned = 1) or unpins (0) the checkpoint `name` of a job; repeating either is a no-op.
 * *out (may be NULL) receives the checkpoint as store_checkpoint_list shows it after the change.
 * DT_STORE_NOT_FOUND for an unknown job or checkpoint. */
int store_checkpoint_pin(dt_store *s, const char *job_id, const char *name, int pinned,
                         json_t **out, char *err, size_t errlen);

/* Applies the retention rule to the job's checkpoint rows. In one write transaction with the
 * decision (so a concurrent pin is either seen or answered not found), deletes the rows that no
 * reason keeps. *out = {"removed":[path...], "stateless":[path...]}: the model files of the
 * checkpoints just forgotten, and those of the kept checkpoints that are not among the newest
 * (their optimizer-state companions are no longer needed). The caller deletes those files: a
 * crash in between leaves a file without a row, never a row without its file. */
int store_checkpoint_prune(dt_store *s, const char *job_id, json_t **out, char *err,
                           size_t errlen);

/* ---- datasets and models --------------------------------------------------------------------- */

typedef struct {
    const char *id;      /* NULL = make one; else a "ds_" id from store_new_id */
    const char *name;    /* display name (required) */
    const char *path;    /* its directory under the data directory (required) */
    const char *format;  /* "image_folder", "idx", ... (required) */
    int64_t images;
    int64_t classes;
    json_t *class_names; /* borrowed JSON array; NULL = [] */
    json_t *class_counts; /* borrowed JSON array of integers (images per class, class_names
                           * order); NULL = [] */
    int64_t bytes;
} dt_dataset_new;

/* Stores a dataset; id_out (DT_STORE_ID_MAX bytes) receives its id. DT_STORE_CONFLICT when the
 * given id exists, DT_STORE_INVALID for a missing field or a bad id prefix. */
int store_dataset_create(dt_store *s, const dt_dataset_new *d, char id_out[DT_STORE_ID_MAX],
                         char *err, size_t errlen);
/* {"id","object":"dataset","name","format","images","classes","class_names","class_counts",
 * "bytes","created_at"} (the path stays private: store_dataset_path). class_counts is [] for
 * datasets stored without it. */
int store_dataset_get(dt_store *s, const char *id, json_t **out, char *err, size_t errlen);
/* A page of datasets, newest first; paging as store_job_list. */
int store_dataset_list(dt_store *s, int limit, const char *after, json_t **out,
                       char *err, size_t errlen);
/* Copies the dataset's directory into path (pathlen bytes). */
int store_dataset_path(dt_store *s, const char *id, char *path, size_t pathlen,
                       char *err, size_t errlen);
/* Deletes the row and copies its directory into path_out (may be NULL) for the caller to
 * remove. DT_STORE_CONFLICT while a queued or running job uses the dataset. */
int store_dataset_delete(dt_store *s, const char *id, char *path_out, size_t pathlen,
                         char *err, size_t errlen);

typedef struct {
    const char *id;                /* NULL = make one; else a "mdl_" id from store_new_id */
    const char *name;              /* required */
    const char *path;              /* its safetensors file (required) */
    const char *kind;              /* "dit" (NULL means it too) or "classifier" */
    json_t *config;                /* borrowed JSON object: arch, image_size, ... (required) */
    const char *source_job;        /* the job it was promoted from, or NULL (must exist) */
    const char *source_checkpoint; /* that job's checkpoint name, or NULL */
    int64_t bytes;
    const char *sha256;            /* hex or NULL */
} dt_model_new;

/* Stores a model; as store_dataset_create, plus DT_STORE_NOT_FOUND for an unknown source_job
 * and DT_STORE_INVALID for a kind other than "dit" or "classifier". */
int store_model_create(dt_store *s, const dt_model_new *m, char id_out[DT_STORE_ID_MAX],
                       char *err, size_t errlen);
/* {"id","object":"model","name","kind","config","source_job","source_checkpoint","bytes",
 * "sha256","created_at"}. */
int store_model_get(dt_store *s, const char *id, json_t **out, char *err, size_t errlen);
/* A page of models, newest first; paging as store_job_list. */
int store_model_list(dt_store *s, int limit, const char *after, json_t **out,
                     char *err, size_t errlen);
/* Copies the model's file path into path (pathlen bytes). */
int store_model_path(dt_store *s, const char *id, char *path, size_t pathlen,
                     char *err, size_t errlen);
/* Deletes the row and copies its path into path_out (may be NULL). DT_STORE_CONFLICT while a
 * queued or running job uses it as base_model. */
int store_model_delete(dt_store *s, const char *id, char *path_out, size_t pathlen,
                       char *err, size_t errlen);

/* ---- API keys (store_keys.c) -------------------------------------------------------------- */

/* What a key may do; each scope includes the ones below it. */
typedef enum {
    DT_SCOPE_READ = 1,   /* every GET: jobs, events, metrics, samples, downloads, catalogs */
    DT_SCOPE_SUBMIT = 2, /* + create, cancel and retry jobs; upload datasets and models */
    DT_SCOPE_ADMIN = 3   /* + delete datasets and models */
} dt_scope;

#define DT_KEY_SECRET_MAX 72 /* "dtk_" + 64 hex digits + NUL, rounded up */
#define DT_KEY_HASH_HEX 65   /* 64 hex digits + NUL */

/* "read" | "submit" | "admin" ("?" for anything else). */
const char *store_scope_name(dt_scope scope);
/* Parses a scope name. Returns 0, or -1 when name is not one. */
int store_scope_parse(const char *name, dt_scope *out);
/* Makes a new secret: "dtk_" and 64 hex digits from the kernel's random source. Returns 0, or -1
 * when no randomness is available. */
int store_key_generate(char out[DT_KEY_SECRET_MAX]);
/* The lower-case hex SHA-256 of a secret: what the store keeps and looks keys up by. */
void store_key_hash(const char *secret, char out[DT_KEY_HASH_HEX]);

/* Stores a key by its hash (the secret itself is never stored). name may be NULL (""). id_out
 * receives its id, "key_" and 24 hex digits. DT_STORE_INVALID for a malformed hash or scope,
 * or a name that is not UTF-8 text of at most 200 bytes without control characters;
 * DT_STORE_CONFLICT when the hash is already stored. */
int store_key_create(dt_store *s, const char *name, dt_scope scope, const char *hash,
                     char id_out[DT_STORE_ID_MAX], char *err, size_t errlen);
/* The active (not revoked) key whose secret hashes to hash: 0 with *scope and id_out filled,
 * DT_STORE_NOT_FOUND when there is none. */
int store_key_lookup(dt_store *s, const char *hash, dt_scope *scope, char id_out[DT_STORE_ID_MAX],
                     char *err, size_t errlen);
/* The scope of the active key with this id (sessions carry the id): 0, or DT_STORE_NOT_FOUND
 * when it is unknown or revoked. */
int store_key_scope(dt_store *s, const char *id, dt_scope *scope, char *err, size_t errlen);
/* How many keys are active. */
int store_key_count(dt_store *s, int64_t *active, char *err, size_t errlen);
/* Every key, newest first: {"data":[{"id","object":"api_key","name","scope","created_at",
 * "revoked_at"(null while active)}]} (never the hash). */
int store_key_list(dt_store *s, json_t **out, char *err, size_t errlen);
/* Revokes a key: it stops working at once. DT_STORE_NOT_FOUND for an unknown id; revoking a
 * revoked key is a no-op. */
int store_key_revoke(dt_store *s, const char *id, char *err, size_t errlen);

#endif
