/* e2e_payments_store.c - the payment and mail-sender operations of the
 * SQLite store (store.h, "payments" and "mail sender"): the idempotency
 * claim, lease takeover by exactly one recoverer, the fenced ledger (a
 * stale holder cannot charge; the unfenced twin under the same
 * interleaving charges twice), durable tokens across a reopen, and the
 * per-job idempotent send. Each test gets a fresh database. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rf_test.h"
#include "store.h"

#define NTHREADS 16

typedef struct fixture {
  char dir[64];
  char path[96];
  char url[128];
  rf_store_t *s;
} fixture_t;

static int setup(void **state) {
  fixture_t *f = calloc(1, sizeof *f);
  assert_non_null(f);
  snprintf(f->dir, sizeof f->dir, "/tmp/rf-pstore-XXXXXX");
  assert_non_null(mkdtemp(f->dir));
  snprintf(f->path, sizeof f->path, "%s/db", f->dir);
  snprintf(f->url, sizeof f->url, "sqlite:%s", f->path);
  assert_int_equal(rf_store_open(f->url, &f->s), 0);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture_t *f = *state;
  rf_store_close(f->s);
  const char *suffix[] = {"", "-wal", "-shm"};
  for (size_t i = 0; i < 3; i++) {
    char p[160];
    snprintf(p, sizeof p, "%s%s", f->path, suffix[i]);
    unlink(p);
  }
  assert_int_equal(rmdir(f->dir), 0);
  free(f);
  return 0;
}

static rf_payment_t begin(rf_store_t *s, const char *id, int64_t amount, uint64_t lease_ms) {
  rf_payment_t p;
  char fpr[64];
  snprintf(fpr, sizeof fpr, "amount=%lld", (long long)amount);
  assert_int_equal(rf_store_payment_begin(s, id, amount, fpr, lease_ms, "test", &p), 0);
  return p;
}

static int64_t charges(rf_store_t *s, const char *id, int64_t *total) {
  int64_t n = -1;
  assert_int_equal(rf_store_charge_stats(s, id, &n, total), 0);
  return n;
}

/* ------------------------------------------------------------ the claim */

static void test_claim_busy_mismatch_done(void **state) {
  fixture_t *f = *state;
  rf_payment_t p = begin(f->s, "p1", 100, 60000);
  assert_int_equal(p.claim, RF_PAY_CLAIMED);
  assert_int_equal(p.token, 1);

  p = begin(f->s, "p1", 100, 60000);
  assert_int_equal(p.claim, RF_PAY_BUSY);
  assert_true(p.lease_left_ms > 50000 && p.lease_left_ms <= 60000);
  assert_int_equal(p.state, RF_PAY_PROCESSING);

  p = begin(f->s, "p1", 101, 60000);
  assert_int_equal(p.claim, RF_PAY_MISMATCH);
  assert_int_equal(p.amount, 100);
  rf_payment_t q;
  assert_int_equal(rf_store_payment_begin(f->s, "p1", 100, "other", 1000, "t", &q), 0);
  assert_int_equal(q.claim, RF_PAY_MISMATCH);

  /* only the current token finishes, once */
  assert_int_equal(rf_store_payment_finish(f->s, "p1", 2, 0, 201, "ch_1", "{}"), RF_ESTALE);
  assert_int_equal(rf_store_payment_finish(f->s, "p1", 1, 0, 201, "ch_1", "{\"a\":1}"), 0);
  assert_int_equal(rf_store_payment_finish(f->s, "p1", 1, 0, 201, "ch_1", "{}"), RF_ESTALE);
  assert_int_equal(rf_store_payment_finish(f->s, "nope", 1, 0, 201, "", "{}"), RF_ENOENT);

  p = begin(f->s, "p1", 100, 60000);
  assert_int_equal(p.claim, RF_PAY_DONE);
  assert_int_equal(p.state, RF_PAY_SUCCEEDED);
  assert_int_equal(p.http_status, 201);
  assert_string_equal(p.body, "{\"a\":1}");
  assert_string_equal(p.charge_id, "ch_1");
  p = begin(f->s, "p1", 7, 60000); /* a mismatch stays a mismatch when final */
  assert_int_equal(p.claim, RF_PAY_MISMATCH);

  assert_int_equal(rf_store_payment_get(f->s, "p1", &q), 0);
  assert_int_equal(q.claim, RF_PAY_DONE);
  assert_int_equal(q.amount, 100);
  assert_int_equal(rf_store_payment_get(f->s, "p2", &q), RF_ENOENT);
}

static void test_bad_arguments(void **state) {
  fixture_t *f = *state;
  rf_payment_t p;
  char big[RF_STORE_BODY_MAX + 2];
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  assert_int_equal(rf_store_payment_begin(f->s, "", 1, "a", 1, "o", &p), RF_EINVAL);
  assert_int_equal(rf_store_payment_begin(f->s, "p", 0, "a", 1, "o", &p), RF_EINVAL);
  assert_int_equal(rf_store_payment_begin(f->s, "p", 1, "", 1, "o", &p), RF_EINVAL);
  assert_int_equal(rf_store_payment_begin(f->s, "p", 1, "a", 0, "o", &p), RF_EINVAL);
  assert_int_equal(rf_store_payment_begin(f->s, "p", 1, "a", 1, NULL, &p), RF_EINVAL);
  assert_int_equal(rf_store_payment_begin(f->s, "p", 1, "a", 1, "o", NULL), RF_EINVAL);
  assert_int_equal(rf_store_payment_begin(NULL, "p", 1, "a", 1, "o", &p), RF_EINVAL);
  assert_int_equal(rf_store_payment_finish(f->s, "p", 0, 0, 201, "", "{}"), RF_EINVAL);
  assert_int_equal(rf_store_payment_finish(f->s, "p", 1, 0, 42, "", "{}"), RF_EINVAL);
  assert_int_equal(rf_store_payment_finish(f->s, "p", 1, 0, 201, "", big), RF_EINVAL);
  assert_int_equal(rf_store_charge_record(f->s, "p", 1, 0, 0, NULL), RF_EINVAL);
  assert_int_equal(rf_store_charge_record(f->s, "p", 0, 0, 1, NULL), RF_EINVAL);
  assert_int_equal(rf_store_charge_stats(f->s, NULL, NULL, NULL), RF_EINVAL);
  int first;
  int64_t n;
  assert_int_equal(rf_store_email_send(f->s, "j", 0, "a@b", &first), RF_EINVAL);
  assert_int_equal(rf_store_email_send(f->s, "j", 1, "", &first), RF_EINVAL);
  assert_int_equal(rf_store_email_sent_count(f->s, "a@b", NULL), RF_EINVAL);
  assert_int_equal(rf_store_email_sent_count(f->s, "a@b", &n), 0);
  assert_int_equal(n, 0);
  /* nothing was written by any of them */
  assert_int_equal(rf_store_payment_get(f->s, "p", &p), RF_ENOENT);
  assert_int_equal(charges(f->s, "p", NULL), 0);
}

/* --------------------------------------------------- takeover and fence */

/* A's lease expires (its process stalled or died before charging), B takes
 * over: B's token is shown to the ledger in the takeover, so A's late
 * charge is refused although B has not charged yet. The unfenced ledger,
 * driven through the same steps, records both charges. */
static void test_takeover_fences_the_stale_holder(void **state) {
  fixture_t *f = *state;
  rf_payment_t a = begin(f->s, "pay", 50, 1);
  assert_int_equal(a.claim, RF_PAY_CLAIMED);
  rf_test_sleep_ms(5);
  rf_payment_t b = begin(f->s, "pay", 50, 60000);
  assert_int_equal(b.claim, RF_PAY_TAKEN_OVER);
  assert_int_equal(b.token, 2);
  assert_false(b.has_charge);

  assert_int_equal(rf_store_charge_record(f->s, "pay", 50, 0, a.token, NULL), RF_ESTALE);
  rf_charge_t ch;
  assert_int_equal(rf_store_charge_record(f->s, "pay", 50, 0, b.token, &ch), 0);
  assert_int_equal(ch.token, 2);
  assert_int_equal(rf_store_payment_finish(f->s, "pay", a.token, 0, 201, "x", "{}"), RF_ESTALE);
  assert_int_equal(rf_store_payment_finish(f->s, "pay", b.token, 0, 201, ch.charge_id, "{}"), 0);
  int64_t total = 0;
  assert_int_equal(charges(f->s, "pay", &total), 1);
  assert_int_equal(total, 50);

  /* the naive twin: same interleaving, no fence */
  assert_int_equal(rf_store_charge_record_unchecked(f->s, "naive", 50, 0, NULL), 0); /* B */
  assert_int_equal(rf_store_charge_record_unchecked(f->s, "naive", 50, 0, NULL), 0); /* late A */
  assert_int_equal(charges(f->s, "naive", &total), 2);
  assert_int_equal(total, 100);
}

/* A charged, then died before storing the outcome: the recoverer learns
 * of the charge in the takeover and finishes with it instead of charging. */
static void test_takeover_reports_recorded_charge(void **state) {
  fixture_t *f = *state;
  rf_payment_t a = begin(f->s, "pay", 70, 1);
  rf_charge_t ch;
  assert_int_equal(rf_store_charge_record(f->s, "pay", 70, 0, a.token, &ch), 0);
  rf_test_sleep_ms(5);
  rf_payment_t b = begin(f->s, "pay", 70, 60000);
  assert_int_equal(b.claim, RF_PAY_TAKEN_OVER);
  assert_true(b.has_charge);
  assert_string_equal(b.charge.charge_id, ch.charge_id);
  assert_int_equal(b.charge.amount, 70);
  assert_int_equal(b.charge.declined, 0);
  assert_int_equal(b.charge.token, a.token);
  assert_int_equal(charges(f->s, "pay", NULL), 1);

  /* declines are processor calls too, but take nothing */
  rf_payment_t d = begin(f->s, "decline-1", 30, 60000);
  assert_int_equal(rf_store_charge_record(f->s, "decline-1", 30, 1, d.token, &ch), 0);
  assert_int_equal(ch.declined, 1);
  int64_t total = -1;
  assert_int_equal(charges(f->s, "decline-1", &total), 1);
  assert_int_equal(total, 0);
}

typedef struct {
  rf_store_t *s;
  uint64_t lease_ms;
  int claim[NTHREADS];
  int err[NTHREADS];
} race_t;

static void begin_worker(void *arg, int idx) {
  race_t *r = arg;
  rf_payment_t p;
  r->err[idx] = rf_store_payment_begin(r->s, "hot", 10, "amount=10", r->lease_ms, "w", &p);
  r->claim[idx] = r->err[idx] == 0 ? (int)p.claim : -1;
}

static int count_claims(const race_t *r, int claim) {
  int n = 0;
  for (int i = 0; i < NTHREADS; i++) {
    assert_int_equal(r->err[i], 0);
    n += r->claim[i] == claim;
  }
  return n;
}

static void test_concurrent_claims_one_winner(void **state) {
  fixture_t *f = *state;
  race_t r = {.s = f->s, .lease_ms = 60000};
  rf_test_run_parallel(NTHREADS, begin_worker, &r);
  assert_int_equal(count_claims(&r, RF_PAY_CLAIMED), 1);
  assert_int_equal(count_claims(&r, RF_PAY_BUSY), NTHREADS - 1);
}

static void test_concurrent_recoverers_one_winner(void **state) {
  fixture_t *f = *state;
  rf_payment_t a = begin(f->s, "hot", 10, 1);
  assert_int_equal(a.claim, RF_PAY_CLAIMED);
  rf_test_sleep_ms(5);
  race_t r = {.s = f->s, .lease_ms = 60000};
  rf_test_run_parallel(NTHREADS, begin_worker, &r);
  assert_int_equal(count_claims(&r, RF_PAY_TAKEN_OVER), 1);
  assert_int_equal(count_claims(&r, RF_PAY_BUSY), NTHREADS - 1);
}

/* Tokens are durable: after a reopen (a restart) a takeover continues the
 * sequence, so a holder from before the restart stays fenced out. */
static void test_tokens_survive_reopen(void **state) {
  fixture_t *f = *state;
  rf_payment_t a = begin(f->s, "pay", 5, 1);
  rf_test_sleep_ms(5);
  rf_payment_t b = begin(f->s, "pay", 5, 1);
  assert_int_equal(b.token, 2);
  rf_store_close(f->s);
  assert_int_equal(rf_store_open(f->url, &f->s), 0);
  rf_test_sleep_ms(5);
  rf_payment_t c = begin(f->s, "pay", 5, 60000);
  assert_int_equal(c.claim, RF_PAY_TAKEN_OVER);
  assert_int_equal(c.token, 3);
  assert_int_equal(rf_store_charge_record(f->s, "pay", 5, 0, a.token, NULL), RF_ESTALE);
  assert_int_equal(rf_store_charge_record(f->s, "pay", 5, 0, b.token, NULL), RF_ESTALE);
  assert_int_equal(rf_store_charge_record(f->s, "pay", 5, 0, c.token, NULL), 0);
}

/* ---------------------------------------------------------- mail sender */

static void test_email_send_once_per_job(void **state) {
  fixture_t *f = *state;
  int first = -1;
  int64_t n = -1;
  assert_int_equal(rf_store_email_send(f->s, "welcome-1", 1, "a@x.io", &first), 0);
  assert_int_equal(first, 1);
  assert_int_equal(rf_store_email_send(f->s, "welcome-1", 2, "a@x.io", &first), 0);
  assert_int_equal(first, 0);
  assert_int_equal(rf_store_email_sent_count(f->s, "a@x.io", &n), 0);
  assert_int_equal(n, 1);
  /* the naive twin records every call */
  assert_int_equal(rf_store_email_send_unchecked(f->s, "welcome-2", "b@x.io"), 0);
  assert_int_equal(rf_store_email_send_unchecked(f->s, "welcome-2", "b@x.io"), 0);
  assert_int_equal(rf_store_email_sent_count(f->s, "b@x.io", &n), 0);
  assert_int_equal(n, 2);
}

typedef struct {
  rf_store_t *s;
  int first[NTHREADS];
} send_race_t;

static void send_worker(void *arg, int idx) {
  send_race_t *r = arg;
  int first = 0;
  assert_int_equal(rf_store_email_send(r->s, "welcome-9", (unsigned)idx + 1, "c@x.io", &first), 0);
  r->first[idx] = first;
}

static void test_concurrent_sends_one_recorded(void **state) {
  fixture_t *f = *state;
  send_race_t r = {.s = f->s};
  rf_test_run_parallel(NTHREADS, send_worker, &r);
  int firsts = 0;
  for (int i = 0; i < NTHREADS; i++)
    firsts += r.first[i];
  assert_int_equal(firsts, 1);
  int64_t n = 0;
  assert_int_equal(rf_store_email_sent_count(f->s, "c@x.io", &n), 0);
  assert_int_equal(n, 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_claim_busy_mismatch_done, setup, teardown),
      cmocka_unit_test_setup_teardown(test_bad_arguments, setup, teardown),
      cmocka_unit_test_setup_teardown(test_takeover_fences_the_stale_holder, setup, teardown),
      cmocka_unit_test_setup_teardown(test_takeover_reports_recorded_charge, setup, teardown),
      cmocka_unit_test_setup_teardown(test_concurrent_claims_one_winner, setup, teardown),
      cmocka_unit_test_setup_teardown(test_concurrent_recoverers_one_winner, setup, teardown),
      cmocka_unit_test_setup_teardown(test_tokens_survive_reopen, setup, teardown),
      cmocka_unit_test_setup_teardown(test_email_send_once_per_job, setup, teardown),
      cmocka_unit_test_setup_teardown(test_concurrent_sends_one_recorded, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
