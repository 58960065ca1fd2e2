/* e2e_scale.c - API.md's invariants across two racefreed instances that
 * share one PostgreSQL and one Redis (tests/e2e/e2e_scale_common.h).
 *
 *   e2e_scale safe     every burst (50 requests released together, split
 *                      over both instances) keeps its invariant: one user per
 *                      email, no oversell, exact withdrawals, one charge per
 *                      payment id, one send per job id, one cache load per key
 *   e2e_scale unsafe   the same bursts against --unsafe instances on the same
 *                      setup: users, inventory, wallets, payments, jobs and
 *                      the cache are shown broken (the proof that the checks can fail)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "e2e_scale_common.h"

#define N          50
#define TIMEOUT_MS 20000

static e2e_scale_t g_sc;
static int g_unsafe;
static int g_ports[E2E_SCALE_N];

static int setup(void **state) {
  (void)state;
  static const char *const safe_args[] = {"--threads", "4", "--job-workers", "2", NULL};
  static const char *const unsafe_args[] = {"--threads", "4",        "--job-workers",
                                            "2",         "--unsafe", NULL};
  int rc = e2e_scale_open(&g_sc, g_unsafe ? unsafe_args : safe_args);
  if (rc != 0)
    return -1;
  e2e_scale_ports(&g_sc, g_ports);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  return e2e_scale_close(&g_sc) == 0 ? 0 : -1; /* a sanitizer report fails the run */
}

static void burst(e2e_req_t *reqs, e2e_resp_t *out) {
  assert_int_equal(e2e_burst_ports(g_ports, E2E_SCALE_N, N, reqs, out, TIMEOUT_MS), 0);
}

static void same_reqs(e2e_req_t *reqs, const char *method, const char *path, const char *body) {
  for (int i = 0; i < N; i++)
    reqs[i] = (e2e_req_t){.method = method, .path = path, .body = body};
}

/* ------------------------------------------------------------- users */

static void test_users(void **state) {
  (void)state;
  char tag[32], bodies[N][128];
  e2e_scale_tag(tag, sizeof tag);
  e2e_req_t reqs[N];
  e2e_resp_t out[N];
  for (int i = 0; i < N; i++) {
    snprintf(bodies[i], sizeof bodies[i], "{\"email\":\"%s%s@Example.com\"}",
             i % 2 ? "Scale-" : "scale-", tag);
    reqs[i] = (e2e_req_t){.method = "POST", .path = "/users", .body = bodies[i]};
  }
  burst(reqs, out);
  int created = e2e_count_status(out, N, 201), conflict = e2e_count_status(out, N, 409);
  e2e_print_statuses("users", out, N);
  e2e_burst_free(out, N);
  if (g_unsafe) {
    assert_true(created > 1);
  } else {
    assert_int_equal(created, 1);
    assert_int_equal(conflict, N - 1);
  }
}

/* ------------------------------------------------------------- inventory */

static void test_inventory(void **state) {
  (void)state;
  char tag[32], path[96], body[64];
  e2e_scale_tag(tag, sizeof tag);
  snprintf(path, sizeof path, "/inventory/items/item-%s", tag);
  e2e_resp_t r = {0};
  assert_int_equal(e2e_call(g_ports[0], "PUT", path, "{\"stock\":10}", &r), 0);
  assert_int_equal(r.status, 200);
  e2e_resp_free(&r);
  snprintf(body, sizeof body, "{\"itemId\":\"item-%s\",\"quantity\":1}", tag);
  e2e_req_t reqs[N];
  e2e_resp_t out[N];
  same_reqs(reqs, "POST", "/inventory/purchase", body);
  burst(reqs, out);
  int ok = e2e_count_status(out, N, 200), out_of_stock = e2e_count_status(out, N, 409);
  e2e_print_statuses("inventory", out, N);
  e2e_burst_free(out, N);
  int64_t stock = e2e_get_int(g_ports[1], path, "stock");
  fprintf(stderr, "  inventory: %d sold, final stock %lld\n", ok, (long long)stock);
  if (g_unsafe) {
    assert_true(ok > 10 || stock != 10 - ok); /* oversold or lost updates */
  } else {
    assert_int_equal(ok, 10);
    assert_int_equal(out_of_stock, N - 10);
    assert_int_equal(stock, 0);
  }
}

/* ------------------------------------------------------------- wallets */

static void test_wallets(void **state) {
  (void)state;
  char tag[32], path[96], wpath[112];
  e2e_scale_tag(tag, sizeof tag);
  snprintf(path, sizeof path, "/wallets/w-%s", tag);
  snprintf(wpath, sizeof wpath, "%s/withdraw", path);
  e2e_resp_t r = {0};
  assert_int_equal(e2e_call(g_ports[0], "PUT", path, "{\"balance\":1000}", &r), 0);
  assert_int_equal(r.status, 200);
  int64_t v0 = e2e_json_int(&r, "version");
  e2e_resp_free(&r);
  e2e_req_t reqs[N];
  e2e_resp_t out[N];
  same_reqs(reqs, "POST", wpath, "{\"amount\":30}");
  burst(reqs, out);
  int ok = e2e_count_status(out, N, 200), poor = e2e_count_status(out, N, 409),
      busy = e2e_count_status(out, N, 503);
  e2e_print_statuses("wallets", out, N);
  e2e_burst_free(out, N);
  assert_int_equal(ok + poor + busy, N);
  int64_t bal = e2e_get_int(g_ports[1], path, "balance");
  int64_t ver = e2e_get_int(g_ports[1], path, "version");
  fprintf(stderr, "  wallets: %d withdrawals, balance %lld\n", ok, (long long)bal);
  if (g_unsafe) { /* lost updates: the balance does not match the 200s */
    assert_true(bal < 0 || bal != 1000 - 30 * ok);
    return;
  }
  assert_true(bal >= 0);
  assert_int_equal(bal, 1000 - 30 * ok);
  assert_int_equal(ver, v0 + ok);
}

/* ------------------------------------------------------------- payments */

static void test_payments(void **state) {
  (void)state;
  char tag[32], body[128], path[96];
  e2e_scale_tag(tag, sizeof tag);
  snprintf(body, sizeof body, "{\"paymentId\":\"pay-%s\",\"amount\":42}", tag);
  e2e_req_t reqs[N];
  e2e_resp_t out[N];
  same_reqs(reqs, "POST", "/payments", body);
  burst(reqs, out);
  int ok = e2e_count_status(out, N, 201), busy = e2e_count_status(out, N, 409), fresh = 0;
  for (int i = 0; i < N; i++) /* a late arrival may see the outcome: a replay */
    fresh += out[i].status == 201 && e2e_header(&out[i], "Idempotent-Replayed") == NULL;
  e2e_print_statuses("payments", out, N);
  e2e_burst_free(out, N);
  snprintf(path, sizeof path, "/charges?paymentId=pay-%s", tag);
  int64_t count = e2e_get_int(g_ports[0], path, "count");
  int64_t total = e2e_get_int(g_ports[1], path, "total");
  fprintf(stderr, "  payments: processor called %lld times, total %lld\n", (long long)count,
          (long long)total);
  if (g_unsafe) {
    assert_true(count > 1);
  } else {
    assert_int_equal(fresh, 1);
    assert_int_equal(ok + busy, N);
    assert_int_equal(count, 1);
    assert_int_equal(total, 42);
  }
}

/* ------------------------------------------------------------- jobs */

static void test_jobs(void **state) {
  (void)state;
  char tag[32], body[160], path[128];
  e2e_scale_tag(tag, sizeof tag);
  snprintf(body, sizeof body, "{\"userId\":\"u-%s\",\"email\":\"j-%s@example.com\"}", tag, tag);
  e2e_req_t reqs[N];
  e2e_resp_t out[N];
  same_reqs(reqs, "POST", "/emails/welcome", body);
  burst(reqs, out);
  int queued = e2e_count_status(out, N, 202), dup = e2e_count_status(out, N, 200);
  e2e_print_statuses("jobs", out, N);
  e2e_burst_free(out, N);
  snprintf(path, sizeof path, "/emails/sent?to=j-%s@example.com", tag);
  int64_t sent = 0;
  for (int i = 0; i < 100; i++) { /* both instances' workers had their chance */
    sent = e2e_get_int(g_ports[i % 2], path, "count");
    if (sent >= 1 && i >= 20)
      break;
    usleep(50 * 1000);
  }
  fprintf(stderr, "  jobs: %lld sent\n", (long long)sent);
  if (g_unsafe) {
    assert_true(sent > 1);
  } else {
    assert_int_equal(queued, 1);
    assert_int_equal(dup, N - 1);
    assert_int_equal(sent, 1);
  }
}

/* ------------------------------------------------------------- cache */

static int64_t loads_total(void) {
  int64_t sum = 0;
  for (int i = 0; i < E2E_SCALE_N; i++)
    sum += e2e_get_int(g_ports[i], "/cache-stats", "loads");
  return sum;
}

static void test_cache(void **state) {
  (void)state;
  char tag[32], path[96];
  e2e_scale_tag(tag, sizeof tag);
  snprintf(path, sizeof path, "/cache/k-%s", tag);
  int64_t before = loads_total();
  e2e_req_t reqs[N];
  e2e_resp_t out[N];
  same_reqs(reqs, "GET", path, NULL);
  burst(reqs, out);
  int ok = e2e_count_status(out, N, 200), distinct = 0;
  char values[N][160];
  for (int i = 0; i < N; i++) {
    values[i][0] = '\0';
    json_t *j = out[i].status == 200 ? e2e_json(&out[i]) : NULL;
    const char *v = j ? json_string_value(json_object_get(j, "value")) : NULL;
    snprintf(values[i], sizeof values[i], "%s", v ? v : "");
    json_decref(j);
    int seen = 0;
    for (int k = 0; k < i && !seen; k++)
      seen = strcmp(values[k], values[i]) == 0;
    distinct += !seen;
  }
  e2e_print_statuses("cache", out, N);
  e2e_burst_free(out, N);
  int64_t loads = loads_total() - before;
  fprintf(stderr, "  cache: %lld loads over both instances, %d distinct values\n", (long long)loads,
          distinct);
  if (g_unsafe) {
    assert_true(loads > 1); /* values may still agree: "<key>#<per-process seq>" */
  } else {
    assert_int_equal(ok, N);
    assert_int_equal(loads, 1);
    assert_int_equal(distinct, 1);
  }
}

int main(int argc, char **argv) {
  if (argc < 2 || (strcmp(argv[1], "safe") != 0 && strcmp(argv[1], "unsafe") != 0)) {
    fprintf(stderr, "usage: %s safe|unsafe\n", argv[0]);
    return 2;
  }
  g_unsafe = strcmp(argv[1], "unsafe") == 0;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_users),   cmocka_unit_test(test_inventory),
      cmocka_unit_test(test_wallets), cmocka_unit_test(test_payments),
      cmocka_unit_test(test_jobs),    cmocka_unit_test(test_cache),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
