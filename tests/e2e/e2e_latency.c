/* e2e_latency.c - GET /api keeps its latency while slow requests wait.
 *
 * The race-free server never lets a waiting request hold an HTTP thread:
 * a cache fill or report fetch (a 50 ms simulated upstream) suspends its
 * connection and waits elsewhere. If a handler blocked instead, every
 * connection multiplexed on that thread would wait with it, and GET /api
 * would take tens of milliseconds (DESIGN.md measured 190 ms at p99 with 4
 * such connections).
 *
 * Method: one keep-alive connection sends SAMPLES sequential GET /api,
 * 1 ms apart, first on the idle server (idle p99), then while LOADERS
 * client threads keep a GET /cache/{fresh key} or GET /reports/{user} in
 * flight at all times (loaded p99). Assertion:
 *
 *     loaded p99 <= max(5 x idle p99, FLOOR_MS)
 *
 * The 5x is the contract; FLOOR_MS = 20 ms is the absolute cap that keeps
 * the test stable on a shared 2-core machine, where an idle p99 of
 * ~0.1-0.2 ms would otherwise make 0.5-1 ms the limit, and the 32 loader
 * threads of this very test competing for the same two cores already push
 * p99 to a few ms (measured: idle p99 0.22 ms, loaded p99 2.5 ms). 20 ms
 * stays well under the 50 ms a single blocked handler would add, so a
 * blocking implementation still fails. The run also checks that the load
 * was real: the loaders completed requests with 200 throughout the
 * measurement.
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

#include "e2e_http.h"
#include "e2e_server.h"

enum { SAMPLES = 2000, PACE_US = 1000, LOADERS = 32, FLOOR_MS = 20 };

static e2e_server_t srv;
static int stop_load;
static int loader_ok[LOADERS], loader_bad[LOADERS];

static int setup(void **state) {
  (void)state;
  const char *args[] = {"--workers", "1", "--upstream-latency-ms", "50", NULL};
  return e2e_server_start(&srv, args) == 0 ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  int alive = e2e_server_alive(&srv);
  return e2e_server_stop(&srv) == 0 && alive ? 0 : -1;
}

/* SAMPLES sequential GET /api on one connection, PACE_US apart (so that
 * the measurement spans over two seconds, many times the 50 ms the slow
 * requests wait); returns the p99 in ms, stores the median and maximum. */
static double measure(double *p50, double *max) {
  static double ms[SAMPLES];
  e2e_conn_t c;
  assert_int_equal(e2e_conn_open(&c, srv.port), 0);
  for (int i = 0; i < SAMPLES; i++) {
    e2e_resp_t r;
    e2e_conn_call(&c, "GET", "/api", NULL, NULL, &r, 10000);
    assert_int_equal(r.status, 200);
    ms[i] = r.ms;
    e2e_resp_free(&r);
    usleep(PACE_US);
  }
  e2e_conn_close(&c);
  *p50 = e2e_percentile(ms, SAMPLES, 50);
  *max = ms[SAMPLES - 1];
  return e2e_percentile(ms, SAMPLES, 99);
}

static int loader_index[LOADERS];

static void *loader(void *arg) {
  int idx = *(const int *)arg;
  e2e_conn_t c;
  if (e2e_conn_open(&c, srv.port) != 0) {
    __atomic_add_fetch(&loader_bad[idx], 1, __ATOMIC_RELAXED);
    return NULL;
  }
  for (int i = 0; !__atomic_load_n(&stop_load, __ATOMIC_RELAXED); i++) {
    char path[96];
    if (idx % 2)
      snprintf(path, sizeof path, "/cache/lat-%d-%d", idx, i);
    else
      snprintf(path, sizeof path, "/reports/lat-%d", idx);
    e2e_resp_t r;
    e2e_conn_call(&c, "GET", path, NULL, NULL, &r, 10000);
    if (r.status == 200)
      __atomic_add_fetch(&loader_ok[idx], 1, __ATOMIC_RELAXED);
    else
      __atomic_add_fetch(&loader_bad[idx], 1, __ATOMIC_RELAXED);
    e2e_resp_free(&r);
  }
  e2e_conn_close(&c);
  return NULL;
}

static void test_api_latency_under_waiting_load(void **state) {
  (void)state;
  double p50, max, idle_p50, idle_max;
  measure(&p50, &max); /* warm up */
  double idle = measure(&idle_p50, &idle_max);

  pthread_t th[LOADERS];
  for (int i = 0; i < LOADERS; i++) {
    loader_index[i] = i;
    assert_int_equal(pthread_create(&th[i], NULL, loader, &loader_index[i]), 0);
  }
  usleep(300 * 1000); /* every loader has a request in flight */
  int ok_before = 0;
  for (int i = 0; i < LOADERS; i++)
    ok_before += __atomic_load_n(&loader_ok[i], __ATOMIC_RELAXED);
  double loaded = measure(&p50, &max);
  int ok_during = -ok_before;
  for (int i = 0; i < LOADERS; i++)
    ok_during += __atomic_load_n(&loader_ok[i], __ATOMIC_RELAXED);
  __atomic_store_n(&stop_load, 1, __ATOMIC_RELAXED);
  int bad = 0;
  for (int i = 0; i < LOADERS; i++) {
    pthread_join(th[i], NULL);
    bad += loader_bad[i];
  }
  double limit = 5 * idle > FLOOR_MS ? 5 * idle : FLOOR_MS;
  fprintf(stderr,
          "  GET /api idle: p50 %.3f ms, p99 %.3f ms, max %.3f ms\n"
          "  GET /api with %d waiting clients: p50 %.3f ms, p99 %.3f ms, max %.3f ms"
          " (limit %.1f ms)\n"
          "  slow requests completed during the measurement: %d, failed overall: %d\n",
          idle_p50, idle, idle_max, LOADERS, p50, loaded, max, limit, ok_during, bad);
  assert_int_equal(bad, 0);
  assert_true(ok_during >= LOADERS); /* the load was there all along */
  assert_true(loaded <= limit);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_api_latency_under_waiting_load, setup, teardown),
  };
  return cmocka_run_group_tests_name("e2e_latency", tests, NULL, NULL);
}
