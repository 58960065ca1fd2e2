/* test_lock.c - the lock module with its in-process backend: the shared
 * backend contract (lock_suite.h), the memory backend's own behaviour, the
 * fence, custom backends, and allocation failures. The Redis backend runs
 * the same suite in test_lock_redis.c. */
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "lock_suite.h"

static int setup_mem(void **state) {
  (void)state;
  if (rf_lock_create_mem(&g_lk, NULL) != 0) {
    return -1;
  }
  g_lk2 = g_lk; /* in-process: every client shares the one table */
  return 0;
}

static int teardown_mem(void **state) {
  (void)state;
  rf_lock_destroy(g_lk);
  g_lk = g_lk2 = NULL;
  return 0;
}

static void test_mem_name_ping(void **state) {
  (void)state;
  assert_string_equal(rf_lock_backend_name(g_lk), "memory");
  assert_int_equal(rf_lock_ping(g_lk), 0);
}

/* Tokens are monotonic across keys too (one counter), starting at 1. */
static void test_mem_tokens_start(void **state) {
  (void)state;
  rf_lock_t *lk;
  rf_lock_lease_t a;
  rf_lock_lease_t b;
  assert_int_equal(rf_lock_create_mem(&lk, NULL), 0);
  assert_int_equal(rf_lock_acquire(lk, "x", NULL, &a), 0);
  assert_int_equal(rf_lock_acquire(lk, "y", NULL, &b), 0);
  assert_int_equal(a.token, 1);
  assert_int_equal(b.token, 2);
  rf_lock_destroy(lk); /* leases still held: freed with the table */
}

/* Many keys: the table grows, expired entries are swept, all still work. */
static void test_mem_many_keys(void **state) {
  (void)state;
  rf_lock_t *lk;
  static rf_lock_lease_t leases[1000];
  char k[32];
  assert_int_equal(rf_lock_create_mem(&lk, NULL), 0);
  for (int i = 0; i < 1000; i++) {
    snprintf(k, sizeof(k), "short-%d", i);
    assert_int_equal(acquire_short(lk, k, 30, &leases[i]), 0);
  }
  rf_test_sleep_ms(60);
  for (int i = 0; i < 1000; i++) {
    snprintf(k, sizeof(k), "long-%d", i);
    assert_int_equal(rf_lock_acquire(lk, k, NULL, &leases[i]), 0);
  }
  for (int i = 0; i < 1000; i++) {
    rf_lock_lease_t again;
    snprintf(k, sizeof(k), "long-%d", i);
    assert_int_equal(rf_lock_acquire(lk, k, NULL, &again), RF_EBUSY);
    assert_int_equal(rf_lock_release(lk, &leases[i]), 0);
  }
  rf_lock_destroy(lk);
}

typedef struct {
  rf_lock_t *lk;
  rf_lock_lease_t lease;
  int rc;
  uint64_t waited_ms;
} wait_arg;

static void *wait_thread(void *p) {
  wait_arg *a = p;
  rf_lock_opts_t o = RF_LOCK_OPTS_DEFAULT;
  o.attempts = 2;
  o.retry_delay_ms = 10000; /* only a release can end the wait this early */
  o.retry_jitter_ms = 0;
  uint64_t t0 = rf_test_now_ms();
  a->rc = rf_lock_acquire(a->lk, "wake", &o, &a->lease);
  a->waited_ms = rf_test_now_ms() - t0;
  return NULL;
}

/* The memory backend wakes a waiter as soon as the key is released instead
 * of letting it sleep the whole retry delay. */
static void test_mem_wait_wakes(void **state) {
  (void)state;
  rf_lock_lease_t h;
  wait_arg a = {.lk = g_lk};
  assert_int_equal(rf_lock_acquire(g_lk, "wake", NULL, &h), 0);
  rf_hook_reset();
  assert_int_equal(rf_hook_arm("lock.acquire.before_set", 2), 0);
  pthread_t t = rf_test_spawn(wait_thread, &a);
  RF_ASSERT_PARKED("lock.acquire.before_set", 1);
  assert_int_equal(rf_hook_release("lock.acquire.before_set", 1), 0); /* busy, then waits */
  rf_test_sleep_ms(20);
  assert_int_equal(rf_lock_release(g_lk, &h), 0);
  RF_ASSERT_PARKED("lock.acquire.before_set", 1); /* woke for attempt 2 */
  assert_int_equal(rf_hook_release("lock.acquire.before_set", 1), 0);
  rf_test_join(t);
  rf_hook_reset();
  assert_int_equal(a.rc, 0);
  assert_true(a.waited_ms < 5000);
  assert_int_equal(rf_lock_release(g_lk, &a.lease), 0);
}

/* ------------------------------------------------------------ custom backend */

static atomic_int fake_destroyed;

static int fake_acquire(void *impl, const char *key, const char *owner, uint64_t ttl_ms,
                        uint64_t *token) {
  (void)impl;
  (void)key;
  (void)owner;
  (void)ttl_ms;
  (void)token;
  return RF_EUNAVAIL;
}

static int fake_release(void *impl, const char *key, const char *owner) {
  (void)impl;
  (void)key;
  (void)owner;
  return RF_EUNAVAIL;
}

static int fake_extend(void *impl, const char *key, const char *owner, uint64_t ttl_ms) {
  (void)impl;
  (void)key;
  (void)owner;
  (void)ttl_ms;
  return RF_EUNAVAIL;
}

static void fake_destroy(void *impl) {
  (void)impl;
  atomic_fetch_add(&fake_destroyed, 1);
}

static const rf_lock_backend_t fake_backend = {.name = "fake",
                                               .acquire = fake_acquire,
                                               .release = fake_release,
                                               .extend = fake_extend,
                                               .destroy = fake_destroy};

static const rf_lock_backend_t broken_backend = {.name = "broken", .destroy = fake_destroy};

/* A custom backend plugs in; its failures come through unchanged (fail
 * closed, not retried); impl is destroyed exactly once, even on error. */
static void test_custom_backend(void **state) {
  (void)state;
  rf_lock_t *lk = NULL;
  rf_lock_lease_t l;
  atomic_store(&fake_destroyed, 0);
  assert_int_equal(rf_lock_create(&lk, &fake_backend, NULL, NULL), 0);
  assert_string_equal(rf_lock_backend_name(lk), "fake");
  assert_int_equal(rf_lock_ping(lk), 0);
  rf_lock_opts_t o = RF_LOCK_OPTS_DEFAULT;
  o.attempts = 5;
  rf_hook_reset();
  assert_int_equal(rf_lock_acquire(lk, "k", &o, &l), RF_EUNAVAIL);
  rf_lock_destroy(lk);
  assert_int_equal(atomic_load(&fake_destroyed), 1);

  assert_int_equal(rf_lock_create(&lk, &broken_backend, NULL, NULL), RF_EINVAL);
  assert_int_equal(atomic_load(&fake_destroyed), 2);
  rf_lock_opts_t bad = RF_LOCK_OPTS_DEFAULT;
  bad.ttl_ms = 0;
  assert_int_equal(rf_lock_create(&lk, &fake_backend, NULL, &bad), RF_EINVAL);
  assert_int_equal(atomic_load(&fake_destroyed), 3);
  assert_int_equal(rf_lock_create(NULL, &fake_backend, NULL, NULL), RF_EINVAL);
  assert_int_equal(atomic_load(&fake_destroyed), 4);
  assert_int_equal(rf_lock_create(&lk, NULL, NULL, NULL), RF_EINVAL);
  assert_int_equal(rf_lock_create_mem(NULL, NULL), RF_EINVAL);
  assert_int_equal(rf_lock_create_mem(&lk, &bad), RF_EINVAL);
  rf_lock_destroy(NULL);
}

/* ------------------------------------------------------------ fence */

static int record_write(void *arg, uint64_t token) {
  uint64_t *cell = arg;
  *cell = token;
  return 0;
}

static int failing_write(void *arg, uint64_t token) {
  (void)arg;
  (void)token;
  return RF_EIO;
}

static void test_fence_basic(void **state) {
  (void)state;
  rf_fence_t *f;
  uint64_t cell = 0;
  uint64_t last = 0;
  assert_int_equal(rf_fence_create(&f), 0);
  assert_int_equal(rf_fence_last(f, "ledger:p1", &last), RF_ENOENT);
  assert_int_equal(rf_fence_apply(f, "ledger:p1", 33, record_write, &cell), 0);
  assert_int_equal(cell, 33);
  assert_int_equal(rf_fence_apply(f, "ledger:p1", 33, record_write, &cell), 0); /* same holder */
  assert_int_equal(rf_fence_apply(f, "ledger:p1", 34, record_write, &cell), 0);
  assert_int_equal(rf_fence_apply(f, "ledger:p1", 33, record_write, &cell), RF_ESTALE);
  assert_int_equal(cell, 34);
  assert_int_equal(rf_fence_last(f, "ledger:p1", &last), 0);
  assert_int_equal(last, 34);
  /* resources are independent */
  assert_int_equal(rf_fence_check(f, "ledger:p2", 1), 0);
  assert_int_equal(rf_fence_check(f, "ledger:p2", 2), 0);
  assert_int_equal(rf_fence_check(f, "ledger:p2", 1), RF_ESTALE);
  /* a failed write still records the newer holder */
  assert_int_equal(rf_fence_apply(f, "ledger:p1", 40, failing_write, NULL), RF_EIO);
  assert_int_equal(rf_fence_apply(f, "ledger:p1", 39, record_write, &cell), RF_ESTALE);
  /* bad input */
  assert_int_equal(rf_fence_create(NULL), RF_EINVAL);
  assert_int_equal(rf_fence_apply(NULL, "r", 1, record_write, &cell), RF_EINVAL);
  assert_int_equal(rf_fence_apply(f, NULL, 1, record_write, &cell), RF_EINVAL);
  assert_int_equal(rf_fence_apply(f, "", 1, record_write, &cell), RF_EINVAL);
  assert_int_equal(rf_fence_apply(f, "r", 0, record_write, &cell), RF_EINVAL);
  assert_int_equal(rf_fence_apply(f, "r", 1, NULL, NULL), RF_EINVAL);
  assert_int_equal(rf_fence_last(f, "r", NULL), RF_EINVAL);
  assert_int_equal(rf_fence_last(NULL, "r", &last), RF_EINVAL);
  char *huge = malloc(5000);
  memset(huge, 'r', 4999);
  huge[4999] = '\0';
  assert_int_equal(rf_fence_check(f, huge, 1), RF_EINVAL);
  free(huge);
  /* many resources: the table grows */
  char name[32];
  for (int i = 0; i < 2000; i++) {
    snprintf(name, sizeof(name), "res-%d", i);
    assert_int_equal(rf_fence_check(f, name, (uint64_t)i + 1), 0);
  }
  for (int i = 0; i < 2000; i++) {
    snprintf(name, sizeof(name), "res-%d", i);
    assert_int_equal(rf_fence_last(f, name, &last), 0);
    assert_int_equal(last, (uint64_t)i + 1);
  }
  rf_fence_destroy(f);
  rf_fence_destroy(NULL);
}

/* The fencing scenario with the memory backend: holder A's lease runs out
 * while it is paused; B acquires (a newer token) and writes; A's late write
 * with its old token is rejected. */
static void test_fence_paused_holder(void **state) {
  (void)state;
  rf_fence_t *f;
  rf_lock_lease_t a;
  rf_lock_lease_t b;
  uint64_t ledger = 0;
  assert_int_equal(rf_fence_create(&f), 0);
  assert_int_equal(acquire_short(g_lk, "payment:p9", 50, &a), 0);
  rf_test_sleep_ms(80); /* A is "paused" past its TTL */
  assert_int_equal(rf_lock_acquire(g_lk, "payment:p9", NULL, &b), 0);
  assert_int_equal(b.token, a.token + 1);
  assert_int_equal(rf_fence_apply(f, "payment:p9", b.token, record_write, &ledger), 0);
  assert_int_equal(rf_fence_apply(f, "payment:p9", a.token, record_write, &ledger), RF_ESTALE);
  assert_int_equal(ledger, b.token);
  assert_int_equal(rf_lock_release(g_lk, &a), RF_ESTATE);
  assert_int_equal(rf_lock_release(g_lk, &b), 0);
  rf_fence_destroy(f);
}

/* ------------------------------------------------------------ allocation failures */

/* Fail the n-th allocation for n = 0, 1, ... until create + acquire + fence
 * succeed; every failure is RF_ENOMEM and leaks nothing (ASan's leak check). */
static void test_alloc_failures(void **state) {
  (void)state;
  int ok = 0;
  for (long n = 0; n < 100 && !ok; n++) {
    rf_lock_t *lk = NULL;
    rf_fence_t *f = NULL;
    rf_lock_lease_t l;
    rf_test_fail_alloc_after(n);
    int rc = rf_lock_create_mem(&lk, NULL);
    if (rc == 0) {
      rc = rf_lock_acquire(lk, "torture", NULL, &l);
      if (rc == 0) {
        rc = rf_fence_create(&f);
        if (rc == 0) {
          rc = rf_fence_check(f, "torture", l.token);
        }
        assert_int_equal(rf_lock_release(lk, &l), 0);
      }
    }
    rf_test_fail_alloc_after(-1);
    if (rc == 0) {
      ok = 1;
    } else {
      assert_int_equal(rc, RF_ENOMEM);
    }
    rf_fence_destroy(f);
    rf_lock_destroy(lk);
  }
  assert_true(ok);
  /* custom backend: impl destroyed when the service cannot be allocated */
  rf_lock_t *lk = NULL;
  atomic_store(&fake_destroyed, 0);
  rf_test_fail_alloc_after(0);
  assert_int_equal(rf_lock_create(&lk, &fake_backend, NULL, NULL), RF_ENOMEM);
  rf_test_fail_alloc_after(-1);
  assert_int_equal(atomic_load(&fake_destroyed), 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      LOCK_SUITE_TESTS,
      cmocka_unit_test(test_mem_name_ping),
      cmocka_unit_test(test_mem_tokens_start),
      cmocka_unit_test(test_mem_many_keys),
      cmocka_unit_test(test_mem_wait_wakes),
      cmocka_unit_test(test_custom_backend),
      cmocka_unit_test(test_fence_basic),
      cmocka_unit_test(test_fence_paused_holder),
      cmocka_unit_test(test_alloc_failures),
  };
  return cmocka_run_group_tests(tests, setup_mem, teardown_mem);
}
