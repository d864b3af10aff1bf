/* cmd_serve.c — `difftune serve`: the store, the HTTP API on its threads, and the scheduler and
 * worker supervisor on the main thread's libuv loop; graceful shutdown on SIGTERM / SIGINT. */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include <uv.h>

#include "api.h"
#include "backend.h"
#include "cli.h"
#include "clock.h"
#include "fsutil.h"
#include "inception.h"
#include "layout.h"
#include "store.h"
#include "supervisor.h"
#include "webhook.h"

#define SERVE_MAX_DEVICES 16

typedef struct {
    const char *host, *data_dir, *devices_arg, *inception_weights;
    long port, slots, threads, max_upload_mb, max_unpacked_mb, max_archive_files, grace_s, log_every, heartbeat_s,
        rate_limit, rate_burst;
    long min_free_mb; /* free-space reserve for checkpoints and uploads */
    long webhook_timeout_s, webhook_attempts; /* 0 = webhook.h's defaults */
    int durable;
} serve_opts;

typedef struct {
    uv_loop_t *loop;
    dt_store *store;
    dt_api *api;
    dt_supervisor *sup;
    dt_webhooks *webhooks;  /* started before the API, stopped after it and the supervisor */
    uv_signal_t sigint, sigterm;
    uv_timer_t prune;
    int stopping;
    long grace_s;
} serve_state;

static void serve_usage(FILE *f) {
    fprintf(f,
        "usage: difftune serve [options]\n\n"
        "Runs the job server: the REST API (DESIGN.md section 3) with live SSE streams, the job\n"
        "store (SQLite, WAL) and one worker process (`difftune run-job`) per busy device slot.\n"
        "SIGTERM or SIGINT shuts down gracefully: running workers write a checkpoint and their jobs\n"
        "go back to the queue, to resume when the server starts again.\n\n"
        "options:\n"
        "  --port N               TCP port (default 8080; 0 picks a free one)\n"
        "  --host ADDR            address to listen on (default 127.0.0.1; 0.0.0.0 for every interface).\n"
        "                         With no API key (difftune keys create) the server stays on loopback\n"
        "                         and lets every local request in; any other address needs keys\n"
        "  --rate-limit N         requests a second per API key, then 429 (default 50; 0 = no limit)\n"
        "  --rate-burst N         requests a key may send at once (default 2 x --rate-limit)\n"
        "  --data-dir DIR         store, uploads, checkpoints, banks (default $DIFFTUNE_DATA_DIR,\n"
        "                         else ./difftune-data)\n"
        "  --devices LIST         auto (default: every CUDA device, else cpu) | cpu | cuda:0,cuda:1,...\n"
        "  --slots-per-device N   concurrent jobs per device (default 1; 0 queues jobs and runs none,\n"
        "                         e.g. while a machine is being serviced)\n"
        "  --threads N            HTTP threads (default: the number of CPUs)\n"
        "  --max-upload-mb N      largest dataset or model upload (default 4096)\n"
        "  --max-unpacked-mb N    most a dataset archive may extract to (default 4 x --max-upload-mb);\n"
        "                         extraction stops as soon as it is exceeded (decompression bombs)\n"
        "  --max-archive-files N  most members a dataset archive may hold (default 1000000)\n"
        "  --cancel-grace S       seconds between SIGTERM and SIGKILL for a cancelled job (default 10)\n"
        "  --log-every N          training steps between progress events (default 10)\n"
        "  --min-free-mb N        MiB to keep free on the data directory's file system: a checkpoint\n"
        "                         that would leave less fails its job with disk_full, an upload gets\n"
        "                         507 disk_full (default 1024)\n"
        "  --webhook-timeout S    seconds one webhook request may take, connecting included (default 10)\n"
        "  --webhook-attempts N   attempts per webhook delivery before it counts as failed (default 6;\n"
        "                         retries after 1, 2, 4, 8, 16 s, or the receiver's Retry-After)\n"
        "  --sse-heartbeat S      seconds of silence before an event stream gets a comment line\n"
        "                         (default 15; keeps proxies from closing idle streams)\n"
        "  --durable              fsync every store commit (default: WAL with synchronous=NORMAL)\n"
        "  --inception-weights FILE\n"
        "                         FID Inception weights for jobs' eval.fid_every (pytorch-fid's state\n"
        "                         dict as safetensors; README: Evaluation); checked at start (default\n"
        "                         $DIFFTUNE_INCEPTION_WEIGHTS; without them jobs report FID\n"
        "                         unavailable)\n");
}

static int serve_bad(const char *fmt, const char *what) {
    fprintf(stderr, "difftune serve: ");
    fprintf(stderr, fmt, what);
    fprintf(stderr, " (see --help)\n");
    return 2;
}

static int serve_parse(int argc, char **argv, serve_opts *o) {
    const char *weights = getenv("DIFFTUNE_INCEPTION_WEIGHTS");
    *o = (serve_opts){.host = "127.0.0.1", .data_dir = cli_default_data_dir(),
                      .inception_weights = weights && weights[0] ? weights : NULL,
                      .devices_arg = "auto", .port = 8080, .slots = 1, .max_upload_mb = 4096,
                      .grace_s = 10, .log_every = 10, .heartbeat_s = 15, .rate_limit = 50, .min_free_mb = DT_MIN_FREE_MB_DEFAULT};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { serve_usage(stdout); return 1; }
        if (!strcmp(a, "--durable")) { o->durable = 1; continue; }
        if (!v) return serve_bad("%s needs a value", a);
        i++;
        if (!strcmp(a, "--host")) o->host = v;
        else if (!strcmp(a, "--data-dir")) o->data_dir = v;
        else if (!strcmp(a, "--devices")) o->devices_arg = v;
        else if (!strcmp(a, "--inception-weights")) o->inception_weights = v;
        else if (!strcmp(a, "--port")) { if (cli_parse_int(v, 0, 65535, &o->port)) return serve_bad("%s must be 0..65535", a); }
        else if (!strcmp(a, "--slots-per-device")) { if (cli_parse_int(v, 0, 64, &o->slots)) return serve_bad("%s must be 0..64", a); }
        else if (!strcmp(a, "--threads")) { if (cli_parse_int(v, 1, 256, &o->threads)) return serve_bad("%s must be 1..256", a); }
        else if (!strcmp(a, "--max-upload-mb")) { if (cli_parse_int(v, 1, 1 << 20, &o->max_upload_mb)) return serve_bad("%s must be 1..1048576", a); }
        else if (!strcmp(a, "--max-unpacked-mb")) { if (cli_parse_int(v, 1, 1L << 24, &o->max_unpacked_mb)) return serve_bad("%s must be 1..16777216", a); }
        else if (!strcmp(a, "--max-archive-files")) { if (cli_parse_int(v, 1, 100000000, &o->max_archive_files)) return serve_bad("%s must be 1..100000000", a); }
        else if (!strcmp(a, "--cancel-grace")) { if (cli_parse_int(v, 0, 3600, &o->grace_s)) return serve_bad("%s must be 0..3600 seconds", a); }
        else if (!strcmp(a, "--sse-heartbeat")) { if (cli_parse_int(v, 1, 3600, &o->heartbeat_s)) return serve_bad("%s must be 1..3600 seconds", a); }
        else if (!strcmp(a, "--rate-limit")) { if (cli_parse_int(v, 0, 1000000, &o->rate_limit)) return serve_bad("%s must be 0..1000000 requests a second", a); }
        else if (!strcmp(a, "--rate-burst")) { if (cli_parse_int(v, 1, 1000000, &o->rate_burst)) return serve_bad("%s must be 1..1000000 requests", a); }
        else if (!strcmp(a, "--min-free-mb")) { if (cli_parse_int(v, 0, DT_MIN_FREE_MB_MAX, &o->min_free_mb)) return serve_bad("%s must be 0..1073741824", a); }
        else if (!strcmp(a, "--webhook-timeout")) { if (cli_parse_int(v, 1, 600, &o->webhook_timeout_s)) return serve_bad("%s must be 1..600 seconds", a); }
        else if (!strcmp(a, "--webhook-attempts")) { if (cli_parse_int(v, 1, 20, &o->webhook_attempts)) return serve_bad("%s must be 1..20", a); }
        else if (!strcmp(a, "--log-every")) { if (cli_parse_int(v, 1, 1000000, &o->log_every)) return serve_bad("%s must be a positive integer", a); }
        else return serve_bad("unknown option %s", a);
    }
    return 0;
}

/* Resolves --devices into names: "auto" probes CUDA devices and falls back to the CPU. */
static int serve_devices(const char *arg, char names[SERVE_MAX_DEVICES][32], int *n) {
    *n = 0;
    if (!strcmp(arg, "auto")) {
        for (int i = 0; i < SERVE_MAX_DEVICES; i++) {
            char name[32], err[256];
            snprintf(name, sizeof name, "cuda:%d", i);
            dt_backend *be = dt_backend_create(name, err, sizeof err);
            if (!be) break;
            be->destroy(be);
            snprintf(names[(*n)++], 32, "%s", name);
        }
        if (!*n) snprintf(names[(*n)++], 32, "cpu");
        return 0;
    }
    char copy[512];
    snprintf(copy, sizeof copy, "%s", arg);
    for (char *save = NULL, *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        long idx;
        int ok = !strcmp(tok, "cpu") || (!strncmp(tok, "cuda:", 5) && !cli_parse_int(tok + 5, 0, 255, &idx));
        if (!ok || *n >= SERVE_MAX_DEVICES) {
            fprintf(stderr, "difftune serve: --devices: '%s' is not cpu or cuda:N (at most %d devices)\n", tok,
                    SERVE_MAX_DEVICES);
            return -1;
        }
        for (int j = 0; j < *n; j++)
            if (!strcmp(names[j], tok)) {
                fprintf(stderr, "difftune serve: --devices names %s twice\n", tok);
                return -1;
            }
        if (strcmp(tok, "cpu")) {
            char err[256];
            dt_backend *be = dt_backend_create(tok, err, sizeof err);
            if (!be) {
                fprintf(stderr, "difftune serve: --devices: %s is not usable: %s\n", tok, err);
                return -1;
            }
            be->destroy(be);
        }
        snprintf(names[(*n)++], 32, "%s", tok);
    }
    if (!*n) {
        fprintf(stderr, "difftune serve: --devices is empty\n");
        return -1;
    }
    return 0;
}

/* The FID Inception weights: loaded once here so a bad file stops the server at start rather
 * than every job at its first evaluation; workers find the absolute path in
 * DIFFTUNE_INCEPTION_WEIGHTS (their environment is copied from ours). Without weights the
 * variable is removed, and jobs report FID unavailable. Returns 0 or -1 after printing why. */
static int serve_inception(const char *weights) {
    if (!weights) {
        unsetenv("DIFFTUNE_INCEPTION_WEIGHTS");
        fprintf(stderr, "difftune serve: no --inception-weights: jobs report FID as unavailable "
                "(README: Evaluation)\n");
        return 0;
    }
    char path[PATH_MAX], err[1024];
    dt_inception *net = NULL;
    if (!realpath(weights, path)) {
        fprintf(stderr, "difftune serve: --inception-weights %s: %s\n", weights, strerror(errno));
        return -1;
    }
    if (inception_load(&net, path, err, sizeof err)) {
        fprintf(stderr, "difftune serve: --inception-weights %s: %s\n", weights, err);
        return -1;
    }
    inception_free(net);
    setenv("DIFFTUNE_INCEPTION_WEIGHTS", path, 1);
    fprintf(stderr, "difftune serve: FID with the Inception weights %s\n", path);
    return 0;
}

/* Every SSE subscriber and upload holds a descriptor: raise the soft limit to the hard one. */
static void serve_raise_fd_limit(void) {
    struct rlimit rl;
    if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* ---- hooks between the API and the supervisor -------------------------------------------- */

/* The API's threads run before the supervisor exists: they read s->sup atomically. */
static dt_supervisor *serve_sup(serve_state *s) { return __atomic_load_n(&s->sup, __ATOMIC_ACQUIRE); }

static void serve_wake(void *ctx) {
    dt_supervisor *sup = serve_sup(ctx);
    if (sup) supervisor_wake(sup);
}

static void serve_checkpoints_changed(void *ctx, const char *job_id) {
    dt_supervisor *sup = serve_sup(ctx);
    if (sup) supervisor_checkpoints_changed(sup, job_id);
}

static json_t *serve_workers(void *ctx) {
    dt_supervisor *sup = serve_sup(ctx);
    return sup ? supervisor_workers_json(sup) : NULL;
}

static void serve_stats(void *ctx, json_t *out) {
    dt_supervisor *sup = serve_sup(ctx);
    if (!sup) return;
    dt_supervisor_stats st;
    supervisor_stats(sup, &st);
    json_object_set_new(out, "slots", json_integer(st.slots));
    json_object_set_new(out, "busy", json_integer(st.busy));
    json_object_set_new(out, "spawned_total", json_integer((json_int_t)st.spawned));
    json_object_set_new(out, "died_total", json_integer((json_int_t)st.died));
    json_object_set_new(out, "events_total", json_integer((json_int_t)st.events));
}

/* Every stored event passes through here or serve_stored: the supervisor's (and the status
 * changes it makes) wake streams and webhooks; the API's own (create, cancel, retry) wake
 * webhooks, the API having woken its streams. */
static void serve_notify(void *ctx, const char *job_id) {
    serve_state *s = ctx;
    if (s->api) api_notify(s->api, job_id);
    webhook_notify(s->webhooks, job_id);
}

static void serve_stored(void *ctx, const char *job_id) {
    serve_state *s = ctx;
    webhook_notify(s->webhooks, job_id);
}

static void serve_webhook_stats(void *ctx, dt_api_webhook_stats *out) {
    serve_state *s = ctx;
    dt_webhook_stats ws;
    webhook_stats(s->webhooks, &ws);
    *out = (dt_api_webhook_stats){.ok = ws.ok, .failed = ws.failed, .dropped = ws.dropped,
                                  .retries = ws.retries, .pending = ws.pending};
}

/* ---- shutdown ---------------------------------------------------------------------------- */

static void serve_closed(uv_handle_t *h) { (void)h; }

static void serve_done(void *ctx) {
    serve_state *s = ctx;
    uv_close((uv_handle_t *)&s->prune, serve_closed);
    uv_close((uv_handle_t *)&s->sigint, serve_closed);
    uv_close((uv_handle_t *)&s->sigterm, serve_closed);
}

static void serve_on_signal(uv_signal_t *h, int sig) {
    serve_state *s = h->data;
    if (s->stopping) {
        fprintf(stderr, "difftune serve: second %s, stopping workers now\n", strsignal(sig));
        if (s->sup) supervisor_shutdown(s->sup, 0, serve_done, s);
        return;
    }
    s->stopping = 1;
    fprintf(stderr, "difftune serve: %s: shutting down (workers checkpoint and requeue their jobs)\n",
            strsignal(sig));
    api_drain(s->api);
    if (s->sup) supervisor_shutdown(s->sup, (int)(s->grace_s * 1000), serve_done, s);
    else serve_done(s);
}

/* Idempotency keys protect retries of one request, not forever: forget them after a day. */
#define SERVE_IDEMPOTENCY_TTL_S (24 * 3600)

static void serve_on_prune(uv_timer_t *t) {
    serve_state *s = t->data;
    char err[256];
    int n = store_idempotency_prune(s->store, dt_now() - SERVE_IDEMPOTENCY_TTL_S, err, sizeof err);
    if (n < 0) fprintf(stderr, "difftune serve: pruning idempotency keys failed: %s\n", err);
}

/* Is host a loopback address (127.0.0.0/8, ::1)? Names are not resolved: --host is numeric. */
static int serve_is_loopback(const char *host) {
    struct in_addr v4;
    struct in6_addr v6;
    if (inet_pton(AF_INET, host, &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
    return inet_pton(AF_INET6, host, &v6) == 1 && IN6_IS_ADDR_LOOPBACK(&v6);
}

/* Refuses to listen beyond loopback with no API key; says at start who may come in. */
static int serve_access(dt_store *st, const char *host, int64_t *active) {
    char err[256];
    if (store_key_count(st, active, err, sizeof err)) {
        fprintf(stderr, "difftune serve: cannot read the API keys: %s\n", err);
        return -1;
    }
    if (*active == 0 && !serve_is_loopback(host)) {
        fprintf(stderr,
                "difftune serve: --host %s would let anyone on the network in, and there is no API key:\n"
                "  create one first (difftune keys create --scope admin --data-dir DIR), or listen on 127.0.0.1\n",
                host);
        return -1;
    }
    return 0;
}

static int serve_exe(char *out, size_t len) {
    ssize_t n = readlink("/proc/self/exe", out, len - 1);
    if (n <= 0) return -1;
    out[n] = 0;
    return 0;
}

int cmd_serve(int argc, char **argv) {
    serve_opts o;
    int rc = serve_parse(argc, argv, &o);
    if (rc) return rc == 1 ? 0 : rc;
    char devices[SERVE_MAX_DEVICES][32];
    int n_devices;
    if (serve_devices(o.devices_arg, devices, &n_devices)) return 2;
    if (serve_inception(o.inception_weights)) return 2;
    const char *device_names[SERVE_MAX_DEVICES];
    for (int i = 0; i < n_devices; i++) device_names[i] = devices[i];

    char err[1024], path[PATH_MAX + 64], exe[PATH_MAX];
    if (fs_mkdirs(o.data_dir, err, sizeof err)) {
        fprintf(stderr, "difftune serve: --data-dir: %s\n", err);
        return 2;
    }
    char data_dir[PATH_MAX];
    if (!realpath(o.data_dir, data_dir) || serve_exe(exe, sizeof exe)) {
        fprintf(stderr, "difftune serve: cannot resolve %s: %s\n", o.data_dir, strerror(errno));
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    serve_raise_fd_limit();

    serve_state s = {.loop = uv_default_loop(), .grace_s = o.grace_s};
    snprintf(path, sizeof path, "%s/%s", data_dir, DT_LAYOUT_DB);
    dt_store_options so = {.durable = o.durable};
    if (store_open(path, &so, &s.store, err, sizeof err)) {
        fprintf(stderr, "difftune serve: cannot open the store %s: %s\n", path, err);
        return 1;
    }
    int64_t keys;
    if (serve_access(s.store, o.host, &keys)) {
        store_close(s.store);
        return 2;
    }
    dt_api_opts ao = {.host = o.host, .port = (int)o.port, .threads = (int)o.threads, .data_dir = data_dir,
                      .store = s.store, .devices = device_names, .n_devices = n_devices,
                      .max_upload_bytes = (int64_t)o.max_upload_mb << 20,
                      .max_unpacked_bytes = (int64_t)o.max_unpacked_mb << 20, .max_archive_files = o.max_archive_files,
                      .heartbeat_s = (int)o.heartbeat_s, .min_free_bytes = (int64_t)o.min_free_mb << 20,
                      .open_without_keys = serve_is_loopback(o.host), .rate_limit = (double)o.rate_limit,
                      .rate_burst = (double)o.rate_burst, .wake = serve_wake,
                      .workers = serve_workers, .stats = serve_stats,
                      .stored = serve_stored, .webhook_stats = serve_webhook_stats,
                      .checkpoints_changed = serve_checkpoints_changed, .hook_ctx = &s};
    char agent[64];
    snprintf(agent, sizeof agent, "difftune/%s (webhooks)", DIFFTUNE_VERSION);
    dt_webhook_opts wo = {.data_dir = data_dir, .store = s.store, .user_agent = agent,
                          .timeout_ms = (int)o.webhook_timeout_s * 1000,
                          .max_attempts = (int)o.webhook_attempts};
    if (webhook_start(&wo, &s.webhooks, err, sizeof err)) {
        fprintf(stderr, "difftune serve: %s\n", err);
        store_close(s.store);
        return 1;
    }
    if (api_start(&ao, &s.api, err, sizeof err)) {
        fprintf(stderr, "difftune serve: %s\n", err);
        webhook_stop(s.webhooks);
        store_close(s.store);
        return 1;
    }
    dt_supervisor_opts sup = {.data_dir = data_dir, .exe = exe, .devices = device_names, .n_devices = n_devices,
                              .slots_per_device = (int)o.slots, .cancel_grace_ms = (int)(o.grace_s * 1000),
                              .log_every = (int)o.log_every, .min_free_mb = o.min_free_mb,
                              .store = s.store, .notify = serve_notify,
                              .notify_ctx = &s};
    dt_supervisor *started = NULL;
    if (supervisor_start(s.loop, &sup, &started, err, sizeof err)) {
        fprintf(stderr, "difftune serve: %s\n", err);
        api_stop(s.api);
        webhook_stop(s.webhooks);
        store_close(s.store);
        return 1;
    }
    __atomic_store_n(&s.sup, started, __ATOMIC_RELEASE);
    uv_signal_init(s.loop, &s.sigint);
    uv_signal_init(s.loop, &s.sigterm);
    s.sigint.data = s.sigterm.data = &s;
    uv_signal_start(&s.sigint, serve_on_signal, SIGINT);
    uv_signal_start(&s.sigterm, serve_on_signal, SIGTERM);
    uv_timer_init(s.loop, &s.prune);
    s.prune.data = &s;
    uv_timer_start(&s.prune, serve_on_prune, 0, 3600 * 1000);

    const char *shown = strcmp(o.host, "0.0.0.0") && strcmp(o.host, "::") ? o.host : "localhost";
    printf("difftune serve: listening on http://%s%s%s:%d/ (data %s; devices", strchr(shown, ':') ? "[" : "",
           shown, strchr(shown, ':') ? "]" : "", api_port(s.api), data_dir);
    for (int i = 0; i < n_devices; i++) printf("%s%s", i ? ", " : " ", devices[i]);
    printf(" x%ld)\n", o.slots);
    if (keys)
        printf("difftune serve: %lld API key(s): every request but the web UI's files, /health and "
               "/openapi.json needs one\n", (long long)keys);
    else
        printf("difftune serve: no API keys: every request from this machine is let in (loopback only; "
               "`difftune keys create` to require keys)\n");
    fflush(stdout);

    uv_run(s.loop, UV_RUN_DEFAULT);
    api_stop(s.api);
    supervisor_free(s.sup);
    webhook_stop(s.webhooks); /* after every notifier; undelivered events are dropped */
    store_close(s.store);
    uv_loop_close(s.loop);
    fprintf(stderr, "difftune serve: stopped\n");
    return 0;
}
