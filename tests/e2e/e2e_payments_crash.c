/* e2e_payments_crash.c - a server killed (SIGKILL) in the middle of a
 * charge, restarted on the same database: the payment is charged exactly
 * once, and it is never stuck (docs/payments.md, "Crash recovery").
 *
 * The charge latency is CHARGE_MS (so the payment lease is the minimum the
 * server allows, 2 x CHARGE_MS + 1 s = LEASE_MS). The processor charges
 * half-way through the latency; the test kills the server either before
 * that point (KILL_EARLY_MS after sending) or after it (KILL_LATE_MS):
 *
 *   killed before the charge: the ledger has no charge; after the restart
 *     the record is "processing" under a dead holder's lease: requests get
 *     409 until the lease expires, then one takes it over and charges:
 *     201 (a fresh answer), one charge.
 *   killed after the charge: the ledger has the charge; after the lease
 *     expires the first request takes over, finds the charge and finishes
 *     with it without charging: 201 replayed, the same charge id, still one
 *     charge.
 *
 * Either way the payment resolves within LEASE_MS + CHARGE_MS of the
 * original request (asserted with slack: RESOLVE_MS), and a burst of
 * retries during recovery never produces a second charge.
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

enum {
  CHARGE_MS = 2000,
  LEASE_MS = 2 * CHARGE_MS + 1000,
  KILL_EARLY_MS = 400, /* the charge happens at CHARGE_MS / 2 = 1000 */
  KILL_LATE_MS = 1600, /* ... and the outcome is stored at CHARGE_MS */
  RESOLVE_MS = 30000,  /* generous: sanitizer builds on a shared machine */
  RETRY_BURST = 20,
};

static const char *const server_args[] = {"--charge-latency-ms", "2000", "--payment-lease-ms",
                                          "100", NULL};

static int64_t charges(int port, const char *id) {
  char path[128];
  snprintf(path, sizeof path, "/charges?paymentId=%s", id);
  return e2e_get_int(port, path, "count");
}

/* Send the payment on a connection of its own and do not wait for it. */
static void send_and_abandon(int port, const char *body, e2e_conn_t *c) {
  assert_int_equal(e2e_conn_open(c, port), 0);
  size_t len = 0;
  char *req = e2e_format("POST", "/payments", body, NULL, &len);
  assert_non_null(req);
  assert_int_equal(e2e_conn_send(c, req, len), 0);
  free(req);
}

static void crash_mid_charge(int kill_after_ms, int charged_before_kill) {
  e2e_data_dir_t d;
  assert_int_equal(e2e_data_dir_make(&d), 0);
  e2e_server_t a, b;
  assert_int_equal(e2e_start_on(&a, &d, server_args), 0);
  const char *id = charged_before_kill ? "crash-late" : "crash-early";
  char body[128];
  snprintf(body, sizeof body, "{\"paymentId\":\"%s\",\"amount\":42}", id);

  e2e_conn_t c;
  double t0 = e2e_now_ms();
  send_and_abandon(a.port, body, &c);
  usleep((useconds_t)kill_after_ms * 1000);
  e2e_kill9(&a);
  e2e_conn_close(&c);
  fprintf(stderr, "  killed %.0f ms after sending\n", e2e_now_ms() - t0);

  assert_int_equal(e2e_start_on(&b, &d, server_args), 0);
  assert_int_equal(charges(b.port, id), charged_before_kill ? 1 : 0);
  char path[128], buf[64];
  snprintf(path, sizeof path, "/payments/%s", id);
  assert_string_equal(e2e_get_str(b.port, path, "status", buf, sizeof buf), "processing");

  /* Retry like a client would: bursts until the answer is not 409. */
  e2e_resp_t final = {0};
  int resolved = 0, bursts = 0, seen409 = 0;
  while (!resolved && e2e_now_ms() - t0 < RESOLVE_MS) {
    e2e_req_t reqs[RETRY_BURST];
    e2e_resp_t r[RETRY_BURST];
    for (int i = 0; i < RETRY_BURST; i++)
      reqs[i] = (e2e_req_t){"POST", "/payments", body, NULL};
    assert_int_equal(e2e_burst(b.port, RETRY_BURST, reqs, r, RESOLVE_MS), 0);
    bursts++;
    for (int i = 0; i < RETRY_BURST; i++) {
      if (r[i].status == 409) {
        seen409++;
        continue;
      }
      assert_int_equal(r[i].status, 201);
      if (!resolved) { /* the recoverer's answer: the others of its burst got 409 */
        final = r[i];
        memset(&r[i], 0, sizeof r[i]);
        resolved = 1;
      }
    }
    e2e_burst_free(r, RETRY_BURST);
    assert_true(charges(b.port, id) <= 1);
    if (!resolved)
      usleep(200 * 1000);
  }
  double took = e2e_now_ms() - t0;
  fprintf(stderr, "  resolved after %.0f ms (%d retry bursts, %d answered 409)\n", took, bursts,
          seen409);
  assert_true(resolved);
  assert_true(seen409 > 0); /* the dead holder's lease was respected */
  assert_true(took >= LEASE_MS - 200);

  /* wait for the recoverer (if it charges, it takes CHARGE_MS), then check */
  double until = e2e_now_ms() + RESOLVE_MS;
  while (strcmp(e2e_get_str(b.port, path, "status", buf, sizeof buf), "succeeded") != 0 &&
         e2e_now_ms() < until)
    usleep(100 * 1000);
  assert_string_equal(buf, "succeeded");
  assert_int_equal(charges(b.port, id), 1);
  char charge_id[64];
  e2e_get_str(b.port, path, "chargeId", charge_id, sizeof charge_id);
  json_t *j = e2e_json(&final);
  assert_string_equal(json_string_value(json_object_get(j, "chargeId")), charge_id);
  json_decref(j);
  if (charged_before_kill)
    assert_non_null(e2e_header(&final, "Idempotent-Replayed")); /* finished from the ledger */
  else
    assert_null(e2e_header(&final, "Idempotent-Replayed")); /* the recoverer charged */
  e2e_resp_free(&final);

  e2e_resp_t again;
  e2e_call(b.port, "POST", "/payments", body, &again);
  assert_int_equal(again.status, 201);
  assert_non_null(e2e_header(&again, "Idempotent-Replayed"));
  e2e_resp_free(&again);
  assert_int_equal(charges(b.port, id), 1);
  assert_int_equal(e2e_server_stop(&b), 0);
  e2e_data_dir_remove(&d);
}

static void test_killed_before_the_charge(void **state) {
  (void)state;
  crash_mid_charge(KILL_EARLY_MS, 0);
}

static void test_killed_after_the_charge(void **state) {
  (void)state;
  crash_mid_charge(KILL_LATE_MS, 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_killed_before_the_charge),
      cmocka_unit_test(test_killed_after_the_charge),
  };
  return cmocka_run_group_tests_name("e2e_payments_crash", tests, NULL, NULL);
}
