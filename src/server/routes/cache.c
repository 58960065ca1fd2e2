/* cache.c - "The Safe Cache Service".
 *
 * GET /cache/{key}  200 {"key":k,"value":v} with X-Cache: hit | miss (this
 *                   request ran the loader) | shared (it waited on another
 *                   request's load); 502 upstream_failed for keys starting
 *                   "fail-" (not cached: the next request loads again).
 * GET /cache-stats  200 {"loads":L,"hits":H,"shared":S,"misses":M} (this process)
 *
 * The upstream is simulated: it answers after --upstream-latency-ms with a
 * value that is a deterministic function of the key and of this process's
 * load sequence number ("<key>#<seq>:<hash>"), so two loads of one key give
 * two different values and a test can tell a shared load from a repeated one.
 *
 * Safe: rf_cache (bounded, TTL) on rf_singleflight. The first miss for a key
 * starts a flight; every request that misses while it runs joins it; all get
 * the same result; the value is inserted before the flight ends. The loader
 * is asynchronous: it arms a timer and returns; the timer thread completes
 * the flight (rf_sf_complete), which runs every waiter's callback, which
 * answers its request and resumes its connection. No thread waits.
 *
 * Across instances (--redis): the local flight leader does not call the
 * upstream at once. On the timer thread (the HTTP thread never talks to
 * Redis here) it looks for a value another instance published
 * (GET racefree:cache:<key>); if there is none it tries the Redis lock
 * "cache:<key>" without waiting:
 *   - won: read the value once more (the previous holder may have
 *     published and released between our read and our lock), else load
 *     from the upstream, publish (SET racefree:cache:<key> v PX cache-ttl),
 *     release, complete the local flight;
 *   - busy: another instance loads; poll for its value every XPOLL_MS on
 *     the timer, retrying the lock each time - so when the holder dies
 *     (its lease runs out without a value) a waiter takes over at once;
 *   - after a bounded wait (twice the lock's lease) or when Redis is
 *     unreachable: load locally (the documented fallback: availability
 *     over the cross-instance guarantee, which then degrades to one load
 *     per instance, the per-process single-flight still holding).
 * Failed loads ("fail-" keys) are not published. /cache-stats "loads" then
 * counts this instance's upstream calls (a flight answered from Redis is
 * not a load). docs/scaling.md tells the protocol and its limits.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "racefree/cache.h"

#include "log.h"
#include "redact.h"
#include "redis_kv.h"
#include "routes.h"

static rf_cache_t *g_cache;
static _Atomic uint64_t g_load_seq; /* loads of this process, both modes */

#define XPOLL_MS       10       /* a waiting instance looks for the value this often */
#define XKV_TIMEOUT_MS 200      /* per Redis command: a dead Redis costs this much at most */
static srv_kv_t *g_kv;          /* --redis: published values (NULL: off) */
static rf_lock_opts_t g_xopts;  /* try-lock, lease = 2 x upstream latency + 1 s */
static uint64_t g_xwait_ms;     /* bounded wait for another instance's load */
static _Atomic long g_xpending; /* cross-instance loads not yet completed */

/* ------------------------------------------------------------ the upstream */

static uint64_t fnv1a(const char *s) {
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

/* One upstream call: 0 and a malloc'd value, or RF_ELOAD ("fail-" keys) /
 * RF_ENOMEM. Counts the load. */
static int upstream_fetch(srv_app_t *app, const char *key, char **value) {
  uint64_t seq = atomic_fetch_add_explicit(&g_load_seq, 1, memory_order_relaxed) + 1;
  rf_counter_inc(app->shared->cache_loads);
  *value = NULL;
  if (strncmp(key, "fail-", 5) == 0)
    return RF_ELOAD;
  size_t cap = strlen(key) + 48;
  char *v = malloc(cap);
  if (v == NULL)
    return RF_ENOMEM;
  snprintf(v, cap, "%s#%llu:%016llx", key, (unsigned long long)seq, (unsigned long long)fnv1a(key));
  *value = v;
  return 0;
}

static void reply_value(srv_rq_t *rq, const char *key, int status, const char *value,
                        const char *src) {
  if (status == RF_ESHUTDOWN || status == RF_ENOMEM) {
    srv_rq_reply_status(rq, status, "cache");
    return;
  }
  if (status != 0) {
    srv_rq_reply_error(rq, 502, "upstream_failed", "loading %s failed upstream", key);
    return;
  }
  srv_rq_header(rq, "X-Cache", src);
  /* The common answer is written directly: the key is an id (A-Z a-z 0-9
   * . _ : -) and a value of printable ASCII without '"' or '\\' needs no
   * escaping. Anything else goes through jansson, which escapes and checks
   * UTF-8. */
  char body[512];
  int n = -1;
  bool plain = value != NULL;
  for (const unsigned char *p = (const unsigned char *)value; plain && *p; p++)
    plain = *p >= 0x20 && *p < 0x7f && *p != '"' && *p != '\\';
  if (plain)
    n = snprintf(body, sizeof body, "{\"key\":\"%s\",\"value\":\"%s\"}", key, value);
  if (n > 0 && (size_t)n < sizeof body)
    srv_rq_reply_raw(rq, 200, "application/json", body, (size_t)n);
  else
    srv_rq_reply_json(rq, 200, json_pack("{s:s,s:s?}", "key", key, "value", value));
}

typedef struct {
  char key[SRV_ID_MAX + 1];
} cache_rq_t;

static cache_rq_t *decode_key(srv_rq_t *rq) {
  cache_rq_t *st = srv_rq_state(rq, sizeof *st);
  if (st == NULL) {
    srv_rq_reply_nomem(rq);
    return NULL;
  }
  srv_decode_err_t err;
  int rc = srv_decode_id(srv_rq_param(rq, 0), "key", st->key, &err);
  if (rc != 0) {
    srv_rq_reply_decode_error(rq, rc, &err);
    return NULL;
  }
  return st;
}

/* ------------------------------------------------------------ safe */

typedef struct {
  srv_app_t *app;
  rf_sf_call_t *call;
  char key[SRV_ID_MAX + 1];
  bool cross;            /* a cross-instance load (counted in g_xpending) */
  uint64_t give_up_ns;   /* cross: then load locally */
  rf_lock_lease_t lease; /* cross: the Redis lock, while we load */
} load_t;

static void complete(load_t *l, int status, char *value) {
  if (rf_sf_complete(l->call, status, value, value ? strlen(value) : 0, free) != 0)
    free(value);
  if (l->cross)
    atomic_fetch_sub(&g_xpending, 1);
  free(l);
}

static void load_fire(void *arg) { /* timer thread: the upstream answered */
  load_t *l = arg;
  char *value = NULL;
  int status = upstream_fetch(l->app, l->key, &value);
  complete(l, status, value);
}

/* ---- across instances (--redis), all on the timer thread ---- */

static uint64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void vkey(const load_t *l, char *out, size_t cap) {
  snprintf(out, cap, "racefree:cache:%s", l->key);
}

/* Arm fn(l) after ms; a refused timer completes the flight with its error. */
static void x_after(load_t *l, uint64_t ms, rf_timer_fn fn) {
  int rc = rf_timer_after(l->app->timer, ms, fn, l, NULL);
  if (rc != 0)
    complete(l, rc, NULL);
}

/* The lock holder: the upstream answered. Publish, release, complete. */
static void x_fire(void *arg) {
  load_t *l = arg;
  char *value = NULL, k[SRV_ID_MAX + 32];
  int status = upstream_fetch(l->app, l->key, &value);
  vkey(l, k, sizeof k);
  if (status == 0 && srv_kv_set_px(g_kv, k, value, strlen(value), l->app->opts->cache_ttl_ms) != 0)
    srv_log(SRV_LOG_WARN, "cache: cannot publish %s in Redis", l->key);
  rf_lock_release(l->app->redis, &l->lease); /* RF_ESTATE: expired; the value is published */
  complete(l, status, value);
}

static void x_poll(void *arg) {
  load_t *l = arg;
  char k[SRV_ID_MAX + 32], lk[SRV_ID_MAX + 16];
  char *value = NULL;
  uint64_t latency = l->app->opts->upstream_latency_ms;
  vkey(l, k, sizeof k);
  int rc = srv_kv_get(g_kv, k, &value, NULL);
  if (rc == 0) { /* another instance loaded it */
    complete(l, 0, value);
    return;
  }
  if (rc == RF_ENOENT) {
    snprintf(lk, sizeof lk, "cache:%s", l->key);
    rc = rf_lock_acquire(l->app->redis, lk, &g_xopts, &l->lease);
    if (rc == 0) {
      if (srv_kv_get(g_kv, k, &value, NULL) == 0) { /* published just before we locked */
        rf_lock_release(l->app->redis, &l->lease);
        complete(l, 0, value);
      } else {
        x_after(l, latency, x_fire);
      }
      return;
    }
    if ((rc == RF_EBUSY || rc == RF_ETIMEDOUT) && mono_ns() < l->give_up_ns) {
      x_after(l, XPOLL_MS, x_poll); /* the holder loads: wait for its value */
      return;
    }
  }
  /* Redis unreachable, or the holder neither published nor let go within
   * the bounded wait: load here (the per-process single-flight holds). */
  srv_log(SRV_LOG_WARN, "cache: %s loaded locally (%s)", l->key,
          rc == RF_EBUSY || rc == RF_ETIMEDOUT ? "waited too long for another instance"
                                               : rf_strerror(rc));
  x_after(l, latency, load_fire);
}

static void loader(rf_sf_call_t *call, const char *key, void *arg) {
  srv_app_t *app = arg;
  load_t *l = malloc(sizeof *l);
  if (l == NULL) {
    rf_sf_complete(call, RF_ENOMEM, NULL, 0, NULL);
    return;
  }
  l->app = app;
  l->call = call;
  l->cross = g_kv != NULL;
  snprintf(l->key, sizeof l->key, "%s", key);
  int rc;
  if (l->cross) { /* Redis is talked to on the timer thread, not here */
    atomic_fetch_add(&g_xpending, 1);
    l->give_up_ns = mono_ns() + g_xwait_ms * 1000000u;
    rc = rf_timer_after(app->timer, 0, x_poll, l, NULL);
  } else {
    rc = rf_timer_after(app->timer, app->opts->upstream_latency_ms, load_fire, l, NULL);
  }
  if (rc != 0) {
    if (l->cross)
      atomic_fetch_sub(&g_xpending, 1);
    free(l);
    rf_sf_complete(call, rc, NULL, 0, NULL);
  }
}

static const char *src_name(rf_cache_src_t src) {
  return src == RF_CACHE_HIT ? "hit" : src == RF_CACHE_MISS ? "miss" : "shared";
}

static void cache_done(rf_sf_result_t *res, rf_cache_src_t src, void *arg) {
  srv_rq_t *rq = arg;
  cache_rq_t *st = srv_rq_state(rq, sizeof *st);
  reply_value(rq, st->key, rf_sf_result_status(res), rf_sf_result_value(res, NULL), src_name(src));
  rf_sf_result_release(res);
}

static void get_safe(srv_rq_t *rq) {
  cache_rq_t *st = decode_key(rq);
  if (st == NULL)
    return;
  /* A fresh hit is answered here, synchronously: suspending and resuming
   * the connection would cost the hit more than the cache does. */
  rf_sf_result_t *hit = NULL;
  if (rf_cache_peek(g_cache, st->key, &hit) == 0) {
    cache_done(hit, RF_CACHE_HIT, rq);
    return;
  }
  srv_rq_suspend(rq); /* before the hand-off: cache_done may run on any thread, even now */
  int rc = rf_cache_get_cb(g_cache, st->key, loader, srv_rq_app(rq), cache_done, rq);
  if (rc != 0)
    srv_rq_reply_status(rq, rc, "cache");
}

static void stats_safe(srv_rq_t *rq) {
  rf_cache_stats_t s;
  rf_cache_stats(g_cache, &s);
  if (g_kv != NULL) /* flights answered from Redis are not loads */
    s.loads = atomic_load(&g_load_seq);
  srv_rq_reply_json(rq, 200,
                    json_pack("{s:I,s:I,s:I,s:I}", "loads", (json_int_t)s.loads, "hits",
                              (json_int_t)s.hits, "shared", (json_int_t)s.shared, "misses",
                              (json_int_t)s.misses));
}

/* ---- UNSAFE: the article's naive version ----
 *
 *   if (cache.has(key)) return cache.get(key);          // hit
 *   if (loading.has(key)) { await waitForKey(key);      // poll every 10 ms
 *                           return cache.get(key); }    // shared
 *   ... one step later ...
 *   loading.add(key);                                   // act
 *   value = await fetchFn(); cache.set(key, value);     // miss
 *   loading.delete(key);
 *
 * Between "loading.has" and "loading.add" there is a window: the article's
 * timeline spends one millisecond per step, and so does this handler (a 1 ms
 * timer hop, no thread blocked). Requests of a burst that check inside the
 * window all load: several "miss" answers, several upstream calls, different
 * values for one key. A waiter on a failed load finds nothing in the map and
 * answers 200 with "value": null, the article's `undefined`. The map is
 * unbounded by TTL (entries live forever) and capped at --cache-max-entries
 * only to protect the process. Each single map operation takes a mutex, so
 * the race is in the logic, not a C data race. */

#define NAIVE_BUCKETS 4096
#define NAIVE_STEP_MS 1
#define NAIVE_POLL_MS 10

typedef struct nentry {
  struct nentry *next;
  char *value; /* cached value, NULL if none */
  bool loading;
  char key[];
} nentry_t;

static pthread_mutex_t naive_mu = PTHREAD_MUTEX_INITIALIZER;
static nentry_t *naive_map[NAIVE_BUCKETS];
static size_t naive_count;
static _Atomic uint64_t naive_hits, naive_shared, naive_misses;

static nentry_t **naive_slot(const char *key) {
  nentry_t **p = &naive_map[fnv1a(key) % NAIVE_BUCKETS];
  while (*p != NULL && strcmp((*p)->key, key) != 0)
    p = &(*p)->next;
  return p;
}

static nentry_t *naive_entry(const char *key, bool create) { /* naive_mu held */
  nentry_t **p = naive_slot(key);
  if (*p == NULL && create && naive_count < (size_t)NAIVE_BUCKETS * 64) {
    size_t n = strlen(key) + 1;
    nentry_t *e = calloc(1, sizeof *e + n);
    if (e != NULL) {
      memcpy(e->key, key, n);
      *p = e;
      naive_count++;
    }
  }
  return *p;
}

/* cache.has + cache.get as the article's caller sees them: a copy or NULL. */
static char *naive_cache_get(const char *key, bool *has) {
  pthread_mutex_lock(&naive_mu);
  nentry_t *e = naive_entry(key, false);
  *has = e != NULL && e->value != NULL;
  char *v = *has ? strdup(e->value) : NULL;
  pthread_mutex_unlock(&naive_mu);
  return v;
}

static bool naive_loading_has(const char *key) {
  pthread_mutex_lock(&naive_mu);
  nentry_t *e = naive_entry(key, false);
  bool r = e != NULL && e->loading;
  pthread_mutex_unlock(&naive_mu);
  return r;
}

static void naive_loading_set(const char *key, bool loading, char *value) {
  pthread_mutex_lock(&naive_mu);
  nentry_t *e = naive_entry(key, true);
  if (e != NULL) {
    e->loading = loading;
    if (value != NULL) {
      free(e->value);
      e->value = value;
      value = NULL;
    }
  }
  pthread_mutex_unlock(&naive_mu);
  free(value);
}

enum { N_START = 0, N_ACT = 1, N_POLL = 2, N_FETCHED = 3 };

static void get_unsafe(srv_rq_t *rq) {
  srv_app_t *app = srv_rq_app(rq);
  cache_rq_t *st;
  bool has;
  char *v;
  switch (srv_rq_stage(rq)) {
  case N_START:
    if ((st = decode_key(rq)) == NULL)
      return;
    if ((v = naive_cache_get(st->key, &has)) != NULL || has) { /* cache.has */
      atomic_fetch_add(&naive_hits, 1);
      reply_value(rq, st->key, v ? 0 : RF_ENOMEM, v, "hit");
      free(v);
      return;
    }
    if (naive_loading_has(st->key)) { /* loading.has */
      srv_rq_after(rq, NAIVE_POLL_MS, N_POLL);
      return;
    }
    srv_rq_after(rq, NAIVE_STEP_MS, N_ACT); /* one step later ... */
    return;
  case N_ACT:
    st = srv_rq_state(rq, sizeof *st);
    naive_loading_set(st->key, true, NULL); /* loading.add: too late */
    srv_rq_after(rq, app->opts->upstream_latency_ms, N_FETCHED);
    return;
  case N_POLL: /* waitForKey */
    st = srv_rq_state(rq, sizeof *st);
    if (naive_loading_has(st->key)) {
      srv_rq_after(rq, NAIVE_POLL_MS, N_POLL);
      return;
    }
    atomic_fetch_add(&naive_shared, 1);
    v = naive_cache_get(st->key, &has);
    reply_value(rq, st->key, 0, v, "shared"); /* NULL after a failed load: "value": null */
    free(v);
    return;
  default: { /* N_FETCHED */
    st = srv_rq_state(rq, sizeof *st);
    atomic_fetch_add(&naive_misses, 1);
    int status = upstream_fetch(app, st->key, &v);
    char *copy = v ? strdup(v) : NULL;
    naive_loading_set(st->key, false, v); /* cache.set + loading.delete */
    reply_value(rq, st->key, status == 0 && copy == NULL ? RF_ENOMEM : status, copy, "miss");
    free(copy);
    return;
  }
  }
}

static void stats_unsafe(srv_rq_t *rq) {
  srv_rq_reply_json(rq, 200,
                    json_pack("{s:I,s:I,s:I,s:I}", "loads", (json_int_t)atomic_load(&g_load_seq),
                              "hits", (json_int_t)atomic_load(&naive_hits), "shared",
                              (json_int_t)atomic_load(&naive_shared), "misses",
                              (json_int_t)atomic_load(&naive_misses)));
}

static void naive_clear(void) {
  pthread_mutex_lock(&naive_mu);
  for (size_t i = 0; i < NAIVE_BUCKETS; i++) {
    while (naive_map[i] != NULL) {
      nentry_t *e = naive_map[i];
      naive_map[i] = e->next;
      free(e->value);
      free(e);
    }
  }
  naive_count = 0;
  pthread_mutex_unlock(&naive_mu);
}

/* ---- dispatch and lifecycle ---- */

void h_cache_get(srv_rq_t *rq) {
  if (srv_rq_app(rq)->opts->unsafe)
    get_unsafe(rq);
  else
    get_safe(rq);
}

void h_cache_stats(srv_rq_t *rq) {
  if (srv_rq_app(rq)->opts->unsafe)
    stats_unsafe(rq);
  else
    stats_safe(rq);
}

int cache_init(srv_app_t *app, char *err, size_t errlen) {
  rf_cache_opts_t o = {.max_entries = (size_t)app->opts->cache_max_entries,
                       .ttl_ms = app->opts->cache_ttl_ms};
  int rc = rf_cache_create(&g_cache, &o);
  if (rc != 0) {
    snprintf(err, errlen, "cannot create the cache: %s", rf_strerror(rc));
    return rc;
  }
  if (app->redis != NULL && !app->opts->unsafe) {
    rf_lock_opts_t lo = RF_LOCK_OPTS_DEFAULT;
    lo.ttl_ms = 2 * app->opts->upstream_latency_ms + 1000;
    lo.attempts = 1;
    g_xopts = lo;
    g_xwait_ms = 2 * lo.ttl_ms;
    rc = srv_kv_open(&g_kv, app->opts->redis, XKV_TIMEOUT_MS);
    if (rc != 0) {
      char shown[SRV_PATH_MAX];
      snprintf(err, errlen, "cache: --redis %s: %s",
               srv_url_redact(app->opts->redis, shown, sizeof shown), rf_strerror(rc));
      cache_fini(app);
    }
  }
  return rc;
}

void cache_fini(srv_app_t *app) {
  (void)app;
  /* Cross-instance loads still pending run on the timer, which is still
   * up: let them finish (bounded by the wait and the Redis timeouts). */
  for (int i = 0; i < 1000 && atomic_load(&g_xpending) > 0; i++) {
    struct timespec ts = {0, 10000000L};
    nanosleep(&ts, NULL);
  }
  srv_kv_close(g_kv);
  g_kv = NULL;
  rf_cache_destroy(g_cache);
  g_cache = NULL;
  naive_clear();
}
