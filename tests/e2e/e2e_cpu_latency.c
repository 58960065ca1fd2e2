/* e2e_cpu_latency.c - GET /api keeps its latency while every pool worker
 * is busy with POST /reports/generate (API.md "Reports": "While every pool
 * worker is busy, GET /api keeps its normal latency"; docs/cpu-work.md).
 *
 *   e2e_cpu_latency safe     the work runs on the pool: /api is unaffected
 *   e2e_cpu_latency unsafe   the work runs on the HTTP threads: /api stalls
 *
 * Method. The server runs 2 HTTP threads and (safe) 2 pool workers. Each
 * generate request is calibrated to take about WORK_MS of CPU. GET /api is
 * sampled on fresh connections (so the samples land on every HTTP thread),
 * PACE_US apart, for PHASE_MS or SAMPLES samples: first on the idle server
 * (idle p99), then while LOADERS client threads keep a generate request in
 * flight at all times - more than the pool has workers, so every worker is
 * busy throughout (checked: no scrape of /metrics during the loaded phase
 * finds a worker idle with nothing queued) - (loaded p99). The latency of a sample is
 * from the request's last byte to its answer (connect time excluded).
 *
 * Assertion (safe):   loaded p99 <= max(3 x idle p99, FLOOR_MS)
 * Assertion (unsafe): loaded p99 >  max(3 x idle p99, FLOOR_MS)
 *
 * The 3x is the contract. FLOOR_MS = 20 ms is the absolute cap that keeps
 * the assertion stable on a shared 2-core machine: the idle p99 is a
 * fraction of a millisecond, and two busy workers plus the loaders of this
 * test compete for the same two cores (the workers run at nice 10, so the
 * kernel lets an HTTP thread in within a scheduling tick or so, but not in
 * microseconds). 20 ms is a tenth of one generate request: a server that
 * ran the work on its HTTP threads stalls /api for up to WORK_MS per
 * request it waits behind, and the unsafe run shows exactly that. Under
 * ASan or TSan (detected at compile time) every request costs 5-15 times
 * more and the floor is 100 ms, still half a generate request: the unsafe
 * run stalls for seconds there.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "e2e_payments_common.h"

enum {
  SAMPLES = 1000,
  PACE_US = 2000,
  PHASE_MS = 4000,
  LOADERS = 8,
  POOL = 2,
  WORK_MS = 200,
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
  FLOOR_MS = 100, /* sanitizer builds: every request costs 5-15x (see below) */
#else
  FLOOR_MS = 20,
#endif
};

static struct {
  int unsafe;
  e2e_server_t srv;
  char body[64];
  int stop, stop_sampler;
  int ok[LOADERS], bad[LOADERS];
  int samples, idle_samples, full_samples; /* the pool sampler's counts */
} g;

static int setup(void **state) {
  (void)state;
  const char *args[] = {"--threads", "2", "--pool-size", "2", g.unsafe ? "--unsafe" : NULL, NULL};
  return e2e_server_start(&g.srv, args) == 0 ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  int alive = e2e_server_alive(&g.srv);
  return e2e_server_stop(&g.srv) == 0 && alive ? 0 : -1;
}

/* GET /api samples for PHASE_MS (at most SAMPLES); p99 returned, p50 and
 * the count stored. */
static double measure(double *p50, int *count) {
  static double ms[SAMPLES];
  int n = 0;
  double until = e2e_now_ms() + PHASE_MS;
  while (n < SAMPLES && e2e_now_ms() < until) {
    e2e_resp_t r;
    e2e_call(g.srv.port, "GET", "/api", NULL, &r);
    assert_int_equal(r.status, 200);
    ms[n++] = r.ms;
    e2e_resp_free(&r);
    usleep(PACE_US);
  }
  *count = n;
  *p50 = e2e_percentile(ms, n, 50);
  return e2e_percentile(ms, n, 99);
}

static void *loader(void *arg) {
  int idx = (int)(intptr_t)arg;
  while (!__atomic_load_n(&g.stop, __ATOMIC_RELAXED)) {
    e2e_resp_t r;
    e2e_call(g.srv.port, "POST", "/reports/generate", g.body, &r);
    if (r.status == 200)
      __atomic_add_fetch(&g.ok[idx], 1, __ATOMIC_RELAXED);
    else
      __atomic_add_fetch(&g.bad[idx], 1, __ATOMIC_RELAXED);
    e2e_resp_free(&r);
  }
  return NULL;
}

/* Scrape the pool gauges every 100 ms: a sample is "idle" when a worker
 * has nothing to do (fewer than POOL busy and nothing queued); a worker
 * between two jobs, with the next one queued, is not idle. */
static void *pool_sampler(void *arg) {
  (void)arg;
  while (!__atomic_load_n(&g.stop_sampler, __ATOMIC_RELAXED)) {
    e2e_resp_t m;
    e2e_call(g.srv.port, "GET", "/metrics", NULL, &m);
    double busy = e2e_metric_in(&m, "racefree_pool_busy_workers");
    double queued = e2e_metric_in(&m, "racefree_pool_queue_depth");
    e2e_resp_free(&m);
    g.samples++;
    g.full_samples += busy == POOL;
    g.idle_samples += busy < POOL && queued <= 0;
    usleep(100 * 1000);
  }
  return NULL;
}

static int64_t calibrate(void) {
  e2e_resp_t r;
  int64_t n = 2000000;
  e2e_call(g.srv.port, "POST", "/reports/generate", "{\"iterations\":2000000}", &r);
  assert_int_equal(r.status, 200);
  json_t *j = e2e_json(&r);
  double ms = json_number_value(json_object_get(j, "ms"));
  json_decref(j);
  e2e_resp_free(&r);
  return (int64_t)((double)n * WORK_MS / (ms > 0.1 ? ms : 0.1));
}

static void test_api_latency_with_busy_pool(void **state) {
  (void)state;
  int64_t n = calibrate();
  snprintf(g.body, sizeof g.body, "{\"iterations\":%" PRId64 "}", n);
  double p50, idle_p50;
  int count, idle_count;
  measure(&p50, &count); /* warm up */
  double idle = measure(&idle_p50, &idle_count);

  pthread_t th[LOADERS];
  for (int i = 0; i < LOADERS; i++)
    assert_int_equal(pthread_create(&th[i], NULL, loader, (void *)(intptr_t)i), 0);
  usleep(2 * WORK_MS * 1000); /* every worker (or HTTP thread) is busy */
  pthread_t sampler;
  assert_int_equal(pthread_create(&sampler, NULL, pool_sampler, NULL), 0);
  double loaded = measure(&p50, &count);
  __atomic_store_n(&g.stop_sampler, 1, __ATOMIC_RELAXED);
  pthread_join(sampler, NULL);
  __atomic_store_n(&g.stop, 1, __ATOMIC_RELAXED);
  for (int i = 0; i < LOADERS; i++)
    pthread_join(th[i], NULL);
  int ok = 0, bad = 0;
  for (int i = 0; i < LOADERS; i++) {
    ok += g.ok[i];
    bad += g.bad[i];
  }
  double limit = 3 * idle > FLOOR_MS ? 3 * idle : FLOOR_MS;
  fprintf(stderr,
          "  %s: generate n=%" PRId64 " (~%d ms): %d answered 200, %d other; pool: %d of %d "
          "samples all busy, %d with an idle worker\n"
          "  GET /api idle:   p50 %.3f ms  p99 %.3f ms (%d samples)\n"
          "  GET /api loaded: p50 %.3f ms  p99 %.3f ms (%d samples); limit %.3f ms "
          "(ratio %.2f)\n",
          g.unsafe ? "unsafe" : "safe", n, WORK_MS, ok, bad, g.full_samples, g.samples,
          g.idle_samples, idle_p50, idle, idle_count, p50, loaded, count, limit, loaded / idle);
  assert_int_equal(bad, 0);
  assert_true(ok >= LOADERS);
  if (g.unsafe) {
    assert_true(loaded > limit); /* the article's "Every other request waits" */
    return;
  }
  assert_true(g.samples >= 5);
  assert_int_equal(g.idle_samples, 0); /* no worker ever waited for work */
  assert_true(loaded <= limit);
}

int main(int argc, char **argv) {
  if (argc != 2 || (strcmp(argv[1], "safe") != 0 && strcmp(argv[1], "unsafe") != 0)) {
    fprintf(stderr, "usage: %s safe|unsafe\n", argv[0]);
    return 2;
  }
  g.unsafe = strcmp(argv[1], "unsafe") == 0;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_api_latency_with_busy_pool, setup, teardown),
  };
  char group[64];
  snprintf(group, sizeof group, "e2e_cpu_latency_%s", argv[1]);
  return cmocka_run_group_tests_name(group, tests, NULL, NULL);
}
