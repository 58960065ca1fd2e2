/* e2e_payments.c - POST /payments, GET /payments/{id}, GET /charges
 * against a real racefreed, under bursts of BURST requests released
 * together (API.md "Payments").
 *
 *   e2e_payments safe   WORKERS   the processor is called once per payment id
 *   e2e_payments unsafe 1         ... and more than once with --unsafe
 *
 * Safe: one payment id from BURST clients: exactly one 201 that is not a
 * replay; every other answer is 409 payment_in_progress (with Retry-After)
 * or a 201 replay (Idempotent-Replayed: true) of the same body; GET
 * /charges counts one call. Declines are stored and replayed like
 * successes. A burst mixing two amounts for one id: the losing amount gets
 * 422 idempotency_mismatch. BURST distinct ids at once: BURST charges, one
 * each. The unsafe run sends the same one-id burst to the article's
 * set-then-charge handler and asserts GET /charges counts more than one
 * call (up to UNSAFE_TRIES bursts): the proof the safe assertion can fail.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "e2e_payments_common.h"

enum { BURST = 50, UNSAFE_TRIES = 3, TIMEOUT_MS = 30000 };

static struct {
  int unsafe;
  int workers;
  e2e_server_t srv;
} g;

static int setup(void **state) {
  (void)state;
  char workers[16];
  snprintf(workers, sizeof workers, "%d", g.workers);
  const char *args[] = {
      "--workers", workers, "--charge-latency-ms", "50", g.unsafe ? "--unsafe" : NULL, NULL};
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

static const char *tag(void) {
  static char buf[32];
  static int seq;
  snprintf(buf, sizeof buf, "%d-%d", (int)getpid() % 100000, ++seq);
  return buf;
}

static int64_t charge_count(const char *id, int64_t *total) {
  char path[192];
  snprintf(path, sizeof path, "/charges?paymentId=%s", id);
  if (total)
    *total = e2e_get_int(g.srv.port, path, "total");
  return e2e_get_int(g.srv.port, path, "count");
}

static int replayed(const e2e_resp_t *r) {
  const char *h = e2e_header(r, "Idempotent-Replayed");
  return h != NULL && strcmp(h, "true") == 0;
}

/* Burst BURST POST /payments for `id`; amounts[i % namounts]. */
static void pay_burst(const char *id, const int64_t *amounts, int namounts, e2e_resp_t *r) {
  static char bodies[BURST][192];
  e2e_req_t reqs[BURST];
  for (int i = 0; i < BURST; i++) {
    snprintf(bodies[i], sizeof bodies[i], "{\"paymentId\":\"%s\",\"amount\":%" PRId64 "}", id,
             amounts[i % namounts]);
    reqs[i] = (e2e_req_t){"POST", "/payments", bodies[i], NULL};
  }
  assert_int_equal(e2e_burst(g.srv.port, BURST, reqs, r, TIMEOUT_MS), 0);
}

/* The safe answers to a one-id burst: one fresh `status` answer, the rest
 * 409 in progress or replays of that very body. Returns the fresh one. */
static int check_one_fresh(const e2e_resp_t *r, int status) {
  int fresh = -1;
  for (int i = 0; i < BURST; i++) {
    char code[64];
    if (r[i].status == 409) {
      assert_string_equal(e2e_error_code(&r[i], code, sizeof code), "payment_in_progress");
      assert_non_null(e2e_header(&r[i], "Retry-After"));
      continue;
    }
    assert_int_equal(r[i].status, status);
    if (!replayed(&r[i])) {
      assert_int_equal(fresh, -1); /* one fresh answer only */
      fresh = i;
    }
  }
  assert_true(fresh >= 0);
  for (int i = 0; i < BURST; i++)
    if (r[i].status == status)
      assert_string_equal(r[i].body, r[fresh].body);
  return fresh;
}

/* ------------------------------------------------------------ one id */

static void test_one_id_many_clients(void **state) {
  (void)state;
  int64_t amount = 100;
  for (int attempt = 1; attempt <= (g.unsafe ? UNSAFE_TRIES : 1); attempt++) {
    char id[64];
    snprintf(id, sizeof id, "pay-%s", tag());
    e2e_resp_t r[BURST];
    pay_burst(id, &amount, 1, r);
    e2e_print_statuses("POST /payments (one id)", r, BURST);
    int64_t total = 0, count = charge_count(id, &total);
    fprintf(stderr, "  /charges: count %" PRId64 " total %" PRId64 "\n", count, total);
    if (g.unsafe) {
      e2e_burst_free(r, BURST);
      if (count > 1)
        return; /* the double charge the article warns about */
      continue;
    }
    int fresh = check_one_fresh(r, 201);
    json_t *j = e2e_json(&r[fresh]);
    const char *st = NULL, *pid = NULL, *charge = NULL;
    json_int_t amt = 0;
    assert_int_equal(json_unpack(j, "{s:s,s:I,s:s,s:s}", "paymentId", &pid, "amount", &amt,
                                 "status", &st, "chargeId", &charge),
                     0);
    assert_string_equal(pid, id);
    assert_int_equal(amt, amount);
    assert_string_equal(st, "succeeded");
    assert_int_equal(count, 1);
    assert_int_equal(total, amount);

    /* a repeat after completion: the original answer, replayed */
    char body[192];
    snprintf(body, sizeof body, "{\"paymentId\":\"%s\",\"amount\":100}", id);
    e2e_resp_t again;
    e2e_call(g.srv.port, "POST", "/payments", body, &again);
    assert_int_equal(again.status, 201);
    assert_true(replayed(&again));
    assert_string_equal(again.body, r[fresh].body);
    e2e_resp_free(&again);

    char path[128], buf[64];
    snprintf(path, sizeof path, "/payments/%s", id);
    assert_string_equal(e2e_get_str(g.srv.port, path, "status", buf, sizeof buf), "succeeded");
    assert_string_equal(e2e_get_str(g.srv.port, path, "chargeId", buf, sizeof buf), charge);
    assert_int_equal(e2e_get_int(g.srv.port, path, "amount"), amount);
    assert_int_equal(charge_count(id, NULL), 1);
    json_decref(j);
    e2e_burst_free(r, BURST);
    return;
  }
  fail_msg("--unsafe: %d bursts of %d requests for one payment id charged once each: the race "
           "did not show",
           UNSAFE_TRIES, BURST);
}

/* ------------------------------------------------------------ declines */

static void test_decline_stored_and_replayed(void **state) {
  (void)state;
  char id[64];
  snprintf(id, sizeof id, "decline-%s", tag());
  int64_t amount = 70;
  e2e_resp_t r[BURST];
  pay_burst(id, &amount, 1, r);
  e2e_print_statuses("POST /payments (decline)", r, BURST);
  int64_t total = -1, count = charge_count(id, &total);
  if (g.unsafe) {
    assert_true(count >= 1);
    e2e_burst_free(r, BURST);
    return;
  }
  int fresh = check_one_fresh(r, 402);
  char code[64];
  assert_string_equal(e2e_error_code(&r[fresh], code, sizeof code), "payment_declined");
  assert_int_equal(count, 1);
  assert_int_equal(total, 0);
  char body[192];
  snprintf(body, sizeof body, "{\"paymentId\":\"%s\",\"amount\":70}", id);
  e2e_resp_t again;
  e2e_call(g.srv.port, "POST", "/payments", body, &again);
  assert_int_equal(again.status, 402);
  assert_true(replayed(&again));
  assert_string_equal(again.body, r[fresh].body);
  e2e_resp_free(&again);
  char path[128], buf[64];
  snprintf(path, sizeof path, "/payments/%s", id);
  assert_string_equal(e2e_get_str(g.srv.port, path, "status", buf, sizeof buf), "declined");
  assert_int_equal(charge_count(id, NULL), 1);
  e2e_burst_free(r, BURST);
}

/* ------------------------------------------------------------ mismatches */

static void test_mismatched_amounts(void **state) {
  (void)state;
  if (g.unsafe)
    skip(); /* the naive handler compares nothing */
  char id[64];
  snprintf(id, sizeof id, "mix-%s", tag());
  int64_t amounts[2] = {100, 200};
  e2e_resp_t r[BURST];
  pay_burst(id, amounts, 2, r);
  e2e_print_statuses("POST /payments (two amounts)", r, BURST);
  int fresh = -1;
  for (int i = 0; i < BURST; i++)
    if (r[i].status == 201 && !replayed(&r[i]))
      fresh = i;
  assert_true(fresh >= 0);
  int64_t won = amounts[fresh % 2];
  for (int i = 0; i < BURST; i++) {
    char code[64];
    if (amounts[i % 2] != won) {
      assert_int_equal(r[i].status, 422);
      assert_string_equal(e2e_error_code(&r[i], code, sizeof code), "idempotency_mismatch");
    } else {
      assert_true(r[i].status == 201 || r[i].status == 409);
    }
  }
  int64_t total = 0;
  assert_int_equal(charge_count(id, &total), 1);
  assert_int_equal(total, won);
  e2e_burst_free(r, BURST);
}

/* ------------------------------------------------------------ many ids */

static void test_distinct_ids_each_charged_once(void **state) {
  (void)state;
  const char *t = tag();
  static char bodies[BURST][192];
  e2e_req_t reqs[BURST];
  for (int i = 0; i < BURST; i++) {
    snprintf(bodies[i], sizeof bodies[i], "{\"paymentId\":\"d-%s-%d\",\"amount\":%d}", t, i, i + 1);
    reqs[i] = (e2e_req_t){"POST", "/payments", bodies[i], NULL};
  }
  e2e_resp_t r[BURST];
  assert_int_equal(e2e_burst(g.srv.port, BURST, reqs, r, TIMEOUT_MS), 0);
  e2e_print_statuses("POST /payments (distinct ids)", r, BURST);
  assert_int_equal(e2e_count_status(r, BURST, 201), BURST);
  for (int i = 0; i < BURST; i++) {
    char id[64];
    snprintf(id, sizeof id, "d-%s-%d", t, i);
    int64_t total = 0;
    assert_int_equal(charge_count(id, &total), 1);
    assert_int_equal(total, i + 1);
  }
  e2e_burst_free(r, BURST);
}

/* ------------------------------------------------------------ reads, input */

static void expect(const char *method, const char *path, const char *body, int status,
                   const char *code) {
  e2e_resp_t r;
  e2e_call(g.srv.port, method, path, body, &r);
  char got[64];
  if (r.status != status || (code && strcmp(e2e_error_code(&r, got, sizeof got), code) != 0))
    fail_msg("%s %s %s: %d %s (expected %d %s)", method, path, body ? body : "", r.status, r.body,
             status, code ? code : "");
  e2e_resp_free(&r);
}

static void test_reads_and_bad_input(void **state) {
  (void)state;
  expect("GET", "/payments/never-seen", NULL, 404, "not_found");
  expect("GET", "/payments/bad%20id", NULL, 400, "bad_request");
  expect("GET", "/charges", NULL, 400, "bad_request");
  expect("GET", "/charges?paymentId=bad%20id", NULL, 400, "bad_request");
  expect("GET", "/charges?paymentId=never-seen", NULL, 200, NULL);
  assert_int_equal(charge_count("never-seen", NULL), 0);
  expect("POST", "/payments", "{\"paymentId\":\"x\"}", 400, "bad_request");
  expect("POST", "/payments", "{\"paymentId\":\"x\",\"amount\":0}", 400, "bad_request");
  expect("POST", "/payments", "{\"paymentId\":\"x\",\"amount\":1.5}", 400, "bad_request");
  expect("POST", "/payments", "{\"paymentId\":\"x y\",\"amount\":1}", 400, "bad_request");
  expect("POST", "/payments", "{\"paymentId\":\"x\",\"amount\":1,\"extra\":1}", 400, "bad_request");
  expect("POST", "/payments", "not json", 400, "bad_request");
  expect("GET", "/payments", NULL, 405, "method_not_allowed");
  expect("GET", "/payments/x", NULL, 404, "not_found"); /* nothing above was stored */
}

int main(int argc, char **argv) {
  if (argc != 3 || (strcmp(argv[1], "safe") != 0 && strcmp(argv[1], "unsafe") != 0)) {
    fprintf(stderr, "usage: %s safe|unsafe WORKERS\n", argv[0]);
    return 2;
  }
  g.unsafe = strcmp(argv[1], "unsafe") == 0;
  g.workers = atoi(argv[2]);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_one_id_many_clients),
      cmocka_unit_test(test_decline_stored_and_replayed),
      cmocka_unit_test(test_mismatched_amounts),
      cmocka_unit_test(test_distinct_ids_each_charged_once),
      cmocka_unit_test(test_reads_and_bad_input),
  };
  char group[64];
  snprintf(group, sizeof group, "e2e_payments_%s_w%d", argv[1], g.workers);
  return cmocka_run_group_tests_name(group, tests, setup, teardown);
}
