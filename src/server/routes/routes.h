/* routes.h - the route table of racefreed and the scenario modules.
 *
 * One file per scenario of the article, each with its safe handler first
 * and, below a marked line, the naive handler that --unsafe selects:
 *
 *   health.c     /health /ready /metrics
 *   counter.c    /api /api/count              "The Request Counter"
 *   cache.c      /cache/{key} /cache-stats    "The Safe Cache Service"
 *   users.c      /users /users/{id}           "Check-Then-Act"
 *   inventory.c  /inventory/...               "Read-Modify-Write"
 *   config.c     /config /config/loads        "The Lazy Initialization"
 *   reports.c    /reports/{userId}            "The Subtle Service State"
 *   wallets.c    /wallets/...                 "Optimistic Locking"
 *   cpu.c        /reports/generate /images/process  "Worker Threads"
 *   payments.c   /payments /charges           "The Idempotent Payment", "Distributed Locks"
 *   jobs.c       /emails/... /jobs/{jobId}    "Queue-Based Processing"
 *
 * A module has optional init/fini hooks (per process, after fork) and
 * exports its handlers; routes.c lists them. Adding a scenario is adding a
 * file, its hooks and its rows in the table.
 */
#ifndef RACEFREED_ROUTES_H
#define RACEFREED_ROUTES_H

#include <stddef.h>

#include "../app.h"
#include "../http.h"

/* The table (routes.c). Patterns are also the `route` label of metrics and
 * logs. */
extern const srv_route_t srv_routes[];
extern const size_t srv_nroutes;

/* Every module's init (in order), then fini in reverse. */
int srv_routes_init(srv_app_t *app, char *err, size_t errlen);
void srv_routes_fini(srv_app_t *app);

/* health.c */
void h_health(srv_rq_t *rq);
void h_ready(srv_rq_t *rq);
void h_metrics(srv_rq_t *rq);

/* counter.c */
void h_api(srv_rq_t *rq);
void h_api_count(srv_rq_t *rq);

/* cache.c */
int cache_init(srv_app_t *app, char *err, size_t errlen);
void cache_fini(srv_app_t *app);
void h_cache_get(srv_rq_t *rq);
void h_cache_stats(srv_rq_t *rq);

/* users.c */
void h_users_create(srv_rq_t *rq);
void h_users_get(srv_rq_t *rq);

/* inventory.c */
void h_item_put(srv_rq_t *rq);
void h_item_get(srv_rq_t *rq);
void h_purchase(srv_rq_t *rq);

/* config.c */
int config_init(srv_app_t *app, char *err, size_t errlen);
void config_fini(srv_app_t *app);
void h_config(srv_rq_t *rq);
void h_config_loads(srv_rq_t *rq);

/* reports.c */
int reports_init(srv_app_t *app, char *err, size_t errlen);
void reports_fini(srv_app_t *app);
void h_report(srv_rq_t *rq);

/* wallets.c */
void h_wallet_put(srv_rq_t *rq);
void h_wallet_get(srv_rq_t *rq);
void h_wallet_withdraw(srv_rq_t *rq);
void h_wallet_deposit(srv_rq_t *rq);

/* cpu.c */
void h_reports_generate(srv_rq_t *rq);
void h_images_process(srv_rq_t *rq);

/* payments.c */
int payments_init(srv_app_t *app, char *err, size_t errlen);
void payments_fini(srv_app_t *app);
void h_payment_create(srv_rq_t *rq);
void h_payment_get(srv_rq_t *rq);
void h_charges(srv_rq_t *rq);

/* jobs.c */
int jobs_init(srv_app_t *app, char *err, size_t errlen);
void jobs_fini(srv_app_t *app);
void h_emails_welcome(srv_rq_t *rq);
void h_job_get(srv_rq_t *rq);
void h_emails_sent(srv_rq_t *rq);

#endif /* RACEFREED_ROUTES_H */
