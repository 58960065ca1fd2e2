/* app.c - per-process resources and the shared metrics (see app.h). */
#include "app.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "racefree/errors.h"

#include "log.h"
#include "redact.h"
#include "routes/routes.h"

/* Latency buckets in seconds: 0.5 ms .. 10 s, so both a 20 µs GET /api and a
 * 50 ms simulated upstream land in informative buckets. */
static const double duration_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                         0.1,    0.25,  0.5,    1,     2.5,  5,     10};

static const char *const job_state_names[SRV_JOB_STATES] = {"queued", "completed", "retried",
                                                            "failed"};

int srv_shared_create(srv_shared_t *s, bool shared, const char *const *route_patterns,
                      size_t nroutes) {
  memset(s, 0, sizeof *s);
  if (nroutes > SRV_MAX_ROUTES)
    return RF_EINVAL;
  int rc = rf_metrics_create(&s->registry, 256, shared ? RF_METRICS_SHARED : 0);
  if (rc != 0)
    return rc;
  rf_metrics_t *m = s->registry;
  if ((rc = rf_metrics_counter(m, "racefree_requests_total", "HTTP requests answered.", NULL, 0,
                               &s->requests)) != 0 ||
      (rc = rf_metrics_counter(m, "racefree_errors_total", "HTTP answers with status >= 500.", NULL,
                               0, &s->errors)) != 0 ||
      (rc = rf_metrics_gauge(m, "racefree_active_requests",
                             "Requests received and not yet finished.", NULL, &s->active)) != 0 ||
      (rc = rf_metrics_counter(m, "racefree_api_requests_total",
                               "GET /api served (the safe request counter).", NULL, 0,
                               &s->api_requests)) != 0 ||
      (rc = rf_metrics_counter(m, "racefree_config_loads_total",
                               "Times the application config file was loaded.", NULL, 0,
                               &s->config_loads)) != 0 ||
      (rc = rf_metrics_counter(m, "racefree_cache_loads_total",
                               "Cache loader runs (simulated upstream calls).", NULL, 0,
                               &s->cache_loads)) != 0 ||
      (rc = rf_metrics_gauge(m, "racefree_pool_queue_depth", "CPU pool tasks waiting.", NULL,
                             &s->pool_queue)) != 0 ||
      (rc = rf_metrics_gauge(m, "racefree_pool_busy_workers", "CPU pool workers running a task.",
                             NULL, &s->pool_busy)) != 0 ||
      (rc = rf_metrics_counter(m, "racefree_store_loop_waits_total",
                               "Database calls that waited on an HTTP event-loop thread"
                               " (should stay 0).",
                               NULL, 0, &s->loop_waits)) != 0)
    goto fail;
  for (int i = 0; i < SRV_JOB_STATES; i++) {
    char labels[64];
    snprintf(labels, sizeof labels, "state=\"%s\"", job_state_names[i]);
    rc = rf_metrics_counter(m, "racefree_jobs_total", "Background job transitions.", labels, 0,
                            &s->jobs[i]);
    if (rc != 0)
      goto fail;
  }
  for (size_t i = 0; i <= nroutes; i++) {
    char labels[256];
    const char *kv[2] = {"route", i < nroutes ? route_patterns[i] : "unmatched"};
    rc = rf_metrics_labels_render(labels, sizeof labels, kv, 1);
    if (rc == 0)
      rc = rf_metrics_histogram(m, "racefree_request_duration_seconds",
                                "Time from request headers to the answer, by route.", labels,
                                duration_bounds, sizeof duration_bounds / sizeof(double),
                                &s->duration[i]);
    if (rc != 0)
      goto fail;
  }
  return 0;
fail:
  rf_metrics_destroy(s->registry);
  memset(s, 0, sizeof *s);
  return rc;
}

void srv_shared_destroy(srv_shared_t *s) {
  rf_metrics_destroy(s->registry);
  memset(s, 0, sizeof *s);
}

int srv_redis_open(const char *url, rf_lock_t **out, char *err, size_t errlen) {
  /* Short timeouts: /ready pings from an HTTP thread, and a Redis that is
   * down must cost little (after a failed connect, calls fail fast for the
   * reconnect interval). */
  rf_lock_redis_opts_t ro = {.url = url,
                             .prefix = "racefree",
                             .connect_timeout_ms = 200,
                             .command_timeout_ms = 200,
                             .reconnect_interval_ms = 500};
  int rc = rf_lock_create_redis(out, &ro, NULL);
  if (rc != 0) {
    char shown[SRV_PATH_MAX];
    snprintf(err, errlen, "--redis %s: %s", srv_url_redact(url, shown, sizeof shown),
             rf_strerror(rc));
  }
  return rc;
}

int srv_app_open(srv_app_t *app, const srv_options_t *opts, srv_shared_t *shared, char *err,
                 size_t errlen) {
  memset(app, 0, sizeof *app);
  app->opts = opts;
  app->shared = shared;
  atomic_init(&app->shutting_down, false);
  atomic_init(&app->inflight, 0);
  pthread_mutex_init(&app->susp_mu, NULL);
  int rc = rf_store_open_err(opts->db, &app->store, err, errlen);
  if (rc != 0)
    goto fail;
  rc = rf_timer_create(&app->timer);
  if (rc != 0) {
    snprintf(err, errlen, "cannot start the timer thread: %s", rf_strerror(rc));
    goto fail;
  }
  rf_pool_opts_t po = {.threads = (unsigned)opts->pool_size,
                       .queue_capacity = (size_t)opts->pool_queue,
                       .nice = 10,
                       .sched_idle = opts->pool_priority == SRV_POOL_IDLE};
  rc = rf_pool_create(&app->pool, &po);
  if (rc != 0) {
    snprintf(err, errlen, "cannot start the worker pool: %s", rf_strerror(rc));
    goto fail;
  }
  /* Threads that may block on I/O for the HTTP threads (the job queue's
   * database): normal priority, mostly waiting. */
  rf_pool_opts_t io = {.threads = 2, .queue_capacity = 4096, .nice = 0};
  rc = rf_pool_create(&app->io_pool, &io);
  if (rc != 0) {
    snprintf(err, errlen, "cannot start the I/O pool: %s", rf_strerror(rc));
    goto fail;
  }
  if (opts->redis[0] != '\0' && (rc = srv_redis_open(opts->redis, &app->redis, err, errlen)) != 0)
    goto fail;
  rc = srv_routes_init(app, err, errlen);
  if (rc != 0)
    goto fail;
  return 0;
fail:
  srv_app_close(app);
  return rc;
}

void srv_app_close(srv_app_t *app) {
  /* The daemon is stopped: no request runs, no timer is pending that refers
   * to one. Modules first (they may hold timers' or pools' work), then the
   * machinery, then the store. */
  srv_routes_fini(app);
  if (app->timer != NULL) {
    rf_timer_shutdown(app->timer, true);
    rf_timer_destroy(app->timer);
    app->timer = NULL;
  }
  if (app->pool != NULL) {
    rf_pool_destroy(app->pool);
    app->pool = NULL;
  }
  if (app->io_pool != NULL) {
    rf_pool_destroy(app->io_pool);
    app->io_pool = NULL;
  }
  rf_lock_destroy(app->redis);
  app->redis = NULL;
  rf_store_close(app->store);
  app->store = NULL;
  pthread_mutex_destroy(&app->susp_mu);
}

/* ------------------------------------------------------------ the pool */

typedef struct pool_task {
  srv_app_t *app;
  rf_task_fn fn;
  rf_task_done_fn done;
  void *arg;
} pool_task_t;

static void pool_task_run(void *p) {
  pool_task_t *t = p;
  rf_gauge_add(t->app->shared->pool_queue, -1);
  rf_gauge_add(t->app->shared->pool_busy, 1);
  t->fn(t->arg);
  rf_gauge_add(t->app->shared->pool_busy, -1);
}

static void pool_task_done(int status, void *p) {
  pool_task_t *t = p;
  if (status != 0) /* cancelled while queued: pool_task_run never ran */
    rf_gauge_add(t->app->shared->pool_queue, -1);
  if (t->done != NULL)
    t->done(status, t->arg);
  free(t);
}

int srv_pool_submit(srv_app_t *app, rf_task_fn fn, rf_task_done_fn done, void *arg) {
  pool_task_t *t = malloc(sizeof *t);
  if (t == NULL)
    return RF_ENOMEM;
  *t = (pool_task_t){app, fn, done, arg};
  /* +1 before the task can start, so the worker's -1 never goes first. */
  rf_gauge_add(app->shared->pool_queue, 1);
  int rc = rf_pool_submit(app->pool, pool_task_run, pool_task_done, t);
  if (rc != 0) {
    rf_gauge_add(app->shared->pool_queue, -1);
    free(t);
  }
  return rc;
}
