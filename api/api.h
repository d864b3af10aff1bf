/* api.h — the HTTP API of `difftune serve` (DESIGN.md section 3) on libmicrohttpd: a pool of
 * threads on epoll serves JSON requests, uploads, downloads and SSE streams.
 *
 * The API talks to the store directly and to the supervisor only through the hooks below
 * (wake after a change, the workers table, counters), so it runs and is tested with or without
 * workers.
 */
#ifndef DT_API_H
#define DT_API_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "store.h"

typedef struct dt_api dt_api;

/* Webhook deliveries since the server started (server/webhook.h), for GET /metrics. */
typedef struct {
    uint64_t ok, failed, dropped; /* by the outcome of their last attempt */
    uint64_t retries;             /* attempts after a delivery's first */
    uint64_t pending;             /* waiting or in flight now */
} dt_api_webhook_stats;

typedef struct {
    const char *host;            /* address to bind ("127.0.0.1", "0.0.0.0", "::"); NULL = 127.0.0.1 */
    int port;                    /* 0 = pick a free port (api_port tells which) */
    int threads;                 /* HTTP threads; 0 = the number of online CPUs (at least 2) */
    const char *data_dir;        /* uploads, job files */
    dt_store *store;             /* borrowed */
    const char *const *devices;  /* device names jobs may ask for besides "auto" */
    int n_devices;
    int64_t max_json_bytes;      /* request bodies of JSON endpoints; 0 = 1 MiB */
    int64_t max_upload_bytes;    /* dataset and model uploads; 0 = 4 GiB */
    int64_t max_unpacked_bytes;  /* what one dataset archive may extract to; 0 = 4 x max_upload_bytes */
    int64_t max_archive_files;   /* members one dataset archive may hold; 0 = 1,000,000 */
    int heartbeat_s;             /* SSE heartbeat period; 0 = 15 */
    int64_t min_free_bytes;      /* free-space reserve: an upload that would leave less free on the
                                  * data directory's file system gets 507 disk_full; 0 = none */
    int open_without_keys;       /* with no active API key, let every request in (loopback only) */
    double rate_limit;           /* requests a second per API key; 0 = no limit */
    double rate_burst;           /* requests a key may send at once; 0 = 2 x rate_limit */
    /* Hooks into the supervisor; any may be NULL. */
    void (*wake)(void *ctx);                 /* a job was created, cancelled or retried */
    json_t *(*workers)(void *ctx);           /* GET /workers body (new reference) */
    void (*stats)(void *ctx, json_t *out);   /* adds worker counters to the metrics object */
    void (*stored)(void *ctx, const char *job_id); /* the API stored events of job_id (its
                                              * queued status, a cancel, a retry): webhooks */
    void (*webhook_stats)(void *ctx, dt_api_webhook_stats *out); /* GET /metrics counters */
    void (*checkpoints_changed)(void *ctx, const char *job_id); /* a checkpoint was unpinned:
                                              * apply retention to the job (the supervisor) */
    void *hook_ctx;
} dt_api_opts;

/* Starts listening and serving. Returns 0 with *out set, or -1 with a message (port in use,
 * bad host). */
int api_start(const dt_api_opts *opts, dt_api **out, char *err, size_t errlen);
/* The TCP port the server listens on. */
int api_port(const dt_api *a);
/* Thread-safe: events of job_id were stored; wakes its stream subscribers. */
void api_notify(dt_api *a, const char *job_id);
/* Ends every SSE stream (clients reconnect elsewhere or later) and refuses new requests with
 * 503; call before api_stop for a graceful shutdown. */
void api_drain(dt_api *a);
/* Stops the server and frees it; NULL is a no-op. */
void api_stop(dt_api *a);

#endif
