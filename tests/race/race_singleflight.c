/* race_singleflight.c - the article's check-then-act cache, forced with
 * hooks, against rf_sf; then the guarantees around one flight: a waiter that
 * times out does not cancel the others, forget() starts a new flight while
 * the old one's waiters are served, and the last reference frees all.
 *
 * Naive twin (the article's CacheService.get without the cache part):
 *   if (loading.has(key)) wait;  RF_HOOK(...);  loading.add(key);  fetch();
 * Interleaving: A and B both check "not loading" and park; both go on;
 * both fetch. rf_sf_do through the same interleaving at "sf.after_lookup"
 * (both callers found no flight) loads once and B gets shared == true. */
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "racefree/singleflight.h"
#include "rf_test.h"

/* ------------------------------------------------ naive twin */

static atomic_int naive_loading;
static atomic_int naive_loads;
static atomic_int naive_value;

static int naive_get(void) {
  if (atomic_load_explicit(&naive_loading, memory_order_relaxed)) {
    while (atomic_load_explicit(&naive_loading, memory_order_relaxed)) {
      sched_yield();
    }
    return atomic_load_explicit(&naive_value, memory_order_relaxed);
  }
  RF_HOOK("sf.naive.after_lookup");
  atomic_store_explicit(&naive_loading, 1, memory_order_relaxed);
  int v = atomic_fetch_add_explicit(&naive_loads, 1, memory_order_relaxed) + 1; /* fetch */
  atomic_store_explicit(&naive_value, v, memory_order_relaxed);
  atomic_store_explicit(&naive_loading, 0, memory_order_relaxed);
  return v;
}

static void *naive_thread(void *arg) {
  (void)arg;
  return (void *)(intptr_t)naive_get();
}

/* ------------------------------------------------ ours */

static atomic_int loads;
static atomic_int frees;

static void count_free(void *p) {
  atomic_fetch_add(&frees, 1);
  free(p);
}

/* Loader that parks at "test.sf.loader" (when armed), then completes with
 * a malloc'd int holding the load number. */
static void parking_loader(rf_sf_call_t *call, const char *key, void *arg) {
  (void)key;
  (void)arg;
  int n = atomic_fetch_add(&loads, 1) + 1;
  RF_HOOK("test.sf.loader");
  int *v = malloc(sizeof(*v));
  *v = n;
  assert_int_equal(rf_sf_complete(call, 0, v, sizeof(*v), count_free), 0);
}

typedef struct {
  rf_sf_t *sf;
  const char *key;
  int timeout_ms;
  rf_sf_loader fn;
  int rc;
  bool shared;
  rf_sf_result_t *res;
} caller;

static void *caller_thread(void *p) {
  caller *c = p;
  c->rc = rf_sf_do(c->sf, c->key, c->fn, NULL, c->timeout_ms, &c->res, &c->shared);
  return NULL;
}

static void test_check_then_act(void **state) {
  (void)state;
  rf_hook_reset();

  /* Naive: A and B both pass the "is it loading?" check, both fetch. */
  atomic_store(&naive_loading, 0);
  atomic_store(&naive_loads, 0);
  assert_int_equal(rf_hook_arm("sf.naive.after_lookup", 2), 0);
  pthread_t a = rf_test_spawn(naive_thread, NULL);
  pthread_t b = rf_test_spawn(naive_thread, NULL);
  RF_ASSERT_PARKED("sf.naive.after_lookup", 2);
  rf_hook_release("sf.naive.after_lookup", 2);
  rf_test_join(a);
  rf_test_join(b);
  assert_int_equal(atomic_load(&naive_loads), 2); /* the race, reproduced */

  /* Ours: both callers found no flight and are parked before creating one. */
  rf_sf_t *sf = NULL;
  assert_int_equal(rf_sf_create(&sf), 0);
  atomic_store(&loads, 0);
  atomic_store(&frees, 0);
  caller ca = {sf, "user:1", -1, parking_loader, -1, false, NULL};
  caller cb = ca;
  assert_int_equal(rf_hook_arm("sf.after_lookup", 2), 0);
  a = rf_test_spawn(caller_thread, &ca);
  b = rf_test_spawn(caller_thread, &cb);
  RF_ASSERT_PARKED("sf.after_lookup", 2);
  /* The first to go creates the flight; its loader parks mid-load. */
  assert_int_equal(rf_hook_arm("test.sf.loader", 1), 0);
  assert_int_equal(rf_hook_arm("sf.joined", 1), 0);
  rf_hook_release("sf.after_lookup", 1);
  RF_ASSERT_PARKED("test.sf.loader", 1);
  /* The second re-checks under the lock, finds that flight and joins it. */
  rf_hook_release("sf.after_lookup", 1);
  RF_ASSERT_PARKED("sf.joined", 1);
  rf_hook_release("sf.joined", 1);
  rf_hook_release("test.sf.loader", 1);
  rf_test_join(a);
  rf_test_join(b);
  assert_int_equal(ca.rc, 0);
  assert_int_equal(cb.rc, 0);
  assert_int_equal(atomic_load(&loads), 1);
  assert_true(ca.shared != cb.shared); /* exactly one joined */
  assert_ptr_equal(ca.res, cb.res);    /* the same result object */
  assert_int_equal(*(const int *)rf_sf_result_value(ca.res, NULL), 1);
  assert_int_equal(rf_sf_inflight(sf), 0);
  rf_sf_result_release(ca.res);
  rf_sf_result_release(cb.res);
  assert_int_equal(atomic_load(&frees), 1);
  rf_sf_destroy(sf);
  rf_hook_reset();
}

/* Asynchronous loader: hands the call to the test through `pending`, after
 * parking at "test.sf.loader" when armed. */
static rf_sf_call_t *_Atomic pending;

static void async_loader(rf_sf_call_t *call, const char *key, void *arg) {
  (void)key;
  (void)arg;
  atomic_fetch_add(&loads, 1);
  atomic_store(&pending, call);
  RF_HOOK("test.sf.loader");
}

static void complete_pending(rf_sf_call_t *call, int value) {
  int *v = malloc(sizeof(*v));
  *v = value;
  assert_int_equal(rf_sf_complete(call, 0, v, sizeof(*v), count_free), 0);
}

static void test_timeout_does_not_cancel(void **state) {
  (void)state;
  rf_hook_reset();
  rf_sf_t *sf = NULL;
  assert_int_equal(rf_sf_create(&sf), 0);
  atomic_store(&loads, 0);
  atomic_store(&frees, 0);

  /* A starts the flight and waits; C joins and waits; B joins and gives up. */
  caller ca = {sf, "slow", -1, async_loader, -1, false, NULL};
  caller cc = ca;
  assert_int_equal(rf_hook_arm("test.sf.loader", 1), 0);
  pthread_t a = rf_test_spawn(caller_thread, &ca);
  RF_ASSERT_PARKED("test.sf.loader", 1);
  rf_hook_release("test.sf.loader", 1);
  assert_int_equal(rf_hook_arm("sf.joined", 1), 0);
  pthread_t c = rf_test_spawn(caller_thread, &cc);
  RF_ASSERT_PARKED("sf.joined", 1);
  rf_hook_release("sf.joined", 1);

  rf_sf_result_t *r = NULL;
  bool shared = false;
  assert_int_equal(rf_sf_do(sf, "slow", async_loader, NULL, 30, &r, &shared), RF_ETIMEDOUT);
  assert_true(shared);
  assert_int_equal(rf_sf_inflight(sf), 1); /* the flight goes on */

  complete_pending(atomic_exchange(&pending, NULL), 7);
  rf_test_join(a);
  rf_test_join(c);
  assert_int_equal(ca.rc, 0);
  assert_int_equal(cc.rc, 0);
  assert_false(ca.shared);
  assert_true(cc.shared);
  assert_int_equal(*(const int *)rf_sf_result_value(ca.res, NULL), 7);
  assert_ptr_equal(ca.res, cc.res);
  assert_int_equal(atomic_load(&loads), 1);
  rf_sf_result_release(ca.res);
  rf_sf_result_release(cc.res);
  assert_int_equal(atomic_load(&frees), 1);
  rf_sf_destroy(sf);
  rf_hook_reset();
}

static void test_forget_and_last_reference(void **state) {
  (void)state;
  rf_hook_reset();
  rf_sf_t *sf = NULL;
  assert_int_equal(rf_sf_create(&sf), 0);
  atomic_store(&loads, 0);
  atomic_store(&frees, 0);

  caller ca = {sf, "k", -1, async_loader, -1, false, NULL};
  assert_int_equal(rf_hook_arm("test.sf.loader", 1), 0);
  pthread_t a = rf_test_spawn(caller_thread, &ca);
  RF_ASSERT_PARKED("test.sf.loader", 1);
  rf_sf_call_t *old = atomic_exchange(&pending, NULL);
  rf_hook_release("test.sf.loader", 1);

  /* forget: the next caller starts (and here finishes) a new flight */
  assert_int_equal(rf_sf_forget(sf, "k"), 0);
  rf_sf_result_t *r = NULL;
  bool shared = true;
  assert_int_equal(rf_sf_do(sf, "k", parking_loader, NULL, -1, &r, &shared), 0);
  assert_false(shared);
  assert_int_equal(atomic_load(&loads), 2);
  assert_int_equal(*(const int *)rf_sf_result_value(r, NULL), 2);

  /* the forgotten flight still serves its own waiter */
  complete_pending(old, 100);
  rf_test_join(a);
  assert_int_equal(ca.rc, 0);
  assert_int_equal(*(const int *)rf_sf_result_value(ca.res, NULL), 100);

  /* results outlive the table and are freed by their last reference */
  rf_sf_destroy(sf);
  rf_sf_result_t *extra = rf_sf_result_retain(ca.res);
  rf_sf_result_release(ca.res);
  rf_sf_result_release(r);
  assert_int_equal(atomic_load(&frees), 1);
  rf_sf_result_release(extra);
  assert_int_equal(atomic_load(&frees), 2);
  rf_hook_reset();
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_check_then_act),
      cmocka_unit_test(test_timeout_does_not_cancel),
      cmocka_unit_test(test_forget_and_last_reference),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
