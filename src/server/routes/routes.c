/* routes.c - the route table and the module hooks (see routes.h). */
#include "routes.h"

#define R(m, p, fn, f)                                                                             \
  { .pattern = (p), .handler = (void (*)(void))(fn), .method = (m), .flags = (f) }

const srv_route_t srv_routes[] = {
    R(SRV_M_GET, "/health", h_health, 0),
    R(SRV_M_GET, "/ready", h_ready, 0),
    R(SRV_M_GET, "/metrics", h_metrics, 0),
    R(SRV_M_GET, "/api", h_api, 0),
    R(SRV_M_GET, "/api/count", h_api_count, 0),
    R(SRV_M_GET, "/cache/{key}", h_cache_get, 0),
    R(SRV_M_GET, "/cache-stats", h_cache_stats, 0),
    R(SRV_M_POST, "/users", h_users_create, SRV_ROUTE_BODY),
    R(SRV_M_GET, "/users/{id}", h_users_get, 0),
    R(SRV_M_PUT, "/inventory/items/{itemId}", h_item_put, SRV_ROUTE_BODY),
    R(SRV_M_GET, "/inventory/items/{itemId}", h_item_get, 0),
    R(SRV_M_POST, "/inventory/purchase", h_purchase, SRV_ROUTE_BODY),
    R(SRV_M_GET, "/config", h_config, 0),
    R(SRV_M_GET, "/config/loads", h_config_loads, 0),
    R(SRV_M_GET, "/reports/{userId}", h_report, 0),
    R(SRV_M_PUT, "/wallets/{userId}", h_wallet_put, SRV_ROUTE_BODY),
    R(SRV_M_GET, "/wallets/{userId}", h_wallet_get, 0),
    R(SRV_M_POST, "/wallets/{userId}/withdraw", h_wallet_withdraw, SRV_ROUTE_BODY),
    R(SRV_M_POST, "/wallets/{userId}/deposit", h_wallet_deposit, SRV_ROUTE_BODY),
    R(SRV_M_POST, "/reports/generate", h_reports_generate, SRV_ROUTE_BODY),
    R(SRV_M_POST, "/images/process", h_images_process, SRV_ROUTE_BODY | SRV_ROUTE_LARGE_BODY),
    R(SRV_M_POST, "/payments", h_payment_create, SRV_ROUTE_BODY),
    R(SRV_M_GET, "/payments/{paymentId}", h_payment_get, 0),
    R(SRV_M_GET, "/charges", h_charges, 0),
    R(SRV_M_POST, "/emails/welcome", h_emails_welcome, SRV_ROUTE_BODY),
    R(SRV_M_GET, "/jobs/{jobId}", h_job_get, 0),
    R(SRV_M_GET, "/emails/sent", h_emails_sent, 0),
};

const size_t srv_nroutes = sizeof srv_routes / sizeof srv_routes[0];

typedef struct module {
  int (*init)(srv_app_t *app, char *err, size_t errlen);
  void (*fini)(srv_app_t *app);
} module_t;

static const module_t modules[] = {
    {cache_init, cache_fini},       /* cache.c */
    {config_init, config_fini},     /* config.c */
    {reports_init, reports_fini},   /* reports.c */
    {payments_init, payments_fini}, /* payments.c: the payment locks */
    {jobs_init, jobs_fini},         /* jobs.c: the job queue and its workers */
};

#define NMODULES (sizeof modules / sizeof modules[0])

static size_t initialised; /* modules initialised in this process */

int srv_routes_init(srv_app_t *app, char *err, size_t errlen) {
  for (initialised = 0; initialised < NMODULES; initialised++) {
    int rc = modules[initialised].init(app, err, errlen);
    if (rc != 0) {
      srv_routes_fini(app);
      return rc;
    }
  }
  return 0;
}

void srv_routes_fini(srv_app_t *app) {
  while (initialised > 0) {
    initialised--;
    modules[initialised].fini(app);
  }
}
