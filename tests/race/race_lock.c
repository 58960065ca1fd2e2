/* race_lock.c - the interleavings that break a naive lock, forced with hook
 * points, against the naive twin (which breaks) and rf_lock (which holds):
 *
 *  1. check-then-set: A sees the key free and is paused before it sets it;
 *     B takes the lock; A resumes and sets it too. Two holders.
 *  2. release without compare: A's lease expires, B takes the lock, A's
 *     late release deletes B's lock and C gets in beside B. Two holders.
 *  3. check-then-write at the resource: a fence that checks the token and
 *     writes in two steps lets a stale holder's write land after a newer
 *     holder's; rf_fence_apply does both in one step.
 *
 * The naive twin keeps its shared fields in relaxed atomics: its bug is a
 * logic race, not a C data race, so TSan stays quiet and the test still
 * shows the violation. The Redis versions of 1 and 2 (naive GET/SET/DEL
 * against the real Redis backend) are in tests/unit/test_lock_redis.c.
 */
#include <stdatomic.h>
#include <string.h>

#include "racefree/lock.h"
#include "rf_test.h"

/* ------------------------------------------------------------ the naive twin */

/* One key; owner 0 = free. Expiry as a deadline, like a lease. */
typedef struct {
  atomic_int owner;
  atomic_uint_fast64_t expires_ms;
} naive_lock;

static int naive_acquire(naive_lock *l, int me, uint64_t ttl_ms) {
  int cur = atomic_load_explicit(&l->owner, memory_order_relaxed);
  uint64_t exp = atomic_load_explicit(&l->expires_ms, memory_order_relaxed);
  if (cur != 0 && exp > rf_test_now_ms()) {
    return RF_EBUSY;
  }
  RF_HOOK("lock.acquire.before_set"); /* the window between check and set */
  atomic_store_explicit(&l->owner, me, memory_order_relaxed);
  atomic_store_explicit(&l->expires_ms, rf_test_now_ms() + ttl_ms, memory_order_relaxed);
  return 0;
}

/* The article's bug before its Lua fix: delete without asking whose it is. */
static void naive_release(naive_lock *l) {
  atomic_store_explicit(&l->owner, 0, memory_order_relaxed);
}

/* ------------------------------------------------------------ 1. check-then-set */

typedef struct {
  naive_lock *naive;
  rf_lock_t *lk;
  rf_lock_lease_t lease;
  int rc;
} acq_arg;

static void *naive_acquire_a(void *p) {
  acq_arg *a = p;
  a->rc = naive_acquire(a->naive, 1, 10000);
  return NULL;
}

static void *ours_acquire_a(void *p) {
  acq_arg *a = p;
  a->rc = rf_lock_acquire(a->lk, "race:cts", NULL, &a->lease);
  return NULL;
}

static void test_check_then_set_naive_breaks(void **state) {
  (void)state;
  naive_lock nl = {0};
  acq_arg a = {.naive = &nl};
  int holders = 0;
  rf_hook_reset();
  assert_int_equal(rf_hook_arm("lock.acquire.before_set", 1), 0);
  pthread_t t = rf_test_spawn(naive_acquire_a, &a);
  RF_ASSERT_PARKED("lock.acquire.before_set", 1); /* A saw it free */
  int rc_b = naive_acquire(&nl, 2, 10000);        /* B takes it */
  assert_int_equal(rf_hook_release("lock.acquire.before_set", 1), 0);
  rf_test_join(t);
  rf_hook_reset();
  holders = (a.rc == 0) + (rc_b == 0);
  assert_int_equal(holders, 2); /* the violation: both believe they hold it */
}

static void test_check_then_set_ours_holds(void **state) {
  (void)state;
  rf_lock_t *lk;
  rf_lock_lease_t b;
  assert_int_equal(rf_lock_create_mem(&lk, NULL), 0);
  acq_arg a = {.lk = lk};
  rf_hook_reset();
  assert_int_equal(rf_hook_arm("lock.acquire.before_set", 1), 0);
  pthread_t t = rf_test_spawn(ours_acquire_a, &a);
  RF_ASSERT_PARKED("lock.acquire.before_set", 1);
  assert_int_equal(rf_lock_acquire(lk, "race:cts", NULL, &b), 0);
  assert_int_equal(rf_hook_release("lock.acquire.before_set", 1), 0);
  rf_test_join(t);
  rf_hook_reset();
  assert_int_equal(a.rc, RF_EBUSY); /* one holder */
  assert_int_equal(rf_lock_release(lk, &b), 0);
  rf_lock_destroy(lk);
}

/* ------------------------------------------------------------ 2. release without compare */

static void test_release_naive_breaks(void **state) {
  (void)state;
  naive_lock nl = {0};
  assert_int_equal(naive_acquire(&nl, 1, 30), 0);    /* A */
  rf_test_sleep_ms(60);                              /* A's lease runs out */
  assert_int_equal(naive_acquire(&nl, 2, 10000), 0); /* B */
  naive_release(&nl);                                /* A's late release */
  int rc_c = naive_acquire(&nl, 3, 10000);           /* C */
  assert_int_equal(rc_c, 0);                         /* the violation: C holds it while B does */
}

static void test_release_ours_holds(void **state) {
  (void)state;
  rf_lock_t *lk;
  rf_lock_lease_t a;
  rf_lock_lease_t b;
  rf_lock_lease_t c;
  assert_int_equal(rf_lock_create_mem(&lk, NULL), 0);
  /* a lease with 30 ms left (acquired long, then shortened, so that a stall
   * of this thread cannot trip the validity check) */
  assert_int_equal(rf_lock_acquire(lk, "race:rel", NULL, &a), 0);
  assert_int_equal(rf_lock_extend(lk, &a, 30), 0);
  rf_test_sleep_ms(60);
  assert_int_equal(rf_lock_acquire(lk, "race:rel", NULL, &b), 0);
  assert_int_equal(rf_lock_release(lk, &a), RF_ESTATE); /* not A's any more */
  assert_int_equal(rf_lock_acquire(lk, "race:rel", NULL, &c), RF_EBUSY);
  assert_int_equal(rf_lock_release(lk, &b), 0);
  rf_lock_destroy(lk);
}

/* ------------------------------------------------------------ 3. the fence */

/* The resource: a value and the token of the write that set it. */
typedef struct {
  atomic_uint_fast64_t last_token; /* naive fence state */
  atomic_uint_fast64_t value_from; /* token of the holder whose write landed last */
} resource;

static int naive_fenced_write(resource *r, uint64_t token) {
  if (token < atomic_load_explicit(&r->last_token, memory_order_relaxed)) {
    return RF_ESTALE;
  }
  atomic_store_explicit(&r->last_token, token, memory_order_relaxed);
  RF_HOOK("lock.fence.before_write"); /* checked, not yet written */
  atomic_store_explicit(&r->value_from, token, memory_order_relaxed);
  return 0;
}

typedef struct {
  resource *res;
  rf_fence_t *fence;
  uint64_t token;
  int rc;
} write_arg;

static void *naive_write_thread(void *p) {
  write_arg *w = p;
  w->rc = naive_fenced_write(w->res, w->token);
  return NULL;
}

static int store_write(void *arg, uint64_t token) {
  resource *r = arg;
  atomic_store_explicit(&r->value_from, token, memory_order_relaxed);
  return 0;
}

static void *ours_write_thread(void *p) {
  write_arg *w = p;
  w->rc = rf_fence_apply(w->fence, "ledger:p1", w->token, store_write, w->res);
  return NULL;
}

static void test_fence_naive_breaks(void **state) {
  (void)state;
  resource r = {0};
  write_arg old = {.res = &r, .token = 33};
  rf_hook_reset();
  assert_int_equal(rf_hook_arm("lock.fence.before_write", 1), 0);
  pthread_t t = rf_test_spawn(naive_write_thread, &old);
  RF_ASSERT_PARKED("lock.fence.before_write", 1);  /* holder 33 checked */
  assert_int_equal(naive_fenced_write(&r, 34), 0); /* holder 34 writes */
  assert_int_equal(rf_hook_release("lock.fence.before_write", 1), 0);
  rf_test_join(t);
  rf_hook_reset();
  assert_int_equal(old.rc, 0);
  /* the violation: the stale holder's write is the one that stays */
  assert_int_equal(atomic_load(&r.value_from), 33);
}

static void test_fence_ours_holds(void **state) {
  (void)state;
  resource r = {0};
  rf_fence_t *f;
  assert_int_equal(rf_fence_create(&f), 0);
  write_arg old = {.res = &r, .fence = f, .token = 33};
  write_arg cur = {.res = &r, .fence = f, .token = 34};
  rf_hook_reset();
  assert_int_equal(rf_hook_arm("lock.fence.before_write", 1), 0);
  pthread_t ta = rf_test_spawn(ours_write_thread, &old);
  RF_ASSERT_PARKED("lock.fence.before_write", 1);
  /* 34 cannot write while 33 is between its check and its write: it waits
   * for the resource and writes after it. */
  pthread_t tb = rf_test_spawn(ours_write_thread, &cur);
  assert_int_equal(rf_hook_release("lock.fence.before_write", 1), 0);
  rf_test_join(ta);
  rf_test_join(tb);
  rf_hook_reset();
  assert_int_equal(old.rc, 0);
  assert_int_equal(cur.rc, 0);
  assert_int_equal(atomic_load(&r.value_from), 34);
  /* and 33 coming back later is refused */
  assert_int_equal(rf_fence_apply(f, "ledger:p1", 33, store_write, &r), RF_ESTALE);
  assert_int_equal(atomic_load(&r.value_from), 34);
  rf_fence_destroy(f);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_check_then_set_naive_breaks),
      cmocka_unit_test(test_check_then_set_ours_holds),
      cmocka_unit_test(test_release_naive_breaks),
      cmocka_unit_test(test_release_ours_holds),
      cmocka_unit_test(test_fence_naive_breaks),
      cmocka_unit_test(test_fence_ours_holds),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
