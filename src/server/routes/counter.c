/* counter.c - "The Request Counter".
 *
 * GET /api        200 {"data":"ok"}, counting one request.
 * GET /api/count  200 {"count":N}: GET /api served since start.
 *
 * Safe: one atomic fetch_add on a counter that lives in the metrics region
 * shared by every worker process (RF_METRICS_SHARED, created before fork):
 * no increment is lost between threads, and the count is the total of all
 * processes - the article's SharedArrayBuffer + Atomics.add.
 */
#include <sched.h>
#include <stdatomic.h>
#include <time.h>

#include "routes.h"

static void api_safe(srv_rq_t *rq) {
  if (!srv_rq_is_head(rq)) /* HEAD reads like GET but counts nothing */
    rf_counter_inc(srv_rq_app(rq)->shared->api_requests);
  srv_rq_reply_json(rq, 200, json_pack("{s:s}", "data", "ok"));
}

static void api_count_safe(srv_rq_t *rq) {
  uint64_t n = rf_counter_value(srv_rq_app(rq)->shared->api_requests);
  srv_rq_reply_json(rq, 200, json_pack("{s:I}", "count", (json_int_t)n));
}

/* ---- UNSAFE: the article's naive version ----
 *
 * `this.requestCount++` is a read, an add and a write. Here they are spelled
 * out: a relaxed load, a short pause standing in for the `await` of the
 * article's saveToDatabase (about 20 microseconds of spinning plus a
 * sched_yield, so that two HTTP threads really do interleave on a small
 * machine), then a relaxed store of the old value + 1. Two requests that
 * overlap both read N and both write N + 1: one increment is lost. The
 * loads and stores are relaxed atomics so the race is a logic race, not C
 * undefined behaviour (and ThreadSanitizer stays quiet).
 *
 * The count is also per process: with --workers N each process counts only
 * its own requests, like a plain variable in each Node.js worker. */
static _Atomic long naive_count;

static void pause_a_little(void) {
  struct timespec t0, t;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  do {
    clock_gettime(CLOCK_MONOTONIC, &t);
  } while ((t.tv_sec - t0.tv_sec) * 1000000000L + (t.tv_nsec - t0.tv_nsec) < 20000);
  sched_yield();
}

static void api_unsafe(srv_rq_t *rq) {
  if (srv_rq_is_head(rq)) {
    srv_rq_reply_json(rq, 200, json_pack("{s:s}", "data", "ok"));
    return;
  }
  long n = atomic_load_explicit(&naive_count, memory_order_relaxed); /* read */
  pause_a_little();                                                  /* ... */
  atomic_store_explicit(&naive_count, n + 1, memory_order_relaxed);  /* write */
  srv_rq_reply_json(rq, 200, json_pack("{s:s}", "data", "ok"));
}

static void api_count_unsafe(srv_rq_t *rq) {
  long n = atomic_load_explicit(&naive_count, memory_order_relaxed);
  srv_rq_reply_json(rq, 200, json_pack("{s:I}", "count", (json_int_t)n));
}

/* ---- dispatch ---- */

void h_api(srv_rq_t *rq) {
  if (srv_rq_app(rq)->opts->unsafe)
    api_unsafe(rq);
  else
    api_safe(rq);
}

void h_api_count(srv_rq_t *rq) {
  if (srv_rq_app(rq)->opts->unsafe)
    api_count_unsafe(rq);
  else
    api_count_safe(rq);
}
