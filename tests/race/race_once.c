/* race_once.c - the article's lazy-initialisation race, forced with hooks.
 *
 * Naive twin:   if (!loaded) { RF_HOOK(...); load(); loaded = 1; }
 * Interleaving: A checks (not loaded) and parks; B checks, loads, sets;
 *               A goes on and loads again.
 * The naive twin loads twice; rf_once_call, driven through the same
 * interleaving at its own hook point "once.after_check", loads once.
 * Then: a failed attempt is not cached (both callers of the attempt get
 * the error, the next call succeeds), in the blocking and callback forms,
 * next to a pthread_once-style twin that caches the failure. */
#include <stdatomic.h>
#include <stdint.h>

#include "racefree/once.h"
#include "rf_test.h"

/* ------------------------------------------------ naive twins */

/* Shared fields use relaxed atomics: a logic race, not a data race. */
static atomic_int naive_loaded;
static atomic_int naive_loads;

static void naive_get(void) {
  if (!atomic_load_explicit(&naive_loaded, memory_order_relaxed)) {
    RF_HOOK("once.naive.after_check");
    atomic_fetch_add_explicit(&naive_loads, 1, memory_order_relaxed); /* load() */
    atomic_store_explicit(&naive_loaded, 1, memory_order_relaxed);
  }
}

static void *naive_thread(void *arg) {
  (void)arg;
  naive_get();
  return NULL;
}

/* pthread_once-style: the first attempt's outcome is final. */
static atomic_int cached_done;
static atomic_int cached_status;

static int cached_once_call(int (*fn)(void *), void *arg) {
  if (!atomic_load_explicit(&cached_done, memory_order_relaxed)) {
    atomic_store_explicit(&cached_status, fn(arg), memory_order_relaxed);
    atomic_store_explicit(&cached_done, 1, memory_order_relaxed);
  }
  return atomic_load_explicit(&cached_status, memory_order_relaxed);
}

/* ------------------------------------------------ ours */

static atomic_int loads;
static atomic_int fail_first; /* 1: the next attempt fails */

static int load_fn(void *arg) {
  (void)arg;
  atomic_fetch_add(&loads, 1);
  RF_HOOK("test.once.fn");
  return atomic_exchange(&fail_first, 0) ? RF_EUNAVAIL : 0;
}

static void *ours_thread(void *arg) {
  return (void *)(intptr_t)rf_once_call(arg, load_fn, NULL);
}

static void test_double_load(void **state) {
  (void)state;
  rf_hook_reset();

  /* Naive twin: broken by the interleaving. */
  atomic_store(&naive_loaded, 0);
  atomic_store(&naive_loads, 0);
  assert_int_equal(rf_hook_arm("once.naive.after_check", 1), 0);
  pthread_t a = rf_test_spawn(naive_thread, NULL);
  RF_ASSERT_PARKED("once.naive.after_check", 1);
  naive_get(); /* B, to completion */
  rf_hook_release("once.naive.after_check", 1);
  rf_test_join(a);
  assert_int_equal(atomic_load(&naive_loads), 2); /* the race, reproduced */

  /* Ours: same interleaving, one load. */
  rf_once_t o = RF_ONCE_INIT;
  atomic_store(&loads, 0);
  assert_int_equal(rf_hook_arm("once.after_check", 1), 0);
  a = rf_test_spawn(ours_thread, &o);
  RF_ASSERT_PARKED("once.after_check", 1);
  assert_int_equal(rf_once_call(&o, load_fn, NULL), 0); /* B, to completion */
  rf_hook_release("once.after_check", 1);
  assert_int_equal((int)(intptr_t)rf_test_join(a), 0);
  assert_int_equal(atomic_load(&loads), 1);
  assert_int_equal(rf_hook_hits("once.after_check"), 2);
  rf_hook_reset();
}

static int failing_fn(void *arg) {
  (void)arg;
  atomic_fetch_add(&loads, 1);
  return atomic_exchange(&fail_first, 0) ? RF_EUNAVAIL : 0;
}

static void test_failure_not_cached(void **state) {
  (void)state;
  rf_hook_reset();

  /* The pthread_once-style twin caches the failure: the retry never runs. */
  atomic_store(&cached_done, 0);
  atomic_store(&loads, 0);
  atomic_store(&fail_first, 1);
  assert_int_equal(cached_once_call(failing_fn, NULL), RF_EUNAVAIL);
  assert_int_equal(cached_once_call(failing_fn, NULL), RF_EUNAVAIL); /* stuck */
  assert_int_equal(atomic_load(&loads), 1);

  /* Ours: A runs the attempt (parked inside fn), B queues on it. */
  rf_once_t o = RF_ONCE_INIT;
  atomic_store(&loads, 0);
  atomic_store(&fail_first, 1);
  assert_int_equal(rf_hook_arm("test.once.fn", 1), 0);
  assert_int_equal(rf_hook_arm("once.queued", 1), 0);
  pthread_t a = rf_test_spawn(ours_thread, &o);
  RF_ASSERT_PARKED("test.once.fn", 1);
  pthread_t b = rf_test_spawn(ours_thread, &o);
  RF_ASSERT_PARKED("once.queued", 1); /* B waits on A's attempt */
  rf_hook_release("once.queued", 1);
  rf_hook_release("test.once.fn", 1); /* A's attempt fails */
  assert_int_equal((int)(intptr_t)rf_test_join(a), RF_EUNAVAIL);
  assert_int_equal((int)(intptr_t)rf_test_join(b), RF_EUNAVAIL);
  assert_int_equal(atomic_load(&loads), 1); /* B did not run its own */
  assert_false(rf_once_done(&o));
  /* The next call retries and succeeds. */
  assert_int_equal(rf_once_call(&o, load_fn, NULL), 0);
  assert_int_equal(atomic_load(&loads), 2);
  assert_true(rf_once_done(&o));
  rf_hook_reset();
}

typedef struct {
  atomic_int calls;
  atomic_int status;
  pthread_t thread;
} cb_rec;

static void record_cb(int status, void *arg) {
  cb_rec *r = arg;
  r->thread = pthread_self();
  atomic_store(&r->status, status);
  atomic_fetch_add(&r->calls, 1);
}

static void test_failure_not_cached_cb(void **state) {
  (void)state;
  rf_hook_reset();
  rf_once_t o = RF_ONCE_INIT;
  atomic_store(&loads, 0);
  atomic_store(&fail_first, 1);
  assert_int_equal(rf_hook_arm("test.once.fn", 1), 0);
  pthread_t a = rf_test_spawn(ours_thread, &o);
  RF_ASSERT_PARKED("test.once.fn", 1);

  /* B, non-blocking: queued on A's attempt, returns at once. */
  cb_rec rb = {0};
  assert_int_equal(rf_once_call_cb(&o, load_fn, NULL, record_cb, &rb), 0);
  assert_int_equal(atomic_load(&rb.calls), 0);

  rf_hook_release("test.once.fn", 1);
  assert_int_equal((int)(intptr_t)rf_test_join(a), RF_EUNAVAIL);
  assert_int_equal(atomic_load(&rb.calls), 1);
  assert_int_equal(atomic_load(&rb.status), RF_EUNAVAIL);
  assert_true(pthread_equal(rb.thread, a)); /* run by the thread that ran fn */

  /* C retries through the callback form: runs fn itself, cb(0) before return. */
  cb_rec rc = {0};
  assert_int_equal(rf_once_call_cb(&o, load_fn, NULL, record_cb, &rc), 0);
  assert_int_equal(atomic_load(&rc.calls), 1);
  assert_int_equal(atomic_load(&rc.status), 0);
  assert_int_equal(atomic_load(&loads), 2);
  rf_hook_reset();
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_double_load),
      cmocka_unit_test(test_failure_not_cached),
      cmocka_unit_test(test_failure_not_cached_cb),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
