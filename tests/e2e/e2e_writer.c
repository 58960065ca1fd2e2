/* e2e_writer.c - racefreed's write path on real processes (SQLite).
 *
 *   loopguard  a mixed load of every writing route (sign-ups, item puts,
 *              purchases, wallet puts, withdrawals and deposits, payments)
 *              and their reads, then racefree_store_loop_waits_total must be
 *              0: no database call waited on an HTTP thread. A handler that
 *              calls the store directly instead of srv_rq_store makes it
 *              count (each write transaction begun on an HTTP thread).
 *   kill9      32 keep-alive clients sign users up and buy a hot item as
 *              fast as they can; the server is SIGKILLed in the middle of
 *              that (group commits in flight) and restarted on the same
 *              database. Every 201 answered is a user with that id and
 *              email; the stock removed equals the 200s answered plus at
 *              most the requests whose answer was lost with the process
 *              (one per client), and every 200 reported a different
 *              remaining stock. An answer given before its COMMIT would
 *              show up as a 2xx missing from the database.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "e2e_payments_common.h"

#define CLIENTS    32
#define PER_CLIENT 4000
#define STOCK      1000000
#define TIMEOUT_MS 10000

/* ------------------------------------------------------------ loopguard */

static void call_expect(int port, const char *m, const char *path, const char *body, int want) {
  e2e_resp_t r;
  e2e_call(port, m, path, body, &r);
  if (r.status != want)
    fprintf(stderr, "  %s %s -> %d %s (expected %d)\n", m, path, r.status, r.body, want);
  assert_int_equal(r.status, want);
  e2e_resp_free(&r);
}

static void test_loopguard(void **state) {
  (void)state;
  e2e_server_t srv;
  const char *args[] = {"--db-latency-ms", "0", "--charge-latency-ms", "2", NULL};
  assert_int_equal(e2e_server_start(&srv, args), 0);
  int port = srv.port;
  call_expect(port, "PUT", "/inventory/items/lg", "{\"stock\":100}", 200);
  call_expect(port, "PUT", "/wallets/lg", "{\"balance\":100}", 200);
  enum { N = 40 };
  e2e_req_t reqs[N];
  char bodies[N][96];
  for (int i = 0; i < N; i++) {
    switch (i % 5) {
    case 0:
      snprintf(bodies[i], sizeof bodies[i], "{\"email\":\"lg%d@example.com\"}", i);
      reqs[i] = (e2e_req_t){"POST", "/users", bodies[i], NULL};
      break;
    case 1:
      snprintf(bodies[i], sizeof bodies[i], "{\"itemId\":\"lg\",\"quantity\":1}");
      reqs[i] = (e2e_req_t){"POST", "/inventory/purchase", bodies[i], NULL};
      break;
    case 2:
      snprintf(bodies[i], sizeof bodies[i], "{\"amount\":1}");
      reqs[i] = (e2e_req_t){"POST", i % 2 ? "/wallets/lg/withdraw" : "/wallets/lg/deposit",
                            bodies[i], NULL};
      break;
    case 3:
      snprintf(bodies[i], sizeof bodies[i], "{\"paymentId\":\"lg-%d\",\"amount\":5}", i / 10);
      reqs[i] = (e2e_req_t){"POST", "/payments", bodies[i], NULL};
      break;
    default:
      snprintf(bodies[i], sizeof bodies[i], "{\"stock\":%d}", i);
      reqs[i] = (e2e_req_t){"PUT", "/inventory/items/lg-put", bodies[i], NULL};
      break;
    }
  }
  e2e_resp_t r[N];
  assert_int_equal(e2e_burst(port, N, reqs, r, TIMEOUT_MS), 0);
  e2e_print_statuses("mixed writes", r, N);
  for (int i = 0; i < N; i++)
    assert_true(r[i].status >= 200 && r[i].status < 500); /* 409 for a payment in flight */
  e2e_burst_free(r, N);
  call_expect(port, "GET", "/users/1", NULL, 200);
  call_expect(port, "GET", "/inventory/items/lg", NULL, 200);
  call_expect(port, "GET", "/wallets/lg", NULL, 200);
  call_expect(port, "GET", "/payments/lg-0", NULL, 200);
  call_expect(port, "GET", "/charges?paymentId=lg-0", NULL, 200);
  int64_t waits = (int64_t)e2e_metric(port, "racefree_store_loop_waits_total");
  fprintf(stderr, "  racefree_store_loop_waits_total %" PRId64 "\n", waits);
  assert_int_equal(waits, 0);
  assert_int_equal(e2e_server_stop(&srv), 0);
}

/* ---------------------------------------------------------------- kill9 */

typedef struct {
  int port, index;
  int purchases; /* this client buys; otherwise signs up */
  int n;         /* requests with a complete answer */
  int lost;      /* a request sent whose answer never came */
  int64_t ids[PER_CLIENT];
  int64_t remaining[PER_CLIENT];
  int status[PER_CLIENT];
} client_t;

static void *client_main(void *arg) {
  client_t *c = arg;
  e2e_conn_t conn;
  if (e2e_conn_open(&conn, c->port) != 0) {
    c->lost = 1;
    return NULL;
  }
  for (int i = 0; i < PER_CLIENT; i++) {
    char body[96];
    e2e_resp_t r;
    if (c->purchases)
      snprintf(body, sizeof body, "{\"itemId\":\"hot\",\"quantity\":1}");
    else
      snprintf(body, sizeof body, "{\"email\":\"k%d-%d@example.com\"}", c->index, i);
    e2e_conn_call(&conn, "POST", c->purchases ? "/inventory/purchase" : "/users", body, NULL, &r,
                  TIMEOUT_MS);
    if (r.status == 0) { /* the server died: this answer is lost */
      c->lost = 1;
      e2e_resp_free(&r);
      break;
    }
    c->status[i] = r.status;
    if (r.status == 201)
      c->ids[i] = e2e_json_int(&r, "id");
    if (r.status == 200)
      c->remaining[i] = e2e_json_int(&r, "stock");
    __atomic_fetch_add(&c->n, 1, __ATOMIC_RELAXED); /* read by the killer */
    e2e_resp_free(&r);
  }
  e2e_conn_close(&conn);
  return NULL;
}

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

static void test_kill9(void **state) {
  (void)state;
  e2e_data_dir_t d;
  assert_int_equal(e2e_data_dir_make(&d), 0);
  e2e_server_t srv;
  const char *args[] = {"--db-latency-ms", "0", NULL};
  assert_int_equal(e2e_start_on(&srv, &d, args), 0);
  char stock[64];
  snprintf(stock, sizeof stock, "{\"stock\":%d}", STOCK);
  call_expect(srv.port, "PUT", "/inventory/items/hot", stock, 200);

  client_t *cs = calloc(CLIENTS, sizeof *cs);
  assert_non_null(cs);
  pthread_t t[CLIENTS];
  for (int i = 0; i < CLIENTS; i++) {
    cs[i] = (client_t){.port = srv.port, .index = i, .purchases = i % 2};
    assert_int_equal(pthread_create(&t[i], NULL, client_main, &cs[i]), 0);
  }
  /* Kill once both kinds of write have been answered a few hundred times:
   * the writer is then busy with batches. */
  for (int tries = 0; tries < 2000; tries++) {
    int answered = 0;
    for (int i = 0; i < CLIENTS; i++)
      answered += __atomic_load_n(&cs[i].n, __ATOMIC_RELAXED);
    if (answered >= 600)
      break;
    usleep(5000);
  }
  e2e_kill9(&srv);
  for (int i = 0; i < CLIENTS; i++)
    pthread_join(t[i], NULL);

  int created = 0, bought = 0, lost = 0, lost_buys = 0, other = 0;
  int64_t *rem = calloc((size_t)CLIENTS * PER_CLIENT, sizeof *rem);
  assert_non_null(rem);
  for (int i = 0; i < CLIENTS; i++) {
    lost += cs[i].lost;
    lost_buys += cs[i].purchases ? cs[i].lost : 0;
    for (int k = 0; k < cs[i].n; k++) {
      int st = cs[i].status[k];
      if (st == 201)
        created++;
      else if (st == 200)
        rem[bought++] = cs[i].remaining[k];
      else
        other++;
    }
  }
  fprintf(stderr, "  before the kill: %d sign-ups 201, %d purchases 200, %d other, %d lost\n",
          created, bought, other, lost);
  assert_true(created > 0 && bought > 0);

  /* Restart on the same database. */
  assert_int_equal(e2e_start_on(&srv, &d, args), 0);
  int64_t left = e2e_get_int(srv.port, "/inventory/items/hot", "stock");
  int64_t removed = STOCK - left;
  fprintf(stderr, "  after the restart: stock removed %" PRId64 "\n", removed);
  assert_true(removed >= bought);             /* every 200 is in the database */
  assert_true(removed <= bought + lost_buys); /* and nothing else but lost answers */
  qsort(rem, (size_t)bought, sizeof *rem, cmp_i64);
  for (int i = 1; i < bought; i++)
    assert_true(rem[i] != rem[i - 1]); /* each 200 took its own unit */
  for (int i = 0; i < CLIENTS; i++) {
    if (cs[i].purchases)
      continue;
    for (int k = 0; k < cs[i].n; k++) {
      if (cs[i].status[k] != 201)
        continue;
      char path[64], want[96], got[96];
      snprintf(path, sizeof path, "/users/%" PRId64, cs[i].ids[k]);
      snprintf(want, sizeof want, "k%d-%d@example.com", cs[i].index, k);
      e2e_get_str(srv.port, path, "email", got, sizeof got);
      if (strcmp(got, want) != 0)
        fprintf(stderr, "  %s: '%s', expected '%s'\n", path, got, want);
      assert_string_equal(got, want);
    }
  }
  free(rem);
  free(cs);
  assert_int_equal(e2e_server_stop(&srv), 0);
  e2e_data_dir_remove(&d);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_loopguard),
      cmocka_unit_test(test_kill9),
  };
  return cmocka_run_group_tests_name("e2e/writer", tests, NULL, NULL);
}
