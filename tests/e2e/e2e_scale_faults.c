/* e2e_scale_faults.c - faults injected into racefreed scaled out (two
 * instances, one PostgreSQL, one Redis; e2e_scale_common.h), each followed
 * by the check of its invariant:
 *
 *   kill9     SIGKILL one instance in the middle of a burst of payments and
 *             welcome mails split over both; restart it: every payment id
 *             charged exactly once, every job id sent exactly once
 *   redis     stop Redis in the middle of a payment burst, send during the
 *             outage (503 + Retry-After, quickly), start it again: no
 *             payment charged twice, every one completes by retrying
 *   pg        restart PostgreSQL in the middle of a purchase burst: answers
 *             during the outage are 503 + Retry-After, none hangs, none
 *             half-applies (sold == initial - final), and the instances
 *             serve again without a restart
 *   sigstop   pause (SIGSTOP) the instance holding a payment's lease past
 *             the lease, let the other take the payment over, resume the
 *             first: its late charge is refused by the fence (one charge)
 *   cache     SIGKILL the instance loading a key (it holds the Redis lock
 *             cache:<key>) while the other's requests wait for its value:
 *             they take the lock over when its lease runs out and load once
 */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "e2e_scale_common.h"
#include "rf_pg.h"

#define N          50
#define IDS        10 /* distinct ids per burst: 5 requests each */
#define TIMEOUT_MS 20000

/* Slow enough that a fault lands inside the charges and the mails. */
static const char *const g_args[] = {"--threads",
                                     "4",
                                     "--job-workers",
                                     "2",
                                     "--charge-latency-ms",
                                     "200",
                                     "--email-latency-ms",
                                     "200",
                                     "--payment-lease-ms",
                                     "1500",
                                     "--job-lease-ms",
                                     "1000",
                                     "--job-backoff-ms",
                                     "50",
                                     "--upstream-latency-ms",
                                     "300",
                                     NULL};

static e2e_scale_t g_sc;
static int g_ports[E2E_SCALE_N];

static int setup(void **state) {
  (void)state;
  if (e2e_scale_open(&g_sc, g_args) != 0)
    return -1;
  e2e_scale_ports(&g_sc, g_ports);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  return e2e_scale_close(&g_sc) == 0 ? 0 : -1; /* a sanitizer report fails the run */
}

/* A fault fired from another thread `delay_ms` after it starts. */
typedef struct {
  int delay_ms;
  void (*fn)(void);
  pthread_t th;
} fault_t;

static void *fault_main(void *arg) {
  fault_t *f = arg;
  usleep((useconds_t)f->delay_ms * 1000);
  f->fn();
  return NULL;
}

static void fault_arm(fault_t *f, int delay_ms, void (*fn)(void)) {
  f->delay_ms = delay_ms;
  f->fn = fn;
  assert_int_equal(pthread_create(&f->th, NULL, fault_main, f), 0);
}

static void fault_join(fault_t *f) {
  pthread_join(f->th, NULL);
}

/* POST /payments until it has a final answer (201), on either instance.
 * The status of the final answer, or 0 when it never came. */
static int pay_until_done(const char *body) {
  for (int i = 0; i < 400; i++) {
    e2e_resp_t r = {0};
    e2e_call(g_ports[i % E2E_SCALE_N], "POST", "/payments", body, &r);
    int st = r.status;
    e2e_resp_free(&r);
    if (st == 201)
      return st;
    usleep(25 * 1000);
  }
  return 0;
}

static int64_t charges(const char *id) {
  char path[128];
  snprintf(path, sizeof path, "/charges?paymentId=%.63s", id);
  return e2e_get_int(g_ports[0], path, "count");
}

static bool retry_after_on_5xx(const e2e_resp_t *r, int n) {
  for (int i = 0; i < n; i++)
    if (r[i].status == 503 && e2e_header(&r[i], "Retry-After") == NULL)
      return false;
  return true;
}

/* ------------------------------------------------------------- kill -9 */

static void kill_first(void) {
  e2e_kill9(&g_sc.srv[0]);
}

static void test_kill9(void **state) {
  (void)state;
  char tag[32], ids[IDS][64], bodies[N][192];
  e2e_scale_tag(tag, sizeof tag);
  e2e_req_t reqs[N];
  e2e_resp_t out[N];
  for (int i = 0; i < N; i++) {
    int k = i % IDS;
    snprintf(ids[k], sizeof ids[k], "k9-%s-%d", tag, k);
    bool pay = i % 4 < 2; /* payments and mails, each over both instances */
    if (pay)
      snprintf(bodies[i], sizeof bodies[i], "{\"paymentId\":\"%.63s\",\"amount\":7}", ids[k]);
    else
      snprintf(bodies[i], sizeof bodies[i],
               "{\"userId\":\"%.63s\",\"email\":\"%.63s@example.com\"}", ids[k], ids[k]);
    reqs[i] = (e2e_req_t){
        .method = "POST", .path = pay ? "/payments" : "/emails/welcome", .body = bodies[i]};
  }
  fault_t f;
  fault_arm(&f, 120, kill_first); /* inside the 200 ms charges */
  assert_int_equal(e2e_burst_ports(g_ports, E2E_SCALE_N, N, reqs, out, TIMEOUT_MS), 0);
  fault_join(&f);
  e2e_print_statuses("kill9 burst", out, N);
  e2e_burst_free(out, N);
  assert_int_equal(e2e_scale_start(&g_sc, 0, g_args), 0); /* the crashed one comes back */
  e2e_scale_ports(&g_sc, g_ports);
  for (int k = 0; k < IDS; k++) {
    char body[128];
    snprintf(body, sizeof body, "{\"paymentId\":\"%.63s\",\"amount\":7}", ids[k]);
    assert_int_equal(pay_until_done(body), 201); /* recovered after the lease */
    assert_int_equal(charges(ids[k]), 1);
  }
  for (int k = 0; k < IDS; k++) { /* every mail sent, once; re-enqueues are duplicates */
    char body[192], path[160], jpath[128], st[32] = "";
    snprintf(body, sizeof body, "{\"userId\":\"%.63s\",\"email\":\"%.63s@example.com\"}", ids[k],
             ids[k]);
    e2e_resp_t r = {0};
    e2e_call(g_ports[k % 2], "POST", "/emails/welcome", body, &r);
    assert_true(r.status == 200 || r.status == 202);
    e2e_resp_free(&r);
    snprintf(jpath, sizeof jpath, "/jobs/welcome-%.63s", ids[k]);
    for (int i = 0; i < 300 && strcmp(st, "completed") != 0; i++) {
      e2e_get_str(g_ports[i % 2], jpath, "status", st, sizeof st);
      if (strcmp(st, "completed") != 0)
        usleep(25 * 1000);
    }
    assert_string_equal(st, "completed");
    snprintf(path, sizeof path, "/emails/sent?to=%.63s@example.com", ids[k]);
    assert_int_equal(e2e_get_int(g_ports[0], path, "count"), 1);
  }
}

/* ------------------------------------------------------------- Redis */

static void redis_down(void) {
  e2e_scale_redis_stop(&g_sc);
}

static void test_redis(void **state) {
  (void)state;
  char tag[32], ids[N][64], bodies[N][128];
  e2e_scale_tag(tag, sizeof tag);
  e2e_req_t reqs[N];
  e2e_resp_t out[N];
  for (int i = 0; i < N; i++) {
    snprintf(ids[i], sizeof ids[i], "rd-%s-%d", tag, i % IDS);
    snprintf(bodies[i], sizeof bodies[i], "{\"paymentId\":\"%.63s\",\"amount\":9}", ids[i]);
    reqs[i] = (e2e_req_t){.method = "POST", .path = "/payments", .body = bodies[i]};
  }
  fault_t f;
  fault_arm(&f, 60, redis_down);
  assert_int_equal(e2e_burst_ports(g_ports, E2E_SCALE_N, N, reqs, out, TIMEOUT_MS), 0);
  fault_join(&f);
  e2e_print_statuses("redis burst", out, N);
  for (int i = 0; i < N; i++)
    assert_true(out[i].status != 0); /* every request answered */
  e2e_burst_free(out, N);

  /* During the outage: fail closed, quickly, with Retry-After. */
  for (int i = 0; i < N; i++) {
    snprintf(ids[i], sizeof ids[i], "rdo-%s-%d", tag, i);
    snprintf(bodies[i], sizeof bodies[i], "{\"paymentId\":\"%.63s\",\"amount\":9}", ids[i]);
  }
  double t0 = e2e_now_ms();
  assert_int_equal(e2e_burst_ports(g_ports, E2E_SCALE_N, N, reqs, out, TIMEOUT_MS), 0);
  double took = e2e_now_ms() - t0;
  e2e_print_statuses("during the outage", out, N);
  fprintf(stderr, "  outage burst answered in %.0f ms\n", took);
  assert_int_equal(e2e_count_status(out, N, 503), N);
  assert_true(retry_after_on_5xx(out, N));
  assert_true(took < 3000);
  e2e_burst_free(out, N);
  for (int i = 0; i < N; i++) /* nothing was charged for them */
    assert_int_equal(charges(ids[i]), 0);

  assert_int_equal(e2e_scale_redis_start(&g_sc), 0);
  for (int k = 0; k < IDS; k++) { /* the first burst's ids: finish, one charge each */
    char id[64], body[128];
    snprintf(id, sizeof id, "rd-%s-%d", tag, k);
    snprintf(body, sizeof body, "{\"paymentId\":\"%.63s\",\"amount\":9}", id);
    assert_int_equal(pay_until_done(body), 201);
    assert_int_equal(charges(id), 1);
  }
  for (int i = 0; i < 4; i++) /* the outage's: they go through now (recovered by itself) */
    assert_int_equal(pay_until_done(bodies[i]), 201);
}

/* ------------------------------------------------------------- PostgreSQL */

static void pg_restart(void) {
  rf_test_pg_stop();
  usleep(300 * 1000);
  rf_test_pg_start();
}

static void test_pg(void **state) {
  (void)state;
  if (!rf_test_pg_private())
    skip();
  char tag[32], path[96], body[96];
  e2e_scale_tag(tag, sizeof tag);
  snprintf(path, sizeof path, "/inventory/items/pg-%s", tag);
  e2e_resp_t r = {0};
  assert_int_equal(e2e_call(g_ports[0], "PUT", path, "{\"stock\":1000}", &r), 0);
  assert_int_equal(r.status, 200);
  e2e_resp_free(&r);
  snprintf(body, sizeof body, "{\"itemId\":\"pg-%s\",\"quantity\":1}", tag);
  e2e_req_t reqs[N];
  for (int i = 0; i < N; i++)
    reqs[i] = (e2e_req_t){.method = "POST", .path = "/inventory/purchase", .body = body};
  fault_t f;
  fault_arm(&f, 5, pg_restart);
  int sold = 0, unavailable = 0;
  double worst = 0;
  for (int round = 0; round < 6; round++) { /* bursts before, during and after */
    e2e_resp_t out[N];
    assert_int_equal(e2e_burst_ports(g_ports, E2E_SCALE_N, N, reqs, out, TIMEOUT_MS), 0);
    for (int i = 0; i < N; i++) {
      assert_true(out[i].status == 200 || out[i].status == 503); /* answered, nothing else */
      worst = out[i].ms > worst ? out[i].ms : worst;
    }
    assert_true(retry_after_on_5xx(out, N));
    sold += e2e_count_status(out, N, 200);
    unavailable += e2e_count_status(out, N, 503);
    e2e_burst_free(out, N);
    usleep(150 * 1000);
  }
  fault_join(&f);
  fprintf(stderr, "  pg restart: %d sold, %d x 503, slowest answer %.0f ms\n", sold, unavailable,
          worst);
  assert_true(worst < 10000); /* none hung */
  int64_t stock = INT64_MIN;
  for (int i = 0; i < 200 && stock == INT64_MIN; i++) { /* serving again, no restart */
    stock = e2e_get_int(g_ports[i % 2], path, "stock");
    if (stock == INT64_MIN)
      usleep(50 * 1000);
  }
  assert_int_equal(stock, 1000 - sold); /* no half-applied purchase */
  for (int i = 0; i < E2E_SCALE_N; i++) {
    assert_int_equal(e2e_call(g_ports[i], "POST", "/inventory/purchase", body, &r), 0);
    assert_int_equal(r.status, 200);
    e2e_resp_free(&r);
  }
}

/* ------------------------------------------------------------- SIGSTOP */

typedef struct {
  const char *body;
  e2e_resp_t r;
} call_t;

static void *pay_on_first(void *arg) {
  call_t *c = arg;
  e2e_conn_t conn;
  if (e2e_conn_open(&conn, g_ports[0]) == 0) {
    e2e_conn_call(&conn, "POST", "/payments", c->body, NULL, &c->r, TIMEOUT_MS);
    e2e_conn_close(&conn);
  }
  return NULL;
}

static void test_sigstop(void **state) {
  (void)state;
  char tag[32], id[64], body[128];
  e2e_scale_tag(tag, sizeof tag);
  snprintf(id, sizeof id, "stop-%s", tag);
  snprintf(body, sizeof body, "{\"paymentId\":\"%.63s\",\"amount\":5}", id);
  call_t first = {.body = body};
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, pay_on_first, &first), 0);
  usleep(60 * 1000); /* instance 0 holds the lease, its request travels to the processor */
  assert_int_equal(kill(g_sc.srv[0].pid, SIGSTOP), 0);
  usleep(1900 * 1000); /* past the 1.5 s lease (and its Redis lock's TTL) */
  e2e_resp_t r = {0};
  e2e_call(g_ports[1], "POST", "/payments", body, &r); /* takes over: token 2 */
  int second = r.status;
  e2e_resp_free(&r);
  assert_int_equal(kill(g_sc.srv[0].pid, SIGCONT), 0); /* the stale holder wakes up */
  pthread_join(th, NULL);
  fprintf(stderr, "  sigstop: paused holder answered %d (%s), the new holder %d\n", first.r.status,
          e2e_header(&first.r, "Idempotent-Replayed") ? "replayed" : "-", second);
  assert_int_equal(second, 201);
  assert_int_equal(first.r.status, 201); /* the outcome the new holder stored */
  assert_non_null(e2e_header(&first.r, "Idempotent-Replayed"));
  e2e_resp_free(&first.r);
  assert_int_equal(charges(id), 1); /* the fence refused the stale charge */
}

/* ------------------------------------------------------------- cache */

/* Does the Redis lock `key` exist (redis-cli EXISTS on the lock's key)? */
static bool lock_exists(const char *key) {
  const char *port = strrchr(g_sc.redis_url, ':');
  char cmd[256], line[32] = "";
  snprintf(cmd, sizeof cmd, "redis-cli -h 127.0.0.1 -p %s EXISTS 'racefree:lock:{%s}' 2>/dev/null",
           port ? port + 1 : "6379", key);
  FILE *p = popen(cmd, "r");
  if (p == NULL)
    return false;
  if (fgets(line, sizeof line, p) == NULL)
    line[0] = '\0';
  pclose(p);
  return atoi(line) == 1;
}

typedef struct {
  const char *path;
  e2e_resp_t r;
} get_t;

static void *get_on_first(void *arg) {
  get_t *g = arg;
  e2e_call(g_ports[0], "GET", g->path, NULL, &g->r);
  return NULL;
}

static void test_cache_holder_dies(void **state) {
  (void)state;
  char tag[32], key[64], lkey[80], path[96];
  e2e_scale_tag(tag, sizeof tag);
  snprintf(key, sizeof key, "kd-%s", tag);
  snprintf(lkey, sizeof lkey, "cache:%s", key);
  snprintf(path, sizeof path, "/cache/%s", key);
  int64_t loads1 = e2e_get_int(g_ports[1], "/cache-stats", "loads");
  get_t first = {.path = path};
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, get_on_first, &first), 0);
  bool held = false;
  for (int i = 0; i < 200 && !(held = lock_exists(lkey)); i++)
    usleep(2000);
  assert_true(held); /* instance 0 loads (300 ms upstream) holding cache:<key> */
  e2e_kill9(&g_sc.srv[0]);
  pthread_join(th, NULL);
  assert_int_equal(first.r.status, 0); /* it died before answering */
  e2e_resp_free(&first.r);

  enum { M = 20 };
  e2e_req_t reqs[M];
  e2e_resp_t out[M];
  for (int i = 0; i < M; i++)
    reqs[i] = (e2e_req_t){.method = "GET", .path = path};
  double t0 = e2e_now_ms();
  assert_int_equal(e2e_burst_ports(&g_ports[1], 1, M, reqs, out, TIMEOUT_MS), 0);
  double took = e2e_now_ms() - t0;
  char v0[160] = "";
  int same = 0;
  for (int i = 0; i < M; i++) {
    json_t *j = out[i].status == 200 ? e2e_json(&out[i]) : NULL;
    const char *v = j ? json_string_value(json_object_get(j, "value")) : NULL;
    if (i == 0 && v != NULL)
      snprintf(v0, sizeof v0, "%s", v);
    same += v != NULL && strcmp(v, v0) == 0;
    json_decref(j);
  }
  e2e_print_statuses("cache after the holder died", out, M);
  e2e_burst_free(out, M);
  int64_t loads = e2e_get_int(g_ports[1], "/cache-stats", "loads") - loads1;
  fprintf(stderr, "  cache: answered in %.0f ms, %lld load(s) on the survivor\n", took,
          (long long)loads);
  assert_int_equal(same, M);
  assert_int_equal(loads, 1);
  /* The dead holder's lease (1.6 s) ran out and a waiter took over, before
   * the bounded wait's local fallback (3.2 s). */
  assert_true(took < 3000);
  assert_int_equal(e2e_scale_start(&g_sc, 0, g_args), 0);
  e2e_scale_ports(&g_sc, g_ports);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sigstop),
      cmocka_unit_test(test_kill9),
      cmocka_unit_test(test_redis),
      cmocka_unit_test(test_pg),
      cmocka_unit_test(test_cache_holder_dies),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
