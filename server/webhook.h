/* webhook.h — job webhooks of `difftune serve`: the events a job's spec asks for (spec.webhook:
 * a URL and a filter of event types) are POSTed to its URL, signed as Standard Webhooks
 * (webhook_sign.h), retried with backoff, from a thread of their own so that no API request, no
 * worker and no shutdown waits on a receiver.
 *
 * Which events: webhook_notify(job) is called after anything stored events of the job (the
 * supervisor, the store's status transitions it triggers, the API's create, cancel and retry).
 * The delivery thread then reads the job's events past the last one it looked at (its cursor),
 * so every stored event passes, in event-id order, whoever stored it. Cursors start at the newest
 * event id when webhook_start runs: events stored before this process started are not sent.
 *
 * One delivery: POST url with body
 *     {"type":"<event type>","timestamp":"<event time, ISO 8601 UTC>",
 *      "data":{"job":"job_...","event_id":N, ...the event's data}}
 * and headers content-type: application/json, webhook-id: evt_<job id>_<event id> (the same on
 * every attempt: receivers deduplicate with it), webhook-timestamp (unix seconds of the attempt)
 * and webhook-signature ("v1,<base64 HMAC-SHA256 of id.timestamp.body>").
 * A job has one request in flight at a time, so its events arrive in order; several jobs are
 * served at once. 2xx is delivered. Network errors, timeouts, 5xx and 429 are tried again after
 * backoff_ms, doubling each time (1, 2, 4, 8, 16 s by default, each +-20 % at random), or after
 * the Retry-After the receiver sent when that is longer (capped at 5 minutes), up to
 * max_attempts in all. Anything else (3xx: redirects are not followed; 4xx) fails at once; 410
 * Gone also stops the job's later deliveries. The outcome of a delivery's last attempt is one line
 * on stderr naming the event, the URL's host and port (never its path or query, never the secret)
 * and counted (webhook_stats).
 * Bounds: at most queue_max deliveries (and 64 MiB of bodies) wait; past that the oldest waiting
 * one is dropped, with one warning line until the queue has drained to half. At shutdown what is
 * still undelivered after a grace of about a second is dropped.
 */
#ifndef DT_WEBHOOK_H
#define DT_WEBHOOK_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

typedef struct dt_webhooks dt_webhooks;

typedef struct {
    const char *data_dir;  /* holds webhook.secret, read (or made) at the first delivery */
    dt_store *store;       /* borrowed; must outlive webhook_stop */
    int queue_max;         /* deliveries waiting or in flight at most; 0 = 10000 */
    int timeout_ms;        /* of one attempt, connecting included; 0 = 10000 */
    int max_attempts;      /* per delivery; 0 = 6 */
    int backoff_ms;        /* before the second attempt, doubling after; 0 = 1000 */
    int max_in_flight;     /* requests at once (one per job at most); 0 = 16 */
    int shutdown_grace_ms; /* webhook_stop waits this long for deliveries due now; 0 = 1000 */
    const char *user_agent;/* NULL = "difftune-webhooks" */
} dt_webhook_opts;

typedef struct {
    uint64_t ok;      /* delivered (a 2xx answer) */
    uint64_t failed;  /* the last attempt failed, or the answer forbade another */
    uint64_t dropped; /* never finished: the queue was full, the receiver answered 410 Gone to an
                       * earlier one, or the server stopped */
    uint64_t retries; /* attempts after a delivery's first */
    uint64_t pending; /* waiting or in flight now */
} dt_webhook_stats;

/* Starts the delivery thread. Reads the newest event id from the store (the cursors' start) and
 * initialises libcurl. The options' strings are copied. Returns 0 with *out set, or -1 with a
 * message in err. */
int webhook_start(const dt_webhook_opts *opts, dt_webhooks **out, char *err, size_t errlen);

/* Thread-safe and quick (a mutex and a wakeup, no I/O): events of job_id may have been stored.
 * NULL w is a no-op, and so is a call after webhook_stop began. */
void webhook_notify(dt_webhooks *w, const char *job_id);

/* Thread-safe: the counters since webhook_start. */
void webhook_stats(dt_webhooks *w, dt_webhook_stats *out);

/* Stops the thread: deliveries in flight or due within the grace period may still finish, the
 * rest are dropped (counted; one line on stderr says how many). Returns within about
 * shutdown_grace_ms plus one poll interval (100 ms), then frees w. NULL is a no-op. No thread may
 * call webhook_notify or webhook_stats any more. */
void webhook_stop(dt_webhooks *w);

#endif
