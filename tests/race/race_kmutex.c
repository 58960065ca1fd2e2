/* race_kmutex.c - three interleavings of the keyed mutex, each forced with a
 * named hook and each run against a naive twin (which breaks) and against
 * rf_kmutex (which holds).
 *
 * 1. Check-then-insert ("kmutex.after_check"). Naive:
 *        if (!table_has(key)) { RF_HOOK; table_insert(key); / * owner * / }
 *    A passes the check and parks, B passes it too: two owners of one key.
 *    Ours claims under the stripe lock before the hook: B gets RF_EBUSY.
 *
 * 2. Grant racing with a blocking waiter's timeout ("kmutex.lock.timed_out",
 *    opened between the waiter's timedwait returning ETIMEDOUT and its
 *    re-taking the lock). Naive: the waiter returns RF_ETIMEDOUT without
 *    looking whether it was granted meanwhile; the unlocker handed the key
 *    to it, so the key stays held by nobody, forever. Ours re-reads the
 *    waiter state: GRANTED wins, the waiter gets 0 and owns the key.
 *
 * 3. Grant racing with a callback waiter's timer timeout
 *    ("timer.before_fire": the timer thread has popped the timeout and is
 *    about to run it). Naive: both sides check "still waiting" without a
 *    common lock and both call back: the request hears "granted" and
 *    "timed out". Ours: one state transition under the stripe lock, the
 *    loser backs off: cb runs exactly once.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>

#include "internal.h"
#include "rf_test.h"
#include "racefree/kmutex.h"
#include "racefree/timer.h"

#define AFTER_CHECK "kmutex.after_check"
#define TIMED_OUT   "kmutex.lock.timed_out"
#define BEFORE_FIRE "timer.before_fire"

/* ================================================ 1. check-then-insert */

#define NAIVE_SLOTS 8

typedef struct {
  _Atomic(const char *) slots[NAIVE_SLOTS]; /* relaxed: logic race only */
  atomic_int owners;
} naive_table;

static bool table_has(naive_table *t, const char *key) {
  for (int i = 0; i < NAIVE_SLOTS; i++) {
    const char *k = atomic_load_explicit(&t->slots[i], memory_order_relaxed);
    if (k != NULL && strcmp(k, key) == 0) {
      return true;
    }
  }
  return false;
}

static void table_insert(naive_table *t, const char *key) {
  for (int i = 0; i < NAIVE_SLOTS; i++) {
    if (atomic_load_explicit(&t->slots[i], memory_order_relaxed) == NULL) {
      atomic_store_explicit(&t->slots[i], key, memory_order_relaxed);
      return;
    }
  }
}

static int naive_trylock(naive_table *t, const char *key) {
  if (!table_has(t, key)) {
    RF_HOOK(AFTER_CHECK);
    table_insert(t, key);
    atomic_fetch_add_explicit(&t->owners, 1, memory_order_relaxed);
    return 0;
  }
  return RF_EBUSY;
}

typedef struct {
  naive_table *nt;
  rf_kmutex_t *km;
  int rc;
} lock_arg;

static void *naive_locker(void *p) {
  lock_arg *a = p;
  a->rc = naive_trylock(a->nt, "user:1");
  return NULL;
}

static void *km_locker(void *p) {
  lock_arg *a = p;
  a->rc = rf_kmutex_lock(a->km, "user:1", -1);
  return NULL;
}

static void test_naive_table_two_owners(void **state) {
  (void)state;
  rf_hook_reset();
  naive_table t;
  memset(&t, 0, sizeof(t));
  assert_int_equal(rf_hook_arm(AFTER_CHECK, 1), 0);
  lock_arg a = {.nt = &t, .rc = -99};
  pthread_t th = rf_test_spawn(naive_locker, &a);
  RF_ASSERT_PARKED(AFTER_CHECK, 1);
  assert_int_equal(naive_trylock(&t, "user:1"), 0); /* B enters too */
  assert_int_equal(rf_hook_release(AFTER_CHECK, 1), 0);
  rf_test_join(th);
  assert_int_equal(a.rc, 0);
  assert_int_equal(atomic_load(&t.owners), 2); /* violated: two owners */
  rf_hook_reset();
}

static void test_kmutex_one_owner(void **state) {
  (void)state;
  rf_hook_reset();
  rf_kmutex_t *km;
  assert_int_equal(rf_kmutex_create(&km), 0);
  assert_int_equal(rf_hook_arm(AFTER_CHECK, 1), 0);
  lock_arg a = {.km = km, .rc = -99};
  pthread_t th = rf_test_spawn(km_locker, &a);
  RF_ASSERT_PARKED(AFTER_CHECK, 1);
  assert_int_equal(rf_kmutex_trylock(km, "user:1"), RF_EBUSY);
  assert_int_equal(rf_kmutex_lock(km, "user:1", 0), RF_ETIMEDOUT);
  assert_int_equal(rf_hook_release(AFTER_CHECK, 1), 0);
  rf_test_join(th);
  assert_int_equal(a.rc, 0); /* A is the one owner */
  assert_int_equal(rf_kmutex_unlock(km, "user:1"), 0);
  assert_int_equal(rf_kmutex_entries(km), 0);
  rf_kmutex_destroy(km);
  rf_hook_reset();
}

/* ================================================ 2. grant vs timedwait */

typedef struct {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  atomic_int held; /* fields also read outside mu by the test: relaxed */
  atomic_int waiting;
  atomic_int granted;
} naive_lock;

static int naive_lock_timed(naive_lock *l, int timeout_ms) {
  pthread_mutex_lock(&l->mu);
  if (!atomic_load_explicit(&l->held, memory_order_relaxed)) {
    atomic_store_explicit(&l->held, 1, memory_order_relaxed);
    pthread_mutex_unlock(&l->mu);
    return 0;
  }
  atomic_fetch_add_explicit(&l->waiting, 1, memory_order_relaxed);
  struct timespec dl = rf__deadline(timeout_ms);
  while (!atomic_load_explicit(&l->granted, memory_order_relaxed)) {
    if (pthread_cond_timedwait(&l->cv, &l->mu, &dl) == ETIMEDOUT) {
      pthread_mutex_unlock(&l->mu);
      RF_HOOK(TIMED_OUT);
      /* BUG: gives up without re-checking `granted`. */
      atomic_fetch_sub_explicit(&l->waiting, 1, memory_order_relaxed);
      return RF_ETIMEDOUT;
    }
  }
  atomic_store_explicit(&l->granted, 0, memory_order_relaxed);
  atomic_fetch_sub_explicit(&l->waiting, 1, memory_order_relaxed);
  pthread_mutex_unlock(&l->mu);
  return 0;
}

static void naive_unlock(naive_lock *l) {
  pthread_mutex_lock(&l->mu);
  if (atomic_load_explicit(&l->waiting, memory_order_relaxed) > 0) {
    atomic_store_explicit(&l->granted, 1, memory_order_relaxed); /* hand over, held stays */
    pthread_cond_signal(&l->cv);
  } else {
    atomic_store_explicit(&l->held, 0, memory_order_relaxed);
  }
  pthread_mutex_unlock(&l->mu);
}

typedef struct {
  naive_lock *nl;
  rf_kmutex_t *km;
  int rc;
} timed_arg;

static void *naive_timed_waiter(void *p) {
  timed_arg *a = p;
  a->rc = naive_lock_timed(a->nl, 20);
  return NULL;
}

static void *km_timed_waiter(void *p) {
  timed_arg *a = p;
  a->rc = rf_kmutex_lock(a->km, "k", 20);
  return NULL;
}

static void test_naive_timeout_loses_granted_lock(void **state) {
  (void)state;
  rf_hook_reset();
  naive_lock l;
  memset(&l, 0, sizeof(l));
  pthread_mutex_init(&l.mu, NULL);
  rf__cond_init(&l.cv);
  assert_int_equal(naive_lock_timed(&l, 0), 0); /* main holds it */
  assert_int_equal(rf_hook_arm(TIMED_OUT, 1), 0);
  timed_arg a = {.nl = &l, .rc = -99};
  pthread_t th = rf_test_spawn(naive_timed_waiter, &a);
  RF_ASSERT_PARKED(TIMED_OUT, 1); /* timed out, not yet gone */
  naive_unlock(&l);               /* hands the lock to the waiter */
  assert_int_equal(rf_hook_release(TIMED_OUT, 1), 0);
  rf_test_join(th);
  assert_int_equal(a.rc, RF_ETIMEDOUT);
  /* Violated: main unlocked and B gave up, so nobody owns the lock, yet it
   * is held, with a grant addressed to a waiter that has left. */
  assert_int_equal(atomic_load(&l.held), 1);
  assert_int_equal(atomic_load(&l.granted), 1);
  assert_int_equal(atomic_load(&l.waiting), 0);
  pthread_cond_destroy(&l.cv);
  pthread_mutex_destroy(&l.mu);
  rf_hook_reset();
}

static void test_kmutex_grant_beats_timeout(void **state) {
  (void)state;
  rf_hook_reset();
  rf_kmutex_t *km;
  assert_int_equal(rf_kmutex_create(&km), 0);
  assert_int_equal(rf_kmutex_lock(km, "k", 0), 0);
  assert_int_equal(rf_hook_arm(TIMED_OUT, 1), 0);
  timed_arg a = {.km = km, .rc = -99};
  pthread_t th = rf_test_spawn(km_timed_waiter, &a);
  RF_ASSERT_PARKED(TIMED_OUT, 1);
  assert_int_equal(rf_kmutex_unlock(km, "k"), 0); /* grants the waiter */
  assert_int_equal(rf_hook_release(TIMED_OUT, 1), 0);
  rf_test_join(th);
  assert_int_equal(a.rc, 0);                              /* the grant won */
  assert_int_equal(rf_kmutex_trylock(km, "k"), RF_EBUSY); /* the waiter owns it */
  assert_int_equal(rf_kmutex_unlock(km, "k"), 0);         /* (on its behalf) */
  assert_int_equal(rf_kmutex_entries(km), 0);             /* nothing lost */
  assert_int_equal(rf_kmutex_trylock(km, "k"), 0);
  assert_int_equal(rf_kmutex_unlock(km, "k"), 0);
  rf_kmutex_destroy(km);
  rf_hook_reset();
}

/* ================================================ 3. grant vs timer timeout */

typedef struct {
  atomic_int waiting; /* relaxed: logic race only */
  atomic_int calls;
  atomic_int granted_calls;
  atomic_int timedout_calls;
} naive_cb_waiter;

static void naive_cb(naive_cb_waiter *w, int status) {
  atomic_fetch_add(&w->calls, 1);
  atomic_fetch_add(status == 0 ? &w->granted_calls : &w->timedout_calls, 1);
}

static void *naive_timeout(void *p) {
  naive_cb_waiter *w = p;
  if (atomic_load_explicit(&w->waiting, memory_order_relaxed)) {
    RF_HOOK(BEFORE_FIRE);
    atomic_store_explicit(&w->waiting, 0, memory_order_relaxed);
    naive_cb(w, RF_ETIMEDOUT);
  }
  return NULL;
}

static void naive_grant(naive_cb_waiter *w) {
  if (atomic_load_explicit(&w->waiting, memory_order_relaxed)) {
    atomic_store_explicit(&w->waiting, 0, memory_order_relaxed);
    naive_cb(w, 0);
  }
}

static void test_naive_cb_called_twice(void **state) {
  (void)state;
  rf_hook_reset();
  naive_cb_waiter w;
  memset(&w, 0, sizeof(w));
  atomic_store(&w.waiting, 1);
  assert_int_equal(rf_hook_arm(BEFORE_FIRE, 1), 0);
  pthread_t th = rf_test_spawn(naive_timeout, &w);
  RF_ASSERT_PARKED(BEFORE_FIRE, 1);
  naive_grant(&w);
  assert_int_equal(rf_hook_release(BEFORE_FIRE, 1), 0);
  rf_test_join(th);
  assert_int_equal(atomic_load(&w.calls), 2); /* violated: granted AND timed out */
  rf_hook_reset();
}

typedef struct {
  atomic_int calls;
  atomic_int status;
} km_cb_rec;

static void km_cb(int status, void *p) {
  km_cb_rec *r = p;
  atomic_store(&r->status, status);
  atomic_fetch_add(&r->calls, 1);
}

static void test_kmutex_cb_exactly_once(void **state) {
  (void)state;
  rf_hook_reset();
  rf_timer_t *t;
  rf_kmutex_t *km;
  km_cb_rec r = {0};
  assert_int_equal(rf_timer_create(&t), 0);
  assert_int_equal(rf_kmutex_create(&km), 0);
  assert_int_equal(rf_kmutex_lock(km, "k", 0), 0);
  assert_int_equal(rf_hook_arm(BEFORE_FIRE, 1), 0);
  assert_int_equal(rf_kmutex_lock_cb(km, "k", 5, t, km_cb, &r), 0);
  RF_ASSERT_PARKED(BEFORE_FIRE, 1);               /* the timeout is popped, about to run */
  assert_int_equal(rf_kmutex_unlock(km, "k"), 0); /* grant: cb(0) here */
  assert_int_equal(atomic_load(&r.calls), 1);
  assert_int_equal(atomic_load(&r.status), 0);
  assert_int_equal(rf_hook_release(BEFORE_FIRE, 1), 0);
  assert_int_equal(rf_timer_shutdown(t, true), 0); /* the timeout ran and backed off */
  assert_int_equal(atomic_load(&r.calls), 1);
  assert_int_equal(atomic_load(&r.status), 0);
  assert_int_equal(rf_kmutex_entries(km), 1); /* held by the cb's request */
  assert_int_equal(rf_kmutex_unlock(km, "k"), 0);
  assert_int_equal(rf_kmutex_entries(km), 0);
  rf_kmutex_destroy(km); /* returns: no timer callback outstanding */
  rf_timer_destroy(t);
  rf_hook_reset();
}

/* The other order: the timeout wins; the later unlock finds nobody. */
static void test_kmutex_cb_timeout_wins(void **state) {
  (void)state;
  rf_hook_reset();
  rf_timer_t *t;
  rf_kmutex_t *km;
  km_cb_rec r = {0};
  assert_int_equal(rf_timer_create(&t), 0);
  assert_int_equal(rf_kmutex_create(&km), 0);
  assert_int_equal(rf_kmutex_lock(km, "k", 0), 0);
  assert_int_equal(rf_kmutex_lock_cb(km, "k", 5, t, km_cb, &r), 0);
  assert_int_equal(rf_timer_shutdown(t, true), 0); /* fire it now, join */
  assert_int_equal(atomic_load(&r.calls), 1);
  assert_int_equal(atomic_load(&r.status), RF_ETIMEDOUT);
  assert_int_equal(rf_kmutex_waiters(km, "k"), 0);
  assert_int_equal(rf_kmutex_unlock(km, "k"), 0);
  assert_int_equal(atomic_load(&r.calls), 1);
  assert_int_equal(rf_kmutex_entries(km), 0);
  rf_kmutex_destroy(km);
  rf_timer_destroy(t);
  rf_hook_reset();
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_naive_table_two_owners),
      cmocka_unit_test(test_kmutex_one_owner),
      cmocka_unit_test(test_naive_timeout_loses_granted_lock),
      cmocka_unit_test(test_kmutex_grant_beats_timeout),
      cmocka_unit_test(test_naive_cb_called_twice),
      cmocka_unit_test(test_kmutex_cb_exactly_once),
      cmocka_unit_test(test_kmutex_cb_timeout_wins),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
