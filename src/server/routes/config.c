/* config.c - "Race Condition #3: The Lazy Initialization".
 *
 * GET /config        200 the JSON object of --app-config, loaded lazily on
 *                    first use, at most once per process however many
 *                    requests arrive together; 503 config_unavailable when
 *                    loading fails (not cached: the next request tries again).
 * GET /config/loads  200 {"loads":n}: load attempts of this process.
 *
 * Loading is slow on purpose: a request that finds the config not loaded
 * first waits --upstream-latency-ms (a timer, no thread blocked), as the
 * article's `await fs.readFile` does, and only then asks for the load. That
 * wait is where the naive version races.
 *
 * Safe: rf_once_call_cb around the loader. Requests that arrive while the
 * load runs queue a callback instead of loading again; a failed attempt is
 * reported to the callers of that attempt and not cached. The config text
 * is written once by the loader and only read afterwards; rf_once
 * guarantees every caller that sees "done" also sees that write.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "racefree/once.h"

#include "../log.h"
#include "routes.h"

static _Atomic uint64_t g_loads; /* load attempts, both modes */

/* The loader: read, parse (must be one JSON object), render compactly.
 * 0 and a malloc'd text, or RF_EIO / RF_ELOAD / RF_ENOMEM. */
static int read_app_config(srv_app_t *app, char **text) {
  atomic_fetch_add_explicit(&g_loads, 1, memory_order_relaxed);
  rf_counter_inc(app->shared->config_loads);
  srv_log(SRV_LOG_INFO, "loading config %s", app->opts->app_config);
  json_error_t jerr;
  json_t *root = json_load_file(app->opts->app_config, JSON_REJECT_DUPLICATES, &jerr);
  if (root == NULL) {
    srv_log(SRV_LOG_WARN, "config %s: %s (line %d)", app->opts->app_config, jerr.text, jerr.line);
    return RF_EIO;
  }
  int rc = 0;
  if (!json_is_object(root)) {
    srv_log(SRV_LOG_WARN, "config %s: not a JSON object", app->opts->app_config);
    rc = RF_ELOAD;
  } else if ((*text = json_dumps(root, JSON_COMPACT)) == NULL) {
    rc = RF_ENOMEM;
  }
  json_decref(root);
  return rc;
}

static void reply_config(srv_rq_t *rq, const char *text) {
  srv_rq_reply_raw(rq, 200, "application/json", text, strlen(text));
}

static void reply_unavailable(srv_rq_t *rq, int rc) {
  srv_rq_header(rq, "Retry-After", "1");
  srv_rq_reply_error(rq, 503, "config_unavailable", "the configuration cannot be loaded: %s",
                     rf_strerror(rc));
}

enum { ST_START = 0, ST_LOAD = 1 };

static rf_once_t g_once = RF_ONCE_INIT;
static char *g_config; /* written by load_once (inside the once), immutable after */

static int load_once(void *arg) {
  return read_app_config(arg, &g_config);
}

static void loaded(int status, void *arg) { /* on the thread that ran load_once */
  srv_rq_t *rq = arg;
  if (status == 0)
    reply_config(rq, g_config);
  else
    reply_unavailable(rq, status);
}

static void config_safe(srv_rq_t *rq) {
  srv_app_t *app = srv_rq_app(rq);
  if (srv_rq_stage(rq) == ST_START) {
    if (rf_once_done(&g_once)) /* acquire: g_config is visible */
      reply_config(rq, g_config);
    else
      srv_rq_after(rq, app->opts->upstream_latency_ms, ST_LOAD);
    return;
  }
  srv_rq_suspend(rq); /* `loaded` may run on another HTTP thread */
  int rc = rf_once_call_cb(&g_once, load_once, app, loaded, rq);
  if (rc != 0)
    srv_rq_reply_status(rq, rc, "config");
}

/* ---- UNSAFE: the article's naive version ----
 *
 *   if (!this.config) {                        // check
 *     this.config = await this.loadFromFile(); // every request that checked
 *   }                                          // before the first load ends
 *   return this.config;                        // loads again
 *
 * N requests that arrive together all see "not loaded", all wait the
 * upstream latency, all load: /config/loads says N. The pointer is a relaxed
 * atomic (a logic race, not a C data race); texts that get overwritten are
 * kept until shutdown because another request may still be sending them. */
static _Atomic(char *) naive_config;
static pthread_mutex_t graveyard_mu = PTHREAD_MUTEX_INITIALIZER;
static char **graveyard;
static size_t graveyard_len;

static void bury(char *text) {
  pthread_mutex_lock(&graveyard_mu);
  char **g = realloc(graveyard, (graveyard_len + 1) * sizeof *g);
  if (g != NULL) {
    graveyard = g;
    graveyard[graveyard_len++] = text;
    text = NULL;
  }
  pthread_mutex_unlock(&graveyard_mu);
  (void)text; /* out of memory: leak it rather than free what may be in use */
}

static void config_unsafe(srv_rq_t *rq) {
  srv_app_t *app = srv_rq_app(rq);
  char *text = atomic_load_explicit(&naive_config, memory_order_relaxed);
  if (srv_rq_stage(rq) == ST_START) {
    if (text != NULL) /* check */
      reply_config(rq, text);
    else
      srv_rq_after(rq, app->opts->upstream_latency_ms, ST_LOAD); /* the await */
    return;
  }
  int rc = read_app_config(app, &text); /* load, whoever got here */
  if (rc != 0) {
    reply_unavailable(rq, rc);
    return;
  }
  char *old = atomic_exchange_explicit(&naive_config, text, memory_order_relaxed);
  if (old != NULL)
    bury(old);
  reply_config(rq, text);
}

/* ---- dispatch and lifecycle ---- */

void h_config(srv_rq_t *rq) {
  if (srv_rq_app(rq)->opts->unsafe)
    config_unsafe(rq);
  else
    config_safe(rq);
}

void h_config_loads(srv_rq_t *rq) {
  srv_rq_reply_json(rq, 200, json_pack("{s:I}", "loads", (json_int_t)atomic_load(&g_loads)));
}

int config_init(srv_app_t *app, char *err, size_t errlen) {
  (void)app;
  (void)err;
  (void)errlen;
  return 0; /* lazy: nothing is loaded before the first request */
}

void config_fini(srv_app_t *app) {
  (void)app;
  free(g_config);
  g_config = NULL;
  rf_once_reset(&g_once);
  free(atomic_exchange(&naive_config, NULL));
  for (size_t i = 0; i < graveyard_len; i++)
    free(graveyard[i]);
  free(graveyard);
  graveyard = NULL;
  graveyard_len = 0;
}
