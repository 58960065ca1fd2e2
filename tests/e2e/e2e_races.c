/* e2e_races.c - every concurrency invariant of API.md, against a real
 * racefreed, under bursts of BURST requests released together.
 *
 *   e2e_races safe   WORKERS SCENARIO   asserts the invariant holds
 *   e2e_races unsafe WORKERS SCENARIO   asserts it is broken (--unsafe)
 *
 * The unsafe run is the proof that the safe run could fail: the same burst
 * against the article's naive handlers must visibly break the invariant.
 * A race is a matter of timing, so the unsafe run gets up to UNSAFE_TRIES
 * fresh bursts to show it (the simulated delays make one burst enough in
 * practice); the safe run must hold on every burst it makes.
 *
 * Scenarios: users, inventory, counter, cache, cachefail, config, reports,
 * wallets.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "e2e_http.h"
#include "e2e_server.h"

enum { BURST = 50, UNSAFE_TRIES = 3, TIMEOUT_MS = 20000, UPSTREAM_MS = 50 };

static struct {
  int unsafe;
  int workers;
  const char *scenario;
  e2e_server_t srv;
} g;

static int setup(void **state) {
  (void)state;
  char workers[16];
  snprintf(workers, sizeof workers, "%d", g.workers);
  char upstream[16];
  snprintf(upstream, sizeof upstream, "%d", UPSTREAM_MS);
  const char *args[] = {"--workers",
                        workers,
                        "--upstream-latency-ms",
                        upstream,
                        "--email-latency-ms",
                        "20",
                        "--charge-latency-ms",
                        "50",
                        g.unsafe ? "--unsafe" : NULL,
                        NULL};
  return e2e_server_start(&g.srv, args) == 0 ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  int alive = e2e_server_alive(&g.srv);
  int rc = e2e_server_stop(&g.srv);
  if (!alive || rc != 0)
    fprintf(stderr, "e2e: racefreed %s (exit status %d)\n",
            alive ? "did not stop cleanly" : "had died during the test", rc);
  return alive && rc == 0 ? 0 : -1;
}

static void burst_free(e2e_resp_t *r, int n) {
  for (int i = 0; i < n; i++)
    e2e_resp_free(&r[i]);
}

static int count_status(const e2e_resp_t *r, int n, int status) {
  int c = 0;
  for (int i = 0; i < n; i++)
    c += r[i].status == status;
  return c;
}

/* A short unique tag so that every burst of a run uses fresh keys. */
static const char *tag(void) {
  static __thread char buf[32];
  static int seq;
  snprintf(buf, sizeof buf, "%d-%d", (int)getpid() % 100000, __atomic_add_fetch(&seq, 1, 0));
  return buf;
}

static void print_statuses(const char *what, const e2e_resp_t *r, int n) {
  int seen[600] = {0};
  for (int i = 0; i < n; i++)
    if (r[i].status >= 0 && r[i].status < 600)
      seen[r[i].status]++;
  fprintf(stderr, "  %s:", what);
  for (int s = 0; s < 600; s++)
    if (seen[s])
      fprintf(stderr, " %dx%d", seen[s], s);
  fprintf(stderr, "\n");
}

static int64_t get_int(const char *path, const char *key) {
  e2e_resp_t r;
  e2e_call(g.srv.port, "GET", path, NULL, &r);
  int64_t v = r.status == 200 ? e2e_json_int(&r, key) : INT64_MIN;
  e2e_resp_free(&r);
  return v;
}

/* --------------------------------------------------------------- users */

/* One email in BURST spellings (letter case, surrounding blanks): the
 * safe server creates it once and answers 409 to all the others. */
static int users_round(int *created) {
  const char *t = tag();
  char canon[96], bodies[BURST][160];
  snprintf(canon, sizeof canon, "race.%s@example.com", t);
  e2e_req_t reqs[BURST];
  for (int i = 0; i < BURST; i++) {
    const char *fmt[] = {
        "{\"email\":\"race.%s@example.com\"}", "{\"email\":\"RACE.%s@EXAMPLE.COM\"}",
        "{\"email\":\"  Race.%s@Example.Com \"}", "{\"email\":\"race.%s@eXample.com\"}"};
    snprintf(bodies[i], sizeof bodies[i], fmt[i % 4], t);
    reqs[i] = (e2e_req_t){"POST", "/users", bodies[i], NULL};
  }
  e2e_resp_t r[BURST];
  assert_int_equal(e2e_burst(g.srv.port, BURST, reqs, r, TIMEOUT_MS), 0);
  int c201 = count_status(r, BURST, 201), c409 = count_status(r, BURST, 409);
  print_statuses("POST /users", r, BURST);
  *created = c201;
  if (!g.unsafe) {
    assert_int_equal(c201, 1);
    assert_int_equal(c409, BURST - 1);
    for (int i = 0; i < BURST; i++) {
      char code[64];
      if (r[i].status == 409) {
        assert_string_equal(e2e_error_code(&r[i], code, sizeof code), "conflict");
        continue;
      }
      json_t *j = e2e_json(&r[i]);
      assert_non_null(j);
      const char *email = NULL;
      json_int_t id = 0;
      assert_int_equal(json_unpack(j, "{s:I,s:s}", "id", &id, "email", &email), 0);
      assert_string_equal(email, canon);
      assert_true(id > 0);
      char path[64];
      snprintf(path, sizeof path, "/users/%" JSON_INTEGER_FORMAT, id);
      e2e_resp_t u;
      e2e_call(g.srv.port, "GET", path, NULL, &u);
      assert_int_equal(u.status, 200);
      json_t *uj = e2e_json(&u);
      const char *uemail = NULL;
      assert_int_equal(json_unpack(uj, "{s:s}", "email", &uemail), 0);
      assert_string_equal(uemail, canon);
      json_decref(uj);
      e2e_resp_free(&u);
      json_decref(j);
    }
  }
  burst_free(r, BURST);
  return c201;
}

static void test_users(void **state) {
  (void)state;
  int created = 0;
  if (!g.unsafe) {
    users_round(&created);
    users_round(&created);
    return;
  }
  for (int t = 0; t < UNSAFE_TRIES && created <= 1; t++)
    users_round(&created);
  assert_true(created > 1); /* the naive check-then-act created duplicates */
}

/* ----------------------------------------------------------- inventory */

/* Stock 10, BURST purchases of 1: exactly 10 succeed, each with a
 * different remaining stock, the rest are out_of_stock, final stock 0. */
static int inventory_round(void) {
  char item[64], path[128], body[160];
  snprintf(item, sizeof item, "race-item-%s", tag());
  snprintf(path, sizeof path, "/inventory/items/%s", item);
  e2e_resp_t put;
  e2e_call(g.srv.port, "PUT", path, "{\"stock\":10}", &put);
  assert_int_equal(put.status, 200);
  assert_int_equal(e2e_json_int(&put, "stock"), 10);
  e2e_resp_free(&put);

  snprintf(body, sizeof body, "{\"itemId\":\"%s\",\"quantity\":1}", item);
  e2e_req_t reqs[BURST];
  for (int i = 0; i < BURST; i++)
    reqs[i] = (e2e_req_t){"POST", "/inventory/purchase", body, NULL};
  e2e_resp_t r[BURST];
  assert_int_equal(e2e_burst(g.srv.port, BURST, reqs, r, TIMEOUT_MS), 0);
  print_statuses("POST /inventory/purchase", r, BURST);
  int c200 = count_status(r, BURST, 200), c409 = count_status(r, BURST, 409);
  int64_t final = get_int(path, "stock");
  fprintf(stderr, "  successes %d, final stock %" PRId64 "\n", c200, final);
  int broken = c200 > 10 || final != 10 - c200 || final < 0;
  if (!g.unsafe) {
    assert_int_equal(c200, 10);
    assert_int_equal(c409, BURST - 10);
    assert_int_equal(final, 0);
    int seen[10] = {0};
    for (int i = 0; i < BURST; i++) {
      char code[64];
      if (r[i].status == 409) {
        assert_string_equal(e2e_error_code(&r[i], code, sizeof code), "out_of_stock");
        continue;
      }
      int64_t left = e2e_json_int(&r[i], "stock");
      assert_true(left >= 0 && left < 10);
      assert_int_equal(seen[left]++, 0); /* every remaining value once */
    }
  }
  burst_free(r, BURST);
  return broken;
}

/* Stock 30, BURST purchases of 1, 2 or 3: the quantities of the 200s sum
 * to the stock removed, and since stock only falls, every 409 asked for
 * more than what is finally left. */
static int inventory_mixed_round(void) {
  char item[64], path[128], bodies[3][160];
  snprintf(item, sizeof item, "race-mixed-%s", tag());
  snprintf(path, sizeof path, "/inventory/items/%s", item);
  e2e_resp_t put;
  e2e_call(g.srv.port, "PUT", path, "{\"stock\":30}", &put);
  assert_int_equal(put.status, 200);
  e2e_resp_free(&put);
  for (int q = 0; q < 3; q++)
    snprintf(bodies[q], sizeof bodies[q], "{\"itemId\":\"%s\",\"quantity\":%d}", item, q + 1);
  e2e_req_t reqs[BURST];
  for (int i = 0; i < BURST; i++)
    reqs[i] = (e2e_req_t){"POST", "/inventory/purchase", bodies[i % 3], NULL};
  e2e_resp_t r[BURST];
  assert_int_equal(e2e_burst(g.srv.port, BURST, reqs, r, TIMEOUT_MS), 0);
  print_statuses("POST /inventory/purchase (quantities 1-3)", r, BURST);
  int64_t sold = 0, min_refused = INT64_MAX;
  int other = 0;
  for (int i = 0; i < BURST; i++) {
    if (r[i].status == 200)
      sold += i % 3 + 1;
    else if (r[i].status == 409 && i % 3 + 1 < min_refused)
      min_refused = i % 3 + 1;
    else if (r[i].status != 409)
      other++;
  }
  int64_t final = get_int(path, "stock");
  fprintf(stderr, "  sold %" PRId64 ", final stock %" PRId64 "\n", sold, final);
  int broken = final != 30 - sold || final < 0 || final >= min_refused;
  if (!g.unsafe) {
    assert_int_equal(other, 0);
    assert_int_equal(final, 30 - sold);
    assert_true(final >= 0 && final < min_refused);
  }
  burst_free(r, BURST);
  return broken;
}

static void test_inventory(void **state) {
  (void)state;
  if (!g.unsafe) {
    assert_false(inventory_round());
    assert_false(inventory_round());
    assert_false(inventory_mixed_round());
    return;
  }
  int broken = 0;
  for (int t = 0; t < UNSAFE_TRIES && !broken; t++)
    broken = inventory_round() | inventory_mixed_round();
  assert_true(broken); /* oversold, or the stock does not add up */
}

/* ------------------------------------------------------------- counter */

enum { COUNTER_THREADS = 8, COUNTER_PER_THREAD = 200, COUNTER_BURSTS = 4 };

static void *counter_thread(void *arg) {
  int *ok = arg;
  e2e_conn_t c;
  if (e2e_conn_open(&c, g.srv.port) != 0)
    return NULL;
  for (int i = 0; i < COUNTER_PER_THREAD; i++) {
    e2e_resp_t r;
    e2e_conn_call(&c, "GET", "/api", NULL, NULL, &r, TIMEOUT_MS);
    *ok += r.status == 200;
    e2e_resp_free(&r);
  }
  e2e_conn_close(&c);
  return NULL;
}

/* Keep-alive loops from 8 threads plus bursts: GET /api/count must equal
 * the number of 200 answers exactly. */
static int counter_round(void) {
  int64_t before = get_int("/api/count", "count");
  assert_true(before >= 0);
  pthread_t th[COUNTER_THREADS];
  int ok[COUNTER_THREADS] = {0};
  for (int i = 0; i < COUNTER_THREADS; i++)
    assert_int_equal(pthread_create(&th[i], NULL, counter_thread, &ok[i]), 0);
  int sent_ok = 0;
  for (int b = 0; b < COUNTER_BURSTS; b++) {
    e2e_req_t reqs[BURST];
    for (int i = 0; i < BURST; i++)
      reqs[i] = (e2e_req_t){"GET", "/api", NULL, NULL};
    e2e_resp_t r[BURST];
    assert_int_equal(e2e_burst(g.srv.port, BURST, reqs, r, TIMEOUT_MS), 0);
    sent_ok += count_status(r, BURST, 200);
    for (int i = 0; i < BURST; i++)
      if (r[i].status == 200)
        assert_string_equal(r[i].body, "{\"data\":\"ok\"}");
    burst_free(r, BURST);
  }
  for (int i = 0; i < COUNTER_THREADS; i++) {
    pthread_join(th[i], NULL);
    sent_ok += ok[i];
  }
  int64_t after = get_int("/api/count", "count");
  int total = COUNTER_THREADS * COUNTER_PER_THREAD + COUNTER_BURSTS * BURST;
  fprintf(stderr, "  GET /api: %d sent, %d answered 200, count rose by %" PRId64 "\n", total,
          sent_ok, after - before);
  if (!g.unsafe) {
    assert_int_equal(sent_ok, total);
    assert_int_equal(after - before, total);
  }
  return after - before != sent_ok;
}

static void test_counter(void **state) {
  (void)state;
  if (!g.unsafe) {
    counter_round();
    return;
  }
  int broken = 0;
  for (int t = 0; t < UNSAFE_TRIES && !broken; t++)
    broken = counter_round();
  assert_true(broken); /* lost increments */
}

/* --------------------------------------------------------------- cache */

/* BURST requests for one cold key: the loader runs once per process, one
 * request per process is the "miss", the others share its load and get its
 * value. With one process every response carries the same value; with
 * several (and no Redis) each process's load may produce its own. */
static int cache_round(void) {
  char path[128];
  snprintf(path, sizeof path, "/cache/cold-%s", tag());
  /* Loads counted over every worker process (the shared metrics registry:
   * /cache-stats answers for the one process that takes the request). */
  int64_t loads_before = (int64_t)e2e_metric(g.srv.port, "racefree_cache_loads_total");
  assert_true(loads_before >= 0);
  e2e_req_t reqs[BURST];
  for (int i = 0; i < BURST; i++)
    reqs[i] = (e2e_req_t){"GET", path, NULL, NULL};
  e2e_resp_t r[BURST];
  assert_int_equal(e2e_burst(g.srv.port, BURST, reqs, r, TIMEOUT_MS), 0);
  print_statuses("GET /cache/{cold key}", r, BURST);
  int miss = 0, shared = 0, hit = 0, other = 0, novalue = 0, ndistinct = 0;
  json_t *distinct[BURST];
  for (int i = 0; i < BURST; i++) {
    const char *x = e2e_header(&r[i], "X-Cache");
    if (r[i].status != 200 || !x) {
      other++;
      continue;
    }
    miss += strcmp(x, "miss") == 0;
    shared += strcmp(x, "shared") == 0;
    hit += strcmp(x, "hit") == 0;
    json_t *j = e2e_json(&r[i]);
    json_t *v = j ? json_object_get(j, "value") : NULL;
    int seen = 0;
    for (int k = 0; v && k < ndistinct && !seen; k++)
      seen = json_equal(distinct[k], v);
    if (!v)
      novalue++;
    else if (!seen)
      distinct[ndistinct++] = json_incref(v);
    json_decref(j);
  }
  for (int k = 0; k < ndistinct; k++)
    json_decref(distinct[k]);
  int64_t loads = (int64_t)e2e_metric(g.srv.port, "racefree_cache_loads_total") - loads_before;
  fprintf(stderr,
          "  X-Cache: %d miss, %d shared, %d hit, %d other; %d distinct values; loads +%" PRId64
          "\n",
          miss, shared, hit, other, ndistinct, loads);
  /* Each load yields one value (a function of the key and the process's
   * load sequence number): one value per process that loaded. */
  int broken = miss > g.workers || loads > g.workers || ndistinct > miss;
  if (!g.unsafe) {
    assert_int_equal(other, 0);
    assert_int_equal(novalue, 0);
    assert_int_equal(miss + shared + hit, BURST);
    assert_true(ndistinct >= 1 && ndistinct <= miss);
    if (g.workers == 1) {
      assert_int_equal(miss, 1);
      assert_int_equal(loads, 1);
      assert_true(shared >= 1);
    } else { /* once per process that took a request */
      assert_true(miss >= 1 && miss <= g.workers);
      assert_true(loads >= 0 && loads <= g.workers);
    }
  }
  burst_free(r, BURST);
  return broken;
}

static void test_cache(void **state) {
  (void)state;
  if (!g.unsafe) {
    assert_false(cache_round());
    assert_false(cache_round());
    return;
  }
  int broken = 0;
  for (int t = 0; t < UNSAFE_TRIES && !broken; t++)
    broken = cache_round();
  assert_true(broken); /* un-deduplicated fills */
}

/* BURST requests for one failing key ("fail-"): a load fails and every
 * request waiting on it gets 502 upstream_failed; the failure is not
 * cached, so a second burst loads again. A request that arrives after a
 * failed load finished rightly starts the next one (on a slow, sanitized
 * build the 50 requests may take longer than one load to arrive), so the
 * exact invariant is "loads of one key never overlap within a process":
 * k loads in a row take at least k x UPSTREAM_MS, which the burst's
 * duration shows. The naive cache runs its loads side by side. */
static int cache_fail_round(void) {
  char path[128];
  snprintf(path, sizeof path, "/cache/fail-%s", tag());
  int broken = 0;
  for (int round = 0; round < 2; round++) {
    int64_t before = (int64_t)e2e_metric(g.srv.port, "racefree_cache_loads_total");
    e2e_req_t reqs[BURST];
    for (int i = 0; i < BURST; i++)
      reqs[i] = (e2e_req_t){"GET", path, NULL, NULL};
    e2e_resp_t r[BURST];
    assert_int_equal(e2e_burst(g.srv.port, BURST, reqs, r, TIMEOUT_MS), 0);
    print_statuses("GET /cache/{fail- key}", r, BURST);
    int failed = 0;
    double span = 0;
    for (int i = 0; i < BURST; i++) {
      char code[64];
      failed += r[i].status == 502 &&
                strcmp(e2e_error_code(&r[i], code, sizeof code), "upstream_failed") == 0;
      if (r[i].ms > span)
        span = r[i].ms;
    }
    int64_t loads = (int64_t)e2e_metric(g.srv.port, "racefree_cache_loads_total") - before;
    /* loads in a row per process: the fewest the burst could take */
    int64_t in_a_row = (loads + g.workers - 1) / g.workers;
    int overlapped = in_a_row > 1 && span < 0.9 * UPSTREAM_MS * (double)in_a_row;
    fprintf(stderr, "  %d x 502 upstream_failed, loads +%" PRId64 " in %.0f ms%s\n", failed, loads,
            span, overlapped ? " (overlapping)" : "");
    broken |= overlapped;
    if (!g.unsafe) {
      assert_int_equal(failed, BURST);
      assert_false(overlapped);
      if (g.workers == 1)
        assert_true(loads >= 1); /* not cached: the second burst loaded again */
    }
    burst_free(r, BURST);
  }
  return broken;
}

static void test_cachefail(void **state) {
  (void)state;
  if (!g.unsafe) {
    assert_false(cache_fail_round());
    return;
  }
  int broken = 0;
  for (int t = 0; t < UNSAFE_TRIES && !broken; t++)
    broken = cache_fail_round();
  assert_true(broken); /* every request ran its own failing load */
}

/* -------------------------------------------------------------- config */

/* BURST requests on a cold server: every one gets the same configuration,
 * and each process loaded it once. Runs once per server (the first burst is
 * the only cold one), so the unsafe run cannot retry. */
static void test_config(void **state) {
  (void)state;
  e2e_req_t reqs[BURST];
  for (int i = 0; i < BURST; i++)
    reqs[i] = (e2e_req_t){"GET", "/config", NULL, NULL};
  e2e_resp_t r[BURST];
  assert_int_equal(e2e_burst(g.srv.port, BURST, reqs, r, TIMEOUT_MS), 0);
  print_statuses("GET /config", r, BURST);
  if (!g.unsafe) {
    assert_int_equal(count_status(r, BURST, 200), BURST);
    json_t *first = e2e_json(&r[0]);
    assert_true(json_is_object(first));
    for (int i = 1; i < BURST; i++) {
      json_t *j = e2e_json(&r[i]);
      assert_true(json_equal(first, j));
      json_decref(j);
    }
    json_decref(first);
  }
  burst_free(r, BURST);
  /* /config/loads is per process: ask until an answer comes from a process
   * that served /config (new connections land on any worker; under load one
   * worker may take many in a row), at most 2 s. Every answer counts. */
  int64_t max = -1;
  double until = e2e_now_ms() + 2000;
  for (int i = 0; i < 8 * g.workers || (max < 1 && e2e_now_ms() < until); i++) {
    int64_t n = get_int("/config/loads", "loads");
    assert_true(n >= 0);
    if (n > max)
      max = n;
  }
  int64_t total = (int64_t)e2e_metric(g.srv.port, "racefree_config_loads_total");
  fprintf(stderr, "  racefree_config_loads_total %" PRId64 "\n", total);
  if (!g.unsafe)
    assert_true(total >= 1 && total <= g.workers); /* once per process at most */
  fprintf(stderr, "  /config/loads: at most %" PRId64 " in one process\n", max);
  if (!g.unsafe)
    assert_int_equal(max, 1);
  else
    assert_true(max > 1); /* the unguarded lazy init loaded several times */
}

/* ------------------------------------------------------------- reports */

/* BURST users at once, each asking for their own report: no response may
 * carry another user's data. Returns the number of contaminated ones. */
static int reports_round(void) {
  const char *t = tag();
  char paths[BURST][96], users[BURST][64];
  e2e_req_t reqs[BURST];
  for (int i = 0; i < BURST; i++) {
    snprintf(users[i], sizeof users[i], "u%s-%d", t, i);
    snprintf(paths[i], sizeof paths[i], "/reports/%.63s", users[i]);
    reqs[i] = (e2e_req_t){"GET", paths[i], NULL, NULL};
  }
  e2e_resp_t r[BURST];
  assert_int_equal(e2e_burst(g.srv.port, BURST, reqs, r, TIMEOUT_MS), 0);
  print_statuses("GET /reports/{userId}", r, BURST);
  int foreign = 0, elements = 0;
  for (int i = 0; i < BURST; i++) {
    if (!g.unsafe)
      assert_int_equal(r[i].status, 200);
    if (r[i].status != 200)
      continue;
    json_t *j = e2e_json(&r[i]);
    const char *u = NULL;
    json_t *data = NULL;
    int bad = !j || json_unpack(j, "{s:s,s:o}", "userId", &u, "data", &data) != 0 ||
              !json_is_array(data) || strcmp(u, users[i]) != 0;
    size_t k;
    json_t *el;
    if (!bad)
      json_array_foreach(data, k, el) {
        const char *eu = NULL;
        elements++;
        if (json_unpack(el, "{s:s}", "userId", &eu) != 0 || strcmp(eu, users[i]) != 0)
          bad = 1;
      }
    foreign += bad;
    json_decref(j);
  }
  fprintf(stderr, "  %d of %d reports carried foreign data (%d elements checked)\n", foreign, BURST,
          elements);
  if (!g.unsafe) {
    assert_int_equal(foreign, 0);
    assert_true(elements >= BURST); /* the check looked at real data */
  }
  burst_free(r, BURST);
  return foreign;
}

static void test_reports(void **state) {
  (void)state;
  if (!g.unsafe) {
    reports_round();
    return;
  }
  int foreign = 0;
  for (int t = 0; t < UNSAFE_TRIES && !foreign; t++)
    foreign = reports_round();
  assert_true(foreign > 0); /* shared instance state leaked across requests */
}

/* ------------------------------------------------------------- wallets */

enum { WALLET_INITIAL = 250, WITHDRAW = 30, DEPOSIT = 7 };

/* A wallet of 250, BURST/2 withdrawals of 30 and BURST/2 deposits of 7 at
 * once: balance never negative, final = initial + deposits - withdrawals
 * over the 200 answers, and the version rose by one per 200. */
static int wallets_round(void) {
  char user[64], path[128], wpath[160], dpath[160];
  snprintf(user, sizeof user, "w%s", tag());
  snprintf(path, sizeof path, "/wallets/%s", user);
  snprintf(wpath, sizeof wpath, "%s/withdraw", path);
  snprintf(dpath, sizeof dpath, "%s/deposit", path);
  char body[64];
  snprintf(body, sizeof body, "{\"balance\":%d}", WALLET_INITIAL);
  e2e_resp_t put;
  e2e_call(g.srv.port, "PUT", path, body, &put);
  assert_int_equal(put.status, 200);
  int64_t v0 = e2e_json_int(&put, "version");
  assert_int_equal(e2e_json_int(&put, "balance"), WALLET_INITIAL);
  assert_true(v0 >= 1);
  e2e_resp_free(&put);

  const char *wbody = "{\"amount\":30}", *dbody = "{\"amount\":7}";
  e2e_req_t reqs[BURST];
  for (int i = 0; i < BURST; i++)
    reqs[i] =
        i % 2 ? (e2e_req_t){"POST", dpath, dbody, NULL} : (e2e_req_t){"POST", wpath, wbody, NULL};
  e2e_resp_t r[BURST];
  assert_int_equal(e2e_burst(g.srv.port, BURST, reqs, r, TIMEOUT_MS), 0);
  print_statuses("POST /wallets/{u}/withdraw|deposit", r, BURST);
  int wok = 0, dok = 0, negative = 0, unexpected = 0;
  for (int i = 0; i < BURST; i++) {
    char code[64];
    int st = r[i].status;
    if (st == 200) {
      if (i % 2)
        dok++;
      else
        wok++;
      negative += e2e_json_int(&r[i], "balance") < 0;
    } else if (st == 409) {
      unexpected +=
          i % 2 || strcmp(e2e_error_code(&r[i], code, sizeof code), "insufficient_funds") != 0;
    } else if (st == 503) {
      unexpected += strcmp(e2e_error_code(&r[i], code, sizeof code), "contention") != 0 ||
                    !e2e_header(&r[i], "Retry-After");
    } else {
      unexpected++;
    }
  }
  e2e_resp_t get;
  e2e_call(g.srv.port, "GET", path, NULL, &get);
  assert_int_equal(get.status, 200);
  int64_t final = e2e_json_int(&get, "balance"), v = e2e_json_int(&get, "version");
  e2e_resp_free(&get);
  int64_t expect = WALLET_INITIAL + (int64_t)DEPOSIT * dok - (int64_t)WITHDRAW * wok;
  fprintf(stderr,
          "  %d withdrawals, %d deposits succeeded; balance %" PRId64 " (expected %" PRId64
          "), version %" PRId64 " (expected %" PRId64 ")\n",
          wok, dok, final, expect, v, v0 + wok + dok);
  int broken = final != expect || v != v0 + wok + dok || final < 0 || negative;
  if (!g.unsafe) {
    assert_int_equal(unexpected, 0);
    assert_int_equal(negative, 0);
    assert_true(final >= 0);
    assert_int_equal(final, expect);
    assert_int_equal(v, v0 + wok + dok);
    assert_true(wok + dok > 0);
  }
  burst_free(r, BURST);
  return broken;
}

static void test_wallets(void **state) {
  (void)state;
  if (!g.unsafe) {
    assert_false(wallets_round());
    assert_false(wallets_round());
    return;
  }
  int broken = 0;
  for (int t = 0; t < UNSAFE_TRIES && !broken; t++)
    broken = wallets_round();
  assert_true(broken); /* lost updates */
}

/* ---------------------------------------------------------------- main */

int main(int argc, char **argv) {
  if (argc != 4 || (strcmp(argv[1], "safe") != 0 && strcmp(argv[1], "unsafe") != 0)) {
    fprintf(stderr, "usage: %s safe|unsafe WORKERS SCENARIO\n", argv[0]);
    return 2;
  }
  g.unsafe = strcmp(argv[1], "unsafe") == 0;
  g.workers = atoi(argv[2]);
  g.scenario = argv[3];
  static const struct {
    const char *name;
    CMUnitTestFunction fn;
  } all[] = {
      {"users", test_users},     {"inventory", test_inventory}, {"counter", test_counter},
      {"cache", test_cache},     {"cachefail", test_cachefail}, {"config", test_config},
      {"reports", test_reports}, {"wallets", test_wallets},
  };
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
    if (strcmp(all[i].name, g.scenario) != 0)
      continue;
    const struct CMUnitTest tests[] = {
        {all[i].name, all[i].fn, setup, teardown, NULL},
    };
    char group[96];
    snprintf(group, sizeof group, "e2e_%s_%s_w%d", g.scenario, argv[1], g.workers);
    return cmocka_run_group_tests_name(group, tests, NULL, NULL);
  }
  fprintf(stderr, "unknown scenario %s\n", g.scenario);
  return 2;
}
