/* health.c - liveness, readiness and metrics.
 *
 * GET /health   200 {"status":"ok"} while the process serves requests.
 * GET /ready    200 {"status":"ready","store":kind,"redis":"ok"|"off"}, or
 *               503 not_ready when the database or the configured Redis does
 *               not answer a ping (Redis: 200 ms timeouts, then fail-fast for
 *               500 ms, so a dead Redis costs an HTTP thread little).
 * GET /metrics  the shared registry in Prometheus text format: totals over
 *               every worker process (the registry lives in MAP_SHARED
 *               memory created before fork, see app.h).
 *
 * No race to show here, so no --unsafe twin.
 */
#include <stdlib.h>

#include "routes.h"

void h_health(srv_rq_t *rq) {
  srv_rq_reply_json(rq, 200, json_pack("{s:s}", "status", "ok"));
}

static int ping_work(rf_store_t *s, void *state) {
  (void)state;
  return rf_store_ping(s);
}

void h_ready(srv_rq_t *rq) {
  srv_app_t *app = srv_rq_app(rq);
  if (srv_rq_stage(rq) == 0) { /* the ping is a round trip with PostgreSQL */
    if (srv_rq_state(rq, 1) == NULL)
      srv_rq_reply_nomem(rq);
    else
      srv_rq_store(rq, RF_STORE_READ, ping_work, 1);
    return;
  }
  int rc = srv_rq_store_rc(rq);
  if (rc != 0) {
    srv_rq_header(rq, "Retry-After", "1");
    srv_rq_reply_error(rq, 503, "not_ready", "store (%s): %s", rf_store_kind(app->store),
                       rf_strerror(rc));
    return;
  }
  if (app->redis != NULL && (rc = rf_lock_ping(app->redis)) != 0) {
    srv_rq_header(rq, "Retry-After", "1");
    srv_rq_reply_error(rq, 503, "not_ready", "redis: %s", rf_strerror(rc));
    return;
  }
  srv_rq_reply_json(rq, 200,
                    json_pack("{s:s,s:s,s:s}", "status", "ready", "store",
                              rf_store_kind(app->store), "redis", app->redis ? "ok" : "off"));
}

void h_metrics(srv_rq_t *rq) {
  char *text = NULL;
  size_t len = 0;
  int rc = rf_metrics_render(srv_rq_app(rq)->shared->registry, &text, &len);
  if (rc != 0) {
    srv_rq_reply_status(rq, rc, "metrics");
    return;
  }
  srv_rq_reply_raw(rq, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
  free(text);
}
