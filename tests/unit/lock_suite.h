/* lock_suite.h - the contract tests every lock backend must pass. Included
 * by test_lock.c (memory backend) and test_lock_redis.c (Redis backend);
 * each sets g_lk (and g_lk2, a second independent client of the same
 * backend: another rf_lock_t on the same table, or another connection pool
 * to the same Redis) in its group setup and lists LOCK_SUITE_TESTS.
 *
 * Time: leases expire, so some cases must let time pass (rf_test_sleep_ms
 * past a TTL); they never sleep to "let a race happen" - interleavings are
 * forced with the hook points lock.acquire.before_set and
 * lock.acquire.granted. Keys are unique per case so cases do not interact
 * even on a shared Redis.
 */
#ifndef RF_LOCK_SUITE_H
#define RF_LOCK_SUITE_H

#include <stdio.h>
#include <string.h>

#include "racefree/lock.h"
#include "rf_test.h"

static rf_lock_t *g_lk;  /* the backend under test */
static rf_lock_t *g_lk2; /* a second client of the same backend */

static const char *suite_key(char *buf, size_t n, const char *name) {
  snprintf(buf, n, "suite:%ld:%s", (long)getpid(), name);
  return buf;
}

static rf_lock_opts_t suite_opts(uint64_t ttl_ms) {
  rf_lock_opts_t o = RF_LOCK_OPTS_DEFAULT;
  o.ttl_ms = ttl_ms;
  return o;
}

/* A lease with only ttl_ms left, for cases that need one to run out. It is
 * acquired with a long TTL and then shortened with extend, so a scheduling
 * stall of the test thread (TSan on a loaded machine) cannot make the
 * validity check refuse a short lease. */
static int acquire_short(rf_lock_t *lk, const char *key, uint64_t ttl_ms, rf_lock_lease_t *l) {
  rf_lock_opts_t o = suite_opts(10000);
  int rc = rf_lock_acquire(lk, key, &o, l);
  return rc == 0 ? rf_lock_extend(lk, l, ttl_ms) : rc;
}

/* Acquire, busy for everyone else, release, acquire again with a larger
 * token; a second release of the same lease touches nothing. */
static void suite_basic(void **state) {
  (void)state;
  char k[96];
  rf_lock_lease_t a;
  rf_lock_lease_t b;
  rf_lock_opts_t o = suite_opts(5000);
  suite_key(k, sizeof(k), "basic");
  assert_int_equal(rf_lock_acquire(g_lk, k, &o, &a), 0);
  assert_true(a.token > 0);
  assert_string_equal(a.key, k);
  assert_int_equal(strlen(a.owner), RF_LOCK_OWNER_LEN);
  assert_true(rf_lock_remaining_ms(&a) > 4000);
  assert_true(rf_lock_remaining_ms(&a) <= 5000);
  assert_true(a.hold_until_ns == UINT64_MAX);
  assert_int_equal(rf_lock_acquire(g_lk, k, &o, &b), RF_EBUSY);
  assert_int_equal(rf_lock_acquire(g_lk2, k, &o, &b), RF_EBUSY);
  assert_int_equal(rf_lock_release(g_lk, &a), 0);
  assert_int_equal(rf_lock_release(g_lk, &a), RF_ESTATE);
  assert_int_equal(rf_lock_acquire(g_lk2, k, &o, &b), 0);
  assert_true(b.token > a.token);
  assert_string_not_equal(a.owner, b.owner);
  /* a's stale lease must not free b's lock */
  assert_int_equal(rf_lock_release(g_lk, &a), RF_ESTATE);
  assert_int_equal(rf_lock_acquire(g_lk, k, &o, &a), RF_EBUSY);
  assert_int_equal(rf_lock_release(g_lk2, &b), 0);
}

static void suite_keys_independent(void **state) {
  (void)state;
  char k1[96];
  char k2[96];
  rf_lock_lease_t a;
  rf_lock_lease_t b;
  rf_lock_opts_t o = suite_opts(5000);
  suite_key(k1, sizeof(k1), "indep1");
  suite_key(k2, sizeof(k2), "indep2");
  assert_int_equal(rf_lock_acquire(g_lk, k1, &o, &a), 0);
  assert_int_equal(rf_lock_acquire(g_lk2, k2, &o, &b), 0);
  assert_int_equal(rf_lock_release(g_lk, &a), 0);
  assert_int_equal(rf_lock_release(g_lk2, &b), 0);
}

/* Tokens strictly increase per key, whichever client acquires. */
static void suite_tokens_monotonic(void **state) {
  (void)state;
  char k[96];
  rf_lock_lease_t l;
  rf_lock_opts_t o = suite_opts(5000);
  uint64_t last = 0;
  suite_key(k, sizeof(k), "tokens");
  for (int i = 0; i < 20; i++) {
    rf_lock_t *lk = (i % 2) != 0 ? g_lk2 : g_lk;
    assert_int_equal(rf_lock_acquire(lk, k, &o, &l), 0);
    assert_true(l.token > last);
    last = l.token;
    assert_int_equal(rf_lock_release(lk, &l), 0);
  }
}

/* A lease expires on its own: the next holder gets it with a larger token;
 * the expired lease can neither release nor extend the new holder's lock. */
static void suite_expiry(void **state) {
  (void)state;
  char k[96];
  rf_lock_lease_t a;
  rf_lock_lease_t b;
  rf_lock_lease_t c;
  rf_lock_opts_t longer = suite_opts(5000);
  suite_key(k, sizeof(k), "expiry");
  assert_int_equal(acquire_short(g_lk, k, 60, &a), 0);
  rf_test_sleep_ms(120);
  assert_int_equal(rf_lock_remaining_ms(&a), 0);
  assert_int_equal(rf_lock_acquire(g_lk2, k, &longer, &b), 0);
  assert_true(b.token > a.token);
  assert_int_equal(rf_lock_extend(g_lk, &a, 5000), RF_ESTATE);
  assert_int_equal(rf_lock_release(g_lk, &a), RF_ESTATE);
  assert_int_equal(rf_lock_acquire(g_lk, k, &longer, &c), RF_EBUSY);
  assert_int_equal(rf_lock_release(g_lk2, &b), 0);
}

/* Extending keeps the lock past its first TTL. */
static void suite_extend(void **state) {
  (void)state;
  char k[96];
  rf_lock_lease_t a;
  rf_lock_lease_t b;
  rf_lock_opts_t o = suite_opts(100);
  suite_key(k, sizeof(k), "extend");
  assert_int_equal(acquire_short(g_lk, k, 100, &a), 0);
  uint64_t tok = a.token;
  assert_int_equal(rf_lock_extend(g_lk, &a, 5000), 0);
  assert_int_equal(a.token, tok);
  assert_int_equal(a.ttl_ms, 5000);
  assert_true(rf_lock_remaining_ms(&a) > 4000);
  rf_test_sleep_ms(150);
  assert_int_equal(rf_lock_acquire(g_lk2, k, &o, &b), RF_EBUSY);
  assert_int_equal(rf_lock_release(g_lk, &a), 0);
  assert_int_equal(rf_lock_acquire(g_lk2, k, &o, &b), 0);
  assert_int_equal(rf_lock_release(g_lk2, &b), 0);
}

/* The hold cap: extensions past max_hold_ms after the acquisition are
 * refused; the lease stays as it was. */
static void suite_max_hold(void **state) {
  (void)state;
  char k[96];
  rf_lock_lease_t a;
  rf_lock_opts_t o = suite_opts(1000);
  o.max_hold_ms = 3000;
  suite_key(k, sizeof(k), "maxhold");
  assert_int_equal(rf_lock_acquire(g_lk, k, &o, &a), 0);
  assert_true(a.hold_until_ns != UINT64_MAX);
  uint64_t before = a.valid_until_ns;
  assert_int_equal(rf_lock_extend(g_lk, &a, 3500), RF_ERANGE);
  assert_int_equal(a.valid_until_ns, before);
  assert_int_equal(rf_lock_extend(g_lk, &a, 2000), 0);
  /* the clock only moves forward: now + 3000 is past start + 3000 */
  assert_int_equal(rf_lock_extend(g_lk, &a, 3000), RF_ERANGE);
  assert_int_equal(rf_lock_release(g_lk, &a), 0);
}

typedef struct {
  const char *key;
  rf_lock_opts_t opts;
  rf_lock_lease_t lease;
  int rc;
} suite_acq_arg;

static void *suite_acquire_thread(void *p) {
  suite_acq_arg *a = p;
  a->rc = rf_lock_acquire(g_lk, a->key, &a->opts, &a->lease);
  return NULL;
}

/* The validity check: the holder is parked right after the grant until
 * less than the safety margin is left; the acquisition must then fail
 * with RF_ETIMEDOUT and leave the key free. */
static void suite_validity(void **state) {
  (void)state;
  char k[96];
  rf_lock_lease_t b;
  suite_acq_arg a = {.key = suite_key(k, sizeof(k), "validity"), .opts = suite_opts(200)};
  a.opts.safety_pct = 30;
  rf_hook_reset();
  assert_int_equal(rf_hook_arm("lock.acquire.granted", 1), 0);
  pthread_t t = rf_test_spawn(suite_acquire_thread, &a);
  RF_ASSERT_PARKED("lock.acquire.granted", 1);
  rf_test_sleep_ms(170); /* 200 ms lease: less than 30 % left now */
  assert_int_equal(rf_hook_release("lock.acquire.granted", 1), 0);
  rf_test_join(t);
  rf_hook_reset();
  assert_int_equal(a.rc, RF_ETIMEDOUT);
  rf_lock_opts_t o = suite_opts(5000);
  assert_int_equal(rf_lock_acquire(g_lk2, k, &o, &b), 0);
  assert_int_equal(rf_lock_release(g_lk2, &b), 0);
}

/* Retries: a waiter that finds the key busy tries again after the delay and
 * gets it once the holder has released (interleaving forced by the hook). */
static void suite_retry(void **state) {
  (void)state;
  char k[96];
  rf_lock_lease_t h;
  rf_lock_opts_t o = suite_opts(5000);
  suite_acq_arg a = {.key = suite_key(k, sizeof(k), "retry"), .opts = suite_opts(5000)};
  a.opts.attempts = 3;
  a.opts.retry_delay_ms = 5;
  a.opts.retry_jitter_ms = 5;
  assert_int_equal(rf_lock_acquire(g_lk2, k, &o, &h), 0);
  rf_hook_reset();
  assert_int_equal(rf_hook_arm("lock.acquire.before_set", 2), 0);
  pthread_t t = rf_test_spawn(suite_acquire_thread, &a);
  RF_ASSERT_PARKED("lock.acquire.before_set", 1); /* attempt 1: will be busy */
  assert_int_equal(rf_hook_release("lock.acquire.before_set", 1), 0);
  assert_int_equal(rf_hook_wait_parked("lock.acquire.before_set", 1, 5000), 0); /* attempt 2 */
  assert_int_equal(rf_lock_release(g_lk2, &h), 0);
  assert_int_equal(rf_hook_release("lock.acquire.before_set", 1), 0);
  rf_test_join(t);
  rf_hook_reset();
  assert_int_equal(a.rc, 0);
  assert_true(a.lease.token > h.token);
  assert_int_equal(rf_lock_release(g_lk, &a.lease), 0);

  /* Every attempt busy: RF_EBUSY after the last one. */
  assert_int_equal(rf_lock_acquire(g_lk2, k, &o, &h), 0);
  a.opts.retry_delay_ms = 1;
  a.opts.retry_jitter_ms = 1;
  assert_int_equal(rf_lock_acquire(g_lk, k, &a.opts, &a.lease), RF_EBUSY);
  assert_int_equal(rf_lock_release(g_lk2, &h), 0);
}

static int suite_with_fn(void *arg, const rf_lock_lease_t *lease) {
  uint64_t *seen = arg;
  *seen = lease->token;
  return 0;
}

static int suite_with_fail(void *arg, const rf_lock_lease_t *lease) {
  (void)arg;
  (void)lease;
  return RF_ECONFLICT;
}

static void suite_with(void **state) {
  (void)state;
  char k[96];
  uint64_t seen = 0;
  rf_lock_lease_t l;
  rf_lock_opts_t o = suite_opts(5000);
  suite_key(k, sizeof(k), "with");
  assert_int_equal(rf_lock_with(g_lk, k, &o, suite_with_fn, &seen), 0);
  assert_true(seen > 0);
  assert_int_equal(rf_lock_with(g_lk, k, &o, suite_with_fail, NULL), RF_ECONFLICT);
  /* released after fn in both cases */
  assert_int_equal(rf_lock_acquire(g_lk2, k, &o, &l), 0);
  assert_true(l.token > seen);
  assert_int_equal(rf_lock_with(g_lk, k, &o, suite_with_fn, &seen), RF_EBUSY);
  assert_int_equal(rf_lock_release(g_lk2, &l), 0);
  assert_int_equal(rf_lock_with(g_lk, k, &o, NULL, NULL), RF_EINVAL);
}

static void suite_bad_input(void **state) {
  (void)state;
  rf_lock_lease_t l;
  char longkey[RF_LOCK_KEY_MAX + 2];
  rf_lock_opts_t o = suite_opts(1000);
  memset(longkey, 'k', sizeof(longkey) - 1);
  longkey[sizeof(longkey) - 1] = '\0';
  assert_int_equal(rf_lock_acquire(NULL, "k", &o, &l), RF_EINVAL);
  assert_int_equal(rf_lock_acquire(g_lk, NULL, &o, &l), RF_EINVAL);
  assert_int_equal(rf_lock_acquire(g_lk, "", &o, &l), RF_EINVAL);
  assert_int_equal(rf_lock_acquire(g_lk, longkey, &o, &l), RF_EINVAL);
  longkey[RF_LOCK_KEY_MAX] = '\0'; /* exactly the maximum: fine */
  assert_int_equal(rf_lock_acquire(g_lk, longkey, &o, &l), 0);
  assert_int_equal(rf_lock_release(g_lk, &l), 0);
  assert_int_equal(rf_lock_acquire(g_lk, "k", &o, NULL), RF_EINVAL);
  rf_lock_opts_t bad = o;
  bad.ttl_ms = 0;
  assert_int_equal(rf_lock_acquire(g_lk, "k", &bad, &l), RF_EINVAL);
  bad = o;
  bad.ttl_ms = RF_LOCK_TTL_MAX_MS + 1;
  assert_int_equal(rf_lock_acquire(g_lk, "k", &bad, &l), RF_EINVAL);
  bad = o;
  bad.attempts = 0;
  assert_int_equal(rf_lock_acquire(g_lk, "k", &bad, &l), RF_EINVAL);
  bad = o;
  bad.safety_pct = 100;
  assert_int_equal(rf_lock_acquire(g_lk, "k", &bad, &l), RF_EINVAL);
  bad = o;
  bad.max_hold_ms = o.ttl_ms - 1;
  assert_int_equal(rf_lock_acquire(g_lk, "k", &bad, &l), RF_EINVAL);
  bad = o;
  bad.retry_delay_ms = UINT64_MAX;
  assert_int_equal(rf_lock_acquire(g_lk, "k", &bad, &l), RF_EINVAL);
  assert_int_equal(rf_lock_opts_check(NULL), RF_EINVAL);

  assert_int_equal(rf_lock_release(NULL, &l), RF_EINVAL);
  assert_int_equal(rf_lock_release(g_lk, NULL), RF_EINVAL);
  assert_int_equal(rf_lock_extend(NULL, &l, 10), RF_EINVAL);
  assert_int_equal(rf_lock_extend(g_lk, NULL, 10), RF_EINVAL);
  /* a garbage lease is refused, never sent to the backend */
  memset(&l, 0x41, sizeof(l));
  assert_int_equal(rf_lock_release(g_lk, &l), RF_EINVAL);
  assert_int_equal(rf_lock_extend(g_lk, &l, 10), RF_EINVAL);
  assert_int_equal(rf_lock_acquire(g_lk, "bad:ext", &o, &l), 0);
  assert_int_equal(rf_lock_extend(g_lk, &l, 0), RF_EINVAL);
  assert_int_equal(rf_lock_extend(g_lk, &l, RF_LOCK_TTL_MAX_MS + 1), RF_EINVAL);
  assert_int_equal(rf_lock_release(g_lk, &l), 0);
  assert_int_equal(rf_lock_extend(g_lk, &l, 10), RF_ESTATE); /* released */
  assert_int_equal(rf_lock_remaining_ms(NULL), 0);
  assert_int_equal(rf_lock_remaining_ms(&l), 0);
  assert_int_equal(rf_lock_ping(NULL), RF_EINVAL);
  assert_string_equal(rf_lock_backend_name(NULL), "");
}

#define LOCK_SUITE_TESTS                                                                           \
  cmocka_unit_test(suite_basic), cmocka_unit_test(suite_keys_independent),                         \
      cmocka_unit_test(suite_tokens_monotonic), cmocka_unit_test(suite_expiry),                    \
      cmocka_unit_test(suite_extend), cmocka_unit_test(suite_max_hold),                            \
      cmocka_unit_test(suite_validity), cmocka_unit_test(suite_retry),                             \
      cmocka_unit_test(suite_with), cmocka_unit_test(suite_bad_input)

#endif /* RF_LOCK_SUITE_H */
