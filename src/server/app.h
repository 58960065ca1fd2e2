/* app.h - the state of one racefreed process, and the metrics it shares.
 *
 * Two lifetimes:
 *   - srv_shared_t: created by the first process BEFORE any fork(): the
 *     metrics registry in MAP_SHARED memory and every series registered in
 *     it, so that all worker processes update the same counters (the C
 *     counterpart of the article's SharedArrayBuffer + Atomics).
 *   - srv_app_t: one per serving process, created after fork() (threads
 *     must not exist across fork): the store connection pool, the timer
 *     thread, the CPU pool, the HTTP daemon, per-route module state.
 */
#ifndef RACEFREED_APP_H
#define RACEFREED_APP_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "racefree/lock.h"
#include "racefree/metrics.h"
#include "racefree/pool.h"
#include "racefree/timer.h"

#include "options.h"
#include "store.h"

#define SRV_MAX_ROUTES 64

/* Job states for racefree_jobs_total{state=...}. */
enum { SRV_JOB_QUEUED, SRV_JOB_COMPLETED, SRV_JOB_RETRIED, SRV_JOB_FAILED, SRV_JOB_STATES };

typedef struct srv_shared {
  rf_metrics_t *registry;
  rf_counter_t *requests;             /* racefree_requests_total: answered requests */
  rf_counter_t *errors;               /* racefree_errors_total: answers >= 500 */
  rf_gauge_t *active;                 /* racefree_active_requests */
  rf_counter_t *api_requests;         /* racefree_api_requests_total: GET /api (the safe counter) */
  rf_counter_t *config_loads;         /* racefree_config_loads_total */
  rf_counter_t *cache_loads;          /* racefree_cache_loads_total */
  rf_gauge_t *pool_queue;             /* racefree_pool_queue_depth */
  rf_gauge_t *pool_busy;              /* racefree_pool_busy_workers */
  rf_counter_t *loop_waits;           /* racefree_store_loop_waits_total */
  rf_counter_t *jobs[SRV_JOB_STATES]; /* racefree_jobs_total{state} */
  rf_histogram_t *duration[SRV_MAX_ROUTES + 1]; /* per route; [nroutes] = unmatched */
} srv_shared_t;

/* srv_shared_create: create the registry (RF_METRICS_SHARED when `shared`)
 * and register every series, for `nroutes` route patterns. */
int srv_shared_create(srv_shared_t *s, bool shared, const char *const *route_patterns,
                      size_t nroutes);
void srv_shared_destroy(srv_shared_t *s);

typedef struct srv_rq srv_rq_t;

typedef struct srv_app {
  const srv_options_t *opts;
  srv_shared_t *shared;
  rf_store_t *store;
  rf_timer_t *timer;
  rf_pool_t *pool;    /* CPU work (low priority) */
  rf_pool_t *io_pool; /* blocking calls that are not the store's (srv_rq_offload) */
  rf_lock_t *redis;   /* --redis: the distributed lock service (NULL: off) */
  struct MHD_Daemon *daemon;
  atomic_bool shutting_down; /* answers carry Connection: close */
  atomic_long inflight;      /* requests of this process not yet finished */
  atomic_long store_jobs;    /* srv_rq_store jobs handed over, not yet done */
  atomic_bool store_closing; /* srv_rq_store answers 503 from now on */

  /* Requests whose connection is suspended, so that shutdown can resume
   * every one of them before stopping the daemon (see http.c). */
  pthread_mutex_t susp_mu;
  srv_rq_t *susp_head;
  size_t susp_count;
} srv_app_t;

/* srv_app_open: the per-process resources (store, timer, pool, route
 * modules). On failure writes a message to err and returns a negative
 * code; nothing is left open. */
int srv_app_open(srv_app_t *app, const srv_options_t *opts, srv_shared_t *shared, char *err,
                 size_t errlen);
/* srv_redis_open: the Redis lock service for --redis URL (connects
 * lazily). RF_EINVAL with a message for a malformed URL. */
int srv_redis_open(const char *url, rf_lock_t **out, char *err, size_t errlen);

/* srv_app_close: the reverse, after the HTTP daemon has stopped. */
void srv_app_close(srv_app_t *app);

/* srv_pool_submit: run fn(arg) on the CPU pool, then done(status, arg), and
 * keep racefree_pool_queue_depth / racefree_pool_busy_workers exact across
 * worker processes (they are shared gauges moved by deltas at each event).
 * Errors as rf_pool_submit (RF_EBUSY: queue full -> 503 overloaded). */
int srv_pool_submit(srv_app_t *app, rf_task_fn fn, rf_task_done_fn done, void *arg);

#endif /* RACEFREED_APP_H */
